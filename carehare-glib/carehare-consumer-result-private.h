/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-consumer.h"

G_BEGIN_DECLS

/* The result of a next_delivery or next_deliveries call, and the call
 * while it waits. Not a GTask: GTask completes a call made in the current
 * main-loop iteration from an idle in the next one, and a program that
 * takes one message per call makes its next call in the callback, during
 * the dispatch that decodes the following messages. A NextResult is
 * completed at once there (see serve()): no iteration, no idle, no
 * wake-up per message. Elsewhere it follows GTask's rules: never inside
 * the call that made it (nor inside a cancellation handler), on the
 * caller's thread-default main context, from an idle when that context is
 * not the one dispatching. */
#define NEXT_TYPE_RESULT (next_result_get_type ())
G_DECLARE_FINAL_TYPE (NextResult, next_result, NEXT, RESULT, GObject)

struct _NextResult
{
  GObject parent_instance;

  CarehareConsumer *consumer;   /* owned: a waiting call holds its source object */
  gpointer source_tag;
  GAsyncReadyCallback callback; /* nullable */
  gpointer user_data;
  GMainContext *context;        /* owned: the caller's thread-default */
  gint64 creation_time;         /* the main-loop iteration it was made in, as GTask's */
  GCancellable *cancellable;    /* owned, nullable */
  gulong cancelled_id;
  gboolean batch;               /* next_deliveries: up to max at once */
  guint max;                    /* 0: all that are buffered */

  gboolean returned;            /* the outcome below is set */
  gpointer value;               /* owned: CarehareDelivery * or GPtrArray *, or NULL */
  GDestroyNotify value_free;
  GError *error;                /* owned, nullable */
};

NextResult *next_result_new       (CarehareConsumer    *consumer,
                                   gboolean             batch,
                                   guint                max,
                                   gpointer             source_tag,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data);
void        next_result_complete  (NextResult          *r,
                                   gboolean             served);
void        next_result_set       (NextResult          *r,
                                   gpointer             value,
                                   GDestroyNotify       value_free,
                                   GError              *error);
gpointer    next_result_propagate (CarehareConsumer    *self,
                                   GAsyncResult        *result,
                                   gpointer             source_tag,
                                   GError             **error);

G_END_DECLS
