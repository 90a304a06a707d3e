/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AMQP 0-9-1 wire codec: frames, methods, content headers and field
 * tables, sans I/O.  Big-endian everywhere.  Field tables are encoded and
 * decoded in carehare-wire-table.c, the method argument lists are in
 * carehare-wire-methods.c, and what the files share is in
 * carehare-wire-private.h.
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

#include "carehare-wire-private.h"

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

gboolean
_carehare_wire_reader_need (Reader      *r,
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

/* Whether @str's @len bytes are all ASCII and none is NUL: valid UTF-8 as
 * g_utf8_validate_len() asks. A short check first, eight bytes at a time:
 * every delivery carries three short strings (consumer tag, exchange,
 * routing key), nearly always ASCII, and GLib's validation walks them a
 * byte at a time. FALSE only sends the string on to the full check. */
static gboolean
is_ascii_without_nul (const char *str,
                      gsize       len)
{
  const guint64 ones = G_GUINT64_CONSTANT (0x0101010101010101);
  const guint64 highs = G_GUINT64_CONSTANT (0x8080808080808080);
  gsize i = 0;

  for (; i + 8 <= len; i += 8)
    {
      guint64 w;

      memcpy (&w, str + i, sizeof w);
      /* A high bit set, or a zero byte (the usual has-zero-byte test). */
      if ((w & highs) != 0 || ((w - ones) & ~w & highs) != 0)
        return FALSE;
    }
  for (; i < len; i++)
    {
      guchar c = (guchar) str[i];

      if (c == 0 || c >= 0x80)
        return FALSE;
    }
  return TRUE;
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
char *
_carehare_wire_read_shortstr (Reader      *r,
                              const char  *what,
                              gboolean     lenient,
                              GError     **error)
{
  gsize start = r->pos;
  guint8 len;
  const char *str;
  char *fixed;

  if (!_carehare_wire_reader_need (r, 1, what, error))
    return NULL;
  len = read_u8 (r);
  if (!_carehare_wire_reader_need (r, len, what, error))
    return NULL;

  str = (const char *) r->data + r->pos;
  if (is_ascii_without_nul (str, len) || g_utf8_validate_len (str, len, NULL))
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

GBytes *
_carehare_wire_read_longstr (Reader      *r,
                             const char  *what,
                             GError     **error)
{
  guint32 len;
  GBytes *bytes;

  if (!_carehare_wire_reader_need (r, 4, what, error))
    return NULL;
  len = read_u32 (r);
  if (!_carehare_wire_reader_need (r, len, what, error))
    return NULL;
  bytes = g_bytes_new (r->data + r->pos, len);
  r->pos += len;
  return bytes;
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

  frame->type = type;
  frame->channel = channel;
  frame->payload = size > 0 ? data + CAREHARE_FRAME_HEADER_SIZE : NULL;
  frame->size = size;
  if (!carehare_frame_check_end (frame, data[CAREHARE_FRAME_HEADER_SIZE + size], error))
    return -1;
  return (gssize) total;
}

gboolean
carehare_frame_peek_header (const guint8  *data,
                            gsize          len,
                            CarehareFrame *frame)
{
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (frame != NULL, FALSE);

  if (len < CAREHARE_FRAME_HEADER_SIZE)
    return FALSE;
  frame->type = data[0];
  frame->channel = get_u16 (data + 1);
  frame->size = get_u32 (data + 3);
  frame->payload = NULL;
  return TRUE;
}

gboolean
carehare_frame_check_end (const CarehareFrame  *frame,
                          guint8                end,
                          GError              **error)
{
  if (end == CAREHARE_FRAME_END)
    return TRUE;
  g_set_error (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_BAD_FRAME_END,
               "Frame end octet is 0x%02x instead of 0xCE after a payload of %u bytes "
               "(frame type %u, channel %u)",
               (guint) end, frame->size, (guint) frame->type, (guint) frame->channel);
  return FALSE;
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
          if (!_carehare_wire_write_table (out, *(GVariant * const *) field, arg->name, error))
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
              if (!_carehare_wire_reader_need (r, 1, arg->name, error))
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
          if (!_carehare_wire_reader_need (r, 1, arg->name, error))
            return FALSE;
          *(guint8 *) field = read_u8 (r);
          break;
        case CAREHARE_ARG_SHORT:
          if (!_carehare_wire_reader_need (r, 2, arg->name, error))
            return FALSE;
          *(guint16 *) field = read_u16 (r);
          break;
        case CAREHARE_ARG_LONG:
          if (!_carehare_wire_reader_need (r, 4, arg->name, error))
            return FALSE;
          *(guint32 *) field = read_u32 (r);
          break;
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
          if (!_carehare_wire_reader_need (r, 8, arg->name, error))
            return FALSE;
          *(guint64 *) field = read_u64 (r);
          break;
        case CAREHARE_ARG_SHORTSTR:
          if ((*(char **) field = _carehare_wire_read_shortstr (r, arg->name, lenient, error)) == NULL)
            return FALSE;
          break;
        case CAREHARE_ARG_LONGSTR:
          if ((*(GBytes **) field = _carehare_wire_read_longstr (r, arg->name, error)) == NULL)
            return FALSE;
          break;
        case CAREHARE_ARG_TABLE:
          if ((*(GVariant **) field = _carehare_wire_read_table_arg (r, error)) == NULL)
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
carehare_method_copy (const CarehareMethod *src,
                      CarehareMethod       *dest)
{
  const CarehareMethodInfo *info;

  g_return_if_fail (src != NULL);
  g_return_if_fail (dest != NULL);

  *dest = *src;
  info = carehare_method_info_lookup (src->id);
  g_return_if_fail (info != NULL);
  for (guint i = 0; i < info->n_args; i++)
    {
      gpointer field = (guint8 *) dest + info->args[i].offset;

      switch (info->args[i].type)
        {
        case CAREHARE_ARG_SHORTSTR:
          *(char **) field = g_strdup (*(char **) field);
          break;
        case CAREHARE_ARG_LONGSTR:
          if (*(GBytes **) field != NULL)
            g_bytes_ref (*(GBytes **) field);
          break;
        case CAREHARE_ARG_TABLE:
          if (*(GVariant **) field != NULL)
            g_variant_ref (*(GVariant **) field);
          break;
        default:  /* numbers and bits: copied with the struct */
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

  if (!_carehare_wire_reader_need (&r, 4, "method class and method ids", error))
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

  /* The one method sent per consumed message: its fixed 21 bytes at once,
   * the bytes the table-driven encoder below would write (tests/test-wire.c
   * checks each of them). */
  if (method->id == CAREHARE_METHOD_BASIC_ACK)
    {
      guint64 tag = method->basic_ack.delivery_tag;
      guint8 frame[21] = {
        CAREHARE_FRAME_METHOD, channel >> 8, channel & 0xff, 0, 0, 0, 13,
        0, 60, 0, 80,
        tag >> 56, (tag >> 48) & 0xff, (tag >> 40) & 0xff, (tag >> 32) & 0xff,
        (tag >> 24) & 0xff, (tag >> 16) & 0xff, (tag >> 8) & 0xff, tag & 0xff,
        method->basic_ack.multiple ? 1 : 0, CAREHARE_FRAME_END,
      };

      g_byte_array_append (out, frame, sizeof frame);
      return TRUE;
    }

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
  static const CarehareBasicProperties empty;

  g_return_if_fail (props != NULL);

  /* Twice per consumed message this is already clear (the properties moved
   * into the delivery, or a message sent without any): skip the walk. */
  if (memcmp (props, &empty, sizeof *props) == 0)
    return;
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

  if (!_carehare_wire_reader_need (&r, 14, "content header", error))
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
