/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fault-injection proxy of fault-proxy.h.
 *
 * Threads and blocking sockets keep it independent of the test's main
 * context: the accepting thread waits for connections in bounded polls, and
 * each connection has a pump thread that polls both sockets (20 ms at a
 * time), so it sees the faults the test requests within one poll. Requests
 * are counted (request_serial); the control functions wait, bounded, until
 * every pump has seen theirs, so a fault is in effect when they return.
 */
#include "fault-proxy.h"

#include <gio/gio.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#define POLL_MS 20
#define CONTROL_TIMEOUT_US (10 * G_TIME_SPAN_SECOND)
#define BUFFER_SIZE 65536

/* Frame boundaries of one direction, to cut in the middle of a frame. */
typedef struct {
  guint64 skip;       /* bytes left of the current frame (or protocol header) */
  guint8 header[7];
  guint header_len;
  guint64 pos;        /* bytes seen so far */
  guint64 cut_at;     /* stream offset to cut at, G_MAXUINT64 if none */
} Stream;

typedef struct {
  FaultProxy *proxy;
  GSocket *client;    /* owned */
  GSocket *server;    /* owned */
  GThread *thread;    /* owned; joined in fault_proxy_free() */
  Stream streams[2];  /* [0] client->server, [1] server->client; pump only */

  /* under proxy->lock */
  gboolean done;
  guint stalled;      /* FaultDirection */
  gboolean reset;
  guint cut;          /* FaultDirection armed for a cut */
  guint request_serial;
  guint seen_serial;
} Conn;

struct _FaultProxy {
  GSocket *listener;  /* owned */
  guint16 port;
  guint16 upstream_port;
  GThread *accept_thread;

  GMutex lock;
  GCond cond;
  gboolean stopping;
  GPtrArray *conns;   /* of owned Conn */
  guint n_accepted;
  guint n_cuts;
  gsize throttle_chunk;
  guint throttle_pause_ms;
};

static guint32
read_be32 (const guint8 *p)
{
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

/* Follows frame boundaries through @buf; when @armed, picks the middle of
 * the next non-heartbeat frame whose 7-byte header starts in @buf. */
static void
stream_scan (Stream       *s,
             const guint8 *buf,
             gsize         len,
             gboolean      armed)
{
  gsize i = 0;

  while (i < len)
    {
      if (s->skip > 0)
        {
          gsize n = (gsize) MIN (s->skip, (guint64) (len - i));

          s->skip -= n;
          i += n;
          continue;
        }
      if (s->header_len == 0 && armed && s->cut_at == G_MAXUINT64 &&
          len - i >= 7 && buf[i] != 8)
        s->cut_at = s->pos + i + 7 + read_be32 (buf + i + 3) / 2;
      s->header[s->header_len++] = buf[i++];
      if (s->header_len == 7)
        {
          s->skip = (guint64) read_be32 (s->header + 3) + 1;
          s->header_len = 0;
        }
    }
  s->pos += len;
}

static void
close_socket (GSocket  *socket,
              gboolean  with_reset)
{
  if (with_reset)
    {
      struct linger linger = { .l_onoff = 1, .l_linger = 0 };

      setsockopt (g_socket_get_fd (socket), SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
    }
  g_socket_close (socket, NULL);
}

/* Sends everything, waiting for room in bounded steps so that a reset
 * request is seen even when the peer does not read. */
static gboolean
send_all (Conn         *conn,
          GSocket      *socket,
          const guint8 *buf,
          gsize         len)
{
  while (len > 0)
    {
      GError *error = NULL;
      gssize n;
      gboolean reset;

      g_mutex_lock (&conn->proxy->lock);
      reset = conn->reset || conn->proxy->stopping;
      g_mutex_unlock (&conn->proxy->lock);
      if (reset)
        return FALSE;
      if (!g_socket_condition_timed_wait (socket, G_IO_OUT, POLL_MS * 1000, NULL, &error))
        {
          gboolean timed_out = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);

          g_error_free (error);
          if (timed_out)
            continue;
          return FALSE;
        }
      n = g_socket_send_with_blocking (socket, (const char *) buf, len, FALSE, NULL, &error);
      if (n < 0)
        {
          gboolean again = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);

          g_error_free (error);
          if (again)
            continue;
          return FALSE;
        }
      buf += n;
      len -= n;
    }
  return TRUE;
}

static gpointer
pump_thread (gpointer user_data)
{
  Conn *conn = user_data;
  FaultProxy *proxy = conn->proxy;
  GSocket *sockets[2] = { conn->client, conn->server };  /* sources of [0] c2s, [1] s2c */
  guint8 *buf = g_malloc (BUFFER_SIZE);
  gboolean with_reset = FALSE;
  gboolean cut_done = FALSE;

  for (;;)
    {
      guint stalled, cut;
      gboolean reset, stopping;
      gsize chunk, pause_ms;
      GPollFD fds[2];
      guint n_fds = 0;
      guint dir_of[2];

      g_mutex_lock (&proxy->lock);
      stalled = conn->stalled;
      reset = conn->reset;
      cut = conn->cut;
      stopping = proxy->stopping;
      chunk = proxy->throttle_chunk;
      pause_ms = proxy->throttle_pause_ms;
      if (conn->seen_serial != conn->request_serial)
        {
          conn->seen_serial = conn->request_serial;
          g_cond_broadcast (&proxy->cond);
        }
      g_mutex_unlock (&proxy->lock);

      if (reset || stopping)
        {
          with_reset = reset;
          break;
        }

      for (guint d = 0; d < 2; d++)
        {
          guint flag = d == 0 ? FAULT_DIRECTION_CLIENT_TO_SERVER : FAULT_DIRECTION_SERVER_TO_CLIENT;

          if (stalled & flag)
            continue;
          fds[n_fds].fd = g_socket_get_fd (sockets[d]);
          fds[n_fds].events = G_IO_IN | G_IO_HUP | G_IO_ERR;
          fds[n_fds].revents = 0;
          dir_of[n_fds] = d;
          n_fds++;
        }
      if (n_fds == 0)
        {
          g_usleep (POLL_MS * 1000);
          continue;
        }
      if (g_poll (fds, n_fds, POLL_MS) <= 0)
        continue;

      for (guint i = 0; i < n_fds; i++)
        {
          guint d = dir_of[i];
          guint flag = d == 0 ? FAULT_DIRECTION_CLIENT_TO_SERVER : FAULT_DIRECTION_SERVER_TO_CLIENT;
          GSocket *dst = sockets[1 - d];
          Stream *s = &conn->streams[d];
          gsize want = BUFFER_SIZE;
          gsize forward;
          gssize n;
          GError *error = NULL;

          if (fds[i].revents == 0)
            continue;
          if (d == 0 && chunk > 0)
            want = MIN (want, chunk);
          n = g_socket_receive_with_blocking (sockets[d], (char *) buf, want, FALSE, NULL, &error);
          if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            {
              g_error_free (error);
              continue;
            }
          if (n <= 0)
            {
              /* End of file or an error: pass it on to the other side. */
              with_reset = n < 0;
              g_clear_error (&error);
              goto out;
            }

          forward = n;
          stream_scan (s, buf, n, (cut & flag) != 0);
          if (s->cut_at != G_MAXUINT64 && s->cut_at <= s->pos)
            {
              forward = (gsize) (s->cut_at - (s->pos - n));
              cut_done = TRUE;
            }
          if (!send_all (conn, dst, buf, forward))
            goto out;
          if (cut_done)
            goto out;
          if (d == 0 && pause_ms > 0)
            g_usleep (pause_ms * 1000);
        }
    }

out:
  close_socket (conn->client, with_reset);
  close_socket (conn->server, with_reset);
  g_free (buf);

  g_mutex_lock (&proxy->lock);
  conn->done = TRUE;
  if (cut_done)
    proxy->n_cuts++;
  g_cond_broadcast (&proxy->cond);
  g_mutex_unlock (&proxy->lock);
  return NULL;
}

static void
conn_free (Conn *conn)
{
  if (conn->thread != NULL)
    g_thread_join (conn->thread);
  g_clear_object (&conn->client);
  g_clear_object (&conn->server);
  g_free (conn);
}

static GSocket *
connect_upstream (guint16 port)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, port);
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GError) error = NULL;

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  if (socket == NULL || !g_socket_connect (socket, address, NULL, &error))
    {
      g_printerr ("fault proxy: cannot connect to port %u: %s\n", port, error->message);
      return NULL;
    }
  g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  return g_steal_pointer (&socket);
}

static gpointer
accept_thread (gpointer user_data)
{
  FaultProxy *proxy = user_data;

  for (;;)
    {
      g_autoptr(GSocket) client = NULL;
      GSocket *server;
      Conn *conn;
      gboolean stopping;

      g_mutex_lock (&proxy->lock);
      stopping = proxy->stopping;
      g_mutex_unlock (&proxy->lock);
      if (stopping)
        break;
      if (!g_socket_condition_timed_wait (proxy->listener, G_IO_IN, POLL_MS * 1000, NULL, NULL))
        continue;
      client = g_socket_accept (proxy->listener, NULL, NULL);
      if (client == NULL)
        continue;
      g_socket_set_option (client, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
      server = connect_upstream (proxy->upstream_port);
      if (server == NULL)
        continue;

      conn = g_new0 (Conn, 1);
      conn->proxy = proxy;
      conn->client = g_steal_pointer (&client);
      conn->server = server;
      conn->streams[0].skip = 8;  /* the client's protocol header */
      conn->streams[0].cut_at = G_MAXUINT64;
      conn->streams[1].cut_at = G_MAXUINT64;

      g_mutex_lock (&proxy->lock);
      proxy->n_accepted++;
      g_ptr_array_add (proxy->conns, conn);
      conn->thread = g_thread_new ("fault-proxy-pump", pump_thread, conn);
      g_mutex_unlock (&proxy->lock);
    }
  return NULL;
}

FaultProxy *
fault_proxy_new (guint16 upstream_port)
{
  FaultProxy *proxy = g_new0 (FaultProxy, 1);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  g_mutex_init (&proxy->lock);
  g_cond_init (&proxy->cond);
  proxy->conns = g_ptr_array_new_with_free_func ((GDestroyNotify) conn_free);
  proxy->upstream_port = upstream_port;
  proxy->listener = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                  G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_socket_bind (proxy->listener, address, TRUE, &error);
  g_assert_no_error (error);
  g_socket_listen (proxy->listener, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (proxy->listener, &error);
  g_assert_no_error (error);
  proxy->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  proxy->accept_thread = g_thread_new ("fault-proxy-accept", accept_thread, proxy);
  return proxy;
}

void
fault_proxy_free (FaultProxy *proxy)
{
  g_mutex_lock (&proxy->lock);
  proxy->stopping = TRUE;
  g_mutex_unlock (&proxy->lock);
  g_thread_join (proxy->accept_thread);
  /* The accepting thread is gone: nothing adds connections any more. */
  g_ptr_array_unref (proxy->conns);
  g_socket_close (proxy->listener, NULL);
  g_object_unref (proxy->listener);
  g_mutex_clear (&proxy->lock);
  g_cond_clear (&proxy->cond);
  g_free (proxy);
}

guint16
fault_proxy_get_port (FaultProxy *proxy)
{
  return proxy->port;
}

char *
fault_proxy_uri (FaultProxy *proxy,
                 const char *suffix)
{
  return g_strdup_printf ("amqp://guest:guest@127.0.0.1:%u%s", proxy->port, suffix);
}

guint
fault_proxy_get_n_accepted (FaultProxy *proxy)
{
  guint n;

  g_mutex_lock (&proxy->lock);
  n = proxy->n_accepted;
  g_mutex_unlock (&proxy->lock);
  return n;
}

guint
fault_proxy_get_n_open (FaultProxy *proxy)
{
  guint n = 0;

  g_mutex_lock (&proxy->lock);
  for (guint i = 0; i < proxy->conns->len; i++)
    n += !((Conn *) proxy->conns->pdata[i])->done;
  g_mutex_unlock (&proxy->lock);
  return n;
}

typedef enum {
  REQUEST_STALL,
  REQUEST_RELEASE,
  REQUEST_RESET,
  REQUEST_CUT,
} Request;

/* Applies @request to the open connections and waits until each pump has
 * seen it (or, for a reset, closed its sockets). */
static void
request (FaultProxy     *proxy,
         Request         what,
         FaultDirection  directions)
{
  gint64 deadline = g_get_monotonic_time () + CONTROL_TIMEOUT_US;
  g_autoptr(GPtrArray) targets = g_ptr_array_new ();

  g_mutex_lock (&proxy->lock);
  for (guint i = 0; i < proxy->conns->len; i++)
    {
      Conn *conn = proxy->conns->pdata[i];

      if (conn->done)
        continue;
      switch (what)
        {
        case REQUEST_STALL:
          conn->stalled |= directions;
          break;
        case REQUEST_RELEASE:
          conn->stalled = 0;
          break;
        case REQUEST_RESET:
          conn->reset = TRUE;
          break;
        case REQUEST_CUT:
          conn->cut = directions;
          break;
        }
      conn->request_serial++;
      g_ptr_array_add (targets, conn);
    }

  if (what == REQUEST_CUT)
    {
      g_mutex_unlock (&proxy->lock);
      return;
    }

  for (guint i = 0; i < targets->len; i++)
    {
      Conn *conn = targets->pdata[i];

      while (!conn->done && (what == REQUEST_RESET || conn->seen_serial != conn->request_serial))
        if (!g_cond_wait_until (&proxy->cond, &proxy->lock, deadline))
          g_error ("fault proxy: a connection did not take a fault within 10 s");
    }
  g_mutex_unlock (&proxy->lock);
}

void
fault_proxy_stall (FaultProxy     *proxy,
                   FaultDirection  directions)
{
  request (proxy, REQUEST_STALL, directions);
}

void
fault_proxy_release (FaultProxy *proxy)
{
  request (proxy, REQUEST_RELEASE, 0);
}

void
fault_proxy_reset (FaultProxy *proxy)
{
  request (proxy, REQUEST_RESET, 0);
}

void
fault_proxy_cut_mid_frame (FaultProxy     *proxy,
                           FaultDirection  direction)
{
  g_assert (direction == FAULT_DIRECTION_CLIENT_TO_SERVER ||
            direction == FAULT_DIRECTION_SERVER_TO_CLIENT);
  request (proxy, REQUEST_CUT, direction);
}

gboolean
fault_proxy_wait_cut (FaultProxy *proxy,
                      guint       timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gboolean cut;

  g_mutex_lock (&proxy->lock);
  while (proxy->n_cuts == 0)
    if (!g_cond_wait_until (&proxy->cond, &proxy->lock, deadline))
      break;
  cut = proxy->n_cuts > 0;
  g_mutex_unlock (&proxy->lock);
  return cut;
}

void
fault_proxy_throttle (FaultProxy *proxy,
                      gsize       chunk,
                      guint       pause_ms)
{
  g_mutex_lock (&proxy->lock);
  proxy->throttle_chunk = chunk;
  proxy->throttle_pause_ms = pause_ms;
  g_mutex_unlock (&proxy->lock);
}
