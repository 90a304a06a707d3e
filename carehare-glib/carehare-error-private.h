/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-error.h"

G_BEGIN_DECLS

/* The AMQP name of a reply code ("NOT_FOUND" for 404), or NULL. */
const char *carehare_reply_code_name (guint16 reply_code);

/* An error whose message reads "WHAT: CODE NAME - TEXT", so that
 * carehare_error_get_reply_code() finds the code again. */
GError *carehare_error_new_from_reply (CarehareError  code,
                                       const char    *what,
                                       guint16        reply_code,
                                       const char    *reply_text);

G_END_DECLS
