/* dnnl-exec.c - running a plan of the oneDNN backend, the reference fallback and copies.
 *
 * A builder (dnnl-ops.c, dnnl-conv.c) describes an op as a plan: a primitive and bindings from
 * the op's tensors to its arguments (dnnl-impl.h). dn_exec binds them: an input whose layout
 * differs from the primitive's is reordered into a temporary (stats.reorders), weights come from
 * the weight caches (dnnl-weights.c), phased inputs are split into their sub-images or wide maps
 * (dnnl-phase.c) and phased outputs merged back after the primitive, outputs laid out otherwise
 * than the primitive writes them go through a temporary and a reorder; a Winograd plan runs
 * dnnl-wino.c on the bindings instead of its primitive. An op no builder serves runs on the
 * reference kernels (dn_fallback) through plain stand-ins of its blocked tensors
 * (stats.ref_ops). ECS_OP_COPY, the edge between blocked and plain tensors, is one reorder. */
#include "dnnl-impl.h"

#include <string.h>

#include "../ref.h"

static ecs_status too_small(const ecs_tensor *t, size_t need, ecs_err *err) {
  return ecs_err_set(err, ECS_ERR_INVALID, "tensor '%s' has %zu bytes, its layout needs %zu",
                     t->name, t->nbytes, need);
}

static ecs_status unreadable(const ecs_tensor *t, const ecs_op *op, ecs_err *err) {
  return ecs_err_set(err, ECS_ERR_INVALID,
                     "%s: tensor '%s' has a layout the cpu backend cannot read",
                     ecs_op_name(op->type), t->name);
}

/* For a phased binding: t's full-shape description in the primitive's (split) format, and
 * the split geometry; NULL when that format is not one dnnl-phase.c moves. */
const dw_md *dn_phase_full(ecs_dnnl *d, const dn_plan *pl, const ecs_tensor *t, const dw_md *pmd,
                           dn_phase *g) {
  int64_t blk = dw_md_cblock(pmd);
  int64_t nsub =
      pl->slot ? (t->ne[0] + pl->per - 1) / pl->per : t->ne[0] * pl->phase[0] * pl->phase[1];
  if (!blk || t->nd != 4 || dw_md_dim(pmd, 0) != nsub) return NULL;
  dw_md *like = dw_md_like(pmd, 4, t->ne);
  const dw_md *full = like ? dn_intern(d, like, NULL) : NULL;
  dw_md_free(like);
  if (!full) return NULL;
  *g = (dn_phase){.n = t->ne[0],
                  .h = t->ne[2],
                  .w = t->ne[3],
                  .block = blk,
                  .dh = pl->slot ? 1 : pl->phase[0],
                  .dw = pl->slot ? 1 : pl->phase[1],
                  .hs = dw_md_dim(pmd, 2),
                  .ws = dw_md_dim(pmd, 3),
                  .slot = pl->slot,
                  .per = pl->per};
  g->cb = (int64_t)(dw_md_size(full) / sizeof(float)) / (g->n * g->h * g->w * blk);
  if (dw_md_size(pmd) != sizeof(float) * (size_t)(nsub * g->cb * g->hs * g->ws * blk)) return NULL;
  if (g->slot
          ? g->hs != g->h || g->slot < g->w || g->per < 1 || g->ws != (g->per - 1) * g->slot + g->w
          : g->hs * g->dh < g->h || g->ws * g->dw < g->w)
    return NULL;
  return full;
}

ecs_status dn_phase_unusable(const ecs_op *op, ecs_err *err) {
  return ecs_err_set(err, ECS_ERR_BACKEND,
                     "%s: the rearranged primitive has a layout it cannot split",
                     ecs_op_name(op->type));
}

ecs_status dn_exec(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  for (int i = 0; i < pl->n_in + pl->n_out; i++) {
    const ecs_tensor *t = i < pl->n_in ? pl->in[i].t : pl->out[i - pl->n_in].t;
    if (t && !t->data)
      return ecs_err_set(err, ECS_ERR_INVALID, "%s: tensor '%s' has no memory",
                         ecs_op_name(op->type), t->name);
  }
  void *ptrs[DW_ARG_COUNT] = {0};
  struct {
    const dw_md *tmd, *pmd;
    void *tp, *pp;
  } back[4];
  int n_back = 0;
  struct {
    dn_phase g;
    const dw_md *tmd, *full;
    void *tp, *sub;
  } merge[4];
  int n_merge = 0;
  ecs_status st;
  for (int i = 0; i < pl->n_in; i++) {
    dn_bind *b = &pl->in[i];
    const dw_md *pmd = dw_prim_md(pl->prim, b->arg);
    if (!pmd) continue;
    if (b->kind == BK_TEMP) {
      if (!(ptrs[b->arg] = dn_temp(d, dw_md_size(pmd), err)))
        return err ? err->status : ECS_ERR_NOMEM;
      continue;
    }
    if (b->kind == BK_RAW) {
      if (b->t->nbytes < dw_md_size(pmd)) return too_small(b->t, dw_md_size(pmd), err);
      ptrs[b->arg] = b->t->data;
      continue;
    }
    const dw_md *tmd = dn_tensor_md(d, b->t, b->view, NULL);
    if (!tmd) return unreadable(b->t, op, err);
    if (b->t->nbytes < dw_md_size(tmd)) return too_small(b->t, dw_md_size(tmd), err);
    if (b->phased) {
      dn_phase g;
      const dw_md *full = dn_phase_full(d, pl, b->t, pmd, &g);
      if (!full) return dn_phase_unusable(op, err);
      const void *src = b->t->data;
      if (!dw_md_equal(tmd, full)) {
        void *p = dn_temp(d, dw_md_size(full), err);
        if (!p) return err ? err->status : ECS_ERR_NOMEM;
        if ((st = dn_reorder(d, tmd, b->t->data, full, p, err)) != ECS_OK) return st;
        src = p;
      }
      if (!(ptrs[b->arg] = dn_temp(d, dw_md_size(pmd), err)))
        return err ? err->status : ECS_ERR_NOMEM;
      dn_phase_split(&g, src, ptrs[b->arg], d->team);
    } else if (b->kind == BK_WINO) {
      if (!(ptrs[b->arg] = dn_wino_weight(d, b->t, &pl->wino, err)))
        return err ? err->status : ECS_ERR_NOMEM;
    } else if (b->kind == BK_WEIGHT) {
      if (!(ptrs[b->arg] = dn_weight(d, b->t, tmd, pmd, err)))
        return err ? err->status : ECS_ERR_BACKEND;
    } else if (dw_md_equal(tmd, pmd)) {
      ptrs[b->arg] = b->t->data;
    } else {
      void *p = dn_temp(d, dw_md_size(pmd), err);
      if (!p) return err ? err->status : ECS_ERR_NOMEM;
      if ((st = dn_reorder(d, tmd, b->t->data, pmd, p, err)) != ECS_OK) return st;
      ptrs[b->arg] = p;
    }
  }
  for (int i = 0; i < pl->n_out; i++) {
    dn_bind *b = &pl->out[i];
    const dw_md *pmd = dw_prim_md(pl->prim, b->arg);
    if (!pmd) continue;
    if (b->kind == BK_TEMP) {
      if (!(ptrs[b->arg] = dn_temp(d, dw_md_size(pmd), err)))
        return err ? err->status : ECS_ERR_NOMEM;
      continue;
    }
    if (b->kind == BK_RAW) {
      if (b->t->nbytes < dw_md_size(pmd)) return too_small(b->t, dw_md_size(pmd), err);
      ptrs[b->arg] = b->t->data;
      continue;
    }
    const dw_md *tmd = dn_tensor_md(d, b->t, b->view, NULL);
    if (!tmd) return unreadable(b->t, op, err);
    if (b->t->nbytes < dw_md_size(tmd)) return too_small(b->t, dw_md_size(tmd), err);
    if (b->phased) {
      if (n_merge == 4) return dn_phase_unusable(op, err);
      const dw_md *full = dn_phase_full(d, pl, b->t, pmd, &merge[n_merge].g);
      if (!full) return dn_phase_unusable(op, err);
      if (!(ptrs[b->arg] = dn_temp(d, dw_md_size(pmd), err)))
        return err ? err->status : ECS_ERR_NOMEM;
      merge[n_merge].tmd = tmd;
      merge[n_merge].full = full;
      merge[n_merge].tp = b->t->data;
      merge[n_merge].sub = ptrs[b->arg];
      n_merge++;
    } else if (dw_md_equal(tmd, pmd)) {
      ptrs[b->arg] = b->t->data;
    } else {
      void *p = dn_temp(d, dw_md_size(pmd), err);
      if (!p) return err ? err->status : ECS_ERR_NOMEM;
      back[n_back].tmd = tmd;
      back[n_back].pmd = pmd;
      back[n_back].tp = b->t->data;
      back[n_back].pp = p;
      n_back++;
      ptrs[b->arg] = p;
    }
  }
  if (pl->pre) pl->pre(d, op, pl, ptrs);
  if (pl->wino.m) {
    void *s = dn_temp(d, dn_wino_scratch_bytes(&pl->wino, d->team), err);
    if (!s) return err ? err->status : ECS_ERR_NOMEM;
    dn_wino_run(&pl->wino, ptrs[DW_SRC], ptrs[DW_WEIGHTS], ptrs[DW_BIAS], ptrs[DW_DST], s, d->team);
    d->stats.wino_ops++;
  } else if ((st = dn_run(d, pl->prim, ptrs, err)) != ECS_OK) {
    return st;
  }
  if (pl->post) pl->post(d, op, pl, ptrs);
  for (int i = 0; i < n_merge; i++) {
    int direct = dw_md_equal(merge[i].tmd, merge[i].full);
    void *p = direct ? merge[i].tp : dn_temp(d, dw_md_size(merge[i].full), err);
    if (!p) return err ? err->status : ECS_ERR_NOMEM;
    dn_phase_merge(&merge[i].g, merge[i].sub, p, d->team);
    if (!direct && (st = dn_reorder(d, merge[i].full, p, merge[i].tmd, merge[i].tp, err)) != ECS_OK)
      return st;
  }
  if (pl->phase[0] || pl->slot) d->stats.phased_ops++;
  for (int i = 0; i < n_back; i++)
    if ((st = dn_reorder(d, back[i].pmd, back[i].pp, back[i].tmd, back[i].tp, err)) != ECS_OK)
      return st;
  return ECS_OK;
}

/* ---- reference fallback ----------------------------------------------------------------- */

/* A plain stand-in for a blocked tensor (same shape, bytes in a temporary). */
static ecs_tensor *plain_twin(ecs_dnnl *d, const ecs_op *op, ecs_tensor *t, ecs_tensor *twin,
                              const dw_md **md, ecs_err *err) {
  *md = dn_tensor_md(d, t, NULL, NULL);
  if (!*md) {
    unreadable(t, op, err);
    return NULL;
  }
  *twin = *t;
  twin->layout = ECS_LAYOUT_PLAIN;
  twin->layout_desc = NULL;
  twin->nbytes = ecs_plain_nbytes(t);
  twin->data = dn_temp(d, twin->nbytes, err);
  return twin->data ? twin : NULL;
}

ecs_status dn_fallback(ecs_dnnl *d, const ecs_op *op, ecs_err *err) {
  ecs_op o = *op;
  ecs_tensor sc[ECS_OP_MAX_SRC], dc[ECS_OP_MAX_DST];
  const dw_md *dmd[ECS_OP_MAX_DST] = {0};
  ecs_status st;
  for (int i = 0; i < ECS_OP_MAX_SRC; i++) {
    ecs_tensor *t = op->src[i];
    if (!t || t->layout == ECS_LAYOUT_PLAIN) continue;
    const dw_md *md;
    if (!(o.src[i] = plain_twin(d, op, t, &sc[i], &md, err)))
      return err ? err->status : ECS_ERR_INVALID;
    const dw_md *pmd = dn_plain(d, t->nd, t->ne, NULL);
    if (!pmd) return ecs_err_set(err, ECS_ERR_NOMEM, "cannot describe a plain tensor");
    if ((st = dn_reorder(d, md, t->data, pmd, sc[i].data, err)) != ECS_OK) return st;
  }
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    ecs_tensor *t = op->dst[i];
    if (!t || t->layout == ECS_LAYOUT_PLAIN) continue;
    if (!(o.dst[i] = plain_twin(d, op, t, &dc[i], &dmd[i], err)))
      return err ? err->status : ECS_ERR_INVALID;
  }
  if ((st = ecs_ref_compute(&o, d->team, err)) != ECS_OK) return st;
  d->stats.ref_ops++;
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    if (!dmd[i]) continue;
    ecs_tensor *t = op->dst[i];
    const dw_md *pmd = dn_plain(d, t->nd, t->ne, NULL);
    if (!pmd) return ecs_err_set(err, ECS_ERR_NOMEM, "cannot describe a plain tensor");
    if ((st = dn_reorder(d, pmd, dc[i].data, dmd[i], t->data, err)) != ECS_OK) return st;
  }
  return ECS_OK;
}

/* ---- copy: the edge reorder ------------------------------------------------------------- */

ecs_status dn_copy(ecs_dnnl *d, const ecs_op *op, ecs_err *err) {
  ecs_tensor *s = op->src[0], *t = op->dst[0];
  if (!s || !t || !ecs_same_shape(s, t) || s->type != t->type) return dn_fallback(d, op, err);
  const dw_md *sm = dn_tensor_md(d, s, NULL, NULL), *tm = dn_tensor_md(d, t, NULL, NULL);
  if (!sm || !tm) return dn_fallback(d, op, err);
  if (s->nbytes < dw_md_size(sm)) return too_small(s, dw_md_size(sm), err);
  if (t->nbytes < dw_md_size(tm)) return too_small(t, dw_md_size(tm), err);
  if (dw_md_equal(sm, tm)) {
    if (s->data != t->data) memmove(t->data, s->data, dw_md_size(sm));
    return ECS_OK;
  }
  return dn_reorder(d, sm, s->data, tm, t->data, err);
}
