/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Byte-level tests of the sans-I/O connection state machine.
 *
 * A fake server encodes its frames with the wire codec and feeds them to
 * carehare_protocol_receive(); what the client writes is taken with
 * carehare_protocol_take_output() and decoded again, so every test asserts
 * the exact methods, channels and arguments that would cross the socket.
 * Time is a number the test advances by hand.
 */
#include <string.h>

#include "protocol-fixture.h"

/* ======================================================================== */
/* handshake                                                                 */
/* ======================================================================== */

static void
test_handshake_header (Fixture       *f,
                       gconstpointer  data)
{
  g_assert_cmpmem (carehare_wire_protocol_header, 8, "AMQP\0\0\x09\x01", 8);
  start (f);
  /* Nothing more until the server speaks; no timers before Tune. */
  assert_no_output (f);
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, G_MAXINT64);
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now + 3600 * SEC), ==, G_MAXINT64);
  assert_no_output (f);
}

static void
check_client_properties (GVariant   *props,
                         const char *connection_name)
{
  g_autoptr(GVariant) caps = NULL;
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
  const char *s;

  g_assert_nonnull (props);
  g_assert_true (g_variant_is_of_type (props, G_VARIANT_TYPE_VARDICT));
  g_assert_true (g_variant_lookup (props, "product", "&s", &s));
  g_assert_cmpstr (s, ==, "carehare-glib-test");
  g_assert_true (g_variant_lookup (props, "version", "&s", &s));
  g_assert_cmpstr (s, ==, "0.1.0");
  g_assert_true (g_variant_lookup (props, "platform", "&s", &s));
  g_assert_cmpstr (s, ==, "GLib test");

  caps = g_variant_lookup_value (props, "capabilities", G_VARIANT_TYPE_VARDICT);
  g_assert_nonnull (caps);
  g_assert_cmpuint (g_variant_n_children (caps), ==, G_N_ELEMENTS (capabilities));
  for (gsize i = 0; i < G_N_ELEMENTS (capabilities); i++)
    {
      gboolean value = FALSE;

      if (!g_variant_lookup (caps, capabilities[i], "b", &value))
        g_error ("capability %s missing", capabilities[i]);
      g_assert_true (value);
    }

  if (connection_name != NULL)
    {
      g_assert_true (g_variant_lookup (props, "connection_name", "&s", &s));
      g_assert_cmpstr (s, ==, connection_name);
    }
  else
    g_assert_false (g_variant_lookup (props, "connection_name", "&s", &s));
}

static void
test_handshake_start_ok_plain (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  const CarehareConnectionStartOk *ok;
  GVariant *server_props;
  const char *s;

  start (f);
  g_assert_true (server_start (f));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_START_OK);
  ok = &m->connection_start_ok;
  g_assert_cmpstr (ok->mechanism, ==, "PLAIN");
  g_assert_cmpstr (ok->locale, ==, "en_US");
  g_assert_nonnull (ok->response);
  g_assert_cmpmem (g_bytes_get_data (ok->response, NULL), g_bytes_get_size (ok->response),
                   "\0guest\0guest", 12);
  check_client_properties (ok->client_properties, NULL);

  /* The server's properties are kept. */
  server_props = carehare_protocol_get_server_properties (f->p);
  g_assert_nonnull (server_props);
  g_assert_true (g_variant_lookup (server_props, "product", "&s", &s));
  g_assert_cmpstr (s, ==, "RabbitMQ");
  assert_pending (f->handshake);
}

static void
test_handshake_start_ok_credentials (Fixture       *f,
                                     gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;

  f->config.username = "alice";
  f->config.password = "s3cr\xc3\xa9t";
  f->config.connection_name = "orders worker";
  start (f);
  g_assert_true (server_start_full (f, 0, 9, "PLAIN"));
  sent = take_sent (f);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_START_OK);
  g_assert_cmpstr (m->connection_start_ok.mechanism, ==, "PLAIN");
  g_assert_cmpmem (g_bytes_get_data (m->connection_start_ok.response, NULL),
                   g_bytes_get_size (m->connection_start_ok.response),
                   "\0alice\0s3cr\xc3\xa9t", 14);
  check_client_properties (m->connection_start_ok.client_properties, "orders worker");
}

static void
test_handshake_start_ok_external (Fixture       *f,
                                  gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;

  f->config.mechanism = CAREHARE_AUTH_MECHANISM_EXTERNAL;
  start (f);
  g_assert_true (server_start_full (f, 0, 9, "PLAIN AMQPLAIN EXTERNAL"));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_START_OK);
  g_assert_cmpstr (m->connection_start_ok.mechanism, ==, "EXTERNAL");
  g_assert_cmpuint (m->connection_start_ok.response != NULL
                    ? g_bytes_get_size (m->connection_start_ok.response) : 0, ==, 0);
  check_client_properties (m->connection_start_ok.client_properties, NULL);
}

typedef struct {
  CarehareAuthMechanism mechanism;
  const char *offered;
  const char *message;
} MechanismCase;

static const MechanismCase mechanism_plain_missing = {
  CAREHARE_AUTH_MECHANISM_PLAIN, "AMQPLAIN PLAINX", "PLAIN",
};
static const MechanismCase mechanism_external_missing = {
  CAREHARE_AUTH_MECHANISM_EXTERNAL, "PLAIN AMQPLAIN", "EXTERNAL",
};

static void
test_handshake_mechanism_not_offered (Fixture       *f,
                                      gconstpointer  data)
{
  const MechanismCase *mc = data;

  f->config.mechanism = mc->mechanism;
  start (f);
  g_assert_false (server_start_full (f, 0, 9, mc->offered));
  g_assert_cmpuint (f->handshake->n_calls, ==, 1);
  g_assert_nonnull (f->handshake->error);
  g_assert_true (f->handshake->error->domain == CAREHARE_ERROR);
  assert_message_contains (f->handshake->error, mc->message);
  assert_message_contains (f->handshake->error, "mechanism");
  /* What the server offers is named, so the user can fix the config. */
  assert_message_contains (f->handshake->error, mc->offered);
  /* No Start-Ok went out. */
  assert_no_output (f);
  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_handshake_bad_version (Fixture       *f,
                            gconstpointer  data)
{
  start (f);
  g_assert_false (server_start_full (f, 0, 8, "PLAIN"));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->handshake->error, "0-8");
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
}

typedef struct {
  gint want_channel_max;
  gint64 want_frame_max;
  gint want_heartbeat;
  guint16 server_channel_max;
  guint32 server_frame_max;
  guint16 server_heartbeat;
  guint16 channel_max;
  guint32 frame_max;
  guint16 heartbeat;
} TuneCase;

static const TuneCase tune_cases[] = {
  /* client takes what the server offers when it is no more than its own */
  { -1, -1, -1, 2047, 131072, 60, 2047, 131072, 60 },
  /* server 0: no limit on channels; frame_max and heartbeat the client's */
  { -1, -1, -1, 0, 0, 0, 65535, 131072, 60 },
  { 100, 8192, 30, 0, 0, 0, 100, 8192, 30 },
  { 0, -1, -1, 0, 0, 0, 65535, 131072, 60 },
  /* client lowers */
  { 100, 8192, 10, 2047, 131072, 60, 100, 8192, 10 },
  /* client never raises */
  { 5000, 1048576, 600, 2047, 131072, 60, 2047, 131072, 60 },
  /* channel_max 0 from the client means "no limit" */
  { 0, -1, -1, 2047, 131072, 60, 2047, 131072, 60 },
  /* frame_max: the server never decides alone how much a frame may make us
   * buffer: the lower non-zero of both, the client's default 131072 */
  { -1, -1, -1, 2047, 0xFFFFFFFF, 60, 2047, 131072, 60 },
  { -1, 1048576, -1, 2047, 0xFFFFFFFF, 60, 2047, 1048576, 60 },
  { -1, 1048576, -1, 2047, 0, 60, 2047, 1048576, 60 },
  { -1, -1, -1, 2047, 1048576, 60, 2047, 131072, 60 },
  /* a server below frame_min_size is raised to it */
  { -1, -1, -1, 2047, 1024, 60, 2047, 4096, 60 },
  /* heartbeat, RabbitMQ's rule: 0 from one side takes the other's... */
  { -1, -1, 0, 2047, 131072, 60, 2047, 131072, 60 },
  { -1, -1, 5, 2047, 131072, 0, 2047, 131072, 5 },
  /* ...the client asks for 60 unless told otherwise... */
  { -1, -1, -1, 2047, 131072, 0, 2047, 131072, 60 },
  /* ...off only when both say 0 */
  { -1, -1, 0, 0, 0, 0, 65535, 131072, 0 },
  { -1, -1, 0, 2047, 131072, 0, 2047, 131072, 0 },
  /* otherwise the smaller */
  { -1, -1, 5, 2047, 131072, 60, 2047, 131072, 5 },
  { -1, -1, 120, 2047, 131072, 60, 2047, 131072, 60 },
  { -1, -1, -1, 2047, 131072, 600, 2047, 131072, 60 },
};

static void
test_handshake_tune_negotiation (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (tune_cases); i++)
    {
      const TuneCase *tc = &tune_cases[i];
      Fixture fixture;
      Fixture *f = &fixture;
      g_autoptr(GPtrArray) sent = NULL;
      const CarehareMethod *m;

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      fixture_setup (f, NULL);
      f->config.channel_max = tc->want_channel_max;
      f->config.frame_max = tc->want_frame_max;
      f->config.heartbeat = tc->want_heartbeat;
      start (f);
      g_assert_true (server_start (f));
      g_ptr_array_unref (take_sent (f));
      g_assert_true (server_tune (f, tc->server_channel_max, tc->server_frame_max,
                                  tc->server_heartbeat));
      sent = take_sent (f);
      g_assert_cmpuint (sent->len, ==, 2);
      m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_TUNE_OK);
      g_assert_cmpuint (m->connection_tune_ok.channel_max, ==, tc->channel_max);
      g_assert_cmpuint (m->connection_tune_ok.frame_max, ==, tc->frame_max);
      g_assert_cmpuint (m->connection_tune_ok.heartbeat, ==, tc->heartbeat);
      m = sent_method (sent, 1, 0, CAREHARE_METHOD_CONNECTION_OPEN);
      g_assert_cmpstr (m->connection_open.virtual_host, ==, "/");

      g_assert_true (server_open_ok (f));
      assert_ok (f->handshake);
      g_assert_cmpuint (carehare_protocol_get_channel_max (f->p), ==, tc->channel_max);
      g_assert_cmpuint (carehare_protocol_get_frame_max (f->p), ==, tc->frame_max);
      g_assert_cmpuint (carehare_protocol_get_heartbeat (f->p), ==, tc->heartbeat);
      fixture_teardown (f, NULL);
    }
}

/* A server offering frame_max 0xFFFFFFFF does not get to make us buffer a
 * 4 GiB frame: the client's 131072 is negotiated, and a header announcing
 * more is refused at once, before any of its payload is buffered. */
static void
test_handshake_huge_frame_max_offer (Fixture       *f,
                                     gconstpointer  data)
{
  static const guint8 header[] = { 0x01, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xF0 };

  start (f);
  g_assert_true (server_start (f));
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_tune (f, 2047, 0xFFFFFFFF, 60));
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_open_ok (f));
  assert_ok (f->handshake);
  g_assert_cmpuint (carehare_protocol_get_frame_max (f->p), ==, 131072);

  g_assert_false (feed (f, header, sizeof header));
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  g_assert_nonnull (strstr (f->finish_error->message, "131072"));
}

static void
test_handshake_tune_ok_bytes (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(GBytes) bytes = NULL;
  static const guint8 expected[] = {
    /* connection.tune-ok: channel_max 2047, frame_max 131072, heartbeat 60 */
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0C,
    0x00, 0x0A, 0x00, 0x1F,
    0x07, 0xFF, 0x00, 0x02, 0x00, 0x00, 0x00, 0x3C,
    0xCE,
    /* connection.open: vhost "myvhost", capabilities "", insist false */
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0E,
    0x00, 0x0A, 0x00, 0x28,
    0x07, 'm', 'y', 'v', 'h', 'o', 's', 't', 0x00, 0x00,
    0xCE,
  };

  f->config.vhost = "myvhost";
  start (f);
  g_assert_true (server_start (f));
  g_bytes_unref (take_bytes (f));
  g_assert_true (server_tune (f, 2047, 131072, 60));
  bytes = take_bytes (f);
  assert_bytes (bytes, expected, sizeof expected);
}

static void
test_handshake_open_ok (Fixture       *f,
                        gconstpointer  data)
{
  handshake (f, 2047, 131072, 60);
  g_assert_cmpuint (f->n_finished, ==, 0);

  /* A second Open-Ok is a protocol error, and the handshake op does not
   * complete a second time. */
  g_assert_false (server_open_ok (f));
  g_assert_cmpuint (f->handshake->n_calls, ==, 1);
  g_assert_no_error (f->handshake->error);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
}

typedef struct {
  guint step;               /* 0: after Start-Ok, 1: after Open */
  guint16 reply_code;
  const char *reply_text;
  const char *hint;         /* what the message tells the person to fix */
} ServerCloseCase;

static const ServerCloseCase close_access_refused = {
  0, 403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
          "For details see the broker logfile.",
  "(check the user name and password in the URI)",
};
static const ServerCloseCase close_not_allowed = {
  1, 530, "NOT_ALLOWED - vhost nope not found",
  "(check that the URI's virtual host exists and that the user may use it)",
};

static void
test_handshake_server_close (Fixture       *f,
                             gconstpointer  data)
{
  const ServerCloseCase *sc = data;
  g_autoptr(GPtrArray) sent = NULL;

  start (f);
  g_assert_true (server_start (f));
  g_ptr_array_unref (take_sent (f));
  if (sc->step == 1)
    {
      g_assert_true (server_tune (f, 2047, 131072, 60));
      g_ptr_array_unref (take_sent (f));
    }

  g_assert_false (server_close (f, sc->reply_code, sc->reply_text));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (f->handshake->error), ==, sc->reply_code);
  assert_message_contains (f->handshake->error, sc->reply_text);
  assert_message_contains (f->handshake->error, sc->hint);
  g_assert_false (carehare_error_is_transient (f->handshake->error));

  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE_OK);

  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (carehare_protocol_get_finish_error (f->p)),
                    ==, sc->reply_code);
}

static void
test_handshake_rejected_header (Fixture       *f,
                                gconstpointer  data)
{
  start (f);
  g_assert_false (feed (f, (const guint8 *) "AMQP\0\0\x09\x00", 8));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->handshake->error, "AMQP 0-9-1");
  assert_message_contains (f->handshake->error, "0-0-9-0");
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_handshake_garbage (Fixture       *f,
                        gconstpointer  data)
{
  static const char http[] = "HTTP/1.1 400 Bad Request\r\n\r\n";

  start (f);
  g_assert_false (feed (f, (const guint8 *) http, strlen (http)));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->handshake->error, "not an AMQP 0-9-1 server");
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
}

/* A TLS listener answers our protocol header with a TLS record: an alert
 * (0x15, RabbitMQ's) or a handshake (0x16). The first byte is enough. */
static void
test_handshake_tls_record (Fixture       *f,
                           gconstpointer  data)
{
  const guint8 *record = data;

  start (f);
  g_assert_false (feed (f, record, 7));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->handshake->error, "this port speaks TLS");
  assert_message_contains (f->handshake->error, "use amqps://");
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_false (carehare_error_is_transient (f->handshake->error));
}

static const guint8 tls_alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46 };
static const guint8 tls_handshake[] = { 0x16, 0x03, 0x03, 0x00, 0x31, 0x02, 0x00 };

/* A frame type byte of 0x15 after the handshake is an ordinary bad frame:
 * only the reply to the protocol header is read as TLS. */
static void
test_handshake_tls_byte_later (Fixture       *f,
                               gconstpointer  data)
{
  start (f);
  g_assert_true (feed (f, (const guint8 *) "\x01", 1));
  g_assert_false (feed (f, tls_alert, sizeof tls_alert));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  g_assert_null (strstr (f->handshake->error->message, "TLS"));
}

static void
test_handshake_garbage_a (Fixture       *f,
                          gconstpointer  data)
{
  /* Starts like a protocol header but is not one. */
  start (f);
  g_assert_true (feed (f, (const guint8 *) "ABC", 3));
  assert_pending (f->handshake);
  g_assert_false (feed (f, (const guint8 *) "DEFGH", 5));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->handshake->error, "not an AMQP 0-9-1 server");
}

static void
test_handshake_abort (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) eof = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                               "Connection reset by peer");

  start (f);
  g_assert_true (server_start (f));
  g_ptr_array_unref (take_sent (f));
  carehare_protocol_abort (f->p, eof);
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (f->handshake->error, "handshake");
  assert_message_contains (f->handshake->error, "Connection reset by peer");
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_no_output (f);

  /* Aborting again, receiving, ticking: nothing happens. */
  carehare_protocol_abort (f->p, eof);
  g_assert_false (server_tune (f, 2047, 131072, 60));
  carehare_protocol_tick (f->p, f->now + 3600 * SEC);
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_handshake_abort_before_start (Fixture       *f,
                                   gconstpointer  data)
{
  g_autoptr(GError) eof = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                               "end of file");

  start (f);
  carehare_protocol_abort (f->p, eof);
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (f->handshake->error, "handshake");
}

static void
test_handshake_cancel (Fixture       *f,
                       gconstpointer  data)
{
  CarehareProtocolOp *op;

  start (f);
  g_assert_true (server_start (f));
  g_assert_true (server_tune (f, 2047, 131072, 60));
  g_ptr_array_unref (take_sent (f));

  op = f->handshake->op;
  carehare_protocol_cancel (f->p, op);
  assert_failed (f->handshake, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  /* Nobody waits for this connection any more: it is over, and a late
   * Open-Ok must not try to complete the cancelled handshake. */
  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_null (f->finish_error);
  g_assert_false (server_open_ok (f));
  g_assert_cmpuint (f->handshake->n_calls, ==, 1);
}

static void
test_handshake_secure (Fixture       *f,
                       gconstpointer  data)
{
  CarehareMethod secure = { .id = CAREHARE_METHOD_CONNECTION_SECURE };
  g_autoptr(GBytes) challenge = g_bytes_new_static ("x", 1);

  /* Neither PLAIN nor EXTERNAL has a challenge step. */
  start (f);
  g_assert_true (server_start (f));
  g_ptr_array_unref (take_sent (f));
  secure.connection_secure.challenge = challenge;
  g_assert_false (server_method (f, 0, &secure));
  g_assert_cmpuint (f->handshake->n_calls, ==, 1);
  g_assert_nonnull (f->handshake->error);
  assert_message_contains (f->handshake->error, "connection.secure");
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_handshake_start_twice (Fixture       *f,
                            gconstpointer  data)
{
  Completion *c;

  connect_default (f);
  /* Starting an already started connection fails that op only. */
  c = completion_new (f);
  g_assert_null (carehare_protocol_start (f->p, f->now, op_done_cb, c));
  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_handshake_channel_method (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;

  start (f);
  g_assert_true (server_start (f));
  g_assert_true (server_tune (f, 2047, 131072, 60));
  g_ptr_array_unref (take_sent (f));
  g_assert_false (server_declare_ok (f, 1, "q"));
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->handshake->error, "during the handshake");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  g_assert_cmpuint (m->connection_close.reply_code, ==, 504);
}

/* One run of a connection's life; returns a summary of what the client
 * reported, so that a run fed byte by byte can be compared with one fed
 * whole. The transcript of written bytes is in f->transcript. */
static char *
run_scenario (gboolean split)
{
  Fixture fixture;
  Fixture *f = &fixture;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  GString *summary = g_string_new (NULL);
  Completion *a, *b, *c, *close_c;

  fixture_setup (f, NULL);
  f->split = split;
  handshake (f, 2047, 131072, 60);

  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_bytes_unref (take_bytes (f));

  /* Several frames in one read: both replies and a heartbeat. */
  encode_declare_ok (buf, 2, "b", 7, 1);
  g_byte_array_append (buf, heartbeat_frame, sizeof heartbeat_frame);
  encode_declare_ok (buf, 1, "a", 3, 0);
  g_assert_true (feed (f, buf->data, buf->len));
  assert_ok (a);
  assert_ok (b);
  g_assert_cmpuint (b->seq, <, a->seq);

  c = rpc_declare (f, "c");
  g_bytes_unref (take_bytes (f));
  g_byte_array_set_size (buf, 0);
  encode_channel_close (buf, 2, 404, "NOT_FOUND - no queue 'c' in vhost '/'",
                        CAREHARE_METHOD_QUEUE_DECLARE);
  g_assert_true (feed (f, buf->data, buf->len));
  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_bytes_unref (take_bytes (f));

  close_c = completion_new (f);
  close_c->op = carehare_protocol_close (f->p, f->now, op_done_cb, close_c);
  g_bytes_unref (take_bytes (f));
  g_assert_false (server_close_ok (f));
  assert_ok (close_c);

  for (guint i = 0; i < f->completions->len; i++)
    {
      Completion *x = g_ptr_array_index (f->completions, i);

      g_string_append_printf (summary, "%u:%u:%s:%d:%s:%s:%u:%u\n", i, x->seq,
                              x->error != NULL ? g_quark_to_string (x->error->domain) : "-",
                              x->error != NULL ? x->error->code : -1,
                              x->error != NULL ? x->error->message : "-",
                              x->queue != NULL ? x->queue : "-",
                              x->message_count, x->consumer_count);
    }
  g_string_append_printf (summary, "finished %u %s\n", f->n_finished,
                          f->finish_error != NULL ? f->finish_error->message : "-");
  g_string_append_len (summary, (const char *) f->transcript->data, f->transcript->len);
  fixture_teardown (f, NULL);
  return g_string_free (summary, FALSE);
}

static void
test_handshake_split_bytes (void)
{
  g_autofree char *whole = run_scenario (FALSE);
  g_autofree char *split = run_scenario (TRUE);

  g_assert_cmpstr (whole, ==, split);
}

static void
test_handshake_split_bytes_bad (void)
{
  static const struct {
    const char *bytes;
    gsize size;
  } replies[] = {
    { "HTTP/1.1 400 Bad Request\r\n\r\n", 28 },
    { "AMQP\0\0\x09\x00", 8 },
    { "AMQP\0\0\x09\x01", 8 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (replies); i++)
    {
      Fixture fixture;
      Fixture *f = &fixture;
      g_autofree char *whole = NULL;

      fixture_setup (f, NULL);
      start (f);
      g_assert_false (feed (f, (const guint8 *) replies[i].bytes, replies[i].size));
      whole = g_strdup (f->handshake->error->message);
      fixture_teardown (f, NULL);

      fixture_setup (f, NULL);
      f->split = TRUE;
      start (f);
      g_assert_false (feed (f, (const guint8 *) replies[i].bytes, replies[i].size));
      assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
      g_assert_cmpstr (f->handshake->error->message, ==, whole);
      fixture_teardown (f, NULL);
    }
}

/* ======================================================================== */
/* heartbeats                                                                */
/* ======================================================================== */

static void
test_heartbeat_deadline (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(GBytes) bytes = NULL;
  gint64 deadline;
  gint64 last_write;

  start (f);
  g_assert_true (server_start (f));
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_tune (f, 2047, 131072, 1));
  /* Tune-Ok and Open are waiting to be written: no heartbeat needed yet,
   * but the monitor runs. */
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), <=, f->now + 2 * SEC);
  f->now += 10 * MSEC;
  last_write = f->now;
  g_ptr_array_unref (take_sent (f));
  g_assert_cmpuint (carehare_protocol_get_heartbeat (f->p), ==, 1);

  deadline = carehare_protocol_get_deadline (f->p);
  g_assert_cmpint (deadline, >, f->now);
  g_assert_cmpint (deadline, <=, last_write + SEC / 2);

  f->now += 100 * MSEC;
  g_assert_true (server_open_ok (f));
  assert_ok (f->handshake);

  /* Before the deadline nothing is sent. */
  f->now = deadline - 1;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==, deadline);
  assert_no_output (f);

  /* At the deadline, exactly one heartbeat frame. */
  f->now = deadline;
  carehare_protocol_tick (f->p, f->now);
  carehare_protocol_tick (f->p, f->now);
  f->now += MSEC;
  carehare_protocol_tick (f->p, f->now);
  bytes = take_bytes (f);
  assert_bytes (bytes, heartbeat_frame, sizeof heartbeat_frame);

  /* Taking output resets the write deadline. */
  deadline = carehare_protocol_get_deadline (f->p);
  g_assert_cmpint (deadline, >, f->now);
  g_assert_cmpint (deadline, <=, f->now + SEC / 2);

  /* Output of any kind counts as a write. */
  f->now = deadline - 10 * MSEC;
  rpc_declare (f, "q");
  f->now += 5 * MSEC;
  g_bytes_unref (take_bytes (f));
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, f->now + SEC / 2);
  f->now += SEC / 2 - 1;
  carehare_protocol_tick (f->p, f->now);
  assert_no_output (f);
}

static void
test_heartbeat_keepalive (Fixture       *f,
                          gconstpointer  data)
{
  gint64 begin;
  guint n_sent = 0;

  handshake (f, 2047, 131072, 1);
  begin = f->now;
  for (gint64 t = begin; t <= begin + 60 * SEC; t += 250 * MSEC)
    {
      g_autoptr(GBytes) bytes = NULL;
      gint64 deadline;

      f->now = t;
      if ((t - begin) % SEC == 0)
        g_assert_true (server_heartbeat (f));
      deadline = carehare_protocol_tick (f->p, f->now);
      /* Never a deadline in the past: that would spin the main loop. */
      g_assert_cmpint (deadline, >, f->now);
      bytes = take_bytes (f);
      if (bytes != NULL)
        {
          assert_bytes (bytes, heartbeat_frame, sizeof heartbeat_frame);
          n_sent++;
        }
      g_assert_false (carehare_protocol_is_finished (f->p));
    }
  /* One every half interval. */
  g_assert_cmpuint (n_sent, >=, 110);
  g_assert_cmpuint (n_sent, <=, 121);
  g_assert_cmpuint (f->n_finished, ==, 0);
}

/* The counters behind carehare_connection_get_statistics(): heartbeat
 * frames sent, each silence of one interval missed once, the bytes of
 * both, and when the server was last heard. */
static void
test_heartbeat_counters (Fixture       *f,
                         gconstpointer  data)
{
  const CarehareProtocolStats *stats;
  guint64 bytes_sent, bytes_received;
  gint64 heard;
  guint n_sent = 0;

  handshake (f, 2047, 131072, 1);
  stats = carehare_protocol_get_stats (f->p);
  g_assert_cmpuint (stats->heartbeats_sent, ==, 0);
  g_assert_cmpuint (stats->heartbeats_missed, ==, 0);
  bytes_sent = stats->bytes_sent;
  bytes_received = stats->bytes_received;

  f->now += 10 * MSEC;
  g_assert_true (server_heartbeat (f));
  heard = f->now;
  g_assert_cmpint (carehare_protocol_get_last_read (f->p), ==, heard);
  g_assert_cmpuint (stats->bytes_received, ==, bytes_received + sizeof heartbeat_frame);

  /* 1.5 intervals of silence: one miss, counted once however many ticks
   * see it; our own heartbeats go out meanwhile. */
  for (gint64 t = heard + 100 * MSEC; t <= heard + 3 * SEC / 2; t += 100 * MSEC)
    {
      g_autoptr(GBytes) bytes = NULL;

      f->now = t;
      carehare_protocol_tick (f->p, f->now);
      bytes = take_bytes (f);
      if (bytes != NULL)
        {
          assert_bytes (bytes, heartbeat_frame, sizeof heartbeat_frame);
          n_sent++;
        }
      g_assert_cmpuint (stats->heartbeats_missed, ==, t >= heard + SEC ? 1 : 0);
      g_assert_cmpuint (stats->heartbeats_sent, ==, n_sent);
    }
  g_assert_cmpuint (n_sent, >=, 2);
  g_assert_cmpuint (stats->bytes_sent, ==, bytes_sent + n_sent * sizeof heartbeat_frame);
  g_assert_cmpint (carehare_protocol_get_last_read (f->p), ==, heard);

  /* The server is heard again: a new silence is a second miss. */
  g_assert_true (server_heartbeat (f));
  heard = f->now;
  g_assert_cmpuint (stats->heartbeats_missed, ==, 1);
  f->now = heard + SEC;
  carehare_protocol_tick (f->p, f->now);
  g_assert_cmpuint (stats->heartbeats_missed, ==, 2);
  g_assert_cmpuint (stats->bytes_received, ==, bytes_received + 2 * sizeof heartbeat_frame);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_heartbeat_timeout (Fixture       *f,
                        gconstpointer  data)
{
  Completion *a, *b, *waiting;
  gint64 last_read;

  handshake (f, 2, 131072, 1);
  last_read = f->now;
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  waiting = rpc_declare (f, "c");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);
  g_bytes_unref (take_bytes (f));

  /* Tick at every deadline, writing what is produced, until it gives up. */
  while (!carehare_protocol_is_finished (f->p))
    {
      f->now = carehare_protocol_get_deadline (f->p);
      g_assert_cmpint (f->now, <=, last_read + 2 * SEC);
      carehare_protocol_tick (f->p, f->now);
      if (carehare_protocol_has_output (f->p))
        g_bytes_unref (take_bytes (f));
    }
  g_assert_cmpint (f->now, ==, last_read + 2 * SEC);

  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR,
                  CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
  g_assert_error (carehare_protocol_get_finish_error (f->p), CAREHARE_ERROR,
                  CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (waiting, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (a->error, "heartbeat");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, G_MAXINT64);
  assert_no_output (f);
}

static void
test_heartbeat_disabled (Fixture       *f,
                         gconstpointer  data)
{
  /* Off only when both sides say 0 (RabbitMQ's rule). */
  f->config.heartbeat = 0;
  handshake (f, 2047, 131072, 0);
  g_assert_cmpuint (carehare_protocol_get_heartbeat (f->p), ==, 0);
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, G_MAXINT64);
  f->now += 3600 * SEC;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==, G_MAXINT64);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_heartbeat_server_zero (Fixture       *f,
                            gconstpointer  data)
{
  /* A server proposing 0 does not silently disable dead-peer detection:
   * the client's 60 s is used. */
  handshake (f, 2047, 131072, 0);
  g_assert_cmpuint (carehare_protocol_get_heartbeat (f->p), ==, 60);
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), <, G_MAXINT64);
  f->now += 3600 * SEC;
  carehare_protocol_tick (f->p, f->now);
  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_error (carehare_protocol_get_finish_error (f->p), CAREHARE_ERROR,
                  CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
}

/* ======================================================================== */
/* rpcs                                                                      */
/* ======================================================================== */

static void
test_rpc_pipelined (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GVariant) args = NULL;
  CarehareMethod req = { .id = CAREHARE_METHOD_QUEUE_DECLARE };
  const CarehareMethod *m;
  GVariantBuilder b;
  Completion *c;
  gint32 ttl = 0;
  const char *s;

  connect_default (f);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "x-message-ttl", g_variant_new_int32 (60000));
  g_variant_builder_add (&b, "{sv}", "x-queue-type", g_variant_new_string ("quorum"));
  args = g_variant_ref_sink (g_variant_builder_end (&b));
  req.queue_declare.queue = (char *) "orders";
  req.queue_declare.durable = TRUE;
  req.queue_declare.auto_delete = TRUE;
  req.queue_declare.arguments = args;
  c = rpc_start (f, &req, CAREHARE_METHOD_QUEUE_DECLARE_OK);
  assert_pending (c);

  /* Channel.Open and the request, in one write. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  m = sent_method (sent, 1, 1, CAREHARE_METHOD_QUEUE_DECLARE);
  g_assert_cmpstr (m->queue_declare.queue, ==, "orders");
  g_assert_false (m->queue_declare.passive);
  g_assert_true (m->queue_declare.durable);
  g_assert_false (m->queue_declare.exclusive);
  g_assert_true (m->queue_declare.auto_delete);
  g_assert_false (m->queue_declare.nowait);
  g_assert_true (g_variant_lookup (m->queue_declare.arguments, "x-message-ttl", "i", &ttl));
  g_assert_cmpint (ttl, ==, 60000);
  g_assert_true (g_variant_lookup (m->queue_declare.arguments, "x-queue-type", "&s", &s));
  g_assert_cmpstr (s, ==, "quorum");
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  /* Open-Ok then Declare-Ok completes it with the reply. */
  {
    CarehareMethod open_ok = { .id = CAREHARE_METHOD_CHANNEL_OPEN_OK };
    g_autoptr(GByteArray) buf = g_byte_array_new ();

    server_encode (buf, 1, &open_ok);
    g_assert_true (feed (f, buf->data, buf->len));
    assert_pending (c);
    g_byte_array_set_size (buf, 0);
    encode_declare_ok (buf, 1, "orders", 42, 3);
    g_assert_true (feed (f, buf->data, buf->len));
  }
  assert_ok (c);
  g_assert_cmpuint (c->reply_id, ==, CAREHARE_METHOD_QUEUE_DECLARE_OK);
  g_assert_cmpstr (c->queue, ==, "orders");
  g_assert_cmpuint (c->message_count, ==, 42);
  g_assert_cmpuint (c->consumer_count, ==, 3);
  assert_no_output (f);
  /* The channel stays open, in the pool. */
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);
}

static void
test_rpc_server_named (Fixture       *f,
                       gconstpointer  data)
{
  Completion *c;

  connect_default (f);
  c = rpc_declare (f, "");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "amq.gen-JzTY20BRgKO-HjmUJj0wLg"));
  assert_ok (c);
  g_assert_cmpstr (c->queue, ==, "amq.gen-JzTY20BRgKO-HjmUJj0wLg");
}

static void
test_rpc_reuse (Fixture       *f,
                gconstpointer  data)
{
  Completion *a, *b;
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;

  connect_default (f);
  a = rpc_declare (f, "a");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);

  /* One round trip: the pooled channel, no Channel.Open. */
  b = rpc_declare (f, "b");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_QUEUE_DECLARE);
  g_assert_cmpstr (m->queue_declare.queue, ==, "b");
  g_assert_true (server_declare_ok (f, 1, "b"));
  assert_ok (b);
  g_assert_cmpstr (b->queue, ==, "b");
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);
}

static void
test_rpc_concurrent (Fixture       *f,
                     gconstpointer  data)
{
  Completion *a, *b;
  g_autoptr(GPtrArray) sent = NULL;

  connect_default (f);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 4);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_cmpstr (sent_method (sent, 1, 1, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "a");
  sent_method (sent, 2, 2, CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_cmpstr (sent_method (sent, 3, 2, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "b");
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 2);

  /* Replies in any order go to the right operation. */
  g_assert_true (server_declare_ok (f, 2, "b"));
  assert_pending (a);
  assert_ok (b);
  g_assert_cmpstr (b->queue, ==, "b");
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
  g_assert_cmpstr (a->queue, ==, "a");
}

static void
test_rpc_other_methods (Fixture       *f,
                        gconstpointer  data)
{
  CarehareMethod bind = { .id = CAREHARE_METHOD_QUEUE_BIND };
  CarehareMethod bind_ok = { .id = CAREHARE_METHOD_QUEUE_BIND_OK };
  CarehareMethod ex = { .id = CAREHARE_METHOD_EXCHANGE_DECLARE };
  CarehareMethod ex_ok = { .id = CAREHARE_METHOD_EXCHANGE_DECLARE_OK };
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *a, *b;

  connect_default (f);
  bind.queue_bind.queue = (char *) "q";
  bind.queue_bind.exchange = (char *) "x";
  bind.queue_bind.routing_key = (char *) "k.#";
  a = rpc_start (f, &bind, CAREHARE_METHOD_QUEUE_BIND_OK);
  ex.exchange_declare.exchange = (char *) "x";
  ex.exchange_declare.type = (char *) "topic";
  ex.exchange_declare.durable = TRUE;
  ex.exchange_declare.internal = TRUE;
  b = rpc_start (f, &ex, CAREHARE_METHOD_EXCHANGE_DECLARE_OK);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 4);
  m = sent_method (sent, 1, 1, CAREHARE_METHOD_QUEUE_BIND);
  g_assert_cmpstr (m->queue_bind.routing_key, ==, "k.#");
  m = sent_method (sent, 3, 2, CAREHARE_METHOD_EXCHANGE_DECLARE);
  g_assert_cmpstr (m->exchange_declare.type, ==, "topic");
  g_assert_true (m->exchange_declare.durable);
  g_assert_false (m->exchange_declare.auto_delete);
  g_assert_true (m->exchange_declare.internal);

  g_assert_true (server_method (f, 2, &ex_ok));
  g_assert_true (server_method (f, 1, &bind_ok));
  assert_ok (a);
  assert_ok (b);
  g_assert_cmpuint (a->reply_id, ==, CAREHARE_METHOD_QUEUE_BIND_OK);
  g_assert_cmpuint (b->reply_id, ==, CAREHARE_METHOD_EXCHANGE_DECLARE_OK);
}

static void
test_rpc_channel_closed_by_server (Fixture       *f,
                                   gconstpointer  data)
{
  Completion *a, *b, *c;
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;

  connect_default (f);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));

  g_assert_true (server_channel_close (f, 1, 404, "NOT_FOUND - no queue 'a' in vhost '/'"));
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (a->error), ==, 404);
  assert_message_contains (a->error, "no queue 'a' in vhost '/'");
  /* Only that operation. */
  assert_pending (b);
  g_assert_false (carehare_protocol_is_finished (f->p));

  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  /* Channel 1 is not pooled: the next rpc opens a channel. */
  c = rpc_declare (f, "c");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  m = sent_method (sent, 0, ((Sent *) g_ptr_array_index (sent, 0))->channel,
                   CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_nonnull (m);
  g_assert_cmpuint (((Sent *) g_ptr_array_index (sent, 0))->channel, !=, 2);
  sent_method (sent, 1, ((Sent *) g_ptr_array_index (sent, 0))->channel,
               CAREHARE_METHOD_QUEUE_DECLARE);

  g_assert_true (server_declare_ok (f, 2, "b"));
  assert_ok (b);
  g_assert_true (server_declare_ok (f, ((Sent *) g_ptr_array_index (sent, 0))->channel, "c"));
  assert_ok (c);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 2);
}

static void
test_rpc_channel_closed_idle (Fixture       *f,
                              gconstpointer  data)
{
  Completion *a, *b;
  g_autoptr(GPtrArray) sent = NULL;

  /* The server may close a pooled channel (e.g. an internal error): the
   * client answers and drops it from the pool. */
  connect_default (f);
  a = rpc_declare (f, "a");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
  g_assert_true (server_channel_close (f, 1, 541, "INTERNAL_ERROR"));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  b = rpc_declare (f, "b");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  g_assert_cmpuint (((Sent *) g_ptr_array_index (sent, 0))->method.id, ==,
                    CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_true (server_declare_ok (f, ((Sent *) g_ptr_array_index (sent, 0))->channel, "b"));
  assert_ok (b);
}

static void
test_rpc_channel_max_fifo (Fixture       *f,
                           gconstpointer  data)
{
  Completion *a, *b, *c, *d;
  g_autoptr(GPtrArray) sent = NULL;

  handshake (f, 2, 131072, 0);
  g_assert_cmpuint (carehare_protocol_get_channel_max (f->p), ==, 2);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  c = rpc_declare (f, "c");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);
  d = rpc_declare (f, "d");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 2);
  sent = take_sent (f);
  /* Only a and b went out. */
  g_assert_cmpuint (sent->len, ==, 4);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* Channel 2 comes back first: the first waiter (c) takes it, in the
   * same turn and without a Channel.Open. */
  g_assert_true (server_declare_ok (f, 2, "b"));
  assert_ok (b);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpstr (sent_method (sent, 0, 2, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "c");
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* Channel 1 closed by the server: its id is freed and d gets a fresh
   * channel with that id. */
  g_assert_true (server_channel_close (f, 1, 406, "PRECONDITION_FAILED - inequivalent arg"));
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  sent_method (sent, 1, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_cmpstr (sent_method (sent, 2, 1, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "d");

  g_assert_true (server_declare_ok (f, 1, "d"));
  g_assert_true (server_declare_ok (f, 2, "c"));
  assert_ok (c);
  assert_ok (d);
  g_assert_cmpuint (d->seq, <, c->seq);
}

static void
test_rpc_cancel_waiting (Fixture       *f,
                         gconstpointer  data)
{
  Completion *a, *b, *c;
  g_autoptr(GPtrArray) sent = NULL;

  handshake (f, 1, 131072, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  c = rpc_declare (f, "c");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 2);
  g_ptr_array_unref (take_sent (f));

  carehare_protocol_cancel (f->p, b->op);
  assert_failed (b, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);
  /* Nothing to tell the server. */
  assert_no_output (f);

  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpstr (sent_method (sent, 0, 1, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "c");
  g_assert_true (server_declare_ok (f, 1, "c"));
  assert_ok (c);
}

/* issue 12 #2: a request on the wire cannot be taken back (the broker
 * declares, binds or deletes whatever we do next), so cancelling it
 * changes nothing: it completes with the broker's answer, and its channel
 * goes back to the pool as usual. */
static void
test_rpc_cancel_sent (Fixture       *f,
                      gconstpointer  data)
{
  Completion *a, *b;
  g_autoptr(GPtrArray) sent = NULL;

  handshake (f, 1, 131072, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));

  carehare_protocol_cancel (f->p, a->op);
  assert_pending (a);
  assert_pending (b);
  /* Nothing to tell the server: no Channel.Close. */
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);

  /* The broker's answer completes it; b runs on the same channel. */
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
  g_assert_cmpstr (a->queue, ==, "a");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpstr (sent_method (sent, 0, 1, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "b");
  g_assert_true (server_declare_ok (f, 1, "b"));
  assert_ok (b);
  g_assert_cmpstr (b->queue, ==, "b");
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* The same when the broker's answer is a refusal: the request fails with
 * the broker's error, not CANCELLED. */
static void
test_rpc_cancel_crossed (Fixture       *f,
                         gconstpointer  data)
{
  Completion *a, *b;
  g_autoptr(GPtrArray) sent = NULL;

  connect_default (f);
  a = rpc_declare (f, "a");
  g_ptr_array_unref (take_sent (f));
  carehare_protocol_cancel (f->p, a->op);
  assert_pending (a);
  assert_no_output (f);

  g_assert_true (server_channel_close (f, 1, 404, "NOT_FOUND - no queue 'a'"));
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (a->n_calls, ==, 1);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_false (carehare_protocol_is_finished (f->p));

  b = rpc_declare (f, "b");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  g_assert_cmpuint (((Sent *) g_ptr_array_index (sent, 0))->method.id, ==,
                    CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_true (server_declare_ok (f, ((Sent *) g_ptr_array_index (sent, 0))->channel, "b"));
  assert_ok (b);
}

static void
test_rpc_unencodable (Fixture       *f,
                      gconstpointer  data)
{
  g_autofree char *name = g_strnfill (300, 'x');
  Completion *c;

  connect_default (f);
  c = rpc_declare (f, name);
  assert_failed (c, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_message_contains (c->error, "queue.declare");
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* AMQP's empty queue name means "the last queue declared on this
 * channel", and channels are pooled: an empty name would act on whatever
 * queue an earlier operation declared there. Refused before anything is
 * sent; a declare of "" (a server-named queue) still goes out. */
static void
test_rpc_empty_queue_name (Fixture       *f,
                           gconstpointer  data)
{
  CarehareMethod purge = { .id = CAREHARE_METHOD_QUEUE_PURGE };
  CarehareMethod del = { .id = CAREHARE_METHOD_QUEUE_DELETE };
  CarehareMethod bind = { .id = CAREHARE_METHOD_QUEUE_BIND };
  CarehareMethod unbind = { .id = CAREHARE_METHOD_QUEUE_UNBIND };
  struct {
    const CarehareMethod *request;
    guint32 reply_id;
    const char *name;
  } cases[] = {
    { &purge, CAREHARE_METHOD_QUEUE_PURGE_OK, "queue.purge" },
    { &del, CAREHARE_METHOD_QUEUE_DELETE_OK, "queue.delete" },
    { &bind, CAREHARE_METHOD_QUEUE_BIND_OK, "queue.bind" },
    { &unbind, CAREHARE_METHOD_QUEUE_UNBIND_OK, "queue.unbind" },
  };
  g_autoptr(GPtrArray) sent = NULL;
  Completion *declare;

  connect_default (f);
  /* A queue declared on the channel that the pool hands out next. */
  declare = rpc_declare (f, "durable-q");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "durable-q"));
  assert_ok (declare);

  purge.queue_purge.queue = (char *) "";
  del.queue_delete.queue = NULL;  /* NULL encodes as "" too */
  bind.queue_bind.queue = (char *) "";
  bind.queue_bind.exchange = (char *) "amq.direct";
  bind.queue_bind.routing_key = (char *) "k";
  unbind.queue_unbind.queue = (char *) "";
  unbind.queue_unbind.exchange = (char *) "amq.direct";
  unbind.queue_unbind.routing_key = (char *) "k";
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Completion *c = rpc_start (f, cases[i].request, cases[i].reply_id);

      assert_failed (c, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      assert_message_contains (c->error, cases[i].name);
      assert_message_contains (c->error, "empty");
      assert_no_output (f);
    }
  g_assert_false (carehare_protocol_is_finished (f->p));

  /* A server-named queue is still declared with "". */
  declare = rpc_declare (f, "");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpstr (sent_method (sent, 0, 1, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "");
  g_assert_true (server_declare_ok (f, 1, "amq.gen-1"));
  assert_ok (declare);
}

static void
test_rpc_too_large (Fixture       *f,
                    gconstpointer  data)
{
  CarehareMethod req = { .id = CAREHARE_METHOD_QUEUE_DECLARE };
  g_autofree char *big = g_strnfill (8000, 'v');
  g_autoptr(GVariant) args = NULL;
  GVariantBuilder b;
  Completion *c, *d;

  /* A request that does not fit in one frame would make the server close
   * the whole connection with FRAME_ERROR: it fails alone instead. */
  handshake (f, 2047, 4096, 0);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "x-big", g_variant_new_string (big));
  args = g_variant_ref_sink (g_variant_builder_end (&b));
  req.queue_declare.queue = (char *) "q";
  req.queue_declare.arguments = args;
  c = rpc_start (f, &req, CAREHARE_METHOD_QUEUE_DECLARE_OK);
  assert_failed (c, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_message_contains (c->error, "frame_max");
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  d = rpc_declare (f, "small");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "small"));
  assert_ok (d);
}

static void
test_rpc_reentrant (Fixture       *f,
                    gconstpointer  data)
{
  Completion *a;
  g_autoptr(GPtrArray) sent = NULL;

  connect_default (f);
  a = rpc_declare (f, "a");
  a->chain = TRUE;
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);

  /* The rpc started from inside a's callback reuses channel 1. */
  g_assert_nonnull (a->chained);
  assert_pending (a->chained);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpstr (sent_method (sent, 0, 1, CAREHARE_METHOD_QUEUE_DECLARE)->queue_declare.queue,
                   ==, "chained");
  g_assert_true (server_declare_ok (f, 1, "chained"));
  assert_ok (a->chained);
  g_assert_cmpstr (a->chained->queue, ==, "chained");
}

static void
test_rpc_reentrant_failure (Fixture       *f,
                            gconstpointer  data)
{
  Completion *a, *b;

  /* Callbacks that run because the connection went away may start new
   * operations; those complete at once, in the same dispatch. */
  connect_default (f);
  a = rpc_declare (f, "a");
  a->chain = TRUE;
  b = rpc_declare (f, "b");
  b->chain = TRUE;
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - broker forced connection closure"));
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (a->chained, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b->chained, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_rpc_channel_flow (Fixture       *f,
                       gconstpointer  data)
{
  CarehareMethod flow = { .id = CAREHARE_METHOD_CHANNEL_FLOW };
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *a;

  connect_default (f);
  a = rpc_declare (f, "a");
  g_ptr_array_unref (take_sent (f));
  flow.channel_flow.active = FALSE;
  g_assert_true (server_method (f, 1, &flow));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_FLOW_OK);
  g_assert_false (m->channel_flow_ok.active);
  assert_pending (a);
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
}

static void
test_rpc_before_open (Fixture       *f,
                      gconstpointer  data)
{
  Completion *c;

  start (f);
  c = rpc_declare (f, "q");
  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_no_output (f);
  assert_pending (f->handshake);
}

/* ======================================================================== */
/* close                                                                     */
/* ======================================================================== */

static void
test_close_clean (Fixture       *f,
                  gconstpointer  data)
{
  Completion *a, *b, *c;
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;

  handshake (f, 1, 131072, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));

  c = close_start (f);
  /* Pending operations fail at once; the close waits for Close-Ok. */
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_pending (c);
  g_assert_cmpuint (f->n_finished, ==, 0);
  g_assert_false (carehare_protocol_is_finished (f->p));

  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  g_assert_cmpuint (m->connection_close.reply_code, ==, 200);
  g_assert_cmpuint (m->connection_close.class_id, ==, 0);
  g_assert_cmpuint (m->connection_close.method_id, ==, 0);

  g_assert_false (server_close_ok (f));
  assert_ok (c);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_null (f->finish_error);
  g_assert_null (carehare_protocol_get_finish_error (f->p));
  g_assert_true (carehare_protocol_is_finished (f->p));
  assert_no_output (f);
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, G_MAXINT64);

  /* Afterwards: rpcs fail, input is refused, finished is not repeated. */
  assert_failed (rpc_declare (f, "late"), CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_false (server_heartbeat (f));
  carehare_protocol_tick (f->p, f->now + 3600 * SEC);
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_close_replies_in_flight (Fixture       *f,
                              gconstpointer  data)
{
  Completion *a, *b, *c;
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  /* The server sent these before it read our Close: they are discarded,
   * and the close still completes cleanly. */
  connect_default (f);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));

  c = close_start (f);
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_ptr_array_unref (take_sent (f));

  encode_declare_ok (buf, 1, "a", 0, 0);
  encode_declare_ok (buf, 2, "b", 0, 0);
  encode_channel_close (buf, 1, 406, "PRECONDITION_FAILED - x", CAREHARE_METHOD_QUEUE_DECLARE);
  carehare_wire_append_body_frame (buf, 1, (const guint8 *) "xyz", 3);
  g_byte_array_append (buf, heartbeat_frame, sizeof heartbeat_frame);
  g_assert_true (feed (f, buf->data, buf->len));
  assert_pending (c);
  g_assert_false (carehare_protocol_is_finished (f->p));

  g_assert_false (server_close_ok (f));
  assert_ok (c);
  g_assert_null (f->finish_error);
}

static void
test_close_timeout (Fixture       *f,
                    gconstpointer  data)
{
  Completion *c;
  gint64 closed_at;

  f->config.close_timeout_us = 3 * SEC;
  connect_default (f);
  closed_at = f->now;
  c = close_start (f);
  g_ptr_array_unref (take_sent (f));
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, closed_at + 3 * SEC);

  f->now = closed_at + 3 * SEC - 1;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==, closed_at + 3 * SEC);
  assert_pending (c);

  f->now = closed_at + 3 * SEC;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==, G_MAXINT64);
  assert_ok (c);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_null (f->finish_error);
  assert_no_output (f);
}

static void
test_close_heartbeat_while_closing (Fixture       *f,
                                    gconstpointer  data)
{
  Completion *c;

  /* A dead server while we close: the heartbeat monitor may fire before
   * the close timeout; we were closing, so it is still our close. */
  handshake (f, 2047, 131072, 1);
  c = close_start (f);
  g_ptr_array_unref (take_sent (f));
  while (!carehare_protocol_is_finished (f->p))
    {
      f->now = carehare_protocol_get_deadline (f->p);
      carehare_protocol_tick (f->p, f->now);
      if (carehare_protocol_has_output (f->p))
        g_bytes_unref (take_bytes (f));
    }
  assert_ok (c);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_null (f->finish_error);
}

static void
test_close_after_server_close (Fixture       *f,
                               gconstpointer  data)
{
  Completion *c;

  connect_default (f);
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - broker forced connection closure "
                                "with reason 'shutdown'"));
  g_ptr_array_unref (take_sent (f));
  c = close_start (f);
  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (c->error), ==, 320);
  assert_message_contains (c->error, "shutdown");
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_close_crossed (Fixture       *f,
                    gconstpointer  data)
{
  Completion *c;
  g_autoptr(GPtrArray) sent = NULL;

  connect_default (f);
  c = close_start (f);
  g_ptr_array_unref (take_sent (f));
  /* Both sides said Close at once: answer, and we closed it. */
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - shutdown"));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE_OK);
  assert_ok (c);
  g_assert_null (f->finish_error);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_close_idempotent (Fixture       *f,
                       gconstpointer  data)
{
  Completion *c1, *c2, *c3;
  g_autoptr(GPtrArray) sent = NULL;

  connect_default (f);
  c1 = close_start (f);
  c2 = close_start (f);
  sent = take_sent (f);
  /* Close is said once. */
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  assert_pending (c1);
  assert_pending (c2);
  g_assert_false (server_close_ok (f));
  assert_ok (c1);
  assert_ok (c2);
  g_assert_cmpuint (c1->seq, <, c2->seq);

  c3 = close_start (f);
  assert_ok (c3);
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_close_cancel (Fixture       *f,
                   gconstpointer  data)
{
  Completion *c1, *c2;

  /* Cancelling a close stops the wait for Close-Ok: the connection is
   * finished at once, as when the close times out, and every close
   * completes as closed by us. */
  connect_default (f);
  c1 = close_start (f);
  c2 = close_start (f);
  g_ptr_array_unref (take_sent (f));
  carehare_protocol_cancel (f->p, c1->op);
  assert_ok (c1);
  assert_ok (c2);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_null (f->finish_error);
  g_assert_true (carehare_protocol_is_finished (f->p));
  assert_no_output (f);
  /* A Close-Ok that crossed the cancel is ignored. */
  g_assert_false (server_close_ok (f));
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_close_during_handshake (Fixture       *f,
                             gconstpointer  data)
{
  Completion *c;
  g_autoptr(GPtrArray) sent = NULL;

  start (f);
  g_assert_true (server_start (f));
  g_assert_true (server_tune (f, 2047, 131072, 0));
  g_ptr_array_unref (take_sent (f));
  c = close_start (f);
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  /* The Open-Ok that crossed our Close is ignored. */
  g_assert_true (server_open_ok (f));
  assert_pending (c);
  g_assert_false (server_close_ok (f));
  assert_ok (c);
}

static void
test_close_before_start (Fixture       *f,
                         gconstpointer  data)
{
  Completion *c;

  start (f);
  c = close_start (f);
  /* Nothing was said yet: done at once. */
  assert_ok (c);
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_null (f->finish_error);
  assert_no_output (f);
}

static void
test_close_by_server (Fixture       *f,
                      gconstpointer  data)
{
  Completion *a, *b;
  g_autoptr(GPtrArray) sent = NULL;

  handshake (f, 1, 131072, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));

  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - broker forced connection closure "
                                "with reason 'shutdown'"));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE_OK);

  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (f->finish_error), ==, 320);
  assert_message_contains (f->finish_error, "reason 'shutdown'");
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (a->error, "320");
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);
}

/* The server closes the connection because of a request it names in its
 * Close (class and method id): the operation that sent that request fails
 * with the server's code and text; operations merely pending fail with
 * CONNECTION_CLOSED. */
static void
test_close_by_server_names_request (Fixture       *f,
                                    gconstpointer  data)
{
  CarehareMethod declare = { .id = CAREHARE_METHOD_EXCHANGE_DECLARE };
  CarehareMethod close = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };
  CarehareProtocolConsumer *consumer;
  Completion *bad, *other, *waiting, *start;
  g_autoptr(GPtrArray) sent = NULL;

  handshake (f, 3, 131072, 0);
  declare.exchange_declare.exchange = (char *) "x";
  declare.exchange_declare.type = (char *) "no-such-type";
  other = rpc_declare (f, "q");
  bad = rpc_start (f, &declare, CAREHARE_METHOD_EXCHANGE_DECLARE_OK);
  start = completion_new (f);
  consumer = carehare_protocol_consume (f->p, "q", 0, 10, NULL, NULL, op_done_cb, start);
  fixture_own (f, consumer, (GDestroyNotify) carehare_protocol_consumer_unref);
  waiting = rpc_declare (f, "waits-for-a-channel");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);
  g_ptr_array_unref (take_sent (f));

  close.connection_close.reply_code = 503;
  close.connection_close.reply_text = (char *) "COMMAND_INVALID - unknown exchange type 'no-such-type'";
  close.connection_close.class_id = CAREHARE_METHOD_EXCHANGE_DECLARE >> 16;
  close.connection_close.method_id = CAREHARE_METHOD_EXCHANGE_DECLARE & 0xffff;
  g_assert_false (server_method (f, 0, &close));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE_OK);

  assert_failed (bad, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (bad->error), ==, 503);
  assert_message_contains (bad->error, "unknown exchange type 'no-such-type'");
  assert_failed (other, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (waiting, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (start, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (other->error, "503");
  g_assert_cmpuint (carehare_error_get_reply_code (other->error), ==, 0);
  /* The request's failure comes first, then the others. */
  g_assert_cmpuint (bad->seq, <, other->seq);
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
}

/* The same for a consumer's start, whose basic.consume the server names. */
static void
test_close_by_server_names_consumer_start (Fixture       *f,
                                           gconstpointer  data)
{
  CarehareMethod close = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };
  CarehareProtocolConsumer *consumer;
  Completion *other, *start;

  handshake (f, 3, 131072, 0);
  other = rpc_declare (f, "q");
  start = completion_new (f);
  consumer = carehare_protocol_consume (f->p, "q", 0, 10, NULL, NULL, op_done_cb, start);
  fixture_own (f, consumer, (GDestroyNotify) carehare_protocol_consumer_unref);
  g_ptr_array_unref (take_sent (f));

  close.connection_close.reply_code = 540;
  close.connection_close.reply_text = (char *) "NOT_IMPLEMENTED - consume arguments";
  close.connection_close.class_id = CAREHARE_METHOD_BASIC_CONSUME >> 16;
  close.connection_close.method_id = CAREHARE_METHOD_BASIC_CONSUME & 0xffff;
  g_assert_false (server_method (f, 0, &close));

  assert_failed (start, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (start->error), ==, 540);
  assert_failed (other, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
}

static void
test_close_abort_while_open (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GError) eof = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "Broken pipe");
  Completion *a;

  connect_default (f);
  a = rpc_declare (f, "a");
  carehare_protocol_abort (f->p, eof);
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (a->error, "Broken pipe");
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_close_abort_while_closing (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GError) eof = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "EOF");
  Completion *c;

  /* A server that hangs up instead of Close-Ok: still our close. */
  connect_default (f);
  c = close_start (f);
  g_ptr_array_unref (take_sent (f));
  carehare_protocol_abort (f->p, eof);
  assert_ok (c);
  g_assert_null (f->finish_error);
}

static void
test_close_free_pending (Fixture       *f,
                         gconstpointer  data)
{
  Completion *a, *b, *c, *close_c;

  handshake (f, 1, 131072, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  c = rpc_declare (f, "c");
  /* c waits for the one channel: cancelling drops it. */
  carehare_protocol_cancel (f->p, c->op);
  close_c = close_start (f);
  g_assert_cmpuint (b->n_calls, ==, 1);
  g_clear_pointer (&f->p, carehare_protocol_free);

  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (c, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  /* The close was waiting for Close-Ok: we closed it. */
  assert_ok (close_c);
}

static void
test_close_free_pending_rpcs (Fixture       *f,
                              gconstpointer  data)
{
  Completion *a, *b;

  handshake (f, 1, 131072, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_clear_pointer (&f->p, carehare_protocol_free);
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  /* Nobody is left to be told the connection finished. */
  g_assert_cmpuint (f->n_finished, ==, 0);
}

static void
test_close_free_handshake (Fixture       *f,
                           gconstpointer  data)
{
  start (f);
  g_assert_true (server_start (f));
  g_clear_pointer (&f->p, carehare_protocol_free);
  assert_failed (f->handshake, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
}

/* Completes like op_done_cb(), then frees the protocol from inside its
 * own callback: the object that owned it was disposed there. */
static void
free_in_callback_cb (CarehareProtocolOp   *op,
                     const CarehareMethod *reply,
                     const GError         *error,
                     gpointer              user_data)
{
  Completion *c = user_data;

  op_done_cb (op, reply, error, user_data);
  g_clear_pointer (&c->f->p, carehare_protocol_free);
}

static Completion *
declare_freeing_in_callback (Fixture    *f,
                             const char *queue)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_DECLARE };
  Completion *c = completion_new (f);

  m.queue_declare.queue = (char *) queue;
  c->op = carehare_protocol_rpc (f->p, &m, CAREHARE_METHOD_QUEUE_DECLARE_OK,
                                 free_in_callback_cb, c);
  g_assert_nonnull (c->op);
  return c;
}

/* Freed from inside a completion that the connection ending queued: the
 * completions after it still run, once each, nothing else is called, and
 * the protocol is freed when the call that ended it returns (the sanitizer
 * build checks that nothing is touched after, or leaked). */
static void
test_close_free_in_callback_abort (Fixture       *f,
                                   gconstpointer  data)
{
  g_autoptr(GError) eof = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "reset");
  Completion *a, *b, *c;

  handshake (f, 2, 131072, 0);
  a = declare_freeing_in_callback (f, "a");
  b = rpc_declare (f, "b");
  c = rpc_declare (f, "c");  /* waits for a channel */
  g_ptr_array_unref (take_sent (f));
  carehare_protocol_abort (f->p, eof);
  g_assert_null (f->p);
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (f->n_finished, ==, 0);
}

/* Freed from inside a completion that a reply caused: the others fail
 * with CONNECTION_CLOSED, and receive says to stop reading. */
static void
test_close_free_in_callback_receive (Fixture       *f,
                                     gconstpointer  data)
{
  Completion *a, *b;
  CarehareProtocol *p;

  handshake (f, 2, 131072, 0);
  a = declare_freeing_in_callback (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_method (f, 1, &(CarehareMethod) { .id = CAREHARE_METHOD_CHANNEL_OPEN_OK }));
  g_assert_true (server_method (f, 2, &(CarehareMethod) { .id = CAREHARE_METHOD_CHANNEL_OPEN_OK }));
  g_ptr_array_unref (take_sent (f));
  p = f->p;
  {
    g_autoptr(GByteArray) buf = g_byte_array_new ();

    encode_declare_ok (buf, 1, "a", 0, 0);
    g_assert_false (carehare_protocol_receive (p, buf->data, buf->len, f->now));
  }
  g_assert_null (f->p);
  assert_ok (a);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (f->n_finished, ==, 0);
}

/* ======================================================================== */
/* update-secret                                                            */
/* ======================================================================== */

static Completion *
update_secret (Fixture    *f,
               const char *secret,
               const char *reason)
{
  Completion *c = completion_new (f);

  c->op = carehare_protocol_update_secret (f->p, secret, reason, op_done_cb, c);
  return c;
}

static gboolean
server_update_secret_ok (Fixture *f)
{
  CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_UPDATE_SECRET_OK };

  return server_method (f, 0, &ok);
}

static void
test_update_secret_bytes (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GBytes) bytes = NULL;
  static const guint8 expected[] = {
    /* connection.update-secret: new-secret "tok", reason "refresh" */
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13,
    0x00, 0x0A, 0x00, 0x46,
    0x00, 0x00, 0x00, 0x03, 't', 'o', 'k',
    0x07, 'r', 'e', 'f', 'r', 'e', 's', 'h',
    0xCE,
  };
  Completion *c;

  connect_default (f);
  c = update_secret (f, "tok", "refresh");
  bytes = take_bytes (f);
  assert_bytes (bytes, expected, sizeof expected);
  assert_pending (c);

  g_assert_true (server_update_secret_ok (f));
  assert_ok (c);
  g_assert_cmphex (c->reply_id, ==, CAREHARE_METHOD_CONNECTION_UPDATE_SECRET_OK);
  assert_no_output (f);
}

/* The server answers in order; a cancelled one keeps its place, so its
 * answer is not taken for the next one's. */
static void
test_update_secret_in_order (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *first, *second, *third;

  connect_default (f);
  first = update_secret (f, "one", "");
  second = update_secret (f, "two", "");
  third = update_secret (f, "three", "");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  g_assert_cmpmem (g_bytes_get_data (sent_method (sent, 1, 0,
                                                  CAREHARE_METHOD_CONNECTION_UPDATE_SECRET)
                                       ->connection_update_secret.new_secret, NULL),
                   3, "two", 3);

  /* Sent, so cancelling changes nothing (issue 12 #2): the server's
   * answers complete the three in order. */
  carehare_protocol_cancel (f->p, first->op);
  assert_pending (first);
  assert_no_output (f);
  g_assert_true (server_update_secret_ok (f));
  assert_ok (first);
  assert_pending (second);
  g_assert_true (server_update_secret_ok (f));
  assert_ok (second);
  assert_pending (third);
  g_assert_true (server_update_secret_ok (f));
  assert_ok (third);
  g_assert_cmpuint (first->n_calls, ==, 1);

  /* One more answer than requests: a server fault. */
  g_assert_false (server_update_secret_ok (f));
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
}

/* A token the server refuses: it closes the connection naming
 * Update-Secret, and the update fails with the server's code. */
static void
test_update_secret_refused (Fixture       *f,
                            gconstpointer  data)
{
  CarehareMethod close = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };
  Completion *c, *other;
  g_autoptr(GPtrArray) sent = NULL;

  connect_default (f);
  other = rpc_declare (f, "q");
  c = update_secret (f, "expired", "refresh");
  g_ptr_array_unref (take_sent (f));

  close.connection_close.reply_code = 530;
  close.connection_close.reply_text = (char *) "NOT_ALLOWED - token expired";
  close.connection_close.class_id = CAREHARE_METHOD_CONNECTION_UPDATE_SECRET >> 16;
  close.connection_close.method_id = CAREHARE_METHOD_CONNECTION_UPDATE_SECRET & 0xffff;
  g_assert_false (server_method (f, 0, &close));
  sent = take_sent (f);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE_OK);

  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (c->error), ==, 530);
  assert_message_contains (c->error, "token expired");
  assert_failed (other, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (c->seq, <, other->seq);
}

/* Pending when the connection ends, or asked after: CONNECTION_CLOSED. */
static void
test_update_secret_closed (Fixture       *f,
                           gconstpointer  data)
{
  Completion *pending, *late, *closing;

  connect_default (f);
  pending = update_secret (f, "tok", "refresh");
  g_ptr_array_unref (take_sent (f));
  closing = close_start (f);
  assert_failed (pending, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  late = update_secret (f, "tok", "refresh");
  assert_failed (late, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_ptr_array_unref (take_sent (f));

  /* An answer crossing our Close is dropped. */
  g_assert_true (server_update_secret_ok (f));
  g_assert_false (server_close_ok (f));
  assert_ok (closing);
  g_assert_cmpuint (pending->n_calls, ==, 1);
}

/* A secret that does not fit in one frame is refused before anything is
 * written. */
static void
test_update_secret_too_large (Fixture       *f,
                              gconstpointer  data)
{
  g_autofree char *secret = NULL;
  Completion *c;

  handshake (f, 2047, 4096, 0);
  secret = g_strnfill (4096, 'x');
  c = update_secret (f, secret, "refresh");
  assert_failed (c, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* ======================================================================== */
/* blocked                                                                   */
/* ======================================================================== */

static void
test_blocked (Fixture       *f,
              gconstpointer  data)
{
  CarehareMethod blocked = { .id = CAREHARE_METHOD_CONNECTION_BLOCKED };
  CarehareMethod unblocked = { .id = CAREHARE_METHOD_CONNECTION_UNBLOCKED };
  Completion *a;

  connect_default (f);
  a = rpc_declare (f, "a");
  g_ptr_array_unref (take_sent (f));
  g_assert_false (carehare_protocol_is_blocked (f->p));

  blocked.connection_blocked.reason = (char *) "low on memory";
  g_assert_true (server_method (f, 0, &blocked));
  g_assert_cmpuint (f->n_blocked_changed, ==, 1);
  g_assert_true (f->blocked);
  g_assert_cmpstr (f->blocked_reason, ==, "low on memory");
  g_assert_true (carehare_protocol_is_blocked (f->p));

  /* Only changes are reported. */
  blocked.connection_blocked.reason = (char *) "low on disk";
  g_assert_true (server_method (f, 0, &blocked));
  g_assert_cmpuint (f->n_blocked_changed, ==, 1);

  /* Nothing else is disturbed. */
  assert_pending (a);
  assert_no_output (f);

  g_assert_true (server_method (f, 0, &unblocked));
  g_assert_cmpuint (f->n_blocked_changed, ==, 2);
  g_assert_false (f->blocked);
  g_assert_false (carehare_protocol_is_blocked (f->p));
  g_assert_true (server_method (f, 0, &unblocked));
  g_assert_cmpuint (f->n_blocked_changed, ==, 2);

  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
}

/* ======================================================================== */
/* bad bytes                                                                 */
/* ======================================================================== */

/* Each case runs on a connection (frame_max 4096) where channel 1 is idle
 * in the pool and an rpc is pending on channel 2. */
typedef struct {
  guint16 reply_code;       /* of the Connection.Close the client sends */
  guint32 method_id;        /* class/method in that Close, 0 if none */
  const char *message;      /* in the error */
  void (*build) (GByteArray *buf);
} BadBytesCase;

static void
build_bad_frame_end (GByteArray *buf)
{
  encode_declare_ok (buf, 2, "b", 0, 0);
  buf->data[buf->len - 1] = 0x00;
}

static void
build_unknown_frame_type (GByteArray *buf)
{
  static const guint8 bytes[] = { 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xCE };

  g_byte_array_append (buf, bytes, sizeof bytes);
}

static void
build_frame_too_large (GByteArray *buf)
{
  /* A method frame announcing 4089 bytes: 4097 with overhead. Only the
   * header is needed for the client to refuse it. */
  static const guint8 bytes[] = { 0x01, 0x00, 0x02, 0x00, 0x00, 0x0F, 0xF9 };

  g_byte_array_append (buf, bytes, sizeof bytes);
}

static void
build_heartbeat_on_channel (GByteArray *buf)
{
  static const guint8 bytes[] = { 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xCE };

  g_byte_array_append (buf, bytes, sizeof bytes);
}

static void
build_channel_never_opened (GByteArray *buf)
{
  encode_declare_ok (buf, 9, "b", 0, 0);
}

static void
build_channel_above_max (GByteArray *buf)
{
  encode_declare_ok (buf, 60000, "b", 0, 0);
}

static void
build_unexpected_on_pooled (GByteArray *buf)
{
  encode_declare_ok (buf, 1, "a", 0, 0);
}

static void
build_wrong_reply (GByteArray *buf)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_BIND_OK };

  server_encode (buf, 2, &m);
}

static void
build_unasked_close_ok (GByteArray *buf)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CHANNEL_CLOSE_OK };

  server_encode (buf, 2, &m);
}

static void
build_body_on_rpc_channel (GByteArray *buf)
{
  carehare_wire_append_body_frame (buf, 2, (const guint8 *) "hello", 5);
}

static void
build_header_on_rpc_channel (GByteArray *buf)
{
  g_autoptr(GError) error = NULL;

  carehare_wire_append_header_frame (buf, 2, CAREHARE_CLASS_BASIC, 5, NULL, &error);
  g_assert_no_error (error);
}

static void
build_undecodable (GByteArray *buf)
{
  /* queue.declare-ok whose queue name says 5 bytes and has none */
  static const guint8 bytes[] = {
    0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x05,
    0x00, 0x32, 0x00, 0x0B, 0x05,
    0xCE,
  };

  g_byte_array_append (buf, bytes, sizeof bytes);
}

static void
build_bad_utf8 (GByteArray *buf)
{
  /* queue.declare-ok whose queue name is not UTF-8 */
  static const guint8 bytes[] = {
    0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0E,
    0x00, 0x32, 0x00, 0x0B, 0x01, 0xFF,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xCE,
  };

  g_byte_array_append (buf, bytes, sizeof bytes);
}

static void
build_unknown_method (GByteArray *buf)
{
  static const guint8 bytes[] = {
    0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04,
    0x00, 0x63, 0x00, 0x01,
    0xCE,
  };

  g_byte_array_append (buf, bytes, sizeof bytes);
}

static void
build_unexpected_on_channel_zero (GByteArray *buf)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_TUNE };

  m.connection_tune.channel_max = 1;
  m.connection_tune.frame_max = 4096;
  server_encode (buf, 0, &m);
}

static void
build_method_on_channel_zero (GByteArray *buf)
{
  encode_declare_ok (buf, 0, "b", 0, 0);
}

static const BadBytesCase bad_frame_end = {
  501, 0, "Frame end octet is 0x00", build_bad_frame_end,
};
static const BadBytesCase bad_frame_type = {
  501, 0, "Unknown frame type 4", build_unknown_frame_type,
};
static const BadBytesCase bad_frame_too_large = {
  501, 0, "exceed frame_max 4096", build_frame_too_large,
};
static const BadBytesCase bad_heartbeat_channel = {
  501, 0, "Heartbeat frame on channel 2", build_heartbeat_on_channel,
};
static const BadBytesCase bad_channel_never_opened = {
  504, CAREHARE_METHOD_QUEUE_DECLARE_OK, "queue.declare-ok on channel 9, which is not open",
  build_channel_never_opened,
};
static const BadBytesCase bad_channel_above_max = {
  504, CAREHARE_METHOD_QUEUE_DECLARE_OK, "channel 60000, which is not open",
  build_channel_above_max,
};
static const BadBytesCase bad_unexpected_pooled = {
  505, CAREHARE_METHOD_QUEUE_DECLARE_OK, "unexpected queue.declare-ok on channel 1",
  build_unexpected_on_pooled,
};
static const BadBytesCase bad_wrong_reply = {
  505, CAREHARE_METHOD_QUEUE_BIND_OK, "unexpected queue.bind-ok on channel 2",
  build_wrong_reply,
};
static const BadBytesCase bad_unasked_close_ok = {
  505, CAREHARE_METHOD_CHANNEL_CLOSE_OK, "channel.close-ok on channel 2",
  build_unasked_close_ok,
};
static const BadBytesCase bad_body = {
  505, 0, "content frame (type 3) on channel 2", build_body_on_rpc_channel,
};
static const BadBytesCase bad_header = {
  505, 0, "content frame (type 2) on channel 2", build_header_on_rpc_channel,
};
static const BadBytesCase bad_undecodable = {
  502, 0, "Truncated queue", build_undecodable,
};
static const BadBytesCase bad_utf8 = {
  502, 0, "UTF-8", build_bad_utf8,
};
static const BadBytesCase bad_unknown_method = {
  540, 0, "Unknown method: class 99, method 1", build_unknown_method,
};
static const BadBytesCase bad_channel_zero = {
  503, CAREHARE_METHOD_CONNECTION_TUNE, "unexpected connection.tune on channel 0",
  build_unexpected_on_channel_zero,
};
static const BadBytesCase bad_method_channel_zero = {
  503, CAREHARE_METHOD_QUEUE_DECLARE_OK, "unexpected queue.declare-ok on channel 0",
  build_method_on_channel_zero,
};

static void
test_bad_bytes (Fixture       *f,
                gconstpointer  data)
{
  const BadBytesCase *bc = data;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *a, *b, *late, *close_c;

  handshake (f, 2047, 4096, 0);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_declare_ok (f, 1, "a"));
  assert_ok (a);
  assert_pending (b);

  bc->build (buf);
  g_assert_false (feed (f, buf->data, buf->len));

  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, bc->message);
  assert_failed (b, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (b->error, bc->message);

  /* The client tells the server why, with the right reply code. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  g_assert_cmpuint (m->connection_close.reply_code, ==, bc->reply_code);
  g_assert_cmpuint (m->connection_close.class_id, ==, CAREHARE_METHOD_CLASS_ID (bc->method_id));
  g_assert_cmpuint (m->connection_close.method_id, ==, CAREHARE_METHOD_METHOD_ID (bc->method_id));
  g_assert_true (g_str_has_prefix (m->connection_close.reply_text,
                                   carehare_reply_code_name (bc->reply_code)));
  g_assert_cmpuint (strlen (m->connection_close.reply_text), <=, 255);

  /* Nothing more, whatever happens next. */
  g_assert_false (server_heartbeat (f));
  g_assert_false (server_declare_ok (f, 2, "b"));
  f->now += 3600 * SEC;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==, G_MAXINT64);
  late = rpc_declare (f, "late");
  assert_failed (late, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  close_c = close_start (f);
  assert_failed (close_c, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_no_output (f);
  g_assert_cmpuint (f->n_finished, ==, 1);
}

static void
test_bad_bytes_split (Fixture       *f,
                      gconstpointer  data)
{
  /* The same, one byte at a time. */
  f->split = TRUE;
  test_bad_bytes (f, data);
}

/* ======================================================================== */
/* the server's text in error messages                                      */
/* ======================================================================== */

/* A Connection.Close (@channel 0) or Channel.Close whose reply text is
 * @text_len raw bytes: the encoder refuses to write text that is not
 * UTF-8, and a server need not care. */
static void
encode_raw_close (GByteArray *buf,
                  guint16     channel,
                  guint16     reply_code,
                  const char *text,
                  gsize       text_len,
                  guint32     failing_method)
{
  guint32 id = channel == 0 ? CAREHARE_METHOD_CONNECTION_CLOSE : CAREHARE_METHOD_CHANNEL_CLOSE;
  guint32 size = 4 + 2 + 1 + text_len + 4;
  guint8 head[] = {
    CAREHARE_FRAME_METHOD, channel >> 8, channel & 0xff,
    size >> 24, (size >> 16) & 0xff, (size >> 8) & 0xff, size & 0xff,
    (id >> 24) & 0xff, (id >> 16) & 0xff, (id >> 8) & 0xff, id & 0xff,
    reply_code >> 8, reply_code & 0xff, (guint8) text_len,
  };
  guint8 tail[] = {
    (failing_method >> 24) & 0xff, (failing_method >> 16) & 0xff,
    (failing_method >> 8) & 0xff, failing_method & 0xff, 0xce,
  };

  g_assert_cmpuint (text_len, <=, 255);
  g_byte_array_append (buf, head, sizeof head);
  g_byte_array_append (buf, (const guint8 *) text, text_len);
  g_byte_array_append (buf, tail, sizeof tail);
}

static void
assert_valid_utf8 (const GError *error)
{
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  if (!g_utf8_validate (error->message, -1, NULL))
    g_error ("error message is not valid UTF-8");
}

/* RabbitMQ quotes names other clients chose ("no queue 'caf\xe9'"); a
 * reply text that is not UTF-8 still fails only the operation its
 * channel ran, with the reply code and the readable part of the text,
 * and the message is valid UTF-8. Before, the strict decoding of the
 * text turned it into a connection error (BAD_BYTES_FROM_SERVER). */
static void
test_text_channel_close_not_utf8 (Fixture       *f,
                                  gconstpointer  data)
{
  static const char text[] = "\xff\xfe NOT_FOUND - no queue 'caf\xe9'";
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Completion *a, *b;

  connect_default (f);
  a = rpc_declare (f, "a");
  b = rpc_declare (f, "b");
  g_ptr_array_unref (take_sent (f));

  encode_raw_close (buf, 1, 404, text, strlen (text), CAREHARE_METHOD_QUEUE_DECLARE);
  g_assert_true (feed (f, buf->data, buf->len));
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  assert_valid_utf8 (a->error);
  g_assert_cmpuint (carehare_error_get_reply_code (a->error), ==, 404);
  assert_message_contains (a->error, "NOT_FOUND - no queue 'caf");
  assert_pending (b);
  g_assert_false (carehare_protocol_is_finished (f->p));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_assert_true (server_declare_ok (f, 2, "b"));
  assert_ok (b);
}

typedef struct {
  const char *text;           /* raw reply text */
  gsize len;                  /* 0: strlen (text) */
  const char *readable;       /* must survive into the message */
} TextCase;

static const TextCase text_latin1 = {
  "CONNECTION_FORCED - closed by 'caf\xe9' \xff\xfe", 0, "CONNECTION_FORCED - closed by 'caf",
};

/* 255 bytes: an invalid byte, then 127 two-byte characters; replacing the
 * first makes it 257 bytes, which must be cut at a character boundary. */
static char long_text[256];
static const TextCase text_long = { long_text, 255, "\xc3\xa9\xc3\xa9\xc3\xa9" };

static void
test_text_connection_close_not_utf8 (Fixture       *f,
                                     gconstpointer  data)
{
  const TextCase *tc = data;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Completion *a;

  if (tc == &text_long)
    {
      long_text[0] = '\xff';
      for (guint i = 1; i < 255; i += 2)
        memcpy (long_text + i, "\xc3\xa9", 2);
    }
  connect_default (f);
  a = rpc_declare (f, "a");
  g_ptr_array_unref (take_sent (f));

  encode_raw_close (buf, 0, 320, tc->text, tc->len > 0 ? tc->len : strlen (tc->text), 0);
  g_assert_false (feed (f, buf->data, buf->len));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE_OK);

  /* The server's close, not bad bytes. */
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  assert_valid_utf8 (f->finish_error);
  g_assert_cmpuint (carehare_error_get_reply_code (f->finish_error), ==, 320);
  assert_message_contains (f->finish_error, tc->readable);
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_valid_utf8 (a->error);
  assert_message_contains (a->error, tc->readable);
}

typedef struct {
  const char *offered;
  const char *readable;
} OfferCase;

static const OfferCase offer_latin1 = {
  "AMQPLAIN caf\xe9-AUTH \xff\xfe SCRAM", "AMQPLAIN caf",
};
/* Past 200 bytes the list is cut: here inside a two-byte character. */
static const OfferCase offer_long = {
  "X\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
  "X\xc3\xa9\xc3\xa9",
};

/* The mechanisms a server offers are its own bytes (a long string): the
 * message that names them is valid UTF-8, cut at a character boundary. */
static void
test_text_mechanisms_not_utf8 (Fixture       *f,
                               gconstpointer  data)
{
  const OfferCase *oc = data;

  start (f);
  g_assert_false (server_start_full (f, 0, 9, oc->offered));
  g_assert_nonnull (f->handshake->error);
  assert_valid_utf8 (f->handshake->error);
  assert_message_contains (f->handshake->error, "PLAIN");
  assert_message_contains (f->handshake->error, oc->readable);
  assert_no_output (f);
}

/* ======================================================================== */

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) \
  g_test_add ("/protocol/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
#define ADD_DATA(path, data, func) \
  g_test_add ("/protocol/" path, Fixture, data, fixture_setup, func, fixture_teardown)

  ADD ("handshake/header", test_handshake_header);
  ADD ("handshake/start-ok/plain", test_handshake_start_ok_plain);
  ADD ("handshake/start-ok/credentials", test_handshake_start_ok_credentials);
  ADD ("handshake/start-ok/external", test_handshake_start_ok_external);
  ADD_DATA ("handshake/mechanism-not-offered/plain", &mechanism_plain_missing,
            test_handshake_mechanism_not_offered);
  ADD_DATA ("handshake/mechanism-not-offered/external", &mechanism_external_missing,
            test_handshake_mechanism_not_offered);
  ADD ("handshake/bad-version", test_handshake_bad_version);
  g_test_add_func ("/protocol/handshake/tune/negotiation", test_handshake_tune_negotiation);
  ADD ("handshake/tune/huge-frame-max-offer", test_handshake_huge_frame_max_offer);
  ADD ("handshake/tune/bytes", test_handshake_tune_ok_bytes);
  ADD ("handshake/open-ok", test_handshake_open_ok);
  ADD_DATA ("handshake/server-close/access-refused", &close_access_refused,
            test_handshake_server_close);
  ADD_DATA ("handshake/server-close/not-allowed", &close_not_allowed,
            test_handshake_server_close);
  ADD ("handshake/rejected-protocol-header", test_handshake_rejected_header);
  ADD ("handshake/garbage/http", test_handshake_garbage);
  ADD ("handshake/garbage/starts-with-a", test_handshake_garbage_a);
  ADD_DATA ("handshake/tls-record/alert", tls_alert, test_handshake_tls_record);
  ADD_DATA ("handshake/tls-record/handshake", tls_handshake, test_handshake_tls_record);
  ADD ("handshake/tls-record/not-first", test_handshake_tls_byte_later);
  ADD ("handshake/abort", test_handshake_abort);
  ADD ("handshake/abort-before-start", test_handshake_abort_before_start);
  ADD ("handshake/cancel", test_handshake_cancel);
  ADD ("handshake/secure", test_handshake_secure);
  ADD ("handshake/start-twice", test_handshake_start_twice);
  ADD ("handshake/channel-method", test_handshake_channel_method);
  g_test_add_func ("/protocol/handshake/split-bytes", test_handshake_split_bytes);
  g_test_add_func ("/protocol/handshake/split-bytes-bad", test_handshake_split_bytes_bad);

  ADD ("heartbeat/deadline", test_heartbeat_deadline);
  ADD ("heartbeat/keepalive", test_heartbeat_keepalive);
  ADD ("heartbeat/counters", test_heartbeat_counters);
  ADD ("heartbeat/timeout", test_heartbeat_timeout);
  ADD ("heartbeat/disabled", test_heartbeat_disabled);
  ADD ("heartbeat/server-zero", test_heartbeat_server_zero);

  ADD ("rpc/pipelined", test_rpc_pipelined);
  ADD ("rpc/server-named", test_rpc_server_named);
  ADD ("rpc/reuse", test_rpc_reuse);
  ADD ("rpc/concurrent", test_rpc_concurrent);
  ADD ("rpc/other-methods", test_rpc_other_methods);
  ADD ("rpc/channel-closed-by-server", test_rpc_channel_closed_by_server);
  ADD ("rpc/channel-closed-idle", test_rpc_channel_closed_idle);
  ADD ("rpc/channel-max-fifo", test_rpc_channel_max_fifo);
  ADD ("rpc/cancel-waiting", test_rpc_cancel_waiting);
  ADD ("rpc/cancel-sent", test_rpc_cancel_sent);
  ADD ("rpc/cancel-crossed", test_rpc_cancel_crossed);
  ADD ("rpc/unencodable", test_rpc_unencodable);
  ADD ("rpc/too-large", test_rpc_too_large);
  ADD ("rpc/empty-queue-name", test_rpc_empty_queue_name);
  ADD ("rpc/reentrant", test_rpc_reentrant);
  ADD ("rpc/reentrant-failure", test_rpc_reentrant_failure);
  ADD ("rpc/channel-flow", test_rpc_channel_flow);
  ADD ("rpc/before-open", test_rpc_before_open);

  ADD ("close/clean", test_close_clean);
  ADD ("close/replies-in-flight", test_close_replies_in_flight);
  ADD ("close/timeout", test_close_timeout);
  ADD ("close/heartbeat-while-closing", test_close_heartbeat_while_closing);
  ADD ("close/after-server-close", test_close_after_server_close);
  ADD ("close/crossed", test_close_crossed);
  ADD ("close/idempotent", test_close_idempotent);
  ADD ("close/cancel", test_close_cancel);
  ADD ("close/during-handshake", test_close_during_handshake);
  ADD ("close/before-start", test_close_before_start);
  ADD ("close/by-server", test_close_by_server);
  ADD ("close/by-server-names-request", test_close_by_server_names_request);
  ADD ("close/by-server-names-consumer-start", test_close_by_server_names_consumer_start);
  ADD ("close/abort-while-open", test_close_abort_while_open);
  ADD ("close/abort-while-closing", test_close_abort_while_closing);
  ADD ("close/free-pending", test_close_free_pending);
  ADD ("close/free-pending-rpcs", test_close_free_pending_rpcs);
  ADD ("close/free-in-callback/abort", test_close_free_in_callback_abort);
  ADD ("close/free-in-callback/receive", test_close_free_in_callback_receive);
  ADD ("close/free-handshake", test_close_free_handshake);

  ADD ("blocked", test_blocked);

  ADD ("update-secret/bytes", test_update_secret_bytes);
  ADD ("update-secret/in-order", test_update_secret_in_order);
  ADD ("update-secret/refused", test_update_secret_refused);
  ADD ("update-secret/closed", test_update_secret_closed);
  ADD ("update-secret/too-large", test_update_secret_too_large);

  ADD_DATA ("bad-bytes/frame-end", &bad_frame_end, test_bad_bytes);
  ADD_DATA ("bad-bytes/frame-type", &bad_frame_type, test_bad_bytes);
  ADD_DATA ("bad-bytes/frame-too-large", &bad_frame_too_large, test_bad_bytes);
  ADD_DATA ("bad-bytes/heartbeat-on-channel", &bad_heartbeat_channel, test_bad_bytes);
  ADD_DATA ("bad-bytes/channel-never-opened", &bad_channel_never_opened, test_bad_bytes);
  ADD_DATA ("bad-bytes/channel-above-max", &bad_channel_above_max, test_bad_bytes);
  ADD_DATA ("bad-bytes/unexpected-on-pooled-channel", &bad_unexpected_pooled, test_bad_bytes);
  ADD_DATA ("bad-bytes/wrong-reply", &bad_wrong_reply, test_bad_bytes);
  ADD_DATA ("bad-bytes/unasked-close-ok", &bad_unasked_close_ok, test_bad_bytes);
  ADD_DATA ("bad-bytes/body-on-rpc-channel", &bad_body, test_bad_bytes);
  ADD_DATA ("bad-bytes/header-on-rpc-channel", &bad_header, test_bad_bytes);
  ADD_DATA ("bad-bytes/undecodable", &bad_undecodable, test_bad_bytes);
  ADD_DATA ("bad-bytes/bad-utf8", &bad_utf8, test_bad_bytes);
  ADD_DATA ("bad-bytes/unknown-method", &bad_unknown_method, test_bad_bytes);
  ADD_DATA ("bad-bytes/unexpected-on-channel-zero", &bad_channel_zero, test_bad_bytes);
  ADD_DATA ("bad-bytes/channel-method-on-channel-zero", &bad_method_channel_zero,
            test_bad_bytes);
  ADD_DATA ("bad-bytes/split/frame-end", &bad_frame_end, test_bad_bytes_split);
  ADD_DATA ("bad-bytes/split/frame-too-large", &bad_frame_too_large, test_bad_bytes_split);
  ADD_DATA ("bad-bytes/split/undecodable", &bad_undecodable, test_bad_bytes_split);

  ADD ("server-text/channel-close-not-utf8", test_text_channel_close_not_utf8);
  ADD_DATA ("server-text/connection-close-not-utf8", &text_latin1,
            test_text_connection_close_not_utf8);
  ADD_DATA ("server-text/connection-close-long", &text_long, test_text_connection_close_not_utf8);
  ADD_DATA ("server-text/mechanisms-not-utf8", &offer_latin1, test_text_mechanisms_not_utf8);
  ADD_DATA ("server-text/mechanisms-long", &offer_long, test_text_mechanisms_not_utf8);

#undef ADD
#undef ADD_DATA

  return g_test_run ();
}
