/* ecs/op.h - ops: the unit of work a backend implements.
 *
 * Forward and backward passes are both ops. An op names its inputs (src), its outputs (dst) and
 * its parameters; a backend says whether it supports an op (ecs_device_supports_op), lays out
 * its outputs (ecs_backend_prepare) and runs it (ecs_backend_compute). The reference CPU kernels
 * define the meaning of each op; every other implementation is tested against them.
 *
 * Conventions: activations are (N, C, H, W); "per channel" vectors are (C); scalars are
 * tensors of one element with nd = 1. Losses are means, as in PyTorch's default reduction. */
#ifndef ECS_OP_H
#define ECS_OP_H

#include "ecs/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ecs_op_type {
  ECS_OP_NONE = 0,
  /* element-wise and data movement */
  ECS_OP_COPY,  /* dst0 = src0; also converts between layouts (the edge reorder) */
  ECS_OP_FILL,  /* dst0 = p.scalar.a */
  ECS_OP_SCALE, /* dst0 = a*src0 + b */
  ECS_OP_ADD,   /* dst0 = a*src0 + b*src1, same shapes */
  ECS_OP_MUL,   /* dst0 = src0 * src1, same shapes */
  /* convolution: src0 x, src1 w (O, I/g, KH, KW), src2 bias (O) or NULL. The forward may
   * apply an activation to its result, p.conv.act (ecs_act; ECS_ACT_NONE in every other conv
   * op): y = relu(conv(x) + bias) or relu6(...) as one op, for inference. A fused op has no
   * backward: it is never recorded for autograd (ecs_conv2d_act records conv and relu separately
   * instead). */
  ECS_OP_CONV2D,            /* dst0 y */
  ECS_OP_CONV2D_BWD_DATA,   /* src0 dy, src1 w; dst0 dx (shape given by the caller) */
  ECS_OP_CONV2D_BWD_WEIGHT, /* src0 x, src1 dy; dst0 dw, dst1 db or NULL */
  /* batch norm over (N, H, W) per channel: src0 x, src1 gamma, src2 beta, src3 running mean,
   * src4 running var. p.bn.training: normalise with the batch's statistics, written to dst1
   * mean and dst2 inverse std (1/sqrt(var+eps), biased var), and update src3/src4 in place with
   * p.bn.momentum (PyTorch's rule, unbiased var). Otherwise use the running statistics. */
  ECS_OP_BATCHNORM, /* dst0 y, [dst1 mean, dst2 invstd when training] */
  /* src0 x, src1 dy, src2 gamma, src3 mean, src4 invstd (batch ones when p.bn.training, else
   * the running mean and 1/sqrt(running var + eps)); dst0 dx, dst1 dgamma or NULL, dst2 dbeta
   * or NULL */
  ECS_OP_BATCHNORM_BWD,
  /* activations: y = min(max(x, 0), clip) with clip = 0 meaning no upper bound (ReLU6: 6) */
  ECS_OP_RELU,     /* src0 x; dst0 y */
  ECS_OP_RELU_BWD, /* src0 x, src1 dy; dst0 dx */
  /* pooling over H, W */
  ECS_OP_POOL2D,     /* src0 x; dst0 y, dst1 workspace for max pooling (backend layout) or NULL */
  ECS_OP_POOL2D_BWD, /* src0 x, src1 dy, src2 workspace or NULL; dst0 dx */
  ECS_OP_GAP,        /* global average pool: src0 (N,C,H,W); dst0 (N,C) */
  ECS_OP_GAP_BWD,    /* src0 dy (N,C); dst0 dx (N,C,H,W) */
  /* channels */
  ECS_OP_CONCAT,  /* along C: src0..src[n-1] (p.concat.n); dst0 */
  ECS_OP_SLICE_C, /* dst0 = src0[:, p.slice.offset : offset + dst0.C] (concat's backward) */
  /* dropout: element-wise keep mask from the counter-based hash ecs_dropout_keep(seed, i), so
   * that every backend draws the same mask for the same seed. Kept values are scaled 1/(1-p). */
  ECS_OP_DROPOUT,     /* src0 x; dst0 y, dst1 mask (U8, plain, same logical shape) */
  ECS_OP_DROPOUT_BWD, /* src0 dy, src1 mask; dst0 dx */
  /* bilinear resize, PyTorch's align_corners=False, to dst0's H, W */
  ECS_OP_RESIZE_BILINEAR,     /* src0 x; dst0 y */
  ECS_OP_RESIZE_BILINEAR_BWD, /* src0 dy; dst0 dx (shape of x) */
  /* softmax over C; src1 is an optional (N, C) class mask: channels where it is 0 get
   * probability 0 (their logits are treated as -inf) */
  ECS_OP_SOFTMAX,         /* src0 x, src1 mask or NULL; dst0 y */
  ECS_OP_SOFTMAX_BWD,     /* src0 y, src1 dy; dst0 dx */
  ECS_OP_LOG_SOFTMAX,     /* src0 x, src1 mask or NULL; dst0 y (-inf where masked) */
  ECS_OP_LOG_SOFTMAX_BWD, /* src0 y, src1 dy; dst0 dx (0 where y = -inf) */
  /* losses, reduced to a one-element tensor */
  /* multilabel soft margin: src0 logits (N, K), src1 targets (N, K) in {0,1};
   * loss = mean over N and K of -[t log s(x) + (1-t) log(1-s(x))] */
  ECS_OP_ML_SOFT_MARGIN,
  ECS_OP_ML_SOFT_MARGIN_BWD, /* src0 logits, src1 targets, src2 dloss (1); dst0 dlogits */
  /* masked cross-entropy: src0 logits (N,C,H,W), src1 labels (N,H,W) I32, src2 class mask
   * (N, C) or NULL; softmax over the unmasked channels; pixels whose label is p.ce.ignore_index
   * are skipped; loss = mean over the others, 0 when there are none. dst0 loss, dst1 count (1,
   * F32) or NULL */
  ECS_OP_MASKED_CE,
  ECS_OP_MASKED_CE_BWD, /* src0 logits, src1 labels, src2 class mask or NULL, src3 dloss;
                           dst0 dlogits */
  /* CAM normalisation (method.md step 3), no gradient: per (n, c):
   * a = max(0, relu(x) - min relu(x) - eps) / (max relu(x) - min relu(x) + eps) */
  ECS_OP_MAXMIN_NORM,
  /* separable Gaussian blur over H, W with p.blur.sigma and odd p.blur.ksize, zero-padded
   * borders renormalised (each output is a weighted mean of the pixels inside the image) */
  ECS_OP_GAUSS_BLUR,
  ECS_OP_COUNT
} ecs_op_type;

typedef enum ecs_pool_kind { ECS_POOL_MAX = 0, ECS_POOL_AVG } ecs_pool_kind;

/* An activation fused into the op that produces its input (ECS_OP_CONV2D's p.conv.act). */
typedef enum ecs_act {
  ECS_ACT_NONE = 0,
  ECS_ACT_RELU,  /* max(y, 0), ECS_OP_RELU with clip 0 */
  ECS_ACT_RELU6, /* min(max(y, 0), 6), ECS_OP_RELU with clip 6 */
  ECS_ACT_COUNT
} ecs_act;

#define ECS_OP_MAX_SRC 6
#define ECS_OP_MAX_DST 3

typedef struct ecs_op {
  ecs_op_type type;
  ecs_tensor *src[ECS_OP_MAX_SRC];
  ecs_tensor *dst[ECS_OP_MAX_DST];
  union {
    struct {
      float a, b;
    } scalar;
    struct {
      int stride[2], pad[2], dil[2], groups;
      ecs_act act;
    } conv; /* [0] = H, [1] = W; pad symmetric */
    struct {
      float eps, momentum;
      int training;
    } bn;
    struct {
      float clip;
    } act;
    struct {
      ecs_pool_kind kind;
      int k[2], stride[2], pad[2];
      int ceil_mode, count_include_pad;
    } pool;
    struct {
      int n;
    } concat;
    struct {
      int offset;
    } slice;
    struct {
      float p;
      uint64_t seed;
    } dropout;
    struct {
      int ignore_index;
    } ce;
    struct {
      float eps;
    } norm;
    struct {
      float sigma;
      int ksize;
    } blur;
  } p;
} ecs_op;

const char *ecs_op_name(ecs_op_type t);

/* The dropout keep decision for element i: identical on every backend (splitmix64 of
 * seed + i, compared against p in 24-bit fixed point). */
static inline int ecs_dropout_keep(uint64_t seed, uint64_t i, float p) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

/* Output sizes of convolution and pooling, PyTorch's formulas. */
int64_t ecs_conv_out_size(int64_t in, int k, int stride, int pad, int dil);
int64_t ecs_pool_out_size(int64_t in, int k, int stride, int pad, int ceil_mode);

#ifdef __cplusplus
}
#endif
#endif
