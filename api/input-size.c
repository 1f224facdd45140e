/* input-size.c - the input-size policy (input-size.h). */
#include "input-size.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool api_input_size(int w, int h, int *run_w, int *run_h) {
  *run_w = w;
  *run_h = h;
  if (w <= 0 || h <= 0 || (w >= ECS_MODEL_MIN_SIDE && h >= ECS_MODEL_MIN_SIDE)) return false;
  double s = (double)ECS_MODEL_MIN_SIDE / (w < h ? w : h);
  double rw = ceil(w * s - 1e-9), rh = ceil(h * s - 1e-9);
  /* beyond INT_MAX the pixel limit refuses it anyway; keep the arithmetic in range */
  *run_w = rw > 1e9 ? 1000000000 : rw < ECS_MODEL_MIN_SIDE ? ECS_MODEL_MIN_SIDE : (int)rw;
  *run_h = rh > 1e9 ? 1000000000 : rh < ECS_MODEL_MIN_SIDE ? ECS_MODEL_MIN_SIDE : (int)rh;
  return true;
}

/* The source coordinate of output index i with half-pixel centres. */
static double src_coord(int i, int out_n, int in_n) {
  double x = ((double)i + 0.5) * in_n / out_n - 0.5;
  return x < 0 ? 0 : x > in_n - 1 ? in_n - 1 : x;
}

static float *bilinear(const float *in, int planes, int ih, int iw, int oh, int ow) {
  float *out = malloc(sizeof(float) * (size_t)planes * (size_t)oh * (size_t)ow);
  if (!out) return NULL;
  for (int p = 0; p < planes; p++) {
    const float *src = in + (size_t)p * ih * iw;
    float *dst = out + (size_t)p * oh * ow;
    for (int y = 0; y < oh; y++) {
      double sy = src_coord(y, oh, ih);
      int y0 = (int)sy, y1 = y0 + 1 < ih ? y0 + 1 : y0;
      double fy = sy - y0;
      for (int x = 0; x < ow; x++) {
        double sx = src_coord(x, ow, iw);
        int x0 = (int)sx, x1 = x0 + 1 < iw ? x0 + 1 : x0;
        double fx = sx - x0;
        double top = src[(size_t)y0 * iw + x0] * (1 - fx) + src[(size_t)y0 * iw + x1] * fx;
        double bot = src[(size_t)y1 * iw + x0] * (1 - fx) + src[(size_t)y1 * iw + x1] * fx;
        dst[(size_t)y * ow + x] = (float)(top * (1 - fy) + bot * fy);
      }
    }
  }
  return out;
}

/* ch interleaved bytes per pixel, sampled at the nearest source pixel of each output centre */
static uint8_t *nearest(const uint8_t *in, int ch, int ih, int iw, int oh, int ow) {
  uint8_t *out = malloc((size_t)ch * (size_t)oh * (size_t)ow);
  if (!out) return NULL;
  for (int y = 0; y < oh; y++) {
    int sy = (int)(((double)y + 0.5) * ih / oh);
    if (sy >= ih) sy = ih - 1;
    for (int x = 0; x < ow; x++) {
      int sx = (int)(((double)x + 0.5) * iw / ow);
      if (sx >= iw) sx = iw - 1;
      memcpy(out + ((size_t)y * ow + x) * ch, in + ((size_t)sy * iw + sx) * ch, (size_t)ch);
    }
  }
  return out;
}

ecs_status api_cam_result_resize(ecs_cam_result *r, int w, int h, ecs_err *err) {
  if (r->w == w && r->h == h) return ECS_OK;
  int ih = r->h, iw = r->w, n = r->n_labels;
  /* everything is made first, so a failure leaves r whole */
  float *cams = r->cams ? bilinear(r->cams, n, ih, iw, h, w) : NULL;
  float *ecams = r->erased_cams ? bilinear(r->erased_cams, n, ih, iw, h, w) : NULL;
  /* the byte buffers (region 0/1, RGB) and the 16-bit masks, each as its bytes per pixel */
  uint8_t *u8[6] = {0};
  void **field[6] = {(void **)&r->erase_region, (void **)&r->erased_image, (void **)&r->cam_mask,
                     (void **)&r->head_mask,    (void **)&r->ecs_mask,     (void **)&r->mask};
  static const int bytes[6] = {
      1, 3, sizeof(uint16_t), sizeof(uint16_t), sizeof(uint16_t), sizeof(uint16_t)};
  bool ok = (!r->cams || cams) && (!r->erased_cams || ecams);
  for (int i = 0; i < 6 && ok; i++)
    if (*field[i]) ok = (u8[i] = nearest(*field[i], bytes[i], ih, iw, h, w)) != NULL;
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
