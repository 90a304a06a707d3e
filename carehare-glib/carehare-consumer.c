/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-consumer-object-private.h"
#include "carehare-consumer-result-private.h"

#include "carehare-connection-private.h"
#include "carehare-delivery-private.h"
#include "carehare-error.h"

/**
 * CarehareConsumer:
 *
 * Messages from one queue, each to be acknowledged.
 *
 * Start one with [method@Carehare.Connection.acking_consumer_async]. Take
 * messages with [method@Carehare.Consumer.next_delivery_async] and settle
 * each with [method@Carehare.Consumer.ack] or [method@Carehare.Consumer.nack].
 * The broker sends at most the prefetch count of unacknowledged messages,
 * so that is all the consumer ever holds in memory.
 *
 * The consumer ends when the program closes it
 * ([method@Carehare.Consumer.close_async]; then `next_delivery` fails with
 * %CAREHARE_ERROR_CHANNEL_CLOSED, the end of the stream), when the broker
 * cancels it or closes its channel (the queue was deleted, a consumer
 * timeout: %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER), or when the
 * connection closes (%CAREHARE_ERROR_CONNECTION_CLOSED).
 * [signal@Carehare.Consumer::closed] tells once. Messages it had received
 * but not acknowledged go back to the queue and are delivered again, to
 * this program or another, marked redelivered; when the queue was deleted,
 * those `next_delivery` had not returned yet are lost with it. After the
 * broker cancelled the consumer, the messages the program took can still
 * be acknowledged: the consumer's channel is closed once they all are, or
 * when the program closes the consumer.
 *
 * Taking one message per `next_delivery` call, as below, is the fast
 * path: the messages of one read are handed out in the dispatch that
 * decoded them (the call made in each callback is answered at once from
 * what has arrived, without a main-loop iteration) and their
 * acknowledgements go out in one write. Language bindings, where each
 * call costs a round trip, take them through
 * [signal@Carehare.Consumer::delivery] instead: one emission per message.
 *
 * Every method may be called from any thread, as the connection's may:
 * deliveries may be handed to worker threads (a #GThreadPool) and
 * acknowledged there; [method@Carehare.Consumer.ack] from another thread
 * is handed to the connection's context and still never fails. Callbacks
 * run on the calling thread's thread-default main context.
 *
 * A consumer holds a reference on its connection, and a waiting
 * `next_delivery` holds one on the consumer until its callback has run, as
 * every GIO call holds its source object: the program need keep no
 * variable for a consumer that waits. Dropping the last reference on a
 * consumer with nothing pending stops it; to stop one that waits, close it.
 *
 * A message another program published that cannot be represented (its
 * header sets property flag bits that name no property, or nests tables
 * deeper than 64 levels) is rejected without requeueing, and
 * `next_delivery` fails once, in its place, with
 * %CAREHARE_ERROR_BAD_BYTES_FROM_SERVER naming the problem and the
 * delivery tag; the consumer goes on with the messages after it. So does a
 * message whose body is larger than the connection's
 * [property@Carehare.Connection:max-body-size] (128 MiB by default), with
 * %CAREHARE_ERROR_MESSAGE_TOO_LARGE naming its size and the limit; it is
 * never received into memory.
 *
 * ```c
 * static void
 * next_cb (GObject *source, GAsyncResult *result, gpointer user_data)
 * {
 *   CarehareConsumer *consumer = CAREHARE_CONSUMER (source);
 *   g_autoptr(GError) error = NULL;
 *   g_autoptr(CarehareDelivery) delivery = NULL;
 *
 *   delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
 *   if (delivery == NULL && !carehare_consumer_get_is_closed (consumer))
 *     {
 *       // one message that could not be represented was rejected: go on
 *       g_printerr ("%s\n", error->message);
 *       carehare_consumer_next_delivery_async (consumer, NULL, next_cb, NULL);
 *       return;
 *     }
 *   if (delivery == NULL)
 *     {
 *       if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED))
 *         g_printerr ("consumer stopped: %s\n", error->message);
 *       return;
 *     }
 *   handle (carehare_delivery_get_body (delivery));
 *   carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
 *   carehare_consumer_next_delivery_async (consumer, NULL, next_cb, NULL);
 * }
 * ```
 */

enum {
  PROP_0,
  PROP_QUEUE,
  PROP_CONSUMER_TAG,
  PROP_IS_CLOSED,
  N_PROPS
};

enum {
  SIGNAL_CLOSED,
  SIGNAL_DELIVERY,
  SIGNAL_REJECTED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CarehareConsumer, carehare_consumer, G_TYPE_OBJECT)

typedef struct {
  guint64 after;              /* comes after this many buffered deliveries */
  GError *error;              /* owned */
} Rejection;

static void
rejection_free (Rejection *rejection)
{
  g_clear_error (&rejection->error);
  g_free (rejection);
}

static gboolean
nothing_buffered (CarehareConsumer *self)
{
  return g_queue_is_empty (&self->buffered) && g_queue_is_empty (&self->rejected);
}

/* Whether the next thing in the stream is a rejected message. */
static gboolean
rejection_is_next (CarehareConsumer *self)
{
  Rejection *rejection = g_queue_peek_head (&self->rejected);

  return rejection != NULL && rejection->after == self->n_taken;
}

static void
clear_buffered (CarehareConsumer *self)
{
  g_queue_clear_full (&self->buffered, g_object_unref);
  g_queue_clear_full (&self->rejected, (GDestroyNotify) rejection_free);
}

/* Up to @max (0: all) buffered deliveries, oldest first, stopping before
 * a rejected message. */
static GPtrArray *
take_batch (CarehareConsumer *self,
            guint             max)
{
  GPtrArray *batch = g_ptr_array_new_with_free_func (g_object_unref);

  while ((max == 0 || batch->len < max) && !rejection_is_next (self) &&
         !g_queue_is_empty (&self->buffered))
    {
      g_ptr_array_add (batch, g_queue_pop_head (&self->buffered));
      self->n_taken++;
    }
  return batch;
}

/* Takes the waiting call out of cancellation's reach before it returns. */
static NextResult *
waiter_done (NextResult *r)
{
  if (r->cancelled_id != 0)
    {
      g_cancellable_disconnect (r->cancellable, r->cancelled_id);
      r->cancelled_id = 0;
    }
  return r;
}

/* Hands @r what is buffered (not nothing): the rejected message that comes
 * next, or one delivery or (a batch) up to its max. It is @r's from now
 * on, whatever its cancellable says. */
static void
hand_over (CarehareConsumer *self,
           NextResult       *r)
{
  waiter_done (r);
  if (rejection_is_next (self))
    {
      Rejection *rejection = g_queue_pop_head (&self->rejected);

      next_result_set (r, NULL, NULL, g_steal_pointer (&rejection->error));
      rejection_free (rejection);
    }
  else if (r->batch)
    next_result_set (r, take_batch (self, r->max), (GDestroyNotify) g_ptr_array_unref, NULL);
  else
    {
      self->n_taken++;
      next_result_set (r, g_queue_pop_head (&self->buffered), g_object_unref, NULL);
    }
}

/* Fails @r (taken) with @error (taken), by GTask's rule. */
static void
fail_waiter (NextResult *r,
             GError     *error)
{
  waiter_done (r);
  next_result_set (r, NULL, NULL, error);
  next_result_complete (r, FALSE);
  g_object_unref (r);
}

static GMainContext *
get_context (CarehareConsumer *self)
{
  return self->connection != NULL ? _carehare_connection_get_context (self->connection)
                                  : self->context;
}

/* NULL once disposed (g_object_run_dispose(), or a binding that calls a
 * disposed object): then every call is a harmless no-op. */
CarehareProtocol *
_carehare_consumer_get_protocol (CarehareConsumer *self)
{
  return self->connection != NULL ? _carehare_connection_get_protocol (self->connection) : NULL;
}

/* Ends the stream: drops what was buffered (the broker redelivers it),
 * fails every waiter, and emits ::closed once. Takes @error (NULL: we
 * closed it). */
static void
end_stream (CarehareConsumer *self,
            GError           *error)
{
  NextResult *r;

  g_autoptr(CarehareConsumer) keep = NULL;

  if (self->closed)
    {
      g_clear_error (&error);
      return;
    }
  /* A waiter's callback may drop the program's last reference. */
  keep = g_object_ref (self);
  self->closed = TRUE;
  self->closed_error = error;

  clear_buffered (self);
  if (self->watch_source != NULL)
    {
      g_source_destroy (self->watch_source);
      g_clear_pointer (&self->watch_source, g_source_unref);
    }
  while ((r = g_queue_pop_head (&self->waiters)) != NULL)
    {
      if (self->closed_error != NULL)
        fail_waiter (r, g_error_copy (self->closed_error));
      else
        fail_waiter (r, g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED,
                                             "Consumer closed"));
    }

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_IS_CLOSED]);
  g_signal_emit (self, signals[SIGNAL_CLOSED], 0, self->closed_error);
}

/* Hands what is buffered to the waiting calls, in the order they asked,
 * and completes them. Called where the program is inside none of our
 * calls (a delivery decoded, an idle): a callback runs at once, and the
 * call it makes for the next message is answered by this same loop from
 * what is buffered, or waits. @batches: serve a waiting next_deliveries
 * too (else the loop stops before it: it gets what arrives in this
 * dispatch, from an idle). A callback that runs a main loop (waiting for
 * the call it made) is served from there: by a delivery that arrives, or
 * by the watch source, which sees calls answered but not completed. */
static void
serve (CarehareConsumer *self,
       gboolean          batches)
{
  g_autoptr(CarehareConsumer) keep = NULL;
  NextResult *r;

  /* A callback may close the consumer or drop the last reference. */
  keep = g_object_ref (self);
  self->serving++;
  for (;;)
    {
      r = g_queue_pop_head (&self->ready);
      if (r == NULL && !nothing_buffered (self))
        {
          NextResult *head = g_queue_peek_head (&self->waiters);

          if (head != NULL && (batches || !head->batch))
            {
              r = g_queue_pop_head (&self->waiters);
              hand_over (self, r);
            }
        }
      if (r == NULL)
        break;
      next_result_complete (r, TRUE);
      g_object_unref (r);
    }
  self->serving--;
}

static gboolean
serve_waiters_cb (gpointer user_data)
{
  CarehareConsumer *self = user_data;

  /* Not a reference of the source's (dispose destroys it), so that a
   * main loop that stops before it runs holds nothing. */
  g_clear_pointer (&self->serve_source, g_source_unref);
  serve (self, TRUE);
  return G_SOURCE_REMOVE;
}

/* Calls were answered inside the call that made them, or something was
 * buffered while a call waits (a batch waiter gets everything that arrives
 * in this dispatch): they are served from an idle, once the protocol has
 * handed over the lot. Not while serve() runs: it serves them. */
static void
schedule_serve (CarehareConsumer *self)
{
  if (self->serving > 0 || self->serve_source != NULL ||
      (g_queue_is_empty (&self->ready) &&
       (g_queue_is_empty (&self->waiters) || nothing_buffered (self))))
    return;
  self->serve_source = g_idle_source_new ();
  g_source_set_priority (self->serve_source, G_PRIORITY_DEFAULT);
  g_source_set_callback (self->serve_source, serve_waiters_cb, self, NULL);
  g_source_set_static_name (self->serve_source, "[carehare] deliveries");
  g_source_attach (self->serve_source, get_context (self));
}

/* Whether ::delivery has a handler that is not blocked: then deliveries
 * are emitted. A blocked handler counts as none (emitting into it would
 * drop the message): they are buffered until it is unblocked. */
static gboolean
emitting (CarehareConsumer *self)
{
  return g_signal_has_handler_pending (self, signals[SIGNAL_DELIVERY], 0, FALSE);
}

/* Emits what is buffered, in order, while a handler is connected and the
 * consumer open. A waiting next_delivery fails with G_IO_ERROR_BUSY. Not
 * re-entered: a handler that runs a main loop leaves the rest to us. */
static void
emit_buffered (CarehareConsumer *self)
{
  g_autoptr(CarehareConsumer) keep = NULL;
  NextResult *r;

  if (self->emitting)
    return;
  keep = g_object_ref (self);
  self->emitting = TRUE;
  while (!self->closed && emitting (self) && (r = g_queue_pop_head (&self->waiters)) != NULL)
    fail_waiter (r, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_BUSY,
                                         "The consumer emits ::delivery: a handler is connected"));
  while (!self->closed && !nothing_buffered (self) && emitting (self))
    {
      if (rejection_is_next (self))
        {
          Rejection *rejection = g_queue_pop_head (&self->rejected);

          g_signal_emit (self, signals[SIGNAL_REJECTED], 0, rejection->error);
          rejection_free (rejection);
        }
      else
        {
          g_autoptr(CarehareDelivery) delivery = g_queue_pop_head (&self->buffered);

          self->n_taken++;
          g_signal_emit (self, signals[SIGNAL_DELIVERY], 0, delivery);
        }
    }
  self->emitting = FALSE;
}

/* Something was buffered: emit it, or hand it to the waiting calls. */
static void
deliver_buffered (CarehareConsumer *self)
{
  if (emitting (self))
    {
      emit_buffered (self);
      return;
    }
  /* A callback may drop the last reference: serve() keeps the consumer
   * alive only while it runs. */
  g_object_ref (self);
  serve (self, FALSE);
  schedule_serve (self);
  g_object_unref (self);
}

/* Buffers @delivery (taken) and delivers it. */
static void
push_delivery (CarehareConsumer *self,
               CarehareDelivery *delivery)
{
  if (self->closed)
    {
      g_object_unref (delivery);
      return;
    }
  g_queue_push_tail (&self->buffered, delivery);
  self->n_buffered++;
  deliver_buffered (self);
}

static void
delivery_cb (CarehareProtocolConsumer *pc,
             CarehareProtocolDelivery *d,
             gpointer                  user_data)
{
  push_delivery (user_data, carehare_delivery_new_take (d));
}

/* A message that could not be represented was rejected: the next call
 * in line reports it, and the stream goes on after it. */
static void
push_rejection (CarehareConsumer *self,
                const GError     *error)
{
  Rejection *rejection;

  if (self->closed)
    return;
  rejection = g_new0 (Rejection, 1);
  rejection->after = self->n_buffered;
  rejection->error = g_error_copy (error);
  g_queue_push_tail (&self->rejected, rejection);
  deliver_buffered (self);
}

/* While the consumer is open: dispatched when a ::delivery handler was
 * connected while deliveries wait in the buffer or calls wait for them,
 * in the next main-loop iteration (GObject tells nobody of a connection),
 * and when a callback run by serve() runs a main loop while the calls it
 * made are answered (else left to serve() once the callback returns). It
 * may recurse, so that a loop run from its own dispatch is served too. */
typedef struct {
  GSource source;
  CarehareConsumer *self;  /* not owned: the consumer destroys the source */
} WatchSource;

static gboolean
watch_check (GSource *source)
{
  CarehareConsumer *self = ((WatchSource *) source)->self;

  return !g_queue_is_empty (&self->ready) ||
         ((!nothing_buffered (self) || !g_queue_is_empty (&self->waiters)) &&
          !self->emitting && emitting (self));
}

static gboolean
watch_prepare (GSource *source,
               gint    *timeout)
{
  *timeout = -1;
  return watch_check (source);
}

static gboolean
watch_dispatch (GSource     *source,
                GSourceFunc  callback,
                gpointer     user_data)
{
  CarehareConsumer *self = g_object_ref (((WatchSource *) source)->self);

  if (!g_queue_is_empty (&self->ready))
    serve (self, FALSE);
  if (!self->closed && emitting (self))
    emit_buffered (self);
  g_object_unref (self);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs watch_funcs = {
  .prepare = watch_prepare,
  .check = watch_check,
  .dispatch = watch_dispatch,
};

static void
watch_start (CarehareConsumer *self,
             GMainContext     *context)
{
  self->watch_source = g_source_new (&watch_funcs, sizeof (WatchSource));
  ((WatchSource *) self->watch_source)->self = self;
  g_source_set_static_name (self->watch_source, "[carehare] delivery handler");
  g_source_set_can_recurse (self->watch_source, TRUE);
  g_source_attach (self->watch_source, context);
}

static void
rejected_cb (CarehareProtocolConsumer *pc,
             guint64                   delivery_tag,
             const GError             *error,
             gpointer                  user_data)
{
  push_rejection (user_data, error);
}

static void
closed_cb (CarehareProtocolConsumer *pc,
           const GError             *error,
           gpointer                  user_data)
{
  CarehareConsumer *self = user_data;
  CarehareProtocol *protocol = _carehare_consumer_get_protocol (self);

  /* The broker ended the consumer. After a Basic.Cancel its channel stays
   * open until the deliveries handed out are settled: give back those the
   * program never took (if the queue was deleted, they are gone with it).
   * On a channel or connection that is gone these are dropped. */
  if (protocol != NULL && !self->closed)
    {
      for (GList *l = self->buffered.head; l != NULL; l = l->next)
        carehare_protocol_consumer_nack (protocol, pc,
                                         carehare_delivery_get_delivery_tag (l->data),
                                         FALSE, TRUE);
      _carehare_connection_update (self->connection);
    }
  end_stream (self, g_error_copy (error));
}

static const CarehareProtocolConsumerCallbacks consumer_callbacks = {
  .delivery = delivery_cb,
  .closed = closed_cb,
  .rejected = rejected_cb,
};

static void
ignore_op_cb (CarehareProtocolOp   *op,
              const CarehareMethod *reply,
              const GError         *error,
              gpointer              user_data)
{
}

CarehareConsumer *
_carehare_consumer_new (CarehareConnection *connection,
                        const char         *queue)
{
  CarehareConsumer *self = g_object_new (CAREHARE_TYPE_CONSUMER, NULL);

  self->connection = g_object_ref (connection);
  self->queue = g_strdup (queue);
  watch_start (self, get_context (self));
  return self;
}

/* Stops the broker's side of a consumer the program gave up (its start
 * cancelled, or the object disposed); unacknowledged deliveries go back to
 * the queue. */
void
_carehare_consumer_abandon (CarehareConsumer *self)
{
  CarehareProtocol *protocol = _carehare_consumer_get_protocol (self);

  if (self->pc != NULL && protocol != NULL)
    {
      carehare_protocol_consumer_close (protocol, self->pc, ignore_op_cb, NULL);
      _carehare_connection_update (self->connection);
    }
}

static gboolean
start_cancelled_idle_cb (gpointer user_data)
{
  CarehareConsumer *self = user_data;

  /* Still starting: closing fails the start, reported as cancelled. */
  if (self->start_cancellable != NULL)
    _carehare_consumer_abandon (self);
  return G_SOURCE_REMOVE;
}

static void
start_cancelled_cb (GCancellable *cancellable,
                    gpointer      user_data)
{
  CarehareConsumer *self = user_data;
  g_autoptr(GSource) idle = g_idle_source_new ();

  /* May run in any thread: defer to the connection's context. */
  g_source_set_callback (idle, start_cancelled_idle_cb, g_object_ref (self), g_object_unref);
  g_source_set_static_name (idle, "[carehare] consumer start cancelled");
  g_source_attach (idle, get_context (self));
}

void
_carehare_consumer_start (CarehareConsumer                     *self,
                          guint32                               prefetch_size,
                          guint16                               prefetch_count,
                          const CarehareProtocolConsumeOptions *options,
                          GCancellable                         *cancellable,
                          CarehareProtocolOpCallback            started,
                          gpointer                              user_data)
{
  self->starting = TRUE;
  self->pc = carehare_protocol_consume_full (_carehare_consumer_get_protocol (self), self->queue,
                                             prefetch_size, prefetch_count, options,
                                             &consumer_callbacks, self, started, user_data);
  /* A start that failed at once (bad arguments, a closed connection) has
   * already run _carehare_consumer_started(): nothing would disconnect a
   * handler connected now, and it would keep the consumer, and so the
   * connection, alive for as long as the cancellable lives. */
  if (cancellable != NULL && self->pc != NULL && self->starting)
    {
      self->start_cancellable = g_object_ref (cancellable);
      self->start_cancelled_id = g_cancellable_connect (cancellable,
                                                        G_CALLBACK (start_cancelled_cb),
                                                        g_object_ref (self), g_object_unref);
    }
}

void
_carehare_consumer_started (CarehareConsumer *self)
{
  self->starting = FALSE;
  if (self->start_cancellable != NULL)
    {
      g_cancellable_disconnect (self->start_cancellable, self->start_cancelled_id);
      self->start_cancelled_id = 0;
      g_clear_object (&self->start_cancellable);
    }
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CONSUMER_TAG]);
}

/* The relay's calls (carehare-session.c), at the end of this file. */
static void     relay_run_later  (CarehareConsumer          *self,
                                  CarehareConnectionRunFunc  func,
                                  gpointer                   data,
                                  GDestroyNotify             destroy);

/* ---- GObject ------------------------------------------------------------- */

static gboolean
end_stream_idle_cb (gpointer user_data)
{
  end_stream (user_data, g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED,
                                              "Consumer closed: it was disposed"));
  return G_SOURCE_REMOVE;
}

static void consumer_run (CarehareConsumer          *self,
                          CarehareConnectionRunFunc  func,
                          gpointer                   data);

static void
dispose_run (CarehareConnection *connection,
             gpointer            user_data)
{
  CarehareConsumer *self = user_data;

  if (self->relay != NULL)
    {
      const CarehareConsumerRelay *relay = self->relay;

      self->relay = NULL;
      relay->close (self->relay_data);
    }
  if (self->pc != NULL)
    {
      /* Release the broker's side too. */
      _carehare_consumer_abandon (self);
      g_clear_pointer (&self->pc, carehare_protocol_consumer_unref);
    }
  clear_buffered (self);
  if (self->serve_source != NULL)
    {
      g_source_destroy (self->serve_source);
      g_clear_pointer (&self->serve_source, g_source_unref);
    }
  if (self->watch_source != NULL)
    {
      g_source_destroy (self->watch_source);
      g_clear_pointer (&self->watch_source, g_source_unref);
    }
  if (self->start_cancellable != NULL)
    {
      g_cancellable_disconnect (self->start_cancellable, self->start_cancelled_id);
      g_clear_object (&self->start_cancellable);
    }
}

static void
carehare_consumer_dispose (GObject *object)
{
  CarehareConsumer *self = CAREHARE_CONSUMER (object);

  /* The last reference may go in any thread: disposed by the thread
   * running the connection's context. */
  if (self->connection != NULL && _carehare_connection_dispose_elsewhere (self->connection, object))
    return;
  if (self->mailbox != NULL && _carehare_mailbox_dispose_elsewhere (self->mailbox, self->context,
                                                                    object))
    return;

  /* Every waiting call holds the consumer (GTask's rule), so dropping the
   * last reference leaves none: it stops a consumer with nothing pending.
   * Only g_object_run_dispose() gets here with calls waiting: they fail,
   * from an idle, never inside dispose. */
  if (!g_queue_is_empty (&self->waiters) && get_context (self) != NULL)
    {
      g_autoptr(GSource) idle = g_idle_source_new ();

      g_source_set_priority (idle, G_PRIORITY_DEFAULT);
      g_source_set_callback (idle, end_stream_idle_cb, g_object_ref (self), g_object_unref);
      g_source_set_static_name (idle, "[carehare] consumer disposed");
      g_source_attach (idle, get_context (self));
    }

  /* The protocol is touched with the connection's context held, as by
   * every call. */
  consumer_run (self, dispose_run, self);
  g_clear_object (&self->connection);

  G_OBJECT_CLASS (carehare_consumer_parent_class)->dispose (object);
}

static void
carehare_consumer_finalize (GObject *object)
{
  CarehareConsumer *self = CAREHARE_CONSUMER (object);

  /* Waiting calls hold a reference: none can be left. */
  g_assert (g_queue_is_empty (&self->waiters));
  g_assert (g_queue_is_empty (&self->ready));
  g_free (self->queue);
  g_free (self->relay_tag);
  g_clear_pointer (&self->mailbox, _carehare_mailbox_free);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_clear_error (&self->closed_error);

  G_OBJECT_CLASS (carehare_consumer_parent_class)->finalize (object);
}

static void
carehare_consumer_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  CarehareConsumer *self = CAREHARE_CONSUMER (object);

  switch (prop_id)
    {
    case PROP_QUEUE:
      g_value_set_string (value, self->queue);
      break;
    case PROP_CONSUMER_TAG:
      g_value_set_string (value, carehare_consumer_get_consumer_tag (self));
      break;
    case PROP_IS_CLOSED:
      g_value_set_boolean (value, self->closed);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_consumer_class_init (CarehareConsumerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = carehare_consumer_dispose;
  object_class->finalize = carehare_consumer_finalize;
  object_class->get_property = carehare_consumer_get_property;

  /**
   * CarehareConsumer:queue:
   *
   * The queue this consumer takes messages from.
   */
  properties[PROP_QUEUE] =
    g_param_spec_string ("queue", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConsumer:consumer-tag:
   *
   * The tag the broker gave this consumer.
   */
  properties[PROP_CONSUMER_TAG] =
    g_param_spec_string ("consumer-tag", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareConsumer:is-closed:
   *
   * Whether the consumer has ended.
   */
  properties[PROP_IS_CLOSED] =
    g_param_spec_boolean ("is-closed", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * CarehareConsumer::closed:
   * @self: the consumer
   * @error: (nullable): why it ended, or %NULL when the program closed it
   *
   * Emitted once, when the consumer ends, on its connection's main context
   * (the one that was thread-default when the connection was created), by
   * the thread running it.
   */
  signals[SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);

  /**
   * CarehareConsumer::delivery:
   * @self: the consumer
   * @delivery: the message; the handler takes a reference to keep it
   *
   * The per-message path for language bindings, and for C programs that
   * like a handler: one emission per message, with no call and no
   * main-loop iteration per message. While at least one handler is
   * connected, each message is emitted in order as it arrives, instead of
   * being buffered for [method@Carehare.Consumer.next_delivery_async],
   * which then fails at once with %G_IO_ERROR_BUSY (and so does one that
   * was waiting). Acknowledge each message as usual, with
   * [method@Carehare.Consumer.ack], from the handler or later.
   *
   * Emitted on the connection's main context (the one that was
   * thread-default when the connection was created), by the thread
   * running it. Messages that were buffered when the first handler was
   * connected are emitted first, in order, in that context's next
   * main-loop iteration (or when the next message arrives, whichever
   * comes first). When the last handler is disconnected, messages are
   * buffered again and taken with `next_delivery` as before: none is
   * lost. A handler that is blocked (g_signal_handler_block(), to pause)
   * counts as none: messages are buffered while every handler is
   * blocked, and emitted once one is unblocked. A handler may disconnect
   * itself, or close the consumer: the messages not emitted yet then go
   * back to the queue, and [signal@Carehare.Consumer::closed] is emitted
   * as always. Nothing is emitted once the consumer is closed.
   *
   * A handler runs inside the read that brought its message: nothing more
   * is read from the broker until it returns. It must not wait for the
   * broker in a main loop of its own (running the context until a
   * declaration completes, say): that would wait forever. Start the
   * operation and return; go on in its callback.
   *
   * A waiting `next_delivery` holds the consumer; a handler does not: keep
   * a reference on the consumer while it consumes this way (dropping the
   * last one stops it).
   */
  signals[SIGNAL_DELIVERY] =
    g_signal_new ("delivery", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, CAREHARE_TYPE_DELIVERY);

  /**
   * CarehareConsumer::rejected:
   * @self: the consumer
   * @error: why the message was rejected
   *
   * While [signal@Carehare.Consumer::delivery] has a handler: emitted, in
   * its place in the stream, for a message that could not be represented
   * or was larger than [property@Carehare.Connection:max-body-size], and
   * was rejected without requeueing (the error `next_delivery` would have
   * failed with once, %CAREHARE_ERROR_BAD_BYTES_FROM_SERVER or
   * %CAREHARE_ERROR_MESSAGE_TOO_LARGE). The consumer goes on.
   */
  signals[SIGNAL_REJECTED] =
    g_signal_new ("rejected", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
carehare_consumer_init (CarehareConsumer *self)
{
  g_queue_init (&self->buffered);
  g_queue_init (&self->rejected);
  g_queue_init (&self->waiters);
  g_queue_init (&self->ready);
}

/* ---- public API ---------------------------------------------------------- */

static void
next_cancelled_run (CarehareConnection *connection,
                    gpointer            user_data)
{
  NextResult *r = user_data;
  CarehareConsumer *self = r->consumer;

  /* The waiters queue's reference goes to fail_waiter(). */
  if (g_queue_remove (&self->waiters, r))
    fail_waiter (r, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                         "Operation was cancelled"));
}

static gboolean
next_cancelled_idle_cb (gpointer user_data)
{
  next_cancelled_run (NULL, user_data);
  return G_SOURCE_REMOVE;
}

static void
next_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  NextResult *r = user_data;
  CarehareConsumer *self = r->consumer;
  g_autoptr(GSource) idle = NULL;

  /* May run in any thread, and inside the cancellable's lock: defer the
   * work to the connection's context. */
  if (self->connection != NULL)
    {
      _carehare_connection_run_later (self->connection, next_cancelled_run,
                                      g_object_ref (r), g_object_unref);
      return;
    }
  if (self->mailbox != NULL)
    {
      relay_run_later (self, next_cancelled_run, g_object_ref (r), g_object_unref);
      return;
    }
  idle = g_idle_source_new ();
  g_source_set_callback (idle, next_cancelled_idle_cb, g_object_ref (r), g_object_unref);
  g_source_set_static_name (idle, "[carehare] next delivery cancelled");
  g_source_attach (idle, get_context (self));
}

GMainContext *
_carehare_consumer_get_relay_context (CarehareConsumer *self)
{
  return self->connection == NULL ? self->context : NULL;
}

CarehareConnection *
_carehare_consumer_get_connection (CarehareConsumer *self)
{
  return self->connection;
}

/* Runs @func (@self's connection, @data) with the connection's context
 * held (see _carehare_connection_run()); a consumer whose connection is
 * gone runs it at once. */
static void
consumer_run (CarehareConsumer          *self,
              CarehareConnectionRunFunc  func,
              gpointer                   data)
{
  if (self->connection != NULL)
    _carehare_connection_run (self->connection, func, data);
  else
    func (NULL, data);
}

/* Runs the call @user_data (a NextResult reference) on the connection's
 * context: answers it from what is buffered (handed over now, completed
 * from an idle, or at once by the serve() loop whose callback made the
 * call), or fails it, or queues it to wait. */
static void
next_run (CarehareConnection *connection,
          gpointer            user_data)
{
  NextResult *r = g_object_ref (user_data);
  CarehareConsumer *self = r->consumer;

  if (g_cancellable_is_cancelled (r->cancellable))
    fail_waiter (r, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                         "Operation was cancelled"));
  else if (emitting (self))
    fail_waiter (r, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_BUSY,
                                         "The consumer emits ::delivery: a handler is connected"));
  else if (!nothing_buffered (self) && g_queue_is_empty (&self->waiters))
    {
      /* Handed over now; completed by serve(): the one running (whose
       * callback made this call) or, from an idle, the next one. */
      hand_over (self, r);
      g_queue_push_tail (&self->ready, r);
      schedule_serve (self);
    }
  else if (self->closed && self->closed_error != NULL)
    fail_waiter (r, g_error_copy (self->closed_error));
  else if (self->closed)
    fail_waiter (r, g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED,
                                         "Consumer closed"));
  else
    {
      /* As in GIO, the waiting call holds the consumer until it
       * completes: a program that wants it gone closes it. */
      g_queue_push_tail (&self->waiters, r);
      if (r->cancellable != NULL)
        r->cancelled_id = g_cancellable_connect (r->cancellable, G_CALLBACK (next_cancelled_cb),
                                                 g_object_ref (r), g_object_unref);
      /* Calls that wait behind a batch. */
      schedule_serve (self);
    }
}

static gpointer
ref_result (gpointer r)
{
  return g_object_ref (r);
}

/* One delivery, or (@batch) up to @max of them. */
static void
next_async (CarehareConsumer    *self,
            gboolean             batch,
            guint                max,
            gpointer             source_tag,
            GCancellable        *cancellable,
            GAsyncReadyCallback  callback,
            gpointer             user_data)
{
  g_autoptr(NextResult) r = NULL;

  /* Made on the calling thread: its callback runs on the caller's
   * thread-default main context. Cancellation wins only while nothing is
   * handed over: once a delivery is given to this call, it is reported
   * whatever the cancellable says. */
  r = next_result_new (self, batch, max, source_tag, cancellable, callback, user_data);
  /* From another thread: queued, not waited for. */
  if (self->connection != NULL)
    _carehare_connection_run_nowait (self->connection, next_run, r, ref_result, g_object_unref);
  else
    _carehare_consumer_relay_run_nowait (self, next_run, r, ref_result, g_object_unref);
}

/**
 * carehare_consumer_next_delivery_async:
 * @self: a consumer
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the next message
 * @user_data: data for @callback
 *
 * Takes the next message, waiting for one if none has arrived. Fails with
 * %CAREHARE_ERROR_CHANNEL_CLOSED once the program closed the consumer (the
 * end of the stream), %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER when the
 * broker cancelled it or closed its channel, and
 * %CAREHARE_ERROR_CONNECTION_CLOSED when the connection closed; every later
 * call fails the same way. It fails once with
 * %CAREHARE_ERROR_BAD_BYTES_FROM_SERVER for a message that cannot be
 * represented, or with %CAREHARE_ERROR_MESSAGE_TOO_LARGE for one larger
 * than [property@Carehare.Connection:max-body-size], which was rejected;
 * then the consumer is still open
 * ([property@Carehare.Consumer:is-closed] is %FALSE) and the next call
 * gets the next message.
 *
 * Cancelling @cancellable completes the call with %G_IO_ERROR_CANCELLED
 * only while no message was handed to it: once one was (even in the same
 * main-loop turn as the cancellation), the call reports it, so that no
 * message is lost unacknowledged.
 *
 * As every GIO call holds its source object, the waiting call holds the
 * consumer (and so the connection) until @callback has run: a consumer the
 * program keeps no reference to goes on waiting, and receiving. To stop
 * waiting, close the consumer ([method@Carehare.Consumer.close_async]: the
 * call fails with %CAREHARE_ERROR_CHANNEL_CLOSED) or cancel the call.
 *
 * @callback may run inside the read that brought the message (the call
 * made in a previous callback is answered there, with no main-loop
 * iteration per message): it must not wait for the broker in a main loop
 * of its own, which nothing would answer until it returns. Start the
 * operation and return; go on in its callback.
 */
void
carehare_consumer_next_delivery_async (CarehareConsumer    *self,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  g_return_if_fail (CAREHARE_IS_CONSUMER (self));

  next_async (self, FALSE, 1, carehare_consumer_next_delivery_async, cancellable,
              callback, user_data);
}

/**
 * carehare_consumer_next_deliveries_async:
 * @self: a consumer
 * @max_deliveries: the most messages to return at once; 0 for every one
 *   that has arrived (at most the prefetch count)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the messages
 * @user_data: data for @callback
 *
 * Takes every message that has arrived, up to @max_deliveries, waiting
 * for one if none has. It is [method@Carehare.Consumer.next_delivery_async]
 * for busy consumers: one call, and one main-loop turn, for a whole read's
 * worth of messages. Each must still be acknowledged on its own. Fails,
 * and holds the consumer while it waits, as next_delivery does; the
 * messages returned stop before one that was rejected, which the next call
 * reports.
 */
void
carehare_consumer_next_deliveries_async (CarehareConsumer    *self,
                                         guint                max_deliveries,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  g_return_if_fail (CAREHARE_IS_CONSUMER (self));

  next_async (self, TRUE, max_deliveries, carehare_consumer_next_deliveries_async,
              cancellable, callback, user_data);
}

/**
 * carehare_consumer_next_deliveries_finish:
 * @self: a consumer
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Consumer.next_deliveries_async].
 *
 * Returns: (transfer container) (element-type CarehareDelivery): one message or
 *   more, oldest first, or %NULL with @error set; the array holds a
 *   reference on each and drops it when freed
 */
GPtrArray *
carehare_consumer_next_deliveries_finish (CarehareConsumer  *self,
                                          GAsyncResult      *result,
                                          GError           **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), NULL);

  return next_result_propagate (self, result, carehare_consumer_next_deliveries_async, error);
}

/**
 * carehare_consumer_next_delivery_finish:
 * @self: a consumer
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Consumer.next_delivery_async].
 *
 * Returns: (transfer full): the message, or %NULL with @error set
 */
CarehareDelivery *
carehare_consumer_next_delivery_finish (CarehareConsumer  *self,
                                        GAsyncResult      *result,
                                        GError           **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), NULL);

  return next_result_propagate (self, result, carehare_consumer_next_delivery_async, error);
}

static void close_run (CarehareConnection *connection,
                       gpointer            user_data);

/* The task's reference goes with the queued call, which consumes it. */
static gpointer
pass_task (gpointer task)
{
  return task;
}

static void
close_done_cb (CarehareProtocolOp   *op,
               const CarehareMethod *reply,
               const GError         *error,
               gpointer              user_data)
{
  GTask *task = user_data;

  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

/**
 * carehare_consumer_close_async:
 * @self: a consumer
 * @cancellable: (nullable): ignored: closing always runs to the end
 * @callback: (scope async) (nullable): called when the broker released the
 *   consumer's channel
 * @user_data: data for @callback
 *
 * Stops consuming. A pending [method@Carehare.Consumer.next_delivery_async]
 * fails at once with %CAREHARE_ERROR_CHANNEL_CLOSED, and so does every
 * later one; messages received but not taken or not acknowledged go back
 * to the queue. Calling it again is fine.
 */
void
carehare_consumer_close_async (CarehareConsumer    *self,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autoptr(CarehareConsumer) keep = NULL;
  GTask *task;

  g_return_if_fail (CAREHARE_IS_CONSUMER (self));

  /* Closing fails the waiting calls, whose callbacks may drop the
   * program's last reference. */
  keep = g_object_ref (self);
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, carehare_consumer_close_async);
  g_task_set_check_cancellable (task, FALSE);
  /* From another thread: queued (with the task's reference), not waited for. */
  if (self->connection != NULL)
    _carehare_connection_run_nowait (self->connection, close_run, task, pass_task, NULL);
  else
    _carehare_consumer_relay_run_nowait (self, close_run, task, pass_task, NULL);
}

/* close_async() with the connection's context held; @user_data is the
 * task's reference. */
static void
close_run (CarehareConnection *connection,
           gpointer            user_data)
{
  GTask *task = user_data;
  CarehareConsumer *self = g_task_get_source_object (task);
  CarehareProtocol *protocol;

  end_stream (self, NULL);
  if (self->relay != NULL)
    {
      const CarehareConsumerRelay *relay = self->relay;

      self->relay = NULL;
      relay->close (self->relay_data);
    }
  protocol = _carehare_consumer_get_protocol (self);
  if (self->pc == NULL || protocol == NULL)
    {
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }
  carehare_protocol_consumer_close (protocol, self->pc, close_done_cb, task);
  _carehare_connection_update (self->connection);
}

/**
 * carehare_consumer_close_finish:
 * @self: a consumer
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Consumer.close_async].
 *
 * Returns: %TRUE (closing a consumer does not fail)
 */
gboolean
carehare_consumer_close_finish (CarehareConsumer  *self,
                                GAsyncResult      *result,
                                GError           **error)
{
  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * carehare_consumer_get_queue:
 * @self: a consumer
 *
 * Gets the queue this consumer takes messages from.
 *
 * Returns: the queue this consumer takes messages from
 */
const char *
carehare_consumer_get_queue (CarehareConsumer *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), NULL);
  return self->queue;
}

/**
 * carehare_consumer_get_consumer_tag:
 * @self: a consumer
 *
 * Gets the tag the broker gave this consumer.
 *
 * Returns: (nullable): the tag the broker gave this consumer
 */
const char *
carehare_consumer_get_consumer_tag (CarehareConsumer *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), NULL);
  if (self->context != NULL)
    return self->relay_tag;
  return self->pc != NULL ? carehare_protocol_consumer_get_tag (self->pc) : NULL;
}

/**
 * carehare_consumer_get_is_closed:
 * @self: a consumer
 *
 * Gets whether the consumer has ended, for whatever reason.
 *
 * Returns: whether the consumer has ended
 */
gboolean
carehare_consumer_get_is_closed (CarehareConsumer *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONSUMER (self), TRUE);
  return self->closed;
}

/* ---- relay consumers (carehare-session.c) -------------------------------- */

/* A relay's state is touched only on the session's context, as a
 * connection's consumer's is on the connection's: its calls from other
 * threads go through a mailbox of its own on that context (the session's
 * may be gone while the program still holds the consumer). Its functions
 * are the connection ones, called with no connection. */
static void
relay_invoke (GCallback func,
              gpointer  owner,
              gpointer  data)
{
  ((CarehareConnectionRunFunc) func) (NULL, data);
}

/* At once when this thread can hold the session's context (or the
 * consumer was disposed: no mailbox), else queued with a copy of @data
 * and never waited for. */
void
_carehare_consumer_relay_run_nowait (CarehareConsumer          *self,
                                     CarehareConnectionRunFunc  func,
                                     gpointer                   data,
                                     GBoxedCopyFunc             copy,
                                     GDestroyNotify             free_data)
{
  if (self->mailbox == NULL)
    func (NULL, data);
  else if (!_carehare_mailbox_run_here (self->mailbox, self->context, relay_invoke, self,
                                        (GCallback) func, data))
    _carehare_mailbox_run_later (self->mailbox, relay_invoke, self, (GCallback) func,
                                 copy (data), free_data);
}

/* Always queued: from a cancellable's handler. */
static void
relay_run_later (CarehareConsumer          *self,
                 CarehareConnectionRunFunc  func,
                 gpointer                   data,
                 GDestroyNotify             destroy)
{
  _carehare_mailbox_run_later (self->mailbox, relay_invoke, self, (GCallback) func, data,
                               destroy);
}

CarehareConsumer *
_carehare_consumer_new_relay (GMainContext                *context,
                              const char                  *queue,
                              const CarehareConsumerRelay *relay,
                              gpointer                     relay_data)
{
  CarehareConsumer *self = g_object_new (CAREHARE_TYPE_CONSUMER, NULL);

  self->context = g_main_context_ref (context);
  self->mailbox = _carehare_mailbox_new (context);
  _carehare_mailbox_set_push_context (self->mailbox);
  self->queue = g_strdup (queue);
  self->relay = relay;
  self->relay_data = relay_data;
  watch_start (self, context);
  return self;
}

void
_carehare_consumer_relay_detach (CarehareConsumer *self)
{
  self->relay = NULL;
}

void
_carehare_consumer_relay_set_tag (CarehareConsumer *self,
                                  const char       *consumer_tag)
{
  if (g_strcmp0 (self->relay_tag, consumer_tag) == 0)
    return;
  g_free (self->relay_tag);
  self->relay_tag = g_strdup (consumer_tag);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CONSUMER_TAG]);
}

void
_carehare_consumer_relay_deliver (CarehareConsumer *self,
                                  CarehareDelivery *delivery)
{
  push_delivery (self, delivery);
}

void
_carehare_consumer_relay_reject (CarehareConsumer *self,
                                 const GError     *error)
{
  push_rejection (self, error);
}

/* The connection those deliveries came on died: the broker delivers them
 * again, and settling them now could only be ignored. */
void
_carehare_consumer_relay_drop_buffered (CarehareConsumer *self)
{
  self->n_taken += g_queue_get_length (&self->buffered);
  clear_buffered (self);
}

void
_carehare_consumer_relay_end (CarehareConsumer *self,
                              GError           *error)
{
  self->relay = NULL;
  end_stream (self, error);
}
