/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareConnection: the GObject over the sans-I/O protocol core
 * (carehare-protocol.c). Its transport (carehare-transport.c) owns the
 * socket (TCP, or TLS through GTlsClientConnection), one read loop, one
 * write loop that sends whatever the protocol produced since the last
 * write in a single write, and one timer source whose ready time is the
 * protocol's next deadline (heartbeats, close timeout); this file wires
 * the two together. Every source lives on the thread-default main context
 * captured at construction and is destroyed in dispose; the read and write
 * callbacks hold only weak references, so an idle connection dies with its
 * last reference. The operations' _async/_finish pairs are in
 * carehare-connection-ops.c.
 *
 * Each public operation is a GTask kept alive by the protocol operation it
 * started; the protocol completes every operation exactly once (success,
 * server error, cancellation or connection closed), so no task is left
 * pending. As in GIO, a pending operation's task holds the connection until
 * it has completed (a close is the exception: see close_async), and every
 * way into the protocol (a public call, a source's dispatch) holds the
 * connection while the protocol may run callbacks, whose code may drop the
 * program's last reference: dispose is then reached only once the protocol
 * returned, and never completes a task inside itself.
 */
#include "carehare-connection-private.h"

#include "carehare-consumer-private.h"
#include "carehare-enum-types.h"
#include "carehare-error-private.h"
#include "carehare-log-private.h"
#include "carehare-properties-private.h"
#include "carehare-statistics-private.h"
#include "carehare-protocol.h"
#include "carehare-transport-private.h"
#include "carehare-uri.h"
#include "carehare-version.h"

#include <string.h>

#define CLOSE_TIMEOUT_US (5 * G_USEC_PER_SEC)

/**
 * CarehareConnection:
 *
 * A connection to a RabbitMQ broker.
 *
 * Create one with [func@Carehare.Connection.new_async], or with
 * [func@Gio.AsyncInitable.new_async] to set [property@Carehare.Connection:tls-database],
 * [property@Carehare.Connection:tls-certificate] or
 * [property@Carehare.Connection:connect-timeout]. Every operation runs on
 * a channel of its own, so a server-side error (for example 404 NOT_FOUND)
 * fails exactly that operation with %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER
 * and the connection stays usable.
 *
 * When the connection closes, for any reason, every pending operation fails
 * at once with %CAREHARE_ERROR_CONNECTION_CLOSED and
 * [signal@Carehare.Connection::closed] is emitted with the cause.
 *
 * As with every GIO call, a pending operation holds a reference on the
 * connection until its callback has run (a close waiting for the broker's
 * Close-Ok excepted), and so does each [class@Carehare.Consumer]: a callback
 * may drop the program's last reference, and the operations still pending
 * complete all the same. Dropping the last reference with nothing pending
 * closes the connection.
 *
 * A connection and its consumers belong to the [struct@GLib.MainContext]
 * that was thread-default when the connection was created: their work
 * (the socket, the timers) and their signals run there. Every method may
 * be called from any thread: a call made while another thread runs that
 * context is handed to it, and each call's callback runs on the
 * thread-default main context of the thread that made the call, as with
 * any GIO call. Each operation also has a blocking `_sync` twin, for
 * programs without a main loop or for worker threads. The Threads guide
 * says which calls are safe where. The connection's context must be
 * iterated (by a main loop, or by the blocking calls themselves) until
 * every pending call has completed, [method@Carehare.Connection.close_async]
 * included.
 *
 * ```c
 * static void
 * declared_cb (GObject *source, GAsyncResult *result, gpointer user_data)
 * {
 *   g_autoptr(GError) error = NULL;
 *   g_autofree char *name = NULL;
 *
 *   name = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source),
 *                                                    result, NULL, NULL, &error);
 *   if (name == NULL)
 *     g_printerr ("declare failed: %s (reply code %u)\n", error->message,
 *                 carehare_error_get_reply_code (error));
 * }
 * ```
 */

struct _CarehareConnection
{
  GObject parent_instance;

  GMainContext *context;          /* owned: thread-default at construction */
  CarehareMailbox *mailbox;       /* owned: calls from threads that cannot hold the context */
  CarehareTracked *tracked;       /* owned: publish_tracked()'s state */

  /* construct-only */
  char *uri;                      /* owned; never exposed, it may hold a password */
  char **uris;                    /* owned; likewise; tried in order when set */
  GTlsDatabase *tls_database;     /* owned, nullable */
  GTlsCertificate *tls_certificate; /* owned, nullable */
  guint connect_timeout_ms;       /* 0: from the URI, else the default */
  guint64 max_body_size;          /* 0: from the URI, else the default */

  CarehareProtocol *protocol;     /* owned */
  CarehareTransport *transport;   /* owned: the socket, its sources and connecting */

  /* initialisation: the transport tries one URI after another until one
   * completes the handshake. */
  GPtrArray *dead_protocols;      /* owned: abandoned attempts', freed outside their callbacks */
  GTask *init_task;               /* owned while initialising */
  GCancellable *init_cancellable; /* owned while initialising: the caller's, relayed */
  GCancellable *init_user_cancellable; /* owned while initialising */
  gulong init_cancelled_id;
  GSource *init_cancel_source;    /* owned while initialising */
  gboolean initialized;

  /* closing */
  gboolean close_requested;       /* closed by the program before or while connecting: stays closed */
  gboolean is_closed;
  gboolean is_blocked;
  GPtrArray *close_tasks;         /* owned: close_async() GTasks until they return */
  gboolean disposing;             /* inside dispose: nothing completes here */
};

enum {
  PROP_0,
  PROP_URI,
  PROP_URIS,
  PROP_TLS_DATABASE,
  PROP_TLS_CERTIFICATE,
  PROP_CONNECT_TIMEOUT,
  PROP_HEARTBEAT,
  PROP_FRAME_MAX,
  PROP_CHANNEL_MAX,
  PROP_SERVER_PROPERTIES,
  PROP_IS_CLOSED,
  PROP_IS_BLOCKED,
  PROP_MAX_BODY_SIZE,
  PROP_PENDING_WRITE_BYTES,
  N_PROPS
};

enum {
  SIGNAL_CLOSED,
  N_SIGNALS
};

static GParamSpec *obj_props[N_PROPS];
static guint signals[N_SIGNALS];

static void carehare_connection_async_initable_iface_init (GAsyncInitableIface *iface);
static void carehare_connection_initable_iface_init (GInitableIface *iface);

/* GInitable first, as GDBusProxy has them: in the other order GJS 1.74 no
 * longer finds what Gio._promisify() puts on Gio.AsyncInitable.prototype
 * for a Carehare.Connection (tests/bindings/test-carehare.js). */
G_DEFINE_FINAL_TYPE_WITH_CODE (CarehareConnection, carehare_connection, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      carehare_connection_initable_iface_init)
                               G_IMPLEMENT_INTERFACE (G_TYPE_ASYNC_INITABLE,
                                                      carehare_connection_async_initable_iface_init))

static void update (CarehareConnection *self);
static void close_run (CarehareConnection *self,
                       gpointer            user_data);
static gpointer pass_task (gpointer task);
static void init_fail (CarehareConnection *self,
                       GError             *error);
static void handshake_done_cb (CarehareProtocolOp   *op,
                               const CarehareMethod *reply,
                               const GError         *error,
                               gpointer              user_data);

/* ---- close tasks --------------------------------------------------------- */

static void
destroy_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

/* A close_async() call. Its task is the one pending operation that does
 * not keep the connection alive while it waits for Close-Ok: a program (a
 * worker thread) that closes and drops its last reference without waiting
 * has the socket closed at once, in dispose, and the task takes its
 * reference back there to complete from an idle. */
typedef struct {
  CarehareProtocolOp *op;        /* while waiting for Close-Ok */
  gboolean done;                 /* the wait for Close-Ok is over */
  gboolean borrowed;             /* the task's reference on the connection is lent back */
  gboolean returned;
  GError *error;                 /* the cause the connection had closed with, if any */
  GCancellable *cancellable;     /* owned */
  gulong cancelled_id;
} CloseData;

static void
close_data_free (CloseData *data)
{
  g_clear_error (&data->error);
  g_clear_object (&data->cancellable);
  g_free (data);
}

/* Completes a close task (the reference is taken). */
static void
close_task_return (GTask *task)
{
  CloseData *data = g_task_get_task_data (task);

  data->returned = TRUE;
  if (data->cancelled_id != 0)
    {
      g_cancellable_disconnect (data->cancellable, data->cancelled_id);
      data->cancelled_id = 0;
    }
  if (data->error != NULL)
    g_task_return_error (task, g_error_copy (data->error));
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

/* The close task holds the connection again, so that it may complete. */
static void
close_task_take_back (GTask *task)
{
  CloseData *data = g_task_get_task_data (task);

  if (data->borrowed)
    {
      g_object_ref (g_task_get_source_object (task));
      data->borrowed = FALSE;
    }
}

static gboolean
close_task_return_cb (gpointer user_data)
{
  close_task_return (g_object_ref (user_data));
  return G_SOURCE_REMOVE;
}

/* The socket is closed: so are the close_async() calls whose wait for
 * Close-Ok is over. From dispose they complete from an idle, never inside
 * it (a binding may be collecting the object, and cannot run a callback
 * then). */
static void
return_close_tasks (CarehareConnection *self)
{
  g_autoptr(GPtrArray) done = g_ptr_array_new ();

  for (guint i = 0; i < self->close_tasks->len;)
    {
      GTask *task = self->close_tasks->pdata[i];

      if (((CloseData *) g_task_get_task_data (task))->done)
        g_ptr_array_add (done, g_ptr_array_steal_index (self->close_tasks, i));
      else
        i++;
    }
  for (guint i = 0; i < done->len; i++)
    {
      GTask *task = done->pdata[i];

      if (self->disposing)
        {
          g_autoptr(GSource) idle = g_idle_source_new ();

          g_source_set_priority (idle, G_PRIORITY_DEFAULT);
          g_source_set_callback (idle, close_task_return_cb, task, g_object_unref);
          g_source_set_static_name (idle, "[carehare] close completed");
          g_source_attach (idle, g_task_get_context (task));
        }
      else
        close_task_return (task);
    }
}
/* ---- protocol callbacks -------------------------------------------------- */

static void
protocol_finished_cb (CarehareProtocol *protocol,
                      const GError     *error,
                      gpointer          user_data)
{
  CarehareConnection *self = user_data;

  if (protocol != self->protocol || self->is_closed)
    return;  /* an abandoned attempt's */
  self->is_closed = TRUE;

  if (error != NULL)
    _carehare_log (G_LOG_LEVEL_DEBUG, _carehare_transport_get_redacted_uri (self->transport),
                   carehare_error_get_reply_code (error), 0, "connection to %s closed: %s",
                   _carehare_transport_get_redacted_uri (self->transport), error->message);
  else
    _carehare_log (G_LOG_LEVEL_DEBUG, _carehare_transport_get_redacted_uri (self->transport),
                   0, 0, "connection to %s closed",
                   _carehare_transport_get_redacted_uri (self->transport));

  /* A peer that stopped reading must not keep the socket open: the last
   * frames get a bounded time, and none after a heartbeat timeout. */
  if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR))
    _carehare_transport_force_close (self->transport);
  else if (self->initialized)
    _carehare_transport_linger (self->transport);

  /* Before initialisation completed nobody has seen this object. */
  if (self->initialized)
    {
      g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_IS_CLOSED]);
      g_signal_emit (self, signals[SIGNAL_CLOSED], 0, error);
    }
  update (self);
}

static void
protocol_blocked_cb (CarehareProtocol *protocol,
                     gboolean          blocked,
                     const char       *reason,
                     gpointer          user_data)
{
  CarehareConnection *self = user_data;

  if (protocol != self->protocol)
    return;
  _carehare_log (G_LOG_LEVEL_DEBUG, _carehare_transport_get_redacted_uri (self->transport), 0, 0,
                 "connection %s%s%s", blocked ? "blocked" : "unblocked",
                 reason != NULL ? ": " : "", reason != NULL ? reason : "");
  if (self->is_blocked == blocked)
    return;
  self->is_blocked = blocked;
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_IS_BLOCKED]);
}

static void
protocol_channel_closed_cb (CarehareProtocol *protocol,
                            guint             channel,
                            guint             reply_code,
                            const char       *reply_text,
                            gpointer          user_data)
{
  CarehareConnection *self = user_data;

  if (protocol != self->protocol)
    return;
  _carehare_log (G_LOG_LEVEL_DEBUG, _carehare_transport_get_redacted_uri (self->transport),
                 reply_code, channel, "channel %u closed by server: %u %s", channel, reply_code,
                 reply_text != NULL ? reply_text : "");
}

static const CarehareProtocolCallbacks protocol_callbacks = {
  .finished = protocol_finished_cb,
  .blocked_changed = protocol_blocked_cb,
  .channel_closed = protocol_channel_closed_cb,
};

/* ---- the transport's callbacks ------------------------------------------- */

static void
transport_stream_ready (gpointer user_data)
{
  CarehareConnection *self = user_data;
  const CarehareUriSettings *settings = _carehare_transport_get_settings (self->transport);
  CarehareProtocolConfig config = { 0 };
  g_autofree char *platform = NULL;

  /* Outside the abandoned attempts' callbacks: free their protocols. */
  g_ptr_array_set_size (self->dead_protocols, 0);

  platform = g_strdup_printf ("GLib %u.%u.%u", glib_major_version, glib_minor_version,
                              glib_micro_version);
  config.username = settings->username;
  config.password = settings->password;
  config.vhost = settings->vhost;
  config.mechanism = settings->auth_mechanism;
  config.heartbeat = settings->heartbeat;
  config.channel_max = settings->channel_max;
  config.frame_max = settings->frame_max;
  config.connection_name = settings->connection_name;
  config.product = "carehare-glib";
  config.version = CAREHARE_VERSION_S;
  config.platform = platform;
  config.close_timeout_us = CLOSE_TIMEOUT_US;
  /* The property wins over the URI; 0 from both: the protocol's default. */
  config.max_body_size = self->max_body_size > 0 ? self->max_body_size
                         : settings->max_body_size > 0 ? (guint64) settings->max_body_size
                         : 0;
  self->protocol = carehare_protocol_new (&config, &protocol_callbacks, self);

  carehare_protocol_start (self->protocol, g_get_monotonic_time (), handshake_done_cb,
                           _carehare_transport_watch_new (self->transport));
}

static void
transport_attempt_failed (gpointer  user_data,
                          GError   *error)
{
  init_fail (user_data, error);
}

static gboolean
transport_received (gpointer      user_data,
                    const guint8 *data,
                    gsize         size)
{
  CarehareConnection *self = user_data;

  _carehare_connection_tracked_enter (self);
  return _carehare_connection_tracked_leave (
    self, self->protocol != NULL &&
          carehare_protocol_receive (self->protocol, data, size, g_get_monotonic_time ()));
}

static guint8 *
transport_receive_buffer (gpointer  user_data,
                          gsize    *size,
                          gsize    *frame_size)
{
  CarehareConnection *self = user_data;

  *size = *frame_size = 0;
  return self->protocol != NULL
         ? carehare_protocol_get_receive_buffer (self->protocol, size, frame_size)
         : NULL;
}

static gboolean
transport_received_in_place (gpointer user_data,
                             gsize    size)
{
  CarehareConnection *self = user_data;

  _carehare_connection_tracked_enter (self);
  return _carehare_connection_tracked_leave (
    self, self->protocol != NULL &&
          carehare_protocol_receive_in_place (self->protocol, size, g_get_monotonic_time ()));
}

static void
transport_failed (gpointer      user_data,
                  const GError *error)
{
  CarehareConnection *self = user_data;

  if (self->protocol != NULL)
    carehare_protocol_abort (self->protocol, error);
}

static GPtrArray *
transport_take_output (gpointer user_data,
                       gint64   now)
{
  CarehareConnection *self = user_data;

  return self->protocol != NULL ? carehare_protocol_take_output_segments (self->protocol, now) : NULL;
}

static gboolean
transport_has_output (gpointer user_data)
{
  CarehareConnection *self = user_data;

  return self->protocol != NULL && carehare_protocol_has_output (self->protocol);
}

static gboolean
transport_is_finished (gpointer user_data)
{
  CarehareConnection *self = user_data;

  return self->protocol == NULL || carehare_protocol_is_finished (self->protocol);
}

static gint64
transport_get_deadline (gpointer user_data)
{
  CarehareConnection *self = user_data;

  return self->protocol != NULL ? carehare_protocol_get_deadline (self->protocol) : G_MAXINT64;
}

static void
transport_tick (gpointer user_data,
                gint64   now)
{
  CarehareConnection *self = user_data;

  if (self->protocol != NULL)
    carehare_protocol_tick (self->protocol, now);
}

static void
transport_closed (gpointer user_data)
{
  return_close_tasks (user_data);
}

static gsize
transport_get_output_size (gpointer user_data)
{
  CarehareConnection *self = user_data;

  return self->protocol != NULL ? carehare_protocol_get_output_size (self->protocol) : 0;
}

static void
transport_pending_write_crossed (gpointer user_data)
{
  g_object_notify_by_pspec (G_OBJECT (user_data), obj_props[PROP_PENDING_WRITE_BYTES]);
}

static const CarehareTransportCallbacks transport_callbacks = {
  .stream_ready = transport_stream_ready,
  .attempt_failed = transport_attempt_failed,
  .received = transport_received,
  .receive_buffer = transport_receive_buffer,
  .received_in_place = transport_received_in_place,
  .failed = transport_failed,
  .take_output = transport_take_output,
  .has_output = transport_has_output,
  .is_finished = transport_is_finished,
  .get_deadline = transport_get_deadline,
  .tick = transport_tick,
  .closed = transport_closed,
  .get_output_size = transport_get_output_size,
  .pending_write_crossed = transport_pending_write_crossed,
};

/* After anything that may have changed the protocol's state: write what it
 * produced and re-arm the timer. */
static void
update (CarehareConnection *self)
{
  if (self->protocol == NULL)
    return;
  _carehare_transport_update (self->transport);
}

/* ---- initialisation ------------------------------------------------------ */

/* Ends initialisation's own state (not the connection's). */
static void
init_cleanup (CarehareConnection *self)
{
  if (self->init_user_cancellable != NULL)
    g_cancellable_disconnect (self->init_user_cancellable, self->init_cancelled_id);
  self->init_cancelled_id = 0;
  g_clear_object (&self->init_user_cancellable);
  g_clear_object (&self->init_cancellable);
  destroy_source (&self->init_cancel_source);
}

/* The current attempt failed with @error (taken): try the next URI, or
 * complete initialisation with the error. Our own cancellations become the
 * caller's cancellation. */
static void
init_fail (CarehareConnection *self,
           GError             *error)
{
  g_autoptr(GTask) task = NULL;
  gboolean cancelled;

  if (self->init_task == NULL)
    {
      g_error_free (error);
      return;
    }

  cancelled = self->init_user_cancellable != NULL &&
              g_cancellable_is_cancelled (self->init_user_cancellable);
  if (cancelled && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_error_free (error);
      error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
    }
  error = _carehare_transport_attempt_failed (self->transport, error,
                                              !cancelled && !self->close_requested);

  /* The attempt's protocol goes with its socket. */
  if (self->protocol != NULL)
    {
      g_autoptr(GError) gone = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                                    "connection attempt abandoned");
      CarehareProtocol *protocol = self->protocol;

      carehare_protocol_abort (protocol, gone);
      /* We may be inside one of its callbacks: free it later. */
      g_ptr_array_add (self->dead_protocols, protocol);
      self->protocol = NULL;
    }
  self->is_closed = FALSE;
  self->is_blocked = FALSE;

  if (error == NULL)
    return;  /* the next URI is tried */
  task = g_steal_pointer (&self->init_task);
  init_cleanup (self);
  g_task_return_error (task, error);
}

static void
handshake_done_cb (CarehareProtocolOp   *op,
                   const CarehareMethod *reply,
                   const GError         *error,
                   gpointer              user_data)
{
  g_autoptr(GObject) owner = _carehare_transport_watch_finish (user_data);
  CarehareConnection *self = (CarehareConnection *) owner;
  g_autoptr(GTask) task = NULL;

  if (self == NULL)
    return;
  if (error != NULL)
    {
      init_fail (self, g_error_copy (error));
      return;
    }

  task = g_steal_pointer (&self->init_task);
  init_cleanup (self);
  _carehare_transport_connected (self->transport);
  self->initialized = TRUE;
  _carehare_log (G_LOG_LEVEL_DEBUG, _carehare_transport_get_redacted_uri (self->transport), 0, 0,
                 "connected to %s: heartbeat %u s, frame_max %u, channel_max %u",
                 _carehare_transport_get_redacted_uri (self->transport),
                 carehare_protocol_get_heartbeat (self->protocol),
                 carehare_protocol_get_frame_max (self->protocol),
                 carehare_protocol_get_channel_max (self->protocol));
  if (self->uris != NULL && self->uris[0] != NULL)
    g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_URI]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_HEARTBEAT]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_FRAME_MAX]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_CHANNEL_MAX]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_SERVER_PROPERTIES]);
  g_task_return_boolean (task, TRUE);
}

static void
init_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  GCancellable *ours = user_data;

  /* May run in any thread: only pass it on to our context. */
  g_cancellable_cancel (ours);
}

static gboolean
init_cancelled_source_cb (GCancellable *cancellable,
                          gpointer      user_data)
{
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);

  init_fail (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                        "Operation was cancelled"));
  return G_SOURCE_CONTINUE;
}

static void
carehare_connection_init_async (GAsyncInitable      *initable,
                                int                  io_priority,
                                GCancellable        *cancellable,
                                GAsyncReadyCallback  callback,
                                gpointer             user_data)
{
  CarehareConnection *self = CAREHARE_CONNECTION (initable);
  g_autoptr(GTask) task = NULL;
  char **attempt_uris;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, carehare_connection_init_async);

  if (self->init_task != NULL || self->protocol != NULL || self->initialized)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "The connection is already initialised");
      return;
    }
  if (self->close_requested)
    {
      g_task_return_new_error (task, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                               "Connection closed by the application before it was initialised");
      return;
    }
  if (self->uris != NULL && self->uris[0] != NULL)
    attempt_uris = g_strdupv (self->uris);
  else if (self->uri != NULL)
    {
      attempt_uris = g_new0 (char *, 2);
      attempt_uris[0] = g_strdup (self->uri);
    }
  else
    {
      g_task_return_new_error (task, CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI,
                               "No URI given: set the \"uri\" property to amqp://... or amqps://...");
      return;
    }
  self->init_task = g_steal_pointer (&task);

  if (cancellable != NULL)
    {
      /* Relayed through a cancellable of ours watched from our context,
       * since the caller's may be cancelled from any thread. */
      self->init_cancellable = g_cancellable_new ();
      self->init_user_cancellable = g_object_ref (cancellable);
      self->init_cancelled_id = g_cancellable_connect (cancellable,
                                                       G_CALLBACK (init_cancelled_cb),
                                                       g_object_ref (self->init_cancellable),
                                                       g_object_unref);
      self->init_cancel_source = g_cancellable_source_new (self->init_cancellable);
      g_source_set_callback (self->init_cancel_source,
                             G_SOURCE_FUNC (init_cancelled_source_cb), self, NULL);
      g_source_set_static_name (self->init_cancel_source, "[carehare] connect cancelled");
      g_source_attach (self->init_cancel_source, self->context);
      if (g_cancellable_is_cancelled (cancellable))
        {
          carehare_uri_secret_strv_free (attempt_uris);
          init_fail (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                "Operation was cancelled"));
          return;
        }
    }
  _carehare_transport_connect (self->transport, attempt_uris, self->connect_timeout_ms,
                               self->tls_database, self->tls_certificate);
}

static gboolean
carehare_connection_init_finish (GAsyncInitable  *initable,
                                 GAsyncResult    *result,
                                 GError         **error)
{
  g_return_val_if_fail (g_task_is_valid (result, initable), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
carehare_connection_async_initable_iface_init (GAsyncInitableIface *iface)
{
  iface->init_async = carehare_connection_init_async;
  iface->init_finish = carehare_connection_init_finish;
}

static void
carehare_connection_initable_iface_init (GInitableIface *iface)
{
  iface->init = _carehare_connection_initable_init;
}

/* ---- GObject ------------------------------------------------------------- */

static void
dispose_run (CarehareConnection *self,
             gpointer            user_data)
{
  self->disposing = TRUE;
  /* Every pending operation holds the connection, but a close waiting for
   * Close-Ok: each takes its reference back now, so the connection lives
   * on until they have completed (from an idle). */
  for (guint i = 0; i < self->close_tasks->len; i++)
    close_task_take_back (self->close_tasks->pdata[i]);
  if (self->protocol != NULL)
    {
      /* Nobody is listening any more: the protocol completes the closes.
       * Reached from inside one of its callbacks, it finishes them and is
       * freed once it returned. */
      carehare_protocol_free (g_steal_pointer (&self->protocol));
    }
  g_ptr_array_set_size (self->dead_protocols, 0);
  _carehare_connection_tracked_drop (self);
  /* Nobody may iterate our context any more (a worker thread that closed,
   * dropped its reference and ended): close the socket now, not when the
   * last pending callback has run, and complete the closes waiting for it. */
  _carehare_transport_close_now (self->transport);
  return_close_tasks (self);
  init_cleanup (self);
  self->disposing = FALSE;
}

static void
carehare_connection_dispose (GObject *object)
{
  CarehareConnection *self = CAREHARE_CONNECTION (object);

  /* The last reference may go in any thread (a callback on another
   * thread's context): the state is touched with the context held, as
   * by every call. */
  if (_carehare_connection_dispose_elsewhere (self, object))
    return;
  _carehare_connection_run (self, dispose_run, NULL);

  G_OBJECT_CLASS (carehare_connection_parent_class)->dispose (object);
}

static void
carehare_connection_finalize (GObject *object)
{
  CarehareConnection *self = CAREHARE_CONNECTION (object);

  g_assert (self->init_task == NULL);

  _carehare_transport_free (self->transport);
  g_clear_object (&self->tls_database);
  g_clear_object (&self->tls_certificate);
  carehare_uri_secret_free (self->uri);
  g_assert (self->close_tasks->len == 0);
  g_ptr_array_unref (self->close_tasks);
  g_ptr_array_unref (self->dead_protocols);
  carehare_uri_secret_strv_free (self->uris);
  _carehare_mailbox_free (self->mailbox);
  _carehare_tracked_free (self->tracked);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (carehare_connection_parent_class)->finalize (object);
}

/* The uri property as read: the URI connected to (for a list, the one
 * that answered), or before that the one given; never the password. */
static char *
dup_redacted_uri (CarehareConnection *self)
{
  if (self->initialized)
    return g_strdup (_carehare_transport_get_redacted_uri (self->transport));
  if (self->uri != NULL && (self->uris == NULL || self->uris[0] == NULL))
    return carehare_uri_redact (self->uri);
  return NULL;
}

static void
carehare_connection_get_property (GObject    *object,
                                  guint       prop_id,
                                  GValue     *value,
                                  GParamSpec *pspec)
{
  CarehareConnection *self = CAREHARE_CONNECTION (object);

  switch (prop_id)
    {
    case PROP_URI:
      g_value_take_string (value, dup_redacted_uri (self));
      break;
    case PROP_TLS_DATABASE:
      g_value_set_object (value, self->tls_database);
      break;
    case PROP_TLS_CERTIFICATE:
      g_value_set_object (value, self->tls_certificate);
      break;
    case PROP_CONNECT_TIMEOUT:
      g_value_set_uint (value, self->connect_timeout_ms);
      break;
    case PROP_HEARTBEAT:
      g_value_set_uint (value, carehare_connection_get_heartbeat (self));
      break;
    case PROP_FRAME_MAX:
      g_value_set_uint (value, carehare_connection_get_frame_max (self));
      break;
    case PROP_CHANNEL_MAX:
      g_value_set_uint (value, carehare_connection_get_channel_max (self));
      break;
    case PROP_SERVER_PROPERTIES:
      g_value_set_variant (value, carehare_connection_get_server_properties (self));
      break;
    case PROP_IS_CLOSED:
      g_value_set_boolean (value, carehare_connection_get_is_closed (self));
      break;
    case PROP_IS_BLOCKED:
      g_value_set_boolean (value, carehare_connection_get_is_blocked (self));
      break;
    case PROP_MAX_BODY_SIZE:
      g_value_set_uint64 (value, self->max_body_size);
      break;
    case PROP_PENDING_WRITE_BYTES:
      g_value_set_uint64 (value, carehare_connection_get_pending_write_bytes (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_connection_set_property (GObject      *object,
                                  guint         prop_id,
                                  const GValue *value,
                                  GParamSpec   *pspec)
{
  CarehareConnection *self = CAREHARE_CONNECTION (object);

  switch (prop_id)
    {
    case PROP_URI:
      carehare_uri_secret_free (self->uri);
      self->uri = g_value_dup_string (value);
      break;
    case PROP_URIS:
      carehare_uri_secret_strv_free (self->uris);
      self->uris = g_value_dup_boxed (value);
      break;
    case PROP_TLS_DATABASE:
      g_set_object (&self->tls_database, g_value_get_object (value));
      break;
    case PROP_TLS_CERTIFICATE:
      g_set_object (&self->tls_certificate, g_value_get_object (value));
      break;
    case PROP_CONNECT_TIMEOUT:
      self->connect_timeout_ms = g_value_get_uint (value);
      break;
    case PROP_MAX_BODY_SIZE:
      self->max_body_size = g_value_get_uint64 (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_connection_class_init (CarehareConnectionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = carehare_connection_dispose;
  object_class->finalize = carehare_connection_finalize;
  object_class->get_property = carehare_connection_get_property;
  object_class->set_property = carehare_connection_set_property;

  /**
   * CarehareConnection:uri:
   *
   * The broker's URI, `amqp://user:password@host:port/vhost?params` or
   * `amqps://...`; see the URI reference for every parameter.
   *
   * Read back, the password is replaced by `***` (as in the library's
   * debug messages), in the user information and in query parameters.
   * Once connected it is the URI the connection uses: for a connection
   * made from a list ([property@Carehare.Connection:uris]), the one that
   * answered; before that, for a list, %NULL.
   */
  obj_props[PROP_URI] =
    g_param_spec_string ("uri", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS |
                         G_PARAM_EXPLICIT_NOTIFY);

  /**
   * CarehareConnection:uris:
   *
   * Broker URIs to try in order, for example the nodes of a cluster; the
   * first that completes the handshake is used. Takes precedence over
   * [property@Carehare.Connection:uri]. Write-only: read
   * [property@Carehare.Connection:uri] for the one connected to.
   */
  obj_props[PROP_URIS] =
    g_param_spec_boxed ("uris", NULL, NULL, G_TYPE_STRV,
                        G_PARAM_WRITABLE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:tls-database:
   *
   * The certificate authorities to trust for an `amqps://` connection,
   * instead of the system's (or the URI's `cacertfile`).
   */
  obj_props[PROP_TLS_DATABASE] =
    g_param_spec_object ("tls-database", NULL, NULL, G_TYPE_TLS_DATABASE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:tls-certificate:
   *
   * The client certificate (with its private key) to present for an
   * `amqps://` connection, instead of the URI's `certfile`/`keyfile`.
   */
  obj_props[PROP_TLS_CERTIFICATE] =
    g_param_spec_object ("tls-certificate", NULL, NULL, G_TYPE_TLS_CERTIFICATE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:connect-timeout:
   *
   * How long, in milliseconds, connecting may take in all: TCP, TLS and the
   * AMQP handshake together. 0 takes the URI's `connection_timeout`, or 30
   * seconds. Past it, initialisation fails with %G_IO_ERROR_TIMED_OUT.
   */
  obj_props[PROP_CONNECT_TIMEOUT] =
    g_param_spec_uint ("connect-timeout", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:heartbeat:
   *
   * The negotiated heartbeat interval in seconds; 0 when disabled, which
   * happens only when both the client (the URI's `heartbeat`, 60 by
   * default) and the server asked for 0.
   */
  obj_props[PROP_HEARTBEAT] =
    g_param_spec_uint ("heartbeat", NULL, NULL, 0, G_MAXUINT16, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:frame-max:
   *
   * The negotiated largest frame size in bytes: the lower of the client's
   * (the URI's `frame_max`, 131072 by default) and the server's, so at most
   * 1048576 whatever the server offers.
   */
  obj_props[PROP_FRAME_MAX] =
    g_param_spec_uint ("frame-max", NULL, NULL, 0, G_MAXUINT32, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:channel-max:
   *
   * The negotiated number of channels; it bounds how many operations run
   * at once (more wait for a channel).
   */
  obj_props[PROP_CHANNEL_MAX] =
    g_param_spec_uint ("channel-max", NULL, NULL, 0, G_MAXUINT16, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:server-properties:
   *
   * What the server said of itself in Connection.Start (`product`,
   * `version`, `capabilities`...), as an `a{sv}` dictionary.
   */
  obj_props[PROP_SERVER_PROPERTIES] =
    g_param_spec_variant ("server-properties", NULL, NULL, G_VARIANT_TYPE_VARDICT, NULL,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:is-closed:
   *
   * Whether the connection is closed, by us or otherwise.
   */
  obj_props[PROP_IS_CLOSED] =
    g_param_spec_boolean ("is-closed", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:is-blocked:
   *
   * Whether the broker has stopped reading from this connection
   * (connection.blocked, for example on a memory or disk alarm).
   */
  obj_props[PROP_IS_BLOCKED] =
    g_param_spec_boolean ("is-blocked", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:max-body-size:
   *
   * The largest message body, in bytes, a consumer of this connection
   * accepts. A message whose body is larger is not received into memory:
   * it is rejected without requeueing (the queue's dead-letter exchange,
   * if any, gets it), [method@Carehare.Consumer.next_delivery_async] fails
   * once with %CAREHARE_ERROR_MESSAGE_TOO_LARGE in its place, and the
   * consumer goes on with the next message.
   *
   * 0 (the default) takes the URI's `max_body_size`, or 128 MiB; a value
   * set here wins over the URI's. At most 536870912 (512 MiB), RabbitMQ's
   * own hard cap: a content header announcing more than that, which no
   * broker sends, closes the connection with
   * %CAREHARE_ERROR_BAD_BYTES_FROM_SERVER. A message the broker returns
   * (an unroutable mandatory publish) is this program's own and is not
   * subject to the limit.
   */
  obj_props[PROP_MAX_BODY_SIZE] =
    g_param_spec_uint64 ("max-body-size", NULL, NULL, 0, CAREHARE_URI_MAX_BODY_SIZE, 0,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:pending-write-bytes: (getter get_pending_write_bytes)
   *
   * The bytes waiting in this process to be written to the socket: frames
   * the library has produced that the socket has not taken yet, large
   * message bodies (held as slices of the program's [struct@GLib.Bytes])
   * included. A program that publishes faster than the connection drains
   * can pause on it, as it would on a [class@Gio.OutputStream] that has
   * pending data or on amqplib's `drain`: the Flow control guide shows
   * the pattern.
   *
   * `notify::pending-write-bytes` is not emitted for every change (that
   * would be once per write) but once when the count rises above
   * %CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK (1 MiB: pause), and once when
   * it has fallen back to %CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK
   * (256 KiB: resume) or below; then again at the next rise. The gap
   * between the two marks keeps a publisher that resumes from pausing
   * again at once; 1 MiB is several socket writes ahead of the kernel,
   * so pausing there does not starve the socket, and bounds the memory of
   * a burst. A program that wants other limits reads the property where it
   * publishes (the getter is cheap) and compares it to its own.
   *
   * Publishes held back in the library (while the connection is blocked,
   * a channel is stopped by `channel.flow`, or a publish waits for its
   * channel to open) are not counted: they are not output yet. Once the
   * connection is closed the count is 0: what was not written is dropped
   * (with a notify if it was above the high-water mark).
   *
   * The notify is emitted on the connection's main context, sometimes from
   * within [method@Carehare.Connection.publish_async] itself; the getter may
   * be called from any thread and returns the count as of the connection's
   * last step.
   */
  obj_props[PROP_PENDING_WRITE_BYTES] =
    g_param_spec_uint64 ("pending-write-bytes", NULL, NULL, 0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, obj_props);

  /**
   * CarehareConnection::closed:
   * @self: the connection
   * @error: (nullable): why it closed, or %NULL when the program closed it
   *
   * Emitted once, when the connection closes: closed by the program
   * (@error is %NULL), by the server (%CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER
   * with the reply code), by the heartbeat monitor
   * (%CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR), or by a
   * socket error or end of file (%CAREHARE_ERROR_CONNECTION_CLOSED).
   *
   * Emitted on the connection's main context (the one that was
   * thread-default when it was created), by the thread running it, whichever
   * thread made the call that led to it.
   */
  signals[SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);

  _carehare_connection_tracked_class_init (object_class);
}

static void
carehare_connection_init (CarehareConnection *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->mailbox = _carehare_mailbox_new (self->context);
  self->tracked = _carehare_tracked_new ();
  self->close_tasks = g_ptr_array_new ();
  self->dead_protocols = g_ptr_array_new_with_free_func ((GDestroyNotify) carehare_protocol_free);
  self->transport = _carehare_transport_new (G_OBJECT (self), self->context,
                                             &transport_callbacks, self);
}

/* ---- public API: state (the negotiated values and counters are in
 * carehare-connection-state.c) ---------------------------------------------- */

/**
 * carehare_connection_get_is_closed:
 * @self: a connection
 *
 * Gets whether the connection is closed, for whatever reason.
 *
 * Returns: whether the connection is closed
 */
gboolean
carehare_connection_get_is_closed (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), TRUE);
  /* Closed as soon as the protocol finished: the callbacks of the
   * operations that fail with the close run before ::closed is emitted. */
  return self->is_closed || self->protocol == NULL ||
         carehare_protocol_is_finished (self->protocol);
}

/**
 * carehare_connection_get_is_blocked:
 * @self: a connection
 *
 * Gets whether the broker has blocked this connection; while it
 * is blocked, publishes wait unwritten.
 *
 * Returns: whether the broker has blocked this connection
 */
gboolean
carehare_connection_get_is_blocked (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  return self->is_blocked;
}

/* ---- public API: close --------------------------------------------------- */

static void
close_done_cb (CarehareProtocolOp   *op,
               const CarehareMethod *reply,
               const GError         *error,
               gpointer              user_data)
{
  GTask *task = user_data;  /* the op's reference */
  CloseData *data = g_task_get_task_data (task);
  CarehareConnection *self = g_task_get_source_object (task);

  /* The task holds the connection again (see close_async) and completes
   * when the socket is closed. */
  close_task_take_back (task);
  data->op = NULL;
  data->done = TRUE;
  if (error != NULL)
    data->error = g_error_copy (error);
  if (_carehare_transport_is_closed (self->transport))
    return_close_tasks (self);
  g_object_unref (task);
}

static void
close_cancel_run (CarehareConnection *self,
                  gpointer            user_data)
{
  GTask *task = user_data;
  CloseData *data = g_task_get_task_data (task);

  if (data->returned)
    return;
  /* Stop waiting for Close-Ok (the connection is over at once: this
   * completes every close op), then close the socket without waiting
   * for the last frames to be written. */
  if (data->op != NULL && self->protocol != NULL)
    carehare_protocol_cancel (self->protocol, data->op);
  _carehare_transport_force_close (self->transport);
}

static void
close_cancelled_cb (GCancellable *cancellable,
                    gpointer      user_data)
{
  GTask *task = user_data;

  /* May run in any thread, and inside the cancellable's lock: defer the
   * work to our context. Alive: while its close op is pending the
   * connection is, and after it the task holds it; the queued call holds
   * it too. */
  _carehare_connection_run_later (g_task_get_source_object (task), close_cancel_run,
                                  g_object_ref (task), g_object_unref);
}

/**
 * carehare_connection_close_async:
 * @self: a connection
 * @cancellable: (nullable): cancel to stop waiting for the server's
 *   Close-Ok and close the socket at once
 * @callback: (scope async) (nullable): called when the socket is closed
 * @user_data: data for @callback
 *
 * Closes the connection: sends Connection.Close, waits for the server's
 * Close-Ok (at most 5 seconds, or two heartbeat intervals if that is
 * shorter), gives the last frames at most 2 more seconds to be written and
 * closes the socket, whatever the server does. Every pending operation
 * fails at once with %CAREHARE_ERROR_CONNECTION_CLOSED. Calling it again,
 * or after the connection closed by itself, is fine.
 *
 * Cancelling @cancellable stops the wait: the socket is closed at once,
 * and the close completes as it would have, with %TRUE (the connection
 * is closed all the same, not cancelled).
 *
 * Unlike other operations, a close does not keep the connection alive
 * while it waits for Close-Ok: a program that drops its last reference
 * right after calling it has the socket closed at once, and @callback
 * still runs, later, from the connection's main context.
 *
 * Closing while the connection is being initialised (before
 * g_async_initable_init_async() completed, or even started) stops
 * connecting: initialisation fails with %CAREHARE_ERROR_CONNECTION_CLOSED
 * and the connection stays closed.
 *
 * May be called from any thread. The callback runs on the thread-default
 * main context of the calling thread, as for every call; the connection's
 * own context must be iterated until then, since it does the work.
 */
void
carehare_connection_close_async (CarehareConnection  *self,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_autoptr(CarehareConnection) keep = NULL;
  GTask *task;

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  /* Closing completes every pending operation, whose callbacks may drop
   * the program's last reference. */
  keep = g_object_ref (self);
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, carehare_connection_close_async);
  g_task_set_check_cancellable (task, FALSE);
  g_task_set_task_data (task, g_new0 (CloseData, 1), (GDestroyNotify) close_data_free);
  /* From another thread: queued (with the task's reference, which
   * close_run() consumes), not waited for. */
  _carehare_connection_run_nowait (self, close_run, task, pass_task, NULL);
}

static gpointer
pass_task (gpointer task)
{
  return task;
}

/* close_async() with the context held; @user_data is the task's reference. */
static void
close_run (CarehareConnection *self,
           gpointer            user_data)
{
  GTask *task = user_data;
  CloseData *data = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);
  CarehareProtocolOp *op;

  if (self->init_task != NULL || (!self->initialized && self->protocol == NULL))
    {
      /* Connecting, or never connected: whatever stage connecting is at
       * (resolving, TCP, TLS, the AMQP handshake) stops, and nothing
       * connects later. */
      self->close_requested = TRUE;
      if (self->init_task != NULL)
        init_fail (self, g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                      "Connection to %s closed by the application while connecting",
                                      _carehare_transport_get_redacted_uri (self->transport)));
      close_task_return (task);
      return;
    }
  if (self->protocol == NULL)
    {
      close_task_return (task);
      return;
    }

  /* While it waits for Close-Ok, the task does not keep the connection
   * alive: a program (a worker thread) that drops its last reference
   * without waiting has the socket closed at once, in dispose. The
   * reference is taken back in close_done_cb() or dispose. The list keeps
   * the task until it returns; the protocol op holds the reference made
   * here until it completes. */
  data->borrowed = TRUE;
  g_object_unref (self);
  g_ptr_array_add (self->close_tasks, g_object_ref (task));
  op = carehare_protocol_close (self->protocol, g_get_monotonic_time (), close_done_cb, task);
  /* The task is alive here even if it completed (the list holds it, or
   * GTask's idle when it returned during the call that made it). */
  if (!data->done)
    data->op = op;
  if (cancellable != NULL && !data->returned)
    {
      data->cancellable = g_object_ref (cancellable);
      data->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (close_cancelled_cb),
                                                  g_object_ref (task), g_object_unref);
    }
  update (self);
}

/**
 * carehare_connection_close_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Connection.close_async].
 *
 * Returns: %TRUE if we closed the connection (also when the close was
 *   cancelled, timed out, or stopped connecting); %FALSE with the cause if
 *   the server, the heartbeat monitor or a socket error had closed it first
 */
gboolean
carehare_connection_close_finish (CarehareConnection  *self,
                                  GAsyncResult        *result,
                                  GError             **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == carehare_connection_close_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

void
_carehare_connection_run_nowait (CarehareConnection        *self,
                                 CarehareConnectionRunFunc  func,
                                 gpointer                   data,
                                 GBoxedCopyFunc             copy,
                                 GDestroyNotify             free_data)
{
  if (!_carehare_connection_run_here (self, func, data))
    _carehare_connection_run_later (self, func, copy (data), free_data);
}

/* ---- calls from any thread (carehare-connection-mailbox.c) --------------- */

/* The mailbox calls our functions through this, as their own type. */
static void
connection_invoke (GCallback func,
                   gpointer  owner,
                   gpointer  data)
{
  ((CarehareConnectionRunFunc) func) (owner, data);
}

gboolean
_carehare_connection_run_here (CarehareConnection        *self,
                               CarehareConnectionRunFunc  func,
                               gpointer                   data)
{
  return _carehare_mailbox_run_here (self->mailbox, self->context, connection_invoke, self,
                                     (GCallback) func, data);
}

void
_carehare_connection_run (CarehareConnection        *self,
                          CarehareConnectionRunFunc  func,
                          gpointer                   data)
{
  _carehare_mailbox_run (self->mailbox, self->context, connection_invoke, self,
                         (GCallback) func, data);
}

gboolean
_carehare_connection_dispose_elsewhere (CarehareConnection *self,
                                        GObject            *object)
{
  return _carehare_mailbox_dispose_elsewhere (self->mailbox, self->context, object);
}

void
_carehare_connection_run_later (CarehareConnection        *self,
                                CarehareConnectionRunFunc  func,
                                gpointer                   data,
                                GDestroyNotify             destroy)
{
  _carehare_mailbox_run_later (self->mailbox, connection_invoke, self, (GCallback) func, data,
                               destroy);
}

void
_carehare_connection_signal (CarehareConnection *self,
                             int                *done)
{
  _carehare_mailbox_signal (self->mailbox, done);
}

void
_carehare_connection_wait_until (CarehareConnection *self,
                                 int                *done)
{
  _carehare_mailbox_wait_until (self->mailbox, self->context, done);
}

/* ---- private ------------------------------------------------------------- */

CarehareProtocol *
_carehare_connection_get_protocol (CarehareConnection *self)
{
  return self->protocol;
}

CarehareTracked *
_carehare_connection_get_tracked (CarehareConnection *self)
{
  return self->tracked;
}

CarehareTransport *
_carehare_connection_get_transport (CarehareConnection *self)
{
  return self->transport;
}

GMainContext *
_carehare_connection_get_context (CarehareConnection *self)
{
  return self->context;
}

void
_carehare_connection_update (CarehareConnection *self)
{
  update (self);
}
