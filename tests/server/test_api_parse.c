/* test_api_parse.c - base64, Content-Type, multipart and POST /cam parameter parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "cam-request.h"
#include "multipart.h"

static const uint8_t k_png_magic[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};

/* ---- base64 ---- */

static void test_base64_round_trip(void **state) {
  (void)state;
  for (size_t n = 0; n < 40; n++) {
    uint8_t src[40];
    for (size_t i = 0; i < n; i++)
      src[i] = (uint8_t)(i * 37 + n);
    char *enc = api_base64_encode(src, n);
    assert_non_null(enc);
    assert_int_equal(strlen(enc), 4 * ((n + 2) / 3));
    uint8_t *dec;
    size_t dl;
    api_error e;
    assert_true(api_base64_decode(enc, strlen(enc), 1000, &dec, &dl, &e));
    assert_int_equal(dl, n);
    assert_memory_equal(dec, src, n);
    free(dec);
    free(enc);
  }
}

static void test_base64_known_and_bad(void **state) {
  (void)state;
  uint8_t *d;
  size_t n;
  api_error e;
  assert_true(api_base64_decode("aGVsbG8=", 8, 100, &d, &n, &e));
  assert_int_equal(n, 5);
  assert_memory_equal(d, "hello", 5);
  free(d);
  /* unpadded, wrapped, and as a data URL */
  assert_true(api_base64_decode("data:image/png;base64,aGVs\r\nbG8", 31, 100, &d, &n, &e));
  assert_int_equal(n, 5);
  assert_memory_equal(d, "hello", 5);
  free(d);
  assert_false(api_base64_decode("aGV*bG8=", 8, 100, &d, &n, &e));
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "invalid_base64");
  assert_false(api_base64_decode("a", 1, 100, &d, &n, &e));
  assert_false(api_base64_decode("aG=V", 4, 100, &d, &n, &e));
  assert_false(api_base64_decode("aGVsbG8=", 8, 4, &d, &n, &e));
  assert_int_equal(e.status, 413);
  assert_string_equal(e.code, "payload_too_large");
  assert_null(d);
}

/* ---- Content-Type and multipart ---- */

static void test_content_type(void **state) {
  (void)state;
  api_content_type ct;
  api_error e;
  assert_true(
      api_content_type_parse("Multipart/Form-Data; boundary=\"a b\"; charset=utf-8", &ct, &e));
  assert_string_equal(ct.media, "multipart/form-data");
  assert_string_equal(ct.boundary, "a b");
  assert_string_equal(ct.charset, "utf-8");
  assert_true(api_content_type_parse("image/png;", &ct, &e));
  assert_string_equal(ct.media, "image/png");
  assert_false(api_content_type_parse("png", &ct, &e));
  assert_int_equal(e.status, 400);
  assert_false(api_content_type_parse("image/png; boundary", &ct, &e));
  assert_false(api_content_type_parse("image/png; x=\"unterminated", &ct, &e));
  assert_string_equal(e.code, "invalid_content_type");
}

static const char k_mp[] = "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"labels\"\r\n\r\n"
                           "cat,dog\r\n"
                           "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                           "Content-Type: image/png\r\n\r\n"
                           "\x89PNG\r\n\x1a\n--not-a-boundary\r\n"
                           "--XyZ--\r\n";

static void test_multipart_parts(void **state) {
  (void)state;
  api_parts p;
  api_error e;
  assert_true(api_multipart_parse(k_mp, sizeof k_mp - 1, "XyZ", 8, &p, &e));
  assert_int_equal(p.n, 2);
  assert_string_equal(p.parts[0].name, "labels");
  assert_null(p.parts[0].filename);
  assert_int_equal(p.parts[0].len, 7);
  assert_memory_equal(p.parts[0].data, "cat,dog", 7);
  assert_string_equal(p.parts[1].name, "image");
  assert_string_equal(p.parts[1].filename, "a.png");
  assert_string_equal(p.parts[1].content_type, "image/png");
  assert_int_equal(p.parts[1].len, 8 + 16);
  api_parts_free(&p);
}

static void test_multipart_malformed(void **state) {
  (void)state;
  api_parts p;
  api_error e;
  /* every prefix of a valid body is truncated, and must fail cleanly */
  for (size_t n = 0; n < sizeof k_mp - 3; n++) {
    char *copy = malloc(n + 1); /* exact size: a read past the end shows under ASan */
    memcpy(copy, k_mp, n);
    bool ok = api_multipart_parse(copy, n, "XyZ", 8, &p, &e);
    free(copy);
    if (ok) {
      fprintf(stderr, "prefix %zu accepted\n", n);
      fail();
    }
    assert_int_equal(e.status, 400);
  }
  assert_false(api_multipart_parse(k_mp, sizeof k_mp - 1, "other", 8, &p, &e));
  assert_false(api_multipart_parse(k_mp, sizeof k_mp - 1, "XyZ", 1, &p, &e));
  assert_string_equal(e.code, "too_many_parts");
  static const char no_name[] = "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--";
  assert_false(api_multipart_parse(no_name, sizeof no_name - 1, "b", 8, &p, &e));
  assert_string_equal(e.code, "invalid_multipart");
}

/* ---- POST /cam ---- */

static api_cam_limits k_lim = {.max_labels = 4, .max_image = 1 << 20};

static bool parse_raw(const char *query_k, const char *query_v, api_cam_request *req,
                      api_error *e) {
  api_kv q[1] = {{query_k, query_v}};
  api_http_in in = {.content_type = "image/png",
                    .body = k_png_magic,
                    .body_len = sizeof k_png_magic,
                    .query = q,
                    .n_query = query_k ? 1 : 0};
  return api_cam_request_parse(&in, &k_lim, req, e);
}

static void test_cam_raw_defaults(void **state) {
  (void)state;
  api_cam_request r;
  api_error e;
  assert_true(parse_raw(NULL, NULL, &r, &e));
  assert_int_equal(r.outputs, API_OUT_DEFAULT);
  assert_int_equal(r.format, API_FORMAT_JSON);
  assert_false(r.labels_given);
  assert_int_equal(r.n_scales, 1);
  assert_true(r.image == k_png_magic);
  api_cam_request_free(&r);
}

static void test_cam_labels(void **state) {
  (void)state;
  api_cam_request r;
  api_error e;
  assert_true(parse_raw("labels", "cat, 12 ,potted plant", &r, &e));
  assert_int_equal(r.n_labels, 3);
  assert_string_equal(r.labels[0].name, "cat");
  assert_int_equal(r.labels[0].id, -1);
  assert_int_equal(r.labels[1].id, 12);
  assert_string_equal(r.labels[2].name, "potted plant");
  struct {
    const char *v, *code;
    unsigned status;
  } bad[] = {{"cat,,dog", "invalid_labels", 422},
             {"cat,cat", "duplicate_label", 422},
             {"a,b,c,d,e", "too_many_labels", 422},
             {"<script>", "unknown_label", 422},
             {"1025", "unknown_label", 422},
             {"99999", "unknown_label", 422},
             {"", "invalid_labels", 422}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_false(parse_raw("labels", bad[i].v, &r, &e));
    assert_string_equal(e.code, bad[i].code);
    assert_int_equal(e.status, bad[i].status);
  }
}

static void test_cam_values(void **state) {
  (void)state;
  api_cam_request r;
  api_error e;
  assert_true(parse_raw("outputs", "mask,scores,overlay", &r, &e));
  assert_int_equal(r.outputs, API_OUT_MASK | API_OUT_SCORES | API_OUT_OVERLAY);
  assert_true(parse_raw("scales", "0.5,1,1.5", &r, &e));
  assert_int_equal(r.n_scales, 3);
  assert_true(r.scales[2] == 1.5f);
  assert_true(parse_raw("flip", "yes", &r, &e));
  assert_true(r.flip);
  assert_true(parse_raw("outputs", "erase_region", &r, &e));
  assert_int_equal(r.outputs, API_OUT_ERASE_REGION);
  assert_true((API_OUT_ERASING & API_OUT_ERASE_REGION) != 0); /* it needs the erasing branch */
  assert_true(parse_raw(NULL, NULL, &r, &e));
  assert_false(r.alpha_bg_given);
  assert_true(parse_raw("alpha_bg", "0.35", &r, &e));
  assert_true(r.alpha_bg_given && r.alpha_bg == 0.35f);
  assert_true(parse_raw("alpha_bg", "0", &r, &e));
  assert_true(r.alpha_bg_given && r.alpha_bg == 0.0f);
  assert_true(parse_raw("alpha_bg", "1", &r, &e));
  assert_true(r.alpha_bg == 1.0f);
  struct {
    const char *k, *v, *code;
  } bad[] = {{"outputs", "cam,heatmap", "unknown_output"},
             {"format", "gif", "unknown_format"},
             {"flip", "maybe", "invalid_value"},
             {"scales", "9", "invalid_value"},
             {"scales", "1,x", "invalid_value"},
             {"colour", "red", "unknown_parameter"},
             {"scales", "1,1,1,1,1,1,1,1,1", "invalid_value"},
             {"alpha_bg", "1.01", "invalid_value"},
             {"alpha_bg", "-0.1", "invalid_value"},
             {"alpha_bg", "nan", "invalid_value"},
             {"alpha_bg", "0.5x", "invalid_value"},
             {"alpha_bg", "", "invalid_value"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_false(parse_raw(bad[i].k, bad[i].v, &r, &e));
    assert_string_equal(e.code, bad[i].code);
    assert_int_equal(e.status, 422);
  }
}

static void test_cam_png_rules(void **state) {
  (void)state;
  api_cam_request r;
  api_error e;
  api_kv q[3] = {{"format", "png"}, {"outputs", "cam"}, {"labels", "cat,dog"}};
  api_http_in in = {.content_type = "image/png",
                    .body = k_png_magic,
                    .body_len = sizeof k_png_magic,
                    .query = q,
                    .n_query = 1};
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e)); /* default outputs: ambiguous */
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "ambiguous_request");
  in.n_query = 3; /* a CAM of two labels without label= */
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(e.status, 400);
  q[2].value = "dog";
  assert_true(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(r.format, API_FORMAT_PNG);
  q[1].value = "mask";
  in.n_query = 2;
  assert_true(api_cam_request_parse(&in, &k_lim, &r, &e));
  q[1].value = "mask,scores";
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
}

static void test_cam_json_and_multipart(void **state) {
  (void)state;
  char *b64 = api_base64_encode(k_png_magic, sizeof k_png_magic);
  char body[512];
  snprintf(body, sizeof body,
           "{\"image\":\"%s\",\"labels\":[\"cat\",3],\"flip\":true,\"scales\":[1,2]}", b64);
  api_http_in in = {.content_type = "application/json; charset=utf-8",
                    .body = (const uint8_t *)body,
                    .body_len = strlen(body)};
  api_cam_request r;
  api_error e;
  assert_true(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(r.image_len, sizeof k_png_magic);
  assert_memory_equal(r.image, k_png_magic, sizeof k_png_magic);
  assert_int_equal(r.n_labels, 2);
  assert_int_equal(r.labels[1].id, 3);
  assert_true(r.flip);
  assert_int_equal(r.n_scales, 2);
  api_cam_request_free(&r);

  /* the same parameter in the query and the body */
  api_kv q[1] = {{"flip", "false"}};
  in.query = q;
  in.n_query = 1;
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_string_equal(e.code, "duplicate_parameter");
  in.n_query = 0;

  const char *bad[][2] = {
      {"{\"image\": 1}", "invalid_image"},          {"{\"image\": \"@@@\"}", "invalid_base64"},
      {"{\"labels\": \"cat\"}", "missing_image"},   {"[1,2]", "invalid_json"},
      {"{\"image\": \"aGVsbG8=\"", "invalid_json"}, {"{\"image\": \"aGVsbG8=\"}", "invalid_image"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    in.body = (const uint8_t *)bad[i][0];
    in.body_len = strlen(bad[i][0]);
    assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
    assert_string_equal(e.code, bad[i][1]);
    assert_int_equal(e.status, 400);
  }
  free(b64);

  /* multipart: the image part plus a field */
  char mp[256];
  int n = snprintf(mp, sizeof mp,
                   "--b\r\nContent-Disposition: form-data; name=\"outputs\"\r\n\r\nmask\r\n"
                   "--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x\"\r\n\r\n");
  memcpy(mp + n, k_png_magic, sizeof k_png_magic);
  n += (int)sizeof k_png_magic;
  n += snprintf(mp + n, sizeof mp - (size_t)n, "\r\n--b--\r\n");
  in = (api_http_in){.content_type = "multipart/form-data; boundary=b",
                     .body = (const uint8_t *)mp,
                     .body_len = (size_t)n};
  assert_true(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(r.outputs, API_OUT_MASK);
  assert_int_equal(r.image_len, sizeof k_png_magic);
  api_cam_request_free(&r);
}

static void test_cam_media_types(void **state) {
  (void)state;
  api_cam_request r;
  api_error e;
  api_http_in in = {
      .content_type = "text/plain", .body = k_png_magic, .body_len = sizeof k_png_magic};
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(e.status, 415);
  in.content_type = NULL;
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(e.status, 415);
  in.content_type = "image/jpeg";
  in.body = (const uint8_t *)"GIF89a....";
  in.body_len = 10;
  assert_false(api_cam_request_parse(&in, &k_lim, &r, &e));
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "invalid_image");
}

static void test_resolve_labels(void **state) {
  (void)state;
  const char *names[] = {"aeroplane", "cat", "dog"};
  api_model_info info = {.name = "m", .version = 1, .n_classes = 3, .class_names = names};
  api_cam_request r;
  api_error e;
  int ids[8], n, png;
  assert_true(parse_raw("labels", "dog,1", &r, &e));
  assert_true(api_cam_resolve_labels(&r, &info, ids, &n, &e));
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 3);
  assert_int_equal(ids[1], 1);
  api_label l = {.id = -1, .name = "background"};
  assert_true(api_cam_resolve_label(&l, &info, &png, &e));
  assert_int_equal(png, 0);
  l = (api_label){.id = 4};
  assert_false(api_cam_resolve_label(&l, &info, &png, &e));
  assert_string_equal(e.code, "unknown_label");
  assert_true(parse_raw("labels", "cat,2", &r, &e));
  assert_false(api_cam_resolve_labels(&r, &info, ids, &n, &e));
  assert_string_equal(e.code, "duplicate_label");
  assert_true(parse_raw("labels", "horse", &r, &e));
  assert_false(api_cam_resolve_labels(&r, &info, ids, &n, &e));
  assert_int_equal(e.status, 422);
  assert_string_equal(e.code, "unknown_label");
  assert_true(parse_raw("labels", "4", &r, &e));
  assert_false(api_cam_resolve_labels(&r, &info, ids, &n, &e));
}

static void test_error_json(void **state) {
  (void)state;
  api_error e;
  api_fail(&e, 422, "unknown_label", "unknown label '%s'", "a\"b");
  char *j = api_error_json(&e);
  assert_string_equal(
      j, "{\"error\":{\"code\":\"unknown_label\",\"message\":\"unknown label 'a\\\"b'\"}}");
  free(j);
}

/* The command line's options go through the same parameter code as a request's. */
static void test_params_alone(void **state) {
  (void)state;
  api_cam_request req;
  api_error e;
  api_cam_limits lim = {0};
  const api_kv ok[] = {
      {"labels", "dog,2"}, {"scales", "1,0.5"}, {"flip", "true"}, {"outputs", "cam,ecs_mask"}};
  assert_true(api_cam_params_parse(ok, 4, &lim, &req, &e));
  assert_null(req.image);
  assert_int_equal(req.n_labels, 2);
  assert_string_equal(req.labels[0].name, "dog");
  assert_int_equal(req.labels[1].id, 2);
  assert_int_equal(req.n_scales, 2);
  assert_true(req.flip);
  assert_int_equal(req.outputs, API_OUT_CAM | API_OUT_ECS_MASK);
  assert_true(api_cam_params_parse(NULL, 0, &lim, &req, &e));
  assert_int_equal(req.outputs, API_OUT_DEFAULT);
  assert_int_equal(req.n_scales, 1);
  const api_kv bad[] = {{"scales", "9"}};
  assert_false(api_cam_params_parse(bad, 1, &lim, &req, &e));
  assert_int_equal(e.status, 422);
  const api_kv twice[] = {{"labels", "dog"}, {"labels", "cat"}};
  assert_false(api_cam_params_parse(twice, 2, &lim, &req, &e));
  assert_int_equal(e.status, 400);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_params_alone),
      cmocka_unit_test(test_base64_round_trip),
      cmocka_unit_test(test_base64_known_and_bad),
      cmocka_unit_test(test_content_type),
      cmocka_unit_test(test_multipart_parts),
      cmocka_unit_test(test_multipart_malformed),
      cmocka_unit_test(test_cam_raw_defaults),
      cmocka_unit_test(test_cam_labels),
      cmocka_unit_test(test_cam_values),
      cmocka_unit_test(test_cam_png_rules),
      cmocka_unit_test(test_cam_json_and_multipart),
      cmocka_unit_test(test_cam_media_types),
      cmocka_unit_test(test_resolve_labels),
      cmocka_unit_test(test_error_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
