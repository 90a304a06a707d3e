/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into the tests run under valgrind's helgrind (run-tests'
 * helgrind phase): tells helgrind about GLib's own synchronisation.
 *
 * GLib 2.74 implements GMutex, GRecMutex, GRWLock, GCond and its bit locks
 * on futexes, and reference counts on atomic instructions; helgrind models
 * only pthreads, so it would see every hand-off between threads that GLib
 * orders (a GTask returning to its caller's context, an object finalized by
 * the thread that drops the last reference) as a race. Valgrind's function
 * wrapping replaces these GLib functions wherever they are called from,
 * inside GLib too, and each wrapper declares the lock or the
 * happens-before edge with helgrind's client requests. Nothing here changes
 * what the functions do; outside valgrind the wrappers are never called.
 */
#include <glib-object.h>
#include <valgrind/helgrind.h>
#include <valgrind/valgrind.h>

/* Function names in valgrind's Z-encoding: libglib-2.0.so* is
 * libglibZh2Zd0ZdsoZa, libgobject-2.0.so* libgobjectZh2Zd0ZdsoZa. */
#define GLIB_FN(fn) I_WRAP_SONAME_FNNAME_ZU (libglibZh2Zd0ZdsoZa, fn)
#define GOBJECT_FN(fn) I_WRAP_SONAME_FNNAME_ZU (libgobjectZh2Zd0ZdsoZa, fn)

/* Every wrapper is declared before it is defined (-Wmissing-prototypes). */
#define LOCK_WRAPPERS(type, lock, unlock, trylock)                    \
  void GLIB_FN (lock) (type *m);                                             \
  void GLIB_FN (lock) (type *m)                                              \
  {                                                                          \
    OrigFn fn;                                                               \
    VALGRIND_GET_ORIG_FN (fn);                                               \
    CALL_FN_v_W (fn, m);                                                     \
    ANNOTATE_RWLOCK_ACQUIRED (m, 1);                                         \
  }                                                                          \
  void GLIB_FN (unlock) (type *m);                                           \
  void GLIB_FN (unlock) (type *m)                                            \
  {                                                                          \
    OrigFn fn;                                                               \
    VALGRIND_GET_ORIG_FN (fn);                                               \
    ANNOTATE_RWLOCK_RELEASED (m, 1);                                         \
    CALL_FN_v_W (fn, m);                                                     \
  }                                                                          \
  gboolean GLIB_FN (trylock) (type *m);                                      \
  gboolean GLIB_FN (trylock) (type *m)                                       \
  {                                                                          \
    OrigFn fn;                                                               \
    long taken;                                                              \
    VALGRIND_GET_ORIG_FN (fn);                                               \
    CALL_FN_W_W (taken, fn, m);                                              \
    if (taken)                                                               \
      ANNOTATE_RWLOCK_ACQUIRED (m, 1);                                       \
    return taken;                                                            \
  }

LOCK_WRAPPERS (GMutex, g_mutex_lock, g_mutex_unlock, g_mutex_trylock)
LOCK_WRAPPERS (GRWLock, g_rw_lock_writer_lock, g_rw_lock_writer_unlock,
               g_rw_lock_writer_trylock)
LOCK_WRAPPERS (GRWLock, g_rw_lock_reader_lock, g_rw_lock_reader_unlock,
               g_rw_lock_reader_trylock)

/* Helgrind's locks do not nest: a GRecMutex is declared taken when a
 * thread first takes it and released when it gives it back fully. Each
 * thread holds few at once; the depths are kept per thread. */
#define MAX_REC_MUTEXES 32

static __thread struct {
  GRecMutex *mutex;
  int depth;
} rec_held[MAX_REC_MUTEXES];

static int *
rec_depth (GRecMutex *mutex)
{
  int i, free_slot = -1;

  for (i = 0; i < MAX_REC_MUTEXES; i++)
    {
      if (rec_held[i].mutex == mutex)
        return &rec_held[i].depth;
      if (rec_held[i].depth == 0 && free_slot < 0)
        free_slot = i;
    }
  if (free_slot < 0)
    return NULL;
  rec_held[free_slot].mutex = mutex;
  return &rec_held[free_slot].depth;
}

static void
rec_taken (GRecMutex *mutex)
{
  int *depth = rec_depth (mutex);

  if (depth != NULL && (*depth)++ == 0)
    ANNOTATE_RWLOCK_ACQUIRED (mutex, 1);
}

void GLIB_FN (g_rec_mutex_lock) (GRecMutex *mutex);
void
GLIB_FN (g_rec_mutex_lock) (GRecMutex *mutex)
{
  OrigFn fn;

  VALGRIND_GET_ORIG_FN (fn);
  CALL_FN_v_W (fn, mutex);
  rec_taken (mutex);
}

gboolean GLIB_FN (g_rec_mutex_trylock) (GRecMutex *mutex);
gboolean
GLIB_FN (g_rec_mutex_trylock) (GRecMutex *mutex)
{
  OrigFn fn;
  long taken;

  VALGRIND_GET_ORIG_FN (fn);
  CALL_FN_W_W (taken, fn, mutex);
  if (taken)
    rec_taken (mutex);
  return taken;
}

void GLIB_FN (g_rec_mutex_unlock) (GRecMutex *mutex);
void
GLIB_FN (g_rec_mutex_unlock) (GRecMutex *mutex)
{
  OrigFn fn;
  int *depth = rec_depth (mutex);

  VALGRIND_GET_ORIG_FN (fn);
  if (depth != NULL && *depth > 0 && --(*depth) == 0)
    ANNOTATE_RWLOCK_RELEASED (mutex, 1);
  CALL_FN_v_W (fn, mutex);
}

/* GCond needs nothing: g_cond_wait() and g_cond_wait_until() give the
 * mutex back and take it again through g_mutex_unlock() and g_mutex_lock(),
 * which are wrapped above. */

/* Bit locks: the lock is the address and bit. */
#define BIT_LOCK_WRAPPERS(type, lock, unlock)                                 \
  void GLIB_FN (lock) (type address, gint bit);                              \
  void GLIB_FN (lock) (type address, gint bit)                               \
  {                                                                          \
    OrigFn fn;                                                               \
    VALGRIND_GET_ORIG_FN (fn);                                               \
    CALL_FN_v_WW (fn, address, bit);                                         \
    ANNOTATE_RWLOCK_ACQUIRED ((char *) address + bit, 1);                    \
  }                                                                          \
  void GLIB_FN (unlock) (type address, gint bit);                            \
  void GLIB_FN (unlock) (type address, gint bit)                             \
  {                                                                          \
    OrigFn fn;                                                               \
    VALGRIND_GET_ORIG_FN (fn);                                               \
    ANNOTATE_RWLOCK_RELEASED ((char *) address + bit, 1);                    \
    CALL_FN_v_WW (fn, address, bit);                                         \
  }

BIT_LOCK_WRAPPERS (volatile gint *, g_bit_lock, g_bit_unlock)
BIT_LOCK_WRAPPERS (volatile void *, g_pointer_bit_lock, g_pointer_bit_unlock)

/* g_once_init_enter()'s fast path is an atomic read of what
 * g_once_init_leave() stored. */
gboolean GLIB_FN (g_once_init_enter) (volatile void *location);
gboolean
GLIB_FN (g_once_init_enter) (volatile void *location)
{
  OrigFn fn;
  long first;

  VALGRIND_GET_ORIG_FN (fn);
  CALL_FN_W_W (first, fn, location);
  ANNOTATE_HAPPENS_AFTER (location);
  return first;
}

void GLIB_FN (g_once_init_leave) (volatile void *location, gsize result);
void
GLIB_FN (g_once_init_leave) (volatile void *location, gsize result)
{
  OrigFn fn;

  VALGRIND_GET_ORIG_FN (fn);
  ANNOTATE_HAPPENS_BEFORE (location);
  CALL_FN_v_WW (fn, location, result);
}

/* Reference counts: whatever a thread did with an object happens before
 * the finalization by whichever thread drops the last reference. */
#define UNREF_WRAPPER(FN, fn_name)                                            \
  void FN (fn_name) (gpointer object);                                       \
  void FN (fn_name) (gpointer object)                                        \
  {                                                                          \
    OrigFn fn;                                                               \
    VALGRIND_GET_ORIG_FN (fn);                                               \
    if (object != NULL)                                                      \
      {                                                                      \
        ANNOTATE_HAPPENS_BEFORE (object);                                    \
        ANNOTATE_HAPPENS_AFTER (object);                                     \
      }                                                                      \
    CALL_FN_v_W (fn, object);                                                \
  }

UNREF_WRAPPER (GOBJECT_FN, g_object_unref)
UNREF_WRAPPER (GLIB_FN, g_bytes_unref)
UNREF_WRAPPER (GLIB_FN, g_variant_unref)
UNREF_WRAPPER (GLIB_FN, g_main_context_unref)
UNREF_WRAPPER (GLIB_FN, g_source_unref)
UNREF_WRAPPER (GLIB_FN, g_atomic_rc_box_release)
UNREF_WRAPPER (GLIB_FN, g_rc_box_release)
UNREF_WRAPPER (GLIB_FN, g_hash_table_unref)
UNREF_WRAPPER (GLIB_FN, g_ptr_array_unref)
UNREF_WRAPPER (GLIB_FN, g_byte_array_unref)
