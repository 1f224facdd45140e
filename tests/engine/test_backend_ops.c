/* test_backend_ops.c - every op on every device against the reference kernels.
 *
 * After ggml's tests/test-backend-ops.cpp, in C. For each registered device other than
 * "cpu-ref" and each op x a list of random cases, the op runs on that device (inputs uploaded
 * with ecs_tensor_set_bytes into the device's own buffer type, outputs laid out by
 * ecs_backend_prepare, read back after an ECS_OP_COPY to a plain tensor when the backend chose a
 * private layout) and on cpu-ref with the same inputs; outputs, and inputs an op updates in
 * place (batch norm's running statistics), are compared by relative L2 error: 1e-5 for
 * element-wise ops, 1e-4 for convolution-type ops with long sums. Each device gets a table of
 * passed / failed / not supported per op. A GPU device that does not support an op the reference
 * does is a failure; the "cpu" device falls back op by op, so there it is only reported.
 *
 * Run as a program with `perf [op]`, it times each op per device on larger shapes instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cpu/ref.h"
#include "ecs/backend.h"
#include "ref_tensors.h"

#define MAX_T 12 /* tensors per case: srcs, dsts and helpers */

/* A case: an op on host tensors (th_new), dst shapes set, plus the host tensors to free. */
typedef struct bcase {
  ecs_op op;
  char desc[160];
  double tol;
  ecs_tensor *owned[MAX_T];
  int n_owned;
} bcase;

static ecs_tensor *own(bcase *c, ecs_tensor *t) {
  if (t && c->n_owned < MAX_T) c->owned[c->n_owned++] = t;
  return t;
}

static void bcase_free(bcase *c) {
  for (int i = 0; i < c->n_owned; i++)
    th_free(c->owned[i]);
  c->n_owned = 0;
}

static ecs_tensor *rnd(bcase *c, th_rng *r, int nd, int64_t a, int64_t b, int64_t d, int64_t e) {
  ecs_tensor *t = own(c, th_new(ECS_F32, nd, a, b, d, e));
  th_fill_unif(t, r, -1, 1);
  return t;
}

static ecs_tensor *out(bcase *c, ecs_dtype type, int nd, int64_t a, int64_t b, int64_t d,
                       int64_t e) {
  return own(c, th_new(type, nd, a, b, d, e));
}

static void host_run(ecs_op *op) {
  ecs_err err = {0};
  if (ecs_ref_compute(op, 2, &err) != ECS_OK) fail_msg("preparing a case: %s", err.msg);
}

/* ---- case generators: each fills c for (op type, k-th draw); `big` sizes them for perf ---- */

static int pick(th_rng *r, int lo, int hi) {
  return lo + th_int(r, hi - lo + 1);
}

static void gen_conv(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  int g = big ? 1 : (int[]){1, 1, 2, 3}[th_int(r, 4)], dw = !big && th_int(r, 4) == 0;
  int cg = big ? 64 : pick(r, 1, 3), n = big ? 2 : pick(r, 1, 2), C = dw ? 3 : cg * g;
  int O = dw ? 3 : (big ? 64 : g * pick(r, 1, 3)), h = big ? 56 : pick(r, 5, 11),
      w = big ? 56 : pick(r, 5, 11);
  if (dw) g = 3;
  int kh = big ? 3 : pick(r, 1, 3), kw = big ? 3 : pick(r, 1, 3);
  int sh = big ? 1 : pick(r, 1, 2), sw = big ? 1 : pick(r, 1, 2), dh = big ? 1 : pick(r, 1, 2),
      dw_ = big ? 1 : pick(r, 1, 2);
  int ph = big ? 1 : pick(r, 0, 2), pw = big ? 1 : pick(r, 0, 2), bias = big || th_int(r, 2);
  int64_t oh = ecs_conv_out_size(h, kh, sh, ph, dh), ow = ecs_conv_out_size(w, kw, sw, pw, dw_);
  /* every other forward with the ReLU fused (drawing nothing: the shapes stay as they were) */
  ecs_act act = t == ECS_OP_CONV2D && k % 2 ? ECS_ACT_RELU : ECS_ACT_NONE;
  c->op.p.conv = (typeof(c->op.p.conv)){{sh, sw}, {ph, pw}, {dh, dw_}, g, act};
  c->tol = 1e-4;
  snprintf(c->desc, sizeof c->desc, "x[%d,%d,%d,%d] w[%d,%d,%d,%d] s%d,%d p%d,%d d%d,%d g%d%s%s", n,
           C, h, w, O, C / g, kh, kw, sh, sw, ph, pw, dh, dw_, g, bias ? " bias" : "",
           act ? " relu" : "");
  ecs_tensor *x = rnd(c, r, 4, n, C, h, w), *wt = rnd(c, r, 4, O, C / g, kh, kw);
  ecs_tensor *dy = rnd(c, r, 4, n, O, oh, ow);
  if (t == ECS_OP_CONV2D) {
    c->op.src[0] = x, c->op.src[1] = wt, c->op.src[2] = bias ? rnd(c, r, 1, O, 1, 1, 1) : NULL;
    c->op.dst[0] = out(c, ECS_F32, 4, n, O, oh, ow);
  } else if (t == ECS_OP_CONV2D_BWD_DATA) {
    c->op.src[0] = dy, c->op.src[1] = wt, c->op.dst[0] = out(c, ECS_F32, 4, n, C, h, w);
  } else {
    c->op.src[0] = x, c->op.src[1] = dy, c->op.dst[0] = out(c, ECS_F32, 4, O, C / g, kh, kw);
    c->op.dst[1] = bias ? out(c, ECS_F32, 1, O, 1, 1, 1) : NULL;
  }
}

static void gen_bn(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  int n = big ? 8 : pick(r, 2, 3), C = big ? 64 : pick(r, 1, 5), h = big ? 56 : pick(r, 1, 7),
      w = big ? 56 : pick(r, 1, 7);
  int training = big || k % 2 == 0;
  c->op.p.bn = (typeof(c->op.p.bn)){1e-5f, 0.1f, training};
  c->tol = 1e-4;
  snprintf(c->desc, sizeof c->desc, "x[%d,%d,%d,%d] %s", n, C, h, w,
           training ? "training" : "frozen");
  ecs_tensor *x = rnd(c, r, 4, n, C, h, w), *g = rnd(c, r, 1, C, 1, 1, 1);
  th_fill_unif(x, r, -2, 3);
  if (t == ECS_OP_BATCHNORM) {
    ecs_tensor *rv = rnd(c, r, 1, C, 1, 1, 1);
    th_fill_unif(rv, r, 0.5f, 2);
    c->op.src[0] = x, c->op.src[1] = g, c->op.src[2] = rnd(c, r, 1, C, 1, 1, 1);
    c->op.src[3] = rnd(c, r, 1, C, 1, 1, 1), c->op.src[4] = rv;
    c->op.dst[0] = out(c, ECS_F32, 4, n, C, h, w);
    if (training)
      c->op.dst[1] = out(c, ECS_F32, 1, C, 1, 1, 1), c->op.dst[2] = out(c, ECS_F32, 1, C, 1, 1, 1);
    return;
  }
  /* the backward's statistics: the batch's (from a training forward) or running ones */
  ecs_tensor *y = th_like(x, ECS_F32), *m = out(c, ECS_F32, 1, C, 1, 1, 1),
             *is = out(c, ECS_F32, 1, C, 1, 1, 1);
  ecs_op f = {
      .type = ECS_OP_BATCHNORM, .src = {x, g, g}, .dst = {y, m, is}, .p.bn = {1e-5f, 0.1f, 1}};
  host_run(&f);
  th_free(y);
  c->op.src[0] = x, c->op.src[1] = rnd(c, r, 4, n, C, h, w), c->op.src[2] = g, c->op.src[3] = m,
  c->op.src[4] = is;
  c->op.dst[0] = out(c, ECS_F32, 4, n, C, h, w);
  c->op.dst[1] = out(c, ECS_F32, 1, C, 1, 1, 1),
  c->op.dst[2] = k % 3 ? out(c, ECS_F32, 1, C, 1, 1, 1) : NULL;
}

static void gen_pool(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  int kind = k % 2 ? ECS_POOL_AVG : ECS_POOL_MAX;
  int n = big ? 8 : pick(r, 1, 2), C = big ? 64 : pick(r, 1, 4), h = big ? 112 : pick(r, 4, 11),
      w = big ? 112 : pick(r, 4, 11);
  int kh = big ? 3 : pick(r, 1, 3), kw = big ? 3 : pick(r, 1, 3), sh = big ? 2 : pick(r, 1, 3),
      sw = big ? 2 : pick(r, 1, 3);
  int ph = big ? 1 : pick(r, 0, kh / 2), pw = big ? 1 : pick(r, 0, kw / 2),
      ceil = big || th_int(r, 2), cip = th_int(r, 2);
  int64_t oh = ecs_pool_out_size(h, kh, sh, ph, ceil), ow = ecs_pool_out_size(w, kw, sw, pw, ceil);
  c->op.p.pool = (typeof(c->op.p.pool)){kind, {kh, kw}, {sh, sw}, {ph, pw}, ceil, cip};
  c->tol = 1e-5;
  snprintf(c->desc, sizeof c->desc, "%s x[%d,%d,%d,%d] k%d,%d s%d,%d p%d,%d%s%s",
           kind ? "avg" : "max", n, C, h, w, kh, kw, sh, sw, ph, pw, ceil ? " ceil" : "",
           cip && kind ? " count_pad" : "");
  ecs_tensor *x = own(c, th_new(ECS_F32, 4, n, C, h, w));
  th_fill_spaced(x, r, 1e-3f); /* distinct values: every backend picks the same argmax */
  c->op.src[0] = x;
  if (t == ECS_OP_POOL2D) {
    c->op.dst[0] = out(c, ECS_F32, 4, n, C, oh, ow);
  } else {
    c->op.src[1] = rnd(c, r, 4, n, C, oh, ow);
    c->op.dst[0] = out(c, ECS_F32, 4, n, C, h, w);
  }
}

static void gen_resize(bcase *c, ecs_op_type t, th_rng *r, int big) {
  int n = big ? 4 : pick(r, 1, 2), C = big ? 21 : pick(r, 1, 3);
  int h = big ? 40 : pick(r, 2, 9), w = big ? 40 : pick(r, 2, 9), oh = big ? 320 : pick(r, 1, 17),
      ow = big ? 320 : pick(r, 1, 17);
  c->tol = 1e-5;
  snprintf(c->desc, sizeof c->desc, "[%d,%d,%d,%d] -> %dx%d", n, C, h, w, oh, ow);
  if (t == ECS_OP_RESIZE_BILINEAR) {
    c->op.src[0] = rnd(c, r, 4, n, C, h, w), c->op.dst[0] = out(c, ECS_F32, 4, n, C, oh, ow);
  } else {
    c->op.src[0] = rnd(c, r, 4, n, C, oh, ow), c->op.dst[0] = out(c, ECS_F32, 4, n, C, h, w);
  }
}

static ecs_tensor *class_mask(bcase *c, th_rng *r, int64_t n, int64_t C) {
  ecs_tensor *m = out(c, ECS_F32, 2, n, C, 1, 1);
  for (int64_t i = 0; i < n * C; i++)
    th_f(m)[i] = (i % C == 0 || th_int(r, 3)) ? 1.0f : 0.0f;
  return m;
}

static void gen_softmax(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  int n = big ? 8 : pick(r, 1, 3), C = big ? 21 : pick(r, 2, 6), h = big ? 64 : pick(r, 1, 5),
      w = big ? 64 : pick(r, 1, 5);
  int nd = k % 3 == 2 ? 2 : 4, masked = k % 2;
  int logp = t == ECS_OP_LOG_SOFTMAX || t == ECS_OP_LOG_SOFTMAX_BWD;
  c->tol = 1e-5;
  if (nd == 4)
    snprintf(c->desc, sizeof c->desc, "x[%d,%d,%d,%d]%s", n, C, h, w, masked ? " masked" : "");
  else
    snprintf(c->desc, sizeof c->desc, "x[%d,%d]%s", n, C, masked ? " masked" : "");
  ecs_tensor *x = nd == 4 ? rnd(c, r, 4, n, C, h, w) : rnd(c, r, 2, n, C, 1, 1);
  th_fill_unif(x, r, -4, 4);
  ecs_tensor *m = masked ? class_mask(c, r, n, C) : NULL;
  if (t == ECS_OP_SOFTMAX || t == ECS_OP_LOG_SOFTMAX) {
    c->op.src[0] = x, c->op.src[1] = m,
    c->op.dst[0] = out(c, ECS_F32, x->nd, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
    return;
  }
  ecs_tensor *y = out(c, ECS_F32, x->nd, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  ecs_op f = {.type = logp ? ECS_OP_LOG_SOFTMAX : ECS_OP_SOFTMAX, .src = {x, m}, .dst = {y}};
  host_run(&f);
  c->op.src[0] = y, c->op.src[1] = rnd(c, r, x->nd, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  c->op.dst[0] = out(c, ECS_F32, x->nd, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
}

static void gen_losses(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  c->tol = 1e-5;
  if (t == ECS_OP_ML_SOFT_MARGIN || t == ECS_OP_ML_SOFT_MARGIN_BWD) {
    int n = big ? 64 : pick(r, 1, 4), K = big ? 20 : pick(r, 1, 21);
    snprintf(c->desc, sizeof c->desc, "logits[%d,%d]", n, K);
    ecs_tensor *x = rnd(c, r, 2, n, K, 1, 1), *tg = out(c, ECS_F32, 2, n, K, 1, 1);
    th_fill_unif(x, r, -5, 5);
    for (int i = 0; i < n * K; i++)
      th_f(tg)[i] = (float)th_int(r, 2);
    c->op.src[0] = x, c->op.src[1] = tg;
    if (t == ECS_OP_ML_SOFT_MARGIN_BWD) c->op.src[2] = rnd(c, r, 1, 1, 1, 1, 1);
    c->op.dst[0] = t == ECS_OP_ML_SOFT_MARGIN ? out(c, ECS_F32, 1, 1, 1, 1, 1)
                                              : out(c, ECS_F32, 2, n, K, 1, 1);
    return;
  }
  int n = big ? 8 : pick(r, 1, 3), C = big ? 21 : pick(r, 2, 6), h = big ? 64 : pick(r, 1, 6),
      w = big ? 64 : pick(r, 1, 6);
  int masked = k % 2;
  snprintf(c->desc, sizeof c->desc, "logits[%d,%d,%d,%d]%s", n, C, h, w, masked ? " masked" : "");
  ecs_tensor *x = rnd(c, r, 4, n, C, h, w), *lab = out(c, ECS_I32, 3, n, h, w, 1);
  th_fill_unif(x, r, -4, 4);
  ecs_tensor *m = masked ? class_mask(c, r, n, C) : NULL;
  int32_t *lp = lab->data;
  for (int i = 0; i < n * h * w; i++) {
    int l = th_int(r, C + 1);
    if (l == C || (m && th_f(m)[(i / (h * w)) * C + l] == 0)) l = th_int(r, 4) ? 0 : 255;
    lp[i] = l;
  }
  c->op.p.ce.ignore_index = 255;
  c->op.src[0] = x, c->op.src[1] = lab, c->op.src[2] = m;
  if (t == ECS_OP_MASKED_CE) {
    c->op.dst[0] = out(c, ECS_F32, 1, 1, 1, 1, 1), c->op.dst[1] = out(c, ECS_F32, 1, 1, 1, 1, 1);
  } else {
    c->op.src[3] = rnd(c, r, 1, 1, 1, 1, 1), c->op.dst[0] = out(c, ECS_F32, 4, n, C, h, w);
  }
}

/* element-wise ops, channel movement, GAP, dropout, max-min norm and blur */
static void gen_simple(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  int n = big ? 8 : pick(r, 1, 3), C = big ? 64 : pick(r, 1, 5), h = big ? 56 : pick(r, 1, 9),
      w = big ? 56 : pick(r, 1, 9);
  c->tol = 1e-5;
  snprintf(c->desc, sizeof c->desc, "[%d,%d,%d,%d]", n, C, h, w);
  ecs_tensor *x = rnd(c, r, 4, n, C, h, w);
  ecs_tensor *y = out(c, ECS_F32, 4, n, C, h, w);
  c->op.src[0] = x, c->op.dst[0] = y;
  switch (t) {
  case ECS_OP_FILL: c->op.src[0] = NULL, c->op.p.scalar.a = th_unif(r, -2, 2); break;
  case ECS_OP_SCALE:
    c->op.p.scalar = (typeof(c->op.p.scalar)){th_unif(r, -2, 2), th_unif(r, -2, 2)};
    break;
  case ECS_OP_ADD:
    c->op.p.scalar = (typeof(c->op.p.scalar)){th_unif(r, -2, 2), th_unif(r, -2, 2)};
    c->op.src[1] = rnd(c, r, 4, n, C, h, w);
    break;
  case ECS_OP_MUL: c->op.src[1] = rnd(c, r, 4, n, C, h, w); break;
  case ECS_OP_RELU:
  case ECS_OP_RELU_BWD:
    th_fill_spaced(x, r, 0.01f * (float)(k + 1)); /* crosses both kinks of ReLU6 */
    c->op.p.act.clip = k % 2 ? 6.0f : 0.0f;
    if (t == ECS_OP_RELU_BWD) c->op.src[1] = rnd(c, r, 4, n, C, h, w);
    break;
  case ECS_OP_GAP: c->op.dst[0] = out(c, ECS_F32, 2, n, C, 1, 1); break;
  case ECS_OP_GAP_BWD: c->op.src[0] = rnd(c, r, 2, n, C, 1, 1); break;
  case ECS_OP_CONCAT: {
    int cs[3] = {C, pick(r, 1, 3), pick(r, 1, 3)}, nin = big ? 2 : pick(r, 1, 3), tot = 0;
    for (int i = 0; i < nin; i++)
      c->op.src[i] = i ? rnd(c, r, 4, n, cs[i], h, w) : x, tot += cs[i];
    c->op.p.concat.n = nin, c->op.dst[0] = out(c, ECS_F32, 4, n, tot, h, w);
    break;
  }
  case ECS_OP_SLICE_C: {
    int len = pick(r, 1, C), off = pick(r, 0, C - len);
    c->op.p.slice.offset = off, c->op.dst[0] = out(c, ECS_F32, 4, n, len, h, w);
    break;
  }
  case ECS_OP_DROPOUT:
  case ECS_OP_DROPOUT_BWD:
    c->op.p.dropout.p = (float[]){0.5f, 0.1f, 0.9f, 0.0f}[k % 4], c->op.p.dropout.seed = th_next(r);
    if (t == ECS_OP_DROPOUT) {
      c->op.dst[1] = out(c, ECS_U8, 4, n, C, h, w);
    } else {
      ecs_tensor *m = out(c, ECS_U8, 4, n, C, h, w);
      for (int64_t i = 0; i < ecs_nelements(m); i++)
        ((uint8_t *)m->data)[i] = (uint8_t)th_int(r, 2);
      c->op.src[1] = m;
    }
    break;
  case ECS_OP_MAXMIN_NORM: c->op.p.norm.eps = 1e-5f; break;
  case ECS_OP_GAUSS_BLUR:
    c->op.p.blur.ksize = big ? 41 : 2 * pick(r, 0, 4) + 1,
    c->op.p.blur.sigma = th_unif(r, 0.3f, 3.0f);
    break;
  default: break;
  }
}

static void gen_case(bcase *c, ecs_op_type t, th_rng *r, int big, int k) {
  memset(c, 0, sizeof *c);
  c->op.type = t;
  switch (t) {
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT: gen_conv(c, t, r, big, k); break;
  case ECS_OP_BATCHNORM:
  case ECS_OP_BATCHNORM_BWD: gen_bn(c, t, r, big, k); break;
  case ECS_OP_POOL2D:
  case ECS_OP_POOL2D_BWD: gen_pool(c, t, r, big, k); break;
  case ECS_OP_RESIZE_BILINEAR:
  case ECS_OP_RESIZE_BILINEAR_BWD: gen_resize(c, t, r, big); break;
  case ECS_OP_SOFTMAX:
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX_BWD: gen_softmax(c, t, r, big, k); break;
  case ECS_OP_ML_SOFT_MARGIN:
  case ECS_OP_ML_SOFT_MARGIN_BWD:
  case ECS_OP_MASKED_CE:
  case ECS_OP_MASKED_CE_BWD: gen_losses(c, t, r, big, k); break;
  default: gen_simple(c, t, r, big, k); break;
  }
}

/* ---- running a case on a device --------------------------------------------------------- */

#define MAX_DEV_T 24

/* One case's device tensors and their buffers (one buffer per tensor: simple, and sizes are
 * what prepare asked for, possibly padded). */
typedef struct dev_case {
  ecs_device *dev;
  ecs_backend *be;
  ecs_op op;
  ecs_tensor ts[MAX_DEV_T];
  ecs_buffer *bufs[MAX_DEV_T];
  int nt;
} dev_case;

static void dev_case_free(dev_case *d) {
  for (int i = 0; i < d->nt; i++)
    ecs_buffer_free(d->bufs[i]);
  d->nt = 0;
}

static ecs_tensor *dev_tensor(dev_case *d, ecs_dtype type, int nd, const int64_t *ne) {
  ECS_ASSERT(d->nt < MAX_DEV_T);
  ecs_tensor *t = &d->ts[d->nt];
  d->bufs[d->nt++] = NULL;
  memset(t, 0, sizeof *t);
  t->type = type, t->nd = nd;
  memcpy(t->ne, ne, sizeof t->ne);
  return t;
}

static ecs_status dev_alloc(dev_case *d, ecs_tensor *t, ecs_err *err) {
  ecs_buffer *b = ecs_buffer_alloc(ecs_device_buffer_type(d->dev), t->nbytes ? t->nbytes : 1, err);
  if (!b) return err->status ? err->status : ECS_ERR_NOMEM;
  d->bufs[t - d->ts] = b;
  t->buffer = b, t->data = ecs_buffer_base(b);
  return ECS_OK;
}

static ecs_status dev_upload(dev_case *d, const ecs_tensor *h, ecs_tensor **out, ecs_err *err) {
  ecs_tensor *t = dev_tensor(d, h->type, h->nd, h->ne);
  t->nbytes = ecs_plain_nbytes(h);
  ecs_status st = dev_alloc(d, t, err);
  if (st == ECS_OK) st = ecs_tensor_set_bytes(t, h->data, 0, t->nbytes, err);
  *out = t;
  return st;
}

/* Plain bytes of a device tensor: a COPY into a tensor declared plain (no prepare) when the
 * backend chose a private layout. */
static ecs_status dev_read(dev_case *d, ecs_tensor *t, void *host, ecs_err *err) {
  ecs_status st;
  if (t->layout != ECS_LAYOUT_PLAIN) {
    ecs_tensor *p = dev_tensor(d, t->type, t->nd, t->ne);
    p->nbytes = ecs_plain_nbytes(p);
    ecs_op cp = {.type = ECS_OP_COPY, .src = {t}, .dst = {p}};
    if ((st = dev_alloc(d, p, err)) != ECS_OK ||
        (st = ecs_backend_compute(d->be, &cp, err)) != ECS_OK ||
        (st = ecs_backend_synchronize(d->be, err)) != ECS_OK)
      return st;
    t = p;
  }
  return ecs_tensor_get_bytes(t, host, 0, ecs_plain_nbytes(t), err);
}

static int is_max_pool(const ecs_op *op) {
  return (op->type == ECS_OP_POOL2D || op->type == ECS_OP_POOL2D_BWD) &&
         op->p.pool.kind == ECS_POOL_MAX;
}

/* Builds d->op from the host case: inputs uploaded, outputs laid out and allocated. Returns
 * ECS_ERR_UNSUPPORTED (quietly) when the device does not support the op. */
static ecs_status dev_setup(dev_case *d, const bcase *c, ecs_err *err) {
  ecs_status st;
  d->op = c->op;
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (c->op.src[i] && (st = dev_upload(d, c->op.src[i], &d->op.src[i], err)) != ECS_OK) return st;
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (c->op.dst[i])
      d->op.dst[i] = dev_tensor(d, c->op.dst[i]->type, c->op.dst[i]->nd, c->op.dst[i]->ne);
  /* max pooling: the device keeps its argmax workspace, in whatever layout it likes */
  if (c->op.type == ECS_OP_POOL2D && is_max_pool(&c->op))
    d->op.dst[1] = dev_tensor(d, ECS_I32, 4, c->op.dst[0]->ne);
  if (!ecs_device_supports_op(d->dev, &d->op)) return ECS_ERR_UNSUPPORTED;
  if (c->op.type == ECS_OP_POOL2D_BWD && is_max_pool(&c->op)) {
    ecs_op f = {.type = ECS_OP_POOL2D, .src = {d->op.src[0]}, .p = c->op.p};
    f.dst[0] = dev_tensor(d, ECS_F32, 4, c->op.src[1]->ne);
    f.dst[1] = dev_tensor(d, ECS_I32, 4, c->op.src[1]->ne);
    if (!ecs_device_supports_op(d->dev, &f)) return ECS_ERR_UNSUPPORTED;
    if ((st = ecs_backend_prepare(d->be, &f, err)) != ECS_OK ||
        (st = dev_alloc(d, f.dst[0], err)) != ECS_OK ||
        (st = dev_alloc(d, f.dst[1], err)) != ECS_OK ||
        (st = ecs_backend_compute(d->be, &f, err)) != ECS_OK)
      return st;
    d->op.src[2] = f.dst[1];
  }
  if ((st = ecs_backend_prepare(d->be, &d->op, err)) != ECS_OK) return st;
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (d->op.dst[i] && (st = dev_alloc(d, d->op.dst[i], err)) != ECS_OK) return st;
  return ECS_OK;
}

typedef enum { R_PASS, R_FAIL, R_UNSUP } result;

static result compare(dev_case *d, ecs_tensor *dt, const ecs_tensor *ref, double tol,
                      const char *name, char *why, size_t nwhy) {
  ecs_err err = {0};
  size_t nb = ecs_plain_nbytes(ref);
  void *got = malloc(nb ? nb : 1);
  result res = R_PASS;
  if (dev_read(d, dt, got, &err) != ECS_OK) {
    snprintf(why, nwhy, "reading %s: %s", name, err.msg);
    res = R_FAIL;
  } else if (ref->type != ECS_F32) {
    if (memcmp(got, ref->data, nb) != 0)
      snprintf(why, nwhy, "%s differs (exact compare)", name), res = R_FAIL;
  } else {
    double e = th_rel_l2(got, th_f(ref), ecs_nelements(ref));
    if (!(e <= tol))
      snprintf(why, nwhy, "%s: relative L2 error %.3e > %.0e", name, e, tol), res = R_FAIL;
  }
  free(got);
  return res;
}

static result run_case(dev_case *d, bcase *c, char *why, size_t nwhy) {
  ecs_err err = {0};
  ecs_status st = dev_setup(d, c, &err);
  if (st == ECS_ERR_UNSUPPORTED && !err.status) return R_UNSUP;
  if (st == ECS_OK) st = ecs_backend_compute(d->be, &d->op, &err);
  if (st == ECS_OK) st = ecs_backend_synchronize(d->be, &err);
  if (st != ECS_OK) {
    snprintf(why, nwhy, "device error: %s", err.msg);
    return R_FAIL;
  }
  /* the reference runs after the upload: batch norm updates its inputs in place */
  if (ecs_ref_compute(&c->op, 2, &err) != ECS_OK) {
    snprintf(why, nwhy, "reference error: %s", err.msg);
    return R_FAIL;
  }
  result res = R_PASS;
  for (int i = 0; i < ECS_OP_MAX_DST && res == R_PASS; i++) {
    char name[16];
    snprintf(name, sizeof name, "dst%d", i);
    if (c->op.dst[i]) res = compare(d, d->op.dst[i], c->op.dst[i], c->tol, name, why, nwhy);
  }
  if (res == R_PASS && c->op.type == ECS_OP_BATCHNORM && c->op.p.bn.training) {
    res = compare(d, d->op.src[3], c->op.src[3], c->tol, "running mean", why, nwhy);
    if (res == R_PASS)
      res = compare(d, d->op.src[4], c->op.src[4], c->tol, "running var", why, nwhy);
  }
  return res;
}

#define N_CASES 6

/* Cases per op: N_CASES, or ECSNET_OPS_CASES for a deeper sweep. */
static int n_cases(void) {
  const char *v = getenv("ECSNET_OPS_CASES");
  int n = v ? atoi(v) : 0;
  return n > 0 ? n : N_CASES;
}

/* Every op x n_cases() on one device; returns the number of failures. */
static int run_device(ecs_device *dev) {
  int gpu = !ecs_device_is_host(dev), failures = 0, ncase = n_cases();
  ecs_err err = {0};
  ecs_backend *be = ecs_backend_init(dev, &(ecs_backend_params){.n_threads = 2}, &err);
  if (!be) {
    print_error("%s: cannot start a backend: %s\n", ecs_device_name(dev), err.msg);
    return 1;
  }
  print_message("device %s (%s)\n", ecs_device_name(dev), ecs_device_description(dev));
  for (int t = ECS_OP_NONE + 1; t < ECS_OP_COUNT; t++) {
    int pass = 0, fail = 0, unsup = 0;
    th_rng rng = {1000u + (unsigned)t};
    for (int k = 0; k < ncase; k++) {
      bcase c;
      gen_case(&c, (ecs_op_type)t, &rng, 0, k);
      dev_case d = {.dev = dev, .be = be};
      char why[ECS_ERR_MSG_MAX + 64] = "";
      result r = run_case(&d, &c, why, sizeof why);
      if (r == R_UNSUP && gpu) {
        r = R_FAIL;
        snprintf(why, sizeof why, "not supported on a GPU device, but the reference supports it");
      }
      if (r == R_PASS)
        pass++;
      else if (r == R_UNSUP)
        unsup++;
      else {
        fail++;
        print_error("  FAIL %s %s [%s]: %s\n", ecs_device_name(dev), ecs_op_name((ecs_op_type)t),
                    c.desc, why);
      }
      dev_case_free(&d);
      bcase_free(&c);
    }
    print_message("  %-22s passed %d  failed %d  not supported %d\n", ecs_op_name((ecs_op_type)t),
                  pass, fail, unsup);
    failures += fail;
  }
  ecs_backend_free(be);
  return failures;
}

static void test_compare_detects_errors(void **state) {
  (void)state;
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4.001f}, ninf[2] = {-INFINITY, 1}, fin[2] = {0, 1};
  assert_true(th_rel_l2(a, a, 4) == 0);
  assert_true(th_rel_l2(b, a, 4) > 1e-5); /* a 2e-4 relative error fails an element-wise op */
  assert_true(th_rel_l2(ninf, ninf, 2) == 0);
  assert_true(isinf(th_rel_l2(fin, ninf, 2))); /* a finite value where -inf was expected */
}

static void test_cpu_devices(void **state) {
  (void)state;
  int failures = 0, n = 0;
  for (size_t i = 0; i < ecs_device_count(); i++) {
    ecs_device *dev = ecs_device_get(i);
    if (!ecs_device_is_host(dev) || strcmp(ecs_device_name(dev), "cpu-ref") == 0) continue;
    failures += run_device(dev);
    n++;
  }
  assert_true(n >= 1);
  assert_int_equal(failures, 0);
}

static void test_gpu_devices(void **state) {
  (void)state;
  int failures = 0, n = 0;
  for (size_t i = 0; i < ecs_device_count(); i++) {
    ecs_device *dev = ecs_device_get(i);
    if (ecs_device_is_host(dev)) continue;
    failures += run_device(dev);
    n++;
  }
  if (n == 0) {
    print_message("no GPU device registered: the GPU comparison is skipped\n");
    skip();
  }
  assert_int_equal(failures, 0);
}

/* ---- perf mode ---------------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int perf(const char *only) {
  for (size_t i = 0; i < ecs_device_count(); i++) {
    ecs_device *dev = ecs_device_get(i);
    ecs_err err = {0};
    ecs_backend *be = ecs_backend_init(dev, &(ecs_backend_params){.n_threads = 0}, &err);
    if (!be) {
      fprintf(stderr, "%s: %s\n", ecs_device_name(dev), err.msg);
      continue;
    }
    printf("device %s (%s)\n", ecs_device_name(dev), ecs_device_description(dev));
    for (int t = ECS_OP_NONE + 1; t < ECS_OP_COUNT; t++) {
      if (only && !strstr(ecs_op_name((ecs_op_type)t), only)) continue;
      th_rng rng = {1000u + (unsigned)t};
      bcase c;
      gen_case(&c, (ecs_op_type)t, &rng, 1, 0);
      dev_case d = {.dev = dev, .be = be};
      ecs_status st = dev_setup(&d, &c, &err);
      int reps = 0;
      double t0 = now_s(), el = 0;
      while (st == ECS_OK && (reps < 2 || (el < 0.5 && reps < 50))) {
        if (reps == 1) t0 = now_s(); /* the first run warms caches and plans */
        st = ecs_backend_compute(be, &d.op, &err);
        if (st == ECS_OK) st = ecs_backend_synchronize(be, &err);
        reps++;
        el = now_s() - t0;
      }
      if (st == ECS_ERR_UNSUPPORTED && !err.status)
        printf("  %-22s %-44s not supported\n", ecs_op_name((ecs_op_type)t), c.desc);
      else if (st != ECS_OK)
        printf("  %-22s %-44s error: %s\n", ecs_op_name((ecs_op_type)t), c.desc, err.msg);
      else
        printf("  %-22s %-44s %10.3f ms\n", ecs_op_name((ecs_op_type)t), c.desc,
               1e3 * el / (reps - 1));
      ecs_err_clear(&err);
      dev_case_free(&d);
      bcase_free(&c);
    }
    ecs_backend_free(be);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "perf") == 0 || strcmp(argv[1], "--perf") == 0))
    return perf(argc > 2 ? argv[2] : NULL);
  if (argc > 1) {
    fprintf(stderr, "usage: %s [perf|--perf [op-name-substring]]\n", argv[0]);
    return 2;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compare_detects_errors),
      cmocka_unit_test(test_cpu_devices),
      cmocka_unit_test(test_gpu_devices),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
