/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareSession: its consumers, which live across connections (relays the
 * session feeds from a consumer of each connection in turn).
 */
#include "carehare-session-private.h"

#include "carehare-consumer-private.h"
#include "carehare-delivery-private.h"
#include "carehare-error.h"

/* ---- session consumers --------------------------------------------------- */

SessionConsumer *
_carehare_session_consumer_ref (SessionConsumer *sc)
{
  g_atomic_int_inc (&sc->ref_count);
  return sc;
}

void
_carehare_session_consumer_unref (SessionConsumer *sc)
{
  if (!g_atomic_int_dec_and_test (&sc->ref_count))
    return;
  g_assert (sc->inner == NULL);
  g_clear_object (&sc->relay);
  g_free (sc->queue);
  g_free (sc->consumer_tag);
  g_clear_pointer (&sc->arguments, g_variant_unref);
  g_free (sc);
}

/* The connection of @sc's inner consumer is gone (or the consumer ends):
 * its broker tags die with it. */
void
_carehare_session_consumer_drop_inner (SessionConsumer *sc,
                                       gboolean         close)
{
  if (sc->inner == NULL)
    return;
  sc->offset += sc->max_inner;
  sc->max_inner = 0;
  g_cancellable_cancel (sc->pump_cancellable);
  g_clear_object (&sc->pump_cancellable);
  if (close)
    carehare_consumer_close_async (sc->inner, NULL, NULL, NULL);
  g_clear_object (&sc->inner);
  /* Messages received on it and not taken yet are delivered again. */
  _carehare_consumer_relay_drop_buffered (sc->relay);
}

/* Takes @sc out of the session (the program closed it, or it ended). */
void
_carehare_session_consumer_remove (SessionConsumer *sc)
{
  CarehareSession *self = sc->session;

  _carehare_session_consumer_drop_inner (sc, TRUE);
  if (self == NULL)
    return;
  sc->session = NULL;
  g_ptr_array_remove (self->consumers, sc);
}

/* Ends @sc's stream with @error (taken) and drops it. */
void
_carehare_session_consumer_end (SessionConsumer *sc,
                                GError          *error)
{
  g_autoptr(CarehareConsumer) relay = g_object_ref (sc->relay);

  _carehare_session_consumer_ref (sc);
  _carehare_session_consumer_remove (sc);
  _carehare_consumer_relay_end (relay, error);
  _carehare_session_consumer_unref (sc);
}

static void
relay_settle (gpointer relay_data,
              guint64  delivery_tag,
              gboolean multiple,
              gboolean ack,
              gboolean requeue)
{
  SessionConsumer *sc = relay_data;
  guint64 tag;

  if (sc->inner == NULL || delivery_tag <= sc->offset)
    {
      /* The broker delivers it again, marked redelivered: its tag on a
       * live connection would name another message, or none. */
      g_debug ("session consumer: dropping the settle of tag %" G_GUINT64_FORMAT
               ", from a connection that is gone", delivery_tag);
      return;
    }
  tag = delivery_tag - sc->offset;
  if (ack && multiple)
    carehare_consumer_ack_up_to (sc->inner, tag);
  else if (ack)
    carehare_consumer_ack (sc->inner, tag);
  else if (multiple)
    carehare_consumer_nack_up_to (sc->inner, tag, requeue);
  else
    carehare_consumer_nack (sc->inner, tag, requeue);
}

static void
relay_close (gpointer relay_data)
{
  SessionConsumer *sc = relay_data;

  _carehare_session_consumer_ref (sc);
  _carehare_session_consumer_remove (sc);
  _carehare_session_consumer_unref (sc);
}

static const CarehareConsumerRelay relay_vtable = {
  .settle = relay_settle,
  .close = relay_close,
};

static void
pump_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  CarehareConsumer *inner = CAREHARE_CONSUMER (source);
  SessionConsumer *sc = user_data;
  g_autoptr(GPtrArray) batch = NULL;
  g_autoptr(GError) error = NULL;

  batch = carehare_consumer_next_deliveries_finish (inner, result, &error);
  if (sc->inner != inner)
    {
      /* Superseded: what it got goes back to the queue with its channel. */
      _carehare_session_consumer_unref (sc);
      return;
    }
  if (batch != NULL)
    {
      /* Each delivery may run the program's callback at once, which may
       * close the session or the consumer: then the inner consumer is
       * gone, and so is what it delivered. */
      for (guint i = 0; i < batch->len && sc->inner == inner; i++)
        {
          CarehareDelivery *delivery = g_object_ref (g_ptr_array_index (batch, i));
          guint64 tag = carehare_delivery_get_delivery_tag (delivery);

          sc->max_inner = MAX (sc->max_inner, tag);
          _carehare_delivery_set_delivery_tag (delivery, sc->offset + tag);
          _carehare_consumer_relay_deliver (sc->relay, delivery);
        }
      if (sc->inner == inner)
        _carehare_session_consumer_pump (sc);
    }
  else if (!carehare_consumer_get_is_closed (inner))
    {
      /* One message that could not be represented was rejected. */
      _carehare_consumer_relay_reject (sc->relay, error);
      if (sc->inner == inner)
        _carehare_session_consumer_pump (sc);
    }
  else if (g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER))
    {
      /* The broker cancelled the consumer (its queue was deleted...): the
       * program hears it, as from a consumer of a connection. */
      _carehare_session_consumer_end (sc, g_steal_pointer (&error));
    }
  /* Otherwise the connection is gone: the session restarts the consumer. */
  _carehare_session_consumer_unref (sc);
}

void
_carehare_session_consumer_pump (SessionConsumer *sc)
{
  carehare_consumer_next_deliveries_async (sc->inner, 0, sc->pump_cancellable, pump_cb,
                                           _carehare_session_consumer_ref (sc));
}

/* @inner (taken), just started on a new connection, feeds @sc from now
 * on; its broker tags start at 1 again. */
static void
consumer_attach (SessionConsumer  *sc,
                 CarehareConsumer *inner)
{
  sc->inner = inner;
  sc->pump_cancellable = g_cancellable_new ();
  sc->max_inner = 0;
  _carehare_consumer_relay_set_tag (sc->relay, carehare_consumer_get_consumer_tag (inner));
}

typedef struct {
  Attempt *attempt;        /* owned reference */
  SessionConsumer *sc;     /* owned reference */
} StartData;

static void
start_data_free (StartData *data)
{
  _carehare_session_attempt_unref (data->attempt);
  _carehare_session_consumer_unref (data->sc);
  g_free (data);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (StartData, start_data_free)

static void
consumer_started_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(StartData) data = user_data;
  Attempt *attempt = data->attempt;
  SessionConsumer *sc = data->sc;
  g_autoptr(CarehareConsumer) inner = NULL;
  g_autoptr(GError) error = NULL;

  inner = carehare_connection_acking_consumer_full_finish (CAREHARE_CONNECTION (source), result,
                                                           &error);
  if (!_carehare_session_attempt_is_current (attempt))
    {
      /* Superseded: its connection is closing. */
      return;
    }
  attempt->consumers_starting--;
  if (sc->session == NULL)
    {
      /* The program closed the consumer meanwhile. */
      if (inner != NULL)
        carehare_consumer_close_async (inner, NULL, NULL, NULL);
    }
  else if (inner == NULL && (_carehare_session_error_is_connection_lost (error) ||
                             carehare_error_get_reply_code (error) == 405))
    {
      /* The connection died, or the broker still holds the previous
       * connection's exclusive queue: the attempt failed, try again. */
      _carehare_session_attempt_failed (attempt, g_steal_pointer (&error));
      return;
    }
  else if (inner == NULL)
    {
      /* The broker refused this consumer (no such queue, another
       * exclusive consumer...): it ends, as a connection's consumer whose
       * start failed would; the session goes on. */
      g_debug ("session %p: consumer on '%s' refused: %s", attempt->session, sc->queue,
               error->message);
      _carehare_session_consumer_end (sc, g_steal_pointer (&error));
    }
  else
    {
      consumer_attach (sc, g_steal_pointer (&inner));
    }
  if (attempt->consumers_starting == 0)
    _carehare_session_go_connected (attempt);
}

static void
consumer_start (SessionConsumer *sc,
                Attempt         *attempt)
{
  StartData *data = g_new0 (StartData, 1);

  data->attempt = _carehare_session_attempt_ref (attempt);
  data->sc = _carehare_session_consumer_ref (sc);
  attempt->consumers_starting++;
  carehare_connection_acking_consumer_full_async (attempt->connection, sc->queue, 0,
                                                  sc->prefetch_count, sc->flags,
                                                  sc->consumer_tag, sc->arguments,
                                                  attempt->cancellable, consumer_started_cb,
                                                  data);
}

/* Topology done: start every consumer, then the attempt is connected. */
void
_carehare_session_start_consumers (Attempt *attempt)
{
  CarehareSession *self = attempt->session;
  g_autoptr(GPtrArray) consumers = NULL;

  consumers = g_ptr_array_new_with_free_func ((GDestroyNotify) _carehare_session_consumer_unref);
  for (guint i = 0; i < self->consumers->len; i++)
    {
      SessionConsumer *sc = g_ptr_array_index (self->consumers, i);

      g_ptr_array_add (consumers, _carehare_session_consumer_ref (sc));
    }
  attempt->consumers_starting++;  /* until every one is asked */
  for (guint i = 0; i < consumers->len; i++)
    consumer_start (g_ptr_array_index (consumers, i), attempt);
  attempt->consumers_starting--;
  if (_carehare_session_attempt_is_current (attempt) && attempt->consumers_starting == 0)
    _carehare_session_go_connected (attempt);
}

typedef struct {
  CarehareSession *session;        /* owned */
  CarehareConnection *connection;  /* owned */
  SessionConsumer *sc;             /* owned reference */
} LiveStartData;

static void
live_start_data_free (LiveStartData *data)
{
  g_object_unref (data->session);
  g_object_unref (data->connection);
  _carehare_session_consumer_unref (data->sc);
  g_free (data);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LiveStartData, live_start_data_free)

static void
live_started_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(LiveStartData) data = user_data;
  SessionConsumer *sc = data->sc;
  g_autoptr(CarehareConsumer) inner = NULL;
  g_autoptr(GError) error = NULL;

  inner = carehare_connection_acking_consumer_full_finish (data->connection, result, &error);
  if (sc->session == NULL || data->session->connection != data->connection ||
      sc->inner != NULL)
    {
      /* Closed by the program, or the connection is gone (a later one
       * restores the consumer). */
      if (inner != NULL)
        carehare_consumer_close_async (inner, NULL, NULL, NULL);
      return;
    }
  if (inner == NULL)
    {
      if (!_carehare_session_error_is_connection_lost (error))
        _carehare_session_consumer_end (sc, g_steal_pointer (&error));
      return;
    }
  consumer_attach (sc, g_steal_pointer (&inner));
  _carehare_session_consumer_pump (sc);
}

/* A consumer created while connected starts on the current connection. */
static void
live_consumer_start (CarehareSession *self,
                     SessionConsumer *sc)
{
  LiveStartData *data = g_new0 (LiveStartData, 1);

  data->session = g_object_ref (self);
  data->connection = g_object_ref (self->connection);
  data->sc = _carehare_session_consumer_ref (sc);
  carehare_connection_acking_consumer_full_async (self->connection, sc->queue, 0,
                                                  sc->prefetch_count, sc->flags,
                                                  sc->consumer_tag, sc->arguments, NULL,
                                                  live_started_cb, data);
}

static void add_consumer_run (CarehareSession *self,
                              gpointer         data);

/**
 * carehare_session_acking_consumer:
 * @self: a session
 * @queue: the queue to consume from
 * @prefetch_count: the most unacknowledged messages the broker sends
 *
 * The same as [method@Carehare.Session.acking_consumer_full] with no
 * flags, a broker-chosen tag and no arguments. May be called from any
 * thread, as that one may.
 *
 * Returns: (transfer full): a consumer that lives across reconnections
 */
CarehareConsumer *
carehare_session_acking_consumer (CarehareSession *self,
                                  const char      *queue,
                                  guint16          prefetch_count)
{
  return carehare_session_acking_consumer_full (self, queue, prefetch_count,
                                                CAREHARE_CONSUME_FLAGS_NONE, NULL, NULL);
}

/**
 * carehare_session_acking_consumer_full:
 * @self: a session
 * @queue: the queue to consume from
 * @prefetch_count: the most unacknowledged messages the broker sends
 * @flags: as for [method@Carehare.Connection.acking_consumer_full_async]
 * @consumer_tag: (nullable): the consumer tag, or %NULL for one the broker
 *   chooses
 * @arguments: (nullable): an `a{sv}` of consume arguments; a floating
 *   reference is sunk
 *
 * Creates a consumer that lives across reconnections: it is started on
 * every new connection after the topology, and
 * [method@Carehare.Consumer.next_delivery_async] goes on delivering; a
 * call waiting across a reconnection completes with the first delivery of
 * the new connection. It is a [class@Carehare.Consumer] like any other
 * (a relay the session feeds), with these differences:
 *
 * - its delivery tags are its own, unique over its whole life: an ack or
 *   nack of a message received on a connection that has since died is
 *   ignored (the broker delivers the message again, marked
 *   [property@Carehare.Delivery:redelivered]), never sent with a tag that
 *   names another message; messages received but not taken when the
 *   connection died are dropped for the same reason;
 * - the session holds it until it is closed or the session closes
 *   (`next_delivery` then fails with %CAREHARE_ERROR_CONNECTION_CLOSED) or
 *   fails (it fails with [property@Carehare.Session:last-error]);
 * - it ends, as a connection's consumer does, when the broker refuses to
 *   start it (no such queue, another exclusive consumer) or cancels it
 *   (its queue was deleted): %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER;
 * - [method@Carehare.Consumer.close_async] completes at once.
 *
 * May be called from any thread, and never waits: the consumer is made
 * on the calling thread and registered on the session's main context
 * (queued, in order with this thread's other calls, when another thread
 * runs it). Its own methods may be called from any thread too: its
 * `next_delivery` calls, acknowledgements and close are handed to the
 * session's context the same way, and its callbacks run on the caller's
 * thread-default main context.
 *
 * Returns: (transfer full): a consumer that lives across reconnections
 */
CarehareConsumer *
carehare_session_acking_consumer_full (CarehareSession      *self,
                                       const char           *queue,
                                       guint16               prefetch_count,
                                       CarehareConsumeFlags  flags,
                                       const char           *consumer_tag,
                                       GVariant             *arguments)
{
  SessionConsumer *sc;
  CarehareConsumer *relay;

  g_return_val_if_fail (CAREHARE_IS_SESSION (self), NULL);
  g_return_val_if_fail (queue != NULL, NULL);
  g_return_val_if_fail (arguments == NULL ||
                        g_variant_is_of_type (arguments, G_VARIANT_TYPE_VARDICT), NULL);

  sc = g_new0 (SessionConsumer, 1);
  sc->ref_count = 1;
  /* Set here: if the program closes the relay before the session's
   * context registers it, relay_close() clears it and it is never added. */
  sc->session = self;
  sc->queue = g_strdup (queue);
  sc->prefetch_count = prefetch_count;
  sc->flags = flags;
  sc->consumer_tag = g_strdup (consumer_tag);
  sc->arguments = arguments != NULL ? g_variant_ref_sink (arguments) : NULL;
  sc->relay = _carehare_consumer_new_relay (self->context, queue, &relay_vtable, sc);
  relay = g_object_ref (sc->relay);
  /* The call's reference on @sc, dropped once it ran. */
  _carehare_session_run_nowait (self, add_consumer_run, sc,
                                (GDestroyNotify) _carehare_session_consumer_unref);
  return relay;
}

/* acking_consumer_full() on the session's context. */
static void
add_consumer_run (CarehareSession *self,
                  gpointer         data)
{
  SessionConsumer *sc = data;

  if (sc->session == NULL)
    return;  /* closed by the program already */
  g_ptr_array_add (self->consumers, _carehare_session_consumer_ref (sc));
  if (self->closed)
    _carehare_session_consumer_end (sc, _carehare_session_closed_error ());
  else if (self->state == CAREHARE_SESSION_STATE_FAILED)
    _carehare_session_consumer_end (sc, _carehare_session_copy_last_error (self));
  else if (self->state == CAREHARE_SESSION_STATE_CONNECTED)
    live_consumer_start (self, sc);
}
