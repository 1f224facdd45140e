/* ecs_optimcheck - runs the engine's optimisers over gradients supplied in a file, for the
 * comparison with torch.optim in tests/python/test_optim_torch.py.
 *
 * usage: ecs_optimcheck IN.safetensors OUT.safetensors WORKDIR
 * IN holds "p.<name>" (initial parameters) and "g.<k>.<name>" (the gradient at step k), with
 * metadata: kind (sgd|adam), lr, momentum, weight_decay, beta1, beta2, eps, steps, max_steps,
 * power (poly schedule), groups ("prefix:mult:decay;..."), frozen (comma-separated names), and
 * resume_at (after that many steps, save a checkpoint in WORKDIR, drop everything, rebuild from
 * the checkpoint alone and go on; 0: never). OUT gets the final parameters under their names
 * and the optimiser state under its checkpoint names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/optim.h"

static const char *meta(const ecs_st_file *f, const char *k, const char *def) {
  const char *v = ecs_st_meta(f, k);
  return v ? v : def;
}

static int die(const char *what, const ecs_err *err) {
  fprintf(stderr, "ecs_optimcheck: %s: %s\n", what, err->msg);
  return 1;
}

static int is_frozen(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    p += len + (e ? 1 : 0);
  }
  return 0;
}

/* The store described by the "p." tensors, zero-filled, with gradients. */
static ecs_params *build(const ecs_st_file *in, const char *frozen, ecs_err *err) {
  ecs_params *ps = ecs_params_new(err);
  for (size_t i = 0; ps && i < ecs_st_count(in); i++) {
    const ecs_st_tensor *t = ecs_st_at(in, i);
    if (strncmp(t->name, "p.", 2) != 0) continue;
    if (!ecs_params_add(ps, t->name + 2, t->type, t->nd, t->ne, !is_frozen(frozen, t->name + 2),
                        err)) {
      ecs_params_free(ps);
      return NULL;
    }
  }
  if (!ps ||
      ecs_params_alloc(ps, ecs_device_buffer_type(ecs_device_find("cpu", NULL)), err) != ECS_OK ||
      ecs_params_alloc_grads(ps, err) != ECS_OK) {
    ecs_params_free(ps);
    return NULL;
  }
  return ps;
}

static ecs_optim *make_optim(const ecs_st_file *in, ecs_params *ps, ecs_err *err) {
  ecs_optim_params hp = {
      .kind = strcmp(meta(in, "kind", "sgd"), "adam") == 0 ? ECS_OPTIM_ADAM : ECS_OPTIM_SGD,
      .lr = strtof(meta(in, "lr", "0.01"), NULL),
      .weight_decay = strtof(meta(in, "weight_decay", "0"), NULL),
      .momentum = strtof(meta(in, "momentum", "0"), NULL),
      .beta1 = strtof(meta(in, "beta1", "0"), NULL),
      .beta2 = strtof(meta(in, "beta2", "0"), NULL),
      .eps = strtof(meta(in, "eps", "0"), NULL),
  };
  ecs_optim *o = ecs_optim_new(ps, &hp, err);
  char groups[1024];
  snprintf(groups, sizeof groups, "%s", meta(in, "groups", ""));
  for (char *save = NULL, *g = strtok_r(groups, ";", &save); o && g;
       g = strtok_r(NULL, ";", &save)) {
    /* prefix:mult:decay, where the prefix may be empty */
    char *c1 = strchr(g, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1) *c1 = '\0';
    if (!c2 || ecs_optim_set_group(o, g, strtof(c1 + 1, NULL), atoi(c2 + 1), err) != ECS_OK) {
      if (err->status == ECS_OK) ecs_err_set(err, ECS_ERR_INVALID, "bad group '%s'", g);
      ecs_optim_free(o);
      return NULL;
    }
  }
  return o;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: ecs_optimcheck IN.safetensors OUT.safetensors WORKDIR\n");
    return 2;
  }
  ecs_err err = {0};
  ecs_st_file *in = ecs_st_open(argv[1], &err);
  if (!in) return die("input", &err);
  const char *frozen = meta(in, "frozen", "");
  int steps = atoi(meta(in, "steps", "1")), resume_at = atoi(meta(in, "resume_at", "0"));
  int64_t max_steps = atoll(meta(in, "max_steps", "0"));
  float power = strtof(meta(in, "power", "0.9"), NULL), base = strtof(meta(in, "lr", "0.01"), NULL);

  ecs_params *ps = build(in, frozen, &err);
  if (!ps) return die("parameters", &err);
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    char name[128];
    snprintf(name, sizeof name, "p.%s", t->name);
    memcpy(t->data, ecs_st_find(in, name)->data, ecs_plain_nbytes(t));
  }
  ecs_optim *o = make_optim(in, ps, &err);
  if (!o) return die("optimiser", &err);

  for (int k = 0; k < steps; k++) {
    if (max_steps > 0) ecs_optim_set_lr(o, ecs_poly_lr(base, ecs_optim_steps(o), max_steps, power));
    for (size_t i = 0; i < ecs_params_count(ps); i++) {
      ecs_tensor *t = ecs_params_at(ps, i);
      char name[160];
      snprintf(name, sizeof name, "g.%d.%s", k, t->name);
      const ecs_st_tensor *g = ecs_st_find(in, name);
      if (t->grad && g) memcpy(t->grad->data, g->data, ecs_plain_nbytes(t));
    }
    if (ecs_optim_step(o, &err) != ECS_OK) return die("step", &err);
    if (k + 1 == resume_at) {
      char path[1024];
      snprintf(path, sizeof path, "%s/checkpoint.safetensors", argv[3]);
      const char *kv[] = {"stage", "resume-test"};
      if (ecs_optim_save_checkpoint(o, path, kv, 1, &err) != ECS_OK) return die("checkpoint", &err);
      ecs_optim_free(o);
      ecs_params_free(ps);
      /* from here on, only the checkpoint carries the run */
      ecs_st_file *ck = ecs_st_open(path, &err);
      if (!ck) return die("reopen", &err);
      char unused[4096];
      if (!(ps = build(in, frozen, &err)) ||
          ecs_params_load(ps, ck, unused, sizeof unused, &err) != ECS_OK ||
          !(o = make_optim(in, ps, &err)) || ecs_optim_load_state(o, ck, &err) != ECS_OK)
        return die("resume", &err);
      if (ecs_optim_steps(o) != k + 1) {
        fprintf(stderr, "ecs_optimcheck: resumed at step %lld, expected %d\n",
                (long long)ecs_optim_steps(o), k + 1);
        return 1;
      }
      ecs_st_close(ck);
    }
  }
  ecs_st_writer *w = ecs_st_writer_new(&err);
  if (ecs_st_writer_add_params(w, ps, &err) != ECS_OK ||
      ecs_optim_add_state(o, w, &err) != ECS_OK || ecs_st_writer_save(w, argv[2], &err) != ECS_OK)
    return die("output", &err);
  ecs_st_writer_free(w);
  ecs_optim_free(o);
  ecs_params_free(ps);
  ecs_st_close(in);
  return 0;
}
