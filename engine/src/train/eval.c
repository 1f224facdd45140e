/* eval.c - mIoU of CAM, ECS and combined masks from split-wide confusion matrices. */
#include "ecs/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ecs_eval_opts_default(ecs_eval_opts *o) {
  memset(o, 0, sizeof *o);
  o->split = "train";
}

/* IoU of class c from a C x C confusion matrix (rows ground truth, columns prediction);
 * NaN when the class appears in neither. */
static double iou_of(const int64_t *cm, int C, int c) {
  int64_t tp = cm[c * C + c], fp = 0, fn = 0;
  for (int j = 0; j < C; j++) {
    if (j == c) continue;
    fn += cm[c * C + j];
    fp += cm[j * C + c];
  }
  int64_t u = tp + fp + fn;
  return u ? (double)tp / (double)u : NAN;
}

static double miou_of(const int64_t *cm, int C) {
  double s = 0;
  int n = 0;
  for (int c = 0; c < C; c++) {
    double v = iou_of(cm, C, c);
    if (!isnan(v)) s += v, n++;
  }
  return n ? s / n : 0;
}

typedef struct score {
  float s;
  uint8_t pos;
} score;

static int cmp_score(const void *a, const void *b) {
  float x = ((const score *)a)->s, y = ((const score *)b)->s;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Average precision as the mean of the precision at each positive, ranked by score. */
static double average_precision(score *s, int n) {
  qsort(s, (size_t)n, sizeof *s, cmp_score);
  int tp = 0, pos = 0;
  double sum = 0;
  for (int i = 0; i < n; i++)
    if (s[i].pos) {
      tp++;
      sum += (double)tp / (i + 1);
    }
  for (int i = 0; i < n; i++)
    pos += s[i].pos;
  return pos ? sum / pos : NAN;
}

ecs_status ecs_eval_run(const ecs_model *m, ecs_ctx *ctx, ecs_dataset *ds, const ecs_eval_opts *o,
                        ecs_eval_result *out, ecs_err *err) {
  memset(out, 0, sizeof *out);
  const ecs_model_config *cfg = ecs_model_get_config(m);
  int K = cfg->n_classes, C = K + 1;
  if (ecs_dataset_n_classes(ds) != K)
    return ecs_err_set(err, ECS_ERR_INVALID, "the dataset has %d classes, the model %d",
                       ecs_dataset_n_classes(ds), K);
  for (int k = 1; k <= K; k++)
    if (strcmp(ecs_dataset_class_name(ds, k), cfg->class_names[k - 1]) != 0)
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "class %d is '%s' in the dataset but '%s' in the model", k,
                         ecs_dataset_class_name(ds, k), cfg->class_names[k - 1]);
  if (!ecs_dataset_has_masks(ds))
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "dataset %s has no SegmentationClass/ masks to score against",
                       ecs_dataset_dir(ds));
  const char *const *ids;
  size_t n_ids;
  ecs_status st = ecs_dataset_split(ds, o->split ? o->split : "train", &ids, &n_ids, err);
  if (st != ECS_OK) return st;
  int n = (int)n_ids;
  if (o->max_images > 0 && o->max_images < n) n = o->max_images;
  if (n == 0) return ecs_err_set(err, ECS_ERR_INVALID, "split '%s' is empty", o->split);

  int na = o->n_alphas;
  if (na <= 0) {
    na = 20;
    for (int i = 0; i < na; i++)
      out->alphas[i] = 0.05f * i;
  } else {
    if (na > ECS_EVAL_MAX_ALPHAS) return ecs_err_set(err, ECS_ERR_INVALID, "too many alphas");
    memcpy(out->alphas, o->alphas, sizeof(float) * na);
  }
  out->n_alphas = na;
  out->n_classes = K;
  size_t cmn = (size_t)C * C;
  int64_t *cm_cam = calloc(cmn * na, sizeof *cm_cam), *cm_comb = calloc(cmn * na, sizeof *cm_comb);
  int64_t *cm_head = calloc(cmn, sizeof *cm_head);
  score *scores = malloc(sizeof *scores * (size_t)n * K);
  int64_t phi = 0, phi_right = 0, phi_fg = 0, phi_fg_right = 0, valid = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (!cm_cam || !cm_comb || !cm_head || !scores)
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");

  for (int i = 0; st == ECS_OK && i < n; i++) {
    const uint8_t *lab;
    ecs_image *img = NULL, *gt = NULL;
    ecs_cam_result *r = NULL;
    st = ecs_dataset_labels(ds, ids[i], &lab, err);
    if (st == ECS_OK) st = ecs_dataset_image(ds, ids[i], o->max_pixels, &img, err);
    if (st == ECS_OK) st = ecs_dataset_mask(ds, ids[i], &gt, err);
    if (st == ECS_OK && (gt->width != img->width || gt->height != img->height))
      st = ecs_err_set(err, ECS_ERR_FORMAT, "image %s is %dx%d but its mask %dx%d", ids[i],
                       img->width, img->height, gt->width, gt->height);
    int labels[ECS_MAX_CLASSES], nl = 0;
    for (int k = 0; st == ECS_OK && k < K; k++)
      if (lab[k]) labels[nl++] = k + 1;
    if (st == ECS_OK && nl == 0)
      st = ecs_err_set(err, ECS_ERR_FORMAT, "image %s has no label", ids[i]);
    if (st == ECS_OK) {
      ecs_infer_opts io = o->infer;
      io.labels = labels;
      io.n_labels = nl;
      io.want_erased = 1;
      st = ecs_model_infer(m, ctx, img->data, img->height, img->width, &io, &r, err);
    }
    if (st == ECS_OK) {
      size_t hw = (size_t)img->width * img->height;
      for (int k = 0; k < K; k++)
        scores[(size_t)i * K + k] = (score){r->scores[k], lab[k]};
      for (size_t p = 0; p < hw; p++) {
        int g = gt->data[p];
        if (g == 255) continue;
        valid++;
        /* the CAM maximum over labels, once, then every alpha */
        float best = -1;
        int arg = 0;
        for (int j = 0; j < r->n_labels; j++) {
          float v = r->cams[(size_t)j * hw + p];
          if (v > best) best = v, arg = r->labels[j];
        }
        int e = r->ecs_mask && r->ecs_mask[p] != ECS_MASK_IGNORE ? r->ecs_mask[p] : 255;
        for (int a = 0; a < na; a++) {
          int pred = best > out->alphas[a] ? arg : 0;
          cm_cam[(size_t)a * cmn + (size_t)g * C + pred]++;
          cm_comb[(size_t)a * cmn + (size_t)g * C + (e != 255 ? e : pred)]++;
        }
        cm_head[(size_t)g * C + r->head_mask[p]]++;
        if (e != 255) {
          phi++;
          phi_right += e == g;
          if (e != 0) phi_fg++, phi_fg_right += e == g;
        }
      }
    }
    ecs_cam_result_free(r);
    ecs_image_free(img);
    ecs_image_free(gt);
    if (st == ECS_OK && o->progress && o->progress(o->user, i + 1, n))
      st = ecs_err_set(err, ECS_ERR_CANCELLED, "evaluation cancelled");
  }
  if (st == ECS_OK) {
    out->n_images = n;
    for (int a = 0; a < na; a++) {
      out->miou_cam[a] = miou_of(cm_cam + (size_t)a * cmn, C);
      out->miou_combined[a] = miou_of(cm_comb + (size_t)a * cmn, C);
      if (out->miou_cam[a] > out->miou_cam[out->best_cam]) out->best_cam = a;
      if (out->miou_combined[a] > out->miou_combined[out->best_combined]) out->best_combined = a;
    }
    const int64_t *bc = cm_cam + (size_t)out->best_cam * cmn;
    const int64_t *bm = cm_comb + (size_t)out->best_combined * cmn;
    int64_t obj = 0, found = 0, pred_fg = 0;
    for (int g = 0; g < C; g++)
      for (int p = 0; p < C; p++) {
        if (g > 0) obj += bc[g * C + p];
        if (g > 0 && p == g) found += bc[g * C + p];
        if (p > 0) pred_fg += bc[g * C + p];
      }
    out->fg_recall_cam = obj ? (double)found / obj : 0;
    out->fg_precision_cam = pred_fg ? (double)found / pred_fg : 0;
    out->miou_head = miou_of(cm_head, C);
    out->phi_precision = phi ? (double)phi_right / phi : 0;
    out->phi_coverage = valid ? (double)phi / valid : 0;
    out->phi_precision_fg = phi_fg ? (double)phi_fg_right / phi_fg : 0;
    out->phi_precision_bg = phi > phi_fg ? (double)(phi_right - phi_fg_right) / (phi - phi_fg) : 0;
    for (int c = 0; c < C; c++) {
      out->classes[c].iou_cam = iou_of(bc, C, c);
      out->classes[c].iou_combined = iou_of(bm, C, c);
      out->classes[c].iou_head = iou_of(cm_head, C, c);
      for (int p = 0; p < C; p++)
        out->classes[c].gt_pixels += bc[c * C + p];
    }
    score *col = malloc(sizeof *col * n);
    double s = 0;
    int nap = 0;
    for (int k = 0; col && k < K; k++) {
      for (int i = 0; i < n; i++)
        col[i] = scores[(size_t)i * K + k];
      double ap = average_precision(col, n);
      if (!isnan(ap)) s += ap, nap++;
    }
    free(col);
    out->map = nap ? s / nap : 0;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  out->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  free(cm_cam), free(cm_comb), free(cm_head), free(scores);
  return st;
}
