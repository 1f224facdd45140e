/* cuda-ops.c - runs a validated op on a CUDA backend's stream.
 *
 * Convolutions go to cuDNN (cuda-conv.c), global average pooling to cuBLAS (a matrix-vector
 * product with a vector of ones), copies and channel concatenation/slicing to strided
 * cudaMemcpy2DAsync, and everything else to the backend's own kernels (the .cu files, twins of
 * the reference kernels). Shapes were checked by ecs_cuda_validate, so this file only maps
 * tensors to kernel arguments. Nothing here waits for the GPU. */
#include "cuda-common.h"

static const float *cf(const ecs_tensor *t) {
  return t ? (const float *)t->data : NULL;
}
static float *f(ecs_tensor *t) {
  return t ? (float *)t->data : NULL;
}

/* (N, C, inner) view of an (N, C, ...) tensor: inner is the product of the dimensions after C */
static void nchw(const ecs_tensor *t, int64_t *n, int64_t *c, int64_t *hw) {
  *n = t->ne[0];
  *c = t->nd >= 2 ? t->ne[1] : 1;
  *hw = 1;
  for (int i = 2; i < t->nd; i++)
    *hw *= t->ne[i];
}

/* Copies rows of `row` bytes at channel offsets: the shared shape of concat and slice. */
static ecs_status copy_channels(ecs_cuda_backend *c, void *dst, size_t dst_pitch, const void *src,
                                size_t src_pitch, size_t row, int64_t n, ecs_err *err) {
  if (row == 0 || n == 0) return ECS_OK;
  CU_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row, (size_t)n,
                             cudaMemcpyDeviceToDevice, c->stream));
  return ECS_OK;
}

static ecs_status run_gap(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  const ecs_tensor *x = op->src[0];
  int64_t hw = x->ne[2] * x->ne[3], nc = x->ne[0] * x->ne[1];
  if (hw > INT32_MAX || nc > INT32_MAX)
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED,
                       "gap: %lld planes of %lld pixels exceed cuBLAS's int sizes", (long long)nc,
                       (long long)hw);
  if (nc == 0) return ECS_OK;
  ecs_status st = ecs_cuda_ensure_ones(c, (size_t)hw, err);
  if (st != ECS_OK) return st;
  /* x seen column-major is an hw x nc matrix; y = x^T ones / hw */
  const float alpha = 1.0f / (float)hw, beta = 0.0f;
  CUBLAS_CHECK(cublasSgemv(c->cublas, CUBLAS_OP_T, (int)hw, (int)nc, &alpha, cf(x), (int)hw,
                           c->ones, 1, &beta, f(op->dst[0]), 1));
  return ECS_OK;
}

static ecs_status run_pool(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  int bwd = op->type == ECS_OP_POOL2D_BWD;
  const ecs_tensor *x = op->src[0], *y = bwd ? op->src[1] : op->dst[0];
  ecs_cuk_pool p = {
      .nc = x->ne[0] * x->ne[1],
      .h = x->ne[2],
      .w = x->ne[3],
      .oh = y->ne[2],
      .ow = y->ne[3],
      .kh = op->p.pool.k[0],
      .kw = op->p.pool.k[1],
      .sh = op->p.pool.stride[0],
      .sw = op->p.pool.stride[1],
      .ph = op->p.pool.pad[0],
      .pw = op->p.pool.pad[1],
      .is_max = op->p.pool.kind == ECS_POOL_MAX,
      .count_include_pad = op->p.pool.count_include_pad,
  };
  if (!bwd) {
    int32_t *am = p.is_max && op->dst[1] ? (int32_t *)op->dst[1]->data : NULL;
    CU_CHECK(ecs_cuk_pool_fwd(c->stream, &p, cf(x), f(op->dst[0]), am));
    return ECS_OK;
  }
  const int32_t *am = p.is_max && op->src[2] ? (const int32_t *)op->src[2]->data : NULL;
  CU_CHECK(cudaMemsetAsync(op->dst[0]->data, 0, ecs_plain_nbytes(op->dst[0]), c->stream));
  CU_CHECK(ecs_cuk_pool_bwd(c->stream, &p, cf(x), cf(op->src[1]), am, f(op->dst[0])));
  return ECS_OK;
}

static ecs_status run_bn(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  ecs_tensor *const *s = op->src, *const *d = op->dst;
  int64_t n, ch, hw;
  nchw(s[0], &n, &ch, &hw);
  if (op->type == ECS_OP_BATCHNORM) {
    if (op->p.bn.training) {
      /* the batch statistics are optional outputs (a pass that records no gradient does not
       * keep them): the kernels still need them, in scratch */
      float *mean = f(d[1]), *invstd = f(d[2]);
      if (!mean || !invstd) {
        ecs_status st = ecs_cuda_ensure_scratch(c, 2 * (size_t)ch * sizeof(float), err);
        if (st != ECS_OK) return st;
        if (!mean) mean = c->scratch;
        if (!invstd) invstd = (float *)c->scratch + ch;
      }
      CU_CHECK(ecs_cuk_bn_train_fwd(c->stream, cf(s[0]), cf(s[1]), cf(s[2]), f(s[3]), f(s[4]),
                                    f(d[0]), mean, invstd, n, ch, hw, op->p.bn.eps,
                                    op->p.bn.momentum));
    } else {
      CU_CHECK(ecs_cuk_bn_frozen_fwd(c->stream, cf(s[0]), cf(s[1]), cf(s[2]), cf(s[3]), cf(s[4]),
                                     f(d[0]), f(d[1]), f(d[2]), n, ch, hw, op->p.bn.eps));
    }
    return ECS_OK;
  }
  ecs_status st = ecs_cuda_ensure_scratch(c, 2 * (size_t)ch * sizeof(float), err);
  if (st != ECS_OK) return st;
  CU_CHECK(ecs_cuk_bn_bwd(c->stream, cf(s[0]), cf(s[1]), cf(s[2]), cf(s[3]), cf(s[4]), f(d[0]),
                          f(d[1]), f(d[2]), c->scratch, n, ch, hw, op->p.bn.training));
  return ECS_OK;
}

static ecs_status run_concat_slice(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  ecs_tensor *d = op->dst[0];
  int64_t b, ch, inner;
  nchw(d, &b, &ch, &inner);
  size_t plane = (size_t)inner * ecs_dtype_size(d->type);
  if (op->type == ECS_OP_SLICE_C) {
    const ecs_tensor *s = op->src[0];
    const char *from = (const char *)s->data + (size_t)op->p.slice.offset * plane;
    return copy_channels(c, d->data, (size_t)d->ne[1] * plane, from, (size_t)s->ne[1] * plane,
                         (size_t)d->ne[1] * plane, d->ne[0], err);
  }
  size_t off = 0;
  for (int i = 0; i < op->p.concat.n; i++) {
    const ecs_tensor *s = op->src[i];
    size_t row = (size_t)s->ne[1] * plane;
    ecs_status st = copy_channels(c, (char *)d->data + off, (size_t)d->ne[1] * plane, s->data, row,
                                  row, d->ne[0], err);
    if (st != ECS_OK) return st;
    off += row;
  }
  return ECS_OK;
}

static ecs_status run_loss(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  ecs_tensor *const *s = op->src, *const *d = op->dst;
  ecs_status st = ecs_cuda_ensure_scratch(c, 64, err);
  if (st != ECS_OK) return st;
  if (op->type == ECS_OP_ML_SOFT_MARGIN) {
    CU_CHECK(ecs_cuk_ml_soft_margin(c->stream, cf(s[0]), cf(s[1]), f(d[0]), ecs_nelements(s[0]),
                                    c->scratch));
    return ECS_OK;
  }
  if (op->type == ECS_OP_ML_SOFT_MARGIN_BWD) {
    CU_CHECK(ecs_cuk_ml_soft_margin_bwd(c->stream, cf(s[0]), cf(s[1]), cf(s[2]), f(d[0]),
                                        ecs_nelements(s[0])));
    return ECS_OK;
  }
  int64_t n, ch, hw;
  nchw(s[0], &n, &ch, &hw);
  const int32_t *labels = s[1]->data;
  double bad = 0;
  if (op->type == ECS_OP_MASKED_CE)
    CU_CHECK(ecs_cuk_masked_ce(c->stream, cf(s[0]), labels, cf(s[2]), f(d[0]), f(d[1]), n, ch, hw,
                               op->p.ce.ignore_index, c->scratch, &bad));
  else
    CU_CHECK(ecs_cuk_masked_ce_bwd(c->stream, cf(s[0]), labels, cf(s[2]), cf(s[3]), f(d[0]), n, ch,
                                   hw, op->p.ce.ignore_index, c->scratch, &bad));
  if (bad > 0)
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "%s: %.0f labels are outside [0, %lld) or a "
                       "masked-out class, and not the ignore index %d",
                       ecs_op_name(op->type), bad, (long long)ch, op->p.ce.ignore_index);
  return ECS_OK;
}

ecs_status ecs_cuda_run_op(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  ecs_tensor *const *s = op->src, *const *d = op->dst;
  cudaStream_t st = c->stream;
  int64_t n = d[0] ? ecs_nelements(d[0]) : 0, b, ch, hw;
  switch (op->type) {
  case ECS_OP_COPY:
    if (n)
      CU_CHECK(cudaMemcpyAsync(d[0]->data, s[0]->data, ecs_plain_nbytes(d[0]),
                               cudaMemcpyDeviceToDevice, st));
    return ECS_OK;
  case ECS_OP_FILL: CU_CHECK(ecs_cuk_fill(st, f(d[0]), n, op->p.scalar.a)); return ECS_OK;
  case ECS_OP_SCALE:
    CU_CHECK(ecs_cuk_scale(st, cf(s[0]), f(d[0]), n, op->p.scalar.a, op->p.scalar.b));
    return ECS_OK;
  case ECS_OP_ADD:
    CU_CHECK(ecs_cuk_add(st, cf(s[0]), cf(s[1]), f(d[0]), n, op->p.scalar.a, op->p.scalar.b));
    return ECS_OK;
  case ECS_OP_MUL: CU_CHECK(ecs_cuk_mul(st, cf(s[0]), cf(s[1]), f(d[0]), n)); return ECS_OK;
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT: return ecs_cuda_conv(c, op, err);
  case ECS_OP_BATCHNORM:
  case ECS_OP_BATCHNORM_BWD: return run_bn(c, op, err);
  case ECS_OP_RELU: CU_CHECK(ecs_cuk_relu(st, cf(s[0]), f(d[0]), n, op->p.act.clip)); return ECS_OK;
  case ECS_OP_RELU_BWD:
    CU_CHECK(ecs_cuk_relu_bwd(st, cf(s[0]), cf(s[1]), f(d[0]), n, op->p.act.clip));
    return ECS_OK;
  case ECS_OP_POOL2D:
  case ECS_OP_POOL2D_BWD: return run_pool(c, op, err);
  case ECS_OP_GAP: return run_gap(c, op, err);
  case ECS_OP_GAP_BWD:
    CU_CHECK(ecs_cuk_gap_bwd(st, cf(s[0]), f(d[0]), d[0]->ne[0] * d[0]->ne[1],
                             d[0]->ne[2] * d[0]->ne[3]));
    return ECS_OK;
  case ECS_OP_CONCAT:
  case ECS_OP_SLICE_C: return run_concat_slice(c, op, err);
  case ECS_OP_DROPOUT:
    CU_CHECK(ecs_cuk_dropout(st, cf(s[0]), f(d[0]), d[1] ? (uint8_t *)d[1]->data : NULL, n,
                             op->p.dropout.p, op->p.dropout.seed));
    return ECS_OK;
  case ECS_OP_DROPOUT_BWD:
    CU_CHECK(ecs_cuk_dropout_bwd(st, cf(s[0]), (const uint8_t *)s[1]->data, f(d[0]), n,
                                 op->p.dropout.p));
    return ECS_OK;
  case ECS_OP_RESIZE_BILINEAR:
    CU_CHECK(ecs_cuk_resize_fwd(st, cf(s[0]), f(d[0]), s[0]->ne[0] * s[0]->ne[1], s[0]->ne[2],
                                s[0]->ne[3], d[0]->ne[2], d[0]->ne[3]));
    return ECS_OK;
  case ECS_OP_RESIZE_BILINEAR_BWD:
    CU_CHECK(cudaMemsetAsync(d[0]->data, 0, ecs_plain_nbytes(d[0]), st));
    CU_CHECK(ecs_cuk_resize_bwd(st, cf(s[0]), f(d[0]), d[0]->ne[0] * d[0]->ne[1], d[0]->ne[2],
                                d[0]->ne[3], s[0]->ne[2], s[0]->ne[3]));
    return ECS_OK;
  case ECS_OP_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX:
    nchw(s[0], &b, &ch, &hw);
    CU_CHECK(ecs_cuk_softmax(st, cf(s[0]), cf(s[1]), f(d[0]), b, ch, hw,
                             op->type == ECS_OP_LOG_SOFTMAX));
    return ECS_OK;
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX_BWD:
    nchw(s[0], &b, &ch, &hw);
    CU_CHECK(ecs_cuk_softmax_bwd(st, cf(s[0]), cf(s[1]), f(d[0]), b, ch, hw,
                                 op->type == ECS_OP_LOG_SOFTMAX_BWD));
    return ECS_OK;
  case ECS_OP_ML_SOFT_MARGIN:
  case ECS_OP_ML_SOFT_MARGIN_BWD:
  case ECS_OP_MASKED_CE:
  case ECS_OP_MASKED_CE_BWD: return run_loss(c, op, err);
  case ECS_OP_MAXMIN_NORM:
    nchw(s[0], &b, &ch, &hw);
    CU_CHECK(ecs_cuk_maxmin_norm(st, cf(s[0]), f(d[0]), b * ch, hw, op->p.norm.eps));
    return ECS_OK;
  case ECS_OP_GAUSS_BLUR:
    CU_CHECK(ecs_cuk_gauss_blur(st, cf(s[0]), f(d[0]), s[0]->ne[0] * s[0]->ne[1], s[0]->ne[2],
                                s[0]->ne[3], op->p.blur.sigma, op->p.blur.ksize));
    return ECS_OK;
  default:
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "%s: not an op of the CUDA backend",
                       ecs_op_name(op->type));
  }
}
