/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* carehare-connection-mailbox.c: calls from any thread for an object whose
 * state is only touched by the thread that holds a main context (a
 * connection, a session, a session's relay consumer). A call that finds
 * the context free runs at once, after the calls queued before it; one
 * made while another thread holds it is queued, under one lock, and the
 * mailbox's source runs the queue on the thread iterating the context:
 * one wake-up per batch of calls.
 *
 * Each owner calls its own function type: it passes @invoke, which casts
 * @func (stored as a GCallback) back to that type and calls it, so that
 * no function is ever called through a pointer of another type. */

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _CarehareMailbox CarehareMailbox;

/* Calls @func, cast back to the owner's own function type, with @owner
 * and @data. */
typedef void (*CarehareMailboxInvoke) (GCallback func,
                                       gpointer  owner,
                                       gpointer  data);

CarehareMailbox *_carehare_mailbox_new               (GMainContext          *context);
void             _carehare_mailbox_free              (CarehareMailbox       *mailbox);
/* Calls run with the context pushed as the thread-default one when the
 * thread holding it has another (a worker that found it free), so that
 * the GIO operations they start call back on it. */
void             _carehare_mailbox_set_push_context  (CarehareMailbox       *mailbox);
/* With the context held (FALSE when another thread holds it): the queued
 * calls, then @func. The owner's path: one acquire and release. */
gboolean         _carehare_mailbox_run_here          (CarehareMailbox       *mailbox,
                                                      GMainContext          *context,
                                                      CarehareMailboxInvoke  invoke,
                                                      gpointer               owner,
                                                      GCallback              func,
                                                      gpointer               data);
/* run_here(), or queued and waited for. */
void             _carehare_mailbox_run               (CarehareMailbox       *mailbox,
                                                      GMainContext          *context,
                                                      CarehareMailboxInvoke  invoke,
                                                      gpointer               owner,
                                                      GCallback              func,
                                                      gpointer               data);
/* Queued, never waited for: @owner (a GObject) is held until @func has
 * run, then @destroy frees @data. A %NULL @func only drops @data and the
 * owner on the context's thread. */
void             _carehare_mailbox_run_later         (CarehareMailbox       *mailbox,
                                                      CarehareMailboxInvoke  invoke,
                                                      gpointer               owner,
                                                      GCallback              func,
                                                      gpointer               data,
                                                      GDestroyNotify         destroy);
/* In a dispose from a thread that cannot hold the context: @object is
 * resurrected and its last reference dropped on the context (TRUE). */
gboolean         _carehare_mailbox_dispose_elsewhere (CarehareMailbox       *mailbox,
                                                      GMainContext          *context,
                                                      GObject               *object);
void             _carehare_mailbox_signal            (CarehareMailbox       *mailbox,
                                                      int                   *done);
void             _carehare_mailbox_wait_until        (CarehareMailbox       *mailbox,
                                                      GMainContext          *context,
                                                      int                   *done);

G_END_DECLS
