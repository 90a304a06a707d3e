/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "carehare-consumer-result-private.h"

static void next_result_iface_init (GAsyncResultIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NextResult, next_result, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_ASYNC_RESULT, next_result_iface_init))

static void
next_result_finalize (GObject *object)
{
  NextResult *r = NEXT_RESULT (object);

  g_assert (r->cancelled_id == 0);
  if (r->value != NULL)
    r->value_free (r->value);
  g_clear_error (&r->error);
  g_clear_object (&r->cancellable);
  g_clear_pointer (&r->context, g_main_context_unref);
  g_clear_object (&r->consumer);
  G_OBJECT_CLASS (next_result_parent_class)->finalize (object);
}

static void
next_result_class_init (NextResultClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = next_result_finalize;
}

static void
next_result_init (NextResult *r)
{
}

static gpointer
next_result_get_user_data (GAsyncResult *result)
{
  return NEXT_RESULT (result)->user_data;
}

static GObject *
next_result_get_source_object (GAsyncResult *result)
{
  return g_object_ref (G_OBJECT (NEXT_RESULT (result)->consumer));
}

static gboolean
next_result_is_tagged (GAsyncResult *result,
                       gpointer      source_tag)
{
  return NEXT_RESULT (result)->source_tag == source_tag;
}

static void
next_result_iface_init (GAsyncResultIface *iface)
{
  iface->get_user_data = next_result_get_user_data;
  iface->get_source_object = next_result_get_source_object;
  iface->is_tagged = next_result_is_tagged;
}

NextResult *
next_result_new (CarehareConsumer    *consumer,
                 gboolean             batch,
                 guint                max,
                 gpointer             source_tag,
                 GCancellable        *cancellable,
                 GAsyncReadyCallback  callback,
                 gpointer             user_data)
{
  NextResult *r = g_object_new (NEXT_TYPE_RESULT, NULL);
  GSource *current = g_main_current_source ();

  r->consumer = g_object_ref (consumer);
  r->batch = batch;
  r->max = max;
  r->source_tag = source_tag;
  r->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  r->callback = callback;
  r->user_data = user_data;
  r->context = g_main_context_ref_thread_default ();
  r->creation_time = current != NULL ? g_source_get_time (current) : 0;
  return r;
}

/* Runs the callback, with the caller's context thread-default as GTask
 * does. It nearly always is already (the callback runs in a dispatch of
 * that context, in the thread that made the call): then the push and pop,
 * a list node, a lock and two thread-local lookups per message, are
 * skipped, as in mailbox_invoke(). */
static void
next_result_invoke (NextResult *r)
{
  GMainContext *current;

  if (r->callback == NULL)
    return;
  current = g_main_context_get_thread_default ();
  if ((current != NULL ? current : g_main_context_default ()) == r->context)
    {
      r->callback (G_OBJECT (r->consumer), G_ASYNC_RESULT (r), r->user_data);
      return;
    }
  g_main_context_push_thread_default (r->context);
  r->callback (G_OBJECT (r->consumer), G_ASYNC_RESULT (r), r->user_data);
  g_main_context_pop_thread_default (r->context);
}

static gboolean
next_result_idle_cb (gpointer user_data)
{
  next_result_invoke (user_data);
  return G_SOURCE_REMOVE;
}

/* Completes @r (its outcome set). @served: from serve(), where the program
 * is inside none of our calls, so the call made in this very dispatch may
 * complete at once; else GTask's rule. */
void
next_result_complete (NextResult *r,
                      gboolean    served)
{
  GSource *current = g_main_current_source ();
  g_autoptr(GSource) idle = NULL;

  if (current != NULL && g_source_get_context (current) == r->context &&
      (served || (g_source_get_time (current) > r->creation_time &&
                  !g_cancellable_is_cancelled (r->cancellable))))
    {
      g_object_ref (r);
      next_result_invoke (r);
      g_object_unref (r);
      return;
    }
  idle = g_idle_source_new ();
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, next_result_idle_cb, g_object_ref (r), g_object_unref);
  g_source_set_static_name (idle, "[carehare] next delivery");
  g_source_attach (idle, r->context);
}

void
next_result_set (NextResult     *r,
                 gpointer        value,
                 GDestroyNotify  value_free,
                 GError         *error)
{
  g_assert (!r->returned);
  r->returned = TRUE;
  r->value = value;
  r->value_free = value_free;
  r->error = error;
}

/* The outcome of @result, a NextResult of @self made by @source_tag. */
gpointer
next_result_propagate (CarehareConsumer  *self,
                       GAsyncResult      *result,
                       gpointer           source_tag,
                       GError           **error)
{
  NextResult *r;

  g_return_val_if_fail (NEXT_IS_RESULT (result), NULL);
  r = NEXT_RESULT (result);
  g_return_val_if_fail (r->consumer == self, NULL);
  g_return_val_if_fail (r->source_tag == source_tag, NULL);
  g_return_val_if_fail (r->returned, NULL);

  if (r->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&r->error));
      return NULL;
    }
  return g_steal_pointer (&r->value);
}
