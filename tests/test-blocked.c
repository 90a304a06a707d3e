/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A memory alarm on the private broker blocks publishing connections.
 * The alarm is node-wide, so this test runs alone (is_parallel: false) and
 * always lifts the alarm again, also before it starts.
 */
#include "carehare-test-util.h"

#include <string.h>

#define TIMEOUT_MS 30000

static void
set_watermark (const char *value)
{
  g_free (carehare_test_broker_ctl ("set_vm_memory_high_watermark", value, NULL));
}

static void
wait_blocked (CarehareConnection *conn,
              gboolean            blocked)
{
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

  while (carehare_connection_get_is_blocked (conn) != blocked)
    {
      if (g_get_monotonic_time () > deadline)
        {
          set_watermark ("0.4");
          g_error ("the connection never became %s", blocked ? "blocked" : "unblocked");
        }
      carehare_test_run_for (50);
    }
}

/* A connection named @name (in its client properties), for rabbitmqctl. */
static CarehareConnection *
connect_named (const char *name)
{
  g_autofree char *suffix = g_strdup_printf ("/?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);

  return carehare_test_connect (uri);
}

/* Raises the memory alarm and waits until the broker has passed it on to
 * connection @name (rabbitmqctl lists it as blocking). RabbitMQ tells the
 * connections asynchronously, maybe after set_vm_memory_high_watermark has
 * returned: a publish that got there first would go through, and the
 * connection would block only at a next one, which the test never makes. */
static void
raise_alarm_for (const char *name)
{
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

  set_watermark ("0");
  for (guint polls = 1;; polls++)
    {
      g_autofree char *list = carehare_test_broker_ctl ("list_connections", "--quiet",
                                                        "--no-table-headers", "state",
                                                        "client_properties", NULL);
      g_auto(GStrv) lines = g_strsplit (list, "\n", -1);

      for (char **line = lines; *line != NULL; line++)
        if (strstr (*line, name) != NULL &&
            (g_str_has_prefix (*line, "blocking") || g_str_has_prefix (*line, "blocked")))
          return;
      /* At least twice: a loaded machine may take seconds to run rabbitmqctl. */
      if (polls >= 2 && g_get_monotonic_time () > deadline)
        {
          set_watermark ("0.4");
          g_error ("the broker never passed the memory alarm on to connection %s", name);
        }
      carehare_test_run_for (50);
    }
}

typedef struct {
  guint done;
  guint ok;
  guint cancelled;
  guint closed;
} Tally;

static void
tally_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Tally *tally = user_data;
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    tally->ok++;
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    tally->cancelled++;
  else if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
    tally->closed++;
  else
    g_error ("unexpected publish error: %s", error->message);
  tally->done++;
}

static void
notify_cb (GObject    *object,
           GParamSpec *pspec,
           gpointer    user_data)
{
  (*(guint *) user_data)++;
}

static char *
declare (CarehareConnection *conn)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  char *queue;

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  return queue;
}

static void
test_publishes_wait_while_blocked (void)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autofree char *conn_name = carehare_test_unique_name ("blocked-wait");
  g_autoptr(GBytes) body = g_bytes_new_static ("m", 1);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) counted = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  g_autofree char *name = NULL;
  Tally first = { 0 };
  Tally waiting = { 0 };
  guint notified = 0;
  guint count = 0;

  set_watermark ("0.4");
  conn = connect_named (conn_name);
  queue = declare (conn);
  g_signal_connect (conn, "notify::is-blocked", G_CALLBACK (notify_cb), &notified);

  raise_alarm_for (conn_name);
  /* RabbitMQ blocks a connection when it publishes during an alarm. */
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, tally_cb, &first);
  wait_blocked (conn, TRUE);
  g_assert_cmpuint (notified, ==, 1);

  for (guint i = 0; i < 5; i++)
    carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                       i == 2 ? cancellable : NULL, tally_cb, &waiting);
  carehare_test_run_for (1500);
  g_assert_cmpuint (waiting.done, ==, 0);

  /* Not written yet: cancelling drops it. */
  g_cancellable_cancel (cancellable);
  carehare_test_run_for (100);
  g_assert_cmpuint (waiting.cancelled, ==, 1);

  set_watermark ("0.4");
  wait_blocked (conn, FALSE);
  g_assert_cmpuint (notified, ==, 2);
  while (waiting.done < 5 || first.done < 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (waiting.ok, ==, 4);
  g_assert_cmpuint (first.ok, ==, 1);

  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &counted);
  carehare_test_wait_for_result (&counted, TIMEOUT_MS);
  name = carehare_connection_queue_declare_finish (conn, counted, &count, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (count, ==, 5);
}

static void
test_blocked_publishes_fail_on_close (void)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autofree char *conn_name = carehare_test_unique_name ("blocked-close");
  g_autoptr(GBytes) body = g_bytes_new_static ("m", 1);
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  Tally first = { 0 };
  Tally waiting = { 0 };

  set_watermark ("0.4");
  conn = connect_named (conn_name);
  queue = declare (conn);
  raise_alarm_for (conn_name);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, tally_cb, &first);
  wait_blocked (conn, TRUE);
  for (guint i = 0; i < 3; i++)
    carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                       NULL, tally_cb, &waiting);
  carehare_test_run_for (300);
  g_assert_cmpuint (waiting.done, ==, 0);

  /* A blocked broker may not read our Close: the close is bounded all the
   * same, and every publish completes. */
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  carehare_connection_close_finish (conn, closed, &error);
  set_watermark ("0.4");
  while (waiting.done < 3 || first.done < 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (waiting.closed, ==, 3);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/blocked/publishes-wait", test_publishes_wait_while_blocked);
  g_test_add_func ("/blocked/publishes-fail-on-close", test_blocked_publishes_fail_on_close);

  return g_test_run ();
}
