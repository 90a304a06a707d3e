/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): consumer channels. A
 * CarehareProtocolConsumer owns a channel (Qos and Consume pipelined with
 * Channel.Open), receives deliveries in order with the other events,
 * counts those not settled against its prefetch, sends acks and nacks only
 * for deliveries the broker still owes a settle, rejects a delivery this
 * program cannot take, and ends on its own close, the server's cancel or
 * the connection's end.
 */

#include "carehare-protocol-private.h"

#include <string.h>

void
carehare_protocol_delivery_free (CarehareProtocolDelivery *delivery)
{
  if (delivery == NULL)
    return;
  g_free (delivery->consumer_tag);
  g_free (delivery->exchange);
  g_free (delivery->routing_key);
  carehare_basic_properties_clear (&delivery->properties);
  g_clear_pointer (&delivery->body, g_bytes_unref);
  g_free (delivery);
}

static CarehareProtocolConsumer *
consumer_ref (CarehareProtocolConsumer *consumer)
{
  consumer->ref_count++;
  return consumer;
}

void
_carehare_protocol_consumer_unref_internal (CarehareProtocolConsumer *consumer)
{
  g_assert (consumer->ref_count > 0);
  if (--consumer->ref_count > 0)
    return;
  g_assert (consumer->start_op == NULL);
  g_assert (consumer->close_ops->len == 0);
  _carehare_protocol_content_clear (&consumer->content);
  g_tree_unref (consumer->unsettled);
  g_ptr_array_unref (consumer->close_ops);
  g_free (consumer->queue);
  g_free (consumer->tag);
  g_clear_pointer (&consumer->consume_frame, g_byte_array_unref);
  g_free (consumer);
}

void
carehare_protocol_consumer_unref (CarehareProtocolConsumer *consumer)
{
  g_return_if_fail (consumer != NULL);

  /* The owner is gone: no more callbacks. */
  consumer->callbacks.delivery = NULL;
  consumer->callbacks.closed = NULL;
  consumer->callbacks.rejected = NULL;
  _carehare_protocol_consumer_unref_internal (consumer);
}

const char *
carehare_protocol_consumer_get_tag (CarehareProtocolConsumer *consumer)
{
  g_return_val_if_fail (consumer != NULL, NULL);
  return consumer->tag;
}

/* Queues the owner's closed callback, once. Takes @error. */
static void
consumer_tell_closed (CarehareProtocol         *self,
                      CarehareProtocolConsumer *consumer,
                      GError                   *error)
{
  Event *ev;

  if (consumer->told_closed)
    {
      g_error_free (error);
      return;
    }
  consumer->told_closed = TRUE;
  ev = g_new0 (Event, 1);
  ev->kind = EVENT_CONSUMER_CLOSED;
  ev->consumer = consumer_ref (consumer);
  ev->error = error;
  g_queue_push_tail (&self->events, ev);
}

/* @consumer is over: fail its start or tell its owner (unless we closed
 * it, or it was told already), complete pending closes, and drop the
 * protocol's reference. Takes @error; NULL when we closed it. */
void
_carehare_protocol_consumer_end (CarehareProtocol         *self,
                                 CarehareProtocolConsumer *consumer,
                                 GError                   *error)
{
  gboolean ours = consumer->state == CONSUMER_CLOSING;

  if (consumer->state == CONSUMER_ENDED)
    {
      g_clear_error (&error);
      return;
    }
  if (consumer->state == CONSUMER_WAITING)
    g_queue_remove (&self->waiting, consumer->start_op);
  consumer->state = CONSUMER_ENDED;
  consumer->channel = 0;
  _carehare_protocol_content_clear (&consumer->content);
  g_tree_remove_all (consumer->unsettled);

  if (consumer->start_op != NULL)
    {
      _carehare_protocol_complete (self, consumer->start_op, NULL, error);
      consumer->start_op = NULL;
      error = NULL;
    }
  else if (!ours && error != NULL)
    consumer_tell_closed (self, consumer, g_steal_pointer (&error));
  g_clear_error (&error);

  for (guint i = 0; i < consumer->close_ops->len; i++)
    _carehare_protocol_complete (self, g_ptr_array_index (consumer->close_ops, i), NULL, NULL);
  g_ptr_array_set_size (consumer->close_ops, 0);

  if (g_ptr_array_remove_fast (self->consumers, consumer))
    _carehare_protocol_consumer_unref_internal (consumer);
}

void
_carehare_protocol_consumer_start (CarehareProtocol         *self,
                                   CarehareProtocolConsumer *consumer,
                                   guint16                   id)
{
  Channel *ch = &self->channels[id];
  CarehareMethod qos = { .id = CAREHARE_METHOD_BASIC_QOS };
  GByteArray *consume = consumer->consume_frame;

  ch->kind = CHANNEL_KIND_CONSUMER;
  ch->consumer = consumer;
  consumer->channel = id;
  consumer->state = CONSUMER_STARTING;

  qos.basic_qos.prefetch_size = consumer->prefetch_size;
  qos.basic_qos.prefetch_count = consumer->prefetch_count;
  _carehare_protocol_append_method (self, id, &qos);
  /* Encoded for channel 0 when it was asked for; bytes 1-2 are the
   * channel. */
  consume->data[1] = id >> 8;
  consume->data[2] = id & 0xff;
  g_byte_array_append (self->out, consume->data, consume->len);
  g_clear_pointer (&consumer->consume_frame, g_byte_array_unref);
}

/* Whether a live consumer other than @consumer has, or asked for, @tag.
 * One the server cancelled, or that is closing (its owner was told it is
 * over, or gave it up), no longer counts: the broker has forgotten it or
 * will when its channel closes, deliveries are told apart by channel, and
 * nothing would tell the program when the tag became free. */
static gboolean
consumer_tag_in_use (CarehareProtocol         *self,
                     CarehareProtocolConsumer *consumer,
                     const char               *tag)
{
  for (guint i = 0; i < self->consumers->len; i++)
    {
      CarehareProtocolConsumer *other = g_ptr_array_index (self->consumers, i);

      if (other != consumer &&
          (other->state == CONSUMER_WAITING || other->state == CONSUMER_STARTING ||
           other->state == CONSUMER_ACTIVE) &&
          g_strcmp0 (other->tag, tag) == 0)
        return TRUE;
    }
  return FALSE;
}

static gint
compare_tags (gconstpointer a,
              gconstpointer b,
              gpointer      user_data)
{
  guint64 x = *(const guint64 *) a;
  guint64 y = *(const guint64 *) b;

  return x < y ? -1 : x > y;
}

static gboolean
server_is_rabbitmq (CarehareProtocol *self)
{
  const char *product = NULL;

  return self->server_properties != NULL &&
         g_variant_lookup (self->server_properties, "product", "&s", &product) &&
         g_str_equal (product, "RabbitMQ");
}

CarehareProtocolConsumer *
carehare_protocol_consume (CarehareProtocol                        *self,
                           const char                              *queue,
                           guint32                                  prefetch_size,
                           guint16                                  prefetch_count,
                           const CarehareProtocolConsumerCallbacks *callbacks,
                           gpointer                                 user_data,
                           CarehareProtocolOpCallback               start,
                           gpointer                                 start_data)
{
  return carehare_protocol_consume_full (self, queue, prefetch_size, prefetch_count, NULL,
                                         callbacks, user_data, start, start_data);
}

CarehareProtocolConsumer *
carehare_protocol_consume_full (CarehareProtocol                        *self,
                                const char                              *queue,
                                guint32                                  prefetch_size,
                                guint16                                  prefetch_count,
                                const CarehareProtocolConsumeOptions    *options,
                                const CarehareProtocolConsumerCallbacks *callbacks,
                                gpointer                                 user_data,
                                CarehareProtocolOpCallback               start,
                                gpointer                                 start_data)
{
  static const CarehareProtocolConsumeOptions no_options = { FALSE, NULL, NULL };
  CarehareMethod consume = { .id = CAREHARE_METHOD_BASIC_CONSUME };
  CarehareProtocolConsumer *consumer;
  CarehareProtocolOp *op;
  GError *error = NULL;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (queue != NULL, NULL);
  g_return_val_if_fail (start != NULL, NULL);
  if (options == NULL)
    options = &no_options;
  g_return_val_if_fail (options->arguments == NULL ||
                        g_variant_is_of_type (options->arguments, G_VARIANT_TYPE ("a{s*}")),
                        NULL);

  _carehare_protocol_enter (self);
  consumer = g_new0 (CarehareProtocolConsumer, 1);
  consumer->ref_count = 1;  /* the caller's */
  consumer->queue = g_strdup (queue);
  consumer->prefetch_size = prefetch_size;
  consumer->prefetch_count = prefetch_count;
  consumer->close_ops = g_ptr_array_new ();
  consumer->unsettled = g_tree_new_full (compare_tags, NULL, g_free, NULL);
  if (callbacks != NULL)
    consumer->callbacks = *callbacks;
  consumer->user_data = user_data;
  if (options->consumer_tag != NULL && *options->consumer_tag != '\0')
    consumer->tag = g_strdup (options->consumer_tag);

  /* Acks are required; an empty tag lets the server name the consumer. */
  consume.basic_consume.queue = (char *) queue;
  consume.basic_consume.consumer_tag = (char *) (options->consumer_tag != NULL
                                                 ? options->consumer_tag : "");
  consume.basic_consume.exclusive = options->exclusive;
  consume.basic_consume.arguments = options->arguments;
  consumer->consume_frame = g_byte_array_new ();

  op = _carehare_protocol_op_new (OP_CONSUME, start, start_data);
  op->consumer = consumer;
  consumer->start_op = op;
  g_ptr_array_add (self->consumers, consumer_ref (consumer));

  if (strlen (queue) > 255 || !g_utf8_validate (queue, -1, NULL))
    _carehare_protocol_consumer_end (self, consumer,
                                     g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                  "Cannot consume from queue '%s': a queue "
                                                  "name is at most 255 bytes of UTF-8", queue));
  else if (self->state != STATE_OPEN)
    _carehare_protocol_consumer_end (self, consumer,
                                     _carehare_protocol_closed_error_for (self->state == STATE_FINISHED
                                                                          ? self->finish_error : NULL));
  else if (*queue == '\0')
    _carehare_protocol_consumer_end (self, consumer,
                                     _carehare_protocol_empty_queue_name_error ("basic.consume"));
  else if (!carehare_wire_append_method_frame (consumer->consume_frame, 0, &consume, &error))
    {
      /* A tag over 255 bytes, an argument with no AMQP type: the
       * caller's mistake, reported where it waits. */
      _carehare_protocol_consumer_end (self, consumer,
                                       g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                    "Cannot consume from queue '%s': %s",
                                                    queue, error->message));
      g_error_free (error);
    }
  else if (consumer->consume_frame->len > self->frame_max)
    _carehare_protocol_consumer_end (self, consumer,
                                     g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                  "Cannot consume from queue '%s': its "
                                                  "basic.consume frame of %u bytes exceeds the "
                                                  "negotiated frame_max of %u bytes", queue,
                                                  consumer->consume_frame->len, self->frame_max));
  else if (options->consumer_tag != NULL && *options->consumer_tag != '\0' &&
           consumer_tag_in_use (self, consumer, options->consumer_tag))
    /* The broker would accept it on another channel, and the tag would
     * name two consumers in the management UI and in logs. */
    _carehare_protocol_consumer_end (self, consumer,
                                     g_error_new (G_IO_ERROR, G_IO_ERROR_EXISTS,
                                                  "Cannot consume from queue '%s': consumer tag "
                                                  "'%s' is already used by another consumer of "
                                                  "this connection", queue,
                                                  options->consumer_tag));
  else if (prefetch_size != 0 && server_is_rabbitmq (self))
    /* RabbitMQ answers basic.qos with prefetch_size by closing the whole
     * connection (540 NOT_IMPLEMENTED). */
    _carehare_protocol_consumer_end (self, consumer,
                                     g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                  "Cannot consume from queue '%s' with "
                                                  "prefetch_size %u: RabbitMQ supports only 0",
                                                  queue, prefetch_size));
  else
    {
      consumer->state = CONSUMER_WAITING;
      _carehare_protocol_dispatch (self, op);
    }
  _carehare_protocol_leave (self);
  return consumer;
}

static void consumer_close_channel (CarehareProtocol *self, CarehareProtocolConsumer *consumer,
                                    const char *why);

/* Settles *@tag (with @multiple, every tag up to it) among the deliveries
 * handed out and not settled yet. The broker closes the channel (406
 * PRECONDITION_FAILED "unknown delivery tag") for a tag it does not owe,
 * so a tag already settled, or never delivered, must not reach it:
 * returns FALSE when there is nothing to send. With @multiple too the tag
 * itself must be unsettled (RabbitMQ wants it so, and a tag the program
 * never got could cover deliveries it has not seen); tag 0 with @multiple
 * covers them all, and is sent as the highest. */
static guint
consumer_settle (CarehareProtocolConsumer *consumer,
                 guint64                  *tag,
                 gboolean                  multiple)
{
  guint64 highest;
  GTreeNode *node;
  guint n = 0;

  if (!multiple)
    return g_tree_remove (consumer->unsettled, tag) ? 1 : 0;

  if (*tag != 0)
    node = g_tree_lookup_node (consumer->unsettled, tag);
  else
    node = g_tree_node_last (consumer->unsettled);
  if (node == NULL)
    return 0;
  highest = *(const guint64 *) g_tree_node_key (node);
  while ((node = g_tree_node_first (consumer->unsettled)) != NULL)
    {
      guint64 key = *(const guint64 *) g_tree_node_key (node);

      if (key > highest)
        break;
      g_tree_remove (consumer->unsettled, &key);
      n++;
    }
  *tag = highest;
  return n;
}

/* A delivery its owner will never see (it gave its reference back): no
 * settle will come for it. */
void
_carehare_protocol_consumer_drop_delivery (CarehareProtocol         *self,
                                           CarehareProtocolConsumer *consumer,
                                           guint64                   delivery_tag)
{
  g_tree_remove (consumer->unsettled, &delivery_tag);
  if (consumer->state == CONSUMER_CANCELLED && g_tree_nnodes (consumer->unsettled) == 0)
    consumer_close_channel (self, consumer, "consumer cancelled by server");
}

/* Sends @method (an ack or a nack of *@tag) if it settles something. */
static void
consumer_send_ack (CarehareProtocol         *self,
                   CarehareProtocolConsumer *consumer,
                   CarehareMethod           *method,
                   guint64                  *tag,
                   gboolean                  multiple)
{
  guint n;

  /* After the consumer or the connection closed, acks are dropped: the
   * broker redelivers what was not acked. */
  if ((consumer->state != CONSUMER_ACTIVE && consumer->state != CONSUMER_CANCELLED) ||
      self->state != STATE_OPEN)
    {
      g_debug ("not sending %s of delivery tag %" G_GUINT64_FORMAT "%s: the %s is closed",
               carehare_method_name (method->id), *tag, multiple ? " (multiple)" : "",
               self->state != STATE_OPEN ? "connection" : "consumer's channel");
      return;
    }
  n = consumer_settle (consumer, tag, multiple);
  if (n == 0)
    {
      g_debug ("not sending %s of delivery tag %" G_GUINT64_FORMAT "%s on channel %u: "
               "no such delivery is waiting to be settled", carehare_method_name (method->id),
               *tag, multiple ? " (multiple)" : "", consumer->channel);
      return;
    }
  _carehare_protocol_append_method (self, consumer->channel, method);
  if (method->id == CAREHARE_METHOD_BASIC_ACK)
    self->stats.deliveries_acked += n;
  else
    self->stats.deliveries_nacked += n;

  /* Cancelled by the server: the channel was kept for these settles. */
  if (consumer->state == CONSUMER_CANCELLED && g_tree_nnodes (consumer->unsettled) == 0)
    consumer_close_channel (self, consumer, "consumer cancelled by server");
}

void
carehare_protocol_consumer_ack (CarehareProtocol         *self,
                                CarehareProtocolConsumer *consumer,
                                guint64                   delivery_tag,
                                gboolean                  multiple)
{
  CarehareMethod ack = { .id = CAREHARE_METHOD_BASIC_ACK };

  g_return_if_fail (self != NULL);
  g_return_if_fail (consumer != NULL);

  ack.basic_ack.delivery_tag = delivery_tag;
  ack.basic_ack.multiple = multiple;
  _carehare_protocol_enter (self);
  consumer_send_ack (self, consumer, &ack, &ack.basic_ack.delivery_tag, multiple);
  _carehare_protocol_leave (self);
}

void
carehare_protocol_consumer_nack (CarehareProtocol         *self,
                                 CarehareProtocolConsumer *consumer,
                                 guint64                   delivery_tag,
                                 gboolean                  multiple,
                                 gboolean                  requeue)
{
  CarehareMethod nack = { .id = CAREHARE_METHOD_BASIC_NACK };

  g_return_if_fail (self != NULL);
  g_return_if_fail (consumer != NULL);

  nack.basic_nack.delivery_tag = delivery_tag;
  nack.basic_nack.multiple = multiple;
  nack.basic_nack.requeue = requeue;
  _carehare_protocol_enter (self);
  consumer_send_ack (self, consumer, &nack, &nack.basic_nack.delivery_tag, multiple);
  _carehare_protocol_leave (self);
}

/* Another program's message whose header we cannot represent, or whose
 * body is larger than max_body_size: the connection is fine, only this
 * delivery fails. Reject it without requeueing (a requeued one would come
 * back forever; a dead-letter exchange can catch it) as soon as its
 * header is in, and tell the owner, in order with deliveries; its body is
 * skipped as it arrives. */
void
_carehare_protocol_consumer_reject (CarehareProtocol         *self,
                                    CarehareProtocolConsumer *consumer,
                                    Content                  *content)
{
  CarehareMethod reject = { .id = CAREHARE_METHOD_BASIC_REJECT };
  guint64 tag = content->method.basic_deliver.delivery_tag;
  Event *ev;

  g_debug ("rejecting delivery tag %" G_GUINT64_FORMAT " on channel %u: %s",
           tag, consumer->channel, content->bad->message);
  reject.basic_reject.delivery_tag = tag;
  reject.basic_reject.requeue = FALSE;
  _carehare_protocol_append_method (self, consumer->channel, &reject);

  ev = g_new0 (Event, 1);
  ev->kind = EVENT_DELIVERY_REJECTED;
  ev->consumer = consumer_ref (consumer);
  ev->delivery_tag = tag;
  if (g_error_matches (content->bad, CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE))
    ev->error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE,
                             "Message with delivery tag %" G_GUINT64_FORMAT " rejected (not "
                             "requeued): %s", tag, content->bad->message);
  else
    ev->error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                             "Message with delivery tag %" G_GUINT64_FORMAT " rejected (not "
                             "requeued): its content header cannot be represented: %s",
                             tag, content->bad->message);
  g_queue_push_tail (&self->events, ev);
}

/* A whole basic.deliver (its method, header and body in @content, which
 * content_done() clears): queued for the owner, in order with the other
 * events, and counted as unsettled. */
void
_carehare_protocol_consumer_deliver (CarehareProtocol         *self,
                                     CarehareProtocolConsumer *consumer,
                                     Content                  *content)
{
  CarehareProtocolDelivery *delivery = _carehare_protocol_delivery_new_from_content (content);
  Event *ev = g_new0 (Event, 1);

  g_tree_insert (consumer->unsettled, g_memdup2 (&delivery->delivery_tag, sizeof (guint64)),
                 GUINT_TO_POINTER (1));
  self->stats.deliveries_received++;
  ev->kind = EVENT_DELIVERY;
  ev->consumer = consumer_ref (consumer);
  ev->delivery = delivery;
  g_queue_push_tail (&self->events, ev);
}

/* The message of a whole basic.deliver in @content, taken from it. */
CarehareProtocolDelivery *
_carehare_protocol_delivery_new_from_content (Content *content)
{
  CarehareBasicDeliver *deliver = &content->method.basic_deliver;
  CarehareProtocolDelivery *delivery = g_new0 (CarehareProtocolDelivery, 1);

  delivery->delivery_tag = deliver->delivery_tag;
  delivery->redelivered = deliver->redelivered;
  delivery->consumer_tag = g_steal_pointer (&deliver->consumer_tag);
  delivery->exchange = g_steal_pointer (&deliver->exchange);
  delivery->routing_key = g_steal_pointer (&deliver->routing_key);
  delivery->properties = content->props;
  memset (&content->props, 0, sizeof content->props);
  delivery->body = _carehare_protocol_content_take_body (content);
  return delivery;
}

void
_carehare_protocol_handle_consumer_method (CarehareProtocol         *self,
                                           guint16                   id,
                                           CarehareProtocolConsumer *consumer,
                                           CarehareMethod           *method)
{
  switch (method->id)
    {
    case CAREHARE_METHOD_BASIC_QOS_OK:
      return;

    case CAREHARE_METHOD_BASIC_CONSUME_OK:
      if (consumer->state != CONSUMER_STARTING)
        break;
      g_free (consumer->tag);
      consumer->tag = g_strdup (method->basic_consume_ok.consumer_tag);
      consumer->state = CONSUMER_ACTIVE;
      _carehare_protocol_complete (self, consumer->start_op, method, NULL);
      consumer->start_op = NULL;
      /* Its channel will not free up by itself now. */
      _carehare_protocol_fail_starved_waiters (self);
      return;

    case CAREHARE_METHOD_BASIC_DELIVER:
      if (consumer->state != CONSUMER_ACTIVE ||
          g_strcmp0 (method->basic_deliver.consumer_tag, consumer->tag) != 0)
        {
          _carehare_protocol_fail_unexpected (self, 505, method->id,
                                              "basic.deliver on channel %u for consumer tag "
                                              "'%s', which is not a consumer there", id,
                                              method->basic_deliver.consumer_tag);
          return;
        }
      /* Memory is bounded by the prefetch count only if the broker keeps
       * to it: one delivery more than the program asked for means it
       * ignores basic.qos and could push without limit. A tag that does
       * not rise would hide a delivery from the count. */
      if (method->basic_deliver.delivery_tag <= consumer->last_tag)
        {
          _carehare_protocol_fail_unexpected (self, 505, method->id,
                                              "basic.deliver on channel %u with delivery tag %"
                                              G_GUINT64_FORMAT ", not above the previous %"
                                              G_GUINT64_FORMAT, id,
                                              method->basic_deliver.delivery_tag,
                                              consumer->last_tag);
          return;
        }
      if (consumer->prefetch_count > 0 &&
          g_tree_nnodes (consumer->unsettled) >= consumer->prefetch_count)
        {
          _carehare_protocol_fail_unexpected (self, 505, method->id,
                                              "basic.deliver on channel %u with delivery tag %"
                                              G_GUINT64_FORMAT " exceeds the prefetch count of "
                                              "%u: %d deliveries are not acknowledged yet", id,
                                              method->basic_deliver.delivery_tag,
                                              consumer->prefetch_count,
                                              g_tree_nnodes (consumer->unsettled));
          return;
        }
      consumer->last_tag = method->basic_deliver.delivery_tag;
      _carehare_protocol_content_begin (self, id, &consumer->content, method);
      return;

    case CAREHARE_METHOD_BASIC_CANCEL:
      {
        /* consumer_cancel_notify: the queue was deleted, or its node went
         * away. No more deliveries come; the channel is kept only for
         * settling those handed out, then closed. */
        GError *error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                     "Consumer cancelled by server: the queue '%s' was "
                                     "deleted or became unavailable", consumer->queue);

        if (consumer->state == CONSUMER_CANCELLED)
          {
            g_error_free (error);
            return;
          }
        if (!method->basic_cancel.nowait)
          {
            CarehareMethod ok = { .id = CAREHARE_METHOD_BASIC_CANCEL_OK };

            ok.basic_cancel_ok.consumer_tag = method->basic_cancel.consumer_tag;
            _carehare_protocol_append_method (self, id, &ok);
          }
        if (consumer->state != CONSUMER_ACTIVE || g_tree_nnodes (consumer->unsettled) == 0)
          {
            _carehare_protocol_consumer_end (self, consumer, error);
            self->channels[id].consumer = NULL;
            _carehare_protocol_discard_channel (self, id, "consumer cancelled by server");
            return;
          }
        consumer->state = CONSUMER_CANCELLED;
        consumer_tell_closed (self, consumer, error);
        return;
      }

    case CAREHARE_METHOD_BASIC_CANCEL_OK:
      return;

    default:
      break;
    }
  _carehare_protocol_fail_unexpected (self, 505, method->id,
                                      "unexpected %s on consumer channel %u",
                                      carehare_method_name (method->id), id);
}

/* Sends Channel.Close for @consumer's channel; Close-Ok ends it. */
static void
consumer_close_channel (CarehareProtocol         *self,
                        CarehareProtocolConsumer *consumer,
                        const char               *why)
{
  consumer->state = CONSUMER_CLOSING;
  _carehare_protocol_content_clear (&consumer->content);
  _carehare_protocol_discard_channel (self, consumer->channel, why);
  /* _carehare_protocol_discard_channel() forgets the RPC op; the consumer
   * stays linked until Close-Ok ends it. */
  self->channels[consumer->channel].consumer = consumer;
}

CarehareProtocolOp *
carehare_protocol_consumer_close (CarehareProtocol           *self,
                                  CarehareProtocolConsumer   *consumer,
                                  CarehareProtocolOpCallback  callback,
                                  gpointer                    user_data)
{
  CarehareProtocolOp *op;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (consumer != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_CONSUMER_CLOSE, callback, user_data);
  op->consumer = consumer;

  switch (consumer->state)
    {
    case CONSUMER_ENDED:
      _carehare_protocol_complete (self, op, NULL, NULL);
      break;
    case CONSUMER_WAITING:
      g_ptr_array_add (consumer->close_ops, op);
      _carehare_protocol_consumer_end (self, consumer,
                                       g_error_new_literal (CAREHARE_ERROR,
                                                            CAREHARE_ERROR_CHANNEL_CLOSED,
                                                            "Consumer closed before it started"));
      break;
    case CONSUMER_STARTING:
    case CONSUMER_ACTIVE:
    case CONSUMER_CANCELLED:
      g_ptr_array_add (consumer->close_ops, op);
      if (consumer->start_op != NULL)
        {
          _carehare_protocol_complete (self, consumer->start_op, NULL,
                                       g_error_new_literal (CAREHARE_ERROR,
                                                            CAREHARE_ERROR_CHANNEL_CLOSED,
                                                            "Consumer closed before it started"));
          consumer->start_op = NULL;
        }
      consumer_close_channel (self, consumer, "consumer closed");
      break;
    case CONSUMER_CLOSING:
      g_ptr_array_add (consumer->close_ops, op);
      break;
    default:
      g_assert_not_reached ();
    }
  return _carehare_protocol_leave_with_op (self, op);
}
