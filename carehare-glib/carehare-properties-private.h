/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "carehare-properties.h"
#include "carehare-wire.h"

G_BEGIN_DECLS

/* Fills @basic with BORROWED pointers into @self (valid while @self lives
 * and is unchanged) and the presence flags; @self may be NULL (no
 * properties: @basic is zeroed).  A struct copy, no allocation. */
void                carehare_properties_to_basic       (CarehareProperties      *self,
                                                        CarehareBasicProperties *basic);

/* A new object that takes over the members of @basic, which is zeroed.
 * Only flagged members are kept (an unflagged one is freed); a flagged NULL
 * string becomes "" and a flagged NULL headers an empty a{sv}, as the
 * encoder would send them. */
CarehareProperties *carehare_properties_new_take_basic (CarehareBasicProperties *basic);

G_END_DECLS
