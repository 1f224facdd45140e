/* cam-response.h - a model's api_cam_result as the HTTP answer: JSON with base64 PNGs, or one
 * PNG (format=png). CAMs become 8-bit grey PNGs (round(255 v)), masks palette PNGs with the VOC
 * colours (255 = ignore), images RGB PNGs. */
#ifndef API_CAM_RESPONSE_H
#define API_CAM_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "api-error.h"
#include "cam-request.h"
#include "model.h"

typedef struct api_cam_timings {
  double decode_ms, queue_ms, infer_ms, total_ms;
} api_cam_timings;

/* On success *body is malloc'd (free()) and *type is a static media type. png_id is the class
 * of `label=` (or -1). A result missing an output the request asked for is a 500: the model
 * broke its contract. */
bool api_cam_render(const api_cam_request *req, const api_model_info *info,
                    const api_cam_result *res, int png_id, const api_cam_timings *t, char **body,
                    size_t *len, const char **type, api_error *err);

/* Writes a result as files in dir (which must exist), with exactly the pixels api_cam_render
 * puts in an answer, one file per output present in res: cam_NAME.png and erased_cam_NAME.png
 * per label (8-bit grey), mask.png, cam_mask.png, ecs_mask.png, head_mask.png (VOC palette),
 * erase_region.png (grey, 255 erased), erased_image.png and overlay.png (RGB), and scores.txt
 * (one "NAME SCORE" line per class, " *" after the labels used). NAME is the class name. On
 * failure err names the file (status 500, or 503 when out of memory). `ecsnet cam` is its
 * user. */
bool api_cam_write_files(const char *dir, const api_model_info *info, const api_cam_result *res,
                         api_error *err);

#endif
