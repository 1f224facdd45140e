/* cuda-conv.c - 2-D convolution on cuDNN 9: forward, backward data, backward filter and bias.
 *
 * The algorithm for each (direction, shapes, parameters) is chosen once per backend by timing
 * the candidates on the real tensors (cudnnFind*AlgorithmEx) inside the backend's bounded
 * workspace, and cached in the backend, so a steady loop pays nothing; if the search itself
 * fails, cuDNN's heuristic ranking (cudnnGet*_v7) is the fallback. The cache is a plain array:
 * a network has a few dozen distinct convolutions, and the backend is used by one thread.
 *
 * fp32 math is plain FMA by default; ecs_backend_params.tf32 = 1 lets cuDNN use TF32 tensor
 * cores, the same switch as PyTorch's allow_tf32 (CUDNN_DEFAULT_MATH versus CUDNN_FMA_MATH).
 * The legacy descriptor API takes int sizes: tensors beyond 2^31 elements are refused, not
 * truncated. */
#include "cuda-common.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_descs {
  cudnnTensorDescriptor_t x, y, b;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
} conv_descs;

static void descs_free(conv_descs *d) {
  if (d->x) cudnnDestroyTensorDescriptor(d->x);
  if (d->y) cudnnDestroyTensorDescriptor(d->y);
  if (d->b) cudnnDestroyTensorDescriptor(d->b);
  if (d->w) cudnnDestroyFilterDescriptor(d->w);
  if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

static ecs_status fits_int(const ecs_tensor *t, const char *what, const ecs_op *op, ecs_err *err) {
  if (ecs_nelements(t) > INT_MAX)
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED,
                       "%s: %s has %lld elements, more than cuDNN's "
                       "int sizes allow",
                       ecs_op_name(op->type), what, (long long)ecs_nelements(t));
  return ECS_OK;
}

/* x is the activation side (x or dx), y the output side (y or dy), w the filter (w or dw). */
static ecs_status descs_make(conv_descs *d, const ecs_op *op, const ecs_tensor *x,
                             const ecs_tensor *w, const ecs_tensor *y, int with_bias,
                             cudnnMathType_t math, ecs_err *err) {
  ecs_status st = ECS_OK;
  CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
  CUDNN_TRY(cudnnCreateTensorDescriptor(&d->y));
  CUDNN_TRY(cudnnCreateFilterDescriptor(&d->w));
  CUDNN_TRY(cudnnCreateConvolutionDescriptor(&d->conv));
  CUDNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)x->ne[0],
                                       (int)x->ne[1], (int)x->ne[2], (int)x->ne[3]));
  CUDNN_TRY(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)y->ne[0],
                                       (int)y->ne[1], (int)y->ne[2], (int)y->ne[3]));
  CUDNN_TRY(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)w->ne[0],
                                       (int)w->ne[1], (int)w->ne[2], (int)w->ne[3]));
  CUDNN_TRY(cudnnSetConvolution2dDescriptor(
      d->conv, op->p.conv.pad[0], op->p.conv.pad[1], op->p.conv.stride[0], op->p.conv.stride[1],
      op->p.conv.dil[0], op->p.conv.dil[1], CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_TRY(cudnnSetConvolutionGroupCount(d->conv, op->p.conv.groups));
  CUDNN_TRY(cudnnSetConvolutionMathType(d->conv, math));
  if (with_bias) {
    CUDNN_TRY(cudnnCreateTensorDescriptor(&d->b));
    CUDNN_TRY(cudnnSetTensor4dDescriptor(d->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                         (int)y->ne[1], 1, 1));
  }
done:
  return st;
}

static ecs_cuda_conv_key make_key(const ecs_op *op, const ecs_tensor *x, const ecs_tensor *w) {
  ecs_cuda_conv_key k;
  memset(&k, 0, sizeof k); /* compared with memcmp: padding must be zero too */
  k.kind = op->type;
  k.n = (int)x->ne[0], k.c = (int)x->ne[1], k.h = (int)x->ne[2], k.w = (int)x->ne[3];
  k.o = (int)w->ne[0], k.kh = (int)w->ne[2], k.kw = (int)w->ne[3];
  for (int i = 0; i < 2; i++) {
    k.stride[i] = op->p.conv.stride[i];
    k.pad[i] = op->p.conv.pad[i];
    k.dil[i] = op->p.conv.dil[i];
  }
  k.groups = op->p.conv.groups;
  return k;
}

static ecs_cuda_conv_algo *cache_find(ecs_cuda_backend *c, const ecs_cuda_conv_key *k) {
  for (size_t i = 0; i < c->n_algos; i++)
    if (memcmp(&c->algos[i].key, k, sizeof *k) == 0) return &c->algos[i];
  return NULL;
}

static ecs_cuda_conv_algo *cache_add(ecs_cuda_backend *c, const ecs_cuda_conv_algo *a,
                                     ecs_err *err) {
  if (c->n_algos == c->cap_algos) {
    size_t cap = c->cap_algos ? 2 * c->cap_algos : 32;
    ecs_cuda_conv_algo *p = realloc(c->algos, cap * sizeof *p);
    if (!p) {
      ecs_err_set(err, ECS_ERR_NOMEM, "cannot grow the convolution algorithm cache");
      return NULL;
    }
    c->algos = p;
    c->cap_algos = cap;
  }
  c->algos[c->n_algos] = *a;
  return &c->algos[c->n_algos++];
}

/* The three directions share one selection rule over their perf structs. */
#define PICK(perf, n, limit, out)                                                                  \
  do {                                                                                             \
    for (int i_ = 0; i_ < (n); i_++)                                                               \
      if ((perf)[i_].status == CUDNN_STATUS_SUCCESS && (perf)[i_].memory <= (limit)) {             \
        (out)->algo = (int)(perf)[i_].algo;                                                        \
        (out)->math = (perf)[i_].mathType;                                                         \
        (out)->workspace = (perf)[i_].memory;                                                      \
        found = 1;                                                                                 \
        break;                                                                                     \
      }                                                                                            \
  } while (0)

static ecs_status choose(ecs_cuda_backend *c, const ecs_op *op, conv_descs *d, const void *x,
                         const void *w, const void *y, void *out, ecs_cuda_conv_algo *a,
                         ecs_err *err) {
  ecs_status st = ecs_cuda_ensure_workspace(c, c->workspace_limit, err);
  int found = 0, n = 0;
  size_t lim = c->workspace_limit;
  cudnnHandle_t h = c->cudnn;
  int search = st == ECS_OK;
  if (st != ECS_OK) lim = c->workspace_size; /* no room to search: rank within what exists */
  ecs_err_clear(err);
  if (op->type == ECS_OP_CONV2D) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int max = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    if (search &&
        cudnnFindConvolutionForwardAlgorithmEx(h, d->x, x, d->w, w, d->conv, d->y, out, max, &n,
                                               perf, c->workspace, lim) == CUDNN_STATUS_SUCCESS)
      PICK(perf, n, lim, a);
    if (!found) {
      CUDNN_CHECK(
          cudnnGetConvolutionForwardAlgorithm_v7(h, d->x, d->w, d->conv, d->y, max, &n, perf));
      PICK(perf, n, lim, a);
    }
  } else if (op->type == ECS_OP_CONV2D_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int max = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    if (search && cudnnFindConvolutionBackwardDataAlgorithmEx(h, d->w, w, d->y, y, d->conv, d->x,
                                                              out, max, &n, perf, c->workspace,
                                                              lim) == CUDNN_STATUS_SUCCESS)
      PICK(perf, n, lim, a);
    if (!found) {
      CUDNN_CHECK(
          cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d->w, d->y, d->conv, d->x, max, &n, perf));
      PICK(perf, n, lim, a);
    }
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int max = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    if (search && cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d->x, x, d->y, y, d->conv, d->w,
                                                                out, max, &n, perf, c->workspace,
                                                                lim) == CUDNN_STATUS_SUCCESS)
      PICK(perf, n, lim, a);
    if (!found) {
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d->x, d->y, d->conv, d->w, max,
                                                                &n, perf));
      PICK(perf, n, lim, a);
    }
  }
  if (!found)
    return ecs_err_set(err, ECS_ERR_UNSUPPORTED,
                       "%s: cuDNN has no algorithm for these shapes within a %zu-byte workspace",
                       ecs_op_name(op->type), lim);
  if (!c->tf32) a->math = CUDNN_FMA_MATH;
  c->stats.primitives++;
  return ECS_OK;
}

ecs_status ecs_cuda_conv(ecs_cuda_backend *c, const ecs_op *op, ecs_err *err) {
  const ecs_tensor *x, *w, *y;
  void *xp, *wp, *yp, *out;
  int bias = 0;
  switch (op->type) {
  case ECS_OP_CONV2D:
    x = op->src[0], w = op->src[1], y = op->dst[0], out = y->data, bias = op->src[2] != NULL;
    break;
  case ECS_OP_CONV2D_BWD_DATA: x = op->dst[0], w = op->src[1], y = op->src[0], out = x->data; break;
  default: /* ECS_OP_CONV2D_BWD_WEIGHT */
    x = op->src[0], w = op->dst[0], y = op->src[1], out = w->data, bias = op->dst[1] != NULL;
    break;
  }
  xp = x->data, wp = w->data, yp = y->data;
  ecs_status st;
  if ((st = fits_int(x, "the input", op, err)) != ECS_OK) return st;
  if ((st = fits_int(y, "the output", op, err)) != ECS_OK) return st;
  if ((st = fits_int(w, "the filter", op, err)) != ECS_OK) return st;

  cudnnMathType_t math = c->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  conv_descs d = {0};
  if ((st = descs_make(&d, op, x, w, y, bias, math, err)) != ECS_OK) goto done;

  ecs_cuda_conv_key key = make_key(op, x, w);
  ecs_cuda_conv_algo *a = cache_find(c, &key);
  if (!a) {
    ecs_cuda_conv_algo fresh = {.key = key};
    if ((st = choose(c, op, &d, xp, wp, yp, out, &fresh, err)) != ECS_OK) goto done;
    if (!(a = cache_add(c, &fresh, err))) {
      st = ECS_ERR_NOMEM;
      goto done;
    }
  }
  if ((st = ecs_cuda_ensure_workspace(c, a->workspace, err)) != ECS_OK) goto done;
  CUDNN_TRY(cudnnSetConvolutionMathType(d.conv, a->math));
  const float one = 1.0f, zero = 0.0f;
  switch (op->type) {
  case ECS_OP_CONV2D:
    CUDNN_TRY(cudnnConvolutionForward(c->cudnn, &one, d.x, xp, d.w, wp, d.conv,
                                      (cudnnConvolutionFwdAlgo_t)a->algo, c->workspace,
                                      a->workspace, &zero, d.y, yp));
    if (bias) CUDNN_TRY(cudnnAddTensor(c->cudnn, &one, d.b, op->src[2]->data, &one, d.y, yp));
    /* a fused ReLU or ReLU6 (p.conv.act): in place on the same stream, right after the
     * convolution */
    if (op->p.conv.act == ECS_ACT_RELU || op->p.conv.act == ECS_ACT_RELU6)
      CU_TRY(ecs_cuk_relu(c->stream, yp, yp, ecs_nelements(y),
                          op->p.conv.act == ECS_ACT_RELU6 ? 6.0f : 0.0f));
    break;
  case ECS_OP_CONV2D_BWD_DATA:
    CUDNN_TRY(cudnnConvolutionBackwardData(c->cudnn, &one, d.w, wp, d.y, yp, d.conv,
                                           (cudnnConvolutionBwdDataAlgo_t)a->algo, c->workspace,
                                           a->workspace, &zero, d.x, xp));
    break;
  default:
    CUDNN_TRY(cudnnConvolutionBackwardFilter(c->cudnn, &one, d.x, xp, d.y, yp, d.conv,
                                             (cudnnConvolutionBwdFilterAlgo_t)a->algo, c->workspace,
                                             a->workspace, &zero, d.w, wp));
    if (bias)
      CUDNN_TRY(
          cudnnConvolutionBackwardBias(c->cudnn, &one, d.y, yp, &zero, d.b, op->dst[1]->data));
    break;
  }
done:
  descs_free(&d);
  return st;
}
