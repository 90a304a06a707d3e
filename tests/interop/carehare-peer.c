/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare-peer: the carehare-glib side of the interop tests.
 *
 *   carehare-peer describe              print the message `publish` sends
 *   carehare-peer publish QUEUE         publish it (with confirms) to QUEUE
 *   carehare-peer dump QUEUE [requeue]  consume one message from QUEUE, print
 *                                       it, then ack it (or nack it back)
 *
 * Messages are printed in the canonical JSON form that interop-test.py
 * describes, with the AMQP type letter of every header value as carehare-glib
 * reports it through GVariant types (docs/field-tables.md). Connects to
 * $CAREHARE_TEST_AMQP_URI. Any failure exits non-zero.
 */
#include "carehare-test-util.h"
#include "peer-json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 20000

static const guint8 body_bytes[] = { 'c', 'a', 'r', 'e', 0x00, 0xff, 0x80, '\n' };

/* Every field-table type, some at their limits, and empty containers. */
static GVariant *
message_headers (void)
{
  return g_variant_new_parsed ("{"
                               "'bool': <true>,"
                               "'bool-false': <false>,"
                               "'int8': <(@n -5,)>,"
                               "'int8-min': <(@n -128,)>,"
                               "'uint8': <@y 200>,"
                               "'int16': <@n -30000>,"
                               "'uint16': <@q 60000>,"
                               "'int32': <@i -2000000000>,"
                               "'uint32': <@u 4000000000>,"
                               "'int64': <@x -9000000000000000000>,"
                               "'int64-max': <@x 9223372036854775807>,"
                               "'float': <(1.5,)>,"
                               "'float-negative': <(-0.25,)>,"
                               "'double': <3.25>,"
                               "'decimal': <(@y 2, 12345)>,"
                               "'decimal-negative': <(@y 0, -7)>,"
                               "'string': <'h\\u00e9llo \\u2603'>,"
                               "'string-empty': <''>,"
                               "'bytes': <@ay [0, 255, 1]>,"
                               "'bytes-empty': <@ay []>,"
                               "'array': <[<1>, <'two'>, <[<true>]>, <{'k': <@y 1>}>]>,"
                               "'array-empty': <@av []>,"
                               "'timestamp': <@t 1700000000>,"
                               "'table': <{'nested': <{'deeper': <'yes'>}>}>,"
                               "'table-empty': <@a{sv} {}>,"
                               "'void': <()>"
                               "}");
}

static CarehareProperties *
message_properties (void)
{
  CarehareProperties *props = carehare_properties_new ();
  g_autoptr(GVariant) headers = g_variant_ref_sink (message_headers ());

  carehare_properties_set_content_type (props, "application/x-carehare");
  carehare_properties_set_content_encoding (props, "binary");
  carehare_properties_set_headers (props, headers);
  carehare_properties_set_delivery_mode (props, 2);
  carehare_properties_set_priority (props, 7);
  carehare_properties_set_correlation_id (props, "carehare-corr");
  carehare_properties_set_reply_to (props, "carehare-reply");
  carehare_properties_set_expiration (props, "600000");
  carehare_properties_set_message_id (props, "carehare-msg-1");
  carehare_properties_set_timestamp (props, 1700000001);
  carehare_properties_set_message_type (props, "carehare-type");
  carehare_properties_set_user_id (props, "guest");  /* RabbitMQ checks it */
  carehare_properties_set_app_id (props, "carehare-peer");
  /* No cluster-id: RabbitMQ drops it. */
  return props;
}

/* ---- canonical JSON ------------------------------------------------------ */

static void append_value (GString *out, GVariant *value);

static void
append_table (GString  *out,
              GVariant *table)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;
  gboolean first = TRUE;

  g_string_append (out, "{\"t\":\"F\",\"v\":[");
  g_variant_iter_init (&iter, table);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      if (!first)
        g_string_append_c (out, ',');
      first = FALSE;
      g_string_append_c (out, '[');
      peer_json_string (out, key, -1);
      g_string_append_c (out, ',');
      append_value (out, value);
      g_string_append_c (out, ']');
      g_variant_unref (value);
    }
  g_string_append (out, "]}");
}

static void
append_value (GString  *out,
              GVariant *value)
{
  const char *type = g_variant_get_type_string (value);

  if (g_str_equal (type, "b"))
    g_string_append_printf (out, "{\"t\":\"t\",\"v\":%s}",
                            g_variant_get_boolean (value) ? "true" : "false");
  else if (g_str_equal (type, "(n)"))
    {
      gint16 v;

      g_variant_get (value, "(n)", &v);
      g_string_append_printf (out, "{\"t\":\"b\",\"v\":%d}", v);
    }
  else if (g_str_equal (type, "y"))
    g_string_append_printf (out, "{\"t\":\"B\",\"v\":%u}", g_variant_get_byte (value));
  else if (g_str_equal (type, "n"))
    g_string_append_printf (out, "{\"t\":\"s\",\"v\":%d}", g_variant_get_int16 (value));
  else if (g_str_equal (type, "q"))
    g_string_append_printf (out, "{\"t\":\"u\",\"v\":%u}", g_variant_get_uint16 (value));
  else if (g_str_equal (type, "i"))
    g_string_append_printf (out, "{\"t\":\"I\",\"v\":%d}", g_variant_get_int32 (value));
  else if (g_str_equal (type, "u"))
    g_string_append_printf (out, "{\"t\":\"i\",\"v\":%u}", g_variant_get_uint32 (value));
  else if (g_str_equal (type, "x"))
    g_string_append_printf (out, "{\"t\":\"l\",\"v\":%" G_GINT64_FORMAT "}",
                            g_variant_get_int64 (value));
  else if (g_str_equal (type, "(d)"))
    {
      double v;

      g_variant_get (value, "(d)", &v);
      g_string_append (out, "{\"t\":\"f\",\"v\":");
      peer_json_double (out, v);
      g_string_append_c (out, '}');
    }
  else if (g_str_equal (type, "d"))
    {
      g_string_append (out, "{\"t\":\"d\",\"v\":");
      peer_json_double (out, g_variant_get_double (value));
      g_string_append_c (out, '}');
    }
  else if (g_str_equal (type, "(yi)"))
    {
      guint8 scale;
      gint32 unscaled;

      g_variant_get (value, "(yi)", &scale, &unscaled);
      g_string_append_printf (out, "{\"t\":\"D\",\"v\":[%u,%d]}", scale, unscaled);
    }
  else if (g_str_equal (type, "s"))
    {
      gsize len;
      const char *s = g_variant_get_string (value, &len);

      peer_json_long_string (out, (const guint8 *) s, len);
    }
  else if (g_str_equal (type, "ay"))
    {
      gsize len;
      const guint8 *data = g_variant_get_fixed_array (value, &len, 1);

      peer_json_byte_array (out, data, len);
    }
  else if (g_str_equal (type, "av"))
    {
      GVariantIter iter;
      GVariant *child;
      gboolean first = TRUE;

      g_string_append (out, "{\"t\":\"A\",\"v\":[");
      g_variant_iter_init (&iter, value);
      while (g_variant_iter_next (&iter, "v", &child))
        {
          if (!first)
            g_string_append_c (out, ',');
          first = FALSE;
          append_value (out, child);
          g_variant_unref (child);
        }
      g_string_append (out, "]}");
    }
  else if (g_str_equal (type, "t"))
    g_string_append_printf (out, "{\"t\":\"T\",\"v\":%" G_GUINT64_FORMAT "}",
                            g_variant_get_uint64 (value));
  else if (g_str_equal (type, "a{sv}"))
    append_table (out, value);
  else if (g_str_equal (type, "()"))
    g_string_append (out, "{\"t\":\"V\"}");
  else
    {
      /* Not in docs/field-tables.md: shows up as a difference. */
      g_string_append (out, "{\"t\":\"?\",\"gvariant\":");
      peer_json_string (out, type, -1);
      g_string_append_c (out, '}');
    }
}

static void
append_properties (GString            *out,
                   CarehareProperties *props)
{
  gboolean first = TRUE;

  g_string_append_c (out, '{');
  peer_json_member_string (out, &first, "content_type",
                           carehare_properties_get_content_type (props), -1);
  peer_json_member_string (out, &first, "content_encoding",
                           carehare_properties_get_content_encoding (props), -1);
  if (carehare_properties_get_headers (props) != NULL)
    {
      peer_json_member (out, &first, "headers");
      append_table (out, carehare_properties_get_headers (props));
    }
  if (carehare_properties_get_delivery_mode (props) != 0)
    peer_json_member_uint (out, &first, "delivery_mode",
                           carehare_properties_get_delivery_mode (props));
  if (carehare_properties_get_priority (props) != -1)
    peer_json_member_uint (out, &first, "priority",
                           (guint64) carehare_properties_get_priority (props));
  peer_json_member_string (out, &first, "correlation_id",
                           carehare_properties_get_correlation_id (props), -1);
  peer_json_member_string (out, &first, "reply_to",
                           carehare_properties_get_reply_to (props), -1);
  peer_json_member_string (out, &first, "expiration",
                           carehare_properties_get_expiration (props), -1);
  peer_json_member_string (out, &first, "message_id",
                           carehare_properties_get_message_id (props), -1);
  if (carehare_properties_get_timestamp (props) != -1)
    peer_json_member_uint (out, &first, "timestamp",
                           (guint64) carehare_properties_get_timestamp (props));
  peer_json_member_string (out, &first, "type",
                           carehare_properties_get_message_type (props), -1);
  peer_json_member_string (out, &first, "user_id",
                           carehare_properties_get_user_id (props), -1);
  peer_json_member_string (out, &first, "app_id",
                           carehare_properties_get_app_id (props), -1);
  peer_json_member_string (out, &first, "cluster_id",
                           carehare_properties_get_cluster_id (props), -1);
  g_string_append_c (out, '}');
}

static void
print_message (const char         *exchange,
               const char         *routing_key,
               gboolean            redelivered,
               CarehareProperties *props,
               GBytes             *body)
{
  g_autoptr(GString) out = g_string_new ("{");
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);

  if (exchange != NULL)
    {
      g_string_append (out, "\"exchange\":");
      peer_json_string (out, exchange, -1);
      g_string_append (out, ",\"routing_key\":");
      peer_json_string (out, routing_key, -1);
      g_string_append_printf (out, ",\"redelivered\":%s,", redelivered ? "true" : "false");
    }
  g_string_append (out, "\"properties\":");
  append_properties (out, props);
  g_string_append (out, ",\"body\":");
  peer_json_hex (out, data, len);
  g_string_append (out, "}\n");
  fputs (out->str, stdout);
  fflush (stdout);
}

/* ---- modes --------------------------------------------------------------- */

static void
close_connection (CarehareConnection *conn)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  if (!carehare_connection_close_finish (conn, result, &error))
    g_error ("close: %s", error->message);
}

static int
publish (const char *queue)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareProperties) props = message_properties ();
  g_autoptr(GBytes) body = g_bytes_new_static (body_bytes, sizeof body_bytes);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_publish_async (conn, "", queue, body, props,
                                     CAREHARE_PUBLISH_FLAGS_MANDATORY, NULL,
                                     carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  if (!carehare_connection_publish_finish (conn, result, &error))
    g_error ("publish: %s", error->message);
  close_connection (conn);
  return 0;
}

static int
dump (const char *queue,
      gboolean    requeue)
{
  g_autoptr(CarehareConnection) conn = carehare_test_connect (carehare_test_amqp_uri ());
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GAsyncResult) next_result = NULL;
  g_autoptr(GAsyncResult) close_result = NULL;
  g_autoptr(GError) error = NULL;
  guint64 tag;

  carehare_connection_acking_consumer_async (conn, queue, 0, 1, NULL,
                                             carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  consumer = carehare_connection_acking_consumer_finish (conn, result, &error);
  if (consumer == NULL)
    g_error ("consume: %s", error->message);

  carehare_consumer_next_delivery_async (consumer, NULL, carehare_test_store_result, &next_result);
  carehare_test_wait_for_result (&next_result, TIMEOUT_MS);
  delivery = carehare_consumer_next_delivery_finish (consumer, next_result, &error);
  if (delivery == NULL)
    g_error ("next delivery: %s", error->message);

  print_message (carehare_delivery_get_exchange (delivery),
                 carehare_delivery_get_routing_key (delivery),
                 carehare_delivery_get_redelivered (delivery),
                 carehare_delivery_get_properties (delivery),
                 carehare_delivery_get_body (delivery));

  tag = carehare_delivery_get_delivery_tag (delivery);
  if (requeue)
    carehare_consumer_nack (consumer, tag, TRUE);
  else
    carehare_consumer_ack (consumer, tag);

  carehare_consumer_close_async (consumer, NULL, carehare_test_store_result, &close_result);
  carehare_test_wait_for_result (&close_result, TIMEOUT_MS);
  if (!carehare_consumer_close_finish (consumer, close_result, &error))
    g_error ("consumer close: %s", error->message);
  close_connection (conn);
  return 0;
}

static int
usage (void)
{
  g_printerr ("usage: carehare-peer describe | publish QUEUE | dump QUEUE [requeue]\n");
  return 2;
}

int
main (int    argc,
      char **argv)
{
  if (argc == 2 && g_str_equal (argv[1], "describe"))
    {
      g_autoptr(CarehareProperties) props = message_properties ();
      g_autoptr(GBytes) body = g_bytes_new_static (body_bytes, sizeof body_bytes);

      print_message (NULL, NULL, FALSE, props, body);
      return 0;
    }
  if (argc == 3 && g_str_equal (argv[1], "publish"))
    return publish (argv[2]);
  if ((argc == 3 || argc == 4) && g_str_equal (argv[1], "dump"))
    {
      if (argc == 4 && !g_str_equal (argv[3], "requeue"))
        return usage ();
      return dump (argv[2], argc == 4);
    }
  return usage ();
}
