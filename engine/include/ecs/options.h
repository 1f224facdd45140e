/* ecs/options.h - the engine options of ecs_backend_params by name, as text.
 *
 * The engine reads no environment. The programs around it do, once, at their edge: the
 * server's settings table (a flag, an ECSNET_* variable or a --config line), the command line
 * and the test tools (ECSNET_* variables). They all hand the text to ecs_backend_option_set,
 * so every door spells, checks and means the options the same way.
 *
 *   name               variable                   values
 *   winograd           ECSNET_WINOGRAD            auto | off | 2 | 4        (0: off, as before)
 *   dnnl-phases        ECSNET_DNNL_PHASES         auto | off | 2..64        (0: off)
 *   dnnl-pack          ECSNET_DNNL_PACK           auto | off | 1..65536     (0: off)
 *   fuse               ECSNET_FUSE                auto | off                (1: auto, 0: off)
 *   tf32               ECSNET_TF32                on | off                  (1: on, 0: off)
 *   cuda-workspace-mb  ECSNET_CUDA_WORKSPACE_MB   0..1048576                (0: the default)
 *
 * The numbers in parentheses are the values these variables took before they were options,
 * still accepted, as is an empty value for the default. */
#ifndef ECS_OPTIONS_H
#define ECS_OPTIONS_H

#include "ecs/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ecs_backend_option {
  const char *name;   /* "dnnl-phases": the server's --dnnl-phases and config key */
  const char *env;    /* "ECSNET_DNNL_PHASES" */
  const char *values; /* "auto|off|N", for help texts */
  const char *def;    /* the default as text, accepted by ecs_backend_option_set */
} ecs_backend_option;

/* The options in a fixed order; *n receives their count. */
const ecs_backend_option *ecs_backend_options(size_t *n);

/* The option called name, which may be its variable's name ("ECSNET_FUSE"); NULL if none. */
const ecs_backend_option *ecs_backend_option_find(const char *name);

/* Sets the option called name (or its variable) in p from text. ECS_ERR_INVALID with a message
 * naming the accepted values ("'x' is not one of auto|off|2|4") on a bad value or name; p is
 * then unchanged. */
ecs_status ecs_backend_option_set(ecs_backend_params *p, const char *name, const char *value,
                                  ecs_err *err);

/* Sets every option whose variable lookup(env, user) finds (a non-NULL text) from it, in the
 * table's order; the others keep p's values. The engine reads no environment itself: the
 * command line and the test tools pass getenv. On a bad value, ECS_ERR_INVALID with err naming
 * the variable ("ECSNET_FUSE: 'x' is not one of ..."). */
ecs_status ecs_backend_options_lookup(ecs_backend_params *p,
                                      const char *(*lookup)(const char *env, void *user),
                                      void *user, ecs_err *err);

/* The option's value in p as text ("auto", "off", "4"), in buf (n bytes); returns buf. */
const char *ecs_backend_option_get(const ecs_backend_params *p, const ecs_backend_option *o,
                                   char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
