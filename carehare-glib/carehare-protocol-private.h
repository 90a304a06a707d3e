/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The protocol core's internals, shared by its files: carehare-protocol.c
 * (connection state, channel table, dispatch, output and time) and
 * carehare-protocol-handshake.c, carehare-protocol-rpc.c,
 * carehare-protocol-publish.c, carehare-protocol-consume.c and
 * carehare-protocol-call.c. The
 * functions below cross from one file to another; they are linked into the
 * library hidden, and only the unit tests' static archive sees them.
 */

#include "carehare-protocol.h"

#include "carehare-error-private.h"

G_BEGIN_DECLS

typedef enum {
  STATE_INITIAL,
  STATE_AWAIT_START,
  STATE_AWAIT_TUNE,
  STATE_AWAIT_OPEN_OK,
  STATE_OPEN,
  STATE_CLOSING,
  STATE_FINISHED,
} State;

typedef enum {
  OP_HANDSHAKE,
  OP_RPC,
  OP_CLOSE,
  OP_PUBLISH,
  OP_CONSUME,            /* a consumer's start */
  OP_CONSUMER_CLOSE,
  OP_PUBLISHER_OPEN,     /* internal: a publisher waiting for a channel */
  OP_CALL,               /* a publish on the call channel that waits for its reply */
  OP_UPDATE_SECRET,      /* Connection.Update-Secret, answered on channel 0 */
} OpKind;

typedef struct _Publisher Publisher;

struct _CarehareProtocolOp {
  OpKind kind;
  CarehareProtocolOpCallback callback;
  gpointer user_data;
  gboolean done;           /* completion queued */
  GByteArray *frame;       /* RPC: owned encoded frame; channel patched when sent */
  guint32 reply_id;
  guint16 channel;         /* RPC: the channel it runs on, 0 while waiting */
  CarehareMethod reply;    /* owned once done, if has_reply */
  gboolean has_reply;
  GError *error;           /* owned once done */

  /* OP_PUBLISH: frame holds the method and header frames */
  Publisher *publisher;    /* also OP_PUBLISHER_OPEN */
  guint method_len;        /* where the header frame starts in frame */
  GBytes *body;            /* owned until written; a mandatory one's until confirmed */
  GBytes *header;          /* mandatory: owned content header payload, until confirmed */
  char *routing_key;       /* owned: matches basic.return to its publish */
  gboolean mandatory;
  gboolean written;
  guint64 seq;             /* delivery tag, once written */
  GError *returned;        /* owned: basic.return arrived for it */

  /* OP_CONSUME, OP_CONSUMER_CLOSE */
  CarehareProtocolConsumer *consumer;  /* not owned */

  /* OP_CALL: also the OP_PUBLISH fields above */
  char *exchange;          /* owned: matches basic.return to it (the call
                            * channel publishes to any exchange) */
  char *correlation_id;    /* owned: the key in the call channel's calls */
  gboolean own_correlation_id;  /* the caller chose it (not a fresh one) */
  GList call_link;         /* data: this op; in the call channel's pending */
  gboolean confirmed;      /* the broker acked the request */
  gboolean cancelled;      /* a stand-in for a cancelled call whose request
                            * awaits its confirm: completes silently */
  CarehareProtocolDelivery *delivery;  /* owned: the reply, until taken */
};

/* A basic.deliver or basic.return and the content frames that follow it. */
typedef struct {
  gboolean active;         /* a content method arrived */
  gboolean have_header;
  CarehareMethod method;   /* owned */
  CarehareBasicProperties props;  /* owned */
  guint64 body_size;
  guint64 received;        /* body bytes so far, buffered or skipped */
  guint8 *body;            /* owned: the body, allocated once when its header
                            * arrives (body_size bytes, see content_alloc());
                            * NULL when skipped or empty */
  gsize body_alloc;        /* bytes allocated at body */
  gboolean body_mapped;    /* body is a mapping of its own */
  GError *bad;             /* owned: the header cannot be represented, or
                            * the body is too large; the body is skipped
                            * and the message rejected */
  gboolean skip;           /* a return no publish can match: the body is
                            * skipped, not buffered */
} Content;

struct _Publisher {
  char *exchange;          /* owned; the key in publishers */
  guint16 channel;         /* 0 until it has one */
  CarehareProtocolOp open_op;  /* OP_PUBLISHER_OPEN; in waiting while it waits */
  gboolean waiting;
  guint64 next_seq;        /* delivery tag of the last publish written */
  gboolean flow_stopped;   /* the server sent Channel.Flow(active=false) */
  GQueue unwritten;        /* of CarehareProtocolOp *: waiting for a channel, unblock or flow */
  GQueue unconfirmed;      /* of CarehareProtocolOp *: written, ascending seq */
  Content content;         /* a basic.return being received */
  GQueue returns;          /* of owned Return *: received, not yet settled by an ack */
  guint64 returned_seq;    /* delivery tag of the last publish a return settled on */
  gboolean idle;           /* nothing in flight: linked in idle_publishers */
  GList idle_link;         /* data: this publisher */
  gint64 idle_since;

  /* The call channel (self->caller), not in publishers and never idle:
   * it also holds the no-ack consumer of amq.rabbitmq.reply-to. */
  gboolean call;
  GHashTable *calls;       /* correlation id -> CarehareProtocolOp * (OP_CALL) */
  GQueue pending;          /* of the same ops (call_link), oldest first */
  GHashTable *abandoned;   /* owned correlation ids the caller chose, of
                            * cancelled calls whose request went out: a
                            * reply may still come, so they stay taken
                            * until it does or the channel closes */
  char *reply_tag;         /* the reply consumer's tag, from Consume-Ok */
};

typedef enum {
  CONSUMER_WAITING,        /* for a channel */
  CONSUMER_STARTING,       /* Open, Qos, Consume sent */
  CONSUMER_ACTIVE,
  CONSUMER_CANCELLED,      /* by the server; the channel stays open while
                            * deliveries handed out are not settled */
  CONSUMER_CLOSING,        /* we sent Channel.Close */
  CONSUMER_ENDED,
} ConsumerState;

struct _CarehareProtocolConsumer {
  guint ref_count;
  ConsumerState state;
  char *queue;
  guint32 prefetch_size;
  guint16 prefetch_count;
  char *tag;               /* the one asked for, then Consume-Ok's */
  GByteArray *consume_frame;  /* Basic.Consume encoded for channel 0, until sent */
  guint16 channel;
  CarehareProtocolConsumerCallbacks callbacks;  /* cleared by the owner's unref */
  gpointer user_data;
  CarehareProtocolOp *start_op;    /* pending start, not owned */
  GPtrArray *close_ops;            /* pending closes, not owned */
  Content content;
  /* Delivery tags handed to the owner and not settled yet: owned
   * guint64 * keys, ascending. Its size is what the broker counts against
   * prefetch_count (it counts a settle only once it reads it, so never
   * less): a delivery that finds prefetch_count of them is a server fault. */
  GTree *unsettled;
  guint64 last_tag;                /* of the last basic.deliver; tags rise */
  gboolean told_closed;            /* the closed callback is queued */
};

typedef enum {
  CHANNEL_FREE = 0,
  CHANNEL_BUSY,
  CHANNEL_IDLE,
  CHANNEL_CLOSING,
} ChannelState;

typedef enum {
  CHANNEL_KIND_RPC,
  CHANNEL_KIND_PUBLISHER,
  CHANNEL_KIND_CONSUMER,
  CHANNEL_KIND_CALL,       /* the call channel: a Publisher with call set */
} ChannelKind;

typedef struct {
  ChannelState state;
  ChannelKind kind;
  CarehareProtocolOp *op;  /* BUSY RPC: the RPC running here (not owned) */
  Publisher *publisher;    /* PUBLISHER: owned by publishers; CALL: self->caller */
  CarehareProtocolConsumer *consumer;  /* CONSUMER: the protocol's ref is in consumers */
} Channel;

typedef enum {
  EVENT_OP_DONE,
  EVENT_FINISHED,
  EVENT_BLOCKED,
  EVENT_DELIVERY,
  EVENT_DELIVERY_REJECTED,
  EVENT_CONSUMER_CLOSED,
  EVENT_CHANNEL_CLOSED,
} EventKind;

typedef struct {
  EventKind kind;
  CarehareProtocolOp *op;  /* OP_DONE: owned */
  gboolean blocked;
  char *reason;                        /* BLOCKED, CHANNEL_CLOSED: owned */
  guint channel;                       /* CHANNEL_CLOSED */
  guint reply_code;                    /* CHANNEL_CLOSED */
  CarehareProtocolConsumer *consumer;  /* owned ref */
  CarehareProtocolDelivery *delivery;  /* owned */
  guint64 delivery_tag;                /* DELIVERY_REJECTED */
  GError *error;                       /* owned */
} Event;

struct _CarehareProtocol {
  State state;
  CarehareProtocolCallbacks callbacks;
  gpointer user_data;

  /* configuration (owned copies) */
  char *username;
  char *password;
  char *vhost;
  char *connection_name;
  char *product;
  char *version;
  char *platform;
  CarehareAuthMechanism mechanism;
  gint want_heartbeat;
  gint want_channel_max;
  gint64 want_frame_max;
  gint64 close_timeout_us;
  guint64 max_body_size;

  /* negotiated */
  guint16 heartbeat;
  guint32 frame_max;
  guint16 channel_max;
  GVariant *server_properties;
  gboolean blocked;

  GByteArray *in;          /* bytes received, not yet a whole frame */
  /* A body frame whose payload goes into its message's body as it
   * arrives, instead of waiting in @in for the whole frame
   * (carehare-protocol-content.c). */
  struct {
    CarehareFrame frame;   /* its type, channel, size; channel 0: none */
    guint32 left;          /* payload bytes yet to come, then the frame end */
    gboolean lost;         /* its message was dropped meanwhile (its channel
                            * is closing): the rest is discarded */
  } body_frame;
  GByteArray *out;         /* bytes to write, after segments */
  GPtrArray *segments;     /* of GBytes *: output before out (bodies are not copied) */
  gsize segments_size;     /* bytes in segments */
  gint64 last_read;
  gint64 last_write;
  gint64 missed_since;     /* last_read when the last missed heartbeat was counted */
  CarehareProtocolStats stats;
  gint64 close_deadline;

  CarehareProtocolOp *handshake;  /* pending handshake op, not owned */
  GPtrArray *close_ops;           /* pending close ops, not owned */
  GQueue secret_ops;              /* of CarehareProtocolOp * (OP_UPDATE_SECRET), not
                                   * owned, in the order sent: the server answers in
                                   * order */

  Channel *channels;       /* channel_max + 1 entries, [0] unused */
  guint n_open_channels;
  guint16 free_hint;
  GQueue idle;             /* of GUINT_TO_POINTER (channel id) */
  GQueue waiting;          /* of CarehareProtocolOp * (RPC, CONSUME, PUBLISHER_OPEN), not owned */
  GHashTable *publishers;  /* exchange -> owned Publisher * */
  Publisher *caller;       /* owned: the call channel, NULL until the first call */
  GQueue idle_publishers;  /* of Publisher * (links in them), least recently used first */
  guint n_closing;         /* channels in CHANNEL_CLOSING: ids that will be free */
  gint64 now;              /* the latest time a public call was given */
  GPtrArray *consumers;    /* the protocol's refs on live consumers */

  GError *finish_error;    /* why it finished; NULL if we closed it */

  guint depth;
  GQueue events;           /* of Event * */
  gboolean free_pending;   /* freed from a callback: freed when the outermost call returns */
};

/* carehare-protocol.c: plumbing every file uses, the channel table */
void _carehare_protocol_enter (CarehareProtocol *self);
gboolean _carehare_protocol_leave (CarehareProtocol *self);
CarehareProtocolOp *_carehare_protocol_leave_with_op (CarehareProtocol *self,
                                                      CarehareProtocolOp *op);
CarehareProtocolOp *_carehare_protocol_op_new (OpKind kind,
                                               CarehareProtocolOpCallback callback,
                                               gpointer user_data);
void _carehare_protocol_complete (CarehareProtocol *self, CarehareProtocolOp *op,
                                  CarehareMethod *reply, GError *error);
gboolean _carehare_protocol_append_method (CarehareProtocol *self, guint16 channel,
                                           const CarehareMethod *method);
void _carehare_protocol_finish (CarehareProtocol *self, GError *cause);
GError *_carehare_protocol_closed_error_for (const GError *cause);
GError *_carehare_protocol_empty_queue_name_error (const char *what);
void _carehare_protocol_fail_unexpected (CarehareProtocol *self, guint16 reply_code,
                                         guint32 method_id, const char *format,
                                         ...) G_GNUC_PRINTF (4, 5);
void _carehare_protocol_dispatch (CarehareProtocol *self, CarehareProtocolOp *op);
void _carehare_protocol_channel_available (CarehareProtocol *self, guint16 id);
void _carehare_protocol_discard_channel (CarehareProtocol *self, guint16 id, const char *why);
void _carehare_protocol_fail_starved_waiters (CarehareProtocol *self);
void _carehare_protocol_seal_out (CarehareProtocol *self);
/* Appends @segment (taken) to the output, after what out holds (sealed). */
void _carehare_protocol_add_segment (CarehareProtocol *self,
                                     GBytes           *segment);
/* carehare-protocol-handshake.c: Update-Secret's answers and end */
void _carehare_protocol_handle_update_secret_ok (CarehareProtocol *self, CarehareMethod *method);
void _carehare_protocol_fail_update_secrets (CarehareProtocol *self, const GError *error);
void _carehare_protocol_fail_bad_bytes (CarehareProtocol *self, guint16 reply_code,
                                        guint32 method_id, GError *error);
void _carehare_protocol_op_free (CarehareProtocolOp *op);

Content *_carehare_protocol_content_lookup (CarehareProtocol *self, guint16 channel,
                                            Channel **ch, gboolean *ignore);
void _carehare_protocol_handle_frame (CarehareProtocol *self, const CarehareFrame *frame);

/* carehare-protocol-content.c */
void _carehare_protocol_content_clear (Content *content);
GBytes *_carehare_protocol_content_take_body (Content *content);
gboolean _carehare_protocol_body_frame_begin (CarehareProtocol *self, const guint8 *data,
                                              gsize len);
gsize _carehare_protocol_body_frame_continue (CarehareProtocol *self, const guint8 *data,
                                              gsize len);
guint8 *_carehare_protocol_body_frame_target (CarehareProtocol *self, gsize *size);
void _carehare_protocol_body_frame_advance (CarehareProtocol *self, gsize size);
gboolean _carehare_protocol_content_begin (CarehareProtocol *self, guint16 id,
                                           Content *content, CarehareMethod *method);
void _carehare_protocol_handle_content_frame (CarehareProtocol *self, Channel *ch,
                                              Content *content, const CarehareFrame *frame);

/* carehare-protocol-handshake.c */
void _carehare_protocol_handle_start (CarehareProtocol *self, const CarehareMethod *method);
void _carehare_protocol_handle_tune (CarehareProtocol *self, const CarehareMethod *method);

/* carehare-protocol-rpc.c */
guint32 _carehare_protocol_rpc_request_id (const CarehareProtocolOp *op);
void _carehare_protocol_send_rpc (CarehareProtocol *self, guint16 channel,
                                  CarehareProtocolOp *op);
void _carehare_protocol_handle_rpc_method (CarehareProtocol *self, guint16 id,
                                           CarehareMethod *method);

/* carehare-protocol-publish.c */
void _carehare_protocol_publisher_free (Publisher *pub);
void _carehare_protocol_publisher_fail_ops (CarehareProtocol *self, Publisher *pub,
                                            GError *error);
void _carehare_protocol_publisher_flush (CarehareProtocol *self, Publisher *pub);
void _carehare_protocol_publisher_start (CarehareProtocol *self, Publisher *pub, guint16 id);
void _carehare_protocol_publisher_end (CarehareProtocol *self, Publisher *pub, GError *error);
void _carehare_protocol_publisher_update_idle (CarehareProtocol *self, Publisher *pub);
void _carehare_protocol_publisher_close_idle (CarehareProtocol *self, Publisher *pub,
                                              const char *why);
void _carehare_protocol_reclaim_for_waiters (CarehareProtocol *self);
gboolean _carehare_protocol_return_may_match (Publisher *pub, Content *content);
void _carehare_protocol_handle_return (CarehareProtocol *self, Publisher *pub,
                                       Content *content);
void _carehare_protocol_handle_publisher_method (CarehareProtocol *self, guint16 id,
                                                 Publisher *pub, CarehareMethod *method);
Publisher *_carehare_protocol_publisher_new (const char *exchange);
typedef enum {
  PUBLISH_FAILED,          /* completed with the error */
  PUBLISH_WRITTEN,         /* in the output, waiting for its confirm */
  PUBLISH_QUEUED,          /* encoded in op->frame: the caller queues it */
} PublishEncoded;
PublishEncoded _carehare_protocol_publish_encode (CarehareProtocol *self, Publisher *pub,
                                                  CarehareProtocolOp *op, const char *exchange,
                                                  const char *routing_key, GBytes *body,
                                                  const CarehareBasicProperties *properties);

/* carehare-protocol-call.c */
void _carehare_protocol_call_start (CarehareProtocol *self, Publisher *pub, guint16 id);
void _carehare_protocol_call_end (CarehareProtocol *self, GError *error);
void _carehare_protocol_call_confirmed (CarehareProtocol *self, CarehareProtocolOp *op,
                                        GError *error);
void _carehare_protocol_call_cancel (CarehareProtocol *self, CarehareProtocolOp *op);
void _carehare_protocol_call_content_done (CarehareProtocol *self, Content *content);
void _carehare_protocol_handle_call_method (CarehareProtocol *self, guint16 id,
                                            CarehareMethod *method);

/* carehare-protocol-consume.c */
void _carehare_protocol_consumer_unref_internal (CarehareProtocolConsumer *consumer);
CarehareProtocolDelivery *_carehare_protocol_delivery_new_from_content (Content *content);
void _carehare_protocol_consumer_drop_delivery (CarehareProtocol *self,
                                                CarehareProtocolConsumer *consumer,
                                                guint64 delivery_tag);
void _carehare_protocol_consumer_end (CarehareProtocol *self,
                                      CarehareProtocolConsumer *consumer, GError *error);
void _carehare_protocol_consumer_start (CarehareProtocol *self,
                                        CarehareProtocolConsumer *consumer, guint16 id);
void _carehare_protocol_consumer_reject (CarehareProtocol *self,
                                         CarehareProtocolConsumer *consumer,
                                         Content *content);
void _carehare_protocol_consumer_deliver (CarehareProtocol *self,
                                          CarehareProtocolConsumer *consumer,
                                          Content *content);
void _carehare_protocol_handle_consumer_method (CarehareProtocol *self, guint16 id,
                                                CarehareProtocolConsumer *consumer,
                                                CarehareMethod *method);

G_END_DECLS
