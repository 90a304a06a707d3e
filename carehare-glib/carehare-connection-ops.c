/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The operations of CarehareConnection: one _async/_finish pair per
 * operation (connect, declare, bind, delete, purge, publish, consume).
 * Each builds its method and hands it to the connection, which runs it as
 * a task (see carehare-connection.c); nothing here touches the socket.
 */
#include "carehare-connection-private.h"

#include "carehare-consumer-private.h"
#include "carehare-delivery-private.h"
#include "carehare-properties-private.h"
#include "carehare-protocol.h"
#include "carehare-uri.h"

#include <string.h>

/* ---- public API: creation ----------------------------------------------- */

/**
 * carehare_connection_new_async:
 * @uri: the broker's URI (`amqp://...` or `amqps://...`)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when connected or failed
 * @user_data: data for @callback
 *
 * Connects to a broker: TCP, TLS for `amqps://`, and the AMQP handshake.
 * Fails with %CAREHARE_ERROR_INVALID_URI for a bad URI,
 * %CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER for a refused login (403) or
 * unknown vhost (530), %G_TLS_ERROR for certificate problems,
 * %G_IO_ERROR_TIMED_OUT past the connect timeout, or the socket's
 * %G_IO_ERROR.
 */
void
carehare_connection_new_async (const char          *uri,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_return_if_fail (uri != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, cancellable,
                              callback, user_data, "uri", uri, NULL);
}

/**
 * carehare_connection_new_finish:
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [func@Carehare.Connection.new_async].
 *
 * Returns: (transfer full): the connection, or %NULL with @error set
 */
CarehareConnection *
carehare_connection_new_finish (GAsyncResult  *result,
                                GError       **error)
{
  g_autoptr(GObject) source = g_async_result_get_source_object (result);
  GObject *object;

  object = g_async_initable_new_finish (G_ASYNC_INITABLE (source), result, error);
  return object != NULL ? CAREHARE_CONNECTION (object) : NULL;
}

/**
 * carehare_connection_new_for_uris_async:
 * @uris: (array zero-terminated=1): broker URIs to try, in order
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when connected or when every URI failed
 * @user_data: data for @callback
 *
 * Connects to the first broker of @uris that completes the handshake, for
 * example the nodes of a cluster; the same as setting
 * [property@Carehare.Connection:uris]. Each attempt is bounded by its
 * URI's `connection_timeout` (or [property@Carehare.Connection:connect-timeout]).
 * When every attempt fails, the error has the domain and code of the last
 * attempt's error and its message lists every attempt's error, the last
 * one first, so that [func@Carehare.Error.get_reply_code] gives the last
 * attempt's reply code. An invalid URI is one of those failures, not a
 * reason to stop.
 */
void
carehare_connection_new_for_uris_async (const char * const  *uris,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data)
{
  g_return_if_fail (uris != NULL && uris[0] != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, cancellable,
                              callback, user_data, "uris", uris, NULL);
}

/**
 * carehare_connection_new_for_uris_finish:
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [func@Carehare.Connection.new_for_uris_async].
 *
 * Returns: (transfer full): the connection, or %NULL with @error set
 */
CarehareConnection *
carehare_connection_new_for_uris_finish (GAsyncResult  *result,
                                         GError       **error)
{
  return carehare_connection_new_finish (result, error);
}

/* ---- public API: token refresh ------------------------------------------ */

typedef struct {
  const char *new_secret;
  const char *reason;
} UpdateSecretStart;

/* Queued for the connection's thread: the strings are owned, and the
 * secret is wiped when freed. */
static gpointer
update_secret_start_copy (gpointer data)
{
  UpdateSecretStart *start = data;
  UpdateSecretStart *copy = g_new (UpdateSecretStart, 1);

  copy->new_secret = g_strdup (start->new_secret);
  copy->reason = g_strdup (start->reason);
  return copy;
}

static void
update_secret_start_free (gpointer data)
{
  UpdateSecretStart *copy = data;

  carehare_uri_secret_free ((char *) copy->new_secret);
  g_free ((char *) copy->reason);
  g_free (copy);
}

static CarehareProtocolOp *
update_secret_start (CarehareProtocol *protocol,
                     GTask            *task,
                     gpointer          start_data)
{
  UpdateSecretStart *start = start_data;

  return carehare_protocol_update_secret (protocol, start->new_secret, start->reason,
                                          _carehare_connection_rpc_done_cb, task);
}

/**
 * carehare_connection_update_secret_async:
 * @self: a connection
 * @new_secret: the new password, or a refreshed OAuth 2 token
 * @reason: why, for the broker's log (at most 255 bytes; may be empty)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the broker took the secret, or
 *   when it failed
 * @user_data: data for @callback
 *
 * Gives the broker a new secret for this open connection
 * (Connection.Update-Secret, RabbitMQ 3.8 and later), typically an OAuth 2
 * token that replaces one about to expire, so that the connection is not
 * closed when the old one does.
 *
 * The secret is copied into a buffer that is wiped once written, as the
 * password is, and is not kept: a new connection logs in with the
 * password of its URI (a [class@Carehare.Session] takes a new one with
 * [method@Carehare.Session.set_password]). RabbitMQ's internal
 * authentication backend accepts any secret here without checking it.
 * The OAuth 2 backend (`rabbitmq_auth_backend_oauth2`) refuses a token it
 * cannot verify (a bad signature, another resource server) by closing the
 * connection with 530 NOT_ALLOWED: the call then fails with
 * %CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER and the broker's reply code
 * (see [func@Carehare.Error.get_reply_code]), and
 * [signal@Carehare.Connection::closed] is emitted. RabbitMQ 3.10 takes an
 * expired but valid token here, and then refuses every operation with 403
 * ACCESS_REFUSED until a fresh one comes. A broker older than 3.8 closes
 * the connection. A secret too large for one frame fails
 * with %G_IO_ERROR_INVALID_ARGUMENT and nothing is sent.
 *
 * The request is sent at once, and cannot be recalled: a @cancellable
 * cancelled after the call has no effect, and the call completes with the
 * broker's answer. One already cancelled before the call completes it with
 * %G_IO_ERROR_CANCELLED, and nothing is sent.
 */
void
carehare_connection_update_secret_async (CarehareConnection  *self,
                                         const char          *new_secret,
                                         const char          *reason,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  UpdateSecretStart start = { new_secret, reason };

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (new_secret != NULL);
  g_return_if_fail (reason != NULL && strlen (reason) <= 255);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  /* Not GTask's check: sent at once, it completes with the broker's
   * answer whatever the cancellable says. */
  _carehare_connection_start_op (self, carehare_connection_update_secret_async, FALSE,
                                 update_secret_start, &start, update_secret_start_copy,
                                 update_secret_start_free, cancellable, callback,
                                 user_data);
}

/**
 * carehare_connection_update_secret_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.update_secret_async].
 *
 * Returns: %TRUE when the broker answered Update-Secret-Ok, %FALSE with
 *   @error set otherwise
 */
gboolean
carehare_connection_update_secret_finish (CarehareConnection  *self,
                                          GAsyncResult        *result,
                                          GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_update_secret_async,
                                          error) != NULL;
}

/* ---- public API: declare, bind, delete, purge ----------------------------- */

typedef struct {
  const CarehareMethod *method;
  guint32 reply_id;
} RpcStart;

static CarehareProtocolOp *
rpc_start (CarehareProtocol *protocol,
           GTask            *task,
           gpointer          start_data)
{
  RpcStart *rpc = start_data;

  return carehare_protocol_rpc (protocol, rpc->method, rpc->reply_id,
                                _carehare_connection_rpc_done_cb, task);
}

/* Queued for the connection's thread: the method is a deep copy. */
typedef struct {
  RpcStart rpc;                  /* first: what rpc_start() reads */
  CarehareMethod method;         /* owned */
} RpcStartCopy;

static gpointer
rpc_start_copy (gpointer data)
{
  RpcStart *rpc = data;
  RpcStartCopy *copy = g_new0 (RpcStartCopy, 1);

  carehare_method_copy (rpc->method, &copy->method);
  copy->rpc.method = &copy->method;
  copy->rpc.reply_id = rpc->reply_id;
  return copy;
}

static void
rpc_start_free (gpointer data)
{
  RpcStartCopy *copy = data;

  carehare_method_clear (&copy->method);
  g_free (copy);
}

/* Runs @method on a pooled channel for a new task. @method's pointers are
 * borrowed: it is encoded before this returns, or copied when the call is
 * queued for the thread that runs the connection's context. */
static void
start_rpc (CarehareConnection   *self,
           gpointer              source_tag,
           const CarehareMethod *method,
           guint32               reply_id,
           GCancellable         *cancellable,
           GAsyncReadyCallback   callback,
           gpointer              user_data)
{
  RpcStart rpc = { method, reply_id };

  /* Not GTask's check: a request sent completes with the broker's answer
   * whatever the cancellable says (the protocol decides, at the cancel). */
  _carehare_connection_start_op (self, source_tag, FALSE, rpc_start, &rpc, rpc_start_copy,
                                 rpc_start_free, cancellable, callback, user_data);
}

/* Table arguments may arrive floating (a GVariant built for the call). */
static GVariant *
sink_arguments (GVariant *arguments)
{
  return arguments != NULL ? g_variant_ref_sink (arguments) : NULL;
}

#define ARGUMENTS_OK(arguments) \
  ((arguments) == NULL || g_variant_is_of_type ((arguments), G_VARIANT_TYPE ("a{s*}")))

/**
 * carehare_connection_queue_declare_async:
 * @self: a connection
 * @queue: the queue's name, or "" for a server-named queue
 * @flags: passive, durable, exclusive, auto-delete
 * @arguments: (nullable): optional arguments as `a{sv}` (`x-message-ttl`,
 *   `x-max-length`, `x-overflow`, `x-queue-type`...)
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Declares a queue (Queue.Declare) on a channel of its own. A server error,
 * such as 406 PRECONDITION_FAILED for different flags or arguments or 404
 * NOT_FOUND for a passive declare of a missing queue, fails it with
 * %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER.
 */
void
carehare_connection_queue_declare_async (CarehareConnection  *self,
                                         const char          *queue,
                                         CarehareQueueFlags   flags,
                                         GVariant            *arguments,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_DECLARE };
  g_autoptr(GVariant) args = NULL;

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (queue != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  args = sink_arguments (arguments);
  m.queue_declare.queue = (char *) queue;
  m.queue_declare.passive = (flags & CAREHARE_QUEUE_FLAGS_PASSIVE) != 0;
  m.queue_declare.durable = (flags & CAREHARE_QUEUE_FLAGS_DURABLE) != 0;
  m.queue_declare.exclusive = (flags & CAREHARE_QUEUE_FLAGS_EXCLUSIVE) != 0;
  m.queue_declare.auto_delete = (flags & CAREHARE_QUEUE_FLAGS_AUTO_DELETE) != 0;
  m.queue_declare.arguments = args;
  start_rpc (self, carehare_connection_queue_declare_async, &m,
             CAREHARE_METHOD_QUEUE_DECLARE_OK, cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_declare_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @message_count: (out) (optional): messages ready in the queue
 * @consumer_count: (out) (optional): consumers of the queue
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.queue_declare_async].
 *
 * Returns: (transfer full): the queue's name (chosen by the server when
 *   declared as ""), or %NULL with @error set
 */
char *
carehare_connection_queue_declare_finish (CarehareConnection  *self,
                                          GAsyncResult        *result,
                                          guint               *message_count,
                                          guint               *consumer_count,
                                          GError             **error)
{
  RpcData *data = _carehare_connection_finish_rpc (self, result, carehare_connection_queue_declare_async, error);

  if (data == NULL)
    return NULL;
  if (message_count != NULL)
    *message_count = data->message_count;
  if (consumer_count != NULL)
    *consumer_count = data->consumer_count;
  return g_strdup (data->queue);
}

/**
 * carehare_connection_queue_delete_async:
 * @self: a connection
 * @queue: the queue's name
 * @flags: if-unused, if-empty
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Deletes a queue (Queue.Delete). With a flag whose condition does not hold
 * it fails with 406 PRECONDITION_FAILED.
 */
void
carehare_connection_queue_delete_async (CarehareConnection       *self,
                                        const char               *queue,
                                        CarehareQueueDeleteFlags  flags,
                                        GCancellable             *cancellable,
                                        GAsyncReadyCallback       callback,
                                        gpointer                  user_data)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_DELETE };

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (queue != NULL);

  m.queue_delete.queue = (char *) queue;
  m.queue_delete.if_unused = (flags & CAREHARE_QUEUE_DELETE_FLAGS_IF_UNUSED) != 0;
  m.queue_delete.if_empty = (flags & CAREHARE_QUEUE_DELETE_FLAGS_IF_EMPTY) != 0;
  start_rpc (self, carehare_connection_queue_delete_async, &m,
             CAREHARE_METHOD_QUEUE_DELETE_OK, cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_delete_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @message_count: (out) (optional): how many messages the queue held
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.queue_delete_async].
 *
 * Returns: %TRUE if the queue was deleted
 */
gboolean
carehare_connection_queue_delete_finish (CarehareConnection  *self,
                                         GAsyncResult        *result,
                                         guint               *message_count,
                                         GError             **error)
{
  RpcData *data = _carehare_connection_finish_rpc (self, result, carehare_connection_queue_delete_async, error);

  if (data == NULL)
    return FALSE;
  if (message_count != NULL)
    *message_count = data->message_count;
  return TRUE;
}

/**
 * carehare_connection_queue_purge_async:
 * @self: a connection
 * @queue: the queue's name
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Removes every ready message from a queue (Queue.Purge).
 */
void
carehare_connection_queue_purge_async (CarehareConnection  *self,
                                       const char          *queue,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_QUEUE_PURGE };

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (queue != NULL);

  m.queue_purge.queue = (char *) queue;
  start_rpc (self, carehare_connection_queue_purge_async, &m,
             CAREHARE_METHOD_QUEUE_PURGE_OK, cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_purge_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @message_count: (out) (optional): how many messages were removed
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.queue_purge_async].
 *
 * Returns: %TRUE if the queue was purged
 */
gboolean
carehare_connection_queue_purge_finish (CarehareConnection  *self,
                                        GAsyncResult        *result,
                                        guint               *message_count,
                                        GError             **error)
{
  RpcData *data = _carehare_connection_finish_rpc (self, result, carehare_connection_queue_purge_async, error);

  if (data == NULL)
    return FALSE;
  if (message_count != NULL)
    *message_count = data->message_count;
  return TRUE;
}

static void
queue_bind_common (CarehareConnection  *self,
                   gboolean             bind,
                   const char          *queue,
                   const char          *exchange,
                   const char          *routing_key,
                   GVariant            *arguments,
                   GCancellable        *cancellable,
                   GAsyncReadyCallback  callback,
                   gpointer             user_data)
{
  CarehareMethod m = { 0 };
  g_autoptr(GVariant) args = sink_arguments (arguments);

  if (bind)
    {
      m.id = CAREHARE_METHOD_QUEUE_BIND;
      m.queue_bind.queue = (char *) queue;
      m.queue_bind.exchange = (char *) exchange;
      m.queue_bind.routing_key = (char *) routing_key;
      m.queue_bind.arguments = args;
      start_rpc (self, carehare_connection_queue_bind_async, &m,
                 CAREHARE_METHOD_QUEUE_BIND_OK, cancellable, callback, user_data);
    }
  else
    {
      m.id = CAREHARE_METHOD_QUEUE_UNBIND;
      m.queue_unbind.queue = (char *) queue;
      m.queue_unbind.exchange = (char *) exchange;
      m.queue_unbind.routing_key = (char *) routing_key;
      m.queue_unbind.arguments = args;
      start_rpc (self, carehare_connection_queue_unbind_async, &m,
                 CAREHARE_METHOD_QUEUE_UNBIND_OK, cancellable, callback, user_data);
    }
}

/**
 * carehare_connection_queue_bind_async:
 * @self: a connection
 * @queue: the queue's name
 * @exchange: the exchange to bind it to
 * @routing_key: the binding key
 * @arguments: (nullable): binding arguments as `a{sv}` (for headers exchanges)
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Binds a queue to an exchange (Queue.Bind).
 */
void
carehare_connection_queue_bind_async (CarehareConnection  *self,
                                      const char          *queue,
                                      const char          *exchange,
                                      const char          *routing_key,
                                      GVariant            *arguments,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data)
{
  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (queue != NULL);
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  queue_bind_common (self, TRUE, queue, exchange, routing_key, arguments,
                     cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_bind_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.queue_bind_async].
 *
 * Returns: %TRUE if the queue was bound
 */
gboolean
carehare_connection_queue_bind_finish (CarehareConnection  *self,
                                       GAsyncResult        *result,
                                       GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_queue_bind_async, error) != NULL;
}

/**
 * carehare_connection_queue_unbind_async:
 * @self: a connection
 * @queue: the queue's name
 * @exchange: the exchange it is bound to
 * @routing_key: the binding key
 * @arguments: (nullable): the binding's arguments as `a{sv}`
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Removes a binding between a queue and an exchange (Queue.Unbind).
 */
void
carehare_connection_queue_unbind_async (CarehareConnection  *self,
                                        const char          *queue,
                                        const char          *exchange,
                                        const char          *routing_key,
                                        GVariant            *arguments,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data)
{
  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (queue != NULL);
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  queue_bind_common (self, FALSE, queue, exchange, routing_key, arguments,
                     cancellable, callback, user_data);
}

/**
 * carehare_connection_queue_unbind_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.queue_unbind_async].
 *
 * Returns: %TRUE if the binding was removed
 */
gboolean
carehare_connection_queue_unbind_finish (CarehareConnection  *self,
                                         GAsyncResult        *result,
                                         GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_queue_unbind_async, error) != NULL;
}

/**
 * carehare_connection_exchange_declare_async:
 * @self: a connection
 * @exchange: the exchange's name
 * @type: `direct`, `fanout`, `topic`, `headers` or a plugin's type
 * @flags: passive, durable, auto-delete, internal
 * @arguments: (nullable): optional arguments as `a{sv}`
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Declares an exchange (Exchange.Declare).
 */
void
carehare_connection_exchange_declare_async (CarehareConnection    *self,
                                            const char            *exchange,
                                            const char            *type,
                                            CarehareExchangeFlags  flags,
                                            GVariant              *arguments,
                                            GCancellable          *cancellable,
                                            GAsyncReadyCallback    callback,
                                            gpointer               user_data)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_EXCHANGE_DECLARE };
  g_autoptr(GVariant) args = NULL;

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (type != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  args = sink_arguments (arguments);
  m.exchange_declare.exchange = (char *) exchange;
  m.exchange_declare.type = (char *) type;
  m.exchange_declare.passive = (flags & CAREHARE_EXCHANGE_FLAGS_PASSIVE) != 0;
  m.exchange_declare.durable = (flags & CAREHARE_EXCHANGE_FLAGS_DURABLE) != 0;
  m.exchange_declare.auto_delete = (flags & CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE) != 0;
  m.exchange_declare.internal = (flags & CAREHARE_EXCHANGE_FLAGS_INTERNAL) != 0;
  m.exchange_declare.arguments = args;
  start_rpc (self, carehare_connection_exchange_declare_async, &m,
             CAREHARE_METHOD_EXCHANGE_DECLARE_OK, cancellable, callback, user_data);
}

/**
 * carehare_connection_exchange_declare_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.exchange_declare_async].
 *
 * Returns: %TRUE if the exchange exists as declared
 */
gboolean
carehare_connection_exchange_declare_finish (CarehareConnection  *self,
                                             GAsyncResult        *result,
                                             GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_exchange_declare_async, error) != NULL;
}

/**
 * carehare_connection_exchange_delete_async:
 * @self: a connection
 * @exchange: the exchange's name
 * @flags: if-unused
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Deletes an exchange (Exchange.Delete).
 */
void
carehare_connection_exchange_delete_async (CarehareConnection          *self,
                                           const char                  *exchange,
                                           CarehareExchangeDeleteFlags  flags,
                                           GCancellable                *cancellable,
                                           GAsyncReadyCallback          callback,
                                           gpointer                     user_data)
{
  CarehareMethod m = { .id = CAREHARE_METHOD_EXCHANGE_DELETE };

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (exchange != NULL);

  m.exchange_delete.exchange = (char *) exchange;
  m.exchange_delete.if_unused = (flags & CAREHARE_EXCHANGE_DELETE_FLAGS_IF_UNUSED) != 0;
  start_rpc (self, carehare_connection_exchange_delete_async, &m,
             CAREHARE_METHOD_EXCHANGE_DELETE_OK, cancellable, callback, user_data);
}

/**
 * carehare_connection_exchange_delete_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.exchange_delete_async].
 *
 * Returns: %TRUE if the exchange was deleted
 */
gboolean
carehare_connection_exchange_delete_finish (CarehareConnection  *self,
                                            GAsyncResult        *result,
                                            GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_exchange_delete_async, error) != NULL;
}

static void
exchange_bind_common (CarehareConnection  *self,
                      gboolean             bind,
                      const char          *destination,
                      const char          *source,
                      const char          *routing_key,
                      GVariant            *arguments,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  CarehareMethod m = { 0 };
  g_autoptr(GVariant) args = sink_arguments (arguments);

  if (bind)
    {
      m.id = CAREHARE_METHOD_EXCHANGE_BIND;
      m.exchange_bind.destination = (char *) destination;
      m.exchange_bind.source = (char *) source;
      m.exchange_bind.routing_key = (char *) routing_key;
      m.exchange_bind.arguments = args;
      start_rpc (self, carehare_connection_exchange_bind_async, &m,
                 CAREHARE_METHOD_EXCHANGE_BIND_OK, cancellable, callback, user_data);
    }
  else
    {
      m.id = CAREHARE_METHOD_EXCHANGE_UNBIND;
      m.exchange_unbind.destination = (char *) destination;
      m.exchange_unbind.source = (char *) source;
      m.exchange_unbind.routing_key = (char *) routing_key;
      m.exchange_unbind.arguments = args;
      start_rpc (self, carehare_connection_exchange_unbind_async, &m,
                 CAREHARE_METHOD_EXCHANGE_UNBIND_OK, cancellable, callback, user_data);
    }
}

/**
 * carehare_connection_exchange_bind_async:
 * @self: a connection
 * @destination: the exchange that receives the messages
 * @source: the exchange the messages come from
 * @routing_key: the binding key
 * @arguments: (nullable): binding arguments as `a{sv}`
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Binds an exchange to another (Exchange.Bind, a RabbitMQ extension).
 */
void
carehare_connection_exchange_bind_async (CarehareConnection  *self,
                                         const char          *destination,
                                         const char          *source,
                                         const char          *routing_key,
                                         GVariant            *arguments,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (destination != NULL);
  g_return_if_fail (source != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  exchange_bind_common (self, TRUE, destination, source, routing_key, arguments,
                        cancellable, callback, user_data);
}

/**
 * carehare_connection_exchange_bind_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.exchange_bind_async].
 *
 * Returns: %TRUE if the exchanges were bound
 */
gboolean
carehare_connection_exchange_bind_finish (CarehareConnection  *self,
                                          GAsyncResult        *result,
                                          GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_exchange_bind_async, error) != NULL;
}

/**
 * carehare_connection_exchange_unbind_async:
 * @self: a connection
 * @destination: the exchange that receives the messages
 * @source: the exchange the messages come from
 * @routing_key: the binding key
 * @arguments: (nullable): the binding's arguments as `a{sv}`
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Removes a binding between two exchanges (Exchange.Unbind).
 */
void
carehare_connection_exchange_unbind_async (CarehareConnection  *self,
                                           const char          *destination,
                                           const char          *source,
                                           const char          *routing_key,
                                           GVariant            *arguments,
                                           GCancellable        *cancellable,
                                           GAsyncReadyCallback  callback,
                                           gpointer             user_data)
{
  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (destination != NULL);
  g_return_if_fail (source != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  exchange_bind_common (self, FALSE, destination, source, routing_key, arguments,
                        cancellable, callback, user_data);
}

/**
 * carehare_connection_exchange_unbind_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.exchange_unbind_async].
 *
 * Returns: %TRUE if the binding was removed
 */
gboolean
carehare_connection_exchange_unbind_finish (CarehareConnection  *self,
                                            GAsyncResult        *result,
                                            GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_exchange_unbind_async, error) != NULL;
}

/* ---- public API: publishing ---------------------------------------------- */

gpointer
_carehare_connection_publish_copy (gpointer data)
{
  const CarehareConnectionPublish *in = data;
  CarehareConnectionPublish *out = g_new0 (CarehareConnectionPublish, 1);

  out->exchange = g_strdup (in->exchange);
  out->routing_key = g_strdup (in->routing_key);
  out->body = g_bytes_ref (in->body);
  out->mandatory = in->mandatory;
  out->properties = in->properties != NULL ? carehare_properties_copy (in->properties) : NULL;
  carehare_properties_to_basic (out->properties, &out->basic);
  out->id = in->id;
  return out;
}

void
_carehare_connection_publish_free (gpointer data)
{
  CarehareConnectionPublish *start = data;

  g_free ((char *) start->exchange);
  g_free ((char *) start->routing_key);
  g_bytes_unref (start->body);
  g_clear_object (&start->properties);
  g_free (start);
}

static CarehareProtocolOp *
publish_start (CarehareProtocol *protocol,
               GTask            *task,
               gpointer          start_data)
{
  CarehareConnectionPublish *publish = start_data;

  return carehare_protocol_publish (protocol, publish->exchange, publish->routing_key,
                                    publish->body, &publish->basic, publish->mandatory,
                                    _carehare_connection_rpc_done_cb, task);
}

/**
 * carehare_connection_publish_async:
 * @self: a connection
 * @exchange: the exchange to publish to ("" for the default exchange)
 * @routing_key: the routing key (the queue's name on the default exchange)
 * @body: the message body
 * @properties: (nullable): the message's properties
 * @flags: %CAREHARE_PUBLISH_FLAGS_MANDATORY to fail unroutable messages
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the broker confirmed the message
 * @user_data: data for @callback
 *
 * Publishes a message with publisher confirms: it completes when the
 * broker has taken responsibility for it (basic.ack), or fails with
 * %CAREHARE_ERROR_SERVER_SENT_NACK when the broker refused this message,
 * %CAREHARE_ERROR_UNROUTABLE when it was published with
 * %CAREHARE_PUBLISH_FLAGS_MANDATORY and no queue took it,
 * %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER when the exchange's channel hit
 * an error (for example 404 NOT_FOUND for a missing exchange), or
 * %CAREHARE_ERROR_CONNECTION_CLOSED. After either of the last two the
 * broker may or may not have routed the message (it may have taken it
 * before the channel or the connection closed): publish it again if it
 * must arrive, accepting a possible duplicate.
 *
 * Messages to one exchange go out in call order on one channel and are
 * never interleaved. While the broker blocks the connection
 * ([property@Carehare.Connection:is-blocked]), or stops the exchange's
 * channel with channel.flow, publishes wait and go out when it lets them.
 * Keep the number of publishes in flight bounded: each one holds its body
 * until the broker confirms it is written (a mandatory one until the
 * broker confirms it). An exchange's channel is given back once nothing is
 * in flight on it, when another request needs a channel or after 30
 * seconds; the next publish opens a new one.
 *
 * Cancelling a publish that is still waiting (for a channel, or for the
 * broker to unblock the connection or the channel) drops it and completes
 * it with %G_IO_ERROR_CANCELLED. Once its frames are written it cannot be
 * recalled: cancelling then has no effect, and it completes with the
 * broker's answer.
 */
void
carehare_connection_publish_async (CarehareConnection   *self,
                                   const char           *exchange,
                                   const char           *routing_key,
                                   GBytes               *body,
                                   CarehareProperties   *properties,
                                   CareharePublishFlags  flags,
                                   GCancellable         *cancellable,
                                   GAsyncReadyCallback   callback,
                                   gpointer              user_data)
{
  CarehareConnectionPublish publish = { exchange, routing_key, body, .properties = properties };

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (body != NULL);
  g_return_if_fail (properties == NULL || CAREHARE_IS_PROPERTIES (properties));

  carehare_properties_to_basic (properties, &publish.basic);
  publish.mandatory = (flags & CAREHARE_PUBLISH_FLAGS_MANDATORY) != 0;
  /* Cancellation wins only while the publish is not written, and then the
   * protocol completes it with G_IO_ERROR_CANCELLED itself; once written,
   * the broker's answer is the result, whatever the cancellable says. */
  _carehare_connection_start_op (self, carehare_connection_publish_async, FALSE,
                                 publish_start, &publish, _carehare_connection_publish_copy,
                                 _carehare_connection_publish_free, cancellable, callback, user_data);
}

/**
 * carehare_connection_publish_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.publish_async].
 *
 * Returns: %TRUE if the broker confirmed the message
 */
gboolean
carehare_connection_publish_finish (CarehareConnection  *self,
                                    GAsyncResult        *result,
                                    GError             **error)
{
  return _carehare_connection_finish_rpc (self, result, carehare_connection_publish_async, error) != NULL;
}

/* ---- public API: calls -------------------------------------------------- */

static void
call_done_cb (CarehareProtocolOp   *op,
              const CarehareMethod *reply,
              const GError         *error,
              gpointer              user_data)
{
  GTask *task = user_data;
  CarehareProtocolDelivery *delivery = carehare_protocol_op_take_delivery (op);

  _carehare_connection_rpc_data_done (g_task_get_task_data (task));
  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else
    {
      /* Taken without acks: nothing to acknowledge. */
      delivery->delivery_tag = 0;
      g_task_return_pointer (task, carehare_delivery_new_take (delivery), g_object_unref);
    }
  g_object_unref (task);
}

static CarehareProtocolOp *
call_start (CarehareProtocol *protocol,
            GTask            *task,
            gpointer          start_data)
{
  CarehareConnectionPublish *call = start_data;

  return carehare_protocol_call (protocol, call->exchange, call->routing_key, call->body,
                                 &call->basic, call->mandatory, call_done_cb, task);
}

/**
 * carehare_connection_call_async:
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
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the reply, or the error
 * @user_data: data for @callback
 *
 * Sends a request and waits for its reply (RPC over RabbitMQ's direct
 * reply-to): the request is published with reply-to
 * `amq.rabbitmq.reply-to` and a correlation id, that of @properties if it
 * has one, otherwise a fresh unique one. The server replies by publishing
 * to the default exchange with the request's reply-to as routing key and
 * its correlation id; the call completes with that reply once the broker
 * has also confirmed the request.
 *
 * All the calls of a connection share one channel, opened on the first
 * call, in confirm mode, which also holds the consumer of the replies
 * (RabbitMQ delivers them only to the channel that sent the request, and
 * only without acknowledgements: the reply's
 * [property@Carehare.Delivery:delivery-tag] is 0, there is nothing to
 * acknowledge). Many calls may be in flight; each gets the reply with its
 * correlation id, and a reply for no pending call is dropped. Two pending
 * calls with the same correlation id could not be told apart: the second
 * fails at once with %G_IO_ERROR_EXISTS. So does a call with the
 * correlation id of a cancelled call whose request went out, until that
 * call's late reply arrives (and is dropped) or the channel of the calls
 * closes: the late reply would otherwise complete the new call. A fresh
 * id (no correlation id in @properties) never meets this.
 *
 * It fails as a publish does for the request itself
 * (%CAREHARE_ERROR_SERVER_SENT_NACK, %CAREHARE_ERROR_UNROUTABLE with
 * %CAREHARE_PUBLISH_FLAGS_MANDATORY when no queue takes it), with
 * %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER when the broker closes the
 * channel of the calls, for example 404 NOT_FOUND for a missing exchange
 * (every call pending on that channel fails with it; the next call opens a
 * new channel), and with %CAREHARE_ERROR_CONNECTION_CLOSED. It does not
 * time out by itself: a server that never replies keeps the call pending,
 * so pass a @cancellable that a timer cancels.
 *
 * Cancelling @cancellable completes the call with %G_IO_ERROR_CANCELLED at
 * any time, even after the request was sent; its reply, if it comes, is
 * dropped.
 */
void
carehare_connection_call_async (CarehareConnection   *self,
                                const char           *exchange,
                                const char           *routing_key,
                                GBytes               *body,
                                CarehareProperties   *properties,
                                CareharePublishFlags  flags,
                                GCancellable         *cancellable,
                                GAsyncReadyCallback   callback,
                                gpointer              user_data)
{
  CarehareConnectionPublish call = { exchange, routing_key, body, .properties = properties };

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (exchange != NULL);
  g_return_if_fail (routing_key != NULL);
  g_return_if_fail (body != NULL);
  g_return_if_fail (properties == NULL || CAREHARE_IS_PROPERTIES (properties));

  carehare_properties_to_basic (properties, &call.basic);
  call.mandatory = (flags & CAREHARE_PUBLISH_FLAGS_MANDATORY) != 0;
  _carehare_connection_start_op (self, carehare_connection_call_async, TRUE, call_start,
                                 &call, _carehare_connection_publish_copy, _carehare_connection_publish_free,
                                 cancellable, callback, user_data);
}

/**
 * carehare_connection_call_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.call_async].
 *
 * Returns: (transfer full): the reply, or %NULL on error
 */
CarehareDelivery *
carehare_connection_call_finish (CarehareConnection  *self,
                                 GAsyncResult        *result,
                                 GError             **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == carehare_connection_call_async,
                        NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- public API: consuming ----------------------------------------------- */

static void
consumer_started_cb (CarehareProtocolOp   *op,
                     const CarehareMethod *reply,
                     const GError         *error,
                     gpointer              user_data)
{
  GTask *task = user_data;
  RpcData *data = g_task_get_task_data (task);
  CarehareConsumer *consumer = CAREHARE_CONSUMER (data->object);
  GCancellable *cancellable = g_task_get_cancellable (task);
  gboolean cancelled = cancellable != NULL && g_cancellable_is_cancelled (cancellable);

  /* Cancelled before the broker's confirmation was read: cancellation
   * wins, whenever the idle that stops the start would have run, and the
   * consumer that just started is stopped, never left running out of the
   * program's reach. */
  if (cancelled && error == NULL)
    _carehare_consumer_abandon (consumer);
  if (cancelled)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
  else if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else
    g_task_return_pointer (task, g_object_ref (consumer), g_object_unref);
  _carehare_consumer_started (consumer);
  g_object_unref (task);
}

typedef struct {
  const char *queue;
  guint32 prefetch_size;
  guint16 prefetch_count;
  CarehareProtocolConsumeOptions options;
} ConsumerStart;

/* Queued for the connection's thread: the strings and arguments are owned. */
static gpointer
consumer_start_copy (gpointer data)
{
  ConsumerStart *start = data;
  ConsumerStart *copy = g_new (ConsumerStart, 1);

  *copy = *start;
  copy->queue = g_strdup (start->queue);
  copy->options.consumer_tag = g_strdup (start->options.consumer_tag);
  if (start->options.arguments != NULL)
    g_variant_ref (start->options.arguments);
  return copy;
}

static void
consumer_start_free (gpointer data)
{
  ConsumerStart *copy = data;

  g_free ((char *) copy->queue);
  g_free ((char *) copy->options.consumer_tag);
  g_clear_pointer (&copy->options.arguments, g_variant_unref);
  g_free (copy);
}

static CarehareProtocolOp *
consumer_start (CarehareProtocol *protocol,
                GTask            *task,
                gpointer          start_data)
{
  ConsumerStart *start = start_data;
  RpcData *data = g_task_get_task_data (task);
  CarehareConsumer *consumer;

  consumer = _carehare_consumer_new (g_task_get_source_object (task), start->queue);
  data->object = G_OBJECT (consumer);
  /* The consumer watches the cancellable itself: its channel is closed. */
  _carehare_consumer_start (consumer, start->prefetch_size, start->prefetch_count,
                            &start->options, g_task_get_cancellable (task),
                            consumer_started_cb, task);
  return NULL;
}

/* The start of acking_consumer_full_async(), which acking_consumer_async()
 * calls with no options. */
static void
start_consumer (CarehareConnection   *self,
                gpointer              source_tag,
                const char           *queue,
                guint32               prefetch_size,
                guint16               prefetch_count,
                CarehareConsumeFlags  flags,
                const char           *consumer_tag,
                GVariant             *arguments,
                GCancellable         *cancellable,
                GAsyncReadyCallback   callback,
                gpointer              user_data)
{
  g_autoptr(GVariant) args = sink_arguments (arguments);
  ConsumerStart start = {
    queue, prefetch_size, prefetch_count,
    { (flags & CAREHARE_CONSUME_FLAGS_EXCLUSIVE) != 0, consumer_tag, args },
  };

  /* Cancellation wins only while the start is pending (the protocol core
   * then closes its channel); once the broker confirmed it, the running
   * consumer is reported, never CANCELLED with the consumer left running. */
  _carehare_connection_start_op (self, source_tag, FALSE, consumer_start, &start,
                                 consumer_start_copy, consumer_start_free, cancellable,
                                 callback, user_data);
}

static CarehareConsumer *
finish_consumer (CarehareConnection  *self,
                 GAsyncResult        *result,
                 gpointer             source_tag,
                 GError             **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * carehare_connection_acking_consumer_async:
 * @self: a connection
 * @queue: the queue to consume from
 * @prefetch_size: the most unacknowledged bytes the broker sends (0: no
 *   limit; RabbitMQ supports only 0)
 * @prefetch_count: the most unacknowledged messages the broker sends (0:
 *   no limit)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the consumer is running
 * @user_data: data for @callback
 *
 * Starts a consumer on a channel of its own, named by the broker, with no
 * options: [method@Carehare.Connection.acking_consumer_full_async] with
 * %CAREHARE_CONSUME_FLAGS_NONE, no consumer tag and no arguments.
 */
void
carehare_connection_acking_consumer_async (CarehareConnection  *self,
                                           const char          *queue,
                                           guint32              prefetch_size,
                                           guint16              prefetch_count,
                                           GCancellable        *cancellable,
                                           GAsyncReadyCallback  callback,
                                           gpointer             user_data)
{
  carehare_connection_acking_consumer_full_async (self, queue, prefetch_size, prefetch_count,
                                                  CAREHARE_CONSUME_FLAGS_NONE, NULL, NULL,
                                                  cancellable, callback, user_data);
}

/**
 * carehare_connection_acking_consumer_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.acking_consumer_async].
 *
 * Returns: (transfer full): the running consumer, or %NULL with @error set
 */
CarehareConsumer *
carehare_connection_acking_consumer_finish (CarehareConnection  *self,
                                            GAsyncResult        *result,
                                            GError             **error)
{
  return carehare_connection_acking_consumer_full_finish (self, result, error);
}

/**
 * carehare_connection_acking_consumer_full_async:
 * @self: a connection
 * @queue: the queue to consume from
 * @prefetch_size: the most unacknowledged bytes the broker sends (0: no
 *   limit; RabbitMQ supports only 0)
 * @prefetch_count: the most unacknowledged messages the broker sends (0:
 *   no limit; a RabbitMQ stream needs more than 0)
 * @flags: #CarehareConsumeFlags
 * @consumer_tag: (nullable): the consumer's tag, as the management UI and
 *   the deliveries show it; %NULL lets the broker name it
 * @arguments: (nullable): Basic.Consume's arguments as `a{sv}`:
 *   `x-priority` (an integer: the broker prefers consumers with a higher
 *   one while they have room), `x-stream-offset` for a RabbitMQ stream
 *   (`"first"`, `"last"`, `"next"`, an offset as an `x`, or a point in
 *   time as a `t` timestamp in seconds)
 *   (a floating reference is consumed, so a `g_variant_new ()` result
 *   can be passed directly)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the consumer is running
 * @user_data: data for @callback
 *
 * Starts a consumer on a channel of its own. It completes once the broker
 * confirmed it (basic.consume-ok), so a missing queue fails here with
 * %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER 404 NOT_FOUND, another
 * connection's exclusive queue with 403 ACCESS_REFUSED or 405
 * RESOURCE_LOCKED, and a queue with an exclusive consumer (or any
 * consumer, with %CAREHARE_CONSUME_FLAGS_EXCLUSIVE) with 403
 * ACCESS_REFUSED.
 *
 * A @consumer_tag another consumer of this connection has, or asked for,
 * fails at once with %G_IO_ERROR_EXISTS naming it, before anything is sent
 * (the broker would accept it on another channel, and the tag would name
 * two consumers); a tag or arguments the wire cannot carry fail with
 * %G_IO_ERROR_INVALID_ARGUMENT.
 *
 * Every delivery must be acknowledged with [method@Carehare.Consumer.ack]
 * or [method@Carehare.Consumer.nack] (or a batch at once with
 * [method@Carehare.Consumer.ack_up_to]); the consumer holds at most
 * @prefetch_count deliveries that [method@Carehare.Consumer.next_delivery_async]
 * has not taken yet. The library holds the broker to that: a delivery
 * beyond @prefetch_count unacknowledged ones is a broken server, and closes
 * the connection with %CAREHARE_ERROR_BAD_BYTES_FROM_SERVER naming the
 * count.
 *
 * Cancelling @cancellable before the library has read the broker's
 * confirmation fails the call with %G_IO_ERROR_CANCELLED and stops the
 * consumer (even when the confirmation was already on its way); once the
 * callback was called with the running consumer, cancelling changes
 * nothing.
 */
void
carehare_connection_acking_consumer_full_async (CarehareConnection   *self,
                                                const char           *queue,
                                                guint32               prefetch_size,
                                                guint16               prefetch_count,
                                                CarehareConsumeFlags  flags,
                                                const char           *consumer_tag,
                                                GVariant             *arguments,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data)
{
  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (queue != NULL);
  g_return_if_fail (ARGUMENTS_OK (arguments));

  start_consumer (self, carehare_connection_acking_consumer_full_async, queue, prefetch_size,
                  prefetch_count, flags, consumer_tag, arguments, cancellable, callback,
                  user_data);
}

/**
 * carehare_connection_acking_consumer_full_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.acking_consumer_full_async].
 *
 * Returns: (transfer full): the running consumer, or %NULL with @error set
 */
CarehareConsumer *
carehare_connection_acking_consumer_full_finish (CarehareConnection  *self,
                                                 GAsyncResult        *result,
                                                 GError             **error)
{
  return finish_consumer (self, result, carehare_connection_acking_consumer_full_async, error);
}
