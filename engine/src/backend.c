/* backend.c - the device registry and the thin wrappers over each backend's function table.
 *
 * Registration happens once, lazily, under pthread_once: the CPU devices always, the CUDA ones
 * when the build has the backend and a GPU answers. The wrappers skip optional entries. */
#include "backend-impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ECS_MAX_DEVICES 32

static ecs_device *g_devices[ECS_MAX_DEVICES];
static size_t g_n_devices;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

void ecs_device_register(ecs_device *dev) {
  if (g_n_devices < ECS_MAX_DEVICES) g_devices[g_n_devices++] = dev;
}

static void register_all(void) {
  ecs_cpu_register();
#ifdef ECS_USE_CUDA
  ecs_cuda_register();
#endif
}

size_t ecs_device_count(void) {
  pthread_once(&g_once, register_all);
  return g_n_devices;
}

ecs_device *ecs_device_get(size_t i) {
  return i < ecs_device_count() ? g_devices[i] : NULL;
}

ecs_device *ecs_device_find(const char *name, ecs_err *err) {
  size_t n = ecs_device_count();
  if (!name || !*name || strcmp(name, "auto") == 0) {
    for (size_t i = 0; i < n; i++)
      if (!g_devices[i]->iface.is_host) return g_devices[i];
    name = "cpu";
  }
  const char *want = strcmp(name, "cuda") == 0 ? "cuda:0" : name;
  for (size_t i = 0; i < n; i++)
    if (strcmp(ecs_device_name(g_devices[i]), want) == 0) return g_devices[i];
  if (strncmp(name, "cuda", 4) == 0) {
#ifdef ECS_USE_CUDA
    ecs_err_set(err, ECS_ERR_UNSUPPORTED, "device '%s' not found: no CUDA GPU answered", name);
#else
    ecs_err_set(err, ECS_ERR_UNSUPPORTED,
                "device '%s' requested, but this build has no CUDA backend", name);
#endif
  } else {
    ecs_err_set(err, ECS_ERR_INVALID, "unknown device '%s' (expected auto, cpu or cuda[:N])",
                name);
  }
  return NULL;
}

const char *ecs_device_name(ecs_device *dev) { return dev->iface.get_name(dev); }
const char *ecs_device_description(ecs_device *dev) { return dev->iface.get_description(dev); }
int ecs_device_is_host(ecs_device *dev) { return dev->iface.is_host; }

void ecs_device_memory(ecs_device *dev, size_t *free_bytes, size_t *total_bytes) {
  if (dev->iface.get_memory) {
    dev->iface.get_memory(dev, free_bytes, total_bytes);
  } else {
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
  }
}

int ecs_device_supports_op(ecs_device *dev, const ecs_op *op) {
  return dev->iface.supports_op(dev, op);
}

ecs_buffer_type *ecs_device_buffer_type(ecs_device *dev) { return dev->iface.get_buffer_type(dev); }

ecs_backend *ecs_backend_init(ecs_device *dev, const ecs_backend_params *params, ecs_err *err) {
  ecs_backend_params def = {.n_threads = 0};
  if (!params) params = &def;
  ecs_backend *be = dev->iface.init_backend(dev, params, err);
  if (be) be->params = *params;
  return be;
}

const ecs_backend_params *ecs_backend_get_params(const ecs_backend *be) { return &be->params; }

void ecs_backend_free(ecs_backend *be) {
  if (be) be->iface.free(be);
}

const char *ecs_backend_name(ecs_backend *be) { return be->iface.get_name(be); }
ecs_device *ecs_backend_device(ecs_backend *be) { return be->device; }

ecs_status ecs_backend_prepare(ecs_backend *be, ecs_op *op, ecs_err *err) {
  if (be->iface.prepare) return be->iface.prepare(be, op, err);
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    ecs_tensor *t = op->dst[i];
    if (!t) continue;
    t->layout = ECS_LAYOUT_PLAIN;
    t->layout_desc = NULL;
    t->nbytes = ecs_plain_nbytes(t);
  }
  return ECS_OK;
}

ecs_status ecs_backend_compute(ecs_backend *be, ecs_op *op, ecs_err *err) {
  return be->iface.compute(be, op, err);
}

ecs_status ecs_backend_synchronize(ecs_backend *be, ecs_err *err) {
  return be->iface.synchronize ? be->iface.synchronize(be, err) : ECS_OK;
}

void ecs_backend_get_stats(ecs_backend *be, ecs_backend_stats *out) {
  memset(out, 0, sizeof *out);
  if (be->iface.get_stats) be->iface.get_stats(be, out);
}

void ecs_backend_reset_stats(ecs_backend *be) {
  if (be->iface.reset_stats) be->iface.reset_stats(be);
}

/* ---- buffers ---------------------------------------------------------------------------- */

const char *ecs_buffer_type_name(ecs_buffer_type *buft) { return buft->iface.get_name(buft); }
size_t ecs_buffer_type_alignment(ecs_buffer_type *buft) { return buft->iface.get_alignment(buft); }

ecs_buffer *ecs_buffer_alloc(ecs_buffer_type *buft, size_t size, ecs_err *err) {
  return buft->iface.alloc_buffer(buft, size, err);
}

void ecs_buffer_free(ecs_buffer *buf) {
  if (buf) buf->iface.free_buffer(buf);
}

void *ecs_buffer_base(ecs_buffer *buf) { return buf->iface.get_base(buf); }
size_t ecs_buffer_size(ecs_buffer *buf) { return buf->size; }
ecs_buffer_type *ecs_buffer_get_type(ecs_buffer *buf) { return buf->buft; }

static ecs_status check_range(const ecs_tensor *t, size_t off, size_t n, ecs_err *err) {
  if (!t->buffer || !t->data)
    return ecs_err_set(err, ECS_ERR_INVALID, "tensor '%s' has no memory", t->name);
  if (off > t->nbytes || n > t->nbytes - off)
    return ecs_err_set(err, ECS_ERR_INVALID, "copy of %zu bytes at %zu is outside tensor '%s' (%zu bytes)",
                       n, off, t->name, t->nbytes);
  return ECS_OK;
}

ecs_status ecs_tensor_set_bytes(ecs_tensor *t, const void *src, size_t off, size_t n, ecs_err *err) {
  ecs_status st = check_range(t, off, n, err);
  if (st != ECS_OK) return st;
  return t->buffer->iface.set(t->buffer, (char *)t->data + off, src, n, err);
}

ecs_status ecs_tensor_get_bytes(const ecs_tensor *t, void *dst, size_t off, size_t n, ecs_err *err) {
  ecs_status st = check_range(t, off, n, err);
  if (st != ECS_OK) return st;
  return t->buffer->iface.get(t->buffer, dst, (const char *)t->data + off, n, err);
}

ecs_status ecs_tensor_memset(ecs_tensor *t, int value, ecs_err *err) {
  ecs_status st = check_range(t, 0, t->nbytes, err);
  if (st != ECS_OK) return st;
  return t->buffer->iface.memset(t->buffer, t->data, value, t->nbytes, err);
}

/* ---- host memory ------------------------------------------------------------------------ */

#define HOST_ALIGN 64

static void host_free(ecs_buffer *buf) {
  free(buf->context);
  free(buf);
}
static void *host_base(ecs_buffer *buf) { return buf->context; }
static ecs_status host_set(ecs_buffer *buf, void *addr, const void *host, size_t n, ecs_err *err) {
  (void)buf, (void)err;
  memcpy(addr, host, n);
  return ECS_OK;
}
static ecs_status host_get(ecs_buffer *buf, void *host, const void *addr, size_t n, ecs_err *err) {
  (void)buf, (void)err;
  memcpy(host, addr, n);
  return ECS_OK;
}
static ecs_status host_memset(ecs_buffer *buf, void *addr, int value, size_t n, ecs_err *err) {
  (void)buf, (void)err;
  memset(addr, value, n);
  return ECS_OK;
}

static const char *host_buft_name(ecs_buffer_type *buft) {
  (void)buft;
  return "host";
}
static size_t host_buft_align(ecs_buffer_type *buft) {
  (void)buft;
  return HOST_ALIGN;
}

static ecs_buffer *host_alloc(ecs_buffer_type *buft, size_t size, ecs_err *err) {
  size_t rounded = (size + HOST_ALIGN - 1) / HOST_ALIGN * HOST_ALIGN;
  void *mem = aligned_alloc(HOST_ALIGN, rounded ? rounded : HOST_ALIGN);
  ecs_buffer *buf = calloc(1, sizeof *buf);
  if (!mem || !buf) {
    free(mem);
    free(buf);
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate %zu bytes of host memory", size);
    return NULL;
  }
  buf->iface = (struct ecs_buffer_i){
      .free_buffer = host_free,
      .get_base = host_base,
      .set = host_set,
      .get = host_get,
      .memset = host_memset,
  };
  buf->buft = buft;
  buf->context = mem;
  buf->size = size;
  return buf;
}

static ecs_buffer_type g_host_buft = {
    .iface =
        {
            .get_name = host_buft_name,
            .alloc_buffer = host_alloc,
            .get_alignment = host_buft_align,
        },
    .device = NULL,
    .context = NULL,
};

ecs_buffer_type *ecs_host_buffer_type(void) { return &g_host_buft; }
