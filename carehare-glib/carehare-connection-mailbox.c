/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Calls from any thread (see carehare-mailbox-private.h): the state of a
 * connection, of a session or of a session's relay consumer is touched
 * only by a thread that holds its main context. A call made while another
 * thread holds it goes into the owner's mailbox, one lock-protected queue
 * per owner, and the mailbox's GSource runs the queued calls in order on
 * the thread iterating the context, one wake-up per batch. Owners reach it
 * only through the functions below (the connection through
 * _carehare_connection_run() and its siblings).
 */

#include "carehare-mailbox-private.h"

/* A call queued for the thread that iterates the connection's context. */
typedef struct _QueuedCall QueuedCall;
struct _QueuedCall {
  QueuedCall *next;               /* the queue is a list of its own: no GSlice */
  CarehareMailboxInvoke invoke;   /* calls @func as the owner's type */
  GCallback func;                 /* nullable for run_later(): nothing to run */
  gpointer owner;                 /* held by the caller, or by run_later() */
  gpointer data;
  GDestroyNotify destroy;         /* run_later(): frees @data after the call */
  gboolean *done;                 /* run(): the waiting caller's flag, under the lock */
};

/* The queue of calls, shared by the connection and its source so that a
 * dispatch racing with the last unref never touches a freed owner
 * (every queued call holds the owner). */
struct _CarehareMailbox {
  gatomicrefcount ref;
  GMutex lock;
  GCond cond;                     /* a queued run() call ran */
  QueuedCall *head;               /* the calls, oldest first, under the lock */
  QueuedCall *tail;
  int n_calls;                    /* atomic: a lock-free peek for the owner's path */
  GSource *source;                /* owned: wakes the context, ready while calls wait */
  GMainContext *context;          /* owned */
  gboolean push_context;          /* calls run with the context thread-default */
};

typedef struct {
  GSource source;
  CarehareMailbox *mailbox;       /* owned */
} MailboxSource;

static CarehareMailbox *
mailbox_ref (CarehareMailbox *mailbox)
{
  g_atomic_ref_count_inc (&mailbox->ref);
  return mailbox;
}

static void
mailbox_unref (CarehareMailbox *mailbox)
{
  if (!g_atomic_ref_count_dec (&mailbox->ref))
    return;
  g_assert (mailbox->head == NULL);
  g_mutex_clear (&mailbox->lock);
  g_cond_clear (&mailbox->cond);
  g_main_context_unref (mailbox->context);
  g_free (mailbox);
}

/* Calls @func with the context held. An owner whose calls start GIO
 * operations (a session) has them run with its context thread-default,
 * whichever thread holds it, so that their callbacks come back to it. */
static void
mailbox_invoke (CarehareMailbox       *mailbox,
                CarehareMailboxInvoke  invoke,
                GCallback              func,
                gpointer               owner,
                gpointer               data)
{
  GMainContext *current;

  if (G_LIKELY (!mailbox->push_context))
    {
      invoke (func, owner, data);
      return;
    }
  current = g_main_context_get_thread_default ();
  if ((current != NULL ? current : g_main_context_default ()) == mailbox->context)
    {
      invoke (func, owner, data);
      return;
    }
  g_main_context_push_thread_default (mailbox->context);
  invoke (func, owner, data);
  g_main_context_pop_thread_default (mailbox->context);
}

/* Runs every queued call, in order, with the context held by this thread. */
static void
mailbox_drain (CarehareMailbox *mailbox)
{
  QueuedCall *next;

  g_mutex_lock (&mailbox->lock);
  next = g_steal_pointer (&mailbox->head);
  mailbox->tail = NULL;
  g_atomic_int_set (&mailbox->n_calls, 0);
  g_source_set_ready_time (mailbox->source, -1);
  g_mutex_unlock (&mailbox->lock);

  while (next != NULL)
    {
      QueuedCall *call = next;

      /* Read first: a run() call's caller returns once it is done. */
      next = call->next;
      if (call->func != NULL)
        mailbox_invoke (mailbox, call->invoke, call->func, call->owner, call->data);
      if (call->done != NULL)
        {
          g_mutex_lock (&mailbox->lock);
          *call->done = TRUE;
          g_cond_broadcast (&mailbox->cond);
          g_mutex_unlock (&mailbox->lock);
        }
      else
        {
          if (call->destroy != NULL)
            call->destroy (call->data);
          if (call->owner != NULL)
            g_object_unref (call->owner);
          g_free (call);
        }
    }
}

static gboolean
mailbox_source_dispatch (GSource     *source,
                         GSourceFunc  callback,
                         gpointer     user_data)
{
  mailbox_drain (((MailboxSource *) source)->mailbox);
  return G_SOURCE_CONTINUE;
}

static void
mailbox_source_finalize (GSource *source)
{
  mailbox_unref (((MailboxSource *) source)->mailbox);
}

static GSourceFuncs mailbox_source_funcs = {
  .dispatch = mailbox_source_dispatch,
  .finalize = mailbox_source_finalize,
};

CarehareMailbox *
_carehare_mailbox_new (GMainContext *context)
{
  CarehareMailbox *mailbox = g_new0 (CarehareMailbox, 1);
  MailboxSource *source;

  g_atomic_ref_count_init (&mailbox->ref);
  g_mutex_init (&mailbox->lock);
  g_cond_init (&mailbox->cond);
  mailbox->context = g_main_context_ref (context);
  source = (MailboxSource *) g_source_new (&mailbox_source_funcs, sizeof (MailboxSource));
  source->mailbox = mailbox_ref (mailbox);
  g_source_set_priority (&source->source, G_PRIORITY_DEFAULT);
  g_source_set_static_name (&source->source, "[carehare] calls from other threads");
  g_source_set_ready_time (&source->source, -1);
  g_source_attach (&source->source, context);
  mailbox->source = &source->source;
  return mailbox;
}

void
_carehare_mailbox_set_push_context (CarehareMailbox *mailbox)
{
  mailbox->push_context = TRUE;
}

/* Destroys the source, which holds the other reference: a dispatch
 * running meanwhile holds the source, so mailbox->source stays valid for it. */
void
_carehare_mailbox_free (CarehareMailbox *mailbox)
{
  g_source_destroy (mailbox->source);
  g_source_unref (mailbox->source);
  mailbox_unref (mailbox);
}

/* Queues @call (the lock is held); the first call of a batch wakes the context. */
static void
mailbox_push_locked (CarehareMailbox *mailbox,
                     QueuedCall      *call)
{
  call->next = NULL;
  if (mailbox->tail != NULL)
    mailbox->tail->next = call;
  else
    mailbox->head = call;
  mailbox->tail = call;
  if (g_atomic_int_add (&mailbox->n_calls, 1) == 0)
    g_source_set_ready_time (mailbox->source, 0);
}

/* The owner's path: one acquire and release, as the context check cost
 * before; the calls queued before this one run first. FALSE when another
 * thread holds the context. */
gboolean
_carehare_mailbox_run_here (CarehareMailbox       *mailbox,
                            GMainContext          *context,
                            CarehareMailboxInvoke  invoke,
                            gpointer               owner,
                            GCallback              func,
                            gpointer               data)
{
  if (G_UNLIKELY (!g_main_context_acquire (context)))
    return FALSE;
  if (G_UNLIKELY (g_atomic_int_get (&mailbox->n_calls) > 0))
    mailbox_drain (mailbox);
  mailbox_invoke (mailbox, invoke, func, owner, data);
  g_main_context_release (context);
  return TRUE;
}

void
_carehare_mailbox_run (CarehareMailbox       *mailbox,
                       GMainContext          *context,
                       CarehareMailboxInvoke  invoke,
                       gpointer               owner,
                       GCallback              func,
                       gpointer               data)
{
  QueuedCall call = { NULL, invoke, func, owner, data, NULL, NULL };
  gboolean done = FALSE;

  if (G_LIKELY (_carehare_mailbox_run_here (mailbox, context, invoke, owner, func, data)))
    return;

  call.done = &done;
  g_mutex_lock (&mailbox->lock);
  mailbox_push_locked (mailbox, &call);
  while (!done)
    {
      gint64 end = g_get_monotonic_time () + 50 * G_TIME_SPAN_MILLISECOND;

      if (g_cond_wait_until (&mailbox->cond, &mailbox->lock, end) || done)
        continue;
      /* Whoever held the context may have let it go without iterating it
       * again (a loop that quit, a thread whose call ran directly): run
       * the queue here if nobody holds it now. */
      g_mutex_unlock (&mailbox->lock);
      if (g_main_context_acquire (context))
        {
          mailbox_drain (mailbox);
          g_main_context_release (context);
        }
      g_mutex_lock (&mailbox->lock);
    }
  g_mutex_unlock (&mailbox->lock);
}

gboolean
_carehare_mailbox_dispose_elsewhere (CarehareMailbox *mailbox,
                                     GMainContext    *context,
                                     GObject         *object)
{
  if (g_main_context_acquire (context))
    {
      g_main_context_release (context);
      return FALSE;
    }
  /* Resurrected (GObject allows it in dispose): the thread running the
   * context drops these references, and disposes it there. Waiting for
   * it here could deadlock a thread that is joined by that one. */
  _carehare_mailbox_run_later (mailbox, NULL, NULL, NULL, g_object_ref (object), g_object_unref);
  return TRUE;
}

void
_carehare_mailbox_run_later (CarehareMailbox       *mailbox,
                             CarehareMailboxInvoke  invoke,
                             gpointer               owner,
                             GCallback              func,
                             gpointer               data,
                             GDestroyNotify         destroy)
{
  QueuedCall *call = g_new0 (QueuedCall, 1);

  call->invoke = invoke;
  call->func = func;
  call->owner = owner != NULL ? g_object_ref (owner) : NULL;
  call->data = data;
  call->destroy = destroy;
  g_mutex_lock (&mailbox->lock);
  mailbox_push_locked (mailbox, call);
  g_mutex_unlock (&mailbox->lock);
}

void
_carehare_mailbox_signal (CarehareMailbox *mailbox,
                          int             *done)
{
  g_mutex_lock (&mailbox->lock);
  if (done != NULL)
    g_atomic_int_set (done, TRUE);
  g_cond_broadcast (&mailbox->cond);
  g_mutex_unlock (&mailbox->lock);
}

void
_carehare_mailbox_wait_until (CarehareMailbox *mailbox,
                              GMainContext    *context,
                              int             *done)
{

  g_mutex_lock (&mailbox->lock);
  while (!g_atomic_int_get (done))
    {
      gint64 end = g_get_monotonic_time () + 50 * G_TIME_SPAN_MILLISECOND;

      if (g_cond_wait_until (&mailbox->cond, &mailbox->lock, end) && g_atomic_int_get (done))
        break;
      /* Woken by a thread that let the context go, or nobody seems to
       * run it: run it here while it is free. The callback that sets
       * *@done runs on it, so in this thread while it holds it. */
      g_mutex_unlock (&mailbox->lock);
      if (g_main_context_acquire (context))
        {
          while (!g_atomic_int_get (done))
            g_main_context_iteration (context, TRUE);
          g_main_context_release (context);
          _carehare_mailbox_signal (mailbox, NULL);
        }
      g_mutex_lock (&mailbox->lock);
    }
  g_mutex_unlock (&mailbox->lock);
}
