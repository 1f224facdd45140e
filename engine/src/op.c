/* op.c - op names. */
#include "ecs/op.h"

static const char *const g_names[ECS_OP_COUNT] = {
    [ECS_OP_NONE] = "none",
    [ECS_OP_COPY] = "copy",
    [ECS_OP_FILL] = "fill",
    [ECS_OP_SCALE] = "scale",
    [ECS_OP_ADD] = "add",
    [ECS_OP_MUL] = "mul",
    [ECS_OP_CONV2D] = "conv2d",
    [ECS_OP_CONV2D_BWD_DATA] = "conv2d_bwd_data",
    [ECS_OP_CONV2D_BWD_WEIGHT] = "conv2d_bwd_weight",
    [ECS_OP_BATCHNORM] = "batchnorm",
    [ECS_OP_BATCHNORM_BWD] = "batchnorm_bwd",
    [ECS_OP_RELU] = "relu",
    [ECS_OP_RELU_BWD] = "relu_bwd",
    [ECS_OP_POOL2D] = "pool2d",
    [ECS_OP_POOL2D_BWD] = "pool2d_bwd",
    [ECS_OP_GAP] = "gap",
    [ECS_OP_GAP_BWD] = "gap_bwd",
    [ECS_OP_CONCAT] = "concat",
    [ECS_OP_SLICE_C] = "slice_c",
    [ECS_OP_DROPOUT] = "dropout",
    [ECS_OP_DROPOUT_BWD] = "dropout_bwd",
    [ECS_OP_RESIZE_BILINEAR] = "resize_bilinear",
    [ECS_OP_RESIZE_BILINEAR_BWD] = "resize_bilinear_bwd",
    [ECS_OP_SOFTMAX] = "softmax",
    [ECS_OP_SOFTMAX_BWD] = "softmax_bwd",
    [ECS_OP_LOG_SOFTMAX] = "log_softmax",
    [ECS_OP_LOG_SOFTMAX_BWD] = "log_softmax_bwd",
    [ECS_OP_ML_SOFT_MARGIN] = "ml_soft_margin",
    [ECS_OP_ML_SOFT_MARGIN_BWD] = "ml_soft_margin_bwd",
    [ECS_OP_MASKED_CE] = "masked_ce",
    [ECS_OP_MASKED_CE_BWD] = "masked_ce_bwd",
    [ECS_OP_MAXMIN_NORM] = "maxmin_norm",
    [ECS_OP_GAUSS_BLUR] = "gauss_blur",
};

const char *ecs_op_name(ecs_op_type t) {
  return (t >= 0 && t < ECS_OP_COUNT && g_names[t]) ? g_names[t] : "unknown";
}
