/* step.c - one ECS-Net training iteration (method.md steps 1-12).
 *
 * The differentiable path is F on the rescaled image, L_cls on GAP(H) and L_seg on H resized
 * to the grid of H'. Everything between (normalised CAMs, the score map, R, the blur, F' and
 * its L', s', Phi) produces targets only and runs on host copies: F' runs without recording
 * gradients unless cls_on_erased asks for its classification loss too. */
#include "model-impl.h"

#include <stdlib.h>
#include <string.h>

float ecs_model_step_beta(const ecs_model *m, int h, int w) {
  const ecs_hparams *hp = &m->cfg.hp;
  if (hp->beta > 0) return hp->beta;
  return (h < w ? h : w) >= 320 ? 0.5f : 1.0f;
}

int ecs_model_step_overlay(const ecs_model *m, int h, int w) {
  const ecs_hparams *hp = &m->cfg.hp;
  if (hp->no_overlay) return 0;
  if (hp->overlay_k >= 0) return hp->overlay_k;
  return ecs_h_grid(m, h) > 16 && ecs_h_grid(m, w) > 16 ? 3 : 0;
}

int ecs_model_step_grid(const ecs_model *m, int n) {
  return ecs_h_grid(m, n);
}

/* L_cls over channels 1..K of GAP(H): a fixed 0/1 1x1 projection picks the object channels
 * (GAP commutes with it), since the op set has no differentiable channel slice. */
static ecs_tensor *cls_loss(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *h, ecs_tensor *y) {
  int K = m->cfg.n_classes, C = K + 1;
  float *sel = calloc((size_t)K * C, sizeof *sel);
  if (!sel) return NULL;
  for (int k = 0; k < K; k++)
    sel[(size_t)k * C + k + 1] = 1.0f;
  int64_t ne[4] = {K, C, 1, 1};
  ecs_tensor *w = ecs_from_host(ctx, ECS_F32, 4, ne, sel);
  free(sel);
  return ecs_ml_soft_margin(ctx, ecs_gap(ctx, ecs_conv2d(ctx, h, w, NULL, 1, 0, 1, 1)), y);
}

/* Steps 3-5: normalised, label-masked CAMs of one image and their max over object classes. */
static void score_map(const float *h, int K, int gh, int gw, const float *y, float eps, float *a,
                      float *s) {
  size_t g = (size_t)gh * gw;
  for (size_t p = 0; p < g; p++)
    s[p] = 0;
  for (int c = 1; c <= K; c++) {
    float *ac = a + (size_t)c * g;
    memcpy(ac, h + (size_t)c * g, g * sizeof *ac);
    ecs_h_maxmin_norm(ac, (int64_t)g, eps);
    for (size_t p = 0; p < g; p++) {
      ac[p] *= y[c - 1];
      if (ac[p] > s[p]) s[p] = ac[p];
    }
  }
}

typedef struct step_work {
  float *hbuf, *a, *s, *sup, *blur, *ierased, *xb;
  uint8_t *R;
  int32_t *lab;
} step_work;

static void work_free(step_work *w) {
  free(w->hbuf);
  free(w->a);
  free(w->s);
  free(w->sup);
  free(w->blur);
  free(w->ierased);
  free(w->xb);
  free(w->R);
  free(w->lab);
}

/* Steps 3-7 for the batch: R and the erased images I' (w->blur holds the blurred batch). */
static void erase_batch(const ecs_model *m, const ecs_step_input *in, const float *hh, int gh,
                        int gw, step_work *w, ecs_step_stats *st) {
  int K = m->cfg.n_classes, C = K + 1, H = in->h, W = in->w;
  size_t g = (size_t)gh * gw, hw = (size_t)H * W;
  for (int n = 0; n < in->n; n++) {
    score_map(hh + (size_t)n * C * g, K, gh, gw, in->labels + (size_t)n * K, m->cfg.hp.eps, w->a,
              w->s);
    ecs_h_resize(w->s, 1, gh, gw, w->sup, H, W);
    uint8_t *R = w->R + (size_t)n * hw;
    for (size_t p = 0; p < hw; p++) {
      R[p] = w->sup[p] > m->cfg.hp.delta;
      st->erased_px += R[p];
    }
    const float *img = in->images + (size_t)n * 3 * hw;
    float *out = w->ierased + (size_t)n * 3 * hw;
    const float *bl = w->blur + (size_t)n * 3 * hw;
    for (int c = 0; c < 3; c++)
      for (size_t p = 0; p < hw; p++)
        out[c * hw + p] = R[p] ? bl[c * hw + p] : img[c * hw + p];
  }
}

/* Steps 8-9 on the grid of H': L' at the cells of Phi, 255 elsewhere. */
static void reliable_set(const ecs_model *m, const ecs_step_input *in, const float *hp_, int gh,
                         int gw, step_work *w, ecs_step_stats *st) {
  int K = m->cfg.n_classes, C = K + 1, H = in->h, W = in->w;
  const ecs_hparams *hp = &m->cfg.hp;
  size_t g = (size_t)gh * gw, hw = (size_t)H * W;
  const int stride_y = ecs_model_output_stride(m), stride_x = stride_y; /* the backbone's */
  for (int n = 0; n < in->n; n++) {
    const float *y = in->labels + (size_t)n * K;
    score_map(hp_ + (size_t)n * C * g, K, gh, gw, y, hp->eps, w->a, w->s);
    const uint8_t *R = w->R + (size_t)n * hw;
    int32_t *lab = w->lab + (size_t)n * g;
    for (int i = 0; i < gh; i++)
      for (int j = 0; j < gw; j++) {
        size_t p = (size_t)i * gw + j;
        /* a cell is in R when at least half of its pixels were erased */
        int tot = 0, er = 0;
        for (int yy = i * stride_y; yy < (i + 1) * stride_y && yy < H; yy++)
          for (int xx = j * stride_x; xx < (j + 1) * stride_x && xx < W; xx++) {
            tot++;
            er += R[(size_t)yy * W + xx];
          }
        int in_r = tot > 0 && 2 * er >= tot;
        float a0 = 1.0f - w->s[p], best = a0;
        int l = 0;
        for (int c = 1; c <= K; c++)
          if (y[c - 1] > 0 && w->a[(size_t)c * g + p] > best) {
            best = w->a[(size_t)c * g + p];
            l = c;
          }
        int keep;
        if (hp->no_phi_filter)
          keep = 1;
        else if (in_r)
          keep = 0;
        else if (l != 0)
          keep = best > hp->theta;
        else
          keep = hp->bg_in_phi && a0 > hp->theta;
        lab[p] = keep ? l : 255;
        st->cells++;
        if (keep) {
          st->phi++;
          if (l)
            st->phi_fg++;
          else
            st->phi_bg++;
        }
      }
  }
}

static float scalar(ecs_ctx *ctx, ecs_tensor *t) {
  float v = 0;
  if (t) ecs_to_host(ctx, t, &v, sizeof v);
  return v;
}

ecs_status ecs_model_step(const ecs_model *m, ecs_ctx *ctx, const ecs_step_input *in,
                          ecs_step_stats *st, ecs_err *err) {
  int K = m->cfg.n_classes, C = K + 1;
  if (!in || in->n < 1 || in->h < 8 || in->w < 8 || !in->images || !in->labels)
    return ecs_err_set(err, ECS_ERR_INVALID, "training step: empty batch or image under 8 px");
  memset(st, 0, sizeof *st);
  int was_grad = ecs_ctx_grad_enabled(ctx);
  ecs_ctx_reset(ctx);
  ecs_ctx_set_grad(ctx, 1);
  ecs_ctx_set_seed(ctx, in->seed);
  step_work w = {0};
  ecs_status status = ECS_OK;
  size_t hw = (size_t)in->h * in->w;

  /* steps 1-2 */
  float beta = ecs_model_step_beta(m, in->h, in->w);
  int hb = beta < 1 ? ecs_h_scaled(in->h, beta) : in->h,
      wb = beta < 1 ? ecs_h_scaled(in->w, beta) : in->w;
  st->beta = beta;
  const float *xin = in->images;
  if (hb != in->h || wb != in->w) {
    w.xb = malloc(sizeof(float) * (size_t)in->n * 3 * hb * wb);
    if (!w.xb) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    for (int n = 0; n < in->n; n++)
      ecs_h_resize(in->images + (size_t)n * 3 * hw, 3, in->h, in->w, w.xb + (size_t)n * 3 * hb * wb,
                   hb, wb);
    xin = w.xb;
  }
  int64_t xne[4] = {in->n, 3, hb, wb}, yne[2] = {in->n, K};
  ecs_tensor *x = ecs_from_host(ctx, ECS_F32, 4, xne, xin);
  ecs_tensor *y = ecs_from_host(ctx, ECS_F32, 2, yne, in->labels);
  ecs_tensor *h = ecs_model_forward(m, ctx, x, 1, 0, NULL);
  ecs_tensor *lcls = cls_loss(m, ctx, h, y), *loss = lcls, *lcls2 = NULL, *lseg = NULL;

  if (in->ecs_phase && !m->cfg.hp.no_erase && h && lcls) {
    int gh = (int)h->ne[2], gw = (int)h->ne[3];
    int fh = ecs_h_grid(m, in->h), fw = ecs_h_grid(m, in->w); /* the grid of H' */
    size_t gmax = (size_t)(gh > fh ? gh : fh) * (gw > fw ? gw : fw);
    w.hbuf = malloc(sizeof(float) * (size_t)in->n * C * gmax);
    w.a = malloc(sizeof(float) * (size_t)C * gmax);
    w.s = malloc(sizeof(float) * gmax);
    w.sup = malloc(sizeof(float) * hw);
    w.blur = malloc(sizeof(float) * (size_t)in->n * 3 * hw);
    w.ierased = malloc(sizeof(float) * (size_t)in->n * 3 * hw);
    w.R = malloc((size_t)in->n * hw);
    w.lab = malloc(sizeof(int32_t) * (size_t)in->n * fh * fw);
    if (!w.hbuf || !w.a || !w.s || !w.sup || !w.blur || !w.ierased || !w.R || !w.lab) {
      work_free(&w);
      ecs_ctx_set_grad(ctx, was_grad);
      return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory in the ECS step");
    }
    ecs_to_host(ctx, h, w.hbuf, sizeof(float) * (size_t)in->n * C * gh * gw);
    /* step 7's blur of the whole batch runs on the backend (the largest of the host-side
     * pieces: a kernel of 4 sigma + 1 taps over every pixel); the rest stays on the host */
    float sigma;
    int ksize;
    ecs_h_blur_params(&m->cfg.hp, in->h, in->w, &sigma, &ksize);
    int64_t fne[4] = {in->n, 3, in->h, in->w};
    ecs_tensor *xf =
        (hb == in->h && wb == in->w) ? x : ecs_from_host(ctx, ECS_F32, 4, fne, in->images);
    ecs_tensor *bl = xf ? ecs_gauss_blur(ctx, xf, sigma, ksize) : NULL;
    if (!bl || ecs_to_host(ctx, bl, w.blur, sizeof(float) * (size_t)in->n * 3 * hw) != ECS_OK) {
      status = ecs_ctx_status(ctx, err);
      if (status == ECS_OK) status = ecs_err_set(err, ECS_ERR_BACKEND, "blur failed");
    }
  }
  if (status == ECS_OK && in->ecs_phase && !m->cfg.hp.no_erase && h && lcls) {
    int gh = (int)h->ne[2], gw = (int)h->ne[3];
    int fh = ecs_h_grid(m, in->h), fw = ecs_h_grid(m, in->w);
    erase_batch(m, in, w.hbuf, gh, gw, &w, st); /* steps 3-7 */

    /* step 8: F' with the overlay, training mode, targets only */
    int k = ecs_model_step_overlay(m, in->h, in->w);
    st->overlay_k = k;
    int64_t ene[4] = {in->n, 3, in->h, in->w};
    ecs_ctx_set_grad(ctx, m->cfg.hp.cls_on_erased);
    ecs_tensor *xe = ecs_from_host(ctx, ECS_F32, 4, ene, w.ierased);
    ecs_tensor *he = ecs_model_forward(m, ctx, xe, 1, k, m->cfg.hp.overlay_rates);
    ecs_ctx_set_grad(ctx, 1);
    if (he && ((int)he->ne[2] != fh || (int)he->ne[3] != fw))
      status = ecs_err_set(err, ECS_ERR_INVALID, "unexpected grid of H'");
    if (he && status == ECS_OK) {
      ecs_to_host(ctx, he, w.hbuf, sizeof(float) * (size_t)in->n * C * fh * fw);
      reliable_set(m, in, w.hbuf, fh, fw, &w, st); /* step 9 */
      if (in->phi_out) memcpy(in->phi_out, w.lab, sizeof(int32_t) * (size_t)in->n * fh * fw);
      if (in->erase_out) memcpy(in->erase_out, w.R, (size_t)in->n * hw);
      if (m->cfg.hp.cls_on_erased) lcls2 = cls_loss(m, ctx, he, y);

      /* step 11: masked CE over {0} and the present classes, H resized to the grid of L' */
      float *cm = malloc(sizeof(float) * (size_t)in->n * C);
      if (!cm)
        status = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
      else {
        for (int n = 0; n < in->n; n++) {
          cm[(size_t)n * C] = 1.0f;
          for (int c = 1; c <= K; c++)
            cm[(size_t)n * C + c] = in->labels[(size_t)n * K + c - 1] > 0;
        }
        int64_t cne[2] = {in->n, C}, lne[3] = {in->n, fh, fw};
        ecs_tensor *mask = ecs_from_host(ctx, ECS_F32, 2, cne, cm);
        free(cm);
        ecs_tensor *lab = ecs_from_host(ctx, ECS_I32, 3, lne, w.lab);
        ecs_tensor *hr = (gh == fh && gw == fw) ? h : ecs_resize_bilinear(ctx, h, fh, fw);
        lseg = ecs_masked_ce(ctx, hr, lab, mask, 255);
        if (lcls2) loss = ecs_add(ctx, loss, lcls2);
        loss = ecs_axpby(ctx, 1.0f, loss, in->lambda, lseg);
      }
    }
  }
  if (status == ECS_OK) status = ecs_ctx_status(ctx, err);
  if (status == ECS_OK && ecs_backward(ctx, loss, 1.0f) != ECS_OK) {
    status = ecs_ctx_status(ctx, err); /* the backward pass keeps its message in the ctx */
    if (status == ECS_OK) status = ecs_err_set(err, ECS_ERR_BACKEND, "backward pass failed");
  }
  if (status == ECS_OK) {
    st->loss = scalar(ctx, loss);
    st->loss_cls = scalar(ctx, lcls);
    st->loss_cls_erased = scalar(ctx, lcls2);
    st->loss_seg = scalar(ctx, lseg);
  } else if (err && err->status == ECS_OK) {
    ecs_err_set(err, status, "training step failed: %s", ecs_status_str(status));
  }
  work_free(&w);
  ecs_ctx_set_grad(ctx, was_grad);
  return status;
}
