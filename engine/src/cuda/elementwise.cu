/* elementwise.cu - the element-wise kernels: fill, scale, add, mul, ReLU, dropout, GAP's
 * backward. The twins of the reference kernels in engine/src/cpu/, same formulas in fp32. */
#include "cuk-util.cuh"

__global__ void k_fill(float *y, int64_t n, float a) {
  CUK_LOOP(i, n) y[i] = a;
}
__global__ void k_scale(const float *x, float *y, int64_t n, float a, float b) {
  CUK_LOOP(i, n) y[i] = a * x[i] + b;
}
__global__ void k_add(const float *x0, const float *x1, float *y, int64_t n, float a, float b) {
  CUK_LOOP(i, n) y[i] = a * x0[i] + b * x1[i];
}
__global__ void k_mul(const float *x0, const float *x1, float *y, int64_t n) {
  CUK_LOOP(i, n) y[i] = x0[i] * x1[i];
}
__global__ void k_relu(const float *x, float *y, int64_t n, float clip) {
  CUK_LOOP(i, n) {
    float v = x[i] > 0 ? x[i] : 0;
    y[i] = (clip > 0 && v > clip) ? clip : v;
  }
}
__global__ void k_relu_bwd(const float *x, const float *dy, float *dx, int64_t n, float clip) {
  CUK_LOOP(i, n) dx[i] = (x[i] > 0 && !(clip > 0 && x[i] >= clip)) ? dy[i] : 0;
}

/* Must stay bit-identical to ecs_dropout_keep in ecs/op.h (a host function, so it cannot be
 * called here): the GPU check compares the masks of both backends element by element. */
__device__ static inline int keep_dev(uint64_t seed, uint64_t i, float p) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

__global__ void k_dropout(const float *x, float *y, uint8_t *mask, int64_t n, float p,
                          uint64_t seed, float scale) {
  CUK_LOOP(i, n) {
    int k = keep_dev(seed, (uint64_t)i, p);
    if (mask) mask[i] = (uint8_t)k;
    y[i] = k ? x[i] * scale : 0.0f;
  }
}
__global__ void k_dropout_bwd(const float *dy, const uint8_t *mask, float *dx, int64_t n,
                              float scale) {
  CUK_LOOP(i, n) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}
__global__ void k_gap_bwd(const float *dy, float *dx, int64_t n, int64_t hw, float inv) {
  CUK_LOOP(i, n) dx[i] = dy[i / hw] * inv;
}

extern "C" {

cudaError_t ecs_cuk_fill(cudaStream_t s, float *y, int64_t n, float a) {
  k_fill<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(y, n, a);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_scale(cudaStream_t s, const float *x, float *y, int64_t n, float a, float b) {
  k_scale<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x, y, n, a, b);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_add(cudaStream_t s, const float *x0, const float *x1, float *y, int64_t n,
                        float a, float b) {
  k_add<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x0, x1, y, n, a, b);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_mul(cudaStream_t s, const float *x0, const float *x1, float *y, int64_t n) {
  k_mul<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x0, x1, y, n);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_relu(cudaStream_t s, const float *x, float *y, int64_t n, float clip) {
  k_relu<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x, y, n, clip);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_relu_bwd(cudaStream_t s, const float *x, const float *dy, float *dx, int64_t n,
                             float clip) {
  k_relu_bwd<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x, dy, dx, n, clip);
  return cudaGetLastError();
}
/* The scale is 1/(1-p) computed once, as the reference does, so kept values agree bitwise. */
cudaError_t ecs_cuk_dropout(cudaStream_t s, const float *x, float *y, uint8_t *mask, int64_t n,
                            float p, uint64_t seed) {
  float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  k_dropout<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(x, y, mask, n, p, seed, scale);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_dropout_bwd(cudaStream_t s, const float *dy, const uint8_t *mask, float *dx,
                                int64_t n, float p) {
  float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  k_dropout_bwd<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(dy, mask, dx, n, scale);
  return cudaGetLastError();
}
cudaError_t ecs_cuk_gap_bwd(cudaStream_t s, const float *dy, float *dx, int64_t nc, int64_t hw) {
  int64_t n = nc * hw;
  k_gap_bwd<<<cuk_blocks(n), CUK_THREADS, 0, s>>>(dy, dx, n, hw, 1.0f / (float)hw);
  return cudaGetLastError();
}

} /* extern "C" */
