/* ecs/path.h - file paths built from parts, with one size and no silent truncation.
 *
 * Every path the programs build (the registry's versions, the job store, datasets, models,
 * the shipped model beside the executable, the files `ecsnet cam` writes) is at most
 * ECS_PATH_MAX bytes, NUL included, and is made by the two functions below, which fail with a
 * message naming the path instead of cutting it short: a truncated path names another file. */
#ifndef ECS_PATH_H
#define ECS_PATH_H

#include <stddef.h>

#include "ecs/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ECS_PATH_MAX 4096 /* bytes of a path, NUL included (Linux's PATH_MAX) */

/* out = dir "/" name (one slash between them, none added when dir ends in one; dir NULL or
 * "": name alone). ECS_ERR_LIMIT, out "" and err "path too long (N bytes, the limit is ...):
 * DIR/NAME..." when it needs more than n bytes. */
ecs_status ecs_path_join(char *out, size_t n, const char *dir, const char *name, ecs_err *err);

/* out = the printf-style path; the same failure as ecs_path_join. */
ecs_status ecs_path_fmt(char *out, size_t n, ecs_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The form of path that may go into a file others read (a model's provenance and training
 * record): a relative path as given; an absolute one relative to the working directory when it
 * lies below it, else its last component alone, so no record names the directories of the
 * machine it was made on. out (n bytes) is cut short only past n. Returns out. */
char *ecs_path_public(const char *path, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
