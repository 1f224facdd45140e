/* srv-impl.h - what the server's modules share: the server object and per-request state.
 *
 * Request lifecycle (one srv_req per HTTP request):
 *   first callback      -> srv_req allocated, request id fixed, the route matched in the one
 *                          table (srv-routes.h): 404, admin token, 405, early body limit;
 *                          a route without a body is answered here by its handler;
 *   body callbacks      -> bytes appended up to the route's limit (beyond: discarded, 413);
 *   last callback       -> the route's handler answers at once, or (POST /cam) the api prepares
 *                          the request, the connection is suspended and a job submitted;
 *   worker              -> the api decodes, runs the model and renders; the worker stores the
 *                          answer and resumes;
 *   callback after resume -> the stored response is queued;
 *   completed callback  -> access log, metrics, srv_req freed.
 * srv_req holds what every route needs; what only POST /cam needs (the parsed request, the pool
 * job, timings) is allocated by srv_cam_start behind r->cam, so a /health/live costs a small
 * calloc. The worker never touches the request after MHD_resume_connection: from then on the
 * HTTP threads own it again. */
#ifndef SRV_IMPL_H
#define SRV_IMPL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "api-error.h"
#include "cam-request.h"
#include "ecs/pool.h"
#include "model.h"
#include "srv-config.h"
#include "srv-conn.h"
#include "srv-metrics.h"
#include "srv-routes.h"
#include "srv.h"

/* The served model and the requests using it; freed when the last user lets go after a swap. */
typedef struct srv_model_ref {
  api_model *model;
  api_model_info info; /* api_model_describe(model) */
  atomic_int refs;
} srv_model_ref;

struct srv {
  srv_config cfg;
  FILE *log;
  pthread_mutex_t log_mu;
  struct MHD_Daemon *daemon;
  int port;
  ecs_pool *pool;
  srv_metrics *metrics;
  pthread_mutex_t model_mu;
  srv_model_ref *model; /* NULL: no model (ready = 503) */
  atomic_int in_flight;
  atomic_int receiving; /* POST /cam bodies still arriving: a graceful stop waits for them */
  atomic_bool stopping;
  uint64_t start_ns;
  struct srv_jobs *jobs; /* background training and evaluation (srv-jobs.h) */
  /* the registry watch (srv-watch.c): a thread following models/ACTIVE */
  pthread_t watch_thread;
  pthread_mutex_t watch_mu;
  pthread_cond_t watch_cv;
  bool watch_init, watch_running, watch_stop;
  struct srv_fetch *fetch; /* Label Studio task images (srv-fetch.h) */
  srv_conns *conns;        /* per-client limits and timeouts (srv-conn.h) */
};

typedef enum req_phase {
  PHASE_RECEIVING = 0, /* body arriving */
  PHASE_QUEUED,        /* suspended, job in the pool */
  PHASE_READY,         /* the worker stored a response; waiting to be queued */
  PHASE_ANSWERED,
} req_phase;

typedef struct srv_cam_state srv_cam_state; /* POST /cam only (srv-cam.c) */
struct srv_ls_state;                        /* POST /labelstudio/predict only (srv-ls.c) */

typedef struct srv_req {
  srv *s;
  struct MHD_Connection *conn;
  uint64_t t0_ns;
  char id[80];
  char method[16];
  char path[256];
  char remote[64];        /* the client: the peer, or X-Forwarded-For behind a proxy */
  uint8_t client_key[16]; /* the same, as 16 bytes */
  bool client_counted;    /* a proxied client's request, counted in srv.conns */
  srv_route route;
  srv_param params[SRV_MAX_PARAMS]; /* the route's {name} segments, in r->path */
  int n_params;
  req_phase phase;
  bool receiving; /* counted in srv.receiving */
  /* body (routes that take one) */
  uint8_t *body;
  size_t len, cap, limit;
  uint64_t discarded; /* bytes beyond limit */
  srv_cam_state *cam;
  struct srv_ls_state *ls;
  /* the response, stored by a worker or set when queued */
  unsigned status;
  char *resp;
  size_t resp_len;
  const char *resp_type;
  int retry_after; /* seconds; 0: no header */
  char allow[64];  /* Allow header for 405 ("": none) */
  const char *csp; /* Content-Security-Policy of the answer; NULL: SRV_CSP_API */
} srv_req;

/* The policy of every answer but the web page's (srv-ui.h): JSON, PNG and text load nothing. */
#define SRV_CSP_API "default-src 'none'; frame-ancestors 'none'"

/* ---- replies (srv.c) ---------------------------------------------------------------------- */

/* Queues a response (takes body, malloc'd, or copies it when copy is true) with the common
 * headers: X-Request-Id, CORS, Retry-After, Allow. */
enum MHD_Result srv_respond(srv_req *r, unsigned status, const char *type, char *body, size_t len,
                            bool copy);
/* The one JSON error shape, {"error": {"code", "message"}}; a 503 gets its Retry-After. */
enum MHD_Result srv_respond_error(srv_req *r, const api_error *e);
enum MHD_Result srv_fail(srv_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* j (a new reference, taken; NULL: out of memory) as the JSON body. */
enum MHD_Result srv_answer_json(srv_req *r, unsigned status, json_t *j);
enum MHD_Result srv_respond_json(srv_req *r, unsigned status, const char *json_text);

/* Stores an error as the response of a suspended request (worker side). */
void srv_req_set_error(srv_req *r, const api_error *e);

/* Path parameter i of the matched route, copied into out (n bytes); false when it does not fit. */
bool srv_req_param(const srv_req *r, int i, char *out, size_t n);

/* Marks the end of a request's upload (idempotent). */
void srv_req_received(srv_req *r);

/* ---- route handlers (the table in srv-routes.h names them) ---------------------------------- */

/* srv.c */
enum MHD_Result srv_get_health(srv_req *r);
enum MHD_Result srv_get_ready(srv_req *r);
enum MHD_Result srv_get_metrics(srv_req *r);
enum MHD_Result srv_get_openapi(srv_req *r);
enum MHD_Result srv_get_models(srv_req *r); /* /v1/models, /v1/models/{name}, /admin/models */
/* srv-cam.c: POST /cam, once the body is complete. Answers at once or suspends the connection;
 * srv_cam_free releases r->cam. */
enum MHD_Result srv_cam_start(srv_req *r);
void srv_cam_free(srv_req *r);
/* srv-ls.c: the Label Studio ML backend. srv_ls_open makes the image fetcher (srv_new);
 * srv_ls_free releases r->ls. */
ecs_status srv_ls_open(srv *s, ecs_err *err);
enum MHD_Result srv_ls_health(srv_req *r);
enum MHD_Result srv_ls_setup(srv_req *r);
enum MHD_Result srv_ls_predict(srv_req *r);
enum MHD_Result srv_ls_webhook(srv_req *r);
void srv_ls_free(srv_req *r);
/* With --ls-auth-file: whether r carries that basic auth; else the 401 is queued in *ret. */
bool srv_ls_authorised(srv_req *r, enum MHD_Result *ret);
/* Waits for the webhook loop's threads (srv-ls-loop.c), which stop between tasks once the
 * server is stopping. */
void srv_ls_loop_drain(void);
/* r's body as a JSON object, or NULL with a 400 in err. */
json_t *srv_ls_parse_body(srv_req *r, api_error *err);
/* srv-admin.c: a train request from inside the server (the Label Studio loop), checked and
 * queued as POST /admin/train would; b is borrowed. */
ecs_status srv_admin_submit_train(srv *s, json_t *b, int64_t *id, ecs_err *e);
/* srv-admin.c, after the token was checked */
enum MHD_Result srv_admin_train(srv_req *r);
enum MHD_Result srv_admin_eval(srv_req *r);
enum MHD_Result srv_admin_jobs(srv_req *r);
enum MHD_Result srv_admin_job(srv_req *r);
enum MHD_Result srv_admin_job_cancel(srv_req *r);
enum MHD_Result srv_admin_job_resume(srv_req *r);
enum MHD_Result srv_admin_datasets(srv_req *r);
enum MHD_Result srv_admin_activate(srv_req *r);
enum MHD_Result srv_admin_version_delete(srv_req *r);
/* srv-ui.c: the embedded web page */
enum MHD_Result srv_get_ui_index(srv_req *r);
enum MHD_Result srv_get_ui_asset(srv_req *r);
/* Starts the job store when admin is on (srv-admin.c). */
ecs_status srv_admin_open_jobs(srv *s, ecs_err *err);

/* Loads registry version name/version and makes it the served model: requests already running
 * finish on the old one, which is freed when the last of them lets go. */
ecs_status srv_model_swap(srv *s, const char *name, int version, ecs_err *err);

/* Starts the thread that follows the registry's active pointer (--registry-watch-ms; none
 * with --model or 0), and stops it; stop accepts a server whose watch never started. */
ecs_status srv_watch_start(srv *s, ecs_err *err);
void srv_watch_stop(srv *s);

/* The model being served, with a reference the caller releases; NULL when none. */
srv_model_ref *srv_model_acquire(srv *s);
void srv_model_release(srv_model_ref *m);

/* One access-log line for a finished request; event lines for start and stop. */
void srv_log_access(srv *s, const srv_req *r, double seconds);
void srv_log_event(srv *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
