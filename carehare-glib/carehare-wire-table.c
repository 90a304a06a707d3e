/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The wire codec's field tables <-> GVariant (see carehare-wire.c for the
 * mapping and the validation rules).
 */

#include <math.h>
#include <string.h>

#include "carehare-wire-private.h"

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

  if (!_carehare_wire_reader_need (r, 1, "field value type", error))
    return NULL;
  type = read_u8 (r);

  switch (type)
    {
    case 't':
      if (!_carehare_wire_reader_need (r, 1, "boolean field value", error))
        return NULL;
      return g_variant_new_boolean (read_u8 (r) != 0);
    case 'b':
      if (!_carehare_wire_reader_need (r, 1, "signed 8-bit field value", error))
        return NULL;
      return g_variant_new ("(n)", (gint16) (gint8) read_u8 (r));
    case 'B':
      if (!_carehare_wire_reader_need (r, 1, "unsigned 8-bit field value", error))
        return NULL;
      return g_variant_new_byte (read_u8 (r));
    case 's':
      if (!_carehare_wire_reader_need (r, 2, "signed 16-bit field value", error))
        return NULL;
      return g_variant_new_int16 ((gint16) read_u16 (r));
    case 'u':
      if (!_carehare_wire_reader_need (r, 2, "unsigned 16-bit field value", error))
        return NULL;
      return g_variant_new_uint16 (read_u16 (r));
    case 'I':
      if (!_carehare_wire_reader_need (r, 4, "signed 32-bit field value", error))
        return NULL;
      return g_variant_new_int32 ((gint32) read_u32 (r));
    case 'i':
      if (!_carehare_wire_reader_need (r, 4, "unsigned 32-bit field value", error))
        return NULL;
      return g_variant_new_uint32 (read_u32 (r));
    case 'l':
      if (!_carehare_wire_reader_need (r, 8, "signed 64-bit field value", error))
        return NULL;
      return g_variant_new_int64 ((gint64) read_u64 (r));
    case 'T':
      if (!_carehare_wire_reader_need (r, 8, "timestamp field value", error))
        return NULL;
      return g_variant_new_uint64 (read_u64 (r));
    case 'f':
      if (!_carehare_wire_reader_need (r, 4, "float field value", error))
        return NULL;
      return g_variant_new ("(d)", float_bits_to_double (read_u32 (r)));
    case 'd':
      {
        guint64 bits;
        gdouble d;

        if (!_carehare_wire_reader_need (r, 8, "double field value", error))
          return NULL;
        bits = read_u64 (r);
        memcpy (&d, &bits, sizeof d);
        return g_variant_new_double (d);
      }
    case 'D':
      {
        guint8 scale;

        if (!_carehare_wire_reader_need (r, 5, "decimal field value", error))
          return NULL;
        scale = read_u8 (r);
        return g_variant_new ("(yi)", scale, (gint32) read_u32 (r));
      }
    case 'S':
    case 'x':
      {
        guint32 len;
        const char *p;

        if (!_carehare_wire_reader_need (r, 4, type == 'S' ? "long string length" : "byte array length", error))
          return NULL;
        len = read_u32 (r);
        if (!_carehare_wire_reader_need (r, len, type == 'S' ? "long string" : "byte array", error))
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

  if (!_carehare_wire_reader_need (r, 4, what, error))
    return FALSE;
  len = read_u32 (r);
  if (!_carehare_wire_reader_need (r, len, what, error))
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

      key = _carehare_wire_read_shortstr (&sub, "field table key", TRUE, error);
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
GVariant *
_carehare_wire_read_table_arg (Reader      *r,
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

  table = _carehare_wire_read_table_arg (&r, error);
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
gboolean
_carehare_wire_write_table (GByteArray  *out,
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
  if (!_carehare_wire_write_table (out, table, "table", error))
    {
      g_byte_array_set_size (out, start);
      return FALSE;
    }
  return TRUE;
}
