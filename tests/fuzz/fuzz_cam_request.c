/* fuzz_cam_request.c - libFuzzer target for POST /cam request parsing.
 *
 * The input is split into a Content-Type (up to the first '\n'), query arguments (k=v lines
 * up to an empty line) and the body. It drives the whole of api_cam_request_parse: media
 * types, multipart, JSON and base64, every parameter; a successful parse must describe an
 * image that lies inside the body or in the decoded buffer, with values in their ranges. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cam-request.h"

static const char *next_line(const char **p, const char *end, size_t *len) {
  const char *s = *p;
  const char *nl = memchr(s, '\n', (size_t)(end - s));
  if (!nl) return NULL;
  *len = (size_t)(nl - s);
  *p = nl + 1;
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  size_t len;
  const char *ct = next_line(&p, end, &len);
  if (!ct) return 0;
  char *ctype = strndup(ct, len);
  api_kv q[8];
  char *owned[16];
  size_t nq = 0, no = 0;
  const char *line;
  while ((line = next_line(&p, end, &len)) && len > 0 && nq < 8) {
    const char *eq = memchr(line, '=', len);
    size_t kl = eq ? (size_t)(eq - line) : len;
    owned[no++] = strndup(line, kl);
    owned[no++] = eq ? strndup(eq + 1, len - kl - 1) : NULL;
    q[nq].key = owned[no - 2];
    q[nq].value = owned[no - 1];
    nq++;
  }
  /* The body gets its own exact-size allocation so that any overread is caught. */
  size_t blen = (size_t)(end - p);
  uint8_t *body = malloc(blen ? blen : 1);
  memcpy(body, p, blen);
  api_http_in in = {
      .content_type = ctype, .body = body, .body_len = blen, .query = q, .n_query = nq};
  api_cam_limits lim = {.max_labels = 8, .max_image = 1 << 20};
  api_cam_request req;
  api_error err;
  if (api_cam_request_parse(&in, &lim, &req, &err)) {
    int inside = req.image >= body && req.image + req.image_len <= body + blen;
    int decoded = req.image_owned && req.image == req.image_owned;
    if (!(inside || decoded) || req.image_len == 0) abort();
    if (req.n_labels > 8 || req.n_scales < 1 || req.n_scales > API_MAX_SCALES) abort();
    if (req.outputs == 0 || req.outputs >= (1u << API_OUT_COUNT)) abort();
    api_cam_request_free(&req);
  } else {
    if (err.status < 400 || err.status > 503 || !err.code) abort();
    char *j = api_error_json(&err);
    free(j);
  }
  free(body);
  for (size_t i = 0; i < no; i++)
    free(owned[i]);
  free(ctype);
  return 0;
}
