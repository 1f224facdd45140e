/* model.c - output names, result freeing, and the model loader.
 *
 * api_model_load is where a model implementation is registered: it picks the served model
 * file (registry.h: --model, else the registry's active version, else the shipped model) and
 * opens it with the ECS-Net adapter (ecsnet-adapter.c). When there is none the server runs
 * without a model and says so (503 model_not_ready) instead of inventing results. */
#include "model.h"

#include "ecsnet-adapter.h"
#include "registry.h"

#include <stdlib.h>
#include <string.h>

static const char *const k_output_names[API_OUT_COUNT] = {
    "cam", "erased_cam", "mask", "cam_mask", "ecs_mask", "head_mask", "scores", "erased_image",
    "overlay",
};

const char *api_output_name(unsigned bit) {
  for (int i = 0; i < API_OUT_COUNT; i++)
    if (bit == 1u << i) return k_output_names[i];
  return NULL;
}

unsigned api_output_parse(const char *name, size_t len) {
  for (int i = 0; i < API_OUT_COUNT; i++)
    if (strlen(k_output_names[i]) == len && memcmp(k_output_names[i], name, len) == 0)
      return 1u << i;
  return 0;
}

void api_cam_result_free(api_cam_result *r) {
  if (!r) return;
  free(r->labels);
  free(r->scores);
  free(r->cams);
  free(r->erased_cams);
  free(r->mask);
  free(r->cam_mask);
  free(r->ecs_mask);
  free(r->head_mask);
  free(r->erased_image);
  free(r->overlay);
  memset(r, 0, sizeof *r);
}

ecs_status api_model_load(const api_model_load_opts *opts, api_model **out, ecs_err *err) {
  *out = NULL;
  char path[4096], name[API_REG_NAME_MAX];
  int version = 0;
  ecs_status st = api_served_model(opts, path, sizeof path, name, &version, err);
  if (st != ECS_OK) return st;
  return api_ecsnet_open(path, name, version, opts, out, err);
}

void api_model_free(api_model *m) {
  if (!m) return;
  if (m->iface && m->iface->free) m->iface->free(m->ctx);
  free(m);
}
