/* cmd-eval.c - `ecsnet eval`: the mIoU table or one JSON object, and --write-alpha, which
 * stores the best CAM alpha_bg in the model file. */
#include "cli.h"

#include "ecs/path.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/ecsnet.h"
#include "ecs/eval.h"
#include "ecs/safetensors.h"

static void json_num(const char *key, double v, const char *sep) {
  if (isfinite(v))
    printf("\"%s\": %.6g%s", key, v, sep);
  else
    printf("\"%s\": null%s", key, sep);
}

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

/* The result as one JSON object; rates are fractions in 0..1, as ecs/eval.h defines them. */
static void eval_json(const ecs_eval_result *r, const ecs_model_config *c, const char *model,
                      const char *data, const char *split) {
  printf("{\"model\": ");
  json_string(model);
  printf(", \"data\": ");
  json_string(data);
  printf(", \"split\": ");
  json_string(split);
  printf(", \"n_images\": %d, \"alphas\": [", r->n_images);
  for (int a = 0; a < r->n_alphas; a++)
    printf("%s%.4g", a ? ", " : "", r->alphas[a]);
  printf("], \"miou_cam_per_alpha\": [");
  for (int a = 0; a < r->n_alphas; a++)
    printf("%s%.6g", a ? ", " : "", r->miou_cam[a]);
  printf("], \"miou_combined_per_alpha\": [");
  for (int a = 0; a < r->n_alphas; a++)
    printf("%s%.6g", a ? ", " : "", r->miou_combined[a]);
  printf("], ");
  json_num("best_alpha_cam", r->alphas[r->best_cam], ", ");
  json_num("miou_cam", r->miou_cam[r->best_cam], ", ");
  json_num("best_alpha_combined", r->alphas[r->best_combined], ", ");
  json_num("miou_combined", r->miou_combined[r->best_combined], ", ");
  json_num("miou_head", r->miou_head, ", ");
  json_num("fg_recall_cam", r->fg_recall_cam, ", ");
  json_num("fg_precision_cam", r->fg_precision_cam, ", ");
  json_num("phi_precision", r->phi_precision, ", ");
  json_num("phi_precision_fg", r->phi_precision_fg, ", ");
  json_num("phi_precision_bg", r->phi_precision_bg, ", ");
  json_num("phi_coverage", r->phi_coverage, ", ");
  json_num("map", r->map, ", ");
  json_num("seconds", r->seconds, ", ");
  printf("\"classes\": [");
  for (int k = 0; k <= r->n_classes; k++) {
    printf("%s{\"name\": ", k ? ", " : "");
    json_string(k ? c->class_names[k - 1] : "background");
    printf(", ");
    json_num("iou_cam", r->classes[k].iou_cam, ", ");
    json_num("iou_combined", r->classes[k].iou_combined, ", ");
    json_num("iou_head", r->classes[k].iou_head, ", ");
    printf("\"gt_pixels\": %lld}", (long long)r->classes[k].gt_pixels);
  }
  printf("]}\n");
}

/* Rewrites the model file with alpha_bg set to the evaluation's best CAM value. Every tensor
 * and every other metadata entry (the training record among them) is copied unchanged; the
 * writer replaces the file atomically. */
static ecs_status write_alpha(const char *model, float alpha, const char *source, ecs_err *e) {
  ecs_st_file *f = ecs_st_open(model, e);
  if (!f) return e->status;
  ecs_st_writer *w = ecs_st_writer_new(e);
  ecs_status st = w ? ECS_OK : e->status;
  for (size_t i = 0; st == ECS_OK && i < ecs_st_count(f); i++) {
    const ecs_st_tensor *t = ecs_st_at(f, i);
    st = ecs_st_writer_add(w, t->name, t->type, t->nd, t->ne, t->data, e);
  }
  for (size_t i = 0; st == ECS_OK && i < ecs_st_meta_count(f); i++) {
    const char *k = ecs_st_meta_key(f, i);
    if (strcmp(k, "alpha_bg") != 0 && strcmp(k, "alpha_bg_source") != 0)
      st = ecs_st_writer_meta(w, k, ecs_st_meta(f, k), e);
  }
  char num[64];
  snprintf(num, sizeof num, "%.9g", alpha);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "alpha_bg", num, e);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "alpha_bg_source", source, e);
  if (st == ECS_OK) st = ecs_st_writer_save(w, model, e);
  ecs_st_writer_free(w);
  ecs_st_close(f);
  return st;
}

int cmd_eval(int argc, char **argv) {
  const char *data = NULL, *model = getenv("ECSNET_MODEL");
  ecs_eval_opts o;
  ecs_eval_opts_default(&o);
  long lv, threads = 0;
  int json = 0, store_alpha = 0;
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *op = argv[a.i], *v;
    if (strcmp(op, "--data") == 0) {
      if (!(data = val(&a))) return usage("--data needs a folder");
    } else if (strcmp(op, "--json") == 0)
      json = 1;
    else if (strcmp(op, "--write-alpha") == 0)
      store_alpha = 1;
    else if (strcmp(op, "--model") == 0) {
      if (!(model = val(&a))) return usage("--model needs a file");
    } else if (strcmp(op, "--split") == 0) {
      if (!(o.split = val(&a))) return usage("--split needs a name");
    } else if (strcmp(op, "--flip") == 0)
      o.infer.flip = 1;
    else if (strcmp(op, "--max-images") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 100000000, &lv))
        return usage("--max-images needs a count");
      o.max_images = (int)lv;
    } else if (strcmp(op, "--threads") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 1024, &threads))
        return usage("--threads needs 1..1024");
    } else if (strcmp(op, "--device") == 0) {
      if (!(g_device = val(&a)) || !device_name_ok(g_device))
        return usage("--device needs auto, cpu, cuda or cuda:N");
    } else if (strcmp(op, "--scales") == 0) {
      if (!(v = val(&a)) || !parse_scales(v, o.infer.scales, &o.infer.n_scales))
        return usage("--scales needs numbers in 0.25..2");
    } else
      return usage("eval: unknown option %s", op);
  }
  if (!data) return usage("eval needs --data DIR");
  if ((!model || !*model) && !(model = shipped_model()))
    return usage("eval needs --model MODEL (or $ECSNET_MODEL; no shipped model was found)");
  ecs_err e = {0};
  ecs_device *dev = cli_device(&e);
  if (!dev) return failure(&e);
  ecs_model *m = ecs_model_load(model, ecs_device_buffer_type(dev), &e);
  if (m && ecs_model_fold_bn(m, &e) != ECS_OK) ecs_model_free(m), m = NULL;
  ecs_dataset *ds = m ? ecs_dataset_open(data, &e) : NULL;
  ecs_backend *be = NULL;
  ecs_ctx *ctx = ds ? make_ctx(dev, (int)threads, &be, &e) : NULL;
  ecs_eval_result *r = ctx ? calloc(1, sizeof *r) : NULL;
  int rc = 1;
  if (r && ecs_eval_run(m, ctx, ds, &o, r, &e) == ECS_OK) {
    const ecs_model_config *c = ecs_model_get_config(m);
    const char *split = o.split ? o.split : "train";
    if (json) {
      eval_json(r, c, model, data, split);
    } else {
      printf("%-16s %8s %8s %8s\n", "class", "CAM", "combined", "head");
      for (int k = 0; k <= r->n_classes; k++)
        printf("%-16s %8.1f %8.1f %8.1f\n", k ? c->class_names[k - 1] : "background",
               100 * r->classes[k].iou_cam, 100 * r->classes[k].iou_combined,
               100 * r->classes[k].iou_head);
      printf("%-16s %8.1f %8.1f %8.1f\n", "mIoU", 100 * r->miou_cam[r->best_cam],
             100 * r->miou_combined[r->best_combined], 100 * r->miou_head);
      printf("best alpha_bg %.2f (CAM), %.2f (combined); Phi precision %.1f%% coverage %.1f%%; mAP "
             "%.1f; "
             "%d images in %.1f s\n",
             r->alphas[r->best_cam], r->alphas[r->best_combined], 100 * r->phi_precision,
             100 * r->phi_coverage, 100 * r->map, r->n_images, r->seconds);
      printf(
          "CAM at best alpha_bg: %.1f%% of object pixels found, %.1f%% of predicted object pixels "
          "right; Phi precision fg %.1f%% bg %.1f%%\n",
          100 * r->fg_recall_cam, 100 * r->fg_precision_cam, 100 * r->phi_precision_fg,
          100 * r->phi_precision_bg);
    }
    rc = 0;
    if (store_alpha) {
      char src[1024], pub[ECS_PATH_MAX];
      snprintf(src, sizeof src,
               "ecsnet eval --data %s --split %s: CAM mIoU %.1f at alpha_bg %.2f (%d images)",
               ecs_path_public(data, pub, sizeof pub), split, 100 * r->miou_cam[r->best_cam],
               r->alphas[r->best_cam], r->n_images);
      if (write_alpha(model, r->alphas[r->best_cam], src, &e) != ECS_OK)
        rc = failure(&e);
      else if (!json)
        printf("stored alpha_bg %.2f in %s\n", r->alphas[r->best_cam], model);
    }
  } else {
    if (ctx && !r) ecs_err_set(&e, ECS_ERR_NOMEM, "out of memory");
    failure(&e);
  }
  free(r);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_dataset_free(ds);
  ecs_model_free(m);
  return rc;
}
