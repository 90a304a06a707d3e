/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Token refresh against RabbitMQ's rabbitmq_auth_backend_oauth2 (issue 15):
 * a node of the project's own (test-server/oauth2) takes JWTs signed with
 * an HS256 key, and this test signs its tokens itself. An expired token is
 * refused at login; a fresh one given with Connection.Update-Secret keeps
 * a connection working past the first token's expiry (one that is not
 * given one is refused once it expired); a token with a bad signature is
 * refused by closing the connection, which the update reports; a session
 * given a new token with set_password keeps its connection and logs in
 * with the new token after a forced reconnection.
 *
 * Needs `test-server/oauth2 start` and `eval "$(test-server/oauth2 env)"`;
 * fails, never skips, without them. Waiting for a token to expire is part
 * of what is tested (3 s); nothing asserts a duration.
 */
#include "carehare-test-util.h"

#include <string.h>

#define TIMEOUT_MS 30000
/* Long enough for two connects and an update-secret before the short-lived
 * token expires even under ASan on a loaded machine (3 s left 2 to 3). */
#define SHORT_LIFE_S 6

static const char *
oauth2_env (const char *name)
{
  const char *value = g_getenv (name);

  if (value == NULL || *value == '\0')
    g_error ("%s is not set: start the node with `test-server/oauth2 start` and "
             "`eval \"$(test-server/oauth2 env)\"`", name);
  return value;
}

static char *
base64url (const guint8 *data,
           gsize         len)
{
  char *text = g_base64_encode (data, len);
  char *padding = strchr (text, '=');

  if (padding != NULL)
    *padding = '\0';
  g_strdelimit (text, "+", '-');
  g_strdelimit (text, "/", '_');
  return text;
}

/* A JWT for the resource server "carehare", user "oauth-user", with every
 * permission on every vhost, expiring at @exp (seconds since the epoch),
 * signed with the node's HS256 key (or a wrong one). */
static char *
make_token (gint64   exp,
            gboolean good_signature)
{
  const char *key = oauth2_env ("CAREHARE_TEST_OAUTH2_KEY");
  g_autofree char *header_json = g_strdup ("{\"alg\":\"HS256\",\"typ\":\"JWT\","
                                           "\"kid\":\"carehare-test-key\"}");
  g_autofree char *payload_json = NULL;
  g_autofree char *header = NULL;
  g_autofree char *payload = NULL;
  g_autofree char *signing_input = NULL;
  g_autofree char *signature = NULL;
  g_autoptr(GHmac) hmac = NULL;
  guint8 digest[32];
  gsize digest_len = sizeof digest;

  payload_json = g_strdup_printf ("{\"sub\":\"oauth-user\",\"aud\":[\"carehare\"],"
                                  "\"exp\":%" G_GINT64_FORMAT ",\"scope\":["
                                  "\"carehare.configure:*/*\",\"carehare.write:*/*\","
                                  "\"carehare.read:*/*\"]}", exp);
  header = base64url ((const guint8 *) header_json, strlen (header_json));
  payload = base64url ((const guint8 *) payload_json, strlen (payload_json));
  signing_input = g_strdup_printf ("%s.%s", header, payload);
  hmac = g_hmac_new (G_CHECKSUM_SHA256, (const guint8 *) (good_signature ? key : "wrong key"),
                     good_signature ? strlen (key) : 9);
  g_hmac_update (hmac, (const guint8 *) signing_input, -1);
  g_hmac_get_digest (hmac, digest, &digest_len);
  signature = base64url (digest, digest_len);
  return g_strdup_printf ("%s.%s", signing_input, signature);
}

static gint64
now_s (void)
{
  return g_get_real_time () / G_USEC_PER_SEC;
}

static char *
uri_with_token (const char *token,
                const char *connection_name)
{
  const char *base = oauth2_env ("CAREHARE_TEST_OAUTH2_URI");

  /* amqp://127.0.0.1:PORT/ -> amqp://oauth-user:TOKEN@127.0.0.1:PORT/ */
  g_assert_true (g_str_has_prefix (base, "amqp://"));
  return g_strdup_printf ("amqp://oauth-user:%s@%s?connection_name=%s", token,
                          base + strlen ("amqp://"),
                          connection_name != NULL ? connection_name : "carehare-oauth2-test");
}

static CarehareConnection *
connect_with_token (const char  *token,
                    GError     **error)
{
  g_autofree char *uri = uri_with_token (token, NULL);
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_new_async (uri, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_new_finish (result, error);
}

static gboolean
update_secret (CarehareConnection  *conn,
               const char          *token,
               GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_update_secret_async (conn, token, "token refreshed", NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_update_secret_finish (conn, result, error);
}

static char *
declare (CarehareConnection  *conn,
         GError             **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  return carehare_connection_queue_declare_finish (conn, result, NULL, NULL, error);
}

static void
close_connection (CarehareConnection *conn)
{
  g_autoptr(GAsyncResult) result = NULL;

  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, TIMEOUT_MS);
  carehare_connection_close_finish (conn, result, NULL);
}

/* ---- tests --------------------------------------------------------------- */

static void
test_expired_token_refused (void)
{
  g_autofree char *expired = make_token (now_s () - 60, TRUE);
  g_autofree char *fresh = make_token (now_s () + 60, TRUE);
  g_autoptr(CarehareConnection) refused = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;

  refused = connect_with_token (expired, &error);
  g_assert_null (refused);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);
  g_clear_error (&error);

  /* The same, fresh: the node takes it. */
  conn = connect_with_token (fresh, &error);
  g_assert_no_error (error);
  queue = declare (conn, &error);
  g_assert_no_error (error);
  close_connection (conn);
}

/* Two connections whose tokens expire in SHORT_LIFE_S; one is given a
 * fresh token with update-secret. Past the expiry, it works and the other
 * is refused. */
static void
test_update_secret_keeps_connection (void)
{
  g_autofree char *short_lived = make_token (now_s () + SHORT_LIFE_S, TRUE);
  g_autofree char *fresh = make_token (now_s () + 120, TRUE);
  g_autoptr(CarehareConnection) refreshed = NULL;
  g_autoptr(CarehareConnection) stale = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  gint64 expiry = now_s () + SHORT_LIFE_S;

  refreshed = connect_with_token (short_lived, &error);
  g_assert_no_error (error);
  stale = connect_with_token (short_lived, &error);
  g_assert_no_error (error);
  g_assert_true (update_secret (refreshed, fresh, &error));
  g_assert_no_error (error);

  while (now_s () <= expiry + 1)
    carehare_test_run_for (200);

  queue = declare (refreshed, &error);
  g_assert_no_error (error);
  g_assert_nonnull (queue);
  g_assert_false (carehare_connection_get_is_closed (refreshed));

  g_clear_pointer (&queue, g_free);
  queue = declare (stale, &error);
  g_assert_null (queue);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);
  g_assert_nonnull (strstr (error->message, "expired"));

  close_connection (refreshed);
  close_connection (stale);
}

/* A token the node cannot verify: it closes the connection (530) and the
 * update fails with that. */
static void
test_update_secret_refused (void)
{
  g_autofree char *fresh = make_token (now_s () + 60, TRUE);
  g_autofree char *forged = make_token (now_s () + 60, FALSE);
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GError) error = NULL;

  conn = connect_with_token (fresh, &error);
  g_assert_no_error (error);
  g_assert_false (update_secret (conn, forged, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 530);
  carehare_test_run_for (100);
  g_assert_true (carehare_connection_get_is_closed (conn));
}

static void
connected_cb (CarehareSession    *session,
              CarehareConnection *connection,
              gpointer            user_data)
{
  g_string_append_c (user_data, 'C');
}

static void
disconnected_cb (CarehareSession *session,
                 const GError    *error,
                 gpointer         user_data)
{
  g_string_append_c (user_data, 'D');
}

static void
wait_for_events (GString    *events,
                 const char *expected)
{
  for (guint i = 0; i < TIMEOUT_MS / 50 && strcmp (events->str, expected) != 0; i++)
    carehare_test_run_for (50);
  g_assert_cmpstr (events->str, ==, expected);
}

/* Closes, with rabbitmqctl on the OAuth 2 node, the connection named
 * @name. */
static void
close_on_node (const char *name)
{
  const char *script = oauth2_env ("CAREHARE_TEST_OAUTH2");

  for (int attempt = 0; attempt < 50; attempt++)
    {
      const char *list_argv[] = { script, "ctl", "list_connections", "--quiet",
                                  "--no-table-headers", "pid", "client_properties", NULL };
      g_autofree char *out = NULL;
      g_auto(GStrv) lines = NULL;

      g_assert_true (g_spawn_sync (NULL, (char **) list_argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL,
                                   NULL, NULL, &out, NULL, NULL, NULL));
      lines = g_strsplit (out, "\n", -1);
      for (char **line = lines; *line != NULL; line++)
        if (strstr (*line, name) != NULL && (*line)[0] == '<')
          {
            g_autofree char *pid = g_strndup (*line, strchr (*line, '>') - *line + 1);
            const char *close_argv[] = { script, "ctl", "close_connection", pid,
                                         "forced by test-oauth2", NULL };

            g_assert_true (g_spawn_sync (NULL, (char **) close_argv, NULL,
                                         G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                                         NULL, NULL, NULL, NULL, NULL, NULL));
            return;
          }
      carehare_test_run_for (200);
    }
  g_error ("the OAuth 2 node never listed %s", name);
}

/* A session whose token expires soon is given a fresh one: its
 * connection goes on past the expiry, and after a forced reconnection it
 * logs in with the fresh one (the first one would be refused by now). */
static void
test_session_set_password (void)
{
  g_autofree char *name = carehare_test_unique_name ("oauth2-session");
  g_autofree char *short_lived = make_token (now_s () + SHORT_LIFE_S, TRUE);
  g_autofree char *fresh = make_token (now_s () + 120, TRUE);
  g_autofree char *uri = uri_with_token (short_lived, name);
  const char *uris[] = { uri, NULL };
  g_autoptr(CarehareSession) session = carehare_session_new (uris);
  g_autoptr(GString) events = g_string_new (NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *queue = NULL;
  gint64 expiry = now_s () + SHORT_LIFE_S;

  carehare_session_set_reconnect_delay_min (session, 10);
  carehare_session_set_reconnect_delay_max (session, 200);
  g_signal_connect (session, "connected", G_CALLBACK (connected_cb), events);
  g_signal_connect (session, "disconnected", G_CALLBACK (disconnected_cb), events);
  carehare_session_start (session);
  wait_for_events (events, "C");

  carehare_session_set_password (session, fresh);
  while (now_s () <= expiry + 1)
    carehare_test_run_for (200);
  queue = declare (carehare_session_get_connection (session), &error);
  g_assert_no_error (error);

  close_on_node (name);
  wait_for_events (events, "CDC");
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTED);
  g_clear_pointer (&queue, g_free);
  queue = declare (carehare_session_get_connection (session), &error);
  g_assert_no_error (error);

  {
    g_autoptr(GAsyncResult) result = NULL;

    carehare_session_close_async (session, NULL, carehare_test_store_result, &result);
    carehare_test_wait_for_result (&result, TIMEOUT_MS);
  }
  g_assert_cmpstr (events->str, ==, "CDCD");
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  oauth2_env ("CAREHARE_TEST_OAUTH2_URI");  /* fails at once without the node */

  g_test_add_func ("/oauth2/expired-token-refused", test_expired_token_refused);
  g_test_add_func ("/oauth2/update-secret-keeps-connection", test_update_secret_keeps_connection);
  g_test_add_func ("/oauth2/update-secret-refused", test_update_secret_refused);
  g_test_add_func ("/oauth2/session-set-password", test_session_set_password);
  return g_test_run ();
}
