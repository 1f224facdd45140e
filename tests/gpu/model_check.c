/* model_check.c - ECS-Net as a whole on a device against the CPU: one training step and the
 * inference call the server makes.
 *
 * For the small backbone and for resnet38d (small images, batch 2, seeded weights with batch
 * norm moved away from identity, synthetic scenes of coloured discs), the same model runs
 *  - one training step of the ECS phase (ecs_model_step: F, the erasing branch, F' and L_seg,
 *    backward), compared by losses, the erase region R, Phi (L' per cell of the grid of H'),
 *    every parameter gradient and the batch-norm statistics the step updates;
 *  - ecs_model_infer on a batch-norm-folded copy of the weights, as the server loads a model,
 *    with the labels given, once plainly and once with flip and two scales, compared by
 *    scores, CAMs, erased CAMs, the erase region and the four masks.
 * The reference is the "cpu" device when the device is a GPU (oneDNN where the build has it;
 * in the engine-only GPU build it is the reference kernels again), and "cpu-ref" when the
 * device is on the host, so that `model_check cpu` checks the CPU backend and the program.
 *
 * Floats are compared by ||dev - ref|| / ||ref|| (design.md: 1e-3 for a training step, 1e-4
 * for a whole network; both 1e-2 with TF32), thresholded maps by the fraction of cells or
 * pixels that differ (bounds below): a value within the devices' rounding of a threshold may
 * fall either way. The fixtures are asserted to be non-degenerate on the reference (a
 * non-empty erase region, 10-90% of Phi's cells or pixels, a present class in Phi), each
 * assertion counted as a comparison.
 *
 * The step's gradients are not continuous in its inputs: where a ReLU's input lies within
 * rounding of zero, its gradient path is on for one device and off for the other, and at these
 * sizes one such unit moves every gradient below it by several 1e-3 (resnet38d's b3-b5 move by
 * up to 8.5e-3 on cpu-ref alone when the images change by a relative 1e-7). So when a gradient,
 * or a loss that depends on Phi or R, misses its bound, the reference runs the step again with
 * its images changed by a relative delta (the control), and the value passes when it differs
 * by at most twice what the reference itself moved, and at most cap; those lines say "ReLU
 * edge" and the summary counts them. --strict turns the rule off.
 *
 * Usage: model_check [DEVICE] [--tf32 0|1] [--strict] [--model small|resnet38d]
 *                    [--part step|infer]
 * DEVICE defaults to cuda:0. TF32 defaults to ECSNET_TF32 (what this tree's CUDA backend reads
 * when it starts) and also goes to the backend as ecs_backend_params.tf32; it loosens the float
 * bounds on a GPU and is ignored on the CPU. Prints one line per comparison, then
 * "model_check: N of M comparisons passed (K of them by the ReLU-edge rule), F failed". Exit 0
 * when all pass, 1 on a failure or an error, 77 when the device does not exist (no GPU
 * answered), 2 on bad usage.
 *
 * Plain C without cmocka: the GPU machine's engine-only build has no test framework. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "ecs/ecsnet.h"

/* ---- bounds ------------------------------------------------------------------------------ */

typedef struct bounds {
  double step;  /* losses, gradients, running statistics of the step: relative L2 */
  double infer; /* scores, CAMs and erased CAMs of inference: relative L2 */
  double cells; /* Phi: fraction of cells whose L' differs */
  double px;    /* R and the masks: fraction of pixels that differ */
  double delta; /* the control's relative change of the images */
  double cap;   /* the most that the ReLU-edge rule lets through */
} bounds;

/* The thresholded maps: FP32 differences of about 1e-6 move a value across a threshold at a
 * pixel or two of a few thousand; TF32's 1e-3 at a few dozen. Wrong results differ in tens of
 * percent. The control's change of the images is about ten times the FP32 differences between
 * two backends at the deep layers (so that it meets at least as many ReLU edges as they do),
 * and with TF32 four times its rounding of each operand (2^-11). */
static const bounds k_fp32 = {1e-3, 1e-4, 0.01, 0.005, 1e-5, 3e-2};
static const bounds k_tf32 = {1e-2, 1e-2, 0.03, 0.02, 2e-3, 1e-1};

/* ---- reporting ---------------------------------------------------------------------------- */

static int g_count, g_failed, g_by_edge;

static void line(const char *model, const char *what, const char *value, const char *bound, int ok,
                 const char *note) {
  g_count++;
  g_failed += !ok;
  printf("%-9s %-44s %11s  %-12s %-4s %s\n", model, what, value, bound, ok ? "ok" : "FAIL",
         note ? note : "");
  fflush(stdout);
}

/* a comparison: err <= bound (NaN fails) */
static int check(const char *model, const char *what, double err, double bound, const char *note) {
  char v[32], b[32];
  snprintf(v, sizeof v, "%.3e", err);
  snprintf(b, sizeof b, "<= %.0e", bound);
  int ok = err <= bound;
  line(model, what, v, b, ok, note);
  return ok;
}

/* a fraction of differing elements, with the count in the note */
static int check_frac(const char *model, const char *what, int64_t differ, int64_t total,
                      double bound) {
  char note[64];
  snprintf(note, sizeof note, "%lld of %lld differ", (long long)differ, (long long)total);
  return check(model, what, total ? (double)differ / (double)total : 1.0, bound, note);
}

static void fixture(const char *model, const char *what, int ok, const char *note) {
  line(model, what, "-", "fixture", ok, note);
}

static int64_t count_differ_u8(const uint8_t *a, const uint8_t *b, int64_t n) {
  int64_t d = 0;
  for (int64_t i = 0; i < n; i++)
    d += a[i] != b[i];
  return d;
}

static int64_t count_differ_i32(const int32_t *a, const int32_t *b, int64_t n) {
  int64_t d = 0;
  for (int64_t i = 0; i < n; i++)
    d += a[i] != b[i];
  return d;
}

/* |a - b| / |b| for one scalar (|a - b| when b is 0), through the shared helper */
static double rel_scalar(float a, float b) {
  return ecs_rel_l2(&a, &b, 1);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

typedef struct spec {
  const char *name;
  ecs_backbone backbone;
  int classes, h, w; /* h != w, so that a transposed map cannot pass */
  int overlay_k;     /* -1: the default (no branches at these sizes) */
  float beta;        /* 0: the default (1 under 320 px) */
  uint64_t seed;
} spec;

/* The small network also runs step 12's three dilation branches and step 1's rescale, which
 * the defaults turn off at these sizes; resnet38d runs the defaults (its branches are the
 * costliest part of the network). The seeds are ones whose fixtures are non-degenerate in the
 * step and in both inference calls (for resnet38d, seeds 1, 3, 4, 6, 7 and 9 are not). */
static const spec k_specs[] = {
    {"small", ECS_BACKBONE_SMALL, 3, 96, 88, 3, 0.5f, 11},
    {"resnet38d", ECS_BACKBONE_RESNET38D, 4, 64, 72, -1, 0.0f, 2},
};
#define N_SPECS (int)(sizeof k_specs / sizeof k_specs[0])
#define BATCH   2

/* image-level labels of the two images (class ids, 0-terminated) */
static const int k_labels[BATCH][3] = {{1, 3, 0}, {2, 0, 0}};

static uint64_t g_rng;
static double urand(void) {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

/* An RGB scene: a soft diagonal gradient with pixel noise, and three saturated discs. */
static void scene(uint8_t *rgb, int h, int w, uint64_t seed) {
  g_rng = seed * 0x9E3779B97F4A7C15ULL + 1;
  double base[3] = {60 + 80 * urand(), 60 + 80 * urand(), 60 + 80 * urand()};
  double cy[3], cx[3], r[3], col[3][3];
  for (int d = 0; d < 3; d++) {
    cy[d] = h * (0.2 + 0.6 * urand());
    cx[d] = w * (0.2 + 0.6 * urand());
    r[d] = (h < w ? h : w) * (0.12 + 0.12 * urand());
    for (int c = 0; c < 3; c++)
      col[d][c] = c == d ? 200 + 55 * urand() : 40 * urand();
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double v[3];
      for (int c = 0; c < 3; c++)
        v[c] = base[c] + 40.0 * (y + x) / (h + w) + 16 * (urand() - 0.5);
      for (int d = 0; d < 3; d++)
        if ((y - cy[d]) * (y - cy[d]) + (x - cx[d]) * (x - cx[d]) < r[d] * r[d])
          for (int c = 0; c < 3; c++)
            v[c] = col[d][c] + 16 * (urand() - 0.5);
      for (int c = 0; c < 3; c++)
        rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(v[c] < 0 ? 0 : v[c] > 255 ? 255 : v[c]);
    }
}

static int is_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Batch norm away from identity (scale, shift and statistics), so that every batch-norm path
 * and the fold have work to do. */
static ecs_status perturb_bn(ecs_model *m, ecs_err *err) {
  ecs_params *ps = ecs_model_params(m);
  g_rng = 99;
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    if (t->nd != 1 || t->type != ECS_F32 || !strstr(t->name, "bn")) continue;
    int64_t n = ecs_nelements(t);
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < n; k++) {
      float u = (float)urand();
      v[k] = is_suffix(t->name, ".weight")         ? 0.5f + u
             : is_suffix(t->name, ".bias")         ? 0.4f * u - 0.2f
             : is_suffix(t->name, ".running_mean") ? 0.6f * u - 0.3f
                                                   : 0.5f + 1.5f * u;
    }
    ecs_status st = ecs_tensor_set_bytes(t, v, 0, sizeof(float) * (size_t)n, err);
    free(v);
    if (st != ECS_OK) return st;
  }
  return ECS_OK;
}

/* ---- one side: a device's backend and its copy of the model ------------------------------- */

typedef struct side {
  ecs_device *dev;
  ecs_backend *be;
  ecs_ctx *ctx;
  ecs_model *m;
} side;

static void side_free(side *s) {
  ecs_ctx_free(s->ctx);
  ecs_model_free(s->m);
  ecs_backend_free(s->be);
  memset(s, 0, sizeof *s);
}

static ecs_status side_init(side *s, ecs_device *dev, const ecs_backend_params *bp,
                            const ecs_model_config *cfg, uint64_t seed, ecs_err *err) {
  memset(s, 0, sizeof *s);
  s->dev = dev;
  if (!(s->be = ecs_backend_init(dev, bp, err))) return err->status;
  if (!(s->ctx = ecs_ctx_new(s->be, err))) return err->status;
  if (!(s->m = ecs_model_new(cfg, ecs_device_buffer_type(dev), seed, err))) return err->status;
  return ECS_OK;
}

/* a parameter (or its gradient) as host floats, malloc'd */
static float *host_copy(const ecs_tensor *t, ecs_err *err) {
  size_t n = ecs_plain_nbytes(t);
  float *v = malloc(n ? n : 1);
  if (!v) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  if (ecs_tensor_get_bytes(t, v, 0, n, err) != ECS_OK) {
    free(v);
    return NULL;
  }
  return v;
}

/* The heat maps at unit scale: without trained weights the residual stream of resnet38d grows
 * block by block, its logits reach hundreds and every score saturates at 0 or 1, which no
 * comparison can tell apart. The last batch norm before fc8 (bn4, bn7) is followed by ReLU
 * and a convolution, both positively homogeneous, so scaling its weight and bias by c scales H
 * by c; c makes the root mean square of H over the batch 1. CAMs, R and Phi are normalised
 * maps and do not change. */
static ecs_status calibrate_head(ecs_model *m, ecs_ctx *ctx, const float *images, int n, int h,
                                 int w, ecs_err *err) {
  const char *bn = ecs_model_get_config(m)->backbone == ECS_BACKBONE_RESNET38D ? "bn7" : "bn4";
  ecs_ctx_reset(ctx);
  int64_t ne[4] = {n, 3, h, w};
  ecs_tensor *x = ecs_from_host(ctx, ECS_F32, 4, ne, images);
  ecs_tensor *hm = x ? ecs_model_forward(m, ctx, x, 0, 0, NULL) : NULL;
  if (!hm || ecs_ctx_status(ctx, err) != ECS_OK) return err->status ? err->status : ECS_ERR_BACKEND;
  int64_t nh = ecs_nelements(hm);
  float *v = malloc(sizeof(float) * (size_t)nh);
  if (!v) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  ecs_status st = ecs_to_host(ctx, hm, v, sizeof(float) * (size_t)nh);
  double ss = 0;
  for (int64_t i = 0; i < nh; i++)
    ss += (double)v[i] * v[i];
  free(v);
  ecs_ctx_reset(ctx);
  if (st != ECS_OK) return ecs_ctx_status(ctx, err);
  double c = ss > 0 ? 1.0 / sqrt(ss / (double)nh) : 1.0;
  static const char *const suf[2] = {"weight", "bias"};
  for (int k = 0; k < 2 && st == ECS_OK; k++) {
    char name[32];
    snprintf(name, sizeof name, "%s.%s", bn, suf[k]);
    ecs_tensor *t = ecs_params_find(ecs_model_params(m), name);
    float *p = t ? host_copy(t, err) : NULL;
    if (!p) return t ? err->status : ecs_err_set(err, ECS_ERR_INVALID, "no tensor %s", name);
    for (int64_t i = 0; i < ecs_nelements(t); i++)
      p[i] = (float)(p[i] * c);
    st = ecs_tensor_set_bytes(t, p, 0, ecs_plain_nbytes(t), err);
    free(p);
  }
  return st;
}

/* ---- the training step -------------------------------------------------------------------- */

typedef struct step_run {
  ecs_step_stats st;
  int32_t *phi;
  uint8_t *erase;
  double seconds;
} step_run;

static ecs_status run_step(side *s, const ecs_step_input *in0, size_t cells, step_run *r,
                           ecs_err *err) {
  ecs_params *ps = ecs_model_params(s->m);
  ecs_step_input in = *in0;
  if (!r->phi) r->phi = malloc(sizeof(int32_t) * cells);
  if (!r->erase) r->erase = malloc((size_t)in.n * in.h * in.w);
  if (!r->phi || !r->erase) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  /* 254: a value the step never writes, so check_step can see that it wrote every value */
  for (size_t i = 0; i < cells; i++)
    r->phi[i] = 254;
  memset(r->erase, 254, (size_t)in.n * in.h * in.w);
  in.phi_out = r->phi;
  in.erase_out = r->erase;
  ecs_status st = ecs_params_alloc_grads(ps, err);
  if (st == ECS_OK) st = ecs_params_zero_grads(ps, err);
  if (st == ECS_OK) st = ecs_backend_synchronize(s->be, err);
  double t0 = ecs_now_s();
  if (st == ECS_OK) st = ecs_model_step(s->m, s->ctx, &in, &r->st, err);
  if (st == ECS_OK) st = ecs_backend_synchronize(s->be, err);
  r->seconds = ecs_now_s() - t0;
  return st;
}

static void step_run_free(step_run *r) {
  free(r->phi);
  free(r->erase);
}

static float step_loss(const ecs_step_stats *st, int k) {
  return k == 0 ? st->loss : k == 1 ? st->loss_cls : k == 2 ? st->loss_cls_erased : st->loss_seg;
}

/* One comparison of the step, held until the control (if any) has run. */
typedef struct item {
  char what[112];
  double err, bound;
  double ctrl; /* the reference's own movement under the control; < 0: not measured */
  int edge;    /* may move at a ReLU edge: gradients and the losses that depend on Phi or R */
  int zero;    /* the reference is all zeros: the error is absolute */
  int loss;    /* a loss (index for step_loss), or -1 */
  size_t param;
  float *ref; /* a gradient's reference values (host), for the control */
} item;

/* Restores the 1-D frozen tensors (batch-norm statistics) the step updates. */
static ecs_status restore(ecs_params *ps, float *const *before, ecs_err *err) {
  for (size_t i = 0; i < ecs_params_count(ps); i++)
    if (before[i]) {
      ecs_tensor *t = ecs_params_at(ps, i);
      ecs_status st = ecs_tensor_set_bytes(t, before[i], 0, ecs_plain_nbytes(t), err);
      if (st != ECS_OK) return st;
    }
  return ECS_OK;
}

/* The control: the reference's step again from the same state, with every image value changed
 * by a relative b->delta; each edge item gets the reference's own movement. */
static ecs_status run_control(const spec *sp, side *r, const ecs_step_input *in, size_t cells,
                              float *const *before, const step_run *sr, const bounds *b, item *it,
                              size_t n_items, ecs_err *err) {
  size_t nx = (size_t)in->n * 3 * in->h * in->w;
  float *x = malloc(sizeof(float) * nx);
  if (!x) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  g_rng = sp->seed ^ 0xC0FFEEULL;
  for (size_t i = 0; i < nx; i++)
    x[i] = in->images[i] * (float)(1.0 + b->delta * (2 * urand() - 1));
  ecs_step_input ic = *in;
  ic.images = x;
  step_run sc = {0};
  ecs_params *ps = ecs_model_params(r->m);
  ecs_status st = restore(ps, before, err);
  if (st == ECS_OK) st = run_step(r, &ic, cells, &sc, err);
  for (size_t i = 0; st == ECS_OK && i < n_items; i++) {
    if (!it[i].edge) continue;
    if (it[i].loss >= 0) {
      it[i].ctrl = rel_scalar(step_loss(&sc.st, it[i].loss), step_loss(&sr->st, it[i].loss));
      continue;
    }
    ecs_tensor *t = ecs_params_at(ps, it[i].param);
    float *v = host_copy(t->grad, err);
    if (!v)
      st = err->status;
    else
      it[i].ctrl = ecs_rel_l2(v, it[i].ref, ecs_nelements(t));
    free(v);
  }
  if (st == ECS_OK)
    printf("%-9s control: the step on %s again with the images changed by a relative %.0e, "
           "in %.2f s\n",
           sp->name, ecs_device_name(r->dev), b->delta, sc.seconds);
  step_run_free(&sc);
  free(x);
  return st;
}

/* Prints an item. A value that may move at a ReLU edge (an input of a ReLU within rounding of
 * zero switches its gradient on or off; Phi and R switch at their thresholds) passes beyond
 * the bound when the reference itself moves at least half as much under the control, up to
 * b->cap; the note says so. */
static void emit(const char *model, const item *it, const bounds *b, int strict) {
  char v[32], bd[32], note[160] = "";
  int ok = it->err <= it->bound;
  int by_edge =
      !ok && !strict && it->edge && it->ctrl >= 0 && it->err <= 2 * it->ctrl && it->err <= b->cap;
  if (by_edge)
    snprintf(note, sizeof note, "ReLU edge: the reference itself moves by %.2e", it->ctrl);
  else if (it->edge && it->ctrl >= 0)
    snprintf(note, sizeof note, "the reference itself moves by %.2e", it->ctrl);
  if (it->zero)
    snprintf(note + strlen(note), sizeof note - strlen(note), "%szero on the reference",
             note[0] ? "; " : "");
  snprintf(v, sizeof v, "%.3e", it->err);
  snprintf(bd, sizeof bd, "<= %.0e", it->bound);
  line(model, it->what, v, bd, ok || by_edge, note);
  g_by_edge += by_edge;
}

static int check_step(const spec *sp, side *d, side *r, const bounds *b, int strict,
                      const float *images, const float *labels) {
  ecs_err err = {0};
  const ecs_model_config *cfg = ecs_model_get_config(r->m);
  int gh = ecs_model_step_grid(r->m, sp->h), gw = ecs_model_step_grid(r->m, sp->w);
  size_t cells = (size_t)BATCH * gh * gw, px = (size_t)BATCH * sp->h * sp->w;
  ecs_step_input in = {.n = BATCH,
                       .h = sp->h,
                       .w = sp->w,
                       .images = images,
                       .labels = labels,
                       .ecs_phase = 1,
                       .lambda = 1.0f,
                       .seed = sp->seed * 7 + 3};
  ecs_params *pd = ecs_model_params(d->m), *pr = ecs_model_params(r->m);
  size_t np = ecs_params_count(pr), n_items = 0;
  float **before = calloc(np, sizeof *before);
  item *it = calloc(np + 4, sizeof *it);
  step_run sd = {0}, sr = {0};
  int ok = before && it;
  /* the 1-D frozen tensors before the step, to see which ones it updates */
  for (size_t i = 0; ok && i < np; i++) {
    ecs_tensor *t = ecs_params_at(pr, i);
    if (t->nd == 1 && t->frozen && t->type == ECS_F32)
      ok = (before[i] = host_copy(t, &err)) != NULL;
  }
  ok = ok && run_step(d, &in, cells, &sd, &err) == ECS_OK;
  ok = ok && run_step(r, &in, cells, &sr, &err) == ECS_OK;
  if (!ok) {
    line(sp->name, "training step", "-", "-", 0, err.msg[0] ? err.msg : "out of memory");
    goto done;
  }
  printf("%-9s step of %dx%dx%d on %s in %.2f s, on %s in %.2f s (beta %.2f, %d overlay "
         "branches)\n",
         sp->name, BATCH, sp->h, sp->w, ecs_device_name(d->dev), sd.seconds,
         ecs_device_name(r->dev), sr.seconds, sr.st.beta, sr.st.overlay_k);

  /* the fixture, on the reference */
  char note[160];
  double frac = sr.st.cells ? (double)sr.st.phi / (double)sr.st.cells : 0;
  snprintf(note, sizeof note, "%lld of %lld pixels erased", (long long)sr.st.erased_px,
           (long long)px);
  fixture(sp->name, "step: erase region not empty", sr.st.erased_px > 0, note);
  snprintf(note, sizeof note, "%lld of %lld cells (%.1f%%)", (long long)sr.st.phi,
           (long long)sr.st.cells, 100 * frac);
  fixture(sp->name, "step: 10-90% of cells in Phi", frac >= 0.1 && frac <= 0.9, note);
  snprintf(note, sizeof note, "%lld foreground, %lld background cells", (long long)sr.st.phi_fg,
           (long long)sr.st.phi_bg);
  fixture(sp->name, "step: a present class in Phi", sr.st.phi_fg > 0, note);
  if (sp->overlay_k > 0 || sp->beta > 0) {
    snprintf(note, sizeof note, "beta %.2f, %d branches", sr.st.beta, sr.st.overlay_k);
    fixture(sp->name, "step: the forced beta and overlay ran",
            (sp->beta <= 0 || sr.st.beta == sp->beta) &&
                (sp->overlay_k <= 0 || sr.st.overlay_k == sp->overlay_k) &&
                sd.st.beta == sr.st.beta && sd.st.overlay_k == sr.st.overlay_k,
            note);
  }

  /* R and Phi: handed back whole on both sides, then compared by the fraction that differs */
  int64_t unwritten = 0;
  for (size_t i = 0; i < cells; i++)
    unwritten += (sd.phi[i] == 254) + (sr.phi[i] == 254);
  for (size_t i = 0; i < px; i++)
    unwritten += (sd.erase[i] == 254) + (sr.erase[i] == 254);
  snprintf(note, sizeof note, "%lld values left unwritten", (long long)unwritten);
  line(sp->name, "step R and Phi handed back", "-", "written", unwritten == 0, note);
  check_frac(sp->name, "step erase region R (pixels)", count_differ_u8(sd.erase, sr.erase, px), px,
             b->px);
  check_frac(sp->name, "step Phi: L' per cell of H'", count_differ_i32(sd.phi, sr.phi, cells),
             cells, b->cells);

  /* losses, then what the step left in the parameters: every gradient, and every 1-D frozen
   * tensor (batch-norm statistics) that it changed on either side */
  static const char *const loss_names[4] = {"step loss", "step L_cls",
                                            "step L_cls on the erased image", "step L_seg"};
  for (int k = 0; k < 4; k++) {
    if (k == 2 && !cfg->hp.cls_on_erased) continue;
    item *x = &it[n_items++];
    snprintf(x->what, sizeof x->what, "%s", loss_names[k]);
    x->err = rel_scalar(step_loss(&sd.st, k), step_loss(&sr.st, k));
    x->bound = b->step, x->ctrl = -1, x->loss = k;
    x->edge = k != 1; /* L_cls is F's forward alone: continuous */
    x->zero = step_loss(&sr.st, k) == 0;
  }
  int grads = 0, need_ctrl = 0;
  for (size_t i = 0; i < np; i++) {
    ecs_tensor *tr = ecs_params_at(pr, i), *td = ecs_params_find(pd, tr->name);
    int64_t n = ecs_nelements(tr);
    item *x = &it[n_items];
    *x = (item){.bound = b->step, .ctrl = -1, .loss = -1, .param = i};
    if (!td || !!td->grad != !!tr->grad) {
      snprintf(x->what, sizeof x->what, "grad %s", tr->name);
      line(sp->name, x->what, "-", "-", 0, "the two models differ in their parameters");
      continue;
    }
    if (tr->grad) {
      float *a = host_copy(td->grad, &err);
      x->ref = a ? host_copy(tr->grad, &err) : NULL;
      if (!x->ref) {
        free(a);
        ok = 0;
        break;
      }
      snprintf(x->what, sizeof x->what, "grad %s", tr->name);
      x->err = ecs_rel_l2(a, x->ref, n);
      x->edge = 1;
      x->zero = 1;
      for (int64_t k = 0; k < n && x->zero; k++)
        x->zero = x->ref[k] == 0;
      free(a);
      grads++;
      n_items++;
    } else if (before[i]) {
      float *a = host_copy(td, &err), *c = a ? host_copy(tr, &err) : NULL;
      if (!c) {
        free(a);
        ok = 0;
        break;
      }
      size_t nb = sizeof(float) * (size_t)n;
      if (memcmp(a, before[i], nb) || memcmp(c, before[i], nb)) {
        snprintf(x->what, sizeof x->what, "updated %s", tr->name);
        x->err = ecs_rel_l2(a, c, n);
        n_items++;
      }
      free(a);
      free(c);
    }
  }
  if (!ok) {
    line(sp->name, "reading the parameters", "-", "-", 0, err.msg);
    goto done;
  }
  for (size_t i = 0; i < n_items; i++)
    need_ctrl |= it[i].edge && !(it[i].err <= it[i].bound);
  if (need_ctrl && !strict &&
      run_control(sp, r, &in, cells, before, &sr, b, it, n_items, &err) != ECS_OK)
    line(sp->name, "control step", "-", "-", 0, err.msg);
  for (size_t i = 0; i < n_items; i++)
    emit(sp->name, &it[i], b, strict);
  if (!grads) line(sp->name, "gradients", "-", "-", 0, "no parameter has a gradient");
done:
  step_run_free(&sd);
  step_run_free(&sr);
  for (size_t i = 0; before && i < np; i++)
    free(before[i]);
  for (size_t i = 0; it && i < n_items; i++)
    free(it[i].ref);
  free(before);
  free(it);
  return ok;
}

/* ---- inference ---------------------------------------------------------------------------- */

static int check_infer_call(const spec *sp, side *d, side *r, const bounds *b, const char *tag,
                            const uint8_t *rgb, const ecs_infer_opts *o) {
  ecs_err err = {0};
  ecs_cam_result *rd = NULL, *rr = NULL;
  char what[128], note[600];
  double t0 = ecs_now_s();
  ecs_status st = ecs_model_infer(d->m, d->ctx, rgb, sp->h, sp->w, o, &rd, &err);
  if (st == ECS_OK) st = ecs_backend_synchronize(d->be, &err);
  double t1 = ecs_now_s();
  if (st == ECS_OK) st = ecs_model_infer(r->m, r->ctx, rgb, sp->h, sp->w, o, &rr, &err);
  double t2 = ecs_now_s();
  ecs_ctx_reset(d->ctx);
  ecs_ctx_reset(r->ctx);
  if (st != ECS_OK) {
    snprintf(what, sizeof what, "infer %s", tag);
    line(sp->name, what, "-", "-", 0, err.msg);
    ecs_cam_result_free(rd);
    ecs_cam_result_free(rr);
    return 0;
  }
  printf("%-9s infer %s of %dx%d on %s in %.3f s, on %s in %.3f s\n", sp->name, tag, sp->h, sp->w,
         ecs_device_name(d->dev), t1 - t0, ecs_device_name(r->dev), t2 - t1);
  int64_t hw = (int64_t)sp->h * sp->w, L = rr->n_labels;

  /* the fixture, on the reference */
  int64_t erased = 0, present = 0;
  for (int64_t p = 0; p < hw; p++) {
    erased += rr->erase_region[p];
    present += rr->ecs_mask[p] != 0 && rr->ecs_mask[p] != 255;
  }
  double frac = (double)rr->phi / (double)hw;
  snprintf(what, sizeof what, "infer %s: erase region not empty", tag);
  snprintf(note, sizeof note, "%lld of %lld pixels", (long long)erased, (long long)hw);
  fixture(sp->name, what, erased > 0, note);
  snprintf(what, sizeof what, "infer %s: 10-90%% of pixels in Phi", tag);
  snprintf(note, sizeof note, "%.1f%% of %lld pixels", 100 * frac, (long long)hw);
  fixture(sp->name, what, frac >= 0.1 && frac <= 0.9, note);
  snprintf(what, sizeof what, "infer %s: a present class in Phi", tag);
  snprintf(note, sizeof note, "%lld pixels of a label", (long long)present);
  fixture(sp->name, what, present > 0, note);

  /* the labels are given, so they must be the same; then every output */
  int same = rd->n_labels == rr->n_labels &&
             !memcmp(rd->labels, rr->labels, sizeof(int) * (size_t)rr->n_labels) &&
             rd->erased_cams && rr->erased_cams;
  snprintf(what, sizeof what, "infer %s labels and outputs present", tag);
  line(sp->name, what, "-", "equal", same, NULL);
  if (same) {
    snprintf(what, sizeof what, "infer %s scores", tag);
    check(sp->name, what, ecs_rel_l2(rd->scores, rr->scores, rr->n_classes), b->infer, NULL);
    snprintf(what, sizeof what, "infer %s CAMs", tag);
    check(sp->name, what, ecs_rel_l2(rd->cams, rr->cams, L * hw), b->infer, NULL);
    snprintf(what, sizeof what, "infer %s erased CAMs", tag);
    check(sp->name, what, ecs_rel_l2(rd->erased_cams, rr->erased_cams, L * hw), b->infer, NULL);
    static const char *const names[5] = {"erase region", "CAM mask", "head mask", "ECS mask",
                                         "combined mask"};
    const uint16_t *md[4] = {rd->cam_mask, rd->head_mask, rd->ecs_mask, rd->mask};
    const uint16_t *mr[4] = {rr->cam_mask, rr->head_mask, rr->ecs_mask, rr->mask};
    snprintf(what, sizeof what, "infer %s %s (pixels)", tag, names[0]);
    check_frac(sp->name, what, count_differ_u8(rd->erase_region, rr->erase_region, hw), hw, b->px);
    for (int k = 1; k < 5; k++) {
      int64_t differ = 0;
      for (int64_t p = 0; p < hw; p++)
        differ += md[k - 1][p] != mr[k - 1][p];
      snprintf(what, sizeof what, "infer %s %s (pixels)", tag, names[k]);
      check_frac(sp->name, what, differ, hw, b->px);
    }
  }
  ecs_cam_result_free(rd);
  ecs_cam_result_free(rr);
  return 1;
}

static int check_infer(const spec *sp, side *d, side *r, const bounds *b, const uint8_t *rgb) {
  ecs_err err = {0};
  /* the server's model: the weights as trained (the step moved the small network's batch-norm
   * statistics, by a rounding apart on the two sides: the reference's go to both), folded */
  ecs_status st = ecs_params_copy(ecs_model_params(d->m), ecs_model_params(r->m), &err);
  if (st == ECS_OK) st = ecs_model_fold_bn(d->m, &err);
  if (st == ECS_OK) st = ecs_model_fold_bn(r->m, &err);
  if (st != ECS_OK) {
    line(sp->name, "infer: model for inference", "-", "-", 0, err.msg);
    return 0;
  }
  size_t img = (size_t)sp->h * sp->w * 3;
  int ok = 1;
  for (int n = 0; n < BATCH; n++) {
    int labels[3], nl = 0;
    for (int k = 0; k_labels[n][k]; k++)
      labels[nl++] = k_labels[n][k];
    /* as the server calls it for the default outputs (cam, erased_cam, mask, scores) */
    ecs_infer_opts o = {.labels = labels, .n_labels = nl, .want_erased = 1};
    if (n == 1) { /* flip and two scales (scales=1,0.75&flip=1) */
      o.flip = 1;
      o.n_scales = 2;
      o.scales[0] = 1.0f;
      o.scales[1] = 0.75f;
    }
    ok &= check_infer_call(sp, d, r, b, n == 0 ? "A" : "B (flip, 2 scales)", rgb + n * img, &o);
  }
  return ok;
}

/* ---- main --------------------------------------------------------------------------------- */

static int usage(void) {
  fprintf(stderr, "usage: model_check [DEVICE (cuda:0)] [--tf32 0|1] [--strict] "
                  "[--model small|resnet38d] [--part step|infer]\n");
  return 2;
}

static int run_spec(const spec *sp, ecs_device *dev, ecs_device *ref, const ecs_backend_params *bp,
                    const bounds *b, int strict, const char *part) {
  ecs_err err = {0};
  ecs_model_config *cfg = malloc(sizeof *cfg);
  side d = {0}, r = {0};
  size_t hw = (size_t)sp->h * sp->w;
  uint8_t *rgb = malloc(BATCH * hw * 3);
  float *images = malloc(sizeof(float) * BATCH * 3 * hw);
  float *labels = calloc((size_t)BATCH * sp->classes, sizeof *labels);
  int ok = cfg && rgb && images && labels;
  if (ok) {
    ecs_model_config_default(cfg, sp->backbone, sp->classes);
    cfg->hp.overlay_k = sp->overlay_k;
    if (sp->beta > 0) cfg->hp.beta = sp->beta;
    ok = side_init(&r, ref, NULL, cfg, sp->seed, &err) == ECS_OK && perturb_bn(r.m, &err) == ECS_OK;
  }
  if (ok) {
    for (int n = 0; n < BATCH; n++) {
      scene(rgb + n * hw * 3, sp->h, sp->w, sp->seed * 10 + (uint64_t)n);
      ecs_model_normalise(r.m, rgb + n * hw * 3, sp->h, sp->w, images + n * 3 * hw);
      for (int k = 0; k_labels[n][k]; k++)
        labels[n * sp->classes + k_labels[n][k] - 1] = 1.0f;
    }
    ok = calibrate_head(r.m, r.ctx, images, BATCH, sp->h, sp->w, &err) == ECS_OK &&
         side_init(&d, dev, bp, cfg, sp->seed, &err) == ECS_OK &&
         ecs_params_copy(ecs_model_params(d.m), ecs_model_params(r.m), &err) == ECS_OK;
  }
  if (!ok) {
    line(sp->name, "setting up the model", "-", "-", 0, err.msg[0] ? err.msg : "out of memory");
    goto done;
  }
  if (!part || !strcmp(part, "step")) ok &= check_step(sp, &d, &r, b, strict, images, labels);
  if (!part || !strcmp(part, "infer")) ok &= check_infer(sp, &d, &r, b, rgb);
done:
  side_free(&d);
  side_free(&r);
  free(cfg);
  free(rgb);
  free(images);
  free(labels);
  return ok;
}

int main(int argc, char **argv) {
  const char *name = "cuda:0", *only = NULL, *part = NULL, *env = getenv("ECSNET_TF32");
  int tf32 = env && !strcmp(env, "1"), strict = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      name = a;
      continue;
    }
    if (!strcmp(a, "--strict")) {
      strict = 1;
      continue;
    }
    if (!v) return usage();
    if (!strcmp(a, "--tf32") && (!strcmp(v, "0") || !strcmp(v, "1")))
      tf32 = v[0] == '1';
    else if (!strcmp(a, "--model"))
      only = v;
    else if (!strcmp(a, "--part") && (!strcmp(v, "step") || !strcmp(v, "infer")))
      part = v;
    else
      return usage();
    i++;
  }
  int known = !only;
  for (int i = 0; i < N_SPECS; i++)
    known |= only && !strcmp(only, k_specs[i].name);
  if (!known) return usage();
  ecs_err err = {0};
  ecs_device *dev = ecs_device_find(name, &err);
  if (!dev) {
    printf("model_check: skipped: %s\n", err.msg);
    return 77;
  }
  int host = ecs_device_is_host(dev);
  ecs_device *ref = ecs_device_find(host ? "cpu-ref" : "cpu", &err);
  if (!ref) {
    printf("model_check: %s\n", err.msg);
    return 1;
  }
  if (host && tf32) {
    printf("model_check: TF32 is a CUDA option: off on %s\n", ecs_device_name(dev));
    tf32 = 0;
  }
  if (env && !host && (env[0] == '1') != tf32)
    printf("model_check: warning: ECSNET_TF32=%s but --tf32 %d; this tree's CUDA backend reads "
           "ECSNET_TF32\n",
           env, tf32);
  const bounds *b = tf32 ? &k_tf32 : &k_fp32;
  ecs_backend_params bp = {.tf32 = tf32};
  printf("model_check: %s (%s) against %s, TF32 %s; bounds: relative L2 %.0e (step), %.0e "
         "(inference); differing cells of Phi %.1f%%, pixels %.1f%%; ",
         ecs_device_name(dev), ecs_device_description(dev), ecs_device_name(ref),
         tf32 ? "on" : "off", b->step, b->infer, 100 * b->cells, 100 * b->px);
  if (strict)
    printf("strict: no ReLU-edge rule\n");
  else
    printf("ReLU-edge rule: up to twice the reference's own movement when its images change by "
           "a relative %.0e, at most %.0e\n",
           b->delta, b->cap);
  double t0 = ecs_now_s();
  for (int i = 0; i < N_SPECS; i++)
    if (!only || !strcmp(only, k_specs[i].name))
      run_spec(&k_specs[i], dev, ref, &bp, b, strict, part);
  printf("model_check: %d of %d comparisons passed (%d of them by the ReLU-edge rule), %d failed "
         "(%.1f s)\n",
         g_count - g_failed, g_count, g_by_edge, g_failed, ecs_now_s() - t0);
  return g_failed ? 1 : 0;
}
