/* ref-softmax.c - softmax and log-softmax over channels with an optional class mask, and the
 * two losses built on them (multilabel soft margin, masked cross-entropy), forward and backward.
 *
 * Tensors are (N, C, inner...) with the channel stride = inner; each position (n, i) is one
 * independent distribution over C. A masked channel is a logit of -inf: probability 0, log
 * probability -inf, no gradient. A position whose channels are all masked has no distribution:
 * its probabilities are all 0 (log -inf), which keeps NaN out of the outputs. Sums run in
 * double and use the max-shifted exponent, as PyTorch does. */
#include "ref-impl.h"

#include <math.h>

typedef struct sm_geo {
  int64_t n, c, inner;
} sm_geo;

static sm_geo sm_dims(const ecs_tensor *t) {
  sm_geo g = {t->ne[0], t->ne[1], 1};
  for (int i = 2; i < t->nd; i++)
    g.inner *= t->ne[i];
  return g;
}

static int unmasked(const float *mask, int64_t n, int64_t C, int64_t c) {
  return !mask || mask[n * C + c] != 0.0f;
}

/* max and log(sum(exp(x - max))) over the unmasked channels of one position; returns 0 when
 * every channel is masked. */
static int position_lse(const float *x, const float *mask, int64_t n, int64_t C, int64_t inner,
                        double *mx, double *lse) {
  double m = -INFINITY;
  int any = 0;
  for (int64_t c = 0; c < C; c++)
    if (unmasked(mask, n, C, c)) {
      any = 1;
      if (x[c * inner] > m) m = x[c * inner];
    }
  if (!any) return 0;
  double s = 0;
  for (int64_t c = 0; c < C; c++)
    if (unmasked(mask, n, C, c)) s += exp(x[c * inner] - m);
  *mx = m;
  *lse = log(s);
  return 1;
}

ecs_status ecs_ref_softmax(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data, *mask = ref_f(op->src[1]);
  float *yd = op->dst[0]->data;
  sm_geo g = sm_dims(x);
  int logp = op->type == ECS_OP_LOG_SOFTMAX;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t ni = 0; ni < g.n * g.inner; ni++) {
    int64_t n = ni / g.inner, i = ni % g.inner;
    const float *p = xd + n * g.c * g.inner + i;
    float *q = yd + n * g.c * g.inner + i;
    double m = 0, lse = 0;
    int ok = position_lse(p, mask, n, g.c, g.inner, &m, &lse);
    for (int64_t c = 0; c < g.c; c++) {
      int on = ok && unmasked(mask, n, g.c, c);
      double lp = on ? p[c * g.inner] - m - lse : -INFINITY;
      q[c * g.inner] = (float)(logp ? lp : (on ? exp(lp) : 0.0));
    }
  }
  return ECS_OK;
}

ecs_status ecs_ref_softmax_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)err;
  const ecs_tensor *y = op->src[0];
  const float *yd = y->data, *dyd = op->src[1]->data;
  float *dxd = op->dst[0]->data;
  sm_geo g = sm_dims(y);
  int logp = op->type == ECS_OP_LOG_SOFTMAX_BWD;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t ni = 0; ni < g.n * g.inner; ni++) {
    int64_t base = (ni / g.inner) * g.c * g.inner + ni % g.inner;
    const float *p = yd + base, *dp = dyd + base;
    float *q = dxd + base;
    double s = 0;
    if (logp) {
      /* y = x - lse(x): dx = dy - softmax * sum(dy), over the channels that exist */
      for (int64_t c = 0; c < g.c; c++)
        if (isfinite(p[c * g.inner])) s += dp[c * g.inner];
      for (int64_t c = 0; c < g.c; c++) {
        float v = p[c * g.inner];
        q[c * g.inner] = isfinite(v) ? (float)(dp[c * g.inner] - exp((double)v) * s) : 0.0f;
      }
    } else {
      /* dx = y * (dy - sum(y * dy)); masked channels have y = 0 and get 0 */
      for (int64_t c = 0; c < g.c; c++)
        s += (double)p[c * g.inner] * dp[c * g.inner];
      for (int64_t c = 0; c < g.c; c++)
        q[c * g.inner] = (float)(p[c * g.inner] * (dp[c * g.inner] - s));
    }
  }
  return ECS_OK;
}

static double softplus(double z) {
  return (z > 0 ? z : 0) + log1p(exp(-fabs(z)));
}

ecs_status ecs_ref_ml_soft_margin(const ecs_op *op, int nt, ecs_err *err) {
  (void)nt, (void)err;
  const float *x = op->src[0]->data, *t = op->src[1]->data;
  int64_t n = ecs_nelements(op->src[0]);
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += t[i] * softplus(-x[i]) + (1.0 - t[i]) * softplus(x[i]);
  ((float *)op->dst[0]->data)[0] = (float)(s / (double)n);
  return ECS_OK;
}

ecs_status ecs_ref_ml_soft_margin_bwd(const ecs_op *op, int nt, ecs_err *err) {
  (void)nt, (void)err;
  const float *x = op->src[0]->data, *t = op->src[1]->data, *dl = op->src[2]->data;
  float *dx = op->dst[0]->data;
  int64_t n = ecs_nelements(op->src[0]);
  double k = (double)dl[0] / (double)n;
  for (int64_t i = 0; i < n; i++)
    dx[i] = (float)(k * (1.0 / (1.0 + exp(-(double)x[i])) - t[i]));
  return ECS_OK;
}

/* Checks every label against C, the ignore index and the class mask; counts the pixels that
 * take part. Labels are data, so this is the one check the validator cannot do. */
static ecs_status ce_count(const ecs_op *op, int64_t *count, ecs_err *err) {
  const ecs_tensor *x = op->src[0];
  const int32_t *lab = op->src[1]->data;
  const float *mask = ref_f(op->src[2]);
  sm_geo g = sm_dims(x);
  int ign = op->p.ce.ignore_index;
  int64_t cnt = 0;
  for (int64_t ni = 0; ni < g.n * g.inner; ni++) {
    int32_t l = lab[ni];
    if (l == ign) continue;
    if (l < 0 || l >= g.c)
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "%s: label %d at element %lld is outside [0, %lld) and is not the ignore "
                         "index %d",
                         ecs_op_name(op->type), l, (long long)ni, (long long)g.c, ign);
    if (!unmasked(mask, ni / g.inner, g.c, l))
      return ecs_err_set(err, ECS_ERR_INVALID, "%s: label %d at element %lld is a masked-out class",
                         ecs_op_name(op->type), l, (long long)ni);
    cnt++;
  }
  *count = cnt;
  return ECS_OK;
}

ecs_status ecs_ref_masked_ce(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data, *mask = ref_f(op->src[2]);
  const int32_t *lab = op->src[1]->data;
  sm_geo g = sm_dims(x);
  int ign = op->p.ce.ignore_index;
  int64_t cnt = 0;
  ecs_status st = ce_count(op, &cnt, err);
  if (st != ECS_OK) return st;
  double total = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : total)
  for (int64_t ni = 0; ni < g.n * g.inner; ni++) {
    int32_t l = lab[ni];
    if (l == ign) continue;
    int64_t n = ni / g.inner;
    const float *p = xd + n * g.c * g.inner + ni % g.inner;
    double m = 0, lse = 0;
    position_lse(p, mask, n, g.c, g.inner, &m, &lse);
    total += m + lse - p[l * g.inner];
  }
  ((float *)op->dst[0]->data)[0] = cnt ? (float)(total / (double)cnt) : 0.0f;
  if (op->dst[1]) ((float *)op->dst[1]->data)[0] = (float)cnt;
  return ECS_OK;
}

ecs_status ecs_ref_masked_ce_bwd(const ecs_op *op, int nt, ecs_err *err) {
  const ecs_tensor *x = op->src[0];
  const float *xd = x->data, *mask = ref_f(op->src[2]), *dl = op->src[3]->data;
  const int32_t *lab = op->src[1]->data;
  float *dxd = op->dst[0]->data;
  sm_geo g = sm_dims(x);
  int ign = op->p.ce.ignore_index;
  int64_t cnt = 0;
  ecs_status st = ce_count(op, &cnt, err);
  if (st != ECS_OK) return st;
  double k = cnt ? (double)dl[0] / (double)cnt : 0.0;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t ni = 0; ni < g.n * g.inner; ni++) {
    int32_t l = lab[ni];
    int64_t n = ni / g.inner;
    const float *p = xd + n * g.c * g.inner + ni % g.inner;
    float *q = dxd + n * g.c * g.inner + ni % g.inner;
    double m = 0, lse = 0;
    if (l == ign || !position_lse(p, mask, n, g.c, g.inner, &m, &lse)) {
      for (int64_t c = 0; c < g.c; c++)
        q[c * g.inner] = 0.0f;
      continue;
    }
    for (int64_t c = 0; c < g.c; c++) {
      double pr = unmasked(mask, n, g.c, c) ? exp(p[c * g.inner] - m - lse) : 0.0;
      q[c * g.inner] = (float)(k * (pr - (c == l ? 1.0 : 0.0)));
    }
  }
  return ECS_OK;
}
