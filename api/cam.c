/* cam.c - the /cam door (cam.h): prepare on the HTTP thread, compute and render on a worker. */
#include "cam.h"

#include <string.h>

#include "ecs/pool.h"
#include "input-size.h"

static double ms_since(uint64_t t0) {
  return (double)(ecs_monotonic_ns() - t0) / 1e6;
}

bool api_cam_prepare(const api_http_in *in, const api_cam_limits *lim, api_cam_request *req,
                     api_error *err) {
  if (!api_cam_request_parse(in, lim, req, err)) return false;
  int w = 0, h = 0;
  ecs_err e = {0};
  bool ok = true;
  if (ecs_image_probe(req->image, req->image_len, &w, &h, NULL, &e) != ECS_OK)
    ok = api_fail(err, 400, "invalid_image", "%s", e.msg);
  else if (lim->max_pixels && (uint64_t)w * (uint64_t)h > (uint64_t)lim->max_pixels)
    ok = api_fail(err, 413, "too_many_pixels",
                  "the image is %dx%d, more than the limit of %zu pixels", w, h, lim->max_pixels);
  if (!ok) api_cam_request_free(req);
  return ok;
}

static bool decode_failed(api_error *err, const ecs_err *e) {
  switch (e->status) {
  case ECS_ERR_LIMIT: return api_fail(err, 413, "too_many_pixels", "%s", e->msg);
  case ECS_ERR_NOMEM:
    return api_fail(err, 503, "out_of_memory", "the server is short of memory: %s", e->msg);
  default: return api_fail(err, 400, "invalid_image", "%s", e->msg);
  }
}

static bool infer_failed(api_error *err, const ecs_err *e) {
  switch (e->status) {
  case ECS_ERR_NOMEM: return api_fail(err, 503, "out_of_memory", "%s", e->msg);
  case ECS_ERR_CANCELLED: return api_fail(err, 503, "timeout", "the request was cancelled");
  /* a size the engine's tensors cannot hold: the image's fault, like --max-pixels */
  case ECS_ERR_LIMIT: return api_fail(err, 413, "too_many_pixels", "%s", e->msg);
  default: return api_fail(err, 500, "inference_failed", "%s", e->msg);
  }
}

/* The request as the engine's options, its labels resolved against info. */
static bool infer_opts(const api_cam_request *req, const api_model_info *info, float threshold,
                       int topk, ecs_infer_opts *o, int *labels, api_error *err) {
  int ids[API_LABELS_HARD_MAX], n_ids = 0, png_id;
  if (!api_cam_resolve_labels(req, info, ids, &n_ids, err)) return false;
  if (req->png_label_given && !api_cam_resolve_label(&req->png_label, info, &png_id, err))
    return false;
  *o = (ecs_infer_opts){.flip = req->flip,
                        .refine = req->refine_given ? (req->refine ? 1 : -1) : 0,
                        .label_threshold = threshold,
                        .label_topk = req->label_topk > 0 ? req->label_topk : topk,
                        .want_erased = (req->outputs & API_OUT_ERASING) != 0,
                        .has_alpha_bg = req->alpha_bg_given,
                        .alpha_bg = req->alpha_bg};
  /* Background (0) is implicit in every mask and has no CAM of its own. */
  for (int i = 0; i < n_ids && o->n_labels < ECS_MAX_LABELS; i++)
    if (ids[i] > 0) labels[o->n_labels++] = ids[i];
  o->labels = o->n_labels ? labels : NULL;
  o->n_scales = req->n_scales < ECS_MAX_SCALES ? req->n_scales : ECS_MAX_SCALES;
  memcpy(o->scales, req->scales, sizeof(float) * (size_t)o->n_scales);
  return true;
}

/* The image the model runs on under the input-size policy (input-size.h): *run stays NULL
 * when it is img itself. A canvas over --max-pixels is a 413 that says so. */
static bool run_image(const api_cam_request *req, const api_model_info *info, const ecs_image *img,
                      ecs_image **run, api_input_plan *plan, api_error *err) {
  *run = NULL;
  if (!api_input_size(img->width, img->height, &info->input, plan)) return true;
  if (req->max_pixels &&
      (uint64_t)plan->canvas_w * (uint64_t)plan->canvas_h > (uint64_t)req->max_pixels)
    return api_fail(err, 413, "too_many_pixels",
                    "the image is %dx%d; the model would see it at %dx%d, more than the limit of "
                    "%zu pixels",
                    img->width, img->height, plan->canvas_w, plan->canvas_h, req->max_pixels);
  ecs_err e = {0};
  *run = api_input_image(img, plan, &info->input, &e);
  return *run || api_fail(err, 503, "out_of_memory", "the server is short of memory: %s", e.msg);
}

static bool compute(const api_cam_request *req, api_model *m, const api_cam_call *call,
                    ecs_image **img, ecs_cam_result **res, api_cam_timings *t, api_error *err) {
  uint64_t t0 = ecs_monotonic_ns();
  ecs_err e = {0};
  ecs_status st = ecs_image_decode(req->image, req->image_len, req->max_pixels, img, &e);
  t->decode_ms = ms_since(t0);
  if (st != ECS_OK) return decode_failed(err, &e);
  if (!m)
    return api_fail(err, 503, "model_not_ready",
                    "the request is valid, but no model is loaded yet; retry later");
  ecs_infer_opts o;
  int labels[ECS_MAX_LABELS];
  if (!infer_opts(req, api_model_describe(m), call->label_threshold, call->label_topk, &o, labels,
                  err))
    return false;
  t0 = ecs_monotonic_ns();
  ecs_image *run = NULL;
  api_input_plan plan;
  if (!run_image(req, api_model_describe(m), *img, &run, &plan, err)) return false;
  t->input_w = plan.canvas_w;
  t->input_h = plan.canvas_h;
  st = api_model_infer(m, call->worker, call->cancel, run ? run : *img, &o, res, &e);
  ecs_image_free(run);
  if (st == ECS_OK && run)
    st = api_cam_result_resize(*res, &plan, (*img)->width, (*img)->height, &e);
  t->infer_ms = ms_since(t0);
  if (st != ECS_OK) return infer_failed(err, &e);
  return true;
}

bool api_cam_compute(const api_cam_request *req, api_model *m, const api_cam_call *call,
                     ecs_image **img, ecs_cam_result **res, api_cam_timings *t, api_error *err) {
  *img = NULL;
  *res = NULL;
  *t = (api_cam_timings){.decode_ms = -1, .queue_ms = call->queue_ms, .infer_ms = -1};
  if (compute(req, m, call, img, res, t, err)) return true;
  ecs_cam_result_free(*res);
  ecs_image_free(*img);
  *res = NULL;
  *img = NULL;
  return false;
}

void api_cam_run(const api_cam_request *req, api_model *m, const api_cam_call *call,
                 api_response *out, api_cam_timings *t) {
  ecs_image *img = NULL;
  ecs_cam_result *res = NULL;
  api_error err;
  bool ok = api_cam_compute(req, m, call, &img, &res, t, &err);
  if (ok) {
    t->total_ms = call->t0_ns ? ms_since(call->t0_ns) : t->decode_ms + t->infer_ms;
    ok = api_cam_render(req, api_model_describe(m), img, res, t, out, &err);
  }
  if (!ok) api_response_error(out, &err);
  ecs_cam_result_free(res);
  ecs_image_free(img);
}
