/* test_labelstudio.c - the Label Studio backend without Label Studio: the labeling config,
 * the tasks' labels, a prediction's regions, and which image references the fetcher refuses
 * before any connection. tests/integrations runs the same code against a real Label Studio. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "labelstudio.h"
#include "srv-fetch.h"

static const char *k_names[3] = {"cat", "dog", "bird"};
static const api_model_info k_info = {
    .name = "m", .version = 3, .n_classes = 3, .class_names = k_names};

static const char *k_config =
    "<View>\n  <!-- <Image name=\"no\" value=\"$no\"/> -->\n"
    "  <Image name=\"img\" value=\"$photo\" zoom=\"true\"/>\n"
    "  <Choices name=\"tags\" toName=\"img\" choice=\"multiple\">\n"
    "    <Choice value=\"cat\"/><Choice value=\"Dog\"/>\n  </Choices>\n"
    "  <BrushLabels name=\"tag\" toName=\"img\">\n"
    "    <Label value=\"Cat\" background=\"#f00\"/><Label value=\"zebra\"/>"
    "<Label value=\"bird &amp; co\"/>\n  </BrushLabels>\n"
    "  <PolygonLabels name=\"poly\" toName=\"img\"><Label value='dog'/></PolygonLabels>\n"
    "</View>";

static void config_is_read(void **state) {
  (void)state;
  api_ls_config c;
  api_error e;
  assert_true(api_ls_parse_config(k_config, &c, &e));
  assert_string_equal(c.image_name, "img");
  assert_string_equal(c.image_key, "photo");
  assert_true(c.brush.present && c.polygon.present && c.choices.present);
  assert_string_equal(c.brush.name, "tag");
  assert_int_equal(c.brush.n_labels, 3);
  assert_string_equal(c.brush.labels[0], "Cat");
  assert_string_equal(c.brush.labels[2], "bird & co");
  assert_int_equal(c.polygon.n_labels, 1);
  assert_int_equal(c.choices.n_labels, 2);
  /* No image, or no mask control on it: 422. */
  assert_false(api_ls_parse_config("<View><Text name=\"t\" value=\"$t\"/></View>", &c, &e));
  assert_int_equal(e.status, 422);
  assert_false(api_ls_parse_config(
      "<View><Image name=\"a\" value=\"$a\"/><BrushLabels name=\"b\" toName=\"x\"/></View>", &c,
      &e));
  assert_string_equal(e.code, "invalid_label_config");
  assert_false(api_ls_parse_config("<View><Image name=\"a", &c, &e));
  assert_false(api_ls_parse_config(NULL, &c, &e));
  /* A value longer than a label holds is cut before a whole UTF-8 character, never in one. */
  char xml[512], longv[80];
  memset(longv, 'a', 62);
  strcpy(longv + 62, "\xc3\xa9tail"); /* "é" straddles byte 63 */
  snprintf(xml, sizeof xml,
           "<View><Image name=\"i\" value=\"$i\"/><BrushLabels name=\"b\" toName=\"i\">"
           "<Label value=\"%s\"/></BrushLabels></View>",
           longv);
  assert_true(api_ls_parse_config(xml, &c, &e));
  assert_int_equal(strlen(c.brush.labels[0]), 62);
  json_t *js = json_string(c.brush.labels[0]);
  assert_non_null(js);
  json_decref(js);
}

static void task_labels(void **state) {
  (void)state;
  api_ls_config c;
  api_error e;
  assert_true(api_ls_parse_config(k_config, &c, &e));
  json_t *t = json_loads("{\"id\": 7, \"data\": {\"photo\": \"/data/upload/1/a.jpg\","
                         " \"labels\": \" DOG, zebra,cat,dog\"}}",
                         0, NULL);
  api_ls_task task;
  assert_true(api_ls_read_task(t, &c, &k_info, &task, &e));
  assert_int_equal(task.id, 7);
  assert_string_equal(task.image, "/data/upload/1/a.jpg");
  assert_true(task.labels_given);
  assert_int_equal(task.n_labels, 2); /* zebra dropped, dog once, the model's spelling */
  assert_string_equal(task.labels[0].name, "dog");
  assert_string_equal(task.labels[1].name, "cat");
  assert_int_equal(task.labels[0].id, 2); /* resolved once, passed on by id */
  assert_int_equal(task.labels[1].id, 1);
  json_decref(t);
  /* From the newest annotation with the Choices; a cancelled one does not count. */
  t = json_loads("{\"id\": 8, \"data\": {\"photo\": \"x\"}, \"annotations\": ["
                 "{\"result\": [{\"from_name\": \"tags\", \"value\": {\"choices\": [\"cat\"]}}]},"
                 "{\"result\": [{\"from_name\": \"tags\", \"value\": {\"choices\": [\"bird\"]}}]},"
                 "{\"was_cancelled\": true, \"result\": [{\"from_name\": \"tags\","
                 " \"value\": {\"choices\": [\"dog\"]}}]}]}",
                 0, NULL);
  assert_true(api_ls_read_task(t, &c, &k_info, &task, &e));
  assert_int_equal(task.n_labels, 1);
  assert_string_equal(task.labels[0].name, "bird");
  json_decref(t);
  t = json_loads("{\"id\": 9, \"data\": {\"image\": \"x\"}}", 0, NULL);
  assert_false(api_ls_read_task(t, &c, &k_info, &task, &e));
  assert_string_equal(e.code, "invalid_task");
  json_decref(t);
}

static void prediction_regions(void **state) {
  (void)state;
  api_ls_config c;
  api_error e;
  assert_true(api_ls_parse_config(k_config, &c, &e));
  enum { W = 4, H = 3 };
  uint16_t mask[W * H] = {1, 1, 0, 2, 1, 1, 0, 2, 255, 3, 3, 0};
  float scores[3] = {0.9f, 0.6f, 0.3f};
  ecs_cam_result res = {.w = W, .h = H, .n_classes = 3, .mask = mask, .scores = scores};
  char mv[64];
  api_ls_model_version(&k_info, mv, sizeof mv);
  assert_string_equal(mv, "m@3");
  json_t *p = api_ls_prediction(&c, &k_info, &res, mv);
  assert_non_null(p);
  assert_string_equal(json_string_value(json_object_get(p, "model_version")), "m@3");
  json_t *r = json_object_get(p, "result");
  /* cat as a brush region (the config's spelling), dog as a polygon, bird not at all: the
   * config's brush label is "bird & co", not a class name. */
  assert_int_equal(json_array_size(r), 2);
  json_t *b = json_array_get(r, 0), *g = json_array_get(r, 1);
  assert_string_equal(json_string_value(json_object_get(b, "type")), "brushlabels");
  assert_string_equal(json_string_value(json_array_get(
                          json_object_get(json_object_get(b, "value"), "brushlabels"), 0)),
                      "Cat");
  assert_int_equal(json_integer_value(json_object_get(b, "original_width")), W);
  assert_int_equal(json_integer_value(json_object_get(b, "original_height")), H);
  assert_string_equal(json_string_value(json_object_get(g, "type")), "polygonlabels");
  json_t *pts = json_object_get(json_object_get(g, "value"), "points");
  assert_int_equal(json_array_size(pts), 4); /* the column x 3..4, y 0..2 */
  assert_true(json_real_value(json_array_get(json_array_get(pts, 0), 0)) == 75.0);
  json_decref(p);
}

/* A model of 300 classes and one group (the ImageNet model's shape): 16-bit mask ids, config
 * labels naming a synonym and a group, a member class emitted under its group's label. */
static void prediction_regions_by_synonym_and_group(void **state) {
  (void)state;
  enum { K = 300, W = 5, H = 2 };
  static char names[K][16];
  static const char *name_ptrs[K];
  for (int k = 0; k < K; k++) {
    snprintf(names[k], sizeof names[k], "class %d", k + 1);
    name_ptrs[k] = names[k];
  }
  name_ptrs[281] = "tabby";
  name_ptrs[282] = "tiger cat";
  static const char *groups[1] = {"cat"};
  static const uint16_t start[2] = {0, 2}, member[2] = {282, 283};
  static const char *syn[2] = {"tabby", "tabby cat"};
  static const int syn_class[2] = {282, 282};
  const api_model_info info = {.name = "big",
                               .version = 1,
                               .n_classes = K,
                               .class_names = name_ptrs,
                               .n_groups = 1,
                               .group_names = groups,
                               .group_start = start,
                               .group_member = member,
                               .n_synonyms = 2,
                               .synonyms = syn,
                               .synonym_class = syn_class};
  api_ls_config c;
  api_error e;
  assert_true(api_ls_parse_config("<View><Image name='i' value='$image'/>"
                                  "<BrushLabels name='b' toName='i'><Label value='Tabby Cat'/>"
                                  "<Label value='unicorn'/><Label value='CAT'/></BrushLabels>"
                                  "</View>",
                                  &c, &e));
  /* tabby (282), tiger cat (283), the group cat (301), class 7 (not in the config), ignore */
  uint16_t mask[W * H] = {282, 282, 0, 283, 301, 7, 7, 65535, 301, 0};
  float scores[K + 1] = {0};
  ecs_cam_result res = {.w = W, .h = H, .n_classes = K, .mask = mask, .scores = scores};
  json_t *p = api_ls_prediction(&c, &info, &res, "big@1");
  assert_non_null(p);
  json_t *r = json_object_get(p, "result");
  assert_int_equal(json_array_size(r), 3);
  const char *want_label[3] = {"Tabby Cat", "CAT", "CAT"};
  const char *want_id[3] = {"ecsnet-brush-282", "ecsnet-brush-283", "ecsnet-brush-301"};
  for (int i = 0; i < 3; i++) {
    json_t *reg = json_array_get(r, (size_t)i);
    assert_string_equal(json_string_value(json_object_get(reg, "id")), want_id[i]);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(reg, "value"), "brushlabels"), 0)),
                        want_label[i]);
  }
  json_decref(p);
  /* The task's labels by synonym and group name, as ids above 254. */
  json_t *t = json_loads("{\"id\": 1, \"data\": {\"image\": \"x\", \"labels\":"
                         " \"tabby cat, Cat, unicorn\"}}",
                         0, NULL);
  api_ls_task task;
  assert_true(api_ls_read_task(t, &c, &info, &task, &e));
  assert_int_equal(task.n_labels, 2);
  assert_int_equal(task.labels[0].id, 282);
  assert_int_equal(task.labels[1].id, 301);
  json_decref(t);
}

static void fetch_rules(void **state) {
  (void)state;
  srv_fetch *f = NULL;
  ecs_err ee = {0};
  api_error e;
  assert_int_equal(srv_fetch_new("http://ls.example:8081/", "tok", 1 << 20, 1000, &f, &ee), ECS_OK);
  assert_true(srv_fetch_allowed(f, "/data/upload/1/a.png", &e));
  assert_true(srv_fetch_allowed(f, "/data/local-files/?d=img/a.png", &e));
  assert_true(srv_fetch_allowed(f, "http://LS.example:8081/data/upload/1/a.png", &e));
  assert_true(srv_fetch_allowed(f, "data:image/png;base64,AAAA", &e));
  static const char *refused[] = {
      "http://other.example:8081/data/upload/a.png",
      "http://ls.example:9999/data/upload/a.png",
      "https://ls.example:8081/data/upload/a.png",
      "http://ls.example:8081/api/projects",
      "/data/../api/projects/",
      "//evil.example/data/a.png",
      "file:///etc/passwd",
      "gopher://ls.example:8081/data/a",
      "http://u:p@ls.example:8081/data/a.png",
      "data/upload/a.png",
      "",
      "http://ls.example:8081/data",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    assert_false(srv_fetch_allowed(f, refused[i], &e));
    assert_int_equal(e.status, 422);
  }
  srv_fetch_free(f);
  /* Without --ls-url only data: URIs. */
  assert_int_equal(srv_fetch_new("", "", 1 << 20, 1000, &f, &ee), ECS_OK);
  assert_false(srv_fetch_allowed(f, "/data/upload/1/a.png", &e));
  assert_string_equal(e.code, "ls_url_not_set");
  uint8_t *out = NULL;
  size_t n = 0;
  assert_true(srv_fetch_image(f, "data:image/png;base64,aGVsbG8=", &out, &n, &e));
  assert_int_equal(n, 5);
  assert_memory_equal(out, "hello", 5);
  free(out);
  assert_false(srv_fetch_image(f, "data:text/plain,hello", &out, &n, &e));
  srv_fetch_free(f);
  assert_int_equal(srv_fetch_new("ftp://x", "", 1, 1000, &f, &ee), ECS_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(config_is_read),
      cmocka_unit_test(task_labels),
      cmocka_unit_test(prediction_regions),
      cmocka_unit_test(prediction_regions_by_synonym_and_group),
      cmocka_unit_test(fetch_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
