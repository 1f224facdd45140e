/* api-error.c - building API errors, their JSON bodies and error answers. */
#include "api-error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool api_fail(api_error *err, unsigned status, const char *code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->status = status;
    err->code = code;
  }
  return false;
}

char *api_error_json(const api_error *err) {
  /* jansson escapes the message, which may quote client input (a label, a field name). */
  json_t *inner = json_pack("{s:s, s:s}", "code", err->code ? err->code : "internal_error",
                            "message", err->message);
  if (!inner) return NULL;
  json_t *root = json_pack("{s:o}", "error", inner);
  if (!root) return NULL;
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return s;
}

int api_retry_after(const char *code) {
  return code && (strcmp(code, "model_not_ready") == 0 || strcmp(code, "not_ready") == 0)
             ? API_RETRY_NOT_READY_S
             : API_RETRY_BUSY_S;
}

void api_response_error(api_response *out, const api_error *err) {
  char *body = api_error_json(err);
  *out = (api_response){.status = err->status,
                        .type = "application/json",
                        .body = body,
                        .len = body ? strlen(body) : 0,
                        .retry_after = err->status == 503 ? api_retry_after(err->code) : 0};
}

void api_response_free(api_response *r) {
  if (!r) return;
  free(r->body);
  r->body = NULL;
  r->len = 0;
}
