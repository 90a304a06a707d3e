/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-version.h"

/**
 * carehare_get_major_version:
 *
 * Gets the major version of the library in use at run time.
 *
 * Returns: the major version of the carehare-glib library in use at run time
 */
guint
carehare_get_major_version (void)
{
  return CAREHARE_MAJOR_VERSION;
}

/**
 * carehare_get_minor_version:
 *
 * Gets the minor version of the library in use at run time.
 *
 * Returns: the minor version of the carehare-glib library in use at run time
 */
guint
carehare_get_minor_version (void)
{
  return CAREHARE_MINOR_VERSION;
}

/**
 * carehare_get_micro_version:
 *
 * Gets the micro version of the library in use at run time.
 *
 * Returns: the micro version of the carehare-glib library in use at run time
 */
guint
carehare_get_micro_version (void)
{
  return CAREHARE_MICRO_VERSION;
}

/**
 * carehare_check_version:
 * @major: required major version
 * @minor: required minor version
 * @micro: required micro version
 *
 * Checks at run time that the library in use is at least the given version.
 *
 * Returns: %TRUE if the library is compatible with the given version
 */
gboolean
carehare_check_version (guint major,
                        guint minor,
                        guint micro)
{
  /* Compared as 64-bit so that major version 0 raises no type-limits
   * warning ("unsigned < 0 is always false"). */
  guint64 have = ((guint64) CAREHARE_MAJOR_VERSION << 40) |
                 ((guint64) CAREHARE_MINOR_VERSION << 20) |
                 CAREHARE_MICRO_VERSION;
  guint64 want = ((guint64) major << 40) | ((guint64) minor << 20) | micro;

  return have >= want;
}
