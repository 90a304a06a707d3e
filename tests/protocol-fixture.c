/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fake server and the fixture shared by the byte-level tests of the
 * sans-I/O connection state machine; see protocol-fixture.h.
 */
#include "protocol-fixture.h"

#include <string.h>

const guint8 heartbeat_frame[8] = { 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xCE };
const guint8 protocol_header[8] = { 'A', 'M', 'Q', 'P', 0x00, 0x00, 0x09, 0x01 };

/* ---- completions ---------------------------------------------------------- */

Completion *
completion_new (Fixture *f)
{
  Completion *c = g_new0 (Completion, 1);

  c->f = f;
  g_ptr_array_add (f->completions, c);
  return c;
}

static void
completion_free (gpointer data)
{
  Completion *c = data;

  g_clear_error (&c->error);
  g_free (c->queue);
  g_free (c->consumer_tag);
  g_free (c);
}

void
op_done_cb (CarehareProtocolOp   *op,
            const CarehareMethod *reply,
            const GError         *error,
            gpointer              user_data)
{
  Completion *c = user_data;

  g_assert_nonnull (op);
  /* Every operation completes exactly once. */
  g_assert_cmpuint (c->n_calls, ==, 0);
  c->n_calls++;
  c->seq = ++c->f->next_seq;
  c->op = NULL;

  /* A reply only on success (a close succeeds without one). */
  if (error != NULL)
    g_assert_null (reply);
  if (error != NULL)
    c->error = g_error_copy (error);
  else if (reply != NULL)
    {
      c->reply_id = reply->id;
      if (reply->id == CAREHARE_METHOD_QUEUE_DECLARE_OK)
        {
          c->queue = g_strdup (reply->queue_declare_ok.queue);
          c->message_count = reply->queue_declare_ok.message_count;
          c->consumer_count = reply->queue_declare_ok.consumer_count;
        }
      else if (reply->id == CAREHARE_METHOD_BASIC_CONSUME_OK)
        c->consumer_tag = g_strdup (reply->basic_consume_ok.consumer_tag);
    }

  if (c->chain)
    c->chained = rpc_declare (c->f, "chained");
}

static void
finished_cb (CarehareProtocol *protocol,
             const GError     *error,
             gpointer          user_data)
{
  Fixture *f = user_data;

  g_assert_true (protocol == f->p);
  g_assert_true (carehare_protocol_is_finished (protocol));
  f->n_finished++;
  g_clear_error (&f->finish_error);
  if (error != NULL)
    f->finish_error = g_error_copy (error);
}

static void
blocked_changed_cb (CarehareProtocol *protocol,
                    gboolean          blocked,
                    const char       *reason,
                    gpointer          user_data)
{
  Fixture *f = user_data;

  f->n_blocked_changed++;
  f->blocked = blocked;
  g_free (f->blocked_reason);
  f->blocked_reason = g_strdup (reason);
}

void
assert_ok (Completion *c)
{
  g_assert_no_error (c->error);
  g_assert_cmpuint (c->n_calls, ==, 1);
}

void
assert_failed (Completion *c,
               GQuark      domain,
               gint        code)
{
  g_assert_cmpuint (c->n_calls, ==, 1);
  g_assert_error (c->error, domain, code);
  g_assert_cmpuint (c->reply_id, ==, 0);
}

void
assert_pending (Completion *c)
{
  g_assert_cmpuint (c->n_calls, ==, 0);
  g_assert_nonnull (c->op);
}

void
assert_message_contains (const GError *error,
                         const char   *needle)
{
  g_assert_nonnull (error);
  if (strstr (error->message, needle) == NULL)
    g_error ("error message \"%s\" does not contain \"%s\"", error->message, needle);
}

/* ---- fixture -------------------------------------------------------------- */

typedef struct {
  gpointer data;
  GDestroyNotify destroy;
} Owned;

static void
owned_free (gpointer data)
{
  Owned *o = data;

  o->destroy (o->data);
  g_free (o);
}

void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  memset (f, 0, sizeof *f);
  f->config.username = "guest";
  f->config.password = "guest";
  f->config.vhost = "/";
  f->config.mechanism = CAREHARE_AUTH_MECHANISM_PLAIN;
  f->config.heartbeat = -1;
  f->config.channel_max = -1;
  f->config.frame_max = -1;
  f->config.connection_name = NULL;
  f->config.product = "carehare-glib-test";
  f->config.version = "0.1.0";
  f->config.platform = "GLib test";
  f->config.close_timeout_us = 5 * SEC;
  f->now = 1000 * SEC;
  f->completions = g_ptr_array_new_with_free_func (completion_free);
  f->transcript = g_byte_array_new ();
  f->owned = g_ptr_array_new_with_free_func (owned_free);
}

void
fixture_own (Fixture        *f,
             gpointer        data,
             GDestroyNotify  destroy)
{
  Owned *o = g_new0 (Owned, 1);

  o->data = data;
  o->destroy = destroy;
  g_ptr_array_add (f->owned, o);
}

void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_clear_pointer (&f->p, carehare_protocol_free);
  /* After the protocol: its callbacks may have used these while it went. */
  g_ptr_array_unref (f->owned);

  /* Nothing hangs: once the protocol is gone every operation has
   * completed, exactly once. */
  for (guint i = 0; i < f->completions->len; i++)
    {
      Completion *c = g_ptr_array_index (f->completions, i);

      g_assert_cmpuint (c->n_calls, ==, 1);
    }

  g_ptr_array_unref (f->completions);
  g_byte_array_unref (f->transcript);
  g_clear_error (&f->finish_error);
  g_free (f->blocked_reason);
}

CarehareProtocol *
protocol_new (Fixture *f)
{
  static const CarehareProtocolCallbacks callbacks = {
    .finished = finished_cb,
    .blocked_changed = blocked_changed_cb,
  };

  if (f->p == NULL)
    f->p = carehare_protocol_new (&f->config, &callbacks, f);
  return f->p;
}

/* ---- what the client sent ------------------------------------------------- */

static void
sent_free (gpointer data)
{
  Sent *s = data;

  carehare_method_clear (&s->method);
  g_clear_pointer (&s->payload, g_bytes_unref);
  g_free (s);
}

/* Takes the client's output; NULL if there is none. */
GBytes *
take_bytes (Fixture *f)
{
  GBytes *bytes = carehare_protocol_take_output (f->p, f->now);

  if (bytes != NULL)
    {
      gsize size;
      const guint8 *data = g_bytes_get_data (bytes, &size);

      g_assert_cmpuint (size, >, 0);
      g_byte_array_append (f->transcript, data, size);
    }
  g_assert_false (carehare_protocol_has_output (f->p));
  return bytes;
}

GPtrArray *
decode_frames (const guint8 *data,
               gsize         size)
{
  GPtrArray *frames = g_ptr_array_new_with_free_func (sent_free);
  gsize offset = 0;

  while (offset < size)
    {
      g_autoptr(GError) error = NULL;
      CarehareFrame frame;
      Sent *s;
      gssize n;

      n = carehare_frame_decode (data + offset, size - offset, 0, &frame, &error);
      g_assert_no_error (error);
      /* The client writes whole frames only. */
      g_assert_cmpint (n, >, 0);
      offset += n;

      s = g_new0 (Sent, 1);
      s->type = frame.type;
      s->channel = frame.channel;
      if (frame.type == CAREHARE_FRAME_METHOD)
        {
          carehare_method_decode (frame.payload, frame.size, &s->method, &error);
          g_assert_no_error (error);
        }
      else if (frame.type == CAREHARE_FRAME_HEADER || frame.type == CAREHARE_FRAME_BODY)
        s->payload = g_bytes_new (frame.payload, frame.size);
      g_ptr_array_add (frames, s);
    }
  return frames;
}

/* Takes the client's output and decodes it into frames (an empty array
 * when there is no output). */
GPtrArray *
take_sent (Fixture *f)
{
  g_autoptr(GBytes) bytes = take_bytes (f);
  gsize size = 0;
  const guint8 *data = bytes != NULL ? g_bytes_get_data (bytes, &size) : NULL;

  return decode_frames (data, size);
}

/* Asserts frame @i of @sent is method @id on @channel and returns it. */
const CarehareMethod *
sent_method (GPtrArray *sent,
             guint      i,
             guint16    channel,
             guint32    id)
{
  Sent *s;

  g_assert_cmpuint (i, <, sent->len);
  s = g_ptr_array_index (sent, i);
  g_assert_cmpuint (s->type, ==, CAREHARE_FRAME_METHOD);
  if (s->method.id != id)
    g_error ("frame %u: expected %s, got %s", i, carehare_method_name (id),
             carehare_method_name (s->method.id));
  g_assert_cmpuint (s->channel, ==, channel);
  return &s->method;
}

void
assert_no_output (Fixture *f)
{
  g_assert_false (carehare_protocol_has_output (f->p));
  g_assert_null (carehare_protocol_take_output (f->p, f->now));
}

/* ---- the fake server ------------------------------------------------------ */

gboolean
feed (Fixture      *f,
      const guint8 *data,
      gsize         size)
{
  gboolean alive = TRUE;

  if (!f->split)
    return carehare_protocol_receive (f->p, data, size, f->now);

  for (gsize i = 0; i < size; i++)
    {
      alive = carehare_protocol_receive (f->p, data + i, 1, f->now);
      if (!alive)
        break;
    }
  return alive;
}

void
server_encode (GByteArray           *buf,
               guint16               channel,
               const CarehareMethod *method)
{
  g_autoptr(GError) error = NULL;

  carehare_wire_append_method_frame (buf, channel, method, &error);
  g_assert_no_error (error);
}

gboolean
server_method (Fixture              *f,
               guint16               channel,
               const CarehareMethod *method)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  server_encode (buf, channel, method);
  return feed (f, buf->data, buf->len);
}

GVariant *
server_properties (void)
{
  GVariantBuilder caps;
  GVariantBuilder props;

  g_variant_builder_init (&caps, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&caps, "{sv}", "publisher_confirms", g_variant_new_boolean (TRUE));
  g_variant_builder_add (&caps, "{sv}", "connection.blocked", g_variant_new_boolean (TRUE));
  g_variant_builder_init (&props, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&props, "{sv}", "product", g_variant_new_string ("RabbitMQ"));
  g_variant_builder_add (&props, "{sv}", "version", g_variant_new_string ("3.12.1"));
  g_variant_builder_add (&props, "{sv}", "capabilities", g_variant_builder_end (&caps));
  return g_variant_ref_sink (g_variant_builder_end (&props));
}

gboolean
server_start_full (Fixture    *f,
                   guint8      major,
                   guint8      minor,
                   const char *mechanisms)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_START };
  g_autoptr(GVariant) props = server_properties ();
  g_autoptr(GBytes) mechs = g_bytes_new (mechanisms, strlen (mechanisms));
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);

  m.connection_start.version_major = major;
  m.connection_start.version_minor = minor;
  m.connection_start.server_properties = props;
  m.connection_start.mechanisms = mechs;
  m.connection_start.locales = locales;
  return server_method (f, 0, &m);
}

gboolean
server_start (Fixture *f)
{
  return server_start_full (f, 0, 9, "AMQPLAIN PLAIN");
}

gboolean
server_tune (Fixture *f,
             guint16  channel_max,
             guint32  frame_max,
             guint16  heartbeat)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_TUNE };

  m.connection_tune.channel_max = channel_max;
  m.connection_tune.frame_max = frame_max;
  m.connection_tune.heartbeat = heartbeat;
  return server_method (f, 0, &m);
}

gboolean
server_open_ok (Fixture *f)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_OPEN_OK };

  return server_method (f, 0, &m);
}

void
encode_close (GByteArray *buf,
              guint16     reply_code,
              const char *reply_text)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_CLOSE };

  m.connection_close.reply_code = reply_code;
  m.connection_close.reply_text = (char *) reply_text;
  server_encode (buf, 0, &m);
}

gboolean
server_close (Fixture    *f,
              guint16     reply_code,
              const char *reply_text)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  encode_close (buf, reply_code, reply_text);
  return feed (f, buf->data, buf->len);
}

gboolean
server_close_ok (Fixture *f)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CONNECTION_CLOSE_OK };

  return server_method (f, 0, &m);
}

void
encode_channel_close (GByteArray *buf,
                      guint16     channel,
                      guint16     reply_code,
                      const char *reply_text,
                      guint32     method_id)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CHANNEL_CLOSE };

  m.channel_close.reply_code = reply_code;
  m.channel_close.reply_text = (char *) reply_text;
  m.channel_close.class_id = CAREHARE_METHOD_CLASS_ID (method_id);
  m.channel_close.method_id = CAREHARE_METHOD_METHOD_ID (method_id);
  server_encode (buf, channel, &m);
}

gboolean
server_channel_close (Fixture    *f,
                      guint16     channel,
                      guint16     reply_code,
                      const char *reply_text)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  encode_channel_close (buf, channel, reply_code, reply_text, CAREHARE_METHOD_QUEUE_DECLARE);
  return feed (f, buf->data, buf->len);
}

gboolean
server_channel_close_ok (Fixture *f,
                         guint16  channel)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_CHANNEL_CLOSE_OK };

  return server_method (f, channel, &m);
}

void
encode_declare_ok (GByteArray *buf,
                   guint16     channel,
                   const char *queue,
                   guint32     message_count,
                   guint32     consumer_count)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_DECLARE_OK };

  m.queue_declare_ok.queue = (char *) queue;
  m.queue_declare_ok.message_count = message_count;
  m.queue_declare_ok.consumer_count = consumer_count;
  server_encode (buf, channel, &m);
}

gboolean
server_declare_ok (Fixture    *f,
                   guint16     channel,
                   const char *queue)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();

  encode_declare_ok (buf, channel, queue, 0, 0);
  return feed (f, buf->data, buf->len);
}

gboolean
server_heartbeat (Fixture *f)
{
  return feed (f, heartbeat_frame, sizeof heartbeat_frame);
}

/* ---- connecting ----------------------------------------------------------- */

void
assert_bytes (GBytes       *bytes,
              const guint8 *expected,
              gsize         expected_size)
{
  gsize size = 0;
  const guint8 *data;

  g_assert_nonnull (bytes);
  data = g_bytes_get_data (bytes, &size);
  g_assert_cmpmem (data, size, expected, expected_size);
}

/* Creates the protocol and starts the handshake; takes the header. */
void
start (Fixture *f)
{
  g_autoptr(GBytes) header = NULL;
  CarehareProtocolOp *op;

  protocol_new (f);
  f->handshake = completion_new (f);
  op = carehare_protocol_start (f->p, f->now, op_done_cb, f->handshake);
  g_assert_nonnull (op);
  f->handshake->op = op;
  header = take_bytes (f);
  assert_bytes (header, protocol_header, sizeof protocol_header);
  assert_pending (f->handshake);
}

/* A whole handshake: the server offers @channel_max, @frame_max and
 * @heartbeat in Tune. */
void
handshake (Fixture *f,
           guint16  channel_max,
           guint32  frame_max,
           guint16  heartbeat)
{
  g_autoptr(GPtrArray) sent = NULL;

  start (f);
  g_assert_true (server_start (f));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 1);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_START_OK);
  g_clear_pointer (&sent, g_ptr_array_unref);

  g_assert_true (server_tune (f, channel_max, frame_max, heartbeat));
  sent = take_sent (f);
  g_assert_cmpuint (sent->len, ==, 2);
  sent_method (sent, 0, 0, CAREHARE_METHOD_CONNECTION_TUNE_OK);
  sent_method (sent, 1, 0, CAREHARE_METHOD_CONNECTION_OPEN);
  assert_pending (f->handshake);

  g_assert_true (server_open_ok (f));
  assert_ok (f->handshake);
  g_assert_cmpuint (f->handshake->reply_id, ==, CAREHARE_METHOD_CONNECTION_OPEN_OK);
  assert_no_output (f);
  g_assert_false (carehare_protocol_is_finished (f->p));
}

void
connect_default (Fixture *f)
{
  /* No heartbeats: both sides say 0 (the client would otherwise ask for
   * its default 60 s), so deadlines are the operations' own. */
  f->config.heartbeat = 0;
  handshake (f, 2047, 131072, 0);
}

/* ---- rpcs ----------------------------------------------------------------- */

/* The returned op is NULL when the operation completed before the call
 * returned; otherwise it is valid until its callback runs. */
Completion *
rpc_start (Fixture              *f,
           const CarehareMethod *request,
           guint32               reply_id)
{
  Completion *c = completion_new (f);
  CarehareProtocolOp *op;

  op = carehare_protocol_rpc (f->p, request, reply_id, op_done_cb, c);
  if (c->n_calls > 0)
    g_assert_null (op);
  else
    {
      g_assert_nonnull (op);
      c->op = op;
    }
  return c;
}

Completion *
rpc_declare (Fixture    *f,
             const char *queue)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_DECLARE };

  m.queue_declare.queue = (char *) queue;
  m.queue_declare.durable = TRUE;
  return rpc_start (f, &m, CAREHARE_METHOD_QUEUE_DECLARE_OK);
}


Completion *
close_start (Fixture *f)
{
  Completion *c = completion_new (f);
  CarehareProtocolOp *op;

  op = carehare_protocol_close (f->p, f->now, op_done_cb, c);
  if (c->n_calls > 0)
    g_assert_null (op);
  else
    {
      g_assert_nonnull (op);
      c->op = op;
    }
  return c;
}
