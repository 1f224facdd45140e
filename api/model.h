/* model.h - the one interface through which the server runs a model.
 *
 * The server knows nothing of networks: it validates a request, decodes the image, and hands
 * an api_cam_input to a model's run function on a worker thread; it renders the api_cam_result
 * to JSON or PNG. Whoever plugs ECS-Net in implements api_model_iface (usually a thin adapter
 * over ecs_model_infer) and api_model_load below; nothing else in server/ or api/ changes.
 *
 * Threads and ownership: run is called concurrently from the pool's workers, each with its own
 * worker index (0..n_workers-1) so an implementation can keep per-worker backend streams and
 * scratch; the model itself is borrowed read-only for the whole call, and the server keeps it
 * alive (reference counted) until every in-flight run on it has returned, so a new version can
 * be swapped in while old requests finish. Result buffers are malloc'd by run and freed by
 * api_cam_result_free. */
#ifndef API_MODEL_H
#define API_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ecs/backend.h"
#include "ecs/base.h"

/* The outputs a request may ask for (the `outputs` parameter), as bits. */
typedef enum api_output {
  API_OUT_CAM = 1u << 0,
  API_OUT_ERASED_CAM = 1u << 1,
  API_OUT_MASK = 1u << 2,      /* the combined mask */
  API_OUT_CAM_MASK = 1u << 3,
  API_OUT_ECS_MASK = 1u << 4,  /* 255 outside Phi */
  API_OUT_HEAD_MASK = 1u << 5,
  API_OUT_SCORES = 1u << 6,
  API_OUT_ERASED_IMAGE = 1u << 7,
  API_OUT_OVERLAY = 1u << 8,
} api_output;
#define API_OUT_COUNT 9
#define API_OUT_DEFAULT (API_OUT_CAM | API_OUT_ERASED_CAM | API_OUT_MASK | API_OUT_SCORES)

/* "cam", "erased_cam", ... for one bit; NULL for anything else. */
const char *api_output_name(unsigned bit);
/* The bit for a name, or 0 when unknown. */
unsigned api_output_parse(const char *name, size_t len);

#define API_MAX_SCALES 8

typedef struct api_model_info {
  const char *name;  /* the model's registry name */
  int version;       /* its version, >= 1 */
  int n_classes;     /* K: object classes, ids 1..K */
  const char *const *class_names; /* K names, id k at index k-1 */
  const char *backbone;
  const char *path;   /* the model file, or NULL */
  const char *device; /* where it runs ("cpu", "cuda:0"), or NULL */
} api_model_info;

typedef struct api_cam_input {
  const uint8_t *rgb; /* height x width x 3, borrowed */
  int width, height;
  const int *labels;  /* class ids 1..K, resolved and deduplicated; n_labels 0: predict */
  int n_labels;
  float label_threshold; /* for predicted labels */
  unsigned outputs;   /* api_output bits wanted */
  float scales[API_MAX_SCALES];
  int n_scales;       /* >= 1 */
  bool flip;
  /* Also return the erase region (the pixels erased to make the erased image); no HTTP
   * output asks for it yet, `ecsnet cam` writes it. */
  bool want_erase_region;
  int worker;         /* the calling worker's index */
  /* Set when the client has gone or the deadline has passed; a long run may poll it and
   * return ECS_ERR_CANCELLED. */
  const atomic_bool *cancel;
} api_cam_input;

typedef struct api_cam_result {
  int width, height;     /* of the input image */
  int n_labels;
  int *labels;           /* class ids used (given or predicted) */
  float *scores;         /* K class scores in [0, 1], id k at index k-1; NULL if not asked */
  float *cams;           /* n_labels x height x width in [0, 1]; NULL if not asked */
  float *erased_cams;    /* the same for the erased image; NULL if not asked */
  uint8_t *mask, *cam_mask, *ecs_mask, *head_mask; /* height x width class ids, 255 ignore */
  uint8_t *erased_image, *overlay;                 /* height x width x 3 RGB */
  uint8_t *erase_region; /* height x width, 1 erased, 0 kept; only with want_erase_region */
  int64_t phi;           /* pixels in Phi, the region the ECS loss is computed on */
  double infer_ms;       /* time inside the network */
} api_cam_result;

void api_cam_result_free(api_cam_result *r); /* frees the buffers, not r; accepts NULL */

typedef struct api_model_iface {
  void (*info)(void *ctx, api_model_info *out);
  ecs_status (*run)(void *ctx, const api_cam_input *in, api_cam_result *out, ecs_err *err);
  void (*free)(void *ctx);
} api_model_iface;

typedef struct api_model {
  const api_model_iface *iface;
  void *ctx;
} api_model;

typedef struct api_model_load_opts {
  const char *path;     /* a model file (--model) */
  const char *data_dir; /* the registry lives under it */
  const char *device;   /* "auto", "cpu", "cuda", "cuda:N" */
  int n_workers;
  int threads;          /* compute threads in total */
  /* The shipped model (--shipped-model, api_shipped_model_path): NULL to look beside the
   * program, "" or "none" for none, else the file. */
  const char *shipped_model;
  /* The engine options of every worker's backend; n_threads is ignored (threads is shared
   * out among the workers). */
  ecs_backend_params engine;
} api_model_load_opts;

/* Loads the model to serve: opts->path when given, else the registry's active version under
 * data_dir, else the shipped model (registry.h). ECS_ERR_IO when there is none anywhere (the
 * server then runs without a model: ready = 503); ECS_ERR_UNSUPPORTED when the device asked
 * for cannot be used. On success *out is a new model (api_model_free). */
ecs_status api_model_load(const api_model_load_opts *opts, api_model **out, ecs_err *err);
void api_model_free(api_model *m); /* accepts NULL */

#endif
