/* test_ecsnet_train.c - the schedule of method.md and the loader's determinism.
 *
 * Resume correctness rests on one promise: a batch is a function of (seed, batch index) only.
 * So two loaders with the same seed give identical batches, a loader started at index s gives
 * what the first gives from s on, and another seed gives other batches. Needs the image codecs
 * (full build); skipped in the engine-only build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/ecsnet.h"

#ifdef ECS_HAVE_IO
#include "ecs/synth.h"
#include "ecs/train.h"

static char g_dir[256];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/ecs-test-train-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  p.count = 10;
  p.size = 64;
  p.n_classes = 3;
  p.seed = 4;
  p.n_threads = 1;
  ecs_err e = {0};
  char d[300];
  snprintf(d, sizeof d, "%s/ds", g_dir);
  return ecs_synth_write(&p, d, &e) == ECS_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static ecs_model *model_for(ecs_dataset *ds) {
  ecs_model_config *cfg = calloc(1, sizeof *cfg);
  ecs_model_config_default(cfg, ECS_BACKBONE_SMALL, ecs_dataset_n_classes(ds));
  for (int k = 1; k <= cfg->n_classes; k++)
    snprintf(cfg->class_names[k - 1], ECS_CLASS_NAME_MAX, "%s", ecs_dataset_class_name(ds, k));
  cfg->hp.warmup = 0.6f;
  cfg->hp.lambda = 2.0f;
  cfg->hp.lambda_ramp = 0.5f;
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(cfg, NULL, 1, &e);
  free(cfg);
  assert_non_null(m);
  return m;
}

static void test_schedule(void **state) {
  (void)state;
  ecs_err e = {0};
  char d[300];
  snprintf(d, sizeof d, "%s/ds", g_dir);
  ecs_dataset *ds = ecs_dataset_open(d, &e);
  assert_non_null(ds);
  ecs_model *m = model_for(ds);
  /* 100 steps: 60 CAM-only, then lambda ramps over 20 steps to 2 */
  assert_int_equal(ecs_train_warmup_steps(m, 100), 60);
  assert_true(ecs_train_lambda(m, 59, 100) == 0.0f);
  assert_true(ecs_train_lambda(m, 60, 100) > 0.09f && ecs_train_lambda(m, 60, 100) < 0.11f);
  assert_true(ecs_train_lambda(m, 69, 100) > 0.99f && ecs_train_lambda(m, 69, 100) < 1.01f);
  assert_true(ecs_train_lambda(m, 79, 100) == 2.0f);
  assert_true(ecs_train_lambda(m, 99, 100) == 2.0f);
  ecs_model_config_mut(m)->hp.no_erase = 1;
  assert_int_equal(ecs_train_warmup_steps(m, 100), 100);
  ecs_model_free(m);
  ecs_dataset_free(ds);
}

static void test_loader_is_a_function_of_seed_and_index(void **state) {
  (void)state;
  ecs_err e = {0};
  char d[300];
  snprintf(d, sizeof d, "%s/ds", g_dir);
  ecs_dataset *ds = ecs_dataset_open(d, &e);
  assert_non_null(ds);
  ecs_model *m = model_for(ds);
  ecs_aug_opts aug = {.crop = 48,
                      .resize_min = 48,
                      .resize_max = 80,
                      .flip = 1,
                      .brightness = 0.3f,
                      .contrast = 0.3f,
                      .saturation = 0.3f,
                      .hue = 0.1f};
  ecs_loader *a = ecs_loader_new(ds, m, "train", 3, &aug, 7, 0, 0, &e);
  ecs_loader *b = ecs_loader_new(ds, m, "train", 3, &aug, 7, 4, 0, &e);
  ecs_loader *c = ecs_loader_new(ds, m, "train", 3, &aug, 8, 0, 0, &e);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  int64_t bpe = ecs_loader_batches_per_epoch(a);
  assert_int_equal(bpe, (int64_t)ecs_loader_size(a) / 3);
  size_t img = sizeof(float) * 3 * 3 * 48 * 48;
  float *saved = malloc(img * 8), *lab = malloc(sizeof(float) * 9 * 8);
  int differ = 0;
  for (int i = 0; i < 8; i++) {
    const ecs_batch *x, *z;
    assert_int_equal(ecs_loader_next(a, &x, &e), ECS_OK);
    assert_int_equal(x->index, i);
    assert_int_equal(x->epoch, i / bpe);
    memcpy(saved + (size_t)i * img / sizeof(float), x->images, img);
    memcpy(lab + (size_t)i * 9, x->labels, sizeof(float) * 9);
    assert_int_equal(ecs_loader_next(c, &z, &e), ECS_OK);
    differ |= memcmp(z->images, x->images, img) != 0;
  }
  assert_true(differ);
  for (int i = 4; i < 8; i++) {
    const ecs_batch *y;
    assert_int_equal(ecs_loader_next(b, &y, &e), ECS_OK);
    assert_int_equal(y->index, i);
    assert_memory_equal(y->images, saved + (size_t)i * img / sizeof(float), img);
    assert_memory_equal(y->labels, lab + (size_t)i * 9, sizeof(float) * 9);
  }
  /* labels are 0/1 and every synthetic image has at least one */
  for (int i = 0; i < 8 * 3; i++) {
    float s = 0;
    for (int k = 0; k < 3; k++) {
      assert_true(lab[i * 3 + k] == 0.0f || lab[i * 3 + k] == 1.0f);
      s += lab[i * 3 + k];
    }
    assert_true(s >= 1);
  }
  free(saved);
  free(lab);
  ecs_loader_free(a);
  ecs_loader_free(b);
  ecs_loader_free(c);
  ecs_loader_free(NULL);
  /* bad arguments are errors, not crashes */
  aug.crop = 4;
  assert_null(ecs_loader_new(ds, m, "train", 3, &aug, 7, 0, 0, &e));
  aug.crop = 48;
  assert_null(ecs_loader_new(ds, m, "nosuchsplit", 3, &aug, 7, 0, 0, &e));
  ecs_model_free(m);
  ecs_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_schedule),
      cmocka_unit_test(test_loader_is_a_function_of_seed_and_index),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
#else
int main(void) {
  printf("skipped: the engine-only build has no image codecs\n");
  return 77;
}
#endif
