/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>

G_BEGIN_DECLS

#define CAREHARE_TYPE_PROPERTIES (carehare_properties_get_type ())

CAREHARE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (CarehareProperties, carehare_properties, CAREHARE, PROPERTIES, GObject)

CAREHARE_AVAILABLE_IN_ALL
CarehareProperties *carehare_properties_new                  (void);
CAREHARE_AVAILABLE_IN_ALL
CarehareProperties *carehare_properties_copy                 (CarehareProperties *self);

CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_content_type     (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_content_type     (CarehareProperties *self,
                                                              const char         *content_type);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_content_encoding (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_content_encoding (CarehareProperties *self,
                                                              const char         *content_encoding);
CAREHARE_AVAILABLE_IN_ALL
GVariant           *carehare_properties_get_headers          (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_headers          (CarehareProperties *self,
                                                              GVariant           *headers);
CAREHARE_AVAILABLE_IN_ALL
guint               carehare_properties_get_delivery_mode    (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_delivery_mode    (CarehareProperties *self,
                                                              guint               delivery_mode);
CAREHARE_AVAILABLE_IN_ALL
int                 carehare_properties_get_priority         (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_priority         (CarehareProperties *self,
                                                              int                 priority);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_correlation_id   (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_correlation_id   (CarehareProperties *self,
                                                              const char         *correlation_id);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_reply_to         (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_reply_to         (CarehareProperties *self,
                                                              const char         *reply_to);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_expiration       (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_expiration       (CarehareProperties *self,
                                                              const char         *expiration);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_message_id       (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_message_id       (CarehareProperties *self,
                                                              const char         *message_id);
CAREHARE_AVAILABLE_IN_ALL
gint64              carehare_properties_get_timestamp        (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_timestamp        (CarehareProperties *self,
                                                              gint64              timestamp);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_message_type     (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_message_type     (CarehareProperties *self,
                                                              const char         *message_type);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_user_id          (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_user_id          (CarehareProperties *self,
                                                              const char         *user_id);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_app_id           (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_app_id           (CarehareProperties *self,
                                                              const char         *app_id);
CAREHARE_AVAILABLE_IN_ALL
const char         *carehare_properties_get_cluster_id       (CarehareProperties *self);
CAREHARE_AVAILABLE_IN_ALL
void                carehare_properties_set_cluster_id       (CarehareProperties *self,
                                                              const char         *cluster_id);

G_END_DECLS
