/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <carehare-glib/carehare-glib.h>

#include "carehare-error-private.h"
#include "transient-check.h"

static void
test_reply_code_round_trip (void)
{
  g_autoptr(GError) error = NULL;

  error = carehare_error_new_from_reply (CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                         "Channel closed by server", 404,
                                         "NOT_FOUND - no exchange 'x' in vhost '/'");
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpstr (error->message, ==,
                   "Channel closed by server: 404 NOT_FOUND - no exchange 'x' in vhost '/'");
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 404);
}

static void
test_reply_code_name_added (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) bare = NULL;
  g_autoptr(GError) unknown = NULL;

  /* A text without the code's name gets it, so the message stays parseable. */
  error = carehare_error_new_from_reply (CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
                                         "Connection closed by server", 320,
                                         "broker shutting down at 100 percent");
  g_assert_cmpstr (error->message, ==,
                   "Connection closed by server: 320 CONNECTION_FORCED - broker shutting down at 100 percent");
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 320);

  bare = carehare_error_new_from_reply (CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
                                        "Connection closed by server", 530, NULL);
  g_assert_cmpstr (bare->message, ==, "Connection closed by server: 530 NOT_ALLOWED");
  g_assert_cmpuint (carehare_error_get_reply_code (bare), ==, 530);

  unknown = carehare_error_new_from_reply (CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                           "Channel closed by server", 599, "odd");
  g_assert_cmpuint (carehare_error_get_reply_code (unknown), ==, 599);
  g_assert_nonnull (strstr (unknown->message, "UNKNOWN_REPLY_CODE"));
}

static void
test_reply_code_unroutable (void)
{
  g_autoptr(GError) error = NULL;

  /* A Basic.Return's code, 312 NO_ROUTE, is the reply code of the
   * UNROUTABLE error it becomes. */
  error = carehare_error_new_from_reply (CAREHARE_ERROR_UNROUTABLE,
                                         "Message returned by server", 312, "NO_ROUTE");
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 312);
}

static void
test_reply_code_absent (void)
{
  g_autoptr(GError) other_code = NULL;
  g_autoptr(GError) other_domain = NULL;
  g_autoptr(GError) no_code = NULL;

  other_code = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                    "Connection closed: 404 NOT_FOUND");
  g_assert_cmpuint (carehare_error_get_reply_code (other_code), ==, 0);

  other_domain = g_error_new_literal (G_IO_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                      "x: 404 NOT_FOUND");
  g_assert_cmpuint (carehare_error_get_reply_code (other_domain), ==, 0);

  /* Digits inside a word or without a following name are not a code. */
  no_code = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                 "queue q1234 has 404 messages");
  g_assert_cmpuint (carehare_error_get_reply_code (no_code), ==, 0);
}

static void
test_reply_code_names (void)
{
  g_assert_cmpstr (carehare_reply_code_name (200), ==, "REPLY_SUCCESS");
  g_assert_cmpstr (carehare_reply_code_name (406), ==, "PRECONDITION_FAILED");
  g_assert_cmpstr (carehare_reply_code_name (505), ==, "UNEXPECTED_FRAME");
  g_assert_cmpstr (carehare_reply_code_name (541), ==, "INTERNAL_ERROR");
  g_assert_null (carehare_reply_code_name (999));
}

/* One case per row of carehare_error_is_transient()'s table, each as the
 * library words it (the reply code is read back from the message). */
static const struct {
  const char *row;
  GQuark (*domain) (void);
  int code;
  const char *message;
  gboolean transient;
} transient_cases[] = {
  { "connection closed", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED,
    "Connection closed: Connection reset by peer", TRUE },
  { "heartbeat", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR,
    "Connection closed by heartbeat monitor: nothing received for 2 s", TRUE },
  { "refused", g_io_error_quark, G_IO_ERROR_CONNECTION_REFUSED,
    "Cannot connect to 127.0.0.1:1: Connection refused", TRUE },
  { "reset", g_io_error_quark, G_IO_ERROR_CONNECTION_CLOSED,
    "Error receiving data: Connection reset by peer", TRUE },
  { "broken pipe", g_io_error_quark, G_IO_ERROR_BROKEN_PIPE, "Broken pipe", TRUE },
  { "timed out", g_io_error_quark, G_IO_ERROR_TIMED_OUT,
    "Connecting to amqp://127.0.0.1:1/ timed out after 100 ms", TRUE },
  { "host unreachable", g_io_error_quark, G_IO_ERROR_HOST_UNREACHABLE,
    "No route to host", TRUE },
  { "network unreachable", g_io_error_quark, G_IO_ERROR_NETWORK_UNREACHABLE,
    "Network is unreachable", TRUE },
  { "320", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 320 CONNECTION_FORCED - broker forced connection closure "
    "with reason 'shutdown'", TRUE },
  { "501", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 501 FRAME_ERROR - type 65, all octets = <<>>", TRUE },
  { "502", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 502 SYNTAX_ERROR - bad frame", TRUE },
  { "505", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 505 UNEXPECTED_FRAME - expected content header", TRUE },
  { "541", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 541 INTERNAL_ERROR", TRUE },
  { "405", carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
    "Channel closed by server: 405 RESOURCE_LOCKED - cannot obtain exclusive access to "
    "locked queue 'q' in vhost '/'", TRUE },
  { "403 login", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 403 ACCESS_REFUSED - Login was refused using "
    "authentication mechanism PLAIN. (check the user name and password in the URI)", FALSE },
  { "403 channel", carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
    "Channel closed by server: 403 ACCESS_REFUSED - queue name 'amq.x' contains "
    "reserved prefix 'amq.*'", FALSE },
  { "530", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 530 NOT_ALLOWED - vhost nope not found", FALSE },
  { "402", carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
    "Channel closed by server: 402 INVALID_PATH", FALSE },
  { "404", carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
    "Channel closed by server: 404 NOT_FOUND - no queue 'q' in vhost '/'", FALSE },
  { "406", carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
    "Channel closed by server: 406 PRECONDITION_FAILED - inequivalent arg 'durable'", FALSE },
  { "tls bad certificate", g_tls_error_quark, G_TLS_ERROR_BAD_CERTIFICATE,
    "The TLS certificate of localhost:5671 was refused: it is not signed by a trusted "
    "certificate authority", FALSE },
  { "tls certificate required", g_tls_error_quark, G_TLS_ERROR_CERTIFICATE_REQUIRED,
    "TLS handshake with localhost:5671 failed: certificate required", FALSE },
  { "tls not tls", g_tls_error_quark, G_TLS_ERROR_NOT_TLS,
    "TLS handshake with localhost:5672 failed: the server did not answer TLS", FALSE },
  { "invalid uri", carehare_error_quark, CAREHARE_ERROR_INVALID_URI,
    "Invalid URI: unknown query parameter 'hearbeat'", FALSE },
  { "cancelled", g_io_error_quark, G_IO_ERROR_CANCELLED, "Operation was cancelled", FALSE },
  { "channel closed", carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED,
    "Channel closed: the consumer was closed", FALSE },
  { "nack", carehare_error_quark, CAREHARE_ERROR_SERVER_SENT_NACK, "Server sent nack", FALSE },
  { "unroutable", carehare_error_quark, CAREHARE_ERROR_UNROUTABLE,
    "Unroutable: 312 NO_ROUTE", FALSE },
  { "bad bytes", carehare_error_quark, CAREHARE_ERROR_BAD_BYTES_FROM_SERVER,
    "Bad bytes from server: this port speaks TLS, not plain AMQP: use amqps://", FALSE },
  { "other reply code", carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
    "Connection closed by server: 504 CHANNEL_ERROR - second 'channel.open'", FALSE },
  { "invalid argument", g_io_error_quark, G_IO_ERROR_INVALID_ARGUMENT,
    "Cannot send Queue.Declare: the queue name is empty", FALSE },
  { "other domain", g_file_error_quark, G_FILE_ERROR_NOENT, "No such file", FALSE },
};

static void
test_is_transient (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (transient_cases); i++)
    {
      g_autoptr(GError) error = g_error_new_literal (transient_cases[i].domain (),
                                                     transient_cases[i].code,
                                                     transient_cases[i].message);

      if (carehare_error_is_transient (error) != transient_cases[i].transient)
        g_error ("%s: carehare_error_is_transient (\"%s\") should be %s",
                 transient_cases[i].row, error->message,
                 transient_cases[i].transient ? "TRUE" : "FALSE");
      /* The list every suite's g_assert_error() checks against
       * (transient-check.h) says the same. */
      if (carehare_test_expected_transient (error) != transient_cases[i].transient)
        g_error ("%s: transient-check.h's list says %s for \"%s\"",
                 transient_cases[i].row,
                 transient_cases[i].transient ? "FALSE" : "TRUE", error->message);
    }
}

/* A reply code in an error of another code is not a server close. */
static void
test_is_transient_code_needs_close (void)
{
  g_autoptr(GError) closed = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_FAILED,
                                                  "Failed: 320 CONNECTION_FORCED");
  g_autoptr(GError) io = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED,
                                              "Connection closed by server: 320 CONNECTION_FORCED");

  g_assert_false (carehare_error_is_transient (closed));
  g_assert_false (carehare_error_is_transient (io));
}

static void
test_types_registered (void)
{
  g_autoptr(GEnumClass) error_class = g_type_class_ref (CAREHARE_TYPE_ERROR);
  g_autoptr(GFlagsClass) publish_class = g_type_class_ref (CAREHARE_TYPE_PUBLISH_FLAGS);
  GEnumValue *value;
  GFlagsValue *flag;

  value = g_enum_get_value (error_class, CAREHARE_ERROR_SERVER_SENT_NACK);
  g_assert_nonnull (value);
  g_assert_cmpstr (value->value_nick, ==, "server-sent-nack");
  /* Appended: the older codes keep their values (ABI). */
  g_assert_cmpint (CAREHARE_ERROR_BAD_BYTES_FROM_SERVER, ==, 9);
  value = g_enum_get_value (error_class, CAREHARE_ERROR_MESSAGE_TOO_LARGE);
  g_assert_nonnull (value);
  g_assert_cmpint (value->value, ==, 10);
  g_assert_cmpstr (value->value_nick, ==, "message-too-large");
  flag = g_flags_get_first_value (publish_class, CAREHARE_PUBLISH_FLAGS_MANDATORY);
  g_assert_nonnull (flag);
  g_assert_cmpstr (flag->value_name, ==, "CAREHARE_PUBLISH_FLAGS_MANDATORY");
  g_assert_true (G_TYPE_IS_FLAGS (CAREHARE_TYPE_QUEUE_FLAGS));
  g_assert_true (G_TYPE_IS_FLAGS (CAREHARE_TYPE_EXCHANGE_FLAGS));
}

static void
test_version (void)
{
  g_assert_cmpuint (carehare_get_major_version (), ==, CAREHARE_MAJOR_VERSION);
  g_assert_cmpuint (carehare_get_minor_version (), ==, CAREHARE_MINOR_VERSION);
  g_assert_cmpuint (carehare_get_micro_version (), ==, CAREHARE_MICRO_VERSION);
  g_assert_true (carehare_check_version (CAREHARE_MAJOR_VERSION, CAREHARE_MINOR_VERSION, 0));
  g_assert_false (carehare_check_version (CAREHARE_MAJOR_VERSION + 1, 0, 0));
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error/reply-code/round-trip", test_reply_code_round_trip);
  g_test_add_func ("/error/reply-code/name-added", test_reply_code_name_added);
  g_test_add_func ("/error/reply-code/unroutable", test_reply_code_unroutable);
  g_test_add_func ("/error/reply-code/absent", test_reply_code_absent);
  g_test_add_func ("/error/reply-code/names", test_reply_code_names);
  g_test_add_func ("/error/is-transient/table", test_is_transient);
  g_test_add_func ("/error/is-transient/code-needs-close", test_is_transient_code_needs_close);
  g_test_add_func ("/error/types-registered", test_types_registered);
  g_test_add_func ("/version", test_version);
  return g_test_run ();
}
