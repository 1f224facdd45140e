/* cuda-common.h - what the CUDA backend's host files share: the backend context, the check
 * macros and the kernel launchers.
 *
 * Everything a worker needs lives in its backend context (stream, cuDNN and cuBLAS handles,
 * workspace, the convolution algorithm cache), so several workers in several threads never
 * share mutable state; the only globals are the immutable device records made at registration.
 * Every call that touches the GPU first selects the backend's device (cudaSetDevice is per
 * thread), because a worker thread may drive backends on different GPUs in turn.
 *
 * The check macros follow ggml's ggml-cuda/common.cuh in recording the failing statement, file
 * and line, but return an ecs_status instead of aborting: a GPU error is the caller's to report.
 * They expect an `ecs_err *err` in scope. */
#ifndef ECS_CUDA_COMMON_H
#define ECS_CUDA_COMMON_H

#include "../backend-impl.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "cuda-kernels.h"

ecs_status ecs_cuda_fail_rt(ecs_err *err, cudaError_t e, const char *stmt, const char *file,
                            int line);
ecs_status ecs_cuda_fail_dnn(ecs_err *err, cudnnStatus_t e, const char *stmt, const char *file,
                             int line);
ecs_status ecs_cuda_fail_blas(ecs_err *err, cublasStatus_t e, const char *stmt, const char *file,
                              int line);

#define CU_CHECK(stmt)                                                                             \
  do {                                                                                             \
    cudaError_t e_ = (stmt);                                                                       \
    if (e_ != cudaSuccess) return ecs_cuda_fail_rt(err, e_, #stmt, __FILE__, __LINE__);            \
  } while (0)
#define CUDNN_CHECK(stmt)                                                                          \
  do {                                                                                             \
    cudnnStatus_t e_ = (stmt);                                                                     \
    if (e_ != CUDNN_STATUS_SUCCESS) return ecs_cuda_fail_dnn(err, e_, #stmt, __FILE__, __LINE__);  \
  } while (0)
#define CUBLAS_CHECK(stmt)                                                                         \
  do {                                                                                             \
    cublasStatus_t e_ = (stmt);                                                                    \
    if (e_ != CUBLAS_STATUS_SUCCESS)                                                               \
      return ecs_cuda_fail_blas(err, e_, #stmt, __FILE__, __LINE__);                               \
  } while (0)
/* For sequences that must release resources on failure: record, then `goto done`. */
#define CUDNN_TRY(stmt)                                                                            \
  do {                                                                                             \
    cudnnStatus_t e_ = (stmt);                                                                     \
    if (e_ != CUDNN_STATUS_SUCCESS) {                                                              \
      st = ecs_cuda_fail_dnn(err, e_, #stmt, __FILE__, __LINE__);                                  \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)
#define CU_TRY(stmt)                                                                               \
  do {                                                                                             \
    cudaError_t e_ = (stmt);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      st = ecs_cuda_fail_rt(err, e_, #stmt, __FILE__, __LINE__);                                   \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)

/* One cached convolution algorithm choice. */
typedef struct ecs_cuda_conv_key {
  int kind; /* ECS_OP_CONV2D, ..._BWD_DATA, ..._BWD_WEIGHT */
  int n, c, h, w, o, kh, kw;
  int stride[2], pad[2], dil[2], groups;
} ecs_cuda_conv_key;

typedef struct ecs_cuda_conv_algo {
  ecs_cuda_conv_key key;
  int algo; /* the cudnnConvolution*Algo_t value */
  cudnnMathType_t math;
  size_t workspace; /* bytes the algorithm needs */
} ecs_cuda_conv_algo;

typedef struct ecs_cuda_backend {
  int device;
  cudaStream_t stream;
  cudnnHandle_t cudnn;
  cublasHandle_t cublas;
  int tf32;        /* allow TF32 tensor-core math (ecs_backend_params.tf32 = 1) */
  void *workspace; /* cuDNN workspace, grown on demand up to workspace_limit */
  size_t workspace_size, workspace_limit;
  void *scratch; /* small per-op temporaries: reduction results, per-channel sums */
  size_t scratch_size;
  float *ones; /* a vector of ones for cuBLAS reductions */
  size_t ones_n;
  ecs_cuda_conv_algo *algos; /* the algorithm cache, linear: a network has few dozen shapes */
  size_t n_algos, cap_algos;
  ecs_backend_stats stats;
} ecs_cuda_backend;

ecs_status ecs_cuda_ensure_workspace(ecs_cuda_backend *c, size_t bytes, ecs_err *err);
ecs_status ecs_cuda_ensure_scratch(ecs_cuda_backend *c, size_t bytes, ecs_err *err);
ecs_status ecs_cuda_ensure_ones(ecs_cuda_backend *c, size_t n, ecs_err *err);

/* Op families, each in its own file. */
ecs_status ecs_cuda_conv(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err);
ecs_status ecs_cuda_run_op(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err);
int ecs_cuda_supports(const ecs_op *op);
/* Shapes, dtypes and memory of every tensor an op touches; ECS_OK or a clear message. */
ecs_status ecs_cuda_validate(ecs_device *dev, const ecs_op *op, ecs_err *err);

#endif
