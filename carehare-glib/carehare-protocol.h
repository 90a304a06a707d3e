/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * carehare-protocol: the AMQP 0-9-1 connection state machine, sans I/O.
 *
 * It consumes bytes (carehare_protocol_receive) and the passing of time
 * (carehare_protocol_tick, with a monotonic "now" in microseconds supplied
 * by the caller) and produces bytes to write (carehare_protocol_take_output),
 * a deadline for the next tick, and completions of the operations it was
 * given. It never touches a socket, a timer or a main context, so every
 * transition is unit tested byte for byte.
 *
 * Operations are the library's intents, not channels:
 *  - the handshake (carehare_protocol_start);
 *  - an RPC (declare, bind, delete...) on a pooled channel of its own
 *    (carehare_protocol_rpc): a channel goes back to the pool after a
 *    success and is discarded after any error or cancellation, so a server
 *    channel error fails exactly that operation;
 *  - closing the connection (carehare_protocol_close).
 *
 * Every operation completes exactly once through its callback. Callbacks
 * never run while the state machine is half updated: completions are queued
 * and run when the outermost public call returns, so a callback may start
 * new operations. The op returned by the call that starts an operation is
 * valid until its callback has run; when that already happened before the
 * call returned (an rpc on a finished connection, arguments that cannot be
 * encoded...), the call returns NULL. When the connection closes for any
 * reason, every pending operation completes at once with
 * CAREHARE_ERROR_CONNECTION_CLOSED (or the cause, for the handshake), and
 * operations started later complete the same way before the call that
 * started them returns. When the server closes the connection naming a
 * request of ours (the class and method ids of its Close), the operations
 * that sent such a request complete with the server's error itself
 * (CONNECTION_CLOSED_BY_SERVER), before the others.
 */

#include <glib.h>

#include "carehare-uri.h"
#include "carehare-wire.h"

G_BEGIN_DECLS

typedef struct _CarehareProtocol CarehareProtocol;
typedef struct _CarehareProtocolOp CarehareProtocolOp;
typedef struct _CarehareProtocolConsumer CarehareProtocolConsumer;

/* What the client asks for; the server's Tune decides within these. */
typedef struct {
  const char *username;           /* PLAIN only */
  const char *password;           /* PLAIN only; never logged */
  const char *vhost;
  CarehareAuthMechanism mechanism;
  gint heartbeat;                 /* seconds; -1: CAREHARE_PROTOCOL_DEFAULT_HEARTBEAT */
  gint channel_max;               /* -1: accept the server's */
  gint64 frame_max;               /* <= 0: CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX */
  const char *connection_name;    /* nullable */
  const char *product;            /* client-properties.product */
  const char *version;            /* client-properties.version */
  const char *platform;           /* client-properties.platform */
  gint64 close_timeout_us;        /* how long to wait for Close-Ok */
  guint64 max_body_size;          /* largest delivery body; 0: CAREHARE_PROTOCOL_DEFAULT_MAX_BODY_SIZE,
                                   * at most CAREHARE_PROTOCOL_MAX_BODY_SIZE */
} CarehareProtocolConfig;

/* Completion of an operation. @reply is the method that completed it
 * (borrowed, valid during the call), NULL on error. */
typedef void (*CarehareProtocolOpCallback) (CarehareProtocolOp    *op,
                                            const CarehareMethod  *reply,
                                            const GError          *error,
                                            gpointer               user_data);

typedef struct {
  /* The connection is over: flush what carehare_protocol_take_output()
   * still holds, then close the socket. @error is NULL when we closed it
   * (Close-Ok received or the close timed out), otherwise the cause. Runs
   * once. */
  void (*finished) (CarehareProtocol *protocol,
                    const GError     *error,
                    gpointer          user_data);
  /* connection.blocked / connection.unblocked */
  void (*blocked_changed) (CarehareProtocol *protocol,
                           gboolean          blocked,
                           const char       *reason,
                           gpointer          user_data);
  /* The server closed channel @channel (channel.close), for logs only:
   * whatever ran on it has been told through its own callback. */
  void (*channel_closed) (CarehareProtocol *protocol,
                          guint             channel,
                          guint             reply_code,
                          const char       *reply_text,
                          gpointer          user_data);
} CarehareProtocolCallbacks;

/* What the client proposes in Tune-Ok when the URI says nothing (RabbitMQ's
 * own defaults), and the largest frame_max a URI may ask for. */
#define CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX   131072
#define CAREHARE_PROTOCOL_MAX_FRAME_MAX       CAREHARE_URI_MAX_FRAME_MAX
#define CAREHARE_PROTOCOL_DEFAULT_HEARTBEAT   60
/* A delivery whose body is larger than max_body_size (128 MiB unless
 * configured) is rejected alone; a content header announcing more than
 * RabbitMQ's own hard cap, which no broker sends, is a connection error. */
#define CAREHARE_PROTOCOL_DEFAULT_MAX_BODY_SIZE (G_GUINT64_CONSTANT (128) * 1024 * 1024)
#define CAREHARE_PROTOCOL_MAX_BODY_SIZE       ((guint64) CAREHARE_URI_MAX_BODY_SIZE)
/* A publisher channel with nothing in flight for this long is closed (the
 * next publish to its exchange opens a new one); so is the least recently
 * used idle one, at once, when a request needs a channel and none is free. */
#define CAREHARE_PROTOCOL_PUBLISHER_IDLE_US   (G_GINT64_CONSTANT (30) * G_USEC_PER_SEC)

CarehareProtocol *carehare_protocol_new  (const CarehareProtocolConfig    *config,
                                          const CarehareProtocolCallbacks *callbacks,
                                          gpointer                         user_data);
/* Fails every pending operation with CONNECTION_CLOSED (callbacks run)
 * before freeing; a close waiting for Close-Ok completes without error.
 * May be called from one of the protocol's own callbacks: then it is over
 * at once (no "finished" or "blocked_changed" callback runs any more), the
 * completions still queued run, and it is freed when the outermost call
 * into it returns; the caller must not call it again. */
void              carehare_protocol_free (CarehareProtocol *protocol);

/* Starts the handshake: queues the protocol header. The op completes after
 * Connection.Open-Ok, or with the reason the handshake failed. */
CarehareProtocolOp *carehare_protocol_start (CarehareProtocol           *protocol,
                                             gint64                      now,
                                             CarehareProtocolOpCallback  callback,
                                             gpointer                    user_data);

/* Counters kept by the protocol core: plain integers bumped where the
 * events happen (no lock: the core runs on one thread), read through
 * carehare_connection_get_statistics(). */
typedef struct {
  guint64 messages_published;   /* publishes (and call requests) written out */
  guint64 messages_confirmed;   /* basic.ack received for them */
  guint64 messages_nacked;      /* basic.nack received for them */
  guint64 messages_returned;    /* mandatory publishes returned unroutable */
  guint64 deliveries_received;  /* basic.deliver to consumers */
  guint64 deliveries_acked;     /* deliveries settled with basic.ack */
  guint64 deliveries_nacked;    /* deliveries settled with basic.nack */
  guint64 bytes_sent;           /* handed to the transport */
  guint64 bytes_received;       /* fed by the transport */
  guint64 heartbeats_sent;
  guint64 heartbeats_missed;    /* heartbeat intervals with nothing from the server */
} CarehareProtocolStats;

const CarehareProtocolStats *carehare_protocol_get_stats (CarehareProtocol *protocol);
/* Monotonic time (µs) of the last bytes from the server; 0 before any. */
gint64 carehare_protocol_get_last_read (CarehareProtocol *protocol);

/* Feeds bytes read from the socket. Returns FALSE once the connection is
 * finished (further input is ignored). */
gboolean carehare_protocol_receive (CarehareProtocol *protocol,
                                    const guint8     *data,
                                    gsize             size,
                                    gint64            now);

/* Bytes to write, or NULL if there are none; taking them counts as writing
 * them for the heartbeat. */
GBytes  *carehare_protocol_take_output (CarehareProtocol *protocol,
                                        gint64            now);
gboolean carehare_protocol_has_output  (CarehareProtocol *protocol);
/* The same as a list of buffers to write in order (a writev): large
 * message bodies are slices of the caller's GBytes, never copied. NULL if
 * there is nothing to write. */
GPtrArray *carehare_protocol_take_output_segments (CarehareProtocol *protocol,
                                                   gint64            now);
/* How many bytes the output holds now: what the next take would return
 * (for the owner's write buffer accounting; nothing here acts on it). */
gsize    carehare_protocol_get_output_size (CarehareProtocol *protocol);

/* Heartbeats and timeouts. Returns the next deadline (monotonic µs) or
 * G_MAXINT64 when nothing is due. */
gint64   carehare_protocol_tick         (CarehareProtocol *protocol,
                                         gint64            now);
gint64   carehare_protocol_get_deadline (CarehareProtocol *protocol);

/* The socket reached end of file or failed: fail everything with @error
 * (a CONNECTION_CLOSED error naming the cause is made from it). */
void     carehare_protocol_abort (CarehareProtocol *protocol,
                                  const GError     *error);

/* Sends Connection.Close (or ends the handshake) and fails every pending
 * operation with CONNECTION_CLOSED. The op completes when the server
 * answers Close-Ok, the close times out, or at once when the connection was
 * already finished; its error is then the cause the connection had
 * finished with, if any. */
CarehareProtocolOp *carehare_protocol_close (CarehareProtocol           *protocol,
                                             gint64                      now,
                                             CarehareProtocolOpCallback  callback,
                                             gpointer                    user_data);

/* Sends Connection.Update-Secret (RabbitMQ 3.8+) with @new_secret, a new
 * password or OAuth 2 token for the open connection, and completes with
 * Update-Secret-Ok. @new_secret is copied into buffers that are wiped once
 * written; @reason is at most 255 bytes. Several may be in flight: the
 * server answers in order. Cancelled, the op completes at once and the
 * server's answer to it is dropped. A Connection.Close that names
 * Update-Secret (a token the server refuses) fails it with the server's
 * code. */
CarehareProtocolOp *carehare_protocol_update_secret (CarehareProtocol           *protocol,
                                                     const char                 *new_secret,
                                                     const char                 *reason,
                                                     CarehareProtocolOpCallback  callback,
                                                     gpointer                    user_data);

/* Runs @request (borrowed; encoded before this returns) on a pooled channel
 * and completes with the method whose id is @reply_id. Waits for a free
 * channel when all channel_max are busy. */
CarehareProtocolOp *carehare_protocol_rpc (CarehareProtocol           *protocol,
                                           const CarehareMethod       *request,
                                           guint32                     reply_id,
                                           CarehareProtocolOpCallback  callback,
                                           gpointer                    user_data);

/* Publishes a message on the exchange's confirm-mode channel (opened on
 * first use, reopened after a channel error). The op completes when the
 * broker acks it, with CAREHARE_ERROR_SERVER_SENT_NACK when it nacks it,
 * CAREHARE_ERROR_UNROUTABLE when @mandatory and it was returned, or
 * CHANNEL_CLOSED_BY_SERVER / CONNECTION_CLOSED. @properties is borrowed and
 * encoded before this returns; @body is referenced until written (a
 * mandatory publish's until confirmed, to recognise it in a basic.return).
 * While the connection is blocked, or the server stopped the channel with
 * Channel.Flow(active=false), publishes are kept, in order, and written
 * after connection.unblocked or Channel.Flow(active=true). */
CarehareProtocolOp *carehare_protocol_publish (CarehareProtocol               *protocol,
                                               const char                     *exchange,
                                               const char                     *routing_key,
                                               GBytes                         *body,
                                               const CarehareBasicProperties  *properties,
                                               gboolean                        mandatory,
                                               CarehareProtocolOpCallback      callback,
                                               gpointer                        user_data);

/* One consumed message; the delivery callback owns it. */
typedef struct {
  guint64 delivery_tag;
  gboolean redelivered;
  char *consumer_tag;
  char *exchange;
  char *routing_key;
  CarehareBasicProperties properties;
  GBytes *body;
} CarehareProtocolDelivery;

void carehare_protocol_delivery_free (CarehareProtocolDelivery *delivery);

/* The reply-to address of direct reply-to and the queue of its consumer. */
#define CAREHARE_PROTOCOL_DIRECT_REPLY_TO "amq.rabbitmq.reply-to"

/* An RPC over direct reply-to: publishes a request like
 * carehare_protocol_publish(), with reply_to set to
 * CAREHARE_PROTOCOL_DIRECT_REPLY_TO and the correlation id of @properties
 * (a fresh unique one when it has none), on the connection's one call
 * channel: opened on first use in confirm mode with the no-ack consumer of
 * amq.rabbitmq.reply-to, reopened by the next call after the server closed
 * it. The op completes once both the broker's ack of the request and the
 * delivery whose correlation id is the call's have arrived (in either
 * order); take the reply with carehare_protocol_op_take_delivery() in the
 * callback. It fails with the request's own publish errors
 * (SERVER_SENT_NACK, UNROUTABLE when @mandatory and returned), with
 * CHANNEL_CLOSED_BY_SERVER when the server closes the call channel (every
 * call pending on it fails so, with the server's reply code), with
 * CONNECTION_CLOSED, with G_IO_ERROR_EXISTS at once when another pending
 * call has the same correlation id, and with G_IO_ERROR_CANCELLED when
 * cancelled, at any time (a reply that arrives later is dropped, as is any
 * reply for no pending call). @properties is borrowed, its reply_to
 * ignored. */
CarehareProtocolOp *carehare_protocol_call (CarehareProtocol               *protocol,
                                            const char                     *exchange,
                                            const char                     *routing_key,
                                            GBytes                         *body,
                                            const CarehareBasicProperties  *properties,
                                            gboolean                        mandatory,
                                            CarehareProtocolOpCallback      callback,
                                            gpointer                        user_data);

/* In the callback of a call that succeeded: its reply, the caller's to
 * free (NULL when taken already, or for any other op). */
CarehareProtocolDelivery *carehare_protocol_op_take_delivery (CarehareProtocolOp *op);

typedef struct {
  /* A message arrived; @delivery is the callee's to free. */
  void (*delivery) (CarehareProtocolConsumer *consumer,
                    CarehareProtocolDelivery *delivery,
                    gpointer                  user_data);
  /* The consumer ended by itself: the server cancelled it or closed its
   * channel (CHANNEL_CLOSED_BY_SERVER), or the connection closed
   * (CONNECTION_CLOSED). Not called when the start op failed, nor after
   * carehare_protocol_consumer_close(). At most once. */
  void (*closed) (CarehareProtocolConsumer *consumer,
                  const GError             *error,
                  gpointer                  user_data);
  /* A message arrived whose content header cannot be represented
   * (property flag bits that name no property, a headers table nested too
   * deep or malformed: CAREHARE_ERROR_BAD_BYTES_FROM_SERVER) or whose body
   * is larger than max_body_size (CAREHARE_ERROR_MESSAGE_TOO_LARGE): it
   * was rejected with Basic.Reject requeue=false (a dead-letter exchange
   * can catch it) as soon as its content header arrived, its body is
   * skipped without being buffered, and it is not delivered; the consumer
   * goes on. @error names the problem and the delivery tag. Called in
   * order with deliveries. */
  void (*rejected) (CarehareProtocolConsumer *consumer,
                    guint64                   delivery_tag,
                    const GError             *error,
                    gpointer                  user_data);
} CarehareProtocolConsumerCallbacks;

/* Opens a channel of its own, sets basic.qos and starts basic.consume
 * (acks required). @start completes after Consume-Ok, or with the error
 * that stopped it (a missing queue: CHANNEL_CLOSED_BY_SERVER 404). A
 * delivery that finds @prefetch_count (unless 0) deliveries handed out and
 * not settled yet is a server fault: the connection finishes with
 * BAD_BYTES_FROM_SERVER (Connection.Close 505) naming the count. The
 * caller holds one reference on the returned consumer and must give it
 * back with carehare_protocol_consumer_unref(); no callback runs after
 * that. */
CarehareProtocolConsumer *carehare_protocol_consume (CarehareProtocol                        *protocol,
                                                     const char                              *queue,
                                                     guint32                                  prefetch_size,
                                                     guint16                                  prefetch_count,
                                                     const CarehareProtocolConsumerCallbacks *callbacks,
                                                     gpointer                                 user_data,
                                                     CarehareProtocolOpCallback               start,
                                                     gpointer                                 start_data);
/* What a consumer asks of basic.consume besides its queue. */
typedef struct {
  gboolean exclusive;          /* no other consumer on the queue */
  const char *consumer_tag;    /* nullable: the server names the consumer */
  GVariant *arguments;         /* nullable a{s*}: x-priority, x-stream-offset... */
} CarehareProtocolConsumeOptions;

/* carehare_protocol_consume() with @options (nullable: none). The start
 * fails at once, before anything is sent, with G_IO_ERROR_INVALID_ARGUMENT
 * when the wire cannot carry the tag or the arguments, and with
 * G_IO_ERROR_EXISTS when another live consumer of this connection has
 * (or asked for) the same tag. */
CarehareProtocolConsumer *carehare_protocol_consume_full (CarehareProtocol                        *protocol,
                                                          const char                              *queue,
                                                          guint32                                  prefetch_size,
                                                          guint16                                  prefetch_count,
                                                          const CarehareProtocolConsumeOptions    *options,
                                                          const CarehareProtocolConsumerCallbacks *callbacks,
                                                          gpointer                                 user_data,
                                                          CarehareProtocolOpCallback               start,
                                                          gpointer                                 start_data);
/* Never fail: dropped once the consumer or the connection is closed. */
void carehare_protocol_consumer_ack  (CarehareProtocol         *protocol,
                                      CarehareProtocolConsumer *consumer,
                                      guint64                   delivery_tag,
                                      gboolean                  multiple);
void carehare_protocol_consumer_nack (CarehareProtocol         *protocol,
                                      CarehareProtocolConsumer *consumer,
                                      guint64                   delivery_tag,
                                      gboolean                  multiple,
                                      gboolean                  requeue);
/* Closes the consumer's channel (the broker requeues what was not acked);
 * the op completes at Channel.Close-Ok, or at once if it had ended. */
CarehareProtocolOp *carehare_protocol_consumer_close (CarehareProtocol           *protocol,
                                                      CarehareProtocolConsumer   *consumer,
                                                      CarehareProtocolOpCallback  callback,
                                                      gpointer                    user_data);
void carehare_protocol_consumer_unref (CarehareProtocolConsumer *consumer);
const char *carehare_protocol_consumer_get_tag (CarehareProtocolConsumer *consumer);

/* Completes @op with G_IO_ERROR_CANCELLED at once if it is still pending;
 * the channel it used is closed and not reused. A publish can be
 * cancelled only while it is not written yet (waiting for a channel, for
 * connection.unblocked or for Channel.Flow(active=true)); after that it
 * completes with the broker's answer. Cancelling a close stops the wait
 * for Close-Ok instead: the connection finishes at once, as when the close
 * times out, and every close op completes without error. */
void     carehare_protocol_cancel (CarehareProtocol   *protocol,
                                   CarehareProtocolOp *op);

/* Negotiated values; valid after the handshake. */
guint16   carehare_protocol_get_heartbeat   (CarehareProtocol *protocol);
guint32   carehare_protocol_get_frame_max   (CarehareProtocol *protocol);
guint16   carehare_protocol_get_channel_max (CarehareProtocol *protocol);
GVariant *carehare_protocol_get_server_properties (CarehareProtocol *protocol);
gboolean  carehare_protocol_is_blocked  (CarehareProtocol *protocol);
gboolean  carehare_protocol_is_finished (CarehareProtocol *protocol);
/* The cause the connection finished with, NULL when we closed it or it is
 * not finished. */
const GError *carehare_protocol_get_finish_error (CarehareProtocol *protocol);

/* Channels currently open (pooled or busy) and operations waiting for one;
 * for tests. */
guint     carehare_protocol_get_n_open_channels (CarehareProtocol *protocol);
guint     carehare_protocol_get_n_waiting       (CarehareProtocol *protocol);

G_END_DECLS
