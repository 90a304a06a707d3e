/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Load: N messages (CAREHARE_LOAD_MESSAGES, default 200,000; the
 * --messages=N argument changes the default, as the sanitizer build does)
 * published with 1,000 in flight and consumed by two consumers on the same
 * connection, against the private broker. Every message is accounted for
 * exactly once by its sequence number; one seen again must carry the
 * redelivered flag.
 */
#include "carehare-test-util.h"

#include <string.h>

#define IN_FLIGHT 1000
#define PREFETCH 500

static guint n_messages = 200000;

typedef struct {
  CarehareConnection *conn;
  const char *queue;
  guint8 *seen;            /* per sequence number */
  guint next_to_publish;
  guint n_acked;
  guint n_distinct;
  guint n_redelivered;
  guint per_consumer[2];
  CarehareConsumer *consumers[2];
  GError *error;           /* the first failure */
} Load;

static void publish_next (Load *load);

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Load *load = user_data;
  GError *error = NULL;

  if (!carehare_connection_publish_finish (load->conn, result, &error))
    {
      if (load->error == NULL)
        load->error = error;
      else
        g_error_free (error);
      return;
    }
  load->n_acked++;
  publish_next (load);
}

static void
publish_next (Load *load)
{
  guint32 seq;
  g_autoptr(GBytes) body = NULL;

  if (load->next_to_publish >= n_messages || load->error != NULL)
    return;
  seq = GUINT32_TO_BE (load->next_to_publish++);
  body = g_bytes_new (&seq, sizeof seq);
  carehare_connection_publish_async (load->conn, "", load->queue, body, NULL,
                                     CAREHARE_PUBLISH_FLAGS_NONE, NULL, published_cb, load);
}

static void next_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data);

static void
next_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Load *load = user_data;
  CarehareConsumer *consumer = CAREHARE_CONSUMER (source);
  g_autoptr(CarehareDelivery) delivery = NULL;
  GError *error = NULL;
  GBytes *body;
  guint32 seq;

  delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
  if (delivery == NULL)
    {
      /* CHANNEL_CLOSED after we closed the consumer at the end. */
      if (load->error == NULL && load->n_distinct < n_messages)
        load->error = error;
      else
        g_error_free (error);
      return;
    }

  body = carehare_delivery_get_body (delivery);
  g_assert_cmpuint (g_bytes_get_size (body), ==, sizeof seq);
  memcpy (&seq, g_bytes_get_data (body, NULL), sizeof seq);
  seq = GUINT32_FROM_BE (seq);
  g_assert_cmpuint (seq, <, n_messages);
  if (carehare_delivery_get_redelivered (delivery))
    load->n_redelivered++;
  if (load->seen[seq])
    {
      if (!carehare_delivery_get_redelivered (delivery))
        g_error ("message %u consumed twice without the redelivered flag", seq);
    }
  else
    {
      load->seen[seq] = 1;
      load->n_distinct++;
    }
  load->per_consumer[consumer == load->consumers[0] ? 0 : 1]++;
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  if (load->n_distinct < n_messages)
    carehare_consumer_next_delivery_async (consumer, NULL, next_cb, load);
}

static void
test_load (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("load");
  g_autofree char *queue = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  Load load = { 0 };
  gint64 start, elapsed_us;
  gboolean timed_out = FALSE;
  guint timeout_s = 60 + n_messages / 500;

  carehare_connection_queue_declare_async (conn, name, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 30000);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&result);

  load.conn = conn;
  load.queue = queue;
  load.seen = g_new0 (guint8, n_messages);
  for (guint i = 0; i < 2; i++)
    {
      carehare_connection_acking_consumer_async (conn, queue, 0, PREFETCH, NULL,
                                                 carehare_test_store_result, &result);
      carehare_test_wait_for_result (&result, 30000);
      load.consumers[i] = carehare_connection_acking_consumer_finish (conn, result, &error);
      g_assert_no_error (error);
      g_clear_object (&result);
    }

  start = g_get_monotonic_time ();
  for (guint i = 0; i < 2; i++)
    carehare_consumer_next_delivery_async (load.consumers[i], NULL, next_cb, &load);
  for (guint i = 0; i < IN_FLIGHT; i++)
    publish_next (&load);

  {
    gint64 deadline = start + (gint64) timeout_s * G_TIME_SPAN_SECOND;

    while ((load.n_distinct < n_messages || load.n_acked < n_messages) && load.error == NULL)
      {
        if (g_get_monotonic_time () > deadline)
          {
            timed_out = TRUE;
            break;
          }
        g_main_context_iteration (NULL, TRUE);
      }
  }
  elapsed_us = g_get_monotonic_time () - start;

  g_assert_no_error (load.error);
  g_assert_false (timed_out);
  g_test_message ("load: %u messages, %u in flight, two consumers (%u + %u deliveries, "
                  "%u redelivered) in %.2f s: %.0f messages/s",
                  n_messages, IN_FLIGHT, load.per_consumer[0], load.per_consumer[1],
                  load.n_redelivered, elapsed_us / 1e6, n_messages / (elapsed_us / 1e6));
  g_assert_cmpuint (load.n_acked, ==, n_messages);
  g_assert_cmpuint (load.n_distinct, ==, n_messages);
  for (guint i = 0; i < n_messages; i++)
    g_assert_cmpuint (load.seen[i], ==, 1);
  g_assert_cmpuint (load.per_consumer[0] + load.per_consumer[1], ==, n_messages + load.n_redelivered);
  g_assert_cmpuint (load.per_consumer[0], >, 0);
  g_assert_cmpuint (load.per_consumer[1], >, 0);

  for (guint i = 0; i < 2; i++)
    {
      carehare_consumer_close_async (load.consumers[i], NULL, carehare_test_store_result, &result);
      carehare_test_wait_for_result (&result, 30000);
      carehare_consumer_close_finish (load.consumers[i], result, &error);
      g_assert_no_error (error);
      g_clear_object (&result);
      g_clear_object (&load.consumers[i]);
    }
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 30000);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_free (load.seen);
}

int
main (int argc, char *argv[])
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
  env = g_getenv ("CAREHARE_LOAD_MESSAGES");
  if (env != NULL && *env != '\0')
    n_messages = (guint) g_ascii_strtoull (env, NULL, 10);
  g_assert_cmpuint (n_messages, >, 0);

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/load/publish-consume-two-consumers", test_load);
  return g_test_run ();
}
