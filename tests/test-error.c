/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <carehare-glib/carehare-glib.h>

#include "carehare-error-private.h"

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
  g_test_add_func ("/error/reply-code/absent", test_reply_code_absent);
  g_test_add_func ("/error/reply-code/names", test_reply_code_names);
  g_test_add_func ("/error/types-registered", test_types_registered);
  g_test_add_func ("/version", test_version);
  return g_test_run ();
}
