/* cam-response.c - rendering an engine result: JSON with base64 PNGs, a single PNG, or files.
 *
 * The encoders work in the engine's convention (ecs_status + ecs_err) so that the files of
 * `ecsnet cam` and the answer of POST /cam share them; the answer maps their failures to the
 * HTTP error shape once, in encode_failed. */
#include "cam-response.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "mask-formats.h"
#include "ecs/path.h"
#include "labels.h"

/* A fast zlib level: at libpng's default (6) encoding a few PNGs took 15% of a request's time
 * on a 500x375 image (docs/server.md); level 1 with a fixed filter is several times faster for
 * responses a fifth larger. */
#define API_PNG_LEVEL 1

/* ---- encoders --------------------------------------------------------------------------- */

/* A grey or RGB picture as PNG bytes (malloc'd), or NULL with e filled. */
static uint8_t *png_of(const uint8_t *px, int w, int h, int channels, size_t *n, ecs_err *e) {
  ecs_image img = {.width = w, .height = h, .channels = channels, .data = (uint8_t *)px};
  uint8_t *out = NULL;
  if (ecs_image_encode_png_level(&img, API_PNG_LEVEL, &out, n, e) != ECS_OK) return NULL;
  return out;
}

/* Whether every id of the mask (ECS_MASK_IGNORE aside) fits an 8-bit palette PNG (<= 254). */
static bool mask_fits_8bit(const uint16_t *mask, size_t px) {
  for (size_t i = 0; i < px; i++)
    if (mask[i] > 254 && mask[i] != ECS_MASK_IGNORE) return false;
  return true;
}

/* A mask as an 8-bit VOC palette PNG (255: ignore) when every id is <= 254, else as a 16-bit
 * grey PNG of the ids (65535: ignore). */
static uint8_t *png_of_mask(const uint16_t *mask, int w, int h, size_t *n, ecs_err *e) {
  size_t px = (size_t)w * (size_t)h;
  uint8_t *out = NULL;
  if (!mask_fits_8bit(mask, px)) {
    if (ecs_png_encode_grey16_level(mask, w, h, API_PNG_LEVEL, &out, n, e) != ECS_OK) return NULL;
    return out;
  }
  uint8_t pal[256][3], *ix = malloc(px ? px : 1);
  if (!ix) {
    ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < px; i++)
    ix[i] = mask[i] == ECS_MASK_IGNORE ? 255 : (uint8_t)mask[i];
  ecs_voc_palette(pal);
  ecs_status st = ecs_png_encode_palette_level(ix, w, h, (const uint8_t(*)[3])pal, 256,
                                               API_PNG_LEVEL, &out, n, e);
  free(ix);
  return st == ECS_OK ? out : NULL;
}

/* A CAM in [0, 1] as 8-bit grey; NaN and values outside are clamped. */
static uint8_t *png_of_cam(const float *cam, int w, int h, size_t *n, ecs_err *e) {
  size_t px = (size_t)w * (size_t)h;
  uint8_t *g = malloc(px ? px : 1);
  if (!g) {
    ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < px; i++) {
    float v = cam[i];
    v = v > 0 ? (v < 1 ? v : 1) : 0; /* NaN -> 0 */
    g[i] = (uint8_t)lrintf(v * 255.0f);
  }
  uint8_t *out = png_of(g, w, h, 1, n, e);
  free(g);
  return out;
}

void api_overlay_jet(const uint8_t *rgb, const float *cam, int w, int h, uint8_t *out) {
  size_t n = (size_t)w * (size_t)h;
  for (size_t p = 0; p < n; p++) {
    float v = cam ? cam[p] : 0.0f;
    v = v > 0 ? (v < 1 ? v : 1) : 0;
    float col[3] = {1.5f - __builtin_fabsf(4 * v - 3), 1.5f - __builtin_fabsf(4 * v - 2),
                    1.5f - __builtin_fabsf(4 * v - 1)};
    for (int c = 0; c < 3; c++) {
      float k = col[c] < 0 ? 0 : col[c] > 1 ? 1 : col[c];
      out[p * 3 + c] = (uint8_t)(0.5f * rgb[p * 3 + c] + 127.5f * k + 0.5f);
    }
  }
}

/* The overlay (the labels' pixel-wise max CAM over the image) as a PNG, or NULL. */
static uint8_t *png_of_overlay(const ecs_image *img, const ecs_cam_result *r, size_t *n,
                               ecs_err *e) {
  size_t hw = (size_t)r->h * (size_t)r->w;
  float *mx = calloc(hw ? hw : 1, sizeof *mx);
  uint8_t *px = malloc(hw ? hw * 3 : 1);
  uint8_t *out = NULL;
  if (!mx || !px) {
    ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
  } else {
    for (int i = 0; i < r->n_labels; i++)
      for (size_t p = 0; p < hw; p++)
        if (r->cams[(size_t)i * hw + p] > mx[p]) mx[p] = r->cams[(size_t)i * hw + p];
    api_overlay_jet(img->data, mx, r->w, r->h, px);
    out = png_of(px, r->w, r->h, 3, n, e);
  }
  free(mx);
  free(px);
  return out;
}

/* The erase region (0/1) as 8-bit grey, 255 where the image was erased. */
static uint8_t *png_of_region(const uint8_t *region, int w, int h, size_t *n, ecs_err *e) {
  size_t px = (size_t)w * (size_t)h;
  uint8_t *g = malloc(px ? px : 1);
  if (!g) {
    ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < px; i++)
    g[i] = region[i] ? 255 : 0;
  uint8_t *out = png_of(g, w, h, 1, n, e);
  free(g);
  return out;
}

/* The pictures other than CAMs: which output, where its pixels are, how it is encoded. */
typedef enum pic_kind { PIC_MASK, PIC_RGB, PIC_OVERLAY, PIC_REGION } pic_kind;
typedef struct pic {
  unsigned bit;
  size_t off; /* of its buffer in ecs_cam_result (unused for the overlay) */
  pic_kind kind;
} pic;

static const pic k_pics[] = {
    {API_OUT_MASK, offsetof(ecs_cam_result, mask), PIC_MASK},
    {API_OUT_CAM_MASK, offsetof(ecs_cam_result, cam_mask), PIC_MASK},
    {API_OUT_ECS_MASK, offsetof(ecs_cam_result, ecs_mask), PIC_MASK},
    {API_OUT_HEAD_MASK, offsetof(ecs_cam_result, head_mask), PIC_MASK},
    {API_OUT_ERASED_IMAGE, offsetof(ecs_cam_result, erased_image), PIC_RGB},
    {API_OUT_OVERLAY, 0, PIC_OVERLAY},
    {API_OUT_ERASE_REGION, offsetof(ecs_cam_result, erase_region), PIC_REGION},
};
#define N_PICS (sizeof k_pics / sizeof k_pics[0])

/* Whether the result holds what picture p needs. */
static bool pic_present(const pic *p, const ecs_image *img, const ecs_cam_result *r) {
  if (p->kind == PIC_OVERLAY)
    return img && img->data && img->channels == 3 && img->width == r->w && img->height == r->h &&
           r->cams;
  return *(void *const *)((const char *)r + p->off) != NULL;
}

static uint8_t *png_of_pic(const pic *p, const ecs_image *img, const ecs_cam_result *r, size_t *n,
                           ecs_err *e) {
  if (p->kind == PIC_OVERLAY) return png_of_overlay(img, r, n, e);
  const void *px = *(void *const *)((const char *)r + p->off);
  if (p->kind == PIC_REGION) return png_of_region(px, r->w, r->h, n, e);
  return p->kind == PIC_RGB ? png_of(px, r->w, r->h, 3, n, e) : png_of_mask(px, r->w, r->h, n, e);
}

static const pic *pic_of(unsigned bit) {
  for (size_t i = 0; i < N_PICS; i++)
    if (k_pics[i].bit == bit) return &k_pics[i];
  return NULL;
}

static const char *class_name(const api_model_info *info, int id) {
  const char *s = api_label_name(info, id);
  return s ? s : "";
}

static bool well_formed(const ecs_cam_result *r) {
  return r && r->w > 0 && r->h > 0 && r->n_labels >= 0 && r->n_labels <= ECS_MAX_LABELS;
}

/* ---- the answer ------------------------------------------------------------------------- */

static bool encode_failed(api_error *err, const ecs_err *e) {
  if (e->status == ECS_ERR_NOMEM)
    return api_fail(err, 503, "out_of_memory", "the server is short of memory");
  return api_fail(err, 500, "encode_failed", "PNG encoding failed: %s", e->msg);
}

static bool add_b64(json_t *obj, const char *key, uint8_t *png, size_t n, const ecs_err *e,
                    api_error *err) {
  if (!png) return encode_failed(err, e);
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

static json_t *label_json(const api_model_info *info, int id) {
  return json_pack("{s:i, s:s}", "id", id, "name", class_name(info, id));
}

/* A label of the result: its id, name, kind, whether it was predicted, and its score. */
static json_t *used_label_json(const api_model_info *info, const ecs_cam_result *r, int id) {
  json_t *j = label_json(info, id);
  json_object_set_new(j, "kind", json_string(id > info->n_classes ? "group" : "class"));
  json_object_set_new(j, "predicted", json_boolean(r->predicted));
  if (r->scores && id >= 1 && id <= r->n_classes + r->n_groups)
    json_object_set_new(j, "score", json_real(r->scores[id - 1]));
  return j;
}

/* Every id the asked-for masks hold, named: "mask_ids" [{id, name}], ascending; the ignore value
 * (255 in an 8-bit mask, 65535 in a 16-bit one) as "ignore". "mask_bits": 8 or 16. */
static void mask_ids_json(const api_cam_request *req, const api_model_info *info,
                          const ecs_cam_result *r, json_t *root) {
  const unsigned bits[] = {API_OUT_MASK, API_OUT_CAM_MASK, API_OUT_ECS_MASK, API_OUT_HEAD_MASK};
  const uint16_t *masks[] = {r->mask, r->cam_mask, r->ecs_mask, r->head_mask};
  size_t px = (size_t)r->w * (size_t)r->h;
  uint8_t *seen = calloc(ECS_MAX_LABELS + 1, 1);
  bool any = false, ignore = false, wide = false;
  if (!seen) return;
  for (int m = 0; m < 4; m++) {
    if (!(req->outputs & bits[m]) || !masks[m]) continue;
    any = true;
    wide |= !mask_fits_8bit(masks[m], px);
    for (size_t i = 0; i < px; i++) {
      uint16_t v = masks[m][i];
      if (v == ECS_MASK_IGNORE)
        ignore = true;
      else if (v <= ECS_MAX_LABELS)
        seen[v] = 1;
    }
  }
  if (any) {
    json_t *list = json_array();
    for (int id = 0; id <= ECS_MAX_LABELS; id++)
      if (seen[id]) json_array_append_new(list, label_json(info, id));
    if (ignore)
      json_array_append_new(
          list, json_pack("{s:i, s:s}", "id", wide ? ECS_MASK_IGNORE : 255, "name", "ignore"));
    json_object_set_new(root, "mask_ids", list);
    json_object_set_new(root, "mask_bits", json_integer(wide ? 16 : 8));
  }
  free(seen);
}

static bool render_cams(const api_cam_request *req, const api_model_info *info,
                        const ecs_cam_result *res, json_t *root, api_error *err) {
  size_t plane = (size_t)res->w * (size_t)res->h;
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
      json_t *item = label_json(info, res->labels[i]);
      json_array_append_new(list, item);
      size_t n = 0;
      ecs_err e = {0};
      uint8_t *png = png_of_cam(src + plane * (size_t)i, res->w, res->h, &n, &e);
      if (!add_b64(item, "png", png, n, &e, err)) return false;
    }
  }
  return true;
}

/* coco and polygons: the combined mask's classes as COCO RLE and as rings. */
static bool render_regions(const api_cam_request *req, const api_model_info *info,
                           const ecs_cam_result *res, json_t *root, api_error *err) {
  if (!(req->outputs & (API_OUT_COCO | API_OUT_POLYGONS))) return true;
  if (!res->mask) return missing(err, "mask");
  if (req->outputs & API_OUT_COCO) {
    json_t *c = api_coco_json(info, res->mask, res->w, res->h);
    if (!c) return api_fail(err, 503, "out_of_memory", "the server is short of memory");
    json_object_set_new(root, "coco", c);
  }
  if (req->outputs & API_OUT_POLYGONS) {
    json_t *p = api_polygons_json(info, res->mask, res->w, res->h, API_POLYGON_TOLERANCE);
    if (!p) return api_fail(err, 503, "out_of_memory", "the server is short of memory");
    json_object_set_new(root, "polygons",
                        json_pack("{s:f, s:o}", "tolerance", API_POLYGON_TOLERANCE, "classes", p));
  }
  return true;
}

static bool render_json(const api_cam_request *req, const api_model_info *info,
                        const ecs_image *img, const ecs_cam_result *res, const api_cam_timings *t,
                        json_t *root, api_error *err) {
  json_t *labels = json_array();
  json_object_set_new(root, "labels", labels);
  for (int i = 0; i < res->n_labels; i++)
    json_array_append_new(labels, used_label_json(info, res, res->labels[i]));
  mask_ids_json(req, info, res, root);
  if (req->outputs & API_OUT_SCORES) {
    if (!res->scores) return missing(err, "scores");
    json_t *sc = json_array();
    json_object_set_new(root, "scores", sc);
    for (int k = 1; k <= res->n_classes + res->n_groups; k++)
      json_array_append_new(sc, json_pack("{s:i, s:s, s:f}", "id", k, "name", class_name(info, k),
                                          "score", res->scores[k - 1]));
  }
  if (!render_cams(req, info, res, root, err)) return false;
  if (!render_regions(req, info, res, root, err)) return false;
  for (size_t p = 0; p < N_PICS; p++) {
    if (!(req->outputs & k_pics[p].bit)) continue;
    const char *name = api_output_name(k_pics[p].bit);
    if (!pic_present(&k_pics[p], img, res)) return missing(err, name);
    size_t n = 0;
    ecs_err e = {0};
    uint8_t *png = png_of_pic(&k_pics[p], img, res, &n, &e);
    if (!add_b64(root, name, png, n, &e, err)) return false;
  }
  json_object_set_new(root, "timings",
                      json_pack("{s:f, s:f, s:f, s:f}", "decode_ms", t->decode_ms, "queue_ms",
                                t->queue_ms, "infer_ms", t->infer_ms, "total_ms", t->total_ms));
  if (t->input_w > 0)
    json_object_set_new(root, "model_input",
                        json_pack("{s:i, s:i}", "width", t->input_w, "height", t->input_h));
  return true;
}

static bool render_png(const api_cam_request *req, const api_model_info *info, const ecs_image *img,
                       const ecs_cam_result *res, api_response *out, api_error *err) {
  size_t plane = (size_t)res->w * (size_t)res->h, n = 0;
  unsigned want = req->outputs;
  uint8_t *png = NULL;
  ecs_err e = {0};
  if (want == API_OUT_CAM || want == API_OUT_ERASED_CAM) {
    const float *src = want == API_OUT_CAM ? res->cams : res->erased_cams;
    if (!src) return missing(err, api_output_name(want));
    int png_id = -1;
    if (req->png_label_given && !api_cam_resolve_label(&req->png_label, info, &png_id, err))
      return false;
    int idx = res->n_labels == 1 && png_id < 0 ? 0 : -1;
    for (int i = 0; i < res->n_labels && idx < 0; i++)
      if (res->labels[i] == png_id) idx = i;
    if (idx < 0)
      return api_fail(err, 422, "unknown_label", "label %d has no CAM in this result", png_id);
    png = png_of_cam(src + plane * (size_t)idx, res->w, res->h, &n, &e);
  } else {
    const pic *p = pic_of(want);
    if (!p || !pic_present(p, img, res)) return missing(err, api_output_name(want));
    png = png_of_pic(p, img, res, &n, &e);
  }
  if (!png) return encode_failed(err, &e);
  *out = (api_response){.status = 200, .type = "image/png", .body = (char *)png, .len = n};
  return true;
}

bool api_cam_render(const api_cam_request *req, const api_model_info *info, const ecs_image *img,
                    const ecs_cam_result *res, const api_cam_timings *t, api_response *out,
                    api_error *err) {
  *out = (api_response){0};
  if (!well_formed(res))
    return api_fail(err, 500, "internal_error", "the model returned a malformed result");
  if (req->format == API_FORMAT_PNG) return render_png(req, info, img, res, out, err);
  json_t *root = json_pack("{s:i, s:i, s:{s:s, s:i}}", "width", res->w, "height", res->h, "model",
                           "name", info->name, "version", info->version);
  if (!root) return api_fail(err, 503, "out_of_memory", "the server is short of memory");
  bool ok = render_json(req, info, img, res, t, root, err);
  char *body = ok ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (ok && !body) ok = api_fail(err, 503, "out_of_memory", "the server is short of memory");
  if (ok)
    *out = (api_response){
        .status = 200, .type = "application/json", .body = body, .len = strlen(body)};
  return ok;
}

/* ---- files (ecsnet cam) ----------------------------------------------------------------- */

/* Writes DIR/PREFIXNAME.png and frees png (NULL: an encoding that failed, e filled). */
static ecs_status write_file(const char *dir, const char *prefix, const char *name, uint8_t *png,
                             size_t n, ecs_err *e) {
  if (!png) return e->status ? e->status : ECS_ERR_INVALID;
  char path[ECS_PATH_MAX];
  ecs_status st = ecs_path_fmt(path, sizeof path, e, "%s/%s%s.png", dir, prefix, name);
  if (st == ECS_OK) st = ecs_file_write(path, png, n, e);
  free(png);
  return st;
}

static ecs_status write_scores(const char *dir, const api_model_info *info,
                               const ecs_cam_result *res, ecs_err *e) {
  char path[ECS_PATH_MAX];
  ecs_status st = ecs_path_join(path, sizeof path, dir, "scores.txt", e);
  if (st != ECS_OK) return st;
  FILE *f = fopen(path, "w");
  if (!f) return ecs_err_set(e, ECS_ERR_IO, "%s: %s", path, strerror(errno));
  for (int k = 1; k <= res->n_classes + res->n_groups; k++) {
    bool used = false;
    for (int i = 0; i < res->n_labels; i++)
      used |= res->labels[i] == k;
    fprintf(f, "%s %.6f%s\n", class_name(info, k), res->scores[k - 1], used ? " *" : "");
  }
  if (fclose(f) != 0) return ecs_err_set(e, ECS_ERR_IO, "%s: write failed", path);
  return ECS_OK;
}

/* coco.json and polygons.json: the same JSON as the answer's "coco" and "polygons". */
static ecs_status write_regions(const char *dir, const api_cam_request *req,
                                const api_model_info *info, const ecs_cam_result *res, ecs_err *e) {
  for (int i = 0; i < 2; i++) {
    unsigned bit = i == 0 ? API_OUT_COCO : API_OUT_POLYGONS;
    if (!(req->outputs & bit)) continue;
    if (!res->mask) return ecs_err_set(e, ECS_ERR_INVALID, "the result has no mask");
    json_t *j =
        i == 0
            ? api_coco_json(info, res->mask, res->w, res->h)
            : json_pack("{s:f, s:o}", "tolerance", API_POLYGON_TOLERANCE, "classes",
                        api_polygons_json(info, res->mask, res->w, res->h, API_POLYGON_TOLERANCE));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
    char path[ECS_PATH_MAX];
    ecs_status st = ecs_path_fmt(path, sizeof path, e, "%s/%s.json", dir, api_output_name(bit));
    if (st == ECS_OK) st = ecs_file_write(path, text, strlen(text), e);
    free(text);
    if (st != ECS_OK) return st;
  }
  return ECS_OK;
}

ecs_status api_cam_write_files(const char *dir, const api_cam_request *req,
                               const api_model_info *info, const ecs_image *img,
                               const ecs_cam_result *res, ecs_err *e) {
  if (!well_formed(res)) return ecs_err_set(e, ECS_ERR_INVALID, "a malformed result");
  size_t plane = (size_t)res->w * (size_t)res->h, n = 0;
  static const char *const cam_prefix[2] = {"cam_", "erased_cam_"};
  static const unsigned cam_bit[2] = {API_OUT_CAM, API_OUT_ERASED_CAM};
  ecs_status st = ECS_OK;
  for (int c = 0; c < 2 && st == ECS_OK; c++) {
    const float *src = c == 0 ? res->cams : res->erased_cams;
    if (!(req->outputs & cam_bit[c])) continue;
    if (!src) return ecs_err_set(e, ECS_ERR_INVALID, "the result has no %s", cam_prefix[c]);
    for (int i = 0; i < res->n_labels && st == ECS_OK; i++) {
      uint8_t *png = png_of_cam(src + plane * (size_t)i, res->w, res->h, &n, e);
      st = write_file(dir, cam_prefix[c], class_name(info, res->labels[i]), png, n, e);
    }
  }
  for (size_t p = 0; p < N_PICS && st == ECS_OK; p++) {
    const char *name = api_output_name(k_pics[p].bit);
    if (!(req->outputs & k_pics[p].bit)) continue;
    if (!pic_present(&k_pics[p], img, res))
      return ecs_err_set(e, ECS_ERR_INVALID, "the result has no %s", name);
    uint8_t *png = png_of_pic(&k_pics[p], img, res, &n, e);
    st = write_file(dir, "", name, png, n, e);
  }
  if (st == ECS_OK && (req->outputs & API_OUT_SCORES) && res->scores)
    st = write_scores(dir, info, res, e);
  if (st == ECS_OK) st = write_regions(dir, req, info, res, e);
  return st;
}
