/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Publishing with confirms and consuming with acks, against the private
 * broker.
 */
#include "carehare-test-util.h"

#include "carehare-connection-private.h"

#include <math.h>
#include <string.h>

#define TIMEOUT_MS 30000

/* ---- helpers ------------------------------------------------------------- */

static char *
declare_queue_with_flags (CarehareConnection *conn,
                          const char         *name,
                          CarehareQueueFlags  flags,
                          GVariant           *arguments)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  char *queue;

  carehare_connection_queue_declare_async (conn, name, flags,
                                           arguments, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  return queue;
}

/* Deleted with its last consumer, or with the connection when the test
 * fails before that. */
static char *
declare_queue (CarehareConnection *conn,
               const char         *name,
               GVariant           *arguments)
{
  return declare_queue_with_flags (conn, name, CAREHARE_QUEUE_FLAGS_AUTO_DELETE, arguments);
}

static guint
queue_message_count (CarehareConnection *conn,
                     const char         *queue)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  guint count = 0;

  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  name = carehare_connection_queue_declare_finish (conn, result, &count, NULL, &error);
  g_assert_no_error (error);
  return count;
}

static gboolean
publish (CarehareConnection    *conn,
         const char            *exchange,
         const char            *routing_key,
         GBytes                *body,
         CarehareProperties    *properties,
         CareharePublishFlags   flags,
         GError               **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_publish_async (conn, exchange, routing_key, body, properties, flags,
                                     NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_publish_finish (conn, result, error);
}

static gboolean
publish_text (CarehareConnection  *conn,
              const char          *exchange,
              const char          *routing_key,
              const char          *text,
              GError             **error)
{
  g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

  return publish (conn, exchange, routing_key, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE, error);
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

static CarehareDelivery *
next_delivery (CarehareConsumer  *consumer,
               GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_consumer_next_delivery_finish (consumer, result, error);
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

static void
assert_body (CarehareDelivery *delivery,
             const char       *text)
{
  GBytes *body = carehare_delivery_get_body (delivery);
  g_autoptr(GBytes) expected = g_bytes_new_static (text, strlen (text));

  g_assert_true (g_bytes_equal (body, expected));
}

/* Headers with a value of every field-table type RabbitMQ knows. */
static GVariant *
every_type_headers (void)
{
  return g_variant_new_parsed ("{"
                               "'bool': <true>,"
                               "'int8': <(@n -5,)>,"
                               "'uint8': <@y 200>,"
                               "'int16': <@n -30000>,"
                               "'uint16': <@q 60000>,"
                               "'int32': <-2000000000>,"
                               "'uint32': <@u 4000000000>,"
                               "'int64': <@x -9000000000000000000>,"
                               "'float': <(1.5,)>,"
                               "'double': <3.25>,"
                               "'decimal': <(@y 2, 12345)>,"
                               "'string': <'héllo'>,"
                               "'bytes': <@ay [0, 255, 1]>,"
                               "'array': <[<1>, <'two'>, <[<true>]>]>,"
                               "'timestamp': <@t 1700000000>,"
                               "'table': <{'nested': <{'deeper': <'yes'>}>}>,"
                               "'void': <()>"
                               "}");
}

/* ---- publishing ---------------------------------------------------------- */

static void
test_round_trip_every_property (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GVariant) headers = g_variant_ref_sink (every_type_headers ());
  g_autoptr(GBytes) body = g_bytes_new_static ("payload", 7);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  CarehareProperties *got;

  carehare_properties_set_content_type (props, "text/plain");
  carehare_properties_set_content_encoding (props, "utf-8");
  carehare_properties_set_headers (props, headers);
  carehare_properties_set_delivery_mode (props, 2);
  carehare_properties_set_priority (props, 7);
  carehare_properties_set_correlation_id (props, "corr-1");
  carehare_properties_set_reply_to (props, "reply-queue");
  carehare_properties_set_expiration (props, "60000");
  carehare_properties_set_message_id (props, "msg-1");
  carehare_properties_set_timestamp (props, 1700000000);
  carehare_properties_set_message_type (props, "greeting");
  carehare_properties_set_user_id (props, "guest");  /* must be the logged-in user */
  carehare_properties_set_app_id (props, "carehare-tests");
  carehare_properties_set_cluster_id (props, "cluster-a");

  g_assert_true (publish (conn, "", queue, body, props, CAREHARE_PUBLISH_FLAGS_NONE, &error));
  g_assert_no_error (error);

  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);

  assert_body (delivery, "payload");
  g_assert_cmpstr (carehare_delivery_get_exchange (delivery), ==, "");
  g_assert_cmpstr (carehare_delivery_get_routing_key (delivery), ==, queue);
  g_assert_false (carehare_delivery_get_redelivered (delivery));
  g_assert_cmpstr (carehare_delivery_get_consumer_tag (delivery), ==,
                   carehare_consumer_get_consumer_tag (consumer));
  got = carehare_delivery_get_properties (delivery);
  g_assert_cmpstr (carehare_properties_get_content_type (got), ==, "text/plain");
  g_assert_cmpstr (carehare_properties_get_content_encoding (got), ==, "utf-8");
  g_assert_cmpuint (carehare_properties_get_delivery_mode (got), ==, 2);
  g_assert_cmpint (carehare_properties_get_priority (got), ==, 7);
  g_assert_cmpstr (carehare_properties_get_correlation_id (got), ==, "corr-1");
  g_assert_cmpstr (carehare_properties_get_reply_to (got), ==, "reply-queue");
  g_assert_cmpstr (carehare_properties_get_expiration (got), ==, "60000");
  g_assert_cmpstr (carehare_properties_get_message_id (got), ==, "msg-1");
  g_assert_cmpint (carehare_properties_get_timestamp (got), ==, 1700000000);
  g_assert_cmpstr (carehare_properties_get_message_type (got), ==, "greeting");
  g_assert_cmpstr (carehare_properties_get_user_id (got), ==, "guest");
  g_assert_cmpstr (carehare_properties_get_app_id (got), ==, "carehare-tests");
  /* RabbitMQ drops the deprecated cluster-id; everything else is kept. */
  g_assert_true (g_variant_equal (carehare_properties_get_headers (got), headers));

  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  close_connection (conn);
}

static void
test_empty_and_large_bodies (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  gsize sizes[] = { 0, 1, 131072 - 8, 131072 - 7, 1024 * 1024 + 1, 16 * 1024 * 1024 };

  consumer = start_consumer (conn, queue, 2, &error);
  g_assert_no_error (error);

  for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      guint8 *data = g_malloc (sizes[i] + 1);
      g_autoptr(GBytes) body = NULL;
      g_autoptr(CarehareDelivery) delivery = NULL;

      for (gsize j = 0; j < sizes[i]; j++)
        data[j] = (guint8) (j * 7 + i);
      body = g_bytes_new_take (data, sizes[i]);
      g_assert_true (publish (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE, &error));
      g_assert_no_error (error);
      delivery = next_delivery (consumer, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (g_bytes_get_size (carehare_delivery_get_body (delivery)), ==, sizes[i]);
      g_assert_true (g_bytes_equal (carehare_delivery_get_body (delivery), body));
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  close_connection (conn);
}

typedef struct {
  guint done;
  guint failed;
  GError *first_error;
} Counter;

static void
count_publish_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  Counter *counter = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    {
      counter->failed++;
      if (counter->first_error == NULL)
        counter->first_error = g_steal_pointer (&error);
    }
  counter->done++;
}

static void
test_many_in_flight_arrive_in_order (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  Counter counter = { 0 };
  const guint n = 2000;

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *text = g_strdup_printf ("%u", i);
      g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, count_publish_cb, &counter);
    }
  while (counter.done < n)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (counter.first_error);
  g_assert_cmpuint (counter.failed, ==, 0);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, n);

  consumer = start_consumer (conn, queue, 100, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(CarehareDelivery) delivery = next_delivery (consumer, &error);
      g_autofree char *expected = g_strdup_printf ("%u", i);

      g_assert_no_error (error);
      assert_body (delivery, expected);
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  close_connection (conn);
}

/* Large bodies back to back, many frames each and several messages in
 * flight: the socket's reads end anywhere in their frames (the rest of a
 * body frame is read straight into its body), and each arrives whole. */
static void
test_large_bodies_in_flight (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GPtrArray) bodies = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GError) error = NULL;
  Counter counter = { 0 };
  const guint n = 24;

  for (guint i = 0; i < n; i++)
    {
      gsize size = 40000 + (gsize) i * 53001;
      guint8 *data = g_malloc (size);
      GBytes *body;

      for (gsize j = 0; j < size; j++)
        data[j] = (guint8) (j * 13 + j / 4099 + i);
      body = g_bytes_new_take (data, size);
      g_ptr_array_add (bodies, body);
      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         NULL, count_publish_cb, &counter);
    }
  while (counter.done < n)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (counter.first_error);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, n);

  consumer = start_consumer (conn, queue, 8, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(CarehareDelivery) delivery = next_delivery (consumer, &error);

      g_assert_no_error (error);
      g_assert_true (g_bytes_equal (carehare_delivery_get_body (delivery),
                                    g_ptr_array_index (bodies, i)));
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  close_connection (conn);
}

static void
test_nack_for_that_message_only (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GVariant) args = g_variant_ref_sink (g_variant_new_parsed (
    "{'x-max-length': <1>, 'x-overflow': <'reject-publish'>}"));
  g_autofree char *queue = declare_queue (conn, "", args);
  g_autoptr(GError) error = NULL;

  g_assert_true (publish_text (conn, "", queue, "first", &error));
  g_assert_no_error (error);
  g_assert_false (publish_text (conn, "", queue, "second", &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  /* The channel is fine: other queues still take messages. */
  {
    g_autofree char *other = declare_queue (conn, "", NULL);

    g_assert_true (publish_text (conn, "", other, "third", &error));
    g_assert_no_error (error);
  }
  close_connection (conn);
}

static void
test_channel_error_fails_that_exchange_only (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *exchange = carehare_test_unique_name ("later");
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);
  GAsyncResult *missing[5] = { NULL };
  g_autoptr(GAsyncResult) other = NULL;
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (missing); i++)
    carehare_connection_publish_async (conn, exchange, "key", body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                       NULL, carehare_test_store_result, &missing[i]);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &other);
  for (guint i = 0; i < G_N_ELEMENTS (missing); i++)
    {
      g_autoptr(GError) op_error = NULL;

      carehare_test_wait_for_result (&missing[i], TIMEOUT_MS);
      g_assert_false (carehare_connection_publish_finish (conn, missing[i], &op_error));
      g_assert_error (op_error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
      g_assert_cmpuint (carehare_error_get_reply_code (op_error), ==, 404);
      g_assert_nonnull (strstr (op_error->message, exchange));
      g_object_unref (missing[i]);
    }
  carehare_test_wait_for_result (&other, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (conn, other, &error));
  g_assert_no_error (error);

  /* Once the exchange exists, a fresh channel carries the next publish. */
  carehare_connection_exchange_declare_async (conn, exchange, "fanout",
                                              CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL, NULL,
                                              carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, TIMEOUT_MS);
  g_assert_true (carehare_connection_exchange_declare_finish (conn, declared, &error));
  g_assert_true (publish_text (conn, exchange, "key", "now it exists", &error));
  g_assert_no_error (error);
  close_connection (conn);
}

static void
test_mandatory_unroutable (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(GBytes) body = g_bytes_new_static ("m", 1);
  g_autoptr(GAsyncResult) routed = NULL;
  g_autoptr(GAsyncResult) lost = NULL;
  g_autoptr(GAsyncResult) routed2 = NULL;
  g_autoptr(GAsyncResult) plain = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *nowhere = carehare_test_unique_name ("nowhere");

  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_MANDATORY,
                                     NULL, carehare_test_store_result, &routed);
  carehare_connection_publish_async (conn, "", nowhere, body, NULL, CAREHARE_PUBLISH_FLAGS_MANDATORY,
                                     NULL, carehare_test_store_result, &lost);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_MANDATORY,
                                     NULL, carehare_test_store_result, &routed2);
  /* Without the flag an unroutable message is just confirmed. */
  carehare_connection_publish_async (conn, "", nowhere, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &plain);

  carehare_test_wait_for_result (&routed, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (conn, routed, &error));
  carehare_test_wait_for_result (&lost, TIMEOUT_MS);
  g_assert_false (carehare_connection_publish_finish (conn, lost, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, "312 NO_ROUTE"));
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 312);
  g_clear_error (&error);
  carehare_test_wait_for_result (&routed2, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (conn, routed2, &error));
  carehare_test_wait_for_result (&plain, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (conn, plain, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 2);
  close_connection (conn);
}

static void
declare_exchange (CarehareConnection *conn,
                  const char         *name,
                  const char         *type)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_exchange_declare_async (conn, name, type, CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE,
                                              NULL, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_exchange_declare_finish (conn, result, &error));
  g_assert_no_error (error);
}

static void
delete_queue (CarehareConnection *conn,
              const char         *queue)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_delete_finish (conn, result, NULL, &error));
  g_assert_no_error (error);
}

/* Two mandatory publishes sent without waiting: @routed_headers reach the
 * queue, @lost_headers reach none. The broker returns the second while it
 * still owes the first one's ack (a persistent message in a durable queue
 * is acked later): the return must fail the second, not the first. */
static void
assert_second_returned (CarehareConnection *conn,
                        const char         *exchange,
                        const char         *routing_key,
                        const char         *routed_headers,
                        const char         *lost_headers)
{
  g_autoptr(CarehareProperties) routed_props = carehare_properties_new ();
  g_autoptr(CarehareProperties) lost_props = carehare_properties_new ();
  g_autoptr(GBytes) body = g_bytes_new_static ("the same body", 13);
  g_autoptr(GAsyncResult) routed = NULL;
  g_autoptr(GAsyncResult) lost = NULL;
  g_autoptr(GError) error = NULL;

  carehare_properties_set_delivery_mode (routed_props, 2);
  carehare_properties_set_headers (routed_props, g_variant_new_parsed (routed_headers));
  carehare_properties_set_delivery_mode (lost_props, 2);
  carehare_properties_set_headers (lost_props, g_variant_new_parsed (lost_headers));

  carehare_connection_publish_async (conn, exchange, routing_key, body, routed_props,
                                     CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                     carehare_test_store_result, &routed);
  carehare_connection_publish_async (conn, exchange, routing_key, body, lost_props,
                                     CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                     carehare_test_store_result, &lost);
  carehare_test_wait_for_result (&routed, TIMEOUT_MS);
  carehare_test_wait_for_result (&lost, TIMEOUT_MS);
  g_assert_true (carehare_connection_publish_finish (conn, routed, &error));
  g_assert_no_error (error);
  g_assert_false (carehare_connection_publish_finish (conn, lost, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, "312 NO_ROUTE"));
}

/* issue 12 #1: a return is charged to the publish it returns. */
static void
test_mandatory_return_matches_its_publish (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("returned");
  /* Durable, for persistent messages whose ack waits for the disk;
   * exclusive, so that a failed run leaves nothing behind. */
  g_autofree char *queue = declare_queue_with_flags (conn, name,
                                                     CAREHARE_QUEUE_FLAGS_DURABLE |
                                                     CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  g_autofree char *exchange = carehare_test_unique_name ("headers");
  g_autoptr(GAsyncResult) bound = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *cc = g_strdup_printf ("{'CC': <['%s']>}", queue);
  guint rounds = 3;

  declare_exchange (conn, exchange, "headers");
  carehare_connection_queue_bind_async (conn, queue, exchange, "",
                                        g_variant_new_parsed ("{'x-match': <'all'>, 'kind': <'a'>}"),
                                        NULL, carehare_test_store_result, &bound);
  carehare_test_wait_for_result (&bound, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_bind_finish (conn, bound, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < rounds; i++)
    {
      /* A headers exchange routes on the headers alone. */
      assert_second_returned (conn, exchange, "", "{'kind': <'a'>}", "{'kind': <'b'>}");
      /* The default exchange with CC: the same routing key both times. */
      assert_second_returned (conn, "", "nowhere-at-all", cc, "{'kind': <'b'>}");
    }
  /* The routed ones, and only they, are in the queue. */
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 2 * rounds);
  delete_queue (conn, queue);
  close_connection (conn);
}

/* issue 12 #2: once written, a publish completes with the broker's answer
 * even if its cancellable is cancelled. */
static void
test_publish_cancelled_after_written (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(GBytes) body = g_bytes_new_static ("m", 1);
  GAsyncResult *results[5] = { NULL };

  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GCancellable) cancellable = g_cancellable_new ();

      carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                         cancellable, carehare_test_store_result, &results[i]);
      g_cancellable_cancel (cancellable);
    }
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_autoptr(GError) error = NULL;

      carehare_test_wait_for_result (&results[i], TIMEOUT_MS);
      g_assert_true (carehare_connection_publish_finish (conn, results[i], &error));
      g_assert_no_error (error);
      g_clear_object (&results[i]);
    }
  g_assert_cmpuint (queue_message_count (conn, queue), ==, G_N_ELEMENTS (results));
  close_connection (conn);
}

/* issue 12 #6: with channel_max=4, publishes to four exchanges used to keep
 * all four channels, and the next declare or publish hung. Idle publisher
 * channels are given back. */
static void
test_publish_channel_max_reclaim (void)
{
  g_autofree char *uri = carehare_test_amqp_uri_with ("/?channel_max=4");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  static const char *const exchanges[] = { "amq.direct", "amq.fanout", "amq.topic", "amq.headers" };
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;

  g_assert_cmpuint (carehare_connection_get_channel_max (conn), ==, 4);
  for (guint i = 0; i < G_N_ELEMENTS (exchanges); i++)
    {
      g_assert_true (publish_text (conn, exchanges[i], "nobody", "m", &error));
      g_assert_no_error (error);
    }

  /* A declare, then a publish to a fifth exchange (the default one). */
  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_AUTO_DELETE, NULL, NULL,
                                           carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, 10000);
  queue = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (publish_text (conn, "", queue, "fifth", &error));
  g_assert_no_error (error);
  /* And the first exchange again. */
  g_assert_true (publish_text (conn, exchanges[0], "nobody", "again", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 1);
  close_connection (conn);
}

static void
test_publish_invalid_properties (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);
  g_autoptr(GError) error = NULL;

  carehare_properties_set_headers (props, g_variant_new_parsed ("{'fd': <@h 3>}"));
  g_assert_false (publish (conn, "", "whatever", body, props, CAREHARE_PUBLISH_FLAGS_NONE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, "fd"));
  close_connection (conn);
}

/* issue 12 #14: RabbitMQ closes the whole connection (541 INTERNAL_ERROR)
 * for a NaN or an infinity in a table; the call that carries one fails
 * alone instead. */
static void
test_non_finite_refused (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);
  g_autoptr(GAsyncResult) declared = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  carehare_properties_set_headers (props, g_variant_new_parsed ("{'score': <%d>}", (gdouble) NAN));
  g_assert_false (publish (conn, "", queue, body, props, CAREHARE_PUBLISH_FLAGS_NONE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, "score"));
  g_assert_nonnull (strstr (error->message, "NaN"));
  g_clear_error (&error);

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_AUTO_DELETE,
                                           g_variant_new_parsed ("{'x-weight': <%d>}",
                                                                 (gdouble) INFINITY),
                                           NULL, carehare_test_store_result, &declared);
  carehare_test_wait_for_result (&declared, TIMEOUT_MS);
  name = carehare_connection_queue_declare_finish (conn, declared, NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, "Infinity"));
  g_clear_error (&error);

  /* The connection is still open and works. */
  g_assert_false (carehare_connection_get_is_closed (conn));
  g_assert_true (publish_text (conn, "", queue, "still here", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 1);
  close_connection (conn);
}

static void
test_publish_after_close (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(GError) error = NULL;

  close_connection (conn);
  g_assert_false (publish_text (conn, "", "q", "late", &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
}

/* ---- consuming ----------------------------------------------------------- */

static void
test_consume_missing_queue (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareConnection) other = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *missing = carehare_test_unique_name ("missing");
  g_autofree char *exclusive = carehare_test_unique_name ("exclusive");
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  consumer = start_consumer (conn, missing, 10, &error);
  g_assert_null (consumer);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 404);
  g_clear_error (&error);

  carehare_connection_queue_declare_async (other, exclusive, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL,
                                           NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  name = carehare_connection_queue_declare_finish (other, result, NULL, NULL, &error);
  g_assert_no_error (error);
  consumer = start_consumer (conn, exclusive, 10, &error);
  g_assert_null (consumer);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_true (carehare_error_get_reply_code (error) == 403 ||
                 carehare_error_get_reply_code (error) == 405);
  close_connection (other);
  close_connection (conn);
}

/* The broker's counts of @queue's messages ready and unacknowledged. */
static void
counts_on_broker (const char *queue,
                  guint      *ready,
                  guint      *unacked)
{
  g_autofree char *out = carehare_test_broker_ctl ("list_queues", "--quiet", "--no-table-headers",
                                                   "name", "messages_ready",
                                                   "messages_unacknowledged", NULL);
  g_auto(GStrv) lines = g_strsplit (out, "\n", -1);

  for (char **line = lines; *line != NULL; line++)
    {
      g_auto(GStrv) fields = g_strsplit_set (*line, " \t", -1);
      guint *counts[] = { ready, unacked };
      guint n = 0;

      if (fields[0] == NULL || !g_str_equal (fields[0], queue))
        continue;
      for (guint i = 1; fields[i] != NULL && n < G_N_ELEMENTS (counts); i++)
        if (*fields[i] != '\0')
          *counts[n++] = (guint) g_ascii_strtoull (fields[i], NULL, 10);
      g_assert_cmpuint (n, ==, G_N_ELEMENTS (counts));
      return;
    }
  g_error ("queue %s not listed by the broker", queue);
}

static guint
unacked_on_broker (const char *queue)
{
  guint ready, unacked;

  counts_on_broker (queue, &ready, &unacked);
  return unacked;
}

/* Waits until the broker counts @ready messages ready and @unacked
 * unacknowledged in @queue, failing after 20 s. For counts that depend on
 * an ack, nack or close the program sent on a consumer's channel: RabbitMQ
 * does not order that channel's work with a query made elsewhere (another
 * channel, rabbitmqctl), so the query may come first however long the
 * test waited. */
static void
wait_for_counts_on_broker (const char *queue,
                           guint       ready,
                           guint       unacked)
{
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  guint got_ready, got_unacked;

  /* At least twice, the main loop run before each: rabbitmqctl blocks it,
   * and a loaded machine may take seconds to run it. */
  for (guint polls = 1;; polls++)
    {
      carehare_test_run_for (50);
      counts_on_broker (queue, &got_ready, &got_unacked);
      if (got_ready == ready && got_unacked == unacked)
        return;
      if (polls >= 2 && g_get_monotonic_time () > deadline)
        g_error ("queue %s: %u ready and %u unacknowledged after 20 s, not %u and %u",
                 queue, got_ready, got_unacked, ready, unacked);
    }
}

static void
test_prefetch_bounds_what_is_held (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < 50; i++)
    g_assert_true (publish_text (conn, "", queue, "m", &error));
  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  /* Take nothing: the broker sends prefetch_count and stops. */
  carehare_test_run_for (1000);
  g_assert_cmpuint (unacked_on_broker (queue), ==, 10);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 40);

  /* Taking and acking one lets exactly one more in. */
  {
    g_autoptr(CarehareDelivery) delivery = next_delivery (consumer, &error);

    g_assert_no_error (error);
    carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  }
  wait_for_counts_on_broker (queue, 39, 10);
  close_connection (conn);
}

static void
test_unacked_are_redelivered_after_close (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *wanted = carehare_test_unique_name ("redeliver");
  g_autofree char *queue = declare_queue (conn, wanted, NULL);
  g_autoptr(CarehareConsumer) first = NULL;
  g_autoptr(CarehareConsumer) second = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(GError) error = NULL;
  guint64 tags[3];

  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *text = g_strdup_printf ("m%u", i);

      g_assert_true (publish_text (conn, "", queue, text, &error));
    }

  first = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr(CarehareDelivery) delivery = next_delivery (first, &error);

      g_assert_no_error (error);
      g_assert_false (carehare_delivery_get_redelivered (delivery));
      tags[i] = carehare_delivery_get_delivery_tag (delivery);
    }
  /* Ack the first only; the others go back when the consumer closes. A
   * second consumer keeps the auto-delete queue alive meanwhile. */
  carehare_consumer_ack (first, tags[0]);
  second = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  carehare_consumer_close_async (first, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (first, closed, &error));
  /* After close, acks are dropped without fuss. */
  carehare_consumer_ack (first, tags[1]);
  carehare_consumer_nack (first, tags[2], TRUE);

  for (guint i = 1; i < 3; i++)
    {
      g_autoptr(CarehareDelivery) delivery = next_delivery (second, &error);
      g_autofree char *text = g_strdup_printf ("m%u", i);

      g_assert_no_error (error);
      assert_body (delivery, text);
      g_assert_true (carehare_delivery_get_redelivered (delivery));
      carehare_consumer_ack (second, carehare_delivery_get_delivery_tag (delivery));
    }
  close_connection (conn);
}

static void
test_nack_requeue_and_drop (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) d1 = NULL;
  g_autoptr(CarehareDelivery) d2 = NULL;
  g_autoptr(CarehareDelivery) d3 = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_true (publish_text (conn, "", queue, "again", &error));
  g_assert_true (publish_text (conn, "", queue, "drop", &error));
  consumer = start_consumer (conn, queue, 1, &error);
  g_assert_no_error (error);

  d1 = next_delivery (consumer, &error);
  assert_body (d1, "again");
  carehare_consumer_nack (consumer, carehare_delivery_get_delivery_tag (d1), TRUE);
  d2 = next_delivery (consumer, &error);
  assert_body (d2, "again");
  g_assert_true (carehare_delivery_get_redelivered (d2));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (d2));
  d3 = next_delivery (consumer, &error);
  assert_body (d3, "drop");
  carehare_consumer_nack (consumer, carehare_delivery_get_delivery_tag (d3), FALSE);
  /* Gone: neither held (the nack was taken) nor back in the queue (a
   * requeued one would be held again, prefetch 1 having room). */
  wait_for_counts_on_broker (queue, 0, 0);
  close_connection (conn);
}

typedef struct {
  guint n;
  GError *error;
} ConsumerClosed;

static void
consumer_closed_cb (CarehareConsumer *consumer,
                    const GError     *error,
                    gpointer          user_data)
{
  ConsumerClosed *rec = user_data;

  rec->n++;
  g_clear_error (&rec->error);
  if (error != NULL)
    rec->error = g_error_copy (error);
}

static void
test_close_consumer (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *wanted = carehare_test_unique_name ("close");
  /* Exclusive, not auto-delete: it must outlive its consumer. */
  g_autofree char *queue = declare_queue_with_flags (conn, wanted, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GAsyncResult) closed = NULL;
  g_autoptr(CarehareDelivery) none = NULL;
  g_autoptr(GError) error = NULL;
  ConsumerClosed rec = { 0 };

  consumer = start_consumer (conn, queue, 5, &error);
  g_assert_no_error (error);
  g_signal_connect (consumer, "closed", G_CALLBACK (consumer_closed_cb), &rec);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &pending);

  /* NULL callback: fire and forget. */
  carehare_consumer_close_async (consumer, NULL, NULL, NULL);
  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  none = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_null (none);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_cmpuint (rec.n, ==, 1);
  g_assert_null (rec.error);
  g_assert_true (carehare_consumer_get_is_closed (consumer));

  /* Later calls fail the same way; closing again is fine. */
  none = next_delivery (consumer, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &closed);
  carehare_test_wait_for_result (&closed, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (consumer, closed, &error));
  g_assert_cmpuint (rec.n, ==, 1);

  /* The broker no longer counts it. */
  {
    g_autoptr(GAsyncResult) result = NULL;
    g_autofree char *name = NULL;
    guint consumers = 99;

    carehare_test_run_for (200);
    carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                             carehare_test_store_result, &result);
    carehare_test_wait_for_result (&result, TIMEOUT_MS);
    name = carehare_connection_queue_declare_finish (conn, result, NULL, &consumers, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (consumers, ==, 0);
  }
  close_connection (conn);
}

static void
test_queue_deleted_cancels_consumer (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GAsyncResult) deleted = NULL;
  g_autoptr(CarehareDelivery) none = NULL;
  g_autoptr(GError) error = NULL;
  ConsumerClosed rec = { 0 };

  {
    g_autoptr(GAsyncResult) result = NULL;
    g_autofree char *name = carehare_test_unique_name ("deleted");

    carehare_connection_queue_declare_async (conn, name, CAREHARE_QUEUE_FLAGS_NONE, NULL, NULL,
                                             carehare_test_store_result, &result);
    carehare_test_wait_for_result (&result, TIMEOUT_MS);
    queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
    g_assert_no_error (error);
  }
  consumer = start_consumer (conn, queue, 5, &error);
  g_assert_no_error (error);
  g_signal_connect (consumer, "closed", G_CALLBACK (consumer_closed_cb), &rec);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &pending);

  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &deleted);
  carehare_test_wait_for_result (&deleted, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_delete_finish (conn, deleted, NULL, &error));

  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  none = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_null (none);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_nonnull (strstr (error->message, queue));
  g_clear_error (&error);
  g_assert_cmpuint (rec.n, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);

  none = next_delivery (consumer, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_clear_error (&rec.error);
  close_connection (conn);
}

/* The queue is deleted while the program holds two deliveries and three
 * more are buffered: the consumer ends (CHANNEL_CLOSED_BY_SERVER), the
 * buffered ones are lost with the queue, and acking the two held ones
 * harms nothing: the channel was kept open for them. */
static void
test_queue_deleted_with_deliveries_held (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *wanted = carehare_test_unique_name ("held");
  g_autofree char *queue = declare_queue_with_flags (conn, wanted, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) first = NULL;
  g_autoptr(CarehareDelivery) second = NULL;
  g_autoptr(CarehareDelivery) none = NULL;
  g_autoptr(GAsyncResult) deleted = NULL;
  g_autoptr(GError) error = NULL;
  ConsumerClosed rec = { 0 };
  guint n_channels;

  for (guint i = 0; i < 5; i++)
    g_assert_true (publish_text (conn, "", queue, "m", &error));
  consumer = start_consumer (conn, queue, 5, &error);
  g_assert_no_error (error);
  g_signal_connect (consumer, "closed", G_CALLBACK (consumer_closed_cb), &rec);
  first = next_delivery (consumer, &error);
  g_assert_no_error (error);
  second = next_delivery (consumer, &error);
  g_assert_no_error (error);
  carehare_test_run_for (200);

  carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &deleted);
  carehare_test_wait_for_result (&deleted, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_delete_finish (conn, deleted, NULL, &error));
  while (rec.n == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  none = next_delivery (consumer, &error);
  g_assert_null (none);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_clear_error (&error);

  /* The consumer's channel is still open for the two held ones... */
  carehare_test_run_for (200);
  n_channels = carehare_protocol_get_n_open_channels (_carehare_connection_get_protocol (conn));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (first));
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (_carehare_connection_get_protocol (conn)),
                    ==, n_channels);
  carehare_consumer_nack (consumer, carehare_delivery_get_delivery_tag (second), TRUE);
  /* ...and closed once they are settled, at the broker's Close-Ok (up to 20 s). */
  for (guint i = 0; i < 1000 && carehare_protocol_get_n_open_channels (
         _carehare_connection_get_protocol (conn)) == n_channels; i++)
    carehare_test_run_for (20);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (_carehare_connection_get_protocol (conn)),
                    ==, n_channels - 1);
  g_assert_cmpuint (rec.n, ==, 1);
  g_assert_false (carehare_connection_get_is_closed (conn));
  g_assert_true (publish_text (conn, "", "", "still open", &error));
  g_assert_no_error (error);
  g_clear_error (&rec.error);
  close_connection (conn);
}

static guint queue_consumer_count (CarehareConnection *conn, const char *queue);
static void wait_for_no_consumer (CarehareConnection *conn, const char *queue);

/* A consumer start cancelled once the program was told it runs reports
 * the running consumer, whenever the program calls finish: reporting
 * CANCELLED while the consumer ran on, out of the program's reach, took up
 * to prefetch_count messages nobody could ack. */
static void
test_consume_start_cancelled_after_consume_ok (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("cancel-started");
  g_autofree char *queue = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;

  queue = declare_queue_with_flags (conn, name, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_connection_acking_consumer_async (conn, queue, 0, 10, cancellable,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  /* The callback ran; the program cancels before it calls finish. */
  g_cancellable_cancel (cancellable);
  carehare_test_run_for (100);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  /* The result stays referenced, as a Python program keeping the
   * exception keeps it. */
  carehare_test_run_for (300);
  g_assert_no_error (error);
  g_assert_nonnull (consumer);
  g_assert_false (carehare_consumer_get_is_closed (consumer));
  g_assert_cmpuint (queue_consumer_count (conn, queue), ==, 1);

  g_clear_object (&consumer);
  g_clear_object (&result);
  delete_queue (conn, queue);
  close_connection (conn);
}

/* Cancelled before the library read the broker's answer: CANCELLED, and
 * nothing is left consuming. Whether the answer is already on its way
 * (@data: milliseconds slept before cancelling, without iterating) does
 * not matter: the result does not depend on the broker's speed. */
static void
test_consume_start_cancelled_before_read (gconstpointer data)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("cancel-start");
  g_autofree char *queue = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;

  queue = declare_queue_with_flags (conn, name, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  carehare_connection_acking_consumer_async (conn, queue, 0, 10, cancellable,
                                             carehare_test_store_result, &result);
  g_usleep (GPOINTER_TO_UINT (data) * 1000);
  g_cancellable_cancel (cancellable);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_null (consumer);
  g_clear_object (&result);
  wait_for_no_consumer (conn, queue);
  /* The connection goes on. */
  g_assert_false (carehare_connection_get_is_closed (conn));

  delete_queue (conn, queue);
  close_connection (conn);
}

/* Acking a tag twice (or a tag never delivered) would be a channel error
 * (406 PRECONDITION_FAILED "unknown delivery tag") that killed the
 * consumer: the library drops such acks, and the consumer goes on. */
static void
test_ack_twice (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;
  ConsumerClosed rec = { 0 };
  guint64 tag;

  g_assert_true (publish_text (conn, "", queue, "m", &error));
  consumer = start_consumer (conn, queue, 5, &error);
  g_assert_no_error (error);
  g_signal_connect (consumer, "closed", G_CALLBACK (consumer_closed_cb), &rec);
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  tag = carehare_delivery_get_delivery_tag (delivery);

  carehare_consumer_ack (consumer, tag);
  carehare_consumer_ack (consumer, tag);
  carehare_consumer_nack (consumer, tag, TRUE);
  carehare_consumer_ack (consumer, tag + 1000);
  carehare_test_run_for (300);
  g_assert_cmpuint (rec.n, ==, 0);
  g_assert_false (carehare_consumer_get_is_closed (consumer));

  /* The consumer goes on receiving. */
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *text = g_strdup_printf ("after %u", i);

      g_clear_object (&delivery);
      g_assert_true (publish_text (conn, "", queue, text, &error));
      delivery = next_delivery (consumer, &error);
      g_assert_no_error (error);
      assert_body (delivery, text);
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  carehare_test_run_for (200);
  g_assert_cmpuint (rec.n, ==, 0);
  wait_for_counts_on_broker (queue, 0, 0);
  g_assert_false (carehare_connection_get_is_closed (conn));
  close_connection (conn);
  g_assert_cmpuint (rec.n, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (rec.error));
  g_clear_error (&rec.error);
}

static void
test_connection_close_ends_consumer (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(CarehareDelivery) none = NULL;
  g_autoptr(GError) error = NULL;
  ConsumerClosed rec = { 0 };

  consumer = start_consumer (conn, queue, 5, &error);
  g_signal_connect (consumer, "closed", G_CALLBACK (consumer_closed_cb), &rec);
  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &pending);
  close_connection (conn);
  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  none = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_assert_cmpuint (rec.n, ==, 1);
  g_assert_error (rec.error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (rec.error));
  g_clear_error (&rec.error);
}

static void
test_cancel_next_delivery (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;

  consumer = start_consumer (conn, queue, 5, &error);
  carehare_consumer_next_delivery_async (consumer, cancellable, carehare_test_store_result, &pending);
  carehare_test_run_for (100);
  g_cancellable_cancel (cancellable);
  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  delivery = carehare_consumer_next_delivery_finish (consumer, pending, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);

  /* The message goes to the next caller instead. */
  g_assert_true (publish_text (conn, "", queue, "still here", &error));
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  assert_body (delivery, "still here");
  close_connection (conn);
}

static GPtrArray *
next_deliveries (CarehareConsumer  *consumer,
                 guint              max,
                 GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_consumer_next_deliveries_async (consumer, max, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_consumer_next_deliveries_finish (consumer, result, error);
}

static void
test_next_deliveries_in_batches (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GAsyncResult) pending = NULL;
  g_autoptr(GPtrArray) none = NULL;
  g_autoptr(GError) error = NULL;
  guint received = 0;
  guint batches = 0;
  gboolean saw_many = FALSE;

  for (guint i = 0; i < 40; i++)
    {
      g_autofree char *text = g_strdup_printf ("%u", i);

      g_assert_true (publish_text (conn, "", queue, text, &error));
    }
  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);

  while (received < 40)
    {
      g_autoptr(GPtrArray) batch = next_deliveries (consumer, batches % 2 == 0 ? 0 : 3, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (batch->len, >=, 1);
      /* Never more than asked for, nor than prefetch lets in. */
      g_assert_cmpuint (batch->len, <=, batches % 2 == 0 ? 10 : 3);
      saw_many |= batch->len > 1;
      for (guint i = 0; i < batch->len; i++)
        {
          CarehareDelivery *delivery = g_ptr_array_index (batch, i);
          g_autofree char *expected = g_strdup_printf ("%u", received++);

          assert_body (delivery, expected);
          carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
        }
      batches++;
    }
  g_test_message ("40 messages in %u batches", batches);
  g_assert_true (saw_many);

  /* A waiting call ends with the consumer, like next_delivery. */
  carehare_consumer_next_deliveries_async (consumer, 0, NULL, carehare_test_store_result, &pending);
  carehare_consumer_close_async (consumer, NULL, NULL, NULL);
  carehare_test_wait_for_result (&pending, TIMEOUT_MS);
  none = carehare_consumer_next_deliveries_finish (consumer, pending, &error);
  g_assert_null (none);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
  g_assert_false (carehare_error_is_transient (error));
  close_connection (conn);
}

static void
dropped_consumer_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  guint *n = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  /* The call got the next message: the consumer was alive all along. */
  delivery = carehare_consumer_next_delivery_finish (CAREHARE_CONSUMER (source), result, &error);
  g_assert_no_error (error);
  assert_body (delivery, "for the dropped consumer");
  carehare_consumer_ack (CAREHARE_CONSUMER (source),
                         carehare_delivery_get_delivery_tag (delivery));
  (*n)++;
}

static guint
queue_consumer_count (CarehareConnection *conn,
                      const char         *queue)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  guint count = 99;

  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  name = carehare_connection_queue_declare_finish (conn, result, NULL, &count, &error);
  g_assert_no_error (error);
  return count;
}

/* Waits until the broker counts no consumer on @queue, failing after 20 s.
 * For a consumer whose channel the library closes on its own (a cancelled
 * start, a dropped consumer): the program is not told when the broker is
 * done, and RabbitMQ does not order that channel's close with the
 * queue.declare asking on another. */
static void
wait_for_no_consumer (CarehareConnection *conn,
                      const char         *queue)
{
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  guint count;

  while ((count = queue_consumer_count (conn, queue)) > 0)
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("queue %s still has %u consumers after 20 s", queue, count);
      carehare_test_run_for (50);
    }
}

/* A waiting next_delivery holds the consumer, as a pending GIO call holds
 * its object: dropping the program's last reference does not end it (it
 * did before issue 13: the call failed with CHANNEL_CLOSED). The call gets
 * the next message; then, with nothing pending and no reference left, the
 * consumer is freed and stops consuming. */
static void
test_drop_consumer_with_pending (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue_with_flags (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                     NULL);
  g_autoptr(GError) error = NULL;
  CarehareConsumer *consumer = start_consumer (conn, queue, 5, &error);
  g_autoptr(GObject) alive = NULL;
  GWeakRef weak;
  guint n = 0;

  g_assert_no_error (error);
  g_weak_ref_init (&weak, consumer);
  carehare_consumer_next_delivery_async (consumer, NULL, dropped_consumer_cb, &n);
  g_object_unref (consumer);
  carehare_test_run_for (100);
  g_assert_cmpuint (n, ==, 0);
  alive = g_weak_ref_get (&weak);
  g_assert_nonnull (alive);
  g_clear_object (&alive);
  g_assert_cmpuint (queue_consumer_count (conn, queue), ==, 1);

  g_assert_true (publish_text (conn, "", queue, "for the dropped consumer", &error));
  g_assert_no_error (error);
  while (n < 1)
    g_main_context_iteration (NULL, TRUE);
  carehare_test_run_for (100);
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);

  /* The broker has no consumer left on the queue; the connection is fine. */
  wait_for_no_consumer (conn, queue);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 0);
  close_connection (conn);
}

/* AMQP's empty queue name means "the last queue declared on this
 * channel"; channels are pooled, so it would act on the durable queue
 * declared just before. Every call that names an existing queue refuses
 * it before sending anything. */
static void
test_empty_queue_name_refused (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *wanted = carehare_test_unique_name ("durable");
  g_autofree char *queue = declare_queue_with_flags (conn, wanted, CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
  GAsyncResult *results[5] = { NULL };
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < 3; i++)
    g_assert_true (publish_text (conn, "", queue, "keep me", &error));
  /* Declared last on the channel the next operation gets from the pool. */
  g_free (declare_queue_with_flags (conn, queue, CAREHARE_QUEUE_FLAGS_DURABLE, NULL));

  carehare_connection_queue_purge_async (conn, "", NULL, carehare_test_store_result, &results[0]);
  carehare_connection_queue_delete_async (conn, "", CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          carehare_test_store_result, &results[1]);
  carehare_connection_queue_bind_async (conn, "", "amq.direct", "k", NULL, NULL,
                                        carehare_test_store_result, &results[2]);
  carehare_connection_queue_unbind_async (conn, "", "amq.direct", "k", NULL, NULL,
                                          carehare_test_store_result, &results[3]);
  carehare_connection_acking_consumer_async (conn, "", 0, 10, NULL,
                                             carehare_test_store_result, &results[4]);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    carehare_test_wait_for_result (&results[i], TIMEOUT_MS);

  g_assert_false (carehare_connection_queue_purge_finish (conn, results[0], NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_false (carehare_connection_queue_delete_finish (conn, results[1], NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_false (carehare_connection_queue_bind_finish (conn, results[2], &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_false (carehare_connection_queue_unbind_finish (conn, results[3], &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  g_assert_null (carehare_connection_acking_consumer_finish (conn, results[4], &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    g_object_unref (results[i]);

  /* The durable queue is intact: its 3 messages, no consumer. */
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 3);
  {
    g_autoptr(GAsyncResult) deleted = NULL;
    guint count = 0;

    carehare_connection_queue_delete_async (conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                            carehare_test_store_result, &deleted);
    carehare_test_wait_for_result (&deleted, TIMEOUT_MS);
    g_assert_true (carehare_connection_queue_delete_finish (conn, deleted, &count, &error));
    g_assert_cmpuint (count, ==, 3);
  }
  close_connection (conn);
}

/* RabbitMQ closes the whole connection (540 NOT_IMPLEMENTED) for a
 * prefetch_size other than 0: the start fails alone instead. */
static void
test_prefetch_size_refused (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_acking_consumer_async (conn, queue, 4096, 10, NULL,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_null (consumer);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, "4096"));
  g_clear_error (&error);

  /* The connection survives. */
  carehare_test_run_for (200);
  g_assert_false (carehare_connection_get_is_closed (conn));
  g_assert_true (publish_text (conn, "", queue, "still open", &error));
  g_assert_no_error (error);
  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  close_connection (conn);
}

static gboolean
broker_lists_connection (const char *connection_name)
{
  g_autofree char *list = carehare_test_broker_ctl ("list_connections", "--quiet",
                                                    "--no-table-headers", "client_properties",
                                                    NULL);

  return strstr (list, connection_name) != NULL;
}

/* A consumer start that fails at once (a 300-byte queue name), with a
 * cancellable, leaves nothing behind: the program drops the connection,
 * the object is finalized and the broker sees the socket close. */
static void
test_failed_start_does_not_pin_connection (void)
{
  g_autofree char *name = carehare_test_unique_name ("pinned");
  g_autofree char *suffix = g_strdup_printf ("/?connection_name=%s", name);
  g_autofree char *uri = carehare_test_amqp_uri_with (suffix);
  g_autofree char *long_queue = g_strnfill (300, 'q');
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn = carehare_test_connect (uri);
  GWeakRef weak;
  guint waited = 0;

  g_weak_ref_init (&weak, conn);
  while (!broker_lists_connection (name) && waited++ < 50)
    carehare_test_run_for (100);
  g_assert_true (broker_lists_connection (name));

  carehare_connection_acking_consumer_async (conn, long_queue, 0, 10, cancellable,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_null (consumer);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_object (&result);

  g_object_unref (conn);
  carehare_test_run_for (100);
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
  waited = 0;
  while (broker_lists_connection (name) && waited++ < 50)
    carehare_test_run_for (100);
  g_assert_false (broker_lists_connection (name));
  /* Cancelling later touches nothing that is gone. */
  g_cancellable_cancel (cancellable);
  carehare_test_run_for (50);
}

/* The same on a connection that is already closed. */
static void
test_failed_start_on_closed_connection (void)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn = carehare_test_connect (carehare_test_amqp_uri ());
  GWeakRef weak;

  g_weak_ref_init (&weak, conn);
  close_connection (conn);
  carehare_connection_acking_consumer_async (conn, "q", 0, 10, cancellable,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_null (consumer);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_true (carehare_error_is_transient (error));
  g_clear_object (&result);

  g_object_unref (conn);
  carehare_test_run_for (100);
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
  g_cancellable_cancel (cancellable);
  carehare_test_run_for (50);
}

/* ---- max_body_size --------------------------------------------------------- */

/* With max_body_size 1024, a 2 KiB message another program published is
 * not received: next_delivery fails once with MESSAGE_TOO_LARGE naming the
 * size and the limit, the broker got a reject without requeue (so the
 * queue's dead-letter exchange has it), and the next message arrives on
 * the same consumer and connection. */
static void
check_message_too_large (CarehareConnection *conn)
{
  g_autofree char *dead_name = carehare_test_unique_name ("too-large-dead");
  g_autofree char *dead = declare_queue (conn, dead_name, NULL);
  g_autofree char *name = carehare_test_unique_name ("too-large");
  g_autofree char *queue = declare_queue (conn, name, g_variant_new_parsed (
    "{'x-dead-letter-exchange': <''>, 'x-dead-letter-routing-key': <%s>}", dead));
  g_autoptr(GBytes) big = g_bytes_new_take (g_malloc0 (2048), 2048);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareConsumer) dead_consumer = NULL;
  g_autoptr(CarehareDelivery) small = NULL;
  g_autoptr(GError) error = NULL;

  /* Publishing is not limited: the limit is for what arrives. */
  g_assert_true (publish (conn, "", queue, big, NULL, CAREHARE_PUBLISH_FLAGS_NONE, &error));
  g_assert_no_error (error);
  g_assert_true (publish_text (conn, "", queue, "small", &error));
  g_assert_no_error (error);

  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  g_assert_null (next_delivery (consumer, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE);
  g_assert_false (carehare_error_is_transient (error));
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "2048 bytes"));
  g_assert_nonnull (strstr (error->message, "1024 bytes"));
  g_clear_error (&error);
  g_assert_false (carehare_consumer_get_is_closed (consumer));

  small = next_delivery (consumer, &error);
  g_assert_no_error (error);
  assert_body (small, "small");
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (small));

  /* Dead-lettered whole, not requeued: nothing is lost, and a consumer
   * without the limit could take it. Here it is still too large. */
  dead_consumer = start_consumer (conn, dead, 1, &error);
  g_assert_no_error (error);
  g_assert_null (next_delivery (dead_consumer, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE);
  g_assert_false (carehare_error_is_transient (error));
  g_clear_error (&error);

  g_assert_false (carehare_connection_get_is_closed (conn));
  close_connection (conn);
}

static void
test_message_too_large_uri (void)
{
  g_autofree char *uri = carehare_test_amqp_uri_with ("/?max_body_size=1024");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);

  check_message_too_large (conn);
}

/* The property wins over the URI's max_body_size. */
static void
test_message_too_large_property (void)
{
  g_autofree char *uri = carehare_test_amqp_uri_with ("/?max_body_size=1000000");
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GObject) source = NULL;
  g_autoptr(GError) error = NULL;
  guint64 value = 0;

  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, NULL,
                              carehare_test_store_result, &result,
                              "uri", uri, "max-body-size", (guint64) 1024, NULL);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  source = g_async_result_get_source_object (result);
  conn = CAREHARE_CONNECTION (g_async_initable_new_finish (G_ASYNC_INITABLE (source), result,
                                                           &error));
  g_assert_no_error (error);
  g_object_get (conn, "max-body-size", &value, NULL);
  g_assert_cmpuint (value, ==, 1024);
  check_message_too_large (conn);
}

/* ---- consumer options (issue 14) ----------------------------------------- */

static CarehareConsumer *
start_consumer_full (CarehareConnection   *conn,
                     const char           *queue,
                     guint16               prefetch,
                     CarehareConsumeFlags  flags,
                     const char           *tag,
                     GVariant             *arguments,
                     GError              **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_acking_consumer_full_async (conn, queue, 0, prefetch, flags, tag, arguments,
                                                  NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_acking_consumer_full_finish (conn, result, error);
}

/* Whether @consumer gets no message within @ms. */
static gboolean
gets_nothing (CarehareConsumer *consumer,
              guint             ms)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  carehare_consumer_next_delivery_async (consumer, cancellable, carehare_test_store_result,
                                         &result);
  carehare_test_run_for (ms);
  g_cancellable_cancel (cancellable);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
  return delivery == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* An exclusive consumer: a second one on its queue, from this connection
 * or another, fails 403 ACCESS_REFUSED; the first goes on consuming. */
static void
test_consume_exclusive (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareConnection) other = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(CarehareConsumer) first = NULL;
  g_autoptr(CarehareConsumer) second = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GError) error = NULL;

  first = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_EXCLUSIVE, NULL, NULL,
                               &error);
  g_assert_no_error (error);
  second = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL, NULL, &error);
  g_assert_null (second);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);
  g_clear_error (&error);
  second = start_consumer_full (other, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL, NULL,
                                &error);
  g_assert_null (second);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);
  g_clear_error (&error);

  g_assert_true (publish_text (conn, "", queue, "still mine", &error));
  delivery = next_delivery (first, &error);
  g_assert_no_error (error);
  assert_body (delivery, "still mine");
  carehare_consumer_ack (first, carehare_delivery_get_delivery_tag (delivery));
  close_connection (other);
  close_connection (conn);
}

/* x-priority 10 and 0 on one queue, both with prefetch 1: while the high
 * one has room, every message goes to it and the low one gets nothing;
 * only while the high one holds its one message does the next go to the
 * low one. Before each publish the broker is seen to have the previous ack
 * (no unacknowledged message left): an ack travels on the consumer's
 * channel and a publish on another, and RabbitMQ does not order the two,
 * so "ack, then publish" alone could still find the high one full. */
static void
test_consume_priority (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *queue = declare_queue (conn, "", NULL);
  g_autoptr(GVariant) low_args = g_variant_ref_sink (g_variant_new_parsed ("{'x-priority': <0>}"));
  g_autoptr(GVariant) high_args = g_variant_ref_sink (g_variant_new_parsed ("{'x-priority': <10>}"));
  g_autoptr(CarehareConsumer) low = NULL;
  g_autoptr(CarehareConsumer) high = NULL;
  g_autoptr(CarehareDelivery) held = NULL;
  g_autoptr(CarehareDelivery) spill = NULL;
  g_autoptr(GError) error = NULL;

  low = start_consumer_full (conn, queue, 1, CAREHARE_CONSUME_FLAGS_NONE, NULL, low_args, &error);
  g_assert_no_error (error);
  high = start_consumer_full (conn, queue, 1, CAREHARE_CONSUME_FLAGS_NONE, NULL, high_args,
                              &error);
  g_assert_no_error (error);

  for (guint i = 0; i < 5; i++)
    {
      g_autofree char *text = g_strdup_printf ("for the high one %u", i);
      g_autoptr(CarehareDelivery) delivery = NULL;

      g_assert_true (publish_text (conn, "", queue, text, &error));
      delivery = next_delivery (high, &error);
      g_assert_no_error (error);
      assert_body (delivery, text);
      carehare_consumer_ack (high, carehare_delivery_get_delivery_tag (delivery));
      wait_for_counts_on_broker (queue, 0, 0);
    }
  /* Had any of them gone to the low one, it would hold it. */
  g_assert_true (gets_nothing (low, 200));

  /* The high one full (its one message unacknowledged): the next goes to
   * the low one. */
  g_assert_true (publish_text (conn, "", queue, "held", &error));
  held = next_delivery (high, &error);
  g_assert_no_error (error);
  assert_body (held, "held");
  g_assert_true (publish_text (conn, "", queue, "spill", &error));
  spill = next_delivery (low, &error);
  g_assert_no_error (error);
  assert_body (spill, "spill");
  carehare_consumer_ack_up_to (high, carehare_delivery_get_delivery_tag (held));
  carehare_consumer_ack (low, carehare_delivery_get_delivery_tag (spill));
  close_connection (conn);
}

/* Takes @n deliveries from @consumer, acking each, and checks their bodies
 * are @first, @first + 1, ... */
static void
assert_stream_from (CarehareConsumer *consumer,
                    guint             first,
                    guint             n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CarehareDelivery) delivery = next_delivery (consumer, &error);
      g_autofree char *expected = g_strdup_printf ("%u", first + i);

      g_assert_no_error (error);
      assert_body (delivery, expected);
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
}

/* A RabbitMQ stream read from "first", from offset 50, from a timestamp,
 * from "next" and from "last"; acks give the stream consumer credit (prefetch 10 for
 * 100 messages). */
static void
test_consume_stream (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("stream");
  g_autoptr(GVariant) stream = g_variant_ref_sink (
    g_variant_new_parsed ("{'x-queue-type': <'stream'>}"));
  g_autofree char *queue = NULL;
  g_autoptr(GError) error = NULL;
  const char *offsets[] = { "first", "last", "next" };
  g_autoptr(CarehareConsumer) from_first = NULL;
  g_autoptr(CarehareConsumer) from_50 = NULL;
  g_autoptr(CarehareConsumer) from_time = NULL;
  g_autoptr(CarehareConsumer) from_next = NULL;
  g_autoptr(CarehareConsumer) from_last = NULL;
  GVariantDict dict;

  queue = declare_queue_with_flags (conn, name, CAREHARE_QUEUE_FLAGS_DURABLE, stream);
  for (guint i = 0; i < 100; i++)
    {
      g_autofree char *text = g_strdup_printf ("%u", i);

      g_assert_true (publish_text (conn, "", queue, text, &error));
      g_assert_no_error (error);
    }

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "x-stream-offset", "s", offsets[0]);
  from_first = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL,
                                    g_variant_dict_end (&dict), &error);
  g_assert_no_error (error);
  assert_stream_from (from_first, 0, 100);

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "x-stream-offset", "x", G_GINT64_CONSTANT (50));
  from_50 = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL,
                                 g_variant_dict_end (&dict), &error);
  g_assert_no_error (error);
  assert_stream_from (from_50, 50, 50);

  /* A timestamp from before the first message: the whole stream. */
  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "x-stream-offset", "t",
                         (guint64) (g_get_real_time () / G_USEC_PER_SEC - 3600));
  from_time = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL,
                                   g_variant_dict_end (&dict), &error);
  g_assert_no_error (error);
  assert_stream_from (from_time, 0, 100);

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "x-stream-offset", "s", offsets[2]);
  from_next = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL,
                                   g_variant_dict_end (&dict), &error);
  g_assert_no_error (error);
  g_assert_true (gets_nothing (from_next, 300));
  g_assert_true (publish_text (conn, "", queue, "100", &error));
  assert_stream_from (from_next, 100, 1);

  /* "last": from the start of the stream's last chunk (where RabbitMQ cut
   * it is its own choice), so a run of consecutive messages that ends with
   * the newest one. */
  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "x-stream-offset", "s", offsets[1]);
  from_last = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, NULL,
                                   g_variant_dict_end (&dict), &error);
  g_assert_no_error (error);
  {
    guint64 expected = G_MAXUINT64;

    while (expected != 101)
      {
        g_autoptr(CarehareDelivery) delivery = next_delivery (from_last, &error);
        GBytes *body;
        g_autofree char *text = NULL;
        guint64 index;

        g_assert_no_error (error);
        body = carehare_delivery_get_body (delivery);
        text = g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
        index = g_ascii_strtoull (text, NULL, 10);
        if (expected != G_MAXUINT64)
          g_assert_cmpuint (index, ==, expected);
        g_assert_cmpuint (index, <=, 100);
        expected = index + 1;
        carehare_consumer_ack (from_last, carehare_delivery_get_delivery_tag (delivery));
      }
  }

  g_clear_object (&from_first);
  g_clear_object (&from_last);
  g_clear_object (&from_50);
  g_clear_object (&from_time);
  g_clear_object (&from_next);
  delete_queue (conn, queue);
  close_connection (conn);
}

/* A chosen consumer tag is the consumer's and its deliveries'; the same
 * tag again on this connection is refused, naming it, before anything is
 * sent; once the first consumer is closed the tag is free. */
static void
test_consume_chosen_tag (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  /* Not auto-delete: it outlives the first consumer. */
  g_autofree char *queue = declare_queue_with_flags (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL);
  g_autofree char *tag = carehare_test_unique_name ("tag");
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareConsumer) again = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  consumer = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, tag, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (carehare_consumer_get_consumer_tag (consumer), ==, tag);
  g_assert_true (publish_text (conn, "", queue, "tagged", &error));
  delivery = next_delivery (consumer, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (carehare_delivery_get_consumer_tag (delivery), ==, tag);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  again = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, tag, NULL, &error);
  g_assert_null (again);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS);
  g_assert_false (carehare_error_is_transient (error));
  g_assert_nonnull (strstr (error->message, tag));
  g_clear_error (&error);
  g_assert_false (carehare_consumer_get_is_closed (consumer));

  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_consumer_close_finish (consumer, result, &error));
  g_assert_no_error (error);
  again = start_consumer_full (conn, queue, 10, CAREHARE_CONSUME_FLAGS_NONE, tag, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (carehare_consumer_get_consumer_tag (again), ==, tag);
  close_connection (conn);
}

/* ack_up_to settles every delivery up to a tag at once; nack_up_to with
 * requeue brings the rest back, redelivered; settling again, below, or an
 * unknown tag sends nothing and the consumer goes on. */
static void
test_consume_settle_up_to (void)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *name = carehare_test_unique_name ("up-to");
  g_autofree char *queue = declare_queue_with_flags (conn, name, CAREHARE_QUEUE_FLAGS_NONE, NULL);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GPtrArray) deliveries = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GError) error = NULL;
  guint64 seventh, last;

  consumer = start_consumer (conn, queue, 10, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 10; i++)
    {
      g_autofree char *text = g_strdup_printf ("%u", i);

      g_assert_true (publish_text (conn, "", queue, text, &error));
    }
  for (guint i = 0; i < 10; i++)
    {
      CarehareDelivery *delivery = next_delivery (consumer, &error);

      g_assert_no_error (error);
      g_ptr_array_add (deliveries, delivery);
    }
  g_assert_cmpuint (unacked_on_broker (queue), ==, 10);
  seventh = carehare_delivery_get_delivery_tag (deliveries->pdata[6]);
  last = carehare_delivery_get_delivery_tag (deliveries->pdata[9]);

  /* 0 is no delivery's tag (a call's reply has it): never "all of them". */
  carehare_consumer_ack_up_to (consumer, 0);
  carehare_consumer_nack_up_to (consumer, 0, FALSE);
  carehare_test_run_for (100);
  g_assert_cmpuint (unacked_on_broker (queue), ==, 10);

  carehare_consumer_ack_up_to (consumer, seventh);
  /* Again, below, and unknown: nothing is sent, nothing breaks. */
  carehare_consumer_ack_up_to (consumer, seventh);
  carehare_consumer_ack_up_to (consumer, seventh - 3);
  carehare_consumer_ack (consumer, seventh - 1);
  carehare_consumer_nack_up_to (consumer, seventh, TRUE);
  carehare_consumer_ack_up_to (consumer, last + 1000);
  carehare_test_run_for (200);
  g_assert_false (carehare_consumer_get_is_closed (consumer));
  wait_for_counts_on_broker (queue, 0, 3);

  carehare_consumer_nack_up_to (consumer, last, TRUE);
  for (guint i = 7; i < 10; i++)
    {
      g_autoptr(CarehareDelivery) delivery = next_delivery (consumer, &error);
      g_autofree char *expected = g_strdup_printf ("%u", i);

      g_assert_no_error (error);
      g_assert_true (carehare_delivery_get_redelivered (delivery));
      assert_body (delivery, expected);
      if (i == 9)
        carehare_consumer_ack_up_to (consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  carehare_test_run_for (200);
  g_assert_false (carehare_consumer_get_is_closed (consumer));
  wait_for_counts_on_broker (queue, 0, 0);

  g_clear_object (&consumer);
  delete_queue (conn, queue);
  close_connection (conn);
}

/* A 1 MiB and a 5 MiB body (mapped of its own) both in flight; the
 * ::delivery handler of the first acks it, closes the consumer and drops
 * the program's reference, while the second is being read in place (or
 * about to be). The second is delivered again, whole, to the next
 * consumer; the first is gone: nothing lost, nothing doubled. */
typedef struct {
  GBytes *first;
  guint n;
  GAsyncResult *closed;
  CarehareConsumer **consumer;
} CloseMidBody;

static void
close_mid_body_on_delivery (CarehareConsumer *consumer,
                            CarehareDelivery *delivery,
                            gpointer          user_data)
{
  CloseMidBody *c = user_data;

  c->n++;
  g_assert_true (g_bytes_equal (carehare_delivery_get_body (delivery), c->first));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &c->closed);
  g_clear_object (c->consumer);
}

static GBytes *
patterned_body (gsize  size,
                guint8 seed)
{
  guint8 *data = g_malloc (size);

  for (gsize j = 0; j < size; j++)
    data[j] = (guint8) (j * 7 + j / 65521 + seed);
  return g_bytes_new_take (data, size);
}

static void
test_close_mid_large_body (gconstpointer data)
{
  guint16 prefetch = GPOINTER_TO_UINT (data);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  /* Exclusive, not auto-deleted: it outlives the first consumer. */
  g_autofree char *queue = declare_queue_with_flags (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                     NULL);
  g_autoptr(GBytes) first = patterned_body (1024 * 1024, 1);
  g_autoptr(GBytes) second = patterned_body (5 * 1024 * 1024, 2);
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) again = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;
  CloseMidBody c = { first, 0, NULL, &consumer };
  Counter counter = { 0 };

  carehare_connection_publish_async (conn, "", queue, first, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, count_publish_cb, &counter);
  carehare_connection_publish_async (conn, "", queue, second, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, count_publish_cb, &counter);
  while (counter.done < 2)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (counter.first_error);

  consumer = start_consumer (conn, queue, prefetch, &error);
  g_assert_no_error (error);
  g_signal_connect (consumer, "delivery", G_CALLBACK (close_mid_body_on_delivery), &c);
  carehare_test_wait_for_result (&c.closed, TIMEOUT_MS);
  g_clear_object (&c.closed);
  g_assert_null (consumer);
  g_assert_cmpuint (c.n, ==, 1);

  consumer = start_consumer (conn, queue, prefetch, &error);
  g_assert_no_error (error);
  again = next_delivery (consumer, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (carehare_delivery_get_body (again), second));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (again));
  g_clear_object (&consumer);
  g_assert_cmpuint (queue_message_count (conn, queue), ==, 0);
  close_connection (conn);
  /* The body (mapped of its own) outlives the delivery and the connection. */
  body = g_bytes_ref (carehare_delivery_get_body (again));
  g_clear_object (&again);
  g_clear_object (&conn);
  g_assert_true (g_bytes_equal (body, second));
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/publish/round-trip-every-property", test_round_trip_every_property);
  g_test_add_func ("/publish/empty-and-large-bodies", test_empty_and_large_bodies);
  g_test_add_func ("/consume/large-bodies-in-flight", test_large_bodies_in_flight);
  g_test_add_data_func ("/consume/close-mid-large-body/prefetch-1", GUINT_TO_POINTER (1),
                        test_close_mid_large_body);
  g_test_add_data_func ("/consume/close-mid-large-body/prefetch-2", GUINT_TO_POINTER (2),
                        test_close_mid_large_body);
  g_test_add_func ("/publish/many-in-flight-in-order", test_many_in_flight_arrive_in_order);
  g_test_add_func ("/publish/nack", test_nack_for_that_message_only);
  g_test_add_func ("/publish/channel-error", test_channel_error_fails_that_exchange_only);
  g_test_add_func ("/publish/mandatory-unroutable", test_mandatory_unroutable);
  g_test_add_func ("/publish/mandatory-return-matches-its-publish",
                   test_mandatory_return_matches_its_publish);
  g_test_add_func ("/publish/cancelled-after-written", test_publish_cancelled_after_written);
  g_test_add_func ("/publish/channel-max-reclaim", test_publish_channel_max_reclaim);
  g_test_add_func ("/publish/invalid-properties", test_publish_invalid_properties);
  g_test_add_func ("/publish/non-finite-refused", test_non_finite_refused);
  g_test_add_func ("/publish/after-close", test_publish_after_close);
  g_test_add_func ("/consume/missing-queue", test_consume_missing_queue);
  g_test_add_func ("/consume/prefetch-bounds-what-is-held", test_prefetch_bounds_what_is_held);
  g_test_add_func ("/consume/message-too-large/uri", test_message_too_large_uri);
  g_test_add_func ("/consume/message-too-large/property", test_message_too_large_property);
  g_test_add_func ("/consume/unacked-redelivered-after-close", test_unacked_are_redelivered_after_close);
  g_test_add_func ("/consume/nack-requeue-and-drop", test_nack_requeue_and_drop);
  g_test_add_func ("/consume/close", test_close_consumer);
  g_test_add_func ("/consume/queue-deleted", test_queue_deleted_cancels_consumer);
  g_test_add_func ("/consume/ack-twice", test_ack_twice);
  g_test_add_data_func ("/consume/start-cancelled-at-once", GUINT_TO_POINTER (0),
                        test_consume_start_cancelled_before_read);
  g_test_add_data_func ("/consume/start-cancelled-answer-unread", GUINT_TO_POINTER (300),
                        test_consume_start_cancelled_before_read);
  g_test_add_func ("/consume/start-cancelled-after-consume-ok",
                   test_consume_start_cancelled_after_consume_ok);
  g_test_add_func ("/consume/queue-deleted-with-deliveries-held",
                   test_queue_deleted_with_deliveries_held);
  g_test_add_func ("/consume/connection-closed", test_connection_close_ends_consumer);
  g_test_add_func ("/consume/cancel-next-delivery", test_cancel_next_delivery);
  g_test_add_func ("/consume/next-deliveries-in-batches", test_next_deliveries_in_batches);
  g_test_add_func ("/consume/drop-last-reference", test_drop_consumer_with_pending);
  g_test_add_func ("/consume/empty-queue-name", test_empty_queue_name_refused);
  g_test_add_func ("/consume/prefetch-size-refused", test_prefetch_size_refused);
  g_test_add_func ("/consume/options/exclusive", test_consume_exclusive);
  g_test_add_func ("/consume/options/priority", test_consume_priority);
  g_test_add_func ("/consume/options/stream", test_consume_stream);
  g_test_add_func ("/consume/options/chosen-tag", test_consume_chosen_tag);
  g_test_add_func ("/consume/settle-up-to", test_consume_settle_up_to);
  g_test_add_func ("/consume/failed-start-does-not-pin-connection",
                   test_failed_start_does_not_pin_connection);
  g_test_add_func ("/consume/failed-start-on-closed-connection",
                   test_failed_start_on_closed_connection);

  return g_test_run ();
}
