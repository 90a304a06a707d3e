/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What each carehare-glib error means and what a program should do about
 * it. Copy this into your program and adapt the advice.
 */
#pragma once

#include <carehare-glib/carehare-glib.h>

static inline const char *
explain_error (const GError *error)
{
  if (error->domain == G_IO_ERROR)
    {
      switch (error->code)
        {
        case G_IO_ERROR_CANCELLED:
          return "cancelled by the program";
        case G_IO_ERROR_TIMED_OUT:
          return "the broker did not answer in time: check the host and port";
        case G_IO_ERROR_CONNECTION_REFUSED:
          return "nothing listens there: is the broker running?";
        case G_IO_ERROR_INVALID_ARGUMENT:
          return "the arguments cannot be sent (a name over 255 bytes, a header value with no AMQP type)";
        default:
          return "a network error: retry with backoff";
        }
    }
  if (error->domain == G_TLS_ERROR)
    return "TLS failed: check the certificates (cacertfile, certfile, keyfile) and the host name";
  if (error->domain != CAREHARE_ERROR)
    return "an unexpected error";

  switch ((CarehareError) error->code)
    {
    case CAREHARE_ERROR_INVALID_URI:
      return "fix the URI: amqp://user:password@host:port/vhost?parameters";
    case CAREHARE_ERROR_CONNECTION_CLOSED:
      return "the connection is gone: reconnect, then retry what did not complete";
    case CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER:
      switch (carehare_error_get_reply_code (error))
        {
        case 403: return "login refused: check the user name and password";
        case 530: return "the virtual host does not exist or the user may not use it";
        case 320: return "an operator closed the connection: reconnect";
        default:  return "the broker closed the connection: reconnect";
        }
    case CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR:
      return "the broker stopped answering: reconnect";
    case CAREHARE_ERROR_CHANNEL_CLOSED:
      return "the consumer was closed by the program: the end of the stream";
    case CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER:
      switch (carehare_error_get_reply_code (error))
        {
        case 404: return "the queue or exchange does not exist: declare it first";
        case 403: return "access refused: names starting with amq. are reserved, or permissions are missing";
        case 405: return "another connection holds this exclusive queue";
        case 406: return "a precondition failed: different arguments than the existing queue, or an ack for an unknown tag";
        case 0:   return "the broker cancelled the consumer: its queue was deleted";
        default:  return "the broker refused the operation; the connection is still usable";
        }
    case CAREHARE_ERROR_SERVER_SENT_NACK:
      return "the broker refused this message (full queue?): publish it again later or drop it";
    case CAREHARE_ERROR_UNROUTABLE:
      return "no queue is bound for this routing key: the message was returned";
    case CAREHARE_ERROR_BAD_BYTES_FROM_SERVER:
      return "the server sent invalid AMQP: is it really RabbitMQ?";
    case CAREHARE_ERROR_MESSAGE_TOO_LARGE:
      return "one message was larger than max_body_size and was rejected: take the next one";
    case CAREHARE_ERROR_FAILED:
    default:
      return "an unexpected error";
    }
}

static inline void
print_error (const char   *what,
             const GError *error)
{
  g_printerr ("%s failed: %s\n  -> %s\n", what, error->message, explain_error (error));
}
