/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>
#include <carehare-glib/carehare-delivery.h>

G_BEGIN_DECLS

#define CAREHARE_TYPE_CONSUMER (carehare_consumer_get_type ())

CAREHARE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (CarehareConsumer, carehare_consumer, CAREHARE, CONSUMER, GObject)

CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_next_delivery_async  (CarehareConsumer     *self,
                                                          GCancellable         *cancellable,
                                                          GAsyncReadyCallback   callback,
                                                          gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
CarehareDelivery *carehare_consumer_next_delivery_finish (CarehareConsumer     *self,
                                                          GAsyncResult         *result,
                                                          GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_next_deliveries_async  (CarehareConsumer     *self,
                                                            guint                 max_deliveries,
                                                            GCancellable         *cancellable,
                                                            GAsyncReadyCallback   callback,
                                                            gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
GPtrArray        *carehare_consumer_next_deliveries_finish (CarehareConsumer     *self,
                                                            GAsyncResult         *result,
                                                            GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_ack                  (CarehareConsumer     *self,
                                                          guint64               delivery_tag);
CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_nack                 (CarehareConsumer     *self,
                                                          guint64               delivery_tag,
                                                          gboolean              requeue);
CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_ack_up_to            (CarehareConsumer     *self,
                                                          guint64               delivery_tag);
CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_nack_up_to           (CarehareConsumer     *self,
                                                          guint64               delivery_tag,
                                                          gboolean              requeue);

CAREHARE_AVAILABLE_IN_ALL
void              carehare_consumer_close_async          (CarehareConsumer     *self,
                                                          GCancellable         *cancellable,
                                                          GAsyncReadyCallback   callback,
                                                          gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean          carehare_consumer_close_finish         (CarehareConsumer     *self,
                                                          GAsyncResult         *result,
                                                          GError              **error);

CAREHARE_AVAILABLE_IN_ALL
const char       *carehare_consumer_get_queue            (CarehareConsumer     *self);
CAREHARE_AVAILABLE_IN_ALL
const char       *carehare_consumer_get_consumer_tag     (CarehareConsumer     *self);
CAREHARE_AVAILABLE_IN_ALL
gboolean          carehare_consumer_get_is_closed        (CarehareConsumer     *self);

CAREHARE_AVAILABLE_IN_ALL
CarehareDelivery *carehare_consumer_next_delivery_sync   (CarehareConsumer     *self,
                                                          GCancellable         *cancellable,
                                                          GError              **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean          carehare_consumer_close_sync           (CarehareConsumer     *self,
                                                          GCancellable         *cancellable,
                                                          GError              **error);

G_END_DECLS
