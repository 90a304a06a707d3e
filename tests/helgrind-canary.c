/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The helgrind phase's canaries (tests/test-helgrind.sh): proof that the
 * phase sees races and that declaring GLib's synchronisation
 * (helgrind-glib-sync.c) hides only what GLib really orders.
 *
 *   helgrind-canary race     two threads write one counter without a lock:
 *                            helgrind must report it
 *   helgrind-canary glib     the same counter under a GMutex, an object
 *                            handed to a GThreadPool and finalized there,
 *                            a GTask returned from a worker thread to the
 *                            main context: helgrind must report nothing
 */
#include <gio/gio.h>

#include <string.h>

#define N 1000

static int counter;
static GMutex counter_lock;

static gpointer
count_racy (gpointer data)
{
  for (int i = 0; i < N; i++)
    counter++;
  return NULL;
}

static gpointer
count_locked (gpointer data)
{
  for (int i = 0; i < N; i++)
    {
      g_mutex_lock (&counter_lock);
      counter++;
      g_mutex_unlock (&counter_lock);
    }
  return NULL;
}

static void
count_in_threads (GThreadFunc func)
{
  GThread *a = g_thread_new ("a", func, NULL);
  GThread *b = g_thread_new ("b", func, NULL);

  g_thread_join (a);
  g_thread_join (b);
}

/* An object filled on this thread, read and dropped on a pool thread. */
static void
read_and_drop (gpointer data,
               gpointer user_data)
{
  GBytes *bytes = data;

  g_assert_cmpuint (g_bytes_get_size (bytes), ==, 4);
  g_bytes_unref (bytes);
}

static void
task_in_thread (GTask        *task,
                gpointer      source_object,
                gpointer      task_data,
                GCancellable *cancellable)
{
  int *value = task_data;

  *value += 1;
  g_task_return_int (task, *value);
}

static void
task_done (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  int *done = user_data;

  *done = (int) g_task_propagate_int (G_TASK (result), NULL);
}

int
main (int   argc,
      char *argv[])
{
  if (argc == 2 && g_str_equal (argv[1], "race"))
    {
      count_in_threads (count_racy);
      return 0;
    }
  if (argc == 2 && g_str_equal (argv[1], "glib"))
    {
      GThreadPool *pool = g_thread_pool_new (read_and_drop, NULL, 2, FALSE, NULL);
      int done = 0;
      GTask *task;

      count_in_threads (count_locked);
      g_assert_cmpint (counter, ==, 2 * N);

      for (int i = 0; i < 100; i++)
        {
          char *data = g_malloc (4);

          memcpy (data, "abcd", 4);
          g_thread_pool_push (pool, g_bytes_new_take (data, 4), NULL);
        }
      g_thread_pool_free (pool, FALSE, TRUE);

      task = g_task_new (NULL, NULL, task_done, &done);
      g_task_set_task_data (task, g_new0 (int, 1), g_free);
      g_task_run_in_thread (task, task_in_thread);
      g_object_unref (task);
      while (done == 0)
        g_main_context_iteration (NULL, TRUE);
      g_assert_cmpint (done, ==, 1);
      return 0;
    }
  g_printerr ("usage: helgrind-canary race|glib\n");
  return 2;
}
