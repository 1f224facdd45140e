/* srv-impl.h - what the server's modules share: the server object and per-request state.
 *
 * Request lifecycle (one srv_req per HTTP request):
 *   first callback      -> srv_req allocated, request id and route fixed, early limits;
 *   body callbacks      -> bytes appended up to --max-body (beyond: discarded, 413 at the end);
 *   last callback       -> the route's handler answers at once, or (POST /cam) the api prepares
 *                          the request, the connection is suspended and a job submitted;
 *   worker              -> the api decodes, runs the model and renders; the worker stores the
 *                          answer and resumes;
 *   callback after resume -> the stored response is queued;
 *   completed callback  -> access log, metrics, srv_req freed.
 * The worker never touches the request after MHD_resume_connection: from then on the HTTP
 * threads own it again. */
#ifndef SRV_IMPL_H
#define SRV_IMPL_H

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
#include "srv-metrics.h"
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
};

typedef enum req_phase {
  PHASE_RECEIVING = 0, /* body arriving */
  PHASE_QUEUED,        /* suspended, job in the pool */
  PHASE_READY,         /* the worker stored a response; waiting to be queued */
  PHASE_ANSWERED,
} req_phase;

typedef struct srv_req {
  srv *s;
  struct MHD_Connection *conn;
  uint64_t t0_ns;
  char id[80];
  char method[16];
  char path[256];
  char remote[64];
  srv_route route;
  req_phase phase;
  bool receiving;  /* counted in srv.receiving */
  /* body */
  uint8_t *body;
  size_t len, cap;
  uint64_t discarded; /* bytes beyond --max-body */
  /* POST /cam */
  api_cam_request cam;
  ecs_job job;
  atomic_bool cancel;
  uint64_t submit_ns;
  /* the response, stored by a worker or set when queued */
  unsigned status;
  char *resp;
  size_t resp_len;
  const char *resp_type;
  int retry_after; /* seconds; 0: no header */
  char *allow;     /* Allow header for 405 */
} srv_req;

/* Queues a response (takes body, malloc'd, or copies it when copy is true) with the common
 * headers: X-Request-Id, CORS, Retry-After. */
enum MHD_Result srv_respond(srv_req *r, unsigned status, const char *type, char *body,
                            size_t len, bool copy);
enum MHD_Result srv_respond_error(srv_req *r, const api_error *e);
enum MHD_Result srv_respond_json(srv_req *r, unsigned status, const char *json_text);

/* Stores an error as the response of a suspended request (worker side). */
void srv_req_set_error(srv_req *r, const api_error *e);

/* Marks the end of a request's upload (idempotent). */
void srv_req_received(srv_req *r);

/* POST /cam: called once the body is complete. Answers at once or suspends the connection. */
enum MHD_Result srv_cam_start(srv_req *r);

/* Admin routes (srv-admin.c), after the token was checked: begin answers at once or, for a
 * POST, lets the body arrive; handle answers once it has. open_jobs starts the job store. */
enum MHD_Result srv_admin_begin(srv_req *r);
enum MHD_Result srv_admin_handle(srv_req *r);
ecs_status srv_admin_open_jobs(srv *s, ecs_err *err);

/* Loads registry version name/version and makes it the served model: requests already running
 * finish on the old one, which is freed when the last of them lets go. */
ecs_status srv_model_swap(srv *s, const char *name, int version, ecs_err *err);

/* The model being served, with a reference the caller releases; NULL when none. */
srv_model_ref *srv_model_acquire(srv *s);
void srv_model_release(srv_model_ref *m);

/* One access-log line for a finished request; event lines for start and stop. */
void srv_log_access(srv *s, const srv_req *r, double seconds);
void srv_log_event(srv *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
