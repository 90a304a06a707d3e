/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-delivery.h"
#include "carehare-protocol.h"
#include "carehare-wire.h"

G_BEGIN_DECLS

/* A delivery that takes over everything it is given, so that building one
 * from a decoded basic.deliver and content header copies nothing:
 * - @body: transfer full, not copied (the consumer hands over its slice);
 * - @props: nullable (no properties); its members are taken and it is
 *   zeroed; the CarehareProperties object is only built if asked for;
 * - @exchange, @routing_key, @consumer_tag: transfer full, non-NULL (steal
 *   them from the decoded CarehareBasicDeliver). */
CarehareDelivery *carehare_delivery_new (GBytes                  *body,
                                         CarehareBasicProperties *props,
                                         guint64                  delivery_tag,
                                         char                    *exchange,
                                         char                    *routing_key,
                                         gboolean                 redelivered,
                                         char                    *consumer_tag);

/* The same from a delivery of the protocol core, which it frees. */
CarehareDelivery *carehare_delivery_new_take (CarehareProtocolDelivery *delivery);

/* Renumbers a delivery nobody else has seen yet (a session consumer
 * hands out tags of its own). */
void _carehare_delivery_set_delivery_tag (CarehareDelivery *self,
                                          guint64           delivery_tag);

G_END_DECLS
