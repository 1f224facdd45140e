/* tool_env.h - the engine options of a test tool or benchmark, read from the environment once
 * at its start.
 *
 * The programs that Python tests and benchmark scripts run take the engine options as
 * ecsnet-server and ecsnet do: ECSNET_WINOGRAD, ECSNET_DNNL_PHASES, ECSNET_DNNL_PACK,
 * ECSNET_FUSE, ECSNET_TF32 and ECSNET_CUDA_WORKSPACE_MB, with the values of ecs/options.h. They
 * read them here and pass them into the backends they make; the engine reads no environment. */
#ifndef ECS_TOOL_ENV_H
#define ECS_TOOL_ENV_H

#include <stdio.h>
#include <stdlib.h>

#include "ecs/options.h"

/* Sets p's engine options from the variables that are set (the others keep p's values). On a
 * bad value prints "prog: NAME: why" on stderr and returns 0; 1 otherwise. */
static inline const char *tool_getenv(const char *name, void *user) {
  (void)user;
  return getenv(name);
}

static inline int tool_engine_from_env(ecs_backend_params *p, const char *prog) {
  ecs_err e;
  ecs_err_clear(&e);
  if (ecs_backend_options_lookup(p, tool_getenv, NULL, &e) == ECS_OK) return 1;
  fprintf(stderr, "%s: %s\n", prog, e.msg);
  return 0;
}

#endif
