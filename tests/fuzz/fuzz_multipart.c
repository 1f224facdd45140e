/* fuzz_multipart.c - libFuzzer target for Content-Type and multipart/form-data parsing.
 *
 * The first line is a Content-Type header value; its boundary (when it parses) splits the
 * rest. Every part returned must lie inside the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *nl = memchr(data, '\n', size);
  if (!nl) return 0;
  size_t hl = (size_t)(nl - (const char *)data);
  char *header = strndup((const char *)data, hl);
  size_t blen = size - hl - 1;
  char *body = malloc(blen ? blen : 1);
  memcpy(body, nl + 1, blen);
  api_content_type ct;
  api_error err;
  if (api_content_type_parse(header, &ct, &err)) {
    api_parts parts;
    if (api_multipart_parse(body, blen, ct.boundary, 16, &parts, &err)) {
      if (parts.n > 16) abort();
      for (size_t i = 0; i < parts.n; i++) {
        const api_part *pt = &parts.parts[i];
        if (!pt->name || pt->data < body || pt->data + pt->len > body + blen) abort();
      }
      api_parts_free(&parts);
    } else if (err.status != 400 && err.status != 503) {
      abort();
    }
  }
  free(body);
  free(header);
  return 0;
}
