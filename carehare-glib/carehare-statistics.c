/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-statistics-private.h"

/**
 * CarehareStatistics:
 *
 * A snapshot of a connection's counters, from
 * [method@Carehare.Connection.get_statistics].
 *
 * The counters are kept by the connection at all times: plain integers
 * bumped where each event happens, with no lock and no allocation per
 * message (their measured cost, with the commands that measure it, is in
 * `docs/benchmarks.md`, "Cost of the counters"; the "Operations" guide
 * lists what each counts). A snapshot does not change
 * afterwards; take another one to see new values. Counters start at zero
 * when the connection is made and only grow.
 *
 * ```c
 * g_autoptr(CarehareStatistics) stats = carehare_connection_get_statistics (conn);
 * g_message ("%" G_GUINT64_FORMAT " published, %" G_GUINT64_FORMAT " confirmed",
 *            carehare_statistics_get_messages_published (stats),
 *            carehare_statistics_get_messages_confirmed (stats));
 * ```
 */

G_DEFINE_BOXED_TYPE (CarehareStatistics, carehare_statistics,
                     carehare_statistics_copy, carehare_statistics_free)

CarehareStatistics *
_carehare_statistics_new (const CarehareProtocolStats *counters,
                          guint                        channels_open,
                          gint64                       time_since_last_received)
{
  CarehareStatistics *self = g_new0 (CarehareStatistics, 1);

  if (counters != NULL)
    self->counters = *counters;
  self->channels_open = channels_open;
  self->time_since_last_received = time_since_last_received;
  return self;
}

/**
 * carehare_statistics_copy:
 * @self: a snapshot
 *
 * Copies a snapshot.
 *
 * Returns: (transfer full): a copy of @self
 */
CarehareStatistics *
carehare_statistics_copy (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return g_memdup2 (self, sizeof *self);
}

/**
 * carehare_statistics_free:
 * @self: (transfer full): a snapshot
 *
 * Frees a snapshot.
 */
void
carehare_statistics_free (CarehareStatistics *self)
{
  g_free (self);
}

/**
 * carehare_statistics_get_messages_published:
 * @self: a snapshot
 *
 * Gets the number of messages published (including call requests), written out to the broker.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_messages_published (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.messages_published;
}

/**
 * carehare_statistics_get_messages_confirmed:
 * @self: a snapshot
 *
 * Gets the number of published messages the broker confirmed (basic.ack), returned ones included.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_messages_confirmed (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.messages_confirmed;
}

/**
 * carehare_statistics_get_messages_nacked:
 * @self: a snapshot
 *
 * Gets the number of published messages the broker refused (basic.nack).
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_messages_nacked (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.messages_nacked;
}

/**
 * carehare_statistics_get_messages_returned:
 * @self: a snapshot
 *
 * Gets the number of mandatory publishes the broker returned as unroutable.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_messages_returned (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.messages_returned;
}

/**
 * carehare_statistics_get_deliveries_received:
 * @self: a snapshot
 *
 * Gets the number of messages delivered to this connection's consumers.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_deliveries_received (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.deliveries_received;
}

/**
 * carehare_statistics_get_deliveries_acked:
 * @self: a snapshot
 *
 * Gets the number of deliveries acknowledged (each delivery an ack or ack-up-to covered counts once).
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_deliveries_acked (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.deliveries_acked;
}

/**
 * carehare_statistics_get_deliveries_nacked:
 * @self: a snapshot
 *
 * Gets the number of deliveries negatively acknowledged.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_deliveries_nacked (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.deliveries_nacked;
}

/**
 * carehare_statistics_get_bytes_sent:
 * @self: a snapshot
 *
 * Gets the number of bytes handed to the socket.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_bytes_sent (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.bytes_sent;
}

/**
 * carehare_statistics_get_bytes_received:
 * @self: a snapshot
 *
 * Gets the number of bytes read from the socket.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_bytes_received (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.bytes_received;
}

/**
 * carehare_statistics_get_heartbeats_sent:
 * @self: a snapshot
 *
 * Gets the number of heartbeat frames sent.
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_heartbeats_sent (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.heartbeats_sent;
}

/**
 * carehare_statistics_get_heartbeats_missed:
 * @self: a snapshot
 *
 * Gets the number of heartbeat intervals that passed with nothing from the server (each silence counts once).
 *
 * Returns: the count since the connection was made
 */
guint64
carehare_statistics_get_heartbeats_missed (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->counters.heartbeats_missed;
}

/**
 * carehare_statistics_get_channels_open:
 * @self: a snapshot
 *
 * Gets how many AMQP channels the connection had open (pooled operation
 * channels, publisher channels, consumers, the call channel).
 *
 * Returns: the number of open channels
 */
guint
carehare_statistics_get_channels_open (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->channels_open;
}

/**
 * carehare_statistics_get_time_since_last_received:
 * @self: a snapshot
 *
 * Gets how long before the snapshot the last bytes arrived from the
 * server. With heartbeats on, a healthy connection stays under the
 * [property@Carehare.Connection:heartbeat] interval.
 *
 * Returns: microseconds, or -1 if nothing was ever received
 */
gint64
carehare_statistics_get_time_since_last_received (const CarehareStatistics *self)
{
  g_return_val_if_fail (self != NULL, -1);
  return self->time_since_last_received;
}
