/* model-impl.h - what the model files share: the model struct and host-side helpers.
 *
 * The non-differentiable pieces of ECS-Net (normalised CAMs, the score map, the erase region,
 * the blur, L', s' and Phi) are small (C x h x w per image) and carry no gradient, so they are
 * computed here on host copies rather than as backend ops: one implementation serves every
 * backend and the PyTorch reference can mirror it line by line. */
#ifndef ECS_MODEL_IMPL_H
#define ECS_MODEL_IMPL_H

#include "ecs/ecsnet.h"

#define ECS_BN_EPS 1e-5f /* batch norm epsilon (PyTorch's default); efficientnet_lite0: 1e-3 */

struct ecs_model {
  ecs_model_config cfg;
  ecs_params *ps;
  ecs_params *folded; /* ecs_model_fold_bn's convolutions with their batch norm, or NULL */
};

/* The (convolution, batch norm) pairs that ecs_model_fold_bn folds: calls fn for each with the
 * parameter name prefixes ("conv1", "bn1"); stops at the first error. */
typedef ecs_status (*ecs_fold_fn)(ecs_model *m, const char *conv, const char *bn, void *ud,
                                  ecs_err *err);
ecs_status ecs_model_fold_pairs(ecs_model *m, ecs_fold_fn fn, void *ud, ecs_err *err);

/* Backbone forward pieces (backbone.c). The trunk is everything before block B (the 3x3 conv
 * that step 12 runs at several dilations); the head runs B at one dilation and the rest of the
 * network up to fc8. */
typedef struct ecs_trunk {
  ecs_tensor *x;        /* input of block B */
  ecs_tensor *shortcut; /* resnet38d: b7's shortcut, added after B's block */
} ecs_trunk;

ecs_status ecs_model_declare(ecs_model *m, ecs_err *err);
ecs_trunk ecs_model_trunk(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, int training);
ecs_tensor *ecs_model_head(const ecs_model *m, ecs_ctx *ctx, const ecs_trunk *t, int dil,
                           int training);
int ecs_model_base_dilation(const ecs_model *m); /* B's own dilation */
float ecs_model_bn_eps(const ecs_model *m);      /* the backbone's batch norm epsilon */

/* host helpers (host.c) */
/* Bilinear resize of c planes, PyTorch's align_corners=False. */
void ecs_h_resize(const float *in, int c, int h, int w, float *out, int oh, int ow);
/* Step 3 on one plane of n values, in place. */
void ecs_h_maxmin_norm(float *x, int64_t n, float eps);
/* Edge-aware refinement of n maps (h, w) in [0, 1] along the colours of rgb (h, w, 3), then
 * max-min normalised again (refine.c, PAMR-like). */
ecs_status ecs_h_refine(const uint8_t *rgb, int h, int w, float *maps, int n, float eps,
                        ecs_err *err);
/* Separable Gaussian blur of c planes, zero-padded borders renormalised. */
void ecs_h_blur(const float *in, int c, int h, int w, float sigma, int ksize, float *out);
/* sigma and kernel size of step 7 for an image of h x w. */
void ecs_h_blur_params(const ecs_hparams *hp, int h, int w, float *sigma, int *ksize);
/* Size after the rescale of step 1 (PyTorch's floor of size * beta, at least 1). */
int ecs_h_scaled(int n, float beta);
/* Grid size of an input of n pixels (the output stride with ceil, as the convolutions give). */
int ecs_h_grid(const ecs_model *m, int n);

#endif
