/* srv-routes.c - the route table's rows and the matcher (see srv-routes.h). */
#include "srv-routes.h"

#include <stdio.h>
#include <string.h>

#include "srv-impl.h"

#define SRV_ROUTE_ROW_(id, m, pattern, label, handler, auth, body)                                 \
  {m, pattern, label, handler, auth, body},
static const srv_route_def k_table[] = {SRV_ROUTES(SRV_ROUTE_ROW_)};
#undef SRV_ROUTE_ROW_

_Static_assert(sizeof k_table / sizeof k_table[0] == SRV_ROUTE_OTHER, "one row per route id");

const srv_route_def *srv_route_table(size_t *n) {
  *n = sizeof k_table / sizeof k_table[0];
  return k_table;
}

const char *srv_route_label(srv_route r) {
  return (unsigned)r < SRV_ROUTE_OTHER ? k_table[r].label : "other";
}

/* Matches path against pattern segment by segment, recording {param} segments. */
static bool match_pattern(const char *pattern, const char *path, srv_param *params, int *n) {
  const char *p = pattern, *u = path;
  *n = 0;
  while (*p && *u) {
    if (*p != '/' || *u != '/') return false;
    p++, u++;
    size_t pl = strcspn(p, "/"), ul = strcspn(u, "/");
    if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
      if (ul == 0 || *n >= SRV_MAX_PARAMS) return false;
      params[*n].off = (unsigned short)(u - path);
      params[(*n)++].len = (unsigned short)ul;
    } else if (pl != ul || strncmp(p, u, pl) != 0) {
      return false;
    }
    p += pl, u += ul;
  }
  return *p == '\0' && *u == '\0';
}

static void allow_add(char *allow, size_t n, const char *method) {
  if (strstr(allow, method)) return;
  size_t len = strlen(allow);
  snprintf(allow + len, n - len, "%s%s", len ? ", " : "", method);
}

void srv_route_match(const char *method, const char *path, srv_match *m) {
  memset(m, 0, sizeof *m);
  m->route = m->path_route = SRV_ROUTE_OTHER;
  bool head = strcmp(method, "HEAD") == 0, public_path = false;
  if (strlen(path) >= 0xffff) return;
  for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++) {
    const srv_route_def *d = &k_table[i];
    srv_param params[SRV_MAX_PARAMS];
    int n = 0;
    if (!match_pattern(d->pattern, path, params, &n)) continue;
    if (!m->path_known) m->path_route = (srv_route)i;
    m->path_known = true;
    m->auth |= d->auth;
    public_path |= !d->auth;
    allow_add(m->allow, sizeof m->allow, d->method);
    if (strcmp(d->method, "GET") == 0) allow_add(m->allow, sizeof m->allow, "HEAD");
    bool same = strcmp(d->method, method) == 0 || (head && strcmp(d->method, "GET") == 0);
    if (same && m->route == SRV_ROUTE_OTHER) {
      m->route = (srv_route)i;
      memcpy(m->params, params, sizeof params);
      m->n_params = n;
    }
  }
  /* OPTIONS (a CORS preflight) is answered on the public routes. */
  if (public_path) allow_add(m->allow, sizeof m->allow, "OPTIONS");
}
