/* ecsnet-adapter.h - ECS-Net behind the server's model interface (model.h). */
#ifndef API_ECSNET_ADAPTER_H
#define API_ECSNET_ADAPTER_H

#include "model.h"

/* Loads the ECS-Net model file at path onto opts->device and wraps it as an api_model named
 * name, version. Device errors (CUDA asked for and absent) are ECS_ERR_UNSUPPORTED; a bad
 * file ECS_ERR_IO or ECS_ERR_FORMAT naming it. */
ecs_status api_ecsnet_open(const char *path, const char *name, int version,
                           const api_model_load_opts *opts, api_model **out, ecs_err *err);

/* The colour heat map (jet) of cam in [0, 1] blended half and half over rgb: out is
 * w x h x 3. Exposed for tests. */
void api_overlay_jet(const uint8_t *rgb, const float *cam, int w, int h, uint8_t *out);

#endif
