/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tracked publishes: carehare_connection_publish_tracked() returns an id at
 * once, and the outcomes come back as signals, the confirms of one read in
 * one ::publishes-confirmed emission (carehare_connection_take_confirmed()
 * inside it), each failure as ::publish-failed. No GTask, no callback and
 * no main-context wake-up per message: the publish path for bindings, where
 * a callback per message costs more than the publish itself.
 *
 * Outcomes are never announced inside the call that published (the caller
 * has not seen the id yet): confirms at the end of the read that brought
 * them, anything else (a failure while publishing, a close, what settles
 * while a handler runs a main loop of its own) from an idle on the
 * connection's context. While any tracked publish is pending the
 * connection holds a reference on itself, as a pending publish_async()'s
 * task does, so none is dropped unannounced.
 */
#include "carehare-connection-private.h"

#include "carehare-error.h"
#include "carehare-properties-private.h"

struct _CarehareTracked {
  gsize next_id;          /* atomic: ids are taken on the calling thread */
  guint pending;          /* started and not settled */
  gboolean holding;       /* the reference on the connection while pending */
  guint dropped;          /* how many times dispose dropped the pending ones */
  guint receiving;        /* inside the protocol's handling of received bytes */
  gboolean announcing;
  gboolean taken;         /* take_confirmed() was called in this emission */
  GArray *confirmed;      /* of guint64 */
  GArray *failed;         /* of Failure */
  GSource *idle;          /* owned, attached: announces what no read will */
};

typedef struct {
  guint64 id;
  GError *error;          /* owned */
} Failure;

typedef struct {
  CarehareConnection *self;  /* not owned: the tracked reference keeps it */
  guint64 id;
  guint dropped;             /* the tracked state's when it started */
} TrackedOp;

enum {
  SIGNAL_PUBLISHES_CONFIRMED,
  SIGNAL_PUBLISH_FAILED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void
failure_clear (gpointer data)
{
  g_clear_error (&((Failure *) data)->error);
}

CarehareTracked *
_carehare_tracked_new (void)
{
  CarehareTracked *tracked = g_new0 (CarehareTracked, 1);

  tracked->confirmed = g_array_new (FALSE, FALSE, sizeof (guint64));
  tracked->failed = g_array_new (FALSE, FALSE, sizeof (Failure));
  g_array_set_clear_func (tracked->failed, failure_clear);
  return tracked;
}

static void
destroy_idle (CarehareTracked *tracked)
{
  if (tracked->idle != NULL)
    {
      g_source_destroy (tracked->idle);
      g_clear_pointer (&tracked->idle, g_source_unref);
    }
}

void
_carehare_tracked_free (CarehareTracked *tracked)
{
  destroy_idle (tracked);
  g_array_unref (tracked->confirmed);
  g_array_unref (tracked->failed);
  g_free (tracked);
}

static void settled (CarehareConnection *self,
                     CarehareTracked    *tracked);

/* Announces what settled: the confirms in one emission, then each
 * failure. Handlers may publish again, close, or drop their reference:
 * the connection is held here, and the tracked reference goes last. What
 * settles while handlers run (a publish of theirs that failed at once) is
 * announced from the next iteration, so that a handler publishing again
 * what failed lets the main loop run in between, as with publish_async(). */
static void
announce (CarehareConnection *self)
{
  CarehareTracked *tracked = _carehare_connection_get_tracked (self);
  g_autoptr(CarehareConnection) keep G_GNUC_UNUSED = g_object_ref (self);
  guint n_failed;

  if (tracked->announcing)
    return;
  tracked->announcing = TRUE;
  destroy_idle (tracked);
  n_failed = tracked->failed->len;
  if (tracked->confirmed->len > 0)
    {
      guint n_confirmed = tracked->confirmed->len;

      tracked->taken = FALSE;
      g_signal_emit (self, signals[SIGNAL_PUBLISHES_CONFIRMED], 0);
      /* Not taken by a handler: nobody wants them. Those a main loop run
       * by a handler read after the take are the next emission's. */
      if (!tracked->taken)
        g_array_remove_range (tracked->confirmed, 0, MIN (n_confirmed, tracked->confirmed->len));
    }
  /* A handler's g_object_run_dispose() empties the failures. */
  for (; n_failed > 0 && tracked->failed->len > 0; n_failed--)
    {
      Failure failure = g_array_index (tracked->failed, Failure, 0);

      g_array_index (tracked->failed, Failure, 0).error = NULL;
      g_array_remove_index (tracked->failed, 0);
      g_signal_emit (self, signals[SIGNAL_PUBLISH_FAILED], 0, failure.id, failure.error);
      g_error_free (failure.error);
    }
  tracked->announcing = FALSE;
  if (tracked->confirmed->len > 0 || tracked->failed->len > 0)
    settled (self, tracked);
  else if (tracked->pending == 0 && tracked->holding)
    {
      tracked->holding = FALSE;
      g_object_unref (self);  /* keep still holds it */
    }
}

static gboolean
idle_cb (gpointer user_data)
{
  CarehareConnection *self = user_data;
  CarehareTracked *tracked = _carehare_connection_get_tracked (self);

  /* The context holds the source while it dispatches it. */
  g_clear_pointer (&tracked->idle, g_source_unref);
  announce (self);
  return G_SOURCE_REMOVE;
}

/* Something settled: a read announces it when it ends; anything else from
 * an idle (one per batch). */
static void
settled (CarehareConnection *self,
         CarehareTracked    *tracked)
{
  if (tracked->receiving > 0 || tracked->announcing || tracked->idle != NULL)
    return;
  tracked->idle = g_idle_source_new ();
  g_source_set_priority (tracked->idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (tracked->idle, idle_cb, self, NULL);
  g_source_set_static_name (tracked->idle, "[carehare] tracked publishes");
  g_source_attach (tracked->idle, _carehare_connection_get_context (self));
}

static void
record (CarehareConnection *self,
        guint64             id,
        const GError       *error)
{
  CarehareTracked *tracked = _carehare_connection_get_tracked (self);

  g_assert (tracked->pending > 0);
  tracked->pending--;
  if (error == NULL)
    g_array_append_val (tracked->confirmed, id);
  else
    {
      Failure failure = { id, g_error_copy (error) };

      g_array_append_val (tracked->failed, failure);
    }
  settled (self, tracked);
}

static void
tracked_done_cb (CarehareProtocolOp   *op,
                 const CarehareMethod *reply,
                 const GError         *error,
                 gpointer              user_data)
{
  TrackedOp *tracked_op = user_data;
  CarehareTracked *tracked = _carehare_connection_get_tracked (tracked_op->self);

  /* A dispose from inside the protocol's callbacks frees it once they
   * returned: the publishes it then fails were dropped already. */
  if (tracked_op->dropped == tracked->dropped)
    record (tracked_op->self, tracked_op->id, error);
  g_free (tracked_op);
}

static void
publish_run (CarehareConnection *self,
             gpointer            data)
{
  CarehareConnectionPublish *publish = data;
  CarehareTracked *tracked = _carehare_connection_get_tracked (self);
  CarehareProtocol *protocol = _carehare_connection_get_protocol (self);
  TrackedOp *op;

  if (!tracked->holding)
    {
      tracked->holding = TRUE;
      g_object_ref (self);
    }
  tracked->pending++;
  if (protocol == NULL)
    {
      g_autoptr(GError) error =
        g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                             "Connection closed: it was never opened, or was destroyed");

      record (self, publish->id, error);
      return;
    }
  op = g_new (TrackedOp, 1);
  op->self = self;
  op->id = publish->id;
  op->dropped = tracked->dropped;
  /* Writing may find the socket dead and complete older publishes (and
   * this one) before it returns: they are announced from the idle. */
  tracked->receiving++;
  carehare_protocol_publish (protocol, publish->exchange, publish->routing_key, publish->body,
                             &publish->basic, publish->mandatory, tracked_done_cb, op);
  tracked->receiving--;
  if (tracked->confirmed->len > 0 || tracked->failed->len > 0)
    settled (self, tracked);
  _carehare_connection_update (self);
}

/**
 * carehare_connection_publish_tracked:
 * @self: a connection
 * @exchange: the exchange to publish to ("" for the default exchange)
 * @routing_key: the routing key (the queue's name on the default exchange)
 * @body: the message body
 * @properties: (nullable): the message's properties
 * @flags: %CAREHARE_PUBLISH_FLAGS_MANDATORY to fail unroutable messages
 *
 * Publishes a message with publisher confirms, as
 * [method@Carehare.Connection.publish_async] does, and returns at once
 * with the publish's id; its outcome comes back as a signal instead of a
 * callback: [signal@Carehare.Connection::publishes-confirmed] once for all
 * the confirms of one read (take their ids with
 * [method@Carehare.Connection.take_confirmed] in the handler), and
 * [signal@Carehare.Connection::publish-failed] for each publish that
 * failed, with the errors publish_async() gives. Every tracked publish is
 * announced exactly once, never from inside this call.
 *
 * This is the fast path for language bindings (the Python override's
 * `publish()` and the GJS module's `publish_async()` promises use it) and
 * for programs that keep many publishes in flight: no #GTask, no callback
 * and no closure per message. It cannot be cancelled. The connection keeps
 * a reference on itself while any tracked publish is pending, so dropping
 * the program's last reference does not lose an announcement.
 *
 * May be called from any thread; the signals are emitted on the
 * connection's main context. From a thread that does not run that
 * context, the outcome may be announced (by the thread that does) before
 * this call has returned: a program that keeps something per publish, keyed
 * by id, must let the outcome come first.
 *
 * Returns: the publish's id: 1 for the connection's first tracked publish,
 *   then one more for each (0, which is no publish's, after a critical for
 *   an invalid argument)
 */
guint64
carehare_connection_publish_tracked (CarehareConnection   *self,
                                     const char           *exchange,
                                     const char           *routing_key,
                                     GBytes               *body,
                                     CarehareProperties   *properties,
                                     CareharePublishFlags  flags)
{
  CarehareConnectionPublish publish = { exchange, routing_key, body, .properties = properties };
  CarehareTracked *tracked;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  g_return_val_if_fail (exchange != NULL, 0);
  g_return_val_if_fail (routing_key != NULL, 0);
  g_return_val_if_fail (body != NULL, 0);
  g_return_val_if_fail (properties == NULL || CAREHARE_IS_PROPERTIES (properties), 0);

  tracked = _carehare_connection_get_tracked (self);
  publish.id = (guint64) g_atomic_pointer_add (&tracked->next_id, 1) + 1;
  carehare_properties_to_basic (properties, &publish.basic);
  publish.mandatory = (flags & CAREHARE_PUBLISH_FLAGS_MANDATORY) != 0;
  _carehare_connection_run_nowait (self, publish_run, &publish,
                                   _carehare_connection_publish_copy,
                                   _carehare_connection_publish_free);
  return publish.id;
}

/**
 * carehare_connection_take_confirmed:
 * @self: a connection
 * @n_ids: (out): the number of ids returned
 *
 * Takes the ids of the tracked publishes
 * ([method@Carehare.Connection.publish_tracked]) that the broker confirmed
 * and that were not taken yet. Call it from a handler of
 * [signal@Carehare.Connection::publishes-confirmed]: ids not taken by
 * the end of that emission are forgotten.
 *
 * Returns: (array length=n_ids) (transfer full) (nullable): the ids, in
 *   the order of their confirms, or %NULL when there are none
 */
guint64 *
carehare_connection_take_confirmed (CarehareConnection *self,
                                    gsize              *n_ids)
{
  CarehareTracked *tracked;
  guint len;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (n_ids != NULL, NULL);

  tracked = _carehare_connection_get_tracked (self);
  len = tracked->confirmed->len;
  *n_ids = len;
  if (len == 0)
    return NULL;
  tracked->taken = TRUE;
  return g_array_steal (tracked->confirmed, NULL);
}

void
_carehare_connection_tracked_enter (CarehareConnection *self)
{
  _carehare_connection_get_tracked (self)->receiving++;
}

gboolean
_carehare_connection_tracked_leave (CarehareConnection *self,
                                    gboolean            more)
{
  CarehareTracked *tracked = _carehare_connection_get_tracked (self);

  if (--tracked->receiving == 0 && !tracked->announcing &&
      (tracked->confirmed->len > 0 || tracked->failed->len > 0))
    announce (self);
  return more;
}

void
_carehare_connection_tracked_drop (CarehareConnection *self)
{
  CarehareTracked *tracked = _carehare_connection_get_tracked (self);

  destroy_idle (tracked);
  g_array_set_size (tracked->confirmed, 0);
  g_array_set_size (tracked->failed, 0);
  tracked->pending = 0;
  tracked->dropped++;
  /* Only g_object_run_dispose() gets here while publishes are pending; it
   * holds the connection until dispose is over. */
  if (tracked->holding)
    {
      tracked->holding = FALSE;
      g_object_unref (self);
    }
}

void
_carehare_connection_tracked_class_init (GObjectClass *klass)
{
  /**
   * CarehareConnection::publishes-confirmed:
   * @self: the connection
   *
   * Emitted when the broker confirmed tracked publishes
   * ([method@Carehare.Connection.publish_tracked]): once for all the
   * confirms of one read. Take their ids with
   * [method@Carehare.Connection.take_confirmed].
   *
   * Emitted on the connection's main context.
   */
  signals[SIGNAL_PUBLISHES_CONFIRMED] =
    g_signal_new ("publishes-confirmed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 0);

  /**
   * CarehareConnection::publish-failed:
   * @self: the connection
   * @id: the tracked publish's id
   * @error: why it failed: the errors of
   *   [method@Carehare.Connection.publish_async]
   *
   * Emitted once for each tracked publish
   * ([method@Carehare.Connection.publish_tracked]) that failed: the broker
   * refused it (%CAREHARE_ERROR_SERVER_SENT_NACK), returned it
   * (%CAREHARE_ERROR_UNROUTABLE), or its channel or the connection closed
   * before the confirm.
   *
   * Emitted on the connection's main context.
   */
  signals[SIGNAL_PUBLISH_FAILED] =
    g_signal_new ("publish-failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_ERROR);
}
