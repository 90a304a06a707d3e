/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-connection.h"
#include "carehare-mailbox-private.h"
#include "carehare-protocol.h"
#include "carehare-transport-private.h"

G_BEGIN_DECLS

/* For CarehareConsumer and the connection's other files: the protocol
 * core (NULL before the connection opened), the socket, the main context
 * everything runs on, and "write what the protocol produced and re-arm
 * the timer". */
CarehareProtocol  *_carehare_connection_get_protocol  (CarehareConnection *self);
CarehareTransport *_carehare_connection_get_transport (CarehareConnection *self);
GMainContext      *_carehare_connection_get_context   (CarehareConnection *self);
void               _carehare_connection_update        (CarehareConnection *self);

/* Calls from any thread. The connection's state (the protocol core, the
 * transport, its consumers) is touched only by a thread that holds its main
 * context (g_main_context_acquire()): the one iterating it, or any thread
 * that can acquire it because nobody iterates it. run() calls @func (@self,
 * @data) at once when this thread can acquire the context, after the calls
 * queued before it; otherwise it queues the call for the thread iterating
 * the context (one lock, one wake-up per batch) and waits until that thread
 * ran it, so @data may point to the caller's stack. run_later() only queues
 * (a cancellation, which may come from inside a cancellable's handler):
 * @destroy frees @data once the call ran. */
typedef void (*CarehareConnectionRunFunc) (CarehareConnection *self,
                                           gpointer            data);
void              _carehare_connection_run       (CarehareConnection        *self,
                                                  CarehareConnectionRunFunc  func,
                                                  gpointer                   data);
/* run() for a call nobody waits for: when another thread holds the
 * context, queues @func with a copy of @data (@copy), freed by
 * @free_data, and returns at once. */
void              _carehare_connection_run_nowait (CarehareConnection        *self,
                                                   CarehareConnectionRunFunc  func,
                                                   gpointer                   data,
                                                   GBoxedCopyFunc             copy,
                                                   GDestroyNotify             free_data);
void              _carehare_connection_run_later (CarehareConnection        *self,
                                                  CarehareConnectionRunFunc  func,
                                                  gpointer                   data,
                                                  GDestroyNotify             destroy);
/* For dispose: when this thread cannot hold @self's context (another
 * thread runs it), resurrects @object and hands its last reference to that
 * thread, whose unref disposes it there; the caller's dispose then returns
 * at once (TRUE). */
gboolean          _carehare_connection_dispose_elsewhere (CarehareConnection *self,
                                                          GObject            *object);

/* The blocking twins (carehare-connection-sync.c): calls @start (@start_data,
 * @cancellable, callback, user_data) and waits for its callback, iterating
 * the connection's context when this thread can acquire it; a blocking call
 * from inside a dispatch of the context this thread owns is refused with a
 * critical and G_IO_ERROR_WOULD_BLOCK. Returns the result (transfer full),
 * or NULL with @error set. */
typedef void (*CarehareAsyncStartFunc) (gpointer             start_data,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data);
/* For blocking calls whose work the thread running the context does: sets
 * *@done (if not NULL) and wakes the threads in wait_until(), which returns
 * once *@done is set, running the connection's context itself whenever
 * nobody else does. */
void              _carehare_connection_signal     (CarehareConnection *self,
                                                   int                *done);
void              _carehare_connection_wait_until (CarehareConnection *self,
                                                   int                *done);
gboolean          _carehare_connection_initable_init (GInitable     *initable,
                                                      GCancellable  *cancellable,
                                                      GError       **error);
GAsyncResult     *_carehare_connection_wait      (CarehareConnection     *self,
                                                  CarehareAsyncStartFunc  start,
                                                  gpointer                start_data,
                                                  GCancellable           *cancellable,
                                                  GError                **error);

/* Runs @func at once if the calling thread may run the connection's
 * context (its owner, or nobody runs it); FALSE otherwise, doing nothing. */
gboolean          _carehare_connection_run_here   (CarehareConnection        *self,
                                                   CarehareConnectionRunFunc  func,
                                                   gpointer                   data);

/* For the operations (carehare-connection-ops.c), in
 * carehare-connection-task.c: a task runs one protocol operation, and is
 * completed by it. */
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

/* Starts an operation as a new task, at once from the thread that runs
 * the connection's context; from another thread the call is queued with a
 * copy of @start_data (@copy), freed by @free_data once started, and this
 * returns at once, never waiting for that thread. */
void     _carehare_connection_start_op    (CarehareConnection          *self,
                                           gpointer                     source_tag,
                                           gboolean                     check_cancellable,
                                           CarehareConnectionStartFunc  start,
                                           gpointer                     start_data,
                                           GBoxedCopyFunc               copy,
                                           GDestroyNotify               free_data,
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

/* A publish's arguments (carehare-connection-ops.c), for publish_async(),
 * call_async() and publish_tracked(): borrowed from the caller, or a copy
 * (copy/free) for a call queued for the thread running the context, which
 * the caller does not wait for, so nothing may stay borrowed. */
typedef struct {
  const char *exchange;
  const char *routing_key;
  GBytes *body;
  CarehareBasicProperties basic;  /* borrowed from properties */
  gboolean mandatory;
  CarehareProperties *properties; /* nullable; owned by a copy */
  guint64 id;                     /* publish_tracked()'s */
} CarehareConnectionPublish;

gpointer _carehare_connection_publish_copy (gpointer data);
void     _carehare_connection_publish_free (gpointer data);

/* Tracked publishes (carehare-connection-tracked.c): their state, made in
 * init and freed in finalize; the signals, registered from class_init;
 * receiving() brackets the protocol's handling of received bytes, whose
 * confirms are announced when it ends (returns @more); drop() forgets
 * everything in dispose, announcing nothing. */
typedef struct _CarehareTracked CarehareTracked;

CarehareTracked *_carehare_tracked_new                     (void);
void             _carehare_tracked_free                    (CarehareTracked    *tracked);
CarehareTracked *_carehare_connection_get_tracked          (CarehareConnection *self);
void             _carehare_connection_tracked_class_init   (GObjectClass       *klass);
void             _carehare_connection_tracked_enter        (CarehareConnection *self);
gboolean         _carehare_connection_tracked_leave        (CarehareConnection *self,
                                                            gboolean            more);
void             _carehare_connection_tracked_drop         (CarehareConnection *self);

G_END_DECLS
