/* srv-fetch.c - Label Studio task images over libcurl, from --ls-url only (srv-fetch.h). */
#include "srv-fetch.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "ecs/pool.h"

#define ACCESS_TTL_NS (240ull * 1000000000ull) /* Label Studio's access tokens live 5 min */

struct srv_fetch {
  bool has_base;
  char scheme[8], host[256], port[8];
  char base[300]; /* scheme://host:port, no trailing slash */
  char token[1024];
  bool pat; /* a personal access token (JWT): refreshed into an access token */
  size_t max_bytes;
  int timeout_ms;
  pthread_mutex_t mu;
  char access[2048];
  uint64_t access_ns; /* when access was obtained; 0: none */
};

typedef struct url_parts {
  char scheme[8], host[256], port[8];
  char *url; /* the normalised URL (curl_free) */
  bool data_path, user;
} url_parts;

/* Splits url with libcurl's parser (dot segments removed, default ports filled in). */
static bool split_url(const char *url, url_parts *u) {
  memset(u, 0, sizeof *u);
  CURLU *h = curl_url();
  if (!h) return false;
  bool ok = curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK;
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL;
  ok = ok && curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
       curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
       curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
       curl_url_get(h, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
       curl_url_get(h, CURLUPART_URL, &u->url, 0) == CURLUE_OK;
  if (ok) {
    u->user = curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK;
    ok = strlen(scheme) < sizeof u->scheme && strlen(host) < sizeof u->host &&
         strlen(port) < sizeof u->port;
  }
  if (ok) {
    snprintf(u->scheme, sizeof u->scheme, "%s", scheme);
    snprintf(u->host, sizeof u->host, "%s", host);
    snprintf(u->port, sizeof u->port, "%s", port);
    u->data_path = strncmp(path, "/data/", 6) == 0;
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(user);
  curl_url_cleanup(h);
  if (!ok) {
    curl_free(u->url);
    u->url = NULL;
  }
  return ok;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

ecs_status srv_fetch_new(const char *base_url, const char *token, size_t max_bytes, int timeout_ms,
                         srv_fetch **out, ecs_err *err) {
  *out = NULL;
  pthread_once(&g_curl_once, curl_init_once);
  srv_fetch *f = calloc(1, sizeof *f);
  if (!f) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&f->mu, NULL);
  f->max_bytes = max_bytes;
  f->timeout_ms = timeout_ms;
  snprintf(f->token, sizeof f->token, "%s", token ? token : "");
  int dots = 0;
  for (const char *p = f->token; *p; p++)
    dots += *p == '.';
  f->pat = dots == 2;
  if (base_url && base_url[0]) {
    url_parts u;
    bool ok = split_url(base_url, &u);
    bool web = ok && (strcmp(u.scheme, "http") == 0 || strcmp(u.scheme, "https") == 0);
    curl_free(u.url);
    if (!web || u.user) {
      srv_fetch_free(f);
      return ecs_err_set(err, ECS_ERR_INVALID, "--ls-url: '%s' is not an http(s)://HOST[:PORT] URL",
                         base_url);
    }
    f->has_base = true;
    snprintf(f->scheme, sizeof f->scheme, "%s", u.scheme);
    snprintf(f->host, sizeof f->host, "%s", u.host);
    snprintf(f->port, sizeof f->port, "%s", u.port);
    snprintf(f->base, sizeof f->base, "%s://%s:%s", u.scheme, u.host, u.port);
  }
  *out = f;
  return ECS_OK;
}

void srv_fetch_free(srv_fetch *f) {
  if (!f) return;
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* The URL to fetch for ref (curl_free), or NULL with err filled. */
static char *resolve(const srv_fetch *f, const char *ref, api_error *err) {
  bool rel = ref[0] == '/' && ref[1] != '/';
  if ((rel || strncasecmp(ref, "http", 4) == 0) && !f->has_base) {
    api_fail(err, 422, "ls_url_not_set",
             "task images on Label Studio need --ls-url (ECSNET_LS_URL) on the server");
    return NULL;
  }
  char *full = NULL;
  if (rel && asprintf(&full, "%s%s", f->base, ref) < 0) full = NULL;
  url_parts u;
  bool ok = split_url(rel ? full : ref, &u);
  free(full);
  if (ok && strcmp(u.scheme, f->scheme) == 0 && strcasecmp(u.host, f->host) == 0 &&
      strcmp(u.port, f->port) == 0 && u.data_path && !u.user)
    return u.url;
  curl_free(u.url);
  api_fail(err, 422, "image_refused",
           "task image '%.80s' is not under /data/ on the configured Label Studio (%s)", ref,
           f->has_base ? f->base : "none");
  return NULL;
}

bool srv_fetch_allowed(const srv_fetch *f, const char *ref, api_error *err) {
  if (strncmp(ref, "data:", 5) == 0) return true;
  char *u = resolve(f, ref, err);
  curl_free(u);
  return u != NULL;
}

typedef struct buf {
  uint8_t *b;
  size_t n, cap, max;
  bool too_large;
} buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *user) {
  buf *b = user;
  size_t n = sz * nm;
  if (b->n + n > b->max) {
    b->too_large = true;
    return 0;
  }
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 65536;
    while (cap < b->n + n)
      cap *= 2;
    uint8_t *nb = realloc(b->b, cap);
    if (!nb) return 0;
    b->b = nb;
    b->cap = cap;
  }
  memcpy(b->b + b->n, p, n);
  b->n += n;
  return n;
}

/* One request: GET url, or POST body (JSON) when body is not NULL. */
static CURLcode perform(const srv_fetch *f, const char *url, const char *auth, const char *body,
                        buf *b, long *status) {
  CURL *c = curl_easy_init();
  if (!c) return CURLE_OUT_OF_MEMORY;
  struct curl_slist *hdr = NULL;
  char line[2200];
  if (auth) {
    snprintf(line, sizeof line, "Authorization: %s", auth);
    hdr = curl_slist_append(hdr, line);
  }
  if (body) hdr = curl_slist_append(hdr, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)f->timeout_ms);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)b->max);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ecsnet");
  if (hdr) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
  if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  CURLcode rc = curl_easy_perform(c);
  *status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(hdr);
  curl_easy_cleanup(c);
  return rc;
}

/* A fresh access token for a personal access token, into f->access (f->mu held). */
static bool refresh_access(srv_fetch *f, api_error *err) {
  char url[400], *body = NULL;
  snprintf(url, sizeof url, "%s/api/token/refresh/", f->base);
  json_t *j = json_pack("{s:s}", "refresh", f->token);
  body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  buf b = {.max = 1 << 16};
  long status = 0;
  CURLcode rc = body ? perform(f, url, NULL, body, &b, &status) : CURLE_OUT_OF_MEMORY;
  free(body);
  json_t *ans = rc == CURLE_OK && status == 200 ? json_loadb((char *)b.b, b.n, 0, NULL) : NULL;
  free(b.b);
  const char *access = json_string_value(json_object_get(ans, "access"));
  bool ok = access && strlen(access) < sizeof f->access;
  if (ok) {
    snprintf(f->access, sizeof f->access, "%s", access);
    f->access_ns = ecs_monotonic_ns();
  }
  json_decref(ans);
  if (!ok)
    api_fail(err, 502, "ls_unauthorized",
             "Label Studio refused to refresh the personal access token (status %ld)", status);
  return ok;
}

/* The Authorization header value for Label Studio, into out; false with err on failure. */
static bool auth_header(srv_fetch *f, bool renew, char *out, size_t n, api_error *err) {
  if (!f->token[0]) return out[0] = '\0', true;
  if (!f->pat) return snprintf(out, n, "Token %s", f->token), true;
  pthread_mutex_lock(&f->mu);
  bool ok = true;
  if (renew || !f->access_ns || ecs_monotonic_ns() - f->access_ns > ACCESS_TTL_NS)
    ok = refresh_access(f, err);
  if (ok) snprintf(out, n, "Bearer %s", f->access);
  pthread_mutex_unlock(&f->mu);
  return ok;
}

static bool fetch_url(srv_fetch *f, const char *url, uint8_t **out, size_t *n, api_error *err) {
  buf b = {.max = f->max_bytes};
  long status = 0;
  CURLcode rc = CURLE_OK;
  for (int attempt = 0; attempt < 2; attempt++) {
    char auth[2200] = "";
    if (!auth_header(f, attempt > 0, auth, sizeof auth, err)) return false;
    b.n = 0;
    rc = perform(f, url, auth[0] ? auth : NULL, NULL, &b, &status);
    if (!(rc == CURLE_OK && status == 401 && f->pat)) break;
  }
  bool ok = false;
  if (b.too_large || rc == CURLE_FILESIZE_EXCEEDED)
    api_fail(err, 413, "payload_too_large", "the task image exceeds %zu bytes", f->max_bytes);
  else if (rc != CURLE_OK)
    api_fail(err, 502, "image_fetch_failed", "fetching the task image failed: %s",
             curl_easy_strerror(rc));
  else if (status == 401 || status == 403)
    api_fail(err, 502, "ls_unauthorized",
             "Label Studio answered %ld for the task image: check --ls-token-file", status);
  else if (status == 404)
    api_fail(err, 404, "image_not_found", "Label Studio has no such task image");
  else if (status != 200)
    api_fail(err, 502, "image_fetch_failed", "Label Studio answered %ld for the task image%s",
             status, status >= 300 && status < 400 ? " (redirects are not followed)" : "");
  else
    ok = true;
  if (ok) {
    *out = b.b;
    *n = b.n;
  } else {
    free(b.b);
  }
  return ok;
}

bool srv_fetch_image(srv_fetch *f, const char *ref, uint8_t **out, size_t *n, api_error *err) {
  *out = NULL;
  *n = 0;
  if (strncmp(ref, "data:", 5) == 0) {
    const char *comma = strchr(ref, ',');
    if (!comma || !memmem(ref, (size_t)(comma - ref), ";base64", 7))
      return api_fail(err, 422, "image_refused", "a data: URI image must be base64");
    return api_base64_decode(comma + 1, strlen(comma + 1), f->max_bytes, out, n, err);
  }
  char *url = resolve(f, ref, err);
  if (!url) return false;
  bool ok = fetch_url(f, url, out, n, err);
  curl_free(url);
  return ok;
}

bool srv_fetch_ls_json(srv_fetch *f, const char *path, json_t **out, api_error *err) {
  *out = NULL;
  if (!f->has_base)
    return api_fail(err, 422, "ls_url_not_set", "this needs --ls-url (ECSNET_LS_URL)");
  char url[600];
  snprintf(url, sizeof url, "%s%s", f->base, path);
  uint8_t *b = NULL;
  size_t n = 0;
  if (!fetch_url(f, url, &b, &n, err)) return false;
  *out = json_loadb((const char *)b, n, 0, NULL);
  free(b);
  if (!*out) return api_fail(err, 502, "invalid_json", "Label Studio's %s is not JSON", path);
  return true;
}
