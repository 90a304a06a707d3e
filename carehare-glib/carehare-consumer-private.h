/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-connection.h"
#include "carehare-consumer.h"
#include "carehare-protocol.h"

G_BEGIN_DECLS

/* Used by carehare_connection_acking_consumer_async(): a consumer object
 * exists before the broker confirmed it, so that deliveries arriving right
 * after Consume-Ok have somewhere to go. */
CarehareConsumer *_carehare_consumer_new     (CarehareConnection         *connection,
                                              const char                 *queue);
void              _carehare_consumer_start   (CarehareConsumer                     *self,
                                              guint32                               prefetch_size,
                                              guint16                               prefetch_count,
                                              const CarehareProtocolConsumeOptions *options,
                                              GCancellable                         *cancellable,
                                              CarehareProtocolOpCallback            started,
                                              gpointer                              user_data);
void              _carehare_consumer_started (CarehareConsumer           *self);
void              _carehare_consumer_abandon (CarehareConsumer           *self);
/* The connection (nullable once the consumer is disposed). */
CarehareConnection *_carehare_consumer_get_connection (CarehareConsumer  *self);

G_END_DECLS
