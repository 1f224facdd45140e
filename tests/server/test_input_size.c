/* test_input_size.c - the input-size policy: which images run at another size, and results
 * resized back to the size of the image sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "input-size.h"

static void check_plan(const api_input_plan *p, int sw, int sh, int x, int y, int cw, int ch) {
  assert_int_equal(p->scaled_w, sw);
  assert_int_equal(p->scaled_h, sh);
  assert_int_equal(p->x, x);
  assert_int_equal(p->y, y);
  assert_int_equal(p->canvas_w, cw);
  assert_int_equal(p->canvas_h, ch);
}

static void test_policy_auto(void **state) {
  (void)state;
  api_input_policy pol = {.side = 0, .max_aspect = 4};
  api_input_plan p;
  assert_false(api_input_size(8, 8, &pol, &p)); /* as it is */
  check_plan(&p, 8, 8, 0, 0, 8, 8);
  assert_false(api_input_size(500, 375, &pol, &p));
  assert_false(api_input_size(400, 100, &pol, &p)); /* 4:1 is allowed */
  assert_true(api_input_size(1, 1, &pol, &p));      /* up to the smallest side */
  check_plan(&p, 8, 8, 0, 0, 8, 8);
  assert_true(api_input_size(9, 7, &pol, &p)); /* the shorter side to 8, the ratio kept */
  check_plan(&p, 10, 8, 0, 0, 10, 8);
  assert_true(api_input_size(1000, 200, &pol, &p)); /* 5:1: the longer to 800, padded to 200 */
  check_plan(&p, 800, 160, 0, 20, 800, 200);
  assert_true(api_input_size(2, 600, &pol, &p)); /* never 8 x 2400: 1 x 32 on 8 x 32 */
  check_plan(&p, 1, 32, 3, 0, 8, 32);
  assert_true(api_input_size(1, 2000000000, &pol, &p));
  check_plan(&p, 1, 32, 3, 0, 8, 32);
}

static void test_policy_side(void **state) {
  (void)state;
  api_input_policy pol = {.side = 225, .max_aspect = 4};
  api_input_plan p;
  assert_false(api_input_size(300, 225, &pol, &p));
  assert_true(api_input_size(4000, 3000, &pol, &p)); /* a photo down to the model's size */
  check_plan(&p, 300, 225, 0, 0, 300, 225);
  assert_true(api_input_size(375, 500, &pol, &p));
  check_plan(&p, 225, 300, 0, 0, 225, 300);
  assert_true(api_input_size(9, 7, &pol, &p)); /* a tiny one up to it */
  check_plan(&p, 289, 225, 0, 0, 289, 225);
  assert_true(api_input_size(1200, 3, &pol, &p)); /* 900 x 2 on 900 x 225, never 90000 x 225 */
  check_plan(&p, 900, 2, 0, 111, 900, 225);
  assert_true(api_input_size(1, 1, &pol, &p));
  check_plan(&p, 225, 225, 0, 0, 225, 225);
  pol.max_aspect = 0; /* no cap */
  assert_true(api_input_size(1200, 300, &pol, &p));
  check_plan(&p, 900, 225, 0, 0, 900, 225);
}

static void test_input_image(void **state) {
  (void)state;
  api_input_policy pol = {.side = 8, .max_aspect = 2, .pad = {1, 2, 3}};
  api_input_plan p;
  ecs_err e = {0};
  ecs_image *img = ecs_image_new(40, 4, 3, &e); /* 10:1 -> 16 x 2 on 16 x 8 */
  memset(img->data, 200, (size_t)40 * 4 * 3);
  assert_true(api_input_size(40, 4, &pol, &p));
  check_plan(&p, 16, 2, 0, 3, 16, 8);
  ecs_image *run = api_input_image(img, &p, &pol, &e);
  assert_non_null(run);
  assert_int_equal(run->width, 16);
  assert_int_equal(run->height, 8);
  assert_memory_equal(run->data, pol.pad, 3);                             /* padding above */
  assert_int_equal(run->data[(3 * 16 + 5) * 3], 200);                     /* the image */
  assert_memory_equal(run->data + (size_t)(7 * 16 + 15) * 3, pol.pad, 3); /* and below */
  ecs_image_free(run);
  ecs_image_free(img);
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
  assert_int_equal(api_cam_result_resize(r, NULL, 2, 1, &e), ECS_OK);
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
  assert_int_equal(api_cam_result_resize(r, NULL, 1, 1, &e), ECS_OK);
  assert_int_equal(r->mask[0], 2);
  assert_float_equal(r->cams[0], 0.5f, 1e-5f);
  ecs_cam_result_free(r);
  /* out of the padding: rows 2..5 of a 16 x 8 canvas are the image's 4 rows, at 8 x 2 */
  r = result(16, 8);
  api_input_plan plan = {
      .scaled_w = 16, .scaled_h = 4, .x = 0, .y = 2, .canvas_w = 16, .canvas_h = 8};
  assert_int_equal(api_cam_result_resize(r, &plan, 8, 2, &e), ECS_OK);
  assert_int_equal(r->w, 8);
  assert_int_equal(r->h, 2);
  assert_int_equal(r->ecs_mask[0], ECS_MASK_IGNORE); /* canvas row 3 */
  assert_int_equal(r->ecs_mask[8], 2);               /* canvas row 5 */
  assert_int_equal(r->phi, 8);
  ecs_cam_result_free(r);
  /* the same size, but padded: still cut out */
  r = result(16, 8);
  plan = (api_input_plan){.scaled_w = 8, .scaled_h = 8, .x = 8, .canvas_w = 16, .canvas_h = 8};
  assert_int_equal(api_cam_result_resize(r, &plan, 8, 8, &e), ECS_OK);
  assert_int_equal(r->w, 8);
  assert_int_equal(r->cam_mask[0], 2); /* canvas column 8: the right half */
  ecs_cam_result_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_policy_auto), cmocka_unit_test(test_policy_side),
      cmocka_unit_test(test_input_image), cmocka_unit_test(test_resize_back)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
