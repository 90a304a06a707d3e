/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-tls-stream-private.h"

#include <string.h>

/* What the stream and its two halves share (GTlsConnection may use them
 * from its handshake thread). */
typedef struct {
  GMutex lock;
  gboolean connecting;   /* under lock */
  GError *write_error;   /* under lock: the first one hidden */
  gint read_ended;       /* atomic */
  guint8 first[4];       /* under lock: the first bytes read */
  gsize n_first;         /* under lock */
} Shared;

static void
shared_clear (Shared *shared)
{
  g_mutex_clear (&shared->lock);
  g_clear_error (&shared->write_error);
}

static void
shared_unref (Shared *shared)
{
  g_atomic_rc_box_release_full (shared, (GDestroyNotify) shared_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Shared, shared_unref)

/* ---- input: notes the end ------------------------------------------------- */

#define TLS_BASE_TYPE_INPUT (tls_base_input_get_type ())
G_DECLARE_FINAL_TYPE (TlsBaseInput, tls_base_input, TLS_BASE, INPUT, GInputStream)

struct _TlsBaseInput {
  GInputStream parent_instance;
  GInputStream *base;   /* owned */
  Shared *shared;       /* owned */
};

static void tls_base_input_pollable_iface_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (TlsBaseInput, tls_base_input, G_TYPE_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
                                                      tls_base_input_pollable_iface_init))

static gssize
note_read (TlsBaseInput *self,
           const void   *buffer,
           gsize         count,
           gssize        n,
           GError       *error)
{
  if (n > 0)
    {
      Shared *shared = self->shared;

      g_mutex_lock (&shared->lock);
      for (gsize i = 0; i < (gsize) n && shared->n_first < sizeof shared->first; i++)
        shared->first[shared->n_first++] = ((const guint8 *) buffer)[i];
      g_mutex_unlock (&shared->lock);
    }
  if ((n == 0 && count > 0) ||
      (n < 0 && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) &&
       !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) &&
       !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)))
    g_atomic_int_set (&self->shared->read_ended, TRUE);
  return n;
}

static gssize
tls_base_input_read (GInputStream  *stream,
                     void          *buffer,
                     gsize          count,
                     GCancellable  *cancellable,
                     GError       **error)
{
  TlsBaseInput *self = TLS_BASE_INPUT (stream);
  GError *local = NULL;
  gssize n = g_input_stream_read (self->base, buffer, count, cancellable, &local);

  note_read (self, buffer, count, n, local);
  if (local != NULL)
    g_propagate_error (error, local);
  return n;
}

static gssize
tls_base_input_read_nonblocking (GPollableInputStream  *stream,
                                 void                  *buffer,
                                 gsize                  count,
                                 GError               **error)
{
  TlsBaseInput *self = TLS_BASE_INPUT (stream);
  GError *local = NULL;
  gssize n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (self->base),
                                                       buffer, count, NULL, &local);

  note_read (self, buffer, count, n, local);
  if (local != NULL)
    g_propagate_error (error, local);
  return n;
}

static gboolean
tls_base_input_can_poll (GPollableInputStream *stream)
{
  return g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (TLS_BASE_INPUT (stream)->base));
}

static gboolean
tls_base_input_is_readable (GPollableInputStream *stream)
{
  return g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (TLS_BASE_INPUT (stream)->base));
}

static GSource *
tls_base_input_create_source (GPollableInputStream *stream,
                              GCancellable         *cancellable)
{
  TlsBaseInput *self = TLS_BASE_INPUT (stream);
  g_autoptr(GSource) base = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (self->base),
                                                                   NULL);

  return g_pollable_source_new_full (stream, base, cancellable);
}

static void
tls_base_input_pollable_iface_init (GPollableInputStreamInterface *iface)
{
  iface->can_poll = tls_base_input_can_poll;
  iface->is_readable = tls_base_input_is_readable;
  iface->create_source = tls_base_input_create_source;
  iface->read_nonblocking = tls_base_input_read_nonblocking;
}

static void
tls_base_input_finalize (GObject *object)
{
  TlsBaseInput *self = TLS_BASE_INPUT (object);

  g_clear_object (&self->base);
  g_clear_pointer (&self->shared, shared_unref);
  G_OBJECT_CLASS (tls_base_input_parent_class)->finalize (object);
}

static void
tls_base_input_class_init (TlsBaseInputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = tls_base_input_finalize;
  G_INPUT_STREAM_CLASS (klass)->read_fn = tls_base_input_read;
}

static void
tls_base_input_init (TlsBaseInput *self)
{
}

/* ---- output: hides a reset while connecting ------------------------------ */

#define TLS_BASE_TYPE_OUTPUT (tls_base_output_get_type ())
G_DECLARE_FINAL_TYPE (TlsBaseOutput, tls_base_output, TLS_BASE, OUTPUT, GOutputStream)

struct _TlsBaseOutput {
  GOutputStream parent_instance;
  GOutputStream *base;  /* owned */
  Shared *shared;       /* owned */
};

static void tls_base_output_pollable_iface_init (GPollableOutputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (TlsBaseOutput, tls_base_output, G_TYPE_OUTPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM,
                                                      tls_base_output_pollable_iface_init))

static gboolean
write_error_hidden (TlsBaseOutput *self)
{
  gboolean hidden;

  g_mutex_lock (&self->shared->lock);
  hidden = self->shared->connecting && self->shared->write_error != NULL;
  g_mutex_unlock (&self->shared->lock);
  return hidden;
}

/* After a write: TRUE (and @error taken) if the failure is to be hidden. */
static gboolean
hide_write_error (TlsBaseOutput *self,
                  GError        *error)
{
  gboolean hide;

  /* A reset or a broken pipe: the peer is gone, but what it sent before
   * going is still to be read. Nothing else is hidden. */
  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
    return FALSE;
  g_mutex_lock (&self->shared->lock);
  hide = self->shared->connecting;
  if (hide && self->shared->write_error == NULL)
    self->shared->write_error = error;
  else if (hide)
    g_error_free (error);
  g_mutex_unlock (&self->shared->lock);
  return hide;
}

static gssize
tls_base_output_write (GOutputStream  *stream,
                       const void     *buffer,
                       gsize           count,
                       GCancellable   *cancellable,
                       GError        **error)
{
  TlsBaseOutput *self = TLS_BASE_OUTPUT (stream);
  GError *local = NULL;
  gssize n;

  if (write_error_hidden (self))
    return count;
  n = g_output_stream_write (self->base, buffer, count, cancellable, &local);
  if (local != NULL && hide_write_error (self, local))
    return count;
  if (local != NULL)
    g_propagate_error (error, local);
  return n;
}

static gssize
tls_base_output_write_nonblocking (GPollableOutputStream  *stream,
                                   const void             *buffer,
                                   gsize                   count,
                                   GError                **error)
{
  TlsBaseOutput *self = TLS_BASE_OUTPUT (stream);
  GError *local = NULL;
  gssize n;

  if (write_error_hidden (self))
    return count;
  n = g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (self->base),
                                                  buffer, count, NULL, &local);
  if (local != NULL && hide_write_error (self, local))
    return count;
  if (local != NULL)
    g_propagate_error (error, local);
  return n;
}

static gboolean
tls_base_output_can_poll (GPollableOutputStream *stream)
{
  return g_pollable_output_stream_can_poll (G_POLLABLE_OUTPUT_STREAM (TLS_BASE_OUTPUT (stream)->base));
}

static gboolean
tls_base_output_is_writable (GPollableOutputStream *stream)
{
  TlsBaseOutput *self = TLS_BASE_OUTPUT (stream);

  return write_error_hidden (self) ||
         g_pollable_output_stream_is_writable (G_POLLABLE_OUTPUT_STREAM (self->base));
}

static GSource *
tls_base_output_create_source (GPollableOutputStream *stream,
                               GCancellable          *cancellable)
{
  TlsBaseOutput *self = TLS_BASE_OUTPUT (stream);
  g_autoptr(GSource) base = NULL;
  GSource *source;

  if (write_error_hidden (self))
    {
      /* Writes "succeed" at once. */
      source = g_pollable_source_new_full (stream, NULL, cancellable);
      g_source_set_ready_time (source, 0);
      return source;
    }
  base = g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (self->base), NULL);
  return g_pollable_source_new_full (stream, base, cancellable);
}

static void
tls_base_output_pollable_iface_init (GPollableOutputStreamInterface *iface)
{
  iface->can_poll = tls_base_output_can_poll;
  iface->is_writable = tls_base_output_is_writable;
  iface->create_source = tls_base_output_create_source;
  iface->write_nonblocking = tls_base_output_write_nonblocking;
}

static void
tls_base_output_finalize (GObject *object)
{
  TlsBaseOutput *self = TLS_BASE_OUTPUT (object);

  g_clear_object (&self->base);
  g_clear_pointer (&self->shared, shared_unref);
  G_OBJECT_CLASS (tls_base_output_parent_class)->finalize (object);
}

static void
tls_base_output_class_init (TlsBaseOutputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = tls_base_output_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = tls_base_output_write;
}

static void
tls_base_output_init (TlsBaseOutput *self)
{
}

/* ---- the connection ------------------------------------------------------- */

/* A GTcpConnection on the same socket, so that GIO and the TLS backend
 * see a socket connection (TLS session resumption keys on its remote
 * address), whose streams are the two above. */
#define TLS_BASE_TYPE_CONNECTION (tls_base_connection_get_type ())
G_DECLARE_FINAL_TYPE (TlsBaseConnection, tls_base_connection, TLS_BASE, CONNECTION, GTcpConnection)

struct _TlsBaseConnection {
  GTcpConnection parent_instance;
  TlsBaseInput *input;    /* owned */
  TlsBaseOutput *output;  /* owned */
  Shared *shared;         /* owned */
};

G_DEFINE_FINAL_TYPE (TlsBaseConnection, tls_base_connection, G_TYPE_TCP_CONNECTION)

static GInputStream *
tls_base_connection_get_input_stream (GIOStream *stream)
{
  return G_INPUT_STREAM (TLS_BASE_CONNECTION (stream)->input);
}

static GOutputStream *
tls_base_connection_get_output_stream (GIOStream *stream)
{
  return G_OUTPUT_STREAM (TLS_BASE_CONNECTION (stream)->output);
}

static void
tls_base_connection_finalize (GObject *object)
{
  TlsBaseConnection *self = TLS_BASE_CONNECTION (object);

  g_clear_object (&self->input);
  g_clear_object (&self->output);
  g_clear_pointer (&self->shared, shared_unref);
  G_OBJECT_CLASS (tls_base_connection_parent_class)->finalize (object);
}

static void
tls_base_connection_class_init (TlsBaseConnectionClass *klass)
{
  GIOStreamClass *stream_class = G_IO_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = tls_base_connection_finalize;
  /* Closing is GSocketConnection's: its own streams, then the socket. */
  stream_class->get_input_stream = tls_base_connection_get_input_stream;
  stream_class->get_output_stream = tls_base_connection_get_output_stream;
}

static void
tls_base_connection_init (TlsBaseConnection *self)
{
}

GIOStream *
carehare_tls_base_stream_new (GSocketConnection *connection)
{
  GIOStreamClass *parent;
  TlsBaseConnection *self;

  /* @connection, once dropped, leaves the socket open (a socket
   * connection closes its socket in close(), not in dispose()). */
  self = g_object_new (TLS_BASE_TYPE_CONNECTION,
                       "socket", g_socket_connection_get_socket (connection), NULL);
  parent = G_IO_STREAM_CLASS (tls_base_connection_parent_class);  /* set by now */
  self->shared = g_atomic_rc_box_new0 (Shared);
  g_mutex_init (&self->shared->lock);
  self->shared->connecting = TRUE;
  self->input = g_object_new (TLS_BASE_TYPE_INPUT, NULL);
  self->input->base = g_object_ref (parent->get_input_stream (G_IO_STREAM (self)));
  self->input->shared = g_atomic_rc_box_acquire (self->shared);
  self->output = g_object_new (TLS_BASE_TYPE_OUTPUT, NULL);
  self->output->base = g_object_ref (parent->get_output_stream (G_IO_STREAM (self)));
  self->output->shared = g_atomic_rc_box_acquire (self->shared);
  return G_IO_STREAM (self);
}

gboolean
carehare_is_tls_base_stream (GIOStream *stream)
{
  return TLS_BASE_IS_CONNECTION (stream);
}

void
carehare_tls_base_stream_connected (GIOStream *stream)
{
  TlsBaseConnection *self = TLS_BASE_CONNECTION (stream);

  g_mutex_lock (&self->shared->lock);
  self->shared->connecting = FALSE;
  g_mutex_unlock (&self->shared->lock);
}

GError *
carehare_tls_base_stream_dup_write_error (GIOStream *stream)
{
  TlsBaseConnection *self = TLS_BASE_CONNECTION (stream);
  GError *error = NULL;

  g_mutex_lock (&self->shared->lock);
  if (self->shared->write_error != NULL)
    error = g_error_copy (self->shared->write_error);
  g_mutex_unlock (&self->shared->lock);
  return error;
}

gboolean
carehare_tls_base_stream_read_ended (GIOStream *stream)
{
  return g_atomic_int_get (&TLS_BASE_CONNECTION (stream)->shared->read_ended);
}

gboolean
carehare_tls_base_stream_read_not_tls (GIOStream *stream,
                                       gboolean  *amqp_header)
{
  TlsBaseConnection *self = TLS_BASE_CONNECTION (stream);
  gboolean not_tls;

  g_mutex_lock (&self->shared->lock);
  /* A TLS record starts with its content type, 20 to 24. */
  not_tls = self->shared->n_first > 0 &&
            (self->shared->first[0] < 20 || self->shared->first[0] > 24);
  *amqp_header = self->shared->n_first == 4 && memcmp (self->shared->first, "AMQP", 4) == 0;
  g_mutex_unlock (&self->shared->lock);
  return not_tls;
}
