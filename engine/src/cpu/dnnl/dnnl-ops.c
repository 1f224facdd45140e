/* dnnl-ops.c - one builder per op family: the cache key, the primitive, and the bindings.
 *
 * Builders check every shape they rely on and answer ECS_ERR_UNSUPPORTED for anything unusual,
 * so the reference kernel (which validates ops fully) runs it and reports any error. Layout
 * rules: convolutions take "any" for data and weights and let oneDNN pick; every other op
 * adopts its first activation's layout for its outputs, and its other activation inputs are
 * reordered to it when they differ. Outputs that feed optimisers or the host (weight and bias
 * gradients, GAP's (N, C), batch statistics) stay plain. */
#include "dnnl-impl.h"

#include <math.h>
#include <string.h>

static int f32(const ecs_tensor *t) { return t && t->type == ECS_F32; }

static int plain_vec(const ecs_tensor *t, int64_t c) {
  return f32(t) && t->layout == ECS_LAYOUT_PLAIN && ecs_nelements(t) == c;
}

static void in(dn_plan *pl, dw_arg a, int kind, ecs_tensor *t, const dw_md *view) {
  if (!t && kind != BK_TEMP) return;
  pl->in[pl->n_in++] = (dn_bind){.arg = a, .kind = kind, .t = t, .view = view};
}

static void out(dn_plan *pl, dw_arg a, int kind, ecs_tensor *t, int keep_plain, const dw_md *view) {
  if (!t && kind != BK_TEMP) return;
  pl->out[pl->n_out++] = (dn_bind){.arg = a, .kind = kind, .t = t, .view = view, .keep_plain = keep_plain};
}

/* Looks the key up; on a miss builds the primitive with `make` (a failure is remembered). */
#define LOOKUP(d, k, pl, make)                                                                \
  do {                                                                                        \
    int found_;                                                                               \
    (pl)->prim = dn_cache_get((d), (k), &found_);                                             \
    if (!found_) {                                                                            \
      ecs_err e2_ = {0};                                                                      \
      ecs_err *err_ = &e2_;                                                                   \
      (void)err_;                                                                             \
      dw_prim *p_ = (make);                                                                   \
      ecs_status st_ = dn_cache_put((d), (k), p_, err);                                       \
      if (st_ != ECS_OK) return st_;                                                          \
      (pl)->prim = p_;                                                                        \
    }                                                                                         \
    if (!(pl)->prim) return ECS_ERR_UNSUPPORTED;                                              \
  } while (0)

#define NEED(cond)                                                                            \
  do {                                                                                        \
    if (!(cond)) return ECS_ERR_UNSUPPORTED;                                                  \
  } while (0)

#define NOMEM() ecs_err_set(err, ECS_ERR_NOMEM, "cannot describe a tensor layout")

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

/* The forward's fused activation (p.conv.act), as a post-op of its primitive: 0 none,
 * DW_POST_RELU, DW_POST_RELU6. */
static int conv_relu(const ecs_op *op) {
  if (op->type != ECS_OP_CONV2D) return 0;
  return op->p.conv.act == ECS_ACT_RELU    ? DW_POST_RELU
         : op->p.conv.act == ECS_ACT_RELU6 ? DW_POST_RELU6
                                           : 0;
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
static int build_phased(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, const dn_key *k0,
                        ecs_tensor *x, ecs_tensor *w, ecs_tensor *y, ecs_tensor *bias,
                        const conv_geo *g, const dw_md *wa, const dw_md *wview, const dw_md *bm,
                        ecs_status *st, ecs_err *err) {
  phase_geo p = {0};
  int kind = phase_geometry(d, op->type, x, y, g, &p) ? 1 : pack_geometry(d, op->type, x, y, g, &p) ? 2 : 0;
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
                      ecs_tensor *w, ecs_tensor *y, ecs_tensor *b, const conv_geo *g, const dw_md *wa,
                      const dw_md *bm, ecs_status *st, ecs_err *err) {
  int m = dn_wino_tile(d);
  if (!m || op->type != ECS_OP_CONV2D || g->groups != 1 || g->win.k[0] != 3 || g->win.k[1] != 3 ||
      g->win.stride[0] != 1 || g->win.stride[1] != 1 || g->win.dil[0] != g->win.dil[1])
    return 0;
  if (conv_relu(op) == DW_POST_RELU6) return 0; /* its output transform fuses ReLU only */
  if (w->layout != ECS_LAYOUT_PLAIN || (w->requires_grad && !w->frozen) || x->ne[1] < 16 || w->ne[0] < 16)
    return 0;
  dn_key k = *k0;
  dn_key_i(&k, 3); /* after build_phased's kinds 1 and 2 */
  int found;
  dw_prim *prim = dn_cache_get(d, &k, &found);
  dn_wino wg = {.m = m, .relu = conv_relu(op), .n = x->ne[0], .ic = x->ne[1], .oc = y->ne[1],
                .h = x->ne[2], .w = x->ne[3], .ho = y->ne[2], .wo = y->ne[3],
                .pad_t = g->win.pad_l[0], .pad_l = g->win.pad_l[1], .dil = g->win.dil[0] + 1};
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

static ecs_status build_conv(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
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

/* ---- batch norm ------------------------------------------------------------------------- */

static void bn_post(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, void *const *ptrs) {
  (void)d, (void)pl;
  const ecs_tensor *x = op->src[0];
  int64_t c = x->ne[1], cnt = ecs_nelements(x) / c;
  const float *mean = ptrs[DW_MEAN], *var = ptrs[DW_VARIANCE];
  float eps = op->p.bn.eps, m = op->p.bn.momentum;
  float *invstd = op->dst[2] ? op->dst[2]->data : NULL;
  float *rm = op->src[3] ? op->src[3]->data : NULL, *rv = op->src[4] ? op->src[4]->data : NULL;
  double unbias = (double)cnt / (double)(cnt - 1);
  for (int64_t i = 0; i < c; i++) {
    if (invstd) invstd[i] = (float)(1.0 / sqrt((double)var[i] + eps));
    if (rm) rm[i] = (1.0f - m) * rm[i] + m * mean[i];
    if (rv) rv[i] = (float)((1.0 - m) * rv[i] + m * var[i] * unbias);
  }
}

/* The backward primitive takes the variance; the op carries 1/sqrt(var + eps). */
static void bn_bwd_pre(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, void *const *ptrs) {
  (void)d, (void)pl;
  const float *invstd = op->src[4]->data;
  float *var = ptrs[DW_VARIANCE];
  for (int64_t i = 0, c = op->src[0]->ne[1]; i < c; i++)
    var[i] = (float)(1.0 / ((double)invstd[i] * invstd[i]) - op->p.bn.eps);
}

static ecs_status build_bn(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  ecs_tensor *x = op->src[0];
  NEED(f32(x) && x->nd >= 2 && x->nd <= 4);
  int64_t c = x->ne[1];
  int training = op->p.bn.training != 0;
  int fwd = op->type == ECS_OP_BATCHNORM;
  ecs_tensor *gamma = fwd ? op->src[1] : op->src[2];
  ecs_tensor *beta = fwd ? op->src[2] : NULL;
  NEED(!gamma || plain_vec(gamma, c));
  NEED(!beta || plain_vec(beta, c));
  for (int i = 3; i <= 4; i++) NEED(!op->src[i] || plain_vec(op->src[i], c));
  if (fwd) {
    NEED(op->dst[0] && ecs_same_shape(x, op->dst[0]) && f32(op->dst[0]));
    if (training)
      NEED(ecs_nelements(x) / c > 1 && (!op->dst[1] || plain_vec(op->dst[1], c)) &&
           (!op->dst[2] || plain_vec(op->dst[2], c)));
    else
      NEED(op->src[3] && op->src[4]);
  } else {
    NEED(op->src[1] && ecs_same_shape(x, op->src[1]) && op->src[3] && op->src[4]);
    NEED(op->dst[0] && ecs_same_shape(x, op->dst[0]) && f32(op->dst[0]));
    NEED((!op->dst[1] || plain_vec(op->dst[1], c)) && (!op->dst[2] || plain_vec(op->dst[2], c)));
  }
  int32_t xid;
  const dw_md *xm = dn_tensor_md(d, x, NULL, &xid);
  NEED(xm);
  unsigned flags = (gamma ? DW_BN_SCALE : 0) | (training ? 0 : DW_BN_GLOBAL);
  flags |= fwd ? (beta ? DW_BN_SHIFT : 0) : DW_BN_SHIFT;
  dn_key k;
  dn_key_init(&k, op->type, training);
  dn_key_i(&k, xid);
  dn_key_i(&k, flags);
  dn_key_f(&k, op->p.bn.eps);
  dw_engine *e = dn_engine(d);
  if (fwd) {
    LOOKUP(d, &k, pl, dw_bnorm_fwd(e, training, xm, op->p.bn.eps, flags, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    in(pl, DW_SCALE, BK_RAW, gamma, NULL);
    in(pl, DW_SHIFT, BK_RAW, beta, NULL);
    out(pl, DW_DST, BK_ACT, op->dst[0], 0, NULL);
    if (training) {
      out(pl, DW_MEAN, op->dst[1] ? BK_RAW : BK_TEMP, op->dst[1], 1, NULL);
      out(pl, DW_VARIANCE, BK_TEMP, NULL, 1, NULL);
      pl->post = bn_post;
    } else {
      in(pl, DW_MEAN, BK_RAW, op->src[3], NULL);
      in(pl, DW_VARIANCE, BK_RAW, op->src[4], NULL);
    }
  } else {
    LOOKUP(d, &k, pl, dw_bnorm_bwd(e, xm, xm, op->p.bn.eps, flags, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    in(pl, DW_DIFF_DST, BK_ACT, op->src[1], NULL);
    in(pl, DW_SCALE, BK_RAW, gamma, NULL);
    in(pl, DW_MEAN, BK_RAW, op->src[3], NULL);
    in(pl, DW_VARIANCE, BK_TEMP, NULL, NULL);
    /* oneDNN 2.x asks for shift among the backward's inputs although dx does not depend on it */
    in(pl, DW_SHIFT, BK_TEMP, NULL, NULL);
    out(pl, DW_DIFF_SRC, BK_ACT, op->dst[0], 0, NULL);
    out(pl, DW_DIFF_SCALE, op->dst[1] ? BK_RAW : BK_TEMP, op->dst[1], 1, NULL);
    out(pl, DW_DIFF_SHIFT, op->dst[2] ? BK_RAW : BK_TEMP, op->dst[2], 1, NULL);
    pl->pre = bn_bwd_pre;
  }
  return ECS_OK;
}

/* ---- element-wise ----------------------------------------------------------------------- */

static ecs_status build_eltwise(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  ecs_tensor *x = op->src[0], *y = op->dst[0];
  int bwd = op->type == ECS_OP_RELU_BWD;
  NEED(f32(x) && f32(y) && ecs_same_shape(x, y));
  if (bwd) NEED(f32(op->src[1]) && ecs_same_shape(x, op->src[1]));
  dw_alg alg = DW_ELT_LINEAR;
  float alpha = op->p.scalar.a, beta = op->p.scalar.b;
  if (op->type != ECS_OP_SCALE) {
    float clip = op->p.act.clip;
    alg = clip > 0 ? DW_ELT_CLIP : DW_ELT_RELU;
    alpha = 0;
    beta = clip > 0 ? clip : 0;
  }
  int32_t xid;
  const dw_md *xm = dn_tensor_md(d, x, NULL, &xid);
  NEED(xm);
  dn_key k;
  dn_key_init(&k, op->type, alg);
  dn_key_i(&k, xid);
  dn_key_f(&k, alpha);
  dn_key_f(&k, beta);
  dw_engine *e = dn_engine(d);
  if (bwd) {
    LOOKUP(d, &k, pl, dw_eltwise_bwd(e, alg, xm, xm, alpha, beta, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    in(pl, DW_DIFF_DST, BK_ACT, op->src[1], NULL);
    out(pl, DW_DIFF_SRC, BK_ACT, y, 0, NULL);
  } else {
    LOOKUP(d, &k, pl, dw_eltwise_fwd(e, alg, xm, alpha, beta, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    out(pl, DW_DST, BK_ACT, y, 0, NULL);
  }
  return ECS_OK;
}

/* ADD = a*x + b*y as a sum primitive; MUL as a binary one. */
static ecs_status build_binary(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  ecs_tensor *a = op->src[0], *b = op->src[1], *y = op->dst[0];
  NEED(f32(a) && f32(b) && f32(y) && ecs_same_shape(a, b) && ecs_same_shape(a, y));
  int32_t aid;
  const dw_md *am = dn_tensor_md(d, a, NULL, &aid);
  NEED(am);
  dn_key k;
  dn_key_init(&k, op->type, 0);
  dn_key_i(&k, aid);
  dw_engine *e = dn_engine(d);
  if (op->type == ECS_OP_ADD) {
    float scales[2] = {op->p.scalar.a, op->p.scalar.b};
    const dw_md *srcs[2] = {am, am};
    dn_key_f(&k, scales[0]);
    dn_key_f(&k, scales[1]);
    LOOKUP(d, &k, pl, dw_sum(e, 2, scales, srcs, am, err_));
    in(pl, DW_MSRC, BK_ACT, a, NULL);
    in(pl, DW_MSRC + 1, BK_ACT, b, NULL);
  } else {
    LOOKUP(d, &k, pl, dw_binary(e, DW_BIN_MUL, am, am, am, err_));
    in(pl, DW_SRC, BK_ACT, a, NULL);
    in(pl, DW_SRC1, BK_ACT, b, NULL);
  }
  out(pl, DW_DST, BK_ACT, y, 0, NULL);
  return ECS_OK;
}

/* ---- pooling ---------------------------------------------------------------------------- */

static int pool_window(const ecs_op *op, const ecs_tensor *x, const ecs_tensor *y, dw_window *w) {
  if (!f32(x) || !f32(y) || x->nd != 4 || y->nd != 4 || x->ne[0] != y->ne[0] || x->ne[1] != y->ne[1])
    return 0;
  for (int i = 0; i < 2; i++) {
    int k = op->p.pool.k[i], s = op->p.pool.stride[i], p = op->p.pool.pad[i];
    if (k < 1 || s < 1 || p < 0 || 2 * p > k) return 0;
    int64_t o = ecs_pool_out_size(x->ne[2 + i], k, s, p, op->p.pool.ceil_mode);
    if (o < 1 || o != y->ne[2 + i]) return 0;
    w->k[i] = k;
    w->stride[i] = s;
    w->dil[i] = 0;
    w->pad_l[i] = p;
    w->pad_r[i] = (o - 1) * s + k - x->ne[2 + i] - p;
    /* PyTorch's count_include_pad divisor stops at the padded border; oneDNN's is k*k */
    if (op->p.pool.kind == ECS_POOL_AVG && op->p.pool.count_include_pad && w->pad_r[i] > p)
      return 0;
  }
  return 1;
}

static ecs_status build_pool(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  int bwd = op->type == ECS_OP_POOL2D_BWD;
  ecs_tensor *x = op->src[0], *y = bwd ? op->src[1] : op->dst[0];
  ecs_tensor *ws = bwd ? op->src[2] : op->dst[1];
  dw_window w;
  NEED(pool_window(op, x, y, &w));
  int max = op->p.pool.kind == ECS_POOL_MAX;
  dw_alg alg = max ? DW_POOL_MAX : op->p.pool.count_include_pad ? DW_POOL_AVG_INCLUDE : DW_POOL_AVG_EXCLUDE;
  int training = max && ws;
  if (bwd) {
    NEED(op->dst[0] && f32(op->dst[0]) && ecs_same_shape(x, op->dst[0]));
    NEED(!max || (ws && ws->layout == ECS_LAYOUT_DNNL));
  }
  int32_t xid;
  const dw_md *xm = dn_tensor_md(d, x, NULL, &xid);
  const dw_md *ya = dn_any(d, 4, y->ne, NULL);
  NEED(xm);
  if (!ya) return NOMEM();
  dn_key k;
  dn_key_init(&k, op->type, alg);
  dn_key_i(&k, xid);
  dn_key_i(&k, training);
  for (int i = 0; i < 2; i++) {
    dn_key_i(&k, w.k[i]);
    dn_key_i(&k, w.stride[i]);
    dn_key_i(&k, w.pad_l[i]);
    dn_key_i(&k, w.pad_r[i]);
    dn_key_i(&k, y->ne[2 + i]);
  }
  dw_engine *e = dn_engine(d);
  if (bwd) {
    LOOKUP(d, &k, pl, dw_pool_bwd(e, alg, xm, xm, ya, &w, err_));
    in(pl, DW_DIFF_DST, BK_ACT, y, NULL);
    if (max) in(pl, DW_WORKSPACE, BK_RAW, ws, NULL);
    out(pl, DW_DIFF_SRC, BK_ACT, op->dst[0], 0, NULL);
  } else {
    LOOKUP(d, &k, pl, dw_pool_fwd(e, training, alg, xm, ya, &w, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    out(pl, DW_DST, BK_ACT, y, 0, NULL);
    if (training) out(pl, DW_WORKSPACE, BK_RAW, ws, 0, NULL);
  }
  return ECS_OK;
}

/* Global average pooling as a pooling over the whole map; (N, C) is read as (N, C, 1, 1). */
static ecs_status build_gap(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  int bwd = op->type == ECS_OP_GAP_BWD;
  ecs_tensor *x = bwd ? op->dst[0] : op->src[0], *y = bwd ? op->src[0] : op->dst[0];
  NEED(f32(x) && f32(y) && x->nd == 4 && y->nd == 2 && y->ne[0] == x->ne[0] && y->ne[1] == x->ne[1]);
  int64_t y4[4] = {x->ne[0], x->ne[1], 1, 1};
  int32_t xid, yid;
  const dw_md *xm = bwd ? dn_plain(d, 4, x->ne, &xid) : dn_tensor_md(d, x, NULL, &xid);
  const dw_md *yv = dn_plain(d, 4, y4, &yid);
  NEED(xm);
  if (!yv) return NOMEM();
  dw_window w = {.k = {x->ne[2], x->ne[3]}, .stride = {1, 1}};
  dn_key k;
  dn_key_init(&k, op->type, 0);
  dn_key_i(&k, xid);
  dn_key_i(&k, yid);
  dw_engine *e = dn_engine(d);
  if (bwd) {
    LOOKUP(d, &k, pl, dw_pool_bwd(e, DW_POOL_AVG_EXCLUDE, xm, xm, yv, &w, err_));
    in(pl, DW_DIFF_DST, BK_ACT, y, yv);
    out(pl, DW_DIFF_SRC, BK_ACT, x, 1, NULL);
  } else {
    /* the (N, C, 1, 1) result in the source's format keeps oneDNN on its jit kernel (a blocked
     * source with a plain destination runs its slow reference one); the tiny reorder to plain
     * follows */
    const dw_md *ya = dn_any(d, 4, y4, NULL);
    if (!ya) return NOMEM();
    LOOKUP(d, &k, pl, dw_pool_fwd(e, 0, DW_POOL_AVG_EXCLUDE, xm, ya, &w, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    out(pl, DW_DST, BK_ACT, y, 1, yv);
  }
  return ECS_OK;
}

/* ---- resize, softmax, concat ------------------------------------------------------------ */

static ecs_status build_resize(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  ecs_tensor *s = op->src[0], *t = op->dst[0];
  NEED(f32(s) && f32(t) && s->nd == 4 && t->nd == 4 && s->ne[0] == t->ne[0] && s->ne[1] == t->ne[1]);
  int32_t sid;
  const dw_md *sm = dn_tensor_md(d, s, NULL, &sid);
  NEED(sm);
  dw_md *like = dw_md_like(sm, 4, t->ne);
  const dw_md *tm = like ? dn_intern(d, like, NULL) : dn_plain(d, 4, t->ne, NULL);
  dw_md_free(like);
  if (!tm) return NOMEM();
  dn_key k;
  dn_key_init(&k, op->type, 0);
  dn_key_i(&k, sid);
  for (int i = 0; i < 4; i++) dn_key_i(&k, t->ne[i]);
  dw_engine *e = dn_engine(d);
  if (op->type == ECS_OP_RESIZE_BILINEAR) {
    LOOKUP(d, &k, pl, dw_resample_fwd(e, sm, tm, err_));
    in(pl, DW_SRC, BK_ACT, s, NULL);
    out(pl, DW_DST, BK_ACT, t, 0, NULL);
  } else {
    LOOKUP(d, &k, pl, dw_resample_bwd(e, tm, sm, err_));
    in(pl, DW_DIFF_DST, BK_ACT, s, NULL);
    out(pl, DW_DIFF_SRC, BK_ACT, t, 0, NULL);
  }
  return ECS_OK;
}

/* Masked classes have y = -inf; their gradient is 0 and the sum over classes leaves their dy
 * out, which oneDNN's backward does not: such ops go to the reference kernel. */
static int has_neg_inf(const ecs_tensor *t) {
  if (!t->data) return 0;
  const float *v = t->data;
  for (size_t i = 0, n = t->nbytes / sizeof(float); i < n; i++)
    if (isinf(v[i]) && v[i] < 0) return 1;
  return 0;
}

static ecs_status build_softmax(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  int log = op->type == ECS_OP_LOG_SOFTMAX || op->type == ECS_OP_LOG_SOFTMAX_BWD;
  int bwd = op->type == ECS_OP_SOFTMAX_BWD || op->type == ECS_OP_LOG_SOFTMAX_BWD;
  ecs_tensor *x = op->src[0], *y = op->dst[0];
  NEED(f32(x) && f32(y) && x->nd >= 2 && ecs_same_shape(x, y));
  if (bwd)
    NEED(f32(op->src[1]) && ecs_same_shape(x, op->src[1]) && !(log && has_neg_inf(x)));
  else
    NEED(!op->src[1]); /* a class mask: the reference kernel */
  int32_t xid;
  const dw_md *xm = dn_tensor_md(d, x, NULL, &xid);
  NEED(xm);
  dn_key k;
  dn_key_init(&k, op->type, 0);
  dn_key_i(&k, xid);
  dw_engine *e = dn_engine(d);
  if (bwd) {
    LOOKUP(d, &k, pl, dw_softmax_bwd(e, log, xm, xm, 1, err_));
    in(pl, DW_DST, BK_ACT, x, NULL);
    in(pl, DW_DIFF_DST, BK_ACT, op->src[1], NULL);
    out(pl, DW_DIFF_SRC, BK_ACT, y, 0, NULL);
  } else {
    LOOKUP(d, &k, pl, dw_softmax_fwd(e, log, xm, 1, err_));
    in(pl, DW_SRC, BK_ACT, x, NULL);
    out(pl, DW_DST, BK_ACT, y, 0, NULL);
  }
  return ECS_OK;
}

static ecs_status build_concat(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  int n = op->p.concat.n;
  ecs_tensor *y = op->dst[0];
  NEED(n >= 1 && n <= ECS_OP_MAX_SRC && f32(y) && y->nd >= 2);
  const dw_md *mds[ECS_OP_MAX_SRC];
  int64_t c = 0;
  dn_key k;
  dn_key_init(&k, op->type, n);
  for (int i = 0; i < n; i++) {
    ecs_tensor *s = op->src[i];
    NEED(f32(s) && s->nd == y->nd);
    for (int j = 0; j < y->nd; j++) NEED(j == 1 || s->ne[j] == y->ne[j]);
    c += s->ne[1];
    int32_t id;
    NEED(mds[i] = dn_tensor_md(d, s, NULL, &id));
    dn_key_i(&k, id);
  }
  NEED(c == y->ne[1]);
  const dw_md *ya = dn_any(d, y->nd, y->ne, NULL);
  if (!ya) return NOMEM();
  LOOKUP(d, &k, pl, dw_concat(dn_engine(d), n, 1, mds, ya, err_));
  for (int i = 0; i < n; i++) in(pl, (dw_arg)(DW_MSRC + i), BK_ACT, op->src[i], NULL);
  out(pl, DW_DST, BK_ACT, y, 0, NULL);
  return ECS_OK;
}

/* ---- dispatch --------------------------------------------------------------------------- */

ecs_status dn_build(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  memset(pl, 0, sizeof *pl);
  switch (op->type) {
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT: return build_conv(d, op, pl, err);
  case ECS_OP_BATCHNORM:
  case ECS_OP_BATCHNORM_BWD: return build_bn(d, op, pl, err);
  case ECS_OP_RELU:
  case ECS_OP_RELU_BWD:
  case ECS_OP_SCALE: return build_eltwise(d, op, pl, err);
  case ECS_OP_ADD:
  case ECS_OP_MUL: return build_binary(d, op, pl, err);
  case ECS_OP_POOL2D:
  case ECS_OP_POOL2D_BWD: return build_pool(d, op, pl, err);
  case ECS_OP_GAP:
  case ECS_OP_GAP_BWD: return build_gap(d, op, pl, err);
  case ECS_OP_RESIZE_BILINEAR:
  case ECS_OP_RESIZE_BILINEAR_BWD: return build_resize(d, op, pl, err);
  case ECS_OP_SOFTMAX:
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX_BWD: return build_softmax(d, op, pl, err);
  case ECS_OP_CONCAT: return build_concat(d, op, pl, err);
  default: return ECS_ERR_UNSUPPORTED;
  }
}

/* Whether oneDNN may take op at all: the op family and its required tensors. The builders
 * make the final decision per shape, falling back to the reference kernels. */
int dn_can(const ecs_op *op) {
  switch (op->type) {
  case ECS_OP_COPY:
    return op->src[0] && op->dst[0] && op->src[0]->type == op->dst[0]->type &&
           ecs_same_shape(op->src[0], op->dst[0]);
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT:
    if (op->p.conv.act != ECS_ACT_NONE && !conv_relu(op)) return 0;
    /* fall through */
  case ECS_OP_ADD:
  case ECS_OP_MUL:
  case ECS_OP_RELU_BWD: return f32(op->src[0]) && f32(op->src[1]) && f32(op->dst[0]);
  case ECS_OP_BATCHNORM_BWD:
    return f32(op->src[0]) && f32(op->src[1]) && op->src[3] && op->src[4] && f32(op->dst[0]);
  case ECS_OP_BATCHNORM:
    return f32(op->src[0]) && f32(op->dst[0]) && (op->p.bn.training || (op->src[3] && op->src[4]));
  case ECS_OP_POOL2D_BWD:
    return f32(op->src[0]) && f32(op->src[1]) && f32(op->dst[0]) &&
           (op->p.pool.kind != ECS_POOL_MAX || (op->src[2] && op->src[2]->layout == ECS_LAYOUT_DNNL));
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX_BWD: return f32(op->src[0]) && f32(op->src[1]) && f32(op->dst[0]);
  case ECS_OP_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX: return f32(op->src[0]) && !op->src[1] && f32(op->dst[0]);
  case ECS_OP_RELU:
  case ECS_OP_SCALE:
  case ECS_OP_POOL2D:
  case ECS_OP_GAP:
  case ECS_OP_GAP_BWD:
  case ECS_OP_RESIZE_BILINEAR:
  case ECS_OP_RESIZE_BILINEAR_BWD: return f32(op->src[0]) && f32(op->dst[0]);
  case ECS_OP_CONCAT: return op->p.concat.n >= 1 && f32(op->src[0]) && f32(op->dst[0]);
  default: return 0;
  }
}
