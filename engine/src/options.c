/* options.c - the engine options of ecs_backend_params from text, and back (ecs/options.h).
 *
 * One row per option: its public name, variable and values, where it lives in the params and
 * what text it takes. Nothing here reads the environment; callers pass the text they read. */
#include "ecs/options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  K_VARIANT,  /* auto | off | a forced variant; "0" is off */
  K_AUTO_OFF, /* auto | off; "1" and "on" are auto, "0" is off */
  K_ON_OFF,   /* on | off, also 1 | 0; stored as 1 | 0 */
  K_COUNT,    /* a whole number lo..hi */
} kind;

typedef struct rule {
  size_t offset; /* of the int field in ecs_backend_params */
  kind k;
  int lo, hi;  /* K_VARIANT, K_COUNT: the numbers taken */
  int only[4]; /* K_VARIANT: when non-zero, the only numbers taken (0-terminated) */
} rule;

#define FIELD(f) offsetof(ecs_backend_params, f)

static const ecs_backend_option k_options[] = {
    {"winograd", "ECSNET_WINOGRAD", "auto|off|2|4", "auto"},
    {"dnnl-phases", "ECSNET_DNNL_PHASES", "auto|off|N", "auto"},
    {"dnnl-pack", "ECSNET_DNNL_PACK", "auto|off|N", "auto"},
    {"fuse", "ECSNET_FUSE", "auto|off", "auto"},
    {"tf32", "ECSNET_TF32", "on|off", "off"},
    {"cuda-workspace-mb", "ECSNET_CUDA_WORKSPACE_MB", "N", "0"},
};

static const rule k_rules[] = {
    {FIELD(winograd), K_VARIANT, 2, 4, {2, 4}},
    {FIELD(phases), K_VARIANT, 2, 64, {0}},
    {FIELD(pack_width), K_VARIANT, 1, 65536, {0}},
    {FIELD(fuse), K_AUTO_OFF, 0, 0, {0}},
    {FIELD(tf32), K_ON_OFF, 0, 0, {0}},
    {FIELD(workspace_mb), K_COUNT, 0, 1048576, {0}},
};

#define N_OPTIONS (sizeof k_options / sizeof k_options[0])
_Static_assert(sizeof k_rules / sizeof k_rules[0] == N_OPTIONS, "one rule per option");

const ecs_backend_option *ecs_backend_options(size_t *n) {
  *n = N_OPTIONS;
  return k_options;
}

const ecs_backend_option *ecs_backend_option_find(const char *name) {
  for (size_t i = 0; name && i < N_OPTIONS; i++)
    if (strcmp(k_options[i].name, name) == 0 || strcmp(k_options[i].env, name) == 0)
      return &k_options[i];
  return NULL;
}

/* A whole number of digits only (no sign, no spaces) that fits an int; false otherwise. */
static int whole(const char *s, int *out) {
  if (!*s) return 0;
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9') return 0;
  errno = 0;
  long v = strtol(s, NULL, 10);
  if (errno || v > 0x7fffffffL) return 0;
  *out = (int)v;
  return 1;
}

static int taken(const rule *r, int v) {
  if (v < r->lo || v > r->hi) return 0;
  if (!r->only[0]) return 1;
  for (int i = 0; i < 4 && r->only[i]; i++)
    if (r->only[i] == v) return 1;
  return 0;
}

ecs_status ecs_backend_options_lookup(ecs_backend_params *p,
                                      const char *(*lookup)(const char *env, void *user),
                                      void *user, ecs_err *err) {
  for (size_t i = 0; i < sizeof k_options / sizeof k_options[0]; i++) {
    const char *v = lookup(k_options[i].env, user);
    ecs_err e;
    ecs_err_clear(&e);
    if (v && ecs_backend_option_set(p, k_options[i].name, v, &e) != ECS_OK)
      return ecs_err_set(err, e.status, "%s: %s", k_options[i].env, e.msg);
  }
  return ECS_OK;
}

ecs_status ecs_backend_option_set(ecs_backend_params *p, const char *name, const char *value,
                                  ecs_err *err) {
  const ecs_backend_option *o = ecs_backend_option_find(name);
  if (!o) return ecs_err_set(err, ECS_ERR_INVALID, "unknown engine option '%s'", name);
  /* empty, as the variables were read before they were options: the default */
  if (!value || !*value) value = o->def;
  const rule *r = &k_rules[o - k_options];
  int v = 0, n;
  switch (r->k) {
  case K_VARIANT:
    if (strcmp(value, "auto") == 0)
      v = 0;
    else if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0)
      v = ECS_OPT_OFF;
    else if (whole(value, &n) && taken(r, n))
      v = n;
    else if (r->only[0])
      return ecs_err_set(err, ECS_ERR_INVALID, "'%s' is not one of %s", value, o->values);
    else
      return ecs_err_set(err, ECS_ERR_INVALID, "'%s' is not one of %s (N: %d..%d)", value,
                         o->values, r->lo, r->hi);
    break;
  case K_AUTO_OFF:
    if (strcmp(value, "auto") == 0 || strcmp(value, "on") == 0 || strcmp(value, "1") == 0)
      v = 0;
    else if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0)
      v = ECS_OPT_OFF;
    else
      return ecs_err_set(err, ECS_ERR_INVALID, "'%s' is not one of %s", value, o->values);
    break;
  case K_ON_OFF:
    if (strcmp(value, "on") == 0 || strcmp(value, "1") == 0)
      v = 1;
    else if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0)
      v = 0;
    else
      return ecs_err_set(err, ECS_ERR_INVALID, "'%s' is not one of %s", value, o->values);
    break;
  case K_COUNT:
    if (!whole(value, &v) || !taken(r, v))
      return ecs_err_set(err, ECS_ERR_INVALID, "'%s' is not a whole number in %d..%d", value, r->lo,
                         r->hi);
    break;
  }
  *(int *)((char *)p + r->offset) = v;
  return ECS_OK;
}

const char *ecs_backend_option_get(const ecs_backend_params *p, const ecs_backend_option *o,
                                   char *buf, size_t n) {
  const rule *r = &k_rules[o - k_options];
  int v = *(const int *)((const char *)p + r->offset);
  const char *word = NULL;
  switch (r->k) {
  case K_VARIANT:
  case K_AUTO_OFF: word = v == 0 ? "auto" : v < 0 ? "off" : NULL; break;
  case K_ON_OFF: word = v > 0 ? "on" : "off"; break;
  case K_COUNT: break;
  }
  if (word)
    snprintf(buf, n, "%s", word);
  else
    snprintf(buf, n, "%d", v);
  return buf;
}
