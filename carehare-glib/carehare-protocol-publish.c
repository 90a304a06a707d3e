/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): publish channels. One
 * Publisher per exchange owns a channel in confirm mode: its publishes are
 * written at once when it can (directly into the output, large bodies
 * without a copy), or wait for a channel, for Connection.Unblocked or for
 * Channel.Flow; each completes with its confirm (basic.ack or basic.nack),
 * and a mandatory one with the basic.return matched to it. A publisher
 * with nothing in flight is idle and its channel is given back, least
 * recently used first, when another request needs one or after
 * CAREHARE_PROTOCOL_PUBLISHER_IDLE_US.
 */

#include "carehare-protocol-private.h"

#include <string.h>

/* A basic.return waiting for the confirm that tells which of the publishes
 * it matches it was for (see _carehare_protocol_handle_return()). */
typedef struct {
  GError *error;           /* owned: UNROUTABLE, with the broker's reply */
  GArray *candidates;      /* of guint64: delivery tags of the matching publishes, ascending */
} Return;

static void
return_free (Return *ret)
{
  g_clear_error (&ret->error);
  g_array_unref (ret->candidates);
  g_free (ret);
}

void
_carehare_protocol_publisher_free (Publisher *pub)
{
  g_assert (g_queue_is_empty (&pub->unwritten));
  g_assert (g_queue_is_empty (&pub->unconfirmed));
  g_assert (g_queue_is_empty (&pub->pending));
  g_clear_pointer (&pub->calls, g_hash_table_unref);
  g_clear_pointer (&pub->abandoned, g_hash_table_unref);
  g_free (pub->reply_tag);
  g_queue_clear_full (&pub->returns, (GDestroyNotify) return_free);
  _carehare_protocol_content_clear (&pub->content);
  g_free (pub->exchange);
  g_free (pub);
}

/* Completes every publish of @pub with a copy of @error (taken). */
void
_carehare_protocol_publisher_fail_ops (CarehareProtocol *self,
                                       Publisher        *pub,
                                       GError           *error)
{
  CarehareProtocolOp *op;

  while ((op = g_queue_pop_head (&pub->unconfirmed)) != NULL)
    _carehare_protocol_complete (self, op, NULL, g_error_copy (error));
  while ((op = g_queue_pop_head (&pub->unwritten)) != NULL)
    _carehare_protocol_complete (self, op, NULL, g_error_copy (error));
  if (pub->waiting)
    {
      g_queue_remove (&self->waiting, &pub->open_op);
      pub->waiting = FALSE;
    }
  g_error_free (error);
}

/* Bodies from this size on are not copied into the output. */
#define LARGE_BODY (64 * 1024)

/* Appends the body frames of a publish on @channel. */
static void
append_body_frames (CarehareProtocol *self,
                    guint16           channel,
                    GBytes           *body_bytes)
{
  gsize size = 0;
  const guint8 *body = body_bytes != NULL ? g_bytes_get_data (body_bytes, &size) : NULL;
  gsize chunk = self->frame_max - CAREHARE_FRAME_OVERHEAD;

  if (size < LARGE_BODY)
    {
      for (gsize offset = 0; offset < size; offset += chunk)
        carehare_wire_append_body_frame (self->out, channel, body + offset,
                                         MIN (chunk, size - offset));
    }
  else
    {
      static const guint8 end = CAREHARE_FRAME_END;

      /* Large bodies are written from the caller's GBytes: each body
       * frame is its 7-byte header here, a slice of the body, and its end
       * octet, which starts the next piece of out. */
      for (gsize offset = 0; offset < size; offset += chunk)
        {
          gsize n = MIN (chunk, size - offset);
          guint8 header[CAREHARE_FRAME_HEADER_SIZE] = {
            CAREHARE_FRAME_BODY, channel >> 8, channel & 0xff,
            (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff,
          };

          if (offset > 0)
            g_byte_array_append (self->out, &end, 1);
          g_byte_array_append (self->out, header, sizeof header);
          _carehare_protocol_add_segment (self, g_bytes_new_from_bytes (body_bytes, offset, n));
        }
      g_byte_array_append (self->out, &end, 1);
    }
}

/* @op's frames are in the output: number it and wait for its confirm. A
 * mandatory publish keeps its body to be recognised in a basic.return. */
static void
publish_written (CarehareProtocol   *self,
                 Publisher          *pub,
                 CarehareProtocolOp *op)
{
  self->stats.messages_published++;
  g_clear_pointer (&op->frame, g_byte_array_unref);
  if (!op->mandatory)
    g_clear_pointer (&op->body, g_bytes_unref);
  op->written = TRUE;
  op->seq = ++pub->next_seq;
  g_queue_push_tail (&pub->unconfirmed, op);
}

/* Writes a publish that had to wait (for a channel, or for unblock). */
static void
write_publish (CarehareProtocol   *self,
               Publisher          *pub,
               CarehareProtocolOp *op)
{
  guint8 *frame = op->frame->data;

  /* Method and header frames were encoded for channel 0. */
  frame[1] = frame[op->method_len + 1] = pub->channel >> 8;
  frame[2] = frame[op->method_len + 2] = pub->channel & 0xff;
  g_byte_array_append (self->out, frame, op->frame->len);
  append_body_frames (self, pub->channel, op->body);
  publish_written (self, pub, op);
}

/* Writes what waits, unless the broker blocked us or stopped the
 * channel's flow, or there is no channel yet. */
void
_carehare_protocol_publisher_flush (CarehareProtocol *self,
                                    Publisher        *pub)
{
  CarehareProtocolOp *op;

  if (pub->channel == 0 || self->blocked || pub->flow_stopped)
    return;
  while ((op = g_queue_pop_head (&pub->unwritten)) != NULL)
    write_publish (self, pub, op);
}

void
_carehare_protocol_publisher_start (CarehareProtocol *self,
                                    Publisher        *pub,
                                    guint16           id)
{
  Channel *ch = &self->channels[id];
  CarehareMethod select = { .id = CAREHARE_METHOD_CONFIRM_SELECT };

  ch->kind = pub->call ? CHANNEL_KIND_CALL : CHANNEL_KIND_PUBLISHER;
  ch->publisher = pub;
  pub->channel = id;
  pub->next_seq = 0;
  /* Publishes may follow Confirm.Select at once: the broker reads in
   * order, and numbers them from 1 after Select. */
  _carehare_protocol_append_method (self, id, &select);
  if (pub->call)
    _carehare_protocol_call_start (self, pub, id);
  _carehare_protocol_publisher_flush (self, pub);
  _carehare_protocol_publisher_update_idle (self, pub);
}

static void
publisher_unlink_idle (CarehareProtocol *self,
                       Publisher        *pub)
{
  if (pub->idle)
    {
      g_queue_unlink (&self->idle_publishers, &pub->idle_link);
      pub->idle = FALSE;
    }
}

/* The broker closed the channel of @pub (or @pub's work is over): fail
 * what is pending and forget it, so the next publish opens a new one. */
void
_carehare_protocol_publisher_end (CarehareProtocol *self,
                                  Publisher        *pub,
                                  GError           *error)
{
  if (pub->call)
    {
      _carehare_protocol_call_end (self, error);
      return;
    }
  _carehare_protocol_publisher_fail_ops (self, pub, error);
  publisher_unlink_idle (self, pub);
  g_hash_table_remove (self->publishers, pub->exchange);
}

/* Gives the channel of the idle @pub back: Channel.Close, and its id is
 * free at Close-Ok. The next publish to its exchange opens a new one. */
void
_carehare_protocol_publisher_close_idle (CarehareProtocol *self,
                                         Publisher        *pub,
                                         const char       *why)
{
  guint16 id = pub->channel;

  g_debug ("closing channel %u of exchange '%s': %s", id, pub->exchange, why);
  publisher_unlink_idle (self, pub);
  /* Frames that still arrive on it are dropped while it closes. */
  self->channels[id].publisher = NULL;
  _carehare_protocol_discard_channel (self, id, why);
  g_hash_table_remove (self->publishers, pub->exchange);
}

/* After anything that may have changed what @pub has in flight: an idle
 * publisher (a channel, nothing unwritten or unconfirmed) joins the tail of
 * the idle list, a busy one leaves it. */
void
_carehare_protocol_publisher_update_idle (CarehareProtocol *self,
                                          Publisher        *pub)
{
  /* The call channel holds the reply consumer: it stays. */
  gboolean idle = !pub->call && pub->channel != 0 && !pub->waiting &&
                  g_queue_is_empty (&pub->unwritten) &&
                  g_queue_is_empty (&pub->unconfirmed) &&
                  g_queue_is_empty (&pub->returns) && !pub->content.active;

  if (idle && !pub->idle)
    {
      pub->idle = TRUE;
      pub->idle_since = self->now;
      pub->idle_link.data = pub;
      g_queue_push_tail_link (&self->idle_publishers, &pub->idle_link);
      _carehare_protocol_reclaim_for_waiters (self);
    }
  else if (!idle)
    publisher_unlink_idle (self, pub);
}

/* Requests wait for a channel: close idle publishers' channels, least
 * recently used first, until every waiter has one coming (channels that
 * close free their ids; busy RPCs and publishers become free or idle on
 * their own). */
void
_carehare_protocol_reclaim_for_waiters (CarehareProtocol *self)
{
  Publisher *pub;

  while (self->state == STATE_OPEN &&
         g_queue_get_length (&self->waiting) > self->n_closing &&
         (pub = g_queue_peek_head (&self->idle_publishers)) != NULL)
    _carehare_protocol_publisher_close_idle (self, pub, "idle publisher channel given back for "
                                             "another request");
}

static CarehareProtocolOp *
find_unconfirmed (Publisher *pub,
                  guint64    seq)
{
  for (GList *l = pub->unconfirmed.head; l != NULL; l = l->next)
    {
      CarehareProtocolOp *op = l->data;

      if (op->seq == seq)
        return op;
      if (op->seq > seq)
        break;
    }
  return NULL;
}

static gboolean
return_has_candidate (Return  *ret,
                      guint64  seq)
{
  for (guint i = 0; i < ret->candidates->len; i++)
    if (g_array_index (ret->candidates, guint64, i) == seq)
      return TRUE;
  return FALSE;
}

/* @op is being confirmed: if a pending return matches it, this confirm is
 * the one that follows that return, so the return is @op's. */
static void
settle_return (Publisher          *pub,
               CarehareProtocolOp *op)
{
  if (!op->mandatory)
    return;
  for (GList *l = pub->returns.head; l != NULL; l = l->next)
    {
      Return *ret = l->data;

      if (return_has_candidate (ret, op->seq))
        {
          op->returned = g_steal_pointer (&ret->error);
          pub->returned_seq = MAX (pub->returned_seq, op->seq);
          g_queue_delete_link (&pub->returns, l);
          return_free (ret);
          return;
        }
    }
}

/* Returns whose every candidate was confirmed without them can no longer
 * settle (a server that does not follow RabbitMQ's order): forget them. */
static void
forget_stale_returns (Publisher *pub)
{
  GList *l = pub->returns.head;

  while (l != NULL)
    {
      GList *next = l->next;
      Return *ret = l->data;
      gboolean live = FALSE;

      for (guint i = 0; i < ret->candidates->len && !live; i++)
        live = find_unconfirmed (pub, g_array_index (ret->candidates, guint64, i)) != NULL;
      if (!live)
        {
          g_debug ("basic.return on channel %u matched publishes that were confirmed "
                   "without it: ignored", pub->channel);
          g_queue_delete_link (&pub->returns, l);
          return_free (ret);
        }
      l = next;
    }
}

static GError *
publish_result (CarehareProtocolOp *op,
                gboolean            ack)
{
  if (op->returned != NULL)
    return g_steal_pointer (&op->returned);
  if (!ack)
    return g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK,
                                "The broker refused the message (basic.nack): for "
                                "example a full queue with x-overflow=reject-publish");
  return NULL;
}

/* @op's confirm arrived, and the return it had, if any. */
static void
confirmed (CarehareProtocol   *self,
           Publisher          *pub,
           CarehareProtocolOp *op,
           gboolean            ack)
{
  settle_return (pub, op);
  if (op->returned != NULL)
    self->stats.messages_returned++;
  if (ack)
    self->stats.messages_confirmed++;
  else
    self->stats.messages_nacked++;
  if (op->kind == OP_CALL)
    _carehare_protocol_call_confirmed (self, op, publish_result (op, ack));
  else
    _carehare_protocol_complete (self, op, NULL, publish_result (op, ack));
}

static void
handle_confirm (CarehareProtocol *self,
                Publisher        *pub,
                guint32           method_id,
                guint64           tag,
                gboolean          multiple)
{
  gboolean ack = method_id == CAREHARE_METHOD_BASIC_ACK;
  CarehareProtocolOp *op;

  if (multiple && tag <= pub->next_seq)
    {
      /* multiple=true for tags already confirmed one by one is legal; a
       * tag beyond the last publish is not, even when it would also
       * confirm real ones. */
      while ((op = g_queue_peek_head (&pub->unconfirmed)) != NULL && op->seq <= tag)
        {
          g_queue_pop_head (&pub->unconfirmed);
          confirmed (self, pub, op, ack);
        }
      forget_stale_returns (pub);
      _carehare_protocol_publisher_update_idle (self, pub);
      return;
    }
  else if (!multiple && (op = find_unconfirmed (pub, tag)) != NULL)
    {
      g_queue_remove (&pub->unconfirmed, op);
      confirmed (self, pub, op, ack);
      forget_stale_returns (pub);
      _carehare_protocol_publisher_update_idle (self, pub);
      return;
    }

  _carehare_protocol_fail_unexpected (self, 503, method_id, "%s for delivery tag %" G_GUINT64_FORMAT
                                      " on channel %u, which was never published or already "
                                      "confirmed", carehare_method_name (method_id), tag,
                                      pub->channel);
}

/* The next entry of @table from *@i on, skipping BCC: RabbitMQ removes a
 * BCC header before it routes, so a return may or may not carry it. */
static GVariant *
next_header (GVariant *table,
             gsize    *i)
{
  gsize n = table != NULL ? g_variant_n_children (table) : 0;

  while (*i < n)
    {
      GVariant *entry = g_variant_get_child_value (table, (*i)++);
      const char *key = NULL;

      g_variant_get_child (entry, 0, "&s", &key);
      if (strcmp (key, "BCC") != 0)
        return entry;
      g_variant_unref (entry);
    }
  return NULL;
}

/* Header tables compare entry by entry, in order. */
static gboolean
headers_equal (GVariant *sent,
               GVariant *returned)
{
  gsize i = 0, j = 0;

  for (;;)
    {
      g_autoptr(GVariant) a = next_header (sent, &i);
      g_autoptr(GVariant) b = next_header (returned, &j);

      if (a == NULL || b == NULL)
        return a == NULL && b == NULL;
      if (!g_variant_equal (a, b))
        return FALSE;
    }
}

/* RabbitMQ replaces the reply_to of a call's request
 * (CAREHARE_PROTOCOL_DIRECT_REPLY_TO) with the channel's own address
 * before it routes it: @call compares without it (its correlation id is
 * unique anyway). */
static gboolean
properties_equal (const CarehareBasicProperties *sent,
                  const CarehareBasicProperties *returned,
                  gboolean                       call)
{
  guint16 other = (guint16) ~(CAREHARE_PROPERTY_HEADERS | (call ? CAREHARE_PROPERTY_REPLY_TO : 0));

  return (sent->flags & other) == (returned->flags & other) &&
         headers_equal (sent->headers, returned->headers) &&
         g_strcmp0 (sent->content_type, returned->content_type) == 0 &&
         g_strcmp0 (sent->content_encoding, returned->content_encoding) == 0 &&
         sent->delivery_mode == returned->delivery_mode &&
         sent->priority == returned->priority &&
         g_strcmp0 (sent->correlation_id, returned->correlation_id) == 0 &&
         (call || g_strcmp0 (sent->reply_to, returned->reply_to) == 0) &&
         g_strcmp0 (sent->expiration, returned->expiration) == 0 &&
         g_strcmp0 (sent->message_id, returned->message_id) == 0 &&
         sent->timestamp == returned->timestamp &&
         g_strcmp0 (sent->type, returned->type) == 0 &&
         g_strcmp0 (sent->user_id, returned->user_id) == 0 &&
         g_strcmp0 (sent->app_id, returned->app_id) == 0 &&
         g_strcmp0 (sent->cluster_id, returned->cluster_id) == 0;
}

/* The exchange @op was published to: its publisher's, or its own on the
 * call channel. */
static const char *
op_exchange (Publisher          *pub,
             CarehareProtocolOp *op)
{
  return op->exchange != NULL ? op->exchange : pub->exchange;
}

/* Whether the basic.return in @content, whose header just arrived, may
 * carry a message published on @pub: a mandatory publish in flight with
 * its exchange, routing key and body size. Only then is its body
 * buffered, to be compared: a return is the program's own message (held
 * until confirmed), so max_body_size does not apply to it, and one that
 * matches nothing costs no memory. */
gboolean
_carehare_protocol_return_may_match (Publisher *pub,
                                     Content   *content)
{
  const CarehareBasicReturn *ret = &content->method.basic_return;

  for (GList *l = pub->unconfirmed.head; l != NULL; l = l->next)
    {
      CarehareProtocolOp *op = l->data;
      gsize size = op->body != NULL ? g_bytes_get_size (op->body) : 0;

      if (op->mandatory && op->returned == NULL && size == content->body_size &&
          g_strcmp0 (op_exchange (pub, op), ret->exchange) == 0 &&
          g_strcmp0 (op->routing_key, ret->routing_key) == 0)
        return TRUE;
    }
  return FALSE;
}

/* Whether @content (a basic.return) carries the message @op published. */
static gboolean
return_matches (CarehareProtocolOp *op,
                Content            *content)
{
  CarehareBasicProperties sent = { 0 };
  gsize size = op->body != NULL ? g_bytes_get_size (op->body) : 0;
  gsize header_size = 0;
  const guint8 *header = g_bytes_get_data (op->header, &header_size);
  guint16 class_id = 0;
  guint64 body_size = 0;
  gboolean equal;

  if (g_strcmp0 (op->routing_key, content->method.basic_return.routing_key) != 0 ||
      content->body_size != size ||
      (size > 0 && memcmp (g_bytes_get_data (op->body, NULL), content->body, size) != 0))
    return FALSE;

  /* Our own header, decoded as the return's was: both sides map field
   * types the same way. */
  if (!carehare_content_header_decode (header, header_size, G_MAXUINT64, &class_id,
                                       &body_size, &sent, NULL))
    return FALSE;
  equal = properties_equal (&sent, &content->props, op->kind == OP_CALL);
  carehare_basic_properties_clear (&sent);
  return equal;
}

/* basic.return names no delivery tag, but it carries the whole message,
 * and RabbitMQ sends returns in publish order, each before the ack of the
 * message it returns (right before, unless it coalesces acks). So a return
 * is matched on its exchange, routing key, properties and body among the
 * unconfirmed mandatory publishes after the last one returned, and settled
 * by the ack or nack that follows: the first matching publish that
 * confirm covers is the one returned. Matching on content alone would
 * charge the wrong publish when an earlier one is still unconfirmed (a
 * headers exchange routes on headers alone). */
void
_carehare_protocol_handle_return (CarehareProtocol *self,
                                  Publisher        *pub,
                                  Content          *content)
{
  const CarehareBasicReturn *ret = &content->method.basic_return;
  Return *prev = g_queue_peek_tail (&pub->returns);
  guint64 after = pub->returned_seq;
  g_autoptr(GArray) candidates = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autofree char *text = NULL;
  Return *pending;

  if (prev != NULL)
    after = MAX (after, g_array_index (prev->candidates, guint64, 0));

  if (!content->skip)
    {
      for (GList *l = pub->unconfirmed.head; l != NULL; l = l->next)
        {
          CarehareProtocolOp *op = l->data;

          if (op->seq > after && op->mandatory && op->returned == NULL &&
              g_strcmp0 (op_exchange (pub, op), ret->exchange) == 0 &&
              return_matches (op, content))
            g_array_append_val (candidates, op->seq);
        }
    }
  if (candidates->len == 0)
    {
      g_debug ("basic.return for exchange '%s', routing key '%s' matches no pending "
               "mandatory publish", ret->exchange, ret->routing_key);
      return;
    }

  /* The code first ("...: 312 NO_ROUTE (exchange 'x', routing key 'k')"):
   * carehare_error_get_reply_code() reads the first code of the message,
   * and an exchange or routing key may contain one. */
  text = g_strdup_printf ("%s%s(exchange '%s', routing key '%s')",
                          ret->reply_text != NULL ? ret->reply_text : "",
                          ret->reply_text != NULL && *ret->reply_text != '\0' ? " " : "",
                          ret->exchange, ret->routing_key);
  pending = g_new0 (Return, 1);
  pending->error = carehare_error_new_from_reply (CAREHARE_ERROR_UNROUTABLE,
                                                  "Message returned by the broker",
                                                  ret->reply_code, text);
  pending->candidates = g_steal_pointer (&candidates);
  g_queue_push_tail (&pub->returns, pending);
}

Publisher *
_carehare_protocol_publisher_new (const char *exchange)
{
  Publisher *pub = g_new0 (Publisher, 1);

  pub->exchange = g_strdup (exchange);
  pub->open_op.kind = OP_PUBLISHER_OPEN;
  pub->open_op.publisher = pub;
  return pub;
}

/* Encodes @op, a publish (or a call's request) to @exchange on @pub
 * (NULL: a publisher not created yet). The usual case, a publisher that is
 * ready and has nothing waiting, encodes straight into the output and the
 * op waits for its confirm; otherwise the frames wait in the op, encoded
 * for channel 0, and the caller queues it. A publish the wire cannot carry
 * completes with the error. */
PublishEncoded
_carehare_protocol_publish_encode (CarehareProtocol              *self,
                                   Publisher                     *pub,
                                   CarehareProtocolOp            *op,
                                   const char                    *exchange,
                                   const char                    *routing_key,
                                   GBytes                        *body,
                                   const CarehareBasicProperties *properties)
{
  CarehareMethod publish = { .id = CAREHARE_METHOD_BASIC_PUBLISH };
  GError *error = NULL;
  gsize size = body != NULL ? g_bytes_get_size (body) : 0;
  gboolean direct;
  GByteArray *buf;
  guint start;
  guint16 channel;

  publish.basic_publish.exchange = (char *) exchange;
  publish.basic_publish.routing_key = (char *) routing_key;
  publish.basic_publish.mandatory = op->mandatory;

  direct = pub != NULL && pub->channel != 0 && !self->blocked && !pub->flow_stopped &&
           g_queue_is_empty (&pub->unwritten);
  buf = direct ? self->out : (op->frame = g_byte_array_new ());
  start = buf->len;
  channel = direct ? pub->channel : 0;

  if (!carehare_wire_append_method_frame (buf, channel, &publish, &error) ||
      (op->method_len = buf->len - start,
       !carehare_wire_append_header_frame (buf, channel, CAREHARE_CLASS_BASIC, size,
                                           properties, &error)))
    {
      GError *invalid = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     "Cannot publish to exchange '%s': %s",
                                     exchange, error->message);
      g_error_free (error);
      g_byte_array_set_size (buf, start);
      _carehare_protocol_complete (self, op, NULL, invalid);
      return PUBLISH_FAILED;
    }
  if (op->method_len > self->frame_max ||
      buf->len - start - op->method_len > self->frame_max)
    {
      g_byte_array_set_size (buf, start);
      _carehare_protocol_complete (self, op, NULL,
                                   g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                "Cannot publish to exchange '%s': the properties "
                                                "need a frame larger than the negotiated "
                                                "frame_max of %u bytes",
                                                exchange, self->frame_max));
      return PUBLISH_FAILED;
    }

  op->routing_key = g_strdup (routing_key);
  if (op->mandatory)
    {
      guint header_at = start + op->method_len + CAREHARE_FRAME_HEADER_SIZE;

      /* To recognise the message in a basic.return. */
      op->header = g_bytes_new (buf->data + header_at, buf->len - header_at - 1);
    }
  op->publisher = pub;
  if (!direct)
    {
      op->body = body != NULL ? g_bytes_ref (body) : NULL;
      return PUBLISH_QUEUED;
    }
  op->body = op->mandatory && body != NULL ? g_bytes_ref (body) : NULL;
  append_body_frames (self, channel, body);
  publish_written (self, pub, op);
  return PUBLISH_WRITTEN;
}

CarehareProtocolOp *
carehare_protocol_publish (CarehareProtocol               *self,
                           const char                     *exchange,
                           const char                     *routing_key,
                           GBytes                         *body,
                           const CarehareBasicProperties  *properties,
                           gboolean                        mandatory,
                           CarehareProtocolOpCallback      callback,
                           gpointer                        user_data)
{
  CarehareProtocolOp *op;
  Publisher *pub;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (exchange != NULL, NULL);
  g_return_val_if_fail (routing_key != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_PUBLISH, callback, user_data);
  op->mandatory = mandatory;

  if (self->state != STATE_OPEN)
    {
      _carehare_protocol_complete (self, op, NULL,
                                   _carehare_protocol_closed_error_for (self->state == STATE_FINISHED
                                                                        ? self->finish_error : NULL));
      return _carehare_protocol_leave_with_op (self, op);
    }

  pub = g_hash_table_lookup (self->publishers, exchange);
  switch (_carehare_protocol_publish_encode (self, pub, op, exchange, routing_key, body,
                                             properties))
    {
    case PUBLISH_FAILED:
      return _carehare_protocol_leave_with_op (self, op);
    case PUBLISH_WRITTEN:
      break;
    case PUBLISH_QUEUED:
      if (pub == NULL)
        {
          pub = _carehare_protocol_publisher_new (exchange);
          g_hash_table_insert (self->publishers, pub->exchange, pub);
          g_queue_push_tail (&pub->unwritten, op);
          op->publisher = pub;
          _carehare_protocol_dispatch (self, &pub->open_op);
        }
      else
        {
          g_queue_push_tail (&pub->unwritten, op);
          _carehare_protocol_publisher_flush (self, pub);
        }
      break;
    default:
      g_assert_not_reached ();
    }
  /* Unless it failed for want of a channel, which ended @pub. */
  if (!op->done)
    _carehare_protocol_publisher_update_idle (self, pub);
  return _carehare_protocol_leave_with_op (self, op);
}

void
_carehare_protocol_handle_publisher_method (CarehareProtocol *self,
                                            guint16           id,
                                            Publisher        *pub,
                                            CarehareMethod   *method)
{
  switch (method->id)
    {
    case CAREHARE_METHOD_CONFIRM_SELECT_OK:
      return;
    case CAREHARE_METHOD_BASIC_ACK:
      handle_confirm (self, pub, method->id, method->basic_ack.delivery_tag,
                      method->basic_ack.multiple);
      return;
    case CAREHARE_METHOD_BASIC_NACK:
      handle_confirm (self, pub, method->id, method->basic_nack.delivery_tag,
                      method->basic_nack.multiple);
      return;
    case CAREHARE_METHOD_BASIC_RETURN:
      _carehare_protocol_content_begin (self, id, &pub->content, method);
      return;
    default:
      _carehare_protocol_fail_unexpected (self, 505, method->id,
                                          "unexpected %s on publishing channel %u",
                                          carehare_method_name (method->id), id);
    }
}
