/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the session's files share: carehare-session.c (the state machine,
 * attempts, publishing), carehare-session-consumer.c (its consumers) and
 * carehare-session-topology.c (its recorded declarations). */

#include "carehare-session.h"
#include "carehare-mailbox-private.h"

G_BEGIN_DECLS

typedef enum {
  STEP_DECLARE_QUEUE,
  STEP_DECLARE_EXCHANGE,
  STEP_BIND_QUEUE,
  STEP_BIND_EXCHANGE,
} StepKind;

/* One recorded topology declaration. */
typedef struct {
  StepKind kind;
  char *name;          /* owned: queue, exchange, or binding destination */
  char *other;         /* owned, nullable: exchange type, or binding source */
  char *routing_key;   /* owned, nullable */
  guint flags;
  GVariant *arguments; /* owned reference, nullable */
} Step;

typedef struct _Attempt Attempt;
typedef struct _SessionConsumer SessionConsumer;

struct _CarehareSession
{
  GObject parent_instance;

  /* Every field is touched only by the thread that holds @context (see
   * docs/threads.md): calls from other threads go through @mailbox. The
   * getters' snapshots: @state, @delay_min and @delay_max are written
   * atomically, @connection and @last_error under @snapshot_lock. */
  GMainContext *context;           /* owned */
  CarehareMailbox *mailbox;        /* owned */
  GMutex snapshot_lock;
  char **uris;                     /* owned, wiped: may hold a password */
  char *password;                  /* owned, wiped, nullable: replaces the URIs' */
  GTlsDatabase *tls_database;      /* owned, nullable */
  GTlsCertificate *tls_certificate; /* owned, nullable */
  guint connect_timeout;
  guint delay_min;
  guint delay_max;

  GPtrArray *topology;             /* owned Step *, in order */
  GPtrArray *consumers;            /* owned SessionConsumer * (a reference each) */
  GQueue publishes;                /* owned GTask * waiting for a connection */
  GQueue sent;                     /* owned GTask * handed to a connection, in order */

  CarehareSessionState state;
  gboolean started;
  gboolean closed;                 /* close_async was called: for good */
  GError *last_error;              /* owned, nullable */

  Attempt *attempt;                /* owned reference: restoring a connection */
  CarehareConnection *connection;  /* owned: connected and restored */
  gulong closed_id;                /* on connection */
  gint64 connected_at;             /* monotonic, of connection */

  guint cap;                       /* backoff cap in ms; 0: next attempt at once */
  GSource *timer;                  /* owned, attached while waiting */

  GNetworkMonitor *monitor;        /* owned */
  gboolean monitor_is_default;     /* the system's, not the program's */
  gulong monitor_id;
  gboolean waiting_for_network;
  gboolean network_lost;           /* seen unavailable since it was last available */
};

struct _Attempt
{
  gint ref_count;
  CarehareSession *session;        /* owned */
  CarehareConnection *connection;  /* owned, once connected */
  gulong closed_id;
  GCancellable *cancellable;       /* owned */
  guint next_step;                 /* index in topology */
  guint consumers_starting;
};

struct _SessionConsumer
{
  gint ref_count;
  CarehareSession *session;        /* not owned: the session owns us; NULL once dropped */
  CarehareConsumer *relay;         /* owned: what the program holds */
  char *queue;                     /* owned */
  guint16 prefetch_count;
  CarehareConsumeFlags flags;
  char *consumer_tag;              /* owned, nullable */
  GVariant *arguments;             /* owned reference, nullable */

  CarehareConsumer *inner;         /* owned: on the current connection, or NULL */
  GCancellable *pump_cancellable;  /* owned, with inner */
  guint64 offset;                  /* tags <= offset: connections gone */
  guint64 max_inner;               /* highest broker tag seen on inner */
};

/* carehare-session.c */
typedef void (*CarehareSessionRunFunc) (CarehareSession *self,
                                        gpointer         data);
/* Runs @func on the session's context: at once when this thread can hold
 * it, else queued (a copy of the arguments in @data) and never waited
 * for; @destroy frees @data once it ran. */
void      _carehare_session_run_nowait               (CarehareSession        *self,
                                                      CarehareSessionRunFunc  func,
                                                      gpointer                data,
                                                      GDestroyNotify          destroy);
/* Always queued: from a cancellable's handler. */
void      _carehare_session_run_later                (CarehareSession        *self,
                                                      CarehareSessionRunFunc  func,
                                                      gpointer                data,
                                                      GDestroyNotify          destroy);
gboolean  _carehare_session_error_is_connection_lost (const GError *error);
GError   *_carehare_session_closed_error             (void);
GError   *_carehare_session_copy_last_error          (CarehareSession *self);
Attempt  *_carehare_session_attempt_ref              (Attempt *attempt);
void      _carehare_session_attempt_unref            (Attempt *attempt);
gboolean  _carehare_session_attempt_is_current       (Attempt *attempt);
void      _carehare_session_attempt_failed           (Attempt *attempt,
                                                      GError  *error);
void      _carehare_session_go_connected             (Attempt *attempt);
/* Advances the backoff cap and draws the next wait, in ms (tests call it). */
guint     _carehare_session_next_delay               (CarehareSession *self);

/* carehare-session-consumer.c */
SessionConsumer *_carehare_session_consumer_ref        (SessionConsumer *sc);
void             _carehare_session_consumer_unref      (SessionConsumer *sc);
void             _carehare_session_consumer_drop_inner (SessionConsumer *sc,
                                                        gboolean         close);
void             _carehare_session_consumer_remove     (SessionConsumer *sc);
void             _carehare_session_consumer_end        (SessionConsumer *sc,
                                                        GError          *error);
void             _carehare_session_consumer_pump       (SessionConsumer *sc);
void             _carehare_session_start_consumers     (Attempt *attempt);

/* carehare-session-publish.c */
void _carehare_session_fail_publishes         (CarehareSession *self,
                                               GError          *error);
void _carehare_session_send_waiting_publishes (CarehareSession *self);

/* carehare-session-topology.c */
void _carehare_session_step_free (Step    *step);
void _carehare_session_run_step  (Attempt *attempt);

G_END_DECLS
