/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>
#include <carehare-glib/carehare-flags.h>
#include <carehare-glib/carehare-delivery.h>
#include <carehare-glib/carehare-properties.h>
#include <carehare-glib/carehare-statistics.h>

G_BEGIN_DECLS

/**
 * CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK:
 *
 * The count of [property@Carehare.Connection:pending-write-bytes] above
 * which its `notify` tells a publisher to pause: 1 MiB (1048576 bytes).
 */
#define CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK 1048576

/**
 * CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK:
 *
 * The count of [property@Carehare.Connection:pending-write-bytes] at or
 * below which, after it rose above
 * %CAREHARE_CONNECTION_WRITE_HIGH_WATER_MARK, its `notify` tells a
 * publisher to resume: 256 KiB (262144 bytes).
 */
#define CAREHARE_CONNECTION_WRITE_LOW_WATER_MARK 262144

#define CAREHARE_TYPE_CONNECTION (carehare_connection_get_type ())

CAREHARE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (CarehareConnection, carehare_connection, CAREHARE, CONNECTION, GObject)

typedef struct _CarehareConsumer CarehareConsumer;

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_new_async         (const char           *uri,
                                                           GCancellable         *cancellable,
                                                           GAsyncReadyCallback   callback,
                                                           gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
CarehareConnection *carehare_connection_new_finish        (GAsyncResult         *result,
                                                           GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_new_for_uris_async  (const char * const  *uris,
                                                             GCancellable         *cancellable,
                                                             GAsyncReadyCallback   callback,
                                                             gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
CarehareConnection *carehare_connection_new_for_uris_finish (GAsyncResult         *result,
                                                             GError              **error);

CAREHARE_AVAILABLE_IN_ALL
guint               carehare_connection_get_heartbeat     (CarehareConnection   *self);
CAREHARE_AVAILABLE_IN_ALL
guint               carehare_connection_get_frame_max     (CarehareConnection   *self);
CAREHARE_AVAILABLE_IN_ALL
guint               carehare_connection_get_channel_max   (CarehareConnection   *self);
CAREHARE_AVAILABLE_IN_ALL
GVariant           *carehare_connection_get_server_properties (CarehareConnection *self);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_get_is_closed     (CarehareConnection   *self);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_get_is_blocked    (CarehareConnection   *self);
CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_connection_get_pending_write_bytes (CarehareConnection *self);
CAREHARE_AVAILABLE_IN_ALL
CarehareStatistics *carehare_connection_get_statistics    (CarehareConnection   *self);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_close_async       (CarehareConnection   *self,
                                                           GCancellable         *cancellable,
                                                           GAsyncReadyCallback   callback,
                                                           gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_close_finish      (CarehareConnection   *self,
                                                           GAsyncResult         *result,
                                                           GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_update_secret_async  (CarehareConnection   *self,
                                                              const char           *new_secret,
                                                              const char           *reason,
                                                              GCancellable         *cancellable,
                                                              GAsyncReadyCallback   callback,
                                                              gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_update_secret_finish (CarehareConnection   *self,
                                                              GAsyncResult         *result,
                                                              GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_queue_declare_async  (CarehareConnection   *self,
                                                              const char           *queue,
                                                              CarehareQueueFlags    flags,
                                                              GVariant             *arguments,
                                                              GCancellable         *cancellable,
                                                              GAsyncReadyCallback   callback,
                                                              gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
char               *carehare_connection_queue_declare_finish (CarehareConnection   *self,
                                                              GAsyncResult         *result,
                                                              guint                *message_count,
                                                              guint                *consumer_count,
                                                              GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_queue_delete_async   (CarehareConnection       *self,
                                                              const char               *queue,
                                                              CarehareQueueDeleteFlags  flags,
                                                              GCancellable             *cancellable,
                                                              GAsyncReadyCallback       callback,
                                                              gpointer                  user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_delete_finish  (CarehareConnection   *self,
                                                              GAsyncResult         *result,
                                                              guint                *message_count,
                                                              GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_queue_purge_async    (CarehareConnection   *self,
                                                              const char           *queue,
                                                              GCancellable         *cancellable,
                                                              GAsyncReadyCallback   callback,
                                                              gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_purge_finish   (CarehareConnection   *self,
                                                              GAsyncResult         *result,
                                                              guint                *message_count,
                                                              GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_queue_bind_async     (CarehareConnection   *self,
                                                              const char           *queue,
                                                              const char           *exchange,
                                                              const char           *routing_key,
                                                              GVariant             *arguments,
                                                              GCancellable         *cancellable,
                                                              GAsyncReadyCallback   callback,
                                                              gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_bind_finish    (CarehareConnection   *self,
                                                              GAsyncResult         *result,
                                                              GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_queue_unbind_async   (CarehareConnection   *self,
                                                              const char           *queue,
                                                              const char           *exchange,
                                                              const char           *routing_key,
                                                              GVariant             *arguments,
                                                              GCancellable         *cancellable,
                                                              GAsyncReadyCallback   callback,
                                                              gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_unbind_finish  (CarehareConnection   *self,
                                                              GAsyncResult         *result,
                                                              GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_exchange_declare_async  (CarehareConnection    *self,
                                                                 const char            *exchange,
                                                                 const char            *type,
                                                                 CarehareExchangeFlags  flags,
                                                                 GVariant              *arguments,
                                                                 GCancellable          *cancellable,
                                                                 GAsyncReadyCallback    callback,
                                                                 gpointer               user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_declare_finish (CarehareConnection    *self,
                                                                 GAsyncResult          *result,
                                                                 GError               **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_exchange_delete_async   (CarehareConnection          *self,
                                                                 const char                  *exchange,
                                                                 CarehareExchangeDeleteFlags  flags,
                                                                 GCancellable                *cancellable,
                                                                 GAsyncReadyCallback          callback,
                                                                 gpointer                     user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_delete_finish  (CarehareConnection    *self,
                                                                 GAsyncResult          *result,
                                                                 GError               **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_exchange_bind_async     (CarehareConnection    *self,
                                                                 const char            *destination,
                                                                 const char            *source,
                                                                 const char            *routing_key,
                                                                 GVariant              *arguments,
                                                                 GCancellable          *cancellable,
                                                                 GAsyncReadyCallback    callback,
                                                                 gpointer               user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_bind_finish    (CarehareConnection    *self,
                                                                 GAsyncResult          *result,
                                                                 GError               **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_exchange_unbind_async   (CarehareConnection    *self,
                                                                 const char            *destination,
                                                                 const char            *source,
                                                                 const char            *routing_key,
                                                                 GVariant              *arguments,
                                                                 GCancellable          *cancellable,
                                                                 GAsyncReadyCallback    callback,
                                                                 gpointer               user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_unbind_finish  (CarehareConnection    *self,
                                                                 GAsyncResult          *result,
                                                                 GError               **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_publish_async   (CarehareConnection   *self,
                                                         const char           *exchange,
                                                         const char           *routing_key,
                                                         GBytes               *body,
                                                         CarehareProperties   *properties,
                                                         CareharePublishFlags  flags,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_publish_finish  (CarehareConnection   *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

CAREHARE_AVAILABLE_IN_ALL
guint64             carehare_connection_publish_tracked (CarehareConnection   *self,
                                                         const char           *exchange,
                                                         const char           *routing_key,
                                                         GBytes               *body,
                                                         CarehareProperties   *properties,
                                                         CareharePublishFlags  flags);
CAREHARE_AVAILABLE_IN_ALL
guint64            *carehare_connection_take_confirmed  (CarehareConnection   *self,
                                                         gsize                *n_ids);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_call_async      (CarehareConnection   *self,
                                                         const char           *exchange,
                                                         const char           *routing_key,
                                                         GBytes               *body,
                                                         CarehareProperties   *properties,
                                                         CareharePublishFlags  flags,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
CarehareDelivery   *carehare_connection_call_finish     (CarehareConnection   *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_acking_consumer_async  (CarehareConnection   *self,
                                                                const char           *queue,
                                                                guint32               prefetch_size,
                                                                guint16               prefetch_count,
                                                                GCancellable         *cancellable,
                                                                GAsyncReadyCallback   callback,
                                                                gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
CarehareConsumer   *carehare_connection_acking_consumer_finish (CarehareConnection   *self,
                                                                GAsyncResult         *result,
                                                                GError              **error);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_connection_acking_consumer_full_async  (CarehareConnection   *self,
                                                                     const char           *queue,
                                                                     guint32               prefetch_size,
                                                                     guint16               prefetch_count,
                                                                     CarehareConsumeFlags  flags,
                                                                     const char           *consumer_tag,
                                                                     GVariant             *arguments,
                                                                     GCancellable         *cancellable,
                                                                     GAsyncReadyCallback   callback,
                                                                     gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
CarehareConsumer   *carehare_connection_acking_consumer_full_finish (CarehareConnection   *self,
                                                                     GAsyncResult         *result,
                                                                     GError              **error);

/* Blocking twins (carehare-connection-sync.c): any thread. */
CAREHARE_AVAILABLE_IN_ALL
CarehareConnection *carehare_connection_new_sync            (const char             *uri,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_close_sync          (CarehareConnection     *self,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
char               *carehare_connection_queue_declare_sync  (CarehareConnection     *self,
                                                             const char             *queue,
                                                             CarehareQueueFlags      flags,
                                                             GVariant               *arguments,
                                                             guint                  *message_count,
                                                             guint                  *consumer_count,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_delete_sync   (CarehareConnection       *self,
                                                             const char               *queue,
                                                             CarehareQueueDeleteFlags  flags,
                                                             guint                    *message_count,
                                                             GCancellable             *cancellable,
                                                             GError                  **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_purge_sync    (CarehareConnection     *self,
                                                             const char             *queue,
                                                             guint                  *message_count,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_bind_sync     (CarehareConnection     *self,
                                                             const char             *queue,
                                                             const char             *exchange,
                                                             const char             *routing_key,
                                                             GVariant               *arguments,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_queue_unbind_sync   (CarehareConnection     *self,
                                                             const char             *queue,
                                                             const char             *exchange,
                                                             const char             *routing_key,
                                                             GVariant               *arguments,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_declare_sync (CarehareConnection    *self,
                                                               const char            *exchange,
                                                               const char            *type,
                                                               CarehareExchangeFlags  flags,
                                                               GVariant              *arguments,
                                                               GCancellable          *cancellable,
                                                               GError               **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_delete_sync  (CarehareConnection          *self,
                                                               const char                  *exchange,
                                                               CarehareExchangeDeleteFlags  flags,
                                                               GCancellable                *cancellable,
                                                               GError                     **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_bind_sync    (CarehareConnection    *self,
                                                               const char            *destination,
                                                               const char            *source,
                                                               const char            *routing_key,
                                                               GVariant              *arguments,
                                                               GCancellable          *cancellable,
                                                               GError               **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_exchange_unbind_sync  (CarehareConnection    *self,
                                                               const char            *destination,
                                                               const char            *source,
                                                               const char            *routing_key,
                                                               GVariant              *arguments,
                                                               GCancellable          *cancellable,
                                                               GError               **error);
CAREHARE_AVAILABLE_IN_ALL
gboolean            carehare_connection_publish_sync        (CarehareConnection     *self,
                                                             const char             *exchange,
                                                             const char             *routing_key,
                                                             GBytes                 *body,
                                                             CarehareProperties     *properties,
                                                             CareharePublishFlags    flags,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
CarehareDelivery   *carehare_connection_call_sync           (CarehareConnection     *self,
                                                             const char             *exchange,
                                                             const char             *routing_key,
                                                             GBytes                 *body,
                                                             CarehareProperties     *properties,
                                                             CareharePublishFlags    flags,
                                                             GCancellable           *cancellable,
                                                             GError                **error);
CAREHARE_AVAILABLE_IN_ALL
CarehareConsumer   *carehare_connection_acking_consumer_sync (CarehareConnection    *self,
                                                              const char            *queue,
                                                              guint32                prefetch_size,
                                                              guint16                prefetch_count,
                                                              GCancellable          *cancellable,
                                                              GError               **error);

G_END_DECLS
