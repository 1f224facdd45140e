/* srv-log.c - access and event lines, text or JSON (--log-format), one write per line.
 *
 * Lines go through one mutex so that lines from different HTTP threads never interleave;
 * JSON lines are built with jansson so paths and ids are escaped correctly. */
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "srv-impl.h"

static void timestamp(char *out, size_t n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static void emit(srv *s, const char *line) {
  pthread_mutex_lock(&s->log_mu);
  fputs(line, s->log);
  fputc('\n', s->log);
  fflush(s->log);
  pthread_mutex_unlock(&s->log_mu);
}

static bool json_logs(const srv *s) {
  return strcmp(s->cfg.log_format, "json") == 0;
}

void srv_log_access(srv *s, const srv_req *r, double seconds) {
  if (!s->log || strcmp(s->cfg.access_log, "on") != 0) return;
  char ts[40];
  timestamp(ts, sizeof ts);
  if (json_logs(s)) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:f}", "ts", ts, "type",
                          "access", "request_id", r->id, "remote", r->remote, "method", r->method,
                          "path", r->path, "status", (int)r->status, "bytes",
                          (json_int_t)r->resp_len, "duration_ms", seconds * 1e3);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (line) emit(s, line);
    free(line);
    return;
  }
  char line[600];
  snprintf(line, sizeof line, "%s %s \"%s %s\" %u %zu %.1fms request_id=%s", ts, r->remote,
           r->method, r->path, r->status, r->resp_len, seconds * 1e3, r->id);
  emit(s, line);
}

void srv_log_event(srv *s, const char *level, const char *fmt, ...) {
  if (!s->log) return;
  char msg[512], ts[40];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  timestamp(ts, sizeof ts);
  if (json_logs(s)) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "type", "event", "level", level,
                          "message", msg);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (line) emit(s, line);
    free(line);
    return;
  }
  char line[600];
  snprintf(line, sizeof line, "%s %s %s", ts, level, msg);
  emit(s, line);
}
