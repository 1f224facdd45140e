/* ecs/base.h - status codes, error buffers and build information shared by the whole engine.
 *
 * The engine never prints and never exits. Every fallible call returns an ecs_status and, when
 * given one, fills an ecs_err with a message the caller can show as is (one line, no newline). */
#ifndef ECS_BASE_H
#define ECS_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ecs_status {
  ECS_OK = 0,
  ECS_ERR_INVALID,     /* bad argument or bad data from the caller */
  ECS_ERR_NOMEM,       /* allocation failed */
  ECS_ERR_IO,          /* a file could not be read or written */
  ECS_ERR_FORMAT,      /* malformed file or payload */
  ECS_ERR_UNSUPPORTED, /* the backend or build cannot do this */
  ECS_ERR_BACKEND,     /* the backend library reported a failure */
  ECS_ERR_CANCELLED,   /* stopped by a cancel flag */
  ECS_ERR_LIMIT,       /* a configured limit was exceeded (pixels, sizes) */
  ECS_ERR_NOT_FOUND,   /* no such record, name or version */
  ECS_ERR_CONFLICT,    /* the object's state does not allow it (cancel a finished job) */
} ecs_status;

#define ECS_ERR_MSG_MAX 512

typedef struct ecs_err {
  ecs_status status;
  char msg[ECS_ERR_MSG_MAX];
} ecs_err;

/* Records status and a printf-style message in err (which may be NULL); returns status so that
 * call sites can write `return ecs_err_set(err, ECS_ERR_INVALID, "...")`. */
ecs_status ecs_err_set(ecs_err *err, ecs_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ecs_err_clear(ecs_err *err);
const char *ecs_status_str(ecs_status s);

const char *ecs_version(void);

/* Asserts for bugs only (never for user input): print the failing statement and abort. */
void ecs_abort(const char *file, int line, const char *expr) __attribute__((noreturn));
#define ECS_ASSERT(x)                                                                              \
  do {                                                                                             \
    if (!(x)) ecs_abort(__FILE__, __LINE__, #x);                                                   \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
