/* dataset.c - VOC-layout dataset index (see ecs/dataset.h).
 *
 * Ids map to their labels through a small open-addressing hash table; splits are read once and
 * kept. Labels derived from masks or annotations are computed on first use under a mutex, so
 * loader threads can share one dataset. */
#include "ecs/dataset.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SPLITS 8
#define ID_MAX     128

static const char *const g_voc_classes[20] = {
    "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",      "car",
    "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",    "motorbike",
    "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};

typedef struct entry {
  char *id;
  uint8_t *labels; /* K bytes, NULL until known */
} entry;

typedef struct split {
  char name[64];
  char **ids;
  size_t n;
} split;

struct ecs_dataset {
  char dir[4000];
  int K;
  char names[ECS_DATASET_MAX_CLASSES][64];
  int has_labels_file, has_masks, has_annotations;
  entry *table; /* open addressing, capacity a power of two */
  size_t cap, count;
  split splits[MAX_SPLITS];
  int n_splits;
  pthread_mutex_t lock;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  while (*s)
    h = (h ^ (uint8_t)*s++) * 1099511628211ull;
  return h;
}

static entry *lookup(ecs_dataset *ds, const char *id, int insert) {
  if (insert && (ds->count + 1) * 2 > ds->cap) {
    size_t ncap = ds->cap ? ds->cap * 2 : 1024;
    entry *nt = calloc(ncap, sizeof *nt);
    if (!nt) return NULL;
    for (size_t i = 0; i < ds->cap; i++) {
      if (!ds->table[i].id) continue;
      size_t j = hash_str(ds->table[i].id) & (ncap - 1);
      while (nt[j].id)
        j = (j + 1) & (ncap - 1);
      nt[j] = ds->table[i];
    }
    free(ds->table);
    ds->table = nt, ds->cap = ncap;
  }
  if (!ds->cap) return NULL;
  size_t j = hash_str(id) & (ds->cap - 1);
  while (ds->table[j].id) {
    if (strcmp(ds->table[j].id, id) == 0) return &ds->table[j];
    j = (j + 1) & (ds->cap - 1);
  }
  if (!insert) return NULL;
  ds->table[j].id = strdup(id);
  if (!ds->table[j].id) return NULL;
  ds->count++;
  return &ds->table[j];
}

static int path_exists(const char *path, int want_dir) {
  struct stat st;
  return stat(path, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

static void join(char *out, size_t n, const ecs_dataset *ds, const char *a, const char *b,
                 const char *c) {
  snprintf(out, n, "%s/%s%s%s", ds->dir, a, b ? b : "", c ? c : "");
}

/* Puts "prefix: " before err's message (once), truncating the end when it does not fit. */
static void err_prefix(ecs_err *err, const char *prefix) {
  if (!err || strstr(err->msg, prefix)) return;
  char old[ECS_ERR_MSG_MAX];
  memcpy(old, err->msg, sizeof old);
  size_t lp = strnlen(prefix, ECS_ERR_MSG_MAX - 3), lo = strnlen(old, sizeof old - 1);
  size_t n = 0;
  memcpy(err->msg, prefix, lp), n += lp;
  memcpy(err->msg + n, ": ", 2), n += 2;
  if (lo > ECS_ERR_MSG_MAX - 1 - n) lo = ECS_ERR_MSG_MAX - 1 - n;
  memcpy(err->msg + n, old, lo), n += lo;
  err->msg[n] = '\0';
}

/* Reads the lines of a text file, stripped, skipping blank ones; calls fn(line, lineno). */
static ecs_status each_line(const char *path, ecs_status (*fn)(void *, char *, int, ecs_err *),
                            void *user, ecs_err *err) {
  FILE *f = fopen(path, "r");
  if (!f) return ecs_err_set(err, ECS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  char line[8192];
  int no = 0;
  ecs_status st = ECS_OK;
  while (st == ECS_OK && fgets(line, sizeof line, f)) {
    no++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      st = ecs_err_set(err, ECS_ERR_FORMAT, "%s:%d: line too long", path, no);
      break;
    }
    while (len && isspace((unsigned char)line[len - 1]))
      line[--len] = '\0';
    char *s = line;
    while (isspace((unsigned char)*s))
      s++;
    if (!*s) continue;
    st = fn(user, s, no, err);
    if (st != ECS_OK) {
      char where[4200];
      err_prefix(err, (size_t)snprintf(where, sizeof where, "%s:%d", path, no) < sizeof where
                          ? where
                          : path);
    }
  }
  fclose(f);
  return st;
}

static ecs_status add_class(void *user, char *line, int no, ecs_err *err) {
  ecs_dataset *ds = user;
  (void)no;
  if (ds->K >= ECS_DATASET_MAX_CLASSES)
    return ecs_err_set(err, ECS_ERR_FORMAT, "more than %d classes", ECS_DATASET_MAX_CLASSES);
  if (strlen(line) >= sizeof ds->names[0])
    return ecs_err_set(err, ECS_ERR_FORMAT, "class name too long");
  for (int k = 0; k < ds->K; k++)
    if (strcmp(ds->names[k], line) == 0)
      return ecs_err_set(err, ECS_ERR_FORMAT, "class '%s' listed twice", line);
  snprintf(ds->names[ds->K++], sizeof ds->names[0], "%s", line);
  return ECS_OK;
}

static int valid_id(const char *id) {
  if (!*id || strlen(id) >= ID_MAX || id[0] == '.') return 0;
  for (const char *p = id; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')) return 0;
  return 1;
}

static ecs_status add_labels(void *user, char *line, int no, ecs_err *err) {
  ecs_dataset *ds = user;
  (void)no;
  char *save = NULL, *id = strtok_r(line, " \t", &save);
  if (!valid_id(id)) return ecs_err_set(err, ECS_ERR_FORMAT, "bad image id '%s'", id);
  entry *e = lookup(ds, id, 1);
  if (!e) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  if (e->labels) return ecs_err_set(err, ECS_ERR_FORMAT, "image '%s' listed twice", id);
  e->labels = calloc((size_t)ds->K, 1);
  if (!e->labels) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  for (char *tok; (tok = strtok_r(NULL, " \t,", &save));) {
    char *end;
    long k = strtol(tok, &end, 10);
    if (*end) k = ecs_dataset_class_id(ds, tok); /* a class name also does */
    if (k < 1 || k > ds->K)
      return ecs_err_set(err, ECS_ERR_FORMAT, "label '%s' of image '%s' is not a class (1..%d)",
                         tok, id, ds->K);
    e->labels[k - 1] = 1;
  }
  return ECS_OK;
}

ecs_dataset *ecs_dataset_open(const char *dir, ecs_err *err) {
  if (!dir || !*dir || strlen(dir) >= 3900) {
    ecs_err_set(err, ECS_ERR_INVALID, "dataset: bad folder name");
    return NULL;
  }
  if (!path_exists(dir, 1)) {
    ecs_err_set(err, ECS_ERR_IO, "dataset %s: no such folder", dir);
    return NULL;
  }
  ecs_dataset *ds = calloc(1, sizeof *ds);
  if (!ds) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&ds->lock, NULL);
  snprintf(ds->dir, sizeof ds->dir, "%s", dir);
  char path[4200];
  join(path, sizeof path, ds, "JPEGImages", NULL, NULL);
  if (!path_exists(path, 1)) {
    ecs_err_set(err, ECS_ERR_FORMAT, "dataset %s: no JPEGImages/ folder (VOC layout expected)",
                dir);
    ecs_dataset_free(ds);
    return NULL;
  }
  join(path, sizeof path, ds, "SegmentationClass", NULL, NULL);
  ds->has_masks = path_exists(path, 1);
  join(path, sizeof path, ds, "Annotations", NULL, NULL);
  ds->has_annotations = path_exists(path, 1);
  ecs_status st = ECS_OK;
  join(path, sizeof path, ds, "classes.txt", NULL, NULL);
  if (path_exists(path, 0)) {
    st = each_line(path, add_class, ds, err);
    if (st == ECS_OK && ds->K == 0)
      st = ecs_err_set(err, ECS_ERR_FORMAT, "%s lists no class", path);
  } else {
    for (int k = 0; k < 20; k++)
      snprintf(ds->names[k], sizeof ds->names[k], "%s", g_voc_classes[k]);
    ds->K = 20;
  }
  if (st == ECS_OK && ds->has_masks && ds->K > ECS_DATASET_MAX_MASK_CLASSES)
    st = ecs_err_set(err, ECS_ERR_FORMAT,
                     "dataset %s: %d classes, but SegmentationClass/ masks are 8-bit (ids 1..%d, "
                     "255 ignore): with more classes, leave the masks out and give image-level "
                     "labels (labels.txt or Annotations/)",
                     dir, ds->K, ECS_DATASET_MAX_MASK_CLASSES);
  join(path, sizeof path, ds, "labels.txt", NULL, NULL);
  if (st == ECS_OK && path_exists(path, 0)) {
    ds->has_labels_file = 1;
    st = each_line(path, add_labels, ds, err);
  } else if (st == ECS_OK && !ds->has_masks && !ds->has_annotations) {
    st = ecs_err_set(err, ECS_ERR_FORMAT,
                     "dataset %s: no labels.txt, SegmentationClass/ or Annotations/ to take "
                     "image-level labels from",
                     dir);
  }
  if (st != ECS_OK) {
    ecs_dataset_free(ds);
    return NULL;
  }
  return ds;
}

void ecs_dataset_free(ecs_dataset *ds) {
  if (!ds) return;
  for (size_t i = 0; i < ds->cap; i++)
    free(ds->table[i].id), free(ds->table[i].labels);
  free(ds->table);
  for (int s = 0; s < ds->n_splits; s++) {
    for (size_t i = 0; i < ds->splits[s].n; i++)
      free(ds->splits[s].ids[i]);
    free(ds->splits[s].ids);
  }
  pthread_mutex_destroy(&ds->lock);
  free(ds);
}

const char *ecs_dataset_dir(const ecs_dataset *ds) {
  return ds->dir;
}
int ecs_dataset_n_classes(const ecs_dataset *ds) {
  return ds->K;
}
int ecs_dataset_has_masks(const ecs_dataset *ds) {
  return ds->has_masks;
}

const char *ecs_dataset_class_name(const ecs_dataset *ds, int id) {
  return (id >= 1 && id <= ds->K) ? ds->names[id - 1] : NULL;
}

int ecs_dataset_class_id(const ecs_dataset *ds, const char *name) {
  for (int k = 0; k < ds->K; k++)
    if (strcmp(ds->names[k], name) == 0) return k + 1;
  return 0;
}

typedef struct split_reader {
  split *sp;
  size_t cap;
} split_reader;

static ecs_status add_split_id(void *user, char *line, int no, ecs_err *err) {
  split_reader *r = user;
  (void)no;
  char *sp = strpbrk(line, " \t"); /* VOC's per-class lists carry a second column */
  if (sp) *sp = '\0';
  if (!valid_id(line)) return ecs_err_set(err, ECS_ERR_FORMAT, "bad image id '%s'", line);
  if (r->sp->n == r->cap) {
    size_t ncap = r->cap ? r->cap * 2 : 256;
    char **ni = realloc(r->sp->ids, ncap * sizeof *ni);
    if (!ni) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    r->sp->ids = ni, r->cap = ncap;
  }
  if (!(r->sp->ids[r->sp->n] = strdup(line)))
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  r->sp->n++;
  return ECS_OK;
}

ecs_status ecs_dataset_split(ecs_dataset *ds, const char *name, const char *const **ids, size_t *n,
                             ecs_err *err) {
  if (!name || !valid_id(name) || strlen(name) >= sizeof ds->splits[0].name)
    return ecs_err_set(err, ECS_ERR_INVALID, "bad split name '%s'", name ? name : "");
  pthread_mutex_lock(&ds->lock);
  ecs_status st = ECS_OK;
  split *sp = NULL;
  for (int s = 0; s < ds->n_splits; s++)
    if (strcmp(ds->splits[s].name, name) == 0) sp = &ds->splits[s];
  if (!sp) {
    char path[4200];
    join(path, sizeof path, ds, "ImageSets/Segmentation/", name, ".txt");
    if (ds->n_splits == MAX_SPLITS) {
      st = ecs_err_set(err, ECS_ERR_LIMIT, "too many splits opened");
    } else if (!path_exists(path, 0)) {
      st = ecs_err_set(err, ECS_ERR_IO, "dataset %s has no split '%s' (%s missing)", ds->dir, name,
                       path);
    } else {
      split tmp = {0};
      snprintf(tmp.name, sizeof tmp.name, "%s", name);
      split_reader r = {&tmp, 0};
      st = each_line(path, add_split_id, &r, err);
      if (st == ECS_OK) {
        ds->splits[ds->n_splits++] = tmp;
        sp = &ds->splits[ds->n_splits - 1];
      } else {
        for (size_t i = 0; i < tmp.n; i++)
          free(tmp.ids[i]);
        free(tmp.ids);
      }
    }
  }
  if (sp) *ids = (const char *const *)sp->ids, *n = sp->n;
  pthread_mutex_unlock(&ds->lock);
  return st;
}

ecs_status ecs_dataset_image(const ecs_dataset *ds, const char *id, size_t max_pixels,
                             ecs_image **out, ecs_err *err) {
  char path[4200];
  join(path, sizeof path, ds, "JPEGImages/", id, ".jpg");
  ecs_status st = ecs_image_read(path, max_pixels, 0, out, err);
  if (st != ECS_OK) err_prefix(err, path);
  return st;
}

ecs_status ecs_dataset_mask(const ecs_dataset *ds, const char *id, ecs_image **out, ecs_err *err) {
  char path[4200];
  join(path, sizeof path, ds, "SegmentationClass/", id, ".png");
  uint8_t *bytes = NULL;
  size_t n = 0;
  *out = NULL;
  ecs_status st = ecs_file_read(path, 0, &bytes, &n, err);
  if (st == ECS_OK) st = ecs_image_decode_indexed(bytes, n, 0, out, err);
  free(bytes);
  if (st != ECS_OK) {
    err_prefix(err, path);
    return st;
  }
  const ecs_image *m = *out;
  for (size_t i = 0, npx = (size_t)m->width * m->height; i < npx; i++)
    if (m->data[i] != 255 && m->data[i] > ds->K) {
      int v = m->data[i];
      ecs_image_free(*out);
      *out = NULL;
      return ecs_err_set(err, ECS_ERR_FORMAT, "%s: class id %d is not in 0..%d or 255", path, v,
                         ds->K);
    }
  return ECS_OK;
}

/* Labels from VOC's Annotations/ID.xml: every <name> inside an <object>. */
static ecs_status labels_from_xml(const ecs_dataset *ds, const char *id, uint8_t *labels,
                                  ecs_err *err) {
  char path[4200];
  join(path, sizeof path, ds, "Annotations/", id, ".xml");
  uint8_t *bytes = NULL;
  size_t n = 0;
  ecs_status st = ecs_file_read(path, 1 << 22, &bytes, &n, err);
  if (st != ECS_OK) return st;
  char *text = realloc(bytes, n + 1);
  if (!text) {
    free(bytes);
    return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  }
  text[n] = '\0';
  for (char *obj = strstr(text, "<object>"); obj; obj = strstr(obj + 8, "<object>")) {
    char *name = strstr(obj, "<name>"), *end = name ? strstr(name, "</name>") : NULL;
    if (!name || !end) {
      st = ecs_err_set(err, ECS_ERR_FORMAT, "%s: an <object> without <name>", path);
      break;
    }
    name += 6;
    while (name < end && isspace((unsigned char)*name))
      name++;
    while (end > name && isspace((unsigned char)end[-1]))
      end--;
    char cls[64];
    snprintf(cls, sizeof cls, "%.*s", (int)(end - name), name);
    int k = ecs_dataset_class_id(ds, cls);
    if (!k) {
      st = ecs_err_set(err, ECS_ERR_FORMAT, "%s: object class '%s' is not in the class list", path,
                       cls);
      break;
    }
    labels[k - 1] = 1;
  }
  free(text);
  return st;
}

ecs_status ecs_dataset_labels(ecs_dataset *ds, const char *id, const uint8_t **labels,
                              ecs_err *err) {
  pthread_mutex_lock(&ds->lock);
  entry *e = lookup(ds, id, 0);
  ecs_status st = ECS_OK;
  if (e && e->labels) {
    *labels = e->labels;
  } else if (ds->has_labels_file) {
    st = ecs_err_set(err, ECS_ERR_FORMAT, "image '%s' has no line in %s/labels.txt", id, ds->dir);
  } else {
    uint8_t *l = calloc((size_t)ds->K, 1);
    if (!l) st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    char path[4200];
    join(path, sizeof path, ds, "SegmentationClass/", id, ".png");
    if (st == ECS_OK && ds->has_masks && path_exists(path, 0)) {
      ecs_image *m = NULL;
      st = ecs_dataset_mask(ds, id, &m, err);
      for (size_t i = 0; st == ECS_OK && i < (size_t)m->width * m->height; i++)
        if (m->data[i] != 0 && m->data[i] != 255) l[m->data[i] - 1] = 1;
      ecs_image_free(m);
    } else if (st == ECS_OK && ds->has_annotations) {
      st = labels_from_xml(ds, id, l, err);
    } else if (st == ECS_OK) {
      st =
          ecs_err_set(err, ECS_ERR_IO, "image '%s': no mask or annotation to take labels from", id);
    }
    if (st == ECS_OK) e = lookup(ds, id, 1);
    if (st == ECS_OK && !e) st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    if (st == ECS_OK) {
      e->labels = l;
      *labels = l;
    } else {
      free(l);
    }
  }
  pthread_mutex_unlock(&ds->lock);
  return st;
}

static void problem(ecs_dataset_summary *s, const char *what, const char *detail) {
  if (s->n_problems < 4) {
    char *out = s->problems[s->n_problems];
    size_t cap = sizeof s->problems[0], lw = strnlen(what, cap - 1);
    memcpy(out, what, lw);
    size_t ld = strnlen(detail, cap - 1 - lw);
    memcpy(out + lw, detail, ld);
    out[lw + ld] = '\0';
  }
  s->n_problems++;
}

ecs_status ecs_dataset_check(ecs_dataset *ds, int check_files, ecs_dataset_summary *out,
                             ecs_err *err) {
  memset(out, 0, sizeof *out);
  out->n_classes = ds->K;
  const char *names[2] = {"train", "val"};
  for (int s = 0; s < 2; s++) {
    const char *const *ids;
    size_t n;
    ecs_err e = {0};
    if (ecs_dataset_split(ds, names[s], &ids, &n, &e) != ECS_OK) {
      if (e.status != ECS_ERR_IO || s == 0) problem(out, e.msg, "");
      continue;
    }
    if (s == 0)
      out->n_train = n;
    else
      out->n_val = n;
    for (size_t i = 0; i < n; i++) {
      const uint8_t *l;
      e = (ecs_err){0};
      if (ecs_dataset_labels(ds, ids[i], &l, &e) != ECS_OK) {
        problem(out, e.msg, "");
        continue;
      }
      int any = 0;
      for (int k = 0; k < ds->K; k++)
        any |= l[k];
      if (any)
        out->n_labelled++;
      else
        problem(out, "image without labels: ", ids[i]);
      char path[4200];
      if (check_files) {
        join(path, sizeof path, ds, "JPEGImages/", ids[i], ".jpg");
        if (!path_exists(path, 0)) out->n_missing++, problem(out, "missing image: ", path);
      }
      join(path, sizeof path, ds, "SegmentationClass/", ids[i], ".png");
      if (ds->has_masks && (!check_files || path_exists(path, 0))) out->n_masks++;
    }
  }
  (void)err;
  return ECS_OK;
}
