/* cam.cu - CAM post-processing without gradients: max-min normalisation per (n, c) plane and
 * the Gaussian blur with renormalised borders.
 *
 * The blur is computed as one 2-D pass with the separable weights: the weight sum over the
 * in-image taps of a separable kernel factorises into (row sum) x (column sum), so dividing by
 * it equals the reference's two renormalised 1-D passes, without a temporary image. */
#include "cuk-util.cuh"

#define MM_THREADS 256

__global__ void k_maxmin(const float *x, float *y, int64_t hw, float eps) {
  const float *xp = x + blockIdx.x * hw;
  float *yp = y + blockIdx.x * hw;
  float mn = INFINITY, mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
    float v = fmaxf(xp[i], 0.0f);
    mn = fminf(mn, v), mx = fmaxf(mx, v);
  }
  cuk_block_minmax(&mn, &mx);
  for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
    float v = fmaxf(xp[i], 0.0f);
    yp[i] = fmaxf(0.0f, v - mn - eps) / (mx - mn + eps);
  }
}

/* ksize is at most ECS_CUK_BLUR_MAX (checked by the host), so the weights fit in shared memory */
__global__ void k_blur(const float *x, float *y, int64_t nc, int64_t h, int64_t w, float inv2s2,
                       int r) {
  __shared__ float wt[ECS_CUK_BLUR_MAX];
  for (int d = threadIdx.x; d <= 2 * r; d += blockDim.x)
    wt[d] = expf(-(float)((d - r) * (d - r)) * inv2s2);
  __syncthreads();
  CUK_LOOP(i, nc * h * w) {
    int64_t ox = i % w, oy = (i / w) % h;
    const float *xp = x + (i / (w * h)) * h * w;
    float nx = 0, ny = 0, acc = 0;
    for (int d = -r; d <= r; d++)
      if (ox + d >= 0 && ox + d < w) nx += wt[d + r];
    for (int dy = -r; dy <= r; dy++) {
      int64_t yy = oy + dy;
      if (yy < 0 || yy >= h) continue;
      float row = 0;
      for (int dx = -r; dx <= r; dx++) {
        int64_t xx = ox + dx;
        if (xx >= 0 && xx < w) row += wt[dx + r] * xp[yy * w + xx];
      }
      acc += wt[dy + r] * row;
      ny += wt[dy + r];
    }
    y[i] = acc / (nx * ny);
  }
}

extern "C" {

cudaError_t ecs_cuk_maxmin_norm(cudaStream_t s, const float *x, float *y, int64_t nc, int64_t hw,
                                float eps) {
  if (nc > 0) k_maxmin<<<(unsigned)nc, MM_THREADS, 0, s>>>(x, y, hw, eps);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_gauss_blur(cudaStream_t s, const float *x, float *y, int64_t nc, int64_t h,
                               int64_t w, float sigma, int ksize) {
  k_blur<<<cuk_blocks(nc * h * w), CUK_THREADS, 0, s>>>(x, y, nc, h, w,
                                                        1.0f / (2.0f * sigma * sigma), ksize / 2);
  return cudaGetLastError();
}

} /* extern "C" */
