/* srv-metrics.h - counters and histograms for GET /metrics (Prometheus text format 0.0.4).
 *
 * Routes and statuses come from fixed tables so every series is preallocated: recording is a
 * few relaxed atomic additions on the HTTP threads, with no lock and no allocation, and a
 * client cannot grow the label space by requesting odd paths. */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum srv_route {
  SRV_ROUTE_CAM = 0,
  SRV_ROUTE_HEALTH,
  SRV_ROUTE_HEALTH_LIVE,
  SRV_ROUTE_HEALTH_READY,
  SRV_ROUTE_METRICS,
  SRV_ROUTE_MODELS,
  SRV_ROUTE_MODEL,
  SRV_ROUTE_OPENAPI,
  SRV_ROUTE_ADMIN,
  SRV_ROUTE_OTHER, /* unknown paths */
  SRV_ROUTE_COUNT
} srv_route;

const char *srv_route_name(srv_route r);

typedef struct srv_metrics srv_metrics;

srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m); /* accepts NULL */

/* One finished request: its route, status and wall time. */
void srv_metrics_request(srv_metrics *m, srv_route route, unsigned status, double seconds);
/* One image decoded (seconds) and one model run (seconds). */
void srv_metrics_decode(srv_metrics *m, double seconds);
void srv_metrics_inference(srv_metrics *m, double seconds);

/* Values the metrics module does not own, read when /metrics is served. */
typedef struct srv_gauges {
  int queue_depth, queue_capacity, running, workers, in_flight;
  uint64_t rejected, expired, gone;
  const char *model_name; /* NULL: no model */
  int model_version;
  double uptime_s;
} srv_gauges;

/* The exposition text, malloc'd (free()); NULL when out of memory. */
char *srv_metrics_render(srv_metrics *m, const srv_gauges *g, size_t *len);

#endif
