/* ref-impl.h - the reference kernel families, shared by ref.c (dispatch) and ref-*.c.
 *
 * ecs_ref_compute validates an op with ecs_op_validate before calling one of these, so kernels
 * may rely on the generic contract (tensors present, dtypes and shapes consistent) and check
 * only what depends on the data (label values, say). All tensors are plain host tensors. */
#ifndef ECS_CPU_REF_IMPL_H
#define ECS_CPU_REF_IMPL_H

#include "ecs/op.h"

/* Sizes of an (N, C, H, W) tensor, with H = W = 1 for tensors of fewer dimensions, so that the
 * per-channel kernels also accept (N, C). */
typedef struct ref_nchw {
  int64_t n, c, h, w;
} ref_nchw;

static inline ref_nchw ref_dims(const ecs_tensor *t) {
  ref_nchw d = {t->ne[0], t->nd > 1 ? t->ne[1] : 1, 1, 1};
  for (int i = 2; i < t->nd; i++) {
    if (i == 2)
      d.h = t->ne[2];
    else
      d.w *= t->ne[i];
  }
  return d;
}

static inline float *ref_f(const ecs_tensor *t) {
  return t ? (float *)t->data : NULL;
}

/* ref-conv.c */
ecs_status ecs_ref_conv2d(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_conv2d_bwd_data(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_conv2d_bwd_weight(const ecs_op *op, int nt, ecs_err *err);

/* ref-norm.c */
ecs_status ecs_ref_batchnorm(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_batchnorm_bwd(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_maxmin_norm(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_gauss_blur(const ecs_op *op, int nt, ecs_err *err);

/* ref-pool.c */
ecs_status ecs_ref_pool2d(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_pool2d_bwd(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_gap(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_gap_bwd(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_resize_bilinear(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_resize_bilinear_bwd(const ecs_op *op, int nt, ecs_err *err);

/* ref-misc.c */
ecs_status ecs_ref_concat(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_slice_c(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_dropout(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_dropout_bwd(const ecs_op *op, int nt, ecs_err *err);

/* ref-softmax.c */
ecs_status ecs_ref_softmax(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_softmax_bwd(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_ml_soft_margin(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_ml_soft_margin_bwd(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_masked_ce(const ecs_op *op, int nt, ecs_err *err);
ecs_status ecs_ref_masked_ce_bwd(const ecs_op *op, int nt, ecs_err *err);

#endif
