/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Failover against the private three-node cluster (test-server/cluster):
 * a quorum queue keeps every confirmed message when the node the client is
 * connected to is killed, and carehare_connection_new_for_uris_async()
 * reaches a surviving node; a CarehareSession moves to another node by
 * itself, declares its quorum queue again there and its consumer resumes.
 *
 * Needs `test-server/cluster start` and `eval "$(test-server/cluster env)"`
 * (run-tests does both); fails, never skips, without them.
 */
#include "carehare-test-util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define N_MESSAGES 500
#define TIMEOUT_MS 30000
#define N_NODES 3

static const char *
cluster_env (const char *name)
{
  const char *value = g_getenv (name);

  if (value == NULL || *value == '\0')
    g_error ("%s is not set: start the cluster with `test-server/cluster start` and "
             "`eval \"$(test-server/cluster env)\"`, or run ./run-tests", name);
  return value;
}

/* Runs `test-server/cluster ARGS...`; returns its standard output or fails
 * the test. */
static char *
cluster_run (const char *first_arg,
             ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;
  va_list args;

  g_ptr_array_add (argv, (char *) cluster_env ("CAREHARE_TEST_CLUSTER"));
  va_start (args, first_arg);
  for (const char *arg = first_arg; arg != NULL; arg = va_arg (args, const char *))
    g_ptr_array_add (argv, (char *) arg);
  va_end (args);
  g_ptr_array_add (argv, NULL);

  if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                     &out, &err, &status, &error))
    g_error ("cannot run the cluster script: %s", error->message);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("cluster %s failed: %s\n%s%s", first_arg, error->message, out, err);
  return g_steal_pointer (&out);
}

/* The cluster's URIs, node 1 first, each naming the connection. */
static char **
cluster_uris (const char *connection_name)
{
  g_auto(GStrv) words = g_strsplit (cluster_env ("CAREHARE_TEST_CLUSTER_URIS"), " ", -1);
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  for (char **w = words; *w != NULL; w++)
    if (**w != '\0')
      {
        g_autofree char *uri = g_strdup_printf ("%s?connection_name=%s", *w, connection_name);

        g_strv_builder_add (builder, uri);
      }
  return g_strv_builder_end (builder);
}

/* 1..N_NODES for the node listening on @port, 0 for none. */
static int
node_for_port (guint port)
{
  for (int i = 1; i <= N_NODES; i++)
    {
      g_autofree char *var = g_strdup_printf ("CAREHARE_TEST_CLUSTER_PORT_%d", i);

      if ((guint) atoi (cluster_env (var)) == port)
        return i;
    }
  return 0;
}

/* Which node holds the connection named @connection_name, asking node
 * @ask (list_connections covers the whole cluster). */
static int
node_of_connection (const char *connection_name,
                    int         ask)
{
  g_autofree char *ask_str = g_strdup_printf ("%d", ask);

  /* A new connection is listed after a short while. */
  for (int attempt = 0; attempt < 50; attempt++)
    {
      g_autofree char *list = cluster_run ("ctl", ask_str, "list_connections", "--quiet",
                                           "--no-table-headers", "port",
                                           "client_properties", NULL);
      g_auto(GStrv) lines = g_strsplit (list, "\n", -1);

      for (char **line = lines; *line != NULL; line++)
        if (strstr (*line, connection_name) != NULL)
          {
            int node = node_for_port ((guint) g_ascii_strtoull (*line, NULL, 10));

            g_assert_cmpint (node, >, 0);
            return node;
          }
      carehare_test_run_for (200);
    }
  g_error ("no node lists the connection %s", connection_name);
}

static gboolean
set_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Like carehare_test_wait_for_result() but FALSE on timeout. */
static gboolean
wait_for_result_or_timeout (GAsyncResult **result,
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

static CarehareConnection *
connect_uris (const char * const *uris)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn;

  carehare_connection_new_for_uris_async (uris, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 4 * TIMEOUT_MS);
  conn = carehare_connection_new_for_uris_finish (result, &error);
  g_assert_no_error (error);
  g_assert_nonnull (conn);
  return conn;
}

static char *
declare_quorum_queue (CarehareConnection  *conn,
                      const char          *name,
                      CarehareQueueFlags   flags,
                      guint               *message_count,
                      GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  GVariant *args = NULL;

  if ((flags & CAREHARE_QUEUE_FLAGS_PASSIVE) == 0)
    args = g_variant_new_parsed ("{'x-queue-type': <'quorum'>}");
  carehare_connection_queue_declare_async (conn, name, flags, args, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_queue_declare_finish (conn, result, message_count, NULL, error);
}

/* ---- publishing ---------------------------------------------------------- */

typedef struct {
  guint pending;
  GHashTable *confirmed;   /* owned: bodies (char *) the broker confirmed */
  GPtrArray *errors;       /* owned: messages of the failed publishes */
} PublishState;

typedef struct {
  PublishState *state;
  char *body;              /* owned */
} PublishOp;

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  PublishOp *op = user_data;
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    g_hash_table_add (op->state->confirmed, g_steal_pointer (&op->body));
  else
    g_ptr_array_add (op->state->errors, g_strdup (error->message));
  op->state->pending--;
  g_free (op->body);
  g_free (op);
}

/* Publishes @n messages at once, each with confirms; returns when every
 * one completed. */
static void
publish_all (CarehareConnection *conn,
             const char         *queue,
             guint               n,
             PublishState       *state)
{
  gboolean timed_out = FALSE;
  guint id;

  for (guint i = 0; i < n; i++)
    {
      PublishOp *op = g_new0 (PublishOp, 1);
      g_autoptr(GBytes) body = NULL;

      op->state = state;
      op->body = g_strdup_printf ("message %u of %s", i, queue);
      body = g_bytes_new (op->body, strlen (op->body));
      state->pending++;
      carehare_connection_publish_async (conn, "", queue, body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                         published_cb, op);
    }
  id = g_timeout_add (4 * TIMEOUT_MS, set_flag_cb, &timed_out);
  while (state->pending > 0 && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  if (state->pending > 0)
    g_error ("%u publishes still pending: the operation hangs", state->pending);
}

/* ---- consuming ----------------------------------------------------------- */

static void
connection_closed_cb (CarehareConnection *conn,
                      const GError       *error,
                      gpointer            user_data)
{
  GError **out = user_data;

  g_assert_null (*out);
  *out = error != NULL ? g_error_copy (error)
                       : g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "closed by us");
}

/* A consumer on @queue once its (new) leader is ready: a quorum queue
 * elects a new leader after the old one was killed, and meanwhile declares
 * and consumes can fail with a channel error. Bounded retries. */
static CarehareConsumer *
start_consumer_when_ready (CarehareConnection *conn,
                           const char         *queue)
{
  g_autoptr(GError) last = NULL;

  for (int attempt = 0; attempt < 60; attempt++)
    {
      g_autoptr(GAsyncResult) result = NULL;
      g_autoptr(GError) error = NULL;
      g_autofree char *name = NULL;
      CarehareConsumer *consumer;

      g_assert_false (carehare_connection_get_is_closed (conn));
      name = declare_quorum_queue (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, &error);
      if (name != NULL)
        {
          carehare_connection_acking_consumer_async (conn, queue, 0, 100, NULL,
                                                     carehare_test_store_result, &result);
          if (wait_for_result_or_timeout (&result, TIMEOUT_MS))
            {
              consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
              if (consumer != NULL)
                {
                  g_test_message ("consuming after %d attempt(s)", attempt + 1);
                  return consumer;
                }
            }
          else
            g_error ("basic.consume on %s did not complete within %u ms", queue, TIMEOUT_MS);
        }
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER))
        g_error ("cannot consume from %s: %s", queue, error->message);
      g_test_message ("attempt %d: %s (reply code %u); retrying", attempt + 1,
                      error->message, carehare_error_get_reply_code (error));
      g_clear_error (&last);
      last = g_steal_pointer (&error);
      carehare_test_run_for (500);
    }
  g_error ("the queue %s never became ready: %s", queue, last->message);
}

typedef struct {
  GHashTable *confirmed;   /* not owned */
  GHashTable *seen;        /* owned: bodies consumed (and acked) */
  guint redelivered_duplicates;
} ConsumeState;

/* Handles one delivery: every body must be a confirmed one, seen once
 * unless redelivered. Acks it. */
static void
check_delivery (ConsumeState     *state,
                CarehareConsumer *consumer,
                CarehareDelivery *delivery)
{
  gsize size;
  const char *data = g_bytes_get_data (carehare_delivery_get_body (delivery), &size);
  g_autofree char *body = g_strndup (data, size);

  if (!g_hash_table_contains (state->confirmed, body))
    g_error ("consumed a message that was never confirmed: '%s'", body);
  if (g_hash_table_contains (state->seen, body))
    {
      if (!carehare_delivery_get_redelivered (delivery))
        g_error ("'%s' delivered twice without the redelivered flag", body);
      state->redelivered_duplicates++;
    }
  else
    g_hash_table_add (state->seen, g_steal_pointer (&body));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
}

/* Consumes and acks until every confirmed message was seen; then checks
 * that nothing else arrives. */
static void
consume_all (CarehareConnection *conn,
             const char         *queue,
             ConsumeState       *state)
{
  g_autoptr(CarehareConsumer) consumer = start_consumer_when_ready (conn, queue);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) extra = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  int restarts = 0;

  while (g_hash_table_size (state->seen) < g_hash_table_size (state->confirmed))
    {
      g_autoptr(GAsyncResult) result = NULL;
      g_autoptr(CarehareDelivery) delivery = NULL;

      carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
      if (!wait_for_result_or_timeout (&result, TIMEOUT_MS))
        g_error ("no delivery for %u ms after %u of %u messages", TIMEOUT_MS,
                 g_hash_table_size (state->seen), g_hash_table_size (state->confirmed));
      delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
      if (delivery == NULL)
        {
          /* The server may cancel a consumer of a quorum queue whose
           * leader moves: consume again (unacked messages are redelivered). */
          g_assert_true (g_error_matches (error, CAREHARE_ERROR,
                                          CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER));
          g_assert_cmpint (++restarts, <, 5);
          g_test_message ("consumer ended (%s); consuming again", error->message);
          g_clear_error (&error);
          g_clear_object (&consumer);
          consumer = start_consumer_when_ready (conn, queue);
          continue;
        }
      check_delivery (state, consumer, delivery);
    }

  /* Nothing beyond the confirmed set: no delivery within a second. */
  carehare_consumer_next_delivery_async (consumer, cancellable, carehare_test_store_result, &extra);
  if (wait_for_result_or_timeout (&extra, 1000))
    {
      g_autoptr(CarehareDelivery) delivery = carehare_consumer_next_delivery_finish (consumer, extra,
                                                                                    &error);
      g_assert_no_error (error);
      check_delivery (state, consumer, delivery);
    }
  else
    {
      g_cancellable_cancel (cancellable);
      carehare_test_wait_for_result (&extra, TIMEOUT_MS);
      g_assert_null (carehare_consumer_next_delivery_finish (consumer, extra, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_clear_error (&error);
    }

  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (consumer, closed, &error));
  g_assert_no_error (error);
}

/* ---- the test ------------------------------------------------------------ */

static void
test_quorum_queue_failover (void)
{
  g_autofree char *queue = carehare_test_unique_name ("cluster-qq");
  g_autofree char *name1 = g_strdup_printf ("%s-first", queue);
  g_autofree char *name2 = g_strdup_printf ("%s-second", queue);
  g_auto(GStrv) uris1 = cluster_uris (name1);
  g_auto(GStrv) uris2 = cluster_uris (name2);
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareConnection) conn2 = NULL;
  g_autoptr(GError) closed_error = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autofree char *declared = NULL;
  g_autofree char *again = NULL;
  g_autofree char *killed_str = NULL;
  g_autofree char *out = NULL;
  PublishState pub = { 0 };
  ConsumeState con = { 0 };
  gint64 t_kill;
  guint remaining = G_MAXUINT;
  int node, node2, ask;

  /* A previous run may have left a node down: start is idempotent. */
  g_free (cluster_run ("start", NULL));

  conn = connect_uris ((const char * const *) uris1);
  node = node_of_connection (name1, 2);
  g_test_message ("connected to node %d", node);
  g_assert_cmpint (node, ==, 1);  /* the first URI answers */

  declared = declare_quorum_queue (conn, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (declared, ==, queue);

  pub.confirmed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  pub.errors = g_ptr_array_new_with_free_func (g_free);
  publish_all (conn, queue, N_MESSAGES, &pub);
  if (pub.errors->len > 0)
    g_test_message ("%u publishes failed, the first: %s", pub.errors->len,
                    (const char *) pub.errors->pdata[0]);
  /* A healthy cluster confirms everything. */
  g_assert_cmpuint (g_hash_table_size (pub.confirmed), ==, N_MESSAGES);

  /* Kill -9 the node the connection is on (the queue's leader too: a
   * quorum queue's leader starts on the declaring node). */
  g_signal_connect (conn, "closed", G_CALLBACK (connection_closed_cb), &closed_error);
  killed_str = g_strdup_printf ("%d", node);
  t_kill = g_get_monotonic_time ();
  g_free (cluster_run ("kill", killed_str, NULL));
  {
    gboolean timed_out = FALSE;
    guint id = g_timeout_add (TIMEOUT_MS, set_flag_cb, &timed_out);

    while (closed_error == NULL && !timed_out)
      g_main_context_iteration (NULL, TRUE);
    if (!timed_out)
      g_source_remove (id);
  }
  g_assert_nonnull (closed_error);
  g_test_message ("closed %" G_GINT64_FORMAT " ms after the kill: %s",
                  (g_get_monotonic_time () - t_kill) / 1000, closed_error->message);
  g_assert_error (closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_connection_get_is_closed (conn));

  /* The same list: the killed node refuses, the next one answers. */
  conn2 = connect_uris ((const char * const *) uris2);
  ask = node == 1 ? 2 : 1;
  node2 = node_of_connection (name2, ask);
  g_test_message ("reconnected to node %d", node2);
  g_assert_cmpint (node2, !=, node);

  con.confirmed = pub.confirmed;
  con.seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  consume_all (conn2, queue, &con);
  g_assert_cmpuint (g_hash_table_size (con.seen), ==, g_hash_table_size (pub.confirmed));
  g_test_message ("consumed all %u confirmed messages (%u redelivered duplicates)",
                  g_hash_table_size (con.seen), con.redelivered_duplicates);

  /* Every message acked: the queue is empty. */
  again = declare_quorum_queue (conn2, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, &remaining, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (remaining, ==, 0);

  carehare_connection_queue_delete_async (conn2, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_delete_finish (conn2, result, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  carehare_connection_close_async (conn2, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn2, result, &error));
  g_assert_no_error (error);

  g_hash_table_unref (con.seen);
  g_hash_table_unref (pub.confirmed);
  g_ptr_array_unref (pub.errors);

  /* Bring the killed node back for whoever runs next. */
  out = cluster_run ("start", NULL);
  g_test_message ("%s", out);
}

static void
wait_closed (GError **closed_error)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (TIMEOUT_MS, set_flag_cb, &timed_out);

  while (*closed_error == NULL && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_assert_nonnull (*closed_error);
}

/* A consumer waiting for a message on node @node when that node is killed
 * (kill -9: the socket just ends) or stopped (rabbitmqctl stop_app: the
 * node closes its connections with 320 CONNECTION_FORCED first). */
static void
consume_through_node_loss (int      node,
                           gboolean kill)
{
  g_autofree char *node_str = g_strdup_printf ("%d", node);
  g_autofree char *var = g_strdup_printf ("CAREHARE_TEST_CLUSTER_URI_%d", node);
  g_autofree char *queue = carehare_test_unique_name ("cluster-consume");
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) none = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) closed_error = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *declared = NULL;

  g_free (cluster_run ("start", NULL));
  conn = carehare_test_connect (cluster_env (var));
  /* Exclusive: the queue goes with the connection, whatever happens. */
  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  declared = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&result);
  carehare_connection_acking_consumer_async (conn, queue, 0, 10, NULL,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_no_error (error);
  g_signal_connect (conn, "closed", G_CALLBACK (connection_closed_cb), &closed_error);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &pending);

  if (kill)
    g_free (cluster_run ("kill", node_str, NULL));
  else
    g_free (cluster_run ("ctl", node_str, "stop_app", NULL));
  wait_closed (&closed_error);
  g_test_message ("%s: %s", kill ? "killed" : "stopped", closed_error->message);
  if (kill)
    g_assert_error (closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  else
    {
      g_assert_error (closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
      g_assert_cmpuint (carehare_error_get_reply_code (closed_error), ==, 320);
    }

  /* The waiting consumer is told at once, and so is every later call. */
  carehare_test_wait_for_result (&pending, 1000);
  none = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_null (none);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_clear_error (&error);
  g_assert_true (carehare_consumer_get_is_closed (consumer));

  if (kill)
    g_free (cluster_run ("start", NULL));
  else
    g_free (cluster_run ("ctl", node_str, "start_app", NULL));
}

static void
test_consume_node_killed (void)
{
  consume_through_node_loss (3, TRUE);
}

static void
test_consume_node_stopped (void)
{
  consume_through_node_loss (2, FALSE);
}

/* ---- a session ----------------------------------------------------------- */

typedef struct {
  guint n_connected;
  guint n_disconnected;
  GString *events;
} SessionEvents;

static void
session_connected_cb (CarehareSession    *session,
                      CarehareConnection *connection,
                      gpointer            user_data)
{
  SessionEvents *ev = user_data;

  ev->n_connected++;
  g_string_append_c (ev->events, 'C');
}

static void
session_disconnected_cb (CarehareSession *session,
                         const GError    *error,
                         gpointer         user_data)
{
  SessionEvents *ev = user_data;

  ev->n_disconnected++;
  g_string_append_c (ev->events, 'D');
  g_test_message ("session disconnected: %s", error != NULL ? error->message : "closed");
}

static void
wait_for_n_connected (SessionEvents *ev,
                      guint          n)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (4 * TIMEOUT_MS, set_flag_cb, &timed_out);

  while (ev->n_connected < n && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_assert_cmpuint (ev->n_connected, >=, n);
}

static void
session_published_cb (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  guint *pending = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (carehare_session_publish_finish (CAREHARE_SESSION (source), result, &error));
  g_assert_no_error (error);
  (*pending)--;
}

/* Publishes "@prefix i" for i < @n through @session; all confirmed. */
static void
session_publish_all (CarehareSession *session,
                     const char      *queue,
                     const char      *prefix,
                     guint            n)
{
  guint pending = 0;
  gboolean timed_out = FALSE;
  guint id;

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *text = g_strdup_printf ("%s %u", prefix, i);
      g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

      pending++;
      carehare_session_publish_async (session, "", queue, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                      session_published_cb, &pending);
    }
  id = g_timeout_add (4 * TIMEOUT_MS, set_flag_cb, &timed_out);
  while (pending > 0 && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_assert_cmpuint (pending, ==, 0);
}

/* Takes deliveries until every "@prefix i" (i < @n) is in @seen; acks
 * each. Returns how many deliveries it took. */
static guint
session_consume_all (CarehareConsumer *consumer,
                     const char       *prefix,
                     guint             n,
                     GHashTable       *seen)
{
  guint n_deliveries = 0;

  while (g_hash_table_size (seen) < n)
    {
      g_autoptr(GAsyncResult) result = NULL;
      g_autoptr(CarehareDelivery) delivery = NULL;
      g_autoptr(GError) error = NULL;
      GBytes *body;
      char *text;

      carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
      g_assert_true (wait_for_result_or_timeout (&result, 4 * TIMEOUT_MS));
      delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
      g_assert_no_error (error);
      body = carehare_delivery_get_body (delivery);
      text = g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
      n_deliveries++;
      if (g_str_has_prefix (text, prefix))
        g_hash_table_add (seen, text);
      else
        g_free (text);  /* a redelivery of an earlier batch */
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  return n_deliveries;
}

/* Kill -9 the node that holds the session's connection: the session tries
 * the URIs again, lands on another node, declares its quorum queue there
 * (the queue elects a new leader), and its consumer, with a call waiting
 * across the kill, resumes. */
static void
test_session_kill_connected_node (void)
{
  g_autofree char *queue = carehare_test_unique_name ("cluster-session-qq");
  g_autofree char *name = g_strdup_printf ("%s-conn", queue);
  g_auto(GStrv) uris = cluster_uris (name);
  g_autoptr(CarehareSession) session = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) first = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  g_autofree char *killed_str = NULL;
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *remaining_uri_var = NULL;
  SessionEvents ev = { 0, 0, g_string_new (NULL) };
  guint n_taken;
  int node, node2;
  gint64 t_kill;

  g_free (cluster_run ("start", NULL));
  session = carehare_session_new ((const char * const *) uris);
  carehare_session_set_reconnect_delay_min (session, 50);
  carehare_session_set_reconnect_delay_max (session, 1000);
  g_signal_connect (session, "connected", G_CALLBACK (session_connected_cb), &ev);
  g_signal_connect (session, "disconnected", G_CALLBACK (session_disconnected_cb), &ev);
  carehare_session_declare_queue (session, queue, CAREHARE_QUEUE_FLAGS_DURABLE,
                                  g_variant_new_parsed ("{'x-queue-type': <'quorum'>}"));
  consumer = carehare_session_acking_consumer (session, queue, 20);
  carehare_session_start (session);
  wait_for_n_connected (&ev, 1);
  node = node_of_connection (name, 2);
  g_test_message ("session connected to node %d", node);
  g_assert_cmpint (node, ==, 1);  /* the first URI answers */

  session_publish_all (session, queue, "before", 50);
  n_taken = session_consume_all (consumer, "before", 50, seen);
  g_assert_cmpuint (n_taken, ==, 50);

  /* A call waiting across the kill gets the first delivery after it. */
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &pending);
  killed_str = g_strdup_printf ("%d", node);
  t_kill = g_get_monotonic_time ();
  g_free (cluster_run ("kill", killed_str, NULL));
  wait_for_n_connected (&ev, 2);
  g_test_message ("session connected again %" G_GINT64_FORMAT " ms after the kill",
                  (g_get_monotonic_time () - t_kill) / 1000);
  g_assert_cmpstr (ev.events->str, ==, "CDC");
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTED);
  node2 = node_of_connection (name, node == 1 ? 2 : 1);
  g_test_message ("session moved to node %d", node2);
  g_assert_cmpint (node2, !=, node);
  g_assert_null (pending);

  session_publish_all (session, queue, "after", 50);
  g_assert_true (wait_for_result_or_timeout (&pending, 4 * TIMEOUT_MS));
  first = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_no_error (error);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (first));
  {
    GBytes *body = carehare_delivery_get_body (first);
    char *text = g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));

    /* The first message published after the move, or one whose ack the
     * killed node never read, delivered again. */
    g_test_message ("first delivery after the move: %s", text);
    if (g_str_has_prefix (text, "after"))
      g_assert_cmpstr (text, ==, "after 0");
    else
      g_assert_true (carehare_delivery_get_redelivered (first));
    g_hash_table_remove_all (seen);
    g_hash_table_add (seen, text);
  }
  n_taken = session_consume_all (consumer, "after", 50, seen);
  g_test_message ("%u more deliveries for the messages published after the move", n_taken);
  g_assert_false (carehare_consumer_get_is_closed (consumer));

  {
    g_autoptr(GAsyncResult) closed = NULL;

    carehare_session_close_async (session, NULL, carehare_test_store_result, &closed);
    carehare_test_wait_for_result (&closed, TIMEOUT_MS);
    g_assert_true (carehare_session_close_finish (session, closed, NULL));
  }
  g_assert_cmpstr (ev.events->str, ==, "CDCD");

  /* Clean up on the node the session moved to. */
  remaining_uri_var = g_strdup_printf ("CAREHARE_TEST_CLUSTER_URI_%d", node2);
  conn = carehare_test_connect (cluster_env (remaining_uri_var));
  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_delete_finish (conn, result, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_string_free (ev.events, TRUE);

  /* Bring the killed node back for whoever runs next. */
  g_free (cluster_run ("start", NULL));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cluster/quorum-queue/kill-connected-node", test_quorum_queue_failover);
  g_test_add_func ("/cluster/consume/node-killed", test_consume_node_killed);
  g_test_add_func ("/cluster/consume/node-stopped", test_consume_node_stopped);
  g_test_add_func ("/cluster/session/kill-connected-node", test_session_kill_connected_node);
  return g_test_run ();
}
