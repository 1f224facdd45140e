/* synth.c - the synthetic benchmark generator (see ecs/synth.h for the design).
 *
 * Every image draws from its own random stream, seeded from (seed, index), so images can be
 * rendered in any order on any number of threads and still come out identical. Sizes are
 * given for 128-pixel images and scaled with the image side. */
#include "ecs/synth.h"
#include "ecs/image.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_OBJECTS 3
#define MAX_SHAPES  12

static const char *const g_class_names[ECS_SYNTH_MAX_CLASSES] = {"cat",  "dog",   "bird",
                                                                 "fish", "horse", "sheep"};

void ecs_synth_defaults(ecs_synth_params *p) {
  *p = (ecs_synth_params){.count = 1000,
                          .seed = 1,
                          .size = 128,
                          .n_classes = 6,
                          .val_fraction = 0.2f,
                          .jpeg_quality = 90,
                          .n_threads = 0};
}

const char *ecs_synth_class_name(int index) {
  return (index >= 0 && index < ECS_SYNTH_MAX_CLASSES) ? g_class_names[index] : NULL;
}

/* ---- random numbers: splitmix64 seeding a xoshiro256** stream ------------------------------ */

typedef struct rng {
  uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed * 0xD1B54A32D192ED03ull + stream;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r) {
  uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
  return out;
}

static double uni(rng *r) {
  return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
static double unif(rng *r, double a, double b) {
  return a + (b - a) * uni(r);
}
static int irange(rng *r, int a, int b) {
  return a + (int)(uni(r) * (b - a + 1));
} /* [a, b] */
static double gauss(rng *r) {
  double u = uni(r) + 1e-12, v = uni(r);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- colour ------------------------------------------------------------------------------ */

static void hsv_to_rgb(double h, double s, double v, double rgb[3]) {
  h = fmod(fmod(h, 360.0) + 360.0, 360.0) / 60.0;
  int i = (int)h;
  double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double c[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  for (int k = 0; k < 3; k++)
    rgb[k] = 255.0 * c[i % 6][k];
}

static uint8_t clamp8(double v) {
  return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5);
}

/* Class hues are spread evenly; a body's hue is near its class's, so colour is a weak cue. */
static double class_hue(int k, int n) {
  return 360.0 * k / n + 15.0;
}

/* ---- shapes ---------------------------------------------------------------------------------- */

typedef struct body {
  double cx, cy, a, b, cos_t, sin_t; /* ellipse: semi-axes a (long) and b, rotation t */
  double rgb[3];
  int textured, tex_class;
  double tex_period, tex_cos, tex_sin;
} body;

static int in_body(const body *e, double x, double y) {
  double dx = x - e->cx, dy = y - e->cy;
  double u = (dx * e->cos_t + dy * e->sin_t) / e->a, v = (-dx * e->sin_t + dy * e->cos_t) / e->b;
  return u * u + v * v <= 1.0;
}

/* The body's colour at (x, y): shading towards the rim, the class's stripes when textured. */
static void body_color(const body *e, double x, double y, rng *r, double out[3]) {
  double dx = x - e->cx, dy = y - e->cy;
  double u = (dx * e->cos_t + dy * e->sin_t) / e->a, v = (-dx * e->sin_t + dy * e->cos_t) / e->b;
  double shade = 0.8 + 0.2 * (1.0 - (u * u + v * v));
  if (e->textured) {
    double ph = (x * e->tex_cos + y * e->tex_sin) / e->tex_period;
    shade *= (ph - floor(ph)) < 0.5 ? 1.12 : 0.85;
  }
  double n = 6.0 * gauss(r);
  for (int c = 0; c < 3; c++)
    out[c] = e->rgb[c] * shade + n;
}

/* Emblems: small, axis-aligned, one shape per class. (u, v) in [-1, 1]^2 over the emblem. */
static int in_emblem(int k, double u, double v) {
  double au = fabs(u), av = fabs(v);
  switch (k) {
  case 0: return u * u + v * v <= 1.0 && u * u + v * v >= 0.3;           /* ring */
  case 1: return (au <= 0.3 && av <= 1.0) || (av <= 0.3 && au <= 1.0);   /* plus */
  case 2: return v <= 0.85 && v >= -0.95 && au <= (0.85 - v) * 0.55;     /* triangle */
  case 3: return au <= 0.95 && av <= 0.95 && (au >= 0.55 || av >= 0.55); /* hollow square */
  case 4: return au + av <= 1.0;                                         /* diamond */
  default: return fabs(au - av) <= 0.32 && au <= 1.0 && av <= 1.0;       /* X */
  }
}

typedef struct object {
  body body;
  int cls;           /* 0-based */
  double ex, ey, er; /* emblem centre and half-size */
  uint8_t emblem_rgb[3];
  long body_total, emblem_total; /* pixels on an unbounded canvas */
} object;

static void random_body(rng *r, double scale, int size, int cls, int n_classes, double len_min,
                        double len_max, body *e) {
  double len = unif(r, len_min, len_max) * scale, ratio = unif(r, 0.35, 0.55);
  double t = unif(r, 0, 3.141592653589793);
  e->a = len / 2, e->b = len * ratio / 2, e->cos_t = cos(t), e->sin_t = sin(t);
  /* the centre may sit near the border: objects are sometimes cut by the frame */
  e->cx = unif(r, 0.1 * size, 0.9 * size), e->cy = unif(r, 0.1 * size, 0.9 * size);
  hsv_to_rgb(class_hue(cls, n_classes) + 12.0 * gauss(r), unif(r, 0.45, 0.8), unif(r, 0.5, 0.9),
             e->rgb);
  e->textured = uni(r) < 0.5;
  e->tex_class = cls;
  double ang = 0.5235987755982988 * cls; /* stripes: 30 degrees apart per class */
  e->tex_cos = cos(ang), e->tex_sin = sin(ang);
  e->tex_period = (5.0 + cls) * scale;
}

static void fill_background(rng *r, int size, double *field) {
  /* a smooth colour field: a 4x4 grid of random colours, bilinearly interpolated */
  double grid[4][4][3];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      hsv_to_rgb(unif(r, 0, 360), unif(r, 0.1, 0.5), unif(r, 0.3, 0.8), grid[i][j]);
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      double gy = 3.0 * y / (size - 1), gx = 3.0 * x / (size - 1);
      int iy = gy >= 3 ? 2 : (int)gy, ix = gx >= 3 ? 2 : (int)gx;
      double fy = gy - iy, fx = gx - ix;
      for (int c = 0; c < 3; c++)
        field[(y * size + x) * 3 + c] =
            (1 - fy) * ((1 - fx) * grid[iy][ix][c] + fx * grid[iy][ix + 1][c]) +
            fy * ((1 - fx) * grid[iy + 1][ix][c] + fx * grid[iy + 1][ix + 1][c]) + 10.0 * gauss(r);
    }
}

static void draw_body(const body *e, int size, rng *r, double *img, int *owner, int id) {
  double reach = e->a + 1;
  int x0 = (int)fmax(0, floor(e->cx - reach)), x1 = (int)fmin(size - 1, ceil(e->cx + reach));
  int y0 = (int)fmax(0, floor(e->cy - reach)), y1 = (int)fmin(size - 1, ceil(e->cy + reach));
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      if (!in_body(e, x + 0.5, y + 0.5)) continue;
      body_color(e, x + 0.5, y + 0.5, r, &img[(y * size + x) * 3]);
      owner[y * size + x] = id;
    }
}

static long count_body(const body *e) {
  long n = 0;
  int reach = (int)ceil(e->a + 1);
  for (int y = (int)floor(e->cy) - reach; y <= (int)ceil(e->cy) + reach; y++)
    for (int x = (int)floor(e->cx) - reach; x <= (int)ceil(e->cx) + reach; x++)
      n += in_body(e, x + 0.5, y + 0.5);
  return n;
}

/* Draws object o's emblem; marks emblem pixels in `emblem` with the object's id. Returns the
 * number of emblem pixels on an unbounded canvas. */
static long draw_emblem(const object *o, int size, double *img, int *owner, int *emblem, int id) {
  long total = 0;
  int r = (int)ceil(o->er) + 1;
  for (int y = (int)floor(o->ey) - r; y <= (int)ceil(o->ey) + r; y++)
    for (int x = (int)floor(o->ex) - r; x <= (int)ceil(o->ex) + r; x++) {
      double u = (x + 0.5 - o->ex) / o->er, v = (y + 0.5 - o->ey) / o->er;
      if (!in_emblem(o->cls, u, v)) continue;
      total++;
      if (x < 0 || y < 0 || x >= size || y >= size) continue;
      for (int c = 0; c < 3; c++)
        img[(y * size + x) * 3 + c] = o->emblem_rgb[c];
      owner[y * size + x] = id;
      emblem[y * size + x] = id;
    }
  return total;
}

static void draw_blob(rng *r, int size, double scale, double *img, int *owner) {
  double cx = unif(r, 0, size), cy = unif(r, 0, size), rad = unif(r, 1.5, 4.0) * scale, rgb[3];
  hsv_to_rgb(unif(r, 0, 360), unif(r, 0.3, 0.9), unif(r, 0.2, 0.95), rgb);
  for (int y = (int)(cy - rad); y <= (int)(cy + rad); y++)
    for (int x = (int)(cx - rad); x <= (int)(cx + rad); x++) {
      if (x < 0 || y < 0 || x >= size || y >= size) continue;
      if ((x + 0.5 - cx) * (x + 0.5 - cx) + (y + 0.5 - cy) * (y + 0.5 - cy) > rad * rad) continue;
      for (int c = 0; c < 3; c++)
        img[(y * size + x) * 3 + c] = rgb[c];
      owner[y * size + x] = -1;
    }
}

ecs_status ecs_synth_render(const ecs_synth_params *p, int index, uint8_t *rgb, uint8_t *mask,
                            uint8_t labels[ECS_SYNTH_MAX_CLASSES], ecs_err *err) {
  const int size = p->size, n = size * size, nc = p->n_classes;
  const double scale = size / 128.0;
  if (size < 64 || size > 1024 || nc < 1 || nc > ECS_SYNTH_MAX_CLASSES)
    return ecs_err_set(err, ECS_ERR_INVALID, "synth: size must be 64..1024 and classes 1..%d",
                       ECS_SYNTH_MAX_CLASSES);
  double *img = malloc(sizeof(double) * 3 * n);
  int *owner = malloc(sizeof(int) * n), *emblem = malloc(sizeof(int) * n);
  if (!img || !owner || !emblem) {
    free(img), free(owner), free(emblem);
    return ecs_err_set(err, ECS_ERR_NOMEM, "synth: out of memory");
  }
  ecs_status st = ECS_ERR_INVALID;
  /* A draw whose every label was dropped is drawn again from the next sub-stream. */
  for (int attempt = 0; attempt < 64; attempt++) {
    rng r;
    rng_seed(&r, p->seed, ((uint64_t)index << 8) | (uint64_t)attempt);
    fill_background(&r, size, img);
    for (int i = 0; i < n; i++)
      owner[i] = -1, emblem[i] = -1;

    /* distractors under the objects: bodies in class colours and textures, about as long as the
     * objects (45-90 px against 60-90), no emblem: neither colour, texture nor size tells an
     * object from a distractor, only the emblem does */
    int n_dis = irange(&r, 3, 6), n_over = 0;
    body dis[MAX_SHAPES];
    for (int i = 0; i < n_dis; i++) {
      random_body(&r, scale, size, irange(&r, 0, nc - 1), nc, 45, 90, &dis[i]);
      if (i >= n_dis - 1 && uni(&r) < 0.5) n_over = 1; /* sometimes one lies on top */
    }
    for (int i = 0; i < n_dis - n_over; i++)
      draw_body(&dis[i], size, &r, img, owner, -1);
    int n_blobs = irange(&r, 8, 16);
    for (int i = 0; i < n_blobs / 2; i++)
      draw_blob(&r, size, scale, img, owner);

    int n_obj = irange(&r, 1, MAX_OBJECTS);
    object obj[MAX_OBJECTS];
    for (int k = 0; k < n_obj; k++) {
      object *o = &obj[k];
      o->cls = irange(&r, 0, nc - 1);
      random_body(&r, scale, size, o->cls, nc, 60, 90, &o->body);
      double head = uni(&r) < 0.5 ? 1.0 : -1.0;
      o->er = unif(&r, 7.5, 9.0) * scale; /* 15-18 px emblems */
      o->ex = o->body.cx + head * 0.55 * o->body.a * o->body.cos_t;
      o->ey = o->body.cy + head * 0.55 * o->body.a * o->body.sin_t;
      double lum = (o->body.rgb[0] + o->body.rgb[1] + o->body.rgb[2]) / 3;
      uint8_t e = lum > 130 ? (uint8_t)irange(&r, 20, 60) : (uint8_t)irange(&r, 200, 240);
      o->emblem_rgb[0] = o->emblem_rgb[1] = o->emblem_rgb[2] = e;
      o->body_total = count_body(&o->body);
      draw_body(&o->body, size, &r, img, owner, k);
      o->emblem_total = draw_emblem(o, size, img, owner, emblem, k);
    }
    for (int i = n_dis - n_over; i < n_dis; i++)
      draw_body(&dis[i], size, &r, img, owner, -1);
    for (int i = n_blobs / 2; i < n_blobs; i++)
      draw_blob(&r, size, scale, img, owner);

    /* which labels survive occlusion and the frame */
    long vis_body[MAX_OBJECTS] = {0}, vis_emblem[MAX_OBJECTS] = {0};
    for (int i = 0; i < n; i++)
      if (owner[i] >= 0) {
        vis_body[owner[i]]++;
        if (emblem[i] == owner[i]) vis_emblem[owner[i]]++;
      }
    int kept[MAX_OBJECTS], any = 0;
    memset(labels, 0, ECS_SYNTH_MAX_CLASSES);
    for (int k = 0; k < n_obj; k++) {
      kept[k] =
          vis_emblem[k] >= 0.6 * obj[k].emblem_total && vis_body[k] >= 0.4 * obj[k].body_total;
      if (kept[k]) labels[obj[k].cls] = 1, any = 1;
    }
    if (!any) continue;
    for (int i = 0; i < n; i++) {
      int o = owner[i];
      mask[i] = o < 0 ? 0 : kept[o] ? (uint8_t)(obj[o].cls + 1) : 255;
      for (int c = 0; c < 3; c++)
        rgb[i * 3 + c] = clamp8(img[i * 3 + c]);
    }
    st = ECS_OK;
    break;
  }
  free(img), free(owner), free(emblem);
  if (st != ECS_OK) return ecs_err_set(err, st, "synth: image %d kept no label in 64 draws", index);
  return ECS_OK;
}

/* ---- writing the dataset ----------------------------------------------------------------------
 */

static ecs_status make_dir(const char *path, ecs_err *err) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return ecs_err_set(err, ECS_ERR_INVALID, "synth: path too long: %s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return ecs_err_set(err, ECS_ERR_IO, "synth: cannot create %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST)
    return ecs_err_set(err, ECS_ERR_IO, "synth: cannot create %s: %s", buf, strerror(errno));
  return ECS_OK;
}

static ecs_status write_one(const ecs_synth_params *p, const char *dir, int index,
                            const uint8_t (*palette)[3], uint8_t *labels_out, ecs_err *err) {
  int size = p->size;
  ecs_image *img = ecs_image_new(size, size, 3, err);
  uint8_t *mask = malloc((size_t)size * size);
  uint8_t *jpg = NULL, *png = NULL;
  size_t jpg_n = 0, png_n = 0;
  char path[4200];
  ecs_status st = (img && mask) ? ECS_OK : ecs_err_set(err, ECS_ERR_NOMEM, "synth: out of memory");
  if (st == ECS_OK) st = ecs_synth_render(p, index, img->data, mask, labels_out, err);
  if (st == ECS_OK) st = ecs_image_encode_jpeg(img, p->jpeg_quality, &jpg, &jpg_n, err);
  if (st == ECS_OK) st = ecs_png_encode_palette(mask, size, size, palette, 256, &png, &png_n, err);
  if (st == ECS_OK) {
    snprintf(path, sizeof path, "%s/JPEGImages/%06d.jpg", dir, index);
    st = ecs_file_write(path, jpg, jpg_n, err);
  }
  if (st == ECS_OK) {
    snprintf(path, sizeof path, "%s/SegmentationClass/%06d.png", dir, index);
    st = ecs_file_write(path, png, png_n, err);
  }
  free(jpg), free(png), free(mask);
  ecs_image_free(img);
  return st;
}

static ecs_status write_text(const char *dir, const char *name, const char *text, ecs_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return ecs_file_write(path, text, strlen(text), err);
}

ecs_status ecs_synth_write(const ecs_synth_params *p, const char *out_dir, ecs_err *err) {
  if (p->count < 1 || p->count > 10000000)
    return ecs_err_set(err, ECS_ERR_INVALID, "synth: count must be 1..10000000");
  if (!(p->val_fraction >= 0 && p->val_fraction < 1))
    return ecs_err_set(err, ECS_ERR_INVALID, "synth: val fraction must be in [0, 1)");
  if (p->jpeg_quality < 1 || p->jpeg_quality > 100)
    return ecs_err_set(err, ECS_ERR_INVALID, "synth: JPEG quality must be 1..100");
  if (strlen(out_dir) > 4000) return ecs_err_set(err, ECS_ERR_INVALID, "synth: path too long");
  static const char *const subdirs[] = {"", "/JPEGImages", "/SegmentationClass",
                                        "/ImageSets/Segmentation"};
  for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
    char path[4100];
    snprintf(path, sizeof path, "%s%s", out_dir, subdirs[i]);
    ecs_status st = make_dir(path, err);
    if (st != ECS_OK) return st;
  }
  uint8_t palette[256][3];
  ecs_voc_palette(palette);
  uint8_t *labels = calloc((size_t)p->count, ECS_SYNTH_MAX_CLASSES);
  if (!labels) return ecs_err_set(err, ECS_ERR_NOMEM, "synth: out of memory");

  /* render in parallel; the first error (lowest index) wins so the message is deterministic */
  int first_bad = p->count;
  ecs_err bad_err = {0};
#ifdef _OPENMP
  int threads = p->n_threads > 0 ? p->n_threads : omp_get_num_procs();
#endif
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
  for (int i = 0; i < p->count; i++) {
    ecs_err e = {0};
    if (write_one(p, out_dir, i, (const uint8_t(*)[3])palette,
                  labels + (size_t)i * ECS_SYNTH_MAX_CLASSES, &e) != ECS_OK) {
#pragma omp critical
      if (i < first_bad) first_bad = i, bad_err = e;
    }
  }
  if (first_bad < p->count) {
    free(labels);
    if (err) *err = bad_err;
    return bad_err.status;
  }

  /* lists: the last val_fraction of the ids are the validation split */
  int n_val = (int)(p->count * (double)p->val_fraction + 0.5), n_train = p->count - n_val;
  size_t cap = (size_t)p->count * 32 + 1024;
  char *train = malloc(cap), *val = malloc(cap), *lab = malloc(cap), info[1024], classes[256];
  ecs_status st =
      (train && val && lab) ? ECS_OK : ecs_err_set(err, ECS_ERR_NOMEM, "synth: out of memory");
  if (st == ECS_OK) {
    size_t nt = 0, nv = 0, nl = 0;
    train[0] = val[0] = lab[0] = '\0';
    for (int i = 0; i < p->count; i++) {
      if (i < n_train)
        nt += (size_t)snprintf(train + nt, cap - nt, "%06d\n", i);
      else
        nv += (size_t)snprintf(val + nv, cap - nv, "%06d\n", i);
      nl += (size_t)snprintf(lab + nl, cap - nl, "%06d", i);
      for (int k = 0; k < p->n_classes; k++)
        if (labels[(size_t)i * ECS_SYNTH_MAX_CLASSES + k])
          nl += (size_t)snprintf(lab + nl, cap - nl, " %d", k + 1);
      nl += (size_t)snprintf(lab + nl, cap - nl, "\n");
    }
    size_t nc = 0;
    classes[0] = '\0';
    for (int k = 0; k < p->n_classes; k++)
      nc += (size_t)snprintf(classes + nc, sizeof classes - nc, "%s\n", g_class_names[k]);
    snprintf(info, sizeof info,
             "generator=ecsnet synth\nseed=%llu\ncount=%d\nsize=%d\nclasses=%d\nval_fraction=%g\n"
             "jpeg_quality=%d\n",
             (unsigned long long)p->seed, p->count, p->size, p->n_classes, p->val_fraction,
             p->jpeg_quality);
    if (st == ECS_OK) st = write_text(out_dir, "ImageSets/Segmentation/train.txt", train, err);
    if (st == ECS_OK) st = write_text(out_dir, "ImageSets/Segmentation/val.txt", val, err);
    if (st == ECS_OK) st = write_text(out_dir, "labels.txt", lab, err);
    if (st == ECS_OK) st = write_text(out_dir, "classes.txt", classes, err);
    if (st == ECS_OK) st = write_text(out_dir, "synth.txt", info, err);
  }
  free(train), free(val), free(lab), free(labels);
  return st;
}
