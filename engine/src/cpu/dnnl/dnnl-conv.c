/* dnnl-conv.c - the builder of convolutions (forward, backward data, backward weights) for the
 * oneDNN backend: the cache key, the primitive and the bindings (dnnl-build.h).
 *
 * A convolution takes the first of these that serves it: a forward 3x3 by Winograd where that is
 * the faster (dnnl-wino.c runs it on the layouts oneDNN picks for its own primitive); a dilated
 * one as space-to-batch, or a batch of narrow maps side by side (dnnl-phase.c), where oneDNN
 * would run the rearranged convolution on its direct jit kernel; else oneDNN's own primitive.
 * Data and weights take "any" and oneDNN picks their layouts; weight and bias gradients stay
 * plain. */
#include "dnnl-build.h"

#include <string.h>

/* ---- convolution ------------------------------------------------------------------------ */

typedef struct conv_geo {
  dw_window win;
  int64_t wdims[5];
  int wnd, groups;
} conv_geo;

/* x: the input activation, w: weights, y: the output activation, whichever op this is. */
static int conv_geometry(const ecs_op *op, const ecs_tensor *x, const ecs_tensor *w,
                         const ecs_tensor *y, conv_geo *g) {
  if (!f32(x) || !f32(w) || !f32(y) || x->nd != 4 || w->nd != 4 || y->nd != 4) return 0;
  int groups = op->p.conv.groups > 0 ? op->p.conv.groups : 1;
  int64_t o = w->ne[0];
  if (o % groups || x->ne[1] != w->ne[1] * groups || y->ne[1] != o || y->ne[0] != x->ne[0])
    return 0;
  for (int i = 0; i < 2; i++) {
    int k = (int)w->ne[2 + i], s = op->p.conv.stride[i], p = op->p.conv.pad[i];
    int dl = op->p.conv.dil[i] > 0 ? op->p.conv.dil[i] : 1;
    if (s < 1 || p < 0) return 0;
    int64_t outsz = ecs_conv_out_size(x->ne[2 + i], k, s, p, dl);
    if (outsz < 1 || outsz != y->ne[2 + i]) return 0;
    g->win.k[i] = k;
    g->win.stride[i] = s;
    g->win.dil[i] = dl - 1;
    g->win.pad_l[i] = p;
    g->win.pad_r[i] = (outsz - 1) * s + (int64_t)(k - 1) * dl + 1 - x->ne[2 + i] - p;
  }
  g->groups = groups;
  if (groups > 1) {
    int64_t d5[5] = {groups, o / groups, w->ne[1], w->ne[2], w->ne[3]};
    memcpy(g->wdims, d5, sizeof d5);
    g->wnd = 5;
  } else {
    memcpy(g->wdims, w->ne, sizeof(int64_t) * 4);
    g->wnd = 4;
  }
  return 1;
}

static void conv_key(dn_key *k, const ecs_op *op, const ecs_tensor *x, const ecs_tensor *w,
                     const ecs_tensor *y, int has_bias) {
  dn_key_init(k, op->type, has_bias);
  for (int i = 0; i < 4; i++) {
    dn_key_i(k, x->ne[i]);
    dn_key_i(k, w->ne[i]);
    dn_key_i(k, y->ne[i]);
  }
  for (int i = 0; i < 2; i++) {
    dn_key_i(k, op->p.conv.stride[i]);
    dn_key_i(k, op->p.conv.pad[i]);
    dn_key_i(k, op->p.conv.dil[i]);
  }
  dn_key_i(k, op->p.conv.groups);
  dn_key_i(k, op->p.conv.act);
}

/* ---- dilated convolution as space-to-batch (dnnl-phase.c) -------------------------------- */

/* A stride-1 convolution with dilation d and padding p, split per dim by a factor f that
 * divides both (dn_phase_factor), as one of dilation d / f and padding p / f over the f_h * f_w
 * phase sub-images of x, batched: the sub-images' shapes (xs, ys) and window (sub). Output
 * phase (a, b) reads input phase (a, b) only because p is a multiple of f. */
typedef struct phase_geo {
  int64_t ph[2], slot, per, xs[4], ys[4];
  dw_window sub;
} phase_geo;

static int phase_geometry(ecs_dnnl *d, int type, const ecs_tensor *x, const ecs_tensor *y,
                          const conv_geo *g, phase_geo *p) {
  if (g->groups != 1) return 0;
  int split = 0;
  for (int i = 0; i < 2; i++) {
    int64_t dl = g->win.dil[i] + 1, f = dn_phase_factor(d, type, dl);
    if (g->win.stride[i] != 1 || f < 1 || dl % f || g->win.pad_l[i] % f) return 0;
    split |= f > 1;
    p->ph[i] = f;
  }
  if (!split) return 0;
  p->xs[0] = x->ne[0] * p->ph[0] * p->ph[1];
  p->ys[0] = p->xs[0];
  p->xs[1] = x->ne[1];
  p->ys[1] = y->ne[1];
  for (int i = 0; i < 2; i++) {
    int64_t f = p->ph[i], sdl = (g->win.dil[i] + 1) / f, ext = (g->win.k[i] - 1) * sdl + 1;
    p->xs[2 + i] = (x->ne[2 + i] + f - 1) / f;
    p->ys[2 + i] = (y->ne[2 + i] + f - 1) / f;
    p->sub.k[i] = g->win.k[i];
    p->sub.stride[i] = 1;
    p->sub.dil[i] = sdl - 1;
    p->sub.pad_l[i] = g->win.pad_l[i] / f;
    p->sub.pad_r[i] = p->ys[2 + i] - 1 + ext - p->xs[2 + i] - p->sub.pad_l[i];
    if (p->sub.pad_r[i] < 0 || p->sub.pad_r[i] >= ext) return 0;
  }
  return 1;
}

/* A forward stride-1 dense convolution of a batch of narrow maps, as one over wide maps of
 * several images side by side (dnnl-phase.c): slot columns apart, the gaps (max of the left
 * and right padding) standing for each image's own padding; as many images to a wide map as
 * keep its output rows within dn_pack_width, spread evenly over the wide maps. */
static int pack_geometry(ecs_dnnl *d, int type, const ecs_tensor *x, const ecs_tensor *y,
                         const conv_geo *g, phase_geo *p) {
  if (type != ECS_OP_CONV2D || g->groups != 1 || x->ne[0] < 2 ||
      g->win.k[1] < 2) /* 1x1 kernels see h*w as one dimension already */
    return 0;
  for (int i = 0; i < 2; i++)
    if (g->win.stride[i] != 1 || g->win.dil[i] != 0 || g->win.pad_r[i] < 0) return 0;
  int64_t pl = g->win.pad_l[1], pr = g->win.pad_r[1], gap = pl > pr ? pl : pr;
  if ((pl < pr ? pl : pr) + 1 > g->win.k[1]) return 0;
  int64_t n = x->ne[0], slot = x->ne[3] + gap, wo = y->ne[3];
  int64_t per = wo > dn_pack_width(d) ? 1 : (dn_pack_width(d) - wo) / slot + 1;
  if (per > n) per = n;
  if (per < 2) return 0;
  int64_t nw = (n + per - 1) / per;
  per = (n + nw - 1) / nw;
  p->ph[0] = p->ph[1] = 1;
  p->slot = slot;
  p->per = per;
  int64_t xs[4] = {nw, x->ne[1], x->ne[2], (per - 1) * slot + x->ne[3]};
  int64_t ys[4] = {nw, y->ne[1], y->ne[2], (per - 1) * slot + wo};
  memcpy(p->xs, xs, sizeof xs);
  memcpy(p->ys, ys, sizeof ys);
  p->sub = g->win;
  return 1;
}

/* The space-to-batch primitive, or NULL where it would not run on a direct jit kernel with
 * layouts that dnnl-phase.c can split (then the op takes the dilated path). */
static dw_prim *phase_prim(ecs_dnnl *d, int type, int relu, const dw_md *xs, const dw_md *wa,
                           const dw_md *bm, const dw_md *ys, const dw_window *sub) {
  dw_engine *e = dn_engine(d);
  dw_prim *p;
  dw_arg xa = DW_SRC, ya = DW_DST;
  switch (type) {
  case ECS_OP_CONV2D: p = dw_conv_fwd(e, 0, xs, wa, bm, ys, sub, relu, NULL); break;
  case ECS_OP_CONV2D_BWD_DATA:
    p = dw_conv_bwd_data(e, xs, wa, ys, sub, NULL);
    xa = DW_DIFF_SRC, ya = DW_DIFF_DST;
    break;
  default: p = dw_conv_bwd_weights(e, xs, wa, bm, ys, sub, NULL), ya = DW_DIFF_DST; break;
  }
  if (!p) return NULL;
  const char *impl = dw_prim_impl(p);
  const dw_md *xm = dw_prim_md(p, xa), *ym = dw_prim_md(p, ya);
  if (strncmp(impl, "jit", 3) != 0 || !xm || !ym || !dw_md_cblock(xm) || !dw_md_cblock(ym)) {
    dw_prim_free(p);
    return NULL;
  }
  return p;
}

/* Fills pl for op as space-to-batch when that applies and oneDNN serves it on a jit kernel;
 * 0 otherwise. */
static int build_phased(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, const dn_key *k0, ecs_tensor *x,
                        ecs_tensor *w, ecs_tensor *y, ecs_tensor *bias, const conv_geo *g,
                        const dw_md *wa, const dw_md *wview, const dw_md *bm, ecs_status *st,
                        ecs_err *err) {
  phase_geo p = {0};
  int kind = phase_geometry(d, op->type, x, y, g, &p)  ? 1
             : pack_geometry(d, op->type, x, y, g, &p) ? 2
                                                       : 0;
  if (!kind) return 0;
  dn_key k = *k0;
  dn_key_i(&k, kind);
  int found;
  dw_prim *prim = dn_cache_get(d, &k, &found);
  if (!found) {
    const dw_md *xs = dn_any(d, 4, p.xs, NULL), *ys = dn_any(d, 4, p.ys, NULL);
    if (!xs || !ys) return (*st = NOMEM()), 1;
    /* ReLU commutes with the rearrangement: the post-op also zeroes negatives in the gaps,
     * which the merge drops */
    prim = phase_prim(d, op->type, conv_relu(op), xs, wa, bm, ys, &p.sub);
    if ((*st = dn_cache_put(d, &k, prim, err)) != ECS_OK) return 1;
  }
  if (!prim) return 0;
  *st = ECS_OK;
  pl->prim = prim;
  pl->phase[0] = p.slot ? 0 : p.ph[0];
  pl->phase[1] = p.slot ? 0 : p.ph[1];
  pl->slot = p.slot;
  pl->per = p.per;
  switch (op->type) {
  case ECS_OP_CONV2D:
    in(pl, DW_SRC, BK_ACT, x, NULL);
    pl->in[pl->n_in - 1].phased = 1;
    in(pl, DW_WEIGHTS, BK_WEIGHT, w, wview);
    in(pl, DW_BIAS, BK_ACT, bias, NULL);
    out(pl, DW_DST, BK_ACT, y, 0, NULL);
    pl->out[pl->n_out - 1].phased = 1;
    break;
  case ECS_OP_CONV2D_BWD_DATA:
    in(pl, DW_DIFF_DST, BK_ACT, y, NULL);
    pl->in[pl->n_in - 1].phased = 1;
    in(pl, DW_WEIGHTS, BK_WEIGHT, w, wview);
    out(pl, DW_DIFF_SRC, BK_ACT, x, 0, NULL);
    pl->out[pl->n_out - 1].phased = 1;
    break;
  default:
    in(pl, DW_SRC, BK_ACT, x, NULL);
    pl->in[pl->n_in - 1].phased = 1;
    in(pl, DW_DIFF_DST, BK_ACT, y, NULL);
    pl->in[pl->n_in - 1].phased = 1;
    out(pl, DW_DIFF_WEIGHTS, BK_ACT, w, 1, wview);
    out(pl, DW_DIFF_BIAS, BK_ACT, bias, 1, NULL);
    break;
  }
  return 1;
}

/* ---- Winograd (dnnl-wino.c) ------------------------------------------------------------- */

/* Whether dnnl-wino.c reads and writes the activation layouts of primitive p. */
static int wino_serves(const dw_prim *p, int64_t ic, int64_t oc) {
  const dw_md *xm = dw_prim_md(p, DW_SRC), *ym = dw_prim_md(p, DW_DST);
  return xm && ym && dn_wino_layout(dw_md_cblock(xm), ic) && dn_wino_layout(dw_md_cblock(ym), oc);
}

/* Whether dnnl-wino.c beats oneDNN's brgemm convolution, the kernel oneDNN 2.6 picks on AVX-512
 * (nhwc), on this many tiles (over the batch and the phases) with transformed weights of this
 * size. Every tile's products stream all the transformed weights, so few tiles on large weights
 * lose. Measured on Zen 4 (tests/bench: conv_ab, dilated and small_ab against the backend with
 * Winograd off, 1 and 2 threads): 16-64 tiles 0.67-1.02x whatever the weights (7x7 at batch 8,
 * 28x28 at dilation 2 and 4, 15x15 and 13x13 dilated); 100 tiles on 2.4 MB (128 channels at
 * 40x40) 1.03-1.28x; 128 on 9.4 MB (256 channels, 14x14, batch 8) 0.95-1.08x; 196-1568 tiles
 * (56x56 at batch 1 to 8, dilation 1, 2 and 4, up to 75 MB) 1.08-1.5x. Against AVX2's direct
 * jit kernel Winograd wins at every size the tests and models have (1.5-2.5x), so it always
 * runs there. */
static int wino_beats_brgemm(int64_t tiles, size_t weight_bytes) {
  return tiles >= 192 || (tiles >= 96 && weight_bytes <= ((size_t)4 << 20));
}

/* The primitive whose bindings and layouts a Winograd convolution takes (it never runs), or
 * NULL where Winograd should not run this convolution. The layouts are the ones oneDNN picks
 * for it, so the layers around it stay without reorders; where oneDNN picks a layout that
 * dnnl-wino.c cannot read (plain nchw for its GEMM path of dilation 4 on AVX2), the ones it
 * picks for the dense 3x3 convolution of the same channels, which are those of the layers
 * around it. */
static dw_prim *wino_prim(ecs_dnnl *d, const ecs_op *op, const ecs_tensor *x, const ecs_tensor *y,
                          const conv_geo *g, const dw_md *wa, const dw_md *bm, const dn_wino *wg) {
  dw_engine *e = dn_engine(d);
  const dw_md *xa = dn_any(d, 4, x->ne, NULL), *ya = dn_any(d, 4, y->ne, NULL);
  if (!xa || !ya) return NULL;
  dw_prim *p = dw_conv_fwd(e, 0, xa, wa, bm, ya, &g->win, conv_relu(op), NULL);
  if (!p) return NULL;
  if (!dn_wino_forced(d) && strncmp(dw_prim_impl(p), "brg", 3) == 0 &&
      !wino_beats_brgemm(dn_wino_tiles(wg), dn_wino_weight_bytes(wg))) {
    dw_prim_free(p);
    return NULL;
  }
  if (wino_serves(p, x->ne[1], y->ne[1])) return p;
  dw_prim_free(p);
  int64_t yd[4] = {x->ne[0], y->ne[1], x->ne[2], x->ne[3]};
  dw_window dense = {.k = {3, 3}, .stride = {1, 1}, .pad_l = {1, 1}, .pad_r = {1, 1}};
  const dw_md *yda = dn_any(d, 4, yd, NULL);
  dw_prim *q = yda ? dw_conv_fwd(e, 0, xa, wa, bm, yda, &dense, conv_relu(op), NULL) : NULL;
  if (!q) return NULL;
  dw_md *xl = dw_md_like(dw_prim_md(q, DW_SRC), 4, x->ne),
        *yl = dw_md_like(dw_prim_md(q, DW_DST), 4, y->ne);
  dw_prim_free(q);
  const dw_md *xs = xl ? dn_intern(d, xl, NULL) : NULL, *ys = yl ? dn_intern(d, yl, NULL) : NULL;
  dw_md_free(xl);
  dw_md_free(yl);
  p = xs && ys ? dw_conv_fwd(e, 0, xs, wa, bm, ys, &g->win, conv_relu(op), NULL) : NULL;
  if (p && !wino_serves(p, x->ne[1], y->ne[1])) {
    dw_prim_free(p);
    p = NULL;
  }
  return p;
}

/* Fills pl for op as a Winograd convolution when it is one that runs so: a forward 3x3, stride
 * 1, one dilation for both dims, no groups, weights plain and not being trained (their
 * transform is cached). Small layers stay direct: below 16 channels either side the transforms
 * cost more than the products save. The plan's primitive is oneDNN's own convolution with the
 * layouts it picks, for the executor's bindings; it does not run. 0: not Winograd. */
static int build_wino(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, const dn_key *k0, ecs_tensor *x,
                      ecs_tensor *w, ecs_tensor *y, ecs_tensor *b, const conv_geo *g,
                      const dw_md *wa, const dw_md *bm, ecs_status *st, ecs_err *err) {
  int m = dn_wino_tile(d);
  if (!m || op->type != ECS_OP_CONV2D || g->groups != 1 || g->win.k[0] != 3 || g->win.k[1] != 3 ||
      g->win.stride[0] != 1 || g->win.stride[1] != 1 || g->win.dil[0] != g->win.dil[1])
    return 0;
  if (conv_relu(op) == DW_POST_RELU6) return 0; /* its output transform fuses ReLU only */
  if (w->layout != ECS_LAYOUT_PLAIN || dn_weight_changes(w) || x->ne[1] < 16 || w->ne[0] < 16)
    return 0;
  dn_key k = *k0;
  dn_key_i(&k, 3); /* after build_phased's kinds 1 and 2 */
  int found;
  dw_prim *prim = dn_cache_get(d, &k, &found);
  dn_wino wg = {.m = m,
                .relu = conv_relu(op),
                .n = x->ne[0],
                .ic = x->ne[1],
                .oc = y->ne[1],
                .h = x->ne[2],
                .w = x->ne[3],
                .ho = y->ne[2],
                .wo = y->ne[3],
                .pad_t = g->win.pad_l[0],
                .pad_l = g->win.pad_l[1],
                .dil = g->win.dil[0] + 1};
  if (!found) {
    prim = wino_prim(d, op, x, y, g, wa, bm, &wg);
    if ((*st = dn_cache_put(d, &k, prim, err)) != ECS_OK) return 1;
  }
  if (!prim) return 0;
  *st = ECS_OK;
  pl->prim = prim;
  wg.xb = dw_md_cblock(dw_prim_md(prim, DW_SRC));
  wg.yb = dw_md_cblock(dw_prim_md(prim, DW_DST));
  pl->wino = wg;
  in(pl, DW_SRC, BK_ACT, x, NULL);
  in(pl, DW_WEIGHTS, BK_WINO, w, NULL);
  in(pl, DW_BIAS, BK_ACT, b, NULL);
  out(pl, DW_DST, BK_ACT, y, 0, NULL);
  return 1;
}

ecs_status dn_build_conv(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  ecs_tensor *x, *w, *y, *b = NULL, *db = NULL;
  switch (op->type) {
  case ECS_OP_CONV2D: x = op->src[0], w = op->src[1], b = op->src[2], y = op->dst[0]; break;
  case ECS_OP_CONV2D_BWD_DATA: y = op->src[0], w = op->src[1], x = op->dst[0]; break;
  default: x = op->src[0], y = op->src[1], w = op->dst[0], db = op->dst[1]; break;
  }
  conv_geo g;
  NEED(conv_geometry(op, x, w, y, &g));
  /* ReLU and ReLU6 are the fused activations, and only forwards have one (else: the
   * reference kernel, which validates the op and says what is wrong) */
  NEED(op->p.conv.act == ECS_ACT_NONE || conv_relu(op));
  ecs_tensor *bias = b ? b : db;
  NEED(!bias || (bias->layout == ECS_LAYOUT_PLAIN && plain_vec(bias, w->ne[0])));
  dw_engine *e = dn_engine(d);
  const dw_md *xa = dn_any(d, 4, x->ne, NULL), *ya = dn_any(d, 4, y->ne, NULL);
  const dw_md *wa = dn_any(d, g.wnd, g.wdims, NULL);
  const dw_md *wview = g.wnd == 5 ? dn_plain(d, 5, g.wdims, NULL) : NULL;
  const dw_md *bm = bias ? dn_plain(d, 1, w->ne, NULL) : NULL;
  if (!xa || !ya || !wa || (g.wnd == 5 && !wview) || (bias && !bm)) return NOMEM();
  dn_key k;
  conv_key(&k, op, x, w, y, bias != NULL);
  ecs_status pst;
  if (build_wino(d, op, pl, &k, x, w, y, b, &g, wa, bm, &pst, err)) return pst;
  if (build_phased(d, op, pl, &k, x, w, y, bias, &g, wa, wview, bm, &pst, err)) return pst;
  switch (op->type) {
  case ECS_OP_CONV2D:
    LOOKUP(d, &k, pl, dw_conv_fwd(e, 0, xa, wa, bm, ya, &g.win, conv_relu(op), err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    in(pl, DW_WEIGHTS, BK_WEIGHT, w, wview);
    in(pl, DW_BIAS, BK_ACT, b, NULL);
    out(pl, DW_DST, BK_ACT, y, 0, NULL);
    break;
  case ECS_OP_CONV2D_BWD_DATA:
    LOOKUP(d, &k, pl, dw_conv_bwd_data(e, xa, wa, ya, &g.win, err_));
    in(pl, DW_DIFF_DST, BK_ACT, y, NULL);
    in(pl, DW_WEIGHTS, BK_WEIGHT, w, wview);
    out(pl, DW_DIFF_SRC, BK_ACT, x, 0, NULL);
    break;
  default:
    LOOKUP(d, &k, pl, dw_conv_bwd_weights(e, xa, wa, bm, ya, &g.win, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    in(pl, DW_DIFF_DST, BK_ACT, y, NULL);
    out(pl, DW_DIFF_WEIGHTS, BK_ACT, w, 1, wview);
    out(pl, DW_DIFF_BIAS, BK_ACT, db, 1, NULL);
    break;
  }
  return ECS_OK;
}
