/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareDelivery is built once per consumed message, so it costs one
 * GObject allocation: the body, the strings and the decoded properties are
 * moved in, not copied, and the CarehareProperties object is only built the
 * first time someone asks for it (many consumers read only the body).
 */
#include "carehare-delivery-private.h"

#include "carehare-properties-private.h"

#include <string.h>

/**
 * CarehareDelivery:
 *
 * One message received by a [class@Carehare.Consumer], with where it came
 * from and the tag to acknowledge it with, or the reply of a
 * [method@Carehare.Connection.call_async].
 *
 * A delivery is read-only. Acknowledge a consumer's delivery with
 * [method@Carehare.Consumer.ack] and its
 * [property@Carehare.Delivery:delivery-tag] once it is processed. A reply
 * of a call has nothing to acknowledge: RabbitMQ delivers replies
 * (direct reply-to) without acknowledgements, and its delivery tag is 0,
 * which [method@Carehare.Consumer.ack] ignores.
 *
 * ```c
 * static void
 * handle_delivery (CarehareConsumer *consumer, CarehareDelivery *delivery)
 * {
 *   GBytes *body = carehare_delivery_get_body (delivery);
 *   CarehareProperties *props = carehare_delivery_get_properties (delivery);
 *
 *   g_print ("%s: %" G_GSIZE_FORMAT " bytes of %s\n",
 *            carehare_delivery_get_routing_key (delivery),
 *            g_bytes_get_size (body),
 *            carehare_properties_get_content_type (props));
 *   carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
 * }
 * ```
 */

struct _CarehareDelivery
{
  GObject parent_instance;

  GBytes *body;                    /* owned */
  /* Owned members until the properties object is built, then zeroed. */
  CarehareBasicProperties basic;
  CarehareProperties *properties;  /* owned, built on first access */
  guint64 delivery_tag;
  char *exchange;                  /* owned */
  char *routing_key;               /* owned */
  char *consumer_tag;              /* owned */
  gboolean redelivered;
};

enum {
  PROP_0,
  PROP_BODY,
  PROP_PROPERTIES,
  PROP_DELIVERY_TAG,
  PROP_EXCHANGE,
  PROP_ROUTING_KEY,
  PROP_REDELIVERED,
  PROP_CONSUMER_TAG,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (CarehareDelivery, carehare_delivery, G_TYPE_OBJECT)

static void
carehare_delivery_finalize (GObject *object)
{
  CarehareDelivery *self = CAREHARE_DELIVERY (object);

  g_clear_pointer (&self->body, g_bytes_unref);
  carehare_basic_properties_clear (&self->basic);
  g_clear_object (&self->properties);
  g_clear_pointer (&self->exchange, g_free);
  g_clear_pointer (&self->routing_key, g_free);
  g_clear_pointer (&self->consumer_tag, g_free);

  G_OBJECT_CLASS (carehare_delivery_parent_class)->finalize (object);
}

static void
carehare_delivery_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  CarehareDelivery *self = CAREHARE_DELIVERY (object);

  switch (prop_id)
    {
    case PROP_BODY:
      g_value_set_boxed (value, self->body);
      break;
    case PROP_PROPERTIES:
      g_value_set_object (value, carehare_delivery_get_properties (self));
      break;
    case PROP_DELIVERY_TAG:
      g_value_set_uint64 (value, self->delivery_tag);
      break;
    case PROP_EXCHANGE:
      g_value_set_string (value, self->exchange);
      break;
    case PROP_ROUTING_KEY:
      g_value_set_string (value, self->routing_key);
      break;
    case PROP_REDELIVERED:
      g_value_set_boolean (value, self->redelivered);
      break;
    case PROP_CONSUMER_TAG:
      g_value_set_string (value, self->consumer_tag);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_delivery_class_init (CarehareDeliveryClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = carehare_delivery_finalize;
  object_class->get_property = carehare_delivery_get_property;

  /**
   * CarehareDelivery:body:
   *
   * The message body, possibly empty.
   */
  properties[PROP_BODY] =
    g_param_spec_boxed ("body", NULL, NULL, G_TYPE_BYTES,
                        G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareDelivery:properties:
   *
   * The message's basic properties (content type, headers...). Always set;
   * absent ones read as absent.
   */
  properties[PROP_PROPERTIES] =
    g_param_spec_object ("properties", NULL, NULL, CAREHARE_TYPE_PROPERTIES,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareDelivery:delivery-tag:
   *
   * The tag to pass to [method@Carehare.Consumer.ack] or
   * [method@Carehare.Consumer.nack]; unique on its consumer. 0 for the
   * reply of a [method@Carehare.Connection.call_async], which is not
   * acknowledged.
   */
  properties[PROP_DELIVERY_TAG] =
    g_param_spec_uint64 ("delivery-tag", NULL, NULL, 0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareDelivery:exchange:
   *
   * The exchange the message was published to; the empty string for the
   * default exchange.
   */
  properties[PROP_EXCHANGE] =
    g_param_spec_string ("exchange", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareDelivery:routing-key:
   *
   * The routing key the message was published with.
   */
  properties[PROP_ROUTING_KEY] =
    g_param_spec_string ("routing-key", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareDelivery:redelivered:
   *
   * Whether the broker delivered this message before (to this or another
   * consumer) without it being acknowledged.
   */
  properties[PROP_REDELIVERED] =
    g_param_spec_boolean ("redelivered", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareDelivery:consumer-tag:
   *
   * The tag of the consumer the broker delivered the message to.
   */
  properties[PROP_CONSUMER_TAG] =
    g_param_spec_string ("consumer-tag", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
carehare_delivery_init (CarehareDelivery *self)
{
}

CarehareDelivery *
carehare_delivery_new (GBytes                  *body,
                       CarehareBasicProperties *props,
                       guint64                  delivery_tag,
                       char                    *exchange,
                       char                    *routing_key,
                       gboolean                 redelivered,
                       char                    *consumer_tag)
{
  CarehareDelivery *self;

  g_return_val_if_fail (body != NULL, NULL);
  g_return_val_if_fail (exchange != NULL, NULL);
  g_return_val_if_fail (routing_key != NULL, NULL);
  g_return_val_if_fail (consumer_tag != NULL, NULL);

  self = g_object_new (CAREHARE_TYPE_DELIVERY, NULL);
  self->body = body;
  if (props != NULL)
    {
      self->basic = *props;
      memset (props, 0, sizeof *props);
    }
  self->delivery_tag = delivery_tag;
  self->exchange = exchange;
  self->routing_key = routing_key;
  self->redelivered = !!redelivered;
  self->consumer_tag = consumer_tag;

  return self;
}

/**
 * carehare_delivery_get_body:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:body], the message body.
 *
 * Returns: (transfer none): the body, possibly empty; take a reference
 *   with g_bytes_ref() to keep it beyond @self
 */
GBytes *
carehare_delivery_get_body (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), NULL);

  return self->body;
}

/**
 * carehare_delivery_get_properties:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:properties], the message's basic
 * properties. Every call returns the same object.
 *
 * Returns: (transfer none): the properties
 */
CarehareProperties *
carehare_delivery_get_properties (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), NULL);

  /* Built once, even if two threads ask at the same time; after that, an
   * atomic read. */
  if (g_once_init_enter (&self->properties))
    g_once_init_leave (&self->properties, carehare_properties_new_take_basic (&self->basic));

  return self->properties;
}

/**
 * carehare_delivery_get_delivery_tag:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:delivery-tag], the tag to acknowledge
 * the message with.
 *
 * Returns: the delivery tag; 0 for the reply of a call
 */
guint64
carehare_delivery_get_delivery_tag (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), 0);

  return self->delivery_tag;
}

/**
 * carehare_delivery_get_exchange:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:exchange].
 *
 * Returns: the exchange the message was published to; "" for the default
 *   exchange
 */
const char *
carehare_delivery_get_exchange (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), NULL);

  return self->exchange;
}

/**
 * carehare_delivery_get_routing_key:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:routing-key].
 *
 * Returns: the routing key the message was published with
 */
const char *
carehare_delivery_get_routing_key (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), NULL);

  return self->routing_key;
}

/**
 * carehare_delivery_get_redelivered:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:redelivered].
 *
 * Returns: whether the message was delivered before without being
 *   acknowledged
 */
gboolean
carehare_delivery_get_redelivered (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), FALSE);

  return self->redelivered;
}

/**
 * carehare_delivery_get_consumer_tag:
 * @self: a delivery
 *
 * Gets [property@Carehare.Delivery:consumer-tag].
 *
 * Returns: the tag of the consumer the message was delivered to
 */
const char *
carehare_delivery_get_consumer_tag (CarehareDelivery *self)
{
  g_return_val_if_fail (CAREHARE_IS_DELIVERY (self), NULL);

  return self->consumer_tag;
}

void
_carehare_delivery_set_delivery_tag (CarehareDelivery *self,
                                     guint64           delivery_tag)
{
  self->delivery_tag = delivery_tag;
}

CarehareDelivery *
carehare_delivery_new_take (CarehareProtocolDelivery *d)
{
  CarehareDelivery *delivery;

  delivery = carehare_delivery_new (g_steal_pointer (&d->body), &d->properties,
                                    d->delivery_tag, g_steal_pointer (&d->exchange),
                                    g_steal_pointer (&d->routing_key), d->redelivered,
                                    g_steal_pointer (&d->consumer_tag));
  carehare_protocol_delivery_free (d);
  return delivery;
}
