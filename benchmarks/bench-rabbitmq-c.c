/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rabbitmq-c side of benchmarks/bench.c: one scenario, one round, in a
 * process of its own so that getrusage() and ru_maxrss describe this client
 * alone. bench runs it; by hand:
 *
 *   bench-rabbitmq-c MODE URI QUEUE COUNT SIZE DEPTH
 *
 * MODE is publish, fill, consume, latency, ops or delete (see bench.c for
 * what each one does; the carehare-glib runner takes the same arguments).
 * The last line on stdout is the result:
 *
 *   RESULT ops=N secs=S cpu_us=C maxrss_kib=K [p50_us=.. p99_us=..
 *          raw_p50_us=.. raw_p99_us=..]
 *
 * rabbitmq-c is synchronous: one channel (1), blocking calls, the way its
 * programs are written. Publishing keeps DEPTH unconfirmed messages in
 * flight and reads basic.ack frames (single or multiple) when the window is
 * full; consuming sets basic.qos to DEPTH and acks each delivery on its
 * own. frame_max is 131072 (RabbitMQ's default, as carehare-glib
 * negotiates) and heartbeats are off, so no frame arrives unasked.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHANNEL 1
#define FRAME_MAX 131072
#define WARMUP 100

typedef struct {
  amqp_connection_state_t conn;
  const char *queue;
  unsigned long count, size, depth;
  struct timespec t0;
  struct rusage ru0;
  double secs, cpu_us;
  FILE *perf_ctl, *perf_ack;   /* see perf_open() */
} Run;

static void
die (const char *what,
     const char *why)
{
  fprintf (stderr, "bench-rabbitmq-c: %s: %s\n", what, why);
  exit (1);
}

static void
check_reply (amqp_connection_state_t conn,
             const char             *what)
{
  amqp_rpc_reply_t r = amqp_get_rpc_reply (conn);
  char buf[128];

  switch (r.reply_type)
    {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      die (what, amqp_error_string2 (r.library_error));
      break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD || r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
        {
          /* channel.close and connection.close start with the same fields */
          amqp_channel_close_t *c = r.reply.decoded;

          snprintf (buf, sizeof buf, "server closed: %u %.*s", c->reply_code,
                    (int) c->reply_text.len, (const char *) c->reply_text.bytes);
          die (what, buf);
        }
      die (what, "server exception");
      break;
    default:
      die (what, "no reply");
    }
}

static void
check_status (int         status,
              const char *what)
{
  if (status != AMQP_STATUS_OK)
    die (what, amqp_error_string2 (status));
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu_us (const struct rusage *ru)
{
  return (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e6 +
         ru->ru_utime.tv_usec + ru->ru_stime.tv_usec;
}

/* bench-clients.py counts system calls with `perf stat --delay=-1
 * --control fifo:CTL,ACK`, naming the FIFOs in BENCH_PERF_CTL and
 * BENCH_PERF_ACK: the counters run during the timed phase only (as in
 * bench.c). */
static void
perf_open (Run *run)
{
  const char *ctl = getenv ("BENCH_PERF_CTL"), *ack = getenv ("BENCH_PERF_ACK");

  if (ctl == NULL || ack == NULL)
    return;
  run->perf_ctl = fopen (ctl, "w");
  run->perf_ack = fopen (ack, "r");
  if (run->perf_ctl == NULL || run->perf_ack == NULL)
    die ("perf control FIFOs", strerror (errno));
}

static void
perf_command (Run        *run,
              const char *command)
{
  char ack[16];

  if (run->perf_ctl == NULL)
    return;
  fprintf (run->perf_ctl, "%s\n", command);
  fflush (run->perf_ctl);
  if (fgets (ack, sizeof ack, run->perf_ack) == NULL)
    die ("perf control", "no acknowledgement");
}

static void
timing_start (Run *run)
{
  perf_command (run, "enable");
  getrusage (RUSAGE_SELF, &run->ru0);
  clock_gettime (CLOCK_MONOTONIC, &run->t0);
}

static void
timing_stop (Run *run)
{
  struct timespec t1;
  struct rusage ru1;

  clock_gettime (CLOCK_MONOTONIC, &t1);
  getrusage (RUSAGE_SELF, &ru1);
  run->secs = (t1.tv_sec - run->t0.tv_sec) + (t1.tv_nsec - run->t0.tv_nsec) / 1e9;
  run->cpu_us = cpu_us (&ru1) - cpu_us (&run->ru0);
  perf_command (run, "disable");
}

static void
print_result (Run        *run,
              const char *extra)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  printf ("RESULT ops=%lu secs=%.6f cpu_us=%.0f maxrss_kib=%ld%s%s\n", run->count,
          run->secs, run->cpu_us, ru.ru_maxrss, extra ? " " : "", extra ? extra : "");
}

static void
connect_to (Run  *run,
            char *uri)
{
  struct amqp_connection_info info;
  amqp_socket_t *socket;

  if (amqp_parse_url (uri, &info) != AMQP_STATUS_OK)
    die ("URI", "cannot parse");
  if (info.ssl)
    die ("URI", "amqps is not supported by this benchmark");
  /* amqp://host/ names the vhost "/" in carehare-glib (docs/uri.md);
   * rabbitmq-c reads it as the empty vhost. Connect both to the same one. */
  if (info.vhost == NULL || info.vhost[0] == '\0')
    info.vhost = (char *) "/";
  run->conn = amqp_new_connection ();
  socket = amqp_tcp_socket_new (run->conn);
  if (socket == NULL)
    die ("socket", "cannot create");
  check_status (amqp_socket_open (socket, info.host, info.port), "connect");
  amqp_get_rpc_reply (run->conn);
  {
    amqp_rpc_reply_t r = amqp_login (run->conn, info.vhost, 0, FRAME_MAX, 0,
                                     AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
      check_reply (run->conn, "login");
  }
  amqp_channel_open (run->conn, CHANNEL);
  check_reply (run->conn, "channel.open");
}

static void
disconnect (Run *run)
{
  amqp_channel_close (run->conn, CHANNEL, AMQP_REPLY_SUCCESS);
  amqp_connection_close (run->conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection (run->conn);
}

static void
declare (Run        *run,
         const char *queue,
         int         passive)
{
  amqp_queue_declare (run->conn, CHANNEL, amqp_cstring_bytes (queue), passive, 0, 0, 0,
                      amqp_empty_table);
  check_reply (run->conn, "queue.declare");
}

static void
delete_queue (Run        *run,
              const char *queue)
{
  amqp_queue_delete (run->conn, CHANNEL, amqp_cstring_bytes (queue), 0, 0);
  check_reply (run->conn, "queue.delete");
}

/* ---- publish with confirms ------------------------------------------------ */

typedef struct {
  unsigned char *acked;    /* by delivery tag, 1..count */
  unsigned long low;       /* every tag <= low is acked */
  unsigned long confirmed;
} Confirms;

static void
confirm (Confirms     *c,
         uint64_t      tag,
         int           multiple,
         unsigned long count)
{
  if (tag > count)
    die ("basic.ack", "unknown delivery tag");
  if (multiple)
    {
      for (; c->low < tag; c->low++)
        if (!c->acked[c->low + 1])
          {
            c->acked[c->low + 1] = 1;
            c->confirmed++;
          }
    }
  else if (!c->acked[tag])
    {
      c->acked[tag] = 1;
      c->confirmed++;
    }
}

static void
read_confirm (Run      *run,
              Confirms *c)
{
  amqp_frame_t frame;

  check_status (amqp_simple_wait_frame (run->conn, &frame), "wait for confirm");
  if (frame.frame_type != AMQP_FRAME_METHOD)
    die ("wait for confirm", "unexpected frame");
  switch (frame.payload.method.id)
    {
    case AMQP_BASIC_ACK_METHOD:
      {
        amqp_basic_ack_t *ack = frame.payload.method.decoded;
        confirm (c, ack->delivery_tag, ack->multiple, run->count);
        break;
      }
    case AMQP_BASIC_NACK_METHOD:
      die ("publish", "server sent nack");
      break;
    case AMQP_CHANNEL_CLOSE_METHOD:
      die ("publish", "channel closed by server");
      break;
    default:
      die ("wait for confirm", "unexpected method");
    }
}

static void
publish (Run *run,
         int  timed)
{
  Confirms c = { 0 };
  amqp_bytes_t body;
  amqp_bytes_t queue = amqp_cstring_bytes (run->queue);
  unsigned long sent = 0;

  body.len = run->size;
  body.bytes = calloc (1, run->size ? run->size : 1);
  c.acked = calloc (run->count + 1, 1);
  amqp_confirm_select (run->conn, CHANNEL);
  check_reply (run->conn, "confirm.select");

  if (timed)
    timing_start (run);
  while (c.confirmed < run->count)
    {
      while (sent < run->count && sent - c.confirmed < run->depth)
        {
          check_status (amqp_basic_publish (run->conn, CHANNEL, amqp_empty_bytes, queue, 0, 0,
                                            NULL, body),
                        "basic.publish");
          sent++;
        }
      /* Block for one confirm, then take whatever else already arrived. */
      read_confirm (run, &c);
      while (amqp_frames_enqueued (run->conn) || amqp_data_in_buffer (run->conn))
        read_confirm (run, &c);
      amqp_maybe_release_buffers (run->conn);
    }
  if (timed)
    timing_stop (run);
  free (c.acked);
  free (body.bytes);
}

/* ---- consume with acks ------------------------------------------------------ */

static void
consume (Run *run)
{
  unsigned long received = 0;

  amqp_basic_qos (run->conn, CHANNEL, 0, run->depth, 0);
  check_reply (run->conn, "basic.qos");
  amqp_basic_consume (run->conn, CHANNEL, amqp_cstring_bytes (run->queue), amqp_empty_bytes,
                      0, 0, 0, amqp_empty_table);
  check_reply (run->conn, "basic.consume");

  timing_start (run);
  while (received < run->count)
    {
      amqp_envelope_t envelope;
      amqp_rpc_reply_t r;

      amqp_maybe_release_buffers (run->conn);
      r = amqp_consume_message (run->conn, &envelope, NULL, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL)
        die ("consume", "no delivery");
      if (envelope.message.body.len != run->size)
        die ("consume", "unexpected body size");
      check_status (amqp_basic_ack (run->conn, CHANNEL, envelope.delivery_tag, 0),
                    "basic.ack");
      amqp_destroy_envelope (&envelope);
      received++;
    }
  timing_stop (run);
}

/* ---- latency ------------------------------------------------------------------ */

static int
cmp_double (const void *a,
            const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

static double
percentile (double       *sorted,
            unsigned long n,
            double        p)
{
  unsigned long i = (unsigned long) (p * (n - 1) + 0.5);

  return sorted[i < n ? i : n - 1];
}

static void
put_u16 (unsigned char *p, unsigned v)
{
  p[0] = v >> 8;
  p[1] = v;
}

static void
put_u32 (unsigned char *p, unsigned long v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

/* queue.declare(passive) as raw bytes: the same request rabbitmq-c sends. */
static size_t
encode_passive_declare (unsigned char *buf,
                        const char    *queue)
{
  size_t qlen = strlen (queue), payload = 2 + 2 + 2 + 1 + qlen + 1 + 4;
  unsigned char *p = buf;

  *p++ = AMQP_FRAME_METHOD;
  put_u16 (p, CHANNEL);
  p += 2;
  put_u32 (p, payload);
  p += 4;
  put_u16 (p, 50);        /* queue */
  put_u16 (p + 2, 10);    /* declare */
  put_u16 (p + 4, 0);     /* reserved-1 */
  p += 6;
  *p++ = qlen;
  memcpy (p, queue, qlen);
  p += qlen;
  *p++ = 0x01;            /* passive; durable, exclusive, auto-delete, no-wait clear */
  put_u32 (p, 0);         /* arguments: empty table */
  p += 4;
  *p++ = AMQP_FRAME_END;
  return p - buf;
}

static void
read_exact (int            fd,
            unsigned char *buf,
            size_t         len)
{
  while (len > 0)
    {
      ssize_t n = recv (fd, buf, len, 0);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        {
          /* rabbitmq-c keeps its socket non-blocking: wait as it would. */
          struct pollfd pfd = { .fd = fd, .events = POLLIN };

          poll (&pfd, 1, -1);
          continue;
        }
      if (n <= 0)
        die ("raw round trip", n == 0 ? "connection closed" : strerror (errno));
      buf += n;
      len -= n;
    }
}

/* One raw round trip: write the encoded frame, read one whole frame back
 * and check it is queue.declare-ok. No library code runs. */
static void
raw_round_trip (int                  fd,
                const unsigned char *req,
                size_t               req_len)
{
  unsigned char hdr[7], body[512];
  size_t size;

  if (send (fd, req, req_len, 0) != (ssize_t) req_len)
    die ("raw round trip", "short write");
  read_exact (fd, hdr, sizeof hdr);
  size = ((size_t) hdr[3] << 24) | (hdr[4] << 16) | (hdr[5] << 8) | hdr[6];
  if (hdr[0] != AMQP_FRAME_METHOD || size + 1 > sizeof body)
    die ("raw round trip", "unexpected frame");
  read_exact (fd, body, size + 1);
  if (body[0] != 0 || body[1] != 50 || body[2] != 0 || body[3] != 11 || body[size] != AMQP_FRAME_END)
    die ("raw round trip", "expected queue.declare-ok");
}

static void
latency (Run *run)
{
  double *lat = calloc (run->count, sizeof *lat);
  double *raw = calloc (run->count, sizeof *raw);
  unsigned char req[300];
  size_t req_len;
  char extra[200];
  unsigned long i;
  int fd;

  declare (run, run->queue, 0);
  for (i = 0; i < WARMUP; i++)
    declare (run, run->queue, 1);

  timing_start (run);
  for (i = 0; i < run->count; i++)
    {
      double t = now_s ();

      declare (run, run->queue, 1);
      lat[i] = (now_s () - t) * 1e6;
    }
  timing_stop (run);

  /* The floor: the same request on the same socket, without a library. */
  if (amqp_frames_enqueued (run->conn) || amqp_data_in_buffer (run->conn))
    die ("raw round trip", "rabbitmq-c holds unread data");
  fd = amqp_get_sockfd (run->conn);
  req_len = encode_passive_declare (req, run->queue);
  for (i = 0; i < WARMUP; i++)
    raw_round_trip (fd, req, req_len);
  for (i = 0; i < run->count; i++)
    {
      double t = now_s ();

      raw_round_trip (fd, req, req_len);
      raw[i] = (now_s () - t) * 1e6;
    }

  delete_queue (run, run->queue);
  qsort (lat, run->count, sizeof *lat, cmp_double);
  qsort (raw, run->count, sizeof *raw, cmp_double);
  snprintf (extra, sizeof extra, "p50_us=%.1f p99_us=%.1f raw_p50_us=%.1f raw_p99_us=%.1f",
            percentile (lat, run->count, 0.5), percentile (lat, run->count, 0.99),
            percentile (raw, run->count, 0.5), percentile (raw, run->count, 0.99));
  print_result (run, extra);
  free (lat);
  free (raw);
}

/* ---- many small operations ------------------------------------------------- */

static void
ops (Run *run)
{
  char name[256];
  unsigned long i;

  /* One channel, one request at a time: rabbitmq-c's model. */
  timing_start (run);
  for (i = 0; i < run->count; i++)
    {
      snprintf (name, sizeof name, "%s-%lu", run->queue, i);
      amqp_queue_declare (run->conn, CHANNEL, amqp_cstring_bytes (name), 0, 0, 1, 0,
                          amqp_empty_table);
      check_reply (run->conn, "queue.declare");
      amqp_queue_bind (run->conn, CHANNEL, amqp_cstring_bytes (name),
                       amqp_cstring_bytes ("amq.direct"), amqp_cstring_bytes (name),
                       amqp_empty_table);
      check_reply (run->conn, "queue.bind");
      amqp_maybe_release_buffers (run->conn);
    }
  timing_stop (run);
  for (i = 0; i < run->count; i++)
    {
      snprintf (name, sizeof name, "%s-%lu", run->queue, i);
      delete_queue (run, name);
      amqp_maybe_release_buffers (run->conn);
    }
  run->count *= 2;  /* a declare and a bind each */
}

int
main (int   argc,
      char *argv[])
{
  Run run = { 0 };
  const char *mode;

  if (argc != 7)
    {
      fprintf (stderr, "usage: %s publish|fill|consume|latency|ops|delete URI QUEUE COUNT SIZE DEPTH\n",
               argv[0]);
      return 2;
    }
  mode = argv[1];
  run.queue = argv[3];
  run.count = strtoul (argv[4], NULL, 10);
  run.size = strtoul (argv[5], NULL, 10);
  run.depth = strtoul (argv[6], NULL, 10);
  if (run.count == 0 || run.depth == 0)
    die ("arguments", "COUNT and DEPTH must be positive");
  perf_open (&run);
  connect_to (&run, argv[2]);

  if (strcmp (mode, "publish") == 0 || strcmp (mode, "fill") == 0)
    {
      int timed = strcmp (mode, "publish") == 0;

      declare (&run, run.queue, 0);
      publish (&run, timed);
      if (timed)
        delete_queue (&run, run.queue);
      print_result (&run, NULL);
    }
  else if (strcmp (mode, "consume") == 0)
    {
      consume (&run);
      /* Leave the consumer's channel: the queue is deleted on a fresh one,
       * so that nothing still in flight is redelivered to us. */
      amqp_channel_close (run.conn, CHANNEL, AMQP_REPLY_SUCCESS);
      amqp_channel_open (run.conn, CHANNEL);
      check_reply (run.conn, "channel.open");
      delete_queue (&run, run.queue);
      print_result (&run, NULL);
    }
  else if (strcmp (mode, "latency") == 0)
    latency (&run);
  else if (strcmp (mode, "ops") == 0)
    {
      ops (&run);
      print_result (&run, NULL);
    }
  else if (strcmp (mode, "delete") == 0)
    {
      delete_queue (&run, run.queue);
      print_result (&run, NULL);
    }
  else
    die ("mode", "unknown");

  disconnect (&run);
  return 0;
}
