/* model.c - the model loader (output names and result freeing: model-names.c).
 *
 * api_model_load is where a model implementation is registered: it picks the served model
 * file (registry.h: --model, else the registry's active version, else the shipped model) and
 * opens it with the ECS-Net adapter (ecsnet-adapter.c). When there is none the server runs
 * without a model and says so (503 model_not_ready) instead of inventing results. */
#include "model.h"

#include "ecs/path.h"
#include "ecsnet-adapter.h"
#include "registry.h"

#include <stdlib.h>
#include <string.h>

ecs_status api_model_load(const api_model_load_opts *opts, api_model **out, ecs_err *err) {
  *out = NULL;
  char path[ECS_PATH_MAX], name[API_REG_NAME_MAX];
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
