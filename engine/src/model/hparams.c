/* hparams.c - the table of ECS-Net's hyper-parameters and training-run settings (ecs/hparams.h)
 * and the few generic functions everything else derives from it with.
 *
 * Where the command line and the admin API once disagreed, the table holds what
 * docs/benchmark.md measured for the shipped model: batch 16 and 500 steps on the 2000
 * training images of its synthetic set, that is 4 epochs. The bounds are the wider of the two
 * front ends' (epochs up to 100000), so every value either accepted before is still accepted. */
#include "ecs/hparams.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/train.h"

static const char *const k_optimizers[] = {"sgd", "adam", NULL}; /* ecs_optim_kind's order */

#define HP(f)  ECS_HP_MODEL, offsetof(ecs_hparams, f)
#define RUN(f) ECS_HP_RUN, offsetof(ecs_train_opts, f)

static const ecs_hparam k_table[] = {
    /* the model's: method.md's symbols, stored in the model file */
    {"beta", "beta", "beta", ECS_HP_FLOAT, HP(beta), "0", 0.1, 1,
     "auto: 0.5 when the shorter side is 320 px or more, else 1", NULL,
     "step 1: rescale of the image fed to F"},
    {"delta", "delta", "delta", ECS_HP_FLOAT, HP(delta), "0.6", 0.01, 0.99, NULL, NULL,
     "step 6: erase threshold on the score map"},
    {"theta", "theta", "theta", ECS_HP_FLOAT, HP(theta), "0.7", 0.01, 0.99, NULL, NULL,
     "step 9: reliability threshold of Phi"},
    {"sigma_factor", "sigma_factor", "sigma-factor", ECS_HP_FLOAT, HP(sigma_factor), "0.08", 0.001,
     1, NULL, NULL, "step 7: blur sigma as a fraction of the shorter side"},
    {"lambda", "lambda", "lambda", ECS_HP_FLOAT, HP(lambda), "1", 0, 100, NULL, NULL,
     "step 11: weight of L_seg after the ramp"},
    {"lambda_ramp", "lambda_ramp", "lambda-ramp", ECS_HP_FLOAT, HP(lambda_ramp), "0.5", 0, 1, NULL,
     NULL, "share of the ECS phase over which lambda ramps up from 0"},
    {"warmup", "warmup", "warmup", ECS_HP_FLOAT, HP(warmup), "0.6", 0, 1, NULL, NULL,
     "share of all steps that train L_cls alone"},
    {"eps", "eps", "eps", ECS_HP_FLOAT, HP(eps), "1e-05", 1e-12, 0.1, NULL, NULL,
     "step 3: epsilon of the max-min normalisation"},
    {"overlay_k", "overlay", "overlay", ECS_HP_INT, HP(overlay_k), "-1", 0, ECS_MAX_RATES,
     "auto: 3 when both sides of the grid of H' exceed 16 cells, else 0", NULL,
     "step 12: extra dilation branches K"},
    {"overlay_rates", "overlay_rates", "overlay-rates", ECS_HP_RATES, HP(overlay_rates), "8,12,16",
     1, 64, NULL, NULL,
     "step 12: dilation rate of each branch (the small backbone's default: 2,3,4)"},
    {"bg_in_phi", "bg_in_phi", "bg-in-phi", ECS_HP_BOOL, HP(bg_in_phi), "true", 0, 1, NULL, NULL,
     "step 9: add confident background to Phi"},
    {"cls_on_erased", "cls_on_erased", "cls-on-erased", ECS_HP_BOOL, HP(cls_on_erased), "true", 0,
     1, NULL, NULL, "step 10: L_cls on the erased image too"},
    {"no_erase", "no_erase", "no-erase", ECS_HP_BOOL, HP(no_erase), "false", 0, 1, NULL, NULL,
     "ablation: plain CAM baseline, no erasing branch and no L_seg"},
    {"no_overlay", "no_overlay", "no-overlay", ECS_HP_BOOL, HP(no_overlay), "false", 0, 1, NULL,
     NULL, "ablation: never add dilation branches"},
    {"no_phi_filter", "no_phi_filter", "no-phi-filter", ECS_HP_BOOL, HP(no_phi_filter), "false", 0,
     1, NULL, NULL, "ablation: Phi is every cell of the grid"},
    {"input_side", "input_side", "input-side", ECS_HP_INT, HP(input_side), "0", 8, 4096,
     "auto: the image's own shorter side (at least 8 px)", NULL,
     "/cam: the shorter side of the image the model sees (images are resized to it)"},
    {"input_max_aspect", "input_max_aspect", "input-max-aspect", ECS_HP_FLOAT, HP(input_max_aspect),
     "4", 1, 64, NULL, NULL,
     "/cam: the longer side at most this times the shorter; a longer image is scaled to fit and "
     "padded"},
    /* the run's */
    {"steps", "steps", "steps", ECS_HP_I64, RUN(max_steps), "0", 1, 1e8, "auto: from epochs", NULL,
     "training steps (give steps or epochs)"},
    {"epochs", "epochs", "epochs", ECS_HP_INT, RUN(epochs), "4", 1, 100000, NULL, NULL,
     "passes over the split, when steps is not given"},
    {"batch", "batch_size", "batch", ECS_HP_INT, RUN(batch), "16", 1, 1024, NULL, NULL,
     "images per step"},
    {"lr", "learning_rate", "lr", ECS_HP_FLOAT, RUN(lr), "0.01", 1e-9, 10, NULL, NULL,
     "base learning rate (poly schedule, classifier x10)"},
    {"optimizer", "optimizer", "optim", ECS_HP_ENUM, RUN(optimizer), "sgd", 0, 0, NULL,
     k_optimizers, "SGD with momentum 0.9 (SEAM's recipe) or Adam"},
    {"crop", "crop", "crop", ECS_HP_INT, RUN(aug.crop), "128", 8, 4096, NULL, NULL,
     "side of the square training crop in pixels"},
    {"seed", "seed", "seed", ECS_HP_U64, RUN(seed), "1", 0, 2147483647, NULL, NULL,
     "initial weights, shuffling, augmentation and dropout"},
    {"checkpoint_every", "checkpoint_every", "checkpoint-every", ECS_HP_INT, RUN(checkpoint_every),
     "10", 1, 1e8, NULL, NULL, "steps between checkpoints (one is also written at the end)"},
};

const ecs_hparam *ecs_hparam_table(size_t *n) {
  *n = sizeof k_table / sizeof k_table[0];
  return k_table;
}

static const ecs_hparam *find_by(size_t field, const char *s) {
  for (size_t i = 0; s && i < sizeof k_table / sizeof k_table[0]; i++) {
    const char *v = *(const char *const *)((const char *)&k_table[i] + field);
    if (strcmp(v, s) == 0) return &k_table[i];
  }
  return NULL;
}

const ecs_hparam *ecs_hparam_find(const char *name) {
  return find_by(offsetof(ecs_hparam, name), name);
}
const ecs_hparam *ecs_hparam_by_key(const char *key) {
  return find_by(offsetof(ecs_hparam, key), key);
}
const ecs_hparam *ecs_hparam_by_flag(const char *flag) {
  return find_by(offsetof(ecs_hparam, flag), flag);
}

const char *ecs_hparam_json_type(const ecs_hparam *p) {
  switch (p->kind) {
  case ECS_HP_FLOAT: return "number";
  case ECS_HP_BOOL: return "boolean";
  case ECS_HP_RATES: return "array";
  case ECS_HP_ENUM: return "string";
  default: return "integer";
  }
}

void *ecs_hparam_ptr(const ecs_hparam *p, ecs_hparams *hp, struct ecs_train_opts *o) {
  char *base = p->scope == ECS_HP_MODEL ? (char *)hp : (char *)o;
  return base ? base + p->offset : NULL;
}

const void *ecs_hparam_cptr(const ecs_hparam *p, const ecs_hparams *hp,
                            const struct ecs_train_opts *o) {
  return ecs_hparam_ptr(p, (ecs_hparams *)hp, (struct ecs_train_opts *)o);
}

void ecs_hparam_expect(const ecs_hparam *p, char *buf, size_t n) {
  switch (p->kind) {
  case ECS_HP_FLOAT: snprintf(buf, n, "a number from %g to %g", p->lo, p->hi); break;
  case ECS_HP_BOOL: snprintf(buf, n, "true or false"); break;
  case ECS_HP_RATES:
    snprintf(buf, n, "1 to %d whole numbers from %g to %g", ECS_MAX_RATES, p->lo, p->hi);
    break;
  case ECS_HP_ENUM: {
    size_t len = (size_t)snprintf(buf, n, "one of");
    for (int i = 0; p->choices[i] && len < n; i++)
      len += (size_t)snprintf(buf + len, n - len, "%s %s", i ? "," : "", p->choices[i]);
    break;
  }
  default: snprintf(buf, n, "an integer from %g to %g", p->lo, p->hi);
  }
}

/* A whole number in lo..hi (the auto default too when allowed). */
static int parse_whole(const ecs_hparam *p, const char *s, int allow_auto, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return 0;
  if ((double)v < p->lo || (double)v > p->hi) {
    if (!allow_auto || !p->auto_doc || v != strtoll(p->dflt, NULL, 10)) return 0;
  }
  *out = v;
  return 1;
}

static int parse_float(const ecs_hparam *p, const char *s, int allow_auto, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return 0;
  if (!(v >= (float)p->lo && v <= (float)p->hi)) {
    if (!allow_auto || !p->auto_doc || v != strtof(p->dflt, NULL)) return 0;
  }
  *out = v;
  return 1;
}

static int parse_rates(const ecs_hparam *p, const char *s, int *out) {
  int r[ECS_MAX_RATES] = {0}, n = 0;
  while (*s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || n >= ECS_MAX_RATES || v < p->lo || v > p->hi) return 0;
    r[n++] = (int)v;
    s = end;
    if (*s == ',' && s[1])
      s++;
    else if (*s)
      return 0;
  }
  if (n == 0) return 0;
  memcpy(out, r, sizeof r);
  return 1;
}

ecs_status ecs_hparam_set(const ecs_hparam *p, void *dst, const char *text, int allow_auto,
                          ecs_err *err) {
  long long w = 0;
  float f = 0;
  int ok = text != NULL;
  if (ok) switch (p->kind) {
    case ECS_HP_FLOAT:
      if ((ok = parse_float(p, text, allow_auto, &f))) *(float *)dst = f;
      break;
    case ECS_HP_INT:
      if ((ok = parse_whole(p, text, allow_auto, &w))) *(int *)dst = (int)w;
      break;
    case ECS_HP_I64:
      if ((ok = parse_whole(p, text, allow_auto, &w))) *(int64_t *)dst = (int64_t)w;
      break;
    case ECS_HP_U64:
      if ((ok = parse_whole(p, text, allow_auto, &w))) *(uint64_t *)dst = (uint64_t)w;
      break;
    case ECS_HP_BOOL:
      ok = !strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "false") ||
           !strcmp(text, "0");
      if (ok) *(int *)dst = !strcmp(text, "true") || !strcmp(text, "1");
      break;
    case ECS_HP_RATES: ok = parse_rates(p, text, (int *)dst); break;
    case ECS_HP_ENUM:
      ok = 0;
      for (int i = 0; p->choices[i] && !ok; i++)
        if (strcmp(text, p->choices[i]) == 0) *(int *)dst = i, ok = 1;
      break;
    }
  if (ok) return ECS_OK;
  char want[160];
  ecs_hparam_expect(p, want, sizeof want);
  return ecs_err_set(err, ECS_ERR_INVALID, "%s must be %s, not '%.40s'", p->name, want,
                     text ? text : "");
}

static void format_float(float v, char *buf, size_t n) {
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, n, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) return;
  }
}

void ecs_hparam_format(const ecs_hparam *p, const void *src, char *buf, size_t n) {
  switch (p->kind) {
  case ECS_HP_FLOAT: format_float(*(const float *)src, buf, n); break;
  case ECS_HP_INT: snprintf(buf, n, "%d", *(const int *)src); break;
  case ECS_HP_I64: snprintf(buf, n, "%lld", (long long)*(const int64_t *)src); break;
  case ECS_HP_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)src); break;
  case ECS_HP_BOOL: snprintf(buf, n, "%s", *(const int *)src ? "true" : "false"); break;
  case ECS_HP_ENUM: {
    int i = *(const int *)src, k = 0;
    while (p->choices[k])
      k++;
    snprintf(buf, n, "%s", i >= 0 && i < k ? p->choices[i] : "?");
    break;
  }
  case ECS_HP_RATES: {
    const int *r = src;
    int last = ECS_MAX_RATES;
    while (last > 0 && r[last - 1] == 0)
      last--;
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < last && len < n; i++)
      len += (size_t)snprintf(buf + len, n - len, "%s%d", i ? "," : "", r[i]);
    break;
  }
  }
}

static void set_default(const ecs_hparam *p, void *dst) {
  ecs_status st = ecs_hparam_set(p, dst, p->dflt, 1, NULL);
  (void)st;
  ECS_ASSERT(st == ECS_OK);
}

void ecs_hparams_default(ecs_hparams *hp) {
  memset(hp, 0, sizeof *hp);
  for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++)
    if (k_table[i].scope == ECS_HP_MODEL)
      set_default(&k_table[i], ecs_hparam_ptr(&k_table[i], hp, NULL));
}

void ecs_hparams_run_default(struct ecs_train_opts *o) {
  for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++)
    if (k_table[i].scope == ECS_HP_RUN)
      set_default(&k_table[i], ecs_hparam_ptr(&k_table[i], NULL, o));
}

/* Every model value within its row's bounds (or its auto default), then what no single row
 * can say: the first K overlay branches need rates. */
ecs_status ecs_hparams_check(const ecs_hparams *hp, ecs_err *err) {
  for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++) {
    const ecs_hparam *p = &k_table[i];
    if (p->scope != ECS_HP_MODEL) continue;
    char text[64];
    union {
      float f;
      int i;
      int r[ECS_MAX_RATES];
    } scratch;
    ecs_hparam_format(p, ecs_hparam_cptr(p, hp, NULL), text, sizeof text);
    if (ecs_hparam_set(p, &scratch, text, 1, err) != ECS_OK) return ECS_ERR_INVALID;
  }
  for (int k = 0; k < hp->overlay_k; k++)
    if (hp->overlay_rates[k] < 1)
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "overlay K = %d, but this model has %d overlay rates", hp->overlay_k, k);
  return ECS_OK;
}
