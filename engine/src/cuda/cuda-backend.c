/* cuda-backend.c - the CUDA devices, their buffer type and backends, and the module's entry.
 *
 * This backend is a module, libecsnet-cuda.so, that backend.c loads on first need and enters
 * once through ecs_backend_module_register (backend-impl.h). A device is registered for each
 * GPU that answers cudaGetDeviceProperties then; a machine without a driver or a GPU has no
 * "cuda:N" devices, and the entry says why. The device records are
 * immutable after registration; everything mutable (stream, cuDNN and cuBLAS handles,
 * workspace, algorithm cache, counters) belongs to one backend, and a backend is used by one
 * thread at a time, so workers on several threads need no locks.
 *
 * Buffers are plain cudaMalloc memory (never managed memory: oversubscribing it can hang a
 * GPU). Host copies use the synchronous cudaMemcpy on the legacy default stream, and backends
 * create their streams as blocking streams: the legacy stream waits for the work queued on
 * every blocking stream of the device and they wait for it, so a copy can neither overtake the
 * kernels that produce its source nor be overtaken by the kernels that read its destination.
 * That costs cross-worker ordering at pass edges only, where copies happen. */
#include "cuda-common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GPUS             16
#define CUDA_ALIGN           256
#define DEFAULT_WORKSPACE_MB 256

typedef struct cuda_device_ctx {
  int index;
  char name[32];
  char description[160];
  ecs_buffer_type buft;
} cuda_device_ctx;

static ecs_device g_devs[MAX_GPUS];
static cuda_device_ctx g_dev_ctx[MAX_GPUS];

/* ---- errors ------------------------------------------------------------------------------ */

static const char *base_name(const char *file) {
  const char *s = strrchr(file, '/');
  return s ? s + 1 : file;
}

ecs_status ecs_cuda_fail_rt(ecs_err *err, cudaError_t e, const char *stmt, const char *file,
                            int line) {
  cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
  ecs_status st = e == cudaErrorMemoryAllocation ? ECS_ERR_NOMEM : ECS_ERR_BACKEND;
  return ecs_err_set(err, st, "CUDA error %s (%s) in %s at %s:%d", cudaGetErrorName(e),
                     cudaGetErrorString(e), stmt, base_name(file), line);
}

ecs_status ecs_cuda_fail_dnn(ecs_err *err, cudnnStatus_t e, const char *stmt, const char *file,
                             int line) {
  ecs_status st = e == CUDNN_STATUS_ALLOC_FAILED    ? ECS_ERR_NOMEM
                  : e == CUDNN_STATUS_NOT_SUPPORTED ? ECS_ERR_UNSUPPORTED
                                                    : ECS_ERR_BACKEND;
  return ecs_err_set(err, st, "cuDNN error %s in %s at %s:%d", cudnnGetErrorString(e), stmt,
                     base_name(file), line);
}

ecs_status ecs_cuda_fail_blas(ecs_err *err, cublasStatus_t e, const char *stmt, const char *file,
                              int line) {
  ecs_status st = e == CUBLAS_STATUS_ALLOC_FAILED ? ECS_ERR_NOMEM : ECS_ERR_BACKEND;
  return ecs_err_set(err, st, "cuBLAS error %s (%s) in %s at %s:%d", cublasGetStatusName(e),
                     cublasGetStatusString(e), stmt, base_name(file), line);
}

static int dev_index(ecs_device *dev) {
  return ((cuda_device_ctx *)dev->context)->index;
}

/* ---- buffers ----------------------------------------------------------------------------- */

static int buf_index(ecs_buffer *buf) {
  return dev_index(buf->buft->device);
}

static void cuda_buf_free(ecs_buffer *buf) {
  cudaSetDevice(buf_index(buf));
  cudaFree(buf->context);
  free(buf);
}

static void *cuda_buf_base(ecs_buffer *buf) {
  return buf->context;
}

static ecs_status cuda_buf_set(ecs_buffer *buf, void *addr, const void *host, size_t n,
                               ecs_err *err) {
  CU_CHECK(cudaSetDevice(buf_index(buf)));
  CU_CHECK(cudaMemcpy(addr, host, n, cudaMemcpyHostToDevice));
  return ECS_OK;
}

static ecs_status cuda_buf_get(ecs_buffer *buf, void *host, const void *addr, size_t n,
                               ecs_err *err) {
  CU_CHECK(cudaSetDevice(buf_index(buf)));
  CU_CHECK(cudaMemcpy(host, addr, n, cudaMemcpyDeviceToHost));
  return ECS_OK;
}

static ecs_status cuda_buf_memset(ecs_buffer *buf, void *addr, int value, size_t n, ecs_err *err) {
  CU_CHECK(cudaSetDevice(buf_index(buf)));
  CU_CHECK(cudaMemset(addr, value, n));
  return ECS_OK;
}

static const char *cuda_buft_name(ecs_buffer_type *buft) {
  return ((cuda_device_ctx *)buft->context)->name;
}

static size_t cuda_buft_align(ecs_buffer_type *buft) {
  (void)buft;
  return CUDA_ALIGN;
}

static ecs_buffer *cuda_buft_alloc(ecs_buffer_type *buft, size_t size, ecs_err *err) {
  cuda_device_ctx *d = buft->context;
  ecs_buffer *buf = calloc(1, sizeof *buf);
  if (!buf) {
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a buffer record");
    return NULL;
  }
  void *mem = NULL;
  cudaError_t e = cudaSetDevice(d->index);
  if (e == cudaSuccess) e = cudaMalloc(&mem, size ? size : CUDA_ALIGN);
  if (e != cudaSuccess) {
    cudaGetLastError();
    free(buf);
    ecs_err_set(err, e == cudaErrorMemoryAllocation ? ECS_ERR_NOMEM : ECS_ERR_BACKEND,
                "cudaMalloc of %zu bytes on %s failed: %s", size, d->name, cudaGetErrorString(e));
    return NULL;
  }
  buf->iface = (struct ecs_buffer_i){
      .free_buffer = cuda_buf_free,
      .get_base = cuda_buf_base,
      .set = cuda_buf_set,
      .get = cuda_buf_get,
      .memset = cuda_buf_memset,
  };
  buf->buft = buft;
  buf->context = mem;
  buf->size = size;
  return buf;
}

/* ---- backend scratch memory -------------------------------------------------------------- */

/* Growing a buffer frees the old one: wait for the stream first, queued kernels may use it. */
static ecs_status regrow(ecs_cuda_backend *c, void **p, size_t *have, size_t want, ecs_err *err) {
  if (want <= *have) return ECS_OK;
  CU_CHECK(cudaStreamSynchronize(c->stream));
  cudaFree(*p);
  *p = NULL;
  *have = 0;
  CU_CHECK(cudaMalloc(p, want));
  *have = want;
  return ECS_OK;
}

ecs_status ecs_cuda_ensure_workspace(ecs_cuda_backend *c, size_t bytes, ecs_err *err) {
  return regrow(c, &c->workspace, &c->workspace_size, bytes, err);
}

ecs_status ecs_cuda_ensure_scratch(ecs_cuda_backend *c, size_t bytes, ecs_err *err) {
  return regrow(c, &c->scratch, &c->scratch_size, bytes < 4096 ? 4096 : bytes, err);
}

ecs_status ecs_cuda_ensure_ones(ecs_cuda_backend *c, size_t n, ecs_err *err) {
  if (n <= c->ones_n) return ECS_OK;
  size_t have = c->ones_n * sizeof(float);
  void *p = c->ones;
  ecs_status st = regrow(c, &p, &have, n * sizeof(float), err);
  c->ones = p;
  c->ones_n = have / sizeof(float);
  if (st != ECS_OK) return st;
  CU_CHECK(ecs_cuk_fill(c->stream, c->ones, (int64_t)n, 1.0f));
  return ECS_OK;
}

/* ---- backend ----------------------------------------------------------------------------- */

static const char *cuda_be_name(ecs_backend *be) {
  return ((cuda_device_ctx *)be->device->context)->name;
}

static void cuda_ctx_free(ecs_cuda_backend *c) {
  if (!c) return;
  cudaSetDevice(c->device);
  if (c->stream) cudaStreamSynchronize(c->stream);
  if (c->cublas) cublasDestroy(c->cublas);
  if (c->cudnn) cudnnDestroy(c->cudnn);
  if (c->stream) cudaStreamDestroy(c->stream);
  cudaFree(c->workspace);
  cudaFree(c->scratch);
  cudaFree(c->ones);
  free(c->algos);
  free(c);
}

static void cuda_be_free(ecs_backend *be) {
  cuda_ctx_free(be->context);
  free(be);
}

/* Everything is plain NCHW; max pooling's workspace is the reference's too (I32 argmax offsets
 * inside each plane, y's shape), so either backend can read the other's. */
static ecs_status cuda_be_prepare(ecs_backend *be, ecs_op *op, ecs_err *err) {
  (void)be, (void)err;
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    ecs_tensor *t = op->dst[i];
    if (!t) continue;
    t->layout = ECS_LAYOUT_PLAIN;
    t->layout_desc = NULL;
    t->nbytes = ecs_plain_nbytes(t);
  }
  return ECS_OK;
}

static ecs_status cuda_be_compute(ecs_backend *be, ecs_op *op, ecs_err *err) {
  ecs_cuda_backend *c = be->context;
  CU_CHECK(cudaSetDevice(c->device));
  ecs_status st = ecs_cuda_validate(be->device, op, err);
  if (st != ECS_OK) return st;
  st = ecs_cuda_run_op(c, op, err);
  if (st == ECS_OK) c->stats.ops++;
  return st;
}

static ecs_status cuda_be_sync(ecs_backend *be, ecs_err *err) {
  ecs_cuda_backend *c = be->context;
  CU_CHECK(cudaSetDevice(c->device));
  CU_CHECK(cudaStreamSynchronize(c->stream));
  return ECS_OK;
}

static void cuda_be_stats(ecs_backend *be, ecs_backend_stats *out) {
  *out = ((ecs_cuda_backend *)be->context)->stats;
}

static void cuda_be_reset_stats(ecs_backend *be) {
  ((ecs_cuda_backend *)be->context)->stats = (ecs_backend_stats){0};
}

/* TF32 and the workspace bound come from the caller's options (the engine reads no environment) */
static ecs_status cuda_ctx_init(ecs_cuda_backend *c, int device, const ecs_backend_params *params,
                                ecs_err *err) {
  c->device = device;
  c->tf32 = params->tf32 == 1;
  size_t mb = params->workspace_mb > 0 ? (size_t)params->workspace_mb : DEFAULT_WORKSPACE_MB;
  c->workspace_limit = mb << 20;
  CU_CHECK(cudaSetDevice(device));
  CU_CHECK(cudaStreamCreate(&c->stream));
  CUDNN_CHECK(cudnnCreate(&c->cudnn));
  CUDNN_CHECK(cudnnSetStream(c->cudnn, c->stream));
  CUBLAS_CHECK(cublasCreate(&c->cublas));
  CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
  CUBLAS_CHECK(
      cublasSetMathMode(c->cublas, c->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return ECS_OK;
}

static ecs_backend *cuda_init_backend(ecs_device *dev, const ecs_backend_params *params,
                                      ecs_err *err) {
  /* of params, tf32 and workspace_mb are this backend's; n_threads is a CPU notion */
  ecs_backend *be = calloc(1, sizeof *be);
  ecs_cuda_backend *c = calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a CUDA backend");
    return NULL;
  }
  if (cuda_ctx_init(c, dev_index(dev), params, err) != ECS_OK) {
    cuda_ctx_free(c);
    free(be);
    return NULL;
  }
  be->iface = (struct ecs_backend_i){
      .get_name = cuda_be_name,
      .free = cuda_be_free,
      .prepare = cuda_be_prepare,
      .compute = cuda_be_compute,
      .synchronize = cuda_be_sync,
      .get_stats = cuda_be_stats,
      .reset_stats = cuda_be_reset_stats,
  };
  be->device = dev;
  be->context = c;
  return be;
}

/* ---- devices ----------------------------------------------------------------------------- */

static const char *cuda_dev_name(ecs_device *dev) {
  return ((cuda_device_ctx *)dev->context)->name;
}

static const char *cuda_dev_desc(ecs_device *dev) {
  return ((cuda_device_ctx *)dev->context)->description;
}

static void cuda_dev_memory(ecs_device *dev, size_t *free_bytes, size_t *total_bytes) {
  size_t f = 0, t = 0;
  if (cudaSetDevice(dev_index(dev)) != cudaSuccess || cudaMemGetInfo(&f, &t) != cudaSuccess) {
    cudaGetLastError();
    f = t = 0;
  }
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
}

static ecs_buffer_type *cuda_dev_buft(ecs_device *dev) {
  return &((cuda_device_ctx *)dev->context)->buft;
}

static int cuda_dev_supports(ecs_device *dev, const ecs_op *op) {
  (void)dev;
  return ecs_cuda_supports(op);
}

__attribute__((visibility("default"))) ecs_status
ecs_backend_module_register(const ecs_module_host *host, ecs_err *err) {
  if (!ecs_module_host_matches(host))
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "the CUDA backend module was built against another engine (ecsnet %s)",
                       ecs_version());
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError(); /* no driver or no GPU: no devices */
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "no CUDA GPU answered (%s)",
                       cudaGetErrorString(e));
  }
  int k = 0;
  for (int i = 0; i < n && k < MAX_GPUS; i++) {
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    cuda_device_ctx *d = &g_dev_ctx[k];
    d->index = i;
    snprintf(d->name, sizeof d->name, "cuda:%d", i);
    snprintf(d->description, sizeof d->description, "%.100s, %.1f GiB, sm_%d%d", prop.name,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), prop.major, prop.minor);
    d->buft = (ecs_buffer_type){
        .iface = {.get_name = cuda_buft_name,
                  .alloc_buffer = cuda_buft_alloc,
                  .get_alignment = cuda_buft_align},
        .device = &g_devs[k],
        .context = d,
    };
    g_devs[k] = (ecs_device){
        .iface =
            {
                .get_name = cuda_dev_name,
                .get_description = cuda_dev_desc,
                .get_memory = cuda_dev_memory,
                .init_backend = cuda_init_backend,
                .get_buffer_type = cuda_dev_buft,
                .supports_op = cuda_dev_supports,
                .is_host = 0,
            },
        .context = d,
    };
    host->device_register(&g_devs[k]);
    k++;
  }
  if (k == 0)
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "no CUDA GPU answered (%d found, none readable)",
                       n);
  return ECS_OK;
}
