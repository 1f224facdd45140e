/* srv-routes.h - the server's one route table.
 *
 * Every route is one row of SRV_ROUTES: its id, method, path pattern, the route label of its
 * /metrics series, its handler, whether it needs the admin token, and which body it takes. The
 * router, the 404 and 405 answers (with their Allow header), the metrics labels and the test
 * that checks the table against api/openapi.yaml (tests/server/test_routes.c) all read this
 * table, so a route is added in one place.
 *
 * Patterns are matched segment by segment; a `{name}` segment matches one non-empty segment
 * and is handed to the handler as a path parameter (srv_req_param). GET rows answer HEAD too.
 * Rows that share a pattern (GET and DELETE of /admin/jobs/{id}) are one path with two
 * methods; rows that share a label (/cam and /v1/cam) count as one series.
 *
 * Bodies: SRV_BODY_NONE routes are answered on the first callback (a body sent anyway is
 * drained and ignored); the others are buffered up to their limit, checked against
 * Content-Length before a byte is read, and the handler runs once the body is complete. */
#ifndef SRV_ROUTES_H
#define SRV_ROUTES_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum srv_body {
  SRV_BODY_NONE = 0, /* no body is read */
  SRV_BODY_UPLOAD,   /* an image upload: up to --max-body */
  SRV_BODY_JSON,     /* an admin request: up to SRV_JSON_BODY_MAX (or --max-body if smaller) */
} srv_body;

#define SRV_JSON_BODY_MAX (1 << 20)

/* X(id, method, pattern, metrics label, handler, admin token, body) */
#define SRV_ROUTES(X)                                                                              \
  X(CAM, "POST", "/cam", "/cam", srv_cam_start, false, SRV_BODY_UPLOAD)                            \
  X(CAM_V1, "POST", "/v1/cam", "/cam", srv_cam_start, false, SRV_BODY_UPLOAD)                      \
  X(HEALTH, "GET", "/health", "/health", srv_get_health, false, SRV_BODY_NONE)                     \
  X(HEALTH_LIVE, "GET", "/health/live", "/health/live", srv_get_health, false, SRV_BODY_NONE)      \
  X(HEALTH_READY, "GET", "/health/ready", "/health/ready", srv_get_ready, false, SRV_BODY_NONE)    \
  X(METRICS, "GET", "/metrics", "/metrics", srv_get_metrics, false, SRV_BODY_NONE)                 \
  X(OPENAPI, "GET", "/openapi.json", "/openapi.json", srv_get_openapi, false, SRV_BODY_NONE)       \
  X(MODELS, "GET", "/v1/models", "/v1/models", srv_get_models, false, SRV_BODY_NONE)               \
  X(MODEL, "GET", "/v1/models/{name}", "/v1/models/{name}", srv_get_models, false, SRV_BODY_NONE)  \
  X(ADMIN_TRAIN, "POST", "/admin/train", "/admin/train", srv_admin_train, true, SRV_BODY_JSON)     \
  X(ADMIN_EVAL, "POST", "/admin/eval", "/admin/eval", srv_admin_eval, true, SRV_BODY_JSON)         \
  X(ADMIN_JOBS, "GET", "/admin/jobs", "/admin/jobs", srv_admin_jobs, true, SRV_BODY_NONE)          \
  X(ADMIN_JOB, "GET", "/admin/jobs/{id}", "/admin/jobs/{id}", srv_admin_job, true, SRV_BODY_NONE)  \
  X(ADMIN_JOB_CANCEL, "DELETE", "/admin/jobs/{id}", "/admin/jobs/{id}", srv_admin_job_cancel,      \
    true, SRV_BODY_NONE)                                                                           \
  X(ADMIN_JOB_RESUME, "POST", "/admin/jobs/{id}/resume", "/admin/jobs/{id}/resume",                \
    srv_admin_job_resume, true, SRV_BODY_NONE)                                                     \
  X(ADMIN_DATASETS, "GET", "/admin/datasets", "/admin/datasets", srv_admin_datasets, true,         \
    SRV_BODY_NONE)                                                                                 \
  X(ADMIN_MODELS, "GET", "/admin/models", "/admin/models", srv_get_models, true, SRV_BODY_NONE)    \
  X(ADMIN_ACTIVATE, "POST", "/admin/models/{name}/versions/{version}/activate",                    \
    "/admin/models/{name}/versions/{version}/activate", srv_admin_activate, true, SRV_BODY_NONE)   \
  X(ADMIN_VERSION_DELETE, "DELETE", "/admin/models/{name}/versions/{version}",                     \
    "/admin/models/{name}/versions/{version}", srv_admin_version_delete, true, SRV_BODY_NONE)      \
  X(UI_INDEX, "GET", "/", "/", srv_get_ui_index, false, SRV_BODY_NONE)                             \
  X(UI_ASSET, "GET", "/ui/{asset}", "/ui/{asset}", srv_get_ui_asset, false, SRV_BODY_NONE)         \
  X(LS_HEALTH, "GET", "/labelstudio/health", "/labelstudio/health", srv_ls_health, false,          \
    SRV_BODY_NONE)                                                                                 \
  X(LS_SETUP, "POST", "/labelstudio/setup", "/labelstudio/setup", srv_ls_setup, false,             \
    SRV_BODY_JSON)                                                                                 \
  X(LS_PREDICT, "POST", "/labelstudio/predict", "/labelstudio/predict", srv_ls_predict, false,     \
    SRV_BODY_UPLOAD)                                                                               \
  X(LS_WEBHOOK, "POST", "/labelstudio/webhook", "/labelstudio/webhook", srv_ls_webhook, false,     \
    SRV_BODY_JSON)

#define SRV_ROUTE_ENUM_(id, method, pattern, label, handler, auth, body) SRV_ROUTE_##id,
typedef enum srv_route {
  SRV_ROUTES(SRV_ROUTE_ENUM_) SRV_ROUTE_OTHER, /* no route: 404, counted as "other" */
  SRV_ROUTE_COUNT
} srv_route;
#undef SRV_ROUTE_ENUM_

struct srv_req;

typedef struct srv_route_def {
  const char *method;
  const char *pattern;
  const char *label; /* the route label of its /metrics series */
  enum MHD_Result (*handler)(struct srv_req *r);
  bool auth; /* needs the admin bearer token */
  srv_body body;
} srv_route_def;

/* The table, SRV_ROUTE_COUNT - 1 rows in enum order. */
const srv_route_def *srv_route_table(size_t *n);
/* The metrics label of a route ("other" for SRV_ROUTE_OTHER and out-of-range values). */
const char *srv_route_label(srv_route r);

#define SRV_MAX_PARAMS 4

/* Where a path parameter lies in the request path. */
typedef struct srv_param {
  unsigned short off, len;
} srv_param;

typedef struct srv_match {
  srv_route route;      /* SRV_ROUTE_OTHER: no row of this method matched */
  bool path_known;      /* some row's pattern matched the path (405 rather than 404) */
  srv_route path_route; /* with path_known: the first such row (a 405's metrics label) */
  bool auth;            /* a row whose pattern matched needs the admin token */
  char allow[64];       /* with path_known: the Allow header of the path's methods */
  srv_param params[SRV_MAX_PARAMS];
  int n_params;
} srv_match;

/* Matches method and path against the table. */
void srv_route_match(const char *method, const char *path, srv_match *m);

#endif
