/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare-uri: the private parser of amqp:// and amqps:// URIs.
 *
 * GUri splits the URI; this layer applies the RabbitMQ URI specification
 * (https://www.rabbitmq.com/docs/uri-spec) and its query parameters
 * (https://www.rabbitmq.com/docs/uri-query-parameters) on top, strictly:
 * whatever it does not understand is an error, never silently ignored.
 * docs/uri.md is the user-facing reference, including where this project
 * deliberately differs from the specification.
 *
 * No I/O happens here: nothing is resolved and no file is opened.
 *
 * Error messages never contain the password, and carehare_uri_redact() is
 * the only way a URI should ever reach a log or an error message.
 */
#pragma once

#include <glib.h>

/* The largest frame_max a URI may ask for: a frame is buffered whole
 * before it is decoded, so this bounds that buffer. */
#define CAREHARE_URI_MAX_FRAME_MAX (1024 * 1024)
/* The largest max_body_size: RabbitMQ's own hard cap (max_message_size
 * cannot be set above 512 MiB), so no broker sends more. */
#define CAREHARE_URI_MAX_BODY_SIZE (G_GINT64_CONSTANT (512) * 1024 * 1024)

G_BEGIN_DECLS

#define CAREHARE_URI_DEFAULT_PORT 5672
#define CAREHARE_URI_DEFAULT_TLS_PORT 5671

typedef enum {
  CAREHARE_AUTH_MECHANISM_PLAIN,
  CAREHARE_AUTH_MECHANISM_EXTERNAL,
} CarehareAuthMechanism;

typedef enum {
  CAREHARE_TLS_VERIFY_PEER,
  CAREHARE_TLS_VERIFY_NONE,
} CarehareTlsVerify;

/*
 * CarehareUriSettings: what a URI says, with the defaults filled in.
 *
 * Every string is owned, decoded and (except the password) valid UTF-8.
 * Integers that the URI did not give are -1, so that the connection layer
 * can tell "not given" (use the server's value) from an explicit value.
 */
typedef struct {
  gboolean tls;                         /* amqps:// */
  char *host;                           /* owned; IPv6 without brackets; "localhost" when empty */
  guint16 port;                         /* 5672, or 5671 with TLS, when not given */
  char *username;                       /* owned; "guest" when not given */
  char *password;                       /* owned; "guest" when not given; never log it */
  char *vhost;                          /* owned; "/" for no path and for a bare "/" */
  gint heartbeat;                       /* seconds, 0..65535 (0: the server's), -1 not given */
  gint64 connection_timeout_ms;         /* 0..G_MAXUINT32 (0: no timeout), -1 not given */
  gint channel_max;                     /* 0..65535 (0: no limit), -1 not given */
  gint64 frame_max;                     /* 4096..CAREHARE_URI_MAX_FRAME_MAX, -1 not given */
  CarehareAuthMechanism auth_mechanism; /* PLAIN unless auth_mechanism=external */
  char *cacertfile;                     /* owned, nullable; amqps only */
  char *certfile;                       /* owned, nullable; amqps only, with keyfile */
  char *keyfile;                        /* owned, nullable; amqps only, with certfile */
  CarehareTlsVerify verify;             /* VERIFY_PEER unless verify=verify_none */
  char *server_name_indication;         /* owned, nullable: NULL means use host */
  gboolean server_name_indication_disabled; /* server_name_indication=disable */
  char *connection_name;                /* owned, nullable */
  gint64 max_body_size;                 /* 1..CAREHARE_URI_MAX_BODY_SIZE, -1 not given */
} CarehareUriSettings;

/* Parses @uri into @settings, which must be uninitialised or cleared; on
 * failure @settings is left zeroed (so clearing it is harmless) and @error is
 * CAREHARE_ERROR_INVALID_URI with a message naming the problem. */
gboolean carehare_uri_parse (const char           *uri,
                             CarehareUriSettings  *settings,
                             GError              **error);

/* Frees the members of @settings (wiping the password first) and zeroes it. */
void carehare_uri_settings_clear (CarehareUriSettings *settings);

/* Zero a string, or each string of a vector, that may hold a password
 * (a URI), then free it. NULL is ignored. */
void carehare_uri_secret_free      (char  *secret);
void carehare_uri_secret_strv_free (char **secrets);

/* @uri with its password replaced by @password (percent-encoded), its user
 * kept (`guest` when it names none); the rest unchanged. Built in one
 * allocation, so that no partial copy of either password is left behind:
 * free it with carehare_uri_secret_free(). NULL when @uri is invalid. */
char *carehare_uri_with_password (const char *uri,
                                  const char *password);

/* @uri as it may be shown: the password replaced by "***". Never fails and
 * never returns NULL; for something that is not recognisably an AMQP-style
 * URI it returns "<unparseable URI>" rather than risk showing a password. */
char *carehare_uri_redact (const char *uri);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CarehareUriSettings, carehare_uri_settings_clear)

G_END_DECLS
