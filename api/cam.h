/* cam.h - POST /cam through the api, the one door between HTTP and the engine.
 *
 * The server crosses it twice per request and calls no engine function of its own for /cam:
 *   HTTP thread:  api_cam_prepare  the request's content type, query and body -> a validated
 *                                  api_cam_request whose image header was read (pixel limit),
 *                                  or an api_error to answer at once;
 *   worker:       api_cam_run      decode, labels, inference, rendering -> an api_response
 *                                  (status, media type, body, Retry-After), errors included.
 * `ecsnet cam` goes through the same request and api_cam_compute (what api_cam_run does
 * before rendering), then writes files with the encoders of the answer (cam-response.h), so
 * the two give the same pixels for the same image, model and options.
 *
 * The api talks to the engine in the engine's own types: the request becomes one
 * ecs_infer_opts (labels, scales, flip, the threshold for predicted labels, and want_erased
 * exactly when an output needs the erasing branch), and the engine's ecs_cam_result is what
 * is rendered. */
#ifndef API_CAM_H
#define API_CAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "api-error.h"
#include "cam-request.h"
#include "cam-response.h"
#include "model.h"

/* Parses the request (api_cam_request_parse) and reads the image's size from its header: more
 * than lim->max_pixels is a 413 before any pixel buffer exists, so a decompression bomb never
 * reaches a decoder. On success release req with api_cam_request_free. */
bool api_cam_prepare(const api_http_in *in, const api_cam_limits *lim, api_cam_request *req,
                     api_error *err);

/* How the caller runs a request. */
typedef struct api_cam_call {
  int worker;                /* the calling worker's index, 0..n_workers-1 of the model */
  const atomic_bool *cancel; /* set when the client has gone or the deadline passed; NULL */
  float label_threshold;     /* class score above which a label is predicted; 0: the model's */
  int label_topk;            /* the best classes predicted labels come from; 0: 3 */
  uint64_t t0_ns;            /* when the request arrived (ecs_monotonic_ns); 0: unknown */
  double queue_ms;           /* how long it waited for a worker */
} api_cam_call;

/* Decodes req's image under req->max_pixels, resolves its labels against m's classes and runs
 * the model. m NULL (no model loaded) is a 503 model_not_ready after the decode, so a client
 * learns of a bad image first. On success *img and *res are the caller's (ecs_image_free,
 * ecs_cam_result_free). t receives decode_ms and infer_ms (-1 for a stage that did not run)
 * and queue_ms from call. */
bool api_cam_compute(const api_cam_request *req, api_model *m, const api_cam_call *call,
                     ecs_image **img, ecs_cam_result **res, api_cam_timings *t, api_error *err);

/* api_cam_compute, then api_cam_render: out is always filled, with the answer or the error
 * (api_response_free). t as api_cam_compute, with total_ms. */
void api_cam_run(const api_cam_request *req, api_model *m, const api_cam_call *call,
                 api_response *out, api_cam_timings *t);

#endif
