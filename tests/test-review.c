/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A review's attempts to break calls (call_async over direct reply-to),
 * consumers with a chosen tag, batch settles and the connection's
 * callback paths the way programs do: cancel at once, reuse correlation
 * ids and consumer tags, close or drop the connection inside callbacks,
 * large bodies, few channels, a stalled main loop, a connection lost
 * while the call channel opens. Against the private broker, and (the
 * /review/scripted cases) a scripted fake broker on a loopback socket.
 */
#include "carehare-test-util.h"

#include "carehare-wire.h"
#include "loopback-server.h"

#include <string.h>
#include <sys/socket.h>

#define TIMEOUT_MS 30000

/* ---- helpers ------------------------------------------------------------- */

/* The thread-default main context (the responder runs on one of its own,
 * where the test util's helpers, which iterate the global default one,
 * would hang). */
static GMainContext *
here (void)
{
  GMainContext *context = g_main_context_get_thread_default ();

  return context != NULL ? context : g_main_context_default ();
}

static gboolean
set_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates the thread-default context until *@result is set. */
static void
wait_result (GAsyncResult **result,
             guint          timeout_ms)
{
  gboolean timed_out = FALSE;
  g_autoptr(GSource) timeout = g_timeout_source_new (timeout_ms);

  g_source_set_callback (timeout, set_flag_cb, &timed_out, NULL);
  g_source_attach (timeout, here ());
  while (*result == NULL && !timed_out)
    g_main_context_iteration (here (), TRUE);
  g_source_destroy (timeout);
  if (*result == NULL)
    g_error ("no result after %u ms: the operation hangs", timeout_ms);
}

static CarehareConnection *
connect_here (const char *uri)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn;

  carehare_connection_new_async (uri, NULL, carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  conn = carehare_connection_new_finish (result, &error);
  g_assert_no_error (error);
  return conn;
}

/* Iterates the thread-default context until *@n reaches @target. */
static void
wait_count (guint *n,
            guint  target)
{
  gint64 deadline = g_get_monotonic_time () + TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;

  while (*n < target)
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("only %u of %u completions after %u ms: an operation hangs", *n, target,
                 TIMEOUT_MS);
      g_main_context_iteration (here (), FALSE);
      if (*n < target)
        g_usleep (1000);
    }
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

static char *
declare_queue (CarehareConnection *conn,
               const char         *name,
               CarehareQueueFlags  flags)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  char *queue;

  carehare_connection_queue_declare_async (conn, name, flags, NULL, NULL,
                                           carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  return queue;
}

static void
delete_queue (CarehareConnection *conn,
              const char         *name)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_queue_delete_async (conn, name, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  carehare_connection_queue_delete_finish (conn, result, NULL, &error);
  g_assert_no_error (error);
}

static CarehareConsumer *
consume_full (CarehareConnection  *conn,
              const char          *queue,
              const char          *tag,
              GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_acking_consumer_full_async (conn, queue, 0, 10, CAREHARE_CONSUME_FLAGS_NONE,
                                                  tag, NULL, NULL, carehare_test_store_result,
                                                  &result);
  wait_result (&result, TIMEOUT_MS);
  return carehare_connection_acking_consumer_full_finish (conn, result, error);
}

static CarehareConsumer *
consume (CarehareConnection *conn,
         const char         *queue)
{
  g_autoptr(GError) error = NULL;
  CarehareConsumer *consumer = consume_full (conn, queue, NULL, &error);

  g_assert_no_error (error);
  return consumer;
}

static CarehareDelivery *
next_delivery (CarehareConsumer  *consumer,
               GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  return carehare_consumer_next_delivery_finish (consumer, result, error);
}

static CarehareDelivery *
next_delivery_ok (CarehareConsumer *consumer)
{
  g_autoptr(GError) error = NULL;
  CarehareDelivery *delivery = next_delivery (consumer, &error);

  g_assert_no_error (error);
  return delivery;
}

static void
publish (CarehareConnection *conn,
         const char         *exchange,
         const char         *routing_key,
         GBytes             *body,
         CarehareProperties *props)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_publish_async (conn, exchange, routing_key, body, props,
                                     CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                     carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (conn, result, &error));
  g_assert_no_error (error);
}

static void
close_connection (CarehareConnection *conn)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_assert_no_error (error);
}

static void
close_consumer (CarehareConsumer *consumer)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &result);
  wait_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (consumer, result, NULL));
}

/* Replies to @request with @body (its correlation id, to its reply_to),
 * from @conn, and acks it. */
static void
reply_with (CarehareConnection *conn,
            CarehareConsumer   *consumer,
            CarehareDelivery   *request,
            GBytes             *body)
{
  CarehareProperties *props = carehare_delivery_get_properties (request);
  g_autoptr(CarehareProperties) reply_props = carehare_properties_new ();

  carehare_properties_set_correlation_id (reply_props,
                                          carehare_properties_get_correlation_id (props));
  carehare_connection_publish_async (conn, "", carehare_properties_get_reply_to (props), body,
                                     reply_props, CAREHARE_PUBLISH_FLAGS_NONE, NULL, NULL, NULL);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (request));
}

/* "reply to BODY" */
static void
reply_to (CarehareConnection *conn,
          CarehareConsumer   *consumer,
          CarehareDelivery   *request)
{
  g_autofree char *text = body_text (request);
  g_autofree char *reply = g_strdup_printf ("reply to %s", text);
  g_autoptr(GBytes) body = text_bytes (reply);

  reply_with (conn, consumer, request, body);
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
}

/* A responder on a thread and main context of its own, so that it answers
 * while the test's main loop is stalled: "reply to BODY", or with @echo
 * the request's body itself. */
typedef struct {
  GThread *thread;
  gboolean echo;
  char *queue;
  GCancellable *stop;
  gint ready;       /* atomic */
  gint n_answered;  /* atomic */
} Responder;

typedef struct {
  Responder *r;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  gboolean waiting;
  gboolean stopped;
} ResponderLoop;

static void responder_next (ResponderLoop *loop);

static void
responder_delivery_cb (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  ResponderLoop *loop = user_data;
  g_autoptr(CarehareDelivery) request = NULL;
  g_autoptr(GError) error = NULL;

  loop->waiting = FALSE;
  request = carehare_consumer_next_delivery_finish (CAREHARE_CONSUMER (source), result, &error);
  if (request == NULL)
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      loop->stopped = TRUE;
      return;
    }
  if (loop->r->echo)
    reply_with (loop->conn, loop->consumer, request, carehare_delivery_get_body (request));
  else
    reply_to (loop->conn, loop->consumer, request);
  g_atomic_int_inc (&loop->r->n_answered);
  responder_next (loop);
}

static void
responder_next (ResponderLoop *loop)
{
  loop->waiting = TRUE;
  carehare_consumer_next_delivery_async (loop->consumer, loop->r->stop, responder_delivery_cb,
                                         loop);
}

static gpointer
responder_thread (gpointer data)
{
  Responder *r = data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autofree char *name = carehare_test_unique_name ("review-server");
  ResponderLoop loop = { r, NULL, NULL, FALSE, FALSE };

  g_main_context_push_thread_default (context);
  loop.conn = connect_here (carehare_test_amqp_uri ());
  r->queue = declare_queue (loop.conn, name, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  loop.consumer = consume (loop.conn, r->queue);
  responder_next (&loop);
  g_atomic_int_set (&r->ready, TRUE);
  while (!loop.stopped)
    g_main_context_iteration (context, TRUE);
  /* The last replies go out before the close. */
  close_connection (loop.conn);
  g_object_unref (loop.consumer);
  g_object_unref (loop.conn);
  while (g_main_context_iteration (context, FALSE))
    ;
  g_main_context_pop_thread_default (context);
  return NULL;
}

static Responder *
responder_start (gboolean echo)
{
  Responder *r = g_new0 (Responder, 1);

  r->echo = echo;
  r->stop = g_cancellable_new ();
  r->thread = g_thread_new ("responder", responder_thread, r);
  while (!g_atomic_int_get (&r->ready))
    g_usleep (1000);
  return r;
}

static void
responder_stop (Responder *r)
{
  g_cancellable_cancel (r->stop);
  g_thread_join (r->thread);
  g_object_unref (r->stop);
  g_free (r->queue);
  g_free (r);
}

static void
start_call (CarehareConnection  *conn,
            const char          *routing_key,
            GBytes              *body,
            const char          *correlation_id,
            GCancellable        *cancellable,
            GAsyncResult       **result)
{
  g_autoptr(CarehareProperties) props = NULL;

  if (correlation_id != NULL)
    {
      props = carehare_properties_new ();
      carehare_properties_set_correlation_id (props, correlation_id);
    }
  carehare_connection_call_async (conn, "", routing_key, body, props,
                                  CAREHARE_PUBLISH_FLAGS_NONE, cancellable,
                                  carehare_test_store_result, result);
}

static CarehareDelivery *
call_text (CarehareConnection  *conn,
           const char          *routing_key,
           const char          *text,
           GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GBytes) body = text_bytes (text);

  start_call (conn, routing_key, body, NULL, NULL, &result);
  wait_result (&result, TIMEOUT_MS);
  return carehare_connection_call_finish (conn, result, error);
}

/* Waits until @object (a weak pointer's target) was finalized. */
static void
wait_finalized (gpointer *weak)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  while (*weak != NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE);
  g_assert_null (*weak);
}

/* ---- calls --------------------------------------------------------------- */

/* Calls cancelled right after call_async (request in the output or
 * already written) and before it (a cancellable already cancelled): each
 * completes CANCELLED exactly once; the replies that still come are
 * dropped; a call made after gets its own reply. */
static void
test_call_cancel_immediately (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  Responder *r = responder_start (FALSE);
  GAsyncResult *results[40] = { NULL };
  g_autoptr(CarehareDelivery) after = NULL;
  g_autoptr(GError) after_error = NULL;
  guint n_cancelled = 0;

  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GCancellable) cancellable = g_cancellable_new ();
      g_autofree char *text = g_strdup_printf ("cancelled %u", i);
      g_autoptr(GBytes) body = text_bytes (text);

      if (i % 4 == 0)
        g_cancellable_cancel (cancellable);
      start_call (conn, r->queue, body, NULL, cancellable, &results[i]);
      g_cancellable_cancel (cancellable);
    }
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) reply = NULL;

      wait_result (&results[i], TIMEOUT_MS);
      reply = carehare_connection_call_finish (conn, results[i], &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_assert_null (reply);
      n_cancelled++;
      g_clear_object (&results[i]);
    }
  g_assert_cmpuint (n_cancelled, ==, G_N_ELEMENTS (results));

  after = call_text (conn, r->queue, "after", &after_error);
  g_assert_no_error (after_error);
  assert_reply (after, "after");

  responder_stop (r);
  close_connection (conn);
}

/* A program's correlation id, reused for its next call once the first
 * call was cancelled after its request reached the server: the late reply
 * of the cancelled call must not complete the new call. */
static void
test_call_correlation_id_reused_after_cancel (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  g_autoptr(CarehareConnection) server = connect_here (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("review-reuse-id");
  g_autofree char *queue = declare_queue (server, name, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  g_autoptr(CarehareConsumer) consumer = consume (server, queue);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GBytes) body_a = text_bytes ("A");
  g_autoptr(GBytes) body_b = text_bytes ("B");
  g_autoptr(GAsyncResult) result_a = NULL;
  g_autoptr(GAsyncResult) result_b = NULL;
  g_autoptr(GAsyncResult) delivered = NULL;
  g_autoptr(GError) error_a = NULL;
  g_autoptr(GError) error_b = NULL;
  g_autoptr(CarehareDelivery) request_a = NULL;
  g_autoptr(CarehareDelivery) request_b = NULL;
  g_autoptr(CarehareDelivery) reply_a = NULL;
  g_autoptr(CarehareDelivery) reply_b = NULL;
  gint64 deadline;

  start_call (conn, queue, body_a, "order-42", cancellable, &result_a);
  request_a = next_delivery_ok (consumer);
  g_cancellable_cancel (cancellable);
  wait_result (&result_a, TIMEOUT_MS);
  reply_a = carehare_connection_call_finish (conn, result_a, &error_a);
  g_assert_error (error_a, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  /* Same id again while the cancelled call's reply may still come: refused,
   * or that late reply would complete the new call. */
  start_call (conn, queue, body_b, "order-42", NULL, &result_b);
  wait_result (&result_b, TIMEOUT_MS);
  reply_b = carehare_connection_call_finish (conn, result_b, &error_b);
  g_assert_null (reply_b);
  g_assert_error (error_b, G_IO_ERROR, G_IO_ERROR_EXISTS);
  g_assert_nonnull (strstr (error_b->message, "order-42"));
  g_clear_error (&error_b);
  g_clear_object (&result_b);

  /* The server answers the old request late: dropped, and the id is free
   * once that reply has come. It comes through the other connection, in no
   * order with anything this one can wait for: until it has come, B is
   * refused EXISTS (as above) and made again. */
  reply_to (server, consumer, request_a);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &delivered);
  deadline = g_get_monotonic_time () + TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  while (delivered == NULL && reply_b == NULL)
    {
      g_clear_error (&error_b);
      g_clear_object (&result_b);
      start_call (conn, queue, body_b, "order-42", NULL, &result_b);
      while (result_b == NULL && delivered == NULL)
        {
          if (g_get_monotonic_time () > deadline)
            g_error ("call B neither reached the server nor was refused in %u ms", TIMEOUT_MS);
          g_main_context_iteration (here (), FALSE);
          g_usleep (1000);
        }
      /* Completed before the server had it: refused, or (a bug) completed
       * by the late reply, reported below. */
      if (result_b != NULL)
        {
          reply_b = carehare_connection_call_finish (conn, result_b, &error_b);
          if (reply_b == NULL)
            g_assert_error (error_b, G_IO_ERROR, G_IO_ERROR_EXISTS);
        }
    }
  if (reply_b == NULL)
    {
      g_autoptr(GError) error = NULL;

      request_b = carehare_consumer_next_delivery_finish (consumer, delivered, &error);
      g_assert_no_error (error);
      reply_to (server, consumer, request_b);
      wait_result (&result_b, TIMEOUT_MS);
      reply_b = carehare_connection_call_finish (conn, result_b, &error_b);
    }
  g_assert_no_error (error_b);
  /* The cancelled call's reply is documented as dropped: B gets its own.
   * (Not an abort: the suite goes on to its other tests.) */
  {
    g_autofree char *text = body_text (reply_b);

    if (g_strcmp0 (text, "reply to B") != 0)
      g_test_fail_printf ("call B got '%s', the late reply of the cancelled call A with the "
                          "same correlation id", text);
  }

  close_connection (server);
  close_connection (conn);
}

/* Twenty calls at once with one caller-chosen correlation id: the first
 * is sent, the others fail EXISTS at once; once it completed, the id can
 * be used again. */
static void
test_call_same_correlation_id (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  Responder *r = responder_start (FALSE);
  GAsyncResult *results[20] = { NULL };
  guint n_ok = 0, n_exists = 0;

  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autofree char *text = g_strdup_printf ("dup %u", i);
      g_autoptr(GBytes) body = text_bytes (text);

      start_call (conn, r->queue, body, "dup-id", NULL, &results[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) reply = NULL;

      wait_result (&results[i], TIMEOUT_MS);
      reply = carehare_connection_call_finish (conn, results[i], &error);
      if (reply != NULL)
        {
          assert_reply (reply, "dup 0");
          g_assert_cmpuint (i, ==, 0);
          n_ok++;
        }
      else
        {
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS);
          n_exists++;
        }
      g_clear_object (&results[i]);
    }
  g_assert_cmpuint (n_ok, ==, 1);
  g_assert_cmpuint (n_exists, ==, G_N_ELEMENTS (results) - 1);

  {
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GBytes) body = text_bytes ("again");
    g_autoptr(GError) error = NULL;
    g_autoptr(CarehareDelivery) reply = NULL;

    start_call (conn, r->queue, body, "dup-id", NULL, &result);
    wait_result (&result, TIMEOUT_MS);
    reply = carehare_connection_call_finish (conn, result, &error);
    g_assert_no_error (error);
    assert_reply (reply, "again");
  }

  responder_stop (r);
  close_connection (conn);
}

typedef struct {
  CarehareConnection *conn;     /* the program's reference, dropped in the first callback */
  guint n_done;
  guint n_closed_errors;
  gboolean replied;
  GAsyncResult *inner;          /* the call made inside the callback */
} CloseInCallback;

static void
silent_call_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  CloseInCallback *c = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;

  reply = carehare_connection_call_finish (CAREHARE_CONNECTION (source), result, &error);
  g_assert_null (reply);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  c->n_closed_errors++;
  c->n_done++;
}

static void
answered_call_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  CloseInCallback *c = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(GBytes) body = text_bytes ("inside");

  reply = carehare_connection_call_finish (CAREHARE_CONNECTION (source), result, &error);
  g_assert_no_error (error);
  assert_reply (reply, "first");
  c->replied = TRUE;
  c->n_done++;

  /* Close, call again, and drop the program's last reference, all inside
   * the callback of a call whose siblings are still pending. */
  carehare_connection_close_async (c->conn, NULL, NULL, NULL);
  carehare_connection_call_async (c->conn, "", "anywhere", body, NULL,
                                  CAREHARE_PUBLISH_FLAGS_NONE, NULL,
                                  carehare_test_store_result, &c->inner);
  g_clear_object (&c->conn);
}

static void
test_call_close_in_callback (void)
{
  CloseInCallback c = { 0 };
  Responder *r = responder_start (FALSE);
  g_autofree char *name = carehare_test_unique_name ("review-silent");
  g_autofree char *silent = NULL;
  g_autoptr(GBytes) first = text_bytes ("first");
  g_autoptr(GError) inner_error = NULL;
  g_autoptr(CarehareDelivery) inner_reply = NULL;
  gpointer weak;

  c.conn = connect_here (carehare_test_amqp_uri ());
  weak = c.conn;
  g_object_add_weak_pointer (G_OBJECT (c.conn), &weak);
  silent = declare_queue (c.conn, name, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);

  /* Nobody consumes the silent queue: those calls wait. */
  for (guint i = 0; i < 10; i++)
    {
      g_autoptr(GBytes) body = text_bytes ("nobody");

      carehare_connection_call_async (c.conn, "", silent, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL, silent_call_cb, &c);
    }
  carehare_connection_call_async (c.conn, "", r->queue, first, NULL,
                                  CAREHARE_PUBLISH_FLAGS_NONE, NULL, answered_call_cb, &c);

  wait_result (&c.inner, TIMEOUT_MS);
  inner_reply = carehare_connection_call_finish (CAREHARE_CONNECTION (g_task_get_source_object (G_TASK (c.inner))),
                                                 c.inner, &inner_error);
  g_assert_error (inner_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_null (inner_reply);
  wait_count (&c.n_done, 11);
  g_assert_true (c.replied);
  g_assert_cmpuint (c.n_closed_errors, ==, 10);
  g_clear_object (&c.inner);
  /* Nothing else holds the connection. */
  wait_finalized (&weak);

  responder_stop (r);
}

/* 1 MiB request and 1 MiB reply (several frames each, written from the
 * caller's GBytes), a few at once: each reply is its own request echoed. */
static void
test_call_large_bodies (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  Responder *r = responder_start (TRUE);
  GAsyncResult *results[4] = { NULL };
  GBytes *bodies[G_N_ELEMENTS (results)] = { NULL };

  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      gsize size = 1024 * 1024 + i;
      guint8 *data = g_malloc (size);

      for (gsize j = 0; j < size; j++)
        data[j] = (guint8) (j * 31 + i);
      bodies[i] = g_bytes_new_take (data, size);
      start_call (conn, r->queue, bodies[i], NULL, NULL, &results[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) reply = NULL;

      wait_result (&results[i], TIMEOUT_MS);
      reply = carehare_connection_call_finish (conn, results[i], &error);
      g_assert_no_error (error);
      g_assert_true (g_bytes_equal (carehare_delivery_get_body (reply), bodies[i]));
      g_clear_object (&results[i]);
      g_bytes_unref (bodies[i]);
    }
  responder_stop (r);
  close_connection (conn);
}

/* A reply over the connection's max_body_size fails its call with
 * MESSAGE_TOO_LARGE, and the connection and the call channel go on. */
static void
test_call_reply_too_large (void)
{
  g_autofree char *uri = carehare_test_amqp_uri_with ("/?max_body_size=65536");
  g_autoptr(CarehareConnection) conn = connect_here (uri);
  Responder *r = responder_start (TRUE);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) error2 = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(CarehareDelivery) reply2 = NULL;
  guint8 *data = g_malloc0 (1024 * 1024);
  g_autoptr(GBytes) big = g_bytes_new_take (data, 1024 * 1024);
  g_autoptr(GBytes) small = text_bytes ("small");

  start_call (conn, r->queue, big, NULL, NULL, &result);
  wait_result (&result, TIMEOUT_MS);
  reply = carehare_connection_call_finish (conn, result, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE);
  g_assert_null (reply);
  g_clear_object (&result);

  start_call (conn, r->queue, small, NULL, NULL, &result);
  wait_result (&result, TIMEOUT_MS);
  reply2 = carehare_connection_call_finish (conn, result, &error2);
  g_assert_no_error (error2);
  g_assert_true (g_bytes_equal (carehare_delivery_get_body (reply2), small));
  g_assert_false (carehare_connection_get_is_closed (conn));

  responder_stop (r);
  close_connection (conn);
}

/* The main loop stalls while the replies of 200 calls arrive (the
 * responder runs on a thread of its own): once it runs again every call
 * gets its own reply. */
static void
test_call_stalled_loop (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  Responder *r = responder_start (FALSE);
  GAsyncResult *results[200] = { NULL };

  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autofree char *text = g_strdup_printf ("stalled %u", i);
      g_autoptr(GBytes) body = text_bytes (text);

      start_call (conn, r->queue, body, NULL, NULL, &results[i]);
    }
  /* Let the requests go out, then stop reading while the replies come. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  for (guint i = 0; i < 20 && (guint) g_atomic_int_get (&r->n_answered) < G_N_ELEMENTS (results); i++)
    g_usleep (100 * 1000);
  g_usleep (200 * 1000);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) reply = NULL;
      g_autofree char *text = g_strdup_printf ("stalled %u", i);

      wait_result (&results[i], TIMEOUT_MS);
      reply = carehare_connection_call_finish (conn, results[i], &error);
      g_assert_no_error (error);
      assert_reply (reply, text);
      g_clear_object (&results[i]);
    }
  responder_stop (r);
  close_connection (conn);
}

/* ---- channel_max=4: calls, consumers, publishes, declares compete ------- */

typedef struct {
  guint n_ok;
  guint n_no_channel;
  guint n_done;
} Tally;

static void
tally (Tally        *t,
       gboolean      ok,
       const GError *error)
{
  t->n_done++;
  if (ok)
    {
      g_assert_no_error (error);
      t->n_ok++;
      return;
    }
  /* The one acceptable failure: no channel will ever come. */
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "No channel available"));
  t->n_no_channel++;
}

static void
tally_call_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = carehare_connection_call_finish (CAREHARE_CONNECTION (source),
                                                                      result, &error);

  tally (user_data, reply != NULL, error);
}

static void
tally_publish_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  gboolean ok = carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error);

  tally (user_data, ok, error);
}

static void
tally_declare_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *name = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source),
                                                                   result, NULL, NULL, &error);

  tally (user_data, name != NULL, error);
}

typedef struct {
  Tally *t;
  CarehareConsumer *consumer;
} ConsumerSlot;

static void
tally_consumer_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  ConsumerSlot *slot = user_data;
  g_autoptr(GError) error = NULL;

  slot->consumer = carehare_connection_acking_consumer_finish (CAREHARE_CONNECTION (source),
                                                               result, &error);
  tally (slot->t, slot->consumer != NULL, error);
}

static void
test_channel_max_4 (void)
{
  g_autofree char *uri = carehare_test_amqp_uri_with ("/?channel_max=4");
  g_autoptr(CarehareConnection) conn = connect_here (uri);
  Responder *r = responder_start (FALSE);
  g_autofree char *qname1 = carehare_test_unique_name ("review-cm4-a");
  g_autofree char *qname2 = carehare_test_unique_name ("review-cm4-b");
  g_autofree char *qname3 = carehare_test_unique_name ("review-cm4-c");
  g_autofree char *q1 = declare_queue (conn, qname1, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  g_autofree char *q2 = declare_queue (conn, qname2, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  g_autofree char *q3 = declare_queue (conn, qname3, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  ConsumerSlot slots[2] = { { 0 } };
  ConsumerSlot third = { 0 };
  Tally t = { 0 };
  Tally late = { 0 };
  guint n_ops = 0;

  g_assert_cmpuint (carehare_connection_get_channel_max (conn), ==, 4);

  /* Two consumers, 20 calls, 20 publishes, 5 declares, all at once: the
   * consumers and the call channel take three channels for good, the
   * rest share the fourth. None may hang, and none lacks a channel. */
  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    {
      slots[i].t = &t;
      carehare_connection_acking_consumer_async (conn, i == 0 ? q1 : q2, 0, 10, NULL,
                                                 tally_consumer_cb, &slots[i]);
      n_ops++;
    }
  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *text = g_strdup_printf ("cm4 %u", i);
      g_autoptr(GBytes) body = text_bytes (text);
      g_autofree char *declared = carehare_test_unique_name ("review-cm4-tmp");

      carehare_connection_call_async (conn, "", r->queue, body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL, tally_call_cb, &t);
      carehare_connection_publish_async (conn, "", i % 2 ? q1 : q2, body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL, tally_publish_cb, &t);
      n_ops += 2;
      if (i % 4 == 0)
        {
          carehare_connection_queue_declare_async (conn, declared,
                                                   CAREHARE_QUEUE_FLAGS_AUTO_DELETE |
                                                   CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                                   tally_declare_cb, &t);
          n_ops++;
        }
    }
  wait_count (&t.n_done, n_ops);
  g_assert_cmpuint (t.n_no_channel, ==, 0);
  g_assert_cmpuint (t.n_ok, ==, n_ops);

  /* A third consumer: every channel is now held for good, so a publish to
   * another exchange fails at once rather than waiting forever... */
  third.t = &late;
  carehare_connection_acking_consumer_async (conn, q3, 0, 10, NULL, tally_consumer_cb, &third);
  wait_count (&late.n_done, 1);
  g_assert_nonnull (third.consumer);
  {
    g_autoptr(GBytes) body = text_bytes ("starved");

    carehare_connection_publish_async (conn, "amq.direct", "nowhere", body, NULL,
                                       CAREHARE_PUBLISH_FLAGS_NONE, NULL, tally_publish_cb, &late);
    wait_count (&late.n_done, 2);
    g_assert_cmpuint (late.n_no_channel, ==, 1);
  }
  /* ...and once a consumer is closed, its channel serves again. */
  close_consumer (third.consumer);
  {
    g_autoptr(GBytes) body = text_bytes ("fed");

    publish (conn, "amq.direct", "nowhere", body, NULL);
  }
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(CarehareDelivery) reply = call_text (conn, r->queue, "still", &error);

    g_assert_no_error (error);
    assert_reply (reply, "still");
  }

  for (guint i = 0; i < G_N_ELEMENTS (slots); i++)
    g_clear_object (&slots[i].consumer);
  g_clear_object (&third.consumer);
  responder_stop (r);
  close_connection (conn);
}

/* ---- consumers: tags, batch settles, settles after close ----------------- */

/* A consumer the server cancelled (its queue deleted) and that the
 * program saw closed: its tag can be used for a new consumer. @hold: the
 * program holds a delivery of it, not settled yet; @ack: it then acks it
 * before reusing the tag. */
static void
run_tag_reuse_after_server_cancel (gboolean hold,
                                   gboolean ack)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("review-tag-a");
  g_autofree char *name2 = carehare_test_unique_name ("review-tag-b");
  g_autofree char *tag = carehare_test_unique_name ("review-tag");
  g_autofree char *queue = declare_queue (conn, name, CAREHARE_QUEUE_FLAGS_NONE);
  g_autofree char *queue2 = declare_queue (conn, name2, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  g_autoptr(CarehareConsumer) first = NULL;
  g_autoptr(CarehareConsumer) second = NULL;
  g_autoptr(CarehareDelivery) held = NULL;
  g_autoptr(CarehareDelivery) gone = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) error2 = NULL;

  first = consume_full (conn, queue, tag, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (carehare_consumer_get_consumer_tag (first), ==, tag);
  if (hold)
    {
      g_autoptr(GBytes) body = text_bytes ("held");

      publish (conn, "", queue, body, NULL);
      held = next_delivery_ok (first);
    }

  delete_queue (conn, queue);
  gone = next_delivery (first, &error);
  g_assert_null (gone);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_true (carehare_consumer_get_is_closed (first));
  if (ack)
    carehare_consumer_ack (first, carehare_delivery_get_delivery_tag (held));

  second = consume_full (conn, queue2, tag, &error2);
  /* (Not an abort: the suite goes on to its other tests.) */
  if (second == NULL)
    g_test_fail_printf ("the tag of a consumer reported closed cannot be reused: %s",
                        error2->message);
  else
    g_assert_cmpstr (carehare_consumer_get_consumer_tag (second), ==, tag);

  close_connection (conn);
}

static void
test_tag_reuse_after_server_cancel (void)
{
  run_tag_reuse_after_server_cancel (FALSE, FALSE);
}

static void
test_tag_reuse_after_server_cancel_held (void)
{
  run_tag_reuse_after_server_cancel (TRUE, FALSE);
}

static void
test_tag_reuse_after_server_cancel_acked (void)
{
  run_tag_reuse_after_server_cancel (TRUE, TRUE);
}

/* A consumer start cancelled before its Consume-Ok was read completes
 * CANCELLED; the program then retries with the same tag. */
typedef struct {
  CarehareConnection *conn;
  const char *queue;
  const char *tag;
  GAsyncResult *retry;
  gboolean cancelled;
} RetryStart;

static void
cancelled_start_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  RetryStart *rs = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;

  consumer = carehare_connection_acking_consumer_full_finish (rs->conn, result, &error);
  g_assert_null (consumer);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  rs->cancelled = TRUE;
  /* Retry at once, with the same tag. */
  carehare_connection_acking_consumer_full_async (rs->conn, rs->queue, 0, 10,
                                                  CAREHARE_CONSUME_FLAGS_NONE, rs->tag, NULL,
                                                  NULL, carehare_test_store_result, &rs->retry);
}

static void
test_tag_reuse_after_cancelled_start (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("review-retry");
  g_autofree char *tag = carehare_test_unique_name ("review-retry-tag");
  /* Not auto-delete: the cancelled start may have begun consuming, and its
   * end would delete the queue. */
  g_autofree char *queue = declare_queue (conn, name, CAREHARE_QUEUE_FLAGS_EXCLUSIVE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  RetryStart rs = { conn, queue, tag, NULL, FALSE };

  carehare_connection_acking_consumer_full_async (conn, queue, 0, 10, CAREHARE_CONSUME_FLAGS_NONE,
                                                  tag, NULL, cancellable, cancelled_start_cb, &rs);
  g_cancellable_cancel (cancellable);
  wait_result (&rs.retry, TIMEOUT_MS);
  g_assert_true (rs.cancelled);
  consumer = carehare_connection_acking_consumer_full_finish (conn, rs.retry, &error);
  g_clear_object (&rs.retry);
  /* (Not an abort: the suite goes on to its other tests.) */
  if (consumer == NULL)
    g_test_fail_printf ("retrying a cancelled consumer start with its tag: %s", error->message);
  else
    g_assert_cmpstr (carehare_consumer_get_consumer_tag (consumer), ==, tag);
  close_connection (conn);
}

/* ack_up_to/nack_up_to with a tag only another consumer has (tags are per
 * channel: consumer A has 1-2, B has 1-5): nothing reaches the broker for
 * A, whose channel stays open, and A's deliveries are still its to
 * settle. */
static void
test_settle_up_to_foreign_tag (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  g_autofree char *name_a = carehare_test_unique_name ("review-upto-a");
  g_autofree char *name_b = carehare_test_unique_name ("review-upto-b");
  g_autofree char *qa = declare_queue (conn, name_a, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  g_autofree char *qb = declare_queue (conn, name_b, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);
  g_autoptr(CarehareConsumer) a = consume (conn, qa);
  g_autoptr(CarehareConsumer) b = consume (conn, qb);
  g_autoptr(GBytes) body = text_bytes ("x");
  CarehareDelivery *da[2] = { NULL };
  CarehareDelivery *db[5] = { NULL };
  guint64 last_b;

  for (guint i = 0; i < G_N_ELEMENTS (da); i++)
    publish (conn, "", qa, body, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (db); i++)
    publish (conn, "", qb, body, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (da); i++)
    da[i] = next_delivery_ok (a);
  for (guint i = 0; i < G_N_ELEMENTS (db); i++)
    db[i] = next_delivery_ok (b);
  last_b = carehare_delivery_get_delivery_tag (db[4]);
  g_assert_cmpuint (last_b, >, carehare_delivery_get_delivery_tag (da[1]));

  carehare_consumer_ack_up_to (a, last_b);
  carehare_consumer_nack_up_to (a, last_b + 1000, TRUE);
  carehare_consumer_ack (a, last_b);
  /* A round trip: a 406 would have closed A's channel by now. */
  {
    g_autofree char *other = carehare_test_unique_name ("review-upto-rt");
    g_autofree char *q = declare_queue (conn, other, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);

    g_assert_cmpstr (q, ==, other);
  }
  g_assert_false (carehare_consumer_get_is_closed (a));
  g_assert_false (carehare_consumer_get_is_closed (b));

  /* A's own: both acked at once; a message published now reaches it. */
  carehare_consumer_ack_up_to (a, carehare_delivery_get_delivery_tag (da[1]));
  carehare_consumer_ack_up_to (b, 0);
  publish (conn, "", qa, body, NULL);
  {
    g_autoptr(CarehareDelivery) more = next_delivery_ok (a);

    g_assert_false (carehare_delivery_get_redelivered (more));
    carehare_consumer_ack (a, carehare_delivery_get_delivery_tag (more));
  }
  g_assert_false (carehare_consumer_get_is_closed (a));

  for (guint i = 0; i < G_N_ELEMENTS (da); i++)
    g_object_unref (da[i]);
  for (guint i = 0; i < G_N_ELEMENTS (db); i++)
    g_object_unref (db[i]);
  close_connection (conn);
}

/* Settles after the consumer closed, and after the connection closed:
 * dropped quietly (no critical, no crash); the broker redelivers. */
static void
test_settle_after_close (void)
{
  g_autoptr(CarehareConnection) conn = connect_here (carehare_test_amqp_uri ());
  g_autoptr(CarehareConnection) other = connect_here (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("review-settle-closed");
  /* Not auto-delete: it outlives its consumers. */
  g_autofree char *queue = declare_queue (other, name, CAREHARE_QUEUE_FLAGS_NONE);
  g_autoptr(CarehareConsumer) c1 = consume (conn, queue);
  g_autoptr(CarehareConsumer) c2 = NULL;
  g_autoptr(GBytes) body = text_bytes ("again");
  g_autoptr(CarehareDelivery) d1 = NULL;
  g_autoptr(CarehareDelivery) d2 = NULL;
  g_autoptr(CarehareDelivery) d3 = NULL;
  guint64 tag;

  publish (other, "", queue, body, NULL);
  d1 = next_delivery_ok (c1);
  tag = carehare_delivery_get_delivery_tag (d1);
  close_consumer (c1);
  carehare_consumer_ack (c1, tag);
  carehare_consumer_ack_up_to (c1, tag);
  carehare_consumer_nack_up_to (c1, 0, FALSE);

  /* Redelivered to the next consumer: the ack after close went nowhere. */
  c2 = consume (conn, queue);
  d2 = next_delivery_ok (c2);
  g_assert_true (carehare_delivery_get_redelivered (d2));
  close_connection (conn);
  carehare_consumer_ack (c2, carehare_delivery_get_delivery_tag (d2));
  carehare_consumer_nack (c2, carehare_delivery_get_delivery_tag (d2), FALSE);
  carehare_consumer_ack_up_to (c2, 0);
  carehare_consumer_nack_up_to (c2, carehare_delivery_get_delivery_tag (d2), TRUE);
  g_assert_true (carehare_consumer_get_is_closed (c2));

  {
    g_autoptr(CarehareConsumer) c3 = consume (other, queue);

    d3 = next_delivery_ok (c3);
    g_assert_true (carehare_delivery_get_redelivered (d3));
    carehare_consumer_ack (c3, carehare_delivery_get_delivery_tag (d3));
  }
  delete_queue (other, queue);
  close_connection (other);
}


/* ---- re-entering the connection from its callbacks while it ends -------- */

typedef struct {
  CarehareConnection *conn;   /* the program's reference */
  guint n_expected;
  guint n_done;
  guint n_ok;                 /* completed before the close */
  guint n_closed_errors;
  guint n_closed_signals;
  gboolean closed;            /* ::closed was emitted */
  gboolean reenter;           /* start operations inside ::closed */
  gboolean drop_in_callback;  /* the first failure drops conn */
  GPtrArray *consumers;       /* the ones that started */
} Reenter;

static void
reenter_done (Reenter      *re,
              gboolean      ok,
              const GError *error)
{
  re->n_done++;
  g_test_message ("reenter completion %u: ok %d closed %d error %s", re->n_done, ok, re->closed,
                  error != NULL ? error->message : "-");
  if (ok)
    {
      /* Only what completed before the close succeeds. */
      g_assert_false (re->closed);
      re->n_ok++;
      return;
    }
  g_assert_nonnull (error);
  g_assert_true (error->domain == CAREHARE_ERROR);
  g_assert_true (error->code == CAREHARE_ERROR_CONNECTION_CLOSED ||
                 error->code == CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  re->n_closed_errors++;
  if (re->drop_in_callback)
    g_clear_object (&re->conn);
}

static void
reenter_call_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = carehare_connection_call_finish (CAREHARE_CONNECTION (source),
                                                                      result, &error);

  /* Nobody answers: a call only fails. */
  g_assert_null (reply);
  reenter_done (user_data, FALSE, error);
}

static void
reenter_consumer_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  Reenter *re = user_data;
  g_autoptr(GError) error = NULL;
  CarehareConsumer *consumer =
    carehare_connection_acking_consumer_full_finish (CAREHARE_CONNECTION (source), result, &error);

  if (consumer != NULL)
    g_ptr_array_add (re->consumers, consumer);
  reenter_done (re, consumer != NULL, error);
}

static void
reenter_publish_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  gboolean ok = carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error);

  reenter_done (user_data, ok, error);
}

/* Starts a call, a consumer with a tag, a publish. */
static void
reenter_start_three (Reenter            *re,
                     CarehareConnection *conn,
                     const char         *queue,
                     const char         *tag)
{
  g_autoptr(GBytes) body = text_bytes ("reenter");

  carehare_connection_call_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                  NULL, reenter_call_cb, re);
  carehare_connection_acking_consumer_full_async (conn, queue, 0, 1,
                                                  CAREHARE_CONSUME_FLAGS_NONE, tag, NULL,
                                                  NULL, reenter_consumer_cb, re);
  carehare_connection_publish_async (conn, "", queue, body, NULL,
                                     CAREHARE_PUBLISH_FLAGS_NONE, NULL, reenter_publish_cb, re);
  re->n_expected += 3;
}

static void
reenter_closed_cb (CarehareConnection *conn,
                   const GError       *error,
                   gpointer            user_data)
{
  Reenter *re = user_data;

  re->n_closed_signals++;
  g_test_message ("closed signal: %s", error != NULL ? error->message : "-");
  re->closed = TRUE;
  if (re->reenter)
    reenter_start_three (re, conn, "after-closed", "tag-after-closed");
}

/* The server forces the connection closed while calls are pending (one
 * more was cancelled after its request went out): the first failure drops
 * the program's last reference, then ::closed (the program no longer
 * holds the connection) starts a call, a consumer and a publish; everything
 * completes once and the connection is freed. */
static void
test_server_close_with_everything_pending (void)
{
  g_autofree char *conn_name = carehare_test_unique_name ("review-forced");
  g_autofree char *suffix = g_strdup_printf ("/?connection_name=%s", conn_name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  g_autofree char *qname = carehare_test_unique_name ("review-forced-q");
  g_autofree char *queue = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) cancelled = NULL;
  g_autoptr(GError) cancelled_error = NULL;
  g_autoptr(GBytes) body = text_bytes ("cancel me");
  Reenter re = { 0 };
  gpointer weak;

  re.consumers = g_ptr_array_new_with_free_func (g_object_unref);
  re.conn = connect_here (uri);
  re.reenter = TRUE;
  re.drop_in_callback = TRUE;
  weak = re.conn;
  g_object_add_weak_pointer (G_OBJECT (re.conn), &weak);
  g_signal_connect (re.conn, "closed", G_CALLBACK (reenter_closed_cb), &re);
  queue = declare_queue (re.conn, qname, CAREHARE_QUEUE_FLAGS_AUTO_DELETE);

  for (guint i = 0; i < 5; i++)
    {
      g_autofree char *tag = g_strdup_printf ("forced-%u", i);

      reenter_start_three (&re, re.conn, queue, tag);
    }
  start_call (re.conn, queue, body, NULL, cancellable, &cancelled);
  g_cancellable_cancel (cancellable);
  wait_result (&cancelled, TIMEOUT_MS);
  g_assert_null (carehare_connection_call_finish (re.conn, cancelled, &cancelled_error));
  g_assert_error (cancelled_error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_object (&cancelled);
  /* The consumers and the publishes complete; the calls wait. */
  wait_count (&re.n_ok, 10);

  carehare_test_broker_close_connection (conn_name, "review: forced");
  wait_count (&re.n_done, 18);
  g_assert_cmpuint (re.n_closed_signals, ==, 1);
  g_assert_cmpuint (re.n_expected, ==, 18);
  g_assert_cmpuint (re.n_ok, ==, 10);
  g_assert_cmpuint (re.n_closed_errors, ==, 8);
  for (guint i = 0; i < re.consumers->len; i++)
    g_assert_true (carehare_consumer_get_is_closed (re.consumers->pdata[i]));
  g_ptr_array_unref (re.consumers);
  wait_finalized (&weak);
}

/* ---- scripted: the connection drops while the call channel opens -------- */

typedef enum {
  DROP_AT_CHANNEL_OPEN,     /* the call channel's Channel.Open arrives */
  DROP_AT_REPLY_CONSUME,    /* its Basic.Consume(amq.rabbitmq.reply-to) */
  DROP_AT_REQUEST,          /* the request itself, after Open-Ok, Select-Ok, Consume-Ok */
} DropPoint;

typedef struct {
  LoopbackServer *server;
  DropPoint point;
  gint dropped;  /* atomic */
} DropServer;

static void
drop_send (GSocket              *socket,
           guint16               channel,
           const CarehareMethod *method)
{
  g_autoptr(GByteArray) frame = g_byte_array_new ();

  g_assert_true (carehare_wire_append_method_frame (frame, channel, method, NULL));
  g_socket_send (socket, (const char *) frame->data, frame->len, NULL, NULL);
}

static void
drop_reset (GSocket *socket)
{
  struct linger l = { .l_onoff = 1, .l_linger = 0 };

  g_assert_cmpint (setsockopt (g_socket_get_fd (socket), SOL_SOCKET, SO_LINGER, &l, sizeof l),
                   ==, 0);
  g_socket_close (socket, NULL);
}

/* Answers one method, or drops the connection at the chosen point:
 * returns FALSE once dropped. */
static gboolean
drop_answer (DropServer           *srv,
             GSocket              *socket,
             guint16               channel,
             const CarehareMethod *method)
{
  CarehareMethod reply = { 0 };

  switch (method->id)
    {
    case CAREHARE_METHOD_CONNECTION_START_OK:
      reply.id = CAREHARE_METHOD_CONNECTION_TUNE;
      reply.connection_tune.channel_max = 16;
      reply.connection_tune.frame_max = 131072;
      drop_send (socket, 0, &reply);
      return TRUE;
    case CAREHARE_METHOD_CONNECTION_OPEN:
      reply.id = CAREHARE_METHOD_CONNECTION_OPEN_OK;
      drop_send (socket, 0, &reply);
      return TRUE;
    case CAREHARE_METHOD_CHANNEL_OPEN:
      if (srv->point == DROP_AT_CHANNEL_OPEN)
        break;
      reply.id = CAREHARE_METHOD_CHANNEL_OPEN_OK;
      drop_send (socket, channel, &reply);
      return TRUE;
    case CAREHARE_METHOD_CONFIRM_SELECT:
      reply.id = CAREHARE_METHOD_CONFIRM_SELECT_OK;
      drop_send (socket, channel, &reply);
      return TRUE;
    case CAREHARE_METHOD_BASIC_CONSUME:
      if (srv->point == DROP_AT_REPLY_CONSUME)
        break;
      reply.id = CAREHARE_METHOD_BASIC_CONSUME_OK;
      reply.basic_consume_ok.consumer_tag = (char *) "amq.ctag-reply";
      drop_send (socket, channel, &reply);
      return TRUE;
    case CAREHARE_METHOD_BASIC_PUBLISH:
      if (srv->point == DROP_AT_REQUEST)
        break;
      return TRUE;
    default:
      return TRUE;
    }
  /* Set first: the client may see the reset and check before we return. */
  g_atomic_int_set (&srv->dropped, TRUE);
  drop_reset (socket);
  return FALSE;
}

static void
drop_serve (GSocketConnection *connection,
            gpointer           user_data)
{
  DropServer *srv = user_data;
  GSocket *socket = g_socket_connection_get_socket (connection);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GBytes) mechanisms = g_bytes_new_static ("PLAIN", 5);
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);
  CarehareMethod start = { .id = CAREHARE_METHOD_CONNECTION_START };
  gboolean header_seen = FALSE;

  start.connection_start.version_minor = 9;
  start.connection_start.mechanisms = mechanisms;
  start.connection_start.locales = locales;

  for (;;)
    {
      guint8 chunk[65536];
      gssize n = g_socket_receive (socket, (char *) chunk, sizeof chunk, NULL, NULL);

      if (n <= 0)
        return;
      g_byte_array_append (buf, chunk, n);
      if (!header_seen)
        {
          if (buf->len < 8)
            continue;
          g_byte_array_remove_range (buf, 0, 8);
          header_seen = TRUE;
          drop_send (socket, 0, &start);
        }
      for (;;)
        {
          CarehareFrame frame;
          CarehareMethod method = { 0 };
          gssize used = carehare_frame_decode (buf->data, buf->len, 0, &frame, NULL);
          gboolean go_on = TRUE;

          g_assert_cmpint (used, >=, 0);
          if (used == 0)
            break;
          if (frame.type == CAREHARE_FRAME_METHOD)
            {
              g_assert_true (carehare_method_decode (frame.payload, frame.size, &method, NULL));
              go_on = drop_answer (srv, socket, frame.channel, &method);
              carehare_method_clear (&method);
            }
          if (!go_on)
            return;
          g_byte_array_remove_range (buf, 0, used);
        }
    }
}

typedef struct {
  CarehareConnection *conn;   /* the program's reference: dropped in the first callback */
  guint n_calls_done;
  guint n_publishes_done;
  guint n_closed_signals;
} DropClient;

static void
drop_closed_cb (CarehareConnection *conn,
                const GError       *error,
                gpointer            user_data)
{
  DropClient *client = user_data;

  g_assert_nonnull (error);
  client->n_closed_signals++;
}

static void
drop_call_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  DropClient *client = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;

  reply = carehare_connection_call_finish (CAREHARE_CONNECTION (source), result, &error);
  g_assert_null (reply);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  client->n_calls_done++;
  /* The first completion drops the program's last reference. */
  if (client->conn != NULL)
    {
      g_signal_handlers_disconnect_by_data (client->conn, client);
      g_clear_object (&client->conn);
    }
}

static void
drop_publish_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  DropClient *client = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_false (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result,
                                                      &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  client->n_publishes_done++;
}

static void
run_drop_during_call_open (gconstpointer data)
{
  DropServer srv = { NULL, GPOINTER_TO_INT (data), 0 };
  DropClient client = { 0 };
  g_autofree char *uri = NULL;
  gpointer weak;

  srv.server = loopback_server_new (drop_serve, &srv);
  uri = g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u/",
                         loopback_server_get_port (srv.server));
  client.conn = connect_here (uri);
  weak = client.conn;
  g_object_add_weak_pointer (G_OBJECT (client.conn), &weak);
  g_signal_connect (client.conn, "closed", G_CALLBACK (drop_closed_cb), &client);

  for (guint i = 0; i < 5; i++)
    {
      g_autoptr(GBytes) body = text_bytes ("request");

      carehare_connection_call_async (client.conn, "", "rpc", body, NULL,
                                      CAREHARE_PUBLISH_FLAGS_NONE, NULL, drop_call_cb, &client);
      carehare_connection_publish_async (client.conn, "", "q", body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL, drop_publish_cb,
                                         &client);
    }
  wait_count (&client.n_calls_done, 5);
  wait_count (&client.n_publishes_done, 5);
  g_assert_true (g_atomic_int_get (&srv.dropped));
  g_assert_cmpuint (client.n_closed_signals, <=, 1);
  wait_finalized (&weak);
  loopback_server_free (srv.server);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/review/call/cancel-immediately", test_call_cancel_immediately);
  g_test_add_func ("/review/call/correlation-id-reused-after-cancel",
                   test_call_correlation_id_reused_after_cancel);
  g_test_add_func ("/review/call/same-correlation-id", test_call_same_correlation_id);
  g_test_add_func ("/review/call/close-in-callback", test_call_close_in_callback);
  g_test_add_func ("/review/call/large-bodies", test_call_large_bodies);
  g_test_add_func ("/review/call/reply-too-large", test_call_reply_too_large);
  g_test_add_func ("/review/call/stalled-loop", test_call_stalled_loop);
  g_test_add_func ("/review/channel-max-4", test_channel_max_4);
  g_test_add_func ("/review/consumer/tag-reuse-after-server-cancel",
                   test_tag_reuse_after_server_cancel);
  g_test_add_func ("/review/consumer/tag-reuse-after-server-cancel-held",
                   test_tag_reuse_after_server_cancel_held);
  g_test_add_func ("/review/consumer/tag-reuse-after-server-cancel-acked",
                   test_tag_reuse_after_server_cancel_acked);
  g_test_add_func ("/review/consumer/tag-reuse-after-cancelled-start",
                   test_tag_reuse_after_cancelled_start);
  g_test_add_func ("/review/consumer/settle-up-to-foreign-tag", test_settle_up_to_foreign_tag);
  g_test_add_func ("/review/consumer/settle-after-close", test_settle_after_close);
  g_test_add_func ("/review/server-close-with-everything-pending",
                   test_server_close_with_everything_pending);
  g_test_add_data_func ("/review/scripted/drop-at-call-channel-open",
                        GINT_TO_POINTER (DROP_AT_CHANNEL_OPEN), run_drop_during_call_open);
  g_test_add_data_func ("/review/scripted/drop-at-reply-consume",
                        GINT_TO_POINTER (DROP_AT_REPLY_CONSUME), run_drop_during_call_open);
  g_test_add_data_func ("/review/scripted/drop-at-request",
                        GINT_TO_POINTER (DROP_AT_REQUEST), run_drop_during_call_open);

  return g_test_run ();
}
