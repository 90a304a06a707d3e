/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare: publish, consume, declare and call from shells and scripts.
 *
 * Built on the public carehare-glib API only. Every broker call is one of
 * the library's blocking _sync twins: the connection belongs to the global
 * default main context, which each twin runs while it waits, so the
 * Ctrl-C/SIGTERM sources and `call --timeout` fire during a wait and cancel
 * it through the `interrupted` cancellable. Only `publish --lines` keeps
 * many publishes in flight and so uses the _async calls and drives the loop
 * itself.
 *
 * The help text (`carehare --help`) is generated from the command table and
 * the GOptionEntry arrays below, and the man page is generated from the
 * help text by help2man: one source.
 */

#include <carehare-glib/carehare-glib.h>
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <glib-unix.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Exit status; the table is printed by --help (and so in the man page). */
enum {
  EXIT_OK = 0,
  EXIT_USAGE = 1,          /* bad command line, malformed NAME=VALUE, invalid URI, unreadable file */
  EXIT_CONNECTION = 2,     /* could not connect or log in, or the connection was lost */
  EXIT_REFUSED = 3,        /* the broker refused the operation (no such queue or exchange, 406, 403...) */
  EXIT_MESSAGE_REFUSED = 4,/* a published message was nacked or returned unroutable */
  EXIT_TIMED_OUT = 5,      /* `call --timeout` passed with no reply */
  EXIT_INTERRUPTED = 130,  /* Ctrl-C or SIGTERM (except for consume, where it is the way to stop) */
};

#define DEFAULT_URI "amqp://localhost"
/* How many publishes `publish --lines` keeps waiting for their confirms. */
#define PUBLISH_WINDOW 1024

/* ---- Options ------------------------------------------------------------- */

static char *opt_uri;
static char *opt_exchange;
static char *opt_routing_key;
static char **opt_properties;
static char **opt_headers;
static char **opt_arguments;
static gboolean opt_mandatory;
static gboolean opt_lines;
static char *opt_file;
static int opt_count;
static int opt_prefetch = -1;
static gboolean opt_json;
static char *opt_exec;
static gboolean opt_durable;
static gboolean opt_exclusive;
static gboolean opt_auto_delete;
static gboolean opt_internal;
static gboolean opt_if_unused;
static gboolean opt_if_empty;
static char *opt_type;
static gboolean opt_to_exchange;
static int opt_timeout;

static const GOptionEntry uri_entries[] = {
  { "uri", 'u', 0, G_OPTION_ARG_STRING, &opt_uri,
    "Broker URI (default: $CAREHARE_URI, else " DEFAULT_URI "); TLS options go in its query", "URI" },
  { NULL }
};

static const GOptionEntry publish_entries[] = {
  { "exchange", 'e', 0, G_OPTION_ARG_STRING, &opt_exchange, "Exchange to publish to (default: the default exchange)", "NAME" },
  { "routing-key", 'r', 0, G_OPTION_ARG_STRING, &opt_routing_key, "Routing key (for the default exchange: the queue name)", "KEY" },
  { "property", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &opt_properties,
    "Set a message property: content-type, content-encoding, delivery-mode, priority, correlation-id, reply-to, "
    "expiration, message-id, timestamp, type, user-id, app-id, cluster-id (repeatable)", "NAME=VALUE" },
  { "header", 'H', 0, G_OPTION_ARG_STRING_ARRAY, &opt_headers,
    "Add a header; VALUE is a string, or NAME:int=, NAME:bool=, NAME:float=, NAME:str= for a typed value (repeatable)", "NAME=VALUE" },
  { "mandatory", 'm', 0, G_OPTION_ARG_NONE, &opt_mandatory, "Fail when no queue is bound for the routing key", NULL },
  { "lines", 'l', 0, G_OPTION_ARG_NONE, &opt_lines, "One message per input line instead of one message; when standard error is a terminal, "
    "a progress line there (published, confirmed, messages/s)", NULL },
  { "file", 'f', 0, G_OPTION_ARG_FILENAME, &opt_file, "Read from FILE instead of standard input", "FILE" },
  { NULL }
};

static const GOptionEntry consume_entries[] = {
  { "count", 'c', 0, G_OPTION_ARG_INT, &opt_count, "Stop after N messages (default: run until Ctrl-C)", "N" },
  { "prefetch", 'P', 0, G_OPTION_ARG_INT, &opt_prefetch, "Unacknowledged messages the broker may send ahead (default: N or 100)", "P" },
  { "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
    "Print one JSON object per message: body, exchange, routing_key, redelivered, properties, headers", NULL },
  { "exec", 'x', 0, G_OPTION_ARG_STRING, &opt_exec,
    "Run CMD (through /bin/sh) per message with the body on its standard input; ack when it exits 0, "
    "otherwise nack and requeue", "CMD" },
  { NULL }
};

static const GOptionEntry declare_queue_entries[] = {
  { "durable", 'd', 0, G_OPTION_ARG_NONE, &opt_durable, "The queue survives a broker restart", NULL },
  { "exclusive", 0, 0, G_OPTION_ARG_NONE, &opt_exclusive, "Only this connection may use the queue", NULL },
  { "auto-delete", 0, 0, G_OPTION_ARG_NONE, &opt_auto_delete, "Delete the queue when its last consumer goes", NULL },
  { "argument", 'a', 0, G_OPTION_ARG_STRING_ARRAY, &opt_arguments,
    "Add an argument such as x-message-ttl=60000 (typed as for --header; digits make an integer) (repeatable)", "NAME=VALUE" },
  { NULL }
};

static const GOptionEntry delete_queue_entries[] = {
  { "if-unused", 0, 0, G_OPTION_ARG_NONE, &opt_if_unused, "Refuse if the queue has consumers", NULL },
  { "if-empty", 0, 0, G_OPTION_ARG_NONE, &opt_if_empty, "Refuse if the queue holds messages", NULL },
  { NULL }
};

static const GOptionEntry declare_exchange_entries[] = {
  { "type", 't', 0, G_OPTION_ARG_STRING, &opt_type, "direct, fanout, topic or headers (default: direct)", "TYPE" },
  { "durable", 'd', 0, G_OPTION_ARG_NONE, &opt_durable, "The exchange survives a broker restart", NULL },
  { "auto-delete", 0, 0, G_OPTION_ARG_NONE, &opt_auto_delete, "Delete the exchange when its last binding goes", NULL },
  { "internal", 0, 0, G_OPTION_ARG_NONE, &opt_internal, "Only other exchanges may publish to it", NULL },
  { "argument", 'a', 0, G_OPTION_ARG_STRING_ARRAY, &opt_arguments, "Add an argument (repeatable)", "NAME=VALUE" },
  { NULL }
};

static const GOptionEntry delete_exchange_entries[] = {
  { "if-unused", 0, 0, G_OPTION_ARG_NONE, &opt_if_unused, "Refuse if the exchange has bindings", NULL },
  { NULL }
};

static const GOptionEntry bind_entries[] = {
  { "to-exchange", 0, 0, G_OPTION_ARG_NONE, &opt_to_exchange, "DESTINATION is an exchange, not a queue", NULL },
  { "argument", 'a', 0, G_OPTION_ARG_STRING_ARRAY, &opt_arguments, "Add a binding argument (repeatable)", "NAME=VALUE" },
  { NULL }
};

static const GOptionEntry call_entries[] = {
  { "exchange", 'e', 0, G_OPTION_ARG_STRING, &opt_exchange, "Exchange to send the request to", "NAME" },
  { "property", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &opt_properties, "Set a request property (as for publish)", "NAME=VALUE" },
  { "header", 'H', 0, G_OPTION_ARG_STRING_ARRAY, &opt_headers, "Add a request header (as for publish)", "NAME=VALUE" },
  { "file", 'f', 0, G_OPTION_ARG_FILENAME, &opt_file, "Read the request from FILE instead of standard input", "FILE" },
  { "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "Print the reply as a JSON object (as consume --json)", NULL },
  { "timeout", 'T', 0, G_OPTION_ARG_INT, &opt_timeout, "Give up after SECONDS without a reply (default: wait)", "SECONDS" },
  { NULL }
};

/* Cancelled by Ctrl-C and SIGTERM; every broker call takes it. */
static GCancellable *interrupted;
/* fd 0 was closed when the tool started (`carehare publish <&-`): /dev/null
 * stands in for it, so that no descriptor GLib opens becomes "stdin". */
static gboolean stdin_was_closed;

/* A connection Ctrl-C and SIGTERM close at once (weak; see connect_or_fail()). */
static CarehareConnection *abort_on_interrupt;

/* ---- Errors -------------------------------------------------------------- */

static int
exit_code_for (const GError *error)
{
  if (error->domain == CAREHARE_ERROR)
    {
      switch ((CarehareError) error->code)
        {
        case CAREHARE_ERROR_INVALID_URI:
          return EXIT_USAGE;
        case CAREHARE_ERROR_SERVER_SENT_NACK:
        case CAREHARE_ERROR_UNROUTABLE:
          return EXIT_MESSAGE_REFUSED;
        case CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER:
        case CAREHARE_ERROR_CHANNEL_CLOSED:
        case CAREHARE_ERROR_MESSAGE_TOO_LARGE:
          return EXIT_REFUSED;
        case CAREHARE_ERROR_FAILED:
        case CAREHARE_ERROR_CONNECTION_CLOSED:
        case CAREHARE_ERROR_CONNECTION_CLOSED_BY_SERVER:
        case CAREHARE_ERROR_CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR:
        case CAREHARE_ERROR_BAD_BYTES_FROM_SERVER:
        default:
          return EXIT_CONNECTION;
        }
    }
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return EXIT_INTERRUPTED;
  /* Arguments the library cannot send (a name over 255 bytes...). */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
    return EXIT_USAGE;
  return EXIT_CONNECTION;
}

/* Prints "carehare: WHAT: MESSAGE" and whether retrying may help, and
 * returns the exit code for the error. The explanation is the library's
 * own message (it names the server's reply code and text, and the fix it
 * can know); carehare_error_is_transient() says whether to retry. */
static int
fail (const char   *what,
      const GError *error)
{
  if (g_cancellable_is_cancelled (interrupted) &&
      (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
       g_error_matches (error, CAREHARE_ERROR, CAREHARE_ERROR_CONNECTION_CLOSED)))
    {
      g_printerr ("carehare: %s: interrupted\n", what);
      return EXIT_INTERRUPTED;
    }
  g_printerr ("carehare: %s: %s\n  -> %s\n", what, error->message,
              carehare_error_is_transient (error)
              ? "transient: retrying later (with backoff) may succeed"
              : "retrying will not help until the cause is fixed");
  return exit_code_for (error);
}

static int
usage_error (const char *format,
             ...) G_GNUC_PRINTF (1, 2);

static int
usage_error (const char *format,
             ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("carehare: %s\nTry 'carehare --help'.\n", message);
  return EXIT_USAGE;
}

/* The URI for messages: never the password. */
static char *
uri_for_display (const char *uri)
{
  g_autoptr(GUri) parsed = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED, NULL);

  if (parsed == NULL)
    return g_strdup ("(unparsable URI)");
  return g_uri_to_string_partial (parsed, G_URI_HIDE_PASSWORD);
}

/* ---- Waiting for a child ----------------------------------------------------- */

static void
store_result (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* Runs CMD with BODY on its standard input; TRUE if it exited 0. The
 * default main context keeps running meanwhile, so that Ctrl-C and SIGTERM
 * are seen while a slow command runs; the command itself is left to finish
 * (the terminal's Ctrl-C reaches it directly), its status settles the
 * message, and then consume stops. */
static gboolean
run_exec (const char *command,
          GBytes     *body,
          GError    **error)
{
  g_autoptr(GSubprocess) child = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) local_error = NULL;

  child = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE, error, "/bin/sh", "-c", command, NULL);
  if (child == NULL)
    return FALSE;
  g_subprocess_communicate_async (child, body, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  if (!g_subprocess_communicate_finish (child, result, NULL, NULL, &local_error))
    {
      /* A command that exits without reading all of a large body closes
       * the pipe: its exit status still decides. */
      if (!g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE))
        {
          g_propagate_error (error, g_steal_pointer (&local_error));
          return FALSE;
        }
      g_clear_object (&result);
      g_subprocess_wait_async (child, NULL, store_result, &result);
      while (result == NULL)
        g_main_context_iteration (NULL, TRUE);
      if (!g_subprocess_wait_finish (child, result, error))
        return FALSE;
    }
  return g_subprocess_get_if_exited (child) && g_subprocess_get_exit_status (child) == 0;
}

/* bind and unbind, queue or exchange destination. */
static gboolean
bind_sync (CarehareConnection *conn,
           gboolean            bind,
           gboolean            to_exchange,
           const char         *destination,
           const char         *source,
           const char         *routing_key,
           GVariant           *arguments,
           GCancellable       *cancellable,
           GError            **error)
{
  if (to_exchange && bind)
    return carehare_connection_exchange_bind_sync (conn, destination, source, routing_key, arguments, cancellable, error);
  else if (to_exchange)
    return carehare_connection_exchange_unbind_sync (conn, destination, source, routing_key, arguments, cancellable, error);
  else if (bind)
    return carehare_connection_queue_bind_sync (conn, destination, source, routing_key, arguments, cancellable, error);
  else
    return carehare_connection_queue_unbind_sync (conn, destination, source, routing_key, arguments, cancellable, error);
}

/* Closes the connection. A connection the server had closed reports why;
 * the operation that failed has said so already. */
static void
close_quietly (CarehareConnection *conn)
{
  carehare_connection_close_sync (conn, NULL, NULL);
}

/* ---- Parsing NAME=VALUE ---------------------------------------------------- */

/* NAME=VALUE or NAME:TYPE=VALUE with TYPE one of str, int, bool, float.
 * Without a type, VALUE is a string, except that @infer (arguments, where
 * RabbitMQ wants numbers for x-message-ttl, x-max-length...) makes digits
 * an integer and true/false a boolean. */
static gboolean
parse_typed_pair (const char  *option,
                  const char  *text,
                  gboolean     infer,
                  char       **name_out,
                  GVariant   **value_out,
                  GError     **error)
{
  const char *eq = strchr (text, '=');
  g_autofree char *key = NULL;
  const char *value;
  char *colon;
  const char *type = NULL;
  char *end = NULL;

  if (eq == NULL || eq == text)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "malformed %s '%s': expected NAME=VALUE", option, text);
      return FALSE;
    }
  key = g_strndup (text, eq - text);
  value = eq + 1;
  colon = strrchr (key, ':');
  if (colon != NULL)
    {
      *colon = '\0';
      type = colon + 1;
      if (*key == '\0')
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "malformed %s '%s': expected NAME=VALUE", option, text);
          return FALSE;
        }
    }
  if (type == NULL && infer)
    {
      gint64 n;
      if (g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64, &n, NULL))
        type = "int";
      else if (g_str_equal (value, "true") || g_str_equal (value, "false"))
        type = "bool";
    }

  if (type == NULL || g_str_equal (type, "str"))
    *value_out = g_variant_new_string (value);
  else if (g_str_equal (type, "int"))
    {
      gint64 n;
      if (!g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64, &n, NULL))
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "malformed %s '%s': '%s' is not an integer", option, text, value);
          return FALSE;
        }
      *value_out = g_variant_new_int64 (n);
    }
  else if (g_str_equal (type, "bool"))
    {
      if (!g_str_equal (value, "true") && !g_str_equal (value, "false"))
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "malformed %s '%s': a bool is true or false", option, text);
          return FALSE;
        }
      *value_out = g_variant_new_boolean (g_str_equal (value, "true"));
    }
  else if (g_str_equal (type, "float"))
    {
      double d = g_ascii_strtod (value, &end);
      if (*value == '\0' || end == NULL || *end != '\0')
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "malformed %s '%s': '%s' is not a number", option, text, value);
          return FALSE;
        }
      *value_out = g_variant_new_double (d);
    }
  else
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "malformed %s '%s': unknown type '%s' (str, int, bool or float)", option, text, type);
      return FALSE;
    }
  *name_out = g_steal_pointer (&key);
  return TRUE;
}

/* A table (a{sv}) from repeated --header or --argument; NULL if none given. */
static gboolean
parse_table (const char  *option,
             char       **pairs,
             gboolean     infer,
             GVariant   **table_out,
             GError     **error)
{
  GVariantBuilder builder;

  *table_out = NULL;
  if (pairs == NULL || pairs[0] == NULL)
    return TRUE;
  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  for (char **p = pairs; *p != NULL; p++)
    {
      g_autofree char *name = NULL;
      GVariant *value = NULL;

      if (!parse_typed_pair (option, *p, infer, &name, &value, error))
        {
          g_variant_builder_clear (&builder);
          return FALSE;
        }
      g_variant_builder_add (&builder, "{sv}", name, value);
    }
  *table_out = g_variant_ref_sink (g_variant_builder_end (&builder));
  return TRUE;
}

static gboolean
parse_uint_property (const char *text,
                     const char *value,
                     guint64     max,
                     guint64    *out,
                     GError    **error)
{
  if (!g_ascii_string_to_unsigned (value, 10, 0, max, out, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "malformed --property '%s': '%s' is not a number from 0 to %" G_GUINT64_FORMAT,
                   text, value, max);
      return FALSE;
    }
  return TRUE;
}

/* Properties from --property and --header; NULL when neither was given. */
static gboolean
parse_properties (CarehareProperties **props_out,
                  GError             **error)
{
  g_autoptr(CarehareProperties) props = NULL;
  g_autoptr(GVariant) headers = NULL;

  *props_out = NULL;
  if (!parse_table ("--header", opt_headers, FALSE, &headers, error))
    return FALSE;
  if ((opt_properties == NULL || opt_properties[0] == NULL) && headers == NULL)
    return TRUE;

  props = carehare_properties_new ();
  if (headers != NULL)
    carehare_properties_set_headers (props, headers);
  for (char **p = opt_properties; p != NULL && *p != NULL; p++)
    {
      const char *eq = strchr (*p, '=');
      g_autofree char *name = NULL;
      const char *value;
      guint64 n;

      if (eq == NULL || eq == *p)
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "malformed --property '%s': expected NAME=VALUE", *p);
          return FALSE;
        }
      name = g_strndup (*p, eq - *p);
      g_strdelimit (name, "_", '-');
      value = eq + 1;
      if (g_str_equal (name, "content-type"))
        carehare_properties_set_content_type (props, value);
      else if (g_str_equal (name, "content-encoding"))
        carehare_properties_set_content_encoding (props, value);
      else if (g_str_equal (name, "correlation-id"))
        carehare_properties_set_correlation_id (props, value);
      else if (g_str_equal (name, "reply-to"))
        carehare_properties_set_reply_to (props, value);
      else if (g_str_equal (name, "expiration"))
        carehare_properties_set_expiration (props, value);
      else if (g_str_equal (name, "message-id"))
        carehare_properties_set_message_id (props, value);
      else if (g_str_equal (name, "type"))
        carehare_properties_set_message_type (props, value);
      else if (g_str_equal (name, "user-id"))
        carehare_properties_set_user_id (props, value);
      else if (g_str_equal (name, "app-id"))
        carehare_properties_set_app_id (props, value);
      else if (g_str_equal (name, "cluster-id"))
        carehare_properties_set_cluster_id (props, value);
      else if (g_str_equal (name, "delivery-mode"))
        {
          if (g_str_equal (value, "persistent"))
            n = 2;
          else if (g_str_equal (value, "transient"))
            n = 1;
          else if (!parse_uint_property (*p, value, 2, &n, error))
            return FALSE;
          carehare_properties_set_delivery_mode (props, (guint) n);
        }
      else if (g_str_equal (name, "priority"))
        {
          if (!parse_uint_property (*p, value, 255, &n, error))
            return FALSE;
          carehare_properties_set_priority (props, (int) n);
        }
      else if (g_str_equal (name, "timestamp"))
        {
          if (!parse_uint_property (*p, value, G_MAXINT64, &n, error))
            return FALSE;
          carehare_properties_set_timestamp (props, (gint64) n);
        }
      else
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "malformed --property '%s': unknown property '%s'", *p, name);
          return FALSE;
        }
    }
  *props_out = g_steal_pointer (&props);
  return TRUE;
}

/* ---- Output ------------------------------------------------------------------ */

static void
json_string (GString    *out,
             const char *s,
             gssize      len)
{
  const char *end = s + (len < 0 ? (gssize) strlen (s) : len);

  g_string_append_c (out, '"');
  for (const char *p = s; p < end; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      switch (c)
        {
        case '"': g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        default:
          if (c < 0x20)
            g_string_append_printf (out, "\\u%04x", c);
          else
            g_string_append_unichar (out, c);
        }
    }
  g_string_append_c (out, '"');
}

static void json_value (GString *out, GVariant *value);

static void
json_table (GString  *out,
            GVariant *table)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;
  gboolean first = TRUE;

  g_string_append_c (out, '{');
  g_variant_iter_init (&iter, table);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      if (!first)
        g_string_append_c (out, ',');
      first = FALSE;
      json_string (out, key, -1);
      g_string_append_c (out, ':');
      json_value (out, value);
    }
  g_string_append_c (out, '}');
}

/* AMQP field values as JSON: numbers, booleans, strings, tables, arrays;
 * anything else (decimals, byte arrays, void) as GVariant text. */
static void
json_value (GString  *out,
            GVariant *value)
{
  const GVariantType *type = g_variant_get_type (value);

  if (g_variant_type_equal (type, G_VARIANT_TYPE_BOOLEAN))
    g_string_append (out, g_variant_get_boolean (value) ? "true" : "false");
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_BYTE))
    g_string_append_printf (out, "%u", g_variant_get_byte (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_INT16))
    g_string_append_printf (out, "%d", g_variant_get_int16 (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UINT16))
    g_string_append_printf (out, "%u", g_variant_get_uint16 (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_INT32))
    g_string_append_printf (out, "%d", g_variant_get_int32 (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UINT32))
    g_string_append_printf (out, "%u", g_variant_get_uint32 (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_INT64))
    g_string_append_printf (out, "%" G_GINT64_FORMAT, g_variant_get_int64 (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_UINT64))
    g_string_append_printf (out, "%" G_GUINT64_FORMAT, g_variant_get_uint64 (value));
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_DOUBLE))
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      g_string_append (out, g_ascii_dtostr (buf, sizeof buf, g_variant_get_double (value)));
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_STRING))
    json_string (out, g_variant_get_string (value, NULL), -1);
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_VARIANT))
    {
      g_autoptr(GVariant) inner = g_variant_get_variant (value);
      json_value (out, inner);
    }
  else if (g_variant_type_equal (type, G_VARIANT_TYPE_VARDICT))
    json_table (out, value);
  else if (g_variant_type_is_array (type) && !g_variant_type_equal (type, G_VARIANT_TYPE_BYTESTRING))
    {
      gsize n = g_variant_n_children (value);
      g_string_append_c (out, '[');
      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) child = g_variant_get_child_value (value, i);
          if (i > 0)
            g_string_append_c (out, ',');
          json_value (out, child);
        }
      g_string_append_c (out, ']');
    }
  else
    {
      g_autofree char *text = g_variant_print (value, TRUE);
      json_string (out, text, -1);
    }
}

static void
json_member_string (GString    *out,
                    const char *name,
                    const char *value)
{
  if (value == NULL)
    return;
  if (out->str[out->len - 1] != '{')
    g_string_append_c (out, ',');
  json_string (out, name, -1);
  g_string_append_c (out, ':');
  json_string (out, value, -1);
}

static void
json_member_int (GString    *out,
                 const char *name,
                 gint64      value)
{
  if (out->str[out->len - 1] != '{')
    g_string_append_c (out, ',');
  json_string (out, name, -1);
  g_string_append_printf (out, ":%" G_GINT64_FORMAT, value);
}

/* One line: {"body": ..., "exchange": ..., "routing_key": ..., "redelivered": ...,
 * "properties": {...}, "headers": {...}}. A body that is not UTF-8 is given
 * as "body_base64" instead. */
static char *
delivery_to_json (CarehareDelivery *delivery)
{
  GString *out = g_string_new ("{");
  CarehareProperties *props = carehare_delivery_get_properties (delivery);
  GBytes *body = carehare_delivery_get_body (delivery);
  gsize size;
  const char *data = g_bytes_get_data (body, &size);
  GVariant *headers;

  if (g_utf8_validate_len (data, size, NULL))
    {
      g_string_append (out, "\"body\":");
      json_string (out, data, size);
    }
  else
    {
      g_autofree char *b64 = g_base64_encode ((const guchar *) data, size);
      json_member_string (out, "body_base64", b64);
    }
  json_member_string (out, "exchange", carehare_delivery_get_exchange (delivery));
  json_member_string (out, "routing_key", carehare_delivery_get_routing_key (delivery));
  g_string_append_printf (out, ",\"redelivered\":%s",
                          carehare_delivery_get_redelivered (delivery) ? "true" : "false");

  g_string_append (out, ",\"properties\":{");
  if (props != NULL)
    {
      json_member_string (out, "content_type", carehare_properties_get_content_type (props));
      json_member_string (out, "content_encoding", carehare_properties_get_content_encoding (props));
      if (carehare_properties_get_delivery_mode (props) != 0)
        json_member_int (out, "delivery_mode", carehare_properties_get_delivery_mode (props));
      if (carehare_properties_get_priority (props) >= 0)
        json_member_int (out, "priority", carehare_properties_get_priority (props));
      json_member_string (out, "correlation_id", carehare_properties_get_correlation_id (props));
      json_member_string (out, "reply_to", carehare_properties_get_reply_to (props));
      json_member_string (out, "expiration", carehare_properties_get_expiration (props));
      json_member_string (out, "message_id", carehare_properties_get_message_id (props));
      if (carehare_properties_get_timestamp (props) >= 0)
        json_member_int (out, "timestamp", carehare_properties_get_timestamp (props));
      json_member_string (out, "type", carehare_properties_get_message_type (props));
      json_member_string (out, "user_id", carehare_properties_get_user_id (props));
      json_member_string (out, "app_id", carehare_properties_get_app_id (props));
      json_member_string (out, "cluster_id", carehare_properties_get_cluster_id (props));
    }
  g_string_append (out, "},\"headers\":");
  headers = props != NULL ? carehare_properties_get_headers (props) : NULL;
  if (headers != NULL)
    json_table (out, headers);
  else
    g_string_append (out, "{}");
  g_string_append (out, "}\n");
  return g_string_free (out, FALSE);
}

/* Prints a delivery: its body as is (plus a newline unless it ends with
 * one), or one JSON line. FALSE if standard output failed. */
static gboolean
print_delivery (CarehareDelivery *delivery,
                gboolean          json)
{
  if (json)
    {
      g_autofree char *line = delivery_to_json (delivery);
      fputs (line, stdout);
    }
  else
    {
      gsize size;
      const char *data = g_bytes_get_data (carehare_delivery_get_body (delivery), &size);

      fwrite (data, 1, size, stdout);
      if (size == 0 || data[size - 1] != '\n')
        fputc ('\n', stdout);
    }
  return fflush (stdout) == 0 && !ferror (stdout);
}

/* ---- Input ------------------------------------------------------------------- */

static GInputStream *
open_input (GError **error)
{
  if (opt_file != NULL && !g_str_equal (opt_file, "-"))
    {
      g_autoptr(GFile) file = g_file_new_for_commandline_arg (opt_file);
      return G_INPUT_STREAM (g_file_read (file, NULL, error));
    }
  if (stdin_was_closed)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CLOSED,
                           "reading input: standard input is closed");
      return NULL;
    }
  return g_unix_input_stream_new (STDIN_FILENO, FALSE);
}

static GBytes *
read_all (GError **error)
{
  g_autoptr(GInputStream) in = open_input (error);
  g_autoptr(GOutputStream) mem = NULL;
  g_autoptr(GAsyncResult) result = NULL;

  if (in == NULL)
    return NULL;
  mem = g_memory_output_stream_new_resizable ();
  /* Read while the main context runs, so that Ctrl-C and SIGTERM stop a
   * slow writer (the read fails with G_IO_ERROR_CANCELLED). */
  g_output_stream_splice_async (mem, in, G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
                                G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                G_PRIORITY_DEFAULT, interrupted, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  if (g_output_stream_splice_finish (mem, result, error) < 0)
    return NULL;
  return g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (mem));
}

/* Reports an input that could not be read: interrupted (130), or an
 * unreadable file or standard input (1). */
static int
input_failed (const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_printerr ("carehare: reading input: interrupted\n");
      return EXIT_INTERRUPTED;
    }
  g_printerr ("carehare: %s\n", error->message);
  return EXIT_USAGE;
}

/* ---- Commands ------------------------------------------------------------------ */

static const char *
resolved_uri (void)
{
  const char *env = g_getenv ("CAREHARE_URI");

  if (opt_uri != NULL)
    return opt_uri;
  if (env != NULL && *env != '\0')
    return env;
  return DEFAULT_URI;
}

/* Connects, or prints why not and returns NULL with *status set. With
 * @abortable, Ctrl-C or SIGTERM closes the connection at once: a request
 * the library has sent waits for the broker's answer whatever its
 * cancellable says, and a slow or silent broker must not keep the tool
 * from stopping (publish --lines too: its confirms may never come).
 * consume and call stop through their cancellable. */
static CarehareConnection *
connect_or_fail (int      *status,
                 gboolean  abortable)
{
  g_autoptr(GError) error = NULL;
  CarehareConnection *conn = carehare_connection_new_sync (resolved_uri (), interrupted, &error);

  if (conn == NULL)
    {
      g_autofree char *shown = uri_for_display (resolved_uri ());
      g_autofree char *what = g_strdup_printf ("connecting to %s", shown);
      *status = fail (what, error);
    }
  else if (abortable)
    g_set_weak_pointer (&abort_on_interrupt, conn);
  return conn;
}

/* publish --lines: keeps up to PUBLISH_WINDOW publishes in flight, reading
 * standard input asynchronously so that confirms and heartbeats go on while
 * the input is slow. Stops reading at the first failure. */
typedef struct {
  GMainLoop            *loop;
  CarehareConnection   *conn;
  GDataInputStream     *in;
  CarehareProperties   *props;
  CareharePublishFlags  flags;
  guint64               read;
  guint64               confirmed;
  guint64               failed;
  guint                 in_flight;
  gboolean              reading;
  gboolean              done_reading;
  GError               *first_error;
  guint64               first_error_line;
  GCancellable         *read_cancel;     /* owned: stops a pending read */
  gboolean              input_failed;
  gint64                started;
  gboolean              progress;
} LinePublisher;

static void read_next_line (LinePublisher *lp);

static void
line_publisher_maybe_quit (LinePublisher *lp)
{
  if (lp->done_reading && lp->in_flight == 0 && !lp->reading)
    g_main_loop_quit (lp->loop);
}

static void
print_progress (LinePublisher *lp,
                gboolean       final)
{
  double seconds = (g_get_monotonic_time () - lp->started) / 1e6;

  g_printerr ("\rcarehare: %" G_GUINT64_FORMAT " published, %" G_GUINT64_FORMAT " confirmed, %.0f msg/s%s",
              lp->read, lp->confirmed, seconds > 0 ? lp->confirmed / seconds : 0.0, final ? "\n" : "");
}

static gboolean
progress_tick (gpointer user_data)
{
  print_progress (user_data, FALSE);
  return G_SOURCE_CONTINUE;
}

typedef struct {
  LinePublisher *lp;
  guint64        line;
} LinePublish;

static void
line_published (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  LinePublish *lpub = user_data;
  LinePublisher *lp = lpub->lp;
  g_autoptr(GError) error = NULL;

  lp->in_flight--;
  if (carehare_connection_publish_finish (CAREHARE_CONNECTION (source), result, &error))
    lp->confirmed++;
  else
    {
      lp->failed++;
      if (lp->first_error == NULL || lpub->line < lp->first_error_line)
        {
          g_clear_error (&lp->first_error);
          lp->first_error = g_steal_pointer (&error);
          lp->first_error_line = lpub->line;
        }
      lp->done_reading = TRUE;
      g_cancellable_cancel (lp->read_cancel);
    }
  g_free (lpub);
  if (!lp->done_reading && !lp->reading && lp->in_flight < PUBLISH_WINDOW)
    read_next_line (lp);
  line_publisher_maybe_quit (lp);
}

static void
line_read (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  LinePublisher *lp = user_data;
  g_autoptr(GError) error = NULL;
  gsize length = 0;
  g_autofree char *line = g_data_input_stream_read_line_finish (G_DATA_INPUT_STREAM (source), result, &length, &error);
  g_autoptr(GBytes) body = NULL;
  LinePublish *lpub;

  lp->reading = FALSE;
  if (line == NULL || lp->done_reading)
    {
      if (error != NULL && lp->first_error == NULL &&
          !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_prefix_error (&error, "reading input: ");
          lp->input_failed = TRUE;
          lp->first_error = g_steal_pointer (&error);
          lp->first_error_line = lp->read + 1;
        }
      lp->done_reading = TRUE;
      line_publisher_maybe_quit (lp);
      return;
    }

  body = g_bytes_new_take (g_steal_pointer (&line), length);
  lpub = g_new0 (LinePublish, 1);
  lpub->lp = lp;
  lpub->line = ++lp->read;
  lp->in_flight++;
  carehare_connection_publish_async (lp->conn, opt_exchange ? opt_exchange : "",
                                     opt_routing_key ? opt_routing_key : "",
                                     body, lp->props, lp->flags, NULL, line_published, lpub);
  if (lp->in_flight < PUBLISH_WINDOW)
    read_next_line (lp);
}

static void
read_next_line (LinePublisher *lp)
{
  lp->reading = TRUE;
  g_data_input_stream_read_line_async (lp->in, G_PRIORITY_DEFAULT, lp->read_cancel, line_read, lp);
}

static void
cancel_other (GCancellable *cancellable,
              gpointer      other)
{
  g_cancellable_cancel (other);
}

static int
publish_lines (CarehareConnection   *conn,
               CarehareProperties   *props,
               CareharePublishFlags  flags)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GInputStream) raw = open_input (&error);
  LinePublisher lp = { 0 };
  guint progress_id = 0;
  gulong interrupt_id;
  int status = EXIT_OK;

  if (raw == NULL)
    return input_failed (error);
  lp.loop = g_main_loop_new (NULL, FALSE);
  lp.conn = conn;
  lp.in = g_data_input_stream_new (raw);
  g_data_input_stream_set_newline_type (lp.in, G_DATA_STREAM_NEWLINE_TYPE_LF);
  lp.props = props;
  lp.flags = flags;
  lp.started = g_get_monotonic_time ();
  /* Ctrl-C stops reading; what is in flight is still confirmed. */
  lp.read_cancel = g_cancellable_new ();
  interrupt_id = g_cancellable_connect (interrupted, G_CALLBACK (cancel_other), lp.read_cancel, NULL);
  lp.progress = isatty (STDERR_FILENO);
  if (lp.progress)
    progress_id = g_timeout_add_seconds (1, progress_tick, &lp);

  read_next_line (&lp);
  g_main_loop_run (lp.loop);

  if (progress_id != 0)
    {
      g_source_remove (progress_id);
      print_progress (&lp, TRUE);
    }
  if (lp.first_error != NULL)
    {
      g_autofree char *what = g_strdup_printf ("line %" G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                                               " published messages failed)",
                                               lp.first_error_line, lp.failed, lp.read);
      if (lp.input_failed)
        {
          g_printerr ("carehare: %s\n", lp.first_error->message);
          status = EXIT_USAGE;
        }
      else
        status = fail (what, lp.first_error);
    }
  else if (g_cancellable_is_cancelled (interrupted))
    {
      g_printerr ("carehare: interrupted after %" G_GUINT64_FORMAT " messages, all confirmed\n", lp.read);
      status = EXIT_INTERRUPTED;
    }
  g_cancellable_disconnect (interrupted, interrupt_id);
  g_clear_object (&lp.read_cancel);
  g_clear_error (&lp.first_error);
  g_clear_object (&lp.in);
  g_main_loop_unref (lp.loop);
  return status;
}

static int
cmd_publish (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareProperties) props = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;
  CareharePublishFlags flags = opt_mandatory ? CAREHARE_PUBLISH_FLAGS_MANDATORY : CAREHARE_PUBLISH_FLAGS_NONE;
  int status = EXIT_OK;

  if (argc != 1)
    return usage_error ("publish takes no arguments (the body comes from standard input or --file)");
  if (!parse_properties (&props, &error))
    return usage_error ("%s", error->message);
  /* A single body is read before connecting: a broken pipe or missing file
   * costs no connection. */
  if (!opt_lines && (body = read_all (&error)) == NULL)
    return input_failed (error);
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;

  if (opt_lines)
    status = publish_lines (conn, props, flags);
  else if (!carehare_connection_publish_sync (conn, opt_exchange ? opt_exchange : "", opt_routing_key ? opt_routing_key : "",
                         body, props, flags, interrupted, &error))
    status = fail ("publish", error);
  close_quietly (conn);
  return status;
}

static gboolean
on_interrupt (gpointer user_data)
{
  g_cancellable_cancel (interrupted);
  if (abort_on_interrupt != NULL)
    {
      /* A close whose cancellable is cancelled shuts the socket at once;
       * what waited fails with CONNECTION_CLOSED, reported as interrupted. */
      g_autoptr(GCancellable) now = g_cancellable_new ();

      g_cancellable_cancel (now);
      carehare_connection_close_async (abort_on_interrupt, now, NULL, NULL);
    }
  return G_SOURCE_CONTINUE;
}

static int
cmd_consume (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareConsumer) consumer = NULL;
  g_autoptr(GError) error = NULL;
  int status = EXIT_OK;
  guint prefetch;
  int handled = 0;

  if (argc != 2)
    return usage_error ("consume takes one QUEUE");
  if (opt_count < 0)
    return usage_error ("--count must not be negative");
  if (opt_prefetch > G_MAXUINT16)
    return usage_error ("--prefetch must be at most %u", G_MAXUINT16);
  if (opt_prefetch >= 0)
    prefetch = opt_prefetch;
  else
    prefetch = opt_count > 0 && opt_count < 100 ? opt_count : 100;

  if ((conn = connect_or_fail (&status, FALSE)) == NULL)
    return status;
  consumer = carehare_connection_acking_consumer_sync (conn, argv[1], 0, (guint16) prefetch, interrupted, &error);
  if (consumer == NULL)
    {
      g_autofree char *what = g_strdup_printf ("consuming from '%s'", argv[1]);
      status = fail (what, error);
      close_quietly (conn);
      return status;
    }

  while (opt_count == 0 || handled < opt_count)
    {
      g_autoptr(CarehareDelivery) delivery = carehare_consumer_next_delivery_sync (consumer, interrupted, &error);
      guint64 tag;

      if (delivery == NULL)
        {
          /* Ctrl-C: the normal way to stop; not a failure. */
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            {
              g_autofree char *what = g_strdup_printf ("consuming from '%s'", argv[1]);
              status = fail (what, error);
            }
          break;
        }
      tag = carehare_delivery_get_delivery_tag (delivery);
      if (opt_exec != NULL)
        {
          g_autoptr(GError) exec_error = NULL;
          if (run_exec (opt_exec, carehare_delivery_get_body (delivery), &exec_error))
            carehare_consumer_ack (consumer, tag);
          else
            {
              if (exec_error != NULL)
                g_printerr ("carehare: --exec: %s\n", exec_error->message);
              carehare_consumer_nack (consumer, tag, TRUE);
            }
        }
      else if (print_delivery (delivery, opt_json))
        carehare_consumer_ack (consumer, tag);
      else
        {
          carehare_consumer_nack (consumer, tag, TRUE);
          g_printerr ("carehare: cannot write to standard output; message requeued\n");
          status = EXIT_USAGE;
          break;
        }
      handled++;
      if (g_cancellable_is_cancelled (interrupted))
        break;
    }

  carehare_consumer_close_sync (consumer, NULL, NULL);
  close_quietly (conn);
  return status;
}

static CarehareQueueFlags
queue_flags (void)
{
  return (opt_durable ? CAREHARE_QUEUE_FLAGS_DURABLE : 0) |
         (opt_exclusive ? CAREHARE_QUEUE_FLAGS_EXCLUSIVE : 0) |
         (opt_auto_delete ? CAREHARE_QUEUE_FLAGS_AUTO_DELETE : 0);
}

static int
cmd_declare_queue (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GVariant) arguments = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  int status = EXIT_OK;

  if (argc > 2)
    return usage_error ("declare-queue takes at most one NAME");
  if (!parse_table ("--argument", opt_arguments, TRUE, &arguments, &error))
    return usage_error ("%s", error->message);
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;
  name = carehare_connection_queue_declare_sync (conn, argc == 2 ? argv[1] : "", queue_flags (), arguments, NULL, NULL, interrupted, &error);
  if (name == NULL)
    status = fail ("declare-queue", error);
  else
    g_print ("%s\n", name);
  close_quietly (conn);
  return status;
}

static int
cmd_delete_queue (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GError) error = NULL;
  int status = EXIT_OK;
  guint count = 0;

  if (argc != 2)
    return usage_error ("delete-queue takes one NAME");
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;
  if (carehare_connection_queue_delete_sync (conn, argv[1],
                        (opt_if_unused ? CAREHARE_QUEUE_DELETE_FLAGS_IF_UNUSED : 0) |
                        (opt_if_empty ? CAREHARE_QUEUE_DELETE_FLAGS_IF_EMPTY : 0),
                        &count, interrupted, &error))
    g_print ("%u\n", count);
  else
    status = fail ("delete-queue", error);
  close_quietly (conn);
  return status;
}

static int
cmd_purge_queue (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GError) error = NULL;
  int status = EXIT_OK;
  guint count = 0;

  if (argc != 2)
    return usage_error ("purge-queue takes one NAME");
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;
  if (carehare_connection_queue_purge_sync (conn, argv[1], &count, interrupted, &error))
    g_print ("%u\n", count);
  else
    status = fail ("purge-queue", error);
  close_quietly (conn);
  return status;
}

static int
cmd_declare_exchange (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GVariant) arguments = NULL;
  g_autoptr(GError) error = NULL;
  int status = EXIT_OK;

  if (argc != 2)
    return usage_error ("declare-exchange takes one NAME");
  if (!parse_table ("--argument", opt_arguments, TRUE, &arguments, &error))
    return usage_error ("%s", error->message);
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;
  if (!carehare_connection_exchange_declare_sync (conn, argv[1], opt_type ? opt_type : "direct",
                             (opt_durable ? CAREHARE_EXCHANGE_FLAGS_DURABLE : 0) |
                             (opt_auto_delete ? CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE : 0) |
                             (opt_internal ? CAREHARE_EXCHANGE_FLAGS_INTERNAL : 0),
                             arguments, interrupted, &error))
    status = fail ("declare-exchange", error);
  close_quietly (conn);
  return status;
}

static int
cmd_delete_exchange (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GError) error = NULL;
  int status = EXIT_OK;

  if (argc != 2)
    return usage_error ("delete-exchange takes one NAME");
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;
  if (!carehare_connection_exchange_delete_sync (conn, argv[1],
                            opt_if_unused ? CAREHARE_EXCHANGE_DELETE_FLAGS_IF_UNUSED : 0, interrupted, &error))
    status = fail ("delete-exchange", error);
  close_quietly (conn);
  return status;
}

static int
bind_or_unbind (gboolean bind, int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(GVariant) arguments = NULL;
  g_autoptr(GError) error = NULL;
  const char *command = bind ? "bind" : "unbind";
  int status = EXIT_OK;

  if (argc != 3 && argc != 4)
    return usage_error ("%s takes DESTINATION EXCHANGE [ROUTING_KEY]", command);
  if (!parse_table ("--argument", opt_arguments, TRUE, &arguments, &error))
    return usage_error ("%s", error->message);
  if ((conn = connect_or_fail (&status, TRUE)) == NULL)
    return status;
  if (!bind_sync (conn, bind, opt_to_exchange, argv[1], argv[2], argc == 4 ? argv[3] : "", arguments, interrupted, &error))
    status = fail (command, error);
  close_quietly (conn);
  return status;
}

static int
cmd_bind (int argc, char **argv)
{
  return bind_or_unbind (TRUE, argc, argv);
}

static int
cmd_unbind (int argc, char **argv)
{
  return bind_or_unbind (FALSE, argc, argv);
}

static gboolean
on_call_timeout (gpointer user_data)
{
  gboolean *timed_out = user_data;

  *timed_out = TRUE;
  g_cancellable_cancel (interrupted);
  return G_SOURCE_REMOVE;
}

static int
cmd_call (int argc, char **argv)
{
  g_autoptr(CarehareConnection) conn = NULL;
  g_autoptr(CarehareProperties) props = NULL;
  g_autoptr(CarehareDelivery) reply = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;
  gboolean timed_out = FALSE;
  guint timeout_id = 0;
  int status = EXIT_OK;

  if (argc != 2)
    return usage_error ("call takes one ROUTING_KEY");
  if (opt_timeout < 0)
    return usage_error ("--timeout must not be negative");
  if (!parse_properties (&props, &error))
    return usage_error ("%s", error->message);
  if ((body = read_all (&error)) == NULL)
    return input_failed (error);
  if ((conn = connect_or_fail (&status, FALSE)) == NULL)
    return status;
  if (opt_timeout > 0)
    timeout_id = g_timeout_add_seconds (opt_timeout, on_call_timeout, &timed_out);
  reply = carehare_connection_call_sync (conn, opt_exchange ? opt_exchange : "", argv[1], body, props,
                                        CAREHARE_PUBLISH_FLAGS_MANDATORY, interrupted, &error);
  if (!timed_out && timeout_id != 0)
    g_source_remove (timeout_id);

  if (reply != NULL)
    status = print_delivery (reply, opt_json) ? EXIT_OK : EXIT_USAGE;
  else if (timed_out)
    {
      g_printerr ("carehare: call: no reply within %d seconds\n", opt_timeout);
      status = EXIT_TIMED_OUT;
    }
  else
    status = fail ("call", error);
  close_quietly (conn);
  return status;
}

/* ---- Command table and help ------------------------------------------------------- */

typedef struct {
  const char        *name;
  const char        *arguments;
  const char        *summary;
  const GOptionEntry *entries;
  int              (*run) (int argc, char **argv);
} Command;

static const Command commands[] = {
  { "publish", "",
    "Publish standard input (or --file) as one message, or one message per line with --lines, "
    "and wait for every confirm. Exits non-zero naming the first message that failed.",
    publish_entries, cmd_publish },
  { "consume", "QUEUE",
    "Print each message's body (or a JSON line) and ack it, until --count messages or Ctrl-C; "
    "then close cleanly. A body is printed as is, with a newline added if it lacks one.",
    consume_entries, cmd_consume },
  { "declare-queue", "[NAME]",
    "Declare a queue and print its name (the server names it when NAME is empty or missing).",
    declare_queue_entries, cmd_declare_queue },
  { "delete-queue", "NAME", "Delete a queue and print how many messages it held.",
    delete_queue_entries, cmd_delete_queue },
  { "purge-queue", "NAME", "Remove every ready message from a queue and print how many.",
    NULL, cmd_purge_queue },
  { "declare-exchange", "NAME", "Declare an exchange.", declare_exchange_entries, cmd_declare_exchange },
  { "delete-exchange", "NAME", "Delete an exchange.", delete_exchange_entries, cmd_delete_exchange },
  { "bind", "DESTINATION EXCHANGE [ROUTING_KEY]",
    "Bind a queue (or with --to-exchange an exchange) to EXCHANGE.", bind_entries, cmd_bind },
  { "unbind", "DESTINATION EXCHANGE [ROUTING_KEY]", "Remove a binding made by bind.", bind_entries, cmd_unbind },
  { "call", "ROUTING_KEY",
    "Send standard input (or --file) as a request over direct reply-to and print the reply. The request is mandatory: a routing key no queue takes fails at once (exit 4).",
    call_entries, cmd_call },
};

/* Appends TEXT wrapped to 79 columns, continuation lines indented by INDENT. */
static void
append_wrapped (GString    *out,
                const char *text,
                gsize       column,
                gsize       indent)
{
  g_auto(GStrv) words = g_strsplit (text, " ", -1);

  for (char **w = words; *w != NULL; w++)
    {
      gsize len = strlen (*w);
      if (w != words && column + 1 + len > 79)
        {
          g_string_append_printf (out, "\n%*s", (int) indent, "");
          column = indent;
        }
      else if (w != words)
        {
          g_string_append_c (out, ' ');
          column++;
        }
      g_string_append (out, *w);
      column += len;
    }
  g_string_append_c (out, '\n');
}

static void
print_entries (GString            *out,
               const GOptionEntry *entries)
{
  for (const GOptionEntry *e = entries; e != NULL && e->long_name != NULL; e++)
    {
      g_autofree char *left = NULL;

      if (e->short_name != 0)
        left = g_strdup_printf ("-%c, --%s%s%s", e->short_name, e->long_name,
                                e->arg_description ? " " : "", e->arg_description ? e->arg_description : "");
      else
        left = g_strdup_printf ("    --%s%s%s", e->long_name,
                                e->arg_description ? " " : "", e->arg_description ? e->arg_description : "");
      g_string_append_printf (out, "  %-28s ", left);
      append_wrapped (out, e->description, MAX (31, strlen (left) + 3), 31);
    }
}

static const char exit_status_text[] =
  "Exit status:\n"
  "  0  success\n"
  "  1  usage: bad command line, malformed NAME=VALUE, invalid URI, unreadable input\n"
  "  2  connection: could not connect or log in, or the connection was lost\n"
  "  3  refused: the broker refused the operation (no such queue or exchange,\n"
  "     403 access refused, 406 precondition failed, 405 locked)\n"
  "  4  message refused: a published message was nacked or returned unroutable\n"
  "  5  call: no reply within --timeout\n"
  "  130  interrupted by Ctrl-C or SIGTERM (consume stops cleanly with 0 instead)\n";

static const char environment_text[] =
  "Environment:\n"
  "  CAREHARE_URI  the broker URI when --uri is not given (default " DEFAULT_URI ")\n";

static const char examples_text[] =
  "Examples:\n"
  "  echo hi | carehare publish --routing-key q && carehare consume q --count 1\n"
  "\n"
  "  seq 1000 | carehare publish --lines --exchange logs --mandatory\n"
  "\n"
  "  carehare declare-queue jobs --durable --argument x-message-ttl=60000\n"
  "\n"
  "  carehare consume jobs --json --count 10 | jq .routing_key\n"
  "\n"
  "  carehare consume jobs --exec 'sh ./handle-job.sh'\n"
  "\n"
  "  echo '{\"n\": 2}' | carehare call square --timeout 5\n";

static char *
full_help (void)
{
  GString *out = g_string_new (NULL);

  g_string_append (out,
    "Usage: carehare COMMAND [OPTION...] [ARGUMENT...]\n"
    "Publish, consume, declare and call on a RabbitMQ (AMQP 0-9-1) broker from shells and scripts.\n"
    "Every publish waits for the broker's confirm; every consumed message is acked after it was handled.\n"
    "\n"
    "Options for every command:\n");
  print_entries (out, uri_entries);
  g_string_append (out,
    "  -h, --help                   Show this help (or a command's with COMMAND --help)\n"
    "  -V, --version                Show the version\n");
  /* "carehare NAME ARGS:" headings: help2man makes each a subsection. */
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_string_append_printf (out, "\ncarehare %s%s%s:\n", commands[i].name,
                              *commands[i].arguments ? " " : "", commands[i].arguments);
      g_string_append (out, "  ");
      append_wrapped (out, commands[i].summary, 2, 2);
      if (commands[i].entries != NULL)
        g_string_append_c (out, '\n');
      print_entries (out, commands[i].entries);
    }
  g_string_append_printf (out, "\n%s\n%s\n%s", exit_status_text, environment_text, examples_text);
  return g_string_free (out, FALSE);
}

static const Command *
find_command (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      return &commands[i];
  return NULL;
}

static void
free_options (void)
{
  g_clear_pointer (&opt_uri, g_free);
  g_clear_pointer (&opt_exchange, g_free);
  g_clear_pointer (&opt_routing_key, g_free);
  g_clear_pointer (&opt_properties, g_strfreev);
  g_clear_pointer (&opt_headers, g_strfreev);
  g_clear_pointer (&opt_arguments, g_strfreev);
  g_clear_pointer (&opt_file, g_free);
  g_clear_pointer (&opt_exec, g_free);
  g_clear_pointer (&opt_type, g_free);
}

int
main (int argc, char **argv)
{
  const Command *command;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *parameter = NULL;
  guint sigint_id, sigterm_id;
  int status;

  /* Before GLib opens anything: a closed standard descriptor would be
   * reused by the main context's eventfd, which the tool would then read
   * from or write to. */
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl (fd, F_GETFD) < 0 && errno == EBADF)
      {
        int null_fd = open ("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);

        if (fd == 0)
          stdin_was_closed = TRUE;
        if (null_fd >= 0 && null_fd != fd)
          {
            dup2 (null_fd, fd);
            close (null_fd);
          }
      }
  setlocale (LC_ALL, "");
  /* A closed pipe (carehare consume q | head -1) is a write error to
   * report, not a silent death with messages unacked. */
  signal (SIGPIPE, SIG_IGN);

  /* --uri may also come before the command. */
  while (argc >= 2 && (g_str_has_prefix (argv[1], "--uri=") ||
                       ((g_str_equal (argv[1], "--uri") || g_str_equal (argv[1], "-u")) && argc >= 3)))
    {
      int used = g_str_has_prefix (argv[1], "--uri=") ? 1 : 2;
      g_free (opt_uri);
      opt_uri = g_strdup (used == 1 ? argv[1] + strlen ("--uri=") : argv[2]);
      for (int i = 1; i + used < argc; i++)
        argv[i] = argv[i + used];
      argc -= used;
      argv[argc] = NULL;
    }

  if (argc < 2 || g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h") || g_str_equal (argv[1], "help"))
    {
      g_autofree char *help = full_help ();
      if (argc < 2)
        {
          g_printerr ("%s", help);
          return EXIT_USAGE;
        }
      g_print ("%s", help);
      return EXIT_OK;
    }
  if (g_str_equal (argv[1], "--version") || g_str_equal (argv[1], "-V"))
    {
      g_print ("carehare %s\ncarehare-glib %u.%u.%u\n", CAREHARE_VERSION_S,
               carehare_get_major_version (), carehare_get_minor_version (), carehare_get_micro_version ());
      return EXIT_OK;
    }
  command = find_command (argv[1]);
  if (command == NULL)
    return usage_error ("unknown command '%s'", argv[1]);

  parameter = g_strdup_printf ("%s%s%s", command->name, *command->arguments ? " " : "", command->arguments);
  context = g_option_context_new (parameter);
  g_option_context_set_summary (context, command->summary);
  g_option_context_set_description (context, exit_status_text);
  g_option_context_add_main_entries (context, uri_entries, NULL);
  if (command->entries != NULL)
    g_option_context_add_main_entries (context, command->entries, NULL);
  /* argv[0] "carehare COMMAND" so that errors and --help name the command. */
  argv[1] = argv[0];
  argc--;
  argv++;
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      status = usage_error ("%s: %s", command->name, error->message);
      free_options ();
      return status;
    }

  interrupted = g_cancellable_new ();
  sigint_id = g_unix_signal_add (SIGINT, on_interrupt, NULL);
  sigterm_id = g_unix_signal_add (SIGTERM, on_interrupt, NULL);
  status = command->run (argc, argv);
  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_clear_object (&interrupted);
  free_options ();
  return status;
}
