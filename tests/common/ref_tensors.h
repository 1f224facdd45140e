/* ref_tensors.h - host tensors, seeded random data and error norms for the op tests.
 *
 * Header-only (static functions) so that each single-file test program can include it. Host
 * tensors here have no buffer: they are for the reference kernels (ecs_ref_compute), which only
 * read data. Tests free everything they make with th_free. */
#ifndef ECS_TEST_REF_TENSORS_H
#define ECS_TEST_REF_TENSORS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/op.h"

typedef struct th_rng {
  uint64_t s;
} th_rng;

static inline uint64_t th_next(th_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static inline float th_unif(th_rng *r, float lo, float hi) {
  return lo + (hi - lo) * (float)((th_next(r) >> 40) * (1.0 / 16777216.0));
}

static inline int th_int(th_rng *r, int n) {
  return (int)(th_next(r) % (uint64_t)n);
}

/* A plain host tensor of the given shape (nd taken from the number of sizes), zero-filled. */
static inline ecs_tensor *th_new(ecs_dtype type, int nd, int64_t a, int64_t b, int64_t c,
                                 int64_t d) {
  ecs_tensor *t = calloc(1, sizeof *t);
  int64_t ne[4] = {a, b, c, d};
  t->type = type;
  t->nd = nd;
  for (int i = 0; i < ECS_MAX_DIMS; i++)
    t->ne[i] = i < nd ? ne[i] : 1;
  t->nbytes = ecs_plain_nbytes(t);
  t->data = calloc(1, t->nbytes ? t->nbytes : 1);
  return t;
}

static inline ecs_tensor *th_like(const ecs_tensor *s, ecs_dtype type) {
  return th_new(type, s->nd, s->ne[0], s->ne[1], s->ne[2], s->ne[3]);
}

static inline void th_free(ecs_tensor *t) {
  if (!t) return;
  free(t->data);
  free(t);
}

static inline float *th_f(const ecs_tensor *t) {
  return (float *)t->data;
}

static inline void th_fill_unif(ecs_tensor *t, th_rng *r, float lo, float hi) {
  for (int64_t i = 0; i < ecs_nelements(t); i++)
    th_f(t)[i] = th_unif(r, lo, hi);
}

/* Distinct values spaced `gap` apart in random order, then centred: no two elements are closer
 * than gap, so max pooling's argmax and ReLU's kinks do not move under small perturbations. */
static inline void th_fill_spaced(ecs_tensor *t, th_rng *r, float gap) {
  int64_t n = ecs_nelements(t);
  float *p = th_f(t);
  for (int64_t i = 0; i < n; i++)
    p[i] = ((float)i - (float)n / 2.0f + 0.5f) * gap;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(th_next(r) % (uint64_t)(i + 1));
    float v = p[i];
    p[i] = p[j];
    p[j] = v;
  }
}

/* ||a - b|| / ||b|| over n floats, skipping positions where b is not finite (both must then
 * be equal); an all-zero b compares the absolute norm. */
static inline double th_rel_l2(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(b[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  if (num != num) return INFINITY;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
