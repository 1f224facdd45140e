/* ref.c - dispatch for the reference kernels, and the element-wise ones.
 *
 * Every kernel reads and writes plain host tensors. Other kernel families live in ref-*.c
 * beside this file and are declared in ref-impl.h. */
#include "ref.h"

#include <math.h>
#include <string.h>

static int all_plain(const ecs_op *op) {
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && op->src[i]->layout != ECS_LAYOUT_PLAIN) return 0;
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && op->dst[i]->layout != ECS_LAYOUT_PLAIN) return 0;
  return 1;
}

static ecs_status need_same(const ecs_tensor *a, const ecs_tensor *b, const ecs_op *op,
                            ecs_err *err) {
  if (!a || !b) return ecs_err_set(err, ECS_ERR_INVALID, "%s: missing tensor", ecs_op_name(op->type));
  if (!ecs_same_shape(a, b) || a->type != b->type) {
    char sa[64], sb[64];
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: shapes %s %s and %s %s differ",
                       ecs_op_name(op->type), ecs_dtype_name(a->type), ecs_shape_str(a, sa, sizeof sa),
                       ecs_dtype_name(b->type), ecs_shape_str(b, sb, sizeof sb));
  }
  return ECS_OK;
}

int ecs_ref_supports(const ecs_op *op) {
  switch (op->type) {
  case ECS_OP_COPY:
  case ECS_OP_FILL:
  case ECS_OP_SCALE:
  case ECS_OP_ADD:
  case ECS_OP_MUL:
  case ECS_OP_RELU:
  case ECS_OP_RELU_BWD: return all_plain(op);
  default: return 0;
  }
}

ecs_status ecs_ref_compute(const ecs_op *op, int n_threads, ecs_err *err) {
  (void)n_threads;
  if (!all_plain(op))
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "%s: reference kernels need plain layouts",
                       ecs_op_name(op->type));
  ecs_tensor *d = op->dst[0];
  ecs_status st;
  switch (op->type) {
  case ECS_OP_COPY:
    if ((st = need_same(op->src[0], d, op, err)) != ECS_OK) return st;
    memcpy(d->data, op->src[0]->data, ecs_plain_nbytes(d));
    return ECS_OK;
  case ECS_OP_FILL: {
    if (!d || d->type != ECS_F32) return ecs_err_set(err, ECS_ERR_INVALID, "fill: need an F32 dst");
    float *y = d->data;
    for (int64_t i = 0, n = ecs_nelements(d); i < n; i++) y[i] = op->p.scalar.a;
    return ECS_OK;
  }
  case ECS_OP_SCALE: {
    if ((st = need_same(op->src[0], d, op, err)) != ECS_OK) return st;
    const float *x = op->src[0]->data;
    float *y = d->data;
    for (int64_t i = 0, n = ecs_nelements(d); i < n; i++) y[i] = op->p.scalar.a * x[i] + op->p.scalar.b;
    return ECS_OK;
  }
  case ECS_OP_ADD:
  case ECS_OP_MUL: {
    if ((st = need_same(op->src[0], d, op, err)) != ECS_OK) return st;
    if ((st = need_same(op->src[1], d, op, err)) != ECS_OK) return st;
    const float *a = op->src[0]->data, *b = op->src[1]->data;
    float *y = d->data;
    int64_t n = ecs_nelements(d);
    if (op->type == ECS_OP_ADD)
      for (int64_t i = 0; i < n; i++) y[i] = op->p.scalar.a * a[i] + op->p.scalar.b * b[i];
    else
      for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
    return ECS_OK;
  }
  case ECS_OP_RELU: {
    if ((st = need_same(op->src[0], d, op, err)) != ECS_OK) return st;
    const float *x = op->src[0]->data;
    float *y = d->data;
    float clip = op->p.act.clip;
    for (int64_t i = 0, n = ecs_nelements(d); i < n; i++) {
      float v = x[i] > 0 ? x[i] : 0;
      y[i] = (clip > 0 && v > clip) ? clip : v;
    }
    return ECS_OK;
  }
  case ECS_OP_RELU_BWD: {
    if ((st = need_same(op->src[0], d, op, err)) != ECS_OK) return st;
    if ((st = need_same(op->src[1], d, op, err)) != ECS_OK) return st;
    const float *x = op->src[0]->data, *dy = op->src[1]->data;
    float *dx = d->data;
    float clip = op->p.act.clip;
    for (int64_t i = 0, n = ecs_nelements(d); i < n; i++)
      dx[i] = (x[i] > 0 && !(clip > 0 && x[i] >= clip)) ? dy[i] : 0;
    return ECS_OK;
  }
  default:
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "%s: no reference kernel", ecs_op_name(op->type));
  }
}
