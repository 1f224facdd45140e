/* srv-admin.c - the admin routes: training and evaluation jobs, datasets, model versions.
 *
 * srv.c has already checked the bearer token when these run. Everything a client sends is
 * checked here before it reaches the job store, so a job never starts on a bad request and
 * the runner never sees a path a client wrote: a dataset is a folder *name*, resolved with
 * realpath() inside DATA_DIR/datasets (which catches "../", absolute paths and symlinks that
 * lead out), and models are registry names. A bad field is a 422 naming it; unknown fields are
 * refused too, since a typo in a hyper-parameter would otherwise train silently with the
 * default.
 *
 * Routes:
 *   POST   /admin/train                                 202 job
 *   POST   /admin/eval                                  202 job
 *   GET    /admin/jobs                                  200 {jobs}
 *   GET    /admin/jobs/{id}                             200 job
 *   DELETE /admin/jobs/{id}                             202 job (cancel)
 *   POST   /admin/jobs/{id}/resume                      202 job
 *   GET    /admin/datasets                              200 {datasets}
 *   GET    /admin/models                                200 (as /v1/models)
 *   POST   /admin/models/{name}/versions/{v}/activate   200
 *   DELETE /admin/models/{name}/versions/{v}            200 */
#include "srv-impl.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ecs/dataset.h"
#include "ecs/ecsnet.h"
#include "registry.h"
#include "srv-jobs.h"

/* ---- answers ----------------------------------------------------------------------------- */

static enum MHD_Result fail(srv_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum MHD_Result fail(srv_req *r, unsigned status, const char *code, const char *fmt, ...) {
  api_error e = {.status = status, .code = code};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  return srv_respond_error(r, &e);
}

static enum MHD_Result answer(srv_req *r, unsigned status, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s) return fail(r, 500, "internal_error", "cannot build the response");
  return srv_respond(r, status, "application/json", s, strlen(s), false);
}

static enum MHD_Result not_allowed(srv_req *r, const char *allow) {
  r->allow = strdup(allow);
  return fail(r, 405, "method_not_allowed", "method not allowed on this route");
}

/* ---- names and paths --------------------------------------------------------------------- */

/* A folder name: 1..63 of [A-Za-z0-9._-], not starting with '.' (so never "..", never a path). */
static bool plain_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63 || s[0] == '.') return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

/* DATA_DIR/datasets/NAME as a real path that stays inside the datasets folder. */
static bool resolve_dataset(const srv *s, const char *name, char out[PATH_MAX], char *msg,
                            size_t n) {
  if (!plain_name(name)) {
    snprintf(msg, n,
             "dataset must be the name of a folder under the data directory's datasets/ "
             "(letters, digits, '.', '_', '-'; not a path)");
    return false;
  }
  char base[ECS_PATH_MAX], rb[PATH_MAX], p[ECS_PATH_MAX];
  ecs_err e;
  if (ecs_path_join(base, sizeof base, s->cfg.data_dir, "datasets", &e) != ECS_OK) {
    snprintf(msg, n, "%s", e.msg);
    return false;
  }
  if (!realpath(base, rb)) {
    snprintf(msg, n, "there is no datasets folder in the data directory: create datasets/%s", name);
    return false;
  }
  if (ecs_path_join(p, sizeof p, rb, name, &e) != ECS_OK) {
    snprintf(msg, n, "%s", e.msg);
    return false;
  }
  struct stat sb;
  if (!realpath(p, out) || stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    snprintf(msg, n, "no dataset named '%s' under datasets/", name);
    return false;
  }
  size_t lb = strlen(rb);
  if (strncmp(out, rb, lb) != 0 || out[lb] != '/') {
    snprintf(msg, n, "dataset '%s' leads outside the datasets folder (a symbolic link?)", name);
    return false;
  }
  return true;
}

static bool parse_version(const char *s, int *v) {
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (errno || end == s || *end || x < 1 || x > 1000000 || s[0] == '+' || s[0] == '-') return false;
  *v = (int)x;
  return true;
}

static bool version_exists(const srv *s, const char *name, int version, char *path, size_t n) {
  api_reg *reg = api_reg_open(s->cfg.data_dir, false, NULL);
  bool ok = reg && api_reg_path(reg, name, version, path, n, NULL) == ECS_OK;
  api_reg_free(reg);
  struct stat sb;
  return ok && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* "name" (its highest version) or "name/version" in the registry, as a file path. */
static bool resolve_model(const srv *s, const char *spec, char *path, size_t n, char *msg,
                          size_t mn) {
  char name[API_REG_NAME_MAX];
  const char *slash = strchr(spec, '/');
  size_t ln = slash ? (size_t)(slash - spec) : strlen(spec);
  if (ln >= sizeof name) ln = sizeof name - 1;
  memcpy(name, spec, ln);
  name[ln] = '\0';
  int version = 0;
  if (!api_reg_name_valid(name) || (slash && !parse_version(slash + 1, &version))) {
    snprintf(msg, mn, "a registry model is NAME or NAME/VERSION");
    return false;
  }
  if (!version) {
    api_reg *reg = api_reg_open(s->cfg.data_dir, false, NULL);
    int *vs = NULL, nv = 0;
    if (reg && api_reg_versions(reg, name, &vs, &nv, NULL) == ECS_OK && nv > 0)
      version = vs[nv - 1];
    free(vs);
    api_reg_free(reg);
  }
  if (!version || !version_exists(s, name, version, path, n)) {
    snprintf(msg, mn, "no model %s in the registry", spec);
    return false;
  }
  return true;
}

/* ---- request validation -------------------------------------------------------------------- */

typedef enum { F_STR, F_INT, F_NUM, F_BOOL } field_kind;

typedef struct field {
  const char *name;
  field_kind kind;
  double lo, hi;
} field;

static const field k_train_fields[] = {
    {"dataset", F_STR, 0, 0},
    {"base_model", F_STR, 0, 0},
    {"backbone", F_STR, 0, 0},
    {"model_name", F_STR, 0, 0},
    {"activate", F_BOOL, 0, 0},
    {"steps", F_INT, 1, 1e8},
    {"epochs", F_INT, 1, 10000},
    {"batch_size", F_INT, 1, 1024},
    {"learning_rate", F_NUM, 1e-9, 10},
    {"crop", F_INT, 8, 4096},
    {"checkpoint_every", F_INT, 1, 1e8},
    {"seed", F_INT, 0, 2147483647},
    {"delta", F_NUM, 0.01, 0.99},
    {"theta", F_NUM, 0.01, 0.99},
    {"beta", F_NUM, 0.1, 1},
    {"warmup", F_NUM, 0, 1},
    {"lambda", F_NUM, 0, 100},
    {"overlay", F_INT, 0, ECS_MAX_RATES},
    {"no_erase", F_BOOL, 0, 0},
    {"no_overlay", F_BOOL, 0, 0},
    {"bg_in_phi", F_BOOL, 0, 0},
    {"cls_on_erased", F_BOOL, 0, 0},
};

static const field k_eval_fields[] = {
    {"dataset", F_STR, 0, 0},
    {"model", F_STR, 0, 0},
    {"split", F_STR, 0, 0},
    {"max_images", F_INT, 0, 1e7},
};

/* Checks every key of body against the table; on failure msg names the field. */
static bool check_fields(const json_t *body, const field *tab, size_t nt, const char **bad,
                         char *msg, size_t n) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)body, key, v) {
    const field *f = NULL;
    for (size_t i = 0; i < nt; i++)
      if (strcmp(tab[i].name, key) == 0) f = &tab[i];
    *bad = key;
    if (!f) {
      snprintf(msg, n, "unknown field '%.64s'", key);
      return false;
    }
    switch (f->kind) {
    case F_STR:
      if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 200) {
        snprintf(msg, n, "%s must be a non-empty string", key);
        return false;
      }
      break;
    case F_BOOL:
      if (!json_is_boolean(v)) {
        snprintf(msg, n, "%s must be true or false", key);
        return false;
      }
      break;
    case F_INT:
    case F_NUM: {
      double x = json_number_value(v);
      bool ok = f->kind == F_INT ? json_is_integer(v) : json_is_number(v);
      if (!ok || !isfinite(x) || x < f->lo || x > f->hi) {
        snprintf(msg, n, "%s must be %s from %g to %g", key,
                 f->kind == F_INT ? "an integer" : "a number", f->lo, f->hi);
        return false;
      }
      break;
    }
    }
  }
  return true;
}

static enum MHD_Result invalid(srv_req *r, const char *field_name, const char *msg) {
  api_error e = {.status = 422, .code = "invalid_field"};
  snprintf(e.message, sizeof e.message, "%s: %s", field_name, msg);
  char *body = api_error_json(&e);
  json_t *j = body ? json_loads(body, 0, NULL) : NULL;
  free(body);
  json_t *err = json_object_get(j, "error");
  if (err) json_object_set_new(err, "field", json_string(field_name));
  return j ? answer(r, 422, j) : fail(r, 422, "invalid_field", "%s", e.message);
}

static json_t *body_object(srv_req *r, enum MHD_Result *ret) {
  json_error_t je;
  json_t *b = r->len ? json_loadb((const char *)r->body, r->len, 0, &je) : json_object();
  if (!b) {
    *ret =
        fail(r, 400, "bad_request", "the body is not valid JSON: %s (line %d)", je.text, je.line);
    return NULL;
  }
  if (!json_is_object(b)) {
    json_decref(b);
    *ret = fail(r, 400, "bad_request", "the body must be a JSON object");
    return NULL;
  }
  return b;
}

static enum MHD_Result submitted(srv_req *r, const char *kind, json_t *req) {
  int64_t id = 0;
  ecs_err e = {0};
  ecs_status st = srv_jobs_submit(r->s->jobs, kind, req, &id, &e);
  json_decref(req);
  if (st != ECS_OK) return fail(r, 500, "internal_error", "%s", e.msg);
  json_t *job = srv_jobs_get(r->s->jobs, id);
  if (!job) return fail(r, 500, "internal_error", "the job was not recorded");
  return answer(r, 202, job);
}

static enum MHD_Result post_train(srv_req *r) {
  enum MHD_Result ret = MHD_NO;
  json_t *b = body_object(r, &ret);
  if (!b) return ret;
  char msg[512], dir[PATH_MAX], base[PATH_MAX];
  const char *bad = NULL;
  if (!check_fields(b, k_train_fields, sizeof k_train_fields / sizeof k_train_fields[0], &bad, msg,
                    sizeof msg)) {
    ret = invalid(r, bad, msg);
    json_decref(b);
    return ret;
  }
  const char *ds = json_string_value(json_object_get(b, "dataset"));
  const char *bm = json_string_value(json_object_get(b, "base_model"));
  const char *bb = json_string_value(json_object_get(b, "backbone"));
  const char *mn = json_string_value(json_object_get(b, "model_name"));
  ecs_backbone backbone;
  const char *field_name = NULL;
  if (!ds) {
    field_name = "dataset";
    snprintf(msg, sizeof msg, "required: the name of a folder under datasets/");
  } else if (!resolve_dataset(r->s, ds, dir, msg, sizeof msg)) {
    field_name = "dataset";
  } else if (json_object_get(b, "steps") && json_object_get(b, "epochs")) {
    field_name = "steps";
    snprintf(msg, sizeof msg, "give steps or epochs, not both");
  } else if (bm && bb) {
    field_name = "backbone";
    snprintf(msg, sizeof msg, "a fine-tuned model keeps its base model's backbone");
  } else if (bb && ecs_backbone_parse(bb, &backbone, NULL) != ECS_OK) {
    field_name = "backbone";
    snprintf(msg, sizeof msg, "one of small, resnet38d, vgg16d, efficientnet_lite0");
  } else if (bm && !resolve_model(r->s, bm, base, sizeof base, msg, sizeof msg)) {
    field_name = "base_model";
  } else if (!mn && !api_reg_name_valid(ds)) {
    field_name = "model_name";
    snprintf(msg, sizeof msg, "required when the dataset's name is not a valid model name");
  } else if (mn && !api_reg_name_valid(mn)) {
    field_name = "model_name";
    snprintf(msg, sizeof msg, "1..63 of letters, digits, '.', '_', '-', not starting with '.'");
  }
  if (field_name) {
    ret = invalid(r, field_name, msg);
    json_decref(b);
    return ret;
  }
  if (!mn) json_object_set_new(b, "model_name", json_string(ds));
  if (!json_object_get(b, "steps") && !json_object_get(b, "epochs"))
    json_object_set_new(b, "epochs", json_integer(1));
  json_object_set_new(b, "dataset_dir", json_string(dir));
  if (bm) json_object_set_new(b, "base_path", json_string(base));
  return submitted(r, "train", b);
}

static enum MHD_Result post_eval(srv_req *r) {
  enum MHD_Result ret = MHD_NO;
  json_t *b = body_object(r, &ret);
  if (!b) return ret;
  char msg[512], dir[PATH_MAX], path[PATH_MAX];
  const char *bad = NULL, *field_name = NULL;
  if (!check_fields(b, k_eval_fields, sizeof k_eval_fields / sizeof k_eval_fields[0], &bad, msg,
                    sizeof msg)) {
    ret = invalid(r, bad, msg);
    json_decref(b);
    return ret;
  }
  const char *ds = json_string_value(json_object_get(b, "dataset"));
  const char *model = json_string_value(json_object_get(b, "model"));
  const char *split = json_string_value(json_object_get(b, "split"));
  srv_model_ref *served = NULL;
  if (!ds) {
    field_name = "dataset";
    snprintf(msg, sizeof msg, "required: the name of a folder under datasets/");
  } else if (!resolve_dataset(r->s, ds, dir, msg, sizeof msg)) {
    field_name = "dataset";
  } else if (split && !plain_name(split)) {
    field_name = "split";
    snprintf(msg, sizeof msg, "a split name such as val or train");
  } else if (model && !resolve_model(r->s, model, path, sizeof path, msg, sizeof msg)) {
    field_name = "model";
  } else if (!model) {
    served = srv_model_acquire(r->s);
    if (!served || !served->info.path) {
      field_name = "model";
      snprintf(msg, sizeof msg, "no model is served: name one from the registry");
    } else {
      snprintf(path, sizeof path, "%s", served->info.path);
      json_object_set_new(b, "model",
                          json_sprintf("%s/%d", served->info.name, served->info.version));
    }
    srv_model_release(served);
  }
  if (field_name) {
    ret = invalid(r, field_name, msg);
    json_decref(b);
    return ret;
  }
  json_object_set_new(b, "dataset_dir", json_string(dir));
  json_object_set_new(b, "model_path", json_string(path));
  if (!split) json_object_set_new(b, "split", json_string("val"));
  return submitted(r, "eval", b);
}

/* ---- jobs -------------------------------------------------------------------------------- */

static bool parse_id(const char *s, size_t n, int64_t *id) {
  if (n == 0 || n > 18) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *id = v;
  return v > 0;
}

static enum MHD_Result job_route(srv_req *r, const char *rest) {
  srv_jobs *jobs = r->s->jobs;
  const char *slash = strchr(rest, '/');
  size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
  int64_t id;
  bool resume = slash && strcmp(slash, "/resume") == 0;
  if ((slash && !resume) || !parse_id(rest, n, &id))
    return fail(r, 404, "not_found", "no such admin route");
  char msg[256] = "";
  srv_jobs_result res = SRV_JOBS_OK;
  unsigned ok_status = 200;
  if (resume) {
    if (strcmp(r->method, "POST") != 0) return not_allowed(r, "POST");
    res = srv_jobs_resume(jobs, id, msg, sizeof msg);
    ok_status = 202;
  } else if (strcmp(r->method, "DELETE") == 0) {
    res = srv_jobs_cancel(jobs, id, msg, sizeof msg);
    ok_status = 202;
  } else if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
    return not_allowed(r, "GET, HEAD, DELETE");
  }
  switch (res) {
  case SRV_JOBS_NOT_FOUND: return fail(r, 404, "job_not_found", "%s", msg);
  case SRV_JOBS_CONFLICT: return fail(r, 409, "conflict", "%s", msg);
  case SRV_JOBS_ERROR: return fail(r, 500, "internal_error", "%s", msg);
  case SRV_JOBS_OK: break;
  }
  json_t *job = srv_jobs_get(jobs, id);
  if (!job) return fail(r, 404, "job_not_found", "no job %lld", (long long)id);
  return answer(r, ok_status, job);
}

/* ---- datasets ---------------------------------------------------------------------------- */

static json_t *dataset_json(const srv *s, const char *name) {
  char dir[PATH_MAX], msg[256];
  if (!resolve_dataset(s, name, dir, msg, sizeof msg))
    return json_pack("{s:s, s:b, s:s}", "name", name, "ok", 0, "error", msg);
  ecs_err e = {0};
  ecs_dataset *ds = ecs_dataset_open(dir, &e);
  ecs_dataset_summary sum;
  if (!ds || ecs_dataset_check(ds, 1, &sum, &e) != ECS_OK) {
    ecs_dataset_free(ds);
    return json_pack("{s:s, s:b, s:s}", "name", name, "ok", 0, "error", e.msg);
  }
  json_t *classes = json_array(), *problems = json_array();
  for (int k = 1; k <= ecs_dataset_n_classes(ds); k++)
    json_array_append_new(classes, json_string(ecs_dataset_class_name(ds, k)));
  for (size_t i = 0; i < sum.n_problems && i < 4; i++)
    json_array_append_new(problems, json_string(sum.problems[i]));
  json_t *o = json_pack("{s:s, s:b, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "name", name, "ok",
                        sum.n_problems == 0, "classes", classes, "train", (json_int_t)sum.n_train,
                        "val", (json_int_t)sum.n_val, "labelled", (json_int_t)sum.n_labelled,
                        "masks", (json_int_t)sum.n_masks, "missing", (json_int_t)sum.n_missing,
                        "n_problems", (json_int_t)sum.n_problems, "problems", problems);
  ecs_dataset_free(ds);
  return o;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum MHD_Result get_datasets(srv_req *r) {
  char base[ECS_PATH_MAX];
  json_t *arr = json_array();
  DIR *d = ecs_path_join(base, sizeof base, r->s->cfg.data_dir, "datasets", NULL) == ECS_OK
               ? opendir(base)
               : NULL;
  char **names = NULL;
  size_t n = 0;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char **p = realloc(names, (n + 1) * sizeof *names);
    if (!p) break;
    names = p;
    if ((names[n] = strdup(de->d_name))) n++;
  }
  if (d) closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(arr, dataset_json(r->s, names[i]));
    free(names[i]);
  }
  free(names);
  return answer(r, 200, json_pack("{s:o}", "datasets", arr));
}

/* ---- models ------------------------------------------------------------------------------ */

static enum MHD_Result get_models(srv_req *r) {
  srv_model_ref *m = srv_model_acquire(r->s);
  int status = 500;
  char msg[256] = "";
  char *text =
      api_models_json(r->s->cfg.data_dir, m ? &m->info : NULL, NULL, &status, msg, sizeof msg);
  srv_model_release(m);
  if (!text) return fail(r, 500, "internal_error", "%s", msg);
  return srv_respond(r, 200, "application/json", text, strlen(text), false);
}

/* /admin/models/{name}/versions/{v}[/activate] */
static enum MHD_Result model_route(srv_req *r, const char *rest) {
  char name[API_REG_NAME_MAX], vtext[16], tail[16];
  const char *a = strchr(rest, '/');
  if (!a || (size_t)(a - rest) >= sizeof name || strncmp(a, "/versions/", 10) != 0)
    return fail(r, 404, "not_found", "no such admin route");
  memcpy(name, rest, (size_t)(a - rest));
  name[a - rest] = '\0';
  const char *v = a + 10, *b = strchr(v, '/');
  size_t vl = b ? (size_t)(b - v) : strlen(v);
  if (vl >= sizeof vtext || (b && strlen(b) >= sizeof tail))
    return fail(r, 404, "not_found", "no such admin route");
  memcpy(vtext, v, vl);
  vtext[vl] = '\0';
  snprintf(tail, sizeof tail, "%s", b ? b : "");
  bool activate = strcmp(tail, "/activate") == 0;
  if (tail[0] && !activate) return fail(r, 404, "not_found", "no such admin route");
  if (activate ? strcmp(r->method, "POST") != 0 : strcmp(r->method, "DELETE") != 0)
    return not_allowed(r, activate ? "POST" : "DELETE");
  int version;
  char path[PATH_MAX];
  if (!api_reg_name_valid(name) || !parse_version(vtext, &version) ||
      !version_exists(r->s, name, version, path, sizeof path))
    return fail(r, 404, "model_not_found", "no version %s of model %s in the registry", vtext,
                name);
  ecs_err e = {0};
  if (activate) {
    /* served first: a file that cannot be loaded leaves the pointer where it was */
    if (srv_model_swap(r->s, name, version, &e) != ECS_OK)
      return fail(r, 422, "model_unusable", "%s", e.msg);
    api_reg *reg = api_reg_open(r->s->cfg.data_dir, true, &e);
    ecs_status st = reg ? api_reg_activate(reg, name, version, &e) : e.status;
    api_reg_free(reg);
    if (st != ECS_OK) return fail(r, 500, "internal_error", "%s", e.msg);
    return answer(r, 200,
                  json_pack("{s:s, s:i, s:b, s:b}", "name", name, "version", version, "active", 1,
                            "served", 1));
  }
  api_reg *reg = api_reg_open(r->s->cfg.data_dir, false, &e);
  char an[API_REG_NAME_MAX] = "";
  int av = 0;
  srv_model_ref *m = srv_model_acquire(r->s);
  bool served = m && m->info.version == version && strcmp(m->info.name, name) == 0;
  srv_model_release(m);
  if (reg && api_reg_active(reg, an, &av, NULL) == ECS_OK && av == version &&
      strcmp(an, name) == 0) {
    api_reg_free(reg);
    return fail(r, 409, "model_active",
                "%s version %d is the active version: activate another one first", name, version);
  }
  if (served) {
    api_reg_free(reg);
    return fail(r, 409, "model_served", "%s version %d is being served", name, version);
  }
  ecs_status st = reg ? api_reg_delete(reg, name, version, &e) : e.status;
  api_reg_free(reg);
  if (st != ECS_OK) return fail(r, 500, "internal_error", "%s", e.msg);
  return answer(r, 200, json_pack("{s:{s:s, s:i}}", "deleted", "name", name, "version", version));
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static bool is_get(const srv_req *r) {
  return strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
}

enum MHD_Result srv_admin_begin(srv_req *r) {
  if (strcmp(r->method, "POST") != 0) return srv_admin_handle(r);
  r->receiving = true;
  atomic_fetch_add(&r->s->receiving, 1);
  const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
  if (cl && strtoull(cl, NULL, 10) > (unsigned long long)r->s->cfg.max_body)
    return fail(r, 413, "payload_too_large", "the body exceeds the limit of %lld bytes",
                (long long)r->s->cfg.max_body);
  return MHD_YES;
}

enum MHD_Result srv_admin_handle(srv_req *r) {
  const char *p = r->path;
  if (!r->s->jobs) return fail(r, 503, "admin_unavailable", "the job store is not open");
  if (strcmp(p, "/admin/train") == 0 || strcmp(p, "/admin/eval") == 0) {
    if (strcmp(r->method, "POST") != 0) return not_allowed(r, "POST");
    return p[7] == 't' ? post_train(r) : post_eval(r);
  }
  if (strcmp(p, "/admin/jobs") == 0) {
    if (!is_get(r)) return not_allowed(r, "GET, HEAD");
    json_t *list = srv_jobs_list(r->s->jobs, 1000);
    if (!list) return fail(r, 500, "internal_error", "the job store cannot be read");
    return answer(r, 200, json_pack("{s:o}", "jobs", list));
  }
  if (strncmp(p, "/admin/jobs/", 12) == 0) return job_route(r, p + 12);
  if (strcmp(p, "/admin/datasets") == 0) {
    if (!is_get(r)) return not_allowed(r, "GET, HEAD");
    return get_datasets(r);
  }
  if (strcmp(p, "/admin/models") == 0) {
    if (!is_get(r)) return not_allowed(r, "GET, HEAD");
    return get_models(r);
  }
  if (strncmp(p, "/admin/models/", 14) == 0) return model_route(r, p + 14);
  return fail(r, 404, "not_found", "no such admin route");
}

/* ---- the job store's hooks --------------------------------------------------------------- */

/* Inference is waiting, running, or about to arrive (a /cam body is being received). */
static int inference_busy(void *user) {
  srv *s = user;
  if (ecs_pool_high_waiting(s->pool) > 0) return 1;
  ecs_pool_stats st;
  ecs_pool_get_stats(s->pool, &st);
  return st.running > 0;
}

static ecs_status activate_version(void *user, const char *name, int version, ecs_err *err) {
  return srv_model_swap(user, name, version, err);
}

ecs_status srv_admin_open_jobs(srv *s, ecs_err *err) {
  if (!s->cfg.admin_token[0]) return ECS_OK; /* admin off: no store, every route answers 403 */
  int threads = s->cfg.train_threads > 0 ? s->cfg.train_threads : s->cfg.threads / 2;
  srv_jobs_env env = {.data_dir = s->cfg.data_dir,
                      .device = s->cfg.device,
                      .threads = threads > 0 ? threads : 1,
                      .engine = s->cfg.engine,
                      .busy = inference_busy,
                      .activate = activate_version,
                      .user = s,
                      .start_runner = true};
  s->jobs = srv_jobs_open(&env, err);
  if (!s->jobs) return err ? err->status : ECS_ERR_IO;
  srv_log_event(s, "info", "admin enabled: job store %s/jobs.db, %d training threads",
                s->cfg.data_dir, env.threads);
  return ECS_OK;
}
