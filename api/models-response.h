/* models-response.h - the model registry as the answer of GET /v1/models and /admin/models. */
#ifndef API_MODELS_RESPONSE_H
#define API_MODELS_RESPONSE_H

#include "api-error.h"
#include "model.h"

/* GET /v1/models (only_name NULL) or /v1/models/{name}: the registry's names with their
 * versions and metadata, plus the served model (may be NULL) when it is not a registry
 * version. Returns malloc'd JSON text; NULL with err filled: 404 model_not_found when
 * only_name is unknown, 500 when the registry cannot be read, 503 when out of memory. */
char *api_models_json(const char *data_dir, const api_model_info *served, const char *only_name,
                      api_error *err);

#endif
