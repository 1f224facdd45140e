/* model.c - the model object: configuration defaults, weights, and the model file.
 *
 * The file is self-describing: the backbone, the classes and every hyper-parameter travel in
 * the safetensors __metadata__, so loading needs nothing but the file (darknet's regret of a
 * weights file that needs a separate config). Loading builds the parameter declarations from
 * the metadata first and then checks every tensor against them, so a file for another
 * backbone or class count fails with the tensor and the file named, before any weight is used. */
#include "model-impl.h"

#include "ecs/hparams.h"
#include "ecs/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_backbones[ECS_BACKBONE_COUNT] = {
    [ECS_BACKBONE_SMALL] = "small",
    [ECS_BACKBONE_RESNET38D] = "resnet38d",
    [ECS_BACKBONE_VGG16D] = "vgg16d",
    [ECS_BACKBONE_EFFICIENTNET_LITE0] = "efficientnet_lite0",
};
static const char *const g_norms[ECS_NORM_COUNT] = {
    [ECS_NORM_IMAGENET] = "imagenet",
    [ECS_NORM_CAFFE_BGR] = "caffe_bgr",
    [ECS_NORM_TF128] = "tf128",
};

const char *ecs_backbone_name(ecs_backbone b) {
  return (unsigned)b < ECS_BACKBONE_COUNT ? g_backbones[b] : "unknown";
}

ecs_status ecs_backbone_parse(const char *name, ecs_backbone *out, ecs_err *err) {
  for (int i = 0; i < ECS_BACKBONE_COUNT; i++)
    if (name && strcmp(name, g_backbones[i]) == 0) {
      *out = (ecs_backbone)i;
      return ECS_OK;
    }
  return ecs_err_set(err, ECS_ERR_INVALID,
                     "unknown backbone '%s' (small, resnet38d, vgg16d, efficientnet_lite0)",
                     name ? name : "(none)");
}

const char *ecs_norm_name(ecs_norm_kind n) {
  return (unsigned)n < ECS_NORM_COUNT ? g_norms[n] : "unknown";
}

void ecs_model_config_default(ecs_model_config *cfg, ecs_backbone b, int n_classes) {
  memset(cfg, 0, sizeof *cfg);
  cfg->backbone = b;
  cfg->norm = b == ECS_BACKBONE_VGG16D               ? ECS_NORM_CAFFE_BGR
              : b == ECS_BACKBONE_EFFICIENTNET_LITE0 ? ECS_NORM_TF128
                                                     : ECS_NORM_IMAGENET;
  cfg->n_classes = n_classes;
  for (int i = 0; i < n_classes && i < ECS_MAX_CLASSES; i++)
    snprintf(cfg->class_names[i], ECS_CLASS_NAME_MAX, "c%d", i + 1);
  cfg->alpha_bg = 0.26f; /* SEAM's value until an evaluation sweep stores a better one */
  cfg->label_threshold = 0.5f;
  cfg->bn_train = b == ECS_BACKBONE_EFFICIENTNET_LITE0; /* a new model has no statistics yet */
  ecs_hparams_default(&cfg->hp);
  if (b == ECS_BACKBONE_SMALL) {
    /* the small network's maps are 16x16 at 128 px: the prototype's {2, 3} x rates */
    cfg->hp.overlay_rates[0] = 2;
    cfg->hp.overlay_rates[1] = 3;
    cfg->hp.overlay_rates[2] = 4;
  }
  snprintf(cfg->provenance, sizeof cfg->provenance, "initialised by ecsnet %s", ecs_version());
}

static ecs_status check_config(const ecs_model_config *cfg, ecs_err *err) {
  if ((unsigned)cfg->backbone >= ECS_BACKBONE_COUNT)
    return ecs_err_set(err, ECS_ERR_INVALID, "unknown backbone %d", (int)cfg->backbone);
  if (cfg->n_classes < 1 || cfg->n_classes > ECS_MAX_CLASSES - 1)
    return ecs_err_set(err, ECS_ERR_INVALID, "class count %d outside 1..%d", cfg->n_classes,
                       ECS_MAX_CLASSES - 1);
  for (int i = 0; i < cfg->n_classes; i++) {
    if (!cfg->class_names[i][0])
      return ecs_err_set(err, ECS_ERR_INVALID, "class %d has no name", i + 1);
    for (int j = 0; j < i; j++)
      if (strcmp(cfg->class_names[i], cfg->class_names[j]) == 0)
        return ecs_err_set(err, ECS_ERR_INVALID, "class name '%s' appears twice",
                           cfg->class_names[i]);
  }
  return ecs_hparams_check(&cfg->hp, err);
}

/* ---- initialisation ------------------------------------------------------------------ */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rng_unif(uint64_t *s) {
  return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
/* Box-Muller, both outputs used: initialising resnet38d's 104 M weights stays quick. */
static void rng_normals(uint64_t *s, float *out, int64_t n, double sd) {
  for (int64_t j = 0; j < n; j += 2) {
    float u = (float)rng_unif(s), v = (float)rng_unif(s);
    float r = sqrtf(-2.0f * logf(u)) * (float)sd, a = 6.2831853f * v;
    out[j] = r * cosf(a);
    if (j + 1 < n) out[j + 1] = r * sinf(a);
  }
}

static int ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && strcmp(s + n - k, suf) == 0;
}

static ecs_status init_weights(ecs_model *m, uint64_t seed, ecs_err *err) {
  uint64_t s = seed ^ 0x5EEDull;
  for (size_t i = 0; i < ecs_params_count(m->ps); i++) {
    ecs_tensor *t = ecs_params_at(m->ps, i);
    int64_t n = ecs_nelements(t);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory initialising %s", t->name);
    if (t->nd == 4) {
      int64_t fan_in = t->ne[1] * t->ne[2] * t->ne[3], fan_out = t->ne[0] * t->ne[2] * t->ne[3];
      if (strncmp(t->name, "fc8", 3) == 0) { /* Xavier uniform, as SEAM's classifier */
        double a = sqrt(6.0 / (double)(fan_in + fan_out));
        for (int64_t j = 0; j < n; j++)
          v[j] = (float)((2 * rng_unif(&s) - 1) * a);
      } else { /* He normal for convolutions followed by ReLU */
        rng_normals(&s, v, n, sqrt(2.0 / (double)fan_in));
      }
    } else {
      float c = ends_with(t->name, ".running_var") || (ends_with(t->name, ".weight") && t->nd == 1)
                    ? 1.0f
                    : 0.0f;
      for (int64_t j = 0; j < n; j++)
        v[j] = c;
    }
    ecs_status st = ecs_tensor_set_bytes(t, v, 0, (size_t)n * sizeof *v, err);
    free(v);
    if (st != ECS_OK) return st;
  }
  return ECS_OK;
}

static ecs_model *model_alloc(const ecs_model_config *cfg, ecs_buffer_type *buft, ecs_err *err) {
  if (check_config(cfg, err) != ECS_OK) return NULL;
  ecs_model *m = calloc(1, sizeof *m);
  if (!m) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  m->cfg = *cfg;
  m->ps = ecs_params_new(err);
  if (!m->ps || ecs_model_declare(m, err) != ECS_OK ||
      ecs_params_alloc(m->ps, buft ? buft : ecs_device_buffer_type(ecs_device_find("cpu", NULL)),
                       err) != ECS_OK) {
    ecs_model_free(m);
    return NULL;
  }
  return m;
}

ecs_model *ecs_model_new(const ecs_model_config *cfg, ecs_buffer_type *buft, uint64_t seed,
                         ecs_err *err) {
  ecs_model *m = model_alloc(cfg, buft, err);
  if (m && init_weights(m, seed, err) != ECS_OK) {
    ecs_model_free(m);
    return NULL;
  }
  return m;
}

void ecs_model_free(ecs_model *m) {
  if (!m) return;
  ecs_params_free(m->folded);
  ecs_params_free(m->ps);
  free(m);
}

/* ---- batch norm folded into the convolution before it (inference only) --------------------- */

static ecs_tensor *param2(const ecs_params *ps, const char *prefix, const char *suffix) {
  char n[128];
  snprintf(n, sizeof n, "%s.%s", prefix, suffix);
  return ecs_params_find(ps, n);
}

static ecs_status fold_declare(ecs_model *m, const char *conv, const char *bn, void *ud,
                               ecs_err *err) {
  (void)bn, (void)ud;
  ecs_tensor *w = param2(m->ps, conv, "weight");
  if (!w) return ecs_err_set(err, ECS_ERR_INVALID, "fold: no tensor %s.weight", conv);
  char n[128];
  int64_t bne[4] = {w->ne[0], 1, 1, 1};
  snprintf(n, sizeof n, "%s.weight", conv);
  if (!ecs_params_add(m->folded, n, ECS_F32, 4, w->ne, 0, err))
    return err ? err->status : ECS_ERR_INVALID;
  snprintf(n, sizeof n, "%s.bias", conv);
  if (!ecs_params_add(m->folded, n, ECS_F32, 1, bne, 0, err))
    return err ? err->status : ECS_ERR_INVALID;
  return ECS_OK;
}

static ecs_status fold_compute(ecs_model *m, const char *conv, const char *bn, void *ud,
                               ecs_err *err) {
  (void)ud;
  ecs_tensor *w = param2(m->ps, conv, "weight"), *cb = param2(m->ps, conv, "bias");
  ecs_tensor *g = param2(m->ps, bn, "weight"), *be = param2(m->ps, bn, "bias");
  ecs_tensor *mu = param2(m->ps, bn, "running_mean"), *var = param2(m->ps, bn, "running_var");
  ecs_tensor *fw = param2(m->folded, conv, "weight"), *fb = param2(m->folded, conv, "bias");
  if (!w || !g || !be || !mu || !var || !fw || !fb)
    return ecs_err_set(err, ECS_ERR_INVALID, "fold: %s or %s is incomplete", conv, bn);
  int64_t o = w->ne[0], per = w->ne[1] * w->ne[2] * w->ne[3];
  float *wv = malloc(sizeof(float) * (size_t)(o * per)), *v = malloc(sizeof(float) * 6 * (size_t)o);
  ecs_status st = (wv && v) ? ECS_OK : ecs_err_set(err, ECS_ERR_NOMEM, "fold: out of memory");
  float *gv = v, *bv = v + o, *mv = v + 2 * o, *vv = v + 3 * o, *cv = v + 4 * o, *ob = v + 5 * o;
  size_t wb = sizeof(float) * (size_t)(o * per), cbytes = sizeof(float) * (size_t)o;
  if (st == ECS_OK) st = ecs_tensor_get_bytes(w, wv, 0, wb, err);
  if (st == ECS_OK) st = ecs_tensor_get_bytes(g, gv, 0, cbytes, err);
  if (st == ECS_OK) st = ecs_tensor_get_bytes(be, bv, 0, cbytes, err);
  if (st == ECS_OK) st = ecs_tensor_get_bytes(mu, mv, 0, cbytes, err);
  if (st == ECS_OK) st = ecs_tensor_get_bytes(var, vv, 0, cbytes, err);
  if (st == ECS_OK && cb) st = ecs_tensor_get_bytes(cb, cv, 0, cbytes, err);
  if (st == ECS_OK) {
    for (int64_t k = 0; k < o; k++) {
      /* the batch norm op's own arithmetic: (x - mean) / sqrt(var + eps) * g + beta */
      double sc = gv[k] / sqrt((double)vv[k] + (double)ecs_model_bn_eps(m));
      for (int64_t j = 0; j < per; j++)
        wv[k * per + j] = (float)(wv[k * per + j] * sc);
      ob[k] = (float)(bv[k] + ((cb ? cv[k] : 0.0) - mv[k]) * sc);
    }
    st = ecs_tensor_set_bytes(fw, wv, 0, wb, err);
  }
  if (st == ECS_OK) st = ecs_tensor_set_bytes(fb, ob, 0, cbytes, err);
  free(wv), free(v);
  return st;
}

/* Marks every parameter of ps fixed (ecs_tensor.fixed): the inference model's weights are final,
 * so backends keep their reordered copies of the trainable ones too (the classifier). */
static void mark_fixed(ecs_params *ps) {
  for (size_t i = 0; ps && i < ecs_params_count(ps); i++)
    ecs_params_at(ps, i)->fixed = 1;
}

ecs_status ecs_model_fold_bn(ecs_model *m, ecs_err *err) {
  ecs_params_free(m->folded);
  m->folded = NULL;
  ecs_params *f = ecs_params_new(err);
  if (!f) return err ? err->status : ECS_ERR_NOMEM;
  m->folded = f;
  ecs_status st = ecs_model_fold_pairs(m, fold_declare, NULL, err);
  if (st == ECS_OK && ecs_params_count(f) == 0) { /* nothing to fold (vgg16d) */
    ecs_params_free(f);
    m->folded = NULL;
    mark_fixed(m->ps);
    return ECS_OK;
  }
  if (st == ECS_OK) st = ecs_params_alloc(f, ecs_params_buffer_type(m->ps), err);
  if (st == ECS_OK) st = ecs_model_fold_pairs(m, fold_compute, NULL, err);
  if (st != ECS_OK) {
    ecs_params_free(m->folded);
    m->folded = NULL;
    return st;
  }
  mark_fixed(m->ps);
  mark_fixed(f);
  return ECS_OK;
}

int ecs_model_is_folded(const ecs_model *m) {
  return m->folded != NULL;
}

ecs_params *ecs_model_params(ecs_model *m) {
  return m->ps;
}
const ecs_model_config *ecs_model_get_config(const ecs_model *m) {
  return &m->cfg;
}
ecs_model_config *ecs_model_config_mut(ecs_model *m) {
  return &m->cfg;
}
int ecs_model_channels(const ecs_model *m) {
  return 1 + m->cfg.n_classes;
}

int ecs_model_class_id(const ecs_model *m, const char *name) {
  for (int i = 0; i < m->cfg.n_classes; i++)
    if (strcmp(m->cfg.class_names[i], name) == 0) return i + 1;
  return 0;
}

const char *ecs_model_label_name(const ecs_model *m, int id) {
  int K = m->cfg.n_classes;
  if (id >= 1 && id <= K) return m->cfg.class_names[id - 1];
  if (id > K && id <= K + m->cfg.n_groups) return m->cfg.group_names[id - K - 1];
  return NULL;
}

int ecs_model_groups_parse(ecs_model_config *cfg, const char *s) {
  int g = 0, n = 0;
  cfg->n_groups = 0;
  cfg->group_start[0] = 0;
  while (*s) {
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : 0;
    if (!colon || len == 0 || len >= ECS_CLASS_NAME_MAX || g >= ECS_MAX_GROUPS) return -1;
    memcpy(cfg->group_names[g], s, len);
    cfg->group_names[g][len] = 0;
    s = colon + 1;
    while (*s && *s != ';') {
      char *end;
      long id = strtol(s, &end, 10);
      if (end == s || id < 1 || id > cfg->n_classes || n >= ECS_MAX_GROUP_MEMBERS) return -1;
      cfg->group_member[n++] = (uint16_t)id;
      s = end + (*end == ',');
    }
    if (n == cfg->group_start[g]) return -1; /* a group without members */
    cfg->group_start[++g] = (uint16_t)n;
    s += *s == ';';
  }
  cfg->n_groups = g;
  return g;
}

/* The groups as the metadata text ecs_model_groups_parse reads; malloc'd. */
static char *groups_text(const ecs_model_config *cfg) {
  size_t cap = (size_t)cfg->n_groups * (ECS_CLASS_NAME_MAX + 2) + ECS_MAX_GROUP_MEMBERS * 6 + 1;
  char *t = malloc(cap);
  size_t pos = 0;
  if (!t) return NULL;
  t[0] = 0;
  for (int g = 0; g < cfg->n_groups; g++) {
    pos += (size_t)snprintf(t + pos, cap - pos, "%s%s:", g ? ";" : "", cfg->group_names[g]);
    for (int i = cfg->group_start[g]; i < cfg->group_start[g + 1]; i++)
      pos += (size_t)snprintf(t + pos, cap - pos, "%s%d", i > cfg->group_start[g] ? "," : "",
                              cfg->group_member[i]);
  }
  return t;
}

void ecs_model_normalise(const ecs_model *m, const uint8_t *rgb, int h, int w, float *out) {
  static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  static const float bgr_mean[3] = {104.008f, 116.669f, 122.675f};
  size_t hw = (size_t)h * w;
  for (int c = 0; c < 3; c++)
    for (size_t p = 0; p < hw; p++) {
      if (m->cfg.norm == ECS_NORM_CAFFE_BGR) /* plane c holds B, G, R */
        out[c * hw + p] = (float)rgb[p * 3 + (2 - c)] - bgr_mean[c];
      else if (m->cfg.norm == ECS_NORM_TF128)
        out[c * hw + p] = ((float)rgb[p * 3 + c] - 127.0f) / 128.0f;
      else
        out[c * hw + p] = ((float)rgb[p * 3 + c] / 255.0f - mean[c]) / std[c];
    }
}

void ecs_norm_zero_rgb(ecs_norm_kind n, uint8_t rgb[3]) {
  /* the means above, rounded to bytes: imagenet's (0.485, 0.456, 0.406) * 255, caffe's BGR
   * mean as RGB, tf128's 127 */
  static const uint8_t zero[ECS_NORM_COUNT][3] = {
      [ECS_NORM_IMAGENET] = {124, 116, 104},
      [ECS_NORM_CAFFE_BGR] = {123, 117, 104},
      [ECS_NORM_TF128] = {127, 127, 127},
  };
  memcpy(rgb, zero[(unsigned)n < ECS_NORM_COUNT ? n : 0], 3);
}

/* ---- the model file ------------------------------------------------------------------- */
static void json_str(char *dst, size_t n, size_t *pos, const char *s) {
  if (*pos < n) *pos += (size_t)snprintf(dst + *pos, n - *pos, "\"");
  for (; *s && *pos + 8 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      *pos += (size_t)snprintf(dst + *pos, n - *pos, "\\%c", c);
    else if (c < 0x20)
      *pos += (size_t)snprintf(dst + *pos, n - *pos, "\\u%04x", c);
    else
      dst[(*pos)++] = (char)c;
  }
  if (*pos < n) *pos += (size_t)snprintf(dst + *pos, n - *pos, "\"");
}

/* One metadata key per model value of the table (ecs/hparams.h), typed by the table's text. */
static ecs_status hparams_to_writer(const ecs_hparams *hp, struct ecs_st_writer *w, ecs_err *err) {
  size_t n;
  const ecs_hparam *tab = ecs_hparam_table(&n);
  ecs_status st = ECS_OK;
  for (size_t i = 0; st == ECS_OK && i < n; i++) {
    if (tab[i].scope != ECS_HP_MODEL) continue;
    char key[96], text[64];
    snprintf(key, sizeof key, ECS_HPARAM_META_PREFIX "%s", tab[i].name);
    ecs_hparam_format(&tab[i], ecs_hparam_cptr(&tab[i], hp, NULL), text, sizeof text);
    st = ecs_st_writer_meta(w, key, text, err);
  }
  return st;
}

ecs_status ecs_model_add_to_writer(const ecs_model *m, struct ecs_st_writer *w, ecs_err *err) {
  ecs_status st = ECS_OK;
  void *tmp = NULL;
  for (size_t i = 0; st == ECS_OK && i < ecs_params_count(m->ps); i++) {
    ecs_tensor *t = ecs_params_at(m->ps, i);
    size_t nb = ecs_plain_nbytes(t);
    void *p = realloc(tmp, nb ? nb : 1);
    if (!p) {
      st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory saving %s", t->name);
      break;
    }
    tmp = p;
    st = ecs_tensor_get_bytes(t, tmp, 0, nb, err);
    if (st == ECS_OK) st = ecs_st_writer_add(w, t->name, t->type, t->nd, t->ne, tmp, err);
  }
  free(tmp);
  size_t cap = (size_t)m->cfg.n_classes * (ECS_CLASS_NAME_MAX * 6 + 4) + 8, pos = 0;
  char *classes = malloc(cap), num[64];
  if (!classes && st == ECS_OK) st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  if (st == ECS_OK) {
    classes[pos++] = '[';
    for (int i = 0; i < m->cfg.n_classes; i++) {
      if (i) classes[pos++] = ',';
      json_str(classes, cap, &pos, m->cfg.class_names[i]);
    }
    classes[pos++] = ']';
    classes[pos] = 0;
    const char *kv[][2] = {
        {"format", "ecsnet-model/2"},
        {"backbone", ecs_backbone_name(m->cfg.backbone)},
        {"normalisation", ecs_norm_name(m->cfg.norm)},
        {"classes", classes},
        {"bg_channel_added", m->cfg.bg_channel_added ? "1" : "0"},
        {"provenance", m->cfg.provenance},
    };
    for (size_t i = 0; st == ECS_OK && i < sizeof kv / sizeof kv[0]; i++)
      st = ecs_st_writer_meta(w, kv[i][0], kv[i][1], err);
    if (st == ECS_OK) st = hparams_to_writer(&m->cfg.hp, w, err);
    snprintf(num, sizeof num, "%.9g", m->cfg.alpha_bg);
    if (st == ECS_OK) st = ecs_st_writer_meta(w, "alpha_bg", num, err);
    snprintf(num, sizeof num, "%.9g", m->cfg.label_threshold);
    if (st == ECS_OK) st = ecs_st_writer_meta(w, "label_threshold", num, err);
    const char *sk = m->cfg.scores == ECS_SCORES_SOFTMAX ? "softmax" : "sigmoid";
    if (st == ECS_OK) st = ecs_st_writer_meta(w, "scores", sk, err);
    if (st == ECS_OK && m->cfg.refine) st = ecs_st_writer_meta(w, "refine", "1", err);
    if (st == ECS_OK && m->cfg.bn_train) st = ecs_st_writer_meta(w, "bn_train", "1", err);
    char *gt = m->cfg.n_groups > 0 ? groups_text(&m->cfg) : NULL;
    if (st == ECS_OK && m->cfg.n_groups > 0)
      st = gt ? ecs_st_writer_meta(w, "groups", gt, err)
              : ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    free(gt);
  }
  free(classes);
  return st;
}

ecs_status ecs_model_save(const ecs_model *m, const char *path, ecs_err *err) {
  ecs_st_writer *w = ecs_st_writer_new(err);
  if (!w) return err ? err->status : ECS_ERR_NOMEM;
  ecs_status st = ecs_model_add_to_writer(m, w, err);
  if (st == ECS_OK) st = ecs_st_writer_save(w, path, err);
  ecs_st_writer_free(w);
  return st;
}

/* Parses a JSON list of strings into the class names; returns the count or -1. */
static int parse_classes(const char *s, ecs_model_config *cfg) {
  int n = 0;
  while (*s == ' ')
    s++;
  if (*s++ != '[') return -1;
  for (;;) {
    while (*s == ' ' || *s == ',')
      s++;
    if (*s == ']') return s[1] == 0 ? n : -1;
    if (*s++ != '"' || n >= ECS_MAX_CLASSES - 1) return -1;
    size_t k = 0;
    while (*s && *s != '"') {
      char c = *s++;
      if (c == '\\') {
        c = *s++;
        if (c == 'u') {
          unsigned v;
          if (sscanf(s, "%4x", &v) != 1 || v > 0x7f) return -1;
          c = (char)v;
          s += 4;
        } else if (c == 'n')
          c = '\n';
        else if (c == 't')
          c = '\t';
        else if (c != '"' && c != '\\' && c != '/')
          return -1;
      }
      if (k + 1 >= ECS_CLASS_NAME_MAX) return -1;
      cfg->class_names[n][k++] = c;
    }
    if (*s++ != '"') return -1;
    cfg->class_names[n][k] = 0;
    n++;
  }
}

/* The text of one value of the "hparams" JSON object that files before one key per value held
 * ({"beta":0,...,"overlay_rates":[8,12,16,0],...}): a number, or a list of rates as "8,12,16".
 * Returns 0 when the key is absent or unreadable. */
static int legacy_value(const char *obj, const ecs_hparam *p, char *out, size_t n) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", p->name);
  const char *v = strstr(obj, pat);
  if (!v) return 0;
  v += strlen(pat);
  size_t len = 0;
  if (p->kind == ECS_HP_RATES) {
    if (*v++ != '[') return 0;
    int r[ECS_MAX_RATES] = {0};
    for (int k = 0; k < ECS_MAX_RATES && *v != ']'; k++) {
      char *end;
      r[k] = (int)strtol(v, &end, 10);
      if (end == v) return 0;
      v = end + (*end == ',');
    }
    ecs_hparam_format(p, r, out, n);
    return 1;
  }
  while (v[len] && v[len] != ',' && v[len] != '}' && len + 1 < n)
    len++;
  snprintf(out, n, "%.*s", (int)len, v);
  char *end;
  double x = strtod(out, &end);
  if (end == out) return 0;
  /* the old files wrote any value at or below an auto default (beta <= 0) as meaning auto */
  if (p->auto_doc && x <= strtod(p->dflt, NULL)) snprintf(out, n, "%s", p->dflt);
  return 1;
}

/* The hyper-parameters of a model file: the old single JSON string where there is one, then
 * one key per value (ecs/hparams.h), each checked by its row of the table. */
static ecs_status read_hparams(const ecs_st_file *f, const char *path, ecs_hparams *hp,
                               ecs_err *err) {
  size_t n;
  const ecs_hparam *tab = ecs_hparam_table(&n);
  const char *legacy = ecs_st_meta(f, "hparams");
  for (size_t i = 0; i < n; i++) {
    const ecs_hparam *p = &tab[i];
    if (p->scope != ECS_HP_MODEL) continue;
    char key[96], text[64];
    const char *v = NULL;
    snprintf(key, sizeof key, ECS_HPARAM_META_PREFIX "%s", p->name);
    if ((v = ecs_st_meta(f, key)) == NULL && legacy && legacy_value(legacy, p, text, sizeof text))
      v = text;
    ecs_err e = {0};
    if (v && ecs_hparam_set(p, ecs_hparam_ptr(p, hp, NULL), v, 1, &e) != ECS_OK)
      return ecs_err_set(err, ECS_ERR_FORMAT, "%s: metadata %s: %s", path,
                         v == text ? "hparams" : key, e.msg);
  }
  return ECS_OK;
}

static ecs_model *load_from(const ecs_st_file *f, const char *path, ecs_buffer_type *buft,
                            ecs_err *err) {
  const char *bb = ecs_st_meta(f, "backbone"), *cl = ecs_st_meta(f, "classes");
  ecs_backbone b;
  if (!bb || !cl) {
    ecs_err_set(err, ECS_ERR_FORMAT,
                "%s: not an ecsnet model file (no backbone or classes in "
                "its metadata; convert PyTorch checkpoints with convert_pytorch.py)",
                path);
    return NULL;
  }
  if (ecs_backbone_parse(bb, &b, err) != ECS_OK) {
    ecs_err_set(err, ECS_ERR_FORMAT, "%s: unknown backbone '%s'", path, bb);
    return NULL;
  }
  ecs_model_config *cfg = malloc(sizeof *cfg);
  if (!cfg) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  ecs_model_config_default(cfg, b, 1);
  int n = parse_classes(cl, cfg);
  if (n < 1) {
    ecs_err_set(err, ECS_ERR_FORMAT, "%s: metadata 'classes' is not a JSON list of 1..%d names",
                path, ECS_MAX_CLASSES - 1);
    free(cfg);
    return NULL;
  }
  cfg->n_classes = n;
  const char *v;
  if ((v = ecs_st_meta(f, "normalisation"))) {
    int k = 0;
    while (k < ECS_NORM_COUNT && strcmp(v, ecs_norm_name((ecs_norm_kind)k)) != 0)
      k++;
    cfg->norm = (ecs_norm_kind)k;
    if (k == ECS_NORM_COUNT) {
      ecs_err_set(err, ECS_ERR_FORMAT, "%s: unknown normalisation '%s'", path, v);
      free(cfg);
      return NULL;
    }
  }
  if ((v = ecs_st_meta(f, "alpha_bg"))) cfg->alpha_bg = strtof(v, NULL);
  if ((v = ecs_st_meta(f, "label_threshold"))) cfg->label_threshold = strtof(v, NULL);
  if (read_hparams(f, path, &cfg->hp, err) != ECS_OK) {
    free(cfg);
    return NULL;
  }
  if ((v = ecs_st_meta(f, "bg_channel_added"))) cfg->bg_channel_added = atoi(v);
  if ((v = ecs_st_meta(f, "scores")) && strcmp(v, "sigmoid") != 0) {
    if (strcmp(v, "softmax") != 0) {
      ecs_err_set(err, ECS_ERR_FORMAT, "%s: metadata scores '%s' (sigmoid, softmax)", path, v);
      free(cfg);
      return NULL;
    }
    cfg->scores = ECS_SCORES_SOFTMAX;
  }
  if ((v = ecs_st_meta(f, "refine"))) cfg->refine = atoi(v) > 0;
  /* a file without the key has its statistics (the converted ImageNet model): frozen */
  cfg->bn_train = (v = ecs_st_meta(f, "bn_train")) && atoi(v) > 0;
  if ((v = ecs_st_meta(f, "groups")) && ecs_model_groups_parse(cfg, v) < 0) {
    ecs_err_set(err, ECS_ERR_FORMAT,
                "%s: metadata groups is not \"name:id,id,...;...\" with ids 1..%d (at most %d "
                "groups)",
                path, cfg->n_classes, ECS_MAX_GROUPS);
    free(cfg);
    return NULL;
  }
  if ((v = ecs_st_meta(f, "provenance")))
    snprintf(cfg->provenance, sizeof cfg->provenance, "%s", v);

  ecs_err e = {0};
  ecs_model *m = model_alloc(cfg, buft, &e);
  free(cfg);
  if (!m) {
    ecs_err_set(err, e.status, "%s: %s", path, e.msg);
    return NULL;
  }
  char unused[512] = "";
  if (ecs_params_load(m->ps, f, NULL, 0, &e) != ECS_OK) {
    ecs_err_set(err, e.status == ECS_OK ? ECS_ERR_FORMAT : e.status, "%s: %s", path, e.msg);
    ecs_model_free(m);
    return NULL;
  }
  /* a training checkpoint is a model file plus optimiser state: only those extras are allowed */
  for (size_t i = 0; i < ecs_st_count(f) && !unused[0]; i++) {
    const char *name = ecs_st_at(f, i)->name;
    if (!ecs_params_find(m->ps, name) && strncmp(name, "optim.", 6) != 0)
      snprintf(unused, sizeof unused, "%s", name);
  }
  if (unused[0]) {
    ecs_err_set(err, ECS_ERR_FORMAT, "%s: tensors that a %s model does not have: %s", path, bb,
                unused);
    ecs_model_free(m);
    return NULL;
  }
  return m;
}

ecs_model *ecs_model_load(const char *path, ecs_buffer_type *buft, ecs_err *err) {
  ecs_err e = {0};
  ecs_st_file *f = ecs_st_open(path, &e);
  if (!f) {
    /* the reader's message may not name the file */
    if (strstr(e.msg, path))
      ecs_err_set(err, e.status, "%s", e.msg);
    else
      ecs_err_set(err, e.status, "%s: %s", path, e.msg);
    return NULL;
  }
  ecs_model *m = load_from(f, path, buft, err);
  ecs_st_close(f);
  return m;
}
