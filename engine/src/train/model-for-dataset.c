/* model-for-dataset.c - the model a training run starts from (ecs/train.h).
 *
 * The command line and the server's job runner both start training either from a new model
 * or from a base model whose class list differs from the dataset's; the configuration they
 * build and the weights they carry over are decided here once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/nn.h"
#include "ecs/train.h"

_Static_assert(ECS_DATASET_MAX_CLASSES == ECS_MAX_CLASSES - 1,
               "a dataset holds as many classes as a model");

static ecs_status copy_weights(ecs_model *dst_m, const ecs_model *base, ecs_err *e) {
  ecs_params *dst = ecs_model_params(dst_m), *src = ecs_model_params((ecs_model *)base);
  for (size_t i = 0; i < ecs_params_count(dst); i++) {
    ecs_tensor *t = ecs_params_at(dst, i), *s = ecs_params_find(src, t->name);
    if (!s || strncmp(t->name, "fc8", 3) == 0 || !ecs_same_shape(t, s)) continue;
    size_t nb = ecs_plain_nbytes(t);
    void *tmp = malloc(nb);
    ecs_status st = tmp ? ecs_tensor_get_bytes(s, tmp, 0, nb, e)
                        : ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
    if (st == ECS_OK) st = ecs_tensor_set_bytes(t, tmp, 0, nb, e);
    free(tmp);
    if (st != ECS_OK) return st;
  }
  return ECS_OK;
}

int ecs_model_has_classes_of(const ecs_model *m, const ecs_dataset *ds) {
  const ecs_model_config *c = ecs_model_get_config(m);
  if (c->n_classes != ecs_dataset_n_classes(ds)) return 0;
  for (int k = 1; k <= c->n_classes; k++)
    if (strcmp(c->class_names[k - 1], ecs_dataset_class_name(ds, k)) != 0) return 0;
  return 1;
}

ecs_model *ecs_model_for_dataset(const ecs_dataset *ds, ecs_backbone b, const ecs_model *base,
                                 ecs_buffer_type *buft, uint64_t seed, ecs_err *err) {
  ecs_model_config *cfg = malloc(sizeof *cfg);
  if (!cfg) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  int k_classes = ecs_dataset_n_classes(ds);
  if (base)
    *cfg = *ecs_model_get_config(base);
  else
    ecs_model_config_default(cfg, b, k_classes);
  cfg->n_classes = k_classes;
  /* a new classifier: trained with ECS-Net's sigmoid loss, so the sigmoid's label threshold
   * (a softmax base such as ecsnet-imagenet-lite0 records 0.1), a freshly initialised channel
   * 0, and no groups (the base's named the base's classes). The backbone, its input
   * normalisation (cfg->norm) and batch-norm epsilon (the backbone's) stay the base's. */
  cfg->scores = ECS_SCORES_SIGMOID;
  cfg->label_threshold = 0.5f;
  cfg->bg_channel_added = 0;
  cfg->n_groups = 0;
  cfg->refine = 0;
  for (int k = 1; k <= k_classes && k <= ECS_MAX_CLASSES; k++)
    snprintf(cfg->class_names[k - 1], ECS_CLASS_NAME_MAX, "%s", ecs_dataset_class_name(ds, k));
  ecs_model *m = ecs_model_new(cfg, buft, seed, err);
  free(cfg);
  if (m && base && copy_weights(m, base, err) != ECS_OK) {
    ecs_model_free(m);
    m = NULL;
  }
  return m;
}
