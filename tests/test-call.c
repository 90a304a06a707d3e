/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * RPC over direct reply-to (carehare_connection_call_async) against the
 * private broker. The responder is an acking consumer on a connection of
 * its own that answers each request to its reply_to with its correlation
 * id.
 */
#include "carehare-test-util.h"

#include <glib-unix.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

#define TIMEOUT_MS 30000
#define N_CONCURRENT 100

/* ---- helpers ------------------------------------------------------------- */

static char *
declare_queue (CarehareConnection *conn,
               const char         *name)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  char *queue;

  carehare_connection_queue_declare_async (conn, name, CAREHARE_QUEUE_FLAGS_AUTO_DELETE, NULL,
                                           NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  return queue;
}

static CarehareConsumer *
start_consumer (CarehareConnection *conn,
                const char         *queue)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConsumer *consumer;

  carehare_connection_acking_consumer_async (conn, queue, 0, 10, NULL,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_no_error (error);
  return consumer;
}

static CarehareDelivery *
next_delivery (CarehareConsumer *consumer)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareDelivery *delivery;

  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
  g_assert_no_error (error);
  return delivery;
}

static void
close_connection (CarehareConnection *conn)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_assert_no_error (error);
}

static GBytes *
text_bytes (const char *text)
{
  return g_bytes_new (text, strlen (text));
}

static char *
body_text (CarehareDelivery *delivery)
{
  gsize size;
  const char *data = g_bytes_get_data (carehare_delivery_get_body (delivery), &size);

  return g_strndup (data, size);
}

/* Answers @request (a delivery of the responder) with "reply to BODY",
 * to its reply_to with its correlation id, and acks it. */
static void
reply_to (CarehareConnection *conn,
          CarehareConsumer   *consumer,
          CarehareDelivery   *request)
{
  CarehareProperties *props = carehare_delivery_get_properties (request);
  g_autoptr(CarehareProperties) reply_props = carehare_properties_new ();
  g_autofree char *text = body_text (request);
  g_autofree char *reply = g_strdup_printf ("reply to %s", text);
  g_autoptr(GBytes) body = text_bytes (reply);

  g_assert_true (g_str_has_prefix (carehare_properties_get_reply_to (props),
                                   "amq.rabbitmq.reply-to."));
  carehare_properties_set_correlation_id (reply_props,
                                          carehare_properties_get_correlation_id (props));
  carehare_connection_publish_async (conn, "", carehare_properties_get_reply_to (props), body,
                                     reply_props, CAREHARE_PUBLISH_FLAGS_NONE, NULL, NULL, NULL);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (request));
}

/* The responder: answers every request as it comes. */
typedef struct {
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  char *queue;
  guint n_answered;
  gboolean waiting;        /* a next_delivery is pending */
  gboolean stopped;
} Responder;

static void responder_next (Responder *r);

static void
responder_delivery_cb (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  Responder *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) request = NULL;

  r->waiting = FALSE;
  request = carehare_consumer_next_delivery_finish (CAREHARE_CONSUMER (source), result, &error);
  if (request == NULL)
    {
      /* Closed by responder_stop(). */
      g_assert_true (r->stopped);
      return;
    }
  reply_to (r->conn, r->consumer, request);
  r->n_answered++;
  responder_next (r);
}

static void
responder_next (Responder *r)
{
  r->waiting = TRUE;
  carehare_consumer_next_delivery_async (r->consumer, NULL, responder_delivery_cb, r);
}

static Responder *
responder_start (void)
{
  Responder *r = g_new0 (Responder, 1);
  g_autofree char *name = carehare_test_unique_name ("call-server");

  r->conn = carehare_test_connect (carehare_test_amqp_uri ());
  r->queue = declare_queue (r->conn, name);
  r->consumer = start_consumer (r->conn, r->queue);
  responder_next (r);
  return r;
}

static void
responder_stop (Responder *r)
{
  r->stopped = TRUE;
  close_connection (r->conn);
  /* The pending next_delivery completes with the close. */
  while (r->waiting)
    g_main_context_iteration (NULL, TRUE);
  g_object_unref (r->consumer);
  g_object_unref (r->conn);
  g_free (r->queue);
  g_free (r);
}

static CarehareDelivery *
call (CarehareConnection    *conn,
      const char            *exchange,
      const char            *routing_key,
      const char            *text,
      CareharePublishFlags   flags,
      GError               **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GBytes) body = text_bytes (text);

  carehare_connection_call_async (conn, exchange, routing_key, body, NULL, flags, NULL,
                                  carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_call_finish (conn, result, error);
}

static void
assert_reply (CarehareDelivery *reply,
              const char       *request)
{
  g_autofree char *text = NULL;
  g_autofree char *expected = g_strdup_printf ("reply to %s", request);

  g_assert_nonnull (reply);
  text = body_text (reply);
  g_assert_cmpstr (text, ==, expected);
  /* Direct reply-to delivers without acks: nothing to acknowledge. */
  g_assert_cmpuint (carehare_delivery_get_delivery_tag (reply), ==, 0);
}

/* ---- tests --------------------------------------------------------------- */

/* N_CONCURRENT calls in flight at once to @queue, "request 0" to
 * "request 99"; the even ones choose their correlation id ("mine-N", kept
 * in @ids), the odd ones get a fresh one. */
static void
start_calls (CarehareConnection    *conn,
             const char            *queue,
             CareharePublishFlags   flags,
             GAsyncResult         **results,
             char                 **ids)
{
  for (guint i = 0; i < N_CONCURRENT; i++)
    {
      g_autofree char *text = g_strdup_printf ("request %u", i);
      g_autoptr(GBytes) body = text_bytes (text);
      g_autoptr(CarehareProperties) props = NULL;

      if (i % 2 == 0)
        {
          props = carehare_properties_new ();
          ids[i] = g_strdup_printf ("mine-%u", i);
          carehare_properties_set_correlation_id (props, ids[i]);
        }
      carehare_connection_call_async (conn, "", queue, body, props, flags, NULL,
                                      carehare_test_store_result, &results[i]);
    }
}

/* Each call started by start_calls() got the reply to its own request
 * (@expected_prefix followed by what follows "request " in it: "reply to
 * request 7" or "REQUEST 7"), with its own correlation id; no two share
 * one. Frees @results and @ids. */
static void
assert_call_replies (CarehareConnection  *conn,
                     const char          *expected_prefix,
                     GAsyncResult       **results,
                     char               **ids)
{
  g_autoptr(GHashTable) seen_ids = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; i < N_CONCURRENT; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) reply = NULL;
      g_autofree char *expected = g_strdup_printf ("%s %u", expected_prefix, i);
      g_autofree char *text = NULL;
      const char *id;

      carehare_test_wait_for_result (&results[i], TIMEOUT_MS);
      reply = carehare_connection_call_finish (conn, results[i], &error);
      g_assert_no_error (error);
      g_assert_nonnull (reply);
      text = body_text (reply);
      g_assert_cmpstr (text, ==, expected);
      /* Direct reply-to delivers without acks: nothing to acknowledge. */
      g_assert_cmpuint (carehare_delivery_get_delivery_tag (reply), ==, 0);
      id = carehare_properties_get_correlation_id (carehare_delivery_get_properties (reply));
      g_assert_nonnull (id);
      if (ids[i] != NULL)
        g_assert_cmpstr (id, ==, ids[i]);
      g_assert_true (g_hash_table_add (seen_ids, g_strdup (id)));
      g_clear_object (&results[i]);
      g_clear_pointer (&ids[i], g_free);
    }
}

/* 100 calls in flight at once, each with a body of its own: each gets the
 * reply to its own request, with its correlation id. */
static void
test_call_concurrent (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  Responder *r = responder_start ();
  GAsyncResult *results[N_CONCURRENT] = { NULL };
  char *ids[N_CONCURRENT] = { NULL };

  start_calls (conn, r->queue, CAREHARE_PUBLISH_FLAGS_NONE, results, ids);
  assert_call_replies (conn, "reply to request", results, ids);
  g_assert_cmpuint (r->n_answered, ==, N_CONCURRENT);

  responder_stop (r);
  close_connection (conn);
}

/* examples/rpc-server, run as a program of its own: its standard output
 * and error, one pipe, read in lines until it ends. Not a GSubprocess:
 * its child watch starts GLib's worker thread, whose thread-local memory
 * LeakSanitizer (use_tls=0, see lsan.supp) would report; the pipe is read
 * in this thread's main context and the server reaped with waitpid() once
 * it closed it. */
typedef struct {
  GPid pid;
  int out;                  /* the read end of the pipe */
  guint watch;
  GString *partial;         /* the last line, until its newline */
  GPtrArray *lines;         /* every line it printed */
  gboolean eof;
} ExampleServer;

static gboolean
example_server_read_cb (int          fd,
                        GIOCondition condition,
                        gpointer     user_data)
{
  ExampleServer *s = user_data;
  char chunk[4096];
  gssize n = read (fd, chunk, sizeof chunk);
  const char *newline;

  if (n < 0 && errno == EINTR)
    return G_SOURCE_CONTINUE;
  g_assert_cmpint (n, >=, 0);
  g_string_append_len (s->partial, chunk, n);
  while ((newline = memchr (s->partial->str, '\n', s->partial->len)) != NULL)
    {
      gsize len = newline - s->partial->str;

      g_ptr_array_add (s->lines, g_strndup (s->partial->str, len));
      g_string_erase (s->partial, 0, len + 1);
    }
  if (n > 0)
    return G_SOURCE_CONTINUE;
  if (s->partial->len > 0)
    g_ptr_array_add (s->lines, g_strdup (s->partial->str));
  s->eof = TRUE;
  s->watch = 0;
  return G_SOURCE_REMOVE;
}

/* In the server, before exec: a test that aborts does not leave it
 * consuming (SIGTERM makes it close and exit). */
static void
example_server_child_setup (gpointer user_data)
{
#ifdef __linux__
  prctl (PR_SET_PDEATHSIG, SIGTERM);
#endif
}

/* Whether the server printed a line starting with @prefix. */
static gboolean
example_server_said (ExampleServer *s,
                     const char    *prefix)
{
  for (guint i = 0; i < s->lines->len; i++)
    if (g_str_has_prefix (s->lines->pdata[i], prefix))
      return TRUE;
  return FALSE;
}

/* Starts `rpc-server URI QUEUE --count N` and waits until it consumes. */
static ExampleServer *
example_server_start (const char *queue,
                      guint       count)
{
  ExampleServer *s = g_new0 (ExampleServer, 1);
  g_autofree char *path = g_test_build_filename (G_TEST_BUILT, "..", "examples", "rpc-server",
                                                 NULL);
  g_autofree char *count_text = g_strdup_printf ("%u", count);
  const char *argv[] = { path, carehare_test_amqp_uri (), queue, "--count", count_text, NULL };
  g_autoptr(GError) error = NULL;
  gboolean timed_out = FALSE;
  int fds[2];
  guint id;

  g_assert_true (g_unix_open_pipe (fds, FD_CLOEXEC, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_async_with_pipes_and_fds (NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                                   example_server_child_setup, NULL, -1, fds[1], fds[1], NULL, NULL,
                                                   0, &s->pid, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  close (fds[1]);
  s->out = fds[0];
  s->partial = g_string_new (NULL);
  s->lines = g_ptr_array_new_with_free_func (g_free);
  s->watch = g_unix_fd_add (s->out, G_IO_IN | G_IO_HUP | G_IO_ERR, example_server_read_cb, s);

  id = g_timeout_add (TIMEOUT_MS, carehare_test_set_flag, &timed_out);
  while (!example_server_said (s, "waiting for requests") && !s->eof && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  if (!example_server_said (s, "waiting for requests"))
    g_error ("rpc-server did not start consuming %s", queue);
  return s;
}

/* Waits until the server ended by itself (its --count answered) and
 * checks it succeeded. */
static void
example_server_wait (ExampleServer *s)
{
  g_autoptr(GError) error = NULL;
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (TIMEOUT_MS, carehare_test_set_flag, &timed_out);
  int status;

  while (!s->eof && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  if (!s->eof)
    g_error ("rpc-server did not end after its --count requests");
  g_assert_cmpint (waitpid (s->pid, &status, 0), ==, s->pid);
  g_assert_true (g_spawn_check_wait_status (status, &error));
  g_assert_no_error (error);
}

static void
example_server_free (ExampleServer *s)
{
  g_clear_handle_id (&s->watch, g_source_remove);
  close (s->out);
  g_string_free (s->partial, TRUE);
  g_spawn_close_pid (s->pid);
  g_ptr_array_unref (s->lines);
  g_free (s);
}

/* 100 calls in flight at once against examples/rpc-server (which answers
 * each request in upper case, to its reply_to, with its correlation id):
 * each call gets the answer to its own request, with its own correlation
 * id, and the server answered each request once. */
static void
test_call_rpc_server_example (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = carehare_test_unique_name ("rpc-server-example");
  g_autoptr(GAsyncResult) deleted = NULL;
  g_autoptr(GError) delete_error = NULL;
  GAsyncResult *results[N_CONCURRENT] = { NULL };
  char *ids[N_CONCURRENT] = { NULL };
  ExampleServer *server = example_server_start (queue, N_CONCURRENT);
  guint n_requests = 0;

  start_calls (conn, queue, CAREHARE_PUBLISH_FLAGS_MANDATORY, results, ids);
  assert_call_replies (conn, "REQUEST", results, ids);

  example_server_wait (server);
  for (guint i = 0; i < server->lines->len; i++)
    if (g_str_has_prefix (server->lines->pdata[i], "request "))
      n_requests++;
  g_assert_cmpuint (n_requests, ==, N_CONCURRENT);
  /* It saw the correlation ids the caller chose. */
  for (guint i = 0; i < N_CONCURRENT; i += 2)
    {
      g_autofree char *line = g_strdup_printf ("request mine-%u: request %u", i, i);

      g_assert_true (example_server_said (server, line));
    }
  /* Every reply reached its caller: the server has no complaint. */
  g_assert_false (example_server_said (server, "reply dropped"));

  /* rpc-server declares its queue to outlive it. */
  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &deleted);
  carehare_test_wait_for_result (&deleted, TIMEOUT_MS);
  carehare_connection_queue_delete_finish (conn, deleted, NULL, &delete_error);
  g_assert_no_error (delete_error);

  example_server_free (server);
  close_connection (conn);
}

/* MANDATORY to a routing key no queue is bound with: UNROUTABLE (RabbitMQ
 * rewrites the request's reply_to, and the return is still matched). The
 * next call works. */
static void
test_call_unroutable (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *nowhere = carehare_test_unique_name ("no-server");
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(CarehareDelivery) reply2 = NULL;
  Responder *r;

  reply = call (conn, "", nowhere, "anybody?", CAREHARE_PUBLISH_FLAGS_MANDATORY, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_null (reply);
  g_assert_true (strstr (error->message, "NO_ROUTE") != NULL);

  r = responder_start ();
  reply2 = call (conn, "", r->queue, "hello", CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL);
  assert_reply (reply2, "hello");
  responder_stop (r);
  close_connection (conn);
}

/* A call cancelled after its request reached the server completes
 * CANCELLED; the reply that comes later is dropped, and the next call gets
 * its own. */
static void
test_call_cancelled_late_reply (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareConnection) server = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("call-cancel");
  g_autofree char *queue = declare_queue (server, name);
  g_autoptr(CarehareConsumer) consumer = start_consumer (server, queue);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GAsyncResult) result2 = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = text_bytes ("first");
  g_autoptr(GError) error2 = NULL;
  g_autoptr(GBytes) body2 = text_bytes ("second");
  g_autoptr(CarehareDelivery) request = NULL;
  g_autoptr(CarehareDelivery) request2 = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(CarehareDelivery) reply2 = NULL;

  carehare_connection_call_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                  cancellable, carehare_test_store_result, &result);
  /* The server has the request: the call waits for the reply. */
  request = next_delivery (consumer);
  g_cancellable_cancel (cancellable);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  reply = carehare_connection_call_finish (conn, result, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_null (reply);

  /* Late: the reply to the cancelled call, then the next call's. */
  reply_to (server, consumer, request);
  carehare_connection_call_async (conn, "", queue, body2, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                  NULL, carehare_test_store_result, &result2);
  request2 = next_delivery (consumer);
  reply_to (server, consumer, request2);
  carehare_test_wait_for_result (&result2, TIMEOUT_MS);
  reply2 = carehare_connection_call_finish (conn, result2, &error2);
  g_assert_no_error (error2);
  assert_reply (reply2, "second");

  close_connection (server);
  close_connection (conn);
}

/* A call to a missing exchange: the broker closes the call channel
 * (CHANNEL_CLOSED_BY_SERVER 404), and every call pending on it fails the
 * same way, here one whose request a queue took and nobody answers; the
 * next call opens a new channel and works. */
static void
test_call_missing_exchange (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *missing = carehare_test_unique_name ("no-such-exchange");
  g_autofree char *silent_name = carehare_test_unique_name ("call-unanswered");
  g_autofree char *silent = declare_queue (conn, silent_name);
  g_autoptr(GBytes) waiting_body = text_bytes ("waiting");
  g_autoptr(GAsyncResult) waiting_result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) waiting_error = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(CarehareDelivery) waiting_reply = NULL;
  g_autoptr(CarehareDelivery) reply2 = NULL;
  Responder *r = responder_start ();

  /* Confirmed (the queue took it), then waits for a reply. */
  carehare_connection_call_async (conn, "", silent, waiting_body, NULL,
                                  CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                  carehare_test_store_result, &waiting_result);
  reply = call (conn, missing, "rk", "lost", CAREHARE_PUBLISH_FLAGS_NONE, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 404);
  g_assert_null (reply);

  carehare_test_wait_for_result (&waiting_result, TIMEOUT_MS);
  waiting_reply = carehare_connection_call_finish (conn, waiting_result, &waiting_error);
  g_assert_error (waiting_error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (waiting_error), ==, 404);
  g_assert_null (waiting_reply);

  reply2 = call (conn, "", r->queue, "found", CAREHARE_PUBLISH_FLAGS_NONE, NULL);
  assert_reply (reply2, "found");
  responder_stop (r);
  close_connection (conn);
}

/* The connection closes under pending calls: they fail
 * CONNECTION_CLOSED, and so does a call made after. */
static void
test_call_connection_closed (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("call-silent");
  g_autofree char *queue = declare_queue (conn, name);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) error2 = NULL;
  g_autoptr(GBytes) body = text_bytes ("nobody answers");
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(CarehareDelivery) reply2 = NULL;

  /* Nobody consumes the queue: the call waits. */
  carehare_connection_call_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                  NULL, carehare_test_store_result, &result);
  close_connection (conn);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  reply = carehare_connection_call_finish (conn, result, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_null (reply);

  reply2 = call (conn, "", queue, "after", CAREHARE_PUBLISH_FLAGS_NONE, &error2);
  g_assert_error (error2, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error2));
  g_assert_null (reply2);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/call/concurrent", test_call_concurrent);
  g_test_add_func ("/call/rpc-server-example", test_call_rpc_server_example);
  g_test_add_func ("/call/unroutable", test_call_unroutable);
  g_test_add_func ("/call/cancelled-late-reply", test_call_cancelled_late_reply);
  g_test_add_func ("/call/missing-exchange", test_call_missing_exchange);
  g_test_add_func ("/call/connection-closed", test_call_connection_closed);

  return g_test_run ();
}
