/* input-size.h - the input-size policy of /cam and `ecsnet cam`: which images the model sees at
 * another size, and the results brought back to the size of the image sent.
 *
 * Today's policy is the smallest: an image with a side under the model's minimum
 * (ECS_MODEL_MIN_SIDE) is upsampled, keeping its aspect ratio, until its shorter side reaches
 * it; every output is then resized back to the original width and height, so a 1x1 PNG gets a
 * 1x1 mask. The real-photo input-size policy (upsampling small photos further, padding extreme
 * aspect ratios) replaces api_input_size's rule and keeps the rest. */
#ifndef API_INPUT_SIZE_H
#define API_INPUT_SIZE_H

#include <stdbool.h>

#include "ecs/ecsnet.h"

/* The size the model is run at for a w x h image; false when it is w x h itself. */
bool api_input_size(int w, int h, int *run_w, int *run_h);

/* Resizes every map of r (computed at r->w x r->h) to w x h in place: CAMs bilinearly with
 * half-pixel centres, class ids, regions and the erased image by the nearest sample; Phi is
 * counted again. ECS_ERR_NOMEM leaves r as it was. */
ecs_status api_cam_result_resize(ecs_cam_result *r, int w, int h, ecs_err *err);

#endif
