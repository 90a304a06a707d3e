/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection state machine. See carehare-protocol.h for the contract.
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
 * entry point returns (see leave()), so callbacks see a consistent state
 * and may call back in.
 */
#include "carehare-protocol.h"

#include "carehare-error-private.h"

#include <string.h>

#define CLASS_CONNECTION 10
#define CLASS_CHANNEL    20

typedef enum {
  STATE_INITIAL,
  STATE_AWAIT_START,
  STATE_AWAIT_TUNE,
  STATE_AWAIT_OPEN_OK,
  STATE_OPEN,
  STATE_CLOSING,
  STATE_FINISHED,
} State;

typedef enum {
  OP_HANDSHAKE,
  OP_RPC,
  OP_CLOSE,
  OP_PUBLISH,
  OP_CONSUME,            /* a consumer's start */
  OP_CONSUMER_CLOSE,
  OP_PUBLISHER_OPEN,     /* internal: a publisher waiting for a channel */
} OpKind;

typedef struct _Publisher Publisher;

struct _CarehareProtocolOp {
  OpKind kind;
  CarehareProtocolOpCallback callback;
  gpointer user_data;
  gboolean done;           /* completion queued */
  GByteArray *frame;       /* RPC: owned encoded frame; channel patched when sent */
  guint32 reply_id;
  guint16 channel;         /* RPC: the channel it runs on, 0 while waiting */
  CarehareMethod reply;    /* owned once done, if has_reply */
  gboolean has_reply;
  GError *error;           /* owned once done */

  /* OP_PUBLISH: frame holds the method and header frames */
  Publisher *publisher;    /* also OP_PUBLISHER_OPEN */
  guint method_len;        /* where the header frame starts in frame */
  GBytes *body;            /* owned until written; a mandatory one's until confirmed */
  GBytes *header;          /* mandatory: owned content header payload, until confirmed */
  char *routing_key;       /* owned: matches basic.return to its publish */
  gboolean mandatory;
  gboolean written;
  guint64 seq;             /* delivery tag, once written */
  GError *returned;        /* owned: basic.return arrived for it */

  /* OP_CONSUME, OP_CONSUMER_CLOSE */
  CarehareProtocolConsumer *consumer;  /* not owned */
};

/* A basic.deliver or basic.return and the content frames that follow it. */
typedef struct {
  gboolean active;         /* a content method arrived */
  gboolean have_header;
  CarehareMethod method;   /* owned */
  CarehareBasicProperties props;  /* owned */
  guint64 body_size;
  GByteArray *body;        /* owned */
  GError *bad;             /* owned: the header cannot be represented, or
                            * the body is too large; the body is skipped
                            * and the message rejected */
  gboolean skip;           /* a return no publish can match: the body is
                            * skipped, not buffered */
  guint64 skipped;         /* body bytes skipped so far, when bad or skip */
} Content;

struct _Publisher {
  char *exchange;          /* owned; the key in publishers */
  guint16 channel;         /* 0 until it has one */
  CarehareProtocolOp open_op;  /* OP_PUBLISHER_OPEN; in waiting while it waits */
  gboolean waiting;
  guint64 next_seq;        /* delivery tag of the last publish written */
  gboolean flow_stopped;   /* the server sent Channel.Flow(active=false) */
  GQueue unwritten;        /* of CarehareProtocolOp *: waiting for a channel, unblock or flow */
  GQueue unconfirmed;      /* of CarehareProtocolOp *: written, ascending seq */
  Content content;         /* a basic.return being received */
  GQueue returns;          /* of owned Return *: received, not yet settled by an ack */
  guint64 returned_seq;    /* delivery tag of the last publish a return settled on */
  gboolean idle;           /* nothing in flight: linked in idle_publishers */
  GList idle_link;         /* data: this publisher */
  gint64 idle_since;
};

/* A basic.return waiting for the confirm that tells which of the publishes
 * it matches it was for (see handle_return()). */
typedef struct {
  GError *error;           /* owned: UNROUTABLE, with the broker's reply */
  GArray *candidates;      /* of guint64: delivery tags of the matching publishes, ascending */
} Return;

typedef enum {
  CONSUMER_WAITING,        /* for a channel */
  CONSUMER_STARTING,       /* Open, Qos, Consume sent */
  CONSUMER_ACTIVE,
  CONSUMER_CANCELLED,      /* by the server; the channel stays open while
                            * deliveries handed out are not settled */
  CONSUMER_CLOSING,        /* we sent Channel.Close */
  CONSUMER_ENDED,
} ConsumerState;

struct _CarehareProtocolConsumer {
  guint ref_count;
  ConsumerState state;
  char *queue;
  guint32 prefetch_size;
  guint16 prefetch_count;
  char *tag;               /* from Consume-Ok */
  guint16 channel;
  CarehareProtocolConsumerCallbacks callbacks;  /* cleared by the owner's unref */
  gpointer user_data;
  CarehareProtocolOp *start_op;    /* pending start, not owned */
  GPtrArray *close_ops;            /* pending closes, not owned */
  Content content;
  /* Delivery tags handed to the owner and not settled yet: owned
   * guint64 * keys, ascending. Its size is what the broker counts against
   * prefetch_count (it counts a settle only once it reads it, so never
   * less): a delivery that finds prefetch_count of them is a server fault. */
  GTree *unsettled;
  guint64 last_tag;                /* of the last basic.deliver; tags rise */
  gboolean told_closed;            /* the closed callback is queued */
};

typedef enum {
  CHANNEL_FREE = 0,
  CHANNEL_BUSY,
  CHANNEL_IDLE,
  CHANNEL_CLOSING,
} ChannelState;

typedef enum {
  CHANNEL_KIND_RPC,
  CHANNEL_KIND_PUBLISHER,
  CHANNEL_KIND_CONSUMER,
} ChannelKind;

typedef struct {
  ChannelState state;
  ChannelKind kind;
  CarehareProtocolOp *op;  /* BUSY RPC: the RPC running here (not owned) */
  Publisher *publisher;    /* PUBLISHER: owned by publishers */
  CarehareProtocolConsumer *consumer;  /* CONSUMER: the protocol's ref is in consumers */
} Channel;

typedef enum {
  EVENT_OP_DONE,
  EVENT_FINISHED,
  EVENT_BLOCKED,
  EVENT_DELIVERY,
  EVENT_DELIVERY_REJECTED,
  EVENT_CONSUMER_CLOSED,
} EventKind;

typedef struct {
  EventKind kind;
  CarehareProtocolOp *op;  /* OP_DONE: owned */
  gboolean blocked;
  char *reason;
  CarehareProtocolConsumer *consumer;  /* owned ref */
  CarehareProtocolDelivery *delivery;  /* owned */
  guint64 delivery_tag;                /* DELIVERY_REJECTED */
  GError *error;                       /* owned */
} Event;

struct _CarehareProtocol {
  State state;
  CarehareProtocolCallbacks callbacks;
  gpointer user_data;

  /* configuration (owned copies) */
  char *username;
  char *password;
  char *vhost;
  char *connection_name;
  char *product;
  char *version;
  char *platform;
  CarehareAuthMechanism mechanism;
  gint want_heartbeat;
  gint want_channel_max;
  gint64 want_frame_max;
  gint64 close_timeout_us;
  guint64 max_body_size;

  /* negotiated */
  guint16 heartbeat;
  guint32 frame_max;
  guint16 channel_max;
  GVariant *server_properties;
  gboolean blocked;

  GByteArray *in;          /* bytes received, not yet a whole frame */
  GByteArray *out;         /* bytes to write, after segments */
  GPtrArray *segments;     /* of GBytes *: output before out (bodies are not copied) */
  gint64 last_read;
  gint64 last_write;
  gint64 close_deadline;

  CarehareProtocolOp *handshake;  /* pending handshake op, not owned */
  GPtrArray *close_ops;           /* pending close ops, not owned */

  Channel *channels;       /* channel_max + 1 entries, [0] unused */
  guint n_open_channels;
  guint16 free_hint;
  GQueue idle;             /* of GUINT_TO_POINTER (channel id) */
  GQueue waiting;          /* of CarehareProtocolOp * (RPC, CONSUME, PUBLISHER_OPEN), not owned */
  GHashTable *publishers;  /* exchange -> owned Publisher * */
  GQueue idle_publishers;  /* of Publisher * (links in them), least recently used first */
  guint n_closing;         /* channels in CHANNEL_CLOSING: ids that will be free */
  gint64 now;              /* the latest time a public call was given */
  GPtrArray *consumers;    /* the protocol's refs on live consumers */

  GError *finish_error;    /* why it finished; NULL if we closed it */

  guint depth;
  GQueue events;           /* of Event * */
  gboolean free_pending;   /* freed from a callback: freed when the outermost call returns */
};

static void fail_everything (CarehareProtocol *self, const GError *cause);
static void protocol_destroy (CarehareProtocol *self);
static void consumer_unref_internal (CarehareProtocolConsumer *consumer);
static void publisher_fail_ops (CarehareProtocol *self, Publisher *pub, GError *error);
static void consumer_end (CarehareProtocol *self, CarehareProtocolConsumer *consumer, GError *error);
static void publisher_free (Publisher *pub);
static void consumer_drop_delivery (CarehareProtocol *self, CarehareProtocolConsumer *consumer,
                                    guint64 delivery_tag);

/* ---- plumbing ------------------------------------------------------------ */

static void
enter (CarehareProtocol *self)
{
  self->depth++;
}

/* Returns FALSE when the protocol was freed: carehare_protocol_free() was
 * called from one of the callbacks, and @self is gone. */
static gboolean
leave (CarehareProtocol *self)
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
            if (op->has_reply)
              carehare_method_clear (&op->reply);
            g_clear_error (&op->error);
            g_clear_error (&op->returned);
            g_clear_pointer (&op->frame, g_byte_array_unref);
            g_clear_pointer (&op->body, g_bytes_unref);
            g_clear_pointer (&op->header, g_bytes_unref);
            g_free (op->routing_key);
            g_free (op);
          }
          break;
        case EVENT_DELIVERY:
          if (ev->consumer->callbacks.delivery != NULL)
            ev->consumer->callbacks.delivery (ev->consumer, g_steal_pointer (&ev->delivery),
                                              ev->consumer->user_data);
          else
            consumer_drop_delivery (self, ev->consumer, ev->delivery->delivery_tag);
          g_clear_pointer (&ev->delivery, carehare_protocol_delivery_free);
          consumer_unref_internal (ev->consumer);
          break;
        case EVENT_DELIVERY_REJECTED:
          if (ev->consumer->callbacks.rejected != NULL)
            ev->consumer->callbacks.rejected (ev->consumer, ev->delivery_tag, ev->error,
                                              ev->consumer->user_data);
          g_clear_error (&ev->error);
          consumer_unref_internal (ev->consumer);
          break;
        case EVENT_CONSUMER_CLOSED:
          if (ev->consumer->callbacks.closed != NULL)
            ev->consumer->callbacks.closed (ev->consumer, ev->error, ev->consumer->user_data);
          g_clear_error (&ev->error);
          consumer_unref_internal (ev->consumer);
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

/* leave() for the calls that start an operation: returns @op, or NULL when
 * @op completed during this outermost call, because leave() then ran its
 * callback and freed it. */
static CarehareProtocolOp *
leave_with_op (CarehareProtocol   *self,
               CarehareProtocolOp *op)
{
  gboolean delivered = op->done && self->depth == 1;

  leave (self);
  return delivered ? NULL : op;
}

static CarehareProtocolOp *
op_new (OpKind                     kind,
        CarehareProtocolOpCallback callback,
        gpointer                   user_data)
{
  CarehareProtocolOp *op = g_new0 (CarehareProtocolOp, 1);

  op->kind = kind;
  op->callback = callback;
  op->user_data = user_data;
  return op;
}

/* Queues the completion of @op. Takes @error; moves @reply (if any) into
 * the op. */
static void
complete (CarehareProtocol   *self,
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

static gboolean
append_method (CarehareProtocol     *self,
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

static void
finish (CarehareProtocol *self,
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
    complete (self, g_ptr_array_index (self->close_ops, i), NULL,
              cause != NULL ? g_error_copy (cause) : NULL);
  g_ptr_array_set_size (self->close_ops, 0);

  ev = g_new0 (Event, 1);
  ev->kind = EVENT_FINISHED;
  g_queue_push_tail (&self->events, ev);
}

/* An error for operations that were pending when the connection went away
 * because of @cause (NULL: we closed it). */
static GError *
closed_error_for (const GError *cause)
{
  if (cause == NULL)
    return g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                "Connection closed");
  if (g_error_matches (cause, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
    return g_error_copy (cause);
  return g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                      "Connection closed: %s", cause->message);
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
      complete (self, self->handshake, NULL,
                cause != NULL ? g_error_copy (cause)
                              : closed_error_for (NULL));
      self->handshake = NULL;
    }

  while ((op = g_queue_pop_head (&self->waiting)) != NULL)
    {
      /* Publishers and consumers are failed as a whole below. */
      if (op->kind == OP_PUBLISHER_OPEN)
        op->publisher->waiting = FALSE;
      else if (op->kind != OP_CONSUME)
        complete (self, op, NULL, closed_error_for (cause));
    }

  if (self->channels != NULL)
    {
      for (guint i = 1; i <= self->channel_max; i++)
        {
          Channel *ch = &self->channels[i];

          if (ch->op != NULL)
            complete (self, ch->op, NULL, closed_error_for (cause));
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
          publisher_fail_ops (self, pub, closed_error_for (cause));
          g_hash_table_iter_remove (&iter);
        }
    }

  while (self->consumers != NULL && self->consumers->len > 0)
    consumer_end (self, g_ptr_array_index (self->consumers, 0), closed_error_for (cause));
}

/* The method id of an RPC's request, from its encoded frame. */
static guint32
rpc_request_id (const CarehareProtocolOp *op)
{
  const guint8 *p;

  if (op->frame == NULL || op->frame->len < 11)
    return 0;
  p = op->frame->data + 7;
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

/* The server closes the connection because of a request of ours, the
 * method @method_id its Close names: the operations that sent such a
 * request and wait for its answer fail with @cause itself (the server's
 * code and text); finish() then fails the others as merely pending. The
 * server names no channel: when several such requests are in flight, each
 * gets @cause. */
static void
fail_named_requests (CarehareProtocol *self,
                     guint32           method_id,
                     const GError     *cause)
{
  if (method_id == 0 || self->channels == NULL || self->state != STATE_OPEN)
    return;

  for (guint i = 1; i <= self->channel_max; i++)
    {
      Channel *ch = &self->channels[i];

      if (ch->state != CHANNEL_BUSY)
        continue;
      if (ch->kind == CHANNEL_KIND_RPC && ch->op != NULL &&
          rpc_request_id (ch->op) == method_id)
        {
          complete (self, ch->op, NULL, g_error_copy (cause));
          ch->op = NULL;
        }
      else if (ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL &&
               ch->consumer->state == CONSUMER_STARTING &&
               (method_id == CAREHARE_METHOD_BASIC_QOS ||
                method_id == CAREHARE_METHOD_BASIC_CONSUME))
        consumer_end (self, ch->consumer, g_error_copy (cause));
    }
}

/* We found the server's bytes unacceptable: say so with Connection.Close
 * (the socket is still writable) and finish. The framing may be lost, so
 * waiting for Close-Ok would be waiting on bytes we cannot trust. */
static void
fail_bad_bytes (CarehareProtocol *self,
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
      append_method (self, 0, &close);
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
  finish (self, cause);
}

static void
fail_unexpected (CarehareProtocol *self,
                 guint16           reply_code,
                 guint32           method_id,
                 const char       *format,
                 ...) G_GNUC_PRINTF (4, 5);

static void
fail_unexpected (CarehareProtocol *self,
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

  fail_bad_bytes (self, reply_code, method_id,
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
                                            (GDestroyNotify) publisher_free);
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

  enter (self);
  /* A close waiting for Close-Ok is over: we closed it (nothing else was
   * pending while closing). */
  finish (self, self->state == STATE_CLOSING
                ? NULL
                : g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                       "Connection closed: the connection object was destroyed"));
  /* Nobody is left to hear "finished". */
  self->callbacks.finished = NULL;
  self->callbacks.blocked_changed = NULL;
  /* Called from one of our own callbacks (the object that owns us was
   * disposed there): the completions still queued run first, and the
   * outermost call frees us when it returns. */
  self->free_pending = TRUE;
  leave (self);
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
  g_hash_table_unref (self->publishers);
  g_ptr_array_unref (self->consumers);
  g_free (self->channels);
  g_queue_clear (&self->idle);
  g_clear_error (&self->finish_error);
  g_free (self);
}

/* ---- handshake ----------------------------------------------------------- */

CarehareProtocolOp *
carehare_protocol_start (CarehareProtocol           *self,
                         gint64                      now,
                         CarehareProtocolOpCallback  callback,
                         gpointer                    user_data)
{
  CarehareProtocolOp *op;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);
  g_return_val_if_fail (self->handshake == NULL, NULL);

  enter (self);
  op = op_new (OP_HANDSHAKE, callback, user_data);
  if (self->state != STATE_INITIAL)
    complete (self, op, NULL, closed_error_for (self->finish_error));
  else
    {
      self->handshake = op;
      self->state = STATE_AWAIT_START;
      self->now = now;
      self->last_read = now;
      self->last_write = now;
      g_byte_array_append (self->out, carehare_wire_protocol_header,
                           sizeof carehare_wire_protocol_header);
    }
  return leave_with_op (self, op);
}

static gboolean
mechanism_offered (GBytes     *mechanisms,
                   const char *name)
{
  gsize size = 0;
  const char *data = mechanisms != NULL ? g_bytes_get_data (mechanisms, &size) : NULL;
  gsize len = strlen (name);

  /* A space-separated list. */
  for (gsize i = 0; i < size;)
    {
      gsize j = i;

      while (j < size && data[j] != ' ')
        j++;
      if (j - i == len && memcmp (data + i, name, len) == 0)
        return TRUE;
      i = j + 1;
    }
  return FALSE;
}

static GVariant *
client_properties (CarehareProtocol *self)
{
  GVariantBuilder caps;
  GVariantBuilder props;
  static const char *const capabilities[] = {
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
  };

  g_variant_builder_init (&caps, G_VARIANT_TYPE_VARDICT);
  for (gsize i = 0; i < G_N_ELEMENTS (capabilities); i++)
    g_variant_builder_add (&caps, "{sv}", capabilities[i], g_variant_new_boolean (TRUE));

  g_variant_builder_init (&props, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&props, "{sv}", "product", g_variant_new_string (self->product));
  g_variant_builder_add (&props, "{sv}", "version", g_variant_new_string (self->version));
  g_variant_builder_add (&props, "{sv}", "platform", g_variant_new_string (self->platform));
  g_variant_builder_add (&props, "{sv}", "capabilities", g_variant_builder_end (&caps));
  if (self->connection_name != NULL)
    g_variant_builder_add (&props, "{sv}", "connection_name",
                           g_variant_new_string (self->connection_name));
  return g_variant_ref_sink (g_variant_builder_end (&props));
}

/* Memory that held a password is zeroed before it is freed: the PLAIN
 * response, and the output segment that carries Connection.Start-Ok. */
static void
wipe_byte_array (gpointer data)
{
  GByteArray *array = data;

  memset (array->data, 0, array->len);
  g_byte_array_unref (array);
}

static GBytes *
secret_bytes_new (GByteArray *array)
{
  return g_bytes_new_with_free_func (array->data, array->len, wipe_byte_array, array);
}

/* Encodes @method on channel 0 into an output segment of its own, reserved
 * large enough up front that no reallocation leaves an unwiped copy. */
static void
append_secret_method (CarehareProtocol     *self,
                      const CarehareMethod *method,
                      gsize                 size_hint)
{
  GByteArray *secret = g_byte_array_sized_new ((guint) MIN (size_hint * 2 + 4096, G_MAXUINT));
  const guint8 *start = secret->data;

  /* What is already waiting goes out first. */
  if (self->out->len > 0)
    {
      g_ptr_array_add (self->segments, g_byte_array_free_to_bytes (self->out));
      self->out = g_byte_array_new ();
    }
  if (!carehare_wire_append_method_frame (secret, 0, method, NULL))
    g_critical ("carehare: cannot encode %s", carehare_method_name (method->id));
  if (secret->data != start)
    g_debug ("Connection.Start-Ok outgrew its reserved buffer");
  g_ptr_array_add (self->segments, secret_bytes_new (secret));
}

static void
handle_start (CarehareProtocol     *self,
              const CarehareMethod *method)
{
  const CarehareConnectionStart *start = &method->connection_start;
  CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_START_OK };
  g_autoptr(GVariant) props = NULL;
  g_autoptr(GBytes) response = NULL;
  const char *mechanism;

  if (start->version_major != 0 || start->version_minor != 9)
    {
      fail_unexpected (self, 0, method->id,
                       "the server offers AMQP %u-%u, not 0-9",
                       start->version_major, start->version_minor);
      return;
    }

  g_clear_pointer (&self->server_properties, g_variant_unref);
  if (start->server_properties != NULL)
    self->server_properties = g_variant_ref (start->server_properties);

  if (self->mechanism == CAREHARE_AUTH_MECHANISM_EXTERNAL)
    {
      mechanism = "EXTERNAL";
      response = g_bytes_new_static ("", 0);
    }
  else
    {
      gsize user_len = strlen (self->username);
      gsize password_len = strlen (self->password);
      /* Sized once, so no reallocation leaves a copy of the password. */
      GByteArray *plain = g_byte_array_sized_new ((guint) (2 + user_len + password_len));

      mechanism = "PLAIN";
      /* authzid NUL authcid NUL password */
      g_byte_array_append (plain, (const guint8 *) "", 1);
      g_byte_array_append (plain, (const guint8 *) self->username, (guint) user_len);
      g_byte_array_append (plain, (const guint8 *) "", 1);
      g_byte_array_append (plain, (const guint8 *) self->password, (guint) password_len);
      response = secret_bytes_new (plain);
    }

  if (!mechanism_offered (start->mechanisms, mechanism))
    {
      gsize size = 0;
      const char *offered = start->mechanisms != NULL
                            ? g_bytes_get_data (start->mechanisms, &size) : NULL;
      g_autofree char *text = NULL;
      GError *error;

      /* The server's bytes: valid UTF-8 (invalid bytes and NUL replaced),
       * at most 200 bytes, cut at a character boundary. */
      text = g_utf8_make_valid (offered != NULL ? offered : "", (gssize) MIN (size, 1024));
      if (strlen (text) > 200)
        *g_utf8_find_prev_char (text, text + 201) = '\0';
      error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_FAILED,
                           "The server does not offer the %s authentication mechanism "
                           "(it offers: %s)", mechanism, text);
      finish (self, error);
      return;
    }

  props = client_properties (self);
  ok.connection_start_ok.client_properties = props;
  ok.connection_start_ok.mechanism = (char *) mechanism;
  ok.connection_start_ok.response = response;
  ok.connection_start_ok.locale = (char *) "en_US";
  append_secret_method (self, &ok, g_bytes_get_size (response) +
                        g_variant_get_size (props));
  self->state = STATE_AWAIT_TUNE;
}

/* channel_max: the client may lower what the server offers, never raise it;
 * 0 from either side means "no limit". */
static guint32
negotiate_limit (guint32 server,
                 gint64  want,
                 guint32 fallback)
{
  guint32 value;

  if (want < 0)
    value = server != 0 ? server : fallback;
  else if (server == 0)
    value = want != 0 ? (guint32) want : fallback;
  else if (want == 0)
    value = server;
  else
    value = MIN (server, (guint32) want);
  return value;
}

/* frame_max: the lower non-zero of the client's and the server's values.
 * The client always has one (CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX unless the
 * URI says otherwise), so the server never decides alone how much a frame
 * may make us buffer. */
static guint32
negotiate_frame_max (guint32 server,
                     gint64  want)
{
  guint32 client = want > 0 ? (guint32) MIN (want, CAREHARE_PROTOCOL_MAX_FRAME_MAX)
                            : CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX;
  guint32 value = server != 0 ? MIN (server, client) : client;

  return MAX (value, CAREHARE_FRAME_MIN_SIZE);
}

/* heartbeat, RabbitMQ's rule (and the Java client's): when either side
 * says 0 the other's value is used, so heartbeats are off only when both
 * say 0; otherwise the smaller. The client asks for
 * CAREHARE_PROTOCOL_DEFAULT_HEARTBEAT unless the URI says otherwise. */
static guint16
negotiate_heartbeat (guint16 server,
                     gint    want)
{
  guint16 client = want >= 0 ? (guint16) want : CAREHARE_PROTOCOL_DEFAULT_HEARTBEAT;

  if (client == 0 || server == 0)
    return MAX (client, server);
  return MIN (client, server);
}

static void
handle_tune (CarehareProtocol     *self,
             const CarehareMethod *method)
{
  const CarehareConnectionTune *tune = &method->connection_tune;
  CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_TUNE_OK };
  CarehareMethod open = { .id = CAREHARE_METHOD_CONNECTION_OPEN };
  guint32 channel_max;

  channel_max = negotiate_limit (tune->channel_max, self->want_channel_max,
                                 G_MAXUINT16);
  self->channel_max = (guint16) MIN (channel_max, G_MAXUINT16);
  self->frame_max = negotiate_frame_max (tune->frame_max, self->want_frame_max);
  self->heartbeat = negotiate_heartbeat (tune->heartbeat, self->want_heartbeat);

  self->channels = g_new0 (Channel, (gsize) self->channel_max + 1);

  ok.connection_tune_ok.channel_max = self->channel_max;
  ok.connection_tune_ok.frame_max = self->frame_max;
  ok.connection_tune_ok.heartbeat = self->heartbeat;
  append_method (self, 0, &ok);

  open.connection_open.virtual_host = self->vhost;
  append_method (self, 0, &open);
  self->state = STATE_AWAIT_OPEN_OK;
}

/* ---- channels ------------------------------------------------------------ */

static void
send_rpc (CarehareProtocol   *self,
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
      append_method (self, id, &open);
    }
  self->channels[id].state = CHANNEL_BUSY;
  return id;
}

static void publisher_start (CarehareProtocol *self, Publisher *pub, guint16 id);
static void publisher_update_idle (CarehareProtocol *self, Publisher *pub);
static void consumer_start (CarehareProtocol *self, CarehareProtocolConsumer *consumer, guint16 id);
static void reclaim_for_waiters (CarehareProtocol *self);
static void fail_starved_waiters (CarehareProtocol *self);
static void discard_channel (CarehareProtocol *self, guint16 id, const char *why);

/* Starts @op (an RPC, a consumer's start or a publisher's channel) on a
 * channel, or queues it until one is available. */
static void
dispatch (CarehareProtocol   *self,
          CarehareProtocolOp *op)
{
  guint16 id = acquire_channel (self);

  if (id == 0)
    {
      g_queue_push_tail (&self->waiting, op);
      if (op->kind == OP_PUBLISHER_OPEN)
        op->publisher->waiting = TRUE;
      reclaim_for_waiters (self);
      fail_starved_waiters (self);
      return;
    }

  switch (op->kind)
    {
    case OP_RPC:
      send_rpc (self, id, op);
      break;
    case OP_PUBLISHER_OPEN:
      op->publisher->waiting = FALSE;
      publisher_start (self, op->publisher, id);
      break;
    case OP_CONSUME:
      consumer_start (self, op->consumer, id);
      break;
    default:
      g_assert_not_reached ();
    }
}

/* Channel @id is usable again (idle) or its id is free: hand it to the
 * first waiter. */
static void
channel_available (CarehareProtocol *self,
                   guint16           id)
{
  if (self->channels[id].state == CHANNEL_IDLE)
    g_queue_push_tail (&self->idle, GUINT_TO_POINTER (id));

  while (self->state == STATE_OPEN &&
         !g_queue_is_empty (&self->waiting) &&
         (!g_queue_is_empty (&self->idle) || self->n_open_channels < self->channel_max))
    dispatch (self, g_queue_pop_head (&self->waiting));
  fail_starved_waiters (self);
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
  channel_available (self, id);
}

/* ---- content ------------------------------------------------------------- */

static void
content_clear (Content *content)
{
  if (content->active)
    carehare_method_clear (&content->method);
  carehare_basic_properties_clear (&content->props);
  g_clear_pointer (&content->body, g_byte_array_unref);
  g_clear_error (&content->bad);
  memset (content, 0, sizeof *content);
}

/* ---- publishing ---------------------------------------------------------- */

static void
return_free (Return *ret)
{
  g_clear_error (&ret->error);
  g_array_unref (ret->candidates);
  g_free (ret);
}

static void
publisher_free (Publisher *pub)
{
  g_assert (g_queue_is_empty (&pub->unwritten));
  g_assert (g_queue_is_empty (&pub->unconfirmed));
  g_queue_clear_full (&pub->returns, (GDestroyNotify) return_free);
  content_clear (&pub->content);
  g_free (pub->exchange);
  g_free (pub);
}

/* Completes every publish of @pub with a copy of @error (taken). */
static void
publisher_fail_ops (CarehareProtocol *self,
                    Publisher        *pub,
                    GError           *error)
{
  CarehareProtocolOp *op;

  while ((op = g_queue_pop_head (&pub->unconfirmed)) != NULL)
    complete (self, op, NULL, g_error_copy (error));
  while ((op = g_queue_pop_head (&pub->unwritten)) != NULL)
    complete (self, op, NULL, g_error_copy (error));
  if (pub->waiting)
    {
      g_queue_remove (&self->waiting, &pub->open_op);
      pub->waiting = FALSE;
    }
  g_error_free (error);
}

/* Bodies from this size on are not copied into the output. */
#define LARGE_BODY (64 * 1024)

static void seal_out (CarehareProtocol *self);

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
          seal_out (self);
          g_ptr_array_add (self->segments, g_bytes_new_from_bytes (body_bytes, offset, n));
        }
      g_byte_array_append (self->out, &end, 1);
    }
}

/* @op's frames are in the output: number it and wait for its confirm. A
 * mandatory publish keeps its body to be recognised in a basic.return. */
static void
publish_written (Publisher          *pub,
                 CarehareProtocolOp *op)
{
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
  publish_written (pub, op);
}

/* Writes what waits, unless the broker blocked us or stopped the
 * channel's flow, or there is no channel yet. */
static void
publisher_flush (CarehareProtocol *self,
                 Publisher        *pub)
{
  CarehareProtocolOp *op;

  if (pub->channel == 0 || self->blocked || pub->flow_stopped)
    return;
  while ((op = g_queue_pop_head (&pub->unwritten)) != NULL)
    write_publish (self, pub, op);
}

static void
publisher_start (CarehareProtocol *self,
                 Publisher        *pub,
                 guint16           id)
{
  Channel *ch = &self->channels[id];
  CarehareMethod select = { .id = CAREHARE_METHOD_CONFIRM_SELECT };

  ch->kind = CHANNEL_KIND_PUBLISHER;
  ch->publisher = pub;
  pub->channel = id;
  pub->next_seq = 0;
  /* Publishes may follow Confirm.Select at once: the broker reads in
   * order, and numbers them from 1 after Select. */
  append_method (self, id, &select);
  publisher_flush (self, pub);
  publisher_update_idle (self, pub);
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
static void
publisher_end (CarehareProtocol *self,
               Publisher        *pub,
               GError           *error)
{
  publisher_fail_ops (self, pub, error);
  publisher_unlink_idle (self, pub);
  g_hash_table_remove (self->publishers, pub->exchange);
}

/* Gives the channel of the idle @pub back: Channel.Close, and its id is
 * free at Close-Ok. The next publish to its exchange opens a new one. */
static void
publisher_close_idle (CarehareProtocol *self,
                      Publisher        *pub,
                      const char       *why)
{
  guint16 id = pub->channel;

  g_debug ("closing channel %u of exchange '%s': %s", id, pub->exchange, why);
  publisher_unlink_idle (self, pub);
  /* Frames that still arrive on it are dropped while it closes. */
  self->channels[id].publisher = NULL;
  discard_channel (self, id, why);
  g_hash_table_remove (self->publishers, pub->exchange);
}

/* After anything that may have changed what @pub has in flight: an idle
 * publisher (a channel, nothing unwritten or unconfirmed) joins the tail of
 * the idle list, a busy one leaves it. */
static void
publisher_update_idle (CarehareProtocol *self,
                       Publisher        *pub)
{
  gboolean idle = pub->channel != 0 && !pub->waiting &&
                  g_queue_is_empty (&pub->unwritten) &&
                  g_queue_is_empty (&pub->unconfirmed) &&
                  g_queue_is_empty (&pub->returns) && !pub->content.active;

  if (idle && !pub->idle)
    {
      pub->idle = TRUE;
      pub->idle_since = self->now;
      pub->idle_link.data = pub;
      g_queue_push_tail_link (&self->idle_publishers, &pub->idle_link);
      reclaim_for_waiters (self);
    }
  else if (!idle)
    publisher_unlink_idle (self, pub);
}

/* Requests wait for a channel: close idle publishers' channels, least
 * recently used first, until every waiter has one coming (channels that
 * close free their ids; busy RPCs and publishers become free or idle on
 * their own). */
static void
reclaim_for_waiters (CarehareProtocol *self)
{
  Publisher *pub;

  while (self->state == STATE_OPEN &&
         g_queue_get_length (&self->waiting) > self->n_closing &&
         (pub = g_queue_peek_head (&self->idle_publishers)) != NULL)
    publisher_close_idle (self, pub, "idle publisher channel given back for another request");
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

      if (ch->state != CHANNEL_BUSY || ch->kind != CHANNEL_KIND_CONSUMER ||
          ch->consumer == NULL || ch->consumer->state != CONSUMER_ACTIVE)
        return FALSE;
    }
  return TRUE;
}

/* Requests that wait for a channel that will never come fail, rather than
 * hang. */
static void
fail_starved_waiters (CarehareProtocol *self)
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
          complete (self, op, NULL, error);
          break;
        case OP_PUBLISHER_OPEN:
          op->publisher->waiting = FALSE;
          publisher_end (self, op->publisher, error);
          break;
        case OP_CONSUME:
          consumer_end (self, op->consumer, error);
          break;
        default:
          g_assert_not_reached ();
        }
    }
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
          settle_return (pub, op);
          complete (self, op, NULL, publish_result (op, ack));
        }
      forget_stale_returns (pub);
      publisher_update_idle (self, pub);
      return;
    }
  else if (!multiple && (op = find_unconfirmed (pub, tag)) != NULL)
    {
      g_queue_remove (&pub->unconfirmed, op);
      settle_return (pub, op);
      complete (self, op, NULL, publish_result (op, ack));
      forget_stale_returns (pub);
      publisher_update_idle (self, pub);
      return;
    }

  fail_unexpected (self, 503, method_id, "%s for delivery tag %" G_GUINT64_FORMAT
                   " on channel %u, which was never published or already confirmed",
                   carehare_method_name (method_id), tag, pub->channel);
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

static gboolean
properties_equal (const CarehareBasicProperties *sent,
                  const CarehareBasicProperties *returned)
{
  guint16 other = (guint16) ~CAREHARE_PROPERTY_HEADERS;

  return (sent->flags & other) == (returned->flags & other) &&
         headers_equal (sent->headers, returned->headers) &&
         g_strcmp0 (sent->content_type, returned->content_type) == 0 &&
         g_strcmp0 (sent->content_encoding, returned->content_encoding) == 0 &&
         sent->delivery_mode == returned->delivery_mode &&
         sent->priority == returned->priority &&
         g_strcmp0 (sent->correlation_id, returned->correlation_id) == 0 &&
         g_strcmp0 (sent->reply_to, returned->reply_to) == 0 &&
         g_strcmp0 (sent->expiration, returned->expiration) == 0 &&
         g_strcmp0 (sent->message_id, returned->message_id) == 0 &&
         sent->timestamp == returned->timestamp &&
         g_strcmp0 (sent->type, returned->type) == 0 &&
         g_strcmp0 (sent->user_id, returned->user_id) == 0 &&
         g_strcmp0 (sent->app_id, returned->app_id) == 0 &&
         g_strcmp0 (sent->cluster_id, returned->cluster_id) == 0;
}

/* Whether the basic.return in @content, whose header just arrived, may
 * carry a message published on @pub: a mandatory publish in flight with
 * its exchange, routing key and body size. Only then is its body
 * buffered, to be compared: a return is the program's own message (held
 * until confirmed), so max_body_size does not apply to it, and one that
 * matches nothing costs no memory. */
static gboolean
return_may_match (Publisher *pub,
                  Content   *content)
{
  const CarehareBasicReturn *ret = &content->method.basic_return;

  if (g_strcmp0 (ret->exchange, pub->exchange) != 0)
    return FALSE;
  for (GList *l = pub->unconfirmed.head; l != NULL; l = l->next)
    {
      CarehareProtocolOp *op = l->data;
      gsize size = op->body != NULL ? g_bytes_get_size (op->body) : 0;

      if (op->mandatory && op->returned == NULL && size == content->body_size &&
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
      (size > 0 && memcmp (g_bytes_get_data (op->body, NULL), content->body->data, size) != 0))
    return FALSE;

  /* Our own header, decoded as the return's was: both sides map field
   * types the same way. */
  if (!carehare_content_header_decode (header, header_size, G_MAXUINT64, &class_id,
                                       &body_size, &sent, NULL))
    return FALSE;
  equal = properties_equal (&sent, &content->props);
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
static void
handle_return (CarehareProtocol *self,
               Publisher        *pub,
               Content          *content)
{
  const CarehareBasicReturn *ret = &content->method.basic_return;
  Return *prev = g_queue_peek_tail (&pub->returns);
  guint64 after = pub->returned_seq;
  g_autoptr(GArray) candidates = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autofree char *what = NULL;
  Return *pending;

  if (prev != NULL)
    after = MAX (after, g_array_index (prev->candidates, guint64, 0));

  if (!content->skip && g_strcmp0 (ret->exchange, pub->exchange) == 0)
    {
      for (GList *l = pub->unconfirmed.head; l != NULL; l = l->next)
        {
          CarehareProtocolOp *op = l->data;

          if (op->seq > after && op->mandatory && op->returned == NULL &&
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

  what = g_strdup_printf ("Message returned by the broker: exchange '%s', routing key '%s'",
                          pub->exchange, ret->routing_key);
  pending = g_new0 (Return, 1);
  pending->error = carehare_error_new_from_reply (CAREHARE_ERROR_UNROUTABLE, what,
                                                  ret->reply_code, ret->reply_text);
  pending->candidates = g_steal_pointer (&candidates);
  g_queue_push_tail (&pub->returns, pending);
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
  CarehareMethod publish = { .id = CAREHARE_METHOD_BASIC_PUBLISH };
  CarehareProtocolOp *op;
  GError *error = NULL;
  gsize size = body != NULL ? g_bytes_get_size (body) : 0;
  Publisher *pub;
  gboolean direct;
  GByteArray *buf;
  guint start;
  guint16 channel;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (exchange != NULL, NULL);
  g_return_val_if_fail (routing_key != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  enter (self);
  op = op_new (OP_PUBLISH, callback, user_data);
  op->mandatory = mandatory;

  publish.basic_publish.exchange = (char *) exchange;
  publish.basic_publish.routing_key = (char *) routing_key;
  publish.basic_publish.mandatory = mandatory;

  if (self->state != STATE_OPEN)
    {
      complete (self, op, NULL, closed_error_for (self->state == STATE_FINISHED
                                                  ? self->finish_error : NULL));
      return leave_with_op (self, op);
    }

  /* The usual case, a publisher that is ready and has nothing waiting,
   * encodes straight into the output; otherwise the frames wait in the op,
   * encoded for channel 0. */
  pub = g_hash_table_lookup (self->publishers, exchange);
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
      complete (self, op, NULL, invalid);
    }
  else if (op->method_len > self->frame_max ||
           buf->len - start - op->method_len > self->frame_max)
    {
      g_byte_array_set_size (buf, start);
      complete (self, op, NULL,
                g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                             "Cannot publish to exchange '%s': the properties need a frame "
                             "larger than the negotiated frame_max of %u bytes",
                             exchange, self->frame_max));
    }
  else
    {
      op->routing_key = g_strdup (routing_key);
      if (mandatory)
        {
          guint header_at = start + op->method_len + CAREHARE_FRAME_HEADER_SIZE;

          /* To recognise the message in a basic.return. */
          op->header = g_bytes_new (buf->data + header_at,
                                    buf->len - header_at - 1);
        }
      if (direct)
        {
          op->publisher = pub;
          op->body = mandatory && body != NULL ? g_bytes_ref (body) : NULL;
          append_body_frames (self, channel, body);
          publish_written (pub, op);
        }
      else
        {
          op->body = body != NULL ? g_bytes_ref (body) : NULL;
          if (pub == NULL)
            {
              pub = g_new0 (Publisher, 1);
              pub->exchange = g_strdup (exchange);
              pub->open_op.kind = OP_PUBLISHER_OPEN;
              pub->open_op.publisher = pub;
              g_hash_table_insert (self->publishers, pub->exchange, pub);
              g_queue_push_tail (&pub->unwritten, op);
              op->publisher = pub;
              dispatch (self, &pub->open_op);
            }
          else
            {
              op->publisher = pub;
              g_queue_push_tail (&pub->unwritten, op);
              publisher_flush (self, pub);
            }
        }
      /* Unless it failed for want of a channel, which ended @pub. */
      if (!op->done)
        publisher_update_idle (self, pub);
    }
  return leave_with_op (self, op);
}

/* ---- consuming ----------------------------------------------------------- */

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

static void
consumer_unref_internal (CarehareProtocolConsumer *consumer)
{
  g_assert (consumer->ref_count > 0);
  if (--consumer->ref_count > 0)
    return;
  g_assert (consumer->start_op == NULL);
  g_assert (consumer->close_ops->len == 0);
  content_clear (&consumer->content);
  g_tree_unref (consumer->unsettled);
  g_ptr_array_unref (consumer->close_ops);
  g_free (consumer->queue);
  g_free (consumer->tag);
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
  consumer_unref_internal (consumer);
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
static void
consumer_end (CarehareProtocol         *self,
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
  content_clear (&consumer->content);
  g_tree_remove_all (consumer->unsettled);

  if (consumer->start_op != NULL)
    {
      complete (self, consumer->start_op, NULL, error);
      consumer->start_op = NULL;
      error = NULL;
    }
  else if (!ours && error != NULL)
    consumer_tell_closed (self, consumer, g_steal_pointer (&error));
  g_clear_error (&error);

  for (guint i = 0; i < consumer->close_ops->len; i++)
    complete (self, g_ptr_array_index (consumer->close_ops, i), NULL, NULL);
  g_ptr_array_set_size (consumer->close_ops, 0);

  if (g_ptr_array_remove_fast (self->consumers, consumer))
    consumer_unref_internal (consumer);
}

static void
consumer_start (CarehareProtocol         *self,
                CarehareProtocolConsumer *consumer,
                guint16                   id)
{
  Channel *ch = &self->channels[id];
  CarehareMethod qos = { .id = CAREHARE_METHOD_BASIC_QOS };
  CarehareMethod consume = { .id = CAREHARE_METHOD_BASIC_CONSUME };

  ch->kind = CHANNEL_KIND_CONSUMER;
  ch->consumer = consumer;
  consumer->channel = id;
  consumer->state = CONSUMER_STARTING;

  qos.basic_qos.prefetch_size = consumer->prefetch_size;
  qos.basic_qos.prefetch_count = consumer->prefetch_count;
  append_method (self, id, &qos);
  /* The server names the consumer; acks are required. */
  consume.basic_consume.queue = consumer->queue;
  append_method (self, id, &consume);
}

/* AMQP's empty queue name means "the last queue declared on this
 * channel", and channels are pooled: it would act on a queue some earlier
 * operation declared. */
static GError *
empty_queue_name_error (const char *what)
{
  return g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                      "Cannot send %s: the queue name is empty (AMQP would take it as "
                      "the last queue declared on a pooled channel)", what);
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
  CarehareProtocolConsumer *consumer;
  CarehareProtocolOp *op;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (queue != NULL, NULL);
  g_return_val_if_fail (start != NULL, NULL);

  enter (self);
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

  op = op_new (OP_CONSUME, start, start_data);
  op->consumer = consumer;
  consumer->start_op = op;
  g_ptr_array_add (self->consumers, consumer_ref (consumer));

  if (strlen (queue) > 255 || !g_utf8_validate (queue, -1, NULL))
    consumer_end (self, consumer,
                  g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "Cannot consume from queue '%s': a queue name is at most "
                               "255 bytes of UTF-8", queue));
  else if (self->state != STATE_OPEN)
    consumer_end (self, consumer, closed_error_for (self->state == STATE_FINISHED
                                                    ? self->finish_error : NULL));
  else if (*queue == '\0')
    consumer_end (self, consumer, empty_queue_name_error ("basic.consume"));
  else if (prefetch_size != 0 && server_is_rabbitmq (self))
    /* RabbitMQ answers basic.qos with prefetch_size by closing the whole
     * connection (540 NOT_IMPLEMENTED). */
    consumer_end (self, consumer,
                  g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "Cannot consume from queue '%s' with prefetch_size %u: "
                               "RabbitMQ supports only 0", queue, prefetch_size));
  else
    {
      consumer->state = CONSUMER_WAITING;
      dispatch (self, op);
    }
  leave (self);
  return consumer;
}

static void consumer_close_channel (CarehareProtocol *self, CarehareProtocolConsumer *consumer,
                                    const char *why);

/* Settles *@tag (with @multiple, every tag up to it) among the deliveries
 * handed out and not settled yet. The broker closes the channel (406
 * PRECONDITION_FAILED "unknown delivery tag") for a tag it does not owe,
 * so a tag already settled, or never delivered, must not reach it:
 * returns FALSE when there is nothing to send. A multiple settle is sent
 * with the highest unsettled tag it covers (RabbitMQ wants that tag
 * itself to be unsettled); tag 0 with @multiple covers them all. */
static gboolean
consumer_settle (CarehareProtocolConsumer *consumer,
                 guint64                  *tag,
                 gboolean                  multiple)
{
  guint64 limit, highest;
  GTreeNode *node;

  if (!multiple)
    return g_tree_remove (consumer->unsettled, tag);

  limit = *tag == 0 ? G_MAXUINT64 : *tag;
  node = g_tree_upper_bound (consumer->unsettled, &limit);
  node = node != NULL ? g_tree_node_previous (node) : g_tree_node_last (consumer->unsettled);
  if (node == NULL)
    return FALSE;
  highest = *(const guint64 *) g_tree_node_key (node);
  while ((node = g_tree_node_first (consumer->unsettled)) != NULL)
    {
      guint64 key = *(const guint64 *) g_tree_node_key (node);

      if (key > highest)
        break;
      g_tree_remove (consumer->unsettled, &key);
    }
  *tag = highest;
  return TRUE;
}

/* A delivery its owner will never see (it gave its reference back): no
 * settle will come for it. */
static void
consumer_drop_delivery (CarehareProtocol         *self,
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
  /* After the consumer or the connection closed, acks are dropped: the
   * broker redelivers what was not acked. */
  if ((consumer->state != CONSUMER_ACTIVE && consumer->state != CONSUMER_CANCELLED) ||
      self->state != STATE_OPEN)
    return;
  if (!consumer_settle (consumer, tag, multiple))
    {
      g_debug ("not sending %s of delivery tag %" G_GUINT64_FORMAT "%s on channel %u: "
               "no such delivery is waiting to be settled", carehare_method_name (method->id),
               *tag, multiple ? " (multiple)" : "", consumer->channel);
      return;
    }
  append_method (self, consumer->channel, method);

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
  enter (self);
  consumer_send_ack (self, consumer, &ack, &ack.basic_ack.delivery_tag, multiple);
  leave (self);
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
  enter (self);
  consumer_send_ack (self, consumer, &nack, &nack.basic_nack.delivery_tag, multiple);
  leave (self);
}

/* We no longer trust channel @id (its op was cancelled): close it and keep
 * its id until Close-Ok. */
static void
discard_channel (CarehareProtocol *self,
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
  append_method (self, id, &close);
}

/* A basic.deliver or basic.return: its content follows. Takes @method. */
static gboolean
content_begin (CarehareProtocol *self,
               guint16           id,
               Content          *content,
               CarehareMethod   *method)
{
  if (content->active)
    {
      fail_unexpected (self, 505, method->id,
                       "%s on channel %u before the previous message's content was complete",
                       carehare_method_name (method->id), id);
      return FALSE;
    }
  content->active = TRUE;
  content->method = *method;
  memset (method, 0, sizeof *method);
  return TRUE;
}

/* Another program's message whose header we cannot represent, or whose
 * body is larger than max_body_size: the connection is fine, only this
 * delivery fails. Reject it without requeueing (a requeued one would come
 * back forever; a dead-letter exchange can catch it) as soon as its
 * header is in, and tell the owner, in order with deliveries; its body is
 * skipped as it arrives. */
static void
consumer_reject (CarehareProtocol         *self,
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
  append_method (self, consumer->channel, &reject);

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

static void
content_done (CarehareProtocol *self,
              Channel          *ch,
              Content          *content)
{
  if (ch->kind == CHANNEL_KIND_PUBLISHER)
    handle_return (self, ch->publisher, content);
  else if (content->bad != NULL)
    ;  /* rejected when its header arrived */
  else
    {
      CarehareBasicDeliver *deliver = &content->method.basic_deliver;
      CarehareProtocolDelivery *delivery = g_new0 (CarehareProtocolDelivery, 1);
      Event *ev = g_new0 (Event, 1);

      delivery->delivery_tag = deliver->delivery_tag;
      delivery->redelivered = deliver->redelivered;
      delivery->consumer_tag = g_steal_pointer (&deliver->consumer_tag);
      delivery->exchange = g_steal_pointer (&deliver->exchange);
      delivery->routing_key = g_steal_pointer (&deliver->routing_key);
      delivery->properties = content->props;
      memset (&content->props, 0, sizeof content->props);
      delivery->body = content->body != NULL
                       ? g_byte_array_free_to_bytes (g_steal_pointer (&content->body))
                       : g_bytes_new_static ("", 0);

      g_tree_insert (ch->consumer->unsettled, g_memdup2 (&delivery->delivery_tag, sizeof (guint64)),
                     GUINT_TO_POINTER (1));
      ev->kind = EVENT_DELIVERY;
      ev->consumer = consumer_ref (ch->consumer);
      ev->delivery = delivery;
      g_queue_push_tail (&self->events, ev);
    }
  content_clear (content);
}

/* The largest body buffer reserved ahead of its frames; bigger bodies grow
 * as their frames arrive, so a lying header cannot make us allocate. */
#define BODY_RESERVE_MAX (1024 * 1024)

static void
handle_content_frame (CarehareProtocol    *self,
                      Channel             *ch,
                      Content             *content,
                      const CarehareFrame *frame)
{
  guint64 received;

  if (frame->type == CAREHARE_FRAME_HEADER)
    {
      GError *error = NULL;
      guint16 class_id = 0;

      if (content->have_header)
        {
          fail_unexpected (self, 505, 0, "a second content header on channel %u", frame->channel);
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
          if (ch->kind == CHANNEL_KIND_CONSUMER && class_id == CAREHARE_CLASS_BASIC &&
              content->body_size <= CAREHARE_PROTOCOL_MAX_BODY_SIZE &&
              !g_error_matches (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BODY_TOO_LARGE))
            {
              content->bad = error;
              content->have_header = TRUE;
              consumer_reject (self, ch->consumer, content);
              if (content->body_size == 0)
                content_done (self, ch, content);
              return;
            }
          content->body_size = 0;
          /* A body larger than any broker sends is a connection-level
           * frame error. */
          fail_bad_bytes (self, code >= 500 ? code : 501, 0, error);
          return;
        }
      content->have_header = TRUE;
      if (ch->kind == CHANNEL_KIND_CONSUMER && content->body_size > self->max_body_size)
        {
          /* Another program's message, too large for this program:
           * only that delivery fails, and nothing of it is buffered. */
          content->bad = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE,
                                      "its body of %" G_GUINT64_FORMAT " bytes is larger than "
                                      "the max_body_size of %" G_GUINT64_FORMAT " bytes",
                                      content->body_size, self->max_body_size);
          carehare_basic_properties_clear (&content->props);
          consumer_reject (self, ch->consumer, content);
        }
      else if (ch->kind == CHANNEL_KIND_PUBLISHER && !return_may_match (ch->publisher, content))
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
      fail_unexpected (self, 505, 0, "a body frame on channel %u before its content header",
                       frame->channel);
      return;
    }
  received = content->bad != NULL || content->skip ? content->skipped : content->body->len;
  if (frame->size > content->body_size - received)
    {
      fail_unexpected (self, 505, 0, "the body on channel %u is longer than the %"
                       G_GUINT64_FORMAT " bytes its content header declared",
                       frame->channel, content->body_size);
      return;
    }
  if (content->bad != NULL || content->skip)
    content->skipped += frame->size;
  else
    g_byte_array_append (content->body, frame->payload, frame->size);
  if (received + frame->size == content->body_size)
    content_done (self, ch, content);
}

static void
handle_publisher_method (CarehareProtocol *self,
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
      content_begin (self, id, &pub->content, method);
      return;
    default:
      fail_unexpected (self, 505, method->id, "unexpected %s on publishing channel %u",
                       carehare_method_name (method->id), id);
    }
}

static void
handle_consumer_method (CarehareProtocol         *self,
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
      consumer->tag = g_strdup (method->basic_consume_ok.consumer_tag);
      consumer->state = CONSUMER_ACTIVE;
      complete (self, consumer->start_op, method, NULL);
      consumer->start_op = NULL;
      /* Its channel will not free up by itself now. */
      fail_starved_waiters (self);
      return;

    case CAREHARE_METHOD_BASIC_DELIVER:
      if (consumer->state != CONSUMER_ACTIVE ||
          g_strcmp0 (method->basic_deliver.consumer_tag, consumer->tag) != 0)
        {
          fail_unexpected (self, 505, method->id,
                           "basic.deliver on channel %u for consumer tag '%s', which is "
                           "not a consumer there", id, method->basic_deliver.consumer_tag);
          return;
        }
      /* Memory is bounded by the prefetch count only if the broker keeps
       * to it: one delivery more than the program asked for means it
       * ignores basic.qos and could push without limit. A tag that does
       * not rise would hide a delivery from the count. */
      if (method->basic_deliver.delivery_tag <= consumer->last_tag)
        {
          fail_unexpected (self, 505, method->id,
                           "basic.deliver on channel %u with delivery tag %" G_GUINT64_FORMAT
                           ", not above the previous %" G_GUINT64_FORMAT,
                           id, method->basic_deliver.delivery_tag, consumer->last_tag);
          return;
        }
      if (consumer->prefetch_count > 0 &&
          g_tree_nnodes (consumer->unsettled) >= consumer->prefetch_count)
        {
          fail_unexpected (self, 505, method->id,
                           "basic.deliver on channel %u with delivery tag %" G_GUINT64_FORMAT
                           " exceeds the prefetch count of %u: %d deliveries are not "
                           "acknowledged yet", id, method->basic_deliver.delivery_tag,
                           consumer->prefetch_count, g_tree_nnodes (consumer->unsettled));
          return;
        }
      consumer->last_tag = method->basic_deliver.delivery_tag;
      content_begin (self, id, &consumer->content, method);
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
            append_method (self, id, &ok);
          }
        if (consumer->state != CONSUMER_ACTIVE || g_tree_nnodes (consumer->unsettled) == 0)
          {
            consumer_end (self, consumer, error);
            self->channels[id].consumer = NULL;
            discard_channel (self, id, "consumer cancelled by server");
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
  fail_unexpected (self, 505, method->id, "unexpected %s on consumer channel %u",
                   carehare_method_name (method->id), id);
}

static void
handle_channel_method (CarehareProtocol *self,
                       guint16           id,
                       CarehareMethod   *method)
{
  Channel *ch;

  if (id > self->channel_max || self->channels[id].state == CHANNEL_FREE)
    {
      fail_unexpected (self, 504, method->id,
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

        append_method (self, id, &ok);
        if (ch->state == CHANNEL_CLOSING)
          return;  /* crossed closes: the server still answers ours */
        error = carehare_error_new_from_reply (CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                               "Channel closed by server",
                                               method->channel_close.reply_code,
                                               method->channel_close.reply_text);
        if (ch->kind == CHANNEL_KIND_PUBLISHER)
          publisher_end (self, ch->publisher, error);
        else if (ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL)
          consumer_end (self, ch->consumer, error);
        else if (ch->op != NULL)
          complete (self, ch->op, NULL, error);
        else
          g_error_free (error);
        release_channel (self, id);
        return;
      }

    case CAREHARE_METHOD_CHANNEL_CLOSE_OK:
      if (ch->state != CHANNEL_CLOSING)
        {
          fail_unexpected (self, 505, method->id,
                           "channel.close-ok on channel %u, which we did not close", id);
          return;
        }
      if (ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL)
        consumer_end (self, ch->consumer, NULL);
      release_channel (self, id);
      return;

    case CAREHARE_METHOD_CHANNEL_FLOW:
      {
        CarehareMethod ok = { .id = CAREHARE_METHOD_CHANNEL_FLOW_OK };

        /* Only publishers send content: their publishes wait while the
         * flow is stopped, and go out after Flow-Ok when it resumes. */
        ok.channel_flow_ok.active = method->channel_flow.active;
        append_method (self, id, &ok);
        if (ch->state != CHANNEL_CLOSING && ch->kind == CHANNEL_KIND_PUBLISHER)
          {
            ch->publisher->flow_stopped = !method->channel_flow.active;
            publisher_flush (self, ch->publisher);
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
      handle_publisher_method (self, id, ch->publisher, method);
      return;
    case CHANNEL_KIND_CONSUMER:
      handle_consumer_method (self, id, ch->consumer, method);
      return;
    case CHANNEL_KIND_RPC:
    default:
      break;
    }

  if (ch->state == CHANNEL_BUSY && ch->op != NULL && method->id == ch->op->reply_id)
    {
      CarehareProtocolOp *op = ch->op;

      ch->op = NULL;
      ch->state = CHANNEL_IDLE;
      complete (self, op, method, NULL);
      channel_available (self, id);
      return;
    }

  fail_unexpected (self, 505, method->id, "unexpected %s on channel %u",
                   carehare_method_name (method->id), id);
}

/* Sends Channel.Close for @consumer's channel; Close-Ok ends it. */
static void
consumer_close_channel (CarehareProtocol         *self,
                        CarehareProtocolConsumer *consumer,
                        const char               *why)
{
  consumer->state = CONSUMER_CLOSING;
  content_clear (&consumer->content);
  discard_channel (self, consumer->channel, why);
  /* discard_channel() forgets the RPC op; the consumer stays linked until
   * Close-Ok ends it. */
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

  enter (self);
  op = op_new (OP_CONSUMER_CLOSE, callback, user_data);
  op->consumer = consumer;

  switch (consumer->state)
    {
    case CONSUMER_ENDED:
      complete (self, op, NULL, NULL);
      break;
    case CONSUMER_WAITING:
      g_ptr_array_add (consumer->close_ops, op);
      consumer_end (self, consumer,
                    g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED,
                                         "Consumer closed before it started"));
      break;
    case CONSUMER_STARTING:
    case CONSUMER_ACTIVE:
    case CONSUMER_CANCELLED:
      g_ptr_array_add (consumer->close_ops, op);
      if (consumer->start_op != NULL)
        {
          complete (self, consumer->start_op, NULL,
                    g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED,
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
  return leave_with_op (self, op);
}

/* ---- input --------------------------------------------------------------- */

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

        append_method (self, 0, &ok);
        /* Crossed with our own Close: we closed it. */
        if (self->state != STATE_CLOSING)
          {
            cause = carehare_error_new_from_reply (CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
                                                   "Connection closed by server",
                                                   method->connection_close.reply_code,
                                                   method->connection_close.reply_text);
            fail_named_requests (self,
                                 ((guint32) method->connection_close.class_id << 16) |
                                 method->connection_close.method_id,
                                 cause);
          }
        finish (self, cause);
        return;
      }

    case CAREHARE_METHOD_CONNECTION_CLOSE_OK:
      if (self->state == STATE_CLOSING)
        {
          finish (self, NULL);
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
              publisher_flush (self, pub);
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
          handle_start (self, method);
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_SECURE:
      if (self->state == STATE_AWAIT_TUNE)
        {
          finish (self, g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_FAILED,
                                     "The server sent an authentication challenge "
                                     "(connection.secure), which the %s mechanism does not use",
                                     self->mechanism == CAREHARE_AUTH_MECHANISM_EXTERNAL
                                     ? "EXTERNAL" : "PLAIN"));
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_TUNE:
      if (self->state == STATE_AWAIT_TUNE)
        {
          handle_tune (self, method);
          return;
        }
      break;

    case CAREHARE_METHOD_CONNECTION_OPEN_OK:
      if (self->state == STATE_AWAIT_OPEN_OK)
        {
          self->state = STATE_OPEN;
          complete (self, self->handshake, method, NULL);
          self->handshake = NULL;
          return;
        }
      break;

    default:
      break;
    }

  if (self->state == STATE_CLOSING)
    return;  /* the server may still be talking before it reads our Close */

  fail_unexpected (self, 503, method->id, "unexpected %s on channel 0",
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
        fail_unexpected (self, 501, 0, "heartbeat frame on channel %u", frame->channel);
      return;

    case CAREHARE_FRAME_METHOD:
      if (!carehare_method_decode (frame->payload, frame->size, &method, &error))
        {
          fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
          return;
        }
      if (frame->channel == 0)
        handle_connection_method (self, &method);
      else if (self->state == STATE_CLOSING)
        ;  /* every channel is gone on our side; the server has yet to read our Close */
      else if (self->state == STATE_OPEN)
        handle_channel_method (self, frame->channel, &method);
      else
        fail_unexpected (self, 504, method.id, "%s on channel %u during the handshake",
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
        if (ch != NULL && ch->kind == CHANNEL_KIND_PUBLISHER)
          content = &ch->publisher->content;
        else if (ch != NULL && ch->kind == CHANNEL_KIND_CONSUMER && ch->consumer != NULL)
          content = &ch->consumer->content;
        if (content == NULL || !content->active)
          {
            fail_unexpected (self, 505, 0, "unexpected content frame (type %u) on channel %u",
                             frame->type, frame->channel);
            return;
          }
        handle_content_frame (self, ch, content, frame);
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

  enter (self);
  self->now = MAX (self->now, now);
  self->last_read = now;

  /* A server that rejects our protocol header answers with its own. */
  if (self->state == STATE_AWAIT_START && size > 0 &&
      (self->in->len > 0 ? self->in->data[0] : data[0]) == 'A')
    {
      g_byte_array_append (self->in, data, size);
      if (self->in->len >= 8)
        {
          const guint8 *h = self->in->data;

          if (memcmp (h, "AMQP", 4) == 0)
            finish (self, g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                                       "The server does not support AMQP 0-9-1: it answered "
                                       "with protocol header AMQP %u-%u-%u-%u",
                                       h[4], h[5], h[6], h[7]));
          else
            finish (self, g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
                                               "Bad bytes from server: not an AMQP 0-9-1 server"));
        }
      if (!leave (self))
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
          fail_bad_bytes (self, carehare_wire_error_reply_code (error), 0, error);
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

  if (!leave (self))
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
static void
seal_out (CarehareProtocol *self)
{
  if (self->out->len == 0)
    return;
  g_ptr_array_add (self->segments, g_byte_array_free_to_bytes (self->out));
  self->out = g_byte_array_new ();
}

GPtrArray *
carehare_protocol_take_output_segments (CarehareProtocol *self,
                                        gint64            now)
{
  GPtrArray *segments;

  g_return_val_if_fail (self != NULL, NULL);

  if (!carehare_protocol_has_output (self))
    return NULL;
  seal_out (self);
  segments = g_steal_pointer (&self->segments);
  self->segments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
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

  enter (self);
  self->now = MAX (self->now, now);
  if (self->state == STATE_CLOSING && now >= self->close_deadline)
    {
      /* The server never answered our Close: we closed it all the same. */
      finish (self, NULL);
    }

  /* Idle publisher channels are given back. */
  while (self->state == STATE_OPEN)
    {
      Publisher *lru = g_queue_peek_head (&self->idle_publishers);

      if (lru == NULL || now < lru->idle_since + CAREHARE_PROTOCOL_PUBLISHER_IDLE_US)
        break;
      publisher_close_idle (self, lru, "idle publisher channel given back");
    }

  if (self->heartbeat > 0 &&
      (self->state == STATE_AWAIT_OPEN_OK || self->state == STATE_OPEN ||
       self->state == STATE_CLOSING))
    {
      gint64 interval = (gint64) self->heartbeat * G_USEC_PER_SEC;

      /* While closing, a silent server is a close that timed out early:
       * we closed it (as in carehare_protocol_abort()). */
      if (now >= self->last_read + 2 * interval && self->state == STATE_CLOSING)
        finish (self, NULL);
      else if (now >= self->last_read + 2 * interval)
        finish (self, g_error_new (CAREHARE_ERROR,
                                   CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR,
                                   "Connection closed by heartbeat monitor: nothing "
                                   "arrived from the server for %u seconds",
                                   2 * (guint) self->heartbeat));
      else if (now >= self->last_write + interval / 2 && !carehare_protocol_has_output (self))
        carehare_wire_append_heartbeat_frame (self->out);
    }
  deadline = carehare_protocol_get_deadline (self);
  leave (self);
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

  enter (self);
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
  finish (self, cause);
  leave (self);
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

  enter (self);
  op = op_new (OP_CLOSE, callback, user_data);

  switch (self->state)
    {
    case STATE_FINISHED:
      complete (self, op, NULL,
                self->finish_error != NULL ? g_error_copy (self->finish_error) : NULL);
      break;

    case STATE_CLOSING:
      g_ptr_array_add (self->close_ops, op);
      break;

    case STATE_INITIAL:
    case STATE_AWAIT_START:
      /* Nothing to say to the server yet. */
      g_ptr_array_add (self->close_ops, op);
      finish (self, NULL);
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
        append_method (self, 0, &close);
        g_ptr_array_add (self->close_ops, op);
        fail_everything (self, cause);
        self->state = STATE_CLOSING;
        self->close_deadline = now + self->close_timeout_us;
      }
      break;

    default:
      g_assert_not_reached ();
    }
  return leave_with_op (self, op);
}

/* ---- RPCs ---------------------------------------------------------------- */

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

  enter (self);
  op = op_new (OP_RPC, callback, user_data);
  op->reply_id = reply_id;
  op->frame = g_byte_array_new ();
  queue = rpc_queue_name (request, &names_queue);

  if (self->state != STATE_OPEN)
    complete (self, op, NULL, closed_error_for (self->state == STATE_FINISHED
                                                ? self->finish_error : NULL));
  else if (names_queue && (queue == NULL || *queue == '\0'))
    complete (self, op, NULL, empty_queue_name_error (carehare_method_name (request->id)));
  else if (!carehare_wire_append_method_frame (op->frame, 0, request, &error))
    {
      /* Arguments the wire cannot carry (a name over 255 bytes, a table
       * value with no AMQP type): the caller's mistake, reported where it
       * waits. */
      GError *invalid = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     "Cannot send %s: %s",
                                     carehare_method_name (request->id), error->message);
      g_error_free (error);
      complete (self, op, NULL, invalid);
    }
  else if (op->frame->len > self->frame_max)
    {
      /* The server would close the whole connection with FRAME_ERROR. */
      complete (self, op, NULL,
                g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                             "Cannot send %s: its frame of %u bytes exceeds the "
                             "negotiated frame_max of %u bytes",
                             carehare_method_name (request->id), op->frame->len,
                             self->frame_max));
    }
  else
    dispatch (self, op);
  return leave_with_op (self, op);
}

void
carehare_protocol_cancel (CarehareProtocol   *self,
                          CarehareProtocolOp *op)
{
  g_return_if_fail (self != NULL);
  g_return_if_fail (op != NULL);

  if (op->done)
    return;

  enter (self);
  switch (op->kind)
    {
    case OP_RPC:
      if (op->channel == 0)
        g_queue_remove (&self->waiting, op);
      else
        discard_channel (self, op->channel, "operation cancelled");
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
          finish (self, NULL);
          leave (self);
          return;
        }
      g_ptr_array_remove (self->close_ops, op);
      break;
    case OP_PUBLISH:
      /* Written publishes cannot be recalled: they complete with the
       * broker's answer. */
      if (op->written)
        {
          leave (self);
          return;
        }
      g_queue_remove (&op->publisher->unwritten, op);
      publisher_update_idle (self, op->publisher);
      break;
    case OP_CONSUME:
      {
        CarehareProtocolConsumer *consumer = op->consumer;

        consumer->start_op = NULL;
        if (consumer->state == CONSUMER_WAITING)
          {
            g_queue_remove (&self->waiting, op);
            consumer_end (self, consumer, NULL);
          }
        else
          {
            consumer->state = CONSUMER_CLOSING;
            discard_channel (self, consumer->channel, "consumer cancelled");
            self->channels[consumer->channel].consumer = consumer;
          }
      }
      break;
    case OP_CONSUMER_CLOSE:
      g_ptr_array_remove (op->consumer->close_ops, op);
      break;
    default:
      g_assert_not_reached ();
    }
  complete (self, op, NULL,
            g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled"));
  /* Nobody waits for a connection whose handshake was cancelled: end it
   * (as a close would), or a late Open-Ok would complete a freed op. */
  if (op->kind == OP_HANDSHAKE)
    finish (self, NULL);
  leave (self);
}

/* ---- accessors ----------------------------------------------------------- */

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
