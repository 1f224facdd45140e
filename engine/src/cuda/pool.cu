/* pool.cu - max and average pooling over H, W with PyTorch's window rules (ceil_mode windows
 * clipped to the padded input, count_include_pad divisors), and their backward passes.
 *
 * Max pooling takes the first maximum in scan order (NaN wins), as PyTorch does. The forward
 * may store each output's argmax as an offset inside its (n, c) plane; the backward uses it
 * when given and otherwise finds the same argmax again from x. Backward scatters with
 * atomicAdd, so overlapping windows need no second pass. */
#include "cuk-util.cuh"

struct win {
  int64_t h0, h1, w0, w1; /* clipped to the input */
  float div;              /* average pooling's divisor */
};

__device__ static inline win window(const ecs_cuk_pool p, int64_t oh, int64_t ow) {
  win r;
  int64_t hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw;
  int64_t he = min(hs + p.kh, p.h + p.ph), we = min(ws + p.kw, p.w + p.pw);
  int64_t pool_size = (he - hs) * (we - ws);
  r.h0 = max(hs, (int64_t)0), r.w0 = max(ws, (int64_t)0);
  r.h1 = min(he, p.h), r.w1 = min(we, p.w);
  r.div = (float)(p.count_include_pad ? pool_size : (r.h1 - r.h0) * (r.w1 - r.w0));
  return r;
}

__device__ static inline int32_t argmax_in(const ecs_cuk_pool p, const float *plane, win r) {
  int32_t best = (int32_t)(r.h0 * p.w + r.w0);
  float m = -INFINITY;
  for (int64_t h = r.h0; h < r.h1; h++)
    for (int64_t w = r.w0; w < r.w1; w++) {
      float v = plane[h * p.w + w];
      if (v > m || isnan(v)) {
        m = v;
        best = (int32_t)(h * p.w + w);
        if (isnan(v)) return best;
      }
    }
  return best;
}

__global__ void k_pool_fwd(const ecs_cuk_pool p, const float *x, float *y, int32_t *argmax) {
  int64_t total = p.nc * p.oh * p.ow;
  CUK_LOOP(i, total) {
    int64_t ow = i % p.ow, oh = (i / p.ow) % p.oh, plane = i / (p.ow * p.oh);
    const float *xp = x + plane * p.h * p.w;
    win r = window(p, oh, ow);
    if (p.is_max) {
      int32_t a = argmax_in(p, xp, r);
      y[i] = (r.h1 > r.h0 && r.w1 > r.w0) ? xp[a] : -INFINITY;
      if (argmax) argmax[i] = a;
    } else {
      float s = 0;
      for (int64_t h = r.h0; h < r.h1; h++)
        for (int64_t w = r.w0; w < r.w1; w++)
          s += xp[h * p.w + w];
      y[i] = s / r.div;
    }
  }
}

__global__ void k_pool_bwd(const ecs_cuk_pool p, const float *x, const float *dy,
                           const int32_t *argmax, float *dx) {
  int64_t total = p.nc * p.oh * p.ow;
  CUK_LOOP(i, total) {
    int64_t ow = i % p.ow, oh = (i / p.ow) % p.oh, plane = i / (p.ow * p.oh);
    float *dxp = dx + plane * p.h * p.w;
    win r = window(p, oh, ow);
    if (r.h1 <= r.h0 || r.w1 <= r.w0) continue;
    if (p.is_max) {
      int32_t a = argmax ? argmax[i] : argmax_in(p, x + plane * p.h * p.w, r);
      atomicAdd(dxp + a, dy[i]);
    } else {
      float g = dy[i] / r.div;
      for (int64_t h = r.h0; h < r.h1; h++)
        for (int64_t w = r.w0; w < r.w1; w++)
          atomicAdd(dxp + h * p.w + w, g);
    }
  }
}

extern "C" {

cudaError_t ecs_cuk_pool_fwd(cudaStream_t s, const ecs_cuk_pool *p, const float *x, float *y,
                             int32_t *argmax) {
  k_pool_fwd<<<cuk_blocks(p->nc * p->oh * p->ow), CUK_THREADS, 0, s>>>(*p, x, y, argmax);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_pool_bwd(cudaStream_t s, const ecs_cuk_pool *p, const float *x, const float *dy,
                             const int32_t *argmax, float *dx) {
  k_pool_bwd<<<cuk_blocks(p->nc * p->oh * p->ow), CUK_THREADS, 0, s>>>(*p, x, dy, argmax, dx);
  return cudaGetLastError();
}

} /* extern "C" */
