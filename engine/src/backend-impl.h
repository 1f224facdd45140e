/* backend-impl.h - what a backend implements: tables of function pointers plus a context.
 *
 * Every object is { iface, owner, context }. Optional entries may be NULL; the thin wrappers in
 * backend.c skip them. Tables are written with designated initialisers. Each backend exports one
 * registration function (ecs_cpu_register, ecs_cuda_register) that backend.c calls once. */
#ifndef ECS_BACKEND_IMPL_H
#define ECS_BACKEND_IMPL_H

#include "ecs/backend.h"

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
  ecs_status (*synchronize)(ecs_backend *be, ecs_err *err); /* optional */
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
#ifdef ECS_USE_CUDA
void ecs_cuda_register(void);
#endif

/* The host buffer type shared by the CPU devices (64-byte aligned malloc). */
ecs_buffer_type *ecs_host_buffer_type(void);

/* Checks every op of the generic contract shared by all backends: non-NULL required tensors,
 * matching dtypes and shapes between src and dst. Returns ECS_OK or fills err. */
ecs_status ecs_op_validate(const ecs_op *op, ecs_err *err);

#endif
