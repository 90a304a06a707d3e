/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Byte-level tests of publishing with confirms, acking consumers and the
 * content frames (header, body) that carry messages both ways, on the
 * sans-I/O connection state machine. The fake server is the one of
 * test-protocol.c (protocol-fixture.c).
 */
#include <string.h>
#include <math.h>

#include "protocol-fixture.h"

#define CHUNK_4096 (4096 - CAREHARE_FRAME_OVERHEAD)

/* ======================================================================== */
/* helpers                                                                   */
/* ======================================================================== */

/* @size bytes that differ from one offset (and one @seed) to the next. */
static GBytes *
make_body (gsize  size,
           guint8 seed)
{
  guint8 *data = g_malloc (size + 1);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (seed + i * 7 + i / 251);
  return g_bytes_new_take (data, size);
}

static Completion *
publish_full (Fixture                       *f,
              const char                    *exchange,
              const char                    *routing_key,
              GBytes                        *body,
              const CarehareBasicProperties *props,
              gboolean                       mandatory)
{
  Completion *c = completion_new (f);
  CarehareProtocolOp *op;

  op = carehare_protocol_publish (f->p, exchange, routing_key, body, props, mandatory,
                                  op_done_cb, c);
  if (c->n_calls > 0)
    g_assert_null (op);
  else
    {
      g_assert_nonnull (op);
      c->op = op;
    }
  return c;
}

/* Bytes of @str, freed with the fixture. */
static GBytes *
text (Fixture    *f,
      const char *str)
{
  GBytes *bytes = g_bytes_new (str, strlen (str));

  fixture_own (f, bytes, (GDestroyNotify) g_bytes_unref);
  return bytes;
}

/* A publish whose body is its routing key. */
static Completion *
publish (Fixture    *f,
         const char *exchange,
         const char *routing_key,
         gboolean    mandatory)
{
  g_autoptr(GBytes) body = g_bytes_new (routing_key, strlen (routing_key));

  return publish_full (f, exchange, routing_key, body, NULL, mandatory);
}

/* Frame @i of @sent must be a content header on @channel: returns the
 * body size, and the properties in @props if not NULL. */
static guint64
sent_header (GPtrArray               *sent,
             guint                    i,
             guint16                  channel,
             CarehareBasicProperties *props)
{
  g_autoptr(GError) error = NULL;
  CarehareBasicProperties decoded = { 0 };
  guint16 class_id = 0;
  guint64 body_size = 0;
  const guint8 *data;
  gsize size;
  Sent *s;

  g_assert_cmpuint (i, <, sent->len);
  s = g_ptr_array_index (sent, i);
  g_assert_cmpuint (s->type, ==, CAREHARE_FRAME_HEADER);
  g_assert_cmpuint (s->channel, ==, channel);
  data = g_bytes_get_data (s->payload, &size);
  /* Class basic, weight 0 (checked by the decoder too). */
  g_assert_cmpuint (size, >=, 14);
  g_assert_cmpuint (data[0], ==, 0);
  g_assert_cmpuint (data[1], ==, CAREHARE_CLASS_BASIC);
  g_assert_cmpuint (data[2], ==, 0);
  g_assert_cmpuint (data[3], ==, 0);
  g_assert_true (carehare_content_header_decode (data, size, G_MAXUINT64, &class_id,
                                                 &body_size, &decoded, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (class_id, ==, CAREHARE_CLASS_BASIC);
  if (props != NULL)
    *props = decoded;
  else
    carehare_basic_properties_clear (&decoded);
  return body_size;
}

/* Frames @*i... of @sent must be one whole publish on @channel: method,
 * header, then body frames of at most @frame_max - 8 bytes carrying @body.
 * Advances @*i past it. */
static void
sent_publish (GPtrArray                     *sent,
              guint                         *i,
              guint16                        channel,
              const char                    *exchange,
              const char                    *routing_key,
              gboolean                       mandatory,
              GBytes                        *body,
              guint32                        frame_max,
              CarehareBasicProperties       *props)
{
  const CarehareMethod *m;
  g_autoptr(GByteArray) received = g_byte_array_new ();
  gsize size = g_bytes_get_size (body);
  guint64 body_size;
  guint n_body = 0;

  m = sent_method (sent, (*i)++, channel, CAREHARE_METHOD_BASIC_PUBLISH);
  g_assert_cmpstr (m->basic_publish.exchange, ==, exchange);
  g_assert_cmpstr (m->basic_publish.routing_key, ==, routing_key);
  g_assert_cmpint (m->basic_publish.mandatory, ==, mandatory);
  g_assert_false (m->basic_publish.immediate);

  body_size = sent_header (sent, (*i)++, channel, props);
  g_assert_cmpuint (body_size, ==, size);

  while (received->len < size)
    {
      Sent *s;
      const guint8 *data;
      gsize n;

      g_assert_cmpuint (*i, <, sent->len);
      s = g_ptr_array_index (sent, (*i)++);
      g_assert_cmpuint (s->type, ==, CAREHARE_FRAME_BODY);
      g_assert_cmpuint (s->channel, ==, channel);
      data = g_bytes_get_data (s->payload, &n);
      g_assert_cmpuint (n, >, 0);
      g_assert_cmpuint (n, <=, frame_max - CAREHARE_FRAME_OVERHEAD);
      g_byte_array_append (received, data, n);
      n_body++;
    }
  g_assert_cmpmem (received->data, received->len, g_bytes_get_data (body, NULL), size);
  /* As few frames as the limit allows: all full but the last. */
  g_assert_cmpuint (n_body, ==, (size + frame_max - CAREHARE_FRAME_OVERHEAD - 1) /
                                (frame_max - CAREHARE_FRAME_OVERHEAD));
}

/* The body of a publish made by publish(). */
static void
sent_publish_rk (GPtrArray  *sent,
                 guint      *i,
                 guint16     channel,
                 const char *exchange,
                 const char *routing_key,
                 gboolean    mandatory)
{
  g_autoptr(GBytes) body = g_bytes_new (routing_key, strlen (routing_key));

  sent_publish (sent, i, channel, exchange, routing_key, mandatory, body, 131072, NULL);
}

static guint
count_frames (GPtrArray *sent,
              guint8     type,
              guint32    method_id)
{
  guint n = 0;

  for (guint i = 0; i < sent->len; i++)
    {
      Sent *s = g_ptr_array_index (sent, i);

      if (s->type == type && (type != CAREHARE_FRAME_METHOD || s->method.id == method_id))
        n++;
    }
  return n;
}

/* ---- the fake server: content ------------------------------------------- */

static void
encode_confirm (GByteArray *buf,
                guint16     channel,
                guint32     id,
                guint64     tag,
                gboolean    multiple)
{
  CarehareMethod m = { .id = id };

  if (id == CAREHARE_METHOD_BASIC_ACK)
    {
      m.basic_ack.delivery_tag = tag;
      m.basic_ack.multiple = multiple;
    }
  else
    {
      g_assert_cmpuint (id, ==, CAREHARE_METHOD_BASIC_NACK);
      m.basic_nack.delivery_tag = tag;
      m.basic_nack.multiple = multiple;
    }
  server_encode (buf, channel, &m);
}

static gboolean
server_confirm (Fixture  *f,
                guint16   channel,
                guint32   id,
                guint64   tag,
                gboolean  multiple)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  encode_confirm (buf, channel, id, tag, multiple);
  return feed (f, buf->data, buf->len);
}

static gboolean
server_ack (Fixture  *f,
            guint16   channel,
            guint64   tag,
            gboolean  multiple)
{
  return server_confirm (f, channel, CAREHARE_METHOD_BASIC_ACK, tag, multiple);
}

/* Channel.Open-Ok and Confirm.Select-Ok for a publisher's channel. */
static void
server_publisher_ready (Fixture *f,
                        guint16  channel)
{
  CarehareMethod open_ok = { .id = CAREHARE_METHOD_CHANNEL_OPEN_OK };
  CarehareMethod select_ok = { .id = CAREHARE_METHOD_CONFIRM_SELECT_OK };

  g_assert_true (server_method (f, channel, &open_ok));
  g_assert_true (server_method (f, channel, &select_ok));
}

/* A content header declaring @body_size, then @size bytes of @body in
 * frames of at most @chunk bytes. */
static void
encode_content (GByteArray                    *buf,
                guint16                        channel,
                guint64                        body_size,
                const CarehareBasicProperties *props,
                const guint8                  *body,
                gsize                          size,
                gsize                          chunk)
{
  g_autoptr(GError) error = NULL;

  carehare_wire_append_header_frame (buf, channel, CAREHARE_CLASS_BASIC, body_size, props,
                                     &error);
  g_assert_no_error (error);
  for (gsize offset = 0; offset < size; offset += chunk)
    carehare_wire_append_body_frame (buf, channel, body + offset, MIN (chunk, size - offset));
}

static void
encode_body (GByteArray *buf,
             guint16     channel,
             gsize       size)
{
  g_autoptr(GBytes) body = make_body (size, 3);

  carehare_wire_append_body_frame (buf, channel, g_bytes_get_data (body, NULL), size);
}

static void
encode_header (GByteArray *buf,
               guint16     channel,
               guint64     body_size)
{
  encode_content (buf, channel, body_size, NULL, NULL, 0, 1);
}

static void
encode_deliver (GByteArray *buf,
                guint16     channel,
                const char *consumer_tag,
                guint64     delivery_tag,
                gboolean    redelivered,
                const char *exchange,
                const char *routing_key)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_BASIC_DELIVER };

  m.basic_deliver.consumer_tag = (char *) consumer_tag;
  m.basic_deliver.delivery_tag = delivery_tag;
  m.basic_deliver.redelivered = redelivered;
  m.basic_deliver.exchange = (char *) exchange;
  m.basic_deliver.routing_key = (char *) routing_key;
  server_encode (buf, channel, &m);
}

/* A whole message for @consumer_tag: deliver, header, body in frames of at
 * most @chunk bytes. */
static void
encode_message (GByteArray *buf,
                guint16     channel,
                const char *consumer_tag,
                guint64     delivery_tag,
                GBytes     *body,
                gsize       chunk)
{
  gsize size = 0;
  const guint8 *data = g_bytes_get_data (body, &size);

  encode_deliver (buf, channel, consumer_tag, delivery_tag, FALSE, "ex", "rk");
  encode_content (buf, channel, size, NULL, data, size, chunk);
}

static gboolean
server_message (Fixture    *f,
                guint16     channel,
                const char *consumer_tag,
                guint64     delivery_tag,
                const char *text)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

  encode_message (buf, channel, consumer_tag, delivery_tag, body, CHUNK_4096);
  return feed (f, buf->data, buf->len);
}

static void
encode_return (GByteArray *buf,
               guint16     channel,
               guint16     reply_code,
               const char *reply_text,
               const char *exchange,
               const char *routing_key)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_BASIC_RETURN };

  m.basic_return.reply_code = reply_code;
  m.basic_return.reply_text = (char *) reply_text;
  m.basic_return.exchange = (char *) exchange;
  m.basic_return.routing_key = (char *) routing_key;
  server_encode (buf, channel, &m);
}

/* basic.return of a whole message, as RabbitMQ sends it: the publish's
 * exchange, routing key, properties and body. */
static gboolean
server_return_full (Fixture                       *f,
                    guint16                        channel,
                    const char                    *exchange,
                    const char                    *routing_key,
                    GBytes                        *body,
                    const CarehareBasicProperties *props)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  encode_return (buf, channel, 312, "NO_ROUTE", exchange, routing_key);
  encode_content (buf, channel, g_bytes_get_size (body), props,
                  g_bytes_get_data (body, NULL), g_bytes_get_size (body), CHUNK_4096);
  return feed (f, buf->data, buf->len);
}

/* basic.return of a publish made by publish(): its body is its key. */
static gboolean
server_return (Fixture    *f,
               guint16     channel,
               const char *exchange,
               const char *routing_key)
{
  g_autoptr(GBytes) body = g_bytes_new (routing_key, strlen (routing_key));

  return server_return_full (f, channel, exchange, routing_key, body, NULL);
}

/* ---- consumers ------------------------------------------------------------ */

/* What one consumer's callbacks saw. */
typedef struct {
  Fixture *f;
  CarehareProtocolConsumer *consumer;  /* our reference; NULL once given back */
  Completion *start;
  GPtrArray *deliveries;               /* CarehareProtocolDelivery * */
  guint n_closed;
  GError *closed_error;
  /* Re-entrancy: the delivery callback acks, and closes the consumer. */
  gboolean ack_in_callback;
  gboolean close_in_callback;
  Completion *close;
  /* Deliveries rejected for a content header that cannot be represented. */
  GArray *rejected_tags;               /* of guint64 */
  GError *rejected_error;              /* the last one's */
} Rec;

static Completion *consumer_close_start (Fixture *f, Rec *r);

static void
rec_free (gpointer data)
{
  Rec *r = data;

  g_clear_pointer (&r->consumer, carehare_protocol_consumer_unref);
  g_ptr_array_unref (r->deliveries);
  g_clear_error (&r->closed_error);
  g_array_unref (r->rejected_tags);
  g_clear_error (&r->rejected_error);
  g_free (r);
}

static void
delivery_cb (CarehareProtocolConsumer *consumer,
             CarehareProtocolDelivery *delivery,
             gpointer                  user_data)
{
  Rec *r = user_data;

  /* Never after the owner gave its reference back, nor after the end. */
  g_assert_nonnull (r->consumer);
  g_assert_true (consumer == r->consumer);
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_nonnull (delivery);
  g_ptr_array_add (r->deliveries, delivery);

  if (r->ack_in_callback)
    carehare_protocol_consumer_ack (r->f->p, consumer, delivery->delivery_tag, FALSE);
  if (r->close_in_callback && r->close == NULL)
    r->close = consumer_close_start (r->f, r);
}

static void
closed_cb (CarehareProtocolConsumer *consumer,
           const GError             *error,
           gpointer                  user_data)
{
  Rec *r = user_data;

  g_assert_nonnull (r->consumer);
  g_assert_true (consumer == r->consumer);
  /* At most once, never when the start failed. */
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_cmpuint (r->start->n_calls, ==, 1);
  g_assert_no_error (r->start->error);
  g_assert_nonnull (error);
  r->n_closed++;
  r->closed_error = g_error_copy (error);
}

static void
rejected_cb (CarehareProtocolConsumer *consumer,
             guint64                   delivery_tag,
             const GError             *error,
             gpointer                  user_data)
{
  Rec *r = user_data;

  g_assert_nonnull (r->consumer);
  g_assert_true (consumer == r->consumer);
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_nonnull (error);
  g_array_append_val (r->rejected_tags, delivery_tag);
  g_clear_error (&r->rejected_error);
  r->rejected_error = g_error_copy (error);
}

static Rec *
consume_options (Fixture                              *f,
                 const char                           *queue,
                 guint32                               prefetch_size,
                 guint16                               prefetch_count,
                 const CarehareProtocolConsumeOptions *options)
{
  static const CarehareProtocolConsumerCallbacks callbacks = {
    .delivery = delivery_cb,
    .closed = closed_cb,
    .rejected = rejected_cb,
  };
  Rec *r = g_new0 (Rec, 1);

  r->f = f;
  r->rejected_tags = g_array_new (FALSE, FALSE, sizeof (guint64));
  r->deliveries = g_ptr_array_new_with_free_func ((GDestroyNotify) carehare_protocol_delivery_free);
  r->start = completion_new (f);
  fixture_own (f, r, rec_free);
  r->consumer = carehare_protocol_consume_full (f->p, queue, prefetch_size, prefetch_count,
                                                options, &callbacks, r, op_done_cb, r->start);
  g_assert_nonnull (r->consumer);
  return r;
}

static Rec *
consume_full (Fixture    *f,
              const char *queue,
              guint32     prefetch_size,
              guint16     prefetch_count)
{
  return consume_options (f, queue, prefetch_size, prefetch_count, NULL);
}

static Rec *
consume (Fixture    *f,
         const char *queue,
         guint16     prefetch_count)
{
  return consume_full (f, queue, 0, prefetch_count);
}

static void
assert_start_pending (Rec *r)
{
  g_assert_cmpuint (r->start->n_calls, ==, 0);
}

static gboolean
server_consume_ok (Fixture    *f,
                   guint16     channel,
                   const char *tag)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_BASIC_CONSUME_OK };

  m.basic_consume_ok.consumer_tag = (char *) tag;
  return server_method (f, channel, &m);
}

/* Open-Ok and Qos-Ok on a consumer's channel. */
static void
server_consumer_ready (Fixture *f,
                       guint16  channel)
{
  CarehareMethod open_ok = { .id = CAREHARE_METHOD_CHANNEL_OPEN_OK };
  CarehareMethod qos_ok = { .id = CAREHARE_METHOD_BASIC_QOS_OK };

  g_assert_true (server_method (f, channel, &open_ok));
  g_assert_true (server_method (f, channel, &qos_ok));
}

/* A consumer on @queue, started on the new channel @channel with @tag. */
static Rec *
consume_started (Fixture    *f,
                 const char *queue,
                 guint16     channel,
                 const char *tag)
{
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r = consume (f, queue, 10);

  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  sent_method (sent, 0, channel, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, 1, channel, CAREHARE_METHOD_BASIC_QOS);
  sent_method (sent, 2, channel, CAREHARE_METHOD_BASIC_CONSUME);
  server_consumer_ready (f, channel);
  g_assert_true (server_consume_ok (f, channel, tag));
  assert_ok (r->start);
  g_assert_cmpstr (carehare_protocol_consumer_get_tag (r->consumer), ==, tag);
  assert_no_output (f);
  return r;
}

static Completion *
consumer_close_start (Fixture *f,
                      Rec     *r)
{
  Completion *c = completion_new (f);
  CarehareProtocolOp *op;

  op = carehare_protocol_consumer_close (f->p, r->consumer, op_done_cb, c);
  if (c->n_calls > 0)
    g_assert_null (op);
  else
    {
      g_assert_nonnull (op);
      c->op = op;
    }
  return c;
}

static CarehareProtocolDelivery *
delivery (Rec   *r,
          guint  i)
{
  g_assert_cmpuint (i, <, r->deliveries->len);
  return g_ptr_array_index (r->deliveries, i);
}

/* ======================================================================== */
/* publish                                                                   */
/* ======================================================================== */

static void
test_publish_first (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GBytes) body = make_body (5, 1);
  CarehareBasicProperties props = { 0 };
  CarehareBasicProperties got = { 0 };
  Completion *a, *b, *c;
  guint i = 0;

  connect_default (f);

  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_DELIVERY_MODE |
                CAREHARE_PROPERTY_MESSAGE_ID;
  props.content_type = (char *) "text/plain";
  props.delivery_mode = 2;
  props.message_id = (char *) "m-1";
  a = publish_full (f, "ex", "rk.a", body, &props, TRUE);
  assert_pending (a);

  /* Everything in one output, in order, on one new channel: no waiting
   * for Open-Ok or Select-Ok. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 5);
  sent_method (sent, i++, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_false (sent_method (sent, i++, 1, CAREHARE_METHOD_CONFIRM_SELECT)->confirm_select.nowait);
  sent_publish (sent, &i, 1, "ex", "rk.a", TRUE, body, 131072, &got);
  g_assert_cmpuint (i, ==, sent->len);
  g_assert_cmpuint (got.flags, ==, props.flags);
  g_assert_cmpstr (got.content_type, ==, "text/plain");
  g_assert_cmpuint (got.delivery_mode, ==, 2);
  g_assert_cmpstr (got.message_id, ==, "m-1");
  carehare_basic_properties_clear (&got);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* The same exchange: the same channel, no Open, no Select. */
  b = publish (f, "ex", "rk.b", FALSE);
  sent = take_sent (f);
  i = 0;
  sent_publish_rk (sent, &i, 1, "ex", "rk.b", FALSE);
  g_assert_cmpuint (i, ==, sent->len);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* No properties: a header with flags 0. */
  {
    CarehareBasicProperties none = { 0 };
    GPtrArray *s;

    c = publish (f, "other", "rk.c", FALSE);
    s = take_sent (f);
    i = 0;
    sent_method (s, i++, 2, CAREHARE_METHOD_CHANNEL_OPEN);
    sent_method (s, i++, 2, CAREHARE_METHOD_CONFIRM_SELECT);
    {
      g_autoptr(GBytes) cbody = g_bytes_new ("rk.c", 4);

      sent_publish (s, &i, 2, "other", "rk.c", FALSE, cbody, 131072, &none);
    }
    g_assert_cmpuint (i, ==, s->len);
    g_assert_cmpuint (none.flags, ==, 0);
    carehare_basic_properties_clear (&none);
    g_ptr_array_unref (s);
  }
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 2);

  /* Open-Ok and Select-Ok complete nothing. */
  server_publisher_ready (f, 1);
  server_publisher_ready (f, 2);
  assert_pending (a);
  assert_pending (b);
  assert_pending (c);
  assert_no_output (f);

  /* Each channel numbers its publishes from 1. */
  g_assert_true (server_ack (f, 2, 1, FALSE));
  assert_ok (c);
  assert_pending (a);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (a);
  assert_pending (b);
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_ok (b);
  /* A publish completes without a reply method. */
  g_assert_cmpuint (a->reply_id, ==, 0);
  assert_no_output (f);
}

static const gsize split_sizes[] = { 0, 1, CHUNK_4096, CHUNK_4096 + 1, 3 * CHUNK_4096 + 5,
                                     /* written from the caller's buffer */
                                     64 * 1024, 200 * 1024 + 3 };

static void
test_publish_body_split (Fixture       *f,
                         gconstpointer  data)
{
  gsize size = *(const gsize *) data;
  g_autoptr(GBytes) body = make_body (size, 42);
  g_autoptr(GPtrArray) sent = NULL;
  Completion *c;
  guint i = 0;

  handshake (f, 2047, 4096, 0);
  c = publish_full (f, "ex", "rk", body, NULL, FALSE);
  sent = take_sent (f);
  sent_method (sent, i++, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, i++, 1, CAREHARE_METHOD_CONFIRM_SELECT);
  /* Body frames of frame_max - 8 bytes (the last one shorter), none for
   * an empty body. */
  sent_publish (sent, &i, 1, "ex", "rk", FALSE, body, 4096, NULL);
  g_assert_cmpuint (i, ==, sent->len);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_BODY, 0), ==,
                    (size + CHUNK_4096 - 1) / CHUNK_4096);

  /* Every frame fits in frame_max, frame end included. */
  {
    const guint8 *bytes = f->transcript->data;
    gsize len = f->transcript->len;
    gsize offset = sizeof protocol_header;

    g_assert_cmpmem (bytes, offset, protocol_header, sizeof protocol_header);

    while (offset < len)
      {
        g_autoptr(GError) error = NULL;
        CarehareFrame frame;
        gssize n = carehare_frame_decode (bytes + offset, len - offset, 4096, &frame, &error);

        g_assert_no_error (error);
        g_assert_cmpint (n, >, 0);
        g_assert_cmpint (n, <=, 4096);
        offset += n;
      }
  }

  server_publisher_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (c);
}

/* A large body goes out as slices of the caller's GBytes: the segments to
 * write point into its memory rather than a copy. */
static void
test_publish_large_body_not_copied (Fixture       *f,
                                    gconstpointer  data)
{
  gsize size = 300 * 1024;
  g_autoptr(GBytes) body = make_body (size, 7);
  g_autoptr(GPtrArray) segments = NULL;
  gsize body_len;
  const guint8 *body_data = g_bytes_get_data (body, &body_len);
  gsize in_body = 0;
  gsize total = 0;
  Completion *c;

  handshake (f, 2047, 131072, 0);
  c = publish_full (f, "ex", "rk", body, NULL, FALSE);
  segments = carehare_protocol_take_output_segments (f->p, f->now);
  g_assert_nonnull (segments);
  for (guint i = 0; i < segments->len; i++)
    {
      gsize n;
      const guint8 *seg = g_bytes_get_data (segments->pdata[i], &n);

      total += n;
      if (seg >= body_data && seg + n <= body_data + body_len)
        in_body += n;
    }
  /* Every body byte is referenced, not copied; the rest is frame headers,
   * Open, Select, the method and the content header. */
  g_assert_cmpuint (in_body, ==, size);
  g_assert_cmpuint (total, >, size);
  g_assert_cmpuint (total - size, <, 1024);
  g_assert_null (carehare_protocol_take_output_segments (f->p, f->now));
  assert_pending (c);
}

/* The output's size, which the connection reports as part of
 * pending-write-bytes, is exactly what the next take returns: small
 * publishes copied into the output and large bodies held as slices alike,
 * and nothing once taken. */
static void
test_publish_output_size (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GBytes) large = make_body (200 * 1024, 3);
  g_autoptr(GBytes) small = make_body (100, 5);
  g_autoptr(GPtrArray) segments = NULL;
  gsize before, after_small, total = 0;
  Completion *c[3];

  handshake (f, 2047, 131072, 0);
  g_assert_cmpuint (carehare_protocol_get_output_size (f->p), ==, 0);
  c[0] = publish_full (f, "ex", "rk", small, NULL, FALSE);
  after_small = carehare_protocol_get_output_size (f->p);
  g_assert_cmpuint (after_small, >, 100);
  c[1] = publish_full (f, "ex", "rk", large, NULL, FALSE);
  before = carehare_protocol_get_output_size (f->p);
  g_assert_cmpuint (before, >, after_small + 200 * 1024);
  c[2] = publish_full (f, "ex", "rk", small, NULL, FALSE);
  g_assert_cmpuint (carehare_protocol_get_output_size (f->p), >, before + 100);
  before = carehare_protocol_get_output_size (f->p);

  segments = carehare_protocol_take_output_segments (f->p, f->now);
  g_assert_nonnull (segments);
  for (guint i = 0; i < segments->len; i++)
    total += g_bytes_get_size (segments->pdata[i]);
  g_assert_cmpuint (total, ==, before);
  g_assert_cmpuint (carehare_protocol_get_output_size (f->p), ==, 0);
  g_assert_false (carehare_protocol_has_output (f->p));
  for (guint i = 0; i < G_N_ELEMENTS (c); i++)
    assert_pending (c[i]);
}

static void
test_publish_ack_multiple (Fixture       *f,
                           gconstpointer  data)
{
  Completion *c[5];

  connect_default (f);
  for (guint i = 0; i < G_N_ELEMENTS (c); i++)
    c[i] = publish (f, "ex", "rk", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  /* All up to the tag, in order, and none after. */
  g_assert_true (server_ack (f, 1, 3, TRUE));
  for (guint i = 0; i < 3; i++)
    {
      assert_ok (c[i]);
      g_assert_cmpuint (c[i]->seq, ==, c[0]->seq + i);
    }
  assert_pending (c[3]);
  assert_pending (c[4]);

  /* Multiple again, up to a tag already partly confirmed. */
  g_assert_true (server_ack (f, 1, 4, TRUE));
  assert_ok (c[3]);
  assert_pending (c[4]);
  g_assert_true (server_ack (f, 1, 5, FALSE));
  assert_ok (c[4]);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_publish_ack_out_of_order (Fixture       *f,
                               gconstpointer  data)
{
  Completion *c1, *c2, *c3;

  connect_default (f);
  c1 = publish (f, "ex", "one", FALSE);
  c2 = publish (f, "ex", "two", FALSE);
  c3 = publish (f, "ex", "three", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  /* Exactly the publish named by the tag. */
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_ok (c2);
  assert_pending (c1);
  assert_pending (c3);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (c1);
  assert_pending (c3);
  /* multiple=true over tags already confirmed one by one. */
  g_assert_true (server_ack (f, 1, 3, TRUE));
  assert_ok (c3);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_publish_nack (Fixture       *f,
                   gconstpointer  data)
{
  Completion *c[4];

  connect_default (f);
  for (guint i = 0; i < G_N_ELEMENTS (c); i++)
    c[i] = publish (f, "ex", "rk", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  g_assert_true (server_confirm (f, 1, CAREHARE_METHOD_BASIC_NACK, 2, FALSE));
  assert_failed (c[1], CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK);
  assert_pending (c[0]);

  g_assert_true (server_confirm (f, 1, CAREHARE_METHOD_BASIC_NACK, 3, TRUE));
  assert_failed (c[0], CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK);
  assert_failed (c[2], CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK);
  assert_pending (c[3]);

  /* That message only: the channel goes on. */
  g_assert_true (server_ack (f, 1, 4, FALSE));
  assert_ok (c[3]);
  assert_no_output (f);
}

/* The reply code of an UNROUTABLE error is the return's, even when the
 * routing key itself reads like a reply code. */
static void
test_publish_return_reply_code (Fixture       *f,
                                gconstpointer  data)
{
  Completion *unroutable;
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GBytes) body = make_body (10, 3);

  handshake (f, 2047, 4096, 0);
  unroutable = publish_full (f, "ex 123 ABC", "job 404 NOT_FOUND", body, NULL, TRUE);
  sent = take_sent (f);
  server_publisher_ready (f, 1);
  g_assert_true (server_return_full (f, 1, "ex 123 ABC", "job 404 NOT_FOUND", body, NULL));
  g_assert_true (server_ack (f, 1, 1, FALSE));

  assert_failed (unroutable, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  g_assert_cmpuint (carehare_error_get_reply_code (unroutable->error), ==, 312);
  assert_message_contains (unroutable->error, "'job 404 NOT_FOUND'");
  assert_message_contains (unroutable->error, "'ex 123 ABC'");
}

static void
test_publish_return (Fixture       *f,
                     gconstpointer  data)
{
  Completion *unroutable, *routed, *not_mandatory, *again;
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GBytes) body = make_body (CHUNK_4096 + 10, 9);

  handshake (f, 2047, 4096, 0);
  routed = publish (f, "ex", "bound", TRUE);
  unroutable = publish_full (f, "ex", "nowhere", body, NULL, TRUE);
  not_mandatory = publish_full (f, "ex", "nowhere", body, NULL, FALSE);
  again = publish_full (f, "ex", "nowhere", body, NULL, TRUE);
  sent = take_sent (f);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_METHOD, CAREHARE_METHOD_BASIC_PUBLISH), ==, 4);
  server_publisher_ready (f, 1);

  /* RabbitMQ returns, then acks. The return's body is two frames. */
  g_assert_true (server_return_full (f, 1, "ex", "nowhere", body, NULL));
  assert_pending (unroutable);
  assert_no_output (f);
  g_assert_true (server_ack (f, 1, 3, TRUE));

  assert_ok (routed);
  assert_failed (unroutable, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_message_contains (unroutable->error, "312 NO_ROUTE");
  assert_message_contains (unroutable->error, "'nowhere'");
  assert_ok (not_mandatory);
  /* The return was for one message: the oldest one it can be. */
  assert_pending (again);
  g_assert_true (server_ack (f, 1, 4, FALSE));
  assert_ok (again);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* A return names no delivery tag: it is matched on everything it carries.
 * Here it returns the second of three publishes with the same key, while
 * the first is still unconfirmed (RabbitMQ returns an unroutable message
 * at once but acks a routed one only when its queue has it). */
static void
test_publish_return_not_oldest (Fixture       *f,
                                gconstpointer  data)
{
  Completion *one, *two, *three;

  connect_default (f);
  one = publish_full (f, "ex", "rk", text (f, "one"), NULL, TRUE);
  two = publish_full (f, "ex", "rk", text (f, "two"), NULL, TRUE);
  three = publish_full (f, "ex", "rk", text (f, "three"), NULL, TRUE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  g_assert_true (server_return_full (f, 1, "ex", "rk", text (f, "two"), NULL));
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_failed (two, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_message_contains (two->error, "312 NO_ROUTE");
  assert_pending (one);
  assert_pending (three);

  g_assert_true (server_ack (f, 1, 3, TRUE));
  assert_ok (one);
  assert_ok (three);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* Two returns, then one ack with multiple=true that confirms them and the
 * routed publishes around them. */
static void
test_publish_return_two_then_multiple (Fixture       *f,
                                       gconstpointer  data)
{
  static const char *const keys[] = { "a", "b", "b", "b", "a" };
  Completion *c[G_N_ELEMENTS (keys)];

  connect_default (f);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autofree char *text = g_strdup_printf ("message %u", i + 1);
      g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));

      c[i] = publish_full (f, "ex", keys[i], body, NULL, TRUE);
    }
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  /* #2 and #4 are returned, not #3 that has the same key: the bodies say
   * which. */
  g_assert_true (server_return_full (f, 1, "ex", "b", text (f, "message 2"), NULL));
  g_assert_true (server_return_full (f, 1, "ex", "b", text (f, "message 4"), NULL));
  for (guint i = 0; i < G_N_ELEMENTS (c); i++)
    assert_pending (c[i]);
  g_assert_true (server_ack (f, 1, 5, TRUE));
  assert_ok (c[0]);
  assert_failed (c[1], CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_ok (c[2]);
  assert_failed (c[3], CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_ok (c[4]);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* A headers exchange routes on headers alone: the same key and body with
 * different headers are different messages. The return is the second
 * one's; the first is routed and acked after it. */
static void
test_publish_return_headers (Fixture       *f,
                             gconstpointer  data)
{
  GBytes *body = text (f, "same body");
  g_autoptr(GVariant) kind_a = g_variant_ref_sink (g_variant_new_parsed ("{'kind': <'a'>}"));
  g_autoptr(GVariant) kind_b = g_variant_ref_sink (g_variant_new_parsed ("{'kind': <'b'>}"));
  CarehareBasicProperties props_a = { 0 };
  CarehareBasicProperties props_b = { 0 };
  CarehareBasicProperties other_id = { 0 };
  Completion *routed, *unroutable, *other;

  props_a.flags = CAREHARE_PROPERTY_HEADERS | CAREHARE_PROPERTY_DELIVERY_MODE;
  props_a.headers = kind_a;
  props_a.delivery_mode = 2;
  props_b = props_a;
  props_b.headers = kind_b;
  /* Another property that differs, the headers the same as the return's. */
  other_id = props_b;
  other_id.flags |= CAREHARE_PROPERTY_MESSAGE_ID;
  other_id.message_id = (char *) "m-3";

  connect_default (f);
  routed = publish_full (f, "hx", "", body, &props_a, TRUE);
  unroutable = publish_full (f, "hx", "", body, &props_b, TRUE);
  other = publish_full (f, "hx", "", body, &other_id, TRUE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  g_assert_true (server_return_full (f, 1, "hx", "", body, &props_b));
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_failed (unroutable, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_pending (routed);
  assert_pending (other);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  g_assert_true (server_ack (f, 1, 3, FALSE));
  assert_ok (routed);
  assert_ok (other);

  /* RabbitMQ removes a BCC header before routing: a return without it
   * still matches. */
  {
    g_autoptr(GVariant) with_bcc = g_variant_ref_sink (g_variant_new_parsed (
      "{'kind': <'c'>, 'BCC': <['q']>}"));
    g_autoptr(GVariant) without = g_variant_ref_sink (g_variant_new_parsed ("{'kind': <'c'>}"));
    CarehareBasicProperties sent = props_a;
    CarehareBasicProperties returned = props_a;
    Completion *bcc;

    sent.headers = with_bcc;
    returned.headers = without;
    bcc = publish_full (f, "hx", "", body, &sent, TRUE);
    g_ptr_array_unref (take_sent (f));
    g_assert_true (server_return_full (f, 1, "hx", "", body, &returned));
    g_assert_true (server_ack (f, 1, 4, FALSE));
    assert_failed (bcc, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  }
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* Identical messages can be told apart only by the ack that follows the
 * return: RabbitMQ confirms a returned message right after returning it. */
static void
test_publish_return_settled_by_ack (Fixture       *f,
                                    gconstpointer  data)
{
  Completion *first, *second, *third;

  connect_default (f);
  first = publish (f, "ex", "same", TRUE);
  second = publish (f, "ex", "same", TRUE);
  third = publish (f, "ex", "same", TRUE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  /* #1 went to a slow queue; #2 was returned (its binding was removed in
   * between) and acked at once. */
  g_assert_true (server_return (f, 1, "ex", "same"));
  assert_pending (first);
  assert_pending (second);
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_failed (second, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_pending (first);
  g_assert_true (server_ack (f, 1, 3, TRUE));
  assert_ok (first);
  assert_ok (third);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* The same conversation, the server's bytes one at a time. */
static void
test_publish_split_bytes (Fixture       *f,
                          gconstpointer  data)
{
  Completion *unroutable, *routed;

  handshake (f, 2047, 4096, 0);
  unroutable = publish (f, "ex", "nowhere", TRUE);
  routed = publish (f, "ex", "bound", TRUE);
  g_ptr_array_unref (take_sent (f));
  f->split = TRUE;
  server_publisher_ready (f, 1);
  g_assert_true (server_return (f, 1, "ex", "nowhere"));
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_failed (unroutable, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_pending (routed);
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_ok (routed);
  assert_no_output (f);
}

static void
test_publish_return_unmatched (Fixture       *f,
                               gconstpointer  data)
{
  Completion *c;

  handshake (f, 2047, 4096, 0);
  c = publish (f, "ex", "rk", TRUE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  /* No pending mandatory publish has this key: ignored. */
  g_assert_true (server_return (f, 1, "ex", "other"));
  g_assert_false (carehare_protocol_is_finished (f->p));
  assert_no_output (f);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (c);
}

static void
test_publish_channel_closed (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Completion *m1, *m2, *ok, *fresh, *late;
  guint16 channel;

  connect_default (f);
  m1 = publish (f, "missing", "a", FALSE);
  ok = publish (f, "present", "b", FALSE);
  m2 = publish (f, "missing", "c", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);
  server_publisher_ready (f, 2);

  encode_channel_close (buf, 1, 404, "NOT_FOUND - no exchange 'missing' in vhost '/'",
                        CAREHARE_METHOD_BASIC_PUBLISH);
  g_assert_true (feed (f, buf->data, buf->len));

  /* Every publish pending on that exchange, with the broker's reason. */
  assert_failed (m1, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  assert_failed (m2, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (m1->error), ==, 404);
  g_assert_cmpuint (carehare_error_get_reply_code (m2->error), ==, 404);
  assert_message_contains (m1->error, "no exchange 'missing'");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  /* Other exchanges are not disturbed. */
  assert_pending (ok);

  /* A late confirm for the closed channel would be on a channel that is
   * not open: the next publish gets a fresh channel and numbers from 1. */
  fresh = publish (f, "missing", "d", FALSE);
  late = publish (f, "missing", "e", FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2 + 3 + 3);
  channel = ((Sent *) g_ptr_array_index (sent, 0))->channel;
  sent_method (sent, 0, channel, CAREHARE_METHOD_CHANNEL_OPEN);
  g_assert_cmpuint (channel, !=, 0);
  g_assert_cmpuint (channel, !=, 2);
  sent_method (sent, 1, channel, CAREHARE_METHOD_CONFIRM_SELECT);
  {
    guint i = 2;

    sent_publish_rk (sent, &i, channel, "missing", "d", FALSE);
    sent_publish_rk (sent, &i, channel, "missing", "e", FALSE);
  }
  server_publisher_ready (f, channel);
  g_assert_true (server_ack (f, channel, 1, FALSE));
  assert_ok (fresh);
  assert_pending (late);
  g_assert_true (server_ack (f, channel, 2, FALSE));
  assert_ok (late);

  g_assert_true (server_ack (f, 2, 1, FALSE));
  assert_ok (ok);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_publish_blocked (Fixture       *f,
                      gconstpointer  data)
{
  CarehareMethod blocked = { .id = CAREHARE_METHOD_CONNECTION_BLOCKED };
  CarehareMethod unblocked = { .id = CAREHARE_METHOD_CONNECTION_UNBLOCKED };
  g_autoptr(GPtrArray) sent = NULL;
  Completion *first, *a, *b, *c, *fresh;
  guint i = 0;

  connect_default (f);
  first = publish (f, "ex", "first", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  blocked.connection_blocked.reason = (char *) "low on memory";
  g_assert_true (server_method (f, 0, &blocked));
  g_assert_true (carehare_protocol_is_blocked (f->p));

  /* Kept, not written. */
  a = publish (f, "ex", "a", FALSE);
  b = publish (f, "ex", "b", FALSE);
  c = publish (f, "ex", "c", FALSE);
  assert_no_output (f);
  assert_pending (a);
  assert_pending (b);
  assert_pending (c);

  /* A new exchange may get its channel, but no publish goes out. */
  fresh = publish (f, "fresh", "f", FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_METHOD, CAREHARE_METHOD_BASIC_PUBLISH), ==, 0);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_HEADER, 0), ==, 0);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_BODY, 0), ==, 0);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* An unwritten publish can be cancelled, at once. */
  carehare_protocol_cancel (f->p, b->op);
  assert_failed (b, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_no_output (f);

  /* A confirm for an earlier publish still completes it. */
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (first);

  g_assert_true (server_method (f, 0, &unblocked));
  g_assert_false (carehare_protocol_is_blocked (f->p));
  sent = take_sent (f);
  /* a and c in order on channel 1 (not b), f on its own channel. */
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_METHOD, CAREHARE_METHOD_BASIC_PUBLISH), ==, 3);
  for (i = 0; i < sent->len; i++)
    if (((Sent *) g_ptr_array_index (sent, i))->channel == 1)
      break;
  sent_publish_rk (sent, &i, 1, "ex", "a", FALSE);
  sent_publish_rk (sent, &i, 1, "ex", "c", FALSE);
  for (i = 0; i < sent->len; i++)
    if (((Sent *) g_ptr_array_index (sent, i))->channel == 2)
      break;
  sent_publish_rk (sent, &i, 2, "fresh", "f", FALSE);

  /* Tags follow what was written: a is 2, c is 3. */
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_ok (a);
  assert_pending (c);
  g_assert_true (server_ack (f, 1, 3, FALSE));
  assert_ok (c);
  server_publisher_ready (f, 2);
  g_assert_true (server_ack (f, 2, 1, FALSE));
  assert_ok (fresh);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static gboolean
server_flow (Fixture  *f,
             guint16   channel,
             gboolean  active)
{
  CarehareMethod flow = { .id = CAREHARE_METHOD_CHANNEL_FLOW };

  flow.channel_flow.active = active;
  return server_method (f, channel, &flow);
}

/* Channel.Flow(active=false) asks us to stop sending content on that
 * channel: its publishes wait (cancellable) until Flow(active=true). */
static void
test_publish_flow (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *first, *a, *b, *c, *other;
  guint i = 0;

  connect_default (f);
  first = publish (f, "ex", "first", FALSE);
  other = publish (f, "other", "o1", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);
  server_publisher_ready (f, 2);

  g_assert_true (server_flow (f, 1, FALSE));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_false (sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_FLOW_OK)->channel_flow_ok.active);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* Held, in order; a confirm for what was written still completes it. */
  a = publish (f, "ex", "a", FALSE);
  b = publish (f, "ex", "b", FALSE);
  c = publish (f, "ex", "c", FALSE);
  assert_no_output (f);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (first);
  assert_pending (a);

  /* An unwritten publish can be cancelled, at once. */
  carehare_protocol_cancel (f->p, b->op);
  assert_failed (b, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_no_output (f);

  /* Other channels are not held. */
  g_ptr_array_unref (take_sent (f));
  {
    Completion *o2 = publish (f, "other", "o2", FALSE);

    sent = take_sent (f);
    i = 0;
    sent_publish_rk (sent, &i, 2, "other", "o2", FALSE);
    g_assert_cmpuint (i, ==, sent->len);
    g_clear_pointer (&sent, g_ptr_array_unref);
    g_assert_true (server_ack (f, 2, 2, TRUE));
    assert_ok (other);
    assert_ok (o2);
  }

  /* Flow(true): Flow-Ok, then what waited, in order. */
  g_assert_true (server_flow (f, 1, TRUE));
  sent = take_sent (f);
  i = 0;
  g_assert_true (sent_method (sent, i++, 1, CAREHARE_METHOD_CHANNEL_FLOW_OK)->channel_flow_ok.active);
  sent_publish_rk (sent, &i, 1, "ex", "a", FALSE);
  sent_publish_rk (sent, &i, 1, "ex", "c", FALSE);
  g_assert_cmpuint (i, ==, sent->len);
  g_assert_true (server_ack (f, 1, 3, TRUE));
  assert_ok (a);
  assert_ok (c);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* Publishes held by Flow(active=false) fail with the channel when the
 * server closes it. */
static void
test_publish_flow_then_channel_close (Fixture       *f,
                                      gconstpointer  data)
{
  Completion *held;

  connect_default (f);
  g_ptr_array_unref (take_sent (f));
  held = publish (f, "ex", "first", FALSE);
  server_publisher_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (held);
  g_assert_true (server_flow (f, 1, FALSE));
  g_ptr_array_unref (take_sent (f));
  held = publish (f, "ex", "held", FALSE);
  assert_no_output (f);
  g_assert_true (server_channel_close (f, 1, 320, "CONNECTION_FORCED"));
  assert_failed (held, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
}

static void
test_publish_cancel_written (Fixture       *f,
                             gconstpointer  data)
{
  Completion *c;

  connect_default (f);
  c = publish (f, "ex", "rk", FALSE);
  g_ptr_array_unref (take_sent (f));

  /* Written: it completes with the broker's answer. */
  carehare_protocol_cancel (f->p, c->op);
  assert_pending (c);
  assert_no_output (f);
  server_publisher_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (c);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_publish_connection_closed (Fixture       *f,
                                gconstpointer  data)
{
  CarehareMethod blocked = { .id = CAREHARE_METHOD_CONNECTION_BLOCKED };
  Completion *written, *other, *kept, *close_c, *late;

  connect_default (f);
  written = publish (f, "ex", "a", FALSE);
  other = publish (f, "other", "b", FALSE);
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_method (f, 0, &blocked));
  kept = publish (f, "ex", "c", FALSE);

  close_c = close_start (f);
  assert_failed (written, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (other, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (kept, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  /* Blocked or not, Close goes out (it is not a publish). */
  {
    g_autoptr(GPtrArray) sent = take_sent (f);

    g_assert_cmpuint (sent->len, ==, 1);
    sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  }

  /* Late confirms are ignored while closing. */
  g_assert_true (server_ack (f, 1, 1, FALSE));
  late = publish (f, "ex", "d", FALSE);
  assert_failed (late, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_false (server_close_ok (f));
  assert_ok (close_c);
  assert_no_output (f);
}

static void
test_publish_server_close (Fixture       *f,
                           gconstpointer  data)
{
  Completion *c;

  connect_default (f);
  c = publish (f, "ex", "a", FALSE);
  g_ptr_array_unref (take_sent (f));
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - broker forced connection closure"));
  assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (c->error, "320");
}

static void
test_publish_unencodable (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GVariant) headers = NULL;
  CarehareBasicProperties props = { 0 };
  GVariantBuilder b;
  Completion *c, *ok;

  connect_default (f);
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "fd", g_variant_new_handle (3));
  headers = g_variant_ref_sink (g_variant_builder_end (&b));
  props.flags = CAREHARE_PROPERTY_HEADERS;
  props.headers = headers;

  /* Completes before the call returns; nothing written, no channel. */
  c = publish_full (f, "ex", "rk", NULL, &props, FALSE);
  assert_failed (c, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_message_contains (c->error, "'ex'");
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  /* A routing key that is no shortstr, likewise. */
  {
    g_autofree char *long_key = g_strnfill (256, 'k');

    c = publish (f, "ex", long_key, FALSE);
    assert_failed (c, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    assert_no_output (f);
  }

  /* The connection is fine. */
  ok = publish (f, "ex", "rk", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (ok);
}

typedef struct {
  guint32 method_id;
  guint64 tag;
  gboolean multiple;
  gboolean confirm_first;   /* ack tag 1 before */
} UnknownConfirmCase;

static const UnknownConfirmCase unknown_ack = { CAREHARE_METHOD_BASIC_ACK, 5, FALSE, FALSE };
static const UnknownConfirmCase unknown_ack_multiple = { CAREHARE_METHOD_BASIC_ACK, 5, TRUE, TRUE };
static const UnknownConfirmCase unknown_nack = { CAREHARE_METHOD_BASIC_NACK, 7, FALSE, FALSE };
static const UnknownConfirmCase twice_ack = { CAREHARE_METHOD_BASIC_ACK, 1, FALSE, TRUE };

static void
test_publish_unknown_tag (Fixture       *f,
                          gconstpointer  data)
{
  const UnknownConfirmCase *uc = data;
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *c1, *c2;

  connect_default (f);
  c1 = publish (f, "ex", "a", FALSE);
  c2 = publish (f, "ex", "b", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);
  if (uc->confirm_first)
    {
      g_assert_true (server_ack (f, 1, 1, FALSE));
      assert_ok (c1);
    }

  g_assert_false (server_confirm (f, 1, uc->method_id, uc->tag, uc->multiple));
  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, "never published or already confirmed");
  assert_failed (c2, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  if (!uc->confirm_first)
    assert_failed (c1, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);

  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  g_assert_cmpuint (m->connection_close.reply_code, ==, 503);
  g_assert_cmpuint (m->connection_close.class_id, ==, CAREHARE_METHOD_CLASS_ID (uc->method_id));
  g_assert_cmpuint (m->connection_close.method_id, ==, CAREHARE_METHOD_METHOD_ID (uc->method_id));
}

/* A publish on a channel that the server closes while another waits for
 * a channel (channel_max 1): the waiting exchange gets the freed id. */
static void
test_publish_channel_max (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *a, *b;

  handshake (f, 1, 131072, 0);
  a = publish (f, "a", "x", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);
  b = publish (f, "b", "y", FALSE);
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);

  g_assert_true (server_channel_close (f, 1, 404, "NOT_FOUND - no exchange 'a'"));
  assert_failed (a, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  sent = take_sent (f);
  {
    guint i = 0;

    sent_method (sent, i++, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
    sent_method (sent, i++, 1, CAREHARE_METHOD_CHANNEL_OPEN);
    sent_method (sent, i++, 1, CAREHARE_METHOD_CONFIRM_SELECT);
    sent_publish_rk (sent, &i, 1, "b", "y", FALSE);
    g_assert_cmpuint (i, ==, sent->len);
  }
  server_publisher_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (b);
}

/* A publish to @exchange on the new channel @channel, confirmed: the
 * exchange's publisher is then idle. */
static void
publish_confirmed (Fixture    *f,
                   const char *exchange,
                   guint16     channel)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *c = publish (f, exchange, "k", FALSE);
  guint i = 0;

  sent = take_sent (f);
  sent_method (sent, i++, channel, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, i++, channel, CAREHARE_METHOD_CONFIRM_SELECT);
  sent_publish_rk (sent, &i, channel, exchange, "k", FALSE);
  g_assert_cmpuint (i, ==, sent->len);
  server_publisher_ready (f, channel);
  g_assert_true (server_ack (f, channel, 1, FALSE));
  assert_ok (c);
}

/* The client closed channel @channel (reply 200) and nothing else. */
static void
assert_sent_channel_close (Fixture *f,
                           guint16  channel)
{
  g_autoptr(GPtrArray) sent = take_sent (f);

  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpuint (sent_method (sent, 0, channel, CAREHARE_METHOD_CHANNEL_CLOSE)->channel_close.reply_code,
                    ==, 200);
}

/* issue 12 #6: with channel_max 4, four publishes to four exchanges used to
 * keep every channel forever, and the next declare or publish hung. The
 * least recently used idle publisher's channel is given back instead. */
static void
test_publish_reclaim_lru (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *declare, *again, *fifth;
  guint i = 0;

  handshake (f, 4, 131072, 0);
  publish_confirmed (f, "e1", 1);
  publish_confirmed (f, "e2", 2);
  publish_confirmed (f, "e3", 3);
  publish_confirmed (f, "e4", 4);
  /* e1 again: e2 is now the least recently used. */
  again = publish (f, "e1", "k", FALSE);
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_ack (f, 1, 2, FALSE));
  assert_ok (again);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 4);

  declare = rpc_declare (f, "q");
  assert_pending (declare);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);
  assert_sent_channel_close (f, 2);
  g_assert_true (server_channel_close_ok (f, 2));
  sent = take_sent (f);
  sent_method (sent, i++, 2, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, i++, 2, CAREHARE_METHOD_QUEUE_DECLARE);
  g_assert_cmpuint (i, ==, sent->len);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_true (server_declare_ok (f, 2, "q"));
  assert_ok (declare);

  /* A publish to a fifth exchange takes the pooled channel 2. */
  fifth = publish (f, "e5", "k", FALSE);
  sent = take_sent (f);
  i = 0;
  sent_method (sent, i++, 2, CAREHARE_METHOD_CONFIRM_SELECT);
  sent_publish_rk (sent, &i, 2, "e5", "k", FALSE);
  g_assert_cmpuint (i, ==, sent->len);
  g_clear_pointer (&sent, g_ptr_array_unref);
  {
    CarehareMethod select_ok = { .id = CAREHARE_METHOD_CONFIRM_SELECT_OK };

    g_assert_true (server_method (f, 2, &select_ok));
  }
  g_assert_true (server_ack (f, 2, 1, FALSE));
  assert_ok (fifth);

  /* e2 again: its channel was given back, so it needs one; e3 is the least
   * recently used now. */
  again = publish (f, "e2", "k", FALSE);
  assert_sent_channel_close (f, 3);
  g_assert_true (server_channel_close_ok (f, 3));
  sent = take_sent (f);
  i = 0;
  sent_method (sent, i++, 3, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, i++, 3, CAREHARE_METHOD_CONFIRM_SELECT);
  sent_publish_rk (sent, &i, 3, "e2", "k", FALSE);
  g_assert_cmpuint (i, ==, sent->len);
  server_publisher_ready (f, 3);
  g_assert_true (server_ack (f, 3, 1, FALSE));
  assert_ok (again);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* A publisher with a publish in flight is not idle: a request waits for
 * its confirm, then takes the channel. */
static void
test_publish_reclaim_after_confirm (Fixture       *f,
                                    gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *pending, *declare;

  handshake (f, 1, 131072, 0);
  pending = publish (f, "e1", "k", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  declare = rpc_declare (f, "q");
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);

  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_ok (pending);
  assert_sent_channel_close (f, 1);
  g_assert_true (server_channel_close_ok (f, 1));
  sent = take_sent (f);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, 1, 1, CAREHARE_METHOD_QUEUE_DECLARE);
  g_assert_true (server_declare_ok (f, 1, "q"));
  assert_ok (declare);
}

/* A publisher idle for CAREHARE_PROTOCOL_PUBLISHER_IDLE_US gives its
 * channel back (an exchange published to once, or deleted since, does not
 * keep one forever); the protocol's deadline says when. */
static void
test_publish_reclaim_idle (Fixture       *f,
                           gconstpointer  data)
{
  Completion *busy, *later;
  gint64 idle_at;
  guint16 channel;

  connect_default (f);
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==, G_MAXINT64);
  publish_confirmed (f, "e1", 1);
  idle_at = f->now;
  g_assert_cmpint (carehare_protocol_get_deadline (f->p), ==,
                   idle_at + CAREHARE_PROTOCOL_PUBLISHER_IDLE_US);

  /* A publisher waiting for a confirm is not idle, however long. */
  busy = publish (f, "e2", "k", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 2);

  f->now += CAREHARE_PROTOCOL_PUBLISHER_IDLE_US - 1;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==,
                   idle_at + CAREHARE_PROTOCOL_PUBLISHER_IDLE_US);
  assert_no_output (f);
  f->now += 1;
  g_assert_cmpint (carehare_protocol_tick (f->p, f->now), ==, G_MAXINT64);
  assert_sent_channel_close (f, 1);
  g_assert_true (server_channel_close_ok (f, 1));
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  /* Late frames for it are not for anyone. The next publish to e1 opens a
   * channel again. */
  g_assert_true (server_ack (f, 2, 1, FALSE));
  assert_ok (busy);
  later = publish (f, "e1", "k", FALSE);
  {
    g_autoptr(GPtrArray) sent = take_sent (f);
    guint i = 0;

    channel = ((Sent *) g_ptr_array_index (sent, 0))->channel;
    g_assert_cmpuint (channel, !=, 2);
    sent_method (sent, i++, channel, CAREHARE_METHOD_CHANNEL_OPEN);
    sent_method (sent, i++, channel, CAREHARE_METHOD_CONFIRM_SELECT);
    sent_publish_rk (sent, &i, channel, "e1", "k", FALSE);
    g_assert_cmpuint (i, ==, sent->len);
  }
  server_publisher_ready (f, channel);
  g_assert_true (server_ack (f, channel, 1, FALSE));
  assert_ok (later);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* A request waits for a channel only while one will free up: when every
 * channel is held by a running consumer, it fails at once with a clear
 * error instead of hanging. */
static void
test_publish_no_channel_will_free (Fixture       *f,
                                   gconstpointer  data)
{
  Completion *declare, *pub, *rpc_busy, *waiting, *close_c;
  Rec *r1, *r2, *r3;

  handshake (f, 2, 131072, 0);
  r1 = consume_started (f, "a", 1, "ctag-a");

  /* Channel 2 runs an RPC: what waits behind it may run after it. */
  rpc_busy = rpc_declare (f, "busy");
  g_ptr_array_unref (take_sent (f));
  r2 = consume (f, "b", 1);
  waiting = rpc_declare (f, "waiting");
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 2);

  /* The RPC's channel goes to the consumer, which may still fail to start:
   * the declare waits for its Consume-Ok... */
  g_assert_true (server_declare_ok (f, 2, "busy"));
  assert_ok (rpc_busy);
  g_ptr_array_unref (take_sent (f));
  assert_pending (waiting);
  {
    CarehareMethod qos_ok = { .id = CAREHARE_METHOD_BASIC_QOS_OK };

    g_assert_true (server_method (f, 2, &qos_ok));
  }
  /* ...and fails once every channel holds a running consumer. */
  g_assert_true (server_consume_ok (f, 2, "ctag-b"));
  assert_ok (r2->start);
  assert_failed (waiting, CAREHARE_ERROR, CAREHARE_ERROR_FAILED);
  assert_message_contains (waiting->error, "channel_max");
  assert_message_contains (waiting->error, "consumers");
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);

  /* From now on at once, for every kind of request. */
  declare = rpc_declare (f, "q");
  assert_failed (declare, CAREHARE_ERROR, CAREHARE_ERROR_FAILED);
  pub = publish (f, "ex", "k", FALSE);
  assert_failed (pub, CAREHARE_ERROR, CAREHARE_ERROR_FAILED);
  r3 = consume (f, "c", 1);
  assert_failed (r3->start, CAREHARE_ERROR, CAREHARE_ERROR_FAILED);
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);

  /* A consumer being closed will free its channel: a request waits for it. */
  close_c = consumer_close_start (f, r1);
  g_ptr_array_unref (take_sent (f));
  declare = rpc_declare (f, "q");
  assert_pending (declare);
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (close_c);
  {
    g_autoptr(GPtrArray) sent = take_sent (f);

    sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_OPEN);
    sent_method (sent, 1, 1, CAREHARE_METHOD_QUEUE_DECLARE);
  }
  g_assert_true (server_declare_ok (f, 1, "q"));
  assert_ok (declare);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* ======================================================================== */
/* consume                                                                   */
/* ======================================================================== */

static void
test_consume_start (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Rec *r;

  connect_default (f);
  r = consume (f, "jobs", 25);
  assert_start_pending (r);
  g_assert_null (carehare_protocol_consumer_get_tag (r->consumer));

  /* Pipelined: Open, Qos, Consume in one output. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  m = sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_QOS);
  g_assert_cmpuint (m->basic_qos.prefetch_count, ==, 25);
  g_assert_cmpuint (m->basic_qos.prefetch_size, ==, 0);
  g_assert_false (m->basic_qos.global);
  m = sent_method (sent, 2, 1, CAREHARE_METHOD_BASIC_CONSUME);
  g_assert_cmpstr (m->basic_consume.queue, ==, "jobs");
  g_assert_cmpstr (m->basic_consume.consumer_tag, ==, "");
  g_assert_false (m->basic_consume.no_ack);
  g_assert_false (m->basic_consume.nowait);
  g_assert_false (m->basic_consume.exclusive);

  server_consumer_ready (f, 1);
  assert_start_pending (r);
  g_assert_true (server_consume_ok (f, 1, "amq.ctag-xyz"));
  assert_ok (r->start);
  g_assert_cmpuint (r->start->reply_id, ==, CAREHARE_METHOD_BASIC_CONSUME_OK);
  g_assert_cmpstr (r->start->consumer_tag, ==, "amq.ctag-xyz");
  g_assert_cmpstr (carehare_protocol_consumer_get_tag (r->consumer), ==, "amq.ctag-xyz");
  g_assert_cmpuint (r->n_closed, ==, 0);
  assert_no_output (f);
}

typedef struct {
  gsize size;
  gboolean split;
} DeliverCase;

static const DeliverCase deliver_single = { 5, FALSE };
static const DeliverCase deliver_multi = { 2 * CHUNK_4096 + 100, FALSE };
static const DeliverCase deliver_empty = { 0, FALSE };
static const DeliverCase deliver_split = { CHUNK_4096 + 100, TRUE };

static void
test_consume_deliver (Fixture       *f,
                      gconstpointer  data)
{
  const DeliverCase *dc = data;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GBytes) body = make_body (dc->size, 77);
  g_autoptr(GVariant) headers = NULL;
  CarehareBasicProperties props = { 0 };
  CarehareProtocolDelivery *d;
  GVariantBuilder b;
  gint32 n = 0;
  const char *s = NULL;
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "x-n", g_variant_new_int32 (-7));
  g_variant_builder_add (&b, "{sv}", "x-s", g_variant_new_string ("hi"));
  headers = g_variant_ref_sink (g_variant_builder_end (&b));
  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_HEADERS |
                CAREHARE_PROPERTY_DELIVERY_MODE | CAREHARE_PROPERTY_TIMESTAMP |
                CAREHARE_PROPERTY_APP_ID;
  props.content_type = (char *) "application/json";
  props.headers = headers;
  props.delivery_mode = 2;
  props.timestamp = G_GUINT64_CONSTANT (1700000000);
  props.app_id = (char *) "test";

  encode_deliver (buf, 1, "ctag", 42, TRUE, "logs", "a.b.c");
  encode_content (buf, 1, dc->size, &props, g_bytes_get_data (body, NULL), dc->size, CHUNK_4096);

  if (dc->split)
    {
      /* Nothing until the last byte of the last body frame. */
      for (guint i = 0; i + 1 < buf->len; i++)
        g_assert_true (carehare_protocol_receive (f->p, buf->data + i, 1, f->now));
      g_assert_cmpuint (r->deliveries->len, ==, 0);
      g_assert_true (carehare_protocol_receive (f->p, buf->data + buf->len - 1, 1, f->now));
    }
  else
    g_assert_true (feed (f, buf->data, buf->len));

  g_assert_cmpuint (r->deliveries->len, ==, 1);
  d = delivery (r, 0);
  g_assert_cmpuint (d->delivery_tag, ==, 42);
  g_assert_true (d->redelivered);
  g_assert_cmpstr (d->consumer_tag, ==, "ctag");
  g_assert_cmpstr (d->exchange, ==, "logs");
  g_assert_cmpstr (d->routing_key, ==, "a.b.c");
  g_assert_cmpuint (d->properties.flags, ==, props.flags);
  g_assert_cmpstr (d->properties.content_type, ==, "application/json");
  g_assert_cmpuint (d->properties.delivery_mode, ==, 2);
  g_assert_cmpuint (d->properties.timestamp, ==, G_GUINT64_CONSTANT (1700000000));
  g_assert_cmpstr (d->properties.app_id, ==, "test");
  g_assert_null (d->properties.message_id);
  g_assert_nonnull (d->properties.headers);
  g_assert_true (g_variant_lookup (d->properties.headers, "x-n", "i", &n));
  g_assert_cmpint (n, ==, -7);
  g_assert_true (g_variant_lookup (d->properties.headers, "x-s", "&s", &s));
  g_assert_cmpstr (s, ==, "hi");
  g_assert_nonnull (d->body);
  g_assert_cmpmem (g_bytes_get_data (d->body, NULL), g_bytes_get_size (d->body),
                   g_bytes_get_data (body, NULL), dc->size);

  /* Nothing to say back until the application acks; and the next one. */
  assert_no_output (f);
  g_assert_true (server_message (f, 1, "ctag", 43, "next"));
  g_assert_cmpuint (r->deliveries->len, ==, 2);
  g_assert_cmpuint (delivery (r, 1)->delivery_tag, ==, 43);
  g_assert_cmpmem (g_bytes_get_data (delivery (r, 1)->body, NULL),
                   g_bytes_get_size (delivery (r, 1)->body), "next", 4);
  g_assert_cmpuint (delivery (r, 1)->properties.flags, ==, 0);
  g_assert_cmpuint (r->n_closed, ==, 0);
}

static void
test_consume_ack (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Rec *other, *r;

  connect_default (f);
  other = consume_started (f, "other", 1, "ctag-other");
  r = consume_started (f, "q", 2, "ctag");
  (void) other;
  g_assert_true (server_message (f, 2, "ctag", 1, "one"));
  g_assert_true (server_message (f, 2, "ctag", 2, "two"));
  g_assert_true (server_message (f, 2, "ctag", 3, "three"));
  g_assert_cmpuint (r->deliveries->len, ==, 3);

  g_assert_true (server_message (f, 2, "ctag", 4, "four"));
  g_assert_cmpuint (r->deliveries->len, ==, 4);

  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  carehare_protocol_consumer_nack (f->p, r->consumer, 2, FALSE, TRUE);
  carehare_protocol_consumer_nack (f->p, r->consumer, 3, TRUE, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 4, TRUE);

  /* On the consumer's channel, in the order asked. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 4);
  m = sent_method (sent, 0, 2, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 1);
  g_assert_false (m->basic_ack.multiple);
  m = sent_method (sent, 1, 2, CAREHARE_METHOD_BASIC_NACK);
  g_assert_cmpuint (m->basic_nack.delivery_tag, ==, 2);
  g_assert_false (m->basic_nack.multiple);
  g_assert_true (m->basic_nack.requeue);
  m = sent_method (sent, 2, 2, CAREHARE_METHOD_BASIC_NACK);
  g_assert_cmpuint (m->basic_nack.delivery_tag, ==, 3);
  g_assert_true (m->basic_nack.multiple);
  g_assert_false (m->basic_nack.requeue);
  m = sent_method (sent, 3, 2, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 4);
  g_assert_true (m->basic_ack.multiple);
}

/* The broker closes the channel (406 PRECONDITION_FAILED "unknown delivery
 * tag") for an ack or nack of a tag it does not owe: a second ack of one
 * message would kill the consumer. Only tags handed out and not settled
 * yet are sent; the others are dropped. */
static void
test_consume_ack_settled_or_unknown (Fixture       *f,
                                     gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  for (guint64 tag = 1; tag <= 6; tag++)
    g_assert_true (server_message (f, 1, "ctag", tag, "m"));
  g_assert_cmpuint (r->deliveries->len, ==, 6);

  /* Before anything is settled: tags the broker never sent. */
  carehare_protocol_consumer_ack (f->p, r->consumer, 0, FALSE);
  g_test_expect_message ("Carehare", G_LOG_LEVEL_DEBUG,
                         "not sending basic.ack of delivery tag 99 on channel 1: "
                         "no such delivery is waiting to be settled");
  carehare_protocol_consumer_ack (f->p, r->consumer, 99, FALSE);
  g_test_assert_expected_messages ();
  carehare_protocol_consumer_nack (f->p, r->consumer, 7, FALSE, TRUE);
  assert_no_output (f);

  /* Settled once, dropped after, ack or nack alike. */
  carehare_protocol_consumer_ack (f->p, r->consumer, 2, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 2, FALSE);
  carehare_protocol_consumer_nack (f->p, r->consumer, 2, FALSE, TRUE);
  carehare_protocol_consumer_nack (f->p, r->consumer, 1, FALSE, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 2);
  m = sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_NACK);
  g_assert_cmpuint (m->basic_nack.delivery_tag, ==, 1);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* multiple: every unsettled tag up to the one given, which must itself
   * be unsettled (RabbitMQ wants it so; a tag never delivered could cover
   * deliveries the program has not seen); nothing otherwise. */
  carehare_protocol_consumer_ack (f->p, r->consumer, 4, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 4, TRUE);  /* settled: none */
  carehare_protocol_consumer_nack (f->p, r->consumer, 100, TRUE, TRUE);  /* unknown: none */
  carehare_protocol_consumer_nack (f->p, r->consumer, 5, TRUE, TRUE);  /* 3 and 5 */
  carehare_protocol_consumer_ack (f->p, r->consumer, 5, TRUE);  /* settled: none */
  carehare_protocol_consumer_ack (f->p, r->consumer, 3, TRUE);  /* settled: none */
  carehare_protocol_consumer_ack (f->p, r->consumer, 6, TRUE);  /* 6 */
  carehare_protocol_consumer_ack (f->p, r->consumer, 6, FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 4);
  g_assert_false (m->basic_ack.multiple);
  m = sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_NACK);
  g_assert_cmpuint (m->basic_nack.delivery_tag, ==, 5);
  g_assert_true (m->basic_nack.multiple);
  g_assert_true (m->basic_nack.requeue);
  m = sent_method (sent, 2, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 6);
  g_assert_true (m->basic_ack.multiple);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* multiple with tag 0: every unsettled one. */
  g_assert_true (server_message (f, 1, "ctag", 7, "m"));
  g_assert_true (server_message (f, 1, "ctag", 8, "m"));
  carehare_protocol_consumer_ack (f->p, r->consumer, 0, TRUE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 0, TRUE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 8);
  g_assert_true (m->basic_ack.multiple);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

typedef enum {
  AFTER_CANCEL_SETTLE,
  AFTER_CANCEL_CLOSE,
  AFTER_CANCEL_SERVER_CLOSE,
  AFTER_CANCEL_CONNECTION_CLOSE,
} AfterCancel;

static const AfterCancel after_cancel_settle = AFTER_CANCEL_SETTLE;
static const AfterCancel after_cancel_close = AFTER_CANCEL_CLOSE;
static const AfterCancel after_cancel_server_close = AFTER_CANCEL_SERVER_CLOSE;
static const AfterCancel after_cancel_connection_close = AFTER_CANCEL_CONNECTION_CLOSE;

/* A server Basic.Cancel ends the consumer, but deliveries already handed
 * out may still be settled: the channel stays open until they are (or the
 * owner closes the consumer), then it is closed. Before, the channel was
 * closed at once and every ack that followed was dropped: the broker
 * redelivered messages the program had processed. */
static void
test_consume_server_cancel_unsettled (Fixture       *f,
                                      gconstpointer  data)
{
  AfterCancel after = *(const AfterCancel *) data;
  CarehareMethod cancel = { .id = CAREHARE_METHOD_BASIC_CANCEL };
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *close_c;
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  for (guint64 tag = 1; tag <= 2; tag++)
    g_assert_true (server_message (f, 1, "ctag", tag, "m"));
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  g_ptr_array_unref (take_sent (f));

  /* The last delivery and the cancel in one read. */
  {
    g_autoptr(GByteArray) buf = g_byte_array_new ();
    g_autoptr(GBytes) body = g_bytes_new_static ("m", 1);

    encode_message (buf, 1, "ctag", 3, body, CHUNK_4096);
    cancel.basic_cancel.consumer_tag = (char *) "ctag";
    server_encode (buf, 1, &cancel);
    g_assert_true (feed (f, buf->data, buf->len));
  }
  g_assert_cmpuint (r->deliveries->len, ==, 3);
  g_assert_cmpuint (r->n_closed, ==, 1);
  g_assert_error (r->closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  /* Cancel-Ok, and the channel stays: 2 and 3 are not settled. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_CANCEL_OK);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  /* Acks still go out; a settled tag is still dropped. */
  carehare_protocol_consumer_ack (f->p, r->consumer, 2, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 2);
  g_clear_pointer (&sent, g_ptr_array_unref);

  switch (after)
    {
    case AFTER_CANCEL_SETTLE:
      /* The last one settled: its nack, then Close. */
      carehare_protocol_consumer_nack (f->p, r->consumer, 3, FALSE, TRUE);
      sent = take_sent (f);
      g_assert_cmpuint (sent->len, ==, 2);
      m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_NACK);
      g_assert_cmpuint (m->basic_nack.delivery_tag, ==, 3);
      sent_method (sent, 1, 1, CAREHARE_METHOD_CHANNEL_CLOSE);
      g_assert_true (server_channel_close_ok (f, 1));
      g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
      close_c = consumer_close_start (f, r);
      assert_ok (close_c);
      break;
    case AFTER_CANCEL_CLOSE:
      /* The owner closes it: Close at once, complete at Close-Ok. */
      close_c = consumer_close_start (f, r);
      assert_pending (close_c);
      sent = take_sent (f);
      g_assert_cmpuint (sent->len, ==, 1);
      sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE);
      carehare_protocol_consumer_ack (f->p, r->consumer, 3, FALSE);
      assert_no_output (f);
      g_assert_true (server_channel_close_ok (f, 1));
      assert_ok (close_c);
      g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
      break;
    case AFTER_CANCEL_SERVER_CLOSE:
      {
        g_autoptr(GByteArray) buf = g_byte_array_new ();

        encode_channel_close (buf, 1, 406, "PRECONDITION_FAILED - whatever", 0);
        g_assert_true (feed (f, buf->data, buf->len));
        sent = take_sent (f);
        g_assert_cmpuint (sent->len, ==, 1);
        sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
        g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
        carehare_protocol_consumer_ack (f->p, r->consumer, 3, FALSE);
        assert_no_output (f);
        close_c = consumer_close_start (f, r);
        assert_ok (close_c);
      }
      break;
    case AFTER_CANCEL_CONNECTION_CLOSE:
      g_assert_false (server_close (f, 320, "CONNECTION_FORCED - bye"));
      g_ptr_array_unref (take_sent (f));
      carehare_protocol_consumer_ack (f->p, r->consumer, 3, FALSE);
      assert_no_output (f);
      break;
    default:
      g_assert_not_reached ();
    }
  /* The owner was told once. */
  g_assert_cmpuint (r->n_closed, ==, 1);
  assert_no_output (f);
}

static void
test_consume_ack_after_close (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *close_c;
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  g_assert_true (server_message (f, 1, "ctag", 1, "one"));

  close_c = consumer_close_start (f, r);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE);

  /* Dropped while closing and after, each with a debug line: the broker
   * requeues. */
  g_test_expect_message ("Carehare", G_LOG_LEVEL_DEBUG,
                         "not sending basic.ack of delivery tag 1: *closed*");
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  g_test_expect_message ("Carehare", G_LOG_LEVEL_DEBUG,
                         "not sending basic.nack of delivery tag 1: *closed*");
  carehare_protocol_consumer_nack (f->p, r->consumer, 1, FALSE, TRUE);
  g_test_assert_expected_messages ();
  assert_no_output (f);
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (close_c);
  g_test_expect_message ("Carehare", G_LOG_LEVEL_DEBUG,
                         "not sending basic.ack of delivery tag 1 (multiple): *closed*");
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, TRUE);
  g_test_assert_expected_messages ();
  assert_no_output (f);
  g_assert_cmpuint (r->n_closed, ==, 0);
}

static void
test_consume_ack_after_finish (Fixture       *f,
                               gconstpointer  data)
{
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  g_assert_true (server_message (f, 1, "ctag", 1, "one"));
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - shutdown"));
  g_ptr_array_unref (take_sent (f));

  g_test_expect_message ("Carehare", G_LOG_LEVEL_DEBUG,
                         "not sending basic.ack of delivery tag 1: *closed*");
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  g_test_expect_message ("Carehare", G_LOG_LEVEL_DEBUG,
                         "not sending basic.nack of delivery tag 1 (multiple): *closed*");
  carehare_protocol_consumer_nack (f->p, r->consumer, 1, TRUE, TRUE);
  g_test_assert_expected_messages ();
  assert_no_output (f);
}

static void
test_consume_reentrant (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  r->ack_in_callback = TRUE;
  g_assert_true (server_message (f, 1, "ctag", 1, "one"));
  g_assert_cmpuint (r->deliveries->len, ==, 1);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 1);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* Closing from the callback: the ack goes first, then Close. */
  r->close_in_callback = TRUE;
  g_assert_true (server_message (f, 1, "ctag", 2, "two"));
  g_assert_nonnull (r->close);
  assert_pending (r->close);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  g_assert_cmpuint (sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK)->basic_ack.delivery_tag,
                    ==, 2);
  sent_method (sent, 1, 1, CAREHARE_METHOD_CHANNEL_CLOSE);

  /* Later ones are dropped. */
  g_assert_true (server_message (f, 1, "ctag", 3, "three"));
  g_assert_cmpuint (r->deliveries->len, ==, 2);
  assert_no_output (f);
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (r->close);
  g_assert_cmpuint (r->n_closed, ==, 0);
}

/* A handshake with a server whose properties name @product. */
static void
handshake_with_product (Fixture    *f,
                        const char *product)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_START };
  g_autoptr(GBytes) mechs = g_bytes_new_static ("PLAIN", 5);
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);
  g_autoptr(GVariant) props = NULL;
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "product", g_variant_new_string (product));
  props = g_variant_ref_sink (g_variant_builder_end (&b));
  m.connection_start.version_minor = 9;
  m.connection_start.server_properties = props;
  m.connection_start.mechanisms = mechs;
  m.connection_start.locales = locales;
  start (f);
  g_assert_true (server_method (f, 0, &m));
  g_assert_true (server_tune (f, 2047, 131072, 0));
  g_assert_true (server_open_ok (f));
  assert_ok (f->handshake);
  g_ptr_array_unref (take_sent (f));
}

/* Arguments the broker would answer by closing something are refused
 * before anything is sent, failing that start alone: an empty queue name
 * (AMQP: "the last queue declared on this channel", and channels are
 * pooled), and prefetch_size != 0 on RabbitMQ (540 NOT_IMPLEMENTED closes
 * the whole connection). */
static void
test_consume_invalid_arguments (Fixture       *f,
                                gconstpointer  data)
{
  Rec *r;

  connect_default (f);
  r = consume (f, "", 1);
  assert_failed (r->start, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_message_contains (r->start->error, "empty");
  assert_no_output (f);

  r = consume_full (f, "q", 65536, 1);
  assert_failed (r->start, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_message_contains (r->start->error, "65536");
  assert_message_contains (r->start->error, "RabbitMQ");
  assert_no_output (f);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_false (carehare_protocol_is_finished (f->p));

  /* The connection goes on: prefetch_size 0 starts. */
  consume_started (f, "q", 1, "ctag");
}

/* Exclusive, a chosen tag and arguments reach Basic.Consume as given; the
 * chosen tag is the consumer's from the start, and deliveries carry it. */
static void
test_consume_options (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GVariant) arguments = g_variant_ref_sink (
    g_variant_new_parsed ("{'x-priority': <int32 10>, 'x-stream-offset': <'first'>}"));
  CarehareProtocolConsumeOptions options = { TRUE, "my-tag", arguments };
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  gint32 priority = 0;
  const char *offset = NULL;
  Rec *r;

  connect_default (f);
  r = consume_options (f, "q", 0, 5, &options);
  g_assert_cmpstr (carehare_protocol_consumer_get_tag (r->consumer), ==, "my-tag");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  m = sent_method (sent, 2, 1, CAREHARE_METHOD_BASIC_CONSUME);
  g_assert_cmpstr (m->basic_consume.queue, ==, "q");
  g_assert_cmpstr (m->basic_consume.consumer_tag, ==, "my-tag");
  g_assert_true (m->basic_consume.exclusive);
  g_assert_false (m->basic_consume.no_ack);
  g_assert_true (g_variant_lookup (m->basic_consume.arguments, "x-priority", "i", &priority));
  g_assert_cmpint (priority, ==, 10);
  g_assert_true (g_variant_lookup (m->basic_consume.arguments, "x-stream-offset", "&s", &offset));
  g_assert_cmpstr (offset, ==, "first");
  server_consumer_ready (f, 1);
  g_assert_true (server_consume_ok (f, 1, "my-tag"));
  assert_ok (r->start);
  g_assert_cmpstr (carehare_protocol_consumer_get_tag (r->consumer), ==, "my-tag");
  g_assert_true (server_message (f, 1, "my-tag", 1, "one"));
  g_assert_cmpuint (r->deliveries->len, ==, 1);

  /* Without options: not exclusive, an empty tag (the server names it). */
  g_clear_pointer (&sent, g_ptr_array_unref);
  r = consume (f, "q2", 5);
  g_assert_null (carehare_protocol_consumer_get_tag (r->consumer));
  sent = take_sent (f);
  m = sent_method (sent, 2, 2, CAREHARE_METHOD_BASIC_CONSUME);
  g_assert_cmpstr (m->basic_consume.consumer_tag, ==, "");
  g_assert_false (m->basic_consume.exclusive);
}

/* A tag another live consumer of this connection has, or asked for, is
 * refused before anything is sent: the broker would take it on another
 * channel, and the tag would name two consumers. Once that consumer has
 * ended the tag is free again. Tags and arguments the wire cannot carry
 * are the caller's mistake. */
static void
test_consume_tag_in_use (Fixture       *f,
                         gconstpointer  data)
{
  CarehareProtocolConsumeOptions options = { FALSE, "shared", NULL };
  g_autofree char *long_tag = g_strnfill (256, 't');
  CarehareProtocolConsumeOptions too_long = { FALSE, long_tag, NULL };
  GVariantDict dict;
  g_autoptr(GVariant) bad = NULL;
  CarehareProtocolConsumeOptions unencodable = { FALSE, NULL, NULL };
  g_autoptr(GPtrArray) sent = NULL;
  Completion *closed;
  Rec *first, *second, *third;

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert_value (&dict, "x", g_variant_new_double (NAN));
  bad = g_variant_ref_sink (g_variant_dict_end (&dict));
  unencodable.arguments = bad;

  connect_default (f);
  first = consume_options (f, "q", 0, 5, &options);
  g_ptr_array_unref (take_sent (f));
  /* Asked for, not confirmed yet: already taken. */
  second = consume_options (f, "q", 0, 5, &options);
  assert_failed (second->start, G_IO_ERROR, G_IO_ERROR_EXISTS);
  assert_message_contains (second->start->error, "'shared'");
  assert_no_output (f);

  server_consumer_ready (f, 1);
  g_assert_true (server_consume_ok (f, 1, "shared"));
  assert_ok (first->start);
  second = consume_options (f, "other-queue", 0, 5, &options);
  assert_failed (second->start, G_IO_ERROR, G_IO_ERROR_EXISTS);
  assert_no_output (f);

  third = consume_options (f, "q", 0, 5, &too_long);
  assert_failed (third->start, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  third = consume_options (f, "q", 0, 5, &unencodable);
  assert_failed (third->start, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));

  /* Being closed (the program gave it up): the tag may be used again at
   * once, on another channel. */
  closed = completion_new (f);
  closed->op = carehare_protocol_consumer_close (f->p, first->consumer, op_done_cb, closed);
  g_ptr_array_unref (take_sent (f));
  second = consume_options (f, "q", 0, 5, &options);
  assert_start_pending (second);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  g_assert_cmpstr (sent_method (sent, 2, 2, CAREHARE_METHOD_BASIC_CONSUME)->basic_consume.consumer_tag,
                   ==, "shared");
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (closed);
}

/* Another server may implement prefetch_size: it is sent. */
static void
test_consume_prefetch_size_other_server (Fixture       *f,
                                         gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  handshake_with_product (f, "qpid-cpp");
  r = consume_full (f, "q", 65536, 1);
  assert_start_pending (r);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  g_assert_cmpuint (sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_QOS)->basic_qos.prefetch_size,
                    ==, 65536);
}

static void
test_consume_not_found (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Completion *close_c;
  Rec *r;

  connect_default (f);
  r = consume (f, "missing", 1);
  g_ptr_array_unref (take_sent (f));

  /* RabbitMQ answers Open and Qos, then closes the channel at Consume. */
  server_consumer_ready (f, 1);
  encode_channel_close (buf, 1, 404, "NOT_FOUND - no queue 'missing' in vhost '/'",
                        CAREHARE_METHOD_BASIC_CONSUME);
  g_assert_true (feed (f, buf->data, buf->len));

  assert_failed (r->start, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (r->start->error), ==, 404);
  assert_message_contains (r->start->error, "no queue 'missing'");
  g_assert_cmpuint (r->n_closed, ==, 0);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  /* Over: closing it completes at once, acks are dropped. */
  close_c = consumer_close_start (f, r);
  assert_ok (close_c);
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  assert_no_output (f);
  g_assert_cmpuint (r->n_closed, ==, 0);
}

static const gboolean cancel_nowait = TRUE;
static const gboolean cancel_wait = FALSE;

static void
test_consume_server_cancel (Fixture       *f,
                            gconstpointer  data)
{
  gboolean nowait = *(const gboolean *) data;
  CarehareMethod cancel = { .id = CAREHARE_METHOD_BASIC_CANCEL };
  g_autoptr(GPtrArray) sent = NULL;
  Completion *close_c;
  Rec *r;
  guint i = 0;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  cancel.basic_cancel.consumer_tag = (char *) "ctag";
  cancel.basic_cancel.nowait = nowait;
  g_assert_true (server_method (f, 1, &cancel));

  g_assert_cmpuint (r->n_closed, ==, 1);
  g_assert_error (r->closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  assert_message_contains (r->closed_error, "'q'");

  sent = take_sent (f);
  if (!nowait)
    g_assert_cmpstr (sent_method (sent, i++, 1, CAREHARE_METHOD_BASIC_CANCEL_OK)->basic_cancel_ok.consumer_tag,
                     ==, "ctag");
  sent_method (sent, i++, 1, CAREHARE_METHOD_CHANNEL_CLOSE);
  g_assert_cmpuint (i, ==, sent->len);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  /* In flight before the server read our Close: dropped. */
  g_assert_true (server_message (f, 1, "ctag", 9, "late"));
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  assert_no_output (f);

  /* The id is free after Close-Ok. */
  g_assert_true (server_channel_close_ok (f, 1));
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);
  g_assert_cmpuint (r->n_closed, ==, 1);
  close_c = consumer_close_start (f, r);
  assert_ok (close_c);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

static void
test_consume_server_close (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  encode_channel_close (buf, 1, 406, "PRECONDITION_FAILED - unknown delivery tag 7",
                        CAREHARE_METHOD_BASIC_ACK);
  g_assert_true (feed (f, buf->data, buf->len));

  g_assert_cmpuint (r->n_closed, ==, 1);
  g_assert_error (r->closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (r->closed_error), ==, 406);
  assert_message_contains (r->closed_error, "unknown delivery tag 7");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  assert_no_output (f);
}

static void
test_consume_close (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GBytes) body = make_body (3 * CHUNK_4096, 5);
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *close_c, *close_again, *close_after;
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");

  /* A message half received when we close. */
  encode_message (buf, 1, "ctag", 1, body, CHUNK_4096);
  g_assert_true (feed (f, buf->data, 2 * CHUNK_4096));
  g_assert_cmpuint (r->deliveries->len, ==, 0);

  close_c = consumer_close_start (f, r);
  assert_pending (close_c);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE);
  g_assert_cmpuint (m->channel_close.reply_code, ==, 200);

  /* The rest of it, and whole messages after it: dropped, no error. */
  g_assert_true (feed (f, buf->data + 2 * CHUNK_4096, buf->len - 2 * CHUNK_4096));
  g_assert_true (server_message (f, 1, "ctag", 2, "two"));
  g_byte_array_set_size (buf, 0);
  encode_deliver (buf, 1, "ctag", 3, FALSE, "", "q");
  encode_header (buf, 1, 10);
  g_assert_true (feed (f, buf->data, buf->len));
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));

  /* Idempotent while closing. */
  close_again = consumer_close_start (f, r);
  assert_pending (close_again);
  assert_no_output (f);

  /* The rest of message 3 after our Close-Ok? No: Close-Ok is the last
   * thing the server sends on the channel. */
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (close_c);
  assert_ok (close_again);
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  close_after = consumer_close_start (f, r);
  assert_ok (close_after);
  assert_no_output (f);
}

static void
test_consume_close_before_consume_ok (Fixture       *f,
                                      gconstpointer  data)
{
  Completion *close_c;
  Rec *r;

  connect_default (f);
  r = consume (f, "q", 1);
  g_ptr_array_unref (take_sent (f));
  server_consumer_ready (f, 1);

  close_c = consumer_close_start (f, r);
  assert_failed (r->start, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED);
  {
    g_autoptr(GPtrArray) sent = take_sent (f);

    g_assert_cmpuint (sent->len, ==, 1);
    sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE);
  }
  /* Consume-Ok and a delivery crossed our Close: ignored. */
  g_assert_true (server_consume_ok (f, 1, "ctag"));
  g_assert_true (server_message (f, 1, "ctag", 1, "one"));
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (close_c);
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_cmpuint (r->deliveries->len, ==, 0);
}

static const gboolean finish_by_server = TRUE;
static const gboolean finish_by_us = FALSE;

static void
test_consume_connection_finish (Fixture       *f,
                                gconstpointer  data)
{
  gboolean by_server = *(const gboolean *) data;
  Rec *active, *starting, *waiting;

  handshake (f, 2, 131072, 0);
  active = consume_started (f, "a", 1, "ctag-a");
  starting = consume (f, "b", 1);
  waiting = consume (f, "c", 1);
  g_ptr_array_unref (take_sent (f));
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);

  if (by_server)
    g_assert_false (server_close (f, 320, "CONNECTION_FORCED - broker forced connection closure"));
  else
    close_start (f);

  g_assert_cmpuint (active->n_closed, ==, 1);
  g_assert_error (active->closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  /* A start that fails reports there, not in closed. */
  assert_failed (starting->start, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (starting->n_closed, ==, 0);
  assert_failed (waiting->start, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (waiting->n_closed, ==, 0);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);

  /* Started afterwards: fails at once. */
  {
    Rec *late = consume (f, "d", 1);

    assert_failed (late->start, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
    g_assert_cmpuint (late->n_closed, ==, 0);
  }
}

static void
test_consume_unref (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  CarehareMethod cancel = { .id = CAREHARE_METHOD_BASIC_CANCEL };
  Rec *r, *early;

  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");
  early = consume (f, "e", 1);
  g_ptr_array_unref (take_sent (f));

  /* Given back while a message is half received, and one before it
   * started. */
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, 100);
  encode_body (buf, 1, 50);
  g_assert_true (feed (f, buf->data, buf->len));
  g_clear_pointer (&r->consumer, carehare_protocol_consumer_unref);
  g_clear_pointer (&early->consumer, carehare_protocol_consumer_unref);

  /* No callback afterwards (delivery_cb and closed_cb would fail on the
   * NULL consumer), but the start op still completes. */
  g_byte_array_set_size (buf, 0);
  encode_body (buf, 1, 50);
  g_assert_true (feed (f, buf->data, buf->len));
  g_assert_true (server_message (f, 1, "ctag", 2, "two"));
  server_consumer_ready (f, 2);
  g_assert_true (server_consume_ok (f, 2, "ctag-e"));
  assert_ok (early->start);
  g_assert_true (server_message (f, 2, "ctag-e", 1, "one"));

  cancel.basic_cancel.consumer_tag = (char *) "ctag";
  cancel.basic_cancel.nowait = TRUE;
  g_assert_true (server_method (f, 1, &cancel));
  g_assert_true (server_channel_close_ok (f, 1));
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  g_assert_cmpuint (early->deliveries->len, ==, 0);
  /* early's channel stays open until the connection ends: teardown frees
   * the protocol, which must free early without a callback. */
}

static void
test_consume_channel_max (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Completion *declare;
  Rec *r;

  handshake (f, 1, 131072, 0);
  declare = rpc_declare (f, "d");
  g_ptr_array_unref (take_sent (f));

  r = consume (f, "q", 4);
  assert_no_output (f);
  assert_start_pending (r);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 1);

  /* The rpc's channel goes back to the pool: the consumer takes it, no
   * Open needed. */
  g_assert_true (server_declare_ok (f, 1, "d"));
  assert_ok (declare);
  g_assert_cmpuint (carehare_protocol_get_n_waiting (f->p), ==, 0);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_QOS);
  sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_CONSUME);
  {
    CarehareMethod qos_ok = { .id = CAREHARE_METHOD_BASIC_QOS_OK };

    g_assert_true (server_method (f, 1, &qos_ok));
  }
  g_assert_true (server_consume_ok (f, 1, "ctag"));
  assert_ok (r->start);
  g_assert_true (server_message (f, 1, "ctag", 1, "one"));
  g_assert_cmpuint (r->deliveries->len, ==, 1);
}

static void
test_consume_channel_max_free (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Rec *first, *second;
  Completion *close_c;

  handshake (f, 1, 131072, 0);
  first = consume_started (f, "a", 1, "ctag-a");

  /* The first one's id is free after its Close-Ok: the second, started
   * while it closes, waits for it and opens it. */
  close_c = consumer_close_start (f, first);
  g_ptr_array_unref (take_sent (f));
  second = consume (f, "b", 1);
  assert_no_output (f);
  assert_start_pending (second);
  g_assert_true (server_channel_close_ok (f, 1));
  assert_ok (close_c);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_QOS);
  g_assert_cmpstr (sent_method (sent, 2, 1, CAREHARE_METHOD_BASIC_CONSUME)->basic_consume.queue,
                   ==, "b");
  server_consumer_ready (f, 1);
  g_assert_true (server_consume_ok (f, 1, "ctag-b"));
  assert_ok (second->start);
  g_assert_cmpuint (first->n_closed, ==, 0);
}

/* ---- prefetch ------------------------------------------------------------- */

static void encode_raw_header (GByteArray *buf, guint16 channel, guint64 body_size,
                               guint16 flags, const guint8 *props, gsize props_len);

/* A consumer with @prefetch_count, started on channel 1 with tag "ctag",
 * while an rpc and a publish are pending. */
static Rec *
consume_started_prefetch (Fixture  *f,
                          guint16   prefetch_count)
{
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r = consume (f, "q", prefetch_count);
  const CarehareMethod *m;

  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 3);
  m = sent_method (sent, 1, 1, CAREHARE_METHOD_BASIC_QOS);
  g_assert_cmpuint (m->basic_qos.prefetch_count, ==, prefetch_count);
  server_consumer_ready (f, 1);
  g_assert_true (server_consume_ok (f, 1, "ctag"));
  assert_ok (r->start);
  return r;
}

/* A broker that ignores basic.qos could push any number of unacknowledged
 * deliveries into the consumer's memory. One more than the prefetch count
 * is a server fault: Connection.Close 505 UNEXPECTED_FRAME naming
 * basic.deliver, and everything pending fails naming the prefetch count.
 * A second ack of one tag, or an ack of a tag never delivered, makes no
 * room: only what reaches the broker does. */
static void
test_consume_prefetch_exceeded (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *rpc, *pub;
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started_prefetch (f, 3);
  rpc = rpc_declare (f, "other");
  pub = publish (f, "ex", "rk", FALSE);
  g_ptr_array_unref (take_sent (f));

  for (guint64 tag = 1; tag <= 3; tag++)
    g_assert_true (server_message (f, 1, "ctag", tag, "m"));
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  carehare_protocol_consumer_nack (f->p, r->consumer, 9, FALSE, TRUE);
  g_ptr_array_unref (take_sent (f));
  g_assert_true (server_message (f, 1, "ctag", 4, "m"));
  g_assert_cmpuint (r->deliveries->len, ==, 4);

  /* 2, 3 and 4 are unacknowledged: 5 is one too many. */
  g_assert_false (server_message (f, 1, "ctag", 5, "m"));
  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (r->deliveries->len, ==, 4);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, "prefetch count of 3");
  assert_message_contains (f->finish_error, "delivery tag 5");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  g_assert_cmpuint (m->connection_close.reply_code, ==, 505);
  g_assert_cmpuint (((guint32) m->connection_close.class_id << 16) | m->connection_close.method_id,
                    ==, CAREHARE_METHOD_BASIC_DELIVER);
  g_assert_nonnull (strstr (m->connection_close.reply_text, "prefetch count of 3"));

  assert_failed (rpc, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (rpc->error, "prefetch count of 3");
  assert_failed (pub, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (pub->error, "prefetch count of 3");
  g_assert_cmpuint (r->n_closed, ==, 1);
  g_assert_error (r->closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (r->closed_error, "prefetch count of 3");
}

/* A broker that respects the prefetch count never trips the bound: each
 * ack, nack (requeued or not), multiple settle or reject makes room as
 * soon as it is sent, before the broker reads it. */
static void
test_consume_prefetch_respected (Fixture       *f,
                                 gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started_prefetch (f, 3);

  for (guint64 tag = 1; tag <= 3; tag++)
    g_assert_true (server_message (f, 1, "ctag", tag, "m"));
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  g_assert_true (server_message (f, 1, "ctag", 4, "m"));
  /* Requeued: the broker sends it again, under a new tag. */
  carehare_protocol_consumer_nack (f->p, r->consumer, 2, FALSE, TRUE);
  g_assert_true (server_message (f, 1, "ctag", 5, "m"));
  /* 3 and 4 at once. */
  carehare_protocol_consumer_ack (f->p, r->consumer, 4, TRUE);
  g_assert_true (server_message (f, 1, "ctag", 6, "m"));
  g_assert_true (server_message (f, 1, "ctag", 7, "m"));
  /* Everything, requeued. */
  carehare_protocol_consumer_nack (f->p, r->consumer, 0, TRUE, TRUE);
  for (guint64 tag = 8; tag <= 10; tag++)
    g_assert_true (server_message (f, 1, "ctag", tag, "m"));
  /* Not requeued. */
  carehare_protocol_consumer_nack (f->p, r->consumer, 8, FALSE, FALSE);
  /* A message whose header cannot be represented takes a place until
   * the client rejects it, which it does at once. */
  encode_deliver (buf, 1, "ctag", 11, FALSE, "", "q");
  encode_raw_header (buf, 1, 0, 0x0004, NULL, 0);
  g_assert_true (feed (f, buf->data, buf->len));
  g_assert_cmpuint (r->rejected_tags->len, ==, 1);
  g_assert_true (server_message (f, 1, "ctag", 12, "m"));

  g_assert_false (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (r->deliveries->len, ==, 11);
  g_assert_cmpuint (r->n_closed, ==, 0);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 6);
  sent_method (sent, 5, 1, CAREHARE_METHOD_BASIC_REJECT);
}

/* prefetch_count 0 asks for no limit: the broker may send any number. */
static void
test_consume_prefetch_unbounded (Fixture       *f,
                                 gconstpointer  data)
{
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started_prefetch (f, 0);
  for (guint64 tag = 1; tag <= 1000; tag++)
    g_assert_true (server_message (f, 1, "ctag", tag, "m"));
  g_assert_cmpuint (r->deliveries->len, ==, 1000);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* Delivery tags rise on a channel; a tag that does not is a server fault
 * (otherwise a broker repeating one tag would grow the consumer without
 * the prefetch count ever seeing it). */
static void
test_consume_delivery_tag_not_rising (Fixture       *f,
                                      gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started_prefetch (f, 3);
  g_assert_true (server_message (f, 1, "ctag", 1, "m"));
  g_assert_false (server_message (f, 1, "ctag", 1, "m"));
  g_assert_cmpuint (r->deliveries->len, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, "delivery tag 1");
  sent = take_sent (f);
  g_assert_cmpuint (sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE)->connection_close.reply_code,
                    ==, 505);
}

/* ======================================================================== */
/* content errors                                                            */
/* ======================================================================== */

/* Each case runs on a connection (frame_max 4096) with: a consumer on
 * channel 1 (tag "ctag"), an rpc pending on channel 2, a consumer on
 * channel 3 waiting for Consume-Ok, a publisher on channel 4 with a
 * publish waiting for its confirm. */
typedef struct {
  guint16 reply_code;       /* of the Connection.Close the client sends */
  guint32 method_id;        /* class/method in that Close, 0 if none */
  const char *message;      /* in the error */
  void (*build) (GByteArray *buf);
  gboolean split;           /* fed one byte at a time */
} ContentErrorCase;

static void
build_body_too_long (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, 3);
  encode_body (buf, 1, 4);
}

static void
build_body_too_long_second_frame (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, 5);
  encode_body (buf, 1, 3);
  encode_body (buf, 1, 3);
}

static void
build_body_without_header (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_body (buf, 1, 3);
}

static void
build_body_without_deliver (GByteArray *buf)
{
  encode_body (buf, 1, 3);
}

static void
build_header_without_deliver (GByteArray *buf)
{
  encode_header (buf, 1, 3);
}

static void
build_second_header (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, 5);
  encode_header (buf, 1, 5);
}

static void
build_second_header_after_body (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, 5);
  encode_body (buf, 1, 2);
  encode_header (buf, 1, 3);
}

static void
build_unknown_consumer_tag (GByteArray *buf)
{
  encode_deliver (buf, 1, "someone-else", 1, FALSE, "", "q");
}

static void
build_deliver_before_consume_ok (GByteArray *buf)
{
  encode_deliver (buf, 3, "ctag-3", 1, FALSE, "", "q");
}

static void
build_huge_body (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, G_GUINT64_CONSTANT (0x7FFFFFFFFFFFFFF0));
}

static void
build_max_body (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, G_MAXUINT64);
}

static void
build_body_over_limit (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, CAREHARE_PROTOCOL_MAX_BODY_SIZE + 1);
}

static void
build_header_on_rpc_channel (GByteArray *buf)
{
  encode_header (buf, 2, 3);
}

static void
build_body_on_rpc_channel (GByteArray *buf)
{
  encode_body (buf, 2, 3);
}

static void
build_header_on_publisher_channel (GByteArray *buf)
{
  encode_header (buf, 4, 3);
}

static void
build_return_body_too_long (GByteArray *buf)
{
  encode_return (buf, 4, 312, "NO_ROUTE", "ex", "rk");
  encode_header (buf, 4, 2);
  encode_body (buf, 4, 3);
}

static void
build_second_deliver (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, 5);
  encode_body (buf, 1, 2);
  encode_deliver (buf, 1, "ctag", 2, FALSE, "", "q");
}

static void
build_second_deliver_no_header (GByteArray *buf)
{
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_deliver (buf, 1, "ctag", 2, FALSE, "", "q");
}

static const ContentErrorCase ce_body_too_long = {
  505, 0, "longer than the 3 bytes its content header declared", build_body_too_long, FALSE,
};
static const ContentErrorCase ce_body_too_long_split = {
  505, 0, "longer than the 3 bytes its content header declared", build_body_too_long, TRUE,
};
static const ContentErrorCase ce_body_too_long_second = {
  505, 0, "longer than the 5 bytes", build_body_too_long_second_frame, FALSE,
};
static const ContentErrorCase ce_body_too_long_second_split = {
  505, 0, "longer than the 5 bytes", build_body_too_long_second_frame, TRUE,
};
static const ContentErrorCase ce_body_without_header = {
  505, 0, "body frame on channel 1 before its content header", build_body_without_header, FALSE,
};
static const ContentErrorCase ce_body_without_deliver = {
  505, 0, "content frame (type 3) on channel 1", build_body_without_deliver, FALSE,
};
static const ContentErrorCase ce_header_without_deliver = {
  505, 0, "content frame (type 2) on channel 1", build_header_without_deliver, FALSE,
};
static const ContentErrorCase ce_second_header = {
  505, 0, "second content header on channel 1", build_second_header, FALSE,
};
static const ContentErrorCase ce_second_header_after_body = {
  505, 0, "second content header on channel 1", build_second_header_after_body, FALSE,
};
static const ContentErrorCase ce_unknown_tag = {
  505, CAREHARE_METHOD_BASIC_DELIVER, "consumer tag 'someone-else'", build_unknown_consumer_tag,
  FALSE,
};
static const ContentErrorCase ce_before_consume_ok = {
  505, CAREHARE_METHOD_BASIC_DELIVER, "basic.deliver on channel 3",
  build_deliver_before_consume_ok, FALSE,
};
static const ContentErrorCase ce_huge_body = {
  501, 0, "exceeds the limit", build_huge_body, FALSE,
};
static const ContentErrorCase ce_huge_body_split = {
  501, 0, "exceeds the limit", build_huge_body, TRUE,
};
static const ContentErrorCase ce_max_body = {
  501, 0, "exceeds the limit", build_max_body, FALSE,
};
static const ContentErrorCase ce_body_over_limit = {
  501, 0, "exceeds the limit", build_body_over_limit, FALSE,
};
static const ContentErrorCase ce_header_on_rpc = {
  505, 0, "content frame (type 2) on channel 2", build_header_on_rpc_channel, FALSE,
};
static const ContentErrorCase ce_body_on_rpc = {
  505, 0, "content frame (type 3) on channel 2", build_body_on_rpc_channel, FALSE,
};
static const ContentErrorCase ce_header_on_publisher = {
  505, 0, "content frame (type 2) on channel 4", build_header_on_publisher_channel, FALSE,
};
static const ContentErrorCase ce_return_too_long = {
  505, 0, "longer than the 2 bytes", build_return_body_too_long, FALSE,
};
static const ContentErrorCase ce_second_deliver = {
  505, CAREHARE_METHOD_BASIC_DELIVER, "before the previous message's content was complete",
  build_second_deliver, FALSE,
};
static const ContentErrorCase ce_second_deliver_no_header = {
  505, CAREHARE_METHOD_BASIC_DELIVER, "before the previous message's content was complete",
  build_second_deliver_no_header, FALSE,
};
static void
test_content_error (Fixture       *f,
                    gconstpointer  data)
{
  const ContentErrorCase *cc = data;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  const CarehareMethod *m;
  Completion *rpc, *pub;
  Rec *active, *starting;

  handshake (f, 2047, 4096, 0);
  active = consume_started (f, "qa", 1, "ctag");
  rpc = rpc_declare (f, "b");
  starting = consume (f, "qc", 1);
  pub = publish (f, "ex", "rk", TRUE);
  g_ptr_array_unref (take_sent (f));
  server_consumer_ready (f, 3);
  server_publisher_ready (f, 4);
  assert_pending (rpc);
  assert_pending (pub);
  assert_start_pending (starting);

  cc->build (buf);
  f->split = cc->split;
  /* A lying header's size (ce_max_body: 2^64 - 1) is never allocated:
   * g_malloc() would abort. */
  g_assert_false (feed (f, buf->data, buf->len));

  g_assert_true (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (f->n_finished, ==, 1);
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, cc->message);

  /* Everything pending ends. */
  assert_failed (rpc, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (pub, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (starting->start, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  g_assert_cmpuint (starting->n_closed, ==, 0);
  g_assert_cmpuint (active->n_closed, ==, 1);
  g_assert_error (active->closed_error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (active->closed_error, cc->message);
  g_assert_cmpuint (active->deliveries->len, ==, 0);

  /* The client says why, with the right reply code. */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE);
  g_assert_cmpuint (m->connection_close.reply_code, ==, cc->reply_code);
  g_assert_cmpuint (m->connection_close.class_id, ==, CAREHARE_METHOD_CLASS_ID (cc->method_id));
  g_assert_cmpuint (m->connection_close.method_id, ==, CAREHARE_METHOD_METHOD_ID (cc->method_id));
  g_assert_true (g_str_has_prefix (m->connection_close.reply_text,
                                   carehare_reply_code_name (cc->reply_code)));

  /* Nothing more. */
  g_assert_false (server_message (f, 1, "ctag", 5, "late"));
  carehare_protocol_consumer_ack (f->p, active->consumer, 1, FALSE);
  assert_no_output (f);
  g_assert_cmpuint (active->deliveries->len, ==, 0);
}

/* ======================================================================== */
/* another program's message                                                */
/* ======================================================================== */

/* What RabbitMQ passes on from another client, unchecked: a content
 * header built byte by byte (property flags, then the properties' bytes
 * as given), for a body of @body_size. */
static void
encode_raw_header (GByteArray   *buf,
                   guint16       channel,
                   guint64       body_size,
                   guint16       flags,
                   const guint8 *props,
                   gsize         props_len)
{
  guint8 fixed[14] = { 0, 60, 0, 0 };
  guint32 size = 14 + props_len;
  guint8 frame[7] = { CAREHARE_FRAME_HEADER, channel >> 8, channel & 0xff,
                      size >> 24, (size >> 16) & 0xff, (size >> 8) & 0xff, size & 0xff };

  for (guint i = 0; i < 8; i++)
    fixed[4 + i] = (guint8) (body_size >> (56 - 8 * i));
  fixed[12] = flags >> 8;
  fixed[13] = flags & 0xff;
  g_byte_array_append (buf, frame, sizeof frame);
  g_byte_array_append (buf, fixed, sizeof fixed);
  g_byte_array_append (buf, props, props_len);
  g_byte_array_append (buf, (const guint8 *) "\xce", 1);
}

/* A headers table with @depth tables nested in each other. */
static GByteArray *
deep_table (guint depth)
{
  GByteArray *table = g_byte_array_new ();
  static const guint8 entry[] = { 1, 'k', 'F' };

  g_byte_array_append (table, (const guint8 *) "\0\0\0\0", 4);
  for (guint i = 1; i < depth; i++)
    {
      GByteArray *outer = g_byte_array_new ();
      guint32 n = sizeof entry + table->len;
      guint8 len[4] = { n >> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff };

      g_byte_array_append (outer, len, 4);
      g_byte_array_append (outer, entry, sizeof entry);
      g_byte_array_append (outer, table->data, table->len);
      g_byte_array_unref (table);
      table = outer;
    }
  return table;
}

typedef enum {
  FOREIGN_CORRELATION_ID_FF_FE,
  FOREIGN_CORRELATION_ID_NUL,
  FOREIGN_CORRELATION_ID_LATIN1,
  FOREIGN_HEADER_KEY_NOT_UTF8,
  FOREIGN_RESERVED_FLAG_BIT,
  FOREIGN_DEEP_HEADERS,
} ForeignKind;

typedef struct {
  ForeignKind kind;
  gboolean split;             /* fed one byte at a time */
} ForeignCase;

static const ForeignCase foreign_ff_fe = { FOREIGN_CORRELATION_ID_FF_FE, FALSE };
static const ForeignCase foreign_nul = { FOREIGN_CORRELATION_ID_NUL, FALSE };
static const ForeignCase foreign_latin1 = { FOREIGN_CORRELATION_ID_LATIN1, FALSE };
static const ForeignCase foreign_key = { FOREIGN_HEADER_KEY_NOT_UTF8, FALSE };
static const ForeignCase foreign_reserved = { FOREIGN_RESERVED_FLAG_BIT, FALSE };
static const ForeignCase foreign_reserved_split = { FOREIGN_RESERVED_FLAG_BIT, TRUE };
static const ForeignCase foreign_deep = { FOREIGN_DEEP_HEADERS, FALSE };

/* A message from another client, with bytes we could not decode before,
 * followed by a good one: odd strings are decoded leniently (bytes that
 * are not UTF-8, and NUL, become U+FFFD); a header that cannot be
 * represented at all fails that delivery alone: it is rejected with
 * requeue=false, the owner hears of it, and the next message arrives.
 * The connection stays open either way. */
static void
test_consume_foreign_message (Fixture       *f,
                              gconstpointer  data)
{
  const ForeignCase *fc = data;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GByteArray) props = g_byte_array_new ();
  g_autoptr(GBytes) body = make_body (2 * CHUNK_4096 + 5, 4);
  g_autoptr(GPtrArray) sent = NULL;
  const char *expected_id = NULL;
  const char *problem = NULL;
  guint16 flags = 0;
  const CarehareMethod *m;
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");

  switch (fc->kind)
    {
    case FOREIGN_CORRELATION_ID_FF_FE:
      flags = CAREHARE_PROPERTY_CORRELATION_ID;
      g_byte_array_append (props, (const guint8 *) "\x02\xff\xfe", 3);
      expected_id = "\xef\xbf\xbd\xef\xbf\xbd";
      break;
    case FOREIGN_CORRELATION_ID_NUL:
      flags = CAREHARE_PROPERTY_CORRELATION_ID;
      g_byte_array_append (props, (const guint8 *) "\x03" "a\0b", 4);
      expected_id = "a\xef\xbf\xbd" "b";
      break;
    case FOREIGN_CORRELATION_ID_LATIN1:
      flags = CAREHARE_PROPERTY_CORRELATION_ID;
      g_byte_array_append (props, (const guint8 *) "\x04" "caf\xe9", 5);
      expected_id = "caf\xef\xbf\xbd";
      break;
    case FOREIGN_HEADER_KEY_NOT_UTF8:
      flags = CAREHARE_PROPERTY_HEADERS;
      /* { "\xc3\x28": "v" } */
      g_byte_array_append (props, (const guint8 *) "\0\0\0\x09" "\x02\xc3\x28" "S\0\0\0\x01v", 13);
      break;
    case FOREIGN_RESERVED_FLAG_BIT:
      flags = CAREHARE_PROPERTY_CONTENT_TYPE | 0x0002;
      g_byte_array_append (props, (const guint8 *) "\x04text", 5);
      problem = "0x0002";
      break;
    case FOREIGN_DEEP_HEADERS:
      {
        g_autoptr(GByteArray) table = deep_table (100);

        flags = CAREHARE_PROPERTY_HEADERS;
        g_byte_array_append (props, table->data, table->len);
        problem = "nested";
      }
      break;
    default:
      g_assert_not_reached ();
    }

  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_raw_header (buf, 1, g_bytes_get_size (body), flags, props->data, props->len);
  for (gsize offset = 0; offset < g_bytes_get_size (body); offset += CHUNK_4096)
    carehare_wire_append_body_frame (buf, 1, (const guint8 *) g_bytes_get_data (body, NULL) + offset,
                                     MIN (CHUNK_4096, g_bytes_get_size (body) - offset));
  {
    g_autoptr(GBytes) good = g_bytes_new_static ("good", 4);

    encode_message (buf, 1, "ctag", 2, good, CHUNK_4096);
  }
  f->split = fc->split;
  g_assert_true (feed (f, buf->data, buf->len));
  f->split = FALSE;
  g_assert_false (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (r->n_closed, ==, 0);

  if (problem == NULL)
    {
      CarehareProtocolDelivery *d = delivery (r, 0);

      g_assert_cmpuint (r->deliveries->len, ==, 2);
      g_assert_cmpuint (r->rejected_tags->len, ==, 0);
      g_assert_cmpuint (d->delivery_tag, ==, 1);
      g_assert_cmpmem (g_bytes_get_data (d->body, NULL), g_bytes_get_size (d->body),
                       g_bytes_get_data (body, NULL), g_bytes_get_size (body));
      if (expected_id != NULL)
        g_assert_cmpstr (d->properties.correlation_id, ==, expected_id);
      else
        {
          g_autoptr(GVariant) value = NULL;
          const char *key = NULL;

          g_assert_cmpuint (g_variant_n_children (d->properties.headers), ==, 1);
          g_variant_get_child (d->properties.headers, 0, "{&sv}", &key, &value);
          g_assert_cmpstr (key, ==, "\xef\xbf\xbd(");
          g_assert_cmpstr (g_variant_get_string (value, NULL), ==, "v");
        }
      assert_no_output (f);
      carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
      sent = take_sent (f);
      g_assert_cmpuint (sent->len, ==, 1);
      g_assert_cmpuint (sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK)->basic_ack.delivery_tag,
                        ==, 1);
      return;
    }

  /* Rejected alone, not requeued (a dead-letter exchange can catch it). */
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_REJECT);
  g_assert_cmpuint (m->basic_reject.delivery_tag, ==, 1);
  g_assert_false (m->basic_reject.requeue);
  g_clear_pointer (&sent, g_ptr_array_unref);

  /* The owner hears of it, in order: the tag and the problem. */
  g_assert_cmpuint (r->rejected_tags->len, ==, 1);
  g_assert_cmpuint (g_array_index (r->rejected_tags, guint64, 0), ==, 1);
  g_assert_error (r->rejected_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (r->rejected_error, "delivery tag 1");
  assert_message_contains (r->rejected_error, problem);

  /* The next message is delivered; the rejected tag is settled already. */
  g_assert_cmpuint (r->deliveries->len, ==, 1);
  g_assert_cmpuint (delivery (r, 0)->delivery_tag, ==, 2);
  carehare_protocol_consumer_ack (f->p, r->consumer, 1, FALSE);
  carehare_protocol_consumer_ack (f->p, r->consumer, 2, FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpuint (sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK)->basic_ack.delivery_tag,
                    ==, 2);
}

/* A message that cannot be represented, with no body at all. */
static void
test_consume_foreign_message_empty (Fixture       *f,
                                    gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  connect_default (f);
  r = consume_started (f, "q", 1, "ctag");
  encode_deliver (buf, 1, "ctag", 7, FALSE, "", "q");
  encode_raw_header (buf, 1, 0, 0x0004, NULL, 0);
  g_assert_true (feed (f, buf->data, buf->len));
  g_assert_true (server_message (f, 1, "ctag", 8, "after"));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpuint (sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_REJECT)->basic_reject.delivery_tag,
                    ==, 7);
  g_assert_cmpuint (r->rejected_tags->len, ==, 1);
  g_assert_cmpuint (r->deliveries->len, ==, 1);
  g_assert_cmpuint (delivery (r, 0)->delivery_tag, ==, 8);
}

typedef struct {
  gboolean split;             /* fed one byte at a time */
} LimitCase;

static const LimitCase limit_whole = { FALSE };
static const LimitCase limit_split = { TRUE };

/* A delivery larger than the configured max_body_size is another
 * program's message, not a server fault: it is rejected (requeue=false,
 * so a dead-letter exchange can catch it) as soon as its content header
 * arrives, its body frames are discarded as they come, the owner hears
 * MESSAGE_TOO_LARGE naming the size and the limit in its place, and the
 * next message is delivered. Before, the connection was closed. */
static void
test_content_configured_limit (Fixture       *f,
                               gconstpointer  data)
{
  const LimitCase *lc = data;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GBytes) big = make_body (2500, 5);
  g_autoptr(GBytes) after = make_body (1000, 6);
  const CarehareMethod *m;
  Rec *r;

  f->config.max_body_size = 1000;
  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");

  /* At the limit: fine. */
  {
    g_autoptr(GBytes) body = make_body (1000, 1);

    encode_message (buf, 1, "ctag", 1, body, CHUNK_4096);
    g_assert_true (feed (f, buf->data, buf->len));
    g_assert_cmpuint (r->deliveries->len, ==, 1);
  }

  /* Over it: rejected once its header is in, before the body is. */
  g_byte_array_set_size (buf, 0);
  encode_deliver (buf, 1, "ctag", 2, FALSE, "", "q");
  encode_header (buf, 1, g_bytes_get_size (big));
  f->split = lc->split;
  g_assert_true (feed (f, buf->data, buf->len));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_REJECT);
  g_assert_cmpuint (m->basic_reject.delivery_tag, ==, 2);
  g_assert_false (m->basic_reject.requeue);
  g_clear_pointer (&sent, g_ptr_array_unref);
  g_assert_cmpuint (r->rejected_tags->len, ==, 1);
  g_assert_cmpuint (g_array_index (r->rejected_tags, guint64, 0), ==, 2);
  g_assert_error (r->rejected_error, CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE);
  assert_message_contains (r->rejected_error, "delivery tag 2");
  assert_message_contains (r->rejected_error, "2500 bytes");
  assert_message_contains (r->rejected_error, "1000 bytes");

  /* Its body, in small frames, then the next message. */
  g_byte_array_set_size (buf, 0);
  for (gsize offset = 0; offset < g_bytes_get_size (big); offset += 700)
    carehare_wire_append_body_frame (buf, 1, (const guint8 *) g_bytes_get_data (big, NULL) + offset,
                                     MIN (700, g_bytes_get_size (big) - offset));
  encode_message (buf, 1, "ctag", 3, after, CHUNK_4096);
  g_assert_true (feed (f, buf->data, buf->len));
  f->split = FALSE;
  g_assert_false (carehare_protocol_is_finished (f->p));
  g_assert_cmpuint (r->n_closed, ==, 0);
  g_assert_cmpuint (r->rejected_tags->len, ==, 1);
  g_assert_cmpuint (r->deliveries->len, ==, 2);
  g_assert_cmpuint (delivery (r, 1)->delivery_tag, ==, 3);
  g_assert_true (g_bytes_equal (delivery (r, 1)->body, after));
  assert_no_output (f);

  /* The rejected tag is settled already; the others are not. */
  carehare_protocol_consumer_ack (f->p, r->consumer, 0, TRUE);
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  m = sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_ACK);
  g_assert_cmpuint (m->basic_ack.delivery_tag, ==, 3);
}

/* Without a configured limit it is 128 MiB: a larger delivery is rejected
 * from its header, nothing of it buffered; up to it, a body is received as
 * it comes, and the connection can end before it is complete. */
static void
test_content_default_limit (Fixture       *f,
                            gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  g_assert_cmpuint (CAREHARE_PROTOCOL_DEFAULT_MAX_BODY_SIZE, ==, 128 * 1024 * 1024);
  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, CAREHARE_PROTOCOL_DEFAULT_MAX_BODY_SIZE + 1);
  encode_body (buf, 1, CHUNK_4096);
  g_assert_true (feed (f, buf->data, buf->len));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 1, CAREHARE_METHOD_BASIC_REJECT);
  g_assert_error (r->rejected_error, CAREHARE_ERROR, CAREHARE_ERROR_MESSAGE_TOO_LARGE);
  assert_message_contains (r->rejected_error, "134217729 bytes");
  assert_message_contains (r->rejected_error, "134217728 bytes");
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - bye"));
  g_assert_cmpuint (r->n_closed, ==, 1);
  g_assert_cmpuint (r->deliveries->len, ==, 0);
}

/* A large body declared within the limit is received as it comes, and
 * the connection can end before it is complete without trouble. */
static void
test_content_large_partial (Fixture       *f,
                            gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  Rec *r;

  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, CAREHARE_PROTOCOL_DEFAULT_MAX_BODY_SIZE);
  encode_body (buf, 1, CHUNK_4096);
  g_assert_true (feed (f, buf->data, buf->len));
  assert_no_output (f);
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  g_assert_cmpuint (r->rejected_tags->len, ==, 0);
  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - bye"));
  g_assert_cmpuint (r->n_closed, ==, 1);
  g_assert_cmpuint (r->deliveries->len, ==, 0);
}

/* A configured limit is never above RabbitMQ's own hard cap of 512 MiB:
 * a size no broker can send stays a connection-level error. */
static void
test_content_limit_above_cap (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Rec *r;

  f->config.max_body_size = G_GUINT64_CONSTANT (4) * 1024 * 1024 * 1024;
  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_header (buf, 1, CAREHARE_PROTOCOL_MAX_BODY_SIZE + 1);
  g_assert_false (feed (f, buf->data, buf->len));
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, "exceeds the limit");
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  g_assert_cmpuint (sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_CLOSE)->connection_close.reply_code,
                    ==, 501);
  g_assert_cmpuint (r->rejected_tags->len, ==, 0);
}

/* max_body_size bounds what other programs send; a basic.return carries
 * back a message this program published and still holds (a mandatory
 * publish keeps its body until confirmed), so the limit does not apply
 * to it: the publish fails with UNROUTABLE as usual. A return that
 * matches no publish in flight (not its size, routing key or exchange)
 * is not buffered at all: its body is skipped as it arrives. */
static void
test_content_return_over_limit (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GBytes) body = make_body (2000, 7);
  g_autoptr(GBytes) stranger = make_body (3000, 8);
  Completion *returned;

  f->config.max_body_size = 1000;
  handshake (f, 2047, 4096, 0);
  returned = publish_full (f, "ex", "nowhere", body, NULL, TRUE);
  g_ptr_array_unref (take_sent (f));
  server_publisher_ready (f, 1);

  g_assert_true (server_return_full (f, 1, "ex", "elsewhere", stranger, NULL));
  g_assert_true (server_return_full (f, 1, "ex", "nowhere", body, NULL));
  assert_pending (returned);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_failed (returned, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_message_contains (returned->error, "312 NO_ROUTE");
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* ======================================================================== */

/* ======================================================================== */
/* bodies as they arrive                                                     */
/* ======================================================================== */

/* An empty body, one byte, exactly one and two frames, several frames and
 * a part. */
static const gsize arrival_sizes[] = { 0, 1, CHUNK_4096, 2 * CHUNK_4096, 3 * CHUNK_4096 + 100 };

static GPtrArray *
arrival_bodies (void)
{
  GPtrArray *bodies = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);

  for (guint i = 0; i < G_N_ELEMENTS (arrival_sizes); i++)
    g_ptr_array_add (bodies, make_body (arrival_sizes[i], (guint8) (i + 1)));
  return bodies;
}

/* One whole message per body, for "ctag" on channel 1, delivery tags from
 * @first_tag on. */
static void
encode_messages (GByteArray *buf,
                 guint64     first_tag,
                 GPtrArray  *bodies)
{
  for (guint i = 0; i < bodies->len; i++)
    encode_message (buf, 1, "ctag", first_tag + i, g_ptr_array_index (bodies, i), CHUNK_4096);
}

/* @r received exactly those messages, intact; forgets them. */
static void
assert_messages (Rec       *r,
                 guint64    first_tag,
                 GPtrArray *bodies)
{
  g_assert_cmpuint (r->deliveries->len, ==, bodies->len);
  for (guint i = 0; i < bodies->len; i++)
    {
      CarehareProtocolDelivery *d = delivery (r, i);

      g_assert_cmpuint (d->delivery_tag, ==, first_tag + i);
      g_assert_true (g_bytes_equal (d->body, g_ptr_array_index (bodies, i)));
    }
  g_ptr_array_set_size (r->deliveries, 0);
  g_assert_false (carehare_protocol_is_finished (r->f->p));
}

/* A consumer on channel 1 ("ctag") that acks as messages arrive, so any
 * number of them can come. */
static Rec *
acking_consumer (Fixture *f,
                 guint32  frame_max)
{
  Rec *r;

  handshake (f, 2047, frame_max, 0);
  r = consume_started (f, "q", 1, "ctag");
  r->ack_in_callback = TRUE;
  return r;
}

/* Feeds @size bytes as the transport does when it reads at most @chunk
 * bytes at a time: with @in_place, straight into the place the protocol
 * offers whenever it offers one, each such place recorded in @places (if
 * not NULL) as two pointers, its start and end. Returns the bytes that
 * went in place. */
static gsize
feed_reads (Fixture      *f,
            const guint8 *data,
            gsize         size,
            gsize         chunk,
            gboolean      in_place,
            GPtrArray    *places)
{
  gsize placed = 0;

  for (gsize offset = 0; offset < size;)
    {
      gsize room = 0, frame_size = 0;
      guint8 *place = in_place ? carehare_protocol_get_receive_buffer (f->p, &room, &frame_size)
                               : NULL;
      gsize n = MIN (chunk, size - offset);

      if (place != NULL)
        {
          g_assert_cmpuint (room, >, 0);
          g_assert_cmpuint (frame_size, >=, room);
          n = MIN (n, room);
          memcpy (place, data + offset, n);
          g_assert_true (carehare_protocol_receive_in_place (f->p, n, f->now));
          placed += n;
          if (places != NULL)
            {
              g_ptr_array_add (places, place);
              g_ptr_array_add (places, place + n);
            }
        }
      else
        {
          g_assert_cmpuint (room, ==, 0);
          g_assert_true (carehare_protocol_receive (f->p, data + offset, n, f->now));
        }
      offset += n;
    }
  return placed;
}

/* Where a test cuts @buf in two reads: every offset up to 16 bytes from
 * where a frame begins (in its header, before the end octet of the frame
 * before it), and every 251st offset in between. */
static gboolean
cut_near_frame_start (const GByteArray *buf,
                      gsize             cut)
{
  gsize offset = 0;

  if (cut % 251 == 0)
    return TRUE;
  while (offset <= buf->len)
    {
      CarehareFrame frame;
      gssize n;

      if ((cut > offset ? cut - offset : offset - cut) <= 16)
        return TRUE;
      if (offset == buf->len)
        break;
      n = carehare_frame_decode (buf->data + offset, buf->len - offset, 0, &frame, NULL);
      g_assert_cmpint (n, >, 0);
      offset += n;
    }
  return FALSE;
}

/* Bodies come whole wherever one read ends and the next begins: in a
 * frame header, a payload, before an end octet; with what follows in the
 * same read decoded too. */
static void
test_content_arrival_cut_everywhere (Fixture       *f,
                                     gconstpointer  data)
{
  g_autoptr(GPtrArray) bodies = arrival_bodies ();
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  Rec *r = acking_consumer (f, 4096);
  guint64 tag = 1;
  gsize len;

  encode_messages (buf, tag, bodies);
  len = buf->len;
  for (gsize cut = 0; cut <= len; cut++)
    {
      g_autoptr(GBytes) acks = NULL;

      if (!cut_near_frame_start (buf, cut))
        continue;
      g_byte_array_set_size (buf, 0);
      encode_messages (buf, tag, bodies);
      g_assert_cmpuint (buf->len, ==, len);
      g_assert_true (carehare_protocol_receive (f->p, buf->data, cut, f->now));
      g_assert_true (carehare_protocol_receive (f->p, buf->data + cut, len - cut, f->now));
      assert_messages (r, tag, bodies);
      tag += bodies->len;
      acks = take_bytes (f);
    }
}

/* Read sizes from one byte to more than a frame, and with the
 * payload of body frames read straight into the body when the protocol
 * offers it (as the transport does): the same messages. */
static void
test_content_arrival_read_sizes (Fixture       *f,
                                 gconstpointer  data)
{
  gboolean in_place = GPOINTER_TO_INT (data);
  static const gsize big[] = { 127, 251, 509, 1021, 2039, 4095, 4096, 4097, 8191, 12345, 65536 };
  g_autoptr(GPtrArray) bodies = arrival_bodies ();
  Rec *r = acking_consumer (f, 4096);
  guint64 tag = 1;
  gsize placed = 0;

  for (gsize i = 0; i < 100 + G_N_ELEMENTS (big); i++)
    {
      gsize chunk = i < 100 ? i + 1 : big[i - 100];
      g_autoptr(GByteArray) buf = g_byte_array_new ();
      g_autoptr(GBytes) acks = NULL;

      encode_messages (buf, tag, bodies);
      placed += feed_reads (f, buf->data, buf->len, chunk, in_place, NULL);
      assert_messages (r, tag, bodies);
      tag += bodies->len;
      acks = take_bytes (f);
    }
  if (in_place)
    g_assert_cmpuint (placed, >, 0);
  else
    g_assert_cmpuint (placed, ==, 0);
}

/* What is read into the place the protocol offers is the delivery's body
 * itself: it is neither copied nor moved afterwards. Only the payload of
 * body frames is read there, and at most up to the end of the frame. */
static void
test_content_arrival_in_place (Fixture       *f,
                               gconstpointer  data)
{
  gsize big_size = GPOINTER_TO_SIZE (data);
  g_autoptr(GBytes) big = make_body (big_size, 7);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) places = g_ptr_array_new ();
  const guint8 *body;
  gsize size, placed;
  Rec *r = acking_consumer (f, 131072);

  encode_message (buf, 1, "ctag", 1, big, 131072 - CAREHARE_FRAME_OVERHEAD);
  placed = feed_reads (f, buf->data, buf->len, 65536, TRUE, places);
  g_assert_true (server_message (f, 1, "ctag", 2, "after"));

  g_assert_cmpuint (r->deliveries->len, ==, 2);
  g_assert_true (g_bytes_equal (delivery (r, 0)->body, big));
  g_assert_cmpmem (g_bytes_get_data (delivery (r, 1)->body, NULL),
                   g_bytes_get_size (delivery (r, 1)->body), "after", 5);
  /* Reads of 64 KiB into 128 KiB frames: about half of the body. */
  g_assert_cmpuint (placed, >, big_size / 4);
  g_assert_cmpuint (placed, <, big_size);
  body = g_bytes_get_data (delivery (r, 0)->body, &size);
  for (guint i = 0; i < places->len; i += 2)
    {
      const guint8 *start = places->pdata[i], *end = places->pdata[i + 1];

      g_assert_true (start >= body && end <= body + size);
    }
}

/* The protocol offers a place only while a body frame's payload is
 * expected: not between frames, not for other frames, not for a body it
 * skips, not once the connection is over. */
static void
test_content_arrival_no_place (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GBytes) body = make_body (3 * CHUNK_4096, 3);
  g_autoptr(GBytes) fits = make_body (2 * CHUNK_4096, 4);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  gsize size = 1, frame_size = 1;
  gsize header_at, body_at;
  Completion *closing;
  Rec *r;

  f->config.max_body_size = 2 * CHUNK_4096;
  handshake (f, 2047, 4096, 0);
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_cmpuint (size, ==, 0);
  r = consume_started (f, "q", 1, "ctag");

  /* Half a method frame, then half a content header, then all of it. */
  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  header_at = buf->len;
  encode_content (buf, 1, CHUNK_4096, NULL, g_bytes_get_data (body, NULL), CHUNK_4096,
                  CHUNK_4096);
  body_at = buf->len - CHUNK_4096 - CAREHARE_FRAME_OVERHEAD;
  g_assert_true (feed (f, buf->data, header_at / 2));
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_true (feed (f, buf->data + header_at / 2, header_at - header_at / 2 + 3));
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_true (feed (f, buf->data + header_at + 3, body_at - header_at - 3));
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  /* The body frame's header and part of its payload: the rest is to come. */
  g_assert_true (feed (f, buf->data + body_at, CAREHARE_FRAME_HEADER_SIZE + 10));
  g_assert_nonnull (carehare_protocol_get_receive_buffer (f->p, &size, &frame_size));
  g_assert_cmpuint (size, ==, CHUNK_4096 - 10);
  g_assert_cmpuint (frame_size, ==, CHUNK_4096);
  /* All of it but the end octet: nothing more to put in place. */
  g_assert_true (feed (f, buf->data + body_at + CAREHARE_FRAME_HEADER_SIZE + 10,
                       CHUNK_4096 - 10));
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  g_assert_true (feed (f, buf->data + buf->len - 1, 1));
  g_assert_cmpuint (r->deliveries->len, ==, 1);
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));

  /* A message over max_body_size is skipped, not received anywhere. */
  g_byte_array_set_size (buf, 0);
  encode_message (buf, 1, "ctag", 2, body, CHUNK_4096);
  g_assert_true (feed (f, buf->data, buf->len - 100));
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_true (feed (f, buf->data + buf->len - 100, 100));
  g_assert_cmpuint (r->rejected_tags->len, ==, 1);

  /* We close the connection in the middle of a payload; it ends. */
  g_byte_array_set_size (buf, 0);
  encode_message (buf, 1, "ctag", 3, fits, CHUNK_4096);
  g_assert_true (feed (f, buf->data, 300));
  g_assert_nonnull (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  closing = close_start (f);
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_true (feed (f, buf->data + 300, buf->len - 300));
  g_assert_false (server_close_ok (f));
  assert_ok (closing);
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, &frame_size));
  g_assert_cmpuint (size, ==, 0);
  g_assert_cmpuint (frame_size, ==, 0);
  g_assert_cmpuint (r->deliveries->len, ==, 1);
}

/* A consumer closed while a body frame's payload is arriving: the rest of
 * the frame, and of its message, is dropped with it (read in place or
 * not), and the connection goes on. */
static void
test_content_arrival_consumer_closed (Fixture       *f,
                                      gconstpointer  data)
{
  gboolean in_place = GPOINTER_TO_INT (data);
  g_autoptr(GBytes) body = make_body (3 * CHUNK_4096, 5);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  Completion *closing;
  gsize size = 0, cut;
  Rec *r, *other;

  handshake (f, 2047, 4096, 0);
  r = consume_started (f, "q", 1, "ctag");
  other = consume_started (f, "q2", 2, "other");

  encode_message (buf, 1, "ctag", 1, body, CHUNK_4096);
  cut = buf->len - 2 * CHUNK_4096 - 100;
  g_assert_true (feed (f, buf->data, cut));
  g_assert_nonnull (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  closing = consumer_close_start (f, r);
  sent = take_sent (f);
  sent_method (sent, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE);
  g_assert_null (carehare_protocol_get_receive_buffer (f->p, &size, NULL));
  g_assert_cmpuint (feed_reads (f, buf->data + cut, buf->len - cut, 1000, in_place, NULL), ==, 0);
  g_assert_true (server_message (f, 2, "other", 1, "still here"));
  g_assert_true (server_channel_close_ok (f, 1));

  assert_ok (closing);
  g_assert_cmpuint (r->deliveries->len, ==, 0);
  g_assert_cmpuint (other->deliveries->len, ==, 1);
  g_assert_false (carehare_protocol_is_finished (f->p));
  /* The end octet of the frame it dropped was still checked. */
  g_byte_array_set_size (buf, 0);
  encode_message (buf, 2, "other", 2, body, CHUNK_4096);
  buf->data[buf->len - 1] = 0;
  cut = buf->len - 100;
  g_assert_true (feed (f, buf->data, cut));
  consumer_close_start (f, other);
  g_assert_false (feed (f, buf->data + cut, buf->len - cut));
  g_assert_error (f->finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
  assert_message_contains (f->finish_error, "Frame end octet is 0x00");
}

/* The end octet of a body frame whose payload went in as it arrived is
 * checked as a whole frame's is, wherever the reads cut it. */
static void
test_content_arrival_bad_frame_end (Fixture       *f,
                                    gconstpointer  data)
{
  g_autoptr(GBytes) body = make_body (CHUNK_4096 + 10, 5);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  gsize body_at, cuts[3];

  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_content (buf, 1, g_bytes_get_size (body), NULL, g_bytes_get_data (body, NULL),
                  g_bytes_get_size (body), CHUNK_4096);
  body_at = buf->len - 2 * CAREHARE_FRAME_OVERHEAD - CHUNK_4096 - 10;
  buf->data[body_at + CAREHARE_FRAME_OVERHEAD + CHUNK_4096 - 1] = 0xCD;
  /* In the header, in the payload, right before the end octet. */
  cuts[0] = body_at + 3;
  cuts[1] = body_at + 1000;
  cuts[2] = body_at + CAREHARE_FRAME_HEADER_SIZE + CHUNK_4096;

  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++)
    {
      Fixture g;
      g_autoptr(GPtrArray) sent = NULL;
      Rec *r;

      fixture_setup (&g, NULL);
      handshake (&g, 2047, 4096, 0);
      r = consume_started (&g, "q", 1, "ctag");
      g_assert_true (carehare_protocol_receive (g.p, buf->data, cuts[i], g.now));
      g_assert_false (carehare_protocol_receive (g.p, buf->data + cuts[i], buf->len - cuts[i], g.now));
      g_assert_error (g.finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
      assert_message_contains (g.finish_error, "Frame end octet is 0xcd");
      g_assert_cmpuint (r->deliveries->len, ==, 0);
      sent = take_sent (&g);
      g_assert_cmpuint (sent_method (sent, sent->len - 1, 0, CAREHARE_METHOD_CONNECTION_CLOSE)
                          ->connection_close.reply_code, ==, 501);
      fixture_teardown (&g, NULL);
    }
}

/* A body longer than its header announced is an error wherever the reads
 * cut the frame that makes it so, and nothing of it is delivered. */
static void
test_content_arrival_too_long (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GBytes) body = make_body (CHUNK_4096 + 11, 5);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  gsize last_at;

  encode_deliver (buf, 1, "ctag", 1, FALSE, "", "q");
  encode_content (buf, 1, CHUNK_4096 + 10, NULL, g_bytes_get_data (body, NULL),
                  g_bytes_get_size (body), CHUNK_4096);
  last_at = buf->len - CAREHARE_FRAME_OVERHEAD - 11;

  /* In the first body frame, then anywhere near or in the last one. */
  for (gsize cut = last_at - CHUNK_4096 - 3; cut < buf->len; cut += cut + 20 < last_at ? 509 : 1)
    {
      Fixture g;
      Rec *r;

      fixture_setup (&g, NULL);
      handshake (&g, 2047, 4096, 0);
      r = consume_started (&g, "q", 1, "ctag");
      g_assert_true (carehare_protocol_receive (g.p, buf->data, cut, g.now));
      g_assert_false (carehare_protocol_receive (g.p, buf->data + cut, buf->len - cut, g.now));
      g_assert_error (g.finish_error, CAREHARE_ERROR, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER);
      assert_message_contains (g.finish_error, "longer than the 4098 bytes");
      g_assert_cmpuint (r->deliveries->len, ==, 0);
      fixture_teardown (&g, NULL);
    }
}

/* A basic.return's body arrives the same way, wherever the reads cut it,
 * and is matched to its publish. */
static void
test_content_arrival_return (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GBytes) body = make_body (2 * CHUNK_4096 + 10, 9);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  guint64 tag = 1;

  handshake (f, 2047, 4096, 0);
  encode_return (buf, 1, 312, "NO_ROUTE", "ex", "nowhere");
  encode_content (buf, 1, g_bytes_get_size (body), NULL, g_bytes_get_data (body, NULL),
                  g_bytes_get_size (body), CHUNK_4096);
  for (gsize cut = 0; cut <= buf->len; cut++)
    {
      Completion *c;

      if (!cut_near_frame_start (buf, cut))
        continue;
      c = publish_full (f, "ex", "nowhere", body, NULL, TRUE);
      g_ptr_array_unref (take_sent (f));
      if (tag == 1)
        server_publisher_ready (f, 1);
      g_assert_true (carehare_protocol_receive (f->p, buf->data, cut, f->now));
      g_assert_true (carehare_protocol_receive (f->p, buf->data + cut, buf->len - cut, f->now));
      g_assert_true (server_ack (f, 1, tag++, FALSE));
      assert_failed (c, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
    }
  assert_no_output (f);
}

/* ======================================================================== */
/* call: RPC over direct reply-to                                            */
/* ======================================================================== */

#define REPLY_TAG "amq.ctag-replies"
/* What RabbitMQ puts in reply_to instead of amq.rabbitmq.reply-to. */
#define REWRITTEN_REPLY_TO "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxAAAHJQAAAAAAAAAB.abc"

/* What one call's callback saw, besides its Completion. */
typedef struct {
  Completion *c;
  CarehareProtocolDelivery *reply;
} Call;

static void
call_free (Call *call)
{
  g_clear_pointer (&call->reply, carehare_protocol_delivery_free);
  g_free (call);
}

static void
call_done_cb (CarehareProtocolOp   *op,
              const CarehareMethod *reply,
              const GError         *error,
              gpointer              user_data)
{
  Call *call = user_data;

  call->reply = carehare_protocol_op_take_delivery (op);
  /* Taken once. */
  g_assert_null (carehare_protocol_op_take_delivery (op));
  /* A reply exactly when it succeeded. */
  g_assert_true ((call->reply != NULL) == (error == NULL));
  op_done_cb (op, reply, error, call->c);
}

/* A call whose body is @text; @correlation_id NULL: a fresh one. */
static Call *
call_start (Fixture    *f,
            const char *exchange,
            const char *routing_key,
            const char *text,
            const char *correlation_id,
            gboolean    mandatory)
{
  Call *call = g_new0 (Call, 1);
  g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));
  CarehareBasicProperties props = { 0 };
  CarehareProtocolOp *op;

  fixture_own (f, call, (GDestroyNotify) call_free);
  call->c = completion_new (f);
  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE;
  props.content_type = (char *) "text/plain";
  if (correlation_id != NULL)
    {
      props.flags |= CAREHARE_PROPERTY_CORRELATION_ID;
      props.correlation_id = (char *) correlation_id;
    }
  op = carehare_protocol_call (f->p, exchange, routing_key, body, &props, mandatory,
                               call_done_cb, call);
  if (call->c->n_calls > 0)
    g_assert_null (op);
  else
    {
      g_assert_nonnull (op);
      call->c->op = op;
    }
  return call;
}

/* Frames @*i... of @sent must be the setup of the call channel @channel:
 * Channel.Open, Confirm.Select, and the no-ack consumer of replies. */
static void
sent_call_setup (GPtrArray *sent,
                 guint     *i,
                 guint16    channel)
{
  const CarehareMethod *m;

  sent_method (sent, (*i)++, channel, CAREHARE_METHOD_CHANNEL_OPEN);
  sent_method (sent, (*i)++, channel, CAREHARE_METHOD_CONFIRM_SELECT);
  m = sent_method (sent, (*i)++, channel, CAREHARE_METHOD_BASIC_CONSUME);
  g_assert_cmpstr (m->basic_consume.queue, ==, "amq.rabbitmq.reply-to");
  g_assert_cmpstr (m->basic_consume.consumer_tag, ==, "");
  g_assert_true (m->basic_consume.no_ack);
  g_assert_false (m->basic_consume.exclusive);
}

/* Frames @*i... of @sent must be the request of a call made by
 * call_start(): returns its correlation id. */
static char *
sent_call (GPtrArray  *sent,
           guint      *i,
           guint16     channel,
           const char *exchange,
           const char *routing_key,
           const char *text,
           gboolean    mandatory)
{
  g_autoptr(GBytes) body = g_bytes_new (text, strlen (text));
  CarehareBasicProperties props = { 0 };
  char *id;

  sent_publish (sent, i, channel, exchange, routing_key, mandatory, body, 131072, &props);
  g_assert_cmpuint (props.flags, ==, CAREHARE_PROPERTY_CONTENT_TYPE |
                                     CAREHARE_PROPERTY_CORRELATION_ID |
                                     CAREHARE_PROPERTY_REPLY_TO);
  g_assert_cmpstr (props.content_type, ==, "text/plain");
  g_assert_cmpstr (props.reply_to, ==, "amq.rabbitmq.reply-to");
  g_assert_nonnull (props.correlation_id);
  g_assert_cmpstr (props.correlation_id, !=, "");
  id = g_steal_pointer (&props.correlation_id);
  carehare_basic_properties_clear (&props);
  return id;
}

/* Open-Ok, Select-Ok and Consume-Ok of the call channel. */
static void
server_call_ready (Fixture *f,
                   guint16  channel)
{
  CarehareMethod ok = { .id = CAREHARE_METHOD_BASIC_CONSUME_OK };

  server_publisher_ready (f, channel);
  ok.basic_consume_ok.consumer_tag = (char *) REPLY_TAG;
  g_assert_true (server_method (f, channel, &ok));
}

/* A reply delivered to the call channel, as RabbitMQ sends it: from the
 * default exchange, routed by the rewritten reply_to. */
static gboolean
server_reply (Fixture    *f,
              guint16     channel,
              guint64     delivery_tag,
              const char *correlation_id,
              const char *text)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  CarehareBasicProperties props = { 0 };

  if (correlation_id != NULL)
    {
      props.flags = CAREHARE_PROPERTY_CORRELATION_ID;
      props.correlation_id = (char *) correlation_id;
    }
  encode_deliver (buf, channel, REPLY_TAG, delivery_tag, FALSE, "", REWRITTEN_REPLY_TO);
  encode_content (buf, channel, strlen (text), &props, (const guint8 *) text, strlen (text),
                  CHUNK_4096);
  return feed (f, buf->data, buf->len);
}

static void
assert_reply (Call       *call,
              const char *correlation_id,
              const char *text)
{
  assert_ok (call->c);
  g_assert_nonnull (call->reply);
  g_assert_cmpstr (call->reply->properties.correlation_id, ==, correlation_id);
  g_assert_cmpmem (g_bytes_get_data (call->reply->body, NULL), g_bytes_get_size (call->reply->body),
                   text, strlen (text));
  g_assert_cmpstr (call->reply->consumer_tag, ==, REPLY_TAG);
  g_assert_cmpstr (call->reply->routing_key, ==, REWRITTEN_REPLY_TO);
}

/* A call opens the call channel with the reply consumer, pipelined with
 * its request; the next call uses the same channel, with the caller's own
 * correlation id. */
static void
test_call_basic (Fixture       *f,
                 gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GPtrArray) sent2 = NULL;
  g_autofree char *id = NULL;
  g_autofree char *id2 = NULL;
  Call *a, *b;
  guint i = 0;

  connect_default (f);
  a = call_start (f, "", "rpc", "ping", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id = sent_call (sent, &i, 1, "", "rpc", "ping", FALSE);
  g_assert_cmpuint (i, ==, sent->len);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);

  server_call_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  /* Acked, but no reply yet. */
  assert_pending (a->c);
  g_assert_true (server_reply (f, 1, 1, id, "pong"));
  assert_reply (a, id, "pong");

  b = call_start (f, "ex", "rpc", "again", "my-id", FALSE);
  sent2 = take_sent (f);
  i = 0;
  id2 = sent_call (sent2, &i, 1, "ex", "rpc", "again", FALSE);
  g_assert_cmpstr (id2, ==, "my-id");
  g_assert_cmpuint (i, ==, sent2->len);
  g_assert_true (server_ack (f, 1, 2, FALSE));
  g_assert_true (server_reply (f, 1, 2, "my-id", "again-reply"));
  assert_reply (b, "my-id", "again-reply");
  /* The channel stays, for the next call; the client says nothing. */
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 1);
  assert_no_output (f);
}

/* Many calls in flight, each matched to its reply by correlation id
 * whatever the order of replies; fresh ids differ. */
static void
test_call_out_of_order (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autofree char *id1 = NULL;
  g_autofree char *id2 = NULL;
  g_autofree char *id3 = NULL;
  Call *c1, *c2, *c3;
  guint i = 0;

  connect_default (f);
  c1 = call_start (f, "", "rpc", "one", NULL, FALSE);
  c2 = call_start (f, "", "rpc", "two", NULL, FALSE);
  c3 = call_start (f, "", "rpc", "three", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id1 = sent_call (sent, &i, 1, "", "rpc", "one", FALSE);
  id2 = sent_call (sent, &i, 1, "", "rpc", "two", FALSE);
  id3 = sent_call (sent, &i, 1, "", "rpc", "three", FALSE);
  g_assert_cmpstr (id1, !=, id2);
  g_assert_cmpstr (id2, !=, id3);
  g_assert_cmpstr (id1, !=, id3);

  server_call_ready (f, 1);
  g_assert_true (server_ack (f, 1, 3, TRUE));
  g_assert_true (server_reply (f, 1, 1, id3, "three-reply"));
  assert_reply (c3, id3, "three-reply");
  assert_pending (c1->c);
  assert_pending (c2->c);
  g_assert_true (server_reply (f, 1, 2, id1, "one-reply"));
  assert_reply (c1, id1, "one-reply");
  assert_pending (c2->c);
  g_assert_true (server_reply (f, 1, 3, id2, "two-reply"));
  assert_reply (c2, id2, "two-reply");
  g_assert_cmpuint (c3->c->seq, <, c1->c->seq);
  g_assert_cmpuint (c1->c->seq, <, c2->c->seq);
  assert_no_output (f);
}

/* The reply may come before the request's ack (the broker acks once the
 * request is routed, and a quick server may answer first): the call
 * completes with both in. */
static void
test_call_reply_before_confirm (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autofree char *id = NULL;
  Call *c;
  guint i = 0;

  connect_default (f);
  c = call_start (f, "", "rpc", "ping", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id = sent_call (sent, &i, 1, "", "rpc", "ping", FALSE);
  server_call_ready (f, 1);

  g_assert_true (server_reply (f, 1, 1, id, "pong"));
  assert_pending (c->c);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_reply (c, id, "pong");
  assert_no_output (f);
}

/* A nacked request fails its call, even when its reply came first; a
 * reply after the nack is dropped. The channel goes on. */
static void
test_call_nack (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autofree char *id1 = NULL;
  g_autofree char *id2 = NULL;
  g_autofree char *id3 = NULL;
  Call *c1, *c2, *c3;
  guint i = 0;

  connect_default (f);
  c1 = call_start (f, "", "rpc", "one", NULL, FALSE);
  c2 = call_start (f, "", "rpc", "two", NULL, FALSE);
  c3 = call_start (f, "", "rpc", "three", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id1 = sent_call (sent, &i, 1, "", "rpc", "one", FALSE);
  id2 = sent_call (sent, &i, 1, "", "rpc", "two", FALSE);
  id3 = sent_call (sent, &i, 1, "", "rpc", "three", FALSE);
  server_call_ready (f, 1);

  g_assert_true (server_reply (f, 1, 1, id2, "two-reply"));
  g_assert_true (server_confirm (f, 1, CAREHARE_METHOD_BASIC_NACK, 2, TRUE));
  assert_failed (c1->c, CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK);
  assert_failed (c2->c, CAREHARE_ERROR, CAREHARE_ERROR_SERVER_SENT_NACK);
  g_assert_null (c2->reply);
  g_assert_true (server_reply (f, 1, 2, id1, "one-reply"));
  assert_pending (c3->c);

  g_assert_true (server_ack (f, 1, 3, FALSE));
  g_assert_true (server_reply (f, 1, 3, id3, "three-reply"));
  assert_reply (c3, id3, "three-reply");
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* A mandatory request nobody can take is returned, with the reply_to the
 * broker wrote into it: the call fails UNROUTABLE; another call on the
 * channel, to another exchange, is not charged with that return. */
static void
test_call_return (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autofree char *id1 = NULL;
  g_autofree char *id2 = NULL;
  g_autoptr(GBytes) body = g_bytes_new ("nowhere", 7);
  CarehareBasicProperties returned = { 0 };
  Call *routed, *unroutable;
  guint i = 0;

  connect_default (f);
  routed = call_start (f, "other", "nowhere", "nowhere", NULL, TRUE);
  unroutable = call_start (f, "", "nowhere", "nowhere", NULL, TRUE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id1 = sent_call (sent, &i, 1, "other", "nowhere", "nowhere", TRUE);
  id2 = sent_call (sent, &i, 1, "", "nowhere", "nowhere", TRUE);
  server_call_ready (f, 1);

  returned.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_CORRELATION_ID |
                   CAREHARE_PROPERTY_REPLY_TO;
  returned.content_type = (char *) "text/plain";
  returned.correlation_id = id2;
  returned.reply_to = (char *) REWRITTEN_REPLY_TO;
  g_assert_true (server_return_full (f, 1, "", "nowhere", body, &returned));
  assert_pending (unroutable->c);
  g_assert_true (server_ack (f, 1, 2, TRUE));
  assert_failed (unroutable->c, CAREHARE_ERROR, CAREHARE_ERROR_UNROUTABLE);
  assert_message_contains (unroutable->c->error, "312 NO_ROUTE");
  assert_pending (routed->c);
  g_assert_true (server_reply (f, 1, 1, id1, "routed"));
  assert_reply (routed, id1, "routed");
  assert_no_output (f);
}

/* The server closes the call channel (here for one call's missing
 * exchange): every call pending on it fails with the server's code, and
 * the next call opens a new channel. */
static void
test_call_channel_closed (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GPtrArray) sent2 = NULL;
  g_autoptr(GPtrArray) sent3 = NULL;
  g_autofree char *id1 = NULL;
  g_autofree char *id2 = NULL;
  g_autofree char *id3 = NULL;
  g_autofree char *id4 = NULL;
  Call *c1, *c2, *c3, *next;
  guint i = 0;
  guint16 channel;

  connect_default (f);
  c1 = call_start (f, "", "rpc", "one", NULL, FALSE);
  c2 = call_start (f, "", "rpc", "two", NULL, FALSE);
  c3 = call_start (f, "missing", "rpc", "three", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id1 = sent_call (sent, &i, 1, "", "rpc", "one", FALSE);
  id2 = sent_call (sent, &i, 1, "", "rpc", "two", FALSE);
  id3 = sent_call (sent, &i, 1, "missing", "rpc", "three", FALSE);
  server_call_ready (f, 1);
  /* One acked and waiting for its reply, one with its reply and no ack. */
  g_assert_true (server_ack (f, 1, 1, FALSE));
  g_assert_true (server_reply (f, 1, 1, id2, "two-reply"));

  encode_channel_close (buf, 1, 404, "NOT_FOUND - no exchange 'missing' in vhost '/'",
                        CAREHARE_METHOD_BASIC_PUBLISH);
  g_assert_true (feed (f, buf->data, buf->len));
  for (Call **c = (Call *[]) { c1, c2, c3, NULL }; *c != NULL; c++)
    {
      assert_failed ((*c)->c, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
      g_assert_cmpuint (carehare_error_get_reply_code ((*c)->c->error), ==, 404);
      assert_message_contains ((*c)->c->error, "no exchange 'missing'");
    }
  /* In the order they were made. */
  g_assert_cmpuint (c1->c->seq, <, c2->c->seq);
  g_assert_cmpuint (c2->c->seq, <, c3->c->seq);
  sent2 = take_sent (f);
  g_assert_cmpuint (sent2->len, ==, 1);
  sent_method (sent2, 0, 1, CAREHARE_METHOD_CHANNEL_CLOSE_OK);
  g_assert_cmpuint (carehare_protocol_get_n_open_channels (f->p), ==, 0);

  next = call_start (f, "", "rpc", "four", NULL, FALSE);
  sent3 = take_sent (f);
  i = 0;
  channel = ((Sent *) g_ptr_array_index (sent3, 0))->channel;
  g_assert_cmpuint (channel, !=, 0);
  sent_call_setup (sent3, &i, channel);
  id4 = sent_call (sent3, &i, channel, "", "rpc", "four", FALSE);
  server_call_ready (f, channel);
  /* The new channel numbers its requests from 1. */
  g_assert_true (server_ack (f, channel, 1, FALSE));
  g_assert_true (server_reply (f, channel, 1, id4, "four-reply"));
  assert_reply (next, id4, "four-reply");
  assert_no_output (f);
}

/* The connection goes: every pending call fails, and a call made after
 * that fails before it returns. */
static void
test_call_connection_closed (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autofree char *id = NULL;
  Call *acked, *unacked, *late;
  guint i = 0;

  connect_default (f);
  acked = call_start (f, "", "rpc", "one", NULL, FALSE);
  unacked = call_start (f, "", "rpc", "two", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id = sent_call (sent, &i, 1, "", "rpc", "one", FALSE);
  server_call_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));

  g_assert_false (server_close (f, 320, "CONNECTION_FORCED - broker forced connection closure"));
  assert_failed (acked->c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_failed (unacked->c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
  assert_message_contains (acked->c->error, "320");

  late = call_start (f, "", "rpc", "three", NULL, FALSE);
  assert_failed (late->c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
}

/* A cancelled call completes at once, whatever it was waiting for; its
 * request's ack (and return) and its late reply are dropped, and the next
 * call is not confused by them. */
static void
test_call_cancel (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autoptr(GPtrArray) sent2 = NULL;
  g_autoptr(GBytes) body = g_bytes_new ("gone", 4);
  g_autofree char *id1 = NULL;
  g_autofree char *id2 = NULL;
  g_autofree char *id3 = NULL;
  g_autofree char *id4 = NULL;
  CarehareBasicProperties returned = { 0 };
  Call *unacked, *acked, *returned_call, *next;
  guint i = 0;

  connect_default (f);
  unacked = call_start (f, "", "rpc", "one", NULL, FALSE);
  acked = call_start (f, "", "rpc", "two", NULL, FALSE);
  returned_call = call_start (f, "", "gone", "gone", NULL, TRUE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id1 = sent_call (sent, &i, 1, "", "rpc", "one", FALSE);
  id2 = sent_call (sent, &i, 1, "", "rpc", "two", FALSE);
  id3 = sent_call (sent, &i, 1, "", "gone", "gone", TRUE);
  server_call_ready (f, 1);
  g_assert_true (server_ack (f, 1, 2, FALSE));

  carehare_protocol_cancel (f->p, unacked->c->op);
  carehare_protocol_cancel (f->p, acked->c->op);
  carehare_protocol_cancel (f->p, returned_call->c->op);
  assert_failed (unacked->c, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_failed (acked->c, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_failed (returned_call->c, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  /* Nothing to tell the broker: the channel stays. */
  assert_no_output (f);

  /* Late: the return and the acks of the cancelled requests, their
   * replies. */
  returned.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_CORRELATION_ID |
                   CAREHARE_PROPERTY_REPLY_TO;
  returned.content_type = (char *) "text/plain";
  returned.correlation_id = id3;
  returned.reply_to = (char *) REWRITTEN_REPLY_TO;
  g_assert_true (server_return_full (f, 1, "", "gone", body, &returned));
  g_assert_true (server_ack (f, 1, 1, FALSE));
  g_assert_true (server_reply (f, 1, 1, id2, "two-reply"));

  next = call_start (f, "", "rpc", "four", NULL, FALSE);
  sent2 = take_sent (f);
  i = 0;
  id4 = sent_call (sent2, &i, 1, "", "rpc", "four", FALSE);
  g_assert_true (server_reply (f, 1, 2, id1, "one-reply"));
  g_assert_true (server_ack (f, 1, 4, TRUE));
  assert_pending (next->c);
  g_assert_true (server_reply (f, 1, 3, id4, "four-reply"));
  assert_reply (next, id4, "four-reply");
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* Replies for no pending call (an unknown correlation id, none at all, a
 * second reply to one call) are dropped; the pending call goes on. */
static void
test_call_unknown_reply (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  g_autofree char *id = NULL;
  Call *c;
  guint i = 0;

  connect_default (f);
  c = call_start (f, "", "rpc", "ping", NULL, FALSE);
  sent = take_sent (f);
  sent_call_setup (sent, &i, 1);
  id = sent_call (sent, &i, 1, "", "rpc", "ping", FALSE);
  server_call_ready (f, 1);

  g_assert_true (server_reply (f, 1, 1, "somebody-else", "not yours"));
  g_assert_true (server_reply (f, 1, 2, NULL, "no id"));
  assert_pending (c->c);
  g_assert_true (server_reply (f, 1, 3, id, "pong"));
  g_assert_true (server_reply (f, 1, 4, id, "pong again"));
  g_assert_true (server_ack (f, 1, 1, FALSE));
  assert_reply (c, id, "pong");
  g_assert_true (server_reply (f, 1, 5, id, "too late"));
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* Two pending calls with one correlation id could not be told apart: the
 * second fails before anything is sent. Once the first completed, the id
 * is free again. */
static void
test_call_duplicate_id (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Call *first, *second, *third;

  connect_default (f);
  first = call_start (f, "", "rpc", "one", "same", FALSE);
  g_ptr_array_unref (take_sent (f));
  second = call_start (f, "", "rpc", "two", "same", FALSE);
  assert_failed (second->c, G_IO_ERROR, G_IO_ERROR_EXISTS);
  assert_message_contains (second->c->error, "'same'");
  assert_no_output (f);

  server_call_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  g_assert_true (server_reply (f, 1, 1, "same", "one-reply"));
  assert_reply (first, "same", "one-reply");
  third = call_start (f, "", "rpc", "three", "same", FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_METHOD, CAREHARE_METHOD_BASIC_PUBLISH), ==, 1);
  assert_pending (third->c);
}

/* A caller-chosen correlation id of a cancelled call whose request went
 * out stays taken until its late reply arrives: that reply must not
 * complete a later call with the same id. A cancelled call whose request
 * never went out frees its id at once. */
static void
test_call_cancelled_id_reuse (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(GPtrArray) sent = NULL;
  Call *first, *again, *later;

  connect_default (f);
  first = call_start (f, "", "rpc", "one", "order-42", FALSE);
  g_ptr_array_unref (take_sent (f));
  server_call_ready (f, 1);
  g_assert_true (server_ack (f, 1, 1, FALSE));
  carehare_protocol_cancel (f->p, first->c->op);
  assert_failed (first->c, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  again = call_start (f, "", "rpc", "two", "order-42", FALSE);
  assert_failed (again->c, G_IO_ERROR, G_IO_ERROR_EXISTS);
  assert_message_contains (again->c->error, "cancelled call");
  assert_no_output (f);

  /* The late reply is dropped and frees the id. */
  g_assert_true (server_reply (f, 1, 1, "order-42", "one-reply"));
  later = call_start (f, "", "rpc", "three", "order-42", FALSE);
  sent = take_sent (f);
  g_assert_cmpuint (count_frames (sent, CAREHARE_FRAME_METHOD, CAREHARE_METHOD_BASIC_PUBLISH), ==, 1);
  g_assert_true (server_ack (f, 1, 2, FALSE));
  g_assert_true (server_reply (f, 1, 2, "order-42", "three-reply"));
  assert_reply (later, "order-42", "three-reply");
  g_assert_false (carehare_protocol_is_finished (f->p));
}

/* A reply on the call channel for a consumer tag that is not ours is a
 * server fault. */
static void
test_call_wrong_consumer_tag (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  Call *c;

  connect_default (f);
  c = call_start (f, "", "rpc", "ping", NULL, FALSE);
  g_ptr_array_unref (take_sent (f));
  server_call_ready (f, 1);
  encode_deliver (buf, 1, "not-the-reply-consumer", 1, FALSE, "", "rk");
  g_assert_false (feed (f, buf->data, buf->len));
  assert_failed (c->c, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) \
  g_test_add ("/protocol/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
#define ADD_DATA(path, data, func) \
  g_test_add ("/protocol/" path, Fixture, data, fixture_setup, func, fixture_teardown)

  ADD ("publish/first", test_publish_first);
  ADD_DATA ("publish/body-split/0", &split_sizes[0], test_publish_body_split);
  ADD_DATA ("publish/body-split/1", &split_sizes[1], test_publish_body_split);
  ADD_DATA ("publish/body-split/4088", &split_sizes[2], test_publish_body_split);
  ADD_DATA ("publish/body-split/4089", &split_sizes[3], test_publish_body_split);
  ADD_DATA ("publish/body-split/12269", &split_sizes[4], test_publish_body_split);
  ADD_DATA ("publish/body-split/65536", &split_sizes[5], test_publish_body_split);
  ADD_DATA ("publish/body-split/204803", &split_sizes[6], test_publish_body_split);
  ADD_DATA ("publish/large-body-not-copied", NULL, test_publish_large_body_not_copied);
  ADD_DATA ("publish/output-size", NULL, test_publish_output_size);
  ADD ("publish/ack-multiple", test_publish_ack_multiple);
  ADD ("publish/ack-out-of-order", test_publish_ack_out_of_order);
  ADD ("publish/nack", test_publish_nack);
  ADD ("publish/return", test_publish_return);
  ADD ("publish/return/reply-code", test_publish_return_reply_code);
  ADD ("publish/return-unmatched", test_publish_return_unmatched);
  ADD ("publish/return/not-oldest", test_publish_return_not_oldest);
  ADD ("publish/return/two-then-multiple", test_publish_return_two_then_multiple);
  ADD ("publish/return/headers", test_publish_return_headers);
  ADD ("publish/return/settled-by-ack", test_publish_return_settled_by_ack);
  ADD ("publish/split-bytes", test_publish_split_bytes);
  ADD ("publish/channel-closed", test_publish_channel_closed);
  ADD ("publish/channel-max", test_publish_channel_max);
  ADD ("publish/reclaim/lru", test_publish_reclaim_lru);
  ADD ("publish/reclaim/after-confirm", test_publish_reclaim_after_confirm);
  ADD ("publish/reclaim/idle", test_publish_reclaim_idle);
  ADD ("publish/reclaim/no-channel-will-free", test_publish_no_channel_will_free);
  ADD ("publish/blocked", test_publish_blocked);
  ADD ("publish/cancel-written", test_publish_cancel_written);
  ADD ("publish/flow", test_publish_flow);
  ADD ("publish/flow-then-channel-close", test_publish_flow_then_channel_close);
  ADD ("publish/connection-closed", test_publish_connection_closed);
  ADD ("publish/server-close", test_publish_server_close);
  ADD ("publish/unencodable", test_publish_unencodable);
  ADD_DATA ("publish/unknown-tag/ack", &unknown_ack, test_publish_unknown_tag);
  ADD_DATA ("publish/unknown-tag/ack-multiple", &unknown_ack_multiple, test_publish_unknown_tag);
  ADD_DATA ("publish/unknown-tag/nack", &unknown_nack, test_publish_unknown_tag);
  ADD_DATA ("publish/unknown-tag/ack-twice", &twice_ack, test_publish_unknown_tag);

  ADD ("consume/start", test_consume_start);
  ADD_DATA ("consume/deliver/single-frame", &deliver_single, test_consume_deliver);
  ADD_DATA ("consume/deliver/multi-frame", &deliver_multi, test_consume_deliver);
  ADD_DATA ("consume/deliver/empty", &deliver_empty, test_consume_deliver);
  ADD_DATA ("consume/deliver/split-bytes", &deliver_split, test_consume_deliver);
  ADD ("consume/ack", test_consume_ack);
  ADD ("consume/ack-settled-or-unknown", test_consume_ack_settled_or_unknown);
  ADD ("consume/ack-after-close", test_consume_ack_after_close);
  ADD ("consume/ack-after-finish", test_consume_ack_after_finish);
  ADD ("consume/reentrant", test_consume_reentrant);
  ADD ("consume/not-found", test_consume_not_found);
  ADD ("consume/invalid-arguments", test_consume_invalid_arguments);
  ADD ("consume/options", test_consume_options);
  ADD ("consume/tag-in-use", test_consume_tag_in_use);
  ADD ("consume/prefetch-size-other-server", test_consume_prefetch_size_other_server);
  ADD_DATA ("consume/server-cancel/nowait", &cancel_nowait, test_consume_server_cancel);
  ADD_DATA ("consume/server-cancel/wait", &cancel_wait, test_consume_server_cancel);
  ADD_DATA ("consume/server-cancel-unsettled/settle", &after_cancel_settle,
            test_consume_server_cancel_unsettled);
  ADD_DATA ("consume/server-cancel-unsettled/close", &after_cancel_close,
            test_consume_server_cancel_unsettled);
  ADD_DATA ("consume/server-cancel-unsettled/server-close", &after_cancel_server_close,
            test_consume_server_cancel_unsettled);
  ADD_DATA ("consume/server-cancel-unsettled/connection-close", &after_cancel_connection_close,
            test_consume_server_cancel_unsettled);
  ADD ("consume/server-close", test_consume_server_close);
  ADD ("consume/close", test_consume_close);
  ADD ("consume/close-before-consume-ok", test_consume_close_before_consume_ok);
  ADD_DATA ("consume/connection-finish/by-server", &finish_by_server,
            test_consume_connection_finish);
  ADD_DATA ("consume/connection-finish/by-us", &finish_by_us, test_consume_connection_finish);
  ADD ("consume/unref", test_consume_unref);
  ADD ("consume/channel-max", test_consume_channel_max);
  ADD ("consume/channel-max-free", test_consume_channel_max_free);
  ADD ("consume/prefetch/exceeded", test_consume_prefetch_exceeded);
  ADD ("consume/prefetch/respected", test_consume_prefetch_respected);
  ADD ("consume/prefetch/unbounded", test_consume_prefetch_unbounded);
  ADD ("consume/delivery-tag-not-rising", test_consume_delivery_tag_not_rising);

  ADD_DATA ("content/body-too-long", &ce_body_too_long, test_content_error);
  ADD_DATA ("content/body-too-long/split", &ce_body_too_long_split, test_content_error);
  ADD_DATA ("content/body-too-long/second-frame", &ce_body_too_long_second, test_content_error);
  ADD_DATA ("content/body-too-long/second-frame/split", &ce_body_too_long_second_split,
            test_content_error);
  ADD_DATA ("content/body-without-header", &ce_body_without_header, test_content_error);
  ADD_DATA ("content/body-without-deliver", &ce_body_without_deliver, test_content_error);
  ADD_DATA ("content/header-without-deliver", &ce_header_without_deliver, test_content_error);
  ADD_DATA ("content/second-header", &ce_second_header, test_content_error);
  ADD_DATA ("content/second-header-after-body", &ce_second_header_after_body,
            test_content_error);
  ADD_DATA ("content/unknown-consumer-tag", &ce_unknown_tag, test_content_error);
  ADD_DATA ("content/deliver-before-consume-ok", &ce_before_consume_ok, test_content_error);
  ADD_DATA ("content/huge-body-size", &ce_huge_body, test_content_error);
  ADD_DATA ("content/huge-body-size/split", &ce_huge_body_split, test_content_error);
  ADD_DATA ("content/max-body-size-field", &ce_max_body, test_content_error);
  ADD_DATA ("content/body-over-limit", &ce_body_over_limit, test_content_error);
  ADD_DATA ("content/header-on-rpc-channel", &ce_header_on_rpc, test_content_error);
  ADD_DATA ("content/body-on-rpc-channel", &ce_body_on_rpc, test_content_error);
  ADD_DATA ("content/header-on-publisher-channel", &ce_header_on_publisher, test_content_error);
  ADD_DATA ("content/return-body-too-long", &ce_return_too_long, test_content_error);
  ADD_DATA ("content/second-deliver", &ce_second_deliver, test_content_error);
  ADD_DATA ("content/second-deliver-no-header", &ce_second_deliver_no_header,
            test_content_error);
  ADD_DATA ("consume/foreign/correlation-id-ff-fe", &foreign_ff_fe, test_consume_foreign_message);
  ADD_DATA ("consume/foreign/correlation-id-nul", &foreign_nul, test_consume_foreign_message);
  ADD_DATA ("consume/foreign/correlation-id-latin1", &foreign_latin1, test_consume_foreign_message);
  ADD_DATA ("consume/foreign/header-key-not-utf8", &foreign_key, test_consume_foreign_message);
  ADD_DATA ("consume/foreign/reserved-flag-bit", &foreign_reserved, test_consume_foreign_message);
  ADD_DATA ("consume/foreign/reserved-flag-bit/split", &foreign_reserved_split,
            test_consume_foreign_message);
  ADD_DATA ("consume/foreign/headers-100-deep", &foreign_deep, test_consume_foreign_message);
  ADD ("consume/foreign/empty-body", test_consume_foreign_message_empty);
  ADD ("content/large-partial", test_content_large_partial);
  ADD_DATA ("content/max-body-size/configured", &limit_whole, test_content_configured_limit);
  ADD_DATA ("content/max-body-size/configured/split", &limit_split, test_content_configured_limit);
  ADD ("content/max-body-size/default", test_content_default_limit);
  ADD ("content/max-body-size/above-cap", test_content_limit_above_cap);
  ADD ("content/max-body-size/return", test_content_return_over_limit);
  ADD ("content/arrival/cut-everywhere", test_content_arrival_cut_everywhere);
  ADD_DATA ("content/arrival/read-sizes", GINT_TO_POINTER (FALSE), test_content_arrival_read_sizes);
  ADD_DATA ("content/arrival/read-sizes/in-place", GINT_TO_POINTER (TRUE),
            test_content_arrival_read_sizes);
  /* Bodies of 4 MiB or more have a mapping of their own. */
  ADD_DATA ("content/arrival/in-place", GSIZE_TO_POINTER (1024 * 1024),
            test_content_arrival_in_place);
  ADD_DATA ("content/arrival/in-place/mapped", GSIZE_TO_POINTER (5 * 1024 * 1024 + 3),
            test_content_arrival_in_place);
  ADD ("content/arrival/no-place", test_content_arrival_no_place);
  ADD_DATA ("content/arrival/consumer-closed", GINT_TO_POINTER (FALSE),
            test_content_arrival_consumer_closed);
  ADD_DATA ("content/arrival/consumer-closed/in-place", GINT_TO_POINTER (TRUE),
            test_content_arrival_consumer_closed);
  ADD ("content/arrival/bad-frame-end", test_content_arrival_bad_frame_end);
  ADD ("content/arrival/too-long", test_content_arrival_too_long);
  ADD ("content/arrival/return", test_content_arrival_return);

  ADD ("call/basic", test_call_basic);
  ADD ("call/out-of-order", test_call_out_of_order);
  ADD ("call/reply-before-confirm", test_call_reply_before_confirm);
  ADD ("call/nack", test_call_nack);
  ADD ("call/return", test_call_return);
  ADD ("call/channel-closed", test_call_channel_closed);
  ADD ("call/connection-closed", test_call_connection_closed);
  ADD ("call/cancel", test_call_cancel);
  ADD ("call/unknown-reply", test_call_unknown_reply);
  ADD ("call/duplicate-correlation-id", test_call_duplicate_id);
  ADD ("call/cancelled-id-reuse", test_call_cancelled_id_reuse);
  ADD ("call/wrong-consumer-tag", test_call_wrong_consumer_tag);

#undef ADD
#undef ADD_DATA

  return g_test_run ();
}
