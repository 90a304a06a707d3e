/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tracked publishes against the private broker: carehare_connection_publish_tracked()
 * returns an id and every publish is announced exactly once, by
 * ::publishes-confirmed (take_confirmed()) or ::publish-failed, never from
 * inside the call, whoever drops the connection and whichever thread
 * publishes.
 */
#include "carehare-test-util.h"

#define TIMEOUT_MS 30000

typedef struct {
  GArray *confirmed;     /* of guint64, in announcement order */
  GHashTable *failed;    /* id -> GError */
  guint emissions;
  gboolean in_call;      /* set around publish_tracked(): no announcement then */
  guint republish;       /* publishes still to make, one per announcement */
  char *queue;
} Seen;

static void
seen_init (Seen *seen)
{
  memset (seen, 0, sizeof *seen);
  seen->confirmed = g_array_new (FALSE, FALSE, sizeof (guint64));
  seen->failed = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                        (GDestroyNotify) g_error_free);
}

static void
seen_clear (Seen *seen)
{
  g_array_unref (seen->confirmed);
  g_hash_table_unref (seen->failed);
  g_free (seen->queue);
}

static guint64
publish (CarehareConnection   *conn,
         Seen                 *seen,
         const char           *exchange,
         const char           *routing_key,
         CareharePublishFlags  flags)
{
  g_autoptr(GBytes) body = g_bytes_new_static ("tracked", 7);
  guint64 id;

  seen->in_call = TRUE;
  id = carehare_connection_publish_tracked (conn, exchange, routing_key, body, NULL, flags);
  seen->in_call = FALSE;
  return id;
}

static void
confirmed_cb (CarehareConnection *conn,
              Seen               *seen)
{
  gsize n = 0;
  g_autofree guint64 *ids = carehare_connection_take_confirmed (conn, &n);
  g_autofree guint64 *again = NULL;
  gsize n_again = 1;

  g_assert_false (seen->in_call);
  g_assert_nonnull (ids);
  g_assert_cmpuint (n, >, 0);
  g_array_append_vals (seen->confirmed, ids, n);
  seen->emissions++;
  /* Taken: a second take finds nothing. */
  again = carehare_connection_take_confirmed (conn, &n_again);
  g_assert_null (again);
  g_assert_cmpuint (n_again, ==, 0);

  if (seen->republish > 0)
    {
      seen->republish--;
      publish (conn, seen, "", seen->queue, CAREHARE_PUBLISH_FLAGS_NONE);
    }
}

static void
failed_cb (CarehareConnection *conn,
           guint64             id,
           const GError       *error,
           Seen               *seen)
{
  g_assert_false (seen->in_call);
  g_assert_nonnull (error);
  g_assert_false (g_hash_table_contains (seen->failed, &id));
  g_hash_table_insert (seen->failed, g_memdup2 (&id, sizeof id), g_error_copy (error));
}

static void
watch (CarehareConnection *conn,
       Seen               *seen)
{
  g_signal_connect (conn, "publishes-confirmed", G_CALLBACK (confirmed_cb), seen);
  g_signal_connect (conn, "publish-failed", G_CALLBACK (failed_cb), seen);
}

/* Iterates until @n publishes were announced (confirmed or failed). */
static void
wait_announced (Seen  *seen,
                guint  n)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (TIMEOUT_MS, carehare_test_set_flag, &timed_out);

  while (seen->confirmed->len + g_hash_table_size (seen->failed) < n && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (timed_out)
    g_error ("%u of %u tracked publishes announced after %u ms: the operation hangs",
             seen->confirmed->len + g_hash_table_size (seen->failed), n, TIMEOUT_MS);
  g_source_remove (id);
}

static char *
declare_queue (CarehareConnection *conn)
{
  g_autoptr(GError) error = NULL;
  char *queue = carehare_connection_queue_declare_sync (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                        NULL, NULL, NULL, NULL, &error);

  g_assert_no_error (error);
  return queue;
}

static guint
message_count (CarehareConnection *conn,
               const char         *queue)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  guint count = 0;

  name = carehare_connection_queue_declare_sync (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL,
                                                 &count, NULL, NULL, &error);
  g_assert_no_error (error);
  return count;
}

static void
close_connection (CarehareConnection *conn)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (carehare_connection_close_sync (conn, NULL, &error));
  g_assert_no_error (error);
}

/* 300 in flight: ids 1, 2, ... returned by the calls, each confirmed
 * once, in publish order (one exchange, one channel), and in the queue. */
static void
test_tracked_confirmed (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  gsize n = 1;
  g_autofree guint64 *none = carehare_connection_take_confirmed (conn, &n);
  Seen seen;

  g_assert_null (none);
  g_assert_cmpuint (n, ==, 0);
  seen_init (&seen);
  watch (conn, &seen);
  for (guint64 i = 1; i <= 300; i++)
    g_assert_cmpuint (publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE), ==, i);
  g_assert_cmpuint (seen.emissions, ==, 0);
  wait_announced (&seen, 300);
  g_assert_cmpuint (g_hash_table_size (seen.failed), ==, 0);
  for (guint i = 0; i < 300; i++)
    g_assert_cmpuint (g_array_index (seen.confirmed, guint64, i), ==, i + 1);
  g_assert_cmpuint (seen.emissions, <=, 300);
  g_test_message ("300 confirms in %u emissions", seen.emissions);
  g_assert_cmpuint (message_count (conn, queue), ==, 300);
  close_connection (conn);
  seen_clear (&seen);
}

/* A missing exchange and an unroutable mandatory message fail their own
 * publish with publish_async()'s errors; the others are confirmed. */
static void
test_tracked_failures (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  g_autofree char *missing = carehare_test_unique_name ("missing-exchange");
  guint64 good1, bad_exchange, unroutable, good2;
  const GError *error;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  good1 = publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_MANDATORY);
  bad_exchange = publish (conn, &seen, missing, "k", CAREHARE_PUBLISH_FLAGS_NONE);
  unroutable = publish (conn, &seen, "", "no-such-queue-for-tracked", CAREHARE_PUBLISH_FLAGS_MANDATORY);
  good2 = publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&seen, 4);

  g_assert_cmpuint (seen.confirmed->len, ==, 2);
  g_assert_cmpuint (g_array_index (seen.confirmed, guint64, 0), ==, good1);
  g_assert_cmpuint (g_array_index (seen.confirmed, guint64, 1), ==, good2);
  error = g_hash_table_lookup (seen.failed, &bad_exchange);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 404);
  error = g_hash_table_lookup (seen.failed, &unroutable);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  g_assert_cmpuint (message_count (conn, queue), ==, 2);
  close_connection (conn);
  seen_clear (&seen);
}

/* On a closed connection the failure comes later, from the main loop,
 * never inside the call that published. */
static void
test_tracked_closed (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  const GError *error;
  guint64 id;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  close_connection (conn);
  id = publish (conn, &seen, "", "anything", CAREHARE_PUBLISH_FLAGS_NONE);
  g_assert_cmpuint (g_hash_table_size (seen.failed), ==, 0);
  wait_announced (&seen, 1);
  error = g_hash_table_lookup (seen.failed, &id);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  seen_clear (&seen);
}

/* Closed while publishes are in flight: each is announced once (confirmed
 * before the close, or failed with CONNECTION_CLOSED). */
static void
test_tracked_close_in_flight (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  for (guint i = 0; i < 200; i++)
    publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  carehare_connection_close_finish (conn, result, &error);
  wait_announced (&seen, 200);
  g_assert_cmpuint (seen.confirmed->len + g_hash_table_size (seen.failed), ==, 200);
  g_test_message ("%u confirmed, %u failed", seen.confirmed->len,
                  g_hash_table_size (seen.failed));
  seen_clear (&seen);
}

static void
gone_cb (gpointer  user_data,
         GObject  *where_the_object_was)
{
  *(gboolean *) user_data = TRUE;
}

/* The program drops its last reference right after publishing: the
 * pending publishes keep the connection until each was announced, then it
 * goes. */
static void
test_tracked_keeps_connection (void)
{
  CarehareConnection *conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  gboolean gone = FALSE;
  gboolean timed_out = FALSE;
  guint timeout;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  g_object_weak_ref (G_OBJECT (conn), gone_cb, &gone);
  for (guint i = 0; i < 50; i++)
    publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  g_object_unref (conn);
  g_assert_false (gone);
  wait_announced (&seen, 50);
  g_assert_cmpuint (seen.confirmed->len, ==, 50);
  timeout = g_timeout_add (TIMEOUT_MS, carehare_test_set_flag, &timed_out);
  while (!gone && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (gone);
  g_source_remove (timeout);
  seen_clear (&seen);
}

/* A handler publishes the next message: 100 in a chain, each announced. */
static void
test_tracked_publish_from_handler (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  Seen seen;

  seen_init (&seen);
  seen.queue = declare_queue (conn);
  seen.republish = 99;
  watch (conn, &seen);
  publish (conn, &seen, "", seen.queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&seen, 100);
  g_assert_cmpuint (seen.confirmed->len, ==, 100);
  g_assert_cmpuint (message_count (conn, seen.queue), ==, 100);
  close_connection (conn);
  seen_clear (&seen);
}

typedef struct {
  CarehareConnection *conn;
  const char *queue;
  GArray *ids;
} Publisher;

static gpointer
publisher_thread (gpointer data)
{
  Publisher *publisher = data;
  g_autoptr(GBytes) body = g_bytes_new_static ("from a thread", 13);

  for (guint i = 0; i < 100; i++)
    {
      guint64 id = carehare_connection_publish_tracked (publisher->conn, "", publisher->queue,
                                                        body, NULL, CAREHARE_PUBLISH_FLAGS_NONE);

      g_array_append_val (publisher->ids, id);
    }
  return NULL;
}

static int
compare_ids (gconstpointer a,
             gconstpointer b)
{
  guint64 x = *(const guint64 *) a, y = *(const guint64 *) b;

  return x < y ? -1 : x > y;
}

/* Two threads publish while the main thread runs the context: 200 ids,
 * all different, each confirmed once, on the connection's context. */
static void
test_tracked_from_threads (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  Publisher publishers[2];
  GThread *threads[2];
  GArray *all = g_array_new (FALSE, FALSE, sizeof (guint64));
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  for (guint t = 0; t < 2; t++)
    {
      publishers[t] = (Publisher) { conn, queue, g_array_new (FALSE, FALSE, sizeof (guint64)) };
      threads[t] = g_thread_new ("tracked-publisher", publisher_thread, &publishers[t]);
    }
  wait_announced (&seen, 200);
  for (guint t = 0; t < 2; t++)
    {
      g_thread_join (threads[t]);
      g_array_append_vals (all, publishers[t].ids->data, publishers[t].ids->len);
      g_array_unref (publishers[t].ids);
    }
  g_assert_cmpuint (g_hash_table_size (seen.failed), ==, 0);
  g_array_sort (all, compare_ids);
  g_array_sort (seen.confirmed, compare_ids);
  g_assert_cmpuint (all->len, ==, 200);
  g_assert_cmpuint (seen.confirmed->len, ==, 200);
  for (guint i = 0; i < 200; i++)
    {
      g_assert_cmpuint (g_array_index (all, guint64, i), ==, i + 1);
      g_assert_cmpuint (g_array_index (seen.confirmed, guint64, i), ==, i + 1);
    }
  g_assert_cmpuint (message_count (conn, queue), ==, 200);
  g_array_unref (all);
  close_connection (conn);
  seen_clear (&seen);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/tracked/confirmed", test_tracked_confirmed);
  g_test_add_func ("/tracked/failures", test_tracked_failures);
  g_test_add_func ("/tracked/closed", test_tracked_closed);
  g_test_add_func ("/tracked/close-in-flight", test_tracked_close_in_flight);
  g_test_add_func ("/tracked/keeps-connection", test_tracked_keeps_connection);
  g_test_add_func ("/tracked/publish-from-handler", test_tracked_publish_from_handler);
  g_test_add_func ("/tracked/from-threads", test_tracked_from_threads);

  return g_test_run ();
}
