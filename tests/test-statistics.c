/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare_connection_get_statistics() against the private broker: the
 * counters of 1,000 publishes and 1,000 deliveries, read back exactly.
 */
#include "carehare-test-util.h"

#define N_MESSAGES 1000

typedef struct {
  guint pending;
  guint failed;
} Publishes;

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Publishes *p = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    p->failed++;
  p->pending--;
}

static void
test_statistics_exact (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = carehare_test_unique_name ("statistics");
  g_autoptr(CarehareStatistics) before = NULL;
  g_autoptr(CarehareStatistics) after_publish = NULL;
  g_autoptr(CarehareStatistics) after_consume = NULL;
  g_autoptr(CarehareStatistics) copy = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("counted", 7);
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  Publishes p = { 0 };
  guint i;

  before = carehare_connection_get_statistics (conn);
  g_assert_cmpuint (carehare_statistics_get_messages_published (before), ==, 0);
  g_assert_cmpuint (carehare_statistics_get_deliveries_received (before), ==, 0);
  /* The handshake went both ways. */
  g_assert_cmpuint (carehare_statistics_get_bytes_sent (before), >, 0);
  g_assert_cmpuint (carehare_statistics_get_bytes_received (before), >, 0);
  g_assert_cmpint (carehare_statistics_get_time_since_last_received (before), >=, 0);

  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_AUTO_DELETE, NULL,
                                           NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  name = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&result);

  for (i = 0; i < N_MESSAGES; i++)
    {
      p.pending++;
      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, published_cb, &p);
    }
  /* One mandatory publish nobody receives: returned, and confirmed. */
  p.pending++;
  carehare_connection_publish_async (conn, "", "carehare-statistics-nowhere", body, NULL,
                                     CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL, published_cb, &p);
  while (p.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (p.failed, ==, 1);

  after_publish = carehare_connection_get_statistics (conn);
  g_assert_cmpuint (carehare_statistics_get_messages_published (after_publish), ==, N_MESSAGES + 1);
  g_assert_cmpuint (carehare_statistics_get_messages_confirmed (after_publish), ==, N_MESSAGES + 1);
  g_assert_cmpuint (carehare_statistics_get_messages_nacked (after_publish), ==, 0);
  g_assert_cmpuint (carehare_statistics_get_messages_returned (after_publish), ==, 1);
  /* Each publish is at least a method, a header and a body frame. */
  g_assert_cmpuint (carehare_statistics_get_bytes_sent (after_publish) -
                    carehare_statistics_get_bytes_sent (before), >, (guint64) N_MESSAGES * 7 * 3);
  /* The publisher channel (and pooled operation channels) are open. */
  g_assert_cmpuint (carehare_statistics_get_channels_open (after_publish), >=, 1);

  carehare_connection_acking_consumer_async (conn, queue, 0, 100, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_no_error (error);
  g_clear_object (&result);
  for (i = 0; i < N_MESSAGES; i++)
    {
      g_autoptr(CarehareDelivery) delivery = NULL;

      carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
      carehare_test_wait_for_result (&result, 10000);
      delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
      g_assert_no_error (error);
      g_clear_object (&result);
      /* 900 acks one by one, 50 nacks, the last 50 with one ack-up-to. */
      if (i < 900)
        carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
      else if (i < 950)
        carehare_consumer_nack (consumer, carehare_delivery_get_delivery_tag (delivery), FALSE);
      else if (i == N_MESSAGES - 1)
        carehare_consumer_ack_up_to (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_consumer_close_finish (consumer, result, &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  after_consume = carehare_connection_get_statistics (conn);
  g_assert_cmpuint (carehare_statistics_get_deliveries_received (after_consume), ==, N_MESSAGES);
  g_assert_cmpuint (carehare_statistics_get_deliveries_acked (after_consume), ==, 950);
  g_assert_cmpuint (carehare_statistics_get_deliveries_nacked (after_consume), ==, 50);
  g_assert_cmpuint (carehare_statistics_get_messages_published (after_consume), ==, N_MESSAGES + 1);
  g_assert_cmpuint (carehare_statistics_get_bytes_received (after_consume), >,
                    carehare_statistics_get_bytes_received (after_publish) + (guint64) N_MESSAGES * 7);

  /* A snapshot does not move; a copy is equal. */
  g_assert_cmpuint (carehare_statistics_get_deliveries_received (after_publish), ==, 0);
  copy = carehare_statistics_copy (after_consume);
  g_assert_cmpuint (carehare_statistics_get_deliveries_acked (copy), ==, 950);
  g_assert_cmpuint (carehare_statistics_get_channels_open (copy), ==,
                    carehare_statistics_get_channels_open (after_consume));

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_clear_object (&result);
  {
    g_autoptr(CarehareStatistics) closed = carehare_connection_get_statistics (conn);
    g_assert_cmpuint (carehare_statistics_get_deliveries_acked (closed), >=, 950);
  }
}

/* Publishes the broker refuses (a full queue with x-overflow=reject-publish)
 * count as nacked, not confirmed. */
static void
test_statistics_nacked (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = carehare_test_unique_name ("statistics-full");
  g_autoptr(CarehareStatistics) stats = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("refused", 7);
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  GVariantDict arguments;
  Publishes p = { 0 };
  guint i;

  g_variant_dict_init (&arguments, NULL);
  g_variant_dict_insert (&arguments, "x-max-length", "x", (gint64) 1);
  g_variant_dict_insert (&arguments, "x-overflow", "s", "reject-publish");
  name = carehare_connection_queue_declare_sync (conn, queue, CAREHARE_QUEUE_FLAGS_NONE,
                                                 g_variant_dict_end (&arguments), NULL, NULL, NULL, &error);
  g_assert_no_error (error);

  /* The first fits; the queue refuses the other nine. */
  for (i = 0; i < 10; i++)
    {
      p.pending++;
      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, published_cb, &p);
    }
  while (p.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (p.failed, ==, 9);

  stats = carehare_connection_get_statistics (conn);
  g_assert_cmpuint (carehare_statistics_get_messages_published (stats), ==, 10);
  g_assert_cmpuint (carehare_statistics_get_messages_confirmed (stats), ==, 1);
  g_assert_cmpuint (carehare_statistics_get_messages_nacked (stats), ==, 9);
  g_assert_cmpuint (carehare_statistics_get_messages_returned (stats), ==, 0);

  g_assert_true (carehare_connection_queue_delete_sync (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE,
                                                        NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (carehare_connection_close_sync (conn, NULL, &error));
  g_assert_no_error (error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/statistics/publish-consume-exact", test_statistics_exact);
  g_test_add_func ("/statistics/nacked", test_statistics_nacked);
  return g_test_run ();
}
