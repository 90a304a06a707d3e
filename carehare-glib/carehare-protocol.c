/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection state machine. See carehare-protocol.h for the contract.
 *
 * Files: this one holds the connection's state, the channel table and its
 * allocation, the dispatch of frames and methods, output and time, and
 * close. As the
 * Python carehare library has one class per channel kind, one file per
 * channel kind holds the rest: carehare-protocol-rpc.c (RPC channels),
 * carehare-protocol-publish.c (publish channels, in confirm mode),
 * carehare-protocol-consume.c (consumer channels) and
 * carehare-protocol-call.c (the call channel of direct reply-to, a
 * publish channel that also consumes the replies); the handshake is in
 * carehare-protocol-handshake.c, the content frames of deliveries and
 * returns are assembled in carehare-protocol-content.c, and cancelling an
 * operation is in carehare-protocol-cancel.c. They share
 * carehare-protocol-private.h.
 *
 * States: AWAIT_START -> AWAIT_TUNE -> AWAIT_OPEN_OK -> OPEN -> CLOSING ->
 * FINISHED. Any state may jump to FINISHED (server Close, socket abort,
 * heartbeat monitor, bad bytes).
 *
 * Channels: ids 1..channel_max in a table. A channel is FREE (id unused),
 * BUSY (opened for, or running, one RPC), IDLE (open, in the pool) or
 * CLOSING (we sent Channel.Close after a cancellation and wait for
 * Close-Ok before the id may be reused). Channel.Open and the first request
 * are pipelined, so a fresh channel costs one round trip and a pooled one
 * too. RPCs that find every id in use wait in a FIFO and take the next
 * channel that becomes idle or free.
 *
 * Publisher channels (one per exchange, in confirm mode) are given back:
 * one with nothing in flight is idle, and idle ones are closed, least
 * recently used first, when a request waits for a channel, and after
 * CAREHARE_PROTOCOL_PUBLISHER_IDLE_US (on the deadline/tick). A request
 * waits only while some channel will free up; when every channel holds a
 * running consumer, it fails at once (nothing would ever wake it).
 *
 * Re-entrancy: completions, the finished callback and blocked notifications
 * are queued while the machine runs and delivered when the outermost public
 * entry point returns (see _carehare_protocol_leave()), so callbacks see a
 * consistent state and may call back in.
 */

#include "carehare-protocol-private.h"

#include <string.h>

#define CLASS_CONNECTION 10
#define CLASS_CHANNEL    20

static void fail_everything (CarehareProtocol *self, const GError *cause);
static void protocol_destroy (CarehareProtocol *self);

/* ---- plumbing ------------------------------------------------------------ */

void
_carehare_protocol_enter (CarehareProtocol *self)
{
  self->depth++;
}

/* Returns FALSE when the protocol was freed: carehare_protocol_free() was
 * called from one of the callbacks, and @self is gone. */
gboolean
_carehare_protocol_leave (CarehareProtocol *self)
{
  g_assert (self->depth > 0);
  if (self->depth > 1)
    {
      self->depth--;
      return TRUE;
    }

  /* Still at depth 1 while delivering, so that calls made by the callbacks
   * queue their events here instead of recursing. */
  for (Event *ev; (ev = g_queue_pop_head (&self->events)) != NULL; g_free (ev))
    {
      switch (ev->kind)
        {
        case EVENT_OP_DONE:
          {
            CarehareProtocolOp *op = ev->op;
            op->callback (op, op->has_reply ? &op->reply : NULL, op->error, op->user_data);
            _carehare_protocol_op_free (op);
          }
          break;
        case EVENT_DELIVERY:
          if (ev->consumer->callbacks.delivery != NULL)
            ev->consumer->callbacks.delivery (ev->consumer, g_steal_pointer (&ev->delivery),
                                              ev->consumer->user_data);
          else
            _carehare_protocol_consumer_drop_delivery (self, ev->consumer,
                                                       ev->delivery->delivery_tag);
          g_clear_pointer (&ev->delivery, carehare_protocol_delivery_free);
          _carehare_protocol_consumer_unref_internal (ev->consumer);
          break;
        case EVENT_DELIVERY_REJECTED:
          if (ev->consumer->callbacks.rejected != NULL)
            ev->consumer->callbacks.rejected (ev->consumer, ev->delivery_tag, ev->error,
                                              ev->consumer->user_data);
          g_clear_error (&ev->error);
          _carehare_protocol_consumer_unref_internal (ev->consumer);
          break;
        case EVENT_CONSUMER_CLOSED:
          if (ev->consumer->callbacks.closed != NULL)
            ev->consumer->callbacks.closed (ev->consumer, ev->error, ev->consumer->user_data);
          g_clear_error (&ev->error);
          _carehare_protocol_consumer_unref_internal (ev->consumer);
          break;
        case EVENT_FINISHED:
          if (self->callbacks.finished != NULL)
            self->callbacks.finished (self, self->finish_error, self->user_data);
          break;
        case EVENT_BLOCKED:
          if (self->callbacks.blocked_changed != NULL)
            self->callbacks.blocked_changed (self, ev->blocked, ev->reason, self->user_data);
          g_free (ev->reason);
          break;
        case EVENT_CHANNEL_CLOSED:
          if (self->callbacks.channel_closed != NULL)
            self->callbacks.channel_closed (self, ev->channel, ev->reply_code, ev->reason,
                                            self->user_data);
          g_free (ev->reason);
          break;
        default:
          g_assert_not_reached ();
        }
    }
  self->depth--;
  if (self->free_pending)
    {
      protocol_destroy (self);
      return FALSE;
    }
  return TRUE;
}

/* _carehare_protocol_leave() for the calls that start an operation:
 * returns @op, or NULL when @op completed during this outermost call,
 * because _carehare_protocol_leave() then ran its callback and freed it. */
CarehareProtocolOp *
_carehare_protocol_leave_with_op (CarehareProtocol   *self,
                                  CarehareProtocolOp *op)
{
  gboolean delivered = op->done && self->depth == 1;

  _carehare_protocol_leave (self);
  return delivered ? NULL : op;
}

CarehareProtocolOp *
_carehare_protocol_op_new (OpKind                     kind,
                           CarehareProtocolOpCallback callback,
                           gpointer                   user_data)
{
  CarehareProtocolOp *op = g_new0 (CarehareProtocolOp, 1);

  op->kind = kind;
  op->callback = callback;
  op->user_data = user_data;
  return op;
}

void
_carehare_protocol_op_free (CarehareProtocolOp *op)
{
  if (op->has_reply)
    carehare_method_clear (&op->reply);
  g_clear_error (&op->error);
  g_clear_error (&op->returned);
  g_clear_pointer (&op->frame, g_byte_array_unref);
  g_clear_pointer (&op->body, g_bytes_unref);
  g_clear_pointer (&op->header, g_bytes_unref);
  g_free (op->routing_key);
  g_free (op->exchange);
  g_free (op->correlation_id);
  g_clear_pointer (&op->delivery, carehare_protocol_delivery_free);
  g_free (op);
}

/* Queues the completion of @op. Takes @error; moves @reply (if any) into
 * the op. */
void
_carehare_protocol_complete (CarehareProtocol   *self,
                             CarehareProtocolOp *op,
                             CarehareMethod     *reply,
                             GError             *error)
{
  Event *ev;

  g_assert (!op->done);
  op->done = TRUE;
  if (reply != NULL)
    {
      op->reply = *reply;
      memset (reply, 0, sizeof *reply);
      op->has_reply = TRUE;
    }
  op->error = error;

  ev = g_new0 (Event, 1);
  ev->kind = EVENT_OP_DONE;
  ev->op = op;
  g_queue_push_tail (&self->events, ev);
}

gboolean
_carehare_protocol_append_method (CarehareProtocol     *self,
                                  guint16               channel,
                                  const CarehareMethod *method)
{
  g_autoptr(GError) error = NULL;

  /* Only the library's own methods come here, with values it checked. */
  if (!carehare_wire_append_method_frame (self->out, channel, method, &error))
    {
      g_critical ("carehare: cannot encode %s: %s",
                  carehare_method_name (method->id), error->message);
      return FALSE;
    }
  return TRUE;
}

void
_carehare_protocol_finish (CarehareProtocol *self,
                           GError           *cause)
{
  Event *ev;

  if (self->state == STATE_FINISHED)
    {
      g_clear_error (&cause);
      return;
    }

  fail_everything (self, cause);
  self->state = STATE_FINISHED;
  g_clear_error (&self->finish_error);
  self->finish_error = cause;
  g_byte_array_set_size (self->in, 0);

  /* Close ops complete with the cause (NULL when we closed it). */
  for (guint i = 0; i < self->close_ops->len; i++)
    _carehare_protocol_complete (self, g_ptr_array_index (self->close_ops, i), NULL,
                                 cause != NULL ? g_error_copy (cause) : NULL);
  g_ptr_array_set_size (self->close_ops, 0);

  ev = g_new0 (Event, 1);
  ev->kind = EVENT_FINISHED;
  g_queue_push_tail (&self->events, ev);
}

/* An error for operations that were pending when the connection went away
 * because of @cause (NULL: we closed it). */
GError *
_carehare_protocol_closed_error_for (const GError *cause)
{
  if (cause == NULL)
    return g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                "Connection closed");
  if (g_error_matches (cause, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
    return g_error_copy (cause);
  return g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                      "Connection closed: %s", cause->message);
}

/* AMQP's empty queue name means "the last queue declared on this
 * channel", and channels are pooled: it would act on a queue some earlier
 * operation declared. */
GError *
_carehare_protocol_empty_queue_name_error (const char *what)
{
  return g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                      "Cannot send %s: the queue name is empty (AMQP would take it as "
                      "the last queue declared on a pooled channel)", what);
}

/* Fails every pending RPC and the handshake; leaves close ops alone. */
static void
fail_everything (CarehareProtocol *self,
                 const GError     *cause)
{
  CarehareProtocolOp *op;

  if (self->handshake != NULL)
    {
      /* The handshake reports the cause itself: a wrong password is a
       * CONNECTION_CLOSED_BY_SERVER 403, not just "closed". */
      _carehare_protocol_complete (self, self->handshake, NULL,
                                   cause != NULL ? g_error_copy (cause)
                                                 : _carehare_protocol_closed_error_for (NULL));
      self->handshake = NULL;
    }

  if (!g_queue_is_empty (&self->secret_ops))
    {
      g_autoptr(GError) closed = _carehare_protocol_closed_error_for (cause);

      _carehare_protocol_fail_update_secrets (self, closed);
    }

  while ((op = g_queue_pop_head (&self->waiting)) != NULL)
    {
      /* Publishers and consumers are failed as a whole below. */
      if (op->kind == OP_PUBLISHER_OPEN)
        op->publisher->waiting = FALSE;
      else if (op->kind != OP_CONSUME)
        _carehare_protocol_complete (self, op, NULL, _carehare_protocol_closed_error_for (cause));
    }

  if (self->channels != NULL)
    {
      for (guint i = 1; i <= self->channel_max; i++)
        {
          Channel *ch = &self->channels[i];

          if (ch->op != NULL)
            _carehare_protocol_complete (self, ch->op, NULL,
                                         _carehare_protocol_closed_error_for (cause));
          ch->op = NULL;
          ch->state = CHANNEL_FREE;
        }
    }
  g_queue_clear (&self->idle);
  self->n_open_channels = 0;
  self->n_closing = 0;
  /* The links are in the publishers removed below. */
  g_queue_init (&self->idle_publishers);

  if (self->publishers != NULL)
    {
      GHashTableIter iter;
      Publisher *pub;

      g_hash_table_iter_init (&iter, self->publishers);
      while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &pub))
        {
          _carehare_protocol_publisher_fail_ops (self, pub,
                                                 _carehare_protocol_closed_error_for (cause));
          g_hash_table_iter_remove (&iter);
        }
    }
  _carehare_protocol_call_end (self, _carehare_protocol_closed_error_for (cause));

  while (self->consumers != NULL && self->consumers->len > 0)
    _carehare_protocol_consumer_end (self, g_ptr_array_index (self->consumers, 0),
                                     _carehare_protocol_closed_error_for (cause));
}

/* The server closes the connection because of a request of ours, the
 * method @method_id its Close names: the operations that sent such a
 * request and wait for its answer fail with @cause itself (the server's
 * code and text); _carehare_protocol_finish() then fails the others as
 * merely pending. The server names no channel: when several such requests
 * are in flight, each gets @cause. */
static void
fail_named_requests (CarehareProtocol *self,
                     guint32           method_id,
                     const GError     *cause)
{
  if (method_id == 0 || self->channels == NULL || self->state != STATE_OPEN)
    return;
  /* A token the server refuses: the update gets the 403 or 530. */
  if (method_id == CAREHARE_METHOD_CONNECTION_UPDATE_SECRET)
    {
      _carehare_protocol_fail_update_secrets (self, cause);
      return;
    }

  for (guint i = 1; i <= self->channel_max; i++)
    {
      Channel *ch = &self->channels[i];

      if (ch->state != CHANNEL_BUSY)
        continue;
      if (ch->kind == CHANNEL_KIND_RPC && ch->op != NULL &&
          _carehare_protocol_rpc_request_id (ch->op) == method_id)
        {
          _carehare_protocol_complete (self, ch->op, NULL, g_error_copy (cause));
          ch->op = NULL;
        }
      else if (ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL &&
               ch->consumer->state == CONSUMER_STARTING &&
               (method_id == CAREHARE_METHOD_BASIC_QOS ||
                method_id == CAREHARE_METHOD_BASIC_CONSUME))
        _carehare_protocol_consumer_end (self, ch->consumer, g_error_copy (cause));
    }
}

/* We found the server's bytes unacceptable: say so with Connection.Close
 * (the socket is still writable) and finish. The framing may be lost, so
 * waiting for Close-Ok would be waiting on bytes we cannot trust. */
void
_carehare_protocol_fail_bad_bytes (CarehareProtocol *self,
                                   guint16           reply_code,
                                   guint32           method_id,
                                   GError           *error)
{
  GError *cause;

  g_debug ("closing the connection with %u: %s", reply_code, error->message);

  /* Before Start there is no AMQP session to close; while closing we
   * already said Close. */
  if (self->state == STATE_AWAIT_TUNE || self->state == STATE_AWAIT_OPEN_OK ||
      self->state == STATE_OPEN)
    {
      CarehareMethod close = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };
      g_autofree char *text = NULL;
      const char *reason = error->message;

      /* The server is told what was wrong, not that it was from the server. */
      if (g_str_has_prefix (reason, "Bad bytes from server: "))
        reason += strlen ("Bad bytes from server: ");
      /* reply-text is a shortstr: cut it at a character boundary. */
      text = g_strdup_printf ("%s - %s", carehare_reply_code_name (reply_code), reason);
      if (strlen (text) > 250)
        *g_utf8_find_prev_char (text, text + 250) = '\0';
      close.connection_close.reply_code = reply_code;
      close.connection_close.reply_text = text;
      close.connection_close.class_id = method_id >> 16;
      close.connection_close.method_id = method_id & 0xffff;
      _carehare_protocol_append_method (self, 0, &close);
    }

  if (error->domain == CAREHARE_ERROR)
    cause = error;
  else
    {
      cause = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                           self->state == STATE_AWAIT_START
                           ? "Bad bytes from server: not an AMQP 0-9-1 server (%s)"
                           : "Bad bytes from server: %s",
                           error->message);
      g_error_free (error);
    }
  _carehare_protocol_finish (self, cause);
}

void
_carehare_protocol_fail_unexpected (CarehareProtocol *self,
                                    guint16           reply_code,
                                    guint32           method_id,
                                    const char       *format,
                                    ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  _carehare_protocol_fail_bad_bytes (self, reply_code, method_id,
                  g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                               "Bad bytes from server: %s", message));
}

/* ---- lifecycle ----------------------------------------------------------- */

CarehareProtocol *
carehare_protocol_new (const CarehareProtocolConfig    *config,
                       const CarehareProtocolCallbacks *callbacks,
                       gpointer                         user_data)
{
  CarehareProtocol *self = g_new0 (CarehareProtocol, 1);

  self->state = STATE_INITIAL;
  if (callbacks != NULL)
    self->callbacks = *callbacks;
  self->user_data = user_data;

  self->username = g_strdup (config->username != NULL ? config->username : "guest");
  self->password = g_strdup (config->password != NULL ? config->password : "guest");
  self->vhost = g_strdup (config->vhost != NULL ? config->vhost : "/");
  self->connection_name = g_strdup (config->connection_name);
  self->product = g_strdup (config->product != NULL ? config->product : "carehare-glib");
  self->version = g_strdup (config->version != NULL ? config->version : "");
  self->platform = g_strdup (config->platform != NULL ? config->platform : "GLib");
  self->mechanism = config->mechanism;
  self->want_heartbeat = config->heartbeat;
  self->want_channel_max = config->channel_max;
  self->want_frame_max = config->frame_max;
  self->close_timeout_us = config->close_timeout_us > 0 ? config->close_timeout_us
                                                        : 5 * G_USEC_PER_SEC;

  /* Until Tune, accept frames up to our default: Start is small, and a
   * server that sends more before Tune is not one we want. */
  self->frame_max = CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX;

  /* Never above what any broker sends (which also keeps a body within a
   * GByteArray, whose length is a guint). */
  self->max_body_size = config->max_body_size > 0
                        ? MIN (config->max_body_size, CAREHARE_PROTOCOL_MAX_BODY_SIZE)
                        : CAREHARE_PROTOCOL_DEFAULT_MAX_BODY_SIZE;
  self->publishers = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                            (GDestroyNotify) _carehare_protocol_publisher_free);
  self->consumers = g_ptr_array_new ();

  self->in = g_byte_array_new ();
  self->out = g_byte_array_new ();
  self->segments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  self->close_ops = g_ptr_array_new ();
  self->close_deadline = G_MAXINT64;
  self->free_hint = 1;
  g_queue_init (&self->idle);
  g_queue_init (&self->waiting);
  g_queue_init (&self->events);
  return self;
}

void
carehare_protocol_free (CarehareProtocol *self)
{
  if (self == NULL)
    return;

  g_return_if_fail (!self->free_pending);

  _carehare_protocol_enter (self);
  /* A close waiting for Close-Ok is over: we closed it (nothing else was
   * pending while closing). */
  _carehare_protocol_finish (self, self->state == STATE_CLOSING
                                   ? NULL
                                   : g_error_new_literal (CAREHARE_ERROR,
                                                          CAREHARE_ERROR_CONNECTION_CLOSED,
                                                          "Connection closed: the connection "
                                                          "object was destroyed"));
  /* Nobody is left to hear "finished". */
  self->callbacks.finished = NULL;
  self->callbacks.blocked_changed = NULL;
  self->callbacks.channel_closed = NULL;
  /* Called from one of our own callbacks (the object that owns us was
   * disposed there): the completions still queued run first, and the
   * outermost call frees us when it returns. */
  self->free_pending = TRUE;
  _carehare_protocol_leave (self);
}

static void
protocol_destroy (CarehareProtocol *self)
{
  g_free (self->username);
  if (self->password != NULL)
    memset (self->password, 0, strlen (self->password));
  g_free (self->password);
  g_free (self->vhost);
  g_free (self->connection_name);
  g_free (self->product);
  g_free (self->version);
  g_free (self->platform);
  g_clear_pointer (&self->server_properties, g_variant_unref);
  g_byte_array_unref (self->in);
  g_byte_array_unref (self->out);
  g_ptr_array_unref (self->segments);
  g_ptr_array_unref (self->close_ops);
  g_queue_clear (&self->secret_ops);
  g_hash_table_unref (self->publishers);
  g_ptr_array_unref (self->consumers);
  g_free (self->channels);
  g_queue_clear (&self->idle);
  g_clear_error (&self->finish_error);
  g_free (self);
}

/* ---- channels ------------------------------------------------------------ */

static guint16
allocate_channel_id (CarehareProtocol *self)
{
  if (self->n_open_channels >= self->channel_max)
    return 0;

  for (guint n = 0; n < self->channel_max; n++)
    {
      guint16 id = self->free_hint;

      self->free_hint = id >= self->channel_max ? 1 : id + 1;
      if (self->channels[id].state == CHANNEL_FREE)
        return id;
    }
  return 0;
}

/* A channel for new work: an idle pooled one, or a new id (for which
 * Channel.Open is queued, pipelined with what follows). 0 if none. */
static guint16
acquire_channel (CarehareProtocol *self)
{
  guint16 id = GPOINTER_TO_UINT (g_queue_pop_head (&self->idle));

  if (id == 0)
    {
      CarehareMethod open = { .id = CAREHARE_METHOD_CHANNEL_OPEN };

      id = allocate_channel_id (self);
      if (id == 0)
        return 0;
      self->n_open_channels++;
      _carehare_protocol_append_method (self, id, &open);
    }
  self->channels[id].state = CHANNEL_BUSY;
  return id;
}

/* Starts @op (an RPC, a consumer's start or a publisher's channel) on a
 * channel, or queues it until one is available. */
void
_carehare_protocol_dispatch (CarehareProtocol   *self,
                             CarehareProtocolOp *op)
{
  guint16 id = acquire_channel (self);

  if (id == 0)
    {
      g_queue_push_tail (&self->waiting, op);
      if (op->kind == OP_PUBLISHER_OPEN)
        op->publisher->waiting = TRUE;
      _carehare_protocol_reclaim_for_waiters (self);
      _carehare_protocol_fail_starved_waiters (self);
      return;
    }

  switch (op->kind)
    {
    case OP_RPC:
      _carehare_protocol_send_rpc (self, id, op);
      break;
    case OP_PUBLISHER_OPEN:
      op->publisher->waiting = FALSE;
      _carehare_protocol_publisher_start (self, op->publisher, id);
      break;
    case OP_CONSUME:
      _carehare_protocol_consumer_start (self, op->consumer, id);
      break;
    default:
      g_assert_not_reached ();
    }
}

/* Channel @id is usable again (idle) or its id is free: hand it to the
 * first waiter. */
void
_carehare_protocol_channel_available (CarehareProtocol *self,
                                      guint16           id)
{
  if (self->channels[id].state == CHANNEL_IDLE)
    g_queue_push_tail (&self->idle, GUINT_TO_POINTER (id));

  while (self->state == STATE_OPEN &&
         !g_queue_is_empty (&self->waiting) &&
         (!g_queue_is_empty (&self->idle) || self->n_open_channels < self->channel_max))
    _carehare_protocol_dispatch (self, g_queue_pop_head (&self->waiting));
  _carehare_protocol_fail_starved_waiters (self);
}

static void
release_channel (CarehareProtocol *self,
                 guint16           id)
{
  Channel *ch = &self->channels[id];

  g_queue_remove (&self->idle, GUINT_TO_POINTER (id));
  if (ch->state == CHANNEL_CLOSING)
    {
      g_assert (self->n_closing > 0);
      self->n_closing--;
    }
  ch->state = CHANNEL_FREE;
  ch->kind = CHANNEL_KIND_RPC;
  ch->op = NULL;
  ch->publisher = NULL;
  ch->consumer = NULL;
  g_assert (self->n_open_channels > 0);
  self->n_open_channels--;
  _carehare_protocol_channel_available (self, id);
}

/* Whether no channel will ever free up by itself: every id is open and
 * held by a running consumer (one still starting may yet fail). */
static gboolean
channels_starved (CarehareProtocol *self)
{
  if (self->n_open_channels < self->channel_max || !g_queue_is_empty (&self->idle))
    return FALSE;
  for (guint i = 1; i <= self->channel_max; i++)
    {
      Channel *ch = &self->channels[i];

      /* The call channel is held for as long as the connection lives. */
      if (ch->state == CHANNEL_BUSY && ch->kind == CHANNEL_KIND_CALL && ch->publisher != NULL)
        continue;
      if (ch->state != CHANNEL_BUSY || ch->kind != CHANNEL_KIND_CONSUMER ||
          ch->consumer == NULL || ch->consumer->state != CONSUMER_ACTIVE)
        return FALSE;
    }
  return TRUE;
}

/* Requests that wait for a channel that will never come fail, rather than
 * hang. */
void
_carehare_protocol_fail_starved_waiters (CarehareProtocol *self)
{
  CarehareProtocolOp *op;

  if (self->state != STATE_OPEN || g_queue_is_empty (&self->waiting) ||
      !channels_starved (self))
    return;

  while ((op = g_queue_pop_head (&self->waiting)) != NULL)
    {
      GError *error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_FAILED,
                                   "No channel available: all %u channels the server "
                                   "allows (channel_max) are held by consumers; close "
                                   "a consumer or connect with a higher channel_max",
                                   self->channel_max);

      switch (op->kind)
        {
        case OP_RPC:
          _carehare_protocol_complete (self, op, NULL, error);
          break;
        case OP_PUBLISHER_OPEN:
          op->publisher->waiting = FALSE;
          _carehare_protocol_publisher_end (self, op->publisher, error);
          break;
        case OP_CONSUME:
          _carehare_protocol_consumer_end (self, op->consumer, error);
          break;
        default:
          g_assert_not_reached ();
        }
    }
}

/* We no longer trust channel @id (its op was cancelled): close it and keep
 * its id until Close-Ok. */
void
_carehare_protocol_discard_channel (CarehareProtocol *self,
                                    guint16           id,
                                    const char       *why)
{
  Channel *ch = &self->channels[id];
  CarehareMethod close = { .id = CAREHARE_METHOD_CHANNEL_CLOSE };

  ch->op = NULL;
  if (ch->state != CHANNEL_CLOSING)
    self->n_closing++;
  ch->state = CHANNEL_CLOSING;
  close.channel_close.reply_code = 200;
  close.channel_close.reply_text = (char *) why;
  _carehare_protocol_append_method (self, id, &close);
}

/* ---- input --------------------------------------------------------------- */

static void
handle_channel_method (CarehareProtocol *self,
                       guint16           id,
                       CarehareMethod   *method)
{
  Channel *ch;

  if (id > self->channel_max || self->channels[id].state == CHANNEL_FREE)
    {
      _carehare_protocol_fail_unexpected (self, 504, method->id,
                                          "%s on channel %u, which is not open",
                                          carehare_method_name (method->id), id);
      return;
    }
  ch = &self->channels[id];

  switch (method->id)
    {
    case CAREHARE_METHOD_CHANNEL_OPEN_OK:
      return;

    case CAREHARE_METHOD_CHANNEL_CLOSE:
      {
        CarehareMethod ok = { .id = CAREHARE_METHOD_CHANNEL_CLOSE_OK };
        GError *error;
        Event *ev;

        _carehare_protocol_append_method (self, id, &ok);
        if (ch->state == CHANNEL_CLOSING)
          return;  /* crossed closes: the server still answers ours */
        ev = g_new0 (Event, 1);
        ev->kind = EVENT_CHANNEL_CLOSED;
        ev->channel = id;
        ev->reply_code = method->channel_close.reply_code;
        ev->reason = g_strdup (method->channel_close.reply_text);
        g_queue_push_tail (&self->events, ev);
        error = carehare_error_new_from_reply (CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                               "Channel closed by server",
                                               method->channel_close.reply_code,
                                               method->channel_close.reply_text);
        if (ch->kind == CHANNEL_KIND_PUBLISHER || ch->kind == CHANNEL_KIND_CALL)
          _carehare_protocol_publisher_end (self, ch->publisher, error);
        else if (ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL)
          _carehare_protocol_consumer_end (self, ch->consumer, error);
        else if (ch->op != NULL)
          _carehare_protocol_complete (self, ch->op, NULL, error);
        else
          g_error_free (error);
        release_channel (self, id);
        return;
      }

    case CAREHARE_METHOD_CHANNEL_CLOSE_OK:
      if (ch->state != CHANNEL_CLOSING)
        {
          _carehare_protocol_fail_unexpected (self, 505, method->id,
                                              "channel.close-ok on channel %u, which we did "
                                              "not close", id);
          return;
        }
      if (ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL)
        _carehare_protocol_consumer_end (self, ch->consumer, NULL);
      release_channel (self, id);
      return;

    case CAREHARE_METHOD_CHANNEL_FLOW:
      {
        CarehareMethod ok = { .id = CAREHARE_METHOD_CHANNEL_FLOW_OK };

        /* Only publishers send content: their publishes wait while the
         * flow is stopped, and go out after Flow-Ok when it resumes. */
        ok.channel_flow_ok.active = method->channel_flow.active;
        _carehare_protocol_append_method (self, id, &ok);
        if (ch->state != CHANNEL_CLOSING &&
            (ch->kind == CHANNEL_KIND_PUBLISHER || ch->kind == CHANNEL_KIND_CALL))
          {
            ch->publisher->flow_stopped = !method->channel_flow.active;
            _carehare_protocol_publisher_flush (self, ch->publisher);
          }
        return;
      }

    default:
      break;
    }

  if (ch->state == CHANNEL_CLOSING)
    return;  /* in flight before the server read our Close */

  switch (ch->kind)
    {
    case CHANNEL_KIND_PUBLISHER:
      _carehare_protocol_handle_publisher_method (self, id, ch->publisher, method);
      return;
    case CHANNEL_KIND_CONSUMER:
      _carehare_protocol_handle_consumer_method (self, id, ch->consumer, method);
      return;
    case CHANNEL_KIND_CALL:
      _carehare_protocol_handle_call_method (self, id, method);
      return;
    case CHANNEL_KIND_RPC:
    default:
      _carehare_protocol_handle_rpc_method (self, id, method);
      return;
    }
}

/* A refusal during the handshake has a cause the person running the
 * program can fix, and the server's text does not say which: name it. */
static void
add_login_hint (CarehareProtocol *self,
                GError           *cause)
{
  const char *hint = NULL;
  char *message;

  if (self->state == STATE_AWAIT_TUNE &&
      carehare_error_get_reply_code (cause) == 403)
    hint = self->mechanism == CAREHARE_AUTH_MECHANISM_EXTERNAL
           ? "the broker refused the TLS client certificate's user: check that a user "
             "named as its subject exists"
           : "check the user name and password in the URI";
  else if (self->state == STATE_AWAIT_OPEN_OK &&
           carehare_error_get_reply_code (cause) == 530)
    hint = "check that the URI's virtual host exists and that the user may use it";
  if (hint == NULL)
    return;
  message = g_strdup_printf ("%s (%s)", cause->message, hint);
  g_free (cause->message);
  cause->message = message;
}

static void
handle_connection_method (CarehareProtocol *self,
                          CarehareMethod   *method)
{
  switch (method->id)
    {
    case CAREHARE_METHOD_CONNECTION_CLOSE:
      {
        CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_CLOSE_OK };
        GError *cause = NULL;

        _carehare_protocol_append_method (self, 0, &ok);
        /* Crossed with our own Close: we closed it. */
        if (self->state != STATE_CLOSING)
          {
            cause = carehare_error_new_from_reply (CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
                                                   "Connection closed by server",
                                                   method->connection_close.reply_code,
                                                   method->connection_close.reply_text);
            add_login_hint (self, cause);
            fail_named_requests (self,
                                 ((guint32) method->connection_close.class_id << 16) |
                                 method->connection_close.method_id,
                                 cause);
          }
        _carehare_protocol_finish (self, cause);
        return;
      }

    case CAREHARE_METHOD_CONNECTION_CLOSE_OK:
      if (self->state == STATE_CLOSING)
        {
          _carehare_protocol_finish (self, NULL);
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_BLOCKED:
    case CAREHARE_METHOD_CONNECTION_UNBLOCKED:
      {
        gboolean blocked = method->id == CAREHARE_METHOD_CONNECTION_BLOCKED;
        Event *ev;

        if (blocked == self->blocked)
          return;
        self->blocked = blocked;
        if (!blocked)
          {
            GHashTableIter iter;
            Publisher *pub;

            /* Publishes waited while the broker was not reading. */
            g_hash_table_iter_init (&iter, self->publishers);
            while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &pub))
              _carehare_protocol_publisher_flush (self, pub);
            if (self->caller != NULL)
              _carehare_protocol_publisher_flush (self, self->caller);
          }
        ev = g_new0 (Event, 1);
        ev->kind = EVENT_BLOCKED;
        ev->blocked = blocked;
        ev->reason = blocked ? g_strdup (method->connection_blocked.reason) : NULL;
        g_queue_push_tail (&self->events, ev);
        return;
      }

    case CAREHARE_METHOD_CONNECTION_START:
      if (self->state == STATE_AWAIT_START)
        {
          _carehare_protocol_handle_start (self, method);
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_SECURE:
      if (self->state == STATE_AWAIT_TUNE)
        {
          _carehare_protocol_finish (self, g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_FAILED,
                                                        "The server sent an authentication "
                                                        "challenge (connection.secure), which "
                                                        "the %s mechanism does not use",
                                                        self->mechanism ==
                                                        CAREHARE_AUTH_MECHANISM_EXTERNAL
                                                        ? "EXTERNAL" : "PLAIN"));
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_TUNE:
      if (self->state == STATE_AWAIT_TUNE)
        {
          _carehare_protocol_handle_tune (self, method);
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_UPDATE_SECRET_OK:
      if (self->state == STATE_OPEN && !g_queue_is_empty (&self->secret_ops))
        {
          _carehare_protocol_handle_update_secret_ok (self, method);
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_OPEN_OK:
      if (self->state == STATE_AWAIT_OPEN_OK)
        {
          self->state = STATE_OPEN;
          _carehare_protocol_complete (self, self->handshake, method, NULL);
          self->handshake = NULL;
          return;
        }
      break;

    default:
      break;
    }

  if (self->state == STATE_CLOSING)
    return;  /* the server may still be talking before it reads our Close */

  _carehare_protocol_fail_unexpected (self, 503, method->id, "unexpected %s on channel 0",
                                      carehare_method_name (method->id));
}

static void
handle_frame (CarehareProtocol    *self,
              const CarehareFrame *frame)
{
  CarehareMethod method = { 0 };
  GError *error = NULL;

  switch (frame->type)
    {
    case CAREHARE_FRAME_HEARTBEAT:
      if (frame->channel != 0)
        _carehare_protocol_fail_unexpected (self, 501, 0, "heartbeat frame on channel %u",
                                            frame->channel);
      return;

    case CAREHARE_FRAME_METHOD:
      if (!carehare_method_decode (frame->payload, frame->size, &method, &error))
        {
          _carehare_protocol_fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
          return;
        }
      if (frame->channel == 0)
        handle_connection_method (self, &method);
      else if (self->state == STATE_CLOSING)
        ;  /* every channel is gone on our side; the server has yet to read our Close */
      else if (self->state == STATE_OPEN)
        handle_channel_method (self, frame->channel, &method);
      else
        _carehare_protocol_fail_unexpected (self, 504, method.id,
                                            "%s on channel %u during the handshake",
                                            carehare_method_name (method.id), frame->channel);
      carehare_method_clear (&method);
      return;

    default:
      {
        Channel *ch = NULL;
        Content *content = NULL;

        if (self->state == STATE_CLOSING)
          return;
        if (self->state == STATE_OPEN && frame->channel != 0 &&
            frame->channel <= self->channel_max &&
            self->channels[frame->channel].state != CHANNEL_FREE)
          ch = &self->channels[frame->channel];
        if (ch != NULL && ch->state == CHANNEL_CLOSING)
          return;  /* content of a message for a consumer we closed */
        if (ch != NULL && (ch->kind == CHANNEL_KIND_PUBLISHER || ch->kind == CHANNEL_KIND_CALL) &&
            ch->publisher != NULL)
          content = &ch->publisher->content;
        else if (ch != NULL && ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL)
          content = &ch->consumer->content;
        if (content == NULL || !content->active)
          {
            _carehare_protocol_fail_unexpected (self, 505, 0,
                                                "unexpected content frame (type %u) on channel %u",
                                                frame->type, frame->channel);
            return;
          }
        _carehare_protocol_handle_content_frame (self, ch, content, frame);
        return;
      }
    }
}

gboolean
carehare_protocol_receive (CarehareProtocol *self,
                           const guint8     *data,
                           gsize             size,
                           gint64            now)
{
  gsize offset = 0;
  const guint8 *buf;
  gsize len;

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

  /* Whole frames are decoded straight from the caller's buffer; only a
   * partial frame at its end is kept, to be completed by the next read. */
  if (self->in->len > 0)
    {
      g_byte_array_append (self->in, data, size);
      buf = self->in->data;
      len = self->in->len;
    }
  else
    {
      buf = data;
      len = size;
    }

  while (self->state != STATE_FINISHED && offset < len)
    {
      CarehareFrame frame;
      GError *error = NULL;
      gssize n;

      n = carehare_frame_decode (buf + offset, len - offset,
                                 self->frame_max, &frame, &error);
      if (n < 0)
        {
          _carehare_protocol_fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
          break;
        }
      if (n == 0)
        break;
      offset += n;
      handle_frame (self, &frame);
    }

  if (self->state != STATE_FINISHED)
    {
      if (buf == data)
        g_byte_array_append (self->in, data + offset, len - offset);
      else if (offset > 0)
        g_byte_array_remove_range (self->in, 0, offset);
    }

  if (!_carehare_protocol_leave (self))
    return FALSE;
  return self->state != STATE_FINISHED;
}

/* ---- output and time ----------------------------------------------------- */

gboolean
carehare_protocol_has_output (CarehareProtocol *self)
{
  g_return_val_if_fail (self != NULL, FALSE);
  return self->out->len > 0 || self->segments->len > 0;
}

/* Seals what out holds into a segment. */
void
_carehare_protocol_seal_out (CarehareProtocol *self)
{
  if (self->out->len == 0)
    return;
  self->segments_size += self->out->len;
  g_ptr_array_add (self->segments, g_byte_array_free_to_bytes (self->out));
  self->out = g_byte_array_new ();
}

void
_carehare_protocol_add_segment (CarehareProtocol *self,
                                GBytes           *segment)
{
  _carehare_protocol_seal_out (self);
  self->segments_size += g_bytes_get_size (segment);
  g_ptr_array_add (self->segments, segment);
}

gsize
carehare_protocol_get_output_size (CarehareProtocol *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->segments_size + self->out->len;
}

GPtrArray *
carehare_protocol_take_output_segments (CarehareProtocol *self,
                                        gint64            now)
{
  GPtrArray *segments;

  g_return_val_if_fail (self != NULL, NULL);

  if (!carehare_protocol_has_output (self))
    return NULL;
  _carehare_protocol_seal_out (self);
  segments = g_steal_pointer (&self->segments);
  self->segments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  self->stats.bytes_sent += self->segments_size;
  self->segments_size = 0;
  self->now = MAX (self->now, now);
  self->last_write = now;
  return segments;
}

GBytes *
carehare_protocol_take_output (CarehareProtocol *self,
                               gint64            now)
{
  GBytes *bytes;

  g_return_val_if_fail (self != NULL, NULL);

  if (self->segments->len > 0)
    {
      /* One buffer for callers that want one: the segments, copied. */
      g_autoptr(GPtrArray) segments = carehare_protocol_take_output_segments (self, now);
      GByteArray *all = g_byte_array_new ();

      for (guint i = 0; i < segments->len; i++)
        {
          gsize size;
          const guint8 *data = g_bytes_get_data (segments->pdata[i], &size);

          g_byte_array_append (all, data, size);
        }
      return g_byte_array_free_to_bytes (all);
    }
  if (self->out->len == 0)
    return NULL;
  self->stats.bytes_sent += self->out->len;
  bytes = g_byte_array_free_to_bytes (self->out);
  self->out = g_byte_array_new ();
  self->now = MAX (self->now, now);
  self->last_write = now;
  return bytes;
}

gint64
carehare_protocol_get_deadline (CarehareProtocol *self)
{
  gint64 deadline = G_MAXINT64;

  g_return_val_if_fail (self != NULL, G_MAXINT64);

  if (self->state == STATE_FINISHED)
    return G_MAXINT64;
  if (self->state == STATE_CLOSING)
    deadline = self->close_deadline;
  if (self->state == STATE_OPEN && !g_queue_is_empty (&self->idle_publishers))
    {
      Publisher *lru = g_queue_peek_head (&self->idle_publishers);

      deadline = MIN (deadline, lru->idle_since + CAREHARE_PROTOCOL_PUBLISHER_IDLE_US);
    }
  if (self->heartbeat > 0 &&
      (self->state == STATE_AWAIT_OPEN_OK || self->state == STATE_OPEN ||
       self->state == STATE_CLOSING))
    {
      gint64 interval = (gint64) self->heartbeat * G_USEC_PER_SEC;

      /* Output already waiting will be written: no heartbeat needed. */
      if (!carehare_protocol_has_output (self))
        deadline = MIN (deadline, self->last_write + interval / 2);
      deadline = MIN (deadline, self->last_read + 2 * interval);
    }
  return deadline;
}

gint64
carehare_protocol_tick (CarehareProtocol *self,
                        gint64            now)
{
  gint64 deadline;

  g_return_val_if_fail (self != NULL, G_MAXINT64);

  _carehare_protocol_enter (self);
  self->now = MAX (self->now, now);
  if (self->state == STATE_CLOSING && now >= self->close_deadline)
    {
      /* The server never answered our Close: we closed it all the same. */
      _carehare_protocol_finish (self, NULL);
    }

  /* Idle publisher channels are given back. */
  while (self->state == STATE_OPEN)
    {
      Publisher *lru = g_queue_peek_head (&self->idle_publishers);

      if (lru == NULL || now < lru->idle_since + CAREHARE_PROTOCOL_PUBLISHER_IDLE_US)
        break;
      _carehare_protocol_publisher_close_idle (self, lru, "idle publisher channel given back");
    }

  if (self->heartbeat > 0 &&
      (self->state == STATE_AWAIT_OPEN_OK || self->state == STATE_OPEN ||
       self->state == STATE_CLOSING))
    {
      gint64 interval = (gint64) self->heartbeat * G_USEC_PER_SEC;

      /* Counted once per silence, when it reaches one interval. */
      if (now >= self->last_read + interval && self->missed_since != self->last_read)
        {
          self->missed_since = self->last_read;
          self->stats.heartbeats_missed++;
        }

      /* While closing, a silent server is a close that timed out early:
       * we closed it (as in carehare_protocol_abort()). */
      if (now >= self->last_read + 2 * interval && self->state == STATE_CLOSING)
        _carehare_protocol_finish (self, NULL);
      else if (now >= self->last_read + 2 * interval)
        _carehare_protocol_finish (self,
                                   g_error_new (CAREHARE_ERROR,
                                                CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR,
                                                "Connection closed by heartbeat monitor: nothing "
                                                "arrived from the server for %u seconds",
                                                2 * (guint) self->heartbeat));
      else if (now >= self->last_write + interval / 2 && !carehare_protocol_has_output (self))
        {
          carehare_wire_append_heartbeat_frame (self->out);
          self->stats.heartbeats_sent++;
        }
    }
  deadline = carehare_protocol_get_deadline (self);
  _carehare_protocol_leave (self);
  return deadline;
}

void
carehare_protocol_abort (CarehareProtocol *self,
                         const GError     *error)
{
  GError *cause;

  g_return_if_fail (self != NULL);
  g_return_if_fail (error != NULL);

  if (self->state == STATE_FINISHED)
    return;

  _carehare_protocol_enter (self);
  if (self->state == STATE_CLOSING)
    cause = NULL;  /* we were closing anyway: the server just hung up first */
  else if (error->domain == CAREHARE_ERROR)
    cause = g_error_copy (error);
  else if (self->state == STATE_AWAIT_START || self->state == STATE_AWAIT_TUNE ||
           self->state == STATE_AWAIT_OPEN_OK)
    cause = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                         "Connection closed during the AMQP handshake: %s", error->message);
  else
    cause = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                         "Connection closed: %s", error->message);
  _carehare_protocol_finish (self, cause);
  _carehare_protocol_leave (self);
}

CarehareProtocolOp *
carehare_protocol_close (CarehareProtocol           *self,
                         gint64                      now,
                         CarehareProtocolOpCallback  callback,
                         gpointer                    user_data)
{
  CarehareProtocolOp *op;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_CLOSE, callback, user_data);

  switch (self->state)
    {
    case STATE_FINISHED:
      _carehare_protocol_complete (self, op, NULL,
                                   self->finish_error != NULL
                                   ? g_error_copy (self->finish_error) : NULL);
      break;

    case STATE_CLOSING:
      g_ptr_array_add (self->close_ops, op);
      break;

    case STATE_INITIAL:
    case STATE_AWAIT_START:
      /* Nothing to say to the server yet. */
      g_ptr_array_add (self->close_ops, op);
      _carehare_protocol_finish (self, NULL);
      break;

    case STATE_AWAIT_TUNE:
    case STATE_AWAIT_OPEN_OK:
    case STATE_OPEN:
      {
        CarehareMethod close = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };
        g_autoptr(GError) cause = g_error_new_literal (CAREHARE_ERROR,
                                                       CAREHARE_ERROR_CONNECTION_CLOSED,
                                                       "Connection closed by the application");

        close.connection_close.reply_code = 200;
        close.connection_close.reply_text = (char *) "Goodbye";
        _carehare_protocol_append_method (self, 0, &close);
        g_ptr_array_add (self->close_ops, op);
        fail_everything (self, cause);
        self->state = STATE_CLOSING;
        self->close_deadline = now + self->close_timeout_us;
      }
      break;

    default:
      g_assert_not_reached ();
    }
  return _carehare_protocol_leave_with_op (self, op);
}

/* ---- accessors ----------------------------------------------------------- */

const CarehareProtocolStats *
carehare_protocol_get_stats (CarehareProtocol *self)
{
  return &self->stats;
}

gint64
carehare_protocol_get_last_read (CarehareProtocol *self)
{
  return self->last_read;
}

guint16
carehare_protocol_get_heartbeat (CarehareProtocol *self)
{
  return self->heartbeat;
}

guint32
carehare_protocol_get_frame_max (CarehareProtocol *self)
{
  return self->frame_max;
}

guint16
carehare_protocol_get_channel_max (CarehareProtocol *self)
{
  return self->channel_max;
}

GVariant *
carehare_protocol_get_server_properties (CarehareProtocol *self)
{
  return self->server_properties;
}

gboolean
carehare_protocol_is_blocked (CarehareProtocol *self)
{
  return self->blocked;
}

gboolean
carehare_protocol_is_finished (CarehareProtocol *self)
{
  return self->state == STATE_FINISHED;
}

const GError *
carehare_protocol_get_finish_error (CarehareProtocol *self)
{
  return self->state == STATE_FINISHED ? self->finish_error : NULL;
}

guint
carehare_protocol_get_n_open_channels (CarehareProtocol *self)
{
  return self->n_open_channels;
}

guint
carehare_protocol_get_n_waiting (CarehareProtocol *self)
{
  return g_queue_get_length (&self->waiting);
}
