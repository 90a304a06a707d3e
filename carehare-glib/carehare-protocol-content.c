/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): content. A basic.deliver
 * or basic.return is followed by a content header and body frames; they
 * are assembled here, bounded by the sizes the header announces and the
 * max_body_size the program accepts, and handed to the consumer or the
 * publisher when complete.
 */

#include "carehare-protocol-private.h"

#include <string.h>

void
_carehare_protocol_content_clear (Content *content)
{
  if (content->active)
    carehare_method_clear (&content->method);
  carehare_basic_properties_clear (&content->props);
  g_clear_pointer (&content->body, g_byte_array_unref);
  g_clear_error (&content->bad);
  memset (content, 0, sizeof *content);
}

/* A basic.deliver or basic.return: its content follows. Takes @method. */
gboolean
_carehare_protocol_content_begin (CarehareProtocol *self,
                                  guint16           id,
                                  Content          *content,
                                  CarehareMethod   *method)
{
  if (content->active)
    {
      _carehare_protocol_fail_unexpected (self, 505, method->id,
                                          "%s on channel %u before the previous message's "
                                          "content was complete",
                                          carehare_method_name (method->id), id);
      return FALSE;
    }
  content->active = TRUE;
  content->method = *method;
  memset (method, 0, sizeof *method);
  return TRUE;
}

static void
content_done (CarehareProtocol *self,
              Channel          *ch,
              Content          *content)
{
  if (content->method.id == CAREHARE_METHOD_BASIC_RETURN)
    _carehare_protocol_handle_return (self, ch->publisher, content);
  else if (ch->kind == CHANNEL_KIND_CALL)
    _carehare_protocol_call_content_done (self, content);
  else if (content->bad != NULL)
    ;  /* rejected when its header arrived */
  else
    _carehare_protocol_consumer_deliver (self, ch->consumer, content);
  _carehare_protocol_content_clear (content);
}

/* The largest body buffer reserved ahead of its frames; bigger bodies grow
 * as their frames arrive, so a lying header cannot make us allocate. */
#define BODY_RESERVE_MAX (1024 * 1024)

/* A content header or body frame on a publisher's, a consumer's or the
 * call channel. */
void
_carehare_protocol_handle_content_frame (CarehareProtocol    *self,
                                         Channel             *ch,
                                         Content             *content,
                                         const CarehareFrame *frame)
{
  guint64 received;
  /* A delivery (to a consumer, or a reply on the call channel), or a
   * return of our own message. */
  gboolean deliver = content->method.id == CAREHARE_METHOD_BASIC_DELIVER;

  if (frame->type == CAREHARE_FRAME_HEADER)
    {
      GError *error = NULL;
      guint16 class_id = 0;

      if (content->have_header)
        {
          _carehare_protocol_fail_unexpected (self, 505, 0, "a second content header on channel %u",
                                              frame->channel);
          return;
        }
      if (!carehare_content_header_decode (frame->payload, frame->size,
                                           CAREHARE_PROTOCOL_MAX_BODY_SIZE,
                                           &class_id, &content->body_size, &content->props,
                                           &error))
        {
          guint16 code = carehare_wire_error_reply_code (error);

          /* The properties of a delivery are another program's bytes
           * (RabbitMQ passes them on unchecked): past a sound class,
           * weight and body size, only that delivery fails. */
          if (deliver && class_id == CAREHARE_CLASS_BASIC &&
              content->body_size <= CAREHARE_PROTOCOL_MAX_BODY_SIZE &&
              !g_error_matches (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BODY_TOO_LARGE))
            {
              content->bad = error;
              content->have_header = TRUE;
              /* A reply is not acked: there is nothing to reject. */
              if (ch->kind == CHANNEL_KIND_CONSUMER)
                _carehare_protocol_consumer_reject (self, ch->consumer, content);
              if (content->body_size == 0)
                content_done (self, ch, content);
              return;
            }
          content->body_size = 0;
          /* A body larger than any broker sends is a connection-level
           * frame error. */
          _carehare_protocol_fail_bad_bytes (self, code >= 500 ? code : 501, 0, error);
          return;
        }
      content->have_header = TRUE;
      if (deliver && content->body_size > self->max_body_size)
        {
          /* Another program's message, too large for this program:
           * only that delivery fails, and nothing of it is buffered. A
           * reply keeps its properties, to fail its call. */
          content->bad = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE,
                                      "its body of %" G_GUINT64_FORMAT " bytes is larger than "
                                      "the max_body_size of %" G_GUINT64_FORMAT " bytes",
                                      content->body_size, self->max_body_size);
          if (ch->kind == CHANNEL_KIND_CONSUMER)
            {
              carehare_basic_properties_clear (&content->props);
              _carehare_protocol_consumer_reject (self, ch->consumer, content);
            }
        }
      else if (!deliver && !_carehare_protocol_return_may_match (ch->publisher, content))
        content->skip = TRUE;
      if (content->body_size == 0)
        content_done (self, ch, content);
      else if (content->bad == NULL && !content->skip)
        content->body = g_byte_array_sized_new ((guint) MIN (content->body_size, BODY_RESERVE_MAX));
      return;
    }

  /* a body frame */
  if (!content->have_header)
    {
      _carehare_protocol_fail_unexpected (self, 505, 0,
                                          "a body frame on channel %u before its content header",
                                          frame->channel);
      return;
    }
  received = content->bad != NULL || content->skip ? content->skipped : content->body->len;
  if (frame->size > content->body_size - received)
    {
      _carehare_protocol_fail_unexpected (self, 505, 0, "the body on channel %u is longer than "
                                          "the %" G_GUINT64_FORMAT " bytes its content header "
                                          "declared", frame->channel, content->body_size);
      return;
    }
  if (content->bad != NULL || content->skip)
    content->skipped += frame->size;
  else
    g_byte_array_append (content->body, frame->payload, frame->size);
  if (received + frame->size == content->body_size)
    content_done (self, ch, content);
}
