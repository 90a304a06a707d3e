/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareConnection: the GObject and I/O layer over the sans-I/O protocol
 * core (carehare-protocol.c). It owns the socket (TCP, or TLS through
 * GTlsClientConnection), one read loop, one write loop that sends whatever
 * the protocol produced since the last write in a single write, and one
 * timer source whose ready time is the protocol's next deadline
 * (heartbeats, close timeout). Every source lives on the thread-default
 * main context captured at construction and is destroyed in dispose; the
 * read and write callbacks hold only weak references, so an idle connection
 * dies with its last reference.
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
#include "carehare-properties-private.h"
#include "carehare-protocol.h"
#include "carehare-tls-stream-private.h"
#include "carehare-uri.h"
#include "carehare-version.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 30000
#define CLOSE_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define READ_SIZE (256 * 1024)  /* two whole frames at the default frame_max */
/* How long the last frames (Close, Close-Ok) may take to write once the
 * connection is over, before the socket is closed regardless. */
#define LINGER_MS 2000

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
 * that was thread-default when the connection was created: every callback
 * runs there, and every call must be made there. A call from another thread
 * or main context is refused with a critical warning. That context must be
 * iterated until every pending call has completed,
 * [method@Carehare.Connection.close_async] included.
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

  /* construct-only */
  char *uri;                      /* owned; never exposed, it may hold a password */
  char **uris;                    /* owned; likewise; tried in order when set */
  GTlsDatabase *tls_database;     /* owned, nullable */
  GTlsCertificate *tls_certificate; /* owned, nullable */
  guint connect_timeout_ms;       /* 0: from the URI, else the default */
  guint64 max_body_size;          /* 0: from the URI, else the default */
  guint attempt_timeout_ms;       /* the current attempt's */

  CarehareUriSettings settings;   /* owned members */
  char *redacted_uri;             /* owned: for messages */

  CarehareProtocol *protocol;     /* owned */
  GIOStream *stream;              /* owned: socket or TLS connection */
  GCancellable *io_cancellable;   /* owned: cancels reads and writes in dispose */
  GSource *timer;                 /* owned, attached: fires at the protocol deadline */
  GSource *flush_source;          /* owned, attached: writes pending output once per iteration */
  GSource *read_source;           /* owned, attached: the stream is readable */
  GSource *write_source;          /* owned, attached while a write would block */
  guint8 *read_buf;               /* owned: READ_SIZE bytes, reused for every read */
  GPtrArray *out_segments;        /* owned GBytes: being written, from out_index/out_offset on */
  guint out_index;
  gsize out_offset;
  gboolean writing;               /* a write is in flight (or waits for POLLOUT) */
  gboolean flushing;              /* inside flush_now() */
  gint64 eager_flush_time;        /* the main-loop iteration of the last eager flush */
  gboolean stream_closing;        /* g_io_stream_close_async() started */
  gboolean force_close;           /* stop writing: close the socket now */
  GSource *linger;                /* owned, attached after the protocol finished */
  gboolean stream_closed;

  /* initialisation: one attempt per URI, in order, until one completes
   * the handshake. Everything an attempt creates is torn down before the
   * next; callbacks of an abandoned attempt see a stale generation and do
   * nothing. */
  guint generation;               /* bumped when an attempt is abandoned */
  char **attempt_uris;            /* owned: uris, or just uri */
  guint attempt;                  /* index into attempt_uris */
  GString *failures;              /* owned while initialising: each failed attempt */
  GError *last_failure;           /* owned while initialising */
  GCancellable *attempt_cancellable; /* owned: stops this attempt's GIO calls */
  GPtrArray *dead_protocols;      /* owned: abandoned attempts', freed outside their callbacks */
  GTask *init_task;               /* owned while initialising */
  GCancellable *init_cancellable; /* owned while initialising: the caller's, relayed */
  GCancellable *init_user_cancellable; /* owned while initialising */
  gulong init_cancelled_id;
  GSource *init_timeout;          /* owned while initialising */
  GSource *init_cancel_source;    /* owned while initialising */
  gboolean init_timed_out;
  gboolean initialized;
  GTlsCertificateFlags tls_errors; /* why the server's certificate was refused */

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
  N_PROPS
};

enum {
  SIGNAL_CLOSED,
  N_SIGNALS
};

static GParamSpec *obj_props[N_PROPS];
static guint signals[N_SIGNALS];

static void carehare_connection_async_initable_iface_init (GAsyncInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (CarehareConnection, carehare_connection, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_ASYNC_INITABLE,
                                                      carehare_connection_async_initable_iface_init))

static void update (CarehareConnection *self);
static void start_read (CarehareConnection *self);
static void init_fail (CarehareConnection *self,
                       GError             *error);
static GIOStream *tls_base_stream (GIOStream *tls);
static GError *tls_refusal (CarehareConnection *self,
                            const GError       *error);

/* ---- I/O ----------------------------------------------------------------- */

static void
destroy_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

/* What an asynchronous call of ours gets back: the connection, unless it
 * is gone or the attempt that made the call was abandoned. */
typedef struct {
  GWeakRef self;
  guint generation;
} IoData;

static IoData *
io_data_new (CarehareConnection *self)
{
  IoData *data = g_new0 (IoData, 1);

  g_weak_ref_init (&data->self, self);
  data->generation = self->generation;
  return data;
}

/* Frees @data; returns a reference on the connection if it still cares. */
static CarehareConnection *
io_data_finish (IoData *data)
{
  CarehareConnection *self = g_weak_ref_get (&data->self);

  if (self != NULL && self->generation != data->generation)
    g_clear_object (&self);
  g_weak_ref_clear (&data->self);
  g_free (data);
  return self;
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

/* The TCP socket under the stream, under TLS too. */
static GSocket *
stream_socket (GIOStream *stream)
{
  g_autoptr(GIOStream) base = NULL;

  if (G_IS_TLS_CONNECTION (stream))
    {
      g_object_get (stream, "base-io-stream", &base, NULL);
      stream = base;  /* the TLS connection keeps it */
    }
  return G_IS_SOCKET_CONNECTION (stream)
         ? g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream)) : NULL;
}

/* Stops writing and shuts the socket down, so that nothing the peer does
 * or does not do keeps it open: not a write waiting for a peer that
 * stopped reading, not a TLS close_notify that cannot be written. What was
 * not written yet is dropped. */
static void
shut_down_socket (CarehareConnection *self)
{
  GSocket *socket;

  destroy_source (&self->write_source);
  self->writing = FALSE;
  g_clear_pointer (&self->out_segments, g_ptr_array_unref);
  if (self->stream != NULL && !self->stream_closed &&
      (socket = stream_socket (self->stream)) != NULL && !g_socket_is_closed (socket))
    g_socket_shutdown (socket, TRUE, TRUE, NULL);
}

static void
stream_closed_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(CarehareConnection) self = io_data_finish (user_data);

  g_io_stream_close_finish (G_IO_STREAM (source), result, NULL);
  if (self == NULL)
    return;

  self->stream_closed = TRUE;
  destroy_source (&self->linger);
  return_close_tasks (self);
}

/* The protocol finished and its last bytes are written: close the socket. */
static void
maybe_close_stream (CarehareConnection *self)
{
  if (self->stream == NULL || self->stream_closing || self->writing ||
      !carehare_protocol_is_finished (self->protocol) ||
      (carehare_protocol_has_output (self->protocol) && !self->force_close))
    return;

  self->stream_closing = TRUE;
  destroy_source (&self->read_source);
  g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL,
                           stream_closed_cb, io_data_new (self));
}

/* A read or write failed. */
static void
io_failed (CarehareConnection *self,
           const GError       *error)
{
  g_autoptr(GError) cause = NULL;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (self->init_task != NULL && G_IS_TLS_CONNECTION (self->stream))
    {
      /* A refusal by the broker ends the attempt as a TLS error; a
       * connection lost is a closed connection like any other, and the
       * reset a write found (and the stream under TLS hid) says why. */
      g_autoptr(GIOStream) base = tls_base_stream (self->stream);
      GError *refusal = tls_refusal (self, error);

      if (refusal != NULL)
        {
          init_fail (self, refusal);
          return;
        }
      cause = carehare_tls_base_stream_dup_write_error (base);
      if (cause != NULL)
        error = cause;
    }
  g_debug ("socket error: %s", error->message);
  carehare_protocol_abort (self->protocol, error);
}

static gboolean write_ready_cb (GObject *stream, gpointer user_data);

/* Writes what the protocol produced, without blocking, until the socket
 * would block; then a source waits for POLLOUT: no GTask and no copy per
 * write. (Socket and TLS streams are always pollable.) */
static void flush_now_unguarded (CarehareConnection *self);

static void
flush_now (CarehareConnection *self)
{
  /* An error while writing may close the connection, whose ::closed
   * handlers may call in again: one flush at a time. */
  if (self->flushing)
    return;
  self->flushing = TRUE;
  flush_now_unguarded (self);
  self->flushing = FALSE;
}

static void
flush_now_unguarded (CarehareConnection *self)
{
  GOutputStream *out;

  if (self->writing || self->stream == NULL || self->stream_closing)
    return;
  if (self->force_close)
    {
      maybe_close_stream (self);
      return;
    }

  out = g_io_stream_get_output_stream (self->stream);

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      GOutputVector vectors[64];
      guint n_vectors = 0;
      gsize written = 0;

      if (self->out_segments == NULL)
        {
          self->out_segments = carehare_protocol_take_output_segments (self->protocol,
                                                                       g_get_monotonic_time ());
          self->out_index = 0;
          self->out_offset = 0;
          if (self->out_segments == NULL)
            {
              maybe_close_stream (self);
              return;
            }
        }
      for (guint i = self->out_index; i < self->out_segments->len && n_vectors < G_N_ELEMENTS (vectors); i++)
        {
          gsize size;
          const guint8 *data = g_bytes_get_data (self->out_segments->pdata[i], &size);
          gsize skip = i == self->out_index ? self->out_offset : 0;

          vectors[n_vectors].buffer = data + skip;
          vectors[n_vectors].size = size - skip;
          n_vectors++;
        }
      if (g_pollable_output_stream_writev_nonblocking (G_POLLABLE_OUTPUT_STREAM (out), vectors,
                                                       n_vectors, &written, NULL, &error)
          == G_POLLABLE_RETURN_OK)
        {
          /* Advance past what was written. */
          while (written > 0)
            {
              gsize left = g_bytes_get_size (self->out_segments->pdata[self->out_index]) - self->out_offset;

              if (written < left)
                {
                  self->out_offset += written;
                  written = 0;
                }
              else
                {
                  written -= left;
                  self->out_index++;
                  self->out_offset = 0;
                }
            }
          if (self->out_index == self->out_segments->len)
            g_clear_pointer (&self->out_segments, g_ptr_array_unref);
          continue;
        }
      if (error == NULL)
        {
          /* G_POLLABLE_RETURN_WOULD_BLOCK */
          self->writing = TRUE;
          self->write_source = g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (out),
                                                                      NULL);
          g_source_set_callback (self->write_source, G_SOURCE_FUNC (write_ready_cb), self, NULL);
          g_source_set_static_name (self->write_source, "[carehare] writable");
          g_source_attach (self->write_source, self->context);
          return;
        }
      g_clear_pointer (&self->out_segments, g_ptr_array_unref);
      io_failed (self, error);
      if (self->protocol != NULL)
        maybe_close_stream (self);
      return;
    }
}

static gboolean
write_ready_cb (GObject  *stream,
                gpointer  user_data)
{
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);

  g_clear_pointer (&self->write_source, g_source_unref);
  self->writing = FALSE;
  flush_now (self);
  update (self);
  return G_SOURCE_REMOVE;
}

/* The flush source is ready whenever the protocol has output that is not
 * being written: everything produced during one main-loop iteration goes
 * out in one write at the next, with no source created per write. */
typedef struct {
  GSource source;
  CarehareConnection *self;  /* not owned: the source dies in dispose */
} FlushSource;

static gboolean
flush_check (GSource *source)
{
  CarehareConnection *self = ((FlushSource *) source)->self;

  return self->protocol != NULL && self->stream != NULL && !self->writing &&
         !self->stream_closing && carehare_protocol_has_output (self->protocol);
}

static gboolean
flush_prepare (GSource *source,
               gint    *timeout)
{
  *timeout = -1;
  return flush_check (source);
}

static gboolean
flush_dispatch (GSource     *source,
                GSourceFunc  callback,
                gpointer     user_data)
{
  /* Alive until we return, whatever a signal handler does. */
  g_autoptr(CarehareConnection) self = g_object_ref (((FlushSource *) source)->self);

  flush_now (self);
  update (self);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs flush_funcs = {
  .prepare = flush_prepare,
  .check = flush_check,
  .dispatch = flush_dispatch,
};

/* After anything that may have changed the protocol's state: write what it
 * produced (once per main-loop dispatch, so frames produced together go out
 * in one write) and re-arm the timer. */
static void
update (CarehareConnection *self)
{
  gint64 deadline;

  if (self->protocol == NULL)
    return;

  /* The first output of a main-loop iteration goes out at once (one
   * syscall, no wait for the next iteration: that is the latency of a
   * request); what follows in the same iteration is left to the flush
   * source, so that it goes out together. With no output, a finished
   * connection closes its socket. */
  if (self->stream != NULL && !self->writing && self->flush_source != NULL &&
      !self->force_close && carehare_protocol_has_output (self->protocol))
    {
      gint64 iteration = g_source_get_time (self->flush_source);

      if (iteration != self->eager_flush_time)
        {
          self->eager_flush_time = iteration;
          flush_now (self);
          if (self->protocol == NULL)
            return;
        }
    }
  if (self->stream != NULL && !self->writing &&
      (self->force_close || !carehare_protocol_has_output (self->protocol)))
    maybe_close_stream (self);

  /* Setting a ready time wakes the main context: only move the timer
   * earlier. A timer that fires too early just ticks and is set again. */
  deadline = carehare_protocol_get_deadline (self->protocol);
  if (self->timer != NULL && deadline != G_MAXINT64)
    {
      gint64 ready = g_source_get_ready_time (self->timer);

      if (ready == -1 || deadline < ready)
        g_source_set_ready_time (self->timer, deadline);
    }
}

/* Feeds @size bytes (or end of file, @size 0, or @error) to the protocol.
 * Returns TRUE to keep reading. */
static gboolean
handle_read (CarehareConnection *self,
             const guint8       *data,
             gssize              size,
             const GError       *error)
{
  if (error != NULL)
    {
      io_failed (self, error);
      return FALSE;
    }
  if (size == 0)
    {
      g_autoptr(GError) eof = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                                   "the server closed the socket");
      carehare_protocol_abort (self->protocol, eof);
      return FALSE;
    }
  return carehare_protocol_receive (self->protocol, data, size, g_get_monotonic_time ());
}

/* Drains what the socket holds (bounded, so one busy connection cannot
 * starve the main loop), answering as we go. Returns FALSE when reading is
 * over: end of file, an error, the protocol finished, or the attempt was
 * abandoned (its read source is gone then). */
static gboolean
read_available (CarehareConnection *self)
{
  GInputStream *stream = g_io_stream_get_input_stream (self->stream);
  guint generation = self->generation;
  gboolean more = TRUE;

  for (guint i = 0; i < 16 && more; i++)
    {
      g_autoptr(GError) error = NULL;
      gssize n;

      n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream),
                                                    self->read_buf, READ_SIZE, NULL, &error);
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      more = handle_read (self, self->read_buf, n > 0 ? n : 0, error);
      if (self->generation != generation)
        return FALSE;
      /* A short read drained the socket: don't pay a read that would
       * block. (Bytes a TLS layer still holds make the source ready again.) */
      if (n > 0 && n < READ_SIZE)
        break;
    }
  return more;
}

static gboolean
read_ready_cb (GObject  *stream,
               gpointer  user_data)
{
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);
  guint generation = self->generation;
  gboolean more = read_available (self);

  if (self->generation != generation)
    return G_SOURCE_REMOVE;  /* the attempt was abandoned: its source is gone */
  flush_now (self);
  update (self);
  if (more)
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&self->read_source, g_source_unref);
  return G_SOURCE_REMOVE;
}

static void
start_read (CarehareConnection *self)
{
  /* Socket and TLS streams are always pollable. */
  GInputStream *in = g_io_stream_get_input_stream (self->stream);

  if (self->read_buf == NULL)
    self->read_buf = g_malloc (READ_SIZE);
  self->read_source = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (in), NULL);
  g_source_set_callback (self->read_source, G_SOURCE_FUNC (read_ready_cb), self, NULL);
  g_source_set_static_name (self->read_source, "[carehare] readable");
  g_source_attach (self->read_source, self->context);
}

static gboolean
timer_dispatch (GSource     *source,
                GSourceFunc  callback,
                gpointer     user_data)
{
  /* The tick may emit ::closed, whose handler may drop the last reference. */
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);
  guint generation = self->generation;

  g_source_set_ready_time (source, -1);
  /* The heartbeat monitor judges the server by what arrived from it. After
   * the main loop stalled, what waits in the socket has arrived too, but
   * the read source may be dispatched after this timer: read it first. */
  if (self->read_source != NULL && !self->stream_closing && !read_available (self))
    {
      if (self->generation != generation)
        return G_SOURCE_REMOVE;  /* the attempt was abandoned: this source is gone */
      destroy_source (&self->read_source);
    }
  carehare_protocol_tick (self->protocol, g_get_monotonic_time ());
  update (self);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs timer_funcs = {
  .dispatch = timer_dispatch,
};

/* ---- protocol callbacks -------------------------------------------------- */

static void
force_close (CarehareConnection *self)
{
  self->force_close = TRUE;
  if (self->io_cancellable != NULL)
    g_cancellable_cancel (self->io_cancellable);
  shut_down_socket (self);
  update (self);
}

static gboolean
linger_cb (gpointer user_data)
{
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);

  g_clear_pointer (&self->linger, g_source_unref);
  if (!self->stream_closing)
    g_debug ("the last frames were not written in %u ms: closing the socket", LINGER_MS);
  force_close (self);
  return G_SOURCE_REMOVE;
}

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
    g_debug ("connection to %s closed: %s", self->redacted_uri, error->message);
  else
    g_debug ("connection to %s closed", self->redacted_uri);

  /* A peer that stopped reading must not keep the socket open: the last
   * frames get a bounded time, and none after a heartbeat timeout. */
  if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR))
    force_close (self);
  else if (self->initialized && self->linger == NULL && self->stream != NULL)
    {
      self->linger = g_timeout_source_new (LINGER_MS);
      g_source_set_callback (self->linger, linger_cb, self, NULL);
      g_source_set_static_name (self->linger, "[carehare] linger");
      g_source_attach (self->linger, self->context);
    }

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
  g_debug ("connection %s%s%s", blocked ? "blocked" : "unblocked",
           reason != NULL ? ": " : "", reason != NULL ? reason : "");
  if (self->is_blocked == blocked)
    return;
  self->is_blocked = blocked;
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_IS_BLOCKED]);
}

static const CarehareProtocolCallbacks protocol_callbacks = {
  .finished = protocol_finished_cb,
  .blocked_changed = protocol_blocked_cb,
};

/* ---- initialisation ------------------------------------------------------ */

static void attempt_start (CarehareConnection *self);

/* Ends initialisation's own state (not the connection's). */
static void
init_cleanup (CarehareConnection *self)
{
  if (self->init_user_cancellable != NULL)
    g_cancellable_disconnect (self->init_user_cancellable, self->init_cancelled_id);
  self->init_cancelled_id = 0;
  g_clear_object (&self->init_user_cancellable);
  g_clear_object (&self->init_cancellable);
  destroy_source (&self->init_timeout);
  destroy_source (&self->init_cancel_source);
  g_clear_pointer (&self->attempt_uris, g_strfreev);
  if (self->failures != NULL)
    g_string_free (g_steal_pointer (&self->failures), TRUE);
  g_clear_error (&self->last_failure);
}

/* Abandons the current attempt: everything it started is stopped, and its
 * callbacks, still to come, find a stale generation. */
static void
attempt_teardown (CarehareConnection *self)
{
  self->generation++;
  if (self->attempt_cancellable != NULL)
    g_cancellable_cancel (self->attempt_cancellable);
  g_clear_object (&self->attempt_cancellable);
  if (self->io_cancellable != NULL)
    g_cancellable_cancel (self->io_cancellable);
  g_clear_object (&self->io_cancellable);
  destroy_source (&self->init_timeout);
  destroy_source (&self->timer);
  destroy_source (&self->flush_source);
  destroy_source (&self->linger);
  destroy_source (&self->read_source);
  destroy_source (&self->write_source);
  g_clear_pointer (&self->out_segments, g_ptr_array_unref);

  if (self->protocol != NULL)
    {
      g_autoptr(GError) gone = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                                    "connection attempt abandoned");

      carehare_protocol_abort (self->protocol, gone);
      /* We may be inside one of its callbacks: free it later. */
      g_ptr_array_add (self->dead_protocols, g_steal_pointer (&self->protocol));
    }
  if (self->stream != NULL)
    {
      if (!self->stream_closing)
        g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      g_clear_object (&self->stream);
    }
  self->writing = FALSE;
  self->stream_closing = FALSE;
  self->stream_closed = FALSE;
  self->force_close = FALSE;
  self->is_closed = FALSE;
  self->is_blocked = FALSE;
  self->init_timed_out = FALSE;
  self->tls_errors = 0;
}

static gboolean
next_attempt_cb (gpointer user_data)
{
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);

  if (self->init_task != NULL)
    attempt_start (self);
  return G_SOURCE_REMOVE;
}

/* The current attempt failed with @error (taken): try the next URI, or
 * complete initialisation with the error. Our own cancellations become the
 * timeout or the caller's cancellation. */
static void
init_fail (CarehareConnection *self,
           GError             *error)
{
  g_autoptr(GTask) task = NULL;
  gboolean cancelled;
  guint n_attempts;

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
  else if (!cancelled && self->init_timed_out)
    {
      g_error_free (error);
      error = g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                           "Connecting to %s timed out after %u ms",
                           self->redacted_uri, self->attempt_timeout_ms);
    }
  g_debug ("connecting to %s failed: %s", self->redacted_uri, error->message);
  attempt_teardown (self);

  n_attempts = self->attempt + 1;
  if (!cancelled && !self->close_requested && self->attempt_uris[n_attempts] != NULL)
    {
      g_autoptr(GSource) idle = g_idle_source_new ();

      g_string_append_printf (self->failures, "%s%s: %s", self->failures->len > 0 ? "; " : "",
                              self->redacted_uri, error->message);
      g_error_free (error);
      self->attempt++;
      /* Not from here: we may be inside the abandoned protocol's callback. */
      g_source_set_callback (idle, next_attempt_cb, g_object_ref (self), g_object_unref);
      g_source_set_static_name (idle, "[carehare] next connection attempt");
      g_source_attach (idle, self->context);
      return;
    }

  if (n_attempts > 1 && !cancelled && !self->close_requested)
    {
      /* Keep the last attempt's domain and code, so a program can still
       * match (say) a refused login; the message names every attempt,
       * the last one first: carehare_error_get_reply_code() reads the
       * first reply code in it, and a binding copies only the message. */
      GError *all = g_error_new (error->domain, error->code,
                                 "Could not connect to any of %u brokers; last attempt, %s: %s; "
                                 "earlier: %s",
                                 n_attempts, self->redacted_uri, error->message,
                                 self->failures->str);
      g_error_free (error);
      error = all;
    }
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
  g_autoptr(CarehareConnection) self = io_data_finish (user_data);
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
  g_clear_object (&self->attempt_cancellable);
  if (G_IS_TLS_CONNECTION (self->stream))
    {
      g_autoptr(GIOStream) base = tls_base_stream (self->stream);

      carehare_tls_base_stream_connected (base);
    }
  self->initialized = TRUE;
  g_debug ("connected to %s: heartbeat %u s, frame_max %u, channel_max %u",
           self->redacted_uri,
           carehare_protocol_get_heartbeat (self->protocol),
           carehare_protocol_get_frame_max (self->protocol),
           carehare_protocol_get_channel_max (self->protocol));
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_HEARTBEAT]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_FRAME_MAX]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_CHANNEL_MAX]);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_SERVER_PROPERTIES]);
  g_task_return_boolean (task, TRUE);
}

static void
stream_ready (CarehareConnection *self,
              GIOStream          *stream)
{
  CarehareProtocolConfig config = { 0 };
  g_autofree char *platform = NULL;

  self->stream = stream;
  self->io_cancellable = g_cancellable_new ();

  platform = g_strdup_printf ("GLib %u.%u.%u", glib_major_version, glib_minor_version,
                              glib_micro_version);
  config.username = self->settings.username;
  config.password = self->settings.password;
  config.vhost = self->settings.vhost;
  config.mechanism = self->settings.auth_mechanism;
  config.heartbeat = self->settings.heartbeat;
  config.channel_max = self->settings.channel_max;
  config.frame_max = self->settings.frame_max;
  config.connection_name = self->settings.connection_name;
  config.product = "carehare-glib";
  config.version = CAREHARE_VERSION_S;
  config.platform = platform;
  config.close_timeout_us = CLOSE_TIMEOUT_US;
  /* The property wins over the URI; 0 from both: the protocol's default. */
  config.max_body_size = self->max_body_size > 0 ? self->max_body_size
                         : self->settings.max_body_size > 0 ? (guint64) self->settings.max_body_size
                         : 0;
  self->protocol = carehare_protocol_new (&config, &protocol_callbacks, self);

  self->timer = g_source_new (&timer_funcs, sizeof (GSource));
  g_source_set_callback (self->timer, NULL, self, NULL);
  g_source_set_static_name (self->timer, "[carehare] heartbeat");
  g_source_set_ready_time (self->timer, -1);
  g_source_attach (self->timer, self->context);

  self->flush_source = g_source_new (&flush_funcs, sizeof (FlushSource));
  ((FlushSource *) self->flush_source)->self = self;
  g_source_set_static_name (self->flush_source, "[carehare] flush");
  g_source_attach (self->flush_source, self->context);

  carehare_protocol_start (self->protocol, g_get_monotonic_time (), handshake_done_cb,
                           io_data_new (self));
  start_read (self);
  update (self);
}

static char *
describe_certificate_errors (GTlsCertificateFlags flags)
{
  static const struct {
    GTlsCertificateFlags flag;
    const char *text;
  } reasons[] = {
    { G_TLS_CERTIFICATE_UNKNOWN_CA, "it is not signed by a trusted certificate authority" },
    { G_TLS_CERTIFICATE_BAD_IDENTITY, "it does not match the server's host name" },
    { G_TLS_CERTIFICATE_NOT_ACTIVATED, "it is not valid yet" },
    { G_TLS_CERTIFICATE_EXPIRED, "it has expired" },
    { G_TLS_CERTIFICATE_REVOKED, "it has been revoked" },
    { G_TLS_CERTIFICATE_INSECURE, "its algorithm is insecure" },
    { G_TLS_CERTIFICATE_GENERIC_ERROR, "it could not be validated" },
  };
  GString *text = g_string_new (NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (reasons); i++)
    if (flags & reasons[i].flag)
      {
        if (text->len > 0)
          g_string_append (text, "; ");
        g_string_append (text, reasons[i].text);
      }
  return g_string_free (text, FALSE);
}

/* The stream under our TLS connection @tls (a reference). */
static GIOStream *
tls_base_stream (GIOStream *tls)
{
  GIOStream *base = NULL;

  g_object_get (tls, "base-io-stream", &base, NULL);
  g_assert (carehare_is_tls_base_stream (base));
  return base;
}

/* "/path/client.pem", or the subject of the tls-certificate property's. */
static char *
describe_client_certificate (CarehareConnection *self)
{
  g_autofree char *subject = NULL;

  if (self->tls_certificate == NULL)
    return g_strdup (self->settings.certfile);
  subject = g_tls_certificate_get_subject_name (self->tls_certificate);
  return g_strdup_printf ("'%s'", subject != NULL ? subject : "(no subject)");
}

/* If @error, from a read or write of the TLS connection after its
 * handshake and before the AMQP handshake completed, says that the broker
 * refused us: the G_TLS_ERROR to report. NULL if the connection was lost.
 *
 * With TLS 1.3 the broker judges our certificate after our side of the
 * handshake completed: its refusal is an alert that arrives on the first
 * read, whatever its reset did to our writes (the stream under TLS hides
 * that reset while connecting, see carehare-tls-stream-private.h). A TLS
 * error with the stream under it still open is such a refusal; a TLS
 * error because that stream ended (no close_notify, a record cut short)
 * is a network drop, worth a retry like any other. */
static GError *
tls_refusal (CarehareConnection *self,
             const GError       *error)
{
  g_autoptr(GIOStream) base = tls_base_stream (self->stream);
  gboolean refused;

  if (error->domain != G_TLS_ERROR)
    refused = FALSE;
  else if (error->code == G_TLS_ERROR_CERTIFICATE_REQUIRED ||
           error->code == G_TLS_ERROR_BAD_CERTIFICATE)
    refused = TRUE;
  else
    refused = error->code != G_TLS_ERROR_EOF && !carehare_tls_base_stream_read_ended (base);

  if (!refused)
    return NULL;
  if (self->tls_certificate != NULL || self->settings.certfile != NULL)
    {
      g_autofree char *certificate = describe_client_certificate (self);

      return g_error_new (G_TLS_ERROR, error->code,
                          "The broker at %s:%u refused the TLS client certificate %s: %s",
                          self->settings.host, self->settings.port, certificate,
                          error->message);
    }
  return g_error_new (G_TLS_ERROR, error->code, "TLS handshake with %s:%u failed: %s",
                      self->settings.host, self->settings.port, error->message);
}

static gboolean
accept_certificate_cb (GTlsConnection       *conn,
                       GTlsCertificate      *peer_cert,
                       GTlsCertificateFlags  errors,
                       gpointer              user_data)
{
  CarehareConnection *self = user_data;

  if (self->settings.verify == CAREHARE_TLS_VERIFY_NONE)
    return TRUE;  /* verify=verify_none: the user asked for no checks */

  /* server_name_indication=disable: no server identity was given, so GIO
   * flags every certificate as not matching it; only that is skipped. */
  if (self->settings.server_name_indication_disabled)
    errors &= ~G_TLS_CERTIFICATE_BAD_IDENTITY;
  if (errors == 0)
    return TRUE;
  self->tls_errors = errors;
  return FALSE;
}

static void
tls_handshake_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(CarehareConnection) self = io_data_finish (user_data);
  g_autoptr(GIOStream) tls = G_IO_STREAM (source);  /* ours since g_tls_client_connection_new() */
  g_autoptr(GError) error = NULL;
  gboolean ok;

  ok = g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error);
  if (self == NULL)
    return;
  g_signal_handlers_disconnect_by_data (source, self);
  if (ok)
    stream_ready (self, g_steal_pointer (&tls));
  else if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE) &&
           self->tls_errors != 0)
    {
      g_autofree char *why = describe_certificate_errors (self->tls_errors);

      init_fail (self, g_error_new (G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                                    "The TLS certificate of %s:%u was refused: %s",
                                    self->settings.host, self->settings.port, why));
    }
  else
    {
      /* A reset our writes found (hidden, so that what came before it
       * was read) says more than the end of the stream that followed. */
      g_autoptr(GIOStream) base = tls_base_stream (G_IO_STREAM (source));
      g_autoptr(GError) reset = carehare_tls_base_stream_dup_write_error (base);

      if (!carehare_tls_base_stream_read_ended (base))
        g_clear_error (&reset);
      init_fail (self, g_error_new (error->domain, error->code, "TLS handshake with %s:%u failed: %s",
                                    self->settings.host, self->settings.port,
                                    reset != NULL ? reset->message : error->message));
    }
}

static void
socket_connected_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(CarehareConnection) self = io_data_finish (user_data);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketConnection) conn = NULL;
  g_autoptr(GSocketConnectable) identity = NULL;
  g_autoptr(GIOStream) base = NULL;
  GIOStream *tls;
  const char *server_name;

  conn = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);
  if (self == NULL)
    return;
  if (conn == NULL)
    {
      init_fail (self, g_error_new (error->domain, error->code,
                                    "Cannot connect to %s:%u: %s", self->settings.host,
                                    self->settings.port, error->message));
      return;
    }

  /* AMQP frames are small and latency matters. */
  g_socket_set_option (g_socket_connection_get_socket (conn), IPPROTO_TCP, TCP_NODELAY, 1, NULL);

  if (!self->settings.tls)
    {
      stream_ready (self, G_IO_STREAM (g_steal_pointer (&conn)));
      return;
    }

  /* server_name_indication=disable: neither SNI nor a host name check, as
   * in RabbitMQ's Erlang client; the chain is still verified. */
  server_name = self->settings.server_name_indication != NULL
                ? self->settings.server_name_indication : self->settings.host;
  if (!self->settings.server_name_indication_disabled)
    identity = g_network_address_new (server_name, self->settings.port);
  base = carehare_tls_base_stream_new (conn);
  tls = g_tls_client_connection_new (base, identity, &error);
  if (tls == NULL)
    {
      init_fail (self, g_steal_pointer (&error));
      return;
    }

  if (self->tls_database != NULL)
    g_tls_connection_set_database (G_TLS_CONNECTION (tls), self->tls_database);
  else if (self->settings.cacertfile != NULL)
    {
      g_autoptr(GTlsDatabase) db = g_tls_file_database_new (self->settings.cacertfile, &error);

      if (db == NULL)
        {
          g_object_unref (tls);
          init_fail (self, g_error_new (error->domain, error->code,
                                        "Cannot load cacertfile %s: %s",
                                        self->settings.cacertfile, error->message));
          return;
        }
      g_tls_connection_set_database (G_TLS_CONNECTION (tls), db);
    }

  if (self->tls_certificate != NULL)
    g_tls_connection_set_certificate (G_TLS_CONNECTION (tls), self->tls_certificate);
  else if (self->settings.certfile != NULL)
    {
      g_autoptr(GTlsCertificate) cert = NULL;

      cert = g_tls_certificate_new_from_files (self->settings.certfile,
                                               self->settings.keyfile, &error);
      if (cert == NULL)
        {
          g_object_unref (tls);
          init_fail (self, g_error_new (error->domain, error->code,
                                        "Cannot load certfile %s / keyfile %s: %s",
                                        self->settings.certfile, self->settings.keyfile,
                                        error->message));
          return;
        }
      g_tls_connection_set_certificate (G_TLS_CONNECTION (tls), cert);
    }

  g_signal_connect (tls, "accept-certificate", G_CALLBACK (accept_certificate_cb), self);
  g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT,
                                    self->attempt_cancellable, tls_handshake_cb,
                                    io_data_new (self));
}

static gboolean
init_timeout_cb (gpointer user_data)
{
  g_autoptr(CarehareConnection) self = g_object_ref (user_data);

  g_clear_pointer (&self->init_timeout, g_source_unref);
  self->init_timed_out = TRUE;
  init_fail (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "timed out"));
  return G_SOURCE_REMOVE;
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

/* Starts connecting to attempt_uris[attempt]. */
static void
attempt_start (CarehareConnection *self)
{
  g_autoptr(GSocketClient) client = NULL;
  g_autoptr(GSocketConnectable) address = NULL;
  const char *uri = self->attempt_uris[self->attempt];
  GError *error = NULL;
  guint timeout_ms;

  g_ptr_array_set_size (self->dead_protocols, 0);
  g_free (self->redacted_uri);
  self->redacted_uri = carehare_uri_redact (uri);
  carehare_uri_settings_clear (&self->settings);
  if (!carehare_uri_parse (uri, &self->settings, &error))
    {
      init_fail (self, error);
      return;
    }

  if (self->connect_timeout_ms > 0)
    timeout_ms = self->connect_timeout_ms;
  else if (self->settings.connection_timeout_ms >= 0)
    timeout_ms = (guint) MIN (self->settings.connection_timeout_ms, G_MAXUINT);
  else
    timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  self->attempt_timeout_ms = timeout_ms;

  self->attempt_cancellable = g_cancellable_new ();
  if (timeout_ms > 0)
    {
      self->init_timeout = g_timeout_source_new (timeout_ms);
      g_source_set_callback (self->init_timeout, init_timeout_cb, self, NULL);
      g_source_set_static_name (self->init_timeout, "[carehare] connect timeout");
      g_source_attach (self->init_timeout, self->context);
    }

  client = g_socket_client_new ();
  /* The desktop's proxy settings describe web traffic; applying them to a
   * broker connection would send AMQP to an HTTP proxy. (It also keeps
   * libproxy, and its thread, out of the process.) */
  g_socket_client_set_enable_proxy (client, FALSE);
  address = g_network_address_new (self->settings.host, self->settings.port);
  g_debug ("connecting to %s", self->redacted_uri);
  g_socket_client_connect_async (client, address, self->attempt_cancellable,
                                 socket_connected_cb, io_data_new (self));
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
    self->attempt_uris = g_strdupv (self->uris);
  else if (self->uri != NULL)
    {
      self->attempt_uris = g_new0 (char *, 2);
      self->attempt_uris[0] = g_strdup (self->uri);
    }
  else
    {
      g_task_return_new_error (task, CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI,
                               "No URI given: set the \"uri\" property to amqp://... or amqps://...");
      return;
    }
  self->attempt = 0;
  self->failures = g_string_new (NULL);
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
          init_fail (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                "Operation was cancelled"));
          return;
        }
    }
  attempt_start (self);
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

/* ---- GObject ------------------------------------------------------------- */

static void
carehare_connection_dispose (GObject *object)
{
  CarehareConnection *self = CAREHARE_CONNECTION (object);

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
  if (self->io_cancellable != NULL)
    g_cancellable_cancel (self->io_cancellable);
  destroy_source (&self->timer);
  destroy_source (&self->flush_source);
  destroy_source (&self->linger);
  destroy_source (&self->read_source);
  destroy_source (&self->write_source);
  /* Nobody may iterate our context any more (a worker thread that closed,
   * dropped its reference and ended): close the socket now, not when the
   * last pending callback has run, and complete the closes waiting for it. */
  if (self->stream != NULL && !self->stream_closed)
    {
      shut_down_socket (self);
      if (!self->stream_closing)
        g_io_stream_close (self->stream, NULL, NULL);
      self->stream_closed = TRUE;
    }
  return_close_tasks (self);
  init_cleanup (self);
  self->disposing = FALSE;

  G_OBJECT_CLASS (carehare_connection_parent_class)->dispose (object);
}

static void
carehare_connection_finalize (GObject *object)
{
  CarehareConnection *self = CAREHARE_CONNECTION (object);

  g_assert (self->timer == NULL);
  g_assert (self->flush_source == NULL);
  g_assert (self->linger == NULL);
  g_assert (self->read_source == NULL);
  g_assert (self->write_source == NULL);
  g_assert (self->init_task == NULL);

  g_clear_pointer (&self->out_segments, g_ptr_array_unref);
  g_free (self->read_buf);

  g_clear_object (&self->stream);
  g_clear_object (&self->io_cancellable);
  g_clear_object (&self->tls_database);
  g_clear_object (&self->tls_certificate);
  if (self->uri != NULL)
    memset (self->uri, 0, strlen (self->uri));
  g_free (self->uri);
  g_free (self->redacted_uri);
  carehare_uri_settings_clear (&self->settings);
  g_assert (self->close_tasks->len == 0);
  g_ptr_array_unref (self->close_tasks);
  g_ptr_array_unref (self->dead_protocols);
  g_strfreev (self->uris);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (carehare_connection_parent_class)->finalize (object);
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
      g_free (self->uri);
      self->uri = g_value_dup_string (value);
      break;
    case PROP_URIS:
      g_strfreev (self->uris);
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
   * `amqps://...`; see the URI reference for every parameter. Write-only:
   * it may hold a password, so it is never read back.
   */
  obj_props[PROP_URI] =
    g_param_spec_string ("uri", NULL, NULL, NULL,
                         G_PARAM_WRITABLE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConnection:uris:
   *
   * Broker URIs to try in order, for example the nodes of a cluster; the
   * first that completes the handshake is used. Takes precedence over
   * [property@Carehare.Connection:uri]. Write-only, like it.
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
   */
  signals[SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
carehare_connection_init (CarehareConnection *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->close_tasks = g_ptr_array_new ();
  self->dead_protocols = g_ptr_array_new_with_free_func ((GDestroyNotify) carehare_protocol_free);
}

/* ---- public API: creation and state -------------------------------------- */

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

/**
 * carehare_connection_get_heartbeat:
 * @self: a connection
 *
 * Gets the heartbeat interval negotiated with the server.
 *
 * Returns: the negotiated heartbeat interval in seconds, 0 if disabled
 */
guint
carehare_connection_get_heartbeat (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  return self->protocol != NULL ? carehare_protocol_get_heartbeat (self->protocol) : 0;
}

/**
 * carehare_connection_get_frame_max:
 * @self: a connection
 *
 * Gets the largest frame size negotiated with the server.
 *
 * Returns: the negotiated largest frame size in bytes
 */
guint
carehare_connection_get_frame_max (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  return self->protocol != NULL ? carehare_protocol_get_frame_max (self->protocol) : 0;
}

/**
 * carehare_connection_get_channel_max:
 * @self: a connection
 *
 * Gets the number of channels negotiated with the server.
 *
 * Returns: the negotiated number of channels
 */
guint
carehare_connection_get_channel_max (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  return self->protocol != NULL ? carehare_protocol_get_channel_max (self->protocol) : 0;
}

/**
 * carehare_connection_get_server_properties:
 * @self: a connection
 *
 * Gets what the server said of itself when the connection opened.
 *
 * Returns: (transfer none) (nullable): the server's properties as `a{sv}`
 */
GVariant *
carehare_connection_get_server_properties (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  return self->protocol != NULL ? carehare_protocol_get_server_properties (self->protocol) : NULL;
}

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
  if (self->stream_closed || self->stream == NULL)
    return_close_tasks (self);
  g_object_unref (task);
}

static gboolean
close_cancel_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  CloseData *data = g_task_get_task_data (task);
  /* Alive: while its close op is pending the connection is, and after it
   * the task holds it. */
  g_autoptr(CarehareConnection) self = g_object_ref (g_task_get_source_object (task));

  if (data->returned)
    return G_SOURCE_REMOVE;
  /* Stop waiting for Close-Ok (the connection is over at once: this
   * completes every close op), then close the socket without waiting
   * for the last frames to be written. */
  if (data->op != NULL && self->protocol != NULL)
    carehare_protocol_cancel (self->protocol, data->op);
  force_close (self);
  return G_SOURCE_REMOVE;
}

static void
close_cancelled_cb (GCancellable *cancellable,
                    gpointer      user_data)
{
  GTask *task = user_data;
  g_autoptr(GSource) idle = g_idle_source_new ();

  /* May run in any thread, and inside the cancellable's lock: defer the
   * work to our context. */
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, close_cancel_idle_cb, g_object_ref (task), g_object_unref);
  g_source_set_static_name (idle, "[carehare] close cancelled");
  g_source_attach (idle, g_task_get_context (task));
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
 * The callback runs on the main context the connection was created on,
 * which must be iterated until then.
 */
void
carehare_connection_close_async (CarehareConnection  *self,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_autoptr(CarehareConnection) keep = NULL;
  GTask *task;
  CloseData *data;
  CarehareProtocolOp *op;

  g_return_if_fail (CAREHARE_IS_CONNECTION (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  if (!_carehare_connection_check_context (self))
    return;

  /* Closing completes every pending operation, whose callbacks may drop
   * the program's last reference. */
  keep = g_object_ref (self);
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, carehare_connection_close_async);
  g_task_set_check_cancellable (task, FALSE);
  data = g_new0 (CloseData, 1);
  g_task_set_task_data (task, data, (GDestroyNotify) close_data_free);

  if (self->init_task != NULL || (!self->initialized && self->protocol == NULL))
    {
      /* Connecting, or never connected: whatever stage connecting is at
       * (resolving, TCP, TLS, the AMQP handshake) stops, and nothing
       * connects later. */
      self->close_requested = TRUE;
      if (self->init_task != NULL)
        init_fail (self, g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                      "Connection to %s closed by the application while connecting",
                                      self->redacted_uri));
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

/* ---- public API: operations ---------------------------------------------- */

static void
rpc_data_free (RpcData *data)
{
  g_clear_object (&data->cancellable);
  g_free (data->queue);
  g_free (data);
}

void
_carehare_connection_rpc_done_cb (CarehareProtocolOp   *op,
                                  const CarehareMethod *reply,
                                  const GError         *error,
                                  gpointer              user_data)
{
  GTask *task = user_data;
  RpcData *data = g_task_get_task_data (task);

  data->op = NULL;
  data->done = TRUE;
  if (data->cancelled_id != 0)
    {
      g_cancellable_disconnect (data->cancellable, data->cancelled_id);
      data->cancelled_id = 0;
    }

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

static gboolean
rpc_cancel_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  RpcData *data = g_task_get_task_data (task);
  CarehareConnection *self = g_task_get_source_object (task);

  if (data->op != NULL && self->protocol != NULL)
    {
      carehare_protocol_cancel (self->protocol, data->op);
      update (self);
    }
  return G_SOURCE_REMOVE;
}

static void
rpc_cancelled_cb (GCancellable *cancellable,
                  gpointer      user_data)
{
  GTask *task = user_data;
  g_autoptr(GSource) idle = g_idle_source_new ();

  /* May run in any thread, and inside the cancellable's lock: defer the
   * work to our context. */
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, rpc_cancel_idle_cb, g_object_ref (task), g_object_unref);
  g_source_set_static_name (idle, "[carehare] cancel");
  g_source_attach (idle, g_task_get_context (task));
}

/* After a protocol op was started for @task (whose data is an RpcData):
 * remember it for cancellation unless it already completed. */
void
_carehare_connection_watch_op (CarehareConnection *self,
                               GTask              *task,
                               CarehareProtocolOp *op)
{
  RpcData *data = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (!data->done)
    {
      data->op = op;
      if (cancellable != NULL)
        {
          data->cancellable = g_object_ref (cancellable);
          data->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (rpc_cancelled_cb),
                                                      g_object_ref (task), g_object_unref);
        }
    }
  update (self);
}

/* A task for an operation, or NULL when it already failed (the connection
 * never opened, or the cancellable was cancelled). */
GTask *
_carehare_connection_op_task_new (CarehareConnection  *self,
                                  gpointer             source_tag,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  GTask *task;

  if (!_carehare_connection_check_context (self))
    return NULL;
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, source_tag);
  g_task_set_task_data (task, g_new0 (RpcData, 1), (GDestroyNotify) rpc_data_free);

  if (self->protocol == NULL)
    {
      g_task_return_new_error (task, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                               "Connection closed: it was never opened, or was destroyed");
      g_object_unref (task);
      return NULL;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return NULL;
    }
  /* As in GIO, the task holds the connection until it has completed. */
  return task;
}

/* Runs @method on a pooled channel for a new task. @method's pointers are
 * borrowed: it is encoded before this returns. */
void
_carehare_connection_start_rpc (CarehareConnection   *self,
                                gpointer              source_tag,
                                const CarehareMethod *method,
                                guint32               reply_id,
                                GCancellable         *cancellable,
                                GAsyncReadyCallback   callback,
                                gpointer              user_data)
{
  g_autoptr(CarehareConnection) keep = NULL;
  GTask *task;
  CarehareProtocolOp *op;

  /* Writing may find the socket dead: the operations pending before this
   * one complete during this call, and their callbacks may drop the
   * program's last reference. */
  keep = g_object_ref (self);
  task = _carehare_connection_op_task_new (self, source_tag, cancellable, callback, user_data);
  if (task == NULL)
    return;

  /* The protocol holds the task's reference until it completes the op,
   * which may happen before this returns (connection already closed). */
  op = carehare_protocol_rpc (self->protocol, method, reply_id, _carehare_connection_rpc_done_cb, task);
  _carehare_connection_watch_op (self, task, op);
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

/* ---- private ------------------------------------------------------------- */

/* Whether the caller runs in the main context the connection was created
 * on: it is the thread-default one, and no other thread is running it. */
static gboolean
on_own_context (CarehareConnection *self)
{
  GMainContext *current = g_main_context_get_thread_default ();

  if (current == NULL)
    current = g_main_context_default ();
  if (current != self->context)
    return FALSE;
  if (!g_main_context_acquire (self->context))
    return FALSE;
  g_main_context_release (self->context);
  return TRUE;
}

gboolean
_carehare_connection_check_context (CarehareConnection *self)
{
  if (G_LIKELY (on_own_context (self)))
    return TRUE;
  /* Otherwise the call's callback would wait for a context nobody
   * iterates, or the connection's state would be touched from two
   * threads at once. */
  g_critical ("A CarehareConnection, or one of its consumers, was called from a thread or "
              "main context other than the one it was created on; call it only from the "
              "thread-default main context it was created on. The call was ignored.");
  return FALSE;
}

CarehareProtocol *
_carehare_connection_get_protocol (CarehareConnection *self)
{
  return self->protocol;
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
