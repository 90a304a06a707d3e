/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-test-util.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static const char *
required_env (const char *name)
{
  const char *value = g_getenv (name);

  if (value == NULL || *value == '\0')
    {
      g_printerr ("%s is not set: start the private broker with "
                  "`test-server/broker start` and `eval \"$(test-server/broker env)\"`, "
                  "or run ./run-tests\n", name);
      g_test_fail ();
      g_assert_not_reached ();
    }
  return value;
}

const char *
carehare_test_amqp_uri (void)
{
  return required_env ("CAREHARE_TEST_AMQP_URI");
}

const char *
carehare_test_amqps_uri (void)
{
  return required_env ("CAREHARE_TEST_AMQPS_URI");
}

const char *
carehare_test_cert_dir (void)
{
  return required_env ("CAREHARE_TEST_CERT_DIR");
}

char *
carehare_test_amqp_uri_with (const char *suffix)
{
  return g_strdup_printf ("amqp://guest:guest@127.0.0.1:%s%s",
                          required_env ("CAREHARE_TEST_BROKER_PORT"), suffix);
}

char *
carehare_test_amqps_uri_with (const char *path_and_query)
{
  return g_strdup_printf ("amqps://localhost:%s%s",
                          required_env ("CAREHARE_TEST_BROKER_TLS_PORT"), path_and_query);
}

char *
carehare_test_unique_name (const char *prefix)
{
  static guint counter;

  return g_strdup_printf ("carehare-test-%s-%d-%u-%u", prefix, (int) getpid (),
                          g_random_int_range (0, 1000000), ++counter);
}

void
carehare_test_store_result (GObject      *source,
                            GAsyncResult *result,
                            gpointer      user_data)
{
  GAsyncResult **out = user_data;

  g_assert_null (*out);
  *out = g_object_ref (result);
}

gboolean
carehare_test_set_flag (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

void
carehare_test_wait_for_result (GAsyncResult **result,
                               guint          timeout_ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (timeout_ms, carehare_test_set_flag, &timed_out);

  while (*result == NULL && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  if (*result == NULL)
    g_error ("no result after %u ms: the operation hangs", timeout_ms);
}

void
carehare_test_run_for (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, carehare_test_set_flag, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

CarehareConnection *
carehare_test_connect (const char *uri)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn;

  carehare_connection_new_async (uri, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 20000);
  conn = carehare_connection_new_finish (result, &error);
  g_assert_no_error (error);
  g_assert_nonnull (conn);
  return conn;
}

GError *
carehare_test_connect_error (const char *uri,
                             guint       timeout_ms)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(CarehareConnection) conn = NULL;
  GError *error = NULL;

  carehare_connection_new_async (uri, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, timeout_ms);
  conn = carehare_connection_new_finish (result, &error);
  g_assert_true ((conn == NULL) == (error != NULL));
  return error;
}

char *
carehare_test_broker_ctl (const char *first_arg,
                          ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;
  va_list args;

  g_ptr_array_add (argv, (char *) required_env ("CAREHARE_TEST_BROKER"));
  g_ptr_array_add (argv, (char *) "ctl");
  va_start (args, first_arg);
  for (const char *arg = first_arg; arg != NULL; arg = va_arg (args, const char *))
    g_ptr_array_add (argv, (char *) arg);
  va_end (args);
  g_ptr_array_add (argv, NULL);

  if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                     &out, &err, &status, &error))
    g_error ("cannot run the broker script: %s", error->message);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("broker ctl %s failed: %s\n%s%s", first_arg, error->message, out, err);
  return g_steal_pointer (&out);
}

void
carehare_test_broker_close_connection (const char *connection_name,
                                       const char *reason)
{
  /* The broker lists a new connection after a short while. */
  for (int attempt = 0; attempt < 50; attempt++)
    {
      g_autofree char *list = carehare_test_broker_ctl ("list_connections", "--quiet",
                                                        "--no-table-headers", "pid",
                                                        "client_properties", NULL);
      g_auto(GStrv) lines = g_strsplit (list, "\n", -1);

      for (char **line = lines; *line != NULL; line++)
        {
          const char *end;
          g_autofree char *pid = NULL;

          if (strstr (*line, connection_name) == NULL || (*line)[0] != '<')
            continue;
          end = strchr (*line, '>');
          g_assert_nonnull (end);
          pid = g_strndup (*line, end - *line + 1);
          g_free (carehare_test_broker_ctl ("close_connection", pid, reason, NULL));
          return;
        }
      carehare_test_run_for (200);
    }
  g_error ("the broker never listed connection %s", connection_name);
}

/* ---- log records ---------------------------------------------------------- */

static GMutex log_lock;
static GPtrArray *log_records;  /* of GHashTable; under log_lock */
static gboolean log_forward;

static GLogWriterOutput
log_capture_writer (GLogLevelFlags   log_level,
                    const GLogField *fields,
                    gsize            n_fields,
                    gpointer         user_data)
{
  GHashTable *record = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  gboolean ours = FALSE;

  for (gsize i = 0; i < n_fields; i++)
    {
      /* Every field as text: a length of -1 means NUL-terminated. */
      char *value = fields[i].length < 0
                      ? g_strdup (fields[i].value)
                      : g_strndup (fields[i].value, fields[i].length);

      if (g_str_equal (fields[i].key, "GLIB_DOMAIN") && g_str_equal (value, "Carehare"))
        ours = TRUE;
      g_hash_table_replace (record, g_strdup (fields[i].key), value);
    }
  if (!ours)
    {
      g_hash_table_unref (record);
      return g_log_writer_default (log_level, fields, n_fields, user_data);
    }
  g_hash_table_replace (record, g_strdup ("(level)"),
                        g_strdup_printf ("%d", (int) (log_level & G_LOG_LEVEL_MASK)));
  g_mutex_lock (&log_lock);
  g_ptr_array_add (log_records, record);
  g_mutex_unlock (&log_lock);
  if (log_forward)
    return g_log_writer_default (log_level, fields, n_fields, user_data);
  return G_LOG_WRITER_HANDLED;
}

void
carehare_test_log_capture_install (gboolean forward)
{
  g_assert_null (log_records);
  log_records = g_ptr_array_new_with_free_func ((GDestroyNotify) g_hash_table_unref);
  log_forward = forward;
  /* Process-wide and settable once: a test executable of its own. */
  g_log_set_writer_func (log_capture_writer, NULL, NULL);
}

void
carehare_test_log_capture_clear (void)
{
  g_mutex_lock (&log_lock);
  g_ptr_array_set_size (log_records, 0);
  g_mutex_unlock (&log_lock);
}

GPtrArray *
carehare_test_log_records (void)
{
  return log_records;
}

GHashTable *
carehare_test_log_find (const char *prefix)
{
  GHashTable *found = NULL;

  g_mutex_lock (&log_lock);
  for (guint i = 0; i < log_records->len && found == NULL; i++)
    {
      GHashTable *record = log_records->pdata[i];
      const char *message = g_hash_table_lookup (record, "MESSAGE");

      if (message != NULL && g_str_has_prefix (message, prefix))
        found = record;
    }
  g_mutex_unlock (&log_lock);
  return found;
}
