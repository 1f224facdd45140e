/* dnnl-impl.h - what the files of the oneDNN backend share: dnnl-backend.c (caches, layouts,
 * entry points), dnnl-exec.c (running plans), dnnl-weights.c (weight caches), dnnl-team.c
 * (threads per op) and the builders, one per op family (dnnl-ops.c, dnnl-conv.c).
 *
 * An op runs as a plan: the primitive (from the backend's cache) and bindings from the op's
 * tensors to the primitive's argument roles. Builders only describe; the executor reorders any
 * input whose layout differs from what the primitive expects into a temporary (counted in
 * stats.reorders), takes weights from the per-backend weight cache, and writes outputs through
 * a temporary when the destination tensor was laid out differently. A builder that cannot serve
 * an op returns ECS_ERR_UNSUPPORTED and the op runs on a reference kernel instead. */
#ifndef ECS_DNNL_IMPL_H
#define ECS_DNNL_IMPL_H

#include "dnnl-backend.h"
#include "dnnl-wrap.h"

enum {
  BK_ACT,    /* tensor in any layout; reordered to the primitive's when they differ */
  BK_WEIGHT, /* plain parameter; its reordered copy comes from the weight cache */
  BK_RAW,    /* tensor bytes passed as they are (plain vectors, workspaces) */
  BK_TEMP,   /* backend scratch of the primitive's size, for the plan's hooks */
  BK_WINO,   /* plain 3x3 weights; their Winograd transform comes from the weight cache */
};

typedef struct dn_bind {
  dw_arg arg;
  int kind;
  ecs_tensor *t;     /* NULL for BK_TEMP */
  const dw_md *view; /* for plain tensors: read them as this description (other rank) */
  int keep_plain;    /* outputs: prepare leaves the tensor plain */
  int phased;        /* the primitive takes t split into the plan's phases (dnnl-phase.c) */
} dn_bind;

#define DN_MAX_BIND (DW_MAX_MSRC + 6)
#define DN_KEY_MAX  64

typedef struct dn_key {
  int n;
  int32_t v[DN_KEY_MAX];
} dn_key;

struct dn_plan;
typedef void (*dn_hook)(ecs_dnnl *d, const ecs_op *op, struct dn_plan *pl, void *const *ptrs);

typedef struct dn_plan {
  dw_prim *prim;
  dn_bind in[DN_MAX_BIND];
  int n_in;
  dn_bind out[4];
  int n_out;
  dn_hook pre;  /* after inputs are bound, before execution */
  dn_hook post; /* after execution, before outputs are reordered into their tensors */
  /* Convolutions that run on rearranged activations (dnnl-phase.c): dilated ones as
   * space-to-batch, phase[] phases per dim; or a batch of narrow maps side by side, `per`
   * images to a wide map, slot columns apart (0: neither). */
  int64_t phase[2], slot, per;
  /* A forward 3x3 convolution run by dnnl-wino.c instead of the primitive, whose layouts it
   * takes (wino.m 0: not) */
  struct dn_wino {
    int m;    /* output tile side, 2 or 4 */
    int relu; /* ReLU after the bias */
    int64_t n, ic, oc, h, w, ho, wo, pad_t, pad_l, dil;
    int64_t xb, yb; /* channel blocks of x's and y's layouts (dw_md_cblock): 8, 16, or C (nhwc) */
  } wino;
} dn_plan;

typedef struct dn_wino dn_wino;

/* dnnl-wino.c: Winograd F(m x m, 3 x 3) on activations (x, y) laid out [N][C/B][H][W][B] with
 * B a multiple of 8 (nChw8c, nChw16c) or B = C (nhwc, any C), with plain bias. */
int dn_wino_layout(int64_t block, int64_t channels); /* dnnl-wino.c reads and writes it */
int dn_wino_cpu(void);                   /* the CPU runs dnnl-wino.c's kernels (AVX2 and FMA) */
int64_t dn_wino_tiles(const dn_wino *g); /* output tiles of the batch, over all phases */
size_t dn_wino_weight_bytes(const dn_wino *g);
/* w: the plain (OC, IC, 3, 3) weights; u: dn_wino_weight_bytes, 32-byte aligned */
void dn_wino_weights(const dn_wino *g, const float *w, float *u);
size_t dn_wino_scratch_bytes(const dn_wino *g, int n_threads);
void dn_wino_run(const dn_wino *g, const float *x, const float *u, const float *bias, float *y,
                 void *scratch, int n_threads);

/* One tensor's rearrangement (dnnl-phase.c), [n][cb][h][w][block] in full. Space-to-batch
 * (slot 0): [n * dh * dw][cb][hs][ws][block]. Side by side (slot > 0, dh = dw = 1):
 * [ceil(n / per)][cb][h][ws][block], image i in wide map i / per, its columns from
 * (i % per) * slot, zeros between and in the slots past the last image. */
typedef struct dn_phase {
  int64_t n, cb, h, w, block, dh, dw, hs, ws, slot, per;
} dn_phase;

void dn_phase_split(const dn_phase *g, const float *src, float *dst, int n_threads);
void dn_phase_merge(const dn_phase *g, const float *src, float *dst, int n_threads);

/* dnnl-team.c: the team an op runs with. By size: n_threads, or 1 for an op too small to gain
 * from a team (and dn_team_alone for a reorder of so many bytes); *lasting: the op is long
 * enough to keep its team under load. By load: one backend's view of whether other processes
 * contend for the cores (dn_load_team before an op, with the team by size: the team to run it
 * with; dn_load_done after it), for backends of several threads. */
int dn_team_of(int n_threads, const ecs_op *op, int *lasting);
int dn_team_alone(size_t bytes);
typedef struct dn_load {
  int started, unavailable; /* unavailable: no schedstat, teams by size only */
  int cap;                  /* most threads an op may take while the cores are contended; 0: all */
  int hold, hold_next;      /* windows left under the cap before a trial with more; the next hold */
  long tid;                 /* the thread the window's delay is read for */
  double t0, busy_ms;       /* the current op's start; the window's computing time */
  uint64_t delay0;          /* the thread's run-queue delay at the window's start, ns */
} dn_load;
int dn_load_team(dn_load *l, int team, int lasting);
void dn_load_done(dn_load *l, int n_threads);

/* ---- the backend's state ----------------------------------------------------------------
 * dnnl-backend.c: interning, the primitive cache, memory and the entry points; dnnl-exec.c:
 * plans run, the reference fallback, copies; dnnl-weights.c: the weight caches. */
#define N_TEMPS      24
#define MD_BUCKETS   4096
#define PRIM_BUCKETS 1024

struct ecs_dnnl {
  dw_engine *eng;
  int n_threads;
  int team;        /* threads of the op being run (dnnl-team.c), at most n_threads */
  dn_load load;    /* whether other processes contend for the cores */
  int pack_w;      /* widest output row of maps side by side (0: never) */
  int phases;      /* 0 never split, N > 1 split by N, -1: where it gains (dn_phase_factor) */
  int wino;        /* Winograd tile of forward 3x3 convolutions, 0: never */
  int wino_forced; /* the tile was asked for: every convolution it can run, not where it gains */
  ecs_backend_stats stats;
  /* interned descriptions */
  dw_md **mds;
  uint64_t *md_hash;
  int32_t *md_chain;
  int32_t n_md, cap_md;
  int32_t md_bucket[MD_BUCKETS];
  /* primitive cache */
  struct centry *pbucket[PRIM_BUCKETS];
  struct centry *lru_head, *lru_tail;
  int n_prims;
  /* reordered weights (dnnl-weights.c), most recently used first */
  struct wentry *weights;
  size_t weight_bytes;
  /* the current op's temporaries and the scratchpad, grown to the largest need */
  void *tmp[N_TEMPS];
  size_t tmp_size[N_TEMPS];
  int n_tmp;
  void *scratch;
  size_t scratch_size;
};

/* dnnl-backend.c: memory and execution for the other files. dn_temp: a temporary of n bytes,
 * valid until the next op; dn_run: a primitive with the backend's scratchpad; dn_reorder: from
 * one layout to another (stats.reorders), alone when small (dnnl-team.c); dn_set_team: the
 * OpenMP team of what follows. */
void *dn_temp(ecs_dnnl *d, size_t n, ecs_err *err);
ecs_status dn_run(ecs_dnnl *d, dw_prim *p, void *const *ptrs, ecs_err *err);
ecs_status dn_reorder(ecs_dnnl *d, const dw_md *src, const void *sp, const dw_md *dst, void *dp,
                      ecs_err *err);
void dn_set_team(ecs_dnnl *d, int team);

/* dnnl-exec.c: a built plan run (inputs bound, reordered or split, outputs written back); an op
 * on the reference kernels through plain stand-ins; ECS_OP_COPY as a reorder. For a phased
 * binding, dn_phase_full gives t's full-shape description in the primitive's format and the
 * split geometry (NULL when that format is not one dnnl-phase.c moves). */
ecs_status dn_exec(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err);
ecs_status dn_fallback(ecs_dnnl *d, const ecs_op *op, ecs_err *err);
ecs_status dn_copy(ecs_dnnl *d, const ecs_op *op, ecs_err *err);
const dw_md *dn_phase_full(ecs_dnnl *d, const dn_plan *pl, const ecs_tensor *t, const dw_md *pmd,
                           dn_phase *g);
ecs_status dn_phase_unusable(const ecs_op *op, ecs_err *err);

/* dnnl-weights.c: t's data as the primitive wants it (tmd: as it is), reordered once and cached
 * unless it trains; its Winograd transform for the plan's tile, shared by the backends of the
 * process; every entry of the backend let go. */
void *dn_weight(ecs_dnnl *d, ecs_tensor *t, const dw_md *tmd, const dw_md *want, ecs_err *err);
/* Whether t's values may change between calls (a parameter that trains and is not fixed): then
 * no derived copy of it is kept. */
static inline int dn_weight_changes(const ecs_tensor *t) {
  return t->requires_grad && !t->frozen && !t->fixed;
}
void *dn_wino_weight(ecs_dnnl *d, ecs_tensor *t, const dn_wino *g, ecs_err *err);
void dn_weights_free(ecs_dnnl *d);

/* backend services for the builders (dnnl-backend.c) */
dw_engine *dn_engine(ecs_dnnl *d);
int dn_threads(ecs_dnnl *d); /* the team of the op being run (dnnl-team.c) */

/* The phase factor (a divisor of dil) by which a stride-1 convolution of dilation dil is split
 * into sub-images, leaving dilation dil / factor; 1: not split. */
int64_t dn_phase_factor(ecs_dnnl *d, int op_type, int64_t dil);
/* Forward convolutions of a batch of narrow maps run side by side in wide maps of output rows at
 * most this wide (0: never). */
int dn_pack_width(ecs_dnnl *d);
/* The Winograd tile for forward 3x3 convolutions (2 or 4; 0: never), and whether it was asked
 * for (then every convolution it can run runs so, not only where it is the faster). */
int dn_wino_tile(ecs_dnnl *d);
int dn_wino_forced(ecs_dnnl *d);
/* Interned description of t as it is laid out (plain: dense of its dims, or `view` when given);
 * NULL when t's layout is not one this backend reads. */
const dw_md *dn_tensor_md(ecs_dnnl *d, const ecs_tensor *t, const dw_md *view, int32_t *id);
/* Interned plain / "any" descriptions of given dims (the same pointer for equal dims). */
const dw_md *dn_plain(ecs_dnnl *d, int nd, const int64_t *dims, int32_t *id);
const dw_md *dn_any(ecs_dnnl *d, int nd, const int64_t *dims, int32_t *id);
/* Interns md (copying it), returning the backend's pointer. */
const dw_md *dn_intern(ecs_dnnl *d, const dw_md *md, int32_t *id);

void dn_key_init(dn_key *k, int op, int variant);
void dn_key_i(dn_key *k, int64_t v);
void dn_key_f(dn_key *k, float v);
/* The cached primitive for k; *found = 0 on a miss (then call dn_cache_put with the new one,
 * NULL meaning "oneDNN cannot do this": remembered so the next call falls back at once). */
dw_prim *dn_cache_get(ecs_dnnl *d, const dn_key *k, int *found);
ecs_status dn_cache_put(ecs_dnnl *d, const dn_key *k, dw_prim *p, ecs_err *err);

/* the builders (dnnl-ops.c, dnnl-conv.c): fill pl for op, or return ECS_ERR_UNSUPPORTED */
ecs_status dn_build(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err);

#endif
