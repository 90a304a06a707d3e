/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A one-connection server on 127.0.0.1 for scripted fake brokers: a thread
 * of its own accepts one connection, runs @serve on it (blocking I/O), and
 * closes it. The thread is joined in loopback_server_free(), so nothing it
 * allocated outlives the test (a pooled GThreadedSocketService thread
 * would keep thread-local GLib memory that LeakSanitizer, run with
 * use_tls=0 here, reports).
 */

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _LoopbackServer LoopbackServer;

typedef void (*LoopbackServeFunc) (GSocketConnection *connection,
                                   gpointer           user_data);

LoopbackServer *loopback_server_new      (LoopbackServeFunc  serve,
                                          gpointer           user_data);
guint16         loopback_server_get_port (LoopbackServer    *server);
/* TRUE once @serve returned and the connection is closed. */
gboolean        loopback_server_is_done  (LoopbackServer    *server);
/* Stops waiting for a connection and joins the thread. */
void            loopback_server_free     (LoopbackServer    *server);

G_END_DECLS
