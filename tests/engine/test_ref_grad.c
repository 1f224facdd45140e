/* test_ref_grad.c - central-difference gradient checks of every reference backward op.
 *
 * For a forward op f and a fixed random r, the scalar L(x) = sum(r * f(x)) has gradient
 * bwd(dy = r) with respect to each input. Each check perturbs every element of one input by
 * +-eps, computes (L+ - L-) / (x+ - x-) in float (the loss summed in double), and compares the
 * whole numerical gradient to the backward op's by relative L2 error. Inputs of the piecewise
 * ops (ReLU, max pooling) are spaced further apart than eps so that no kink or argmax moves.
 * Shapes are small and odd on purpose; the cases cover stride, padding, dilation, groups
 * (depthwise included), ceil_mode, count_include_pad and class masks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "cpu/ref.h"
#include "ref_tensors.h"

#define NT       2
#define GRAD_TOL 1e-3

static void run(ecs_op *op) {
  ecs_err err = {0};
  ecs_status st = ecs_ref_compute(op, NT, &err);
  if (st != ECS_OK) fail_msg("%s: %s", ecs_op_name(op->type), err.msg);
}

/* sum(r * out) over the finite outputs (masked log-probabilities are -inf and constant) */
static double proj_loss(ecs_op *fwd, const ecs_tensor *out, const ecs_tensor *r) {
  run(fwd);
  double s = 0;
  for (int64_t i = 0; i < ecs_nelements(out); i++)
    if (isfinite(th_f(out)[i])) s += (double)th_f(r)[i] * th_f(out)[i];
  return s;
}

static void check_grad(const char *what, ecs_op *fwd, const ecs_tensor *out, const ecs_tensor *r,
                       ecs_tensor *wrt, const ecs_tensor *analytic, float eps) {
  int64_t n = ecs_nelements(wrt);
  float *num = malloc((size_t)n * sizeof *num);
  float *p = th_f(wrt);
  for (int64_t i = 0; i < n; i++) {
    float v = p[i], hi = v + eps, lo = v - eps;
    p[i] = hi;
    double lp = proj_loss(fwd, out, r);
    p[i] = lo;
    double lm = proj_loss(fwd, out, r);
    p[i] = v;
    num[i] = (float)((lp - lm) / ((double)hi - (double)lo));
  }
  double e = th_rel_l2(num, th_f(analytic), n);
  double an = 0;
  for (int64_t i = 0; i < n; i++)
    an += fabs(th_f(analytic)[i]);
  print_message("  %-48s rel err %.2e\n", what, e);
  free(num);
  if (!(e <= GRAD_TOL)) fail_msg("%s: gradient mismatch, relative L2 error %.3e", what, e);
  if (!(an > 0)) fail_msg("%s: the analytic gradient is all zero, the check proves nothing", what);
}

/* ---- convolution ------------------------------------------------------------------------ */

typedef struct conv_case {
  int n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, g, bias;
} conv_case;

static void test_conv2d(void **state) {
  (void)state;
  static const conv_case cases[] = {
      {2, 4, 7, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
      {1, 4, 9, 8, 4, 3, 2, 2, 1, 1, 0, 1, 2, 2, 1}, /* stride, dilation, groups, 3x2 kernel */
      {2, 3, 6, 7, 3, 3, 3, 1, 2, 2, 1, 2, 1, 3, 0}, /* depthwise, dilation 2, no bias */
      {1, 2, 5, 5, 4, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1}, /* 1x1, stride 2 */
      {1, 4, 8, 7, 2, 3, 3, 3, 2, 1, 1, 1, 1, 2, 1}, /* stride 3 skipping input rows */
  };
  th_rng rng = {11};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const conv_case *cc = &cases[k];
    int64_t oh = ecs_conv_out_size(cc->h, cc->kh, cc->sh, cc->ph, cc->dh);
    int64_t ow = ecs_conv_out_size(cc->w, cc->kw, cc->sw, cc->pw, cc->dw);
    ecs_tensor *x = th_new(ECS_F32, 4, cc->n, cc->c, cc->h, cc->w);
    ecs_tensor *w = th_new(ECS_F32, 4, cc->o, cc->c / cc->g, cc->kh, cc->kw);
    ecs_tensor *b = cc->bias ? th_new(ECS_F32, 1, cc->o, 1, 1, 1) : NULL;
    ecs_tensor *y = th_new(ECS_F32, 4, cc->n, cc->o, oh, ow), *r = th_like(y, ECS_F32);
    ecs_tensor *dx = th_like(x, ECS_F32), *dw = th_like(w, ECS_F32);
    ecs_tensor *db = cc->bias ? th_like(b, ECS_F32) : NULL;
    th_fill_unif(x, &rng, -1, 1);
    th_fill_unif(w, &rng, -1, 1);
    if (b) th_fill_unif(b, &rng, -1, 1);
    th_fill_unif(r, &rng, -1, 1);
    ecs_op f = {.type = ECS_OP_CONV2D, .src = {x, w, b}, .dst = {y}};
    f.p.conv = (typeof(f.p.conv)){
        {cc->sh, cc->sw}, {cc->ph, cc->pw}, {cc->dh, cc->dw}, cc->g, ECS_ACT_NONE};
    ecs_op bd = {.type = ECS_OP_CONV2D_BWD_DATA, .src = {r, w}, .dst = {dx}, .p = f.p};
    ecs_op bw = {.type = ECS_OP_CONV2D_BWD_WEIGHT, .src = {x, r}, .dst = {dw, db}, .p = f.p};
    run(&bd);
    run(&bw);
    char what[96];
    snprintf(what, sizeof what, "conv2d case %zu dx", k);
    check_grad(what, &f, y, r, x, dx, 1e-2f);
    snprintf(what, sizeof what, "conv2d case %zu dw", k);
    check_grad(what, &f, y, r, w, dw, 1e-2f);
    if (b) {
      snprintf(what, sizeof what, "conv2d case %zu db", k);
      check_grad(what, &f, y, r, b, db, 1e-2f);
    }
    ecs_tensor *all[] = {x, w, b, y, r, dx, dw, db};
    for (size_t i = 0; i < 8; i++)
      th_free(all[i]);
  }
}

/* ---- batch norm ------------------------------------------------------------------------- */

static void bn_case(int training, int nd, th_rng *rng) {
  ecs_tensor *x = nd == 4 ? th_new(ECS_F32, 4, 2, 3, 4, 5) : th_new(ECS_F32, 2, 6, 3, 1, 1);
  int64_t C = 3;
  ecs_tensor *g = th_new(ECS_F32, 1, C, 1, 1, 1), *be = th_like(g, ECS_F32);
  ecs_tensor *rm = th_like(g, ECS_F32), *rv = th_like(g, ECS_F32);
  ecs_tensor *sm = th_like(g, ECS_F32), *si = th_like(g, ECS_F32);
  ecs_tensor *y = th_like(x, ECS_F32), *r = th_like(x, ECS_F32), *dx = th_like(x, ECS_F32);
  ecs_tensor *dg = th_like(g, ECS_F32), *db = th_like(g, ECS_F32);
  th_fill_unif(x, rng, -2, 3);
  th_fill_unif(g, rng, 0.5f, 1.5f);
  th_fill_unif(be, rng, -1, 1);
  th_fill_unif(rm, rng, -0.5f, 0.5f);
  th_fill_unif(rv, rng, 0.5f, 2.0f);
  th_fill_unif(r, rng, -1, 1);
  ecs_op f = {.type = ECS_OP_BATCHNORM, .src = {x, g, be, rm, rv}, .dst = {y, sm, si}};
  f.p.bn = (typeof(f.p.bn)){1e-5f, 0.1f, training};
  run(&f);
  ecs_op b = {
      .type = ECS_OP_BATCHNORM_BWD, .src = {x, r, g, sm, si}, .dst = {dx, dg, db}, .p = f.p};
  run(&b);
  char what[96];
  snprintf(what, sizeof what, "batchnorm %s %dd dx", training ? "training" : "frozen", nd);
  check_grad(what, &f, y, r, x, dx, 1e-2f);
  snprintf(what, sizeof what, "batchnorm %s %dd dgamma", training ? "training" : "frozen", nd);
  check_grad(what, &f, y, r, g, dg, 1e-2f);
  snprintf(what, sizeof what, "batchnorm %s %dd dbeta", training ? "training" : "frozen", nd);
  check_grad(what, &f, y, r, be, db, 1e-2f);
  ecs_tensor *all[] = {x, g, be, rm, rv, sm, si, y, r, dx, dg, db};
  for (size_t i = 0; i < 12; i++)
    th_free(all[i]);
}

static void test_batchnorm(void **state) {
  (void)state;
  th_rng rng = {12};
  bn_case(1, 4, &rng);
  bn_case(0, 4, &rng);
  bn_case(1, 2, &rng);
}

/* ---- activations, pooling, GAP ---------------------------------------------------------- */

static void test_relu(void **state) {
  (void)state;
  th_rng rng = {13};
  for (int k = 0; k < 2; k++) {
    ecs_tensor *x = th_new(ECS_F32, 4, 2, 3, 4, 5), *y = th_like(x, ECS_F32);
    ecs_tensor *r = th_like(x, ECS_F32), *dx = th_like(x, ECS_F32);
    th_fill_spaced(x, &rng, 0.13f); /* spans about +-8: both kinks of ReLU6 are crossed */
    th_fill_unif(r, &rng, -1, 1);
    ecs_op f = {.type = ECS_OP_RELU, .src = {x}, .dst = {y}, .p.act.clip = k ? 6.0f : 0.0f};
    ecs_op b = {.type = ECS_OP_RELU_BWD, .src = {x, r}, .dst = {dx}, .p = f.p};
    run(&b);
    check_grad(k ? "relu6 dx" : "relu dx", &f, y, r, x, dx, 1e-3f);
    th_free(x), th_free(y), th_free(r), th_free(dx);
  }
}

typedef struct pool_case {
  int n, c, h, w, kind, kh, kw, sh, sw, ph, pw, ceil, cip;
} pool_case;

static void test_pool2d(void **state) {
  (void)state;
  static const pool_case cases[] = {
      {2, 2, 7, 7, ECS_POOL_MAX, 3, 3, 2, 2, 1, 1, 0, 0},
      {1, 3, 8, 8, ECS_POOL_MAX, 3, 3, 2, 2, 0, 0, 1, 0}, /* ceil_mode: clipped last window */
      {1, 2, 6, 5, ECS_POOL_MAX, 2, 2, 2, 2, 0, 0, 0, 0},
      {1, 2, 7, 6, ECS_POOL_MAX, 3, 2, 2, 1, 1, 1, 1, 0}, /* non-square, overlapping */
      {2, 2, 7, 6, ECS_POOL_AVG, 3, 3, 2, 2, 1, 1, 1, 1},
      {1, 3, 8, 7, ECS_POOL_AVG, 3, 3, 2, 2, 1, 1, 1, 0},
      {1, 2, 5, 5, ECS_POOL_AVG, 3, 3, 1, 1, 1, 1, 0, 0},
  };
  th_rng rng = {14};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const pool_case *pc = &cases[k];
    int64_t oh = ecs_pool_out_size(pc->h, pc->kh, pc->sh, pc->ph, pc->ceil);
    int64_t ow = ecs_pool_out_size(pc->w, pc->kw, pc->sw, pc->pw, pc->ceil);
    ecs_tensor *x = th_new(ECS_F32, 4, pc->n, pc->c, pc->h, pc->w), *dx = th_like(x, ECS_F32);
    ecs_tensor *y = th_new(ECS_F32, 4, pc->n, pc->c, oh, ow), *r = th_like(y, ECS_F32);
    th_fill_spaced(x, &rng, 0.01f);
    th_fill_unif(r, &rng, -1, 1);
    ecs_op f = {.type = ECS_OP_POOL2D, .src = {x}, .dst = {y}};
    f.p.pool = (typeof(f.p.pool)){pc->kind,         {pc->kh, pc->kw}, {pc->sh, pc->sw},
                                  {pc->ph, pc->pw}, pc->ceil,         pc->cip};
    ecs_op b = {.type = ECS_OP_POOL2D_BWD, .src = {x, r, NULL}, .dst = {dx}, .p = f.p};
    run(&b);
    char what[96];
    snprintf(what, sizeof what, "pool2d case %zu (%s) dx", k,
             pc->kind == ECS_POOL_MAX ? "max" : "avg");
    check_grad(what, &f, y, r, x, dx, 1e-3f);
    th_free(x), th_free(dx), th_free(y), th_free(r);
  }
}

static void test_gap(void **state) {
  (void)state;
  th_rng rng = {15};
  ecs_tensor *x = th_new(ECS_F32, 4, 2, 3, 4, 5), *dx = th_like(x, ECS_F32);
  ecs_tensor *y = th_new(ECS_F32, 2, 2, 3, 1, 1), *r = th_like(y, ECS_F32);
  th_fill_unif(x, &rng, -1, 1);
  th_fill_unif(r, &rng, -1, 1);
  ecs_op f = {.type = ECS_OP_GAP, .src = {x}, .dst = {y}};
  ecs_op b = {.type = ECS_OP_GAP_BWD, .src = {r}, .dst = {dx}};
  run(&b);
  check_grad("gap dx", &f, y, r, x, dx, 1e-2f);
  th_free(x), th_free(dx), th_free(y), th_free(r);
}

/* ---- channels, dropout, resize ---------------------------------------------------------- */

static void test_concat(void **state) {
  (void)state;
  th_rng rng = {16};
  int cs[3] = {1, 3, 2};
  ecs_tensor *xs[3], *gs[3];
  ecs_tensor *y = th_new(ECS_F32, 4, 2, 6, 3, 4), *r = th_like(y, ECS_F32);
  for (int i = 0; i < 3; i++) {
    xs[i] = th_new(ECS_F32, 4, 2, cs[i], 3, 4);
    gs[i] = th_like(xs[i], ECS_F32);
    th_fill_unif(xs[i], &rng, -1, 1);
  }
  th_fill_unif(r, &rng, -1, 1);
  ecs_op f = {.type = ECS_OP_CONCAT, .src = {xs[0], xs[1], xs[2]}, .dst = {y}, .p.concat.n = 3};
  for (int i = 0, off = 0; i < 3; off += cs[i], i++) {
    ecs_op b = {.type = ECS_OP_SLICE_C, .src = {r}, .dst = {gs[i]}, .p.slice.offset = off};
    run(&b);
    char what[64];
    snprintf(what, sizeof what, "concat input %d (slice_c backward)", i);
    check_grad(what, &f, y, r, xs[i], gs[i], 1e-2f);
  }
  for (int i = 0; i < 3; i++)
    th_free(xs[i]), th_free(gs[i]);
  th_free(y), th_free(r);
}

static void test_dropout(void **state) {
  (void)state;
  th_rng rng = {17};
  ecs_tensor *x = th_new(ECS_F32, 4, 2, 3, 4, 5), *y = th_like(x, ECS_F32);
  ecs_tensor *m = th_like(x, ECS_U8), *r = th_like(x, ECS_F32), *dx = th_like(x, ECS_F32);
  th_fill_unif(x, &rng, -1, 1);
  th_fill_unif(r, &rng, -1, 1);
  ecs_op f = {.type = ECS_OP_DROPOUT, .src = {x}, .dst = {y, m}, .p.dropout = {0.3f, 1234}};
  run(&f);
  int64_t kept = 0;
  for (int64_t i = 0; i < ecs_nelements(m); i++)
    kept += ((uint8_t *)m->data)[i];
  assert_true(kept > 0 && kept < ecs_nelements(m));
  ecs_op b = {.type = ECS_OP_DROPOUT_BWD, .src = {r, m}, .dst = {dx}, .p = f.p};
  run(&b);
  check_grad("dropout dx", &f, y, r, x, dx, 1e-2f);
  th_free(x), th_free(y), th_free(m), th_free(r), th_free(dx);
}

static void test_resize(void **state) {
  (void)state;
  static const int sizes[][4] = {{5, 7, 9, 4}, {4, 4, 2, 2}, {3, 5, 11, 13}, {8, 6, 3, 5}};
  th_rng rng = {18};
  for (size_t k = 0; k < 4; k++) {
    const int *s = sizes[k];
    ecs_tensor *x = th_new(ECS_F32, 4, 1, 2, s[0], s[1]), *dx = th_like(x, ECS_F32);
    ecs_tensor *y = th_new(ECS_F32, 4, 1, 2, s[2], s[3]), *r = th_like(y, ECS_F32);
    th_fill_unif(x, &rng, -1, 1);
    th_fill_unif(r, &rng, -1, 1);
    ecs_op f = {.type = ECS_OP_RESIZE_BILINEAR, .src = {x}, .dst = {y}};
    ecs_op b = {.type = ECS_OP_RESIZE_BILINEAR_BWD, .src = {r}, .dst = {dx}};
    run(&b);
    char what[96];
    snprintf(what, sizeof what, "resize %dx%d -> %dx%d dx", s[0], s[1], s[2], s[3]);
    check_grad(what, &f, y, r, x, dx, 1e-2f);
    th_free(x), th_free(dx), th_free(y), th_free(r);
  }
}

/* ---- softmax and losses ----------------------------------------------------------------- */

static void softmax_case(int logp, int nd, int masked, th_rng *rng) {
  ecs_tensor *x = nd == 4 ? th_new(ECS_F32, 4, 2, 4, 3, 3) : th_new(ECS_F32, 2, 3, 5, 1, 1);
  ecs_tensor *y = th_like(x, ECS_F32), *r = th_like(x, ECS_F32), *dx = th_like(x, ECS_F32);
  ecs_tensor *m = masked ? th_new(ECS_F32, 2, x->ne[0], x->ne[1], 1, 1) : NULL;
  th_fill_unif(x, rng, -3, 3);
  th_fill_unif(r, rng, -1, 1);
  if (m)
    for (int64_t i = 0; i < ecs_nelements(m); i++)
      th_f(m)[i] = (i % x->ne[1] == 0 || th_int(rng, 2)) ? 1.0f : 0.0f;
  ecs_op f = {.type = logp ? ECS_OP_LOG_SOFTMAX : ECS_OP_SOFTMAX, .src = {x, m}, .dst = {y}};
  run(&f);
  ecs_op b = {
      .type = logp ? ECS_OP_LOG_SOFTMAX_BWD : ECS_OP_SOFTMAX_BWD, .src = {y, r}, .dst = {dx}};
  run(&b);
  char what[96];
  snprintf(what, sizeof what, "%s %dd%s dx", logp ? "log_softmax" : "softmax", nd,
           masked ? " masked" : "");
  check_grad(what, &f, y, r, x, dx, 1e-2f);
  th_free(x), th_free(y), th_free(r), th_free(dx), th_free(m);
}

static void test_softmax(void **state) {
  (void)state;
  th_rng rng = {19};
  for (int logp = 0; logp < 2; logp++)
    for (int masked = 0; masked < 2; masked++) {
      softmax_case(logp, 4, masked, &rng);
      softmax_case(logp, 2, masked, &rng);
    }
}

static void test_ml_soft_margin(void **state) {
  (void)state;
  th_rng rng = {20};
  ecs_tensor *x = th_new(ECS_F32, 2, 3, 5, 1, 1), *t = th_like(x, ECS_F32),
             *dx = th_like(x, ECS_F32);
  ecs_tensor *l = th_new(ECS_F32, 1, 1, 1, 1, 1), *r = th_like(l, ECS_F32);
  th_fill_unif(x, &rng, -4, 4);
  for (int64_t i = 0; i < ecs_nelements(t); i++)
    th_f(t)[i] = (float)th_int(&rng, 2);
  th_f(r)[0] = 0.7f;
  ecs_op f = {.type = ECS_OP_ML_SOFT_MARGIN, .src = {x, t}, .dst = {l}};
  ecs_op b = {.type = ECS_OP_ML_SOFT_MARGIN_BWD, .src = {x, t, r}, .dst = {dx}};
  run(&b);
  check_grad("ml_soft_margin dlogits", &f, l, r, x, dx, 1e-2f);
  th_free(x), th_free(t), th_free(dx), th_free(l), th_free(r);
}

static void test_masked_ce(void **state) {
  (void)state;
  th_rng rng = {21};
  for (int masked = 0; masked < 2; masked++) {
    ecs_tensor *x = th_new(ECS_F32, 4, 2, 4, 3, 3), *dx = th_like(x, ECS_F32);
    ecs_tensor *lab = th_new(ECS_I32, 3, 2, 3, 3, 1);
    ecs_tensor *m = masked ? th_new(ECS_F32, 2, 2, 4, 1, 1) : NULL;
    ecs_tensor *l = th_new(ECS_F32, 1, 1, 1, 1, 1), *cnt = th_like(l, ECS_F32),
               *r = th_like(l, ECS_F32);
    th_fill_unif(x, &rng, -3, 3);
    if (m)
      for (int64_t i = 0; i < 8; i++)
        th_f(m)[i] = (i % 4 == 0 || i % 4 == 2) ? 1.0f : 0.0f;
    int32_t *lp = lab->data;
    for (int64_t i = 0; i < ecs_nelements(lab); i++) {
      int v = th_int(&rng, 5);
      lp[i] = v == 4 ? 255 : (m ? (v % 2) * 2 : v); /* masked: only the unmasked classes 0, 2 */
    }
    th_f(r)[0] = 1.3f;
    ecs_op f = {
        .type = ECS_OP_MASKED_CE, .src = {x, lab, m}, .dst = {l, cnt}, .p.ce.ignore_index = 255};
    run(&f);
    int64_t want = 0;
    for (int64_t i = 0; i < ecs_nelements(lab); i++)
      want += lp[i] != 255;
    assert_float_equal(th_f(cnt)[0], (float)want, 0);
    ecs_op b = {.type = ECS_OP_MASKED_CE_BWD, .src = {x, lab, m, r}, .dst = {dx}, .p = f.p};
    run(&b);
    check_grad(masked ? "masked_ce with class mask dlogits" : "masked_ce dlogits", &f, l, r, x, dx,
               1e-2f);
    th_free(x), th_free(dx), th_free(lab), th_free(m), th_free(l), th_free(cnt), th_free(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv2d),    cmocka_unit_test(test_batchnorm),
      cmocka_unit_test(test_relu),      cmocka_unit_test(test_pool2d),
      cmocka_unit_test(test_gap),       cmocka_unit_test(test_concat),
      cmocka_unit_test(test_dropout),   cmocka_unit_test(test_resize),
      cmocka_unit_test(test_softmax),   cmocka_unit_test(test_ml_soft_margin),
      cmocka_unit_test(test_masked_ce),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
