/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The session's long run (issue 15): N messages (20,000 unless
 * --messages=N or CAREHARE_SESSION_RUN_MESSAGES says otherwise) published
 * through a session with confirms, paced so that the run spans many
 * connections, while every connection is cut 200-400 ms after it opened,
 * at a random point of the stream: by the fault proxy (a reset, or a frame
 * cut in half in either direction), and one in seven by the broker
 * (rabbitmqctl close_connection, run in the background).
 *
 * Asserted: every message whose publish succeeded is consumed at least
 * once by the session's consumer (none lost); a publish fails only with
 * CONNECTION_CLOSED; the consumer never ends; `connected` and
 * `disconnected` alternate, starting with `connected`; the consumer never
 * stops delivering for longer than the configuration allows a connection to
 * be lost and replaced (PAUSE_BOUND_MS: the heartbeat monitor's two
 * intervals to find a silent peer, the longest backoff delay, and the
 * connection timeout of the next attempt; a bound derived from settings,
 * never from the machine's speed). Printed: the connections, the
 * duplicates, the time to recover (median and worst) and the longest pause
 * in deliveries.
 */
#include "carehare-test-util.h"

#include "fault-proxy.h"

#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 200            /* publishes in flight at most */
#define PER_TICK 4            /* publishes per 5 ms tick: at most 800/s */
#define BROKER_CLOSE_EVERY 7  /* one connection in 7 is closed by rabbitmqctl */
#define HEARTBEAT_S 5
#define DELAY_MAX_MS 200
#define CONNECT_TIMEOUT_MS 5000
/* A stall the proxy makes is found by the heartbeat monitor within two
 * intervals; then at most the longest backoff delay, then one attempt that
 * either connects or times out (and a timed-out attempt would be retried
 * after another delay: counted once more, with a margin for a loaded loop). */
#define PAUSE_BOUND_MS (2 * HEARTBEAT_S * 1000 + 2 * (DELAY_MAX_MS + CONNECT_TIMEOUT_MS))

static guint n_messages = 20000;

typedef struct {
  CarehareSession *session;
  CarehareConsumer *consumer;
  FaultProxy *proxy;
  char *queue;
  char *name;                 /* connection_name of the session's connections */
  GRand *rand;

  guint next_to_publish;
  guint in_flight;
  guint n_done;
  guint n_ok;
  guint n_failed;
  guint8 *ok;                 /* per message: publish confirmed */
  guint16 *received;          /* per message: deliveries */
  guint n_ok_received;        /* messages confirmed and received */
  guint n_unique;
  guint n_deliveries;

  gboolean faults_on;
  guint generation;           /* connections so far */
  GString *events;            /* 'C' connected, 'D' disconnected */
  gint64 disconnected_at;
  GArray *recover_us;         /* gint64 per recovery */
  guint n_resets, n_cuts, n_broker_closes, n_forced_seen;
  guint n_timers;             /* fault timers pending */
  gboolean consumer_done;

  gint64 last_delivery;
  gint64 max_gap_us;
} Run;

typedef struct {
  Run *run;
  guint generation;
} FaultData;

static FaultData *
fault_data_new (Run   *run,
                guint  generation)
{
  FaultData *data = g_new0 (FaultData, 1);

  data->run = run;
  data->generation = generation;
  run->n_timers++;
  return data;
}

static void
fault_data_free (gpointer user_data)
{
  FaultData *data = user_data;

  data->run->n_timers--;
  g_free (data);
}

static gboolean
is_current (Run   *run,
            guint  generation)
{
  return run->faults_on && run->generation == generation &&
         carehare_session_get_state (run->session) == CAREHARE_SESSION_STATE_CONNECTED;
}

/* ---- publishing ---------------------------------------------------------- */

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Run *run = g_object_get_data (source, "run");
  guint i = GPOINTER_TO_UINT (user_data);
  g_autoptr(GError) error = NULL;

  run->in_flight--;
  run->n_done++;
  if (carehare_session_publish_finish (CAREHARE_SESSION (source), result, &error))
    {
      run->ok[i] = 1;
      run->n_ok++;
      if (run->received[i] > 0)
        run->n_ok_received++;
    }
  else
    {
      /* Lost with its connection before the confirm: the only failure. */
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
        g_error ("publish %u failed: %s", i, error->message);
      run->n_failed++;
    }
}

static gboolean
publish_tick_cb (gpointer user_data)
{
  Run *run = user_data;

  for (guint k = 0; k < PER_TICK && run->in_flight < WINDOW &&
       run->next_to_publish < n_messages; k++)
    {
      guint i = run->next_to_publish++;
      char *text = g_strdup_printf ("%u", i);
      gsize len = strlen (text);
      g_autoptr(GBytes) body = g_bytes_new_take (text, len);

      run->in_flight++;
      carehare_session_publish_async (run->session, "", run->queue, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL, published_cb,
                                      GUINT_TO_POINTER (i));
    }
  return run->next_to_publish < n_messages ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* ---- consuming ----------------------------------------------------------- */

static void
deliveries_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  Run *run = user_data;
  CarehareConsumer *consumer = CAREHARE_CONSUMER (source);
  g_autoptr(GPtrArray) batch = NULL;
  g_autoptr(GError) error = NULL;
  guint64 last_tag = 0;
  gint64 now = g_get_monotonic_time ();

  batch = carehare_consumer_next_deliveries_finish (consumer, result, &error);
  if (batch == NULL && carehare_consumer_get_is_closed (consumer))
    {
      /* Only the test's own close ends it. */
      if (!run->faults_on && run->n_done == n_messages &&
          g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
        {
          run->consumer_done = TRUE;
          return;
        }
      g_error ("the session consumer ended: %s", error->message);
    }
  if (batch == NULL)
    g_error ("a delivery was rejected: %s", error->message);

  if (run->last_delivery != 0)
    run->max_gap_us = MAX (run->max_gap_us, now - run->last_delivery);
  run->last_delivery = now;
  for (guint k = 0; k < batch->len; k++)
    {
      CarehareDelivery *delivery = g_ptr_array_index (batch, k);
      GBytes *body = carehare_delivery_get_body (delivery);
      g_autofree char *text = g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
      char *end = NULL;
      guint64 i = g_ascii_strtoull (text, &end, 10);

      g_assert_true (end != text && *end == '\0');
      g_assert_cmpuint (i, <, n_messages);
      run->n_deliveries++;
      if (run->received[i]++ == 0)
        {
          run->n_unique++;
          if (run->ok[i])
            run->n_ok_received++;
        }
      last_tag = MAX (last_tag, carehare_delivery_get_delivery_tag (delivery));
    }
  /* One ack for the batch; dropped by the session if its connection died. */
  carehare_consumer_ack_up_to (consumer, last_tag);
  carehare_consumer_next_deliveries_async (consumer, 0, NULL, deliveries_cb, run);
}

/* ---- faults -------------------------------------------------------------- */

static gboolean
fallback_reset_cb (gpointer user_data)
{
  FaultData *data = user_data;

  /* The armed cut found no frame to cut (a quiet direction). */
  if (is_current (data->run, data->generation))
    {
      data->run->n_resets++;
      fault_proxy_reset (data->run->proxy);
    }
  return G_SOURCE_REMOVE;
}

static gboolean
cut_cb (gpointer user_data)
{
  FaultData *data = user_data;
  Run *run = data->run;

  if (!is_current (run, data->generation))
    return G_SOURCE_REMOVE;
  switch (g_rand_int_range (run->rand, 0, 3))
    {
    case 0:
      run->n_resets++;
      fault_proxy_reset (run->proxy);
      break;
    case 1:
    case 2:
    default:
      run->n_cuts++;
      fault_proxy_cut_mid_frame (run->proxy, g_rand_boolean (run->rand)
                                             ? FAULT_DIRECTION_CLIENT_TO_SERVER
                                             : FAULT_DIRECTION_SERVER_TO_CLIENT);
      g_timeout_add_full (G_PRIORITY_DEFAULT, 300, fallback_reset_cb,
                          fault_data_new (run, data->generation), fault_data_free);
      break;
    }
  return G_SOURCE_REMOVE;
}

static gboolean
broker_closed_cb (gpointer user_data)
{
  FaultData *data = user_data;

  /* rabbitmqctl did not find it (it is slow to list a new connection):
   * the proxy cuts it instead. */
  if (is_current (data->run, data->generation))
    cut_cb (data);
  fault_data_free (data);
  return G_SOURCE_REMOVE;
}

typedef struct {
  FaultData *data;
  char *name;  /* owned */
} BrokerClose;

/* In a thread of its own: rabbitmqctl takes about a second, the main loop
 * goes on. (Not GSubprocess: its child watch runs in GLib's worker thread,
 * whose thread-local allocations LeakSanitizer, run with use_tls=0, takes
 * for leaks.) */
static gpointer
broker_close_thread (gpointer user_data)
{
  BrokerClose *close = user_data;
  static const char script[] =
    "b=$CAREHARE_TEST_BROKER\n"
    "for i in 1 2 3 4 5; do\n"
    "  pids=$(\"$b\" ctl list_connections --quiet --no-table-headers pid client_properties |\n"
    "         grep -F \"$1\" | grep -o '^<[^>]*>')\n"
    "  [ -n \"$pids\" ] && break\n"
    "  sleep 0.2\n"
    "done\n"
    "for p in $pids; do \"$b\" ctl close_connection \"$p\" 'forced by test-session-run'; done\n";
  const char *argv[] = { "sh", "-c", script, "sh", close->name, NULL };
  g_autoptr(GError) error = NULL;

  if (!g_spawn_sync (NULL, (char **) argv, NULL,
                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                     NULL, NULL, NULL, NULL, NULL, &error))
    g_error ("cannot run sh: %s", error->message);
  g_idle_add (broker_closed_cb, close->data);
  g_free (close->name);
  g_free (close);
  return NULL;
}

/* rabbitmqctl close_connection on the session's connection, in the
 * background. */
static void
broker_close (Run   *run,
              guint  generation)
{
  BrokerClose *close = g_new0 (BrokerClose, 1);

  close->data = fault_data_new (run, generation);
  close->name = g_strdup (run->name);
  run->n_broker_closes++;
  g_thread_unref (g_thread_new ("broker-close", broker_close_thread, close));
}

static void
connected_cb (CarehareSession    *session,
              CarehareConnection *connection,
              gpointer            user_data)
{
  Run *run = user_data;

  run->generation++;
  g_string_append_c (run->events, 'C');
  if (run->disconnected_at != 0)
    {
      gint64 us = g_get_monotonic_time () - run->disconnected_at;

      g_array_append_val (run->recover_us, us);
      run->disconnected_at = 0;
    }
  if (!run->faults_on)
    return;
  if (run->generation % BROKER_CLOSE_EVERY == 0)
    broker_close (run, run->generation);
  else
    g_timeout_add_full (G_PRIORITY_DEFAULT, (guint) g_rand_int_range (run->rand, 200, 401),
                        cut_cb, fault_data_new (run, run->generation), fault_data_free);
}

static void
disconnected_cb (CarehareSession *session,
                 const GError    *error,
                 gpointer         user_data)
{
  Run *run = user_data;

  g_string_append_c (run->events, 'D');
  run->disconnected_at = g_get_monotonic_time ();
  if (error != NULL && carehare_error_get_reply_code (error) == 320)
    run->n_forced_seen++;
}

/* ---- the run ------------------------------------------------------------- */

static int
compare_gint64 (gconstpointer a,
                gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

static gboolean
set_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
close_session (Run *run)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_session_close_async (run->session, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 30000);
  g_assert_true (carehare_session_close_finish (run->session, result, NULL));
}

static void
delete_queue (const char *queue)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 30000);
  g_assert_true (carehare_connection_queue_delete_finish (conn, result, NULL, NULL));
  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 30000);
}

static void
test_run (void)
{
  Run run = { 0 };
  const char *port = g_getenv ("CAREHARE_TEST_BROKER_PORT");
  g_autofree char *suffix = NULL;
  g_autofree char *uri = NULL;
  const char *uris[2] = { NULL, NULL };
  gboolean timed_out = FALSE;
  guint timeout_id;
  gint64 started;
  gint64 median = 0, worst = 0;
  guint n_connections;
  guint32 seed;

  carehare_test_amqp_uri ();  /* fails at once without the broker */
  run.queue = carehare_test_unique_name ("session-run");
  run.name = carehare_test_unique_name ("session-run-conn");
  seed = g_test_rand_int ();
  run.rand = g_rand_new_with_seed (seed);
  g_test_message ("queue %s, faults drawn with seed %u (g_test_rand_int)", run.queue, seed);
  run.proxy = fault_proxy_new ((guint16) g_ascii_strtoull (port, NULL, 10));
  suffix = g_strdup_printf ("?connection_name=%s&heartbeat=%d&connection_timeout=%d",
                            run.name, HEARTBEAT_S, CONNECT_TIMEOUT_MS);
  uri = fault_proxy_uri (run.proxy, suffix);
  uris[0] = uri;
  run.ok = g_new0 (guint8, n_messages);
  run.received = g_new0 (guint16, n_messages);
  run.events = g_string_new (NULL);
  run.recover_us = g_array_new (FALSE, FALSE, sizeof (gint64));
  run.faults_on = TRUE;

  run.session = carehare_session_new (uris);
  g_object_set_data (G_OBJECT (run.session), "run", &run);
  carehare_session_set_reconnect_delay_min (run.session, 10);
  carehare_session_set_reconnect_delay_max (run.session, DELAY_MAX_MS);
  g_signal_connect (run.session, "connected", G_CALLBACK (connected_cb), &run);
  g_signal_connect (run.session, "disconnected", G_CALLBACK (disconnected_cb), &run);
  carehare_session_declare_queue (run.session, run.queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
  run.consumer = carehare_session_acking_consumer (run.session, run.queue, 500);
  carehare_consumer_next_deliveries_async (run.consumer, 0, NULL, deliveries_cb, &run);

  started = g_get_monotonic_time ();
  carehare_session_start (run.session);
  g_timeout_add (5, publish_tick_cb, &run);

  /* A bound on a hang, not a timed assertion: the run takes well under. */
  timeout_id = g_timeout_add_seconds (60 + n_messages / 100, set_flag_cb, &timed_out);
  while (run.n_done < n_messages && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (timed_out);
  /* No more faults; every confirmed message must arrive. */
  run.faults_on = FALSE;
  while ((run.n_ok_received < run.n_ok || run.n_timers > 0) && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (run.n_ok_received < run.n_ok)
    {
      for (guint i = 0; i < n_messages; i++)
        if (run.ok[i] && run.received[i] == 0)
          g_test_message ("lost: message %u", i);
      g_error ("%u confirmed messages never arrived", run.n_ok - run.n_ok_received);
    }
  g_source_remove (timeout_id);

  close_session (&run);
  while (!run.consumer_done)
    g_main_context_iteration (NULL, TRUE);
  n_connections = run.generation;
  g_array_sort (run.recover_us, compare_gint64);
  if (run.recover_us->len > 0)
    {
      median = g_array_index (run.recover_us, gint64, run.recover_us->len / 2);
      worst = g_array_index (run.recover_us, gint64, run.recover_us->len - 1);
    }
  g_test_message ("session run: %u messages in %.1f s over %u connections (%u reconnections: "
                  "%u proxy resets, %u frames cut, %u rabbitmqctl closes asked, %u seen as 320)",
                  n_messages, (g_get_monotonic_time () - started) / 1e6, n_connections,
                  run.recover_us->len, run.n_resets, run.n_cuts, run.n_broker_closes,
                  run.n_forced_seen);
  g_test_message ("session run: %u confirmed, %u failed with CONNECTION_CLOSED; %u deliveries "
                  "of %u distinct messages: %u duplicates; none lost",
                  run.n_ok, run.n_failed, run.n_deliveries, run.n_unique,
                  run.n_deliveries - run.n_unique);
  g_test_message ("session run: time to recover (disconnected -> connected): median %.1f ms, "
                  "worst %.1f ms; longest pause between deliveries %.1f ms",
                  median / 1e3, worst / 1e3, run.max_gap_us / 1e3);

  /* Many connections, each disconnected paired with a later connected,
   * and the close's disconnected last. */
  g_assert_cmpuint (n_connections, >=, 5);
  g_assert_cmpuint (run.events->len, ==, 2 * n_connections);
  for (guint k = 0; k < run.events->len; k++)
    g_assert_cmpint (run.events->str[k], ==, k % 2 == 0 ? 'C' : 'D');
  g_assert_cmpuint (run.recover_us->len, ==, n_connections - 1);
  g_assert_cmpuint (run.n_ok + run.n_failed, ==, n_messages);
  g_assert_cmpuint (run.n_ok_received, ==, run.n_ok);
  /* Never stopped delivering for longer than losing and replacing a
   * connection may take under these settings. */
  g_assert_cmpint (run.max_gap_us / 1000, <=, PAUSE_BOUND_MS);

  g_object_unref (run.consumer);
  g_object_unref (run.session);
  fault_proxy_free (run.proxy);
  delete_queue (run.queue);
  g_rand_free (run.rand);
  g_free (run.ok);
  g_free (run.received);
  g_string_free (run.events, TRUE);
  g_array_unref (run.recover_us);
  g_free (run.queue);
  g_free (run.name);
}

int
main (int   argc,
      char *argv[])
{
  const char *env;

  /* Take --messages=N out before GTest sees the arguments. */
  for (int i = 1; i < argc; i++)
    if (g_str_has_prefix (argv[i], "--messages="))
      {
        n_messages = (guint) g_ascii_strtoull (argv[i] + strlen ("--messages="), NULL, 10);
        memmove (&argv[i], &argv[i + 1], (argc - i) * sizeof argv[0]);
        argc--;
        i--;
      }
  env = g_getenv ("CAREHARE_SESSION_RUN_MESSAGES");
  if (env != NULL && *env != '\0')
    n_messages = (guint) g_ascii_strtoull (env, NULL, 10);
  g_assert_cmpuint (n_messages, >, 0);

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/session/run/20000-messages-through-faults", test_run);
  return g_test_run ();
}
