/* test_safetensors.c - the safetensors reader and writer, and parameter stores on disk.
 *
 * The reader's promise is that no byte sequence makes it crash or expose a tensor outside the
 * file: so besides round trips, this feeds it every truncation of a small file, every single
 * byte flip of its header, and hand-made headers with each kind of lie. Inputs are exact-size
 * heap copies so that the sanitizer build catches any read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/safetensors.h"

/* Written by tests/python/st_io.py: conv1.weight F32 [1,2,3] = arange(6)*0.5-1, labels I32
 * [3, -7, 2^31-1], mask U8 [[0,255],[7,1]], metadata classes="cat,dog" and a note with a
 * \u escape, quotes, a backslash and a newline. */
static const unsigned char g_stio[] = "\x08\x01\x00\x00\x00\x00\x00\x00\x7b\x22\x63\x6f\x6e\x76\x31"
                                      "\x2e\x77\x65\x69\x67\x68\x74\x22\x3a"
                                      "\x7b\x22\x64\x74\x79\x70\x65\x22\x3a\x22\x46\x33\x32\x22\x2c"
                                      "\x22\x73\x68\x61\x70\x65\x22\x3a\x5b"
                                      "\x31\x2c\x32\x2c\x33\x5d\x2c\x22\x64\x61\x74\x61\x5f\x6f\x66"
                                      "\x66\x73\x65\x74\x73\x22\x3a\x5b\x30"
                                      "\x2c\x32\x34\x5d\x7d\x2c\x22\x6c\x61\x62\x65\x6c\x73\x22\x3a"
                                      "\x7b\x22\x64\x74\x79\x70\x65\x22\x3a"
                                      "\x22\x49\x33\x32\x22\x2c\x22\x73\x68\x61\x70\x65\x22\x3a\x5b"
                                      "\x33\x5d\x2c\x22\x64\x61\x74\x61\x5f"
                                      "\x6f\x66\x66\x73\x65\x74\x73\x22\x3a\x5b\x32\x34\x2c\x33\x36"
                                      "\x5d\x7d\x2c\x22\x6d\x61\x73\x6b\x22"
                                      "\x3a\x7b\x22\x64\x74\x79\x70\x65\x22\x3a\x22\x55\x38\x22\x2c"
                                      "\x22\x73\x68\x61\x70\x65\x22\x3a\x5b"
                                      "\x32\x2c\x32\x5d\x2c\x22\x64\x61\x74\x61\x5f\x6f\x66\x66\x73"
                                      "\x65\x74\x73\x22\x3a\x5b\x33\x36\x2c"
                                      "\x34\x30\x5d\x7d\x2c\x22\x5f\x5f\x6d\x65\x74\x61\x64\x61\x74"
                                      "\x61\x5f\x5f\x22\x3a\x7b\x22\x63\x6c"
                                      "\x61\x73\x73\x65\x73\x22\x3a\x22\x63\x61\x74\x2c\x64\x6f\x67"
                                      "\x22\x2c\x22\x6e\x6f\x74\x65\x22\x3a"
                                      "\x22\x63\x61\x66\x5c\x75\x30\x30\x65\x39\x20\x5c\x22\x71\x5c"
                                      "\x22\x20\x5c\x5c\x20\x5c\x6e\x22\x7d"
                                      "\x7d\x20\x20\x20\x20\x20\x20\x20\x00\x00\x80\xbf\x00\x00\x00"
                                      "\xbf\x00\x00\x00\x00\x00\x00\x00\x3f"
                                      "\x00\x00\x80\x3f\x00\x00\xc0\x3f\x03\x00\x00\x00\xf9\xff\xff"
                                      "\xff\xff\xff\xff\x7f\x00\xff\x07\x01";

/* An exact-size heap copy, so that any overread is outside the allocation. */
static unsigned char *dup_bytes(const void *p, size_t n) {
  unsigned char *c = malloc(n ? n : 1);
  assert_non_null(c);
  if (n) memcpy(c, p, n);
  return c;
}

/* Opens an image; returns 1 when it opened. When it did, every tensor must lie inside it. */
static int open_checked(const unsigned char *bytes, size_t n, ecs_err *err) {
  unsigned char *c = dup_bytes(bytes, n);
  ecs_st_file *f = ecs_st_open_memory(c, n, err);
  int ok = f != NULL;
  if (f) {
    for (size_t i = 0; i < ecs_st_count(f); i++) {
      const ecs_st_tensor *t = ecs_st_at(f, i);
      const unsigned char *d = t->data;
      assert_true(d >= c + 8 && d + t->nbytes <= c + n);
      assert_ptr_equal(ecs_st_find(f, t->name), t);
    }
  } else {
    assert_int_not_equal(err->status, ECS_OK);
    assert_true(strlen(err->msg) > 0);
  }
  ecs_st_close(f);
  free(c);
  return ok;
}

/* A file image from a header text (padded to 8) and ndata bytes of data valued 0, 1, 2, ... */
static unsigned char *make_file(const char *header, size_t ndata, size_t *n) {
  size_t h = strlen(header);
  size_t hp = (h + 7) / 8 * 8;
  *n = 8 + hp + ndata;
  unsigned char *b = malloc(*n);
  assert_non_null(b);
  for (int k = 0; k < 8; k++)
    b[k] = (unsigned char)((uint64_t)hp >> (8 * k));
  memcpy(b + 8, header, h);
  memset(b + 8 + h, ' ', hp - h);
  for (size_t i = 0; i < ndata; i++)
    b[8 + hp + i] = (unsigned char)i;
  return b;
}

/* Expects the header to be refused with ECS_ERR_FORMAT and a message containing `want`. */
static void expect_bad(const char *header, size_t ndata, const char *want) {
  size_t n;
  unsigned char *b = make_file(header, ndata, &n);
  ecs_err err = {0};
  ecs_st_file *f = ecs_st_open_memory(b, n, &err);
  if (f) fail_msg("accepted bad header: %s", header);
  assert_int_equal(err.status, ECS_ERR_FORMAT);
  if (!strstr(err.msg, want))
    fail_msg("error '%s' does not mention '%s' (header %s)", err.msg, want, header);
  free(b);
}

static void test_reads_python_written_file(void **state) {
  (void)state;
  ecs_err err = {0};
  unsigned char *c = dup_bytes(g_stio, sizeof g_stio - 1);
  ecs_st_file *f = ecs_st_open_memory(c, sizeof g_stio - 1, &err);
  if (!f) fail_msg("%s", err.msg);
  assert_int_equal(ecs_st_count(f), 3);
  const ecs_st_tensor *w = ecs_st_find(f, "conv1.weight");
  assert_non_null(w);
  assert_int_equal(w->type, ECS_F32);
  assert_int_equal(w->nd, 3);
  assert_int_equal(w->ne[0], 1);
  assert_int_equal(w->ne[1], 2);
  assert_int_equal(w->ne[2], 3);
  assert_int_equal(w->nbytes, 24);
  float wv[6];
  memcpy(wv, w->data, sizeof wv);
  for (int i = 0; i < 6; i++)
    assert_true(wv[i] == i * 0.5f - 1.0f);
  const ecs_st_tensor *l = ecs_st_find(f, "labels");
  int32_t lv[3];
  memcpy(lv, l->data, sizeof lv);
  assert_int_equal(l->type, ECS_I32);
  assert_int_equal(lv[0], 3);
  assert_int_equal(lv[1], -7);
  assert_int_equal(lv[2], 2147483647);
  const ecs_st_tensor *m = ecs_st_find(f, "mask");
  assert_int_equal(m->type, ECS_U8);
  assert_memory_equal(m->data, "\x00\xff\x07\x01", 4);
  /* insertion order is kept */
  assert_string_equal(ecs_st_at(f, 0)->name, "conv1.weight");
  assert_string_equal(ecs_st_at(f, 2)->name, "mask");
  assert_null(ecs_st_find(f, "nope"));
  assert_int_equal(ecs_st_meta_count(f), 2);
  assert_string_equal(ecs_st_meta(f, "classes"), "cat,dog");
  assert_string_equal(ecs_st_meta(f, "note"), "caf\xc3\xa9 \"q\" \\ \n");
  assert_null(ecs_st_meta(f, "absent"));
  ecs_st_close(f);
  free(c);
}

static void test_every_truncation_fails(void **state) {
  (void)state;
  size_t n = sizeof g_stio - 1;
  for (size_t len = 0; len < n; len++) {
    ecs_err err = {0};
    if (open_checked(g_stio, len, &err)) fail_msg("a file cut to %zu of %zu bytes opened", len, n);
    assert_int_equal(err.status, ECS_ERR_FORMAT);
  }
  ecs_err err = {0};
  assert_true(open_checked(g_stio, n, &err));
}

static void test_header_byte_flips_never_crash(void **state) {
  (void)state;
  size_t n = sizeof g_stio - 1;
  static const unsigned char flips[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff};
  unsigned char *b = dup_bytes(g_stio, n);
  int opened = 0, refused = 0;
  for (size_t i = 0; i < 8 + 264; i++) {
    for (size_t k = 0; k < sizeof flips; k++) {
      b[i] ^= flips[k];
      ecs_err err = {0};
      if (open_checked(b, n, &err))
        opened++;
      else
        refused++;
      b[i] ^= flips[k];
    }
  }
  /* most flips break the structure; a few (inside a name or metadata text) are harmless */
  assert_true(refused > opened);
  free(b);
}

static void test_bad_headers_are_named_errors(void **state) {
  (void)state;
  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t n;
  unsigned char *b = make_file(ok, 8, &n);
  ecs_err err = {0};
  assert_true(open_checked(b, n, &err));
  free(b);

  expect_bad("{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
             "'w' has dtype F64");
  expect_bad("{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
             "'w': shape and dtype");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
             "'w': data_offsets end 8");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "reversed");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}",
             8, "'w'");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}",
             8, "out of range");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}",
             8, "'w': shape too large");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12, "overlap");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8, "'a' appears twice");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
             "'w': negative shape");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "integers");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, "integers");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4,
             "leading zero");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
             "more than 4");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "needs 2");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing 'data_offsets'");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
             "unexpected key 'x'");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             4, "repeated key");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4,
             "expected '\"'");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing");
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected");
  expect_bad("[]", 0, "expected '{'");
  expect_bad("{\"w\":[1]}", 0, "expected '{'");
  expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "'k' is not a string");
  expect_bad("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "'k' repeated");
  expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ repeated");
  expect_bad("{\"__metadata__\":{\"k\":\"a\x01\"}}", 0, "control character");
  expect_bad("{\"__metadata__\":{\"k\":\"\\q\"}}", 0, "bad escape");
  expect_bad("{\"__metadata__\":{\"k\":\"\\u00\"}}", 0, "\\u escape");
  expect_bad("{\"__metadata__\":{\"k\":\"\\ud800x\"}}", 0, "surrogate");
  expect_bad("{\"__metadata__\":{\"k\":\"\\u0000\"}}", 0, "NUL");
  expect_bad("{\"__metadata__\":{\"k\":\"abc", 0, "unterminated");
  expect_bad("", 0, "expected '{'");
}

static void test_header_lengths(void **state) {
  (void)state;
  /* a header length past the end, a huge one, and one that wraps size arithmetic */
  const uint64_t lens[] = {1000, 1ull << 40, UINT64_MAX, UINT64_MAX - 7};
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
    unsigned char b[24] = "........{}      ";
    for (int i = 0; i < 8; i++)
      b[i] = (unsigned char)(lens[k] >> (8 * i));
    ecs_err err = {0};
    assert_false(open_checked(b, sizeof b, &err));
    assert_int_equal(err.status, ECS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "header length"));
  }
}

static char g_dir[64];

static int setup_dir(void **state) {
  (void)state;
  strcpy(g_dir, "/tmp/ecs-st-test-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  (void)state;
  DIR *d = opendir(g_dir);
  if (d) {
    struct dirent *e;
    char p[sizeof g_dir + 300];
    while ((e = readdir(d)))
      if (e->d_name[0] != '.') {
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
      }
    closedir(d);
  }
  rmdir(g_dir);
  return 0;
}

static int count_files(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void test_writer_round_trip(void **state) {
  (void)state;
  ecs_err err = {0};
  char path[128];
  snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
  ecs_st_writer *w = ecs_st_writer_new(&err);
  float a[5] = {1.5f, -2, 3.25f, 1e-30f, 7};
  int32_t b[2][2] = {{1, -2}, {3, 2147483647}};
  uint8_t c[3] = {0, 128, 255};
  const char *odd = "layer\"1\\x\n.weight";
  assert_int_equal(ecs_st_writer_add(w, "b.i32", ECS_I32, 2, (int64_t[]){2, 2}, b, &err), ECS_OK);
  assert_int_equal(ecs_st_writer_add(w, "a.f32", ECS_F32, 1, (int64_t[]){5}, a, &err), ECS_OK);
  assert_int_equal(ecs_st_writer_add(w, odd, ECS_U8, 4, (int64_t[]){1, 3, 1, 1}, c, &err), ECS_OK);
  assert_int_equal(ecs_st_writer_add(w, "empty", ECS_F32, 2, (int64_t[]){0, 3}, NULL, &err),
                   ECS_OK);
  assert_int_equal(ecs_st_writer_add(w, "a.f32", ECS_F32, 1, (int64_t[]){5}, a, &err),
                   ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "a.f32"));
  assert_int_equal(ecs_st_writer_add(w, "__metadata__", ECS_F32, 1, (int64_t[]){5}, a, &err),
                   ECS_ERR_INVALID);
  assert_int_equal(ecs_st_writer_meta(w, "backbone", "resnet38 \"d\"\t\x01", &err), ECS_OK);
  assert_int_equal(ecs_st_writer_meta(w, "alpha_bg", "0.5", &err), ECS_OK);
  /* saving twice replaces the file atomically and leaves no temporary behind */
  assert_int_equal(ecs_st_writer_save(w, path, &err), ECS_OK);
  assert_int_equal(ecs_st_writer_save(w, path, &err), ECS_OK);
  ecs_st_writer_free(w);
  assert_int_equal(count_files(), 1);

  ecs_st_file *f = ecs_st_open(path, &err);
  if (!f) fail_msg("%s", err.msg);
  assert_int_equal(ecs_st_count(f), 4);
  assert_string_equal(ecs_st_at(f, 0)->name, "b.i32");
  assert_string_equal(ecs_st_at(f, 1)->name, "a.f32");
  assert_string_equal(ecs_st_at(f, 2)->name, odd);
  const ecs_st_tensor *t = ecs_st_find(f, "a.f32");
  assert_int_equal(t->nbytes, sizeof a);
  assert_memory_equal(t->data, a, sizeof a);
  /* data starts 8-aligned in the file, so in a page-aligned mapping F32 data is aligned */
  assert_int_equal((uintptr_t)ecs_st_at(f, 0)->data % 8, 0);
  t = ecs_st_find(f, odd);
  assert_int_equal(t->type, ECS_U8);
  assert_int_equal(t->nd, 4);
  assert_memory_equal(t->data, c, 3);
  assert_memory_equal(ecs_st_find(f, "b.i32")->data, b, sizeof b);
  assert_int_equal(ecs_st_find(f, "empty")->nbytes, 0);
  assert_string_equal(ecs_st_meta(f, "backbone"), "resnet38 \"d\"\t\x01");
  assert_string_equal(ecs_st_meta(f, "alpha_bg"), "0.5");
  assert_string_equal(ecs_st_meta_key(f, 0), "backbone");
  ecs_st_close(f);

  assert_null(ecs_st_open("/nonexistent/x.safetensors", &err));
  assert_int_equal(err.status, ECS_ERR_IO);
  w = ecs_st_writer_new(&err);
  assert_int_equal(ecs_st_writer_save(w, "/nonexistent/dir/x.safetensors", &err), ECS_ERR_IO);
  ecs_st_writer_free(w);
  ecs_st_writer_free(NULL);
  ecs_st_close(NULL);
}

static ecs_params *make_store(int with_extra, int64_t wdim) {
  ecs_err err = {0};
  ecs_params *ps = ecs_params_new(&err);
  assert_non_null(
      ecs_params_add(ps, "conv.weight", ECS_F32, 4, (int64_t[]){2, wdim, 3, 3}, 1, &err));
  assert_non_null(ecs_params_add(ps, "bn.running_mean", ECS_F32, 1, (int64_t[]){2}, 0, &err));
  assert_non_null(ecs_params_add(ps, "step", ECS_I32, 1, (int64_t[]){1}, 0, &err));
  if (with_extra)
    assert_non_null(ecs_params_add(ps, "fc.bias", ECS_F32, 1, (int64_t[]){4}, 1, &err));
  assert_int_equal(ecs_params_alloc(ps, ecs_device_buffer_type(ecs_device_find("cpu", NULL)), &err),
                   ECS_OK);
  return ps;
}

static void fill_store(ecs_params *ps, float base) {
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    for (int64_t k = 0; k < ecs_nelements(t); k++) {
      if (t->type == ECS_F32)
        ((float *)t->data)[k] = base + (float)(i * 100 + k);
      else
        ((int32_t *)t->data)[k] = (int32_t)(base + i + k);
    }
  }
}

static void test_params_save_load(void **state) {
  (void)state;
  ecs_err err = {0};
  char path[128];
  snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
  ecs_params *src = make_store(1, 3);
  fill_store(src, 0.5f);
  const char *meta[] = {"classes", "a,b", "backbone", "vgg16"};
  assert_int_equal(ecs_params_save(src, path, meta, 2, &err), ECS_OK);
  ecs_st_file *f = ecs_st_open(path, &err);
  assert_non_null(f);
  assert_string_equal(ecs_st_meta(f, "backbone"), "vgg16");

  /* a store without fc.bias loads, and the extra key is reported */
  ecs_params *dst = make_store(0, 3);
  char unused[64];
  assert_int_equal(ecs_params_load(dst, f, unused, sizeof unused, &err), ECS_OK);
  assert_string_equal(unused, "fc.bias");
  for (size_t i = 0; i < ecs_params_count(dst); i++) {
    ecs_tensor *t = ecs_params_at(dst, i);
    assert_memory_equal(t->data, ecs_params_find(src, t->name)->data, ecs_plain_nbytes(t));
  }
  /* a store wanting fc.bias from a file that lacks it fails, naming it */
  ecs_params_free(src);
  src = make_store(1, 3);
  ecs_st_close(f);
  assert_int_equal(ecs_params_save(dst, path, NULL, 0, &err), ECS_OK);
  f = ecs_st_open(path, &err);
  assert_int_equal(ecs_params_load(src, f, NULL, 0, &err), ECS_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "'fc.bias' is missing"));
  /* a shape mismatch names the tensor and both shapes; nothing is written */
  ecs_params *wide = make_store(0, 5);
  fill_store(wide, 9);
  assert_int_equal(ecs_params_load(wide, f, NULL, 0, &err), ECS_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "'conv.weight'"));
  assert_non_null(strstr(err.msg, "[2, 3, 3, 3]"));
  assert_non_null(strstr(err.msg, "[2, 5, 3, 3]"));
  assert_true(((float *)ecs_params_find(wide, "conv.weight")->data)[0] == 9.0f);
  ecs_st_close(f);
  ecs_params_free(wide);
  ecs_params_free(src);
  ecs_params_free(dst);
}

static void test_params_store(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_params *ps = ecs_params_new(&err);
  ecs_tensor *w = ecs_params_add(ps, "w", ECS_F32, 2, (int64_t[]){3, 5}, 1, &err);
  ecs_tensor *rm = ecs_params_add(ps, "rm", ECS_F32, 1, (int64_t[]){3}, 0, &err);
  ecs_tensor *u = ecs_params_add(ps, "u", ECS_U8, 1, (int64_t[]){3}, 1, &err);
  ecs_tensor *b = ecs_params_add(ps, "b", ECS_F32, 1, (int64_t[]){7}, 1, &err);
  assert_null(ecs_params_add(ps, "w", ECS_F32, 1, (int64_t[]){1}, 1, &err));
  assert_non_null(strstr(err.msg, "'w' declared twice"));
  assert_null(ecs_params_add(ps, "bad", ECS_F32, 0, (int64_t[]){1}, 1, &err));
  ecs_buffer_type *buft = ecs_device_buffer_type(ecs_device_find("cpu", NULL));
  assert_int_equal(ecs_params_alloc(ps, buft, &err), ECS_OK);
  assert_int_equal(ecs_params_alloc(ps, buft, &err), ECS_ERR_INVALID);
  assert_null(ecs_params_add(ps, "late", ECS_F32, 1, (int64_t[]){1}, 1, &err));
  size_t align = ecs_buffer_type_alignment(buft);
  assert_ptr_equal(ecs_params_buffer_type(ps), buft);
  assert_int_equal(ecs_params_count(ps), 4);
  assert_ptr_equal(ecs_params_at(ps, 1), rm);
  assert_ptr_equal(ecs_params_find(ps, "b"), b);
  ecs_tensor *all[] = {w, rm, u, b};
  for (int i = 0; i < 4; i++) {
    assert_int_equal((uintptr_t)all[i]->data % align, 0);
    assert_ptr_equal(all[i]->buffer, w->buffer);
    for (size_t k = 0; k < ecs_plain_nbytes(all[i]); k++)
      assert_int_equal(((uint8_t *)all[i]->data)[k], 0);
  }
  assert_true(w->requires_grad && !w->frozen);
  assert_true(!rm->requires_grad && rm->frozen);
  assert_true(!u->requires_grad); /* only float tensors train */
  assert_null(w->grad);
  assert_int_equal(ecs_params_alloc_grads(ps, &err), ECS_OK);
  assert_non_null(w->grad);
  assert_non_null(b->grad);
  assert_null(rm->grad);
  assert_null(u->grad);
  assert_true(ecs_same_shape(w->grad, w));
  assert_ptr_not_equal(w->grad->buffer, w->buffer);
  ((float *)b->grad->data)[3] = 2;
  assert_int_equal(ecs_params_zero_grads(ps, &err), ECS_OK);
  assert_true(((float *)b->grad->data)[3] == 0);

  /* copy between stores by name, independent of declaration order */
  ecs_params *o = ecs_params_new(&err);
  ecs_params_add(o, "b", ECS_F32, 1, (int64_t[]){7}, 1, &err);
  ecs_params_add(o, "w", ECS_F32, 2, (int64_t[]){3, 5}, 1, &err);
  ecs_params_alloc(o, buft, &err);
  for (int k = 0; k < 15; k++)
    ((float *)w->data)[k] = (float)k;
  for (int k = 0; k < 7; k++)
    ((float *)b->data)[k] = -(float)k;
  assert_int_equal(ecs_params_copy(o, ps, &err), ECS_OK);
  assert_memory_equal(ecs_params_find(o, "w")->data, w->data, 60);
  assert_memory_equal(ecs_params_find(o, "b")->data, b->data, 28);
  assert_int_equal(ecs_params_copy(ps, o, &err), ECS_ERR_INVALID); /* o lacks rm and u */
  assert_non_null(strstr(err.msg, "'rm'"));
  ecs_params_free(o);
  ecs_params_free(ps);
  ecs_params_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reads_python_written_file),
      cmocka_unit_test(test_every_truncation_fails),
      cmocka_unit_test(test_header_byte_flips_never_crash),
      cmocka_unit_test(test_bad_headers_are_named_errors),
      cmocka_unit_test(test_header_lengths),
      cmocka_unit_test_setup_teardown(test_writer_round_trip, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_params_save_load, setup_dir, teardown_dir),
      cmocka_unit_test(test_params_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
