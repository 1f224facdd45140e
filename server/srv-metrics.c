/* srv-metrics.c - lock-free request accounting and its Prometheus rendering. */
#include "srv-metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned k_statuses[] = {200, 202, 204, 400, 401, 403, 404, 405, 408,
                                      413, 415, 422, 429, 431, 500, 503, 507, 0 /* other */};
#define N_STATUS (sizeof k_statuses / sizeof k_statuses[0])

/* Seconds; the last bucket is +Inf. */
static const double k_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                  0.5,   1,     2.5,  5,     10,   30};
#define N_BOUNDS (sizeof k_bounds / sizeof k_bounds[0])

typedef struct histo {
  atomic_uint_fast64_t buckets[N_BOUNDS + 1]; /* non-cumulative; rendered cumulative */
  atomic_uint_fast64_t count;
  atomic_uint_fast64_t sum_us; /* microseconds, so the sum stays an integer atomic */
} histo;

struct srv_metrics {
  atomic_uint_fast64_t requests[SRV_ROUTE_COUNT][N_STATUS];
  histo latency[SRV_ROUTE_COUNT];
  histo decode;
  histo inference;
};

srv_metrics *srv_metrics_new(void) {
  return calloc(1, sizeof(srv_metrics));
}
void srv_metrics_free(srv_metrics *m) {
  free(m);
}

static void observe(histo *h, double s) {
  size_t b = 0;
  while (b < N_BOUNDS && s > k_bounds[b])
    b++;
  atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_us, (uint_fast64_t)(s > 0 ? s * 1e6 : 0), memory_order_relaxed);
}

void srv_metrics_request(srv_metrics *m, srv_route route, unsigned status, double seconds) {
  if ((unsigned)route >= SRV_ROUTE_COUNT) route = SRV_ROUTE_OTHER;
  size_t si = N_STATUS - 1;
  for (size_t i = 0; i + 1 < N_STATUS; i++)
    if (k_statuses[i] == status) si = i;
  atomic_fetch_add_explicit(&m->requests[route][si], 1, memory_order_relaxed);
  observe(&m->latency[route], seconds);
}

void srv_metrics_decode(srv_metrics *m, double s) {
  observe(&m->decode, s);
}
void srv_metrics_inference(srv_metrics *m, double s) {
  observe(&m->inference, s);
}

typedef struct buf {
  char *p;
  size_t len, cap;
  bool oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = true;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap + (size_t)n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

static void put_histo(buf *b, const char *name, const char *labels, const histo *h) {
  uint64_t cum = 0;
  const char *sep = labels[0] ? "," : "";
  for (size_t i = 0; i <= N_BOUNDS; i++) {
    cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    if (i < N_BOUNDS)
      put(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, k_bounds[i],
          (unsigned long long)cum);
    else
      put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
  }
  const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
  put(b, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
      (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
  put(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
      (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}

static bool same_label(int a, int b) {
  return strcmp(srv_route_label((srv_route)a), srv_route_label((srv_route)b)) == 0;
}

/* The first route of its label, which renders the series of all routes with that label. */
static bool first_of_label(int r) {
  for (int q = 0; q < r; q++)
    if (same_label(q, r)) return false;
  return true;
}

static void add_histo(histo *sum, const histo *h) {
  for (size_t i = 0; i <= N_BOUNDS; i++)
    atomic_fetch_add_explicit(&sum->buckets[i],
                              atomic_load_explicit(&h->buckets[i], memory_order_relaxed),
                              memory_order_relaxed);
  atomic_fetch_add_explicit(&sum->count, atomic_load_explicit(&h->count, memory_order_relaxed),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&sum->sum_us, atomic_load_explicit(&h->sum_us, memory_order_relaxed),
                            memory_order_relaxed);
}

/* Label values are from our tables except the model name, which is escaped. */
static void put_escaped(buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      put(b, "\\%c", *s);
    else if (*s == '\n')
      put(b, "\\n");
    else
      put(b, "%c", *s);
  }
}

/* The per-route series: one per label, the routes that share it added together. */
static void put_routes(buf *b, srv_metrics *m) {
  put(b, "# HELP ecsnet_requests_total HTTP requests answered, by route and status.\n"
         "# TYPE ecsnet_requests_total counter\n");
  for (int r = 0; r < SRV_ROUTE_COUNT; r++) {
    if (!first_of_label(r)) continue;
    for (size_t s = 0; s < N_STATUS; s++) {
      uint64_t v = 0;
      for (int q = r; q < SRV_ROUTE_COUNT; q++)
        if (same_label(q, r)) v += atomic_load_explicit(&m->requests[q][s], memory_order_relaxed);
      if (!v) continue;
      char st[16];
      if (k_statuses[s])
        snprintf(st, sizeof st, "%u", k_statuses[s]);
      else
        snprintf(st, sizeof st, "other");
      put(b, "ecsnet_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
          srv_route_label((srv_route)r), st, (unsigned long long)v);
    }
  }
  put(b, "# HELP ecsnet_request_duration_seconds Time from the request line to the response.\n"
         "# TYPE ecsnet_request_duration_seconds histogram\n");
  for (int r = 0; r < SRV_ROUTE_COUNT; r++) {
    if (!first_of_label(r)) continue;
    histo h;
    memset(&h, 0, sizeof h);
    for (int q = r; q < SRV_ROUTE_COUNT; q++)
      if (same_label(q, r)) add_histo(&h, &m->latency[q]);
    char lab[96];
    snprintf(lab, sizeof lab, "route=\"%s\"", srv_route_label((srv_route)r));
    put_histo(b, "ecsnet_request_duration_seconds", lab, &h);
  }
}

char *srv_metrics_render(srv_metrics *m, const srv_gauges *g, size_t *len) {
  buf b = {.cap = 16384};
  b.p = malloc(b.cap);
  if (!b.p) return NULL;
  b.p[0] = '\0';
  put_routes(&b, m);
  put(&b, "# HELP ecsnet_decode_seconds Time to decode an uploaded image.\n"
          "# TYPE ecsnet_decode_seconds histogram\n");
  put_histo(&b, "ecsnet_decode_seconds", "", &m->decode);
  put(&b, "# HELP ecsnet_inference_seconds Time inside the model per request.\n"
          "# TYPE ecsnet_inference_seconds histogram\n");
  put_histo(&b, "ecsnet_inference_seconds", "", &m->inference);
  put(&b,
      "# HELP ecsnet_queue_depth Requests waiting for a worker.\n# TYPE ecsnet_queue_depth gauge\n"
      "ecsnet_queue_depth %d\n"
      "# HELP ecsnet_queue_capacity Most requests that may wait.\n"
      "# TYPE ecsnet_queue_capacity gauge\necsnet_queue_capacity %d\n"
      "# HELP ecsnet_workers_busy Workers running a request.\n"
      "# TYPE ecsnet_workers_busy gauge\necsnet_workers_busy %d\n"
      "# HELP ecsnet_workers Inference workers.\n# TYPE ecsnet_workers gauge\necsnet_workers %d\n"
      "# HELP ecsnet_requests_in_flight Requests being received, queued or run.\n"
      "# TYPE ecsnet_requests_in_flight gauge\necsnet_requests_in_flight %d\n"
      "# HELP ecsnet_queue_rejected_total Requests refused because the queue was full.\n"
      "# TYPE ecsnet_queue_rejected_total counter\necsnet_queue_rejected_total %llu\n"
      "# HELP ecsnet_queue_expired_total Requests dropped at their deadline before running.\n"
      "# TYPE ecsnet_queue_expired_total counter\necsnet_queue_expired_total %llu\n"
      "# HELP ecsnet_queue_gone_total Requests dropped because the client had gone.\n"
      "# TYPE ecsnet_queue_gone_total counter\necsnet_queue_gone_total %llu\n",
      g->queue_depth, g->queue_capacity, g->running, g->workers, g->in_flight,
      (unsigned long long)g->rejected, (unsigned long long)g->expired, (unsigned long long)g->gone);
  put(&b, "# HELP ecsnet_model_info The model being served (absent while none is loaded).\n"
          "# TYPE ecsnet_model_info gauge\n");
  if (g->model_name) {
    put(&b, "ecsnet_model_info{name=\"");
    put_escaped(&b, g->model_name);
    put(&b, "\",version=\"%d\"} 1\n", g->model_version);
  }
  put(&b,
      "# HELP ecsnet_model_ready 1 when a model is loaded and requests can be served.\n"
      "# TYPE ecsnet_model_ready gauge\necsnet_model_ready %d\n"
      "# HELP ecsnet_uptime_seconds Time since the server started.\n"
      "# TYPE ecsnet_uptime_seconds gauge\necsnet_uptime_seconds %.3f\n",
      g->model_name ? 1 : 0, g->uptime_s);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}
