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
#ifdef G_OS_UNIX
#include <sys/mman.h>

/* Bodies this large get a mapping of their own, given back to the system
 * as soon as the message is freed. From the heap, a freed body stays
 * resident until a later one reuses its place, and one whose header
 * arrives meanwhile takes a new place: 16 MiB bodies at a prefetch of 2
 * kept three bodies resident instead of two. The mapping asks for huge
 * pages where the system gives them on request: faulting a 16 MiB body in
 * 4 KiB at a time cost more than receiving it. */
#define BODY_MAP_MIN (4 * 1024 * 1024)
/* The mapping's size is kept before the body (which stays aligned). */
#define BODY_MAP_HEAD 64
#endif

static guint8 *
body_map (gsize size)
{
#ifdef BODY_MAP_MIN
  gsize total = size + BODY_MAP_HEAD;
  guint8 *base;

  if (size < BODY_MAP_MIN)
    return NULL;
  base = mmap (NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return NULL;
#ifdef MADV_HUGEPAGE
  madvise (base, total, MADV_HUGEPAGE);
#endif
  memcpy (base, &total, sizeof total);
  return base + BODY_MAP_HEAD;
#else
  return NULL;
#endif
}

static void
body_unmap (gpointer body)
{
#ifdef BODY_MAP_MIN
  guint8 *base = (guint8 *) body - BODY_MAP_HEAD;
  gsize total;

  memcpy (&total, base, sizeof total);
  munmap (base, total);
#else
  g_assert_not_reached ();
#endif
}

static void
content_free_body (Content *content)
{
  if (content->body != NULL && content->body_mapped)
    body_unmap (content->body);
  else
    g_free (content->body);
  content->body = NULL;
}

/* The whole body of @content, taken from it: the buffer it was received
 * into, as it is. */
GBytes *
_carehare_protocol_content_take_body (Content *content)
{
  guint8 *body = g_steal_pointer (&content->body);

  if (body == NULL)
    return g_bytes_new_static ("", 0);
  if (content->body_mapped)
    return g_bytes_new_with_free_func (body, content->body_size, body_unmap, body);
  return g_bytes_new_take (body, content->body_size);
}

void
_carehare_protocol_content_clear (Content *content)
{
  if (content->active)
    carehare_method_clear (&content->method);
  carehare_basic_properties_clear (&content->props);
  content_free_body (content);
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

/* When the address space for a whole body cannot be had at once, what
 * is allocated first; it then grows as the frames arrive. */
#define BODY_ALLOC_FALLBACK (1024 * 1024)

/* The body's buffer, allocated once when its header arrives: its frames
 * are copied (or read, see carehare_protocol_get_receive_buffer()) into it
 * and it becomes the delivery's GBytes as it is, so a body is never moved
 * or copied again, nor held twice. Its pages are touched only as its bytes
 * arrive: a header that announces more than comes costs address space,
 * not memory. */
static void
content_alloc (Content *content)
{
  content->body_alloc = (gsize) content->body_size;
  content->body = body_map (content->body_alloc);
  content->body_mapped = content->body != NULL;
  if (content->body == NULL)
    content->body = g_try_malloc (content->body_alloc);
  if (content->body == NULL)
    {
      content->body_alloc = MIN (content->body_alloc, BODY_ALLOC_FALLBACK);
      content->body = g_malloc (content->body_alloc);
    }
}

/* Where the body's next @size bytes go (at most what its header
 * announced). */
static guint8 *
content_tail (Content *content,
              gsize    size)
{
  if (content->received + size > content->body_alloc)
    {
      content->body_alloc = (gsize) MIN (content->body_size,
                                         MAX (content->received + size,
                                              2 * (guint64) content->body_alloc));
      content->body = g_realloc (content->body, content->body_alloc);
    }
  return content->body + content->received;
}

/* A content header or body frame on a publisher's, a consumer's or the
 * call channel. */
void
_carehare_protocol_handle_content_frame (CarehareProtocol    *self,
                                         Channel             *ch,
                                         Content             *content,
                                         const CarehareFrame *frame)
{
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
        content_alloc (content);
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
  if (frame->size > content->body_size - content->received)
    {
      _carehare_protocol_fail_unexpected (self, 505, 0, "the body on channel %u is longer than "
                                          "the %" G_GUINT64_FORMAT " bytes its content header "
                                          "declared", frame->channel, content->body_size);
      return;
    }
  if (content->body != NULL && frame->size > 0)
    memcpy (content_tail (content, frame->size), frame->payload, frame->size);
  content->received += frame->size;
  if (content->received == content->body_size)
    content_done (self, ch, content);
}

/* ---- body frames as they arrive ------------------------------------------- */

/* The message whose body the body frame being received goes into (and
 * its channel in @ch), or NULL when it was dropped since the frame began:
 * only closing its channel or the connection does that, and the rest of
 * the frame is then ignored, as the whole frame would have been. */
static Content *
body_frame_content (CarehareProtocol  *self,
                    Channel          **ch)
{
  Channel *unused;
  gboolean ignore;
  Content *content;

  if (self->body_frame.lost)
    return NULL;
  content = _carehare_protocol_content_lookup (self, self->body_frame.frame.channel,
                                               ch != NULL ? ch : &unused, &ignore);
  /* No frame came in between, so a message there is the same one; its
   * bounds are checked all the same before a byte is written. */
  if (content == NULL || content->body == NULL ||
      content->received + self->body_frame.left > content->body_alloc)
    {
      self->body_frame.lost = TRUE;
      return NULL;
    }
  return content;
}

/* Called with the first @len bytes of a frame that is not complete yet
 * (its header at least). If it is the next body frame of a message whose
 * body is being buffered, its payload is copied into the body as it
 * arrives (_carehare_protocol_body_frame_continue()) rather than kept
 * until the frame is whole, and its @len bytes are taken: returns TRUE.
 * Anything else (another frame type, a body longer than announced, a
 * frame on a channel we close...) is handled when the whole frame is
 * there, as any frame. */
gboolean
_carehare_protocol_body_frame_begin (CarehareProtocol *self,
                                     const guint8     *data,
                                     gsize             len)
{
  CarehareFrame frame;
  Channel *ch;
  gboolean ignore;
  Content *content;
  gsize part;

  g_assert (self->body_frame.frame.channel == 0);
  if (!carehare_frame_peek_header (data, len, &frame) || frame.type != CAREHARE_FRAME_BODY)
    return FALSE;
  content = _carehare_protocol_content_lookup (self, frame.channel, &ch, &ignore);
  if (content == NULL || content->body == NULL ||
      frame.size > content->body_size - content->received)
    return FALSE;

  part = MIN (len - CAREHARE_FRAME_HEADER_SIZE, frame.size);
  memcpy (content_tail (content, frame.size), data + CAREHARE_FRAME_HEADER_SIZE, part);
  content->received += part;
  self->body_frame.frame = frame;
  self->body_frame.left = frame.size - (guint32) part;
  self->body_frame.lost = FALSE;
  return TRUE;
}

/* Takes the front of @data for the body frame being received: the rest of
 * its payload, then its frame-end octet, at which the message is complete
 * if that was its last frame. Returns the bytes taken. */
gsize
_carehare_protocol_body_frame_continue (CarehareProtocol *self,
                                        const guint8     *data,
                                        gsize             len)
{
  CarehareFrame frame = self->body_frame.frame;
  GError *error = NULL;
  Channel *ch = NULL;
  Content *content = body_frame_content (self, &ch);
  gsize part = MIN (len, self->body_frame.left);
  gboolean lost;

  if (content != NULL)
    {
      memcpy (content->body + content->received, data, part);
      content->received += part;
    }
  self->body_frame.left -= (guint32) part;
  if (part == len)
    return part;

  lost = self->body_frame.lost;
  memset (&self->body_frame, 0, sizeof self->body_frame);
  if (!carehare_frame_check_end (&frame, data[part], &error))
    _carehare_protocol_fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
  else if (lost)
    {
      /* Its payload went with its message: what would have become of the
       * whole frame (ignored, on a channel we close) becomes of it. */
      frame.size = 0;
      _carehare_protocol_handle_frame (self, &frame);
    }
  else if (content->received == content->body_size)
    content_done (self, ch, content);
  return part + 1;
}

/* Where the rest of the payload of the body frame being received goes,
 * and in @size how much of it is to come; NULL when none is. */
guint8 *
_carehare_protocol_body_frame_target (CarehareProtocol *self,
                                      gsize            *size)
{
  Content *content;

  *size = 0;
  if (self->body_frame.frame.channel == 0 || self->body_frame.left == 0)
    return NULL;
  content = body_frame_content (self, NULL);
  if (content == NULL)
    return NULL;
  *size = self->body_frame.left;
  return content->body + content->received;
}

/* @size bytes of that payload were put there. */
void
_carehare_protocol_body_frame_advance (CarehareProtocol *self,
                                       gsize             size)
{
  Content *content = body_frame_content (self, NULL);

  g_assert (content != NULL && size <= self->body_frame.left);
  content->received += size;
  self->body_frame.left -= (guint32) size;
}
