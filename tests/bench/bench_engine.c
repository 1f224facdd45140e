/* bench_engine.c - timings of the engine's "cpu" backend, for tests/bench/run.sh.
 *
 * Networks are written directly as backend ops (eager: prepare, allocate, compute, free when a
 * block is done), the way the nn layer drives the backend, so the figures include the
 * backend's per-op overhead. Weights are random: only time is measured here; correctness is
 * the tests' business. Each case prints one line of key=value pairs:
 *   case=<name> ms=<median> min_ms=<min> gflop=<work per run> runs=<n>
 *
 * Usage: bench_engine CASE [--threads N] [--runs R] [--size S] [--batch B]
 *   CASE: conv (the 3x3 convolutions of ResNet stages), resnet38d, small, train, and A/B
 *   comparisons of a baseline backend against the default one in the same process, timed
 *   alternately: dilated (dilated convolutions; BENCH_DIL_SHAPE=i picks one shape,
 *   BENCH_DIL_KINDS a bit mask of fwd, bwd_data, bwd_weights), conv_ab (conv's shapes;
 *   BENCH_DIL_SHAPE too), resnet38d_ab, small_ab, train_ab (whole passes or steps).
 *   BENCH_BASE="NAME=VALUE" is the baseline backend's engine option, on top of those of the
 *   whole run: ECSNET_DNNL_PHASES=0 (no space-to-batch) unless given. ECSNET_FUSE=0 there (or
 *   for the whole run) runs ReLU as its own op instead of fused into the convolution before
 *   it. The engine options of the run come from ECSNET_* (tool_env.h, ecs/options.h).
 *
 * Inference passes run as the served model does (ecs_model_fold_bn, backbone.c): each batch
 * norm that follows a convolution folded into it (weights and a bias), and the ReLU after it
 * fused into the convolution (ECS_OP_CONV2D with p.conv.act). Training steps keep every op. */
#include "ecs/backend.h"
#include "tool_env.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench {
  ecs_backend *be;
  ecs_buffer_type *bt;
  double flop; /* counted while the network runs */
  int training;
  int fuse; /* inference: ReLU fused into the convolution before it (fuse option not off) */
} bench;

static void die(const char *what, const ecs_err *err) {
  fprintf(stderr, "bench_engine: %s: %s\n", what, err ? err->msg : "");
  exit(1);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + 1e-6 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x853c49e6748fea9bull;
static float frand(void) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((g_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* ---- tensors ---------------------------------------------------------------------------- */

static ecs_tensor *tn(int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
  ecs_tensor *t = calloc(1, sizeof *t);
  if (!t) die("out of memory", NULL);
  t->type = ECS_F32;
  t->nd = nd;
  int64_t ne[4] = {a, b, c, d};
  for (int i = 0; i < 4; i++)
    t->ne[i] = i < nd ? ne[i] : 1;
  t->nbytes = ecs_plain_nbytes(t);
  return t;
}

/* Freed activation buffers are kept for reuse (best fit), as an arena or a caching allocator
 * would: after the warm-up run, a forward pass allocates nothing, so the timings measure the
 * backend rather than page faults on fresh memory. */
#define POOL_MAX 256
static ecs_buffer *g_pool[POOL_MAX];
static int g_npool;

static void alloc_t(bench *b, ecs_tensor *t) {
  int best = -1;
  for (int i = 0; i < g_npool; i++) {
    size_t sz = ecs_buffer_size(g_pool[i]);
    if (sz >= t->nbytes && sz <= 2 * t->nbytes + 4096 &&
        (best < 0 || sz < ecs_buffer_size(g_pool[best])))
      best = i;
  }
  if (best >= 0) {
    t->buffer = g_pool[best];
    g_pool[best] = g_pool[--g_npool];
  } else {
    ecs_err err = {0};
    t->buffer = ecs_buffer_alloc(b->bt, t->nbytes, &err);
    if (!t->buffer) die("allocation", &err);
  }
  t->data = ecs_buffer_base(t->buffer);
}

static void drop(ecs_tensor *t) {
  if (!t) return;
  if (g_npool < POOL_MAX)
    g_pool[g_npool++] = t->buffer;
  else
    ecs_buffer_free(t->buffer);
  free(t);
}

/* a plain parameter of uniform values in [-a, a]; frozen unless training */
static ecs_tensor *param(bench *b, int nd, int64_t n0, int64_t n1, int64_t n2, int64_t n3, float lo,
                         float hi) {
  ecs_tensor *t = tn(nd, n0, n1, n2, n3);
  alloc_t(b, t);
  float *v = t->data;
  for (int64_t i = 0; i < ecs_nelements(t); i++)
    v[i] = lo + (hi - lo) * 0.5f * (frand() + 1);
  t->requires_grad = (uint8_t)b->training;
  t->frozen = (uint8_t)!b->training;
  return t;
}

static int g_trace; /* BENCH_TRACE=1: name the ops that reorder or fall back, on stderr */

/* BENCH_PROFILE=1: time spent in each kind of op (type and shapes), printed on stderr at exit */
typedef struct prof_entry {
  char name[96];
  double ms;
  long n;
} prof_entry;
static prof_entry g_prof[128];
static int g_nprof, g_profile;

static void prof_add(const ecs_op *op, double ms) {
  char name[96];
  snprintf(name, sizeof name, "%s C=%lld HW=%lldx%lld k=%lld -> C=%lld HW=%lld",
           ecs_op_name(op->type), (long long)op->src[0]->ne[1], (long long)op->src[0]->ne[2],
           (long long)op->src[0]->ne[3],
           (long long)(op->src[1] && op->src[1]->nd == 4 ? op->src[1]->ne[2] : 0),
           (long long)(op->dst[0] && op->dst[0]->nd > 1 ? op->dst[0]->ne[1] : 0),
           (long long)(op->dst[0] && op->dst[0]->nd == 4 ? op->dst[0]->ne[2] : 0));
  int i = 0;
  while (i < g_nprof && strcmp(g_prof[i].name, name) != 0)
    i++;
  if (i == g_nprof) {
    if (g_nprof == 128) return;
    snprintf(g_prof[g_nprof++].name, sizeof g_prof[0].name, "%s", name);
  }
  g_prof[i].ms += ms;
  g_prof[i].n++;
}

static void prof_print(void) {
  double total = 0;
  for (int i = 0; i < g_nprof; i++)
    total += g_prof[i].ms;
  for (int i = 0; i < g_nprof; i++)
    fprintf(stderr, "profile: %6.2f%% %9.3f ms/call %6ld calls  %s\n", 100 * g_prof[i].ms / total,
            g_prof[i].ms / (double)g_prof[i].n, g_prof[i].n, g_prof[i].name);
}

static void run(bench *b, ecs_op *op) {
  ecs_err err = {0};
  ecs_backend_stats s0, s1;
  if (g_trace) ecs_backend_get_stats(b->be, &s0);
  double t0 = g_profile ? now_ms() : 0;
  if (ecs_backend_prepare(b->be, op, &err) != ECS_OK) die(ecs_op_name(op->type), &err);
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && !op->dst[i]->data) alloc_t(b, op->dst[i]);
  if (ecs_backend_compute(b->be, op, &err) != ECS_OK) die(ecs_op_name(op->type), &err);
  if (g_profile) prof_add(op, now_ms() - t0);
  if (g_trace) {
    ecs_backend_get_stats(b->be, &s1);
    if (s1.reorders != s0.reorders || s1.ref_ops != s0.ref_ops)
      fprintf(stderr,
              "trace: %s src0 C=%lld HW=%lld k=%lld dst C=%lld: %llu reorders, %llu reference\n",
              ecs_op_name(op->type), (long long)op->src[0]->ne[1], (long long)op->src[0]->ne[2],
              (long long)(op->src[1] ? op->src[1]->ne[2] : 0), (long long)op->dst[0]->ne[1],
              (unsigned long long)(s1.reorders - s0.reorders),
              (unsigned long long)(s1.ref_ops - s0.ref_ops));
  }
}

/* ---- layers ----------------------------------------------------------------------------- */

typedef struct conv_p {
  ecs_tensor *w;
  int stride, pad, dil;
  ecs_tensor *fw, *fb; /* inference: the following batch norm folded in (fold()), or NULL */
} conv_p;

typedef struct bn_p {
  ecs_tensor *g, *b, *rm, *rv;
} bn_p;

static conv_p mk_conv(bench *b, int64_t ci, int64_t co, int k, int stride, int dil) {
  float a = 1.0f / sqrtf((float)(ci * k * k));
  return (conv_p){
      .w = param(b, 4, co, ci, k, k, -a, a), .stride = stride, .pad = dil * (k / 2), .dil = dil};
}

static bn_p mk_bn(bench *b, int64_t c) {
  return (bn_p){param(b, 1, c, 1, 1, 1, 0.8f, 1.2f), param(b, 1, c, 1, 1, 1, -0.1f, 0.1f),
                param(b, 1, c, 1, 1, 1, -0.1f, 0.1f), param(b, 1, c, 1, 1, 1, 0.8f, 1.2f)};
}

static ecs_tensor *conv_wb(bench *b, ecs_tensor *x, const conv_p *c, ecs_tensor *w,
                           ecs_tensor *bias, ecs_act act) {
  ecs_tensor *y = tn(4, x->ne[0], w->ne[0],
                     ecs_conv_out_size(x->ne[2], (int)w->ne[2], c->stride, c->pad, c->dil),
                     ecs_conv_out_size(x->ne[3], (int)w->ne[3], c->stride, c->pad, c->dil));
  ecs_op op = {.type = ECS_OP_CONV2D,
               .src = {x, w, bias},
               .dst = {y},
               .p.conv = {{c->stride, c->stride}, {c->pad, c->pad}, {c->dil, c->dil}, 1, act}};
  run(b, &op);
  b->flop += 2.0 * (double)ecs_nelements(y) * (double)(w->ne[1] * w->ne[2] * w->ne[3]);
  return y;
}

static ecs_tensor *conv(bench *b, ecs_tensor *x, const conv_p *c) {
  return conv_wb(b, x, c, c->w, NULL, ECS_ACT_NONE);
}

static ecs_tensor *relu(bench *b, ecs_tensor *x) {
  ecs_tensor *r = tn(4, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  ecs_op a = {.type = ECS_OP_RELU, .src = {x}, .dst = {r}};
  run(b, &a);
  return r;
}

/* For inference: bn(conv(x)) as one convolution, w * s and beta - mean * s with
 * s = gamma / sqrt(var + eps) per output channel (ecs_model_fold_bn's rule). */
static void fold(bench *b, conv_p *c, const bn_p *p) {
  if (b->training) return;
  ecs_tensor *w = c->w;
  int64_t o = w->ne[0], k = ecs_nelements(w) / o;
  c->fw = param(b, 4, o, w->ne[1], w->ne[2], w->ne[3], 0, 0);
  c->fb = param(b, 1, o, 1, 1, 1, 0, 0);
  const float *wv = w->data, *g = p->g->data, *be = p->b->data, *m = p->rm->data, *v = p->rv->data;
  float *fw = c->fw->data, *fb = c->fb->data;
  for (int64_t i = 0; i < o; i++) {
    float sc = g[i] / sqrtf(v[i] + 1e-5f);
    for (int64_t j = 0; j < k; j++)
      fw[i * k + j] = wv[i * k + j] * sc;
    fb[i] = be[i] - m[i] * sc;
  }
}

/* relu(bn(conv(x))) at inference on a folded convolution: one op when the ReLU is fused */
static ecs_tensor *conv_bn_relu(bench *b, ecs_tensor *x, const conv_p *c) {
  ecs_tensor *y = conv_wb(b, x, c, c->fw, c->fb, b->fuse ? ECS_ACT_RELU : ECS_ACT_NONE);
  if (b->fuse) return y;
  ecs_tensor *r = relu(b, y);
  drop(y);
  return r;
}

static ecs_tensor *bn_relu(bench *b, ecs_tensor *x, const bn_p *p) {
  ecs_tensor *y = tn(4, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  ecs_op op = {.type = ECS_OP_BATCHNORM,
               .src = {x, p->g, p->b, p->rm, p->rv},
               .dst = {y},
               .p.bn = {1e-5f, 0.1f, 0}};
  run(b, &op);
  ecs_tensor *r = tn(4, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  ecs_op a = {.type = ECS_OP_RELU, .src = {y}, .dst = {r}};
  run(b, &a);
  drop(y);
  return r;
}

static ecs_tensor *add(bench *b, ecs_tensor *x, ecs_tensor *y) {
  ecs_tensor *s = tn(4, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  ecs_op op = {.type = ECS_OP_ADD, .src = {x, y}, .dst = {s}, .p.scalar = {1, 1}};
  run(b, &op);
  return s;
}

/* ---- resnet38d (method.md): pre-activation blocks, output stride 8 ---------------------- */

typedef struct block {
  bn_p bn2a, bn2b1, bn2b2;
  conv_p c2a, c2b1, c2b2, c1;
  int has_c1, bottle;
} block;

static block mk_block(bench *b, int64_t in, int64_t mid, int64_t out, int stride, int first_dil,
                      int dil) {
  block k = {0};
  k.bn2a = mk_bn(b, in);
  k.c2a = mk_conv(b, in, mid, 3, stride, first_dil);
  k.bn2b1 = mk_bn(b, mid);
  k.c2b1 = mk_conv(b, mid, out, 3, 1, dil);
  k.has_c1 = in != out || stride != 1;
  if (k.has_c1) k.c1 = mk_conv(b, in, out, 1, stride, 1);
  fold(b, &k.c2a, &k.bn2b1);
  return k;
}

static block mk_bottle(bench *b, int64_t in, int64_t out, int dil) {
  block k = {0};
  k.bottle = 1;
  k.bn2a = mk_bn(b, in);
  k.c2a = mk_conv(b, in, out / 4, 1, 1, 1);
  k.bn2b1 = mk_bn(b, out / 4);
  k.c2b1 = mk_conv(b, out / 4, out / 2, 3, 1, dil);
  k.bn2b2 = mk_bn(b, out / 2);
  k.c2b2 = mk_conv(b, out / 2, out, 1, 1, 1);
  k.has_c1 = 1;
  k.c1 = mk_conv(b, in, out, 1, 1, 1);
  fold(b, &k.c2a, &k.bn2b1);
  fold(b, &k.c2b1, &k.bn2b2);
  return k;
}

/* consumes x */
static ecs_tensor *block_fwd(bench *b, ecs_tensor *x, const block *k) {
  ecs_tensor *xh = bn_relu(b, x, &k->bn2a);
  ecs_tensor *br1 = k->has_c1 ? conv(b, xh, &k->c1) : x;
  ecs_tensor *h, *h2; /* dropout is the identity at inference */
  if (k->c2a.fw) {
    h2 = conv_bn_relu(b, xh, &k->c2a);
  } else {
    h = conv(b, xh, &k->c2a);
    h2 = bn_relu(b, h, &k->bn2b1);
    drop(h);
  }
  drop(xh);
  if (k->bottle && k->c2b1.fw) {
    h = conv_bn_relu(b, h2, &k->c2b1);
    drop(h2);
    h2 = h;
  } else {
    h = conv(b, h2, &k->c2b1);
    drop(h2);
    if (k->bottle) {
      h2 = bn_relu(b, h, &k->bn2b2);
      drop(h);
    }
  }
  if (k->bottle) {
    h = conv(b, h2, &k->c2b2);
    drop(h2);
  }
  ecs_tensor *y = add(b, br1, h);
  drop(h);
  drop(br1);
  if (br1 != x) drop(x);
  return y;
}

typedef struct r38 {
  conv_p conv1a, fc8;
  block blocks[20];
  int n;
  bn_p bn7;
} r38;

static void mk_r38(bench *b, r38 *m) {
  m->conv1a = mk_conv(b, 3, 64, 3, 1, 1);
  int n = 0;
  m->blocks[n++] = mk_block(b, 64, 128, 128, 2, 1, 1);
  for (int i = 0; i < 2; i++)
    m->blocks[n++] = mk_block(b, 128, 128, 128, 1, 1, 1);
  m->blocks[n++] = mk_block(b, 128, 256, 256, 2, 1, 1);
  for (int i = 0; i < 2; i++)
    m->blocks[n++] = mk_block(b, 256, 256, 256, 1, 1, 1);
  m->blocks[n++] = mk_block(b, 256, 512, 512, 2, 1, 1);
  for (int i = 0; i < 5; i++)
    m->blocks[n++] = mk_block(b, 512, 512, 512, 1, 1, 1);
  m->blocks[n++] = mk_block(b, 512, 512, 1024, 1, 1, 2);
  for (int i = 0; i < 2; i++)
    m->blocks[n++] = mk_block(b, 1024, 512, 1024, 1, 2, 2);
  m->blocks[n++] = mk_bottle(b, 1024, 2048, 4);
  m->blocks[n++] = mk_bottle(b, 2048, 4096, 4);
  m->n = n;
  m->bn7 = mk_bn(b, 4096);
  m->fc8 = mk_conv(b, 4096, 21, 1, 1, 1);
}

static ecs_tensor *to_plain(bench *b, ecs_tensor *x) {
  ecs_tensor *p = tn(x->nd, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  ecs_op op = {.type = ECS_OP_COPY, .src = {x}, .dst = {p}};
  run(b, &op);
  return p;
}

static ecs_tensor *r38_fwd(bench *b, const r38 *m, ecs_tensor *img) {
  ecs_tensor *x = conv(b, img, &m->conv1a);
  for (int i = 0; i < m->n; i++)
    x = block_fwd(b, x, &m->blocks[i]);
  ecs_tensor *f = bn_relu(b, x, &m->bn7);
  drop(x);
  ecs_tensor *cam = conv(b, f, &m->fc8);
  drop(f);
  ecs_tensor *out = to_plain(b, cam);
  drop(cam);
  return out;
}

/* ---- the small backbone: 4 convolutions, output stride 8, 1x1 classifier ---------------- */

typedef struct small {
  conv_p c[4], cls;
  bn_p bn[4];
} small;

static void mk_small(bench *b, small *m) {
  int64_t ch[5] = {3, 32, 64, 128, 128};
  int st[4] = {2, 2, 2, 1};
  for (int i = 0; i < 4; i++) {
    m->c[i] = mk_conv(b, ch[i], ch[i + 1], 3, st[i], 1);
    m->bn[i] = mk_bn(b, ch[i + 1]);
    fold(b, &m->c[i], &m->bn[i]);
  }
  m->cls = mk_conv(b, 128, 21, 1, 1, 1);
}

/* Forward, keeping every activation for the backward pass when acts != NULL. */
static ecs_tensor *small_fwd(bench *b, const small *m, ecs_tensor *img, ecs_tensor **acts) {
  ecs_tensor *x = img;
  for (int i = 0; i < 4; i++) {
    if (!acts && m->c[i].fw) { /* inference on the folded network */
      ecs_tensor *r = conv_bn_relu(b, x, &m->c[i]);
      if (x != img) drop(x);
      x = r;
      continue;
    }
    ecs_tensor *c = conv(b, x, &m->c[i]);
    ecs_tensor *bnout = tn(4, c->ne[0], c->ne[1], c->ne[2], c->ne[3]);
    ecs_tensor *mean = acts ? tn(1, c->ne[1], 1, 1, 1) : NULL,
               *inv = acts ? tn(1, c->ne[1], 1, 1, 1) : NULL;
    ecs_op op = {.type = ECS_OP_BATCHNORM,
                 .src = {c, m->bn[i].g, m->bn[i].b, m->bn[i].rm, m->bn[i].rv},
                 .dst = {bnout, mean, inv},
                 .p.bn = {1e-5f, 0.1f, b->training}};
    run(b, &op);
    ecs_tensor *r = tn(4, c->ne[0], c->ne[1], c->ne[2], c->ne[3]);
    ecs_op a = {.type = ECS_OP_RELU, .src = {bnout}, .dst = {r}};
    run(b, &a);
    if (acts) {
      acts[5 * i + 0] = c, acts[5 * i + 1] = bnout, acts[5 * i + 2] = mean, acts[5 * i + 3] = inv;
      acts[5 * i + 4] = r;
    } else {
      drop(c);
      drop(bnout);
      if (x != img) drop(x);
    }
    x = r;
  }
  ecs_tensor *cam = conv(b, x, &m->cls);
  if (!acts && x != img) drop(x);
  ecs_tensor *g = tn(2, cam->ne[0], cam->ne[1], 1, 1);
  ecs_op gap = {.type = ECS_OP_GAP, .src = {cam}, .dst = {g}};
  run(b, &gap);
  if (acts)
    acts[20] = cam;
  else
    drop(cam);
  return g;
}

static ecs_tensor *grad_like(bench *b, ecs_tensor *x) {
  ecs_tensor *g = tn(x->nd, x->ne[0], x->ne[1], x->ne[2], x->ne[3]);
  g->nbytes = ecs_plain_nbytes(g);
  return g;
}

static void conv_bwd(bench *b, const conv_p *c, ecs_tensor *x, ecs_tensor *dy, ecs_tensor **dx) {
  ecs_tensor *dw = grad_like(b, c->w);
  ecs_op bw = {.type = ECS_OP_CONV2D_BWD_WEIGHT,
               .src = {x, dy},
               .dst = {dw},
               .p.conv = {{c->stride, c->stride}, {c->pad, c->pad}, {c->dil, c->dil}, 1}};
  run(b, &bw);
  double macs = (double)ecs_nelements(dy) * (double)(c->w->ne[1] * c->w->ne[2] * c->w->ne[3]);
  b->flop += 2 * macs;
  drop(dw);
  if (!dx) return;
  *dx = grad_like(b, x);
  ecs_op bd = {
      .type = ECS_OP_CONV2D_BWD_DATA, .src = {dy, c->w}, .dst = {*dx}, .p.conv = bw.p.conv};
  run(b, &bd);
  b->flop += 2 * macs;
}

/* loss = mean of the GAP scores: its gradient is a constant 1/(N*K) */
static void small_train_step(bench *b, const small *m, ecs_tensor *img) {
  ecs_tensor *acts[21];
  ecs_tensor *g = small_fwd(b, m, img, acts);
  ecs_tensor *dg = tn(2, g->ne[0], g->ne[1], 1, 1);
  alloc_t(b, dg);
  float *v = dg->data;
  for (int64_t i = 0; i < ecs_nelements(dg); i++)
    v[i] = 1.0f / (float)ecs_nelements(dg);
  ecs_tensor *dcam = grad_like(b, acts[20]);
  ecs_op gb = {.type = ECS_OP_GAP_BWD, .src = {dg}, .dst = {dcam}};
  run(b, &gb);
  ecs_tensor *dx;
  conv_bwd(b, &m->cls, acts[19], dcam, &dx);
  for (int i = 3; i >= 0; i--) {
    ecs_tensor *c = acts[5 * i], *bnout = acts[5 * i + 1];
    ecs_tensor *dr = grad_like(b, bnout);
    ecs_op rb = {.type = ECS_OP_RELU_BWD, .src = {bnout, dx}, .dst = {dr}};
    run(b, &rb);
    drop(dx);
    ecs_tensor *dc = grad_like(b, c), *dgam = tn(1, c->ne[1], 1, 1, 1),
               *dbet = tn(1, c->ne[1], 1, 1, 1);
    ecs_op bb = {.type = ECS_OP_BATCHNORM_BWD,
                 .src = {c, dr, m->bn[i].g, acts[5 * i + 2], acts[5 * i + 3]},
                 .dst = {dc, dgam, dbet},
                 .p.bn = {1e-5f, 0.1f, 1}};
    run(b, &bb);
    drop(dr), drop(dgam), drop(dbet);
    ecs_tensor *xin = i ? acts[5 * (i - 1) + 4] : img;
    conv_bwd(b, &m->c[i], xin, dc, i ? &dx : NULL);
    drop(dc);
  }
  for (int i = 0; i < 21; i++)
    drop(acts[i]);
  drop(g), drop(dg), drop(dcam);
}

/* ---- driver ----------------------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *name, double *ms, int runs, double flop) {
  qsort(ms, (size_t)runs, sizeof *ms, cmp_d);
  double med = runs % 2 ? ms[runs / 2] : 0.5 * (ms[runs / 2 - 1] + ms[runs / 2]);
  printf("case=%s ms=%.3f min_ms=%.3f gflop=%.4f runs=%d\n", name, med, ms[0], flop * 1e-9, runs);
  fflush(stdout);
}

static ecs_tensor *image(bench *b, int64_t n, int64_t size) {
  ecs_tensor *x = tn(4, n, 3, size, size);
  alloc_t(b, x);
  float *v = x->data;
  for (int64_t i = 0; i < ecs_nelements(x); i++)
    v[i] = frand();
  return x;
}

static void bench_conv(bench *b, int runs) {
  /* the 3x3 convolutions of ResNet-18/34's four stages at 224 px, batch 8 */
  struct {
    int64_t c, hw;
  } st[] = {{64, 56}, {128, 28}, {256, 14}, {512, 7}};
  for (int s = 0; s < 4; s++) {
    ecs_tensor *x = tn(4, 8, st[s].c, st[s].hw, st[s].hw);
    alloc_t(b, x);
    float *v = x->data;
    for (int64_t i = 0; i < ecs_nelements(x); i++)
      v[i] = frand();
    conv_p c = mk_conv(b, st[s].c, st[s].c, 3, 1, 1);
    /* the input in the layout the previous layer would have left it in */
    ecs_tensor *blk = conv(
        b, x,
        &(conv_p){.w = param(b, 4, st[s].c, st[s].c, 1, 1, -0.1f, 0.1f), .stride = 1, .dil = 1});
    double ms[64];
    drop(conv(b, blk, &c));
    for (int r = 0; r < runs; r++) {
      b->flop = 0;
      double t0 = now_ms();
      ecs_tensor *y = conv(b, blk, &c);
      ms[r] = now_ms() - t0;
      drop(y);
    }
    char name[64];
    snprintf(name, sizeof name, "conv3x3_c%lld_%lld", (long long)st[s].c, (long long)st[s].hw);
    report(name, ms, runs, b->flop);
    drop(x), drop(blk), drop(c.w);
  }
}

/* bench_conv's shapes, alternating between two backends (see bench_dilated) */
static void bench_conv_ab(bench *base, bench *b, int runs, int batch) {
  struct {
    int64_t c, hw;
  } st[] = {{64, 56}, {128, 28}, {256, 14}, {512, 7}};
  int only = getenv("BENCH_DIL_SHAPE") ? atoi(getenv("BENCH_DIL_SHAPE")) : -1;
  for (int s = 0; s < 4; s++) {
    if (only >= 0 && s != only) continue;
    ecs_tensor *x = tn(4, batch ? batch : 8, st[s].c, st[s].hw, st[s].hw);
    alloc_t(base, x);
    float *v = x->data;
    for (int64_t i = 0; i < ecs_nelements(x); i++)
      v[i] = frand();
    conv_p c = mk_conv(base, st[s].c, st[s].c, 3, 1, 1);
    ecs_tensor *blk = conv(
        base, x,
        &(conv_p){.w = param(base, 4, st[s].c, st[s].c, 1, 1, -0.1f, 0.1f), .stride = 1, .dil = 1});
    double ms[2][64];
    for (int r = -1; r < runs; r++)
      for (int j = 0; j < 2; j++) {
        int which = (r & 1) ? 1 - j : j;
        double t0 = now_ms();
        drop(conv(which ? b : base, blk, &c));
        if (r >= 0) ms[which][r] = now_ms() - t0;
      }
    qsort(ms[0], (size_t)runs, sizeof(double), cmp_d);
    qsort(ms[1], (size_t)runs, sizeof(double), cmp_d);
    printf("case=conv3x3_ab_c%lld_%lld base_ms=%.3f ms=%.3f ratio=%.3f runs=%d\n",
           (long long)st[s].c, (long long)st[s].hw, ms[0][runs / 2], ms[1][runs / 2],
           ms[0][runs / 2] / ms[1][runs / 2], runs);
    fflush(stdout);
    drop(x), drop(blk), drop(c.w);
  }
}

/* Dilated 3x3 convolutions (resnet38d's b5-b7 at 448 px, and smaller maps), forward and both
 * backward ops, on two backends in the same process: `base` (BENCH_BASE, by default without
 * space-to-batch: oneDNN's dilated kernels) and `b` with the default settings, timed
 * alternately so that a busy machine slows both alike. Prints both medians and base/b. */
static double time_op(bench *b, ecs_op *op) {
  double t0 = now_ms();
  run(b, op);
  return now_ms() - t0;
}

static void bench_dilated(bench *base, bench *b, int runs, int batch) {
  struct {
    int64_t ci, co, hw;
    int dil, k;
  } sh[] = {{512, 1024, 56, 2, 3},  {1024, 512, 56, 2, 3}, {512, 1024, 56, 4, 3},
            {1024, 2048, 56, 4, 3}, {256, 256, 28, 2, 3},  {256, 256, 28, 4, 3},
            {128, 128, 15, 2, 3},   {128, 128, 13, 4, 3}};
  const char *kind[3] = {"fwd", "bwd_data", "bwd_weights"};
  int only = getenv("BENCH_DIL_SHAPE") ? atoi(getenv("BENCH_DIL_SHAPE")) : -1;
  int kinds = getenv("BENCH_DIL_KINDS") ? atoi(getenv("BENCH_DIL_KINDS")) : 7;
  for (int s = 0; s < (int)(sizeof sh / sizeof sh[0]); s++) {
    if (only >= 0 && s != only) continue;
    int64_t n = batch ? batch : 1, hw = sh[s].hw;
    int dil = sh[s].dil;
    ecs_tensor *x = tn(4, n, sh[s].ci, hw, hw);
    alloc_t(base, x);
    float *v = x->data;
    for (int64_t i = 0; i < ecs_nelements(x); i++)
      v[i] = frand();
    conv_p c = mk_conv(base, sh[s].ci, sh[s].co, sh[s].k, 1, dil);
    ecs_tensor *blk = conv(base, x,
                           &(conv_p){.w = param(base, 4, sh[s].ci, sh[s].ci, 1, 1, -0.1f, 0.1f),
                                     .stride = 1,
                                     .dil = 1});
    ecs_tensor *ytmp = conv(base, blk, &c); /* a blocked dy of the output's shape */
    for (int kd = 0; kd < 3; kd++) {
      if (!(kinds >> kd & 1)) continue;
      double ms[2][64];
      for (int r = -1; r < runs; r++) {
        for (int j = 0; j < 2; j++) {
          int which = (r & 1) ? 1 - j : j;
          bench *be = which ? b : base;
          ecs_op op = {.p.conv = {{1, 1}, {c.pad, c.pad}, {dil, dil}, 1}};
          ecs_tensor *o;
          if (kd == 0) {
            o = tn(4, n, sh[s].co, hw, hw);
            op.type = ECS_OP_CONV2D, op.src[0] = blk, op.src[1] = c.w, op.dst[0] = o;
          } else if (kd == 1) {
            o = tn(4, n, sh[s].ci, hw, hw);
            op.type = ECS_OP_CONV2D_BWD_DATA, op.src[0] = ytmp, op.src[1] = c.w, op.dst[0] = o;
          } else {
            o = tn(4, sh[s].co, sh[s].ci, sh[s].k, sh[s].k);
            op.type = ECS_OP_CONV2D_BWD_WEIGHT, op.src[0] = blk, op.src[1] = ytmp, op.dst[0] = o;
          }
          double t = time_op(be, &op);
          if (r >= 0) ms[which][r] = t;
          drop(o);
        }
      }
      qsort(ms[0], (size_t)runs, sizeof(double), cmp_d);
      qsort(ms[1], (size_t)runs, sizeof(double), cmp_d);
      double m0 = ms[0][runs / 2], m1 = ms[1][runs / 2];
      double gflop =
          2e-9 * (double)(n * sh[s].co * hw * hw) * (double)(sh[s].ci * sh[s].k * sh[s].k);
      printf("case=dil_%s_k%d_c%lld_%lld_%lld_d%d base_ms=%.2f ms=%.2f ratio=%.3f gflop=%.3f "
             "runs=%d\n",
             kind[kd], sh[s].k, (long long)sh[s].ci, (long long)sh[s].co, (long long)hw, dil, m0,
             m1, m0 / m1, gflop, runs);
      fflush(stdout);
    }
    drop(x), drop(blk), drop(ytmp), drop(c.w);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_engine "
                    "conv|resnet38d|small|train|dilated|conv_ab|resnet38d_ab|small_ab|train_ab "
                    "[--threads N] [--runs R] [--size S] [--batch B]\n");
    return 2;
  }
  const char *what = argv[1];
  g_trace = getenv("BENCH_TRACE") && atoi(getenv("BENCH_TRACE")) > 0;
  g_profile = getenv("BENCH_PROFILE") && atoi(getenv("BENCH_PROFILE")) > 0;
  if (g_profile) atexit(prof_print);
  int threads = 2, runs = 5, size = 0, batch = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--threads"))
      threads = v;
    else if (!strcmp(argv[i], "--runs"))
      runs = v;
    else if (!strcmp(argv[i], "--size"))
      size = v;
    else if (!strcmp(argv[i], "--batch"))
      batch = v;
    else {
      fprintf(stderr, "bench_engine: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (runs < 1 || runs > 64) runs = 5;
  ecs_backend_params params = {.n_threads = threads};
  if (!tool_engine_from_env(&params, "bench_engine")) return 2;
  ecs_err err = {0};
  ecs_device *dev = ecs_device_find("cpu", &err);
  /* as backbone.c decides: fused unless the backend's fuse option is off */
  bench b = {.fuse = params.fuse != ECS_OPT_OFF};
  b.be = dev ? ecs_backend_init(dev, &params, &err) : NULL;
  if (!b.be) die("backend", &err);
  b.bt = ecs_device_buffer_type(dev);
  double ms[64];
  if (!strcmp(what, "conv")) {
    bench_conv(&b, runs);
  } else if (!strcmp(what, "dilated") || !strcmp(what, "resnet38d_ab") ||
             !strcmp(what, "small_ab") || !strcmp(what, "train_ab") || !strcmp(what, "conv_ab")) {
    /* BENCH_BASE="NAME=VALUE": the baseline backend's engine option over the run's */
    const char *bb = getenv("BENCH_BASE");
    char name[64] = "ECSNET_DNNL_PHASES", val[64] = "0";
    if (bb && strchr(bb, '=')) {
      snprintf(name, sizeof name, "%.*s", (int)(strchr(bb, '=') - bb), bb);
      snprintf(val, sizeof val, "%s", strchr(bb, '=') + 1);
    }
    ecs_backend_params base_params = params;
    if (ecs_backend_option_set(&base_params, name, val, &err) != ECS_OK) {
      fprintf(stderr, "bench_engine: BENCH_BASE: %s: %s\n", name, err.msg);
      return 2;
    }
    bench base = b;
    base.be = ecs_backend_init(dev, &base_params, &err);
    base.fuse = base_params.fuse != ECS_OPT_OFF;
    if (!base.be) die("backend", &err);
    if (what[0] == 'd') {
      bench_dilated(&base, &b, runs, batch);
    } else if (what[0] == 'c') {
      bench_conv_ab(&base, &b, runs, batch);
    } else if (what[0] == 's' || what[0] == 't') { /* small network passes or steps, alternating */
      b.training = base.training = what[0] == 't';
      small m;
      mk_small(&b, &m);
      ecs_tensor *img =
          image(&b, batch ? batch : (b.training ? 4 : 1), size ? size : (b.training ? 128 : 320));
      double t[2][64];
      for (int r = -2; r < runs; r++)
        for (int j = 0; j < 2; j++) {
          int which = (r & 1) ? 1 - j : j;
          double t0 = now_ms();
          if (b.training)
            small_train_step(which ? &b : &base, &m, img);
          else
            drop(small_fwd(which ? &b : &base, &m, img, NULL));
          if (r >= 0) t[which][r] = now_ms() - t0;
        }
      qsort(t[0], (size_t)runs, sizeof(double), cmp_d);
      qsort(t[1], (size_t)runs, sizeof(double), cmp_d);
      printf("case=%s base_ms=%.3f ms=%.3f ratio=%.3f runs=%d\n", what, t[0][runs / 2],
             t[1][runs / 2], t[0][runs / 2] / t[1][runs / 2], runs);
    } else { /* whole resnet38d passes, alternating between the two backends */
      r38 m;
      mk_r38(&b, &m);
      ecs_tensor *img = image(&b, batch ? batch : 1, size ? size : 448);
      double t[2][64];
      for (int r = -1; r < runs; r++)
        for (int j = 0; j < 2; j++) {
          int which = (r & 1) ? 1 - j : j;
          double t0 = now_ms();
          drop(r38_fwd(which ? &b : &base, &m, img));
          if (r >= 0) t[which][r] = now_ms() - t0;
          if (r >= 0)
            fprintf(stderr, "pass %d %s %.1f ms\n", r, which ? "new" : "base", t[which][r]);
        }
      qsort(t[0], (size_t)runs, sizeof(double), cmp_d);
      qsort(t[1], (size_t)runs, sizeof(double), cmp_d);
      printf("case=resnet38d_ab base_ms=%.1f ms=%.1f ratio=%.3f runs=%d\n", t[0][runs / 2],
             t[1][runs / 2], t[0][runs / 2] / t[1][runs / 2], runs);
    }
    ecs_backend_free(base.be);
  } else if (!strcmp(what, "resnet38d")) {
    r38 m;
    mk_r38(&b, &m);
    ecs_tensor *img = image(&b, batch ? batch : 1, size ? size : 448);
    drop(r38_fwd(&b, &m, img)); /* warm-up: primitives and weight reorders */
    for (int r = 0; r < runs; r++) {
      b.flop = 0;
      double t0 = now_ms();
      drop(r38_fwd(&b, &m, img));
      ms[r] = now_ms() - t0;
    }
    report("resnet38d", ms, runs, b.flop);
  } else if (!strcmp(what, "small") || !strcmp(what, "train")) {
    b.training = !strcmp(what, "train");
    small m;
    mk_small(&b, &m);
    ecs_tensor *img =
        image(&b, batch ? batch : (b.training ? 4 : 1), size ? size : (b.training ? 128 : 320));
    for (int r = -1; r < runs; r++) {
      b.flop = 0;
      double t0 = now_ms();
      if (b.training)
        small_train_step(&b, &m, img);
      else
        drop(small_fwd(&b, &m, img, NULL));
      if (r >= 0) ms[r] = now_ms() - t0;
    }
    report(what, ms, runs, b.flop);
  } else {
    fprintf(stderr, "bench_engine: unknown case %s\n", what);
    return 2;
  }
  ecs_backend_stats s;
  ecs_backend_get_stats(b.be, &s);
  fprintf(stderr, "bench_engine %s: ops=%llu ref_ops=%llu reorders=%llu primitives=%llu\n", what,
          (unsigned long long)s.ops, (unsigned long long)s.ref_ops, (unsigned long long)s.reorders,
          (unsigned long long)s.primitives);
  ecs_backend_free(b.be);
  return 0;
}
