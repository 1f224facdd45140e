/* batchnorm.cu - batch norm over (N, H, W) per channel: training forward with the running-stat
 * update of ecs/op.h, frozen forward, and backward.
 *
 * One block per channel reduces in double: the statistics of a large activation are sums of
 * millions of terms, and double keeps them as accurate as the reference however the sum is
 * split. The variance takes a second pass over x around the mean rather than E[x^2] - E[x]^2,
 * which cancels badly when the mean is large. */
#include "cuk-util.cuh"

#define BN_THREADS 512

__global__ void k_bn_stats(const float *x, float *rmean, float *rvar, float *mean, float *invstd,
                           int64_t n, int64_t c, int64_t hw, float eps, float momentum) {
  int64_t ch = blockIdx.x, m = n * hw;
  double s = 0;
  for (int64_t k = threadIdx.x; k < m; k += blockDim.x)
    s += x[((k / hw) * c + ch) * hw + k % hw];
  double mu = cuk_block_sum(s) / (double)m;
  double ss = 0;
  for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
    double d = x[((k / hw) * c + ch) * hw + k % hw] - mu;
    ss += d * d;
  }
  double var = cuk_block_sum(ss) / (double)m;
  if (threadIdx.x == 0) {
    mean[ch] = (float)mu;
    invstd[ch] = (float)(1.0 / sqrt(var + (double)eps));
    double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
    if (rmean) rmean[ch] = (1.0f - momentum) * rmean[ch] + momentum * (float)mu;
    if (rvar) rvar[ch] = (1.0f - momentum) * rvar[ch] + momentum * (float)unbiased;
  }
}

/* The element-wise passes run one block per (n, c) plane, so the channel and its coefficients
 * are found once per block rather than by a 64-bit division per element. */
__global__ void k_bn_apply(const float *x, const float *gamma, const float *beta, const float *mean,
                           const float *invstd, float *y, int64_t c, int64_t hw) {
  int64_t plane = blockIdx.x, ch = plane % c;
  float g = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f, mu = mean[ch], inv = invstd[ch];
  const float *xp = x + plane * hw;
  float *yp = y + plane * hw;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x)
    yp[j] = (xp[j] - mu) * inv * g + b;
}

__global__ void k_bn_frozen(const float *x, const float *gamma, const float *beta,
                            const float *rmean, const float *rvar, float *y, int64_t c, int64_t hw,
                            float eps) {
  int64_t plane = blockIdx.x, ch = plane % c;
  float g = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f, mu = rmean[ch];
  float inv = 1.0f / sqrtf(rvar[ch] + eps);
  const float *xp = x + plane * hw;
  float *yp = y + plane * hw;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x)
    yp[j] = (xp[j] - mu) * inv * g + b;
}

/* frozen batch norm may still be asked for the statistics it used */
__global__ void k_bn_frozen_stats(const float *rmean, const float *rvar, float *mean, float *invstd,
                                  int64_t c, float eps) {
  CUK_LOOP(ch, c) {
    if (mean) mean[ch] = rmean[ch];
    if (invstd) invstd[ch] = (float)(1.0 / sqrt((double)rvar[ch] + (double)eps));
  }
}

/* sums[ch] = sum dy, sums[c + ch] = sum dy * xhat */
__global__ void k_bn_bwd_sums(const float *x, const float *dy, const float *mean,
                              const float *invstd, float *sums, float *dgamma, float *dbeta,
                              int64_t n, int64_t c, int64_t hw) {
  int64_t ch = blockIdx.x, m = n * hw;
  float mu = mean[ch], inv = invstd[ch];
  double sd = 0, sdx = 0;
  for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
    int64_t i = ((k / hw) * c + ch) * hw + k % hw;
    sd += dy[i];
    sdx += (double)dy[i] * (double)((x[i] - mu) * inv);
  }
  sd = cuk_block_sum(sd);
  sdx = cuk_block_sum(sdx);
  if (threadIdx.x == 0) {
    sums[ch] = (float)sd;
    sums[c + ch] = (float)sdx;
    if (dbeta) dbeta[ch] = (float)sd;
    if (dgamma) dgamma[ch] = (float)sdx;
  }
}

__global__ void k_bn_bwd_dx(const float *x, const float *dy, const float *gamma, const float *mean,
                            const float *invstd, const float *sums, float *dx, int64_t c,
                            int64_t hw, float inv_m, int training) {
  int64_t plane = blockIdx.x, ch = plane % c;
  float g = gamma ? gamma[ch] : 1.0f, inv = invstd[ch];
  const float *xp = x + plane * hw, *gp = dy + plane * hw;
  float *dp = dx + plane * hw;
  if (training) {
    float mu = mean[ch], m1 = sums[ch] * inv_m, m2 = sums[c + ch] * inv_m;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x)
      dp[j] = g * inv * (gp[j] - m1 - (xp[j] - mu) * inv * m2);
  } else {
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x)
      dp[j] = g * inv * gp[j];
  }
}

extern "C" {

cudaError_t ecs_cuk_bn_train_fwd(cudaStream_t s, const float *x, const float *gamma,
                                 const float *beta, float *rmean, float *rvar, float *y,
                                 float *mean, float *invstd, int64_t n, int64_t c, int64_t hw,
                                 float eps, float momentum) {
  k_bn_stats<<<(unsigned)c, BN_THREADS, 0, s>>>(x, rmean, rvar, mean, invstd, n, c, hw, eps,
                                                momentum);
  k_bn_apply<<<(unsigned)(n * c), CUK_THREADS, 0, s>>>(x, gamma, beta, mean, invstd, y, c, hw);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_bn_frozen_fwd(cudaStream_t s, const float *x, const float *gamma,
                                  const float *beta, const float *rmean, const float *rvar,
                                  float *y, float *mean, float *invstd, int64_t n, int64_t c,
                                  int64_t hw, float eps) {
  if (mean || invstd)
    k_bn_frozen_stats<<<cuk_blocks(c), CUK_THREADS, 0, s>>>(rmean, rvar, mean, invstd, c, eps);
  k_bn_frozen<<<(unsigned)(n * c), CUK_THREADS, 0, s>>>(x, gamma, beta, rmean, rvar, y, c, hw, eps);
  return cudaGetLastError();
}

cudaError_t ecs_cuk_bn_bwd(cudaStream_t s, const float *x, const float *dy, const float *gamma,
                           const float *mean, const float *invstd, float *dx, float *dgamma,
                           float *dbeta, float *sums, int64_t n, int64_t c, int64_t hw,
                           int training) {
  if (training || dgamma || dbeta)
    k_bn_bwd_sums<<<(unsigned)c, BN_THREADS, 0, s>>>(x, dy, mean, invstd, sums, dgamma, dbeta, n, c,
                                                     hw);
  k_bn_bwd_dx<<<(unsigned)(n * c), CUK_THREADS, 0, s>>>(x, dy, gamma, mean, invstd, sums, dx, c, hw,
                                                        1.0f / (float)(n * hw), training);
  return cudaGetLastError();
}

} /* extern "C" */
