/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Publishes messages to a queue with publisher confirms and reports, for
 * each, whether the broker took responsibility for it.
 *
 *   publisher URI QUEUE MESSAGE...
 */
#include <carehare-glib/carehare-glib.h>

#include "example-common.h"

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  const char *queue;
  char **messages;
  guint pending;
  int status;
} App;

typedef struct {
  App *app;
  char *text;
} Publish;

static void
closed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_close_finish (app->conn, result, &error))
    print_error ("closing", error);
  g_main_loop_quit (app->loop);
}

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Publish *publish = user_data;
  App *app = publish->app;
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (app->conn, result, &error))
    g_print ("confirmed: %s\n", publish->text);
  else
    {
      /* Only this message failed; the others complete on their own. */
      print_error (publish->text, error);
      app->status = 1;
    }
  g_free (publish->text);
  g_free (publish);

  if (--app->pending == 0)
    carehare_connection_close_async (app->conn, NULL, closed_cb, app);
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  g_autoptr(CarehareProperties) props = carehare_properties_new ();

  queue = carehare_connection_queue_declare_finish (app->conn, result, NULL, NULL, &error);
  if (queue == NULL)
    {
      print_error ("declaring the queue", error);
      app->status = 1;
      carehare_connection_close_async (app->conn, NULL, closed_cb, app);
      return;
    }

  /* Persistent messages survive a broker restart in a durable queue. */
  carehare_properties_set_delivery_mode (props, 2);
  carehare_properties_set_content_type (props, "text/plain");
  for (char **m = app->messages; *m != NULL; m++)
    {
      Publish *publish = g_new0 (Publish, 1);
      g_autoptr(GBytes) body = g_bytes_new (*m, strlen (*m));

      publish->app = app;
      publish->text = g_strdup (*m);
      app->pending++;
      carehare_connection_publish_async (app->conn, "", queue, body, props,
                                         CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                         published_cb, publish);
    }
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
    {
      print_error ("connecting", error);
      app->status = 1;
      g_main_loop_quit (app->loop);
      return;
    }
  carehare_connection_queue_declare_async (app->conn, app->queue, CAREHARE_QUEUE_FLAGS_DURABLE,
                                           NULL, NULL, declared_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (!example_parse_args (&argc, &argv, "URI QUEUE MESSAGE...",
                           "Declares QUEUE and publishes each MESSAGE to it with "
                           "publisher confirms.", 3, -1))
    return 2;
  app.messages = argv + 3;
  app.queue = argv[2];
  app.loop = g_main_loop_new (NULL, FALSE);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.conn);
  g_main_loop_unref (app.loop);
  return app.status;
}
