/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Threads and blocking calls, against the private broker (issue 18): the
 * _sync twins in a program without a main loop, from a worker thread while
 * the owner runs the loop, and from inside a callback (a critical, never a
 * hang); publishes from many threads at once on one connection, each
 * thread with its own main context; a consumer acked from a GThreadPool;
 * the same through a CarehareSession, whose topology a worker records
 * while the session's thread is busy, and which a worker closes.
 *
 * CAREHARE_TEST_THREADS and CAREHARE_TEST_PUBLISHES size the many-threads
 * run (8 x 2000 by default; the full run is 8 x 10000);
 * CAREHARE_TEST_SESSION_THREADS and CAREHARE_TEST_SESSION_PUBLISHES the
 * session's (4 x 1000).
 */
#include "carehare-test-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT_MS 30000

static guint
env_uint (const char *name,
          guint       fallback)
{
  const char *value = g_getenv (name);

  return value != NULL && *value != '\0' ? (guint) g_ascii_strtoull (value, NULL, 10) : fallback;
}

static GBytes *
text (const char *s)
{
  return g_bytes_new (s, strlen (s));
}

static char *
body_string (CarehareDelivery *delivery)
{
  GBytes *body = carehare_delivery_get_body (delivery);

  return g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
}

/* ---- blocking calls without a main loop ---------------------------------- */

/* The RPC server of the sync test: it lives on the same (default) main
 * context, which the blocking call iterates, so it answers meanwhile. */
typedef struct {
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  guint served;
} Server;

static void serve_next (Server *server);

static void
served_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error));
  g_assert_no_error (error);
}

static void
request_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Server *server = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) request = NULL;
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GBytes) reply = text ("pong");
  CarehareProperties *in;

  request = carehare_consumer_next_delivery_finish (server->consumer, result, &error);
  if (request == NULL)
    {
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
      return;
    }
  in = carehare_delivery_get_properties (request);
  carehare_properties_set_correlation_id (props, carehare_properties_get_correlation_id (in));
  carehare_connection_publish_async (server->conn, "", carehare_properties_get_reply_to (in),
                                     reply, props, CAREHARE_PUBLISH_FLAGS_NONE, NULL, served_cb,
                                     NULL);
  carehare_consumer_ack (server->consumer, carehare_delivery_get_delivery_tag (request));
  server->served++;
  serve_next (server);
}

static void
serve_next (Server *server)
{
  carehare_consumer_next_delivery_async (server->consumer, NULL, request_cb, server);
}

static void
test_sync_no_main_loop (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(GBytes) body = text ("hello");
  g_autofree char *exchange = carehare_test_unique_name ("threads-sync-x");
  g_autofree char *exchange2 = carehare_test_unique_name ("threads-sync-x2");
  g_autofree char *rpc_queue = NULL;
  g_autofree char *queue = NULL;
  g_autofree char *got = NULL;
  Server server = { 0 };
  guint messages = 99, consumers = 99;

  conn = carehare_connection_new_sync (carehare_test_amqp_uri (), NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (conn);

  queue = carehare_connection_queue_declare_sync (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                  NULL, &messages, &consumers, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (queue);
  g_assert_cmpuint (messages, ==, 0);
  g_assert_cmpuint (consumers, ==, 0);

  g_assert_true (carehare_connection_exchange_declare_sync (conn, exchange, "direct",
                                                            CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE,
                                                            NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_exchange_declare_sync (conn, exchange2, "fanout",
                                                            CAREHARE_EXCHANGE_FLAGS_NONE,
                                                            NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_exchange_bind_sync (conn, exchange, exchange2, "", NULL,
                                                         NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_queue_bind_sync (conn, queue, exchange, "key", NULL, NULL,
                                                      &error));
  g_assert_no_error (error);

  /* Through both exchanges, confirmed; then purged. */
  g_assert_true (carehare_connection_publish_sync (conn, exchange2, "key", body, NULL,
                                                   CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                                   &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_queue_purge_sync (conn, queue, &messages, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (messages, ==, 1);

  g_assert_true (carehare_connection_publish_sync (conn, exchange, "key", body, NULL,
                                                   CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                                   &error));
  g_assert_no_error (error);
  consumer = carehare_connection_acking_consumer_sync (conn, queue, 0, 10, NULL, &error);
  g_assert_no_error (error);
  delivery = carehare_consumer_next_delivery_sync (consumer, NULL, &error);
  g_assert_no_error (error);
  got = body_string (delivery);
  g_assert_cmpstr (got, ==, "hello");
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  g_assert_true (carehare_consumer_close_sync (consumer, NULL, &error));
  g_assert_no_error (error);
  /* The stream's end, at once. */
  g_assert_null (carehare_consumer_next_delivery_sync (consumer, NULL, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
  g_clear_error (&error);

  /* A call, answered by a server on the same context while we block. */
  server.conn = carehare_connection_new_sync (carehare_test_amqp_uri (), NULL, &error);
  g_assert_no_error (error);
  rpc_queue = carehare_connection_queue_declare_sync (server.conn, "",
                                                      CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL,
                                                      NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  server.consumer = carehare_connection_acking_consumer_sync (server.conn, rpc_queue, 0, 10,
                                                              NULL, &error);
  g_assert_no_error (error);
  serve_next (&server);
  reply = carehare_connection_call_sync (conn, "", rpc_queue, body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL, &error);
  g_assert_no_error (error);
  g_clear_pointer (&got, g_free);
  got = body_string (reply);
  g_assert_cmpstr (got, ==, "pong");
  g_assert_cmpuint (server.served, ==, 1);
  g_assert_true (carehare_consumer_close_sync (server.consumer, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&server.consumer);
  g_assert_true (carehare_connection_close_sync (server.conn, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&server.conn);

  g_assert_true (carehare_connection_queue_unbind_sync (conn, queue, exchange, "key", NULL, NULL,
                                                        &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_exchange_unbind_sync (conn, exchange, exchange2, "", NULL,
                                                           NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_exchange_delete_sync (conn, exchange2,
                                                           CAREHARE_EXCHANGE_DELETE_FLAGS_NONE,
                                                           NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_exchange_delete_sync (conn, exchange,
                                                           CAREHARE_EXCHANGE_DELETE_FLAGS_NONE,
                                                           NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_queue_delete_sync (conn, queue,
                                                        CAREHARE_QUEUE_DELETE_FLAGS_NONE,
                                                        &messages, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (messages, ==, 0);

  /* A server error is the call's error; the connection goes on. */
  g_assert_null (carehare_connection_queue_declare_sync (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE,
                                                         NULL, NULL, NULL, NULL, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_clear_error (&error);

  g_assert_true (carehare_connection_close_sync (conn, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_get_is_closed (conn));
}

/* A connect that fails fails the constructor; a cancelled one is cancelled. */
static void
test_sync_new_errors (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CarehareConnection *conn;

  conn = carehare_connection_new_sync ("amqp://guest:wrong@127.0.0.1:1/", NULL, &error);
  g_assert_null (conn);
  g_assert_nonnull (error);
  g_clear_error (&error);

  g_cancellable_cancel (cancellable);
  conn = carehare_connection_new_sync (carehare_test_amqp_uri (), cancellable, &error);
  g_assert_null (conn);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static gpointer
cancel_thread (gpointer user_data)
{
  /* Not a timed test: the call waits for nothing else, so any delay works. */
  g_usleep (50 * G_TIME_SPAN_MILLISECOND);
  g_cancellable_cancel (user_data);
  return NULL;
}

/* A blocking wait for a message that never comes ends when another
 * thread cancels it, and the consumer goes on. */
static void
test_sync_cancel_from_thread (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GBytes) body = text ("after");
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autofree char *queue = NULL;
  GThread *thread;

  conn = carehare_connection_new_sync (carehare_test_amqp_uri (), NULL, &error);
  g_assert_no_error (error);
  queue = carehare_connection_queue_declare_sync (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                  NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  consumer = carehare_connection_acking_consumer_sync (conn, queue, 0, 1, NULL, &error);
  g_assert_no_error (error);

  thread = g_thread_new ("canceller", cancel_thread, cancellable);
  g_assert_null (carehare_consumer_next_delivery_sync (consumer, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_thread_join (thread);

  g_assert_true (carehare_connection_publish_sync (conn, "", queue, body, NULL,
                                                   CAREHARE_PUBLISH_FLAGS_NONE, NULL, &error));
  g_assert_no_error (error);
  delivery = carehare_consumer_next_delivery_sync (consumer, NULL, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  g_assert_true (carehare_connection_close_sync (conn, NULL, &error));
  g_assert_no_error (error);
}

/* ---- blocking calls from many threads, no main loop anywhere ------------- */

typedef struct {
  CarehareConnection *conn;
  const char *queue;
} Blocker;

static gpointer
blocker_thread (gpointer user_data)
{
  Blocker *b = user_data;
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < 50; i++)
    {
      g_autoptr(GBytes) body = text ("blocking");

      g_assert_true (carehare_connection_publish_sync (b->conn, "", b->queue, body, NULL,
                                                       CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                                       &error));
      g_assert_no_error (error);
    }
  return NULL;
}

/* Each blocking caller runs the context while it holds it, and hands it
 * over when done: nobody else iterates it. */
static void
test_sync_threads_no_main_loop (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  g_autofree char *queue = NULL;
  GThread *threads[4];
  Blocker b;
  guint messages = 0;

  conn = carehare_connection_new_sync (carehare_test_amqp_uri (), NULL, &error);
  g_assert_no_error (error);
  queue = carehare_connection_queue_declare_sync (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                  NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  b = (Blocker) { conn, queue };
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("blocker", blocker_thread, &b);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  g_assert_true (carehare_connection_queue_purge_sync (conn, queue, &messages, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (messages, ==, 4 * 50);
  g_assert_true (carehare_connection_close_sync (conn, NULL, &error));
  g_assert_no_error (error);
}

/* ---- a blocking call inside a callback ----------------------------------- */

typedef struct {
  CarehareConnection *conn;
  GMainLoop *loop;
  gboolean ran;
} Inside;

static gboolean
inside_cb (gpointer user_data)
{
  Inside *inside = user_data;
  g_autoptr(GError) error = NULL;
  char *queue;

  g_test_expect_message ("Carehare", G_LOG_LEVEL_CRITICAL, "*blocking*inside a callback*");
  queue = carehare_connection_queue_declare_sync (inside->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                  g_variant_new_parsed ("@a{sv} {}"), NULL,
                                                  NULL, NULL, &error);
  g_test_assert_expected_messages ();
  g_assert_null (queue);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  inside->ran = TRUE;
  g_main_loop_quit (inside->loop);
  return G_SOURCE_REMOVE;
}

static void
test_sync_inside_callback_critical (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  Inside inside = { conn, loop, FALSE };

  g_idle_add (inside_cb, &inside);
  g_main_loop_run (loop);
  g_assert_true (inside.ran);
  /* Nothing was started: the connection is fine. */
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
}

/* ---- blocking calls from a worker while the owner runs the loop ---------- */

typedef struct {
  CarehareConnection *conn;
  GMainContext *owner;
  char *queue;
  guint received;
  gboolean done;
} SyncWorker;

static gpointer
sync_worker_thread (gpointer user_data)
{
  SyncWorker *w = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  guint messages = 0;

  w->queue = carehare_connection_queue_declare_sync (w->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                     NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 20; i++)
    {
      g_autoptr(GBytes) body = text ("from a worker");

      g_assert_true (carehare_connection_publish_sync (w->conn, "", w->queue, body, NULL,
                                                       CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                                       &error));
      g_assert_no_error (error);
    }
  consumer = carehare_connection_acking_consumer_sync (w->conn, w->queue, 0, 5, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 20; i++)
    {
      g_autoptr(CarehareDelivery) delivery = carehare_consumer_next_delivery_sync (consumer, NULL,
                                                                                   &error);

      g_assert_no_error (error);
      g_assert_false (carehare_delivery_get_redelivered (delivery));
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
      w->received++;
    }
  g_assert_true (carehare_consumer_close_sync (consumer, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_queue_delete_sync (w->conn, w->queue,
                                                        CAREHARE_QUEUE_DELETE_FLAGS_NONE,
                                                        &messages, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (messages, ==, 0);
  g_atomic_int_set (&w->done, TRUE);
  g_main_context_wakeup (w->owner);
  return NULL;
}

static void
test_sync_from_worker (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  SyncWorker w = { conn, g_main_context_default () };
  GThread *thread;

  /* This thread runs the connection's context throughout. */
  g_assert_true (g_main_context_acquire (w.owner));
  thread = g_thread_new ("sync-worker", sync_worker_thread, &w);
  while (!g_atomic_int_get (&w.done))
    g_main_context_iteration (w.owner, TRUE);
  g_thread_join (thread);
  g_main_context_release (w.owner);
  g_assert_cmpuint (w.received, ==, 20);
  g_free (w.queue);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
}

/* ---- a close from another thread: signals on the connection's context ---- */

typedef struct {
  CarehareConnection *conn;
  GThread *owner_thread;
  GMainContext *owner;
  guint closed_signals;
  int worker_done;          /* atomic */
  gboolean closed_ok;
} Closer;

static void
closer_closed_signal_cb (CarehareConnection *conn,
                         const GError       *error,
                         gpointer            user_data)
{
  Closer *c = user_data;

  /* Emitted by the thread running the connection's context. */
  g_assert_true (g_thread_self () == c->owner_thread);
  g_assert_null (error);
  c->closed_signals++;
}

static gpointer
closer_thread (gpointer user_data)
{
  Closer *c = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GAsyncResult) result = NULL;

  g_main_context_push_thread_default (context);
  carehare_connection_close_async (c->conn, NULL, carehare_test_store_result, &result);
  /* The callback comes to this thread's context. */
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  c->closed_ok = carehare_connection_close_finish (c->conn, result, NULL);
  g_main_context_pop_thread_default (context);
  g_atomic_int_set (&c->worker_done, TRUE);
  g_main_context_wakeup (c->owner);
  return NULL;
}

static void
test_close_from_thread (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  Closer c = { conn, g_thread_self (), g_main_context_default (), 0, FALSE, FALSE };
  GThread *thread;

  g_signal_connect (conn, "closed", G_CALLBACK (closer_closed_signal_cb), &c);
  g_assert_true (g_main_context_acquire (c.owner));
  thread = g_thread_new ("closer", closer_thread, &c);
  while (!g_atomic_int_get (&c.worker_done))
    g_main_context_iteration (c.owner, TRUE);
  g_main_context_release (c.owner);
  g_thread_join (thread);
  g_assert_true (c.closed_ok);
  g_assert_cmpuint (c.closed_signals, ==, 1);
  g_assert_true (carehare_connection_get_is_closed (conn));
  g_signal_handlers_disconnect_by_data (conn, &c);
}

/* ---- many threads publishing on one connection --------------------------- */

/* One publishing thread, on a connection or (conn NULL) a session. */
typedef struct {
  CarehareConnection *conn;
  const char *queue;
  guint index;
  guint n;
  guint confirmed;         /* callbacks run, in publish order */
  guint failed;
  int *finished;           /* atomic: threads done */
  GMainContext *owner;
  CarehareSession *session;
} Publisher;

typedef struct {
  Publisher *publisher;
  guint seq;
} PublishCall;

static void
thread_published_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  PublishCall *call = user_data;
  Publisher *p = call->publisher;
  g_autoptr(GError) error = NULL;

  gboolean ok;

  /* On the publishing thread's own context, in publish order. */
  g_assert_true (g_main_context_is_owner (g_main_context_get_thread_default ()));
  g_assert_true (g_main_context_get_thread_default () != g_main_context_default ());
  if (p->session != NULL)
    ok = carehare_session_publish_finish (CAREHARE_SESSION (source), result, &error);
  else
    ok = carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error);
  if (!ok)
    {
      g_printerr ("publish %u of thread %u failed: %s\n", call->seq, p->index, error->message);
      p->failed++;
    }
  g_assert_cmpuint (call->seq, ==, p->confirmed);
  p->confirmed++;
  g_free (call);
}

static gpointer
publisher_thread (gpointer user_data)
{
  Publisher *p = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  guint sent = 0;

  g_main_context_push_thread_default (context);
  while (p->confirmed < p->n)
    {
      /* At most 100 in flight per thread. */
      while (sent < p->n && sent - p->confirmed < 100)
        {
          g_autofree char *s = g_strdup_printf ("%u:%u", p->index, sent);
          g_autoptr(GBytes) body = text (s);
          PublishCall *call = g_new0 (PublishCall, 1);

          call->publisher = p;
          call->seq = sent++;
          if (p->session != NULL)
            carehare_session_publish_async (p->session, "", p->queue, body, NULL,
                                            CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                            thread_published_cb, call);
          else
            carehare_connection_publish_async (p->conn, "", p->queue, body, NULL,
                                               CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                               thread_published_cb, call);
        }
      g_main_context_iteration (context, TRUE);
    }
  g_main_context_pop_thread_default (context);
  g_atomic_int_inc (p->finished);
  g_main_context_wakeup (p->owner);
  return NULL;
}

typedef struct {
  CarehareConsumer *consumer;
  guint *next_seq;         /* per thread: the next sequence number expected */
  guint n_threads;
  guint received;
  guint total;
  gboolean ok;
} OrderedConsumer;

static void
ordered_deliveries_cb (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  OrderedConsumer *c = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) deliveries = NULL;

  deliveries = carehare_consumer_next_deliveries_finish (c->consumer, result, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < deliveries->len; i++)
    {
      CarehareDelivery *delivery = deliveries->pdata[i];
      g_autofree char *body = body_string (delivery);
      guint thread, seq;

      g_assert_cmpint (sscanf (body, "%u:%u", &thread, &seq), ==, 2);
      g_assert_cmpuint (thread, <, c->n_threads);
      /* Deliveries of one thread come in its publish order. */
      g_assert_cmpuint (seq, ==, c->next_seq[thread]);
      c->next_seq[thread]++;
      c->received++;
    }
  if (deliveries->len > 0)
    carehare_consumer_ack_up_to (c->consumer, carehare_delivery_get_delivery_tag (
                                   deliveries->pdata[deliveries->len - 1]));
  if (c->received < c->total)
    carehare_consumer_next_deliveries_async (c->consumer, 0, NULL, ordered_deliveries_cb, c);
}

static void
test_many_threads_publish (void)
{
  guint n_threads = env_uint ("CAREHARE_TEST_THREADS", 8);
  guint n = env_uint ("CAREHARE_TEST_PUBLISHES", 2000);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GAsyncResult) started = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  g_autofree Publisher *publishers = g_new0 (Publisher, n_threads);
  g_autofree GThread **threads = g_new0 (GThread *, n_threads);
  g_autofree guint *next_seq = g_new0 (guint, n_threads);
  OrderedConsumer consumer = { NULL, next_seq, n_threads, 0, n_threads * n };
  GMainContext *owner = g_main_context_default ();
  int finished = 0;
  gint64 start;

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_no_error (error);
  carehare_connection_acking_consumer_async (conn, queue, 0, 1000, NULL,
                                             carehare_test_store_result, &started);
  carehare_test_wait_for_result (&started, TIMEOUT_MS);
  consumer.consumer = carehare_connection_acking_consumer_finish (conn, started, &error);
  g_assert_no_error (error);
  carehare_consumer_next_deliveries_async (consumer.consumer, 0, NULL, ordered_deliveries_cb,
                                           &consumer);

  start = g_get_monotonic_time ();
  g_assert_true (g_main_context_acquire (owner));
  for (guint i = 0; i < n_threads; i++)
    {
      publishers[i] = (Publisher) { conn, queue, i, n, 0, 0, &finished, owner };
      threads[i] = g_thread_new ("publisher", publisher_thread, &publishers[i]);
    }
  while ((guint) g_atomic_int_get (&finished) < n_threads || consumer.received < consumer.total)
    g_main_context_iteration (owner, TRUE);
  g_main_context_release (owner);
  g_test_message ("%u threads x %u publishes with confirms, consumed: %.0f messages/s",
                  n_threads, n, n_threads * n / ((g_get_monotonic_time () - start) / 1e6));
  for (guint i = 0; i < n_threads; i++)
    {
      g_thread_join (threads[i]);
      g_assert_cmpuint (publishers[i].confirmed, ==, n);
      g_assert_cmpuint (publishers[i].failed, ==, 0);
      g_assert_cmpuint (next_seq[i], ==, n);
    }
  g_assert_cmpuint (consumer.received, ==, n_threads * n);

  g_clear_object (&consumer.consumer);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
}

/* ---- a consumer acked from a thread pool --------------------------------- */

#define POOL_MESSAGES 500

typedef struct {
  CarehareConsumer *consumer;
  int acks[POOL_MESSAGES + 1];    /* atomic, by body number */
  int acked;                      /* atomic */
  guint received;
  guint redelivered;
  GThreadPool *pool;
} Pool;

static void
pool_work (gpointer data,
           gpointer user_data)
{
  CarehareDelivery *delivery = data;
  Pool *pool = user_data;
  g_autofree char *body = body_string (delivery);
  guint number = (guint) g_ascii_strtoull (body, NULL, 10);

  g_assert_cmpuint (number, <, POOL_MESSAGES);
  g_atomic_int_inc (&pool->acks[number]);
  carehare_consumer_ack (pool->consumer, carehare_delivery_get_delivery_tag (delivery));
  g_object_unref (delivery);
  g_atomic_int_inc (&pool->acked);
  g_main_context_wakeup (g_main_context_default ());
}

static void
pool_delivery_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  Pool *pool = user_data;
  g_autoptr(GError) error = NULL;
  CarehareDelivery *delivery;

  delivery = carehare_consumer_next_delivery_finish (pool->consumer, result, &error);
  if (delivery == NULL)
    {
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
      return;
    }
  pool->received++;
  if (carehare_delivery_get_redelivered (delivery))
    pool->redelivered++;
  g_assert_true (g_thread_pool_push (pool->pool, delivery, NULL));
  carehare_consumer_next_delivery_async (pool->consumer, NULL, pool_delivery_cb, pool);
}

static void
test_thread_pool_acks (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GAsyncResult) started = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GAsyncResult) checked = NULL;
  g_autofree char *queue = NULL;
  g_autofree Pool *pool = g_new0 (Pool, 1);
  guint messages = 99;

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < POOL_MESSAGES; i++)
    {
      g_autofree char *s = g_strdup_printf ("%u", i);
      g_autoptr(GBytes) body = text (s);

      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, NULL, NULL);
    }
  /* A prefetch window smaller than the batch: acks must flow for it to end. */
  carehare_connection_acking_consumer_async (conn, queue, 0, 50, NULL,
                                             carehare_test_store_result, &started);
  carehare_test_wait_for_result (&started, TIMEOUT_MS);
  pool->consumer = carehare_connection_acking_consumer_finish (conn, started, &error);
  g_assert_no_error (error);
  pool->pool = g_thread_pool_new (pool_work, pool, 4, FALSE, &error);
  g_assert_no_error (error);
  carehare_consumer_next_delivery_async (pool->consumer, NULL, pool_delivery_cb, pool);

  while (g_atomic_int_get (&pool->acked) < POOL_MESSAGES)
    g_main_context_iteration (NULL, TRUE);
  g_thread_pool_free (pool->pool, FALSE, TRUE);
  /* Idle pool threads would outlive the test with their thread-local
   * GSlice magazines, which LeakSanitizer (use_tls=0) reports. */
  g_thread_pool_set_max_unused_threads (0);
  g_thread_pool_stop_unused_threads ();
  g_assert_cmpuint (pool->received, ==, POOL_MESSAGES);
  g_assert_cmpuint (pool->redelivered, ==, 0);
  for (guint i = 0; i < POOL_MESSAGES; i++)
    g_assert_cmpint (pool->acks[i], ==, 1);

  /* Every ack reached the broker: once the consumer is closed nothing
   * comes back to the queue. */
  carehare_consumer_close_async (pool->consumer, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (pool->consumer, closed, &error));
  g_clear_object (&closed);
  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &checked);
  carehare_test_wait_for_result (&checked, TIMEOUT_MS);
  g_free (carehare_connection_queue_declare_finish (conn, checked, &messages, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (messages, ==, 0);
  g_clear_object (&pool->consumer);

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
}

/* ---- an _async call from another thread never waits ---------------------- */

/* Every operation a worker thread starts with _async returns at once,
 * although the thread that runs the connection's context is busy (here:
 * waiting for the worker to have issued them all); the callbacks run on the
 * worker's own context once the owner runs the connection's again. */
typedef struct {
  CarehareConnection *conn;
  GMutex lock;
  GCond cond;
  gboolean issued;          /* under lock */
  int pending;              /* worker's thread only */
  guint failures;
  CarehareConsumer *consumer;
  char *queue;
  char *exchange;
  int done;                 /* atomic */
} Issuer;

static void
issued_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  Issuer *is = user_data;
  g_autoptr(GError) error = NULL;
  gpointer tag = g_task_get_source_tag (G_TASK (result));
  gboolean ok = TRUE;

  if (tag == carehare_connection_queue_declare_async)
    {
      g_autofree char *name = carehare_connection_queue_declare_finish (is->conn, result, NULL,
                                                                        NULL, &error);
      ok = name != NULL;
    }
  else if (tag == carehare_connection_exchange_declare_async)
    ok = carehare_connection_exchange_declare_finish (is->conn, result, &error);
  else if (tag == carehare_connection_queue_bind_async)
    ok = carehare_connection_queue_bind_finish (is->conn, result, &error);
  else if (tag == carehare_connection_queue_purge_async)
    ok = carehare_connection_queue_purge_finish (is->conn, result, NULL, &error);
  else if (tag == carehare_connection_acking_consumer_full_async)
    {
      is->consumer = carehare_connection_acking_consumer_finish (is->conn, result, &error);
      ok = is->consumer != NULL;
    }
  else
    g_assert_not_reached ();
  g_assert_no_error (error);
  if (!ok)
    is->failures++;
  is->pending--;
}

static gpointer
issuer_thread (gpointer user_data)
{
  Issuer *is = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  carehare_connection_queue_declare_async (is->conn, is->queue, CAREHARE_QUEUE_FLAGS_AUTO_DELETE,
                                           NULL, NULL, issued_cb, is);
  carehare_connection_exchange_declare_async (is->conn, is->exchange, "fanout",
                                              CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL, NULL,
                                              issued_cb, is);
  carehare_connection_queue_bind_async (is->conn, is->queue, is->exchange, "", NULL, NULL,
                                        issued_cb, is);
  carehare_connection_queue_purge_async (is->conn, is->queue, NULL, issued_cb, is);
  carehare_connection_acking_consumer_async (is->conn, is->queue, 0, 10, NULL, issued_cb, is);
  is->pending = 5;

  g_mutex_lock (&is->lock);
  is->issued = TRUE;
  g_cond_signal (&is->cond);
  g_mutex_unlock (&is->lock);

  while (is->pending > 0)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_atomic_int_set (&is->done, TRUE);
  g_main_context_wakeup (g_main_context_default ());
  return NULL;
}

static void
test_async_from_thread_never_waits (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  Issuer is = { conn };
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  GThread *thread;
  gboolean issued;

  is.queue = g_strdup_printf ("threads-never-waits-%d-%u", (int) getpid (), g_random_int ());
  is.exchange = g_strdup_printf ("%s-x", is.queue);
  g_mutex_init (&is.lock);
  g_cond_init (&is.cond);
  /* They exist already: the worker's calls run on pooled channels, in no
   * particular order at the broker, and must not depend on each other. */
  g_free (carehare_connection_queue_declare_sync (conn, is.queue, CAREHARE_QUEUE_FLAGS_AUTO_DELETE,
                                                  NULL, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_exchange_declare_sync (conn, is.exchange, "fanout",
                                                            CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE,
                                                            NULL, NULL, &error));
  g_assert_no_error (error);
  /* This thread holds the connection's context throughout, and is busy:
   * it does not run it until the worker has issued every call. */
  g_assert_true (g_main_context_acquire (g_main_context_default ()));
  thread = g_thread_new ("issuer", issuer_thread, &is);

  g_mutex_lock (&is.lock);
  while (!is.issued)
    if (!g_cond_wait_until (&is.cond, &is.lock, end))
      break;
  issued = is.issued;
  g_mutex_unlock (&is.lock);
  g_assert_true (issued);

  while (!g_atomic_int_get (&is.done))
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (thread);
  g_main_context_release (g_main_context_default ());
  g_assert_cmpuint (is.failures, ==, 0);
  g_assert_nonnull (is.consumer);
  g_assert_true (carehare_consumer_close_sync (is.consumer, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&is.consumer);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, closed, &error));
  g_assert_no_error (error);
  g_mutex_clear (&is.lock);
  g_cond_clear (&is.cond);
  g_free (is.queue);
  g_free (is.exchange);
}

/* ---- a session from any thread ------------------------------------------- */

/* A session's state is touched only on its context (the default one here,
 * run by the test's main thread); workers publish, record topology, ack
 * and close through it, each with a context of its own. */

static CarehareSession *
session_new_local (void)
{
  const char *uris[] = { carehare_test_amqp_uri (), NULL };
  CarehareSession *session = carehare_session_new (uris);

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 100);
  return session;
}

/* Iterates the session's (default) context until it is connected. */
static void
session_wait_connected (CarehareSession *session)
{
  gint64 end = g_get_monotonic_time () + TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;

  while (carehare_session_get_state (session) != CAREHARE_SESSION_STATE_CONNECTED)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, end);
      g_main_context_iteration (NULL, TRUE);
    }
}

static void
session_close (CarehareSession *session)
{
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;

  carehare_session_close_async (session, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_session_close_finish (session, closed, &error));
  g_assert_no_error (error);
}

/* Several threads publish through one session, some before it is
 * connected: every publish is confirmed, on the publishing thread, in its
 * order, and a session consumer gets each thread's messages in order. */
static void
test_session_many_threads_publish (void)
{
  guint n_threads = env_uint ("CAREHARE_TEST_SESSION_THREADS", 4);
  guint n = env_uint ("CAREHARE_TEST_SESSION_PUBLISHES", 1000);
  g_autoptr(CarehareSession) session = session_new_local ();
  g_autofree char *queue = carehare_test_unique_name ("threads-session");
  g_autofree Publisher *publishers = g_new0 (Publisher, n_threads);
  g_autofree GThread **threads = g_new0 (GThread *, n_threads);
  g_autofree guint *next_seq = g_new0 (guint, n_threads);
  OrderedConsumer consumer = { NULL, next_seq, n_threads, 0, n_threads * n, TRUE };
  int finished = 0;

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  consumer.consumer = carehare_session_acking_consumer (session, queue, 1000);
  carehare_consumer_next_deliveries_async (consumer.consumer, 0, NULL, ordered_deliveries_cb,
                                           &consumer);

  g_assert_true (g_main_context_acquire (g_main_context_default ()));
  for (guint i = 0; i < n_threads; i++)
    {
      publishers[i] = (Publisher) { NULL, queue, i, n, 0, 0, &finished,
                                    g_main_context_default (), session };
      threads[i] = g_thread_new ("session-publisher", publisher_thread, &publishers[i]);
    }
  /* Started once the threads publish: the first publishes wait for it. */
  carehare_session_start (session);
  while ((guint) g_atomic_int_get (&finished) < n_threads || consumer.received < consumer.total)
    g_main_context_iteration (NULL, TRUE);
  g_main_context_release (g_main_context_default ());
  for (guint i = 0; i < n_threads; i++)
    {
      g_thread_join (threads[i]);
      g_assert_cmpuint (publishers[i].confirmed, ==, n);
      g_assert_cmpuint (publishers[i].failed, ==, 0);
      g_assert_cmpuint (next_seq[i], ==, n);
    }
  g_assert_cmpuint (consumer.received, ==, n_threads * n);

  g_clear_object (&consumer.consumer);
  session_close (session);
}

/* Topology, a consumer and a publish recorded from a worker while the
 * session's thread is busy holding its context: none of them waits; the
 * worker gets its callbacks on its own context once the session's runs. */
typedef struct {
  CarehareSession *session;
  char *queue;
  char *exchange;
  GMutex lock;
  GCond cond;
  gboolean issued;          /* under lock */
  CarehareConsumer *consumer;
  gboolean published;
  char *received;
  int done;                 /* atomic */
} Recorder;

static void
recorder_published_cb (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  Recorder *rec = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (g_main_context_get_thread_default () != g_main_context_default ());
  rec->published = carehare_session_publish_finish (rec->session, result, &error);
  g_assert_no_error (error);
}

static void
recorder_delivery_cb (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  Recorder *rec = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  g_assert_true (g_main_context_get_thread_default () != g_main_context_default ());
  delivery = carehare_consumer_next_delivery_finish (rec->consumer, result, &error);
  g_assert_no_error (error);
  rec->received = body_string (delivery);
  /* Settled from this thread too. */
  carehare_consumer_ack (rec->consumer, carehare_delivery_get_delivery_tag (delivery));
}

static gpointer
recorder_thread (gpointer user_data)
{
  Recorder *rec = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GBytes) body = text ("recorded");

  g_main_context_push_thread_default (context);
  carehare_session_declare_exchange (rec->session, rec->exchange, "fanout",
                                     CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL);
  carehare_session_declare_queue (rec->session, rec->queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  carehare_session_bind_queue (rec->session, rec->queue, rec->exchange, "", NULL);
  rec->consumer = carehare_session_acking_consumer (rec->session, rec->queue, 10);
  carehare_consumer_next_delivery_async (rec->consumer, NULL, recorder_delivery_cb, rec);
  carehare_session_publish_async (rec->session, rec->exchange, "", body, NULL,
                                  CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL, recorder_published_cb,
                                  rec);
  carehare_session_set_reconnect_delay_max (rec->session, 200);
  carehare_session_start (rec->session);

  g_mutex_lock (&rec->lock);
  rec->issued = TRUE;
  g_cond_signal (&rec->cond);
  g_mutex_unlock (&rec->lock);

  while (!rec->published || rec->received == NULL)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_atomic_int_set (&rec->done, TRUE);
  g_main_context_wakeup (g_main_context_default ());
  return NULL;
}

static void
test_session_record_never_waits (void)
{
  const char *uris[] = { carehare_test_amqp_uri (), NULL };
  g_autoptr(CarehareSession) session = carehare_session_new (uris);
  Recorder rec = { session };
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  GThread *thread;
  gboolean issued;

  rec.queue = carehare_test_unique_name ("threads-session-record");
  rec.exchange = g_strdup_printf ("%s-x", rec.queue);
  g_mutex_init (&rec.lock);
  g_cond_init (&rec.cond);
  /* This thread holds the session's context throughout, and is busy: it
   * does not run it until the worker has recorded everything. */
  g_assert_true (g_main_context_acquire (g_main_context_default ()));
  thread = g_thread_new ("recorder", recorder_thread, &rec);

  g_mutex_lock (&rec.lock);
  while (!rec.issued)
    if (!g_cond_wait_until (&rec.cond, &rec.lock, end))
      break;
  issued = rec.issued;
  g_mutex_unlock (&rec.lock);
  g_assert_true (issued);
  /* Nothing ran yet: the calls wait in the session's mailbox. */
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_STOPPED);

  while (!g_atomic_int_get (&rec.done))
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (thread);
  g_main_context_release (g_main_context_default ());
  g_assert_cmpstr (rec.received, ==, "recorded");
  g_assert_cmpuint (carehare_session_get_reconnect_delay_max (session), ==, 200);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTED);

  g_clear_object (&rec.consumer);
  session_close (session);
  g_mutex_clear (&rec.lock);
  g_cond_clear (&rec.cond);
  g_free (rec.received);
  g_free (rec.queue);
  g_free (rec.exchange);
}

/* A session consumer whose deliveries are acked from a thread pool: every
 * message acked once, none redelivered, nothing left in the queue. */
static void
test_session_thread_pool_acks (void)
{
  g_autoptr(CarehareSession) session = session_new_local ();
  g_autofree char *queue = carehare_test_unique_name ("threads-session-pool");
  g_autoptr(GAsyncResult) checked = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree Pool *pool = g_new0 (Pool, 1);
  guint messages = 99;

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  for (guint i = 0; i < POOL_MESSAGES; i++)
    {
      g_autofree char *s = g_strdup_printf ("%u", i);
      g_autoptr(GBytes) body = text (s);

      carehare_session_publish_async (session, "", queue, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL, NULL, NULL);
    }
  /* A prefetch window smaller than the batch: acks must flow for it to end. */
  pool->consumer = carehare_session_acking_consumer (session, queue, 50);
  pool->pool = g_thread_pool_new (pool_work, pool, 4, FALSE, &error);
  g_assert_no_error (error);
  carehare_consumer_next_delivery_async (pool->consumer, NULL, pool_delivery_cb, pool);
  carehare_session_start (session);

  while (g_atomic_int_get (&pool->acked) < POOL_MESSAGES)
    g_main_context_iteration (NULL, TRUE);
  g_thread_pool_free (pool->pool, FALSE, TRUE);
  g_thread_pool_set_max_unused_threads (0);
  g_thread_pool_stop_unused_threads ();
  g_assert_cmpuint (pool->received, ==, POOL_MESSAGES);
  g_assert_cmpuint (pool->redelivered, ==, 0);
  for (guint i = 0; i < POOL_MESSAGES; i++)
    g_assert_cmpint (pool->acks[i], ==, 1);

  /* Every ack reached the broker: after a round trip on the same
   * connection (which follows the acks), nothing is left in the queue. */
  carehare_connection_queue_declare_async (carehare_session_get_connection (session), queue,
                                           CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &checked);
  carehare_test_wait_for_result (&checked, TIMEOUT_MS);
  g_free (carehare_connection_queue_declare_finish (carehare_session_get_connection (session),
                                                    checked, &messages, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (messages, ==, 0);
  /* The waiting next_delivery ends (CHANNEL_CLOSED) on this thread. */
  carehare_consumer_close_async (pool->consumer, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (pool->consumer, closed, &error));
  g_assert_no_error (error);
  g_clear_object (&pool->consumer);
  session_close (session);
}

/* A worker with a context of its own takes messages from a session
 * consumer with the blocking twins while the session's thread waits for it
 * (in g_thread_join(): nobody runs the session's context). The blocking
 * call runs the session's context itself, as it runs a connection's. */
typedef struct {
  CarehareConsumer *consumer;
  guint received;
  gboolean closed;
} SyncSessionWorker;

static gpointer
sync_session_worker_thread (gpointer user_data)
{
  SyncSessionWorker *w = user_data;
  g_autoptr(GMainContext) own = g_main_context_new ();
  g_autoptr(GError) error = NULL;

  g_main_context_push_thread_default (own);
  for (guint i = 0; i < 5; i++)
    {
      g_autoptr(CarehareDelivery) delivery = carehare_consumer_next_delivery_sync (w->consumer,
                                                                                   NULL, &error);

      g_assert_no_error (error);
      carehare_consumer_ack (w->consumer, carehare_delivery_get_delivery_tag (delivery));
      w->received++;
    }
  w->closed = carehare_consumer_close_sync (w->consumer, NULL, &error);
  g_assert_no_error (error);
  g_main_context_pop_thread_default (own);
  return NULL;
}

static void
test_session_sync_from_worker (void)
{
  g_autoptr(CarehareSession) session = session_new_local ();
  g_autofree char *queue = carehare_test_unique_name ("threads-session-sync");
  g_autoptr(CarehareConsumer) consumer = NULL;
  SyncSessionWorker w = { NULL };
  GThread *thread;

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  consumer = carehare_session_acking_consumer (session, queue, 10);
  carehare_session_start (session);
  session_wait_connected (session);
  for (guint i = 0; i < 5; i++)
    {
      g_autoptr(GAsyncResult) published = NULL;
      g_autoptr(GBytes) body = text ("for a blocking worker");
      g_autoptr(GError) error = NULL;

      carehare_session_publish_async (session, "", queue, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                      carehare_test_store_result, &published);
      carehare_test_wait_for_result (&published, TIMEOUT_MS);
      g_assert_true (carehare_session_publish_finish (session, published, &error));
      g_assert_no_error (error);
    }

  w.consumer = consumer;
  thread = g_thread_new ("sync-session-worker", sync_session_worker_thread, &w);
  g_thread_join (thread);
  g_assert_cmpuint (w.received, ==, 5);
  g_assert_true (w.closed);
  session_close (session);
}

/* Closing from a thread: the callback on that thread's context, the
 * ::disconnected signal on the session's, and a delivery a worker waits
 * for fails on the worker's context. */
typedef struct {
  CarehareSession *session;
  CarehareConsumer *consumer;
  GThread *owner_thread;
  guint disconnected;
  gboolean closed_ok;
  GError *next_error;
  int done;                 /* atomic */
} SessionCloser;

static void
session_closer_disconnected_cb (CarehareSession *session,
                                const GError    *error,
                                gpointer         user_data)
{
  SessionCloser *c = user_data;

  g_assert_true (g_thread_self () == c->owner_thread);
  g_assert_null (error);
  c->disconnected++;
}

static gpointer
session_closer_thread (gpointer user_data)
{
  SessionCloser *c = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GAsyncResult) next = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  g_main_context_push_thread_default (context);
  carehare_consumer_next_delivery_async (c->consumer, NULL, carehare_test_store_result, &next);
  carehare_session_close_async (c->session, NULL, carehare_test_store_result, &closed);
  while (closed == NULL || next == NULL)
    g_main_context_iteration (context, TRUE);
  c->closed_ok = carehare_session_close_finish (c->session, closed, NULL);
  delivery = carehare_consumer_next_delivery_finish (c->consumer, next, &c->next_error);
  g_main_context_pop_thread_default (context);
  g_atomic_int_set (&c->done, TRUE);
  g_main_context_wakeup (g_main_context_default ());
  return NULL;
}

static void
test_session_close_from_thread (void)
{
  g_autoptr(CarehareSession) session = session_new_local ();
  g_autofree char *queue = carehare_test_unique_name ("threads-session-close");
  SessionCloser c = { session, NULL, g_thread_self () };
  GThread *thread;

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  c.consumer = carehare_session_acking_consumer (session, queue, 10);
  g_signal_connect (session, "disconnected", G_CALLBACK (session_closer_disconnected_cb), &c);
  carehare_session_start (session);
  session_wait_connected (session);

  g_assert_true (g_main_context_acquire (g_main_context_default ()));
  thread = g_thread_new ("session-closer", session_closer_thread, &c);
  while (!g_atomic_int_get (&c.done))
    g_main_context_iteration (NULL, TRUE);
  g_main_context_release (g_main_context_default ());
  g_thread_join (thread);
  g_assert_true (c.closed_ok);
  g_assert_error (c.next_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (c.disconnected, ==, 1);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_STOPPED);
  g_assert_null (carehare_session_get_connection (session));
  g_signal_handlers_disconnect_by_data (session, &c);
  g_clear_error (&c.next_error);
  g_clear_object (&c.consumer);
}

/* A session consumer settled and asked for more from another thread after
 * the session was closed (@drop: and its last reference dropped): the
 * settles are dropped, the call fails with CONNECTION_CLOSED (the session
 * closed) on the thread's own context, and the thread drops the consumer's
 * last reference. */
typedef struct {
  CarehareConsumer *consumer;   /* owned, dropped by the thread */
  guint64 tag;
  GError *error;
} LateSettler;

static gpointer
late_settler_thread (gpointer user_data)
{
  LateSettler *l = user_data;
  g_autoptr(GMainContext) own = g_main_context_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  g_main_context_push_thread_default (own);
  carehare_consumer_ack (l->consumer, l->tag);
  carehare_consumer_nack (l->consumer, l->tag + 1, TRUE);
  carehare_consumer_ack_up_to (l->consumer, l->tag + 2);
  carehare_consumer_next_delivery_async (l->consumer, NULL, carehare_test_store_result, &result);
  while (result == NULL)
    g_main_context_iteration (own, TRUE);
  delivery = carehare_consumer_next_delivery_finish (l->consumer, result, &l->error);
  g_assert_null (delivery);
  g_clear_object (&result);
  g_clear_object (&l->consumer);
  g_main_context_pop_thread_default (own);
  return NULL;
}

static void
test_session_settle_after_close (gconstpointer data)
{
  gboolean drop = GPOINTER_TO_INT (data);
  CarehareSession *session = session_new_local ();
  g_autofree char *queue = carehare_test_unique_name ("threads-session-late");
  g_autoptr(GAsyncResult) got = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  LateSettler l = { 0 };

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_AUTO_DELETE, NULL);
  for (guint i = 0; i < 4; i++)
    {
      g_autoptr(GBytes) body = text ("late");

      carehare_session_publish_async (session, "", queue, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL, NULL, NULL);
    }
  l.consumer = carehare_session_acking_consumer (session, queue, 10);
  carehare_session_start (session);
  carehare_consumer_next_delivery_async (l.consumer, NULL, carehare_test_store_result, &got);
  carehare_test_wait_for_result (&got, TIMEOUT_MS);
  delivery = carehare_consumer_next_delivery_finish (l.consumer, got, &error);
  g_assert_no_error (error);
  l.tag = carehare_delivery_get_delivery_tag (delivery);

  session_close (session);
  if (drop)
    g_clear_object (&session);
  g_thread_join (g_thread_new ("late-settler", late_settler_thread, &l));
  g_assert_error (l.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_clear_error (&l.error);
  g_assert_null (l.consumer);
  /* What the thread queued to the session's context runs, harmlessly. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_clear_object (&session);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/threads/sync/no-main-loop", test_sync_no_main_loop);
  g_test_add_func ("/threads/sync/new-errors", test_sync_new_errors);
  g_test_add_func ("/threads/sync/cancel-from-thread", test_sync_cancel_from_thread);
  g_test_add_func ("/threads/sync/threads-no-main-loop", test_sync_threads_no_main_loop);
  g_test_add_func ("/threads/sync/inside-callback-critical", test_sync_inside_callback_critical);
  g_test_add_func ("/threads/sync/from-worker", test_sync_from_worker);
  g_test_add_func ("/threads/close/from-thread", test_close_from_thread);
  g_test_add_func ("/threads/async/never-waits", test_async_from_thread_never_waits);
  g_test_add_func ("/threads/publish/many-threads", test_many_threads_publish);
  g_test_add_func ("/threads/consume/thread-pool-acks", test_thread_pool_acks);
  g_test_add_func ("/threads/session/many-threads-publish", test_session_many_threads_publish);
  g_test_add_func ("/threads/session/record-never-waits", test_session_record_never_waits);
  g_test_add_func ("/threads/session/thread-pool-acks", test_session_thread_pool_acks);
  g_test_add_func ("/threads/session/sync-from-worker", test_session_sync_from_worker);
  g_test_add_func ("/threads/session/close-from-thread", test_session_close_from_thread);
  g_test_add_data_func ("/threads/session/settle-after-close", GINT_TO_POINTER (FALSE),
                        test_session_settle_after_close);
  g_test_add_data_func ("/threads/session/settle-after-drop", GINT_TO_POINTER (TRUE),
                        test_session_settle_after_close);

  return g_test_run ();
}
