/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Declares an exchange and a queue, binds them, then unbinds and deletes
 * both: the operations of CarehareConnection, one after the other, on a
 * GMainLoop.
 *
 *   declare-bind-delete [URI]      (default amqp://guest:guest@localhost/)
 */
#include "example-common.h"

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  char *queue;
  int status;
} App;

static void step_closed (GObject *source, GAsyncResult *result, gpointer user_data);

/* Every failure ends the program, after closing the connection. */
static void
fail (App          *app,
      const char   *what,
      const GError *error)
{
  print_error (what, error);
  if (carehare_error_get_reply_code (error) != 0)
    g_printerr ("  (AMQP reply code %u)\n", carehare_error_get_reply_code (error));
  app->status = 1;
  if (app->conn != NULL)
    carehare_connection_close_async (app->conn, NULL, step_closed, app);
  else
    g_main_loop_quit (app->loop);
}

static void
step_closed (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_close_finish (app->conn, result, &error))
    g_printerr ("the connection had already closed: %s\n", error->message);
  else
    g_print ("closed the connection\n");
  g_main_loop_quit (app->loop);
}

static void
step_exchange_deleted (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_exchange_delete_finish (app->conn, result, &error))
    return fail (app, "exchange.delete", error);
  g_print ("deleted exchange carehare-example\n");
  carehare_connection_close_async (app->conn, NULL, step_closed, app);
}

static void
step_queue_deleted (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  guint messages = 0;

  if (!carehare_connection_queue_delete_finish (app->conn, result, &messages, &error))
    return fail (app, "queue.delete", error);
  g_print ("deleted queue %s (it held %u messages)\n", app->queue, messages);
  carehare_connection_exchange_delete_async (app->conn, "carehare-example",
                                             CAREHARE_EXCHANGE_DELETE_FLAGS_IF_UNUSED,
                                             NULL, step_exchange_deleted, app);
}

static void
step_unbound (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_queue_unbind_finish (app->conn, result, &error))
    return fail (app, "queue.unbind", error);
  g_print ("unbound it\n");
  carehare_connection_queue_delete_async (app->conn, app->queue,
                                          CAREHARE_QUEUE_DELETE_FLAGS_IF_EMPTY,
                                          NULL, step_queue_deleted, app);
}

static void
step_bound (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_queue_bind_finish (app->conn, result, &error))
    return fail (app, "queue.bind", error);
  g_print ("bound %s to carehare-example with key 'orders.*'\n", app->queue);
  carehare_connection_queue_unbind_async (app->conn, app->queue, "carehare-example",
                                          "orders.*", NULL, NULL, step_unbound, app);
}

static void
step_queue_declared (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  guint messages = 0, consumers = 0;

  app->queue = carehare_connection_queue_declare_finish (app->conn, result,
                                                         &messages, &consumers, &error);
  if (app->queue == NULL)
    return fail (app, "queue.declare", error);
  g_print ("declared queue %s (%u messages, %u consumers)\n", app->queue, messages, consumers);
  carehare_connection_queue_bind_async (app->conn, app->queue, "carehare-example",
                                        "orders.*", NULL, NULL, step_bound, app);
}

static void
step_exchange_declared (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_exchange_declare_finish (app->conn, result, &error))
    return fail (app, "exchange.declare", error);
  g_print ("declared topic exchange carehare-example\n");
  /* "" asks the server to name the queue; exclusive: it is ours alone. */
  carehare_connection_queue_declare_async (app->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                           NULL, NULL, step_queue_declared, app);
}

static void
step_connected (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  app->conn = carehare_connection_new_finish (result, &error);
  if (app->conn == NULL)
    return fail (app, "connecting", error);
  g_print ("connected (heartbeat %u s)\n", carehare_connection_get_heartbeat (app->conn));
  carehare_connection_exchange_declare_async (app->conn, "carehare-example", "topic",
                                              CAREHARE_EXCHANGE_FLAGS_NONE, NULL, NULL,
                                              step_exchange_declared, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };
  const char *uri;

  if (!example_parse_args (&argc, &argv, "[URI]",
                           "Declares an exchange and a queue, binds, unbinds and deletes "
                           "them (URI: amqp://guest:guest@localhost/ by default).", 0, 1))
    return 2;
  uri = argc > 1 ? argv[1] : "amqp://guest:guest@localhost/";

  app.loop = g_main_loop_new (NULL, FALSE);
  carehare_connection_new_async (uri, NULL, step_connected, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.conn);
  g_free (app.queue);
  g_main_loop_unref (app.loop);
  return app.status;
}
