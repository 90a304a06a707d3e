/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareSession against the private broker: topology replay, consumers
 * and publishes across reconnections forced with rabbitmqctl and the
 * fault proxy, backoff against a closed port, permanent errors, close.
 */
#include "carehare-test-util.h"

#include "carehare-session-private.h"
#include "fault-proxy.h"

#include <gio/gio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT_MS 30000

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  guint n_connected;
  guint n_disconnected;
  GString *events;            /* "C" connected, "D" disconnected */
  GArray *state_times;        /* gint64 monotonic time of each WAITING -> CONNECTING */
  gint64 waiting_since;
  GArray *delays_ms;          /* each WAITING period, in ms */
} Recorder;

static void
connected_cb (CarehareSession    *session,
              CarehareConnection *connection,
              gpointer            user_data)
{
  Recorder *rec = user_data;

  g_assert_true (CAREHARE_IS_CONNECTION (connection));
  g_assert_true (carehare_session_get_connection (session) == connection);
  rec->n_connected++;
  g_string_append_c (rec->events, 'C');
}

static void
disconnected_cb (CarehareSession *session,
                 const GError    *error,
                 gpointer         user_data)
{
  Recorder *rec = user_data;

  rec->n_disconnected++;
  g_string_append_c (rec->events, 'D');
}

static void
state_cb (CarehareSession *session,
          GParamSpec      *pspec,
          gpointer         user_data)
{
  Recorder *rec = user_data;
  CarehareSessionState state = carehare_session_get_state (session);

  if (state == CAREHARE_SESSION_STATE_WAITING)
    rec->waiting_since = g_get_monotonic_time ();
  else if (state == CAREHARE_SESSION_STATE_CONNECTING && rec->waiting_since != 0)
    {
      guint ms = (guint) ((g_get_monotonic_time () - rec->waiting_since) / 1000);

      g_array_append_val (rec->delays_ms, ms);
      rec->waiting_since = 0;
    }
}

static Recorder *
recorder_new (CarehareSession *session)
{
  Recorder *rec = g_new0 (Recorder, 1);

  rec->events = g_string_new (NULL);
  rec->delays_ms = g_array_new (FALSE, FALSE, sizeof (guint));
  g_signal_connect (session, "connected", G_CALLBACK (connected_cb), rec);
  g_signal_connect (session, "disconnected", G_CALLBACK (disconnected_cb), rec);
  g_signal_connect (session, "notify::state", G_CALLBACK (state_cb), rec);
  return rec;
}

static void
recorder_free (Recorder *rec)
{
  g_string_free (rec->events, TRUE);
  g_array_unref (rec->delays_ms);
  g_free (rec);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Recorder, recorder_free)

static gboolean
set_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates until @session is in @state, failing the test after @timeout_ms. */
static void
wait_for_state (CarehareSession      *session,
                CarehareSessionState  state,
                guint                 timeout_ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (timeout_ms, set_flag_cb, &timed_out);

  while (carehare_session_get_state (session) != state && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  if (carehare_session_get_state (session) != state)
    g_error ("session not in state %d after %u ms (state %d, last error: %s)", state, timeout_ms,
             carehare_session_get_state (session),
             carehare_session_get_last_error (session) != NULL
               ? carehare_session_get_last_error (session)->message : "none");
}

/* Iterates until @func (@data) holds, failing the test after @timeout_ms. */
static void
wait_until (gboolean    (*func) (gpointer data),
            gpointer      data,
            const char   *what,
            guint         timeout_ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (timeout_ms, set_flag_cb, &timed_out);

  while (!func (data) && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  if (!func (data))
    g_error ("still waiting for %s after %u ms", what, timeout_ms);
}

static void
wait_for_connections (Recorder *rec,
                      guint     n_connected,
                      guint     timeout_ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (timeout_ms, set_flag_cb, &timed_out);

  while (rec->n_connected < n_connected && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_assert_cmpuint (rec->n_connected, >=, n_connected);
}

static CarehareSession *
session_for (const char *uri)
{
  const char *uris[] = { uri, NULL };

  return carehare_session_new (uris);
}

/* A session through @proxy that reconnects after 10-20 ms. */
static CarehareSession *
session_through (FaultProxy *proxy)
{
  g_autofree char *uri = fault_proxy_uri (proxy, "");
  CarehareSession *session = session_for (uri);

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 20);
  return session;
}

static gboolean
session_publish_to (CarehareSession *session,
                    const char      *exchange,
                    const char      *routing_key,
                    const char      *text,
                    GError         **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

  carehare_session_publish_async (session, exchange, routing_key, body, NULL,
                                  CAREHARE_PUBLISH_FLAGS_NONE, NULL, carehare_test_store_result,
                                  &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_session_publish_finish (session, result, error);
}

static gboolean
session_publish (CarehareSession *session,
                 const char      *queue,
                 const char      *text,
                 GError         **error)
{
  return session_publish_to (session, "", queue, text, error);
}

static CarehareDelivery *
next_delivery (CarehareConsumer *consumer,
               GError          **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_consumer_next_delivery_finish (consumer, result, error);
}

static char *
delivery_text (CarehareDelivery *delivery)
{
  GBytes *body = carehare_delivery_get_body (delivery);

  return g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
}

static void
close_session (CarehareSession *session)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_session_close_async (session, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_session_close_finish (session, result, &error));
  g_assert_no_error (error);
}

static void
delete_queue (const char *queue)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_delete_finish (conn, result, NULL, NULL));
  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
}

/* The messages in @queue now (a passive declare on a connection of its own). */
static guint
queue_message_count (const char *queue)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *declared = NULL;
  guint n_messages = G_MAXUINT;

  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  declared = carehare_connection_queue_declare_finish (conn, result, &n_messages, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return n_messages;
}

static guint16
broker_port (void)
{
  const char *port = g_getenv ("CAREHARE_TEST_BROKER_PORT");

  carehare_test_amqp_uri ();
  g_assert_nonnull (port);
  return (guint16) g_ascii_strtoull (port, NULL, 10);
}

/* ---- tests --------------------------------------------------------------- */

/* Topology, a consumer and a publish on the first connection. */
static void
test_basic (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-basic");
  g_autofree char *exchange = carehare_test_unique_name ("session-basic-x");
  g_autoptr(CarehareSession) session = session_for (carehare_test_amqp_uri ());
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("via exchange", 12);
  g_autofree char *text = NULL;

  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_STOPPED);
  g_assert_null (carehare_session_get_connection (session));
  g_assert_cmpuint (carehare_session_get_reconnect_delay_min (session), ==, 100);
  g_assert_cmpuint (carehare_session_get_reconnect_delay_max (session), ==, 30000);

  carehare_session_declare_exchange (session, exchange, "direct",
                                     CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_bind_queue (session, queue, exchange, "key", NULL);
  consumer = carehare_session_acking_consumer (session, queue, 10);
  g_assert_true (CAREHARE_IS_CONSUMER (consumer));
  g_assert_cmpstr (carehare_consumer_get_queue (consumer), ==, queue);

  /* A publish before start waits for the first connection. */
  carehare_session_publish_async (session, exchange, "key", body, NULL,
                                  CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                  carehare_test_store_result, &pending);
  carehare_test_run_for (50);
  g_assert_null (pending);

  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_cmpuint (rec->n_connected, ==, 1);
  g_assert_nonnull (carehare_session_get_connection (session));
  g_assert_nonnull (carehare_consumer_get_consumer_tag (consumer));

  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  g_assert_true (carehare_session_publish_finish (session, pending, &error));
  g_assert_no_error (error);

  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  text = delivery_text (delivery);
  g_assert_cmpstr (text, ==, "via exchange");
  g_assert_cmpuint (carehare_delivery_get_delivery_tag (delivery), ==, 1);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  close_session (session);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_STOPPED);
  g_assert_cmpstr (rec->events->str, ==, "CD");
  g_clear_object (&delivery);
  delivery = next_delivery (consumer, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_consumer_get_is_closed (consumer));
  g_clear_error (&error);
  g_assert_false (session_publish (session, queue, "after close", &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);

  delete_queue (queue);
}

/* The broker closes the connection (rabbitmqctl close_connection) with a
 * next_delivery waiting: it completes with the first delivery of the new
 * connection; tags go on growing; the settle of a tag of the dead
 * connection is dropped and the message comes again, redelivered. */
static void
test_forced_reconnect (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-forced");
  g_autofree char *name = carehare_test_unique_name ("session-forced-conn");
  g_autofree char *suffix = g_strdup_printf ("?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) first = NULL;
  g_autoptr(CarehareDelivery) again = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  guint64 old_tag;

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 200);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
  consumer = carehare_session_acking_consumer (session, queue, 10);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);

  g_assert_true (session_publish (session, queue, "one", &error));
  g_assert_no_error (error);
  first = next_delivery (consumer, &error);
  g_assert_no_error (error);
  old_tag = carehare_delivery_get_delivery_tag (first);
  g_assert_cmpuint (old_tag, ==, 1);

  /* Not acknowledged: the broker delivers it again after the reconnection. */
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &pending);
  carehare_test_broker_close_connection (name, "forced by test-session");
  wait_for_connections (rec, 2, TIMEOUT_MS);
  g_assert_cmpstr (rec->events->str, ==, "CDC");
  g_assert_error ((GError *) carehare_session_get_last_error (session), CAREHARE_ERROR,
                  CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (carehare_session_get_last_error (session)), ==,
                    320);

  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  again = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_no_error (error);
  text = delivery_text (again);
  g_assert_cmpstr (text, ==, "one");
  g_assert_true (carehare_delivery_get_redelivered (again));
  g_assert_cmpuint (carehare_delivery_get_delivery_tag (again), >, old_tag);

  /* The old tag is 1; on the new channel 1 names "one" again. Acking it
   * must be dropped, not sent: the message stays unacknowledged. */
  carehare_consumer_ack (consumer, old_tag);
  carehare_consumer_nack (consumer, carehare_delivery_get_delivery_tag (again), TRUE);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  g_clear_pointer (&text, g_free);
  text = delivery_text (delivery);
  g_assert_cmpstr (text, ==, "one");
  g_assert_cmpuint (carehare_delivery_get_delivery_tag (delivery), >,
                    carehare_delivery_get_delivery_tag (again));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  /* And the session goes on publishing and consuming. */
  g_assert_true (session_publish (session, queue, "two", &error));
  g_assert_no_error (error);
  g_clear_object (&delivery);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  g_clear_pointer (&text, g_free);
  text = delivery_text (delivery);
  g_assert_cmpstr (text, ==, "two");
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  g_assert_false (carehare_consumer_get_is_closed (consumer));

  close_session (session);
  g_assert_cmpstr (rec->events->str, ==, "CDCD");
  delete_queue (queue);
}

/* Publishes in flight when the fault proxy resets the connection fail
 * with CONNECTION_CLOSED; those made while reconnecting wait and succeed;
 * the consumer resumes. */
static void
test_reset_in_flight (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-reset");
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *uri = fault_proxy_uri (proxy, "");
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) later = NULL;
  g_autoptr(GError) error = NULL;
  GAsyncResult *slots[200] = { NULL };
  guint n_ok = 0, n_closed = 0, n_received = 0;
  g_autoptr(GBytes) body = g_bytes_new_static ("m", 1);
  GHashTable *seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 100);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
  consumer = carehare_session_acking_consumer (session, queue, 50);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);

  /* Slowed down, so that the reset finds some confirmed and some not. */
  fault_proxy_throttle (proxy, 256, 2);
  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    {
      g_autofree char *text = g_strdup_printf ("%u", i);
      g_autoptr(GBytes) b = g_bytes_new (text, strlen (text));

      carehare_session_publish_async (session, "", queue, b, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                      NULL, carehare_test_store_result, &slots[i]);
    }
  /* Some are confirmed, the rest are on the wire or waiting. */
  carehare_test_wait_for_result (&slots[20], TIMEOUT_MS);
  fault_proxy_reset (proxy);
  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    {
      carehare_test_wait_for_result (&slots[i], TIMEOUT_MS);
      if (carehare_session_publish_finish (session, slots[i], &error))
        n_ok++;
      else
        {
          g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
          g_clear_error (&error);
          n_closed++;
        }
      g_clear_object (&slots[i]);
    }
  g_test_message ("%u confirmed before the reset, %u lost with the connection", n_ok, n_closed);

  fault_proxy_throttle (proxy, 0, 0);

  /* A publish made while the session reconnects waits for the next
   * connection. */
  if (carehare_session_get_state (session) == CAREHARE_SESSION_STATE_CONNECTED)
    wait_for_state (session, CAREHARE_SESSION_STATE_WAITING, TIMEOUT_MS);
  carehare_session_publish_async (session, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                  NULL, carehare_test_store_result, &later);
  carehare_test_wait_for_result (&later, TIMEOUT_MS);
  g_assert_true (carehare_session_publish_finish (session, later, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (rec->n_connected, >=, 2);

  /* Every confirmed message arrives (some perhaps twice). */
  while (g_hash_table_size (seen) < n_ok + 1)
    {
      g_autoptr(CarehareDelivery) delivery = next_delivery (consumer, &error);

      g_assert_no_error (error);
      g_hash_table_add (seen, delivery_text (delivery));
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
      n_received++;
    }
  g_assert_cmpuint (n_received, <=, G_N_ELEMENTS (slots) + 1 + n_ok);

  close_session (session);
  g_assert_cmpuint (rec->n_connected, ==, rec->n_disconnected);
  g_hash_table_unref (seen);
  fault_proxy_free (proxy);
  delete_queue (queue);
}

static void
count_cb (gpointer user_data)
{
  (*(guint *) user_data)++;
}

static gboolean
attempt_restoring (gpointer data)
{
  CarehareSession *session = data;

  return session->attempt != NULL && session->attempt->connection != NULL;
}

/* A connection that dies while its topology is being restored is a
 * failed attempt: `last-error` and `state` change, nothing else (no
 * `disconnected`, no `connected`, no `connection` notified); the next
 * attempt connects, and the signals pair up. */
static void
test_topology_restore_dies (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-restore-dies");
  g_autofree char *exchange = carehare_test_unique_name ("session-restore-dies-x");
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autoptr(CarehareSession) session = session_through (proxy);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareConnection) doomed = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  guint n_connection_notified = 0, n_error_notified = 0;

  carehare_session_declare_exchange (session, exchange, "direct",
                                     CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_bind_queue (session, queue, exchange, "key", NULL);
  consumer = carehare_session_acking_consumer (session, queue, 5);
  g_signal_connect_swapped (session, "notify::connection", G_CALLBACK (count_cb),
                            &n_connection_notified);
  g_signal_connect_swapped (session, "notify::last-error", G_CALLBACK (count_cb),
                            &n_error_notified);
  carehare_session_start (session);

  /* The first connection is up and its topology is being declared: each
   * declaration is a round trip that needs this thread to run the main
   * loop, so it is cut before the topology is complete. */
  wait_until (attempt_restoring, session, "a connection restoring its topology", TIMEOUT_MS);
  doomed = g_object_ref (session->attempt->connection);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTING);
  fault_proxy_reset (proxy);

  wait_for_connections (rec, 1, TIMEOUT_MS);
  g_assert_cmpstr (rec->events->str, ==, "C");
  g_assert_true (carehare_session_get_connection (session) != doomed);
  g_assert_true (carehare_connection_get_is_closed (doomed));
  g_assert_cmpuint (n_error_notified, >=, 1);
  g_assert_nonnull (carehare_session_get_last_error (session));
  g_assert_cmpuint (n_connection_notified, ==, 1);
  g_assert_cmpuint (fault_proxy_get_n_accepted (proxy), >=, 2);

  /* The topology and the consumer are in place on the new connection. */
  g_assert_true (session_publish_to (session, exchange, "key", "restored", &error));
  g_assert_no_error (error);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  close_session (session);
  g_assert_cmpstr (rec->events->str, ==, "CD");
  fault_proxy_free (proxy);
  delete_queue (queue);
}

/* ---- the push path (::delivery) across a reconnection ------------------- */

typedef struct {
  GPtrArray *texts;     /* owned strings */
  GArray *tags;         /* guint64 */
  GArray *redelivered;  /* gboolean */
} PushLog;

static void
push_delivery_cb (CarehareConsumer *consumer,
                  CarehareDelivery *delivery,
                  gpointer          user_data)
{
  PushLog *log = user_data;
  guint64 tag = carehare_delivery_get_delivery_tag (delivery);
  gboolean redelivered = carehare_delivery_get_redelivered (delivery);

  g_ptr_array_add (log->texts, delivery_text (delivery));
  g_array_append_val (log->tags, tag);
  g_array_append_val (log->redelivered, redelivered);
  carehare_consumer_ack (consumer, tag);
}

typedef struct {
  PushLog *log;
  const char *text;
} PushWait;

static gboolean
push_got (gpointer data)
{
  PushWait *wait = data;

  for (guint i = 0; i < wait->log->texts->len; i++)
    if (g_strcmp0 (g_ptr_array_index (wait->log->texts, i), wait->text) == 0)
      return TRUE;
  return FALSE;
}

/* A session consumer consumed through ::delivery keeps delivering after a
 * reconnection, with tags that go on growing. */
static void
test_push_across_reconnection (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-push");
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autoptr(CarehareSession) session = session_through (proxy);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  PushLog log = { g_ptr_array_new_with_free_func (g_free),
                  g_array_new (FALSE, FALSE, sizeof (guint64)),
                  g_array_new (FALSE, FALSE, sizeof (gboolean)) };
  PushWait one = { &log, "one" }, two = { &log, "two" };
  guint before;

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  consumer = carehare_session_acking_consumer (session, queue, 10);
  g_signal_connect (consumer, "delivery", G_CALLBACK (push_delivery_cb), &log);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);

  g_assert_true (session_publish (session, queue, "one", &error));
  g_assert_no_error (error);
  wait_until (push_got, &one, "\"one\" through ::delivery", TIMEOUT_MS);
  before = log.texts->len;

  fault_proxy_reset (proxy);
  wait_for_connections (rec, 2, TIMEOUT_MS);
  g_assert_true (session_publish (session, queue, "two", &error));
  g_assert_no_error (error);
  wait_until (push_got, &two, "\"two\" through ::delivery after the reconnection", TIMEOUT_MS);

  /* Only "one" again (its ack may have been lost with the connection,
   * then it comes back redelivered) before "two"; tags always grow. */
  for (guint i = before; i + 1 < log.texts->len; i++)
    {
      g_assert_cmpstr (g_ptr_array_index (log.texts, i), ==, "one");
      g_assert_true (g_array_index (log.redelivered, gboolean, i));
    }
  g_assert_cmpstr (g_ptr_array_index (log.texts, log.texts->len - 1), ==, "two");
  for (guint i = 1; i < log.tags->len; i++)
    g_assert_cmpuint (g_array_index (log.tags, guint64, i), >,
                      g_array_index (log.tags, guint64, i - 1));
  g_assert_false (carehare_consumer_get_is_closed (consumer));

  close_session (session);
  g_assert_cmpstr (rec->events->str, ==, "CDCD");
  g_ptr_array_unref (log.texts);
  g_array_unref (log.tags);
  g_array_unref (log.redelivered);
  fault_proxy_free (proxy);
  delete_queue (queue);
}

/* Messages handed to a connection that is lost before their confirm fail
 * with CONNECTION_CLOSED and are never sent again by the session: the
 * proxy forwards nothing (stalled both ways), so none reached the broker,
 * and after the reconnection the queue holds only what was published
 * since. */
static void
test_unconfirmed_not_resent (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-no-resend");
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autoptr(CarehareSession) session = session_through (proxy);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("lost", 4);
  GAsyncResult *slots[5] = { NULL };

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);

  fault_proxy_stall (proxy, FAULT_DIRECTION_BOTH);
  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    carehare_session_publish_async (session, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                    NULL, carehare_test_store_result, &slots[i]);
  carehare_test_run_for (100);
  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    g_assert_null (slots[i]);
  fault_proxy_reset (proxy);
  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    {
      carehare_test_wait_for_result (&slots[i], TIMEOUT_MS);
      g_assert_false (carehare_session_publish_finish (session, slots[i], &error));
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
      g_clear_error (&error);
      g_clear_object (&slots[i]);
    }
  wait_for_connections (rec, 2, TIMEOUT_MS);
  g_assert_true (session_publish (session, queue, "after", &error));
  g_assert_no_error (error);

  g_assert_cmpuint (queue_message_count (queue), ==, 1);

  close_session (session);
  fault_proxy_free (proxy);
  delete_queue (queue);
}

/* A publish waiting for a connection, cancelled: it fails with
 * G_IO_ERROR_CANCELLED and is never sent once the session connects. */
static void
test_publish_cancel_waiting (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-cancel");
  g_autoptr(CarehareSession) session = session_for (carehare_test_amqp_uri ());
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) dropped = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("dropped", 7);

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_publish_async (session, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                  cancellable, carehare_test_store_result, &dropped);
  carehare_test_run_for (20);
  g_assert_null (dropped);
  g_cancellable_cancel (cancellable);
  carehare_test_wait_for_result (&dropped, TIMEOUT_MS);
  g_assert_false (carehare_session_publish_finish (session, dropped, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_true (session_publish (session, queue, "kept", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (queue_message_count (queue), ==, 1);
  close_session (session);
  delete_queue (queue);
}

/* ---- a broker that is away, then back ------------------------------------ */

/* Forwards connections on @port to the broker once started: the broker
 * "comes back". */
typedef struct {
  GSocketService *service;
  guint16 port;
  guint n_accepted;
} Forwarder;

static void
spliced_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_io_stream_splice_finish (result, NULL);
}

static gboolean
incoming_cb (GSocketService    *service,
             GSocketConnection *connection,
             GObject           *source_object,
             gpointer           user_data)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) upstream = NULL;
  g_autoptr(GError) error = NULL;
  Forwarder *fwd = user_data;

  fwd->n_accepted++;
  /* No proxy lookup (libproxy throws C++ exceptions ASan cannot follow). */
  g_socket_client_set_enable_proxy (client, FALSE);
  upstream = g_socket_client_connect_to_host (client, "127.0.0.1", broker_port (), NULL, &error);
  g_assert_no_error (error);
  g_io_stream_splice_async (G_IO_STREAM (connection), G_IO_STREAM (upstream),
                            G_IO_STREAM_SPLICE_CLOSE_STREAM1 | G_IO_STREAM_SPLICE_CLOSE_STREAM2,
                            G_PRIORITY_DEFAULT, NULL, spliced_cb, NULL);
  return TRUE;
}

/* A loopback port nothing listens on (for now). */
static guint16
free_port (void)
{
  g_autoptr(GSocketListener) listener = g_socket_listener_new ();
  g_autoptr(GError) error = NULL;
  guint16 port = g_socket_listener_add_any_inet_port (listener, NULL, &error);

  g_assert_no_error (error);
  g_socket_listener_close (listener);
  return port;
}

static void
forwarder_start (Forwarder *fwd)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, fwd->port);
  g_autoptr(GError) error = NULL;

  fwd->service = g_socket_service_new ();
  g_socket_listener_add_address (G_SOCKET_LISTENER (fwd->service), address,
                                 G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, NULL,
                                 &error);
  g_assert_no_error (error);
  g_signal_connect (fwd->service, "incoming", G_CALLBACK (incoming_cb), fwd);
  g_socket_service_start (fwd->service);
}

/* The broker is away (nothing listens): WAITING, backing off within the
 * bounds; it connects once the broker is back; close while WAITING
 * finishes at once. */
static void
test_broker_away (void)
{
  Forwarder fwd = { NULL, free_port (), 0 };
  g_autofree char *uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u", fwd.port);
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareSession) second = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GAsyncResult) waiting = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);
  guint cap = 20;

  carehare_session_set_reconnect_delay_min (session, 20);
  carehare_session_set_reconnect_delay_max (session, 160);
  carehare_session_start (session);
  while (rec->delays_ms->len < 6)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (rec->n_connected, ==, 0);
  g_assert_cmpuint (rec->n_disconnected, ==, 0);
  g_assert_error ((GError *) carehare_session_get_last_error (session), G_IO_ERROR,
                  G_IO_ERROR_CONNECTION_REFUSED);
  /* Each wait is at least the minimum; the cap doubles up to the maximum.
   * (Only lower bounds: an upper bound would be a timed test.) */
  for (guint i = 0; i < rec->delays_ms->len; i++)
    {
      guint delay = g_array_index (rec->delays_ms, guint, i);

      g_test_message ("wait %u: %u ms (cap %u)", i, delay, cap);
      g_assert_cmpuint (delay, >=, 20 - 1);
      cap = MIN (cap * 2, 160);
    }

  /* A publish waits; the broker comes back; it goes out. */
  carehare_session_publish_async (session, "", "no-such-queue-session", body, NULL,
                                  CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                  carehare_test_store_result, &pending);
  forwarder_start (&fwd);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  g_assert_true (carehare_session_publish_finish (session, pending, &error));
  g_assert_no_error (error);
  close_session (session);
  g_socket_service_stop (fwd.service);
  g_socket_listener_close (G_SOCKET_LISTENER (fwd.service));
  g_clear_object (&fwd.service);

  /* close_async while WAITING completes without waiting for the timer. */
  second = session_for (uri);
  carehare_session_set_reconnect_delay_min (second, 60000);
  carehare_session_start (second);
  wait_for_state (second, CAREHARE_SESSION_STATE_WAITING, TIMEOUT_MS);
  g_clear_object (&pending);
  carehare_session_publish_async (second, "", "q", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                  carehare_test_store_result, &pending);
  consumer = carehare_session_acking_consumer (second, "q", 1);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &waiting);
  g_clear_object (&result);
  carehare_session_close_async (second, NULL, carehare_test_store_result, &result);
  /* Bounded far below the 60 s backoff: the close does not wait for it. */
  carehare_test_wait_for_result (&result, 5000);
  g_assert_true (carehare_session_close_finish (second, result, NULL));
  g_assert_cmpint (carehare_session_get_state (second), ==, CAREHARE_SESSION_STATE_STOPPED);
  carehare_test_wait_for_result (&pending, 5000);
  g_assert_false (carehare_session_publish_finish (second, pending, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_clear_error (&error);
  /* And so does a next_delivery that was waiting. */
  carehare_test_wait_for_result (&waiting, 5000);
  g_assert_null (carehare_consumer_next_delivery_finish (consumer, waiting, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
}

/* ---- backoff --------------------------------------------------------------- */

/* The waits the session draws (read from the session: an elapsed wait can
 * only be checked from below, as /session/broker-away does): the first is
 * the minimum, then each lies in [minimum, cap] with the cap doubling from
 * the minimum up to the maximum, and the draws spread over that whole
 * range. With the largest maximum the property allows, no overflow. */
static void
test_backoff_bounds (void)
{
  const char *uris[] = { "amqp://127.0.0.1:1", NULL };
  g_autoptr(CarehareSession) session = carehare_session_new (uris);
  g_autoptr(CarehareSession) wide = carehare_session_new (uris);
  guint cap = 100, n_low = 0, n_high = 0;

  g_assert_cmpuint (carehare_session_get_reconnect_delay_min (session), ==, 100);
  g_assert_cmpuint (carehare_session_get_reconnect_delay_max (session), ==, 30000);
  for (guint i = 0; i < 2000; i++)
    {
      guint delay = _carehare_session_next_delay (session);

      g_assert_cmpuint (session->cap, ==, cap);
      g_assert_cmpuint (delay, >=, 100);
      g_assert_cmpuint (delay, <=, cap);
      if (i == 0)
        g_assert_cmpuint (delay, ==, 100);
      if (cap == 30000)
        {
          if (delay < 15050)
            n_low++;
          else
            n_high++;
        }
      cap = MIN (cap * 2, 30000);
    }
  /* ~1990 draws at the full cap, uniform: both halves are hit. */
  g_assert_cmpuint (n_low, >, 0);
  g_assert_cmpuint (n_high, >, 0);

  /* A lower maximum lowers the cap at once; minimum == maximum: fixed. */
  carehare_session_set_reconnect_delay_max (session, 50);
  g_assert_cmpuint (carehare_session_get_reconnect_delay_min (session), ==, 50);
  for (guint i = 0; i < 10; i++)
    g_assert_cmpuint (_carehare_session_next_delay (session), ==, 50);

  carehare_session_set_reconnect_delay_min (wide, 1);
  carehare_session_set_reconnect_delay_max (wide, G_MAXINT32);
  cap = 1;
  for (guint i = 0; i < 40; i++)
    {
      guint delay = _carehare_session_next_delay (wide);

      g_assert_cmpuint (wide->cap, ==, cap);
      g_assert_cmpuint (delay, >=, 1);
      g_assert_cmpuint (delay, <=, cap);
      cap = (guint) MIN ((guint64) cap * 2, G_MAXINT32);
    }
}

static gboolean
cap_is_max (gpointer data)
{
  CarehareSession *session = data;

  return session->cap == session->delay_max;
}

/* A connection that stayed up for at least reconnect-delay-max starts the
 * backoff over: the cap, at its maximum after failed attempts, is back at
 * the minimum for the wait after that connection. */
static void
test_backoff_reset (void)
{
  Forwarder fwd = { NULL, free_port (), 0 };
  g_autofree char *name = carehare_test_unique_name ("session-backoff-conn");
  g_autofree char *uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/?connection_name=%s",
                                          fwd.port, name);
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 40);
  carehare_session_start (session);
  /* Nothing listens: failed attempts raise the cap to the maximum. */
  wait_until (cap_is_max, session, "the backoff cap at its maximum", TIMEOUT_MS);
  g_assert_cmpuint (rec->n_connected, ==, 0);

  forwarder_start (&fwd);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_cmpuint (session->cap, ==, 40);
  /* Up for longer than the maximum (40 ms), then lost. */
  carehare_test_run_for (100);
  carehare_test_broker_close_connection (name, "forced by test-session");
  wait_for_connections (rec, 2, TIMEOUT_MS);
  /* Without the reset: MIN (40 * 2, 40) = 40. */
  g_assert_cmpuint (session->cap, ==, 10);
  g_assert_cmpstr (rec->events->str, ==, "CDC");
  close_session (session);
  g_socket_service_stop (fwd.service);
  g_socket_listener_close (G_SOCKET_LISTENER (fwd.service));
  g_clear_object (&fwd.service);
}

/* After a connection drops, the URIs are tried again from the first: the
 * first URI was down at the start (the second took the connection), is
 * up when the connection drops, and takes the next one. */
static void
test_uris_from_first (void)
{
  Forwarder fwd = { NULL, free_port (), 0 };
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *first = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u", fwd.port);
  g_autofree char *second = fault_proxy_uri (proxy, "");
  const char *uris[] = { first, second, NULL };
  g_autoptr(CarehareSession) session = carehare_session_new (uris);
  g_autoptr(Recorder) rec = recorder_new (session);

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 20);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_cmpuint (fault_proxy_get_n_accepted (proxy), ==, 1);

  forwarder_start (&fwd);
  fault_proxy_reset (proxy);
  wait_for_connections (rec, 2, TIMEOUT_MS);
  g_assert_cmpstr (rec->events->str, ==, "CDC");
  g_assert_cmpuint (fwd.n_accepted, ==, 1);
  g_assert_cmpuint (fault_proxy_get_n_accepted (proxy), ==, 1);
  close_session (session);
  g_socket_service_stop (fwd.service);
  g_socket_listener_close (G_SOCKET_LISTENER (fwd.service));
  g_clear_object (&fwd.service);
  fault_proxy_free (proxy);
}

/* ---- token refresh ------------------------------------------------------- */

/* Connection.Update-Secret against the broker: its internal backend
 * answers Update-Secret-Ok (without checking the secret); the connection
 * stays open; on a closed connection it fails. */
static void
test_update_secret (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *declared = NULL;

  carehare_connection_update_secret_async (conn, "a new secret", "test-session", NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_update_secret_finish (conn, result, &error));
  g_assert_no_error (error);
  g_assert_false (carehare_connection_get_is_closed (conn));

  /* Still usable. */
  g_clear_object (&result);
  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  declared = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);

  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_clear_object (&result);
  carehare_connection_update_secret_async (conn, "late", "", NULL, carehare_test_store_result,
                                           &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_false (carehare_connection_update_secret_finish (conn, result, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
}

static char *
add_user (const char *password)
{
  char *user = carehare_test_unique_name ("sessionuser");

  g_free (carehare_test_broker_ctl ("add_user", user, password, NULL));
  g_free (carehare_test_broker_ctl ("set_permissions", "-p", "/", user, ".*", ".*", ".*", NULL));
  return user;
}

/* The user's password changes on the broker; set_password gives the new
 * one to the live connection (update-secret) and to the reconnections: a
 * forced reconnection logs in with it. With the old password the login
 * would be refused and the session would fail for good. */
static void
test_set_password (void)
{
  g_autofree char *user = add_user ("old-Kestrel-password");
  g_autofree char *queue = carehare_test_unique_name ("session-password");
  g_autofree char *name = carehare_test_unique_name ("session-password-conn");
  g_autofree char *uri = g_strdup_printf ("amqp://%s:old-Kestrel-password@127.0.0.1:%u/"
                                          "?connection_name=%s", user, broker_port (), name);
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *first;

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 200);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_AUTO_DELETE, NULL);
  consumer = carehare_session_acking_consumer (session, queue, 10);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  first = carehare_session_get_connection (session);

  g_free (carehare_test_broker_ctl ("change_password", user, "new-Kestrel:p@ss/word", NULL));
  carehare_session_set_password (session, "new-Kestrel:p@ss/word");
  /* The live connection took the new secret and stays. */
  g_assert_true (session_publish (session, queue, "before", &error));
  g_assert_no_error (error);
  g_assert_true (carehare_session_get_connection (session) == first);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  g_clear_object (&delivery);

  carehare_test_broker_close_connection (name, "forced by test-session");
  wait_for_connections (rec, 2, TIMEOUT_MS);
  g_assert_cmpstr (rec->events->str, ==, "CDC");
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTED);
  g_assert_true (session_publish (session, queue, "after", &error));
  g_assert_no_error (error);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  close_session (session);
  g_free (carehare_test_broker_ctl ("delete_user", user, NULL));
}

/* ---- permanent errors ---------------------------------------------------- */

static void
test_login_refused (void)
{
  g_autofree char *uri = NULL;
  g_autoptr(CarehareSession) session = NULL;
  g_autoptr(Recorder) rec = NULL;
  g_autoptr(GError) error = NULL;
  const char *port = g_getenv ("CAREHARE_TEST_BROKER_PORT");

  carehare_test_amqp_uri ();
  uri = g_strdup_printf ("amqp://guest:wrong@127.0.0.1:%s", port);
  session = session_for (uri);
  rec = recorder_new (session);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_FAILED, TIMEOUT_MS);
  g_assert_cmpuint (carehare_error_get_reply_code (carehare_session_get_last_error (session)), ==,
                    403);
  g_assert_cmpuint (rec->n_connected + rec->n_disconnected, ==, 0);
  /* A publish on a failed session fails at once with the last error. */
  g_assert_false (session_publish (session, "q", "x", &error));
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);
  g_assert_null (strstr (error->message, "wrong"));
  close_session (session);
}

static void
test_invalid_uri (void)
{
  g_autoptr(CarehareSession) session = session_for ("amqp://host?no_such_parameter=1");
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  consumer = carehare_session_acking_consumer (session, "q", 1);
  carehare_session_start (session);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_FAILED);
  g_assert_error ((GError *) carehare_session_get_last_error (session), CAREHARE_ERROR,
                  CAREHARE_ERROR_INVALID_URI);
  delivery = next_delivery (consumer, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI);
}

/* A declaration that conflicts with the queue as it exists: 406, for good. */
static void
test_topology_refused (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-conflict");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareSession) session = session_for (carehare_test_amqp_uri ());
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(GAsyncResult) result = NULL;
  g_autofree char *declared = NULL;

  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  declared = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, NULL);
  g_assert_nonnull (declared);

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_FAILED, TIMEOUT_MS);
  g_assert_error ((GError *) carehare_session_get_last_error (session), CAREHARE_ERROR,
                  CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (carehare_session_get_last_error (session)), ==,
                    406);
  g_assert_cmpuint (rec->n_connected + rec->n_disconnected, ==, 0);
  close_session (session);
  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  delete_queue (queue);
}

static gboolean
last_error_is_405 (gpointer data)
{
  const GError *error = carehare_session_get_last_error (data);

  return error != NULL && carehare_error_get_reply_code (error) == 405;
}

/* Another connection holds the exclusive queue the session declares: 405
 * RESOURCE_LOCKED is retried (never FAILED, no signal) until the holder
 * goes, then the session connects. */
static void
test_resource_locked_retried (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-locked");
  g_autoptr(CarehareConnection) holder = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareSession) session = session_for (carehare_test_amqp_uri ());
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *declared = NULL;

  carehare_connection_queue_declare_async (holder, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL,
                                           NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  declared = carehare_connection_queue_declare_finish (holder, result, NULL, NULL, &error);
  g_assert_no_error (error);

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 20);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  carehare_session_start (session);
  wait_until (last_error_is_405, session, "405 RESOURCE_LOCKED", TIMEOUT_MS);
  g_assert_cmpint (carehare_session_get_state (session), !=, CAREHARE_SESSION_STATE_FAILED);
  g_assert_cmpuint (rec->n_connected + rec->n_disconnected, ==, 0);

  /* The holder goes, and its exclusive queue with it. */
  g_clear_object (&result);
  carehare_connection_close_async (holder, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_cmpstr (rec->events->str, ==, "C");
  close_session (session);
}

/* An exclusive queue: after a forced close the broker may still hold it
 * (405 RESOURCE_LOCKED), which is retried until it lets go. */
static void
test_exclusive_queue (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-exclusive");
  g_autofree char *name = carehare_test_unique_name ("session-exclusive-conn");
  g_autofree char *suffix = g_strdup_printf ("?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 200);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  consumer = carehare_session_acking_consumer_full (session, queue, 5,
                                                    CAREHARE_CONSUME_FLAGS_EXCLUSIVE,
                                                    "session-test-tag", NULL);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_cmpstr (carehare_consumer_get_consumer_tag (consumer), ==, "session-test-tag");
  carehare_test_broker_close_connection (name, "forced by test-session");
  wait_for_connections (rec, 2, TIMEOUT_MS);
  g_assert_true (session_publish (session, queue, "exclusive", &error));
  g_assert_no_error (error);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  close_session (session);
}

/* The program closes a session consumer: its next_delivery ends, the
 * session goes on. A consumer created while connected starts at once. */
static void
test_consumer_close (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-consumer-close");
  g_autoptr(CarehareSession) session = session_for (carehare_test_amqp_uri ());
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  consumer = carehare_session_acking_consumer (session, queue, 5);
  g_assert_true (session_publish (session, queue, "late", &error));
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (consumer, result, NULL));
  g_clear_object (&delivery);
  delivery = next_delivery (consumer, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTED);
  close_session (session);
  delete_queue (queue);
}

/* A consumer callback that closes the session in the middle of a batch of
 * deliveries: the rest of the batch is not delivered (it goes back with
 * the connection), and nothing asks the closed consumer for more. */
typedef struct {
  CarehareSession *session;
  guint received;
  GError *error;
  gboolean done;
  GAsyncResult *closed;
} CloseChain;

static void
close_chain_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  CarehareConsumer *consumer = CAREHARE_CONSUMER (source);
  CloseChain *chain = user_data;
  g_autoptr(CarehareDelivery) delivery = NULL;

  delivery = carehare_consumer_next_delivery_finish (consumer, result, &chain->error);
  if (delivery == NULL)
    {
      chain->done = TRUE;
      return;
    }
  chain->received++;
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  if (chain->received == 2)
    {
      carehare_session_close_async (chain->session, NULL, carehare_test_store_result,
                                    &chain->closed);
      chain->done = TRUE;
      return;
    }
  carehare_consumer_next_delivery_async (consumer, NULL, close_chain_cb, chain);
}

static void
test_close_in_callback (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-close-in-callback");
  g_autoptr(CarehareSession) session = session_for (carehare_test_amqp_uri ());
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  CloseChain chain = { session };

  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  for (guint i = 0; i < 5; i++)
    g_assert_true (session_publish (session, queue, "m", &error));
  /* The five arrive together, most likely in one read: one batch. */
  consumer = carehare_session_acking_consumer (session, queue, 10);
  carehare_consumer_next_delivery_async (consumer, NULL, close_chain_cb, &chain);
  while (!chain.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (chain.error);
  g_assert_cmpuint (chain.received, ==, 2);
  carehare_test_wait_for_result (&chain.closed, TIMEOUT_MS);
  g_assert_true (carehare_session_close_finish (session, chain.closed, NULL));
  g_clear_object (&chain.closed);
  g_assert_true (carehare_consumer_get_is_closed (consumer));
  delete_queue (queue);
}

/* Resident memory of this process, in KiB (-1 if unknown). */
static long
resident_kib (void)
{
  g_autofree char *statm = NULL;
  long pages = 0, resident = -1;

  if (g_file_get_contents ("/proc/self/statm", &statm, NULL, NULL))
    sscanf (statm, "%ld %ld", &pages, &resident);
  return resident < 0 ? -1 : resident * (sysconf (_SC_PAGESIZE) / 1024);
}

/* Whether memory figures mean anything here: not under valgrind or a
 * sanitizer, which keep freed memory aside. */
static gboolean
plain_allocator (void)
{
  const char *preload = g_getenv ("LD_PRELOAD");

#if defined(__SANITIZE_ADDRESS__)
  return FALSE;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return FALSE;
#endif
#endif
  return preload == NULL || strstr (preload, "vgpreload") == NULL;
}

/* Fifty reconnections: nothing leaks (valgrind and ASan run this), and
 * resident memory does not grow from the tenth to the fiftieth. */
static void
test_many_reconnections (void)
{
  g_autofree char *queue = carehare_test_unique_name ("session-many");
  FaultProxy *proxy = fault_proxy_new (broker_port ());
  g_autofree char *uri = fault_proxy_uri (proxy, "");
  g_autoptr(CarehareSession) session = session_for (uri);
  g_autoptr(Recorder) rec = recorder_new (session);
  g_autoptr(CarehareConsumer) consumer = NULL;
  guint n = 50;
  long rss_at_10 = -1, rss_at_end;

  carehare_session_set_reconnect_delay_min (session, 1);
  carehare_session_set_reconnect_delay_max (session, 20);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
  consumer = carehare_session_acking_consumer (session, queue, 5);
  carehare_session_start (session);
  for (guint i = 1; i <= n; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) delivery = NULL;
      g_autofree char *text = g_strdup_printf ("%u", i);

      wait_for_connections (rec, i, TIMEOUT_MS);
      g_assert_true (session_publish (session, queue, text, &error));
      g_assert_no_error (error);
      delivery = next_delivery (consumer, &error);
      g_assert_no_error (error);
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
      fault_proxy_reset (proxy);
      if (i == 10)
        rss_at_10 = resident_kib ();
    }
  wait_for_connections (rec, n + 1, TIMEOUT_MS);
  rss_at_end = resident_kib ();
  g_test_message ("resident memory after 10 reconnections: %ld KiB, after %u: %ld KiB",
                  rss_at_10, n, rss_at_end);
  if (plain_allocator () && rss_at_10 > 0 && rss_at_end > 0)
    g_assert_cmpint (rss_at_end - rss_at_10, <, 4096);
  close_session (session);
  g_assert_cmpuint (rec->n_disconnected, ==, rec->n_connected);
  fault_proxy_free (proxy);
  delete_queue (queue);
}

/* ---- a network monitor the test controls ---------------------------------- */

typedef struct {
  GObject parent_instance;
  gboolean available;
} TestMonitor;

typedef struct {
  GObjectClass parent_class;
} TestMonitorClass;

enum {
  MON_PROP_0,
  MON_PROP_AVAILABLE,
  MON_PROP_METERED,
  MON_PROP_CONNECTIVITY,
};

static GType test_monitor_get_type (void);
static void test_monitor_iface_init (GNetworkMonitorInterface *iface);
static void test_monitor_initable_init (GInitableIface *iface);

G_DEFINE_TYPE_WITH_CODE (TestMonitor, test_monitor, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE, test_monitor_initable_init)
                         G_IMPLEMENT_INTERFACE (G_TYPE_NETWORK_MONITOR, test_monitor_iface_init))

static gboolean
test_monitor_initable_init_ (GInitable     *initable,
                             GCancellable  *cancellable,
                             GError       **error)
{
  return TRUE;
}

static void
test_monitor_initable_init (GInitableIface *iface)
{
  iface->init = test_monitor_initable_init_;
}

static void
test_monitor_iface_init (GNetworkMonitorInterface *iface)
{
}

static void
test_monitor_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  TestMonitor *self = (TestMonitor *) object;

  switch (prop_id)
    {
    case MON_PROP_AVAILABLE:
      g_value_set_boolean (value, self->available);
      break;
    case MON_PROP_METERED:
      g_value_set_boolean (value, FALSE);
      break;
    case MON_PROP_CONNECTIVITY:
      g_value_set_enum (value, self->available ? G_NETWORK_CONNECTIVITY_FULL
                                               : G_NETWORK_CONNECTIVITY_LOCAL);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
test_monitor_class_init (TestMonitorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = test_monitor_get_property;
  g_object_class_override_property (object_class, MON_PROP_AVAILABLE, "network-available");
  g_object_class_override_property (object_class, MON_PROP_METERED, "network-metered");
  g_object_class_override_property (object_class, MON_PROP_CONNECTIVITY, "connectivity");
}

static void
test_monitor_init (TestMonitor *self)
{
}

static void
test_monitor_set_available (TestMonitor *self,
                            gboolean     available)
{
  self->available = available;
  g_object_notify (G_OBJECT (self), "network-available");
  g_signal_emit_by_name (self, "network-changed", available);
}

/* No attempt while the monitor says the network is unavailable; when it
 * comes back, the next attempt starts at once (not after the backoff). */
static void
test_network_monitor (void)
{
  g_autofree char *name = carehare_test_unique_name ("session-netmon-conn");
  g_autofree char *suffix = g_strdup_printf ("?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  const char *uris[] = { uri, NULL };
  TestMonitor *monitor = g_object_new (test_monitor_get_type (), NULL);
  g_autoptr(CarehareSession) session = NULL;
  g_autoptr(Recorder) rec = NULL;

  session = g_object_new (CAREHARE_TYPE_SESSION, "uris", uris, "network-monitor", monitor, NULL);
  rec = recorder_new (session);
  carehare_session_start (session);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_WAITING);
  carehare_test_run_for (300);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_WAITING);
  g_assert_null (carehare_session_get_last_error (session));

  test_monitor_set_available (monitor, TRUE);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);

  /* Lost while the network is down, with a backoff far longer than the
   * test: the network coming back starts the attempt. */
  carehare_session_set_reconnect_delay_min (session, 600000);
  test_monitor_set_available (monitor, FALSE);
  carehare_test_broker_close_connection (name, "forced by test-session");
  wait_for_state (session, CAREHARE_SESSION_STATE_WAITING, TIMEOUT_MS);
  test_monitor_set_available (monitor, TRUE);
  wait_for_state (session, CAREHARE_SESSION_STATE_CONNECTED, TIMEOUT_MS);
  g_assert_cmpstr (rec->events->str, ==, "CDC");
  close_session (session);
  g_object_unref (monitor);
}

static void
count_connecting_cb (CarehareSession *session,
                     GParamSpec      *pspec,
                     gpointer         user_data)
{
  if (carehare_session_get_state (session) == CAREHARE_SESSION_STATE_CONNECTING)
    (*(guint *) user_data)++;
}

static gboolean
uint_at_least_2 (gpointer data)
{
  return *(guint *) data >= 2;
}

/* A change the monitor reports while the network stays available (a new
 * route, an interface) is not the network coming back: the backoff
 * stands. Only unavailable -> available cuts a wait short. */
/* A session watched by @monitor (available) at a port nothing listens on:
 * its first attempt is refused, and it then waits ten minutes. Its
 * attempts are counted in @n_attempts. */
static CarehareSession *
session_waiting_long (TestMonitor *monitor,
                      guint       *n_attempts)
{
  g_autofree char *uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u", free_port ());
  const char *uris[] = { uri, NULL };
  CarehareSession *session;

  monitor->available = TRUE;
  session = g_object_new (CAREHARE_TYPE_SESSION, "uris", uris, "network-monitor", monitor,
                          "reconnect-delay-min", 600000, NULL);
  g_signal_connect (session, "notify::state", G_CALLBACK (count_connecting_cb), n_attempts);
  carehare_session_start (session);
  wait_for_state (session, CAREHARE_SESSION_STATE_WAITING, TIMEOUT_MS);
  g_assert_cmpuint (*n_attempts, ==, 1);
  return session;
}

static void
test_network_change_while_available (void)
{
  TestMonitor *monitor = g_object_new (test_monitor_get_type (), NULL);
  guint n_attempts = 0;
  g_autoptr(CarehareSession) session = session_waiting_long (monitor, &n_attempts);

  test_monitor_set_available (monitor, TRUE);
  carehare_test_run_for (100);
  g_assert_cmpuint (n_attempts, ==, 1);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_WAITING);

  /* Lost and back: now the next attempt starts at once. */
  test_monitor_set_available (monitor, FALSE);
  test_monitor_set_available (monitor, TRUE);
  wait_until (uint_at_least_2, &n_attempts, "an attempt once the network is back", TIMEOUT_MS);
  close_session (session);
  g_object_unref (monitor);
}

static gpointer
flap_thread (gpointer data)
{
  TestMonitor *monitor = data;

  test_monitor_set_available (monitor, FALSE);
  test_monitor_set_available (monitor, TRUE);
  return NULL;
}

/* A monitor that reports from another thread: the network lost and back
 * before the session's thread runs the two reports. Each report carries
 * its own availability (by the time the first runs, the monitor says
 * available again), so the backoff is still cut short. */
static void
test_network_flap_from_thread (void)
{
  TestMonitor *monitor = g_object_new (test_monitor_get_type (), NULL);
  guint n_attempts = 0;
  g_autoptr(CarehareSession) session = session_waiting_long (monitor, &n_attempts);

  /* The session's thread holds its context while the monitor's thread
   * reports: both reports are queued. */
  g_assert_true (g_main_context_acquire (NULL));
  g_thread_join (g_thread_new ("flap", flap_thread, monitor));
  g_main_context_release (NULL);
  wait_until (uint_at_least_2, &n_attempts, "an attempt once the network is back", TIMEOUT_MS);
  close_session (session);
  g_object_unref (monitor);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/session/basic", test_basic);
  g_test_add_func ("/session/forced-reconnect", test_forced_reconnect);
  g_test_add_func ("/session/reset-with-publishes-in-flight", test_reset_in_flight);
  g_test_add_func ("/session/topology-restore-dies", test_topology_restore_dies);
  g_test_add_func ("/session/push-across-reconnection", test_push_across_reconnection);
  g_test_add_func ("/session/publish/unconfirmed-not-resent", test_unconfirmed_not_resent);
  g_test_add_func ("/session/publish/cancel-waiting", test_publish_cancel_waiting);
  g_test_add_func ("/session/broker-away", test_broker_away);
  g_test_add_func ("/session/backoff/bounds", test_backoff_bounds);
  g_test_add_func ("/session/backoff/reset-after-long-connection", test_backoff_reset);
  g_test_add_func ("/session/uris-from-first", test_uris_from_first);
  g_test_add_func ("/session/update-secret", test_update_secret);
  g_test_add_func ("/session/set-password", test_set_password);
  g_test_add_func ("/session/permanent/login-refused", test_login_refused);
  g_test_add_func ("/session/permanent/invalid-uri", test_invalid_uri);
  g_test_add_func ("/session/permanent/topology-refused", test_topology_refused);
  g_test_add_func ("/session/exclusive-queue", test_exclusive_queue);
  g_test_add_func ("/session/transient/resource-locked", test_resource_locked_retried);
  g_test_add_func ("/session/consumer-close", test_consumer_close);
  g_test_add_func ("/session/close-in-callback", test_close_in_callback);
  g_test_add_func ("/session/many-reconnections", test_many_reconnections);
  g_test_add_func ("/session/network-monitor", test_network_monitor);
  g_test_add_func ("/session/network-monitor/flap-from-another-thread",
                   test_network_flap_from_thread);
  g_test_add_func ("/session/network-monitor/change-while-available",
                   test_network_change_while_available);

  return g_test_run ();
}
