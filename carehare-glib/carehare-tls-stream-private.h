/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The TCP connection under our TLS layer: a GTcpConnection on the socket
 * that GSocketClient connected (so g_socket_connection_get_socket() and
 * the TLS backend's session cache work on it). It passes everything
 * through, with two differences while it is "connecting":
 *
 * - A write that finds the connection reset (or the pipe broken) seems to
 *   succeed, and so do the writes after it. With TLS 1.3 the broker judges
 *   our certificate after our side of the handshake completed: it sends
 *   an alert and resets the connection at once, and our next write (the
 *   end of our handshake flight, or the AMQP header) races that reset.
 *   Failing the write would lose the alert, which sits in the socket's
 *   receive queue; hiding the failure lets the next read find it. (After
 *   a reset the socket reads at once: what the peer sent, then the end.)
 *
 * - It records whether a read found the end of the stream or an error
 *   below TLS, so that a TLS error can be told apart: the peer refused us
 *   (an alert, read as a whole record) or the network dropped us (a record
 *   cut short, no close_notify).
 */

#include <gio/gio.h>

G_BEGIN_DECLS

/* A GTcpConnection on @connection's socket, to use instead of it. */
GIOStream    *carehare_tls_base_stream_new              (GSocketConnection *connection);
/* Whether @stream is a stream from carehare_tls_base_stream_new(). */
gboolean      carehare_is_tls_base_stream               (GIOStream *stream);
/* Ends the leniency above: write errors pass through from now on. */
void          carehare_tls_base_stream_connected        (GIOStream *stream);
/* The first write error hidden, or NULL: a copy. */
GError       *carehare_tls_base_stream_dup_write_error  (GIOStream *stream);
/* TRUE once a read below TLS returned end of file or failed. */
gboolean      carehare_tls_base_stream_read_ended       (GIOStream *stream);
/* TRUE if the first bytes read are not a TLS record: the peer does not
 * speak TLS. *amqp_header: they are an AMQP protocol header. */
gboolean      carehare_tls_base_stream_read_not_tls     (GIOStream *stream,
                                                         gboolean  *amqp_header);

G_END_DECLS
