/* labelstudio.h - the Label Studio ML backend protocol, without the network: the labeling
 * config, the tasks of a /predict call, and one task's prediction.
 *
 * Label Studio (1.23) posts {"tasks": [...], "label_config": "<View>...</View>", ...} to
 * /predict and takes {"results": [one item per task, in order]}. An item with "result" is
 * stored as a prediction; one without it (ecsnet's {"error": ...} items) is skipped.
 *
 * The labeling config: an <Image name=N value="$KEY"/> (the task's data[KEY] is the image)
 * and <BrushLabels> and/or <PolygonLabels> (toName=N) whose <Label value=V/> children name
 * the classes to emit, matched to the model's labels by the api's resolver (labels.h: class
 * names, synonyms and group names, without regard to case); a class the config does not name
 * is emitted under the config's label of its group where the config names one. Config labels
 * the model lacks are ignored, classes the config lacks are not emitted. An optional
 * <Choices> control (toName=N) holds image-level labels in annotations. */
#ifndef API_LABELSTUDIO_H
#define API_LABELSTUDIO_H

#include <jansson.h>
#include <stdbool.h>

#include "api-error.h"
#include "cam-request.h"
#include "ecs/ecsnet.h"
#include "model.h"

#define API_LS_NAME_MAX   64
#define API_LS_MAX_LABELS 64

typedef struct api_ls_control {
  bool present;
  char name[API_LS_NAME_MAX];
  char to_name[API_LS_NAME_MAX];
  int n_labels;
  char labels[API_LS_MAX_LABELS][API_LABEL_MAX];
} api_ls_control;

typedef struct api_ls_config {
  char image_name[API_LS_NAME_MAX]; /* the <Image>'s name */
  char image_key[API_LS_NAME_MAX];  /* its value without the '$' */
  api_ls_control brush, polygon, choices;
} api_ls_config;

/* Reads the config: 422 invalid_label_config without an <Image value="$KEY"> or without a
 * BrushLabels or PolygonLabels control pointing at it. */
bool api_ls_parse_config(const char *xml, api_ls_config *c, api_error *err);

/* One task of a /predict call, what ecsnet needs of it. */
typedef struct api_ls_task {
  json_int_t id;
  const char *image; /* data[image_key], borrowed from the task */
  bool labels_given; /* from data.labels or a Choices annotation */
  int n_labels;
  api_label labels[API_LABELS_HARD_MAX]; /* by name: the model's classes only */
} api_ls_task;

/* Reads a task: 422 invalid_task without data[image_key] as a string. Image-level labels come
 * from data.labels (comma-separated text or a list), else from the newest annotation holding
 * the config's Choices, else none (the classifier predicts). Names the model lacks are
 * dropped; so are duplicates. */
bool api_ls_read_task(const json_t *task, const api_ls_config *c, const api_model_info *info,
                      api_ls_task *t, api_error *err);

/* The prediction of one task: one brushlabels region per class of the combined mask the
 * BrushLabels control names (brush RLE, original_width/height = the image size), one
 * polygonlabels region per outer ring for the PolygonLabels control (points in percent of the
 * image; holes are left out, Label Studio's polygons have none). NULL when out of memory. */
json_t *api_ls_prediction(const api_ls_config *c, const api_model_info *info,
                          const ecs_cam_result *res, const char *model_version);

/* "NAME@VERSION", what /setup and every prediction carry. */
void api_ls_model_version(const api_model_info *info, char *out, size_t n);

#endif
