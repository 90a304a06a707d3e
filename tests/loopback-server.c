/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "loopback-server.h"

#define ACCEPT_TIMEOUT_US (30 * G_TIME_SPAN_SECOND)

struct _LoopbackServer {
  GSocket *listener;        /* owned */
  guint16 port;
  LoopbackServeFunc serve;
  gpointer user_data;
  GThread *thread;
  gint stopping;            /* atomic */
  gint done;                /* atomic */
};

static gpointer
server_thread (gpointer data)
{
  LoopbackServer *server = data;
  gint64 deadline = g_get_monotonic_time () + ACCEPT_TIMEOUT_US;
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketConnection) connection = NULL;

  /* Bounded waits, so that free() can stop a server nobody connected to. */
  while (!g_atomic_int_get (&server->stopping) && g_get_monotonic_time () < deadline)
    if (g_socket_condition_timed_wait (server->listener, G_IO_IN, 50 * 1000, NULL, NULL))
      {
        socket = g_socket_accept (server->listener, NULL, NULL);
        break;
      }

  if (socket != NULL)
    {
      /* Bounded too: a peer that neither writes nor closes ends it. */
      g_socket_set_timeout (socket, 15);
      connection = g_socket_connection_factory_create_connection (socket);
      server->serve (connection, server->user_data);
      g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
    }
  g_atomic_int_set (&server->done, TRUE);
  return NULL;
}

LoopbackServer *
loopback_server_new (LoopbackServeFunc serve,
                     gpointer          user_data)
{
  LoopbackServer *server = g_new0 (LoopbackServer, 1);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  server->serve = serve;
  server->user_data = user_data;
  server->listener = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                   G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_socket_bind (server->listener, address, TRUE, &error);
  g_assert_no_error (error);
  g_socket_listen (server->listener, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (server->listener, &error);
  g_assert_no_error (error);
  server->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  server->thread = g_thread_new ("loopback-server", server_thread, server);
  return server;
}

guint16
loopback_server_get_port (LoopbackServer *server)
{
  return server->port;
}

gboolean
loopback_server_is_done (LoopbackServer *server)
{
  return g_atomic_int_get (&server->done);
}

void
loopback_server_free (LoopbackServer *server)
{
  g_atomic_int_set (&server->stopping, TRUE);
  g_thread_join (server->thread);
  g_socket_close (server->listener, NULL);
  g_object_unref (server->listener);
  g_free (server);
}
