/* test_synth.c - the synthetic benchmark is deterministic, its masks agree with its labels, and
 * it has the properties the benchmark relies on (objects present, emblems small). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/image.h"
#include "ecs/synth.h"

static void test_render_is_deterministic_and_masks_match_labels(void **state) {
  (void)state;
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  p.seed = 7;
  int n = p.size * p.size;
  uint8_t *rgb1 = malloc(n * 3), *rgb2 = malloc(n * 3), *m1 = malloc(n), *m2 = malloc(n);
  long fg = 0, ignore = 0, total = 0, labelled = 0;
  for (int i = 0; i < 60; i++) {
    uint8_t l1[ECS_SYNTH_MAX_CLASSES], l2[ECS_SYNTH_MAX_CLASSES];
    ecs_err err = {0};
    assert_int_equal(ecs_synth_render(&p, i, rgb1, m1, l1, &err), ECS_OK);
    assert_int_equal(ecs_synth_render(&p, i, rgb2, m2, l2, &err), ECS_OK);
    assert_memory_equal(rgb1, rgb2, n * 3);
    assert_memory_equal(m1, m2, n);
    assert_memory_equal(l1, l2, sizeof l1);
    int seen[256] = {0}, any = 0;
    for (int j = 0; j < n; j++)
      seen[m1[j]]++;
    for (int k = 0; k < ECS_SYNTH_MAX_CLASSES; k++) {
      /* a label is present exactly when its class has pixels in the mask */
      assert_int_equal(l1[k] != 0, seen[k + 1] > 0);
      any |= l1[k];
      labelled += l1[k];
    }
    assert_true(any);
    for (int v = ECS_SYNTH_MAX_CLASSES + 1; v < 255; v++)
      assert_int_equal(seen[v], 0);
    fg += n - seen[0] - seen[255];
    ignore += seen[255];
    total += n;
  }
  /* objects cover a real share of the picture, and most images carry one or two labels */
  assert_true(fg > total / 10 && fg < total / 2);
  assert_true(ignore < total / 20);
  assert_true(labelled >= 60 && labelled <= 180);
  /* a different seed gives a different picture */
  uint8_t l[ECS_SYNTH_MAX_CLASSES];
  p.seed = 8;
  assert_int_equal(ecs_synth_render(&p, 0, rgb2, m2, l, NULL), ECS_OK);
  p.seed = 7;
  assert_int_equal(ecs_synth_render(&p, 0, rgb1, m1, l, NULL), ECS_OK);
  assert_memory_not_equal(rgb1, rgb2, n * 3);
  free(rgb1), free(rgb2), free(m1), free(m2);
}

static int read_all(const char *path, uint8_t **buf, size_t *n) {
  ecs_err err = {0};
  return ecs_file_read(path, 0, buf, n, &err) == ECS_OK;
}

static void test_write_is_identical_across_thread_counts(void **state) {
  (void)state;
  char d1[] = "/tmp/ecs-synth-XXXXXX", d2[] = "/tmp/ecs-synth-XXXXXX";
  assert_non_null(mkdtemp(d1));
  assert_non_null(mkdtemp(d2));
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  p.count = 20;
  p.seed = 3;
  p.n_threads = 1;
  ecs_err err = {0};
  assert_int_equal(ecs_synth_write(&p, d1, &err), ECS_OK);
  p.n_threads = 2;
  assert_int_equal(ecs_synth_write(&p, d2, &err), ECS_OK);
  const char *files[] = {"JPEGImages/000000.jpg",
                         "JPEGImages/000019.jpg",
                         "SegmentationClass/000007.png",
                         "labels.txt",
                         "classes.txt",
                         "ImageSets/Segmentation/train.txt",
                         "ImageSets/Segmentation/val.txt"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/%s", d1, files[i]);
    snprintf(b, sizeof b, "%s/%s", d2, files[i]);
    uint8_t *x, *y;
    size_t nx, ny;
    assert_true(read_all(a, &x, &nx));
    assert_true(read_all(b, &y, &ny));
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x), free(y);
  }
  /* 20 images, 20% validation */
  uint8_t *t;
  size_t nt;
  char path[512];
  snprintf(path, sizeof path, "%s/ImageSets/Segmentation/val.txt", d1);
  assert_true(read_all(path, &t, &nt));
  assert_int_equal(nt, 4 * 7);
  free(t);
  /* the mask decodes as palette indices equal to what render produced */
  snprintf(path, sizeof path, "%s/SegmentationClass/000005.png", d1);
  uint8_t *png;
  size_t npng;
  assert_true(read_all(path, &png, &npng));
  ecs_image *mask = NULL;
  assert_int_equal(ecs_image_decode_indexed(png, npng, 0, &mask, &err), ECS_OK);
  uint8_t *rgb = malloc(p.size * p.size * 3), *m = malloc(p.size * p.size),
          l[ECS_SYNTH_MAX_CLASSES];
  assert_int_equal(ecs_synth_render(&p, 5, rgb, m, l, &err), ECS_OK);
  assert_memory_equal(mask->data, m, p.size * p.size);
  ecs_image_free(mask);
  free(png), free(rgb), free(m);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", d1, d2);
  assert_int_equal(system(cmd), 0);
}

static void test_bad_parameters_are_errors(void **state) {
  (void)state;
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  ecs_err err = {0};
  p.size = 16;
  uint8_t buf[16], l[ECS_SYNTH_MAX_CLASSES];
  assert_int_equal(ecs_synth_render(&p, 0, buf, buf, l, &err), ECS_ERR_INVALID);
  ecs_synth_defaults(&p);
  p.count = 0;
  assert_int_equal(ecs_synth_write(&p, "/tmp/ecs-synth-never", &err), ECS_ERR_INVALID);
  p.count = 2;
  assert_int_equal(ecs_synth_write(&p, "/proc/ecs-synth-cannot", &err), ECS_ERR_IO);
  assert_non_null(strstr(err.msg, "/proc/ecs-synth-cannot"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_is_deterministic_and_masks_match_labels),
      cmocka_unit_test(test_write_is_identical_across_thread_counts),
      cmocka_unit_test(test_bad_parameters_are_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
