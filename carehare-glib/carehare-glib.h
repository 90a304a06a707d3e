/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#define __CAREHARE_GLIB_INSIDE__

#include <carehare-glib/carehare-macros.h>
#include <carehare-glib/carehare-version.h>
#include <carehare-glib/carehare-error.h>
#include <carehare-glib/carehare-flags.h>
#include <carehare-glib/carehare-enum-types.h>
#include <carehare-glib/carehare-connection.h>
#include <carehare-glib/carehare-properties.h>
#include <carehare-glib/carehare-delivery.h>
#include <carehare-glib/carehare-consumer.h>
#include <carehare-glib/carehare-session.h>
#include <carehare-glib/carehare-statistics.h>

#undef __CAREHARE_GLIB_INSIDE__
