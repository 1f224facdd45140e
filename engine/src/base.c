/* base.c - status strings, error buffers, version. */
#include "ecs/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef ECS_VERSION_STRING
#define ECS_VERSION_STRING "0.0.0"
#endif

ecs_status ecs_err_set(ecs_err *err, ecs_status status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
  }
  return status;
}

void ecs_err_clear(ecs_err *err) {
  if (err) {
    err->status = ECS_OK;
    err->msg[0] = '\0';
  }
}

const char *ecs_status_str(ecs_status s) {
  switch (s) {
  case ECS_OK: return "ok";
  case ECS_ERR_INVALID: return "invalid argument";
  case ECS_ERR_NOMEM: return "out of memory";
  case ECS_ERR_IO: return "i/o error";
  case ECS_ERR_FORMAT: return "malformed data";
  case ECS_ERR_UNSUPPORTED: return "unsupported";
  case ECS_ERR_BACKEND: return "backend failure";
  case ECS_ERR_CANCELLED: return "cancelled";
  case ECS_ERR_LIMIT: return "limit exceeded";
  case ECS_ERR_NOT_FOUND: return "not found";
  case ECS_ERR_CONFLICT: return "conflict";
  }
  return "unknown status";
}

const char *ecs_version(void) {
  return ECS_VERSION_STRING;
}

void ecs_abort(const char *file, int line, const char *expr) {
  fprintf(stderr, "ecsnet: internal error at %s:%d: assertion failed: %s\n", file, line, expr);
  abort();
}
