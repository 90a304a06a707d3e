/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Messages from other programs, against the private broker: rabbitmq-c
 * (librabbitmq) publishes what RabbitMQ accepts and confirms but what a
 * strict decoder chokes on (property strings that are not UTF-8 or hold a
 * NUL, a header key that is not UTF-8, a reserved property flag bit,
 * headers nested 100 deep, a routing key that is not UTF-8), then a good
 * message. A carehare consumer of that queue must get the good message and
 * keep its connection: odd strings are decoded leniently, and a header that
 * cannot be represented fails that delivery alone (rejected without
 * requeue, so the queue's dead-letter exchange catches it).
 */
#include "carehare-test-util.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <string.h>

#define TIMEOUT_MS 30000
#define CHANNEL 1

#define REPLACEMENT "\xef\xbf\xbd"

typedef enum {
  FOREIGN_CORRELATION_ID_FF_FE,
  FOREIGN_CORRELATION_ID_NUL,
  FOREIGN_CORRELATION_ID_LATIN1,
  FOREIGN_HEADER_KEY_NOT_UTF8,
  FOREIGN_ROUTING_KEY_NOT_UTF8,
  FOREIGN_RESERVED_FLAG_BIT,
  FOREIGN_DEEP_HEADERS,
  FOREIGN_GOOD,
} ForeignKind;

/* ---- the other program: rabbitmq-c ---------------------------------------- */

static void
check_reply (amqp_rpc_reply_t  reply,
             const char       *what)
{
  if (reply.reply_type != AMQP_RESPONSE_NORMAL)
    g_error ("rabbitmq-c: %s failed (reply type %d)", what, reply.reply_type);
}

static amqp_connection_state_t
foreign_connect (void)
{
  const char *port = g_getenv ("CAREHARE_TEST_BROKER_PORT");
  amqp_connection_state_t conn = amqp_new_connection ();
  amqp_socket_t *socket = amqp_tcp_socket_new (conn);
  struct timeval timeout = { 20, 0 };

  g_assert_nonnull (port);
  g_assert_nonnull (socket);
  if (amqp_socket_open_noblock (socket, "127.0.0.1", atoi (port), &timeout) != AMQP_STATUS_OK)
    g_error ("rabbitmq-c cannot connect to the broker");
  check_reply (amqp_login (conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
               "login");
  amqp_channel_open (conn, CHANNEL);
  check_reply (amqp_get_rpc_reply (conn), "channel.open");
  amqp_confirm_select (conn, CHANNEL);
  check_reply (amqp_get_rpc_reply (conn), "confirm.select");
  return conn;
}

static void
foreign_disconnect (amqp_connection_state_t conn)
{
  check_reply (amqp_channel_close (conn, CHANNEL, AMQP_REPLY_SUCCESS), "channel.close");
  check_reply (amqp_connection_close (conn, AMQP_REPLY_SUCCESS), "connection.close");
  g_assert_cmpint (amqp_destroy_connection (conn), ==, AMQP_STATUS_OK);
}

/* A headers table with @depth tables nested in each other: { k: { k: ... } }. */
static amqp_table_t
deep_table (guint                depth,
            amqp_table_entry_t  *entries)
{
  amqp_table_t table = { 0, NULL };

  for (guint i = 0; i + 1 < depth; i++)
    {
      entries[i].key = amqp_cstring_bytes ("k");
      entries[i].value.kind = AMQP_FIELD_KIND_TABLE;
      entries[i].value.value.table = table;
      table.num_entries = 1;
      table.entries = &entries[i];
    }
  return table;
}

/* Publishes one message of @kind with @text as its body and waits for
 * the broker's confirm: RabbitMQ takes every one of them. */
static void
foreign_publish (amqp_connection_state_t  conn,
                 const char              *exchange,
                 const char              *routing_key,
                 ForeignKind              kind,
                 const char              *text)
{
  static const char ff_fe[] = { (char) 0xff, (char) 0xfe };
  static const char with_nul[] = { 'a', 0, 'b' };
  static const char latin1[] = { 'c', 'a', 'f', (char) 0xe9 };
  static const char bad_key[] = { (char) 0xc3, 0x28 };
  g_autofree amqp_table_entry_t *deep = g_new0 (amqp_table_entry_t, 100);
  amqp_table_entry_t header;
  amqp_basic_properties_t props;
  amqp_bytes_t body = { strlen (text), (void *) text };
  amqp_bytes_t key = amqp_cstring_bytes (routing_key);
  struct timeval timeout = { 20, 0 };
  amqp_frame_t frame;

  memset (&props, 0, sizeof props);
  switch (kind)
    {
    case FOREIGN_CORRELATION_ID_FF_FE:
      props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
      props.correlation_id = (amqp_bytes_t) { sizeof ff_fe, (void *) ff_fe };
      break;
    case FOREIGN_CORRELATION_ID_NUL:
      props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
      props.correlation_id = (amqp_bytes_t) { sizeof with_nul, (void *) with_nul };
      break;
    case FOREIGN_CORRELATION_ID_LATIN1:
      props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
      props.correlation_id = (amqp_bytes_t) { sizeof latin1, (void *) latin1 };
      break;
    case FOREIGN_HEADER_KEY_NOT_UTF8:
      header.key = (amqp_bytes_t) { sizeof bad_key, (void *) bad_key };
      header.value.kind = AMQP_FIELD_KIND_UTF8;
      header.value.value.bytes = amqp_cstring_bytes ("v");
      props._flags = AMQP_BASIC_HEADERS_FLAG;
      props.headers = (amqp_table_t) { 1, &header };
      break;
    case FOREIGN_ROUTING_KEY_NOT_UTF8:
      key = (amqp_bytes_t) { sizeof latin1, (void *) latin1 };
      break;
    case FOREIGN_RESERVED_FLAG_BIT:
      /* Bit 1 of the property flags names no property. */
      props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | 0x0002;
      props.content_type = amqp_cstring_bytes ("text/plain");
      break;
    case FOREIGN_DEEP_HEADERS:
      props._flags = AMQP_BASIC_HEADERS_FLAG;
      props.headers = deep_table (100, deep);
      break;
    case FOREIGN_GOOD:
      break;
    default:
      g_assert_not_reached ();
    }

  g_assert_cmpint (amqp_basic_publish (conn, CHANNEL, amqp_cstring_bytes (exchange), key, 0, 0,
                                       &props, body), ==, AMQP_STATUS_OK);
  g_assert_cmpint (amqp_simple_wait_frame_noblock (conn, &frame, &timeout), ==, AMQP_STATUS_OK);
  g_assert_cmpuint (frame.frame_type, ==, AMQP_FRAME_METHOD);
  g_assert_cmpuint (frame.payload.method.id, ==, AMQP_BASIC_ACK_METHOD);
}

/* ---- carehare ------------------------------------------------------------ */

static char *
declare (CarehareConnection *conn,
         const char         *name,
         GVariant           *arguments)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  char *queue;

  carehare_connection_queue_declare_async (conn, name, CAREHARE_QUEUE_FLAGS_EXCLUSIVE, arguments,
                                           NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  return queue;
}

static guint
message_count (CarehareConnection *conn,
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
test_foreign_message (gconstpointer data)
{
  ForeignKind kind = GPOINTER_TO_INT (data);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autofree char *dlq_name = carehare_test_unique_name ("foreign-dlq");
  g_autofree char *dlq = declare (conn, dlq_name, NULL);
  g_autoptr(GVariant) args = g_variant_ref_sink (
    g_variant_new_parsed ("{'x-dead-letter-exchange': <''>, 'x-dead-letter-routing-key': <%s>}",
                          dlq));
  g_autofree char *queue = declare (conn, "", args);
  g_autofree char *exchange = carehare_test_unique_name ("foreign-fanout");
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) first = NULL;
  g_autoptr(CarehareDelivery) good = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  amqp_connection_state_t other;
  gboolean rejected = kind == FOREIGN_RESERVED_FLAG_BIT || kind == FOREIGN_DEEP_HEADERS;

  /* A fanout exchange, so any routing key reaches the queue. */
  carehare_connection_exchange_declare_async (conn, exchange, "fanout",
                                              CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE, NULL, NULL,
                                              carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_exchange_declare_finish (conn, result, &error));
  g_clear_object (&result);
  carehare_connection_queue_bind_async (conn, queue, exchange, "", NULL, NULL,
                                        carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_queue_bind_finish (conn, result, &error));
  g_clear_object (&result);

  other = foreign_connect ();
  foreign_publish (other, exchange, "rk", kind, "first");
  foreign_publish (other, exchange, "rk", FOREIGN_GOOD, "behind it");
  foreign_disconnect (other);

  carehare_connection_acking_consumer_async (conn, queue, 0, 10, NULL,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  g_assert_no_error (error);

  first = next_delivery (consumer, &error);
  if (rejected)
    {
      g_assert_null (first);
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
      g_assert_false (carehare_error_is_transient (error));
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, "delivery tag 1"));
      g_assert_nonnull (strstr (error->message,
                                kind == FOREIGN_DEEP_HEADERS ? "nested" : "0x0002"));
      g_clear_error (&error);
      g_assert_false (carehare_consumer_get_is_closed (consumer));
    }
  else
    {
      CarehareProperties *props;

      g_assert_no_error (error);
      props = carehare_delivery_get_properties (first);
      switch (kind)
        {
        case FOREIGN_CORRELATION_ID_FF_FE:
          g_assert_cmpstr (carehare_properties_get_correlation_id (props), ==,
                           REPLACEMENT REPLACEMENT);
          break;
        case FOREIGN_CORRELATION_ID_NUL:
          g_assert_cmpstr (carehare_properties_get_correlation_id (props), ==,
                           "a" REPLACEMENT "b");
          break;
        case FOREIGN_CORRELATION_ID_LATIN1:
          g_assert_cmpstr (carehare_properties_get_correlation_id (props), ==,
                           "caf" REPLACEMENT);
          break;
        case FOREIGN_HEADER_KEY_NOT_UTF8:
          {
            const char *value = NULL;

            g_assert_true (g_variant_lookup (carehare_properties_get_headers (props),
                                             REPLACEMENT "(", "&s", &value));
            g_assert_cmpstr (value, ==, "v");
          }
          break;
        case FOREIGN_ROUTING_KEY_NOT_UTF8:
          g_assert_cmpstr (carehare_delivery_get_routing_key (first), ==, "caf" REPLACEMENT);
          break;
        default:
          g_assert_not_reached ();
        }
      carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (first));
    }

  /* The message behind it arrives; the connection is open. */
  good = next_delivery (consumer, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (carehare_delivery_get_body (good), NULL),
                   g_bytes_get_size (carehare_delivery_get_body (good)), "behind it", 9);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (good));
  g_assert_false (carehare_connection_get_is_closed (conn));

  /* A rejected message is not requeued: the dead-letter queue has it.
   * The reject went out on the consumer's channel and the count is asked
   * for on another, which RabbitMQ does not order, and dead-lettering is
   * one more step: the count is polled. */
  g_assert_cmpuint (message_count (conn, queue), ==, 0);
  if (rejected)
    {
      gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

      while (message_count (conn, dlq) == 0)
        {
          if (g_get_monotonic_time () > deadline)
            g_error ("the rejected message did not reach %s in 20 s", dlq);
          carehare_test_run_for (50);
        }
    }
  g_assert_cmpuint (message_count (conn, dlq), ==, rejected ? 1 : 0);

  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_assert_no_error (error);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_data_func ("/foreign/correlation-id-ff-fe",
                        GINT_TO_POINTER (FOREIGN_CORRELATION_ID_FF_FE), test_foreign_message);
  g_test_add_data_func ("/foreign/correlation-id-nul",
                        GINT_TO_POINTER (FOREIGN_CORRELATION_ID_NUL), test_foreign_message);
  g_test_add_data_func ("/foreign/correlation-id-latin1",
                        GINT_TO_POINTER (FOREIGN_CORRELATION_ID_LATIN1), test_foreign_message);
  g_test_add_data_func ("/foreign/header-key-not-utf8",
                        GINT_TO_POINTER (FOREIGN_HEADER_KEY_NOT_UTF8), test_foreign_message);
  g_test_add_data_func ("/foreign/routing-key-not-utf8",
                        GINT_TO_POINTER (FOREIGN_ROUTING_KEY_NOT_UTF8), test_foreign_message);
  g_test_add_data_func ("/foreign/reserved-flag-bit",
                        GINT_TO_POINTER (FOREIGN_RESERVED_FLAG_BIT), test_foreign_message);
  g_test_add_data_func ("/foreign/headers-100-deep",
                        GINT_TO_POINTER (FOREIGN_DEEP_HEADERS), test_foreign_message);

  return g_test_run ();
}
