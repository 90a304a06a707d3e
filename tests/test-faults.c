/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Faults no happy-path test reaches: a broker that stalls, resets or cuts
 * the connection in the middle of a frame, or closes it, with operations in
 * flight; and an application loop that reconnects after each fault.
 *
 * The faults come from fault-proxy.c, a TCP proxy on loopback between the
 * library and the private broker (test-server/broker). The broker node
 * itself is never stopped or killed here: other tests use it concurrently.
 */
#include "carehare-test-util.h"

#include "fault-proxy.h"

#include <string.h>

#define TIMEOUT_MS 30000

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  guint n_closed;
  GError *error;       /* of the last emission */
  gint64 time;         /* monotonic time of the last emission */
} ClosedRecord;

static void
closed_cb (GObject      *object,
           const GError *error,
           gpointer      user_data)
{
  ClosedRecord *rec = user_data;

  rec->n_closed++;
  rec->time = g_get_monotonic_time ();
  g_clear_error (&rec->error);
  if (error != NULL)
    rec->error = g_error_copy (error);
}

static guint16
broker_port (void)
{
  const char *port = g_getenv ("CAREHARE_TEST_BROKER_PORT");

  /* carehare_test_amqp_uri() fails the test when the broker is missing. */
  carehare_test_amqp_uri ();
  g_assert_nonnull (port);
  return (guint16) g_ascii_strtoull (port, NULL, 10);
}

static gboolean
set_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates until *@result is set or @timeout_ms passed; FALSE on timeout. */
static gboolean
wait_for (GAsyncResult **result,
          guint          timeout_ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (timeout_ms, set_flag_cb, &timed_out);

  while (*result == NULL && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  return *result != NULL;
}

/* A result and when it arrived. */
typedef struct {
  GAsyncResult *result;
  gint64 time;
} Timed;

static void
store_timed_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Timed *timed = user_data;

  g_assert_null (timed->result);
  timed->result = g_object_ref (result);
  timed->time = g_get_monotonic_time ();
}

static char *
declare (CarehareConnection  *conn,
         const char          *name,
         CarehareQueueFlags   flags,
         guint               *message_count,
         GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_queue_declare_async (conn, name, flags, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_queue_declare_finish (conn, result, message_count, NULL, error);
}

static void
delete_queue (CarehareConnection *conn,
              const char         *name)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_queue_delete_async (conn, name, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  carehare_connection_queue_delete_finish (conn, result, NULL, &error);
  g_assert_no_error (error);
}

static CarehareConsumer *
start_consumer (CarehareConnection  *conn,
                const char          *queue,
                guint16              prefetch,
                GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_acking_consumer_async (conn, queue, 0, prefetch, NULL,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_acking_consumer_finish (conn, result, error);
}

static gboolean
close_conn (CarehareConnection  *conn,
            GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_close_finish (conn, result, error);
}

static GBytes *
seq_body (guint seq)
{
  char *text = g_strdup_printf ("%u", seq);

  return g_bytes_new_take (text, strlen (text));
}

static guint
delivery_seq (CarehareDelivery *delivery)
{
  GBytes *body = carehare_delivery_get_body (delivery);
  gsize size;
  const char *data = g_bytes_get_data (body, &size);
  g_autofree char *text = g_strndup (data, size);
  guint64 seq = 0;
  g_autoptr(GError) error = NULL;

  g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT, &seq, &error);
  g_assert_no_error (error);
  return (guint) seq;
}

/* Publishes @n messages carrying @first.. on a direct connection and waits
 * until the broker confirmed each. */
static void
publish_batch (CarehareConnection *conn,
               const char         *queue,
               guint               first,
               guint               n)
{
  GAsyncResult **results = g_new0 (GAsyncResult *, n);
  g_autoptr(CarehareProperties) props = carehare_properties_new ();

  carehare_properties_set_delivery_mode (props, 2);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GBytes) body = seq_body (first + i);

      carehare_connection_publish_async (conn, "", queue, body, props, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, carehare_test_store_result, &results[i]);
    }
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GError) error = NULL;

      carehare_test_wait_for_result (&results[i], TIMEOUT_MS);
      g_assert_true (carehare_connection_publish_finish (conn, results[i], &error));
      g_assert_no_error (error);
      g_object_unref (results[i]);
    }
  g_free (results);
}

/* ---- a stalled broker ---------------------------------------------------- */

static void
test_stalled_broker (void)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *uri = fault_proxy_uri (proxy, "/?heartbeat=1");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("stalled", 7);
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  g_autofree char *name = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  ClosedRecord rec = { 0 }, consumer_rec = { 0 };
  Timed declared = { 0 }, published = { 0 }, next = { 0 };
  gint64 start, elapsed_ms;

  g_assert_cmpuint (carehare_connection_get_heartbeat (conn), ==, 1);
  queue = declare (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, &error);
  g_assert_no_error (error);
  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  g_signal_connect (consumer, "closed", G_CALLBACK (closed_cb), &consumer_rec);

  /* Both directions stop; the sockets stay open. */
  fault_proxy_stall (proxy, FAULT_DIRECTION_BOTH);
  start = g_get_monotonic_time ();
  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           store_timed_cb, &declared);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, store_timed_cb, &published);
  carehare_consumer_next_delivery_async (consumer, NULL, store_timed_cb, &next);

  g_assert_true (wait_for (&declared.result, 10000));
  g_assert_true (wait_for (&published.result, 10000));
  g_assert_true (wait_for (&next.result, 10000));
  g_assert_cmpuint (rec.n_closed, ==, 1);
  elapsed_ms = (rec.time - start) / 1000;
  g_test_message ("heartbeat monitor closed the stalled connection after %" G_GINT64_FORMAT
                  " ms (heartbeat 1 s)", elapsed_ms);
  /* Nothing read for two intervals; the last read was at most ~1 s before
   * the stall began. */
  g_assert_cmpint (elapsed_ms, >=, 900);
  g_assert_cmpint (elapsed_ms, <, 3000);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
  g_assert_true (carehare_error_is_transient (rec.error));

  /* Every pending operation failed at once with the connection. */
  g_assert_cmpint (declared.time - rec.time, <, 100 * 1000);
  g_assert_cmpint (published.time - rec.time, <, 100 * 1000);
  g_assert_cmpint (next.time - rec.time, <, 100 * 1000);
  name = carehare_connection_queue_declare_finish (conn, declared.result, NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_false (carehare_connection_publish_finish (conn, published.result, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
  delivery = carehare_consumer_next_delivery_finish (consumer, next.result, &error);
  g_assert_null (delivery);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_cmpuint (consumer_rec.n_closed, ==, 1);
  g_assert_error (consumer_rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (consumer_rec.error));

  g_assert_false (close_conn (conn, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR);
  g_assert_true (carehare_error_is_transient (error));

  g_clear_object (&declared.result);
  g_clear_object (&published.result);
  g_clear_object (&next.result);
  g_clear_error (&rec.error);
  g_clear_error (&consumer_rec.error);
  fault_proxy_free (proxy);
}

/* ---- a reset with 1,000 publishes in flight ------------------------------ */

#define N_IN_FLIGHT 1000

typedef struct {
  CarehareConnection *conn;
  FaultProxy *proxy;
  gboolean acked[N_IN_FLIGHT];
  guint n_acked;
  guint n_failed;
  guint n_done;
  gboolean reset_done;
} ResetCtx;

typedef struct {
  ResetCtx *ctx;
  guint seq;
} PublishData;

static void
reset_publish_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  PublishData *data = user_data;
  ResetCtx *ctx = data->ctx;
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (ctx->conn, result, &error))
    {
      g_assert_false (ctx->acked[data->seq]);
      ctx->acked[data->seq] = TRUE;
      ctx->n_acked++;
    }
  else
    {
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
      g_assert_true (carehare_error_is_transient (error));
      ctx->n_failed++;
    }
  ctx->n_done++;
  g_free (data);

  /* Reset the connection once the broker has confirmed a few: most of
   * the rest are still on their way. */
  if (ctx->n_acked == 50 && !ctx->reset_done)
    {
      ctx->reset_done = TRUE;
      fault_proxy_reset (ctx->proxy);
    }
}

static void
test_reset_publishes_in_flight (void)
{
  g_autoptr(CarehareConnection) direct = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = carehare_test_unique_name ("reset-publish");
  g_autofree char *name = NULL;
  g_autofree char *uri = NULL;
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree gboolean *stored = g_new0 (gboolean, N_IN_FLIGHT);
  ResetCtx *ctx = g_new0 (ResetCtx, 1);
  ClosedRecord rec = { 0 };
  guint count = 0, previous = G_MAXUINT, n_stored = 0;
  gboolean timed_out = FALSE;
  guint id;

  name = declare (direct, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL, &error);
  g_assert_no_error (error);

  ctx->proxy = fault_proxy_new (broker_port ());
  /* Slow the client->server direction so that the reset finds publishes
   * in flight: 2 KiB every 2 ms. */
  fault_proxy_throttle (ctx->proxy, 2048, 2);
  uri = fault_proxy_uri (ctx->proxy, "");
  ctx->conn = carehare_test_connect (uri);
  g_signal_connect (ctx->conn, "closed", G_CALLBACK (closed_cb), &rec);

  carehare_properties_set_delivery_mode (props, 2);
  for (guint i = 0; i < N_IN_FLIGHT; i++)
    {
      g_autoptr(GBytes) body = seq_body (i);
      PublishData *data = g_new0 (PublishData, 1);

      data->ctx = ctx;
      data->seq = i;
      carehare_connection_publish_async (ctx->conn, "", queue, body, props,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                         reset_publish_cb, data);
    }

  /* Every publish completes; none stays pending. */
  id = g_timeout_add (TIMEOUT_MS, set_flag_cb, &timed_out);
  while (ctx->n_done < N_IN_FLIGHT && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_test_message ("reset with publishes in flight: %u acked, %u failed", ctx->n_acked, ctx->n_failed);
  g_assert_cmpuint (ctx->n_done, ==, N_IN_FLIGHT);
  g_assert_true (ctx->reset_done);
  g_assert_cmpuint (ctx->n_failed, >, 0);
  g_assert_cmpuint (ctx->n_acked + ctx->n_failed, ==, N_IN_FLIGHT);
  while (rec.n_closed == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (rec.error));
  g_test_message ("closed: %s", rec.error->message);

  /* The broker may still be storing what reached it: wait until the count
   * holds still. */
  for (guint attempt = 0; attempt < 50; attempt++)
    {
      g_free (declare (direct, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, &count, &error));
      g_assert_no_error (error);
      if (count == previous)
        break;
      previous = count;
      carehare_test_run_for (200);
    }
  g_test_message ("%u messages in the queue", count);
  g_assert_cmpuint (count, >=, ctx->n_acked);

  /* acked ⊆ stored, by sequence number. */
  consumer = start_consumer (direct, queue, 1000, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < count; i++)
    {
      g_autoptr(GAsyncResult) result = NULL;
      g_autoptr(CarehareDelivery) delivery = NULL;
      guint seq;

      carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
      carehare_test_wait_for_result (&result, TIMEOUT_MS);
      delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
      g_assert_no_error (error);
      seq = delivery_seq (delivery);
      g_assert_cmpuint (seq, <, N_IN_FLIGHT);
      if (!stored[seq])
        n_stored++;
      stored[seq] = TRUE;
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  for (guint i = 0; i < N_IN_FLIGHT; i++)
    if (ctx->acked[i] && !stored[i])
      g_error ("message %u was acked by the broker but is not in the queue", i);
  g_test_message ("%u distinct messages stored, every acked one among them", n_stored);

  delete_queue (direct, queue);
  g_assert_true (close_conn (direct, &error));
  g_assert_false (close_conn (ctx->conn, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_object (&ctx->conn);
  fault_proxy_free (ctx->proxy);
  g_clear_error (&rec.error);
  g_free (ctx);
}

/* ---- a frame cut in the middle ------------------------------------------- */

static void
cut_mid_frame (FaultDirection direction)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *uri = fault_proxy_uri (proxy, "");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  g_autofree char *name = NULL;
  g_autofree guint8 *big = g_malloc0 (300 * 1024);
  g_autoptr(GBytes) body = g_bytes_new_take (g_steal_pointer (&big), 300 * 1024);
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GAsyncResult) published = NULL;
  g_autoptr(GAsyncResult) next = NULL;
  ClosedRecord rec = { 0 };

  queue = declare (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, &error);
  g_assert_no_error (error);
  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);

  fault_proxy_cut_mid_frame (proxy, direction);
  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &declared);
  /* A body of several frames (frame_max is 128 KiB). */
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &published);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &next);

  g_assert_true (wait_for (&declared, 10000));
  g_assert_true (wait_for (&published, 10000));
  g_assert_true (wait_for (&next, 10000));
  g_assert_true (fault_proxy_wait_cut (proxy, 1000));

  /* The proxy cuts inside the first frame it has not forwarded yet: when
   * the declare went out whole before it (slow runs, valgrind), it may
   * have been answered. Either way it completed. */
  name = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  if (name == NULL)
    {
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
      g_assert_true (carehare_error_is_transient (error));
      g_test_message ("declare: %s", error->message);
      g_clear_error (&error);
    }
  g_assert_false (carehare_connection_publish_finish (conn, published, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
  delivery = carehare_consumer_next_delivery_finish (consumer, next, &error);
  g_assert_null (delivery);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);

  g_assert_cmpuint (rec.n_closed, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (rec.error));
  g_test_message ("closed: %s", rec.error->message);
  g_assert_false (close_conn (conn, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&rec.error);
  fault_proxy_free (proxy);
}

static void
test_cut_server_to_client (void)
{
  cut_mid_frame (FAULT_DIRECTION_SERVER_TO_CLIENT);
}

static void
test_cut_client_to_server (void)
{
  cut_mid_frame (FAULT_DIRECTION_CLIENT_TO_SERVER);
}

/* ---- the broker closes the connection while we consume ------------------- */

static void
test_closed_by_broker_while_consuming (void)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *conn_name = carehare_test_unique_name ("fault-forced");
  g_autofree char *suffix = g_strdup_printf ("/?connection_name=%s", conn_name);
  g_autofree char *uri = fault_proxy_uri (proxy, suffix);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) next = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  ClosedRecord rec = { 0 }, consumer_rec = { 0 };

  queue = declare (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, &error);
  g_assert_no_error (error);
  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &rec);
  g_signal_connect (consumer, "closed", G_CALLBACK (closed_cb), &consumer_rec);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &next);

  carehare_test_broker_close_connection (conn_name, "closed by the fault test");
  g_assert_true (wait_for (&next, 10000));
  g_assert_cmpuint (rec.n_closed, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (rec.error), ==, 320);
  g_assert_nonnull (strstr (rec.error->message, "closed by the fault test"));

  delivery = carehare_consumer_next_delivery_finish (consumer, next, &error);
  g_assert_null (delivery);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_cmpuint (consumer_rec.n_closed, ==, 1);
  g_assert_false (close_conn (conn, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_clear_error (&rec.error);
  g_clear_error (&consumer_rec.error);
  fault_proxy_free (proxy);
}

/* ---- an application that reconnects after each fault --------------------- */

#define RECONNECT_BATCHES 5
#define RECONNECT_BATCH_SIZE 200
#define RECONNECT_N (RECONNECT_BATCHES * RECONNECT_BATCH_SIZE)

typedef enum {
  FAULT_NONE,
  FAULT_RESET,
  FAULT_STALL,
} Fault;

typedef struct {
  FaultProxy *proxy;
  char *uri;
  char *queue;
  CarehareConnection *conn;       /* owned, NULL between connections */
  CarehareConsumer *consumer;     /* owned */
  guint seen[RECONNECT_N];        /* times each message was consumed */
  guint n_distinct;
  guint n_duplicates;
  guint n_redelivered;
  guint n_connections;
  guint n_faults;
} App;

static void
app_drop_connection (App *app)
{
  g_autoptr(GError) error = NULL;

  if (app->conn == NULL)
    return;
  /* After a fault close reports it; either way the socket is gone. */
  if (!close_conn (app->conn, &error))
    g_test_message ("connection %u ended: %s", app->n_connections, error->message);
  g_clear_object (&app->consumer);
  g_clear_object (&app->conn);
}

static void
app_connect (App *app)
{
  g_autoptr(GError) error = NULL;

  app->conn = carehare_test_connect (app->uri);
  app->n_connections++;
  app->consumer = start_consumer (app->conn, app->queue, 50, &error);
  g_assert_no_error (error);
}

static void
app_inject (App   *app,
            Fault  fault)
{
  app->n_faults++;
  if (fault == FAULT_RESET)
    fault_proxy_reset (app->proxy);
  else if (fault == FAULT_STALL)
    fault_proxy_stall (app->proxy, FAULT_DIRECTION_BOTH);
}

/* One delivery, or FALSE when the connection ended (and was dropped) or
 * nothing arrived within @idle_ms. */
static gboolean
app_consume_one (App   *app,
                 guint  idle_ms)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  guint seq;

  if (app->conn == NULL)
    app_connect (app);

  carehare_consumer_next_delivery_async (app->consumer, cancellable,
                                         carehare_test_store_result, &result);
  if (!wait_for (&result, idle_ms))
    {
      g_cancellable_cancel (cancellable);
      carehare_test_wait_for_result (&result, 5000);
      delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);
      if (delivery == NULL)
        return FALSE;
    }
  else
    delivery = carehare_consumer_next_delivery_finish (app->consumer, result, &error);

  if (delivery == NULL)
    {
      g_assert_true (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED));
      app_drop_connection (app);
      return FALSE;
    }

  seq = delivery_seq (delivery);
  g_assert_cmpuint (seq, <, RECONNECT_N);
  if (carehare_delivery_get_redelivered (delivery))
    app->n_redelivered++;
  if (app->seen[seq] > 0)
    {
      /* Processed twice: only a message the broker marks redelivered. */
      if (!carehare_delivery_get_redelivered (delivery))
        g_error ("message %u was delivered again without the redelivered flag", seq);
      app->n_duplicates++;
    }
  else
    app->n_distinct++;
  app->seen[seq]++;
  carehare_consumer_ack (app->consumer, carehare_delivery_get_delivery_tag (delivery));
  return TRUE;
}

static guint
queue_depth (const char *queue)
{
  g_autofree char *out = carehare_test_broker_ctl ("list_queues", "--quiet", "--no-table-headers",
                                                   "name", "messages", NULL);
  g_auto(GStrv) lines = g_strsplit (out, "\n", -1);

  for (char **line = lines; *line != NULL; line++)
    {
      g_auto(GStrv) fields = g_strsplit_set (*line, " \t", -1);
      guint n = g_strv_length (fields);

      if (n >= 2 && g_strcmp0 (fields[0], queue) == 0)
        return (guint) g_ascii_strtoull (fields[n - 1], NULL, 10);
    }
  g_error ("queue %s is not listed", queue);
}

static void
test_reconnect_loop (void)
{
  g_autoptr(CarehareConnection) direct = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  App *app = g_new0 (App, 1);
  gint64 deadline = g_get_monotonic_time () + 120 * G_TIME_SPAN_SECOND;
  guint missing = 0;

  app->proxy = fault_proxy_new (broker_port ());
  app->uri = fault_proxy_uri (app->proxy, "/?heartbeat=1");
  app->queue = carehare_test_unique_name ("reconnect");
  name = declare (direct, app->queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL, &error);
  g_assert_no_error (error);

  for (guint b = 0; b < RECONNECT_BATCHES; b++)
    {
      /* Reset and stall in turn, halfway through each batch. */
      Fault fault = b % 2 == 0 ? FAULT_RESET : FAULT_STALL;
      guint fault_at = b * RECONNECT_BATCH_SIZE + RECONNECT_BATCH_SIZE / 2;

      publish_batch (direct, app->queue, b * RECONNECT_BATCH_SIZE, RECONNECT_BATCH_SIZE);
      while (app->n_distinct < (b + 1) * RECONNECT_BATCH_SIZE)
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          app_consume_one (app, 10000);
          if (fault != FAULT_NONE && app->n_distinct >= fault_at)
            {
              app_inject (app, fault);
              fault = FAULT_NONE;
            }
        }
    }

  /* Drain what the broker redelivers from the connections it lost (a
   * stalled one only after its own heartbeat timeout) until the queue holds
   * nothing, acked or not. */
  for (;;)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (!app_consume_one (app, 1000) && app->conn != NULL && queue_depth (app->queue) == 0)
        break;
    }

  for (guint i = 0; i < RECONNECT_N; i++)
    missing += app->seen[i] == 0;
  g_test_message ("reconnect loop: %u messages, %u faults, %u connections, %u redelivered, "
                  "%u consumed twice", RECONNECT_N, app->n_faults, app->n_connections,
                  app->n_redelivered, app->n_duplicates);
  g_assert_cmpuint (missing, ==, 0);
  g_assert_cmpuint (app->n_distinct, ==, RECONNECT_N);
  g_assert_cmpuint (app->n_faults, ==, RECONNECT_BATCHES);
  g_assert_cmpuint (app->n_connections, >, RECONNECT_BATCHES);

  app_drop_connection (app);
  delete_queue (direct, app->queue);
  g_assert_true (close_conn (direct, &error));
  fault_proxy_free (app->proxy);
  g_free (app->uri);
  g_free (app->queue);
  g_free (app);
}

/* ---- publish backpressure: pending-write-bytes ---------------------------- */

/* Bodies of this size are written as slices of the caller's GBytes, so the
 * test's memory stays one body however much is queued. */
#define BP_BODY_SIZE (256 * 1024)
/* 512 MiB queued without a notify fails the test rather than the machine. */
#define BP_MAX_PUBLISHES 2048

typedef struct {
  CarehareConnection *conn;
  GBytes *body;
  char *routing_key;       /* bound to nothing: the broker confirms and drops */
  guint n_notify;
  guint64 notified[8];     /* the property's value at each notify */
  guint n_published;
  guint n_confirmed;
  guint n_failed;
} Backpressure;

static void
bp_notify_cb (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  Backpressure *bp = user_data;
  guint64 value = 0;

  g_object_get (object, "pending-write-bytes", &value, NULL);
  g_assert_cmpuint (value, ==,
                    carehare_connection_get_pending_write_bytes (CAREHARE_CONNECTION (object)));
  g_assert_cmpuint (bp->n_notify, <, G_N_ELEMENTS (bp->notified));
  bp->notified[bp->n_notify++] = value;
}

static void
bp_published_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Backpressure *bp = user_data;
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    bp->n_confirmed++;
  else
    {
      g_test_message ("publish failed: %s", error->message);
      bp->n_failed++;
    }
}

static void
bp_publish (Backpressure *bp)
{
  carehare_connection_publish_async (bp->conn, "amq.direct", bp->routing_key, bp->body, NULL,
                                     CAREHARE_PUBLISH_FLAGS_NONE, NULL, bp_published_cb, bp);
  bp->n_published++;
}

/* Iterates until *@counter reaches @target or @timeout_ms passed. */
static gboolean
wait_count (guint *counter,
            guint  target,
            guint  timeout_ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (timeout_ms, set_flag_cb, &timed_out);

  while (*counter < target && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  return *counter >= target;
}

/* Connects through @proxy, opens the publisher's channel with a first
 * confirmed publish, stalls client->server and publishes one body per
 * main-loop iteration (so the socket takes all it can) until the notify
 * that the count rose above the high-water mark. */
static void
bp_fill (Backpressure *bp,
         FaultProxy   *proxy)
{
  g_autofree char *uri = fault_proxy_uri (proxy, "/");

  bp->conn = carehare_test_connect (uri);
  bp->body = g_bytes_new_take (g_malloc0 (BP_BODY_SIZE), BP_BODY_SIZE);
  bp->routing_key = carehare_test_unique_name ("nowhere");
  g_assert_cmpuint (carehare_connection_get_pending_write_bytes (bp->conn), ==, 0);
  g_signal_connect (bp->conn, "notify::pending-write-bytes", G_CALLBACK (bp_notify_cb), bp);

  bp_publish (bp);
  g_assert_true (wait_count (&bp->n_confirmed, 1, TIMEOUT_MS));
  g_assert_cmpuint (carehare_connection_get_pending_write_bytes (bp->conn), ==, 0);
  /* Written at once and drained: far below the mark, no notify. */
  g_assert_cmpuint (bp->n_notify, ==, 0);

  fault_proxy_stall (proxy, FAULT_DIRECTION_CLIENT_TO_SERVER);
  while (bp->n_notify == 0 && bp->n_published < BP_MAX_PUBLISHES)
    {
      bp_publish (bp);
      while (g_main_context_iteration (NULL, FALSE))
        ;
    }
  g_test_message ("above the high-water mark after %u publishes of %u bytes: %" G_GUINT64_FORMAT
                  " bytes pending", bp->n_published, BP_BODY_SIZE, bp->notified[0]);
  g_assert_cmpuint (bp->n_notify, ==, 1);
  g_assert_cmpuint (bp->notified[0], >, CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK);
  /* Nothing got past the proxy. */
  g_assert_cmpuint (bp->n_confirmed, ==, 1);
}

static void
bp_clear (Backpressure *bp)
{
  g_clear_object (&bp->conn);
  g_clear_pointer (&bp->body, g_bytes_unref);
  g_clear_pointer (&bp->routing_key, g_free);
}

static gpointer
read_pending_thread (gpointer data)
{
  guint64 *value = g_new (guint64, 1);

  *value = carehare_connection_get_pending_write_bytes (data);
  return value;
}

/* A broker that stops reading: the count rises above the high-water mark
 * (one notify, however many more publishes), and once it reads again the
 * count falls to the low-water mark (one more notify) and every publish is
 * confirmed. */
static void
test_pending_write_bytes_stalled (void)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  Backpressure bp = { 0 };
  g_autoptr(GError) error = NULL;
  g_autofree guint64 *from_thread = NULL;
  guint64 pending;

  bp_fill (&bp, proxy);

  /* Above the mark, more writes notify nothing: one notify per crossing. */
  for (guint i = 0; i < 16; i++)
    {
      bp_publish (&bp);
      while (g_main_context_iteration (NULL, FALSE))
        ;
    }
  g_assert_cmpuint (bp.n_notify, ==, 1);
  pending = carehare_connection_get_pending_write_bytes (bp.conn);
  g_assert_cmpuint (pending, >=, bp.notified[0] + 16 * BP_BODY_SIZE);

  /* The getter is safe from any thread. */
  from_thread = g_thread_join (g_thread_new ("pending", read_pending_thread, bp.conn));
  g_assert_cmpuint (*from_thread, ==, pending);

  fault_proxy_release (proxy);
  g_assert_true (wait_count (&bp.n_notify, 2, TIMEOUT_MS));
  g_assert_cmpuint (bp.notified[1], <=, CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK);
  g_assert_true (wait_count (&bp.n_confirmed, bp.n_published, TIMEOUT_MS));
  g_assert_cmpuint (bp.n_failed, ==, 0);
  g_assert_cmpuint (bp.n_notify, ==, 2);
  g_assert_cmpuint (carehare_connection_get_pending_write_bytes (bp.conn), ==, 0);

  g_assert_true (close_conn (bp.conn, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (bp.n_notify, ==, 2);
  bp_clear (&bp);
  fault_proxy_free (proxy);
}

/* A connection lost while above the high-water mark drops what it had not
 * written: the count falls to 0 with a notify, so a program waiting to
 * resume is not left waiting. */
static void
test_pending_write_bytes_dropped (void)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  Backpressure bp = { 0 };
  ClosedRecord rec = { 0 };

  bp_fill (&bp, proxy);
  g_signal_connect (bp.conn, "closed", G_CALLBACK (closed_cb), &rec);

  fault_proxy_reset (proxy);
  g_assert_true (wait_count (&bp.n_notify, 2, TIMEOUT_MS));
  g_assert_cmpuint (bp.notified[1], ==, 0);
  g_assert_cmpuint (carehare_connection_get_pending_write_bytes (bp.conn), ==, 0);
  g_assert_true (wait_count (&rec.n_closed, 1, TIMEOUT_MS));
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (wait_count (&bp.n_failed, bp.n_published - 1, TIMEOUT_MS));
  g_assert_cmpuint (bp.n_confirmed, ==, 1);
  g_assert_cmpuint (bp.n_notify, ==, 2);

  g_clear_error (&rec.error);
  bp_clear (&bp);
  fault_proxy_free (proxy);
}

/* A notify handler that publishes more when the count falls to the
 * low-water mark (enough to rise above the high one again, inside the
 * notify): every publish is confirmed, and the count ends at 0. */
typedef struct {
  Backpressure *bp;
  guint refills;
  GAsyncResult *closed;
} BpHandler;

static void
bp_refill_cb (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  BpHandler *h = user_data;

  if (carehare_connection_get_pending_write_bytes (h->bp->conn) >
      CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK || h->refills >= 2)
    return;
  h->refills++;
  for (guint i = 0; i < 8; i++)
    bp_publish (h->bp);
}

static void
test_pending_write_bytes_handler_publishes (void)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  Backpressure bp = { 0 };
  BpHandler h = { &bp };
  g_autoptr(GError) error = NULL;

  bp_fill (&bp, proxy);
  g_signal_connect (bp.conn, "notify::pending-write-bytes", G_CALLBACK (bp_refill_cb), &h);
  fault_proxy_release (proxy);
  g_assert_true (wait_count (&h.refills, 2, TIMEOUT_MS));
  g_assert_true (wait_count (&bp.n_confirmed, bp.n_published, TIMEOUT_MS));
  g_assert_cmpuint (bp.n_failed, ==, 0);
  g_assert_cmpuint (carehare_connection_get_pending_write_bytes (bp.conn), ==, 0);
  g_assert_true (close_conn (bp.conn, &error));
  g_assert_no_error (error);
  bp_clear (&bp);
  fault_proxy_free (proxy);
}

/* A notify handler that closes the connection at the high-water mark and
 * drops the program's reference, inside the publish that crossed it: the
 * close completes once the broker reads again, and every publish gets its
 * callback (confirmed or failed), none twice. */
static void
bp_close_cb (GObject    *object,
             GParamSpec *pspec,
             gpointer    user_data)
{
  BpHandler *h = user_data;

  if (h->closed != NULL || h->refills > 0 ||
      carehare_connection_get_pending_write_bytes (CAREHARE_CONNECTION (object)) <=
      CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK)
    return;
  h->refills++;
  carehare_connection_close_async (CAREHARE_CONNECTION (object), NULL, carehare_test_store_result,
                                   &h->closed);
  g_clear_object (&h->bp->conn);
}

static void
test_pending_write_bytes_handler_closes (void)
{
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *uri = fault_proxy_uri (proxy, "/");
  Backpressure bp = { 0 };
  BpHandler h = { &bp };
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GError) error = NULL;

  bp.conn = carehare_test_connect (uri);
  bp.body = g_bytes_new_take (g_malloc0 (BP_BODY_SIZE), BP_BODY_SIZE);
  bp.routing_key = carehare_test_unique_name ("nowhere");
  g_signal_connect (bp.conn, "notify::pending-write-bytes", G_CALLBACK (bp_close_cb), &h);
  bp_publish (&bp);
  g_assert_true (wait_count (&bp.n_confirmed, 1, TIMEOUT_MS));
  fault_proxy_stall (proxy, FAULT_DIRECTION_CLIENT_TO_SERVER);
  while (bp.conn != NULL && bp.n_published < BP_MAX_PUBLISHES)
    {
      bp_publish (&bp);
      while (bp.conn != NULL && g_main_context_iteration (NULL, FALSE))
        ;
    }
  g_assert_null (bp.conn);
  fault_proxy_release (proxy);
  carehare_test_wait_for_result (&h.closed, TIMEOUT_MS);
  conn = CAREHARE_CONNECTION (g_async_result_get_source_object (h.closed));
  g_assert_true (carehare_connection_close_finish (conn, h.closed, &error));
  g_assert_no_error (error);
  g_clear_object (&h.closed);
  g_assert_true (wait_count (&bp.n_confirmed, bp.n_published - bp.n_failed, TIMEOUT_MS));
  g_assert_cmpuint (bp.n_confirmed + bp.n_failed, ==, bp.n_published);
  bp_clear (&bp);
  fault_proxy_free (proxy);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/faults/stalled-broker", test_stalled_broker);
  g_test_add_func ("/faults/reset-with-publishes-in-flight", test_reset_publishes_in_flight);
  g_test_add_func ("/faults/cut-mid-frame/server-to-client", test_cut_server_to_client);
  g_test_add_func ("/faults/cut-mid-frame/client-to-server", test_cut_client_to_server);
  g_test_add_func ("/faults/closed-by-broker-while-consuming", test_closed_by_broker_while_consuming);
  g_test_add_func ("/faults/reconnect-loop", test_reconnect_loop);
  g_test_add_func ("/faults/pending-write-bytes/stalled", test_pending_write_bytes_stalled);
  g_test_add_func ("/faults/pending-write-bytes/dropped", test_pending_write_bytes_dropped);
  g_test_add_func ("/faults/pending-write-bytes/handler-publishes",
                   test_pending_write_bytes_handler_publishes);
  g_test_add_func ("/faults/pending-write-bytes/handler-closes",
                   test_pending_write_bytes_handler_closes);

  return g_test_run ();
}
