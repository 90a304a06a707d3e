/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How a URI is read (docs/uri.md has the rules for users):
 *
 * 1. Checks GUri does not make on the raw string: UTF-8, no spaces or
 *    characters that RFC 3986 never allows, a scheme we accept, "//".
 * 2. g_uri_split_with_user() in strict mode with G_URI_FLAGS_ENCODED, so that
 *    percent-encoding survives until we know which component it is in
 *    ("%2F" in the vhost is not a path separator) and bad encoding fails.
 * 3. The AMQP rules: decoding, defaults, the vhost, the query parameters.
 *
 * Passwords.  No message may contain the password, so messages are built
 * from our own words and from components that cannot hold it.  GUri's own
 * messages are never passed on.  One case needs care: a password with an
 * unencoded '/', '?' or '#' ends the authority early ("amqp://u:pa/ss@h"
 * reads as host "u", port "pa", vhost "ss@h"), so pieces of the password
 * turn up as the port, the vhost or the query.  Such a URI is recognisable
 * by an '@' after the authority while the authority itself has none; then
 * messages show no text taken from the URI, and carehare_uri_redact() hides
 * everything up to the last '@'.
 */
#include "carehare-uri.h"

#include <string.h>

#include "carehare-error.h"

#define REDACTED_PASSWORD "***"
#define UNPARSEABLE_URI "<unparseable URI>"
#define HIDDEN_TEXT "<not shown>"
#define HIDDEN_HINT \
  " (parts of the URI are not shown: it has an '@' after the host, so a " \
  "user name or password may contain an unencoded '/', '?' or '#'; " \
  "percent-encode them as %2F, %3F and %23)"
/* Longest text from the URI quoted in a message, in characters. */
#define MAX_ECHO_CHARS 64
/* Connection.Open carries the vhost as an AMQP short string. */
#define MAX_VHOST_BYTES 255
#define FRAME_MIN_SIZE 4096

typedef enum {
  PARAM_HEARTBEAT,
  PARAM_CONNECTION_TIMEOUT,
  PARAM_CHANNEL_MAX,
  PARAM_FRAME_MAX,
  PARAM_AUTH_MECHANISM,
  PARAM_CACERTFILE,
  PARAM_CERTFILE,
  PARAM_KEYFILE,
  PARAM_VERIFY,
  PARAM_SERVER_NAME_INDICATION,
  PARAM_CONNECTION_NAME,
  PARAM_MAX_BODY_SIZE,
  N_PARAMS
} ParamId;

static const struct {
  const char *name;
  gboolean tls_only;
} param_info[N_PARAMS] = {
  [PARAM_HEARTBEAT] = { "heartbeat", FALSE },
  [PARAM_CONNECTION_TIMEOUT] = { "connection_timeout", FALSE },
  [PARAM_CHANNEL_MAX] = { "channel_max", FALSE },
  [PARAM_FRAME_MAX] = { "frame_max", FALSE },
  [PARAM_AUTH_MECHANISM] = { "auth_mechanism", FALSE },
  [PARAM_CACERTFILE] = { "cacertfile", TRUE },
  [PARAM_CERTFILE] = { "certfile", TRUE },
  [PARAM_KEYFILE] = { "keyfile", TRUE },
  [PARAM_VERIFY] = { "verify", TRUE },
  [PARAM_SERVER_NAME_INDICATION] = { "server_name_indication", TRUE },
  [PARAM_CONNECTION_NAME] = { "connection_name", FALSE },
  [PARAM_MAX_BODY_SIZE] = { "max_body_size", FALSE },
};

typedef struct {
  /* The URI may have a password in pieces outside the userinfo: quote no
   * text from it. */
  gboolean hide_text;
} ParseContext;

/* Overwrites a secret before it is freed, so it does not linger in freed
 * memory; volatile so that the stores are not optimised away. */
void
carehare_uri_secret_free (char *secret)
{
  volatile char *p;

  if (secret == NULL)
    return;
  for (p = secret; *p != '\0'; p++)
    *p = '\0';
  g_free (secret);
}

void
carehare_uri_secret_strv_free (char **secrets)
{
  if (secrets == NULL)
    return;
  for (char **p = secrets; *p != NULL; p++)
    carehare_uri_secret_free (*p);
  g_free (secrets);
}

/* A string holding a password: g_autoptr(CarehareSecret) wipes it. */
typedef char CarehareSecret;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CarehareSecret, carehare_uri_secret_free)

G_GNUC_PRINTF (3, 4)
static gboolean
fail (const ParseContext  *ctx,
      GError             **error,
      const char          *format,
      ...)
{
  g_autofree char *problem = NULL;
  va_list args;

  va_start (args, format);
  problem = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI,
               "Invalid AMQP URI: %s%s", problem,
               ctx->hide_text ? HIDDEN_HINT : "");
  return FALSE;
}

/* @text (UTF-8) quoted for a message, shortened if long, or a placeholder
 * when text from this URI must not be shown. */
static char *
quote (const ParseContext *ctx,
       const char         *text,
       gssize              len)
{
  g_autofree char *copy = NULL;
  glong n_chars;

  if (ctx->hide_text)
    return g_strdup (HIDDEN_TEXT);

  copy = len < 0 ? g_strdup (text) : g_strndup (text, len);
  n_chars = g_utf8_strlen (copy, -1);
  if (n_chars > MAX_ECHO_CHARS)
    {
      g_autofree char *head = g_utf8_substring (copy, 0, MAX_ECHO_CHARS);
      return g_strdup_printf ("'%s...'", head);
    }
  return g_strdup_printf ("'%s'", copy);
}

/* The end of an RFC 3986 scheme at the start of @s (pointing at the ':'),
 * or NULL if @s does not start with "scheme:". */
static const char *
scan_scheme (const char *s)
{
  const char *p = s;

  if (!g_ascii_isalpha (*p))
    return NULL;
  while (g_ascii_isalnum (*p) || *p == '+' || *p == '-' || *p == '.')
    p++;
  return *p == ':' ? p : NULL;
}

/* Characters RFC 3986 allows nowhere in a URI (besides non-ASCII, which we
 * accept as UTF-8 IRIs): controls, space and  " < > \ ^ ` { | }. */
static gboolean
has_forbidden_char (const char *s)
{
  for (; *s != '\0'; s++)
    {
      guchar c = (guchar) *s;

      if (c <= 0x20 || c == 0x7f || strchr ("\"<>\\^`{|}", c) != NULL)
        return TRUE;
    }
  return FALSE;
}

static const char *
find_last (const char *start,
           const char *end,
           char        c)
{
  const char *found = NULL;
  const char *p;

  for (p = start; p < end; p++)
    if (*p == c)
      found = p;
  return found;
}

/* Host and port text of an authority (userinfo already removed), for
 * messages about what GUri rejected. */
static void
split_hostport (const char  *start,
                const char  *end,
                const char **host_end,
                const char **port_start)
{
  const char *colon = NULL;

  if (*start == '[')
    {
      const char *bracket = memchr (start, ']', end - start);

      if (bracket != NULL && bracket + 1 < end && bracket[1] == ':')
        colon = bracket + 1;
    }
  else
    colon = memchr (start, ':', end - start);

  *host_end = colon != NULL ? colon : end;
  *port_start = colon != NULL ? colon + 1 : end;
}

/* A host name after decoding: letters, digits, '-', '.', '_' or non-ASCII
 * UTF-8 (an internationalised name, left to the resolver). */
static gboolean
is_valid_host_name (const char *host)
{
  const char *p;

  if (*host == '\0' || !g_utf8_validate (host, -1, NULL))
    return FALSE;
  for (p = host; *p != '\0'; p++)
    {
      guchar c = (guchar) *p;

      if (c < 0x80 && !g_ascii_isalnum (c) && c != '-' && c != '.' && c != '_')
        return FALSE;
    }
  return TRUE;
}

/* A non-negative decimal integer no larger than @max: digits only, no sign,
 * no spaces; leading zeros are fine. */
static gboolean
parse_decimal (const char *text,
               guint64     max,
               guint64    *out)
{
  guint64 value = 0;
  const char *p;

  if (*text == '\0')
    return FALSE;
  for (p = text; *p != '\0'; p++)
    {
      if (!g_ascii_isdigit (*p))
        return FALSE;
      /* value <= max <= G_MAXUINT32 here, so this cannot overflow. */
      value = value * 10 + (guint64) (*p - '0');
      if (value > max)
        return FALSE;
    }
  *out = value;
  return TRUE;
}

static gboolean
bad_value (const ParseContext  *ctx,
           ParamId              id,
           const char          *value,
           const char          *expected,
           GError             **error)
{
  g_autofree char *quoted = quote (ctx, value, -1);

  return fail (ctx, error, "invalid value %s for query parameter '%s': expected %s",
               quoted, param_info[id].name, expected);
}

static gboolean
parse_integer_param (const ParseContext  *ctx,
                     ParamId              id,
                     const char          *value,
                     guint64              max,
                     const char          *expected,
                     guint64             *out,
                     GError             **error)
{
  if (!parse_decimal (value, max, out))
    return bad_value (ctx, id, value, expected, error);
  return TRUE;
}

static gboolean
apply_param (const ParseContext   *ctx,
             ParamId               id,
             const char           *value,
             CarehareUriSettings  *settings,
             GError              **error)
{
  guint64 n = 0;  /* set by every branch that reads it; GCC -O3 cannot tell */

  switch (id)
    {
    case PARAM_HEARTBEAT:
      if (!parse_integer_param (ctx, id, value, G_MAXUINT16,
                                "an integer from 0 to 65535 (seconds; 0 leaves the choice to the server)",
                                &n, error))
        return FALSE;
      settings->heartbeat = (gint) n;
      return TRUE;

    case PARAM_CONNECTION_TIMEOUT:
      if (!parse_integer_param (ctx, id, value, G_MAXUINT32,
                                "an integer from 0 to 4294967295 (milliseconds; 0 means no timeout)",
                                &n, error))
        return FALSE;
      settings->connection_timeout_ms = (gint64) n;
      return TRUE;

    case PARAM_CHANNEL_MAX:
      if (!parse_integer_param (ctx, id, value, G_MAXUINT16,
                                "an integer from 0 to 65535 (0 means no limit)",
                                &n, error))
        return FALSE;
      settings->channel_max = (gint) n;
      return TRUE;

    case PARAM_FRAME_MAX:
      /* From AMQP's frame_min_size up to our bound; no "no limit": a frame
       * is buffered whole before it is decoded. */
      if (!parse_decimal (value, CAREHARE_URI_MAX_FRAME_MAX, &n) || n < FRAME_MIN_SIZE)
        return bad_value (ctx, id, value,
                          "an integer from 4096 (the AMQP frame_min_size) to 1048576 (bytes)",
                          error);
      settings->frame_max = (gint64) n;
      return TRUE;

    case PARAM_AUTH_MECHANISM:
      if (g_ascii_strcasecmp (value, "plain") == 0)
        settings->auth_mechanism = CAREHARE_AUTH_MECHANISM_PLAIN;
      else if (g_ascii_strcasecmp (value, "external") == 0)
        settings->auth_mechanism = CAREHARE_AUTH_MECHANISM_EXTERNAL;
      else
        return bad_value (ctx, id, value, "plain or external", error);
      return TRUE;

    case PARAM_VERIFY:
      if (g_ascii_strcasecmp (value, "verify_peer") == 0)
        settings->verify = CAREHARE_TLS_VERIFY_PEER;
      else if (g_ascii_strcasecmp (value, "verify_none") == 0)
        settings->verify = CAREHARE_TLS_VERIFY_NONE;
      else
        return bad_value (ctx, id, value, "verify_peer or verify_none", error);
      return TRUE;

    case PARAM_CACERTFILE:
    case PARAM_CERTFILE:
    case PARAM_KEYFILE:
      {
        char **field = id == PARAM_CACERTFILE ? &settings->cacertfile :
                       id == PARAM_CERTFILE ? &settings->certfile : &settings->keyfile;

        if (*value == '\0')
          return bad_value (ctx, id, value, "the path of a PEM file", error);
        *field = g_strdup (value);
        return TRUE;
      }

    case PARAM_SERVER_NAME_INDICATION:
      if (g_ascii_strcasecmp (value, "disable") == 0)
        settings->server_name_indication_disabled = TRUE;
      else if (is_valid_host_name (value))
        settings->server_name_indication = g_strdup (value);
      else
        return bad_value (ctx, id, value, "a host name or 'disable'", error);
      return TRUE;

    case PARAM_CONNECTION_NAME:
      settings->connection_name = g_strdup (value);
      return TRUE;

    case PARAM_MAX_BODY_SIZE:
      /* A larger message is rejected, one at a time; above what any
       * broker sends there is nothing to configure. */
      if (!parse_decimal (value, CAREHARE_URI_MAX_BODY_SIZE, &n) || n == 0)
        return bad_value (ctx, id, value,
                          "an integer from 1 to 536870912 (bytes; RabbitMQ's own limit is "
                          "512 MiB)", error);
      settings->max_body_size = (gint64) n;
      return TRUE;

    case N_PARAMS:
    default:
      break;
    }
  g_assert_not_reached ();
  return FALSE;
}

static gboolean
parse_query (const ParseContext   *ctx,
             const char           *query,
             CarehareUriSettings  *settings,
             GError              **error)
{
  gboolean seen[N_PARAMS] = { FALSE, };
  GUriParamsIter iter;
  g_autoptr(GError) local_error = NULL;
  char *name_out;
  char *value_out;

  g_uri_params_iter_init (&iter, query, -1, "&", G_URI_PARAMS_NONE);
  while (g_uri_params_iter_next (&iter, &name_out, &value_out, &local_error))
    {
      g_autofree char *name = name_out;
      g_autofree char *value = value_out;
      ParamId id;

      for (id = 0; id < N_PARAMS; id++)
        if (strcmp (name, param_info[id].name) == 0)
          break;

      if (id == N_PARAMS)
        {
          g_autofree char *quoted = quote (ctx, name, -1);

          return fail (ctx, error,
                       "unknown query parameter %s; known parameters are heartbeat, "
                       "connection_timeout, channel_max, frame_max, auth_mechanism, "
                       "cacertfile, certfile, keyfile, verify, server_name_indication, "
                       "connection_name and max_body_size", quoted);
        }
      if (seen[id])
        return fail (ctx, error, "query parameter '%s' is given more than once",
                     param_info[id].name);
      seen[id] = TRUE;

      if (param_info[id].tls_only && !settings->tls)
        return fail (ctx, error,
                     "query parameter '%s' only applies to TLS connections; "
                     "use an amqps:// URI", param_info[id].name);

      if (!apply_param (ctx, id, value, settings, error))
        return FALSE;
    }

  if (local_error != NULL)
    return fail (ctx, error,
                 "malformed query: expected name=value pairs separated by '&', "
                 "percent-encoded as UTF-8");

  if (seen[PARAM_CERTFILE] != seen[PARAM_KEYFILE])
    return fail (ctx, error,
                 "query parameter '%s' needs '%s' too: a client certificate "
                 "needs both the certificate and its private key",
                 seen[PARAM_CERTFILE] ? "certfile" : "keyfile",
                 seen[PARAM_CERTFILE] ? "keyfile" : "certfile");

  return TRUE;
}

/* The vhost from the (still encoded) path: "" and "/" mean "/" (a project
 * decision, see docs/uri.md), otherwise the one segment after the '/'. */
static gboolean
parse_vhost (const ParseContext   *ctx,
             const char           *path,
             CarehareUriSettings  *settings,
             GError              **error)
{
  const char *segment;

  if (path[0] == '\0' || strcmp (path, "/") == 0)
    {
      settings->vhost = g_strdup ("/");
      return TRUE;
    }

  /* With an authority, GUri's path is empty or starts with '/'. */
  g_assert (path[0] == '/');
  segment = path + 1;
  if (strchr (segment, '/') != NULL)
    {
      g_autofree char *quoted = quote (ctx, path, -1);

      return fail (ctx, error,
                   "the path %s has more than one segment; a vhost name "
                   "containing '/' must encode it as %%2F (the vhost '/' is %%2F)",
                   quoted);
    }

  settings->vhost = g_uri_unescape_segment (segment, NULL, NULL);
  if (settings->vhost == NULL)
    return fail (ctx, error, "the vhost contains an encoded NUL (%%00)");
  if (!g_utf8_validate (settings->vhost, -1, NULL))
    return fail (ctx, error, "the vhost is not valid UTF-8 after percent-decoding");
  if (strlen (settings->vhost) > MAX_VHOST_BYTES)
    return fail (ctx, error, "the vhost is longer than %d bytes", MAX_VHOST_BYTES);
  return TRUE;
}

static gboolean
parse_host (const ParseContext   *ctx,
            const char           *host,
            CarehareUriSettings  *settings,
            GError              **error)
{
  g_autofree char *decoded = NULL;

  if (host[0] == '\0')
    {
      settings->host = g_strdup ("localhost");
      return TRUE;
    }

  /* GUri has checked an IP-literal and removed its brackets: only IPv6
   * literals contain ':' here. */
  if (strchr (host, ':') != NULL)
    {
      settings->host = g_strdup (host);
      return TRUE;
    }

  decoded = g_uri_unescape_segment (host, NULL, NULL);
  if (decoded == NULL || !is_valid_host_name (decoded))
    {
      g_autofree char *quoted = NULL;

      if (decoded == NULL || !g_utf8_validate (decoded, -1, NULL))
        return fail (ctx, error, "the host is not valid UTF-8 after percent-decoding");
      quoted = quote (ctx, decoded, -1);
      return fail (ctx, error,
                   "invalid host %s: a host name has letters, digits, '-', '.' and '_'; "
                   "an IPv6 address goes in brackets, as in amqp://[::1]:5672/",
                   quoted);
    }
  settings->host = g_steal_pointer (&decoded);
  return TRUE;
}

/* GUri's message may quote the URI; build our own from the error code and
 * the text we located ourselves. */
static gboolean
fail_from_guri (const ParseContext  *ctx,
                const GError        *guri_error,
                const char          *hostport,
                const char          *authority_end,
                GError             **error)
{
  const char *host_end;
  const char *port_start;

  split_hostport (hostport, authority_end, &host_end, &port_start);

  switch (guri_error->code)
    {
    case G_URI_ERROR_BAD_USER:
      return fail (ctx, error, "invalid percent-encoding in the user name");
    case G_URI_ERROR_BAD_PASSWORD:
      return fail (ctx, error, "invalid percent-encoding in the password");
    case G_URI_ERROR_BAD_HOST:
      {
        g_autofree char *quoted = quote (ctx, hostport, host_end - hostport);

        if (*hostport == '[')
          return fail (ctx, error, "invalid IPv6 address %s", quoted);
        return fail (ctx, error, "invalid percent-encoding in the host %s", quoted);
      }
    case G_URI_ERROR_BAD_PORT:
      {
        g_autofree char *quoted = quote (ctx, port_start, authority_end - port_start);

        return fail (ctx, error, "invalid port %s: expected a number from 1 to 65535",
                     quoted);
      }
    case G_URI_ERROR_BAD_PATH:
      return fail (ctx, error, "invalid percent-encoding in the vhost");
    case G_URI_ERROR_BAD_QUERY:
      return fail (ctx, error, "invalid percent-encoding in the query");
    case G_URI_ERROR_BAD_FRAGMENT:
      return fail (ctx, error, "a fragment ('#...') is not allowed");
    default:
      return fail (ctx, error, "the URI could not be parsed");
    }
}

/* Whether every '%' in the @len bytes at @s starts a valid
 * percent-encoding. */
static gboolean
valid_percent_encoding (const char *s,
                        gsize       len)
{
  for (gsize i = 0; i < len; i++)
    if (s[i] == '%' &&
        (len - i < 3 || !g_ascii_isxdigit (s[i + 1]) || !g_ascii_isxdigit (s[i + 2])))
      return FALSE;
  return TRUE;
}

static gboolean
parse_uri (const char           *uri,
           CarehareUriSettings  *settings,
           GError              **error)
{
  ParseContext ctx = { FALSE };
  const char *scheme_end;
  const char *authority;
  const char *authority_end;
  const char *at;
  const char *hostport;
  const char *colon;
  g_autofree char *scheme = NULL;
  g_autofree char *user = NULL;
  g_autoptr(CarehareSecret) password = NULL;
  g_autofree char *without_password = NULL;
  g_autofree char *guri_password = NULL;
  g_autofree char *host = NULL;
  g_autofree char *path = NULL;
  g_autofree char *query = NULL;
  g_autofree char *fragment = NULL;
  g_autoptr(GError) guri_error = NULL;
  gint port;
  gboolean ok;

  settings->heartbeat = -1;
  settings->connection_timeout_ms = -1;
  settings->channel_max = -1;
  settings->frame_max = -1;
  settings->max_body_size = -1;
  settings->auth_mechanism = CAREHARE_AUTH_MECHANISM_PLAIN;
  settings->verify = CAREHARE_TLS_VERIFY_PEER;

  if (uri[0] == '\0')
    return fail (&ctx, error, "the URI is empty; expected "
                 "amqp://[user[:password]@]host[:port][/vhost][?parameters]");
  if (!g_utf8_validate (uri, -1, NULL))
    return fail (&ctx, error, "the URI is not valid UTF-8");
  /* GUri would quietly percent-encode spaces and strip tabs and newlines. */
  if (has_forbidden_char (uri))
    return fail (&ctx, error,
                 "the URI contains a space, a control character or one of "
                 "\" < > \\ ^ ` { | }, which must be percent-encoded");

  scheme_end = scan_scheme (uri);
  if (scheme_end == NULL)
    return fail (&ctx, error, "the URI has no scheme; use amqp:// or amqps://");
  scheme = g_ascii_strdown (uri, scheme_end - uri);
  if (strcmp (scheme, "amqp") != 0 && strcmp (scheme, "amqps") != 0)
    {
      g_autofree char *quoted = quote (&ctx, uri, scheme_end - uri);

      return fail (&ctx, error, "unsupported scheme %s; use amqp:// or amqps://", quoted);
    }
  settings->tls = strcmp (scheme, "amqps") == 0;
  if (strncmp (scheme_end, "://", 3) != 0)
    return fail (&ctx, error, "expected '//' after '%s:'", scheme);

  authority = scheme_end + 3;
  authority_end = authority + strcspn (authority, "/?#");
  at = memchr (authority, '@', authority_end - authority);
  if (at == NULL && strchr (authority_end, '@') != NULL)
    ctx.hide_text = TRUE;
  if (at != NULL && find_last (authority, authority_end, '@') != at)
    return fail (&ctx, error,
                 "the user name or password contains an unencoded '@'; "
                 "percent-encode it as %%40");
  hostport = at != NULL ? at + 1 : authority;

  /* The password never reaches GUri, whose parser makes copies of its own
   * that it frees unwiped: it is cut out of the URI GUri sees, and checked
   * and decoded here. */
  colon = at != NULL ? memchr (authority, ':', at - authority) : NULL;
  if (colon != NULL)
    {
      if (!valid_percent_encoding (authority, colon - authority))
        return fail (&ctx, error, "invalid percent-encoding in the user name");
      if (!valid_percent_encoding (colon + 1, at - colon - 1))
        return fail (&ctx, error, "invalid percent-encoding in the password");
      password = g_strndup (colon + 1, at - colon - 1);
      without_password = g_strdup_printf ("%.*s%s", (int) (colon + 1 - uri), uri, at);
    }

  ok = g_uri_split_with_user (without_password != NULL ? without_password : uri,
                              G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED |
                              G_URI_FLAGS_NON_DNS,
                              NULL, &user, &guri_password, NULL, &host, &port,
                              &path, &query, &fragment, &guri_error);
  if (!ok)
    return fail_from_guri (&ctx, guri_error, hostport, authority_end, error);

  if (fragment != NULL)
    return fail (&ctx, error, "a fragment ('#...') is not allowed");

  if (user != NULL)
    {
      settings->username = g_uri_unescape_segment (user, NULL, NULL);
      if (settings->username == NULL)
        return fail (&ctx, error, "the user name contains an encoded NUL (%%00)");
      if (!g_utf8_validate (settings->username, -1, NULL))
        return fail (&ctx, error, "the user name is not valid UTF-8 after percent-decoding");
    }
  else
    settings->username = g_strdup ("guest");

  if (password != NULL)
    {
      /* Any bytes but NUL: SASL PLAIN uses NUL as its separator. */
      settings->password = g_uri_unescape_segment (password, NULL, NULL);
      if (settings->password == NULL)
        return fail (&ctx, error, "the password contains an encoded NUL (%%00)");
    }
  else
    settings->password = g_strdup ("guest");

  if (!parse_host (&ctx, host, settings, error))
    return FALSE;

  if (port == 0)
    {
      g_autofree char *quoted = quote (&ctx, "0", -1);

      return fail (&ctx, error, "invalid port %s: expected a number from 1 to 65535", quoted);
    }
  if (port > 0)
    settings->port = (guint16) port;
  else
    settings->port = settings->tls ? CAREHARE_URI_DEFAULT_TLS_PORT : CAREHARE_URI_DEFAULT_PORT;

  if (!parse_vhost (&ctx, path, settings, error))
    return FALSE;

  if (query != NULL && !parse_query (&ctx, query, settings, error))
    return FALSE;

  return TRUE;
}

gboolean
carehare_uri_parse (const char           *uri,
                    CarehareUriSettings  *settings,
                    GError              **error)
{
  g_return_val_if_fail (uri != NULL, FALSE);
  g_return_val_if_fail (settings != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (settings, 0, sizeof *settings);
  if (!parse_uri (uri, settings, error))
    {
      carehare_uri_settings_clear (settings);
      return FALSE;
    }
  return TRUE;
}

void
carehare_uri_settings_clear (CarehareUriSettings *settings)
{
  g_return_if_fail (settings != NULL);

  g_free (settings->host);
  g_free (settings->username);
  carehare_uri_secret_free (settings->password);
  g_free (settings->vhost);
  g_free (settings->cacertfile);
  g_free (settings->certfile);
  g_free (settings->keyfile);
  g_free (settings->server_name_indication);
  g_free (settings->connection_name);
  memset (settings, 0, sizeof *settings);
}

/* Appends @text, replacing the value of any query parameter named
 * "password" (Erlang's TLS key passphrase; we reject it when parsing, but a
 * URI being logged may be one we rejected). @text starts at the host. */
static void
append_masking_query_passwords (GString    *out,
                                const char *text)
{
  const char *question = text + strcspn (text, "?#");
  const char *query_end;
  g_autofree char *query = NULL;
  g_auto(GStrv) pairs = NULL;
  guint i;

  g_string_append_len (out, text, question - text);
  if (*question != '?')
    {
      g_string_append (out, question);
      return;
    }

  query_end = question + 1 + strcspn (question + 1, "#");
  query = g_strndup (question + 1, query_end - (question + 1));
  pairs = g_strsplit (query, "&", -1);
  g_string_append_c (out, '?');
  for (i = 0; pairs[i] != NULL; i++)
    {
      const char *equals = strchr (pairs[i], '=');
      g_autofree char *raw_name = NULL;
      g_autofree char *name = NULL;

      if (i > 0)
        g_string_append_c (out, '&');
      if (equals != NULL)
        {
          raw_name = g_strndup (pairs[i], equals - pairs[i]);
          name = g_uri_unescape_segment (raw_name, NULL, NULL);
        }
      if (name != NULL && g_ascii_strcasecmp (name, "password") == 0)
        {
          g_string_append_len (out, pairs[i], equals + 1 - pairs[i]);
          g_string_append (out, REDACTED_PASSWORD);
        }
      else
        g_string_append (out, pairs[i]);
    }
  g_string_append (out, query_end);
}

char *
carehare_uri_redact (const char *uri)
{
  g_autoptr(GString) out = NULL;
  const char *scheme_end;
  const char *authority;
  const char *authority_end;
  const char *last_at;
  const char *p;

  if (uri == NULL)
    return g_strdup ("<no URI>");

  /* What cannot be parsed cannot be redacted safely; a string with control
   * characters could also forge log lines. */
  if (!g_utf8_validate (uri, -1, NULL))
    return g_strdup (UNPARSEABLE_URI);
  for (p = uri; *p != '\0'; p++)
    if ((guchar) *p < 0x20 || *p == 0x7f)
      return g_strdup (UNPARSEABLE_URI);

  scheme_end = scan_scheme (uri);
  if (scheme_end == NULL || strncmp (scheme_end, "://", 3) != 0)
    return g_strdup (UNPARSEABLE_URI);

  authority = scheme_end + 3;
  authority_end = authority + strcspn (authority, "/?#");
  out = g_string_new_len (uri, authority - uri);

  last_at = find_last (authority, authority_end, '@');
  if (last_at != NULL)
    {
      /* The userinfo runs to the last '@' of the authority (GUri in strict
       * mode would stop at the first, but then an unencoded '@' in the
       * password would leave the rest of it in the host). */
      const char *colon = memchr (authority, ':', last_at - authority);

      if (colon != NULL)
        {
          g_string_append_len (out, authority, colon + 1 - authority);
          g_string_append (out, REDACTED_PASSWORD);
        }
      else
        g_string_append_len (out, authority, last_at - authority);
      append_masking_query_passwords (out, last_at);
    }
  else if ((last_at = strrchr (authority_end, '@')) != NULL)
    {
      /* An '@' after the authority: the userinfo may have been cut short
       * by an unencoded '/', '?' or '#' in it, so hide everything up to
       * that '@'. */
      g_string_append (out, REDACTED_PASSWORD);
      append_masking_query_passwords (out, last_at);
    }
  else
    append_masking_query_passwords (out, authority);

  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Percent-encodes @password into a buffer sized once (no reallocation
 * leaves a copy behind): free it with carehare_uri_secret_free(). */
static char *
escape_secret (const char *password)
{
  static const char hex[] = "0123456789ABCDEF";
  gsize len = strlen (password);
  char *out = g_malloc (len * 3 + 1);
  char *q = out;

  for (const char *p = password; *p != '\0'; p++)
    {
      guchar c = (guchar) *p;

      if (g_ascii_isalnum (c) || c == '-' || c == '.' || c == '_' || c == '~')
        *q++ = (char) c;
      else
        {
          *q++ = '%';
          *q++ = hex[c >> 4];
          *q++ = hex[c & 0xf];
        }
    }
  *q = '\0';
  return out;
}

char *
carehare_uri_with_password (const char *uri,
                            const char *password)
{
  g_auto(CarehareUriSettings) settings = { 0 };
  const char *authority;
  const char *authority_end;
  const char *last_at;
  const char *user;
  gsize user_len;
  const char *host;
  char *escaped;
  gsize escaped_len;
  gsize prefix_len;
  char *out;
  char *q;

  g_return_val_if_fail (uri != NULL, NULL);
  g_return_val_if_fail (password != NULL, NULL);

  if (!carehare_uri_parse (uri, &settings, NULL))
    return NULL;

  authority = scan_scheme (uri) + 3;
  authority_end = authority + strcspn (authority, "/?#");
  last_at = find_last (authority, authority_end, '@');
  if (last_at != NULL)
    {
      const char *colon = memchr (authority, ':', last_at - authority);

      /* The user as the URI spells it (still encoded). */
      user = authority;
      user_len = (gsize) ((colon != NULL ? colon : last_at) - authority);
      host = last_at + 1;
    }
  else
    {
      user = "guest";
      user_len = strlen (user);
      host = authority;
    }

  escaped = escape_secret (password);
  escaped_len = strlen (escaped);
  prefix_len = (gsize) (authority - uri);
  out = g_malloc (prefix_len + user_len + 1 + escaped_len + 1 + strlen (host) + 1);
  q = out;
  memcpy (q, uri, prefix_len);
  q += prefix_len;
  memcpy (q, user, user_len);
  q += user_len;
  *q++ = ':';
  memcpy (q, escaped, escaped_len);
  q += escaped_len;
  *q++ = '@';
  strcpy (q, host);
  carehare_uri_secret_free (escaped);
  return out;
}
