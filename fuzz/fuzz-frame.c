/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The receive path: split the input into frames as a connection would, and
 * decode each method and content header.  Whatever decodes must encode again
 * and decode to the same values.
 */
#include <string.h>

#include "fuzz-common.h"

#include "carehare-wire.h"

static gboolean
args_equal (const void               *a,
            const void               *b,
            const CarehareMethodArg  *args,
            guint                     n_args)
{
  guint i;

  for (i = 0; i < n_args; i++)
    {
      gconstpointer fa = (const guint8 *) a + args[i].offset;
      gconstpointer fb = (const guint8 *) b + args[i].offset;

      switch (args[i].type)
        {
        case CAREHARE_ARG_BIT:
          if (*(const gboolean *) fa != *(const gboolean *) fb)
            return FALSE;
          break;
        case CAREHARE_ARG_OCTET:
          if (*(const guint8 *) fa != *(const guint8 *) fb)
            return FALSE;
          break;
        case CAREHARE_ARG_SHORT:
          if (*(const guint16 *) fa != *(const guint16 *) fb)
            return FALSE;
          break;
        case CAREHARE_ARG_LONG:
          if (*(const guint32 *) fa != *(const guint32 *) fb)
            return FALSE;
          break;
        case CAREHARE_ARG_LONGLONG:
        case CAREHARE_ARG_TIMESTAMP:
          if (*(const guint64 *) fa != *(const guint64 *) fb)
            return FALSE;
          break;
        case CAREHARE_ARG_SHORTSTR:
          if (g_strcmp0 (*(char * const *) fa, *(char * const *) fb) != 0)
            return FALSE;
          break;
        case CAREHARE_ARG_LONGSTR:
          if (!g_bytes_equal (*(GBytes * const *) fa, *(GBytes * const *) fb))
            return FALSE;
          break;
        case CAREHARE_ARG_TABLE:
          {
            GVariant *va = *(GVariant * const *) fa;
            GVariant *vb = *(GVariant * const *) fb;

            if ((va == NULL) != (vb == NULL) || (va != NULL && !g_variant_equal (va, vb)))
              return FALSE;
          }
          break;
        default:
          g_assert_not_reached ();
        }
    }
  return TRUE;
}

/* The one thing that decodes but does not encode: a NaN or an infinity in
 * a table (RabbitMQ closes the connection for one, so the encoder refuses
 * it; see fuzz-table.c). */
static gboolean
refused_non_finite (const GError *error)
{
  return g_error_matches (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE) &&
         strstr (error->message, "is not a finite number") != NULL;
}

static void
check_method (const CarehareFrame *frame)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) out = NULL;
  const CarehareMethodInfo *info;
  CarehareMethod method, again;
  CarehareFrame reframe;

  if (!carehare_method_decode (frame->payload, frame->size, &method, &error))
    {
      g_assert (error != NULL && carehare_wire_error_reply_code (error) != 0);
      g_assert (method.id == 0);
      return;
    }
  info = carehare_method_info_lookup (method.id);
  g_assert (info != NULL);
  g_assert (carehare_method_name (method.id) != NULL);

  out = g_byte_array_new ();
  if (!carehare_wire_append_method_frame (out, frame->channel, &method, &error))
    {
      carehare_method_clear (&method);
      if (refused_non_finite (error))
        return;
      g_error ("decoded %s does not encode: %s", info->name, error->message);
    }
  g_assert (carehare_frame_decode (out->data, out->len, 0, &reframe, NULL) == (gssize) out->len);
  if (!carehare_method_decode (reframe.payload, reframe.size, &again, &error))
    g_error ("re-encoded %s does not decode: %s", info->name, error->message);
  g_assert (again.id == method.id);
  g_assert (args_equal (&method, &again, info->args, info->n_args));

  carehare_method_clear (&again);
  carehare_method_clear (&method);
}

static void
check_header (const CarehareFrame *frame)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) out = NULL;
  CarehareBasicProperties props, again;
  CarehareFrame reframe;
  guint16 class_id, class_id2;
  guint64 body_size, body_size2;

  if (!carehare_content_header_decode (frame->payload, frame->size, 1 << 20,
                                       &class_id, &body_size, &props, &error))
    {
      g_assert (error != NULL && carehare_wire_error_reply_code (error) != 0);
      g_assert (props.flags == 0 && props.headers == NULL);
      return;
    }

  out = g_byte_array_new ();
  if (!carehare_wire_append_header_frame (out, frame->channel, class_id, body_size, &props, &error))
    {
      if (refused_non_finite (error))
        {
          carehare_basic_properties_clear (&props);
          return;
        }
      g_error ("decoded content header does not encode: %s", error->message);
    }
  g_assert (carehare_frame_decode (out->data, out->len, 0, &reframe, NULL) == (gssize) out->len);
  if (!carehare_content_header_decode (reframe.payload, reframe.size, G_MAXUINT64,
                                       &class_id2, &body_size2, &again, &error))
    g_error ("re-encoded content header does not decode: %s", error->message);
  g_assert (class_id == class_id2 && body_size == body_size2);
  g_assert (props.flags == again.flags);
  g_assert (g_strcmp0 (props.content_type, again.content_type) == 0);
  g_assert (g_strcmp0 (props.cluster_id, again.cluster_id) == 0);
  g_assert (props.timestamp == again.timestamp);
  g_assert ((props.headers == NULL) == (again.headers == NULL));
  g_assert (props.headers == NULL || g_variant_equal (props.headers, again.headers));

  carehare_basic_properties_clear (&again);
  carehare_basic_properties_clear (&props);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(GError) error = NULL;
  gsize offset = 0;
  gssize n;

  fuzz_init ();

  if (size == 0)
    return 0;  /* data may be NULL: no arithmetic on it */

  for (;;)
    {
      CarehareFrame frame;

      n = carehare_frame_decode (data + offset, size - offset, 131072, &frame, &error);
      if (n <= 0)
        break;
      g_assert ((gsize) n <= size - offset);
      g_assert (frame.size == (gsize) n - CAREHARE_FRAME_OVERHEAD);
      offset += (gsize) n;

      switch (frame.type)
        {
        case CAREHARE_FRAME_METHOD:
          check_method (&frame);
          break;
        case CAREHARE_FRAME_HEADER:
          check_header (&frame);
          break;
        case CAREHARE_FRAME_BODY:
        case CAREHARE_FRAME_HEARTBEAT:
          break;
        default:
          g_assert_not_reached ();
        }
    }

  g_assert ((n == -1) == (error != NULL));
  if (error != NULL)
    g_assert (carehare_wire_error_reply_code (error) == 501);

  return 0;
}
