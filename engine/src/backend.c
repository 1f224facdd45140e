/* backend.c - the device registry and the thin wrappers over each backend's function table.
 *
 * The CPU devices register once, lazily, under pthread_once. The CUDA backend is a module
 * (libecsnet-cuda.so, backend-impl.h) loaded on first need: a "cuda"/"cuda:N" lookup loads it
 * whatever it takes, so that its absence or the lack of a GPU can be told precisely; "auto" and
 * the enumeration (ecs_device_count, ecs_device_get) load it only when the NVIDIA driver library
 * is there, since without it no GPU can answer and the module would map cudart, cuBLAS and cuDNN
 * for nothing. A lookup of "cpu" or "cpu-ref" never loads it. Devices are only ever appended,
 * so an index stays valid once read. The wrappers skip optional entries. */
#include "backend-impl.h"
#include "ecs/path.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ECS_MAX_DEVICES 32

static ecs_device *g_devices[ECS_MAX_DEVICES];
static atomic_size_t g_n_devices; /* entries below it are written before it grows */
static pthread_mutex_t g_register_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

void ecs_device_register(ecs_device *dev) {
  pthread_mutex_lock(&g_register_mu);
  size_t n = atomic_load_explicit(&g_n_devices, memory_order_relaxed);
  if (n < ECS_MAX_DEVICES) {
    g_devices[n] = dev;
    atomic_store_explicit(&g_n_devices, n + 1, memory_order_release);
  }
  pthread_mutex_unlock(&g_register_mu);
}

static size_t n_devices(void) {
  pthread_once(&g_cpu_once, ecs_cpu_register);
  return atomic_load_explicit(&g_n_devices, memory_order_acquire);
}

/* ---- the CUDA module ---------------------------------------------------------------------- */

#define MODULE_NAME "libecsnet-cuda.so"

enum { MOD_UNTRIED, MOD_NO_DRIVER, MOD_DONE };

static struct {
  pthread_mutex_t mu;
  int state;
  int loaded;        /* the module loaded and ran */
  ecs_status status; /* MOD_DONE: ECS_OK when the module added devices, else why not */
  char why[1024];    /* the reason, one line */
  char path[4096];   /* the caller's search path (ecs_backend_set_module_path) */
} g_cuda = {.mu = PTHREAD_MUTEX_INITIALIZER};

ecs_status ecs_backend_set_module_path(const char *path, ecs_err *err) {
  if (!path) path = "";
  pthread_mutex_lock(&g_cuda.mu);
  ecs_status st = ECS_OK;
  if (g_cuda.state == MOD_DONE)
    st = ecs_err_set(err, ECS_ERR_INVALID, "the backend modules are loaded already");
  else if (strlen(path) >= sizeof g_cuda.path)
    st = ecs_err_set(err, ECS_ERR_INVALID, "the backend module path is longer than %zu bytes",
                     sizeof g_cuda.path - 1);
  else
    snprintf(g_cuda.path, sizeof g_cuda.path, "%s", path);
  pthread_mutex_unlock(&g_cuda.mu);
  return st;
}

#ifdef ECS_USE_CUDA
/* Folders to look in, in order, without repeats. */
typedef struct dirs {
  char d[8][PATH_MAX];
  int n;
} dirs;

static void dirs_add(dirs *ds, const char *dir) {
  char real[PATH_MAX];
  if (!dir || !*dir || ds->n == 8) return;
  if (realpath(dir, real)) dir = real; /* a folder that does not exist is still named */
  for (int i = 0; i < ds->n; i++)
    if (strcmp(ds->d[i], dir) == 0) return;
  if (ecs_path_join(ds->d[ds->n], sizeof ds->d[0], NULL, dir, NULL) == ECS_OK) ds->n++;
}

/* dir/../lib and dir, for the folder holding file */
static void dirs_add_beside(dirs *ds, const char *file) {
  char dir[PATH_MAX], lib[PATH_MAX + 8];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (!slash) return;
  *slash = '\0';
  snprintf(lib, sizeof lib, "%s/../lib", dir);
  dirs_add(ds, lib);
  dirs_add(ds, dir);
}

static int driver_present(void) {
  /* what cudart itself opens; kept open, the module is loaded next */
  return dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) != NULL;
}

/* Takes cand when it exists; else adds label to the places looked in. */
static int take(const char *cand, const char *label, char *file, size_t file_n, char *looked,
                size_t looked_n) {
  if (access(cand, F_OK) == 0) {
    snprintf(file, file_n, "%s", cand);
    return 1;
  }
  size_t used = strlen(looked);
  if (used + 1 < looked_n)
    snprintf(looked + used, looked_n - used, "%s%s", used ? ", " : "", label);
  return 0;
}

/* Finds, loads and registers the module; leaves g_cuda.status and g_cuda.why. */
static void cuda_module_load(void) {
  char file[PATH_MAX + 64] = "", looked[900] = "", cand[PATH_MAX + 64];
  if (g_cuda.path[0]) {
    /* the caller's list, and nothing else: entries are folders or the module's file itself */
    char list[sizeof g_cuda.path];
    snprintf(list, sizeof list, "%s", g_cuda.path);
    struct stat sb;
    for (char *save, *e = strtok_r(list, ":", &save); e; e = strtok_r(NULL, ":", &save)) {
      if (stat(e, &sb) == 0 && !S_ISDIR(sb.st_mode))
        snprintf(cand, sizeof cand, "%s", e);
      else
        snprintf(cand, sizeof cand, "%s/%s", e, MODULE_NAME);
      if (take(cand, e, file, sizeof file, looked, sizeof looked)) break;
    }
  } else {
    dirs ds = {.n = 0};
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = '\0';
      dirs_add_beside(&ds, exe);
    }
    Dl_info info; /* the engine inside a shared library rather than the program */
    if (dladdr((void *)ecs_device_find, &info) && info.dli_fname && info.dli_fname[0] == '/')
      dirs_add_beside(&ds, info.dli_fname);
    dirs_add(&ds, ECS_MODULE_BUILD_DIR);
    dirs_add(&ds, ECS_MODULE_INSTALL_DIR);
    for (int i = 0; i < ds.n; i++) {
      snprintf(cand, sizeof cand, "%s/%s", ds.d[i], MODULE_NAME);
      if (take(cand, ds.d[i], file, sizeof file, looked, sizeof looked)) break;
    }
  }
  g_cuda.status = ECS_ERR_UNSUPPORTED;
  if (!file[0]) {
    snprintf(g_cuda.why, sizeof g_cuda.why,
             "the CUDA backend module %s was not found (looked in %s)", MODULE_NAME, looked);
    return;
  }
  void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(g_cuda.why, sizeof g_cuda.why, "the CUDA backend module cannot be loaded: %s",
             e ? e : file);
    return;
  }
  ecs_module_register_fn reg = (ecs_module_register_fn)dlsym(h, ECS_MODULE_ENTRY);
  if (!reg) {
    snprintf(g_cuda.why, sizeof g_cuda.why, "%s is not an ecsnet backend module (no %s)", file,
             ECS_MODULE_ENTRY);
    dlclose(h);
    return;
  }
  ecs_module_host host = {.abi = ECS_MODULE_ABI,
                          .version = ecs_version(),
                          .sizes = ecs_module_sizes_here(),
                          .device_register = ecs_device_register};
  ecs_err e = {0};
  g_cuda.loaded = 1;
  g_cuda.status = reg(&host, &e);
  if (g_cuda.status != ECS_OK)
    snprintf(g_cuda.why, sizeof g_cuda.why, "%s", e.msg[0] ? e.msg : ecs_status_str(g_cuda.status));
  /* never unloaded: the CUDA libraries it pulled in are not made to be unloaded */
}
#endif

/* probe ("auto", enumeration): load only where the driver library is; else load regardless */
static void cuda_ensure(int probe) {
  n_devices(); /* the CPU devices come first */
  pthread_mutex_lock(&g_cuda.mu);
  if (g_cuda.state == MOD_DONE || (probe && g_cuda.state == MOD_NO_DRIVER)) {
    pthread_mutex_unlock(&g_cuda.mu);
    return;
  }
#ifdef ECS_USE_CUDA
  int driver = driver_present();
  if (probe && !driver) {
    g_cuda.state = MOD_NO_DRIVER;
  } else {
    cuda_module_load();
    g_cuda.state = MOD_DONE;
    /* cudart words a missing driver as "driver version is insufficient": say what it is */
    if (g_cuda.loaded && g_cuda.status == ECS_ERR_UNSUPPORTED && !driver)
      snprintf(g_cuda.why, sizeof g_cuda.why,
               "no CUDA GPU answered (the NVIDIA driver, libcuda.so.1, is not installed)");
  }
#else
  g_cuda.state = MOD_DONE;
  g_cuda.status = ECS_ERR_UNSUPPORTED;
  snprintf(g_cuda.why, sizeof g_cuda.why, "this build has no CUDA backend");
#endif
  pthread_mutex_unlock(&g_cuda.mu);
}

size_t ecs_device_count(void) {
  cuda_ensure(1);
  return n_devices();
}

ecs_device *ecs_device_get(size_t i) {
  return i < ecs_device_count() ? g_devices[i] : NULL;
}

static ecs_device *by_name(const char *name) {
  size_t n = n_devices();
  for (size_t i = 0; i < n; i++)
    if (strcmp(ecs_device_name(g_devices[i]), name) == 0) return g_devices[i];
  return NULL;
}

ecs_device *ecs_device_find(const char *name, ecs_err *err) {
  if (!name || !*name || strcmp(name, "auto") == 0) {
    cuda_ensure(1);
    size_t n = n_devices();
    for (size_t i = 0; i < n; i++)
      if (!g_devices[i]->iface.is_host) return g_devices[i];
    return by_name("cpu");
  }
  int cuda = strcmp(name, "cuda") == 0 || strncmp(name, "cuda:", 5) == 0;
  if (cuda) cuda_ensure(0);
  ecs_device *dev = by_name(strcmp(name, "cuda") == 0 ? "cuda:0" : name);
  if (dev) return dev;
  if (!cuda) {
    ecs_err_set(err, ECS_ERR_INVALID, "unknown device '%s' (expected auto, cpu or cuda[:N])", name);
    return NULL;
  }
  pthread_mutex_lock(&g_cuda.mu);
  ecs_status st = g_cuda.status;
  char why[sizeof g_cuda.why];
  snprintf(why, sizeof why, "%s", g_cuda.why);
  pthread_mutex_unlock(&g_cuda.mu);
  if (st != ECS_OK) {
    ecs_err_set(err, ECS_ERR_UNSUPPORTED, "device '%s' requested, but %s", name, why);
  } else {
    char have[256] = "";
    size_t n = n_devices(), used = 0;
    for (size_t i = 0; i < n && used < sizeof have; i++)
      if (!g_devices[i]->iface.is_host)
        used += snprintf(have + used, sizeof have - used, "%s%s", used ? ", " : "",
                         ecs_device_name(g_devices[i]));
    ecs_err_set(err, ECS_ERR_UNSUPPORTED, "device '%s' not found: the CUDA GPUs here are %s", name,
                have);
  }
  return NULL;
}

const char *ecs_device_name(ecs_device *dev) {
  return dev->iface.get_name(dev);
}
const char *ecs_device_description(ecs_device *dev) {
  return dev->iface.get_description(dev);
}
int ecs_device_is_host(ecs_device *dev) {
  return dev->iface.is_host;
}

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

ecs_buffer_type *ecs_device_buffer_type(ecs_device *dev) {
  return dev->iface.get_buffer_type(dev);
}

ecs_backend *ecs_backend_init(ecs_device *dev, const ecs_backend_params *params, ecs_err *err) {
  ecs_backend_params def = {.n_threads = 0};
  if (!params) params = &def;
  ecs_backend *be = dev->iface.init_backend(dev, params, err);
  if (be) be->params = *params;
  return be;
}

const ecs_backend_params *ecs_backend_get_params(const ecs_backend *be) {
  return &be->params;
}

void ecs_backend_free(ecs_backend *be) {
  if (be) be->iface.free(be);
}

const char *ecs_backend_name(ecs_backend *be) {
  return be->iface.get_name(be);
}
ecs_device *ecs_backend_device(ecs_backend *be) {
  return be->device;
}

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

const char *ecs_buffer_type_name(ecs_buffer_type *buft) {
  return buft->iface.get_name(buft);
}
size_t ecs_buffer_type_alignment(ecs_buffer_type *buft) {
  return buft->iface.get_alignment(buft);
}

ecs_buffer *ecs_buffer_alloc(ecs_buffer_type *buft, size_t size, ecs_err *err) {
  return buft->iface.alloc_buffer(buft, size, err);
}

void ecs_buffer_free(ecs_buffer *buf) {
  if (buf) buf->iface.free_buffer(buf);
}

void *ecs_buffer_base(ecs_buffer *buf) {
  return buf->iface.get_base(buf);
}
size_t ecs_buffer_size(ecs_buffer *buf) {
  return buf->size;
}
ecs_buffer_type *ecs_buffer_get_type(ecs_buffer *buf) {
  return buf->buft;
}

static ecs_status check_range(const ecs_tensor *t, size_t off, size_t n, ecs_err *err) {
  if (!t->buffer || !t->data)
    return ecs_err_set(err, ECS_ERR_INVALID, "tensor '%s' has no memory", t->name);
  if (off > t->nbytes || n > t->nbytes - off)
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "copy of %zu bytes at %zu is outside tensor '%s' (%zu bytes)", n, off,
                       t->name, t->nbytes);
  return ECS_OK;
}

ecs_status ecs_tensor_set_bytes(ecs_tensor *t, const void *src, size_t off, size_t n,
                                ecs_err *err) {
  ecs_status st = check_range(t, off, n, err);
  if (st != ECS_OK) return st;
  return t->buffer->iface.set(t->buffer, (char *)t->data + off, src, n, err);
}

ecs_status ecs_tensor_get_bytes(const ecs_tensor *t, void *dst, size_t off, size_t n,
                                ecs_err *err) {
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
static void *host_base(ecs_buffer *buf) {
  return buf->context;
}
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

ecs_buffer_type *ecs_host_buffer_type(void) {
  return &g_host_buft;
}
