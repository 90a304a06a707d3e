/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "carehare-error.h"
#include "carehare-uri.h"
#include "transient-check.h"

/* Every case that has a password uses this one, so that each error message
 * can be checked for it. */
#define PW "s3cr3tPW"
/* 70 characters, to build long names. */
#define D70 "0123456789012345678901234567890123456789012345678901234567890123456789"

/* ---- valid URIs: the connection part ----------------------------------- */

typedef struct {
  const char *uri;
  gboolean tls;
  const char *host;
  guint16 port;
  const char *username;
  const char *password;
  const char *vhost;
} CoreCase;

static const CoreCase core_cases[] = {
  /* Defaults (the specification's own examples first). */
  { "amqp://", FALSE, "localhost", 5672, "guest", "guest", "/" },
  { "amqps://", TRUE, "localhost", 5671, "guest", "guest", "/" },
  { "amqp://user:pass@host:10000/vhost", FALSE, "host", 10000, "user", "pass", "vhost" },
  { "amqp://user%61:%61pass@ho%61st:10000/v%2fhost", FALSE, "hoast", 10000, "usera", "apass", "v/host" },
  { "amqp://:@/", FALSE, "localhost", 5672, "", "", "/" },
  { "amqp://user@", FALSE, "localhost", 5672, "user", "guest", "/" },
  { "amqp://user:pass@", FALSE, "localhost", 5672, "user", "pass", "/" },
  { "amqp://host", FALSE, "host", 5672, "guest", "guest", "/" },
  { "amqp://:10000", FALSE, "localhost", 10000, "guest", "guest", "/" },
  { "amqp:///vhost", FALSE, "localhost", 5672, "guest", "guest", "vhost" },
  { "amqp://[::1]", FALSE, "::1", 5672, "guest", "guest", "/" },
  /* Scheme case. */
  { "AMQP://host", FALSE, "host", 5672, "guest", "guest", "/" },
  { "AmQpS://host:1234", TRUE, "host", 1234, "guest", "guest", "/" },
  /* The vhost (a bare "/" meaning "/" is this project's decision). */
  { "amqp://host/", FALSE, "host", 5672, "guest", "guest", "/" },
  { "amqp://host/%2f", FALSE, "host", 5672, "guest", "guest", "/" },
  { "amqp://host/%2F", FALSE, "host", 5672, "guest", "guest", "/" },
  { "amqp://host/%2fa", FALSE, "host", 5672, "guest", "guest", "/a" },
  { "amqp://host/myvhost", FALSE, "host", 5672, "guest", "guest", "myvhost" },
  { "amqp://host/my%20vhost", FALSE, "host", 5672, "guest", "guest", "my vhost" },
  { "amqp://host/caf%C3%A9", FALSE, "host", 5672, "guest", "guest", "caf\xc3\xa9" },
  { "amqp://host/" D70 D70 D70 "012345678901234567890123456789012345678901234", FALSE, "host", 5672, "guest", "guest",
    D70 D70 D70 "012345678901234567890123456789012345678901234" },
  { "amqp://host/a@b", FALSE, "host", 5672, "guest", "guest", "a@b" },
  { "amqp://host/%2f?", FALSE, "host", 5672, "guest", "guest", "/" },
  /* Percent-decoded credentials. */
  { "amqp://u%40x:" PW "%3Aw%40d@host/", FALSE, "host", 5672, "u@x", PW ":w@d", "/" },
  { "amqp://:" PW "@host", FALSE, "host", 5672, "", PW, "/" },
  { "amqp://user:" PW "%25@host", FALSE, "host", 5672, "user", PW "%", "/" },
  { "amqp://user:@host", FALSE, "host", 5672, "user", "", "/" },
  { "amqp://user:p;w!$&'()*+,=@host", FALSE, "host", 5672, "user", "p;w!$&'()*+,=", "/" },
  /* Hosts and ports. */
  { "amqp://[::1]:5673/", FALSE, "::1", 5673, "guest", "guest", "/" },
  { "amqps://user:" PW "@[2001:db8::1]/", TRUE, "2001:db8::1", 5671, "user", PW, "/" },
  { "amqp://[fe80::1%25eth0]:5672/", FALSE, "fe80::1%eth0", 5672, "guest", "guest", "/" },
  { "amqp://127.0.0.1:1/", FALSE, "127.0.0.1", 1, "guest", "guest", "/" },
  { "amqp://host:65535", FALSE, "host", 65535, "guest", "guest", "/" },
  { "amqp://host:05672", FALSE, "host", 5672, "guest", "guest", "/" },
  { "amqp://host:", FALSE, "host", 5672, "guest", "guest", "/" },
  { "amqp://Rabbit-1.example_internal.COM", FALSE, "Rabbit-1.example_internal.COM", 5672, "guest", "guest", "/" },
  { "amqp://h%C3%A9te/", FALSE, "h\xc3\xa9te", 5672, "guest", "guest", "/" },
  { "amqp://h\xc3\xa9te/", FALSE, "h\xc3\xa9te", 5672, "guest", "guest", "/" },
};

static void
assert_no_query_settings (const CarehareUriSettings *s)
{
  g_assert_cmpint (s->heartbeat, ==, -1);
  g_assert_cmpint (s->connection_timeout_ms, ==, -1);
  g_assert_cmpint (s->channel_max, ==, -1);
  g_assert_cmpint (s->frame_max, ==, -1);
  g_assert_cmpint (s->auth_mechanism, ==, CAREHARE_AUTH_MECHANISM_PLAIN);
  g_assert_null (s->cacertfile);
  g_assert_null (s->certfile);
  g_assert_null (s->keyfile);
  g_assert_cmpint (s->verify, ==, CAREHARE_TLS_VERIFY_PEER);
  g_assert_null (s->server_name_indication);
  g_assert_false (s->server_name_indication_disabled);
  g_assert_null (s->connection_name);
  g_assert_cmpint (s->max_body_size, ==, -1);
}

static void
test_valid_core (gconstpointer data)
{
  const CoreCase *c = data;
  g_auto(CarehareUriSettings) s = { 0, };
  g_autoptr(GError) error = NULL;

  {
    /* Some URIs are not UTF-8: print them escaped so TAP stays readable. */
    g_autofree char *printable = g_strescape (c->uri, NULL);
    g_test_message ("URI: %s", printable);
  }
  g_assert_true (carehare_uri_parse (c->uri, &s, &error));
  g_assert_no_error (error);
  g_assert_cmpint (s.tls, ==, c->tls);
  g_assert_cmpstr (s.host, ==, c->host);
  g_assert_cmpuint (s.port, ==, c->port);
  g_assert_cmpstr (s.username, ==, c->username);
  g_assert_cmpstr (s.password, ==, c->password);
  g_assert_cmpstr (s.vhost, ==, c->vhost);
  assert_no_query_settings (&s);
}

/* ---- valid URIs: one query parameter at a time ------------------------- */

typedef enum {
  F_HEARTBEAT,
  F_CONNECTION_TIMEOUT,
  F_CHANNEL_MAX,
  F_FRAME_MAX,
  F_AUTH_MECHANISM,
  F_CACERTFILE,
  F_CERTFILE,
  F_KEYFILE,
  F_VERIFY,
  F_SERVER_NAME_INDICATION,
  F_SNI_DISABLED,
  F_CONNECTION_NAME,
  F_MAX_BODY_SIZE,
} Field;

typedef struct {
  const char *uri;
  Field field;
  gint64 number;     /* for integer and enum fields */
  const char *text;  /* for string fields */
} ParamCase;

static const ParamCase param_cases[] = {
  { "amqp://host?heartbeat=5", F_HEARTBEAT, 5, NULL },
  { "amqp://host/?heartbeat=0", F_HEARTBEAT, 0, NULL },
  { "amqp://host/?heartbeat=65535", F_HEARTBEAT, 65535, NULL },
  { "amqp://host/?heartbeat=007", F_HEARTBEAT, 7, NULL },
  { "amqp://host?connection_timeout=10000", F_CONNECTION_TIMEOUT, 10000, NULL },
  { "amqp://host?connection_timeout=0", F_CONNECTION_TIMEOUT, 0, NULL },
  { "amqp://host?connection_timeout=4294967295", F_CONNECTION_TIMEOUT, G_MAXUINT32, NULL },
  { "amqp://host?channel_max=0", F_CHANNEL_MAX, 0, NULL },
  { "amqp://host?channel_max=2047", F_CHANNEL_MAX, 2047, NULL },
  { "amqp://host?channel_max=65535", F_CHANNEL_MAX, 65535, NULL },
  { "amqp://host?frame_max=4096", F_FRAME_MAX, 4096, NULL },
  { "amqp://host?frame_max=131072", F_FRAME_MAX, 131072, NULL },
  { "amqp://host?frame_max=1048576", F_FRAME_MAX, 1048576, NULL },
  { "amqp://host?auth_mechanism=plain", F_AUTH_MECHANISM, CAREHARE_AUTH_MECHANISM_PLAIN, NULL },
  { "amqps://host?auth_mechanism=external", F_AUTH_MECHANISM, CAREHARE_AUTH_MECHANISM_EXTERNAL, NULL },
  { "amqps://host?auth_mechanism=EXTERNAL", F_AUTH_MECHANISM, CAREHARE_AUTH_MECHANISM_EXTERNAL, NULL },
  { "amqp://host?auth_mechanism=External", F_AUTH_MECHANISM, CAREHARE_AUTH_MECHANISM_EXTERNAL, NULL },
  { "amqps://host?cacertfile=/path/to/ca.pem", F_CACERTFILE, 0, "/path/to/ca.pem" },
  { "amqps://host?cacertfile=%2Fwith%20space%2Fca%2B1.pem", F_CACERTFILE, 0, "/with space/ca+1.pem" },
  { "amqps://host?certfile=/c.pem&keyfile=/k.pem", F_CERTFILE, 0, "/c.pem" },
  { "amqps://host?certfile=/c.pem&keyfile=/k.pem", F_KEYFILE, 0, "/k.pem" },
  { "amqps://host?keyfile=k.pem&certfile=c.pem", F_KEYFILE, 0, "k.pem" },
  { "amqps://host?verify=verify_peer", F_VERIFY, CAREHARE_TLS_VERIFY_PEER, NULL },
  { "amqps://host?verify=verify_none", F_VERIFY, CAREHARE_TLS_VERIFY_NONE, NULL },
  { "amqps://host?verify=VERIFY_NONE", F_VERIFY, CAREHARE_TLS_VERIFY_NONE, NULL },
  { "amqps://10.0.0.1?server_name_indication=rabbit.example.com", F_SERVER_NAME_INDICATION, 0, "rabbit.example.com" },
  { "amqps://host?server_name_indication=disable", F_SNI_DISABLED, TRUE, NULL },
  { "amqps://host?server_name_indication=DISABLE", F_SNI_DISABLED, TRUE, NULL },
  { "amqps://host?server_name_indication=other", F_SNI_DISABLED, FALSE, NULL },
  { "amqp://host?connection_name=my%20app%20%231%26%3D", F_CONNECTION_NAME, 0, "my app #1&=" },
  { "amqp://host?connection_name=worker%40box", F_CONNECTION_NAME, 0, "worker@box" },
  { "amqp://host?connection_name=caf%C3%A9", F_CONNECTION_NAME, 0, "caf\xc3\xa9" },
  { "amqp://host?connection_name=", F_CONNECTION_NAME, 0, "" },
  { "amqp://host?connection_name=a+b", F_CONNECTION_NAME, 0, "a+b" },
  { "amqp://host?heartbeat=5&", F_HEARTBEAT, 5, NULL },
  { "amqp://host?max_body_size=1", F_MAX_BODY_SIZE, 1, NULL },
  { "amqp://host?max_body_size=1024", F_MAX_BODY_SIZE, 1024, NULL },
  { "amqp://host?max_body_size=134217728", F_MAX_BODY_SIZE, 134217728, NULL },
  { "amqp://host?max_body_size=536870912", F_MAX_BODY_SIZE, 536870912, NULL },
};

static void
test_valid_param (gconstpointer data)
{
  const ParamCase *c = data;
  g_auto(CarehareUriSettings) s = { 0, };
  g_autoptr(GError) error = NULL;

  {
    /* Some URIs are not UTF-8: print them escaped so TAP stays readable. */
    g_autofree char *printable = g_strescape (c->uri, NULL);
    g_test_message ("URI: %s", printable);
  }
  g_assert_true (carehare_uri_parse (c->uri, &s, &error));
  g_assert_no_error (error);

  switch (c->field)
    {
    case F_HEARTBEAT:
      g_assert_cmpint (s.heartbeat, ==, c->number);
      break;
    case F_CONNECTION_TIMEOUT:
      g_assert_cmpint (s.connection_timeout_ms, ==, c->number);
      break;
    case F_CHANNEL_MAX:
      g_assert_cmpint (s.channel_max, ==, c->number);
      break;
    case F_FRAME_MAX:
      g_assert_cmpint (s.frame_max, ==, c->number);
      break;
    case F_AUTH_MECHANISM:
      g_assert_cmpint (s.auth_mechanism, ==, c->number);
      break;
    case F_CACERTFILE:
      g_assert_cmpstr (s.cacertfile, ==, c->text);
      break;
    case F_CERTFILE:
      g_assert_cmpstr (s.certfile, ==, c->text);
      break;
    case F_KEYFILE:
      g_assert_cmpstr (s.keyfile, ==, c->text);
      break;
    case F_VERIFY:
      g_assert_cmpint (s.verify, ==, c->number);
      break;
    case F_SERVER_NAME_INDICATION:
      g_assert_cmpstr (s.server_name_indication, ==, c->text);
      g_assert_false (s.server_name_indication_disabled);
      break;
    case F_SNI_DISABLED:
      g_assert_cmpint (s.server_name_indication_disabled, ==, c->number);
      if (c->number)
        g_assert_null (s.server_name_indication);
      break;
    case F_CONNECTION_NAME:
      g_assert_cmpstr (s.connection_name, ==, c->text);
      break;
    case F_MAX_BODY_SIZE:
      g_assert_cmpint (s.max_body_size, ==, c->number);
      break;
    default:
      g_assert_not_reached ();
    }
}

static void
test_valid_everything (void)
{
  g_auto(CarehareUriSettings) s = { 0, };
  g_autoptr(GError) error = NULL;

  g_assert_true (carehare_uri_parse ("amqps://app%2Fone:" PW "@[::1]:5999/prod%2Feu"
                                     "?heartbeat=30&connection_timeout=2500&channel_max=64"
                                     "&frame_max=8192&auth_mechanism=external"
                                     "&cacertfile=/etc/ca.pem&certfile=/etc/c.pem&keyfile=/etc/k.pem"
                                     "&verify=verify_none&server_name_indication=rabbit.local"
                                     "&connection_name=billing&max_body_size=65536",
                                     &s, &error));
  g_assert_no_error (error);
  g_assert_true (s.tls);
  g_assert_cmpstr (s.host, ==, "::1");
  g_assert_cmpuint (s.port, ==, 5999);
  g_assert_cmpstr (s.username, ==, "app/one");
  g_assert_cmpstr (s.password, ==, PW);
  g_assert_cmpstr (s.vhost, ==, "prod/eu");
  g_assert_cmpint (s.heartbeat, ==, 30);
  g_assert_cmpint (s.connection_timeout_ms, ==, 2500);
  g_assert_cmpint (s.channel_max, ==, 64);
  g_assert_cmpint (s.frame_max, ==, 8192);
  g_assert_cmpint (s.auth_mechanism, ==, CAREHARE_AUTH_MECHANISM_EXTERNAL);
  g_assert_cmpstr (s.cacertfile, ==, "/etc/ca.pem");
  g_assert_cmpstr (s.certfile, ==, "/etc/c.pem");
  g_assert_cmpstr (s.keyfile, ==, "/etc/k.pem");
  g_assert_cmpint (s.verify, ==, CAREHARE_TLS_VERIFY_NONE);
  g_assert_cmpstr (s.server_name_indication, ==, "rabbit.local");
  g_assert_false (s.server_name_indication_disabled);
  g_assert_cmpstr (s.connection_name, ==, "billing");
  g_assert_cmpint (s.max_body_size, ==, 65536);
}

/* ---- invalid URIs ------------------------------------------------------- */

typedef struct {
  const char *uri;
  const char *expected;   /* the message contains this */
  const char *forbidden;  /* and never this (besides PW), if not NULL */
} InvalidCase;

static const InvalidCase invalid_cases[] = {
  /* Not an AMQP URI at all. */
  { "", "empty", NULL },
  { "garbage", "no scheme; use amqp:// or amqps://", NULL },
  { "not a uri", "space", NULL },
  { "user:" PW "@host", "unsupported scheme 'user'; use amqp:// or amqps://", NULL },
  { "http://user:" PW "@host/", "unsupported scheme 'http'; use amqp:// or amqps://", NULL },
  { "amqpx://host", "use amqp:// or amqps://", NULL },
  { "amqp:host", "expected '//' after 'amqp:'", NULL },
  { "amqp:/host", "'//'", NULL },
  { "amqp://user:" PW "@host/\xff", "UTF-8", NULL },
  { "amqp://user:" PW "@host/a\tb", "control character", NULL },
  { "amqp://user:" PW "@host/a\nb", "control character", NULL },
  { "amqp://user:" PW "@host/{x}", "percent-encoded", NULL },
  /* Fragments. */
  { "amqp://host#frag", "fragment", NULL },
  { "amqp://user:" PW "@host/vh#", "fragment", NULL },
  { "amqp://user:" PW "@host/#%zz", "fragment", NULL },
  /* Ports. */
  { "amqp://user:" PW "@host:0/", "invalid port '0'", NULL },
  { "amqp://user:" PW "@host:65536/", "invalid port '65536'", NULL },
  { "amqp://user:" PW "@host:99999999999999999999/", "invalid port '99999999999999999999'", NULL },
  { "amqp://user:" PW "@host:abc/", "invalid port 'abc'", NULL },
  { "amqp://user:" PW "@host:-1/", "invalid port '-1'", NULL },
  { "amqp://user:" PW "@host:5672:5673/", "invalid port '5672:5673'", NULL },
  { "amqp://user:" PW "@[::1]:x/", "invalid port 'x'", NULL },
  /* Hosts. */
  { "amqp://user:" PW "@[::zz]/", "invalid IPv6 address '[::zz]'", NULL },
  { "amqp://user:" PW "@[::1/", "IPv6", NULL },
  { "amqp://user:" PW "@ho%zzst/", "percent-encoding in the host", NULL },
  { "amqp://user:" PW "@ho!st/", "invalid host 'ho!st'", NULL },
  { "amqp://user:" PW "@ho%2Fst/", "invalid host 'ho/st'", NULL },
  { "amqp://user:" PW "@ho%FFst/", "UTF-8", NULL },
  { "amqp://user:" PW "@host;x/", "invalid host", NULL },
  /* Credentials: never echoed, even when malformed. */
  { "amqp://user:" PW "%zz@host/", "invalid percent-encoding in the password", NULL },
  { "amqp://user:" PW "%4@host/", "invalid percent-encoding in the password", NULL },
  { "amqp://user:%" PW "@host/", "invalid percent-encoding in the password", NULL },
  { "amqp://user:" PW "%00@host/", "password contains an encoded NUL", NULL },
  { "amqp://us%zzer:" PW "@host/", "invalid percent-encoding in the user name", NULL },
  { "amqp://user%00:" PW "@host/", "user name contains an encoded NUL", NULL },
  { "amqp://user%FF:" PW "@host/", "user name is not valid UTF-8", NULL },
  { "amqp://user:s3cr@3tPW@host/", "unencoded '@'", "s3cr" },
  { "amqp://user:s3cr3t/PW@host/", "not shown", "s3cr3t" },
  { "amqp://user:s3cr3t?PW@host/", "not shown", "s3cr3t" },
  { "amqp://user:s3cr3t#PW@host/", "not shown", "s3cr3t" },
  { "amqp://user:" PW "@host/v#s3cr3t@x", "fragment", NULL },
  { "amqp://user:4242/3tPW@host:x/", "not shown", NULL },
  { "amqp://user:4242?heartbeat=x@host", "not shown", "x@host" },
  /* The vhost. */
  { "amqp://user:" PW "@host/a/b", "more than one segment", NULL },
  { "amqp://user:" PW "@host//", "more than one segment", NULL },
  { "amqp://user:" PW "@host/%2f/", "more than one segment", NULL },
  { "amqp://user:" PW "@host/v%zz", "invalid percent-encoding in the vhost", NULL },
  { "amqp://user:" PW "@host/v%00", "vhost contains an encoded NUL", NULL },
  { "amqp://user:" PW "@host/v%FF", "vhost is not valid UTF-8", NULL },
  { "amqp://host/"
    D70 D70 D70 "0123456789012345678901234567890123456789012345", "longer than 255 bytes", NULL },
  { "amqp://host/"
    D70 D70 D70 "012345678901234567890123456789012345678901234%C3%A9",
    "longer than 255 bytes", NULL },
  /* The query. */
  { "amqp://user:" PW "@host/?bogus=1", "unknown query parameter 'bogus'", NULL },
  { "amqp://user:" PW "@host/?Heartbeat=5", "unknown query parameter 'Heartbeat'", NULL },
  { "amqp://user:" PW "@host/?password=x", "unknown query parameter 'password'", NULL },
  { "amqp://user:" PW "@host/?fail_if_no_peer_cert=true", "unknown query parameter 'fail_if_no_peer_cert'", NULL },
  { "amqp://user:" PW "@host/?=1", "unknown query parameter ''", NULL },
  { "amqp://user:" PW "@host/?heartbeat=5&heartbeat=5", "'heartbeat' is given more than once", NULL },
  { "amqp://user:" PW "@host/?connection_name=a&connection_name=b", "'connection_name' is given more than once", NULL },
  { "amqp://user:" PW "@host/?heartbeat", "malformed query", NULL },
  { "amqp://user:" PW "@host/?heartbeat=1&&channel_max=2", "malformed query", NULL },
  { "amqp://user:" PW "@host/?connection_name=%FF", "malformed query", NULL },
  { "amqp://user:" PW "@host/?connection_name=%00", "malformed query", NULL },
  { "amqp://user:" PW "@host/?heartbeat=%zz", "invalid percent-encoding in the query", NULL },
  { "amqp://user:" PW "@host/?heartbeat=abc", "invalid value 'abc' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?heartbeat=", "invalid value '' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?heartbeat=-1", "invalid value '-1' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?heartbeat=+5", "invalid value '+5' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?heartbeat=1.5", "invalid value '1.5' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?heartbeat=65536", "invalid value '65536' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?heartbeat=%205", "invalid value ' 5' for query parameter 'heartbeat'", NULL },
  { "amqp://user:" PW "@host/?connection_timeout=-5", "invalid value '-5' for query parameter 'connection_timeout'", NULL },
  { "amqp://user:" PW "@host/?connection_timeout=4294967296", "'4294967296' for query parameter 'connection_timeout'", NULL },
  { "amqp://user:" PW "@host/?connection_timeout=10s", "'10s' for query parameter 'connection_timeout'", NULL },
  { "amqp://user:" PW "@host/?channel_max=65536", "'65536' for query parameter 'channel_max'", NULL },
  { "amqp://user:" PW "@host/?channel_max=0x10", "'0x10' for query parameter 'channel_max'", NULL },
  { "amqp://user:" PW "@host/?frame_max=4095", "'4095' for query parameter 'frame_max': expected an integer from 4096 (the AMQP frame_min_size) to 1048576", NULL },
  /* No "no limit": the server must not decide alone how much we buffer. */
  { "amqp://user:" PW "@host/?frame_max=0", "invalid value '0' for query parameter 'frame_max'", NULL },
  { "amqp://user:" PW "@host/?frame_max=1048577", "'1048577' for query parameter 'frame_max'", NULL },
  { "amqp://user:" PW "@host/?frame_max=4294967295", "'4294967295' for query parameter 'frame_max'", NULL },
  { "amqp://user:" PW "@host/?frame_max=1", "frame_min_size", NULL },
  { "amqp://user:" PW "@host/?frame_max=4294967296", "'4294967296' for query parameter 'frame_max'", NULL },
  /* Never above RabbitMQ's own hard cap of 512 MiB; 0 would refuse every
   * message with a body. */
  { "amqp://user:" PW "@host/?max_body_size=536870913", "invalid value '536870913' for query parameter 'max_body_size': expected an integer from 1 to 536870912 (bytes; RabbitMQ's own limit is 512 MiB)", NULL },
  { "amqp://user:" PW "@host/?max_body_size=0", "invalid value '0' for query parameter 'max_body_size'", NULL },
  { "amqp://user:" PW "@host/?max_body_size=18446744073709551616", "'18446744073709551616' for query parameter 'max_body_size'", NULL },
  { "amqp://user:" PW "@host/?max_body_size=1MiB", "'1MiB' for query parameter 'max_body_size'", NULL },
  { "amqp://user:" PW "@host/?max_body_size=-1", "'-1' for query parameter 'max_body_size'", NULL },
  { "amqp://user:" PW "@host/?auth_mechanism=amqplain", "invalid value 'amqplain' for query parameter 'auth_mechanism': expected plain or external", NULL },
  { "amqp://user:" PW "@host/?auth_mechanism=", "'' for query parameter 'auth_mechanism'", NULL },
  { "amqps://user:" PW "@host/?verify=verify_maybe", "invalid value 'verify_maybe' for query parameter 'verify': expected verify_peer or verify_none", NULL },
  { "amqps://user:" PW "@host/?server_name_indication=bad%20name", "invalid value 'bad name' for query parameter 'server_name_indication'", NULL },
  { "amqps://user:" PW "@host/?server_name_indication=", "'' for query parameter 'server_name_indication'", NULL },
  { "amqps://user:" PW "@host/?cacertfile=", "'' for query parameter 'cacertfile'", NULL },
  { "amqps://user:" PW "@host/?certfile=&keyfile=k.pem", "'' for query parameter 'certfile'", NULL },
  { "amqps://user:" PW "@host/?certfile=c.pem", "'certfile' needs 'keyfile'", NULL },
  { "amqps://user:" PW "@host/?keyfile=k.pem", "'keyfile' needs 'certfile'", NULL },
  { "amqp://user:" PW "@host/?cacertfile=/ca.pem", "'cacertfile' only applies to TLS connections; use an amqps:// URI", NULL },
  { "amqp://user:" PW "@host/?certfile=/c.pem&keyfile=/k.pem", "'certfile' only applies to TLS", NULL },
  { "amqp://user:" PW "@host/?keyfile=/k.pem", "'keyfile' only applies to TLS", NULL },
  { "amqp://user:" PW "@host/?verify=verify_none", "'verify' only applies to TLS", NULL },
  { "amqp://user:" PW "@host/?server_name_indication=h", "'server_name_indication' only applies to TLS", NULL },
  { "amqp://user:" PW "@host/?bogus" D70 "=1",
    "unknown query parameter 'bogus01234567890123456789012345678901234567890123456789012345678...'", NULL },
};

static void
test_invalid (gconstpointer data)
{
  const InvalidCase *c = data;
  CarehareUriSettings s;
  CarehareUriSettings zero;
  g_autoptr(GError) error = NULL;
  g_autofree char *redacted = NULL;

  {
    /* Some URIs are not UTF-8: print them escaped so TAP stays readable. */
    g_autofree char *printable = g_strescape (c->uri, NULL);
    g_test_message ("URI: %s", printable);
  }
  memset (&s, 0xaa, sizeof s);
  memset (&zero, 0, sizeof zero);
  g_assert_false (carehare_uri_parse (c->uri, &s, &error));
  g_assert_error (error, CAREHARE_ERROR, CAREHARE_ERROR_INVALID_URI);
  g_test_message ("message: %s", error->message);
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
  g_assert_true (g_str_has_prefix (error->message, "Invalid AMQP URI: "));
  g_assert_nonnull (strstr (error->message, c->expected));
  g_assert_null (strstr (error->message, PW));
  if (c->forbidden != NULL)
    g_assert_null (strstr (error->message, c->forbidden));
  /* A failed parse leaves nothing to free. */
  g_assert_cmpmem (&s, sizeof s, &zero, sizeof zero);

  redacted = carehare_uri_redact (c->uri);
  g_assert_nonnull (redacted);
  g_assert_null (strstr (redacted, PW));
  if (c->forbidden != NULL)
    g_assert_null (strstr (redacted, c->forbidden));
}

/* ---- redaction ---------------------------------------------------------- */

typedef struct {
  const char *uri;
  const char *expected;
} RedactCase;

static const RedactCase redact_cases[] = {
  { "amqp://user:" PW "@host:5672/vh?heartbeat=5", "amqp://user:***@host:5672/vh?heartbeat=5" },
  { "amqps://user:s3cr%40PW@host/", "amqps://user:***@host/" },
  { "amqp://user:" PW "@[::1]:5672/", "amqp://user:***@[::1]:5672/" },
  { "amqp://:" PW "@host", "amqp://:***@host" },
  { "amqp://user:@host", "amqp://user:***@host" },
  { "AMQP://user:" PW "@host", "AMQP://user:***@host" },
  { "http://user:" PW "@host/", "http://user:***@host/" },
  { "amqp://user@host/", "amqp://user@host/" },
  { "amqp://host/", "amqp://host/" },
  { "amqp://", "amqp://" },
  { "amqp://host?connection_name=a%40b", "amqp://host?connection_name=a%40b" },
  /* An unencoded '@' in the password: all of it is hidden. */
  { "amqp://user:s3cr@3tPW@host/", "amqp://user:***@host/" },
  /* An unencoded '/', '?' or '#' in the password: everything up to the '@'. */
  { "amqp://user:s3cr/3tPW@host/v", "amqp://***@host/v" },
  { "amqp://user:s3cr?3tPW@host", "amqp://***@host" },
  { "amqp://user:s3cr#3tPW@host", "amqp://***@host" },
  { "amqp://user:1234/" PW "@host/", "amqp://***@host/" },
  /* Erlang's TLS key passphrase parameter. */
  { "amqps://host/?cacertfile=/ca.pem&password=" PW "&verify=verify_peer",
    "amqps://host/?cacertfile=/ca.pem&password=***&verify=verify_peer" },
  { "amqps://u:" PW "@host/?Pass%77ord=" PW "&&x#f", "amqps://u:***@host/?Pass%77ord=***&&x#f" },
  /* Not recognisably a URI: nothing of it is shown. */
  { "", "<unparseable URI>" },
  { "not a uri " PW, "<unparseable URI>" },
  { "user:" PW "@host", "<unparseable URI>" },
  { "amqp:user:" PW "@host", "<unparseable URI>" },
  { "amqp://user:" PW "@host\n", "<unparseable URI>" },
  { "amqp://user:" PW "@host/\xff", "<unparseable URI>" },
};

static void
test_redact (gconstpointer data)
{
  const RedactCase *c = data;
  g_autofree char *redacted = carehare_uri_redact (c->uri);

  g_assert_cmpstr (redacted, ==, c->expected);
}

static void
test_redact_null (void)
{
  g_autofree char *redacted = carehare_uri_redact (NULL);

  g_assert_cmpstr (redacted, ==, "<no URI>");
}

/* ---- lifecycle ---------------------------------------------------------- */

static void
test_clear (void)
{
  CarehareUriSettings s;
  CarehareUriSettings zero;
  g_autoptr(GError) error = NULL;

  memset (&zero, 0, sizeof zero);
  g_assert_true (carehare_uri_parse ("amqps://u:" PW "@h/v?certfile=c&keyfile=k&connection_name=n",
                                     &s, &error));
  g_assert_no_error (error);
  carehare_uri_settings_clear (&s);
  g_assert_cmpmem (&s, sizeof s, &zero, sizeof zero);
  /* Clearing twice is harmless, and a cleared struct can be reused. */
  carehare_uri_settings_clear (&s);
  g_assert_true (carehare_uri_parse ("amqp://", &s, NULL));
  g_assert_cmpstr (s.host, ==, "localhost");
  carehare_uri_settings_clear (&s);
}

static void
add_table_tests (const char *prefix,
                 gconstpointer table,
                 gsize n_rows,
                 gsize row_size,
                 GTestDataFunc func)
{
  gsize i;

  for (i = 0; i < n_rows; i++)
    {
      g_autofree char *path = g_strdup_printf ("%s/%" G_GSIZE_FORMAT, prefix, i);

      g_test_add_data_func (path, (const guint8 *) table + i * row_size, func);
    }
}

static void
test_with_password (void)
{
  static const struct {
    const char *uri;
    const char *password;
    const char *expected;
  } cases[] = {
    { "amqp://u:old@h:5672/v?heartbeat=5", "new", "amqp://u:new@h:5672/v?heartbeat=5" },
    /* reserved characters are encoded, and parse back to the password */
    { "amqp://u:old@h/", "n@w:/p?#%w \xc3\xa9", "amqp://u:n%40w%3A%2Fp%3F%23%25w%20%C3%A9@h/" },
    /* an encoded user stays as it is */
    { "amqps://us%40er:old@h", "pw", "amqps://us%40er:pw@h" },
    { "amqp://bob@h", "pw", "amqp://bob:pw@h" },
    { "amqp://h:5672", "pw", "amqp://guest:pw@h:5672" },
    { "amqp://", "pw", "amqp://guest:pw@" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_auto(CarehareUriSettings) settings = { 0 };
      char *out = carehare_uri_with_password (cases[i].uri, cases[i].password);

      g_test_message ("%s", cases[i].uri);
      g_assert_cmpstr (out, ==, cases[i].expected);
      g_assert_true (carehare_uri_parse (out, &settings, NULL));
      g_assert_cmpstr (settings.password, ==, cases[i].password);
      carehare_uri_secret_free (out);
    }
  g_assert_null (carehare_uri_with_password ("http://u:p@h/", "pw"));
  g_assert_null (carehare_uri_with_password ("not a uri", "pw"));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  add_table_tests ("/uri/valid/core", core_cases, G_N_ELEMENTS (core_cases),
                   sizeof core_cases[0], test_valid_core);
  add_table_tests ("/uri/valid/param", param_cases, G_N_ELEMENTS (param_cases),
                   sizeof param_cases[0], test_valid_param);
  g_test_add_func ("/uri/valid/everything", test_valid_everything);
  add_table_tests ("/uri/invalid", invalid_cases, G_N_ELEMENTS (invalid_cases),
                   sizeof invalid_cases[0], test_invalid);
  add_table_tests ("/uri/redact", redact_cases, G_N_ELEMENTS (redact_cases),
                   sizeof redact_cases[0], test_redact);
  g_test_add_func ("/uri/redact/null", test_redact_null);
  g_test_add_func ("/uri/clear", test_clear);
  g_test_add_func ("/uri/with-password", test_with_password);

  return g_test_run ();
}
