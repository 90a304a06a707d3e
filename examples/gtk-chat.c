/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A GTK 4 chat over RabbitMQ: every window publishes what is typed to a
 * fanout exchange and lists every message that exchange routes to its own
 * server-named, exclusive queue.
 *
 *   gtk-chat [--uri URI] [--exchange NAME] [--self-test]
 *
 * carehare-glib runs on the thread-default GMainContext, which in a GTK
 * program is the one GTK dispatches: no threads, no locks, and every
 * callback may touch widgets directly. Errors are shown in the window.
 *
 * Under the status line, the connection's state and its counters
 * (carehare_connection_get_statistics()), refreshed every second.
 *
 * --self-test publishes one message from the entry, waits until it shows up
 * in the list and the counters agree, and exits 0 (1 on an error, or after
 * 20 seconds).
 */
#include <carehare-glib/carehare-glib.h>
#include <gtk/gtk.h>

#define SELF_TEST_TIMEOUT_SECONDS 20

typedef struct {
  GtkApplication *app;        /* owned */
  GtkWidget *window;          /* borrowed: the application holds it */
  GtkWidget *status;
  GtkWidget *counters;
  GtkWidget *list;
  GtkWidget *entry;
  GtkWidget *send_button;

  /* Options */
  char *uri;
  char *exchange;
  gboolean self_test;

  CarehareConnection *conn;   /* owned */
  CarehareConsumer *consumer; /* owned */
  char *queue;                /* owned: the server-named queue */
  GCancellable *cancellable;  /* owned: cancelled when the window goes */

  char *self_test_text;       /* owned */
  guint self_test_timeout_id;
  guint counters_timeout_id;
  gboolean connect_failed;
  int exit_status;
} Chat;

static void
set_status (Chat       *chat,
            const char *text,
            gboolean    is_error)
{
  gtk_label_set_text (GTK_LABEL (chat->status), text);
  if (is_error)
    gtk_widget_add_css_class (chat->status, "error");
  else
    gtk_widget_remove_css_class (chat->status, "error");
}

static void
show_error (Chat         *chat,
            const char   *what,
            const GError *error)
{
  g_autofree char *text = NULL;

  /* Cancelled: the window is closing, nothing to show. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  text = g_strdup_printf ("%s failed: %s\n%s", what, error->message,
                          carehare_error_is_transient (error)
                          ? "It may work if you try again later."
                          : "Trying again will not help until the cause is fixed.");
  set_status (chat, text, TRUE);
  gtk_widget_set_sensitive (chat->send_button, FALSE);
  gtk_widget_set_sensitive (chat->entry, FALSE);
  if (chat->self_test)
    {
      g_printerr ("%s\n", text);
      chat->exit_status = 1;
      g_application_quit (G_APPLICATION (chat->app));
    }
}

static void
append_message (Chat       *chat,
                const char *text,
                gboolean    redelivered)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%H:%M:%S");
  g_autofree char *line = g_strdup_printf ("%s  %s%s", stamp, text, redelivered ? " (again)" : "");
  GtkWidget *label = gtk_label_new (line);
  GtkAdjustment *adjustment;

  gtk_label_set_xalign (GTK_LABEL (label), 0.0);
  gtk_label_set_wrap (GTK_LABEL (label), TRUE);
  gtk_label_set_selectable (GTK_LABEL (label), TRUE);
  gtk_widget_set_margin_start (label, 6);
  gtk_widget_set_margin_end (label, 6);
  gtk_widget_set_margin_top (label, 3);
  gtk_widget_set_margin_bottom (label, 3);
  gtk_list_box_append (GTK_LIST_BOX (chat->list), label);

  /* Follow the conversation. */
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (gtk_widget_get_parent (chat->list)));
  if (adjustment != NULL)
    gtk_adjustment_set_value (adjustment, gtk_adjustment_get_upper (adjustment));
}

/* ---- connection state and counters ------------------------------------------ */

static const char *
connection_state (Chat *chat)
{
  if (chat->conn == NULL)
    return chat->connect_failed ? "not connected" : "connecting";
  if (carehare_connection_get_is_closed (chat->conn))
    return "closed";
  if (carehare_connection_get_is_blocked (chat->conn))
    return "blocked by the broker (publishes wait)";
  return "connected";
}

static void
update_counters (Chat *chat)
{
  g_autoptr(CarehareStatistics) stats = NULL;
  g_autofree char *text = NULL;
  g_autofree char *out = NULL;
  g_autofree char *in = NULL;

  if (chat->counters == NULL)
    return;  /* the window is gone */
  if (chat->conn == NULL)
    {
      text = g_strdup_printf ("Connection: %s", connection_state (chat));
      gtk_label_set_text (GTK_LABEL (chat->counters), text);
      return;
    }
  stats = carehare_connection_get_statistics (chat->conn);
  out = g_format_size (carehare_statistics_get_bytes_sent (stats));
  in = g_format_size (carehare_statistics_get_bytes_received (stats));
  text = g_strdup_printf ("Connection: %s · sent %" G_GUINT64_FORMAT " (confirmed %" G_GUINT64_FORMAT
                          ") · received %" G_GUINT64_FORMAT " · %u channels · %s out, %s in",
                          connection_state (chat),
                          carehare_statistics_get_messages_published (stats),
                          carehare_statistics_get_messages_confirmed (stats),
                          carehare_statistics_get_deliveries_received (stats),
                          carehare_statistics_get_channels_open (stats), out, in);
  gtk_label_set_text (GTK_LABEL (chat->counters), text);
}

static gboolean
counters_timeout_cb (gpointer user_data)
{
  update_counters (user_data);
  return G_SOURCE_CONTINUE;
}

static void
blocked_changed_cb (GObject    *object,
                    GParamSpec *pspec,
                    gpointer    user_data)
{
  update_counters (user_data);
}

/* ---- connection closed behind our back ------------------------------------ */

static void
connection_closed_cb (CarehareConnection *conn,
                      const GError       *error,
                      gpointer            user_data)
{
  Chat *chat = user_data;

  update_counters (chat);
  if (error != NULL)
    show_error (chat, "The connection", error);
}

/* ---- receiving -------------------------------------------------------------- */

static void
delivery_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Chat *chat = user_data;
  CarehareConsumer *consumer = CAREHARE_CONSUMER (source);
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;
  g_autofree char *text = NULL;
  GBytes *body;

  delivery = carehare_consumer_next_delivery_finish (consumer, result, &error);
  if (delivery == NULL)
    {
      /* CHANNEL_CLOSED: we closed it; CONNECTION_CLOSED: the closed signal
       * shows the reason. */
      if (!g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED) &&
          !g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED))
        show_error (chat, "Receiving", error);
      return;
    }

  body = carehare_delivery_get_body (delivery);
  text = g_utf8_make_valid (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
  append_message (chat, text, carehare_delivery_get_redelivered (delivery));
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));

  update_counters (chat);

  if (chat->self_test && g_strcmp0 (text, chat->self_test_text) == 0)
    {
      g_autoptr(CarehareStatistics) stats = carehare_connection_get_statistics (chat->conn);
      const char *shown = gtk_label_get_text (GTK_LABEL (chat->counters));

      g_print ("self-test: received \"%s\"\n", text);
      g_print ("self-test: %s\n", shown);
      /* This window published one message, confirmed before it came back
       * (RabbitMQ confirms once routed), and received at least that one;
       * the line under the status shows the state and that count. */
      chat->exit_status = (carehare_statistics_get_messages_published (stats) == 1 &&
                           carehare_statistics_get_deliveries_received (stats) >= 1 &&
                           g_str_has_prefix (shown, "Connection: connected · sent 1 (")) ? 0 : 1;
      if (chat->exit_status != 0)
        g_printerr ("self-test: the counters or the line showing them disagree\n");
      g_clear_handle_id (&chat->self_test_timeout_id, g_source_remove);
      gtk_window_close (GTK_WINDOW (chat->window));
      return;
    }
  carehare_consumer_next_delivery_async (consumer, chat->cancellable, delivery_cb, chat);
}

/* ---- sending ---------------------------------------------------------------- */

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Chat *chat = user_data;
  g_autoptr(GError) error = NULL;

  if (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    set_status (chat, "Sent.", FALSE);
  else
    show_error (chat, "Sending", error);
  update_counters (chat);
}

static void
send_cb (GtkWidget *widget,
         gpointer   user_data)
{
  Chat *chat = user_data;
  GtkEntryBuffer *buffer = gtk_entry_get_buffer (GTK_ENTRY (chat->entry));
  const char *text = gtk_entry_buffer_get_text (buffer);
  g_autoptr(CarehareProperties) props = NULL;
  g_autoptr(GBytes) body = NULL;

  if (chat->conn == NULL || *text == '\0')
    return;

  props = carehare_properties_new ();
  carehare_properties_set_content_type (props, "text/plain; charset=utf-8");
  carehare_properties_set_app_id (props, "carehare-gtk-chat");
  body = g_bytes_new (text, strlen (text));
  /* Not MANDATORY: a fanout exchange with our queue bound always routes. */
  carehare_connection_publish_async (chat->conn, chat->exchange, "", body, props,
                                     CAREHARE_PUBLISH_FLAGS_NONE, chat->cancellable,
                                     published_cb, chat);
  set_status (chat, "Sending…", FALSE);
  gtk_entry_buffer_set_text (buffer, "", 0);
}

/* ---- connecting --------------------------------------------------------------- */

static void
consumer_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Chat *chat = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *status = NULL;

  chat->consumer = carehare_connection_acking_consumer_finish (CAREHARE_CONNECTION (source),
                                                              result, &error);
  if (chat->consumer == NULL)
    {
      show_error (chat, "Listening", error);
      return;
    }
  status = g_strdup_printf ("Connected: exchange “%s”, queue “%s”.", chat->exchange, chat->queue);
  set_status (chat, status, FALSE);
  gtk_widget_set_sensitive (chat->entry, TRUE);
  gtk_widget_set_sensitive (chat->send_button, TRUE);
  gtk_widget_grab_focus (chat->entry);
  carehare_consumer_next_delivery_async (chat->consumer, chat->cancellable, delivery_cb, chat);

  if (chat->self_test)
    {
      /* As a person would: type into the entry, press the button. */
      chat->self_test_text = g_strdup_printf ("self-test %s", chat->queue);
      gtk_editable_set_text (GTK_EDITABLE (chat->entry), chat->self_test_text);
      gtk_widget_activate (chat->send_button);
    }
}

static void
bound_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Chat *chat = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_queue_bind_finish (CAREHARE_CONNECTION (source), result, &error))
    {
      show_error (chat, "Binding the queue", error);
      return;
    }
  /* Prefetch 50: what the list can take in one go. */
  carehare_connection_acking_consumer_async (chat->conn, chat->queue, 0, 50, chat->cancellable,
                                             consumer_cb, chat);
}

static void
queue_declared_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  Chat *chat = user_data;
  g_autoptr(GError) error = NULL;

  chat->queue = carehare_connection_queue_declare_finish (CAREHARE_CONNECTION (source), result,
                                                         NULL, NULL, &error);
  if (chat->queue == NULL)
    {
      show_error (chat, "Declaring a queue", error);
      return;
    }
  carehare_connection_queue_bind_async (chat->conn, chat->queue, chat->exchange, "", NULL,
                                        chat->cancellable, bound_cb, chat);
}

static void
exchange_declared_cb (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  Chat *chat = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_exchange_declare_finish (CAREHARE_CONNECTION (source), result, &error))
    {
      show_error (chat, "Declaring the exchange", error);
      return;
    }
  /* Server-named and exclusive: one queue per window, gone with it. */
  carehare_connection_queue_declare_async (chat->conn, "", CAREHARE_QUEUE_FLAGS_EXCLUSIVE, NULL,
                                           chat->cancellable, queue_declared_cb, chat);
}

static void
connected_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Chat *chat = user_data;
  g_autoptr(GError) error = NULL;

  chat->conn = carehare_connection_new_finish (result, &error);
  if (chat->conn == NULL)
    {
      chat->connect_failed = TRUE;
      update_counters (chat);
      show_error (chat, "Connecting", error);
      return;
    }
  g_signal_connect (chat->conn, "closed", G_CALLBACK (connection_closed_cb), chat);
  g_signal_connect (chat->conn, "notify::is-blocked", G_CALLBACK (blocked_changed_cb), chat);
  update_counters (chat);
  carehare_connection_exchange_declare_async (chat->conn, chat->exchange, "fanout",
                                              CAREHARE_EXCHANGE_FLAGS_NONE, NULL,
                                              chat->cancellable, exchange_declared_cb, chat);
}

/* ---- the window ----------------------------------------------------------------- */

static void
connection_closed_on_exit_cb (GObject      *source,
                              GAsyncResult *result,
                              gpointer      user_data)
{
  GApplication *app = user_data;

  /* An error here was already shown (or does not matter any more). */
  carehare_connection_close_finish (CAREHARE_CONNECTION (source), result, NULL);
  g_application_release (app);
}

static gboolean
close_request_cb (GtkWindow *window,
                  gpointer   user_data)
{
  Chat *chat = user_data;

  g_cancellable_cancel (chat->cancellable);
  g_clear_handle_id (&chat->counters_timeout_id, g_source_remove);
  chat->counters = NULL;
  if (chat->conn != NULL)
    {
      /* Keep the application (and its main loop) alive until the broker
       * saw a clean close, then let it end. */
      g_signal_handlers_disconnect_by_data (chat->conn, chat);
      g_application_hold (G_APPLICATION (chat->app));
      carehare_connection_close_async (chat->conn, NULL, connection_closed_on_exit_cb, chat->app);
    }
  return FALSE; /* let the window close */
}

static gboolean
self_test_timeout_cb (gpointer user_data)
{
  Chat *chat = user_data;

  chat->self_test_timeout_id = 0;
  g_printerr ("self-test: the message did not appear within %d seconds\n", SELF_TEST_TIMEOUT_SECONDS);
  chat->exit_status = 1;
  g_application_quit (G_APPLICATION (chat->app));
  return G_SOURCE_REMOVE;
}

static void
activate_cb (GApplication *app,
             gpointer      user_data)
{
  Chat *chat = user_data;
  GtkWidget *box, *scrolled, *row;
  g_autoptr(GtkCssProvider) css = gtk_css_provider_new ();

  if (chat->window != NULL)
    {
      gtk_window_present (GTK_WINDOW (chat->window));
      return;
    }

  gtk_css_provider_load_from_data (css, "label.error { color: #c01c28; }", -1);
  gtk_style_context_add_provider_for_display (gdk_display_get_default (), GTK_STYLE_PROVIDER (css),
                                              GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);

  chat->window = gtk_application_window_new (chat->app);
  gtk_window_set_title (GTK_WINDOW (chat->window), "Carehare chat");
  gtk_window_set_default_size (GTK_WINDOW (chat->window), 480, 360);
  g_signal_connect (chat->window, "close-request", G_CALLBACK (close_request_cb), chat);

  box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_margin_start (box, 12);
  gtk_widget_set_margin_end (box, 12);
  gtk_widget_set_margin_top (box, 12);
  gtk_widget_set_margin_bottom (box, 12);
  gtk_window_set_child (GTK_WINDOW (chat->window), box);

  chat->status = gtk_label_new ("Connecting…");
  gtk_label_set_xalign (GTK_LABEL (chat->status), 0.0);
  gtk_label_set_wrap (GTK_LABEL (chat->status), TRUE);
  gtk_box_append (GTK_BOX (box), chat->status);

  chat->counters = gtk_label_new ("Connection: connecting");
  gtk_label_set_xalign (GTK_LABEL (chat->counters), 0.0);
  gtk_label_set_wrap (GTK_LABEL (chat->counters), TRUE);
  gtk_widget_add_css_class (chat->counters, "dim-label");
  gtk_widget_add_css_class (chat->counters, "caption");
  gtk_box_append (GTK_BOX (box), chat->counters);

  chat->list = gtk_list_box_new ();
  gtk_list_box_set_selection_mode (GTK_LIST_BOX (chat->list), GTK_SELECTION_NONE);
  gtk_list_box_set_placeholder (GTK_LIST_BOX (chat->list), gtk_label_new ("No messages yet"));
  scrolled = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER, GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scrolled), chat->list);
  gtk_widget_set_vexpand (scrolled, TRUE);
  gtk_widget_add_css_class (scrolled, "frame");
  gtk_box_append (GTK_BOX (box), scrolled);

  row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  chat->entry = gtk_entry_new ();
  gtk_entry_set_placeholder_text (GTK_ENTRY (chat->entry), "Message");
  gtk_widget_set_hexpand (chat->entry, TRUE);
  gtk_widget_set_sensitive (chat->entry, FALSE);
  chat->send_button = gtk_button_new_with_mnemonic ("_Send");
  gtk_widget_add_css_class (chat->send_button, "suggested-action");
  gtk_widget_set_sensitive (chat->send_button, FALSE);
  /* Enter in the entry sends too. */
  g_signal_connect (chat->entry, "activate", G_CALLBACK (send_cb), chat);
  g_signal_connect (chat->send_button, "clicked", G_CALLBACK (send_cb), chat);
  gtk_box_append (GTK_BOX (row), chat->entry);
  gtk_box_append (GTK_BOX (row), chat->send_button);
  gtk_box_append (GTK_BOX (box), row);

  gtk_window_present (GTK_WINDOW (chat->window));

  chat->counters_timeout_id = g_timeout_add_seconds (1, counters_timeout_cb, chat);
  if (chat->self_test)
    chat->self_test_timeout_id = g_timeout_add_seconds (SELF_TEST_TIMEOUT_SECONDS,
                                                        self_test_timeout_cb, chat);
  carehare_connection_new_async (chat->uri, chat->cancellable, connected_cb, chat);
}

static int
handle_local_options_cb (GApplication *app,
                         GVariantDict *options,
                         gpointer      user_data)
{
  Chat *chat = user_data;

  if (chat->uri == NULL)
    chat->uri = g_strdup (g_getenv ("CAREHARE_TEST_AMQP_URI"));
  if (chat->uri == NULL)
    chat->uri = g_strdup ("amqp://guest:guest@localhost:5672/");
  if (chat->exchange == NULL)
    chat->exchange = g_strdup ("carehare-chat");
  if (chat->self_test)
    chat->exit_status = 1; /* until the message shows up */
  return -1; /* go on with the default handling: activate */
}

int
main (int   argc,
      char *argv[])
{
  Chat chat = { 0 };
  int status;
  const GOptionEntry entries[] = {
    { "uri", 0, 0, G_OPTION_ARG_STRING, &chat.uri,
      "Broker URI (default: $CAREHARE_TEST_AMQP_URI, else amqp://guest:guest@localhost:5672/)", "URI" },
    { "exchange", 0, 0, G_OPTION_ARG_STRING, &chat.exchange,
      "Fanout exchange to chat on (default: carehare-chat)", "NAME" },
    { "self-test", 0, 0, G_OPTION_ARG_NONE, &chat.self_test,
      "Send one message, exit 0 once it is listed (1 on failure)", NULL },
    { NULL }
  };

  chat.cancellable = g_cancellable_new ();
  /* Non-unique: each window is its own chat participant, and no session bus
   * is needed (the tests run under xvfb-run). */
  chat.app = gtk_application_new ("org.carehare.GtkChat", G_APPLICATION_NON_UNIQUE);
  g_application_add_main_option_entries (G_APPLICATION (chat.app), entries);
  g_signal_connect (chat.app, "handle-local-options", G_CALLBACK (handle_local_options_cb), &chat);
  g_signal_connect (chat.app, "activate", G_CALLBACK (activate_cb), &chat);

  status = g_application_run (G_APPLICATION (chat.app), argc, argv);
  if (status == 0)
    status = chat.exit_status;

  g_clear_handle_id (&chat.self_test_timeout_id, g_source_remove);
  g_clear_handle_id (&chat.counters_timeout_id, g_source_remove);
  g_clear_object (&chat.consumer);
  g_clear_object (&chat.conn);
  g_clear_object (&chat.cancellable);
  g_clear_object (&chat.app);
  g_free (chat.queue);
  g_free (chat.self_test_text);
  g_free (chat.uri);
  g_free (chat.exchange);
  return status;
}
