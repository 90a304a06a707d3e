/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Every copy of the password is wiped before it is freed (issue 13): the
 * URI strings, the URI list a connection tries, the PLAIN response and the
 * output segment that carries Connection.Start-Ok; and (issue 15) the new
 * secret of Connection.Update-Secret and a session's new password, in the
 * URIs it builds with it.
 *
 * This executable replaces malloc(), calloc(), realloc() and free(), as
 * glibc allows a program to: free() looks for the password in every block
 * it is given while the test watches, and realloc() always moves, so that
 * a block outgrown while it held the password is seen too. It is built
 * only without the sanitizers (they own the allocator) and is not run
 * under valgrind (which replaces it too).
 */

#define _GNU_SOURCE  /* memmem() */

#include "carehare-test-util.h"

#include <malloc.h>
#include <string.h>

extern void *__libc_malloc (size_t size);
extern void *__libc_calloc (size_t n, size_t size);
extern void  __libc_free (void *ptr);

#define SECRET "Wipe-Okapi-8841-secret"

static int watching;
static int n_found;

static void
check_block (void *ptr)
{
  if (ptr != NULL && g_atomic_int_get (&watching) &&
      memmem (ptr, malloc_usable_size (ptr), SECRET, strlen (SECRET)) != NULL)
    g_atomic_int_inc (&n_found);
}

void *
malloc (size_t size)
{
  return __libc_malloc (size);
}

void *
calloc (size_t n,
        size_t size)
{
  return __libc_calloc (n, size);
}

void
free (void *ptr)
{
  check_block (ptr);
  __libc_free (ptr);
}

void *
realloc (void   *ptr,
         size_t  size)
{
  void *moved;
  size_t old;

  if (ptr == NULL)
    return __libc_malloc (size);
  if (size == 0)
    {
      free (ptr);
      return NULL;
    }
  moved = __libc_malloc (size);
  if (moved == NULL)
    return NULL;
  old = malloc_usable_size (ptr);
  memcpy (moved, ptr, MIN (old, size));
  free (ptr);
  return moved;
}

static void
watch (void)
{
  g_atomic_int_set (&n_found, 0);
  g_atomic_int_set (&watching, 1);
}

/* Stops watching; returns how many freed blocks held the password. */
static int
unwatch (void)
{
  g_atomic_int_set (&watching, 0);
  return g_atomic_int_get (&n_found);
}

/* The test can fail: a string GLib frees unwiped is seen, through
 * g_free() and through a reallocation. */
static void
test_wipe_detects_copies (void)
{
  char *copy;
  GString *grown;

  watch ();
  copy = g_strdup ("user:" SECRET "@host");
  g_free (copy);
  g_assert_cmpint (unwatch (), ==, 1);

  watch ();
  grown = g_string_new (SECRET);
  for (guint i = 0; i < 10; i++)
    g_string_append (grown, "................................................");
  memset (grown->str, 0, grown->len);
  g_string_free (grown, TRUE);
  g_assert_cmpint (unwatch (), >=, 1);
}

static char *
add_user (void)
{
  char *user = carehare_test_unique_name ("wipeuser");

  g_free (carehare_test_broker_ctl ("add_user", user, SECRET, NULL));
  g_free (carehare_test_broker_ctl ("set_permissions", "-p", "/", user, ".*", ".*", ".*", NULL));
  return user;
}

/* Declares a queue, publishes to it and closes: the password went out
 * in Start-Ok and every object that held it is gone. */
static void
use_and_close (CarehareConnection *conn)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);
  g_autofree char *queue = NULL;

  carehare_connection_queue_declare_async (conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL, NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  queue = carehare_connection_queue_declare_finish (conn, result, NULL, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&result);
  carehare_connection_publish_async (conn, "", queue, body, NULL, CAREHARE_PUBLISH_FLAGS_NONE,
                                     NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_connection_publish_finish (conn, result, &error));
  g_assert_no_error (error);
  g_clear_object (&result);
  carehare_connection_close_async (conn, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_connection_close_finish (conn, result, &error));
  g_assert_no_error (error);
}

static void
test_wipe_uri (void)
{
  g_autofree char *user = add_user ();
  char uri[256];
  CarehareConnection *conn;

  watch ();
  g_snprintf (uri, sizeof uri, "amqp://%s:%s@127.0.0.1:%s/?heartbeat=5", user, SECRET,
              g_getenv ("CAREHARE_TEST_BROKER_PORT"));
  conn = carehare_test_connect (uri);
  use_and_close (conn);
  g_object_unref (conn);
  carehare_test_run_for (50);
  memset (uri, 0, sizeof uri);
  g_assert_cmpint (unwatch (), ==, 0);

  g_free (carehare_test_broker_ctl ("delete_user", user, NULL));
}

/* A URI list: the refused first attempt and the one that connects. */
static void
test_wipe_uri_list (void)
{
  g_autofree char *user = add_user ();
  char refused[256], good[256];
  const char *uris[] = { refused, good, NULL };
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn;

  watch ();
  g_snprintf (refused, sizeof refused, "amqp://guest:%s@127.0.0.1:%s/", SECRET,
              g_getenv ("CAREHARE_TEST_BROKER_PORT"));
  g_snprintf (good, sizeof good, "amqp://%s:%s@127.0.0.1:%s/", user, SECRET,
              g_getenv ("CAREHARE_TEST_BROKER_PORT"));
  carehare_connection_new_for_uris_async (uris, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 20000);
  conn = carehare_connection_new_for_uris_finish (result, &error);
  g_assert_no_error (error);
  use_and_close (conn);
  g_object_unref (conn);
  g_clear_object (&result);
  carehare_test_run_for (50);
  memset (refused, 0, sizeof refused);
  memset (good, 0, sizeof good);
  g_assert_cmpint (unwatch (), ==, 0);

  g_free (carehare_test_broker_ctl ("delete_user", user, NULL));
}

/* A refused login: the error and everything freed with it. */
static void
test_wipe_refused (void)
{
  char uri[256];
  GError *error;

  watch ();
  g_snprintf (uri, sizeof uri, "amqp://guest:%s@127.0.0.1:%s/", SECRET,
              g_getenv ("CAREHARE_TEST_BROKER_PORT"));
  error = carehare_test_connect_error (uri, 20000);
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER);
  g_assert_null (strstr (error->message, SECRET));
  g_error_free (error);
  carehare_test_run_for (50);
  memset (uri, 0, sizeof uri);
  g_assert_cmpint (unwatch (), ==, 0);
}

/* Connection.Update-Secret: the secret's buffers and output segment. */
static void
test_wipe_update_secret (void)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn;

  conn = carehare_test_connect (carehare_test_amqp_uri ());
  watch ();
  carehare_connection_update_secret_async (conn, SECRET, "test-wipe", NULL,
                                           carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_connection_update_secret_finish (conn, result, &error));
  g_assert_no_error (error);
  use_and_close (conn);
  g_object_unref (conn);
  carehare_test_run_for (50);
  g_assert_cmpint (unwatch (), ==, 0);
}

static gboolean
set_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
wait_for_session_state (CarehareSession      *session,
                        CarehareSessionState  state)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (20000, set_flag_cb, &timed_out);

  while (carehare_session_get_state (session) != state && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_assert_cmpint (carehare_session_get_state (session), ==, state);
}

/* A session given the password with set_password (the URI's is wrong):
 * it logs in with it, gives it again to the live connection, and the
 * URIs it built with it are wiped. */
static void
test_wipe_session_password (void)
{
  g_autofree char *user = add_user ();
  char uri[256];
  const char *uris[] = { uri, NULL };
  g_autoptr(GAsyncResult) result = NULL;
  CarehareSession *session;

  watch ();
  g_snprintf (uri, sizeof uri, "amqp://%s:wrong@127.0.0.1:%s/", user,
              g_getenv ("CAREHARE_TEST_BROKER_PORT"));
  session = carehare_session_new (uris);
  carehare_session_set_password (session, SECRET);
  carehare_session_start (session);
  wait_for_session_state (session, CAREHARE_SESSION_STATE_CONNECTED);
  carehare_session_set_password (session, SECRET);
  carehare_test_run_for (100);
  g_assert_cmpint (carehare_session_get_state (session), ==, CAREHARE_SESSION_STATE_CONNECTED);
  carehare_session_close_async (session, NULL, carehare_test_store_result, &result);
  carehare_test_wait_for_result (&result, 10000);
  g_assert_true (carehare_session_close_finish (session, result, NULL));
  g_clear_object (&result);
  g_object_unref (session);
  carehare_test_run_for (50);
  g_assert_cmpint (unwatch (), ==, 0);

  g_free (carehare_test_broker_ctl ("delete_user", user, NULL));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  carehare_test_amqp_uri ();  /* fails at once without the broker */

  g_test_add_func ("/wipe/detects-copies", test_wipe_detects_copies);
  g_test_add_func ("/wipe/uri", test_wipe_uri);
  g_test_add_func ("/wipe/uri-list", test_wipe_uri_list);
  g_test_add_func ("/wipe/refused", test_wipe_refused);
  g_test_add_func ("/wipe/update-secret", test_wipe_update_secret);
  g_test_add_func ("/wipe/session-password", test_wipe_session_password);
  return g_test_run ();
}
