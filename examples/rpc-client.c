/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client half of request/reply ("RPC") over RabbitMQ: declares an
 * exclusive, server-named reply queue, sends every REQUEST to QUEUE with
 * reply_to set to that queue and a correlation_id of its own, and matches
 * each reply to its request by correlation_id. Replies may arrive in any
 * order; a reply for an unknown correlation_id (a late answer to an earlier
 * run, say) is ignored.
 *
 *   rpc-client URI QUEUE REQUEST...
 *
 * Exits 0 once every request was answered, 1 on an error or when the
 * answers do not arrive within 10 seconds (is rpc-server running?).
 */
#include <carehare-glib/carehare-glib.h>

#include "explain-error.h"

#define REPLY_TIMEOUT_SECONDS 10

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  const char *queue;
  char **requests;
  char *reply_queue;
  GHashTable *pending; /* owned correlation_id -> borrowed request text */
  guint timeout_id;
  gboolean stopping;
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
stop (App *app,
      int  status)
{
  if (status != 0)
    app->status = status;
  if (app->stopping)
    return;
  app->stopping = TRUE;
  g_clear_handle_id (&app->timeout_id, g_source_remove);
  if (app->consumer != NULL)
    carehare_consumer_close_async (app->consumer, NULL, NULL, NULL);
  /* Closing the connection deletes the exclusive reply queue. */
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
              g_hash_table_size (app->pending), REPLY_TIMEOUT_SECONDS, app->queue);
  stop (app, 1);
  return G_SOURCE_REMOVE;
}

static void
reply_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  const char *correlation_id;
  const char *request;
  GBytes *body;

  delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
  if (delivery == NULL)
    {
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED))
        {
          print_error ("waiting for replies", error);
          stop (app, 1);
        }
      return;
    }
  /* Acknowledge at once: a reply is only useful to this run. */
  carehare_consumer_ack (app->consumer, carehare_delivery_get_delivery_tag (delivery));

  correlation_id = carehare_properties_get_correlation_id (carehare_delivery_get_properties (delivery));
  request = correlation_id != NULL ? g_hash_table_lookup (app->pending, correlation_id) : NULL;
  body = carehare_delivery_get_body (delivery);
  if (request == NULL)
    g_printerr ("ignoring a reply with unknown correlation_id %s\n",
                correlation_id != NULL ? correlation_id : "(none)");
  else
    {
      g_print ("%s -> %.*s\n", request,
               (int) g_bytes_get_size (body), (const char *) g_bytes_get_data (body, NULL));
      g_hash_table_remove (app->pending, correlation_id);
    }

  if (g_hash_table_size (app->pending) == 0)
    stop (app, 0);
  else
    carehare_consumer_next_delivery_async (app->consumer, NULL, reply_cb, app);
}

static void
request_published_cb (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (app->conn, result, &error) && !app->stopping)
    {
      if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE))
        g_printerr ("no queue %s: start rpc-server first\n", app->queue);
      else
        print_error ("sending a request", error);
      stop (app, 1);
    }
}

static void
consumer_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autofree char *prefix = g_uuid_string_random ();
  guint i = 0;

  app->consumer = carehare_connection_acking_consumer_finish (app->conn, result, &error);
  if (app->consumer == NULL)
    {
      print_error ("consuming the reply queue", error);
      stop (app, 1);
      return;
    }
  carehare_consumer_next_delivery_async (app->consumer, NULL, reply_cb, app);

  /* The consumer is in place before the first request leaves, and every
   * request is sent at once: the replies come back in any order. */
  carehare_properties_set_reply_to (props, app->reply_queue);
  carehare_properties_set_content_type (props, "text/plain");
  for (char **r = app->requests; *r != NULL; r++, i++)
    {
      g_autoptr(GBytes) body = g_bytes_new (*r, strlen (*r));
      char *correlation_id = g_strdup_printf ("%s-%u", prefix, i);

      g_hash_table_insert (app->pending, correlation_id, *r);
      carehare_properties_set_correlation_id (props, correlation_id);
      /* The properties are copied when the call is made, so one object
       * serves every request. MANDATORY: no request queue, no silence. */
      carehare_connection_publish_async (app->conn, "", app->queue, body, props,
                                         CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                         request_published_cb, app);
    }
  app->timeout_id = g_timeout_add_seconds (REPLY_TIMEOUT_SECONDS, timeout_cb, app);
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  app->reply_queue = carehare_connection_queue_declare_finish (app->conn, result, NULL, NULL, &error);
  if (app->reply_queue == NULL)
    {
      print_error ("declaring the reply queue", error);
      stop (app, 1);
      return;
    }
  carehare_connection_acking_consumer_async (app->conn, app->reply_queue, 0, 100, NULL,
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
      stop (app, 1);
      return;
    }
  /* An empty name: the broker picks a unique one ("amq.gen-..."). Exclusive:
   * only this connection may use it, and it goes away with it. */
  carehare_connection_queue_declare_async (app->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                           NULL, NULL, declared_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };

  if (argc < 4)
    {
      g_printerr ("usage: %s URI QUEUE REQUEST...\n", argv[0]);
      return 2;
    }
  app.queue = argv[2];
  app.requests = argv + 3;
  app.pending = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  app.loop = g_main_loop_new (NULL, FALSE);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_clear_pointer (&app.pending, g_hash_table_unref);
  g_free (app.reply_queue);
  g_main_loop_unref (app.loop);
  return app.status;
}
