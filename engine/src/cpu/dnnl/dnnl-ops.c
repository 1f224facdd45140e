/* dnnl-ops.c - one builder per op family but convolutions (dnnl-conv.c): the cache key, the
 * primitive, and the bindings; the dispatch to the builders, and dn_can.
 *
 * Builders check every shape they rely on and answer ECS_ERR_UNSUPPORTED for anything unusual,
 * so the reference kernel (which validates ops fully) runs it and reports any error. Layout
 * rules: convolutions take "any" for data and weights and let oneDNN pick; every other op
 * adopts its first activation's layout for its outputs, and its other activation inputs are
 * reordered to it when they differ. Outputs that feed optimisers or the host (weight and bias
 * gradients, GAP's (N, C), batch statistics) stay plain. */
#include "dnnl-build.h"

#include <math.h>
#include <string.h>

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
  for (int i = 3; i <= 4; i++)
    NEED(!op->src[i] || plain_vec(op->src[i], c));
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
  if (!f32(x) || !f32(y) || x->nd != 4 || y->nd != 4 || x->ne[0] != y->ne[0] ||
      x->ne[1] != y->ne[1])
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
  dw_alg alg = max                            ? DW_POOL_MAX
               : op->p.pool.count_include_pad ? DW_POOL_AVG_INCLUDE
                                              : DW_POOL_AVG_EXCLUDE;
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
  NEED(f32(x) && f32(y) && x->nd == 4 && y->nd == 2 && y->ne[0] == x->ne[0] &&
       y->ne[1] == x->ne[1]);
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
  NEED(f32(s) && f32(t) && s->nd == 4 && t->nd == 4 && s->ne[0] == t->ne[0] &&
       s->ne[1] == t->ne[1]);
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
  for (int i = 0; i < 4; i++)
    dn_key_i(&k, t->ne[i]);
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
    for (int j = 0; j < y->nd; j++)
      NEED(j == 1 || s->ne[j] == y->ne[j]);
    c += s->ne[1];
    int32_t id;
    NEED(mds[i] = dn_tensor_md(d, s, NULL, &id));
    dn_key_i(&k, id);
  }
  NEED(c == y->ne[1]);
  const dw_md *ya = dn_any(d, y->nd, y->ne, NULL);
  if (!ya) return NOMEM();
  LOOKUP(d, &k, pl, dw_concat(dn_engine(d), n, 1, mds, ya, err_));
  for (int i = 0; i < n; i++)
    in(pl, (dw_arg)(DW_MSRC + i), BK_ACT, op->src[i], NULL);
  out(pl, DW_DST, BK_ACT, y, 0, NULL);
  return ECS_OK;
}

/* ---- dispatch --------------------------------------------------------------------------- */

ecs_status dn_build(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err) {
  memset(pl, 0, sizeof *pl);
  switch (op->type) {
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT: return dn_build_conv(d, op, pl, err);
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
           (op->p.pool.kind != ECS_POOL_MAX ||
            (op->src[2] && op->src[2]->layout == ECS_LAYOUT_DNNL));
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
