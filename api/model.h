/* model.h - the served model: one ECS-Net model file loaded for inference, shared by workers.
 *
 * An api_model is what the server swaps under a reference count and what `ecsnet cam` opens:
 * the engine's model (batch norm folded, on the chosen device), its registry name and version,
 * and one backend and ctx per worker, made on that worker's first request rather than at open
 * time (a server with 8 workers that sees little traffic keeps one arena, not eight). There is
 * one implementation, so there is no interface table: the api calls the engine with the
 * engine's own types (ecs_infer_opts in, ecs_cam_result out).
 *
 * Threads and ownership: api_model_infer is called concurrently from the pool's workers, each
 * with its own worker index (0..n_workers-1), and a worker slot is only ever touched by the
 * thread with that index, so the slots need no lock. The model itself is read-only while it is
 * open; the server keeps it alive (reference counted) until every in-flight request on it has
 * returned, so a new version can be swapped in while old requests finish. */
#ifndef API_MODEL_H
#define API_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ecs/backend.h"
#include "ecs/base.h"
#include "ecs/ecsnet.h"
#include "ecs/image.h"
#include "input-size.h"

typedef struct api_model_info {
  const char *name;               /* the model's registry name */
  int version;                    /* its version, >= 1 */
  int n_classes;                  /* K: object classes, ids 1..K */
  const char *const *class_names; /* K names, id k at index k-1 */
  const char *backbone;
  /* named groups, ids K+1..K+G (labels.h): group g's members (class ids) are
   * group_member[group_start[g-1] .. group_start[g]) */
  int n_groups;
  const char *const *group_names;
  const uint16_t *group_start;
  const uint16_t *group_member;
  /* every synonym of every class (the file's class_synonyms), with its class id */
  int n_synonyms;
  const char *const *synonyms;
  const int *synonym_class;
  const char *scores;     /* "sigmoid" or "softmax": how the classifier's scores are made */
  float label_threshold;  /* the model's own threshold for predicted labels */
  const char *path;       /* the model file, or NULL */
  const char *device;     /* where it runs ("cpu", "cuda:0"), or NULL */
  api_input_policy input; /* the size the model sees images at (input-size.h) */
} api_model_info;

typedef struct api_model api_model;

/* Which model to open and how to run it. The file is, in this order: path when given; else
 * version `version` of registry name `name` under data_dir when name is given; else the served
 * model of data_dir (registry.h, api_served_model: the active version, else the shipped model,
 * registered on first start). */
typedef struct api_model_opts {
  const char *path; /* a model file (--model, ecsnet cam --model) */
  const char *name; /* a registry name (with version), when path is NULL */
  int version;
  const char *data_dir; /* the registry lives under it; NULL with a path: no registry */
  const char *device;   /* "auto", "cpu", "cuda", "cuda:N" */
  int n_workers;
  int threads; /* compute threads in total, shared out among the workers; 0: the cores */
  /* The shipped model (--shipped-model, api_shipped_model_path): NULL to look beside the
   * program, "" or "none" for none, else the file. */
  const char *shipped_model;
  /* The engine options of every worker's backend; n_threads is ignored (threads is shared
   * out among the workers). */
  ecs_backend_params engine;
  /* When not NULL: a line for the log about the choice of model (note_n bytes; "" when there
   * is nothing to say), e.g. a registry moved from an earlier shipped default. */
  char *note;
  size_t note_n;
} api_model_opts;

/* Opens the model opts names. ECS_ERR_IO when there is none anywhere (the server then runs
 * without a model: ready = 503); ECS_ERR_UNSUPPORTED when the device asked for cannot be used;
 * a bad file ECS_ERR_IO or ECS_ERR_FORMAT naming it. On success *out is a new model. */
ecs_status api_model_open(const api_model_opts *opts, api_model **out, ecs_err *err);
void api_model_free(api_model *m); /* accepts NULL */

/* The model's name, version, classes and device; valid while m is open. */
const api_model_info *api_model_describe(const api_model *m);

/* Runs ecs_model_infer on the worker's own backend and ctx. cancel (may be NULL) is polled
 * between ops: when it is set the run stops with ECS_ERR_CANCELLED. A worker index outside
 * 0..n_workers-1 is ECS_ERR_INVALID. *out as ecs_model_infer (ecs_cam_result_free). */
ecs_status api_model_infer(api_model *m, int worker, const atomic_bool *cancel,
                           const ecs_image *img, const ecs_infer_opts *opts, ecs_cam_result **out,
                           ecs_err *err);

#endif
