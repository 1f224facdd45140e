/* image-resample.c - antialiased resampling (ecs/image.h, ecs_image_resample).
 *
 * Separable: each output sample is a weighted mean of the source samples under a triangle
 * filter centred on it, whose support is one source pixel when enlarging and one output pixel
 * (scale source pixels) when shrinking, so every source pixel counts when an image is made
 * smaller (Pillow's BILINEAR resize does the same). Weights are normalised over the taps
 * inside the image, so edges are not darkened. Rows first into a float buffer, then columns. */
#include <math.h>
#include <stdlib.h>

#include "ecs/image.h"

typedef struct taps {
  int *first, *count; /* per output sample: the first source index and how many */
  float *w;           /* count weights per output sample, at stride max_taps */
  int max_taps;
} taps;

static void taps_free(taps *t) {
  free(t->first);
  free(t->count);
  free(t->w);
}

static int taps_make(taps *t, int in_n, int out_n) {
  double scale = (double)in_n / out_n, fs = scale > 1 ? scale : 1, support = fs;
  t->max_taps = (int)ceil(support) * 2 + 1;
  t->first = malloc(sizeof(int) * (size_t)out_n);
  t->count = malloc(sizeof(int) * (size_t)out_n);
  t->w = malloc(sizeof(float) * (size_t)out_n * (size_t)t->max_taps);
  if (!t->first || !t->count || !t->w) return 0;
  for (int o = 0; o < out_n; o++) {
    double centre = (o + 0.5) * scale;
    int lo = (int)floor(centre - support), hi = (int)ceil(centre + support);
    if (lo < 0) lo = 0;
    if (hi > in_n) hi = in_n;
    if (hi - lo > t->max_taps) hi = lo + t->max_taps;
    float *w = t->w + (size_t)o * t->max_taps;
    double sum = 0;
    int n = 0;
    for (int i = lo; i < hi; i++) {
      double d = fabs((i + 0.5 - centre) / fs);
      double v = d < 1 ? 1 - d : 0;
      w[n++] = (float)v;
      sum += v;
    }
    if (sum <= 0) { /* a sample between taps (cannot happen with support >= 1): nearest */
      int i = (int)centre < in_n ? (int)centre : in_n - 1;
      lo = i, n = 1, w[0] = 1, sum = 1;
    }
    for (int k = 0; k < n; k++)
      w[k] = (float)(w[k] / sum);
    t->first[o] = lo;
    t->count[o] = n;
  }
  return 1;
}

ecs_image *ecs_image_resample(const ecs_image *src, int width, int height, ecs_err *err) {
  if (!src) {
    ecs_err_set(err, ECS_ERR_INVALID, "image: resample of NULL");
    return NULL;
  }
  if (width < 1 || height < 1) {
    ecs_err_set(err, ECS_ERR_INVALID, "image: resample to %dx%d", width, height);
    return NULL;
  }
  int c = src->channels, sw = src->width, sh = src->height;
  ecs_image *d = ecs_image_new(width, height, c, err);
  if (!d) return NULL;
  taps tx = {0}, ty = {0};
  float *mid = malloc(sizeof(float) * (size_t)sh * (size_t)width * (size_t)c);
  if (!mid || !taps_make(&tx, sw, width) || !taps_make(&ty, sh, height)) {
    free(mid);
    taps_free(&tx);
    taps_free(&ty);
    ecs_image_free(d);
    ecs_err_set(err, ECS_ERR_NOMEM, "image: resample: out of memory");
    return NULL;
  }
  for (int y = 0; y < sh; y++) {
    const uint8_t *row = src->data + (size_t)y * sw * c;
    float *o = mid + (size_t)y * width * c;
    for (int x = 0; x < width; x++) {
      const float *w = tx.w + (size_t)x * tx.max_taps;
      const uint8_t *s = row + (size_t)tx.first[x] * c;
      for (int k = 0; k < c; k++) {
        float acc = 0;
        for (int i = 0; i < tx.count[x]; i++)
          acc += w[i] * s[(size_t)i * c + k];
        o[(size_t)x * c + k] = acc;
      }
    }
  }
  size_t stride = (size_t)width * c;
  for (int y = 0; y < height; y++) {
    const float *w = ty.w + (size_t)y * ty.max_taps;
    const float *s = mid + (size_t)ty.first[y] * stride;
    uint8_t *o = d->data + (size_t)y * stride;
    for (size_t j = 0; j < stride; j++) {
      float acc = 0;
      for (int i = 0; i < ty.count[y]; i++)
        acc += w[i] * s[(size_t)i * stride + j];
      o[j] = (uint8_t)fminf(255.0f, fmaxf(0.0f, acc + 0.5f));
    }
  }
  free(mid);
  taps_free(&tx);
  taps_free(&ty);
  return d;
}
