/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flow control: a publisher that keeps at most WINDOW publishes in flight
 * and gives up on what the broker has not taken by a deadline, then keeps
 * thousands in flight as tracked publishes (an id each, the outcomes as
 * signals), then streams large messages pausing while the connection's
 * output is above its high-water mark, and a consumer whose memory the
 * prefetch count bounds.
 *
 *   flow-control URI
 *
 * Shown in docs/flow-control.md and run by the tests.
 */
#include <carehare-glib/carehare-glib.h>

#include <string.h>

#define TOTAL 1000      /* messages to send */
#define WINDOW 50       /* publishes in flight at most */
#define PREFETCH 20     /* unacknowledged deliveries at most */
#define DEADLINE_S 60   /* for the whole batch */
#define TRACKED_COUNT 10000  /* messages to send as tracked publishes */
#define TRACKED_WINDOW 1000  /* tracked publishes in flight at most */
#define LARGE_COUNT 16  /* large messages, streamed */
#define LARGE_SIZE (256 * 1024)

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  char *queue;
  GCancellable *give_up;        /* cancelled at the deadline */
  guint deadline_id;
  guint sent, in_flight, confirmed, received;
  guint tracked_sent, tracked_in_flight, tracked_confirmed;
  GBytes *large_body;
  guint large_sent, large_confirmed, pauses;
  int status;
} App;

static void closed_cb (GObject *source, GAsyncResult *result, gpointer user_data);
static void start_consumer (App *app);
static void start_tracked (App *app);
static void stream_large (App *app);

static void
finish (App          *app,
        const char   *what,
        const GError *error)
{
  if (error != NULL && app->status == 0)
    g_printerr ("%s failed: %s\n", what, error->message);
  if (error != NULL)
    app->status = 1;
  g_clear_handle_id (&app->deadline_id, g_source_remove);
  if (app->conn != NULL && !carehare_connection_get_is_closed (app->conn))
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

  carehare_connection_close_finish (app->conn, result, NULL);
  g_main_loop_quit (app->loop);
}

/* The broker's memory or disk alarm: while blocked, publishes wait in the
 * library, unwritten, and complete once it unblocks. */
static void
blocked_changed_cb (GObject    *object,
                    GParamSpec *pspec,
                    gpointer    user_data)
{
  CarehareConnection *conn = CAREHARE_CONNECTION (object);

  g_print ("the broker %s this connection\n",
           carehare_connection_get_is_blocked (conn) ? "blocked" : "unblocked");
}

static gboolean
deadline_cb (gpointer user_data)
{
  App *app = user_data;

  /* Publishes not yet written complete with G_IO_ERROR_CANCELLED; those
   * already written complete with the broker's answer. */
  app->deadline_id = 0;
  g_cancellable_cancel (app->give_up);
  return G_SOURCE_REMOVE;
}

static void published_cb (GObject *source, GAsyncResult *result, gpointer user_data);

/* Fills the window: never more than WINDOW publishes (and their bodies)
 * waiting for the broker. */
static void
publish_more (App *app)
{
  while (app->in_flight < WINDOW && app->sent < TOTAL)
    {
      g_autofree char *text = g_strdup_printf ("message %u", app->sent);
      g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

      carehare_connection_publish_async (app->conn, "", app->queue, body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, app->give_up,
                                         published_cb, app);
      app->sent++;
      app->in_flight++;
    }
}

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  app->in_flight--;
  if (!carehare_connection_publish_finish (app->conn, result, &error))
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_printerr ("not sent by the deadline: the broker is blocking us\n");
      return finish (app, "publishing", error);
    }
  if (app->status != 0)
    return;
  if (++app->confirmed == TOTAL)
    {
      g_print ("%u messages confirmed, never more than %u in flight\n",
               app->confirmed, WINDOW);
      g_clear_handle_id (&app->deadline_id, g_source_remove);
      start_tracked (app);
    }
  else
    publish_more (app);
}

/* Fills the window of tracked publishes: each returns its id at once; its
 * outcome comes back as a signal, with no GTask and no callback of its own. */
static void
publish_tracked_more (App *app)
{
  while (app->tracked_in_flight < TRACKED_WINDOW && app->tracked_sent < TRACKED_COUNT)
    {
      g_autofree char *text = g_strdup_printf ("tracked %u", app->tracked_sent);
      g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

      carehare_connection_publish_tracked (app->conn, "", app->queue, body, NULL,
                                           CAREHARE_PUBLISH_FLAGS_NONE);
      app->tracked_sent++;
      app->tracked_in_flight++;
    }
}

/* Emitted once per read, for every tracked publish the broker confirmed in
 * it: take their ids here, in the order of their confirms (ids not taken
 * by the end of the emission are forgotten). A program that keeps
 * something per message looks it up by id. */
static void
publishes_confirmed_cb (CarehareConnection *conn,
                        gpointer            user_data)
{
  App *app = user_data;
  gsize n_ids;
  g_autofree guint64 *ids = carehare_connection_take_confirmed (conn, &n_ids);

  for (gsize i = 0; i < n_ids; i++)
    g_debug ("tracked publish %" G_GUINT64_FORMAT " confirmed", ids[i]);
  if (app->status != 0)
    return;
  app->tracked_in_flight -= n_ids;
  app->tracked_confirmed += n_ids;
  if (app->tracked_confirmed == TRACKED_COUNT)
    {
      g_print ("%u tracked messages confirmed, never more than %u in flight\n",
               app->tracked_confirmed, TRACKED_WINDOW);
      stream_large (app);
    }
  else
    publish_tracked_more (app);
}

/* Emitted once for each tracked publish that failed, with the error
 * publish_finish() would give. */
static void
publish_failed_cb (CarehareConnection *conn,
                   guint64             id,
                   GError             *error,
                   gpointer            user_data)
{
  App *app = user_data;

  app->tracked_in_flight--;
  finish (app, "publishing", error);
}

static void
start_tracked (App *app)
{
  g_signal_connect (app->conn, "publishes-confirmed", G_CALLBACK (publishes_confirmed_cb), app);
  g_signal_connect (app->conn, "publish-failed", G_CALLBACK (publish_failed_cb), app);
  publish_tracked_more (app);
}

static void large_published_cb (GObject *source, GAsyncResult *result, gpointer user_data);

/* Publishes while the connection's output is at most the high-water mark;
 * pending_write_cb resumes once it has drained. */
static void
stream_more (App *app)
{
  while (app->large_sent < LARGE_COUNT)
    {
      if (carehare_connection_get_pending_write_bytes (app->conn) >
          CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK)
        {
          app->pauses++;
          return;
        }
      carehare_connection_publish_async (app->conn, "", app->queue, app->large_body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                         large_published_cb, app);
      app->large_sent++;
    }
}

/* Emitted once when the output rises above the high-water mark and once
 * when it is back at the low-water mark or below (or the connection
 * closed): resume then. */
static void
pending_write_cb (GObject    *object,
                  GParamSpec *pspec,
                  gpointer    user_data)
{
  App *app = user_data;

  if (carehare_connection_get_pending_write_bytes (app->conn) <=
      CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK)
    stream_more (app);
}

static void
stream_large (App *app)
{
  app->large_body = g_bytes_new_take (g_malloc0 (LARGE_SIZE), LARGE_SIZE);
  g_signal_connect (app->conn, "notify::pending-write-bytes",
                    G_CALLBACK (pending_write_cb), app);
  stream_more (app);
}

static void
large_published_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (app->conn, result, &error))
    return finish (app, "publishing", error);
  if (app->status != 0)
    return;
  if (++app->large_confirmed == LARGE_COUNT)
    {
      g_print ("%u large messages confirmed, paused %s\n", app->large_confirmed,
               app->pauses > 0 ? "while the output was above the high-water mark" : "never");
      start_consumer (app);
    }
}

static void
delivery_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  App *app = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
  if (delivery == NULL)
    return finish (app, "receiving", error);

  /* Acking lets the broker send the next message: the consumer never
   * holds more than PREFETCH deliveries, however long the queue. */
  carehare_consumer_ack (app->consumer, carehare_delivery_get_delivery_tag (delivery));
  if (++app->received == TOTAL + TRACKED_COUNT + LARGE_COUNT)
    {
      g_print ("%u messages received with prefetch %u\n", app->received, PREFETCH);
      return finish (app, NULL, NULL);
    }
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
    return finish (app, "starting the consumer", error);
  carehare_consumer_next_delivery_async (app->consumer, NULL, delivery_cb, app);
}

static void
start_consumer (App *app)
{
  /* prefetch_size 0: no byte limit (RabbitMQ supports no other). */
  carehare_connection_acking_consumer_async (app->conn, app->queue, 0, PREFETCH, NULL,
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
    return finish (app, "declaring the queue", error);

  app->give_up = g_cancellable_new ();
  app->deadline_id = g_timeout_add_seconds (DEADLINE_S, deadline_cb, app);
  publish_more (app);
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
  g_signal_connect (app->conn, "notify::is-blocked", G_CALLBACK (blocked_changed_cb), app);
  carehare_connection_queue_declare_async (app->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                           NULL, NULL, declared_cb, app);
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

  g_clear_object (&app.consumer);
  g_clear_object (&app.conn);
  g_clear_object (&app.give_up);
  g_clear_pointer (&app.large_body, g_bytes_unref);
  g_free (app.queue);
  g_main_loop_unref (app.loop);
  return app.status;
}
