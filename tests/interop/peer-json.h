/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writing the canonical message description shared by the interop peers
 * (see interop-test.py for the format and the comparison rules).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A JSON string literal of @len bytes of valid UTF-8 (-1: NUL-terminated). */
void peer_json_string (GString    *out,
                       const char *text,
                       gssize      len);
/* A JSON string of lower-case hex digits. */
void peer_json_hex    (GString      *out,
                       const guint8 *data,
                       gsize         len);
/* {"t":"S","v":"text"} when the bytes are valid UTF-8 without NUL,
 * else {"t":"S","hex":"..."}. */
void peer_json_long_string (GString      *out,
                            const guint8 *data,
                            gsize         len);
/* {"t":"x","hex":"..."} */
void peer_json_byte_array (GString      *out,
                           const guint8 *data,
                           gsize         len);
/* A double that parses back to the same value (NaN and infinities as
 * Python's json module writes them). */
void peer_json_double (GString *out,
                       double   value);

/* ,"name":"value" for an optional short-string property (nothing if NULL).
 * @first is cleared after the first member. */
void peer_json_member_string (GString    *out,
                              gboolean   *first,
                              const char *name,
                              const char *value,
                              gssize      len);
void peer_json_member_uint   (GString    *out,
                              gboolean   *first,
                              const char *name,
                              guint64     value);
/* Starts a member: writes the separator and "name": */
void peer_json_member        (GString    *out,
                              gboolean   *first,
                              const char *name);

G_END_DECLS
