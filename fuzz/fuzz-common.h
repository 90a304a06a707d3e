/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "carehare-wire.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Any GLib critical or warning is a bug the fuzzer should report. */
static inline void
fuzz_init (void)
{
  static gboolean initialized = FALSE;

  if (!initialized)
    {
      g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }
}

/* A broker's side of the handshake, for the targets that play one: appends
 * the method frame (on channel 0) that answers the client's protocol header
 * (@id CAREHARE_METHOD_CONNECTION_START, offering PLAIN and AMQPLAIN), its
 * Start-Ok (CAREHARE_METHOD_CONNECTION_TUNE with the given limits) or its
 * Open (CAREHARE_METHOD_CONNECTION_OPEN_OK). */
static inline void
fuzz_append_handshake_frame (GByteArray       *out,
                             CarehareMethodId  id,
                             guint16           channel_max,
                             guint32           frame_max,
                             guint16           heartbeat)
{
  g_autoptr(GBytes) mechanisms = g_bytes_new_static ("PLAIN AMQPLAIN", 14);
  g_autoptr(GBytes) locales = g_bytes_new_static ("en_US", 5);
  CarehareMethod m = { .id = id };

  switch (id)
    {
    case CAREHARE_METHOD_CONNECTION_START:
      m.connection_start.version_major = 0;
      m.connection_start.version_minor = 9;
      m.connection_start.mechanisms = mechanisms;
      m.connection_start.locales = locales;
      break;
    case CAREHARE_METHOD_CONNECTION_TUNE:
      m.connection_tune.channel_max = channel_max;
      m.connection_tune.frame_max = frame_max;
      m.connection_tune.heartbeat = heartbeat;
      break;
    case CAREHARE_METHOD_CONNECTION_OPEN_OK:
      break;
    default:
      g_assert_not_reached ();
    }
  g_assert (carehare_wire_append_method_frame (out, 0, &m, NULL));
}
