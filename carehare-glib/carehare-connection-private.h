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
/* FALSE, with a critical, when called from a thread or main context other
 * than the one @self was created on: the caller then does nothing. */
gboolean          _carehare_connection_check_context (CarehareConnection *self);

G_END_DECLS
