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

/* ---- review: re-entrancy and the last reference ------------------------- */

typedef struct {
  Seen seen;
  gboolean stop;         /* set by an idle the first failure adds */
  gboolean idle_added;
  guint retries;
} Retry;

/* A program that publishes again what failed, until something else on
 * the main loop (here an idle) says stop: each retry fails at once on a
 * closed connection. */
static void
retry_failed_cb (CarehareConnection *conn,
                 guint64             id,
                 const GError       *error,
                 Retry              *retry)
{
  failed_cb (conn, id, error, &retry->seen);
  if (!retry->idle_added)
    {
      retry->idle_added = TRUE;
      /* At the priority of a publish_async() callback's idle. */
      g_idle_add_full (G_PRIORITY_DEFAULT, carehare_test_set_flag, &retry->stop, NULL);
    }
  if (retry->stop)
    return;
  /* The idle runs at the next iteration; a failure announced in the same
   * dispatch as the previous one starves the main loop. */
  g_assert_cmpuint (retry->retries, <, 100);
  retry->retries++;
  publish (conn, &retry->seen, "", "anything", CAREHARE_PUBLISH_FLAGS_NONE);
}

/* Retrying failed publishes from ::publish-failed on a closed connection
 * lets the main loop run between the failures (as publish_async() does
 * from its callback): the failure of a publish made during an
 * announcement comes from the next iteration, not the same dispatch. */
static void
test_tracked_retry_from_handler (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  Retry retry = { 0 };

  seen_init (&retry.seen);
  g_signal_connect (conn, "publish-failed", G_CALLBACK (retry_failed_cb), &retry);
  close_connection (conn);
  publish (conn, &retry.seen, "", "anything", CAREHARE_PUBLISH_FLAGS_NONE);
  while (!retry.stop || g_hash_table_size (retry.seen.failed) < retry.retries + 1)
    g_main_context_iteration (NULL, TRUE);
  g_test_message ("%u retries before the idle ran", retry.retries);
  g_assert_cmpuint (retry.retries, <, 100);
  seen_clear (&retry.seen);
}

typedef struct {
  Seen seen;
  CarehareConnection *conn;  /* the program's reference, dropped by a handler */
  guint drop_after;          /* announcements before the handler drops it */
  gboolean dispose;          /* g_object_run_dispose() instead */
  gboolean close;            /* close_async() instead */
  GAsyncResult *closed;
} Dropper;

static void
dropper_act (Dropper *dropper)
{
  if (dropper->conn == NULL ||
      dropper->seen.confirmed->len + g_hash_table_size (dropper->seen.failed) < dropper->drop_after)
    return;
  if (dropper->close)
    {
      carehare_connection_close_async (dropper->conn, NULL, carehare_test_store_result,
                                       &dropper->closed);
      dropper->drop_after = G_MAXUINT;  /* and keep the reference */
      return;
    }
  if (dropper->dispose)
    g_object_run_dispose (G_OBJECT (dropper->conn));
  g_clear_object (&dropper->conn);
}

static void
dropper_confirmed_cb (CarehareConnection *conn,
                      Dropper            *dropper)
{
  confirmed_cb (conn, &dropper->seen);
  dropper_act (dropper);
}

static void
dropper_failed_cb (CarehareConnection *conn,
                   guint64             id,
                   const GError       *error,
                   Dropper            *dropper)
{
  failed_cb (conn, id, error, &dropper->seen);
  dropper_act (dropper);
}

static void
dropper_watch (Dropper *dropper)
{
  g_signal_connect (dropper->conn, "publishes-confirmed", G_CALLBACK (dropper_confirmed_cb),
                    dropper);
  g_signal_connect (dropper->conn, "publish-failed", G_CALLBACK (dropper_failed_cb), dropper);
}

/* Connects @dropper's connection to @uri and watches its announcements,
 * acting after @drop_after of them; @gone (if not NULL) is set when the
 * connection is finalized. */
static void
dropper_start (Dropper    *dropper,
               const char *uri,
               guint       drop_after,
               gboolean   *gone)
{
  seen_init (&dropper->seen);
  dropper->conn = carehare_test_connect (uri);
  dropper->drop_after = drop_after;
  dropper_watch (dropper);
  if (gone != NULL)
    g_object_weak_ref (G_OBJECT (dropper->conn), gone_cb, gone);
}

static void
wait_gone (gboolean *gone)
{
  gboolean timed_out = FALSE;
  guint timeout = g_timeout_add (TIMEOUT_MS, carehare_test_set_flag, &timed_out);

  while (!*gone && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (*gone);
  g_source_remove (timeout);
}

/* The handler of the first confirms drops the program's last reference
 * while more are in flight: the rest are still announced, once, then the
 * connection goes. */
static void
test_tracked_unref_in_handler (void)
{
  Dropper dropper = { 0 };
  g_autofree char *queue = NULL;
  gboolean gone = FALSE;

  dropper_start (&dropper, carehare_test_amqp_uri (), 1, &gone);
  queue = declare_queue (dropper.conn);
  for (guint i = 0; i < 300; i++)
    publish (dropper.conn, &dropper.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, 300);
  g_assert_null (dropper.conn);
  g_assert_cmpuint (dropper.seen.confirmed->len, ==, 300);
  wait_gone (&gone);
  seen_clear (&dropper.seen);
}

/* The same with the last publish: the handler's unref and the tracked
 * reference go in the same announcement. */
static void
test_tracked_unref_in_last_handler (void)
{
  Dropper dropper = { 0 };
  g_autofree char *queue = NULL;
  gboolean gone = FALSE;

  dropper_start (&dropper, carehare_test_amqp_uri (), 1, &gone);
  queue = declare_queue (dropper.conn);
  publish (dropper.conn, &dropper.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, 1);
  g_assert_null (dropper.conn);
  wait_gone (&gone);
  seen_clear (&dropper.seen);
}

/* A handler disposes the connection (g_object_run_dispose(), as bindings
 * do) while publishes are in flight: nothing crashes or leaks, and no
 * publish is announced twice. */
static void
test_tracked_dispose_in_handler (void)
{
  Dropper dropper = { 0 };
  g_autofree char *queue = NULL;
  gboolean gone = FALSE;

  dropper_start (&dropper, carehare_test_amqp_uri (), 1, &gone);
  queue = declare_queue (dropper.conn);
  dropper.dispose = TRUE;
  for (guint i = 0; i < 300; i++)
    publish (dropper.conn, &dropper.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, 1);
  wait_gone (&gone);
  g_test_message ("%u confirmed, %u failed before the dispose", dropper.seen.confirmed->len,
                  g_hash_table_size (dropper.seen.failed));
  seen_clear (&dropper.seen);
}

/* A ::publish-failed handler disposes the connection closed by the
 * program, while the other failures wait to be announced. */
static void
test_tracked_dispose_in_failed_handler (void)
{
  Dropper dropper = { 0 };
  gboolean gone = FALSE;

  dropper_start (&dropper, carehare_test_amqp_uri (), 1, &gone);
  dropper.dispose = TRUE;
  close_connection (dropper.conn);
  for (guint i = 0; i < 20; i++)
    publish (dropper.conn, &dropper.seen, "", "anything", CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, 1);
  wait_gone (&gone);
  g_assert_cmpuint (g_hash_table_size (dropper.seen.failed), >=, 1);
  seen_clear (&dropper.seen);
}

/* A handler closes the connection while publishes are in flight: each is
 * announced once, and the close completes. */
static void
test_tracked_close_in_handler (void)
{
  Dropper dropper = { 0 };
  g_autofree char *queue = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn;

  dropper_start (&dropper, carehare_test_amqp_uri (), 1, NULL);
  conn = dropper.conn;
  queue = declare_queue (dropper.conn);
  dropper.close = TRUE;
  for (guint i = 0; i < 300; i++)
    publish (dropper.conn, &dropper.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, 300);
  carehare_test_wait_for_result (&dropper.closed, TIMEOUT_MS);
  carehare_connection_close_finish (conn, dropper.closed, &error);
  g_assert_no_error (error);
  g_test_message ("%u confirmed, %u failed", dropper.seen.confirmed->len,
                  g_hash_table_size (dropper.seen.failed));
  g_clear_object (&dropper.closed);
  g_object_unref (conn);
  seen_clear (&dropper.seen);
}

/* The server closes the connection with publishes in flight, and the
 * handler of the first failure drops the program's last reference: the
 * other failures are still announced, once, then the connection goes. */
static void
test_tracked_unref_on_server_close (void)
{
  g_autofree char *name = carehare_test_unique_name ("tracked-unref-close");
  g_autofree char *suffix = g_strdup_printf ("/?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  g_autofree char *queue = NULL;
  Dropper dropper = { 0 };
  gboolean gone = FALSE;
  guint n = 0;

  dropper_start (&dropper, uri, G_MAXUINT, &gone);
  queue = declare_queue (dropper.conn);
  for (guint i = 0; i < 50; i++, n++)
    publish (dropper.conn, &dropper.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, n);
  /* The next announcement, a failure, drops the reference. */
  dropper.drop_after = n + 1;
  carehare_test_broker_close_connection (name, "tracked review: closed");
  for (guint i = 0; i < 200; i++, n++)
    publish (dropper.conn, &dropper.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&dropper.seen, n);
  g_assert_null (dropper.conn);
  g_assert_cmpuint (g_hash_table_size (dropper.seen.failed), >, 0);
  wait_gone (&gone);
  seen_clear (&dropper.seen);
}

static void
dispose_when_published_cb (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result,
                                                     &error));
  g_assert_no_error (error);
  g_object_run_dispose (source);
  *(gboolean *) user_data = TRUE;
}

/* A publish_async() callback disposes the connection (from inside the
 * protocol's completions) while tracked publishes are in flight: those
 * the dispose fails are dropped with the connection, nothing else. */
static void
test_tracked_dispose_in_publish_callback (void)
{
  CarehareConnection *conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  g_autoptr(GBytes) body = g_bytes_new_static ("async", 5);
  gboolean disposed = FALSE;
  gboolean gone = FALSE;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  g_object_weak_ref (G_OBJECT (conn), gone_cb, &gone);
  for (guint i = 0; i < 10; i++)
    publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, dispose_when_published_cb, &disposed);
  for (guint i = 0; i < 300; i++)
    publish (conn, &seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  while (!disposed)
    g_main_context_iteration (NULL, TRUE);
  carehare_test_run_for (100);
  g_test_message ("%u confirmed, %u failed", seen.confirmed->len,
                  g_hash_table_size (seen.failed));
  g_object_unref (conn);
  wait_gone (&gone);
  seen_clear (&seen);
}

typedef struct {
  Seen seen;
  GError *error;
  gboolean called;
} SyncInHandler;

static void
sync_confirmed_cb (CarehareConnection *conn,
                   SyncInHandler      *sync)
{
  g_autofree char *name = NULL;

  confirmed_cb (conn, &sync->seen);
  if (sync->called)
    return;
  sync->called = TRUE;
  g_test_expect_message ("Carehare", G_LOG_LEVEL_CRITICAL, "*blocking*inside a callback*");
  name = carehare_connection_queue_declare_sync (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL,
                                                 NULL, NULL, NULL, &sync->error);
  g_test_assert_expected_messages ();
  g_assert_null (name);
}

/* A blocking call in ::publishes-confirmed is refused, as in a
 * ::delivery handler: it could never complete there. */
static void
test_tracked_sync_in_handler (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  SyncInHandler sync = { 0 };

  seen_init (&sync.seen);
  g_signal_connect (conn, "publishes-confirmed", G_CALLBACK (sync_confirmed_cb), &sync);
  g_signal_connect (conn, "publish-failed", G_CALLBACK (failed_cb), &sync.seen);
  for (guint i = 0; i < 10; i++)
    publish (conn, &sync.seen, "", queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&sync.seen, 10);
  g_assert_error (sync.error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&sync.error);
  g_assert_cmpuint (message_count (conn, queue), ==, 10);
  close_connection (conn);
  seen_clear (&sync.seen);
}

/* The server closes the connection while a handler keeps publishing: each
 * publish is announced once, and those the close caught fail with a
 * connection error. */
static void
test_tracked_closed_by_server (void)
{
  g_autofree char *name = carehare_test_unique_name ("tracked-server-close");
  g_autofree char *suffix = g_strdup_printf ("/?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  GHashTableIter iter;
  gpointer value;
  guint64 last;
  Seen seen;

  seen_init (&seen);
  seen.queue = declare_queue (conn);
  seen.republish = G_MAXUINT;
  watch (conn, &seen);
  for (guint i = 0; i < 200; i++)
    publish (conn, &seen, "", seen.queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&seen, 100);
  carehare_test_broker_close_connection (name, "tracked review: closed");
  for (guint i = 0; i < 200; i++)
    publish (conn, &seen, "", seen.queue, CAREHARE_PUBLISH_FLAGS_NONE);
  last = publish (conn, &seen, "", seen.queue, CAREHARE_PUBLISH_FLAGS_NONE);
  /* Each announcement published one more, until the close failed them. */
  wait_announced (&seen, last);
  seen.republish = 0;
  carehare_test_run_for (100);
  g_assert_cmpuint (g_hash_table_size (seen.failed), >, 0);
  last = publish (conn, &seen, "", seen.queue, CAREHARE_PUBLISH_FLAGS_NONE);
  wait_announced (&seen, last);
  g_assert_cmpuint (seen.confirmed->len + g_hash_table_size (seen.failed), ==, last);
  g_hash_table_iter_init (&iter, seen.failed);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_assert_true (g_error_matches (value, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED) ||
                   g_error_matches (value, CAREHARE_ERROR,
                                    CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER));
  g_test_message ("%u confirmed, %u failed", seen.confirmed->len,
                  g_hash_table_size (seen.failed));
  seen_clear (&seen);
}

/* Published while the connection is still connecting: as
 * publish_async(), it fails (never opened), announced later, and the
 * connection then opens normally. */
static void
test_tracked_while_connecting (void)
{
  g_autoptr(CarehareConnection) conn = g_object_new (CAREHARE_TYPE_CONNECTION, "uri",
                                                     carehare_test_amqp_uri (), NULL);
  g_autoptr(GAsyncResult) init = NULL;
  g_autoptr(GAsyncResult) published = NULL;
  g_autoptr(GError) async_error = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("early", 5);
  const GError *tracked_error;
  guint64 id;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  g_async_initable_init_async (G_ASYNC_INITABLE (conn), G_PRIORITY_DEFAULT, NULL,
                               carehare_test_store_result, &init);
  id = publish (conn, &seen, "", "early", CAREHARE_PUBLISH_FLAGS_NONE);
  carehare_connection_publish_async (conn, "", "early", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &published);
  wait_announced (&seen, 1);
  carehare_test_wait_for_result (&published, TIMEOUT_MS);
  g_assert_false (carehare_connection_publish_finish (conn, published, &async_error));
  tracked_error = g_hash_table_lookup (seen.failed, &id);
  g_assert_nonnull (tracked_error);
  g_assert_nonnull (async_error);
  g_assert_true (g_error_matches (tracked_error, async_error->domain, async_error->code));
  carehare_test_wait_for_result (&init, TIMEOUT_MS);
  g_assert_true (g_async_initable_init_finish (G_ASYNC_INITABLE (conn), init, &error));
  g_assert_no_error (error);
  close_connection (conn);
  seen_clear (&seen);
}

/* Closed while connecting, then published: the publish fails like
 * publish_async()'s, announced later; the init fails and the close
 * completes; the connection goes with the last reference. */
static void
test_tracked_close_while_connecting (void)
{
  CarehareConnection *conn = g_object_new (CAREHARE_TYPE_CONNECTION, "uri",
                                           carehare_test_amqp_uri (), NULL);
  g_autoptr(GAsyncResult) init = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  gboolean gone = FALSE;
  const GError *tracked_error;
  guint64 id;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  g_object_weak_ref (G_OBJECT (conn), gone_cb, &gone);
  g_async_initable_init_async (G_ASYNC_INITABLE (conn), G_PRIORITY_DEFAULT, NULL,
                               carehare_test_store_result, &init);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  id = publish (conn, &seen, "", "early", CAREHARE_PUBLISH_FLAGS_NONE);
  g_object_unref (conn);
  wait_announced (&seen, 1);
  tracked_error = g_hash_table_lookup (seen.failed, &id);
  g_assert_error (tracked_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  carehare_test_wait_for_result (&init, TIMEOUT_MS);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_false (g_async_initable_init_finish (G_ASYNC_INITABLE (conn), init, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
  g_clear_object (&init);
  g_clear_object (&closed);
  wait_gone (&gone);
  seen_clear (&seen);
}

/* channel_max=4 and 1 MiB bodies to many exchanges at once: each publish
 * confirmed once. */
static void
test_tracked_many_exchanges (void)
{
  g_autofree char *uri = carehare_test_amqp_uri_with ("/?channel_max=4");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autofree char *queue = declare_queue (conn);
  static const char *const exchanges[] = { "", "amq.direct", "amq.fanout", "amq.topic",
                                           "amq.headers", "amq.match" };
  g_autofree guint8 *big = g_malloc0 (1024 * 1024);
  g_autoptr(GBytes) body = g_bytes_new_static (big, 1024 * 1024);
  guint n = 0;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  for (guint round = 0; round < 5; round++)
    for (guint e = 0; e < G_N_ELEMENTS (exchanges); e++)
      {
        seen.in_call = TRUE;
        carehare_connection_publish_tracked (conn, exchanges[e], queue, body, NULL,
                                             CAREHARE_PUBLISH_FLAGS_NONE);
        seen.in_call = FALSE;
        n++;
      }
  wait_announced (&seen, n);
  g_assert_cmpuint (g_hash_table_size (seen.failed), ==, 0);
  g_assert_cmpuint (seen.confirmed->len, ==, n);
  g_assert_cmpuint (message_count (conn, queue), ==, 5);
  close_connection (conn);
  seen_clear (&seen);
}

/* No handler at all: the outcomes are dropped, nothing leaks, and the
 * connection goes once the program's reference and the publishes are. */
static void
test_tracked_no_handler (void)
{
  CarehareConnection *conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  g_autofree char *missing = carehare_test_unique_name ("missing-exchange");
  g_autoptr(GBytes) body = g_bytes_new_static ("unheard", 7);
  gboolean gone = FALSE;
  gsize n = 1;
  g_autofree guint64 *none = NULL;

  g_object_weak_ref (G_OBJECT (conn), gone_cb, &gone);
  for (guint i = 0; i < 100; i++)
    carehare_connection_publish_tracked (conn, i % 10 == 0 ? missing : "", queue, body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE);
  carehare_test_run_for (200);
  none = carehare_connection_take_confirmed (conn, &n);
  g_assert_null (none);
  g_assert_cmpuint (n, ==, 0);
  g_object_unref (conn);
  wait_gone (&gone);
}

typedef struct {
  CarehareConnection *conn;  /* owned: the thread's reference */
  const char *queue;
} Dropping;

static gpointer
publish_and_drop_thread (gpointer data)
{
  Dropping *dropping = data;
  g_autoptr(GBytes) body = g_bytes_new_static ("and gone", 8);

  for (guint i = 0; i < 100; i++)
    carehare_connection_publish_tracked (dropping->conn, "", dropping->queue, body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE);
  g_clear_object (&dropping->conn);
  return NULL;
}

/* A thread publishes and drops its reference while the main thread drops
 * its own: every publish is still announced, on the main context, then
 * the connection goes. */
static void
test_tracked_thread_drops (void)
{
  CarehareConnection *conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn);
  Dropping dropping = { g_object_ref (conn), queue };
  gboolean gone = FALSE;
  GThread *thread;
  Seen seen;

  seen_init (&seen);
  watch (conn, &seen);
  g_object_weak_ref (G_OBJECT (conn), gone_cb, &gone);
  thread = g_thread_new ("tracked-dropper", publish_and_drop_thread, &dropping);
  g_object_unref (conn);
  wait_announced (&seen, 100);
  g_thread_join (thread);
  g_assert_cmpuint (seen.confirmed->len, ==, 100);
  wait_gone (&gone);
  seen_clear (&seen);
}

typedef struct {
  Seen seen;
  CarehareConnection *conn;
  guint nested;          /* nested main loops still to run, one per announcement */
} Nested;

/* Publishes a tracked message, then one with publish_async(), and runs
 * the main loop until the latter's confirm: the tracked one's confirm
 * (before it on the channel) is read meanwhile. */
static void
publish_and_wait (Nested *nested)
{
  g_autoptr(GBytes) body = g_bytes_new_static ("nested", 6);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  if (nested->nested == 0)
    return;
  nested->nested--;
  publish (nested->conn, &nested->seen, "", nested->seen.queue, CAREHARE_PUBLISH_FLAGS_NONE);
  carehare_connection_publish_async (nested->conn, "", nested->seen.queue, body, NULL,
                                     CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                     carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (nested->conn, result, &error));
  g_assert_no_error (error);
}

static void
nested_confirmed_cb (CarehareConnection *conn,
                     Nested             *nested)
{
  confirmed_cb (conn, &nested->seen);
  publish_and_wait (nested);
}

static void
nested_failed_cb (CarehareConnection *conn,
                  guint64             id,
                  const GError       *error,
                  Nested             *nested)
{
  failed_cb (conn, id, error, &nested->seen);
  publish_and_wait (nested);
}

/* Handlers that run a main loop of their own (a dialog, a blocking wait
 * of the program's) while confirms arrive: those confirms are announced
 * once the handler returned, none is lost. The first announcement is a
 * failure outside a read (a routing key too long), so the loops read. */
static void
test_tracked_nested_loop_in_handler (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *too_long = g_strnfill (300, 'k');
  const GError *error;
  guint64 bad;
  Nested nested = { .conn = conn, .nested = 2 };

  seen_init (&nested.seen);
  nested.seen.queue = declare_queue (conn);
  g_signal_connect (conn, "publishes-confirmed", G_CALLBACK (nested_confirmed_cb), &nested);
  g_signal_connect (conn, "publish-failed", G_CALLBACK (nested_failed_cb), &nested);
  bad = publish (conn, &nested.seen, "", too_long, CAREHARE_PUBLISH_FLAGS_NONE);
  /* The failure, then the confirms of both handlers' publishes. */
  wait_announced (&nested.seen, 3);
  g_assert_cmpuint (nested.nested, ==, 0);
  error = g_hash_table_lookup (nested.seen.failed, &bad);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (nested.seen.confirmed->len, ==, 2);
  g_assert_cmpuint (g_array_index (nested.seen.confirmed, guint64, 0), ==, bad + 1);
  g_assert_cmpuint (g_array_index (nested.seen.confirmed, guint64, 1), ==, bad + 2);
  g_assert_cmpuint (message_count (conn, nested.seen.queue), ==, 4);
  close_connection (conn);
  seen_clear (&nested.seen);
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
  g_test_add_func ("/tracked/retry-from-handler", test_tracked_retry_from_handler);
  g_test_add_func ("/tracked/unref-in-handler", test_tracked_unref_in_handler);
  g_test_add_func ("/tracked/unref-in-last-handler", test_tracked_unref_in_last_handler);
  g_test_add_func ("/tracked/dispose-in-handler", test_tracked_dispose_in_handler);
  g_test_add_func ("/tracked/dispose-in-failed-handler", test_tracked_dispose_in_failed_handler);
  g_test_add_func ("/tracked/close-in-handler", test_tracked_close_in_handler);
  g_test_add_func ("/tracked/unref-on-server-close", test_tracked_unref_on_server_close);
  g_test_add_func ("/tracked/dispose-in-publish-callback",
                   test_tracked_dispose_in_publish_callback);
  g_test_add_func ("/tracked/sync-in-handler", test_tracked_sync_in_handler);
  g_test_add_func ("/tracked/closed-by-server", test_tracked_closed_by_server);
  g_test_add_func ("/tracked/while-connecting", test_tracked_while_connecting);
  g_test_add_func ("/tracked/close-while-connecting", test_tracked_close_while_connecting);
  g_test_add_func ("/tracked/many-exchanges", test_tracked_many_exchanges);
  g_test_add_func ("/tracked/no-handler", test_tracked_no_handler);
  g_test_add_func ("/tracked/thread-drops", test_tracked_thread_drops);
  g_test_add_func ("/tracked/nested-loop-in-handler", test_tracked_nested_loop_in_handler);

  return g_test_run ();
}
