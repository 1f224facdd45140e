/* check_util.h - what the plain-C GPU check programs of tests/gpu/ share: the normalised error
 * of design.md's testing conventions and a monotonic clock. Header-only (static inline), since
 * CMake builds each C file there as a program of its own. */
#ifndef ECS_CHECK_UTIL_H
#define ECS_CHECK_UTIL_H

#include <math.h>
#include <stdint.h>
#include <time.h>

/* ||a - b|| / ||b|| over n floats, in double; ||a - b|| itself when b is all zeros. Entries
 * that are the same infinity on both sides (masked log-probabilities) are skipped. NaN
 * anywhere gives NaN, which fails every bound. */
static inline double ecs_rel_l2(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isinf(b[i]) && a[i] == b[i]) continue;
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  if (den == 0) return sqrt(num);
  return sqrt(num / den);
}

/* seconds on a monotonic clock */
static inline double ecs_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
