/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for the URI parser and redaction: no crash, no leak, and the
 * invariants below hold for any input.
 */
#include <string.h>

#include "fuzz-common.h"

#include "carehare-error.h"
#include "carehare-uri.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autofree char *uri = NULL;
  g_autofree char *redacted = NULL;
  g_auto(CarehareUriSettings) settings = { 0, };
  g_autoptr(GError) error = NULL;

  fuzz_init ();

  /* The parser takes a C string: stop at an embedded NUL. */
  uri = g_strndup ((const char *) data, size);

  if (carehare_uri_parse (uri, &settings, &error))
    {
      g_assert_no_error (error);
      g_assert_nonnull (settings.host);
      g_assert_cmpuint (settings.port, !=, 0);
      g_assert_nonnull (settings.username);
      g_assert_nonnull (settings.password);
      g_assert_nonnull (settings.vhost);
      g_assert_cmpuint (strlen (settings.vhost), <=, 255);
      g_assert_true (g_utf8_validate (settings.host, -1, NULL));
      g_assert_true (g_utf8_validate (settings.username, -1, NULL));
      g_assert_true (g_utf8_validate (settings.vhost, -1, NULL));
      g_assert_cmpint (settings.heartbeat, >=, -1);
      g_assert_cmpint (settings.heartbeat, <=, G_MAXUINT16);
      g_assert_cmpint (settings.channel_max, >=, -1);
      g_assert_cmpint (settings.channel_max, <=, G_MAXUINT16);
      g_assert_cmpint (settings.connection_timeout_ms, >=, -1);
      g_assert_cmpint (settings.connection_timeout_ms, <=, G_MAXUINT32);
      g_assert_true (settings.frame_max == -1 || settings.frame_max == 0 ||
                     (settings.frame_max >= 4096 && settings.frame_max <= G_MAXUINT32));
      g_assert_true ((settings.certfile == NULL) == (settings.keyfile == NULL));
      if (!settings.tls)
        g_assert_true (settings.cacertfile == NULL && settings.certfile == NULL &&
                       settings.server_name_indication == NULL &&
                       !settings.server_name_indication_disabled &&
                       settings.verify == CAREHARE_TLS_VERIFY_PEER);
    }
  else
    {
      g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      /* A failed parse leaves nothing behind. */
      g_assert_null (settings.host);
      g_assert_null (settings.password);
    }

  redacted = carehare_uri_redact (uri);
  g_assert_nonnull (redacted);
  g_assert_true (g_utf8_validate (redacted, -1, NULL));

  return 0;
}
