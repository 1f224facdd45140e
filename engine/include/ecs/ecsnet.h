/* ecs/ecsnet.h - the ECS-Net model: configuration, weights, the training step and inference.
 *
 * A model is a configuration (backbone, classes, normalisation, alpha_bg and every ECS
 * hyper-parameter of docs/method.md) plus an ecs_params store whose tensor names follow the
 * PyTorch state_dicts of SEAM/PSA, so converted weights load unchanged. The model file is a
 * safetensors file; the configuration lives in its __metadata__ as strings (one key per value:
 * "classes" as a JSON list, each hyper-parameter as "ecsnet.hparam.NAME" in the text of its row
 * of ecs/hparams.h; files written before that hold them as one JSON string "hparams", which
 * still loads), so that a weights file can always be read without a separate configuration.
 *
 * Ownership: the model owns its params. Forward passes, inference and the training step borrow
 * the model read-only (the step writes gradients into the params' .grad and, for backbones
 * that train their batch norm, the running statistics) and take the ctx of the calling worker.
 * Everything here builds in the engine-only configuration: images come in as host arrays.
 *
 * Readings of docs/method.md where its text leaves a choice (tests/python/ecsnet_ref.py, the
 * PyTorch reference the tests compare against, makes the same ones):
 *  - step 12: each dilation branch runs block B and everything after it up to fc8, so that
 *    H' = H'_0 + (1/K) sum_k H'_k holds for the heat maps as written;
 *  - dropout is element-wise (the engine's op), where SEAM/PSA use channel-wise Dropout2d;
 *  - step 9's cells are the S x S pixel squares of the output stride S (8; efficientnet_lite0:
 *    32), clipped at the border;
 *  - the CAMs returned by inference are upsampled before the max-min normalisation (the
 *    multi-scale rule, also at one scale); the erase region uses the training step's order
 *    (normalised on the grid, then upsampled), so the service erases what training erases. */
#ifndef ECS_ECSNET_H
#define ECS_ECSNET_H

#include "ecs/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ecs_backbone {
  ECS_BACKBONE_SMALL = 0, /* our 4-layer CPU network, output stride 8, receptive field 47 px */
  ECS_BACKBONE_RESNET38D, /* SEAM/PSA wide ResNet-38 */
  ECS_BACKBONE_VGG16D,    /* PSA VGG-16 with dilated conv5 */
  /* EfficientNet-Lite0 (ImageNet), the names of efficientnet-lite-pytorch's state dict: 16
   * MBConv blocks, ReLU6, batch norm eps 1e-3, output stride 32; its weights were trained with
   * TF SAME padding, which the symmetric padding here equals on inputs of 32m+1 pixels a side
   * (inference resizes to those, ecs_model_input_size) */
  ECS_BACKBONE_EFFICIENTNET_LITE0,
  ECS_BACKBONE_COUNT
} ecs_backbone;

typedef enum ecs_norm_kind {
  ECS_NORM_IMAGENET = 0, /* RGB / 255, minus mean (0.485, 0.456, 0.406), over std (0.229, ...) */
  ECS_NORM_CAFFE_BGR,    /* BGR in 0..255 minus (104.008, 116.669, 122.675) */
  ECS_NORM_TF128,        /* RGB in 0..255, (x - 127) / 128 (TF's EfficientNet-Lite) */
  ECS_NORM_COUNT
} ecs_norm_kind;

#define ECS_MAX_RATES  4
#define ECS_MAX_SCALES 8

/* The hyper-parameters of method.md; names follow its symbols. Defaults, bounds and meanings
 * are the model rows of the table in ecs/hparams.h; the numbers below are for reading. */
typedef struct ecs_hparams {
  float beta;         /* step 1 rescale of F's input; <= 0: auto (0.5 from 320 px, else 1) */
  float delta;        /* step 6 erase threshold (0.6) */
  float theta;        /* step 9 reliability threshold (0.7) */
  float sigma_factor; /* step 7 blur sigma as a fraction of the shorter side (0.08) */
  float lambda;       /* step 11 weight of L_seg (1) */
  float lambda_ramp;  /* fraction of the ECS phase over which lambda ramps from 0 (0.5) */
  float warmup;       /* fraction of all steps that train L_cls alone (0.6) */
  float eps;          /* max-min normalisation epsilon (1e-5) */
  int overlay_k;      /* step 12 extra dilation branches; < 0: auto (0 for maps <= 16x16) */
  int overlay_rates[ECS_MAX_RATES]; /* dilation rates of the branches */
  int bg_in_phi;                    /* add confident background to Phi (1) */
  int cls_on_erased;                /* also L_cls on F' (1) */
  /* ablations */
  int no_erase;      /* plain CAM baseline: the erasing branch and L_seg never run */
  int no_overlay;    /* never add dilation branches, whatever overlay_k says */
  int no_phi_filter; /* Phi = every cell (still excluding nothing) */
  /* the input-size policy of /cam and `ecsnet cam` (api/input-size.h) */
  int input_side;         /* the shorter side the model sees; <= 0: auto (the image's own) */
  float input_max_aspect; /* the longer side at most this times the shorter; beyond, padded (4) */
} ecs_hparams;

/* Up to ECS_MAX_CLASSES - 1 object classes (ImageNet's 1000 fit) and ECS_MAX_GROUPS named
 * groups of them (a group is a label like a class: id K + g for group g = 1..G, its score the
 * summed probability of its members, its heat map theirs weighted by their probabilities).
 * Masks are 16-bit: label ids, ECS_MASK_IGNORE for "ignore" (outside Phi). */
#define ECS_MAX_CLASSES       1025
#define ECS_MAX_GROUPS        64
#define ECS_MAX_GROUP_MEMBERS 2048 /* members of all groups together */
#define ECS_MAX_LABELS        (ECS_MAX_CLASSES + ECS_MAX_GROUPS)
#define ECS_MASK_IGNORE       65535
#define ECS_CLASS_NAME_MAX    64

/* How the classifier's logits become scores: one sigmoid per class (ECS-Net's multi-label
 * loss) or one softmax over the classes (an ImageNet classifier, trained with it). */
typedef enum ecs_score_kind { ECS_SCORES_SIGMOID = 0, ECS_SCORES_SOFTMAX } ecs_score_kind;

typedef struct ecs_model_config {
  ecs_backbone backbone;
  ecs_norm_kind norm;
  int n_classes; /* K_fg, object classes; the network has 1 + K_fg channels */
  char class_names[ECS_MAX_CLASSES][ECS_CLASS_NAME_MAX]; /* ids 1..K at index 0..K-1 */
  float alpha_bg;        /* constant background score of the CAM mask */
  float label_threshold; /* class score above which a label is predicted (0.5) */
  ecs_hparams hp;
  int bg_channel_added; /* channel 0 of fc8 was zero-initialised by the converter */
  char provenance[256];
  ecs_score_kind scores; /* metadata "scores": "sigmoid" (default) or "softmax" */
  int refine;            /* metadata "refine": inference refines the CAMs by default (0) */
  /* efficientnet_lite0's batch norm: 0 frozen at the file's running statistics (a pretrained
   * model and what fine-tunes from it), 1 trained (batch statistics, running ones updated,
   * gamma and beta learnt: a model made from scratch, whose statistics are still 0 and 1);
   * metadata "bn_train" */
  int bn_train;
  int n_groups; /* G named groups, ids K+1..K+G (metadata "groups") */
  char group_names[ECS_MAX_GROUPS][ECS_CLASS_NAME_MAX];
  uint16_t
      group_start[ECS_MAX_GROUPS + 1]; /* group g's members: group_member[start[g-1]..start[g]) */
  uint16_t group_member[ECS_MAX_GROUP_MEMBERS]; /* class ids 1..K */
} ecs_model_config;

typedef struct ecs_model ecs_model;

const char *ecs_backbone_name(ecs_backbone b);
ecs_status ecs_backbone_parse(const char *name, ecs_backbone *out, ecs_err *err);
const char *ecs_norm_name(ecs_norm_kind n);
/* The colour that normalisation n maps to (nearly) zero: what padding the image with looks like
 * to the network as its convolutions' own zero padding does. */
void ecs_norm_zero_rgb(ecs_norm_kind n, uint8_t rgb[3]);
/* The table's defaults (ecs/hparams.h; the overlay rates are those of the big backbones). */
void ecs_hparams_default(ecs_hparams *hp);
/* ECS_ERR_INVALID naming the first value outside its row's bounds, or K more than the model's
 * rates. */
ecs_status ecs_hparams_check(const ecs_hparams *hp, ecs_err *err);
/* Defaults for a backbone (its normalisation, alpha_bg of SEAM) and K classes named c1..cK. */
void ecs_model_config_default(ecs_model_config *cfg, ecs_backbone b, int n_classes);

/* Creates a model with freshly initialised weights (He normal convolutions, Xavier classifier,
 * identity batch norm) from seed, in buffers of buft (NULL: host memory). */
ecs_model *ecs_model_new(const ecs_model_config *cfg, ecs_buffer_type *buft, uint64_t seed,
                         ecs_err *err);
/* Loads a model file: the backbone and classes from the metadata, then every tensor with its
 * shape checked. Errors name the file and the tensor. */
ecs_model *ecs_model_load(const char *path, ecs_buffer_type *buft, ecs_err *err);
/* Saves atomically (temporary file, fsync, rename). */
ecs_status ecs_model_save(const ecs_model *m, const char *path, ecs_err *err);
/* Adds the tensors and metadata of the model file to a writer (training checkpoints add the
 * optimiser state next to them; ecs_model_load reads such a checkpoint as a model). */
struct ecs_st_writer;
ecs_status ecs_model_add_to_writer(const ecs_model *m, struct ecs_st_writer *w, ecs_err *err);
void ecs_model_free(ecs_model *m); /* accepts NULL */
/* Prepares a model that will only run inference: every batch norm that directly follows a
 * convolution (the small backbone's four, resnet38d's bn_branch2b1 and bn_branch2b2) is folded
 * into it, w' = w * g / sqrt(v + eps) per output channel and b' = beta + (b - mean) * g /
 * sqrt(v + eps), in a store of its own, so inference runs one convolution where it ran a
 * convolution and a batch norm. Forward passes that neither train nor record gradients use the
 * folded weights from then on; training, saving and ecs_model_params still see the original
 * parameters. The fold is a snapshot: call it after the weights are final, never on a model
 * that still trains. It marks every parameter fixed (ecs_tensor.fixed), so that backends keep
 * their reordered or transformed copies of all of them; code that then rewrites weights in place
 * calls it again (a second call refreshes it) and frees the backends that ran the model.
 * vgg16d has no batch norm: nothing to fold. */
ecs_status ecs_model_fold_bn(ecs_model *m, ecs_err *err);
int ecs_model_is_folded(const ecs_model *m);
ecs_params *ecs_model_params(ecs_model *m);
const ecs_model_config *ecs_model_get_config(const ecs_model *m);
ecs_model_config *ecs_model_config_mut(ecs_model *m); /* hyper-parameters and alpha_bg only */
int ecs_model_channels(const ecs_model *m);           /* 1 + K */
/* Index (1..K) of a class name, or 0 when unknown. */
int ecs_model_class_id(const ecs_model *m, const char *name);
/* The name of label id 1..K+G (a class or a group), or NULL outside. */
const char *ecs_model_label_name(const ecs_model *m, int id);
/* Parses metadata "groups" ("name:id,id,...;name:...", ids 1..K) into cfg; -1 when malformed. */
int ecs_model_groups_parse(ecs_model_config *cfg, const char *text);

/* The backbone's output stride (8, or 32 for efficientnet_lite0): one cell of the heat maps
 * per stride x stride pixels, ceil-divided at the border. */
int ecs_model_output_stride(const ecs_model *m);
/* The input side that inference runs an image side of n pixels at: n itself, or for
 * efficientnet_lite0 the nearest 32m+1 (at least 33), where symmetric padding equals the TF
 * SAME padding its weights were trained with. */
int ecs_model_input_size(const ecs_model *m, int n);

/* Host image (H, W, 3) RGB bytes -> (3, H, W) float in the backbone's normalisation. */
void ecs_model_normalise(const ecs_model *m, const uint8_t *rgb, int h, int w, float *out);

/* F: x (N, 3, H, W) normalised -> heat maps (N, 1 + K, H/s, W/s), s the output stride. training:
 * dropout on and, for the small backbone, batch statistics in batch norm. overlay_k > 0 adds the
 * dilation branches of step 12 at rates[0..k-1]. Differentiable when the ctx records gradients. */
ecs_tensor *ecs_model_forward(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, int training,
                              int overlay_k, const int *rates);

/* ---- the training step (method.md steps 1-12) ----------------------------------------- */
typedef struct ecs_step_input {
  int n, h, w;         /* batch of n images of h x w */
  const float *images; /* (n, 3, h, w) normalised */
  const float *labels; /* (n, K) in {0, 1} */
  int ecs_phase;       /* 0: warm-up (L_cls only), 1: the erasing branch and L_seg run */
  float lambda;        /* weight of L_seg this step (the ramp is the caller's) */
  uint64_t seed;       /* dropout masks */
  /* Optional outputs of the erasing branch, for checks and tools (NULL: not wanted); written
   * only when that branch ran (ecs_phase set, no_erase off): */
  int32_t *phi_out;   /* (n, gh, gw) on the grid of H' (ecs_model_step_grid): L' at the cells
                       * of Phi, 255 elsewhere */
  uint8_t *erase_out; /* (n, h, w) the erase region R, 0/1 */
} ecs_step_input;

typedef struct ecs_step_stats {
  float loss, loss_cls, loss_cls_erased, loss_seg;
  int64_t phi, phi_fg, phi_bg; /* |Phi| and its composition (cells of H's grid) */
  int64_t cells;               /* cells of the grid of H' over the batch */
  int64_t erased_px;           /* pixels in R over the batch */
  float beta;                  /* the rescale used */
  int overlay_k;               /* the branches used */
} ecs_step_stats;

/* Runs one step and accumulates gradients into the params (zero them first). The ctx is reset
 * at the start; its grad and training settings are restored on return. */
ecs_status ecs_model_step(const ecs_model *m, ecs_ctx *ctx, const ecs_step_input *in,
                          ecs_step_stats *stats, ecs_err *err);
/* The beta and overlay branch count the step uses for images of h x w. */
float ecs_model_step_beta(const ecs_model *m, int h, int w);
int ecs_model_step_overlay(const ecs_model *m, int h, int w);
/* The side of the grid of H' (where Phi lives) for an image side of n pixels. */
int ecs_model_step_grid(const ecs_model *m, int n);

/* ---- inference ----------------------------------------------------------------------- */
typedef struct ecs_infer_opts {
  /* label ids 1..K+G (classes, then groups); NULL or n_labels = 0: predicted from the scores:
   * the label_topk best classes whose score (or whose group's) is above the threshold, each
   * replaced by its group where one covers it, the best one always */
  const int *labels;
  int n_labels;
  float scales[ECS_MAX_SCALES]; /* n_scales = 0: {1} */
  int n_scales;
  int flip;
  int want_erased; /* run the erasing branch (erased image, erased CAMs, ECS and combined mask) */
  float label_threshold; /* > 0: overrides the model's threshold for predicted labels */
  int has_alpha_bg;      /* 1: alpha_bg below replaces the model's background score */
  float alpha_bg;        /* in [0, 1]: the CAM mask's background score for this call */
  int label_topk;        /* > 0: the classes predicted labels come from (0: 3) */
  /* edge-aware refinement of the CAMs and erased CAMs (refine.c) before the masks: 1 on, -1
   * off, 0 the model's default (its metadata "refine") */
  int refine;
} ecs_infer_opts;

typedef struct ecs_cam_result {
  int h, w, n_classes, n_groups;
  int n_labels;
  int labels[ECS_MAX_LABELS]; /* label ids used (classes, then groups), ascending */
  int predicted;              /* the labels were predicted from the scores, not given */
  /* (K + G) label k at index k-1: per class the sigmoid of GAP of its logits, or their softmax
   * over the K classes (the model's scores kind); per group its members' summed scores */
  float *scores;
  float *cams;           /* (n_labels, h, w) in [0, 1] */
  float *erased_cams;    /* (n_labels, h, w) or NULL */
  uint8_t *erase_region; /* (h, w) 0/1 or NULL */
  uint8_t *erased_image; /* (h, w, 3) RGB or NULL */
  uint16_t *cam_mask;    /* (h, w) label ids */
  uint16_t *head_mask;   /* (h, w) label ids */
  uint16_t *ecs_mask;    /* (h, w) label ids, ECS_MASK_IGNORE outside Phi; or NULL */
  uint16_t *mask;        /* (h, w) combined mask (the CAM mask without the erasing) */
  int64_t phi;           /* pixels in Phi */
} ecs_cam_result;

/* The smallest image side ecs_model_infer takes; the api's input-size policy never gives it a
 * smaller one (api/input-size.h). */
#define ECS_MODEL_MIN_SIDE 8

ecs_status ecs_model_infer(const ecs_model *m, ecs_ctx *ctx, const uint8_t *rgb, int h, int w,
                           const ecs_infer_opts *opts, ecs_cam_result **out, ecs_err *err);
void ecs_cam_result_free(ecs_cam_result *r); /* accepts NULL */

#ifdef __cplusplus
}
#endif
#endif
