/* cuda-validate.c - what the CUDA backend checks before it queues an op.
 *
 * A kernel that reads past a tensor does not fail cleanly: it corrupts memory or leaves the
 * context in a sticky error that breaks every later call of the process. So every op is
 * checked on the host first: required tensors present, dtypes, shapes against each other and
 * against the parameters, and every tensor's bytes inside a buffer of this very device.
 * supports_op answers the questions that need no memory (op type, dtypes, layouts, parameter
 * ranges); validation adds the rest. */
#include "cuda-common.h"

#include <stdio.h>
#include <string.h>

#define NAME(op) ecs_op_name((op)->type)

/* The dtype each operand must have; -1 when the op has no such operand or any dtype goes. */
static int want_type(const ecs_op *op, int is_dst, int i) {
  switch (op->type) {
  case ECS_OP_COPY:
  case ECS_OP_CONCAT:
  case ECS_OP_SLICE_C: return -1;
  case ECS_OP_DROPOUT: return is_dst && i == 1 ? ECS_U8 : ECS_F32;
  case ECS_OP_DROPOUT_BWD: return !is_dst && i == 1 ? ECS_U8 : ECS_F32;
  case ECS_OP_MASKED_CE:
  case ECS_OP_MASKED_CE_BWD: return !is_dst && i == 1 ? ECS_I32 : ECS_F32;
  case ECS_OP_POOL2D: return is_dst && i == 1 ? ECS_I32 : ECS_F32; /* argmax workspace */
  case ECS_OP_POOL2D_BWD: return !is_dst && i == 2 ? ECS_I32 : ECS_F32;
  default: return ECS_F32;
  }
}

static int params_ok(const ecs_op *op) {
  switch (op->type) {
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT:
    for (int i = 0; i < 2; i++)
      if (op->p.conv.stride[i] < 1 || op->p.conv.dil[i] < 1 || op->p.conv.pad[i] < 0) return 0;
    /* a fused activation: ReLU or ReLU6, on the forward only */
    if (op->p.conv.act != ECS_ACT_NONE &&
        (op->type != ECS_OP_CONV2D ||
         (op->p.conv.act != ECS_ACT_RELU && op->p.conv.act != ECS_ACT_RELU6)))
      return 0;
    return op->p.conv.groups >= 1;
  case ECS_OP_POOL2D:
  case ECS_OP_POOL2D_BWD:
    if (op->p.pool.kind != ECS_POOL_MAX && op->p.pool.kind != ECS_POOL_AVG) return 0;
    for (int i = 0; i < 2; i++)
      if (op->p.pool.k[i] < 1 || op->p.pool.stride[i] < 1 || op->p.pool.pad[i] < 0 ||
          op->p.pool.pad[i] > op->p.pool.k[i] / 2)
        return 0;
    return 1;
  case ECS_OP_CONCAT: return op->p.concat.n >= 1 && op->p.concat.n <= ECS_OP_MAX_SRC;
  case ECS_OP_SLICE_C: return op->p.slice.offset >= 0;
  case ECS_OP_DROPOUT:
  case ECS_OP_DROPOUT_BWD: return op->p.dropout.p >= 0.0f && op->p.dropout.p <= 1.0f;
  case ECS_OP_GAUSS_BLUR:
    return op->p.blur.sigma > 0.0f && op->p.blur.ksize >= 1 && op->p.blur.ksize % 2 == 1 &&
           op->p.blur.ksize <= ECS_CUK_BLUR_MAX;
  case ECS_OP_BATCHNORM:
  case ECS_OP_BATCHNORM_BWD: return op->p.bn.eps >= 0.0f;
  default: return 1;
  }
}

int ecs_cuda_supports(const ecs_op *op) {
  if (op->type <= ECS_OP_NONE || op->type >= ECS_OP_COUNT) return 0;
  if (!params_ok(op)) return 0;
  for (int k = 0; k < ECS_OP_MAX_SRC + ECS_OP_MAX_DST; k++) {
    int is_dst = k >= ECS_OP_MAX_SRC, i = is_dst ? k - ECS_OP_MAX_SRC : k;
    const ecs_tensor *t = is_dst ? op->dst[i] : op->src[i];
    if (!t) continue;
    if (t->layout != ECS_LAYOUT_PLAIN) return 0;
    int want = want_type(op, is_dst, i);
    if (want >= 0 && t->type != (ecs_dtype)want) return 0;
  }
  return 1;
}

/* ---- validation -------------------------------------------------------------------------- */

/* The module has no backend.c (its wrappers, ecs_device_name and the like): tables directly. */
static const char *dev_name(ecs_device *dev) {
  return dev->iface.get_name(dev);
}

static ecs_status on_device(ecs_device *dev, const ecs_op *op, const ecs_tensor *t,
                            const char *role, ecs_err *err) {
  if (!t->data || !t->buffer)
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: %s has no memory", NAME(op), role);
  if (t->buffer->buft->device != dev)
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: %s lives in %s memory, not on %s", NAME(op), role,
                       t->buffer->buft->iface.get_name(t->buffer->buft), dev_name(dev));
  const char *base = t->buffer->iface.get_base(t->buffer), *p = t->data;
  size_t need = ecs_plain_nbytes(t);
  if (p < base || (size_t)(p - base) > t->buffer->size ||
      need > t->buffer->size - (size_t)(p - base))
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: %s (%zu bytes) reaches outside its buffer",
                       NAME(op), role, need);
  return ECS_OK;
}

static ecs_status need(ecs_device *dev, const ecs_op *op, const ecs_tensor *t, const char *role,
                       ecs_err *err) {
  if (!t) return ecs_err_set(err, ECS_ERR_INVALID, "%s: missing %s", NAME(op), role);
  return on_device(dev, op, t, role, err);
}

static ecs_status bad_shape(const ecs_op *op, const ecs_tensor *t, const char *role,
                            const char *expect, ecs_err *err) {
  char s[64];
  return ecs_err_set(err, ECS_ERR_INVALID, "%s: %s has shape %s, expected %s", NAME(op), role,
                     ecs_shape_str(t, s, sizeof s), expect);
}

static ecs_status same(const ecs_op *op, const ecs_tensor *a, const char *ra, const ecs_tensor *b,
                       const char *rb, ecs_err *err) {
  if (ecs_same_shape(a, b)) return ECS_OK;
  char sa[64], sb[64];
  return ecs_err_set(err, ECS_ERR_INVALID, "%s: %s %s and %s %s differ in shape", NAME(op), ra,
                     ecs_shape_str(a, sa, sizeof sa), rb, ecs_shape_str(b, sb, sizeof sb));
}

static ecs_status dims(const ecs_op *op, const ecs_tensor *t, const char *role, int nd,
                       const int64_t *ne, ecs_err *err) {
  int ok = t->nd == nd;
  for (int i = 0; ok && i < nd; i++)
    ok = ne[i] < 0 || t->ne[i] == ne[i];
  if (ok) return ECS_OK;
  char e[96] = "[";
  size_t u = 1;
  for (int i = 0; i < nd && u < sizeof e; i++)
    u += (size_t)snprintf(e + u, sizeof e - u, ne[i] < 0 ? "%s*" : "%s%lld", i ? ", " : "",
                          (long long)ne[i]);
  if (u < sizeof e) snprintf(e + u, sizeof e - u, "]");
  return bad_shape(op, t, role, e, err);
}

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    ecs_status s_ = (x);                                                                           \
    if (s_ != ECS_OK) return s_;                                                                   \
  } while (0)
#define D4(t, role)     CHECK(dims(op, t, role, 4, (int64_t[]){-1, -1, -1, -1}, err))
#define VEC(t, role, c) CHECK(dims(op, t, role, 1, (int64_t[]){c}, err))

static ecs_status at_least_2d(const ecs_op *op, const ecs_tensor *t, const char *role,
                              ecs_err *err) {
  return t->nd >= 2 ? ECS_OK : bad_shape(op, t, role, "(N, C, ...)", err);
}

/* t has ref's shape except for its channel count */
static ecs_status same_but_c(const ecs_op *op, const ecs_tensor *t, const char *role,
                             const ecs_tensor *ref, ecs_err *err) {
  int ok = t->nd == ref->nd;
  for (int i = 0; ok && i < t->nd; i++)
    ok = i == 1 || t->ne[i] == ref->ne[i];
  if (ok) return ECS_OK;
  char sr[64], e[96];
  snprintf(e, sizeof e, "%s with any channel count", ecs_shape_str(ref, sr, sizeof sr));
  return bad_shape(op, t, role, e, err);
}

static ecs_status one_element(const ecs_op *op, const ecs_tensor *t, const char *role,
                              ecs_err *err) {
  return ecs_nelements(t) == 1 ? ECS_OK : bad_shape(op, t, role, "one element", err);
}

static ecs_status check_conv(const ecs_op *op, const ecs_tensor *x, const ecs_tensor *w,
                             const ecs_tensor *y, ecs_err *err) {
  D4(x, "x");
  D4(w, "w");
  int g = op->p.conv.groups;
  if (x->ne[1] != w->ne[1] * g || w->ne[0] % g != 0)
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "%s: %lld input channels and filter %lldx%lld do "
                       "not fit %d groups",
                       NAME(op), (long long)x->ne[1], (long long)w->ne[0], (long long)w->ne[1], g);
  int64_t oh = ecs_conv_out_size(x->ne[2], (int)w->ne[2], op->p.conv.stride[0], op->p.conv.pad[0],
                                 op->p.conv.dil[0]);
  int64_t ow = ecs_conv_out_size(x->ne[3], (int)w->ne[3], op->p.conv.stride[1], op->p.conv.pad[1],
                                 op->p.conv.dil[1]);
  if (oh < 1 || ow < 1)
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: the filter does not fit the padded input",
                       NAME(op));
  return dims(op, y, "the output side", 4, (int64_t[]){x->ne[0], w->ne[0], oh, ow}, err);
}

static ecs_status check_pool(const ecs_op *op, const ecs_tensor *x, const ecs_tensor *y,
                             ecs_err *err) {
  D4(x, "x");
  int64_t oh = ecs_pool_out_size(x->ne[2], op->p.pool.k[0], op->p.pool.stride[0], op->p.pool.pad[0],
                                 op->p.pool.ceil_mode);
  int64_t ow = ecs_pool_out_size(x->ne[3], op->p.pool.k[1], op->p.pool.stride[1], op->p.pool.pad[1],
                                 op->p.pool.ceil_mode);
  if (oh < 1 || ow < 1)
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: the window does not fit the padded input",
                       NAME(op));
  return dims(op, y, "the pooled tensor", 4, (int64_t[]){x->ne[0], x->ne[1], oh, ow}, err);
}

static ecs_status check_pool_ws(const ecs_op *op, const ecs_tensor *ws, const ecs_tensor *y,
                                ecs_err *err) {
  if (op->p.pool.kind != ECS_POOL_MAX)
    return ecs_err_set(err, ECS_ERR_INVALID, "%s: a workspace is only for max pooling", NAME(op));
  return same(op, ws, "the argmax workspace", y, "the pooled tensor", err);
}

static ecs_status check_class_mask(const ecs_op *op, const ecs_tensor *m, const ecs_tensor *x,
                                   ecs_err *err) {
  if (!m) return ECS_OK;
  return dims(op, m, "the class mask", 2, (int64_t[]){x->ne[0], x->ne[1]}, err);
}

static ecs_status check_shapes(const ecs_op *op, ecs_err *err) {
  ecs_tensor *const *s = op->src, *const *d = op->dst;
  switch (op->type) {
  case ECS_OP_COPY:
    CHECK(same(op, s[0], "src", d[0], "dst", err));
    if (s[0]->type != d[0]->type)
      return ecs_err_set(err, ECS_ERR_INVALID, "copy: dtypes %s and %s differ",
                         ecs_dtype_name(s[0]->type), ecs_dtype_name(d[0]->type));
    return ECS_OK;
  case ECS_OP_FILL: return ECS_OK;
  case ECS_OP_SCALE:
  case ECS_OP_RELU: return same(op, s[0], "x", d[0], "y", err);
  case ECS_OP_ADD:
  case ECS_OP_MUL:
  case ECS_OP_RELU_BWD:
  case ECS_OP_DROPOUT_BWD:
    CHECK(same(op, s[0], "src0", d[0], "dst", err));
    return same(op, s[1], "src1", d[0], "dst", err);
  case ECS_OP_DROPOUT:
    CHECK(same(op, s[0], "x", d[0], "y", err));
    return d[1] ? same(op, s[0], "x", d[1], "mask", err) : ECS_OK;
  case ECS_OP_CONV2D:
    CHECK(check_conv(op, s[0], s[1], d[0], err));
    if (s[2]) VEC(s[2], "bias", s[1]->ne[0]);
    return ECS_OK;
  case ECS_OP_CONV2D_BWD_DATA: return check_conv(op, d[0], s[1], s[0], err);
  case ECS_OP_CONV2D_BWD_WEIGHT:
    CHECK(check_conv(op, s[0], d[0], s[1], err));
    if (d[1]) VEC(d[1], "db", d[0]->ne[0]);
    return ECS_OK;
  case ECS_OP_BATCHNORM: {
    CHECK(at_least_2d(op, s[0], "x", err));
    int64_t c = s[0]->ne[1];
    CHECK(same(op, s[0], "x", d[0], "y", err));
    for (int i = 1; i < 5; i++)
      if (s[i])
        VEC(s[i], i == 1 ? "gamma" : i == 2 ? "beta" : i == 3 ? "running mean" : "running var", c);
    if (op->p.bn.training && ecs_nelements(s[0]) / c < 2)
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "batchnorm: training needs more than one value per channel");
    if (d[1]) VEC(d[1], "mean", c);
    if (d[2]) VEC(d[2], "invstd", c);
    return ECS_OK;
  }
  case ECS_OP_BATCHNORM_BWD: {
    CHECK(at_least_2d(op, s[0], "x", err));
    int64_t c = s[0]->ne[1];
    CHECK(same(op, s[0], "x", s[1], "dy", err));
    CHECK(same(op, s[0], "x", d[0], "dx", err));
    if (s[2]) VEC(s[2], "gamma", c);
    VEC(s[3], "mean", c);
    VEC(s[4], "invstd", c);
    if (d[1]) VEC(d[1], "dgamma", c);
    if (d[2]) VEC(d[2], "dbeta", c);
    return ECS_OK;
  }
  case ECS_OP_POOL2D:
    CHECK(check_pool(op, s[0], d[0], err));
    return d[1] ? check_pool_ws(op, d[1], d[0], err) : ECS_OK;
  case ECS_OP_POOL2D_BWD:
    CHECK(check_pool(op, s[0], s[1], err));
    CHECK(same(op, s[0], "x", d[0], "dx", err));
    return s[2] ? check_pool_ws(op, s[2], s[1], err) : ECS_OK;
  case ECS_OP_GAP:
    D4(s[0], "x");
    return dims(op, d[0], "y", 2, (int64_t[]){s[0]->ne[0], s[0]->ne[1]}, err);
  case ECS_OP_GAP_BWD:
    D4(d[0], "dx");
    return dims(op, s[0], "dy", 2, (int64_t[]){d[0]->ne[0], d[0]->ne[1]}, err);
  case ECS_OP_CONCAT: {
    CHECK(at_least_2d(op, d[0], "dst", err));
    int64_t c = 0;
    for (int i = 0; i < op->p.concat.n; i++) {
      const ecs_tensor *t = s[i];
      CHECK(same_but_c(op, t, "a concat input", d[0], err));
      if (t->type != d[0]->type)
        return ecs_err_set(err, ECS_ERR_INVALID, "concat: input %d is %s, the output %s", i,
                           ecs_dtype_name(t->type), ecs_dtype_name(d[0]->type));
      c += t->ne[1];
    }
    if (c != d[0]->ne[1])
      return ecs_err_set(err, ECS_ERR_INVALID, "concat: inputs have %lld channels, the output %lld",
                         (long long)c, (long long)d[0]->ne[1]);
    return ECS_OK;
  }
  case ECS_OP_SLICE_C:
    CHECK(at_least_2d(op, s[0], "src", err));
    CHECK(same_but_c(op, d[0], "dst", s[0], err));
    if (s[0]->type != d[0]->type || op->p.slice.offset + d[0]->ne[1] > s[0]->ne[1])
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "slice_c: channels %d..%lld of %lld (or dtypes differ)",
                         op->p.slice.offset, (long long)(op->p.slice.offset + d[0]->ne[1]),
                         (long long)s[0]->ne[1]);
    return ECS_OK;
  case ECS_OP_RESIZE_BILINEAR:
  case ECS_OP_RESIZE_BILINEAR_BWD: {
    const ecs_tensor *x = op->type == ECS_OP_RESIZE_BILINEAR ? s[0] : d[0];
    const ecs_tensor *y = op->type == ECS_OP_RESIZE_BILINEAR ? d[0] : s[0];
    D4(x, "x");
    CHECK(dims(op, y, "y", 4, (int64_t[]){x->ne[0], x->ne[1], -1, -1}, err));
    if (y->ne[2] < 1 || y->ne[3] < 1 || x->ne[2] < 1 || x->ne[3] < 1)
      return ecs_err_set(err, ECS_ERR_INVALID, "%s: empty image", NAME(op));
    return ECS_OK;
  }
  case ECS_OP_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX:
    CHECK(at_least_2d(op, s[0], "x", err));
    CHECK(same(op, s[0], "x", d[0], "y", err));
    return check_class_mask(op, s[1], s[0], err);
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX_BWD:
    CHECK(at_least_2d(op, s[0], "y", err));
    CHECK(same(op, s[0], "y", s[1], "dy", err));
    return same(op, s[0], "y", d[0], "dx", err);
  case ECS_OP_ML_SOFT_MARGIN:
    CHECK(same(op, s[0], "logits", s[1], "targets", err));
    return one_element(op, d[0], "the loss", err);
  case ECS_OP_ML_SOFT_MARGIN_BWD:
    CHECK(same(op, s[0], "logits", s[1], "targets", err));
    CHECK(one_element(op, s[2], "dloss", err));
    return same(op, s[0], "logits", d[0], "dlogits", err);
  case ECS_OP_MASKED_CE:
  case ECS_OP_MASKED_CE_BWD: {
    CHECK(at_least_2d(op, s[0], "logits", err));
    if (ecs_nelements(s[1]) * s[0]->ne[1] != ecs_nelements(s[0]) || s[1]->ne[0] != s[0]->ne[0])
      return bad_shape(op, s[1], "labels", "the logits' shape without C", err);
    CHECK(check_class_mask(op, s[2], s[0], err));
    if (op->type == ECS_OP_MASKED_CE_BWD) {
      CHECK(one_element(op, s[3], "dloss", err));
      return same(op, s[0], "logits", d[0], "dlogits", err);
    }
    CHECK(one_element(op, d[0], "the loss", err));
    return d[1] ? one_element(op, d[1], "the count", err) : ECS_OK;
  }
  case ECS_OP_MAXMIN_NORM:
    CHECK(at_least_2d(op, s[0], "x", err));
    return same(op, s[0], "x", d[0], "y", err);
  case ECS_OP_GAUSS_BLUR: D4(s[0], "x"); return same(op, s[0], "x", d[0], "y", err);
  default: return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "%s: not an op of this backend", NAME(op));
  }
}

/* Which operands an op requires: bit i of src / dst. Optional ones are checked when present. */
static void required(const ecs_op *op, unsigned *src, unsigned *dst) {
  unsigned s = 0, d = 1;
  switch (op->type) {
  case ECS_OP_FILL: s = 0; break;
  case ECS_OP_COPY:
  case ECS_OP_SCALE:
  case ECS_OP_RELU:
  case ECS_OP_GAP:
  case ECS_OP_GAP_BWD:
  case ECS_OP_SLICE_C:
  case ECS_OP_RESIZE_BILINEAR:
  case ECS_OP_RESIZE_BILINEAR_BWD:
  case ECS_OP_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX:
  case ECS_OP_MAXMIN_NORM:
  case ECS_OP_GAUSS_BLUR:
  case ECS_OP_POOL2D: s = 1; break;
  case ECS_OP_DROPOUT: s = 1; break; /* the mask only when a backward pass will need it */
  case ECS_OP_CONCAT: s = (1u << op->p.concat.n) - 1; break;
  case ECS_OP_BATCHNORM: s = op->p.bn.training ? 1 : 1 | 8 | 16; break;
  case ECS_OP_BATCHNORM_BWD: s = 1 | 2 | 8 | 16; break;
  case ECS_OP_ML_SOFT_MARGIN_BWD: s = 7; break;
  case ECS_OP_MASKED_CE_BWD: s = 1 | 2 | 8; break;
  default: s = 3; break; /* add, mul, relu_bwd, dropout_bwd, conv*, pool_bwd, softmax_bwd, losses */
  }
  *src = s, *dst = d;
}

ecs_status ecs_cuda_validate(ecs_device *dev, const ecs_op *op, ecs_err *err) {
  if (!ecs_cuda_supports(op))
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED,
                       "%s: not supported on %s with these dtypes, layouts or parameters", NAME(op),
                       dev_name(dev));
  /* the contract every backend shares first, so messages match the CPU's; then what this
   * backend's kernels assume and where the memory lives */
  CHECK(ecs_op_validate(op, err));
  unsigned rs, rd;
  required(op, &rs, &rd);
  char role[16];
  for (int i = 0; i < ECS_OP_MAX_SRC; i++) {
    snprintf(role, sizeof role, "src%d", i);
    if (op->src[i])
      CHECK(on_device(dev, op, op->src[i], role, err));
    else if (rs & (1u << i))
      return need(dev, op, NULL, role, err);
  }
  for (int i = 0; i < ECS_OP_MAX_DST; i++) {
    snprintf(role, sizeof role, "dst%d", i);
    if (op->dst[i])
      CHECK(on_device(dev, op, op->dst[i], role, err));
    else if (rd & (1u << i))
      return need(dev, op, NULL, role, err);
  }
  return check_shapes(op, err);
}
