/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A connection's lifecycle, whatever the peer does: closing against a peer
 * that stopped reading or never answers Connection.Close, closing while
 * connecting, the heartbeat monitor after the main loop stalled, an
 * operation that makes the broker close the connection, a worker thread
 * that drops its connection, and calls from another main context.
 *
 * Scripted servers run on loopback (loopback-server.c) with blocking I/O in
 * a thread of their own; the rest runs against the private broker.
 */
#include "carehare-test-util.h"

#include "carehare-wire.h"
#include "loopback-server.h"

#include <string.h>

#define BIG_BODY (32 * 1024 * 1024)  /* far more than loopback socket buffers hold */

/* ---- a scripted server ---------------------------------------------------- */

typedef enum {
  SCRIPT_STOP_READING,   /* after the handshake: neither read nor write */
  SCRIPT_NEVER_ANSWER,   /* after the handshake: read everything, answer nothing */
  SCRIPT_HEARTBEATS,     /* after the handshake: a heartbeat every 250 ms, Close answered */
  SCRIPT_STALL_AMQP,     /* read the protocol header, answer nothing */
  SCRIPT_STALL_RAW,      /* read whatever comes (a TLS ClientHello), answer nothing */
} Script;

typedef struct {
  LoopbackServer *server;
  guint16 port;
  Script script;
  guint16 heartbeat;     /* offered in Connection.Tune */
  gint reached;          /* atomic: the script's steady state began */
  gint stop;             /* atomic: the test is over: read to the end */
  gint eof;              /* atomic: the client closed its socket */
} Scripted;

static void
send_method (GOutputStream        *out,
             guint16               channel,
             const CarehareMethod *method)
{
  g_autoptr(GByteArray) frame = g_byte_array_new ();

  g_assert_true (carehare_wire_append_method_frame (frame, channel, method, NULL));
  g_output_stream_write_all (out, frame->data, frame->len, NULL, NULL, NULL);
}

static guint32
frame_method_id (const CarehareFrame *frame)
{
  if (frame->type != CAREHARE_FRAME_METHOD || frame->size < 4)
    return 0;
  return ((guint32) frame->payload[0] << 24) | ((guint32) frame->payload[1] << 16) |
         ((guint32) frame->payload[2] << 8) | frame->payload[3];
}

/* Reads frames until the method @id arrives; FALSE at end of file. */
static gboolean
read_until (GInputStream *in,
            GByteArray   *buf,
            guint32       id)
{
  for (;;)
    {
      CarehareFrame frame;
      guint8 chunk[4096];
      gssize n, got;

      while ((n = carehare_frame_decode (buf->data, buf->len, 0, &frame, NULL)) > 0)
        {
          gboolean found = frame_method_id (&frame) == id;

          g_byte_array_remove_range (buf, 0, n);
          if (found)
            return TRUE;
        }
      g_assert_cmpint (n, ==, 0);
      got = g_input_stream_read (in, chunk, sizeof chunk, NULL, NULL);
      if (got <= 0)
        return FALSE;
      g_byte_array_append (buf, chunk, got);
    }
}

/* Reads until the client closes its socket (TRUE), or, once the test said
 * stop, for at most 5 s more (FALSE). With @answer_close, a
 * Connection.Close is answered; with @heartbeat_us, a heartbeat goes out
 * that often. */
static gboolean
read_to_end (Scripted     *srv,
             GSocket      *socket,
             GByteArray   *buf,
             gboolean      answer_close,
             gint64        heartbeat_us)
{
  gint64 next_heartbeat = g_get_monotonic_time () + heartbeat_us;
  gint64 deadline = G_MAXINT64;

  for (;;)
    {
      guint8 chunk[65536];
      gssize n;

      if (deadline == G_MAXINT64 && g_atomic_int_get (&srv->stop))
        deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      if (heartbeat_us > 0 && g_get_monotonic_time () >= next_heartbeat)
        {
          g_autoptr(GByteArray) frame = g_byte_array_new ();

          carehare_wire_append_heartbeat_frame (frame);
          if (g_socket_send (socket, (const char *) frame->data, frame->len, NULL, NULL) < 0)
            return TRUE;
          next_heartbeat += heartbeat_us;
        }
      if (!g_socket_condition_timed_wait (socket, G_IO_IN, 20 * 1000, NULL, NULL))
        continue;
      n = g_socket_receive (socket, (char *) chunk, sizeof chunk, NULL, NULL);
      if (n <= 0)
        return TRUE;  /* end of file, or reset: the client's socket is gone */
      if (!answer_close)
        continue;

      g_byte_array_append (buf, chunk, n);
      for (;;)
        {
          CarehareFrame frame;
          gssize used = carehare_frame_decode (buf->data, buf->len, 0, &frame, NULL);
          guint32 id;

          g_assert_cmpint (used, >=, 0);
          if (used == 0)
            break;
          id = frame_method_id (&frame);
          g_byte_array_remove_range (buf, 0, used);
          if (id == CAREHARE_METHOD_CONNECTION_CLOSE)
            {
              g_autoptr(GByteArray) ok = g_byte_array_new ();
              CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_CLOSE_OK };

              g_assert_true (carehare_wire_append_method_frame (ok, 0, &m, NULL));
              g_socket_send (socket, (const char *) ok->data, ok->len, NULL, NULL);
            }
        }
    }
}

static void
scripted_serve (GSocketConnection *connection,
                gpointer           user_data)
{
  Scripted *srv = user_data;
  GSocket *socket = g_socket_connection_get_socket (connection);
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (connection));
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (connection));
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GBytes) mechanisms = g_bytes_new_static ("PLAIN", 5);
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_START };
  guint8 header[8];
  gsize got = 0;

  if (srv->script == SCRIPT_STALL_RAW)
    {
      /* Whatever the client says first (a TLS ClientHello) is never answered. */
      if (g_socket_condition_timed_wait (socket, G_IO_IN, 10 * G_USEC_PER_SEC, NULL, NULL))
        g_atomic_int_set (&srv->reached, TRUE);
      g_atomic_int_set (&srv->eof, read_to_end (srv, socket, buf, FALSE, 0));
      return;
    }

  if (!g_input_stream_read_all (in, header, sizeof header, &got, NULL, NULL) || got != 8)
    return;
  g_assert_cmpmem (header, 8, carehare_wire_protocol_header, 8);
  if (srv->script == SCRIPT_STALL_AMQP)
    {
      g_atomic_int_set (&srv->reached, TRUE);
      g_atomic_int_set (&srv->eof, read_to_end (srv, socket, buf, FALSE, 0));
      return;
    }

  m.connection_start.version_minor = 9;
  m.connection_start.mechanisms = mechanisms;
  m.connection_start.locales = locales;
  send_method (out, 0, &m);
  if (!read_until (in, buf, CAREHARE_METHOD_CONNECTION_START_OK))
    return;
  memset (&m, 0, sizeof m);
  m.id = CAREHARE_METHOD_CONNECTION_TUNE;
  m.connection_tune.channel_max = 16;
  m.connection_tune.frame_max = 131072;
  m.connection_tune.heartbeat = srv->heartbeat;
  send_method (out, 0, &m);
  if (!read_until (in, buf, CAREHARE_METHOD_CONNECTION_OPEN))
    return;
  memset (&m, 0, sizeof m);
  m.id = CAREHARE_METHOD_CONNECTION_OPEN_OK;
  send_method (out, 0, &m);
  g_atomic_int_set (&srv->reached, TRUE);

  switch (srv->script)
    {
    case SCRIPT_STOP_READING:
      while (!g_atomic_int_get (&srv->stop))
        g_usleep (10 * 1000);
      g_atomic_int_set (&srv->eof, read_to_end (srv, socket, buf, FALSE, 0));
      break;
    case SCRIPT_NEVER_ANSWER:
      g_atomic_int_set (&srv->eof, read_to_end (srv, socket, buf, FALSE, 0));
      break;
    case SCRIPT_HEARTBEATS:
      g_atomic_int_set (&srv->eof, read_to_end (srv, socket, buf, TRUE, 250 * 1000));
      break;
    case SCRIPT_STALL_AMQP:
    case SCRIPT_STALL_RAW:
    default:
      g_assert_not_reached ();
    }
}

static Scripted *
scripted_new (Script  script,
              guint16 heartbeat)
{
  Scripted *srv = g_new0 (Scripted, 1);

  srv->script = script;
  srv->heartbeat = heartbeat;
  srv->server = loopback_server_new (scripted_serve, srv);
  srv->port = loopback_server_get_port (srv->server);
  return srv;
}

static char *
scripted_uri (Scripted *srv)
{
  return g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/", srv->port);
}

/* Iterates the main context until the script reached its steady state. */
static void
scripted_wait_reached (Scripted *srv)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  while (!g_atomic_int_get (&srv->reached))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("the scripted server never reached its steady state");
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

/* Tells the server the test is over, waits (iterating the main context)
 * until it is done, and returns whether it saw the client close its
 * socket. */
static gboolean
scripted_free (Scripted *srv)
{
  gboolean eof;

  g_atomic_int_set (&srv->stop, TRUE);
  while (!loopback_server_is_done (srv->server))
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  loopback_server_free (srv->server);
  eof = g_atomic_int_get (&srv->eof);
  g_free (srv);
  return eof;
}

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  guint n_closed;
  GError *error;
} ClosedRecord;

static void
closed_cb (CarehareConnection *conn,
           const GError       *error,
           gpointer            user_data)
{
  ClosedRecord *rec = user_data;

  rec->n_closed++;
  g_clear_error (&rec->error);
  if (error != NULL)
    rec->error = g_error_copy (error);
}

static gint64
elapsed_ms (gint64 start)
{
  return (g_get_monotonic_time () - start) / 1000;
}

/* ---- #7: a close ends with the socket closed, whatever the peer does ------ */

/* The peer completed the handshake and never reads again, while a publish
 * far larger than the socket buffers is being written: close_async still
 * completes, within the close timeout (here two heartbeat intervals) and
 * the linger, and the socket is closed. */
static void
test_close_peer_stops_reading (void)
{
  Scripted *srv = scripted_new (SCRIPT_STOP_READING, 1);
  g_autofree char *uri = scripted_uri (srv);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(GBytes) body = g_bytes_new_take (g_malloc0 (BIG_BODY), BIG_BODY);
  g_autoptr(GAsyncResult) published = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  gint64 start;

  carehare_connection_publish_async (conn, "", "q", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &published);
  carehare_test_run_for (200);
  g_assert_null (published);

  start = g_get_monotonic_time ();
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 8000);
  g_test_message ("close completed after %" G_GINT64_FORMAT " ms", elapsed_ms (start));
  /* No Close-Ok came: the close timed out, and we closed it. */
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_get_is_closed (conn));

  carehare_test_wait_for_result (&published, 1000);
  g_assert_false (carehare_connection_publish_finish (conn, published, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_true (scripted_free (srv));
}

/* The same peer, and the heartbeat monitor closes the connection: the
 * socket is closed at once, and close_async reports the monitor. */
static void
test_close_after_heartbeat_monitor_peer_stops_reading (void)
{
  Scripted *srv = scripted_new (SCRIPT_STOP_READING, 1);
  g_autofree char *uri = scripted_uri (srv);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(GBytes) body = g_bytes_new_take (g_malloc0 (BIG_BODY), BIG_BODY);
  g_autoptr(GAsyncResult) published = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  ClosedRecord rec = { 0 };
  gint64 deadline;

  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  carehare_connection_publish_async (conn, "", "q", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &published);
  deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  while (rec.n_closed == 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  g_assert_cmpuint (rec.n_closed, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
  g_assert_true (carehare_error_is_transient (rec.error));

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 1000);
  g_assert_false (carehare_connection_close_finish (conn, closed, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);

  carehare_test_wait_for_result (&published, 1000);
  g_assert_false (carehare_connection_publish_finish (conn, published, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_true (scripted_free (srv));
  g_clear_error (&rec.error);
}

/* ---- #10: cancelling close_async stops the wait for Close-Ok -------------- */

static void
test_close_cancelled (void)
{
  Scripted *srv = scripted_new (SCRIPT_NEVER_ANSWER, 0);
  g_autofree char *uri = scripted_uri (srv);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  ClosedRecord rec = { 0 };
  gint64 start;

  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  carehare_connection_close_async (conn, cancellable, carehare_test_store_result, &closed);
  /* Waiting for a Close-Ok that will never come. */
  carehare_test_run_for (300);
  g_assert_null (closed);

  start = g_get_monotonic_time ();
  g_cancellable_cancel (cancellable);
  carehare_test_wait_for_result (&closed, 1000);
  g_test_message ("close completed %" G_GINT64_FORMAT " ms after the cancel", elapsed_ms (start));
  /* Closed by us, only sooner. */
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_get_is_closed (conn));
  g_assert_cmpuint (rec.n_closed, ==, 1);
  g_assert_null (rec.error);
  g_assert_true (scripted_free (srv));
}

/* A cancellable already cancelled: Close is said, and the socket closed at
 * once. */
static void
test_close_already_cancelled (void)
{
  Scripted *srv = scripted_new (SCRIPT_NEVER_ANSWER, 0);
  g_autofree char *uri = scripted_uri (srv);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;

  g_cancellable_cancel (cancellable);
  carehare_connection_close_async (conn, cancellable, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 1000);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_get_is_closed (conn));
  g_assert_true (scripted_free (srv));
}

/* ---- #9: a stalled main loop does not make a healthy peer look dead ------- */

static void
test_heartbeat_after_stalled_loop (void)
{
  Scripted *srv = scripted_new (SCRIPT_HEARTBEATS, 1);
  g_autofree char *uri = scripted_uri (srv);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  ClosedRecord rec = { 0 };

  g_assert_cmpuint (carehare_connection_get_heartbeat (conn), ==, 1);
  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  carehare_test_run_for (300);
  /* The program blocks its main loop for longer than two heartbeat
   * intervals; the server's heartbeats wait in the socket. */
  g_usleep (2600 * 1000);
  carehare_test_run_for (300);
  if (rec.error != NULL)
    g_test_message ("closed: %s", rec.error->message);
  g_assert_cmpuint (rec.n_closed, ==, 0);
  g_assert_false (carehare_connection_get_is_closed (conn));

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 5000);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_true (scripted_free (srv));
}

/* ---- #8: closing while connecting stops the connect ----------------------- */

/* Closes @conn, whose init_async is pending (or not started when
 * @init_result is NULL), and checks that it stays closed. */
static void
assert_close_stops_connect (CarehareConnection  *conn,
                            GAsyncResult       **init_result)
{
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 5000);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_get_is_closed (conn));

  if (init_result == NULL)
    {
      g_autoptr(GAsyncResult) result = NULL;

      g_async_initable_init_async (G_ASYNC_INITABLE (conn), G_PRIORITY_DEFAULT, NULL,
                                   carehare_test_store_result, &result);
      carehare_test_wait_for_result (&result, 5000);
      g_assert_false (g_async_initable_init_finish (G_ASYNC_INITABLE (conn), result, &error));
    }
  else
    {
      carehare_test_wait_for_result (init_result, 5000);
      g_assert_false (g_async_initable_init_finish (G_ASYNC_INITABLE (conn), *init_result, &error));
    }
  g_test_message ("init: %s", error->message);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);

  /* It stays closed: nothing connects behind the program's back. */
  carehare_test_run_for (300);
  g_assert_true (carehare_connection_get_is_closed (conn));
  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, 5000);
  name = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
}

static void
test_close_before_init (void)
{
  g_autoptr(CarehareConnection) conn = g_object_new (CAREHARE_TYPE_CONNECTION,
                                                     "uri", carehare_test_amqp_uri (), NULL);

  assert_close_stops_connect (conn, NULL);
}

/* The construction style of Python and GJS: new, init_async, and a close
 * right after (the TCP connect is under way). */
static void
test_close_right_after_init (void)
{
  g_autoptr(CarehareConnection) conn = g_object_new (CAREHARE_TYPE_CONNECTION,
                                                     "uri", carehare_test_amqp_uri (), NULL);
  g_autoptr(GAsyncResult) init = NULL;

  g_async_initable_init_async (G_ASYNC_INITABLE (conn), G_PRIORITY_DEFAULT, NULL,
                               carehare_test_store_result, &init);
  assert_close_stops_connect (conn, &init);
}

static void
test_close_during_amqp_handshake (void)
{
  Scripted *srv = scripted_new (SCRIPT_STALL_AMQP, 0);
  g_autofree char *uri = scripted_uri (srv);
  g_autoptr(CarehareConnection) conn = g_object_new (CAREHARE_TYPE_CONNECTION, "uri", uri, NULL);
  g_autoptr(GAsyncResult) init = NULL;

  g_async_initable_init_async (G_ASYNC_INITABLE (conn), G_PRIORITY_DEFAULT, NULL,
                               carehare_test_store_result, &init);
  scripted_wait_reached (srv);
  assert_close_stops_connect (conn, &init);
  g_assert_true (scripted_free (srv));
}

static void
test_close_during_tls_handshake (void)
{
  Scripted *srv = scripted_new (SCRIPT_STALL_RAW, 0);
  g_autofree char *uri = g_strdup_printf ("amqps://guest:guest@127.0.0.1:%u/", srv->port);
  g_autoptr(CarehareConnection) conn = g_object_new (CAREHARE_TYPE_CONNECTION, "uri", uri, NULL);
  g_autoptr(GAsyncResult) init = NULL;

  g_async_initable_init_async (G_ASYNC_INITABLE (conn), G_PRIORITY_DEFAULT, NULL,
                               carehare_test_store_result, &init);
  scripted_wait_reached (srv);
  assert_close_stops_connect (conn, &init);
  g_assert_true (scripted_free (srv));
}

/* ---- #13: an operation that makes the broker close the connection --------- */

typedef struct {
  GAsyncResult *result;
  gboolean was_closed;   /* is-closed inside the callback */
} Observed;

static void
observe_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Observed *seen = user_data;

  seen->was_closed = carehare_connection_get_is_closed (CAREHARE_CONNECTION (source));
  seen->result = g_object_ref (result);
}

static void
test_operation_closes_connection (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("bad-type");
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  ClosedRecord rec = { 0 };
  Observed seen = { 0 };

  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  carehare_connection_exchange_declare_async (conn, name, "carehare-no-such-type",
                                              CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL, NULL,
                                              observe_cb, &seen);
  carehare_test_wait_for_result (&seen.result, 10000);
  g_assert_false (carehare_connection_exchange_declare_finish (conn, seen.result, &error));
  g_test_message ("declare: %s", error->message);
  /* The broker's own words, on the operation that caused them. */
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 503);
  g_assert_nonnull (strstr (error->message, "carehare-no-such-type"));
  /* The connection was closed before the callback ran. */
  g_assert_true (seen.was_closed);
  g_clear_error (&error);

  carehare_test_run_for (100);
  g_assert_cmpuint (rec.n_closed, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (rec.error), ==, 503);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 5000);
  g_assert_false (carehare_connection_close_finish (conn, closed, &error));
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 503);
  g_clear_object (&seen.result);
  g_clear_error (&rec.error);
}

/* ---- a worker thread that closes and drops its connection ----------------- */

/* Sockets this process has open. */
static guint
count_sockets (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  const char *name;
  guint n = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc/self/fd", name, NULL);
      g_autofree char *target = g_file_read_link (path, NULL);

      if (target != NULL && g_str_has_prefix (target, "socket:"))
        n++;
    }
  return n;
}

typedef struct {
  const char *uri;
  GMainContext *context;     /* the worker's, left behind */
  GAsyncResult *closed;      /* its close's result, once that context ran */
} Worker;

static gpointer
worker_thread (gpointer data)
{
  Worker *w = data;
  CarehareConnection *conn;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

  w->context = g_main_context_new ();
  g_main_context_push_thread_default (w->context);
  carehare_connection_new_async (w->uri, NULL, carehare_test_store_result, &result);
  while (result == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (w->context, TRUE);
  g_assert_nonnull (result);
  conn = carehare_connection_new_finish (result, &error);
  g_assert_no_error (error);
  /* Closes, drops its reference and ends without iterating until the
   * close completed: the socket must not outlive it. */
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &w->closed);
  g_object_unref (conn);
  g_main_context_pop_thread_default (w->context);
  return NULL;
}

static void
test_worker_thread_drops_connection (void)
{
  const char *uris[] = { carehare_test_amqp_uri (), carehare_test_amqps_uri (),
                         carehare_test_amqp_uri () };
  guint before = count_sockets ();

  for (guint i = 0; i < G_N_ELEMENTS (uris); i++)
    {
      Worker w = { .uri = uris[i] };
      g_autoptr(GObject) conn = NULL;
      g_autoptr(GError) error = NULL;

      g_thread_join (g_thread_new ("worker", worker_thread, &w));
      g_assert_cmpuint (count_sockets (), ==, before);

      /* What is left is the close's completion, queued on the thread's
       * context: run it, so that nothing leaks. We closed it. */
      g_assert_null (w.closed);
      g_assert_true (g_main_context_acquire (w.context));
      while (g_main_context_iteration (w.context, FALSE))
        ;
      g_main_context_release (w.context);
      g_assert_nonnull (w.closed);
      conn = g_async_result_get_source_object (w.closed);
      g_assert_true (carehare_connection_close_finish (CAREHARE_CONNECTION (conn), w.closed, &error));
      g_assert_no_error (error);
      g_clear_object (&w.closed);
      g_main_context_unref (w.context);
    }
}

/* ---- calls from another main context -------------------------------------- */

/* A call made with another main context thread-default runs; its callback
 * runs on that context, never on the connection's. */
static void
test_other_context_callback (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GMainContext) other = g_main_context_new ();
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GAsyncResult) started = NULL;
  g_autoptr(GAsyncResult) published = NULL;
  g_autoptr(GAsyncResult) next = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("other", 5);
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, 5000);
  queue = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_no_error (error);
  carehare_connection_acking_consumer_async (conn, queue, 0, 1, NULL,
                                             carehare_test_store_result, &started);
  carehare_test_wait_for_result (&started, 5000);
  consumer = carehare_connection_acking_consumer_finish (conn, started, &error);
  g_assert_no_error (error);

  g_main_context_push_thread_default (other);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &published);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &next);
  g_main_context_pop_thread_default (other);

  /* The connection's context does the work; the results wait on the other one. */
  while (!g_main_context_pending (other))
    g_main_context_iteration (NULL, TRUE);
  g_assert_null (published);
  g_assert_null (next);
  while (published == NULL || next == NULL)
    {
      g_main_context_iteration (NULL, FALSE);
      g_main_context_iteration (other, FALSE);
    }
  g_assert_true (carehare_connection_publish_finish (conn, published, &error));
  g_assert_no_error (error);
  delivery = carehare_consumer_next_delivery_finish (consumer, next, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, 5000);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/lifecycle/close/peer-stops-reading", test_close_peer_stops_reading);
  g_test_add_func ("/lifecycle/close/heartbeat-monitor-peer-stops-reading",
                   test_close_after_heartbeat_monitor_peer_stops_reading);
  g_test_add_func ("/lifecycle/close/cancelled", test_close_cancelled);
  g_test_add_func ("/lifecycle/close/already-cancelled", test_close_already_cancelled);
  g_test_add_func ("/lifecycle/heartbeat/stalled-loop", test_heartbeat_after_stalled_loop);
  g_test_add_func ("/lifecycle/connect/close-before-init", test_close_before_init);
  g_test_add_func ("/lifecycle/connect/close-right-after-init", test_close_right_after_init);
  g_test_add_func ("/lifecycle/connect/close-during-amqp-handshake",
                   test_close_during_amqp_handshake);
  g_test_add_func ("/lifecycle/connect/close-during-tls-handshake",
                   test_close_during_tls_handshake);
  g_test_add_func ("/lifecycle/server-close/operation-closes-connection",
                   test_operation_closes_connection);
  g_test_add_func ("/lifecycle/threads/worker-drops-connection",
                   test_worker_thread_drops_connection);
  g_test_add_func ("/lifecycle/threads/other-context-callback", test_other_context_callback);

  return g_test_run ();
}
