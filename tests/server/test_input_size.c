/* test_input_size.c - the input-size policy: which images run at another size, and results
 * resized back to the size of the image sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "input-size.h"

static void test_policy(void **state) {
  (void)state;
  int w, h;
  assert_false(api_input_size(8, 8, &w, &h));
  assert_int_equal(w, 8);
  assert_false(api_input_size(500, 375, &w, &h));
  assert_true(api_input_size(1, 1, &w, &h));
  assert_int_equal(w, 8);
  assert_int_equal(h, 8);
  assert_true(api_input_size(9, 7, &w, &h)); /* the shorter side to 8, the ratio kept */
  assert_int_equal(w, 11);
  assert_int_equal(h, 8);
  assert_true(api_input_size(2, 600, &w, &h));
  assert_int_equal(w, 8);
  assert_int_equal(h, 2400);
  assert_true(api_input_size(1200, 3, &w, &h));
  assert_int_equal(w, 3200);
  assert_int_equal(h, 8);
  assert_true(api_input_size(1, 2000000000, &w, &h)); /* clamped; the pixel limit refuses it */
  assert_int_equal(w, 8);
  assert_int_equal(h, 1000000000);
}

static ecs_cam_result *result(int w, int h) {
  ecs_cam_result *r = calloc(1, sizeof *r);
  size_t hw = (size_t)w * h;
  r->w = w, r->h = h, r->n_labels = 1, r->labels[0] = 2;
  r->cams = malloc(sizeof(float) * hw);
  r->cam_mask = malloc(sizeof *r->cam_mask * hw);
  r->head_mask = calloc(hw, sizeof *r->head_mask);
  r->mask = malloc(sizeof *r->mask * hw);
  r->ecs_mask = malloc(sizeof *r->ecs_mask * hw);
  r->erased_image = malloc(hw * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t p = (size_t)y * w + x;
      r->cams[p] = (float)x / (float)(w - 1); /* a ramp along x */
      r->cam_mask[p] = r->mask[p] = x < w / 2 ? 0 : 2;
      r->ecs_mask[p] = y < h / 2 ? ECS_MASK_IGNORE : 2;
      memset(r->erased_image + p * 3, x < w / 2 ? 10 : 200, 3);
    }
  return r;
}

static void test_resize_back(void **state) {
  (void)state;
  ecs_cam_result *r = result(16, 8); /* a 2x1 image run at 16x8 */
  ecs_err e = {0};
  assert_int_equal(api_cam_result_resize(r, 2, 1, &e), ECS_OK);
  assert_int_equal(r->w, 2);
  assert_int_equal(r->h, 1);
  assert_int_equal(r->cam_mask[0], 0);
  assert_int_equal(r->cam_mask[1], 2);
  assert_int_equal(r->erased_image[0], 10);
  assert_int_equal(r->erased_image[3], 200);
  assert_true(r->cams[0] < 0.5f && r->cams[1] > 0.5f); /* the ramp's samples at both centres */
  assert_int_equal(r->ecs_mask[0], 2);                 /* row 0.5*8 = 4: the lower half */
  assert_int_equal(r->phi, 2);
  assert_null(r->erased_cams);
  assert_null(r->erase_region);
  ecs_cam_result_free(r);
  r = result(8, 8); /* to 1x1 */
  assert_int_equal(api_cam_result_resize(r, 1, 1, &e), ECS_OK);
  assert_int_equal(r->mask[0], 2);
  assert_float_equal(r->cams[0], 0.5f, 1e-5f);
  ecs_cam_result_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_policy),
                                     cmocka_unit_test(test_resize_back)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
