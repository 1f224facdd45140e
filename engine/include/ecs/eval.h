/* ecs/eval.h - evaluation of CAM masks, ECS pseudo masks and combined masks on a dataset.
 *
 * mIoU comes from one confusion matrix accumulated over the whole split (background included,
 * ground truth 255 ignored), never from per-image averages. The CAM mask depends on the
 * background score alpha_bg, so it is scored for a sweep of alphas at once (the CAMs are
 * computed once per image) and the best alpha is reported, for storing in the model file. The
 * ECS pseudo mask is scored as precision (the share of pixels in Phi whose label is right,
 * background included) and coverage (the share of valid pixels in Phi); the combined mask
 * fills the pixels outside Phi from the CAM mask at each alpha. CAMs use the image-level
 * labels of the dataset, as weakly supervised pseudo labels do; classification mAP comes from
 * the class scores. */
#ifndef ECS_EVAL_H
#define ECS_EVAL_H

#include "ecs/dataset.h"
#include "ecs/ecsnet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ECS_EVAL_MAX_ALPHAS 32

typedef struct ecs_eval_opts {
  const char *split; /* default "train" */
  int max_images;    /* 0: all */
  int n_alphas;      /* 0: 0.00, 0.05, ..., 0.95 */
  float alphas[ECS_EVAL_MAX_ALPHAS];
  ecs_infer_opts infer; /* scales and flip; labels are the dataset's */
  size_t max_pixels;    /* 0: no limit */
  /* progress: called after each image; a non-zero return cancels (ECS_ERR_CANCELLED) */
  int (*progress)(void *user, int done, int total);
  void *user;
} ecs_eval_opts;

typedef struct ecs_eval_class {
  double iou_cam, iou_combined; /* at the best alphas */
  double iou_head;
  int64_t gt_pixels;
} ecs_eval_class;

typedef struct ecs_eval_result {
  int n_images, n_classes;
  int n_alphas;
  float alphas[ECS_EVAL_MAX_ALPHAS];
  double miou_cam[ECS_EVAL_MAX_ALPHAS];      /* CAM mask mIoU per alpha */
  double miou_combined[ECS_EVAL_MAX_ALPHAS]; /* combined mask mIoU per alpha */
  int best_cam, best_combined;               /* indices into alphas */
  double fg_recall_cam, fg_precision_cam;    /* object pixels found (right class) at best_cam */
  double miou_head;                          /* the network's own argmax over present classes */
  double phi_precision, phi_coverage;        /* ECS pseudo mask */
  double phi_precision_fg, phi_precision_bg;
  double map; /* classification mAP over classes with positives */
  ecs_eval_class classes[ECS_DATASET_MAX_CLASSES + 1]; /* 0 = background */
  double seconds;
} ecs_eval_result;

void ecs_eval_opts_default(ecs_eval_opts *o);
/* The dataset's classes must match the model's (names, in order). */
ecs_status ecs_eval_run(const ecs_model *m, ecs_ctx *ctx, ecs_dataset *ds, const ecs_eval_opts *o,
                        ecs_eval_result *out, ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
