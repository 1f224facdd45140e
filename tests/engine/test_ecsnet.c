/* test_ecsnet.c - the model object: configuration, the model file and the backbones' shapes.
 *
 * Round trips must keep every weight and every configuration value; a file for another
 * backbone, another class count or with a corrupted shape must fail with the file and the
 * tensor named, leaving no half-loaded model behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "ecs/safetensors.h"

static char g_dir[256];

static void path_of(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/ecs-test-ecsnet-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static int64_t count_params(ecs_model *m, int trainable_only) {
  int64_t n = 0;
  ecs_params *ps = ecs_model_params(m);
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    if (!trainable_only || !t->frozen) n += ecs_nelements(t);
  }
  return n;
}

static void test_small_is_small(void **state) {
  (void)state;
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 6);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  assert_non_null(m);
  int64_t n = count_params(m, 0);
  assert_true(n > 100000 && n < 1000000);
  assert_int_equal(ecs_model_channels(m), 7);
  assert_int_equal(ecs_params_find(ecs_model_params(m), "fc8.weight")->ne[0], 7);
  ecs_model_free(m);
  ecs_model_free(NULL);
}

static void test_resnet38d_names_and_frozen(void **state) {
  (void)state;
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_RESNET38D, 20);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  assert_non_null(m);
  ecs_params *ps = ecs_model_params(m);
  const char *must[] = {"conv1a.weight",
                        "b2.conv_branch1.weight",
                        "b2_1.bn_branch2a.running_var",
                        "b4_5.conv_branch2b1.weight",
                        "b5.conv_branch1.weight",
                        "b6.conv_branch2b2.weight",
                        "b7.bn_branch2b2.weight",
                        "bn7.running_mean",
                        "fc8.weight"};
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
    assert_non_null(ecs_params_find(ps, must[i]));
  assert_null(ecs_params_find(ps, "b2_1.conv_branch1.weight")); /* same shape: identity */
  assert_true(ecs_params_find(ps, "conv1a.weight")->frozen);
  assert_true(ecs_params_find(ps, "b2_2.conv_branch2a.weight")->frozen);
  assert_true(ecs_params_find(ps, "b3.bn_branch2a.weight")->frozen);
  assert_false(ecs_params_find(ps, "b3.conv_branch2a.weight")->frozen);
  assert_int_equal(ecs_params_find(ps, "b7.conv_branch2b1.weight")->ne[0], 2048);
  /* wide ResNet-38 with a 21-way classifier: about 104 M parameters */
  int64_t n = count_params(m, 0);
  assert_true(n > 100000000 && n < 110000000);
  ecs_model_free(m);
}

static void test_save_load_round_trip(void **state) {
  (void)state;
  ecs_model_config *cfg = malloc(sizeof *cfg);
  ecs_model_config_default(cfg, ECS_BACKBONE_SMALL, 3);
  strcpy(cfg->class_names[0], "cat");
  strcpy(cfg->class_names[1], "pot\"ted \\ plant");
  strcpy(cfg->class_names[2], "caf\xc3\xa9");
  cfg->alpha_bg = 0.15f;
  cfg->hp.theta = 0.9f;
  cfg->hp.overlay_k = 2;
  cfg->hp.overlay_rates[1] = 5;
  cfg->hp.no_erase = 1;
  cfg->hp.beta = 0.5f;
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(cfg, NULL, 42, &e);
  assert_non_null(m);
  char p[300];
  path_of(p, sizeof p, "m.safetensors");
  assert_int_equal(ecs_model_save(m, p, &e), ECS_OK);
  ecs_model *l = ecs_model_load(p, NULL, &e);
  assert_non_null(l);
  const ecs_model_config *c = ecs_model_get_config(l);
  assert_int_equal(c->n_classes, 3);
  assert_string_equal(c->class_names[1], "pot\"ted \\ plant");
  assert_string_equal(c->class_names[2], "caf\xc3\xa9");
  assert_int_equal(ecs_model_class_id(l, "cat"), 1);
  assert_int_equal(ecs_model_class_id(l, "dog"), 0);
  assert_true(fabsf(c->alpha_bg - 0.15f) < 1e-7f);
  assert_true(fabsf(c->hp.theta - 0.9f) < 1e-7f);
  assert_true(fabsf(c->hp.beta - 0.5f) < 1e-7f);
  assert_int_equal(c->hp.overlay_k, 2);
  assert_int_equal(c->hp.overlay_rates[1], 5);
  assert_int_equal(c->hp.no_erase, 1);
  assert_int_equal(c->hp.bg_in_phi, 1);
  ecs_params *a = ecs_model_params(m), *b = ecs_model_params(l);
  assert_int_equal(ecs_params_count(a), ecs_params_count(b));
  for (size_t i = 0; i < ecs_params_count(a); i++) {
    ecs_tensor *x = ecs_params_at(a, i), *y = ecs_params_find(b, x->name);
    assert_non_null(y);
    assert_int_equal(x->frozen, y->frozen);
    assert_memory_equal(x->data, y->data, ecs_plain_nbytes(x));
  }
  /* a different seed gives different weights: the round trip above is not vacuous */
  ecs_model *o = ecs_model_new(cfg, NULL, 43, &e);
  ecs_tensor *w1 = ecs_params_find(a, "conv2.weight"),
             *w2 = ecs_params_find(ecs_model_params(o), "conv2.weight");
  assert_true(memcmp(w1->data, w2->data, ecs_plain_nbytes(w1)) != 0);
  ecs_model_free(o);
  ecs_model_free(m);
  ecs_model_free(l);
  free(cfg);
}

/* Rewrites the model file with one tensor replaced or one metadata value changed. */
static void rewrite(const char *src, const char *dst, const char *tensor, const int64_t *ne, int nd,
                    const char *mkey, const char *mval) {
  ecs_err e = {0};
  ecs_st_file *f = ecs_st_open(src, &e);
  assert_non_null(f);
  ecs_st_writer *w = ecs_st_writer_new(&e);
  for (size_t i = 0; i < ecs_st_count(f); i++) {
    const ecs_st_tensor *t = ecs_st_at(f, i);
    if (tensor && strcmp(t->name, tensor) == 0) {
      int64_t n = 1;
      for (int k = 0; k < nd; k++)
        n *= ne[k];
      float *z = calloc((size_t)n, sizeof *z);
      assert_int_equal(ecs_st_writer_add(w, t->name, ECS_F32, nd, ne, z, &e), ECS_OK);
      free(z);
    } else {
      assert_int_equal(ecs_st_writer_add(w, t->name, t->type, t->nd, t->ne, t->data, &e), ECS_OK);
    }
  }
  for (size_t i = 0; i < ecs_st_meta_count(f); i++) {
    const char *k = ecs_st_meta_key(f, i);
    const char *v = mkey && strcmp(k, mkey) == 0 ? mval : ecs_st_meta(f, k);
    assert_int_equal(ecs_st_writer_meta(w, k, v, &e), ECS_OK);
  }
  assert_int_equal(ecs_st_writer_save(w, dst, &e), ECS_OK);
  ecs_st_writer_free(w);
  ecs_st_close(f);
}

static void expect_load_error(const char *path, const char *word) {
  ecs_err e = {0};
  ecs_model *m = ecs_model_load(path, NULL, &e);
  assert_null(m);
  assert_int_not_equal(e.status, ECS_OK);
  if (!strstr(e.msg, path) || !strstr(e.msg, word))
    fail_msg("message '%s' lacks '%s'", e.msg, word);
}

static void test_bad_model_files(void **state) {
  (void)state;
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 2);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  char p[300], q[300];
  path_of(p, sizeof p, "good.safetensors");
  path_of(q, sizeof q, "bad.safetensors");
  assert_int_equal(ecs_model_save(m, p, &e), ECS_OK);
  ecs_model_free(m);

  int64_t ne[4] = {64, 32, 3, 3};
  rewrite(p, q, "conv2.weight", ne, 4, NULL, NULL);
  expect_load_error(q, "conv2.weight");
  rewrite(p, q, NULL, NULL, 0, "backbone", "vgg16d");
  expect_load_error(q, "conv1_1.weight");
  rewrite(p, q, NULL, NULL, 0, "backbone", "mobilenet");
  expect_load_error(q, "mobilenet");
  rewrite(p, q, NULL, NULL, 0, "classes", "[\"a\",\"b\",\"c\"]"); /* fc8 has 3 channels, not 4 */
  expect_load_error(q, "fc8.weight");
  rewrite(p, q, NULL, NULL, 0, "classes", "[\"a\",\"a\"]");
  expect_load_error(q, "twice");
  rewrite(p, q, NULL, NULL, 0, "classes", "cat,dog");
  expect_load_error(q, "classes");
  path_of(q, sizeof q, "missing.safetensors");
  expect_load_error(q, "missing.safetensors");
  path_of(q, sizeof q, "trunc.safetensors");
  FILE *f = fopen(q, "wb");
  fwrite("\x10\0\0\0\0\0\0\0{\"a\":", 1, 13, f);
  fclose(f);
  expect_load_error(q, "trunc");
}

/* Batch-norm statistics and affine parameters away from identity, so the fold has work to do. */
static void perturb_bn(ecs_model *m) {
  ecs_params *ps = ecs_model_params(m);
  unsigned seed = 12345;
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    const char *suf = strrchr(t->name, '.');
    int is_bn = strstr(t->name, "bn") != NULL && suf;
    if (!is_bn || strcmp(suf, ".num_batches_tracked") == 0) continue;
    int64_t n = ecs_nelements(t);
    float *v = malloc(sizeof(float) * (size_t)n);
    for (int64_t k = 0; k < n; k++) {
      float u = (float)(rand_r(&seed) % 10000) / 10000.0f;
      v[k] = !strcmp(suf, ".weight")         ? 0.5f + u
             : !strcmp(suf, ".bias")         ? 0.4f * u - 0.2f
             : !strcmp(suf, ".running_mean") ? 0.6f * u - 0.3f
                                             : 0.5f + 1.5f * u;
    }
    assert_int_equal(ecs_tensor_set_bytes(t, v, 0, sizeof(float) * (size_t)n, NULL), ECS_OK);
    free(v);
  }
}

static float *forward_host(ecs_model *m, ecs_ctx *ctx, const float *x, int n, int h, int w,
                           int grad, int64_t *count) {
  ecs_ctx_reset(ctx);
  ecs_ctx_set_grad(ctx, grad);
  int64_t ne[4] = {n, 3, h, w};
  ecs_tensor *out = ecs_model_forward(m, ctx, ecs_from_host(ctx, ECS_F32, 4, ne, x), 0, 0, NULL);
  ecs_err e = {0};
  assert_int_equal(ecs_ctx_status(ctx, &e), ECS_OK);
  *count = ecs_nelements(out);
  float *v = malloc(sizeof(float) * (size_t)*count);
  ecs_to_host(ctx, out, v, sizeof(float) * (size_t)*count);
  ecs_ctx_set_grad(ctx, 0);
  return v;
}

/* Two "cpu" backends on two threads, the second made with the fuse option off, and a ctx on
 * each: the same model run on both, with and without ReLU fused into the convolutions. */
typedef struct fuse_pair {
  ecs_backend *be, *be_off;
  ecs_ctx *ctx, *ctx_off;
} fuse_pair;

static void fuse_pair_init(fuse_pair *p) {
  ecs_err e = {0};
  ecs_device *cpu = ecs_device_find("cpu", NULL);
  p->be = ecs_backend_init(cpu, &(ecs_backend_params){.n_threads = 2}, &e);
  p->be_off = ecs_backend_init(cpu, &(ecs_backend_params){.n_threads = 2, .fuse = ECS_OPT_OFF}, &e);
  assert_non_null(p->be);
  assert_non_null(p->be_off);
  assert_int_equal(ecs_backend_get_params(p->be_off)->fuse, ECS_OPT_OFF);
  p->ctx = ecs_ctx_new(p->be, &e);
  p->ctx_off = ecs_ctx_new(p->be_off, &e);
  assert_non_null(p->ctx);
  assert_non_null(p->ctx_off);
}

static void fuse_pair_free(fuse_pair *p) {
  ecs_ctx_free(p->ctx);
  ecs_ctx_free(p->ctx_off);
  ecs_backend_free(p->be);
  ecs_backend_free(p->be_off);
}

/* Inference fuses ReLU into the convolution before it (ecs_conv2d_act) unless the backend was
 * made with .fuse = ECS_OPT_OFF: the fused forward runs n_fused fewer ops than the unfused one
 * and matches it within 1e-5 of the output's scale (the same convolutions; only where ReLU is
 * applied changes). Returns the largest absolute output. */
static double check_fused(ecs_model *m, const fuse_pair *p, const float *x, int h, int w,
                          int n_fused) {
  ecs_backend_stats s0, s1, t0, t1;
  int64_t n0, n1;
  ecs_backend_get_stats(p->be, &s0);
  float *fused = forward_host(m, p->ctx, x, 2, h, w, 0, &n0);
  ecs_backend_get_stats(p->be, &s1);
  ecs_backend_get_stats(p->be_off, &t0);
  float *plain = forward_host(m, p->ctx_off, x, 2, h, w, 0, &n1);
  ecs_backend_get_stats(p->be_off, &t1);
  assert_int_equal(n0, n1);
  uint64_t ops_fused = s1.ops - s0.ops, ops_plain = t1.ops - t0.ops;
  if (ops_plain - ops_fused != (uint64_t)n_fused)
    fail_msg("fusion saved %lld ops, expected %d", (long long)(ops_plain - ops_fused), n_fused);
  double scale = 0, diff = 0;
  for (int64_t k = 0; k < n0; k++) {
    scale = fmax(scale, fabs(plain[k]));
    diff = fmax(diff, fabs(plain[k] - fused[k]));
  }
  assert_true(scale > 0);
  if (!(diff <= 1e-5 * scale)) fail_msg("fused forward differs by %.3g (scale %.3g)", diff, scale);
  free(fused), free(plain);
  return scale;
}

/* ecs_model_fold_bn: the folded inference forward matches the unfolded one within 1e-4 of the
 * output's scale, and passes that record gradients keep the unfolded network (nothing fused).
 * Once folded, inference fuses every conv+relu pair (n_fused) and gives the same output. */
static void check_fold(ecs_backbone bb, int h, int w, int n_fused) {
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, bb, 4);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 3, &e);
  assert_non_null(m);
  perturb_bn(m);
  fuse_pair p;
  fuse_pair_init(&p);
  float *x = malloc(sizeof(float) * 2 * 3 * (size_t)(h * w));
  for (int j = 0; j < 2 * 3 * h * w; j++)
    x[j] = (float)((j * 7919) % 29) / 14.5f - 1.0f;
  int64_t n0, n1, n2;
  ecs_backend_stats r0, r1, g0, g1;
  ecs_backend_get_stats(p.be_off, &r0);
  float *ref = forward_host(m, p.ctx_off, x, 2, h, w, 0, &n0);
  ecs_backend_get_stats(p.be_off, &r1);
  assert_false(ecs_model_is_folded(m));
  check_fused(m, &p, x, h, w, 0); /* batch norm between conv and relu: nothing to fuse */
  assert_int_equal(ecs_model_fold_bn(m, &e), ECS_OK);
  assert_true(ecs_model_is_folded(m));
  check_fused(m, &p, x, h, w, n_fused);
  ecs_backend_stats f0, f1, u0, u1;
  ecs_backend_get_stats(p.be, &f0);
  float *fold = forward_host(m, p.ctx, x, 2, h, w, 0, &n1);
  ecs_backend_get_stats(p.be, &f1);
  /* the fold fixed every weight, the classifier's too, so the backend keeps their reordered
   * copies: with the mark taken off the trainable ones, each forward reorders them again */
  ecs_params *ps = ecs_model_params(m);
  for (size_t i = 0; i < ecs_params_count(ps); i++)
    assert_true(ecs_params_at(ps, i)->fixed);
  for (size_t i = 0; i < ecs_params_count(ps); i++)
    ecs_params_at(ps, i)->fixed = 0;
  ecs_backend_get_stats(p.be, &u0);
  free(forward_host(m, p.ctx, x, 2, h, w, 0, &n1));
  ecs_backend_get_stats(p.be, &u1);
  if (!(f1.reorders - f0.reorders < u1.reorders - u0.reorders))
    fail_msg("a folded forward ran %llu reorders, one with its weights not fixed %llu",
             (unsigned long long)(f1.reorders - f0.reorders),
             (unsigned long long)(u1.reorders - u0.reorders));
  assert_int_equal(ecs_model_fold_bn(m, &e), ECS_OK); /* fixed again */
  ecs_backend_get_stats(p.be_off, &g0);
  float *grad = forward_host(m, p.ctx_off, x, 2, h, w, 1, &n2);
  ecs_backend_get_stats(p.be_off, &g1);
  /* the pass that records gradients runs the unfolded network, op for op */
  assert_int_equal(g1.ops - g0.ops, r1.ops - r0.ops);
  assert_int_equal(n0, n1);
  assert_int_equal(n0, n2);
  double scale = 0, diff = 0, diff_grad = 0;
  for (int64_t k = 0; k < n0; k++) {
    scale = fmax(scale, fabs(ref[k]));
    diff = fmax(diff, fabs(ref[k] - fold[k]));
    diff_grad = fmax(diff_grad, fabs(ref[k] - grad[k]));
  }
  assert_true(scale > 0);
  assert_true(diff <= 1e-4 * scale);
  /* the same ops as ref; the fold fixed the weights, so a 3x3 convolution may now run as
   * Winograd (dnnl-wino.c), which rounds differently */
  assert_true(diff_grad <= 1e-4 * scale);
  free(ref), free(fold), free(grad), free(x);
  fuse_pair_free(&p);
  ecs_model_free(m);
}

/* conv+relu pairs fused in one inference forward: the small network's four; resnet38d's
 * conv_branch2a of its 15 plain blocks, and b6's and b7's two 3x3 bottleneck convolutions;
 * vgg16d's 13 convolutions, fc6 and fc7 */
#define FUSED_SMALL 4
#define FUSED_R38   19
#define FUSED_VGG   15
/* efficientnet_lite0: the stem, the 15 expansions, the 16 depthwise convolutions and the head
 * conv with ReLU6 (the projections fold but have no activation) */
#define FUSED_LITE0 33

static void test_fold_bn_small(void **state) {
  (void)state;
  check_fold(ECS_BACKBONE_SMALL, 45, 38, FUSED_SMALL);
}

static void test_fold_bn_resnet38d(void **state) {
  (void)state;
  check_fold(ECS_BACKBONE_RESNET38D, 24, 17, FUSED_R38);
}

static void test_fold_bn_lite0(void **state) {
  (void)state;
  check_fold(ECS_BACKBONE_EFFICIENTNET_LITE0, 65, 40, FUSED_LITE0);
}

/* efficientnet_lite0: the checkpoint's 4,694,024 floats (weights and running statistics, the
 * 1000-way fc with its bias) plus fc8's background channel; output stride 32 with ceil, as its
 * stride-2 convolutions give; inference sizes snap to 32m+1. */
static void test_lite0_table(void **state) {
  (void)state;
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_EFFICIENTNET_LITE0, 1000);
  assert_int_equal(cfg.norm, ECS_NORM_TF128);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  assert_non_null(m);
  /* the checkpoint's floats, plus fc8's background channel (1280 + 1) */
  assert_int_equal(count_params(m, 0), 4694024 + 1281);
  assert_non_null(ecs_params_find(ecs_model_params(m), "fc8.bias"));
  assert_null(ecs_params_find(ecs_model_params(m), "_blocks.0._expand_conv.weight"));
  assert_int_equal(ecs_params_find(ecs_model_params(m), "_blocks.15._depthwise_conv.weight")->ne[0],
                   1152);
  assert_int_equal(ecs_model_output_stride(m), 32);
  assert_int_equal(ecs_model_step_grid(m, 225), 8);
  assert_int_equal(ecs_model_step_grid(m, 224), 7);
  int in[] = {8, 33, 48, 49, 224, 240, 241, 500}, snapped[] = {33, 33, 33, 65, 225, 225, 257, 513};
  for (int i = 0; i < 8; i++)
    assert_int_equal(ecs_model_input_size(m, in[i]), snapped[i]);
  ecs_model_free(m);
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 3);
  m = ecs_model_new(&cfg, NULL, 1, &e);
  assert_int_equal(ecs_model_output_stride(m), 8);
  assert_int_equal(ecs_model_input_size(m, 224), 224);
  ecs_model_free(m);
}

static void test_fold_bn_vgg16d_has_nothing_to_fold(void **state) {
  (void)state;
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_VGG16D, 3);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  assert_non_null(m);
  assert_int_equal(ecs_model_fold_bn(m, &e), ECS_OK);
  assert_false(ecs_model_is_folded(m));
  /* nothing folded, but its conv+relu pairs still fuse for inference */
  fuse_pair p;
  fuse_pair_init(&p);
  int h = 24, w = 17;
  float *x = malloc(sizeof(float) * 2 * 3 * (size_t)(h * w));
  for (int j = 0; j < 2 * 3 * h * w; j++)
    x[j] = (float)((j * 7919) % 29) / 14.5f - 1.0f;
  check_fused(m, &p, x, h, w, FUSED_VGG);
  free(x);
  fuse_pair_free(&p);
  ecs_model_free(m);
}

static void test_forward_shapes(void **state) {
  (void)state;
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 5);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  ecs_backend *be =
      ecs_backend_init(ecs_device_find("cpu", NULL), &(ecs_backend_params){.n_threads = 2}, &e);
  assert_non_null(be);
  ecs_ctx *ctx = ecs_ctx_new(be, &e);
  assert_non_null(ctx);
  int hs[] = {64, 61, 9}, ws[] = {48, 70, 17};
  for (int i = 0; i < 3; i++) {
    ecs_ctx_reset(ctx);
    int64_t ne[4] = {2, 3, hs[i], ws[i]};
    float *x = calloc((size_t)(2 * 3 * hs[i] * ws[i]), sizeof *x);
    for (int j = 0; j < 2 * 3 * hs[i] * ws[i]; j++)
      x[j] = (float)((j * 7919) % 13) / 13.0f - 0.5f;
    ecs_tensor *h = ecs_model_forward(m, ctx, ecs_from_host(ctx, ECS_F32, 4, ne, x), 0, 0, NULL);
    assert_int_equal(ecs_ctx_status(ctx, &e), ECS_OK);
    assert_int_equal(h->ne[0], 2);
    assert_int_equal(h->ne[1], 6);
    assert_int_equal(h->ne[2], (hs[i] + 7) / 8);
    assert_int_equal(h->ne[3], (ws[i] + 7) / 8);
    free(x);
  }
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_is_small),
      cmocka_unit_test(test_resnet38d_names_and_frozen),
      cmocka_unit_test(test_save_load_round_trip),
      cmocka_unit_test(test_bad_model_files),
      cmocka_unit_test(test_forward_shapes),
      cmocka_unit_test(test_fold_bn_small),
      cmocka_unit_test(test_fold_bn_resnet38d),
      cmocka_unit_test(test_fold_bn_vgg16d_has_nothing_to_fold),
      cmocka_unit_test(test_fold_bn_lite0),
      cmocka_unit_test(test_lite0_table),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
