/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareTransport: the socket under a CarehareConnection (see
 * carehare-transport-private.h). Connecting tries one URI after another:
 * GSocketClient, then GTlsClientConnection for amqps://, then the owner's
 * handshake, all within the attempt's timeout. Once connected, it reads
 * from a pollable source into one reused buffer (or, for the rest of a
 * large body frame, straight into its message's body), writes what the owner
 * produced without blocking (one writev per main-loop iteration, from a
 * flush source, and a POLLOUT source while the socket is full), and fires
 * a timer at the owner's deadline. It counts what waits to be written (the
 * owner's output and its own unwritten segments) for the owner's
 * pending-write-bytes, and tells the owner when the count crosses the
 * water marks.
 *
 * Every source is attached to the owner's main context and destroyed
 * before the transport is freed; the callbacks of GIO calls hold a weak
 * reference on the owner and the attempt's generation, so that those of
 * an abandoned attempt, or of a gone owner, do nothing.
 */
#include "carehare-transport-private.h"

#include "carehare-connection.h"   /* the write water marks */
#include "carehare-error.h"
#include "carehare-log-private.h"

#include "carehare-tls-stream-private.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 30000
#define READ_SIZE (256 * 1024)  /* two whole frames at the default frame_max */
/* Reads into the body of a large message (one whose body frames carry
 * LARGE_FRAME bytes or more): the rest of a body frame's payload is read
 * straight into the body when it is IN_PLACE_MIN or more; a smaller rest
 * is read into the read buffer with READ_HEAD bytes after it. After
 * either, the next read takes READ_HEAD bytes: large messages tend to
 * follow each other, and the next frame's header, or the next message's
 * method, content header and first frame header, fit in it, so that its
 * payload is read in place too rather than copied out of a full read
 * buffer. Small messages are read READ_SIZE bytes at a time. */
#define LARGE_FRAME (16 * 1024)
#define IN_PLACE_MIN (8 * 1024)
#define READ_HEAD 4096
/* How long the last frames (Close, Close-Ok) may take to write once the
 * connection is over, before the socket is closed regardless. */
#define LINGER_MS 2000

struct _CarehareTransport
{
  GObject *owner;                 /* not owned: it frees the transport */
  GMainContext *context;          /* owned: the owner's */
  const CarehareTransportCallbacks *callbacks;
  gpointer user_data;

  /* connecting */
  GTlsDatabase *tls_database;     /* owned, nullable */
  GTlsCertificate *tls_certificate; /* owned, nullable */
  guint connect_timeout_ms;       /* 0: from the URI, else the default */
  guint attempt_timeout_ms;       /* the current attempt's */
  CarehareUriSettings settings;   /* owned members: the current attempt's */
  char *redacted_uri;             /* owned: for messages */

  /* One attempt per URI, in order, until one completes the handshake.
   * Everything an attempt creates is torn down before the next; callbacks
   * of an abandoned attempt see a stale generation and do nothing. */
  guint generation;               /* bumped when an attempt is abandoned */
  char **attempt_uris;            /* owned while connecting */
  guint attempt;                  /* index into attempt_uris */
  GString *failures;              /* owned while connecting: each failed attempt */
  GCancellable *attempt_cancellable; /* owned: stops this attempt's GIO calls */
  GSource *init_timeout;          /* owned while connecting */
  GTlsCertificateFlags tls_errors; /* why the server's certificate was refused */

  /* I/O */
  GIOStream *stream;              /* owned: socket or TLS connection */
  GCancellable *io_cancellable;   /* owned: cancels reads and writes */
  GSource *timer;                 /* owned, attached: fires at the owner's deadline */
  GSource *flush_source;          /* owned, attached: writes pending output once per iteration */
  GSource *read_source;           /* owned, attached: the stream is readable */
  GSource *write_source;          /* owned, attached while a write would block */
  guint8 *read_buf;               /* owned: READ_SIZE bytes, reused for every read */
  gboolean read_large;            /* the last read was of a large body (see LARGE_FRAME) */
  GPtrArray *out_segments;        /* owned GBytes: being written, from out_index/out_offset on */
  guint out_index;
  gsize out_offset;
  gsize out_unwritten;            /* bytes of out_segments not written yet */
  gpointer pending_write_bytes;   /* atomic, a gsize: the last count, read from any thread */
  gboolean above_high_water;      /* rose above the high mark, not back to the low one yet */
  gboolean writing;               /* a write is in flight (or waits for POLLOUT) */
  gboolean flushing;              /* inside flush_now() */
  gboolean receiving;             /* inside read_available(): the owner decodes read_buf */
  gpointer read_fd_tag;           /* read_source's descriptor, for a plain socket */
  gboolean read_paused;           /* read_fd_tag's events are 0 until the outer read ends */
  gint64 eager_flush_time;        /* the main-loop iteration of the last eager flush */
  gboolean stream_closing;        /* g_io_stream_close_async() started */
  gboolean force_close;           /* stop writing: close the socket now */
  GSource *linger;                /* owned, attached after the owner finished */
  gboolean stream_closed;
};

static void update (CarehareTransport *self);
static void update_pending (CarehareTransport *self);
static void start_read (CarehareTransport *self);
static void init_fail (CarehareTransport *self,
                       GError            *error);
static GIOStream *tls_base_stream (GIOStream *tls);
static GError *tls_refusal (CarehareTransport *self,
                            const GError      *error);

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

static void
clear_out_segments (CarehareTransport *self)
{
  g_clear_pointer (&self->out_segments, g_ptr_array_unref);
  self->out_unwritten = 0;
}

/* What an asynchronous call of ours gets back: the transport, unless its
 * owner is gone or the attempt that made the call was abandoned. */
typedef struct {
  GWeakRef owner;
  CarehareTransport *self;       /* alive while the owner is */
  guint generation;
} IoData;

static IoData *
io_data_new (CarehareTransport *self)
{
  IoData *data = g_new0 (IoData, 1);

  g_weak_ref_init (&data->owner, self->owner);
  data->self = self;
  data->generation = self->generation;
  return data;
}

/* Frees @data; returns the transport if it still cares, with in @owner a
 * reference that keeps it alive. */
static CarehareTransport *
io_data_finish (IoData   *data,
                GObject **owner)
{
  CarehareTransport *self = data->self;

  *owner = g_weak_ref_get (&data->owner);
  if (*owner != NULL && self->generation != data->generation)
    g_clear_object (owner);
  g_weak_ref_clear (&data->owner);
  g_free (data);
  return *owner != NULL ? self : NULL;
}

gpointer
_carehare_transport_watch_new (CarehareTransport *self)
{
  return io_data_new (self);
}

GObject *
_carehare_transport_watch_finish (gpointer watch)
{
  GObject *owner;

  io_data_finish (watch, &owner);
  return owner;
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
shut_down_socket (CarehareTransport *self)
{
  GSocket *socket;

  destroy_source (&self->write_source);
  self->writing = FALSE;
  clear_out_segments (self);
  if (self->stream != NULL && !self->stream_closed &&
      (socket = stream_socket (self->stream)) != NULL && !g_socket_is_closed (socket))
    g_socket_shutdown (socket, TRUE, TRUE, NULL);
}

static void
stream_closed_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GObject) owner = NULL;
  CarehareTransport *self = io_data_finish (user_data, &owner);

  g_io_stream_close_finish (G_IO_STREAM (source), result, NULL);
  if (self == NULL)
    return;

  self->stream_closed = TRUE;
  destroy_source (&self->linger);
  update_pending (self);
  self->callbacks->closed (self->user_data);
}

/* The owner finished and its last bytes are written: close the socket. */
static void
maybe_close_stream (CarehareTransport *self)
{
  if (self->stream == NULL || self->stream_closing || self->writing ||
      !self->callbacks->is_finished (self->user_data) ||
      (self->callbacks->has_output (self->user_data) && !self->force_close))
    return;

  self->stream_closing = TRUE;
  destroy_source (&self->read_source);
  g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL,
                           stream_closed_cb, io_data_new (self));
}

/* A read or write failed. */
static void
io_failed (CarehareTransport *self,
           const GError      *error)
{
  g_autoptr(GError) cause = NULL;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (self->attempt_uris != NULL && G_IS_TLS_CONNECTION (self->stream))
    {
      /* A refusal by the broker ends the attempt as a TLS error; a
       * connection lost is a closed connection like any other, and the
       * reset a write found (and the stream under TLS hid) says why. */
      g_autoptr(GIOStream) base = tls_base_stream (self->stream);
      GError *refusal = tls_refusal (self, error);

      if (refusal != NULL)
        {
          self->callbacks->attempt_failed (self->user_data, refusal);
          return;
        }
      cause = carehare_tls_base_stream_dup_write_error (base);
      if (cause != NULL)
        error = cause;
    }
  g_debug ("socket error: %s", error->message);
  self->callbacks->failed (self->user_data, error);
}

static gboolean write_ready_cb (GObject *stream, gpointer user_data);

/* Writes what the owner produced, without blocking, until the socket
 * would block; then a source waits for POLLOUT: no GTask and no copy per
 * write. (Socket and TLS streams are always pollable.) */
static void flush_now_unguarded (CarehareTransport *self);

static void
flush_now (CarehareTransport *self)
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
flush_now_unguarded (CarehareTransport *self)
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
          self->out_segments = self->callbacks->take_output (self->user_data,
                                                             g_get_monotonic_time ());
          self->out_index = 0;
          self->out_offset = 0;
          if (self->out_segments == NULL)
            {
              maybe_close_stream (self);
              return;
            }
          for (guint i = 0; i < self->out_segments->len; i++)
            self->out_unwritten += g_bytes_get_size (self->out_segments->pdata[i]);
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
          self->out_unwritten -= written;
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
            clear_out_segments (self);
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
      clear_out_segments (self);
      io_failed (self, error);
      maybe_close_stream (self);
      return;
    }
}

static gboolean
write_ready_cb (GObject  *stream,
                gpointer  user_data)
{
  CarehareTransport *self = user_data;
  g_autoptr(GObject) owner G_GNUC_UNUSED = g_object_ref (self->owner);

  g_clear_pointer (&self->write_source, g_source_unref);
  self->writing = FALSE;
  flush_now (self);
  update (self);
  return G_SOURCE_REMOVE;
}

/* The flush source is ready whenever the owner has output that is not
 * being written: everything produced during one main-loop iteration goes
 * out in one write at the next, with no source created per write. */
typedef struct {
  GSource source;
  CarehareTransport *self;  /* not owned: the source dies before it */
} FlushSource;

static gboolean
flush_check (GSource *source)
{
  CarehareTransport *self = ((FlushSource *) source)->self;

  return self->stream != NULL && !self->writing &&
         !self->stream_closing && self->callbacks->has_output (self->user_data);
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
  CarehareTransport *self = ((FlushSource *) source)->self;
  /* Alive until we return, whatever a signal handler does. */
  g_autoptr(GObject) owner G_GNUC_UNUSED = g_object_ref (self->owner);

  flush_now (self);
  update (self);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs flush_funcs = {
  .prepare = flush_prepare,
  .check = flush_check,
  .dispatch = flush_dispatch,
};

/* After anything that may have changed the owner's state: write what it
 * produced (once per main-loop dispatch, so frames produced together go out
 * in one write) and re-arm the timer. */
static void
update_io (CarehareTransport *self)
{
  gint64 deadline;

  if (self->stream == NULL)
    return;

  /* The first output of a main-loop iteration goes out at once (one
   * syscall, no wait for the next iteration: that is the latency of a
   * request); what follows in the same iteration is left to the flush
   * source, so that it goes out together. While what was read is being
   * decoded, nothing goes out eagerly: the reader writes everything once
   * the read is decoded (the acks of a whole read of deliveries in one
   * write, not one per message). With no output, a finished connection
   * closes its socket. */
  if (self->stream != NULL && !self->writing && self->flush_source != NULL &&
      !self->force_close && !self->receiving && self->callbacks->has_output (self->user_data))
    {
      gint64 iteration = g_source_get_time (self->flush_source);

      if (iteration != self->eager_flush_time)
        {
          self->eager_flush_time = iteration;
          flush_now (self);
          if (self->stream == NULL)
            return;
        }
    }
  if (self->stream != NULL && !self->writing &&
      (self->force_close || !self->callbacks->has_output (self->user_data)))
    maybe_close_stream (self);

  /* Setting a ready time wakes the main context: only move the timer
   * earlier. A timer that fires too early just ticks and is set again. */
  deadline = self->callbacks->get_deadline (self->user_data);
  if (self->timer != NULL && deadline != G_MAXINT64)
    {
      gint64 ready = g_source_get_ready_time (self->timer);

      if (ready == -1 || deadline < ready)
        g_source_set_ready_time (self->timer, deadline);
    }
}

/* Counts what waits to be written: the owner's output not taken yet and
 * what the socket has not taken of ours, nothing once the owner finished or
 * the socket is closing (what is left then is dropped, or the last frames
 * of the close). Tells the owner, once, when the count rises above the
 * high-water mark, and once when it is back at or below the low-water
 * mark: a program pausing its publishes gets one wake-up per drain. */
static void
update_pending (CarehareTransport *self)
{
  gsize pending = 0;
  gboolean crossed = FALSE;

  if (self->stream != NULL && !self->stream_closing && !self->stream_closed &&
      !self->force_close && !self->callbacks->is_finished (self->user_data))
    pending = self->out_unwritten + self->callbacks->get_output_size (self->user_data);
  g_atomic_pointer_set (&self->pending_write_bytes, GSIZE_TO_POINTER (pending));

  if (!self->above_high_water && pending > CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK)
    crossed = self->above_high_water = TRUE;
  else if (self->above_high_water && pending <= CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK)
    {
      self->above_high_water = FALSE;
      crossed = TRUE;
    }
  /* Last, with the state settled: a handler may publish, and come back
   * here (every caller holds the owner, whatever the handler drops). */
  if (crossed)
    self->callbacks->pending_write_crossed (self->user_data);
}

static void
update (CarehareTransport *self)
{
  update_io (self);
  update_pending (self);
}

/* Feeds @size bytes (or end of file, @size 0, or @error) to the owner.
 * Returns TRUE to keep reading. */
static gboolean
handle_read (CarehareTransport *self,
             const guint8      *data,
             gssize             size,
             const GError      *error)
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
      self->callbacks->failed (self->user_data, eof);
      return FALSE;
    }
  return self->callbacks->received (self->user_data, data, size);
}

/* Drains what the socket holds (bounded, so one busy connection cannot
 * starve the main loop), answering as we go. Returns FALSE when reading is
 * over: end of file, an error, the owner finished, or the attempt was
 * abandoned (its read source is gone then). */
static gboolean read_available_unguarded (CarehareTransport *self);

static gboolean
read_available (CarehareTransport *self)
{
  gboolean more;

  /* A main loop run from a callback while we decode (a _sync call) must
   * not read into the buffer being decoded: it reads nothing, and our own
   * source ignores the socket until the outer read is over (else the
   * readable socket would make that loop spin). */
  if (self->receiving)
    {
      if (self->read_source != NULL && self->read_fd_tag != NULL && !self->read_paused)
        {
          g_source_modify_unix_fd (self->read_source, self->read_fd_tag, 0);
          self->read_paused = TRUE;
        }
      return TRUE;
    }
  self->receiving = TRUE;
  more = read_available_unguarded (self);
  self->receiving = FALSE;
  if (self->read_paused)
    {
      self->read_paused = FALSE;
      if (self->read_source != NULL && self->read_fd_tag != NULL)
        g_source_modify_unix_fd (self->read_source, self->read_fd_tag, G_IO_IN);
    }
  return more;
}

static gboolean
read_available_unguarded (CarehareTransport *self)
{
  GInputStream *stream = g_io_stream_get_input_stream (self->stream);
  guint generation = self->generation;
  gboolean more = TRUE;

  for (guint i = 0; i < 16 && more; i++)
    {
      g_autoptr(GError) error = NULL;
      gsize want = 0, frame_size = 0;
      guint8 *place = self->callbacks->receive_buffer (self->user_data, &want, &frame_size);
      gboolean large = place != NULL && frame_size >= LARGE_FRAME;
      gssize n;

      if (!large || want < IN_PLACE_MIN)
        {
          place = NULL;
          if (large)
            want += READ_HEAD;
          else
            want = self->read_large ? READ_HEAD : READ_SIZE;
        }
      self->read_large = large;
      n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream),
                                                    place != NULL ? place : self->read_buf,
                                                    want, NULL, &error);
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      if (place != NULL && n > 0)
        more = self->callbacks->received_in_place (self->user_data, n);
      else
        more = handle_read (self, self->read_buf, n > 0 ? n : 0, error);
      if (self->generation != generation)
        return FALSE;
      /* A short read drained the socket: don't pay a read that would
       * block. (Bytes a TLS layer still holds make the source ready again.) */
      if (n > 0 && (gsize) n < want)
        break;
    }
  return more;
}

static gboolean
read_ready_cb (GObject  *stream,
               gpointer  user_data)
{
  CarehareTransport *self = user_data;
  g_autoptr(GObject) owner G_GNUC_UNUSED = g_object_ref (self->owner);
  guint generation = self->generation;
  gboolean more = read_available (self);

  if (self->generation != generation)
    return G_SOURCE_REMOVE;  /* the attempt was abandoned: its source is gone */
  if (self->receiving)
    return G_SOURCE_CONTINUE;  /* nested in a read: it writes when it is over */
  flush_now (self);
  update (self);
  if (more)
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&self->read_source, g_source_unref);
  self->read_fd_tag = NULL;
  return G_SOURCE_REMOVE;
}

/* A plain socket is read from a source of our own on its descriptor,
 * which GLib does not block while it dispatches (can-recurse): a blocked
 * source leaves the poll set and comes back, and each change wakes the
 * context with an eventfd write, two per source and per read with the
 * pollable stream's source and its child. read_available() keeps a nested
 * dispatch from reading. */
typedef struct {
  GSource source;
  CarehareTransport *self;  /* not owned: the source dies before it */
} ReadSource;

static gboolean
read_source_dispatch (GSource     *source,
                      GSourceFunc  callback,
                      gpointer     user_data)
{
  return read_ready_cb (NULL, ((ReadSource *) source)->self);
}

static GSourceFuncs read_funcs = {
  .dispatch = read_source_dispatch,
};

static void
start_read (CarehareTransport *self)
{
  /* Socket and TLS streams are always pollable. */
  GInputStream *in = g_io_stream_get_input_stream (self->stream);

  if (self->read_buf == NULL)
    self->read_buf = g_malloc (READ_SIZE);
  self->read_paused = FALSE;
  if (G_IS_SOCKET_CONNECTION (self->stream))
    {
      GSocket *socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (self->stream));

      self->read_source = g_source_new (&read_funcs, sizeof (ReadSource));
      ((ReadSource *) self->read_source)->self = self;
      self->read_fd_tag = g_source_add_unix_fd (self->read_source, g_socket_get_fd (socket),
                                                G_IO_IN);
      g_source_set_can_recurse (self->read_source, TRUE);
      g_source_set_static_name (self->read_source, "[carehare] readable");
      g_source_attach (self->read_source, self->context);
      return;
    }
  self->read_fd_tag = NULL;
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
  CarehareTransport *self = user_data;
  /* The tick may emit ::closed, whose handler may drop the last reference. */
  g_autoptr(GObject) owner G_GNUC_UNUSED = g_object_ref (self->owner);
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
  self->callbacks->tick (self->user_data, g_get_monotonic_time ());
  update (self);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs timer_funcs = {
  .dispatch = timer_dispatch,
};

static void
force_close (CarehareTransport *self)
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
  CarehareTransport *self = user_data;
  g_autoptr(GObject) owner G_GNUC_UNUSED = g_object_ref (self->owner);

  g_clear_pointer (&self->linger, g_source_unref);
  if (!self->stream_closing)
    g_debug ("the last frames were not written in %u ms: closing the socket", LINGER_MS);
  force_close (self);
  return G_SOURCE_REMOVE;
}

/* ---- connecting ---------------------------------------------------------- */

static void attempt_start (CarehareTransport *self);
static void connect_cleanup (CarehareTransport *self);

/* Abandons the current attempt: everything it started is stopped, and its
 * callbacks, still to come, find a stale generation. */
static void
attempt_teardown (CarehareTransport *self)
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
  clear_out_segments (self);

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
  self->tls_errors = 0;
}

static gboolean
next_attempt_cb (gpointer user_data)
{
  g_autoptr(GObject) owner = NULL;
  CarehareTransport *self = io_data_finish (user_data, &owner);

  if (self != NULL && self->attempt_uris != NULL)
    attempt_start (self);
  return G_SOURCE_REMOVE;
}

/* The current attempt failed with @error (taken): the owner decides. */
static void
init_fail (CarehareTransport *self,
           GError            *error)
{
  self->callbacks->attempt_failed (self->user_data, error);
}

GError *
_carehare_transport_attempt_failed (CarehareTransport *self,
                                    GError            *error,
                                    gboolean           retry)
{
  guint n_attempts;

  _carehare_log (G_LOG_LEVEL_DEBUG, self->redacted_uri, carehare_error_get_reply_code (error), 0,
                 "connecting to %s failed: %s", self->redacted_uri, error->message);
  attempt_teardown (self);

  if (self->attempt_uris == NULL)
    return error;  /* connecting never started */
  n_attempts = self->attempt + 1;
  if (retry && self->attempt_uris[n_attempts] != NULL)
    {
      g_autoptr(GSource) idle = g_idle_source_new ();

      g_string_append_printf (self->failures, "%s%s: %s", self->failures->len > 0 ? "; " : "",
                              self->redacted_uri, error->message);
      g_error_free (error);
      self->attempt++;
      /* Not from here: we may be inside the abandoned protocol's callback. */
      g_source_set_callback (idle, next_attempt_cb, io_data_new (self), NULL);
      g_source_set_static_name (idle, "[carehare] next connection attempt");
      g_source_attach (idle, self->context);
      return NULL;
    }

  if (n_attempts > 1 && retry)
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
  connect_cleanup (self);
  return error;
}

static void
stream_ready (CarehareTransport *self,
              GIOStream         *stream)
{
  self->stream = stream;
  self->io_cancellable = g_cancellable_new ();

  self->timer = g_source_new (&timer_funcs, sizeof (GSource));
  g_source_set_callback (self->timer, NULL, self, NULL);
  g_source_set_static_name (self->timer, "[carehare] heartbeat");
  g_source_set_ready_time (self->timer, -1);
  g_source_attach (self->timer, self->context);

  self->flush_source = g_source_new (&flush_funcs, sizeof (FlushSource));
  ((FlushSource *) self->flush_source)->self = self;
  g_source_set_static_name (self->flush_source, "[carehare] flush");
  g_source_attach (self->flush_source, self->context);

  self->callbacks->stream_ready (self->user_data);
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
    { G_TLS_CERTIFICATE_UNKNOWN_CA, "it is not signed by a trusted certificate authority "
      "(name the authority's certificate with the URI parameter cacertfile=/path/ca.pem, "
      "or set the connection's tls-database)" },
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
describe_client_certificate (CarehareTransport *self)
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
tls_refusal (CarehareTransport *self,
             const GError      *error)
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
  CarehareTransport *self = user_data;

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
  g_autoptr(GObject) owner = NULL;
  CarehareTransport *self = io_data_finish (user_data, &owner);
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

      gboolean amqp_header = FALSE;

      if (!carehare_tls_base_stream_read_ended (base))
        g_clear_error (&reset);
      if (carehare_tls_base_stream_read_not_tls (base, &amqp_header))
        init_fail (self, g_error_new (G_TLS_ERROR, G_TLS_ERROR_NOT_TLS,
                                      "TLS handshake with %s:%u failed: the server did not "
                                      "answer TLS%s: use amqp:// for this port, or the "
                                      "broker's TLS port with amqps://",
                                      self->settings.host, self->settings.port,
                                      amqp_header ? " (it answered with an AMQP protocol header)" : ""));
      else
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
  g_autoptr(GObject) owner = NULL;
  CarehareTransport *self = io_data_finish (user_data, &owner);
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
  CarehareTransport *self = user_data;
  g_autoptr(GObject) owner G_GNUC_UNUSED = g_object_ref (self->owner);

  g_clear_pointer (&self->init_timeout, g_source_unref);
  init_fail (self, g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                "Connecting to %s timed out after %u ms",
                                self->redacted_uri, self->attempt_timeout_ms));
  return G_SOURCE_REMOVE;
}

/* Starts connecting to attempt_uris[attempt]. */
static void
attempt_start (CarehareTransport *self)
{
  g_autoptr(GSocketClient) client = NULL;
  g_autoptr(GSocketConnectable) address = NULL;
  const char *uri = self->attempt_uris[self->attempt];
  GError *error = NULL;
  guint timeout_ms;

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
  _carehare_log (G_LOG_LEVEL_DEBUG, self->redacted_uri, 0, 0, "connecting to %s", self->redacted_uri);
  g_socket_client_connect_async (client, address, self->attempt_cancellable,
                                 socket_connected_cb, io_data_new (self));
}

/* ---- the owner's interface ----------------------------------------------- */

CarehareTransport *
_carehare_transport_new (GObject                          *owner,
                         GMainContext                     *context,
                         const CarehareTransportCallbacks *callbacks,
                         gpointer                          user_data)
{
  CarehareTransport *self = g_new0 (CarehareTransport, 1);

  self->owner = owner;
  self->context = g_main_context_ref (context);
  self->callbacks = callbacks;
  self->user_data = user_data;
  return self;
}

/* Ends connecting's own state (not the stream's). */
static void
connect_cleanup (CarehareTransport *self)
{
  destroy_source (&self->init_timeout);
  g_clear_pointer (&self->attempt_uris, carehare_uri_secret_strv_free);
  if (self->failures != NULL)
    g_string_free (g_steal_pointer (&self->failures), TRUE);
}

void
_carehare_transport_free (CarehareTransport *self)
{
  g_assert (self->timer == NULL);
  g_assert (self->flush_source == NULL);
  g_assert (self->linger == NULL);
  g_assert (self->read_source == NULL);
  g_assert (self->write_source == NULL);
  g_assert (self->init_timeout == NULL);

  connect_cleanup (self);
  clear_out_segments (self);
  g_free (self->read_buf);
  g_clear_object (&self->stream);
  g_clear_object (&self->io_cancellable);
  g_clear_object (&self->attempt_cancellable);
  g_clear_object (&self->tls_database);
  g_clear_object (&self->tls_certificate);
  g_free (self->redacted_uri);
  carehare_uri_settings_clear (&self->settings);
  g_main_context_unref (self->context);
  g_free (self);
}

void
_carehare_transport_connect (CarehareTransport  *self,
                             char              **uris,
                             guint               connect_timeout_ms,
                             GTlsDatabase       *tls_database,
                             GTlsCertificate    *tls_certificate)
{
  g_return_if_fail (self->attempt_uris == NULL && self->stream == NULL);

  self->attempt_uris = uris;
  self->attempt = 0;
  self->failures = g_string_new (NULL);
  self->connect_timeout_ms = connect_timeout_ms;
  g_set_object (&self->tls_database, tls_database);
  g_set_object (&self->tls_certificate, tls_certificate);
  attempt_start (self);
}

void
_carehare_transport_connected (CarehareTransport *self)
{
  connect_cleanup (self);
  g_clear_object (&self->attempt_cancellable);
  if (G_IS_TLS_CONNECTION (self->stream))
    {
      g_autoptr(GIOStream) base = tls_base_stream (self->stream);

      carehare_tls_base_stream_connected (base);
    }
}

const CarehareUriSettings *
_carehare_transport_get_settings (CarehareTransport *self)
{
  return &self->settings;
}

const char *
_carehare_transport_get_redacted_uri (CarehareTransport *self)
{
  return self->redacted_uri;
}

void
_carehare_transport_update (CarehareTransport *self)
{
  update (self);
}

void
_carehare_transport_linger (CarehareTransport *self)
{
  if (self->linger != NULL || self->stream == NULL)
    return;
  self->linger = g_timeout_source_new (LINGER_MS);
  g_source_set_callback (self->linger, linger_cb, self, NULL);
  g_source_set_static_name (self->linger, "[carehare] linger");
  g_source_attach (self->linger, self->context);
}

void
_carehare_transport_force_close (CarehareTransport *self)
{
  force_close (self);
}

void
_carehare_transport_close_now (CarehareTransport *self)
{
  if (self->io_cancellable != NULL)
    g_cancellable_cancel (self->io_cancellable);
  destroy_source (&self->timer);
  destroy_source (&self->flush_source);
  destroy_source (&self->linger);
  destroy_source (&self->read_source);
  destroy_source (&self->write_source);
  /* Nobody may iterate our context any more (a worker thread that closed,
   * dropped its reference and ended): close the socket now, not when the
   * last pending callback has run. */
  if (self->stream != NULL && !self->stream_closed)
    {
      shut_down_socket (self);
      if (!self->stream_closing)
        g_io_stream_close (self->stream, NULL, NULL);
      self->stream_closed = TRUE;
    }
  /* In dispose: the count is over, and nobody is told. */
  g_atomic_pointer_set (&self->pending_write_bytes, NULL);
  self->above_high_water = FALSE;
  connect_cleanup (self);
}

guint64
_carehare_transport_get_pending_write_bytes (CarehareTransport *self)
{
  return GPOINTER_TO_SIZE (g_atomic_pointer_get (&self->pending_write_bytes));
}

gboolean
_carehare_transport_is_closed (CarehareTransport *self)
{
  return self->stream == NULL || self->stream_closed;
}
