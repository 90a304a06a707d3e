/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-consumer-object-private.h"

#include "carehare-connection-private.h"

/* The one path of ack(), nack(), ack_up_to() and nack_up_to(). The
 * protocol drops what the broker must not see: a tag settled already or
 * never delivered, and anything once the consumer's channel is closed.
 * After the broker cancelled the consumer, its channel stays open until
 * the deliveries handed out are settled. */
typedef struct {
  CarehareConsumer *self;
  guint64 delivery_tag;
  gboolean multiple;
  gboolean ack;
  gboolean requeue;
} SettleCall;

static void settle_run (CarehareConnection *connection,
                        gpointer            user_data);

static gpointer
settle_call_copy (gpointer data)
{
  SettleCall *copy = g_memdup2 (data, sizeof (SettleCall));

  g_object_ref (copy->self);
  return copy;
}

static void
settle_call_free (gpointer data)
{
  SettleCall *call = data;

  g_object_unref (call->self);
  g_free (call);
}

static void
settle (CarehareConsumer *self,
        guint64           delivery_tag,
        gboolean          multiple,
        gboolean          ack,
        gboolean          requeue)
{
  SettleCall call = { self, delivery_tag, multiple, ack, requeue };

  /* From a thread other than the one running the connection's context
   * (a GThreadPool worker), queued and not waited for. */
  if (self->connection != NULL)
    _carehare_connection_run_nowait (self->connection, settle_run, &call, settle_call_copy,
                                     settle_call_free);
  else
    _carehare_consumer_relay_run_nowait (self, settle_run, &call, settle_call_copy,
                                         settle_call_free);
}

/* settle() with the connection's context held. */
static void
settle_run (CarehareConnection *connection,
            gpointer            user_data)
{
  SettleCall *call = user_data;
  CarehareConsumer *self = call->self;
  guint64 delivery_tag = call->delivery_tag;
  gboolean multiple = call->multiple;
  gboolean ack = call->ack;
  gboolean requeue = call->requeue;
  g_autoptr(CarehareConsumer) keep = NULL;
  CarehareProtocol *protocol;

  /* Writing may find the connection dead: pending calls complete during
   * this one, and their callbacks may drop the program's last reference
   * on the consumer (which holds the connection). */
  /* No delivery has tag 0 (a call's reply has it): for the protocol core,
   * a multiple settle of 0 would cover every unsettled delivery. */
  if (delivery_tag == 0)
    {
      g_debug ("not settling delivery tag 0: no delivery has it");
      return;
    }
  keep = g_object_ref (self);
  if (self->relay != NULL)
    {
      self->relay->settle (self->relay_data, delivery_tag, multiple, ack, requeue);
      return;
    }
  protocol = _carehare_consumer_get_protocol (self);
  if (self->pc == NULL || protocol == NULL)
    {
      g_debug ("not settling delivery tag %" G_GUINT64_FORMAT ": the consumer or its "
               "connection is closed", delivery_tag);
      return;
    }
  if (ack)
    carehare_protocol_consumer_ack (protocol, self->pc, delivery_tag, multiple);
  else
    carehare_protocol_consumer_nack (protocol, self->pc, delivery_tag, multiple, requeue);
  _carehare_connection_update (self->connection);
}

/**
 * carehare_consumer_ack:
 * @self: a consumer
 * @delivery_tag: the [property@Carehare.Delivery:delivery-tag] of a message
 *
 * Acknowledges a message: the broker forgets it. Never fails and is never
 * waited for: from a thread other than the one running the connection's
 * main context it is queued for that thread, and returns at once. A tag already acknowledged or rejected, or never delivered,
 * is ignored (the broker would close the consumer's channel for it). After
 * the broker cancelled the consumer it still goes out: the channel stays
 * open until the messages taken are settled. Once the program closed the
 * consumer, or the connection closed, it is dropped and the broker
 * delivers the message again.
 */
void
carehare_consumer_ack (CarehareConsumer *self,
                       guint64           delivery_tag)
{
  g_return_if_fail (CAREHARE_IS_CONSUMER (self));
  settle (self, delivery_tag, FALSE, TRUE, FALSE);
}

/**
 * carehare_consumer_nack:
 * @self: a consumer
 * @delivery_tag: the [property@Carehare.Delivery:delivery-tag] of a message
 * @requeue: %TRUE to put the message back in the queue, %FALSE to drop it
 *   (or dead-letter it, if the queue has a dead-letter exchange)
 *
 * Rejects a message. Never fails and is never waited for, and is ignored
 * or dropped as [method@Carehare.Consumer.ack] is.
 */
void
carehare_consumer_nack (CarehareConsumer *self,
                        guint64           delivery_tag,
                        gboolean          requeue)
{
  g_return_if_fail (CAREHARE_IS_CONSUMER (self));
  settle (self, delivery_tag, FALSE, FALSE, requeue);
}

/**
 * carehare_consumer_ack_up_to:
 * @self: a consumer
 * @delivery_tag: the [property@Carehare.Delivery:delivery-tag] of a message
 *   this consumer handed out and that is not settled yet
 *
 * Acknowledges, in one frame (Basic.Ack with `multiple`), every message of
 * this consumer that is not settled yet, up to and including
 * @delivery_tag, so that a batch processed at once is settled at once. Never fails
 * and is never waited for. When @delivery_tag itself is already settled
 * (for example by an earlier call that covered it) or was never delivered,
 * nothing is sent and the messages stay unsettled: a tag the program never
 * got could cover messages it has not seen. Dropped once the consumer or
 * the connection closed, as [method@Carehare.Consumer.ack] is.
 */
void
carehare_consumer_ack_up_to (CarehareConsumer *self,
                             guint64           delivery_tag)
{
  g_return_if_fail (CAREHARE_IS_CONSUMER (self));
  settle (self, delivery_tag, TRUE, TRUE, FALSE);
}

/**
 * carehare_consumer_nack_up_to:
 * @self: a consumer
 * @delivery_tag: the [property@Carehare.Delivery:delivery-tag] of a message
 *   this consumer handed out and that is not settled yet
 * @requeue: %TRUE to put the messages back in the queue, %FALSE to drop
 *   them (or dead-letter them)
 *
 * Rejects, in one frame (Basic.Nack with `multiple`), every message of this
 * consumer that is not settled yet, up to and including @delivery_tag.
 * Never fails; ignored or dropped as [method@Carehare.Consumer.ack_up_to]
 * is.
 */
void
carehare_consumer_nack_up_to (CarehareConsumer *self,
                              guint64           delivery_tag,
                              gboolean          requeue)
{
  g_return_if_fail (CAREHARE_IS_CONSUMER (self));
  settle (self, delivery_tag, TRUE, FALSE, requeue);
}
