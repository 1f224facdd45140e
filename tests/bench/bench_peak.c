/* bench_peak.c - the CPU's fp32 FMA peak, measured: the yardstick for "fraction of peak".
 *
 * Each thread runs independent chains of 256-bit FMAs (enough chains to cover the FMA latency
 * times the number of FMA pipes), so the loop is bound by FMA throughput alone. Compiled with
 * -mavx2 -mfma. The machine may be shared, so besides the wall-clock rate it reports the rate
 * per second of CPU time the threads actually got, times the thread count: the peak the cores
 * deliver when they are ours ("peak_gflops", the denominator of every fraction the benchmark
 * prints). Prints "peak_gflops=<v> wall_gflops=<v> threads=<n>". Usage: bench_peak [threads].
 *
 * `bench_peak THREADS --busy` measures nothing: its threads run the same loop until the process
 * is killed, the competing load of tests/bench/contention.sh (one process busy on every core). */
#include <immintrin.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CHAINS 12
#define ITERS  20000000L

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float g_sink;

typedef struct job {
  long iters;
  double cpu_s;
} job;

static double thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The same loop with 512-bit FMAs, for CPUs whose oneDNN kernels use AVX-512: the peak must be
 * that of the widest vectors the convolutions use. */
__attribute__((target("avx512f"))) static void spin512(job *j) {
  __m512 acc[CHAINS];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm512_set1_ps((float)i);
  double c0 = thread_cpu();
  for (long it = 0; it < j->iters; it++)
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  j->cpu_s = thread_cpu() - c0;
  float s = 0;
  for (int i = 0; i < CHAINS; i++)
    s += _mm512_reduce_add_ps(acc[i]);
  g_sink = s;
}

static int g_width = 8; /* floats per FMA: 8 (AVX2) or 16 (AVX-512) */

static void *spin(void *arg) {
  job *j = arg;
  if (g_width == 16) {
    spin512(j);
    return NULL;
  }
  long iters = j->iters;
  double c0 = thread_cpu();
  __m256 acc[CHAINS];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm256_set1_ps((float)i);
  /* fully unrolled, so that the chains live in registers: a loop over the array would go
   * through memory and measure store-to-load latency instead of FMA throughput */
  for (long it = 0; it < iters; it++)
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float s = 0, out[8];
  for (int i = 0; i < CHAINS; i++) {
    _mm256_storeu_ps(out, acc[i]);
    s += out[0];
  }
  g_sink = s;
  j->cpu_s = thread_cpu() - c0;
  return NULL;
}

int main(int argc, char **argv) {
  int nt = argc > 1 ? atoi(argv[1]) : 2;
  int busy = argc > 2 && strcmp(argv[2], "--busy") == 0;
  if (nt < 1 || nt > 256 || (argc > 2 && !busy) || argc > 3) {
    fprintf(stderr, "usage: bench_peak [threads] [--busy]\n");
    return 2;
  }
  pthread_t th[256];
  job jobs[256];
  double best = 0, best_cpu = 0;
  __builtin_cpu_init();
  /* the vectors oneDNN's kernels use: 512-bit where the CPU has them, unless ONEDNN_MAX_CPU_ISA
   * holds oneDNN below AVX-512 (then the peak is that of the 256-bit FMAs it runs) */
  const char *isa = getenv("ONEDNN_MAX_CPU_ISA");
  int capped = isa && *isa && strncasecmp(isa, "AVX512", 6) != 0 && strcasecmp(isa, "ALL") != 0;
  if (__builtin_cpu_supports("avx512f") && !capped) g_width = 16;
  double per_thread = (double)ITERS * CHAINS * g_width * 2;
  if (busy) {
    for (int i = 0; i < nt; i++) {
      jobs[i].iters = LONG_MAX;
      pthread_create(&th[i], NULL, spin, &jobs[i]);
    }
    for (int i = 0; i < nt; i++)
      pthread_join(th[i], NULL);
    return 0;
  }
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (int i = 0; i < nt; i++) {
      jobs[i].iters = ITERS;
      pthread_create(&th[i], NULL, spin, &jobs[i]);
    }
    for (int i = 0; i < nt; i++)
      pthread_join(th[i], NULL);
    double dt = now() - t0;
    double gflops = nt * per_thread / dt * 1e-9, cpu_rate = 0;
    for (int i = 0; i < nt; i++)
      cpu_rate += per_thread / jobs[i].cpu_s * 1e-9;
    if (gflops > best) best = gflops;
    if (cpu_rate > best_cpu) best_cpu = cpu_rate;
  }
  printf("peak_gflops=%.1f wall_gflops=%.1f threads=%d isa=%s\n", best_cpu > best ? best_cpu : best,
         best, nt, g_width == 16 ? "avx512" : "avx2");
  return 0;
}
