/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Logs a connection-level event through g_log_structured_array() with the
 * fields an operator filters on in the journal: CAREHARE_URI (pass a
 * redacted URI only, never one with its password), CAREHARE_REPLY_CODE and
 * CAREHARE_CHANNEL (each left out when NULL or 0), under the "Carehare"
 * domain. Debug level unless the event deserves more. */
void _carehare_log (GLogLevelFlags  level,
                    const char     *redacted_uri,
                    guint           reply_code,
                    guint           channel,
                    const char     *format,
                    ...) G_GNUC_PRINTF (5, 6);

G_END_DECLS
