/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rabbitmq-c-peer: librabbitmq (rabbitmq-c) as an interop peer.
 *
 *   rabbitmq-c-peer describe              print the message `publish` sends
 *   rabbitmq-c-peer publish QUEUE         publish it (with confirms) to QUEUE
 *   rabbitmq-c-peer dump QUEUE [requeue]  basic.get one message from QUEUE
 *                                         (waiting for one), print it, then
 *                                         ack it (or reject it back)
 *
 * rabbitmq-c reports the exact field kind of every table value, so this
 * peer both sends and prints every AMQP type exactly: it is the reference
 * the others are compared with. Output is the canonical JSON form described
 * in interop-test.py. Connects to 127.0.0.1:$CAREHARE_TEST_BROKER_PORT as
 * guest, vhost "/". Any failure exits non-zero.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer-json.h"

#define CHANNEL 1
#define TIMEOUT_S 20

static const guint8 body_bytes[] = { 'r', 'm', 'q', 'c', 0x00, 0x01, 0xfe, 0xff };

/* ---- the message --------------------------------------------------------- */

static amqp_field_value_t
kind_only (guint8 kind)
{
  amqp_field_value_t v;

  memset (&v, 0, sizeof v);
  v.kind = kind;
  return v;
}

static amqp_field_value_t
bytes_value (guint8      kind,
             const void *data,
             gsize       len)
{
  amqp_field_value_t v = kind_only (kind);

  v.value.bytes.bytes = (void *) data;
  v.value.bytes.len = len;
  return v;
}

static amqp_field_value_t
cstring_value (const char *text)
{
  return bytes_value (AMQP_FIELD_KIND_UTF8, text, strlen (text));
}

static amqp_table_entry_t
entry (const char         *key,
       amqp_field_value_t  value)
{
  amqp_table_entry_t e;

  e.key = amqp_cstring_bytes (key);
  e.value = value;
  return e;
}

/* The entries live in static storage: the process publishes once. */
static amqp_table_t
message_headers (void)
{
  static amqp_table_entry_t inner_entries[1], nested_entries[1], array_table_entries[1];
  static amqp_field_value_t inner_array[1], array_items[4];
  static amqp_table_entry_t entries[30];
  static const guint8 raw_bytes[] = { 0x00, 0xff, 0x01 };
  static const char not_utf8[] = { 'a', (char) 0xff, (char) 0xfe, 'z' };
  static const char with_nul[] = { 'a', 0x00, 'b' };
  amqp_field_value_t v;
  amqp_table_t table;
  int n = 0;

  v = kind_only (AMQP_FIELD_KIND_BOOLEAN); v.value.boolean = 1;
  entries[n++] = entry ("bool", v);
  v = kind_only (AMQP_FIELD_KIND_BOOLEAN); v.value.boolean = 0;
  entries[n++] = entry ("bool-false", v);
  v = kind_only (AMQP_FIELD_KIND_I8); v.value.i8 = -5;
  entries[n++] = entry ("int8", v);
  v = kind_only (AMQP_FIELD_KIND_I8); v.value.i8 = 127;
  entries[n++] = entry ("int8-max", v);
  v = kind_only (AMQP_FIELD_KIND_U8); v.value.u8 = 200;
  entries[n++] = entry ("uint8", v);
  v = kind_only (AMQP_FIELD_KIND_I16); v.value.i16 = -30000;
  entries[n++] = entry ("int16", v);
  v = kind_only (AMQP_FIELD_KIND_U16); v.value.u16 = 65535;
  entries[n++] = entry ("uint16", v);
  v = kind_only (AMQP_FIELD_KIND_I32); v.value.i32 = G_MININT32;
  entries[n++] = entry ("int32", v);
  v = kind_only (AMQP_FIELD_KIND_U32); v.value.u32 = G_MAXUINT32;
  entries[n++] = entry ("uint32", v);
  v = kind_only (AMQP_FIELD_KIND_I64); v.value.i64 = G_MININT64;
  entries[n++] = entry ("int64", v);
  v = kind_only (AMQP_FIELD_KIND_I64); v.value.i64 = 1;
  entries[n++] = entry ("int64-small", v);
  v = kind_only (AMQP_FIELD_KIND_F32); v.value.f32 = 1.5f;
  entries[n++] = entry ("float", v);
  v = kind_only (AMQP_FIELD_KIND_F32); v.value.f32 = 0.1f;  /* not a short decimal */
  entries[n++] = entry ("float-inexact", v);
  v = kind_only (AMQP_FIELD_KIND_F64); v.value.f64 = -3.25;
  entries[n++] = entry ("double", v);
  v = kind_only (AMQP_FIELD_KIND_F64); v.value.f64 = 0.1;
  entries[n++] = entry ("double-inexact", v);
  v = kind_only (AMQP_FIELD_KIND_DECIMAL); v.value.decimal.decimals = 3;
  v.value.decimal.value = (uint32_t) -123456;
  entries[n++] = entry ("decimal", v);
  entries[n++] = entry ("string", cstring_value ("h\xc3\xa9llo \xe2\x98\x83"));
  entries[n++] = entry ("string-empty", cstring_value (""));
  /* Long strings carehare-glib must return as bytes (ay). */
  entries[n++] = entry ("string-not-utf8", bytes_value (AMQP_FIELD_KIND_UTF8, not_utf8, sizeof not_utf8));
  entries[n++] = entry ("string-with-nul", bytes_value (AMQP_FIELD_KIND_UTF8, with_nul, sizeof with_nul));
  entries[n++] = entry ("bytes", bytes_value (AMQP_FIELD_KIND_BYTES, raw_bytes, sizeof raw_bytes));
  entries[n++] = entry ("bytes-empty", bytes_value (AMQP_FIELD_KIND_BYTES, "", 0));

  inner_array[0] = kind_only (AMQP_FIELD_KIND_BOOLEAN);
  inner_array[0].value.boolean = 1;
  array_table_entries[0] = entry ("k", kind_only (AMQP_FIELD_KIND_U8));
  array_table_entries[0].value.value.u8 = 1;
  array_items[0] = kind_only (AMQP_FIELD_KIND_I32);
  array_items[0].value.i32 = 1;
  array_items[1] = cstring_value ("two");
  array_items[2] = kind_only (AMQP_FIELD_KIND_ARRAY);
  array_items[2].value.array.num_entries = 1;
  array_items[2].value.array.entries = inner_array;
  array_items[3] = kind_only (AMQP_FIELD_KIND_TABLE);
  array_items[3].value.table.num_entries = 1;
  array_items[3].value.table.entries = array_table_entries;
  v = kind_only (AMQP_FIELD_KIND_ARRAY);
  v.value.array.num_entries = 4;
  v.value.array.entries = array_items;
  entries[n++] = entry ("array", v);
  entries[n++] = entry ("array-empty", kind_only (AMQP_FIELD_KIND_ARRAY));

  v = kind_only (AMQP_FIELD_KIND_TIMESTAMP); v.value.u64 = 1700000002;
  entries[n++] = entry ("timestamp", v);

  inner_entries[0] = entry ("deeper", cstring_value ("yes"));
  nested_entries[0] = entry ("nested", kind_only (AMQP_FIELD_KIND_TABLE));
  nested_entries[0].value.value.table.num_entries = 1;
  nested_entries[0].value.value.table.entries = inner_entries;
  v = kind_only (AMQP_FIELD_KIND_TABLE);
  v.value.table.num_entries = 1;
  v.value.table.entries = nested_entries;
  entries[n++] = entry ("table", v);
  entries[n++] = entry ("table-empty", kind_only (AMQP_FIELD_KIND_TABLE));
  entries[n++] = entry ("void", kind_only (AMQP_FIELD_KIND_VOID));

  g_assert (n <= (int) G_N_ELEMENTS (entries));
  table.num_entries = n;
  table.entries = entries;
  return table;
}

static amqp_basic_properties_t
message_properties (void)
{
  amqp_basic_properties_t p;

  memset (&p, 0, sizeof p);
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
             AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
             AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |
             AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_EXPIRATION_FLAG |
             AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
             AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_USER_ID_FLAG | AMQP_BASIC_APP_ID_FLAG;
  p.content_type = amqp_cstring_bytes ("text/x-rabbitmq-c");
  p.content_encoding = amqp_cstring_bytes ("identity");
  p.headers = message_headers ();
  p.delivery_mode = 1;
  p.priority = 0;
  p.correlation_id = amqp_cstring_bytes ("rmqc-corr");
  p.reply_to = amqp_cstring_bytes ("amq.rabbitmq.reply-to-not-really");
  p.expiration = amqp_cstring_bytes ("3600000");
  p.message_id = amqp_cstring_bytes ("rmqc-msg-1");
  p.timestamp = 1700000003;
  p.type = amqp_cstring_bytes ("rmqc-type");
  p.user_id = amqp_cstring_bytes ("guest");
  p.app_id = amqp_cstring_bytes ("rabbitmq-c-peer");
  return p;
}

/* ---- canonical JSON ------------------------------------------------------ */

static void append_value (GString *out, const amqp_field_value_t *value);

static void
append_table (GString            *out,
              const amqp_table_t *table)
{
  g_string_append (out, "{\"t\":\"F\",\"v\":[");
  for (int i = 0; i < table->num_entries; i++)
    {
      const amqp_table_entry_t *e = &table->entries[i];

      if (i > 0)
        g_string_append_c (out, ',');
      g_string_append_c (out, '[');
      if (g_utf8_validate_len (e->key.bytes, e->key.len, NULL))
        peer_json_string (out, e->key.bytes, (gssize) e->key.len);
      else
        peer_json_hex (out, e->key.bytes, e->key.len);
      g_string_append_c (out, ',');
      append_value (out, &e->value);
      g_string_append_c (out, ']');
    }
  g_string_append (out, "]}");
}

static void
append_value (GString                  *out,
              const amqp_field_value_t *value)
{
  switch (value->kind)
    {
    case AMQP_FIELD_KIND_BOOLEAN:
      g_string_append_printf (out, "{\"t\":\"t\",\"v\":%s}", value->value.boolean ? "true" : "false");
      break;
    case AMQP_FIELD_KIND_I8:
      g_string_append_printf (out, "{\"t\":\"b\",\"v\":%d}", value->value.i8);
      break;
    case AMQP_FIELD_KIND_U8:
      g_string_append_printf (out, "{\"t\":\"B\",\"v\":%u}", value->value.u8);
      break;
    case AMQP_FIELD_KIND_I16:
      g_string_append_printf (out, "{\"t\":\"s\",\"v\":%d}", value->value.i16);
      break;
    case AMQP_FIELD_KIND_U16:
      g_string_append_printf (out, "{\"t\":\"u\",\"v\":%u}", value->value.u16);
      break;
    case AMQP_FIELD_KIND_I32:
      g_string_append_printf (out, "{\"t\":\"I\",\"v\":%" G_GINT32_FORMAT "}", value->value.i32);
      break;
    case AMQP_FIELD_KIND_U32:
      g_string_append_printf (out, "{\"t\":\"i\",\"v\":%" G_GUINT32_FORMAT "}", value->value.u32);
      break;
    case AMQP_FIELD_KIND_I64:
      g_string_append_printf (out, "{\"t\":\"l\",\"v\":%" G_GINT64_FORMAT "}", (gint64) value->value.i64);
      break;
    case AMQP_FIELD_KIND_U64:
      g_string_append_printf (out, "{\"t\":\"L\",\"v\":%" G_GUINT64_FORMAT "}", (guint64) value->value.u64);
      break;
    case AMQP_FIELD_KIND_F32:
      g_string_append (out, "{\"t\":\"f\",\"v\":");
      peer_json_double (out, value->value.f32);
      g_string_append_c (out, '}');
      break;
    case AMQP_FIELD_KIND_F64:
      g_string_append (out, "{\"t\":\"d\",\"v\":");
      peer_json_double (out, value->value.f64);
      g_string_append_c (out, '}');
      break;
    case AMQP_FIELD_KIND_DECIMAL:
      g_string_append_printf (out, "{\"t\":\"D\",\"v\":[%u,%" G_GINT32_FORMAT "]}",
                              value->value.decimal.decimals,
                              (gint32) value->value.decimal.value);
      break;
    case AMQP_FIELD_KIND_UTF8:
      peer_json_long_string (out, value->value.bytes.bytes, value->value.bytes.len);
      break;
    case AMQP_FIELD_KIND_BYTES:
      peer_json_byte_array (out, value->value.bytes.bytes, value->value.bytes.len);
      break;
    case AMQP_FIELD_KIND_ARRAY:
      g_string_append (out, "{\"t\":\"A\",\"v\":[");
      for (int i = 0; i < value->value.array.num_entries; i++)
        {
          if (i > 0)
            g_string_append_c (out, ',');
          append_value (out, &value->value.array.entries[i]);
        }
      g_string_append (out, "]}");
      break;
    case AMQP_FIELD_KIND_TIMESTAMP:
      g_string_append_printf (out, "{\"t\":\"T\",\"v\":%" G_GUINT64_FORMAT "}", (guint64) value->value.u64);
      break;
    case AMQP_FIELD_KIND_TABLE:
      append_table (out, &value->value.table);
      break;
    case AMQP_FIELD_KIND_VOID:
      g_string_append (out, "{\"t\":\"V\"}");
      break;
    default:
      g_string_append_printf (out, "{\"t\":\"?\",\"kind\":%u}", value->kind);
      break;
    }
}

static void
member_bytes (GString                       *out,
              gboolean                      *first,
              const amqp_basic_properties_t *p,
              amqp_flags_t                   flag,
              const char                    *name,
              amqp_bytes_t                   value)
{
  if (p->_flags & flag)
    peer_json_member_string (out, first, name, value.len ? value.bytes : "", (gssize) value.len);
}

static void
append_properties (GString                       *out,
                   const amqp_basic_properties_t *p)
{
  gboolean first = TRUE;

  g_string_append_c (out, '{');
  member_bytes (out, &first, p, AMQP_BASIC_CONTENT_TYPE_FLAG, "content_type", p->content_type);
  member_bytes (out, &first, p, AMQP_BASIC_CONTENT_ENCODING_FLAG, "content_encoding",
                p->content_encoding);
  if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
    {
      peer_json_member (out, &first, "headers");
      append_table (out, &p->headers);
    }
  if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
    peer_json_member_uint (out, &first, "delivery_mode", p->delivery_mode);
  if (p->_flags & AMQP_BASIC_PRIORITY_FLAG)
    peer_json_member_uint (out, &first, "priority", p->priority);
  member_bytes (out, &first, p, AMQP_BASIC_CORRELATION_ID_FLAG, "correlation_id", p->correlation_id);
  member_bytes (out, &first, p, AMQP_BASIC_REPLY_TO_FLAG, "reply_to", p->reply_to);
  member_bytes (out, &first, p, AMQP_BASIC_EXPIRATION_FLAG, "expiration", p->expiration);
  member_bytes (out, &first, p, AMQP_BASIC_MESSAGE_ID_FLAG, "message_id", p->message_id);
  if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
    peer_json_member_uint (out, &first, "timestamp", p->timestamp);
  member_bytes (out, &first, p, AMQP_BASIC_TYPE_FLAG, "type", p->type);
  member_bytes (out, &first, p, AMQP_BASIC_USER_ID_FLAG, "user_id", p->user_id);
  member_bytes (out, &first, p, AMQP_BASIC_APP_ID_FLAG, "app_id", p->app_id);
  member_bytes (out, &first, p, AMQP_BASIC_CLUSTER_ID_FLAG, "cluster_id", p->cluster_id);
  g_string_append_c (out, '}');
}

static void
print_message (const amqp_bytes_t            *exchange,
               const amqp_bytes_t            *routing_key,
               gboolean                       redelivered,
               const amqp_basic_properties_t *props,
               amqp_bytes_t                   body)
{
  g_autoptr(GString) out = g_string_new ("{");

  if (exchange != NULL)
    {
      g_string_append (out, "\"exchange\":");
      peer_json_string (out, exchange->len ? exchange->bytes : "", (gssize) exchange->len);
      g_string_append (out, ",\"routing_key\":");
      peer_json_string (out, routing_key->len ? routing_key->bytes : "", (gssize) routing_key->len);
      g_string_append_printf (out, ",\"redelivered\":%s,", redelivered ? "true" : "false");
    }
  g_string_append (out, "\"properties\":");
  append_properties (out, props);
  g_string_append (out, ",\"body\":");
  peer_json_hex (out, body.bytes, body.len);
  g_string_append (out, "}\n");
  fputs (out->str, stdout);
  fflush (stdout);
}

/* ---- connection ---------------------------------------------------------- */

G_GNUC_NORETURN static void
die (const char *what)
{
  fprintf (stderr, "rabbitmq-c-peer: %s\n", what);
  exit (1);
}

static void
check_reply (amqp_rpc_reply_t  reply,
             const char       *what)
{
  if (reply.reply_type == AMQP_RESPONSE_NORMAL)
    return;
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    fprintf (stderr, "rabbitmq-c-peer: %s: %s\n", what, amqp_error_string2 (reply.library_error));
  else if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
           reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
    {
      amqp_channel_close_t *m = reply.reply.decoded;

      fprintf (stderr, "rabbitmq-c-peer: %s: channel closed: %u %.*s\n", what, m->reply_code,
               (int) m->reply_text.len, (const char *) m->reply_text.bytes);
    }
  else if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
           reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
    {
      amqp_connection_close_t *m = reply.reply.decoded;

      fprintf (stderr, "rabbitmq-c-peer: %s: connection closed: %u %.*s\n", what, m->reply_code,
               (int) m->reply_text.len, (const char *) m->reply_text.bytes);
    }
  else
    fprintf (stderr, "rabbitmq-c-peer: %s: unexpected reply type %d\n", what, reply.reply_type);
  exit (1);
}

static amqp_connection_state_t
connect_broker (void)
{
  const char *port = g_getenv ("CAREHARE_TEST_BROKER_PORT");
  amqp_connection_state_t conn = amqp_new_connection ();
  amqp_socket_t *socket = amqp_tcp_socket_new (conn);
  struct timeval timeout = { TIMEOUT_S, 0 };

  if (port == NULL || *port == '\0')
    die ("CAREHARE_TEST_BROKER_PORT is not set: run eval \"$(test-server/broker env)\"");
  if (socket == NULL)
    die ("cannot create a socket");
  if (amqp_socket_open_noblock (socket, "127.0.0.1", atoi (port), &timeout) != AMQP_STATUS_OK)
    die ("cannot connect to the broker");
  check_reply (amqp_login (conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
               "login");
  amqp_channel_open (conn, CHANNEL);
  check_reply (amqp_get_rpc_reply (conn), "channel.open");
  return conn;
}

static void
disconnect (amqp_connection_state_t conn)
{
  check_reply (amqp_channel_close (conn, CHANNEL, AMQP_REPLY_SUCCESS), "channel.close");
  check_reply (amqp_connection_close (conn, AMQP_REPLY_SUCCESS), "connection.close");
  if (amqp_destroy_connection (conn) != AMQP_STATUS_OK)
    die ("destroy connection");
}

static int
publish (const char *queue)
{
  amqp_connection_state_t conn = connect_broker ();
  amqp_basic_properties_t props = message_properties ();
  amqp_bytes_t body = { sizeof body_bytes, (void *) body_bytes };
  struct timeval timeout = { TIMEOUT_S, 0 };
  amqp_frame_t frame;

  amqp_confirm_select (conn, CHANNEL);
  check_reply (amqp_get_rpc_reply (conn), "confirm.select");
  if (amqp_basic_publish (conn, CHANNEL, amqp_cstring_bytes (""), amqp_cstring_bytes (queue),
                          1 /* mandatory */, 0, &props, body) != AMQP_STATUS_OK)
    die ("basic.publish");
  /* The confirm: basic.ack; a basic.return (unroutable) or nack fails. */
  if (amqp_simple_wait_frame_noblock (conn, &frame, &timeout) != AMQP_STATUS_OK)
    die ("no publisher confirm");
  if (frame.frame_type != AMQP_FRAME_METHOD || frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
    die ("the broker did not confirm the message with basic.ack");
  disconnect (conn);
  return 0;
}

static int
dump (const char *queue,
      gboolean    requeue)
{
  amqp_connection_state_t conn = connect_broker ();
  gint64 deadline = g_get_monotonic_time () + TIMEOUT_S * G_USEC_PER_SEC;
  amqp_basic_get_ok_t *ok;
  amqp_message_t message;
  amqp_bytes_t exchange, routing_key;
  gboolean redelivered;
  guint64 tag;

  for (;;)
    {
      amqp_rpc_reply_t reply = amqp_basic_get (conn, CHANNEL, amqp_cstring_bytes (queue), 0);

      check_reply (reply, "basic.get");
      if (reply.reply.id == AMQP_BASIC_GET_OK_METHOD)
        {
          ok = reply.reply.decoded;
          break;
        }
      if (g_get_monotonic_time () > deadline)
        die ("no message in the queue");
      g_usleep (50000);
    }
  /* Copies: reading the message reuses the frame memory. */
  exchange = amqp_bytes_malloc_dup (ok->exchange);
  routing_key = amqp_bytes_malloc_dup (ok->routing_key);
  redelivered = ok->redelivered != 0;
  tag = ok->delivery_tag;

  check_reply (amqp_read_message (conn, CHANNEL, &message, 0), "read message");
  print_message (&exchange, &routing_key, redelivered, &message.properties, message.body);

  if (requeue)
    {
      if (amqp_basic_reject (conn, CHANNEL, tag, 1) != AMQP_STATUS_OK)
        die ("basic.reject");
    }
  else if (amqp_basic_ack (conn, CHANNEL, tag, 0) != AMQP_STATUS_OK)
    die ("basic.ack");

  amqp_destroy_message (&message);
  amqp_bytes_free (exchange);
  amqp_bytes_free (routing_key);
  disconnect (conn);
  return 0;
}

static int
usage (void)
{
  fprintf (stderr, "usage: rabbitmq-c-peer describe | publish QUEUE | dump QUEUE [requeue]\n");
  return 2;
}

int
main (int    argc,
      char **argv)
{
  if (argc == 2 && strcmp (argv[1], "describe") == 0)
    {
      amqp_basic_properties_t props = message_properties ();
      amqp_bytes_t body = { sizeof body_bytes, (void *) body_bytes };

      print_message (NULL, NULL, FALSE, &props, body);
      return 0;
    }
  if (argc == 3 && strcmp (argv[1], "publish") == 0)
    return publish (argv[2]);
  if ((argc == 3 || argc == 4) && strcmp (argv[1], "dump") == 0)
    {
      if (argc == 4 && strcmp (argv[3], "requeue") != 0)
        return usage ();
      return dump (argv[2], argc == 4);
    }
  return usage ();
}
