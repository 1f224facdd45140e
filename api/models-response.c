/* models-response.c - GET /v1/models and /admin/models: the registry as JSON (models-response.h).
 *
 * Read from disk on every request (no cache), so versions another replica added show up at
 * once; a version whose file cannot be read is left out of the list rather than failing it. */
#include "models-response.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ecs/path.h"
#include "registry.h"

/* Every label of a model: its classes ({id, name, kind: "class", synonyms} when the file has
 * synonyms) and its groups ({id: K+g, name, kind: "group", members: [class ids]}). */
static json_t *labels_json(const api_model_summary *s) {
  json_t *list = json_array(), *syn = s->synonyms ? json_loads(s->synonyms, 0, NULL) : NULL;
  for (int k = 0; k < s->n_classes; k++) {
    json_t *c = json_pack("{s:i, s:s, s:s}", "id", k + 1, "name", s->classes[k], "kind", "class");
    json_t *sk = json_array_get(syn, (size_t)k);
    if (json_is_array(sk)) json_object_set(c, "synonyms", sk);
    json_array_append_new(list, c);
  }
  json_decref(syn);
  ecs_model_config *cfg = s->groups ? malloc(sizeof *cfg) : NULL;
  if (cfg) {
    cfg->n_classes = s->n_classes;
    int ng = ecs_model_groups_parse(cfg, s->groups);
    for (int g = 0; g < ng; g++) {
      json_t *mem = json_array();
      for (int j = cfg->group_start[g]; j < cfg->group_start[g + 1]; j++)
        json_array_append_new(mem, json_integer(cfg->group_member[j]));
      json_array_append_new(list,
                            json_pack("{s:i, s:s, s:s, s:o}", "id", s->n_classes + g + 1, "name",
                                      cfg->group_names[g], "kind", "group", "members", mem));
    }
  }
  free(cfg);
  return list;
}

static json_t *summary_json(const api_model_summary *s) {
  json_t *classes = json_array();
  for (int k = 0; k < s->n_classes; k++)
    json_array_append_new(classes, json_string(s->classes[k]));
  char when[32];
  time_t t = (time_t)s->created;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return json_pack("{s:s, s:f, s:b, s:o, s:o, s:s, s:s, s:I}", "backbone", s->backbone, "alpha_bg",
                   s->alpha_bg, "refine", s->refine, "classes", classes, "labels", labels_json(s),
                   "provenance", s->provenance, "created", when, "bytes", (json_int_t)s->bytes);
}

/* Copies the summary fields of a version into the name's entry. */
static void adopt(json_t *entry, json_t *ver) {
  static const char *const keys[] = {"backbone", "alpha_bg",   "refine", "classes",
                                     "labels",   "provenance", "created"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    json_object_set(entry, keys[i], json_object_get(ver, keys[i]));
  json_object_set(entry, "version", json_object_get(ver, "version"));
}

/* --model may spell a registry file differently (./data/..., a symlink). */
static bool same_file(const char *a, const char *b) {
  if (strcmp(a, b) == 0) return true;
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static json_t *name_json(const api_reg *r, const char *name, const char *active_name, int active_v,
                         const api_model_info *served, bool *served_seen) {
  int *vers = NULL, nv = 0;
  ecs_err e;
  if (api_reg_versions(r, name, &vers, &nv, &e) != ECS_OK || nv == 0) {
    free(vers);
    return NULL;
  }
  bool is_active_name = strcmp(name, active_name) == 0;
  json_t *entry = json_pack("{s:s, s:b, s:b}", "name", name, "active", 0, "served", 0);
  json_t *list = json_array(), *pick = NULL;
  json_object_set_new(entry, "versions", list);
  for (int i = 0; i < nv; i++) {
    char p[ECS_PATH_MAX];
    api_model_summary s;
    if (api_reg_path(r, name, vers[i], p, sizeof p, &e) != ECS_OK ||
        api_model_summarise(p, &s, &e) != ECS_OK)
      continue; /* an unreadable version is not listed rather than failing the whole list */
    json_t *v = summary_json(&s);
    api_model_summary_free(&s);
    bool act = is_active_name && vers[i] == active_v;
    bool srv = served && served->path && same_file(served->path, p);
    if (srv) *served_seen = true;
    json_object_set_new(v, "version", json_integer(vers[i]));
    json_object_set_new(v, "active", json_boolean(act));
    json_object_set_new(v, "served", json_boolean(srv));
    json_array_append_new(list, v);
    if (act) json_object_set_new(entry, "active", json_true());
    if (srv) json_object_set_new(entry, "served", json_true());
    if (act || !pick || (srv && !json_is_true(json_object_get(pick, "active")))) pick = v;
  }
  free(vers);
  if (!pick) {
    json_decref(entry);
    return NULL;
  }
  adopt(entry, pick);
  return entry;
}

/* The served model when it is not a registry version (--model elsewhere). */
static json_t *served_json(const api_model_info *m) {
  api_model_summary s;
  ecs_err e;
  json_t *entry;
  if (m->path && api_model_summarise(m->path, &s, &e) == ECS_OK) {
    entry = summary_json(&s);
    api_model_summary_free(&s);
  } else {
    json_t *classes = json_array();
    for (int k = 0; k < m->n_classes; k++)
      json_array_append_new(classes, json_string(m->class_names[k]));
    entry = json_pack("{s:s, s:o}", "backbone", m->backbone ? m->backbone : "", "classes", classes);
  }
  json_object_set_new(entry, "name", json_string(m->name));
  json_object_set_new(entry, "version", json_integer(m->version));
  json_object_set_new(entry, "active", json_false());
  json_object_set_new(entry, "served", json_true());
  json_t *v = json_deep_copy(entry);
  json_object_set_new(entry, "versions", json_pack("[o]", v));
  return entry;
}

char *api_models_json(const char *data_dir, const api_model_info *served, const char *only_name,
                      api_error *err) {
  ecs_err e = {0};
  api_reg *r = api_reg_open(data_dir && data_dir[0] ? data_dir : ".", false, &e);
  char(*names)[API_REG_NAME_MAX] = NULL;
  int nn = 0, av = 0;
  char an[API_REG_NAME_MAX] = "";
  if (!r || api_reg_names(r, &names, &nn, &e) != ECS_OK) {
    api_reg_free(r);
    api_fail(err, 500, "internal_error", "the registry cannot be read: %s", e.msg);
    return NULL;
  }
  if (api_reg_active(r, an, &av, NULL) != ECS_OK) an[0] = '\0';
  json_t *list = json_array();
  bool served_seen = false;
  for (int i = 0; i < nn; i++) {
    json_t *entry = name_json(r, names[i], an, av, served, &served_seen);
    if (entry) json_array_append_new(list, entry);
  }
  if (served && !served_seen) json_array_append_new(list, served_json(served));
  free(names);
  api_reg_free(r);
  json_t *root = NULL;
  if (!only_name) {
    root = json_pack("{s:o}", "models", list);
  } else {
    /* a served model outside the registry may share a name with registry versions: the served
     * entry wins, as it is what /cam answers with */
    for (size_t i = 0; i < json_array_size(list); i++) {
      json_t *m = json_array_get(list, i);
      if (strcmp(json_string_value(json_object_get(m, "name")), only_name) == 0 &&
          (!root || json_is_true(json_object_get(m, "served"))))
        root = m;
    }
    json_incref(root);
    json_decref(list);
    if (!root) {
      api_fail(err, 404, "model_not_found", "no model named '%.100s'", only_name);
      return NULL;
    }
  }
  char *text = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!text) api_fail(err, 503, "out_of_memory", "the server is short of memory");
  return text;
}
