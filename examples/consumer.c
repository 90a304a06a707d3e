/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Consumes messages from a queue, acknowledging each, until COUNT messages
 * arrived (0: until Ctrl-C), then closes cleanly.
 *
 *   consumer URI QUEUE [COUNT]
 */
#include <carehare-glib/carehare-glib.h>
#include <glib-unix.h>

#include "example-common.h"

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  const char *queue;
  guint count;
  guint received;
  int status;
} App;

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
stop (App *app)
{
  if (app->consumer != NULL)
    carehare_consumer_close_async (app->consumer, NULL, NULL, NULL);
  if (app->conn != NULL)
    carehare_connection_close_async (app->conn, NULL, closed_cb, app);
  else
    g_main_loop_quit (app->loop);
}

static gboolean
sigint_cb (gpointer user_data)
{
  App *app = user_data;

  g_print ("interrupted: closing\n");
  stop (app);
  return G_SOURCE_REMOVE;
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
    {
      /* CHANNEL_CLOSED is the end of the stream we asked for. */
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED))
        {
          print_error ("consuming", error);
          app->status = 1;
          stop (app);
        }
      return;
    }

  body = carehare_delivery_get_body (delivery);
  g_print ("received%s: %.*s\n", carehare_delivery_get_redelivered (delivery) ? " (again)" : "",
           (int) g_bytes_get_size (body), (const char *) g_bytes_get_data (body, NULL));
  carehare_consumer_ack (app->consumer, carehare_delivery_get_delivery_tag (delivery));

  if (app->count != 0 && ++app->received >= app->count)
    stop (app);
  else
    carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
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
      print_error ("starting the consumer", error);
      app->status = 1;
      stop (app);
      return;
    }
  g_print ("waiting for messages on %s\n", app->queue);
  carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
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
  /* Prefetch 10: at most ten unacknowledged messages are ever held. */
  carehare_connection_acking_consumer_async (app->conn, app->queue, 0, 10, NULL,
                                             consumer_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (!example_parse_args (&argc, &argv, "URI QUEUE [COUNT]",
                           "Consumes QUEUE, acknowledging each message, until COUNT "
                           "messages (or Ctrl-C).", 2, 3))
    return 2;
  app.queue = argv[2];
  app.count = argc > 3 ? (guint) g_ascii_strtoull (argv[3], NULL, 10) : 0;
  app.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGINT, sigint_cb, &app);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_main_loop_unref (app.loop);
  return app.status;
}
