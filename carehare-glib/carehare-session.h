/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <gio/gio.h>

#include <carehare-glib/carehare-macros.h>
#include <carehare-glib/carehare-flags.h>
#include <carehare-glib/carehare-connection.h>
#include <carehare-glib/carehare-consumer.h>

G_BEGIN_DECLS

/**
 * CarehareSessionState:
 * @CAREHARE_SESSION_STATE_STOPPED: not started yet, or closed.
 * @CAREHARE_SESSION_STATE_CONNECTING: connecting, or restoring the topology
 *   and consumers on a new connection.
 * @CAREHARE_SESSION_STATE_CONNECTED: connected, topology and consumers
 *   restored.
 * @CAREHARE_SESSION_STATE_WAITING: waiting before the next attempt (backing
 *   off, or for the network to come back).
 * @CAREHARE_SESSION_STATE_FAILED: stopped for good after a permanent error
 *   (see [property@Carehare.Session:last-error]).
 *
 * The states of a [class@Carehare.Session].
 */
typedef enum {
  CAREHARE_SESSION_STATE_STOPPED,
  CAREHARE_SESSION_STATE_CONNECTING,
  CAREHARE_SESSION_STATE_CONNECTED,
  CAREHARE_SESSION_STATE_WAITING,
  CAREHARE_SESSION_STATE_FAILED,
} CarehareSessionState;

#define CAREHARE_TYPE_SESSION (carehare_session_get_type ())

CAREHARE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (CarehareSession, carehare_session, CAREHARE, SESSION, GObject)

CAREHARE_AVAILABLE_IN_ALL
CarehareSession      *carehare_session_new              (const char * const   *uris);
CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_start            (CarehareSession      *self);

CAREHARE_AVAILABLE_IN_ALL
CarehareSessionState  carehare_session_get_state        (CarehareSession      *self);
CAREHARE_AVAILABLE_IN_ALL
CarehareConnection   *carehare_session_get_connection   (CarehareSession      *self);
CAREHARE_AVAILABLE_IN_ALL
const GError         *carehare_session_get_last_error   (CarehareSession      *self);
CAREHARE_AVAILABLE_IN_ALL
guint                 carehare_session_get_reconnect_delay_min (CarehareSession *self);
CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_set_reconnect_delay_min (CarehareSession *self,
                                                                guint            delay_ms);
CAREHARE_AVAILABLE_IN_ALL
guint                 carehare_session_get_reconnect_delay_max (CarehareSession *self);
CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_set_reconnect_delay_max (CarehareSession *self,
                                                                guint            delay_ms);

CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_declare_queue    (CarehareSession      *self,
                                                         const char           *name,
                                                         CarehareQueueFlags    flags,
                                                         GVariant             *arguments);
CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_declare_exchange (CarehareSession      *self,
                                                         const char           *name,
                                                         const char           *type,
                                                         CarehareExchangeFlags flags,
                                                         GVariant             *arguments);
CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_bind_queue       (CarehareSession      *self,
                                                         const char           *queue,
                                                         const char           *exchange,
                                                         const char           *routing_key,
                                                         GVariant             *arguments);
CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_bind_exchange    (CarehareSession      *self,
                                                         const char           *destination,
                                                         const char           *source,
                                                         const char           *routing_key,
                                                         GVariant             *arguments);

CAREHARE_AVAILABLE_IN_ALL
CarehareConsumer     *carehare_session_acking_consumer      (CarehareSession      *self,
                                                             const char           *queue,
                                                             guint16               prefetch_count);
CAREHARE_AVAILABLE_IN_ALL
CarehareConsumer     *carehare_session_acking_consumer_full (CarehareSession      *self,
                                                             const char           *queue,
                                                             guint16               prefetch_count,
                                                             CarehareConsumeFlags  flags,
                                                             const char           *consumer_tag,
                                                             GVariant             *arguments);

CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_publish_async    (CarehareSession      *self,
                                                         const char           *exchange,
                                                         const char           *routing_key,
                                                         GBytes               *body,
                                                         CarehareProperties   *properties,
                                                         CareharePublishFlags  flags,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean              carehare_session_publish_finish   (CarehareSession      *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_set_password     (CarehareSession      *self,
                                                         const char           *password);

CAREHARE_AVAILABLE_IN_ALL
void                  carehare_session_close_async      (CarehareSession      *self,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
CAREHARE_AVAILABLE_IN_ALL
gboolean              carehare_session_close_finish     (CarehareSession      *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

G_END_DECLS
