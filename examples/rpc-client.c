/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client half of request/reply ("RPC") over RabbitMQ: sends every
 * REQUEST to QUEUE with carehare_connection_call_async(), which uses
 * RabbitMQ's direct reply-to (no reply queue to declare) and matches each
 * reply to its request by correlation_id. All the requests are in flight
 * at once; the replies may arrive in any order.
 *
 *   rpc-client URI QUEUE REQUEST...
 *
 * Exits 0 once every request was answered, 1 on an error or when the
 * answers do not arrive within 10 seconds (is rpc-server running?).
 */
#include <carehare-glib/carehare-glib.h>

#include "example-common.h"

#define REPLY_TIMEOUT_SECONDS 10

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  const char *queue;
  char **requests;
  guint n_pending;
  GCancellable *cancellable;   /* cancelled by the timeout */
  guint timeout_id;
  gboolean stopping;
  gboolean closed;
  int status;
} App;

/* Done once the connection is closed and every call has completed. */
static void
maybe_quit (App *app)
{
  if (app->closed && app->n_pending == 0)
    g_main_loop_quit (app->loop);
}

static void
closed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_close_finish (app->conn, result, &error))
    print_error ("closing", error);
  app->closed = TRUE;
  maybe_quit (app);
}

static void
stop (App *app,
      int  status)
{
  if (status != 0)
    app->status = status;
  if (app->stopping)
    return;
  app->stopping = TRUE;
  g_clear_handle_id (&app->timeout_id, g_source_remove);
  /* Calls still waiting complete with G_IO_ERROR_CANCELLED. */
  g_cancellable_cancel (app->cancellable);
  if (app->conn != NULL)
    carehare_connection_close_async (app->conn, NULL, closed_cb, app);
  else
    g_main_loop_quit (app->loop);
}

static gboolean
timeout_cb (gpointer user_data)
{
  App *app = user_data;

  app->timeout_id = 0;
  g_printerr ("%u request(s) unanswered after %d seconds: is rpc-server consuming %s?\n",
              app->n_pending, REPLY_TIMEOUT_SECONDS, app->queue);
  stop (app, 1);
  return G_SOURCE_REMOVE;
}

typedef struct {
  App *app;
  const char *request;
} Call;

static void
reply_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Call *call = user_data;
  App *app = call->app;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  GBytes *body;

  reply = carehare_connection_call_finish (app->conn, result, &error);
  app->n_pending--;
  if (reply == NULL)
    {
      if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE))
        g_printerr ("no queue %s: start rpc-server first\n", app->queue);
      else if (!app->stopping)
        print_error ("calling", error);
      stop (app, 1);
    }
  else
    {
      body = carehare_delivery_get_body (reply);
      g_print ("%s -> %.*s\n", call->request,
               (int) g_bytes_get_size (body), (const char *) g_bytes_get_data (body, NULL));
      /* A reply needs no acknowledgement. */
    }
  g_free (call);

  if (app->n_pending == 0)
    stop (app, 0);
  maybe_quit (app);
}

static void
connected_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareProperties) props = carehare_properties_new ();

  app->conn = carehare_connection_new_finish (result, &error);
  if (app->conn == NULL)
    {
      print_error ("connecting", error);
      stop (app, 1);
      return;
    }

  /* Every request is sent at once. The library sets reply_to and a fresh
   * correlation_id on each; the properties are copied when the call is
   * made, so one object serves every request. MANDATORY: no request
   * queue, no silence. */
  carehare_properties_set_content_type (props, "text/plain");
  for (char **r = app->requests; *r != NULL; r++)
    {
      g_autoptr(GBytes) body = g_bytes_new (*r, strlen (*r));
      Call *call = g_new0 (Call, 1);

      call->app = app;
      call->request = *r;
      app->n_pending++;
      carehare_connection_call_async (app->conn, "", app->queue, body, props,
                                      CAREHARE_PUBLISH_FLAGS_MANDATORY, app->cancellable,
                                      reply_cb, call);
    }
  app->timeout_id = g_timeout_add_seconds (REPLY_TIMEOUT_SECONDS, timeout_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (!example_parse_args (&argc, &argv, "URI QUEUE REQUEST...",
                           "Sends each REQUEST to QUEUE and prints the reply "
                           "(call_async over direct reply-to).", 3, -1))
    return 2;
  app.queue = argv[2];
  app.requests = argv + 3;
  app.cancellable = g_cancellable_new ();
  app.loop = g_main_loop_new (NULL, FALSE);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.conn);
  g_clear_object (&app.cancellable);
  g_main_loop_unref (app.loop);
  return app.status;
}
