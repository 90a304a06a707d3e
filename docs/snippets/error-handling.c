/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Error handling: what each failure looks like, and a connection that
 * reconnects with backoff.
 *
 *   error-handling URI
 *
 * Connects through a keeper that retries with exponential backoff, then
 * provokes, and checks, the errors a program meets most: a missing queue
 * (404 on that operation only), a missing exchange on publish, an
 * unroutable mandatory message, and a pending operation failing when the
 * connection closes. Shown in docs/error-handling.md and run by the tests.
 */
#include <carehare-glib/carehare-glib.h>

#include <string.h>

/* ---- a connection that comes back --------------------------------------- */

typedef struct {
  char *uri;
  guint delay_ms;               /* the next wait: doubles up to a minute */
  CarehareConnection *conn;     /* owned while connected */
  /* called after each (re)connection, and when retrying cannot help */
  void (*connected) (CarehareConnection *conn, gpointer user_data);
  void (*gave_up) (const GError *error, gpointer user_data);
  gpointer user_data;
} Keeper;

static void keeper_connect (Keeper *keeper);

static gboolean
keeper_retry_cb (gpointer user_data)
{
  keeper_connect (user_data);
  return G_SOURCE_REMOVE;
}

static void
keeper_schedule_retry (Keeper       *keeper,
                       const GError *error)
{
  /* Jitter spreads out many clients that lost the same broker. */
  guint wait_ms = keeper->delay_ms / 2 + g_random_int_range (0, keeper->delay_ms / 2 + 1);

  g_printerr ("%s: retrying in %u ms\n", error->message, wait_ms);
  keeper->delay_ms = MIN (keeper->delay_ms * 2, 60000);
  g_timeout_add (wait_ms, keeper_retry_cb, keeper);
}

static void
keeper_closed_cb (CarehareConnection *conn,
                  const GError       *error,
                  gpointer            user_data)
{
  Keeper *keeper = user_data;

  /* Every operation that was pending has failed with
   * CAREHARE_ERROR_CONNECTION_CLOSED by now, and every consumer has ended.
   * The dead connection is released when the next one replaces it. */
  g_signal_handlers_disconnect_by_data (conn, keeper);
  if (error == NULL)
    return;                   /* the program closed it */
  if (carehare_error_is_transient (error))
    keeper_schedule_retry (keeper, error);
  else
    keeper->gave_up (error, keeper->user_data);
}

static void
keeper_connected_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  Keeper *keeper = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = carehare_connection_new_finish (result, &error);

  if (conn == NULL)
    {
      if (carehare_error_is_transient (error))
        keeper_schedule_retry (keeper, error);
      else
        keeper->gave_up (error, keeper->user_data);
      return;
    }
  g_set_object (&keeper->conn, conn);
  keeper->delay_ms = 1000;
  g_signal_connect (conn, "closed", G_CALLBACK (keeper_closed_cb), keeper);
  /* Declarations of exclusive or auto-delete queues, consumers and
   * unconfirmed publishes do not outlive a connection: redo them here. */
  keeper->connected (conn, keeper->user_data);
}

static void
keeper_connect (Keeper *keeper)
{
  carehare_connection_new_async (keeper->uri, NULL, keeper_connected_cb, keeper);
}

/* ---- the errors, one after another --------------------------------------- */

typedef struct {
  GMainLoop *loop;
  Keeper keeper;
  CarehareConnection *conn;     /* not owned: the keeper's */
  CarehareConsumer *consumer;
  char *queue;
  guint pending;                /* checks still running */
  int status;
} App;

static void start_consumer (App *app);

/* Prints @error and checks that it is the one expected. */
static void
expect (App          *app,
        const char   *what,
        const GError *error,
        int           code,
        guint         reply_code)
{
  if (error == NULL)
    {
      g_printerr ("%s: succeeded, expected an error\n", what);
      app->status = 1;
      return;
    }
  g_print ("%s: %s (reply code %u)\n", what, error->message,
           carehare_error_get_reply_code (error));
  if (!g_error_matches (error, CAREHARE_ERROR, code) ||
      carehare_error_get_reply_code (error) != reply_code)
    app->status = 1;
}

static void
check_done (App *app)
{
  if (--app->pending == 0)
    start_consumer (app);
}

static void
passive_declare_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  App *app = user_data;
  CarehareConnection *conn = CAREHARE_CONNECTION (source);
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;

  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  if (queue == NULL &&
      g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER) &&
      carehare_error_get_reply_code (error) == 404)
    {
      /* Only this operation failed: the connection is still open. */
      g_print ("no such queue (connection still open: %s): %s\n",
               carehare_connection_get_is_closed (conn) ? "no" : "yes", error->message);
    }
  else
    expect (app, "passive declare", error, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 404);
  check_done (app);
}

static void
publish_missing_exchange_cb (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  carehare_connection_publish_finish (app->conn, result, &error);
  expect (app, "publish to a missing exchange", error,
          CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 404);
  check_done (app);
}

static void
publish_unroutable_cb (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  /* The broker's return carries 312 NO_ROUTE. */
  carehare_connection_publish_finish (app->conn, result, &error);
  expect (app, "unroutable mandatory publish", error, CAREHARE_ERROR_UNROUTABLE, 312);
  check_done (app);
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("hello", 5);

  app->queue = carehare_connection_queue_declare_finish (app->conn, result, NULL, NULL, &error);
  if (app->queue == NULL)
    {
      expect (app, "declare", error, -1, 0);
      g_main_loop_quit (app->loop);
      return;
    }
  /* No queue is bound to this routing key: with MANDATORY the broker
   * returns the message and the publish fails with UNROUTABLE. */
  carehare_connection_publish_async (app->conn, "", "carehare-docs-nobody-listens", body,
                                     NULL, CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                     publish_unroutable_cb, app);
}

static void
connected (CarehareConnection *conn,
           gpointer            user_data)
{
  App *app = user_data;
  g_autoptr(GBytes) body = g_bytes_new_static ("hello", 5);

  app->conn = conn;
  app->pending = 3;
  /* Each operation runs on a channel of its own: these fail or succeed
   * independently, in any order. */
  carehare_connection_queue_declare_async (conn, "carehare-docs-no-such-queue",
                                           CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           passive_declare_cb, app);
  carehare_connection_publish_async (conn, "carehare-docs-no-such-exchange", "key", body,
                                     NULL, CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                     publish_missing_exchange_cb, app);
  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                           NULL, NULL, declared_cb, app);
}

static void
pending_delivery_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
  expect (app, "waiting for a delivery when the connection closes", error,
          CAREHARE_ERROR_CONNECTION_CLOSED, 0);
}

static void
closed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_close_finish (app->conn, result, &error))
    {
      g_printerr ("close: %s\n", error->message);
      app->status = 1;
    }
  g_main_loop_quit (app->loop);
}

static void
consumer_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  app->consumer = carehare_connection_acking_consumer_finish (app->conn, result, &error);
  if (app->consumer == NULL)
    {
      expect (app, "consume", error, -1, 0);
      g_main_loop_quit (app->loop);
      return;
    }
  /* The queue is empty, so this waits, until the connection closes and
   * completes it with CAREHARE_ERROR_CONNECTION_CLOSED: nothing hangs. */
  carehare_consumer_next_delivery_async (app->consumer, NULL, pending_delivery_cb, app);
  carehare_connection_close_async (app->conn, NULL, closed_cb, app);
}

static void
start_consumer (App *app)
{
  carehare_connection_acking_consumer_async (app->conn, app->queue, 0, 10, NULL,
                                             consumer_cb, app);
}

static void
gave_up (const GError *error,
         gpointer      user_data)
{
  App *app = user_data;

  g_printerr ("giving up: %s\n", error->message);
  app->status = 1;
  g_main_loop_quit (app->loop);
}

static void
bad_uri_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = carehare_connection_new_finish (result, &error);

  /* Even a malformed URI is reported here, never by the _async call. */
  expect (app, "connecting to http://localhost", error, CAREHARE_ERROR_INVALID_URI, 0);
  if (conn != NULL || carehare_error_is_transient (error))
    app->status = 1;

  app->keeper.connected = connected;
  app->keeper.gave_up = gave_up;
  app->keeper.user_data = app;
  keeper_connect (&app->keeper);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (argc != 2)
    {
      g_printerr ("usage: %s amqp://user:password@host:port/vhost\n", argv[0]);
      return 2;
    }

  app.loop = g_main_loop_new (NULL, FALSE);
  app.keeper.uri = argv[1];
  app.keeper.delay_ms = 1000;
  carehare_connection_new_async ("http://localhost", NULL, bad_uri_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.keeper.conn);
  g_clear_object (&app.consumer);
  g_free (app.queue);
  g_main_loop_unref (app.loop);
  return app.status;
}
