/* test_dataset.c - the VOC-layout index: labels from labels.txt, from masks, from annotation
 * XML, and clear errors that name the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/dataset.h"
#include "ecs/synth.h"

static char g_dir[64];

static void write_file(const char *rel, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", g_dir, rel);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/ecs-ds-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  p.count = 10;
  p.seed = 5;
  ecs_err err = {0};
  return ecs_synth_write(&p, g_dir, &err) == ECS_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd);
}

static void test_labels_file_and_masks_agree(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_dataset *ds = ecs_dataset_open(g_dir, &err);
  assert_non_null(ds);
  assert_int_equal(ecs_dataset_n_classes(ds), 6);
  assert_string_equal(ecs_dataset_class_name(ds, 1), "cat");
  assert_int_equal(ecs_dataset_class_id(ds, "sheep"), 6);
  assert_true(ecs_dataset_has_masks(ds));
  const char *const *ids;
  size_t n;
  assert_int_equal(ecs_dataset_split(ds, "train", &ids, &n, &err), ECS_OK);
  assert_int_equal(n, 8);
  assert_string_equal(ids[0], "000000");
  assert_int_equal(ecs_dataset_split(ds, "val", &ids, &n, &err), ECS_OK);
  assert_int_equal(n, 2);
  /* labels.txt against the labels read off the masks */
  char moved[256], orig[256];
  snprintf(orig, sizeof orig, "%s/labels.txt", g_dir);
  snprintf(moved, sizeof moved, "%s/labels.moved", g_dir);
  assert_int_equal(rename(orig, moved), 0);
  ecs_dataset *from_masks = ecs_dataset_open(g_dir, &err);
  assert_int_equal(rename(moved, orig), 0);
  assert_non_null(from_masks);
  for (int i = 0; i < 10; i++) {
    char id[16];
    snprintf(id, sizeof id, "%06d", i);
    const uint8_t *a, *b;
    assert_int_equal(ecs_dataset_labels(ds, id, &a, &err), ECS_OK);
    assert_int_equal(ecs_dataset_labels(from_masks, id, &b, &err), ECS_OK);
    assert_memory_equal(a, b, 6);
  }
  ecs_image *img = NULL, *mask = NULL;
  assert_int_equal(ecs_dataset_image(ds, "000003", 0, &img, &err), ECS_OK);
  assert_int_equal(ecs_dataset_mask(ds, "000003", &mask, &err), ECS_OK);
  assert_int_equal(img->width, mask->width);
  assert_int_equal(mask->channels, 1);
  ecs_image_free(img);
  ecs_image_free(mask);
  ecs_dataset_summary sum;
  assert_int_equal(ecs_dataset_check(ds, 1, &sum, &err), ECS_OK);
  assert_int_equal(sum.n_train + sum.n_val, 10);
  assert_int_equal(sum.n_labelled, 10);
  assert_int_equal(sum.n_masks, 10);
  assert_int_equal(sum.n_problems, 0);
  ecs_dataset_free(from_masks);
  ecs_dataset_free(ds);
}

static void test_errors_name_the_file(void **state) {
  (void)state;
  ecs_err err = {0};
  assert_null(ecs_dataset_open("/nonexistent/ecs-dataset", &err));
  assert_non_null(strstr(err.msg, "/nonexistent/ecs-dataset"));
  ecs_dataset *ds = ecs_dataset_open(g_dir, &err);
  const char *const *ids;
  size_t n;
  assert_int_equal(ecs_dataset_split(ds, "test", &ids, &n, &err), ECS_ERR_IO);
  assert_non_null(strstr(err.msg, "test.txt"));
  assert_int_equal(ecs_dataset_split(ds, "../x", &ids, &n, &err), ECS_ERR_INVALID);
  ecs_image *img = NULL;
  assert_int_equal(ecs_dataset_image(ds, "999999", 0, &img, &err), ECS_ERR_IO);
  assert_non_null(strstr(err.msg, "999999.jpg"));
  ecs_dataset_free(ds);
  /* a corrupt image names its file */
  write_file("JPEGImages/000009.jpg", "not a jpeg");
  ds = ecs_dataset_open(g_dir, &err);
  assert_int_not_equal(ecs_dataset_image(ds, "000009", 0, &img, &err), ECS_OK);
  assert_non_null(strstr(err.msg, "000009.jpg"));
  ecs_dataset_free(ds);
  /* a label outside the class list names file and line */
  char orig[256], keep[256];
  snprintf(orig, sizeof orig, "%s/labels.txt", g_dir);
  snprintf(keep, sizeof keep, "%s/labels.keep", g_dir);
  assert_int_equal(rename(orig, keep), 0);
  write_file("labels.txt", "000000 1\n000001 9\n");
  assert_null(ecs_dataset_open(g_dir, &err));
  assert_non_null(strstr(err.msg, "labels.txt:2"));
  assert_non_null(strstr(err.msg, "'9'"));
  assert_int_equal(rename(keep, orig), 0);
}

static void test_labels_from_annotation_xml(void **state) {
  (void)state;
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/ecs-voc-XXXXXX");
  assert_non_null(mkdtemp(dir));
  char path[256], cmd[300];
  snprintf(cmd, sizeof cmd, "mkdir -p %s/JPEGImages %s/Annotations %s/ImageSets/Segmentation", dir,
           dir, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof path, "%s/Annotations/2007_000032.xml", dir);
  FILE *f = fopen(path, "w");
  fputs("<annotation><object><name>aeroplane</name></object>"
        "<object><name> person </name><part><name>head</name></part></object></annotation>",
        f);
  fclose(f);
  ecs_err err = {0};
  ecs_dataset *ds = ecs_dataset_open(dir, &err); /* no classes.txt: the VOC classes */
  assert_non_null(ds);
  assert_int_equal(ecs_dataset_n_classes(ds), 20);
  const uint8_t *l;
  assert_int_equal(ecs_dataset_labels(ds, "2007_000032", &l, &err), ECS_OK);
  for (int k = 0; k < 20; k++)
    assert_int_equal(l[k], k == 0 || k == 14);
  ecs_dataset_free(ds);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* ImageNet's 1000 classes: image-level labels from labels.txt up to the model's limit; with
 * SegmentationClass/ (8-bit masks) more than 254 classes is refused, saying why. */
static void test_a_thousand_classes(void **state) {
  (void)state;
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/ecs-1k-XXXXXX");
  assert_non_null(mkdtemp(dir));
  char path[256], cmd[300];
  snprintf(cmd, sizeof cmd, "mkdir -p %s/JPEGImages %s/ImageSets/Segmentation", dir, dir);
  assert_int_equal(system(cmd), 0);
  for (int K = 1000; K <= 1025; K += 25) {
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    FILE *f = fopen(path, "w");
    for (int k = 1; k <= K; k++)
      fprintf(f, "class %d\n", k);
    fclose(f);
    snprintf(path, sizeof path, "%s/labels.txt", dir);
    f = fopen(path, "w");
    fputs("a 1 282 1000\nb 999\n", f);
    fclose(f);
    ecs_err err = {0};
    ecs_dataset *ds = ecs_dataset_open(dir, &err);
    if (K > ECS_DATASET_MAX_CLASSES) { /* 1025: one more than a model may have */
      assert_null(ds);
      assert_non_null(strstr(err.msg, "more than 1024 classes"));
      continue;
    }
    assert_non_null(ds);
    assert_int_equal(ecs_dataset_n_classes(ds), 1000);
    assert_string_equal(ecs_dataset_class_name(ds, 1000), "class 1000");
    const uint8_t *l;
    assert_int_equal(ecs_dataset_labels(ds, "a", &l, &err), ECS_OK);
    int on = 0;
    for (int k = 0; k < 1000; k++)
      on += l[k];
    assert_int_equal(on, 3);
    assert_true(l[0] && l[281] && l[999]);
    ecs_dataset_free(ds);
    /* with masks: refused, and the message says what to do */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/SegmentationClass", dir);
    assert_int_equal(system(cmd), 0);
    assert_null(ecs_dataset_open(dir, &err));
    assert_non_null(strstr(err.msg, "1000 classes, but SegmentationClass/ masks are 8-bit"));
    snprintf(cmd, sizeof cmd, "rmdir %s/SegmentationClass", dir);
    assert_int_equal(system(cmd), 0);
  }
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_labels_file_and_masks_agree),
      cmocka_unit_test(test_errors_name_the_file),
      cmocka_unit_test(test_labels_from_annotation_xml),
      cmocka_unit_test(test_a_thousand_classes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
