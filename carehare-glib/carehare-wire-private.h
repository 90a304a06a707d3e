/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the wire codec's files share: carehare-wire.c (frames, methods,
 * content headers, short and long strings) and carehare-wire-table.c
 * (field tables <-> GVariant). Big-endian helpers and the bounds-checked
 * reader every decoder uses.
 */

#include "carehare-wire.h"

G_BEGIN_DECLS

/* ------------------------------------------------------------ big-endian */

static inline guint16
get_u16 (const guint8 *p)
{
  return (guint16) (((guint16) p[0] << 8) | p[1]);
}

static inline guint32
get_u32 (const guint8 *p)
{
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

static inline guint64
get_u64 (const guint8 *p)
{
  return ((guint64) get_u32 (p) << 32) | get_u32 (p + 4);
}

static inline void
put_u8 (GByteArray *out,
        guint8      v)
{
  g_byte_array_append (out, &v, 1);
}

static inline void
put_u16 (GByteArray *out,
         guint16     v)
{
  guint8 b[2] = { (guint8) (v >> 8), (guint8) v };

  g_byte_array_append (out, b, sizeof b);
}

static inline void
set_u32 (guint8  *p,
         guint32  v)
{
  p[0] = (guint8) (v >> 24);
  p[1] = (guint8) (v >> 16);
  p[2] = (guint8) (v >> 8);
  p[3] = (guint8) v;
}

static inline void
put_u32 (GByteArray *out,
         guint32     v)
{
  guint8 b[4];

  set_u32 (b, v);
  g_byte_array_append (out, b, sizeof b);
}

static inline void
put_u64 (GByteArray *out,
         guint64     v)
{
  put_u32 (out, (guint32) (v >> 32));
  put_u32 (out, (guint32) v);
}

/* ---------------------------------------------------------------- reader */

typedef struct {
  const guint8 *data;  /* start of the buffer; offsets are relative to it */
  gsize end;           /* reading stops here (a table's end, or the size) */
  gsize pos;
} Reader;

static inline gsize
reader_left (const Reader *r)
{
  return r->end - r->pos;
}

static inline guint8
read_u8 (Reader *r)
{
  return r->data[r->pos++];
}

static inline guint16
read_u16 (Reader *r)
{
  guint16 v = get_u16 (r->data + r->pos);

  r->pos += 2;
  return v;
}

static inline guint32
read_u32 (Reader *r)
{
  guint32 v = get_u32 (r->data + r->pos);

  r->pos += 4;
  return v;
}

static inline guint64
read_u64 (Reader *r)
{
  guint64 v = get_u64 (r->data + r->pos);

  r->pos += 8;
  return v;
}

gboolean  _carehare_wire_reader_need    (Reader      *r,
                                        gsize        n,
                                        const char  *what,
                                        GError     **error);
char     *_carehare_wire_read_shortstr  (Reader      *r,
                                        const char  *what,
                                        gboolean     lenient,
                                        GError     **error);
GBytes   *_carehare_wire_read_longstr   (Reader      *r,
                                        const char  *what,
                                        GError     **error);
/* carehare-wire-table.c */
GVariant *_carehare_wire_read_table_arg (Reader      *r,
                                        GError     **error);
gboolean  _carehare_wire_write_table    (GByteArray  *out,
                                        GVariant    *table,
                                        const char  *what,
                                        GError     **error);

G_END_DECLS
