/* optim.c - SGD with momentum and Adam over an ecs_params store, and the poly schedule.
 *
 * The update rules follow torch.optim (1.x, single-tensor path) operation by operation, in
 * float, so that a run here and a run in PyTorch from the same gradients stay within rounding
 * of each other step after step. Updates run on the host: in place for host stores, through a
 * host copy for device stores (see ecs/optim.h). State is host memory, one slot per parameter
 * that trains, and is saved beside the parameters in the same checkpoint. */
#include "ecs/optim.h"
#include "backend-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
  ecs_tensor *p; /* the parameter; its .grad is the gradient */
  float lr_mult;
  int decay;
  float *m1, *m2; /* momentum buffer or exp_avg; exp_avg_sq (Adam) */
  float *hp, *hg; /* host copies for device stores, NULL for host ones */
} slot;

struct ecs_optim {
  ecs_params *ps;
  ecs_optim_params hp;
  float lr;
  int64_t steps;
  slot *s;
  size_t n;
  int host;
};

static const char *state_names[2][2] = {{"momentum", NULL}, {"exp_avg", "exp_avg_sq"}};

ecs_optim *ecs_optim_new(ecs_params *ps, const ecs_optim_params *p, ecs_err *err) {
  if (!ps || !p) {
    ecs_err_set(err, ECS_ERR_INVALID, "optimiser: no parameters or settings");
    return NULL;
  }
  if (p->kind != ECS_OPTIM_SGD && p->kind != ECS_OPTIM_ADAM) {
    ecs_err_set(err, ECS_ERR_INVALID, "optimiser: unknown kind %d", (int)p->kind);
    return NULL;
  }
  if (!(p->lr >= 0) || !(p->weight_decay >= 0) || !(p->momentum >= 0 && p->momentum < 1) ||
      !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps >= 0)) {
    ecs_err_set(err, ECS_ERR_INVALID,
                "optimiser: lr, weight decay and eps must be >= 0, momentum and betas in [0, 1)");
    return NULL;
  }
  if (!ecs_params_buffer_type(ps)) {
    ecs_err_set(err, ECS_ERR_INVALID, "optimiser: the parameter store is not allocated");
    return NULL;
  }
  ecs_optim *o = calloc(1, sizeof *o);
  size_t n = ecs_params_count(ps);
  if (o) o->s = calloc(n ? n : 1, sizeof *o->s);
  if (!o || !o->s) {
    free(o);
    ecs_err_set(err, ECS_ERR_NOMEM, "optimiser: out of memory");
    return NULL;
  }
  o->ps = ps;
  o->hp = *p;
  if (o->hp.kind == ECS_OPTIM_ADAM) {
    if (o->hp.beta1 == 0) o->hp.beta1 = 0.9f;
    if (o->hp.beta2 == 0) o->hp.beta2 = 0.999f;
    if (o->hp.eps == 0) o->hp.eps = 1e-8f;
  }
  o->lr = p->lr;
  o->host = ecs_params_buffer_type(ps) == ecs_host_buffer_type();
  int nstate = p->kind == ECS_OPTIM_ADAM ? 2 : (p->momentum > 0 ? 1 : 0);
  for (size_t i = 0; i < n; i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    if (!t->requires_grad || t->type != ECS_F32) continue;
    if (!t->grad) {
      ecs_optim_free(o);
      ecs_err_set(err, ECS_ERR_INVALID,
                  "optimiser: '%s' trains but has no gradient (ecs_params_alloc_grads)", t->name);
      return NULL;
    }
    slot *s = &o->s[o->n++];
    s->p = t;
    s->lr_mult = 1;
    s->decay = 1;
    size_t ne = (size_t)ecs_nelements(t);
    if (nstate >= 1) s->m1 = calloc(ne ? ne : 1, sizeof(float));
    if (nstate >= 2) s->m2 = calloc(ne ? ne : 1, sizeof(float));
    if (!o->host) {
      s->hp = malloc((ne ? ne : 1) * sizeof(float));
      s->hg = malloc((ne ? ne : 1) * sizeof(float));
    }
    if ((nstate >= 1 && !s->m1) || (nstate >= 2 && !s->m2) || (!o->host && (!s->hp || !s->hg))) {
      ecs_optim_free(o);
      ecs_err_set(err, ECS_ERR_NOMEM, "optimiser: out of memory");
      return NULL;
    }
  }
  return o;
}

void ecs_optim_free(ecs_optim *o) {
  if (!o) return;
  for (size_t i = 0; i < o->n; i++) {
    free(o->s[i].m1);
    free(o->s[i].m2);
    free(o->s[i].hp);
    free(o->s[i].hg);
  }
  free(o->s);
  free(o);
}

ecs_status ecs_optim_set_group(ecs_optim *o, const char *prefix, float lr_mult, int decay,
                               ecs_err *err) {
  if (!o || !prefix) return ecs_err_set(err, ECS_ERR_INVALID, "optimiser group: no prefix");
  if (!(lr_mult >= 0))
    return ecs_err_set(err, ECS_ERR_INVALID, "optimiser group '%s': lr multiplier < 0", prefix);
  size_t len = strlen(prefix), hits = 0;
  for (size_t i = 0; i < o->n; i++)
    if (strncmp(o->s[i].p->name, prefix, len) == 0) {
      o->s[i].lr_mult = lr_mult;
      o->s[i].decay = decay != 0;
      hits++;
    }
  if (!hits)
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "optimiser group: no trainable parameter starts with '%s'", prefix);
  return ECS_OK;
}

void ecs_optim_set_lr(ecs_optim *o, float lr) {
  if (o) o->lr = lr;
}
float ecs_optim_lr(const ecs_optim *o) {
  return o ? o->lr : 0;
}
int64_t ecs_optim_steps(const ecs_optim *o) {
  return o ? o->steps : 0;
}

float ecs_poly_lr(float base, int64_t step, int64_t max_steps, float power) {
  if (max_steps <= 0 || step >= max_steps) return 0;
  if (step <= 0) return base;
  return base * powf(1.0f - (float)step / (float)max_steps, power);
}

static void sgd_update(const ecs_optim *o, const slot *s, float *p, const float *g, size_t n) {
  float lr = o->lr * s->lr_mult, wd = s->decay ? o->hp.weight_decay : 0, mom = o->hp.momentum;
  int first = o->steps == 0;
  for (size_t i = 0; i < n; i++) {
    float d = wd != 0 ? g[i] + wd * p[i] : g[i];
    if (s->m1) {
      s->m1[i] = first ? d : mom * s->m1[i] + d;
      d = s->m1[i];
    }
    p[i] = p[i] - lr * d;
  }
}

static void adam_update(const ecs_optim *o, const slot *s, float *p, const float *g, size_t n) {
  float lr = o->lr * s->lr_mult, wd = s->decay ? o->hp.weight_decay : 0;
  float b1 = o->hp.beta1, b2 = o->hp.beta2, eps = o->hp.eps;
  /* the bias corrections are Python floats (double) in torch, cast when applied */
  double t = (double)(o->steps + 1);
  double bc1 = 1.0 - pow((double)b1, t), bc2 = 1.0 - pow((double)b2, t);
  float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  for (size_t i = 0; i < n; i++) {
    float d = wd != 0 ? g[i] + wd * p[i] : g[i];
    /* torch 1.13: exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1), and likewise for the
     * squares with addcmul_ */
    s->m1[i] = s->m1[i] * b1 + (1 - b1) * d;
    s->m2[i] = s->m2[i] * b2 + (1 - b2) * d * d;
    float denom = sqrtf(s->m2[i]) / bc2_sqrt + eps;
    p[i] = p[i] - step_size * (s->m1[i] / denom);
  }
}

ecs_status ecs_optim_step(ecs_optim *o, ecs_err *err) {
  if (!o) return ecs_err_set(err, ECS_ERR_INVALID, "optimiser: none");
  for (size_t i = 0; i < o->n; i++) {
    slot *s = &o->s[i];
    if (s->p->frozen) continue; /* frozen after the optimiser was made */
    s->p->fixed = 0;            /* its values change: backends must not keep copies */
    size_t n = (size_t)ecs_nelements(s->p), bytes = n * sizeof(float);
    float *p = s->p->data, *g = s->p->grad->data;
    if (!o->host) {
      ecs_status st = ecs_tensor_get_bytes(s->p, s->hp, 0, bytes, err);
      if (st == ECS_OK) st = ecs_tensor_get_bytes(s->p->grad, s->hg, 0, bytes, err);
      if (st != ECS_OK) return st;
      p = s->hp;
      g = s->hg;
    }
    if (o->hp.kind == ECS_OPTIM_SGD)
      sgd_update(o, s, p, g, n);
    else
      adam_update(o, s, p, g, n);
    if (!o->host) {
      ecs_status st = ecs_tensor_set_bytes(s->p, s->hp, 0, bytes, err);
      if (st != ECS_OK) return st;
    }
  }
  o->steps++;
  return ECS_OK;
}

/* ---- state on disk ------------------------------------------------------------------------ */

static void state_name(char *buf, size_t n, const slot *s, const char *what) {
  snprintf(buf, n, "optim.%s.%s", s->p->name, what);
}

ecs_status ecs_optim_add_state(const ecs_optim *o, ecs_st_writer *w, ecs_err *err) {
  if (!o || !w) return ecs_err_set(err, ECS_ERR_INVALID, "optimiser state: nothing to write");
  int kind = o->hp.kind == ECS_OPTIM_ADAM;
  if (o->steps > INT32_MAX)
    return ecs_err_set(err, ECS_ERR_LIMIT, "optimiser: step count too large");
  int32_t steps = (int32_t)o->steps;
  ecs_status st = ecs_st_writer_add(w, "optim.step", ECS_I32, 1, (int64_t[]){1}, &steps, err);
  for (size_t i = 0; st == ECS_OK && i < o->n; i++) {
    const slot *s = &o->s[i];
    float *bufs[2] = {s->m1, s->m2};
    for (int k = 0; st == ECS_OK && k < 2; k++) {
      if (!bufs[k]) continue;
      char name[160];
      state_name(name, sizeof name, s, state_names[kind][k]);
      st = ecs_st_writer_add(w, name, ECS_F32, s->p->nd, s->p->ne, bufs[k], err);
    }
  }
  return st;
}

ecs_status ecs_optim_load_state(ecs_optim *o, const ecs_st_file *f, ecs_err *err) {
  if (!o || !f) return ecs_err_set(err, ECS_ERR_INVALID, "optimiser state: nothing to read");
  int kind = o->hp.kind == ECS_OPTIM_ADAM;
  const ecs_st_tensor *step = ecs_st_find(f, "optim.step");
  if (!step || step->type != ECS_I32 || step->nbytes != 4)
    return ecs_err_set(err, ECS_ERR_FORMAT,
                       "optimiser state: 'optim.step' is missing or not one I32");
  /* check everything first so that a bad file leaves the optimiser as it was */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < o->n; i++) {
      slot *s = &o->s[i];
      float *bufs[2] = {s->m1, s->m2};
      for (int k = 0; k < 2; k++) {
        if (!bufs[k]) continue;
        char name[160];
        state_name(name, sizeof name, s, state_names[kind][k]);
        const ecs_st_tensor *t = ecs_st_find(f, name);
        int ok = t && t->type == ECS_F32 && t->nd == s->p->nd;
        for (int d = 0; ok && d < t->nd; d++)
          ok = t->ne[d] == s->p->ne[d];
        if (!ok)
          return ecs_err_set(err, ECS_ERR_FORMAT, "optimiser state: '%s' is %s", name,
                             t ? "not F32 of the parameter's shape" : "missing");
        if (pass) memcpy(bufs[k], t->data, t->nbytes);
      }
    }
  }
  int32_t steps;
  memcpy(&steps, step->data, 4);
  if (steps < 0) return ecs_err_set(err, ECS_ERR_FORMAT, "optimiser state: negative step count");
  o->steps = steps;
  return ECS_OK;
}

ecs_status ecs_optim_save_checkpoint(const ecs_optim *o, const char *path,
                                     const char *const *meta_kv, size_t n_meta, ecs_err *err) {
  if (!o) return ecs_err_set(err, ECS_ERR_INVALID, "checkpoint: no optimiser");
  if (n_meta && !meta_kv) return ecs_err_set(err, ECS_ERR_INVALID, "checkpoint: no metadata");
  ecs_st_writer *w = ecs_st_writer_new(err);
  if (!w) return ECS_ERR_NOMEM;
  ecs_status st = ECS_OK;
  for (size_t i = 0; st == ECS_OK && i < n_meta; i++)
    st = ecs_st_writer_meta(w, meta_kv[2 * i], meta_kv[2 * i + 1], err);
  if (st == ECS_OK) st = ecs_st_writer_add_params(w, o->ps, err);
  if (st == ECS_OK) st = ecs_optim_add_state(o, w, err);
  if (st == ECS_OK) st = ecs_st_writer_save(w, path, err);
  ecs_st_writer_free(w);
  return st;
}
