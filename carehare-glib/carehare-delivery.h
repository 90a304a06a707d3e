/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>
#include <carehare-glib/carehare-properties.h>

G_BEGIN_DECLS

#define CAREHARE_TYPE_DELIVERY (carehare_delivery_get_type ())

CAREHARE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (CarehareDelivery, carehare_delivery, CAREHARE, DELIVERY, GObject)

CAREHARE_AVAILABLE_IN_ALL
GBytes             *carehare_delivery_get_body         (CarehareDelivery *self);
CAREHARE_AVAILABLE_IN_ALL
CarehareProperties *carehare_delivery_get_properties   (CarehareDelivery *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_delivery_get_delivery_tag (CarehareDelivery *self);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_delivery_get_exchange     (CarehareDelivery *self);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_delivery_get_routing_key  (CarehareDelivery *self);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_delivery_get_redelivered  (CarehareDelivery *self);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_delivery_get_consumer_tag (CarehareDelivery *self);

G_END_DECLS
