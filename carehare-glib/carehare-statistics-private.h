/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-statistics.h"
#include "carehare-protocol.h"

struct _CarehareStatistics {
  CarehareProtocolStats counters;
  guint channels_open;
  gint64 time_since_last_received;
};

CarehareStatistics *_carehare_statistics_new (const CarehareProtocolStats *counters,
                                              guint                        channels_open,
                                              gint64                       time_since_last_received);
