/* srv.c - the HTTP daemon: libmicrohttpd set-up, request lifecycle, dispatch, replies, small
 * routes.
 *
 * libmicrohttpd runs in thread-pool mode (--http-threads polling threads, each owning a share
 * of the connections). Those threads only parse and answer; POST /cam work goes to the
 * engine's worker pool while the connection is suspended (MHD_ALLOW_SUSPEND_RESUME), so a
 * burst of inference never blocks /health/live or /metrics. The pool's bounded queue is the
 * back-pressure: when it is full the request is answered 503 + Retry-After at once.
 *
 * Which handler answers is the route table's business (srv-routes.h): route() matches the
 * request there, checks the admin token, answers 404 and 405, and hands the request to the
 * row's handler, at once or once the row's body has arrived. Every reply goes through
 * srv_respond (common headers), every error through srv_respond_error (the one JSON shape). */
#include "srv-impl.h"

#include <jansson.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "ecs/options.h"
#include "openapi.h"
#include "models-response.h"
#include "registry.h"
#include "srv-fetch.h"
#include "srv-jobs.h"

/* ---- the model slot ------------------------------------------------------------------------ */

srv_model_ref *srv_model_acquire(srv *s) {
  pthread_mutex_lock(&s->model_mu);
  srv_model_ref *m = s->model;
  if (m) atomic_fetch_add(&m->refs, 1);
  pthread_mutex_unlock(&s->model_mu);
  return m;
}

void srv_model_release(srv_model_ref *m) {
  if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
    api_model_free(m->model);
    free(m);
    malloc_trim(0); /* a swapped-out model's weights and arenas go back to the system */
  }
}

/* What opening a model takes from the settings: which one (a path, a registry version, or
 * neither: the registry decides), the device, the workers' threads, the shipped model and the
 * engine options of every backend. */
static api_model_opts model_opts(const srv *s, const char *path, const char *name, int version) {
  const char *shipped = s->cfg.shipped_model;
  return (api_model_opts){.path = path,
                          .name = name,
                          .version = version,
                          .data_dir = s->cfg.data_dir,
                          .device = s->cfg.device,
                          .n_workers = s->cfg.workers,
                          .threads = s->cfg.threads,
                          .shipped_model = strcmp(shipped, "auto") == 0 ? NULL : shipped,
                          .engine = s->cfg.engine};
}

/* Opens a model as a new reference for the slot. */
static ecs_status open_ref(const api_model_opts *o, srv_model_ref **out, ecs_err *err) {
  api_model *m = NULL;
  ecs_status st = api_model_open(o, &m, err);
  if (st != ECS_OK) return st;
  srv_model_ref *ref = calloc(1, sizeof *ref);
  if (!ref) {
    api_model_free(m);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  ref->model = m;
  ref->info = *api_model_describe(m);
  atomic_init(&ref->refs, 1);
  *out = ref;
  return ECS_OK;
}

ecs_status srv_model_swap(srv *s, const char *name, int version, ecs_err *err) {
  api_model_opts o = model_opts(s, NULL, name, version);
  srv_model_ref *ref = NULL;
  /* loaded before the lock is taken: requests keep flowing to the old model meanwhile */
  ecs_status st = open_ref(&o, &ref, err);
  if (st != ECS_OK) return st;
  pthread_mutex_lock(&s->model_mu);
  srv_model_ref *old = s->model;
  s->model = ref;
  pthread_mutex_unlock(&s->model_mu);
  srv_model_release(old); /* the slot's reference; in-flight requests hold their own */
  srv_log_event(s, "info", "serving model %s version %d", name, version);
  return ECS_OK;
}

/* ---- replies --------------------------------------------------------------------------------- */

enum MHD_Result srv_respond(srv_req *r, unsigned status, const char *type, char *body, size_t len,
                            bool copy) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      len, body ? body : (char *)"",
      body ? (copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_MUST_FREE) : MHD_RESPMEM_PERSISTENT);
  if (!resp) {
    if (!copy) free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "X-Request-Id", r->id);
  if (type) MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  /* No answer is ever sniffed into another type, framed, or sent with a Referer onwards. */
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Content-Security-Policy", r->csp ? r->csp : SRV_CSP_API);
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  const srv_config *c = &r->s->cfg;
  if (c->cors_origin[0]) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", c->cors_origin);
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
    if (strcmp(c->cors_origin, "*") != 0) MHD_add_response_header(resp, "Vary", "Origin");
  }
  if (r->retry_after > 0) {
    char ra[16];
    snprintf(ra, sizeof ra, "%d", r->retry_after);
    MHD_add_response_header(resp, "Retry-After", ra);
  }
  if (r->allow[0]) MHD_add_response_header(resp, "Allow", r->allow);
  if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"ecsnet\"");
  r->status = status;
  r->resp_len = len;
  r->phase = PHASE_ANSWERED;
  enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

enum MHD_Result srv_respond_json(srv_req *r, unsigned status, const char *json_text) {
  return srv_respond(r, status, "application/json", (char *)json_text, strlen(json_text), true);
}

enum MHD_Result srv_respond_error(srv_req *r, const api_error *e) {
  char *body = api_error_json(e);
  if (!body) return MHD_NO;
  if (e->status == 503) r->retry_after = api_retry_after(e->code);
  return srv_respond(r, e->status, "application/json", body, strlen(body), false);
}

enum MHD_Result srv_fail(srv_req *r, unsigned status, const char *code, const char *fmt, ...) {
  api_error e = {.status = status, .code = code};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  return srv_respond_error(r, &e);
}

enum MHD_Result srv_answer_json(srv_req *r, unsigned status, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s) return srv_fail(r, 503, "out_of_memory", "the server is short of memory");
  return srv_respond(r, status, "application/json", s, strlen(s), false);
}

bool srv_req_param(const srv_req *r, int i, char *out, size_t n) {
  if (i < 0 || i >= r->n_params || r->params[i].len >= n) return false;
  memcpy(out, r->path + r->params[i].off, r->params[i].len);
  out[r->params[i].len] = '\0';
  return true;
}

/* ---- request ids ----------------------------------------------------------------------------- */

/* A client's id is echoed if it is short and plain (it lands in logs and headers). */
static bool id_acceptable(const char *v) {
  size_t n = strlen(v);
  if (n == 0 || n > 64) return false;
  for (const char *p = v; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          strchr("-_.:/+=", *p)))
      return false;
  return true;
}

static void new_id(char *out, size_t n) {
  uint8_t b[16];
  if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
    static atomic_uint_fast64_t counter;
    uint64_t x = ecs_monotonic_ns() ^ ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&counter, 1);
    for (int i = 0; i < 16; i++)
      b[i] = (uint8_t)(x >> ((i % 8) * 8)) ^ (uint8_t)(i * 151);
  }
  static const char hex[] = "0123456789abcdef";
  size_t k = 0;
  for (int i = 0; i < 16 && k + 2 < n; i++) {
    out[k++] = hex[b[i] >> 4];
    out[k++] = hex[b[i] & 15];
  }
  out[k] = '\0';
}

/* ---- the small routes ------------------------------------------------------------------------ */

enum MHD_Result srv_get_health(srv_req *r) {
  return srv_respond_json(r, 200, "{\"status\":\"UP\"}");
}

static json_t *model_json(const srv_model_ref *m) {
  json_t *classes = json_array();
  for (int k = 0; k < m->info.n_classes; k++)
    json_array_append_new(classes, json_string(m->info.class_names[k]));
  return json_pack("{s:s, s:i, s:s, s:o, s:b}", "name", m->info.name, "version", m->info.version,
                   "backbone", m->info.backbone ? m->info.backbone : "", "classes", classes,
                   "active", 1);
}

enum MHD_Result srv_get_ready(srv_req *r) {
  srv_model_ref *m = srv_model_acquire(r->s);
  enum MHD_Result ret;
  if (m && !atomic_load(&r->s->stopping)) {
    ret = srv_answer_json(r, 200, json_pack("{s:s, s:o}", "status", "UP", "model", model_json(m)));
  } else {
    r->retry_after = api_retry_after("not_ready");
    ret = srv_respond_json(r, 503,
                           m ? "{\"status\":\"DOWN\",\"reason\":\"shutting down\"}"
                             : "{\"status\":\"DOWN\",\"reason\":\"no model is loaded\"}");
  }
  srv_model_release(m);
  return ret;
}

enum MHD_Result srv_get_metrics(srv_req *r) {
  srv *s = r->s;
  ecs_pool_stats st;
  ecs_pool_get_stats(s->pool, &st);
  srv_model_ref *m = srv_model_acquire(s);
  srv_gauges g = {.queue_depth = st.queued,
                  .queue_capacity = st.queue_capacity,
                  .running = st.running,
                  .workers = st.n_workers,
                  .in_flight = atomic_load(&s->in_flight),
                  .rejected = st.rejected,
                  .expired = st.expired,
                  .gone = st.gone,
                  .model_name = m ? m->info.name : NULL,
                  .model_version = m ? m->info.version : 0,
                  .uptime_s = (double)(ecs_monotonic_ns() - s->start_ns) / 1e9};
  size_t len = 0;
  char *text = srv_metrics_render(s->metrics, &g, &len);
  srv_model_release(m);
  char *conns = text ? srv_conns_metrics(s->conns) : NULL;
  if (conns) {
    size_t cl = strlen(conns);
    char *both = realloc(text, len + cl + 1);
    if (both) {
      memcpy(both + len, conns, cl + 1);
      text = both;
      len += cl;
    }
    free(conns);
  }
  char *jobs = text && s->jobs ? srv_jobs_metrics(s->jobs) : NULL;
  if (jobs) {
    size_t jl = strlen(jobs);
    char *both = realloc(text, len + jl + 1);
    if (both) {
      memcpy(both + len, jobs, jl + 1);
      text = both;
      len += jl;
    }
    free(jobs);
  }
  if (!text) return srv_fail(r, 503, "out_of_memory", "the server is short of memory");
  return srv_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, false);
}

/* The registry on disk, so versions added by another replica show up too. */
enum MHD_Result srv_get_models(srv_req *r) {
  char name[API_REG_NAME_MAX + 1];
  bool one = r->route == SRV_ROUTE_MODEL;
  if (one && !srv_req_param(r, 0, name, sizeof name))
    return srv_fail(r, 404, "model_not_found", "no model of that name");
  srv_model_ref *m = srv_model_acquire(r->s);
  api_error e;
  char *text = api_models_json(r->s->cfg.data_dir, m ? &m->info : NULL, one ? name : NULL, &e);
  srv_model_release(m);
  if (text) return srv_respond(r, 200, "application/json", text, strlen(text), false);
  return srv_respond_error(r, &e);
}

enum MHD_Result srv_get_openapi(srv_req *r) {
  return srv_respond(r, 200, "application/json", (char *)api_openapi_json, api_openapi_json_len,
                     true);
}

/* ---- routing --------------------------------------------------------------------------------- */

/* Constant-time comparison, so the token cannot be guessed byte by byte from timings. */
static bool token_equal(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = (unsigned char)(la != lb);
  for (size_t i = 0; i < lb; i++)
    d |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
  return d == 0 && la == lb;
}

/* The bearer token of /admin; MHD_YES when it is right, else the answer was queued. */
static bool admin_authorised(srv_req *r, enum MHD_Result *ret) {
  const char *token = r->s->cfg.admin_token;
  const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
  if (!token[0])
    *ret = srv_fail(r, 403, "admin_disabled",
                    "admin is not enabled: start the server with --admin-token-file or "
                    "ECSNET_ADMIN_TOKEN");
  else if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
    *ret = srv_fail(r, 401, "unauthorized", "a bearer token is required");
  else if (!token_equal(auth + 7, token))
    *ret = srv_fail(r, 401, "unauthorized", "the token is not valid");
  else if (!r->s->jobs)
    *ret = srv_fail(r, 503, "admin_unavailable", "the job store is not open");
  else
    return true;
  return false;
}

static enum MHD_Result answer_options(srv_req *r, const char *allow) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "X-Request-Id", r->id);
  MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->s->cfg.cors_origin);
  MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
  MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                          "Content-Type, Authorization, X-Request-Id");
  MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
  r->status = 204;
  r->phase = PHASE_ANSWERED;
  enum MHD_Result ret = MHD_queue_response(r->conn, 204, resp);
  MHD_destroy_response(resp);
  return ret;
}

static size_t body_limit(const srv *s, srv_body kind) {
  size_t max = (size_t)s->cfg.max_body;
  return kind == SRV_BODY_JSON && max > SRV_JSON_BODY_MAX ? SRV_JSON_BODY_MAX : max;
}

static enum MHD_Result too_large(srv_req *r) {
  return srv_fail(r, 413, "payload_too_large", "the body exceeds the limit of %zu bytes", r->limit);
}

/* The first callback of a request: the table decides. Under /admin the token is checked before
 * a 404 or 405, so a client without it learns nothing about the routes there. */
static enum MHD_Result route(srv_req *r, const char *url) {
  srv_match m;
  srv_route_match(r->method, url, &m);
  r->route = m.path_known ? m.path_route : SRV_ROUTE_OTHER; /* the label of a 401, 404, 405 */
  bool admin_area = strcmp(url, "/admin") == 0 || strncmp(url, "/admin/", 7) == 0;
  enum MHD_Result ret;
  if ((m.auth || (admin_area && !m.path_known)) && !admin_authorised(r, &ret)) return ret;
  if (!m.path_known || strlen(url) >= sizeof r->path)
    return srv_fail(r, 404, "not_found", "no such route");
  if (m.route == SRV_ROUTE_OTHER) {
    bool options = strcmp(r->method, "OPTIONS") == 0;
    if (options && strstr(m.allow, "OPTIONS") && r->s->cfg.cors_origin[0])
      return answer_options(r, m.allow);
    snprintf(r->allow, sizeof r->allow, "%s", m.allow);
    if (options)
      return srv_fail(r, 405, "method_not_allowed", "OPTIONS is only answered with CORS enabled");
    return srv_fail(r, 405, "method_not_allowed", "method not allowed on this route");
  }
  r->route = m.route;
  memcpy(r->params, m.params, sizeof r->params);
  r->n_params = m.n_params;
  size_t n;
  const srv_route_def *d = &srv_route_table(&n)[m.route];
  if (d->body == SRV_BODY_NONE) return d->handler(r);
  r->limit = body_limit(r->s, d->body);
  r->receiving = true;
  atomic_fetch_add(&r->s->receiving, 1);
  /* A declared length beyond the limit is refused before a byte of it is read. */
  const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
  if (cl && strtoull(cl, NULL, 10) > (unsigned long long)r->limit) return too_large(r);
  return MHD_YES;
}

/* ---- the libmicrohttpd callbacks ------------------------------------------------------------- */

static enum MHD_Result count_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
  size_t *n = cls;
  *n += strlen(key) + (value ? strlen(value) : 0) + 4; /* "key: value\r\n" or "&key=value" */
  (void)kind;
  return MHD_YES;
}

/* The request line and header fields together, as they came (near enough: the query's bytes
 * are counted decoded). */
static size_t header_bytes(struct MHD_Connection *conn, const char *url, const char *method) {
  size_t n = strlen(method) + strlen(url) + 12;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, count_bytes, &n);
  MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, count_bytes, &n);
  return n;
}

/* The headers are in: their size, the proxied client's share, then the route table. */
static enum MHD_Result first_call(srv_req *r, srv_conn *c, const char *url) {
  srv *s = r->s;
  size_t hb = header_bytes(r->conn, url, r->method);
  if (hb > (size_t)s->cfg.max_header_bytes)
    return srv_fail(r, 431, "headers_too_large",
                    "the request line and headers take %zu bytes; the limit is %d", hb,
                    s->cfg.max_header_bytes);
  if (srv_conn_proxied(c)) {
    if (!srv_conns_client_begin(s->conns, c, r->client_key)) {
      r->retry_after = 1;
      return srv_fail(r, 429, "too_many_connections",
                      "too many requests in progress from this address "
                      "(--max-connections-per-ip)");
    }
    r->client_counted = true;
  }
  return route(r, url);
}

static srv_req *req_new(srv *s, struct MHD_Connection *conn, const char *url, const char *method) {
  srv_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->s = s;
  r->conn = conn;
  r->t0_ns = ecs_monotonic_ns();
  r->route = SRV_ROUTE_OTHER;
  snprintf(r->method, sizeof r->method, "%s", method);
  snprintf(r->path, sizeof r->path, "%s", url);
  const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
  if (rid && id_acceptable(rid))
    snprintf(r->id, sizeof r->id, "%s", rid);
  else
    new_id(r->id, sizeof r->id);
  const char *xff = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For");
  srv_conn_client(&s->cfg, srv_conn_of(conn), xff, r->remote, r->client_key);
  atomic_fetch_add(&s->in_flight, 1);
  return r;
}

static bool append_body(srv_req *r, const char *data, size_t n) {
  size_t max = r->limit;
  if (r->discarded || r->len + n > max) {
    r->discarded += n;
    return true;
  }
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 65536;
    while (cap < r->len + n)
      cap *= 2;
    if (cap > max) cap = max;
    uint8_t *p = realloc(r->body, cap);
    if (!p) return false;
    r->body = p;
    r->cap = cap;
  }
  memcpy(r->body + r->len, data, n);
  r->len += n;
  return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
  srv *s = cls;
  srv_req *r = *state;
  if (!r) {
    srv_conn *c = srv_conn_of(conn);
    if (!c || srv_conn_timed_out(s->conns, c)) return MHD_NO; /* refused or reaped */
    r = req_new(s, conn, url, method);
    if (!r) return MHD_NO;
    *state = r;
    enum MHD_Result ret = first_call(r, c, url);
    srv_conn_set_phase(s->conns, c, r->receiving ? SRV_CONN_BODY : SRV_CONN_BUSY);
    return ret;
  }
  switch (r->phase) {
  case PHASE_RECEIVING:
    if (*upload_size) {
      if (!append_body(r, upload, *upload_size)) return MHD_NO;
      /* A chunked body far past the limit is not worth reading to the end. */
      if (r->discarded > (uint64_t)r->limit * 4) return MHD_NO;
      *upload_size = 0;
      return MHD_YES;
    }
    srv_req_received(r);
    srv_conn_set_phase(s->conns, srv_conn_of(conn), SRV_CONN_BUSY);
    if (r->discarded) return too_large(r);
    size_t n;
    return srv_route_table(&n)[r->route].handler(r);
  case PHASE_QUEUED:
    /* Resumed spuriously (MHD may call again on resume before the worker stored anything). */
    return MHD_YES;
  case PHASE_READY: {
    char *body = r->resp;
    r->resp = NULL;
    return srv_respond(r, r->status, r->resp_type, body, r->resp_len, false);
  }
  case PHASE_ANSWERED:
    if (upload_size) *upload_size = 0; /* an early answer: drain what the client still sends */
    return MHD_YES;
  }
  (void)version;
  return MHD_NO;
}

void srv_req_received(srv_req *r) {
  if (r->receiving) {
    r->receiving = false;
    atomic_fetch_sub(&r->s->receiving, 1);
  }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode toe) {
  srv *s = cls;
  srv_req *r = *state;
  if (!r) return;
  srv_req_received(r); /* a client that left mid-upload */
  double secs = (double)(ecs_monotonic_ns() - r->t0_ns) / 1e9;
  srv_conn *c = srv_conn_of(conn);
  if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->phase != PHASE_ANSWERED)
    r->status = srv_conn_timed_out(s->conns, c) ? 408 : 499;
  if (r->client_counted) srv_conns_client_end(s->conns, r->client_key);
  srv_conn_set_phase(s->conns, c, SRV_CONN_HEADERS); /* the next request's headers, or idle */
  srv_metrics_request(s->metrics, r->route, r->status, secs);
  srv_log_access(s, r, secs);
  srv_cam_free(r);
  srv_ls_free(r);
  free(r->body);
  free(r->resp);
  free(r);
  *state = NULL;
  atomic_fetch_sub(&s->in_flight, 1);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

/* The engine options set away from their defaults, as one event line (none: no line). */
static void log_engine_options(srv *s) {
  size_t n;
  const ecs_backend_option *o = ecs_backend_options(&n);
  ecs_backend_params def = {0};
  char line[512] = "", v[32], d[32];
  size_t len = 0;
  for (size_t i = 0; i < n && len < sizeof line; i++) {
    ecs_backend_option_get(&s->cfg.engine, &o[i], v, sizeof v);
    if (strcmp(v, ecs_backend_option_get(&def, &o[i], d, sizeof d)) != 0)
      len +=
          (size_t)snprintf(line + len, sizeof line - len, "%s%s %s", len ? ", " : "", o[i].name, v);
  }
  if (len) srv_log_event(s, "info", "engine options: %s", line);
}

static ecs_status load_model(srv *s, ecs_err *err) {
  api_model_opts o = model_opts(s, s->cfg.model[0] ? s->cfg.model : NULL, NULL, 0);
  char note[512] = "";
  o.note = note;
  o.note_n = sizeof note;
  ecs_err e = {0};
  ecs_status st = open_ref(&o, &s->model, &e);
  if (note[0]) srv_log_event(s, "info", "%s", note);
  if (st == ECS_OK) {
    srv_log_event(s, "info", "serving model %s version %d on %s", s->model->info.name,
                  s->model->info.version, s->model->info.device ? s->model->info.device : "?");
    return ECS_OK;
  }
  /* An explicit --model that cannot be served, or a device that cannot be used, is a failed
   * start; otherwise the server runs without a model and says so on /health/ready. */
  if (o.path || st == ECS_ERR_UNSUPPORTED) return ecs_err_set(err, st, "%s", e.msg);
  srv_log_event(s, "warn", "no model loaded: %s; /health/ready answers 503", e.msg);
  return ECS_OK;
}

/* Each worker knows its index, which the model uses to pick its per-worker stream. */
static ecs_status worker_init(int index, void *user, void **state, ecs_err *err) {
  int *p = malloc(sizeof *p);
  if (!p) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  *p = index;
  *state = p;
  (void)user;
  return ECS_OK;
}

static void worker_free(void *state, void *user) {
  free(state);
  (void)user;
}

ecs_status srv_new(const srv_config *cfg, FILE *log, srv **out, ecs_err *err) {
  *out = NULL;
  srv *s = calloc(1, sizeof *s);
  if (!s) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  s->cfg = *cfg;
  s->log = log;
  s->start_ns = ecs_monotonic_ns();
  pthread_mutex_init(&s->log_mu, NULL);
  pthread_mutex_init(&s->model_mu, NULL);
  s->metrics = srv_metrics_new();
  if (!s->metrics) {
    srv_free(s);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  log_engine_options(s);
  ecs_status st = load_model(s, err);
  if (st != ECS_OK) {
    srv_free(s);
    return st;
  }
  ecs_pool_opts po = {.n_workers = cfg->workers,
                      .queue_capacity = cfg->queue,
                      .worker_init = worker_init,
                      .worker_free = worker_free};
  s->pool = ecs_pool_new_opts(&po, err);
  if (!s->pool) {
    srv_free(s);
    return err ? err->status : ECS_ERR_INVALID;
  }

  if ((st = srv_admin_open_jobs(s, err)) != ECS_OK || (st = srv_ls_open(s, err)) != ECS_OK) {
    srv_free(s);
    return st;
  }

  if ((st = srv_conns_new(&s->cfg, &s->conns, err)) != ECS_OK) {
    srv_free(s);
    return st;
  }

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  /* poll, not epoll: with epoll, libmicrohttpd 0.9.75 misses the end of a connection whose
   * client closed it in the middle of an upload, and holds it until its idle timeout */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG * 0;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  const char *host = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1" : cfg->host;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)cfg->port);
    sl = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)cfg->port);
    sl = sizeof *a6;
    flags |= MHD_USE_IPv6;
  } else {
    srv_free(s);
    return ecs_err_set(err, ECS_ERR_INVALID, "--listen: '%s' is not an IPv4 or IPv6 address",
                       cfg->host);
  }
  (void)sl;
  unsigned timeout_s = (unsigned)(cfg->request_timeout_ms + 999) / 1000;
  /* Room for --max-header-bytes of headers (answered 431 by first_call) and the read buffer;
   * far larger headers are refused by libmicrohttpd itself. */
  size_t conn_memory = (size_t)cfg->max_header_bytes * 2 + 32768;
  s->daemon = MHD_start_daemon(
      flags, (uint16_t)cfg->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &ss,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
      MHD_OPTION_NOTIFY_CONNECTION, srv_conns_notify, s->conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      conn_memory, MHD_OPTION_END);
  if (!s->daemon) {
    srv_free(s);
    return ecs_err_set(err, ECS_ERR_IO, "cannot listen on %s (address in use or not permitted)",
                       cfg->listen);
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : cfg->port;
  srv_log_event(s, "info", "listening on %s port %d (%d workers, queue %d)", host, s->port,
                cfg->workers, cfg->queue);
  if ((st = srv_watch_start(s, err)) != ECS_OK) {
    srv_free(s);
    return st;
  }
  *out = s;
  return ECS_OK;
}

int srv_port(const srv *s) {
  return s->port;
}

void srv_shutdown(srv *s, int timeout_ms) {
  if (!s || !s->daemon) return;
  atomic_store(&s->stopping, true);
  srv_watch_stop(s);
  /* Stop accepting: the listening socket is closed, open connections carry on. */
  MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
  if (lfd != MHD_INVALID_SOCKET) close(lfd);
  srv_log_event(s, "info", "shutting down: finishing %d requests", atomic_load(&s->in_flight));
  uint64_t until = ecs_monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
  struct timespec tick = {0, 5 * 1000000};
  /* Uploads under way are part of the in-flight work: let them reach the queue... */
  while (atomic_load(&s->receiving) > 0 && ecs_monotonic_ns() < until)
    nanosleep(&tick, NULL);
  /* ...then queued and running jobs finish and resume their connections... */
  ecs_pool_drain(s->pool);
  /* ...and their answers go out before the daemon stops. */
  while (atomic_load(&s->in_flight) > 0 && ecs_monotonic_ns() < until)
    nanosleep(&tick, NULL);
  MHD_stop_daemon(s->daemon);
  s->daemon = NULL;
  srv_log_event(s, "info", "stopped");
}

void srv_free(srv *s) {
  if (!s) return;
  srv_watch_stop(s);
  if (s->daemon) {
    /* Suspended connections must be resumed before the daemon stops: finish the jobs. */
    if (s->pool) ecs_pool_drain(s->pool);
    MHD_stop_daemon(s->daemon);
  }
  atomic_store(&s->stopping, true);
  srv_ls_loop_drain();      /* its threads use the job store, the model and the fetcher */
  srv_conns_free(s->conns); /* the daemon has stopped: no connection is left */
  srv_jobs_free(s->jobs);   /* a running job stops at its next op and stays resumable */
  srv_fetch_free(s->fetch);
  ecs_pool_free(s->pool);
  srv_model_release(s->model);
  srv_metrics_free(s->metrics);
  pthread_mutex_destroy(&s->log_mu);
  pthread_mutex_destroy(&s->model_mu);
  free(s);
}
