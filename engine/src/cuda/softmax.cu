/* softmax.cu - softmax and log-softmax over C with an optional (N, C) class mask, their
 * backward passes, and the two losses built on them (multilabel soft margin, masked
 * cross-entropy).
 *
 * One thread per pixel walks the C channels (C is a class count, tens at most), so the loads
 * of a warp are consecutive pixels of one channel plane. Losses reduce in double: per-thread
 * sums, a block sum, one atomicAdd per block into acc (sum, count, bad labels), then a
 * one-thread kernel divides. */
#include "cuk-util.cuh"

__device__ static inline int masked(const float *mask, int64_t n, int64_t c, int64_t ch) {
  return mask && mask[n * c + ch] == 0.0f;
}

/* log-sum-exp over the unmasked channels of one pixel */
__device__ static inline float lse_pixel(const float *xp, const float *mask, int64_t n, int64_t c,
                                         int64_t hw) {
  float m = -INFINITY;
  for (int64_t k = 0; k < c; k++)
    if (!masked(mask, n, c, k)) m = fmaxf(m, xp[k * hw]);
  float s = 0;
  for (int64_t k = 0; k < c; k++)
    if (!masked(mask, n, c, k)) s += expf(xp[k * hw] - m);
  return m + logf(s);
}

__global__ void k_softmax(const float *x, const float *mask, float *y, int64_t n, int64_t c,
                          int64_t hw, int log) {
  CUK_LOOP(p, n * hw) {
    int64_t b = p / hw, off = b * c * hw + p % hw;
    float lse = lse_pixel(x + off, mask, b, c, hw);
    for (int64_t k = 0; k < c; k++) {
      int64_t i = off + k * hw;
      if (masked(mask, b, c, k))
        y[i] = log ? -INFINITY : 0.0f;
      else
        y[i] = log ? x[i] - lse : expf(x[i] - lse);
    }
  }
}

/* softmax: dx = y (dy - sum dy y); log-softmax: dx = dy - exp(y) sum dy, 0 where y = -inf.
 * Masked channels are constants of the forward, so they take no part in the sums. */
__global__ void k_softmax_bwd(const float *y, const float *dy, float *dx, int64_t n, int64_t c,
                              int64_t hw, int log) {
  CUK_LOOP(p, n * hw) {
    int64_t off = (p / hw) * c * hw + p % hw;
    float s = 0;
    for (int64_t k = 0; k < c; k++) {
      int64_t i = off + k * hw;
      if (log)
        s += y[i] == -INFINITY ? 0.0f : dy[i];
      else
        s += dy[i] * y[i];
    }
    for (int64_t k = 0; k < c; k++) {
      int64_t i = off + k * hw;
      if (log)
        dx[i] = y[i] == -INFINITY ? 0.0f : dy[i] - expf(y[i]) * s;
      else
        dx[i] = y[i] * (dy[i] - s);
    }
  }
}

__device__ static inline float softplus(float z) {
  return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)));
}

__global__ void k_msm(const float *x, const float *t, int64_t n, double *acc) {
  double s = 0;
  CUK_LOOP(i, n) s += t[i] * softplus(-x[i]) + (1.0f - t[i]) * softplus(x[i]);
  s = cuk_block_sum(s);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

__global__ void k_msm_bwd(const float *x, const float *t, const float *dloss, float *dx,
                          int64_t n) {
  float g = dloss[0] / (float)n;
  CUK_LOOP(i, n) dx[i] = g * (1.0f / (1.0f + expf(-x[i])) - t[i]);
}

/* 0: ignored pixel, 1: takes part, 2: a label outside [0, C) or of a masked-out class */
__device__ static inline int ce_class(int32_t lab, const float *mask, int64_t b, int64_t c,
                                      int ignore) {
  if (lab == ignore) return 0;
  if (lab < 0 || lab >= c || masked(mask, b, c, lab)) return 2;
  return 1;
}

__global__ void k_ce(const float *x, const int32_t *labels, const float *mask, int64_t n, int64_t c,
                     int64_t hw, int ignore, double *acc) {
  double s = 0, cnt = 0, bad = 0;
  CUK_LOOP(p, n * hw) {
    int32_t lab = labels[p];
    int64_t b = p / hw, off = b * c * hw + p % hw;
    int k = ce_class(lab, mask, b, c, ignore);
    if (k != 1) {
      bad += k == 2;
      continue;
    }
    s += lse_pixel(x + off, mask, b, c, hw) - x[off + lab * hw];
    cnt += 1;
  }
  s = cuk_block_sum(s);
  cnt = cuk_block_sum(cnt);
  bad = cuk_block_sum(bad);
  if (threadIdx.x == 0) atomicAdd(acc, s), atomicAdd(acc + 1, cnt), atomicAdd(acc + 2, bad);
}

__global__ void k_ce_count(const int32_t *labels, const float *mask, int64_t n, int64_t c,
                           int64_t hw, int ignore, double *acc) {
  double cnt = 0, bad = 0;
  CUK_LOOP(p, n * hw) {
    int k = ce_class(labels[p], mask, p / hw, c, ignore);
    cnt += k == 1;
    bad += k == 2;
  }
  cnt = cuk_block_sum(cnt);
  bad = cuk_block_sum(bad);
  if (threadIdx.x == 0) atomicAdd(acc + 1, cnt), atomicAdd(acc + 2, bad);
}

__global__ void k_ce_bwd(const float *x, const int32_t *labels, const float *mask,
                         const float *dloss, float *dx, int64_t n, int64_t c, int64_t hw,
                         int ignore, const double *acc) {
  float g = acc[1] > 0 ? (float)((double)dloss[0] / acc[1]) : 0.0f;
  CUK_LOOP(p, n * hw) {
    int32_t lab = labels[p];
    int64_t b = p / hw, off = b * c * hw + p % hw;
    if (ce_class(lab, mask, b, c, ignore) != 1) {
      for (int64_t k = 0; k < c; k++)
        dx[off + k * hw] = 0.0f;
      continue;
    }
    float lse = lse_pixel(x + off, mask, b, c, hw);
    for (int64_t k = 0; k < c; k++) {
      int64_t i = off + k * hw;
      dx[i] = masked(mask, b, c, k) ? 0.0f : g * (expf(x[i] - lse) - (k == lab ? 1.0f : 0.0f));
    }
  }
}

/* loss = sum / count (0 when count is 0); count optional */
__global__ void k_finish(const double *acc, float *loss, float *count, double fixed_count) {
  double cnt = fixed_count > 0 ? fixed_count : acc[1];
  loss[0] = cnt > 0 ? (float)(acc[0] / cnt) : 0.0f;
  if (count) count[0] = (float)cnt;
}

extern "C" {

cudaError_t ecs_cuk_softmax(cudaStream_t s, const float *x, const float *mask, float *y, int64_t n,
                            int64_t c, int64_t hw, int log) {
  k_softmax<<<cuk_blocks(n * hw), CUK_THREADS, 0, s>>>(x, mask, y, n, c, hw, log);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_softmax_bwd(cudaStream_t s, const float *y, const float *dy, float *dx,
                                int64_t n, int64_t c, int64_t hw, int log) {
  k_softmax_bwd<<<cuk_blocks(n * hw), CUK_THREADS, 0, s>>>(y, dy, dx, n, c, hw, log);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_ml_soft_margin(cudaStream_t s, const float *x, const float *t, float *loss,
                                   int64_t n, void *acc) {
  cudaError_t e = cudaMemsetAsync(acc, 0, 2 * sizeof(double), s);
  if (e != cudaSuccess) return e;
  k_msm<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x, t, n, (double *)acc);
  k_finish<<<1, 1, 0, s>>>((const double *)acc, loss, NULL, (double)n);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_ml_soft_margin_bwd(cudaStream_t s, const float *x, const float *t,
                                       const float *dloss, float *dx, int64_t n) {
  k_msm_bwd<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x, t, dloss, dx, n);
  return cudaGetLastError();
}

/* Labels are data: only a kernel sees a bad one. Its count comes back to the host (one small
 * copy and a wait per loss op) so that a bad label is an error, as on the CPU. */
static cudaError_t fetch_bad(cudaStream_t s, const void *acc, double *bad) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(bad, (const double *)acc + 2, sizeof *bad, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  return e;
}

cudaError_t ecs_cuk_masked_ce(cudaStream_t s, const float *x, const int32_t *labels,
                              const float *mask, float *loss, float *count, int64_t n, int64_t c,
                              int64_t hw, int ignore_index, void *acc, double *bad) {
  cudaError_t e = cudaMemsetAsync(acc, 0, 3 * sizeof(double), s);
  if (e != cudaSuccess) return e;
  k_ce<<<cuk_blocks(n * hw), CUK_THREADS, 0, s>>>(x, labels, mask, n, c, hw, ignore_index,
                                                  (double *)acc);
  k_finish<<<1, 1, 0, s>>>((const double *)acc, loss, count, 0.0);
  return fetch_bad(s, acc, bad);
}

cudaError_t ecs_cuk_masked_ce_bwd(cudaStream_t s, const float *x, const int32_t *labels,
                                  const float *mask, const float *dloss, float *dx, int64_t n,
                                  int64_t c, int64_t hw, int ignore_index, void *acc, double *bad) {
  cudaError_t e = cudaMemsetAsync(acc, 0, 3 * sizeof(double), s);
  if (e != cudaSuccess) return e;
  k_ce_count<<<cuk_blocks(n * hw), CUK_THREADS, 0, s>>>(labels, mask, n, c, hw, ignore_index,
                                                        (double *)acc);
  k_ce_bwd<<<cuk_blocks(n * hw), CUK_THREADS, 0, s>>>(x, labels, mask, dloss, dx, n, c, hw,
                                                      ignore_index, (const double *)acc);
  return fetch_bad(s, acc, bad);
}

} /* extern "C" */
