/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Security: a TLS server with an expired certificate, or one for another
 * host name, is refused with a G_TLS_ERROR that names the reason; a client
 * certificate the broker refuses is a G_TLS_ERROR naming it, every time,
 * while a connection lost after the TLS handshake is a closed connection;
 * server_name_indication=disable skips only the host name check; and no
 * password ever shows in an error message, in any log output (every domain,
 * debug included, captured in-process), or in a property of the connection,
 * whether the connection works, is refused, or its URI is malformed.
 */
#include "carehare-test-util.h"

#include "loopback-server.h"

#include <string.h>

#define TIMEOUT_MS 20000

/* ---- a TLS server with a bad certificate --------------------------------- */

typedef enum {
  TLS_SERVE_HANDSHAKE_ONLY,  /* handshake (the client may refuse it), close */
  TLS_SERVE_DROP,            /* handshake, read the AMQP header, drop TCP: no close_notify */
  TLS_SERVE_TRUNCATE,        /* handshake, read the header, half a record, drop TCP */
} TlsServeMode;

typedef struct {
  LoopbackServer *server;
  guint16 port;
  GTlsCertificate *certificate;
  TlsServeMode mode;
} TlsServer;

static void
tls_serve (GSocketConnection *connection,
           gpointer           user_data)
{
  /* A record header announcing 64 bytes of application data, and 16 of them. */
  static const guint8 truncated[] = { 0x17, 0x03, 0x03, 0x00, 0x40,
                                      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
  TlsServer *srv = user_data;
  GSocket *socket = g_socket_connection_get_socket (connection);
  g_autoptr(GIOStream) tls = NULL;
  g_autoptr(GError) error = NULL;
  guint8 header[8];
  gsize n = 0;

  tls = g_tls_server_connection_new (G_IO_STREAM (connection), srv->certificate, &error);
  g_assert_no_error (error);
  if (srv->mode == TLS_SERVE_HANDSHAKE_ONLY)
    {
      /* The client refuses the certificate: the handshake fails here too. */
      g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, NULL);
      g_io_stream_close (tls, NULL, NULL);
      return;
    }

  g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, &error);
  g_assert_no_error (error);
  /* All of the client's header, so that closing sends a FIN, not a reset. */
  g_input_stream_read_all (g_io_stream_get_input_stream (tls), header, sizeof header, &n,
                           NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (header, n, "AMQP\x00\x00\x09\x01", 8);
  if (srv->mode == TLS_SERVE_TRUNCATE)
    {
      g_socket_send (socket, (const char *) truncated, sizeof truncated, NULL, &error);
      g_assert_no_error (error);
    }
  /* Under the TLS layer: no close_notify. */
  g_socket_shutdown (socket, FALSE, TRUE, NULL);
  g_socket_close (socket, NULL);
}

static TlsServer *
tls_server_new_full (const char   *cert_name,
                     TlsServeMode  mode)
{
  TlsServer *srv = g_new0 (TlsServer, 1);
  const char *dir = carehare_test_cert_dir ();
  g_autofree char *cert_file = g_strdup_printf ("%s/%s.pem", dir, cert_name);
  g_autofree char *key_file = g_strdup_printf ("%s/%s-key.pem", dir, cert_name);
  g_autoptr(GError) error = NULL;

  srv->certificate = g_tls_certificate_new_from_files (cert_file, key_file, &error);
  g_assert_no_error (error);
  srv->mode = mode;
  srv->server = loopback_server_new (tls_serve, srv);
  srv->port = loopback_server_get_port (srv->server);
  return srv;
}

static TlsServer *
tls_server_new (const char *cert_name)
{
  return tls_server_new_full (cert_name, TLS_SERVE_HANDSHAKE_ONLY);
}

static void
tls_server_free (TlsServer *srv)
{
  loopback_server_free (srv->server);
  g_object_unref (srv->certificate);
  g_free (srv);
}

static void
assert_tls_refused (const char *cert_name,
                    const char *reason)
{
  TlsServer *srv = tls_server_new (cert_name);
  g_autofree char *ca = g_build_filename (carehare_test_cert_dir (), "ca.pem", NULL);
  g_autofree char *uri = g_strdup_printf ("amqps://guest:guest@localhost:%u/?cacertfile=%s",
                                          srv->port, ca);
  g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

  g_assert_error (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
  g_assert_false (carehare_error_is_transient (error));
  g_test_message ("%s: %s", cert_name, error->message);
  g_assert_nonnull (strstr (error->message, reason));
  tls_server_free (srv);
}

static void
test_tls_expired_certificate (void)
{
  assert_tls_refused ("expired-server", "expired");
}

static void
test_tls_host_name_mismatch (void)
{
  assert_tls_refused ("wronghost-server", "host name");
}

static void
test_tls_trusted_certificate_works (void)
{
  /* The same server with a good certificate gets past TLS: the control
   * case (the connection then fails on AMQP, as this server speaks none). */
  TlsServer *srv = tls_server_new ("server");
  g_autofree char *ca = g_build_filename (carehare_test_cert_dir (), "ca.pem", NULL);
  g_autofree char *uri = g_strdup_printf ("amqps://guest:guest@localhost:%u/?cacertfile=%s",
                                          srv->port, ca);
  g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

  g_assert_nonnull (error);
  g_test_message ("good certificate: %s", error->message);
  g_assert_false (error->domain == G_TLS_ERROR && error->code == G_TLS_ERROR_BAD_CERTIFICATE);
  tls_server_free (srv);
}

/* ---- server_name_indication=disable -------------------------------------- */

static char *
sni_disabled_uri (const char *host,
                  const char *ca_name)
{
  const char *dir = carehare_test_cert_dir ();
  g_autofree char *ca = g_build_filename (dir, ca_name, NULL);
  g_autofree char *cert = g_build_filename (dir, "client.pem", NULL);
  g_autofree char *key = g_build_filename (dir, "client-key.pem", NULL);

  return g_strdup_printf ("amqps://%s:%s/?cacertfile=%s&certfile=%s&keyfile=%s"
                          "&server_name_indication=disable",
                          host, g_getenv ("CAREHARE_TEST_BROKER_TLS_PORT"), ca, cert, key);
}

static void
test_tls_sni_disabled (void)
{
  /* No SNI and no host name check, but a verified chain: the broker's
   * certificate, from the trusted CA, is accepted whatever the host. */
  const char *hosts[] = { "localhost", "127.0.0.1" };

  for (gsize i = 0; i < G_N_ELEMENTS (hosts); i++)
    {
      g_autofree char *uri = sni_disabled_uri (hosts[i], "ca.pem");
      g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
      g_autoptr(GAsyncResult) closed = NULL;
      g_autoptr(GError) error = NULL;

      carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
      carehare_test_wait_for_result (&closed, TIMEOUT_MS);
      g_assert_true (carehare_connection_close_finish (conn, closed, &error));
      g_assert_no_error (error);
    }
}

static void
test_tls_sni_disabled_untrusted (void)
{
  /* ... and a chain from a CA we do not trust is still refused. */
  g_autofree char *uri = sni_disabled_uri ("localhost", "other-ca.pem");
  g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

  g_assert_error (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
  g_assert_false (carehare_error_is_transient (error));
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "trusted certificate authority"));
  g_assert_null (strstr (error->message, "host name"));
}

/* A server whose certificate names another host (wrong.example), from the
 * trusted CA: with server_name_indication=disable the host name is not
 * checked, so TLS succeeds (the connection then fails on AMQP, as this
 * server speaks none); the same server is refused for its host name
 * without the parameter (/security/tls/host-name-mismatch). What the host
 * name check does not cover is still checked: an expired certificate is
 * refused. */
static void
test_tls_sni_disabled_host_mismatch (void)
{
  static const struct {
    const char *cert_name;
    const char *refusal;  /* NULL: accepted */
  } servers[] = {
    { "wronghost-server", NULL },
    { "expired-server", "expired" },
  };
  g_autofree char *ca = g_build_filename (carehare_test_cert_dir (), "ca.pem", NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (servers); i++)
    {
      TlsServer *srv = tls_server_new (servers[i].cert_name);
      g_autofree char *uri = g_strdup_printf ("amqps://guest:guest@localhost:%u/?cacertfile=%s"
                                              "&server_name_indication=disable",
                                              srv->port, ca);
      g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

      g_assert_nonnull (error);
      g_test_message ("%s: %s %d: %s", servers[i].cert_name, g_quark_to_string (error->domain),
                      error->code, error->message);
      if (servers[i].refusal == NULL)
        {
          g_assert_false (error->domain == G_TLS_ERROR);
          g_assert_null (strstr (error->message, "host name"));
        }
      else
        {
          g_assert_error (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
          g_assert_nonnull (strstr (error->message, servers[i].refusal));
        }
      tls_server_free (srv);
    }
}

/* ---- the network drops after the handshake ------------------------------- */

static void
assert_tls_drop_is_closed (TlsServeMode mode)
{
  /* A load balancer that resets its clients while the broker restarts:
   * the handshake completed, the certificates are fine, and the
   * connection is lost during the AMQP negotiation. That is a closed
   * connection, worth a retry, not a TLS configuration problem. */
  TlsServer *srv = tls_server_new_full ("server", mode);
  g_autofree char *ca = g_build_filename (carehare_test_cert_dir (), "ca.pem", NULL);
  g_autofree char *uri = g_strdup_printf ("amqps://guest:guest@localhost:%u/?cacertfile=%s",
                                          srv->port, ca);
  g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

  g_assert_nonnull (error);
  g_test_message ("%s %d: %s", g_quark_to_string (error->domain), error->code, error->message);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_null (strstr (error->message, "handshake with"));
  g_assert_nonnull (strstr (error->message, "TLS"));
  tls_server_free (srv);
}

static void
test_tls_drop_after_handshake (void)
{
  assert_tls_drop_is_closed (TLS_SERVE_DROP);
}

static void
test_tls_truncated_record (void)
{
  assert_tls_drop_is_closed (TLS_SERVE_TRUNCATE);
}

/* ---- the broker refuses our certificate ---------------------------------- */

static void
test_tls_untrusted_client_certificate (void)
{
  /* With TLS 1.3 the broker judges our certificate after our side of the
   * handshake completed; its alert, then its reset, race our first write.
   * Whatever the race, the caller must get the broker's refusal, a TLS
   * error naming the certificate: not a closed connection (which a
   * reconnect loop would retry forever). */
  const char *dir = carehare_test_cert_dir ();
  g_autofree char *ca = g_build_filename (dir, "ca.pem", NULL);
  g_autofree char *cert = g_build_filename (dir, "other-client.pem", NULL);
  g_autofree char *key = g_build_filename (dir, "other-client-key.pem", NULL);
  g_autofree char *q = g_strdup_printf ("/?cacertfile=%s&certfile=%s&keyfile=%s", ca, cert, key);
  g_autofree char *uri = carehare_test_amqps_uri_with (q);

  for (guint i = 0; i < 20; i++)
    {
      g_autoptr(GError) error = carehare_test_connect_error (uri, TIMEOUT_MS);

      g_assert_nonnull (error);
      g_test_message ("run %u: %s %d: %s", i, g_quark_to_string (error->domain), error->code,
                      error->message);
      g_assert_true (error->domain == G_TLS_ERROR);
      g_assert_nonnull (strstr (error->message, "client certificate"));
      g_assert_nonnull (strstr (error->message, "other-client.pem"));
    }
}

static void
test_tls_untrusted_client_certificate_property (void)
{
  /* The same through the tls-certificate property: named by its subject. */
  const char *dir = carehare_test_cert_dir ();
  g_autofree char *ca = g_build_filename (dir, "ca.pem", NULL);
  g_autofree char *cert = g_build_filename (dir, "other-client.pem", NULL);
  g_autofree char *key = g_build_filename (dir, "other-client-key.pem", NULL);
  g_autofree char *q = g_strdup_printf ("/?cacertfile=%s", ca);
  g_autofree char *uri = carehare_test_amqps_uri_with (q);
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GError) error = NULL;

  certificate = g_tls_certificate_new_from_files (cert, key, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 5; i++)
    {
      g_autoptr(GAsyncResult) result = NULL;
      g_autoptr(GObject) source = NULL;
      g_autoptr(GObject) conn = NULL;

      g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, NULL,
                                  carehare_test_store_result, &result,
                                  "uri", uri, "tls-certificate", certificate, NULL);
      carehare_test_wait_for_result (&result, TIMEOUT_MS);
      source = g_async_result_get_source_object (result);
      conn = g_async_initable_new_finish (G_ASYNC_INITABLE (source), result, &error);
      g_assert_null (conn);
      g_assert_nonnull (error);
      g_test_message ("run %u: %s", i, error->message);
      g_assert_true (error->domain == G_TLS_ERROR);
      g_assert_nonnull (strstr (error->message, "client certificate"));
      g_assert_nonnull (strstr (error->message, "CN=guest"));
      g_clear_error (&error);
    }
}

/* ---- no password anywhere ------------------------------------------------ */

static GMutex log_lock;
static GString *captured_log;  /* owned, under log_lock */

static GLogWriterOutput
capture_writer (GLogLevelFlags   log_level,
                const GLogField *fields,
                gsize            n_fields,
                gpointer         user_data)
{
  g_mutex_lock (&log_lock);
  if (captured_log != NULL)
    for (gsize i = 0; i < n_fields; i++)
      {
        if (fields[i].length < 0)
          g_string_append (captured_log, fields[i].value);
        else
          g_string_append_len (captured_log, fields[i].value, fields[i].length);
        g_string_append_c (captured_log, ' ');
        if (i + 1 == n_fields)
          g_string_append_c (captured_log, '\n');
      }
  g_mutex_unlock (&log_lock);

  if (log_level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    return g_log_writer_default (log_level, fields, n_fields, user_data);
  return G_LOG_WRITER_HANDLED;
}

static char *
take_log (void)
{
  char *text;

  g_mutex_lock (&log_lock);
  text = g_strdup (captured_log->str);
  g_string_truncate (captured_log, 0);
  g_mutex_unlock (&log_lock);
  return text;
}

/* Fails the test if any of @secrets is in @text. */
static void
assert_no_secret (const char         *what,
                  const char         *text,
                  const char * const *secrets)
{
  for (const char * const *s = secrets; *s != NULL; s++)
    if (text != NULL && strstr (text, *s) != NULL)
      g_error ("the password piece '%s' appears in %s: %s", *s, what, text);
}

/* Every readable property of @object, as text. */
static void
assert_properties_clean (GObject            *object,
                         const char * const *secrets)
{
  guint n = 0;
  g_autofree GParamSpec **pspecs = g_object_class_list_properties (G_OBJECT_GET_CLASS (object), &n);

  g_assert_cmpuint (n, >, 0);
  for (guint i = 0; i < n; i++)
    {
      g_auto(GValue) value = G_VALUE_INIT;
      g_autofree char *contents = NULL;
      g_autofree char *what = NULL;

      if (!(pspecs[i]->flags & G_PARAM_READABLE))
        {
          /* The URI is write-only: it may hold a password. */
          continue;
        }
      g_value_init (&value, pspecs[i]->value_type);
      g_object_get_property (object, pspecs[i]->name, &value);
      contents = g_strdup_value_contents (&value);
      what = g_strdup_printf ("property %s", pspecs[i]->name);
      assert_no_secret (what, contents, secrets);
    }
}

/* Connects with @uri; on success runs a declare, a publish and a close.
 * Checks errors, logs and properties for @secrets; returns the connect
 * error, if any. */
static GError *
run_scenario (const char         *uri,
              const char * const *secrets)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GObject) source = NULL;
  g_autoptr(GObject) object = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *log = NULL;
  CarehareConnection *conn;

  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, NULL,
                              carehare_test_store_result, &result, "uri", uri, NULL);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  source = g_async_result_get_source_object (result);
  object = g_async_initable_new_finish (G_ASYNC_INITABLE (source), result, &error);
  /* Even a connection that failed to initialise is an object to inspect. */
  assert_properties_clean (source, secrets);

  if (object != NULL)
    {
      g_autoptr(GAsyncResult) declared = NULL;
      g_autoptr(GAsyncResult) published = NULL;
      g_autoptr(GAsyncResult) closed = NULL;
      g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);
      g_autofree char *queue = NULL;

      conn = CAREHARE_CONNECTION (object);
      carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                               carehare_test_store_result, &declared);
      carehare_test_wait_for_result (&declared, TIMEOUT_MS);
      queue = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
      g_assert_no_error (error);
      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, carehare_test_store_result, &published);
      carehare_test_wait_for_result (&published, TIMEOUT_MS);
      g_assert_true (carehare_connection_publish_finish (conn, published, &error));
      assert_properties_clean (object, secrets);
      carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
      carehare_test_wait_for_result (&closed, TIMEOUT_MS);
      g_assert_true (carehare_connection_close_finish (conn, closed, &error));
      assert_properties_clean (object, secrets);
    }
  else
    {
      g_assert_nonnull (error);
      g_test_message ("refused: %s", error->message);
      assert_no_secret ("the error message", error->message, secrets);
    }

  /* Let late debug output (socket closing) arrive too. */
  g_clear_object (&object);
  g_clear_object (&source);
  carehare_test_run_for (50);
  log = take_log ();
  assert_no_secret ("the log output", log, secrets);
  return g_steal_pointer (&error);
}

static char *
uri_with_credentials (const char *userinfo,
                      const char *rest)
{
  return g_strdup_printf ("amqp://%s@127.0.0.1:%s%s", userinfo,
                          g_getenv ("CAREHARE_TEST_BROKER_PORT"), rest);
}

/* A broker user of its own, with a distinctive password. */
static char *
add_user (const char *password)
{
  char *user = carehare_test_unique_name ("secuser");

  g_free (carehare_test_broker_ctl ("add_user", user, password, NULL));
  g_free (carehare_test_broker_ctl ("set_permissions", "-p", "/", user, ".*", ".*", ".*", NULL));
  return user;
}

static void
test_password_never_shown_working (void)
{
  /* Plain, then one that needs percent-encoding (@ : / % in it). */
  static const char *const secrets[] = { "Quokka", "p@ss", "p%40ss", NULL };
  const char *plain = "Zebra-Quokka-7319-secret";
  const char *awkward = "p@ss:w/rd%Quokka-5521";
  g_autofree char *user1 = add_user (plain);
  g_autofree char *user2 = add_user (awkward);
  g_autofree char *encoded = g_uri_escape_string (awkward, NULL, FALSE);
  g_autofree char *info1 = g_strdup_printf ("%s:%s", user1, plain);
  g_autofree char *info2 = g_strdup_printf ("%s:%s", user2, encoded);
  g_autofree char *uri1 = uri_with_credentials (info1, "/?heartbeat=5");
  g_autofree char *uri2 = uri_with_credentials (info2, "/");
  GError *error;

  g_assert_nonnull (strstr (encoded, "%40"));
  error = run_scenario (uri1, secrets);
  g_assert_no_error (error);
  error = run_scenario (uri2, secrets);
  g_assert_no_error (error);

  g_free (carehare_test_broker_ctl ("delete_user", user1, NULL));
  g_free (carehare_test_broker_ctl ("delete_user", user2, NULL));
}

static void
test_password_never_shown_refused (void)
{
  static const char *const secrets[] = { "Walrus", "Wr@ng", "Wr%40ng", NULL };
  g_autofree char *info1 = g_strdup ("guest:Wrong-Walrus-4411");
  g_autofree char *info2 = g_strdup ("guest:Wr%40ng%2FWalrus%25-4412");
  g_autofree char *uri1 = uri_with_credentials (info1, "/");
  g_autofree char *uri2 = uri_with_credentials (info2, "/");
  GError *error;

  error = run_scenario (uri1, secrets);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);
  g_clear_error (&error);
  error = run_scenario (uri2, secrets);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_clear_error (&error);
}

static guint16
silent_listener (GSocket **out)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;
  GSocket *socket;

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_socket_bind (socket, address, TRUE, &error);
  g_assert_no_error (error);
  g_socket_listen (socket, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  *out = socket;
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static void
test_password_never_shown_malformed (void)
{
  static const char *const secrets[] = { "Moose", NULL };
  g_autoptr(GSocket) silent = NULL;
  guint16 silent_port = silent_listener (&silent);
  g_autofree char *timeout_uri = g_strdup_printf ("amqp://u:Timeout-Moose-11@127.0.0.1:%u/"
                                                  "?connection_timeout=300", silent_port);
  g_autofree char *refused_uri = NULL;
  const char *uris[] = {
    "amqp://u:Malformed-Moose-1@127.0.0.1:notaport/",
    "amqp://u:Malformed-Moose-2@127.0.0.1:5672/?heartbeat=abc",
    "amqp://u:Malformed-Moose-3@127.0.0.1:5672/?no_such_param=1",
    "amqp://u:Malformed%zzMoose-4@127.0.0.1/",
    "http://u:Malformed-Moose-5@127.0.0.1/",
    "amqp://u:Malformed-Moose-6@[::1/",
    "amqp://u:Malformed-Moose-7@127.0.0.1:5672/a/b",
    "amqps://u:Malformed-Moose-8@127.0.0.1:5672/?cacertfile=/nonexistent/ca.pem",
    "amqp://u:Malformed-Moose-9@127.0.0.1:5672/?channel_max=99999999",
    "amqp://u:Malformed-Moose-10@127.0.0.1:5672/?heartbeat=1&heartbeat=2",
    "amqp://u:Malformed-Moose-12@/",
    "amqp://u:Malformed Moose 13@127.0.0.1/",
    "amqp://:Malformed-Moose-14@127.0.0.1:1/%ZZ",
  };
  GError *error;

  for (gsize i = 0; i < G_N_ELEMENTS (uris); i++)
    {
      error = run_scenario (uris[i], secrets);
      g_assert_nonnull (error);
      g_clear_error (&error);
    }

  /* Nobody listening, and a server that never speaks. */
  {
    g_autoptr(GSocket) probe = NULL;
    guint16 closed_port = silent_listener (&probe);

    g_socket_close (probe, NULL);
    refused_uri = g_strdup_printf ("amqp://u:Refused-Moose-15@127.0.0.1:%u/", closed_port);
  }
  error = run_scenario (refused_uri, secrets);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
  error = run_scenario (timeout_uri, secrets);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
}

static void
test_log_capture_works (void)
{
  /* The capture sees the library's debug output: the checks above are not
   * vacuous. */
  static const char *const none[] = { NULL };
  g_autofree char *uri = carehare_test_amqp_uri_with ("/");
  g_autofree char *log = NULL;
  GError *error = run_scenario (uri, none);

  g_assert_no_error (error);
  /* run_scenario() took the log; run a failing one and look at it here. */
  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, NULL, NULL, NULL,
                              "uri", "amqp://guest:Capture-Check-99@127.0.0.1:1/", NULL);
  carehare_test_run_for (500);
  log = take_log ();
  g_assert_nonnull (strstr (log, "Carehare"));
  g_assert_nonnull (strstr (log, "connecting to amqp://guest:"));
  g_assert_null (strstr (log, "Capture-Check-99"));
}

int
main (int argc, char *argv[])
{
  /* Every domain's debug output, through the capturing writer. */
  g_setenv ("G_MESSAGES_DEBUG", "all", TRUE);
  g_test_init (&argc, &argv, NULL);
  g_log_set_debug_enabled (TRUE);
  captured_log = g_string_new (NULL);
  g_log_set_writer_func (capture_writer, NULL, NULL);

  g_test_add_func ("/security/tls/expired-certificate", test_tls_expired_certificate);
  g_test_add_func ("/security/tls/host-name-mismatch", test_tls_host_name_mismatch);
  g_test_add_func ("/security/tls/trusted-certificate-control", test_tls_trusted_certificate_works);
  g_test_add_func ("/security/tls/sni-disabled", test_tls_sni_disabled);
  g_test_add_func ("/security/tls/sni-disabled-untrusted", test_tls_sni_disabled_untrusted);
  g_test_add_func ("/security/tls/sni-disabled-host-mismatch", test_tls_sni_disabled_host_mismatch);
  g_test_add_func ("/security/tls/drop-after-handshake", test_tls_drop_after_handshake);
  g_test_add_func ("/security/tls/truncated-record", test_tls_truncated_record);
  g_test_add_func ("/security/tls/untrusted-client-certificate", test_tls_untrusted_client_certificate);
  g_test_add_func ("/security/tls/untrusted-client-certificate-property",
                   test_tls_untrusted_client_certificate_property);
  g_test_add_func ("/security/password/log-capture-works", test_log_capture_works);
  g_test_add_func ("/security/password/working-connections", test_password_never_shown_working);
  g_test_add_func ("/security/password/refused-logins", test_password_never_shown_refused);
  g_test_add_func ("/security/password/malformed-and-failing-uris", test_password_never_shown_malformed);

  return g_test_run ();
}
