/* input-size.c - the input-size policy (input-size.h). */
#include "input-size.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int clamp_side(double v) {
  return v > 1e9 ? 1000000000 : v < 1 ? 1 : (int)v;
}

bool api_input_size(int w, int h, const api_input_policy *p, api_input_plan *plan) {
  *plan = (api_input_plan){.scaled_w = w, .scaled_h = h, .canvas_w = w, .canvas_h = h};
  if (w <= 0 || h <= 0) return false;
  int shorter = w < h ? w : h, longer = w < h ? h : w;
  double side = p->side > 0 ? p->side : shorter;
  if (side < ECS_MODEL_MIN_SIDE) side = ECS_MODEL_MIN_SIDE;
  double s = side / shorter;
  if (p->max_aspect >= 1 && longer * s > p->max_aspect * side)
    s = p->max_aspect * side / longer; /* too long: the longer side fits, the shorter is padded */
  /* a side at most the image's own when the scale is 1, never under one pixel */
  plan->scaled_w = clamp_side(floor(w * s + 0.5));
  plan->scaled_h = clamp_side(floor(h * s + 0.5));
  int pad_to = (int)side;
  plan->canvas_w = plan->scaled_w < pad_to ? pad_to : plan->scaled_w;
  plan->canvas_h = plan->scaled_h < pad_to ? pad_to : plan->scaled_h;
  plan->x = (plan->canvas_w - plan->scaled_w) / 2;
  plan->y = (plan->canvas_h - plan->scaled_h) / 2;
  return plan->scaled_w != w || plan->scaled_h != h || plan->canvas_w != w || plan->canvas_h != h;
}

ecs_image *api_input_image(const ecs_image *img, const api_input_plan *plan,
                           const api_input_policy *p, ecs_err *err) {
  ecs_image *scaled = NULL;
  const ecs_image *src = img;
  if (plan->scaled_w != img->width || plan->scaled_h != img->height) {
    if (!(scaled = ecs_image_resample(img, plan->scaled_w, plan->scaled_h, err))) return NULL;
    src = scaled;
  }
  if (plan->canvas_w == src->width && plan->canvas_h == src->height)
    return scaled ? scaled : ecs_image_resample(img, img->width, img->height, err);
  ecs_image *out = ecs_image_new(plan->canvas_w, plan->canvas_h, 3, err);
  if (out) {
    size_t n = (size_t)plan->canvas_w * plan->canvas_h;
    for (size_t q = 0; q < n; q++)
      memcpy(out->data + q * 3, p->pad, 3);
    for (int y = 0; y < src->height; y++)
      memcpy(out->data + ((size_t)(y + plan->y) * plan->canvas_w + plan->x) * 3,
             src->data + (size_t)y * src->width * 3, (size_t)src->width * 3);
  }
  ecs_image_free(scaled);
  return out;
}

/* The source rectangle of the maps: rw x rh at (rx, ry) of buffers bw pixels wide and bh
 * high. */
typedef struct rect {
  int rx, ry, rw, rh, bw, bh;
} rect;

/* The source coordinate of output index i with half-pixel centres, inside the rectangle. */
static double src_coord(int i, int out_n, int in_n) {
  double x = ((double)i + 0.5) * in_n / out_n - 0.5;
  return x < 0 ? 0 : x > in_n - 1 ? in_n - 1 : x;
}

static float *bilinear(const float *in, int planes, const rect *r, int oh, int ow) {
  float *out = malloc(sizeof(float) * (size_t)planes * (size_t)oh * (size_t)ow);
  if (!out) return NULL;
  for (int p = 0; p < planes; p++) {
    const float *src = in + (size_t)p * r->bh * r->bw + (size_t)r->ry * r->bw + r->rx;
    float *dst = out + (size_t)p * oh * ow;
    size_t iw = (size_t)r->bw;
    for (int y = 0; y < oh; y++) {
      double sy = src_coord(y, oh, r->rh);
      int y0 = (int)sy, y1 = y0 + 1 < r->rh ? y0 + 1 : y0;
      double fy = sy - y0;
      for (int x = 0; x < ow; x++) {
        double sx = src_coord(x, ow, r->rw);
        int x0 = (int)sx, x1 = x0 + 1 < r->rw ? x0 + 1 : x0;
        double fx = sx - x0;
        double top = src[y0 * iw + x0] * (1 - fx) + src[y0 * iw + x1] * fx;
        double bot = src[y1 * iw + x0] * (1 - fx) + src[y1 * iw + x1] * fx;
        dst[(size_t)y * ow + x] = (float)(top * (1 - fy) + bot * fy);
      }
    }
  }
  return out;
}

/* ch interleaved bytes per pixel, sampled at the nearest source pixel of each output centre */
static uint8_t *nearest(const uint8_t *in, int ch, const rect *r, int oh, int ow) {
  uint8_t *out = malloc((size_t)ch * (size_t)oh * (size_t)ow);
  if (!out) return NULL;
  for (int y = 0; y < oh; y++) {
    int sy = (int)(((double)y + 0.5) * r->rh / oh);
    if (sy >= r->rh) sy = r->rh - 1;
    for (int x = 0; x < ow; x++) {
      int sx = (int)(((double)x + 0.5) * r->rw / ow);
      if (sx >= r->rw) sx = r->rw - 1;
      size_t q = (size_t)(sy + r->ry) * r->bw + (size_t)(sx + r->rx);
      memcpy(out + ((size_t)y * ow + x) * ch, in + q * ch, (size_t)ch);
    }
  }
  return out;
}

ecs_status api_cam_result_resize(ecs_cam_result *r, const api_input_plan *plan, int w, int h,
                                 ecs_err *err) {
  rect src = {0, 0, r->w, r->h, r->w, r->h};
  if (plan && plan->canvas_w == r->w && plan->canvas_h == r->h)
    src = (rect){plan->x, plan->y, plan->scaled_w, plan->scaled_h, r->w, r->h};
  if (src.rw == w && src.rh == h && src.rw == r->w && src.rh == r->h) return ECS_OK;
  int n = r->n_labels;
  /* everything is made first, so a failure leaves r whole */
  float *cams = r->cams ? bilinear(r->cams, n, &src, h, w) : NULL;
  float *ecams = r->erased_cams ? bilinear(r->erased_cams, n, &src, h, w) : NULL;
  /* the byte buffers (region 0/1, RGB) and the 16-bit masks, each as its bytes per pixel */
  uint8_t *u8[6] = {0};
  void **field[6] = {(void **)&r->erase_region, (void **)&r->erased_image, (void **)&r->cam_mask,
                     (void **)&r->head_mask,    (void **)&r->ecs_mask,     (void **)&r->mask};
  static const int bytes[6] = {
      1, 3, sizeof(uint16_t), sizeof(uint16_t), sizeof(uint16_t), sizeof(uint16_t)};
  bool ok = (!r->cams || cams) && (!r->erased_cams || ecams);
  for (int i = 0; i < 6 && ok; i++)
    if (*field[i]) ok = (u8[i] = nearest(*field[i], bytes[i], &src, h, w)) != NULL;
  if (!ok) {
    free(cams);
    free(ecams);
    for (int i = 0; i < 6; i++)
      free(u8[i]);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  free(r->cams);
  free(r->erased_cams);
  r->cams = cams;
  r->erased_cams = ecams;
  for (int i = 0; i < 6; i++)
    if (*field[i]) {
      free(*field[i]);
      *field[i] = u8[i];
    }
  r->w = w;
  r->h = h;
  if (r->ecs_mask) {
    r->phi = 0;
    for (size_t p = 0; p < (size_t)w * h; p++)
      r->phi += r->ecs_mask[p] != ECS_MASK_IGNORE;
  }
  return ECS_OK;
}
