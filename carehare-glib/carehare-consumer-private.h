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
/* A session consumer's: the session's context, where its calls run; NULL
 * for a consumer of a connection. */
GMainContext       *_carehare_consumer_get_relay_context (CarehareConsumer *self);

/* A relay consumer: a CarehareConsumer with no connection of its own,
 * fed by a backend (the session's long-lived consumers, which outlive
 * each connection). Its settles and its close go to @relay; after
 * _carehare_consumer_relay_detach() or _end() they are dropped. */
typedef struct {
  void (*settle) (gpointer  relay_data,
                  guint64   delivery_tag,
                  gboolean  multiple,
                  gboolean  ack,
                  gboolean  requeue);
  /* The program closed (or disposed) the consumer; the relay is detached. */
  void (*close)  (gpointer  relay_data);
} CarehareConsumerRelay;

CarehareConsumer *_carehare_consumer_new_relay          (GMainContext                *context,
                                                         const char                  *queue,
                                                         const CarehareConsumerRelay *relay,
                                                         gpointer                     relay_data);
void              _carehare_consumer_relay_detach       (CarehareConsumer *self);
void              _carehare_consumer_relay_set_tag      (CarehareConsumer *self,
                                                         const char       *consumer_tag);
/* Takes @delivery. */
void              _carehare_consumer_relay_deliver      (CarehareConsumer *self,
                                                         CarehareDelivery *delivery);
void              _carehare_consumer_relay_reject       (CarehareConsumer *self,
                                                         const GError     *error);
void              _carehare_consumer_relay_drop_buffered (CarehareConsumer *self);
/* Ends the stream with @error (taken; NULL: closed by the program). */
void              _carehare_consumer_relay_end          (CarehareConsumer *self,
                                                         GError           *error);

G_END_DECLS
