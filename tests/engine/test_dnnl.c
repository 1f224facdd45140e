/* test_dnnl.c - what is specific to the oneDNN "cpu" backend: blocked layouts kept between
 * layers, primitive and weight caches, backward passes on oneDNN (no reference fallback), a
 * parity sweep against "cpu-ref", and concurrent backends in two threads. The generic op
 * harness over every backend lives elsewhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/backend.h"

#ifdef ECS_USE_DNNL
#include <oneapi/dnnl/dnnl.h>

#include "cpu/dnnl/dnnl-backend.h"
#include "cpu/dnnl/dnnl-impl.h"

static ecs_backend *g_cpu, *g_ref;

/* ---- what this CPU should run ----------------------------------------------------------- */

/* The fast paths each ISA should take, written from the measurements that chose them (the
 * comments at dn_phase_factor, wino_beats_brgemm and phase_prim) and apart from the
 * engine's chooser, so that a wrong choice fails here. The ISA is the one oneDNN runs
 * (ONEDNN_MAX_CPU_ISA=AVX2 makes an AVX-512 machine an AVX2 one), since what the engine
 * competes with is oneDNN's kernel for it: on AVX2 the direct jit kernel on nChw8c, which
 * loses to Winograd at every size, runs dilation 4 on a GEMM and walks 7-wide rows slowly; on
 * AVX-512 the brgemm kernel on nhwc, which beats Winograd on few tiles (below 96) and needs
 * neither the space-to-batch split nor the side-by-side maps. */
typedef struct cpu_expect {
  const char *isa;
  int wino_small;   /* Winograd by default for a 3x3 layer of few tiles (16 channels, 9x10) */
  int wino_large;   /* ... and of many (2 images of 45x38: 240 tiles) */
  int split_fwd;    /* dilated forwards run as space-to-batch, by default (dilation 4) or forced */
  int split_bwd;    /* backward ops of a forced full split run split (of 2) */
  int side_by_side; /* forwards of a batch of narrow maps run side by side */
} cpu_expect;

static const cpu_expect *g_expect; /* NULL: an ISA the table does not know; paths unchecked */

static const cpu_expect *cpu_expectations(void) {
  static const cpu_expect avx2 = {"AVX2", 1, 1, 1, 2, 1}, avx512 = {"AVX-512", 0, 1, 0, 2, 0};
  unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
  if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) return &avx512;
  if ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2) return &avx2;
  return NULL;
}

/* Fails when the path taken (n ops of the kind) is not the one this CPU should take. */
static void expect_path(const char *what, uint64_t n, uint64_t want) {
  if (g_expect && n != want)
    fail_msg("%s: %llu ops took the path where %s should take it %llu times", what,
             (unsigned long long)n, g_expect->isa, (unsigned long long)want);
}

/* ---- tensors ---------------------------------------------------------------------------- */

#define MAX_OWNED 1024
static ecs_tensor *g_tensors[MAX_OWNED];
static ecs_buffer *g_buffers[MAX_OWNED];
static int g_nt, g_nb;
static uint64_t g_rng = 88172645463325252ull;

static float frand(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static ecs_tensor *tn(int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
  ecs_tensor *t = calloc(1, sizeof *t);
  assert_non_null(t);
  assert_true(g_nt < MAX_OWNED);
  g_tensors[g_nt++] = t;
  t->type = ECS_F32;
  t->nd = nd;
  int64_t ne[4] = {a, b, c, d};
  for (int i = 0; i < 4; i++)
    t->ne[i] = i < nd ? ne[i] : 1;
  t->nbytes = ecs_plain_nbytes(t);
  return t;
}

static void alloc_t(ecs_tensor *t) {
  ecs_err err = {0};
  ecs_buffer *b =
      ecs_buffer_alloc(ecs_device_buffer_type(ecs_backend_device(g_cpu)), t->nbytes, &err);
  assert_non_null(b);
  assert_true(g_nb < MAX_OWNED);
  g_buffers[g_nb++] = b;
  t->buffer = b;
  t->data = ecs_buffer_base(b);
  memset(t->data, 0, t->nbytes);
}

/* a plain tensor of uniform values in [lo, hi] */
static ecs_tensor *rnd(int nd, int64_t a, int64_t b, int64_t c, int64_t d, float lo, float hi) {
  ecs_tensor *t = tn(nd, a, b, c, d);
  alloc_t(t);
  float *v = t->data;
  for (int64_t i = 0; i < ecs_nelements(t); i++)
    v[i] = lo + (hi - lo) * 0.5f * (frand() + 1.0f);
  return t;
}

static void free_all(void) {
  for (int i = 0; i < g_nb; i++)
    ecs_buffer_free(g_buffers[i]);
  for (int i = 0; i < g_nt; i++)
    free(g_tensors[i]);
  g_nb = g_nt = 0;
}

static void run_on(ecs_backend *be, ecs_op *op) {
  ecs_err err = {0};
  ecs_status st = ecs_backend_prepare(be, op, &err);
  if (st != ECS_OK)
    fail_msg("%s prepare on %s: %s", ecs_op_name(op->type), ecs_backend_name(be), err.msg);
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && !op->dst[i]->data) alloc_t(op->dst[i]);
  st = ecs_backend_compute(be, op, &err);
  if (st != ECS_OK) fail_msg("%s on %s: %s", ecs_op_name(op->type), ecs_backend_name(be), err.msg);
}

/* The logical values of t as a plain tensor (an ECS_OP_COPY on be when t is blocked). */
static ecs_tensor *plain_of(ecs_backend *be, ecs_tensor *t) {
  if (t->layout == ECS_LAYOUT_PLAIN) return t;
  ecs_tensor *p = tn(t->nd, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
  ecs_op op = {.type = ECS_OP_COPY, .src = {t}, .dst = {p}};
  run_on(be, &op);
  assert_int_equal(p->layout, ECS_LAYOUT_PLAIN);
  return p;
}

static ecs_tensor *clone_plain(ecs_backend *be, ecs_tensor *t) {
  ecs_tensor *p = plain_of(be, t);
  ecs_tensor *c = tn(t->nd, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
  c->type = t->type;
  c->nbytes = ecs_plain_nbytes(c);
  alloc_t(c);
  memcpy(c->data, p->data, c->nbytes);
  return c;
}

static double rel_l2(const ecs_tensor *a, const ecs_tensor *b) {
  const float *x = a->data, *y = b->data;
  double num = 0, den = 0;
  for (int64_t i = 0; i < ecs_nelements(b); i++) {
    if (x[i] == y[i] && isinf(y[i])) continue; /* matching -inf of masked log-probabilities */
    double d = (double)x[i] - y[i];
    num += d * d;
    den += (double)y[i] * y[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void expect_close(ecs_tensor *cpu_t, ecs_tensor *ref_t, double tol, const char *what) {
  double e = rel_l2(plain_of(g_cpu, cpu_t), plain_of(g_ref, ref_t));
  if (!(e <= tol)) fail_msg("%s: relative L2 error %.3g > %.1g", what, e, tol);
}

/* Whether parity() accepts a reference fallback on "cpu" (else the op must run on oneDNN). */
static int g_allow_ref;

/* Runs op on "cpu" and a plain copy of it on "cpu-ref"; compares the outputs in cmp (a bit per
 * dst) and, for ops that update inputs in place, the inputs in cmp_src. */
static void parity(ecs_op *op, unsigned cmp, unsigned cmp_src, double tol) {
  ecs_backend_stats s0, s1;
  ecs_backend_get_stats(g_cpu, &s0);
  ecs_op r = *op;
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i]) r.src[i] = clone_plain(g_cpu, op->src[i]);
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    ecs_tensor *t = op->dst[i];
    r.dst[i] = (t && (cmp >> i & 1)) ? tn(t->nd, t->ne[0], t->ne[1], t->ne[2], t->ne[3]) : NULL;
  }
  run_on(g_cpu, op);
  ecs_backend_get_stats(g_cpu, &s1);
  if (!g_allow_ref && s1.ref_ops != s0.ref_ops)
    fail_msg("%s ran on a reference kernel on cpu", ecs_op_name(op->type));
  run_on(g_ref, &r);
  char what[96];
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (cmp >> i & 1) {
      snprintf(what, sizeof what, "%s dst%d", ecs_op_name(op->type), i);
      expect_close(op->dst[i], r.dst[i], tol, what);
    }
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (cmp_src >> i & 1) {
      snprintf(what, sizeof what, "%s src%d (in place)", ecs_op_name(op->type), i);
      expect_close(op->src[i], r.src[i], tol, what);
    }
}

static ecs_op conv_op(ecs_tensor *x, ecs_tensor *w, ecs_tensor *b, ecs_tensor *y, int stride,
                      int pad, int dil, int groups) {
  return (ecs_op){.type = ECS_OP_CONV2D,
                  .src = {x, w, b},
                  .dst = {y},
                  .p.conv = {{stride, stride}, {pad, pad}, {dil, dil}, groups}};
}

static ecs_tensor *conv_out(ecs_tensor *x, ecs_tensor *w, int stride, int pad, int dil) {
  return tn(4, x->ne[0], w->ne[0], ecs_conv_out_size(x->ne[2], (int)w->ne[2], stride, pad, dil),
            ecs_conv_out_size(x->ne[3], (int)w->ne[3], stride, pad, dil));
}

static void stats(ecs_backend_stats *s) {
  ecs_backend_get_stats(g_cpu, s);
}

/* convolutions g_cpu ran on rearranged maps, and by Winograd, so far */
static uint64_t phased_ops(void) {
  ecs_backend_stats s;
  stats(&s);
  return s.phased_ops;
}

static uint64_t wino_ops(void) {
  ecs_backend_stats s;
  stats(&s);
  return s.wino_ops;
}

/* ---- layouts and caches ----------------------------------------------------------------- */

/* conv -> relu -> conv -> relu ... then one copy to plain: the activations stay blocked and the
 * only reorders are at the edges, however long the chain. */
static ecs_tensor *conv_chain_act(int depth, ecs_tensor *x, ecs_tensor **w, ecs_backend *be,
                                  int dil, int fused) {
  ecs_tensor *h = x;
  for (int i = 0; i < depth; i++) {
    ecs_tensor *y = conv_out(h, w[i], 1, dil, dil);
    ecs_op c = conv_op(h, w[i], NULL, y, 1, dil, dil, 1);
    if (fused) { /* conv+relu as one op (ReLU as the convolution's post-op) */
      c.p.conv.act = ECS_ACT_RELU;
      run_on(be, &c);
      if (be == g_cpu) assert_int_equal(y->layout, ECS_LAYOUT_DNNL);
      h = y;
      continue;
    }
    run_on(be, &c);
    ecs_tensor *r = tn(4, y->ne[0], y->ne[1], y->ne[2], y->ne[3]);
    ecs_op a = {.type = ECS_OP_RELU, .src = {y}, .dst = {r}};
    run_on(be, &a);
    if (be == g_cpu) {
      assert_int_equal(y->layout, ECS_LAYOUT_DNNL);
      assert_int_equal(r->layout, ECS_LAYOUT_DNNL);
    }
    h = r;
  }
  ecs_tensor *out = tn(4, h->ne[0], h->ne[1], h->ne[2], h->ne[3]);
  ecs_op cp = {.type = ECS_OP_COPY, .src = {h}, .dst = {out}};
  run_on(be, &cp);
  assert_int_equal(out->layout, ECS_LAYOUT_PLAIN);
  return out;
}

static ecs_tensor *conv_chain_dil(int depth, ecs_tensor *x, ecs_tensor **w, ecs_backend *be,
                                  int dil) {
  return conv_chain_act(depth, x, w, be, dil, 0);
}

static ecs_tensor *conv_chain(int depth, ecs_tensor *x, ecs_tensor **w, ecs_backend *be) {
  return conv_chain_dil(depth, x, w, be, 1);
}

static ecs_tensor *blocked(int64_t n, int64_t c, int64_t h, int64_t w);

static void test_conv_chain_keeps_blocked_layout(void **state) {
  (void)state;
  ecs_tensor *w[4];
  for (int i = 0; i < 4; i++)
    w[i] = rnd(4, 16, 16, 3, 3, -0.2f, 0.2f);
  /* the input as a previous layer leaves it: blocked */
  ecs_tensor *x = blocked(2, 16, 10, 10);
  assert_int_equal(x->layout, ECS_LAYOUT_DNNL);
  ecs_backend_stats s;
  /* warm up: primitives built and weights reordered into the cache once */
  conv_chain(4, x, w, g_cpu);
  for (int depth = 2; depth <= 4; depth += 2) {
    ecs_backend_reset_stats(g_cpu);
    ecs_tensor *y = conv_chain(depth, x, w, g_cpu);
    stats(&s);
    /* nothing between the layers: the one reorder is the final copy to plain */
    assert_int_equal(s.reorders, 1);
    assert_int_equal(s.ref_ops, 0);
    assert_int_equal(s.primitives, 0);
    assert_int_equal(s.ops, (uint64_t)depth * 2 + 1);
    ecs_tensor *yr = conv_chain(depth, clone_plain(g_cpu, x), w, g_ref);
    double e = rel_l2(y, yr);
    if (e > 1e-4) fail_msg("conv chain of %d differs from cpu-ref: %.3g", depth, e);
  }
  /* a plain input adds exactly one reorder at the front edge */
  ecs_tensor *xp = clone_plain(g_cpu, x);
  conv_chain(2, xp, w, g_cpu);
  ecs_backend_reset_stats(g_cpu);
  conv_chain(2, xp, w, g_cpu);
  stats(&s);
  assert_int_equal(s.reorders, 2);
  /* the same chain with ReLU fused into each convolution: one op per layer, still blocked
   * from layer to layer, the same values as the separate ops */
  conv_chain_act(4, x, w, g_cpu, 1, 1);
  for (int depth = 2; depth <= 4; depth += 2) {
    ecs_backend_reset_stats(g_cpu);
    ecs_tensor *y = conv_chain_act(depth, x, w, g_cpu, 1, 1);
    stats(&s);
    assert_int_equal(s.reorders, 1);
    assert_int_equal(s.ref_ops, 0);
    assert_int_equal(s.primitives, 0);
    assert_int_equal(s.ops, (uint64_t)depth + 1);
    double e = rel_l2(y, conv_chain(depth, x, w, g_cpu));
    if (e > 1e-6) fail_msg("fused chain of %d differs from conv then relu: %.3g", depth, e);
    e = rel_l2(y, conv_chain_act(depth, clone_plain(g_cpu, x), w, g_ref, 1, 1));
    if (e > 1e-4) fail_msg("fused chain of %d differs from cpu-ref: %.3g", depth, e);
  }
  free_all();
}

/* A "cpu" backend on two threads with these options. */
static ecs_backend *backend_opts(ecs_backend_params p) {
  ecs_err err = {0};
  if (!p.n_threads) p.n_threads = 2;
  ecs_backend *be = ecs_backend_init(ecs_device_find("cpu", &err), &p, &err);
  assert_non_null(be);
  return be;
}

/* The rearrangements (dnnl-phase.c) are for convolutions that do not run by Winograd: these
 * backends have it off. phases = factor: every stride-1 convolution op whose dilation the
 * factor divides runs as space-to-batch where oneDNN has the jit kernel for it. */
static ecs_backend *phased_backend(int factor) {
  return backend_opts((ecs_backend_params){.phases = factor, .winograd = ECS_OPT_OFF});
}
static ecs_backend *packed_backend(int width) {
  return backend_opts((ecs_backend_params){.pack_width = width, .winograd = ECS_OPT_OFF});
}

/* The chain stays blocked when its dilated convolutions run as space-to-batch: the phases are
 * split and merged in the blocked layout, not through reorders. */
static void test_dilated_chain_keeps_blocked_layout(void **state) {
  (void)state;
  ecs_backend *saved = g_cpu;
  for (int variant = 0; variant < 3; variant++) {
    /* the default backend (forward of dilation 4 split by 2), then forced full splits */
    int dil = variant == 1 ? 2 : 4;
    ecs_backend *be = variant == 0 ? packed_backend(64) : phased_backend(dil);
    g_cpu = be;
    ecs_tensor *w[3];
    for (int i = 0; i < 3; i++)
      w[i] = rnd(4, 16, 16, 3, 3, -0.2f, 0.2f);
    ecs_tensor *x = blocked(1, 16, 13, 11);
    assert_int_equal(x->layout, ECS_LAYOUT_DNNL);
    conv_chain_dil(3, x, w, be, dil);
    ecs_backend_stats s;
    ecs_backend_reset_stats(be);
    uint64_t ph0 = phased_ops();
    ecs_tensor *y = conv_chain_dil(3, x, w, be, dil);
    stats(&s);
    /* dilation 2 splits only when forced (variant 1) */
    expect_path(dil == 4 ? "chain of dilation 4, split" : "chain of dilation 2, split",
                phased_ops() - ph0, g_expect && g_expect->split_fwd ? 3 : 0);
    assert_int_equal(s.reorders, 1); /* the final copy to plain */
    assert_int_equal(s.ref_ops, 0);
    assert_int_equal(s.primitives, 0);
    ecs_tensor *yr = conv_chain_dil(3, clone_plain(be, x), w, g_ref, dil);
    double e = rel_l2(y, yr);
    if (e > 1e-4) fail_msg("dilated chain (d=%d) differs from cpu-ref: %.3g", dil, e);
    g_cpu = saved;
    free_all();
    ecs_backend_free(be);
  }
}

/* Dilated convolutions through space-to-batch against the reference kernels: forward and both
 * backward ops, dilation 2 and 4, split fully (dense phases) and dilation 4 by 2 (phases of
 * dilation 2), odd and uneven sizes so that phases differ in size, padding none, equal to and
 * twice the dilation, with and without bias, plain and blocked inputs. Which ops run split is
 * the table's (cpu_expect): an op splits only where oneDNN has its direct jit kernel for the
 * split op, else it keeps the dilated path (as the backward weights of dilation 2 does on
 * AVX2, and the forward on AVX-512, where the brgemm kernel runs it). */
static void test_dilated_conv_phases(void **state) {
  (void)state;
  ecs_backend *saved = g_cpu;
  struct {
    int ci, co, dil, pad, bias, h, w, factor;
  } cases[] = {
      {16, 24, 2, 2, 1, 13, 11, 2}, {8, 16, 4, 4, 0, 13, 17, 4},  {8, 16, 4, 4, 1, 15, 9, 2},
      {12, 20, 2, 4, 1, 9, 10, 2},  {16, 16, 4, 0, 0, 14, 13, 4}, {16, 16, 4, 8, 1, 17, 11, 4},
      {3, 8, 2, 2, 1, 5, 7, 2},     {16, 8, 4, 4, 1, 11, 15, 4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    g_cpu = phased_backend(cases[i].factor);
    for (int b = 0; b <= 1; b++) {
      int dil = cases[i].dil, pad = cases[i].pad;
      ecs_tensor *x = b ? blocked(2, cases[i].ci, cases[i].h, cases[i].w)
                        : rnd(4, 2, cases[i].ci, cases[i].h, cases[i].w, -1, 1);
      ecs_tensor *w = rnd(4, cases[i].co, cases[i].ci, 3, 3, -0.5f, 0.5f);
      ecs_tensor *bias = cases[i].bias ? rnd(1, cases[i].co, 1, 1, 1, -1, 1) : NULL;
      ecs_tensor *y = conv_out(x, w, 1, pad, dil);
      ecs_op c = conv_op(x, w, bias, y, 1, pad, dil, 1);
      uint64_t ph0 = phased_ops();
      parity(&c, 1, 0, 1e-4);
      char what[64];
      snprintf(what, sizeof what, "case %zu: the split forward", i);
      expect_path(what, phased_ops() - ph0, g_expect ? (uint64_t)g_expect->split_fwd : 0);
      uint64_t ph1 = phased_ops();
      ecs_tensor *dy = b ? y : rnd(4, y->ne[0], y->ne[1], y->ne[2], y->ne[3], -1, 1);
      ecs_op bd = {.type = ECS_OP_CONV2D_BWD_DATA,
                   .src = {dy, w},
                   .dst = {tn(4, x->ne[0], x->ne[1], x->ne[2], x->ne[3])},
                   .p.conv = c.p.conv};
      parity(&bd, 1, 0, 1e-4);
      ecs_op bw = {.type = ECS_OP_CONV2D_BWD_WEIGHT,
                   .src = {x, dy},
                   .dst = {tn(4, w->ne[0], w->ne[1], 3, 3), bias ? tn(1, w->ne[0], 1, 1, 1) : NULL},
                   .p.conv = c.p.conv};
      parity(&bw, bias ? 3 : 1, 0, 1e-4);
      if (cases[i].factor == dil) {
        snprintf(what, sizeof what, "case %zu: the split backward ops", i);
        expect_path(what, phased_ops() - ph1, g_expect ? (uint64_t)g_expect->split_bwd : 0);
      }
    }
    ecs_backend_free(g_cpu);
    g_cpu = saved;
    free_all();
  }
}

/* Forward convolutions of a batch of narrow maps run with the images side by side in wide maps
 * (dnnl-phase.c): against the reference kernels over kernel sizes, paddings (none, equal,
 * larger than the kernel's half, unequal per dim), odd sizes, bias, plain and blocked inputs,
 * all images in one wide map or spread over several with the last one short; and a chain of
 * them keeps the blocked layout. */
static void test_narrow_maps_side_by_side(void **state) {
  (void)state;
  struct {
    int n, ci, co, k, ph, pw, bias, h, w;
  } cases[] = {
      {3, 16, 24, 3, 1, 1, 1, 7, 5}, {2, 12, 8, 3, 0, 0, 0, 6, 7}, {4, 8, 16, 5, 2, 2, 1, 5, 3},
      {2, 16, 16, 3, 2, 1, 0, 7, 7}, {5, 3, 8, 3, 1, 2, 1, 4, 4},  {2, 8, 8, 5, 1, 0, 1, 9, 7},
      {7, 8, 8, 3, 1, 1, 1, 3, 5},
  };
  ecs_backend *saved = g_cpu;
  /* the default (all images in one wide map here), then wide maps of at most 20 columns: 2 or
   * 3 images each, the last one short of images */
  for (int narrow = 0; narrow <= 1; narrow++) {
    g_cpu = packed_backend(narrow ? 20 : 64);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      for (int b = 0; b <= 1; b++) {
        ecs_tensor *x = b ? blocked(cases[i].n, cases[i].ci, cases[i].h, cases[i].w)
                          : rnd(4, cases[i].n, cases[i].ci, cases[i].h, cases[i].w, -1, 1);
        ecs_tensor *w = rnd(4, cases[i].co, cases[i].ci, cases[i].k, cases[i].k, -0.5f, 0.5f);
        ecs_tensor *bias = cases[i].bias ? rnd(1, cases[i].co, 1, 1, 1, -1, 1) : NULL;
        ecs_tensor *y =
            tn(4, x->ne[0], w->ne[0], ecs_conv_out_size(x->ne[2], cases[i].k, 1, cases[i].ph, 1),
               ecs_conv_out_size(x->ne[3], cases[i].k, 1, cases[i].pw, 1));
        ecs_op c = {.type = ECS_OP_CONV2D,
                    .src = {x, w, bias},
                    .dst = {y},
                    .p.conv = {{1, 1}, {cases[i].ph, cases[i].pw}, {1, 1}, 1}};
        uint64_t n0 = phased_ops();
        parity(&c, 1, 0, 1e-4);
        char what[64];
        snprintf(what, sizeof what, "case %zu: side by side", i);
        expect_path(what, phased_ops() - n0, g_expect ? (uint64_t)g_expect->side_by_side : 0);
      }
    free_all();
    ecs_backend_free(g_cpu);
    g_cpu = saved;
  }
  g_cpu = packed_backend(64);
  ecs_tensor *w[3];
  for (int i = 0; i < 3; i++)
    w[i] = rnd(4, 16, 16, 3, 3, -0.2f, 0.2f);
  ecs_tensor *x = blocked(3, 16, 7, 7);
  conv_chain(3, x, w, g_cpu);
  ecs_backend_stats s;
  ecs_backend_reset_stats(g_cpu);
  uint64_t n0 = phased_ops();
  ecs_tensor *y = conv_chain(3, x, w, g_cpu);
  stats(&s);
  expect_path("chain side by side", phased_ops() - n0, g_expect && g_expect->side_by_side ? 3 : 0);
  assert_int_equal(s.reorders, 1); /* the final copy to plain */
  assert_int_equal(s.ref_ops, 0);
  double e = rel_l2(y, conv_chain(3, clone_plain(g_cpu, x), w, g_ref));
  if (e > 1e-4) fail_msg("side-by-side chain differs from cpu-ref: %.3g", e);
  free_all();
  ecs_backend_free(g_cpu);
  g_cpu = saved;
}

/* Forward 3x3 convolutions by Winograd (dnnl-wino.c), F(2, 3) and F(4, 3), against the
 * reference kernels: dilation 1, 2 and 4 (tiles over each phase), padding none to twice the
 * dilation, sizes that leave partial tiles, channels that are not multiples of 8 (padded blocks)
 * or of 16 (half a register panel), bias, fused ReLU, batches, plain and blocked inputs, and
 * unequal padding per dim. Each must run by Winograd; trainable weights and layers below 16
 * channels must not. A chain keeps the blocked layout. */
static void test_winograd_conv(void **state) {
  (void)state;
  struct {
    int n, ci, co, dil, ph, pw, h, w;
  } cases[] = {
      {1, 16, 16, 1, 1, 1, 8, 8},    {2, 20, 24, 1, 1, 1, 13, 11}, {1, 32, 40, 1, 0, 0, 9, 17},
      {3, 16, 16, 1, 2, 2, 5, 6},    {1, 24, 36, 2, 2, 2, 15, 13}, {2, 16, 16, 2, 0, 0, 12, 9},
      {1, 16, 32, 4, 4, 4, 17, 19},  {1, 48, 16, 4, 8, 8, 11, 10}, {1, 64, 64, 1, 1, 0, 31, 29},
      {2, 17, 33, 1, 1, 2, 7, 7},    {1, 300, 272, 1, 1, 1, 6, 9}, {2, 64, 64, 1, 1, 1, 48, 48},
      {2, 128, 64, 2, 2, 2, 37, 41},
  };
  ecs_backend *saved = g_cpu;
  double worst[5] = {0};
  for (int m = 2; m <= 4; m += 2) {
    g_cpu = backend_opts((ecs_backend_params){.winograd = m});
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      for (int v = 0; v < 4; v++) {
        int b = v & 1, relu = v >> 1;
        ecs_tensor *x = b ? blocked(cases[i].n, cases[i].ci, cases[i].h, cases[i].w)
                          : rnd(4, cases[i].n, cases[i].ci, cases[i].h, cases[i].w, -1, 1);
        ecs_tensor *w = rnd(4, cases[i].co, cases[i].ci, 3, 3, -0.5f, 0.5f);
        ecs_tensor *bias = (v + (int)i) % 3 ? rnd(1, cases[i].co, 1, 1, 1, -1, 1) : NULL;
        int dil = cases[i].dil;
        ecs_tensor *y =
            tn(4, x->ne[0], w->ne[0], ecs_conv_out_size(x->ne[2], 3, 1, cases[i].ph, dil),
               ecs_conv_out_size(x->ne[3], 3, 1, cases[i].pw, dil));
        ecs_op c = {.type = ECS_OP_CONV2D,
                    .src = {x, w, bias},
                    .dst = {y},
                    .p.conv = {{1, 1},
                               {cases[i].ph, cases[i].pw},
                               {dil, dil},
                               1,
                               relu ? ECS_ACT_RELU : ECS_ACT_NONE}};
        uint64_t n0 = wino_ops();
        ecs_op r = c;
        for (int k = 0; k < 3; k++)
          if (c.src[k]) r.src[k] = clone_plain(g_cpu, c.src[k]);
        r.dst[0] = tn(4, y->ne[0], y->ne[1], y->ne[2], y->ne[3]);
        run_on(g_cpu, &c);
        run_on(g_ref, &r);
        if (wino_ops() - n0 != 1) fail_msg("F(%d,3) case %zu/%d: did not run by Winograd", m, i, v);
        double e = rel_l2(plain_of(g_cpu, y), r.dst[0]);
        if (e > worst[m]) worst[m] = e;
        if (!(e <= (m == 2 ? 1e-5 : 1e-4)))
          fail_msg("F(%d,3) case %zu/%d: relative L2 error %.3g", m, i, v, e);
      }
    /* not by Winograd: trainable weights, fewer than 16 channels, stride 2, 5x5 */
    ecs_tensor *x = blocked(1, 16, 9, 9), *w = rnd(4, 16, 16, 3, 3, -0.5f, 0.5f);
    w->requires_grad = 1;
    ecs_tensor *w8 = rnd(4, 8, 16, 3, 3, -0.5f, 0.5f), *w5 = rnd(4, 16, 16, 5, 5, -0.5f, 0.5f);
    ecs_op ops[4] = {conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1),
                     conv_op(x, w8, NULL, conv_out(x, w8, 1, 1, 1), 1, 1, 1, 1),
                     conv_op(x, w5, NULL, conv_out(x, w5, 1, 2, 1), 1, 2, 1, 1),
                     conv_op(x, w5, NULL, conv_out(x, w5, 2, 2, 1), 2, 2, 1, 1)};
    for (int k = 0; k < 4; k++) {
      uint64_t n0 = wino_ops();
      parity(&ops[k], 1, 0, 1e-4);
      if (wino_ops() != n0) fail_msg("F(%d,3): op %d ran by Winograd", m, k);
    }
    /* a chain: blocked from layer to layer, the only reorder the final copy to plain */
    ecs_tensor *wc[3];
    for (int k = 0; k < 3; k++)
      wc[k] = rnd(4, 24, 24, 3, 3, -0.2f, 0.2f);
    ecs_tensor *xc = blocked(2, 24, 13, 14);
    conv_chain_act(3, xc, wc, g_cpu, 1, 1);
    ecs_backend_stats s;
    ecs_backend_reset_stats(g_cpu);
    uint64_t n0 = wino_ops();
    ecs_tensor *yc = conv_chain_act(3, xc, wc, g_cpu, 1, 1);
    stats(&s);
    assert_int_equal(wino_ops() - n0, 3);
    assert_int_equal(s.reorders, 1);
    assert_int_equal(s.ref_ops, 0);
    double e = rel_l2(yc, conv_chain_act(3, clone_plain(g_cpu, xc), wc, g_ref, 1, 1));
    if (e > 1e-4) fail_msg("F(%d,3) chain differs from cpu-ref: %.3g", m, e);
    free_all();
    ecs_backend_free(g_cpu);
    g_cpu = saved;
  }
  /* the transformed weights: one copy for two backends, a new one when the values change, all
   * gone with the backends */
  {
    int e0, r0, e1, r1;
    ecs_dnnl_shared_weights(&e0, &r0);
    ecs_backend *b1 = backend_opts((ecs_backend_params){.winograd = 4});
    ecs_backend *b2 = backend_opts((ecs_backend_params){.winograd = 4});
    ecs_tensor *w = rnd(4, 24, 16, 3, 3, -0.5f, 0.5f);
    for (int round = 0; round < 2; round++) {
      for (int k = 0; k < 2; k++) {
        g_cpu = k ? b2 : b1;
        ecs_tensor *x = rnd(4, 1, 16, 11, 9, -1, 1);
        ecs_op c = conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
        parity(&c, 1, 0, 1e-4);
      }
      ecs_dnnl_shared_weights(&e1, &r1);
      assert_int_equal(e1 - e0, 1);
      assert_int_equal(r1 - r0, 2);
      float *v = w->data;
      for (int64_t i = 0; i < ecs_nelements(w); i++)
        v[i] = 0.5f * v[i] - 0.01f;
    }
    free_all();
    ecs_backend_free(b1);
    ecs_backend_free(b2);
    ecs_dnnl_shared_weights(&e1, &r1);
    assert_int_equal(e1, e0);
    assert_int_equal(r1, r0);
    g_cpu = saved;
  }
  /* the default backend, on one thread (every chunk in turn, no sharing): Winograd where this
   * CPU should take it, a small map (9 tiles) and a large one (240) */
  g_cpu = backend_opts((ecs_backend_params){.n_threads = 1});
  for (int k = 0; k < 2; k++) {
    ecs_tensor *x = blocked(k ? 2 : 1, 32, k ? 45 : 9, k ? 38 : 10),
               *w = rnd(4, 24, 32, 3, 3, -0.5f, 0.5f);
    ecs_op c = conv_op(x, w, rnd(1, 24, 1, 1, 1, -1, 1), conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
    uint64_t n0 = wino_ops();
    parity(&c, 1, 0, 1e-4);
    expect_path(k ? "default Winograd, 240 tiles" : "default Winograd, 9 tiles", wino_ops() - n0,
                g_expect ? (uint64_t)(k ? g_expect->wino_large : g_expect->wino_small) : 0);
  }
  free_all();
  ecs_backend_free(g_cpu);
  g_cpu = saved;
  print_message("winograd: worst relative L2 error F(2,3) %.2g, F(4,3) %.2g\n", worst[2], worst[4]);
}

/* Plain (N, C, H, W) values into [N][C/B][H][W][B] (B = C: nhwc), the padded channels zero. */
static float *to_layout(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b) {
  int64_t cp = (c + b - 1) / b * b;
  float *y = calloc((size_t)(n * cp * h * w), sizeof *y);
  assert_non_null(y);
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = 0; k < c; k++)
      for (int64_t p = 0; p < h * w; p++)
        y[((i * cp + k / b * b) * h * w) + p * b + k % b] = x[(i * c + k) * h * w + p];
  return y;
}

/* dnnl-wino.c's kernels on every activation layout they read and write, whatever this CPU's
 * oneDNN picks (nChw8c on AVX2, nhwc on AVX-512; nChw16c where its jit kernel runs): blocks of
 * 8, 16 and nhwc with channel counts that are and are not multiples of 8 (the last group then
 * masked), against the reference kernel; the padded channels of a blocked output come out 0
 * and nhwc's neighbouring pixels are not written over. */
static void test_winograd_layouts(void **state) {
  (void)state;
  if (!dn_wino_cpu()) skip();
  struct {
    int n, ci, co, dil, pad, h, w;
  } cases[] = {
      {1, 16, 16, 1, 1, 9, 7},
      {2, 20, 36, 1, 1, 11, 13},
      {1, 13, 21, 2, 2, 10, 9},
      {1, 40, 24, 4, 4, 17, 14},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int lay = 0; lay < 3; lay++)
      for (int m = 2; m <= 4; m += 2) {
        int64_t n = cases[i].n, ci = cases[i].ci, co = cases[i].co, h = cases[i].h, w = cases[i].w;
        int64_t xb = lay == 0 ? 8 : lay == 1 ? 16 : ci, yb = lay == 0 ? 8 : lay == 1 ? 16 : co;
        ecs_tensor *x = rnd(4, n, ci, h, w, -1, 1), *wt = rnd(4, co, ci, 3, 3, -0.5f, 0.5f);
        ecs_tensor *b = rnd(1, co, 1, 1, 1, -1, 1);
        ecs_tensor *y = conv_out(x, wt, 1, cases[i].pad, cases[i].dil);
        ecs_op c = conv_op(x, wt, b, y, 1, cases[i].pad, cases[i].dil, 1);
        c.p.conv.act = ECS_ACT_RELU;
        run_on(g_ref, &c);
        int64_t ho = y->ne[2], wo = y->ne[3], cop = (co + yb - 1) / yb * yb;
        dn_wino g = {.m = m,
                     .relu = 1,
                     .n = n,
                     .ic = ci,
                     .oc = co,
                     .h = h,
                     .w = w,
                     .ho = ho,
                     .wo = wo,
                     .pad_t = cases[i].pad,
                     .pad_l = cases[i].pad,
                     .dil = cases[i].dil,
                     .xb = xb,
                     .yb = yb};
        float *xl = to_layout(x->data, n, ci, h, w, xb);
        float *u = aligned_alloc(64, (dn_wino_weight_bytes(&g) + 63) / 64 * 64);
        size_t sb = dn_wino_scratch_bytes(&g, 2);
        void *scratch = malloc(sb);
        size_t ny = (size_t)(n * cop * ho * wo);
        float *yl = malloc((ny + 8) * sizeof *yl);
        assert_true(u && scratch && yl);
        for (size_t k = 0; k < ny + 8; k++)
          yl[k] = 12345.f; /* written over where it should be */
        dn_wino_weights(&g, wt->data, u);
        dn_wino_run(&g, xl, u, b->data, yl, scratch, 2);
        const float *ref = y->data;
        double num = 0, den = 0;
        for (int64_t im = 0; im < n; im++)
          for (int64_t k = 0; k < cop; k++)
            for (int64_t p = 0; p < ho * wo; p++) {
              float v = yl[(im * cop + k / yb * yb) * ho * wo + p * yb + k % yb];
              if (k >= co) {
                if (v != 0.f)
                  fail_msg("case %zu, block %lld: padded channel %lld is %g", i, (long long)yb,
                           (long long)k, v);
                continue;
              }
              double r = ref[(im * co + k) * ho * wo + p];
              num += (v - r) * (v - r);
              den += r * r;
            }
        for (size_t k = ny; k < ny + 8; k++)
          if (yl[k] != 12345.f)
            fail_msg("case %zu, block %lld: written past the output", i, (long long)yb);
        double e = sqrt(num / den);
        if (!(e <= (m == 2 ? 1e-5 : 1e-4)))
          fail_msg("F(%d,3) case %zu, blocks %lld/%lld: relative L2 error %.3g", m, i,
                   (long long)xb, (long long)yb, e);
        free(xl);
        free(u);
        free(scratch);
        free(yl);
        free_all();
      }
}

static void test_primitive_cache(void **state) {
  (void)state;
  ecs_tensor *x = rnd(4, 1, 8, 9, 9, -1, 1), *w = rnd(4, 8, 8, 3, 3, -1, 1);
  ecs_backend_stats s;
  ecs_backend_reset_stats(g_cpu);
  ecs_op c = conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
  run_on(g_cpu, &c);
  stats(&s);
  uint64_t first = s.primitives;
  assert_true(first >= 1);
  for (int i = 0; i < 3; i++) {
    ecs_op again = conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
    run_on(g_cpu, &again);
  }
  stats(&s);
  assert_int_equal(s.primitives, first); /* same shapes: no new primitive */
  ecs_tensor *x2 = rnd(4, 1, 8, 11, 11, -1, 1);
  ecs_op other = conv_op(x2, w, NULL, conv_out(x2, w, 1, 1, 1), 1, 1, 1, 1);
  run_on(g_cpu, &other);
  stats(&s);
  assert_true(s.primitives > first); /* a new shape is a miss */
  free_all();
}

/* Weights are cached reordered; changing their values in place (same pointer) must be seen,
 * and parameters that train are reordered on every call. */
static void test_weight_cache_sees_updates(void **state) {
  (void)state;
  ecs_tensor *x = rnd(4, 1, 16, 8, 8, -1, 1), *w = rnd(4, 16, 16, 3, 3, -1, 1);
  for (int round = 0; round < 3; round++) {
    if (round == 2) w->requires_grad = 1;
    ecs_op c = conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
    parity(&c, 1, 0, 1e-4);
    float *v = w->data;
    for (int64_t i = 0; i < ecs_nelements(w); i++)
      v[i] = -0.5f * v[i] + 0.01f;
  }
  ecs_backend_stats s0, s1;
  stats(&s0);
  ecs_op c = conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
  run_on(g_cpu, &c);
  stats(&s1);
  assert_true(s1.reorders > s0.reorders); /* trainable: re-reordered although unchanged */
  free_all();
}

/* ---- backward passes stay on oneDNN ----------------------------------------------------- */

static void test_backward_ops_on_dnnl(void **state) {
  (void)state;
  ecs_tensor *x = rnd(4, 2, 16, 9, 9, -1, 1), *w = rnd(4, 24, 16, 3, 3, -0.3f, 0.3f);
  ecs_tensor *dy = rnd(4, 2, 24, 5, 5, -1, 1);
  ecs_backend_reset_stats(g_cpu);
  ecs_op bd = {.type = ECS_OP_CONV2D_BWD_DATA,
               .src = {dy, w},
               .dst = {tn(4, 2, 16, 9, 9)},
               .p.conv = {{2, 2}, {1, 1}, {1, 1}, 1}};
  parity(&bd, 1, 0, 1e-4);
  ecs_op bw = {.type = ECS_OP_CONV2D_BWD_WEIGHT,
               .src = {x, dy},
               .dst = {tn(4, 24, 16, 3, 3), tn(1, 24, 1, 1, 1)},
               .p.conv = {{2, 2}, {1, 1}, {1, 1}, 1}};
  parity(&bw, 3, 0, 1e-4);
  assert_int_equal(bw.dst[0]->layout, ECS_LAYOUT_PLAIN); /* gradients for the optimiser */

  ecs_tensor *g = rnd(1, 16, 1, 1, 1, 0.5f, 1.5f), *mean = rnd(1, 16, 1, 1, 1, -0.2f, 0.2f);
  ecs_tensor *invstd = rnd(1, 16, 1, 1, 1, 0.5f, 2.0f), *dyx = rnd(4, 2, 16, 9, 9, -1, 1);
  for (int training = 0; training <= 1; training++) {
    ecs_op bn = {.type = ECS_OP_BATCHNORM_BWD,
                 .src = {x, dyx, g, mean, invstd},
                 .dst = {tn(4, 2, 16, 9, 9), tn(1, 16, 1, 1, 1), tn(1, 16, 1, 1, 1)},
                 .p.bn = {1e-5f, 0.1f, training}};
    parity(&bn, 7, 0, 1e-4);
  }
  for (int clip = 0; clip <= 6; clip += 6) {
    ecs_op rb = {.type = ECS_OP_RELU_BWD,
                 .src = {x, dyx},
                 .dst = {tn(4, 2, 16, 9, 9)},
                 .p.act = {(float)clip}};
    parity(&rb, 1, 0, 1e-5);
  }
  /* max pooling: the forward's workspace feeds the backward */
  ecs_tensor *py = tn(4, 2, 16, 5, 5), *ws = tn(4, 2, 16, 5, 5);
  ws->type = ECS_U8;
  ecs_op pf = {.type = ECS_OP_POOL2D,
               .src = {x},
               .dst = {py, ws},
               .p.pool = {ECS_POOL_MAX, {3, 3}, {2, 2}, {1, 1}, 0, 0}};
  run_on(g_cpu, &pf);
  assert_int_equal(ws->layout, ECS_LAYOUT_DNNL);
  ecs_tensor *pdy = rnd(4, 2, 16, 5, 5, -1, 1);
  ecs_op pb = {.type = ECS_OP_POOL2D_BWD,
               .src = {x, pdy, ws},
               .dst = {tn(4, 2, 16, 9, 9)},
               .p.pool = pf.p.pool};
  ecs_op pbr = pb;
  pbr.src[2] = NULL; /* the reference recomputes the argmax */
  pbr.src[0] = clone_plain(g_cpu, x);
  pbr.src[1] = clone_plain(g_cpu, pdy);
  pbr.dst[0] = tn(4, 2, 16, 9, 9);
  run_on(g_cpu, &pb);
  run_on(g_ref, &pbr);
  expect_close(pb.dst[0], pbr.dst[0], 1e-5, "max pool backward");
  ecs_op ab = {.type = ECS_OP_POOL2D_BWD,
               .src = {x, pdy},
               .dst = {tn(4, 2, 16, 9, 9)},
               .p.pool = {ECS_POOL_AVG, {3, 3}, {2, 2}, {1, 1}, 0, 1}};
  parity(&ab, 1, 0, 1e-5);
  ecs_backend_stats s;
  stats(&s);
  assert_int_equal(s.ref_ops, 0);
  free_all();
}

/* ---- parity sweep ----------------------------------------------------------------------- */

static void test_conv_variants(void **state) {
  (void)state;
  struct {
    int ci, co, k, stride, pad, dil, groups, bias, hw;
  } cases[] = {
      {3, 8, 3, 1, 1, 1, 1, 1, 11},  {8, 8, 1, 1, 0, 1, 1, 0, 7}, {16, 8, 3, 2, 1, 1, 1, 1, 9},
      {8, 16, 3, 1, 2, 2, 1, 0, 10}, {8, 8, 3, 1, 1, 1, 2, 1, 8}, {5, 7, 5, 2, 2, 1, 1, 1, 12},
      {16, 16, 3, 1, 4, 4, 1, 0, 9},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ecs_tensor *x = rnd(4, 2, cases[i].ci, cases[i].hw, cases[i].hw, -1, 1);
    ecs_tensor *w =
        rnd(4, cases[i].co, cases[i].ci / cases[i].groups, cases[i].k, cases[i].k, -0.5f, 0.5f);
    ecs_tensor *b = cases[i].bias ? rnd(1, cases[i].co, 1, 1, 1, -1, 1) : NULL;
    ecs_tensor *y = conv_out(x, w, cases[i].stride, cases[i].pad, cases[i].dil);
    ecs_op c = conv_op(x, w, b, y, cases[i].stride, cases[i].pad, cases[i].dil, cases[i].groups);
    parity(&c, 1, 0, 1e-4);
    ecs_tensor *dy = rnd(4, y->ne[0], y->ne[1], y->ne[2], y->ne[3], -1, 1);
    ecs_op bd = {.type = ECS_OP_CONV2D_BWD_DATA,
                 .src = {dy, w},
                 .dst = {tn(4, x->ne[0], x->ne[1], x->ne[2], x->ne[3])},
                 .p.conv = c.p.conv};
    parity(&bd, 1, 0, 1e-4);
    ecs_op bw = {
        .type = ECS_OP_CONV2D_BWD_WEIGHT,
        .src = {x, dy},
        .dst = {tn(4, w->ne[0], w->ne[1], w->ne[2], w->ne[3]), b ? tn(1, w->ne[0], 1, 1, 1) : NULL},
        .p.conv = c.p.conv};
    parity(&bw, b ? 3 : 1, 0, 1e-4);
  }
  free_all();
}

/* conv with a fused ReLU or ReLU6 (p.conv.act, alternating) against conv then relu (clip 0 or
 * 6): on "cpu-ref" exactly (the oracle applies the same clamp to the same rounded values), on "cpu"
 * within rounding of the separate ops and within 1e-4 of the reference, always on oneDNN (a
 * post-op, no reference fallback). Random shapes with stride, padding, dilation (including those
 * split into phases), groups, bias, batches of narrow maps (run side by side), plain and blocked
 * inputs; fixed seed. */
static void test_conv_relu_fused(void **state) {
  (void)state;
  uint64_t ph0 = phased_ops();
  int n_blocked = 0;
  for (int k = 0; k < 48; k++) {
    int r = (int)((frand() + 1) * 1e6);
    int groups = (int[]){1, 1, 1, 2, 4}[r % 5], cg = 1 + (r / 5) % 8, og = 1 + (r / 40) % 9;
    int kk = (int[]){1, 3, 3, 5}[(r / 360) % 4], stride = 1 + (r / 1440) % 2;
    int dil = (int[]){1, 1, 2, 4}[(r / 2880) % 4], pad = (r / 11520) % 3 * dil;
    int n = 1 + (r / 34560) % 3, bias = (r / 103680) % 2, blk = (r / 207360) % 2;
    int h = 5 + (int)((frand() + 1) * 6), w = 5 + (int)((frand() + 1) * 6);
    if (h + 2 * pad < (kk - 1) * dil + 1) h = (kk - 1) * dil + 1;
    if (w + 2 * pad < (kk - 1) * dil + 1) w = (kk - 1) * dil + 1;
    int ci = cg * groups, co = og * groups;
    ecs_tensor *x = blk ? blocked(n, ci, h, w) : rnd(4, n, ci, h, w, -1, 1);
    ecs_tensor *wt = rnd(4, co, cg, kk, kk, -0.5f, 0.5f);
    ecs_tensor *b = bias ? rnd(1, co, 1, 1, 1, -0.5f, 0.5f) : NULL;
    char what[128];
    snprintf(what, sizeof what, "case %d: x[%d,%d,%d,%d] w[%d,%d,%d,%d] s%d p%d d%d g%d%s%s", k, n,
             ci, h, w, co, cg, kk, kk, stride, pad, dil, groups, bias ? " bias" : "",
             blk ? " blocked" : "");
    /* fused on "cpu", against the reference's fused op */
    ecs_tensor *yf = conv_out(x, wt, stride, pad, dil);
    ecs_op f = conv_op(x, wt, b, yf, stride, pad, dil, groups);
    ecs_act act = k % 2 ? ECS_ACT_RELU6 : ECS_ACT_RELU;
    float clip = act == ECS_ACT_RELU6 ? 6.0f : 0.0f;
    f.p.conv.act = act;
    parity(&f, 1, 0, 1e-4);
    /* conv then relu on "cpu" */
    ecs_tensor *yc = conv_out(x, wt, stride, pad, dil);
    ecs_op c = conv_op(x, wt, b, yc, stride, pad, dil, groups);
    run_on(g_cpu, &c);
    /* the post-op leaves the layout oneDNN picks for the convolution as it was */
    if (yf->layout != yc->layout ||
        (yf->layout == ECS_LAYOUT_DNNL && yf->layout_desc != yc->layout_desc))
      fail_msg("%s: the fused op's output has another layout than the convolution's", what);
    n_blocked += yf->layout == ECS_LAYOUT_DNNL;
    ecs_tensor *yr = tn(4, yc->ne[0], yc->ne[1], yc->ne[2], yc->ne[3]);
    ecs_op a = {.type = ECS_OP_RELU, .src = {yc}, .dst = {yr}, .p.act.clip = clip};
    run_on(g_cpu, &a);
    double e = rel_l2(plain_of(g_cpu, yf), plain_of(g_cpu, yr));
    if (!(e <= 1e-6)) fail_msg("%s: fused differs from conv then relu by %.3g", what, e);
    /* the reference: fused == conv then relu, bit for bit */
    ecs_tensor *xr = clone_plain(g_cpu, x);
    ecs_tensor *rf = conv_out(xr, wt, stride, pad, dil), *rc = conv_out(xr, wt, stride, pad, dil);
    ecs_op rfo = conv_op(xr, wt, b, rf, stride, pad, dil, groups);
    rfo.p.conv.act = act;
    run_on(g_ref, &rfo);
    ecs_op rco = conv_op(xr, wt, b, rc, stride, pad, dil, groups);
    run_on(g_ref, &rco);
    ecs_tensor *rr = tn(4, rc->ne[0], rc->ne[1], rc->ne[2], rc->ne[3]);
    ecs_op ra = {.type = ECS_OP_RELU, .src = {rc}, .dst = {rr}, .p.act.clip = clip};
    run_on(g_ref, &ra);
    if (memcmp(rf->data, rr->data, rf->nbytes) != 0)
      fail_msg("%s: cpu-ref's fused op differs", what);
    const float *v = rf->data;
    for (int64_t i = 0; i < ecs_nelements(rf); i++)
      if (!(v[i] >= 0) || (clip > 0 && v[i] > clip))
        fail_msg("%s: a value outside [0, %g] after the fused activation", what, clip);
    free_all();
  }
  /* the draws reach blocked outputs and the rearranged (split, side by side) forwards */
  print_message("fused: %d of 48 outputs blocked, %llu convolutions rearranged\n", n_blocked,
                (unsigned long long)(phased_ops() - ph0));
  assert_true(n_blocked >= 12);
  if (g_expect && g_expect->split_fwd)
    assert_true(phased_ops() - ph0 >= 2);
  else
    expect_path("fused, rearranged", phased_ops() - ph0, 0);
}

/* A fused activation belongs to the forward: a backward op carrying one, or an activation that
 * does not exist, is an error on every CPU backend, not a silently different result. */
static void test_conv_act_is_checked(void **state) {
  (void)state;
  ecs_tensor *x = rnd(4, 1, 8, 6, 6, -1, 1), *w = rnd(4, 8, 8, 3, 3, -1, 1);
  ecs_tensor *dy = rnd(4, 1, 8, 6, 6, -1, 1);
  ecs_backend *bes[2] = {g_cpu, g_ref};
  for (int i = 0; i < 2; i++) {
    ecs_op ops[3] = {
        {.type = ECS_OP_CONV2D_BWD_DATA, .src = {dy, w}, .dst = {tn(4, 1, 8, 6, 6)}},
        {.type = ECS_OP_CONV2D_BWD_WEIGHT, .src = {x, dy}, .dst = {tn(4, 8, 8, 3, 3)}},
        {.type = ECS_OP_CONV2D, .src = {x, w}, .dst = {tn(4, 1, 8, 6, 6)}},
    };
    for (int j = 0; j < 3; j++) {
      ops[j].p.conv = (typeof(ops[j].p.conv)){{1, 1}, {1, 1}, {1, 1}, 1, ECS_ACT_RELU};
      if (j == 2) ops[j].p.conv.act = ECS_ACT_COUNT;
      ecs_err err = {0};
      ecs_status st = ECS_ERR_UNSUPPORTED;
      if (ecs_device_supports_op(ecs_backend_device(bes[i]), &ops[j])) {
        st = ecs_backend_prepare(bes[i], &ops[j], &err);
        if (st == ECS_OK) {
          alloc_t(ops[j].dst[0]);
          st = ecs_backend_compute(bes[i], &ops[j], &err);
        }
        if (st != ECS_OK) assert_non_null(strstr(err.msg, "act"));
      }
      if (st == ECS_OK)
        fail_msg("%s on %s accepted a bad fused activation", ecs_op_name(ops[j].type),
                 ecs_backend_name(bes[i]));
    }
  }
  free_all();
}

/* a blocked activation to feed the other ops: the output of a 1x1 convolution */
static ecs_tensor *blocked(int64_t n, int64_t c, int64_t h, int64_t w) {
  ecs_tensor *x = rnd(4, n, c, h, w, -1, 1), *k = rnd(4, c, c, 1, 1, -0.6f, 0.6f);
  ecs_tensor *y = tn(4, n, c, h, w);
  ecs_op op = conv_op(x, k, NULL, y, 1, 0, 1, 1);
  run_on(g_cpu, &op);
  return y;
}

static void test_op_sweep(void **state) {
  (void)state;
  for (int b = 0; b <= 1; b++) {
    /* C = 12 pads the 8-channel blocks, which every op must then ignore */
    ecs_tensor *x = b ? blocked(2, 12, 7, 9) : rnd(4, 2, 12, 7, 9, -1, 1);
    ecs_tensor *x2 = b ? blocked(2, 12, 7, 9) : rnd(4, 2, 12, 7, 9, -1, 1);
    if (b) assert_int_equal(x->layout, ECS_LAYOUT_DNNL);
    ecs_tensor *g = rnd(1, 12, 1, 1, 1, 0.5f, 1.5f), *be = rnd(1, 12, 1, 1, 1, -1, 1);
    ecs_tensor *rm = rnd(1, 12, 1, 1, 1, -0.5f, 0.5f), *rv = rnd(1, 12, 1, 1, 1, 0.5f, 2.0f);
    ecs_op bn = {.type = ECS_OP_BATCHNORM,
                 .src = {x, g, be, rm, rv},
                 .dst = {tn(4, 2, 12, 7, 9), tn(1, 12, 1, 1, 1), tn(1, 12, 1, 1, 1)},
                 .p.bn = {1e-5f, 0.1f, 1}};
    parity(&bn, 7, 3 << 3, 1e-5);
    ecs_op bni = {.type = ECS_OP_BATCHNORM,
                  .src = {x, g, be, rm, rv},
                  .dst = {tn(4, 2, 12, 7, 9)},
                  .p.bn = {1e-5f, 0.1f, 0}};
    parity(&bni, 1, 0, 1e-5);
    for (int clip = 0; clip <= 6; clip += 6) {
      ecs_tensor *xs = rnd(4, 2, 12, 7, 9, -8, 8);
      ecs_op r = {.type = ECS_OP_RELU,
                  .src = {b ? x : xs},
                  .dst = {tn(4, 2, 12, 7, 9)},
                  .p.act = {(float)clip}};
      parity(&r, 1, 0, 1e-5);
    }
    ecs_op add = {
        .type = ECS_OP_ADD, .src = {x, x2}, .dst = {tn(4, 2, 12, 7, 9)}, .p.scalar = {0.5f, -2.0f}};
    parity(&add, 1, 0, 1e-5);
    ecs_tensor *xp = rnd(4, 2, 12, 7, 9, -1, 1); /* mixed layouts: the second is reordered */
    ecs_op addm = {
        .type = ECS_OP_ADD, .src = {x, xp}, .dst = {tn(4, 2, 12, 7, 9)}, .p.scalar = {1, 1}};
    parity(&addm, 1, 0, 1e-5);
    ecs_op mul = {.type = ECS_OP_MUL, .src = {x, x2}, .dst = {tn(4, 2, 12, 7, 9)}};
    parity(&mul, 1, 0, 1e-5);
    ecs_op sc = {
        .type = ECS_OP_SCALE, .src = {x}, .dst = {tn(4, 2, 12, 7, 9)}, .p.scalar = {3.0f, 0.25f}};
    parity(&sc, 1, 0, 1e-5);
    struct {
      ecs_pool_kind kind;
      int k, s, p, ceil, incl;
    } pools[] = {
        {ECS_POOL_MAX, 3, 2, 1, 0, 0}, {ECS_POOL_MAX, 2, 2, 0, 1, 0}, {ECS_POOL_AVG, 3, 2, 1, 0, 1},
        {ECS_POOL_AVG, 3, 2, 1, 1, 0}, {ECS_POOL_AVG, 2, 2, 0, 1, 1}, {ECS_POOL_AVG, 3, 1, 1, 0, 0},
        {ECS_POOL_MAX, 2, 2, 0, 0, 0}, {ECS_POOL_AVG, 2, 2, 0, 0, 1}, /* floor drops a row */
    };
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
      ecs_op p = {.type = ECS_OP_POOL2D,
                  .src = {x},
                  .p.pool = {pools[i].kind,
                             {pools[i].k, pools[i].k},
                             {pools[i].s, pools[i].s},
                             {pools[i].p, pools[i].p},
                             pools[i].ceil,
                             pools[i].incl}};
      p.dst[0] =
          tn(4, 2, 12, ecs_pool_out_size(7, pools[i].k, pools[i].s, pools[i].p, pools[i].ceil),
             ecs_pool_out_size(9, pools[i].k, pools[i].s, pools[i].p, pools[i].ceil));
      /* PyTorch's count_include_pad divisor differs from oneDNN's past the padded border */
      g_allow_ref = pools[i].kind == ECS_POOL_AVG && pools[i].incl && pools[i].ceil;
      parity(&p, 1, 0, 1e-5);
      ecs_tensor *dy = rnd(4, 2, 12, p.dst[0]->ne[2], p.dst[0]->ne[3], -1, 1);
      if (pools[i].kind == ECS_POOL_AVG) {
        ecs_op pb = {.type = ECS_OP_POOL2D_BWD,
                     .src = {x, dy},
                     .dst = {tn(4, 2, 12, 7, 9)},
                     .p.pool = p.p.pool};
        parity(&pb, 1, 0, 1e-5);
      }
      g_allow_ref = 0;
    }
    ecs_op gap = {.type = ECS_OP_GAP, .src = {x}, .dst = {tn(2, 2, 12, 1, 1)}};
    parity(&gap, 1, 0, 1e-5);
    ecs_op gapb = {
        .type = ECS_OP_GAP_BWD, .src = {rnd(2, 2, 12, 1, 1, -1, 1)}, .dst = {tn(4, 2, 12, 7, 9)}};
    parity(&gapb, 1, 0, 1e-5);
    int sizes[][2] = {{14, 18}, {4, 5}, {11, 23}};
    for (int i = 0; i < 3; i++) {
      ecs_op rs = {.type = ECS_OP_RESIZE_BILINEAR,
                   .src = {x},
                   .dst = {tn(4, 2, 12, sizes[i][0], sizes[i][1])}};
      parity(&rs, 1, 0, 1e-5);
      ecs_op rb = {.type = ECS_OP_RESIZE_BILINEAR_BWD,
                   .src = {rnd(4, 2, 12, sizes[i][0], sizes[i][1], -1, 1)},
                   .dst = {tn(4, 2, 12, 7, 9)}};
      parity(&rb, 1, 0, 1e-5);
    }
    for (int log = 0; log <= 1; log++) {
      ecs_op sm = {.type = log ? ECS_OP_LOG_SOFTMAX : ECS_OP_SOFTMAX,
                   .src = {x},
                   .dst = {tn(4, 2, 12, 7, 9)}};
      parity(&sm, 1, 0, 1e-5);
      ecs_op smb = {.type = log ? ECS_OP_LOG_SOFTMAX_BWD : ECS_OP_SOFTMAX_BWD,
                    .src = {sm.dst[0], x2},
                    .dst = {tn(4, 2, 12, 7, 9)}};
      parity(&smb, 1, 0, 1e-5);
    }
    /* (N, C) tensors: softmax over classes, batch norm of vectors */
    ecs_tensor *v = rnd(2, 6, 21, 1, 1, -3, 3), *v2 = rnd(2, 6, 21, 1, 1, -1, 1);
    for (int log = 0; log <= 1; log++) {
      ecs_op sm = {.type = log ? ECS_OP_LOG_SOFTMAX : ECS_OP_SOFTMAX,
                   .src = {v},
                   .dst = {tn(2, 6, 21, 1, 1)}};
      parity(&sm, 1, 0, 1e-5);
      ecs_op smb = {.type = log ? ECS_OP_LOG_SOFTMAX_BWD : ECS_OP_SOFTMAX_BWD,
                    .src = {sm.dst[0], v2},
                    .dst = {tn(2, 6, 21, 1, 1)}};
      parity(&smb, 1, 0, 1e-5);
    }
    ecs_tensor *g21 = rnd(1, 21, 1, 1, 1, 0.5f, 1.5f), *b21 = rnd(1, 21, 1, 1, 1, -1, 1);
    ecs_op bnv = {.type = ECS_OP_BATCHNORM,
                  .src = {v, g21, b21},
                  .dst = {tn(2, 6, 21, 1, 1), tn(1, 21, 1, 1, 1), tn(1, 21, 1, 1, 1)},
                  .p.bn = {1e-5f, 0.1f, 1}};
    parity(&bnv, 7, 0, 1e-5);
    ecs_tensor *x3 = rnd(4, 2, 5, 7, 9, -1, 1);
    ecs_op cat = {
        .type = ECS_OP_CONCAT, .src = {x, x3, x2}, .dst = {tn(4, 2, 29, 7, 9)}, .p.concat = {3}};
    parity(&cat, 1, 0, 1e-5);
    free_all();
  }
}

/* A class mask sends log-softmax to the reference kernel (-inf where masked); its backward must
 * then agree with the reference too (0 where masked, masked dy left out of the sums). */
static void test_masked_log_softmax_backward(void **state) {
  (void)state;
  ecs_tensor *x = blocked(2, 12, 5, 5), *mask = tn(2, 2, 12, 1, 1);
  alloc_t(mask);
  float *m = mask->data;
  for (int i = 0; i < 24; i++)
    m[i] = (i % 3) != 1;
  ecs_tensor *y = tn(4, 2, 12, 5, 5);
  ecs_op f = {.type = ECS_OP_LOG_SOFTMAX, .src = {x, mask}, .dst = {y}};
  g_allow_ref = 1;
  parity(&f, 1, 0, 1e-5);
  g_allow_ref = 0;
  ecs_tensor *yp = plain_of(g_cpu, y);
  int masked = 0;
  for (int64_t i = 0; i < ecs_nelements(yp); i++)
    masked += isinf(((float *)yp->data)[i]) != 0;
  assert_int_equal(masked, 2 * 4 * 25);
  ecs_op b = {.type = ECS_OP_LOG_SOFTMAX_BWD,
              .src = {y, rnd(4, 2, 12, 5, 5, -1, 1)},
              .dst = {tn(4, 2, 12, 5, 5)}};
  g_allow_ref = 1;
  parity(&b, 1, 0, 1e-5);
  g_allow_ref = 0;
  free_all();
}

/* Ops oneDNN does not take run on the reference kernels, blocked inputs reordered first. */
static void test_fallback_reads_blocked_inputs(void **state) {
  (void)state;
  ecs_tensor *x = blocked(2, 12, 6, 6);
  ecs_backend_reset_stats(g_cpu);
  ecs_op sl = {.type = ECS_OP_SLICE_C, .src = {x}, .dst = {tn(4, 2, 5, 6, 6)}, .p.slice = {3}};
  g_allow_ref = 1;
  parity(&sl, 1, 0, 0);
  g_allow_ref = 0;
  assert_int_equal(sl.dst[0]->layout, ECS_LAYOUT_PLAIN);
  ecs_backend_stats s;
  stats(&s);
  assert_true(s.ref_ops >= 1);
  free_all();
}

static void test_bad_input_is_an_error(void **state) {
  (void)state;
  ecs_tensor *x = rnd(4, 1, 8, 6, 6, -1, 1), *w = rnd(4, 4, 3, 3, 3, -1, 1); /* 8 != 3 channels */
  ecs_tensor *y = tn(4, 1, 4, 6, 6);
  ecs_op c = conv_op(x, w, NULL, y, 1, 1, 1, 1);
  ecs_err err = {0};
  ecs_status st = ecs_backend_prepare(g_cpu, &c, &err);
  if (st == ECS_OK) {
    alloc_t(y);
    st = ecs_backend_compute(g_cpu, &c, &err);
  }
  assert_int_not_equal(st, ECS_OK);
  assert_true(err.msg[0] != 0);
  /* a well-formed op whose output was never given memory */
  ecs_tensor *w2 = rnd(4, 4, 8, 3, 3, -1, 1), *y2 = tn(4, 1, 4, 6, 6);
  ecs_op c2 = conv_op(x, w2, NULL, y2, 1, 1, 1, 1);
  err = (ecs_err){0};
  assert_int_equal(ecs_backend_prepare(g_cpu, &c2, &err), ECS_OK);
  assert_int_equal(ecs_backend_compute(g_cpu, &c2, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "no memory"));
  /* a tensor claiming a private layout without its description */
  ecs_tensor *bad = rnd(4, 1, 8, 6, 6, -1, 1), *out = tn(4, 1, 8, 6, 6);
  bad->layout = ECS_LAYOUT_DNNL;
  ecs_op r = {.type = ECS_OP_RELU, .src = {bad}, .dst = {out}};
  err = (ecs_err){0};
  st = ecs_backend_prepare(g_cpu, &r, &err);
  if (st == ECS_OK) {
    alloc_t(out);
    st = ecs_backend_compute(g_cpu, &r, &err);
  }
  assert_int_not_equal(st, ECS_OK);
  assert_true(err.msg[0] != 0);
  free_all();
}

/* ---- two backends in two threads -------------------------------------------------------- */

typedef struct job {
  ecs_tensor *x, *w[3], *expect;
  int ok;
  char msg[ECS_ERR_MSG_MAX + 64];
} job;

static void *worker(void *arg) {
  job *j = arg;
  ecs_err err = {0};
  ecs_backend *be =
      ecs_backend_init(ecs_device_find("cpu", &err), &(ecs_backend_params){.n_threads = 1}, &err);
  j->ok = 0;
  if (!be) {
    snprintf(j->msg, sizeof j->msg, "init: %s", err.msg);
    return NULL;
  }
  for (int rep = 0; rep < 3; rep++) {
    ecs_tensor h = *j->x, ys[3], outt;
    ecs_tensor *cur = &h;
    float *mem[4] = {0};
    for (int i = 0; i < 3; i++) {
      ys[i] = (ecs_tensor){
          .type = ECS_F32, .nd = 4, .ne = {cur->ne[0], j->w[i]->ne[0], cur->ne[2], cur->ne[3]}};
      ecs_op c = {.type = ECS_OP_CONV2D,
                  .src = {cur, j->w[i]},
                  .dst = {&ys[i]},
                  .p.conv = {{1, 1}, {1, 1}, {1, 1}, 1}};
      if (ecs_backend_prepare(be, &c, &err) != ECS_OK) goto fail;
      mem[i] = aligned_alloc(64, (ys[i].nbytes + 63) / 64 * 64);
      ys[i].data = mem[i];
      if (ecs_backend_compute(be, &c, &err) != ECS_OK) goto fail;
      cur = &ys[i];
    }
    outt = (ecs_tensor){
        .type = ECS_F32, .nd = 4, .ne = {cur->ne[0], cur->ne[1], cur->ne[2], cur->ne[3]}};
    ecs_op cp = {.type = ECS_OP_COPY, .src = {cur}, .dst = {&outt}};
    if (ecs_backend_prepare(be, &cp, &err) != ECS_OK) goto fail;
    mem[3] = malloc(outt.nbytes);
    outt.data = mem[3];
    if (ecs_backend_compute(be, &cp, &err) != ECS_OK) goto fail;
    double e = rel_l2(&outt, j->expect);
    for (int i = 0; i < 4; i++)
      free(mem[i]);
    if (e > 1e-4) {
      snprintf(j->msg, sizeof j->msg, "thread result differs: %.3g", e);
      ecs_backend_free(be);
      return NULL;
    }
    continue;
  fail:
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    for (int i = 0; i < 4; i++)
      free(mem[i]);
    ecs_backend_free(be);
    return NULL;
  }
  ecs_backend_free(be);
  j->ok = 1;
  return NULL;
}

static void test_two_threads(void **state) {
  (void)state;
  job jobs[2];
  for (int k = 0; k < 2; k++) {
    jobs[k].x = rnd(4, 1, 8 + 8 * k, 12, 12, -1, 1);
    ecs_tensor *h = jobs[k].x;
    for (int i = 0; i < 3; i++) {
      jobs[k].w[i] = rnd(4, 16, h->ne[1], 3, 3, -0.3f, 0.3f);
      ecs_tensor *y = conv_out(h, jobs[k].w[i], 1, 1, 1);
      ecs_op c = conv_op(h, jobs[k].w[i], NULL, y, 1, 1, 1, 1);
      run_on(g_ref, &c);
      h = y;
    }
    jobs[k].expect = h;
  }
  pthread_t th[2];
  for (int k = 0; k < 2; k++)
    assert_int_equal(pthread_create(&th[k], NULL, worker, &jobs[k]), 0);
  for (int k = 0; k < 2; k++)
    pthread_join(th[k], NULL);
  for (int k = 0; k < 2; k++)
    if (!jobs[k].ok) fail_msg("thread %d: %s", k, jobs[k].msg);
  free_all();
}

/* Threads per op (dnnl-team.c) on a backend of two: ops too small to gain from a team run alone,
 * whatever the load, and large ones (which take the team unless other processes contend for the
 * cores, when the load rule halves it) give the reference's results either way. */
static void test_team_sizes(void **state) {
  (void)state;
  ecs_backend_stats s0, s1;
  stats(&s0);
  ecs_tensor *x = rnd(4, 2, 12, 7, 9, -1, 1), *w = rnd(4, 16, 12, 3, 3, -0.3f, 0.3f);
  ecs_op r = {.type = ECS_OP_RELU, .src = {x}, .dst = {tn(4, 2, 12, 7, 9)}};
  parity(&r, 1, 0, 1e-6);
  ecs_op c = conv_op(x, w, NULL, conv_out(x, w, 1, 1, 1), 1, 1, 1, 1);
  parity(&c, 1, 0, 1e-5);
  stats(&s1);
  assert_true(s1.ops > s0.ops);
  assert_int_equal(s1.solo_ops - s0.solo_ops, s1.ops - s0.ops);
  /* 589824 elements (over 2^19) and 340 MFLOP (over 2) */
  ecs_tensor *xb = rnd(4, 4, 32, 64, 72, -1, 1), *wb = rnd(4, 32, 32, 3, 3, -0.1f, 0.1f);
  ecs_tensor *g = rnd(1, 32, 1, 1, 1, 0.5f, 1.5f), *b = rnd(1, 32, 1, 1, 1, -1, 1);
  ecs_op bn = {.type = ECS_OP_BATCHNORM,
               .src = {xb, g, b},
               .dst = {tn(4, 4, 32, 64, 72)},
               .p.bn = {1e-5f, 0.1f, 1}};
  parity(&bn, 1, 0, 1e-5);
  ecs_op cb = conv_op(xb, wb, NULL, conv_out(xb, wb, 1, 1, 1), 1, 1, 1, 1);
  parity(&cb, 1, 0, 1e-5);
  ecs_backend_stats s2;
  stats(&s2);
  print_message("large ops: %llu of %llu ran alone (the load rule: other processes held cores)\n",
                (unsigned long long)(s2.solo_ops - s1.solo_ops),
                (unsigned long long)(s2.ops - s1.ops));
  free_all();
}

static int setup(void **state) {
  (void)state;
  ecs_err err = {0};
  g_cpu =
      ecs_backend_init(ecs_device_find("cpu", &err), &(ecs_backend_params){.n_threads = 2}, &err);
  g_ref = ecs_backend_init(ecs_device_find("cpu-ref", &err), &(ecs_backend_params){.n_threads = 2},
                           &err);
  g_expect = cpu_expectations();
  if (g_expect)
    print_message("paths expected of %s (oneDNN's ISA here)\n", g_expect->isa);
  else
    print_message("an ISA below AVX2: the fast paths are not checked, only the results\n");
  return g_cpu && g_ref ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  ecs_backend_free(g_cpu);
  ecs_backend_free(g_ref);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_chain_keeps_blocked_layout),
      cmocka_unit_test(test_dilated_chain_keeps_blocked_layout),
      cmocka_unit_test(test_dilated_conv_phases),
      cmocka_unit_test(test_narrow_maps_side_by_side),
      cmocka_unit_test(test_winograd_conv),
      cmocka_unit_test(test_winograd_layouts),
      cmocka_unit_test(test_primitive_cache),
      cmocka_unit_test(test_weight_cache_sees_updates),
      cmocka_unit_test(test_backward_ops_on_dnnl),
      cmocka_unit_test(test_conv_variants),
      cmocka_unit_test(test_conv_relu_fused),
      cmocka_unit_test(test_conv_act_is_checked),
      cmocka_unit_test(test_op_sweep),
      cmocka_unit_test(test_masked_log_softmax_backward),
      cmocka_unit_test(test_fallback_reads_blocked_inputs),
      cmocka_unit_test(test_bad_input_is_an_error),
      cmocka_unit_test(test_two_threads),
      cmocka_unit_test(test_team_sizes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
#else
int main(void) {
  printf("built without oneDNN: nothing to test\n");
  return 77;
}
#endif
