/* resize.cu - bilinear resize with PyTorch's align_corners=False source coordinates
 * (src = (dst + 0.5) * in/out - 0.5, clamped at 0), forward and backward. The backward
 * scatters each output gradient to its four taps with atomicAdd. */
#include "cuk-util.cuh"

struct taps {
  int64_t i0, i1;
  float l0, l1;
};

__device__ static inline taps src_taps(int64_t dst, int64_t in, int64_t out) {
  float scale = (float)in / (float)out;
  float src = scale * ((float)dst + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  taps t;
  t.i0 = (int64_t)src;
  if (t.i0 > in - 1) t.i0 = in - 1;
  t.i1 = t.i0 < in - 1 ? t.i0 + 1 : t.i0;
  t.l1 = src - (float)t.i0;
  t.l0 = 1.0f - t.l1;
  return t;
}

__global__ void k_resize_fwd(const float *x, float *y, int64_t nc, int64_t ih, int64_t iw,
                             int64_t oh, int64_t ow) {
  CUK_LOOP(i, nc * oh * ow) {
    int64_t ox = i % ow, oy = (i / ow) % oh, pl = i / (ow * oh);
    taps ty = src_taps(oy, ih, oh), tx = src_taps(ox, iw, ow);
    const float *xp = x + pl * ih * iw;
    y[i] = ty.l0 * (tx.l0 * xp[ty.i0 * iw + tx.i0] + tx.l1 * xp[ty.i0 * iw + tx.i1]) +
           ty.l1 * (tx.l0 * xp[ty.i1 * iw + tx.i0] + tx.l1 * xp[ty.i1 * iw + tx.i1]);
  }
}

__global__ void k_resize_bwd(const float *dy, float *dx, int64_t nc, int64_t ih, int64_t iw,
                             int64_t oh, int64_t ow) {
  CUK_LOOP(i, nc * oh * ow) {
    int64_t ox = i % ow, oy = (i / ow) % oh, pl = i / (ow * oh);
    taps ty = src_taps(oy, ih, oh), tx = src_taps(ox, iw, ow);
    float *dp = dx + pl * ih * iw, g = dy[i];
    atomicAdd(dp + ty.i0 * iw + tx.i0, ty.l0 * tx.l0 * g);
    atomicAdd(dp + ty.i0 * iw + tx.i1, ty.l0 * tx.l1 * g);
    atomicAdd(dp + ty.i1 * iw + tx.i0, ty.l1 * tx.l0 * g);
    atomicAdd(dp + ty.i1 * iw + tx.i1, ty.l1 * tx.l1 * g);
  }
}

extern "C" {

cudaError_t ecs_cuk_resize_fwd(cudaStream_t s, const float *x, float *y, int64_t nc, int64_t ih,
                               int64_t iw, int64_t oh, int64_t ow) {
  k_resize_fwd<<<cuk_blocks(nc * oh * ow), CUK_THREADS, 0, s>>>(x, y, nc, ih, iw, oh, ow);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_resize_bwd(cudaStream_t s, const float *dy, float *dx, int64_t nc, int64_t ih,
                               int64_t iw, int64_t oh, int64_t ow) {
  k_resize_bwd<<<cuk_blocks(nc * oh * ow), CUK_THREADS, 0, s>>>(dy, dx, nc, ih, iw, oh, ow);
  return cudaGetLastError();
}

} /* extern "C" */
