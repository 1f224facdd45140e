/* ref-pool.c - spatial reductions and resampling: max/avg pooling, global average pooling and
 * bilinear resize, each with its backward.
 *
 * Pooling follows PyTorch's CPU kernels to the letter: padded cells never win a max, the first
 * maximum in row-major scan order wins ties (and a NaN wins), and the average's divisor counts
 * the window clipped to the padded input (count_include_pad) or to the input itself. Max pooling
 * keeps no workspace: the backward recomputes the argmax from x, which is cheap and keeps the
 * reference free of layouts. */
#include "ref-impl.h"

#include <math.h>
#include <string.h>

typedef struct pool_win {
  int64_t h0, h1, w0, w1; /* clipped to the input */
  int64_t div;            /* average divisor */
} pool_win;

static pool_win pool_window(const ecs_op *op, int64_t oh, int64_t ow, int64_t H, int64_t W) {
  int kh = op->p.pool.k[0], kw = op->p.pool.k[1];
  int64_t h0 = oh * op->p.pool.stride[0] - op->p.pool.pad[0];
  int64_t w0 = ow * op->p.pool.stride[1] - op->p.pool.pad[1];
  int64_t h1 = h0 + kh, w1 = w0 + kw;
  if (h1 > H + op->p.pool.pad[0]) h1 = H + op->p.pool.pad[0];
  if (w1 > W + op->p.pool.pad[1]) w1 = W + op->p.pool.pad[1];
  int64_t padded = (h1 - h0) * (w1 - w0);
  pool_win r = {h0 < 0 ? 0 : h0, h1 > H ? H : h1, w0 < 0 ? 0 : w0, w1 > W ? W : w1, 0};
  r.div = op->p.pool.count_include_pad ? padded : (r.h1 - r.h0) * (r.w1 - r.w0);
  return r;
}

/* Index in the plane of the window's maximum; -1 for an empty window. */
static int64_t window_argmax(const float *p, int64_t W, pool_win r) {
  int64_t best = -1;
  float bv = -INFINITY;
  for (int64_t h = r.h0; h < r.h1; h++)
    for (int64_t w = r.w0; w < r.w1; w++) {
      float v = p[h * W + w];
      if (best < 0 || v > bv || isnan(v)) {
        best = h * W + w;
        bv = v;
        if (isnan(v)) return best;
      }
    }
  return best;
}

ecs_status ecs_ref_pool2d(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0];
  ecs_tensor *y = op->dst[0], *ws = op->dst[1];
  const float *xd = x->data;
  float *yd = y->data;
  int32_t *idx = ws ? ws->data : NULL; /* the reference's optional workspace: argmax indices */
  int64_t H = x->ne[2], W = x->ne[3], OH = y->ne[2], OW = y->ne[3];
  int is_max = op->p.pool.kind == ECS_POOL_MAX;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < x->ne[0] * x->ne[1]; nc++) {
    const float *p = xd + nc * H * W;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        pool_win r = pool_window(op, oh, ow, H, W);
        int64_t o = (nc * OH + oh) * OW + ow;
        if (is_max) {
          int64_t a = window_argmax(p, W, r);
          yd[o] = a >= 0 ? p[a] : -INFINITY;
          if (idx) idx[o] = (int32_t)a;
        } else {
          double s = 0;
          for (int64_t h = r.h0; h < r.h1; h++)
            for (int64_t w = r.w0; w < r.w1; w++)
              s += p[h * W + w];
          yd[o] = r.div > 0 ? (float)(s / (double)r.div) : 0.0f;
        }
      }
  }
  return ECS_OK;
}

ecs_status ecs_ref_pool2d_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0], *dy = op->src[1];
  ecs_tensor *dx = op->dst[0];
  const float *xd = x->data, *dyd = dy->data;
  float *dxd = dx->data;
  int64_t H = x->ne[2], W = x->ne[3], OH = dy->ne[2], OW = dy->ne[3];
  int is_max = op->p.pool.kind == ECS_POOL_MAX;
  /* each task owns one (n, c) plane of dx: overlapping windows add up without races */
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < x->ne[0] * x->ne[1]; nc++) {
    const float *p = xd + nc * H * W, *g = dyd + nc * OH * OW;
    float *q = dxd + nc * H * W;
    memset(q, 0, (size_t)(H * W) * sizeof *q);
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        pool_win r = pool_window(op, oh, ow, H, W);
        float gv = g[oh * OW + ow];
        if (is_max) {
          int64_t a = window_argmax(p, W, r);
          if (a >= 0) q[a] += gv;
        } else if (r.div > 0) {
          float v = gv / (float)r.div;
          for (int64_t h = r.h0; h < r.h1; h++)
            for (int64_t w = r.w0; w < r.w1; w++)
              q[h * W + w] += v;
        }
      }
  }
  return ECS_OK;
}

ecs_status ecs_ref_gap(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data;
  float *yd = op->dst[0]->data;
  int64_t S = x->ne[2] * x->ne[3];
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < x->ne[0] * x->ne[1]; nc++) {
    double s = 0;
    for (int64_t i = 0; i < S; i++)
      s += xd[nc * S + i];
    yd[nc] = (float)(s / (double)S);
  }
  return ECS_OK;
}

ecs_status ecs_ref_gap_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *dx = op->dst[0];
  const float *g = op->src[0]->data;
  float *q = dx->data;
  int64_t S = dx->ne[2] * dx->ne[3];
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < dx->ne[0] * dx->ne[1]; nc++) {
    float v = g[nc] / (float)S;
    for (int64_t i = 0; i < S; i++)
      q[nc * S + i] = v;
  }
  return ECS_OK;
}

/* PyTorch's source index for align_corners=False (area_pixel_compute_source_index), in float
 * as its CPU kernel computes it: the two taps i0, i1 and the weight l1 of i1. */
typedef struct lerp_tap {
  int64_t i0, i1;
  float l0, l1;
} lerp_tap;

static lerp_tap lerp_at(int64_t o, int64_t in, int64_t out) {
  float scale = (float)in / (float)out;
  float src = scale * ((float)o + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  lerp_tap t;
  t.i0 = (int64_t)src;
  if (t.i0 > in - 1) t.i0 = in - 1;
  t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
  t.l1 = src - (float)t.i0;
  t.l0 = 1.0f - t.l1;
  return t;
}

ecs_status ecs_ref_resize_bilinear(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0];
  ecs_tensor *y = op->dst[0];
  const float *xd = x->data;
  float *yd = y->data;
  int64_t H = x->ne[2], W = x->ne[3], OH = y->ne[2], OW = y->ne[3];
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < x->ne[0] * x->ne[1]; nc++) {
    const float *p = xd + nc * H * W;
    float *q = yd + nc * OH * OW;
    for (int64_t oh = 0; oh < OH; oh++) {
      lerp_tap th = lerp_at(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ow++) {
        lerp_tap tw = lerp_at(ow, W, OW);
        q[oh * OW + ow] = th.l0 * (tw.l0 * p[th.i0 * W + tw.i0] + tw.l1 * p[th.i0 * W + tw.i1]) +
                          th.l1 * (tw.l0 * p[th.i1 * W + tw.i0] + tw.l1 * p[th.i1 * W + tw.i1]);
      }
    }
  }
  return ECS_OK;
}

ecs_status ecs_ref_resize_bilinear_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *dy = op->src[0];
  ecs_tensor *dx = op->dst[0];
  const float *g = dy->data;
  float *dxd = dx->data;
  int64_t H = dx->ne[2], W = dx->ne[3], OH = dy->ne[2], OW = dy->ne[3];
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < dx->ne[0] * dx->ne[1]; nc++) {
    const float *p = g + nc * OH * OW;
    float *q = dxd + nc * H * W;
    memset(q, 0, (size_t)(H * W) * sizeof *q);
    for (int64_t oh = 0; oh < OH; oh++) {
      lerp_tap th = lerp_at(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ow++) {
        lerp_tap tw = lerp_at(ow, W, OW);
        float v = p[oh * OW + ow];
        q[th.i0 * W + tw.i0] += th.l0 * tw.l0 * v;
        q[th.i0 * W + tw.i1] += th.l0 * tw.l1 * v;
        q[th.i1 * W + tw.i0] += th.l1 * tw.l0 * v;
        q[th.i1 * W + tw.i1] += th.l1 * tw.l1 * v;
      }
    }
  }
  return ECS_OK;
}
