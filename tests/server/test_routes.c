/* test_routes.c - the server's route table against api/openapi.yaml, and its matcher.
 *
 * The contract and the table must name the same routes: every path and method the OpenAPI
 * document lists is a row of the table, and every row is documented (HEAD comes with GET and
 * OPTIONS with CORS, so neither is a row). The document is the JSON embedded at build time from
 * api/openapi.yaml, the same bytes GET /openapi.json serves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>
#include <string.h>

#include "openapi.h"
#include "srv-routes.h"

static json_t *openapi_paths(json_t **doc) {
  json_error_t je;
  *doc = json_loadb((const char *)api_openapi_json, api_openapi_json_len, 0, &je);
  assert_non_null(*doc);
  json_t *paths = json_object_get(*doc, "paths");
  assert_true(json_is_object(paths));
  return paths;
}

static const char *const k_methods[] = {"get", "post", "put", "patch", "delete"};

static void lower(const char *in, char *out, size_t n) {
  size_t i = 0;
  for (; in[i] && i + 1 < n; i++)
    out[i] = (char)tolower((unsigned char)in[i]);
  out[i] = '\0';
}

static void test_every_documented_route_is_served(void **state) {
  (void)state;
  json_t *doc;
  json_t *paths = openapi_paths(&doc);
  size_t n;
  const srv_route_def *t = srv_route_table(&n);
  const char *path;
  json_t *ops;
  int checked = 0;
  json_object_foreach(paths, path, ops) {
    for (size_t k = 0; k < sizeof k_methods / sizeof k_methods[0]; k++) {
      if (!json_object_get(ops, k_methods[k])) continue;
      bool found = false;
      for (size_t i = 0; i < n && !found; i++) {
        char m[16];
        lower(t[i].method, m, sizeof m);
        found = strcmp(t[i].pattern, path) == 0 && strcmp(m, k_methods[k]) == 0;
      }
      if (!found) fail_msg("documented but not served: %s %s", k_methods[k], path);
      checked++;
    }
  }
  assert_int_equal(checked, (int)n);
  json_decref(doc);
}

static void test_every_served_route_is_documented(void **state) {
  (void)state;
  json_t *doc;
  json_t *paths = openapi_paths(&doc);
  size_t n;
  const srv_route_def *t = srv_route_table(&n);
  assert_int_equal(n, SRV_ROUTE_OTHER);
  for (size_t i = 0; i < n; i++) {
    char m[16];
    lower(t[i].method, m, sizeof m);
    json_t *op = json_object_get(json_object_get(paths, t[i].pattern), m);
    if (!op) fail_msg("served but not documented: %s %s", t[i].method, t[i].pattern);
    /* the routes that need the admin token, and only they, document the bearer scheme */
    bool bearer = false;
    size_t k;
    json_t *sec;
    json_array_foreach(json_object_get(op, "security"), k, sec) {
      bearer |= json_object_get(sec, "bearer") != NULL;
    }
    if (bearer != t[i].auth)
      fail_msg("%s %s: bearer documented %d, token required %d", t[i].method, t[i].pattern, bearer,
               t[i].auth);
    /* a route that takes a body documents one */
    if ((t[i].body != SRV_BODY_NONE) != (json_object_get(op, "requestBody") != NULL))
      fail_msg("%s %s: body %d against the document", t[i].method, t[i].pattern, t[i].body);
  }
  json_decref(doc);
}

static void param(const char *path, const srv_match *m, int i, const char *want) {
  assert_true(i < m->n_params);
  assert_int_equal(m->params[i].len, strlen(want));
  assert_memory_equal(path + m->params[i].off, want, strlen(want));
}

static void test_matcher(void **state) {
  (void)state;
  srv_match m;
  srv_route_match("POST", "/cam", &m);
  assert_int_equal(m.route, SRV_ROUTE_CAM);
  assert_false(m.auth);
  srv_route_match("HEAD", "/health/live", &m);
  assert_int_equal(m.route, SRV_ROUTE_HEALTH_LIVE);

  const char *p = "/admin/jobs/12/resume";
  srv_route_match("POST", p, &m);
  assert_int_equal(m.route, SRV_ROUTE_ADMIN_JOB_RESUME);
  assert_true(m.auth);
  param(p, &m, 0, "12");
  p = "/admin/models/syn/versions/3/activate";
  srv_route_match("POST", p, &m);
  assert_int_equal(m.route, SRV_ROUTE_ADMIN_ACTIVATE);
  param(p, &m, 0, "syn");
  param(p, &m, 1, "3");
  srv_route_match("DELETE", "/admin/models/syn/versions/3", &m);
  assert_int_equal(m.route, SRV_ROUTE_ADMIN_VERSION_DELETE);
  srv_route_match("DELETE", "/admin/jobs/7", &m);
  assert_int_equal(m.route, SRV_ROUTE_ADMIN_JOB_CANCEL);

  /* a known path with another method: 405 with the path's methods */
  srv_route_match("GET", "/admin/train", &m);
  assert_int_equal(m.route, SRV_ROUTE_OTHER);
  assert_int_equal(m.path_route, SRV_ROUTE_ADMIN_TRAIN);
  assert_true(m.path_known && m.auth);
  assert_string_equal(m.allow, "POST");
  srv_route_match("PUT", "/admin/jobs/7", &m);
  assert_string_equal(m.allow, "GET, HEAD, DELETE");
  srv_route_match("DELETE", "/cam", &m);
  assert_true(m.path_known);
  assert_string_equal(m.allow, "POST, OPTIONS");
  srv_route_match("POST", "/metrics", &m);
  assert_string_equal(m.allow, "GET, HEAD, OPTIONS");

  /* unknown paths, empty or extra segments */
  const char *unknown[] = {"",
                           "//",
                           "/ui",
                           "/ui/",
                           "/ui/a/b",
                           "/nope",
                           "/cam/",
                           "/v1/models/",
                           "/admin/jobs//resume",
                           "/admin/jobs/1/2",
                           "/health/live/x",
                           "/admin",
                           "/v1/modelsx"};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    srv_route_match("GET", unknown[i], &m);
    assert_int_equal(m.route, SRV_ROUTE_OTHER);
    if (m.path_known) fail_msg("%s matched a pattern", unknown[i]);
  }
  srv_route_match("GET", "/v1/models/a%2Fb", &m);
  assert_int_equal(m.route, SRV_ROUTE_MODEL);
  /* the web page: / alone, and one file name under /ui/ */
  srv_route_match("GET", "/", &m);
  assert_int_equal(m.route, SRV_ROUTE_UI_INDEX);
  srv_route_match("HEAD", "/", &m);
  assert_int_equal(m.route, SRV_ROUTE_UI_INDEX);
  srv_route_match("GET", "/ui/app.css", &m);
  assert_int_equal(m.route, SRV_ROUTE_UI_ASSET);
  param("/ui/app.css", &m, 0, "app.css");
  srv_route_match("POST", "/", &m);
  assert_int_equal(m.route, SRV_ROUTE_OTHER);
  assert_string_equal(m.allow, "GET, HEAD, OPTIONS");
}

static void test_labels(void **state) {
  (void)state;
  assert_string_equal(srv_route_label(SRV_ROUTE_CAM), "/cam");
  assert_string_equal(srv_route_label(SRV_ROUTE_CAM_V1), "/cam");
  assert_string_equal(srv_route_label(SRV_ROUTE_ADMIN_JOB), "/admin/jobs/{id}");
  assert_string_equal(srv_route_label(SRV_ROUTE_OTHER), "other");
  assert_string_equal(srv_route_label((srv_route)1000), "other");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_documented_route_is_served),
      cmocka_unit_test(test_every_served_route_is_documented),
      cmocka_unit_test(test_matcher),
      cmocka_unit_test(test_labels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
