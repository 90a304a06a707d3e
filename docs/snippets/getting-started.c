/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Getting started: connect, declare a queue, publish one message with a
 * publisher confirm, consume it with an ack, close. Then the same
 * connection lifecycle in a worker thread with a main context of its own.
 *
 *   getting-started URI
 *
 * Shown in docs/getting-started.md and run by the tests.
 */
#include <carehare-glib/carehare-glib.h>

#include <string.h>

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  char *queue;
  int status;
} App;

static void closed_cb (GObject *source, GAsyncResult *result, gpointer user_data);

/* Ends the program: close the connection if there is one, then quit. */
static void
finish (App          *app,
        const char   *what,
        const GError *error)
{
  if (error != NULL)
    {
      g_printerr ("%s failed: %s\n", what, error->message);
      app->status = 1;
    }
  if (app->conn != NULL)
    carehare_connection_close_async (app->conn, NULL, closed_cb, app);
  else
    g_main_loop_quit (app->loop);
}

static void
closed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  /* FALSE only if the server or the heartbeat monitor closed it first. */
  if (!carehare_connection_close_finish (app->conn, result, &error))
    g_printerr ("the connection had closed: %s\n", error->message);
  g_main_loop_quit (app->loop);
}

static void
delivery_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  GBytes *body;

  delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
  if (delivery == NULL)
    return finish (app, "receiving", error);

  body = carehare_delivery_get_body (delivery);
  g_print ("received \"%.*s\"\n", (int) g_bytes_get_size (body),
           (const char *) g_bytes_get_data (body, NULL));
  /* Settle every delivery: ack() never fails and is not awaited. */
  carehare_consumer_ack (app->consumer, carehare_delivery_get_delivery_tag (delivery));
  finish (app, NULL, NULL);
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
    return finish (app, "starting the consumer", error);
  carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
}

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  /* TRUE once the broker has taken responsibility for the message. */
  if (!carehare_connection_publish_finish (app->conn, result, &error))
    return finish (app, "publishing", error);
  g_print ("the broker confirmed the message\n");

  /* Prefetch 10: the broker sends at most 10 unacknowledged messages. */
  carehare_connection_acking_consumer_async (app->conn, app->queue, 0, 10, NULL,
                                             consumer_cb, app);
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(CarehareProperties) props = NULL;
  const char *text = "Hello from carehare-glib";

  app->queue = carehare_connection_queue_declare_finish (app->conn, result, NULL, NULL, &error);
  if (app->queue == NULL)
    return finish (app, "declaring the queue", error);
  g_print ("declared %s\n", app->queue);

  body = g_bytes_new (text, strlen (text));
  props = carehare_properties_new ();
  carehare_properties_set_content_type (props, "text/plain");
  /* The default exchange "" routes to the queue named by the routing key;
   * MANDATORY makes an unroutable message an error instead of a loss. */
  carehare_connection_publish_async (app->conn, "", app->queue, body, props,
                                     CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                     published_cb, app);
}

static void
connected_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  app->conn = carehare_connection_new_finish (result, &error);
  if (app->conn == NULL)
    return finish (app, "connecting", error);

  /* "": the broker picks the name; EXCLUSIVE: the queue goes when we do. */
  carehare_connection_queue_declare_async (app->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                           NULL, NULL, declared_cb, app);
}

static void
store_result_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* A worker thread with a connection of its own: the connection runs on the
 * main context that is thread-default where it is created, and that
 * context must be iterated until every call, the close included, has
 * completed. */
static gpointer
worker_thread (gpointer data)
{
  const char *uri = data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  gboolean ok = FALSE;

  g_main_context_push_thread_default (context);
  carehare_connection_new_async (uri, NULL, store_result_cb, &result);
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  conn = carehare_connection_new_finish (result, &error);
  g_clear_object (&result);

  if (conn != NULL)
    {
      carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                               NULL, NULL, store_result_cb, &result);
      while (result == NULL)
        g_main_context_iteration (context, TRUE);
      queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
      g_clear_object (&result);

      /* Iterate until the close completed: only then is the socket closed
       * (and the connection closed on the broker). */
      carehare_connection_close_async (conn, NULL, store_result_cb, &result);
      while (result == NULL)
        g_main_context_iteration (context, TRUE);
      ok = carehare_connection_close_finish (conn, result, error == NULL ? &error : NULL) &&
           queue != NULL;
    }
  if (error != NULL)
    g_printerr ("worker: %s\n", error->message);
  g_main_context_pop_thread_default (context);
  return GINT_TO_POINTER (ok);
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
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  if (!GPOINTER_TO_INT (g_thread_join (g_thread_new ("worker", worker_thread, argv[1]))))
    app.status = 1;
  else
    g_print ("the worker thread declared a queue and closed its connection\n");

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_free (app.queue);
  g_main_loop_unref (app.loop);
  return app.status;
}
