/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Resident memory while consuming: publishes N messages of SIZE bytes with
 * WINDOW publishes in flight, then consumes them with prefetch PREFETCH,
 * acking each, and prints the process's resident set every N/10 messages.
 * Memory stays flat when the library holds only what prefetch allows.
 * STYLE is how messages are taken: `next` (one next_delivery_async per
 * message, the default) or `signal` (a CarehareConsumer::delivery handler).
 *
 *   consume-rss URI [N] [PREFETCH] [SIZE] [WINDOW] [STYLE]
 */
#include <carehare-glib/carehare-glib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  GMainLoop *loop;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  char *queue;
  guint n, prefetch, size, window;
  gboolean signal_style;
  guint sent, confirmed, received;
  GBytes *body;
  gint64 start;
  int status;
} Bench;

static long
rss_kib (void)
{
  long pages = 0, resident = 0;
  FILE *f = fopen ("/proc/self/statm", "r");

  if (f == NULL)
    return -1;
  if (fscanf (f, "%ld %ld", &pages, &resident) != 2)
    resident = -1;
  fclose (f);
  return resident * (sysconf (_SC_PAGESIZE) / 1024);
}

static void
die (Bench        *b,
     const char   *what,
     const GError *error)
{
  g_printerr ("%s: %s\n", what, error->message);
  b->status = 1;
  g_main_loop_quit (b->loop);
}

static void next_cb (GObject *source, GAsyncResult *result, gpointer user_data);
static void received (Bench *b, CarehareDelivery *delivery);

static void
delivery_cb (CarehareConsumer *consumer,
             CarehareDelivery *delivery,
             gpointer          user_data)
{
  received (user_data, delivery);
}

static void
consumer_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Bench *b = user_data;
  g_autoptr(GError) error = NULL;

  b->consumer = carehare_connection_acking_consumer_finish (b->conn, result, &error);
  if (b->consumer == NULL)
    return die (b, "consume", error);
  b->start = g_get_monotonic_time ();
  g_print ("consuming %u messages, prefetch %u, %s\n%10s %10s\n", b->n, b->prefetch,
           b->signal_style ? "::delivery" : "next_delivery_async", "received", "RSS KiB");
  if (b->signal_style)
    g_signal_connect (b->consumer, "delivery", G_CALLBACK (delivery_cb), b);
  else
    carehare_consumer_next_delivery_async (b->consumer, NULL, next_cb, b);
}

static void
next_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Bench *b = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  delivery = carehare_consumer_next_delivery_finish (b->consumer, result, &error);
  if (delivery == NULL)
    return die (b, "next delivery", error);
  received (b, delivery);
  if (b->received < b->n)
    carehare_consumer_next_delivery_async (b->consumer, NULL, next_cb, b);
}

static void
received (Bench            *b,
          CarehareDelivery *delivery)
{
  if (b->received == b->n)
    return;
  carehare_consumer_ack (b->consumer, carehare_delivery_get_delivery_tag (delivery));
  b->received++;
  if (b->received % MAX (b->n / 10, 1) == 0)
    g_print ("%10u %10ld\n", b->received, rss_kib ());
  if (b->received == b->n)
    {
      double secs = (g_get_monotonic_time () - b->start) / 1e6;

      g_print ("consumed %u messages in %.2f s (%.0f msg/s)\n", b->n, secs, b->n / secs);
      g_main_loop_quit (b->loop);
    }
}

static void publish_more (Bench *b);

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Bench *b = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (b->conn, result, &error))
    return die (b, "publish", error);
  if (++b->confirmed == b->n)
    {
      g_print ("published %u messages, RSS %ld KiB\n", b->n, rss_kib ());
      carehare_connection_acking_consumer_async (b->conn, b->queue, 0, b->prefetch, NULL,
                                                 consumer_cb, b);
      return;
    }
  publish_more (b);
}

static void
publish_more (Bench *b)
{
  while (b->sent < b->n && b->sent - b->confirmed < b->window)
    {
      b->sent++;
      carehare_connection_publish_async (b->conn, "", b->queue, b->body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL, published_cb, b);
    }
}

static void
declared_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Bench *b = user_data;
  g_autoptr(GError) error = NULL;

  b->queue = carehare_connection_queue_declare_finish (b->conn, result, NULL, NULL, &error);
  if (b->queue == NULL)
    return die (b, "declare", error);
  publish_more (b);
}

static void
connected_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Bench *b = user_data;
  g_autoptr(GError) error = NULL;

  b->conn = carehare_connection_new_finish (result, &error);
  if (b->conn == NULL)
    return die (b, "connect", error);
  carehare_connection_queue_declare_async (b->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL,
                                           NULL, declared_cb, b);
}

int
main (int   argc,
      char *argv[])
{
  Bench b = { 0 };

  if (argc < 2)
    {
      g_printerr ("usage: %s URI [N] [PREFETCH] [SIZE] [WINDOW] [next|signal]\n", argv[0]);
      return 2;
    }
  b.n = argc > 2 ? atoi (argv[2]) : 100000;
  b.prefetch = argc > 3 ? atoi (argv[3]) : 100;
  b.size = argc > 4 ? atoi (argv[4]) : 256;
  b.window = argc > 5 ? atoi (argv[5]) : 1000;
  b.signal_style = argc > 6 && strcmp (argv[6], "signal") == 0;
  b.body = g_bytes_new_take (g_malloc0 (b.size), b.size);
  b.loop = g_main_loop_new (NULL, FALSE);
  carehare_connection_new_async (argv[1], NULL, connected_cb, &b);
  g_main_loop_run (b.loop);

  g_clear_object (&b.consumer);
  g_clear_object (&b.conn);
  g_bytes_unref (b.body);
  g_free (b.queue);
  g_main_loop_unref (b.loop);
  return b.status;
}
