/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareProperties keeps its values as a CarehareBasicProperties, the wire
 * codec's own struct, so that publishing (carehare_properties_to_basic) is a
 * struct copy and consuming (carehare_properties_new_take_basic) a struct
 * move. Invariant: a string or headers member is non-NULL exactly when its
 * presence flag is set; delivery-mode, priority and timestamp are read only
 * through their flags.
 */
#include "carehare-properties-private.h"

#include <stddef.h>
#include <string.h>

/**
 * CarehareProperties:
 *
 * The 14 AMQP basic properties of a message: its content type, headers,
 * delivery mode and so on.
 *
 * Every property is optional; an absent one is %NULL (strings and
 * [property@Carehare.Properties:headers]), 0
 * ([property@Carehare.Properties:delivery-mode]) or -1
 * ([property@Carehare.Properties:priority],
 * [property@Carehare.Properties:timestamp]), and is not sent at all.
 * Pass one to [method@Carehare.Connection.publish_async]; a consumed
 * message has them in [property@Carehare.Delivery:properties].
 *
 * ```c
 * g_autoptr(CarehareProperties) props = carehare_properties_new ();
 * g_auto(GVariantDict) headers = G_VARIANT_DICT_INIT (NULL);
 *
 * g_variant_dict_insert (&headers, "x-retries", "i", 3);
 * g_variant_dict_insert_value (&headers, "x-trace",
 *                              g_variant_new_parsed ("{'origin': <'billing'>}"));
 *
 * carehare_properties_set_content_type (props, "application/json");
 * carehare_properties_set_delivery_mode (props, 2);  // persistent
 * carehare_properties_set_timestamp (props, g_get_real_time () / G_USEC_PER_SEC);
 * carehare_properties_set_headers (props, g_variant_dict_end (&headers));
 * ```
 */

struct _CarehareProperties
{
  GObject parent_instance;

  CarehareBasicProperties basic;  /* owned members; flags say which are set */
};

/* In wire flag order, so that PROP_FLAG() maps one to the other. */
enum {
  PROP_0,
  PROP_CONTENT_TYPE,
  PROP_CONTENT_ENCODING,
  PROP_HEADERS,
  PROP_DELIVERY_MODE,
  PROP_PRIORITY,
  PROP_CORRELATION_ID,
  PROP_REPLY_TO,
  PROP_EXPIRATION,
  PROP_MESSAGE_ID,
  PROP_TIMESTAMP,
  PROP_TYPE,
  PROP_USER_ID,
  PROP_APP_ID,
  PROP_CLUSTER_ID,
  N_PROPS
};

#define PROP_FLAG(prop_id) ((guint16) (1u << (16 - (prop_id))))

G_STATIC_ASSERT (PROP_FLAG (PROP_CONTENT_TYPE) == CAREHARE_PROPERTY_CONTENT_TYPE);
G_STATIC_ASSERT (PROP_FLAG (PROP_HEADERS) == CAREHARE_PROPERTY_HEADERS);
G_STATIC_ASSERT (PROP_FLAG (PROP_TIMESTAMP) == CAREHARE_PROPERTY_TIMESTAMP);
G_STATIC_ASSERT (PROP_FLAG (PROP_TYPE) == CAREHARE_PROPERTY_TYPE);
G_STATIC_ASSERT (PROP_FLAG (PROP_CLUSTER_ID) == CAREHARE_PROPERTY_CLUSTER_ID);

/* Offset of each string member; 0 (the flags) for the others. */
static const gsize string_offsets[N_PROPS] = {
  [PROP_CONTENT_TYPE] = offsetof (CarehareBasicProperties, content_type),
  [PROP_CONTENT_ENCODING] = offsetof (CarehareBasicProperties, content_encoding),
  [PROP_CORRELATION_ID] = offsetof (CarehareBasicProperties, correlation_id),
  [PROP_REPLY_TO] = offsetof (CarehareBasicProperties, reply_to),
  [PROP_EXPIRATION] = offsetof (CarehareBasicProperties, expiration),
  [PROP_MESSAGE_ID] = offsetof (CarehareBasicProperties, message_id),
  [PROP_TYPE] = offsetof (CarehareBasicProperties, type),
  [PROP_USER_ID] = offsetof (CarehareBasicProperties, user_id),
  [PROP_APP_ID] = offsetof (CarehareBasicProperties, app_id),
  [PROP_CLUSTER_ID] = offsetof (CarehareBasicProperties, cluster_id),
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (CarehareProperties, carehare_properties, G_TYPE_OBJECT)

static inline char **
string_member (CarehareBasicProperties *basic,
               guint                    prop_id)
{
  return (char **) (gpointer) ((guint8 *) basic + string_offsets[prop_id]);
}

static const char *
get_string (CarehareProperties *self,
            guint               prop_id)
{
  g_return_val_if_fail (CAREHARE_IS_PROPERTIES (self), NULL);

  return *string_member (&self->basic, prop_id);
}

static void
set_string (CarehareProperties *self,
            guint               prop_id,
            const char         *value)
{
  char **member;

  g_return_if_fail (CAREHARE_IS_PROPERTIES (self));
  g_return_if_fail (value == NULL || g_utf8_validate (value, -1, NULL));

  member = string_member (&self->basic, prop_id);
  if (g_strcmp0 (*member, value) == 0)
    return;

  g_free (*member);
  *member = g_strdup (value);
  if (value != NULL)
    self->basic.flags |= PROP_FLAG (prop_id);
  else
    self->basic.flags &= ~PROP_FLAG (prop_id);

  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

/* Sets or clears the flag of a numeric property; TRUE if anything changed. */
static gboolean
update_number (CarehareProperties *self,
               guint               prop_id,
               gboolean            present,
               guint64             old_value,
               guint64             new_value)
{
  guint16 flag = PROP_FLAG (prop_id);
  gboolean was_present = (self->basic.flags & flag) != 0;

  if (was_present == present && (!present || old_value == new_value))
    return FALSE;

  if (present)
    self->basic.flags |= flag;
  else
    self->basic.flags &= ~flag;
  return TRUE;
}

static void
carehare_properties_finalize (GObject *object)
{
  CarehareProperties *self = CAREHARE_PROPERTIES (object);

  carehare_basic_properties_clear (&self->basic);

  G_OBJECT_CLASS (carehare_properties_parent_class)->finalize (object);
}

static void
carehare_properties_get_property (GObject    *object,
                                  guint       prop_id,
                                  GValue     *value,
                                  GParamSpec *pspec)
{
  CarehareProperties *self = CAREHARE_PROPERTIES (object);

  switch (prop_id)
    {
    case PROP_CONTENT_TYPE:
    case PROP_CONTENT_ENCODING:
    case PROP_CORRELATION_ID:
    case PROP_REPLY_TO:
    case PROP_EXPIRATION:
    case PROP_MESSAGE_ID:
    case PROP_TYPE:
    case PROP_USER_ID:
    case PROP_APP_ID:
    case PROP_CLUSTER_ID:
      g_value_set_string (value, get_string (self, prop_id));
      break;
    case PROP_HEADERS:
      g_value_set_variant (value, self->basic.headers);
      break;
    case PROP_DELIVERY_MODE:
      g_value_set_uint (value, carehare_properties_get_delivery_mode (self));
      break;
    case PROP_PRIORITY:
      g_value_set_int (value, carehare_properties_get_priority (self));
      break;
    case PROP_TIMESTAMP:
      g_value_set_int64 (value, carehare_properties_get_timestamp (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_properties_set_property (GObject      *object,
                                  guint         prop_id,
                                  const GValue *value,
                                  GParamSpec   *pspec)
{
  CarehareProperties *self = CAREHARE_PROPERTIES (object);

  switch (prop_id)
    {
    case PROP_CONTENT_TYPE:
    case PROP_CONTENT_ENCODING:
    case PROP_CORRELATION_ID:
    case PROP_REPLY_TO:
    case PROP_EXPIRATION:
    case PROP_MESSAGE_ID:
    case PROP_TYPE:
    case PROP_USER_ID:
    case PROP_APP_ID:
    case PROP_CLUSTER_ID:
      set_string (self, prop_id, g_value_get_string (value));
      break;
    case PROP_HEADERS:
      carehare_properties_set_headers (self, g_value_get_variant (value));
      break;
    case PROP_DELIVERY_MODE:
      carehare_properties_set_delivery_mode (self, g_value_get_uint (value));
      break;
    case PROP_PRIORITY:
      carehare_properties_set_priority (self, g_value_get_int (value));
      break;
    case PROP_TIMESTAMP:
      carehare_properties_set_timestamp (self, g_value_get_int64 (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

#define STRING_PROP(id, name) \
  properties[id] = g_param_spec_string (name, NULL, NULL, NULL, \
                                        G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | \
                                        G_PARAM_STATIC_STRINGS)

static void
carehare_properties_class_init (CareharePropertiesClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = carehare_properties_finalize;
  object_class->get_property = carehare_properties_get_property;
  object_class->set_property = carehare_properties_set_property;

  /**
   * CarehareProperties:content-type:
   *
   * The MIME type of the body, such as `application/json`; %NULL when
   * absent.
   */
  STRING_PROP (PROP_CONTENT_TYPE, "content-type");

  /**
   * CarehareProperties:content-encoding:
   *
   * The encoding of the body, such as `gzip`; %NULL when absent.
   */
  STRING_PROP (PROP_CONTENT_ENCODING, "content-encoding");

  /**
   * CarehareProperties:headers:
   *
   * The application headers, an `a{sv}` dictionary; %NULL when absent.
   *
   * Values keep their AMQP field types both ways: for example an `x-delay`
   * sent as `int32` (`i`) stays `i`, and a nested table is an `a{sv}`.
   */
  properties[PROP_HEADERS] =
    g_param_spec_variant ("headers", NULL, NULL, G_VARIANT_TYPE_VARDICT, NULL,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareProperties:delivery-mode:
   *
   * 1 for a transient message, 2 for a persistent one (written to disk by a
   * durable queue); 0 when absent, which brokers treat as transient.
   */
  properties[PROP_DELIVERY_MODE] =
    g_param_spec_uint ("delivery-mode", NULL, NULL, 0, 2, 0,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareProperties:priority:
   *
   * The message priority, 0 to 255 (queues declared with `x-max-priority`
   * honour it); -1 when absent.
   */
  properties[PROP_PRIORITY] =
    g_param_spec_int ("priority", NULL, NULL, -1, G_MAXUINT8, -1,
                      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareProperties:correlation-id:
   *
   * An application identifier relating this message to another, typically
   * a request to its reply; %NULL when absent.
   */
  STRING_PROP (PROP_CORRELATION_ID, "correlation-id");

  /**
   * CarehareProperties:reply-to:
   *
   * The name of the queue to reply to; %NULL when absent.
   */
  STRING_PROP (PROP_REPLY_TO, "reply-to");

  /**
   * CarehareProperties:expiration:
   *
   * The per-message time to live: a decimal number of milliseconds as a
   * string, such as `"60000"`; %NULL when absent.
   */
  STRING_PROP (PROP_EXPIRATION, "expiration");

  /**
   * CarehareProperties:message-id:
   *
   * An application message identifier; %NULL when absent.
   */
  STRING_PROP (PROP_MESSAGE_ID, "message-id");

  /**
   * CarehareProperties:timestamp:
   *
   * The message time in seconds since the Unix epoch; -1 when absent.
   *
   * AMQP timestamps are unsigned 64-bit numbers: a received one above
   * %G_MAXINT64 reads as %G_MAXINT64.
   */
  properties[PROP_TIMESTAMP] =
    g_param_spec_int64 ("timestamp", NULL, NULL, -1, G_MAXINT64, -1,
                        G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareProperties:type: (setter set_message_type) (getter get_message_type)
   *
   * The application's message type name; %NULL when absent.
   *
   * Its C accessors are [method@Carehare.Properties.get_message_type] and
   * [method@Carehare.Properties.set_message_type], since
   * `carehare_properties_get_type()` is the class's #GType.
   */
  STRING_PROP (PROP_TYPE, "type");

  /**
   * CarehareProperties:user-id:
   *
   * The user who published the message; RabbitMQ rejects a message whose
   * user-id is not the connection's user. %NULL when absent.
   */
  STRING_PROP (PROP_USER_ID, "user-id");

  /**
   * CarehareProperties:app-id:
   *
   * The publishing application's identifier; %NULL when absent.
   */
  STRING_PROP (PROP_APP_ID, "app-id");

  /**
   * CarehareProperties:cluster-id:
   *
   * Deprecated by AMQP 0-9-1 and unused by RabbitMQ, kept so that every
   * property round-trips; %NULL when absent.
   */
  STRING_PROP (PROP_CLUSTER_ID, "cluster-id");

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

#undef STRING_PROP

static void
carehare_properties_init (CarehareProperties *self)
{
}

/**
 * carehare_properties_new:
 *
 * Creates properties with every one absent.
 *
 * Returns: (transfer full): new properties
 */
CarehareProperties *
carehare_properties_new (void)
{
  return g_object_new (CAREHARE_TYPE_PROPERTIES, NULL);
}

/**
 * carehare_properties_copy:
 * @self: properties
 *
 * Copies @self: changing the copy leaves @self as it was.
 *
 * Returns: (transfer full): a copy of @self
 */
CarehareProperties *
carehare_properties_copy (CarehareProperties *self)
{
  CarehareProperties *copy;
  guint prop_id;

  g_return_val_if_fail (CAREHARE_IS_PROPERTIES (self), NULL);

  copy = carehare_properties_new ();
  copy->basic = self->basic;
  for (prop_id = PROP_0 + 1; prop_id < N_PROPS; prop_id++)
    {
      if (string_offsets[prop_id] != 0)
        {
          char **member = string_member (&copy->basic, prop_id);
          *member = g_strdup (*member);
        }
    }
  /* GVariant is immutable: sharing it is as good as a deep copy. */
  if (copy->basic.headers != NULL)
    g_variant_ref (copy->basic.headers);

  return copy;
}

/* ---- private: conversions for the wire codec ----------------------------- */

void
carehare_properties_to_basic (CarehareProperties      *self,
                              CarehareBasicProperties *basic)
{
  g_return_if_fail (self == NULL || CAREHARE_IS_PROPERTIES (self));
  g_return_if_fail (basic != NULL);

  if (self != NULL)
    *basic = self->basic;
  else
    memset (basic, 0, sizeof *basic);
}

CarehareProperties *
carehare_properties_new_take_basic (CarehareBasicProperties *basic)
{
  CarehareProperties *self;
  guint prop_id;

  g_return_val_if_fail (basic != NULL, NULL);
  g_return_val_if_fail (basic->headers == NULL ||
                        g_variant_is_of_type (basic->headers, G_VARIANT_TYPE_VARDICT), NULL);

  self = carehare_properties_new ();
  self->basic = *basic;
  memset (basic, 0, sizeof *basic);
  self->basic.flags &= CAREHARE_PROPERTY_ALL;

  /* Restore the invariant (member set <=> flag set); the decoder already
   * keeps it, so this normally changes nothing. */
  for (prop_id = PROP_0 + 1; prop_id < N_PROPS; prop_id++)
    {
      gboolean present = (self->basic.flags & PROP_FLAG (prop_id)) != 0;

      if (string_offsets[prop_id] != 0)
        {
          char **member = string_member (&self->basic, prop_id);

          if (present && *member == NULL)
            *member = g_strdup ("");
          else if (!present)
            g_clear_pointer (member, g_free);
        }
    }
  if ((self->basic.flags & CAREHARE_PROPERTY_HEADERS) == 0)
    g_clear_pointer (&self->basic.headers, g_variant_unref);
  else if (self->basic.headers == NULL)
    self->basic.headers = g_variant_ref_sink (g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0));
  else
    g_variant_take_ref (self->basic.headers);  /* a floating one is ours now */

  return self;
}

/* ---- public API: accessors ------------------------------------------------ */

/**
 * carehare_properties_get_content_type:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:content-type], the MIME type of the body.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_content_type (CarehareProperties *self)
{
  return get_string (self, PROP_CONTENT_TYPE);
}

/**
 * carehare_properties_set_content_type:
 * @self: properties
 * @content_type: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:content-type], the MIME type of the body.
 */
void
carehare_properties_set_content_type (CarehareProperties *self,
                                      const char         *content_type)
{
  set_string (self, PROP_CONTENT_TYPE, content_type);
}

/**
 * carehare_properties_get_content_encoding:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:content-encoding], the encoding of the body.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_content_encoding (CarehareProperties *self)
{
  return get_string (self, PROP_CONTENT_ENCODING);
}

/**
 * carehare_properties_set_content_encoding:
 * @self: properties
 * @content_encoding: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:content-encoding], the encoding of the body.
 */
void
carehare_properties_set_content_encoding (CarehareProperties *self,
                                          const char         *content_encoding)
{
  set_string (self, PROP_CONTENT_ENCODING, content_encoding);
}

/**
 * carehare_properties_get_correlation_id:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:correlation-id], the identifier relating this message to another.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_correlation_id (CarehareProperties *self)
{
  return get_string (self, PROP_CORRELATION_ID);
}

/**
 * carehare_properties_set_correlation_id:
 * @self: properties
 * @correlation_id: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:correlation-id], the identifier relating this message to another.
 */
void
carehare_properties_set_correlation_id (CarehareProperties *self,
                                        const char         *correlation_id)
{
  set_string (self, PROP_CORRELATION_ID, correlation_id);
}

/**
 * carehare_properties_get_reply_to:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:reply-to], the name of the queue to reply to.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_reply_to (CarehareProperties *self)
{
  return get_string (self, PROP_REPLY_TO);
}

/**
 * carehare_properties_set_reply_to:
 * @self: properties
 * @reply_to: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:reply-to], the name of the queue to reply to.
 */
void
carehare_properties_set_reply_to (CarehareProperties *self,
                                  const char         *reply_to)
{
  set_string (self, PROP_REPLY_TO, reply_to);
}

/**
 * carehare_properties_get_expiration:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:expiration], the time to live in milliseconds, as a decimal string.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_expiration (CarehareProperties *self)
{
  return get_string (self, PROP_EXPIRATION);
}

/**
 * carehare_properties_set_expiration:
 * @self: properties
 * @expiration: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:expiration], the time to live in milliseconds, as a decimal string.
 */
void
carehare_properties_set_expiration (CarehareProperties *self,
                                    const char         *expiration)
{
  set_string (self, PROP_EXPIRATION, expiration);
}

/**
 * carehare_properties_get_message_id:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:message-id], the application message identifier.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_message_id (CarehareProperties *self)
{
  return get_string (self, PROP_MESSAGE_ID);
}

/**
 * carehare_properties_set_message_id:
 * @self: properties
 * @message_id: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:message-id], the application message identifier.
 */
void
carehare_properties_set_message_id (CarehareProperties *self,
                                    const char         *message_id)
{
  set_string (self, PROP_MESSAGE_ID, message_id);
}

/**
 * carehare_properties_get_message_type:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:type], the application's message type name.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_message_type (CarehareProperties *self)
{
  return get_string (self, PROP_TYPE);
}

/**
 * carehare_properties_set_message_type:
 * @self: properties
 * @message_type: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:type], the application's message type name.
 */
void
carehare_properties_set_message_type (CarehareProperties *self,
                                      const char         *message_type)
{
  set_string (self, PROP_TYPE, message_type);
}

/**
 * carehare_properties_get_user_id:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:user-id], the publishing user.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_user_id (CarehareProperties *self)
{
  return get_string (self, PROP_USER_ID);
}

/**
 * carehare_properties_set_user_id:
 * @self: properties
 * @user_id: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:user-id], the publishing user.
 */
void
carehare_properties_set_user_id (CarehareProperties *self,
                                 const char         *user_id)
{
  set_string (self, PROP_USER_ID, user_id);
}

/**
 * carehare_properties_get_app_id:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:app-id], the publishing application's identifier.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_app_id (CarehareProperties *self)
{
  return get_string (self, PROP_APP_ID);
}

/**
 * carehare_properties_set_app_id:
 * @self: properties
 * @app_id: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:app-id], the publishing application's identifier.
 */
void
carehare_properties_set_app_id (CarehareProperties *self,
                                const char         *app_id)
{
  set_string (self, PROP_APP_ID, app_id);
}

/**
 * carehare_properties_get_cluster_id:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:cluster-id], the (deprecated) cluster identifier.
 *
 * Returns: (nullable): the value, or %NULL when absent
 */
const char *
carehare_properties_get_cluster_id (CarehareProperties *self)
{
  return get_string (self, PROP_CLUSTER_ID);
}

/**
 * carehare_properties_set_cluster_id:
 * @self: properties
 * @cluster_id: (nullable): the new value (UTF-8), or %NULL to remove it
 *
 * Sets [property@Carehare.Properties:cluster-id], the (deprecated) cluster identifier.
 */
void
carehare_properties_set_cluster_id (CarehareProperties *self,
                                    const char         *cluster_id)
{
  set_string (self, PROP_CLUSTER_ID, cluster_id);
}

/**
 * carehare_properties_get_headers:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:headers], the application headers.
 *
 * Returns: (transfer none) (nullable): an `a{sv}` dictionary, or %NULL when
 *   absent
 */
GVariant *
carehare_properties_get_headers (CarehareProperties *self)
{
  g_return_val_if_fail (CAREHARE_IS_PROPERTIES (self), NULL);

  return self->basic.headers;
}

/**
 * carehare_properties_set_headers:
 * @self: properties
 * @headers: (nullable): an `a{sv}` dictionary, or %NULL to remove the
 *   headers; a floating reference is sunk
 *
 * Sets [property@Carehare.Properties:headers], the application headers.
 */
void
carehare_properties_set_headers (CarehareProperties *self,
                                 GVariant           *headers)
{
  g_return_if_fail (CAREHARE_IS_PROPERTIES (self));
  g_return_if_fail (headers == NULL || g_variant_is_of_type (headers, G_VARIANT_TYPE_VARDICT));

  if (headers != NULL)
    g_variant_ref_sink (headers);

  if (self->basic.headers == headers ||
      (self->basic.headers != NULL && headers != NULL &&
       g_variant_equal (self->basic.headers, headers)))
    {
      g_clear_pointer (&headers, g_variant_unref);
      return;
    }

  g_clear_pointer (&self->basic.headers, g_variant_unref);
  self->basic.headers = headers;
  if (headers != NULL)
    self->basic.flags |= CAREHARE_PROPERTY_HEADERS;
  else
    self->basic.flags &= ~CAREHARE_PROPERTY_HEADERS;

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HEADERS]);
}

/**
 * carehare_properties_get_delivery_mode:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:delivery-mode].
 *
 * Returns: 1 (transient), 2 (persistent), or 0 when absent; a received
 *   message may carry other values, which brokers treat as transient
 */
guint
carehare_properties_get_delivery_mode (CarehareProperties *self)
{
  g_return_val_if_fail (CAREHARE_IS_PROPERTIES (self), 0);

  if ((self->basic.flags & CAREHARE_PROPERTY_DELIVERY_MODE) == 0)
    return 0;
  return self->basic.delivery_mode;
}

/**
 * carehare_properties_set_delivery_mode:
 * @self: properties
 * @delivery_mode: 1 (transient), 2 (persistent), or 0 to remove it
 *
 * Sets [property@Carehare.Properties:delivery-mode].
 */
void
carehare_properties_set_delivery_mode (CarehareProperties *self,
                                       guint               delivery_mode)
{
  g_return_if_fail (CAREHARE_IS_PROPERTIES (self));
  g_return_if_fail (delivery_mode <= 2);

  if (update_number (self, PROP_DELIVERY_MODE, delivery_mode != 0,
                     self->basic.delivery_mode, delivery_mode))
    {
      self->basic.delivery_mode = (guint8) delivery_mode;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_DELIVERY_MODE]);
    }
}

/**
 * carehare_properties_get_priority:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:priority].
 *
 * Returns: the priority (0 to 255), or -1 when absent
 */
int
carehare_properties_get_priority (CarehareProperties *self)
{
  g_return_val_if_fail (CAREHARE_IS_PROPERTIES (self), -1);

  if ((self->basic.flags & CAREHARE_PROPERTY_PRIORITY) == 0)
    return -1;
  return self->basic.priority;
}

/**
 * carehare_properties_set_priority:
 * @self: properties
 * @priority: the priority (0 to 255), or -1 to remove it
 *
 * Sets [property@Carehare.Properties:priority].
 */
void
carehare_properties_set_priority (CarehareProperties *self,
                                  int                 priority)
{
  g_return_if_fail (CAREHARE_IS_PROPERTIES (self));
  g_return_if_fail (priority >= -1 && priority <= G_MAXUINT8);

  if (update_number (self, PROP_PRIORITY, priority != -1,
                     self->basic.priority, (guint64) MAX (priority, 0)))
    {
      self->basic.priority = (guint8) MAX (priority, 0);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PRIORITY]);
    }
}

/**
 * carehare_properties_get_timestamp:
 * @self: properties
 *
 * Gets [property@Carehare.Properties:timestamp].
 *
 * Returns: seconds since the Unix epoch, or -1 when absent
 */
gint64
carehare_properties_get_timestamp (CarehareProperties *self)
{
  g_return_val_if_fail (CAREHARE_IS_PROPERTIES (self), -1);

  if ((self->basic.flags & CAREHARE_PROPERTY_TIMESTAMP) == 0)
    return -1;
  return (gint64) MIN (self->basic.timestamp, (guint64) G_MAXINT64);
}

/**
 * carehare_properties_set_timestamp:
 * @self: properties
 * @timestamp: seconds since the Unix epoch, or -1 to remove it
 *
 * Sets [property@Carehare.Properties:timestamp].
 */
void
carehare_properties_set_timestamp (CarehareProperties *self,
                                   gint64              timestamp)
{
  g_return_if_fail (CAREHARE_IS_PROPERTIES (self));
  g_return_if_fail (timestamp >= -1);

  if (update_number (self, PROP_TIMESTAMP, timestamp != -1,
                     self->basic.timestamp, (guint64) MAX (timestamp, 0)))
    {
      self->basic.timestamp = (guint64) MAX (timestamp, 0);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TIMESTAMP]);
    }
}
