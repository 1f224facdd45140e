/* cuda-kernels.h - the launchers of the backend's own kernels (the .cu files), callable from C.
 *
 * Each launcher queues its kernels on the given stream and returns the launch error, if any;
 * pointers are device memory, sizes are element counts. Kept free of engine types so that nvcc
 * compiles only this and the kernels. */
#ifndef ECS_CUDA_KERNELS_H
#define ECS_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* element-wise (elementwise.cu) */
cudaError_t ecs_cuk_fill(cudaStream_t s, float *y, int64_t n, float a);
cudaError_t ecs_cuk_scale(cudaStream_t s, const float *x, float *y, int64_t n, float a, float b);
cudaError_t ecs_cuk_add(cudaStream_t s, const float *x0, const float *x1, float *y, int64_t n,
                        float a, float b);
cudaError_t ecs_cuk_mul(cudaStream_t s, const float *x0, const float *x1, float *y, int64_t n);
cudaError_t ecs_cuk_relu(cudaStream_t s, const float *x, float *y, int64_t n, float clip);
cudaError_t ecs_cuk_relu_bwd(cudaStream_t s, const float *x, const float *dy, float *dx, int64_t n,
                             float clip);
/* mask may be NULL (no backward pass will need it) */
cudaError_t ecs_cuk_dropout(cudaStream_t s, const float *x, float *y, uint8_t *mask, int64_t n,
                            float p, uint64_t seed);
cudaError_t ecs_cuk_dropout_bwd(cudaStream_t s, const float *dy, const uint8_t *mask, float *dx,
                                int64_t n, float p);
cudaError_t ecs_cuk_gap_bwd(cudaStream_t s, const float *dy, float *dx, int64_t nc, int64_t hw);

/* batch norm (batchnorm.cu); x is (N, C, HW) */
cudaError_t ecs_cuk_bn_train_fwd(cudaStream_t s, const float *x, const float *gamma,
                                 const float *beta, float *rmean, float *rvar, float *y,
                                 float *mean, float *invstd, int64_t n, int64_t c, int64_t hw,
                                 float eps, float momentum);
cudaError_t ecs_cuk_bn_frozen_fwd(cudaStream_t s, const float *x, const float *gamma,
                                  const float *beta, const float *rmean, const float *rvar,
                                  float *y, float *mean, float *invstd, int64_t n, int64_t c,
                                  int64_t hw, float eps);
/* sums (2*C floats of scratch) receives sum(dy) and sum(dy*xhat) per channel */
cudaError_t ecs_cuk_bn_bwd(cudaStream_t s, const float *x, const float *dy, const float *gamma,
                           const float *mean, const float *invstd, float *dx, float *dgamma,
                           float *dbeta, float *sums, int64_t n, int64_t c, int64_t hw,
                           int training);

/* pooling (pool.cu) */
typedef struct ecs_cuk_pool {
  int64_t nc, h, w, oh, ow;
  int kh, kw, sh, sw, ph, pw, is_max, count_include_pad;
} ecs_cuk_pool;
cudaError_t ecs_cuk_pool_fwd(cudaStream_t s, const ecs_cuk_pool *p, const float *x, float *y,
                             int32_t *argmax);
/* dx must be zero on entry; argmax may be NULL (recomputed from x) */
cudaError_t ecs_cuk_pool_bwd(cudaStream_t s, const ecs_cuk_pool *p, const float *x, const float *dy,
                             const int32_t *argmax, float *dx);

/* bilinear resize, align_corners=False (resize.cu); dx must be zero on entry of bwd */
cudaError_t ecs_cuk_resize_fwd(cudaStream_t s, const float *x, float *y, int64_t nc, int64_t ih,
                               int64_t iw, int64_t oh, int64_t ow);
cudaError_t ecs_cuk_resize_bwd(cudaStream_t s, const float *dy, float *dx, int64_t nc, int64_t ih,
                               int64_t iw, int64_t oh, int64_t ow);

/* softmax family and losses (softmax.cu); x is (N, C, HW), mask (N, C) or NULL;
 * acc is scratch of at least 32 bytes; the cross-entropy launchers wait for the stream and
 * return in *bad how many labels were neither the ignore index nor an unmasked class */
cudaError_t ecs_cuk_softmax(cudaStream_t s, const float *x, const float *mask, float *y, int64_t n,
                            int64_t c, int64_t hw, int log);
cudaError_t ecs_cuk_softmax_bwd(cudaStream_t s, const float *y, const float *dy, float *dx,
                                int64_t n, int64_t c, int64_t hw, int log);
cudaError_t ecs_cuk_ml_soft_margin(cudaStream_t s, const float *x, const float *t, float *loss,
                                   int64_t n, void *acc);
cudaError_t ecs_cuk_ml_soft_margin_bwd(cudaStream_t s, const float *x, const float *t,
                                       const float *dloss, float *dx, int64_t n);
cudaError_t ecs_cuk_masked_ce(cudaStream_t s, const float *x, const int32_t *labels,
                              const float *mask, float *loss, float *count, int64_t n, int64_t c,
                              int64_t hw, int ignore_index, void *acc, double *bad);
cudaError_t ecs_cuk_masked_ce_bwd(cudaStream_t s, const float *x, const int32_t *labels,
                                  const float *mask, const float *dloss, float *dx, int64_t n,
                                  int64_t c, int64_t hw, int ignore_index, void *acc, double *bad);

/* CAM post-processing (cam.cu) */
cudaError_t ecs_cuk_maxmin_norm(cudaStream_t s, const float *x, float *y, int64_t nc, int64_t hw,
                                float eps);
#define ECS_CUK_BLUR_MAX 255 /* largest kernel size */
cudaError_t ecs_cuk_gauss_blur(cudaStream_t s, const float *x, float *y, int64_t nc, int64_t h,
                               int64_t w, float sigma, int ksize);

#ifdef __cplusplus
}
#endif
#endif
