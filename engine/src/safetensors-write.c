/* safetensors-write.c - writing safetensors files, and parameter stores to and from them.
 *
 * The writer keeps copies of the tensors it is given, builds the header (metadata first, then
 * tensors in insertion order, padded with spaces to 8 bytes so that data starts aligned),
 * writes everything to a temporary file beside the target, fsyncs it, renames it over the
 * target and fsyncs the folder: a crash leaves either the old file or the new one, never a
 * mix. The reader is safetensors.c. */
#include "ecs/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct st_wtensor {
  char *name;
  ecs_dtype type;
  int nd;
  int64_t ne[ECS_MAX_DIMS];
  void *data;
  size_t nbytes;
} st_wtensor;

struct ecs_st_writer {
  st_wtensor *t;
  size_t n, cap;
  char **meta_k, **meta_v;
  size_t n_meta, cap_meta;
};

ecs_st_writer *ecs_st_writer_new(ecs_err *err) {
  ecs_st_writer *w = calloc(1, sizeof *w);
  if (!w) ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
  return w;
}

void ecs_st_writer_free(ecs_st_writer *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) {
    free(w->t[i].name);
    free(w->t[i].data);
  }
  for (size_t i = 0; i < w->n_meta; i++) {
    free(w->meta_k[i]);
    free(w->meta_v[i]);
  }
  free(w->t);
  free(w->meta_k);
  free(w->meta_v);
  free(w);
}

ecs_status ecs_st_writer_add(ecs_st_writer *w, const char *name, ecs_dtype type, int nd,
                             const int64_t *ne, const void *data, ecs_err *err) {
  if (!w || !name || !*name || (nd > 0 && !ne))
    return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: missing name or shape");
  if (strcmp(name, "__metadata__") == 0)
    return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: '__metadata__' is reserved");
  if ((unsigned)type >= ECS_DTYPE_COUNT)
    return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: tensor '%s': bad dtype", name);
  if (nd < 0 || nd > ECS_MAX_DIMS)
    return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: tensor '%s': %d dimensions", name,
                       nd);
  uint64_t bytes = ecs_dtype_size(type);
  for (int k = 0; k < nd; k++)
    if (ne[k] < 0 || __builtin_mul_overflow(bytes, (uint64_t)ne[k], &bytes) || bytes > SIZE_MAX)
      return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: tensor '%s': bad shape", name);
  if (bytes && !data)
    return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: tensor '%s': no data", name);
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->t[i].name, name) == 0)
      return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: tensor '%s' added twice", name);
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 16;
    st_wtensor *nt = realloc(w->t, cap * sizeof *nt);
    if (!nt) return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
    w->t = nt;
    w->cap = cap;
  }
  st_wtensor *t = &w->t[w->n];
  memset(t, 0, sizeof *t);
  t->name = strdup(name);
  t->data = malloc(bytes ? (size_t)bytes : 1);
  if (!t->name || !t->data) {
    free(t->name);
    free(t->data);
    return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
  }
  if (bytes) memcpy(t->data, data, (size_t)bytes);
  t->type = type;
  t->nd = nd;
  for (int k = 0; k < nd; k++)
    t->ne[k] = ne[k];
  t->nbytes = (size_t)bytes;
  w->n++;
  return ECS_OK;
}

ecs_status ecs_st_writer_meta(ecs_st_writer *w, const char *key, const char *value, ecs_err *err) {
  if (!w || !key || !value)
    return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: missing metadata key or value");
  for (size_t i = 0; i < w->n_meta; i++)
    if (strcmp(w->meta_k[i], key) == 0) {
      char *v = strdup(value);
      if (!v) return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
      free(w->meta_v[i]);
      w->meta_v[i] = v;
      return ECS_OK;
    }
  if (w->n_meta == w->cap_meta) {
    size_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
    char **nk = realloc(w->meta_k, cap * sizeof *nk);
    if (nk) w->meta_k = nk;
    char **nv = nk ? realloc(w->meta_v, cap * sizeof *nv) : NULL;
    if (nv) w->meta_v = nv;
    if (!nk || !nv) return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
    w->cap_meta = cap;
  }
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
  }
  w->meta_k[w->n_meta] = k;
  w->meta_v[w->n_meta++] = v;
  return ECS_OK;
}

/* A growable byte string for the header. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, unsigned long long v) {
  char tmp[32];
  int k = snprintf(tmp, sizeof tmp, fmt, v);
  sb_put(b, tmp, (size_t)k);
}

static void sb_json_string(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      char e[2] = {'\\', (char)*c};
      sb_put(b, e, 2);
    } else if (*c < 0x20) {
      sb_printf(b, "\\u%04llx", *c);
    } else {
      sb_put(b, (const char *)c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

static ecs_status write_all(int fd, const void *p, size_t n, const char *path, ecs_err *err) {
  const char *c = p;
  while (n) {
    ssize_t k = write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      return ecs_err_set(err, ECS_ERR_IO, "cannot write '%s': %s", path,
                         k < 0 ? strerror(errno) : "short write");
    c += k;
    n -= (size_t)k;
  }
  return ECS_OK;
}

ecs_status ecs_st_writer_save(ecs_st_writer *w, const char *path, ecs_err *err) {
  if (!w || !path || !*path) return ecs_err_set(err, ECS_ERR_INVALID, "safetensors: no path");
  sbuf h = {0};
  uint64_t off = 0;
  sb_put(&h, "{", 1);
  if (w->n_meta) {
    sb_put(&h, "\"__metadata__\":{", 16);
    for (size_t i = 0; i < w->n_meta; i++) {
      if (i) sb_put(&h, ",", 1);
      sb_json_string(&h, w->meta_k[i]);
      sb_put(&h, ":", 1);
      sb_json_string(&h, w->meta_v[i]);
    }
    sb_put(&h, "}", 1);
  }
  for (size_t i = 0; i < w->n; i++) {
    const st_wtensor *t = &w->t[i];
    if (i || w->n_meta) sb_put(&h, ",", 1);
    sb_json_string(&h, t->name);
    sb_put(&h, ":{\"dtype\":\"", 11);
    sb_put(&h, ecs_dtype_name(t->type), strlen(ecs_dtype_name(t->type)));
    sb_put(&h, "\",\"shape\":[", 11);
    for (int k = 0; k < t->nd; k++)
      sb_printf(&h, k ? ",%llu" : "%llu", (unsigned long long)t->ne[k]);
    sb_put(&h, "],\"data_offsets\":[", 18);
    sb_printf(&h, "%llu", off);
    sb_printf(&h, ",%llu]}", off + t->nbytes);
    off += t->nbytes;
  }
  sb_put(&h, "}", 1);
  while (!h.oom && h.n % 8)
    sb_put(&h, " ", 1);
  if (h.oom) {
    free(h.p);
    return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
  }

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    free(h.p);
    return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors writer: out of memory");
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    ecs_status st = ecs_err_set(err, ECS_ERR_IO, "cannot create a temporary file beside '%s': %s",
                                path, strerror(errno));
    free(tmp);
    free(h.p);
    return st;
  }
  /* mkstemp makes 0600; a model file is meant to be read by other processes and users */
  mode_t um = umask(0);
  umask(um);
  ecs_status st = ECS_OK;
  if (fchmod(fd, 0666 & ~um) != 0)
    st = ecs_err_set(err, ECS_ERR_IO, "cannot set the mode of '%s': %s", tmp, strerror(errno));
  unsigned char len8[8];
  for (int k = 0; k < 8; k++)
    len8[k] = (unsigned char)((uint64_t)h.n >> (8 * k));
  if (st == ECS_OK) st = write_all(fd, len8, 8, tmp, err);
  if (st == ECS_OK) st = write_all(fd, h.p, h.n, tmp, err);
  for (size_t i = 0; st == ECS_OK && i < w->n; i++)
    st = write_all(fd, w->t[i].data, w->t[i].nbytes, tmp, err);
  if (st == ECS_OK && fsync(fd) != 0)
    st = ecs_err_set(err, ECS_ERR_IO, "cannot sync '%s': %s", tmp, strerror(errno));
  if (close(fd) != 0 && st == ECS_OK)
    st = ecs_err_set(err, ECS_ERR_IO, "cannot close '%s': %s", tmp, strerror(errno));
  if (st == ECS_OK && rename(tmp, path) != 0)
    st = ecs_err_set(err, ECS_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
  if (st != ECS_OK) {
    unlink(tmp);
  } else {
    /* the rename itself is durable only once the folder is synced */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
      if (fsync(dfd) != 0 && errno != EINVAL)
        st = ecs_err_set(err, ECS_ERR_IO, "cannot sync folder '%s': %s", dir, strerror(errno));
      close(dfd);
    }
    free(dir);
  }
  free(tmp);
  free(h.p);
  return st;
}

/* ---- parameter stores <-> files ------------------------------------------------------------ */

ecs_status ecs_st_writer_add_params(ecs_st_writer *w, const ecs_params *ps, ecs_err *err) {
  if (!w || !ps) return ecs_err_set(err, ECS_ERR_INVALID, "safetensors writer: no store");
  void *tmp = NULL;
  size_t tmp_n = 0;
  ecs_status st = ECS_OK;
  for (size_t i = 0; st == ECS_OK && i < ecs_params_count(ps); i++) {
    const ecs_tensor *t = ecs_params_at(ps, i);
    size_t n = ecs_plain_nbytes(t);
    if (!t->data)
      st = ecs_err_set(err, ECS_ERR_INVALID, "params save: tensor '%s' has no memory", t->name);
    if (st == ECS_OK && n > tmp_n) {
      void *nt = realloc(tmp, n);
      if (!nt)
        st = ecs_err_set(err, ECS_ERR_NOMEM, "params save: out of memory");
      else {
        tmp = nt;
        tmp_n = n;
      }
    }
    if (st == ECS_OK && n) st = ecs_tensor_get_bytes(t, tmp, 0, n, err);
    if (st == ECS_OK) st = ecs_st_writer_add(w, t->name, t->type, t->nd, t->ne, tmp, err);
  }
  free(tmp);
  return st;
}

ecs_status ecs_params_save(const ecs_params *ps, const char *path, const char *const *meta_kv,
                           size_t n_meta, ecs_err *err) {
  if (!ps) return ecs_err_set(err, ECS_ERR_INVALID, "params save: no store");
  if (n_meta && !meta_kv) return ecs_err_set(err, ECS_ERR_INVALID, "params save: no metadata");
  ecs_st_writer *w = ecs_st_writer_new(err);
  if (!w) return ECS_ERR_NOMEM;
  ecs_status st = ECS_OK;
  for (size_t i = 0; st == ECS_OK && i < n_meta; i++)
    st = ecs_st_writer_meta(w, meta_kv[2 * i], meta_kv[2 * i + 1], err);
  if (st == ECS_OK) st = ecs_st_writer_add_params(w, ps, err);
  if (st == ECS_OK) st = ecs_st_writer_save(w, path, err);
  ecs_st_writer_free(w);
  return st;
}

static int st_shape_matches(const ecs_st_tensor *s, const ecs_tensor *t) {
  if (s->nd != t->nd || s->type != t->type) return 0;
  for (int k = 0; k < t->nd; k++)
    if (s->ne[k] != t->ne[k]) return 0;
  return 1;
}

static void st_shape_str(const ecs_st_tensor *s, char *buf, size_t n) {
  ecs_tensor tmp = {.type = s->type, .nd = s->nd};
  for (int k = 0; k < ECS_MAX_DIMS; k++)
    tmp.ne[k] = s->ne[k];
  ecs_shape_str(&tmp, buf, n);
}

ecs_status ecs_params_load(ecs_params *ps, const ecs_st_file *f, char *unused, size_t unused_n,
                           ecs_err *err) {
  if (!ps || !f) return ecs_err_set(err, ECS_ERR_INVALID, "params load: no store or file");
  if (unused && unused_n) unused[0] = '\0';
  size_t n = ecs_params_count(ps);
  /* check everything before writing anything, so a bad file leaves the store untouched */
  for (size_t i = 0; i < n; i++) {
    const ecs_tensor *t = ecs_params_at(ps, i);
    const ecs_st_tensor *s = ecs_st_find(f, t->name);
    if (!s)
      return ecs_err_set(err, ECS_ERR_FORMAT, "tensor '%s' is missing from the file", t->name);
    if (!st_shape_matches(s, t)) {
      char a[64], b[64];
      st_shape_str(s, a, sizeof a);
      ecs_shape_str(t, b, sizeof b);
      return ecs_err_set(err, ECS_ERR_FORMAT,
                         "tensor '%s' is %s %s in the file but %s %s in the "
                         "model",
                         t->name, ecs_dtype_name(s->type), a, ecs_dtype_name(t->type), b);
    }
    if (!t->data)
      return ecs_err_set(err, ECS_ERR_INVALID, "params load: tensor '%s' has no memory", t->name);
  }
  for (size_t i = 0; i < n; i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    const ecs_st_tensor *s = ecs_st_find(f, t->name);
    ecs_status st = ecs_tensor_set_bytes(t, s->data, 0, s->nbytes, err);
    if (st != ECS_OK) return st;
  }
  if (unused && unused_n) {
    size_t used = 0;
    for (size_t i = 0; i < ecs_st_count(f); i++) {
      const char *name = ecs_st_at(f, i)->name;
      if (ecs_params_find(ps, name)) continue;
      size_t need = strlen(name) + (used ? 1 : 0);
      if (used + need + 4 >= unused_n) {
        if (used + 4 < unused_n) memcpy(unused + used, used ? ",..." : "...", used ? 5 : 4);
        break;
      }
      if (used) unused[used++] = ',';
      memcpy(unused + used, name, strlen(name) + 1);
      used += strlen(name);
    }
  }
  return ECS_OK;
}
