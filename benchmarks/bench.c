/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare-glib against rabbitmq-c, on the same broker, in one invocation.
 *
 *   bench [--rounds K] [--scenario N]... [--messages N] [--quick] [URI]
 *
 * URI defaults to $CAREHARE_TEST_AMQP_URI. Scenarios (all by default):
 *
 *   1  publish with confirms: N messages of 256 bytes to one queue,
 *      100 and 1,000 unconfirmed in flight
 *   2  consume with acks: N messages of 256 bytes, prefetch 100 and 1,000,
 *      one next_delivery_async per message and its ack in the callback
 *      (the style examples/consumer.c teaches)
 *   3  round-trip latency: 2,000 passive queue.declare calls, one at a
 *      time (p50, p99), beside the same request as raw bytes on a socket
 *   4  large messages: 1 MiB and 16 MiB bodies, publish then consume
 *   5  many small operations: 1,000 queue.declare + queue.bind
 *
 * The driver runs every round of every case as a child process: this same
 * executable with --run (carehare-glib) or bench-rabbitmq-c (rabbitmq-c,
 * from the same directory), both taking
 *
 *   MODE URI QUEUE COUNT SIZE DEPTH
 *
 * and printing one "RESULT key=value..." line. The carehare-glib runner's
 * consume modes: consume (one next_delivery_async per message),
 * consume-batch (next_deliveries_async) and consume-signal
 * (CarehareConsumer::delivery; prints "SKIP ..." where the library has no
 * such signal). bench-clients.py runs the same runners, the other
 * languages' and the peers', and counts system calls. A child measures its timed
 * phase only (the clock and getrusage() around it; connecting, declaring
 * and deleting are outside) and reports its whole-life peak RSS
 * (ru_maxrss), so each client's figures are its own. Queues that a consume
 * round reads are filled beforehand by a separate carehare-glib "fill"
 * process. Every round uses a fresh queue named bench-PID-SEQ, deleted at
 * the end of the round (by the runner, or by the driver when a runner
 * failed). The two clients alternate which goes first from round to round.
 *
 * Each figure is the median over the rounds; peak RSS is the largest.
 *
 * For callgrind, run one carehare-glib round by hand and collect the timed
 * phase only:
 *
 *   valgrind --tool=callgrind --toggle-collect=bench_timed_phase \
 *     _build/benchmarks/bench --run publish URI bench-cg 10000 256 100
 */
#include <carehare-glib/carehare-glib.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define WARMUP 100

/* ==== carehare-glib runner ================================================ */

typedef enum {
  MODE_PUBLISH,
  MODE_FILL,
  MODE_CONSUME,         /* one next_delivery_async per message (the natural style) */
  MODE_CONSUME_BATCH,   /* next_deliveries_async: all that arrived */
  MODE_CONSUME_SIGNAL,  /* CarehareConsumer::delivery, where the library has it */
  MODE_LATENCY,
  MODE_OPS,
  MODE_DELETE,
} Mode;

typedef struct {
  Mode mode;
  CarehareConnection *conn;
  CarehareConsumer *consumer;
  GAsyncResult *result;           /* of the one sequential call in flight */
  const char *queue;
  guint64 count, size, depth;

  GBytes *body;
  guint64 sent, confirmed, received, done;
  double *latencies;
  GPtrArray *names;               /* scenario 5: declared queue names */

  gint64 t0;
  double cpu0;
  double secs, cpu_us;
  FILE *perf_ctl, *perf_ack;      /* bench-clients.py's syscall count */
} Runner;

G_GNUC_NORETURN static void
fail (const char   *what,
      const GError *error)
{
  g_printerr ("bench --run: %s: %s\n", what, error->message);
  exit (1);
}

static double
cpu_now_us (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static long
maxrss_kib (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* When bench-clients.py counts system calls it runs the runner under
 * `perf stat --delay=-1 --control fifo:CTL,ACK` and names the two FIFOs in
 * BENCH_PERF_CTL and BENCH_PERF_ACK: the counters are enabled around the
 * timed phase only. Opened before the timed phase, so that only the
 * "enable" acknowledgement's read and the "disable" write are counted. */
static void
perf_open (Runner *r)
{
  const char *ctl = g_getenv ("BENCH_PERF_CTL"), *ack = g_getenv ("BENCH_PERF_ACK");

  if (ctl == NULL || ack == NULL)
    return;
  r->perf_ctl = fopen (ctl, "w");
  r->perf_ack = fopen (ack, "r");
  if (r->perf_ctl == NULL || r->perf_ack == NULL)
    {
      g_printerr ("bench --run: cannot open the perf control FIFOs: %s\n", g_strerror (errno));
      exit (1);
    }
}

static void
perf_command (Runner     *r,
              const char *command)
{
  char ack[16];

  if (r->perf_ctl == NULL)
    return;
  fprintf (r->perf_ctl, "%s\n", command);
  fflush (r->perf_ctl);
  if (fgets (ack, sizeof ack, r->perf_ack) == NULL)
    {
      g_printerr ("bench --run: perf did not acknowledge '%s'\n", command);
      exit (1);
    }
}

static void
timing_start (Runner *r)
{
  perf_command (r, "enable");
  r->cpu0 = cpu_now_us ();
  r->t0 = g_get_monotonic_time ();
}

static void
timing_stop (Runner *r)
{
  r->secs = (g_get_monotonic_time () - r->t0) / 1e6;
  r->cpu_us = cpu_now_us () - r->cpu0;
  perf_command (r, "disable");
}

static void
store_result_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Runner *r = user_data;

  r->result = g_object_ref (result);
}

/* Runs the main context until the one call in flight completes. */
static GAsyncResult *
wait_result (Runner *r)
{
  GAsyncResult *result;

  while (r->result == NULL)
    g_main_context_iteration (NULL, TRUE);
  result = r->result;
  r->result = NULL;
  return result;
}

static void
declare_sync (Runner             *r,
              const char         *queue,
              CarehareQueueFlags  flags)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;

  carehare_connection_queue_declare_async (r->conn, queue, flags, NULL, NULL, store_result_cb, r);
  result = wait_result (r);
  name = carehare_connection_queue_declare_finish (r->conn, result, NULL, NULL, &error);
  if (name == NULL)
    fail ("queue.declare", error);
}

static void
delete_sync (Runner     *r,
             const char *queue)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  carehare_connection_queue_delete_async (r->conn, queue, CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                          store_result_cb, r);
  result = wait_result (r);
  if (!carehare_connection_queue_delete_finish (r->conn, result, NULL, &error))
    fail ("queue.delete", error);
}

/* ---- publish with confirms ---- */

static void publish_more (Runner *r);

static void
published_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Runner *r = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_publish_finish (r->conn, result, &error))
    fail ("publish", error);
  r->confirmed++;
  publish_more (r);
}

static void
publish_more (Runner *r)
{
  while (r->sent < r->count && r->sent - r->confirmed < r->depth)
    {
      r->sent++;
      carehare_connection_publish_async (r->conn, "", r->queue, r->body, NULL,
                                         CAREHARE_PUBLISH_FLAGS_NONE, NULL, published_cb, r);
    }
}

/* ---- consume with acks ---- */

static void
check_body (Runner           *r,
            CarehareDelivery *delivery)
{
  if (g_bytes_get_size (carehare_delivery_get_body (delivery)) != r->size)
    {
      g_printerr ("bench --run: unexpected body size\n");
      exit (1);
    }
}

/* The style examples/consumer.c and the guides teach: one
 * next_delivery_async per message, the ack in its callback. */
static void
next_one_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Runner *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CarehareDelivery) delivery = NULL;

  delivery = carehare_consumer_next_delivery_finish (r->consumer, result, &error);
  if (delivery == NULL)
    fail ("next delivery", error);
  check_body (r, delivery);
  carehare_consumer_ack (r->consumer, carehare_delivery_get_delivery_tag (delivery));
  if (++r->received < r->count)
    carehare_consumer_next_delivery_async (r->consumer, NULL, next_one_cb, r);
}

/* CarehareConsumer::delivery (issue 19): a handler per message, no
 * asynchronous call. Disconnected once every message arrived, so that
 * the consumer buffers whatever else comes until it is closed. */
static void
delivery_signal_cb (CarehareConsumer *consumer,
                    CarehareDelivery *delivery,
                    gpointer          user_data)
{
  Runner *r = user_data;

  if (r->received >= r->count)
    return;
  check_body (r, delivery);
  carehare_consumer_ack (consumer, carehare_delivery_get_delivery_tag (delivery));
  r->received++;
}

static gboolean
have_delivery_signal (void)
{
  gpointer klass = g_type_class_ref (CAREHARE_TYPE_CONSUMER);
  gboolean found = g_signal_lookup ("delivery", CAREHARE_TYPE_CONSUMER) != 0;

  g_type_class_unref (klass);
  return found;
}

/* Takes what has arrived in one call (next_deliveries) and acks each
 * message on its own, as rabbitmq-c's runner does. */
static void
next_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Runner *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) batch = NULL;

  batch = carehare_consumer_next_deliveries_finish (r->consumer, result, &error);
  if (batch == NULL)
    fail ("next deliveries", error);
  for (guint i = 0; i < batch->len; i++)
    {
      CarehareDelivery *delivery = g_ptr_array_index (batch, i);

      check_body (r, delivery);
      carehare_consumer_ack (r->consumer, carehare_delivery_get_delivery_tag (delivery));
    }
  r->received += batch->len;
  if (r->received < r->count)
    carehare_consumer_next_deliveries_async (r->consumer, 0, NULL, next_cb, r);
}

/* ---- many small operations ---- */

static void
bound_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Runner *r = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_queue_bind_finish (r->conn, result, &error))
    fail ("queue.bind", error);
  r->done++;
}

static void
ops_declared_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Runner *r = user_data;
  g_autoptr(GError) error = NULL;
  char *name;

  name = carehare_connection_queue_declare_finish (r->conn, result, NULL, NULL, &error);
  if (name == NULL)
    fail ("queue.declare", error);
  g_ptr_array_add (r->names, name);
  carehare_connection_queue_bind_async (r->conn, name, "amq.direct", name, NULL, NULL,
                                        bound_cb, r);
}

static void
ops_deleted_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Runner *r = user_data;
  g_autoptr(GError) error = NULL;

  if (!carehare_connection_queue_delete_finish (r->conn, result, NULL, &error))
    fail ("queue.delete", error);
  r->done++;
}

/* The timed phase of every mode: --toggle-collect=bench_timed_phase makes
 * callgrind count these instructions only. */
G_GNUC_NO_INLINE static void
bench_timed_phase (Runner *r)
{
  switch (r->mode)
    {
    case MODE_PUBLISH:
    case MODE_FILL:
      publish_more (r);
      while (r->confirmed < r->count)
        g_main_context_iteration (NULL, TRUE);
      break;

    case MODE_CONSUME:
      carehare_consumer_next_delivery_async (r->consumer, NULL, next_one_cb, r);
      while (r->received < r->count)
        g_main_context_iteration (NULL, TRUE);
      break;

    case MODE_CONSUME_BATCH:
      carehare_consumer_next_deliveries_async (r->consumer, 0, NULL, next_cb, r);
      while (r->received < r->count)
        g_main_context_iteration (NULL, TRUE);
      break;

    case MODE_CONSUME_SIGNAL:
      {
        gulong id = g_signal_connect (r->consumer, "delivery", G_CALLBACK (delivery_signal_cb), r);

        while (r->received < r->count)
          g_main_context_iteration (NULL, TRUE);
        g_signal_handler_disconnect (r->consumer, id);
      }
      break;

    case MODE_LATENCY:
      for (guint64 i = 0; i < r->count; i++)
        {
          gint64 t = g_get_monotonic_time ();

          declare_sync (r, r->queue, CAREHARE_QUEUE_FLAGS_PASSIVE);
          r->latencies[i] = g_get_monotonic_time () - t;
        }
      break;

    case MODE_OPS:
      /* Every declare at once; each bind as soon as its queue exists.
       * The connection spreads them over its pooled channels. */
      for (guint64 i = 0; i < r->count; i++)
        {
          g_autofree char *name = g_strdup_printf ("%s-%" G_GUINT64_FORMAT, r->queue, i);

          carehare_connection_queue_declare_async (r->conn, name, CAREHARE_QUEUE_FLAGS_EXCLUSIVE,
                                                   NULL, NULL, ops_declared_cb, r);
        }
      while (r->done < r->count)
        g_main_context_iteration (NULL, TRUE);
      break;

    case MODE_DELETE:
      break;
    }
}

static int
cmp_double (const void *a,
            const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

static double
percentile (const double *sorted,
            guint64       n,
            double        p)
{
  guint64 i = (guint64) (p * (n - 1) + 0.5);

  return sorted[MIN (i, n - 1)];
}

static int
run_carehare (int   argc,
              char *argv[])
{
  static const char *modes[] = { "publish", "fill", "consume", "consume-batch", "consume-signal",
                                 "latency", "ops", "delete" };
  Runner r = { 0 };
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *extra = NULL;
  guint i;

  if (argc != 7)
    {
      g_printerr ("usage: bench --run publish|fill|consume|consume-batch|consume-signal|latency|ops|delete "
                  "URI QUEUE COUNT SIZE DEPTH\n");
      return 2;
    }
  for (i = 0; i < G_N_ELEMENTS (modes); i++)
    if (strcmp (argv[1], modes[i]) == 0)
      break;
  if (i == G_N_ELEMENTS (modes))
    {
      g_printerr ("bench --run: unknown mode %s\n", argv[1]);
      return 2;
    }
  r.mode = i;
  r.queue = argv[3];
  r.count = g_ascii_strtoull (argv[4], NULL, 10);
  r.size = g_ascii_strtoull (argv[5], NULL, 10);
  r.depth = g_ascii_strtoull (argv[6], NULL, 10);
  if (r.count == 0 || r.depth == 0)
    {
      g_printerr ("bench --run: COUNT and DEPTH must be positive\n");
      return 2;
    }
  if (r.mode == MODE_CONSUME_SIGNAL && !have_delivery_signal ())
    {
      /* The driver prints the reason and goes on; the queue is its to delete. */
      g_print ("SKIP no ::delivery signal\n");
      return 0;
    }
  perf_open (&r);

  carehare_connection_new_async (argv[2], NULL, store_result_cb, &r);
  result = wait_result (&r);
  r.conn = carehare_connection_new_finish (result, &error);
  if (r.conn == NULL)
    fail ("connect", error);
  g_clear_object (&result);

  switch (r.mode)
    {
    case MODE_PUBLISH:
    case MODE_FILL:
      r.body = g_bytes_new_take (g_malloc0 (r.size), r.size);
      declare_sync (&r, r.queue, CAREHARE_QUEUE_FLAGS_NONE);
      timing_start (&r);
      bench_timed_phase (&r);
      timing_stop (&r);
      if (r.mode == MODE_PUBLISH)
        delete_sync (&r, r.queue);
      break;

    case MODE_CONSUME:
    case MODE_CONSUME_BATCH:
    case MODE_CONSUME_SIGNAL:
      carehare_connection_acking_consumer_async (r.conn, r.queue, 0, MIN (r.depth, G_MAXUINT16),
                                                 NULL, store_result_cb, &r);
      result = wait_result (&r);
      r.consumer = carehare_connection_acking_consumer_finish (r.conn, result, &error);
      if (r.consumer == NULL)
        fail ("consume", error);
      g_clear_object (&result);
      timing_start (&r);
      bench_timed_phase (&r);
      timing_stop (&r);
      carehare_consumer_close_async (r.consumer, NULL, store_result_cb, &r);
      result = wait_result (&r);
      if (!carehare_consumer_close_finish (r.consumer, result, &error))
        fail ("close consumer", error);
      g_clear_object (&result);
      delete_sync (&r, r.queue);
      break;

    case MODE_LATENCY:
      r.latencies = g_new0 (double, r.count);
      declare_sync (&r, r.queue, CAREHARE_QUEUE_FLAGS_NONE);
      for (i = 0; i < WARMUP; i++)
        declare_sync (&r, r.queue, CAREHARE_QUEUE_FLAGS_PASSIVE);
      timing_start (&r);
      bench_timed_phase (&r);
      timing_stop (&r);
      delete_sync (&r, r.queue);
      qsort (r.latencies, r.count, sizeof (double), cmp_double);
      extra = g_strdup_printf (" p50_us=%.1f p99_us=%.1f",
                               percentile (r.latencies, r.count, 0.5),
                               percentile (r.latencies, r.count, 0.99));
      break;

    case MODE_OPS:
      r.names = g_ptr_array_new_with_free_func (g_free);
      timing_start (&r);
      bench_timed_phase (&r);
      timing_stop (&r);
      r.done = 0;
      for (i = 0; i < r.names->len; i++)
        carehare_connection_queue_delete_async (r.conn, g_ptr_array_index (r.names, i),
                                                CAREHARE_QUEUE_DELETE_FLAGS_NONE, NULL,
                                                ops_deleted_cb, &r);
      while (r.done < r.names->len)
        g_main_context_iteration (NULL, TRUE);
      r.count *= 2;  /* a declare and a bind each */
      break;

    case MODE_DELETE:
      delete_sync (&r, r.queue);
      break;
    }

  carehare_connection_close_async (r.conn, NULL, store_result_cb, &r);
  result = wait_result (&r);
  carehare_connection_close_finish (r.conn, result, NULL);
  g_print ("RESULT ops=%" G_GUINT64_FORMAT " secs=%.6f cpu_us=%.0f maxrss_kib=%ld%s\n",
           r.count, r.secs, r.cpu_us, maxrss_kib (), extra ? extra : "");

  g_clear_object (&r.consumer);
  g_clear_object (&r.conn);
  g_clear_pointer (&r.body, g_bytes_unref);
  g_clear_pointer (&r.names, g_ptr_array_unref);
  g_free (r.latencies);
  if (r.perf_ctl != NULL)
    fclose (r.perf_ctl);
  if (r.perf_ack != NULL)
    fclose (r.perf_ack);
  return 0;
}

/* ==== driver =============================================================== */

typedef enum {
  CLIENT_CAREHARE,
  CLIENT_RABBITMQ_C,
  N_CLIENTS
} Client;

static const char *client_names[N_CLIENTS] = { "carehare-glib", "rabbitmq-c" };

typedef struct {
  double ops, secs, cpu_us, maxrss_kib;
  double p50, p99, raw_p50, raw_p99;
} Result;

typedef struct {
  char *self_exe;
  char *rabbitmq_c_exe;
  const char *uri;
  guint rounds;
  guint seq;
  gboolean failed;
} Driver;

static char *
new_queue_name (Driver *d)
{
  return g_strdup_printf ("bench-%d-%u", (int) getpid (), ++d->seq);
}

static double
field (const char *line,
       const char *key)
{
  g_autofree char *needle = g_strdup_printf (" %s=", key);
  const char *p = strstr (line, needle);

  return p != NULL ? g_ascii_strtod (p + strlen (needle), NULL) : NAN;
}

/* Runs one child; FALSE (after saying why) if it failed. */
static gboolean
run_child (Driver     *d,
           Client      client,
           const char *mode,
           const char *queue,
           guint64     count,
           guint64     size,
           guint64     depth,
           Result     *out)
{
  g_autofree char *count_s = g_strdup_printf ("%" G_GUINT64_FORMAT, count);
  g_autofree char *size_s = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
  g_autofree char *depth_s = g_strdup_printf ("%" G_GUINT64_FORMAT, depth);
  g_autofree char *stdout_buf = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  const char *line;
  int status = 0;

  if (client == CLIENT_CAREHARE)
    {
      g_ptr_array_add (argv, d->self_exe);
      g_ptr_array_add (argv, (char *) "--run");
    }
  else
    g_ptr_array_add (argv, d->rabbitmq_c_exe);
  g_ptr_array_add (argv, (char *) mode);
  g_ptr_array_add (argv, (char *) d->uri);
  g_ptr_array_add (argv, (char *) queue);
  g_ptr_array_add (argv, count_s);
  g_ptr_array_add (argv, size_s);
  g_ptr_array_add (argv, depth_s);
  g_ptr_array_add (argv, NULL);

  /* stderr is inherited: a runner's complaint reaches the terminal. */
  if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                     &stdout_buf, NULL, &status, &error))
    {
      g_printerr ("bench: cannot run %s: %s\n", (char *) argv->pdata[0], error->message);
      return FALSE;
    }
  if (!g_spawn_check_wait_status (status, &error))
    {
      g_printerr ("bench: %s %s (queue %s): %s\n", client_names[client], mode, queue,
                  error->message);
      return FALSE;
    }
  line = g_strrstr (stdout_buf, "RESULT ");
  if (line == NULL)
    {
      g_printerr ("bench: %s %s printed no result\n", client_names[client], mode);
      return FALSE;
    }
  line += strlen ("RESULT") - 1;  /* keep the space: keys are matched as " key=" */
  out->ops = field (line, "ops");
  out->secs = field (line, "secs");
  out->cpu_us = field (line, "cpu_us");
  out->maxrss_kib = field (line, "maxrss_kib");
  out->p50 = field (line, "p50_us");
  out->p99 = field (line, "p99_us");
  out->raw_p50 = field (line, "raw_p50_us");
  out->raw_p99 = field (line, "raw_p99_us");
  return TRUE;
}

static void
cleanup_queue (Driver     *d,
               const char *queue)
{
  Result ignored;

  /* The queue may be gone already; a failure here says nothing new. */
  run_child (d, CLIENT_CAREHARE, "delete", queue, 1, 0, 1, &ignored);
}

/* One round of a case for one client: fill first when consuming. */
static gboolean
run_round (Driver     *d,
           Client      client,
           const char *mode,
           guint64     count,
           guint64     size,
           guint64     depth,
           guint64     fill_window,
           Result     *out)
{
  g_autofree char *queue = new_queue_name (d);
  Result fill;

  if (strcmp (mode, "consume") == 0 &&
      !run_child (d, CLIENT_CAREHARE, "fill", queue, count, size, fill_window, &fill))
    {
      cleanup_queue (d, queue);
      return FALSE;
    }
  if (!run_child (d, client, mode, queue, count, size, depth, out))
    {
      cleanup_queue (d, queue);
      return FALSE;
    }
  return TRUE;
}

static double
median (double *v,
        guint   n)
{
  qsort (v, n, sizeof (double), cmp_double);
  if (n == 0)
    return NAN;
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
  double rate;        /* per second, in the case's unit */
  double cpu;         /* CPU µs per unit */
  double rss_mib;     /* largest peak RSS over the rounds */
  double p50, p99, raw_p50, raw_p99;
  double ops;         /* units in one round */
  gboolean ok;
} Summary;

/* Runs K rounds of a case for both clients (alternating who goes first)
 * and takes the medians; per_mib counts MiB (size × ops) instead of ops. */
static void
run_case (Driver     *d,
          const char *mode,
          guint64     count,
          guint64     size,
          guint64     depth,
          guint64     fill_window,
          gboolean    per_mib,
          Summary     sum[N_CLIENTS])
{
  g_autofree double *rate = g_new0 (double, d->rounds * N_CLIENTS);
  g_autofree double *cpu = g_new0 (double, d->rounds * N_CLIENTS);
  g_autofree double *p50 = g_new0 (double, d->rounds * N_CLIENTS);
  g_autofree double *p99 = g_new0 (double, d->rounds * N_CLIENTS);
  g_autofree double *raw50 = g_new0 (double, d->rounds * N_CLIENTS);
  g_autofree double *raw99 = g_new0 (double, d->rounds * N_CLIENTS);
  guint n[N_CLIENTS] = { 0 };

  memset (sum, 0, sizeof (Summary) * N_CLIENTS);
  for (guint round = 0; round < d->rounds; round++)
    for (guint k = 0; k < N_CLIENTS; k++)
      {
        Client c = (round + k) % N_CLIENTS;
        Result res;
        double units;
        guint j;

        if (!run_round (d, c, mode, count, size, depth, fill_window, &res))
          {
            d->failed = TRUE;
            continue;
          }
        units = per_mib ? res.ops * size / (1024.0 * 1024.0) : res.ops;
        j = c * d->rounds + n[c]++;
        rate[j] = units / res.secs;
        cpu[j] = res.cpu_us / units;
        p50[j] = res.p50;
        p99[j] = res.p99;
        raw50[j] = res.raw_p50;
        raw99[j] = res.raw_p99;
        sum[c].rss_mib = MAX (sum[c].rss_mib, res.maxrss_kib / 1024.0);
        sum[c].ops = units;
      }

  for (guint c = 0; c < N_CLIENTS; c++)
    {
      guint o = c * d->rounds;

      sum[c].ok = n[c] > 0;
      sum[c].rate = median (rate + o, n[c]);
      sum[c].cpu = median (cpu + o, n[c]);
      sum[c].p50 = median (p50 + o, n[c]);
      sum[c].p99 = median (p99 + o, n[c]);
      sum[c].raw_p50 = median (raw50 + o, n[c]);
      sum[c].raw_p99 = median (raw99 + o, n[c]);
    }
}

static void
print_header (const char *rate_unit,
              const char *cpu_unit)
{
  g_print ("%-16s %-14s %12s %14s %13s\n", "case", "client", rate_unit, cpu_unit,
           "peak RSS MiB");
  fflush (stdout);
}

static void
print_rows (const char *label,
            Summary     sum[N_CLIENTS])
{
  for (guint c = 0; c < N_CLIENTS; c++)
    {
      if (!sum[c].ok)
        g_print ("%-16s %-14s %12s\n", label, client_names[c], "failed");
      else
        g_print ("%-16s %-14s %12.1f %14.2f %13.1f\n", label, client_names[c], sum[c].rate,
                 sum[c].cpu, sum[c].rss_mib);
    }
  if (sum[0].ok && sum[1].ok)
    g_print ("%-16s %-14s %12.2f %14.2f %13.2f\n", label, "ratio c/r",
             sum[0].rate / sum[1].rate, sum[0].cpu / sum[1].cpu, sum[0].rss_mib / sum[1].rss_mib);
  fflush (stdout);
}

typedef struct {
  guint64 messages;   /* scenarios 1 and 2 */
  guint64 calls;      /* scenario 3 */
  guint64 large_mib;  /* scenario 4: MiB per round and size */
  guint64 ops;        /* scenario 5 */
} Sizes;

static void
scenario_publish (Driver *d, const Sizes *s)
{
  static const guint64 windows[] = { 100, 1000 };
  Summary sum[N_CLIENTS];

  g_print ("\n1. Publish with confirms: %" G_GUINT64_FORMAT " messages of 256 B, "
           "median of %u rounds\n", s->messages, d->rounds);
  print_header ("msgs/s", "CPU us/msg");
  for (guint i = 0; i < G_N_ELEMENTS (windows); i++)
    {
      g_autofree char *label = g_strdup_printf ("window %" G_GUINT64_FORMAT, windows[i]);

      run_case (d, "publish", s->messages, 256, windows[i], 0, FALSE, sum);
      print_rows (label, sum);
    }
}

static void
scenario_consume (Driver *d, const Sizes *s)
{
  static const guint64 prefetches[] = { 100, 1000 };
  Summary sum[N_CLIENTS];

  g_print ("\n2. Consume with acks: %" G_GUINT64_FORMAT " messages of 256 B, "
           "median of %u rounds\n", s->messages, d->rounds);
  print_header ("msgs/s", "CPU us/msg");
  for (guint i = 0; i < G_N_ELEMENTS (prefetches); i++)
    {
      g_autofree char *label = g_strdup_printf ("prefetch %" G_GUINT64_FORMAT, prefetches[i]);

      run_case (d, "consume", s->messages, 256, prefetches[i], 1000, FALSE, sum);
      print_rows (label, sum);
    }
}

static void
scenario_latency (Driver *d, const Sizes *s)
{
  Summary sum[N_CLIENTS];

  g_print ("\n3. Round-trip latency: %" G_GUINT64_FORMAT " passive queue.declare, one at a time, "
           "median of %u rounds\n", s->calls, d->rounds);
  fflush (stdout);
  run_case (d, "latency", s->calls, 0, 1, 0, FALSE, sum);
  g_print ("%-22s %9s %9s %10s %13s %13s\n", "client", "p50 us", "p99 us", "calls/s",
           "CPU us/call", "peak RSS MiB");
  for (guint c = 0; c < N_CLIENTS; c++)
    {
      if (!sum[c].ok)
        g_print ("%-22s %9s\n", client_names[c], "failed");
      else
        g_print ("%-22s %9.1f %9.1f %10.0f %13.2f %13.1f\n", client_names[c], sum[c].p50,
                 sum[c].p99, sum[c].rate, sum[c].cpu, sum[c].rss_mib);
    }
  if (sum[CLIENT_RABBITMQ_C].ok)
    g_print ("%-22s %9.1f %9.1f\n", "raw frames (floor)", sum[CLIENT_RABBITMQ_C].raw_p50,
             sum[CLIENT_RABBITMQ_C].raw_p99);
  if (sum[0].ok && sum[1].ok)
    g_print ("%-22s %9.2f %9.2f %10.2f %13.2f %13.2f\n", "ratio c/r", sum[0].p50 / sum[1].p50,
             sum[0].p99 / sum[1].p99, sum[0].rate / sum[1].rate, sum[0].cpu / sum[1].cpu,
             sum[0].rss_mib / sum[1].rss_mib);
  fflush (stdout);
}

static void
scenario_large (Driver *d, const Sizes *s)
{
  static const struct { guint64 mib, depth; } sizes[] = { { 1, 8 }, { 16, 2 } };
  Summary sum[N_CLIENTS];

  g_print ("\n4. Large messages: %" G_GUINT64_FORMAT " MiB per round and case, "
           "median of %u rounds\n", s->large_mib, d->rounds);
  print_header ("MiB/s", "CPU us/MiB");
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      guint64 size = sizes[i].mib * 1024 * 1024;
      guint64 count = MAX (s->large_mib / sizes[i].mib, 2);
      g_autofree char *pub = g_strdup_printf ("%" G_GUINT64_FORMAT " MiB pub w%" G_GUINT64_FORMAT,
                                              sizes[i].mib, sizes[i].depth);
      g_autofree char *con = g_strdup_printf ("%" G_GUINT64_FORMAT " MiB con p%" G_GUINT64_FORMAT,
                                              sizes[i].mib, sizes[i].depth);

      run_case (d, "publish", count, size, sizes[i].depth, 0, TRUE, sum);
      print_rows (pub, sum);
      run_case (d, "consume", count, size, sizes[i].depth, sizes[i].depth, TRUE, sum);
      print_rows (con, sum);
    }
}

static void
scenario_ops (Driver *d, const Sizes *s)
{
  Summary sum[N_CLIENTS];

  g_print ("\n5. Many small operations: %" G_GUINT64_FORMAT " queue.declare + queue.bind "
           "(carehare-glib: all at once on pooled channels; rabbitmq-c: one after another "
           "on one channel), median of %u rounds\n", s->ops, d->rounds);
  print_header ("ops/s", "CPU us/op");
  run_case (d, "ops", s->ops, 0, 1, 0, FALSE, sum);
  print_rows ("declare+bind", sum);
}

static int
run_driver (int   argc,
            char *argv[])
{
  Driver d = { 0 };
  Sizes sizes = { 100000, 2000, 256, 1000 };
  gint rounds = 3;
  gint64 messages = 0;
  gboolean quick = FALSE;
  g_auto(GStrv) scenarios = NULL;
  g_auto(GStrv) rest = NULL;
  g_autoptr(GOptionContext) ctx = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = NULL;
  gboolean want[6] = { FALSE };
  gboolean any = FALSE;
  GOptionEntry entries[] = {
    { "rounds", 'k', 0, G_OPTION_ARG_INT, &rounds, "Rounds per case (default 3)", "K" },
    { "scenario", 's', 0, G_OPTION_ARG_STRING_ARRAY, &scenarios,
      "Run only scenario N (1-5; repeatable, or comma-separated)", "N" },
    { "messages", 'n', 0, G_OPTION_ARG_INT64, &messages,
      "Messages in scenarios 1 and 2 (default 100000)", "N" },
    { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick,
      "Less work for a quick look (a tenth of the messages)", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, "[URI]" },
    G_OPTION_ENTRY_NULL
  };

  ctx = g_option_context_new ("- carehare-glib against rabbitmq-c");
  g_option_context_set_description (ctx,
    "URI defaults to $CAREHARE_TEST_AMQP_URI.\n"
    "Scenarios: 1 publish with confirms, 2 consume with acks, 3 round-trip latency,\n"
    "4 large messages, 5 many small operations.\n");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("bench: %s\n", error->message);
      return 2;
    }
  if (rounds < 1)
    {
      g_printerr ("bench: --rounds must be at least 1\n");
      return 2;
    }
  d.rounds = rounds;
  if (quick)
    {
      sizes.messages /= 10;
      sizes.calls /= 4;
      sizes.large_mib /= 8;
      sizes.ops /= 5;
    }
  if (messages > 0)
    sizes.messages = messages;

  for (guint i = 0; scenarios != NULL && scenarios[i] != NULL; i++)
    {
      g_auto(GStrv) parts = g_strsplit (scenarios[i], ",", -1);

      for (guint j = 0; parts[j] != NULL; j++)
        {
          guint64 n = 0;

          if (!g_ascii_string_to_unsigned (g_strstrip (parts[j]), 10, 1, 5, &n, NULL))
            {
              g_printerr ("bench: no scenario '%s' (1-5)\n", parts[j]);
              return 2;
            }
          want[n] = any = TRUE;
        }
    }
  if (!any)
    for (guint i = 1; i <= 5; i++)
      want[i] = TRUE;

  if (rest != NULL && rest[0] != NULL)
    d.uri = rest[0];
  else
    d.uri = g_getenv ("CAREHARE_TEST_AMQP_URI");
  if (d.uri == NULL)
    {
      g_printerr ("bench: no URI given and CAREHARE_TEST_AMQP_URI is not set\n");
      return 2;
    }

  d.self_exe = g_file_read_link ("/proc/self/exe", &error);
  if (d.self_exe == NULL)
    {
      g_printerr ("bench: cannot find myself: %s\n", error->message);
      return 1;
    }
  dir = g_path_get_dirname (d.self_exe);
  d.rabbitmq_c_exe = g_build_filename (dir, "bench-rabbitmq-c", NULL);
  if (!g_file_test (d.rabbitmq_c_exe, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_printerr ("bench: %s is missing\n", d.rabbitmq_c_exe);
      return 1;
    }

  g_print ("carehare-glib %s against rabbitmq-c, %u round(s) per case; "
           "ratio c/r = carehare-glib / rabbitmq-c\n",
           CAREHARE_VERSION_S, d.rounds);
  if (want[1])
    scenario_publish (&d, &sizes);
  if (want[2])
    scenario_consume (&d, &sizes);
  if (want[3])
    scenario_latency (&d, &sizes);
  if (want[4])
    scenario_large (&d, &sizes);
  if (want[5])
    scenario_ops (&d, &sizes);

  g_free (d.self_exe);
  g_free (d.rabbitmq_c_exe);
  return d.failed ? 1 : 0;
}

int
main (int   argc,
      char *argv[])
{
  if (argc > 1 && strcmp (argv[1], "--run") == 0)
    return run_carehare (argc - 1, argv + 1);
  return run_driver (argc, argv);
}
