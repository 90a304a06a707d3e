/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): the handshake on channel 0,
 * from the protocol header to Connection.Open. Start-Ok chooses the
 * authentication mechanism and carries the password in a buffer of its
 * own that is wiped when written; Tune-Ok settles channel_max, frame_max
 * and heartbeat from the server's offer and the client's wishes.
 * Update-Secret (RabbitMQ 3.8+: a new password or OAuth 2 token for the
 * open connection) goes out the same way as Start-Ok.
 */

#include "carehare-protocol-private.h"

#include <string.h>

CarehareProtocolOp *
carehare_protocol_start (CarehareProtocol           *self,
                         gint64                      now,
                         CarehareProtocolOpCallback  callback,
                         gpointer                    user_data)
{
  CarehareProtocolOp *op;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);
  g_return_val_if_fail (self->handshake == NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_HANDSHAKE, callback, user_data);
  if (self->state != STATE_INITIAL)
    _carehare_protocol_complete (self, op, NULL,
                                 _carehare_protocol_closed_error_for (self->finish_error));
  else
    {
      self->handshake = op;
      self->state = STATE_AWAIT_START;
      self->now = now;
      self->last_read = now;
      self->last_write = now;
      g_byte_array_append (self->out, carehare_wire_protocol_header,
                           sizeof carehare_wire_protocol_header);
    }
  return _carehare_protocol_leave_with_op (self, op);
}

static gboolean
mechanism_offered (GBytes     *mechanisms,
                   const char *name)
{
  gsize size = 0;
  const char *data = mechanisms != NULL ? g_bytes_get_data (mechanisms, &size) : NULL;
  gsize len = strlen (name);

  /* A space-separated list. */
  for (gsize i = 0; i < size;)
    {
      gsize j = i;

      while (j < size && data[j] != ' ')
        j++;
      if (j - i == len && memcmp (data + i, name, len) == 0)
        return TRUE;
      i = j + 1;
    }
  return FALSE;
}

static GVariant *
client_properties (CarehareProtocol *self)
{
  GVariantBuilder caps;
  GVariantBuilder props;
  static const char *const capabilities[] = {
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
  };

  g_variant_builder_init (&caps, G_VARIANT_TYPE_VARDICT);
  for (gsize i = 0; i < G_N_ELEMENTS (capabilities); i++)
    g_variant_builder_add (&caps, "{sv}", capabilities[i], g_variant_new_boolean (TRUE));

  g_variant_builder_init (&props, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&props, "{sv}", "product", g_variant_new_string (self->product));
  g_variant_builder_add (&props, "{sv}", "version", g_variant_new_string (self->version));
  g_variant_builder_add (&props, "{sv}", "platform", g_variant_new_string (self->platform));
  g_variant_builder_add (&props, "{sv}", "capabilities", g_variant_builder_end (&caps));
  if (self->connection_name != NULL)
    g_variant_builder_add (&props, "{sv}", "connection_name",
                           g_variant_new_string (self->connection_name));
  return g_variant_ref_sink (g_variant_builder_end (&props));
}

/* Memory that held a password is zeroed before it is freed: the PLAIN
 * response, the new secret of Update-Secret, and the output segments that
 * carry Connection.Start-Ok and Connection.Update-Secret. */
static void
wipe_byte_array (gpointer data)
{
  GByteArray *array = data;

  memset (array->data, 0, array->len);
  g_byte_array_unref (array);
}

static GBytes *
secret_bytes_new (GByteArray *array)
{
  return g_bytes_new_with_free_func (array->data, array->len, wipe_byte_array, array);
}

/* Encodes @method on channel 0 into an output segment of its own, reserved
 * large enough up front that no reallocation leaves an unwiped copy. */
static void
append_secret_method (CarehareProtocol     *self,
                      const CarehareMethod *method,
                      gsize                 size_hint)
{
  GByteArray *secret = g_byte_array_sized_new ((guint) MIN (size_hint * 2 + 4096, G_MAXUINT));
  const guint8 *start = secret->data;

  if (!carehare_wire_append_method_frame (secret, 0, method, NULL))
    g_critical ("carehare: cannot encode %s", carehare_method_name (method->id));
  if (secret->data != start)
    g_debug ("%s outgrew its reserved buffer", carehare_method_name (method->id));
  /* After what is already waiting (sealed first). */
  _carehare_protocol_add_segment (self, secret_bytes_new (secret));
}

void
_carehare_protocol_handle_start (CarehareProtocol     *self,
                                 const CarehareMethod *method)
{
  const CarehareConnectionStart *start = &method->connection_start;
  CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_START_OK };
  g_autoptr(GVariant) props = NULL;
  g_autoptr(GBytes) response = NULL;
  const char *mechanism;

  if (start->version_major != 0 || start->version_minor != 9)
    {
      _carehare_protocol_fail_unexpected (self, 0, method->id,
                                          "the server offers AMQP %u-%u, not 0-9",
                                          start->version_major, start->version_minor);
      return;
    }

  g_clear_pointer (&self->server_properties, g_variant_unref);
  if (start->server_properties != NULL)
    self->server_properties = g_variant_ref (start->server_properties);

  if (self->mechanism == CAREHARE_AUTH_MECHANISM_EXTERNAL)
    {
      mechanism = "EXTERNAL";
      response = g_bytes_new_static ("", 0);
    }
  else
    {
      gsize user_len = strlen (self->username);
      gsize password_len = strlen (self->password);
      /* Sized once, so no reallocation leaves a copy of the password. */
      GByteArray *plain = g_byte_array_sized_new ((guint) (2 + user_len + password_len));

      mechanism = "PLAIN";
      /* authzid NUL authcid NUL password */
      g_byte_array_append (plain, (const guint8 *) "", 1);
      g_byte_array_append (plain, (const guint8 *) self->username, (guint) user_len);
      g_byte_array_append (plain, (const guint8 *) "", 1);
      g_byte_array_append (plain, (const guint8 *) self->password, (guint) password_len);
      response = secret_bytes_new (plain);
    }

  if (!mechanism_offered (start->mechanisms, mechanism))
    {
      gsize size = 0;
      const char *offered = start->mechanisms != NULL
                            ? g_bytes_get_data (start->mechanisms, &size) : NULL;
      g_autofree char *text = NULL;
      GError *error;

      /* The server's bytes: valid UTF-8 (invalid bytes and NUL replaced),
       * at most 200 bytes, cut at a character boundary. */
      text = g_utf8_make_valid (offered != NULL ? offered : "", (gssize) MIN (size, 1024));
      if (strlen (text) > 200)
        *g_utf8_find_prev_char (text, text + 201) = '\0';
      error = g_error_new (CAREHARE_ERROR, CAREHARE_ERROR_FAILED,
                           "The server does not offer the %s authentication mechanism "
                           "(it offers: %s)", mechanism, text);
      _carehare_protocol_finish (self, error);
      return;
    }

  props = client_properties (self);
  ok.connection_start_ok.client_properties = props;
  ok.connection_start_ok.mechanism = (char *) mechanism;
  ok.connection_start_ok.response = response;
  ok.connection_start_ok.locale = (char *) "en_US";
  append_secret_method (self, &ok, g_bytes_get_size (response) +
                        g_variant_get_size (props));
  self->state = STATE_AWAIT_TUNE;
}

/* channel_max: the client may lower what the server offers, never raise it;
 * 0 from either side means "no limit". */
static guint32
negotiate_limit (guint32 server,
                 gint64  want,
                 guint32 fallback)
{
  guint32 value;

  if (want < 0)
    value = server != 0 ? server : fallback;
  else if (server == 0)
    value = want != 0 ? (guint32) want : fallback;
  else if (want == 0)
    value = server;
  else
    value = MIN (server, (guint32) want);
  return value;
}

/* frame_max: the lower non-zero of the client's and the server's values.
 * The client always has one (CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX unless the
 * URI says otherwise), so the server never decides alone how much a frame
 * may make us buffer. */
static guint32
negotiate_frame_max (guint32 server,
                     gint64  want)
{
  guint32 client = want > 0 ? (guint32) MIN (want, CAREHARE_PROTOCOL_MAX_FRAME_MAX)
                            : CAREHARE_PROTOCOL_DEFAULT_FRAME_MAX;
  guint32 value = server != 0 ? MIN (server, client) : client;

  return MAX (value, CAREHARE_FRAME_MIN_SIZE);
}

/* heartbeat, RabbitMQ's rule (and the Java client's): when either side
 * says 0 the other's value is used, so heartbeats are off only when both
 * say 0; otherwise the smaller. The client asks for
 * CAREHARE_PROTOCOL_DEFAULT_HEARTBEAT unless the URI says otherwise. */
static guint16
negotiate_heartbeat (guint16 server,
                     gint    want)
{
  guint16 client = want >= 0 ? (guint16) want : CAREHARE_PROTOCOL_DEFAULT_HEARTBEAT;

  if (client == 0 || server == 0)
    return MAX (client, server);
  return MIN (client, server);
}

void
_carehare_protocol_handle_tune (CarehareProtocol     *self,
                                const CarehareMethod *method)
{
  const CarehareConnectionTune *tune = &method->connection_tune;
  CarehareMethod ok = { .id = CAREHARE_METHOD_CONNECTION_TUNE_OK };
  CarehareMethod open = { .id = CAREHARE_METHOD_CONNECTION_OPEN };
  guint32 channel_max;

  channel_max = negotiate_limit (tune->channel_max, self->want_channel_max,
                                 G_MAXUINT16);
  self->channel_max = (guint16) MIN (channel_max, G_MAXUINT16);
  self->frame_max = negotiate_frame_max (tune->frame_max, self->want_frame_max);
  self->heartbeat = negotiate_heartbeat (tune->heartbeat, self->want_heartbeat);

  self->channels = g_new0 (Channel, (gsize) self->channel_max + 1);

  ok.connection_tune_ok.channel_max = self->channel_max;
  ok.connection_tune_ok.frame_max = self->frame_max;
  ok.connection_tune_ok.heartbeat = self->heartbeat;
  _carehare_protocol_append_method (self, 0, &ok);

  open.connection_open.virtual_host = self->vhost;
  _carehare_protocol_append_method (self, 0, &open);
  self->state = STATE_AWAIT_OPEN_OK;
}

/* ---- Update-Secret ------------------------------------------------------- */

CarehareProtocolOp *
carehare_protocol_update_secret (CarehareProtocol           *self,
                                 const char                 *new_secret,
                                 const char                 *reason,
                                 CarehareProtocolOpCallback  callback,
                                 gpointer                    user_data)
{
  CarehareMethod method = { .id = CAREHARE_METHOD_CONNECTION_UPDATE_SECRET };
  CarehareProtocolOp *op;
  g_autoptr(GBytes) secret = NULL;
  GByteArray *array;
  gsize secret_len;
  gsize reason_len;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (new_secret != NULL, NULL);
  g_return_val_if_fail (reason != NULL && strlen (reason) <= 255, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_UPDATE_SECRET, callback, user_data);
  secret_len = strlen (new_secret);
  reason_len = strlen (reason);
  if (self->state != STATE_OPEN)
    {
      _carehare_protocol_complete (self, op, NULL,
                                   _carehare_protocol_closed_error_for (self->finish_error));
      return _carehare_protocol_leave_with_op (self, op);
    }
  /* One method frame, within frame_max: 7 bytes of frame header and end,
   * 4 of class and method, 4 + 1 of the two lengths. */
  if (secret_len + reason_len + 16 > self->frame_max)
    {
      _carehare_protocol_complete (self, op, NULL,
                                   g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                "The new secret (%" G_GSIZE_FORMAT " bytes) "
                                                "does not fit in a frame of the %u bytes "
                                                "negotiated", secret_len, self->frame_max));
      return _carehare_protocol_leave_with_op (self, op);
    }

  /* Sized once, so no reallocation leaves a copy of the secret. */
  array = g_byte_array_sized_new ((guint) MAX (secret_len, 1));
  g_byte_array_append (array, (const guint8 *) new_secret, (guint) secret_len);
  secret = secret_bytes_new (array);
  method.connection_update_secret.new_secret = secret;
  method.connection_update_secret.reason = (char *) reason;
  append_secret_method (self, &method, secret_len + reason_len);
  g_queue_push_tail (&self->secret_ops, op);
  return _carehare_protocol_leave_with_op (self, op);
}

void
_carehare_protocol_handle_update_secret_ok (CarehareProtocol *self,
                                            CarehareMethod   *method)
{
  CarehareProtocolOp *op = g_queue_pop_head (&self->secret_ops);

  _carehare_protocol_complete (self, op, method, NULL);
}

/* The connection ends, or the server closed it because of an
 * Update-Secret: every one pending fails with a copy of @error. */
void
_carehare_protocol_fail_update_secrets (CarehareProtocol *self,
                                        const GError     *error)
{
  CarehareProtocolOp *op;

  while (!g_queue_is_empty (&self->secret_ops))
    {
      op = g_queue_pop_head (&self->secret_ops);
      _carehare_protocol_complete (self, op, NULL, g_error_copy (error));
    }
}
