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
 * The routes are rows of the server's route table (srv-routes.h), which matches the path and
 * its {id}, {name} and {version} segments; each handler here answers one method of one path. */
#include "srv-impl.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ecs/dataset.h"
#include "ecs/ecsnet.h"
#include "ecs/hparams.h"
#include "ecs/train.h"
#include "models-response.h"
#include "registry.h"
#include "srv-jobs.h"

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
static ecs_status resolve_dataset(const srv *s, const char *name, char out[PATH_MAX],
                                  ecs_err *err) {
  if (!plain_name(name))
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "dataset must be the name of a folder under the data directory's "
                       "datasets/ (letters, digits, '.', '_', '-'; not a path)");
  char base[ECS_PATH_MAX], rb[PATH_MAX], p[ECS_PATH_MAX];
  ecs_status st = ecs_path_join(base, sizeof base, s->cfg.data_dir, "datasets", err);
  if (st != ECS_OK) return st;
  if (!realpath(base, rb))
    return ecs_err_set(err, ECS_ERR_NOT_FOUND,
                       "there is no datasets folder in the data directory: create datasets/%s",
                       name);
  if ((st = ecs_path_join(p, sizeof p, rb, name, err)) != ECS_OK) return st;
  struct stat sb;
  if (!realpath(p, out) || stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return ecs_err_set(err, ECS_ERR_NOT_FOUND, "no dataset named '%s' under datasets/", name);
  size_t lb = strlen(rb);
  if (strncmp(out, rb, lb) != 0 || out[lb] != '/')
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "dataset '%s' leads outside the datasets folder (a symbolic link?)", name);
  return ECS_OK;
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
static ecs_status resolve_model(const srv *s, const char *spec, char *path, size_t n,
                                ecs_err *err) {
  char name[API_REG_NAME_MAX];
  const char *slash = strchr(spec, '/');
  size_t ln = slash ? (size_t)(slash - spec) : strlen(spec);
  if (ln >= sizeof name) ln = sizeof name - 1;
  memcpy(name, spec, ln);
  name[ln] = '\0';
  int version = 0;
  if (!api_reg_name_valid(name) || (slash && !parse_version(slash + 1, &version)))
    return ecs_err_set(err, ECS_ERR_INVALID, "a registry model is NAME or NAME/VERSION");
  if (!version) {
    api_reg *reg = api_reg_open(s->cfg.data_dir, false, NULL);
    int *vs = NULL, nv = 0;
    if (reg && api_reg_versions(reg, name, &vs, &nv, NULL) == ECS_OK && nv > 0)
      version = vs[nv - 1];
    free(vs);
    api_reg_free(reg);
  }
  if (!version || !version_exists(s, name, version, path, n))
    return ecs_err_set(err, ECS_ERR_NOT_FOUND, "no model %s in the registry", spec);
  return ECS_OK;
}

/* ---- request validation -------------------------------------------------------------------- */

typedef enum { F_STR, F_INT, F_NUM, F_BOOL } field_kind;

typedef struct field {
  const char *name;
  field_kind kind;
  double lo, hi;
} field;

/* POST /admin/train's own fields; every row of the table in ecs/hparams.h is one too, by its
 * key (srv_train_hparams checks them). */
static const field k_train_fields[] = {
    {"dataset", F_STR, 0, 0},    {"base_model", F_STR, 0, 0}, {"backbone", F_STR, 0, 0},
    {"model_name", F_STR, 0, 0}, {"activate", F_BOOL, 0, 0},
};

static const field k_eval_fields[] = {
    {"dataset", F_STR, 0, 0},
    {"model", F_STR, 0, 0},
    {"split", F_STR, 0, 0},
    {"max_images", F_INT, 0, 1e7},
};

/* Checks every key of body against the table (and, with hparams, the hyper-parameter table);
 * on failure *bad is the field and err says why. */
static ecs_status check_fields(const json_t *body, const field *tab, size_t nt, bool hparams,
                               const char **bad, ecs_err *err) {
  const char *key;
  json_t *v;
  if (hparams) {
    ecs_hparams hp;
    ecs_train_opts o;
    ecs_hparams_default(&hp);
    ecs_train_opts_default(&o);
    if (srv_train_hparams(body, &hp, &o, bad, err) != ECS_OK) return err->status;
  }
  json_object_foreach((json_t *)body, key, v) {
    const field *f = NULL;
    for (size_t i = 0; i < nt; i++)
      if (strcmp(tab[i].name, key) == 0) f = &tab[i];
    *bad = key;
    if (!f && hparams && ecs_hparam_by_key(key)) continue;
    if (!f) return ecs_err_set(err, ECS_ERR_INVALID, "unknown field '%.64s'", key);
    switch (f->kind) {
    case F_STR:
      if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 200)
        return ecs_err_set(err, ECS_ERR_INVALID, "%s must be a non-empty string", key);
      break;
    case F_BOOL:
      if (!json_is_boolean(v))
        return ecs_err_set(err, ECS_ERR_INVALID, "%s must be true or false", key);
      break;
    case F_INT:
    case F_NUM: {
      double x = json_number_value(v);
      bool ok = f->kind == F_INT ? json_is_integer(v) : json_is_number(v);
      if (!ok || !isfinite(x) || x < f->lo || x > f->hi)
        return ecs_err_set(err, ECS_ERR_INVALID, "%s must be %s from %g to %g", key,
                           f->kind == F_INT ? "an integer" : "a number", f->lo, f->hi);
      break;
    }
    }
  }
  return ECS_OK;
}

static enum MHD_Result invalid(srv_req *r, const char *field_name, const char *msg) {
  api_error e = {.status = 422, .code = "invalid_field"};
  snprintf(e.message, sizeof e.message, "%s: %s", field_name, msg);
  char *body = api_error_json(&e);
  json_t *j = body ? json_loads(body, 0, NULL) : NULL;
  free(body);
  json_t *err = json_object_get(j, "error");
  if (err) json_object_set_new(err, "field", json_string(field_name));
  return j ? srv_answer_json(r, 422, j) : srv_fail(r, 422, "invalid_field", "%s", e.message);
}

static json_t *body_object(srv_req *r, enum MHD_Result *ret) {
  json_error_t je;
  json_t *b = r->len ? json_loadb((const char *)r->body, r->len, 0, &je) : json_object();
  if (!b) {
    *ret = srv_fail(r, 400, "bad_request", "the body is not valid JSON: %s (line %d)", je.text,
                    je.line);
    return NULL;
  }
  if (!json_is_object(b)) {
    json_decref(b);
    *ret = srv_fail(r, 400, "bad_request", "the body must be a JSON object");
    return NULL;
  }
  return b;
}

/* A bad field: *field names it and err says why (the 422's message). */
static ecs_status bad_field(const char **field, const char *name, ecs_err *err, const char *why) {
  *field = name;
  return why ? ecs_err_set(err, ECS_ERR_INVALID, "%s", why) : err->status;
}

/* The hyper-parameters of a new model (the backbone's defaults and the request's values) as
 * the engine will check them when the job builds it: what no single field's range can say,
 * that the first `overlay` dilation branches have rates, is a 422 now rather than a failed job.
 * (A fine-tuned model starts from its base model's values, known once the job loads it.) */
static ecs_status check_new_model(const json_t *b, ecs_backbone backbone, const char **field,
                                  ecs_err *err) {
  ecs_model_config *cfg = malloc(sizeof *cfg);
  if (!cfg) return ecs_err_set(err, ECS_ERR_NOMEM, "the server is short of memory");
  ecs_model_config_default(cfg, backbone, 1);
  const char *bad = NULL;
  ecs_status st = srv_train_hparams(b, &cfg->hp, NULL, &bad, err); /* check_fields passed it */
  if (st == ECS_OK && (st = ecs_hparams_check(&cfg->hp, err)) != ECS_OK)
    bad = json_object_get(b, "overlay") || !json_object_get(b, "overlay_rates") ? "overlay"
                                                                                : "overlay_rates";
  free(cfg);
  *field = bad;
  return st;
}

/* POST /admin/train's fields beyond their types; dir and base receive the resolved paths. */
static ecs_status check_train(const srv *s, const json_t *b, char dir[PATH_MAX],
                              char base[PATH_MAX], const char **field, ecs_err *err) {
  const char *ds = json_string_value(json_object_get(b, "dataset"));
  const char *bm = json_string_value(json_object_get(b, "base_model"));
  const char *bb = json_string_value(json_object_get(b, "backbone"));
  const char *mn = json_string_value(json_object_get(b, "model_name"));
  ecs_backbone backbone;
  if (!ds)
    return bad_field(field, "dataset", err, "required: the name of a folder under datasets/");
  if (resolve_dataset(s, ds, dir, err) != ECS_OK) return bad_field(field, "dataset", err, NULL);
  if (json_object_get(b, "steps") && json_object_get(b, "epochs"))
    return bad_field(field, "steps", err, "give steps or epochs, not both");
  if (bm && bb)
    return bad_field(field, "backbone", err, "a fine-tuned model keeps its base model's backbone");
  if (bb && ecs_backbone_parse(bb, &backbone, NULL) != ECS_OK)
    return bad_field(field, "backbone", err, "one of small, resnet38d, vgg16d, efficientnet_lite0");
  if (bm && resolve_model(s, bm, base, PATH_MAX, err) != ECS_OK)
    return bad_field(field, "base_model", err, NULL);
  if (!bm && check_new_model(b, bb ? backbone : ECS_BACKBONE_SMALL, field, err) != ECS_OK)
    return err->status;
  if (!mn && !api_reg_name_valid(ds))
    return bad_field(field, "model_name", err,
                     "required when the dataset's name is not a valid model name");
  if (mn && !api_reg_name_valid(mn))
    return bad_field(field, "model_name", err,
                     "1..63 of letters, digits, '.', '_', '-', not starting with '.'");
  return ECS_OK;
}

/* POST /admin/eval's fields beyond their types; dir and path receive the resolved paths, and
 * a request without a model gets the served one's name. */
static ecs_status check_eval(const srv *s, json_t *b, char dir[PATH_MAX], char path[PATH_MAX],
                             const char **field, ecs_err *err) {
  const char *ds = json_string_value(json_object_get(b, "dataset"));
  const char *model = json_string_value(json_object_get(b, "model"));
  const char *split = json_string_value(json_object_get(b, "split"));
  if (!ds)
    return bad_field(field, "dataset", err, "required: the name of a folder under datasets/");
  if (resolve_dataset(s, ds, dir, err) != ECS_OK) return bad_field(field, "dataset", err, NULL);
  if (split && !plain_name(split))
    return bad_field(field, "split", err, "a split name such as val or train");
  if (model)
    return resolve_model(s, model, path, PATH_MAX, err) == ECS_OK
               ? ECS_OK
               : bad_field(field, "model", err, NULL);
  srv_model_ref *served = srv_model_acquire((srv *)s);
  ecs_status st = ECS_OK;
  if (!served || !served->info.path) {
    st = bad_field(field, "model", err, "no model is served: name one from the registry");
  } else {
    snprintf(path, PATH_MAX, "%s", served->info.path);
    json_object_set_new(b, "model", json_sprintf("%s/%d", served->info.name, served->info.version));
  }
  srv_model_release(served);
  return st;
}

/* A failure of the job store or the registry: a full disk is the operator's to fix and says
 * so (507), anything else is the server's fault (500). SQLite says "database or disk is full";
 * the engine's writers pass on strerror(ENOSPC) or EDQUOT. */
static enum MHD_Result store_fail(srv_req *r, const char *msg) {
  if (strstr(msg, "disk is full") || strstr(msg, "No space left") || strstr(msg, "quota"))
    return srv_fail(r, 507, "insufficient_storage", "the data directory is full: %s", msg);
  return srv_fail(r, 500, "internal_error", "%s", msg);
}

static enum MHD_Result submitted(srv_req *r, const char *kind, json_t *req) {
  int64_t id = 0;
  ecs_err e = {0};
  ecs_status st = srv_jobs_submit(r->s->jobs, kind, req, &id, &e);
  json_decref(req);
  if (st != ECS_OK) return store_fail(r, e.msg);
  json_t *job = srv_jobs_get(r->s->jobs, id);
  if (!job) return srv_fail(r, 500, "internal_error", "the job was not recorded");
  return srv_answer_json(r, 202, job);
}

/* The request's JSON object checked against its field table; NULL when answered. */
static json_t *checked_body(srv_req *r, const field *tab, size_t nt, bool hparams,
                            enum MHD_Result *ret) {
  json_t *b = body_object(r, ret);
  const char *bad = NULL;
  ecs_err e = {0};
  if (b && check_fields(b, tab, nt, hparams, &bad, &e) != ECS_OK) {
    *ret = invalid(r, bad, e.msg);
    json_decref(b);
    return NULL;
  }
  return b;
}

/* A checked train request completed as the job records it. */
static void complete_train(json_t *b, const char *dir, const char *base) {
  if (!json_object_get(b, "model_name"))
    json_object_set(b, "model_name", json_object_get(b, "dataset"));
  if (!json_object_get(b, "steps") && !json_object_get(b, "epochs")) /* the job records it */
    json_object_set_new(b, "epochs",
                        json_integer(strtol(ecs_hparam_by_key("epochs")->dflt, NULL, 10)));
  json_object_set_new(b, "dataset_dir", json_string(dir));
  if (json_object_get(b, "base_model")) json_object_set_new(b, "base_path", json_string(base));
}

enum MHD_Result srv_admin_train(srv_req *r) {
  enum MHD_Result ret = MHD_NO;
  json_t *b =
      checked_body(r, k_train_fields, sizeof k_train_fields / sizeof k_train_fields[0], true, &ret);
  if (!b) return ret;
  char dir[PATH_MAX], base[PATH_MAX];
  const char *bad = NULL;
  ecs_err e = {0};
  if (check_train(r->s, b, dir, base, &bad, &e) != ECS_OK) {
    ret = e.status == ECS_ERR_NOMEM
              ? srv_fail(r, 503, "out_of_memory", "the server is short of memory")
              : invalid(r, bad, e.msg);
    json_decref(b);
    return ret;
  }
  complete_train(b, dir, base);
  return submitted(r, "train", b);
}

ecs_status srv_admin_submit_train(srv *s, json_t *b, int64_t *id, ecs_err *e) {
  char dir[PATH_MAX], base[PATH_MAX];
  const char *bad = NULL;
  if (!s->jobs) return ecs_err_set(e, ECS_ERR_INVALID, "admin is off");
  if (check_fields(b, k_train_fields, sizeof k_train_fields / sizeof k_train_fields[0], true, &bad,
                   e) != ECS_OK ||
      check_train(s, b, dir, base, &bad, e) != ECS_OK)
    return e->status ? e->status : ECS_ERR_INVALID;
  complete_train(b, dir, base);
  return srv_jobs_submit(s->jobs, "train", b, id, e);
}

enum MHD_Result srv_admin_eval(srv_req *r) {
  enum MHD_Result ret = MHD_NO;
  json_t *b =
      checked_body(r, k_eval_fields, sizeof k_eval_fields / sizeof k_eval_fields[0], false, &ret);
  if (!b) return ret;
  char dir[PATH_MAX], path[PATH_MAX];
  const char *bad = NULL;
  ecs_err e = {0};
  if (check_eval(r->s, b, dir, path, &bad, &e) != ECS_OK) {
    ret = invalid(r, bad, e.msg);
    json_decref(b);
    return ret;
  }
  json_object_set_new(b, "dataset_dir", json_string(dir));
  json_object_set_new(b, "model_path", json_string(path));
  if (!json_object_get(b, "split")) json_object_set_new(b, "split", json_string("val"));
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

/* The {id} of /admin/jobs/{id}[/resume]; false when it is not a job id. */
static bool job_id(const srv_req *r, int64_t *id) {
  char text[24];
  return srv_req_param(r, 0, text, sizeof text) && parse_id(text, strlen(text), id);
}

/* The job as it is now after st (a job-store status), or the error that st says. */
static enum MHD_Result job_answer(srv_req *r, int64_t id, ecs_status st, const ecs_err *e,
                                  unsigned ok_status) {
  if (st == ECS_ERR_NOT_FOUND) return srv_fail(r, 404, "job_not_found", "%s", e->msg);
  if (st == ECS_ERR_CONFLICT) return srv_fail(r, 409, "conflict", "%s", e->msg);
  if (st != ECS_OK) return store_fail(r, e->msg);
  json_t *job = srv_jobs_get(r->s->jobs, id);
  if (!job) return srv_fail(r, 404, "job_not_found", "no job %lld", (long long)id);
  return srv_answer_json(r, ok_status, job);
}

enum MHD_Result srv_admin_jobs(srv_req *r) {
  json_t *list = srv_jobs_list(r->s->jobs, 1000);
  if (!list) return srv_fail(r, 500, "internal_error", "the job store cannot be read");
  return srv_answer_json(r, 200, json_pack("{s:o}", "jobs", list));
}

enum MHD_Result srv_admin_job(srv_req *r) {
  int64_t id;
  if (!job_id(r, &id)) return srv_fail(r, 404, "not_found", "no such admin route");
  return job_answer(r, id, ECS_OK, NULL, 200);
}

enum MHD_Result srv_admin_job_cancel(srv_req *r) {
  int64_t id;
  if (!job_id(r, &id)) return srv_fail(r, 404, "not_found", "no such admin route");
  ecs_err e = {0};
  ecs_status st = srv_jobs_cancel(r->s->jobs, id, &e);
  return job_answer(r, id, st, &e, 202);
}

enum MHD_Result srv_admin_job_resume(srv_req *r) {
  int64_t id;
  if (!job_id(r, &id)) return srv_fail(r, 404, "not_found", "no such admin route");
  ecs_err e = {0};
  ecs_status st = srv_jobs_resume(r->s->jobs, id, &e);
  return job_answer(r, id, st, &e, 202);
}

/* ---- datasets ---------------------------------------------------------------------------- */

static json_t *dataset_json(const srv *s, const char *name) {
  char dir[PATH_MAX];
  ecs_err e = {0};
  if (resolve_dataset(s, name, dir, &e) != ECS_OK)
    return json_pack("{s:s, s:b, s:s}", "name", name, "ok", 0, "error", e.msg);
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

enum MHD_Result srv_admin_datasets(srv_req *r) {
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
  return srv_answer_json(r, 200, json_pack("{s:o}", "datasets", arr));
}

/* ---- models ------------------------------------------------------------------------------ */

/* The {name} and {version} of /admin/models/{name}/versions/{version}[/activate], naming a
 * file of the registry; else the 404 was queued. */
static bool registry_version(srv_req *r, char name[API_REG_NAME_MAX], int *version,
                             enum MHD_Result *ret) {
  char vtext[16] = "", path[PATH_MAX];
  bool ok = srv_req_param(r, 0, name, API_REG_NAME_MAX) &&
            srv_req_param(r, 1, vtext, sizeof vtext) && api_reg_name_valid(name) &&
            parse_version(vtext, version) &&
            version_exists(r->s, name, *version, path, sizeof path);
  if (!ok) {
    char shown[API_REG_NAME_MAX] = "?";
    srv_req_param(r, 0, shown, sizeof shown);
    *ret = srv_fail(r, 404, "model_not_found", "no version %s of model %s in the registry",
                    vtext[0] ? vtext : "?", shown);
  }
  return ok;
}

enum MHD_Result srv_admin_activate(srv_req *r) {
  char name[API_REG_NAME_MAX];
  int version;
  enum MHD_Result ret;
  if (!registry_version(r, name, &version, &ret)) return ret;
  ecs_err e = {0};
  /* served first: a file that cannot be loaded leaves the pointer where it was */
  if (srv_model_swap(r->s, name, version, &e) != ECS_OK)
    return srv_fail(r, 422, "model_unusable", "%s", e.msg);
  api_reg *reg = api_reg_open(r->s->cfg.data_dir, true, &e);
  ecs_status st = reg ? api_reg_activate(reg, name, version, &e) : e.status;
  api_reg_free(reg);
  if (st != ECS_OK) return store_fail(r, e.msg);
  return srv_answer_json(r, 200,
                         json_pack("{s:s, s:i, s:b, s:b}", "name", name, "version", version,
                                   "active", 1, "served", 1));
}

enum MHD_Result srv_admin_version_delete(srv_req *r) {
  char name[API_REG_NAME_MAX];
  int version;
  enum MHD_Result ret;
  if (!registry_version(r, name, &version, &ret)) return ret;
  ecs_err e = {0};
  api_reg *reg = api_reg_open(r->s->cfg.data_dir, false, &e);
  char an[API_REG_NAME_MAX] = "";
  int av = 0;
  srv_model_ref *m = srv_model_acquire(r->s);
  bool served = m && m->info.version == version && strcmp(m->info.name, name) == 0;
  srv_model_release(m);
  if (reg && api_reg_active(reg, an, &av, NULL) == ECS_OK && av == version &&
      strcmp(an, name) == 0) {
    api_reg_free(reg);
    return srv_fail(r, 409, "model_active",
                    "%s version %d is the active version: activate another one first", name,
                    version);
  }
  if (served) {
    api_reg_free(reg);
    return srv_fail(r, 409, "model_served", "%s version %d is being served", name, version);
  }
  ecs_status st = reg ? api_reg_delete(reg, name, version, &e) : e.status;
  api_reg_free(reg);
  if (st != ECS_OK) return store_fail(r, e.msg);
  return srv_answer_json(r, 200,
                         json_pack("{s:{s:s, s:i}}", "deleted", "name", name, "version", version));
}

/* ---- the job store's hooks --------------------------------------------------------------- */

/* Waits while inference requests are queued or running (the pool wakes the job when the last
 * one ends); non-zero when they still are after max_ms. */
static int inference_wait(void *user, int max_ms) {
  srv *s = user;
  return !ecs_pool_wait_idle(s->pool, max_ms);
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
                      .wait_idle = inference_wait,
                      .activate = activate_version,
                      .user = s,
                      .start_runner = true};
  s->jobs = srv_jobs_open(&env, err);
  if (!s->jobs) return err ? err->status : ECS_ERR_IO;
  srv_log_event(s, "info", "admin enabled: job store %s/jobs.db, %d training threads",
                s->cfg.data_dir, env.threads);
  return ECS_OK;
}
