/* cam-request.c - parsing and validating POST /cam requests.
 *
 * Each encoding is reduced to one list of (name, value) parameters, where a value is either
 * text (query string, form field) or a JSON value; one set of per-parameter functions then
 * validates them, so the three encodings cannot drift apart. Status codes follow the design:
 * 400 for structure (malformed body, missing image, a parameter twice, an ambiguous PNG),
 * 415 for the media type, 422 for well-formed but wrong values. */
#include "cam-request.h"

#include "labels.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "ecs/ecsnet.h"
#include "multipart.h"

#define MAX_PARAMS 16

typedef struct param {
  const char *name;
  const char *text; /* text value (not NUL-terminated), or NULL when json is set */
  size_t len;
  json_t *json; /* borrowed from the parsed body */
  const char *where;
} param;

/* ---- values -------------------------------------------------------------------------------- */

static const char *const k_output_names[API_OUT_COUNT] = {
    "cam",    "erased_cam",   "mask",    "cam_mask",     "ecs_mask", "head_mask",
    "scores", "erased_image", "overlay", "erase_region", "coco",     "polygons",
};

const char *api_output_name(unsigned bit) {
  for (int i = 0; i < API_OUT_COUNT; i++)
    if (bit == 1u << i) return k_output_names[i];
  return NULL;
}

unsigned api_output_parse(const char *name, size_t len) {
  for (int i = 0; i < API_OUT_COUNT; i++)
    if (strlen(k_output_names[i]) == len && memcmp(k_output_names[i], name, len) == 0)
      return 1u << i;
  return 0;
}

static bool is_label_char(unsigned char c) {
  return isalnum(c) || c == '_' || c == '-' || c == ' ' || c == '.' || c == '/' || c == '\'' ||
         c >= 0x80; /* UTF-8 class names */
}

/* One label from text: a number is a class id, anything else a name. */
static bool label_from_text(const char *s, size_t n, api_label *out, api_error *err) {
  while (n && (*s == ' ' || *s == '\t'))
    s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  if (n == 0) return api_fail(err, 422, "invalid_labels", "empty label in 'labels'");
  bool digits = true;
  for (size_t i = 0; i < n; i++)
    digits &= isdigit((unsigned char)s[i]) != 0;
  if (digits) {
    if (n > 4)
      return api_fail(err, 422, "unknown_label", "label id %.*s is out of range",
                      (int)(n > 16 ? 16 : n), s);
    int id = 0;
    for (size_t i = 0; i < n; i++)
      id = id * 10 + (s[i] - '0');
    if (id > ECS_MAX_CLASSES - 1)
      return api_fail(err, 422, "unknown_label", "label id %d is out of range", id);
    out->id = id;
    out->name[0] = '\0';
    return true;
  }
  if (n >= API_LABEL_MAX)
    return api_fail(err, 422, "unknown_label", "label '%.*s...' is too long", 32, s);
  for (size_t i = 0; i < n; i++)
    if (!is_label_char((unsigned char)s[i]))
      return api_fail(err, 422, "unknown_label", "label '%.*s' has a character no class name has",
                      (int)n, s);
  out->id = -1;
  memcpy(out->name, s, n);
  out->name[n] = '\0';
  return true;
}

static bool label_from_json(json_t *v, api_label *out, api_error *err) {
  if (json_is_string(v))
    return label_from_text(json_string_value(v), json_string_length(v), out, err);
  if (json_is_integer(v)) {
    json_int_t id = json_integer_value(v);
    if (id < 0 || id > ECS_MAX_CLASSES - 1)
      return api_fail(err, 422, "unknown_label", "label id %lld is out of range", (long long)id);
    out->id = (int)id;
    out->name[0] = '\0';
    return true;
  }
  return api_fail(err, 422, "invalid_labels", "labels must be class names or ids");
}

static bool same_label(const api_label *a, const api_label *b) {
  return a->id == b->id && strcmp(a->name, b->name) == 0;
}

static bool add_label(api_cam_request *req, const api_label *l, size_t max, api_error *err) {
  for (int i = 0; i < req->n_labels; i++)
    if (same_label(&req->labels[i], l))
      return l->id >= 0
                 ? api_fail(err, 422, "duplicate_label", "label %d is given twice", l->id)
                 : api_fail(err, 422, "duplicate_label", "label '%s' is given twice", l->name);
  if ((size_t)req->n_labels >= max || req->n_labels >= API_LABELS_HARD_MAX)
    return api_fail(err, 422, "too_many_labels", "more than %zu labels", max);
  req->labels[req->n_labels++] = *l;
  return true;
}

/* Steps through the comma-separated items of text: *s, *n is the next item. Returns false
 * after the last one (an empty text is one empty item, which the callers reject). */
static bool next_item(const char *text, size_t len, size_t *pos, const char **s, size_t *n) {
  if (*pos > len) return false;
  const char *c = memchr(text + *pos, ',', len - *pos);
  *s = text + *pos;
  *n = c ? (size_t)(c - *s) : len - *pos;
  *pos += *n + 1;
  return true;
}

static bool p_labels(api_cam_request *req, const param *p, const api_cam_limits *lim,
                     api_error *err) {
  size_t max = lim->max_labels ? lim->max_labels : API_LABELS_HARD_MAX;
  req->labels_given = true;
  api_label l;
  if (p->json && json_is_array(p->json)) {
    size_t i;
    json_t *v;
    if (json_array_size(p->json) == 0)
      return api_fail(err, 422, "invalid_labels", "'labels' is an empty list");
    json_array_foreach(p->json, i, v) {
      if (!label_from_json(v, &l, err) || !add_label(req, &l, max, err)) return false;
    }
    return true;
  }
  if (p->json && !json_is_string(p->json)) {
    if (!label_from_json(p->json, &l, err)) return false;
    return add_label(req, &l, max, err);
  }
  const char *text = p->json ? json_string_value(p->json) : p->text;
  size_t len = p->json ? json_string_length(p->json) : p->len;
  size_t pos = 0, n;
  const char *s;
  while (next_item(text, len, &pos, &s, &n))
    if (!label_from_text(s, n, &l, err) || !add_label(req, &l, max, err)) return false;
  return true;
}

static bool output_item(api_cam_request *req, const char *s, size_t n, api_error *err) {
  while (n && *s == ' ')
    s++, n--;
  while (n && s[n - 1] == ' ')
    n--;
  unsigned bit = api_output_parse(s, n);
  if (!bit)
    return api_fail(err, 422, "unknown_output",
                    "unknown output '%.*s' (cam, erased_cam, mask, cam_mask, ecs_mask, "
                    "head_mask, scores, erased_image, overlay, erase_region, coco, polygons)",
                    (int)(n > 40 ? 40 : n), s);
  req->outputs |= bit;
  return true;
}

static bool p_outputs(api_cam_request *req, const param *p, api_error *err) {
  req->outputs = 0;
  req->outputs_given = true;
  if (p->json && json_is_array(p->json)) {
    size_t i;
    json_t *v;
    json_array_foreach(p->json, i, v) {
      if (!json_is_string(v))
        return api_fail(err, 422, "invalid_value", "'outputs' must list output names");
      if (!output_item(req, json_string_value(v), json_string_length(v), err)) return false;
    }
  } else if (p->json && !json_is_string(p->json)) {
    return api_fail(err, 422, "invalid_value", "'outputs' must list output names");
  } else {
    const char *text = p->json ? json_string_value(p->json) : p->text;
    size_t len = p->json ? json_string_length(p->json) : p->len;
    size_t pos = 0, n;
    const char *s;
    while (next_item(text, len, &pos, &s, &n))
      if (!output_item(req, s, n, err)) return false;
  }
  if (!req->outputs) return api_fail(err, 422, "invalid_value", "'outputs' is empty");
  return true;
}

static bool text_of(const param *p, const char **s, size_t *n) {
  if (p->json && !json_is_string(p->json)) return false;
  *s = p->json ? json_string_value(p->json) : p->text;
  *n = p->json ? json_string_length(p->json) : p->len;
  return true;
}

static bool text_is(const char *s, size_t n, const char *word) {
  return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static bool p_format(api_cam_request *req, const param *p, api_error *err) {
  const char *s;
  size_t n;
  if (!text_of(p, &s, &n)) return api_fail(err, 422, "invalid_value", "'format' must be a string");
  if (text_is(s, n, "json"))
    req->format = API_FORMAT_JSON;
  else if (text_is(s, n, "png"))
    req->format = API_FORMAT_PNG;
  else
    return api_fail(err, 422, "unknown_format", "unknown format '%.*s' (json or png)",
                    (int)(n > 40 ? 40 : n), s);
  return true;
}

static bool p_label(api_cam_request *req, const param *p, api_error *err) {
  req->png_label_given = true;
  if (p->json) return label_from_json(p->json, &req->png_label, err);
  return label_from_text(p->text, p->len, &req->png_label, err);
}

static bool scale_item(api_cam_request *req, double v, api_error *err) {
  if (!(v >= 0.25 && v <= 2.0)) /* the engine's range (ecs_model_infer) */
    return api_fail(err, 422, "invalid_value", "each scale must lie in [0.25, 2]");
  if (req->n_scales >= API_MAX_SCALES)
    return api_fail(err, 422, "invalid_value", "at most %d scales", API_MAX_SCALES);
  req->scales[req->n_scales++] = (float)v;
  return true;
}

static bool p_scales(api_cam_request *req, const param *p, api_error *err) {
  req->n_scales = 0;
  if (p->json && json_is_array(p->json)) {
    size_t i;
    json_t *v;
    json_array_foreach(p->json, i, v) {
      if (!json_is_number(v))
        return api_fail(err, 422, "invalid_value", "'scales' must list numbers");
      if (!scale_item(req, json_number_value(v), err)) return false;
    }
  } else if (p->json && json_is_number(p->json)) {
    if (!scale_item(req, json_number_value(p->json), err)) return false;
  } else {
    const char *text;
    size_t len;
    if (!text_of(p, &text, &len))
      return api_fail(err, 422, "invalid_value", "'scales' must list numbers");
    size_t pos = 0, n;
    const char *s;
    while (next_item(text, len, &pos, &s, &n)) {
      char buf[32];
      while (n && *s == ' ')
        s++, n--;
      if (n == 0 || n >= sizeof buf)
        return api_fail(err, 422, "invalid_value", "'scales' must list numbers");
      memcpy(buf, s, n);
      buf[n] = '\0';
      char *e;
      errno = 0;
      double v = strtod(buf, &e);
      while (*e == ' ')
        e++;
      if (*e || errno || e == buf)
        return api_fail(err, 422, "invalid_value", "'scales' item '%s' is not a number", buf);
      if (!scale_item(req, v, err)) return false;
    }
  }
  if (req->n_scales == 0) return api_fail(err, 422, "invalid_value", "'scales' is empty");
  return true;
}

/* A true/false parameter (flip, refine): JSON booleans, true/1/yes, false/0/no. */
static bool p_bool(bool *out, const param *p, api_error *err) {
  if (p->json && json_is_boolean(p->json)) {
    *out = json_is_true(p->json);
    return true;
  }
  const char *s;
  size_t n;
  if (text_of(p, &s, &n)) {
    if (text_is(s, n, "true") || text_is(s, n, "1") || text_is(s, n, "yes")) {
      *out = true;
      return true;
    }
    if (text_is(s, n, "false") || text_is(s, n, "0") || text_is(s, n, "no")) {
      *out = false;
      return true;
    }
  }
  return api_fail(err, 422, "invalid_value", "'%s' must be true or false", p->name);
}

/* label_topk: how many of the best classes predicted labels come from, 1..API_TOPK_MAX. */
static bool p_topk(api_cam_request *req, const param *p, api_error *err) {
  long v = -1;
  const char *s;
  size_t n;
  if (p->json && json_is_integer(p->json)) {
    v = (long)json_integer_value(p->json);
  } else if (text_of(p, &s, &n) && n > 0 && n < 8) {
    char buf[8], *e;
    memcpy(buf, s, n);
    buf[n] = '\0';
    v = strtol(buf, &e, 10);
    if (*e) v = -1;
  }
  if (v < 1 || v > API_TOPK_MAX)
    return api_fail(err, 422, "invalid_value", "'label_topk' must be an integer in 1..%d",
                    API_TOPK_MAX);
  req->label_topk = (int)v;
  return true;
}

/* alpha_bg: a number in [0, 1], as text or a JSON number. */
static bool p_alpha_bg(api_cam_request *req, const param *p, api_error *err) {
  double v = NAN;
  const char *s;
  size_t n;
  if (p->json && json_is_number(p->json)) {
    v = json_number_value(p->json);
  } else if (text_of(p, &s, &n) && n > 0 && n < 32) {
    char buf[32], *e;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    v = strtod(buf, &e);
    if (*e || errno || e == buf) v = NAN;
  }
  if (!(v >= 0.0 && v <= 1.0))
    return api_fail(err, 422, "invalid_value", "'alpha_bg' must be a number in [0, 1]");
  req->alpha_bg_given = true;
  req->alpha_bg = (float)v;
  return true;
}

static bool apply_params(api_cam_request *req, const param *ps, size_t n, const api_cam_limits *lim,
                         api_error *err) {
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < i; j++)
      if (strcmp(ps[i].name, ps[j].name) == 0)
        return api_fail(err, 400, "duplicate_parameter", "'%s' is given twice (%s and %s)",
                        ps[i].name, ps[j].where, ps[i].where);
    const char *k = ps[i].name;
    bool ok;
    if (strcmp(k, "labels") == 0)
      ok = p_labels(req, &ps[i], lim, err);
    else if (strcmp(k, "outputs") == 0)
      ok = p_outputs(req, &ps[i], err);
    else if (strcmp(k, "format") == 0)
      ok = p_format(req, &ps[i], err);
    else if (strcmp(k, "label") == 0)
      ok = p_label(req, &ps[i], err);
    else if (strcmp(k, "scales") == 0)
      ok = p_scales(req, &ps[i], err);
    else if (strcmp(k, "flip") == 0)
      ok = p_bool(&req->flip, &ps[i], err);
    else if (strcmp(k, "alpha_bg") == 0)
      ok = p_alpha_bg(req, &ps[i], err);
    else if (strcmp(k, "refine") == 0)
      ok = req->refine_given = p_bool(&req->refine, &ps[i], err);
    else if (strcmp(k, "label_topk") == 0)
      ok = p_topk(req, &ps[i], err);
    else
      return api_fail(err, 422, "unknown_parameter",
                      "unknown parameter '%.40s' (labels, outputs, format, label, scales, flip, "
                      "alpha_bg, refine, label_topk)",
                      k);
    if (!ok) return false;
  }
  return true;
}

/* A PNG answer carries one picture: exactly one image output, and one label for a CAM. */
static bool check_png(const api_cam_request *req, api_error *err) {
  if (req->format != API_FORMAT_PNG) {
    if (req->png_label_given)
      return api_fail(err, 400, "ambiguous_request", "'label' only applies to format=png");
    return true;
  }
  unsigned img = req->outputs & ~(unsigned)API_OUT_NOT_PICTURE;
  if (!req->outputs_given || img == 0 || (img & (img - 1)) || img != req->outputs)
    return api_fail(err, 400, "ambiguous_request",
                    "format=png needs 'outputs' naming exactly one image output");
  bool per_label = img == API_OUT_CAM || img == API_OUT_ERASED_CAM;
  if (per_label && !req->png_label_given && !(req->labels_given && req->n_labels == 1))
    return api_fail(err, 400, "ambiguous_request",
                    "a PNG CAM shows one label: give one label or 'label='");
  if (req->png_label_given && !per_label)
    return api_fail(err, 400, "ambiguous_request", "'label' only applies to cam and erased_cam");
  if (req->png_label_given && req->labels_given) {
    bool found = false;
    for (int i = 0; i < req->n_labels; i++)
      found |= same_label(&req->labels[i], &req->png_label);
    if (!found) return api_fail(err, 422, "unknown_label", "'label' is not one of 'labels'");
  }
  return true;
}

/* ---- encodings ----------------------------------------------------------------------------- */

static bool sniff_image(const uint8_t *b, size_t n, api_error *err) {
  if (n == 0) return api_fail(err, 400, "missing_image", "the image is empty");
  bool jpeg = n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
  bool png = n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
  if (!jpeg && !png)
    return api_fail(err, 400, "invalid_image", "the image is neither JPEG nor PNG");
  return true;
}

static bool parse_multipart(const api_http_in *in, const api_content_type *ct, param *ps,
                            size_t *np, api_parts *parts, api_cam_request *req, api_error *err) {
  if (!api_multipart_parse((const char *)in->body, in->body_len, ct->boundary, MAX_PARAMS + 1,
                           parts, err))
    return false;
  for (size_t i = 0; i < parts->n; i++) {
    const api_part *p = &parts->parts[i];
    if (strcmp(p->name, "image") == 0) {
      if (req->image) return api_fail(err, 400, "invalid_multipart", "more than one 'image' part");
      req->image = (const uint8_t *)p->data;
      req->image_len = p->len;
      continue;
    }
    if (*np >= MAX_PARAMS) return api_fail(err, 400, "invalid_multipart", "too many form fields");
    ps[(*np)++] = (param){.name = p->name, .text = p->data, .len = p->len, .where = "form"};
  }
  if (!req->image) return api_fail(err, 400, "missing_image", "no multipart field 'image'");
  return true;
}

static bool parse_json(const api_http_in *in, const api_cam_limits *lim, param *ps, size_t *np,
                       json_t **root, api_cam_request *req, api_error *err) {
  json_error_t jerr;
  *root = json_loadb((const char *)in->body, in->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!*root)
    return api_fail(err, 400, "invalid_json", "malformed JSON at line %d column %d: %s", jerr.line,
                    jerr.column, jerr.text);
  if (!json_is_object(*root))
    return api_fail(err, 400, "invalid_json", "the body must be an object");
  const char *key;
  json_t *v;
  json_object_foreach(*root, key, v) {
    if (strcmp(key, "image") == 0) {
      if (!json_is_string(v))
        return api_fail(err, 400, "invalid_image", "'image' must be a base64 string");
      size_t max = lim->max_image ? lim->max_image : in->body_len;
      if (!api_base64_decode(json_string_value(v), json_string_length(v), max, &req->image_owned,
                             &req->image_len, err))
        return false;
      req->image = req->image_owned;
      continue;
    }
    if (*np >= MAX_PARAMS) return api_fail(err, 422, "unknown_parameter", "too many keys");
    ps[(*np)++] = (param){.name = key, .json = v, .where = "JSON"};
  }
  if (!req->image) return api_fail(err, 400, "missing_image", "no 'image' key");
  return true;
}

static void request_defaults(api_cam_request *req, const api_cam_limits *lim) {
  memset(req, 0, sizeof *req);
  req->max_pixels = lim->max_pixels;
  req->outputs = API_OUT_DEFAULT;
  req->scales[0] = 1.0f;
  req->n_scales = 1;
}

bool api_cam_params_parse(const api_kv *params, size_t n, const api_cam_limits *lim,
                          api_cam_request *req, api_error *err) {
  request_defaults(req, lim);
  if (n > MAX_PARAMS) return api_fail(err, 400, "invalid_query", "too many parameters");
  param ps[MAX_PARAMS];
  for (size_t i = 0; i < n; i++)
    ps[i] = (param){.name = params[i].key,
                    .text = params[i].value ? params[i].value : "",
                    .len = params[i].value ? strlen(params[i].value) : 0,
                    .where = "options"};
  return apply_params(req, ps, n, lim, err) && check_png(req, err);
}

bool api_cam_request_parse(const api_http_in *in, const api_cam_limits *lim, api_cam_request *req,
                           api_error *err) {
  request_defaults(req, lim);
  if (!in->content_type || !in->content_type[0])
    return api_fail(err, 415, "unsupported_media_type",
                    "Content-Type is required: multipart/form-data, image/jpeg, image/png or "
                    "application/json");
  api_content_type ct;
  if (!api_content_type_parse(in->content_type, &ct, err)) return false;

  param ps[MAX_PARAMS];
  size_t np = 0;
  for (size_t i = 0; i < in->n_query; i++) {
    if (np >= MAX_PARAMS) return api_fail(err, 400, "invalid_query", "too many query parameters");
    ps[np++] = (param){.name = in->query[i].key,
                       .text = in->query[i].value ? in->query[i].value : "",
                       .len = in->query[i].value ? strlen(in->query[i].value) : 0,
                       .where = "query"};
  }
  api_parts parts = {0};
  json_t *root = NULL;
  bool ok;
  if (strcmp(ct.media, "multipart/form-data") == 0) {
    ok = parse_multipart(in, &ct, ps, &np, &parts, req, err);
  } else if (strcmp(ct.media, "application/json") == 0) {
    ok = parse_json(in, lim, ps, &np, &root, req, err);
  } else if (strcmp(ct.media, "image/jpeg") == 0 || strcmp(ct.media, "image/png") == 0) {
    req->image = in->body;
    req->image_len = in->body_len;
    ok = in->body_len > 0 || api_fail(err, 400, "missing_image", "the body is empty");
  } else {
    ok = api_fail(err, 415, "unsupported_media_type",
                  "Content-Type '%s' is not multipart/form-data, image/jpeg, image/png or "
                  "application/json",
                  ct.media);
  }
  ok = ok && sniff_image(req->image, req->image_len, err);
  ok = ok && apply_params(req, ps, np, lim, err) && check_png(req, err);
  /* Parameters borrowed strings from the parts and the JSON; labels were copied out. */
  api_parts_free(&parts);
  json_decref(root);
  if (!ok) api_cam_request_free(req);
  return ok;
}

void api_cam_request_free(api_cam_request *req) {
  if (!req) return;
  free(req->image_owned);
  req->image_owned = NULL;
  req->image = NULL;
  req->image_len = 0;
}

bool api_cam_resolve_label(const api_label *l, const api_model_info *info, int *id,
                           api_error *err) {
  int n = info->n_classes + info->n_groups;
  if (l->id >= 0) {
    if (l->id > n)
      return api_fail(err, 422, "unknown_label", "label id %d is out of range 0..%d", l->id, n);
    *id = l->id;
    return true;
  }
  return api_label_resolve(info, l->name, id, err);
}

bool api_cam_resolve_labels(const api_cam_request *req, const api_model_info *info, int *ids,
                            int *n_ids, api_error *err) {
  *n_ids = 0;
  for (int i = 0; i < req->n_labels; i++) {
    int id;
    if (!api_cam_resolve_label(&req->labels[i], info, &id, err)) return false;
    for (int j = 0; j < *n_ids; j++)
      if (ids[j] == id) return api_fail(err, 422, "duplicate_label", "class %d is named twice", id);
    ids[(*n_ids)++] = id;
  }
  return true;
}
