/* model.c - opening the served model and running it on a worker (model.h).
 *
 * api_model_open picks the file (registry.h: a path, a registry version, or the served-model
 * choice), loads it onto the device once and folds its batch norm; every worker then borrows
 * it read-only with its own backend and ctx. When there is no model the server runs without
 * one and says so (503 model_not_ready) instead of inventing results. */
#include "model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/path.h"
#include "ecs/safetensors.h"
#include "registry.h"

typedef struct worker_slot {
  ecs_backend *be;
  ecs_ctx *ctx;
} worker_slot;

struct api_model {
  ecs_model *model;
  ecs_device *dev;
  char name[API_REG_NAME_MAX];
  int version;
  char path[ECS_PATH_MAX];
  char device[64];
  const char *class_ptrs[ECS_MAX_CLASSES];
  const char *group_ptrs[ECS_MAX_GROUPS];
  char **synonyms; /* n_synonyms strings (malloc'd), each with its class in synonym_class */
  int *synonym_class;
  int n_synonyms;
  api_model_info info;
  int n_workers;
  int threads_per_worker;
  ecs_backend_params engine; /* the engine options of every worker's backend */
  worker_slot *slots;
};

void api_model_free(api_model *m) {
  if (!m) return;
  for (int i = 0; m->slots && i < m->n_workers; i++) {
    ecs_ctx_free(m->slots[i].ctx);
    ecs_backend_free(m->slots[i].be);
  }
  free(m->slots);
  for (int i = 0; i < m->n_synonyms; i++)
    free(m->synonyms[i]);
  free(m->synonyms);
  free(m->synonym_class);
  ecs_model_free(m->model);
  free(m);
}

/* The model file's class_synonyms (a JSON list of K lists of names), when it has them. */
static ecs_status load_synonyms(api_model *m, int K, ecs_err *err) {
  ecs_err e = {0};
  ecs_st_file *f = ecs_st_open(m->path, &e);
  if (!f) return ECS_OK; /* the model loaded from it: nothing more to say */
  const char *v = ecs_st_meta(f, "class_synonyms");
  json_t *a = v ? json_loads(v, 0, NULL) : NULL;
  ecs_status st = ECS_OK;
  size_t n = 0;
  for (size_t k = 0; json_is_array(a) && k < json_array_size(a) && k < (size_t)K; k++)
    n += json_array_size(json_array_get(a, k));
  if (n) {
    m->synonyms = calloc(n, sizeof *m->synonyms);
    m->synonym_class = calloc(n, sizeof *m->synonym_class);
    if (!m->synonyms || !m->synonym_class) st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  for (size_t k = 0; st == ECS_OK && n && k < json_array_size(a) && k < (size_t)K; k++) {
    json_t *syn = json_array_get(a, k);
    for (size_t j = 0; j < json_array_size(syn) && st == ECS_OK; j++) {
      const char *s = json_string_value(json_array_get(syn, j));
      if (!s) continue;
      if (!(m->synonyms[m->n_synonyms] = strdup(s))) {
        st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
        break;
      }
      m->synonym_class[m->n_synonyms++] = (int)k + 1;
    }
  }
  json_decref(a);
  ecs_st_close(f);
  return st;
}

const api_model_info *api_model_describe(const api_model *m) {
  return &m->info;
}

/* The file opts names, with its registry name and version. */
static ecs_status model_file(const api_model_opts *o, char path[ECS_PATH_MAX],
                             char name[API_REG_NAME_MAX], int *version, ecs_err *err) {
  if (o->path && o->path[0] && !(o->data_dir && o->data_dir[0])) {
    api_name_of_file(o->path, name);
    *version = 1;
    return ecs_path_join(path, ECS_PATH_MAX, NULL, o->path, err);
  }
  if (!(o->path && o->path[0]) && o->name && o->name[0]) {
    api_reg *reg = api_reg_open(o->data_dir, false, err);
    if (!reg) return err ? err->status : ECS_ERR_IO;
    ecs_status st = api_reg_path(reg, o->name, o->version, path, ECS_PATH_MAX, err);
    api_reg_free(reg);
    snprintf(name, API_REG_NAME_MAX, "%s", o->name);
    *version = o->version;
    return st;
  }
  return api_served_model(o, path, ECS_PATH_MAX, name, version, err);
}

ecs_status api_model_open(const api_model_opts *opts, api_model **out, ecs_err *err) {
  *out = NULL;
  api_model *m = calloc(1, sizeof *m);
  if (!m) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  ecs_status st = model_file(opts, m->path, m->name, &m->version, err);
  if (st != ECS_OK) {
    api_model_free(m);
    return st;
  }
  m->dev = ecs_device_find(opts->device && opts->device[0] ? opts->device : "auto", err);
  int workers = opts->n_workers > 0 ? opts->n_workers : 1;
  if (m->dev) m->slots = calloc((size_t)workers, sizeof *m->slots);
  if (!m->slots) {
    st = m->dev ? ecs_err_set(err, ECS_ERR_NOMEM, "out of memory")
                : (err ? err->status : ECS_ERR_UNSUPPORTED);
    api_model_free(m);
    return st;
  }
  m->n_workers = workers;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int total = opts->threads > 0 ? opts->threads : (int)(cores > 0 ? cores : 1);
  m->threads_per_worker = total / workers > 0 ? total / workers : 1;
  m->engine = opts->engine;
  snprintf(m->device, sizeof m->device, "%s", ecs_device_name(m->dev));
  m->model = ecs_model_load(m->path, ecs_device_buffer_type(m->dev), err);
  /* served models never train: batch norm folded into the convolutions once, here */
  if (m->model && ecs_model_fold_bn(m->model, err) != ECS_OK) {
    ecs_model_free(m->model);
    m->model = NULL;
  }
  if (!m->model) {
    api_model_free(m);
    return err ? err->status : ECS_ERR_IO;
  }
  const ecs_model_config *c = ecs_model_get_config(m->model);
  for (int k = 0; k < c->n_classes; k++)
    m->class_ptrs[k] = c->class_names[k];
  for (int g = 0; g < c->n_groups; g++)
    m->group_ptrs[g] = c->group_names[g];
  if ((st = load_synonyms(m, c->n_classes, err)) != ECS_OK) {
    api_model_free(m);
    return st;
  }
  m->info =
      (api_model_info){.name = m->name,
                       .version = m->version,
                       .n_classes = c->n_classes,
                       .class_names = m->class_ptrs,
                       .backbone = ecs_backbone_name(c->backbone),
                       .n_groups = c->n_groups,
                       .group_names = m->group_ptrs,
                       .group_start = c->group_start,
                       .group_member = c->group_member,
                       .n_synonyms = m->n_synonyms,
                       .synonyms = (const char *const *)m->synonyms,
                       .synonym_class = m->synonym_class,
                       .scores = c->scores == ECS_SCORES_SOFTMAX ? "softmax" : "sigmoid",
                       .label_threshold = c->label_threshold,
                       .path = m->path,
                       .device = m->device,
                       .input = {.side = c->hp.input_side, .max_aspect = c->hp.input_max_aspect}};
  ecs_norm_zero_rgb(c->norm, m->info.input.pad);
  *out = m;
  return ECS_OK;
}

static ecs_ctx *worker_ctx(api_model *m, int worker, ecs_err *err) {
  if (worker < 0 || worker >= m->n_workers) {
    ecs_err_set(err, ECS_ERR_INVALID, "worker %d outside 0..%d", worker, m->n_workers - 1);
    return NULL;
  }
  worker_slot *s = &m->slots[worker];
  if (s->ctx) return s->ctx;
  if (!s->be) {
    ecs_backend_params bp = m->engine;
    bp.n_threads = m->threads_per_worker;
    s->be = ecs_backend_init(m->dev, &bp, err);
    if (!s->be) return NULL;
  }
  s->ctx = ecs_ctx_new(s->be, err);
  return s->ctx;
}

static int poll_cancel(void *user) {
  return user && atomic_load((const atomic_bool *)user);
}

ecs_status api_model_infer(api_model *m, int worker, const atomic_bool *cancel,
                           const ecs_image *img, const ecs_infer_opts *opts, ecs_cam_result **out,
                           ecs_err *err) {
  *out = NULL;
  if (cancel && atomic_load(cancel))
    return ecs_err_set(err, ECS_ERR_CANCELLED, "the request was cancelled");
  if (img->channels != 3)
    return ecs_err_set(err, ECS_ERR_INVALID, "the image has %d channels, not 3", img->channels);
  ecs_ctx *c = worker_ctx(m, worker, err);
  if (!c) return err ? err->status : ECS_ERR_BACKEND;
  ecs_ctx_set_yield(c, poll_cancel, (void *)cancel);
  ecs_status st = ecs_model_infer(m->model, c, img->data, img->height, img->width, opts, out, err);
  ecs_ctx_set_yield(c, NULL, NULL);
  ecs_ctx_reset(c); /* the arena keeps its memory; the tensors of this image go */
  return st;
}
