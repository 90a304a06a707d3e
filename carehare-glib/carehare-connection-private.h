/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-connection.h"
#include "carehare-protocol.h"

G_BEGIN_DECLS

/* For CarehareConsumer: the protocol core (NULL before the connection
 * opened), the main context everything runs on, and "write what the
 * protocol produced and re-arm the timer". */
CarehareProtocol *_carehare_connection_get_protocol (CarehareConnection *self);
GMainContext     *_carehare_connection_get_context  (CarehareConnection *self);
void              _carehare_connection_update       (CarehareConnection *self);
/* FALSE, with a critical, when called from a thread or main context other
 * than the one @self was created on: the caller then does nothing. */
gboolean          _carehare_connection_check_context (CarehareConnection *self);

/* For the operations (carehare-connection-ops.c): a task runs one
 * protocol operation, and is completed by it. */
typedef struct {
  CarehareProtocolOp *op;        /* while pending */
  gboolean done;
  GCancellable *cancellable;     /* owned */
  gulong cancelled_id;
  GObject *object;               /* owned, nullable: what the operation made (a consumer) */
  char *queue;                   /* declare-ok */
  guint message_count;
  guint consumer_count;
} RpcData;

/* Gives @protocol the op for @task (whose data is an RpcData), passing
 * the task as the op's callback data: the op's callback completes it and
 * drops that reference. Returns the op, which a cancellation of the task
 * cancels, or NULL if the operation watches its cancellable itself. */
typedef CarehareProtocolOp *(*CarehareConnectionStartFunc) (CarehareProtocol *protocol,
                                                            GTask            *task,
                                                            gpointer          start_data);

void     _carehare_connection_start_op    (CarehareConnection          *self,
                                           gpointer                     source_tag,
                                           gboolean                     check_cancellable,
                                           CarehareConnectionStartFunc  start,
                                           gpointer                     start_data,
                                           GCancellable                *cancellable,
                                           GAsyncReadyCallback          callback,
                                           gpointer                     user_data);
/* The protocol completed the op of @data's task: no cancelling it now. */
void     _carehare_connection_rpc_data_done (RpcData                  *data);
/* The op callback of RPCs and publishes. */
void     _carehare_connection_rpc_done_cb (CarehareProtocolOp          *op,
                                           const CarehareMethod        *reply,
                                           const GError                *error,
                                           gpointer                     user_data);
RpcData *_carehare_connection_finish_rpc  (CarehareConnection          *self,
                                           GAsyncResult                *result,
                                           gpointer                     source_tag,
                                           GError                     **error);

G_END_DECLS
