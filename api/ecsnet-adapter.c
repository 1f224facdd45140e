/* ecsnet-adapter.c - api_model_iface over ecs_model_infer.
 *
 * One model file, loaded once into the device's memory and shared read-only by every worker;
 * the server reference-counts the api_model, so this file never has to know about swaps. Each
 * worker gets its own backend (stream) and ctx, made on its first request rather than at load
 * time: a server with 8 workers that sees little traffic keeps one arena, not eight. A worker
 * slot is only ever touched by the thread with that worker index, so the slots need no lock.
 *
 * The run does only what the request asks for: the erasing branch (a second multi-scale pass
 * on the erased image) runs only when an erased output or the ECS or combined mask is wanted,
 * and buffers the request did not ask for are dropped before rendering. */
#include "ecsnet-adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "ecs/pool.h"

#define NAME_MAX_ 64

typedef struct worker_slot {
  ecs_backend *be;
  ecs_ctx *ctx;
} worker_slot;

typedef struct ecsnet_adapter {
  ecs_model *model;
  ecs_device *dev;
  char name[NAME_MAX_];
  int version;
  char *path;
  char device[64];
  const char *class_ptrs[ECS_MAX_CLASSES];
  int n_workers;
  int threads_per_worker;
  ecs_backend_params engine; /* the engine options of every worker's backend */
  worker_slot *slots;
} ecsnet_adapter;

static double now_ms(void) { return (double)ecs_monotonic_ns() / 1e6; }

static void adapter_info(void *ctx, api_model_info *out) {
  ecsnet_adapter *a = ctx;
  const ecs_model_config *c = ecs_model_get_config(a->model);
  *out = (api_model_info){.name = a->name, .version = a->version, .n_classes = c->n_classes,
                          .class_names = a->class_ptrs, .backbone = ecs_backbone_name(c->backbone),
                          .path = a->path, .device = a->device};
}

static ecs_ctx *worker_ctx(ecsnet_adapter *a, int worker, ecs_err *err) {
  if (worker < 0 || worker >= a->n_workers) {
    ecs_err_set(err, ECS_ERR_INVALID, "worker %d outside 0..%d", worker, a->n_workers - 1);
    return NULL;
  }
  worker_slot *s = &a->slots[worker];
  if (s->ctx) return s->ctx;
  if (!s->be) {
    ecs_backend_params bp = a->engine;
    bp.n_threads = a->threads_per_worker;
    s->be = ecs_backend_init(a->dev, &bp, err);
    if (!s->be) return NULL;
  }
  s->ctx = ecs_ctx_new(s->be, err);
  return s->ctx;
}

static int poll_cancel(void *user) { return user && atomic_load((const atomic_bool *)user); }

void api_overlay_jet(const uint8_t *rgb, const float *cam, int w, int h, uint8_t *out) {
  size_t n = (size_t)w * (size_t)h;
  for (size_t p = 0; p < n; p++) {
    float v = cam ? cam[p] : 0.0f;
    v = v > 0 ? (v < 1 ? v : 1) : 0;
    float col[3] = {1.5f - __builtin_fabsf(4 * v - 3), 1.5f - __builtin_fabsf(4 * v - 2),
                    1.5f - __builtin_fabsf(4 * v - 1)};
    for (int c = 0; c < 3; c++) {
      float k = col[c] < 0 ? 0 : col[c] > 1 ? 1 : col[c];
      out[p * 3 + c] = (uint8_t)(0.5f * rgb[p * 3 + c] + 127.5f * k + 0.5f);
    }
  }
}

/* The labels' pixel-wise max CAM over the image; NULL when out of memory. */
static uint8_t *overlay_of(const uint8_t *rgb, const ecs_cam_result *r) {
  size_t hw = (size_t)r->h * (size_t)r->w;
  float *mx = calloc(hw ? hw : 1, sizeof *mx);
  uint8_t *out = malloc(hw ? hw * 3 : 1);
  if (!mx || !out) {
    free(mx);
    free(out);
    return NULL;
  }
  for (int i = 0; i < r->n_labels; i++)
    for (size_t p = 0; p < hw; p++)
      if (r->cams[(size_t)i * hw + p] > mx[p]) mx[p] = r->cams[(size_t)i * hw + p];
  api_overlay_jet(rgb, mx, r->w, r->h, out);
  free(mx);
  return out;
}

#define TAKE(dst, src) ((dst) = (src), (src) = NULL)

/* Masks are 8-bit: the engine leaves them out for a label above ECS_MAX_MASK_ID. A mask output
 * asked for then is an error naming the label (ECS_ERR_UNSUPPORTED, 422); ECS_OK otherwise. */
static ecs_status masks_available(const ecsnet_adapter *a, const ecs_cam_result *r, unsigned want,
                                  ecs_err *err) {
  if (!(want & (API_OUT_MASK | API_OUT_CAM_MASK | API_OUT_ECS_MASK | API_OUT_HEAD_MASK)) ||
      r->cam_mask)
    return ECS_OK;
  int id = 0;
  for (int i = 0; i < r->n_labels && !id; i++)
    if (r->labels[i] > ECS_MAX_MASK_ID) id = r->labels[i];
  const ecs_model_config *c = ecs_model_get_config(a->model);
  return ecs_err_set(err, ECS_ERR_UNSUPPORTED,
                     "masks hold class ids up to %d, and label %d ('%s') is above: ask for "
                     "outputs without masks (cam, erased_cam, scores, erased_image, overlay)",
                     ECS_MAX_MASK_ID, id,
                     id > 0 && id <= c->n_classes ? c->class_names[id - 1] : "?");
}

static ecs_status adapter_run(void *ctx, const api_cam_input *in, api_cam_result *out,
                              ecs_err *err) {
  ecsnet_adapter *a = ctx;
  memset(out, 0, sizeof *out);
  if (in->cancel && atomic_load(in->cancel))
    return ecs_err_set(err, ECS_ERR_CANCELLED, "the request was cancelled");
  ecs_ctx *c = worker_ctx(a, in->worker, err);
  if (!c) return err ? err->status : ECS_ERR_BACKEND;
  /* Background (0) is implicit in every mask and has no CAM of its own. */
  int labels[ECS_MAX_CLASSES];
  int nl = 0;
  for (int i = 0; i < in->n_labels && nl < ECS_MAX_CLASSES; i++)
    if (in->labels[i] > 0) labels[nl++] = in->labels[i];
  unsigned want = in->outputs;
  ecs_infer_opts o = {.labels = nl ? labels : NULL,
                      .n_labels = nl,
                      .flip = in->flip,
                      .label_threshold = in->label_threshold,
                      .want_erased = in->want_erase_region ||
                                     (want & (API_OUT_ERASED_CAM | API_OUT_MASK | API_OUT_ECS_MASK |
                                              API_OUT_ERASED_IMAGE)) != 0};
  o.n_scales = in->n_scales < ECS_MAX_SCALES ? in->n_scales : ECS_MAX_SCALES;
  for (int i = 0; i < o.n_scales; i++) o.scales[i] = in->scales[i];
  ecs_ctx_set_yield(c, poll_cancel, (void *)in->cancel);
  ecs_cam_result *r = NULL;
  double t0 = now_ms();
  ecs_status st = ecs_model_infer(a->model, c, in->rgb, in->height, in->width, &o, &r, err);
  out->infer_ms = now_ms() - t0;
  ecs_ctx_set_yield(c, NULL, NULL);
  ecs_ctx_reset(c); /* the arena keeps its memory; the tensors of this image go */
  if (st == ECS_OK) st = masks_available(a, r, want, err);
  if (st != ECS_OK) {
    ecs_cam_result_free(r);
    return st;
  }
  out->width = r->w;
  out->height = r->h;
  out->n_labels = r->n_labels;
  out->phi = r->phi;
  out->labels = malloc(sizeof(int) * (size_t)(r->n_labels ? r->n_labels : 1));
  if (!out->labels) {
    ecs_cam_result_free(r);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  memcpy(out->labels, r->labels, sizeof(int) * (size_t)r->n_labels);
  if (want & API_OUT_OVERLAY) {
    out->overlay = overlay_of(in->rgb, r);
    if (!out->overlay) st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  if (want & API_OUT_SCORES) TAKE(out->scores, r->scores);
  if (want & API_OUT_CAM) TAKE(out->cams, r->cams);
  if (want & API_OUT_ERASED_CAM) TAKE(out->erased_cams, r->erased_cams);
  if (want & API_OUT_MASK) TAKE(out->mask, r->mask);
  if (want & API_OUT_CAM_MASK) TAKE(out->cam_mask, r->cam_mask);
  if (want & API_OUT_ECS_MASK) TAKE(out->ecs_mask, r->ecs_mask);
  if (want & API_OUT_HEAD_MASK) TAKE(out->head_mask, r->head_mask);
  if (want & API_OUT_ERASED_IMAGE) TAKE(out->erased_image, r->erased_image);
  if (in->want_erase_region) TAKE(out->erase_region, r->erase_region);
  ecs_cam_result_free(r);
  if (st != ECS_OK) api_cam_result_free(out);
  return st;
}

static void adapter_free(void *ctx) {
  ecsnet_adapter *a = ctx;
  if (!a) return;
  for (int i = 0; a->slots && i < a->n_workers; i++) {
    ecs_ctx_free(a->slots[i].ctx);
    ecs_backend_free(a->slots[i].be);
  }
  free(a->slots);
  ecs_model_free(a->model);
  free(a->path);
  free(a);
}

static const api_model_iface k_iface = {
    .info = adapter_info, .run = adapter_run, .free = adapter_free};

ecs_status api_ecsnet_open(const char *path, const char *name, int version,
                           const api_model_load_opts *opts, api_model **out, ecs_err *err) {
  *out = NULL;
  ecs_device *dev = ecs_device_find(opts->device && opts->device[0] ? opts->device : "auto", err);
  if (!dev) return err ? err->status : ECS_ERR_UNSUPPORTED;
  ecsnet_adapter *a = calloc(1, sizeof *a);
  api_model *m = calloc(1, sizeof *m);
  int workers = opts->n_workers > 0 ? opts->n_workers : 1;
  if (a) a->slots = calloc((size_t)workers, sizeof *a->slots);
  if (a) a->path = strdup(path);
  if (!a || !m || !a->slots || !a->path) {
    adapter_free(a);
    free(m);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  a->dev = dev;
  a->n_workers = workers;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int total = opts->threads > 0 ? opts->threads : (int)(cores > 0 ? cores : 1);
  a->threads_per_worker = total / workers > 0 ? total / workers : 1;
  a->engine = opts->engine;
  snprintf(a->name, sizeof a->name, "%s", name);
  a->version = version;
  snprintf(a->device, sizeof a->device, "%s", ecs_device_name(dev));
  a->model = ecs_model_load(path, ecs_device_buffer_type(dev), err);
  /* served models never train: batch norm folded into the convolutions once, here */
  if (a->model && ecs_model_fold_bn(a->model, err) != ECS_OK) {
    ecs_model_free(a->model);
    a->model = NULL;
  }
  if (!a->model) {
    adapter_free(a);
    free(m);
    return err ? err->status : ECS_ERR_IO;
  }
  const ecs_model_config *c = ecs_model_get_config(a->model);
  for (int k = 0; k < c->n_classes; k++) a->class_ptrs[k] = c->class_names[k];
  m->iface = &k_iface;
  m->ctx = a;
  *out = m;
  return ECS_OK;
}
