/* srv-metrics.h - counters and histograms for GET /metrics (Prometheus text format 0.0.4).
 *
 * Routes (the route table's labels, srv-routes.h) and statuses come from fixed tables so every
 * series is preallocated: recording is a few relaxed atomic additions on the HTTP threads, with
 * no lock and no allocation, and a client cannot grow the label space by requesting odd paths.
 * Routes that share a label (/cam and /v1/cam) are added together when rendered. */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "srv-routes.h"

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
