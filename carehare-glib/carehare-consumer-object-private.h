/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the consumer's own files share: carehare-consumer.c (the object,
 * its stream of deliveries, start and close) and carehare-consumer-settle.c
 * (ack and nack). */

#include "carehare-consumer-private.h"
#include "carehare-connection-private.h"

G_BEGIN_DECLS

struct _CarehareConsumer
{
  GObject parent_instance;

  CarehareConnection *connection;     /* owned */
  CarehareProtocolConsumer *pc;       /* owned reference */
  char *queue;                        /* owned */

  GQueue buffered;                    /* owned CarehareDelivery *, oldest first */
  /* Messages the broker sent that could not be represented (rejected by
   * the protocol), each reported once in its place in the stream. */
  GQueue rejected;                    /* owned Rejection *, oldest first */
  guint64 n_buffered;                 /* deliveries ever put in buffered */
  guint64 n_taken;                    /* deliveries ever taken from it */
  GQueue waiters;                     /* owned NextResult * of next_delivery(ies), oldest first */
  GQueue ready;                       /* owned NextResult *: handed over inside serve(), to complete */
  GSource *serve_source;              /* owned, attached while batch waiters are to be served */
  GSource *watch_source;              /* owned, attached while open: a ::delivery handler came */
  guint serving;                      /* serve() calls running (nested in a main loop) */
  gboolean emitting;                  /* inside emit_buffered() */

  gboolean closed;                    /* ended, for whatever reason */
  GError *closed_error;               /* owned; NULL when we closed it */

  gboolean starting;                  /* until the start op completed */
  GCancellable *start_cancellable;    /* owned while starting */
  gulong start_cancelled_id;

  /* A relay consumer (carehare-session.c) has no connection: its backend
   * feeds it deliveries and takes its settles and close. */
  GMainContext *context;              /* owned, relay only */
  const CarehareConsumerRelay *relay; /* NULL once detached, or not a relay */
  gpointer relay_data;
  char *relay_tag;                    /* owned, nullable */
  CarehareMailbox *mailbox;           /* owned, relay only: calls from other threads */
};

/* NULL once disposed (g_object_run_dispose(), or a binding that calls a
 * disposed object): then every call is a harmless no-op. */
CarehareProtocol *_carehare_consumer_get_protocol     (CarehareConsumer          *self);
/* A relay's call from any thread: at once when this thread can hold the
 * session's context, else queued with a copy of @data (by @copy, freed by
 * @free_data) and never waited for. */
void              _carehare_consumer_relay_run_nowait (CarehareConsumer          *self,
                                                       CarehareConnectionRunFunc  func,
                                                       gpointer                   data,
                                                       GBoxedCopyFunc             copy,
                                                       GDestroyNotify             free_data);

G_END_DECLS
