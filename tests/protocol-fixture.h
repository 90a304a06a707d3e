/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fake AMQP server for the byte-level tests of the sans-I/O connection
 * state machine (test-protocol.c, test-protocol-content.c).
 *
 * The server encodes its frames with the wire codec and feeds them to
 * carehare_protocol_receive(); what the client writes is taken with
 * carehare_protocol_take_output() and decoded again, so a test asserts the
 * exact methods, channels and arguments that would cross the socket. Time
 * is a number the test advances by hand.
 */
#pragma once

#include <gio/gio.h>

#include "carehare-error-private.h"
#include "carehare-protocol.h"

G_BEGIN_DECLS

#define SEC G_GINT64_CONSTANT (1000000)
#define MSEC G_GINT64_CONSTANT (1000)

typedef struct _Fixture Fixture;
typedef struct _Completion Completion;

/* What one operation's callback saw. */
struct _Completion {
  Fixture *f;
  CarehareProtocolOp *op;   /* NULL once completed */
  guint n_calls;
  guint seq;                /* completion order, from 1 */
  GError *error;
  guint32 reply_id;         /* 0 when completed with an error */
  char *queue;              /* queue.declare-ok */
  guint32 message_count;
  guint32 consumer_count;
  char *consumer_tag;       /* basic.consume-ok */
  /* Re-entrancy: the callback starts an rpc and records it here. */
  gboolean chain;
  Completion *chained;
};

struct _Fixture {
  CarehareProtocolConfig config;
  CarehareProtocol *p;
  gint64 now;
  gboolean split;           /* feed input one byte at a time */
  GPtrArray *completions;   /* owned Completion * */
  guint next_seq;
  Completion *handshake;

  guint n_finished;
  GError *finish_error;
  guint n_blocked_changed;
  gboolean blocked;
  char *blocked_reason;

  GByteArray *transcript;   /* everything the client wrote */

  /* Test-owned data that protocol callbacks may still use while the
   * protocol is freed: released after it, in teardown. */
  GPtrArray *owned;
};

/* One frame the client sent. */
typedef struct {
  guint8 type;
  guint16 channel;
  CarehareMethod method;    /* METHOD frames: owned */
  GBytes *payload;          /* HEADER and BODY frames: the payload */
} Sent;

extern const guint8 heartbeat_frame[8];
extern const guint8 protocol_header[8];

/* completions */
Completion *completion_new (Fixture *f);
void        op_done_cb     (CarehareProtocolOp   *op,
                            const CarehareMethod *reply,
                            const GError         *error,
                            gpointer              user_data);
void        assert_ok               (Completion *c);
void        assert_failed           (Completion *c,
                                     GQuark      domain,
                                     gint        code);
void        assert_pending          (Completion *c);
void        assert_message_contains (const GError *error,
                                     const char   *needle);

/* fixture */
void              fixture_setup    (Fixture       *f,
                                    gconstpointer  data);
void              fixture_teardown (Fixture       *f,
                                    gconstpointer  data);
CarehareProtocol *protocol_new     (Fixture *f);
/* @data is destroyed in teardown, after the protocol. */
void              fixture_own      (Fixture        *f,
                                    gpointer        data,
                                    GDestroyNotify  destroy);

/* what the client sent */
GBytes               *take_bytes       (Fixture *f);
GPtrArray            *decode_frames    (const guint8 *data,
                                        gsize         size);
GPtrArray            *take_sent        (Fixture *f);
const CarehareMethod *sent_method      (GPtrArray *sent,
                                        guint      i,
                                        guint16    channel,
                                        guint32    id);
void                  assert_no_output (Fixture *f);

/* the fake server */
gboolean feed                    (Fixture      *f,
                                  const guint8 *data,
                                  gsize         size);
void     server_encode           (GByteArray           *buf,
                                  guint16               channel,
                                  const CarehareMethod *method);
gboolean server_method           (Fixture              *f,
                                  guint16               channel,
                                  const CarehareMethod *method);
GVariant *server_properties      (void);
gboolean server_start_full       (Fixture    *f,
                                  guint8      major,
                                  guint8      minor,
                                  const char *mechanisms);
gboolean server_start            (Fixture *f);
gboolean server_tune             (Fixture *f,
                                  guint16  channel_max,
                                  guint32  frame_max,
                                  guint16  heartbeat);
gboolean server_open_ok          (Fixture *f);
void     encode_close            (GByteArray *buf,
                                  guint16     reply_code,
                                  const char *reply_text);
gboolean server_close            (Fixture    *f,
                                  guint16     reply_code,
                                  const char *reply_text);
gboolean server_close_ok         (Fixture *f);
void     encode_channel_close    (GByteArray *buf,
                                  guint16     channel,
                                  guint16     reply_code,
                                  const char *reply_text,
                                  guint32     method_id);
gboolean server_channel_close    (Fixture    *f,
                                  guint16     channel,
                                  guint16     reply_code,
                                  const char *reply_text);
gboolean server_channel_close_ok (Fixture *f,
                                  guint16  channel);
void     encode_declare_ok       (GByteArray *buf,
                                  guint16     channel,
                                  const char *queue,
                                  guint32     message_count,
                                  guint32     consumer_count);
gboolean server_declare_ok       (Fixture    *f,
                                  guint16     channel,
                                  const char *queue);
gboolean server_heartbeat        (Fixture *f);

/* connecting */
void assert_bytes    (GBytes       *bytes,
                      const guint8 *expected,
                      gsize         expected_size);
void start           (Fixture *f);
void handshake       (Fixture *f,
                      guint16  channel_max,
                      guint32  frame_max,
                      guint16  heartbeat);
void connect_default (Fixture *f);

/* operations */
Completion *rpc_start   (Fixture              *f,
                         const CarehareMethod *request,
                         guint32               reply_id);
Completion *rpc_declare (Fixture    *f,
                         const char *queue);
Completion *close_start (Fixture *f);

G_END_DECLS

/* Every g_assert_error() also checks carehare_error_is_transient(). */
#include "transient-check.h"
