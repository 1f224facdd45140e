/* ecs/backend.h - devices, backends (streams), buffer types and buffers.
 *
 * After ggml-backend: a device (the CPU, one GPU) makes backends; a backend is a stream with
 * its own library handles, workspace and thread count, used by one thread at a time; a buffer
 * type says where memory lives and a buffer is one allocation of it. Several backends on one
 * device run concurrently (one per worker) and may read the same parameter buffers.
 *
 * Devices known to every build: "cpu-ref" (the plain-C reference kernels, the test oracle) and
 * "cpu" (oneDNN where the build has it, falling back to the reference kernel op by op). A build
 * with the CUDA backend adds "cuda:0", "cuda:1", ... for each GPU that answers at run time.
 *
 * The CUDA backend is a shared module, libecsnet-cuda.so, loaded at run time on first need: by a
 * lookup of "cuda" or "cuda:N" (always), of "auto" and by ecs_device_count/ecs_device_get (when
 * the NVIDIA driver library, libcuda.so.1, is present). A process that asks only for "cpu" or
 * "cpu-ref" never maps cudart, cuBLAS or cuDNN. Where the module is missing or cannot load, or
 * no GPU answers, "cuda" lookups fail with one line saying which, and "auto" is "cpu". */
#ifndef ECS_BACKEND_H
#define ECS_BACKEND_H

#include "ecs/op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ecs_device ecs_device;
typedef struct ecs_backend ecs_backend;
typedef struct ecs_buffer_type ecs_buffer_type;
typedef struct ecs_buffer ecs_buffer;

/* Engine options, passed in: the engine reads no environment (the server's config table and the
 * command line read ECSNET_* once and fill these). Zero is the default of every field, so
 * (ecs_backend_params){.n_threads = 2} is a default backend on two threads. The CPU fast paths
 * are chosen per CPU and per layout oneDNN picks when left at 0; ECS_OPT_OFF turns one off, and
 * a positive value forces a variant where this CPU can run it. Backends ignore what is not
 * theirs. */
#define ECS_OPT_OFF (-1)
typedef struct ecs_backend_params {
  int n_threads;    /* compute threads for this backend; <= 0: all cores */
  int winograd;     /* 3x3 stride-1 convolutions by Winograd: 0 auto, 2 F(2x2,3x3), 4 F(4x4,3x3) */
  int phases;       /* dilated convolutions as space-to-batch: 0 auto, N: split by N always */
  int pack_width;   /* narrow maps side by side: 0 auto (64 columns), N: wide maps of N columns */
  int fuse;         /* activations fused into the convolution at inference: 0 auto (on) */
  int tf32;         /* CUDA: TF32 tensor cores for FP32 convolutions and GEMMs: 0 off, 1 on */
  int workspace_mb; /* CUDA: cuDNN workspace bound per backend in MiB; 0: the default */
} ecs_backend_params;

/* Counters a backend keeps about the ops it ran, for tests and metrics. */
typedef struct ecs_backend_stats {
  uint64_t ops;        /* ops computed */
  uint64_t ref_ops;    /* of which ran on a reference kernel (CPU) */
  uint64_t reorders;   /* layout conversions executed */
  uint64_t primitives; /* library primitives or plans created (cache misses) */
  uint64_t wino_ops;   /* CPU: forward 3x3 convolutions run by Winograd (dnnl-wino.c) */
  uint64_t phased_ops; /* CPU: convolutions run on rearranged maps (dnnl-phase.c: dilated ones
                        * as space-to-batch, batches of narrow maps side by side) */
  uint64_t solo_ops;   /* CPU: ops a backend of several threads ran on one (dnnl-team.c) */
} ecs_backend_stats;

/* registry */
size_t ecs_device_count(void);
ecs_device *ecs_device_get(size_t i);
/* "cpu", "cpu-ref", "cuda" (= cuda:0), "cuda:N", or "auto" (the first GPU, else "cpu"). */
ecs_device *ecs_device_find(const char *name, ecs_err *err);
/* Where to look for backend modules, instead of the defaults: entries separated by ':', each a
 * folder holding libecsnet-cuda.so or the module's file itself. The defaults, in order: beside
 * the program (its folder's ../lib, then the folder; likewise for a shared library holding the
 * engine), the build tree's lib/, the install libdir. NULL or "" restores them. Call it before
 * the first device lookup (the server and the command line pass $ECSNET_BACKEND_PATH); once
 * the module is loaded it is ECS_ERR_INVALID. */
ecs_status ecs_backend_set_module_path(const char *path, ecs_err *err);
const char *ecs_device_name(ecs_device *dev);
const char *ecs_device_description(ecs_device *dev);
int ecs_device_is_host(ecs_device *dev); /* memory addressable by the CPU */
void ecs_device_memory(ecs_device *dev, size_t *free_bytes, size_t *total_bytes);
int ecs_device_supports_op(ecs_device *dev, const ecs_op *op);
ecs_buffer_type *ecs_device_buffer_type(ecs_device *dev);

/* backends */
ecs_backend *ecs_backend_init(ecs_device *dev, const ecs_backend_params *params, ecs_err *err);
void ecs_backend_free(ecs_backend *be); /* accepts NULL */
/* The options the backend was made with (zeroes where the caller passed none). */
const ecs_backend_params *ecs_backend_get_params(const ecs_backend *be);
const char *ecs_backend_name(ecs_backend *be);
ecs_device *ecs_backend_device(ecs_backend *be);
/* Fills layout, layout_desc and nbytes of op->dst[] whose type, nd and ne the caller set.
 * Backends without private layouts make them plain. */
ecs_status ecs_backend_prepare(ecs_backend *be, ecs_op *op, ecs_err *err);
/* Runs op; dst tensors must be allocated (data set) as prepare laid them out. Asynchronous on
 * devices with streams; ecs_backend_synchronize waits. */
ecs_status ecs_backend_compute(ecs_backend *be, ecs_op *op, ecs_err *err);
ecs_status ecs_backend_synchronize(ecs_backend *be, ecs_err *err);
void ecs_backend_get_stats(ecs_backend *be, ecs_backend_stats *out);
void ecs_backend_reset_stats(ecs_backend *be);

/* buffers */
const char *ecs_buffer_type_name(ecs_buffer_type *buft);
size_t ecs_buffer_type_alignment(ecs_buffer_type *buft);
ecs_buffer *ecs_buffer_alloc(ecs_buffer_type *buft, size_t size, ecs_err *err);
void ecs_buffer_free(ecs_buffer *buf); /* accepts NULL */
void *ecs_buffer_base(ecs_buffer *buf);
size_t ecs_buffer_size(ecs_buffer *buf);
ecs_buffer_type *ecs_buffer_get_type(ecs_buffer *buf);

/* Host <-> tensor copies of raw bytes at byte offset off (no layout conversion: use them on
 * plain tensors, or for whole-tensor save/restore within one backend). */
ecs_status ecs_tensor_set_bytes(ecs_tensor *t, const void *src, size_t off, size_t n, ecs_err *err);
ecs_status ecs_tensor_get_bytes(const ecs_tensor *t, void *dst, size_t off, size_t n, ecs_err *err);
ecs_status ecs_tensor_memset(ecs_tensor *t, int value, ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
