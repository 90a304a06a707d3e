/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the AMQP 0-9-1 wire codec.  Expected bytes are written out
 * by hand from the protocol definition: frame = type(1) channel(2) size(4)
 * payload CE; method payload = class id(2) method id(2) arguments; bits pack
 * LSB first into one octet; all integers big-endian.
 */
#include <math.h>
#include <string.h>

#include "carehare-wire.h"
#include "transient-check.h"

/* ---------------------------------------------------------------- helpers */

static GByteArray *
unhex (const char *str)
{
  GByteArray *out = g_byte_array_new ();
  int hi = -1;

  for (; *str != '\0'; str++)
    {
      int v;

      if (g_ascii_isspace (*str))
        continue;
      v = g_ascii_xdigit_value (*str);
      g_assert_cmpint (v, >=, 0);
      if (hi < 0)
        hi = v;
      else
        {
          guint8 b = (guint8) (hi << 4 | v);

          g_byte_array_append (out, &b, 1);
          hi = -1;
        }
    }
  g_assert_cmpint (hi, ==, -1);
  return out;
}

static char *
tohex (const guint8 *data,
       gsize         len)
{
  GString *s = g_string_new (NULL);
  gsize i;

  for (i = 0; i < len; i++)
    g_string_append_printf (s, "%02X", data[i]);
  return g_string_free (s, FALSE);
}

static void
assert_bytes_hex (const guint8 *data,
                  gsize         len,
                  const char   *expected)
{
  g_autoptr(GByteArray) want = unhex (expected);
  g_autofree char *got_hex = tohex (data, len);
  g_autofree char *want_hex = tohex (want->data, want->len);

  g_assert_cmpstr (got_hex, ==, want_hex);
}

#define assert_array_hex(arr, expected) assert_bytes_hex ((arr)->data, (arr)->len, (expected))

static void
assert_wire_error (const GError      *error,
                   CarehareWireError  code,
                   guint16            reply_code,
                   const char        *needle)
{
  g_assert_error (error, CAREHARE_WIRE_ERROR, (gint) code);
  g_assert_cmpstr (error->message, !=, "");
  if (needle != NULL && strstr (error->message, needle) == NULL)
    g_error ("error message '%s' does not mention '%s'", error->message, needle);
  g_assert_cmpuint (carehare_wire_error_reply_code (error), ==, reply_code);
  g_test_message ("%s", error->message);
}

/* Encodes @method on @channel and checks the whole frame. */
static void
assert_method_frame (guint16               channel,
                     const CarehareMethod *method,
                     const char           *expected)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;

  g_assert_true (carehare_wire_append_method_frame (out, channel, method, &error));
  g_assert_no_error (error);
  assert_array_hex (out, expected);
}

/* Decodes a method payload written in hex; the bytes are copied to an
 * exactly-sized heap buffer so that AddressSanitizer catches over-reads. */
static gboolean
decode_method_hex (const char      *payload_hex,
                   CarehareMethod  *method,
                   GError         **error)
{
  g_autoptr(GByteArray) payload = unhex (payload_hex);
  g_autofree guint8 *copy = g_memdup2 (payload->data, payload->len);

  return carehare_method_decode (copy, payload->len, method, error);
}

static GVariant *
decode_table_hex (const char  *hex,
                  GError     **error)
{
  g_autoptr(GByteArray) bytes = unhex (hex);
  g_autofree guint8 *copy = g_memdup2 (bytes->data, bytes->len);

  return carehare_wire_table_decode (copy, bytes->len, error);
}

/* Wraps table entries (hex) in their 4-byte length. */
static char *
table_hex (const char *entries_hex)
{
  g_autoptr(GByteArray) entries = unhex (entries_hex);
  g_autofree char *body = tohex (entries->data, entries->len);

  return g_strdup_printf ("%08X%s", entries->len, body);
}

/* --------------------------------------------------------------- frames */

static void
test_frame_protocol_header (void)
{
  assert_bytes_hex (carehare_wire_protocol_header, sizeof carehare_wire_protocol_header,
                    "414D5150 00 00 09 01");
}

static void
test_frame_heartbeat (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  CarehareFrame frame;

  carehare_wire_append_heartbeat_frame (out);
  assert_array_hex (out, "08 0000 00000000 CE");

  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 4096, &frame, &error), ==, 8);
  g_assert_no_error (error);
  g_assert_cmpuint (frame.type, ==, CAREHARE_FRAME_HEARTBEAT);
  g_assert_cmpuint (frame.channel, ==, 0);
  g_assert_cmpuint (frame.size, ==, 0);
}

static void
test_frame_body (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  CarehareFrame frame;

  carehare_wire_append_body_frame (out, 1, (const guint8 *) "hello", 5);
  assert_array_hex (out, "03 0001 00000005 68656C6C6F CE");

  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 0, &frame, &error), ==, 13);
  g_assert_no_error (error);
  g_assert_cmpuint (frame.type, ==, CAREHARE_FRAME_BODY);
  g_assert_cmpuint (frame.channel, ==, 1);
  g_assert_cmpuint (frame.size, ==, 5);
  g_assert_cmpmem (frame.payload, frame.size, "hello", 5);

  /* An empty body frame is legal. */
  g_byte_array_set_size (out, 0);
  carehare_wire_append_body_frame (out, 2, NULL, 0);
  assert_array_hex (out, "03 0002 00000000 CE");
}

/* A body frame taken in parts: its header first, its end octet last. */
static void
test_frame_in_parts (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  CarehareFrame frame = { 0 };

  carehare_wire_append_body_frame (out, 258, (const guint8 *) "hello", 5);
  for (gsize len = 0; len < CAREHARE_FRAME_HEADER_SIZE; len++)
    g_assert_false (carehare_frame_peek_header (out->data, len, &frame));
  g_assert_true (carehare_frame_peek_header (out->data, CAREHARE_FRAME_HEADER_SIZE, &frame));
  g_assert_cmpuint (frame.type, ==, CAREHARE_FRAME_BODY);
  g_assert_cmpuint (frame.channel, ==, 258);
  g_assert_cmpuint (frame.size, ==, 5);
  g_assert_null (frame.payload);

  g_assert_true (carehare_frame_check_end (&frame, out->data[out->len - 1], &error));
  g_assert_no_error (error);
  g_assert_false (carehare_frame_check_end (&frame, 0xCD, &error));
  /* The same error as a whole frame's. */
  assert_wire_error (error, CAREHARE_WIRE_ERROR_BAD_FRAME_END, 501,
                     "Frame end octet is 0xcd instead of 0xCE after a payload of 5 bytes "
                     "(frame type 3, channel 258)");
  g_clear_error (&error);
  out->data[out->len - 1] = 0xCD;
  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 0, &frame, &error), ==, -1);
  assert_wire_error (error, CAREHARE_WIRE_ERROR_BAD_FRAME_END, 501,
                     "Frame end octet is 0xcd instead of 0xCE after a payload of 5 bytes "
                     "(frame type 3, channel 258)");
}

static void
test_frame_frame_max (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *body = g_malloc0 (4088);
  CarehareFrame frame;

  /* frame_max counts the 8 bytes of overhead: 4088 payload bytes fit 4096. */
  carehare_wire_append_body_frame (out, 1, body, 4088);
  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 4096, &frame, &error), ==, 4096);
  g_assert_no_error (error);
  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 0, &frame, &error), ==, 4096);
  g_assert_no_error (error);

  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 4095, &frame, &error), ==, -1);
  assert_wire_error (error, CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE, 501, "4095");
}

/* Several frames back to back: every prefix decodes the complete frames it
 * holds and then asks for more, without error and without over-reading. */
static void
test_frame_truncated_prefixes (void)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  CarehareBasicProperties props = { 0 };
  CarehareMethod deliver = { CAREHARE_METHOD_BASIC_DELIVER };
  gsize boundaries[5], n_boundaries = 0;
  gsize p;

  deliver.basic_deliver.consumer_tag = (char *) "ctag";
  deliver.basic_deliver.delivery_tag = 7;
  deliver.basic_deliver.exchange = (char *) "ex";
  deliver.basic_deliver.routing_key = (char *) "rk";
  g_assert_true (carehare_wire_append_method_frame (buf, 1, &deliver, &error));
  boundaries[n_boundaries++] = buf->len;
  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_HEADERS;
  props.content_type = (char *) "text/plain";
  props.headers = g_variant_ref_sink (g_variant_new_parsed ("{'a': <int32 1>, 'b': <[<'x'>]>}"));
  g_assert_true (carehare_wire_append_header_frame (buf, 1, 60, 5, &props, &error));
  g_variant_unref (props.headers);
  boundaries[n_boundaries++] = buf->len;
  carehare_wire_append_body_frame (buf, 1, (const guint8 *) "hello", 5);
  boundaries[n_boundaries++] = buf->len;
  carehare_wire_append_heartbeat_frame (buf);
  boundaries[n_boundaries++] = buf->len;
  g_assert_no_error (error);

  {
    CarehareFrame frame;

    g_assert_cmpint (carehare_frame_decode (NULL, 0, 4096, &frame, &error), ==, 0);
    g_assert_no_error (error);
  }

  for (p = 1; p <= buf->len; p++)
    {
      g_autofree guint8 *copy = g_memdup2 (buf->data, p);
      gsize off = 0, expected_off = 0, i;
      gssize n;
      CarehareFrame frame;

      while ((n = carehare_frame_decode (copy + off, p - off, 4096, &frame, &error)) > 0)
        off += (gsize) n;
      g_assert_no_error (error);
      for (i = 0; i < n_boundaries; i++)
        if (boundaries[i] <= p)
          expected_off = boundaries[i];
      g_assert_cmpuint (off, ==, expected_off);
      g_assert_cmpint (n, ==, 0);
    }
}

/* ------------------------------------------------------ method encoding */

static void
test_method_encode_connection_start_ok (void)
{
  g_autoptr(GVariant) props = g_variant_ref_sink (g_variant_new_parsed ("{'product': <'carehare'>}"));
  g_autoptr(GBytes) response = g_bytes_new ("\0guest\0guest", 12);
  CarehareMethod m = { CAREHARE_METHOD_CONNECTION_START_OK };

  m.connection_start_ok.client_properties = props;
  m.connection_start_ok.mechanism = (char *) "PLAIN";
  m.connection_start_ok.response = response;
  m.connection_start_ok.locale = (char *) "en_US";
  assert_method_frame (0, &m,
                       "01 0000 00000039"
                       " 000A 000B"
                       " 00000015 07 70726F64756374 53 00000008 6361726568617265"
                       " 05 504C41494E"
                       " 0000000C 00 6775657374 00 6775657374"
                       " 05 656E5F5553"
                       " CE");
}

static void
test_method_encode_connection_tune_ok (void)
{
  CarehareMethod m = { CAREHARE_METHOD_CONNECTION_TUNE_OK };

  m.connection_tune_ok.channel_max = 2047;
  m.connection_tune_ok.frame_max = 131072;
  m.connection_tune_ok.heartbeat = 60;
  assert_method_frame (0, &m, "01 0000 0000000C 000A 001F 07FF 00020000 003C CE");
}

static void
test_method_encode_connection_open (void)
{
  CarehareMethod m = { CAREHARE_METHOD_CONNECTION_OPEN };

  /* capabilities NULL encodes as the empty short string; insist FALSE */
  m.connection_open.virtual_host = (char *) "/";
  assert_method_frame (0, &m, "01 0000 00000008 000A 0028 01 2F 00 00 CE");
}

static void
test_method_encode_connection_close (void)
{
  CarehareMethod m = { CAREHARE_METHOD_CONNECTION_CLOSE };

  m.connection_close.reply_code = 200;
  m.connection_close.reply_text = (char *) "Goodbye";
  assert_method_frame (0, &m, "01 0000 00000012 000A 0032 00C8 07 476F6F64627965 0000 0000 CE");
}

static void
test_method_encode_channel_open (void)
{
  CarehareMethod m = { CAREHARE_METHOD_CHANNEL_OPEN };

  assert_method_frame (1, &m, "01 0001 00000005 0014 000A 00 CE");
}

static void
test_method_encode_exchange_declare (void)
{
  CarehareMethod m = { CAREHARE_METHOD_EXCHANGE_DECLARE };

  m.exchange_declare.exchange = (char *) "ex";
  m.exchange_declare.type = (char *) "topic";
  m.exchange_declare.durable = TRUE;      /* bit 1 */
  m.exchange_declare.auto_delete = TRUE;  /* bit 2 */
  m.exchange_declare.internal = TRUE;     /* bit 3 */
  assert_method_frame (1, &m,
                       "01 0001 00000014 0028 000A 0000 02 6578 05 746F706963 0E 00000000 CE");

  m.exchange_declare.passive = TRUE;      /* bit 0 */
  m.exchange_declare.durable = FALSE;
  m.exchange_declare.auto_delete = FALSE;
  m.exchange_declare.internal = FALSE;
  m.exchange_declare.nowait = TRUE;       /* bit 4 */
  assert_method_frame (1, &m,
                       "01 0001 00000014 0028 000A 0000 02 6578 05 746F706963 11 00000000 CE");
}

static void
test_method_encode_queue_declare (void)
{
  CarehareMethod m = { CAREHARE_METHOD_QUEUE_DECLARE };

  m.queue_declare.queue = (char *) "q";
  m.queue_declare.durable = TRUE;    /* bit 1 */
  m.queue_declare.exclusive = TRUE;  /* bit 2 */
  m.queue_declare.nowait = TRUE;     /* bit 4 */
  assert_method_frame (2, &m, "01 0002 0000000D 0032 000A 0000 01 71 16 00000000 CE");
}

static void
test_method_encode_queue_bind (void)
{
  g_autoptr(GVariant) args = g_variant_ref_sink (g_variant_new_parsed ("{'x-match': <'all'>}"));
  CarehareMethod m = { CAREHARE_METHOD_QUEUE_BIND };

  m.queue_bind.queue = (char *) "q";
  m.queue_bind.exchange = (char *) "ex";
  m.queue_bind.routing_key = (char *) "rk";
  m.queue_bind.arguments = args;
  assert_method_frame (1, &m,
                       "01 0001 00000023 0032 0014 0000 01 71 02 6578 02 726B 00"
                       " 00000010 07 782D6D61746368 53 00000003 616C6C CE");
}

static void
test_method_encode_basic_publish (void)
{
  CarehareMethod m = { CAREHARE_METHOD_BASIC_PUBLISH };

  m.basic_publish.exchange = (char *) "ex";
  m.basic_publish.routing_key = (char *) "rk";
  m.basic_publish.mandatory = TRUE;
  assert_method_frame (1, &m, "01 0001 0000000D 003C 0028 0000 02 6578 02 726B 01 CE");
}

static void
test_method_encode_basic_consume (void)
{
  CarehareMethod m = { CAREHARE_METHOD_BASIC_CONSUME };

  m.basic_consume.queue = (char *) "q";
  m.basic_consume.consumer_tag = (char *) "ct";
  m.basic_consume.exclusive = TRUE;  /* bit 2 */
  assert_method_frame (1, &m, "01 0001 00000010 003C 0014 0000 01 71 02 6374 04 00000000 CE");
}

static void
test_method_encode_basic_ack (void)
{
  CarehareMethod m = { CAREHARE_METHOD_BASIC_ACK };

  m.basic_ack.delivery_tag = 5;
  m.basic_ack.multiple = TRUE;
  assert_method_frame (1, &m, "01 0001 0000000D 003C 0050 0000000000000005 01 CE");
  /* Every byte of the channel and the tag in place; bit 0 clear. */
  m.basic_ack.delivery_tag = G_GUINT64_CONSTANT (0xF1E2D3C4B5A69788);
  m.basic_ack.multiple = FALSE;
  assert_method_frame (0xABCD, &m, "01 ABCD 0000000D 003C 0050 F1E2D3C4B5A69788 00 CE");
}

static void
test_method_encode_basic_nack (void)
{
  CarehareMethod m = { CAREHARE_METHOD_BASIC_NACK };

  m.basic_nack.delivery_tag = G_GUINT64_CONSTANT (0x0102030405060708);
  m.basic_nack.multiple = TRUE;
  m.basic_nack.requeue = TRUE;
  assert_method_frame (1, &m, "01 0001 0000000D 003C 0078 0102030405060708 03 CE");
}

static void
test_method_encode_basic_qos (void)
{
  CarehareMethod m = { CAREHARE_METHOD_BASIC_QOS };

  m.basic_qos.prefetch_count = 10;
  assert_method_frame (1, &m, "01 0001 0000000B 003C 000A 00000000 000A 00 CE");
}

static void
test_method_encode_confirm_select (void)
{
  CarehareMethod m = { CAREHARE_METHOD_CONFIRM_SELECT };

  assert_method_frame (3, &m, "01 0003 00000005 0055 000A 00 CE");
}

static void
test_method_encode_appends (void)
{
  g_autoptr(GByteArray) out = unhex ("AABB");
  g_autoptr(GError) error = NULL;
  CarehareMethod m = { CAREHARE_METHOD_TX_SELECT };

  g_assert_true (carehare_wire_append_method_frame (out, 1, &m, &error));
  g_assert_no_error (error);
  assert_array_hex (out, "AABB 01 0001 00000004 005A 000A CE");
}

/* ------------------------------------------------------ method decoding */

static void
test_method_decode_connection_start (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;
  const char *product = NULL;
  gboolean confirms = FALSE;
  g_autoptr(GVariant) caps = NULL;

  g_assert_true (decode_method_hex ("000A 000A 00 09"
                                    " 0000003C"
                                    "  07 70726F64756374 53 00000008 5261626269744D51"
                                    "  0C 6361706162696C6974696573 46 00000015"
                                    "   12 7075626C69736865725F636F6E6669726D73 74 01"
                                    " 0000000E 414D51504C41494E20504C41494E"
                                    " 00000005 656E5F5553",
                                    &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_CONNECTION_START);
  g_assert_cmpuint (m.connection_start.version_major, ==, 0);
  g_assert_cmpuint (m.connection_start.version_minor, ==, 9);
  g_assert_true (g_variant_is_of_type (m.connection_start.server_properties, G_VARIANT_TYPE_VARDICT));
  g_assert_false (g_variant_is_floating (m.connection_start.server_properties));
  g_assert_true (g_variant_lookup (m.connection_start.server_properties, "product", "&s", &product));
  g_assert_cmpstr (product, ==, "RabbitMQ");
  caps = g_variant_lookup_value (m.connection_start.server_properties, "capabilities", G_VARIANT_TYPE_VARDICT);
  g_assert_nonnull (caps);
  g_assert_true (g_variant_lookup (caps, "publisher_confirms", "b", &confirms));
  g_assert_true (confirms);
  g_assert_cmpmem (g_bytes_get_data (m.connection_start.mechanisms, NULL),
                   g_bytes_get_size (m.connection_start.mechanisms), "AMQPLAIN PLAIN", 14);
  g_assert_cmpmem (g_bytes_get_data (m.connection_start.locales, NULL),
                   g_bytes_get_size (m.connection_start.locales), "en_US", 5);
  carehare_method_clear (&m);
  g_assert_cmpuint (m.id, ==, 0);
  g_assert_null (m.connection_start.server_properties);
}

static void
test_method_decode_connection_tune (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_true (decode_method_hex ("000A 001E 07FF 00020000 003C", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_CONNECTION_TUNE);
  g_assert_cmpuint (m.connection_tune.channel_max, ==, 2047);
  g_assert_cmpuint (m.connection_tune.frame_max, ==, 131072);
  g_assert_cmpuint (m.connection_tune.heartbeat, ==, 60);
  carehare_method_clear (&m);
}

static void
test_method_decode_basic_deliver (void)
{
  g_autoptr(GByteArray) frame_bytes = unhex ("01 0001 00000018 003C 003C 04 63746167 0000000000000007 01"
                                             " 02 6578 02 726B CE");
  g_autoptr(GError) error = NULL;
  CarehareFrame frame;
  CarehareMethod m;

  g_assert_cmpint (carehare_frame_decode (frame_bytes->data, frame_bytes->len, 4096, &frame, &error),
                   ==, (gssize) frame_bytes->len);
  g_assert_no_error (error);
  g_assert_cmpuint (frame.type, ==, CAREHARE_FRAME_METHOD);
  g_assert_cmpuint (frame.channel, ==, 1);
  g_assert_true (carehare_method_decode (frame.payload, frame.size, &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_BASIC_DELIVER);
  g_assert_true (carehare_method_has_content (m.id));
  g_assert_cmpstr (m.basic_deliver.consumer_tag, ==, "ctag");
  g_assert_cmpuint (m.basic_deliver.delivery_tag, ==, 7);
  g_assert_true (m.basic_deliver.redelivered);
  g_assert_cmpstr (m.basic_deliver.exchange, ==, "ex");
  g_assert_cmpstr (m.basic_deliver.routing_key, ==, "rk");
  carehare_method_clear (&m);
}

static void
test_method_decode_basic_return (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_true (decode_method_hex ("003C 0032 0138 08 4E4F5F524F555445 02 6578 02 726B", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_BASIC_RETURN);
  g_assert_cmpuint (m.basic_return.reply_code, ==, 312);
  g_assert_cmpstr (m.basic_return.reply_text, ==, "NO_ROUTE");
  g_assert_cmpstr (m.basic_return.exchange, ==, "ex");
  g_assert_cmpstr (m.basic_return.routing_key, ==, "rk");
  carehare_method_clear (&m);
}

static void
test_method_decode_basic_ack_nack (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_true (decode_method_hex ("003C 0050 000000000000002A 00", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m.basic_ack.delivery_tag, ==, 42);
  g_assert_false (m.basic_ack.multiple);
  carehare_method_clear (&m);

  g_assert_true (decode_method_hex ("003C 0078 000000000000002A 01", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_BASIC_NACK);
  g_assert_cmpuint (m.basic_nack.delivery_tag, ==, 42);
  g_assert_true (m.basic_nack.multiple);
  g_assert_false (m.basic_nack.requeue);
  carehare_method_clear (&m);
}

static void
test_method_decode_channel_close (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_true (decode_method_hex ("0014 0028 0194 09 4E4F545F464F554E44 0028 000A", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_CHANNEL_CLOSE);
  g_assert_cmpuint (m.channel_close.reply_code, ==, 404);
  g_assert_cmpstr (m.channel_close.reply_text, ==, "NOT_FOUND");
  g_assert_cmpuint (m.channel_close.class_id, ==, 40);
  g_assert_cmpuint (m.channel_close.method_id, ==, 10);
  g_assert_true (carehare_method_is_synchronous_request (m.id));
  carehare_method_clear (&m);
}

static void
test_method_decode_connection_blocked (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_true (decode_method_hex ("000A 003C 0D 6C6F77206F6E206D656D6F7279", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_CONNECTION_BLOCKED);
  g_assert_cmpstr (m.connection_blocked.reason, ==, "low on memory");
  carehare_method_clear (&m);

  g_assert_true (decode_method_hex ("000A 003D", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_CONNECTION_UNBLOCKED);
  carehare_method_clear (&m);
}

static void
test_method_decode_basic_cancel (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  /* server -> client, sent when the queue is deleted (consumer_cancel_notify) */
  g_assert_true (decode_method_hex ("003C 001E 04 63746167 00", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_BASIC_CANCEL);
  g_assert_cmpstr (m.basic_cancel.consumer_tag, ==, "ctag");
  g_assert_false (m.basic_cancel.nowait);
  carehare_method_clear (&m);
}

static void
test_method_decode_queue_declare_ok (void)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_true (decode_method_hex ("0032 000B 0B 616D712E67656E2D58595A 00000003 00000001", &m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_QUEUE_DECLARE_OK);
  g_assert_cmpstr (m.queue_declare_ok.queue, ==, "amq.gen-XYZ");
  g_assert_cmpuint (m.queue_declare_ok.message_count, ==, 3);
  g_assert_cmpuint (m.queue_declare_ok.consumer_count, ==, 1);
  carehare_method_clear (&m);
}

static void
test_method_info (void)
{
  guint i;

  g_assert_cmpstr (carehare_method_name (CAREHARE_METHOD_BASIC_PUBLISH), ==, "basic.publish");
  g_assert_cmpstr (carehare_method_name (CAREHARE_METHOD_EXCHANGE_UNBIND_OK), ==, "exchange.unbind-ok");
  g_assert_null (carehare_method_name (0x001E000A));  /* access.request is not supported */
  g_assert_null (carehare_method_name (0));
  g_assert_true (carehare_method_has_content (CAREHARE_METHOD_BASIC_PUBLISH));
  g_assert_true (carehare_method_has_content (CAREHARE_METHOD_BASIC_RETURN));
  g_assert_true (carehare_method_has_content (CAREHARE_METHOD_BASIC_DELIVER));
  g_assert_true (carehare_method_has_content (CAREHARE_METHOD_BASIC_GET_OK));
  g_assert_false (carehare_method_has_content (CAREHARE_METHOD_BASIC_GET));
  g_assert_true (carehare_method_is_synchronous_request (CAREHARE_METHOD_QUEUE_DECLARE));
  g_assert_false (carehare_method_is_synchronous_request (CAREHARE_METHOD_QUEUE_DECLARE_OK));
  g_assert_false (carehare_method_is_synchronous_request (CAREHARE_METHOD_BASIC_PUBLISH));
  g_assert_cmpuint (CAREHARE_METHOD_EXCHANGE_UNBIND_OK, ==, 0x00280033);

  for (i = 0; i < CAREHARE_N_METHODS; i++)
    {
      const CarehareMethodInfo *info = &carehare_method_infos[i];

      g_assert_true (carehare_method_info_lookup (info->id) == info);
      if (i > 0)
        g_assert_cmpuint (info->id, >, carehare_method_infos[i - 1].id);
    }
}

/* Fills every argument of @m with a value derived from @seed. */
static void
fill_method (CarehareMethod            *m,
             const CarehareMethodInfo  *info,
             guint                      seed)
{
  guint i;

  memset (m, 0, sizeof *m);
  m->id = info->id;
  for (i = 0; i < info->n_args; i++)
    {
      const CarehareMethodArg *arg = &info->args[i];
      gpointer field = (guint8 *) m + arg->offset;
      guint v = seed * 31 + i;

      switch (arg->type)
        {
        case CAREHARE_ARG_BIT:
          *(gboolean *) field = ((seed >> i) & 1) != 0;
          break;
        case CAREHARE_ARG_OCTET:
          *(guint8 *) field = (guint8) (0x80 + v);
          break;
        case CAREHARE_ARG_SHORT:
          *(guint16 *) field = (guint16) (0x8100 + v);
          break;
        case CAREHARE_ARG_LONG:
          *(guint32 *) field = 0x81000000u + v;
          break;
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
          *(guint64 *) field = G_GUINT64_CONSTANT (0x8100000000000000) + v;
          break;
        case CAREHARE_ARG_SHORTSTR:
          *(char **) field = g_strdup_printf ("%s-%s-\xc3\xa9-%u", info->name, arg->name, v);
          break;
        case CAREHARE_ARG_LONGSTR:
          {
            g_autofree char *s = g_strdup_printf ("%s-%u", arg->name, v);
            GByteArray *b = g_byte_array_new ();

            /* not text: a NUL and a byte that is never UTF-8 */
            g_byte_array_append (b, (const guint8 *) s, (guint) strlen (s));
            g_byte_array_append (b, (const guint8 *) "\0\xff", 2);
            *(GBytes **) field = g_byte_array_free_to_bytes (b);
          }
          break;
        case CAREHARE_ARG_TABLE:
          *(GVariant **) field = g_variant_ref_sink (
            g_variant_new_parsed ("{'n': <%u>, 's': <%s>, 'nested': <{'x': <[<int64 -1>, <true>]>}>}",
                                  v, arg->name));
          break;
        default:
          g_assert_not_reached ();
        }
    }
}

static void
assert_methods_equal (const CarehareMethod      *a,
                      const CarehareMethod      *b,
                      const CarehareMethodInfo  *info)
{
  guint i;

  g_assert_cmpuint (a->id, ==, b->id);
  for (i = 0; i < info->n_args; i++)
    {
      const CarehareMethodArg *arg = &info->args[i];
      gconstpointer fa = (const guint8 *) a + arg->offset;
      gconstpointer fb = (const guint8 *) b + arg->offset;

      switch (arg->type)
        {
        case CAREHARE_ARG_BIT:
          g_assert_cmpint (*(const gboolean *) fa, ==, *(const gboolean *) fb);
          break;
        case CAREHARE_ARG_OCTET:
          g_assert_cmpuint (*(const guint8 *) fa, ==, *(const guint8 *) fb);
          break;
        case CAREHARE_ARG_SHORT:
          g_assert_cmpuint (*(const guint16 *) fa, ==, *(const guint16 *) fb);
          break;
        case CAREHARE_ARG_LONG:
          g_assert_cmpuint (*(const guint32 *) fa, ==, *(const guint32 *) fb);
          break;
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
          g_assert_cmpuint (*(const guint64 *) fa, ==, *(const guint64 *) fb);
          break;
        case CAREHARE_ARG_SHORTSTR:
          g_assert_cmpstr (*(char * const *) fa, ==, *(char * const *) fb);
          break;
        case CAREHARE_ARG_LONGSTR:
          g_assert_true (g_bytes_equal (*(GBytes * const *) fa, *(GBytes * const *) fb));
          break;
        case CAREHARE_ARG_TABLE:
          g_assert_true (g_variant_equal (*(GVariant * const *) fa, *(GVariant * const *) fb));
          break;
        default:
          g_assert_not_reached ();
        }
    }
}

/* Every method of the 7 classes: encode, frame-decode, method-decode,
 * compare; with several seeds so every bit takes both values. */
static void
test_method_round_trip_all (void)
{
  guint i, seed;
  guint classes_seen = 0;

  for (i = 0; i < CAREHARE_N_METHODS; i++)
    {
      const CarehareMethodInfo *info = &carehare_method_infos[i];

      switch (CAREHARE_METHOD_CLASS_ID (info->id))
        {
        case CAREHARE_CLASS_CONNECTION: classes_seen |= 1 << 0; break;
        case CAREHARE_CLASS_CHANNEL: classes_seen |= 1 << 1; break;
        case CAREHARE_CLASS_EXCHANGE: classes_seen |= 1 << 2; break;
        case CAREHARE_CLASS_QUEUE: classes_seen |= 1 << 3; break;
        case CAREHARE_CLASS_BASIC: classes_seen |= 1 << 4; break;
        case CAREHARE_CLASS_CONFIRM: classes_seen |= 1 << 5; break;
        case CAREHARE_CLASS_TX: classes_seen |= 1 << 6; break;
        default: g_assert_not_reached ();
        }

      for (seed = 0; seed < 64; seed++)
        {
          g_autoptr(GByteArray) out = g_byte_array_new ();
          g_autoptr(GError) error = NULL;
          CarehareMethod in, decoded;
          CarehareFrame frame;

          fill_method (&in, info, seed);
          g_assert_true (carehare_wire_append_method_frame (out, (guint16) (seed + 1), &in, &error));
          g_assert_no_error (error);
          g_assert_cmpint (carehare_frame_decode (out->data, out->len, 0, &frame, &error), ==, (gssize) out->len);
          g_assert_no_error (error);
          g_assert_cmpuint (frame.type, ==, CAREHARE_FRAME_METHOD);
          g_assert_cmpuint (frame.channel, ==, seed + 1);
          g_assert_true (carehare_method_decode (frame.payload, frame.size, &decoded, &error));
          g_assert_no_error (error);
          assert_methods_equal (&in, &decoded, info);
          carehare_method_clear (&decoded);
          /* the values of @in were allocated here, so clearing is right */
          carehare_method_clear (&in);
        }
    }
  g_assert_cmpuint (classes_seen, ==, 0x7F);
  g_assert_cmpuint (CAREHARE_N_METHODS, ==, 64);
}

/* Every prefix of a method payload is TRUNCATED, without over-reading. */
static void
test_method_truncated_payload (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  const CarehareMethodInfo *info = carehare_method_info_lookup (CAREHARE_METHOD_CONNECTION_START);
  CarehareMethod in;
  gsize p, payload_size;

  fill_method (&in, info, 3);
  g_assert_true (carehare_wire_append_method_frame (out, 0, &in, &error));
  carehare_method_clear (&in);
  payload_size = out->len - CAREHARE_FRAME_OVERHEAD;

  for (p = 0; p < payload_size; p++)
    {
      g_autofree guint8 *copy = g_memdup2 (out->data + CAREHARE_FRAME_HEADER_SIZE, p);
      g_autoptr(GError) perror = NULL;
      CarehareMethod m;

      g_assert_false (carehare_method_decode (copy, p, &m, &perror));
      g_assert_error (perror, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_TRUNCATED);
      g_assert_cmpuint (carehare_wire_error_reply_code (perror), ==, 502);
      g_assert_cmpuint (m.id, ==, 0);
      g_assert_null (m.connection_start.server_properties);
    }
}

/* --------------------------------------------------------------- tables */

/* One entry of each of the 17 value types. */
#define ALL_TYPES_ENTRIES \
  "01 74 74 01"                          /* "t" boolean true */ \
  "01 62 62 FE"                          /* "b" int8 -2 */ \
  "01 42 42 FF"                          /* "B" uint8 255 */ \
  "01 73 73 FFFE"                        /* "s" int16 -2 */ \
  "01 75 75 FFFF"                        /* "u" uint16 65535 */ \
  "01 49 49 FFFFFFFE"                    /* "I" int32 -2 */ \
  "01 69 69 FFFFFFFF"                    /* "i" uint32 4294967295 */ \
  "01 6C 6C FFFFFFFFFFFFFFFE"            /* "l" int64 -2 */ \
  "01 66 66 3FC00000"                    /* "f" float 1.5 */ \
  "01 64 64 3FF8000000000000"            /* "d" double 1.5 */ \
  "01 44 44 02 FFFFFB2E"                 /* "D" decimal -12.34 */ \
  "01 53 53 00000002 6869"               /* "S" "hi" */ \
  "01 78 78 00000003 000102"             /* "x" bytes 00 01 02 */ \
  "01 41 41 0000000B 49 00000001 53 00000001 61" /* "A" [int32 1, "a"] */ \
  "01 54 54 0000000065000000"            /* "T" timestamp */ \
  "01 46 46 00000003 01 6E 56"           /* "F" {"n": void} */ \
  "01 56 56"                             /* "V" void */

static void
assert_table_round_trip (const char *hex)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex (hex, &error);
  g_autoptr(GByteArray) out = g_byte_array_new ();

  g_assert_no_error (error);
  g_assert_nonnull (table);
  g_assert_true (carehare_wire_table_encode (out, table, &error));
  g_assert_no_error (error);
  assert_array_hex (out, hex);
}

static void
test_table_all_types (void)
{
  g_autofree char *hex = table_hex (ALL_TYPES_ENTRIES);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex (hex, &error);
  g_autoptr(GVariant) expected = NULL;
  g_autofree char *printed = NULL;

  g_assert_no_error (error);
  expected = g_variant_ref_sink (g_variant_new_parsed (
    "{'t': <true>, 'b': <(int16 -2,)>, 'B': <byte 255>, 's': <int16 -2>,"
    " 'u': <uint16 65535>, 'I': <int32 -2>, 'i': <uint32 4294967295>,"
    " 'l': <int64 -2>, 'f': <(1.5,)>, 'd': <1.5>, 'D': <(byte 2, -1234)>,"
    " 'S': <'hi'>, 'x': <[byte 0x00, 0x01, 0x02]>, 'A': <[<int32 1>, <'a'>]>,"
    " 'T': <uint64 1694498816>, 'F': <{'n': <()>}>, 'V': <()>}"));
  printed = g_variant_print (table, TRUE);
  g_test_message ("%s", printed);
  g_assert_true (g_variant_equal (table, expected));

  assert_table_round_trip (hex);
}

static void
test_table_nested (void)
{
  g_autofree char *inner = table_hex (ALL_TYPES_ENTRIES);
  /* an array holding a table with every type, an empty array, an empty table */
  g_autofree char *array_body = g_strdup_printf ("46 %s 41 00000000 46 00000000", inner);
  g_autoptr(GByteArray) array_bytes = unhex (array_body);
  g_autofree char *array_hex = tohex (array_bytes->data, array_bytes->len);
  g_autofree char *entries = g_strdup_printf ("05 6172726179 41 %08X %s  03 746162 46 %s",
                                              array_bytes->len, array_hex, inner);
  g_autofree char *hex = table_hex (entries);

  assert_table_round_trip (hex);
}

static void
test_table_empty (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex ("00000000", &error);
  g_autoptr(GByteArray) out = g_byte_array_new ();

  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_n_children (table), ==, 0);
  g_assert_true (g_variant_is_of_type (table, G_VARIANT_TYPE_VARDICT));
  assert_table_round_trip ("00000000");

  g_assert_true (carehare_wire_table_encode (out, NULL, &error));
  assert_array_hex (out, "00000000");
}

static void
test_table_duplicate_keys (void)
{
  g_autofree char *hex = table_hex ("01 6B 49 00000001  01 6A 56  01 6B 49 00000002");
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex (hex, &error);
  g_autoptr(GVariant) expected = g_variant_ref_sink (
    g_variant_new_parsed ("[{'k', <int32 1>}, {'j', <()>}, {'k', <int32 2>}]"));

  g_assert_no_error (error);
  g_assert_true (g_variant_equal (table, expected));
  assert_table_round_trip (hex);
}

static void
test_table_non_utf8_string (void)
{
  /* S "\xff\xfe" and S "a\0b" are not UTF-8 strings: they become ay and
   * come back as x with identical bytes. */
  g_autofree char *hex = table_hex ("01 6B 53 00000002 FFFE  01 6E 53 00000003 610062");
  g_autofree char *back = table_hex ("01 6B 78 00000002 FFFE  01 6E 78 00000003 610062");
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex (hex, &error);
  g_autoptr(GVariant) k = NULL;
  g_autoptr(GByteArray) out = g_byte_array_new ();
  gsize len;
  const guint8 *data;

  g_assert_no_error (error);
  k = g_variant_lookup_value (table, "k", NULL);
  g_assert_true (g_variant_is_of_type (k, G_VARIANT_TYPE_BYTESTRING));
  data = g_variant_get_fixed_array (k, &len, 1);
  g_assert_cmpmem (data, len, "\xff\xfe", 2);

  g_assert_true (carehare_wire_table_encode (out, table, &error));
  g_assert_no_error (error);
  assert_array_hex (out, back);
  assert_table_round_trip (back);
}

static guint64
double_bits (gdouble d)
{
  guint64 bits;

  memcpy (&bits, &d, sizeof bits);
  return bits;
}

static void
test_table_float_nan (void)
{
  /* Read, a NaN or an infinity keeps its bits (a signalling NaN with its
   * payload, a quiet negative NaN, an infinity)... */
  g_autofree char *hex = table_hex ("01 61 66 7F800001  01 62 66 FFC12345  01 65 66 7F800000"
                                    "01 66 64 7FF0000000000001  01 67 64 FFF0000000000000");
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex (hex, &error);
  g_autoptr(GByteArray) out = g_byte_array_new ();
  gdouble d;

  g_assert_no_error (error);
  g_assert_true (g_variant_lookup (table, "a", "(d)", &d));
  g_assert_cmphex (double_bits (d), ==, G_GUINT64_CONSTANT (0x7FF0000020000000));
  g_assert_true (g_variant_lookup (table, "b", "(d)", &d));
  g_assert_cmphex (double_bits (d), ==, G_GUINT64_CONSTANT (0xFFF82468A0000000));
  g_assert_true (g_variant_lookup (table, "e", "(d)", &d));
  g_assert_true (isinf (d) && d > 0);
  g_assert_true (g_variant_lookup (table, "f", "d", &d));
  g_assert_cmphex (double_bits (d), ==, G_GUINT64_CONSTANT (0x7FF0000000000001));
  g_assert_true (g_variant_lookup (table, "g", "d", &d));
  g_assert_true (isinf (d) && d < 0);

  /* ...but it cannot be written back: RabbitMQ refuses it. */
  g_assert_false (carehare_wire_table_encode (out, table, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "NaN");
  g_assert_cmpuint (out->len, ==, 0);

  /* -0.0 and a denormal are ordinary numbers. */
  g_free (hex);
  hex = table_hex ("01 63 66 80000000  01 64 66 00000001  01 68 64 8000000000000000");
  assert_table_round_trip (hex);
}

/* issue 12 #14: RabbitMQ closes the connection with 541 INTERNAL_ERROR for
 * a NaN or an infinity in a table: the encoder refuses them, naming the key
 * and the value. */
static void
test_table_encode_non_finite (void)
{
  struct {
    GVariant *table;
    const char *key;
    const char *value;
  } cases[] = {
    { g_variant_new_parsed ("{'nan': <%d>}", (gdouble) NAN), "'nan'", "NaN" },
    { g_variant_new_parsed ("{'inf': <%d>}", (gdouble) INFINITY), "'inf'", "Infinity" },
    { g_variant_new_parsed ("{'minus': <%d>}", (gdouble) -INFINITY), "'minus'", "-Infinity" },
    { g_variant_new_parsed ("{'float': <(%d,)>}", (gdouble) NAN), "'float'", "NaN" },
    { g_variant_new_parsed ("{'float-inf': <(%d,)>}", (gdouble) -INFINITY), "'float-inf'",
      "-Infinity" },
    { g_variant_new_parsed ("{'in-array': <[<1.5>, <%d>]>}", (gdouble) NAN), "'in-array'", "NaN" },
    { g_variant_new_parsed ("{'outer': <{'inner': <%d>}>}", (gdouble) INFINITY), "'inner'",
      "Infinity" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GVariant) table = g_variant_ref_sink (cases[i].table);
      g_autoptr(GByteArray) out = unhex ("0102");
      g_autoptr(GError) error = NULL;

      g_assert_false (carehare_wire_table_encode (out, table, &error));
      assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, cases[i].key);
      assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, cases[i].value);
      assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "541");
      assert_array_hex (out, "0102");
    }

  /* The same in message headers and in a declare's arguments. */
  {
    g_autoptr(GVariant) headers = g_variant_ref_sink (
      g_variant_new_parsed ("{'score': <%d>}", (gdouble) NAN));
    g_autoptr(GByteArray) out = unhex ("AA");
    g_autoptr(GError) error = NULL;
    CarehareBasicProperties props = { 0 };
    CarehareMethod m = { CAREHARE_METHOD_QUEUE_DECLARE };

    props.flags = CAREHARE_PROPERTY_HEADERS;
    props.headers = headers;
    g_assert_false (carehare_wire_append_header_frame (out, 1, 60, 0, &props, &error));
    assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "score");
    assert_array_hex (out, "AA");
    g_clear_error (&error);

    m.queue_declare.queue = (char *) "q";
    m.queue_declare.arguments = headers;
    g_assert_false (carehare_wire_append_method_frame (out, 1, &m, &error));
    assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "NaN");
    assert_array_hex (out, "AA");
  }
}

static void
test_table_encode_conveniences (void)
{
  g_autoptr(GVariant) table = g_variant_ref_sink (g_variant_new_parsed (
    "{'o': <objectpath '/a'>, 'g': <signature 'as'>,"
    " 'dict': <{'k': 'v'}>, 'as': <['x', 'y']>, 'ai': <[int32 7]>,"
    " 'vv': <<<int32 5>>>, 'nothing': <@ms nothing>, 'just': <@ms 'j'>}"));
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *expected = table_hex (
    "01 6F 53 00000002 2F61"
    "01 67 53 00000002 6173"
    "04 64696374 46 00000008 01 6B 53 00000001 76"
    "02 6173 41 0000000C 53 00000001 78 53 00000001 79"
    "02 6169 41 00000005 49 00000007"
    "02 7676 49 00000005"
    "07 6E6F7468696E67 56"
    "04 6A757374 53 00000001 6A");

  g_assert_true (carehare_wire_table_encode (out, table, &error));
  g_assert_no_error (error);
  assert_array_hex (out, expected);
}

static void
test_table_encode_unencodable (void)
{
  const char *bad[] = {
    "{'h': <handle 3>}",
    "{'pair': <(1, 2)>}",
    "{'int8': <(int16 200,)>}",
    "{'int8-low': <(int16 -129,)>}",
    "{'float': <(0.1,)>}",
    "{'float-big': <(1e300,)>}",
    "{'arr': <[<(1, 2)>]>}",
    "{'nested': <{'deep': <@a{ii} {1: 2}>}>}",
  };
  const char *names[] = { "'h'", "pair", "int8", "int8-low", "float", "float-big", "arr", "deep" };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GVariant) table = g_variant_ref_sink (g_variant_new_parsed (bad[i]));
      g_autoptr(GByteArray) out = unhex ("0102");
      g_autoptr(GError) error = NULL;

      g_assert_false (carehare_wire_table_encode (out, table, &error));
      assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, names[i]);
      assert_array_hex (out, "0102");
    }

  /* in range edge values do encode */
  {
    g_autoptr(GVariant) table = g_variant_ref_sink (g_variant_new_parsed ("{'a': <(int16 -128,)>, 'b': <(int16 127,)>}"));
    g_autoptr(GByteArray) out = g_byte_array_new ();
    g_autoptr(GError) error = NULL;
    g_autofree char *expected = table_hex ("01 61 62 80  01 62 62 7F");

    g_assert_true (carehare_wire_table_encode (out, table, &error));
    g_assert_no_error (error);
    assert_array_hex (out, expected);
  }

  /* the top level must be a dictionary */
  {
    g_autoptr(GVariant) table = g_variant_ref_sink (g_variant_new_parsed ("['a']"));
    g_autoptr(GByteArray) out = g_byte_array_new ();
    g_autoptr(GError) error = NULL;

    g_assert_false (carehare_wire_table_encode (out, table, &error));
    assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "'as'");
    g_assert_cmpuint (out->len, ==, 0);
  }
}

/* A table nested @levels deep in total (outermost = 1). */
static GVariant *
make_nested (guint levels)
{
  GVariant *v = g_variant_new_parsed ("@a{sv} {}");
  guint i;

  for (i = 1; i < levels; i++)
    {
      GVariantBuilder b;

      g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
      g_variant_builder_add (&b, "{sv}", "n", v);
      v = g_variant_builder_end (&b);
    }
  return g_variant_ref_sink (v);
}

static void
test_table_encode_too_deep (void)
{
  g_autoptr(GVariant) ok = make_nested (CAREHARE_WIRE_MAX_NESTING);
  g_autoptr(GVariant) deep = make_nested (CAREHARE_WIRE_MAX_NESTING + 1);
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) back = NULL;

  g_assert_true (carehare_wire_table_encode (out, ok, &error));
  g_assert_no_error (error);
  back = carehare_wire_table_decode (out->data, out->len, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_equal (back, ok));

  g_byte_array_set_size (out, 0);
  g_assert_false (carehare_wire_table_encode (out, deep, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "deep");
  g_assert_cmpuint (out->len, ==, 0);
}

/* -------------------------------------------------------------- headers */

static void
test_header_encode (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  CarehareBasicProperties props = { 0 };

  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_DELIVERY_MODE | CAREHARE_PROPERTY_TIMESTAMP;
  props.content_type = (char *) "text/plain";
  props.delivery_mode = 2;
  props.timestamp = 0x65000000;
  props.message_id = (char *) "ignored: flag not set";
  g_assert_true (carehare_wire_append_header_frame (out, 1, CAREHARE_CLASS_BASIC, 5, &props, &error));
  g_assert_no_error (error);
  assert_array_hex (out, "02 0001 00000022 003C 0000 0000000000000005 9040"
                         " 0A 746578742F706C61696E 02 0000000065000000 CE");

  g_byte_array_set_size (out, 0);
  g_assert_true (carehare_wire_append_header_frame (out, 7, CAREHARE_CLASS_BASIC, 0, NULL, &error));
  assert_array_hex (out, "02 0007 0000000E 003C 0000 0000000000000000 0000 CE");
}

static void
fill_properties (CarehareBasicProperties *p,
                 guint16                  flags)
{
  memset (p, 0, sizeof *p);
  p->flags = flags;
#define STR(member, flag) if (flags & (flag)) p->member = g_strdup (#member "-value")
  STR (content_type, CAREHARE_PROPERTY_CONTENT_TYPE);
  STR (content_encoding, CAREHARE_PROPERTY_CONTENT_ENCODING);
  STR (correlation_id, CAREHARE_PROPERTY_CORRELATION_ID);
  STR (reply_to, CAREHARE_PROPERTY_REPLY_TO);
  STR (expiration, CAREHARE_PROPERTY_EXPIRATION);
  STR (message_id, CAREHARE_PROPERTY_MESSAGE_ID);
  STR (type, CAREHARE_PROPERTY_TYPE);
  STR (user_id, CAREHARE_PROPERTY_USER_ID);
  STR (app_id, CAREHARE_PROPERTY_APP_ID);
  STR (cluster_id, CAREHARE_PROPERTY_CLUSTER_ID);
#undef STR
  if (flags & CAREHARE_PROPERTY_HEADERS)
    p->headers = g_variant_ref_sink (g_variant_new_parsed ("{'x-retries': <int64 3>, 'bin': <[byte 0xff, 0x00]>}"));
  if (flags & CAREHARE_PROPERTY_DELIVERY_MODE)
    p->delivery_mode = 2;
  if (flags & CAREHARE_PROPERTY_PRIORITY)
    p->priority = 9;
  if (flags & CAREHARE_PROPERTY_TIMESTAMP)
    p->timestamp = G_GUINT64_CONSTANT (0xFEDCBA9876543210);
}

static void
assert_properties_equal (const CarehareBasicProperties *a,
                         const CarehareBasicProperties *b)
{
  g_assert_cmpuint (a->flags, ==, b->flags);
  g_assert_cmpstr (a->content_type, ==, b->content_type);
  g_assert_cmpstr (a->content_encoding, ==, b->content_encoding);
  g_assert_true ((a->headers == NULL) == (b->headers == NULL));
  if (a->headers != NULL)
    g_assert_true (g_variant_equal (a->headers, b->headers));
  g_assert_cmpuint (a->delivery_mode, ==, b->delivery_mode);
  g_assert_cmpuint (a->priority, ==, b->priority);
  g_assert_cmpstr (a->correlation_id, ==, b->correlation_id);
  g_assert_cmpstr (a->reply_to, ==, b->reply_to);
  g_assert_cmpstr (a->expiration, ==, b->expiration);
  g_assert_cmpstr (a->message_id, ==, b->message_id);
  g_assert_cmpuint (a->timestamp, ==, b->timestamp);
  g_assert_cmpstr (a->type, ==, b->type);
  g_assert_cmpstr (a->user_id, ==, b->user_id);
  g_assert_cmpstr (a->app_id, ==, b->app_id);
  g_assert_cmpstr (a->cluster_id, ==, b->cluster_id);
}

static void
header_round_trip (guint16 flags)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  CarehareBasicProperties in, decoded;
  CarehareFrame frame;
  guint16 class_id;
  guint64 body_size;
  g_autofree guint8 *copy = NULL;

  fill_properties (&in, flags);
  g_assert_true (carehare_wire_append_header_frame (out, 9, CAREHARE_CLASS_BASIC,
                                                    G_GUINT64_CONSTANT (0x123456789A), &in, &error));
  g_assert_no_error (error);
  g_assert_cmpint (carehare_frame_decode (out->data, out->len, 0, &frame, &error), ==, (gssize) out->len);
  g_assert_cmpuint (frame.type, ==, CAREHARE_FRAME_HEADER);
  g_assert_cmpuint (frame.channel, ==, 9);
  copy = g_memdup2 (frame.payload, frame.size);
  g_assert_true (carehare_content_header_decode (copy, frame.size, G_MAXUINT64,
                                                 &class_id, &body_size, &decoded, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (class_id, ==, 60);
  g_assert_cmpuint (body_size, ==, G_GUINT64_CONSTANT (0x123456789A));
  assert_properties_equal (&in, &decoded);
  carehare_basic_properties_clear (&decoded);
  carehare_basic_properties_clear (&in);
}

static void
test_header_round_trip_all (void)
{
  header_round_trip (CAREHARE_PROPERTY_ALL);
  header_round_trip (0);
}

static void
test_header_round_trip_each (void)
{
  guint bit;

  for (bit = 2; bit <= 15; bit++)
    header_round_trip ((guint16) (1u << bit));
}

/* ------------------------------------------------------ validation errors */

static void
assert_frame_error (const char        *hex,
                    guint32            frame_max,
                    CarehareWireError  code,
                    const char        *needle)
{
  g_autoptr(GByteArray) bytes = unhex (hex);
  g_autofree guint8 *copy = g_memdup2 (bytes->data, bytes->len);
  g_autoptr(GError) error = NULL;
  CarehareFrame frame;

  g_assert_cmpint (carehare_frame_decode (copy, bytes->len, frame_max, &frame, &error), ==, -1);
  assert_wire_error (error, code, 501, needle);
}

static void
test_error_bad_frame_end (void)
{
  assert_frame_error ("08 0000 00000000 00", 0, CAREHARE_WIRE_ERROR_BAD_FRAME_END, "0x00");
  assert_frame_error ("03 0001 00000002 6869 CD", 4096, CAREHARE_WIRE_ERROR_BAD_FRAME_END, "0xcd");
}

static void
test_error_unknown_frame_type (void)
{
  /* detected from the first byte, before the rest arrives */
  assert_frame_error ("04", 0, CAREHARE_WIRE_ERROR_UNKNOWN_FRAME_TYPE, "type 4");
  assert_frame_error ("41 4D 51 50 00 00 09 01", 0, CAREHARE_WIRE_ERROR_UNKNOWN_FRAME_TYPE, "65");
}

static void
test_error_frame_too_large (void)
{
  /* detected from the 7-byte header alone */
  assert_frame_error ("01 0001 00001389", 4096, CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE, "5001");
  assert_frame_error ("03 0001 00000FF9", 4096, CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE, "4096");
}

static void
test_error_bad_heartbeat (void)
{
  assert_frame_error ("08 0001 00000000 CE", 0, CAREHARE_WIRE_ERROR_BAD_HEARTBEAT, "channel 1");
  assert_frame_error ("08 0000 00000001 00 CE", 0, CAREHARE_WIRE_ERROR_BAD_HEARTBEAT, "1 bytes");
}

static void
assert_method_error (const char        *payload_hex,
                     CarehareWireError  code,
                     guint16            reply_code,
                     const char        *needle)
{
  g_autoptr(GError) error = NULL;
  CarehareMethod m;

  g_assert_false (decode_method_hex (payload_hex, &m, &error));
  assert_wire_error (error, code, reply_code, needle);
  g_assert_cmpuint (m.id, ==, 0);
  carehare_method_clear (&m);
}

static void
test_error_truncated (void)
{
  /* basic.publish: exchange says 5 bytes, only 2 left */
  assert_method_error ("003C 0028 0000 05 6578", CAREHARE_WIRE_ERROR_TRUNCATED, 502, "exchange");
  /* connection.start-ok: response says 4 GiB; nothing is allocated */
  assert_method_error ("000A 000B 00000000 05 504C41494E FFFFFFFF 00", CAREHARE_WIRE_ERROR_TRUNCATED, 502,
                       "response");
  /* a table whose length runs past the payload, and an entry past the table */
  assert_method_error ("003C 0014 0000 01 71 00 00 00000010 01 61", CAREHARE_WIRE_ERROR_TRUNCATED, 502,
                       "field table");
  assert_method_error ("003C 0014 0000 01 71 00 00 00000003 01 61 49 00000001",
                       CAREHARE_WIRE_ERROR_TRUNCATED, 502, "signed 32-bit");
  /* fewer than 4 bytes */
  assert_method_error ("003C", CAREHARE_WIRE_ERROR_TRUNCATED, 502, "class");
  /* missing bit octet */
  assert_method_error ("003C 0050 0000000000000001", CAREHARE_WIRE_ERROR_TRUNCATED, 502, "multiple");
}

/* Short strings are another program's bytes (a property, a header key, a
 * routing key): decoded leniently, as the Java client does, with every
 * byte that is not part of valid UTF-8 (NUL included) replaced by U+FFFD,
 * and cut at a character boundary to stay a short string (255 bytes). */
static void
test_error_bad_short_string (void)
{
  /* The server's own strings must be UTF-8 without NUL. */
  assert_method_error ("003C 0028 0000 02 65FF 02 726B 00", CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502, "exchange");
  assert_method_error ("003C 0028 0000 02 6578 02 7200 00", CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502,
                       "routing-key");
  assert_method_error ("0032 000B 02 71FF 00000000 00000000", CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502,
                       "queue");

  /* Strings longer than eight bytes take the word-at-a-time ASCII check
   * first: a NUL or a non-ASCII byte in a word or in the tail is still
   * caught, and valid UTF-8 that is not ASCII still passes. */
  assert_method_error ("003C 0028 0000 0A 6162630064656667 6869 02 726B 00",
                       CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502, "exchange");
  assert_method_error ("003C 0028 0000 0A 6162636465666780 6869 02 726B 00",
                       CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502, "exchange");
  assert_method_error ("003C 0028 0000 0A 6162636465666768 6900 02 726B 00",
                       CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502, "exchange");
  assert_method_error ("003C 0028 0000 0A 6162636465666768 69FF 02 726B 00",
                       CAREHARE_WIRE_ERROR_BAD_SHORT_STRING, 502, "exchange");
  {
    g_autoptr(GError) error = NULL;
    CarehareMethod m;

    g_assert_true (decode_method_hex ("003C 0028 0000 0A 61C3A96263646566 6768 02 726B 00", &m, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (m.basic_publish.exchange, ==, "a\xc3\xa9" "bcdefgh");
    carehare_method_clear (&m);
  }
}

static void
test_short_string_lenient (void)
{
  g_autoptr(GError) error = NULL;

  /* Where another program published a delivery: its exchange and
   * routing key. */
  {
    g_autoptr(GByteArray) bytes = unhex ("003C 003C 01 63 0000000000000001 00 02 65FF 02 7200");
    CarehareMethod m;

    g_assert_true (carehare_method_decode (bytes->data, bytes->len, &m, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (m.id, ==, CAREHARE_METHOD_BASIC_DELIVER);
    g_assert_cmpstr (m.basic_deliver.exchange, ==, "e\xef\xbf\xbd");
    g_assert_cmpstr (m.basic_deliver.routing_key, ==, "r\xef\xbf\xbd");
    carehare_method_clear (&m);
  }

  /* Text for a person: the reply texts of connection.close and
   * channel.close (RabbitMQ quotes names other clients chose) and the
   * reason of connection.blocked. */
  {
    g_autoptr(GByteArray) channel_close = unhex ("0014 0028 0194 05 636166E9FF 0032 000A");
    g_autoptr(GByteArray) connection_close = unhex ("000A 0032 0140 02 FE00 0000 0000");
    g_autoptr(GByteArray) blocked = unhex ("000A 003C 03 6C6FE9");
    CarehareMethod m;

    g_assert_true (carehare_method_decode (channel_close->data, channel_close->len, &m, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (m.channel_close.reply_code, ==, 404);
    g_assert_cmpstr (m.channel_close.reply_text, ==, "caf\xef\xbf\xbd\xef\xbf\xbd");
    g_assert_cmpuint (m.channel_close.method_id, ==, 10);
    carehare_method_clear (&m);
    g_assert_true (carehare_method_decode (connection_close->data, connection_close->len, &m,
                                           &error));
    g_assert_no_error (error);
    g_assert_cmpstr (m.connection_close.reply_text, ==, "\xef\xbf\xbd\xef\xbf\xbd");
    carehare_method_clear (&m);
    g_assert_true (carehare_method_decode (blocked->data, blocked->len, &m, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (m.connection_blocked.reason, ==, "lo\xef\xbf\xbd");
    carehare_method_clear (&m);
  }

  /* a table key */
  {
    g_autoptr(GVariant) table = decode_table_hex ("00000004 02 C328 56", &error);
    g_autoptr(GVariant) value = NULL;
    const char *key = NULL;

    g_assert_no_error (error);
    g_assert_cmpuint (g_variant_n_children (table), ==, 1);
    g_variant_get_child (table, 0, "{&sv}", &key, &value);
    g_assert_cmpstr (key, ==, "\xef\xbf\xbd(");
  }

  /* properties: \xff\xfe, a NUL, Latin-1 */
  {
    g_autoptr(GByteArray) bytes = unhex ("003C 0000 0000000000000000 C400"
                                         " 02 FFFE"      /* content-type */
                                         " 03 610062"    /* content-encoding */
                                         " 04 636166E9"); /* correlation-id */
    CarehareBasicProperties props;
    guint16 class_id;
    guint64 body_size;

    g_assert_true (carehare_content_header_decode (bytes->data, bytes->len, G_MAXUINT64,
                                                   &class_id, &body_size, &props, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (props.content_type, ==, "\xef\xbf\xbd\xef\xbf\xbd");
    g_assert_cmpstr (props.content_encoding, ==, "a\xef\xbf\xbd" "b");
    g_assert_cmpstr (props.correlation_id, ==, "caf\xef\xbf\xbd");
    carehare_basic_properties_clear (&props);
  }

  /* 255 bytes that are not UTF-8 would grow to 765: cut at 255 bytes, at a
   * character boundary, so the value can be written again. */
  {
    g_autoptr(GByteArray) bytes = unhex ("003C 0000 0000000000000000 8000 FF");
    g_autoptr(GByteArray) out = g_byte_array_new ();
    CarehareBasicProperties props;
    guint16 class_id;
    guint64 body_size;

    for (guint i = 0; i < 255; i++)
      g_byte_array_append (bytes, (const guint8 *) "\x80", 1);
    g_assert_true (carehare_content_header_decode (bytes->data, bytes->len, G_MAXUINT64,
                                                   &class_id, &body_size, &props, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (strlen (props.content_type), ==, 255);
    g_assert_true (g_utf8_validate (props.content_type, -1, NULL));
    g_assert_true (carehare_wire_append_header_frame (out, 1, class_id, body_size, &props, &error));
    g_assert_no_error (error);
    carehare_basic_properties_clear (&props);
  }
}

static void
test_error_nesting_too_deep (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = NULL;
  guint levels;

  for (levels = CAREHARE_WIRE_MAX_NESTING; levels <= CAREHARE_WIRE_MAX_NESTING + 1; levels++)
    {
      /* alternate tables and arrays: F { "n": A [ F { ... } ] } */
      g_autoptr(GByteArray) built = g_byte_array_new ();
      guint i;

      /* innermost: an empty table or array */
      g_byte_array_append (built, (const guint8 *) "\0\0\0\0", 4);
      for (i = levels - 1; i >= 1; i--)
        {
          /* level i contains level i + 1; level i + 1 is a table when i + 1 is odd */
          gboolean inner_is_table = ((i + 1) % 2) == 1;
          gboolean outer_is_table = (i % 2) == 1;
          g_autoptr(GByteArray) wrapped = g_byte_array_new ();
          guint8 len[4];
          guint32 n;

          if (outer_is_table)
            g_byte_array_append (wrapped, (const guint8 *) "\1n", 2);
          g_byte_array_append (wrapped, (const guint8 *) (inner_is_table ? "F" : "A"), 1);
          g_byte_array_append (wrapped, built->data, built->len);
          n = wrapped->len;
          len[0] = (guint8) (n >> 24); len[1] = (guint8) (n >> 16); len[2] = (guint8) (n >> 8); len[3] = (guint8) n;
          g_byte_array_set_size (built, 0);
          g_byte_array_append (built, len, 4);
          g_byte_array_append (built, wrapped->data, wrapped->len);
        }

      table = carehare_wire_table_decode (built->data, built->len, &error);
      if (levels <= CAREHARE_WIRE_MAX_NESTING)
        {
          g_autoptr(GByteArray) out = g_byte_array_new ();

          g_assert_no_error (error);
          g_assert_true (carehare_wire_table_encode (out, table, &error));
          g_assert_no_error (error);
          g_assert_cmpmem (out->data, out->len, built->data, built->len);
          g_clear_pointer (&table, g_variant_unref);
        }
      else
        {
          g_assert_null (table);
          assert_wire_error (error, CAREHARE_WIRE_ERROR_NESTING_TOO_DEEP, 502, "64");
        }
    }
}

static void
test_error_bad_field_type (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = decode_table_hex ("00000003 01 61 5A", &error);

  g_assert_null (table);
  assert_wire_error (error, CAREHARE_WIRE_ERROR_BAD_FIELD_TYPE, 502, "'Z'");

  /* inside a method argument too */
  assert_method_error ("003C 0014 0000 01 71 00 00 00000003 01 61 00", CAREHARE_WIRE_ERROR_BAD_FIELD_TYPE, 502,
                       "0x00");
}

static void
test_error_unknown_method (void)
{
  assert_method_error ("00FF 0001", CAREHARE_WIRE_ERROR_UNKNOWN_METHOD, 540, "class 255");
  assert_method_error ("001E 000A 00 00", CAREHARE_WIRE_ERROR_UNKNOWN_METHOD, 540, "class 30");
  assert_method_error ("003C 0001", CAREHARE_WIRE_ERROR_UNKNOWN_METHOD, 540, "method 1");
}

static void
test_error_trailing_bytes (void)
{
  assert_method_error ("003C 0050 0000000000000001 00 FF", CAREHARE_WIRE_ERROR_TRAILING_BYTES, 502, "basic.ack");
  assert_method_error ("005A 000A 00", CAREHARE_WIRE_ERROR_TRAILING_BYTES, 502, "tx.select");

  {
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) table = decode_table_hex ("00000002 01 61 56", &error);

    g_assert_null (table);
    /* the table's declared length cuts its only entry short */
    assert_wire_error (error, CAREHARE_WIRE_ERROR_TRUNCATED, 502, NULL);
  }
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) table = decode_table_hex ("00000003 01 61 56 00", &error);

    g_assert_null (table);
    assert_wire_error (error, CAREHARE_WIRE_ERROR_TRAILING_BYTES, 502, "1 trailing");
  }
}

static void
assert_header_error (const char        *payload_hex,
                     guint64            max_body_size,
                     CarehareWireError  code,
                     guint16            reply_code,
                     const char        *needle)
{
  g_autoptr(GByteArray) bytes = unhex (payload_hex);
  g_autofree guint8 *copy = g_memdup2 (bytes->data, bytes->len);
  g_autoptr(GError) error = NULL;
  CarehareBasicProperties props;
  guint16 class_id;
  guint64 body_size;

  g_assert_false (carehare_content_header_decode (copy, bytes->len, max_body_size,
                                                  &class_id, &body_size, &props, &error));
  assert_wire_error (error, code, reply_code, needle);
  g_assert_cmpuint (props.flags, ==, 0);
  g_assert_null (props.content_type);
  g_assert_null (props.headers);
}

static void
test_error_body_too_large (void)
{
  g_autoptr(GByteArray) bytes = unhex ("003C 0000 00000000000003E8 8000 01 61");
  g_autoptr(GError) error = NULL;
  CarehareBasicProperties props;
  guint16 class_id;
  guint64 body_size;

  assert_header_error ("003C 0000 00000000000003E8 8000 01 61", 999,
                       CAREHARE_WIRE_ERROR_BODY_TOO_LARGE, 311, "1000");
  g_assert_false (carehare_content_header_decode (bytes->data, bytes->len, 999, &class_id, &body_size,
                                                  &props, &error));
  g_assert_nonnull (strstr (error->message, "999"));
  /* the sizes are reported so the caller can skip the body */
  g_assert_cmpuint (class_id, ==, 60);
  g_assert_cmpuint (body_size, ==, 1000);
  g_clear_error (&error);

  g_assert_true (carehare_content_header_decode (bytes->data, bytes->len, 1000, &class_id, &body_size,
                                                 &props, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (props.content_type, ==, "a");
  carehare_basic_properties_clear (&props);
}

static void
test_error_bad_content_header (void)
{
  assert_header_error ("003C 0001 0000000000000000 0000", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER, 502, "weight");
  assert_header_error ("003C 0000 0000000000000000 0001", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER, 502, "more flags");
  assert_header_error ("003C 0000 0000000000000000 0002", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER, 502, "0x0002");
  assert_header_error ("0032 0000 0000000000000000 0000", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER, 502, "class 50");
  /* and the payload-level errors of headers */
  assert_header_error ("003C 0000 0000000000000000", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_TRUNCATED, 502, "content header");
  assert_header_error ("003C 0000 0000000000000000 2000 00000002 01 61", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_TRUNCATED, 502, NULL);
  assert_header_error ("003C 0000 0000000000000000 0000 00", G_MAXUINT64,
                       CAREHARE_WIRE_ERROR_TRAILING_BYTES, 502, "1 trailing");

  /* Past a sound class, weight and body size, the sizes are reported with
   * the error, so that the caller can skip that one message's body. */
  {
    static const char *const bad_properties[] = {
      "003C 0000 0000000000000007 0002",
      "003C 0000 0000000000000007 2000 00000003 01 61 5A",
    };

    for (gsize i = 0; i < G_N_ELEMENTS (bad_properties); i++)
      {
        g_autoptr(GByteArray) bytes = unhex (bad_properties[i]);
        g_autoptr(GError) error = NULL;
        CarehareBasicProperties props;
        guint16 class_id = 0;
        guint64 body_size = 0;

        g_assert_false (carehare_content_header_decode (bytes->data, bytes->len, G_MAXUINT64,
                                                        &class_id, &body_size, &props, &error));
        g_assert_nonnull (error);
        g_assert_cmpuint (class_id, ==, 60);
        g_assert_cmpuint (body_size, ==, 7);
        g_assert_cmpuint (props.flags, ==, 0);
      }
  }
  {
    g_autoptr(GByteArray) bytes = unhex ("003C 0001 0000000000000007 0000");
    g_autoptr(GError) error = NULL;
    CarehareBasicProperties props;
    guint16 class_id = 1;
    guint64 body_size = 1;

    g_assert_false (carehare_content_header_decode (bytes->data, bytes->len, G_MAXUINT64,
                                                    &class_id, &body_size, &props, &error));
    g_assert_cmpuint (class_id, ==, 0);
    g_assert_cmpuint (body_size, ==, 0);
  }
}

/* A copy owns everything: it encodes the same bytes once the borrowed
 * strings, tables and GBytes of the original are gone. */
static void
test_method_copy (void)
{
  g_autoptr(GByteArray) before = g_byte_array_new ();
  g_autoptr(GByteArray) after = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  char *queue = g_strdup ("copied-queue");
  GVariant *arguments = g_variant_ref_sink (g_variant_new_parsed ("{'x-max-length': <int32 5>}"));
  GBytes *response = g_bytes_new ("\0guest\0guest", 12);
  char *mechanism = g_strdup ("PLAIN");
  CarehareMethod declare = { CAREHARE_METHOD_QUEUE_DECLARE };
  CarehareMethod start_ok = { CAREHARE_METHOD_CONNECTION_START_OK };
  CarehareMethod declare_copy, start_ok_copy;

  declare.queue_declare.queue = queue;
  declare.queue_declare.durable = TRUE;
  declare.queue_declare.arguments = arguments;
  start_ok.connection_start_ok.mechanism = mechanism;
  start_ok.connection_start_ok.response = response;
  g_assert_true (carehare_wire_append_method_frame (before, 1, &declare, &error));
  g_assert_true (carehare_wire_append_method_frame (before, 0, &start_ok, &error));
  g_assert_no_error (error);

  carehare_method_copy (&declare, &declare_copy);
  carehare_method_copy (&start_ok, &start_ok_copy);
  g_assert_true (declare_copy.queue_declare.queue != queue);
  memset (queue, 'x', strlen (queue));
  g_free (queue);
  g_variant_unref (arguments);
  g_bytes_unref (response);
  g_free (mechanism);

  g_assert_true (carehare_wire_append_method_frame (after, 1, &declare_copy, &error));
  g_assert_true (carehare_wire_append_method_frame (after, 0, &start_ok_copy, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (before->data, before->len, after->data, after->len);
  carehare_method_clear (&declare_copy);
  carehare_method_clear (&start_ok_copy);
}

static void
test_error_unencodable (void)
{
  g_autoptr(GByteArray) out = unhex ("AA");
  g_autoptr(GError) error = NULL;
  g_autofree char *long_name = g_strnfill (256, 'q');
  CarehareMethod m = { CAREHARE_METHOD_QUEUE_DECLARE };
  CarehareBasicProperties props = { 0 };

  m.queue_declare.queue = long_name;
  g_assert_false (carehare_wire_append_method_frame (out, 1, &m, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "256 bytes");
  assert_array_hex (out, "AA");
  g_clear_error (&error);

  long_name[255] = '\0';  /* 255 bytes fit */
  g_assert_true (carehare_wire_append_method_frame (out, 1, &m, &error));
  g_assert_no_error (error);
  g_byte_array_set_size (out, 1);

  m.queue_declare.queue = (char *) "bad \xff utf-8";
  g_assert_false (carehare_wire_append_method_frame (out, 1, &m, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "UTF-8");
  assert_array_hex (out, "AA");
  g_clear_error (&error);

  /* an unencodable table argument: out unchanged */
  m.queue_declare.queue = (char *) "q";
  m.queue_declare.arguments = g_variant_ref_sink (g_variant_new_parsed ("{'x-h': <handle 1>}"));
  g_assert_false (carehare_wire_append_method_frame (out, 1, &m, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "x-h");
  assert_array_hex (out, "AA");
  g_clear_pointer (&m.queue_declare.arguments, g_variant_unref);
  g_clear_error (&error);

  /* unknown method id */
  m.id = (CarehareMethodId) 0x001E000A;
  g_assert_false (carehare_wire_append_method_frame (out, 1, &m, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "0x001e000a");
  assert_array_hex (out, "AA");
  g_clear_error (&error);

  /* header: a flag bit that names no property, and an overlong property */
  props.flags = 1;
  g_assert_false (carehare_wire_append_header_frame (out, 1, 60, 0, &props, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "0x0001");
  assert_array_hex (out, "AA");
  g_clear_error (&error);

  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_APP_ID;
  props.app_id = g_strnfill (300, 'a');
  g_assert_false (carehare_wire_append_header_frame (out, 1, 60, 0, &props, &error));
  assert_wire_error (error, CAREHARE_WIRE_ERROR_UNENCODABLE, 0, "app-id");
  assert_array_hex (out, "AA");
  g_free (props.app_id);
}

static void
test_error_reply_code_other_domain (void)
{
  g_autoptr(GError) error = g_error_new_literal (G_FILE_ERROR, G_FILE_ERROR_FAILED, "x");

  g_assert_cmpuint (carehare_wire_error_reply_code (error), ==, 0);
  g_assert_cmpuint (carehare_wire_error_reply_code (NULL), ==, 0);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/wire/frame/protocol-header", test_frame_protocol_header);
  g_test_add_func ("/wire/frame/heartbeat", test_frame_heartbeat);
  g_test_add_func ("/wire/frame/body", test_frame_body);
  g_test_add_func ("/wire/frame/in-parts", test_frame_in_parts);
  g_test_add_func ("/wire/frame/frame-max", test_frame_frame_max);
  g_test_add_func ("/wire/frame/truncated-prefixes", test_frame_truncated_prefixes);

  g_test_add_func ("/wire/method/encode/connection-start-ok", test_method_encode_connection_start_ok);
  g_test_add_func ("/wire/method/copy", test_method_copy);
  g_test_add_func ("/wire/method/encode/connection-tune-ok", test_method_encode_connection_tune_ok);
  g_test_add_func ("/wire/method/encode/connection-open", test_method_encode_connection_open);
  g_test_add_func ("/wire/method/encode/connection-close", test_method_encode_connection_close);
  g_test_add_func ("/wire/method/encode/channel-open", test_method_encode_channel_open);
  g_test_add_func ("/wire/method/encode/exchange-declare", test_method_encode_exchange_declare);
  g_test_add_func ("/wire/method/encode/queue-declare", test_method_encode_queue_declare);
  g_test_add_func ("/wire/method/encode/queue-bind", test_method_encode_queue_bind);
  g_test_add_func ("/wire/method/encode/basic-publish", test_method_encode_basic_publish);
  g_test_add_func ("/wire/method/encode/basic-consume", test_method_encode_basic_consume);
  g_test_add_func ("/wire/method/encode/basic-ack", test_method_encode_basic_ack);
  g_test_add_func ("/wire/method/encode/basic-nack", test_method_encode_basic_nack);
  g_test_add_func ("/wire/method/encode/basic-qos", test_method_encode_basic_qos);
  g_test_add_func ("/wire/method/encode/confirm-select", test_method_encode_confirm_select);
  g_test_add_func ("/wire/method/encode/appends", test_method_encode_appends);

  g_test_add_func ("/wire/method/decode/connection-start", test_method_decode_connection_start);
  g_test_add_func ("/wire/method/decode/connection-tune", test_method_decode_connection_tune);
  g_test_add_func ("/wire/method/decode/basic-deliver", test_method_decode_basic_deliver);
  g_test_add_func ("/wire/method/decode/basic-return", test_method_decode_basic_return);
  g_test_add_func ("/wire/method/decode/basic-ack-nack", test_method_decode_basic_ack_nack);
  g_test_add_func ("/wire/method/decode/channel-close", test_method_decode_channel_close);
  g_test_add_func ("/wire/method/decode/connection-blocked", test_method_decode_connection_blocked);
  g_test_add_func ("/wire/method/decode/basic-cancel", test_method_decode_basic_cancel);
  g_test_add_func ("/wire/method/decode/queue-declare-ok", test_method_decode_queue_declare_ok);
  g_test_add_func ("/wire/method/info", test_method_info);
  g_test_add_func ("/wire/method/round-trip-all", test_method_round_trip_all);
  g_test_add_func ("/wire/method/truncated-payload", test_method_truncated_payload);

  g_test_add_func ("/wire/table/all-types", test_table_all_types);
  g_test_add_func ("/wire/table/nested", test_table_nested);
  g_test_add_func ("/wire/table/empty", test_table_empty);
  g_test_add_func ("/wire/table/duplicate-keys", test_table_duplicate_keys);
  g_test_add_func ("/wire/table/non-utf8-string", test_table_non_utf8_string);
  g_test_add_func ("/wire/table/float-nan", test_table_float_nan);
  g_test_add_func ("/wire/table/encode-non-finite", test_table_encode_non_finite);
  g_test_add_func ("/wire/table/encode-conveniences", test_table_encode_conveniences);
  g_test_add_func ("/wire/table/encode-unencodable", test_table_encode_unencodable);
  g_test_add_func ("/wire/table/encode-too-deep", test_table_encode_too_deep);

  g_test_add_func ("/wire/header/encode", test_header_encode);
  g_test_add_func ("/wire/header/round-trip-all", test_header_round_trip_all);
  g_test_add_func ("/wire/header/round-trip-each", test_header_round_trip_each);

  g_test_add_func ("/wire/error/bad-frame-end", test_error_bad_frame_end);
  g_test_add_func ("/wire/error/unknown-frame-type", test_error_unknown_frame_type);
  g_test_add_func ("/wire/error/frame-too-large", test_error_frame_too_large);
  g_test_add_func ("/wire/error/bad-heartbeat", test_error_bad_heartbeat);
  g_test_add_func ("/wire/error/truncated", test_error_truncated);
  g_test_add_func ("/wire/error/bad-short-string", test_error_bad_short_string);
  g_test_add_func ("/wire/short-string/lenient", test_short_string_lenient);
  g_test_add_func ("/wire/error/nesting-too-deep", test_error_nesting_too_deep);
  g_test_add_func ("/wire/error/bad-field-type", test_error_bad_field_type);
  g_test_add_func ("/wire/error/unknown-method", test_error_unknown_method);
  g_test_add_func ("/wire/error/trailing-bytes", test_error_trailing_bytes);
  g_test_add_func ("/wire/error/body-too-large", test_error_body_too_large);
  g_test_add_func ("/wire/error/bad-content-header", test_error_bad_content_header);
  g_test_add_func ("/wire/error/unencodable", test_error_unencodable);
  g_test_add_func ("/wire/error/reply-code-other-domain", test_error_reply_code_other_domain);

  return g_test_run ();
}
