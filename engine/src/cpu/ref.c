/* ref.c - dispatch for the reference kernels, and the element-wise ones.
 *
 * Every kernel reads and writes plain host tensors. Other kernel families live in ref-*.c
 * beside this file and are declared in ref-impl.h. ecs_ref_compute validates each op against
 * the generic contract (ecs_op_validate) before it runs a kernel, so bad shapes are an error
 * message, never a read out of bounds. */
#include "ref.h"

#include "../backend-impl.h"
#include "ref-impl.h"

#include <string.h>

static int all_plain(const ecs_op *op) {
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && op->src[i]->layout != ECS_LAYOUT_PLAIN) return 0;
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && op->dst[i]->layout != ECS_LAYOUT_PLAIN) return 0;
  return 1;
}

int ecs_ref_supports(const ecs_op *op) {
  if (!op || op->type <= ECS_OP_NONE || op->type >= ECS_OP_COUNT) return 0;
  return all_plain(op);
}

static ecs_status ref_elementwise(const ecs_op *op, int nt) {
  ecs_tensor *d = op->dst[0];
  float *y = d->data;
  const float *a = op->src[0] ? op->src[0]->data : NULL;
  const float *b = op->src[1] ? op->src[1]->data : NULL;
  float pa = op->p.scalar.a, pb = op->p.scalar.b, clip = op->p.act.clip;
  int64_t n = ecs_nelements(d);
  switch (op->type) {
  case ECS_OP_COPY: memcpy(d->data, op->src[0]->data, ecs_plain_nbytes(d)); break;
  case ECS_OP_FILL:
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
      y[i] = pa;
    break;
  case ECS_OP_SCALE:
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
      y[i] = pa * a[i] + pb;
    break;
  case ECS_OP_ADD:
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
      y[i] = pa * a[i] + pb * b[i];
    break;
  case ECS_OP_MUL:
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
      y[i] = a[i] * b[i];
    break;
  case ECS_OP_RELU:
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) {
      float v = a[i] > 0 ? a[i] : 0;
      y[i] = (clip > 0 && v > clip) ? clip : v;
    }
    break;
  case ECS_OP_RELU_BWD:
    /* the gradient is 0 at the kinks themselves (x = 0, x = clip), as in PyTorch */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
      y[i] = (a[i] > 0 && !(clip > 0 && a[i] >= clip)) ? b[i] : 0;
    break;
  default: break;
  }
  return ECS_OK;
}

ecs_status ecs_ref_compute(const ecs_op *op, int n_threads, ecs_err *err) {
  if (!op) return ecs_err_set(err, ECS_ERR_INVALID, "no op given");
  if (!all_plain(op))
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "%s: reference kernels need plain layouts",
                       ecs_op_name(op->type));
  ecs_status st = ecs_op_validate(op, err);
  if (st != ECS_OK) return st;
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && !op->src[i]->data)
      return ecs_err_set(err, ECS_ERR_INVALID, "%s: src%d has no memory", ecs_op_name(op->type), i);
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && !op->dst[i]->data)
      return ecs_err_set(err, ECS_ERR_INVALID, "%s: dst%d has no memory", ecs_op_name(op->type), i);
  if (op->type == ECS_OP_POOL2D && op->dst[1] &&
      (op->dst[1]->type != ECS_I32 || !ecs_same_shape(op->dst[1], op->dst[0])))
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "pool2d: the reference's workspace holds argmax indices: I32 of y's shape");
  int nt = n_threads > 0 ? n_threads : 1;
  switch (op->type) {
  case ECS_OP_COPY:
  case ECS_OP_FILL:
  case ECS_OP_SCALE:
  case ECS_OP_ADD:
  case ECS_OP_MUL:
  case ECS_OP_RELU:
  case ECS_OP_RELU_BWD: return ref_elementwise(op, nt);
  case ECS_OP_CONV2D: return ecs_ref_conv2d(op, nt, err);
  case ECS_OP_CONV2D_BWD_DATA: return ecs_ref_conv2d_bwd_data(op, nt, err);
  case ECS_OP_CONV2D_BWD_WEIGHT: return ecs_ref_conv2d_bwd_weight(op, nt, err);
  case ECS_OP_BATCHNORM: return ecs_ref_batchnorm(op, nt, err);
  case ECS_OP_BATCHNORM_BWD: return ecs_ref_batchnorm_bwd(op, nt, err);
  case ECS_OP_POOL2D: return ecs_ref_pool2d(op, nt, err);
  case ECS_OP_POOL2D_BWD: return ecs_ref_pool2d_bwd(op, nt, err);
  case ECS_OP_GAP: return ecs_ref_gap(op, nt, err);
  case ECS_OP_GAP_BWD: return ecs_ref_gap_bwd(op, nt, err);
  case ECS_OP_CONCAT: return ecs_ref_concat(op, nt, err);
  case ECS_OP_SLICE_C: return ecs_ref_slice_c(op, nt, err);
  case ECS_OP_DROPOUT: return ecs_ref_dropout(op, nt, err);
  case ECS_OP_DROPOUT_BWD: return ecs_ref_dropout_bwd(op, nt, err);
  case ECS_OP_RESIZE_BILINEAR: return ecs_ref_resize_bilinear(op, nt, err);
  case ECS_OP_RESIZE_BILINEAR_BWD: return ecs_ref_resize_bilinear_bwd(op, nt, err);
  case ECS_OP_SOFTMAX:
  case ECS_OP_LOG_SOFTMAX: return ecs_ref_softmax(op, nt, err);
  case ECS_OP_SOFTMAX_BWD:
  case ECS_OP_LOG_SOFTMAX_BWD: return ecs_ref_softmax_bwd(op, nt, err);
  case ECS_OP_ML_SOFT_MARGIN: return ecs_ref_ml_soft_margin(op, nt, err);
  case ECS_OP_ML_SOFT_MARGIN_BWD: return ecs_ref_ml_soft_margin_bwd(op, nt, err);
  case ECS_OP_MASKED_CE: return ecs_ref_masked_ce(op, nt, err);
  case ECS_OP_MASKED_CE_BWD: return ecs_ref_masked_ce_bwd(op, nt, err);
  case ECS_OP_MAXMIN_NORM: return ecs_ref_maxmin_norm(op, nt, err);
  case ECS_OP_GAUSS_BLUR: return ecs_ref_gauss_blur(op, nt, err);
  default:
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED, "%s: no reference kernel", ecs_op_name(op->type));
  }
}
