/* dnnl-phase.c - space-to-batch and back for dilated convolutions, in blocked layouts.
 *
 * A stride-1 convolution with dilation d and padding p, both multiples of f (per dim), only
 * ever combines pixels of the same phase (h mod fh, w mod fw). Split into its fh*fw phase
 * sub-images, batched, it becomes a convolution of dilation d/f and padding p/f (dense when
 * f = d) that oneDNN runs on its direct jit kernel; outputs are interleaved back. Sub-images
 * are ceil(H/fh) x ceil(W/fw): the phases that are one row or column short are padded with
 * zeros, which the convolution reads exactly as it would read its own zero padding, and the
 * outputs computed there are dropped. Here dh, dw name the split factors.
 *
 * Both sides are [N][C/B][H][W][B] (nchw is B = 1); sub-image (n, ph, pw) is batch entry
 * (n * dh + ph) * dw + pw.
 *
 * The converse for a batch of small maps (7x7 at the end of a ResNet): the jit kernel works
 * along rows, and a 7-wide row keeps it far from its peak. Images side by side in wide maps,
 * `slot` columns apart with zero columns between them wide enough to stand for each image's
 * own padding, make one stride-1 convolution whose outputs at image i's columns are image i's;
 * the outputs over the gaps are dropped. Pure memory movement, no oneDNN call. */
#include "dnnl-impl.h"

#include <string.h>

static void copy_px(float *dst, const float *src, int64_t b) {
  if (b == 8) {
    for (int k = 0; k < 8; k++)
      dst[k] = src[k];
  } else if (b == 16) {
    for (int k = 0; k < 16; k++)
      dst[k] = src[k];
  } else {
    for (int64_t k = 0; k < b; k++)
      dst[k] = src[k];
  }
}

/* Walks every row of the wide maps of a batch of narrow maps side by side: split (pack) copies
 * each image's row into its slot (zero-filling the gaps and the slots past the last image);
 * merge copies the slots back. */
static void walk_rows(const dn_phase *g, const float *src, float *dst, int split, int n_threads) {
  const int64_t b = g->block, rows = (g->n + g->per - 1) / g->per * g->cb * g->h;
  (void)n_threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads)
#endif
  for (int64_t r = 0; r < rows; r++) {
    int64_t h = r % g->h, cb = r / g->h % g->cb, grp = r / (g->h * g->cb);
    float *wrow = (split ? dst : (float *)src) + r * g->ws * b;
    for (int64_t k = 0; k < g->per; k++) {
      int64_t i = grp * g->per + k, cols = (k + 1 < g->per ? g->slot : g->w);
      float *slot = wrow + k * g->slot * b;
      if (i >= g->n) {
        if (!split) break;
        memset(slot, 0, sizeof(float) * (size_t)(cols * b));
        continue;
      }
      float *img = (split ? (float *)src : dst) + ((i * g->cb + cb) * g->h + h) * g->w * b;
      if (!split) {
        memcpy(img, slot, sizeof(float) * (size_t)(g->w * b));
        continue;
      }
      memcpy(slot, img, sizeof(float) * (size_t)(g->w * b));
      if (cols > g->w) memset(slot + g->w * b, 0, sizeof(float) * (size_t)((cols - g->w) * b));
    }
  }
}

/* Walks every phase plane: split copies the full map's pixels of phase (ph, pw) into the plane
 * (zero-filling the rows and columns a short phase lacks); merge copies them back. */
static void walk_planes(const dn_phase *g, const float *src, float *dst, int split, int n_threads) {
  const int64_t b = g->block, nplanes = g->n * g->dh * g->dw * g->cb;
  (void)n_threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads)
#endif
  for (int64_t pl = 0; pl < nplanes; pl++) {
    int64_t cb = pl % g->cb, sub = pl / g->cb;
    int64_t pw = sub % g->dw, ph = sub / g->dw % g->dh, n = sub / (g->dw * g->dh);
    int64_t full = (n * g->cb + cb) * g->h * g->w * b, plane = pl * g->hs * g->ws * b;
    int64_t wvalid = (g->w - pw + g->dw - 1) / g->dw;
    for (int64_t i = 0; i < g->hs; i++) {
      int64_t h = ph + i * g->dh;
      float *prow = (split ? dst : (float *)src) + plane + i * g->ws * b;
      if (h >= g->h) {
        if (!split) break;
        memset(prow, 0, sizeof(float) * (size_t)(g->ws * b));
        continue;
      }
      int64_t frow = full + (h * g->w + pw) * b;
      for (int64_t j = 0; j < wvalid; j++) {
        if (split)
          copy_px(prow + j * b, src + frow + j * g->dw * b, b);
        else
          copy_px(dst + frow + j * g->dw * b, prow + j * b, b);
      }
      if (split && wvalid < g->ws)
        memset(prow + wvalid * b, 0, sizeof(float) * (size_t)((g->ws - wvalid) * b));
    }
  }
}

void dn_phase_split(const dn_phase *g, const float *src, float *dst, int n_threads) {
  if (g->slot)
    walk_rows(g, src, dst, 1, n_threads);
  else
    walk_planes(g, src, dst, 1, n_threads);
}

void dn_phase_merge(const dn_phase *g, const float *src, float *dst, int n_threads) {
  if (g->slot)
    walk_rows(g, src, dst, 0, n_threads);
  else
    walk_planes(g, src, dst, 0, n_threads);
}
