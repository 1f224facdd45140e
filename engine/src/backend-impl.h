/* backend-impl.h - what a backend implements: tables of function pointers plus a context.
 *
 * Every object is { iface, owner, context }. Optional entries may be NULL; the thin wrappers in
 * backend.c skip them. Tables are written with designated initialisers. Each backend has one
 * registration function that backend.c calls once: ecs_cpu_register, linked in, and the CUDA
 * module's ecs_backend_module_register, found with dlsym once the module is loaded. */
#ifndef ECS_BACKEND_IMPL_H
#define ECS_BACKEND_IMPL_H

#include "ecs/backend.h"

#include <string.h>

struct ecs_buffer_type_i {
  const char *(*get_name)(ecs_buffer_type *buft);
  ecs_buffer *(*alloc_buffer)(ecs_buffer_type *buft, size_t size, ecs_err *err);
  size_t (*get_alignment)(ecs_buffer_type *buft);
};

struct ecs_buffer_type {
  struct ecs_buffer_type_i iface;
  ecs_device *device;
  void *context;
};

struct ecs_buffer_i {
  void (*free_buffer)(ecs_buffer *buf);
  void *(*get_base)(ecs_buffer *buf);
  /* addr is an address inside this buffer; host is CPU memory */
  ecs_status (*set)(ecs_buffer *buf, void *addr, const void *host, size_t n, ecs_err *err);
  ecs_status (*get)(ecs_buffer *buf, void *host, const void *addr, size_t n, ecs_err *err);
  ecs_status (*memset)(ecs_buffer *buf, void *addr, int value, size_t n, ecs_err *err);
};

struct ecs_buffer {
  struct ecs_buffer_i iface;
  ecs_buffer_type *buft;
  void *context;
  size_t size;
};

struct ecs_device_i {
  const char *(*get_name)(ecs_device *dev);
  const char *(*get_description)(ecs_device *dev);
  void (*get_memory)(ecs_device *dev, size_t *free_bytes, size_t *total_bytes); /* optional */
  ecs_backend *(*init_backend)(ecs_device *dev, const ecs_backend_params *params, ecs_err *err);
  ecs_buffer_type *(*get_buffer_type)(ecs_device *dev);
  int (*supports_op)(ecs_device *dev, const ecs_op *op);
  int is_host;
};

struct ecs_device {
  struct ecs_device_i iface;
  void *context;
};

struct ecs_backend_i {
  const char *(*get_name)(ecs_backend *be);
  void (*free)(ecs_backend *be);
  ecs_status (*prepare)(ecs_backend *be, ecs_op *op, ecs_err *err); /* optional: plain */
  ecs_status (*compute)(ecs_backend *be, ecs_op *op, ecs_err *err);
  ecs_status (*synchronize)(ecs_backend *be, ecs_err *err);   /* optional */
  void (*get_stats)(ecs_backend *be, ecs_backend_stats *out); /* optional */
  void (*reset_stats)(ecs_backend *be);                       /* optional */
};

struct ecs_backend {
  struct ecs_backend_i iface;
  ecs_device *device;
  void *context;
  ecs_backend_params params; /* set by ecs_backend_init */
};

/* Registration: called once by backend.c; each adds its devices with ecs_device_register. */
void ecs_device_register(ecs_device *dev);
void ecs_cpu_register(void); /* "cpu" and "cpu-ref", engine/src/cpu/cpu-backend.c */

/* The host buffer type shared by the CPU devices (64-byte aligned malloc). */
ecs_buffer_type *ecs_host_buffer_type(void);

/* Checks every op of the generic contract shared by all backends: non-NULL required tensors,
 * matching dtypes and shapes between src and dst. Returns ECS_OK or fills err. */
ecs_status ecs_op_validate(const ecs_op *op, ecs_err *err);

/* ---- backend modules ----------------------------------------------------------------------
 * A backend built as a shared module (the CUDA backend, libecsnet-cuda.so) exports one
 * function, ECS_MODULE_ENTRY, of type ecs_module_register_fn. backend.c loads the module when
 * it is first needed and calls it once with the host's table; the module checks that it was
 * built against this engine (ecs_module_host_matches) and adds its devices through
 * host->device_register. The module links its own copy of the engine's stateless helpers
 * (base.c, tensor.c, op.c, op-validate.c) and calls nothing else in the engine, so it resolves
 * no symbol in the program that loads it; the program exports nothing. Objects cross the
 * boundary both ways (devices, backends, buffers, ops, tensors, errors), hence the sizes.
 *
 * The module's answer: ECS_OK when it added at least one device; ECS_ERR_UNSUPPORTED with the
 * reason ("no CUDA GPU answered (...)") when it works but found none; another status when it
 * cannot run here (built against another engine). */
#define ECS_MODULE_ABI   1
#define ECS_MODULE_ENTRY "ecs_backend_module_register"

typedef struct ecs_module_sizes {
  size_t device, backend, buffer_type, buffer, op, tensor, params, err;
} ecs_module_sizes;

typedef struct ecs_module_host {
  int abi;                /* ECS_MODULE_ABI */
  const char *version;    /* ecs_version() */
  ecs_module_sizes sizes; /* ecs_module_sizes_here() */
  void (*device_register)(ecs_device *dev);
} ecs_module_host;

typedef ecs_status (*ecs_module_register_fn)(const ecs_module_host *host, ecs_err *err);
/* The CUDA module's entry (src/cuda/cuda-backend.c), found by backend.c with dlsym. */
ecs_status ecs_backend_module_register(const ecs_module_host *host, ecs_err *err);

static inline ecs_module_sizes ecs_module_sizes_here(void) {
  return (ecs_module_sizes){
      sizeof(ecs_device), sizeof(ecs_backend), sizeof(ecs_buffer_type),    sizeof(ecs_buffer),
      sizeof(ecs_op),     sizeof(ecs_tensor),  sizeof(ecs_backend_params), sizeof(ecs_err)};
}

/* 1 when the loader's table describes the engine this module was built against. */
static inline int ecs_module_host_matches(const ecs_module_host *host) {
  ecs_module_sizes here = ecs_module_sizes_here();
  return host && host->abi == ECS_MODULE_ABI && host->device_register && host->version &&
         strcmp(host->version, ecs_version()) == 0 && memcmp(&host->sizes, &here, sizeof here) == 0;
}

#endif
