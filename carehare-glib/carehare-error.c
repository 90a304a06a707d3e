/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-error-private.h"

#include <string.h>

/**
 * carehare_error_quark:
 *
 * Gets the error domain of carehare-glib, %CAREHARE_ERROR.
 *
 * Returns: the quark of the %CAREHARE_ERROR domain
 */
G_DEFINE_QUARK (carehare-error-quark, carehare_error)

static const struct {
  guint16 code;
  const char *name;
} reply_code_names[] = {
  { 200, "REPLY_SUCCESS" },
  { 311, "CONTENT_TOO_LARGE" },
  { 312, "NO_ROUTE" },
  { 313, "NO_CONSUMERS" },
  { 320, "CONNECTION_FORCED" },
  { 402, "INVALID_PATH" },
  { 403, "ACCESS_REFUSED" },
  { 404, "NOT_FOUND" },
  { 405, "RESOURCE_LOCKED" },
  { 406, "PRECONDITION_FAILED" },
  { 501, "FRAME_ERROR" },
  { 502, "SYNTAX_ERROR" },
  { 503, "COMMAND_INVALID" },
  { 504, "CHANNEL_ERROR" },
  { 505, "UNEXPECTED_FRAME" },
  { 506, "RESOURCE_ERROR" },
  { 530, "NOT_ALLOWED" },
  { 540, "NOT_IMPLEMENTED" },
  { 541, "INTERNAL_ERROR" },
};

const char *
carehare_reply_code_name (guint16 reply_code)
{
  for (gsize i = 0; i < G_N_ELEMENTS (reply_code_names); i++)
    if (reply_code_names[i].code == reply_code)
      return reply_code_names[i].name;
  return NULL;
}

GError *
carehare_error_new_from_reply (CarehareError  code,
                               const char    *what,
                               guint16        reply_code,
                               const char    *reply_text)
{
  const char *name = carehare_reply_code_name (reply_code);
  g_autofree char *valid = NULL;

  if (reply_text == NULL)
    reply_text = "";
  /* The server's bytes never reach a message raw (the wire decodes reply
   * texts leniently already; this keeps every caller safe). */
  if (!g_utf8_validate (reply_text, -1, NULL))
    reply_text = valid = g_utf8_make_valid (reply_text, -1);

  /* RabbitMQ's texts start with the code's name ("NOT_FOUND - no queue...");
   * other servers' may not, so add it when missing: the message always reads
   * "WHAT: CODE NAME - TEXT", which carehare_error_get_reply_code() parses. */
  if (name != NULL && g_str_has_prefix (reply_text, name))
    return g_error_new (CAREHARE_ERROR, code, "%s: %u %s", what, reply_code, reply_text);
  if (name == NULL)
    name = "UNKNOWN_REPLY_CODE";
  if (*reply_text == '\0')
    return g_error_new (CAREHARE_ERROR, code, "%s: %u %s", what, reply_code, name);
  return g_error_new (CAREHARE_ERROR, code, "%s: %u %s - %s", what, reply_code, name, reply_text);
}

/**
 * carehare_error_get_reply_code:
 * @error: an error
 *
 * Gets the AMQP reply code that the server sent when it closed a channel
 * or the connection, such as 404 (NOT_FOUND) or 320 (CONNECTION_FORCED).
 *
 * Only errors with the codes %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER and
 * %CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER carry a reply code, and
 * %CAREHARE_ERROR_UNROUTABLE, which carries the code of the broker's
 * Basic.Return (312 NO_ROUTE; 313 NO_CONSUMERS from brokers that still send
 * it). The code
 * is read back from the error's message, so it survives the trip through
 * language bindings, which copy only an error's domain, code and message.
 *
 * Returns: the reply code, or 0 if @error carries none
 */
guint
carehare_error_get_reply_code (const GError *error)
{
  const char *msg;

  g_return_val_if_fail (error != NULL, 0);

  if (error->domain != CAREHARE_ERROR ||
      (error->code != CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER &&
       error->code != CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER &&
       error->code != CAREHARE_ERROR_UNROUTABLE) ||
      error->message == NULL)
    return 0;

  /* The first "DDD NAME" token, at the start or after a space. */
  msg = error->message;
  for (gsize i = 0; msg[i] != '\0'; i++)
    {
      if ((i == 0 || msg[i - 1] == ' ') &&
          g_ascii_isdigit (msg[i]) && msg[i] != '0' &&
          g_ascii_isdigit (msg[i + 1]) &&
          g_ascii_isdigit (msg[i + 2]) &&
          msg[i + 3] == ' ' &&
          g_ascii_isupper (msg[i + 4]))
        return (guint) ((msg[i] - '0') * 100 + (msg[i + 1] - '0') * 10 + (msg[i + 2] - '0'));
    }
  return 0;
}

/**
 * carehare_error_is_transient:
 * @error: an error from carehare-glib
 *
 * Says whether the same operation, tried again later (on a new connection
 * where the connection is gone), may succeed: a program retries a
 * transient error with backoff and reports any other one, whose cause a
 * person has to fix (a password, a certificate, a queue's arguments).
 *
 * | error | transient |
 * |---|---|
 * | %CAREHARE_ERROR_CONNECTION_CLOSED (the socket closed or was reset) | yes |
 * | %CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR | yes |
 * | `G_IO_ERROR_CONNECTION_REFUSED`, `G_IO_ERROR_CONNECTION_CLOSED` (reset), `G_IO_ERROR_TIMED_OUT`, `G_IO_ERROR_HOST_UNREACHABLE`, `G_IO_ERROR_NETWORK_UNREACHABLE` | yes |
 * | closed by the server with 320 CONNECTION_FORCED (an operator, a node stopping) | yes |
 * | closed by the server with 501 FRAME_ERROR, 502 SYNTAX_ERROR or 505 UNEXPECTED_FRAME | yes |
 * | closed by the server with 541 INTERNAL_ERROR | yes |
 * | closed by the server with 405 RESOURCE_LOCKED (another connection holds an exclusive queue) | yes |
 * | closed by the server with 403 ACCESS_REFUSED (login, permissions, a reserved name) | no |
 * | closed by the server with 530 NOT_ALLOWED (a virtual host that does not exist or is not allowed) | no |
 * | closed by the server with 402 INVALID_PATH, 404 NOT_FOUND or 406 PRECONDITION_FAILED | no |
 * | `G_TLS_ERROR` (a certificate refused by either side, a server that does not speak TLS) | no |
 * | %CAREHARE_ERROR_INVALID_URI | no |
 * | `G_IO_ERROR_CANCELLED` (the program asked for it) | no |
 * | anything else (%CAREHARE_ERROR_CHANNEL_CLOSED, %CAREHARE_ERROR_SERVER_SENT_NACK, %CAREHARE_ERROR_UNROUTABLE, %CAREHARE_ERROR_BAD_BYTES_FROM_SERVER, %CAREHARE_ERROR_MESSAGE_TOO_LARGE, other reply codes, other domains) | no |
 *
 * "Closed by the server" is %CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER or
 * %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER; the reply code is read as
 * [func@Carehare.Error.get_reply_code] does, so this works on an error
 * that has passed through PyGObject or GJS. The errors a connection fails
 * with when it is lost (every pending operation's) are transient, so a
 * program may ask this of whatever error it got.
 *
 * Returns: %TRUE if retrying later with backoff may succeed, %FALSE if the
 *   cause must be fixed first (or is unknown)
 */
gboolean
carehare_error_is_transient (const GError *error)
{
  g_return_val_if_fail (error != NULL, FALSE);

  if (error->domain == G_IO_ERROR)
    {
      switch (error->code)
        {
        case G_IO_ERROR_CONNECTION_REFUSED:
        case G_IO_ERROR_CONNECTION_CLOSED:  /* also G_IO_ERROR_BROKEN_PIPE */
        case G_IO_ERROR_TIMED_OUT:
        case G_IO_ERROR_HOST_UNREACHABLE:
        case G_IO_ERROR_NETWORK_UNREACHABLE:
          return TRUE;
        default:
          return FALSE;
        }
    }
  if (error->domain != CAREHARE_ERROR)
    return FALSE;

  switch (error->code)
    {
    case CAREHARE_ERROR_CONNECTION_CLOSED:
    case CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR:
      return TRUE;
    case CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER:
    case CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER:
      switch (carehare_error_get_reply_code (error))
        {
        case 320:  /* CONNECTION_FORCED */
        case 405:  /* RESOURCE_LOCKED */
        case 501:  /* FRAME_ERROR */
        case 502:  /* SYNTAX_ERROR */
        case 505:  /* UNEXPECTED_FRAME */
        case 541:  /* INTERNAL_ERROR */
          return TRUE;
        default:
          return FALSE;
        }
    default:
      return FALSE;
    }
}
