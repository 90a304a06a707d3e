/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A fault-injection TCP proxy on 127.0.0.1 for the fault tests.
 *
 * It runs in threads of the test process (one accepting, one per proxied
 * connection, with blocking sockets and bounded polls), so the test's main
 * context stays free for the library. Each proxied connection forwards
 * bytes both ways until the test injects a fault into the connections that
 * exist at that moment:
 *  - stall: stop forwarding (and reading) in one or both directions, the
 *    sockets stay open, until the test releases it;
 *  - reset: close both sockets with SO_LINGER 0, so both peers get a RST;
 *  - cut mid-frame: in one direction, forward the first half of the next
 *    non-heartbeat AMQP frame and then close both sockets;
 *  - throttle: forward client->server bytes in small chunks with a pause
 *    after each (it applies to every connection, new ones included).
 * Connections accepted after a fault pass traffic normally.
 */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _FaultProxy FaultProxy;

typedef enum {
  FAULT_DIRECTION_CLIENT_TO_SERVER = 1 << 0,
  FAULT_DIRECTION_SERVER_TO_CLIENT = 1 << 1,
  FAULT_DIRECTION_BOTH = FAULT_DIRECTION_CLIENT_TO_SERVER | FAULT_DIRECTION_SERVER_TO_CLIENT,
} FaultDirection;

/* Listens on an ephemeral loopback port and forwards to 127.0.0.1:@upstream_port. */
FaultProxy *fault_proxy_new      (guint16     upstream_port);
/* Closes every connection and joins every thread. */
void        fault_proxy_free     (FaultProxy *proxy);
guint16     fault_proxy_get_port (FaultProxy *proxy);
/* "amqp://guest:guest@127.0.0.1:PROXYPORT" + @suffix */
char       *fault_proxy_uri      (FaultProxy *proxy,
                                  const char *suffix);

/* Connections accepted so far, and those still open on the proxy's side. */
guint       fault_proxy_get_n_accepted (FaultProxy *proxy);
guint       fault_proxy_get_n_open     (FaultProxy *proxy);

/* Faults on the connections open now; each returns once it is in effect. */
void        fault_proxy_stall        (FaultProxy     *proxy,
                                      FaultDirection  directions);
void        fault_proxy_reset        (FaultProxy     *proxy);
/* Ends the stalls of the connections open now: they forward again. */
void        fault_proxy_release      (FaultProxy     *proxy);
/* Arms the cut; returns at once. fault_proxy_wait_cut() waits (bounded)
 * until a frame was cut and the sockets closed. */
void        fault_proxy_cut_mid_frame (FaultProxy     *proxy,
                                       FaultDirection  direction);
gboolean    fault_proxy_wait_cut      (FaultProxy     *proxy,
                                       guint           timeout_ms);

/* Client->server bytes go in chunks of at most @chunk bytes with @pause_ms
 * after each; 0, 0 turns it off. */
void        fault_proxy_throttle (FaultProxy *proxy,
                                  gsize       chunk,
                                  guint       pause_ms);

G_END_DECLS
