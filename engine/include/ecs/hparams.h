/* ecs/hparams.h - the one table of ECS-Net's hyper-parameters and training-run settings.
 *
 * Every value a training run can be given is one row here: its name, its JSON key in
 * POST /admin/train, its `ecsnet train` flag, its type, its default, its bounds and what it
 * means. The model defaults (ecs_hparams_default, ecs_train_opts_default), the model file's
 * metadata (one key "ecsnet.hparam.NAME" per model value), the command line's flags and its
 * `ecsnet train --help`, the admin API's validation and `ecsnet info --hparams` (the dump the
 * tests hold api/openapi.yaml, docs/method.md and the Python tools against) all read it, so a
 * value added here appears everywhere at once.
 *
 * Two scopes: ECS_HP_MODEL values live in ecs_hparams (inside the model's configuration) and
 * travel in the model file, so a model trains and erases the same way wherever it is loaded;
 * ECS_HP_RUN values live in ecs_train_opts and belong to one run.
 *
 * A row with an `auto_doc` has a default outside its bounds that means "decide for me" (beta
 * 0, overlay -1, steps 0): callers cannot give that value, the model file can hold it. The
 * engine knows nothing of JSON: the admin API turns each JSON value into the text this table
 * parses (ecs_hparam_set), and checks the JSON type against ecs_hparam_json_type. */
#ifndef ECS_HPARAMS_H
#define ECS_HPARAMS_H

#include "ecs/ecsnet.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ecs_train_opts;

typedef enum ecs_hp_kind {
  ECS_HP_FLOAT, /* float */
  ECS_HP_INT,   /* int */
  ECS_HP_I64,   /* int64_t */
  ECS_HP_U64,   /* uint64_t */
  ECS_HP_BOOL,  /* int, 0 or 1; text "true"/"false" (also "1"/"0") */
  ECS_HP_RATES, /* int[ECS_MAX_RATES]: 1..ECS_MAX_RATES values in lo..hi, then zeros; "8,12,16" */
  ECS_HP_ENUM,  /* int, an index into choices; text one of the choices */
} ecs_hp_kind;

typedef enum ecs_hp_scope {
  ECS_HP_MODEL, /* a field of ecs_hparams, stored in the model file */
  ECS_HP_RUN,   /* a field of ecs_train_opts, one run's setting */
} ecs_hp_scope;

typedef struct ecs_hparam {
  const char *name; /* the field's name; metadata key "ecsnet.hparam.NAME" (model scope) */
  const char *key;  /* JSON key of POST /admin/train */
  const char *flag; /* `ecsnet train` flag without "--"; a boolean also takes --no-FLAG unless
                     * FLAG itself starts with "no-" */
  ecs_hp_kind kind;
  ecs_hp_scope scope;
  size_t offset;        /* of the field in ecs_hparams or ecs_train_opts */
  const char *dflt;     /* the default as text (the small backbone's overlay rates differ) */
  double lo, hi;        /* bounds of a number, of each rate; unused for booleans and choices */
  const char *auto_doc; /* non-NULL: dflt lies outside lo..hi and means this */
  const char *const *choices; /* ECS_HP_ENUM: the names, NULL-terminated */
  const char *doc;            /* one line */
} ecs_hparam;

#define ECS_HPARAM_META_PREFIX "ecsnet.hparam."
#define ECS_HPARAM_MAX         64 /* rows the table may grow to (callers size arrays by it) */

/* The table, in the order --help and the dump list it. */
const ecs_hparam *ecs_hparam_table(size_t *n);
/* The row of a name, a JSON key or a flag (without "--"); NULL when none. */
const ecs_hparam *ecs_hparam_find(const char *name);
const ecs_hparam *ecs_hparam_by_key(const char *key);
const ecs_hparam *ecs_hparam_by_flag(const char *flag);
/* "number", "integer", "boolean", "array" (of integers) or "string" (a choice). */
const char *ecs_hparam_json_type(const ecs_hparam *p);
/* The field of p in hp (model scope) or o (run scope); NULL when that struct is not given. */
void *ecs_hparam_ptr(const ecs_hparam *p, ecs_hparams *hp, struct ecs_train_opts *o);
const void *ecs_hparam_cptr(const ecs_hparam *p, const ecs_hparams *hp,
                            const struct ecs_train_opts *o);

/* Parses text into the field dst (from ecs_hparam_ptr) after checking it; ECS_ERR_INVALID
 * with a message naming the value's type and bounds ("a number from 0.01 to 0.99", without the
 * name: callers prefix their own name for it). allow_auto: the auto default is accepted too
 * (model files). dst is unchanged on failure. */
ecs_status ecs_hparam_set(const ecs_hparam *p, void *dst, const char *text, int allow_auto,
                          ecs_err *err);
/* The value of the field src as text that ecs_hparam_set reads back exactly (floats in the
 * fewest digits that round-trip). */
void ecs_hparam_format(const ecs_hparam *p, const void *src, char *buf, size_t n);
/* What the value must be, as in ecs_hparam_set's messages: "a number from 0 to 1". */
void ecs_hparam_expect(const ecs_hparam *p, char *buf, size_t n);

/* The run-scope defaults of the table into o (ecs_train_opts_default calls it). */
void ecs_hparams_run_default(struct ecs_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
