/* ref-misc.c - data movement along channels (concat, slice) and dropout.
 *
 * Concat and slice copy whole (C x inner) blocks per batch item, so any tensor of two or more
 * dimensions works with C = ne[1]. Dropout draws its mask from ecs_dropout_keep, the
 * counter-based hash every backend shares, so the mask depends on (seed, element index) only
 * and not on threads or on the device. */
#include "ref-impl.h"

#include <string.h>

static int64_t inner_size(const ecs_tensor *t) {
  int64_t s = 1;
  for (int i = 2; i < t->nd; i++)
    s *= t->ne[i];
  return s;
}

ecs_status ecs_ref_concat(const ecs_op *op, int nt, ecs_err *err) {
  (void)nt, (void)err;
  ecs_tensor *y = op->dst[0];
  size_t es = ecs_dtype_size(y->type);
  int64_t inner = inner_size(y), C = y->ne[1];
  int64_t c0 = 0;
  for (int k = 0; k < op->p.concat.n; k++) {
    const ecs_tensor *x = op->src[k];
    int64_t ck = x->ne[1];
    for (int64_t n = 0; n < y->ne[0]; n++)
      memcpy((char *)y->data + (size_t)((n * C + c0) * inner) * es,
             (const char *)x->data + (size_t)(n * ck * inner) * es, (size_t)(ck * inner) * es);
    c0 += ck;
  }
  return ECS_OK;
}

ecs_status ecs_ref_slice_c(const ecs_op *op, int nt, ecs_err *err) {
  (void)nt, (void)err;
  const ecs_tensor *x = op->src[0];
  ecs_tensor *y = op->dst[0];
  size_t es = ecs_dtype_size(y->type);
  int64_t inner = inner_size(y), C = x->ne[1], ck = y->ne[1], off = op->p.slice.offset;
  for (int64_t n = 0; n < y->ne[0]; n++)
    memcpy((char *)y->data + (size_t)(n * ck * inner) * es,
           (const char *)x->data + (size_t)((n * C + off) * inner) * es, (size_t)(ck * inner) * es);
  return ECS_OK;
}

static float keep_scale(float p) {
  return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}

ecs_status ecs_ref_dropout(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const float *x = op->src[0]->data;
  float *y = op->dst[0]->data;
  uint8_t *mask = op->dst[1] ? op->dst[1]->data : NULL;
  float p = op->p.dropout.p, s = keep_scale(p);
  uint64_t seed = op->p.dropout.seed;
  int64_t n = ecs_nelements(op->src[0]);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    int k = ecs_dropout_keep(seed, (uint64_t)i, p);
    y[i] = k ? x[i] * s : 0.0f;
    if (mask) mask[i] = (uint8_t)k;
  }
  return ECS_OK;
}

ecs_status ecs_ref_dropout_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const float *dy = op->src[0]->data;
  const uint8_t *mask = op->src[1]->data;
  float *dx = op->dst[0]->data;
  float s = keep_scale(op->p.dropout.p);
  int64_t n = ecs_nelements(op->src[0]);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; i++)
    dx[i] = mask[i] ? dy[i] * s : 0.0f;
  return ECS_OK;
}
