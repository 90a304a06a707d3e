/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Field table decoder.  Whatever decodes must encode again, and decoding
 * that encoding must give the same GVariant (and encoding it the same bytes:
 * the mapping is a bijection once `S`-that-is-not-UTF-8 has become `x`).
 * The one exception: a NaN or an infinity decodes but does not encode
 * (RabbitMQ closes the connection for one).
 */
#include <string.h>

#include "fuzz-common.h"

#include "carehare-wire.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) table = NULL;
  g_autoptr(GVariant) again = NULL;
  g_autoptr(GByteArray) encoded = NULL;
  g_autoptr(GByteArray) reencoded = NULL;

  fuzz_init ();

  table = carehare_wire_table_decode (data, size, &error);
  if (table == NULL)
    {
      g_assert (error != NULL && error->domain == CAREHARE_WIRE_ERROR);
      g_assert (carehare_wire_error_reply_code (error) != 0);
      return 0;
    }
  g_assert (error == NULL);
  g_assert (g_variant_is_of_type (table, G_VARIANT_TYPE_VARDICT));

  encoded = g_byte_array_new ();
  if (!carehare_wire_table_encode (encoded, table, &error))
    {
      if (g_error_matches (error, CAREHARE_WIRE_ERROR, CAREHARE_WIRE_ERROR_UNENCODABLE) &&
          strstr (error->message, "is not a finite number") != NULL)
        return 0;
      g_error ("decoded table does not encode: %s", error->message);
    }

  again = carehare_wire_table_decode (encoded->data, encoded->len, &error);
  if (again == NULL)
    g_error ("re-encoded table does not decode: %s", error->message);
  g_assert (g_variant_equal (table, again));

  reencoded = g_byte_array_new ();
  g_assert (carehare_wire_table_encode (reencoded, again, NULL));
  g_assert (reencoded->len == encoded->len);
  g_assert (memcmp (reencoded->data, encoded->data, encoded->len) == 0);

  return 0;
}
