/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareSession's publishing: publish_async() and what a publish goes
 * through. A publish waits in the session's queue while there is no
 * connection, is sent on the current connection once there is one
 * (_carehare_session_send_waiting_publishes(), from
 * carehare-session.c when it connects), and is reported in the order it
 * was sent; a session that fails or closes fails the waiting ones
 * (_carehare_session_fail_publishes()).
 */
#include "carehare-session-private.h"

#include "carehare-error.h"

typedef struct {
  char *exchange;                 /* owned */
  char *routing_key;              /* owned */
  GBytes *body;                   /* owned */
  CarehareProperties *properties; /* owned, nullable */
  CareharePublishFlags flags;
  gulong cancelled_id;
  gboolean done;                  /* the connection completed it */
  GError *error;                  /* owned, nullable: how, until reported */
} PublishData;

static void
publish_data_free (PublishData *data)
{
  g_free (data->exchange);
  g_free (data->routing_key);
  g_bytes_unref (data->body);
  g_clear_object (&data->properties);
  g_clear_error (&data->error);
  g_free (data);
}

/* Fails every publish waiting for a connection with @error (taken). */
void
_carehare_session_fail_publishes (CarehareSession *self,
                                  GError          *error)
{
  GTask *task;

  while ((task = g_queue_pop_head (&self->publishes)) != NULL)
    {
      PublishData *data = g_task_get_task_data (task);

      if (data->cancelled_id != 0)
        {
          g_cancellable_disconnect (g_task_get_cancellable (task), data->cancelled_id);
          data->cancelled_id = 0;
        }
      g_task_return_error (task, g_error_copy (error));
      g_object_unref (task);
    }
  g_error_free (error);
}

/* Reports the publishes the connections completed, in the order they
 * were sent: the connection's callbacks come back to this very context,
 * where GTask runs some at once and others from an idle (those that
 * complete in the main-loop turn that started them), so they may come in
 * another order, and the publishes of one thread must be confirmed in the
 * order it made them. */
static void
report_sent (CarehareSession *self)
{
  g_autoptr(CarehareSession) keep = NULL;
  GTask *task;

  /* A callback run at once may drop the program's last reference. */
  keep = g_object_ref (self);
  while ((task = g_queue_peek_head (&self->sent)) != NULL)
    {
      PublishData *data = g_task_get_task_data (task);

      if (!data->done)
        break;
      g_queue_pop_head (&self->sent);
      if (data->error != NULL)
        g_task_return_error (task, g_steal_pointer (&data->error));
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
}

static void
publish_done_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  GTask *task = user_data;  /* held by the session's sent queue */
  PublishData *data = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    data->error = NULL;
  else if (_carehare_session_error_is_connection_lost (error))
    /* Written, perhaps routed, never confirmed: whether to publish again
     * is the program's choice (at least once), never a silent resend. */
    data->error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                               "The connection was lost before the broker confirmed the "
                               "message: %s", error->message);
  else
    data->error = g_steal_pointer (&error);
  data->done = TRUE;
  report_sent (g_task_get_source_object (task));
}

/* Takes @task, out of the waiting queue. */
static void
send_publish (CarehareSession *self,
              GTask           *task)
{
  PublishData *data = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (data->cancelled_id != 0)
    {
      g_cancellable_disconnect (cancellable, data->cancelled_id);
      data->cancelled_id = 0;
    }
  g_queue_push_tail (&self->sent, task);
  carehare_connection_publish_async (self->connection, data->exchange, data->routing_key,
                                     data->body, data->properties, data->flags, cancellable,
                                     publish_done_cb, task);
}

static void
publish_cancelled_run (CarehareSession *self,
                       gpointer         user_data)
{
  GTask *task = user_data;

  if (g_queue_remove (&self->publishes, task))
    {
      PublishData *data = g_task_get_task_data (task);

      g_cancellable_disconnect (g_task_get_cancellable (task), data->cancelled_id);
      data->cancelled_id = 0;
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
      g_object_unref (task);
    }
}

static void
publish_cancelled_cb (GCancellable *cancellable,
                      gpointer      user_data)
{
  GTask *task = user_data;

  /* May run in any thread, and inside the cancellable's lock: defer to
   * the session's context (the task's is the caller's). */
  _carehare_session_run_later (g_task_get_source_object (task), publish_cancelled_run,
                               g_object_ref (task), g_object_unref);
}

/* The session is connected: every publish that waited goes out, in
 * order, while it stays connected. */
void
_carehare_session_send_waiting_publishes (CarehareSession *self)
{
  GTask *task;

  while (self->state == CAREHARE_SESSION_STATE_CONNECTED &&
         (task = g_queue_pop_head (&self->publishes)) != NULL)
    send_publish (self, task);
}

/**
 * carehare_session_publish_async:
 * @self: a session
 * @exchange: the exchange, `""` for the default exchange
 * @routing_key: the routing key
 * @body: the message body
 * @properties: (nullable): the message properties
 * @flags: %CAREHARE_PUBLISH_FLAGS_MANDATORY to fail with
 *   %CAREHARE_ERROR_UNROUTABLE when no queue gets the message
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the broker confirmed the message,
 *   or when it failed
 * @user_data: data for @callback
 *
 * Publishes a message with a publisher confirm, as
 * [method@Carehare.Connection.publish_async] does, on the session's
 * current connection. While the session is not connected (starting,
 * reconnecting, not started yet) the call waits for the next connection;
 * cancelling @cancellable stops the wait.
 *
 * If the connection is lost after the message was written but before the
 * broker confirmed it, the call fails with
 * %CAREHARE_ERROR_CONNECTION_CLOSED: the message may or may not have
 * reached the queue, and the session does not publish it again by
 * itself: whether to do so (at least once) is the program's choice. On a
 * session that failed it fails at once with
 * [property@Carehare.Session:last-error], and once the session is closed
 * with %CAREHARE_ERROR_CONNECTION_CLOSED.
 *
 * May be called from any thread, and never waits for the thread running
 * the session's main context: the task is made on the calling thread, so
 * @callback runs on the caller's thread-default main context, and the
 * rest (with a reference to @body and to @properties) is queued for the
 * session's context. The messages one thread publishes go out, and are
 * confirmed, in the order it published them.
 */
static void publish_run (CarehareSession *self,
                         gpointer         user_data);

void
carehare_session_publish_async (CarehareSession      *self,
                                const char           *exchange,
                                const char           *routing_key,
                                GBytes               *body,
                                CarehareProperties   *properties,
                                CareharePublishFlags  flags,
                                GCancellable         *cancellable,
                                GAsyncReadyCallback   callback,
                                gpointer              user_data)
{
  GTask *task;
  PublishData *data;

  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (body != NULL);
  g_return_if_fail (properties == NULL || CAREHARE_IS_PROPERTIES (properties));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  /* Made on the calling thread: its callback runs on the caller's
   * thread-default main context. */
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, carehare_session_publish_async);
  /* Once handed to a connection, the connection's cancellation rules apply. */
  g_task_set_check_cancellable (task, FALSE);
  data = g_new0 (PublishData, 1);
  data->exchange = g_strdup (exchange);
  data->routing_key = g_strdup (routing_key);
  data->body = g_bytes_ref (body);
  data->properties = properties != NULL ? g_object_ref (properties) : NULL;
  data->flags = flags;
  g_task_set_task_data (task, data, (GDestroyNotify) publish_data_free);
  /* The task's reference goes with the call. */
  _carehare_session_run_nowait (self, publish_run, task, NULL);
}

/* publish_async() on the session's context; takes @user_data, the task. */
static void
publish_run (CarehareSession *self,
             gpointer         user_data)
{
  GTask *task = user_data;
  PublishData *data = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (self->closed)
    {
      g_task_return_error (task, _carehare_session_closed_error ());
      g_object_unref (task);
      return;
    }
  if (self->state == CAREHARE_SESSION_STATE_FAILED)
    {
      g_task_return_error (task, _carehare_session_copy_last_error (self));
      g_object_unref (task);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }
  if (self->state == CAREHARE_SESSION_STATE_CONNECTED)
    {
      send_publish (self, task);
      return;
    }
  g_queue_push_tail (&self->publishes, task);
  if (cancellable != NULL)
    data->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (publish_cancelled_cb),
                                                g_object_ref (task), g_object_unref);
}

/**
 * carehare_session_publish_finish:
 * @self: a session
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Session.publish_async].
 *
 * Returns: %TRUE when the broker confirmed the message, %FALSE with @error
 *   set otherwise
 */
gboolean
carehare_session_publish_finish (CarehareSession  *self,
                                 GAsyncResult     *result,
                                 GError          **error)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        carehare_session_publish_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
