/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-connection.h"
#include "carehare-protocol.h"

G_BEGIN_DECLS

/* For CarehareConsumer: the protocol core (NULL before the connection
 * opened), the main context everything runs on, and "write what the
 * protocol produced and re-arm the timer". */
CarehareProtocol *_carehare_connection_get_protocol (CarehareConnection *self);
GMainContext     *_carehare_connection_get_context  (CarehareConnection *self);
void              _carehare_connection_update       (CarehareConnection *self);

G_END_DECLS
