/* cpu-backend.c - the CPU devices.
 *
 * "cpu-ref" runs every op on the plain-C reference kernels (ref.h): the oracle the other
 * backends are tested against, plain layouts throughout. "cpu" is the production CPU backend:
 * on oneDNN (dnnl/dnnl-backend.h) where the build has it, which falls back to the reference
 * kernels op by op; without oneDNN it is the reference kernels again. */
#include "../backend-impl.h"
#include "ref.h"
#ifdef ECS_USE_DNNL
#include "dnnl/dnnl-backend.h"
#endif

#include <stdlib.h>
#include <unistd.h>

typedef struct cpu_backend_ctx {
  int n_threads;
  ecs_backend_stats stats;
#ifdef ECS_USE_DNNL
  ecs_dnnl *dnnl; /* "cpu" only */
#endif
} cpu_backend_ctx;

typedef struct cpu_device_ctx {
  const char *name;
  const char *description;
  int use_dnnl;
} cpu_device_ctx;

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static const char *cpu_be_name(ecs_backend *be) {
  return ((cpu_device_ctx *)be->device->context)->name;
}

static void cpu_be_free(ecs_backend *be) {
#ifdef ECS_USE_DNNL
  ecs_dnnl_free(((cpu_backend_ctx *)be->context)->dnnl);
#endif
  free(be->context);
  free(be);
}

#ifdef ECS_USE_DNNL
static ecs_status dnnl_be_prepare(ecs_backend *be, ecs_op *op, ecs_err *err) {
  return ecs_dnnl_prepare(((cpu_backend_ctx *)be->context)->dnnl, op, err);
}
static ecs_status dnnl_be_compute(ecs_backend *be, ecs_op *op, ecs_err *err) {
  return ecs_dnnl_compute(((cpu_backend_ctx *)be->context)->dnnl, op, err);
}
static void dnnl_be_stats(ecs_backend *be, ecs_backend_stats *out) {
  ecs_dnnl_get_stats(((cpu_backend_ctx *)be->context)->dnnl, out);
}
static void dnnl_be_reset_stats(ecs_backend *be) {
  ecs_dnnl_reset_stats(((cpu_backend_ctx *)be->context)->dnnl);
}
#endif

static ecs_status cpu_be_compute(ecs_backend *be, ecs_op *op, ecs_err *err) {
  cpu_backend_ctx *c = be->context;
  ecs_status st = ecs_ref_compute(op, c->n_threads, err);
  if (st == ECS_OK) {
    c->stats.ops++;
    c->stats.ref_ops++;
  }
  return st;
}

static void cpu_be_stats(ecs_backend *be, ecs_backend_stats *out) {
  *out = ((cpu_backend_ctx *)be->context)->stats;
}

static void cpu_be_reset_stats(ecs_backend *be) {
  cpu_backend_ctx *c = be->context;
  c->stats = (ecs_backend_stats){0};
}

static ecs_backend *cpu_init_backend(ecs_device *dev, const ecs_backend_params *params,
                                     ecs_err *err) {
  ecs_backend *be = calloc(1, sizeof *be);
  cpu_backend_ctx *c = calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a CPU backend");
    return NULL;
  }
  c->n_threads = params->n_threads > 0 ? params->n_threads : default_threads();
  be->iface = (struct ecs_backend_i){
      .get_name = cpu_be_name,
      .free = cpu_be_free,
      .compute = cpu_be_compute,
      .get_stats = cpu_be_stats,
      .reset_stats = cpu_be_reset_stats,
  };
  be->device = dev;
  be->context = c;
#ifdef ECS_USE_DNNL
  if (((cpu_device_ctx *)dev->context)->use_dnnl) {
    c->dnnl = ecs_dnnl_create(c->n_threads, params, err);
    if (!c->dnnl) {
      cpu_be_free(be);
      return NULL;
    }
    be->iface.prepare = dnnl_be_prepare;
    be->iface.compute = dnnl_be_compute;
    be->iface.get_stats = dnnl_be_stats;
    be->iface.reset_stats = dnnl_be_reset_stats;
  }
#endif
  return be;
}

static const char *cpu_dev_name(ecs_device *dev) {
  return ((cpu_device_ctx *)dev->context)->name;
}
static const char *cpu_dev_desc(ecs_device *dev) {
  return ((cpu_device_ctx *)dev->context)->description;
}
static ecs_buffer_type *cpu_dev_buft(ecs_device *dev) {
  (void)dev;
  return ecs_host_buffer_type();
}
static int cpu_dev_supports(ecs_device *dev, const ecs_op *op) {
#ifdef ECS_USE_DNNL
  if (((cpu_device_ctx *)dev->context)->use_dnnl) return ecs_dnnl_supports(op);
#else
  (void)dev;
#endif
  return ecs_ref_supports(op);
}

static cpu_device_ctx g_ref_ctx = {"cpu-ref", "CPU, plain-C reference kernels", 0};
#ifdef ECS_USE_DNNL
static cpu_device_ctx g_cpu_ctx = {"cpu", "CPU, oneDNN with reference fallbacks", 1};
#else
static cpu_device_ctx g_cpu_ctx = {"cpu", "CPU, plain-C reference kernels (built without oneDNN)",
                                   0};
#endif

static const struct ecs_device_i g_cpu_dev_iface = {
    .get_name = cpu_dev_name,
    .get_description = cpu_dev_desc,
    .init_backend = cpu_init_backend,
    .get_buffer_type = cpu_dev_buft,
    .supports_op = cpu_dev_supports,
    .is_host = 1,
};

static ecs_device g_ref_dev = {.iface = g_cpu_dev_iface, .context = &g_ref_ctx};
static ecs_device g_cpu_dev = {.iface = g_cpu_dev_iface, .context = &g_cpu_ctx};

void ecs_cpu_register(void) {
  ecs_device_register(&g_cpu_dev);
  ecs_device_register(&g_ref_dev);
}
