/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection state machine against arbitrary server bytes.
 *
 * A valid handshake (Connection.Start, Tune and Open-Ok, built with the
 * wire encoder) opens the connection; then an RPC (queue.declare), a
 * publish, a consumer and a call (direct reply-to, correlation id "c1")
 * are started, and the input is fed as server bytes
 * in chunks, with time passing between them. Deliveries are acked or
 * nacked from inside the delivery callback.
 *
 * Input layout: byte 0 sets the chunk sizes (chunk i is
 * 1 + (byte0 * (i + 1)) % 257 bytes, or less when it goes in place: at most
 * what the protocol asks for), byte 1 holds flags (FLAG_*), the rest
 * is the server's byte stream after Open-Ok.
 *
 * Whatever the bytes, after carehare_protocol_free() every operation has
 * completed exactly once and nothing leaks (LeakSanitizer in the libFuzzer
 * build; criticals and warnings abort, see fuzz-common.h).
 */
#include <string.h>

#include "fuzz-common.h"

#include "carehare-protocol.h"

enum {
  FLAG_CLOSE_HALFWAY = 1 << 0,   /* carehare_protocol_close() after half the input */
  FLAG_CANCEL_RPC = 1 << 1,      /* cancel the RPC after the first chunk */
  FLAG_NACK = 1 << 2,            /* nack (requeue) deliveries instead of acking */
  FLAG_MULTIPLE = 1 << 3,        /* ack with multiple=TRUE */
  FLAG_LONG_PAUSES = 1 << 4,     /* minutes between chunks: heartbeats time out */
  FLAG_SECOND_RPC = 1 << 5,      /* start another RPC halfway */
  FLAG_CANCEL_CALL = 1 << 6,     /* cancel the call after the first chunk */
  FLAG_IN_PLACE = 1 << 7,        /* put body payload where the protocol asks, as the transport does */
};

typedef struct {
  guint completions;
  gboolean succeeded;
} OpRecord;

typedef struct {
  CarehareProtocol *protocol;
  CarehareProtocolConsumer *consumer;
  guint8 flags;
  guint n_finished;
  guint n_consumer_closed;
  guint n_deliveries;
} Fuzz;

static void
op_done_cb (CarehareProtocolOp   *op,
            const CarehareMethod *reply,
            const GError         *error,
            gpointer              user_data)
{
  OpRecord *rec = user_data;

  /* Never both a reply and an error, and at most once. */
  g_assert (reply == NULL || error == NULL);
  g_assert (rec->completions == 0);
  rec->completions++;
  rec->succeeded = error == NULL;
}

static void
finished_cb (CarehareProtocol *protocol,
             const GError     *error,
             gpointer          user_data)
{
  Fuzz *fuzz = user_data;

  g_assert (fuzz->n_finished == 0);
  fuzz->n_finished++;
}

static void
blocked_changed_cb (CarehareProtocol *protocol,
                    gboolean          blocked,
                    const char       *reason,
                    gpointer          user_data)
{
}

static const CarehareProtocolCallbacks callbacks = {
  .finished = finished_cb,
  .blocked_changed = blocked_changed_cb,
};

static void
delivery_cb (CarehareProtocolConsumer *consumer,
             CarehareProtocolDelivery *delivery,
             gpointer                  user_data)
{
  Fuzz *fuzz = user_data;

  fuzz->n_deliveries++;
  if (fuzz->flags & FLAG_NACK)
    carehare_protocol_consumer_nack (fuzz->protocol, consumer, delivery->delivery_tag,
                                     (fuzz->flags & FLAG_MULTIPLE) != 0, TRUE);
  else
    carehare_protocol_consumer_ack (fuzz->protocol, consumer, delivery->delivery_tag,
                                    (fuzz->flags & FLAG_MULTIPLE) != 0);
  carehare_protocol_delivery_free (delivery);
}

static void
consumer_closed_cb (CarehareProtocolConsumer *consumer,
                    const GError             *error,
                    gpointer                  user_data)
{
  Fuzz *fuzz = user_data;

  g_assert (error != NULL);
  g_assert (fuzz->n_consumer_closed == 0);
  fuzz->n_consumer_closed++;
}

static const CarehareProtocolConsumerCallbacks consumer_callbacks = {
  .delivery = delivery_cb,
  .closed = consumer_closed_cb,
};

static void
call_done_cb (CarehareProtocolOp   *op,
              const CarehareMethod *reply,
              const GError         *error,
              gpointer              user_data)
{
  CarehareProtocolDelivery *delivery = carehare_protocol_op_take_delivery (op);

  /* A reply exactly when it succeeded. */
  g_assert ((delivery != NULL) == (error == NULL));
  carehare_protocol_delivery_free (delivery);
  op_done_cb (op, reply, error, user_data);
}

/* Discards what the client wrote, as a server that reads everything. */
static void
drain (CarehareProtocol *protocol,
       gint64            now)
{
  GBytes *out = carehare_protocol_take_output (protocol, now);

  g_clear_pointer (&out, g_bytes_unref);
}

static void
handshake (CarehareProtocol *protocol,
           gint64            now)
{
  static const CarehareMethodId steps[] = {
    CAREHARE_METHOD_CONNECTION_START,
    CAREHARE_METHOD_CONNECTION_TUNE,
    CAREHARE_METHOD_CONNECTION_OPEN_OK,
  };

  drain (protocol, now);
  for (guint i = 0; i < G_N_ELEMENTS (steps); i++)
    {
      g_autoptr(GByteArray) frame = g_byte_array_new ();

      fuzz_append_handshake_frame (frame, steps[i], 16, 4096, 60);
      carehare_protocol_receive (protocol, frame->data, frame->len, now);
      drain (protocol, now);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  CarehareProtocolConfig config = { 0 };
  Fuzz fuzz = { 0 };
  OpRecord handshake_rec = { 0 }, rpc_rec = { 0 }, rpc2_rec = { 0 };
  OpRecord publish_rec = { 0 }, consume_rec = { 0 }, close_rec = { 0 }, call_rec = { 0 };
  CarehareMethod declare = { .id = CAREHARE_METHOD_QUEUE_DECLARE };
  CarehareBasicProperties props = { 0 };
  g_autoptr(GBytes) body = g_bytes_new_static ("hello", 5);
  CarehareProtocolOp *rpc, *call;
  gint64 now = 1000 * G_TIME_SPAN_SECOND;
  gboolean closed = FALSE, second_rpc = FALSE;
  guint8 chunk_seed;
  gsize offset, half;
  guint i;

  fuzz_init ();
  if (size < 2)
    return 0;
  chunk_seed = data[0];
  fuzz.flags = data[1];
  data += 2;
  size -= 2;

  config.username = "guest";
  config.password = "guest";
  config.vhost = "/";
  config.mechanism = CAREHARE_AUTH_MECHANISM_PLAIN;
  config.heartbeat = -1;
  config.channel_max = -1;
  config.frame_max = -1;
  config.product = "fuzz";
  config.version = "0";
  config.platform = "fuzz";
  config.close_timeout_us = 5 * G_TIME_SPAN_SECOND;
  /* Bounded bodies: a header may announce more than the input holds. */
  config.max_body_size = 1024 * 1024;

  fuzz.protocol = carehare_protocol_new (&config, &callbacks, &fuzz);
  carehare_protocol_start (fuzz.protocol, now, op_done_cb, &handshake_rec);
  handshake (fuzz.protocol, now);
  g_assert (handshake_rec.completions == 1 && handshake_rec.succeeded);

  /* channel 1: an RPC; channel 2: the publisher; channel 3: the consumer;
   * channel 4: the call channel */
  declare.queue_declare.queue = (char *) "q";
  rpc = carehare_protocol_rpc (fuzz.protocol, &declare, CAREHARE_METHOD_QUEUE_DECLARE_OK,
                               op_done_cb, &rpc_rec);
  props.flags = CAREHARE_PROPERTY_CONTENT_TYPE;
  props.content_type = (char *) "text/plain";
  carehare_protocol_publish (fuzz.protocol, "", "q", body, &props, TRUE,
                             op_done_cb, &publish_rec);
  fuzz.consumer = carehare_protocol_consume (fuzz.protocol, "q", 0, 10, &consumer_callbacks,
                                             &fuzz, op_done_cb, &consume_rec);
  props.flags |= CAREHARE_PROPERTY_CORRELATION_ID;
  props.correlation_id = (char *) "c1";
  call = carehare_protocol_call (fuzz.protocol, "", "rpc", body, &props, TRUE,
                                 call_done_cb, &call_rec);
  drain (fuzz.protocol, now);

  half = size / 2;
  for (offset = 0, i = 0; offset < size; i++)
    {
      gsize chunk = MIN (size - offset, 1 + ((gsize) chunk_seed * (i + 1)) % 257);
      gsize room = 0;
      guint8 *place = NULL;

      if (fuzz.flags & FLAG_IN_PLACE)
        place = carehare_protocol_get_receive_buffer (fuzz.protocol, &room, NULL);
      if (place != NULL)
        {
          chunk = MIN (chunk, room);
          memcpy (place, data + offset, chunk);
          carehare_protocol_receive_in_place (fuzz.protocol, chunk, now);
        }
      else
        carehare_protocol_receive (fuzz.protocol, data + offset, chunk, now);
      offset += chunk;

      if (i == 0 && (fuzz.flags & FLAG_CANCEL_RPC) && rpc_rec.completions == 0)
        carehare_protocol_cancel (fuzz.protocol, rpc);
      if (i == 0 && (fuzz.flags & FLAG_CANCEL_CALL) && call_rec.completions == 0)
        carehare_protocol_cancel (fuzz.protocol, call);
      if (!second_rpc && offset >= half && (fuzz.flags & FLAG_SECOND_RPC))
        {
          second_rpc = TRUE;
          carehare_protocol_rpc (fuzz.protocol, &declare, CAREHARE_METHOD_QUEUE_DECLARE_OK,
                                 op_done_cb, &rpc2_rec);
        }
      if (!closed && offset >= half && (fuzz.flags & FLAG_CLOSE_HALFWAY))
        {
          closed = TRUE;
          carehare_protocol_close (fuzz.protocol, now, op_done_cb, &close_rec);
        }

      now += (fuzz.flags & FLAG_LONG_PAUSES) ? 61 * G_TIME_SPAN_SECOND : 50 * G_TIME_SPAN_MILLISECOND;
      carehare_protocol_tick (fuzz.protocol, now);
      drain (fuzz.protocol, now);
    }

  carehare_protocol_free (fuzz.protocol);

  /* Every operation completed exactly once (op_done_cb asserts "at most"). */
  g_assert (rpc_rec.completions == 1);
  g_assert (publish_rec.completions == 1);
  g_assert (consume_rec.completions == 1);
  g_assert (call_rec.completions == 1);
  g_assert (!second_rpc || rpc2_rec.completions == 1);
  g_assert (!closed || close_rec.completions == 1);
  g_assert (fuzz.n_finished <= 1);

  if (g_getenv ("FUZZ_PROTOCOL_VERBOSE") != NULL)
    g_printerr ("rpc %s, publish %s, consume %s, %u deliveries, consumer closed %u\n",
                rpc_rec.succeeded ? "ok" : "failed", publish_rec.succeeded ? "ok" : "failed",
                consume_rec.succeeded ? "ok" : "failed", fuzz.n_deliveries,
                fuzz.n_consumer_closed);

  carehare_protocol_consumer_unref (fuzz.consumer);
  return 0;
}
