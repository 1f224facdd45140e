/* backend_check.c - every op of ecs/op.h on cuda:0 against the reference kernels (cpu-ref).
 *
 * For each case the same inputs go to both devices through the public backend API; every
 * output (and every input an op updates in place, such as batch norm's running statistics) is
 * compared by normalised error ||gpu - ref|| / ||ref|| against the case's bound, integer
 * outputs (dropout masks) exactly. An op the GPU does not support, an op without a reference
 * kernel and an op type without a case are failures: on a GPU machine, "skipped" only means no
 * GPU. Exit 0 when all pass, 1 on any failure, 77 when no GPU answered.
 *
 * Plain C without cmocka: the GPU machine's engine-only build has no test framework. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "ecs/backend.h"

/* how an input is filled: normal, wide normal (x5, reaches ReLU6's clip), positive, binary
 * targets, labels, class masks, dloss, log-probabilities and probabilities that honour the
 * class mask pattern, and a U8 keep mask */
enum gen {
  G_NONE = 0,
  G_RANDN,
  G_WIDE,
  G_POS,
  G_BINARY,
  G_LABELS,
  G_CMASK,
  G_ONE,
  G_LOGP,
  G_PROB,
  G_U8MASK
};

typedef struct tdesc {
  int nd; /* 0: the operand is absent (NULL) */
  int64_t ne[4];
  ecs_dtype type;
  enum gen gen;
} tdesc;

typedef struct ocase {
  const char *name;
  ecs_op op; /* type and parameters; tensors are filled in */
  tdesc src[ECS_OP_MAX_SRC], dst[ECS_OP_MAX_DST];
  unsigned cmp_src; /* bit i: src i is updated in place and compared */
  double tol;
} ocase;

/* ---- deterministic inputs ---------------------------------------------------------------- */

static uint64_t g_rng = 0x1234abcdULL;
static double urand(void) {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}
static float nrand(void) {
  double u = urand() + 1e-12, v = urand();
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}
/* the class mask pattern shared by G_CMASK, G_LABELS and G_LOGP/G_PROB: class 0 always on */
static int class_on(int64_t n, int64_t c) {
  return c == 0 || (c + n) % 3 != 0;
}

static void fill_host(const tdesc *d, void *mem) {
  int64_t n = 1;
  for (int i = 0; i < d->nd; i++)
    n *= d->ne[i];
  float *f = mem;
  int32_t *l = mem;
  uint8_t *u = mem;
  int64_t C = d->nd >= 2 ? d->ne[1] : 1, HW = d->nd == 4 ? d->ne[2] * d->ne[3] : 1;
  for (int64_t i = 0; i < n; i++) {
    int64_t b = i / (C * HW), c = (i / HW) % C;
    switch (d->gen) {
    case G_RANDN: f[i] = nrand(); break;
    case G_WIDE: f[i] = 5.0f * nrand(); break;
    case G_POS: f[i] = 0.5f + (float)urand(); break;
    case G_U8MASK: u[i] = urand() < 0.7; break;
    case G_BINARY: f[i] = urand() < 0.4 ? 1.0f : 0.0f; break;
    case G_ONE: f[i] = 1.3f; break;
    case G_CMASK: f[i] = (float)class_on(i / d->ne[1], i % d->ne[1]); break;
    case G_LOGP: f[i] = class_on(b, c) ? -3.0f * (float)urand() : -INFINITY; break;
    case G_PROB: f[i] = class_on(b, c) ? (float)urand() : 0.0f; break;
    case G_LABELS: { /* (N, H, W) I32 labels over 5 classes, 10% ignored (255) */
      int64_t classes = 5, bb = i / (d->ne[1] * d->ne[2]);
      int64_t k = (int64_t)(urand() * (double)classes);
      l[i] = urand() < 0.1 ? 255 : (int32_t)(class_on(bb, k) ? k : 0);
      break;
    }
    default: f[i] = 0; break;
    }
  }
}

/* ---- running one case on one device ------------------------------------------------------ */

typedef struct run {
  ecs_tensor src[ECS_OP_MAX_SRC], dst[ECS_OP_MAX_DST];
  ecs_buffer *buf[ECS_OP_MAX_SRC + ECS_OP_MAX_DST];
  void *host_dst[ECS_OP_MAX_DST], *host_src[ECS_OP_MAX_SRC];
} run;

static int make_tensor(ecs_device *dev, const tdesc *d, ecs_tensor *t, ecs_buffer **buf,
                       ecs_err *err) {
  memset(t, 0, sizeof *t);
  t->type = d->type, t->nd = d->nd;
  for (int i = 0; i < ECS_MAX_DIMS; i++)
    t->ne[i] = i < d->nd ? d->ne[i] : 1;
  t->nbytes = ecs_plain_nbytes(t);
  *buf = ecs_buffer_alloc(ecs_device_buffer_type(dev), t->nbytes, err);
  if (!*buf) return -1;
  t->buffer = *buf;
  t->data = ecs_buffer_base(*buf);
  return 0;
}

static void run_free(run *r) {
  for (int i = 0; i < ECS_OP_MAX_SRC + ECS_OP_MAX_DST; i++)
    ecs_buffer_free(r->buf[i]);
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    free(r->host_dst[i]);
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    free(r->host_src[i]);
  memset(r, 0, sizeof *r);
}

/* Reads t back as plain bytes: through an ECS_OP_COPY into a plain tensor when the backend
 * chose a private layout (a plain destination declared without prepare asks for that). */
static int to_plain_host(ecs_backend *be, ecs_device *dev, ecs_tensor *t, void **host,
                         ecs_err *err) {
  size_t n = ecs_plain_nbytes(t);
  *host = malloc(n ? n : 1);
  if (!*host) return -1;
  if (t->layout == ECS_LAYOUT_PLAIN) return ecs_tensor_get_bytes(t, *host, 0, n, err) ? -1 : 0;
  ecs_tensor p = {.type = t->type, .nd = t->nd, .nbytes = n};
  memcpy(p.ne, t->ne, sizeof p.ne);
  ecs_buffer *b = ecs_buffer_alloc(ecs_device_buffer_type(dev), n ? n : 1, err);
  if (!b) return -1;
  p.buffer = b, p.data = ecs_buffer_base(b);
  ecs_op copy = {.type = ECS_OP_COPY, .src = {t}, .dst = {&p}};
  int rc = ecs_backend_compute(be, &copy, err) || ecs_backend_synchronize(be, err) ||
           ecs_tensor_get_bytes(&p, *host, 0, n, err);
  ecs_buffer_free(b);
  return rc ? -1 : 0;
}

/* inputs: host copies of each src, made once per case and uploaded to both devices */
static int run_case(ecs_device *dev, const ocase *c, void *const *inputs, run *r, char *why,
                    size_t nwhy) {
  ecs_err err = {0};
  ecs_backend *be = ecs_backend_init(dev, NULL, &err);
  ecs_op op = c->op;
  int rc = -1;
  memset(r, 0, sizeof *r);
  if (!be) goto fail;
  for (int i = 0; i < ECS_OP_MAX_SRC; i++) {
    if (!c->src[i].nd) continue;
    if (make_tensor(dev, &c->src[i], &r->src[i], &r->buf[i], &err)) goto fail;
    if (ecs_tensor_set_bytes(&r->src[i], inputs[i], 0, r->src[i].nbytes, &err)) goto fail;
    op.src[i] = &r->src[i];
  }
  /* outputs: described, laid out by the backend's prepare (a CPU backend may choose a blocked
   * layout with padding), then given memory of the size it asked for */
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    if (!c->dst[i].nd) continue;
    ecs_tensor *t = &r->dst[i];
    t->type = c->dst[i].type, t->nd = c->dst[i].nd;
    for (int k = 0; k < ECS_MAX_DIMS; k++)
      t->ne[k] = k < t->nd ? c->dst[i].ne[k] : 1;
    op.dst[i] = t;
  }
  if (!ecs_device_supports_op(dev, &op)) {
    snprintf(why, nwhy, "%s does not support it", ecs_device_name(dev));
    goto out;
  }
  if (ecs_backend_prepare(be, &op, &err)) goto fail;
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    ecs_tensor *t = op.dst[i];
    if (!t) continue;
    ecs_buffer **b = &r->buf[ECS_OP_MAX_SRC + i];
    if (!(*b = ecs_buffer_alloc(ecs_device_buffer_type(dev), t->nbytes ? t->nbytes : 1, &err)))
      goto fail;
    t->buffer = *b, t->data = ecs_buffer_base(*b);
  }
  if (ecs_backend_compute(be, &op, &err) || ecs_backend_synchronize(be, &err)) goto fail;
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    if (!op.dst[i]) continue;
    /* a max-pooling workspace in a backend's own layout (oneDNN's) is that backend's business:
     * only its gradient is compared (the workspace cases), and only plain ones are read */
    if (op.type == ECS_OP_POOL2D && i == 1 && op.dst[i]->layout != ECS_LAYOUT_PLAIN) continue;
    if (to_plain_host(be, dev, &r->dst[i], &r->host_dst[i], &err)) goto fail;
  }
  for (int i = 0; i < ECS_OP_MAX_SRC; i++) {
    if (!(c->cmp_src & (1u << i))) continue;
    r->host_src[i] = malloc(r->src[i].nbytes);
    if (ecs_tensor_get_bytes(&r->src[i], r->host_src[i], 0, r->src[i].nbytes, &err)) goto fail;
  }
  rc = 0;
  goto out;
fail:
  snprintf(why, nwhy, "%s: %s", ecs_device_name(dev), err.msg);
out:
  ecs_backend_free(be);
  return rc;
}

/* normalised L2 error; exact comparison for integer tensors (returns 0 or 1) */
static double compare(const ecs_tensor *t, const void *a, const void *b) {
  if (t->type != ECS_F32) return memcmp(a, b, ecs_plain_nbytes(t)) ? 1.0 : 0.0;
  return ecs_rel_l2(a, b, ecs_nelements(t));
}

static int check_case(ecs_device *gpu, ecs_device *ref, const ocase *c) {
  void *inputs[ECS_OP_MAX_SRC] = {0};
  for (int i = 0; i < ECS_OP_MAX_SRC; i++) {
    if (!c->src[i].nd) continue;
    ecs_tensor t = {.type = c->src[i].type, .nd = c->src[i].nd};
    for (int k = 0; k < ECS_MAX_DIMS; k++)
      t.ne[k] = k < t.nd ? c->src[i].ne[k] : 1;
    inputs[i] = malloc(ecs_plain_nbytes(&t));
    fill_host(&c->src[i], inputs[i]);
  }
  run rg, rr;
  char why[600] = "";
  int ok = run_case(gpu, c, inputs, &rg, why, sizeof why) == 0 &&
           run_case(ref, c, inputs, &rr, why, sizeof why) == 0;
  double worst = 0;
  if (ok) {
    for (int i = 0; i < ECS_OP_MAX_DST; i++)
      if (rg.host_dst[i] && rr.host_dst[i]) {
        double e = compare(&rg.dst[i], rg.host_dst[i], rr.host_dst[i]);
        if (!(e <= worst)) worst = e;
      }
    for (int i = 0; i < ECS_OP_MAX_SRC; i++)
      if (rg.host_src[i]) {
        double e = compare(&rg.src[i], rg.host_src[i], rr.host_src[i]);
        if (!(e <= worst)) worst = e;
      }
    ok = worst <= c->tol;
    if (!ok) snprintf(why, sizeof why, "error above %.0e", c->tol);
  }
  printf("%-22s %-34s %10.3e  %s %s\n", ecs_op_name(c->op.type), c->name, worst, ok ? "ok" : "FAIL",
         why);
  run_free(&rg);
  run_free(&rr);
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    free(inputs[i]);
  return ok;
}

#include "backend_check_cases.h"

/* usage: backend_check [DEVICE]  (default cuda:0; "cpu" checks the harness itself on a machine
 * without a GPU) */
int main(int argc, char **argv) {
  ecs_err err = {0};
  const char *name = argc > 1 ? argv[1] : "cuda:0";
  ecs_device *gpu = ecs_device_find(name, &err);
  if (!gpu) {
    printf("backend_check: skipped: %s\n", err.msg);
    return 77;
  }
  ecs_device *ref = ecs_device_find("cpu-ref", &err);
  if (!ref) {
    printf("backend_check: %s\n", err.msg);
    return 1;
  }
  printf("backend_check: %s (%s) against cpu-ref\n", ecs_device_name(gpu),
         ecs_device_description(gpu));
  int covered[ECS_OP_COUNT] = {0}, fails = 0, n = 0;
  size_t ncases = 0;
  const ocase *cases = check_cases(&ncases);
  for (size_t i = 0; i < ncases; i++) {
    covered[cases[i].op.type] = 1;
    fails += !check_case(gpu, ref, &cases[i]);
    n++;
  }
  fails += !check_pool_workspace(gpu, ref);
  n++;
  for (int t = 1; t < ECS_OP_COUNT; t++)
    if (!covered[t]) {
      printf("%-22s %-34s %10s  FAIL no case for this op\n", ecs_op_name((ecs_op_type)t), "-", "-");
      fails++, n++;
    }
  printf("backend_check: %d of %d cases passed, %d failed\n", n - fails, n, fails);
  return fails ? 1 : 0;
}
