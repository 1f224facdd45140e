/* op-validate.c - the generic op contract every backend shares (ecs_op_validate).
 *
 * One place says which tensors an op needs, their dtypes, and how output shapes follow from
 * input shapes and parameters, so that a backend can call it first and then trust the shapes.
 * Layouts are not checked here (a backend's blocked tensor keeps its logical ne[]), nor is data
 * (label values), which only a kernel that reads it can check. Every message names the op and
 * the tensor so that a caller can show it as is. */
#include "backend-impl.h"

#include <stdio.h>

typedef struct vctx {
  const ecs_op *op;
  ecs_err *err;
} vctx;

static ecs_status bad(const vctx *v, const char *fmt, const char *what, const ecs_tensor *t) {
  char shape[80] = "";
  if (t) ecs_shape_str(t, shape, sizeof shape);
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  return ecs_err_set(v->err, ECS_ERR_INVALID, "%s: %s%s%s", ecs_op_name(v->op->type), msg,
                     t ? ", got " : "", shape);
}

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    ecs_status st_ = (x);                                                                          \
    if (st_ != ECS_OK) return st_;                                                                 \
  } while (0)

/* t must exist, have dtype `type`, and (nd > 0) exactly nd dimensions or (nd < 0) at least -nd. */
static ecs_status need(const vctx *v, const char *what, const ecs_tensor *t, ecs_dtype type,
                       int nd) {
  if (!t) return bad(v, "%s is missing", what, NULL);
  if (t->type != type) {
    char f[96];
    snprintf(f, sizeof f, "%%s must be %s, not %s", ecs_dtype_name(type), ecs_dtype_name(t->type));
    return bad(v, f, what, NULL);
  }
  if (t->nd < 1 || t->nd > ECS_MAX_DIMS) return bad(v, "%s has an invalid rank", what, t);
  for (int i = 0; i < t->nd; i++)
    if (t->ne[i] < 1) return bad(v, "%s has an empty dimension", what, t);
  if (nd > 0 && t->nd != nd) {
    char f[64];
    snprintf(f, sizeof f, "%%s must have %d dimensions", nd);
    return bad(v, f, what, t);
  }
  if (nd < 0 && t->nd < -nd) {
    char f[64];
    snprintf(f, sizeof f, "%%s must have at least %d dimensions", -nd);
    return bad(v, f, what, t);
  }
  return ECS_OK;
}

static ecs_status need_like(const vctx *v, const char *what, const ecs_tensor *t,
                            const ecs_tensor *ref, ecs_dtype type) {
  CHECK(need(v, what, t, type, ref->nd));
  if (!ecs_same_shape(t, ref)) {
    char f[128], rs[80];
    snprintf(f, sizeof f, "%%s must have shape %s", ecs_shape_str(ref, rs, sizeof rs));
    return bad(v, f, what, t);
  }
  return ECS_OK;
}

/* A vector (C) of F32, or NULL when optional. */
static ecs_status need_vec(const vctx *v, const char *what, const ecs_tensor *t, int64_t c,
                           int optional) {
  if (!t && optional) return ECS_OK;
  CHECK(need(v, what, t, ECS_F32, 1));
  if (t->ne[0] != c) {
    char f[96];
    snprintf(f, sizeof f, "%%s must have %lld elements", (long long)c);
    return bad(v, f, what, t);
  }
  return ECS_OK;
}

static ecs_status need_4d(const vctx *v, const char *what, const ecs_tensor *t, int64_t n,
                          int64_t c, int64_t h, int64_t w) {
  CHECK(need(v, what, t, ECS_F32, 4));
  if (t->ne[0] != n || t->ne[1] != c || t->ne[2] != h || t->ne[3] != w) {
    char f[128];
    snprintf(f, sizeof f, "%%s must have shape [%lld, %lld, %lld, %lld]", (long long)n,
             (long long)c, (long long)h, (long long)w);
    return bad(v, f, what, t);
  }
  return ECS_OK;
}

/* conv: x (N,C,H,W), w (O, C/g, KH, KW), y (N,O,OH,OW) with PyTorch's output size. */
static ecs_status check_conv(const vctx *v, const ecs_tensor *x, const ecs_tensor *w,
                             const ecs_tensor *y, const char *xn, const char *yn) {
  const ecs_op *op = v->op;
  int g = op->p.conv.groups;
  for (int i = 0; i < 2; i++)
    if (op->p.conv.stride[i] < 1 || op->p.conv.dil[i] < 1 || op->p.conv.pad[i] < 0)
      return bad(v, "%s stride and dilation must be >= 1 and padding >= 0", "convolution", NULL);
  if (g < 1) return bad(v, "%s groups must be >= 1", "convolution", NULL);
  CHECK(need(v, xn, x, ECS_F32, 4));
  CHECK(need(v, "the weight", w, ECS_F32, 4));
  if (x->ne[1] % g || w->ne[0] % g || w->ne[1] * g != x->ne[1])
    return bad(v, "the weight's shape does not match %s's channels and the groups", xn, w);
  int64_t oh = ecs_conv_out_size(x->ne[2], (int)w->ne[2], op->p.conv.stride[0], op->p.conv.pad[0],
                                 op->p.conv.dil[0]);
  int64_t ow = ecs_conv_out_size(x->ne[3], (int)w->ne[3], op->p.conv.stride[1], op->p.conv.pad[1],
                                 op->p.conv.dil[1]);
  if (oh < 1 || ow < 1) return bad(v, "the kernel is larger than the padded %s", xn, x);
  return need_4d(v, yn, y, x->ne[0], w->ne[0], oh, ow);
}

static ecs_status check_pool(const vctx *v, const ecs_tensor *x, const ecs_tensor *y,
                             const char *yn) {
  const ecs_op *op = v->op;
  if (op->p.pool.kind != ECS_POOL_MAX && op->p.pool.kind != ECS_POOL_AVG)
    return bad(v, "%s kind must be max or avg", "pooling", NULL);
  for (int i = 0; i < 2; i++) {
    if (op->p.pool.k[i] < 1 || op->p.pool.stride[i] < 1 || op->p.pool.pad[i] < 0)
      return bad(v, "%s kernel and stride must be >= 1 and padding >= 0", "pooling", NULL);
    if (op->p.pool.pad[i] > op->p.pool.k[i] / 2)
      return bad(v, "%s padding must be at most half the kernel size", "pooling", NULL);
  }
  CHECK(need(v, "x", x, ECS_F32, 4));
  int64_t oh = ecs_pool_out_size(x->ne[2], op->p.pool.k[0], op->p.pool.stride[0], op->p.pool.pad[0],
                                 op->p.pool.ceil_mode);
  int64_t ow = ecs_pool_out_size(x->ne[3], op->p.pool.k[1], op->p.pool.stride[1], op->p.pool.pad[1],
                                 op->p.pool.ceil_mode);
  if (oh < 1 || ow < 1) return bad(v, "the window is larger than the padded %s", "x", x);
  return need_4d(v, yn, y, x->ne[0], x->ne[1], oh, ow);
}

/* Same sizes in every dimension but C (dimension 1). */
static ecs_status need_same_but_c(const vctx *v, const char *what, const ecs_tensor *t,
                                  const ecs_tensor *ref) {
  CHECK(need(v, what, t, ref->type, ref->nd));
  for (int i = 0; i < t->nd; i++)
    if (i != 1 && t->ne[i] != ref->ne[i])
      return bad(v, "%s must match the other tensors in every dimension but C", what, t);
  return ECS_OK;
}

/* An optional (N, C) F32 class mask for x (N, C, ...). */
static ecs_status need_class_mask(const vctx *v, const ecs_tensor *m, const ecs_tensor *x) {
  if (!m) return ECS_OK;
  CHECK(need(v, "the class mask", m, ECS_F32, 2));
  if (m->ne[0] != x->ne[0] || m->ne[1] != x->ne[1])
    return bad(v, "%s must be (N, C) of the logits", "the class mask", m);
  return ECS_OK;
}

static ecs_status need_scalar(const vctx *v, const char *what, const ecs_tensor *t) {
  CHECK(need(v, what, t, ECS_F32, 1));
  if (t->ne[0] != 1) return bad(v, "%s must have one element", what, t);
  return ECS_OK;
}

static ecs_status validate_bn(const vctx *v) {
  const ecs_op *op = v->op;
  const ecs_tensor *x = op->src[0];
  int bwd = op->type == ECS_OP_BATCHNORM_BWD;
  CHECK(need(v, "x", x, ECS_F32, -2));
  int64_t C = x->ne[1];
  if (!(op->p.bn.eps >= 0)) return bad(v, "%s eps must be >= 0", "batch norm", NULL);
  if (!bwd) {
    if (!(op->p.bn.momentum >= 0 && op->p.bn.momentum <= 1))
      return bad(v, "%s momentum must be in [0, 1]", "batch norm", NULL);
    CHECK(need_vec(v, "gamma", op->src[1], C, 0));
    CHECK(need_vec(v, "beta", op->src[2], C, 0));
    /* training may run without running statistics (nothing to update); frozen needs them */
    CHECK(need_vec(v, "the running mean", op->src[3], C, op->p.bn.training));
    CHECK(need_vec(v, "the running var", op->src[4], C, op->p.bn.training));
    CHECK(need_like(v, "y", op->dst[0], x, ECS_F32));
    CHECK(need_vec(v, "the saved mean", op->dst[1], C, 1));
    return need_vec(v, "the saved invstd", op->dst[2], C, 1);
  }
  CHECK(need_like(v, "dy", op->src[1], x, ECS_F32));
  CHECK(need_vec(v, "gamma", op->src[2], C, 0));
  CHECK(need_vec(v, "the mean", op->src[3], C, 0));
  CHECK(need_vec(v, "the invstd", op->src[4], C, 0));
  CHECK(need_like(v, "dx", op->dst[0], x, ECS_F32));
  CHECK(need_vec(v, "dgamma", op->dst[1], C, 1));
  return need_vec(v, "dbeta", op->dst[2], C, 1);
}

static ecs_status validate_losses(const vctx *v) {
  const ecs_op *op = v->op;
  const ecs_tensor *x = op->src[0];
  switch (op->type) {
  case ECS_OP_ML_SOFT_MARGIN:
  case ECS_OP_ML_SOFT_MARGIN_BWD:
    CHECK(need(v, "the logits", x, ECS_F32, 2));
    CHECK(need_like(v, "the targets", op->src[1], x, ECS_F32));
    if (op->type == ECS_OP_ML_SOFT_MARGIN) return need_scalar(v, "the loss", op->dst[0]);
    CHECK(need_scalar(v, "dloss", op->src[2]));
    return need_like(v, "dlogits", op->dst[0], x, ECS_F32);
  default: { /* masked CE and its backward */
    CHECK(need(v, "the logits", x, ECS_F32, -2));
    const ecs_tensor *l = op->src[1];
    CHECK(need(v, "the labels", l, ECS_I32, x->nd - 1 > 0 ? x->nd - 1 : 1));
    for (int i = 0; i < l->nd; i++)
      if (l->ne[i] != (i == 0 ? x->ne[0] : x->ne[i + 1]))
        return bad(v, "%s must be the logits' shape without C", "the labels", l);
    CHECK(need_class_mask(v, op->src[2], x));
    if (op->type == ECS_OP_MASKED_CE) {
      CHECK(need_scalar(v, "the loss", op->dst[0]));
      return op->dst[1] ? need_scalar(v, "the count", op->dst[1]) : ECS_OK;
    }
    CHECK(need_scalar(v, "dloss", op->src[3]));
    return need_like(v, "dlogits", op->dst[0], x, ECS_F32);
  }
  }
}

ecs_status ecs_op_validate(const ecs_op *op, ecs_err *err) {
  if (!op) return ecs_err_set(err, ECS_ERR_INVALID, "no op given");
  vctx vc = {op, err}, *v = &vc;
  const ecs_tensor *x = op->src[0], *y = op->dst[0];
  switch (op->type) {
  case ECS_OP_COPY:
    if (!x) return bad(v, "%s is missing", "src", NULL);
    CHECK(need(v, "src", x, x->type, 0));
    return need_like(v, "dst", y, x, x->type);
  case ECS_OP_FILL: return need(v, "dst", y, ECS_F32, 0);
  case ECS_OP_SCALE:
  case ECS_OP_RELU:
  case ECS_OP_MAXMIN_NORM:
    if (op->type == ECS_OP_RELU && !(op->p.act.clip >= 0))
      return bad(v, "%s clip must be >= 0 (0: none)", "relu", NULL);
    if (op->type == ECS_OP_MAXMIN_NORM) {
      if (!(op->p.norm.eps >= 0)) return bad(v, "%s eps must be >= 0", "max-min norm", NULL);
      CHECK(need(v, "x", x, ECS_F32, -2));
    }
    CHECK(need(v, "x", x, ECS_F32, 0));
    return need_like(v, "y", y, x, ECS_F32);
  case ECS_OP_ADD:
  case ECS_OP_MUL:
  case ECS_OP_RELU_BWD:
    CHECK(need(v, "src0", x, ECS_F32, 0));
    CHECK(need_like(v, "src1", op->src[1], x, ECS_F32));
    return need_like(v, "dst", y, x, ECS_F32);
  case ECS_OP_CONV2D:
    if ((unsigned)op->p.conv.act >= ECS_ACT_COUNT)
      return bad(v, "%s is not an activation", "the fused activation", NULL);
    CHECK(check_conv(v, x, op->src[1], y, "x", "y"));
    return need_vec(v, "the bias", op->src[2], op->src[1]->ne[0], 1);
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT:
    /* a forward with a fused activation is never recorded: its backward does not exist */
    if (op->p.conv.act != ECS_ACT_NONE)
      return bad(v, "%s: the backward of a fused activation does not exist", "act", NULL);
    if (op->type == ECS_OP_CONV2D_BWD_DATA) return check_conv(v, y, op->src[1], x, "dx", "dy");
    CHECK(check_conv(v, x, y, op->src[1], "x", "dy"));
    return need_vec(v, "the bias gradient", op->dst[1], y->ne[0], 1);
  case ECS_OP_BATCHNORM:
  case ECS_OP_BATCHNORM_BWD: return validate_bn(v);
  case ECS_OP_POOL2D:
    CHECK(check_pool(v, x, y, "y"));
    if (op->dst[1] && op->p.pool.kind != ECS_POOL_MAX)
      return bad(v, "%s is only for max pooling", "a workspace", NULL);
    return ECS_OK;
  case ECS_OP_POOL2D_BWD:
    CHECK(check_pool(v, x, op->src[1], "dy"));
    return need_like(v, "dx", y, x, ECS_F32);
  case ECS_OP_GAP:
    CHECK(need(v, "x", x, ECS_F32, 4));
    CHECK(need(v, "y", y, ECS_F32, 2));
    if (y->ne[0] != x->ne[0] || y->ne[1] != x->ne[1])
      return bad(v, "%s must be (N, C) of x", "y", y);
    return ECS_OK;
  case ECS_OP_GAP_BWD:
    CHECK(need(v, "dy", x, ECS_F32, 2));
    CHECK(need(v, "dx", y, ECS_F32, 4));
    if (y->ne[0] != x->ne[0] || y->ne[1] != x->ne[1])
      return bad(v, "%s must be (N, C, H, W) of dy's (N, C)", "dx", y);
    return ECS_OK;
  case ECS_OP_CONCAT: {
    int n = op->p.concat.n;
    if (n < 1 || n > ECS_OP_MAX_SRC)
      return bad(v, "%s must be between 1 and 6", "the number of inputs", NULL);
    CHECK(need(v, "dst", y, y ? y->type : ECS_F32, -2));
    int64_t c = 0;
    for (int i = 0; i < n; i++) {
      char name[16];
      snprintf(name, sizeof name, "src%d", i);
      CHECK(need_same_but_c(v, name, op->src[i], y));
      c += op->src[i]->ne[1];
    }
    if (c != y->ne[1]) return bad(v, "%s's C must be the sum of the inputs' C", "dst", y);
    return ECS_OK;
  }
  case ECS_OP_SLICE_C:
    if (!x) return bad(v, "%s is missing", "src", NULL);
    CHECK(need(v, "src", x, x->type, -2));
    CHECK(need_same_but_c(v, "dst", y, x));
    if (op->p.slice.offset < 0 || op->p.slice.offset + y->ne[1] > x->ne[1])
      return bad(v, "%s is outside src's channels", "the slice", NULL);
    return ECS_OK;
  case ECS_OP_DROPOUT:
  case ECS_OP_DROPOUT_BWD:
    if (!(op->p.dropout.p >= 0 && op->p.dropout.p <= 1))
      return bad(v, "%s must be in [0, 1]", "the drop probability", NULL);
    CHECK(need(v, "src0", x, ECS_F32, 0));
    CHECK(need_like(v, "dst", y, x, ECS_F32));
    if (op->type == ECS_OP_DROPOUT)
      return op->dst[1] ? need_like(v, "the mask", op->dst[1], x, ECS_U8) : ECS_OK;
    return need_like(v, "the mask", op->src[1], x, ECS_U8);
  case ECS_OP_RESIZE_BILINEAR:
  case ECS_OP_RESIZE_BILINEAR_BWD:
    CHECK(need(v, "src", x, ECS_F32, 4));
    CHECK(need(v, "dst", y, ECS_F32, 4));
    if (y->ne[0] != x->ne[0] || y->ne[1] != x->ne[1])
      return bad(v, "%s must have src's N and C", "dst", y);
    return ECS_OK;
  case ECS_OP_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX:
    CHECK(need(v, "x", x, ECS_F32, -2));
    CHECK(need_class_mask(v, op->src[1], x));
    return need_like(v, "y", y, x, ECS_F32);
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX_BWD:
    CHECK(need(v, "y", x, ECS_F32, -2));
    CHECK(need_like(v, "dy", op->src[1], x, ECS_F32));
    return need_like(v, "dx", y, x, ECS_F32);
  case ECS_OP_ML_SOFT_MARGIN:
  case ECS_OP_ML_SOFT_MARGIN_BWD:
  case ECS_OP_MASKED_CE:
  case ECS_OP_MASKED_CE_BWD: return validate_losses(v);
  case ECS_OP_GAUSS_BLUR:
    if (op->p.blur.ksize < 1 || op->p.blur.ksize % 2 == 0 || !(op->p.blur.sigma > 0))
      return bad(v, "%s needs an odd ksize >= 1 and sigma > 0", "the blur", NULL);
    CHECK(need(v, "x", x, ECS_F32, 4));
    return need_like(v, "y", y, x, ECS_F32);
  default: return ecs_err_set(err, ECS_ERR_INVALID, "unknown op type %d", (int)op->type);
  }
}
