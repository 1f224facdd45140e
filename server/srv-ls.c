/* srv-ls.c - the Label Studio ML backend under /labelstudio: health, setup, predict, webhook.
 *
 * Label Studio is pointed at http://HOST:PORT/labelstudio and calls GET /health, POST /setup
 * and POST /predict (all selected tasks in one call, answered within its 100 s limit), and
 * POSTs annotation events to /webhook. /predict reads the labeling config and the tasks on the
 * HTTP thread (a task whose image reference is refused is answered as such, with no request
 * made), suspends the connection and submits one pool job per task; each job fetches its
 * image from Label Studio (srv-fetch.c), runs the served model through the api
 * (api_cam_compute) and renders the task's prediction (api/labelstudio.c). The last job to
 * end assembles {"results": [...]}, one item per task in order, and resumes the connection;
 * a task that could not be done in time or failed is an item with "error" and no "result",
 * which Label Studio skips. The whole call holds one reference to the served model, so every
 * prediction carries the model_version /setup announced.
 *
 * With --ls-auth-file (user:password) every /labelstudio route but /webhook (srv-ls-loop.c:
 * Label Studio's webhooks carry no credentials) requires that HTTP basic auth, the way Label
 * Studio sends it when the backend is registered with it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "cam.h"
#include "labelstudio.h"
#include "srv-fetch.h"
#include "srv-impl.h"

/* Label Studio waits 100 s for /predict; a task not started 90 s after the call is left out. */
#define LS_PREDICT_BUDGET_MS 90000
#define LS_MAX_TASKS         1000

typedef struct ls_job {
  ecs_job job;
  struct srv_ls_state *st;
  int idx;
  api_ls_task task;
} ls_job;

struct srv_ls_state {
  srv_req *r;
  json_t *body;
  api_ls_config cfg;
  srv_model_ref *model;
  char version[160];
  int n;
  ls_job *jobs;
  json_t **results;
  atomic_int left;
  atomic_bool cancel;
};

void srv_ls_free(srv_req *r) {
  struct srv_ls_state *st = r->ls;
  if (!st) return;
  for (int i = 0; st->results && i < st->n; i++)
    json_decref(st->results[i]);
  free(st->results);
  free(st->jobs);
  srv_model_release(st->model);
  json_decref(st->body);
  free(st);
  r->ls = NULL;
}

ecs_status srv_ls_open(srv *s, ecs_err *err) {
  const srv_config *c = &s->cfg;
  return srv_fetch_new(c->ls_url, c->ls_token, (size_t)c->max_body, c->ls_fetch_timeout_ms,
                       &s->fetch, err);
}

/* Constant-time comparison of the Authorization header with the expected one. */
static bool same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = (unsigned char)(la != lb);
  for (size_t i = 0; i < lb; i++)
    d |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
  return d == 0 && la == lb;
}

/* With --ls-auth-file: whether the request carries that basic auth; else the 401 is queued. */
bool srv_ls_authorised(srv_req *r, enum MHD_Result *ret) {
  const char *want = r->s->cfg.ls_auth;
  if (!want[0]) return true;
  const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
  bool ok = false;
  if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
    uint8_t *dec = NULL;
    size_t n = 0;
    if (api_base64_decode(auth + 6, strlen(auth + 6), 1024, &dec, &n, NULL)) {
      char *got = calloc(1, n + 1);
      if (got) {
        memcpy(got, dec, n);
        ok = strlen(got) == n && same_secret(got, want);
      }
      free(got);
    }
    free(dec);
  }
  if (!ok) *ret = srv_fail(r, 401, "unauthorized", "HTTP basic auth is required on /labelstudio");
  return ok;
}

enum MHD_Result srv_ls_health(srv_req *r) {
  enum MHD_Result ret;
  if (!srv_ls_authorised(r, &ret)) return ret;
  srv_model_ref *m = srv_model_acquire(r->s);
  json_t *j = json_pack("{s:s, s:s, s:b}", "status", m ? "UP" : "DOWN", "model_class", "ecsnet",
                        "ready", m != NULL);
  srv_model_release(m);
  return srv_answer_json(r, 200, j);
}

json_t *srv_ls_parse_body(srv_req *r, api_error *err) {
  json_error_t je;
  json_t *j = r->len ? json_loadb((const char *)r->body, r->len, 0, &je) : NULL;
  if (!json_is_object(j)) {
    json_decref(j);
    api_fail(err, 400, "invalid_json", "the body must be a JSON object");
    return NULL;
  }
  return j;
}

enum MHD_Result srv_ls_setup(srv_req *r) {
  enum MHD_Result ret;
  if (!srv_ls_authorised(r, &ret)) return ret;
  api_error ae;
  json_t *body = srv_ls_parse_body(r, &ae);
  if (!body) return srv_respond_error(r, &ae);
  json_decref(body); /* hostname and access_token are not used: srv-fetch.h says why */
  srv_model_ref *m = srv_model_acquire(r->s);
  if (!m) return srv_fail(r, 503, "model_not_ready", "no model is loaded yet");
  char version[160];
  api_ls_model_version(&m->info, version, sizeof version);
  srv_model_release(m);
  return srv_answer_json(r, 200, json_pack("{s:s}", "model_version", version));
}

static json_t *error_item(json_int_t task, const api_error *e) {
  return json_pack("{s:I, s:{s:s, s:s}}", "task", task, "error", "code", e->code, "message",
                   e->message);
}

/* The answer, once every task has ended (the last one calls it). */
static void finish(struct srv_ls_state *st) {
  srv_req *r = st->r;
  json_t *results = json_array();
  for (int i = 0; results && i < st->n; i++) {
    json_array_append(results, st->results[i] ? st->results[i] : json_null());
  }
  json_t *j =
      results ? json_pack("{s:o, s:s}", "results", results, "model_version", st->version) : NULL;
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (text) {
    r->status = 200;
    r->resp_type = "application/json";
    r->resp = text;
    r->resp_len = strlen(text);
  } else {
    api_error ae;
    api_fail(&ae, 503, "out_of_memory", "the server is short of memory");
    srv_req_set_error(r, &ae);
  }
  r->phase = PHASE_READY;
  MHD_resume_connection(r->conn);
}

static void end_one(struct srv_ls_state *st) {
  if (atomic_fetch_sub(&st->left, 1) == 1) finish(st);
}

/* Builds the /cam request of a task: its labels by id (or none: predicted), the mask and
 * scores. Ids, not names: a class's own name can be another class's synonym too (ImageNet's
 * "crane"), and names would be resolved a second time. */
static bool task_request(const srv *s, const api_ls_task *t, api_cam_request *req, api_error *err) {
  char labels[API_LABELS_HARD_MAX * 8] = "";
  for (int i = 0, o = 0; i < t->n_labels; i++)
    o += snprintf(labels + o, sizeof labels - (size_t)o, "%s%d", i ? "," : "", t->labels[i].id);
  api_kv kv[2] = {{"outputs", "mask,scores"}, {"labels", labels}};
  api_cam_limits lim = {.max_labels = API_LABELS_HARD_MAX,
                        .max_image = (size_t)s->cfg.max_body,
                        .max_pixels = (size_t)s->cfg.max_pixels};
  return api_cam_params_parse(kv, labels[0] ? 2 : 1, &lim, req, err);
}

static json_t *run_task(ls_job *lj, int worker) {
  struct srv_ls_state *st = lj->st;
  srv *s = st->r->s;
  api_error ae;
  uint8_t *img_bytes = NULL;
  size_t n = 0;
  if (!srv_fetch_image(s->fetch, lj->task.image, &img_bytes, &n, &ae))
    return error_item(lj->task.id, &ae);
  api_cam_request req;
  if (!task_request(s, &lj->task, &req, &ae)) {
    free(img_bytes);
    return error_item(lj->task.id, &ae);
  }
  req.image = req.image_owned = img_bytes;
  req.image_len = n;
  api_cam_call call = {.worker = worker,
                       .cancel = &st->cancel,
                       .label_threshold = (float)s->cfg.label_threshold,
                       .label_topk = s->cfg.label_topk,
                       .t0_ns = st->r->t0_ns};
  ecs_image *img = NULL;
  ecs_cam_result *res = NULL;
  api_cam_timings t;
  json_t *out = NULL;
  if (api_cam_compute(&req, st->model->model, &call, &img, &res, &t, &ae)) {
    out = api_ls_prediction(&st->cfg, &st->model->info, res, st->version);
    if (!out) api_fail(&ae, 503, "out_of_memory", "the server is short of memory");
  }
  if (t.decode_ms >= 0) srv_metrics_decode(s->metrics, t.decode_ms / 1e3);
  if (t.infer_ms >= 0) srv_metrics_inference(s->metrics, t.infer_ms / 1e3);
  ecs_cam_result_free(res);
  ecs_image_free(img);
  api_cam_request_free(&req);
  return out ? out : error_item(lj->task.id, &ae);
}

static void job_run(ecs_job *job, void *worker_state) {
  ls_job *lj = (ls_job *)job;
  lj->st->results[lj->idx] = run_task(lj, worker_state ? *(int *)worker_state : 0);
}

static void job_done(ecs_job *job, ecs_job_end end, void *worker_state) {
  ls_job *lj = (ls_job *)job;
  api_error ae;
  if (end != ECS_JOB_DONE) {
    if (end == ECS_JOB_EXPIRED)
      api_fail(&ae, 503, "timeout", "not started within the %d s Label Studio allows a call",
               LS_PREDICT_BUDGET_MS / 1000);
    else
      api_fail(&ae, 503, "shutting_down", "the server is shutting down");
    lj->st->results[lj->idx] = error_item(lj->task.id, &ae);
  }
  end_one(lj->st);
  (void)worker_state;
}

/* Reads the call: the config, the tasks (refusals answered at once), the model. */
static bool ls_prepare(srv_req *r, struct srv_ls_state *st, api_error *ae) {
  if (!(st->body = srv_ls_parse_body(r, ae))) return false;
  const json_t *tasks = json_object_get(st->body, "tasks");
  const char *config = json_string_value(json_object_get(st->body, "label_config"));
  if (!json_is_array(tasks) || json_array_size(tasks) == 0 || json_array_size(tasks) > LS_MAX_TASKS)
    return api_fail(ae, 422, "invalid_value", "'tasks' must be a list of 1 to %d tasks",
                    LS_MAX_TASKS);
  if (!config) return api_fail(ae, 422, "invalid_value", "'label_config' must be a string");
  if (!api_ls_parse_config(config, &st->cfg, ae)) return false;
  if (!(st->model = srv_model_acquire(r->s)))
    return api_fail(ae, 503, "model_not_ready", "no model is loaded yet");
  api_ls_model_version(&st->model->info, st->version, sizeof st->version);
  st->n = (int)json_array_size(tasks);
  st->jobs = calloc((size_t)st->n, sizeof *st->jobs);
  st->results = calloc((size_t)st->n, sizeof *st->results);
  if (!st->jobs || !st->results)
    return api_fail(ae, 503, "out_of_memory", "the server is short of memory");
  return true;
}

enum MHD_Result srv_ls_predict(srv_req *r) {
  enum MHD_Result ret;
  if (!srv_ls_authorised(r, &ret)) return ret;
  struct srv_ls_state *st = calloc(1, sizeof *st);
  if (!st) return srv_fail(r, 503, "out_of_memory", "the server is short of memory");
  r->ls = st;
  st->r = r;
  api_error ae;
  if (!ls_prepare(r, st, &ae)) return srv_respond_error(r, &ae);
  uint64_t deadline = r->t0_ns + (uint64_t)LS_PREDICT_BUDGET_MS * 1000000ull;
  atomic_init(&st->left, st->n + 1); /* + 1: held until every job is submitted */
  r->phase = PHASE_QUEUED;
  MHD_suspend_connection(r->conn);
  for (int i = 0; i < st->n; i++) {
    ls_job *lj = &st->jobs[i];
    lj->st = st;
    lj->idx = i;
    const json_t *task = json_array_get(json_object_get(st->body, "tasks"), (size_t)i);
    ecs_err e = {0};
    if (!api_ls_read_task(task, &st->cfg, &st->model->info, &lj->task, &ae) ||
        !srv_fetch_allowed(r->s->fetch, lj->task.image, &ae)) {
      st->results[i] = error_item(lj->task.id, &ae);
      end_one(st);
      continue;
    }
    lj->job = (ecs_job){.run = job_run, .done = job_done, .deadline_ns = deadline, .user = r};
    if (ecs_pool_submit(r->s->pool, &lj->job, &e) != ECS_OK) {
      if (e.status == ECS_ERR_LIMIT)
        api_fail(&ae, 503, "queue_full", "the server's queue is full (%d)", r->s->cfg.queue);
      else
        api_fail(&ae, 503, "shutting_down", "the server is shutting down");
      st->results[i] = error_item(lj->task.id, &ae);
      end_one(st);
    }
  }
  end_one(st);
  return MHD_YES;
}
