/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a CarehareConnection negotiated and counts: read-only views of its
 * protocol core (heartbeat, frame_max, channel_max, the server's
 * properties, the statistics) and of its transport (the bytes waiting to
 * be written). Uses only the connection's private accessors.
 */
#include "carehare-connection-private.h"

#include "carehare-protocol.h"
#include "carehare-statistics-private.h"
#include "carehare-transport-private.h"

/**
 * carehare_connection_get_heartbeat:
 * @self: a connection
 *
 * Gets the heartbeat interval negotiated with the server.
 *
 * Returns: the negotiated heartbeat interval in seconds, 0 if disabled
 */
guint
carehare_connection_get_heartbeat (CarehareConnection *self)
{
  CarehareProtocol *protocol;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  protocol = _carehare_connection_get_protocol (self);
  return protocol != NULL ? carehare_protocol_get_heartbeat (protocol) : 0;
}

/**
 * carehare_connection_get_frame_max:
 * @self: a connection
 *
 * Gets the largest frame size negotiated with the server.
 *
 * Returns: the negotiated largest frame size in bytes
 */
guint
carehare_connection_get_frame_max (CarehareConnection *self)
{
  CarehareProtocol *protocol;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  protocol = _carehare_connection_get_protocol (self);
  return protocol != NULL ? carehare_protocol_get_frame_max (protocol) : 0;
}

/**
 * carehare_connection_get_channel_max:
 * @self: a connection
 *
 * Gets the number of channels negotiated with the server.
 *
 * Returns: the negotiated number of channels
 */
guint
carehare_connection_get_channel_max (CarehareConnection *self)
{
  CarehareProtocol *protocol;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  protocol = _carehare_connection_get_protocol (self);
  return protocol != NULL ? carehare_protocol_get_channel_max (protocol) : 0;
}

/**
 * carehare_connection_get_server_properties:
 * @self: a connection
 *
 * Gets what the server said of itself when the connection opened.
 *
 * Returns: (transfer none) (nullable): the server's properties as `a{sv}`
 */
GVariant *
carehare_connection_get_server_properties (CarehareConnection *self)
{
  CarehareProtocol *protocol;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);
  protocol = _carehare_connection_get_protocol (self);
  return protocol != NULL ? carehare_protocol_get_server_properties (protocol) : NULL;
}

/**
 * carehare_connection_get_pending_write_bytes: (get-property pending-write-bytes)
 * @self: a connection
 *
 * Gets how many bytes wait in this process to be written to the socket;
 * see [property@Carehare.Connection:pending-write-bytes]. Safe to call
 * from any thread.
 *
 * Returns: the bytes produced and not yet taken by the socket
 */
guint64
carehare_connection_get_pending_write_bytes (CarehareConnection *self)
{
  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), 0);
  return _carehare_transport_get_pending_write_bytes (_carehare_connection_get_transport (self));
}

/**
 * carehare_connection_get_statistics:
 * @self: a connection
 *
 * Takes a snapshot of the connection's counters: messages published,
 * confirmed, nacked and returned; deliveries received, acked and nacked;
 * bytes sent and received; open channels; heartbeats sent and missed; and
 * the time since the last bytes from the server. They are always kept,
 * cheaply (plain integers in the protocol core), so a service can log them
 * periodically or export them. Safe to call at any time, also after the
 * connection closed (then the counters keep their last values). From
 * another thread than the connection's, the snapshot is read without a
 * lock while that thread updates the counters, so they may be a moment
 * apart from one another (see [Threads](threads.html)).
 *
 * Returns: (transfer full): a snapshot; free it with
 *   [method@Carehare.Statistics.free]
 */
CarehareStatistics *
carehare_connection_get_statistics (CarehareConnection *self)
{
  CarehareProtocol *protocol;
  gint64 last_read;

  g_return_val_if_fail (CAREHARE_IS_CONNECTION (self), NULL);

  protocol = _carehare_connection_get_protocol (self);
  if (protocol == NULL)
    return _carehare_statistics_new (NULL, 0, -1);
  last_read = carehare_protocol_get_last_read (protocol);
  return _carehare_statistics_new (carehare_protocol_get_stats (protocol),
                                   carehare_protocol_get_n_open_channels (protocol),
                                   last_read > 0 ? MAX (g_get_monotonic_time () - last_read, 0) : -1);
}
