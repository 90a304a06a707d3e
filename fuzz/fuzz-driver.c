/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stand-in for libFuzzer where it is not available (gcc builds): runs the
 * given files and every file of the given directories, then feeds random
 * mutations of them to LLVMFuzzerTestOneInput for -max_total_time=N seconds.
 * Accepts libFuzzer's spelling of the options it knows (-max_total_time,
 * -seed, -runs) and ignores the others, so meson passes the same arguments
 * either way.  The random seed is fixed (and printed) so a failure can be
 * replayed with -seed=N.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

#define MAX_INPUT_SIZE (64 * 1024)

static void
run_one (const guint8 *data,
         gsize         size)
{
  /* An exactly-sized heap copy, so that a sanitizer catches over-reads;
   * like libFuzzer, never a NULL pointer, even for empty input. */
  g_autofree guint8 *copy = g_malloc (MAX (size, 1));

  if (size > 0)
    memcpy (copy, data, size);

  LLVMFuzzerTestOneInput (copy, size);
}

static void
add_file (GPtrArray  *seeds,
          const char *path)
{
  g_autoptr(GError) error = NULL;
  char *contents = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &contents, &len, &error))
    {
      g_printerr ("fuzz-driver: %s\n", error->message);
      exit (1);
    }
  g_ptr_array_add (seeds, g_bytes_new_take (contents, len));
}

static void
add_path (GPtrArray  *seeds,
          const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GDir) dir = g_dir_open (path, 0, &error);
      g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      guint i;

      if (dir == NULL)
        {
          g_printerr ("fuzz-driver: %s\n", error->message);
          exit (1);
        }
      while ((name = g_dir_read_name (dir)) != NULL)
        g_ptr_array_add (names, g_build_filename (path, name, NULL));
      /* a stable order, so runs replay */
      g_ptr_array_sort (names, (GCompareFunc) g_strcmp0);
      for (i = 0; i < names->len; i++)
        if (g_file_test (names->pdata[i], G_FILE_TEST_IS_REGULAR))
          add_file (seeds, names->pdata[i]);
    }
  else
    add_file (seeds, path);
}

static void
insert_bytes (GByteArray   *buf,
              guint         pos,
              const guint8 *bytes,
              guint         n)
{
  guint old_len = buf->len;

  g_byte_array_set_size (buf, old_len + n);
  memmove (buf->data + pos + n, buf->data + pos, old_len - pos);
  memcpy (buf->data + pos, bytes, n);
}

/* One random edit of @buf. */
static void
mutate (GByteArray *buf,
        GRand      *rand,
        GPtrArray  *seeds)
{
  static const guint8 interesting[] = { 0x00, 0x01, 0x7F, 0x80, 0xFF, 0xCE, 'F', 'A', 'S', 'x' };
  guint len = buf->len;
  guint pos = len > 0 ? (guint) g_rand_int_range (rand, 0, (gint32) len) : 0;

  switch (g_rand_int_range (rand, 0, 9))
    {
    case 0: /* flip a bit */
      if (len > 0)
        buf->data[pos] ^= (guint8) (1u << g_rand_int_range (rand, 0, 8));
      break;
    case 1: /* random byte */
      if (len > 0)
        buf->data[pos] = (guint8) g_rand_int (rand);
      break;
    case 2: /* interesting byte */
      if (len > 0)
        buf->data[pos] = interesting[g_rand_int_range (rand, 0, G_N_ELEMENTS (interesting))];
      break;
    case 3: /* insert random bytes */
      {
        guint8 bytes[8];
        guint n = (guint) g_rand_int_range (rand, 1, sizeof bytes + 1), i;

        for (i = 0; i < n; i++)
          bytes[i] = (guint8) g_rand_int (rand);
        if (len + n <= MAX_INPUT_SIZE)
          insert_bytes (buf, pos, bytes, n);
      }
      break;
    case 4: /* delete a range */
      if (len > 0)
        g_byte_array_remove_range (buf, pos, (guint) g_rand_int_range (rand, 1, (gint32) MIN (len - pos, 16) + 1));
      break;
    case 5: /* truncate */
      g_byte_array_set_size (buf, pos);
      break;
    case 6: /* a big-endian length-sized value: 16 or 32 bits */
      if (len >= 4 && pos <= len - 4)
        {
          guint32 v = g_rand_boolean (rand) ? (guint32) g_rand_int_range (rand, 0, (gint32) len + 2) : g_rand_int (rand);

          buf->data[pos] = (guint8) (v >> 24);
          buf->data[pos + 1] = (guint8) (v >> 16);
          buf->data[pos + 2] = (guint8) (v >> 8);
          buf->data[pos + 3] = (guint8) v;
        }
      break;
    case 7: /* duplicate a range */
      if (len > 0)
        {
          guint n = (guint) g_rand_int_range (rand, 1, (gint32) MIN (len - pos, 64) + 1);
          g_autofree guint8 *dup = g_memdup2 (buf->data + pos, n);

          if (len + n <= MAX_INPUT_SIZE)
            insert_bytes (buf, (guint) g_rand_int_range (rand, 0, (gint32) len + 1), dup, n);
        }
      break;
    case 8: /* splice in part of another seed */
      if (seeds->len > 0)
        {
          GBytes *other = seeds->pdata[g_rand_int_range (rand, 0, (gint32) seeds->len)];
          gsize olen;
          const guint8 *odata = g_bytes_get_data (other, &olen);

          if (olen > 0)
            {
              guint from = (guint) g_rand_int_range (rand, 0, (gint32) olen);
              guint n = (guint) MIN (olen - from, (gsize) g_rand_int_range (rand, 1, 128));

              if (len + n <= MAX_INPUT_SIZE)
                insert_bytes (buf, pos, odata + from, n);
            }
        }
      break;
    default:
      g_assert_not_reached ();
    }
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GPtrArray) seeds = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GRand) rand = NULL;
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  guint32 seed = 0x5EED1234;
  gint64 max_seconds = 0, runs = -1;
  gint64 start, deadline, execs = 0;
  gdouble elapsed;
  int i;

  for (i = 1; i < argc; i++)
    {
      if (g_str_has_prefix (argv[i], "-max_total_time="))
        max_seconds = g_ascii_strtoll (argv[i] + strlen ("-max_total_time="), NULL, 10);
      else if (g_str_has_prefix (argv[i], "-seed="))
        seed = (guint32) g_ascii_strtoull (argv[i] + strlen ("-seed="), NULL, 10);
      else if (g_str_has_prefix (argv[i], "-runs="))
        runs = g_ascii_strtoll (argv[i] + strlen ("-runs="), NULL, 10);
      else if (argv[i][0] == '-')
        continue;  /* a libFuzzer option this driver does not need */
      else
        add_path (seeds, argv[i]);
    }

  g_print ("fuzz-driver: seed %" G_GUINT32_FORMAT ", %u inputs, %" G_GINT64_FORMAT " s\n",
           seed, seeds->len, max_seconds);
  rand = g_rand_new_with_seed (seed);

  start = g_get_monotonic_time ();
  deadline = start + max_seconds * G_USEC_PER_SEC;

  /* every input as given, and the empty input */
  run_one (NULL, 0);
  execs++;
  for (i = 0; i < (int) seeds->len; i++)
    {
      gsize len;
      const guint8 *data = g_bytes_get_data (seeds->pdata[i], &len);

      run_one (data, len);
      execs++;
    }

  while ((runs < 0 || execs < runs) && (max_seconds > 0 || runs > 0))
    {
      guint n_mutations, m;

      if ((execs & 0xFF) == 0 && g_get_monotonic_time () >= deadline && runs < 0)
        break;

      g_byte_array_set_size (buf, 0);
      if (seeds->len > 0)
        {
          gsize len;
          const guint8 *data = g_bytes_get_data (seeds->pdata[g_rand_int_range (rand, 0, (gint32) seeds->len)], &len);

          g_byte_array_append (buf, data, (guint) len);
        }
      n_mutations = (guint) g_rand_int_range (rand, 1, 9);
      for (m = 0; m < n_mutations; m++)
        mutate (buf, rand, seeds);

      run_one (buf->data, buf->len);
      execs++;
    }

  elapsed = (gdouble) (g_get_monotonic_time () - start) / G_USEC_PER_SEC;
  g_print ("fuzz-driver: %" G_GINT64_FORMAT " execs in %.1f s (%.0f exec/s)\n",
           execs, elapsed, elapsed > 0 ? (gdouble) execs / elapsed : 0.0);
  return 0;
}
