/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The structured log fields operators filter on (CAREHARE_URI redacted,
 * CAREHARE_REPLY_CODE, CAREHARE_CHANNEL), seen by a log writer installed
 * for this process only (carehare_test_log_capture_install()): connecting,
 * connected, closed, a channel the server closed (404), a refused login
 * (403) whose password never appears. Blocked and unblocked are checked by
 * test-connection's /connection/blocked/notifications, against a scripted
 * server.
 */
#include "carehare-test-util.h"
#include "carehare-uri.h"

#include <string.h>

#define SECRET "n0t-the-Passw0rd-4c9e"

static void
assert_debug_with_uri (GHashTable *record,
                       const char *redacted)
{
  g_autofree char *debug = g_strdup_printf ("%d", G_LOG_LEVEL_DEBUG);

  g_assert_nonnull (record);
  g_assert_cmpstr (g_hash_table_lookup (record, "(level)"), ==, debug);
  g_assert_cmpstr (g_hash_table_lookup (record, "PRIORITY"), ==, "7");
  g_assert_cmpstr (g_hash_table_lookup (record, "CAREHARE_URI"), ==, redacted);
}

static void
test_connect_close (void)
{
  const char *uri = carehare_test_amqp_uri ();
  g_autofree char *redacted = carehare_uri_redact (uri);
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  GHashTable *record;

  carehare_test_log_capture_clear ();
  conn = carehare_test_connect (uri);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_assert_no_error (error);

  /* The broker's URI carries a password, which the field hides. */
  g_assert_nonnull (strchr (uri, '@'));
  g_assert_null (strstr (redacted, ":guest@"));

  record = carehare_test_log_find ("connecting to ");
  assert_debug_with_uri (record, redacted);
  g_assert_false (g_hash_table_contains (record, "CAREHARE_REPLY_CODE"));
  g_assert_false (g_hash_table_contains (record, "CAREHARE_CHANNEL"));

  record = carehare_test_log_find ("connected to ");
  assert_debug_with_uri (record, redacted);

  /* We closed it: no reply code. */
  record = carehare_test_log_find ("connection to ");
  assert_debug_with_uri (record, redacted);
  g_assert_false (g_hash_table_contains (record, "CAREHARE_REPLY_CODE"));
}

static void
test_channel_closed_by_server (void)
{
  const char *uri = carehare_test_amqp_uri ();
  g_autofree char *redacted = carehare_uri_redact (uri);
  g_autofree char *queue = carehare_test_unique_name ("logging-missing");
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  GHashTable *record;
  const char *channel;

  carehare_test_log_capture_clear ();
  carehare_connection_queue_declare_async (conn, queue, CAREHARE_QUEUE_FLAGS_PASSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  name = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_null (name);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER);

  record = carehare_test_log_find ("channel ");
  assert_debug_with_uri (record, redacted);
  g_assert_cmpstr (g_hash_table_lookup (record, "CAREHARE_REPLY_CODE"), ==, "404");
  channel = g_hash_table_lookup (record, "CAREHARE_CHANNEL");
  g_assert_nonnull (channel);
  g_assert_cmpuint (g_ascii_strtoull (channel, NULL, 10), >=, 1);
  g_assert_nonnull (strstr (g_hash_table_lookup (record, "MESSAGE"), queue));
  /* The connection goes on. */
  g_assert_false (carehare_connection_get_is_closed (conn));
}

static void
closed_cb (CarehareConnection *conn,
           const GError       *error,
           gpointer            user_data)
{
  *(gboolean *) user_data = TRUE;
}

/* An operator closes the connection: the record of its end carries the
 * server's reply code. */
static void
test_connection_closed_by_server (void)
{
  g_autofree char *name = carehare_test_unique_name ("logging-forced");
  g_autofree char *base = carehare_test_amqp_uri_with ("/?connection_name=");
  g_autofree char *uri = g_strconcat (base, name, NULL);
  g_autofree char *redacted = carehare_uri_redact (uri);
  g_autoptr(CarehareConnection) conn = carehare_test_connect (uri);
  gboolean closed = FALSE;
  GHashTable *record;

  g_signal_connect (conn, "closed", G_CALLBACK (closed_cb), &closed);
  carehare_test_log_capture_clear ();
  carehare_test_broker_close_connection (name, "closed by test-logging");
  while (!closed)
    g_main_context_iteration (NULL, TRUE);

  record = carehare_test_log_find ("connection to ");
  assert_debug_with_uri (record, redacted);
  g_assert_cmpstr (g_hash_table_lookup (record, "CAREHARE_REPLY_CODE"), ==, "320");
  g_assert_false (g_hash_table_contains (record, "CAREHARE_CHANNEL"));
}

static void
test_refused_login (void)
{
  g_autofree char *uri = NULL;
  g_autofree char *redacted = NULL;
  g_autoptr(GError) error = NULL;
  GHashTable *record;

  uri = g_strdup_printf ("amqp://guest:%s@127.0.0.1:%s/", SECRET,
                         g_getenv ("CAREHARE_TEST_BROKER_PORT"));
  redacted = carehare_uri_redact (uri);
  carehare_test_log_capture_clear ();
  error = carehare_test_connect_error (uri, 10000);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 403);

  record = carehare_test_log_find ("connecting to ");
  assert_debug_with_uri (record, redacted);
  g_assert_false (g_hash_table_contains (record, "CAREHARE_REPLY_CODE"));

  /* The refusal is logged with its code; no field holds the password. */
  {
    gboolean seen_403 = FALSE;
    GPtrArray *records = carehare_test_log_records ();

    for (guint i = 0; i < records->len; i++)
      {
        GHashTableIter iter;
        const char *key;
        const char *value;

        g_hash_table_iter_init (&iter, records->pdata[i]);
        while (g_hash_table_iter_next (&iter, (gpointer *) &key, (gpointer *) &value))
          g_assert_null (strstr (value, SECRET));
        if (g_strcmp0 (g_hash_table_lookup (records->pdata[i], "CAREHARE_REPLY_CODE"), "403") == 0)
          {
            assert_debug_with_uri (records->pdata[i], redacted);
            seen_403 = TRUE;
          }
      }
    g_assert_true (seen_403);
  }
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  carehare_test_log_capture_install (FALSE);

  g_test_add_func ("/logging/connect-close", test_connect_close);
  g_test_add_func ("/logging/channel-closed-by-server", test_channel_closed_by_server);
  g_test_add_func ("/logging/refused-login", test_refused_login);
  g_test_add_func ("/logging/connection-closed-by-server", test_connection_closed_by_server);
  ret = g_test_run ();
  return ret;
}
