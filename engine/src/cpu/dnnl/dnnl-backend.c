/* dnnl-backend.c - the "cpu" backend on oneDNN: layouts, interning, the primitive cache, memory
 * and the entry points. Plans run in dnnl-exec.c, weights are cached in dnnl-weights.c, each
 * op's threads are chosen in dnnl-team.c, and the builders are dnnl-ops.c and dnnl-conv.c.
 *
 * Layouts. Convolutions choose their own ("any") destination format: nChw8c on AVX2; on
 * AVX-512 nhwc for forward convolutions (oneDNN's brgemm kernel) and nChw16c for backward ones;
 * element-wise ops, batch norm, pooling, resize, softmax and the sums keep their input's format,
 * so activations stay blocked from layer to layer. Reorders happen only where a primitive wants
 * another format than the tensor has (counted in stats.reorders): at the network's edges
 * (ECS_OP_COPY to a plain tensor, a reference fallback) or where two operands disagree.
 *
 * Dilated convolutions. On AVX2, oneDNN 2.6 runs 3x3 convolutions with dilation 4 (resnet38d's
 * b6/b7) on its GEMM kernel, which wants plain nchw: a reorder on each side and a slow kernel.
 * Their forward instead runs as space-to-batch (dnnl-phase.c): the map split into 2x2 phase
 * sub-images in its blocked layout, batched, convolved with dilation 2 on the jit kernel and
 * interleaved back; the tensors keep their blocked layout, and the split and merge are not
 * reorders. dn_phase_factor says where this applies and why only there.
 *
 * Narrow maps. The jit kernel works along output rows; on 7-wide rows (a ResNet's last stage
 * at batch > 1) it stays far from its peak. The forward of such a batch runs with its images
 * side by side in wide maps, zero columns between them (dnnl-phase.c again; ~12% more
 * multiply-adds over the gaps for 7x7, still 1.1-1.3x faster for 512 channels at batch 8 and
 * 16). As many images go to a wide map as keep its output rows within 64 columns (8 of 7x7,
 * 4 of 14x14 (0.98-1.08x), 2 of 28x28 (1.01x)). A cap, because rows of a whole batch lost
 * (8 of 56x56 in 455 columns: 0.82x; 8 of 14x14 in 119: 0.92x); 16 of 7x7 in 127 columns
 * measured 1.00-1.34x on a shared machine, against 1.26-1.32x as two rows of 63. Only where
 * oneDNN runs the wide map on its direct jit kernel (AVX2): its AVX-512 brgemm kernel walks
 * narrow rows well, and side by side measured 0.86-0.95x there. ecs_backend_params.pack_width
 * sets the width (--dnnl-pack), ECS_OPT_OFF turns it off.
 *
 * Descriptions are interned: each distinct memory description gets one copy, owned by the
 * backend until it is freed, so a tensor's layout_desc can point at it and cache keys can use
 * its small id. The table only grows; it holds one entry per distinct shape and format seen.
 *
 * Primitives are cached per (op, parameters, operand descriptions) in a bounded hash map with
 * LRU eviction; each miss counts in stats.primitives. A failed creation is cached too (as
 * NULL) so that an op oneDNN cannot do falls back without retrying every call.
 *
 * Threads: each call sets the calling thread's OpenMP team size before building or running
 * primitives, so backends in different threads keep their shares: the backend's n_threads, or
 * one thread for an op too small to gain from a team or while other processes contend for the
 * cores (dnnl-team.c). The team is part of every primitive's cache key, so a primitive always
 * runs with the team it was built for (oneDNN sizes some scratchpads and work splits by it).
 *
 * Memory: the scratchpad (user-managed in every primitive) and the temporaries for reorders are
 * per backend and grow to the largest need, never freed per call. */
#include "dnnl-impl.h"

#include "../ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PRIM_CAPACITY 768
#define OP_REORDER    (ECS_OP_COUNT + 1)

struct centry {
  dn_key key;
  int team; /* the team it was built for and runs with */
  uint64_t hash;
  dw_prim *prim; /* NULL: oneDNN cannot do it */
  struct centry *chain, *prev, *next;
};
typedef struct centry centry;

dw_engine *dn_engine(ecs_dnnl *d) {
  return d->eng;
}
int dn_threads(ecs_dnnl *d) {
  return d->team;
}
int dn_pack_width(ecs_dnnl *d) {
  return d->pack_w;
}
int dn_wino_tile(ecs_dnnl *d) {
  return d->wino;
}
int dn_wino_forced(ecs_dnnl *d) {
  return d->wino_forced;
}

/* Measured on AVX2 (tests/bench: bench_engine dilated): oneDNN 2.6 runs dilation 2 on its jit
 * kernel about as fast as the dense 3x3, but dilation 4 on its GEMM path, 1.2-1.5x slower in
 * the forward than a dilation-2 jit convolution on the 2x2 phases (which beat a full split into
 * 4x4 dense phases by ~10%). Splitting dilation 2 lost 6-18%, and the backward ops gained
 * nothing (0.97-1.01x at dilation 4), so by default only the forward of even dilations >= 4 is
 * split, by dil / 2. The split runs only where oneDNN has its direct jit kernel for the split
 * convolution (phase_prim in dnnl-conv.c): on AVX-512 it picks its brgemm kernel, which runs
 * dilation 4 as fast as the split would (0.94-1.04x measured on Zen 4), so nothing is split
 * there. ecs_backend_params.phases = N forces a split by N for every conv op where that kernel
 * exists (tests). */
int64_t dn_phase_factor(ecs_dnnl *d, int type, int64_t dil) {
  if (d->phases == 0 || dil < 2) return 1;
  if (d->phases > 0) return dil % d->phases == 0 ? d->phases : 1;
  return type == ECS_OP_CONV2D && dil >= 4 && dil % 2 == 0 ? dil / 2 : 1;
}

/* ---- interning -------------------------------------------------------------------------- */

const dw_md *dn_intern(ecs_dnnl *d, const dw_md *md, int32_t *id) {
  uint64_t h = dw_md_hash(md);
  int32_t *b = &d->md_bucket[h % MD_BUCKETS];
  for (int32_t i = *b; i >= 0; i = d->md_chain[i])
    if (d->md_hash[i] == h && dw_md_equal(d->mds[i], md)) {
      if (id) *id = i;
      return d->mds[i];
    }
  if (d->n_md == d->cap_md) {
    int32_t cap = d->cap_md ? d->cap_md * 2 : 256;
    dw_md **m = realloc(d->mds, sizeof *m * (size_t)cap);
    if (m) d->mds = m;
    uint64_t *hh = realloc(d->md_hash, sizeof *hh * (size_t)cap);
    if (hh) d->md_hash = hh;
    int32_t *c = realloc(d->md_chain, sizeof *c * (size_t)cap);
    if (c) d->md_chain = c;
    if (!m || !hh || !c) return NULL;
    d->cap_md = cap;
  }
  dw_md *copy = dw_md_dup(md);
  if (!copy) return NULL;
  int32_t i = d->n_md++;
  d->mds[i] = copy;
  d->md_hash[i] = h;
  d->md_chain[i] = *b;
  *b = i;
  if (id) *id = i;
  return copy;
}

static const dw_md *intern_owned(ecs_dnnl *d, dw_md *tmp, int32_t *id) {
  if (!tmp) return NULL;
  const dw_md *r = dn_intern(d, tmp, id);
  dw_md_free(tmp);
  return r;
}

const dw_md *dn_plain(ecs_dnnl *d, int nd, const int64_t *dims, int32_t *id) {
  return intern_owned(d, dw_md_plain(nd, dims), id);
}

const dw_md *dn_any(ecs_dnnl *d, int nd, const int64_t *dims, int32_t *id) {
  return intern_owned(d, dw_md_any(nd, dims), id);
}

const dw_md *dn_tensor_md(ecs_dnnl *d, const ecs_tensor *t, const dw_md *view, int32_t *id) {
  if (t->layout == ECS_LAYOUT_PLAIN) {
    if (t->type != ECS_F32 || t->nd < 1 || t->nd > ECS_MAX_DIMS) return NULL;
    if (view) return dn_intern(d, view, id);
    return dn_plain(d, t->nd, t->ne, id);
  }
  if (t->layout != ECS_LAYOUT_DNNL || !t->layout_desc) return NULL;
  const dw_md *md = t->layout_desc;
  if (!dw_md_is_f32(md) || dw_md_ndims(md) != t->nd) return NULL;
  for (int i = 0; i < t->nd; i++)
    if (dw_md_dim(md, i) != t->ne[i]) return NULL;
  return dn_intern(d, md, id);
}

/* ---- primitive cache -------------------------------------------------------------------- */

void dn_key_init(dn_key *k, int op, int variant) {
  memset(k, 0, sizeof *k);
  k->v[k->n++] = op;
  k->v[k->n++] = variant;
}

/* Keys are sized for the largest op (a convolution: about 40 words); running out would let two
 * ops share a primitive, so it is a bug, not a condition to handle. */
void dn_key_i(dn_key *k, int64_t v) {
  ECS_ASSERT(k->n + 2 <= DN_KEY_MAX);
  k->v[k->n++] = (int32_t)(v & 0xffffffff);
  k->v[k->n++] = (int32_t)(v >> 32);
}

void dn_key_f(dn_key *k, float v) {
  int32_t bits;
  memcpy(&bits, &v, sizeof bits);
  ECS_ASSERT(k->n < DN_KEY_MAX);
  k->v[k->n++] = bits;
}

static uint64_t key_hash(const dn_key *k, int team) {
  uint64_t h = 1469598103934665603ull ^ (uint64_t)team;
  for (int i = 0; i < k->n; i++) {
    h ^= (uint32_t)k->v[i];
    h *= 1099511628211ull;
  }
  return h;
}

static void lru_unlink(ecs_dnnl *d, centry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    d->lru_head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    d->lru_tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push(ecs_dnnl *d, centry *e) {
  e->prev = NULL;
  e->next = d->lru_head;
  if (d->lru_head) d->lru_head->prev = e;
  d->lru_head = e;
  if (!d->lru_tail) d->lru_tail = e;
}

dw_prim *dn_cache_get(ecs_dnnl *d, const dn_key *k, int *found) {
  uint64_t h = key_hash(k, d->team);
  for (centry *e = d->pbucket[h % PRIM_BUCKETS]; e; e = e->chain)
    if (e->hash == h && e->team == d->team && e->key.n == k->n &&
        memcmp(e->key.v, k->v, sizeof(int32_t) * (size_t)k->n) == 0) {
      lru_unlink(d, e);
      lru_push(d, e);
      *found = 1;
      return e->prim;
    }
  *found = 0;
  return NULL;
}

static void evict_oldest(ecs_dnnl *d) {
  centry *e = d->lru_tail;
  if (!e) return;
  lru_unlink(d, e);
  for (centry **pp = &d->pbucket[e->hash % PRIM_BUCKETS]; *pp; pp = &(*pp)->chain)
    if (*pp == e) {
      *pp = e->chain;
      break;
    }
  dw_prim_free(e->prim);
  free(e);
  d->n_prims--;
}

ecs_status dn_cache_put(ecs_dnnl *d, const dn_key *k, dw_prim *p, ecs_err *err) {
  centry *e = calloc(1, sizeof *e);
  if (!e) {
    dw_prim_free(p);
    return ecs_err_set(err, ECS_ERR_NOMEM, "cannot grow the primitive cache");
  }
  if (d->n_prims >= PRIM_CAPACITY) evict_oldest(d);
  e->key = *k;
  e->team = d->team;
  e->hash = key_hash(k, d->team);
  e->prim = p;
  e->chain = d->pbucket[e->hash % PRIM_BUCKETS];
  d->pbucket[e->hash % PRIM_BUCKETS] = e;
  lru_push(d, e);
  d->n_prims++;
  if (p) d->stats.primitives++;
  return ECS_OK;
}

/* ---- memory ----------------------------------------------------------------------------- */

void *dn_temp(ecs_dnnl *d, size_t n, ecs_err *err) {
  if (d->n_tmp >= N_TEMPS) {
    ecs_err_set(err, ECS_ERR_NOMEM, "op needs more than %d temporaries", N_TEMPS);
    return NULL;
  }
  int i = d->n_tmp++;
  if (d->tmp_size[i] < n) {
    size_t sz = (n + 4095) / 4096 * 4096;
    void *p = aligned_alloc(64, sz);
    if (!p) {
      ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate %zu bytes of temporary memory", n);
      return NULL;
    }
    free(d->tmp[i]);
    d->tmp[i] = p;
    d->tmp_size[i] = sz;
  }
  return d->tmp[i];
}

static void *scratch_for(ecs_dnnl *d, const dw_prim *p, ecs_err *err) {
  size_t n = dw_prim_scratchpad_size(p);
  if (n == 0) return NULL;
  if (d->scratch_size < n) {
    size_t sz = (n + 4095) / 4096 * 4096;
    void *s = aligned_alloc(64, sz);
    if (!s) {
      ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a %zu-byte scratchpad", n);
      return NULL;
    }
    free(d->scratch);
    d->scratch = s;
    d->scratch_size = sz;
  }
  return d->scratch;
}

ecs_status dn_run(ecs_dnnl *d, dw_prim *p, void *const *ptrs, ecs_err *err) {
  void *s = scratch_for(d, p, err);
  if (dw_prim_scratchpad_size(p) && !s) return err ? err->status : ECS_ERR_NOMEM;
  return dw_exec(d->eng, p, ptrs, s, err);
}

/* A reorder runs alone when it is small (dn_team_alone), else with the op's team, which it
 * leaves as it found it. */
static ecs_status reorder_in(ecs_dnnl *d, const dw_md *src, const void *sp, const dw_md *dst,
                             void *dp, ecs_err *err);

ecs_status dn_reorder(ecs_dnnl *d, const dw_md *src, const void *sp, const dw_md *dst, void *dp,
                      ecs_err *err) {
  int team = d->team;
  if (team != 1 && dn_team_alone(dw_md_size(dst))) dn_set_team(d, 1);
  ecs_status st = reorder_in(d, src, sp, dst, dp, err);
  if (d->team != team) dn_set_team(d, team);
  return st;
}

static ecs_status reorder_in(ecs_dnnl *d, const dw_md *src, const void *sp, const dw_md *dst,
                             void *dp, ecs_err *err) {
  int32_t si, di;
  if (!dn_intern(d, src, &si) || !dn_intern(d, dst, &di))
    return ecs_err_set(err, ECS_ERR_NOMEM, "cannot intern a layout");
  dn_key k;
  dn_key_init(&k, OP_REORDER, 0);
  dn_key_i(&k, si);
  dn_key_i(&k, di);
  int found;
  dw_prim *p = dn_cache_get(d, &k, &found);
  if (!found) {
    p = dw_reorder(d->eng, src, dst, err);
    if (!p) return err ? err->status : ECS_ERR_BACKEND;
    ecs_status st = dn_cache_put(d, &k, p, err);
    if (st != ECS_OK) return st;
  }
  if (!p) return ecs_err_set(err, ECS_ERR_BACKEND, "oneDNN cannot reorder between these layouts");
  void *ptrs[DW_ARG_COUNT] = {0};
  ptrs[DW_SRC] = (void *)sp;
  ptrs[DW_DST] = dp;
  d->stats.reorders++;
  return dn_run(d, p, ptrs, err);
}

/* ---- plans ------------------------------------------------------------------------------ */

/* ---- entry points ----------------------------------------------------------------------- */

void dn_set_team(ecs_dnnl *d, int team) {
  d->team = team;
#ifdef _OPENMP
  omp_set_num_threads(team);
#endif
}

static void make_plain(ecs_tensor *t) {
  t->layout = ECS_LAYOUT_PLAIN;
  t->layout_desc = NULL;
  t->nbytes = ecs_plain_nbytes(t);
}

ecs_status ecs_dnnl_prepare(ecs_dnnl *d, ecs_op *op, ecs_err *err) {
  int lasting, team = dn_team_of(d->n_threads, op, &lasting);
  dn_set_team(d, d->n_threads > 1 ? dn_load_team(&d->load, team, lasting) : 1);
  d->n_tmp = 0;
  dn_plan pl = {0};
  ecs_err local = {0};
  ecs_status st = op->type == ECS_OP_COPY ? ECS_ERR_UNSUPPORTED : dn_build(d, op, &pl, &local);
  if (st != ECS_OK && st != ECS_ERR_UNSUPPORTED) {
    if (err) *err = local;
    return st;
  }
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i]) make_plain(op->dst[i]);
  if (st == ECS_ERR_UNSUPPORTED) return ECS_OK;
  for (int i = 0; i < pl.n_out; i++) {
    dn_bind *b = &pl.out[i];
    const dw_md *pmd = dw_prim_md(pl.prim, b->arg);
    if (!b->t || b->keep_plain || !pmd) continue;
    if (b->phased) {
      dn_phase g;
      if (!(pmd = dn_phase_full(d, &pl, b->t, pmd, &g))) return dn_phase_unusable(op, err);
    }
    const dw_md *plain = dn_plain(d, b->t->nd, b->t->ne, NULL);
    if (plain && dw_md_equal(pmd, plain)) continue;
    const dw_md *in = dn_intern(d, pmd, NULL);
    if (!in) return ecs_err_set(err, ECS_ERR_NOMEM, "cannot intern a layout");
    b->t->layout = ECS_LAYOUT_DNNL;
    b->t->layout_desc = in;
    b->t->nbytes = dw_md_size(in);
  }
  return ECS_OK;
}

ecs_status ecs_dnnl_compute(ecs_dnnl *d, ecs_op *op, ecs_err *err) {
  int lasting, team = dn_team_of(d->n_threads, op, &lasting);
  dn_set_team(d, d->n_threads > 1 ? dn_load_team(&d->load, team, lasting) : 1);
  d->stats.solo_ops += d->team == 1 && d->n_threads > 1;
  d->n_tmp = 0;
  ecs_status st;
  if (op->type == ECS_OP_COPY) {
    st = dn_copy(d, op, err);
  } else {
    dn_plan pl = {0};
    ecs_err local = {0};
    st = dn_build(d, op, &pl, &local);
    if (st == ECS_OK)
      st = dn_exec(d, op, &pl, err);
    else if (st == ECS_ERR_UNSUPPORTED)
      st = dn_fallback(d, op, err);
    else if (err)
      *err = local;
  }
  if (d->n_threads > 1) dn_load_done(&d->load, d->n_threads);
  if (st == ECS_OK) d->stats.ops++;
  return st;
}

static int plain_supported(const ecs_op *op) {
  ecs_op o = *op;
  ecs_tensor sc[ECS_OP_MAX_SRC], dc[ECS_OP_MAX_DST];
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && op->src[i]->layout == ECS_LAYOUT_DNNL) {
      sc[i] = *op->src[i];
      sc[i].layout = ECS_LAYOUT_PLAIN;
      sc[i].layout_desc = NULL;
      o.src[i] = &sc[i];
    }
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i]) {
      dc[i] = *op->dst[i];
      dc[i].layout = ECS_LAYOUT_PLAIN;
      dc[i].layout_desc = NULL;
      o.dst[i] = &dc[i];
    }
  return ecs_ref_supports(&o);
}

int dn_can(const ecs_op *op);

int ecs_dnnl_supports(const ecs_op *op) {
  return dn_can(op) || plain_supported(op);
}

ecs_dnnl *ecs_dnnl_create(int n_threads, const ecs_backend_params *p, ecs_err *err) {
  ecs_dnnl *d = calloc(1, sizeof *d);
  if (!d) {
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate the oneDNN backend");
    return NULL;
  }
  const ecs_backend_params none = {0};
  if (!p) p = &none;
  d->n_threads = n_threads > 0 ? n_threads : 1;
  d->team = d->n_threads;
  d->phases = p->phases == 0 ? -1 : p->phases < 0 ? 0 : p->phases;
  d->pack_w = p->pack_width == 0 ? 64 : p->pack_width < 0 ? 0 : p->pack_width;
  d->wino = p->winograd == 0 ? 4 : p->winograd == 2 || p->winograd == 4 ? p->winograd : 0;
  d->wino_forced = p->winograd > 0;
  if (!dn_wino_cpu()) d->wino = 0;
  for (int i = 0; i < MD_BUCKETS; i++)
    d->md_bucket[i] = -1;
  d->eng = dw_engine_create(err);
  if (!d->eng) {
    free(d);
    return NULL;
  }
  return d;
}

void ecs_dnnl_free(ecs_dnnl *d) {
  if (!d) return;
  while (d->lru_tail)
    evict_oldest(d);
  dn_weights_free(d);
  for (int32_t i = 0; i < d->n_md; i++)
    dw_md_free(d->mds[i]);
  free(d->mds);
  free(d->md_hash);
  free(d->md_chain);
  for (int i = 0; i < N_TEMPS; i++)
    free(d->tmp[i]);
  free(d->scratch);
  dw_engine_free(d->eng);
  free(d);
}

void ecs_dnnl_get_stats(const ecs_dnnl *d, ecs_backend_stats *out) {
  *out = d->stats;
}
void ecs_dnnl_reset_stats(ecs_dnnl *d) {
  d->stats = (ecs_backend_stats){0};
}
