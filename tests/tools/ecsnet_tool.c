/* ecsnet_tool - runs the ECS-Net model on tensors from a safetensors file, for the Python
 * parity tests (tests/python/test_ecsnet_*.py):
 *
 *   ecsnet_tool [--device NAME] [--fold] forward MODEL IN OUT [train]
 *                                               IN: x (N,3,H,W)          OUT: h
 *   ecsnet_tool step MODEL IN OUT [PREFIXES]   IN: images, labels, args  OUT: losses, counts,
 *                                                 grad.<param>, <param> (only the names starting
 *                                                 with one of the comma-separated PREFIXES)
 *   ecsnet_tool infer MODEL IN OUT             IN: rgb (H,W,3) U8, labels I32?, opts F32?
 *
 * --device picks the device (default "cpu"; "cpu-ref" for the reference kernels); --fold folds
 * batch norm into the convolutions first, as the server does (ecs_model_fold_bn). The engine
 * options come from ECSNET_* (tool_env.h). Errors go to stderr as one line; exit
 * status 1 (2 for bad usage or a bad option value). */
#include "ecs/ecsnet.h"
#include "ecs/safetensors.h"
#include "tool_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const ecs_err *e) {
  fprintf(stderr, "ecsnet_tool: %s: %s\n", what, e ? e->msg : "failed");
  return 1;
}

static const ecs_st_tensor *need(const ecs_st_file *f, const char *name, ecs_dtype t) {
  const ecs_st_tensor *x = ecs_st_find(f, name);
  if (!x || x->type != t) {
    fprintf(stderr, "ecsnet_tool: input tensor %s missing or of the wrong type\n", name);
    return NULL;
  }
  return x;
}

static int add(ecs_st_writer *w, const char *name, ecs_dtype t, int nd, int64_t a, int64_t b,
               int64_t c, int64_t d, const void *data, ecs_err *e) {
  int64_t ne[4] = {a, b, c, d};
  return ecs_st_writer_add(w, name, t, nd, ne, data, e) == ECS_OK;
}

static int cmd_forward(ecs_model *m, ecs_ctx *ctx, const ecs_st_file *in, ecs_st_writer *w,
                       int train, ecs_err *e) {
  const ecs_st_tensor *x = need(in, "x", ECS_F32);
  if (!x) return 0;
  ecs_tensor *tx = ecs_from_host(ctx, ECS_F32, 4, x->ne, x->data);
  ecs_tensor *h = tx ? ecs_model_forward(m, ctx, tx, train, 0, NULL) : NULL;
  if (!h || ecs_ctx_status(ctx, e) != ECS_OK) return 0;
  float *buf = malloc(ecs_plain_nbytes(h));
  int ok = buf && ecs_to_host(ctx, h, buf, ecs_plain_nbytes(h)) == ECS_OK &&
           ecs_st_writer_add(w, "h", ECS_F32, 4, h->ne, buf, e) == ECS_OK;
  free(buf);
  return ok;
}

static int wanted(const char *name, const char *prefixes) {
  if (!prefixes) return 1;
  for (const char *p = prefixes; *p;) {
    size_t n = strcspn(p, ",");
    if (n && strncmp(name, p, n) == 0) return 1;
    p += n + (p[n] == ',');
  }
  return 0;
}

static int cmd_step(ecs_model *m, ecs_ctx *ctx, const ecs_st_file *in, ecs_st_writer *w,
                    const char *prefixes, ecs_err *e) {
  const ecs_st_tensor *im = need(in, "images", ECS_F32), *lb = need(in, "labels", ECS_F32);
  const ecs_st_tensor *ar = need(in, "args", ECS_F32);
  if (!im || !lb || !ar) return 0;
  const float *a = ar->data;
  ecs_params *ps = ecs_model_params(m);
  if (ecs_params_alloc_grads(ps, e) != ECS_OK || ecs_params_zero_grads(ps, e) != ECS_OK) return 0;
  ecs_step_input si = {.n = (int)im->ne[0],
                       .h = (int)im->ne[2],
                       .w = (int)im->ne[3],
                       .images = im->data,
                       .labels = lb->data,
                       .ecs_phase = (int)a[0],
                       .lambda = a[1],
                       .seed = (uint64_t)a[2]};
  ecs_step_stats st;
  if (ecs_model_step(m, ctx, &si, &st, e) != ECS_OK) return 0;
  float losses[4] = {st.loss, st.loss_cls, st.loss_cls_erased, st.loss_seg};
  int32_t counts[7] = {(int32_t)st.phi,          (int32_t)st.phi_fg,    (int32_t)st.phi_bg,
                       (int32_t)st.cells,        (int32_t)st.erased_px, st.overlay_k,
                       (int32_t)(st.beta * 1000)};
  if (!add(w, "losses", ECS_F32, 1, 4, 1, 1, 1, losses, e) ||
      !add(w, "counts", ECS_I32, 1, 7, 1, 1, 1, counts, e))
    return 0;
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    if (!wanted(t->name, prefixes)) continue;
    size_t nb = ecs_plain_nbytes(t);
    float *buf = malloc(nb);
    char name[128];
    int ok = buf && ecs_tensor_get_bytes(t, buf, 0, nb, e) == ECS_OK &&
             ecs_st_writer_add(w, t->name, t->type, t->nd, t->ne, buf, e) == ECS_OK;
    if (ok && t->grad) {
      snprintf(name, sizeof name, "grad.%s", t->name);
      ok = ecs_tensor_get_bytes(t->grad, buf, 0, nb, e) == ECS_OK &&
           ecs_st_writer_add(w, name, t->type, t->nd, t->ne, buf, e) == ECS_OK;
    }
    free(buf);
    if (!ok) return 0;
  }
  return 1;
}

/* A 16-bit mask as U8 (ignore: 255) when every id fits, else as I32 (ignore: 65535). */
static int add_mask(ecs_st_writer *w, const char *name, const uint16_t *mk, int h, int wd,
                    ecs_err *e) {
  size_t n = (size_t)h * wd, wide = 0;
  for (size_t i = 0; i < n; i++)
    wide |= mk[i] > 254 && mk[i] != ECS_MASK_IGNORE;
  void *buf = malloc(n * (wide ? 4 : 1) + 1);
  if (!buf) return 0;
  for (size_t i = 0; i < n; i++)
    if (wide)
      ((int32_t *)buf)[i] = mk[i];
    else
      ((uint8_t *)buf)[i] = mk[i] == ECS_MASK_IGNORE ? 255 : (uint8_t)mk[i];
  int ok = add(w, name, wide ? ECS_I32 : ECS_U8, 2, h, wd, 1, 1, buf, e);
  free(buf);
  return ok;
}

static int cmd_infer(ecs_model *m, ecs_ctx *ctx, const ecs_st_file *in, ecs_st_writer *w,
                     ecs_err *e) {
  const ecs_st_tensor *rgb = need(in, "rgb", ECS_U8);
  if (!rgb) return 0;
  /* refinement off: the tests compare the CAMs with references that do not refine (a model's
   * default may turn it on: ecsnet-imagenet-lite0) */
  ecs_infer_opts o = {.want_erased = 1, .refine = -1};
  const ecs_st_tensor *lb = ecs_st_find(in, "labels"), *op = ecs_st_find(in, "opts");
  if (lb && lb->type == ECS_I32) {
    o.labels = lb->data;
    o.n_labels = (int)lb->ne[0];
  }
  if (op && op->type == ECS_F32) { /* flip, want_erased, scales... */
    const float *v = op->data;
    int64_t n = op->ne[0];
    o.flip = n > 0 && v[0] > 0;
    o.want_erased = n > 1 ? v[1] > 0 : 1;
    for (int64_t i = 2; i < n && o.n_scales < ECS_MAX_SCALES; i++)
      o.scales[o.n_scales++] = v[i];
  }
  ecs_cam_result *r;
  int h = (int)rgb->ne[0], wd = (int)rgb->ne[1];
  if (ecs_model_infer(m, ctx, rgb->data, h, wd, &o, &r, e) != ECS_OK) return 0;
  int K = r->n_classes, L = r->n_labels, ok = 1;
  ok &= add(w, "scores", ECS_F32, 1, K + r->n_groups, 1, 1, 1, r->scores, e);
  ok &= add(w, "labels", ECS_I32, 1, L, 1, 1, 1, r->labels, e);
  ok &= add(w, "cams", ECS_F32, 3, L, h, wd, 1, r->cams, e);
  ok &= add_mask(w, "cam_mask", r->cam_mask, h, wd, e);
  ok &= add_mask(w, "head_mask", r->head_mask, h, wd, e);
  ok &= add_mask(w, "mask", r->mask, h, wd, e);
  if (r->erased_cams) {
    ok &= add(w, "erased_cams", ECS_F32, 3, L, h, wd, 1, r->erased_cams, e);
    ok &= add(w, "erase_region", ECS_U8, 2, h, wd, 1, 1, r->erase_region, e);
    ok &= add(w, "erased_image", ECS_U8, 3, h, wd, 3, 1, r->erased_image, e);
    if (r->ecs_mask) ok &= add_mask(w, "ecs_mask", r->ecs_mask, h, wd, e);
  }
  ecs_cam_result_free(r);
  return ok;
}

int main(int argc, char **argv) {
  const char *device = "cpu";
  if (argc > 2 && strcmp(argv[1], "--device") == 0) {
    device = argv[2];
    argv += 2;
    argc -= 2;
  }
  int fold = argc > 1 && strcmp(argv[1], "--fold") == 0;
  if (fold) {
    argv++;
    argc--;
  }
  if (argc < 5) {
    fprintf(stderr, "usage: ecsnet_tool forward|step|infer MODEL IN OUT [train]\n");
    return 2;
  }
  ecs_backend_params bp = {.n_threads = 2};
  if (!tool_engine_from_env(&bp, "ecsnet_tool")) return 2;
  ecs_err e = {0};
  ecs_device *dev = ecs_device_find(device, &e);
  if (!dev) return fail("device", &e);
  ecs_model *m = ecs_model_load(argv[2], ecs_device_buffer_type(dev), &e);
  if (!m) return fail("load", &e);
  if (fold && ecs_model_fold_bn(m, &e) != ECS_OK) {
    ecs_model_free(m);
    return fail("fold", &e);
  }
  ecs_backend *be = ecs_backend_init(dev, &bp, &e);
  ecs_ctx *ctx = be ? ecs_ctx_new(be, &e) : NULL;
  ecs_st_file *in = ctx ? ecs_st_open(argv[3], &e) : NULL;
  ecs_st_writer *w = in ? ecs_st_writer_new(&e) : NULL;
  int ok = 0;
  if (w) {
    if (strcmp(argv[1], "forward") == 0)
      ok = cmd_forward(m, ctx, in, w, argc > 5, &e);
    else if (strcmp(argv[1], "step") == 0)
      ok = cmd_step(m, ctx, in, w, argc > 5 ? argv[5] : NULL, &e);
    else if (strcmp(argv[1], "infer") == 0)
      ok = cmd_infer(m, ctx, in, w, &e);
    else
      ecs_err_set(&e, ECS_ERR_INVALID, "unknown command %s", argv[1]);
    if (ok) ok = ecs_st_writer_save(w, argv[4], &e) == ECS_OK;
  }
  if (!ok && !e.msg[0]) ecs_ctx_status(ctx, &e);
  ecs_st_writer_free(w);
  ecs_st_close(in);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_model_free(m);
  return ok ? 0 : fail(argv[1], &e);
}
