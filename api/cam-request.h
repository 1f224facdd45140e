/* cam-request.h - POST /cam: from an HTTP request (content type, query, body) to a validated
 * api_cam_request, before any image decoding. The api_cam_request is the one description of a
 * /cam request, for the server and for `ecsnet cam` alike (cam.h runs it).
 *
 * Three encodings carry the same parameters: multipart/form-data (field `image` plus text
 * fields), a raw image/jpeg or image/png body (parameters in the query string), and JSON
 * ({"image": "<base64>", ...}). Parameters: labels, outputs, format, label, scales, flip,
 * alpha_bg, refine, label_topk. Labels are class names, synonyms, group names or ids (labels.h).
 * A parameter given twice (query and body, or two form fields) is a 400; an unknown parameter
 * or value a 422, so typos never pass silently. Labels are checked for syntax here and
 * resolved against the model's classes later (api_cam_resolve_labels). */
#ifndef API_CAM_REQUEST_H
#define API_CAM_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api-error.h"
#include "model.h"

#define API_LABEL_MAX       64 /* bytes of a class name, NUL included */
#define API_LABELS_HARD_MAX 256
#define API_MAX_SCALES      ECS_MAX_SCALES
#define API_TOPK_MAX        20 /* label_topk */

/* The outputs a request may ask for (the `outputs` parameter), as bits. */
typedef enum api_output {
  API_OUT_CAM = 1u << 0,
  API_OUT_ERASED_CAM = 1u << 1,
  API_OUT_MASK = 1u << 2, /* the combined mask */
  API_OUT_CAM_MASK = 1u << 3,
  API_OUT_ECS_MASK = 1u << 4, /* 255 outside Phi */
  API_OUT_HEAD_MASK = 1u << 5,
  API_OUT_SCORES = 1u << 6,
  API_OUT_ERASED_IMAGE = 1u << 7,
  API_OUT_OVERLAY = 1u << 8,
  API_OUT_ERASE_REGION = 1u << 9, /* the erase region R: 255 erased, 0 kept */
  API_OUT_COCO = 1u << 10,        /* the combined mask's classes as COCO compressed RLE */
  API_OUT_POLYGONS = 1u << 11,    /* the combined mask's classes as polygon rings */
} api_output;
#define API_OUT_COUNT 12
/* The outputs that are not pictures (never a format=png answer). */
#define API_OUT_NOT_PICTURE (API_OUT_SCORES | API_OUT_COCO | API_OUT_POLYGONS)
#define API_OUT_DEFAULT     (API_OUT_CAM | API_OUT_ERASED_CAM | API_OUT_MASK | API_OUT_SCORES)
/* The outputs that need the erasing branch (ecs_infer_opts.want_erased). */
#define API_OUT_ERASING                                                                            \
  (API_OUT_ERASED_CAM | API_OUT_MASK | API_OUT_ECS_MASK | API_OUT_ERASED_IMAGE |                   \
   API_OUT_ERASE_REGION | API_OUT_COCO | API_OUT_POLYGONS)

/* "cam", "erased_cam", ... for one bit; NULL for anything else. */
const char *api_output_name(unsigned bit);
/* The bit for a name, or 0 when unknown. */
unsigned api_output_parse(const char *name, size_t len);

typedef struct api_kv {
  const char *key;
  const char *value;
} api_kv;

typedef struct api_cam_limits {
  size_t max_labels; /* --max-labels */
  size_t max_image;  /* bytes of the encoded image (the body limit bounds it anyway) */
  size_t max_pixels; /* --max-pixels: width x height, read from the header; 0: no limit */
} api_cam_limits;

typedef struct api_label {
  int id;                   /* >= 0 when given as a number, else -1 */
  char name[API_LABEL_MAX]; /* when given as a name */
} api_label;

typedef enum api_format { API_FORMAT_JSON = 0, API_FORMAT_PNG } api_format;

typedef struct api_cam_request {
  const uint8_t *image; /* the encoded image: into the body, or into image_owned */
  size_t image_len;
  uint8_t *image_owned; /* base64-decoded bytes (JSON) */
  bool labels_given;
  api_label labels[API_LABELS_HARD_MAX];
  int n_labels;
  unsigned outputs; /* api_output bits */
  bool outputs_given;
  api_format format;
  bool png_label_given; /* `label=`: which label's map a PNG CAM shows */
  api_label png_label;
  float scales[API_MAX_SCALES];
  int n_scales;
  bool flip;
  bool alpha_bg_given; /* `alpha_bg`: the CAM mask's background score instead of the model's */
  float alpha_bg;
  bool refine;       /* edge-aware refinement of the CAMs before the masks ... */
  bool refine_given; /* ... when given; else the model's default */
  int label_topk;    /* 0: the caller's default (--label-topk) */
  size_t max_pixels; /* the limit the image is decoded under (api_cam_limits) */
} api_cam_request;

typedef struct api_http_in {
  const char *content_type; /* the header value, or NULL */
  const uint8_t *body;
  size_t body_len;
  const api_kv *query; /* query string arguments, already URL-decoded */
  size_t n_query;
} api_http_in;

/* Fills req from in. On failure err holds the status (400, 413, 415, 422) and req owns
 * nothing. On success release with api_cam_request_free. */
bool api_cam_request_parse(const api_http_in *in, const api_cam_limits *lim, api_cam_request *req,
                           api_error *err);
void api_cam_request_free(api_cam_request *req);

/* The parameters alone, as text (the command line's options): the same names, values,
 * defaults and errors as api_cam_request_parse, with no image (req->image stays NULL; the
 * caller reads it). */
bool api_cam_params_parse(const api_kv *params, size_t n, const api_cam_limits *lim,
                          api_cam_request *req, api_error *err);

/* Maps the request's labels to label ids 0..K+G of a model (0: background; K+1..: groups)
 * through api_label_resolve: 422 unknown_label or ambiguous_label for a name, unknown_label for
 * an id outside 0..K+G, duplicate_label for a label named twice. ids receives at most
 * API_LABELS_HARD_MAX. */
bool api_cam_resolve_labels(const api_cam_request *req, const api_model_info *info, int *ids,
                            int *n_ids, api_error *err);
/* One label (the png label, `label=`) as a class id 0..K, with the same errors. */
bool api_cam_resolve_label(const api_label *l, const api_model_info *info, int *id, api_error *err);

#endif
