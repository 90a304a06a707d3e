/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core's input: the bytes the transport read become frames.
 * Whole frames are decoded where they lie in the caller's buffer; a frame
 * cut by the end of a read is completed from the next one; the payload of
 * a large body frame goes into its message's body as it arrives, or is
 * read there in place (carehare_protocol_get_receive_buffer()). Each frame
 * goes to _carehare_protocol_handle_frame() (carehare-protocol.c). No
 * socket here: bytes in, nothing out.
 */
#include "carehare-protocol-private.h"

#include "carehare-error.h"

#include <string.h>

/* Completes the partial frame in self->in with the front of @data;
 * returns the bytes taken. Only what the frame needs is taken (its header
 * first, to learn its size), so what follows it is decoded in place. */
static gsize
complete_partial_frame (CarehareProtocol *self,
                        const guint8     *data,
                        gsize             size)
{
  CarehareFrame frame;
  GError *error = NULL;
  gsize want;
  gssize n;

  if (carehare_frame_peek_header (self->in->data, self->in->len, &frame))
    want = (gsize) frame.size + CAREHARE_FRAME_OVERHEAD - self->in->len;
  else
    want = CAREHARE_FRAME_HEADER_SIZE - self->in->len;
  want = MIN (want, size);
  g_byte_array_append (self->in, data, (guint) want);

  n = carehare_frame_decode (self->in->data, self->in->len, self->frame_max, &frame, &error);
  if (n < 0)
    _carehare_protocol_fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
  else if (n > 0)
    {
      _carehare_protocol_handle_frame (self, &frame);
      g_byte_array_set_size (self->in, 0);
    }
  else if (_carehare_protocol_body_frame_begin (self, self->in->data, self->in->len))
    g_byte_array_set_size (self->in, 0);
  return want;
}

/* Whole frames are decoded straight from @data; a partial frame at its
 * end is kept in self->in to be completed by the next read, unless it is
 * a body frame whose payload can go into its message's body as it
 * arrives. Neither the caller's buffer nor self->in is ever moved. */
static void
receive_frames (CarehareProtocol *self,
                const guint8     *data,
                gsize             size)
{
  gsize offset = 0;

  while (self->state != STATE_FINISHED && offset < size)
    {
      CarehareFrame frame;
      GError *error = NULL;
      gssize n;

      if (self->body_frame.frame.channel != 0)
        {
          offset += _carehare_protocol_body_frame_continue (self, data + offset, size - offset);
          continue;
        }
      if (self->in->len > 0)
        {
          offset += complete_partial_frame (self, data + offset, size - offset);
          continue;
        }

      n = carehare_frame_decode (data + offset, size - offset, self->frame_max, &frame, &error);
      if (n < 0)
        {
          _carehare_protocol_fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
          break;
        }
      if (n == 0)
        {
          if (!_carehare_protocol_body_frame_begin (self, data + offset, size - offset))
            g_byte_array_append (self->in, data + offset, (guint) (size - offset));
          break;
        }
      offset += n;
      _carehare_protocol_handle_frame (self, &frame);
    }
}

gboolean
carehare_protocol_receive (CarehareProtocol *self,
                           const guint8     *data,
                           gsize             size,
                           gint64            now)
{
  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (data != NULL || size == 0, FALSE);

  if (self->state == STATE_FINISHED || self->state == STATE_INITIAL)
    return self->state != STATE_FINISHED;

  _carehare_protocol_enter (self);
  self->now = MAX (self->now, now);
  self->last_read = now;
  self->stats.bytes_received += size;

  /* A TLS listener answers a plain protocol header with a TLS record: an
   * alert (content type 0x15) or a handshake (0x16). No AMQP frame type
   * is either, so the first byte says it: the URI should be amqps://. */
  if (self->state == STATE_AWAIT_START && self->in->len == 0 && size > 0 &&
      (data[0] == 0x15 || data[0] == 0x16))
    {
      _carehare_protocol_finish (self, g_error_new_literal (CAREHARE_ERROR,
                                                            CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                                                            "Bad bytes from server: this port "
                                                            "speaks TLS, not plain AMQP: use "
                                                            "amqps:// (or the broker's plain "
                                                            "AMQP port)"));
      _carehare_protocol_leave (self);
      return FALSE;
    }

  /* A server that rejects our protocol header answers with its own. */
  if (self->state == STATE_AWAIT_START && size > 0 &&
      (self->in->len > 0 ? self->in->data[0] : data[0]) == 'A')
    {
      g_byte_array_append (self->in, data, size);
      if (self->in->len >= 8)
        {
          const guint8 *h = self->in->data;

          if (memcmp (h, "AMQP", 4) == 0)
            _carehare_protocol_finish (self, g_error_new (CAREHARE_ERROR,
                                                          CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                                                          "The server does not support AMQP "
                                                          "0-9-1: it answered with protocol "
                                                          "header AMQP %u-%u-%u-%u",
                                                          h[4], h[5], h[6], h[7]));
          else
            _carehare_protocol_finish (self, g_error_new_literal (CAREHARE_ERROR,
                                                                  CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                                                                  "Bad bytes from server: not "
                                                                  "an AMQP 0-9-1 server"));
        }
      if (!_carehare_protocol_leave (self))
        return FALSE;
      return self->state != STATE_FINISHED;
    }

  receive_frames (self, data, size);

  if (!_carehare_protocol_leave (self))
    return FALSE;
  return self->state != STATE_FINISHED;
}

guint8 *
carehare_protocol_get_receive_buffer (CarehareProtocol *self,
                                      gsize            *size,
                                      gsize            *frame_size)
{
  guint8 *place;

  g_return_val_if_fail (size != NULL, NULL);
  *size = 0;
  if (frame_size != NULL)
    *frame_size = 0;
  g_return_val_if_fail (self != NULL, NULL);

  if (self->state == STATE_FINISHED)
    return NULL;
  place = _carehare_protocol_body_frame_target (self, size);
  if (place != NULL && frame_size != NULL)
    *frame_size = self->body_frame.frame.size;
  return place;
}

gboolean
carehare_protocol_receive_in_place (CarehareProtocol *self,
                                    gsize             size,
                                    gint64            now)
{
  gsize left;

  g_return_val_if_fail (self != NULL, FALSE);

  if (self->state == STATE_FINISHED)
    return FALSE;
  g_return_val_if_fail (_carehare_protocol_body_frame_target (self, &left) != NULL, FALSE);
  g_return_val_if_fail (size <= left, FALSE);

  _carehare_protocol_enter (self);
  self->now = MAX (self->now, now);
  self->last_read = now;
  self->stats.bytes_received += size;
  _carehare_protocol_body_frame_advance (self, size);
  if (!_carehare_protocol_leave (self))
    return FALSE;
  return self->state != STATE_FINISHED;
}
