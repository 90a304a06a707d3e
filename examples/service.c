/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A long-running consumer service on a CarehareSession.
 *
 *   service URI QUEUE [--exit-after N] [--stats-every SECONDS]
 *
 * It declares a durable QUEUE and consumes and acknowledges forever. The
 * session does the recovering: when the connection is lost (the broker
 * restarted, an operator closed the connection, the network dropped, a
 * heartbeat was missed) it reconnects with backoff, declares the queue
 * again and the consumer goes on delivering. Messages delivered but not
 * acknowledged are redelivered by the broker, so processing must tolerate
 * seeing a message twice ("redelivered" says when that may be the case).
 *
 * A permanent error (a bad URI, a refused login, an unknown virtual host,
 * a queue declared elsewhere with other arguments) moves the session to
 * FAILED: retrying cannot help, so the service exits with status 1 and
 * lets its supervisor (systemd, say) report it.
 *
 * Every minute (--stats-every), and once when it stops, it logs the
 * current connection's counters (carehare_connection_get_statistics()):
 * what an operator graphs or alerts on. They start from zero on each new
 * connection.
 *
 * SIGTERM or SIGINT closes the session cleanly and exits 0. With
 * --exit-after N it does the same after processing N messages (for the
 * tests).
 */
#define G_LOG_DOMAIN "carehare-service"

#include <carehare-glib/carehare-glib.h>
#include <glib-unix.h>
#include <stdio.h>

#include "example-common.h"

typedef struct {
  GMainLoop *loop;
  CarehareSession *session;    /* owned */
  CarehareConsumer *consumer;  /* owned */
  const char *queue;
  guint exit_after;            /* 0: forever */
  guint processed;
  guint stats_timeout_id;
  gboolean stopping;
  int status;
} App;

static void
closed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  App *app = user_data;

  carehare_session_close_finish (CAREHARE_SESSION (source), result, NULL);
  g_main_loop_quit (app->loop);
}

static void
log_counters (App *app)
{
  CarehareConnection *connection = carehare_session_get_connection (app->session);
  g_autoptr(CarehareStatistics) stats = NULL;
  gint64 silence;

  if (connection == NULL)
    {
      g_message ("counters: not connected");
      return;
    }
  stats = carehare_connection_get_statistics (connection);
  silence = carehare_statistics_get_time_since_last_received (stats);
  g_message ("counters: published %" G_GUINT64_FORMAT ", confirmed %" G_GUINT64_FORMAT
             ", nacked %" G_GUINT64_FORMAT ", returned %" G_GUINT64_FORMAT
             "; received %" G_GUINT64_FORMAT ", acked %" G_GUINT64_FORMAT
             ", nacked %" G_GUINT64_FORMAT "; bytes out %" G_GUINT64_FORMAT
             ", in %" G_GUINT64_FORMAT "; %u channels; heartbeats sent %" G_GUINT64_FORMAT
             ", missed %" G_GUINT64_FORMAT "; last bytes in %.1f s ago",
             carehare_statistics_get_messages_published (stats),
             carehare_statistics_get_messages_confirmed (stats),
             carehare_statistics_get_messages_nacked (stats),
             carehare_statistics_get_messages_returned (stats),
             carehare_statistics_get_deliveries_received (stats),
             carehare_statistics_get_deliveries_acked (stats),
             carehare_statistics_get_deliveries_nacked (stats),
             carehare_statistics_get_bytes_sent (stats),
             carehare_statistics_get_bytes_received (stats),
             carehare_statistics_get_channels_open (stats),
             carehare_statistics_get_heartbeats_sent (stats),
             carehare_statistics_get_heartbeats_missed (stats),
             silence < 0 ? -1.0 : (double) silence / G_USEC_PER_SEC);
}

static gboolean
stats_timeout_cb (gpointer user_data)
{
  log_counters (user_data);
  return G_SOURCE_CONTINUE;
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
  g_clear_handle_id (&app->stats_timeout_id, g_source_remove);
  log_counters (app);
  carehare_session_close_async (app->session, NULL, closed_cb, app);
}

static gboolean
signal_cb (gpointer user_data)
{
  g_message ("signal received: closing");
  shut_down (user_data, 0);
  return G_SOURCE_CONTINUE;
}

static void
connected_cb (CarehareSession    *session,
              CarehareConnection *connection,
              gpointer            user_data)
{
  App *app = user_data;

  g_message ("consuming %s", app->queue);
}

static void
disconnected_cb (CarehareSession *session,
                 const GError    *error,
                 gpointer         user_data)
{
  /* NULL: we closed it. */
  if (error == NULL)
    return;
  print_error ("the connection", error);
  g_message ("reconnecting in %u ms or more", carehare_session_get_reconnect_delay_min (session));
}

static void
state_cb (CarehareSession *session,
          GParamSpec      *pspec,
          gpointer         user_data)
{
  if (carehare_session_get_state (session) != CAREHARE_SESSION_STATE_FAILED)
    return;
  print_error ("the session", carehare_session_get_last_error (session));
  g_warning ("giving up: this error will not go away by retrying");
  shut_down (user_data, 1);
}

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
  if (delivery == NULL && !carehare_consumer_get_is_closed (consumer))
    {
      /* One message that could not be represented was rejected: go on. */
      print_error ("a message", error);
      carehare_consumer_next_delivery_async (consumer, NULL, delivery_cb, app);
      return;
    }
  if (delivery == NULL)
    {
      /* The session closed or failed (state_cb says why), or the broker
       * cancelled the consumer (its queue was deleted). */
      if (!app->stopping)
        {
          print_error ("consuming", error);
          shut_down (app, 1);
        }
      return;
    }

  /* The work of the service. It must tolerate duplicates. */
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

int
main (int   argc,
      char *argv[])
{
  App app = { 0 };
  int exit_after = 0;
  int stats_every = 60;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  GOptionEntry entries[] = {
    { "exit-after", 'n', 0, G_OPTION_ARG_INT, &exit_after,
      "Close and exit after processing N messages", "N" },
    { "stats-every", 0, 0, G_OPTION_ARG_INT, &stats_every,
      "Log the connection's counters every SECONDS (default 60, 0: only at exit)", "SECONDS" },
    { NULL }
  };
  const char *uris[2] = { NULL, NULL };

  /* Output goes to a log or a pipe: one line at a time, as it happens. */
  setvbuf (stdout, NULL, _IOLBF, 0);

  context = g_option_context_new ("URI QUEUE");
  g_option_context_set_summary (context,
                                "Consumes QUEUE forever, reconnecting with backoff when the connection fails.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || argc != 3 || exit_after < 0 ||
      stats_every < 0)
    {
      g_printerr ("usage: %s URI QUEUE [--exit-after N] [--stats-every SECONDS]\n", argv[0]);
      return 2;
    }
  uris[0] = argv[1];
  app.queue = argv[2];
  app.exit_after = (guint) exit_after;
  app.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGINT, signal_cb, &app);
  g_unix_signal_add (SIGTERM, signal_cb, &app);

  app.session = carehare_session_new (uris);
  carehare_session_set_reconnect_delay_min (app.session, 500);
  g_signal_connect (app.session, "connected", G_CALLBACK (connected_cb), &app);
  g_signal_connect (app.session, "disconnected", G_CALLBACK (disconnected_cb), &app);
  g_signal_connect (app.session, "notify::state", G_CALLBACK (state_cb), &app);
  /* Durable: the queue, and the persistent messages in it, survive a broker
   * restart, which is exactly what the session reconnects after. */
  carehare_session_declare_queue (app.session, app.queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
  /* Prefetch 20 bounds the memory this service holds. */
  app.consumer = carehare_session_acking_consumer (app.session, app.queue, 20);
  carehare_consumer_next_delivery_async (app.consumer, NULL, delivery_cb, &app);
  carehare_session_start (app.session);
  if (stats_every > 0)
    app.stats_timeout_id = g_timeout_add_seconds ((guint) stats_every, stats_timeout_cb, &app);

  g_main_loop_run (app.loop);

  g_clear_handle_id (&app.stats_timeout_id, g_source_remove);
  g_clear_object (&app.consumer);
  g_clear_object (&app.session);
  g_main_loop_unref (app.loop);
  return app.status;
}
