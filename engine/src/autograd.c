/* autograd.c - the backward walk over an ecs_ctx's tape.
 *
 * The tape is in execution order, so walking it backwards visits every tensor after all of its
 * consumers: by the time a node is reached its output's gradient is complete. Each node turns
 * that gradient into its inputs' gradients with the matching *_BWD op (or SCALE, MUL, SLICE_C
 * for the simple ones) and hands them to accumulate():
 *
 *  - intermediates and tensors the ctx made get arena gradients. The first contribution is
 *    taken as is (it may be another tensor's gradient: ADD passes dy through), so later ones are
 *    added out of place, never into a tensor that might be shared;
 *  - parameters (leaves from an ecs_params store) accumulate in place into their persistent,
 *    plain .grad, which is why two passes sharing weights, or two backward calls before an
 *    optimiser step, simply add up.
 *
 * Frozen tensors and tensors that do not require a gradient get nothing, and a node whose output
 * received no gradient (a branch the loss does not depend on) costs nothing. */
#include "autograd-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ecs_tensor *like(ecs_ctx *ctx, const ecs_tensor *t) {
  return ctx_tensor(ctx, ECS_F32, t->nd, t->ne);
}

/* Runs a backward op whose dst[0] (and optional dst[1], dst[2]) were made with like(). */
static ecs_status run_bwd(ecs_ctx *ctx, ecs_op *op) {
  return ctx_exec(ctx, op, 0);
}

static ecs_status accumulate(ecs_ctx *ctx, ecs_tensor *t, ecs_tensor *g) {
  if (ctx->err.status != ECS_OK) return ctx->err.status;
  if (!ctx_needs_grad(t) || !g) return ECS_OK;
  if (t->node || ctx_owns(ctx, t)) {
    if (!t->grad) {
      t->grad = g;
      return ECS_OK;
    }
    ecs_tensor *a = t->grad, *b = g;
    if (a->layout != b->layout) {
      a = ctx_plain_copy(ctx, a);
      b = ctx_plain_copy(ctx, b);
      if (!a || !b) return ctx->err.status;
    }
    ecs_tensor *sum = like(ctx, t);
    if (!sum) return ctx->err.status;
    ecs_op op = {.type = ECS_OP_ADD, .src = {a, b}, .dst = {sum}, .p.scalar = {1, 1}};
    if (ctx_exec(ctx, &op, 0) != ECS_OK) return ctx->err.status;
    t->grad = sum;
    return ECS_OK;
  }
  if (!t->grad)
    return ctx_fail(ctx, ECS_ERR_INVALID,
                    "parameter '%s' trains but has no gradient tensor (ecs_params_alloc_grads)",
                    t->name);
  if (!ecs_same_shape(t->grad, t) || t->grad->layout != ECS_LAYOUT_PLAIN)
    return ctx_fail(ctx, ECS_ERR_INVALID, "the gradient of '%s' is not a plain tensor of its shape",
                    t->name);
  ecs_tensor *p = ctx_plain_copy(ctx, g);
  if (!p) return ctx->err.status;
  /* in place: element-wise, so every backend may alias dst and src0 */
  ecs_op op = {.type = ECS_OP_ADD, .src = {t->grad, p}, .dst = {t->grad}, .p.scalar = {1, 1}};
  return ctx_exec(ctx, &op, EXEC_NO_PREPARE);
}

/* dy scaled by a; dy itself when a == 1 */
static ecs_tensor *scaled(ecs_ctx *ctx, ecs_tensor *dy, float a) {
  if (a == 1.0f) return dy;
  ecs_tensor *g = like(ctx, dy);
  if (!g) return NULL;
  ecs_op op = {.type = ECS_OP_SCALE, .src = {dy}, .dst = {g}, .p.scalar = {a, 0}};
  return ctx_exec(ctx, &op, 0) == ECS_OK ? g : NULL;
}

/* A one-input backward op: dst[0] shaped like `as`. */
static ecs_status simple_bwd(ecs_ctx *ctx, const ecs_op *fwd, ecs_op_type type, ecs_tensor *s0,
                             ecs_tensor *s1, ecs_tensor *s2, ecs_tensor *in) {
  if (!ctx_needs_grad(in)) return ECS_OK;
  ecs_tensor *dx = like(ctx, in);
  if (!dx) return ctx->err.status;
  ecs_op op = {.type = type, .src = {s0, s1, s2}, .dst = {dx}, .p = fwd->p};
  if (run_bwd(ctx, &op) != ECS_OK) return ctx->err.status;
  return accumulate(ctx, in, dx);
}

/* 1/sqrt(running var + eps) for frozen batch norm. The running statistics of a frozen layer do
 * not change, and the vector is C floats, so one host round trip is simpler than an op. */
static ecs_tensor *frozen_invstd(ecs_ctx *ctx, const ecs_op *fwd) {
  const ecs_tensor *rv = fwd->src[4];
  int64_t c = rv->ne[0];
  float *h = malloc((size_t)c * sizeof *h);
  if (!h) {
    ctx_fail(ctx, ECS_ERR_NOMEM, "out of host memory");
    return NULL;
  }
  ecs_err e = {0};
  ecs_status st = ecs_backend_synchronize(ctx->be, &e);
  if (st == ECS_OK) st = ecs_tensor_get_bytes(rv, h, 0, (size_t)c * sizeof *h, &e);
  if (st != ECS_OK) {
    free(h);
    ctx_fail(ctx, e.status ? e.status : st, "%s", e.msg);
    return NULL;
  }
  for (int64_t i = 0; i < c; i++)
    h[i] = 1.0f / sqrtf(h[i] + fwd->p.bn.eps);
  ecs_tensor *t = ecs_from_host(ctx, ECS_F32, 1, &c, h);
  free(h);
  return t;
}

static ecs_status backprop(ecs_ctx *ctx, struct ecs_node *node) {
  const ecs_op *f = &node->op;
  ecs_tensor *y = f->dst[0], *dy = y->grad;
  ecs_tensor *x = f->src[0];
  switch (f->type) {
  case ECS_OP_COPY: return accumulate(ctx, x, dy);
  case ECS_OP_SCALE: return accumulate(ctx, x, scaled(ctx, dy, f->p.scalar.a));
  case ECS_OP_ADD:
    if (ctx_needs_grad(x) && accumulate(ctx, x, scaled(ctx, dy, f->p.scalar.a)) != ECS_OK)
      return ctx->err.status;
    if (ctx_needs_grad(f->src[1]))
      return accumulate(ctx, f->src[1], scaled(ctx, dy, f->p.scalar.b));
    return ECS_OK;
  case ECS_OP_MUL:
    if (simple_bwd(ctx, f, ECS_OP_MUL, dy, f->src[1], NULL, x) != ECS_OK) return ctx->err.status;
    return simple_bwd(ctx, f, ECS_OP_MUL, dy, x, NULL, f->src[1]);
  case ECS_OP_RELU: return simple_bwd(ctx, f, ECS_OP_RELU_BWD, x, dy, NULL, x);
  case ECS_OP_GAP: return simple_bwd(ctx, f, ECS_OP_GAP_BWD, dy, NULL, NULL, x);
  case ECS_OP_POOL2D: return simple_bwd(ctx, f, ECS_OP_POOL2D_BWD, x, dy, f->dst[1], x);
  case ECS_OP_DROPOUT: return simple_bwd(ctx, f, ECS_OP_DROPOUT_BWD, dy, f->dst[1], NULL, x);
  case ECS_OP_RESIZE_BILINEAR:
    return simple_bwd(ctx, f, ECS_OP_RESIZE_BILINEAR_BWD, dy, NULL, NULL, x);
  case ECS_OP_SOFTMAX: return simple_bwd(ctx, f, ECS_OP_SOFTMAX_BWD, y, dy, NULL, x);
  case ECS_OP_LOG_SOFTMAX: return simple_bwd(ctx, f, ECS_OP_LOG_SOFTMAX_BWD, y, dy, NULL, x);
  case ECS_OP_ML_SOFT_MARGIN:
    return simple_bwd(ctx, f, ECS_OP_ML_SOFT_MARGIN_BWD, x, f->src[1], dy, x);
  case ECS_OP_MASKED_CE: {
    if (!ctx_needs_grad(x)) return ECS_OK;
    ecs_tensor *dx = like(ctx, x);
    if (!dx) return ctx->err.status;
    ecs_op op = {
        .type = ECS_OP_MASKED_CE_BWD, .src = {x, f->src[1], f->src[2], dy}, .dst = {dx}, .p = f->p};
    if (run_bwd(ctx, &op) != ECS_OK) return ctx->err.status;
    return accumulate(ctx, x, dx);
  }
  case ECS_OP_CONCAT: {
    int off = 0;
    for (int i = 0; i < f->p.concat.n; i++) {
      ecs_tensor *in = f->src[i];
      if (ctx_needs_grad(in)) {
        ecs_tensor *dx = like(ctx, in);
        if (!dx) return ctx->err.status;
        ecs_op op = {.type = ECS_OP_SLICE_C, .src = {dy}, .dst = {dx}, .p.slice.offset = off};
        if (run_bwd(ctx, &op) != ECS_OK || accumulate(ctx, in, dx) != ECS_OK)
          return ctx->err.status;
      }
      off += (int)in->ne[1];
    }
    return ECS_OK;
  }
  case ECS_OP_CONV2D: {
    ecs_tensor *w = f->src[1], *b = f->src[2];
    if (f->p.conv.act != ECS_ACT_NONE) /* ecs_conv2d_act records conv and relu instead */
      return ctx_fail(ctx, ECS_ERR_UNSUPPORTED, "no backward for conv2d with a fused activation");
    if (simple_bwd(ctx, f, ECS_OP_CONV2D_BWD_DATA, dy, w, NULL, x) != ECS_OK)
      return ctx->err.status;
    if (!ctx_needs_grad(w) && !ctx_needs_grad(b)) return ECS_OK;
    ecs_tensor *dw = like(ctx, w), *db = ctx_needs_grad(b) ? like(ctx, b) : NULL;
    if (!dw || (ctx_needs_grad(b) && !db)) return ctx->err.status;
    ecs_op op = {.type = ECS_OP_CONV2D_BWD_WEIGHT, .src = {x, dy}, .dst = {dw, db}, .p = f->p};
    if (run_bwd(ctx, &op) != ECS_OK || accumulate(ctx, w, dw) != ECS_OK) return ctx->err.status;
    return accumulate(ctx, b, db);
  }
  case ECS_OP_BATCHNORM: {
    ecs_tensor *gamma = f->src[1], *beta = f->src[2];
    ecs_tensor *mean = f->dst[1], *invstd = f->dst[2];
    if (!f->p.bn.training) {
      mean = f->src[3];
      invstd = node->saved ? node->saved : (node->saved = frozen_invstd(ctx, f));
      if (!invstd) return ctx->err.status;
    }
    ecs_tensor *dx = like(ctx, x);
    ecs_tensor *dg = ctx_needs_grad(gamma) ? like(ctx, gamma) : NULL;
    ecs_tensor *dbt = ctx_needs_grad(beta) ? like(ctx, beta) : NULL;
    if (ctx->err.status != ECS_OK) return ctx->err.status;
    ecs_op op = {.type = ECS_OP_BATCHNORM_BWD,
                 .src = {x, dy, gamma, mean, invstd},
                 .dst = {dx, dg, dbt},
                 .p = f->p};
    if (run_bwd(ctx, &op) != ECS_OK) return ctx->err.status;
    if (accumulate(ctx, x, dx) != ECS_OK || accumulate(ctx, gamma, dg) != ECS_OK)
      return ctx->err.status;
    return accumulate(ctx, beta, dbt);
  }
  default: return ctx_fail(ctx, ECS_ERR_UNSUPPORTED, "no backward for %s", ecs_op_name(f->type));
  }
}

ecs_status ecs_backward(ecs_ctx *ctx, ecs_tensor *loss, float scale) {
  if (!ctx) return ECS_ERR_INVALID;
  if (ctx->err.status != ECS_OK) return ctx->err.status;
  if (!loss || loss->type != ECS_F32 || ecs_nelements(loss) != 1)
    return ctx_fail(ctx, ECS_ERR_INVALID, "backward: the loss must be one F32 element");
  if (!loss->node)
    return ctx_fail(ctx, ECS_ERR_INVALID,
                    "backward: the loss does not depend on anything that trains (gradients "
                    "disabled, or every parameter frozen)");
  /* gradients of intermediates belong to one walk */
  for (size_t i = 0; i < ctx->tape_len; i++)
    ctx->tape[i]->op.dst[0]->grad = NULL;
  ecs_tensor *seed = ctx_tensor(ctx, ECS_F32, loss->nd, loss->ne);
  if (!seed) return ctx->err.status;
  ecs_op fill = {.type = ECS_OP_FILL, .dst = {seed}, .p.scalar.a = scale};
  if (ctx_exec(ctx, &fill, 0) != ECS_OK) return ctx->err.status;
  loss->grad = seed;
  for (size_t i = ctx->tape_len; i-- > 0;) {
    struct ecs_node *node = ctx->tape[i];
    if (!node->op.dst[0]->grad) continue;
    if (backprop(ctx, node) != ECS_OK) return ctx->err.status;
  }
  return ECS_OK;
}
