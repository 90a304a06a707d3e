/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare_error_is_transient() against every error the suites produce.
 *
 * Included by every C test (through carehare-test-util.h or
 * protocol-fixture.h, or directly), this replaces g_assert_error(): after
 * checking the domain and code as GLib's does, it checks that the library
 * classifies the error as issue 17's table does. That table is written
 * down here as the issue lists it, row by row, rather than as the
 * library's switch, so that a change to either shows up in every suite
 * that produces the error; test-error checks this list against its own
 * hand-written cases.
 */
#pragma once

#include <carehare-glib/carehare-glib.h>

/* The rows of issue 17 that say TRUE; everything else is FALSE. A
 * reply_code of 0: any (the error carries none). */
static inline gboolean
carehare_test_expected_transient (const GError *error)
{
  static const struct {
    GQuark (*domain) (void);
    int code;
    guint reply_code;
  } transient_rows[] = {
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED, 0 },
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR, 0 },
    /* Socket errors: refused, reset (and a broken pipe, the same code),
     * timed out, host or network unreachable. */
    { g_io_error_quark, G_IO_ERROR_CONNECTION_REFUSED, 0 },
    { g_io_error_quark, G_IO_ERROR_CONNECTION_CLOSED, 0 },
    { g_io_error_quark, G_IO_ERROR_TIMED_OUT, 0 },
    { g_io_error_quark, G_IO_ERROR_HOST_UNREACHABLE, 0 },
    { g_io_error_quark, G_IO_ERROR_NETWORK_UNREACHABLE, 0 },
    /* Server closes: 320 CONNECTION_FORCED, 501/502/505 frame errors,
     * 541 INTERNAL_ERROR, 405 RESOURCE_LOCKED; of a connection or of a
     * channel. */
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER, 320 },
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER, 501 },
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER, 502 },
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER, 505 },
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER, 541 },
    { carehare_error_quark, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER, 405 },
    { carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 320 },
    { carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 501 },
    { carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 502 },
    { carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 505 },
    { carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 541 },
    { carehare_error_quark, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER, 405 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (transient_rows); i++)
    if (error->domain == transient_rows[i].domain () &&
        error->code == transient_rows[i].code &&
        (transient_rows[i].reply_code == 0 ||
         carehare_error_get_reply_code (error) == transient_rows[i].reply_code))
      return TRUE;
  return FALSE;
}

static inline void
carehare_test_check_transient (const GError *error,
                               const char   *file,
                               int           line,
                               const char   *func,
                               const char   *expr)
{
  gboolean expected = carehare_test_expected_transient (error);
  g_autofree char *message = NULL;

  if (carehare_error_is_transient (error) == expected)
    return;
  message = g_strdup_printf ("carehare_error_is_transient (%s) should be %s for %s %d: %s",
                             expr, expected ? "TRUE" : "FALSE",
                             g_quark_to_string (error->domain), error->code, error->message);
  g_assertion_message (G_LOG_DOMAIN, file, line, func, message);
}

#undef g_assert_error
#define g_assert_error(err, dom, c)                                                       \
  G_STMT_START {                                                                          \
    const GError *carehare_test_error_ = (err);                                           \
    if (carehare_test_error_ == NULL || carehare_test_error_->domain != (dom) ||          \
        carehare_test_error_->code != (int) (c))                                          \
      g_assertion_message_error (G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC,             \
                                 #err, carehare_test_error_, dom, (int) (c));             \
    else                                                                                  \
      carehare_test_check_transient (carehare_test_error_, __FILE__, __LINE__, G_STRFUNC, \
                                     #err);                                               \
  } G_STMT_END
