/* infer.c - inference outputs: scores, CAMs, the erasing branch and the masks.
 *
 * One image at a time, F in evaluation mode. CAMs follow method.md's multi-scale rule (each
 * pass's ReLU'd map upsampled to the image, label-masked, summed, then max-min normalised);
 * the erase region is computed exactly as in the training step (grid-normalised score map of
 * the scale-1 pass, upsampled, > delta) so that what the service shows is what training
 * erases. The ECS mask applies step 9 at image resolution. Every pass runs F at the backbone's
 * input size for the (scaled) image (ecs_model_input_size: efficientnet_lite0 resizes to 32m+1
 * a side, where its symmetric padding is the SAME padding it was trained with); the maps are
 * resized to the image, so every output stays at the image's own size. Masks are 16-bit label
 * ids. A group's heat map is its members' maps weighted by their probabilities on the plain
 * scale-1 pass (w_j = p_j / sum p), the same weights on every pass, so its CAM is their CAMs so
 * weighted (the maps are linear in the classifier's rows): with_groups appends those maps
 * after the classes' channels, and every label id then indexes its own map. */
#include "model-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ecs_cam_result_free(ecs_cam_result *r) {
  if (!r) return;
  free(r->scores);
  free(r->cams);
  free(r->erased_cams);
  free(r->erase_region);
  free(r->erased_image);
  free(r->cam_mask);
  free(r->head_mask);
  free(r->ecs_mask);
  free(r->mask);
  free(r);
}

/* Appends the groups' maps to heat maps hm (C, g): channel C + i is group i + 1's members'
 * maps weighted by gwt (aligned with cfg.group_member). Returns the grown array (hm is
 * consumed), or NULL out of memory. */
static float *with_groups(const ecs_model *m, float *hm, size_t g, const float *gwt, ecs_err *err) {
  const ecs_model_config *c = &m->cfg;
  if (c->n_groups == 0 || !gwt) return hm;
  size_t C = (size_t)ecs_model_channels(m);
  float *t = realloc(hm, sizeof(float) * (C + (size_t)c->n_groups) * g);
  if (!t) {
    free(hm);
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  for (int i = 0; i < c->n_groups; i++) {
    float *dst = t + (C + (size_t)i) * g;
    memset(dst, 0, sizeof(float) * g);
    for (int j = c->group_start[i]; j < c->group_start[i + 1]; j++) {
      const float *src = t + (size_t)c->group_member[j] * g;
      for (size_t p = 0; p < g; p++)
        dst[p] += gwt[j] * src[p];
    }
  }
  return t;
}

/* Runs F on a normalised (3, h, w) image; returns the heat maps in a malloc'd (C, gh, gw). */
static float *run_f(const ecs_model *m, ecs_ctx *ctx, const float *x, int h, int w, int *gh,
                    int *gw, ecs_err *err) {
  ecs_ctx_reset(ctx);
  int64_t ne[4] = {1, 3, h, w};
  ecs_tensor *t = ecs_from_host(ctx, ECS_F32, 4, ne, x);
  ecs_tensor *out = t ? ecs_model_forward(m, ctx, t, 0, 0, NULL) : NULL;
  if (ecs_ctx_status(ctx, err) != ECS_OK || !out) {
    if (err && err->status == ECS_OK) ecs_err_set(err, ECS_ERR_BACKEND, "forward pass failed");
    return NULL;
  }
  *gh = (int)out->ne[2];
  *gw = (int)out->ne[3];
  size_t n = (size_t)ecs_nelements(out);
  float *h_ = malloc(n * sizeof *h_);
  if (!h_) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  if (ecs_to_host(ctx, out, h_, n * sizeof *h_) != ECS_OK) {
    free(h_);
    ecs_ctx_status(ctx, err);
    return NULL;
  }
  return h_;
}

static void flip_w(float *x, int c, int h, int w) {
  for (int p = 0; p < c * h; p++) {
    float *r = x + (size_t)p * w;
    for (int i = 0, j = w - 1; i < j; i++, j--) {
      float t = r[i];
      r[i] = r[j];
      r[j] = t;
    }
  }
}

/* The most pixels one pass of cams_of runs at, at the backbone's input sizes. */
static size_t most_pixels(const ecs_model *m, int h, int w, const float *scales, int ns) {
  size_t most = (size_t)h * w;
  for (int si = 0; si < ns; si++) {
    size_t n = (size_t)ecs_model_input_size(m, ecs_h_scaled(h, scales[si])) *
               (size_t)ecs_model_input_size(m, ecs_h_scaled(w, scales[si]));
    if (n > most) most = n;
  }
  return most;
}

/* Multi-scale, flipped CAMs of the labels at image resolution. h1 (C x gh1 x gw1), when given,
 * is the plain scale-1 pass already computed: it is reused rather than run again. */
static ecs_status cams_of(const ecs_model *m, ecs_ctx *ctx, const float *x, int h, int w,
                          const ecs_infer_opts *o, const int *labels, int nl, float *cams,
                          const float *h1, int gh1, int gw1, const float *gwt, ecs_err *err) {
  int C = ecs_model_channels(m) + m->cfg.n_groups; /* the flip covers the group maps too */
  size_t hw = (size_t)h * w;
  memset(cams, 0, sizeof(float) * nl * hw);
  float one = 1.0f;
  const float *scales = o->n_scales > 0 ? o->scales : &one;
  int ns = o->n_scales > 0 ? o->n_scales : 1;
  int h0 = ecs_model_input_size(m, h), w0 = ecs_model_input_size(m, w);
  float *xs = malloc(sizeof(float) * 3 * most_pixels(m, h, w, scales, ns) + 64),
        *up = malloc(sizeof(float) * hw);
  if (!xs || !up) {
    free(xs);
    free(up);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  ecs_status st = ECS_OK;
  for (int si = 0; si < ns && st == ECS_OK; si++) {
    int sh = ecs_h_scaled(h, scales[si]), sw = ecs_h_scaled(w, scales[si]);
    if ((size_t)sh * sw > 4 * hw + 16) {
      st = ecs_err_set(err, ECS_ERR_LIMIT, "scale %g is above 2", scales[si]);
      break;
    }
    sh = ecs_model_input_size(m, sh);
    sw = ecs_model_input_size(m, sw);
    for (int f = 0; f <= (o->flip ? 1 : 0) && st == ECS_OK; f++) {
      int gh = gh1, gw = gw1, cached = h1 && sh == h0 && sw == w0 && !f;
      float *hm = (float *)h1;
      if (!cached) {
        if (sh == h && sw == w)
          memcpy(xs, x, sizeof(float) * 3 * hw);
        else
          ecs_h_resize(x, 3, h, w, xs, sh, sw);
        if (f) flip_w(xs, 3, sh, sw);
        hm = run_f(m, ctx, xs, sh, sw, &gh, &gw, err);
        if (hm) hm = with_groups(m, hm, (size_t)gh * gw, gwt, err);
      }
      if (!hm) {
        st = err ? err->status : ECS_ERR_BACKEND;
        break;
      }
      if (f) flip_w(hm, C, gh, gw);
      for (int i = 0; i < nl; i++) {
        float *src = hm + (size_t)labels[i] * gh * gw;
        ecs_h_resize(src, 1, gh, gw, up, h, w);
        float *dst = cams + (size_t)i * hw;
        for (size_t p = 0; p < hw; p++)
          dst[p] += up[p] > 0 ? up[p] : 0;
      }
      if (!cached) free(hm);
    }
  }
  for (int i = 0; i < nl && st == ECS_OK; i++)
    ecs_h_maxmin_norm(cams + (size_t)i * hw, (int64_t)hw, m->cfg.hp.eps);
  free(xs);
  free(up);
  return st;
}

/* The group covering class k (its id K+g), or k itself. */
static int label_of_class(const ecs_model *m, int k) {
  const ecs_model_config *c = &m->cfg;
  for (int g = 0; g < c->n_groups; g++)
    for (int j = c->group_start[g]; j < c->group_start[g + 1]; j++)
      if (c->group_member[j] == k) return c->n_classes + g + 1;
  return k;
}

/* Labels predicted from the scores: the label_topk best classes, each as its group where one
 * covers it, kept when that label's score is above the threshold; the best always. */
static void predict_labels(const ecs_model *m, const ecs_infer_opts *o, const ecs_cam_result *r,
                           uint8_t *on) {
  int K = m->cfg.n_classes, topk = o->label_topk > 0 ? o->label_topk : 3;
  float thr = o->label_threshold > 0 ? o->label_threshold : m->cfg.label_threshold;
  int taken[ECS_MAX_CLASSES + 1] = {0};
  for (int t = 0; t < topk && t < K; t++) {
    int best = 0;
    for (int k = 1; k <= K; k++)
      if (!taken[k] && (!best || r->scores[k - 1] > r->scores[best - 1])) best = k;
    taken[best] = 1;
    int l = label_of_class(m, best);
    if (t == 0 || r->scores[l - 1] > thr) on[l] = 1;
  }
}

static ecs_status pick_labels(const ecs_model *m, const ecs_infer_opts *o, ecs_cam_result *r,
                              ecs_err *err) {
  int L = m->cfg.n_classes + m->cfg.n_groups;
  uint8_t on[ECS_MAX_LABELS + 1] = {0};
  if (o->labels && o->n_labels > 0) {
    for (int i = 0; i < o->n_labels; i++) {
      if (o->labels[i] < 1 || o->labels[i] > L)
        return ecs_err_set(err, ECS_ERR_INVALID, "label %d is outside the labels 1..%d",
                           o->labels[i], L);
      on[o->labels[i]] = 1;
    }
  } else {
    predict_labels(m, o, r, on);
    r->predicted = 1;
  }
  r->n_labels = 0;
  for (int k = 1; k <= L; k++)
    if (on[k]) r->labels[r->n_labels++] = k;
  return ECS_OK;
}

static int refining(const ecs_model *m, const ecs_infer_opts *o) {
  return o->refine > 0 || (o->refine == 0 && m->cfg.refine);
}

static ecs_status erasing(const ecs_model *m, ecs_ctx *ctx, const uint8_t *rgb, const float *h1,
                          int gh, int gw, const ecs_infer_opts *o, const float *gwt,
                          ecs_cam_result *r, ecs_err *err) {
  int h = r->h, w = r->w;
  size_t hw = (size_t)h * w, g = (size_t)gh * gw;
  const ecs_hparams *hp = &m->cfg.hp;
  float *s = calloc(g, sizeof *s), *a = malloc(sizeof(float) * g),
        *sup = malloc(sizeof(float) * hw);
  float *img = malloc(sizeof(float) * 3 * hw), *bl = malloc(sizeof(float) * 3 * hw);
  float *xe = malloc(sizeof(float) * 3 * hw);
  r->erase_region = malloc(hw);
  r->erased_image = malloc(3 * hw);
  r->erased_cams = malloc(sizeof(float) * r->n_labels * hw);
  r->ecs_mask = malloc(sizeof(uint16_t) * hw);
  ecs_status st = ECS_OK;
  if (!s || !a || !sup || !img || !bl || !xe || !r->erase_region || !r->erased_image ||
      !r->erased_cams || !r->ecs_mask) {
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    goto done;
  }
  /* steps 3-6 as in training */
  for (int i = 0; i < r->n_labels; i++) {
    memcpy(a, h1 + (size_t)r->labels[i] * g, g * sizeof *a);
    ecs_h_maxmin_norm(a, (int64_t)g, hp->eps);
    for (size_t p = 0; p < g; p++)
      if (a[p] > s[p]) s[p] = a[p];
  }
  ecs_h_resize(s, 1, gh, gw, sup, h, w);
  for (size_t p = 0; p < hw; p++)
    r->erase_region[p] = sup[p] > hp->delta;
  /* step 7 on the 0..255 image; the blur commutes with the per-channel normalisation */
  for (int c = 0; c < 3; c++)
    for (size_t p = 0; p < hw; p++)
      img[c * hw + p] = rgb[p * 3 + c];
  float sigma;
  int ksize;
  ecs_h_blur_params(hp, h, w, &sigma, &ksize);
  ecs_h_blur(img, 3, h, w, sigma, ksize, bl);
  for (int c = 0; c < 3; c++)
    for (size_t p = 0; p < hw; p++) {
      float v = r->erase_region[p] ? bl[c * hw + p] : img[c * hw + p];
      r->erased_image[p * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
    }
  /* F' sees the erased image as returned (rounded to bytes), so its CAMs are those of the
   * picture the caller gets */
  ecs_model_normalise(m, r->erased_image, h, w, xe);
  st = cams_of(m, ctx, xe, h, w, o, r->labels, r->n_labels, r->erased_cams, NULL, 0, 0, gwt, err);
  if (st == ECS_OK && refining(m, o))
    st = ecs_h_refine(r->erased_image, h, w, r->erased_cams, r->n_labels, hp->eps, err);
  if (st != ECS_OK) goto done;
  /* step 9 at image resolution */
  r->phi = 0;
  for (size_t p = 0; p < hw; p++) {
    float mx = 0;
    int l = 0;
    for (int i = 0; i < r->n_labels; i++) {
      float v = r->erased_cams[(size_t)i * hw + p];
      if (v > mx) {
        mx = v;
        l = r->labels[i];
      }
    }
    float a0 = 1.0f - mx;
    int keep;
    if (a0 >= mx) l = 0;
    if (hp->no_phi_filter)
      keep = 1;
    else if (r->erase_region[p])
      keep = 0;
    else if (l)
      keep = mx > hp->theta;
    else
      keep = hp->bg_in_phi && a0 > hp->theta;
    r->phi += keep;
    r->ecs_mask[p] = keep ? (uint16_t)l : ECS_MASK_IGNORE;
    r->mask[p] = keep ? (uint16_t)l : r->cam_mask[p];
  }
done:
  free(s);
  free(a);
  free(sup);
  free(img);
  free(bl);
  free(xe);
  return st;
}

/* The plain scale-1 pass, at the backbone's input size for h x w (ecs_model_input_size). */
static float *run_base(const ecs_model *m, ecs_ctx *ctx, const float *x, int h, int w, int *gh,
                       int *gw, ecs_err *err) {
  int h0 = ecs_model_input_size(m, h), w0 = ecs_model_input_size(m, w);
  if (h0 == h && w0 == w) return run_f(m, ctx, x, h, w, gh, gw, err);
  float *x0 = malloc(sizeof(float) * 3 * (size_t)h0 * w0);
  if (!x0) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  ecs_h_resize(x, 3, h, w, x0, h0, w0);
  float *h1 = run_f(m, ctx, x0, h0, w0, gh, gw, err);
  free(x0);
  return h1;
}

/* The CAM mask (argmax over [alpha_bg, A_1 .. A_K], alpha_bg the request's or the model's;
 * absent classes are zero and never win), the combined mask's start, and the head mask (the
 * network's own argmax over {0} and the labels, logits upsampled). */
static ecs_status masks_of(const float *h1, int gh, int gw, float *up, float alpha_bg,
                           ecs_cam_result *r, ecs_err *err) {
  int h = r->h, w = r->w;
  size_t hw = (size_t)h * w;
  for (size_t p = 0; p < hw; p++) {
    float best = alpha_bg;
    int l = 0;
    for (int i = 0; i < r->n_labels; i++)
      if (r->cams[(size_t)i * hw + p] > best) {
        best = r->cams[(size_t)i * hw + p];
        l = r->labels[i];
      }
    r->cam_mask[p] = (uint16_t)l;
    r->mask[p] = (uint16_t)l;
  }
  float *best = malloc(sizeof(float) * hw);
  if (!best) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  ecs_h_resize(h1, 1, gh, gw, best, h, w);
  memset(r->head_mask, 0, sizeof(uint16_t) * hw);
  for (int i = 0; i < r->n_labels; i++) {
    ecs_h_resize(h1 + (size_t)r->labels[i] * gh * gw, 1, gh, gw, up, h, w);
    for (size_t p = 0; p < hw; p++)
      if (up[p] > best[p]) {
        best[p] = up[p];
        r->head_mask[p] = (uint16_t)r->labels[i];
      }
  }
  free(best);
  return ECS_OK;
}

/* The scores (sigmoid or softmax of the GAP'd logits; groups: their members' summed scores,
 * at most 1) and the groups' member weights p_j / sum p (equal where every p_j is 0). */
static ecs_status scores_of(const ecs_model *m, const float *h1, size_t g, ecs_cam_result *r,
                            float *gwt, ecs_err *err) {
  const ecs_model_config *c = &m->cfg;
  int K = c->n_classes;
  double *lg = malloc(sizeof(double) * K), mx = -INFINITY, z = 0;
  if (!lg) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  for (int k = 1; k <= K; k++) {
    double sum = 0;
    for (size_t p = 0; p < g; p++)
      sum += h1[(size_t)k * g + p];
    lg[k - 1] = sum / (double)g;
    if (lg[k - 1] > mx) mx = lg[k - 1];
  }
  for (int k = 0; k < K; k++)
    z += exp(lg[k] - mx);
  for (int k = 0; k < K; k++)
    r->scores[k] = c->scores == ECS_SCORES_SOFTMAX ? (float)(exp(lg[k] - mx) / z)
                                                   : (float)(1.0 / (1.0 + exp(-lg[k])));
  free(lg);
  for (int i = 0; i < c->n_groups; i++) {
    int a = c->group_start[i], b = c->group_start[i + 1];
    double sum = 0;
    for (int j = a; j < b; j++)
      sum += r->scores[c->group_member[j] - 1];
    for (int j = a; j < b; j++)
      gwt[j] = sum > 0 ? (float)(r->scores[c->group_member[j] - 1] / sum) : 1.0f / (float)(b - a);
    r->scores[K + i] = (float)(sum < 1 ? sum : 1);
  }
  return ECS_OK;
}

static ecs_status check_opts(const uint8_t *rgb, int h, int w, const ecs_infer_opts *o,
                             ecs_err *err) {
  if (!rgb || h < ECS_MODEL_MIN_SIDE || w < ECS_MODEL_MIN_SIDE)
    return ecs_err_set(err, ECS_ERR_INVALID, "image of %dx%d: at least %dx%d pixels needed", w, h,
                       ECS_MODEL_MIN_SIDE, ECS_MODEL_MIN_SIDE);
  if (o->has_alpha_bg && !(o->alpha_bg >= 0.0f && o->alpha_bg <= 1.0f))
    return ecs_err_set(err, ECS_ERR_INVALID, "alpha_bg %g outside 0..1", o->alpha_bg);
  if (o->n_scales < 0 || o->n_scales > ECS_MAX_SCALES)
    return ecs_err_set(err, ECS_ERR_INVALID, "at most %d scales", ECS_MAX_SCALES);
  for (int i = 0; i < o->n_scales; i++)
    if (!(o->scales[i] >= 0.25f && o->scales[i] <= 2.0f))
      return ecs_err_set(err, ECS_ERR_INVALID, "scale %g outside 0.25..2", o->scales[i]);
  return ECS_OK;
}

ecs_status ecs_model_infer(const ecs_model *m, ecs_ctx *ctx, const uint8_t *rgb, int h, int w,
                           const ecs_infer_opts *opts, ecs_cam_result **out, ecs_err *err) {
  *out = NULL;
  ecs_infer_opts dflt = {0};
  const ecs_infer_opts *o = opts ? opts : &dflt;
  ecs_status st = check_opts(rgb, h, w, o, err);
  if (st != ECS_OK) return st;
  int K = m->cfg.n_classes;
  size_t hw = (size_t)h * w;
  int was_grad = ecs_ctx_grad_enabled(ctx);
  ecs_ctx_set_grad(ctx, 0);
  ecs_cam_result *r = calloc(1, sizeof *r);
  float *x = malloc(sizeof(float) * 3 * hw), *h1 = NULL, *up = malloc(sizeof(float) * hw);
  float *gwt = NULL; /* the groups' member weights */
  int gh = 0, gw = 0;
  if (!r || !x || !up) {
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    goto done;
  }
  r->h = h;
  r->w = w;
  r->n_classes = K;
  ecs_model_normalise(m, rgb, h, w, x);
  h1 = run_base(m, ctx, x, h, w, &gh, &gw, err); /* the scores come from this pass */
  r->n_groups = m->cfg.n_groups;
  r->scores = malloc(sizeof(float) * (K + r->n_groups));
  gwt = m->cfg.n_groups ? malloc(sizeof(float) * m->cfg.group_start[m->cfg.n_groups]) : NULL;
  if (!h1 || !r->scores || (m->cfg.n_groups && !gwt)) {
    st = h1 ? ecs_err_set(err, ECS_ERR_NOMEM, "out of memory")
            : (err ? err->status : ECS_ERR_BACKEND);
    goto done;
  }
  if ((st = scores_of(m, h1, (size_t)gh * gw, r, gwt, err)) != ECS_OK) goto done;
  if (gwt) h1 = with_groups(m, h1, (size_t)gh * gw, gwt, err);
  if (!h1) {
    st = ECS_ERR_NOMEM;
    goto done;
  }
  if ((st = pick_labels(m, o, r, err)) != ECS_OK) goto done;
  r->cams = malloc(sizeof(float) * r->n_labels * hw);
  r->cam_mask = malloc(sizeof(uint16_t) * hw);
  r->head_mask = malloc(sizeof(uint16_t) * hw);
  r->mask = malloc(sizeof(uint16_t) * hw);
  if (!r->cams || !r->cam_mask || !r->head_mask || !r->mask) {
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    goto done;
  }
  st = cams_of(m, ctx, x, h, w, o, r->labels, r->n_labels, r->cams, h1, gh, gw, gwt, err);
  if (st == ECS_OK && refining(m, o))
    st = ecs_h_refine(rgb, h, w, r->cams, r->n_labels, m->cfg.hp.eps, err);
  float alpha_bg = o->has_alpha_bg ? o->alpha_bg : m->cfg.alpha_bg;
  if (st == ECS_OK) st = masks_of(h1, gh, gw, up, alpha_bg, r, err);
  if (st == ECS_OK && o->want_erased) st = erasing(m, ctx, rgb, h1, gh, gw, o, gwt, r, err);
done:
  free(x);
  free(h1);
  free(gwt);
  free(up);
  ecs_ctx_set_grad(ctx, was_grad);
  if (st != ECS_OK) {
    ecs_cam_result_free(r);
    return st;
  }
  *out = r;
  return ECS_OK;
}
