/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CarehareSession: a connection that recovers by itself.
 *
 * Built on the public CarehareConnection and CarehareConsumer API; the
 * only private hooks are the relay consumer (carehare-consumer-private.h:
 * a CarehareConsumer fed by the session, so that a session consumer is a
 * CarehareConsumer to the program and to the bindings), renumbering a
 * delivery, and the URI parser (to validate the URIs and put a new
 * password in them).
 *
 * The life of a session, one connection at a time:
 *
 *   STOPPED --start--> CONNECTING --(connected, topology applied,
 *   consumers started)--> CONNECTED --(connection lost)--> WAITING
 *   --(backoff timer, network available)--> CONNECTING ...
 *
 * A failed attempt (connect, topology or consumer start) goes to WAITING
 * too, unless its error is permanent: then FAILED, for good. An Attempt is
 * one connection being restored; once restored it becomes the session's
 * connection. Every callback of an attempt checks that its attempt is
 * still the session's current one, so that a superseded attempt's late
 * callbacks do nothing.
 *
 * Consumer tags: a session consumer hands out tags of its own. Its tags
 * for one connection are `offset + broker tag`, where `offset` is the
 * highest tag it handed out before that connection; so a tag maps back to
 * (connection, broker tag), a tag <= offset belongs to a dead connection
 * and its settle is dropped, and no table grows with the messages.
 */
#include "carehare-session-private.h"

#include "carehare-consumer-private.h"
#include "carehare-delivery-private.h"
#include "carehare-enum-types.h"
#include "carehare-error.h"
#include "carehare-uri.h"

/**
 * CarehareSession:
 *
 * A connection that a long-running service can leave running: it
 * reconnects by itself, declares its topology again on every new
 * connection and keeps its consumers delivering.
 *
 * Create one with [ctor@Carehare.Session.new], record the queues,
 * exchanges and bindings the program needs with
 * [method@Carehare.Session.declare_queue] and its siblings (they do no
 * I/O), create consumers with [method@Carehare.Session.acking_consumer],
 * then call [method@Carehare.Session.start]. Publish with
 * [method@Carehare.Session.publish_async]: while the session is
 * reconnecting it waits.
 *
 * After a connection is lost, the session waits (state
 * %CAREHARE_SESSION_STATE_WAITING) and tries the URIs again from the
 * first. The delays between attempts are drawn uniformly between
 * [property@Carehare.Session:reconnect-delay-min] and a cap that doubles
 * from the minimum up to [property@Carehare.Session:reconnect-delay-max];
 * the cap starts over after a connection that stayed up for at least the
 * maximum. While the [property@Carehare.Session:network-monitor] says the
 * network is unavailable, no attempt is made.
 *
 * An attempt that fails with an error [func@Carehare.Error.is_transient]
 * calls permanent stops the session in %CAREHARE_SESSION_STATE_FAILED: a
 * login the broker refuses (403 ACCESS_REFUSED, 530 NOT_ALLOWED for the
 * vhost), an invalid URI, a TLS certificate either side rejects, or a
 * topology declaration the broker refuses (406 PRECONDITION_FAILED for
 * conflicting arguments, 404 NOT_FOUND for a binding to a missing
 * exchange...). Transient errors are retried: a refused or reset TCP
 * connection, a heartbeat timeout, 320 CONNECTION_FORCED, a node shutting
 * down, and 405 RESOURCE_LOCKED (the broker still holds the previous
 * connection's exclusive queue); so are the network's own errors that
 * function does not list (a host name that does not resolve now, a TLS
 * handshake cut short), since the network may come back. A connection
 * that was up and is lost is always followed by a new attempt.
 *
 * [signal@Carehare.Session::connected] and
 * [signal@Carehare.Session::disconnected] pair up: `disconnected` is
 * emitted only for a connection that was `connected`.
 *
 * A session belongs to the main context that was thread-default when it
 * was created: its connections run there, and its signals and property
 * notifications are emitted there. Every method may be called from any
 * thread, as a [class@Carehare.Connection]'s may: a call from a thread
 * that cannot hold that context is queued for the thread running it and
 * returns at once (none waits), a callback runs on the caller's
 * thread-default main context, and getters read a snapshot. See the
 * "Threads" guide (`docs/threads.md`).
 *
 * ```c
 * const char *uris[] = { "amqp://rabbit1", "amqp://rabbit2", NULL };
 * g_autoptr(CarehareSession) session = carehare_session_new (uris);
 * CarehareConsumer *consumer;
 *
 * carehare_session_declare_queue (session, "jobs", CAREHARE_QUEUE_FLAGS_DURABLE, NULL);
 * consumer = carehare_session_acking_consumer (session, "jobs", 10);
 * carehare_consumer_next_delivery_async (consumer, NULL, next_cb, NULL);
 * carehare_session_start (session);
 * ```
 */

#define DEFAULT_DELAY_MIN_MS 100
#define DEFAULT_DELAY_MAX_MS 30000

enum {
  PROP_0,
  PROP_URIS,
  PROP_STATE,
  PROP_CONNECTION,
  PROP_LAST_ERROR,
  PROP_RECONNECT_DELAY_MIN,
  PROP_RECONNECT_DELAY_MAX,
  PROP_CONNECT_TIMEOUT,
  PROP_TLS_DATABASE,
  PROP_TLS_CERTIFICATE,
  PROP_NETWORK_MONITOR,
  N_PROPS
};

enum {
  SIGNAL_CONNECTED,
  SIGNAL_DISCONNECTED,
  N_SIGNALS
};

static GParamSpec *obj_props[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CarehareSession, carehare_session, G_TYPE_OBJECT)

static void attempt_now (CarehareSession *self);
static void connection_closed_cb (CarehareConnection *connection, const GError *error,
                                  gpointer user_data);

/* ---- errors -------------------------------------------------------------- */

/* Whether retrying cannot help: the library's classifier,
 * carehare_error_is_transient(), so that a session and a program that
 * reconnects by itself agree (a 403 login, a 406 declaration, a bad
 * certificate or URI stop it; 320, 405, a reset or a refused TCP
 * connection do not). Except that a session is meant to run for months:
 * the network's own errors, which it does not list (a name that does not
 * resolve now, a route or a socket that fails in a way GIO has no code
 * for, a TLS handshake cut short), are retried, as the network may come
 * back. */
static gboolean
error_is_permanent (const GError *error)
{
  if (carehare_error_is_transient (error))
    return FALSE;
  if (error->domain == G_RESOLVER_ERROR)
    return FALSE;
  if (error->domain == G_IO_ERROR)
    return error->code == G_IO_ERROR_CANCELLED || error->code == G_IO_ERROR_INVALID_ARGUMENT;
  if (error->domain == G_TLS_ERROR)
    return error->code != G_TLS_ERROR_EOF;
  return TRUE;
}

/* Whether @error ended the connection rather than one operation. */
gboolean
_carehare_session_error_is_connection_lost (const GError *error)
{
  if (error->domain == CAREHARE_ERROR)
    return error->code == CAREHARE_ERROR_CONNECTION_CLOSED ||
           error->code == CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER ||
           error->code == CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR ||
           error->code == CAREHARE_ERROR_BAD_BYTES_FROM_SERVER;
  return error->domain == G_IO_ERROR && error->code != G_IO_ERROR_CANCELLED;
}

GError *
_carehare_session_closed_error (void)
{
  return g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                              "Session closed");
}

/* ---- calls from any thread ----------------------------------------------- */

/* The mailbox calls our functions through this, as their own type. */
static void
session_invoke (GCallback func,
                gpointer  owner,
                gpointer  data)
{
  ((CarehareSessionRunFunc) func) (owner, data);
}

void
_carehare_session_run_nowait (CarehareSession        *self,
                              CarehareSessionRunFunc  func,
                              gpointer                data,
                              GDestroyNotify          destroy)
{
  if (_carehare_mailbox_run_here (self->mailbox, self->context, session_invoke, self,
                                  (GCallback) func, data))
    {
      if (destroy != NULL)
        destroy (data);
      return;
    }
  _carehare_mailbox_run_later (self->mailbox, session_invoke, self, (GCallback) func, data,
                               destroy);
}

void
_carehare_session_run_later (CarehareSession        *self,
                             CarehareSessionRunFunc  func,
                             gpointer                data,
                             GDestroyNotify          destroy)
{
  _carehare_mailbox_run_later (self->mailbox, session_invoke, self, (GCallback) func, data,
                               destroy);
}

/* ---- small helpers ------------------------------------------------------- */

static void
set_state (CarehareSession      *self,
           CarehareSessionState  state)
{
  if (self->state == state)
    return;
  g_debug ("session %p: state %d -> %d", self, self->state, state);
  g_atomic_int_set ((gint *) &self->state, (gint) state);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_STATE]);
}

/* Takes @connection (nullable); returns the previous one (transfer full). */
static CarehareConnection *
swap_connection (CarehareSession    *self,
                 CarehareConnection *connection)
{
  CarehareConnection *previous;

  g_mutex_lock (&self->snapshot_lock);
  previous = self->connection;
  self->connection = connection;
  g_mutex_unlock (&self->snapshot_lock);
  return previous;
}

/* Takes @error. */
static void
set_last_error (CarehareSession *self,
                GError          *error)
{
  g_mutex_lock (&self->snapshot_lock);
  g_clear_error (&self->last_error);
  self->last_error = error;
  g_mutex_unlock (&self->snapshot_lock);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_LAST_ERROR]);
}

GError *
_carehare_session_copy_last_error (CarehareSession *self)
{
  if (self->last_error != NULL)
    return g_error_copy (self->last_error);
  return g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_FAILED, "Session failed");
}

/* The URIs to connect with: the program's, with the password of
 * carehare_session_set_password() in each. */
static char **
effective_uris (CarehareSession *self)
{
  guint n = g_strv_length (self->uris);
  char **uris = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    {
      if (self->password != NULL)
        uris[i] = carehare_uri_with_password (self->uris[i], self->password);
      /* An invalid URI is left as it is: the attempt reports it. */
      if (uris[i] == NULL)
        uris[i] = g_strdup (self->uris[i]);
    }
  return uris;
}

static gboolean
host_is_loopback (const char *host)
{
  g_autoptr(GInetAddress) address = NULL;

  if (g_ascii_strcasecmp (host, "localhost") == 0)
    return TRUE;
  address = g_inet_address_new_from_string (host);
  return address != NULL && g_inet_address_get_is_loopback (address);
}

/* Whether an attempt may start, when the monitor says @monitor_available.
 * The system's monitor is ignored when every URI is on this machine, which
 * needs no network (a container without a default route says
 * "unavailable"); one the program set is always obeyed. */
static gboolean
network_usable (CarehareSession *self,
                gboolean         monitor_available)
{
  if (self->monitor == NULL || monitor_available)
    return TRUE;
  if (!self->monitor_is_default)
    return FALSE;
  for (guint i = 0; self->uris[i] != NULL; i++)
    {
      g_auto(CarehareUriSettings) settings = { 0 };

      if (!carehare_uri_parse (self->uris[i], &settings, NULL) || !host_is_loopback (settings.host))
        return FALSE;
    }
  return TRUE;
}

/* Whether an attempt may start now. */
static gboolean
network_available (CarehareSession *self)
{
  return network_usable (self, self->monitor == NULL ||
                               g_network_monitor_get_network_available (self->monitor));
}

/* ---- attempts ------------------------------------------------------------ */

Attempt *
_carehare_session_attempt_ref (Attempt *attempt)
{
  attempt->ref_count++;
  return attempt;
}

void
_carehare_session_attempt_unref (Attempt *attempt)
{
  if (--attempt->ref_count > 0)
    return;
  g_assert (attempt->closed_id == 0);
  g_clear_object (&attempt->connection);
  g_clear_object (&attempt->cancellable);
  g_clear_object (&attempt->session);
  g_free (attempt);
}

/* Whether @attempt is still the one the session waits for. */
gboolean
_carehare_session_attempt_is_current (Attempt *attempt)
{
  return attempt->session->attempt == attempt;
}

/* Takes the attempt out of the session; its connection, if any, is closed. */
static void
attempt_abandon (CarehareSession *self)
{
  Attempt *attempt = g_steal_pointer (&self->attempt);

  if (attempt == NULL)
    return;
  g_cancellable_cancel (attempt->cancellable);
  for (guint i = 0; i < self->consumers->len; i++)
    _carehare_session_consumer_drop_inner (g_ptr_array_index (self->consumers, i), FALSE);
  if (attempt->connection != NULL)
    {
      g_clear_signal_handler (&attempt->closed_id, attempt->connection);
      carehare_connection_close_async (attempt->connection, NULL, NULL, NULL);
    }
  _carehare_session_attempt_unref (attempt);
}

/* Ends every session consumer with a copy of @error (taken). */
static void
end_consumers (CarehareSession *self,
               GError          *error)
{
  while (self->consumers->len > 0)
    _carehare_session_consumer_end (g_ptr_array_index (self->consumers, 0), g_error_copy (error));
  g_error_free (error);
}

static void
go_failed (CarehareSession *self)
{
  g_debug ("session %p: failed for good: %s", self, self->last_error->message);
  set_state (self, CAREHARE_SESSION_STATE_FAILED);
  _carehare_session_fail_publishes (self, _carehare_session_copy_last_error (self));
  end_consumers (self, _carehare_session_copy_last_error (self));
}

static gboolean
timer_cb (gpointer user_data)
{
  CarehareSession *self = user_data;

  g_clear_pointer (&self->timer, g_source_unref);
  attempt_now (self);
  return G_SOURCE_REMOVE;
}

/* The next wait, in ms: the cap doubles from the minimum (or starts at
 * it, after a reset) up to the maximum, and the wait is drawn uniformly
 * in [minimum, cap]. Both bounds are at most G_MAXINT32 and the minimum
 * at least 1, so cap - minimum + 1 fits a gint32. */
guint
_carehare_session_next_delay (CarehareSession *self)
{
  if (self->cap == 0)
    self->cap = self->delay_min;
  else
    self->cap = MIN (MAX (self->cap, 1) * 2, self->delay_max);
  self->cap = MAX (self->cap, self->delay_min);
  if (self->cap == self->delay_min)
    return self->delay_min;
  return self->delay_min +
         (guint) g_random_int_range (0, (gint32) (self->cap - self->delay_min + 1));
}

/* After a failed attempt or a lost connection: wait, then try again. */
static void
schedule_retry (CarehareSession *self)
{
  guint delay = _carehare_session_next_delay (self);

  g_debug ("session %p: next attempt in %u ms", self, delay);
  set_state (self, CAREHARE_SESSION_STATE_WAITING);
  g_assert (self->timer == NULL);
  self->timer = g_timeout_source_new (delay);
  g_source_set_callback (self->timer, timer_cb, self, NULL);
  g_source_set_static_name (self->timer, "[carehare] session backoff");
  g_source_attach (self->timer, self->context);
}

/* Takes @error: why the attempt failed (connecting, declaring the
 * topology or starting consumers). */
void
_carehare_session_attempt_failed (Attempt *attempt,
                                  GError  *error)
{
  CarehareSession *self = attempt->session;

  g_debug ("session %p: attempt failed: %s", self, error->message);
  attempt_abandon (self);
  set_last_error (self, error);
  if (error_is_permanent (error))
    go_failed (self);
  else
    schedule_retry (self);
}

/* The attempt's connection is restored: it is the session's now. */
void
_carehare_session_go_connected (Attempt *attempt)
{
  CarehareSession *self = attempt->session;
  g_autoptr(CarehareSession) keep = NULL;

  /* Handlers may drop the program's last reference. */
  keep = g_object_ref (self);
  g_clear_signal_handler (&attempt->closed_id, attempt->connection);
  self->attempt = NULL;
  g_assert (swap_connection (self, g_steal_pointer (&attempt->connection)) == NULL);
  _carehare_session_attempt_unref (attempt);

  self->closed_id = g_signal_connect_object (self->connection, "closed",
                                             G_CALLBACK (connection_closed_cb), self, 0);
  self->connected_at = g_get_monotonic_time ();
  set_state (self, CAREHARE_SESSION_STATE_CONNECTED);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_CONNECTION]);
  g_signal_emit (self, signals[SIGNAL_CONNECTED], 0, self->connection);

  /* A handler may have closed the session, or the connection dropped. */
  if (self->state != CAREHARE_SESSION_STATE_CONNECTED)
    return;
  for (guint i = 0; i < self->consumers->len; i++)
    {
      SessionConsumer *sc = g_ptr_array_index (self->consumers, i);

      if (sc->inner != NULL)
        _carehare_session_consumer_pump (sc);
    }
  _carehare_session_send_waiting_publishes (self);
}

/* The attempt's connection closed while its topology was being restored:
 * a failed attempt (no ::disconnected, it never was connected). */
static void
attempt_closed_cb (CarehareConnection *connection,
                   const GError       *error,
                   gpointer            user_data)
{
  Attempt *attempt = user_data;

  g_clear_signal_handler (&attempt->closed_id, connection);
  if (!_carehare_session_attempt_is_current (attempt))
    return;
  _carehare_session_attempt_ref (attempt);
  _carehare_session_attempt_failed (attempt,
                                    error != NULL
                                      ? g_error_copy (error)
                                      : g_error_new_literal (CAREHARE_ERROR,
                                                             CAREHARE_ERROR_CONNECTION_CLOSED,
                                                             "Connection closed"));
  _carehare_session_attempt_unref (attempt);
}

static void
connection_closed_cb (CarehareConnection *connection,
                      const GError       *error,
                      gpointer            user_data)
{
  CarehareSession *self = user_data;
  g_autoptr(CarehareSession) keep = NULL;
  g_autoptr(CarehareConnection) lost = NULL;
  GError *cause;

  if (connection != self->connection)
    return;
  keep = g_object_ref (self);
  g_clear_signal_handler (&self->closed_id, connection);
  lost = swap_connection (self, NULL);
  cause = error != NULL ? g_error_copy (error)
                        : g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED,
                                               "Connection closed");
  g_debug ("session %p: connection lost: %s", self, cause->message);

  for (guint i = 0; i < self->consumers->len; i++)
    _carehare_session_consumer_drop_inner (g_ptr_array_index (self->consumers, i), FALSE);
  /* A connection that stayed up long enough starts the backoff over. */
  if (g_get_monotonic_time () - self->connected_at >= (gint64) self->delay_max * 1000)
    self->cap = 0;

  set_last_error (self, cause);
  set_state (self, CAREHARE_SESSION_STATE_WAITING);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_CONNECTION]);
  g_signal_emit (self, signals[SIGNAL_DISCONNECTED], 0, self->last_error);
  if (self->closed || self->state != CAREHARE_SESSION_STATE_WAITING || self->timer != NULL ||
      self->attempt != NULL)
    return;
  schedule_retry (self);
}

static void
connect_done_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Attempt *attempt = user_data;
  g_autoptr(GObject) object = NULL;
  g_autoptr(GError) error = NULL;

  object = g_async_initable_new_finish (G_ASYNC_INITABLE (source), result, &error);
  if (!_carehare_session_attempt_is_current (attempt))
    {
      if (object != NULL)
        carehare_connection_close_async (CAREHARE_CONNECTION (object), NULL, NULL, NULL);
      _carehare_session_attempt_unref (attempt);
      return;
    }
  if (object == NULL)
    {
      _carehare_session_attempt_failed (attempt, g_steal_pointer (&error));
      _carehare_session_attempt_unref (attempt);
      return;
    }
  attempt->connection = CAREHARE_CONNECTION (g_steal_pointer (&object));
  attempt->closed_id = g_signal_connect (attempt->connection, "closed",
                                         G_CALLBACK (attempt_closed_cb), attempt);
  _carehare_session_run_step (attempt);
  _carehare_session_attempt_unref (attempt);
}

static void
attempt_now (CarehareSession *self)
{
  Attempt *attempt;
  char **uris;

  if (self->closed || self->state == CAREHARE_SESSION_STATE_FAILED)
    return;
  if (!network_available (self))
    {
      g_debug ("session %p: waiting for the network", self);
      self->waiting_for_network = TRUE;
      self->network_lost = TRUE;
      set_state (self, CAREHARE_SESSION_STATE_WAITING);
      return;
    }
  self->waiting_for_network = FALSE;
  g_assert (self->attempt == NULL && self->connection == NULL);

  attempt = g_new0 (Attempt, 1);
  attempt->ref_count = 1;
  attempt->session = g_object_ref (self);
  attempt->cancellable = g_cancellable_new ();
  self->attempt = attempt;
  set_state (self, CAREHARE_SESSION_STATE_CONNECTING);

  uris = effective_uris (self);
  g_async_initable_new_async (CAREHARE_TYPE_CONNECTION, G_PRIORITY_DEFAULT, attempt->cancellable,
                              connect_done_cb, _carehare_session_attempt_ref (attempt),
                              "uris", uris,
                              "connect-timeout", self->connect_timeout,
                              "tls-database", self->tls_database,
                              "tls-certificate", self->tls_certificate,
                              NULL);
  carehare_uri_secret_strv_free (uris);
}

static void
network_changed_run (CarehareSession *self,
                     gpointer         data)
{
  /* The report's own availability: a report queued from the monitor's
   * thread may run after the network changed again, and a loss followed
   * by a return must still be seen as both. */
  if (!network_usable (self, GPOINTER_TO_UINT (data)))
    {
      self->network_lost = TRUE;
      return;
    }
  /* A monitor also reports changes that leave the network available (a
   * route, an interface): those are not the network coming back, and the
   * backoff stands. */
  if (!self->network_lost)
    return;
  self->network_lost = FALSE;
  if (!self->started || self->closed || self->state != CAREHARE_SESSION_STATE_WAITING)
    return;
  /* Back: the next attempt starts at once. */
  if (self->timer != NULL)
    {
      g_source_destroy (self->timer);
      g_clear_pointer (&self->timer, g_source_unref);
    }
  else if (!self->waiting_for_network)
    return;
  g_debug ("session %p: the network is back", self);
  attempt_now (self);
}

static void
network_changed_cb (GNetworkMonitor *monitor,
                    gboolean         available,
                    gpointer         user_data)
{
  /* The monitor emits on the context it was made on, which may be
   * another thread's. */
  _carehare_session_run_nowait (user_data, network_changed_run, GUINT_TO_POINTER (available),
                                NULL);
}

/* ---- GObject ------------------------------------------------------------- */

static gboolean
end_relay_idle_cb (gpointer user_data)
{
  _carehare_consumer_relay_end (user_data, _carehare_session_closed_error ());
  return G_SOURCE_REMOVE;
}

static void
dispose_run (CarehareSession *self,
             gpointer         data)
{
  g_autoptr(CarehareConnection) connection = NULL;

  /* Waiting publishes hold the session (GTask's rule) and an attempt
   * holds it too: none is left when the last reference goes. */
  self->closed = TRUE;
  if (self->timer != NULL)
    {
      g_source_destroy (self->timer);
      g_clear_pointer (&self->timer, g_source_unref);
    }
  attempt_abandon (self);
  connection = swap_connection (self, NULL);
  if (connection != NULL)
    {
      g_clear_signal_handler (&self->closed_id, connection);
      carehare_connection_close_async (connection, NULL, NULL, NULL);
    }
  /* Consumers still held by the program end, from an idle: never inside
   * dispose. */
  while (self->consumers->len > 0)
    {
      SessionConsumer *sc = _carehare_session_consumer_ref (g_ptr_array_index (self->consumers, 0));
      g_autoptr(GSource) idle = g_idle_source_new ();

      _carehare_consumer_relay_detach (sc->relay);
      g_source_set_callback (idle, end_relay_idle_cb, g_object_ref (sc->relay), g_object_unref);
      g_source_set_static_name (idle, "[carehare] session disposed");
      g_source_attach (idle, self->context);
      _carehare_session_consumer_remove (sc);
      _carehare_session_consumer_unref (sc);
    }
  if (self->monitor != NULL)
    {
      g_clear_signal_handler (&self->monitor_id, self->monitor);
      g_clear_object (&self->monitor);
    }
}

static void
carehare_session_dispose (GObject *object)
{
  CarehareSession *self = CAREHARE_SESSION (object);

  /* The last reference may go in any thread: disposed on the session's
   * context, by the thread running it (resurrected until then: waiting
   * for it here could deadlock a thread that thread joins). */
  if (_carehare_mailbox_dispose_elsewhere (self->mailbox, self->context, object))
    return;
  _carehare_session_run_nowait (self, dispose_run, NULL, NULL);

  G_OBJECT_CLASS (carehare_session_parent_class)->dispose (object);
}

static void
carehare_session_finalize (GObject *object)
{
  CarehareSession *self = CAREHARE_SESSION (object);

  g_assert (g_queue_is_empty (&self->publishes));
  g_assert (g_queue_is_empty (&self->sent));
  g_assert (self->timer == NULL);
  g_clear_pointer (&self->uris, carehare_uri_secret_strv_free);
  g_clear_pointer (&self->password, carehare_uri_secret_free);
  g_clear_object (&self->tls_database);
  g_clear_object (&self->tls_certificate);
  g_ptr_array_unref (self->topology);
  g_ptr_array_unref (self->consumers);
  g_clear_error (&self->last_error);
  _carehare_mailbox_free (self->mailbox);
  g_mutex_clear (&self->snapshot_lock);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (carehare_session_parent_class)->finalize (object);
}

static void
carehare_session_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  CarehareSession *self = CAREHARE_SESSION (object);

  switch (prop_id)
    {
    case PROP_STATE:
      g_value_set_enum (value, g_atomic_int_get ((gint *) &self->state));
      break;
    case PROP_CONNECTION:
      /* A reference (or a copy) taken under the lock: valid in any thread. */
      g_mutex_lock (&self->snapshot_lock);
      g_value_set_object (value, self->connection);
      g_mutex_unlock (&self->snapshot_lock);
      break;
    case PROP_LAST_ERROR:
      g_mutex_lock (&self->snapshot_lock);
      g_value_set_boxed (value, self->last_error);
      g_mutex_unlock (&self->snapshot_lock);
      break;
    case PROP_RECONNECT_DELAY_MIN:
      g_value_set_uint (value, (guint) g_atomic_int_get (&self->delay_min));
      break;
    case PROP_RECONNECT_DELAY_MAX:
      g_value_set_uint (value, (guint) g_atomic_int_get (&self->delay_max));
      break;
    case PROP_CONNECT_TIMEOUT:
      g_value_set_uint (value, self->connect_timeout);
      break;
    case PROP_TLS_DATABASE:
      g_value_set_object (value, self->tls_database);
      break;
    case PROP_TLS_CERTIFICATE:
      g_value_set_object (value, self->tls_certificate);
      break;
    case PROP_NETWORK_MONITOR:
      g_value_set_object (value, self->monitor);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_session_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  CarehareSession *self = CAREHARE_SESSION (object);

  switch (prop_id)
    {
    case PROP_URIS:
      g_clear_pointer (&self->uris, carehare_uri_secret_strv_free);
      self->uris = g_value_dup_boxed (value);
      if (self->uris == NULL)
        self->uris = g_new0 (char *, 1);
      break;
    case PROP_RECONNECT_DELAY_MIN:
      carehare_session_set_reconnect_delay_min (self, g_value_get_uint (value));
      break;
    case PROP_RECONNECT_DELAY_MAX:
      carehare_session_set_reconnect_delay_max (self, g_value_get_uint (value));
      break;
    case PROP_CONNECT_TIMEOUT:
      self->connect_timeout = g_value_get_uint (value);
      break;
    case PROP_TLS_DATABASE:
      g_set_object (&self->tls_database, g_value_get_object (value));
      break;
    case PROP_TLS_CERTIFICATE:
      g_set_object (&self->tls_certificate, g_value_get_object (value));
      break;
    case PROP_NETWORK_MONITOR:
      self->monitor = g_value_dup_object (value);
      self->monitor_is_default = self->monitor == NULL;
      if (self->monitor == NULL)
        self->monitor = g_object_ref (g_network_monitor_get_default ());
      self->monitor_id = g_signal_connect (self->monitor, "network-changed",
                                           G_CALLBACK (network_changed_cb), self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
carehare_session_class_init (CarehareSessionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = carehare_session_dispose;
  object_class->finalize = carehare_session_finalize;
  object_class->get_property = carehare_session_get_property;
  object_class->set_property = carehare_session_set_property;

  /**
   * CarehareSession:uris:
   *
   * The broker URIs, tried in order on every attempt, as
   * [func@Carehare.Connection.new_for_uris_async] takes them. Write-only:
   * they may hold a password.
   */
  obj_props[PROP_URIS] =
    g_param_spec_boxed ("uris", NULL, NULL, G_TYPE_STRV,
                        G_PARAM_WRITABLE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:state:
   *
   * Where the session is: see [enum@Carehare.SessionState].
   */
  obj_props[PROP_STATE] =
    g_param_spec_enum ("state", NULL, NULL, CAREHARE_TYPE_SESSION_STATE,
                       CAREHARE_SESSION_STATE_STOPPED,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:connection:
   *
   * The current connection, once its topology and consumers are restored,
   * for what the session does not wrap; %NULL while there is none. Do not
   * close it: the session would take that for a lost connection. Read
   * from any thread with g_object_get(), it is a reference of the caller's.
   */
  obj_props[PROP_CONNECTION] =
    g_param_spec_object ("connection", NULL, NULL, CAREHARE_TYPE_CONNECTION,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:last-error:
   *
   * The error that ended the last connection or attempt, %NULL before any.
   * Read from any thread with g_object_get(), it is a copy of the caller's.
   */
  obj_props[PROP_LAST_ERROR] =
    g_param_spec_boxed ("last-error", NULL, NULL, G_TYPE_ERROR,
                        G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:reconnect-delay-min:
   *
   * The shortest wait between attempts, in milliseconds (100 by default).
   */
  obj_props[PROP_RECONNECT_DELAY_MIN] =
    g_param_spec_uint ("reconnect-delay-min", NULL, NULL, 1, G_MAXINT32, DEFAULT_DELAY_MIN_MS,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:reconnect-delay-max:
   *
   * The longest wait between attempts, in milliseconds (30,000 by
   * default); a connection that stayed up this long starts the backoff
   * over.
   */
  obj_props[PROP_RECONNECT_DELAY_MAX] =
    g_param_spec_uint ("reconnect-delay-max", NULL, NULL, 1, G_MAXINT32, DEFAULT_DELAY_MAX_MS,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:connect-timeout:
   *
   * [property@Carehare.Connection:connect-timeout] of every connection, in
   * milliseconds; 0 (the default) takes the URI's `connection_timeout`, or
   * 30 seconds.
   */
  obj_props[PROP_CONNECT_TIMEOUT] =
    g_param_spec_uint ("connect-timeout", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:tls-database:
   *
   * [property@Carehare.Connection:tls-database] of every connection.
   */
  obj_props[PROP_TLS_DATABASE] =
    g_param_spec_object ("tls-database", NULL, NULL, G_TYPE_TLS_DATABASE,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:tls-certificate:
   *
   * [property@Carehare.Connection:tls-certificate] of every connection.
   */
  obj_props[PROP_TLS_CERTIFICATE] =
    g_param_spec_object ("tls-certificate", NULL, NULL, G_TYPE_TLS_CERTIFICATE,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);

  /**
   * CarehareSession:network-monitor:
   *
   * What tells the session whether the network is available; the
   * system's (g_network_monitor_get_default()) unless set at construction.
   * While it says the network is unavailable no attempt is made; when it
   * comes back, the next attempt starts at once (a change it reports while
   * the network stays available does not cut a wait short). The system's
   * monitor is not consulted when every URI names this machine
   * (`localhost`, a loopback address), which needs no network.
   */
  obj_props[PROP_NETWORK_MONITOR] =
    g_param_spec_object ("network-monitor", NULL, NULL, G_TYPE_NETWORK_MONITOR,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, obj_props);

  /**
   * CarehareSession::connected:
   * @self: the session
   * @connection: the new connection
   *
   * Emitted when a connection is up and the topology and consumers are
   * restored on it. Emitted on the session's main context (the
   * thread-default one when the session was created), whichever thread
   * made the call that led to it; there,
   * [method@Carehare.Session.get_connection] returns @connection.
   */
  signals[SIGNAL_CONNECTED] =
    g_signal_new ("connected", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, CAREHARE_TYPE_CONNECTION);

  /**
   * CarehareSession::disconnected:
   * @self: the session
   * @error: (nullable): why the connection ended; %NULL when the program
   *   closed the session
   *
   * Emitted when a connection that was announced by
   * [signal@Carehare.Session::connected] ends; never for a failed attempt.
   * Emitted on the session's main context, whichever thread made the call
   * that led to it (a close from a worker thread included).
   */
  signals[SIGNAL_DISCONNECTED] =
    g_signal_new ("disconnected", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
carehare_session_init (CarehareSession *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->mailbox = _carehare_mailbox_new (self->context);
  _carehare_mailbox_set_push_context (self->mailbox);
  g_mutex_init (&self->snapshot_lock);
  self->delay_min = DEFAULT_DELAY_MIN_MS;
  self->delay_max = DEFAULT_DELAY_MAX_MS;
  self->topology = g_ptr_array_new_with_free_func ((GDestroyNotify) _carehare_session_step_free);
  self->consumers =
    g_ptr_array_new_with_free_func ((GDestroyNotify) _carehare_session_consumer_unref);
  g_queue_init (&self->publishes);
  g_queue_init (&self->sent);
}

/* ---- public API ---------------------------------------------------------- */

static void start_run         (CarehareSession *self,
                               gpointer         data);
static void set_delay_min_run (CarehareSession *self,
                               gpointer         data);
static void set_delay_max_run (CarehareSession *self,
                               gpointer         data);

/**
 * carehare_session_new:
 * @uris: (array zero-terminated=1): broker URIs, tried in order on every
 *   attempt, as [func@Carehare.Connection.new_for_uris_async] takes them
 *
 * Creates a session. Nothing happens until [method@Carehare.Session.start].
 * The session runs on the thread-default main context of the caller.
 *
 * Returns: (transfer full): a new session
 */
CarehareSession *
carehare_session_new (const char * const *uris)
{
  g_return_val_if_fail (uris != NULL, NULL);

  return g_object_new (CAREHARE_TYPE_SESSION, "uris", uris, NULL);
}

/**
 * carehare_session_start:
 * @self: a session
 *
 * Starts connecting: the first attempt at once. Fails the session (state
 * %CAREHARE_SESSION_STATE_FAILED, [property@Carehare.Session:last-error]
 * %CAREHARE_ERROR_INVALID_URI) if a URI is invalid, or if there is none.
 * Calling it again, or after closing, does nothing.
 *
 * May be called from any thread: from a thread other than the one running
 * the session's main context it is queued for that thread, in order with
 * the calls that thread made before, and returns at once.
 */
void
carehare_session_start (CarehareSession *self)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));

  _carehare_session_run_nowait (self, start_run, NULL, NULL);
}

static void
start_run (CarehareSession *self,
           gpointer         data)
{
  g_autoptr(GError) error = NULL;

  if (self->started || self->closed)
    return;
  self->started = TRUE;
  if (self->uris[0] == NULL)
    error = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI,
                                 "The session has no URI to connect to");
  for (guint i = 0; error == NULL && self->uris[i] != NULL; i++)
    {
      g_auto(CarehareUriSettings) settings = { 0 };

      carehare_uri_parse (self->uris[i], &settings, &error);
    }
  if (error != NULL)
    {
      set_last_error (self, g_steal_pointer (&error));
      go_failed (self);
      return;
    }
  attempt_now (self);
}

/**
 * carehare_session_get_state:
 * @self: a session
 *
 * Gets [property@Carehare.Session:state]. From a thread other than the
 * one running the session's main context it is a snapshot: the state may
 * change as soon as it is read, and calls queued from this thread may not
 * have run yet.
 *
 * Returns: where the session is
 */
CarehareSessionState
carehare_session_get_state (CarehareSession *self)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), CAREHARE_SESSION_STATE_STOPPED);
  return (CarehareSessionState) g_atomic_int_get ((gint *) &self->state);
}

/**
 * carehare_session_get_connection:
 * @self: a session
 *
 * Gets [property@Carehare.Session:connection].
 *
 * The connection is borrowed, and the session drops it when it is lost:
 * call this on the session's main context (a handler of
 * [signal@Carehare.Session::connected], a callback), where it stays valid
 * until the context runs again. Another thread takes a reference instead,
 * with `g_object_get (session, "connection", &connection, NULL)`: the
 * connection it gets may be lost meanwhile, but stays valid and may be
 * used from that thread as any connection.
 *
 * Returns: (transfer none) (nullable): the current connection, or %NULL
 */
CarehareConnection *
carehare_session_get_connection (CarehareSession *self)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), NULL);
  return self->connection;
}

/**
 * carehare_session_get_last_error:
 * @self: a session
 *
 * Gets [property@Carehare.Session:last-error].
 *
 * The error is borrowed and replaced by the next one: call this on the
 * session's main context. Another thread takes a copy instead, with
 * `g_object_get (session, "last-error", &error, NULL)`.
 *
 * Returns: (transfer none) (nullable): the error that ended the last
 *   connection or attempt, or %NULL
 */
const GError *
carehare_session_get_last_error (CarehareSession *self)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), NULL);
  return self->last_error;
}

/**
 * carehare_session_get_reconnect_delay_min:
 * @self: a session
 *
 * Gets [property@Carehare.Session:reconnect-delay-min].
 *
 * From a thread other than the one running the session's main context
 * it is a snapshot, which a setter called from this thread may not have
 * changed yet.
 *
 * Returns: the shortest wait between attempts, in milliseconds
 */
guint
carehare_session_get_reconnect_delay_min (CarehareSession *self)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), 0);
  return (guint) g_atomic_int_get (&self->delay_min);
}

/**
 * carehare_session_set_reconnect_delay_min:
 * @self: a session
 * @delay_ms: the shortest wait between attempts, in milliseconds (at least 1)
 *
 * Sets [property@Carehare.Session:reconnect-delay-min]; it applies from
 * the next wait. May be called from any thread: from a thread other than
 * the one running the session's main context it is queued for that
 * thread, and the property is notified there.
 */
void
carehare_session_set_reconnect_delay_min (CarehareSession *self,
                                          guint            delay_ms)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (delay_ms >= 1 && delay_ms <= G_MAXINT32);

  _carehare_session_run_nowait (self, set_delay_min_run, GUINT_TO_POINTER (delay_ms), NULL);
}

static void
set_delay_min_run (CarehareSession *self,
                   gpointer         data)
{
  guint delay_ms = GPOINTER_TO_UINT (data);

  if (self->delay_min == delay_ms)
    return;
  g_atomic_int_set (&self->delay_min, delay_ms);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_RECONNECT_DELAY_MIN]);
  if (self->delay_max < delay_ms)
    set_delay_max_run (self, data);
}

/**
 * carehare_session_get_reconnect_delay_max:
 * @self: a session
 *
 * Gets [property@Carehare.Session:reconnect-delay-max].
 *
 * A snapshot from another thread, as
 * [method@Carehare.Session.get_reconnect_delay_min] is.
 *
 * Returns: the longest wait between attempts, in milliseconds
 */
guint
carehare_session_get_reconnect_delay_max (CarehareSession *self)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), 0);
  return (guint) g_atomic_int_get (&self->delay_max);
}

/**
 * carehare_session_set_reconnect_delay_max:
 * @self: a session
 * @delay_ms: the longest wait between attempts, in milliseconds (at least 1)
 *
 * Sets [property@Carehare.Session:reconnect-delay-max]; it applies from
 * the next wait. A value below the minimum lowers the minimum too. May be
 * called from any thread, as
 * [method@Carehare.Session.set_reconnect_delay_min] may.
 */
void
carehare_session_set_reconnect_delay_max (CarehareSession *self,
                                          guint            delay_ms)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (delay_ms >= 1 && delay_ms <= G_MAXINT32);

  _carehare_session_run_nowait (self, set_delay_max_run, GUINT_TO_POINTER (delay_ms), NULL);
}

static void
set_delay_max_run (CarehareSession *self,
                   gpointer         data)
{
  guint delay_ms = GPOINTER_TO_UINT (data);

  if (self->delay_max == delay_ms)
    return;
  g_atomic_int_set (&self->delay_max, delay_ms);
  self->cap = MIN (self->cap, delay_ms);
  g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_RECONNECT_DELAY_MAX]);
  if (self->delay_min > delay_ms)
    set_delay_min_run (self, data);
}

static void
update_secret_done_cb (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  /* A refused secret closes the connection: the session hears that as a
   * lost connection and logs in again with the new password. */
  if (!carehare_connection_update_secret_finish (CAREHARE_CONNECTION (source), result, &error))
    g_debug ("session: updating the secret of the connection failed: %s", error->message);
}

/**
 * carehare_session_set_password:
 * @self: a session
 * @password: the new password (or token)
 *
 * Replaces the password of every URI (keeping its user, `guest` when it
 * names none) for the connections to come, for example when an OAuth 2
 * token is refreshed, and gives it to the current connection, if any,
 * with [method@Carehare.Connection.update_secret_async], so that a broker
 * that checks tokens keeps it open. If the broker refuses it there, the
 * connection closes and the session reconnects with it, and then fails
 * for good if the login is refused. The password is wiped from memory
 * when replaced, and never logged.
 *
 * May be called from any thread: from a thread other than the one running
 * the session's main context, a copy is queued for that thread (wiped
 * once used) and this returns at once.
 */
static void set_password_run (CarehareSession *self,
                              gpointer         data);

void
carehare_session_set_password (CarehareSession *self,
                               const char      *password)
{
  g_return_if_fail (CAREHARE_IS_SESSION (self));
  g_return_if_fail (password != NULL);

  _carehare_session_run_nowait (self, set_password_run, g_strdup (password),
                                (GDestroyNotify) carehare_uri_secret_free);
}

static void
set_password_run (CarehareSession *self,
                  gpointer         data)
{
  const char *password = data;

  g_clear_pointer (&self->password, carehare_uri_secret_free);
  self->password = g_strdup (password);

  /* The connection being restored logged in with the old one too. */
  if (self->attempt != NULL && self->attempt->connection != NULL)
    carehare_connection_update_secret_async (self->attempt->connection, password,
                                             "password changed", NULL,
                                             update_secret_done_cb, NULL);
  if (self->connection != NULL)
    carehare_connection_update_secret_async (self->connection, password, "password changed",
                                             NULL, update_secret_done_cb, NULL);
}

static void
close_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;

  /* How the connection ended does not matter any more. */
  carehare_connection_close_finish (CAREHARE_CONNECTION (source), result, NULL);
  g_task_return_boolean (task, TRUE);
}

/**
 * carehare_session_close_async:
 * @self: a session
 * @cancellable: (nullable): ignored: closing always runs to the end
 * @callback: (scope async) (nullable): called when the connection, if
 *   any, is closed
 * @user_data: data for @callback
 *
 * Closes the session for good: no more attempts. Publishes waiting for a
 * connection and the `next_delivery` calls of its consumers fail with
 * %CAREHARE_ERROR_CONNECTION_CLOSED, and so do publishes waiting for
 * their confirm; the current connection, if any, is closed (and
 * [signal@Carehare.Session::disconnected] emitted with a %NULL error).
 * While the session waits between attempts, it completes at once.
 * Calling it again is fine.
 *
 * May be called from any thread, and never waits for the thread running
 * the session's main context: @callback runs on the caller's
 * thread-default main context, and the signals on the session's.
 */
static void close_run (CarehareSession *self,
                       gpointer         user_data);

void
carehare_session_close_async (CarehareSession     *self,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (CAREHARE_IS_SESSION (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, carehare_session_close_async);
  g_task_set_check_cancellable (task, FALSE);
  /* The task's reference goes with the call (and holds the session). */
  _carehare_session_run_nowait (self, close_run, task, NULL);
}

/* close_async() on the session's context; takes @user_data, the task. */
static void
close_run (CarehareSession *self,
           gpointer         user_data)
{
  GTask *task = user_data;
  g_autoptr(CarehareSession) keep = NULL;
  g_autoptr(CarehareConnection) connection = NULL;

  keep = g_object_ref (self);
  if (!self->closed)
    {
      self->closed = TRUE;
      if (self->timer != NULL)
        {
          g_source_destroy (self->timer);
          g_clear_pointer (&self->timer, g_source_unref);
        }
      attempt_abandon (self);
      connection = swap_connection (self, NULL);
      if (connection != NULL)
        {
          g_clear_signal_handler (&self->closed_id, connection);
          for (guint i = 0; i < self->consumers->len; i++)
            _carehare_session_consumer_drop_inner (g_ptr_array_index (self->consumers, i), FALSE);
        }
      if (self->state != CAREHARE_SESSION_STATE_FAILED)
        set_state (self, CAREHARE_SESSION_STATE_STOPPED);
      _carehare_session_fail_publishes (self, _carehare_session_closed_error ());
      end_consumers (self, _carehare_session_closed_error ());
      if (connection != NULL)
        {
          g_object_notify_by_pspec (G_OBJECT (self), obj_props[PROP_CONNECTION]);
          g_signal_emit (self, signals[SIGNAL_DISCONNECTED], 0, NULL);
        }
    }
  if (connection != NULL)
    carehare_connection_close_async (connection, NULL, close_done_cb, task);
  else
    {
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
}

/**
 * carehare_session_close_finish:
 * @self: a session
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Carehare.Session.close_async].
 *
 * Returns: %TRUE (closing a session does not fail)
 */
gboolean
carehare_session_close_finish (CarehareSession  *self,
                               GAsyncResult     *result,
                               GError          **error)
{
  g_return_val_if_fail (CAREHARE_IS_SESSION (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
