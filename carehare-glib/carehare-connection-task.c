/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tasks of CarehareConnection's operations: each _async call of
 * carehare-connection-ops.c becomes one GTask, started here on the
 * connection's context (at once from its own thread, queued through the
 * mailbox from another), watched for cancellation, and completed by the
 * protocol op's callback. Uses only the connection's private API
 * (carehare-connection-private.h); the connection never calls in here.
 */
#include "carehare-connection-private.h"

#include "carehare-error.h"
#include "carehare-protocol.h"

static void
rpc_data_free (RpcData *data)
{
  g_clear_object (&data->cancellable);
  g_clear_object (&data->object);
  g_free (data->queue);
  g_free (data);
}

void
_carehare_connection_rpc_data_done (RpcData *data)
{
  data->op = NULL;
  data->done = TRUE;
  if (data->cancelled_id != 0)
    {
      g_cancellable_disconnect (data->cancellable, data->cancelled_id);
      data->cancelled_id = 0;
    }
}

void
_carehare_connection_rpc_done_cb (CarehareProtocolOp   *op,
                                  const CarehareMethod *reply,
                                  const GError         *error,
                                  gpointer              user_data)
{
  GTask *task = user_data;
  RpcData *data = g_task_get_task_data (task);

  _carehare_connection_rpc_data_done (data);

  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else if (reply == NULL)
    g_task_return_boolean (task, TRUE);  /* a publish: acked */
  else
    {
      switch (reply->id)
        {
        case CAREHARE_METHOD_QUEUE_DECLARE_OK:
          data->queue = g_strdup (reply->queue_declare_ok.queue);
          data->message_count = reply->queue_declare_ok.message_count;
          data->consumer_count = reply->queue_declare_ok.consumer_count;
          break;
        case CAREHARE_METHOD_QUEUE_DELETE_OK:
          data->message_count = reply->queue_delete_ok.message_count;
          break;
        case CAREHARE_METHOD_QUEUE_PURGE_OK:
          data->message_count = reply->queue_purge_ok.message_count;
          break;
        default:
          break;
        }
      g_task_return_boolean (task, TRUE);
    }
  g_object_unref (task);
}

static void
rpc_cancel_run (CarehareConnection *self,
                gpointer            user_data)
{
  GTask *task = user_data;
  RpcData *data = g_task_get_task_data (task);
  CarehareProtocol *protocol = _carehare_connection_get_protocol (self);

  if (data->op != NULL && protocol != NULL)
    {
      carehare_protocol_cancel (protocol, data->op);
      _carehare_connection_update (self);
    }
}

static void
rpc_cancelled_cb (GCancellable *cancellable,
                  gpointer      user_data)
{
  GTask *task = user_data;

  /* May run in any thread, and inside the cancellable's lock: defer the
   * work to our context. */
  _carehare_connection_run_later (g_task_get_source_object (task), rpc_cancel_run,
                                  g_object_ref (task), g_object_unref);
}

/* After a protocol op was started for @task (whose data is an RpcData):
 * remember it for cancellation unless it already completed (or there is
 * none: the operation handles its cancellable itself). */
static void
watch_op (CarehareConnection *self,
          GTask              *task,
          CarehareProtocolOp *op)
{
  RpcData *data = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (!data->done && op != NULL)
    {
      data->op = op;
      if (cancellable != NULL)
        {
          data->cancellable = g_object_ref (cancellable);
          data->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (rpc_cancelled_cb),
                                                      g_object_ref (task), g_object_unref);
        }
    }
  _carehare_connection_update (self);
}

/* A task for an operation, or NULL when it already failed (the connection
 * never opened, or the cancellable was cancelled). */
static GTask *
op_task_new (CarehareConnection  *self,
             gpointer             source_tag,
             GCancellable        *cancellable,
             GAsyncReadyCallback  callback,
             gpointer             user_data)
{
  GTask *task;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, source_tag);
  g_task_set_task_data (task, g_new0 (RpcData, 1), (GDestroyNotify) rpc_data_free);
  /* As in GIO, the task holds the connection until it has completed. */
  return task;
}

typedef struct {
  GTask *task;                   /* the reference the protocol op will hold */
  CarehareConnectionStartFunc start;
  gpointer start_data;
  GDestroyNotify free_data;      /* a queued copy's */
} StartOp;

static void
start_op_free (gpointer data)
{
  StartOp *start = data;

  start->free_data (start->start_data);
  g_free (start);
}

/* With the context held: the op, or the task's failure when the
 * connection never opened or the cancellable was cancelled. */
static void
start_op_run (CarehareConnection *self,
              gpointer            user_data)
{
  StartOp *start = user_data;
  GTask *task = start->task;
  CarehareProtocol *protocol = _carehare_connection_get_protocol (self);
  CarehareProtocolOp *op;

  if (protocol == NULL)
    {
      g_task_return_new_error (task, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                               "Connection closed: it was never opened, or was destroyed");
      g_object_unref (task);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }
  /* The protocol holds the task's reference until it completes the op,
   * which may happen before this returns (connection already closed). */
  op = start->start (protocol, task, start->start_data);
  watch_op (self, task, op);
}

/* The one way an operation starts: a task for it, then @start, which
 * gives the protocol the op whose callback completes the task. As in GIO,
 * the task holds the connection until it has completed; and the
 * connection is held while @start runs, since writing may find the socket
 * dead: the operations pending before this one complete during the call,
 * and their callbacks may drop the program's last reference. From a thread
 * that cannot run the connection's context, the start is queued with a
 * copy of @start_data and never waited for. */
void
_carehare_connection_start_op (CarehareConnection          *self,
                               gpointer                     source_tag,
                               gboolean                     check_cancellable,
                               CarehareConnectionStartFunc  start,
                               gpointer                     start_data,
                               GBoxedCopyFunc               copy,
                               GDestroyNotify               free_data,
                               GCancellable                *cancellable,
                               GAsyncReadyCallback          callback,
                               gpointer                     user_data)
{
  g_autoptr(CarehareConnection) keep = NULL;
  StartOp op = { NULL, start, start_data, NULL };
  StartOp *queued;

  keep = g_object_ref (self);
  /* Made on the calling thread: its callback runs on the caller's
   * thread-default main context, whichever thread runs the op. */
  op.task = op_task_new (self, source_tag, cancellable, callback, user_data);
  g_task_set_check_cancellable (op.task, check_cancellable);
  if (_carehare_connection_run_here (self, start_op_run, &op))
    return;
  /* Another thread runs the context: queued, and not waited for. */
  queued = g_new (StartOp, 1);
  *queued = op;
  queued->start_data = copy (start_data);
  queued->free_data = free_data;
  _carehare_connection_run_later (self, start_op_run, queued, start_op_free);
}

RpcData *
_carehare_connection_finish_rpc (CarehareConnection  *self,
                                 GAsyncResult        *result,
                                 gpointer             source_tag,
                                 GError             **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, NULL);

  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  return g_task_get_task_data (G_TASK (result));
}
