/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>
#include <glib-object.h>

G_BEGIN_DECLS

#define CAREHARE_TYPE_STATISTICS (carehare_statistics_get_type ())

typedef struct _CarehareStatistics CarehareStatistics;

CAREHARE_AVAILABLE_IN_ALL
GType               carehare_statistics_get_type (void) G_GNUC_CONST;
CAREHARE_AVAILABLE_IN_ALL
CarehareStatistics *carehare_statistics_copy     (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_statistics_free     (CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_messages_published (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_messages_confirmed (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_messages_nacked (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_messages_returned (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_deliveries_received (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_deliveries_acked (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_deliveries_nacked (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_bytes_sent (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_bytes_received (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_heartbeats_sent (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_statistics_get_heartbeats_missed (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
guint               carehare_statistics_get_channels_open (const CarehareStatistics *self);
CAREHARE_AVAILABLE_IN_ALL
gint64              carehare_statistics_get_time_since_last_received (const CarehareStatistics *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CarehareStatistics, carehare_statistics_free)

G_END_DECLS
