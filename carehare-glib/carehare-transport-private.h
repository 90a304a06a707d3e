/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "carehare-uri.h"

G_BEGIN_DECLS

/*
 * CarehareTransport: the socket of a CarehareConnection. It connects over
 * a list of URIs (TCP, then TLS for amqps://, within a timeout per
 * attempt), then moves bytes: what arrives goes to the owner, what the
 * owner has to write goes out without blocking, coalesced per main-loop
 * iteration. It knows nothing of AMQP; the owner wires it to the protocol
 * core through the callbacks below.
 *
 * Every source it attaches lives on the owner's main context, and every
 * callback runs there while the owner is held alive (a callback may drop
 * the owner's last reference). The owner frees the transport in its
 * finalize, after _carehare_transport_close_now() in dispose.
 */
typedef struct _CarehareTransport CarehareTransport;

typedef struct {
  /* Connecting: the stream is up (TCP, and TLS for amqps://). Start the
   * handshake; report its end with _carehare_transport_connected() or
   * _carehare_transport_attempt_failed(). */
  void       (*stream_ready)   (gpointer user_data);
  /* Connecting: the current attempt failed with @error (taken), before or
   * after stream_ready; answer with _carehare_transport_attempt_failed(). */
  void       (*attempt_failed) (gpointer user_data,
                                GError  *error);

  /* Bytes arrived. Returns FALSE to stop reading. */
  gboolean   (*received)       (gpointer      user_data,
                                const guint8 *data,
                                gsize         size);
  /* The socket failed, or the peer closed it (never called for our own
   * cancellations). Reading and writing are over. */
  void       (*failed)         (gpointer      user_data,
                                const GError *error);
  /* What to write next: owned GBytes segments, or NULL for nothing. */
  GPtrArray *(*take_output)    (gpointer      user_data,
                                gint64        now);
  gboolean   (*has_output)     (gpointer      user_data);
  /* Nothing will be written after the output pending now: the socket
   * closes once it is written. */
  gboolean   (*is_finished)    (gpointer      user_data);
  /* The timer: the monotonic time to call tick at (G_MAXINT64: never). */
  gint64     (*get_deadline)   (gpointer      user_data);
  void       (*tick)           (gpointer      user_data,
                                gint64        now);

  /* The socket is closed. */
  void       (*closed)         (gpointer      user_data);

  /* How many bytes the owner's output holds (what take_output would
   * return). */
  gsize      (*get_output_size) (gpointer     user_data);
  /* The count of _carehare_transport_get_pending_write_bytes() rose above
   * CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK, or fell back to
   * CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK or below. */
  void       (*pending_write_crossed) (gpointer user_data);
} CarehareTransportCallbacks;

CarehareTransport   *_carehare_transport_new        (GObject                          *owner,
                                                     GMainContext                     *context,
                                                     const CarehareTransportCallbacks *callbacks,
                                                     gpointer                          user_data);
void                 _carehare_transport_free       (CarehareTransport                *self);

/* Connecting: tries @uris in order (each with @connect_timeout_ms, 0 for
 * the URI's or the default). */
void                 _carehare_transport_connect    (CarehareTransport   *self,
                                                     char               **uris,
                                                     guint                connect_timeout_ms,
                                                     GTlsDatabase        *tls_database,
                                                     GTlsCertificate     *tls_certificate);
/* The handshake over the current attempt's stream completed: connecting
 * is over. */
void                 _carehare_transport_connected  (CarehareTransport   *self);
/* Abandons the current attempt after @error (taken). With @retry, and a
 * URI left, schedules the next attempt and returns NULL; otherwise
 * connecting is over and this returns the error to report. */
GError              *_carehare_transport_attempt_failed (CarehareTransport *self,
                                                         GError            *error,
                                                         gboolean           retry);
/* The current attempt's URI settings and redacted URI (for messages). */
const CarehareUriSettings *_carehare_transport_get_settings     (CarehareTransport *self);
const char          *_carehare_transport_get_redacted_uri (CarehareTransport *self);

/* For an asynchronous call of the owner tied to the current attempt: the
 * data to pass, and in the callback the owner (a reference), or NULL when
 * it is gone or the attempt was abandoned. */
gpointer             _carehare_transport_watch_new    (CarehareTransport *self);
GObject             *_carehare_transport_watch_finish (gpointer           watch);

/* The owner's state changed: write what it produced (the first output of a
 * main-loop iteration at once, the rest together at the next), close the
 * socket once it is finished and written, and re-arm the timer. */
void                 _carehare_transport_update       (CarehareTransport *self);
/* The connection is over: the last frames get a bounded time to be
 * written, then the socket closes. */
void                 _carehare_transport_linger       (CarehareTransport *self);
/* Stop writing and close the socket now. */
void                 _carehare_transport_force_close  (CarehareTransport *self);
/* For dispose: every source is gone and the socket closed, at once. */
void                 _carehare_transport_close_now    (CarehareTransport *self);
/* The bytes waiting to be written: the owner's output and what the socket
 * has not taken yet (0 once the owner finished or the socket is closing).
 * The count as of the last change on the owner's context; any thread. */
guint64              _carehare_transport_get_pending_write_bytes (CarehareTransport *self);
/* No socket, or it is closed. */
gboolean             _carehare_transport_is_closed    (CarehareTransport *self);

G_END_DECLS
