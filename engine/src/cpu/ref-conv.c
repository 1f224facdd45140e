/* ref-conv.c - 2-D convolution and its two backward ops, as PyTorch's Conv2d defines them.
 * A forward with a fused ReLU or ReLU6 (p.conv.act) applies it to each output as ECS_OP_RELU
 * (clip 0 or 6) would, so
 * the fused op and conv-then-relu agree bit for bit here.
 *
 * Direct loops, no im2col: the oracle should be easy to read. Each parallel task owns one
 * output plane (forward, backward data) or one output channel's weights (backward weight), so
 * there are no races, and each accumulates in a double plane: the sums over C*KH*KW or N*OH*OW
 * are long, and the reference should not be the less accurate side of a comparison. The
 * innermost loop walks a row of the output, which walks memory contiguously (stride 1) or with
 * a fixed stride. */
#include "ref-impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct conv_geo {
  int64_t n, c, h, w;     /* input */
  int64_t o, oh, ow;      /* output */
  int64_t kh, kw, cg, og; /* kernel; input and output channels per group */
  int sh, sw, ph, pw, dh, dw, g;
} conv_geo;

static conv_geo conv_geometry(const ecs_tensor *x, const ecs_tensor *w, const ecs_tensor *y,
                              const ecs_op *op) {
  conv_geo g = {
      .n = x->ne[0],
      .c = x->ne[1],
      .h = x->ne[2],
      .w = x->ne[3],
      .o = w->ne[0],
      .oh = y->ne[2],
      .ow = y->ne[3],
      .kh = w->ne[2],
      .kw = w->ne[3],
      .cg = w->ne[1],
      .sh = op->p.conv.stride[0],
      .sw = op->p.conv.stride[1],
      .ph = op->p.conv.pad[0],
      .pw = op->p.conv.pad[1],
      .dh = op->p.conv.dil[0],
      .dw = op->p.conv.dil[1],
      .g = op->p.conv.groups,
  };
  g.og = g.o / g.g;
  return g;
}

/* The range of output columns ow with 0 <= ow*s - p + k*d < w, as [lo, hi). */
static void valid_range(int64_t out, int64_t in, int s, int p, int64_t kd, int64_t *lo,
                        int64_t *hi) {
  int64_t off = kd - p; /* input index = ow*s + off */
  int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t b = in - off <= 0 ? 0 : (in - off + s - 1) / s;
  if (b > out) b = out;
  *lo = a;
  *hi = b > a ? b : a;
}

ecs_status ecs_ref_conv2d(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *x = op->src[0], *w = op->src[1], *b = op->src[2];
  ecs_tensor *y = op->dst[0];
  conv_geo g = conv_geometry(x, w, y, op);
  const float *xd = x->data, *wd = w->data, *bd = ref_f(b);
  float *yd = y->data;
  int64_t plane = g.oh * g.ow;
  int relu = op->p.conv.act == ECS_ACT_RELU || op->p.conv.act == ECS_ACT_RELU6;
  float clip = op->p.conv.act == ECS_ACT_RELU6 ? 6.0f : 0.0f;
  ecs_status st = ECS_OK;
#pragma omp parallel num_threads(nt)
  {
    double *acc = malloc((size_t)plane * sizeof *acc);
    if (!acc) {
#pragma omp atomic write
      st = ECS_ERR_NOMEM;
    }
#pragma omp for schedule(static)
    for (int64_t no = 0; no < g.n * g.o; no++) {
      if (!acc) continue;
      int64_t n = no / g.o, oc = no % g.o, grp = oc / g.og;
      double bias = bd ? bd[oc] : 0.0;
      for (int64_t i = 0; i < plane; i++)
        acc[i] = bias;
      for (int64_t icg = 0; icg < g.cg; icg++) {
        const float *xp = xd + ((n * g.c) + grp * g.cg + icg) * g.h * g.w;
        const float *wp = wd + ((oc * g.cg) + icg) * g.kh * g.kw;
        for (int64_t kh = 0; kh < g.kh; kh++) {
          int64_t oh0, oh1;
          valid_range(g.oh, g.h, g.sh, g.ph, kh * g.dh, &oh0, &oh1);
          for (int64_t kw = 0; kw < g.kw; kw++) {
            double wv = wp[kh * g.kw + kw];
            int64_t ow0, ow1;
            valid_range(g.ow, g.w, g.sw, g.pw, kw * g.dw, &ow0, &ow1);
            int64_t c0 = kw * g.dw - g.pw; /* input column of output column 0 */
            for (int64_t oh = oh0; oh < oh1; oh++) {
              const float *xr = xp + (oh * g.sh - g.ph + kh * g.dh) * g.w;
              double *ar = acc + oh * g.ow;
              for (int64_t ow = ow0; ow < ow1; ow++)
                ar[ow] += wv * xr[ow * g.sw + c0];
            }
          }
        }
      }
      float *yp = yd + no * plane;
      if (relu) /* the fused activation, on the rounded value: exactly ECS_OP_RELU's result */
        for (int64_t i = 0; i < plane; i++) {
          float v = (float)acc[i];
          v = v > 0 ? v : 0;
          yp[i] = (clip > 0 && v > clip) ? clip : v;
        }
      else
        for (int64_t i = 0; i < plane; i++)
          yp[i] = (float)acc[i];
    }
    free(acc);
  }
  if (st != ECS_OK) return ecs_err_set(err, st, "conv2d: out of memory");
  return ECS_OK;
}

ecs_status ecs_ref_conv2d_bwd_data(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *dy = op->src[0], *w = op->src[1];
  ecs_tensor *dx = op->dst[0];
  conv_geo g = conv_geometry(dx, w, dy, op);
  const float *dyd = dy->data, *wd = w->data;
  float *dxd = dx->data;
  int64_t plane = g.h * g.w;
  ecs_status st = ECS_OK;
#pragma omp parallel num_threads(nt)
  {
    double *acc = malloc((size_t)plane * sizeof *acc);
    if (!acc) {
#pragma omp atomic write
      st = ECS_ERR_NOMEM;
    }
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < g.n * g.c; nc++) {
      if (!acc) continue;
      int64_t n = nc / g.c, ic = nc % g.c, grp = ic / g.cg, icg = ic % g.cg;
      memset(acc, 0, (size_t)plane * sizeof *acc);
      for (int64_t ocg = 0; ocg < g.og; ocg++) {
        int64_t oc = grp * g.og + ocg;
        const float *dyp = dyd + (n * g.o + oc) * g.oh * g.ow;
        const float *wp = wd + (oc * g.cg + icg) * g.kh * g.kw;
        for (int64_t kh = 0; kh < g.kh; kh++) {
          int64_t oh0, oh1;
          valid_range(g.oh, g.h, g.sh, g.ph, kh * g.dh, &oh0, &oh1);
          for (int64_t kw = 0; kw < g.kw; kw++) {
            double wv = wp[kh * g.kw + kw];
            int64_t ow0, ow1;
            valid_range(g.ow, g.w, g.sw, g.pw, kw * g.dw, &ow0, &ow1);
            int64_t c0 = kw * g.dw - g.pw; /* input column of output column 0 */
            for (int64_t oh = oh0; oh < oh1; oh++) {
              double *ar = acc + (oh * g.sh - g.ph + kh * g.dh) * g.w;
              const float *dr = dyp + oh * g.ow;
              for (int64_t ow = ow0; ow < ow1; ow++)
                ar[ow * g.sw + c0] += wv * dr[ow];
            }
          }
        }
      }
      float *xp = dxd + nc * plane;
      for (int64_t i = 0; i < plane; i++)
        xp[i] = (float)acc[i];
    }
    free(acc);
  }
  if (st != ECS_OK) return ecs_err_set(err, st, "conv2d_bwd_data: out of memory");
  return ECS_OK;
}

ecs_status ecs_ref_conv2d_bwd_weight(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *x = op->src[0], *dy = op->src[1];
  ecs_tensor *dw = op->dst[0], *db = op->dst[1];
  conv_geo g = conv_geometry(x, dw, dy, op);
  const float *xd = x->data, *dyd = dy->data;
  float *dwd = dw->data, *dbd = ref_f(db);
  int64_t wsz = g.cg * g.kh * g.kw;
  ecs_status st = ECS_OK;
#pragma omp parallel num_threads(nt)
  {
    double *acc = malloc((size_t)wsz * sizeof *acc);
    if (!acc) {
#pragma omp atomic write
      st = ECS_ERR_NOMEM;
    }
#pragma omp for schedule(static)
    for (int64_t oc = 0; oc < g.o; oc++) {
      if (!acc) continue;
      int64_t grp = oc / g.og;
      double bsum = 0;
      memset(acc, 0, (size_t)wsz * sizeof *acc);
      for (int64_t n = 0; n < g.n; n++) {
        const float *dyp = dyd + (n * g.o + oc) * g.oh * g.ow;
        for (int64_t i = 0; i < g.oh * g.ow; i++)
          bsum += dyp[i];
        for (int64_t icg = 0; icg < g.cg; icg++) {
          const float *xp = xd + (n * g.c + grp * g.cg + icg) * g.h * g.w;
          for (int64_t kh = 0; kh < g.kh; kh++) {
            int64_t oh0, oh1;
            valid_range(g.oh, g.h, g.sh, g.ph, kh * g.dh, &oh0, &oh1);
            for (int64_t kw = 0; kw < g.kw; kw++) {
              int64_t ow0, ow1;
              valid_range(g.ow, g.w, g.sw, g.pw, kw * g.dw, &ow0, &ow1);
              int64_t c0 = kw * g.dw - g.pw;
              double s = 0;
              for (int64_t oh = oh0; oh < oh1; oh++) {
                const float *xr = xp + (oh * g.sh - g.ph + kh * g.dh) * g.w;
                const float *dr = dyp + oh * g.ow;
                for (int64_t ow = ow0; ow < ow1; ow++)
                  s += (double)dr[ow] * xr[ow * g.sw + c0];
              }
              acc[(icg * g.kh + kh) * g.kw + kw] += s;
            }
          }
        }
      }
      for (int64_t i = 0; i < wsz; i++)
        dwd[oc * wsz + i] = (float)acc[i];
      if (dbd) dbd[oc] = (float)bsum;
    }
    free(acc);
  }
  if (st != ECS_OK) return ecs_err_set(err, st, "conv2d_bwd_weight: out of memory");
  return ECS_OK;
}
