/* cam-response.h - an engine result (ecs_cam_result) as the HTTP answer: JSON with base64 PNGs,
 * or one PNG (format=png); and as files, for `ecsnet cam`. CAMs become 8-bit grey PNGs
 * (round(255 v)), masks palette PNGs with the VOC colours (255 = ignore), images RGB PNGs, the
 * erase region a grey PNG (255 erased, 0 kept), the
 * overlay the labels' pixel-wise max CAM as a jet colour map half over the image. Both the
 * answer and the files go through the same encoders, so they hold the same pixels. */
#ifndef API_CAM_RESPONSE_H
#define API_CAM_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "api-error.h"
#include "cam-request.h"
#include "ecs/ecsnet.h"
#include "ecs/image.h"
#include "model.h"

/* What the answer reports of how it was made: the times of its stages and the size the model
 * saw the image at (the input-size policy's canvas; 0 before the model ran). */
typedef struct api_cam_timings {
  double decode_ms, queue_ms, infer_ms, total_ms;
  int input_w, input_h;
} api_cam_timings;

/* Renders the outputs req asks for: on success out holds status 200, the media type and a
 * malloc'd body (api_response_free). img is the decoded image the result belongs to (the
 * overlay is drawn over it). A result missing an output the request asked for is a 500: the
 * engine broke its contract; a `label=` the result has no CAM for a 422. */
bool api_cam_render(const api_cam_request *req, const api_model_info *info, const ecs_image *img,
                    const ecs_cam_result *res, const api_cam_timings *t, api_response *out,
                    api_error *err);

/* Writes the outputs req asks for as files in dir (which must exist), with exactly the pixels
 * api_cam_render puts in an answer: cam_NAME.png and erased_cam_NAME.png per label (8-bit
 * grey), mask.png, cam_mask.png, ecs_mask.png, head_mask.png (VOC palette), erased_image.png
 * and overlay.png (RGB), erase_region.png (grey, 255 erased), for scores scores.txt (one "NAME
 * SCORE" line per class, " *" after the labels used), for coco and polygons coco.json and
 * polygons.json (the answer's "coco" and "polygons"). NAME is the class name. On failure err
 * names the file. `ecsnet cam` is its user. */
ecs_status api_cam_write_files(const char *dir, const api_cam_request *req,
                               const api_model_info *info, const ecs_image *img,
                               const ecs_cam_result *res, ecs_err *err);

/* The colour heat map (jet) of cam in [0, 1] blended half and half over rgb: out is
 * w x h x 3. Exposed for tests. */
void api_overlay_jet(const uint8_t *rgb, const float *cam, int w, int h, uint8_t *out);

#endif
