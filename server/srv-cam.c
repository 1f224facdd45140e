/* srv-cam.c - POST /cam: parse on the HTTP thread, decode and infer on a worker.
 *
 * The HTTP thread does what is cheap and bounded: parse the buffered body and read the image
 * header (the pixel limit is enforced there, before any pixel buffer exists). Decoding and the
 * model run on the pool; the connection stays suspended meanwhile. A job whose deadline passes
 * in the queue, or whose client has closed the connection, is dropped by the pool without
 * running. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cam-response.h"
#include "ecs/image.h"
#include "srv-impl.h"

#define MAX_QUERY 16

typedef struct query_acc {
  api_kv kv[MAX_QUERY];
  size_t n;
  bool overflow;
} query_acc;

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value) {
  query_acc *q = cls;
  if (q->n >= MAX_QUERY) {
    q->overflow = true;
    return MHD_NO;
  }
  q->kv[q->n++] = (api_kv){key, value};
  (void)kind;
  return MHD_YES;
}

static double ms_since(uint64_t t0) { return (double)(ecs_monotonic_ns() - t0) / 1e6; }

/* Stores a response for a suspended request; the HTTP thread queues it after the resume. */
static void store(srv_req *r, unsigned status, const char *type, char *body, size_t len) {
  r->status = status;
  r->resp_type = type;
  r->resp = body;
  r->resp_len = len;
}

void srv_req_set_error(srv_req *r, const api_error *e) {
  char *body = api_error_json(e);
  if (e->status == 503 && r->retry_after == 0) r->retry_after = 1;
  store(r, e->status, "application/json", body, body ? strlen(body) : 0);
}

static int cam_still_wanted(ecs_job *job) {
  srv_req *r = job->user;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci) return 1;
  char c;
  ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  /* 0: orderly close by the client; an error other than "nothing to read": reset. */
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    atomic_store(&r->cancel, true);
    return 0;
  }
  return 1;
}

static void decode_error(srv_req *r, const ecs_err *e) {
  api_error ae;
  switch (e->status) {
  case ECS_ERR_LIMIT: api_fail(&ae, 413, "too_many_pixels", "%s", e->msg); break;
  case ECS_ERR_NOMEM:
    api_fail(&ae, 503, "out_of_memory", "the server is short of memory: %s", e->msg);
    break;
  default: api_fail(&ae, 400, "invalid_image", "%s", e->msg); break;
  }
  srv_req_set_error(r, &ae);
}

static void run_model(srv_req *r, srv_model_ref *m, const ecs_image *img, int worker) {
  api_error ae;
  int ids[API_LABELS_HARD_MAX], n_ids = 0, png_id = -1;
  if (!api_cam_resolve_labels(&r->cam, &m->info, ids, &n_ids, &png_id, &ae)) {
    srv_req_set_error(r, &ae);
    return;
  }
  api_cam_input in = {.rgb = img->data, .width = img->width, .height = img->height,
                      .labels = ids, .n_labels = n_ids,
                      .label_threshold = (float)r->s->cfg.label_threshold,
                      .outputs = r->cam.outputs, .n_scales = r->cam.n_scales,
                      .flip = r->cam.flip, .worker = worker, .cancel = &r->cancel};
  memcpy(in.scales, r->cam.scales, sizeof in.scales);
  api_cam_result res = {0};
  ecs_err e;
  ecs_err_clear(&e);
  uint64_t t = ecs_monotonic_ns();
  ecs_status st = m->model->iface->run(m->model->ctx, &in, &res, &e);
  r->infer_ms = ms_since(t);
  srv_metrics_inference(r->s->metrics, r->infer_ms / 1e3);
  if (st != ECS_OK) {
    if (st == ECS_ERR_NOMEM) api_fail(&ae, 503, "out_of_memory", "%s", e.msg);
    else if (st == ECS_ERR_CANCELLED) api_fail(&ae, 503, "timeout", "the request was cancelled");
    else if (st == ECS_ERR_UNSUPPORTED) api_fail(&ae, 422, "unsupported_output", "%s", e.msg);
    else api_fail(&ae, 500, "inference_failed", "%s", e.msg);
    srv_req_set_error(r, &ae);
    api_cam_result_free(&res);
    return;
  }
  api_cam_timings tm = {.decode_ms = r->decode_ms, .queue_ms = r->queue_ms,
                        .infer_ms = r->infer_ms, .total_ms = ms_since(r->t0_ns)};
  char *body = NULL;
  size_t len = 0;
  const char *type = NULL;
  if (api_cam_render(&r->cam, &m->info, &res, png_id, &tm, &body, &len, &type, &ae))
    store(r, 200, type, body, len);
  else srv_req_set_error(r, &ae);
  api_cam_result_free(&res);
}

static void cam_run(ecs_job *job, void *worker_state) {
  srv_req *r = job->user;
  r->queue_ms = ms_since(r->submit_ns);
  uint64_t t = ecs_monotonic_ns();
  ecs_image *img = NULL;
  ecs_err e;
  ecs_err_clear(&e);
  ecs_status st = ecs_image_decode(r->cam.image, r->cam.image_len, (size_t)r->s->cfg.max_pixels,
                                   &img, &e);
  r->decode_ms = ms_since(t);
  srv_metrics_decode(r->s->metrics, r->decode_ms / 1e3);
  if (st != ECS_OK) {
    decode_error(r, &e);
    return;
  }
  srv_model_ref *m = srv_model_acquire(r->s);
  if (!m) {
    api_error ae;
    api_fail(&ae, 503, "model_not_ready",
             "the request is valid, but no model is loaded yet; retry later");
    r->retry_after = 5;
    srv_req_set_error(r, &ae);
  } else {
    run_model(r, m, img, worker_state ? *(int *)worker_state : 0);
  }
  srv_model_release(m);
  ecs_image_free(img);
}

static void cam_done(ecs_job *job, ecs_job_end end, void *worker_state) {
  srv_req *r = job->user;
  api_error ae;
  switch (end) {
  case ECS_JOB_DONE: break;
  case ECS_JOB_EXPIRED:
    api_fail(&ae, 503, "timeout", "the request waited past its deadline of %d ms",
             r->s->cfg.request_timeout_ms);
    srv_req_set_error(r, &ae);
    break;
  case ECS_JOB_GONE:
    api_fail(&ae, 503, "client_gone", "the client closed the connection");
    srv_req_set_error(r, &ae);
    break;
  case ECS_JOB_CANCELLED:
    api_fail(&ae, 503, "shutting_down", "the server is shutting down");
    srv_req_set_error(r, &ae);
    break;
  }
  r->phase = PHASE_READY;
  /* The last touch: from here the HTTP threads own r again. */
  MHD_resume_connection(r->conn);
  (void)worker_state;
}

enum MHD_Result srv_cam_start(srv_req *r) {
  srv *s = r->s;
  query_acc q = {0};
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_arg, &q);
  api_error ae;
  if (q.overflow) {
    api_fail(&ae, 400, "invalid_query", "more than %d query parameters", MAX_QUERY);
    return srv_respond_error(r, &ae);
  }
  api_http_in in = {
      .content_type = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type"),
      .body = r->body, .body_len = r->len, .query = q.kv, .n_query = q.n};
  api_cam_limits lim = {.max_labels = (size_t)s->cfg.max_labels,
                        .max_image = (size_t)s->cfg.max_body};
  if (!api_cam_request_parse(&in, &lim, &r->cam, &ae)) return srv_respond_error(r, &ae);

  /* The header alone tells the size: a decompression bomb never reaches a decoder. */
  int w = 0, h = 0;
  ecs_err e;
  ecs_err_clear(&e);
  if (ecs_image_probe(r->cam.image, r->cam.image_len, &w, &h, NULL, &e) != ECS_OK) {
    api_fail(&ae, 400, "invalid_image", "%s", e.msg);
    return srv_respond_error(r, &ae);
  }
  if ((uint64_t)w * (uint64_t)h > (uint64_t)s->cfg.max_pixels) {
    api_fail(&ae, 413, "too_many_pixels", "the image is %dx%d, more than the limit of %lld pixels",
             w, h, (long long)s->cfg.max_pixels);
    return srv_respond_error(r, &ae);
  }
  r->img_w = w;
  r->img_h = h;

  r->job = (ecs_job){.run = cam_run, .done = cam_done, .still_wanted = cam_still_wanted,
                     .deadline_ns = r->t0_ns + (uint64_t)s->cfg.request_timeout_ms * 1000000ull,
                     .priority = ECS_PRIO_HIGH, .user = r};
  /* Suspend before submitting, so a fast worker can never resume a connection that is not
   * suspended yet. */
  r->phase = PHASE_QUEUED;
  MHD_suspend_connection(r->conn);
  r->submit_ns = ecs_monotonic_ns();
  if (ecs_pool_submit(s->pool, &r->job, &e) != ECS_OK) {
    if (e.status == ECS_ERR_LIMIT)
      api_fail(&ae, 503, "queue_full", "the server is busy (%d requests queued); retry later",
               s->cfg.queue);
    else api_fail(&ae, 503, "shutting_down", "the server is shutting down");
    r->retry_after = 1;
    srv_req_set_error(r, &ae);
    r->phase = PHASE_READY;
    MHD_resume_connection(r->conn);
  }
  return MHD_YES;
}
