/* test_cam_response.c - rendering a model result: JSON with base64 PNGs that decode back to
 * the values given, single PNGs, and the errors for a result that breaks the contract. The
 * result here is built by hand to pin the encoding; it stands in for no component. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "cam-response.h"
#include "ecs/image.h"

enum { W = 7, H = 5, K = 3 };
static const char *k_names[K] = {"aeroplane", "cat", "dog"};
static const api_model_info k_info = {
    .name = "tiny", .version = 2, .n_classes = K, .class_names = k_names, .backbone = "small"};

static void make_result(ecs_cam_result *r) {
  memset(r, 0, sizeof *r);
  r->w = W;
  r->h = H;
  r->n_classes = K;
  r->n_labels = 2;
  r->labels[0] = 2;
  r->labels[1] = 3;
  r->scores = malloc(K * sizeof(float));
  for (int k = 0; k < K; k++)
    r->scores[k] = 0.25f * (float)k;
  r->cams = malloc(2 * W * H * sizeof(float));
  r->erased_cams = malloc(2 * W * H * sizeof(float));
  for (int i = 0; i < 2 * W * H; i++) {
    r->cams[i] = (float)i / (2 * W * H - 1);
    r->erased_cams[i] = 1.0f - r->cams[i];
  }
  r->cams[0] = NAN; /* clamped to 0, never UB */
  r->cams[1] = 7.0f;
  r->mask = malloc(W * H * sizeof *r->mask);
  for (int i = 0; i < W * H; i++)
    r->mask[i] = (uint16_t)(i % 4 == 3 ? ECS_MASK_IGNORE : i % 4);
}

/* The buffers of a result made here (ecs_cam_result_free would also free the struct). */
static void free_result(ecs_cam_result *r) {
  free(r->scores);
  free(r->cams);
  free(r->erased_cams);
  free(r->mask);
  free(r->erase_region);
  free(r->erased_image);
  memset(r, 0, sizeof *r);
}

static ecs_image *decode_b64(const char *b64, bool indexed) {
  uint8_t *png;
  size_t n;
  api_error ae;
  assert_true(api_base64_decode(b64, strlen(b64), 1 << 20, &png, &n, &ae));
  ecs_image *img = NULL;
  ecs_err e;
  ecs_status st = indexed ? ecs_image_decode_indexed(png, n, 0, &img, &e)
                          : ecs_image_decode_ex(png, n, 0, ECS_DECODE_KEEP_GREY, &img, &e);
  free(png);
  if (st != ECS_OK) fprintf(stderr, "decode: %s\n", e.msg);
  assert_int_equal(st, ECS_OK);
  return img;
}

static void test_json(void **state) {
  (void)state;
  ecs_cam_result res;
  make_result(&res);
  api_cam_request req = {.outputs = API_OUT_DEFAULT, .format = API_FORMAT_JSON};
  api_cam_timings t = {1, 2, 3, 6, 0, 0};
  api_response a;
  api_error e;
  req.outputs &= ~(unsigned)API_OUT_ERASED_CAM;
  assert_true(api_cam_render(&req, &k_info, NULL, &res, &t, &a, &e));
  assert_int_equal(a.status, 200);
  assert_string_equal(a.type, "application/json");
  json_t *j = json_loadb(a.body, a.len, 0, NULL);
  assert_non_null(j);
  assert_int_equal(json_integer_value(json_object_get(j, "width")), W);
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "name")),
                      "tiny");
  json_t *labels = json_object_get(j, "labels");
  assert_int_equal(json_array_size(labels), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(labels, 1), "name")), "dog");
  json_t *scores = json_object_get(j, "scores");
  assert_int_equal(json_array_size(scores), K);
  assert_true(fabs(json_real_value(json_object_get(json_array_get(scores, 2), "score")) - 0.5) <
              1e-6);
  assert_null(json_object_get(j, "erased_cams"));
  json_t *cams = json_object_get(j, "cams");
  for (int l = 0; l < 2; l++) {
    ecs_image *img =
        decode_b64(json_string_value(json_object_get(json_array_get(cams, l), "png")), false);
    assert_int_equal(img->channels, 1);
    assert_int_equal(img->width, W);
    for (int i = 0; i < W * H; i++) {
      float v = res.cams[l * W * H + i];
      int want = isnan(v) ? 0 : v > 1 ? 255 : (int)lrintf(v * 255);
      assert_int_equal(img->data[i], want);
    }
    ecs_image_free(img);
  }
  ecs_image *m = decode_b64(json_string_value(json_object_get(j, "mask")), true);
  for (int i = 0; i < W * H; i++) /* 8-bit palette: ignore is 255 */
    assert_int_equal(m->data[i], res.mask[i] == ECS_MASK_IGNORE ? 255 : res.mask[i]);
  ecs_image_free(m);
  json_decref(j);
  api_response_free(&a);
  free_result(&res);
}

static void test_png_and_contract(void **state) {
  (void)state;
  ecs_cam_result res;
  make_result(&res);
  api_cam_timings t = {0};
  api_response a;
  api_error e;
  api_cam_request req = {.outputs = API_OUT_CAM,
                         .format = API_FORMAT_PNG,
                         .png_label_given = true,
                         .png_label = {.id = 3}};
  assert_true(api_cam_render(&req, &k_info, NULL, &res, &t, &a, &e));
  assert_string_equal(a.type, "image/png");
  ecs_image *img = NULL;
  ecs_err ee;
  assert_int_equal(ecs_image_decode_ex(a.body, a.len, 0, ECS_DECODE_KEEP_GREY, &img, &ee), ECS_OK);
  assert_int_equal(img->data[0], (int)lrintf(res.cams[W * H] * 255)); /* label 3 is the 2nd */
  ecs_image_free(img);
  api_response_free(&a);
  /* a label the result has no CAM for */
  req.png_label.id = 1;
  assert_false(api_cam_render(&req, &k_info, NULL, &res, &t, &a, &e));
  assert_int_equal(e.status, 422);
  /* an output the result lacks (the overlay without its image) breaks the contract: 500 */
  req = (api_cam_request){.outputs = API_OUT_OVERLAY, .format = API_FORMAT_PNG};
  assert_false(api_cam_render(&req, &k_info, NULL, &res, &t, &a, &e));
  assert_int_equal(e.status, 500);
  req.format = API_FORMAT_JSON;
  assert_false(api_cam_render(&req, &k_info, NULL, &res, &t, &a, &e));
  assert_int_equal(e.status, 500);
  /* the overlay over its image: half the image plus the colour map of the max CAM */
  ecs_image rgb = {.width = W, .height = H, .channels = 3, .data = calloc(W * H * 3, 1)};
  assert_true(api_cam_render(&req, &k_info, &rgb, &res, &t, &a, &e));
  api_response_free(&a);
  free(rgb.data);
  free_result(&res);
}

/* The PNG file at dir/name, decoded (indexed: palette indices). */
static ecs_image *read_png(const char *dir, const char *name, bool indexed) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  uint8_t *png;
  size_t n;
  ecs_err e;
  assert_int_equal(ecs_file_read(path, 1 << 20, &png, &n, &e), ECS_OK);
  ecs_image *img = NULL;
  ecs_status st = indexed ? ecs_image_decode_indexed(png, n, 0, &img, &e)
                          : ecs_image_decode_ex(png, n, 0, ECS_DECODE_KEEP_GREY, &img, &e);
  free(png);
  assert_int_equal(st, ECS_OK);
  return img;
}

/* api_cam_write_files (ecsnet cam) writes the very pixels api_cam_render answers with. */
static void test_files_match_the_answer(void **state) {
  (void)state;
  ecs_cam_result res;
  make_result(&res);
  res.erase_region = calloc(W * H, 1);
  res.erase_region[3] = 1;
  res.erased_image = calloc(W * H * 3, 1);
  api_cam_request req = {.outputs = API_OUT_CAM | API_OUT_ERASED_CAM | API_OUT_MASK |
                                    API_OUT_SCORES | API_OUT_ERASED_IMAGE | API_OUT_ERASE_REGION,
                         .format = API_FORMAT_JSON};
  api_cam_timings t = {0};
  api_response ans;
  api_error e;
  assert_true(api_cam_render(&req, &k_info, NULL, &res, &t, &ans, &e));
  json_t *j = json_loadb(ans.body, ans.len, 0, NULL);
  api_response_free(&ans);
  char dir[] = "/tmp/test_cam_files_XXXXXX";
  assert_non_null(mkdtemp(dir));
  ecs_err ee = {0};
  assert_int_equal(api_cam_write_files(dir, &req, &k_info, NULL, &res, &ee), ECS_OK);
  static const char *const files[2][2] = {{"cam_cat.png", "cam_dog.png"},
                                          {"erased_cam_cat.png", "erased_cam_dog.png"}};
  static const char *const keys[2] = {"cams", "erased_cams"};
  for (int c = 0; c < 2; c++)
    for (int l = 0; l < 2; l++) {
      json_t *item = json_array_get(json_object_get(j, keys[c]), (size_t)l);
      ecs_image *a = decode_b64(json_string_value(json_object_get(item, "png")), false);
      ecs_image *b = read_png(dir, files[c][l], false);
      assert_int_equal(b->channels, 1);
      assert_memory_equal(a->data, b->data, W * H);
      ecs_image_free(a);
      ecs_image_free(b);
    }
  ecs_image *a = decode_b64(json_string_value(json_object_get(j, "mask")), true);
  ecs_image *b = read_png(dir, "mask.png", true);
  assert_memory_equal(a->data, b->data, W * H);
  ecs_image_free(a);
  ecs_image_free(b);
  /* the erase region: 255 where erased, the same pixels in the answer and the file */
  a = decode_b64(json_string_value(json_object_get(j, "erase_region")), false);
  b = read_png(dir, "erase_region.png", false);
  assert_int_equal(b->channels, 1);
  assert_int_equal(b->data[3], 255);
  assert_int_equal(b->data[4], 0);
  assert_memory_equal(a->data, b->data, W * H);
  ecs_image_free(a);
  ecs_image_free(b);
  char path[512], line[128];
  snprintf(path, sizeof path, "%s/scores.txt", dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof line, f));
  assert_string_equal(line, "aeroplane 0.000000\n");
  assert_non_null(fgets(line, sizeof line, f));
  assert_string_equal(line, "cat 0.250000 *\n");
  fclose(f);
  /* outputs not asked for are not written */
  snprintf(path, sizeof path, "%s/ecs_mask.png", dir);
  assert_int_not_equal(access(path, F_OK), 0);
  /* a folder that does not exist: an error naming the file, not a crash */
  assert_int_not_equal(api_cam_write_files("/nonexistent/dir", &req, &k_info, NULL, &res, &ee),
                       ECS_OK);
  assert_non_null(strstr(ee.msg, "/nonexistent/dir"));
  json_decref(j);
  free_result(&res);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_png_and_contract),
      cmocka_unit_test(test_files_match_the_answer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
