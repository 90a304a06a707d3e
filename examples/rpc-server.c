/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The server half of request/reply ("RPC") over RabbitMQ: consumes requests
 * from a named queue and answers each one on the queue named by its
 * reply_to property, with the request's correlation_id, so that the client
 * can tell which request a reply belongs to. The answer is the request text
 * in upper case.
 *
 * A request is acknowledged only once the broker confirmed its reply: if
 * the server dies in between, the broker delivers the request again (to
 * this server or another one), so no request goes unanswered.
 *
 *   rpc-server URI QUEUE [--count N]
 *
 * With --count N it exits after answering N requests; otherwise it runs
 * until SIGINT or SIGTERM.
 */
#include <carehare-glib/carehare-glib.h>
#include <glib-unix.h>

#include "example-common.h"

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  const char *queue;
  guint count;     /* 0: forever */
  guint answered;
  guint in_flight; /* replies published but not yet confirmed */
  gboolean stopping;
  int status;
} App;

typedef struct {
  App *app;
  guint64 delivery_tag;
} Reply;

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
  if (app->stopping)
    return;
  app->stopping = TRUE;
  if (app->consumer != NULL)
    carehare_consumer_close_async (app->consumer, NULL, NULL, NULL);
  if (app->conn != NULL)
    carehare_connection_close_async (app->conn, NULL, closed_cb, app);
  else
    g_main_loop_quit (app->loop);
}

static gboolean
signal_cb (gpointer user_data)
{
  App *app = user_data;

  g_print ("signal received: closing\n");
  stop (app);
  return G_SOURCE_CONTINUE;
}

static void
reply_published_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  Reply *reply = user_data;
  App *app = reply->app;
  g_autoptr(GError) error = NULL;

  app->in_flight--;
  if (!carehare_connection_publish_finish (app->conn, result, &error))
    {
      if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE))
        {
          /* The client's reply queue is gone (the client gave up or died):
           * nobody can use the answer, so the request is done with. */
          g_printerr ("reply dropped: the client's reply queue no longer exists\n");
        }
      else if (app->stopping)
        {
          /* We are closing: the request was not acknowledged, so the
           * broker delivers it again to the next server. */
          g_free (reply);
          return;
        }
      else
        {
          /* Not acknowledged: the broker will deliver the request again. */
          print_error ("replying", error);
          app->status = 1;
          stop (app);
          g_free (reply);
          return;
        }
    }

  if (!app->stopping)
    carehare_consumer_ack (app->consumer, reply->delivery_tag);
  g_free (reply);

  app->answered++;
  if (app->count != 0 && app->answered >= app->count && app->in_flight == 0)
    stop (app);
}

static void
delivery_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(CarehareProperties) reply_props = NULL;
  g_autoptr(GBytes) answer = NULL;
  g_autofree char *text = NULL;
  CarehareProperties *props;
  const char *reply_to;
  const char *correlation_id;
  GBytes *body;
  Reply *reply;

  delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
  if (delivery == NULL)
    {
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED))
        {
          print_error ("consuming requests", error);
          app->status = 1;
          stop (app);
        }
      return;
    }

  props = carehare_delivery_get_properties (delivery);
  reply_to = carehare_properties_get_reply_to (props);
  correlation_id = carehare_properties_get_correlation_id (props);
  if (reply_to == NULL || *reply_to == '\0')
    {
      /* A request nobody waits for: reject it without requeueing, or it
       * would come back forever. */
      g_printerr ("request without reply_to: rejected\n");
      carehare_consumer_nack (app->consumer, carehare_delivery_get_delivery_tag (delivery), FALSE);
      carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
      return;
    }

  body = carehare_delivery_get_body (delivery);
  g_print ("request %s: %.*s\n", correlation_id ? correlation_id : "(none)",
           (int) g_bytes_get_size (body), (const char *) g_bytes_get_data (body, NULL));
  text = g_utf8_strup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
  answer = g_bytes_new (text, strlen (text));

  /* The reply carries the request's correlation_id: the client may have
   * many requests in flight on one reply queue. */
  reply_props = carehare_properties_new ();
  carehare_properties_set_correlation_id (reply_props, correlation_id);
  carehare_properties_set_content_type (reply_props, "text/plain");

  reply = g_new0 (Reply, 1);
  reply->app = app;
  reply->delivery_tag = carehare_delivery_get_delivery_tag (delivery);
  app->in_flight++;
  /* The default exchange routes to the queue named by the routing key;
   * MANDATORY reports a reply queue that no longer exists. Not for a
   * direct reply-to name (what carehare_connection_call_async() sends):
   * no queue has it, so RabbitMQ returns a mandatory reply as unroutable
   * even though it delivered it, and drops by itself the reply to a
   * client that is gone. */
  carehare_connection_publish_async (app->conn, "", reply_to, answer, reply_props,
                                     g_str_has_prefix (reply_to, "amq.rabbitmq.reply-to.")
                                       ? CAREHARE_PUBLISH_FLAGS_NONE
                                       : CAREHARE_PUBLISH_FLAGS_MANDATORY,
                                     NULL, reply_published_cb, reply);

  /* Take the next request only while more are wanted. */
  if (app->count == 0 || app->answered + app->in_flight < app->count)
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
  g_print ("waiting for requests on %s\n", app->queue);
  carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;

  queue = carehare_connection_queue_declare_finish (app->conn, result, NULL, NULL, &error);
  if (queue == NULL)
    {
      print_error ("declaring the request queue", error);
      app->status = 1;
      stop (app);
      return;
    }
  /* Prefetch 10: at most ten requests are being answered at once. */
  carehare_connection_acking_consumer_async (app->conn, app->queue, 0, 10, NULL,
                                             consumer_cb, app);
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
  carehare_connection_queue_declare_async (app->conn, app->queue, CAREHARE_QUEUE_FLAGS_NONE,
                                           NULL, NULL, declared_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };
  int count = 0;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  GOptionEntry entries[] = {
    { "count", 'n', 0, G_OPTION_ARG_INT, &count, "Exit after answering N requests", "N" },
    { NULL }
  };

  context = g_option_context_new ("URI QUEUE");
  g_option_context_set_summary (context, "Answers requests from QUEUE on their reply_to queue.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || argc != 3 || count < 0)
    {
      g_printerr ("usage: %s URI QUEUE [--count N]\n", argv[0]);
      return 2;
    }
  app.queue = argv[2];
  app.count = (guint) count;
  app.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGINT, signal_cb, &app);
  g_unix_signal_add (SIGTERM, signal_cb, &app);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_main_loop_unref (app.loop);
  return app.status;
}
