/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pending operations hold their object (GTask's rule), and a callback may
 * drop the program's last reference on the connection or a consumer at any
 * moment: inside the callback of every public _async, on every way a
 * connection ends (a reset the client finds while writing, a server
 * Connection.Close, the heartbeat monitor, a local close), every pending
 * operation completes exactly once, nothing touches freed memory, and once
 * the callbacks have run everything is freed (the sanitizer and valgrind
 * phases run this too).
 *
 * Scripted servers (loopback-server.c) complete the handshake, answer
 * channel.open, basic.qos, confirm.select and basic.consume, and hold every
 * other request unanswered until the test tells them to end the
 * connection. The cases of one way of ending run side by side, one
 * connection each, so the whole matrix takes seconds.
 */
#include "carehare-test-util.h"

#include "carehare-wire.h"
#include "loopback-server.h"

#include <string.h>
#include <sys/socket.h>

#define TIMEOUT_US (20 * G_USEC_PER_SEC)
#define HANG_QUEUE "hang"       /* a basic.consume on it is never answered */

/* ---- a scripted server ---------------------------------------------------- */

typedef enum {
  COMMAND_NONE,
  COMMAND_RESET,        /* reset the socket (RST) */
  COMMAND_CLOSE,        /* send Connection.Close 320 */
  COMMAND_SILENCE,      /* stop sending heartbeats */
  COMMAND_ANSWER_CLOSE, /* answer the client's Connection.Close */
} Command;

typedef struct {
  LoopbackServer *server;
  guint16 port;
  guint16 heartbeat;          /* offered in Connection.Tune; heartbeats sent until silenced */
  gint64 reset_after_us;      /* > 0: reset this long after the first queue.declare */
  gint command;               /* atomic Command */
  gint command_done;          /* atomic: the command was carried out */
  GMutex lock;
  GHashTable *held;           /* method id -> number of requests left unanswered */
} Server;

static void
send_method (GSocket              *socket,
             guint16               channel,
             const CarehareMethod *method)
{
  g_autoptr(GByteArray) frame = g_byte_array_new ();

  g_assert_true (carehare_wire_append_method_frame (frame, channel, method, NULL));
  g_socket_send (socket, (const char *) frame->data, frame->len, NULL, NULL);
}

static void
server_hold (Server  *srv,
             guint32  id)
{
  g_mutex_lock (&srv->lock);
  g_hash_table_insert (srv->held, GUINT_TO_POINTER (id),
                       GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (srv->held,
                                                                                GUINT_TO_POINTER (id))) + 1));
  g_mutex_unlock (&srv->lock);
}

/* How many requests of method @id the server holds unanswered. */
static guint
server_held (Server  *srv,
             guint32  id)
{
  guint n;

  g_mutex_lock (&srv->lock);
  n = GPOINTER_TO_UINT (g_hash_table_lookup (srv->held, GUINT_TO_POINTER (id)));
  g_mutex_unlock (&srv->lock);
  return n;
}

/* Resets the connection: the client's next write (or read) fails with
 * ECONNRESET. */
static void
reset_socket (GSocket *socket)
{
  struct linger l = { .l_onoff = 1, .l_linger = 0 };

  g_assert_cmpint (setsockopt (g_socket_get_fd (socket), SOL_SOCKET, SO_LINGER, &l, sizeof l),
                   ==, 0);
  g_socket_close (socket, NULL);
}

/* Answers one method from the client, or holds it. */
static void
answer (Server               *srv,
        GSocket              *socket,
        guint16               channel,
        const CarehareMethod *method,
        gboolean             *close_pending,
        gint64               *first_declare)
{
  CarehareMethod reply = { 0 };

  switch (method->id)
    {
    case CAREHARE_METHOD_CONNECTION_START_OK:
      reply.id = CAREHARE_METHOD_CONNECTION_TUNE;
      reply.connection_tune.channel_max = 64;
      reply.connection_tune.frame_max = 131072;
      reply.connection_tune.heartbeat = srv->heartbeat;
      send_method (socket, 0, &reply);
      break;
    case CAREHARE_METHOD_CONNECTION_OPEN:
      reply.id = CAREHARE_METHOD_CONNECTION_OPEN_OK;
      send_method (socket, 0, &reply);
      break;
    case CAREHARE_METHOD_CHANNEL_OPEN:
      reply.id = CAREHARE_METHOD_CHANNEL_OPEN_OK;
      send_method (socket, channel, &reply);
      break;
    case CAREHARE_METHOD_BASIC_QOS:
      reply.id = CAREHARE_METHOD_BASIC_QOS_OK;
      send_method (socket, channel, &reply);
      break;
    case CAREHARE_METHOD_CONFIRM_SELECT:
      reply.id = CAREHARE_METHOD_CONFIRM_SELECT_OK;
      send_method (socket, channel, &reply);
      break;
    case CAREHARE_METHOD_BASIC_CONSUME:
      if (g_strcmp0 (method->basic_consume.queue, HANG_QUEUE) == 0)
        server_hold (srv, method->id);
      else
        {
          g_autofree char *tag = g_strdup_printf ("ctag-%u", channel);

          reply.id = CAREHARE_METHOD_BASIC_CONSUME_OK;
          reply.basic_consume_ok.consumer_tag = tag;
          send_method (socket, channel, &reply);
        }
      break;
    case CAREHARE_METHOD_CONNECTION_CLOSE:
      *close_pending = TRUE;
      server_hold (srv, method->id);
      break;
    case CAREHARE_METHOD_CONNECTION_CLOSE_OK:
      break;
    case CAREHARE_METHOD_QUEUE_DECLARE:
      if (*first_declare == 0)
        *first_declare = g_get_monotonic_time ();
      server_hold (srv, method->id);
      break;
    default:
      /* Every other request (declares, binds, deletes, purges, publishes,
       * Channel.Close) is held: its operation stays pending. */
      server_hold (srv, method->id);
      break;
    }
}

static guint32
frame_method_id (const CarehareFrame *frame)
{
  if (frame->type != CAREHARE_FRAME_METHOD || frame->size < 4)
    return 0;
  return ((guint32) frame->payload[0] << 24) | ((guint32) frame->payload[1] << 16) |
         ((guint32) frame->payload[2] << 8) | frame->payload[3];
}

static void
server_serve (GSocketConnection *connection,
              gpointer           user_data)
{
  Server *srv = user_data;
  GSocket *socket = g_socket_connection_get_socket (connection);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GBytes) mechanisms = g_bytes_new_static ("PLAIN", 5);
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);
  CarehareMethod start = { .id = CAREHARE_METHOD_CONNECTION_START };
  gint64 heartbeat_us = srv->heartbeat * G_USEC_PER_SEC / 4;
  gint64 next_heartbeat = g_get_monotonic_time () + heartbeat_us;
  gint64 first_declare = 0;
  gboolean close_pending = FALSE;
  gboolean header_seen = FALSE;
  gboolean silent = FALSE;

  start.connection_start.version_minor = 9;
  start.connection_start.mechanisms = mechanisms;
  start.connection_start.locales = locales;

  for (;;)
    {
      Command command = g_atomic_int_get (&srv->command);
      guint8 chunk[65536];
      gssize n;

      if (!g_atomic_int_get (&srv->command_done) && command != COMMAND_NONE)
        {
          switch (command)
            {
            case COMMAND_RESET:
              reset_socket (socket);
              g_atomic_int_set (&srv->command_done, TRUE);
              return;
            case COMMAND_CLOSE:
              {
                CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };

                m.connection_close.reply_code = 320;
                m.connection_close.reply_text = (char *) "CONNECTION_FORCED - scripted";
                send_method (socket, 0, &m);
              }
              break;
            case COMMAND_SILENCE:
              silent = TRUE;
              break;
            case COMMAND_ANSWER_CLOSE:
            case COMMAND_NONE:
            default:
              break;
            }
          g_atomic_int_set (&srv->command_done, TRUE);
        }
      if (close_pending && command == COMMAND_ANSWER_CLOSE)
        {
          CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_CLOSE_OK };

          send_method (socket, 0, &ok);
          close_pending = FALSE;
        }
      if (srv->reset_after_us > 0 && first_declare > 0 &&
          g_get_monotonic_time () >= first_declare + srv->reset_after_us)
        {
          reset_socket (socket);
          g_atomic_int_set (&srv->command_done, TRUE);
          return;
        }
      if (heartbeat_us > 0 && !silent && g_get_monotonic_time () >= next_heartbeat)
        {
          g_autoptr(GByteArray) frame = g_byte_array_new ();

          carehare_wire_append_heartbeat_frame (frame);
          g_socket_send (socket, (const char *) frame->data, frame->len, NULL, NULL);
          next_heartbeat += heartbeat_us;
        }

      if (!g_socket_condition_timed_wait (socket, G_IO_IN, 10 * 1000, NULL, NULL))
        continue;
      n = g_socket_receive (socket, (char *) chunk, sizeof chunk, NULL, NULL);
      if (n <= 0)
        return;  /* the client closed its socket */
      g_byte_array_append (buf, chunk, n);

      if (!header_seen)
        {
          if (buf->len < 8)
            continue;
          g_assert_cmpmem (buf->data, 8, carehare_wire_protocol_header, 8);
          g_byte_array_remove_range (buf, 0, 8);
          header_seen = TRUE;
          send_method (socket, 0, &start);
        }
      for (;;)
        {
          CarehareFrame frame;
          CarehareMethod method = { 0 };
          gssize used = carehare_frame_decode (buf->data, buf->len, 0, &frame, NULL);

          g_assert_cmpint (used, >=, 0);
          if (used == 0)
            break;
          if (frame_method_id (&frame) != 0)
            {
              g_assert_true (carehare_method_decode (frame.payload, frame.size, &method, NULL));
              answer (srv, socket, frame.channel, &method, &close_pending, &first_declare);
              carehare_method_clear (&method);
            }
          g_byte_array_remove_range (buf, 0, used);
        }
    }
}

static Server *
server_new (guint16 heartbeat,
            gint64  reset_after_us)
{
  Server *srv = g_new0 (Server, 1);

  srv->heartbeat = heartbeat;
  srv->reset_after_us = reset_after_us;
  g_mutex_init (&srv->lock);
  srv->held = g_hash_table_new (NULL, NULL);
  srv->server = loopback_server_new (server_serve, srv);
  srv->port = loopback_server_get_port (srv->server);
  return srv;
}

static char *
server_uri (Server *srv)
{
  return g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/", srv->port);
}

static void
server_command (Server  *srv,
                Command  command)
{
  g_atomic_int_set (&srv->command, command);
}

static gboolean
server_is_done (Server *srv)
{
  return loopback_server_is_done (srv->server);
}

static void
server_free (Server *srv)
{
  loopback_server_free (srv->server);
  g_hash_table_unref (srv->held);
  g_mutex_clear (&srv->lock);
  g_free (srv);
}

/* Runs @func from the next main-loop iteration, before anything else that
 * is ready then (a read source would see the reset first): as a program
 * calls the library from a callback of its own. */
static void
call_soon (GSourceFunc func,
           gpointer    data)
{
  g_autoptr(GSource) idle = g_idle_source_new ();

  g_source_set_priority (idle, G_PRIORITY_HIGH);
  g_source_set_callback (idle, func, data, NULL);
  g_source_attach (idle, NULL);
}

/* ---- the reproduction from the issue --------------------------------------- */

typedef struct {
  CarehareConnection *conn;   /* the program's only reference */
  CarehareConnection *borrowed;
  Server *srv;
  guint n_first;
  guint n_second;
} Repro;

static void
first_declared_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  Repro *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  name = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source), result,
                                                   NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_cmpuint (r->n_first++, ==, 0);
  /* "On error, forget the connection." */
  g_clear_object (&r->conn);
}

static void
second_declared_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  Repro *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  name = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source), result,
                                                   NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_cmpuint (r->n_second++, ==, 0);
}

/* A callback of the program's that is busy while the server resets the
 * socket (0.4 s after it read the first declare), and then declares
 * again: the write fails, and the first declare completes inside this
 * call. */
static gboolean
busy_then_declare_cb (gpointer user_data)
{
  Repro *r = user_data;
  gint64 deadline = g_get_monotonic_time () + TIMEOUT_US;

  while (!g_atomic_int_get (&r->srv->command_done))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10 * 1000);
    }
  g_usleep (200 * 1000);  /* the reset reaches our socket */
  carehare_connection_queue_declare_async (r->borrowed, "second", CAREHARE_QUEUE_FLAGS_NONE,
                                           NULL, NULL, second_declared_cb, r);
  return G_SOURCE_REMOVE;
}

static void
test_issue_reproduction (void)
{
  Repro r = { 0 };
  g_autofree char *uri = NULL;
  GWeakRef weak;
  gint64 deadline;

  r.srv = server_new (0, 400 * 1000);
  uri = server_uri (r.srv);
  r.conn = carehare_test_connect (uri);
  r.borrowed = r.conn;
  g_weak_ref_init (&weak, r.conn);

  carehare_connection_queue_declare_async (r.conn, "first", CAREHARE_QUEUE_FLAGS_NONE, NULL,
                                           NULL, first_declared_cb, &r);
  deadline = g_get_monotonic_time () + TIMEOUT_US;
  while (server_held (r.srv, CAREHARE_METHOD_QUEUE_DECLARE) < 1)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  call_soon (busy_then_declare_cb, &r);

  while (r.n_first < 1 || r.n_second < 1 || !server_is_done (r.srv))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  carehare_test_run_for (50);
  g_assert_cmpuint (r.n_first, ==, 1);
  g_assert_cmpuint (r.n_second, ==, 1);
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
  server_free (r.srv);
}

/* ---- the matrix ----------------------------------------------------------- */

typedef enum {
  OP_QUEUE_DECLARE,
  OP_QUEUE_DELETE,
  OP_QUEUE_PURGE,
  OP_QUEUE_BIND,
  OP_QUEUE_UNBIND,
  OP_EXCHANGE_DECLARE,
  OP_EXCHANGE_DELETE,
  OP_EXCHANGE_BIND,
  OP_EXCHANGE_UNBIND,
  OP_PUBLISH,
  OP_ACKING_CONSUMER,
  OP_CONNECTION_CLOSE,
  OP_NEXT_DELIVERY,
  OP_NEXT_DELIVERIES,
  OP_CONSUMER_CLOSE,
  N_OPS
} Op;

static const char * const op_names[N_OPS] = {
  "queue-declare", "queue-delete", "queue-purge", "queue-bind", "queue-unbind",
  "exchange-declare", "exchange-delete", "exchange-bind", "exchange-unbind", "publish",
  "acking-consumer", "connection-close", "next-delivery", "next-deliveries", "consumer-close",
};

/* The request the server holds for each operation (0: none is sent). */
static const guint32 op_requests[N_OPS] = {
  CAREHARE_METHOD_QUEUE_DECLARE, CAREHARE_METHOD_QUEUE_DELETE, CAREHARE_METHOD_QUEUE_PURGE,
  CAREHARE_METHOD_QUEUE_BIND, CAREHARE_METHOD_QUEUE_UNBIND, CAREHARE_METHOD_EXCHANGE_DECLARE,
  CAREHARE_METHOD_EXCHANGE_DELETE, CAREHARE_METHOD_EXCHANGE_BIND, CAREHARE_METHOD_EXCHANGE_UNBIND,
  CAREHARE_METHOD_BASIC_PUBLISH, CAREHARE_METHOD_BASIC_CONSUME, CAREHARE_METHOD_CONNECTION_CLOSE,
  0, 0, CAREHARE_METHOD_CHANNEL_CLOSE,
};

typedef enum {
  DROP_CONNECTION,   /* the callback drops the program's last reference on the connection */
  DROP_CONSUMER,     /* ... on the consumer, which holds the last one on the connection */
  N_DROPS
} Drop;

typedef enum {
  PATH_RESET,        /* the server resets the socket; the client finds it writing */
  PATH_SERVER_CLOSE, /* the server sends Connection.Close */
  PATH_HEARTBEAT,    /* the server falls silent; the heartbeat monitor closes */
  PATH_LOCAL_CLOSE,  /* the program closes the connection */
  N_PATHS
} Path;

typedef struct {
  Op op;
  Drop drop;
  Path path;
  Server *srv;
  CarehareConnection *conn;       /* the program's reference, until dropped */
  CarehareConsumer *consumer;     /* the program's reference, until dropped */
  CarehareConnection *borrowed;   /* alive until the callback of op has run */
  GWeakRef weak_conn;
  GWeakRef weak_consumer;
  guint n_op;                     /* callbacks of the operation under test */
  guint n_bystander;              /* of a declare pending beside it */
  guint n_trigger;                /* of the call that ends the connection, if any */
} Case;

static void
assert_closed_error (const GError *error)
{
  g_assert_nonnull (error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
}

/* The program forgets the object the case names, from inside a callback. */
static void
drop (Case *c)
{
  if (c->drop == DROP_CONNECTION)
    g_clear_object (&c->conn);
  else
    g_clear_object (&c->consumer);
}

static void
op_cb (GObject      *source,
       GAsyncResult *result,
       gpointer      user_data)
{
  Case *c = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_cmpuint (c->n_op, ==, 0);
  c->n_op++;

  switch (c->op)
    {
    case OP_QUEUE_DECLARE:
      g_assert_null (carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source), result,
                                                               NULL, NULL, &error));
      assert_closed_error (error);
      break;
    case OP_QUEUE_DELETE:
      g_assert_false (carehare_connection_queue_delete_finish (CAREHARE_CONNECTION (source), result,
                                                               NULL, &error));
      assert_closed_error (error);
      break;
    case OP_QUEUE_PURGE:
      g_assert_false (carehare_connection_queue_purge_finish (CAREHARE_CONNECTION (source), result,
                                                              NULL, &error));
      assert_closed_error (error);
      break;
    case OP_QUEUE_BIND:
      g_assert_false (carehare_connection_queue_bind_finish (CAREHARE_CONNECTION (source), result,
                                                             &error));
      assert_closed_error (error);
      break;
    case OP_QUEUE_UNBIND:
      g_assert_false (carehare_connection_queue_unbind_finish (CAREHARE_CONNECTION (source), result,
                                                               &error));
      assert_closed_error (error);
      break;
    case OP_EXCHANGE_DECLARE:
      g_assert_false (carehare_connection_exchange_declare_finish (CAREHARE_CONNECTION (source),
                                                                   result, &error));
      assert_closed_error (error);
      break;
    case OP_EXCHANGE_DELETE:
      g_assert_false (carehare_connection_exchange_delete_finish (CAREHARE_CONNECTION (source),
                                                                  result, &error));
      assert_closed_error (error);
      break;
    case OP_EXCHANGE_BIND:
      g_assert_false (carehare_connection_exchange_bind_finish (CAREHARE_CONNECTION (source),
                                                                result, &error));
      assert_closed_error (error);
      break;
    case OP_EXCHANGE_UNBIND:
      g_assert_false (carehare_connection_exchange_unbind_finish (CAREHARE_CONNECTION (source),
                                                                  result, &error));
      assert_closed_error (error);
      break;
    case OP_PUBLISH:
      g_assert_false (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result,
                                                          &error));
      assert_closed_error (error);
      break;
    case OP_ACKING_CONSUMER:
      g_assert_null (carehare_connection_acking_consumer_finish (CAREHARE_CONNECTION (source),
                                                                 result, &error));
      assert_closed_error (error);
      break;
    case OP_CONNECTION_CLOSE:
      /* We closed it, or it had ended first and close says why. */
      if (!carehare_connection_close_finish (CAREHARE_CONNECTION (source), result, &error))
        {
          g_assert_nonnull (error);
          g_assert_true (error->domain == CAREHARE_ERROR);
        }
      break;
    case OP_NEXT_DELIVERY:
      g_assert_null (carehare_consumer_next_delivery_finish (CAREHARE_CONSUMER (source), result,
                                                             &error));
      assert_closed_error (error);
      break;
    case OP_NEXT_DELIVERIES:
      g_assert_null (carehare_consumer_next_deliveries_finish (CAREHARE_CONSUMER (source), result,
                                                               &error));
      assert_closed_error (error);
      break;
    case OP_CONSUMER_CLOSE:
      g_assert_true (carehare_consumer_close_finish (CAREHARE_CONSUMER (source), result, &error));
      g_assert_no_error (error);
      break;
    case N_OPS:
    default:
      g_assert_not_reached ();
    }
  drop (c);
}

static void
bystander_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Case *c = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  name = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source), result,
                                                   NULL, NULL, &error);
  g_assert_null (name);
  assert_closed_error (error);
  g_assert_cmpuint (c->n_bystander++, ==, 0);
}

static void
trigger_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Case *c = user_data;
  g_autoptr(GError) error = NULL;

  if (c->path == PATH_LOCAL_CLOSE)
    {
      g_assert_true (carehare_connection_close_finish (CAREHARE_CONNECTION (source), result,
                                                       &error));
      g_assert_no_error (error);
    }
  else
    {
      g_autofree char *name = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source),
                                                                        result, NULL, NULL,
                                                                        &error);
      g_assert_null (name);
      assert_closed_error (error);
    }
  g_assert_cmpuint (c->n_trigger++, ==, 0);
}

static void
start_op (Case *c)
{
  CarehareConnection *conn = c->conn;
  g_autoptr(GBytes) body = g_bytes_new_static ("held", 4);

  switch (c->op)
    {
    case OP_QUEUE_DECLARE:
      carehare_connection_queue_declare_async (conn, "q", CAREHARE_QUEUE_FLAGS_NONE, NULL, NULL,
                                               op_cb, c);
      break;
    case OP_QUEUE_DELETE:
      carehare_connection_queue_delete_async (conn, "q", CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                              op_cb, c);
      break;
    case OP_QUEUE_PURGE:
      carehare_connection_queue_purge_async (conn, "q", NULL, op_cb, c);
      break;
    case OP_QUEUE_BIND:
      carehare_connection_queue_bind_async (conn, "q", "x", "k", NULL, NULL, op_cb, c);
      break;
    case OP_QUEUE_UNBIND:
      carehare_connection_queue_unbind_async (conn, "q", "x", "k", NULL, NULL, op_cb, c);
      break;
    case OP_EXCHANGE_DECLARE:
      carehare_connection_exchange_declare_async (conn, "x", "direct", CAREHARE_EXCHANGE_FLAGS_NONE,
                                                  NULL, NULL, op_cb, c);
      break;
    case OP_EXCHANGE_DELETE:
      carehare_connection_exchange_delete_async (conn, "x", CAREHARE_EXCHANGE_DELETE_FLAGS_NONE,
                                                 NULL, op_cb, c);
      break;
    case OP_EXCHANGE_BIND:
      carehare_connection_exchange_bind_async (conn, "x", "y", "k", NULL, NULL, op_cb, c);
      break;
    case OP_EXCHANGE_UNBIND:
      carehare_connection_exchange_unbind_async (conn, "x", "y", "k", NULL, NULL, op_cb, c);
      break;
    case OP_PUBLISH:
      carehare_connection_publish_async (conn, "x", "k", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, op_cb, c);
      break;
    case OP_ACKING_CONSUMER:
      carehare_connection_acking_consumer_async (conn, HANG_QUEUE, 0, 10, NULL, op_cb, c);
      break;
    case OP_CONNECTION_CLOSE:
      carehare_connection_close_async (conn, NULL, op_cb, c);
      break;
    case OP_NEXT_DELIVERY:
      carehare_consumer_next_delivery_async (c->consumer, NULL, op_cb, c);
      break;
    case OP_NEXT_DELIVERIES:
      carehare_consumer_next_deliveries_async (c->consumer, 0, NULL, op_cb, c);
      break;
    case OP_CONSUMER_CLOSE:
      carehare_consumer_close_async (c->consumer, NULL, op_cb, c);
      break;
    case N_OPS:
    default:
      g_assert_not_reached ();
    }
}

/* Connects, starts a consumer, a bystander declare and the operation under
 * test, and waits until the server holds their requests. Then the program
 * keeps only the reference the case's callback drops (the consumer holds
 * the connection; a pending operation holds its object). */
static Case *
case_new (Op   op,
          Drop d,
          Path path)
{
  Case *c = g_new0 (Case, 1);
  g_autofree char *uri = NULL;
  g_autoptr(GAsyncResult) started = NULL;
  g_autoptr(GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + TIMEOUT_US;
  guint want_declares;

  c->op = op;
  c->drop = d;
  c->path = path;
  c->srv = server_new (path == PATH_HEARTBEAT ? 1 : 0, 0);
  uri = server_uri (c->srv);
  c->conn = carehare_test_connect (uri);
  c->borrowed = c->conn;
  g_weak_ref_init (&c->weak_conn, c->conn);

  carehare_connection_acking_consumer_async (c->conn, "q", 0, 10, NULL,
                                             carehare_test_store_result, &started);
  carehare_test_wait_for_result (&started, 10000);
  c->consumer = carehare_connection_acking_consumer_finish (c->conn, started, &error);
  g_assert_no_error (error);
  g_weak_ref_init (&c->weak_consumer, c->consumer);

  carehare_connection_queue_declare_async (c->conn, "bystander", CAREHARE_QUEUE_FLAGS_NONE,
                                           NULL, NULL, bystander_cb, c);
  start_op (c);

  /* Everything written and held by the server (a close fails the
   * bystander before it is sent). */
  want_declares = op == OP_CONNECTION_CLOSE ? 0 : op == OP_QUEUE_DECLARE ? 2 : 1;
  while (server_held (c->srv, CAREHARE_METHOD_QUEUE_DECLARE) < want_declares ||
         (op_requests[op] != 0 && server_held (c->srv, op_requests[op]) < 1))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("%s: the server never got the requests", op_names[op]);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (500);
    }

  if (d == DROP_CONNECTION)
    g_clear_object (&c->consumer);  /* a pending next_delivery or close keeps it */
  else
    g_clear_object (&c->conn);      /* the consumer keeps it */
  return c;
}

static gboolean
case_is_done (Case *c)
{
  g_autoptr(GObject) conn = g_weak_ref_get (&c->weak_conn);
  g_autoptr(GObject) consumer = g_weak_ref_get (&c->weak_consumer);

  return c->n_op == 1 && c->n_bystander == 1 &&
         (c->path == PATH_SERVER_CLOSE || c->path == PATH_HEARTBEAT || c->n_trigger == 1) &&
         conn == NULL && consumer == NULL && server_is_done (c->srv);
}

static void
case_free (Case *c)
{
  g_assert_cmpuint (c->n_op, ==, 1);
  g_assert_cmpuint (c->n_bystander, ==, 1);
  g_assert_null (c->conn);
  g_assert_null (c->consumer);
  g_weak_ref_clear (&c->weak_conn);
  g_weak_ref_clear (&c->weak_consumer);
  server_free (c->srv);
  g_free (c);
}

/* What the program does, from a callback of its own, to end the
 * connection (the reset and the local close paths). */
static gboolean
trigger_all_cb (gpointer user_data)
{
  GPtrArray *cases = user_data;

  for (guint i = 0; i < cases->len; i++)
    {
      Case *c = cases->pdata[i];

      /* c->borrowed is alive: the program's reference, the consumer or the
       * pending operation under test keeps it until that callback ran. */
      g_assert_cmpuint (c->n_op, ==, 0);
      if (c->path == PATH_LOCAL_CLOSE)
        carehare_connection_close_async (c->borrowed, NULL, trigger_cb, c);
      else
        carehare_connection_queue_declare_async (c->borrowed, "trigger", CAREHARE_QUEUE_FLAGS_NONE,
                                                 NULL, NULL, trigger_cb, c);
      /* Only now: a close under test must still be pending above. */
      if (c->path == PATH_LOCAL_CLOSE)
        server_command (c->srv, COMMAND_ANSWER_CLOSE);
    }
  return G_SOURCE_REMOVE;
}

static void
run_path (gconstpointer data)
{
  Path path = GPOINTER_TO_UINT (data);
  g_autoptr(GPtrArray) cases = g_ptr_array_new ();
  gint64 deadline;
  gboolean done = FALSE;

  for (Op op = 0; op < N_OPS; op++)
    for (Drop d = 0; d < N_DROPS; d++)
      g_ptr_array_add (cases, case_new (op, d, path));

  switch (path)
    {
    case PATH_RESET:
      /* Every server resets its socket while the program is busy; then the
       * program's next call writes, and the write fails. */
      for (guint i = 0; i < cases->len; i++)
        server_command (((Case *) cases->pdata[i])->srv, COMMAND_RESET);
      deadline = g_get_monotonic_time () + TIMEOUT_US;
      for (guint i = 0; i < cases->len; i++)
        while (!g_atomic_int_get (&((Case *) cases->pdata[i])->srv->command_done))
          {
            g_assert_cmpint (g_get_monotonic_time (), <, deadline);
            g_usleep (1000);
          }
      g_usleep (50 * 1000);
      call_soon (trigger_all_cb, cases);
      break;
    case PATH_SERVER_CLOSE:
      for (guint i = 0; i < cases->len; i++)
        server_command (((Case *) cases->pdata[i])->srv, COMMAND_CLOSE);
      break;
    case PATH_HEARTBEAT:
      for (guint i = 0; i < cases->len; i++)
        server_command (((Case *) cases->pdata[i])->srv, COMMAND_SILENCE);
      break;
    case PATH_LOCAL_CLOSE:
      call_soon (trigger_all_cb, cases);
      break;
    case N_PATHS:
    default:
      g_assert_not_reached ();
    }

  deadline = g_get_monotonic_time () + TIMEOUT_US;
  while (!done)
    {
      done = TRUE;
      for (guint i = 0; i < cases->len && done; i++)
        done = case_is_done (cases->pdata[i]);
      if (done)
        break;
      if (g_get_monotonic_time () > deadline)
        {
          for (guint i = 0; i < cases->len; i++)
            {
              Case *c = cases->pdata[i];

              if (!case_is_done (c))
                g_test_message ("%s, drop %s: callbacks %u/%u/%u, server done %d",
                                op_names[c->op], c->drop == DROP_CONNECTION ? "connection" : "consumer",
                                c->n_op, c->n_bystander, c->n_trigger, server_is_done (c->srv));
            }
          g_error ("some cases did not complete, or left objects alive");
        }
      g_main_context_iteration (NULL, FALSE);
      g_usleep (500);
    }
  /* Nothing is left for the main context to do with them. */
  carehare_test_run_for (20);
  for (guint i = 0; i < cases->len; i++)
    case_free (cases->pdata[i]);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/references/issue-13-reproduction", test_issue_reproduction);
  g_test_add_data_func ("/references/drop-in-callback/reset-during-write",
                        GUINT_TO_POINTER (PATH_RESET), run_path);
  g_test_add_data_func ("/references/drop-in-callback/server-close",
                        GUINT_TO_POINTER (PATH_SERVER_CLOSE), run_path);
  g_test_add_data_func ("/references/drop-in-callback/heartbeat-timeout",
                        GUINT_TO_POINTER (PATH_HEARTBEAT), run_path);
  g_test_add_data_func ("/references/drop-in-callback/local-close",
                        GUINT_TO_POINTER (PATH_LOCAL_CLOSE), run_path);

  return g_test_run ();
}
