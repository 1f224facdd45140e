/* backbone.c - the four networks: parameter declarations and forward passes.
 *
 * Declarations follow the PyTorch state_dicts of SEAM/PSA (method.md), so converted weights
 * load unchanged. Every forward is split at block B, the 3x3 convolution that step 12 runs at
 * extra dilation rates in F': the trunk runs once and the head (B at one dilation, then the
 * rest up to fc8) once per branch. Frozen parts (resnet38d's batch norm, conv1a and b2; vgg16d's
 * conv1-conv2; efficientnet_lite0's batch norm unless cfg.bn_train) are declared non-trainable, so
 * no gradient is ever recorded for them. */
#include "model-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS      ECS_BN_EPS
#define BN_MOMENTUM 0.1f

/* ---- declarations -------------------------------------------------------------------- */
static ecs_status add(ecs_model *m, const char *name, int nd, int64_t a, int64_t b, int64_t c,
                      int64_t d, int trainable, ecs_err *err) {
  int64_t ne[4] = {a, b, c, d};
  return ecs_params_add(m->ps, name, ECS_F32, nd, ne, trainable, err)
             ? ECS_OK
             : (err ? err->status : ECS_ERR_INVALID);
}

static ecs_status conv(ecs_model *m, const char *name, int64_t o, int64_t i, int k, int bias,
                       int trainable, ecs_err *err) {
  char n[96];
  snprintf(n, sizeof n, "%s.weight", name);
  ecs_status st = add(m, n, 4, o, i, k, k, trainable, err);
  if (st == ECS_OK && bias) {
    snprintf(n, sizeof n, "%s.bias", name);
    st = add(m, n, 1, o, 1, 1, 1, trainable, err);
  }
  return st;
}

static ecs_status bn(ecs_model *m, const char *name, int64_t c, int trainable, ecs_err *err) {
  static const char *const suf[4] = {"weight", "bias", "running_mean", "running_var"};
  char n[96];
  ecs_status st = ECS_OK;
  for (int i = 0; i < 4 && st == ECS_OK; i++) {
    if ((size_t)snprintf(n, sizeof n, "%s.%s", name, suf[i]) >= sizeof n)
      return ecs_err_set(err, ECS_ERR_INVALID, "parameter name too long: %s.%s", name, suf[i]);
    st = add(m, n, 1, c, 1, 1, 1, trainable && i < 2, err);
  }
  return st;
}

/* resnet38d's stages: name, in, mid, out, stride, first dilation, dilation, bottleneck */
typedef struct rblock {
  const char *name;
  int in, mid, out, stride, d1, d, bot;
  float drop;
} rblock;

static const rblock g_r38[] = {
    {"b2", 64, 128, 128, 2, 1, 1, 0, 0},        {"b2_1", 128, 128, 128, 1, 1, 1, 0, 0},
    {"b2_2", 128, 128, 128, 1, 1, 1, 0, 0},     {"b3", 128, 256, 256, 2, 1, 1, 0, 0},
    {"b3_1", 256, 256, 256, 1, 1, 1, 0, 0},     {"b3_2", 256, 256, 256, 1, 1, 1, 0, 0},
    {"b4", 256, 512, 512, 2, 1, 1, 0, 0},       {"b4_1", 512, 512, 512, 1, 1, 1, 0, 0},
    {"b4_2", 512, 512, 512, 1, 1, 1, 0, 0},     {"b4_3", 512, 512, 512, 1, 1, 1, 0, 0},
    {"b4_4", 512, 512, 512, 1, 1, 1, 0, 0},     {"b4_5", 512, 512, 512, 1, 1, 1, 0, 0},
    {"b5", 512, 512, 1024, 1, 1, 2, 0, 0},      {"b5_1", 1024, 512, 1024, 1, 2, 2, 0, 0},
    {"b5_2", 1024, 512, 1024, 1, 2, 2, 0, 0},   {"b6", 1024, 512, 2048, 1, 4, 4, 1, 0.3f},
    {"b7", 2048, 1024, 4096, 1, 4, 4, 1, 0.5f},
};
#define N_R38 (int)(sizeof g_r38 / sizeof g_r38[0])

static ecs_status declare_r38(ecs_model *m, ecs_err *err) {
  char n[96];
  ecs_status st = conv(m, "conv1a", 64, 3, 3, 0, 0, err);
  for (int i = 0; i < N_R38 && st == ECS_OK; i++) {
    const rblock *b = &g_r38[i];
    int tr = strncmp(b->name, "b2", 2) != 0;
    snprintf(n, sizeof n, "%s.bn_branch2a", b->name);
    st = bn(m, n, b->in, 0, err);
    if (b->bot) {
      /* bottleneck: 1x1 in -> out/4, 3x3 -> out/2, 1x1 -> out */
      snprintf(n, sizeof n, "%s.conv_branch2a", b->name);
      if (st == ECS_OK) st = conv(m, n, b->out / 4, b->in, 1, 0, tr, err);
      snprintf(n, sizeof n, "%s.bn_branch2b1", b->name);
      if (st == ECS_OK) st = bn(m, n, b->out / 4, 0, err);
      snprintf(n, sizeof n, "%s.conv_branch2b1", b->name);
      if (st == ECS_OK) st = conv(m, n, b->out / 2, b->out / 4, 3, 0, tr, err);
      snprintf(n, sizeof n, "%s.bn_branch2b2", b->name);
      if (st == ECS_OK) st = bn(m, n, b->out / 2, 0, err);
      snprintf(n, sizeof n, "%s.conv_branch2b2", b->name);
      if (st == ECS_OK) st = conv(m, n, b->out, b->out / 2, 1, 0, tr, err);
    } else {
      snprintf(n, sizeof n, "%s.conv_branch2a", b->name);
      if (st == ECS_OK) st = conv(m, n, b->mid, b->in, 3, 0, tr, err);
      snprintf(n, sizeof n, "%s.bn_branch2b1", b->name);
      if (st == ECS_OK) st = bn(m, n, b->mid, 0, err);
      snprintf(n, sizeof n, "%s.conv_branch2b1", b->name);
      if (st == ECS_OK) st = conv(m, n, b->out, b->mid, 3, 0, tr, err);
    }
    if (st == ECS_OK && (b->bot || b->in != b->out || b->stride != 1)) {
      snprintf(n, sizeof n, "%s.conv_branch1", b->name);
      st = conv(m, n, b->out, b->in, 1, 0, tr, err);
    }
  }
  if (st == ECS_OK) st = bn(m, "bn7", 4096, 0, err);
  if (st == ECS_OK) st = conv(m, "fc8", 1 + m->cfg.n_classes, 4096, 1, 0, 1, err);
  return st;
}

static const struct {
  const char *name;
  int in, out, dil, trainable;
} g_vgg[] = {
    {"conv1_1", 3, 64, 1, 0},    {"conv1_2", 64, 64, 1, 0},   {"conv2_1", 64, 128, 1, 0},
    {"conv2_2", 128, 128, 1, 0}, {"conv3_1", 128, 256, 1, 1}, {"conv3_2", 256, 256, 1, 1},
    {"conv3_3", 256, 256, 1, 1}, {"conv4_1", 256, 512, 1, 1}, {"conv4_2", 512, 512, 1, 1},
    {"conv4_3", 512, 512, 1, 1}, {"conv5_1", 512, 512, 2, 1}, {"conv5_2", 512, 512, 2, 1},
    {"conv5_3", 512, 512, 2, 1},
};
#define N_VGG (int)(sizeof g_vgg / sizeof g_vgg[0])

/* efficientnet_lite0 (TF's efficientnet_lite_builder; efficientnet-lite-pytorch's names): the
 * stem, a 3x3 stride-2 convolution to 32 channels, then its 7 stages, (kernel, stride,
 * expansion, repeats, channels out) = (3,1,1,1,16) (3,2,6,2,24) (5,2,6,2,40) (3,2,6,3,80)
 * (5,1,6,3,112) (5,2,6,4,192) (3,1,6,1,320), as 16 MBConv blocks: a 1x1 expansion to in * e
 * channels (none when e = 1), the depthwise k x k convolution (stride on the first block of a
 * stage), a 1x1 projection without activation, and a residual add where stride is 1 and
 * channels in equal channels out; every convolution has its batch norm, every activation is
 * ReLU6. Then the head, 1x1 to 1280 with batch norm and ReLU6, and the classifier fc8 with
 * bias. No squeeze-excite, no swish. Block B (the dilated branch of step 12) is the last
 * block's depthwise 3x3. */
typedef struct lblock {
  int k, s, e, in, out;
} lblock;

static const lblock g_lite[] = {
    {3, 1, 1, 32, 16},   {3, 2, 6, 16, 24},   {3, 1, 6, 24, 24},   {5, 2, 6, 24, 40},
    {5, 1, 6, 40, 40},   {3, 2, 6, 40, 80},   {3, 1, 6, 80, 80},   {3, 1, 6, 80, 80},
    {5, 1, 6, 80, 112},  {5, 1, 6, 112, 112}, {5, 1, 6, 112, 112}, {5, 2, 6, 112, 192},
    {5, 1, 6, 192, 192}, {5, 1, 6, 192, 192}, {5, 1, 6, 192, 192}, {3, 1, 6, 192, 320},
};
#define N_LITE      (int)(sizeof g_lite / sizeof g_lite[0])
#define LITE_STEM   32
#define LITE_HEAD   1280
#define LITE_BN_EPS 1e-3f /* TF's batch norm epsilon, which the weights were trained with */

static ecs_status declare_lite(ecs_model *m, ecs_err *err) {
  char c[64], n[64];
  int tb = m->cfg.bn_train; /* batch norm trained or frozen (ecs_model_config) */
  ecs_status st = conv(m, "_conv_stem", LITE_STEM, 3, 3, 0, 1, err);
  if (st == ECS_OK) st = bn(m, "_bn0", LITE_STEM, tb, err);
  for (int i = 0; i < N_LITE && st == ECS_OK; i++) {
    const lblock *b = &g_lite[i];
    int mid = b->in * b->e;
    if (b->e != 1) {
      snprintf(c, sizeof c, "_blocks.%d._expand_conv", i);
      snprintf(n, sizeof n, "_blocks.%d._bn0", i);
      st = conv(m, c, mid, b->in, 1, 0, 1, err);
      if (st == ECS_OK) st = bn(m, n, mid, tb, err);
    }
    snprintf(c, sizeof c, "_blocks.%d._depthwise_conv", i);
    snprintf(n, sizeof n, "_blocks.%d._bn1", i);
    if (st == ECS_OK) st = conv(m, c, mid, 1, b->k, 0, 1, err);
    if (st == ECS_OK) st = bn(m, n, mid, tb, err);
    snprintf(c, sizeof c, "_blocks.%d._project_conv", i);
    snprintf(n, sizeof n, "_blocks.%d._bn2", i);
    if (st == ECS_OK) st = conv(m, c, b->out, mid, 1, 0, 1, err);
    if (st == ECS_OK) st = bn(m, n, b->out, tb, err);
  }
  if (st == ECS_OK) st = conv(m, "_conv_head", LITE_HEAD, g_lite[N_LITE - 1].out, 1, 0, 1, err);
  if (st == ECS_OK) st = bn(m, "_bn1", LITE_HEAD, tb, err);
  if (st == ECS_OK) st = conv(m, "fc8", 1 + m->cfg.n_classes, LITE_HEAD, 1, 1, 1, err);
  return st;
}

/* The small network: kernel, stride, channels; receptive field 7 + 4*2 + 4*4 + 2*8 = 47 px. */
static const struct {
  int k, s, out;
} g_small[4] = {{7, 2, 32}, {5, 2, 64}, {5, 2, 128}, {3, 1, 256}};

ecs_status ecs_model_declare(ecs_model *m, ecs_err *err) {
  ecs_status st = ECS_OK;
  switch (m->cfg.backbone) {
  case ECS_BACKBONE_RESNET38D: return declare_r38(m, err);
  case ECS_BACKBONE_VGG16D:
    for (int i = 0; i < N_VGG && st == ECS_OK; i++)
      st = conv(m, g_vgg[i].name, g_vgg[i].out, g_vgg[i].in, 3, 1, g_vgg[i].trainable, err);
    if (st == ECS_OK) st = conv(m, "fc6", 1024, 512, 3, 1, 1, err);
    if (st == ECS_OK) st = conv(m, "fc7", 1024, 1024, 1, 1, 1, err);
    if (st == ECS_OK) st = conv(m, "fc8", 1 + m->cfg.n_classes, 1024, 1, 0, 1, err);
    return st;
  case ECS_BACKBONE_SMALL: {
    int in = 3;
    char n[32];
    for (int i = 0; i < 4 && st == ECS_OK; i++) {
      snprintf(n, sizeof n, "conv%d", i + 1);
      st = conv(m, n, g_small[i].out, in, g_small[i].k, 0, 1, err);
      snprintf(n, sizeof n, "bn%d", i + 1);
      if (st == ECS_OK) st = bn(m, n, g_small[i].out, 1, err);
      in = g_small[i].out;
    }
    if (st == ECS_OK) st = conv(m, "fc8", 1 + m->cfg.n_classes, in, 1, 0, 1, err);
    return st;
  }
  case ECS_BACKBONE_EFFICIENTNET_LITE0: return declare_lite(m, err);
  default: return ecs_err_set(err, ECS_ERR_INVALID, "unknown backbone");
  }
}

/* ---- forward ---------------------------------------------------------------------------- */
static ecs_tensor *P(const ecs_model *m, const char *fmt, const char *a, const char *b) {
  char n[96];
  if ((size_t)snprintf(n, sizeof n, fmt, a, b) >= sizeof n) return NULL; /* no such name */
  return ecs_params_find(m->ps, n);
}

static ecs_tensor *conv_g_f(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *name,
                            int stride, int pad, int dil, int groups) {
  return ecs_conv2d(ctx, x, P(m, "%s%s.weight", name, ""), P(m, "%s%s.bias", name, ""), stride, pad,
                    dil, groups);
}

static ecs_tensor *conv_f(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *name,
                          int stride, int pad, int dil) {
  return conv_g_f(m, ctx, x, name, stride, pad, dil, 1);
}

float ecs_model_bn_eps(const ecs_model *m) {
  return m->cfg.backbone == ECS_BACKBONE_EFFICIENTNET_LITE0 ? LITE_BN_EPS : BN_EPS;
}

static ecs_tensor *act_f(ecs_ctx *ctx, ecs_tensor *x, ecs_act act) {
  return act == ECS_ACT_RELU ? ecs_relu(ctx, x) : act == ECS_ACT_RELU6 ? ecs_relu6(ctx, x) : x;
}

static ecs_tensor *bn_f(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *name,
                        int training) {
  return ecs_batchnorm(ctx, x, P(m, "%s%s.weight", name, ""), P(m, "%s%s.bias", name, ""),
                       P(m, "%s%s.running_mean", name, ""), P(m, "%s%s.running_var", name, ""),
                       training, BN_MOMENTUM, ecs_model_bn_eps(m));
}

static ecs_tensor *bn_relu(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *blk,
                           const char *bnname) {
  char n[96];
  snprintf(n, sizeof n, "%s.%s", blk, bnname);
  return ecs_relu(ctx, bn_f(m, ctx, x, n, 0)); /* resnet38d's batch norm is always frozen */
}

/* Whether this pass runs ReLU fused into the convolution before it (ecs_conv2d_act): inference
 * only, that is neither training nor recording gradients, so training keeps its separate ops.
 * The fuse option of the ctx's backend (ecs_backend_params) set to ECS_OPT_OFF turns it off,
 * for A/B measurements and tests. */
static int fuse_relu(ecs_ctx *ctx, int training) {
  if (training || ecs_ctx_grad_enabled(ctx)) return 0;
  return ecs_backend_get_params(ecs_ctx_backend(ctx))->fuse != ECS_OPT_OFF;
}

/* ReLU(conv(x)) */
static ecs_tensor *conv_relu_f(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *name,
                               int stride, int pad, int dil, int training) {
  if (fuse_relu(ctx, training))
    return ecs_conv2d_act(ctx, x, P(m, "%s%s.weight", name, ""), P(m, "%s%s.bias", name, ""),
                          stride, pad, dil, 1, ECS_ACT_RELU);
  return ecs_relu(ctx, conv_f(m, ctx, x, name, stride, pad, dil));
}

/* act(BN(conv(x))) for act none, ReLU or ReLU6: one convolution with the folded weights when
 * the model was folded for inference and this pass neither trains nor records gradients
 * (ecs_model_fold_bn), with the activation fused into it (fuse_relu). */
static ecs_tensor *conv_bn_act_f(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *cname,
                                 const char *bnname, int stride, int pad, int dil, int groups,
                                 ecs_act act, int training) {
  if (m->folded && !training && !ecs_ctx_grad_enabled(ctx)) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", cname);
    ecs_tensor *w = ecs_params_find(m->folded, n);
    snprintf(n, sizeof n, "%s.bias", cname);
    ecs_tensor *b = ecs_params_find(m->folded, n);
    if (w && b)
      return act != ECS_ACT_NONE && fuse_relu(ctx, training)
                 ? ecs_conv2d_act(ctx, x, w, b, stride, pad, dil, groups, act)
                 : act_f(ctx, ecs_conv2d(ctx, x, w, b, stride, pad, dil, groups), act);
  }
  x = conv_g_f(m, ctx, x, cname, stride, pad, dil, groups);
  return act_f(ctx, bn_f(m, ctx, x, bnname, training), act);
}

/* ReLU(BN(conv(x))) */
static ecs_tensor *conv_bn_relu_f(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x,
                                  const char *cname, const char *bnname, int stride, int pad,
                                  int dil, int training) {
  return conv_bn_act_f(m, ctx, x, cname, bnname, stride, pad, dil, 1, ECS_ACT_RELU, training);
}

/* Whether efficientnet_lite0's batch norm runs in training mode in this pass: when training a
 * model whose batch norm trains (cfg.bn_train); frozen at the running statistics otherwise, as
 * resnet38d's, which is how the pretrained model fine-tunes. */
static int lite_bn_training(const ecs_model *m, int training) {
  return training && m->cfg.bn_train;
}

/* One MBConv block of efficientnet_lite0, its depthwise convolution at dilation dil. */
static ecs_tensor *lite_block(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, int i, int dil,
                              int training) {
  int bt = lite_bn_training(m, training);
  const lblock *b = &g_lite[i];
  int mid = b->in * b->e;
  char c[64], n[64];
  ecs_tensor *y = x;
  if (b->e != 1) {
    snprintf(c, sizeof c, "_blocks.%d._expand_conv", i);
    snprintf(n, sizeof n, "_blocks.%d._bn0", i);
    y = conv_bn_act_f(m, ctx, y, c, n, 1, 0, 1, 1, ECS_ACT_RELU6, bt);
  }
  snprintf(c, sizeof c, "_blocks.%d._depthwise_conv", i);
  snprintf(n, sizeof n, "_blocks.%d._bn1", i);
  y = conv_bn_act_f(m, ctx, y, c, n, b->s, dil * (b->k / 2), dil, mid, ECS_ACT_RELU6, bt);
  snprintf(c, sizeof c, "_blocks.%d._project_conv", i);
  snprintf(n, sizeof n, "_blocks.%d._bn2", i);
  y = conv_bn_act_f(m, ctx, y, c, n, 1, 0, 1, 1, ECS_ACT_NONE, bt);
  return b->s == 1 && b->in == b->out ? ecs_add(ctx, x, y) : y;
}

/* resnet38d's conv, then the block's next batch norm (frozen) and ReLU */
static ecs_tensor *cv_bn_relu(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *blk,
                              const char *cname, const char *bnname, int stride, int pad, int dil) {
  char c[96], n[96];
  snprintf(c, sizeof c, "%s.%s", blk, cname);
  snprintf(n, sizeof n, "%s.%s", blk, bnname);
  return conv_bn_relu_f(m, ctx, x, c, n, stride, pad, dil, 0);
}

static ecs_tensor *cv(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const char *blk,
                      const char *cname, int stride, int pad, int dil) {
  char n[96];
  snprintf(n, sizeof n, "%s.%s", blk, cname);
  return conv_f(m, ctx, x, n, stride, pad, dil);
}

static ecs_tensor *r38_block(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const rblock *b) {
  ecs_tensor *xa = bn_relu(m, ctx, x, b->name, "bn_branch2a");
  ecs_tensor *sc = (b->in != b->out || b->stride != 1)
                       ? cv(m, ctx, xa, b->name, "conv_branch1", b->stride, 0, 1)
                       : x;
  ecs_tensor *y =
      cv_bn_relu(m, ctx, xa, b->name, "conv_branch2a", "bn_branch2b1", b->stride, b->d1, b->d1);
  y = cv(m, ctx, y, b->name, "conv_branch2b1", 1, b->d, b->d);
  return ecs_add(ctx, sc, y);
}

/* bottleneck up to its 3x3 conv: returns the 3x3 conv's input and the shortcut */
static ecs_trunk r38_bot_pre(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, const rblock *b) {
  ecs_tensor *xa = bn_relu(m, ctx, x, b->name, "bn_branch2a");
  ecs_trunk t = {.shortcut = cv(m, ctx, xa, b->name, "conv_branch1", b->stride, 0, 1)};
  ecs_tensor *y = cv_bn_relu(m, ctx, xa, b->name, "conv_branch2a", "bn_branch2b1", b->stride, 0, 1);
  t.x = ecs_dropout(ctx, y, b->drop);
  return t;
}

static ecs_tensor *r38_bot_post(const ecs_model *m, ecs_ctx *ctx, const ecs_trunk *t,
                                const rblock *b, int dil) {
  ecs_tensor *y = cv_bn_relu(m, ctx, t->x, b->name, "conv_branch2b1", "bn_branch2b2", 1, dil, dil);
  y = ecs_dropout(ctx, y, b->drop);
  y = cv(m, ctx, y, b->name, "conv_branch2b2", 1, 0, 1);
  return ecs_add(ctx, t->shortcut, y);
}

ecs_trunk ecs_model_trunk(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, int training) {
  ecs_trunk t = {0};
  char n[32];
  switch (m->cfg.backbone) {
  case ECS_BACKBONE_RESNET38D:
    x = conv_f(m, ctx, x, "conv1a", 1, 1, 1);
    for (int i = 0; i < N_R38 - 2; i++)
      x = r38_block(m, ctx, x, &g_r38[i]);
    x = r38_bot_post(m, ctx, (ecs_trunk[]){r38_bot_pre(m, ctx, x, &g_r38[N_R38 - 2])},
                     &g_r38[N_R38 - 2], g_r38[N_R38 - 2].d);
    return r38_bot_pre(m, ctx, x, &g_r38[N_R38 - 1]);
  case ECS_BACKBONE_VGG16D:
    for (int i = 0; i < N_VGG; i++) {
      x = conv_relu_f(m, ctx, x, g_vgg[i].name, 1, g_vgg[i].dil, g_vgg[i].dil, training);
      const char *nm = g_vgg[i].name;
      if (strcmp(nm, "conv1_2") == 0 || strcmp(nm, "conv2_2") == 0 || strcmp(nm, "conv3_3") == 0)
        x = ecs_max_pool2d(ctx, x, 3, 2, 1, 0);
      else if (strcmp(nm, "conv4_3") == 0)
        x = ecs_max_pool2d(ctx, x, 3, 1, 1, 0);
    }
    t.x = x;
    return t;
  case ECS_BACKBONE_SMALL:
    for (int i = 0; i < 3; i++) {
      char bname[32];
      snprintf(n, sizeof n, "conv%d", i + 1);
      snprintf(bname, sizeof bname, "bn%d", i + 1);
      x = conv_bn_relu_f(m, ctx, x, n, bname, g_small[i].s, g_small[i].k / 2, 1, training);
    }
    t.x = x;
    return t;
  case ECS_BACKBONE_EFFICIENTNET_LITE0:
    x = conv_bn_act_f(m, ctx, x, "_conv_stem", "_bn0", 2, 1, 1, 1, ECS_ACT_RELU6,
                      lite_bn_training(m, training));
    for (int i = 0; i < N_LITE - 1; i++)
      x = lite_block(m, ctx, x, i, 1, training);
    t.x = x;
    return t;
  default: return t;
  }
}

ecs_status ecs_model_fold_pairs(ecs_model *m, ecs_fold_fn fn, void *ud, ecs_err *err) {
  ecs_status st = ECS_OK;
  char c[96], b[96];
  switch (m->cfg.backbone) {
  case ECS_BACKBONE_SMALL:
    for (int i = 0; i < 4 && st == ECS_OK; i++) {
      snprintf(c, sizeof c, "conv%d", i + 1);
      snprintf(b, sizeof b, "bn%d", i + 1);
      st = fn(m, c, b, ud, err);
    }
    return st;
  case ECS_BACKBONE_RESNET38D:
    for (int i = 0; i < N_R38 && st == ECS_OK; i++) {
      snprintf(c, sizeof c, "%s.conv_branch2a", g_r38[i].name);
      snprintf(b, sizeof b, "%s.bn_branch2b1", g_r38[i].name);
      st = fn(m, c, b, ud, err);
      if (st == ECS_OK && g_r38[i].bot) {
        snprintf(c, sizeof c, "%s.conv_branch2b1", g_r38[i].name);
        snprintf(b, sizeof b, "%s.bn_branch2b2", g_r38[i].name);
        st = fn(m, c, b, ud, err);
      }
    }
    return st;
  case ECS_BACKBONE_EFFICIENTNET_LITE0:
    st = fn(m, "_conv_stem", "_bn0", ud, err);
    for (int i = 0; i < N_LITE && st == ECS_OK; i++) {
      static const char *const pair[3][2] = {
          {"_expand_conv", "_bn0"}, {"_depthwise_conv", "_bn1"}, {"_project_conv", "_bn2"}};
      for (int j = g_lite[i].e == 1; j < 3 && st == ECS_OK; j++) {
        snprintf(c, sizeof c, "_blocks.%d.%s", i, pair[j][0]);
        snprintf(b, sizeof b, "_blocks.%d.%s", i, pair[j][1]);
        st = fn(m, c, b, ud, err);
      }
    }
    if (st == ECS_OK) st = fn(m, "_conv_head", "_bn1", ud, err);
    return st;
  default: return ECS_OK;
  }
}

int ecs_model_base_dilation(const ecs_model *m) {
  return m->cfg.backbone == ECS_BACKBONE_RESNET38D ? g_r38[N_R38 - 1].d : 1;
}

int ecs_model_output_stride(const ecs_model *m) {
  return m->cfg.backbone == ECS_BACKBONE_EFFICIENTNET_LITE0 ? 32 : 8;
}

int ecs_model_input_size(const ecs_model *m, int n) {
  if (m->cfg.backbone != ECS_BACKBONE_EFFICIENTNET_LITE0) return n;
  int k = (n - 1 + 16) / 32; /* the nearest 32k + 1, ties up */
  return 32 * (k < 1 ? 1 : k) + 1;
}

ecs_tensor *ecs_model_head(const ecs_model *m, ecs_ctx *ctx, const ecs_trunk *t, int dil,
                           int training) {
  ecs_tensor *x;
  switch (m->cfg.backbone) {
  case ECS_BACKBONE_RESNET38D:
    x = r38_bot_post(m, ctx, t, &g_r38[N_R38 - 1], dil);
    x = ecs_relu(ctx, bn_f(m, ctx, x, "bn7", 0));
    break;
  case ECS_BACKBONE_VGG16D:
    x = ecs_dropout(ctx, conv_relu_f(m, ctx, t->x, "fc6", 1, dil, dil, training), 0.5f);
    x = ecs_dropout(ctx, conv_relu_f(m, ctx, x, "fc7", 1, 0, 1, training), 0.5f);
    break;
  case ECS_BACKBONE_SMALL:
    x = conv_bn_relu_f(m, ctx, t->x, "conv4", "bn4", 1, dil, dil, training);
    break;
  case ECS_BACKBONE_EFFICIENTNET_LITE0:
    x = lite_block(m, ctx, t->x, N_LITE - 1, dil, training);
    x = conv_bn_act_f(m, ctx, x, "_conv_head", "_bn1", 1, 0, 1, 1, ECS_ACT_RELU6,
                      lite_bn_training(m, training));
    x = ecs_dropout(ctx, x, 0.2f); /* TF's EfficientNet-Lite0 dropout rate before the classifier */
    break;
  default: return NULL;
  }
  return conv_f(m, ctx, x, "fc8", 1, 0, 1);
}

ecs_tensor *ecs_model_forward(const ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, int training,
                              int overlay_k, const int *rates) {
  /* dropout follows the ctx's training flag: set it for this pass only */
  ecs_ctx_set_training(ctx, training);
  ecs_trunk t = ecs_model_trunk(m, ctx, x, training);
  ecs_tensor *h = ecs_model_head(m, ctx, &t, ecs_model_base_dilation(m), training);
  if (overlay_k > 0 && rates) {
    /* step 12: H' = H'_0 + (1/K) sum_k H'_k, the branches sharing every weight */
    for (int k = 0; k < overlay_k && h; k++) {
      ecs_tensor *hk = ecs_model_head(m, ctx, &t, rates[k], training);
      h = hk ? ecs_axpby(ctx, 1.0f, h, 1.0f / (float)overlay_k, hk) : NULL;
    }
  }
  ecs_ctx_set_training(ctx, 0);
  return h;
}
