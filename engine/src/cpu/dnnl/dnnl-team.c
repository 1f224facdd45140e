/* dnnl-team.c - how many threads each op of the "cpu" backend runs on.
 *
 * A backend of n_threads runs an op on all of them only where a team gains: every parallel
 * region costs a wake-up and a join of its threads, and oneDNN's kernels split their work
 * statically, so a region lasts as long as its slowest thread. On an idle machine that costs
 * tens of microseconds a region with passive waiting; when another process keeps the cores
 * busy, a thread that the scheduler puts behind the other process's holds up the whole team for
 * up to a scheduler slice, every region, and kernels with barriers inside (oneDNN's batch norm)
 * pay it at each barrier. Measured on a 2-core AVX-512 Xeon (tests/bench/contention.sh,
 * bench_engine train): the small network's training step took 11 ms on 2 threads and 16 ms on
 * one on an idle machine, but 100-300 ms on 2 threads and 15-35 ms on one while other processes
 * kept both cores busy.
 *
 * Two rules follow. By size (dn_team_of): a convolution under TEAM_CONV_FLOP of direct work or
 * any other op on fewer than TEAM_ELEMENTS elements takes about as long alone as its team needs
 * to meet, so it runs on one thread. TEAM_CONV_FLOP is about 10-20 us of one core's work: a
 * 1x1 convolution of 28 MFLOP on an 8x8 map (efficientnet_lite0's last blocks) ran at 85 GFLOP/s
 * alone and 172 on 2 threads (2-core AMD EPYC, AVX2), and with the limit lowered from 32 to 2
 * MFLOP lite0's 225-px forward went from 11.6 to 8.4 ms, the small network's inference and
 * training step unchanged (4.3 and 14.5 ms; bench_engine small, train). By load (dn_load_*): the
 * calling thread's run-queue delay (the time it was ready to run but waited for a core, the
 * kernel's schedstat) over the time the backend computed, measured over windows of LOAD_WINDOW_MS
 * of computing. Above LOAD_CONTENDED the cores are contended and the team of every op that lasts
 * less than a scheduler slice or so is halved (on 2 cores: such ops on one thread), for a number of
 * windows that doubles each time a trial with the larger team finds them still contended
 * (LOAD_HOLD_MIN to LOAD_HOLD_MAX); then the team is doubled again for a trial window. Ops of at
 * least TEAM_LONG_FLOP or TEAM_LONG_ELEMENTS keep their team under load: a thread held back for a
 * slice costs such an op a fraction of its time, and the team still has the cores' shares that one
 * thread would not (measured beside other processes' builds: oneDNN's 3x3 convolutions of 1.85
 * GFLOP took 10-15 ms on 2 threads, 12-24 ms halved). Where the kernel keeps no schedstat, only the
 * size rule applies.
 *
 * The team is part of every primitive's cache key (dnnl-backend.c), so a primitive always runs
 * with the team it was built for: oneDNN sizes some scratchpads and work splits by it. */
#include "dnnl-impl.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TEAM_CONV_FLOP     2e6
#define TEAM_ELEMENTS      ((int64_t)1 << 19)
#define TEAM_LONG_FLOP     1e9
#define TEAM_LONG_ELEMENTS ((int64_t)1 << 24)
#define LOAD_WINDOW_MS     5.0
#define LOAD_CONTENDED     0.10
#define LOAD_HOLD_MIN      4
#define LOAD_HOLD_MAX      128

int dn_team_alone(size_t bytes) {
  return bytes < sizeof(float) * (size_t)TEAM_ELEMENTS;
}

int dn_team_of(int n_threads, const ecs_op *op, int *lasting) {
  *lasting = 0;
  if (n_threads <= 1) return 1;
  if (op->type == ECS_OP_CONV2D || op->type == ECS_OP_CONV2D_BWD_DATA ||
      op->type == ECS_OP_CONV2D_BWD_WEIGHT) {
    int bwd_w = op->type == ECS_OP_CONV2D_BWD_WEIGHT;
    const ecs_tensor *w = bwd_w ? op->dst[0] : op->src[1];
    const ecs_tensor *y = op->type == ECS_OP_CONV2D ? op->dst[0] : op->src[bwd_w];
    if (!w || !y || w->nd != 4) return n_threads;
    double flop = 2.0 * (double)ecs_nelements(y) * (double)(w->ne[1] * w->ne[2] * w->ne[3]);
    *lasting = flop >= TEAM_LONG_FLOP;
    return flop < TEAM_CONV_FLOP ? 1 : n_threads;
  }
  int64_t n = 0;
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && ecs_nelements(op->src[i]) > n) n = ecs_nelements(op->src[i]);
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && ecs_nelements(op->dst[i]) > n) n = ecs_nelements(op->dst[i]);
  *lasting = n >= TEAM_LONG_ELEMENTS;
  return n < TEAM_ELEMENTS ? 1 : n_threads;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + 1e-6 * (double)ts.tv_nsec;
}

/* The calling thread's run-queue delay in ns (the second field of its schedstat); 0 with
 * *ok = 0 when the kernel does not report it. */
static uint64_t run_delay_ns(int *ok) {
  char buf[96];
  int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  unsigned long long run, delay;
  *ok = 0;
  if (n <= 0) return 0;
  buf[n] = 0;
  if (sscanf(buf, "%llu %llu", &run, &delay) != 2) return 0;
  *ok = 1;
  return (uint64_t)delay;
}

static void window_start(dn_load *l) {
  int ok;
  l->busy_ms = 0;
  l->tid = (long)syscall(SYS_gettid);
  l->delay0 = run_delay_ns(&ok);
  if (!ok) l->unavailable = 1;
}

int dn_load_team(dn_load *l, int team, int lasting) {
  if (!l->started) {
    l->started = 1;
    l->hold_next = LOAD_HOLD_MIN;
    window_start(l);
  }
  l->t0 = now_ms();
  return l->cap && team > l->cap && !lasting && !l->unavailable ? l->cap : team;
}

void dn_load_done(dn_load *l, int n_threads) {
  if (l->unavailable) return;
  l->busy_ms += now_ms() - l->t0;
  if (l->busy_ms < LOAD_WINDOW_MS) return;
  int ok;
  uint64_t delay = run_delay_ns(&ok);
  if (!ok) {
    l->unavailable = 1;
    return;
  }
  /* another thread computed on this backend since the window began: its delay says nothing */
  int same = l->tid == (long)syscall(SYS_gettid);
  double frac = same ? 1e-6 * (double)(delay - l->delay0) / l->busy_ms : 0;
  int contended = same && frac > LOAD_CONTENDED;
  int team = l->cap ? l->cap : n_threads, more = team * 2 >= n_threads ? 0 : team * 2;
  if (l->hold > 0) {
    if (--l->hold == 0) l->cap = more; /* a trial window with twice the team */
  } else if (contended && team > 1) {
    l->cap = team / 2;
    l->hold = l->hold_next;
    l->hold_next = l->hold_next * 2 > LOAD_HOLD_MAX ? LOAD_HOLD_MAX : l->hold_next * 2;
  } else if (!contended) {
    if (l->cap)
      l->cap = more;
    else
      l->hold_next = LOAD_HOLD_MIN;
  }
  window_start(l);
}
