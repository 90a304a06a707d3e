/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Publishes with confirms from several threads on one connection (issue 18):
 *
 *   bench-threads [--threads T] [--messages N] [--in-flight D] [URI]
 *
 * The main thread runs the connection's main context; each of T threads
 * publishes N messages of 256 bytes with a main context of its own, at most
 * D unconfirmed at a time, and gets its confirmations there. With T = 0 the
 * main thread publishes the N messages itself, the single-thread figure to
 * compare with. Prints the messages confirmed per second over the timed
 * phase (connecting, declaring and deleting the queue are outside it).
 * URI defaults to $CAREHARE_TEST_AMQP_URI.
 */
#include <carehare-glib/carehare-glib.h>

#include <stdio.h>

typedef struct {
  CarehareConnection *conn;
  const char *queue;
  GBytes *body;
  guint n;
  guint in_flight;
  guint sent;
  guint confirmed;
  guint failed;
  int *finished;
  GMainContext *owner;
} Publisher;

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Publisher *p = user_data;

  if (!carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, NULL))
    p->failed++;
  p->confirmed++;
}

/* Publishes from the calling thread, on its thread-default context. */
static void
publish_all (Publisher *p)
{
  GMainContext *context = g_main_context_ref_thread_default ();

  while (p->confirmed < p->n)
    {
      while (p->sent < p->n && p->sent - p->confirmed < p->in_flight)
        {
          p->sent++;
          carehare_connection_publish_async (p->conn, "", p->queue, p->body, NULL,
                                             CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                             published_cb, p);
        }
      g_main_context_iteration (context, TRUE);
    }
  g_main_context_unref (context);
}

static gpointer
publisher_thread (gpointer data)
{
  Publisher *p = data;
  GMainContext *context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  publish_all (p);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  g_atomic_int_inc (p->finished);
  g_main_context_wakeup (p->owner);
  return NULL;
}

int
main (int argc, char *argv[])
{
  int n_threads = 8, messages = 20000, in_flight = 100, finished = 0;
  char **rest = NULL;
  GOptionEntry entries[] = {
    { "threads", 't', 0, G_OPTION_ARG_INT, &n_threads, "Publishing threads (0: the main thread)", "T" },
    { "messages", 'n', 0, G_OPTION_ARG_INT, &messages, "Messages per thread (default 20000)", "N" },
    { "in-flight", 'd', 0, G_OPTION_ARG_INT, &in_flight, "Unconfirmed per thread (default 100)", "D" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, "[URI]" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("- publish from several threads");
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autofree char *queue = NULL;
  g_autofree Publisher *publishers = NULL;
  g_autofree GThread **threads = NULL;
  GMainContext *owner = g_main_context_default ();
  const char *uri;
  guint n_publishers, failed = 0;
  guint8 payload[256] = { 0 };
  gint64 start, end;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || n_threads < 0 || messages <= 0 ||
      in_flight <= 0)
    {
      g_printerr ("bench-threads: %s\n", error != NULL ? error->message : "bad arguments");
      return 2;
    }
  uri = rest != NULL && rest[0] != NULL ? rest[0] : g_getenv ("CAREHARE_TEST_AMQP_URI");
  if (uri == NULL)
    {
      g_printerr ("bench-threads: no URI and no $CAREHARE_TEST_AMQP_URI\n");
      return 2;
    }

  conn = carehare_connection_new_sync (uri, NULL, &error);
  if (conn == NULL)
    {
      g_printerr ("bench-threads: %s\n", error->message);
      return 1;
    }
  queue = carehare_connection_queue_declare_sync (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                  NULL, NULL, NULL, NULL, &error);
  if (queue == NULL)
    {
      g_printerr ("bench-threads: %s\n", error->message);
      return 1;
    }
  body = g_bytes_new (payload, sizeof payload);
  n_publishers = n_threads > 0 ? (guint) n_threads : 1;
  publishers = g_new0 (Publisher, n_publishers);
  threads = g_new0 (GThread *, n_publishers);
  for (guint i = 0; i < n_publishers; i++)
    publishers[i] = (Publisher) { conn, queue, body, (guint) messages, (guint) in_flight, 0, 0,
                                  0, &finished, owner };

  start = g_get_monotonic_time ();
  if (n_threads == 0)
    publish_all (&publishers[0]);
  else
    {
      if (!g_main_context_acquire (owner))
        g_error ("the main context is held by another thread");
      for (guint i = 0; i < n_publishers; i++)
        threads[i] = g_thread_new ("publisher", publisher_thread, &publishers[i]);
      while ((guint) g_atomic_int_get (&finished) < n_publishers)
        g_main_context_iteration (owner, TRUE);
      g_main_context_release (owner);
      for (guint i = 0; i < n_publishers; i++)
        g_thread_join (threads[i]);
    }
  end = g_get_monotonic_time ();
  for (guint i = 0; i < n_publishers; i++)
    failed += publishers[i].failed;

  printf ("RESULT threads=%d messages=%u in_flight=%d seconds=%.3f msg_per_s=%.0f failed=%u\n",
          n_threads, n_publishers * (guint) messages, in_flight, (end - start) / 1e6,
          n_publishers * (double) messages / ((end - start) / 1e6), failed);
  carehare_connection_queue_delete_sync (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                         NULL, NULL);
  carehare_connection_close_sync (conn, NULL, NULL);
  g_strfreev (rest);
  return failed == 0 ? 0 : 1;
}
