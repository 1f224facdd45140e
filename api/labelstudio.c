/* labelstudio.c - the labeling config, tasks and predictions of the Label Studio ML backend
 * protocol (labelstudio.h). The config is read by a small tag scanner: Label Studio configs are
 * flat lists of tags and attributes, and only five tag names matter here. */
#include "labelstudio.h"

#include "labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mask-formats.h"

/* ---- the labeling config ---------------------------------------------------------------- */

typedef struct attr {
  char name[32];
  char value[API_LABEL_MAX];
} attr;

typedef struct tag {
  char name[32];
  bool closing, self_closing;
  int n_attrs;
  attr attrs[8];
} tag;

/* Copies text with the five XML entities decoded, truncated to n - 1 bytes. */
static void copy_decoded(char *out, size_t n, const char *s, size_t len) {
  static const struct {
    const char *ent;
    char c;
  } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < n;) {
    bool done = false;
    for (size_t e = 0; e < sizeof ents / sizeof ents[0] && s[i] == '&'; e++) {
      size_t el = strlen(ents[e].ent);
      if (i + el <= len && strncmp(s + i, ents[e].ent, el) == 0) {
        out[o++] = ents[e].c;
        i += el;
        done = true;
        break;
      }
    }
    if (!done) out[o++] = s[i++];
  }
  /* Never cut a UTF-8 sequence in two: the names go into JSON. */
  size_t k = o;
  while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
    k--;
  if (k > 0 && (unsigned char)out[k - 1] >= 0xC0) {
    unsigned char lead = (unsigned char)out[k - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (o - (k - 1) < need) o = k - 1;
  }
  out[o] = '\0';
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads the tag starting at p (just after '<'); returns the position after its '>', or NULL
 * at a malformed end. */
static const char *read_tag(const char *p, tag *t) {
  memset(t, 0, sizeof *t);
  if (*p == '/') t->closing = true, p++;
  size_t nl = strcspn(p, " \t\r\n/>");
  copy_decoded(t->name, sizeof t->name, p, nl);
  p += nl;
  for (;;) {
    while (is_space(*p))
      p++;
    if (*p == '\0') return NULL;
    if (*p == '>') return p + 1;
    if (p[0] == '/' && p[1] == '>') {
      t->self_closing = true;
      return p + 2;
    }
    size_t an = strcspn(p, " \t\r\n=/>");
    if (an == 0) return NULL;
    const char *aname = p;
    p += an;
    while (is_space(*p))
      p++;
    if (*p != '=') continue; /* an attribute without a value */
    p++;
    while (is_space(*p))
      p++;
    char q = *p;
    if (q != '"' && q != '\'') return NULL;
    const char *v = ++p, *end = strchr(v, q);
    if (!end) return NULL;
    if (t->n_attrs < (int)(sizeof t->attrs / sizeof t->attrs[0])) {
      attr *a = &t->attrs[t->n_attrs++];
      copy_decoded(a->name, sizeof a->name, aname, an);
      copy_decoded(a->value, sizeof a->value, v, (size_t)(end - v));
    }
    p = end + 1;
  }
}

static const char *attr_of(const tag *t, const char *name) {
  for (int i = 0; i < t->n_attrs; i++)
    if (strcmp(t->attrs[i].name, name) == 0) return t->attrs[i].value;
  return NULL;
}

/* The control a tag opens, or NULL. */
static api_ls_control *control_of(api_ls_config *c, const char *name) {
  if (strcmp(name, "BrushLabels") == 0) return &c->brush;
  if (strcmp(name, "PolygonLabels") == 0) return &c->polygon;
  if (strcmp(name, "Choices") == 0) return &c->choices;
  return NULL;
}

static void open_control(api_ls_control *k, const tag *t) {
  const char *name = attr_of(t, "name"), *to = attr_of(t, "toName");
  if (k->present || !name || !to) return; /* the first of each kind counts */
  k->present = true;
  snprintf(k->name, sizeof k->name, "%s", name);
  snprintf(k->to_name, sizeof k->to_name, "%s", to);
}

static void add_label(api_ls_control *k, const tag *t) {
  const char *v = attr_of(t, "value");
  if (v && *v && k->n_labels < API_LS_MAX_LABELS)
    snprintf(k->labels[k->n_labels++], API_LABEL_MAX, "%s", v);
}

static void on_tag(api_ls_config *c, const tag *t, api_ls_control **open) {
  if (t->closing) {
    if (*open && control_of(c, t->name) == *open) *open = NULL;
    return;
  }
  if (strcmp(t->name, "Image") == 0 && !c->image_name[0]) {
    const char *name = attr_of(t, "name"), *value = attr_of(t, "value");
    if (name && value && value[0] == '$') {
      snprintf(c->image_name, sizeof c->image_name, "%s", name);
      snprintf(c->image_key, sizeof c->image_key, "%s", value + 1);
    }
    return;
  }
  api_ls_control *k = control_of(c, t->name);
  if (k) {
    bool first = !k->present;
    open_control(k, t);
    *open = first && k->present && !t->self_closing ? k : NULL;
    return;
  }
  bool label = strcmp(t->name, "Label") == 0, choice = strcmp(t->name, "Choice") == 0;
  if (*open && ((label && *open != &c->choices) || (choice && *open == &c->choices)))
    add_label(*open, t);
}

bool api_ls_parse_config(const char *xml, api_ls_config *c, api_error *err) {
  memset(c, 0, sizeof *c);
  api_ls_control *open = NULL;
  for (const char *p = xml ? strchr(xml, '<') : NULL; p; p = strchr(p, '<')) {
    p++;
    if (strncmp(p, "!--", 3) == 0) {
      const char *e = strstr(p, "-->");
      if (!e) break;
      p = e + 3;
      continue;
    }
    if (*p == '?' || *p == '!') continue;
    tag t;
    if (!(p = read_tag(p, &t))) break;
    on_tag(c, &t, &open);
  }
  if (!c->image_name[0])
    return api_fail(err, 422, "invalid_label_config",
                    "the labeling config has no <Image name=... value=\"$...\"/>");
  api_ls_control *ks[3] = {&c->brush, &c->polygon, &c->choices};
  for (int i = 0; i < 3; i++)
    if (ks[i]->present && strcmp(ks[i]->to_name, c->image_name) != 0) ks[i]->present = false;
  if (!c->brush.present && !c->polygon.present)
    return api_fail(err, 422, "invalid_label_config",
                    "the labeling config has no <BrushLabels> or <PolygonLabels> for image '%s'",
                    c->image_name);
  return true;
}

/* ---- tasks ------------------------------------------------------------------------------ */

/* The model's label id (class or group) of a name, by the api's one resolver (labels.h:
 * case-insensitive, synonyms, group names), or 0 for a name the model lacks. */
static int class_id(const api_model_info *info, const char *name, size_t len) {
  char buf[API_LABEL_MAX];
  if (len >= sizeof buf) return 0;
  memcpy(buf, name, len);
  buf[len] = '\0';
  int id = 0;
  api_error ignore;
  return api_label_resolve(info, buf, &id, &ignore) && id > 0 ? id : 0;
}

static void add_task_label(api_ls_task *t, const api_model_info *info, const char *s, size_t len) {
  while (len && is_space(*s))
    s++, len--;
  while (len && is_space(s[len - 1]))
    len--;
  int k = class_id(info, s, len);
  if (!k || t->n_labels >= API_LABELS_HARD_MAX) return;
  for (int i = 0; i < t->n_labels; i++)
    if (t->labels[i].id == k) return;
  api_label *l = &t->labels[t->n_labels++];
  l->id = k;
  snprintf(l->name, sizeof l->name, "%s", api_label_name(info, k));
}

/* The choices of the newest annotation that holds the Choices control. */
static const json_t *annotation_choices(const json_t *task, const api_ls_config *c) {
  const json_t *anns = json_object_get(task, "annotations"), *found = NULL;
  size_t i;
  const json_t *a;
  json_array_foreach(anns, i, a) {
    if (json_is_true(json_object_get(a, "was_cancelled"))) continue;
    size_t j;
    const json_t *res;
    json_array_foreach(json_object_get(a, "result"), j, res) {
      const char *from = json_string_value(json_object_get(res, "from_name"));
      const json_t *ch = json_object_get(json_object_get(res, "value"), "choices");
      if (from && strcmp(from, c->choices.name) == 0 && json_is_array(ch)) found = ch;
    }
  }
  return found;
}

bool api_ls_read_task(const json_t *task, const api_ls_config *c, const api_model_info *info,
                      api_ls_task *t, api_error *err) {
  memset(t, 0, sizeof *t);
  const json_t *data = json_object_get(task, "data");
  t->id = json_integer_value(json_object_get(task, "id"));
  t->image = json_string_value(json_object_get(data, c->image_key));
  if (!json_is_object(task) || !t->image)
    return api_fail(err, 422, "invalid_task", "task %lld has no data.%s string", (long long)t->id,
                    c->image_key);
  const json_t *labels = json_object_get(data, "labels");
  const json_t *choices = c->choices.present ? annotation_choices(task, c) : NULL;
  if (json_is_string(labels)) {
    t->labels_given = true;
    const char *s = json_string_value(labels);
    while (*s) {
      size_t n = strcspn(s, ",");
      add_task_label(t, info, s, n);
      s += n + (s[n] == ',');
    }
  } else if (json_is_array(labels) || choices) {
    t->labels_given = true;
    size_t i;
    const json_t *v;
    json_array_foreach(json_is_array(labels) ? labels : choices, i, v) {
      if (json_is_string(v)) add_task_label(t, info, json_string_value(v), json_string_length(v));
    }
  }
  return true;
}

/* ---- predictions ------------------------------------------------------------------------ */

void api_ls_model_version(const api_model_info *info, char *out, size_t n) {
  snprintf(out, n, "%s@%d", info->name, info->version);
}

/* The config's label naming label id exactly (its own spelling), or NULL. */
static const char *config_label_of(const api_ls_control *k, const api_model_info *info, int id) {
  for (int i = 0; i < k->n_labels; i++) {
    int cid = class_id(info, k->labels[i], strlen(k->labels[i]));
    if (cid == id) return k->labels[i];
  }
  return NULL;
}

/* The config's label for mask id k: the one naming k (a class, by its name or a synonym, or a
 * group), else, for a class, the one naming a group the class belongs to (a "tabby" given
 * as the task's label is a "cat" region in a config of VOC names); NULL when none. */
static const char *config_label(const api_ls_control *k, const api_model_info *info, int id) {
  if (!k->present) return NULL;
  const char *l = config_label_of(k, info, id);
  for (int g = 0; !l && id <= info->n_classes && g < info->n_groups; g++) {
    int n;
    const uint16_t *m = api_label_members(info, info->n_classes + 1 + g, &n);
    for (int i = 0; i < n; i++)
      if (m[i] == id) {
        l = config_label_of(k, info, info->n_classes + 1 + g);
        break;
      }
  }
  return l;
}

static json_t *region(const api_ls_config *c, const api_ls_control *k, const char *type,
                      const ecs_cam_result *res, const char *id, double score, json_t *value) {
  return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:f, s:b}", "id", id, "from_name",
                   k->name, "to_name", c->image_name, "type", type, "original_width", res->w,
                   "original_height", res->h, "image_rotation", 0, "value", value, "score", score,
                   "readonly", 0);
}

static json_t *brush_region(const api_ls_config *c, const ecs_cam_result *res, int id,
                            const char *label, double score) {
  size_t n = 0;
  uint8_t *rle = api_ls_brush_rle(res->mask, res->w, res->h, (uint16_t)id, &n);
  json_t *list = rle ? json_array() : NULL;
  for (size_t i = 0; list && i < n; i++)
    json_array_append_new(list, json_integer(rle[i]));
  free(rle);
  char rid[32];
  snprintf(rid, sizeof rid, "ecsnet-brush-%d", id);
  json_t *value =
      list ? json_pack("{s:s, s:o, s:[s]}", "format", "rle", "rle", list, "brushlabels", label)
           : NULL;
  return value ? region(c, &c->brush, "brushlabels", res, rid, score, value) : NULL;
}

static bool polygon_regions(const api_ls_config *c, const ecs_cam_result *res, int id,
                            const char *label, double score, json_t *out) {
  api_rings rings;
  if (!api_mask_polygons(res->mask, res->w, res->h, (uint16_t)id, API_POLYGON_TOLERANCE, &rings))
    return false;
  bool ok = true;
  for (int r = 0, n = 0; ok && r < rings.n; r++) {
    if (rings.ring[r].hole) continue;
    json_t *pts = json_array();
    for (int i = 0; pts && i < rings.ring[r].n; i++)
      json_array_append_new(pts, json_pack("[f, f]", 100.0 * rings.ring[r].xy[2 * i] / res->w,
                                           100.0 * rings.ring[r].xy[2 * i + 1] / res->h));
    char rid[40];
    snprintf(rid, sizeof rid, "ecsnet-polygon-%d-%d", id, n++);
    json_t *value =
        pts ? json_pack("{s:o, s:b, s:[s]}", "points", pts, "closed", 1, "polygonlabels", label)
            : NULL;
    json_t *reg = value ? region(c, &c->polygon, "polygonlabels", res, rid, score, value) : NULL;
    ok = reg && json_array_append_new(out, reg) == 0;
  }
  api_rings_free(&rings);
  return ok;
}

json_t *api_ls_prediction(const api_ls_config *c, const api_model_info *info,
                          const ecs_cam_result *res, const char *model_version) {
  /* every label id present in the mask: classes 1..K, then groups K+1..K+G */
  int n_ids = info->n_classes + info->n_groups;
  bool *seen = calloc((size_t)n_ids + 1, sizeof *seen);
  size_t px = (size_t)res->w * (size_t)res->h;
  for (size_t p = 0; seen && p < px; p++)
    if (res->mask[p] >= 1 && res->mask[p] <= n_ids) seen[res->mask[p]] = true;
  json_t *result = seen ? json_array() : NULL;
  double total = 0;
  int counted = 0;
  bool ok = result != NULL;
  for (int k = 1; ok && k <= n_ids; k++) {
    if (!seen[k]) continue;
    double score = res->scores ? res->scores[k - 1] : 0;
    const char *bl = config_label(&c->brush, info, k), *pl = config_label(&c->polygon, info, k);
    if (bl) {
      json_t *reg = brush_region(c, res, k, bl, score);
      ok = reg && json_array_append_new(result, reg) == 0;
    }
    if (ok && pl) ok = polygon_regions(c, res, k, pl, score, result);
    if (bl || pl) total += score, counted++;
  }
  json_t *out = ok ? json_pack("{s:s, s:f, s:o}", "model_version", model_version, "score",
                               counted ? total / counted : 0.0, "result", result)
                   : NULL;
  if (!ok) json_decref(result);
  free(seen);
  return out;
}
