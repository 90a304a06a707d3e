/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareSession: the topology it records and declares again on every
 * connection.
 */
#include "carehare-session-private.h"

void
_carehare_session_step_free (Step *step)
{
  g_free (step->name);
  g_free (step->other);
  g_free (step->routing_key);
  g_clear_pointer (&step->arguments, g_variant_unref);
  g_free (step);
}

static void
step_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Attempt *attempt = user_data;
  CarehareConnection *connection = CAREHARE_CONNECTION (source);
  Step *step;
  g_autoptr(GError) error = NULL;
  gboolean ok;

  if (!_carehare_session_attempt_is_current (attempt))
    {
      g_autofree char *ignored = NULL;

      if (g_task_get_source_tag (G_TASK (result)) == carehare_connection_queue_declare_async)
        ignored = carehare_connection_queue_declare_finish (connection, result, NULL, NULL, NULL);
      _carehare_session_attempt_unref (attempt);
      return;
    }
  step = g_ptr_array_index (attempt->session->topology, attempt->next_step);
  switch (step->kind)
    {
    case STEP_DECLARE_QUEUE:
      {
        g_autofree char *name = carehare_connection_queue_declare_finish (connection, result,
                                                                          NULL, NULL, &error);
        ok = name != NULL;
        break;
      }
    case STEP_DECLARE_EXCHANGE:
      ok = carehare_connection_exchange_declare_finish (connection, result, &error);
      break;
    case STEP_BIND_QUEUE:
      ok = carehare_connection_queue_bind_finish (connection, result, &error);
      break;
    case STEP_BIND_EXCHANGE:
    default:
      ok = carehare_connection_exchange_bind_finish (connection, result, &error);
      break;
    }
  if (!ok)
    {
      g_prefix_error (&error, "Restoring the topology: ");
      _carehare_session_attempt_failed (attempt, g_steal_pointer (&error));
      _carehare_session_attempt_unref (attempt);
      return;
    }
  attempt->next_step++;
  _carehare_session_run_step (attempt);
  _carehare_session_attempt_unref (attempt);
}

void
_carehare_session_run_step (Attempt *attempt)
{
  CarehareSession *self = attempt->session;
  CarehareConnection *connection = attempt->connection;
  Step *step;

  if (attempt->next_step >= self->topology->len)
    {
      _carehare_session_start_consumers (attempt);
      return;
    }
  step = g_ptr_array_index (self->topology, attempt->next_step);
  switch (step->kind)
    {
    case STEP_DECLARE_QUEUE:
      carehare_connection_queue_declare_async (connection, step->name, step->flags,
                                               step->arguments, attempt->cancellable,
                                               step_done_cb,
                                               _carehare_session_attempt_ref (attempt));
      break;
    case STEP_DECLARE_EXCHANGE:
      carehare_connection_exchange_declare_async (connection, step->name, step->other,
                                                  step->flags, step->arguments,
                                                  attempt->cancellable, step_done_cb,
                                                  _carehare_session_attempt_ref (attempt));
      break;
    case STEP_BIND_QUEUE:
      carehare_connection_queue_bind_async (connection, step->name, step->other,
                                            step->routing_key, step->arguments,
                                            attempt->cancellable, step_done_cb,
                                            _carehare_session_attempt_ref (attempt));
      break;
    case STEP_BIND_EXCHANGE:
    default:
      carehare_connection_exchange_bind_async (connection, step->name, step->other,
                                               step->routing_key, step->arguments,
                                               attempt->cancellable, step_done_cb,
                                               _carehare_session_attempt_ref (attempt));
      break;
    }
}

/* On the session's context: @data, a step, is the topology's now. */
static void
add_step_run (CarehareSession *self,
              gpointer         data)
{
  g_ptr_array_add (self->topology, data);
}

/* Records a step, with copies of its arguments made on the calling
 * thread: queued, in order with this thread's other calls, when another
 * thread runs the session's context. */
static void
add_step (CarehareSession *self,
          StepKind         kind,
          const char      *name,
          const char      *other,
          const char      *routing_key,
          guint            flags,
          GVariant        *arguments)
{
  Step *step = g_new0 (Step, 1);

  step->kind = kind;
  step->name = g_strdup (name);
  step->other = g_strdup (other);
  step->routing_key = g_strdup (routing_key);
  step->flags = flags;
  step->arguments = arguments != NULL ? g_variant_ref_sink (arguments) : NULL;
  _carehare_session_run_nowait (self, add_step_run, step, NULL);
}

/**
 * carehare_session_declare_queue:
 * @self: a session
 * @name: the queue's name; not empty: server-named queues are not
 *   supported (their name would change on every connection)
 * @flags: as for [method@Carehare.Connection.queue_declare_async]
 * @arguments: (nullable): an `a{sv}` of queue arguments (`x-queue-type`...);
 *   a floating reference is sunk
 *
 * Records a queue to declare on every new connection, in order with the
 * other declarations, before any consumer starts. Does no I/O: a queue
 * recorded while connected is declared from the next connection on. A
 * declaration the broker refuses (406 PRECONDITION_FAILED for arguments
 * that conflict with the existing queue's) fails the session for good.
 *
 * May be called from any thread, and never waits: from a thread other
 * than the one running the session's main context, a copy of the
 * arguments is queued for that thread, in order with the calls this
 * thread made before (the declarations and bindings of one thread are
 * recorded in the order it made them).
 */
void
carehare_session_declare_queue (CarehareSession    *self,
                                const char         *name,
                                CarehareQueueFlags  flags,
                                GVariant           *arguments)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (name != NULL && *name != '\0');
  g_return_if_fail (arguments == NULL ||
                    g_variant_is_of_type (arguments, G_VARIANT_TYPE_VARDICT));

  add_step (self, STEP_DECLARE_QUEUE, name, NULL, NULL, flags, arguments);
}

/**
 * carehare_session_declare_exchange:
 * @self: a session
 * @name: the exchange's name
 * @type: its type (`direct`, `fanout`, `topic`, `headers`...)
 * @flags: as for [method@Carehare.Connection.exchange_declare_async]
 * @arguments: (nullable): an `a{sv}` of exchange arguments; a floating
 *   reference is sunk
 *
 * Records an exchange to declare on every new connection, as
 * [method@Carehare.Session.declare_queue] does for a queue. May be called
 * from any thread, as that one may.
 */
void
carehare_session_declare_exchange (CarehareSession       *self,
                                   const char            *name,
                                   const char            *type,
                                   CarehareExchangeFlags  flags,
                                   GVariant              *arguments)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (name != NULL && *name != '\0');
  g_return_if_fail (type != NULL);
  g_return_if_fail (arguments == NULL ||
                    g_variant_is_of_type (arguments, G_VARIANT_TYPE_VARDICT));

  add_step (self, STEP_DECLARE_EXCHANGE, name, type, NULL, flags, arguments);
}

/**
 * carehare_session_bind_queue:
 * @self: a session
 * @queue: the queue
 * @exchange: the exchange it gets messages from
 * @routing_key: the binding key
 * @arguments: (nullable): an `a{sv}` of binding arguments; a floating
 *   reference is sunk
 *
 * Records a queue binding to make on every new connection, in order with
 * the declarations. May be called from any thread, as
 * [method@Carehare.Session.declare_queue] may.
 */
void
carehare_session_bind_queue (CarehareSession *self,
                             const char      *queue,
                             const char      *exchange,
                             const char      *routing_key,
                             GVariant        *arguments)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (queue != NULL && *queue != '\0');
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (arguments == NULL ||
                    g_variant_is_of_type (arguments, G_VARIANT_TYPE_VARDICT));

  add_step (self, STEP_BIND_QUEUE, queue, exchange, routing_key, 0, arguments);
}

/**
 * carehare_session_bind_exchange:
 * @self: a session
 * @destination: the exchange that gets the messages
 * @source: the exchange they come from
 * @routing_key: the binding key
 * @arguments: (nullable): an `a{sv}` of binding arguments; a floating
 *   reference is sunk
 *
 * Records an exchange-to-exchange binding to make on every new
 * connection, in order with the declarations. May be called from any
 * thread, as [method@Carehare.Session.declare_queue] may.
 */
void
carehare_session_bind_exchange (CarehareSession *self,
                                const char      *destination,
                                const char      *source,
                                const char      *routing_key,
                                GVariant        *arguments)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (destination != NULL);
  g_return_if_fail (source != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (arguments == NULL ||
                    g_variant_is_of_type (arguments, G_VARIANT_TYPE_VARDICT));

  add_step (self, STEP_BIND_EXCHANGE, destination, source, routing_key, 0, arguments);
}
