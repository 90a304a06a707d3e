/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>

G_BEGIN_DECLS

/**
 * CAREHARE_ERROR:
 *
 * The error domain of carehare-glib. Errors in this domain have a code from
 * [enum@Carehare.Error].
 */
#define CAREHARE_ERROR (carehare_error_quark ())

/**
 * CarehareError:
 * @CAREHARE_ERROR_FAILED: an error that fits no other code.
 * @CAREHARE_ERROR_INVALID_URI: the connection URI is malformed or names an
 *   unknown scheme or query parameter; the message names the problem.
 * @CAREHARE_ERROR_CONNECTION_CLOSED: the connection was closed (by us, by a
 *   socket error or end of file) before or while the operation ran.
 * @CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER: the server closed the
 *   connection with Connection.Close; the message carries the AMQP reply
 *   code and text (see [func@Carehare.Error.get_reply_code]).
 * @CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR: nothing arrived
 *   from the server for twice the negotiated heartbeat interval.
 * @CAREHARE_ERROR_CHANNEL_CLOSED: the consumer or channel was closed by the
 *   program; for a consumer this means end of stream.
 * @CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER: the server closed the channel
 *   the operation ran on (for example 404 NOT_FOUND or 406
 *   PRECONDITION_FAILED), or cancelled the consumer; the message carries the
 *   reply code and text.
 * @CAREHARE_ERROR_SERVER_SENT_NACK: the broker refused this published
 *   message (basic.nack).
 * @CAREHARE_ERROR_UNROUTABLE: a message published with
 *   %CAREHARE_PUBLISH_FLAGS_MANDATORY could not be routed to any queue.
 * @CAREHARE_ERROR_BAD_BYTES_FROM_SERVER: the server sent bytes that are not
 *   valid AMQP 0-9-1; the message names the problem.
 * @CAREHARE_ERROR_MESSAGE_TOO_LARGE: from
 *   [method@Carehare.Consumer.next_delivery_async]: one message's body is
 *   larger than the connection's
 *   [property@Carehare.Connection:max-body-size] (128 MiB unless the URI's
 *   `max_body_size` or the property says otherwise); it was not received
 *   into memory but rejected without requeueing (the queue's dead-letter
 *   exchange, if any, gets it). The message names its delivery tag, its
 *   size and the limit; the consumer goes on with the next message.
 *
 * Error codes in the %CAREHARE_ERROR domain.
 */
typedef enum {
  CAREHARE_ERROR_FAILED,
  CAREHARE_ERROR_INVALID_URI,
  CAREHARE_ERROR_CONNECTION_CLOSED,
  CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
  CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR,
  CAREHARE_ERROR_CHANNEL_CLOSED,
  CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
  CAREHARE_ERROR_SERVER_SENT_NACK,
  CAREHARE_ERROR_UNROUTABLE,
  CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
  CAREHARE_ERROR_MESSAGE_TOO_LARGE,
} CarehareError;

CAREHARE_AVAILABLE_IN_ALL
GQuark carehare_error_quark (void);

CAREHARE_AVAILABLE_IN_ALL
guint carehare_error_get_reply_code (const GError *error);

CAREHARE_AVAILABLE_IN_ALL
gboolean carehare_error_is_transient (const GError *error);

G_END_DECLS
