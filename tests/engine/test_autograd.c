/* test_autograd.c - ecs_ctx: arena reuse, sticky errors, host transfers, the tape, and
 * gradients checked against central finite differences on every CPU backend.
 *
 * The finite-difference checks perturb parameters in place (host buffers) and re-run the
 * forward pass with gradients off; the analytic side is one ecs_backward. Sizes are tiny so the
 * whole file runs in well under a second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-impl.h"
#include "ecs/nn.h"

static const char *g_devs[] = {"cpu-ref", "cpu"};

static ecs_backend *backend(const char *name) {
  ecs_err err = {0};
  ecs_device *dev = ecs_device_find(name, &err);
  assert_non_null(dev);
  ecs_backend *be = ecs_backend_init(dev, &(ecs_backend_params){.n_threads = 1}, &err);
  assert_non_null(be);
  return be;
}

static uint64_t g_rng = 12345;
static float frand(void) { /* uniform in [-1, 1) */
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void fill_rand(ecs_tensor *t, float scale, float offset) {
  for (int64_t i = 0; i < ecs_nelements(t); i++)
    ((float *)t->data)[i] = offset + scale * frand();
}

static ecs_tensor *param(ecs_params *ps, const char *name, int nd, const int64_t *ne, int train) {
  ecs_err err = {0};
  ecs_tensor *t = ecs_params_add(ps, name, ECS_F32, nd, ne, train, &err);
  if (!t) fail_msg("%s", err.msg);
  return t;
}

static void alloc_params(ecs_params *ps) {
  ecs_err err = {0};
  assert_int_equal(ecs_params_alloc(ps, ecs_device_buffer_type(ecs_device_find("cpu", NULL)), &err),
                   ECS_OK);
  assert_int_equal(ecs_params_alloc_grads(ps, &err), ECS_OK);
}

static float scalar(ecs_ctx *ctx, ecs_tensor *t) {
  float v = NAN;
  ecs_err err = {0};
  if (!t || ecs_to_host(ctx, t, &v, sizeof v) != ECS_OK) {
    ecs_ctx_status(ctx, &err);
    fail_msg("forward failed: %s", err.msg);
  }
  return v;
}

/* ---- a small network touching every differentiable op ------------------------------------- */

typedef struct net {
  ecs_params *ps;
  ecs_tensor *w1, *b1, *g1, *be1, *rm1, *rv1, *w2, *b2, *gain;
  float xin[2 * 3 * 8 * 8];
  int32_t labels[2 * 4 * 4];
  float targets[2 * 8];
  int frozen_bn, dropout;
} net;

static void net_init(net *m, int frozen_bn, int dropout) {
  ecs_err err = {0};
  memset(m, 0, sizeof *m);
  m->frozen_bn = frozen_bn;
  m->dropout = dropout;
  m->ps = ecs_params_new(&err);
  m->w1 = param(m->ps, "conv1.weight", 4, (int64_t[]){6, 3, 3, 3}, 1);
  m->b1 = param(m->ps, "conv1.bias", 1, (int64_t[]){6}, 1);
  m->g1 = param(m->ps, "bn1.weight", 1, (int64_t[]){6}, !frozen_bn);
  m->be1 = param(m->ps, "bn1.bias", 1, (int64_t[]){6}, !frozen_bn);
  m->rm1 = param(m->ps, "bn1.running_mean", 1, (int64_t[]){6}, 0);
  m->rv1 = param(m->ps, "bn1.running_var", 1, (int64_t[]){6}, 0);
  m->w2 = param(m->ps, "conv2.weight", 4, (int64_t[]){4, 6, 1, 1}, 1);
  m->b2 = param(m->ps, "conv2.bias", 1, (int64_t[]){4}, 1);
  m->gain = param(m->ps, "gain", 4, (int64_t[]){2, 4, 4, 4}, 1);
  alloc_params(m->ps);
  fill_rand(m->w1, 0.4f, 0);
  fill_rand(m->b1, 0.1f, 0);
  fill_rand(m->g1, 0.3f, 1);
  fill_rand(m->be1, 0.2f, 0);
  fill_rand(m->rm1, 0.2f, 0);
  fill_rand(m->rv1, 0.3f, 1);
  fill_rand(m->w2, 0.5f, 0);
  fill_rand(m->b2, 0.1f, 0);
  fill_rand(m->gain, 0.5f, 1);
  for (size_t i = 0; i < sizeof m->xin / sizeof m->xin[0]; i++)
    m->xin[i] = frand();
  for (size_t i = 0; i < sizeof m->labels / sizeof m->labels[0]; i++)
    m->labels[i] = i % 7 == 3 ? 255 : (int32_t)(i * 5 % 4);
  for (int i = 0; i < 16; i++)
    m->targets[i] = (float)(i % 3 == 0);
}

/* conv3x3+bias -> BN -> ReLU -> maxpool2 -> dropout -> conv1x1 -> x gain (MUL) -> concat with
 * its resize -> softmax/log_softmax branches -> masked CE + multilabel loss on GAP. */
static ecs_tensor *net_forward(ecs_ctx *ctx, net *m, ecs_tensor **xout) {
  ecs_tensor *x = ecs_from_host(ctx, ECS_F32, 4, (int64_t[]){2, 3, 8, 8}, m->xin);
  if (x) x->requires_grad = 1;
  if (xout) *xout = x;
  ecs_tensor *h = ecs_conv2d(ctx, x, m->w1, m->b1, 1, 1, 1, 1);
  h = ecs_batchnorm(ctx, h, m->g1, m->be1, m->rm1, m->rv1, !m->frozen_bn, 0.1f, 1e-5f);
  h = ecs_relu(ctx, h);
  h = ecs_max_pool2d(ctx, h, 2, 2, 0, 0);
  if (m->dropout) h = ecs_dropout(ctx, h, 0.3f);
  h = ecs_conv2d(ctx, h, m->w2, m->b2, 1, 0, 1, 1);
  h = ecs_mul(ctx, h, m->gain);
  ecs_tensor *small = ecs_avg_pool2d(ctx, h, 2, 2, 0, 0, 1);
  ecs_tensor *up = ecs_resize_bilinear(ctx, small, 4, 4);
  ecs_tensor *cat = ecs_concat(ctx, 2, (ecs_tensor *[]){h, up});
  ecs_tensor *logits = ecs_axpby(ctx, 0.7f, h, -0.4f, up);
  ecs_tensor *labels = ecs_from_host(ctx, ECS_I32, 3, (int64_t[]){2, 4, 4}, m->labels);
  ecs_tensor *ce = ecs_masked_ce(ctx, logits, labels, NULL, 255);
  ecs_tensor *sm = ecs_softmax(ctx, cat, NULL);
  ecs_tensor *lsm = ecs_log_softmax(ctx, ecs_scale(ctx, cat, 0.5f, 0.1f), NULL);
  ecs_tensor *both = ecs_add(ctx, ecs_mul(ctx, sm, sm), ecs_scale(ctx, lsm, 0.3f, 1.0f));
  ecs_tensor *pooled = ecs_gap(ctx, ecs_relu6(ctx, both));
  ecs_tensor *t = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){2, 8}, m->targets);
  ecs_tensor *ml = ecs_ml_soft_margin(ctx, pooled, t);
  return ecs_axpby(ctx, 1.0f, ce, 2.0f, ml);
}

static float net_loss(ecs_ctx *ctx, net *m, uint64_t seed) {
  ecs_ctx_reset(ctx);
  ecs_ctx_set_seed(ctx, seed);
  int g = ecs_ctx_grad_enabled(ctx);
  ecs_ctx_set_grad(ctx, 0);
  float v = scalar(ctx, net_forward(ctx, m, NULL));
  ecs_ctx_set_grad(ctx, g);
  return v;
}

/* Compares analytic and central-difference gradients of up to 27 elements of t (a parameter, or
 * the input when t == NULL). ReLU and max pooling have kinks, and a perturbation that crosses
 * one spoils that element's difference, so a few outliers are allowed: an element is bad when it
 * is off by more than 2% (plus a small absolute floor for float rounding of the loss); the check
 * fails when more than a fifth are bad or the relative L2 error of all of them exceeds 5%. A
 * wrong backward is wrong almost everywhere. */
static int fd_check(ecs_ctx *ctx, net *m, ecs_tensor *t, const float *analytic, uint64_t seed,
                    double *rel) {
  float *v = t ? (float *)t->data : m->xin;
  int64_t n = t ? ecs_nelements(t) : (int64_t)(sizeof m->xin / sizeof m->xin[0]);
  int64_t step = n > 24 ? n / 24 : 1;
  double num = 0, den = 0;
  int cnt = 0, bad = 0;
  const float h = 2e-3f;
  for (int64_t i = 0; i < n; i += step) {
    float keep = v[i];
    v[i] = keep + h;
    double lp = net_loss(ctx, m, seed);
    v[i] = keep - h;
    double lm = net_loss(ctx, m, seed);
    v[i] = keep;
    double fd = (lp - lm) / (2 * h), d = fabs(fd - analytic[i]);
    num += d * d;
    den += fd * fd;
    cnt++;
    bad += d > 0.02 * fmax(fabs(fd), fabs(analytic[i])) + 2e-4;
  }
  /* a gradient that is zero by construction (a bias before training BN) has only noise left:
   * compare it on an absolute floor instead */
  *rel = sqrt(num) / fmax(sqrt(den), 1e-3 * sqrt((double)cnt));
  return *rel <= 5e-2 && bad * 5 <= cnt;
}

static void grad_check(const char *devname, int frozen_bn, int dropout) {
  ecs_backend *be = backend(devname);
  ecs_err err = {0};
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  net m;
  net_init(&m, frozen_bn, dropout);
  ecs_ctx_set_training(ctx, dropout);
  ecs_ctx_set_grad(ctx, 1);
  ecs_ctx_set_seed(ctx, 99);
  ecs_tensor *x = NULL;
  ecs_tensor *loss = net_forward(ctx, &m, &x);
  if (!loss || ecs_backward(ctx, loss, 1.0f) != ECS_OK) {
    ecs_ctx_status(ctx, &err);
    fail_msg("%s: %s", devname, err.msg);
  }
  size_t n_in = (size_t)ecs_nelements(x);
  float *gx = malloc(n_in * sizeof *gx);
  assert_non_null(x->grad);
  assert_int_equal(ecs_to_host(ctx, x->grad, gx, n_in * sizeof *gx), ECS_OK);
  if (frozen_bn) {
    assert_null(m.g1->grad);
    assert_null(m.be1->grad);
  }
  /* BN in training mode moved the running statistics; freeze them for the differences */
  for (size_t i = 0; i < ecs_params_count(m.ps); i++) {
    ecs_tensor *p = ecs_params_at(m.ps, i);
    if (!p->grad) continue;
    double e;
    if (!fd_check(ctx, &m, p, p->grad->data, 99, &e))
      fail_msg("%s (frozen BN %d, dropout %d): gradient of %s off (relative L2 %.3g)", devname,
               frozen_bn, dropout, p->name, e);
  }
  double e;
  if (!fd_check(ctx, &m, NULL, gx, 99, &e))
    fail_msg("%s: input gradient off (relative L2 %.3g)", devname, e);
  free(gx);
  ecs_ctx_free(ctx);
  ecs_params_free(m.ps);
  ecs_backend_free(be);
}

static void test_gradients_match_finite_differences(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    grad_check(g_devs[k], 0, 0);
    grad_check(g_devs[k], 1, 0);
    grad_check(g_devs[k], 0, 1);
  }
}

/* ---- the tape's bookkeeping ---------------------------------------------------------------- */

static void test_shared_weights_accumulate(void **state) {
  (void)state;
  ecs_backend *be = backend("cpu-ref");
  ecs_err err = {0};
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  ecs_params *ps = ecs_params_new(&err);
  ecs_tensor *w = param(ps, "w", 2, (int64_t[]){2, 3}, 1);
  ecs_tensor *f = param(ps, "frozen", 2, (int64_t[]){2, 3}, 0);
  alloc_params(ps);
  fill_rand(w, 1, 0);
  fill_rand(f, 1, 0);
  float x1[6], x2[6], t[6] = {1, 0, 1, 0, 0, 1};
  for (int i = 0; i < 6; i++)
    x1[i] = frand(), x2[i] = frand();
  ecs_ctx_set_grad(ctx, 1);
  /* two passes through w (like F and F'), one loss: d/dw = d1 + d2 */
  ecs_tensor *a = ecs_mul(ctx, ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){2, 3}, x1), w);
  ecs_tensor *b = ecs_mul(ctx, ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){2, 3}, x2), w);
  ecs_tensor *tt = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){2, 3}, t);
  ecs_tensor *loss =
      ecs_add(ctx, ecs_ml_soft_margin(ctx, ecs_mul(ctx, a, f), tt), ecs_ml_soft_margin(ctx, b, tt));
  assert_int_equal(ecs_backward(ctx, loss, 1.0f), ECS_OK);
  float g1[6];
  memcpy(g1, w->grad->data, sizeof g1);
  /* expected: d/dw_i of mean(-[t log s + (1-t) log(1-s)]) = (s - t) / 6 * d(logit)/dw */
  for (int i = 0; i < 6; i++) {
    float fw = ((float *)f->data)[i], wv = ((float *)w->data)[i];
    float s1 = 1 / (1 + expf(-x1[i] * wv * fw)), s2 = 1 / (1 + expf(-x2[i] * wv));
    float want = (s1 - t[i]) / 6 * x1[i] * fw + (s2 - t[i]) / 6 * x2[i];
    assert_float_equal(g1[i], want, 1e-5);
  }
  assert_null(f->grad); /* frozen: no gradient at all */
  /* a second backward over the same tape adds the same amount again */
  assert_int_equal(ecs_backward(ctx, loss, 1.0f), ECS_OK);
  for (int i = 0; i < 6; i++)
    assert_float_equal(((float *)w->grad->data)[i], 2 * g1[i], 1e-5);
  /* scale seeds d(loss) */
  assert_int_equal(ecs_params_zero_grads(ps, &err), ECS_OK);
  assert_int_equal(ecs_backward(ctx, loss, 0.5f), ECS_OK);
  for (int i = 0; i < 6; i++)
    assert_float_equal(((float *)w->grad->data)[i], 0.5f * g1[i], 1e-6);
  ecs_ctx_free(ctx);
  ecs_params_free(ps);
  ecs_backend_free(be);
}

static void test_no_gradient_records_nothing(void **state) {
  (void)state;
  ecs_backend *be = backend("cpu-ref");
  ecs_err err = {0};
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  ecs_params *ps = ecs_params_new(&err);
  ecs_tensor *w = param(ps, "w", 1, (int64_t[]){4}, 1);
  ecs_tensor *f = param(ps, "f", 1, (int64_t[]){4}, 0);
  alloc_params(ps);
  fill_rand(w, 1, 0);
  ecs_tensor *x = ecs_new(ctx, ECS_F32, 1, (int64_t[]){4});
  memset(x->data, 0, 16);
  /* inference: nothing recorded even through trainable parameters */
  ecs_tensor *y = ecs_relu(ctx, ecs_add(ctx, x, w));
  assert_non_null(y);
  assert_int_equal(ecs_ctx_tape_len(ctx), 0);
  assert_false(y->requires_grad);
  /* gradients on: a subgraph of frozen tensors records nothing, the rest does */
  ecs_ctx_set_grad(ctx, 1);
  ecs_tensor *z = ecs_scale(ctx, ecs_mul(ctx, x, f), 2, 1);
  assert_int_equal(ecs_ctx_tape_len(ctx), 0);
  assert_false(z->requires_grad);
  ecs_tensor *u = ecs_mul(ctx, z, w);
  assert_int_equal(ecs_ctx_tape_len(ctx), 1);
  assert_true(u->requires_grad);
  ecs_tensor *d = ecs_detach(ctx, u);
  assert_false(d->requires_grad);
  assert_ptr_equal(d->data, u->data);
  ecs_scale(ctx, d, 1, 0);
  ecs_maxmin_norm(ctx, ecs_new(ctx, ECS_F32, 2, (int64_t[]){1, 4}), 1e-5f);
  assert_int_equal(ecs_ctx_tape_len(ctx), 1);
  /* a loss that depends on nothing that trains cannot be differentiated */
  ecs_tensor *c = ecs_new(ctx, ECS_F32, 1, (int64_t[]){1});
  assert_int_equal(ecs_backward(ctx, c, 1), ECS_ERR_INVALID);
  ecs_ctx_free(ctx);
  ecs_params_free(ps);
  ecs_backend_free(be);
}

static void test_arena_steady_state(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    ecs_backend *be = backend(g_devs[k]);
    ecs_err err = {0};
    ecs_ctx *ctx = ecs_ctx_new(be, &err);
    net m;
    net_init(&m, 0, 1);
    ecs_ctx_set_grad(ctx, 1);
    ecs_ctx_set_training(ctx, 1);
    size_t bytes[6];
    void *first_data[6];
    for (int pass = 0; pass < 6; pass++) {
      ecs_ctx_reset(ctx);
      ecs_tensor *loss = net_forward(ctx, &m, NULL);
      assert_int_equal(ecs_backward(ctx, loss, 1), ECS_OK);
      /* a big tensor in the second pass and later makes the arena grow once more, then settle */
      if (pass >= 1) assert_non_null(ecs_new(ctx, ECS_F32, 1, (int64_t[]){600000}));
      bytes[pass] = ecs_ctx_arena_bytes(ctx);
      first_data[pass] = loss->data;
      assert_true(ecs_ctx_tape_len(ctx) > 10);
    }
    for (int pass = 3; pass < 6; pass++) {
      assert_int_equal(bytes[pass], bytes[2]);
      assert_ptr_equal(first_data[pass], first_data[2]);
    }
    assert_true(bytes[1] > bytes[0]);
    assert_int_equal((uintptr_t)first_data[5] % 64, 0);
    ecs_ctx_free(ctx);
    ecs_params_free(m.ps);
    ecs_backend_free(be);
  }
}

static void test_sticky_errors_and_transfers(void **state) {
  (void)state;
  ecs_backend *be = backend("cpu");
  ecs_err err = {0};
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  float h[6] = {1, -2, 3, -4, 5, -6}, out[6];
  ecs_tensor *a = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){2, 3}, h);
  ecs_tensor *b = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){3, 2}, h);
  assert_int_equal(ecs_to_host(ctx, ecs_relu(ctx, a), out, sizeof out), ECS_OK);
  for (int i = 0; i < 6; i++)
    assert_true(out[i] == (h[i] > 0 ? h[i] : 0));
  assert_int_equal(ecs_ctx_status(ctx, &err), ECS_OK);
  /* a shape mismatch fails, and everything after it fails too */
  assert_null(ecs_add(ctx, a, b));
  assert_null(ecs_relu(ctx, a));
  assert_null(ecs_new(ctx, ECS_F32, 1, (int64_t[]){3}));
  assert_int_equal(ecs_to_host(ctx, a, out, sizeof out), ECS_ERR_INVALID);
  assert_int_equal(ecs_ctx_status(ctx, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "add"));
  ecs_ctx_reset(ctx);
  assert_int_equal(ecs_ctx_status(ctx, &err), ECS_OK);
  /* NULL inputs (the result of an earlier failure) are an error, not a crash */
  assert_null(ecs_conv2d(ctx, NULL, NULL, NULL, 1, 0, 1, 1));
  assert_int_equal(ecs_ctx_status(ctx, &err), ECS_ERR_INVALID);
  ecs_ctx_reset(ctx);
  a = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){2, 3}, h);
  assert_int_equal(ecs_to_host(ctx, a, out, 8), ECS_ERR_INVALID); /* destination too small */
  ecs_ctx_reset(ctx);
  ecs_tensor *x = ecs_new_4d(ctx, ECS_F32, 1, 2, 3, 3);
  ecs_tensor *w = ecs_new_4d(ctx, ECS_F32, 1, 2, 5, 5);
  assert_null(ecs_conv2d(ctx, x, w, NULL, 1, 0, 1, 1)); /* kernel larger than the input */
  ecs_ctx_status(ctx, &err);
  assert_non_null(strstr(err.msg, "larger"));
  assert_ptr_equal(ecs_ctx_backend(ctx), be);
  ecs_ctx_free(ctx);
  ecs_ctx_free(NULL);
  ecs_backend_free(be);
}

static int g_calls, g_stop_at;
static int yield_fn(void *user) {
  (void)user;
  return ++g_calls == g_stop_at;
}

static void test_yield_hook(void **state) {
  (void)state;
  ecs_backend *be = backend("cpu-ref");
  ecs_err err = {0};
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  net m;
  net_init(&m, 0, 0);
  ecs_ctx_set_grad(ctx, 1);
  ecs_ctx_set_yield(ctx, yield_fn, NULL);
  g_calls = 0;
  g_stop_at = -1;
  ecs_tensor *loss = net_forward(ctx, &m, NULL);
  int fwd_calls = g_calls;
  assert_true(fwd_calls >= 20);
  assert_int_equal(ecs_backward(ctx, loss, 1), ECS_OK);
  int total = g_calls;
  assert_true(total > fwd_calls + 10); /* called between backward ops too */
  /* stopping mid-backward */
  ecs_ctx_reset(ctx);
  g_calls = 0;
  g_stop_at = fwd_calls + 5;
  loss = net_forward(ctx, &m, NULL);
  assert_int_equal(ecs_backward(ctx, loss, 1), ECS_ERR_CANCELLED);
  assert_int_equal(ecs_ctx_status(ctx, &err), ECS_ERR_CANCELLED);
  /* stopping mid-forward */
  ecs_ctx_reset(ctx);
  g_calls = 0;
  g_stop_at = 3;
  assert_null(net_forward(ctx, &m, NULL));
  assert_int_equal(ecs_ctx_status(ctx, &err), ECS_ERR_CANCELLED);
  ecs_ctx_free(ctx);
  ecs_params_free(m.ps);
  ecs_backend_free(be);
}

static void test_dropout_draws_a_new_mask_per_call(void **state) {
  (void)state;
  ecs_backend *be = backend("cpu-ref");
  ecs_err err = {0};
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  ecs_tensor *x = ecs_new(ctx, ECS_F32, 1, (int64_t[]){256});
  for (int i = 0; i < 256; i++)
    ((float *)x->data)[i] = 1;
  assert_ptr_equal(ecs_dropout(ctx, x, 0.5f), x); /* not training: identity */
  ecs_ctx_set_training(ctx, 1);
  ecs_ctx_set_seed(ctx, 7);
  ecs_tensor *a = ecs_dropout(ctx, x, 0.5f), *b = ecs_dropout(ctx, x, 0.5f);
  ecs_ctx_set_seed(ctx, 7);
  ecs_tensor *c = ecs_dropout(ctx, x, 0.5f);
  assert_non_null(a);
  assert_memory_equal(a->data, c->data, 1024);
  assert_memory_not_equal(a->data, b->data, 1024);
  int kept = 0;
  for (int i = 0; i < 256; i++) {
    float v = ((float *)a->data)[i];
    assert_true(v == 0 || v == 2);
    kept += v == 2;
  }
  assert_true(kept > 90 && kept < 166);
  assert_null(ecs_dropout(ctx, x, 1.5f));
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
}

/* ---- a backend with a private layout ------------------------------------------------------
 * "odd" runs the reference kernels but lays ReLU outputs out in a private layout (id 7, plain
 * bytes underneath) and, like a real backend, refuses every op but COPY on such inputs. The
 * ctx must then convert inputs to plain copies, and gradients must still reach the originals. */
enum { ODD_LAYOUT = 7 };

static int odd_all_plain(const ecs_op *op) {
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && op->src[i]->layout != ECS_LAYOUT_PLAIN) return 0;
  return 1;
}

static int odd_supports(ecs_device *dev, const ecs_op *op) {
  (void)dev;
  if (op->type == ECS_OP_CONV2D && op->p.conv.act != ECS_ACT_NONE) return 0; /* no fused ops */
  return op->type == ECS_OP_COPY || odd_all_plain(op);
}

/* runs op on cpu-ref with every tensor viewed as plain */
static ecs_status odd_compute(ecs_backend *be, ecs_op *op, ecs_err *err) {
  ecs_op o = *op;
  ecs_tensor s[ECS_OP_MAX_SRC], d[ECS_OP_MAX_DST];
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i]) s[i] = *op->src[i], s[i].layout = ECS_LAYOUT_PLAIN, o.src[i] = &s[i];
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i]) d[i] = *op->dst[i], d[i].layout = ECS_LAYOUT_PLAIN, o.dst[i] = &d[i];
  return ecs_backend_compute(be->context, &o, err);
}

static ecs_status odd_prepare(ecs_backend *be, ecs_op *op, ecs_err *err) {
  (void)be, (void)err;
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i]) {
      op->dst[i]->layout = op->type == ECS_OP_RELU ? ODD_LAYOUT : ECS_LAYOUT_PLAIN;
      op->dst[i]->nbytes = ecs_plain_nbytes(op->dst[i]);
    }
  return ECS_OK;
}

static const char *odd_name(ecs_backend *be) {
  (void)be;
  return "odd";
}
static void odd_stats(ecs_backend *be, ecs_backend_stats *out) {
  ecs_backend_get_stats(be->context, out);
}
static void odd_free(ecs_backend *be) {
  ecs_backend_free(be->context);
  free(be);
}
static const char *odd_dev_name(ecs_device *dev) {
  (void)dev;
  return "odd";
}
static ecs_buffer_type *odd_buft(ecs_device *dev) {
  (void)dev;
  return ecs_host_buffer_type();
}
static ecs_backend *odd_init(ecs_device *dev, const ecs_backend_params *p, ecs_err *err);
static ecs_device g_odd_dev = {.iface = {.get_name = odd_dev_name,
                                         .get_description = odd_dev_name,
                                         .init_backend = odd_init,
                                         .get_buffer_type = odd_buft,
                                         .supports_op = odd_supports,
                                         .is_host = 1}};
static ecs_backend *odd_init(ecs_device *dev, const ecs_backend_params *p, ecs_err *err) {
  ecs_backend *be = calloc(1, sizeof *be);
  be->iface = (struct ecs_backend_i){.get_name = odd_name,
                                     .free = odd_free,
                                     .prepare = odd_prepare,
                                     .compute = odd_compute,
                                     .get_stats = odd_stats};
  be->device = dev;
  be->context = ecs_backend_init(ecs_device_find("cpu-ref", err), p, err);
  return be;
}

static void test_private_layouts_fall_back_to_plain(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_backend *be = ecs_backend_init(&g_odd_dev, NULL, &err);
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  ecs_params *ps = ecs_params_new(&err);
  ecs_tensor *w = param(ps, "w", 2, (int64_t[]){1, 4}, 1);
  alloc_params(ps);
  float wv[4] = {0.5f, -1, 2, 1.5f}, xv[4] = {1, 2, -0.5f, 0.25f}, tv[4] = {1, 0, 0, 1};
  memcpy(w->data, wv, sizeof wv);
  ecs_ctx_set_grad(ctx, 1);
  ecs_tensor *x = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){1, 4}, xv);
  ecs_tensor *y = ecs_relu(ctx, ecs_mul(ctx, x, w));
  assert_non_null(y);
  assert_int_equal(y->layout, ODD_LAYOUT);
  ecs_tensor *z = ecs_scale(ctx, y, 2, 0); /* refused on y as is: runs on a plain copy */
  ecs_tensor *t = ecs_from_host(ctx, ECS_F32, 2, (int64_t[]){1, 4}, tv);
  ecs_tensor *loss =
      ecs_add(ctx, ecs_ml_soft_margin(ctx, z, t), ecs_ml_soft_margin(ctx, ecs_to_plain(ctx, y), t));
  if (!loss || ecs_backward(ctx, loss, 1) != ECS_OK) {
    ecs_ctx_status(ctx, &err);
    fail_msg("%s", err.msg);
  }
  float yh[4];
  assert_int_equal(ecs_to_host(ctx, y, yh, sizeof yh), ECS_OK);
  for (int i = 0; i < 4; i++) {
    float yi = xv[i] * wv[i] > 0 ? xv[i] * wv[i] : 0;
    assert_float_equal(yh[i], yi, 1e-6);
    float s2 = 1 / (1 + expf(-2 * yi)), s1 = 1 / (1 + expf(-yi));
    float dy = (s2 - tv[i]) / 4 * 2 + (s1 - tv[i]) / 4;
    assert_float_equal(((float *)w->grad->data)[i], yi > 0 ? dy * xv[i] : 0, 1e-6);
  }
  ecs_ctx_free(ctx);
  ecs_params_free(ps);
  ecs_backend_free(be);
}

/* ecs_conv2d_act is one fused op at inference where the backend takes it, and the conv and
 * relu pair where a gradient is recorded (the fused op has no backward) or the backend lacks
 * it; always the values (and gradients) of ecs_relu(ecs_conv2d(...)). */
static void test_conv_act_fuses_only_for_inference(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_backend *bes[2] = {backend("cpu-ref"), ecs_backend_init(&g_odd_dev, NULL, &err)};
  for (int k = 0; k < 2; k++) {
    ecs_ctx *ctx = ecs_ctx_new(bes[k], &err);
    ecs_params *ps = ecs_params_new(&err);
    ecs_tensor *w = param(ps, "w", 4, (int64_t[]){3, 2, 3, 3}, 1);
    ecs_tensor *b = param(ps, "b", 1, (int64_t[]){3}, 1);
    alloc_params(ps);
    ecs_tensor *x = ecs_new(ctx, ECS_F32, 4, (int64_t[]){2, 2, 5, 6});
    /* values of its own: the shared generator's sequence stays the other tests' */
    ecs_tensor *ts[3] = {w, b, x};
    for (int i = 0; i < 3; i++)
      for (int64_t j = 0; j < ecs_nelements(ts[i]); j++)
        ((float *)ts[i]->data)[j] = (float)((j * 7919 + 31 * i) % 23) / 11.5f - 1.0f;
    float fused[2 * 3 * 3 * 3], pair[2 * 3 * 3 * 3];
    ecs_backend_stats s0, s1, s2;
    ecs_backend_get_stats(bes[k], &s0);
    ecs_tensor *y = ecs_conv2d_act(ctx, x, w, b, 2, 1, 1, 1, ECS_ACT_RELU);
    ecs_backend_get_stats(bes[k], &s1);
    ecs_tensor *r = ecs_relu(ctx, ecs_conv2d(ctx, x, w, b, 2, 1, 1, 1));
    ecs_backend_get_stats(bes[k], &s2);
    assert_int_equal(ecs_ctx_tape_len(ctx), 0);
    if (k == 0) { /* one op; the odd backend lacks the fused one, where it runs as two */
      assert_int_equal(s1.ops - s0.ops, 1);
    } else {
      assert_int_equal(s1.ops - s0.ops, 2);
    }
    assert_int_equal(s2.ops - s1.ops, 2);
    assert_int_equal(ecs_to_host(ctx, y, fused, sizeof fused), ECS_OK);
    assert_int_equal(ecs_to_host(ctx, r, pair, sizeof pair), ECS_OK);
    assert_memory_equal(fused, pair, sizeof fused);
    /* recorded: the pair, and the gradient of the pair */
    float gw[2][3 * 2 * 3 * 3];
    for (int j = 0; j < 2; j++) {
      ecs_ctx_reset(ctx);
      ecs_ctx_set_grad(ctx, 1);
      assert_int_equal(ecs_params_zero_grads(ps, &err), ECS_OK);
      ecs_tensor *xj = ecs_from_host(ctx, ECS_F32, 4, (int64_t[]){2, 2, 5, 6}, x->data);
      ecs_tensor *yj = j ? ecs_conv2d_act(ctx, xj, w, b, 2, 1, 1, 1, ECS_ACT_RELU)
                         : ecs_relu(ctx, ecs_conv2d(ctx, xj, w, b, 2, 1, 1, 1));
      assert_int_equal(ecs_ctx_tape_len(ctx), 2);
      ecs_tensor *t = ecs_new(ctx, ECS_F32, 2, (int64_t[]){2, 3});
      memset(t->data, 0, t->nbytes);
      ecs_tensor *loss = ecs_ml_soft_margin(ctx, ecs_gap(ctx, yj), t);
      if (!loss || ecs_backward(ctx, loss, 1) != ECS_OK) {
        ecs_ctx_status(ctx, &err);
        fail_msg("%s", err.msg);
      }
      memcpy(gw[j], w->grad->data, sizeof gw[j]);
      ecs_ctx_set_grad(ctx, 0);
    }
    assert_memory_equal(gw[0], gw[1], sizeof gw[0]);
    ecs_ctx_free(ctx);
    ecs_params_free(ps);
    ecs_backend_free(bes[k]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sticky_errors_and_transfers),
      cmocka_unit_test(test_no_gradient_records_nothing),
      cmocka_unit_test(test_shared_weights_accumulate),
      cmocka_unit_test(test_dropout_draws_a_new_mask_per_call),
      cmocka_unit_test(test_yield_hook),
      cmocka_unit_test(test_arena_steady_state),
      cmocka_unit_test(test_private_layouts_fall_back_to_plain),
      cmocka_unit_test(test_conv_act_fuses_only_for_inference),
      cmocka_unit_test(test_gradients_match_finite_differences),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
