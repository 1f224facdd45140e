/* loader.c - batches of augmented, normalised images, decoded on a thread ahead of compute.
 *
 * One producer thread fills a ring of slots in batch order; the consumer takes them in the
 * same order. A batch's content depends only on (seed, batch index) (see ecs/train.h), so the
 * thread only moves decoding off the compute path and never changes what is trained on. */
#include "ecs/train.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH 3

typedef struct slot {
  ecs_batch b;
  int64_t index; /* batch held, -1 when free */
  ecs_status status;
  ecs_err err;
} slot;

struct ecs_loader {
  ecs_dataset *ds;
  const ecs_model *m;
  const char *const *ids;
  size_t n_ids;
  int batch, K;
  ecs_aug_opts aug;
  uint64_t seed;
  size_t max_pixels;
  int64_t bpe;
  uint32_t *perm;
  int perm_epoch;

  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  int64_t produce_next, consume_next;
  slot slots[DEPTH];
  int held; /* slot the consumer holds, -1 none */
};

static uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double unif(uint64_t *s) {
  return (double)((*s = mix(*s)) >> 11) * (1.0 / 9007199254740992.0);
}

static void make_perm(ecs_loader *l, int epoch) {
  uint64_t s = mix(l->seed ^ mix((uint64_t)epoch + 1));
  for (size_t i = 0; i < l->n_ids; i++)
    l->perm[i] = (uint32_t)i;
  for (size_t i = l->n_ids; i > 1; i--) {
    size_t j = (size_t)(unif(&s) * (double)i);
    if (j >= i) j = i - 1;
    uint32_t t = l->perm[i - 1];
    l->perm[i - 1] = l->perm[j];
    l->perm[j] = t;
  }
  l->perm_epoch = epoch;
}

static uint8_t clamp8(float v) {
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
}

/* torchvision's ColorJitter in a fixed order: brightness, contrast, saturation, hue */
static void jitter(uint8_t *p, size_t n, const ecs_aug_opts *a, uint64_t *s) {
  float b = a->brightness > 0 ? 1 + a->brightness * (float)(2 * unif(s) - 1) : 1;
  float c = a->contrast > 0 ? 1 + a->contrast * (float)(2 * unif(s) - 1) : 1;
  float sat = a->saturation > 0 ? 1 + a->saturation * (float)(2 * unif(s) - 1) : 1;
  float hue = a->hue > 0 ? a->hue * (float)(2 * unif(s) - 1) : 0;
  if (b == 1 && c == 1 && sat == 1 && hue == 0) return;
  double mean = 0;
  for (size_t i = 0; i < n; i++)
    mean += b * (0.299f * p[3 * i] + 0.587f * p[3 * i + 1] + 0.114f * p[3 * i + 2]);
  mean /= (double)(n ? n : 1);
  /* hue as a rotation about the grey axis (Rodrigues), cheaper than HSV and smooth */
  float th = hue * 6.2831853f, cs = cosf(th), sn = sinf(th), k = (1 - cs) / 3, r3 = sn / sqrtf(3);
  float M[3][3] = {{cs + k, k - r3, k + r3}, {k + r3, cs + k, k - r3}, {k - r3, k + r3, cs + k}};
  for (size_t i = 0; i < n; i++) {
    float v[3];
    for (int ch = 0; ch < 3; ch++)
      v[ch] = p[3 * i + ch] * b;
    for (int ch = 0; ch < 3; ch++)
      v[ch] = (v[ch] - (float)mean) * c + (float)mean;
    float g = 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2];
    for (int ch = 0; ch < 3; ch++)
      v[ch] = (v[ch] - g) * sat + g;
    for (int ch = 0; ch < 3; ch++)
      p[3 * i + ch] = clamp8(M[ch][0] * v[0] + M[ch][1] * v[1] + M[ch][2] * v[2]);
  }
}

/* One sample into images/labels at position j of the batch. */
static ecs_status load_sample(ecs_loader *l, const char *id, uint64_t s, float *img, float *lab,
                              ecs_err *err) {
  const uint8_t *labels;
  ecs_status st = ecs_dataset_labels(l->ds, id, &labels, err);
  if (st != ECS_OK) return st;
  /* an image without objects is kept: it still trains the classifier's negatives */
  for (int k = 0; k < l->K; k++)
    lab[k] = labels[k] ? 1.0f : 0.0f;
  ecs_image *im = NULL, *tmp;
  if ((st = ecs_dataset_image(l->ds, id, l->max_pixels, &im, err)) != ECS_OK) return st;
  const ecs_aug_opts *a = &l->aug;
  if (a->resize_max > 0) {
    int lo = a->resize_min > 0 ? a->resize_min : a->resize_max;
    int target = lo + (int)(unif(&s) * (double)(a->resize_max - lo + 1));
    if (target > a->resize_max) target = a->resize_max;
    int side = im->width > im->height ? im->width : im->height;
    int nw = (int)lround((double)im->width * target / side),
        nh = (int)lround((double)im->height * target / side);
    tmp = ecs_image_resize(im, nw < 1 ? 1 : nw, nh < 1 ? 1 : nh, err);
    ecs_image_free(im);
    if (!(im = tmp)) return err ? err->status : ECS_ERR_NOMEM;
  }
  if (a->flip && unif(&s) < 0.5) ecs_image_flip_h(im);
  jitter(im->data, (size_t)im->width * im->height, a, &s);
  int W = im->width, H = im->height, C = a->crop;
  float *full = malloc(sizeof(float) * 3 * (size_t)W * H);
  if (!full) {
    ecs_image_free(im);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  ecs_model_normalise(l->m, im->data, H, W, full);
  ecs_image_free(im);
  /* random crop; an image smaller than the crop sits at a random place in zero (mean) padding */
  int ox = W > C ? (int)(unif(&s) * (W - C + 1)) : -(int)(unif(&s) * (C - W + 1));
  int oy = H > C ? (int)(unif(&s) * (H - C + 1)) : -(int)(unif(&s) * (C - H + 1));
  if (ox > W - C && W > C) ox = W - C;
  if (oy > H - C && H > C) oy = H - C;
  memset(img, 0, sizeof(float) * 3 * (size_t)C * C);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < C; y++) {
      int sy = y + oy;
      if (sy < 0 || sy >= H) continue;
      for (int x = 0; x < C; x++) {
        int sx = x + ox;
        if (sx >= 0 && sx < W)
          img[((size_t)c * C + y) * C + x] = full[((size_t)c * H + sy) * W + sx];
      }
    }
  free(full);
  return ECS_OK;
}

static void fill(ecs_loader *l, slot *sl, int64_t index) {
  int epoch = (int)(index / l->bpe);
  int64_t pos = index % l->bpe;
  if (l->perm_epoch != epoch) make_perm(l, epoch);
  sl->b.index = index;
  sl->b.epoch = epoch;
  sl->status = ECS_OK;
  ecs_err_clear(&sl->err);
  size_t per = 3 * (size_t)l->aug.crop * l->aug.crop;
  for (int j = 0; j < l->batch && sl->status == ECS_OK; j++) {
    size_t i = (size_t)((pos * l->batch + j) % (int64_t)l->n_ids);
    uint64_t s = mix(l->seed ^ mix(((uint64_t)epoch << 32) ^ (uint64_t)(pos * l->batch + j)));
    sl->status = load_sample(l, l->ids[l->perm[i]], s, sl->b.images + per * j,
                             sl->b.labels + (size_t)l->K * j, &sl->err);
  }
}

static void *producer(void *arg) {
  ecs_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    slot *sl = &l->slots[l->produce_next % DEPTH];
    while (!l->stop && sl->index >= 0)
      pthread_cond_wait(&l->cv, &l->mu);
    if (l->stop) break;
    int64_t idx = l->produce_next++;
    pthread_mutex_unlock(&l->mu);
    fill(l, sl, idx); /* the slot is ours: the consumer only reads ready slots */
    pthread_mutex_lock(&l->mu);
    sl->index = idx;
    pthread_cond_broadcast(&l->cv);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

ecs_loader *ecs_loader_new(ecs_dataset *ds, const ecs_model *m, const char *split, int batch,
                           const ecs_aug_opts *aug, uint64_t seed, int64_t start, size_t max_pixels,
                           ecs_err *err) {
  const ecs_model_config *cfg = ecs_model_get_config(m);
  if (batch < 1 || !aug || aug->crop < 8 || aug->crop > 4096 || start < 0) {
    ecs_err_set(err, ECS_ERR_INVALID, "loader: batch >= 1 and a crop of 8..4096 px are needed");
    return NULL;
  }
  if (ecs_dataset_n_classes(ds) != cfg->n_classes) {
    ecs_err_set(err, ECS_ERR_INVALID, "%s: the dataset has %d classes, the model %d",
                ecs_dataset_dir(ds), ecs_dataset_n_classes(ds), cfg->n_classes);
    return NULL;
  }
  for (int k = 1; k <= cfg->n_classes; k++)
    if (strcmp(ecs_dataset_class_name(ds, k), cfg->class_names[k - 1]) != 0) {
      ecs_err_set(err, ECS_ERR_INVALID, "%s: class %d is '%s' in the dataset but '%s' in the model",
                  ecs_dataset_dir(ds), k, ecs_dataset_class_name(ds, k), cfg->class_names[k - 1]);
      return NULL;
    }
  ecs_loader *l = calloc(1, sizeof *l);
  if (!l) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  l->ds = ds;
  l->m = m;
  l->batch = batch;
  l->K = cfg->n_classes;
  l->aug = *aug;
  l->seed = seed;
  l->max_pixels = max_pixels;
  l->held = -1;
  l->perm_epoch = -1;
  if (ecs_dataset_split(ds, split ? split : "train", &l->ids, &l->n_ids, err) != ECS_OK) {
    free(l);
    return NULL;
  }
  if (l->n_ids == 0) {
    ecs_err_set(err, ECS_ERR_INVALID, "%s: split '%s' lists no images", ecs_dataset_dir(ds),
                split ? split : "train");
    free(l);
    return NULL;
  }
  l->bpe = (int64_t)l->n_ids / batch;
  if (l->bpe < 1) l->bpe = 1;
  l->perm = malloc(sizeof *l->perm * l->n_ids);
  size_t per = 3 * (size_t)aug->crop * aug->crop;
  int ok = l->perm != NULL;
  for (int i = 0; i < DEPTH; i++) {
    slot *s = &l->slots[i];
    s->index = -1;
    s->b.n = batch;
    s->b.h = s->b.w = aug->crop;
    s->b.n_classes = l->K;
    s->b.images = malloc(sizeof(float) * per * batch);
    s->b.labels = malloc(sizeof(float) * (size_t)l->K * batch);
    ok &= s->b.images && s->b.labels;
  }
  l->produce_next = l->consume_next = start;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  if (!ok || pthread_create(&l->thread, NULL, producer, l) != 0) {
    ecs_err_set(err, ECS_ERR_NOMEM, "loader: out of memory or threads");
    ecs_loader_free(l);
    return NULL;
  }
  l->started = 1;
  return l;
}

void ecs_loader_free(ecs_loader *l) {
  if (!l) return;
  if (l->started) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
  }
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  for (int i = 0; i < DEPTH; i++) {
    free(l->slots[i].b.images);
    free(l->slots[i].b.labels);
  }
  free(l->perm);
  free(l);
}

size_t ecs_loader_size(const ecs_loader *l) {
  return l->n_ids;
}
int64_t ecs_loader_batches_per_epoch(const ecs_loader *l) {
  return l->bpe;
}

ecs_status ecs_loader_next(ecs_loader *l, const ecs_batch **out, ecs_err *err) {
  pthread_mutex_lock(&l->mu);
  if (l->held >= 0) { /* give back the batch returned last time */
    l->slots[l->held].index = -1;
    l->held = -1;
    pthread_cond_broadcast(&l->cv);
  }
  int64_t idx = l->consume_next;
  slot *sl = &l->slots[idx % DEPTH];
  while (sl->index != idx)
    pthread_cond_wait(&l->cv, &l->mu);
  l->held = (int)(idx % DEPTH);
  l->consume_next++;
  pthread_mutex_unlock(&l->mu);
  if (sl->status != ECS_OK) {
    *out = NULL;
    return ecs_err_set(err, sl->status, "%s", sl->err.msg);
  }
  *out = &sl->b;
  return ECS_OK;
}
