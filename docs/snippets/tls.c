/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TLS: certificates from the URI, certificates as GIO objects with EXTERNAL
 * authentication, and what a certificate problem looks like.
 *
 *   tls amqps://HOST:PORT/ CERT_DIR
 *
 * CERT_DIR holds ca.pem (the CA that signed the broker's certificate),
 * client.pem and client-key.pem (a client certificate whose common name
 * is a RabbitMQ user), and other-ca.pem (a CA the broker has nothing to do
 * with). Shown in docs/tls.md and run by the tests against the test broker,
 * whose TLS listener requires a client certificate.
 */
#include <carehare-glib/carehare-glib.h>

typedef struct _App App;
struct _App {
  GMainLoop *loop;
  const char *base_uri;         /* amqps://host:port/ */
  const char *cert_dir;
  void (*next) (App *app);      /* what to do once the connection closed */
  int status;
};

static void connect_with_objects (App *app, const char *ca_name, GAsyncReadyCallback callback);
static void wrong_ca_cb (GObject *source, GAsyncResult *result, gpointer user_data);
static void external_cb (GObject *source, GAsyncResult *result, gpointer user_data);

static void
closed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  App *app = user_data;

  carehare_connection_close_finish (CAREHARE_CONNECTION (source), result, NULL);
  app->next (app);
}

static void
try_wrong_ca (App *app)
{
  connect_with_objects (app, "other-ca.pem", wrong_ca_cb);
}

static void
try_external (App *app)
{
  connect_with_objects (app, "ca.pem", external_cb);
}

static void
wrong_ca_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = carehare_connection_new_finish (result, &error);

  /* G_TLS_ERROR_BAD_CERTIFICATE, saying why the broker's certificate was
   * refused. Not worth retrying: the configuration must change. */
  if (conn == NULL && g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE))
    g_print ("as expected: %s\n", error->message);
  else
    {
      g_printerr ("expected a certificate error, got %s\n",
                  error != NULL ? error->message : "a connection");
      app->status = 1;
    }
  g_main_loop_quit (app->loop);
}

static void
external_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = carehare_connection_new_finish (result, &error);

  if (conn == NULL)
    {
      g_printerr ("EXTERNAL login failed: %s\n", error->message);
      app->status = 1;
      g_main_loop_quit (app->loop);
      return;
    }
  g_print ("logged in with the client certificate (EXTERNAL)\n");
  app->next = try_wrong_ca;
  carehare_connection_close_async (conn, NULL, closed_cb, app);
}

/* Trusts the CAs in @ca_name only, presents client.pem, and logs in as the
 * certificate's common name: no password anywhere. */
static void
connect_with_objects (App                 *app,
                      const char          *ca_name,
                      GAsyncReadyCallback  callback)
{
  g_autofree char *ca = g_build_filename (app->cert_dir, ca_name, NULL);
  g_autofree char *cert = g_build_filename (app->cert_dir, "client.pem", NULL);
  g_autofree char *key = g_build_filename (app->cert_dir, "client-key.pem", NULL);
  g_autofree char *uri = g_strconcat (app->base_uri, "?auth_mechanism=external", NULL);
  g_autoptr(GTlsDatabase) database = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GError) error = NULL;

  database = g_tls_file_database_new (ca, &error);
  if (database != NULL)
    certificate = g_tls_certificate_new_from_files (cert, key, &error);
  if (certificate == NULL)
    {
      g_printerr ("cannot load the certificates: %s\n", error->message);
      app->status = 1;
      g_main_loop_quit (app->loop);
      return;
    }

  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, NULL,
                              callback, app,
                              "uri", uri,
                              "tls-database", database,
                              "tls-certificate", certificate,
                              NULL);
}

static void
uri_files_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = carehare_connection_new_finish (result, &error);

  if (conn == NULL)
    {
      g_printerr ("connecting with the URI's certificates failed: %s\n", error->message);
      app->status = 1;
      g_main_loop_quit (app->loop);
      return;
    }
  g_print ("connected over TLS, certificates named in the URI\n");
  app->next = try_external;
  carehare_connection_close_async (conn, NULL, closed_cb, app);
}

/* The simplest way: the files in the URI's query, percent-encoded. */
static void
connect_with_uri (App *app)
{
  g_autofree char *ca = g_build_filename (app->cert_dir, "ca.pem", NULL);
  g_autofree char *cert = g_build_filename (app->cert_dir, "client.pem", NULL);
  g_autofree char *key = g_build_filename (app->cert_dir, "client-key.pem", NULL);
  g_autofree char *ca_q = g_uri_escape_string (ca, "/", FALSE);
  g_autofree char *cert_q = g_uri_escape_string (cert, "/", FALSE);
  g_autofree char *key_q = g_uri_escape_string (key, "/", FALSE);
  g_autofree char *uri = g_strdup_printf ("%s?cacertfile=%s&certfile=%s&keyfile=%s",
                                          app->base_uri, ca_q, cert_q, key_q);

  carehare_connection_new_async (uri, NULL, uri_files_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (argc != 3)
    {
      g_printerr ("usage: %s amqps://host:port/ CERT_DIR\n", argv[0]);
      return 2;
    }

  app.loop = g_main_loop_new (NULL, FALSE);
  app.base_uri = argv[1];
  app.cert_dir = argv[2];
  connect_with_uri (&app);
  g_main_loop_run (app.loop);

  g_main_loop_unref (app.loop);
  return app.status;
}
