/* srv-cam.c - POST /cam: the api prepares on the HTTP thread, runs on a worker.
 *
 * The server's part is the connection: it hands the api the request's query arguments,
 * Content-Type and body (api_cam_prepare: parsed, validated and the image header read, all
 * cheap and bounded), suspends the connection and submits a job to the pool. The worker takes
 * a reference to the served model and lets the api decode, infer and render (api_cam_run); it
 * stores the answer and resumes. A job whose deadline passes in the queue, or whose client has
 * closed the connection, is dropped by the pool without running. The server calls no engine
 * function for /cam but the pool's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cam.h"
#include "srv-impl.h"

#define MAX_QUERY 16

/* What only POST /cam needs of a request (srv_req.cam), allocated once the route is known. */
struct srv_cam_state {
  api_cam_request req;
  ecs_job job;
  atomic_bool cancel;
  uint64_t submit_ns;
};

void srv_cam_free(srv_req *r) {
  if (!r->cam) return;
  api_cam_request_free(&r->cam->req);
  free(r->cam);
  r->cam = NULL;
}

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

/* Stores an answer for a suspended request (takes its body); the HTTP thread queues it after
 * the resume. */
static void store(srv_req *r, api_response *a) {
  r->status = a->status;
  r->resp_type = a->type;
  r->resp = a->body;
  r->resp_len = a->len;
  if (a->retry_after > 0) r->retry_after = a->retry_after;
  a->body = NULL;
}

void srv_req_set_error(srv_req *r, const api_error *e) {
  api_response a;
  api_response_error(&a, e);
  store(r, &a);
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
    atomic_store(&r->cam->cancel, true);
    return 0;
  }
  return 1;
}

static void cam_run(ecs_job *job, void *worker_state) {
  srv_req *r = job->user;
  srv *s = r->s;
  api_cam_call call = {.worker = worker_state ? *(int *)worker_state : 0,
                       .cancel = &r->cam->cancel,
                       .label_threshold = (float)s->cfg.label_threshold,
                       .label_topk = s->cfg.label_topk,
                       .t0_ns = r->t0_ns,
                       .queue_ms = (double)(ecs_monotonic_ns() - r->cam->submit_ns) / 1e6};
  srv_model_ref *m = srv_model_acquire(s);
  api_response a;
  api_cam_timings t;
  api_cam_run(&r->cam->req, m ? m->model : NULL, &call, &a, &t);
  srv_model_release(m);
  if (t.decode_ms >= 0) srv_metrics_decode(s->metrics, t.decode_ms / 1e3);
  if (t.infer_ms >= 0) srv_metrics_inference(s->metrics, t.infer_ms / 1e3);
  store(r, &a);
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
  if (!(r->cam = calloc(1, sizeof *r->cam)))
    return srv_fail(r, 503, "out_of_memory", "the server is short of memory");
  query_acc q = {0};
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_arg, &q);
  api_error ae;
  if (q.overflow) {
    api_fail(&ae, 400, "invalid_query", "more than %d query parameters", MAX_QUERY);
    return srv_respond_error(r, &ae);
  }
  api_http_in in = {.content_type =
                        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type"),
                    .body = r->body,
                    .body_len = r->len,
                    .query = q.kv,
                    .n_query = q.n};
  api_cam_limits lim = {.max_labels = (size_t)s->cfg.max_labels,
                        .max_image = (size_t)s->cfg.max_body,
                        .max_pixels = (size_t)s->cfg.max_pixels};
  if (!api_cam_prepare(&in, &lim, &r->cam->req, &ae)) return srv_respond_error(r, &ae);

  r->cam->job =
      (ecs_job){.run = cam_run,
                .done = cam_done,
                .still_wanted = cam_still_wanted,
                .deadline_ns = r->t0_ns + (uint64_t)s->cfg.request_timeout_ms * 1000000ull,
                .user = r};
  /* Suspend before submitting, so a fast worker can never resume a connection that is not
   * suspended yet. */
  r->phase = PHASE_QUEUED;
  MHD_suspend_connection(r->conn);
  r->cam->submit_ns = ecs_monotonic_ns();
  ecs_err e = {0};
  if (ecs_pool_submit(s->pool, &r->cam->job, &e) != ECS_OK) {
    if (e.status == ECS_ERR_LIMIT)
      api_fail(&ae, 503, "queue_full", "the server is busy (%d requests queued); retry later",
               s->cfg.queue);
    else
      api_fail(&ae, 503, "shutting_down", "the server is shutting down");
    srv_req_set_error(r, &ae);
    r->phase = PHASE_READY;
    MHD_resume_connection(r->conn);
  }
  return MHD_YES;
}
