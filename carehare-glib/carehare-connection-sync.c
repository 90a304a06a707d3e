/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The blocking twins of the operations of CarehareConnection and
 * CarehareConsumer, as GIO gives them (g_socket_client_connect,
 * g_dbus_connection_call_sync): each runs its _async call and waits for it
 * in _carehare_connection_wait(), then returns what its _finish returns.
 * Nothing here touches the protocol.
 */
#include "carehare-connection-private.h"

#include "carehare-consumer-private.h"

/* ---- waiting ------------------------------------------------------------- */

typedef struct {
  CarehareConnection *connection; /* nullable */
  CarehareAsyncStartFunc start;
  gpointer start_data;
  GCancellable *cancellable;
  GAsyncResult *result;          /* owned, once the call completed */
  int done;                      /* atomic */
} Wait;

static void
wait_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Wait *wait = user_data;

  wait->result = g_object_ref (result);
  if (wait->connection != NULL)
    _carehare_connection_signal (wait->connection, &wait->done);
  else
    wait->done = TRUE;
}

/* In the thread running the connection's context: the call, whose
 * callback comes to that context. */
static void
start_on_context (CarehareConnection *self,
                  gpointer            user_data)
{
  Wait *wait = user_data;
  GMainContext *context = _carehare_connection_get_context (self);

  g_main_context_push_thread_default (context);
  wait->start (wait->start_data, wait->cancellable, wait_done_cb, wait);
  g_main_context_pop_thread_default (context);
}

/* Waits for the call @start makes. @self: the connection it runs on,
 * whose context the wait runs when it can; NULL for a session consumer,
 * whose calls go to @relay_context (the session's), or for a consumer whose
 * connection is gone (@relay_context NULL). */
static GAsyncResult *
wait_for (CarehareConnection     *self,
          GMainContext           *relay_context,
          CarehareAsyncStartFunc  start,
          gpointer                start_data,
          GCancellable           *cancellable,
          GError                **error)
{
  g_autoptr(GMainContext) context = NULL;
  g_autoptr(GMainContext) wait_context = NULL;
  Wait wait = { self, start, start_data, cancellable, NULL, FALSE };

  if (self != NULL)
    context = g_main_context_ref (_carehare_connection_get_context (self));
  else if (relay_context != NULL)
    context = g_main_context_ref (relay_context);
  else
    context = g_main_context_ref_thread_default ();
  /* Inside a dispatch of the context this thread runs: the call's
   * completion needs that very dispatch to return. */
  if (g_main_context_is_owner (context) && g_main_depth () > 0)
    {
      g_critical ("A blocking CarehareConnection or CarehareConsumer call (_sync) was made from "
                  "inside a callback of the main context that runs the connection: it could "
                  "never complete. Use the _async call there.");
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                           "Blocking call made from the connection's own running main context");
      return NULL;
    }

  if (g_main_context_acquire (context))
    {
      /* Nobody else runs the connection's context (a script, or its
       * owner outside a dispatch): run it here, so that its timers and
       * other work keep running. */
      g_main_context_push_thread_default (context);
      start (start_data, cancellable, wait_done_cb, &wait);
      while (!g_atomic_int_get (&wait.done))
        g_main_context_iteration (context, TRUE);
      g_main_context_pop_thread_default (context);
      g_main_context_release (context);
      /* Blocking calls of other threads waiting for it may run it now. */
      if (self != NULL)
        _carehare_connection_signal (self, NULL);
    }
  else if (self != NULL)
    {
      /* Another thread runs it: the call is handed to that thread, and
       * this one waits (taking the context over if it is let go). */
      _carehare_connection_run_later (self, start_on_context, &wait, NULL);
      _carehare_connection_wait_until (self, &wait.done);
    }
  else
    {
      /* A session consumer whose session's context another thread runs
       * (the call is queued to it), or a consumer whose connection is
       * gone (it completes at once): the callback comes to a context of
       * this wait's own. */
      wait_context = g_main_context_new ();
      g_main_context_push_thread_default (wait_context);
      start (start_data, cancellable, wait_done_cb, &wait);
      while (!wait.done)
        g_main_context_iteration (wait_context, TRUE);
      g_main_context_pop_thread_default (wait_context);
    }
  return wait.result;
}

GAsyncResult *
_carehare_connection_wait (CarehareConnection     *self,
                           CarehareAsyncStartFunc  start,
                           gpointer                start_data,
                           GCancellable           *cancellable,
                           GError                **error)
{
  return wait_for (self, NULL, start, start_data, cancellable, error);
}

/* A consumer's blocking call: on its connection, or for a session
 * consumer on the session's context. */
static GAsyncResult *
consumer_wait (CarehareConsumer       *consumer,
               CarehareAsyncStartFunc  start,
               GCancellable           *cancellable,
               GError                **error)
{
  return wait_for (_carehare_consumer_get_connection (consumer),
                   _carehare_consumer_get_relay_context (consumer), start, consumer, cancellable,
                   error);
}

/* The arguments of one call, for its start function. */
typedef struct {
  gpointer self;
  const char *s1;
  const char *s2;
  const char *s3;
  guint flags;
  GVariant *arguments;
  GBytes *body;
  CarehareProperties *properties;
  guint32 prefetch_size;
  guint16 prefetch_count;
} SyncCall;

/* Table arguments may arrive floating: sunk here, so that a call refused
 * before its _async runs does not leak them. */
static GVariant *
sink (GVariant *arguments)
{
  return arguments != NULL ? g_variant_ref_sink (arguments) : NULL;
}

/* ---- connecting and closing ---------------------------------------------- */

static void
init_start (gpointer             start_data,
            GCancellable        *cancellable,
            GAsyncReadyCallback  callback,
            gpointer             user_data)
{
  g_async_initable_init_async (start_data, G_PRIORITY_DEFAULT, cancellable, callback, user_data);
}

/* GInitable's init: the blocking AsyncInitable init. */
gboolean
_carehare_connection_initable_init (GInitable     *initable,
                                    GCancellable  *cancellable,
                                    GError       **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  result = _carehare_connection_wait (CAREHARE_CONNECTION (initable), init_start, initable,
                                      cancellable, error);
  return result != NULL &&
         g_async_initable_init_finish (G_ASYNC_INITABLE (initable), result, error);
}

/**
 * carehare_connection_new_sync:
 * @uri: the broker's URI (`amqp://...` or `amqps://...`)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Connects to a broker and waits until connected: the blocking twin of
 * [func@Carehare.Connection.new_async], failing in the same ways. The
 * connection belongs to the calling thread's thread-default main context
 * (the global default one in a program without a main loop); see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait. [func@Gio.Initable.new] does the same with construct properties.
 *
 * Returns: (transfer full): the connection, or %NULL with @error set
 */
CarehareConnection *
carehare_connection_new_sync (const char    *uri,
                              GCancellable  *cancellable,
                              GError       **error)
{
  g_return_val_if_fail (uri != NULL, NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (CAREHARE_TYPE_CONNECTION, cancellable, error, "uri", uri, NULL);
}

static void
close_start (gpointer             start_data,
             GCancellable        *cancellable,
             GAsyncReadyCallback  callback,
             gpointer             user_data)
{
  carehare_connection_close_async (start_data, cancellable, callback, user_data);
}

/**
 * carehare_connection_close_sync:
 * @self: a connection
 * @cancellable: (nullable): cancel to stop waiting for the server's
 *   Close-Ok and close the socket at once
 * @error: return location for an error
 *
 * Closes the connection and waits until its socket is closed: the
 * blocking twin of [method@Carehare.Connection.close_async]. May be called
 * from any thread; see [method@Carehare.Connection.queue_declare_sync] for
 * how blocking calls wait.
 *
 * Returns: %TRUE if we closed the connection; %FALSE with the cause if the
 *   server, the heartbeat monitor or a socket error had closed it first
 */
gboolean
carehare_connection_close_sync (CarehareConnection  *self,
                                GCancellable        *cancellable,
                                GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, close_start, self, cancellable, error);
  return result != NULL && carehare_connection_close_finish (self, result, error);
}

/* ---- queues and exchanges ------------------------------------------------ */

static void
queue_declare_start (gpointer             start_data,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_queue_declare_async (call->self, call->s1, call->flags, call->arguments,
                                           cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_declare_sync:
 * @self: a connection
 * @queue: the queue's name, or "" for a server-named queue
 * @flags: passive, durable, exclusive, auto-delete
 * @arguments: (nullable): optional arguments as `a{sv}`
 *   (a floating reference is consumed)
 * @message_count: (out) (optional): messages ready in the queue
 * @consumer_count: (out) (optional): consumers of the queue
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Declares a queue and waits for the broker's answer: the blocking twin of
 * [method@Carehare.Connection.queue_declare_async], failing in the same
 * ways.
 *
 * Like every blocking call of carehare, it may be called from any thread.
 * When the calling thread can acquire the connection's main context (a
 * program or script that runs no main loop, or the thread that owns the
 * context, outside its callbacks), it iterates that context until the call
 * completes, so that the connection's timers and its other work keep
 * running meanwhile. Otherwise another thread is running that context:
 * the call is handed to it, and the calling thread waits. Called from
 * inside a callback of the main context that runs the connection, it could
 * never complete: that is a programmer error, reported with a critical
 * warning, and the call fails at once with %G_IO_ERROR_WOULD_BLOCK.
 *
 * Returns: (transfer full): the queue's name (chosen by the server when
 *   declared as ""), or %NULL with @error set
 */
char *
carehare_connection_queue_declare_sync (CarehareConnection  *self,
                                        const char          *queue,
                                        CarehareQueueFlags   flags,
                                        GVariant            *arguments,
                                        guint               *message_count,
                                        guint               *consumer_count,
                                        GCancellable        *cancellable,
                                        GError             **error)
{
  g_autoptr(GVariant) args = sink (arguments);
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = queue, .flags = flags, .arguments = args };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (queue != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  result = _carehare_connection_wait (self, queue_declare_start, &call, cancellable, error);
  if (result == NULL)
    return NULL;
  return carehare_connection_queue_declare_finish (self, result, message_count, consumer_count,
                                                   error);
}

static void
queue_delete_start (gpointer             start_data,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_queue_delete_async (call->self, call->s1, call->flags, cancellable,
                                          callback, user_data);
}

/**
 * carehare_connection_queue_delete_sync:
 * @self: a connection
 * @queue: the queue's name
 * @flags: if-unused, if-empty
 * @message_count: (out) (optional): how many messages the queue held
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Deletes a queue and waits for the broker's answer: the blocking twin of
 * [method@Carehare.Connection.queue_delete_async]. May be called from any
 * thread; see [method@Carehare.Connection.queue_declare_sync] for how
 * blocking calls wait.
 *
 * Returns: %TRUE if the queue was deleted
 */
gboolean
carehare_connection_queue_delete_sync (CarehareConnection        *self,
                                       const char                *queue,
                                       CarehareQueueDeleteFlags   flags,
                                       guint                     *message_count,
                                       GCancellable              *cancellable,
                                       GError                   **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = queue, .flags = flags };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (queue != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, queue_delete_start, &call, cancellable, error);
  return result != NULL &&
         carehare_connection_queue_delete_finish (self, result, message_count, error);
}

static void
queue_purge_start (gpointer             start_data,
                   GCancellable        *cancellable,
                   GAsyncReadyCallback  callback,
                   gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_queue_purge_async (call->self, call->s1, cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_purge_sync:
 * @self: a connection
 * @queue: the queue's name
 * @message_count: (out) (optional): how many messages were removed
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Removes every ready message from a queue and waits for the broker's
 * answer: the blocking twin of [method@Carehare.Connection.queue_purge_async].
 * May be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE if the queue was purged
 */
gboolean
carehare_connection_queue_purge_sync (CarehareConnection  *self,
                                      const char          *queue,
                                      guint               *message_count,
                                      GCancellable        *cancellable,
                                      GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = queue };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (queue != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, queue_purge_start, &call, cancellable, error);
  return result != NULL &&
         carehare_connection_queue_purge_finish (self, result, message_count, error);
}

typedef void (*BindAsyncFunc) (CarehareConnection  *self,
                               const char          *a,
                               const char          *b,
                               const char          *routing_key,
                               GVariant            *arguments,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data);
typedef gboolean (*BooleanFinishFunc) (CarehareConnection  *self,
                                       GAsyncResult        *result,
                                       GError             **error);

typedef struct {
  SyncCall call;
  BindAsyncFunc async;
} BindCall;

static void
bind_start (gpointer             start_data,
            GCancellable        *cancellable,
            GAsyncReadyCallback  callback,
            gpointer             user_data)
{
  BindCall *bind = start_data;

  bind->async (bind->call.self, bind->call.s1, bind->call.s2, bind->call.s3,
               bind->call.arguments, cancellable, callback, user_data);
}

/* The one body of the four (un)bind twins. */
static gboolean
bind_sync (CarehareConnection  *self,
           BindAsyncFunc        async,
           BooleanFinishFunc    finish,
           const char          *a,
           const char          *b,
           const char          *routing_key,
           GVariant            *arguments,
           GCancellable        *cancellable,
           GError             **error)
{
  g_autoptr(GVariant) args = sink (arguments);
  g_autoptr(GAsyncResult) result = NULL;
  BindCall bind = { { .self = self, .s1 = a, .s2 = b, .s3 = routing_key, .arguments = args },
                    async };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (a != NULL && b != NULL && routing_key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, bind_start, &bind, cancellable, error);
  return result != NULL && finish (self, result, error);
}

/**
 * carehare_connection_queue_bind_sync:
 * @self: a connection
 * @queue: the queue's name
 * @exchange: the exchange to bind it to
 * @routing_key: the binding key
 * @arguments: (nullable): binding arguments as `a{sv}`
 *   (a floating reference is consumed)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Binds a queue to an exchange and waits for the broker's answer: the
 * blocking twin of [method@Carehare.Connection.queue_bind_async]. May be
 * called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE if the queue was bound
 */
gboolean
carehare_connection_queue_bind_sync (CarehareConnection  *self,
                                     const char          *queue,
                                     const char          *exchange,
                                     const char          *routing_key,
                                     GVariant            *arguments,
                                     GCancellable        *cancellable,
                                     GError             **error)
{
  return bind_sync (self, carehare_connection_queue_bind_async,
                    carehare_connection_queue_bind_finish, queue, exchange, routing_key,
                    arguments, cancellable, error);
}

/**
 * carehare_connection_queue_unbind_sync:
 * @self: a connection
 * @queue: the queue's name
 * @exchange: the exchange it is bound to
 * @routing_key: the binding key
 * @arguments: (nullable): the binding's arguments as `a{sv}`
 *   (a floating reference is consumed)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Removes a binding and waits for the broker's answer: the blocking twin
 * of [method@Carehare.Connection.queue_unbind_async]. May be called from
 * any thread; see [method@Carehare.Connection.queue_declare_sync] for how
 * blocking calls wait.
 *
 * Returns: %TRUE if the binding was removed
 */
gboolean
carehare_connection_queue_unbind_sync (CarehareConnection  *self,
                                       const char          *queue,
                                       const char          *exchange,
                                       const char          *routing_key,
                                       GVariant            *arguments,
                                       GCancellable        *cancellable,
                                       GError             **error)
{
  return bind_sync (self, carehare_connection_queue_unbind_async,
                    carehare_connection_queue_unbind_finish, queue, exchange, routing_key,
                    arguments, cancellable, error);
}

/**
 * carehare_connection_exchange_bind_sync:
 * @self: a connection
 * @destination: the exchange that receives the messages
 * @source: the exchange they come from
 * @routing_key: the binding key
 * @arguments: (nullable): binding arguments as `a{sv}`
 *   (a floating reference is consumed)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Binds an exchange to another and waits for the broker's answer: the
 * blocking twin of [method@Carehare.Connection.exchange_bind_async]. May
 * be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE if the exchange was bound
 */
gboolean
carehare_connection_exchange_bind_sync (CarehareConnection  *self,
                                        const char          *destination,
                                        const char          *source,
                                        const char          *routing_key,
                                        GVariant            *arguments,
                                        GCancellable        *cancellable,
                                        GError             **error)
{
  return bind_sync (self, carehare_connection_exchange_bind_async,
                    carehare_connection_exchange_bind_finish, destination, source, routing_key,
                    arguments, cancellable, error);
}

/**
 * carehare_connection_exchange_unbind_sync:
 * @self: a connection
 * @destination: the exchange that receives the messages
 * @source: the exchange they come from
 * @routing_key: the binding key
 * @arguments: (nullable): the binding's arguments as `a{sv}`
 *   (a floating reference is consumed)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Removes a binding between exchanges and waits for the broker's answer:
 * the blocking twin of [method@Carehare.Connection.exchange_unbind_async].
 * May be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE if the binding was removed
 */
gboolean
carehare_connection_exchange_unbind_sync (CarehareConnection  *self,
                                          const char          *destination,
                                          const char          *source,
                                          const char          *routing_key,
                                          GVariant            *arguments,
                                          GCancellable        *cancellable,
                                          GError             **error)
{
  return bind_sync (self, carehare_connection_exchange_unbind_async,
                    carehare_connection_exchange_unbind_finish, destination, source,
                    routing_key, arguments, cancellable, error);
}

static void
exchange_declare_start (gpointer             start_data,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_exchange_declare_async (call->self, call->s1, call->s2, call->flags,
                                              call->arguments, cancellable, callback, user_data);
}

/**
 * carehare_connection_exchange_declare_sync:
 * @self: a connection
 * @exchange: the exchange's name
 * @type: its type: "direct", "fanout", "topic", "headers"...
 * @flags: passive, durable, auto-delete, internal
 * @arguments: (nullable): optional arguments as `a{sv}`
 *   (a floating reference is consumed)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Declares an exchange and waits for the broker's answer: the blocking
 * twin of [method@Carehare.Connection.exchange_declare_async]. May be
 * called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE if the exchange was declared
 */
gboolean
carehare_connection_exchange_declare_sync (CarehareConnection     *self,
                                           const char             *exchange,
                                           const char             *type,
                                           CarehareExchangeFlags   flags,
                                           GVariant               *arguments,
                                           GCancellable           *cancellable,
                                           GError                **error)
{
  g_autoptr(GVariant) args = sink (arguments);
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = exchange, .s2 = type, .flags = flags, .arguments = args };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (exchange != NULL && type != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, exchange_declare_start, &call, cancellable, error);
  return result != NULL && carehare_connection_exchange_declare_finish (self, result, error);
}

static void
exchange_delete_start (gpointer             start_data,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_exchange_delete_async (call->self, call->s1, call->flags, cancellable,
                                             callback, user_data);
}

/**
 * carehare_connection_exchange_delete_sync:
 * @self: a connection
 * @exchange: the exchange's name
 * @flags: if-unused
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Deletes an exchange and waits for the broker's answer: the blocking twin
 * of [method@Carehare.Connection.exchange_delete_async]. May be called
 * from any thread; see [method@Carehare.Connection.queue_declare_sync] for
 * how blocking calls wait.
 *
 * Returns: %TRUE if the exchange was deleted
 */
gboolean
carehare_connection_exchange_delete_sync (CarehareConnection           *self,
                                          const char                   *exchange,
                                          CarehareExchangeDeleteFlags   flags,
                                          GCancellable                 *cancellable,
                                          GError                      **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = exchange, .flags = flags };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (exchange != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, exchange_delete_start, &call, cancellable, error);
  return result != NULL && carehare_connection_exchange_delete_finish (self, result, error);
}

/* ---- publishing, calls and consumers ------------------------------------- */

static void
publish_start (gpointer             start_data,
               GCancellable        *cancellable,
               GAsyncReadyCallback  callback,
               gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_publish_async (call->self, call->s1, call->s2, call->body,
                                     call->properties, call->flags, cancellable, callback,
                                     user_data);
}

/**
 * carehare_connection_publish_sync:
 * @self: a connection
 * @exchange: the exchange to publish to ("" for the default exchange)
 * @routing_key: the routing key (the queue's name on the default exchange)
 * @body: the message body
 * @properties: (nullable): the message's properties
 * @flags: %CAREHARE_PUBLISH_FLAGS_MANDATORY to fail unroutable messages
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Publishes a message and waits until the broker confirmed it: the
 * blocking twin of [method@Carehare.Connection.publish_async], failing in
 * the same ways. One message at a time is slow: a program that publishes
 * many messages from one thread uses the _async call and keeps a bounded
 * number in flight. May be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE if the broker confirmed the message
 */
gboolean
carehare_connection_publish_sync (CarehareConnection    *self,
                                  const char            *exchange,
                                  const char            *routing_key,
                                  GBytes                *body,
                                  CarehareProperties    *properties,
                                  CareharePublishFlags   flags,
                                  GCancellable          *cancellable,
                                  GError               **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = exchange, .s2 = routing_key, .body = body,
                    .properties = properties, .flags = flags };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (exchange != NULL && routing_key != NULL && body != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = _carehare_connection_wait (self, publish_start, &call, cancellable, error);
  return result != NULL && carehare_connection_publish_finish (self, result, error);
}

static void
call_start (gpointer             start_data,
            GCancellable        *cancellable,
            GAsyncReadyCallback  callback,
            gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_call_async (call->self, call->s1, call->s2, call->body, call->properties,
                                  call->flags, cancellable, callback, user_data);
}

/**
 * carehare_connection_call_sync:
 * @self: a connection
 * @exchange: the exchange to send the request to ("" for the default
 *   exchange)
 * @routing_key: the routing key (on the default exchange, the name of the
 *   queue the server consumes from)
 * @body: the request's body
 * @properties: (nullable): the request's properties; its correlation id is
 *   used if set, its reply-to is replaced
 * @flags: %CAREHARE_PUBLISH_FLAGS_MANDATORY to fail a request no queue
 *   takes
 * @cancellable: (nullable): a #GCancellable; a call does not time out by
 *   itself, so pass one that a timer cancels
 * @error: return location for an error
 *
 * Sends a request and waits for its reply: the blocking twin of
 * [method@Carehare.Connection.call_async], failing in the same ways. May
 * be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: (transfer full): the reply, or %NULL with @error set
 */
CarehareDelivery *
carehare_connection_call_sync (CarehareConnection    *self,
                               const char            *exchange,
                               const char            *routing_key,
                               GBytes                *body,
                               CarehareProperties    *properties,
                               CareharePublishFlags   flags,
                               GCancellable          *cancellable,
                               GError               **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = exchange, .s2 = routing_key, .body = body,
                    .properties = properties, .flags = flags };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (exchange != NULL && routing_key != NULL && body != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  result = _carehare_connection_wait (self, call_start, &call, cancellable, error);
  return result != NULL ? carehare_connection_call_finish (self, result, error) : NULL;
}

static void
acking_consumer_start (gpointer             start_data,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  SyncCall *call = start_data;

  carehare_connection_acking_consumer_async (call->self, call->s1, call->prefetch_size,
                                             call->prefetch_count, cancellable, callback,
                                             user_data);
}

/**
 * carehare_connection_acking_consumer_sync:
 * @self: a connection
 * @queue: the queue to consume from
 * @prefetch_size: the most unacknowledged bytes the broker sends (0: no
 *   limit; RabbitMQ supports only 0)
 * @prefetch_count: the most unacknowledged messages the broker sends (0:
 *   no limit)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for an error
 *
 * Starts a consumer and waits until the broker confirmed it: the blocking
 * twin of [method@Carehare.Connection.acking_consumer_async]. Its messages
 * may be taken with [method@Carehare.Consumer.next_delivery_sync] and
 * acknowledged from any thread. May be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: (transfer full): the running consumer, or %NULL with @error set
 */
CarehareConsumer *
carehare_connection_acking_consumer_sync (CarehareConnection  *self,
                                          const char          *queue,
                                          guint32              prefetch_size,
                                          guint16              prefetch_count,
                                          GCancellable        *cancellable,
                                          GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  SyncCall call = { .self = self, .s1 = queue, .prefetch_size = prefetch_size,
                    .prefetch_count = prefetch_count };

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (queue != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  result = _carehare_connection_wait (self, acking_consumer_start, &call, cancellable, error);
  return result != NULL ? carehare_connection_acking_consumer_finish (self, result, error) : NULL;
}

/* ---- consumers ----------------------------------------------------------- */

static void
next_delivery_start (gpointer             start_data,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  carehare_consumer_next_delivery_async (start_data, cancellable, callback, user_data);
}

/**
 * carehare_consumer_next_delivery_sync:
 * @self: a consumer
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread to stop waiting
 * @error: return location for an error
 *
 * Takes the next message, waiting for one if none has arrived: the
 * blocking twin of [method@Carehare.Consumer.next_delivery_async], failing
 * in the same ways. May be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: (transfer full): the message, or %NULL with @error set
 */
CarehareDelivery *
carehare_consumer_next_delivery_sync (CarehareConsumer  *self,
                                      GCancellable      *cancellable,
                                      GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  result = consumer_wait (self, next_delivery_start, cancellable, error);
  return result != NULL ? carehare_consumer_next_delivery_finish (self, result, error) : NULL;
}

static void
consumer_close_start (gpointer             start_data,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  carehare_consumer_close_async (start_data, cancellable, callback, user_data);
}

/**
 * carehare_consumer_close_sync:
 * @self: a consumer
 * @cancellable: (nullable): ignored: closing always runs to the end
 * @error: return location for an error
 *
 * Stops consuming and waits until the broker released the consumer's
 * channel: the blocking twin of [method@Carehare.Consumer.close_async].
 * May be called from any thread; see
 * [method@Carehare.Connection.queue_declare_sync] for how blocking calls
 * wait.
 *
 * Returns: %TRUE (closing a consumer does not fail), or %FALSE with @error
 *   set when called where it could never complete
 */
gboolean
carehare_consumer_close_sync (CarehareConsumer  *self,
                              GCancellable      *cancellable,
                              GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  result = consumer_wait (self, consumer_close_start, cancellable, error);
  return result != NULL && carehare_consumer_close_finish (self, result, error);
}
