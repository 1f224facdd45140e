/* dnnl-wrap.h - the one seam between the engine and oneDNN's C API.
 *
 * oneDNN 2.x's C API (op descriptors, dnnl_memory_desc_t by value) was removed in 3.x. Every
 * dnnl_* call therefore lives in dnnl-wrap.c, and the CPU backend speaks only this small API:
 * opaque memory descriptions, primitives built per op family, and one execute call that takes
 * raw pointers per argument role. Porting to 3.x means rewriting dnnl-wrap.c alone.
 *
 * Thread safety: an engine (with its stream) and the primitives made on it are used by one
 * thread at a time, like the backend that owns them. Descriptions are plain values. */
#ifndef ECS_DNNL_WRAP_H
#define ECS_DNNL_WRAP_H

#include "ecs/base.h"

#include <stdint.h>

typedef struct dw_engine dw_engine;
typedef struct dw_md dw_md; /* a memory description: f32 (or a workspace type), dims, format */
typedef struct dw_prim dw_prim;

/* Execute-argument roles; DW_MSRC + i is the i-th source of concat and sum. */
typedef enum dw_arg {
  DW_SRC = 0,
  DW_SRC1,
  DW_WEIGHTS,
  DW_BIAS,
  DW_DST,
  DW_DIFF_SRC,
  DW_DIFF_DST,
  DW_DIFF_WEIGHTS,
  DW_DIFF_BIAS,
  DW_MEAN,
  DW_VARIANCE,
  DW_SCALE,
  DW_SHIFT,
  DW_DIFF_SCALE,
  DW_DIFF_SHIFT,
  DW_WORKSPACE,
  DW_MSRC,
  DW_ARG_COUNT = DW_MSRC + 16,
} dw_arg;

#define DW_MAX_MSRC 16

typedef enum dw_alg {
  DW_ELT_RELU,
  DW_ELT_CLIP,   /* clip_v2: alpha < x < beta passes the gradient */
  DW_ELT_LINEAR, /* alpha * x + beta */
  DW_POOL_MAX,
  DW_POOL_AVG_INCLUDE,
  DW_POOL_AVG_EXCLUDE,
  DW_BIN_ADD,
  DW_BIN_MUL,
} dw_alg;

/* Spatial parameters of convolution and pooling, oneDNN's conventions: dilation 0 = dense,
 * right padding derived from the output size (it may be negative). */
typedef struct dw_window {
  int64_t k[2], stride[2], dil[2], pad_l[2], pad_r[2];
} dw_window;

/* engine + stream */
dw_engine *dw_engine_create(ecs_err *err);
void dw_engine_free(dw_engine *e); /* accepts NULL */

/* descriptions */
dw_md *dw_md_plain(int nd, const int64_t *dims); /* f32, dense row-major; NULL: no memory */
dw_md *dw_md_any(int nd, const int64_t *dims);   /* f32, format chosen by the primitive */
/* f32 with dims, laid out in the same blocked format as proto (same rank), or NULL. */
dw_md *dw_md_like(const dw_md *proto, int nd, const int64_t *dims);
dw_md *dw_md_dup(const dw_md *md);
void dw_md_free(dw_md *md); /* accepts NULL */
int dw_md_equal(const dw_md *a, const dw_md *b);
uint64_t dw_md_hash(const dw_md *md);
size_t dw_md_size(const dw_md *md); /* bytes, padding included */
int dw_md_ndims(const dw_md *md);
int64_t dw_md_dim(const dw_md *md, int i);
int dw_md_is_f32(const dw_md *md);
/* For a 4-D f32 description laid out densely as [N][C/B][H][W][B], B: nchw 1, nChw4c 4, nChw8c
 * 8, nChw16c 16, and nhwc C (one block of all channels, unpadded); otherwise 0. */
int64_t dw_md_cblock(const dw_md *md);
/* Describes md in a short human string ("nChw8c 1x64x56x56") for error messages. */
const char *dw_md_str(const dw_md *md, char *buf, size_t n);

/* primitives; each returns NULL and fills err when oneDNN cannot build it */
/* relu: DW_POST_RELU max(y, 0) or DW_POST_RELU6 min(max(y, 0), 6) applied to the result as an
 * eltwise post-op (one pass over dst); 0 none */
enum { DW_POST_RELU = 1, DW_POST_RELU6 = 2 };
dw_prim *dw_conv_fwd(dw_engine *e, int training, const dw_md *src, const dw_md *w,
                     const dw_md *bias, const dw_md *dst, const dw_window *win, int relu,
                     ecs_err *err);
dw_prim *dw_conv_bwd_data(dw_engine *e, const dw_md *diff_src, const dw_md *w,
                          const dw_md *diff_dst, const dw_window *win, ecs_err *err);
dw_prim *dw_conv_bwd_weights(dw_engine *e, const dw_md *src, const dw_md *diff_w,
                             const dw_md *diff_bias, const dw_md *diff_dst, const dw_window *win,
                             ecs_err *err);
/* flags: which of scale/shift are used, and global (running) statistics */
enum { DW_BN_SCALE = 1, DW_BN_SHIFT = 2, DW_BN_GLOBAL = 4 };
dw_prim *dw_bnorm_fwd(dw_engine *e, int training, const dw_md *data, float eps, unsigned flags,
                      ecs_err *err);
dw_prim *dw_bnorm_bwd(dw_engine *e, const dw_md *diff, const dw_md *data, float eps, unsigned flags,
                      ecs_err *err);
dw_prim *dw_eltwise_fwd(dw_engine *e, dw_alg alg, const dw_md *data, float alpha, float beta,
                        ecs_err *err);
dw_prim *dw_eltwise_bwd(dw_engine *e, dw_alg alg, const dw_md *diff, const dw_md *data, float alpha,
                        float beta, ecs_err *err);
dw_prim *dw_pool_fwd(dw_engine *e, int training, dw_alg alg, const dw_md *src, const dw_md *dst,
                     const dw_window *win, ecs_err *err);
/* src is the forward source description, so that the workspace matches the forward's */
dw_prim *dw_pool_bwd(dw_engine *e, dw_alg alg, const dw_md *src, const dw_md *diff_src,
                     const dw_md *diff_dst, const dw_window *win, ecs_err *err);
dw_prim *dw_resample_fwd(dw_engine *e, const dw_md *src, const dw_md *dst, ecs_err *err);
dw_prim *dw_resample_bwd(dw_engine *e, const dw_md *diff_src, const dw_md *diff_dst, ecs_err *err);
dw_prim *dw_softmax_fwd(dw_engine *e, int log, const dw_md *data, int axis, ecs_err *err);
dw_prim *dw_softmax_bwd(dw_engine *e, int log, const dw_md *diff, const dw_md *dst, int axis,
                        ecs_err *err);
dw_prim *dw_binary(dw_engine *e, dw_alg alg, const dw_md *src0, const dw_md *src1, const dw_md *dst,
                   ecs_err *err);
dw_prim *dw_sum(dw_engine *e, int n, const float *scales, const dw_md *const *srcs,
                const dw_md *dst, ecs_err *err);
dw_prim *dw_concat(dw_engine *e, int n, int axis, const dw_md *const *srcs, const dw_md *dst,
                   ecs_err *err);
dw_prim *dw_reorder(dw_engine *e, const dw_md *src, const dw_md *dst, ecs_err *err);
void dw_prim_free(dw_prim *p); /* accepts NULL */

/* The description the primitive expects for an argument, or NULL when it takes none. */
const dw_md *dw_prim_md(const dw_prim *p, dw_arg arg);
size_t dw_prim_scratchpad_size(const dw_prim *p);
/* oneDNN's name for the implementation it chose ("jit:avx2", "x64:gemm:jit", ...). */
const char *dw_prim_impl(const dw_prim *p);

/* Runs p with ptrs[role] (NULL for roles it does not take) and the caller's scratchpad of at
 * least dw_prim_scratchpad_size bytes; waits for completion. */
ecs_status dw_exec(dw_engine *e, dw_prim *p, void *const ptrs[DW_ARG_COUNT], void *scratchpad,
                   ecs_err *err);

#endif
