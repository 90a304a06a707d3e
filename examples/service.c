/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A long-running consumer service: the error-handling pattern to copy.
 *
 *   service URI QUEUE [--exit-after N]
 *
 * It connects, declares a durable QUEUE, and consumes and acknowledges
 * forever. Errors fall into two kinds:
 *
 *  - transient (the broker restarted, an operator closed the connection, the
 *    network dropped, a heartbeat was missed): the connection is dropped and
 *    a new one is made after an exponential backoff with jitter (0.5 s
 *    doubling up to 30 s, reset once consuming works again). Messages that
 *    were delivered but not acknowledged are redelivered by the broker, so
 *    processing must tolerate seeing a message twice ("redelivered" says
 *    when that may be the case);
 *  - permanent (a bad URI, a refused login, an unknown virtual host, a
 *    queue declared elsewhere with other arguments): retrying cannot help,
 *    so the service exits with status 1 and lets its supervisor (systemd,
 *    say) report it.
 *
 * SIGTERM or SIGINT closes the consumer and the connection cleanly and
 * exits 0. With --exit-after N it does the same after processing N
 * messages (for the tests).
 *
 * Everything runs on one GMainLoop; the only state is the App struct.
 */
#define G_LOG_DOMAIN "carehare-service"

#include <carehare-glib/carehare-glib.h>
#include <glib-unix.h>
#include <stdio.h>

#include "example-common.h"

#define BACKOFF_INITIAL_MS 500
#define BACKOFF_MAX_MS     30000

typedef struct {
  GMainLoop *loop;
  const char *uri;
  const char *queue;
  guint exit_after;            /* 0: forever */

  CarehareConnection *conn;    /* owned; NULL while disconnected */
  CarehareConsumer *consumer;  /* owned; NULL unless consuming */
  GCancellable *cancellable;   /* owned; cancels everything of this run on shutdown */
  guint reconnect_id;          /* backoff timer */
  guint backoff_ms;            /* the next delay before jitter */
  guint attempt;

  guint processed;
  gboolean stopping;
  int status;
} App;

static void start_connecting (App *app);
static void lose_connection  (App                *app,
                              CarehareConnection *conn,
                              const char         *what,
                              const GError       *error);

/* Retrying cannot fix these: a person must change the configuration.
 * carehare_error_is_transient() knows which errors go away by themselves;
 * one more is ours to fix by starting over: the broker cancelled our
 * consumer (its queue was deleted, reply code 0), and a new connection
 * declares the queue again. */
static gboolean
error_is_permanent (const GError *error)
{
  if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER) &&
      carehare_error_get_reply_code (error) == 0)
    return FALSE;
  return !carehare_error_is_transient (error);
}

/* ---- shutting down -------------------------------------------------------- */

static void
final_close_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_close_finish (CAREHARE_CONNECTION (source), result, &error))
    g_warning ("closing: %s", error->message);
  g_main_loop_quit (app->loop);
}

static void
shut_down (App *app,
           int  status)
{
  if (status != 0)
    app->status = status;
  if (app->stopping)
    return;
  app->stopping = TRUE;

  g_clear_handle_id (&app->reconnect_id, g_source_remove);
  /* Stops a connection attempt or a declare in progress. */
  g_cancellable_cancel (app->cancellable);
  if (app->consumer != NULL)
    carehare_consumer_close_async (app->consumer, NULL, NULL, NULL);
  if (app->conn != NULL)
    {
      g_signal_handlers_disconnect_by_data (app->conn, app);
      carehare_connection_close_async (app->conn, NULL, final_close_cb, app);
    }
  else
    g_main_loop_quit (app->loop);
}

static gboolean
signal_cb (gpointer user_data)
{
  App *app = user_data;

  g_message ("signal received: closing");
  shut_down (app, 0);
  return G_SOURCE_CONTINUE;
}

/* ---- reconnecting ----------------------------------------------------------- */

static gboolean
reconnect_cb (gpointer user_data)
{
  App *app = user_data;

  app->reconnect_id = 0;
  start_connecting (app);
  return G_SOURCE_REMOVE;
}

static void
schedule_reconnect (App *app)
{
  guint delay_ms;

  if (app->stopping || app->reconnect_id != 0)
    return;
  /* "Equal jitter": half the delay fixed, half random, so that many
   * services dropped by one broker restart do not all come back at once,
   * yet none retries immediately. */
  delay_ms = app->backoff_ms / 2 + (guint) g_random_int_range (0, (gint32) (app->backoff_ms / 2) + 1);
  app->backoff_ms = MIN (app->backoff_ms * 2, BACKOFF_MAX_MS);
  g_message ("reconnecting in %u ms", delay_ms);
  app->reconnect_id = g_timeout_add (delay_ms, reconnect_cb, app);
}

static void
abandoned_close_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  /* Already reported: this connection failed or was closed by the server,
   * and close_finish() repeats why. Nothing left to do. */
  carehare_connection_close_finish (CAREHARE_CONNECTION (source), result, NULL);
}

/* The one place a broken connection is handled, whoever noticed first: the
 * closed signal, a failed declare, or the consumer's stream. */
static void
lose_connection (App                *app,
                 CarehareConnection *conn,
                 const char         *what,
                 const GError       *error)
{
  if (conn != app->conn || app->stopping)
    return; /* an old connection, already dealt with */

  print_error (what, error);
  g_signal_handlers_disconnect_by_data (conn, app);
  /* app->consumer is kept until start_connecting(): we may be running inside
   * one of its callbacks, and dropping the last reference to an object from
   * its own callback pulls it from under the code that called us. */
  /* Idempotent: harmless if the server already closed it, and needed if
   * only a channel failed (a consumer cancelled because its queue was
   * deleted): starting over on a fresh connection redeclares the queue. */
  carehare_connection_close_async (conn, NULL, abandoned_close_cb, NULL);
  g_clear_object (&app->conn);

  if (error_is_permanent (error))
    {
      g_warning ("giving up: this error will not go away by retrying");
      shut_down (app, 1);
      return;
    }
  schedule_reconnect (app);
}

static void
connection_closed_cb (CarehareConnection *conn,
                      const GError       *error,
                      gpointer            user_data)
{
  App *app = user_data;

  /* A NULL error means we closed it ourselves. */
  if (error != NULL)
    lose_connection (app, conn, "the connection", error);
}

/* ---- consuming ------------------------------------------------------------- */

static void
delivery_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  CarehareConsumer *consumer = CAREHARE_CONSUMER (source);
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  GBytes *body;

  delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
  if (consumer != app->consumer || app->conn == NULL)
    return; /* the consumer of a connection we already gave up on */
  if (delivery == NULL)
    {
      /* CHANNEL_CLOSED: we closed it. CONNECTION_CLOSED: the connection's
       * closed signal follows with the cause, and handles it. Anything else
       * (the queue was deleted, a consumer timeout) ended this consumer
       * only: start over on a fresh connection. */
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED) &&
          !g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
        lose_connection (app, app->conn, "consuming", error);
      return;
    }

  /* The work of the service. It must tolerate duplicates: a message whose
   * ack was lost with a connection comes again, marked redelivered. */
  body = carehare_delivery_get_body (delivery);
  g_print ("processed%s: %.*s\n", carehare_delivery_get_redelivered (delivery) ? " (redelivered)" : "",
           (int) g_bytes_get_size (body), (const char *) g_bytes_get_data (body, NULL));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  if (app->exit_after != 0 && ++app->processed >= app->exit_after)
    {
      g_message ("processed %u messages: exiting", app->processed);
      shut_down (app, 0);
      return;
    }
  carehare_consumer_next_delivery_async (consumer, NULL, delivery_cb, app);
}

static void
consumer_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  CarehareConnection *conn = CAREHARE_CONNECTION (source);
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;

  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  if (consumer == NULL)
    {
      lose_connection (app, conn, "starting the consumer", error);
      return;
    }
  if (conn != app->conn || app->stopping)
    {
      carehare_consumer_close_async (consumer, NULL, NULL, NULL);
      return;
    }

  /* The whole chain works again: the next failure starts from a short delay. */
  app->backoff_ms = BACKOFF_INITIAL_MS;
  app->attempt = 0;
  app->consumer = g_steal_pointer (&consumer);
  g_message ("consuming %s", app->queue);
  carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  CarehareConnection *conn = CAREHARE_CONNECTION (source);
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;

  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  if (queue == NULL)
    {
      lose_connection (app, conn, "declaring the queue", error);
      return;
    }
  /* Prefetch 20 bounds the memory this service holds. */
  carehare_connection_acking_consumer_async (conn, queue, 0, 20, app->cancellable,
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
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* shut_down() cancelled us and already quit */
      print_error ("connecting", error);
      if (error_is_permanent (error))
        {
          g_warning ("giving up: this error will not go away by retrying");
          shut_down (app, 1);
        }
      else
        schedule_reconnect (app);
      return;
    }

  g_message ("connected (attempt %u)", app->attempt);
  /* The closed signal is how an idle service learns the connection died. */
  g_signal_connect (app->conn, "closed", G_CALLBACK (connection_closed_cb), app);
  /* Durable: the queue, and the persistent messages in it, survive a broker
   * restart, which is exactly what this service reconnects after. */
  carehare_connection_queue_declare_async (app->conn, app->queue, CAREHARE_QUEUE_FLAGS_DURABLE,
                                           NULL, app->cancellable, declared_cb, app);
}

static void
start_connecting (App *app)
{
  g_clear_object (&app->consumer); /* of the connection we lost, if any */
  app->attempt++;
  carehare_connection_new_async (app->uri, app->cancellable, connected_cb, app);
}

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };
  int exit_after = 0;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  GOptionEntry entries[] = {
    { "exit-after", 'n', 0, G_OPTION_ARG_INT, &exit_after,
      "Close and exit after processing N messages", "N" },
    { NULL }
  };

  /* Output goes to a log or a pipe: one line at a time, as it happens. */
  setvbuf (stdout, NULL, _IOLBF, 0);

  context = g_option_context_new ("URI QUEUE");
  g_option_context_set_summary (context,
                                "Consumes QUEUE forever, reconnecting with backoff when the connection fails.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || argc != 3 || exit_after < 0)
    {
      g_printerr ("usage: %s URI QUEUE [--exit-after N]\n", argv[0]);
      return 2;
    }
  app.uri = argv[1];
  app.queue = argv[2];
  app.exit_after = (guint) exit_after;
  app.backoff_ms = BACKOFF_INITIAL_MS;
  app.cancellable = g_cancellable_new ();
  app.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGINT, signal_cb, &app);
  g_unix_signal_add (SIGTERM, signal_cb, &app);

  start_connecting (&app);
  g_main_loop_run (app.loop);

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_clear_object (&app.cancellable);
  g_main_loop_unref (app.loop);
  return app.status;
}
