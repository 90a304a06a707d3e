/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-log-private.h"

#include <stdarg.h>

/* The syslog priority journald stores for each level (what g_log_structured()
 * adds itself; g_log_structured_array() expects it among the fields). */
static const char *
level_priority (GLogLevelFlags level)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return "3";
  if (level & G_LOG_LEVEL_WARNING)
    return "4";
  if (level & G_LOG_LEVEL_MESSAGE)
    return "5";
  if (level & G_LOG_LEVEL_INFO)
    return "6";
  return "7";
}

void
_carehare_log (GLogLevelFlags  level,
               const char     *redacted_uri,
               guint           reply_code,
               guint           channel,
               const char     *format,
               ...)
{
  GLogField fields[6];
  gsize n = 0;
  g_autofree char *message = NULL;
  char code_text[16];
  char channel_text[16];
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  fields[n++] = (GLogField) { "GLIB_DOMAIN", G_LOG_DOMAIN, -1 };
  fields[n++] = (GLogField) { "PRIORITY", level_priority (level), -1 };
  fields[n++] = (GLogField) { "MESSAGE", message, -1 };
  if (redacted_uri != NULL)
    fields[n++] = (GLogField) { "CAREHARE_URI", redacted_uri, -1 };
  if (reply_code != 0)
    {
      g_snprintf (code_text, sizeof code_text, "%u", reply_code);
      fields[n++] = (GLogField) { "CAREHARE_REPLY_CODE", code_text, -1 };
    }
  if (channel != 0)
    {
      g_snprintf (channel_text, sizeof channel_text, "%u", channel);
      fields[n++] = (GLogField) { "CAREHARE_CHANNEL", channel_text, -1 };
    }
  g_log_structured_array (level, fields, n);
}
