/* host.c - the host-side pieces of ECS-Net: bilinear resize, max-min normalisation, blur.
 *
 * Written to match PyTorch exactly where the tests compare against it: the resize is
 * F.interpolate(mode="bilinear", align_corners=False) and the blur is a separable Gaussian
 * whose weights are renormalised over the pixels inside the image at the borders. */
#include "model-impl.h"

#include <math.h>
#include <stdlib.h>

static void coords(int out, int in, int *i0, int *i1, float *l1, int o) {
  float scale = (float)in / (float)out;
  float src = ((float)o + 0.5f) * scale - 0.5f;
  if (src < 0) src = 0;
  int a = (int)src;
  if (a > in - 1) a = in - 1;
  *i0 = a;
  *i1 = a < in - 1 ? a + 1 : a;
  *l1 = src - (float)a;
}

void ecs_h_resize(const float *in, int c, int h, int w, float *out, int oh, int ow) {
  int *x0 = malloc(sizeof(int) * 2 * (size_t)ow);
  float *lx = malloc(sizeof(float) * (size_t)ow);
  if (!x0 || !lx) {
    free(x0);
    free(lx);
    return;
  }
  for (int x = 0; x < ow; x++)
    coords(ow, w, &x0[2 * x], &x0[2 * x + 1], &lx[x], x);
  for (int ch = 0; ch < c; ch++) {
    const float *p = in + (size_t)ch * h * w;
    float *q = out + (size_t)ch * oh * ow;
    for (int y = 0; y < oh; y++) {
      int y0, y1;
      float ly;
      coords(oh, h, &y0, &y1, &ly, y);
      const float *r0 = p + (size_t)y0 * w, *r1 = p + (size_t)y1 * w;
      for (int x = 0; x < ow; x++) {
        int a = x0[2 * x], b = x0[2 * x + 1];
        float l = lx[x];
        float top = (1 - l) * r0[a] + l * r0[b], bot = (1 - l) * r1[a] + l * r1[b];
        q[(size_t)y * ow + x] = (1 - ly) * top + ly * bot;
      }
    }
  }
  free(x0);
  free(lx);
}

void ecs_h_maxmin_norm(float *x, int64_t n, float eps) {
  float mn = INFINITY, mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i] > 0 ? x[i] : 0;
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  for (int64_t i = 0; i < n; i++) {
    float v = x[i] > 0 ? x[i] : 0;
    float a = v - mn - eps;
    x[i] = (a > 0 ? a : 0) / (mx - mn + eps);
  }
}

void ecs_h_blur_params(const ecs_hparams *hp, int h, int w, float *sigma, int *ksize) {
  int s = h < w ? h : w;
  *sigma = hp->sigma_factor * (float)s;
  if (*sigma < 0.5f) *sigma = 0.5f;
  int k = (int)floorf(4.0f * *sigma) + 1;
  *ksize = k | 1; /* odd, so that the kernel has a centre */
}

static void blur_1d(const float *in, float *out, int n, int stride, const float *k, int r) {
  for (int i = 0; i < n; i++) {
    double s = 0, ws = 0;
    int lo = i - r < 0 ? -i : -r, hi = i + r > n - 1 ? n - 1 - i : r;
    for (int j = lo; j <= hi; j++) {
      s += (double)k[j + r] * in[(size_t)(i + j) * stride];
      ws += k[j + r];
    }
    out[(size_t)i * stride] = (float)(s / ws);
  }
}

void ecs_h_blur(const float *in, int c, int h, int w, float sigma, int ksize, float *out) {
  int r = ksize / 2;
  float *k = malloc(sizeof(float) * (size_t)(2 * r + 1));
  float *tmp = malloc(sizeof(float) * (size_t)h * w);
  if (!k || !tmp) {
    free(k);
    free(tmp);
    return;
  }
  for (int j = -r; j <= r; j++)
    k[j + r] = expf(-(float)(j * j) / (2 * sigma * sigma));
  for (int ch = 0; ch < c; ch++) {
    const float *p = in + (size_t)ch * h * w;
    float *q = out + (size_t)ch * h * w;
    for (int y = 0; y < h; y++)
      blur_1d(p + (size_t)y * w, tmp + (size_t)y * w, w, 1, k, r);
    for (int x = 0; x < w; x++)
      blur_1d(tmp + x, q + x, h, w, k, r);
  }
  free(k);
  free(tmp);
}

int ecs_h_scaled(int n, float beta) {
  int s = (int)floorf((float)n * beta);
  return s < 1 ? 1 : s;
}

int ecs_h_grid(const ecs_model *m, int n) {
  for (int s = ecs_model_output_stride(m); s > 1; s /= 2)
    n = (n + 1) / 2;
  return n;
}
