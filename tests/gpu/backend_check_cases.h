/* backend_check_cases.h - the cases of backend_check.c: every op type, the parameter variants
 * that take different code paths (strides, padding, dilation, groups, ceil_mode,
 * count_include_pad, clip, masks, optional outputs), and a few sizes large enough to spread
 * over many thread blocks. Included once, by backend_check.c. */

#define MAX_CASES 128
static ocase g_cases[MAX_CASES];
static size_t g_ncases;

static ocase *add(const char *name, ecs_op_type type, double tol) {
  ocase *c = &g_cases[g_ncases++];
  memset(c, 0, sizeof *c);
  c->name = name;
  c->op.type = type;
  c->tol = tol;
  return c;
}

static tdesc t4(int64_t n, int64_t c, int64_t h, int64_t w, enum gen g) {
  return (tdesc){4, {n, c, h, w}, ECS_F32, g};
}
static tdesc t2(int64_t n, int64_t c, enum gen g) {
  return (tdesc){2, {n, c, 1, 1}, ECS_F32, g};
}
static tdesc t1(int64_t n, enum gen g) {
  return (tdesc){1, {n, 1, 1, 1}, ECS_F32, g};
}

static void elementwise_cases(void) {
  ocase *c;
  static const int64_t sh[][4] = {{2, 3, 5, 7}, {4, 64, 64, 64}};
  static const char *names[] = {"2x3x5x7", "4x64x64x64"};
  for (int s = 0; s < 2; s++) {
    tdesc x = t4(sh[s][0], sh[s][1], sh[s][2], sh[s][3], G_RANDN), y = x, w = x;
    y.gen = G_NONE;
    w.gen = G_WIDE;
    c = add(names[s], ECS_OP_COPY, 0), c->src[0] = x, c->dst[0] = y;
    c = add(names[s], ECS_OP_FILL, 0), c->dst[0] = y, c->op.p.scalar.a = 0.75f;
    c = add(names[s], ECS_OP_SCALE, 1e-6), c->src[0] = x, c->dst[0] = y;
    c->op.p.scalar.a = 1.5f, c->op.p.scalar.b = -0.25f;
    c = add(names[s], ECS_OP_ADD, 1e-6), c->src[0] = x, c->src[1] = w, c->dst[0] = y;
    c->op.p.scalar.a = 0.7f, c->op.p.scalar.b = -1.2f;
    c = add(names[s], ECS_OP_MUL, 1e-6), c->src[0] = x, c->src[1] = w, c->dst[0] = y;
    c = add(s ? "relu big" : "relu", ECS_OP_RELU, 0), c->src[0] = w, c->dst[0] = y;
    c = add(s ? "relu6 big" : "relu6", ECS_OP_RELU, 0), c->src[0] = w, c->dst[0] = y;
    c->op.p.act.clip = 6.0f;
    c = add(s ? "relu big" : "relu", ECS_OP_RELU_BWD, 0), c->src[0] = w, c->src[1] = x,
    c->dst[0] = y;
    c = add(s ? "relu6 big" : "relu6", ECS_OP_RELU_BWD, 0), c->src[0] = w, c->src[1] = x;
    c->dst[0] = y, c->op.p.act.clip = 6.0f;
  }
  tdesc x = t4(2, 3, 8, 8, G_RANDN), y = t4(2, 3, 8, 8, G_NONE), m = y;
  m.type = ECS_U8;
  c = add("p=0.3", ECS_OP_DROPOUT, 1e-6), c->src[0] = x, c->dst[0] = y, c->dst[1] = m;
  c->op.p.dropout.p = 0.3f, c->op.p.dropout.seed = 99;
  c = add("p=0.5, no mask output", ECS_OP_DROPOUT, 1e-6), c->src[0] = x, c->dst[0] = y;
  c->op.p.dropout.p = 0.5f, c->op.p.dropout.seed = 7;
  m.gen = G_U8MASK;
  c = add("p=0.3", ECS_OP_DROPOUT_BWD, 1e-6), c->src[0] = x, c->src[1] = m, c->dst[0] = y;
  c->op.p.dropout.p = 0.3f;
}

typedef struct conv_variant {
  const char *name;
  int64_t n, ci, h, w, co, k;
  int stride, pad, dil, groups, bias;
} conv_variant;

static void conv_cases(void) {
  static const conv_variant v[] = {
      {"3x3 s1 p1 +bias", 2, 4, 9, 8, 6, 3, 1, 1, 1, 1, 1},
      {"3x3 s2 p1", 2, 4, 9, 8, 6, 3, 2, 1, 1, 1, 0},
      {"3x3 dil2 p2 +bias", 2, 4, 9, 8, 6, 3, 1, 2, 2, 1, 1},
      {"3x3 groups2", 2, 4, 9, 8, 6, 3, 1, 1, 1, 2, 0},
      {"1x1 s2", 2, 4, 9, 8, 6, 1, 2, 0, 1, 1, 0},
      {"7x7 s2 p3 +bias", 1, 3, 20, 18, 8, 7, 2, 3, 1, 1, 1},
      {"64->64 3x3 28x28 +bias", 2, 64, 28, 28, 64, 3, 1, 1, 1, 1, 1},
  };
  /* the same forwards with ReLU fused (p.conv.act) */
  static const char *const fused[] = {
      "3x3 s1 p1 +bias +relu",       "3x3 s2 p1 +relu", "3x3 dil2 p2 +bias +relu",
      "3x3 groups2 +relu",           "1x1 s2 +relu",    "7x7 s2 p3 +bias +relu",
      "64->64 3x3 28x28 +bias +relu"};
  _Static_assert(sizeof fused / sizeof fused[0] == sizeof v / sizeof v[0],
                 "one fused case per variant");
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    const conv_variant *q = &v[i];
    int64_t oh = ecs_conv_out_size(q->h, (int)q->k, q->stride, q->pad, q->dil);
    int64_t ow = ecs_conv_out_size(q->w, (int)q->k, q->stride, q->pad, q->dil);
    tdesc x = t4(q->n, q->ci, q->h, q->w, G_RANDN),
          w = t4(q->co, q->ci / q->groups, q->k, q->k, G_RANDN);
    tdesc y = t4(q->n, q->co, oh, ow, G_RANDN), b = t1(q->co, G_RANDN);
    tdesc xo = x, wo = w, yo = y, bo = b;
    xo.gen = wo.gen = yo.gen = bo.gen = G_NONE;
    ecs_op p = {.p.conv = {.stride = {q->stride, q->stride},
                           .pad = {q->pad, q->pad},
                           .dil = {q->dil, q->dil},
                           .groups = q->groups}};
    ocase *c = add(q->name, ECS_OP_CONV2D, 1e-4);
    c->op.p = p.p, c->src[0] = x, c->src[1] = w, c->dst[0] = yo;
    if (q->bias) c->src[2] = b;
    c = add(fused[i], ECS_OP_CONV2D, 1e-4);
    c->op.p = p.p, c->op.p.conv.act = ECS_ACT_RELU, c->src[0] = x, c->src[1] = w, c->dst[0] = yo;
    if (q->bias) c->src[2] = b;
    c = add(q->name, ECS_OP_CONV2D_BWD_DATA, 1e-4);
    c->op.p = p.p, c->src[0] = y, c->src[1] = w, c->dst[0] = xo;
    c = add(q->name, ECS_OP_CONV2D_BWD_WEIGHT, 1e-4);
    c->op.p = p.p, c->src[0] = x, c->src[1] = y, c->dst[0] = wo;
    if (q->bias) c->dst[1] = bo;
  }
  /* EfficientNet-Lite's inference convolutions: depthwise 3x3 and 5x5 at stride 1 and 2, the
   * 1x1 expansion, each with its folded batch norm as bias and ReLU6 fused (p.conv.act); inputs
   * of 32m+1 pixels a side as the backbone runs them. Unit-variance inputs and weights put many
   * outputs above 6, so the clip is exercised. */
  static const conv_variant lite[] = {
      {"dw 3x3 s1 p1 +bias +relu6", 1, 32, 17, 17, 32, 3, 1, 1, 1, 32, 1},
      {"dw 3x3 s2 p1 +bias +relu6", 1, 24, 33, 33, 24, 3, 2, 1, 1, 24, 1},
      {"dw 5x5 s2 p2 +bias +relu6", 1, 48, 17, 17, 48, 5, 2, 2, 1, 48, 1},
      {"dw 5x5 s1 p2 +bias +relu6", 1, 40, 9, 9, 40, 5, 1, 2, 1, 40, 1},
      {"1x1 16->96 +bias +relu6", 1, 16, 17, 17, 96, 1, 1, 0, 1, 1, 1},
  };
  for (size_t i = 0; i < sizeof lite / sizeof lite[0]; i++) {
    const conv_variant *q = &lite[i];
    int64_t oh = ecs_conv_out_size(q->h, (int)q->k, q->stride, q->pad, q->dil);
    int64_t ow = ecs_conv_out_size(q->w, (int)q->k, q->stride, q->pad, q->dil);
    tdesc x = t4(q->n, q->ci, q->h, q->w, G_RANDN),
          w = t4(q->co, q->ci / q->groups, q->k, q->k, G_RANDN);
    tdesc yo = t4(q->n, q->co, oh, ow, G_NONE), b = t1(q->co, G_RANDN);
    ocase *c = add(q->name, ECS_OP_CONV2D, 1e-4);
    c->op.p.conv = (typeof(c->op.p.conv)){
        {q->stride, q->stride}, {q->pad, q->pad}, {q->dil, q->dil}, q->groups, ECS_ACT_RELU6};
    c->src[0] = x, c->src[1] = w, c->src[2] = b, c->dst[0] = yo;
  }
}

static void bn_cases(void) {
  static const int64_t sh[][4] = {{3, 4, 5, 6}, {8, 32, 32, 32}};
  for (int s = 0; s < 2; s++) {
    int64_t C = sh[s][1];
    tdesc x = t4(sh[s][0], C, sh[s][2], sh[s][3], G_RANDN), y = x, vc = t1(C, G_NONE);
    y.gen = G_NONE;
    for (int training = 0; training < 2; training++) {
      ocase *c = add(training ? (s ? "training big" : "training") : (s ? "frozen big" : "frozen"),
                     ECS_OP_BATCHNORM, 1e-5);
      c->op.p.bn.eps = 1e-5f, c->op.p.bn.momentum = 0.1f, c->op.p.bn.training = training;
      c->src[0] = x, c->src[1] = t1(C, G_POS), c->src[2] = t1(C, G_RANDN);
      c->src[3] = t1(C, G_RANDN), c->src[4] = t1(C, G_POS), c->dst[0] = y;
      if (training) c->dst[1] = vc, c->dst[2] = vc, c->cmp_src = (1u << 3) | (1u << 4);

      c = add(training ? (s ? "training big" : "training") : (s ? "frozen big" : "frozen"),
              ECS_OP_BATCHNORM_BWD, 1e-4);
      c->op.p.bn.eps = 1e-5f, c->op.p.bn.training = training;
      c->src[0] = x, c->src[1] = t4(sh[s][0], C, sh[s][2], sh[s][3], G_RANDN);
      c->src[2] = t1(C, G_POS), c->src[3] = t1(C, G_RANDN), c->src[4] = t1(C, G_POS);
      c->dst[0] = y, c->dst[1] = vc, c->dst[2] = vc;
    }
  }
  /* training without the statistics outputs: a pass that records no gradient runs it so */
  ocase *c = add("training, no stats outputs", ECS_OP_BATCHNORM, 1e-5);
  c->op.p.bn.eps = 1e-5f, c->op.p.bn.momentum = 0.1f, c->op.p.bn.training = 1;
  c->src[0] = t4(2, 3, 4, 4, G_RANDN), c->src[1] = t1(3, G_POS), c->src[2] = t1(3, G_RANDN);
  c->src[3] = t1(3, G_RANDN), c->src[4] = t1(3, G_POS), c->dst[0] = t4(2, 3, 4, 4, G_NONE);
  c->cmp_src = (1u << 3) | (1u << 4);
  c = add("training (N, C)", ECS_OP_BATCHNORM, 1e-5);
  c->op.p.bn.eps = 1e-5f, c->op.p.bn.momentum = 0.1f, c->op.p.bn.training = 1;
  c->src[0] = t2(6, 5, G_RANDN), c->src[1] = t1(5, G_POS), c->src[2] = t1(5, G_RANDN);
  c->src[3] = t1(5, G_RANDN), c->src[4] = t1(5, G_POS), c->dst[0] = t2(6, 5, G_NONE);
  c->dst[1] = t1(5, G_NONE), c->dst[2] = t1(5, G_NONE), c->cmp_src = (1u << 3) | (1u << 4);
  c = add("training (N, C)", ECS_OP_BATCHNORM_BWD, 1e-4);
  c->op.p.bn.training = 1;
  c->src[0] = t2(6, 5, G_RANDN), c->src[1] = t2(6, 5, G_RANDN), c->src[2] = t1(5, G_POS);
  c->src[3] = t1(5, G_RANDN), c->src[4] = t1(5, G_POS);
  c->dst[0] = t2(6, 5, G_NONE), c->dst[1] = t1(5, G_NONE), c->dst[2] = t1(5, G_NONE);
  c = add("frozen, dx only", ECS_OP_BATCHNORM_BWD, 1e-5);
  c->src[0] = t4(2, 3, 4, 4, G_RANDN), c->src[1] = t4(2, 3, 4, 4, G_RANDN);
  c->src[2] = t1(3, G_POS), c->src[3] = t1(3, G_RANDN), c->src[4] = t1(3, G_POS);
  c->dst[0] = t4(2, 3, 4, 4, G_NONE);
}

typedef struct pool_variant {
  const char *name;
  ecs_pool_kind kind;
  int k, s, p, ceil, cip;
} pool_variant;

static ecs_op pool_params(const pool_variant *v) {
  return (ecs_op){.p.pool = {.kind = v->kind,
                             .k = {v->k, v->k},
                             .stride = {v->s, v->s},
                             .pad = {v->p, v->p},
                             .ceil_mode = v->ceil,
                             .count_include_pad = v->cip}};
}

static const pool_variant g_pools[] = {
    {"max 3x3 s2 p1", ECS_POOL_MAX, 3, 2, 1, 0, 0},
    {"max 3x3 s2 ceil", ECS_POOL_MAX, 3, 2, 0, 1, 0},
    {"max 2x2 s2", ECS_POOL_MAX, 2, 2, 0, 0, 0},
    {"avg 3x3 s1 p1 incl-pad", ECS_POOL_AVG, 3, 1, 1, 0, 1},
    {"avg 3x3 s2 p1 ceil excl-pad", ECS_POOL_AVG, 3, 2, 1, 1, 0},
    {"avg 2x2 s2 p1 ceil incl-pad", ECS_POOL_AVG, 2, 2, 1, 1, 1},
};

static void pool_cases(void) {
  for (size_t i = 0; i < sizeof g_pools / sizeof g_pools[0]; i++) {
    const pool_variant *v = &g_pools[i];
    int64_t oh = ecs_pool_out_size(9, v->k, v->s, v->p, v->ceil);
    int64_t ow = ecs_pool_out_size(10, v->k, v->s, v->p, v->ceil);
    ocase *c = add(v->name, ECS_OP_POOL2D, 1e-6);
    c->op.p = pool_params(v).p;
    c->src[0] = t4(2, 3, 9, 10, G_RANDN), c->dst[0] = t4(2, 3, oh, ow, G_NONE);
    if (v->kind == ECS_POOL_MAX) { /* the argmax workspace too, compared exactly */
      c = add(v->name, ECS_OP_POOL2D, 1e-6);
      c->name = i ? "max + argmax workspace" : "max 3x3 s2 p1 + argmax workspace";
      c->op.p = pool_params(v).p;
      c->src[0] = t4(2, 3, 9, 10, G_RANDN), c->dst[0] = t4(2, 3, oh, ow, G_NONE);
      c->dst[1] = c->dst[0], c->dst[1].type = ECS_I32;
    }
    c = add(v->name, ECS_OP_POOL2D_BWD, 1e-6);
    c->op.p = pool_params(v).p;
    c->src[0] = t4(2, 3, 9, 10, G_RANDN), c->src[1] = t4(2, 3, oh, ow, G_RANDN);
    c->dst[0] = t4(2, 3, 9, 10, G_NONE);
  }
}

static void shape_cases(void) {
  ocase *c = add("2x5x6x7", ECS_OP_GAP, 1e-6);
  c->src[0] = t4(2, 5, 6, 7, G_RANDN), c->dst[0] = t2(2, 5, G_NONE);
  c = add("4x256x28x28", ECS_OP_GAP, 1e-5);
  c->src[0] = t4(4, 256, 28, 28, G_RANDN), c->dst[0] = t2(4, 256, G_NONE);
  c = add("2x5x6x7", ECS_OP_GAP_BWD, 1e-6);
  c->src[0] = t2(2, 5, G_RANDN), c->dst[0] = t4(2, 5, 6, 7, G_NONE);

  c = add("3 inputs", ECS_OP_CONCAT, 0);
  c->op.p.concat.n = 3;
  c->src[0] = t4(2, 2, 4, 5, G_RANDN), c->src[1] = t4(2, 3, 4, 5, G_RANDN);
  c->src[2] = t4(2, 1, 4, 5, G_RANDN), c->dst[0] = t4(2, 6, 4, 5, G_NONE);
  c = add("channels 2..5 of 6", ECS_OP_SLICE_C, 0);
  c->op.p.slice.offset = 2;
  c->src[0] = t4(2, 6, 4, 5, G_RANDN), c->dst[0] = t4(2, 3, 4, 5, G_NONE);

  static const int64_t rs[][4] = {{5, 7, 11, 13}, {12, 10, 5, 4}, {6, 6, 6, 6}, {7, 9, 56, 72}};
  static const char *rn[] = {"5x7 -> 11x13", "12x10 -> 5x4", "6x6 -> 6x6", "7x9 -> 56x72"};
  for (int i = 0; i < 4; i++) {
    c = add(rn[i], ECS_OP_RESIZE_BILINEAR, 1e-6);
    c->src[0] = t4(2, 3, rs[i][0], rs[i][1], G_RANDN),
    c->dst[0] = t4(2, 3, rs[i][2], rs[i][3], G_NONE);
    c = add(rn[i], ECS_OP_RESIZE_BILINEAR_BWD, 1e-5);
    c->src[0] = t4(2, 3, rs[i][2], rs[i][3], G_RANDN),
    c->dst[0] = t4(2, 3, rs[i][0], rs[i][1], G_NONE);
  }
}

static void softmax_cases(void) {
  for (int log = 0; log < 2; log++) {
    ecs_op_type f = log ? ECS_OP_LOG_SOFTMAX : ECS_OP_SOFTMAX;
    ecs_op_type b = log ? ECS_OP_LOG_SOFTMAX_BWD : ECS_OP_SOFTMAX_BWD;
    ocase *c = add("2x5x4x6 class mask", f, 1e-5);
    c->src[0] = t4(2, 5, 4, 6, G_WIDE), c->src[1] = t2(2, 5, G_CMASK),
    c->dst[0] = t4(2, 5, 4, 6, G_NONE);
    c = add("3x7", f, 1e-5);
    c->src[0] = t2(3, 7, G_WIDE), c->dst[0] = t2(3, 7, G_NONE);
    c = add("2x5x4x6 masked y", b, 1e-5);
    c->src[0] = t4(2, 5, 4, 6, log ? G_LOGP : G_PROB), c->src[1] = t4(2, 5, 4, 6, G_RANDN);
    c->dst[0] = t4(2, 5, 4, 6, G_NONE);
  }
}

static void loss_cases(void) {
  ocase *c = add("4x6", ECS_OP_ML_SOFT_MARGIN, 1e-5);
  c->src[0] = t2(4, 6, G_WIDE), c->src[1] = t2(4, 6, G_BINARY), c->dst[0] = t1(1, G_NONE);
  c = add("4x6", ECS_OP_ML_SOFT_MARGIN_BWD, 1e-5);
  c->src[0] = t2(4, 6, G_WIDE), c->src[1] = t2(4, 6, G_BINARY), c->src[2] = t1(1, G_ONE);
  c->dst[0] = t2(4, 6, G_NONE);
  tdesc labels = {3, {2, 6, 7, 1}, ECS_I32, G_LABELS};
  for (int masked = 0; masked < 2; masked++) {
    c = add(masked ? "2x5x6x7 class mask, count" : "2x5x6x7", ECS_OP_MASKED_CE, 1e-5);
    c->op.p.ce.ignore_index = 255;
    c->src[0] = t4(2, 5, 6, 7, G_WIDE), c->src[1] = labels, c->dst[0] = t1(1, G_NONE);
    if (masked) c->src[2] = t2(2, 5, G_CMASK), c->dst[1] = t1(1, G_NONE);
    c = add(masked ? "2x5x6x7 class mask" : "2x5x6x7", ECS_OP_MASKED_CE_BWD, 1e-5);
    c->op.p.ce.ignore_index = 255;
    c->src[0] = t4(2, 5, 6, 7, G_WIDE), c->src[1] = labels, c->src[3] = t1(1, G_ONE);
    if (masked) c->src[2] = t2(2, 5, G_CMASK);
    c->dst[0] = t4(2, 5, 6, 7, G_NONE);
  }
}

static void cam_cases(void) {
  ocase *c = add("2x3x9x11", ECS_OP_MAXMIN_NORM, 1e-5);
  c->op.p.norm.eps = 1e-5f;
  c->src[0] = t4(2, 3, 9, 11, G_RANDN), c->dst[0] = t4(2, 3, 9, 11, G_NONE);
  c = add("sigma 1.5 k7", ECS_OP_GAUSS_BLUR, 1e-5);
  c->op.p.blur.sigma = 1.5f, c->op.p.blur.ksize = 7;
  c->src[0] = t4(2, 3, 12, 15, G_RANDN), c->dst[0] = t4(2, 3, 12, 15, G_NONE);
  c = add("sigma 4 k13 > image", ECS_OP_GAUSS_BLUR, 1e-5);
  c->op.p.blur.sigma = 4.0f, c->op.p.blur.ksize = 13;
  c->src[0] = t4(1, 2, 10, 9, G_RANDN), c->dst[0] = t4(1, 2, 10, 9, G_NONE);
}

static const ocase *check_cases(size_t *n) {
  g_ncases = 0;
  elementwise_cases();
  conv_cases();
  bn_cases();
  pool_cases();
  shape_cases();
  softmax_cases();
  loss_cases();
  cam_cases();
  *n = g_ncases;
  return g_cases;
}

/* Max pooling through the argmax workspace (I32, y's shape, offsets inside each plane, the
 * same on every backend): the GPU's forward fills it, its backward reads it, and the gradient
 * must be the reference's, which recomputes the argmax from x. */
static int check_pool_workspace(ecs_device *gpu, ecs_device *ref) {
  (void)ref;
  const pool_variant *v = &g_pools[0];
  int64_t oh = ecs_pool_out_size(9, v->k, v->s, v->p, v->ceil);
  int64_t ow = ecs_pool_out_size(10, v->k, v->s, v->p, v->ceil);
  ocase bwd = {.name = "max via argmax workspace", .op = pool_params(v), .tol = 1e-6};
  bwd.op.type = ECS_OP_POOL2D_BWD;
  bwd.src[0] = t4(2, 3, 9, 10, G_RANDN), bwd.src[1] = t4(2, 3, oh, ow, G_RANDN);
  bwd.dst[0] = t4(2, 3, 9, 10, G_NONE);
  void *in[ECS_OP_MAX_SRC] = {0};
  in[0] = malloc(2 * 3 * 9 * 10 * 4), in[1] = malloc((size_t)(2 * 3 * oh * ow * 4));
  fill_host(&bwd.src[0], in[0]);
  fill_host(&bwd.src[1], in[1]);
  run rr;
  char why[600] = "";
  int ok = run_case(ref, &bwd, in, &rr, why, sizeof why) == 0;

  ecs_err err = {0};
  ecs_backend *be = ok ? ecs_backend_init(gpu, NULL, &err) : NULL;
  ecs_tensor x, y, dy, dx, ws;
  ecs_buffer *b[5] = {0};
  float *got = malloc(2 * 3 * 9 * 10 * 4);
  tdesc yd = t4(2, 3, oh, ow, G_NONE), wd = yd;
  wd.type = ECS_I32;
  if (be) {
    ok = !make_tensor(gpu, &bwd.src[0], &x, &b[0], &err) &&
         !make_tensor(gpu, &bwd.src[1], &dy, &b[1], &err) &&
         !make_tensor(gpu, &bwd.dst[0], &dx, &b[2], &err) &&
         !make_tensor(gpu, &yd, &y, &b[3], &err) && !make_tensor(gpu, &wd, &ws, &b[4], &err) &&
         !ecs_tensor_set_bytes(&x, in[0], 0, x.nbytes, &err) &&
         !ecs_tensor_set_bytes(&dy, in[1], 0, dy.nbytes, &err);
    ecs_op f = {.type = ECS_OP_POOL2D, .src = {&x}, .dst = {&y, &ws}, .p = bwd.op.p};
    ecs_op g = {.type = ECS_OP_POOL2D_BWD, .src = {&x, &dy, &ws}, .dst = {&dx}, .p = bwd.op.p};
    ok = ok && !ecs_backend_prepare(be, &f, &err) && !ecs_backend_compute(be, &f, &err) &&
         !ecs_backend_prepare(be, &g, &err) && !ecs_backend_compute(be, &g, &err) &&
         !ecs_backend_synchronize(be, &err) && !ecs_tensor_get_bytes(&dx, got, 0, dx.nbytes, &err);
    if (!ok) snprintf(why, sizeof why, "%s: %s", ecs_device_name(gpu), err.msg);
  }
  double e = ok ? compare(&dx, got, rr.host_dst[0]) : 0;
  ok = ok && e <= bwd.tol;
  if (!ok && !why[0]) snprintf(why, sizeof why, "error above %.0e", bwd.tol);
  printf("%-22s %-34s %10.3e  %s %s\n", "pool2d_bwd", bwd.name, e, ok ? "ok" : "FAIL", why);
  for (int i = 0; i < 5; i++)
    ecs_buffer_free(b[i]);
  ecs_backend_free(be);
  run_free(&rr);
  free(got);
  free(in[0]);
  free(in[1]);
  return ok;
}
