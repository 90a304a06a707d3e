/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The public objects (CarehareConnection, CarehareConsumer) against a fake
 * broker that the input scripts, over a real loopback socket.
 *
 * Both ends run on one GMainContext, pushed as thread-default for each
 * input, in this thread: the broker is a listening GSocket and the socket
 * it accepts, each with a GSource; nothing waits on a clock, so an input
 * replays the same way. The broker answers the handshake, then every
 * request it is not told to hold (channel.open, queue.declare...,
 * basic.qos, basic.consume, confirm.select, a publish's confirm,
 * channel.close, basic.cancel, connection.close). The input then picks
 * actions, one after the other (see Action): the broker writes raw bytes,
 * answers or fails a request it held, sends a well-formed method on a
 * channel of the input's choice or a delivery, closes or resets the
 * socket; the program starts an operation of the public API, cancels a
 * GCancellable, drops its references; or the context is iterated.
 * Callbacks drop references, close the connection or start another
 * operation when the input's flags for that operation say so.
 *
 * At the end the program closes or drops everything, the broker answers
 * what it held and then closes its socket, and the context is iterated
 * until every operation started has completed and the connection and its
 * consumers are finalized. The oracle:
 *  - no operation completes twice, and every one completes, and the
 *    objects are finalized, within a few non-blocking iterations once the
 *    broker closed the socket: the client sees that at once, and nothing
 *    may wait for a timer then ("nothing hangs");
 *  - a _finish returns a result or an error, never both or neither;
 *  - ::closed is emitted at most once per object;
 *  - the client sends only well-formed frames within the limits it
 *    agreed in Tune-Ok;
 *  - no GLib critical or warning (fuzz-common.h), no memory error or leak
 *    (the sanitizer build).
 *
 * Input layout: byte 0 tunes the connection (CONFIG_*), byte 1 says which
 * requests the broker holds (HOLD_*), byte 2 holds flags (FLAG_*), then
 * actions: a byte whose value modulo N_ACTIONS picks one, followed by its
 * argument bytes (missing bytes read as 0).
 */
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>

#include <carehare-glib/carehare-glib.h>
#include <gio/gio.h>

#include "fuzz-common.h"

/* byte 0 */
#define CONFIG_FRAME_MAX(b) ((b) & 3)            /* index into frame_maxes */
#define CONFIG_CHANNEL_MAX(b) (((b) >> 2) & 3)   /* index into channel_maxes */
#define CONFIG_HEARTBEAT (1 << 4)                /* offer 60 s (no timer fires) */
#define CONFIG_SMALL_BODIES (1 << 5)             /* max_body_size=1000 in the URI */

static const guint32 frame_maxes[] = { 4096, 131072, 0, G_MAXUINT32 };
static const guint16 channel_maxes[] = { 0, 1, 3, 2047 };

/* byte 1: the requests the broker does not answer by itself */
enum {
  HOLD_CHANNEL_OPEN = 1 << 0,
  HOLD_RPC = 1 << 1,              /* queue.* and exchange.* */
  HOLD_QOS = 1 << 2,
  HOLD_CONSUME = 1 << 3,
  HOLD_CONFIRM_SELECT = 1 << 4,
  HOLD_PUBLISH = 1 << 5,          /* the confirm of a publish */
  HOLD_CHANNEL_CLOSE = 1 << 6,
  HOLD_CANCEL_AND_CLOSE = 1 << 7, /* basic.cancel, connection.close */
};

/* byte 2 */
enum {
  FLAG_NO_WAIT = 1 << 0,          /* start the actions before the connection is open */
  FLAG_CONNECT_CANCELLABLE = 1 << 1,
  FLAG_DROP_IN_CONNECT_CB = 1 << 2, /* the connect callback drops the connection */
  FLAG_CLOSE_AT_END = 1 << 3,     /* close_async at the end, rather than only dropping */
  FLAG_RESET_AT_END = 1 << 4,     /* the broker resets the socket at the end, rather than FIN */
  FLAG_SILENT_AT_END = 1 << 5,    /* ... and does not answer what it held first */
};

typedef enum {
  ACT_ITERATE,        /* n: 1 + n % 8 non-blocking iterations */
  ACT_RAW,            /* len, bytes: the broker writes len bytes of the input */
  ACT_REPLY,          /* arg: answer the oldest held request (arg & 1: fail it) */
  ACT_METHOD,         /* kind, channel, arg: a well-formed frame (ServerMethod) */
  ACT_DELIVER,        /* which, arg: basic.deliver, header and body to a consumer */
  ACT_SERVER_CLOSE,   /* arg: arg & 1: reset (RST), else close (FIN) */
  ACT_CALL,           /* call, flags, arg: start an operation (Call, OpFlags) */
  ACT_CANCEL,         /* which: cancel a GCancellable */
  ACT_DROP,           /* what: the program drops references (Drop) */
  ACT_HOLD,           /* mask: what the broker holds from now on (HOLD_*) */
  N_ACTIONS
} Action;

typedef enum {
  SM_CHANNEL_OPEN_OK,
  SM_CHANNEL_CLOSE,
  SM_CHANNEL_CLOSE_OK,
  SM_CHANNEL_FLOW,
  SM_CONNECTION_CLOSE,
  SM_CONNECTION_CLOSE_OK,
  SM_CONNECTION_BLOCKED,
  SM_CONNECTION_UNBLOCKED,
  SM_QUEUE_DECLARE_OK,
  SM_QUEUE_DELETE_OK,
  SM_QUEUE_PURGE_OK,
  SM_QUEUE_BIND_OK,
  SM_EXCHANGE_DECLARE_OK,
  SM_BASIC_QOS_OK,
  SM_BASIC_CONSUME_OK,
  SM_BASIC_CANCEL,
  SM_BASIC_CANCEL_OK,
  SM_CONFIRM_SELECT_OK,
  SM_BASIC_ACK,
  SM_BASIC_NACK,
  SM_BASIC_RETURN,    /* with a header and a body */
  SM_BASIC_DELIVER,   /* the method alone */
  SM_HEADER,          /* a content header alone */
  SM_BODY,            /* a body frame alone */
  SM_HEARTBEAT,
  N_SERVER_METHODS
} ServerMethod;

typedef enum {
  CALL_QUEUE_DECLARE,
  CALL_QUEUE_DELETE,
  CALL_QUEUE_PURGE,
  CALL_QUEUE_BIND,
  CALL_EXCHANGE_DECLARE,
  CALL_PUBLISH,       /* arg & 1: mandatory */
  CALL_CONSUME,       /* arg: the prefetch count, 0-3 */
  CALL_NEXT_DELIVERY, /* arg: which consumer */
  CALL_NEXT_DELIVERIES,
  CALL_CONSUMER_CLOSE,
  CALL_CLOSE,
  CALL_ACK,           /* arg: which delivery the program holds */
  CALL_NACK,
  CALL_ACK_TAG,       /* arg: a delivery tag, whatever was delivered */
  N_CALLS
} Call;

/* An operation's flags: what its callback does after its _finish. */
enum {
  CB_CANCELLABLE = 1 << 0,        /* (when started) with a new GCancellable */
  CB_DROP_CONNECTION = 1 << 1,
  CB_DROP_CONSUMERS = 1 << 2,     /* and the deliveries held */
  CB_CLOSE = 1 << 3,              /* close_async the connection */
  CB_CHAIN = 1 << 4,              /* start another: next_delivery or queue.declare */
  CB_ACK = 1 << 5,                /* a delivery: ack it at once */
  CB_NACK = 1 << 6,               /* ... or nack it */
  CB_REQUEUE = 1 << 7,
};

typedef enum {
  DROP_CONNECTION,
  DROP_CONSUMER,      /* the (what / 4)th */
  DROP_DELIVERIES,
  DROP_ALL,
  N_DROPS
} Drop;

#define MAX_CONSUMERS 4
#define MAX_CONSUMERS_EVER 16
#define MAX_DELIVERIES 32
#define MAX_CANCELLABLES 16
#define MAX_OPS 512
#define MAX_CHAIN_DEPTH 3
#define END_ITERATIONS 64
#define WATCHDOG_MS 5000

static const guint16 reply_codes[] = { 320, 404, 406, 403, 405, 501, 504, 530, 541, 200 };
static const char *const queue_names[] = { "q", "", "q2", "amq.gen-x" };

typedef struct _Fuzz Fuzz;

/* The input being run: die() saves it where $FUZZ_CONNECTION_CRASH says
 * (the plain driver keeps no artifacts; libFuzzer does). */
static const guint8 *current_input;
static gsize current_size;

/* ---- the broker ---------------------------------------------------------- */

typedef struct {
  guint16 channel;
  CarehareMethodId id;      /* the request */
  char *name;               /* owned: the queue or consumer tag, if any */
  guint64 tag;              /* a publish: its sequence number */
} Held;

typedef struct {
  guint16 number;
  gboolean confirm;         /* confirm.select seen */
  guint64 published;        /* publishes completed on it */
  gint64 content_left;      /* body bytes of the publish being received; -1: none */
  gboolean in_publish;      /* basic.publish seen, its header not yet */
  char *consumer_tag;       /* owned: basic.consume seen */
  guint64 delivered;        /* delivery tags sent on it */
} ServerChannel;

typedef struct {
  Fuzz *fuzz;
  GSocket *listener;        /* owned */
  GSource *accept_source;   /* owned, attached */
  GSocket *socket;          /* owned: the accepted connection; NULL once closed */
  GSource *in_source;       /* owned, attached */
  GSource *out_source;      /* owned, attached while a write would block */
  GByteArray *in;           /* received, not yet decoded */
  GByteArray *out;          /* to send */
  gboolean header_seen;
  gboolean gone;            /* the socket was closed: nothing more is accepted */
  guint8 hold;              /* HOLD_* */
  gboolean answer_all;      /* the end: hold nothing */

  guint16 offer_channel_max;
  guint32 offer_frame_max;
  guint16 offer_heartbeat;
  gboolean tuned;           /* Tune-Ok seen */
  guint16 channel_max;      /* from Tune-Ok */
  guint32 frame_max;        /* from Tune-Ok */

  GPtrArray *channels;      /* owned ServerChannel *, in the order opened */
  GQueue held;              /* owned Held * */
} Server;

/* ---- the program --------------------------------------------------------- */

typedef enum {
  OP_CONNECT,
  OP_QUEUE_DECLARE,
  OP_QUEUE_DELETE,
  OP_QUEUE_PURGE,
  OP_QUEUE_BIND,
  OP_EXCHANGE_DECLARE,
  OP_PUBLISH,
  OP_CONSUME,
  OP_NEXT_DELIVERY,
  OP_NEXT_DELIVERIES,
  OP_CONSUMER_CLOSE,
  OP_CLOSE,
} OpKind;

static const char *const op_names[] = {
  "connect", "queue_declare", "queue_delete", "queue_purge", "queue_bind",
  "exchange_declare", "publish", "acking_consumer", "next_delivery",
  "next_deliveries", "consumer close", "close",
};

typedef struct {
  Fuzz *fuzz;
  OpKind kind;
  guint8 flags;             /* OP_* */
  guint depth;              /* started from how many callbacks deep */
  guint n_done;
} Op;

/* A delivery the program holds, to settle later. */
typedef struct {
  CarehareDelivery *delivery;  /* owned */
  CarehareConsumer *consumer;  /* owned */
} Kept;

typedef struct {
  gpointer object;          /* weak: the consumer, NULL once finalized */
  guint n_closed;
} ConsumerRecord;

struct _Fuzz {
  GMainContext *context;    /* owned */
  Server server;
  char *uri;                /* owned */

  CarehareConnection *connection;  /* owned, nullable */
  gpointer connection_weak; /* the connection until it is finalized */
  guint n_connection_closed;
  CarehareConsumer *consumers[MAX_CONSUMERS];  /* owned, nullable */
  ConsumerRecord consumer_records[MAX_CONSUMERS_EVER];
  guint n_consumers_ever;
  GPtrArray *deliveries;    /* owned Kept * */
  GPtrArray *cancellables;  /* owned GCancellable * */
  GPtrArray *ops;           /* owned Op * */
  guint n_started;
  guint n_done;
  gboolean ending;          /* the program keeps nothing a callback gives it */
  gboolean watchdog_fired;
};

G_GNUC_NORETURN G_GNUC_PRINTF (2, 3) static void
die (Fuzz       *fuzz,
     const char *format,
     ...)
{
  va_list args;

  va_start (args, format);
  fputs ("fuzz-connection: ", stderr);
  vfprintf (stderr, format, args);
  fputs ("\n", stderr);
  va_end (args);
  if (g_getenv ("FUZZ_CONNECTION_CRASH") != NULL)
    g_file_set_contents (g_getenv ("FUZZ_CONNECTION_CRASH"), (const char *) current_input,
                         (gssize) current_size, NULL);
  for (guint i = 0; fuzz != NULL && i < fuzz->ops->len; i++)
    {
      Op *op = fuzz->ops->pdata[i];

      fprintf (stderr, "  op %u: %s, flags 0x%02x, depth %u, completed %u time(s)\n",
               i, op_names[op->kind], op->flags, op->depth, op->n_done);
    }
  abort ();
}

/* ---- the broker: writing ------------------------------------------------- */

static void server_close (Server  *srv,
                          gboolean reset);

static gboolean server_writable_cb (GSocket      *socket,
                                    GIOCondition  condition,
                                    gpointer      user_data);

/* Writes what it can without blocking; the rest when the socket is
 * writable again (the client is in this thread: never wait for it). */
static void
server_flush (Server *srv)
{
  while (srv->socket != NULL && srv->out->len > 0)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_send_with_blocking (srv->socket, (const char *) srv->out->data,
                                              srv->out->len, FALSE, NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          if (srv->out_source == NULL)
            {
              srv->out_source = g_socket_create_source (srv->socket, G_IO_OUT, NULL);
              g_source_set_callback (srv->out_source, G_SOURCE_FUNC (server_writable_cb),
                                     srv, NULL);
              g_source_attach (srv->out_source, srv->fuzz->context);
            }
          return;
        }
      if (n < 0)
        {
          /* The client reset the connection. */
          server_close (srv, FALSE);
          return;
        }
      g_byte_array_remove_range (srv->out, 0, (guint) n);
    }
}

static gboolean
server_writable_cb (GSocket      *socket,
                    GIOCondition  condition,
                    gpointer      user_data)
{
  Server *srv = user_data;

  g_clear_pointer (&srv->out_source, g_source_unref);
  server_flush (srv);
  return G_SOURCE_REMOVE;
}

static void
server_method (Server               *srv,
               guint16               channel,
               const CarehareMethod *method)
{
  if (!carehare_wire_append_method_frame (srv->out, channel, method, NULL))
    die (srv->fuzz, "cannot encode method 0x%08x", method->id);
}

static void
server_send (Server *srv)
{
  if (srv->socket == NULL)
    g_byte_array_set_size (srv->out, 0);
  else
    server_flush (srv);
}

static void
destroy_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
server_close (Server  *srv,
              gboolean reset)
{
  destroy_source (&srv->in_source);
  destroy_source (&srv->out_source);
  if (srv->socket != NULL)
    {
      if (reset)
        {
          struct linger l = { .l_onoff = 1, .l_linger = 0 };

          setsockopt (g_socket_get_fd (srv->socket), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
      g_socket_close (srv->socket, NULL);
      g_clear_object (&srv->socket);
    }
  g_byte_array_set_size (srv->out, 0);
  srv->gone = TRUE;
}

/* ---- the broker: channels and held requests ------------------------------ */

static void
server_channel_free (ServerChannel *ch)
{
  g_free (ch->consumer_tag);
  g_free (ch);
}

static ServerChannel *
server_channel (Server  *srv,
                guint16  number)
{
  for (guint i = 0; i < srv->channels->len; i++)
    {
      ServerChannel *ch = srv->channels->pdata[i];

      if (ch->number == number)
        return ch;
    }
  return NULL;
}

static ServerChannel *
server_channel_open (Server  *srv,
                     guint16  number)
{
  ServerChannel *ch = server_channel (srv, number);

  if (ch == NULL)
    {
      ch = g_new0 (ServerChannel, 1);
      ch->number = number;
      g_ptr_array_add (srv->channels, ch);
    }
  /* A channel number used again is a new channel. */
  g_clear_pointer (&ch->consumer_tag, g_free);
  ch->confirm = FALSE;
  ch->published = 0;
  ch->delivered = 0;
  ch->content_left = -1;
  ch->in_publish = FALSE;
  return ch;
}

/* A channel the input picks: one the client opened, mostly. */
static guint16
pick_channel (Server *srv,
              guint8  selector)
{
  if (selector < 0xC0 && srv->channels->len > 0)
    return ((ServerChannel *) srv->channels->pdata[selector % srv->channels->len])->number;
  return selector & 0x0F;
}

static void
held_free (Held *held)
{
  g_free (held->name);
  g_free (held);
}

static guint8
hold_bit (CarehareMethodId id)
{
  switch (id)
    {
    case CAREHARE_METHOD_CHANNEL_OPEN:
      return HOLD_CHANNEL_OPEN;
    case CAREHARE_METHOD_QUEUE_DECLARE:
    case CAREHARE_METHOD_QUEUE_DELETE:
    case CAREHARE_METHOD_QUEUE_PURGE:
    case CAREHARE_METHOD_QUEUE_BIND:
    case CAREHARE_METHOD_QUEUE_UNBIND:
    case CAREHARE_METHOD_EXCHANGE_DECLARE:
    case CAREHARE_METHOD_EXCHANGE_DELETE:
    case CAREHARE_METHOD_EXCHANGE_BIND:
    case CAREHARE_METHOD_EXCHANGE_UNBIND:
      return HOLD_RPC;
    case CAREHARE_METHOD_BASIC_QOS:
      return HOLD_QOS;
    case CAREHARE_METHOD_BASIC_CONSUME:
      return HOLD_CONSUME;
    case CAREHARE_METHOD_CONFIRM_SELECT:
      return HOLD_CONFIRM_SELECT;
    case CAREHARE_METHOD_BASIC_PUBLISH:
      return HOLD_PUBLISH;
    case CAREHARE_METHOD_CHANNEL_CLOSE:
      return HOLD_CHANNEL_CLOSE;
    case CAREHARE_METHOD_BASIC_CANCEL:
    case CAREHARE_METHOD_CONNECTION_CLOSE:
      return HOLD_CANCEL_AND_CLOSE;
    default:
      return 0;
    }
}

/* Answers a request as a broker would, or (@fail) fails it: the channel
 * closed with 404 (406 for a consume), a publish nacked. */
static void
server_answer (Server     *srv,
               const Held *held,
               gboolean    fail)
{
  CarehareMethod m = { 0 };

  if (fail && held->id != CAREHARE_METHOD_BASIC_PUBLISH &&
      held->id != CAREHARE_METHOD_CHANNEL_CLOSE && held->id != CAREHARE_METHOD_CONNECTION_CLOSE)
    {
      m.id = CAREHARE_METHOD_CHANNEL_CLOSE;
      m.channel_close.reply_code = held->id == CAREHARE_METHOD_BASIC_CONSUME ? 406 : 404;
      m.channel_close.reply_text = (char *) "NOT_FOUND - no queue 'q' in vhost '/'";
      m.channel_close.class_id = CAREHARE_METHOD_CLASS_ID (held->id);
      m.channel_close.method_id = CAREHARE_METHOD_METHOD_ID (held->id);
      server_method (srv, held->channel, &m);
      server_send (srv);
      return;
    }

  switch (held->id)
    {
    case CAREHARE_METHOD_CHANNEL_OPEN:
      m.id = CAREHARE_METHOD_CHANNEL_OPEN_OK;
      break;
    case CAREHARE_METHOD_QUEUE_DECLARE:
      m.id = CAREHARE_METHOD_QUEUE_DECLARE_OK;
      m.queue_declare_ok.queue = held->name != NULL && held->name[0] != '\0'
                                 ? held->name : (char *) "amq.gen-fuzz";
      m.queue_declare_ok.message_count = 3;
      m.queue_declare_ok.consumer_count = 1;
      break;
    case CAREHARE_METHOD_QUEUE_DELETE:
      m.id = CAREHARE_METHOD_QUEUE_DELETE_OK;
      m.queue_delete_ok.message_count = 2;
      break;
    case CAREHARE_METHOD_QUEUE_PURGE:
      m.id = CAREHARE_METHOD_QUEUE_PURGE_OK;
      m.queue_purge_ok.message_count = 1;
      break;
    case CAREHARE_METHOD_QUEUE_BIND:
      m.id = CAREHARE_METHOD_QUEUE_BIND_OK;
      break;
    case CAREHARE_METHOD_QUEUE_UNBIND:
      m.id = CAREHARE_METHOD_QUEUE_UNBIND_OK;
      break;
    case CAREHARE_METHOD_EXCHANGE_DECLARE:
      m.id = CAREHARE_METHOD_EXCHANGE_DECLARE_OK;
      break;
    case CAREHARE_METHOD_EXCHANGE_DELETE:
      m.id = CAREHARE_METHOD_EXCHANGE_DELETE_OK;
      break;
    case CAREHARE_METHOD_EXCHANGE_BIND:
      m.id = CAREHARE_METHOD_EXCHANGE_BIND_OK;
      break;
    case CAREHARE_METHOD_EXCHANGE_UNBIND:
      m.id = CAREHARE_METHOD_EXCHANGE_UNBIND_OK;
      break;
    case CAREHARE_METHOD_BASIC_QOS:
      m.id = CAREHARE_METHOD_BASIC_QOS_OK;
      break;
    case CAREHARE_METHOD_BASIC_CONSUME:
      m.id = CAREHARE_METHOD_BASIC_CONSUME_OK;
      m.basic_consume_ok.consumer_tag = held->name;
      break;
    case CAREHARE_METHOD_BASIC_CANCEL:
      m.id = CAREHARE_METHOD_BASIC_CANCEL_OK;
      m.basic_cancel_ok.consumer_tag = held->name;
      break;
    case CAREHARE_METHOD_CONFIRM_SELECT:
      m.id = CAREHARE_METHOD_CONFIRM_SELECT_OK;
      break;
    case CAREHARE_METHOD_BASIC_PUBLISH:
      m.id = fail ? CAREHARE_METHOD_BASIC_NACK : CAREHARE_METHOD_BASIC_ACK;
      if (fail)
        m.basic_nack.delivery_tag = held->tag;
      else
        m.basic_ack.delivery_tag = held->tag;
      break;
    case CAREHARE_METHOD_CHANNEL_CLOSE:
      m.id = CAREHARE_METHOD_CHANNEL_CLOSE_OK;
      break;
    case CAREHARE_METHOD_CONNECTION_CLOSE:
      m.id = CAREHARE_METHOD_CONNECTION_CLOSE_OK;
      break;
    default:
      g_assert_not_reached ();
    }
  server_method (srv, held->channel, &m);
  server_send (srv);
}

static void
server_request (Server           *srv,
                guint16           channel,
                CarehareMethodId  id,
                const char       *name,
                guint64           tag)
{
  Held held = { .channel = channel, .id = id, .name = (char *) name, .tag = tag };

  if (!srv->answer_all && (srv->hold & hold_bit (id)) != 0)
    {
      Held *copy = g_new0 (Held, 1);

      *copy = held;
      copy->name = g_strdup (name);
      g_queue_push_tail (&srv->held, copy);
      return;
    }
  server_answer (srv, &held, FALSE);
}

/* ---- the broker: reading ------------------------------------------------- */

static void
server_publish_received (Server        *srv,
                         ServerChannel *ch)
{
  ch->content_left = -1;
  if (ch->confirm)
    server_request (srv, ch->number, CAREHARE_METHOD_BASIC_PUBLISH, NULL, ++ch->published);
}

/* One method the client sent. */
static void
server_handle_method (Server               *srv,
                      guint16               channel,
                      const CarehareMethod *m)
{
  ServerChannel *ch = server_channel (srv, channel);
  g_autofree char *tag = NULL;

  switch (m->id)
    {
    case CAREHARE_METHOD_CONNECTION_START_OK:
      fuzz_append_handshake_frame (srv->out, CAREHARE_METHOD_CONNECTION_TUNE,
                                   srv->offer_channel_max, srv->offer_frame_max,
                                   srv->offer_heartbeat);
      server_send (srv);
      break;
    case CAREHARE_METHOD_CONNECTION_TUNE_OK:
      srv->tuned = TRUE;
      srv->channel_max = m->connection_tune_ok.channel_max;
      srv->frame_max = m->connection_tune_ok.frame_max;
      if (srv->offer_frame_max != 0 && (srv->frame_max == 0 || srv->frame_max > srv->offer_frame_max))
        die (srv->fuzz, "Tune-Ok frame_max %u above the offer %u", srv->frame_max,
             srv->offer_frame_max);
      if (srv->offer_channel_max != 0 &&
          (srv->channel_max == 0 || srv->channel_max > srv->offer_channel_max))
        die (srv->fuzz, "Tune-Ok channel_max %u above the offer %u", srv->channel_max,
             srv->offer_channel_max);
      break;
    case CAREHARE_METHOD_CONNECTION_OPEN:
      fuzz_append_handshake_frame (srv->out, CAREHARE_METHOD_CONNECTION_OPEN_OK, 0, 0, 0);
      server_send (srv);
      break;
    case CAREHARE_METHOD_CONNECTION_CLOSE_OK:
      /* The broker's Connection.Close was answered: it closes the socket. */
      server_close (srv, FALSE);
      break;
    case CAREHARE_METHOD_CHANNEL_OPEN:
      server_channel_open (srv, channel);
      server_request (srv, channel, m->id, NULL, 0);
      break;
    case CAREHARE_METHOD_QUEUE_DECLARE:
      server_request (srv, channel, m->id, m->queue_declare.queue, 0);
      break;
    case CAREHARE_METHOD_CONFIRM_SELECT:
      if (ch != NULL)
        ch->confirm = TRUE;
      if (!m->confirm_select.nowait)
        server_request (srv, channel, m->id, NULL, 0);
      break;
    case CAREHARE_METHOD_BASIC_CONSUME:
      tag = m->basic_consume.consumer_tag != NULL && m->basic_consume.consumer_tag[0] != '\0'
            ? g_strdup (m->basic_consume.consumer_tag)
            : g_strdup_printf ("amq.ctag-%u", channel);
      if (ch != NULL)
        {
          g_free (ch->consumer_tag);
          ch->consumer_tag = g_strdup (tag);
        }
      if (!m->basic_consume.nowait)
        server_request (srv, channel, m->id, tag, 0);
      break;
    case CAREHARE_METHOD_BASIC_CANCEL:
      if (!m->basic_cancel.nowait)
        server_request (srv, channel, m->id, m->basic_cancel.consumer_tag, 0);
      break;
    case CAREHARE_METHOD_BASIC_PUBLISH:
      if (ch != NULL)
        ch->in_publish = TRUE;
      break;
    default:
      /* the other requests (connection.close, channel.close, basic.qos,
       * queue.* and exchange.*) have plain answers; acks and nacks of
       * deliveries, close-oks and flow-oks none */
      if (hold_bit (m->id) != 0)
        server_request (srv, channel, m->id, NULL, 0);
      break;
    }
}

/* Checks and answers every complete frame received. */
static void
server_handle_input (Server *srv)
{
  gsize offset = 0;

  if (!srv->header_seen)
    {
      if (srv->in->len < sizeof carehare_wire_protocol_header)
        return;
      if (memcmp (srv->in->data, carehare_wire_protocol_header,
                  sizeof carehare_wire_protocol_header) != 0)
        die (srv->fuzz, "the client sent a bad protocol header");
      srv->header_seen = TRUE;
      offset = sizeof carehare_wire_protocol_header;
      fuzz_append_handshake_frame (srv->out, CAREHARE_METHOD_CONNECTION_START, 0, 0, 0);
      server_send (srv);
    }

  while (srv->socket != NULL)
    {
      g_autoptr(GError) error = NULL;
      CarehareFrame frame;
      gssize n = carehare_frame_decode (srv->in->data + offset, srv->in->len - offset, 0,
                                        &frame, &error);

      if (n < 0)
        die (srv->fuzz, "the client sent a bad frame: %s", error->message);
      if (n == 0)
        break;
      offset += (gsize) n;

      if (srv->tuned && srv->frame_max != 0 &&
          frame.size + CAREHARE_FRAME_OVERHEAD > srv->frame_max)
        die (srv->fuzz, "the client sent a frame of %u bytes, frame_max is %u",
             frame.size + CAREHARE_FRAME_OVERHEAD, srv->frame_max);
      if (srv->tuned && frame.channel > (srv->channel_max != 0 ? srv->channel_max : 65535))
        die (srv->fuzz, "the client used channel %u, channel_max is %u", frame.channel,
             srv->channel_max);

      switch (frame.type)
        {
        case CAREHARE_FRAME_METHOD:
          {
            CarehareMethod m = { 0 };

            if (!carehare_method_decode (frame.payload, frame.size, &m, &error))
              die (srv->fuzz, "the client sent a bad method: %s", error->message);
            server_handle_method (srv, frame.channel, &m);
            carehare_method_clear (&m);
          }
          break;
        case CAREHARE_FRAME_HEADER:
          {
            ServerChannel *ch = server_channel (srv, frame.channel);
            CarehareBasicProperties props = { 0 };
            guint16 class_id = 0;
            guint64 body_size = 0;

            if (!carehare_content_header_decode (frame.payload, frame.size, G_MAXUINT64,
                                                 &class_id, &body_size, &props, &error))
              die (srv->fuzz, "the client sent a bad content header: %s", error->message);
            carehare_basic_properties_clear (&props);
            if (ch == NULL || !ch->in_publish)
              die (srv->fuzz, "the client sent a content header without basic.publish");
            ch->in_publish = FALSE;
            ch->content_left = (gint64) body_size;
            if (body_size == 0)
              server_publish_received (srv, ch);
          }
          break;
        case CAREHARE_FRAME_BODY:
          {
            ServerChannel *ch = server_channel (srv, frame.channel);

            if (ch == NULL || ch->content_left < (gint64) frame.size || frame.size == 0)
              die (srv->fuzz, "the client sent a body frame it had not announced");
            ch->content_left -= frame.size;
            if (ch->content_left == 0)
              server_publish_received (srv, ch);
          }
          break;
        default:
          break;
        }
    }
  if (offset > 0 && srv->in->len > 0)
    g_byte_array_remove_range (srv->in, 0, MIN ((guint) offset, srv->in->len));
}

static gboolean
server_readable_cb (GSocket      *socket,
                    GIOCondition  condition,
                    gpointer      user_data)
{
  Server *srv = user_data;
  guint8 buf[16 * 1024];
  g_autoptr(GError) error = NULL;
  gssize n;

  n = g_socket_receive_with_blocking (socket, (char *) buf, sizeof buf, FALSE, NULL, &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n <= 0)
    {
      /* The client closed or reset the connection: so does the broker. */
      g_clear_pointer (&srv->in_source, g_source_unref);
      server_close (srv, FALSE);
      return G_SOURCE_REMOVE;
    }
  g_byte_array_append (srv->in, buf, (guint) n);
  server_handle_input (srv);
  return G_SOURCE_CONTINUE;
}

static gboolean
server_accept_cb (GSocket      *listener,
                  GIOCondition  condition,
                  gpointer      user_data)
{
  Server *srv = user_data;
  g_autoptr(GSocket) socket = g_socket_accept (listener, NULL, NULL);

  if (socket == NULL)
    return G_SOURCE_CONTINUE;
  if (srv->socket != NULL || srv->gone)
    {
      /* One connection per input. */
      g_socket_close (socket, NULL);
      return G_SOURCE_CONTINUE;
    }
  g_socket_set_blocking (socket, FALSE);
  /* Each write goes out at once: a second small one would otherwise wait
   * for the client's delayed ACK, and an input would depend on the clock. */
  g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  srv->socket = g_steal_pointer (&socket);
  srv->in_source = g_socket_create_source (srv->socket, G_IO_IN, NULL);
  g_source_set_callback (srv->in_source, G_SOURCE_FUNC (server_readable_cb), srv, NULL);
  g_source_attach (srv->in_source, srv->fuzz->context);
  return G_SOURCE_CONTINUE;
}

static guint16
server_start (Server *srv)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  srv->in = g_byte_array_new ();
  srv->out = g_byte_array_new ();
  srv->channels = g_ptr_array_new_with_free_func ((GDestroyNotify) server_channel_free);
  g_queue_init (&srv->held);

  srv->listener = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                G_SOCKET_PROTOCOL_TCP, &error);
  if (srv->listener == NULL || !g_socket_bind (srv->listener, address, TRUE, &error) ||
      !g_socket_listen (srv->listener, &error) ||
      (bound = g_socket_get_local_address (srv->listener, &error)) == NULL)
    die (NULL, "cannot listen on 127.0.0.1: %s", error->message);
  g_socket_set_blocking (srv->listener, FALSE);
  srv->accept_source = g_socket_create_source (srv->listener, G_IO_IN, NULL);
  g_source_set_callback (srv->accept_source, G_SOURCE_FUNC (server_accept_cb), srv, NULL);
  g_source_attach (srv->accept_source, srv->fuzz->context);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

/* Stops listening: a connection the client still makes is refused. */
static void
server_stop_listening (Server *srv)
{
  destroy_source (&srv->accept_source);
  if (srv->listener != NULL)
    {
      g_socket_close (srv->listener, NULL);
      g_clear_object (&srv->listener);
    }
}

static void
server_free (Server *srv)
{
  server_close (srv, TRUE);
  server_stop_listening (srv);
  g_queue_clear_full (&srv->held, (GDestroyNotify) held_free);
  g_clear_pointer (&srv->channels, g_ptr_array_unref);
  g_clear_pointer (&srv->in, g_byte_array_unref);
  g_clear_pointer (&srv->out, g_byte_array_unref);
}

/* ---- the broker: what the input makes it send ---------------------------- */

static void
server_content (Server       *srv,
                guint16       channel,
                guint8        arg)
{
  static const gsize body_sizes[] = { 0, 5, 5000, 1001 };
  gsize body_size = body_sizes[arg & 3];
  gsize max_chunk = srv->tuned && srv->frame_max != 0 ? srv->frame_max - CAREHARE_FRAME_OVERHEAD
                                                      : 4096;
  g_autofree guint8 *body = g_malloc0 (MAX (body_size, 1));
  CarehareBasicProperties props = { 0 };

  if (arg & 4)
    {
      props.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_MESSAGE_ID;
      props.content_type = (char *) "text/plain";
      props.message_id = (char *) "m1";
    }
  if (!carehare_wire_append_header_frame (srv->out, channel, 60, body_size, &props, NULL))
    die (srv->fuzz, "cannot encode a content header");
  if (arg & 8)
    return;  /* the body never comes */
  for (gsize done = 0; done < body_size;)
    {
      gsize n = MIN (body_size - done, max_chunk);

      carehare_wire_append_body_frame (srv->out, channel, body + done, n);
      done += n;
    }
}

static void
server_deliver (Server  *srv,
                guint16  channel,
                guint64  tag,
                guint8   arg)
{
  ServerChannel *ch = server_channel (srv, channel);
  CarehareMethod m = { .id = CAREHARE_METHOD_BASIC_DELIVER };

  m.basic_deliver.consumer_tag = (arg & 0x80) || ch == NULL || ch->consumer_tag == NULL
                                 ? (char *) "ctag-nobody" : ch->consumer_tag;
  m.basic_deliver.delivery_tag = tag;
  m.basic_deliver.redelivered = (arg & 0x40) != 0;
  m.basic_deliver.exchange = (char *) "";
  m.basic_deliver.routing_key = (char *) "q";
  server_method (srv, channel, &m);
  server_content (srv, channel, arg);
}

/* The method each ServerMethod sends; 0 for the frames that are not one. */
static const CarehareMethodId server_method_ids[N_SERVER_METHODS] = {
  [SM_CHANNEL_OPEN_OK] = CAREHARE_METHOD_CHANNEL_OPEN_OK,
  [SM_CHANNEL_CLOSE] = CAREHARE_METHOD_CHANNEL_CLOSE,
  [SM_CHANNEL_CLOSE_OK] = CAREHARE_METHOD_CHANNEL_CLOSE_OK,
  [SM_CHANNEL_FLOW] = CAREHARE_METHOD_CHANNEL_FLOW,
  [SM_CONNECTION_CLOSE] = CAREHARE_METHOD_CONNECTION_CLOSE,
  [SM_CONNECTION_CLOSE_OK] = CAREHARE_METHOD_CONNECTION_CLOSE_OK,
  [SM_CONNECTION_BLOCKED] = CAREHARE_METHOD_CONNECTION_BLOCKED,
  [SM_CONNECTION_UNBLOCKED] = CAREHARE_METHOD_CONNECTION_UNBLOCKED,
  [SM_QUEUE_DECLARE_OK] = CAREHARE_METHOD_QUEUE_DECLARE_OK,
  [SM_QUEUE_DELETE_OK] = CAREHARE_METHOD_QUEUE_DELETE_OK,
  [SM_QUEUE_PURGE_OK] = CAREHARE_METHOD_QUEUE_PURGE_OK,
  [SM_QUEUE_BIND_OK] = CAREHARE_METHOD_QUEUE_BIND_OK,
  [SM_EXCHANGE_DECLARE_OK] = CAREHARE_METHOD_EXCHANGE_DECLARE_OK,
  [SM_BASIC_QOS_OK] = CAREHARE_METHOD_BASIC_QOS_OK,
  [SM_BASIC_CONSUME_OK] = CAREHARE_METHOD_BASIC_CONSUME_OK,
  [SM_BASIC_CANCEL] = CAREHARE_METHOD_BASIC_CANCEL,
  [SM_BASIC_CANCEL_OK] = CAREHARE_METHOD_BASIC_CANCEL_OK,
  [SM_CONFIRM_SELECT_OK] = CAREHARE_METHOD_CONFIRM_SELECT_OK,
  [SM_BASIC_ACK] = CAREHARE_METHOD_BASIC_ACK,
  [SM_BASIC_NACK] = CAREHARE_METHOD_BASIC_NACK,
  [SM_BASIC_RETURN] = CAREHARE_METHOD_BASIC_RETURN,
  [SM_BASIC_DELIVER] = CAREHARE_METHOD_BASIC_DELIVER,
};

/* Sends what @kind says on @channel; @arg picks the arguments. Connection
 * methods go on channel 0 unless arg & 0x80. */
static void
server_send_method (Server       *srv,
                    ServerMethod  kind,
                    guint16       channel,
                    guint8        arg)
{
  ServerChannel *ch = server_channel (srv, channel);
  CarehareMethod m = { .id = server_method_ids[kind] };
  guint16 code = reply_codes[arg % G_N_ELEMENTS (reply_codes)];
  /* the channel's consumer tag, or (arg & 1) another one */
  char *tag = (arg & 1) || ch == NULL || ch->consumer_tag == NULL
              ? (char *) "ctag-other" : ch->consumer_tag;
  guint64 ack_tag = (arg & 0x40) && ch != NULL ? ch->published : arg & 0x3F;

  switch (kind)
    {
    case SM_CHANNEL_CLOSE:
      m.channel_close.reply_code = code;
      m.channel_close.reply_text = (char *) "closed by the fuzzer";
      m.channel_close.class_id = 50;
      m.channel_close.method_id = 10;
      break;
    case SM_CHANNEL_FLOW:
      m.channel_flow.active = arg & 1;
      break;
    case SM_CONNECTION_CLOSE:
      m.connection_close.reply_code = code;
      m.connection_close.reply_text = (char *) "CONNECTION_FORCED - closed by the fuzzer";
      break;
    case SM_CONNECTION_BLOCKED:
      m.connection_blocked.reason = (char *) "low on memory";
      break;
    case SM_QUEUE_DECLARE_OK:
      m.queue_declare_ok.queue = (char *) queue_names[arg % G_N_ELEMENTS (queue_names)];
      m.queue_declare_ok.message_count = arg;
      break;
    case SM_BASIC_CONSUME_OK:
      m.basic_consume_ok.consumer_tag = tag;
      break;
    case SM_BASIC_CANCEL:
      m.basic_cancel.consumer_tag = tag;
      m.basic_cancel.nowait = TRUE;
      break;
    case SM_BASIC_CANCEL_OK:
      m.basic_cancel_ok.consumer_tag = tag;
      break;
    case SM_BASIC_ACK:
      m.basic_ack.delivery_tag = ack_tag;
      m.basic_ack.multiple = (arg & 0x80) != 0;
      break;
    case SM_BASIC_NACK:
      m.basic_nack.delivery_tag = ack_tag;
      m.basic_nack.multiple = (arg & 0x80) != 0;
      break;
    case SM_BASIC_RETURN:
      m.basic_return.reply_code = 312;
      m.basic_return.reply_text = (char *) "NO_ROUTE";
      m.basic_return.exchange = (char *) "";
      m.basic_return.routing_key = (char *) "q";
      break;
    case SM_BASIC_DELIVER:
      m.basic_deliver.consumer_tag = tag;
      m.basic_deliver.delivery_tag = arg >> 1;
      break;
    case SM_HEADER:
      server_content (srv, channel, arg | 8);
      break;
    case SM_BODY:
      carehare_wire_append_body_frame (srv->out, channel, (const guint8 *) "body", 1 + arg % 4);
      break;
    case SM_HEARTBEAT:
      carehare_wire_append_heartbeat_frame (srv->out);
      break;
    default:
      break;
    }
  if (m.id != 0)
    {
      if (CAREHARE_METHOD_CLASS_ID (m.id) == CAREHARE_CLASS_CONNECTION && !(arg & 0x80))
        channel = 0;
      server_method (srv, channel, &m);
      if (kind == SM_BASIC_RETURN)
        server_content (srv, channel, arg);
    }
  server_send (srv);
}

/* ---- the program --------------------------------------------------------- */

static void op_done_cb (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data);

static Op *
op_new (Fuzz   *fuzz,
        OpKind  kind,
        guint8  flags,
        guint   depth)
{
  Op *op = g_new0 (Op, 1);

  op->fuzz = fuzz;
  op->kind = kind;
  op->flags = flags;
  op->depth = depth;
  g_ptr_array_add (fuzz->ops, op);
  fuzz->n_started++;
  return op;
}

static GCancellable *
op_cancellable (Fuzz  *fuzz,
                guint8 flags)
{
  if (!(flags & CB_CANCELLABLE))
    return NULL;
  if (fuzz->cancellables->len < MAX_CANCELLABLES)
    g_ptr_array_add (fuzz->cancellables, g_cancellable_new ());
  return fuzz->cancellables->pdata[fuzz->cancellables->len - 1];
}

/* ::closed of the connection or a consumer: @user_data counts them. */
static void
closed_cb (GObject      *object,
           const GError *error,
           gpointer      user_data)
{
  guint *n_closed = user_data;

  if ((*n_closed)++ > 0)
    die (NULL, "::closed emitted twice on a %s", G_OBJECT_TYPE_NAME (object));
}

static void
keep_consumer (Fuzz             *fuzz,
               CarehareConsumer *consumer)
{
  if (fuzz->n_consumers_ever < MAX_CONSUMERS_EVER)
    {
      ConsumerRecord *rec = &fuzz->consumer_records[fuzz->n_consumers_ever++];

      rec->object = consumer;
      g_object_add_weak_pointer (G_OBJECT (consumer), &rec->object);
      g_signal_connect (consumer, "closed", G_CALLBACK (closed_cb), &rec->n_closed);
    }
  for (guint i = 0; i < MAX_CONSUMERS && !fuzz->ending; i++)
    if (fuzz->consumers[i] == NULL)
      {
        fuzz->consumers[i] = consumer;
        return;
      }
  g_object_unref (consumer);
}

static void
kept_free (Kept *kept)
{
  g_object_unref (kept->delivery);
  g_object_unref (kept->consumer);
  g_free (kept);
}

static void
drop_deliveries (Fuzz *fuzz)
{
  g_ptr_array_set_size (fuzz->deliveries, 0);
}

static void
drop_consumers (Fuzz *fuzz)
{
  drop_deliveries (fuzz);
  for (guint i = 0; i < MAX_CONSUMERS; i++)
    g_clear_object (&fuzz->consumers[i]);
}

static CarehareConsumer *
pick_consumer (Fuzz  *fuzz,
               guint8 which)
{
  for (guint i = 0; i < MAX_CONSUMERS; i++)
    {
      CarehareConsumer *consumer = fuzz->consumers[(which + i) % MAX_CONSUMERS];

      if (consumer != NULL)
        return consumer;
    }
  return NULL;
}

static void
settle (CarehareConsumer *consumer,
        guint64           tag,
        guint8            flags)
{
  if (flags & CB_NACK)
    carehare_consumer_nack (consumer, tag, (flags & CB_REQUEUE) != 0);
  else
    carehare_consumer_ack (consumer, tag);
}

/* A delivery the program got: settled at once or kept for ACT_CALL. */
static void
got_delivery (Fuzz             *fuzz,
              CarehareConsumer *consumer,
              CarehareDelivery *delivery,
              guint8            flags)
{
  if (carehare_delivery_get_body (delivery) == NULL)
    die (fuzz, "a delivery without a body");
  if (flags & (CB_ACK | CB_NACK))
    settle (consumer, carehare_delivery_get_delivery_tag (delivery), flags);
  else if (fuzz->deliveries->len < MAX_DELIVERIES && !fuzz->ending)
    {
      Kept *kept = g_new0 (Kept, 1);

      kept->delivery = g_object_ref (delivery);
      kept->consumer = g_object_ref (consumer);
      g_ptr_array_add (fuzz->deliveries, kept);
    }
}

static void start_call (Fuzz             *fuzz,
                        Call              call,
                        CarehareConsumer *consumer,
                        guint8            flags,
                        guint8            arg,
                        guint             depth);

static void
check_result (Fuzz         *fuzz,
              Op           *op,
              gboolean      ok,
              const GError *error)
{
  if (ok == (error != NULL))
    die (fuzz, "%s returned %s", op_names[op->kind],
         ok ? "a result and an error" : "neither a result nor an error");
}

static void
op_done_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Op *op = user_data;
  Fuzz *fuzz = op->fuzz;
  CarehareConnection *connection = CAREHARE_IS_CONNECTION (source) ? CAREHARE_CONNECTION (source) : NULL;
  CarehareConsumer *consumer = CAREHARE_IS_CONSUMER (source) ? CAREHARE_CONSUMER (source) : NULL;
  g_autoptr(GError) error = NULL;
  gboolean ok = FALSE;

  if (op->n_done++ > 0)
    die (fuzz, "%s completed twice", op_names[op->kind]);
  fuzz->n_done++;

  switch (op->kind)
    {
    case OP_CONNECT:
      {
        CarehareConnection *conn = carehare_connection_new_finish (result, &error);

        ok = conn != NULL;
        if (conn != NULL)
          {
            fuzz->connection_weak = conn;
            g_object_add_weak_pointer (G_OBJECT (conn), &fuzz->connection_weak);
            g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &fuzz->n_connection_closed);
            if (fuzz->ending)
              g_object_unref (conn);
            else
              fuzz->connection = conn;
          }
      }
      break;
    case OP_QUEUE_DECLARE:
      {
        g_autofree char *name = carehare_connection_queue_declare_finish (connection, result,
                                                                          NULL, NULL, &error);

        ok = name != NULL;
      }
      break;
    case OP_QUEUE_DELETE:
      ok = carehare_connection_queue_delete_finish (connection, result, NULL, &error);
      break;
    case OP_QUEUE_PURGE:
      ok = carehare_connection_queue_purge_finish (connection, result, NULL, &error);
      break;
    case OP_QUEUE_BIND:
      ok = carehare_connection_queue_bind_finish (connection, result, &error);
      break;
    case OP_EXCHANGE_DECLARE:
      ok = carehare_connection_exchange_declare_finish (connection, result, &error);
      break;
    case OP_PUBLISH:
      ok = carehare_connection_publish_finish (connection, result, &error);
      break;
    case OP_CONSUME:
      {
        CarehareConsumer *started = carehare_connection_acking_consumer_finish (connection, result,
                                                                                &error);

        ok = started != NULL;
        if (started != NULL)
          {
            keep_consumer (fuzz, started);
            consumer = started;
          }
      }
      break;
    case OP_NEXT_DELIVERY:
      {
        g_autoptr(CarehareDelivery) delivery = carehare_consumer_next_delivery_finish (consumer,
                                                                                      result, &error);

        ok = delivery != NULL;
        if (delivery != NULL)
          got_delivery (fuzz, consumer, delivery, op->flags);
      }
      break;
    case OP_NEXT_DELIVERIES:
      {
        g_autoptr(GPtrArray) deliveries = carehare_consumer_next_deliveries_finish (consumer,
                                                                                   result, &error);

        ok = deliveries != NULL;
        if (deliveries != NULL && deliveries->len == 0)
          die (fuzz, "next_deliveries returned no delivery");
        for (guint i = 0; deliveries != NULL && i < deliveries->len; i++)
          got_delivery (fuzz, consumer, deliveries->pdata[i], op->flags);
      }
      break;
    case OP_CONSUMER_CLOSE:
      ok = carehare_consumer_close_finish (consumer, result, &error);
      break;
    case OP_CLOSE:
      ok = carehare_connection_close_finish (connection, result, &error);
      break;
    default:
      g_assert_not_reached ();
    }
  check_result (fuzz, op, ok, error);
  if (g_getenv ("FUZZ_CONNECTION_VERBOSE") != NULL)
    g_printerr ("%s (flags 0x%02x, depth %u): %s\n", op_names[op->kind], op->flags, op->depth,
                error != NULL ? error->message : "ok");

  /* What the program does from inside the callback. */
  if ((op->flags & CB_CHAIN) && op->depth < MAX_CHAIN_DEPTH)
    {
      /* on the consumer, even one the program dropped */
      if (consumer != NULL)
        start_call (fuzz, CALL_NEXT_DELIVERY, consumer, op->flags & ~CB_CHAIN, 0, op->depth + 1);
      else
        start_call (fuzz, CALL_QUEUE_DECLARE, NULL, op->flags & ~CB_CHAIN, 0, op->depth + 1);
    }
  if ((op->flags & CB_CLOSE) && op->depth < MAX_CHAIN_DEPTH)
    start_call (fuzz, CALL_CLOSE, NULL, 0, 0, op->depth + 1);
  if (op->flags & CB_DROP_CONSUMERS)
    drop_consumers (fuzz);
  if (op->flags & CB_DROP_CONNECTION)
    g_clear_object (&fuzz->connection);
}

/* Starts an operation; a consumer's use @consumer or, if NULL, one the
 * program holds (@arg picks). */
static void
start_call (Fuzz             *fuzz,
            Call              call,
            CarehareConsumer *consumer,
            guint8            flags,
            guint8            arg,
            guint             depth)
{
  CarehareConnection *conn = fuzz->connection;
  GCancellable *cancellable;

  if (consumer == NULL)
    consumer = pick_consumer (fuzz, arg);

  if (fuzz->n_started >= MAX_OPS)
    return;

  switch (call)
    {
    case CALL_QUEUE_DECLARE:
    case CALL_QUEUE_DELETE:
    case CALL_QUEUE_PURGE:
    case CALL_QUEUE_BIND:
    case CALL_EXCHANGE_DECLARE:
    case CALL_PUBLISH:
    case CALL_CONSUME:
    case CALL_CLOSE:
      if (conn == NULL)
        return;
      break;
    case CALL_NEXT_DELIVERY:
    case CALL_NEXT_DELIVERIES:
    case CALL_CONSUMER_CLOSE:
    case CALL_ACK:
    case CALL_NACK:
    case CALL_ACK_TAG:
      if (consumer == NULL)
        return;
      break;
    case N_CALLS:
    default:
      g_assert_not_reached ();
    }

  cancellable = op_cancellable (fuzz, flags);
  switch (call)
    {
    case CALL_QUEUE_DECLARE:
      carehare_connection_queue_declare_async (conn, queue_names[arg % G_N_ELEMENTS (queue_names)],
                                               CAREHARE_QUEUE_FLAGS_NONE, NULL, cancellable,
                                               op_done_cb,
                                               op_new (fuzz, OP_QUEUE_DECLARE, flags, depth));
      break;
    case CALL_QUEUE_DELETE:
      carehare_connection_queue_delete_async (conn, "q", CAREHARE_QUEUE_DELETE_FLAGS_NONE,
                                              cancellable, op_done_cb,
                                              op_new (fuzz, OP_QUEUE_DELETE, flags, depth));
      break;
    case CALL_QUEUE_PURGE:
      carehare_connection_queue_purge_async (conn, "q", cancellable, op_done_cb,
                                             op_new (fuzz, OP_QUEUE_PURGE, flags, depth));
      break;
    case CALL_QUEUE_BIND:
      carehare_connection_queue_bind_async (conn, "q", "amq.direct", "q", NULL, cancellable,
                                            op_done_cb, op_new (fuzz, OP_QUEUE_BIND, flags, depth));
      break;
    case CALL_EXCHANGE_DECLARE:
      carehare_connection_exchange_declare_async (conn, "x", "direct", CAREHARE_EXCHANGE_FLAGS_NONE,
                                                  NULL, cancellable, op_done_cb,
                                                  op_new (fuzz, OP_EXCHANGE_DECLARE, flags, depth));
      break;
    case CALL_PUBLISH:
      {
        static const char body_data[5000];
        g_autoptr(GBytes) body = g_bytes_new_static (body_data, (arg & 2) ? sizeof body_data : 5);

        carehare_connection_publish_async (conn, (arg & 4) ? "x" : "", "q", body, NULL,
                                           (arg & 1) ? CAREHARE_PUBLISH_FLAGS_MANDATORY
                                                     : CAREHARE_PUBLISH_FLAGS_NONE,
                                           cancellable, op_done_cb,
                                           op_new (fuzz, OP_PUBLISH, flags, depth));
      }
      break;
    case CALL_CONSUME:
      carehare_connection_acking_consumer_async (conn, "q", 0, arg % 4, cancellable, op_done_cb,
                                                 op_new (fuzz, OP_CONSUME, flags, depth));
      break;
    case CALL_NEXT_DELIVERY:
      carehare_consumer_next_delivery_async (consumer, cancellable, op_done_cb,
                                             op_new (fuzz, OP_NEXT_DELIVERY, flags, depth));
      break;
    case CALL_NEXT_DELIVERIES:
      carehare_consumer_next_deliveries_async (consumer, arg % 3, cancellable, op_done_cb,
                                               op_new (fuzz, OP_NEXT_DELIVERIES, flags, depth));
      break;
    case CALL_CONSUMER_CLOSE:
      carehare_consumer_close_async (consumer, cancellable, op_done_cb,
                                     op_new (fuzz, OP_CONSUMER_CLOSE, flags, depth));
      break;
    case CALL_CLOSE:
      carehare_connection_close_async (conn, cancellable, op_done_cb,
                                       op_new (fuzz, OP_CLOSE, flags, depth));
      break;
    case CALL_ACK:
    case CALL_NACK:
      if (fuzz->deliveries->len > 0)
        {
          guint i = arg % fuzz->deliveries->len;
          Kept *kept = fuzz->deliveries->pdata[i];

          settle (kept->consumer, carehare_delivery_get_delivery_tag (kept->delivery),
                  call == CALL_NACK ? (flags | CB_NACK) : (flags & ~CB_NACK));
          g_ptr_array_remove_index_fast (fuzz->deliveries, i);
        }
      break;
    case CALL_ACK_TAG:
      settle (consumer, arg, flags);
      break;
    case N_CALLS:
    default:
      g_assert_not_reached ();
    }
}

/* ---- one input ----------------------------------------------------------- */

typedef struct {
  const guint8 *data;
  gsize size;
} Reader;

static guint8
next_byte (Reader *r)
{
  guint8 b;

  if (r->size == 0)
    return 0;
  b = r->data[0];
  r->data++;
  r->size--;
  return b;
}

static gboolean
watchdog_cb (gpointer user_data)
{
  Fuzz *fuzz = user_data;

  fuzz->watchdog_fired = TRUE;
  return G_SOURCE_CONTINUE;
}

static gboolean
everything_done (Fuzz *fuzz)
{
  if (fuzz->n_done != fuzz->n_started || fuzz->connection_weak != NULL)
    return FALSE;
  for (guint i = 0; i < fuzz->n_consumers_ever; i++)
    if (fuzz->consumer_records[i].object != NULL)
      return FALSE;
  return TRUE;
}

/* Iterates, blocking, until @done or the watchdog fires. */
static gboolean
run_until (Fuzz     *fuzz,
           gboolean (*done) (Fuzz *fuzz))
{
  GSource *watchdog = g_timeout_source_new (WATCHDOG_MS);
  gboolean ok;

  g_source_set_callback (watchdog, watchdog_cb, fuzz, NULL);
  g_source_attach (watchdog, fuzz->context);
  fuzz->watchdog_fired = FALSE;
  while (!done (fuzz) && !fuzz->watchdog_fired)
    g_main_context_iteration (fuzz->context, TRUE);
  ok = done (fuzz);
  g_source_destroy (watchdog);
  g_source_unref (watchdog);
  return ok;
}

static gboolean
connect_done (Fuzz *fuzz)
{
  return fuzz->n_done > 0;
}

static void
run_actions (Fuzz   *fuzz,
             Reader *r)
{
  Server *srv = &fuzz->server;

  while (r->size > 0)
    {
      Action action = next_byte (r) % N_ACTIONS;

      switch (action)
        {
        case ACT_ITERATE:
          {
            guint n = 1 + next_byte (r) % 8;

            for (guint i = 0; i < n; i++)
              g_main_context_iteration (fuzz->context, FALSE);
          }
          break;
        case ACT_RAW:
          {
            gsize len = next_byte (r);

            len = MIN (len, r->size);

            if (srv->socket != NULL)
              g_byte_array_append (srv->out, r->data, (guint) len);
            r->data += len;
            r->size -= len;
            server_send (srv);
          }
          break;
        case ACT_REPLY:
          {
            Held *held = g_queue_pop_head (&srv->held);
            guint8 arg = next_byte (r);

            if (held != NULL)
              {
                server_answer (srv, held, arg & 1);
                held_free (held);
              }
          }
          break;
        case ACT_METHOD:
          {
            ServerMethod kind = next_byte (r) % N_SERVER_METHODS;
            guint16 channel = pick_channel (srv, next_byte (r));

            server_send_method (srv, kind, channel, next_byte (r));
          }
          break;
        case ACT_DELIVER:
          {
            guint8 which = next_byte (r), arg = next_byte (r);
            ServerChannel *target = NULL;

            /* the (which)th channel with a consumer */
            for (guint i = 0, seen = 0; i < srv->channels->len; i++)
              {
                ServerChannel *ch = srv->channels->pdata[i];

                if (ch->consumer_tag != NULL)
                  {
                    target = ch;
                    if (seen++ == which % 4)
                      break;
                  }
              }
            if (target != NULL)
              {
                server_deliver (srv, target->number, ++target->delivered, arg);
                server_send (srv);
              }
          }
          break;
        case ACT_SERVER_CLOSE:
          server_close (srv, next_byte (r) & 1);
          break;
        case ACT_CALL:
          {
            Call call = next_byte (r) % N_CALLS;
            guint8 flags = next_byte (r);

            start_call (fuzz, call, NULL, flags, next_byte (r), 0);
          }
          break;
        case ACT_CANCEL:
          {
            guint8 which = next_byte (r);

            if (fuzz->cancellables->len > 0)
              g_cancellable_cancel (fuzz->cancellables->pdata[which % fuzz->cancellables->len]);
          }
          break;
        case ACT_DROP:
          {
            guint8 what = next_byte (r);

            switch ((Drop) (what % N_DROPS))
              {
              case DROP_CONNECTION:
                g_clear_object (&fuzz->connection);
                break;
              case DROP_CONSUMER:
                g_clear_object (&fuzz->consumers[(what / N_DROPS) % MAX_CONSUMERS]);
                break;
              case DROP_DELIVERIES:
                drop_deliveries (fuzz);
                break;
              case DROP_ALL:
              case N_DROPS:
              default:
                drop_consumers (fuzz);
                g_clear_object (&fuzz->connection);
                break;
              }
          }
          break;
        case ACT_HOLD:
          srv->hold = next_byte (r);
          break;
        case N_ACTIONS:
        default:
          g_assert_not_reached ();
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  Fuzz fuzz = { 0 };
  Server *srv = &fuzz.server;
  Reader r = { data, size };
  guint8 config, flags;
  guint16 port;
  GCancellable *connect_cancellable = NULL;

  fuzz_init ();
  if (size < 3)
    return 0;
  current_input = data;
  current_size = size;
  config = next_byte (&r);
  srv->hold = next_byte (&r);
  flags = next_byte (&r);

  fuzz.context = g_main_context_new ();
  g_main_context_push_thread_default (fuzz.context);
  fuzz.deliveries = g_ptr_array_new_with_free_func ((GDestroyNotify) kept_free);
  fuzz.cancellables = g_ptr_array_new_with_free_func (g_object_unref);
  fuzz.ops = g_ptr_array_new_with_free_func (g_free);

  srv->fuzz = &fuzz;
  srv->offer_frame_max = frame_maxes[CONFIG_FRAME_MAX (config)];
  srv->offer_channel_max = channel_maxes[CONFIG_CHANNEL_MAX (config)];
  srv->offer_heartbeat = (config & CONFIG_HEARTBEAT) ? 60 : 0;
  port = server_start (srv);

  /* A connect timeout no input reaches: the broker always answers or
   * closes, and a timer would make an input replay differently. */
  fuzz.uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/?connection_timeout=60000%s",
                              port, (config & CONFIG_SMALL_BODIES) ? "&max_body_size=1000" : "");
  if (flags & FLAG_CONNECT_CANCELLABLE)
    {
      g_ptr_array_add (fuzz.cancellables, g_cancellable_new ());
      connect_cancellable = fuzz.cancellables->pdata[0];
    }
  carehare_connection_new_async (fuzz.uri, connect_cancellable, op_done_cb,
                                 op_new (&fuzz, OP_CONNECT,
                                         (flags & FLAG_DROP_IN_CONNECT_CB) ? CB_DROP_CONNECTION : 0,
                                         0));
  if (!(flags & FLAG_NO_WAIT) && !run_until (&fuzz, connect_done))
    die (&fuzz, "connecting to the fake broker never completed");

  run_actions (&fuzz, &r);

  /* The end: the program closes or drops everything; the broker answers
   * what it held (unless silent) and then closes the socket. */
  if ((flags & FLAG_CLOSE_AT_END) && fuzz.connection != NULL)
    start_call (&fuzz, CALL_CLOSE, NULL, 0, 0, 0);
  fuzz.ending = TRUE;
  drop_consumers (&fuzz);
  g_clear_object (&fuzz.connection);
  if (!(flags & FLAG_SILENT_AT_END))
    {
      srv->answer_all = TRUE;
      while (!g_queue_is_empty (&srv->held))
        {
          Held *held = g_queue_pop_head (&srv->held);

          server_answer (srv, held, FALSE);
          held_free (held);
        }
      for (guint i = 0; i < END_ITERATIONS && !everything_done (&fuzz); i++)
        g_main_context_iteration (fuzz.context, FALSE);
    }
  server_close (srv, (flags & FLAG_RESET_AT_END) != 0);
  server_stop_listening (srv);
  /* The socket is closed: the client finds out at once (a loopback
   * socket), and then nothing waits for a timer. */
  for (guint i = 0; i < END_ITERATIONS && !everything_done (&fuzz); i++)
    g_main_context_iteration (fuzz.context, FALSE);
  if (!everything_done (&fuzz))
    {
      gint64 start = g_get_monotonic_time ();
      gboolean done = run_until (&fuzz, everything_done);

      die (&fuzz, "nothing hangs: %u of %u operations completed, connection %s, "
           "%u iterations after the broker closed the socket; %s after %" G_GINT64_FORMAT " ms more",
           fuzz.n_done, fuzz.n_started, fuzz.connection_weak != NULL ? "alive" : "finalized",
           END_ITERATIONS, done ? "done" : "still not done",
           (g_get_monotonic_time () - start) / 1000);
    }

  /* What the library's sources still have to run (a socket's close). */
  for (guint i = 0; i < END_ITERATIONS && g_main_context_iteration (fuzz.context, FALSE); i++)
    ;

  server_free (srv);
  g_ptr_array_unref (fuzz.deliveries);
  g_ptr_array_unref (fuzz.cancellables);
  g_ptr_array_unref (fuzz.ops);
  g_free (fuzz.uri);
  g_main_context_pop_thread_default (fuzz.context);
  g_main_context_unref (fuzz.context);
  return 0;
}
