/* dnnl-weights.c - the weight caches of the oneDNN backend.
 *
 * Weights live plain in parameter stores that several backends read. A primitive that wants
 * them blocked gets a reordered copy from this backend's weight cache, keyed by (data pointer,
 * shape, target format) and validated by a fingerprint of sampled values, so a store freed and
 * reallocated at the same address with other values is re-reordered. Parameters that train
 * (requires_grad, not frozen and not fixed) change every step: they are reordered on every call
 * and never cached, because an update may leave the sampled values unchanged (dead units, zero
 * gradient). A folded inference model's parameters are fixed (ecs_model_fold_bn): cached.
 * The sample therefore guards against a different store, not against partial in-place edits of
 * a frozen one: code that rewrites frozen weights in place must free the backend or mark them
 * trainable.
 *
 * Winograd transforms (dnnl-wino.c) of weights that do not train are cached the same way but
 * shared by every backend of the process (each worker of a served model has its own backend,
 * and a transform takes 4x the memory of the 3x3 weights): one per weight tensor and values,
 * under a lock, freed when the last backend that uses it lets it go. */
#include "dnnl-impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Reordered weights kept per backend; beyond this the least recently used go (a served model
 * replaced by a new version leaves its old entries behind until then). */
#define WEIGHT_CACHE_MAX ((size_t)2 << 30)

/* Winograd-transformed weights, shared by every backend of the process (each worker of a served
 * model has its own backend, and the transforms take 4x the memory of the 3x3 weights): one per
 * weight tensor and values, freed when the last backend that uses it lets it go. */
typedef struct shared_w {
  const void *ptr;
  int64_t ne[ECS_MAX_DIMS];
  int32_t tag;
  uint64_t fingerprint;
  void *data;
  int refs;
  struct shared_w *next;
} shared_w;

static pthread_mutex_t g_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_w *g_shared;

struct wentry {
  const void *ptr;
  int64_t ne[ECS_MAX_DIMS];
  int32_t md_id;
  uint64_t fingerprint;
  void *data;
  size_t size;
  shared_w *sh;        /* data belongs to this shared entry (else to the wentry) */
  struct wentry *next; /* most recently used first */
};
typedef struct wentry wentry;

static uint64_t fingerprint(const ecs_tensor *t) {
  const uint32_t *v = t->data;
  int64_t n = ecs_nelements(t);
  uint64_t h = (uint64_t)n;
  for (int i = 0; i < 32 && n > 0; i++) {
    int64_t j = (int64_t)((double)i * (double)(n - 1) / 31.0);
    h = (h ^ v[j]) * 1099511628211ull;
  }
  return h;
}

static void shared_release(shared_w *s) {
  pthread_mutex_lock(&g_shared_lock);
  if (--s->refs == 0) {
    shared_w **pp = &g_shared;
    while (*pp != s)
      pp = &(*pp)->next;
    *pp = s->next;
    free(s->data);
    free(s);
  }
  pthread_mutex_unlock(&g_shared_lock);
}

static void wentry_free(wentry *e) {
  if (e->sh)
    shared_release(e->sh);
  else
    free(e->data);
  free(e);
}

/* The entry for t's data seen as `id` (an interned layout, or a negative tag for other derived
 * forms), moved to the front; NULL when there is none. */
static wentry *wfind(ecs_dnnl *d, const ecs_tensor *t, int32_t id) {
  wentry *e = d->weights, **link = &d->weights;
  for (; e; link = &e->next, e = e->next)
    if (e->ptr == t->data && e->md_id == id && memcmp(e->ne, t->ne, sizeof e->ne) == 0) break;
  if (e) {
    *link = e->next;
    e->next = d->weights;
    d->weights = e;
  }
  return e;
}

/* A new front entry for t as `id` of `size` bytes (data: a new buffer, or NULL to leave it to
 * the caller), evicting the least recently used beyond WEIGHT_CACHE_MAX. */
static wentry *wpush(ecs_dnnl *d, const ecs_tensor *t, int32_t id, size_t size, int own,
                     ecs_err *err) {
  wentry *e = calloc(1, sizeof *e);
  size = (size + 63) / 64 * 64;
  void *buf = own ? aligned_alloc(64, size) : NULL;
  if (!e || (own && !buf)) {
    free(e);
    free(buf);
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot cache reordered weights");
    return NULL;
  }
  e->ptr = t->data;
  memcpy(e->ne, t->ne, sizeof e->ne);
  e->md_id = id;
  e->data = buf;
  e->size = size;
  e->next = d->weights;
  d->weights = e;
  d->weight_bytes += size;
  /* evict from the tail, never the entry just made */
  while (d->weight_bytes > WEIGHT_CACHE_MAX && e->next) {
    wentry **pp = &e->next;
    while ((*pp)->next)
      pp = &(*pp)->next;
    d->weight_bytes -= (*pp)->size;
    wentry_free(*pp);
    *pp = NULL;
  }
  return e;
}

void *dn_weight(ecs_dnnl *d, ecs_tensor *t, const dw_md *tmd, const dw_md *want, ecs_err *err) {
  if (dw_md_equal(tmd, want)) return t->data;
  if (dn_weight_changes(t)) {
    void *p = dn_temp(d, dw_md_size(want), err);
    if (!p || dn_reorder(d, tmd, t->data, want, p, err) != ECS_OK) return NULL;
    return p;
  }
  int32_t id;
  if (!dn_intern(d, want, &id)) return NULL;
  uint64_t fp = fingerprint(t);
  wentry *e = wfind(d, t, id);
  if (e && e->fingerprint == fp) return e->data;
  if (!e && !(e = wpush(d, t, id, dw_md_size(want), 1, err))) return NULL;
  if (dn_reorder(d, tmd, t->data, want, e->data, err) != ECS_OK) {
    e->fingerprint = 0;
    return NULL;
  }
  e->fingerprint = fp;
  return e->data;
}

/* t's Winograd transform for the plan's tile (dnnl-wino.c); plain weights that are not being
 * trained only, which the builder checked. Held in the process-wide shared entries (tags -2 and
 * -4), which this backend's cache references like its reordered weights. */
void *dn_wino_weight(ecs_dnnl *d, ecs_tensor *t, const dn_wino *g, ecs_err *err) {
  size_t size = dn_wino_weight_bytes(g);
  uint64_t fp = fingerprint(t);
  int32_t tag = -g->m;
  wentry *e = wfind(d, t, tag);
  if (e && e->fingerprint == fp) return e->data;
  /* the shared entry for these values, made by the first backend that needs it (under the
   * lock, so that concurrent workers transform once) */
  pthread_mutex_lock(&g_shared_lock);
  shared_w *s = g_shared;
  while (s && !(s->ptr == t->data && s->tag == tag && s->fingerprint == fp &&
                memcmp(s->ne, t->ne, sizeof s->ne) == 0))
    s = s->next;
  if (!s) {
    s = calloc(1, sizeof *s);
    void *buf = aligned_alloc(64, (size + 63) / 64 * 64);
    if (!s || !buf) {
      pthread_mutex_unlock(&g_shared_lock);
      free(s);
      free(buf);
      ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate %zu bytes of transformed weights", size);
      return NULL;
    }
    dn_wino_weights(g, t->data, buf);
    *s = (shared_w){.ptr = t->data, .tag = tag, .fingerprint = fp, .data = buf, .next = g_shared};
    memcpy(s->ne, t->ne, sizeof s->ne);
    g_shared = s;
  }
  s->refs++;
  pthread_mutex_unlock(&g_shared_lock);
  if (!e && !(e = wpush(d, t, tag, size, 0, err))) {
    shared_release(s);
    return NULL;
  }
  if (e->sh) shared_release(e->sh); /* the values changed: let the old transform go */
  e->sh = s;
  e->data = s->data;
  e->fingerprint = fp;
  return e->data;
}

/* Transformed weights shared between backends, for tests: entries and references. */
void ecs_dnnl_shared_weights(int *entries, int *refs) {
  pthread_mutex_lock(&g_shared_lock);
  *entries = *refs = 0;
  for (shared_w *s = g_shared; s; s = s->next)
    (*entries)++, *refs += s->refs;
  pthread_mutex_unlock(&g_shared_lock);
}

void dn_weights_free(ecs_dnnl *d) {
  for (wentry *e = d->weights, *n; e; e = n) {
    n = e->next;
    wentry_free(e);
  }
  d->weights = NULL;
  d->weight_bytes = 0;
}
