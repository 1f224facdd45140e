/* cam-response.c - rendering a model's result: JSON with base64 PNGs, or a single PNG. */
#include "cam-response.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "ecs/image.h"
#include "ecs/path.h"

/* A fast zlib level: at libpng's default (6) encoding a few PNGs took 15% of a request's time
 * on a 500x375 image (docs/server.md); level 1 with a fixed filter is several times faster for
 * responses a fifth larger. */
#define API_PNG_LEVEL 1

/* Encodes a grey or RGB picture; returns the PNG bytes or NULL (err filled). */
static uint8_t *png_of(const uint8_t *px, int w, int h, int channels, size_t *n, api_error *err) {
  ecs_err e;
  ecs_err_clear(&e);
  ecs_image img = {.width = w, .height = h, .channels = channels, .data = (uint8_t *)px};
  uint8_t *out = NULL;
  if (ecs_image_encode_png_level(&img, API_PNG_LEVEL, &out, n, &e) != ECS_OK) {
    api_fail(err, 500, "encode_failed", "PNG encoding failed: %s", e.msg);
    return NULL;
  }
  return out;
}

static uint8_t *png_of_mask(const uint8_t *mask, int w, int h, size_t *n, api_error *err) {
  uint8_t pal[256][3];
  ecs_voc_palette(pal);
  ecs_err e;
  ecs_err_clear(&e);
  uint8_t *out = NULL;
  if (ecs_png_encode_palette_level(mask, w, h, (const uint8_t(*)[3])pal, 256, API_PNG_LEVEL, &out,
                                   n, &e) != ECS_OK) {
    api_fail(err, 500, "encode_failed", "PNG encoding failed: %s", e.msg);
    return NULL;
  }
  return out;
}

/* A CAM in [0, 1] as 8-bit grey; NaN and values outside are clamped. */
static uint8_t *png_of_cam(const float *cam, int w, int h, size_t *n, api_error *err) {
  size_t px = (size_t)w * (size_t)h;
  uint8_t *g = malloc(px ? px : 1);
  if (!g) {
    api_fail(err, 503, "out_of_memory", "the server is short of memory");
    return NULL;
  }
  for (size_t i = 0; i < px; i++) {
    float v = cam[i];
    v = v > 0 ? (v < 1 ? v : 1) : 0; /* NaN -> 0 */
    g[i] = (uint8_t)lrintf(v * 255.0f);
  }
  uint8_t *out = png_of(g, w, h, 1, n, err);
  free(g);
  return out;
}

static const char *class_name(const api_model_info *info, int id) {
  if (id == 0) return "background";
  if (id >= 1 && id <= info->n_classes) return info->class_names[id - 1];
  return "";
}

static bool add_b64(json_t *obj, const char *key, uint8_t *png, size_t n, api_error *err) {
  if (!png) return false;
  char *b = api_base64_encode(png, n);
  free(png);
  if (!b) return api_fail(err, 503, "out_of_memory", "the server is short of memory");
  json_object_set_new(obj, key, json_string(b));
  free(b);
  return true;
}

static bool missing(api_error *err, const char *what) {
  return api_fail(err, 500, "internal_error", "the model returned no '%s'", what);
}

static bool render_json(const api_cam_request *req, const api_model_info *info,
                        const api_cam_result *res, const api_cam_timings *t, json_t *root,
                        api_error *err) {
  int w = res->width, h = res->height;
  size_t plane = (size_t)w * (size_t)h;
  json_t *labels = json_array();
  json_object_set_new(root, "labels", labels);
  for (int i = 0; i < res->n_labels; i++)
    json_array_append_new(labels, json_pack("{s:i, s:s}", "id", res->labels[i], "name",
                                            class_name(info, res->labels[i])));
  if (req->outputs & API_OUT_SCORES) {
    if (!res->scores) return missing(err, "scores");
    json_t *sc = json_array();
    json_object_set_new(root, "scores", sc);
    for (int k = 1; k <= info->n_classes; k++)
      json_array_append_new(sc, json_pack("{s:i, s:s, s:f}", "id", k, "name",
                                          class_name(info, k), "score", res->scores[k - 1]));
  }
  static const struct {
    unsigned bit;
    const char *key;
  } cams[] = {{API_OUT_CAM, "cams"}, {API_OUT_ERASED_CAM, "erased_cams"}};
  for (int c = 0; c < 2; c++) {
    if (!(req->outputs & cams[c].bit)) continue;
    const float *src = c == 0 ? res->cams : res->erased_cams;
    if (!src) return missing(err, api_output_name(cams[c].bit));
    json_t *list = json_array();
    json_object_set_new(root, cams[c].key, list);
    for (int i = 0; i < res->n_labels; i++) {
      json_t *item = json_pack("{s:i, s:s}", "id", res->labels[i], "name",
                               class_name(info, res->labels[i]));
      json_array_append_new(list, item);
      size_t n = 0;
      uint8_t *png = png_of_cam(src + plane * (size_t)i, w, h, &n, err);
      if (!add_b64(item, "png", png, n, err)) return false;
    }
  }
  static const struct {
    unsigned bit;
    size_t off;
    bool rgb;
  } pics[] = {
      {API_OUT_MASK, offsetof(api_cam_result, mask), false},
      {API_OUT_CAM_MASK, offsetof(api_cam_result, cam_mask), false},
      {API_OUT_ECS_MASK, offsetof(api_cam_result, ecs_mask), false},
      {API_OUT_HEAD_MASK, offsetof(api_cam_result, head_mask), false},
      {API_OUT_ERASED_IMAGE, offsetof(api_cam_result, erased_image), true},
      {API_OUT_OVERLAY, offsetof(api_cam_result, overlay), true},
  };
  for (size_t p = 0; p < sizeof pics / sizeof pics[0]; p++) {
    if (!(req->outputs & pics[p].bit)) continue;
    const uint8_t *px = *(uint8_t *const *)((const char *)res + pics[p].off);
    const char *name = api_output_name(pics[p].bit);
    if (!px) return missing(err, name);
    size_t n = 0;
    uint8_t *png = pics[p].rgb ? png_of(px, w, h, 3, &n, err) : png_of_mask(px, w, h, &n, err);
    if (!add_b64(root, name, png, n, err)) return false;
  }
  json_object_set_new(root, "timings",
                      json_pack("{s:f, s:f, s:f, s:f}", "decode_ms", t->decode_ms, "queue_ms",
                                t->queue_ms, "infer_ms", t->infer_ms, "total_ms", t->total_ms));
  return true;
}

static bool render_png(const api_cam_request *req, const api_cam_result *res, int png_id,
                       char **body, size_t *len, api_error *err) {
  int w = res->width, h = res->height;
  size_t plane = (size_t)w * (size_t)h, n = 0;
  unsigned out = req->outputs;
  uint8_t *png = NULL;
  if (out == API_OUT_CAM || out == API_OUT_ERASED_CAM) {
    const float *src = out == API_OUT_CAM ? res->cams : res->erased_cams;
    if (!src) return missing(err, api_output_name(out));
    int idx = res->n_labels == 1 && png_id < 0 ? 0 : -1;
    for (int i = 0; i < res->n_labels && idx < 0; i++)
      if (res->labels[i] == png_id) idx = i;
    if (idx < 0)
      return api_fail(err, 422, "unknown_label", "label %d has no CAM in this result", png_id);
    png = png_of_cam(src + plane * (size_t)idx, w, h, &n, err);
  } else {
    const uint8_t *px = out == API_OUT_MASK         ? res->mask
                        : out == API_OUT_CAM_MASK   ? res->cam_mask
                        : out == API_OUT_ECS_MASK   ? res->ecs_mask
                        : out == API_OUT_HEAD_MASK  ? res->head_mask
                        : out == API_OUT_ERASED_IMAGE ? res->erased_image
                                                    : res->overlay;
    if (!px) return missing(err, api_output_name(out));
    bool rgb = out == API_OUT_ERASED_IMAGE || out == API_OUT_OVERLAY;
    png = rgb ? png_of(px, w, h, 3, &n, err) : png_of_mask(px, w, h, &n, err);
  }
  if (!png) return false;
  *body = (char *)png;
  *len = n;
  return true;
}

bool api_cam_render(const api_cam_request *req, const api_model_info *info,
                    const api_cam_result *res, int png_id, const api_cam_timings *t, char **body,
                    size_t *len, const char **type, api_error *err) {
  *body = NULL;
  *len = 0;
  if (res->width <= 0 || res->height <= 0 || res->n_labels < 0 ||
      (res->n_labels > 0 && !res->labels))
    return api_fail(err, 500, "internal_error", "the model returned a malformed result");
  if (req->format == API_FORMAT_PNG) {
    *type = "image/png";
    return render_png(req, res, png_id, body, len, err);
  }
  json_t *root = json_pack("{s:i, s:i, s:{s:s, s:i}}", "width", res->width, "height",
                           res->height, "model", "name", info->name, "version", info->version);
  if (!root) return api_fail(err, 503, "out_of_memory", "the server is short of memory");
  bool ok = render_json(req, info, res, t, root, err);
  if (ok) {
    *body = json_dumps(root, JSON_COMPACT);
    if (!*body) ok = api_fail(err, 503, "out_of_memory", "the server is short of memory");
    else *len = strlen(*body);
  }
  json_decref(root);
  *type = "application/json";
  return ok;
}

/* ---- files (ecsnet cam) --------------------------------------------------------------------- */

/* Writes DIR/PREFIXNAME.png and frees png (NULL: an encoding that failed, err filled). */
static bool write_file(const char *dir, const char *prefix, const char *name, uint8_t *png,
                       size_t n, api_error *err) {
  if (!png) return false;
  char path[ECS_PATH_MAX];
  ecs_err e;
  ecs_err_clear(&e);
  bool ok = ecs_path_fmt(path, sizeof path, &e, "%s/%s%s.png", dir, prefix, name) == ECS_OK &&
            ecs_file_write(path, png, n, &e) == ECS_OK;
  if (!ok) api_fail(err, 500, "write_failed", "%s", e.msg);
  free(png);
  return ok;
}

static bool write_scores(const char *dir, const api_model_info *info, const api_cam_result *res,
                         api_error *err) {
  char path[ECS_PATH_MAX];
  ecs_err e;
  if (ecs_path_join(path, sizeof path, dir, "scores.txt", &e) != ECS_OK)
    return api_fail(err, 500, "write_failed", "%s", e.msg);
  FILE *f = fopen(path, "w");
  if (!f) return api_fail(err, 500, "write_failed", "%s: %s", path, strerror(errno));
  for (int k = 1; k <= info->n_classes; k++) {
    bool used = false;
    for (int i = 0; i < res->n_labels; i++)
      used |= res->labels[i] == k;
    fprintf(f, "%s %.6f%s\n", class_name(info, k), res->scores[k - 1], used ? " *" : "");
  }
  if (fclose(f) != 0) return api_fail(err, 500, "write_failed", "%s: write failed", path);
  return true;
}

bool api_cam_write_files(const char *dir, const api_model_info *info, const api_cam_result *res,
                         api_error *err) {
  int w = res->width, h = res->height;
  size_t plane = (size_t)w * (size_t)h, n = 0;
  if (w <= 0 || h <= 0 || res->n_labels < 0 || (res->n_labels > 0 && !res->labels))
    return api_fail(err, 500, "internal_error", "the model returned a malformed result");
  static const char *const cam_prefix[2] = {"cam_", "erased_cam_"};
  for (int c = 0; c < 2; c++) {
    const float *src = c == 0 ? res->cams : res->erased_cams;
    for (int i = 0; src && i < res->n_labels; i++) {
      uint8_t *png = png_of_cam(src + plane * (size_t)i, w, h, &n, err);
      if (!write_file(dir, cam_prefix[c], class_name(info, res->labels[i]), png, n, err))
        return false;
    }
  }
  const struct {
    const char *name;
    const uint8_t *px;
    bool rgb;
  } pics[] = {
      {"mask", res->mask, false},
      {"cam_mask", res->cam_mask, false},
      {"ecs_mask", res->ecs_mask, false},
      {"head_mask", res->head_mask, false},
      {"erased_image", res->erased_image, true},
      {"overlay", res->overlay, true},
  };
  for (size_t p = 0; p < sizeof pics / sizeof pics[0]; p++) {
    if (!pics[p].px) continue;
    uint8_t *png =
        pics[p].rgb ? png_of(pics[p].px, w, h, 3, &n, err) : png_of_mask(pics[p].px, w, h, &n, err);
    if (!write_file(dir, "", pics[p].name, png, n, err)) return false;
  }
  if (res->erase_region) {
    uint8_t *g = malloc(plane ? plane : 1);
    if (!g) return api_fail(err, 503, "out_of_memory", "out of memory");
    for (size_t i = 0; i < plane; i++)
      g[i] = res->erase_region[i] ? 255 : 0;
    uint8_t *png = png_of(g, w, h, 1, &n, err);
    free(g);
    if (!write_file(dir, "", "erase_region", png, n, err)) return false;
  }
  return !res->scores || write_scores(dir, info, res, err);
}
