/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): RPC channels. An RPC
 * (declare, bind, delete...) runs alone on a pooled channel: its request
 * is encoded once for channel 0 and patched with the channel it is given;
 * its reply puts the channel back in the pool, an error or a cancellation
 * discards the channel.
 */

#include "carehare-protocol-private.h"

/* The method id of an RPC's request, from its encoded frame. */
guint32
_carehare_protocol_rpc_request_id (const CarehareProtocolOp *op)
{
  const guint8 *p;

  if (op->frame == NULL || op->frame->len < 11)
    return 0;
  p = op->frame->data + 7;
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

void
_carehare_protocol_send_rpc (CarehareProtocol   *self,
                             guint16             channel,
                             CarehareProtocolOp *op)
{
  Channel *ch = &self->channels[channel];

  ch->state = CHANNEL_BUSY;
  ch->kind = CHANNEL_KIND_RPC;
  ch->op = op;
  op->channel = channel;
  /* The frame was encoded for channel 0; its bytes 1-2 are the channel. */
  op->frame->data[1] = channel >> 8;
  op->frame->data[2] = channel & 0xff;
  g_byte_array_append (self->out, op->frame->data, op->frame->len);
}

/* A method on an RPC channel: the reply its request waits for, which
 * gives the channel back to the pool, or a fault. */
void
_carehare_protocol_handle_rpc_method (CarehareProtocol *self,
                                      guint16           id,
                                      CarehareMethod   *method)
{
  Channel *ch = &self->channels[id];

  if (ch->state == CHANNEL_BUSY && ch->op != NULL && method->id == ch->op->reply_id)
    {
      CarehareProtocolOp *op = ch->op;

      ch->op = NULL;
      ch->state = CHANNEL_IDLE;
      _carehare_protocol_complete (self, op, method, NULL);
      _carehare_protocol_channel_available (self, id);
      return;
    }

  _carehare_protocol_fail_unexpected (self, 505, method->id, "unexpected %s on channel %u",
                                      carehare_method_name (method->id), id);
}

/* The queue name of a request that acts on an existing queue, or NULL
 * for other requests. */
static const char *
rpc_queue_name (const CarehareMethod *request,
                gboolean             *applies)
{
  *applies = TRUE;
  switch (request->id)
    {
    case CAREHARE_METHOD_QUEUE_PURGE:
      return request->queue_purge.queue;
    case CAREHARE_METHOD_QUEUE_DELETE:
      return request->queue_delete.queue;
    case CAREHARE_METHOD_QUEUE_BIND:
      return request->queue_bind.queue;
    case CAREHARE_METHOD_QUEUE_UNBIND:
      return request->queue_unbind.queue;
    default:
      *applies = FALSE;
      return NULL;
    }
}

CarehareProtocolOp *
carehare_protocol_rpc (CarehareProtocol           *self,
                       const CarehareMethod       *request,
                       guint32                     reply_id,
                       CarehareProtocolOpCallback  callback,
                       gpointer                    user_data)
{
  CarehareProtocolOp *op;
  GError *error = NULL;
  gboolean names_queue;
  const char *queue;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (request != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_RPC, callback, user_data);
  op->reply_id = reply_id;
  op->frame = g_byte_array_new ();
  queue = rpc_queue_name (request, &names_queue);

  if (self->state != STATE_OPEN)
    _carehare_protocol_complete (self, op, NULL,
                                 _carehare_protocol_closed_error_for (self->state == STATE_FINISHED
                                                                      ? self->finish_error : NULL));
  else if (names_queue && (queue == NULL || *queue == '\0'))
    _carehare_protocol_complete (self, op, NULL,
                                 _carehare_protocol_empty_queue_name_error
                                   (carehare_method_name (request->id)));
  else if (!carehare_wire_append_method_frame (op->frame, 0, request, &error))
    {
      /* Arguments the wire cannot carry (a name over 255 bytes, a table
       * value with no AMQP type): the caller's mistake, reported where it
       * waits. */
      GError *invalid = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     "Cannot send %s: %s",
                                     carehare_method_name (request->id), error->message);
      g_error_free (error);
      _carehare_protocol_complete (self, op, NULL, invalid);
    }
  else if (op->frame->len > self->frame_max)
    {
      /* The server would close the whole connection with FRAME_ERROR. */
      _carehare_protocol_complete (self, op, NULL,
                                   g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                "Cannot send %s: its frame of %u bytes exceeds the "
                                                "negotiated frame_max of %u bytes",
                                                carehare_method_name (request->id), op->frame->len,
                                                self->frame_max));
    }
  else
    _carehare_protocol_dispatch (self, op);
  return _carehare_protocol_leave_with_op (self, op);
}
