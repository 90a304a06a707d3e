/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <gio/gio.h>

/* The library is built with hidden visibility; this marks the public ABI. */
#if defined(_WIN32) || defined(__CYGWIN__)
# ifdef CAREHARE_COMPILATION
#  define _CAREHARE_EXTERN __declspec(dllexport) extern
# else
#  define _CAREHARE_EXTERN __declspec(dllimport) extern
# endif
#elif defined(__GNUC__)
# define _CAREHARE_EXTERN __attribute__((visibility("default"))) extern
#else
# define _CAREHARE_EXTERN extern
#endif

#define CAREHARE_AVAILABLE_IN_ALL _CAREHARE_EXTERN
