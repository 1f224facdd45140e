/* dnnl-phase.c - space-to-batch and back for dilated convolutions, in blocked layouts.
 *
 * A stride-1 convolution with dilation (dh, dw) and padding a multiple of the dilation only
 * ever combines pixels of the same phase (h mod dh, w mod dw). Split into its dh*dw phase
 * sub-images, batched, it becomes an ordinary dense convolution (padding p/d) that oneDNN runs
 * on its direct jit kernel; outputs are interleaved back. Sub-images are ceil(H/dh) x
 * ceil(W/dw): the phases that are one row or column short are padded with zeros, which the
 * convolution reads exactly as it would read its own zero padding, and the outputs computed
 * there are dropped.
 *
 * Both sides are [N][C/B][H][W][B] (nchw is B = 1); sub-image (n, ph, pw) is batch entry
 * (n * dh + ph) * dw + pw. Pure memory movement, no oneDNN call. */
#include "dnnl-impl.h"

#include <string.h>

static void copy_px(float *dst, const float *src, int64_t b) {
  if (b == 8) {
    for (int k = 0; k < 8; k++) dst[k] = src[k];
  } else if (b == 16) {
    for (int k = 0; k < 16; k++) dst[k] = src[k];
  } else {
    for (int64_t k = 0; k < b; k++) dst[k] = src[k];
  }
}

void dn_phase_split(const dn_phase *g, const float *src, float *dst, int n_threads) {
  const int64_t b = g->block, nplanes = g->n * g->dh * g->dw * g->cb;
  (void)n_threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads)
#endif
  for (int64_t pl = 0; pl < nplanes; pl++) {
    int64_t cb = pl % g->cb, sub = pl / g->cb;
    int64_t pw = sub % g->dw, ph = sub / g->dw % g->dh, n = sub / (g->dw * g->dh);
    const float *sp = src + (n * g->cb + cb) * g->h * g->w * b;
    float *dp = dst + pl * g->hs * g->ws * b;
    int64_t wvalid = (g->w - pw + g->dw - 1) / g->dw;
    for (int64_t i = 0; i < g->hs; i++) {
      int64_t h = ph + i * g->dh;
      float *drow = dp + i * g->ws * b;
      if (h >= g->h) {
        memset(drow, 0, sizeof(float) * (size_t)(g->ws * b));
        continue;
      }
      const float *srow = sp + (h * g->w + pw) * b;
      for (int64_t j = 0; j < wvalid; j++) copy_px(drow + j * b, srow + j * g->dw * b, b);
      if (wvalid < g->ws) memset(drow + wvalid * b, 0, sizeof(float) * (size_t)((g->ws - wvalid) * b));
    }
  }
}

void dn_phase_merge(const dn_phase *g, const float *src, float *dst, int n_threads) {
  const int64_t b = g->block, nplanes = g->n * g->dh * g->dw * g->cb;
  (void)n_threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads)
#endif
  for (int64_t pl = 0; pl < nplanes; pl++) {
    int64_t cb = pl % g->cb, sub = pl / g->cb;
    int64_t pw = sub % g->dw, ph = sub / g->dw % g->dh, n = sub / (g->dw * g->dh);
    float *dp = dst + (n * g->cb + cb) * g->h * g->w * b;
    const float *sp = src + pl * g->hs * g->ws * b;
    int64_t wvalid = (g->w - pw + g->dw - 1) / g->dw;
    for (int64_t i = 0; i < g->hs; i++) {
      int64_t h = ph + i * g->dh;
      if (h >= g->h) break;
      float *drow = dp + (h * g->w + pw) * b;
      const float *srow = sp + i * g->ws * b;
      for (int64_t j = 0; j < wvalid; j++) copy_px(drow + j * g->dw * b, srow + j * b, b);
    }
  }
}
