/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The publish/consume round trip: declare a server-named queue, publish a
 * few messages with publisher confirms, consume them with acks, close.
 *
 *   round-trip URI [COUNT]
 *
 * For example, against the bundled broker over TLS with a client
 * certificate:
 *
 *   eval "$(test-server/broker env)"
 *   round-trip "$CAREHARE_TEST_AMQPS_URI" 3
 */
#include <carehare-glib/carehare-glib.h>

#include "example-common.h"

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  char *queue;
  guint count;
  guint confirmed;
  guint received;
  int status;
} App;

static void closed_cb (GObject *source, GAsyncResult *result, gpointer user_data);

static void
finish (App *app)
{
  if (app->conn != NULL)
    carehare_connection_close_async (app->conn, NULL, closed_cb, app);
  else
    g_main_loop_quit (app->loop);
}

static void
fail (App          *app,
      const char   *what,
      const GError *error)
{
  print_error (what, error);
  app->status = 1;
  finish (app);
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
  else
    g_print ("closed the connection\n");
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
  CarehareProperties *props;

  delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
  if (delivery == NULL)
    return fail (app, "receiving", error);

  body = carehare_delivery_get_body (delivery);
  props = carehare_delivery_get_properties (delivery);
  g_print ("received: \"%.*s\" (message-id %s, tag %" G_GUINT64_FORMAT ")\n",
           (int) g_bytes_get_size (body), (const char *) g_bytes_get_data (body, NULL),
           carehare_properties_get_message_id (props),
           carehare_delivery_get_delivery_tag (delivery));
  /* Acks never fail and are never awaited. */
  carehare_consumer_ack (app->consumer, carehare_delivery_get_delivery_tag (delivery));

  if (++app->received < app->count)
    carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
  else
    {
      g_print ("round trip complete: %u sent, %u confirmed, %u received\n",
               app->count, app->confirmed, app->received);
      finish (app);
    }
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
    return fail (app, "starting the consumer", error);
  g_print ("consuming from %s\n", app->queue);
  carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
}

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (app->conn, result, &error))
    return fail (app, "publishing", error);
  g_print ("confirmed by the broker: message %u\n", ++app->confirmed);
  if (app->confirmed == app->count)
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

  app->queue = carehare_connection_queue_declare_finish (app->conn, result, NULL, NULL, &error);
  if (app->queue == NULL)
    return fail (app, "declaring the queue", error);
  g_print ("declared queue %s\n", app->queue);

  /* Publishes may all be in flight at once; each completes on its own. */
  for (guint i = 1; i <= app->count; i++)
    {
      g_autofree char *text = g_strdup_printf ("hello %u from carehare-glib", i);
      g_autofree char *id = g_strdup_printf ("message-%u", i);
      g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));
      g_autoptr(CarehareProperties) props = carehare_properties_new ();

      carehare_properties_set_content_type (props, "text/plain");
      carehare_properties_set_message_id (props, id);
      g_print ("sending: \"%s\"\n", text);
      carehare_connection_publish_async (app->conn, "", app->queue, body, props,
                                         CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                         published_cb, app);
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
    return fail (app, "connecting", error);
  g_print ("connected\n");
  /* "" lets the broker name the queue; exclusive: it goes with us. */
  carehare_connection_queue_declare_async (app->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                           NULL, NULL, declared_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (!example_parse_args (&argc, &argv, "URI [COUNT]",
                           "Declares a server-named queue, publishes COUNT messages "
                           "(3 by default) and consumes them back.", 1, 2))
    return 2;
  app.count = argc > 2 ? (guint) g_ascii_strtoull (argv[2], NULL, 10) : 3;
  if (app.count == 0)
    app.count = 1;

  app.loop = g_main_loop_new (NULL, FALSE);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_free (app.queue);
  g_main_loop_unref (app.loop);
  return app.status;
}
