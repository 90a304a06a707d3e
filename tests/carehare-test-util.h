/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <carehare-glib/carehare-glib.h>

G_BEGIN_DECLS

/* The private broker's URIs, from the environment that
 * `eval "$(test-server/broker env)"` sets. A missing broker fails the test
 * (it never skips). */
const char *carehare_test_amqp_uri  (void);
const char *carehare_test_amqps_uri (void);
const char *carehare_test_cert_dir  (void);
/* "amqp://guest:guest@127.0.0.1:PORT" + @suffix (a path and query). */
char       *carehare_test_amqp_uri_with  (const char *suffix);
/* amqps://localhost:PORT + @path + "?" + @query, no certificate options. */
char       *carehare_test_amqps_uri_with (const char *path_and_query);

/* A name unique to this process and call, for queues and exchanges. */
char       *carehare_test_unique_name (const char *prefix);

/* Iterates the thread-default main context until *@result is set, failing
 * the test after @timeout_ms. */
void        carehare_test_wait_for_result (GAsyncResult **result,
                                           guint          timeout_ms);
/* A GAsyncReadyCallback that stores a ref of the result in user_data
 * (a GAsyncResult **). */
void        carehare_test_store_result (GObject      *source,
                                        GAsyncResult *result,
                                        gpointer      user_data);
/* Iterates the main context for @ms milliseconds. */
void        carehare_test_run_for (guint ms);
/* A GSourceFunc that sets the gboolean its data points to, once. */
gboolean    carehare_test_set_flag (gpointer user_data);

/* Connects synchronously (iterating the main context) or fails the test. */
CarehareConnection *carehare_test_connect (const char *uri);
/* Connects and returns the error (NULL if it connected, then closed). */
GError     *carehare_test_connect_error (const char *uri,
                                         guint       timeout_ms);

/* Runs `test-server/broker ctl ARGS...` against the private node; returns
 * its standard output or fails the test. */
char       *carehare_test_broker_ctl (const char *first_arg, ...) G_GNUC_NULL_TERMINATED;
/* Closes, with rabbitmqctl, the broker-side connection whose client
 * properties carry @connection_name. Waits for it to appear first. */
void        carehare_test_broker_close_connection (const char *connection_name,
                                                   const char *reason);

/* Log records of the "Carehare" domain, captured by a writer that
 * carehare_test_log_capture_install() sets for the whole process (once, in
 * main(), before any test). Each record is a GHashTable of field name ->
 * value as text, plus "(level)" (the GLogLevelFlags level, in decimal).
 * With @forward, captured records also go to the default writer. */
void        carehare_test_log_capture_install (gboolean forward);
/* Forgets the records captured so far. */
void        carehare_test_log_capture_clear (void);
/* The records captured since the last clear (borrowed). */
GPtrArray  *carehare_test_log_records (void);
/* The first record captured whose MESSAGE starts with @prefix, or NULL. */
GHashTable *carehare_test_log_find (const char *prefix);

G_END_DECLS

/* Every g_assert_error() also checks carehare_error_is_transient(). */
#include "transient-check.h"
