/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hostile or broken servers: a scripted fake broker on a real loopback
 * socket completes the handshake, answers the client's channel.open,
 * basic.qos, basic.consume and confirm.select, and once a consumer, a
 * publish and a queue.declare are pending sends bytes no broker should
 * send. The library must fail every pending operation, report a clear error,
 * answer with Connection.Close and the fitting reply code while the socket
 * is writable (the fake server reads it and the test checks the code), and
 * neither crash, hang nor leak (the sanitizer build runs this too).
 */
#include "carehare-test-util.h"

#include "carehare-wire.h"
#include "loopback-server.h"

#include <string.h>

#define TIMEOUT_MS 10000
#define CONSUMER_TAG "ctag-1"

typedef enum {
  HOSTILE_BAD_FRAME_END,
  HOSTILE_OVERSIZED_FRAME,
  HOSTILE_UNKNOWN_FRAME_TYPE,
  HOSTILE_UNOPENED_CHANNEL,
  HOSTILE_BODY_LONGER_THAN_DECLARED,
  HOSTILE_HUGE_BODY_SIZE,
  HOSTILE_DEEP_TABLE,
  HOSTILE_UNKNOWN_CONSUMER,
  HOSTILE_UNKNOWN_DELIVERY_TAG,
  HOSTILE_GARBAGE_HEADER,     /* instead of connection.start */
  HOSTILE_SILENT,             /* nothing after the protocol header */
} Hostility;

typedef struct {
  LoopbackServer *server;
  guint16 port;
  Hostility hostility;

  GMutex lock;
  GCond cond;
  gboolean done;            /* the server thread finished with the connection */
  gint close_code;          /* reply code of the client's Connection.Close; -1: none came */
  char *close_text;         /* owned */
  gboolean sent_hostile;
} HostileServer;

/* ---- the fake server (runs in a GThreadedSocketService thread) ----------- */

static void
put_be16 (GByteArray *out,
          guint16     v)
{
  guint8 b[2] = { v >> 8, v & 0xff };

  g_byte_array_append (out, b, 2);
}

static void
put_be32 (GByteArray *out,
          guint32     v)
{
  guint8 b[4] = { v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff };

  g_byte_array_append (out, b, 4);
}

static void
put_be64 (GByteArray *out,
          guint64     v)
{
  put_be32 (out, v >> 32);
  put_be32 (out, v & 0xffffffff);
}

static void
append_method (GByteArray           *out,
               guint16               channel,
               const CarehareMethod *method)
{
  g_assert_true (carehare_wire_append_method_frame (out, channel, method, NULL));
}

static void
append_deliver (GByteArray *out,
                guint16     channel,
                const char *consumer_tag)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_BASIC_DELIVER };

  m.basic_deliver.consumer_tag = (char *) consumer_tag;
  m.basic_deliver.delivery_tag = 1;
  m.basic_deliver.exchange = (char *) "";
  m.basic_deliver.routing_key = (char *) "q";
  append_method (out, channel, &m);
}

/* A content header whose headers table nests @depth tables, built by hand:
 * the encoder refuses to produce one. */
static void
append_deep_header (GByteArray *out,
                    guint16     channel,
                    guint       depth)
{
  g_autoptr(GByteArray) table = g_byte_array_new ();
  g_autoptr(GByteArray) payload = g_byte_array_new ();
  static const guint8 entry[] = { 1, 'k', 'F' };

  put_be32 (table, 0);  /* the innermost, empty table */
  for (guint i = 1; i < depth; i++)
    {
      g_autoptr(GByteArray) outer = g_byte_array_new ();

      put_be32 (outer, sizeof entry + table->len);
      g_byte_array_append (outer, entry, sizeof entry);
      g_byte_array_append (outer, table->data, table->len);
      g_byte_array_unref (table);
      table = g_steal_pointer (&outer);
    }

  put_be16 (payload, 60);       /* basic */
  put_be16 (payload, 0);        /* weight */
  put_be64 (payload, 0);        /* body size */
  put_be16 (payload, 1 << 13);  /* headers present */
  g_byte_array_append (payload, table->data, table->len);

  g_byte_array_append (out, (const guint8 *) "\x02", 1);
  put_be16 (out, channel);
  put_be32 (out, payload->len);
  g_byte_array_append (out, payload->data, payload->len);
  g_byte_array_append (out, (const guint8 *) "\xce", 1);
}

/* What the server sends once everything is pending. */
static GByteArray *
hostile_bytes (Hostility hostility,
               guint16   declare_channel,
               guint16   consumer_channel,
               guint16   publisher_channel)
{
  GByteArray *out = g_byte_array_new ();
  CarehareMethod m = { 0 };
  guint8 body[10] = { 0 };

  switch (hostility)
    {
    case HOSTILE_BAD_FRAME_END:
      m.id = CAREHARE_METHOD_QUEUE_DECLARE_OK;
      m.queue_declare_ok.queue = (char *) "q";
      append_method (out, declare_channel, &m);
      out->data[out->len - 1] = 0x00;
      break;
    case HOSTILE_OVERSIZED_FRAME:
      /* 1 MiB announced, frame_max is 128 KiB; a little payload follows. */
      g_byte_array_append (out, (const guint8 *) "\x01", 1);
      put_be16 (out, declare_channel);
      put_be32 (out, 1024 * 1024);
      g_byte_array_append (out, body, sizeof body);
      break;
    case HOSTILE_UNKNOWN_FRAME_TYPE:
      g_byte_array_append (out, (const guint8 *) "\x09\x00\x00\x00\x00\x00\x00\xce", 8);
      break;
    case HOSTILE_UNOPENED_CHANNEL:
      m.id = CAREHARE_METHOD_QUEUE_DECLARE_OK;
      m.queue_declare_ok.queue = (char *) "q";
      append_method (out, 12, &m);
      break;
    case HOSTILE_BODY_LONGER_THAN_DECLARED:
      append_deliver (out, consumer_channel, CONSUMER_TAG);
      g_assert_true (carehare_wire_append_header_frame (out, consumer_channel, 60, 5, NULL, NULL));
      carehare_wire_append_body_frame (out, consumer_channel, body, sizeof body);
      break;
    case HOSTILE_HUGE_BODY_SIZE:
      append_deliver (out, consumer_channel, CONSUMER_TAG);
      g_assert_true (carehare_wire_append_header_frame (out, consumer_channel, 60,
                                                        G_MAXINT64, NULL, NULL));
      carehare_wire_append_body_frame (out, consumer_channel, body, sizeof body);
      break;
    case HOSTILE_DEEP_TABLE:
      append_deliver (out, consumer_channel, CONSUMER_TAG);
      append_deep_header (out, consumer_channel, CAREHARE_WIRE_MAX_NESTING + 36);
      break;
    case HOSTILE_UNKNOWN_CONSUMER:
      append_deliver (out, consumer_channel, "ctag-nobody");
      g_assert_true (carehare_wire_append_header_frame (out, consumer_channel, 60, 1, NULL, NULL));
      carehare_wire_append_body_frame (out, consumer_channel, body, 1);
      break;
    case HOSTILE_UNKNOWN_DELIVERY_TAG:
      m.id = CAREHARE_METHOD_BASIC_ACK;
      m.basic_ack.delivery_tag = 999;
      append_method (out, publisher_channel, &m);
      break;
    case HOSTILE_GARBAGE_HEADER:
    case HOSTILE_SILENT:
    default:
      g_assert_not_reached ();
    }
  return out;
}

static gboolean
write_bytes (GOutputStream *out,
             const guint8  *data,
             gsize          len)
{
  return g_output_stream_write_all (out, data, len, NULL, NULL, NULL);
}

static gboolean
send_method (GOutputStream        *out,
             guint16               channel,
             const CarehareMethod *method)
{
  g_autoptr(GByteArray) frame = g_byte_array_new ();

  append_method (frame, channel, method);
  return write_bytes (out, frame->data, frame->len);
}

/* Reads one frame into @frame_out (a copy); FALSE on end of file. */
static gboolean
read_frame (GInputStream *in,
            GByteArray   *buf,
            guint8       *type,
            guint16      *channel,
            GByteArray   *payload)
{
  for (;;)
    {
      CarehareFrame frame;
      gssize n = carehare_frame_decode (buf->data, buf->len, 0, &frame, NULL);
      guint8 chunk[4096];
      gssize got;

      g_assert_cmpint (n, >=, 0);
      if (n > 0)
        {
          *type = frame.type;
          *channel = frame.channel;
          g_byte_array_set_size (payload, 0);
          if (frame.size > 0)
            g_byte_array_append (payload, frame.payload, frame.size);
          g_byte_array_remove_range (buf, 0, n);
          return TRUE;
        }
      got = g_input_stream_read (in, chunk, sizeof chunk, NULL, NULL);
      if (got <= 0)
        return FALSE;
      g_byte_array_append (buf, chunk, got);
    }
}

static void
server_finish (HostileServer *srv,
               gint           close_code,
               const char    *close_text)
{
  g_mutex_lock (&srv->lock);
  srv->close_code = close_code;
  srv->close_text = g_strdup (close_text);
  srv->done = TRUE;
  g_cond_broadcast (&srv->cond);
  g_mutex_unlock (&srv->lock);
}

/* Answers what a broker would answer, sends the hostile bytes once a
 * consumer, a publish and a queue.declare are pending, and records the
 * client's Connection.Close. */
static void
serve (HostileServer *srv,
       GInputStream  *in,
       GOutputStream *out)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GByteArray) payload = g_byte_array_new ();
  g_autoptr(GBytes) mechanisms = g_bytes_new_static ("PLAIN", 5);
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_START };
  guint16 declare_channel = 0, consumer_channel = 0, publisher_channel = 0;
  gboolean published = FALSE;
  guint8 header[8];
  gsize got = 0;

  if (!g_input_stream_read_all (in, header, sizeof header, &got, NULL, NULL) || got != 8)
    return;
  g_assert_cmpmem (header, 8, carehare_wire_protocol_header, 8);

  if (srv->hostility == HOSTILE_GARBAGE_HEADER)
    {
      guint8 garbage[64];

      memset (garbage, 0xff, sizeof garbage);
      write_bytes (out, garbage, sizeof garbage);
      srv->sent_hostile = TRUE;
    }
  else if (srv->hostility != HOSTILE_SILENT)
    {
      m.connection_start.version_minor = 9;
      m.connection_start.mechanisms = mechanisms;
      m.connection_start.locales = locales;
      send_method (out, 0, &m);
    }

  for (;;)
    {
      CarehareMethod method = { 0 };
      CarehareMethod reply = { 0 };
      guint8 type;
      guint16 channel;

      if (!read_frame (in, buf, &type, &channel, payload))
        break;
      if (type != CAREHARE_FRAME_METHOD)
        continue;
      g_assert_true (carehare_method_decode (payload->data, payload->len, &method, NULL));

      switch (method.id)
        {
        case CAREHARE_METHOD_CONNECTION_START_OK:
          reply.id = CAREHARE_METHOD_CONNECTION_TUNE;
          reply.connection_tune.channel_max = 16;
          reply.connection_tune.frame_max = 131072;
          reply.connection_tune.heartbeat = 0;
          send_method (out, 0, &reply);
          break;
        case CAREHARE_METHOD_CONNECTION_OPEN:
          reply.id = CAREHARE_METHOD_CONNECTION_OPEN_OK;
          send_method (out, 0, &reply);
          break;
        case CAREHARE_METHOD_CHANNEL_OPEN:
          reply.id = CAREHARE_METHOD_CHANNEL_OPEN_OK;
          send_method (out, channel, &reply);
          break;
        case CAREHARE_METHOD_BASIC_QOS:
          reply.id = CAREHARE_METHOD_BASIC_QOS_OK;
          send_method (out, channel, &reply);
          break;
        case CAREHARE_METHOD_BASIC_CONSUME:
          consumer_channel = channel;
          reply.id = CAREHARE_METHOD_BASIC_CONSUME_OK;
          reply.basic_consume_ok.consumer_tag = (char *) CONSUMER_TAG;
          send_method (out, channel, &reply);
          break;
        case CAREHARE_METHOD_CONFIRM_SELECT:
          publisher_channel = channel;
          reply.id = CAREHARE_METHOD_CONFIRM_SELECT_OK;
          send_method (out, channel, &reply);
          break;
        case CAREHARE_METHOD_BASIC_PUBLISH:
          published = TRUE;
          break;
        case CAREHARE_METHOD_QUEUE_DECLARE:
          declare_channel = channel;
          break;
        case CAREHARE_METHOD_CHANNEL_CLOSE:
          reply.id = CAREHARE_METHOD_CHANNEL_CLOSE_OK;
          send_method (out, channel, &reply);
          break;
        case CAREHARE_METHOD_CONNECTION_CLOSE:
          reply.id = CAREHARE_METHOD_CONNECTION_CLOSE_OK;
          send_method (out, 0, &reply);
          server_finish (srv, method.connection_close.reply_code,
                         method.connection_close.reply_text);
          carehare_method_clear (&method);
          return;
        default:
          break;
        }
      carehare_method_clear (&method);

      if (!srv->sent_hostile && declare_channel != 0 && consumer_channel != 0 && published)
        {
          g_autoptr(GByteArray) bytes = hostile_bytes (srv->hostility, declare_channel,
                                                       consumer_channel, publisher_channel);

          write_bytes (out, bytes->data, bytes->len);
          srv->sent_hostile = TRUE;
        }
    }
}

static void
hostile_serve (GSocketConnection *connection,
               gpointer           user_data)
{
  HostileServer *srv = user_data;

  serve (srv, g_io_stream_get_input_stream (G_IO_STREAM (connection)),
         g_io_stream_get_output_stream (G_IO_STREAM (connection)));
  g_mutex_lock (&srv->lock);
  if (!srv->done)
    {
      srv->close_code = -1;
      srv->done = TRUE;
      g_cond_broadcast (&srv->cond);
    }
  g_mutex_unlock (&srv->lock);
}

static HostileServer *
hostile_server_new (Hostility hostility)
{
  HostileServer *srv = g_new0 (HostileServer, 1);

  g_mutex_init (&srv->lock);
  g_cond_init (&srv->cond);
  srv->hostility = hostility;
  srv->close_code = -1;
  srv->server = loopback_server_new (hostile_serve, srv);
  srv->port = loopback_server_get_port (srv->server);
  return srv;
}

/* Waits (iterating the main context, so the client can close its socket)
 * until the server thread is done with the connection. */
static void
hostile_server_wait (HostileServer *srv)
{
  gint64 deadline = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;

  for (;;)
    {
      gboolean done;

      g_mutex_lock (&srv->lock);
      done = srv->done;
      g_mutex_unlock (&srv->lock);
      if (done)
        return;
      if (g_get_monotonic_time () > deadline)
        g_error ("the fake server never saw the client close the connection");
      g_main_context_iteration (NULL, FALSE);
      g_usleep (5000);
    }
}

static void
hostile_server_free (HostileServer *srv)
{
  hostile_server_wait (srv);
  loopback_server_free (srv->server);
  g_mutex_clear (&srv->lock);
  g_cond_clear (&srv->cond);
  g_free (srv->close_text);
  g_free (srv);
}

/* ---- the client side ----------------------------------------------------- */

typedef struct {
  guint n_closed;
  GError *error;
} ClosedRecord;

static void
closed_cb (GObject      *object,
           const GError *error,
           gpointer      user_data)
{
  ClosedRecord *rec = user_data;

  rec->n_closed++;
  g_clear_error (&rec->error);
  if (error != NULL)
    rec->error = g_error_copy (error);
}

typedef struct {
  Hostility hostility;
  guint16 reply_code;         /* of the client's Connection.Close */
  const char *in_message;     /* a piece of the error message */
} Case;

static void
run_hostile_case (gconstpointer data)
{
  const Case *c = data;
  HostileServer *srv = hostile_server_new (c->hostility);
  g_autofree char *uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/", srv->port);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) started = NULL;
  g_autoptr(GAsyncResult) next = NULL;
  g_autoptr(GAsyncResult) published = NULL;
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("hostile", 7);
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  ClosedRecord rec = { 0 };

  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  carehare_connection_acking_consumer_async (conn, "q", 0, 10, NULL,
                                             carehare_test_store_result, &started);
  carehare_test_wait_for_result (&started, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, started, &error);
  g_assert_no_error (error);

  /* Three operations pending when the bad bytes arrive. */
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &next);
  carehare_connection_publish_async (conn, "", "q", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &published);
  carehare_connection_queue_declare_async (conn, "q", CAREHARE_QUEUE_FLAGS_NONE, NULL, NULL,
                                           carehare_test_store_result, &declared);

  carehare_test_wait_for_result (&declared, TIMEOUT_MS);
  carehare_test_wait_for_result (&published, TIMEOUT_MS);
  carehare_test_wait_for_result (&next, TIMEOUT_MS);

  name = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_clear_error (&error);
  g_assert_false (carehare_connection_publish_finish (conn, published, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_clear_error (&error);
  delivery = carehare_consumer_next_delivery_finish (consumer, next, &error);
  g_assert_null (delivery);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_clear_error (&error);

  g_assert_cmpuint (rec.n_closed, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  g_test_message ("closed: %s", rec.error->message);
  g_assert_nonnull (strstr (rec.error->message, c->in_message));

  /* close reports the cause, and completes: the socket is closed. */
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_false (carehare_connection_close_finish (conn, closed, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);

  hostile_server_wait (srv);
  g_test_message ("the client closed with %d: %s", srv->close_code,
                  srv->close_text != NULL ? srv->close_text : "(none)");
  g_assert_true (srv->sent_hostile);
  g_assert_cmpint (srv->close_code, ==, c->reply_code);
  /* The reply text says what was wrong, for the broker's log. */
  g_assert_nonnull (srv->close_text);
  g_assert_null (strstr (srv->close_text, "Bad bytes from server"));
  g_assert_nonnull (strstr (srv->close_text, c->in_message));
  g_clear_error (&rec.error);
  hostile_server_free (srv);
}

static void
test_garbage_instead_of_protocol_header (void)
{
  HostileServer *srv = hostile_server_new (HOSTILE_GARBAGE_HEADER);
  g_autofree char *uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/", srv->port);
  g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "AMQP 0-9-1"));
  /* No AMQP session to close: the client just closes the socket. */
  hostile_server_wait (srv);
  g_assert_cmpint (srv->close_code, ==, -1);
  hostile_server_free (srv);
}

static void
test_silence_after_protocol_header (void)
{
  HostileServer *srv = hostile_server_new (HOSTILE_SILENT);
  g_autofree char *uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/?connection_timeout=500",
                                          srv->port);
  gint64 start = g_get_monotonic_time ();
  g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);
  gint64 elapsed_ms = (g_get_monotonic_time () - start) / 1000;

  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_test_message ("%s after %" G_GINT64_FORMAT " ms", error->message, elapsed_ms);
  g_assert_cmpint (elapsed_ms, >=, 450);
  g_assert_cmpint (elapsed_ms, <, 3000);
  /* The client closed its socket: the server reads end of file. */
  hostile_server_wait (srv);
  g_assert_cmpint (srv->close_code, ==, -1);
  hostile_server_free (srv);
}

static const Case cases[] = {
  { HOSTILE_BAD_FRAME_END, 501, "frame" },
  { HOSTILE_OVERSIZED_FRAME, 501, "frame" },
  { HOSTILE_UNKNOWN_FRAME_TYPE, 501, "frame type" },
  { HOSTILE_UNOPENED_CHANNEL, 504, "channel 12" },
  { HOSTILE_BODY_LONGER_THAN_DECLARED, 505, "longer than" },
  { HOSTILE_HUGE_BODY_SIZE, 501, "9223372036854775807" },
  { HOSTILE_DEEP_TABLE, 502, "nest" },
  { HOSTILE_UNKNOWN_CONSUMER, 505, "ctag-nobody" },
  { HOSTILE_UNKNOWN_DELIVERY_TAG, 503, "999" },
};

static const char *const case_paths[] = {
  "/hostile/bad-frame-end",
  "/hostile/oversized-frame",
  "/hostile/unknown-frame-type",
  "/hostile/method-on-unopened-channel",
  "/hostile/body-longer-than-declared",
  "/hostile/body-size-near-2^63",
  "/hostile/table-nesting-past-bound",
  "/hostile/delivery-for-unknown-consumer",
  "/hostile/ack-for-unknown-delivery-tag",
};

int
main (int argc, char *argv[])
{
  G_STATIC_ASSERT (G_N_ELEMENTS (cases) == G_N_ELEMENTS (case_paths));

  g_test_init (&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    g_test_add_data_func (case_paths[i], &cases[i], run_hostile_case);
  g_test_add_func ("/hostile/garbage-instead-of-protocol-header",
                   test_garbage_instead_of_protocol_header);
  g_test_add_func ("/hostile/silence-after-protocol-header", test_silence_after_protocol_header);

  return g_test_run ();
}
