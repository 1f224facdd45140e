/* ref-norm.c - batch norm (forward and backward), the CAM max-min normalisation and the
 * renormalised Gaussian blur: the per-channel and per-plane statistics kernels.
 *
 * Batch statistics use two passes in double (mean, then centred squares): one-pass formulas
 * lose digits when |mean| >> std, which real activations do, and PyTorch's CPU kernel is also
 * two-pass. */
#include "ref-impl.h"

#include <math.h>
#include <stdlib.h>

ecs_status ecs_ref_batchnorm(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data, *gam = ref_f(op->src[1]), *bet = ref_f(op->src[2]);
  float *rm = ref_f(op->src[3]), *rv = ref_f(op->src[4]);
  float *yd = op->dst[0]->data, *sm = ref_f(op->dst[1]), *si = ref_f(op->dst[2]);
  ref_nchw d = ref_dims(x);
  int64_t S = d.h * d.w, M = d.n * S;
  int training = op->p.bn.training;
  double eps = op->p.bn.eps, mom = op->p.bn.momentum;
  if (training && M < 2)
    return ecs_err_set(err, ECS_ERR_INVALID,
                       "batchnorm: training needs more than one value per channel (got %lld)",
                       (long long)M);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c = 0; c < d.c; c++) {
    double mean, invstd;
    if (training) {
      double s = 0, q = 0;
      for (int64_t n = 0; n < d.n; n++) {
        const float *p = xd + (n * d.c + c) * S;
        for (int64_t i = 0; i < S; i++)
          s += p[i];
      }
      mean = s / (double)M;
      for (int64_t n = 0; n < d.n; n++) {
        const float *p = xd + (n * d.c + c) * S;
        for (int64_t i = 0; i < S; i++)
          q += (p[i] - mean) * (p[i] - mean);
      }
      double var = q / (double)M;
      invstd = 1.0 / sqrt(var + eps);
      if (rm) rm[c] = (float)((1.0 - mom) * rm[c] + mom * mean);
      if (rv) rv[c] = (float)((1.0 - mom) * rv[c] + mom * q / (double)(M - 1));
    } else {
      mean = rm[c];
      invstd = 1.0 / sqrt((double)rv[c] + eps);
    }
    if (sm) sm[c] = (float)mean;
    if (si) si[c] = (float)invstd;
    double a = gam[c] * invstd, b = bet[c] - mean * a;
    for (int64_t n = 0; n < d.n; n++) {
      const float *p = xd + (n * d.c + c) * S;
      float *q = yd + (n * d.c + c) * S;
      for (int64_t i = 0; i < S; i++)
        q[i] = (float)(a * p[i] + b);
    }
  }
  return ECS_OK;
}

ecs_status ecs_ref_batchnorm_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data, *dyd = op->src[1]->data, *gam = op->src[2]->data;
  const float *mean = op->src[3]->data, *invstd = op->src[4]->data;
  float *dxd = op->dst[0]->data, *dg = ref_f(op->dst[1]), *dbt = ref_f(op->dst[2]);
  ref_nchw d = ref_dims(x);
  int64_t S = d.h * d.w, M = d.n * S;
  int training = op->p.bn.training;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c = 0; c < d.c; c++) {
    double mu = mean[c], is = invstd[c], sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < d.n; n++) {
      const float *xp = xd + (n * d.c + c) * S, *gp = dyd + (n * d.c + c) * S;
      for (int64_t i = 0; i < S; i++) {
        sdy += gp[i];
        sdyx += gp[i] * ((xp[i] - mu) * is);
      }
    }
    if (dg) dg[c] = (float)sdyx;
    if (dbt) dbt[c] = (float)sdy;
    double k = gam[c] * is;
    /* training: the batch statistics depend on x, which adds the two mean terms */
    double m1 = training ? sdy / (double)M : 0.0, m2 = training ? sdyx / (double)M : 0.0;
    for (int64_t n = 0; n < d.n; n++) {
      const float *xp = xd + (n * d.c + c) * S, *gp = dyd + (n * d.c + c) * S;
      float *o = dxd + (n * d.c + c) * S;
      for (int64_t i = 0; i < S; i++)
        o[i] = (float)(k * (gp[i] - m1 - (xp[i] - mu) * is * m2));
    }
  }
  return ECS_OK;
}

ecs_status ecs_ref_maxmin_norm(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data;
  float *yd = op->dst[0]->data;
  ref_nchw d = ref_dims(x);
  int64_t S = d.h * d.w;
  float eps = op->p.norm.eps;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < d.n * d.c; nc++) {
    const float *p = xd + nc * S;
    float *q = yd + nc * S;
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < S; i++) {
      float r = p[i] > 0 ? p[i] : 0;
      if (r < mn) mn = r;
      if (r > mx) mx = r;
    }
    float den = mx - mn + eps;
    for (int64_t i = 0; i < S; i++) {
      float r = p[i] > 0 ? p[i] : 0;
      float v = (r - mn - eps) / den;
      q[i] = v > 0 ? v : 0;
    }
  }
  return ECS_OK;
}

/* One renormalised 1-D pass over n values at stride st: out[i] = sum_j w_j in[i+j-r] over the
 * taps inside [0, n), divided by the sum of those taps' weights. */
static void blur_line(const float *in, float *out, int64_t n, int64_t st, const double *w, int r) {
  for (int64_t i = 0; i < n; i++) {
    int64_t j0 = i - r < 0 ? -(i - r) : 0, j1 = i + r >= n ? r + (n - 1 - i) : 2 * r;
    double s = 0, ws = 0;
    for (int64_t j = j0; j <= j1; j++) {
      s += w[j] * in[(i + j - r) * st];
      ws += w[j];
    }
    out[i * st] = (float)(s / ws);
  }
}

ecs_status ecs_ref_gauss_blur(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data;
  float *yd = op->dst[0]->data;
  ref_nchw d = ref_dims(x);
  int64_t S = d.h * d.w;
  int k = op->p.blur.ksize, r = k / 2;
  double sig = op->p.blur.sigma;
  double *w = malloc((size_t)k * sizeof *w);
  float *tmp = malloc((size_t)(d.n * d.c * S) * sizeof *tmp);
  if (!w || !tmp) {
    free(w);
    free(tmp);
    return ecs_err_set(err, ECS_ERR_NOMEM, "gauss_blur: out of memory");
  }
  for (int j = 0; j < k; j++)
    w[j] = exp(-(double)(j - r) * (j - r) / (2 * sig * sig));
    /* rows first, into tmp; then columns of tmp into y. The two renormalisations multiply to the
     * 2-D one, because both the kernel and the inside-the-image region are separable. */
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < d.n * d.c; nc++) {
    for (int64_t h = 0; h < d.h; h++)
      blur_line(xd + nc * S + h * d.w, tmp + nc * S + h * d.w, d.w, 1, w, r);
    for (int64_t c = 0; c < d.w; c++)
      blur_line(tmp + nc * S + c, yd + nc * S + c, d.h, d.w, w, r);
  }
  free(w);
  free(tmp);
  return ECS_OK;
}
