/* input-size.h - the input-size policy of /cam and `ecsnet cam`: the size the model sees an
 * image at, and the results brought back to the size of the image sent.
 *
 * One policy for every model, set by two of its hyper-parameters (ecs/hparams.h):
 * - input_side S: the image is resized, keeping its aspect ratio, so that its shorter side is S
 *   (auto, S <= 0: the image's own shorter side, at least ECS_MODEL_MIN_SIDE); small images
 *   are upsampled, large ones downsampled;
 * - input_max_aspect A: the longer side is then at most A * S; a longer image is scaled down
 *   until it fits and its shorter side is padded up to S with the colour the model's
 *   normalisation maps to zero, the image centred.
 * So the model never sees more than A * S * S pixels (ImageNet lite0: 900 x 225) and never a
 * side under the minimum. Multi-scale inference scales this size. Every output (CAMs, masks,
 * the erase region and the erased image) is cut out of the padding and resized back to the
 * original width and height, so a 1x1 PNG gets a 1x1 mask and a 4000x3000 photo a 4000x3000
 * one. */
#ifndef API_INPUT_SIZE_H
#define API_INPUT_SIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "ecs/ecsnet.h"
#include "ecs/image.h"

typedef struct api_input_policy {
  int side;         /* input_side; <= 0: auto */
  float max_aspect; /* input_max_aspect; < 1: no cap */
  uint8_t pad[3];   /* the padding colour (ecs_norm_zero_rgb) */
} api_input_policy;

/* Where a w x h image goes: scaled to scaled_w x scaled_h, placed at (x, y) on a canvas of
 * canvas_w x canvas_h (the padding around it). */
typedef struct api_input_plan {
  int scaled_w, scaled_h;
  int x, y;
  int canvas_w, canvas_h;
} api_input_plan;

/* The plan for a w x h image (both >= 1) under p; false when the model sees the image as it
 * is (canvas = image, no padding). Sides are clamped to 10^9, so the pixel limit refuses
 * what cannot be held. */
bool api_input_size(int w, int h, const api_input_policy *p, api_input_plan *plan);

/* The image under plan: scaled (antialiased when smaller) and padded with p->pad. NULL with
 * ECS_ERR_NOMEM. */
ecs_image *api_input_image(const ecs_image *img, const api_input_plan *plan,
                           const api_input_policy *p, ecs_err *err);

/* Brings every map of r (computed on the plan's canvas, r->w x r->h) back to w x h in place:
 * the image's rectangle cut out of the padding, CAMs resampled bilinearly with half-pixel
 * centres, class ids, regions and the erased image by the nearest sample; Phi is counted
 * again. plan NULL: the whole of r. ECS_ERR_NOMEM leaves r as it was. */
ecs_status api_cam_result_resize(ecs_cam_result *r, const api_input_plan *plan, int w, int h,
                                 ecs_err *err);

#endif
