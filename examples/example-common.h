/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What every example does the same way: answer --help, and report an
 * error with what a program should do about it. The library says that:
 * its messages name the fix where it can know it (use amqps://, set
 * cacertfile=, check the password), and carehare_error_is_transient()
 * says whether retrying later may help.
 */
#pragma once

#include <carehare-glib/carehare-glib.h>

/* Parses the options (none but --help, which prints the usage and exits 0)
 * and checks that between @min_args and @max_args (-1: any number)
 * arguments remain. FALSE, after printing the usage, if not. */
static inline gboolean
example_parse_args (int         *argc,
                    char      ***argv,
                    const char  *parameters,
                    const char  *summary,
                    int          min_args,
                    int          max_args)
{
  g_autoptr(GOptionContext) context = g_option_context_new (parameters);
  g_autoptr(GError) error = NULL;
  g_autofree char *help = NULL;

  g_option_context_set_summary (context, summary);
  if (g_option_context_parse (context, argc, argv, &error) &&
      *argc - 1 >= min_args && (max_args < 0 || *argc - 1 <= max_args))
    return TRUE;
  if (error != NULL)
    g_printerr ("%s\n", error->message);
  help = g_option_context_get_help (context, TRUE, NULL);
  g_printerr ("%s", help);
  return FALSE;
}

static inline void
print_error (const char   *what,
             const GError *error)
{
  g_printerr ("%s failed: %s\n  -> %s\n", what, error->message,
              carehare_error_is_transient (error)
              ? "transient: retrying later (with backoff) may succeed"
              : "retrying will not help until the cause is fixed");
}
