/* refine.c - edge-aware refinement of CAMs (ecs_infer_opts.refine), after PAMR's
 * pixel-adaptive mask refinement (Araslanov and Roth, CVPR 2020), in plain C.
 *
 * Each pixel's map value becomes the average of its neighbours' values, weighted by how alike
 * their colours are: a softmax over the 48 neighbours (the 8 of a 3x3 window at dilations 1, 2,
 * 4, 8, 12 and 24) of -|I_i - I_j| / (0.1 * sigma_i), the colour distance averaged over the
 * channels, sigma_i the colour's standard deviation over the pixel's window; replicated
 * borders. Ten such steps spread each map along regions of like colour and stop at edges.
 * The refinement works at a side of at most REFINE_SIDE pixels (the affinities take 48 floats
 * a pixel), the maps resized there and back, then max-min normalised again. */
#include "model-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REFINE_SIDE  320
#define REFINE_ITERS 10
#define N_DIL        6
#define N_NB         (8 * N_DIL)

static const int k_dil[N_DIL] = {1, 2, 4, 8, 12, 24};

static int clampi(int v, int lo, int hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/* The neighbours' offsets, as (dy, dx). */
static void offsets(int dy[N_NB], int dx[N_NB]) {
  int k = 0;
  for (int d = 0; d < N_DIL; d++)
    for (int y = -1; y <= 1; y++)
      for (int x = -1; x <= 1; x++)
        if (y || x) {
          dy[k] = y * k_dil[d];
          dx[k++] = x * k_dil[d];
        }
}

/* The softmax affinities (h*w, N_NB) of image im (3, h, w) in 0..255. */
static void affinities(const float *im, int h, int w, float *aff) {
  int dy[N_NB], dx[N_NB];
  offsets(dy, dx);
  size_t hw = (size_t)h * w;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      float sd[3], *a = aff + i * N_NB;
      for (int c = 0; c < 3; c++) { /* the standard deviation over the window and the pixel */
        double s = im[c * hw + i], s2 = s * s;
        for (int k = 0; k < N_NB; k++) {
          double v =
              im[c * hw + (size_t)clampi(y + dy[k], 0, h - 1) * w + clampi(x + dx[k], 0, w - 1)];
          s += v;
          s2 += v * v;
        }
        double m = s / (N_NB + 1), var = s2 / (N_NB + 1) - m * m;
        sd[c] = (float)sqrt(var > 0 ? var : 0);
      }
      float mx = -INFINITY;
      for (int k = 0; k < N_NB; k++) {
        size_t j = (size_t)clampi(y + dy[k], 0, h - 1) * w + clampi(x + dx[k], 0, w - 1);
        float v = 0;
        for (int c = 0; c < 3; c++)
          v -= fabsf(im[c * hw + i] - im[c * hw + j]) / (1e-8f + 0.1f * sd[c]);
        a[k] = v / 3;
        if (a[k] > mx) mx = a[k];
      }
      float z = 0;
      for (int k = 0; k < N_NB; k++)
        z += a[k] = expf(a[k] - mx);
      for (int k = 0; k < N_NB; k++)
        a[k] /= z;
    }
}

/* REFINE_ITERS steps of map (h, w) under the affinities; tmp holds h*w floats. */
static void propagate(const float *aff, int h, int w, float *map, float *tmp) {
  int dy[N_NB], dx[N_NB];
  offsets(dy, dx);
  for (int it = 0; it < REFINE_ITERS; it++) {
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        const float *a = aff + ((size_t)y * w + x) * N_NB;
        float v = 0;
        for (int k = 0; k < N_NB; k++)
          v += a[k] * map[(size_t)clampi(y + dy[k], 0, h - 1) * w + clampi(x + dx[k], 0, w - 1)];
        tmp[(size_t)y * w + x] = v;
      }
    memcpy(map, tmp, sizeof(float) * (size_t)h * w);
  }
}

ecs_status ecs_h_refine(const uint8_t *rgb, int h, int w, float *maps, int n, float eps,
                        ecs_err *err) {
  double s = (h > w ? h : w) > REFINE_SIDE ? (double)REFINE_SIDE / (h > w ? h : w) : 1.0;
  int rh = (int)lround(h * s), rw = (int)lround(w * s);
  rh = rh < 1 ? 1 : rh;
  rw = rw < 1 ? 1 : rw;
  size_t hw = (size_t)h * w, rhw = (size_t)rh * rw;
  float *im = malloc(sizeof(float) * 3 * hw), *ims = malloc(sizeof(float) * 3 * rhw);
  float *aff = malloc(sizeof(float) * N_NB * rhw), *m = malloc(sizeof(float) * rhw);
  float *tmp = malloc(sizeof(float) * rhw);
  ecs_status st = ECS_OK;
  if (!im || !ims || !aff || !m || !tmp) {
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int c = 0; c < 3; c++)
    for (size_t p = 0; p < hw; p++)
      im[c * hw + p] = rgb[p * 3 + c];
  ecs_h_resize(im, 3, h, w, ims, rh, rw);
  affinities(ims, rh, rw, aff);
  for (int i = 0; i < n; i++) {
    float *map = maps + (size_t)i * hw;
    ecs_h_resize(map, 1, h, w, m, rh, rw);
    propagate(aff, rh, rw, m, tmp);
    ecs_h_resize(m, 1, rh, rw, map, h, w);
    ecs_h_maxmin_norm(map, (int64_t)hw, eps);
  }
done:
  free(im);
  free(ims);
  free(aff);
  free(m);
  free(tmp);
  return st;
}
