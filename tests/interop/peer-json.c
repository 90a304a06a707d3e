/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "peer-json.h"

#include <math.h>
#include <string.h>

void
peer_json_string (GString    *out,
                  const char *text,
                  gssize      len)
{
  gsize n = len < 0 ? strlen (text) : (gsize) len;

  g_string_append_c (out, '"');
  for (gsize i = 0; i < n; i++)
    {
      guchar c = (guchar) text[i];

      if (c == '"' || c == '\\')
        {
          g_string_append_c (out, '\\');
          g_string_append_c (out, (char) c);
        }
      else if (c < 0x20 || c == 0x7f)
        g_string_append_printf (out, "\\u%04x", c);
      else
        g_string_append_c (out, (char) c);
    }
  g_string_append_c (out, '"');
}

void
peer_json_hex (GString      *out,
               const guint8 *data,
               gsize         len)
{
  g_string_append_c (out, '"');
  for (gsize i = 0; i < len; i++)
    g_string_append_printf (out, "%02x", data[i]);
  g_string_append_c (out, '"');
}

void
peer_json_long_string (GString      *out,
                       const guint8 *data,
                       gsize         len)
{
  if (g_utf8_validate_len ((const char *) data, len, NULL))
    {
      g_string_append (out, "{\"t\":\"S\",\"v\":");
      peer_json_string (out, (const char *) data, (gssize) len);
    }
  else
    {
      g_string_append (out, "{\"t\":\"S\",\"hex\":");
      peer_json_hex (out, data, len);
    }
  g_string_append_c (out, '}');
}

void
peer_json_byte_array (GString      *out,
                      const guint8 *data,
                      gsize         len)
{
  g_string_append (out, "{\"t\":\"x\",\"hex\":");
  peer_json_hex (out, data, len);
  g_string_append_c (out, '}');
}

void
peer_json_double (GString *out,
                  double   value)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (isnan (value))
    g_string_append (out, "NaN");
  else if (isinf (value))
    g_string_append (out, value > 0 ? "Infinity" : "-Infinity");
  else
    g_string_append (out, g_ascii_formatd (buf, sizeof buf, "%.17g", value));
}

void
peer_json_member (GString    *out,
                  gboolean   *first,
                  const char *name)
{
  if (!*first)
    g_string_append_c (out, ',');
  *first = FALSE;
  peer_json_string (out, name, -1);
  g_string_append_c (out, ':');
}

void
peer_json_member_string (GString    *out,
                         gboolean   *first,
                         const char *name,
                         const char *value,
                         gssize      len)
{
  if (value == NULL)
    return;
  peer_json_member (out, first, name);
  if (g_utf8_validate_len (value, len < 0 ? strlen (value) : (gsize) len, NULL))
    peer_json_string (out, value, len);
  else
    {
      /* Not text: {"hex": ...} so that the difference shows. */
      g_string_append (out, "{\"hex\":");
      peer_json_hex (out, (const guint8 *) value, len < 0 ? strlen (value) : (gsize) len);
      g_string_append_c (out, '}');
    }
}

void
peer_json_member_uint (GString    *out,
                       gboolean   *first,
                       const char *name,
                       guint64     value)
{
  peer_json_member (out, first, name);
  g_string_append_printf (out, "%" G_GUINT64_FORMAT, value);
}
