/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): cancelling an operation.
 * What a cancellation undoes depends on how far the operation got and on
 * its kind: an RPC waiting for a channel leaves the queue, one sent
 * completes with the broker's answer; so does a written publish, while an
 * unwritten one is dropped, and so does an Update-Secret (always sent at
 * once); a consumer's start closes its channel; a close stops waiting for
 * Close-Ok.
 */

#include "carehare-protocol-private.h"

void
carehare_protocol_cancel (CarehareProtocol   *self,
                          CarehareProtocolOp *op)
{
  g_return_if_fail (self != NULL);
  g_return_if_fail (op != NULL);

  if (op->done)
    return;

  _carehare_protocol_enter (self);
  switch (op->kind)
    {
    case OP_RPC:
      /* A request on the wire cannot be recalled (the broker declares,
       * binds or deletes all the same): it completes with the broker's
       * answer. One still waiting for a channel is dropped. */
      if (op->channel != 0)
        {
          _carehare_protocol_leave (self);
          return;
        }
      g_queue_remove (&self->waiting, op);
      break;
    case OP_HANDSHAKE:
      self->handshake = NULL;
      break;
    case OP_CLOSE:
      /* Only a close that waits for Close-Ok is pending: cancelling it
       * stops the wait, and the connection is over at once, as when the
       * close times out (every close op completes without error). */
      if (self->state == STATE_CLOSING)
        {
          _carehare_protocol_finish (self, NULL);
          _carehare_protocol_leave (self);
          return;
        }
      g_ptr_array_remove (self->close_ops, op);
      break;
    case OP_PUBLISH:
      /* Written publishes cannot be recalled: they complete with the
       * broker's answer. */
      if (op->written)
        {
          _carehare_protocol_leave (self);
          return;
        }
      g_queue_remove (&op->publisher->unwritten, op);
      _carehare_protocol_publisher_update_idle (self, op->publisher);
      break;
    case OP_CALL:
      /* Unlike a publish, a call wins at any time: its request's confirm
       * and its reply are then dropped. */
      _carehare_protocol_call_cancel (self, op);
      break;
    case OP_CONSUME:
      {
        CarehareProtocolConsumer *consumer = op->consumer;

        consumer->start_op = NULL;
        if (consumer->state == CONSUMER_WAITING)
          {
            g_queue_remove (&self->waiting, op);
            _carehare_protocol_consumer_end (self, consumer, NULL);
          }
        else
          {
            consumer->state = CONSUMER_CLOSING;
            _carehare_protocol_discard_channel (self, consumer->channel, "consumer cancelled");
            self->channels[consumer->channel].consumer = consumer;
          }
      }
      break;
    case OP_CONSUMER_CLOSE:
      g_ptr_array_remove (op->consumer->close_ops, op);
      break;
    case OP_UPDATE_SECRET:
      /* Always sent at once, and the broker applies it all the same: it
       * completes with the broker's answer. */
      _carehare_protocol_leave (self);
      return;
    default:
      g_assert_not_reached ();
    }
  _carehare_protocol_complete (self, op, NULL,
                               g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                    "Operation was cancelled"));
  /* Nobody waits for a connection whose handshake was cancelled: end it
   * (as a close would), or a late Open-Ok would complete a freed op. */
  if (op->kind == OP_HANDSHAKE)
    _carehare_protocol_finish (self, NULL);
  _carehare_protocol_leave (self);
}
