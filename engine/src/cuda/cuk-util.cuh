/* cuk-util.cuh - launch geometry and block reductions shared by the kernel files. */
#ifndef ECS_CUK_UTIL_CUH
#define ECS_CUK_UTIL_CUH

#include <stdint.h>

#include "cuda-kernels.h"

#define CUK_THREADS 256

/* Grid-stride loops cap the grid: enough blocks to fill any current GPU several times over. */
static inline unsigned cuk_blocks(int64_t n) {
  int64_t b = (n + CUK_THREADS - 1) / CUK_THREADS;
  if (b < 1) b = 1;
  if (b > 65536) b = 65536;
  return (unsigned)b;
}

#define CUK_LOOP(i, n)                                                                        \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                   \
       i += (int64_t)blockDim.x * gridDim.x)

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in
 * every thread. Uses 32 elements of shared memory. */
template <typename T> __device__ T cuk_block_sum(T v) {
  __shared__ T part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); /* part[] may still be read by a previous call */
  if (lane == 0) part[warp] = v;
  __syncthreads();
  int nw = (blockDim.x + 31) >> 5;
  v = lane < nw ? part[lane] : (T)0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Minimum and maximum over the block; valid in every thread. */
__device__ inline void cuk_block_minmax(float *mn, float *mx) {
  __shared__ float pmin[32], pmax[32];
  float a = *mn, b = *mx;
  for (int o = 16; o > 0; o >>= 1) {
    a = fminf(a, __shfl_xor_sync(0xffffffffu, a, o));
    b = fmaxf(b, __shfl_xor_sync(0xffffffffu, b, o));
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) pmin[warp] = a, pmax[warp] = b;
  __syncthreads();
  int nw = (blockDim.x + 31) >> 5;
  a = lane < nw ? pmin[lane] : INFINITY;
  b = lane < nw ? pmax[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) {
    a = fminf(a, __shfl_xor_sync(0xffffffffu, a, o));
    b = fmaxf(b, __shfl_xor_sync(0xffffffffu, b, o));
  }
  *mn = a, *mx = b;
}

#endif
