/* test_eval.c - the evaluator's confusion-matrix arithmetic, checked where the answer is known
 * without the model: an alpha above every CAM value predicts background everywhere, an alpha
 * below every value predicts a label everywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/eval.h"
#include "ecs/synth.h"

static char g_dir[64];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/ecs-eval-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  p.count = 6;
  p.seed = 21;
  p.size = 64;
  ecs_err err = {0};
  return ecs_synth_write(&p, g_dir, &err) == ECS_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd);
}

static void test_extreme_alphas(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_dataset *ds = ecs_dataset_open(g_dir, &err);
  assert_non_null(ds);
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 6);
  for (int k = 1; k <= 6; k++)
    snprintf(cfg.class_names[k - 1], ECS_CLASS_NAME_MAX, "%s", ecs_dataset_class_name(ds, k));
  ecs_model *m = ecs_model_new(&cfg, NULL, 3, &err);
  assert_non_null(m);
  ecs_backend *be = ecs_backend_init(ecs_device_find("cpu", &err), NULL, &err);
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  assert_non_null(ctx);

  ecs_eval_opts o;
  ecs_eval_opts_default(&o);
  o.n_alphas = 2;
  o.alphas[0] = 1.5f;  /* CAMs are in [0, 1]: all background */
  o.alphas[1] = -1.0f; /* all foreground */
  ecs_eval_result r;
  assert_int_equal(ecs_eval_run(m, ctx, ds, &o, &r, &err), ECS_OK);
  assert_int_equal(r.n_images, 5); /* the train split of 6 images */

  /* expected figures straight from the ground truth */
  const char *const *ids;
  size_t n;
  assert_int_equal(ecs_dataset_split(ds, "train", &ids, &n, &err), ECS_OK);
  long bg = 0, valid = 0, present[7] = {0};
  for (size_t i = 0; i < n; i++) {
    ecs_image *gt = NULL;
    assert_int_equal(ecs_dataset_mask(ds, ids[i], &gt, &err), ECS_OK);
    for (int p = 0; p < gt->width * gt->height; p++) {
      if (gt->data[p] == 255) continue;
      valid++;
      bg += gt->data[p] == 0;
      present[gt->data[p]] = 1;
    }
    ecs_image_free(gt);
  }
  int n_present = 0;
  for (int c = 0; c < 7; c++)
    n_present += (int)present[c];
  /* all background: IoU_bg = bg / valid, every object class 0 */
  assert_true(fabs(r.miou_cam[0] - ((double)bg / valid) / n_present) < 1e-9);
  /* all foreground: background IoU is 0 */
  assert_true(r.miou_cam[1] < (double)(valid - bg) / valid);
  assert_true(isnan(r.classes[0].iou_cam) || r.best_cam == 0 || r.classes[0].iou_cam == 0.0);
  assert_true(r.phi_coverage >= 0 && r.phi_coverage <= 1);
  assert_true(r.phi_precision >= 0 && r.phi_precision <= 1);
  assert_true(r.map > 0 && r.map <= 1);

  /* a class list that differs from the model's is refused */
  ecs_model_config cfg2 = cfg;
  snprintf(cfg2.class_names[0], ECS_CLASS_NAME_MAX, "zebra");
  ecs_model *m2 = ecs_model_new(&cfg2, NULL, 3, &err);
  assert_int_equal(ecs_eval_run(m2, ctx, ds, &o, &r, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "zebra"));
  ecs_model_free(m2);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_model_free(m);
  ecs_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_extreme_alphas)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
