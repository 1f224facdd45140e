/* path.c - ecs_path_join and ecs_path_fmt (ecs/path.h). */
#include "ecs/path.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static ecs_status too_long(char *out, size_t n, size_t need, ecs_err *err) {
  /* the start of the path, so the message says which one */
  ecs_status st =
      ecs_err_set(err, ECS_ERR_LIMIT, "path too long (%zu bytes, the limit is %zu): %.120s...",
                  need, n ? n - 1 : 0, n ? out : "");
  if (n) out[0] = '\0';
  return st;
}

static ecs_status vfmt(char *out, size_t n, ecs_err *err, const char *fmt, va_list ap) {
  int k = vsnprintf(out, n, fmt, ap);
  if (k < 0) {
    if (n) out[0] = '\0';
    return ecs_err_set(err, ECS_ERR_INVALID, "cannot format a path");
  }
  if ((size_t)k >= n) return too_long(out, n, (size_t)k, err);
  return ECS_OK;
}

ecs_status ecs_path_fmt(char *out, size_t n, ecs_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ecs_status st = vfmt(out, n, err, fmt, ap);
  va_end(ap);
  return st;
}

ecs_status ecs_path_join(char *out, size_t n, const char *dir, const char *name, ecs_err *err) {
  if (!name) name = "";
  if (!dir || !dir[0]) return ecs_path_fmt(out, n, err, "%s", name);
  size_t dl = strlen(dir);
  return ecs_path_fmt(out, n, err, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", name);
}

char *ecs_path_public(const char *path, char *out, size_t n) {
  if (n == 0) return out;
  if (!path || path[0] != '/') {
    snprintf(out, n, "%s", path ? path : "");
    return out;
  }
  char cwd[ECS_PATH_MAX];
  size_t cl = getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
  if (cl > 1 && strncmp(path, cwd, cl) == 0 && path[cl] == '/' && path[cl + 1]) {
    snprintf(out, n, "%s", path + cl + 1);
    return out;
  }
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/')
    len--; /* "/data/set/" names "set" */
  size_t start = len;
  while (start > 0 && path[start - 1] != '/')
    start--;
  if (start == len)
    snprintf(out, n, "."); /* "/" itself */
  else
    snprintf(out, n, "%.*s", (int)(len - start), path + start);
  return out;
}
