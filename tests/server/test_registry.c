/* test_registry.c - the model registry on disk, the served-model choice, /v1/models JSON, and
 * opening and running a small freshly initialised model through the api (model.h, cam.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "cam.h"
#include "models-response.h"
#include "registry.h"

typedef struct fx {
  char root[256];  /* a fresh temporary folder */
  char data[300];  /* root/data */
  char model[300]; /* root/src.safetensors: a small 3-class model */
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  snprintf(f->root, sizeof f->root, "/tmp/ecs-reg-XXXXXX");
  if (!mkdtemp(f->root)) return -1;
  snprintf(f->data, sizeof f->data, "%s/data", f->root);
  snprintf(f->model, sizeof f->model, "%s/src.safetensors", f->root);
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 3);
  snprintf(cfg.class_names[0], ECS_CLASS_NAME_MAX, "cat");
  snprintf(cfg.class_names[1], ECS_CLASS_NAME_MAX, "dog");
  snprintf(cfg.class_names[2], ECS_CLASS_NAME_MAX, "bird");
  snprintf(cfg.provenance, sizeof cfg.provenance, "test_registry");
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 7, &e);
  if (!m || ecs_model_save(m, f->model, &e) != ECS_OK) return -1;
  ecs_model_free(m);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

static bool exists(const char *fmt, const char *a, const char *b) {
  char p[600];
  snprintf(p, sizeof p, fmt, a, b);
  return access(p, F_OK) == 0;
}

static void write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

/* No .tmp-* file left behind in a folder. */
static void assert_no_temp(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)))
    assert_true(strncmp(e->d_name, ".tmp-", 5) != 0);
  closedir(d);
}

static void test_add_activate_delete(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_reg *r = api_reg_open(f->data, true, &e);
  assert_non_null(r);
  int v = 0, av = -1;
  char an[API_REG_NAME_MAX];
  assert_int_equal(api_reg_active(r, an, &av, &e), ECS_OK);
  assert_int_equal(av, 0); /* no pointer yet */
  assert_int_equal(api_reg_add(r, "voc", f->model, &v, &e), ECS_OK);
  assert_int_equal(v, 1);
  assert_int_equal(api_reg_add(r, "voc", f->model, &v, &e), ECS_OK);
  assert_int_equal(v, 2);
  assert_true(exists("%s/models/voc/%s", f->data, "1.safetensors"));
  assert_true(exists("%s/models/voc/%s", f->data, "2.safetensors"));
  char dir[400];
  snprintf(dir, sizeof dir, "%s/models/voc", f->data);
  assert_no_temp(dir);
  /* the copy is byte for byte the source */
  api_model_summary a, b;
  char p[600];
  assert_int_equal(api_reg_path(r, "voc", 2, p, sizeof p, &e), ECS_OK);
  assert_int_equal(api_model_summarise(p, &a, &e), ECS_OK);
  assert_int_equal(api_model_summarise(f->model, &b, &e), ECS_OK);
  assert_int_equal(a.bytes, b.bytes);
  assert_int_equal(a.n_classes, 3);
  assert_string_equal(a.classes[1], "dog");
  assert_string_equal(a.backbone, "small");
  assert_string_equal(a.provenance, "test_registry");
  api_model_summary_free(&a);
  api_model_summary_free(&b);

  int *vers = NULL, nv = 0;
  assert_int_equal(api_reg_versions(r, "voc", &vers, &nv, &e), ECS_OK);
  assert_int_equal(nv, 2);
  assert_int_equal(vers[0], 1);
  assert_int_equal(vers[1], 2);
  free(vers);

  assert_int_equal(api_reg_activate(r, "voc", 3, &e), ECS_ERR_INVALID); /* no such version */
  assert_int_equal(api_reg_activate(r, "voc", 2, &e), ECS_OK);
  assert_int_equal(api_reg_active(r, an, &av, &e), ECS_OK);
  assert_string_equal(an, "voc");
  assert_int_equal(av, 2);
  snprintf(dir, sizeof dir, "%s/models", f->data);
  assert_no_temp(dir);

  /* the active version cannot go; another can, and the numbering never reuses it */
  ecs_err_clear(&e);
  assert_int_equal(api_reg_delete(r, "voc", 2, &e), ECS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "active"));
  assert_true(exists("%s/models/voc/%s", f->data, "2.safetensors"));
  assert_int_equal(api_reg_delete(r, "voc", 1, &e), ECS_OK);
  assert_false(exists("%s/models/voc/%s", f->data, "1.safetensors"));
  assert_int_equal(api_reg_delete(r, "voc", 1, &e), ECS_ERR_INVALID); /* already gone */
  assert_int_equal(api_reg_add(r, "voc", f->model, &v, &e), ECS_OK);
  assert_int_equal(v, 3);

  /* a name whose last version goes disappears from the list */
  assert_int_equal(api_reg_add(r, "other", f->model, &v, &e), ECS_OK);
  char(*names)[API_REG_NAME_MAX] = NULL;
  int nn = 0;
  assert_int_equal(api_reg_names(r, &names, &nn, &e), ECS_OK);
  assert_int_equal(nn, 2);
  assert_string_equal(names[0], "other");
  assert_string_equal(names[1], "voc");
  free(names);
  assert_int_equal(api_reg_delete(r, "other", 1, &e), ECS_OK);
  assert_false(exists("%s/models/%s", f->data, "other"));
  assert_int_equal(api_reg_names(r, &names, &nn, &e), ECS_OK);
  assert_int_equal(nn, 1);
  free(names);
  api_reg_free(r);
}

static void test_not_a_model_is_refused(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_reg *r = api_reg_open(f->data, true, &e);
  char junk[400];
  snprintf(junk, sizeof junk, "%s/junk.safetensors", f->root);
  write_file(junk, "this is not a safetensors file");
  int v = 5;
  assert_int_not_equal(api_reg_add(r, "voc", junk, &v, &e), ECS_OK);
  assert_int_equal(v, 0);
  assert_false(exists("%s/models/voc/%s", f->data, "1.safetensors"));
  assert_int_not_equal(api_reg_add(r, "voc", "/nonexistent/x.safetensors", &v, &e), ECS_OK);
  api_reg_free(r);
}

static void test_corrupt_pointer(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_reg *r = api_reg_open(f->data, true, &e);
  int v = 0, av = 0;
  char an[API_REG_NAME_MAX], p[400];
  assert_int_equal(api_reg_add(r, "voc", f->model, &v, &e), ECS_OK);
  snprintf(p, sizeof p, "%s/models/ACTIVE", f->data);
  static const char *const bad[] = {"garbage", "voc",    "voc 0\n", "voc -1",         "voc 1 2",
                                    "../x 1",  "voc 1x", "",        "voc 99999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_file(p, bad[i]);
    ecs_err_clear(&e);
    assert_int_equal(api_reg_active(r, an, &av, &e), ECS_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "corrupt"));
    assert_non_null(strstr(e.msg, "ACTIVE"));
    assert_int_equal(av, 0);
    /* with the pointer unreadable nothing can be proven inactive: deleting is refused */
    assert_int_not_equal(api_reg_delete(r, "voc", 1, &e), ECS_OK);
    assert_true(exists("%s/models/voc/%s", f->data, "1.safetensors"));
  }
  /* a well-formed pointer to a version that is not there */
  write_file(p, "voc 7\n");
  ecs_err_clear(&e);
  assert_int_equal(api_reg_active(r, an, &av, &e), ECS_ERR_IO);
  assert_non_null(strstr(e.msg, "version 7"));
  /* activation repairs it */
  assert_int_equal(api_reg_activate(r, "voc", 1, &e), ECS_OK);
  assert_int_equal(api_reg_active(r, an, &av, &e), ECS_OK);
  assert_int_equal(av, 1);
  api_reg_free(r);
}

static void test_names_that_escape_are_refused(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_reg *r = api_reg_open(f->data, true, &e);
  static const char *const bad[] = {"",
                                    "..",
                                    "../x",
                                    "a/b",
                                    "/abs",
                                    ".hidden",
                                    "ACTIVE",
                                    "sp ace",
                                    "x\n",
                                    "0123456789012345678901234567890123456789"
                                    "012345678901234567890123"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int v = 0;
    assert_false(api_reg_name_valid(bad[i]));
    assert_int_equal(api_reg_add(r, bad[i], f->model, &v, &e), ECS_ERR_INVALID);
    assert_int_equal(api_reg_activate(r, bad[i], 1, &e), ECS_ERR_INVALID);
    assert_int_equal(api_reg_delete(r, bad[i], 1, &e), ECS_ERR_INVALID);
    char p[400];
    assert_int_equal(api_reg_path(r, bad[i], 1, p, sizeof p, &e), ECS_ERR_INVALID);
  }
  assert_null(api_reg_open("", true, &e));
  assert_true(api_reg_name_valid("voc-2012_v1.0"));
  /* nothing was created beside models/ */
  assert_false(exists("%s/%s", f->data, "x"));
  assert_false(exists("%s/%s", f->root, "x"));
  api_reg_free(r);
}

/* A model object is saved straight in as the next version, nothing left beside it. */
static void test_add_model(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_reg *r = api_reg_open(f->data, true, &e);
  ecs_model *m = ecs_model_load(f->model, NULL, &e);
  assert_non_null(m);
  int v = 0;
  assert_int_equal(api_reg_add(r, "trained", f->model, &v, &e), ECS_OK);
  assert_int_equal(api_reg_add_model(r, "trained", m, &v, &e), ECS_OK);
  assert_int_equal(v, 2);
  char dir[400], p[600];
  snprintf(dir, sizeof dir, "%s/models/trained", f->data);
  assert_no_temp(dir);
  snprintf(p, sizeof p, "%s/2.safetensors", dir);
  api_model_summary s;
  assert_int_equal(api_model_summarise(p, &s, &e), ECS_OK);
  assert_int_equal(s.n_classes, 3);
  assert_string_equal(s.classes[2], "bird");
  api_model_summary_free(&s);
  assert_int_not_equal(api_reg_add_model(r, "../x", m, &v, &e), ECS_OK);
  assert_int_equal(v, 0);
  ecs_model_free(m);
  api_reg_free(r);
}

static void test_served_model_choice(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  char path[600], name[API_REG_NAME_MAX];
  int v = 0;
  /* nothing anywhere */
  api_model_opts o = {
      .data_dir = f->data, .device = "cpu", .n_workers = 1, .threads = 1, .shipped_model = "none"};
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_ERR_IO);
  assert_non_null(strstr(e.msg, "no model to serve"));
  /* --model wins, named after its file */
  o.path = f->model;
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_OK);
  assert_string_equal(path, f->model);
  assert_string_equal(name, "src");
  assert_int_equal(v, 1);
  /* the shipped model is registered as version 1 of its name and activated */
  o.path = NULL;
  o.shipped_model = f->model;
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_OK);
  assert_string_equal(name, "src");
  assert_int_equal(v, 1);
  assert_true(exists("%s/models/src/%s", f->data, "1.safetensors"));
  assert_non_null(strstr(path, "/models/src/1.safetensors"));
  /* a second start finds the active version and registers nothing more */
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_OK);
  assert_int_equal(v, 1);
  assert_false(exists("%s/models/src/%s", f->data, "2.safetensors"));
  /* the registry's active version beats the shipped model; --model naming a registry file
   * keeps its registry name and version */
  api_reg *r = api_reg_open(f->data, true, &e);
  int nv = 0;
  assert_int_equal(api_reg_add(r, "voc", f->model, &nv, &e), ECS_OK);
  assert_int_equal(api_reg_activate(r, "voc", nv, &e), ECS_OK);
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_OK);
  assert_string_equal(name, "voc");
  char reg_path[600];
  api_reg_path(r, "voc", 1, reg_path, sizeof reg_path, &e);
  o.path = reg_path;
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_OK);
  assert_string_equal(name, "voc");
  assert_int_equal(v, 1);
  /* a corrupt pointer is reported, not papered over with the shipped model */
  o.path = NULL;
  char p[400];
  snprintf(p, sizeof p, "%s/models/ACTIVE", f->data);
  write_file(p, "nonsense");
  assert_int_equal(api_served_model(&o, path, sizeof path, name, &v, &e), ECS_ERR_FORMAT);
  api_reg_free(r);
}

/* The shipped-model setting: a file, "" or "none" for none; nothing is read from the
 * environment. */
static void test_shipped_model_setting(void **state) {
  fx *f = *state;
  char path[600];
  assert_true(api_shipped_model_path(f->model, path, sizeof path));
  assert_string_equal(path, f->model);
  assert_false(api_shipped_model_path("none", path, sizeof path));
  assert_false(api_shipped_model_path("", path, sizeof path));
  char missing[600];
  snprintf(missing, sizeof missing, "%s/missing.safetensors", f->root);
  assert_false(api_shipped_model_path(missing, path, sizeof path));
}

static void test_models_json(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_reg *r = api_reg_open(f->data, true, &e);
  int v = 0;
  api_error ae = {0};
  char *t = api_models_json(f->data, NULL, NULL, &ae);
  assert_non_null(t);
  assert_string_equal(t, "{\"models\":[]}");
  free(t);
  assert_int_equal(api_reg_add(r, "voc", f->model, &v, &e), ECS_OK);
  assert_int_equal(api_reg_add(r, "voc", f->model, &v, &e), ECS_OK);
  assert_int_equal(api_reg_activate(r, "voc", 1, &e), ECS_OK);
  char served_path[600];
  api_reg_path(r, "voc", 1, served_path, sizeof served_path, &e);
  static const char *const cls[] = {"cat", "dog", "bird"};
  api_model_info served = {.name = "voc",
                           .version = 1,
                           .n_classes = 3,
                           .class_names = cls,
                           .backbone = "small",
                           .path = served_path};
  t = api_models_json(f->data, &served, NULL, &ae);
  assert_non_null(t);
  json_t *j = json_loads(t, 0, NULL);
  free(t);
  json_t *models = json_object_get(j, "models");
  assert_int_equal(json_array_size(models), 1);
  json_t *m = json_array_get(models, 0);
  assert_string_equal(json_string_value(json_object_get(m, "name")), "voc");
  assert_int_equal(json_integer_value(json_object_get(m, "version")), 1); /* the active one */
  assert_true(json_is_true(json_object_get(m, "active")));
  assert_true(json_is_true(json_object_get(m, "served")));
  assert_int_equal(json_array_size(json_object_get(m, "classes")), 3);
  assert_true(json_real_value(json_object_get(m, "alpha_bg")) > 0);
  json_t *vers = json_object_get(m, "versions");
  assert_int_equal(json_array_size(vers), 2);
  assert_true(json_is_true(json_object_get(json_array_get(vers, 0), "active")));
  assert_true(json_is_false(json_object_get(json_array_get(vers, 1), "active")));
  assert_string_equal(json_string_value(json_object_get(json_array_get(vers, 1), "provenance")),
                      "test_registry");
  json_decref(j);
  /* one name, and an unknown one */
  t = api_models_json(f->data, &served, "voc", &ae);
  assert_non_null(t);
  j = json_loads(t, 0, NULL);
  free(t);
  assert_string_equal(json_string_value(json_object_get(j, "name")), "voc");
  json_decref(j);
  assert_null(api_models_json(f->data, &served, "nope", &ae));
  assert_int_equal(ae.status, 404);
  assert_string_equal(ae.code, "model_not_found");
  /* the same registry file spelled another way is still recognised as served */
  char other_spelling[700];
  snprintf(other_spelling, sizeof other_spelling, "%s/./models/voc/1.safetensors", f->data);
  served.path = other_spelling;
  t = api_models_json(f->data, &served, NULL, &ae);
  j = json_loads(t, 0, NULL);
  free(t);
  assert_int_equal(json_array_size(json_object_get(j, "models")), 1);
  assert_true(
      json_is_true(json_object_get(json_array_get(json_object_get(j, "models"), 0), "served")));
  json_decref(j);
  /* a served model outside the registry is listed too */
  api_model_info outside = {.name = "src",
                            .version = 1,
                            .n_classes = 3,
                            .class_names = cls,
                            .backbone = "small",
                            .path = f->model};
  t = api_models_json(f->data, &outside, NULL, &ae);
  j = json_loads(t, 0, NULL);
  free(t);
  models = json_object_get(j, "models");
  assert_int_equal(json_array_size(models), 2);
  m = json_array_get(models, 1);
  assert_string_equal(json_string_value(json_object_get(m, "name")), "src");
  assert_true(json_is_true(json_object_get(m, "served")));
  assert_true(json_is_false(json_object_get(json_array_get(models, 0), "served")));
  json_decref(j);
  api_reg_free(r);
}

/* A request for the encoded image png with the text parameters kv. */
static void cam_req(api_cam_request *req, const api_kv *kv, size_t n, uint8_t *png, size_t len) {
  api_cam_limits lim = {0};
  api_error ae;
  assert_true(api_cam_params_parse(kv, n, &lim, req, &ae));
  req->image = png;
  req->image_len = len;
}

/* The model opens as the server opens it, runs on the engine's types, and the door answers. */
static void test_model_and_door(void **state) {
  fx *f = *state;
  ecs_err e = {0};
  api_model_opts o = {.path = f->model,
                      .data_dir = f->data,
                      .device = "cpu",
                      .n_workers = 2,
                      .threads = 2,
                      .shipped_model = "none"};
  api_model *m = NULL;
  assert_int_equal(api_model_open(&o, &m, &e), ECS_OK);
  const api_model_info *info = api_model_describe(m);
  assert_string_equal(info->name, "src");
  assert_int_equal(info->n_classes, 3);
  assert_string_equal(info->class_names[2], "bird");
  assert_string_equal(info->device, "cpu");
  int w = 40, h = 24;
  ecs_image img = {.width = w, .height = h, .channels = 3, .data = malloc((size_t)w * h * 3)};
  for (int i = 0; i < w * h * 3; i++)
    img.data[i] = (uint8_t)(i * 37 + (i / 3) * 11);
  /* the engine's own options and result */
  atomic_bool cancel = false;
  int labels[] = {2};
  ecs_infer_opts io = {.labels = labels, .n_labels = 1, .n_scales = 1, .scales = {1.0f}};
  ecs_cam_result *r = NULL;
  assert_int_equal(api_model_infer(m, 1, &cancel, &img, &io, &r, &e), ECS_OK);
  assert_int_equal(r->w, w);
  assert_int_equal(r->n_labels, 1);
  assert_int_equal(r->labels[0], 2);
  assert_null(r->erased_cams); /* not asked: the erasing branch did not run */
  for (int p = 0; p < w * h; p++)
    assert_true(r->cams[p] >= 0.0f && r->cams[p] <= 1.0f);
  ecs_cam_result_free(r);
  /* a worker index beyond the pool is a clear error, not a crash; a cancelled run stops */
  assert_int_equal(api_model_infer(m, 2, &cancel, &img, &io, &r, &e), ECS_ERR_INVALID);
  atomic_store(&cancel, true);
  assert_int_equal(api_model_infer(m, 0, &cancel, &img, &io, &r, &e), ECS_ERR_CANCELLED);
  atomic_store(&cancel, false);

  /* the door: an encoded image in, a rendered answer out */
  uint8_t *png = NULL;
  size_t len = 0;
  assert_int_equal(ecs_image_encode_png(&img, &png, &len, &e), ECS_OK);
  api_kv kv[] = {{"labels", "background,bird"}, {"outputs", "cam,head_mask,overlay"}};
  api_cam_request req;
  cam_req(&req, kv, 2, png, len);
  api_cam_call call = {.worker = 1, .cancel = &cancel};
  api_response a;
  api_cam_timings t;
  api_cam_run(&req, m, &call, &a, &t);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.type, "application/json");
  assert_true(t.decode_ms >= 0 && t.infer_ms > 0);
  json_t *j = json_loadb(a.body, a.len, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(j, "cams")), 1); /* background has none */
  assert_non_null(json_object_get(j, "head_mask"));
  assert_non_null(json_object_get(j, "overlay"));
  assert_null(json_object_get(j, "erased_cams"));
  assert_null(json_object_get(j, "scores"));
  json_decref(j);
  api_response_free(&a);
  /* every output, predicted labels, two scales and flip */
  api_kv all[] = {{"outputs", "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,"
                              "erased_image,overlay"},
                  {"scales", "1,0.5"},
                  {"flip", "true"}};
  cam_req(&req, all, 3, png, len);
  call.worker = 0;
  api_cam_run(&req, m, &call, &a, &t);
  assert_int_equal(a.status, 200);
  j = json_loadb(a.body, a.len, 0, NULL);
  static const char *const keys[] = {"cams",     "erased_cams",  "mask",
                                     "cam_mask", "ecs_mask",     "head_mask",
                                     "scores",   "erased_image", "overlay"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
    assert_non_null(json_object_get(j, keys[k]));
  json_decref(j);
  api_response_free(&a);
  /* the errors: an unknown label, no model, a cancelled request, a broken image */
  api_kv bad[] = {{"labels", "zebra"}};
  cam_req(&req, bad, 1, png, len);
  api_cam_run(&req, m, &call, &a, &t);
  assert_int_equal(a.status, 422);
  assert_non_null(strstr(a.body, "unknown_label"));
  api_response_free(&a);
  cam_req(&req, kv, 2, png, len);
  api_cam_run(&req, NULL, &call, &a, &t);
  assert_int_equal(a.status, 503);
  assert_int_equal(a.retry_after, 5);
  assert_non_null(strstr(a.body, "model_not_ready"));
  api_response_free(&a);
  atomic_store(&cancel, true);
  api_cam_run(&req, m, &call, &a, &t);
  assert_int_equal(a.status, 503);
  assert_int_equal(a.retry_after, 1);
  api_response_free(&a);
  req.image_len = len / 2;
  api_cam_run(&req, m, &call, &a, &t);
  assert_int_equal(a.status, 400);
  assert_true(t.infer_ms < 0);
  api_response_free(&a);
  free(png);
  free(img.data);
  api_model_free(m);

  /* a registry version opens by name and version */
  api_reg *reg = api_reg_open(f->data, true, &e);
  int v = 0;
  assert_int_equal(api_reg_add(reg, "voc", f->model, &v, &e), ECS_OK);
  api_reg_free(reg);
  api_model_opts ro = {.name = "voc", .version = v, .data_dir = f->data, .device = "cpu"};
  assert_int_equal(api_model_open(&ro, &m, &e), ECS_OK);
  assert_string_equal(api_model_describe(m)->name, "voc");
  assert_int_equal(api_model_describe(m)->version, v);
  api_model_free(m);
  ro.version = v + 1;
  assert_int_not_equal(api_model_open(&ro, &m, &e), ECS_OK);
  /* a device this build or machine does not have is refused at open time */
  o.device = "cuda:63";
  ecs_err_clear(&e);
  assert_int_equal(api_model_open(&o, &m, &e), ECS_ERR_UNSUPPORTED);
  assert_non_null(strstr(e.msg, "cuda:63"));
}

static void test_overlay_colours(void **state) {
  (void)state;
  uint8_t rgb[6] = {0, 0, 0, 200, 200, 200}, out[6];
  float cam[2] = {0.0f, 1.0f};
  api_overlay_jet(rgb, cam, 2, 1, out);
  /* 0 is dark blue, 1 dark red, each half over the image */
  assert_int_equal(out[0], 0);
  assert_int_equal(out[1], 0);
  assert_int_equal(out[2], 64);
  assert_int_equal(out[3], 100 + 64);
  assert_int_equal(out[4], 100);
  assert_int_equal(out[5], 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_add_activate_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_a_model_is_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_pointer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names_that_escape_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_add_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_served_model_choice, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shipped_model_setting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_models_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_and_door, setup, teardown),
      cmocka_unit_test(test_overlay_colours),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
