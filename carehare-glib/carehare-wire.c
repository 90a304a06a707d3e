/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AMQP 0-9-1 wire codec: frames, methods, content headers and field
 * tables, sans I/O.  Big-endian everywhere.
 *
 * Field tables <-> GVariant
 * =========================
 *
 * A table is an a{sv}: an array, so entry order and duplicate keys survive.
 * Keys are short strings, decoded leniently (see read_shortstr()), so a
 * key that is not valid UTF-8 does not round-trip.  Decoding maps
 * each AMQP value type to a distinct GVariant type, so that
 * AMQP -> GVariant -> AMQP reproduces the bytes exactly:
 *
 *   AMQP  meaning                  GVariant
 *   t     boolean                  b
 *   b     signed 8                 (n)   1-tuple, int16 in -128..127
 *   B     unsigned 8               y
 *   s     signed 16                n
 *   u     unsigned 16              q
 *   I     signed 32                i
 *   i     unsigned 32              u
 *   l     signed 64                x
 *   f     float                    (d)   1-tuple, the float's exact value
 *   d     double                   d
 *   D     decimal                  (yi)  (scale, unscaled signed 32 value)
 *   S     long string              s  if valid UTF-8 without NUL, else ay
 *   x     byte array               ay
 *   A     array                    av
 *   T     timestamp                t     uint64 seconds
 *   F     nested table             a{sv}
 *   V     void                     ()
 *
 * Encoding is the inverse, with one tag change: `ay` encodes as `x`, so a
 * long string that was not UTF-8 comes back as a byte array with identical
 * bytes (RabbitMQ treats both as binary).  Conveniences when encoding:
 * `s`, `o`, `g` -> S; any `a{s?}` dict -> F; any other array `aX` -> A
 * (each element by its own type); `v` is unwrapped; a maybe is its value
 * when present and V when Nothing.  Anything else (`h`, other tuples, an
 * `(n)` outside int8 range, an `(d)` that no float represents exactly, a
 * NaN or an infinity) fails with CAREHARE_WIRE_ERROR_UNENCODABLE naming the
 * key and the GVariant type.
 * Tables and arrays nested deeper than CAREHARE_WIRE_MAX_NESTING fail with
 * NESTING_TOO_DEEP when decoding and UNENCODABLE when encoding.  A NaN or
 * infinite float or double decodes with its exact bits (payload included),
 * but is UNENCODABLE: RabbitMQ closes the connection with 541 for one.
 *
 * Validation: every length is checked against the bytes remaining before
 * anything is read or allocated, so no allocation is sized by an unchecked
 * length; error messages give offsets relative to the start of the buffer
 * handed to the decoder (the frame payload, or the table).
 */

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "carehare-wire.h"

const guint8 carehare_wire_protocol_header[8] = { 'A', 'M', 'Q', 'P', 0, 0, 9, 1 };

G_DEFINE_QUARK (carehare-wire-error-quark, carehare_wire_error)

guint16
carehare_wire_error_reply_code (const GError *error)
{
  if (error == NULL || error->domain != CAREHARE_WIRE_ERROR)
    return 0;

  switch ((CarehareWireError) error->code)
    {
    case CAREHARE_WIRE_ERROR_BAD_FRAME_END:
    case CAREHARE_WIRE_ERROR_UNKNOWN_FRAME_TYPE:
    case CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE:
    case CAREHARE_WIRE_ERROR_BAD_HEARTBEAT:
      return 501;  /* FRAME_ERROR */
    case CAREHARE_WIRE_ERROR_TRUNCATED:
    case CAREHARE_WIRE_ERROR_BAD_SHORT_STRING:
    case CAREHARE_WIRE_ERROR_NESTING_TOO_DEEP:
    case CAREHARE_WIRE_ERROR_BAD_FIELD_TYPE:
    case CAREHARE_WIRE_ERROR_TRAILING_BYTES:
    case CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER:
      return 502;  /* SYNTAX_ERROR */
    case CAREHARE_WIRE_ERROR_UNKNOWN_METHOD:
      return 540;  /* NOT_IMPLEMENTED */
    case CAREHARE_WIRE_ERROR_BODY_TOO_LARGE:
      return 311;  /* CONTENT_TOO_LARGE */
    case CAREHARE_WIRE_ERROR_UNENCODABLE:
    default:
      return 0;
    }
}

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

/* Floats travel as their exact value in a double.  NaNs are converted by
 * hand so that their payload (and signalling bit) survives both ways; a
 * hardware conversion would quiet a signalling NaN. */
static gdouble
float_bits_to_double (guint32 bits)
{
  gdouble result;

  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0)
    {
      guint64 d = ((guint64) (bits & 0x80000000u) << 32)
                  | G_GUINT64_CONSTANT (0x7FF0000000000000)
                  | ((guint64) (bits & 0x007FFFFFu) << 29);
      memcpy (&result, &d, sizeof result);
    }
  else
    {
      gfloat f;

      memcpy (&f, &bits, sizeof f);
      result = f;
    }

  return result;
}

static gboolean
double_to_float_bits (gdouble  v,
                      guint32 *bits)
{
  guint64 d;

  memcpy (&d, &v, sizeof d);
  if ((d & G_GUINT64_CONSTANT (0x7FF0000000000000)) == G_GUINT64_CONSTANT (0x7FF0000000000000)
      && (d & G_GUINT64_CONSTANT (0x000FFFFFFFFFFFFF)) != 0)
    {
      /* NaN: representable only if the low 29 payload bits are zero */
      if ((d & ((G_GUINT64_CONSTANT (1) << 29) - 1)) != 0)
        return FALSE;
      *bits = (guint32) ((d >> 32) & 0x80000000u) | 0x7F800000u
              | (guint32) ((d >> 29) & 0x007FFFFFu);
      return TRUE;
    }
  else
    {
      gfloat f;

      /* Converting an out-of-range double to float is undefined. */
      if ((v > G_MAXFLOAT || v < -G_MAXFLOAT) && !isinf (v))
        return FALSE;
      f = (gfloat) v;
      if ((gdouble) f != v)
        return FALSE;
      memcpy (bits, &f, sizeof *bits);
      return TRUE;
    }
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

static gboolean
reader_need (Reader      *r,
             gsize        n,
             const char  *what,
             GError     **error)
{
  if (reader_left (r) >= n)
    return TRUE;

  g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_TRUNCATED,
               "Truncated %s at offset %" G_GSIZE_FORMAT ": needs %" G_GSIZE_FORMAT
               " bytes, only %" G_GSIZE_FORMAT " left",
               what, r->pos, n, reader_left (r));
  return FALSE;
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

/* A short string; returns a new, valid UTF-8 string without NUL.
 *
 * Short strings that carry other programs' bytes (properties, header
 * keys, the routing key of a delivery), which RabbitMQ passes on
 * unchecked, are decoded @lenient-ly, as the Java client decodes them:
 * each byte that is not part of valid UTF-8, and each NUL, becomes
 * U+FFFD, and the result is cut at a character boundary to at most 255
 * bytes, so that it can be written back as a short string. Otherwise
 * such a string is the server's mistake: BAD_SHORT_STRING. */
static char *
read_shortstr (Reader      *r,
               const char  *what,
               gboolean     lenient,
               GError     **error)
{
  gsize start = r->pos;
  guint8 len;
  const char *str;
  char *fixed;

  if (!reader_need (r, 1, what, error))
    return NULL;
  len = read_u8 (r);
  if (!reader_need (r, len, what, error))
    return NULL;

  str = (const char *) r->data + r->pos;
  if (g_utf8_validate_len (str, len, NULL))
    {
      r->pos += len;
      return g_strndup (str, len);
    }
  if (!lenient)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_SHORT_STRING,
                   "Short string %s at offset %" G_GSIZE_FORMAT " (%u bytes) is not valid "
                   "UTF-8 or contains a NUL byte", what, start, (guint) len);
      return NULL;
    }
  r->pos += len;
  fixed = g_utf8_make_valid (str, len);
  if (strlen (fixed) > 255)
    *g_utf8_find_prev_char (fixed, fixed + 256) = '\0';
  return fixed;
}

static GBytes *
read_longstr (Reader      *r,
              const char  *what,
              GError     **error)
{
  guint32 len;
  GBytes *bytes;

  if (!reader_need (r, 4, what, error))
    return NULL;
  len = read_u32 (r);
  if (!reader_need (r, len, what, error))
    return NULL;
  bytes = g_bytes_new (r->data + r->pos, len);
  r->pos += len;
  return bytes;
}

/* ------------------------------------------------------ table decoding */

static GVariant *read_table (Reader *r, guint depth, GError **error);
static GVariant *read_array (Reader *r, guint depth, GError **error);

/* Returns a floating value. */
static GVariant *
read_field_value (Reader      *r,
                  guint        depth,
                  GError     **error)
{
  gsize type_offset = r->pos;
  guint8 type;

  if (!reader_need (r, 1, "field value type", error))
    return NULL;
  type = read_u8 (r);

  switch (type)
    {
    case 't':
      if (!reader_need (r, 1, "boolean field value", error))
        return NULL;
      return g_variant_new_boolean (read_u8 (r) != 0);
    case 'b':
      if (!reader_need (r, 1, "signed 8-bit field value", error))
        return NULL;
      return g_variant_new ("(n)", (gint16) (gint8) read_u8 (r));
    case 'B':
      if (!reader_need (r, 1, "unsigned 8-bit field value", error))
        return NULL;
      return g_variant_new_byte (read_u8 (r));
    case 's':
      if (!reader_need (r, 2, "signed 16-bit field value", error))
        return NULL;
      return g_variant_new_int16 ((gint16) read_u16 (r));
    case 'u':
      if (!reader_need (r, 2, "unsigned 16-bit field value", error))
        return NULL;
      return g_variant_new_uint16 (read_u16 (r));
    case 'I':
      if (!reader_need (r, 4, "signed 32-bit field value", error))
        return NULL;
      return g_variant_new_int32 ((gint32) read_u32 (r));
    case 'i':
      if (!reader_need (r, 4, "unsigned 32-bit field value", error))
        return NULL;
      return g_variant_new_uint32 (read_u32 (r));
    case 'l':
      if (!reader_need (r, 8, "signed 64-bit field value", error))
        return NULL;
      return g_variant_new_int64 ((gint64) read_u64 (r));
    case 'T':
      if (!reader_need (r, 8, "timestamp field value", error))
        return NULL;
      return g_variant_new_uint64 (read_u64 (r));
    case 'f':
      if (!reader_need (r, 4, "float field value", error))
        return NULL;
      return g_variant_new ("(d)", float_bits_to_double (read_u32 (r)));
    case 'd':
      {
        guint64 bits;
        gdouble d;

        if (!reader_need (r, 8, "double field value", error))
          return NULL;
        bits = read_u64 (r);
        memcpy (&d, &bits, sizeof d);
        return g_variant_new_double (d);
      }
    case 'D':
      {
        guint8 scale;

        if (!reader_need (r, 5, "decimal field value", error))
          return NULL;
        scale = read_u8 (r);
        return g_variant_new ("(yi)", scale, (gint32) read_u32 (r));
      }
    case 'S':
    case 'x':
      {
        guint32 len;
        const char *p;

        if (!reader_need (r, 4, type == 'S' ? "long string length" : "byte array length", error))
          return NULL;
        len = read_u32 (r);
        if (!reader_need (r, len, type == 'S' ? "long string" : "byte array", error))
          return NULL;
        p = (const char *) r->data + r->pos;
        r->pos += len;
        if (type == 'S' && g_utf8_validate_len (p, len, NULL))
          return g_variant_new_take_string (g_strndup (p, len));
        return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, p, len, 1);
      }
    case 'A':
      return read_array (r, depth + 1, error);
    case 'F':
      return read_table (r, depth + 1, error);
    case 'V':
      return g_variant_new_tuple (NULL, 0);
    default:
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_FIELD_TYPE,
                   "Unknown field value type 0x%02x ('%c') at offset %" G_GSIZE_FORMAT,
                   type, g_ascii_isprint (type) ? type : '?', type_offset);
      return NULL;
    }
}

static gboolean
check_depth (Reader      *r,
             guint        depth,
             GError     **error)
{
  if (depth <= CAREHARE_WIRE_MAX_NESTING)
    return TRUE;

  g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_NESTING_TOO_DEEP,
               "Field tables/arrays nested more than %d levels deep at offset %" G_GSIZE_FORMAT,
               CAREHARE_WIRE_MAX_NESTING, r->pos);
  return FALSE;
}

/* Reads a 4-byte length and sets up @sub to read exactly that many bytes. */
static gboolean
read_container_start (Reader      *r,
                      Reader      *sub,
                      const char  *what,
                      GError     **error)
{
  guint32 len;

  if (!reader_need (r, 4, what, error))
    return FALSE;
  len = read_u32 (r);
  if (!reader_need (r, len, what, error))
    return FALSE;

  sub->data = r->data;
  sub->pos = r->pos;
  sub->end = r->pos + len;
  r->pos = sub->end;
  return TRUE;
}

/* Returns a floating a{sv}. */
static GVariant *
read_table (Reader      *r,
            guint        depth,
            GError     **error)
{
  GVariantBuilder builder;
  Reader sub;

  if (!check_depth (r, depth, error) ||
      !read_container_start (r, &sub, "field table", error))
    return NULL;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  while (reader_left (&sub) > 0)
    {
      g_autofree char *key = NULL;
      GVariant *value;

      key = read_shortstr (&sub, "field table key", TRUE, error);
      if (key == NULL)
        goto fail;
      value = read_field_value (&sub, depth, error);
      if (value == NULL)
        goto fail;
      g_variant_builder_add (&builder, "{sv}", key, value);
    }

  return g_variant_builder_end (&builder);

fail:
  g_variant_builder_clear (&builder);
  return NULL;
}

/* Returns a floating av. */
static GVariant *
read_array (Reader      *r,
            guint        depth,
            GError     **error)
{
  GVariantBuilder builder;
  Reader sub;

  if (!check_depth (r, depth, error) ||
      !read_container_start (r, &sub, "field array", error))
    return NULL;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
  while (reader_left (&sub) > 0)
    {
      GVariant *value = read_field_value (&sub, depth, error);

      if (value == NULL)
        {
          g_variant_builder_clear (&builder);
          return NULL;
        }
      g_variant_builder_add (&builder, "v", value);
    }

  return g_variant_builder_end (&builder);
}

/* A table argument or property: returns a new, non-floating a{sv}. */
static GVariant *
read_table_arg (Reader      *r,
                GError     **error)
{
  GVariant *table = read_table (r, 1, error);

  return table != NULL ? g_variant_ref_sink (table) : NULL;
}

GVariant *
carehare_wire_table_decode (const guint8  *data,
                            gsize          size,
                            GError       **error)
{
  Reader r = { data, size, 0 };
  GVariant *table;

  g_return_val_if_fail (data != NULL || size == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  table = read_table_arg (&r, error);
  if (table == NULL)
    return NULL;
  if (reader_left (&r) > 0)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_TRAILING_BYTES,
                   "%" G_GSIZE_FORMAT " trailing bytes after a field table of %"
                   G_GSIZE_FORMAT " bytes", reader_left (&r), r.pos);
      g_variant_unref (table);
      return NULL;
    }
  return table;
}

/* ------------------------------------------------------ table encoding */

static gboolean write_value (GByteArray *out, GVariant *value, guint depth,
                             const char *key, GError **error);
static gboolean write_table_entries (GByteArray *out, GVariant *dict, guint depth,
                                     const char *key, GError **error);

static gboolean
unencodable_value (GVariant    *value,
                   const char  *key,
                   const char  *why,
                   GError     **error)
{
  g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
               "Cannot encode field table value for key '%s' of GVariant type '%s': %s",
               key != NULL ? key : "", g_variant_get_type_string (value), why);
  return FALSE;
}

/* RabbitMQ cannot handle a NaN or an infinity in a table: it closes the
 * whole connection with 541 INTERNAL_ERROR. Refused here, so that only the
 * call that carries one fails. */
static gboolean
check_finite (GVariant    *value,
              gdouble      d,
              const char  *key,
              GError     **error)
{
  g_autofree char *why = NULL;

  if (isfinite (d))
    return TRUE;
  why = g_strdup_printf ("the %s %s is not a finite number, which RabbitMQ refuses "
                         "(it would close the connection with 541 INTERNAL_ERROR)",
                         g_variant_is_of_type (value, G_VARIANT_TYPE_DOUBLE) ? "double" : "float",
                         isnan (d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
  return unencodable_value (value, key, why, error);
}

static gboolean
is_table_type (const GVariantType *type)
{
  const GVariantType *entry;

  if (!g_variant_type_is_array (type))
    return FALSE;
  entry = g_variant_type_element (type);
  return g_variant_type_is_dict_entry (entry) &&
         g_variant_type_equal (g_variant_type_key (entry), G_VARIANT_TYPE_STRING);
}

/* Reserves a 4-byte length, returns its position. */
static gsize
begin_length (GByteArray *out)
{
  gsize pos = out->len;

  put_u32 (out, 0);
  return pos;
}

static gboolean
end_length (GByteArray  *out,
            gsize        pos,
            GVariant    *value,
            const char  *key,
            GError     **error)
{
  gsize len = out->len - pos - 4;

  if (len > G_MAXUINT32)
    return unencodable_value (value, key, "longer than 4 GiB", error);
  set_u32 (out->data + pos, (guint32) len);
  return TRUE;
}

static gboolean
write_bytes_field (GByteArray   *out,
                   guint8        tag,
                   const void   *data,
                   gsize         len,
                   GVariant     *value,
                   const char   *key,
                   GError      **error)
{
  if (len > G_MAXUINT32)
    return unencodable_value (value, key, "longer than 4 GiB", error);
  put_u8 (out, tag);
  put_u32 (out, (guint32) len);
  g_byte_array_append (out, data, (guint) len);
  return TRUE;
}

static gboolean
write_value (GByteArray  *out,
             GVariant    *value_in,
             guint        depth,
             const char  *key,
             GError     **error)
{
  g_autoptr(GVariant) value = g_variant_ref (value_in);
  const GVariantType *type;

  /* Unwrap variants and maybes iteratively: no recursion for v in v in v. */
  for (;;)
    {
      if (g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT))
        {
          GVariant *inner = g_variant_get_variant (value);

          g_variant_unref (value);
          value = inner;
        }
      else if (g_variant_type_is_maybe (g_variant_get_type (value)))
        {
          GVariant *inner = g_variant_get_maybe (value);

          if (inner == NULL)
            {
              put_u8 (out, 'V');
              return TRUE;
            }
          g_variant_unref (value);
          value = inner;
        }
      else
        break;
    }

  type = g_variant_get_type (value);

  if (g_variant_type_equal (type, G_VARIANT_TYPE_BOOLEAN))
    {
      put_u8 (out, 't');
      put_u8 (out, g_variant_get_boolean (value) ? 1 : 0);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_BYTE))
    {
      put_u8 (out, 'B');
      put_u8 (out, g_variant_get_byte (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_INT16))
    {
      put_u8 (out, 's');
      put_u16 (out, (guint16) g_variant_get_int16 (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UINT16))
    {
      put_u8 (out, 'u');
      put_u16 (out, g_variant_get_uint16 (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_INT32))
    {
      put_u8 (out, 'I');
      put_u32 (out, (guint32) g_variant_get_int32 (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UINT32))
    {
      put_u8 (out, 'i');
      put_u32 (out, g_variant_get_uint32 (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_INT64))
    {
      put_u8 (out, 'l');
      put_u64 (out, (guint64) g_variant_get_int64 (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UINT64))
    {
      put_u8 (out, 'T');
      put_u64 (out, g_variant_get_uint64 (value));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_DOUBLE))
    {
      gdouble d = g_variant_get_double (value);
      guint64 bits;

      if (!check_finite (value, d, key, error))
        return FALSE;
      memcpy (&bits, &d, sizeof bits);
      put_u8 (out, 'd');
      put_u64 (out, bits);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_STRING) ||
           g_variant_type_equal (type, G_VARIANT_TYPE_OBJECT_PATH) ||
           g_variant_type_equal (type, G_VARIANT_TYPE_SIGNATURE))
    {
      gsize len;
      const char *str = g_variant_get_string (value, &len);

      return write_bytes_field (out, 'S', str, len, value, key, error);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UNIT))
    {
      put_u8 (out, 'V');
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE ("(n)")))
    {
      gint16 v;

      g_variant_get (value, "(n)", &v);
      if (v < G_MININT8 || v > G_MAXINT8)
        return unencodable_value (value, key, "signed 8-bit value out of range -128..127", error);
      put_u8 (out, 'b');
      put_u8 (out, (guint8) (gint8) v);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE ("(d)")))
    {
      gdouble d;
      guint32 bits;

      g_variant_get (value, "(d)", &d);
      if (!check_finite (value, d, key, error))
        return FALSE;
      if (!double_to_float_bits (d, &bits))
        return unencodable_value (value, key, "value is not exactly representable as a float", error);
      put_u8 (out, 'f');
      put_u32 (out, bits);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE ("(yi)")))
    {
      guint8 scale;
      gint32 unscaled;

      g_variant_get (value, "(yi)", &scale, &unscaled);
      put_u8 (out, 'D');
      put_u8 (out, scale);
      put_u32 (out, (guint32) unscaled);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_BYTESTRING))
    {
      gsize len;
      const void *data = g_variant_get_fixed_array (value, &len, 1);

      return write_bytes_field (out, 'x', data, len, value, key, error);
    }
  else if (is_table_type (type))
    {
      put_u8 (out, 'F');
      return write_table_entries (out, value, depth + 1, key, error);
    }
  else if (g_variant_type_is_array (type))
    {
      gsize pos, i, n;

      if (depth + 1 > CAREHARE_WIRE_MAX_NESTING)
        return unencodable_value (value, key, "nested too deep", error);
      put_u8 (out, 'A');
      pos = begin_length (out);
      n = g_variant_n_children (value);
      for (i = 0; i < n; i++)
        {
          g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

          if (!write_value (out, child, depth + 1, key, error))
            return FALSE;
        }
      return end_length (out, pos, value, key, error);
    }
  else
    {
      return unencodable_value (value, key, "no AMQP field table mapping", error);
    }

  return TRUE;
}

/* Writes the length and entries of an a{s?} at nesting level @depth. */
static gboolean
write_table_entries (GByteArray  *out,
                     GVariant    *dict,
                     guint        depth,
                     const char  *key,
                     GError     **error)
{
  gsize pos, i, n;

  if (depth > CAREHARE_WIRE_MAX_NESTING)
    return unencodable_value (dict, key, "nested too deep", error);

  pos = begin_length (out);
  n = g_variant_n_children (dict);
  for (i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (dict, i);
      g_autoptr(GVariant) child_key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) child = g_variant_get_child_value (entry, 1);
      gsize key_len;
      const char *child_key_str = g_variant_get_string (child_key, &key_len);

      if (key_len > 255)
        {
          g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                       "Field table key '%.32s...' is %" G_GSIZE_FORMAT
                       " bytes long, at most 255 fit a short string", child_key_str, key_len);
          return FALSE;
        }
      put_u8 (out, (guint8) key_len);
      g_byte_array_append (out, (const guint8 *) child_key_str, (guint) key_len);
      if (!write_value (out, child, depth, child_key_str, error))
        return FALSE;
    }
  return end_length (out, pos, dict, key, error);
}

/* Appends without restoring @out on failure; callers truncate. */
static gboolean
write_table (GByteArray  *out,
             GVariant    *table,
             const char  *what,
             GError     **error)
{
  if (table == NULL)
    {
      put_u32 (out, 0);
      return TRUE;
    }
  if (!is_table_type (g_variant_get_type (table)))
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Cannot encode %s of GVariant type '%s' as a field table: a{sv} expected",
                   what, g_variant_get_type_string (table));
      return FALSE;
    }
  return write_table_entries (out, table, 1, NULL, error);
}

gboolean
carehare_wire_table_encode (GByteArray  *out,
                            GVariant    *table,
                            GError     **error)
{
  guint start;

  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  start = out->len;
  if (!write_table (out, table, "table", error))
    {
      g_byte_array_set_size (out, start);
      return FALSE;
    }
  return TRUE;
}

/* ---------------------------------------------------------------- frames */

gssize
carehare_frame_decode (const guint8   *data,
                       gsize           len,
                       guint32         frame_max,
                       CarehareFrame  *frame,
                       GError        **error)
{
  guint8 type;
  guint16 channel;
  guint32 size;
  guint64 total;

  g_return_val_if_fail (data != NULL || len == 0, -1);
  g_return_val_if_fail (frame != NULL, -1);
  g_return_val_if_fail (error == NULL || *error == NULL, -1);

  if (len < 1)
    return 0;

  type = data[0];
  if (type != CAREHARE_FRAME_METHOD && type != CAREHARE_FRAME_HEADER &&
      type != CAREHARE_FRAME_BODY && type != CAREHARE_FRAME_HEARTBEAT)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNKNOWN_FRAME_TYPE,
                   "Unknown frame type %u (expected 1 method, 2 header, 3 body or 8 heartbeat)",
                   (guint) type);
      return -1;
    }

  if (len < CAREHARE_FRAME_HEADER_SIZE)
    return 0;

  channel = get_u16 (data + 1);
  size = get_u32 (data + 3);
  total = (guint64) size + CAREHARE_FRAME_OVERHEAD;

  if (type == CAREHARE_FRAME_HEARTBEAT && (channel != 0 || size != 0))
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_HEARTBEAT,
                   "Heartbeat frame on channel %u with a payload of %u bytes "
                   "(must be channel 0, empty)", (guint) channel, size);
      return -1;
    }
  if ((frame_max != 0 && total > frame_max) || total > (guint64) G_MAXSSIZE)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE,
                   "Frame of type %u on channel %u has a payload of %u bytes: "
                   "%" G_GUINT64_FORMAT " bytes with overhead exceed frame_max %u",
                   (guint) type, (guint) channel, size, total, frame_max);
      return -1;
    }

  if (len < total)
    return 0;

  if (data[CAREHARE_FRAME_HEADER_SIZE + size] != CAREHARE_FRAME_END)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_FRAME_END,
                   "Frame end octet is 0x%02x instead of 0xCE after a payload of %u bytes "
                   "(frame type %u, channel %u)",
                   (guint) data[CAREHARE_FRAME_HEADER_SIZE + size], size,
                   (guint) type, (guint) channel);
      return -1;
    }

  frame->type = type;
  frame->channel = channel;
  frame->payload = size > 0 ? data + CAREHARE_FRAME_HEADER_SIZE : NULL;
  frame->size = size;
  return (gssize) total;
}

/* Appends a frame header with a zero size; returns its position. */
static guint
begin_frame (GByteArray *out,
             guint8      type,
             guint16     channel)
{
  guint start = out->len;
  guint8 header[CAREHARE_FRAME_HEADER_SIZE] = { type, (guint8) (channel >> 8), (guint8) channel, 0, 0, 0, 0 };

  g_byte_array_append (out, header, sizeof header);
  return start;
}

static gboolean
end_frame (GByteArray  *out,
           guint        start,
           GError     **error)
{
  gsize size = out->len - start - CAREHARE_FRAME_HEADER_SIZE;

  if (size > G_MAXUINT32 - CAREHARE_FRAME_OVERHEAD)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Frame payload of %" G_GSIZE_FORMAT " bytes is too large", size);
      return FALSE;
    }
  set_u32 (out->data + start + 3, (guint32) size);
  put_u8 (out, CAREHARE_FRAME_END);
  return TRUE;
}

void
carehare_wire_append_body_frame (GByteArray   *out,
                                 guint16       channel,
                                 const guint8 *data,
                                 gsize         size)
{
  guint start;

  g_return_if_fail (out != NULL);
  g_return_if_fail (data != NULL || size == 0);
  g_return_if_fail (size <= G_MAXUINT32 - CAREHARE_FRAME_OVERHEAD);

  start = begin_frame (out, CAREHARE_FRAME_BODY, channel);
  if (size > 0)
    g_byte_array_append (out, data, (guint) size);
  end_frame (out, start, NULL);
}

void
carehare_wire_append_heartbeat_frame (GByteArray *out)
{
  static const guint8 heartbeat[] = { CAREHARE_FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, CAREHARE_FRAME_END };

  g_return_if_fail (out != NULL);

  g_byte_array_append (out, heartbeat, sizeof heartbeat);
}

/* ------------------------------------------------ arguments and methods */

static gboolean
write_shortstr (GByteArray  *out,
                const char  *str,
                const char  *what,
                const char  *where,
                GError     **error)
{
  gsize len = str != NULL ? strlen (str) : 0;

  if (len > 255)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Cannot encode %s of %s: %" G_GSIZE_FORMAT
                   " bytes, a short string holds at most 255", what, where, len);
      return FALSE;
    }
  if (!g_utf8_validate_len (str, len, NULL))
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Cannot encode %s of %s: not valid UTF-8", what, where);
      return FALSE;
    }
  put_u8 (out, (guint8) len);
  if (len > 0)
    g_byte_array_append (out, (const guint8 *) str, (guint) len);
  return TRUE;
}

static gboolean
write_longstr (GByteArray  *out,
               GBytes      *bytes,
               const char  *what,
               const char  *where,
               GError     **error)
{
  gsize len = 0;
  const guint8 *data = bytes != NULL ? g_bytes_get_data (bytes, &len) : NULL;

  if (len > G_MAXUINT32)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Cannot encode %s of %s: longer than 4 GiB", what, where);
      return FALSE;
    }
  put_u32 (out, (guint32) len);
  if (len > 0)
    g_byte_array_append (out, data, (guint) len);
  return TRUE;
}

static gboolean
write_args (GByteArray               *out,
            const void               *base,
            const CarehareMethodArg  *args,
            guint                     n_args,
            const char               *where,
            GError                  **error)
{
  guint i, bit = 0;
  gsize bit_pos = 0;

  for (i = 0; i < n_args; i++)
    {
      const CarehareMethodArg *arg = &args[i];
      gconstpointer field = (const guint8 *) base + arg->offset;

      if (arg->type == CAREHARE_ARG_BIT)
        {
          if (bit == 0 || bit == 8)
            {
              bit_pos = out->len;
              put_u8 (out, 0);
              bit = 0;
            }
          if (*(const gboolean *) field)
            out->data[bit_pos] |= (guint8) (1u << bit);
          bit++;
          continue;
        }
      bit = 0;

      switch (arg->type)
        {
        case CAREHARE_ARG_OCTET:
          put_u8 (out, *(const guint8 *) field);
          break;
        case CAREHARE_ARG_SHORT:
          put_u16 (out, *(const guint16 *) field);
          break;
        case CAREHARE_ARG_LONG:
          put_u32 (out, *(const guint32 *) field);
          break;
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
          put_u64 (out, *(const guint64 *) field);
          break;
        case CAREHARE_ARG_SHORTSTR:
          if (!write_shortstr (out, *(char * const *) field, arg->name, where, error))
            return FALSE;
          break;
        case CAREHARE_ARG_LONGSTR:
          if (!write_longstr (out, *(GBytes * const *) field, arg->name, where, error))
            return FALSE;
          break;
        case CAREHARE_ARG_TABLE:
          if (!write_table (out, *(GVariant * const *) field, arg->name, error))
            {
              g_prefix_error (error, "%s %s: ", where, arg->name);
              return FALSE;
            }
          break;
        case CAREHARE_ARG_BIT:
        default:
          g_assert_not_reached ();
        }
    }
  return TRUE;
}

/* @lenient: short strings are another program's bytes (read_shortstr()). */
static gboolean
read_args (Reader                   *r,
           void                     *base,
           const CarehareMethodArg  *args,
           guint                     n_args,
           gboolean                  lenient,
           GError                  **error)
{
  guint i, bit = 0;
  guint8 bits = 0;

  for (i = 0; i < n_args; i++)
    {
      const CarehareMethodArg *arg = &args[i];
      gpointer field = (guint8 *) base + arg->offset;

      if (arg->type == CAREHARE_ARG_BIT)
        {
          if (bit == 0 || bit == 8)
            {
              if (!reader_need (r, 1, arg->name, error))
                return FALSE;
              bits = read_u8 (r);
              bit = 0;
            }
          *(gboolean *) field = (bits >> bit) & 1;
          bit++;
          continue;
        }
      bit = 0;

      switch (arg->type)
        {
        case CAREHARE_ARG_OCTET:
          if (!reader_need (r, 1, arg->name, error))
            return FALSE;
          *(guint8 *) field = read_u8 (r);
          break;
        case CAREHARE_ARG_SHORT:
          if (!reader_need (r, 2, arg->name, error))
            return FALSE;
          *(guint16 *) field = read_u16 (r);
          break;
        case CAREHARE_ARG_LONG:
          if (!reader_need (r, 4, arg->name, error))
            return FALSE;
          *(guint32 *) field = read_u32 (r);
          break;
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
          if (!reader_need (r, 8, arg->name, error))
            return FALSE;
          *(guint64 *) field = read_u64 (r);
          break;
        case CAREHARE_ARG_SHORTSTR:
          if ((*(char **) field = read_shortstr (r, arg->name, lenient, error)) == NULL)
            return FALSE;
          break;
        case CAREHARE_ARG_LONGSTR:
          if ((*(GBytes **) field = read_longstr (r, arg->name, error)) == NULL)
            return FALSE;
          break;
        case CAREHARE_ARG_TABLE:
          if ((*(GVariant **) field = read_table_arg (r, error)) == NULL)
            return FALSE;
          break;
        case CAREHARE_ARG_BIT:
        default:
          g_assert_not_reached ();
        }
    }
  return TRUE;
}

static void
clear_args (void                     *base,
            const CarehareMethodArg  *args,
            guint                     n_args)
{
  guint i;

  for (i = 0; i < n_args; i++)
    {
      gpointer field = (guint8 *) base + args[i].offset;

      switch (args[i].type)
        {
        case CAREHARE_ARG_SHORTSTR:
          g_clear_pointer ((char **) field, g_free);
          break;
        case CAREHARE_ARG_LONGSTR:
          g_clear_pointer ((GBytes **) field, g_bytes_unref);
          break;
        case CAREHARE_ARG_TABLE:
          g_clear_pointer ((GVariant **) field, g_variant_unref);
          break;
        case CAREHARE_ARG_BIT:
        case CAREHARE_ARG_OCTET:
        case CAREHARE_ARG_SHORT:
        case CAREHARE_ARG_LONG:
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
        default:
          break;
        }
    }
}

void
carehare_method_clear (CarehareMethod *method)
{
  const CarehareMethodInfo *info;

  g_return_if_fail (method != NULL);

  info = carehare_method_info_lookup (method->id);
  if (info != NULL)
    clear_args (method, info->args, info->n_args);
  memset (method, 0, sizeof *method);
}

gboolean
carehare_method_decode (const guint8    *payload,
                        gsize            size,
                        CarehareMethod  *method,
                        GError         **error)
{
  Reader r = { payload, size, 0 };
  const CarehareMethodInfo *info;
  guint16 class_id, method_id;
  gboolean lenient;

  g_return_val_if_fail (payload != NULL || size == 0, FALSE);
  g_return_val_if_fail (method != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (method, 0, sizeof *method);

  if (!reader_need (&r, 4, "method class and method ids", error))
    return FALSE;
  class_id = read_u16 (&r);
  method_id = read_u16 (&r);
  info = carehare_method_info_lookup (((guint32) class_id << 16) | method_id);
  if (info == NULL)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNKNOWN_METHOD,
                   "Unknown method: class %u, method %u", (guint) class_id, (guint) method_id);
      return FALSE;
    }

  method->id = info->id;
  /* What a delivery (or a returned or fetched message) says about where
   * it was published is another program's data. A close's reply text,
   * and a blocked reason, are text for a person, which RabbitMQ fills
   * with names other clients chose ("no queue 'caf\xe9'"): bytes that
   * are not UTF-8 there must not turn a channel error into a connection
   * error, nor lose the reply code. */
  lenient = info->id == CAREHARE_METHOD_BASIC_DELIVER || info->id == CAREHARE_METHOD_BASIC_RETURN ||
            info->id == CAREHARE_METHOD_BASIC_GET_OK ||
            info->id == CAREHARE_METHOD_CONNECTION_CLOSE ||
            info->id == CAREHARE_METHOD_CHANNEL_CLOSE ||
            info->id == CAREHARE_METHOD_CONNECTION_BLOCKED;
  if (!read_args (&r, method, info->args, info->n_args, lenient, error))
    {
      g_prefix_error (error, "%s: ", info->name);
      carehare_method_clear (method);
      return FALSE;
    }
  if (reader_left (&r) > 0)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_TRAILING_BYTES,
                   "%s: %" G_GSIZE_FORMAT " trailing bytes after its arguments at offset %"
                   G_GSIZE_FORMAT, info->name, reader_left (&r), r.pos);
      carehare_method_clear (method);
      return FALSE;
    }
  return TRUE;
}

gboolean
carehare_wire_append_method_frame (GByteArray            *out,
                                   guint16                channel,
                                   const CarehareMethod  *method,
                                   GError               **error)
{
  const CarehareMethodInfo *info;
  guint start;

  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (method != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  info = carehare_method_info_lookup (method->id);
  if (info == NULL)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Cannot encode unknown method id 0x%08x", (guint) method->id);
      return FALSE;
    }

  start = begin_frame (out, CAREHARE_FRAME_METHOD, channel);
  put_u16 (out, CAREHARE_METHOD_CLASS_ID (info->id));
  put_u16 (out, CAREHARE_METHOD_METHOD_ID (info->id));
  if (!write_args (out, method, info->args, info->n_args, info->name, error) ||
      !end_frame (out, start, error))
    {
      g_byte_array_set_size (out, start);
      return FALSE;
    }
  return TRUE;
}

/* -------------------------------------------------------- content header */

#define PROP(flag, name, type, member) \
  { name, type, offsetof (CarehareBasicProperties, member) }

/* In flag order: property i has flag bit 15 - i. */
static const CarehareMethodArg basic_properties[] = {
  PROP (CAREHARE_PROPERTY_CONTENT_TYPE, "content-type", CAREHARE_ARG_SHORTSTR, content_type),
  PROP (CAREHARE_PROPERTY_CONTENT_ENCODING, "content-encoding", CAREHARE_ARG_SHORTSTR, content_encoding),
  PROP (CAREHARE_PROPERTY_HEADERS, "headers", CAREHARE_ARG_TABLE, headers),
  PROP (CAREHARE_PROPERTY_DELIVERY_MODE, "delivery-mode", CAREHARE_ARG_OCTET, delivery_mode),
  PROP (CAREHARE_PROPERTY_PRIORITY, "priority", CAREHARE_ARG_OCTET, priority),
  PROP (CAREHARE_PROPERTY_CORRELATION_ID, "correlation-id", CAREHARE_ARG_SHORTSTR, correlation_id),
  PROP (CAREHARE_PROPERTY_REPLY_TO, "reply-to", CAREHARE_ARG_SHORTSTR, reply_to),
  PROP (CAREHARE_PROPERTY_EXPIRATION, "expiration", CAREHARE_ARG_SHORTSTR, expiration),
  PROP (CAREHARE_PROPERTY_MESSAGE_ID, "message-id", CAREHARE_ARG_SHORTSTR, message_id),
  PROP (CAREHARE_PROPERTY_TIMESTAMP, "timestamp", CAREHARE_ARG_TIMESTAMP, timestamp),
  PROP (CAREHARE_PROPERTY_TYPE, "type", CAREHARE_ARG_SHORTSTR, type),
  PROP (CAREHARE_PROPERTY_USER_ID, "user-id", CAREHARE_ARG_SHORTSTR, user_id),
  PROP (CAREHARE_PROPERTY_APP_ID, "app-id", CAREHARE_ARG_SHORTSTR, app_id),
  PROP (CAREHARE_PROPERTY_CLUSTER_ID, "cluster-id", CAREHARE_ARG_SHORTSTR, cluster_id),
};

G_STATIC_ASSERT (G_N_ELEMENTS (basic_properties) == 14);
G_STATIC_ASSERT (CAREHARE_PROPERTY_ALL == 0xFFFC);

#undef PROP

void
carehare_basic_properties_clear (CarehareBasicProperties *props)
{
  g_return_if_fail (props != NULL);

  clear_args (props, basic_properties, G_N_ELEMENTS (basic_properties));
  memset (props, 0, sizeof *props);
}

gboolean
carehare_content_header_decode (const guint8             *payload,
                                gsize                     size,
                                guint64                   max_body_size,
                                guint16                  *class_id,
                                guint64                  *body_size,
                                CarehareBasicProperties  *props,
                                GError                  **error)
{
  Reader r = { payload, size, 0 };
  guint16 klass, weight, flags;
  guint64 body;
  guint i;

  g_return_val_if_fail (payload != NULL || size == 0, FALSE);
  g_return_val_if_fail (class_id != NULL, FALSE);
  g_return_val_if_fail (body_size != NULL, FALSE);
  g_return_val_if_fail (props != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (props, 0, sizeof *props);
  *class_id = 0;
  *body_size = 0;

  if (!reader_need (&r, 14, "content header", error))
    return FALSE;
  klass = read_u16 (&r);
  weight = read_u16 (&r);
  body = read_u64 (&r);
  flags = read_u16 (&r);

  if (klass != CAREHARE_CLASS_BASIC)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER,
                   "Content header for class %u: only class basic (60) has content",
                   (guint) klass);
      return FALSE;
    }
  if (weight != 0)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER,
                   "Content header weight is %u, must be 0", (guint) weight);
      return FALSE;
    }
  /* From here on, an error is in this message's properties only: the
   * caller may skip its body and go on. */
  *class_id = klass;
  *body_size = body;
  if ((flags & ~CAREHARE_PROPERTY_ALL) != 0)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER,
                   "Content header property flags 0x%04x have unknown bits 0x%04x%s",
                   (guint) flags, (guint) (flags & ~CAREHARE_PROPERTY_ALL),
                   (flags & 1) ? " (bit 0, more flags, is not supported)" : "");
      return FALSE;
    }

  props->flags = flags;
  for (i = 0; i < G_N_ELEMENTS (basic_properties); i++)
    {
      if ((flags & (1u << (15 - i))) == 0)
        continue;
      if (!read_args (&r, props, &basic_properties[i], 1, TRUE, error))
        {
          g_prefix_error (error, "content header: ");
          carehare_basic_properties_clear (props);
          return FALSE;
        }
    }
  if (reader_left (&r) > 0)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_TRAILING_BYTES,
                   "content header: %" G_GSIZE_FORMAT " trailing bytes after its "
                   "properties at offset %" G_GSIZE_FORMAT, reader_left (&r), r.pos);
      carehare_basic_properties_clear (props);
      return FALSE;
    }

  if (body > max_body_size)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BODY_TOO_LARGE,
                   "Message body of %" G_GUINT64_FORMAT " bytes exceeds the limit of %"
                   G_GUINT64_FORMAT " bytes", body, max_body_size);
      carehare_basic_properties_clear (props);
      return FALSE;
    }
  return TRUE;
}

gboolean
carehare_wire_append_header_frame (GByteArray                     *out,
                                   guint16                         channel,
                                   guint16                         class_id,
                                   guint64                         body_size,
                                   const CarehareBasicProperties  *props,
                                   GError                        **error)
{
  guint16 flags = props != NULL ? props->flags : 0;
  guint start;
  guint i;

  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if ((flags & ~CAREHARE_PROPERTY_ALL) != 0)
    {
      g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE,
                   "Cannot encode property flags 0x%04x: bits 0x%04x name no property",
                   (guint) flags, (guint) (flags & ~CAREHARE_PROPERTY_ALL));
      return FALSE;
    }

  start = begin_frame (out, CAREHARE_FRAME_HEADER, channel);
  put_u16 (out, class_id);
  put_u16 (out, 0);
  put_u64 (out, body_size);
  put_u16 (out, flags);
  for (i = 0; i < G_N_ELEMENTS (basic_properties); i++)
    {
      if ((flags & (1u << (15 - i))) == 0)
        continue;
      if (!write_args (out, props, &basic_properties[i], 1, "content header", error))
        goto fail;
    }
  if (!end_frame (out, start, error))
    goto fail;
  return TRUE;

fail:
  g_byte_array_set_size (out, start);
  return FALSE;
}
