/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Uses carehare-glib's public API, built from the subproject. */
#include <carehare-glib/carehare-glib.h>

int
main (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GError) error = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER,
                                                 "Connection closed by server: 320 CONNECTION_FORCED - shutdown");

  carehare_properties_set_reply_to (props, "amq.gen-reply");
  g_assert_cmpstr (carehare_properties_get_reply_to (props), ==, "amq.gen-reply");
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 320);
  g_assert_true (G_TYPE_IS_FLAGS (CAREHARE_TYPE_QUEUE_FLAGS));
  g_print ("carehare-glib %s from the subproject\n", CAREHARE_VERSION_S);
  return 0;
}
