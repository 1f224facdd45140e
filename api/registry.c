/* registry.c - model versions on disk, the active pointer, and which model is served.
 *
 * Why files and not a database: a model version is one large immutable file that tools
 * (ecsnet info, a plain cp) must be able to read as is, and the only mutable state is one
 * pointer. Immutability plus rename gives crash safety without a journal: a version file
 * appears whole or not at all (written under a temporary name, fsync'd, hard-linked into
 * place so an existing version can never be overwritten), and the pointer changes by renaming
 * a complete new pointer file over the old one. The folder is fsync'd after each change so the
 * new name itself survives a power cut. */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "ecs/path.h"
#include "ecs/safetensors.h"

#define POINTER_FILE "ACTIVE"
#define LOCK_FILE    ".lock"
#define EXT          ".safetensors"

struct api_reg {
  char dir[ECS_PATH_MAX]; /* DATA_DIR/models */
};

bool api_reg_name_valid(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n >= API_REG_NAME_MAX || name[0] == '.' || strcmp(name, POINTER_FILE) == 0)
    return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

static ecs_status check_name(const char *name, ecs_err *err) {
  if (api_reg_name_valid(name)) return ECS_OK;
  return ecs_err_set(err, ECS_ERR_INVALID,
                     "model name '%.80s' is not valid: 1..%d characters of A-Z a-z 0-9 . _ -, "
                     "not starting with '.', not '" POINTER_FILE "'",
                     name ? name : "", API_REG_NAME_MAX - 1);
}

static ecs_status mkdir_one(const char *path, ecs_err *err) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST) return ECS_OK;
  return ecs_err_set(err, ECS_ERR_IO, "cannot create %s: %s", path, strerror(errno));
}

api_reg *api_reg_open(const char *data_dir, bool create, ecs_err *err) {
  if (!data_dir || !data_dir[0]) {
    ecs_err_set(err, ECS_ERR_INVALID, "no data directory given");
    return NULL;
  }
  api_reg *r = calloc(1, sizeof *r);
  if (!r) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  if (ecs_path_join(r->dir, sizeof r->dir, data_dir, "models", err) != ECS_OK) {
    free(r);
    return NULL;
  }
  if (create && (mkdir_one(data_dir, err) != ECS_OK || mkdir_one(r->dir, err) != ECS_OK)) {
    free(r);
    return NULL;
  }
  return r;
}

void api_reg_free(api_reg *r) {
  free(r);
}

const char *api_reg_dir(const api_reg *r) {
  return r->dir;
}

ecs_status api_reg_path(const api_reg *r, const char *name, int version, char *out, size_t n,
                        ecs_err *err) {
  ecs_status st = check_name(name, err);
  if (st != ECS_OK) return st;
  if (version < 1)
    return ecs_err_set(err, ECS_ERR_INVALID, "version %d: versions start at 1", version);
  return ecs_path_fmt(out, n, err, "%s/%s/%d" EXT, r->dir, name, version);
}

static ecs_status fsync_dir(const char *dir, ecs_err *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ecs_err_set(err, ECS_ERR_IO, "cannot open %s: %s", dir, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0) return ecs_err_set(err, ECS_ERR_IO, "fsync %s: %s", dir, strerror(e));
  return ECS_OK;
}

/* Exclusive lock on models/.lock for one mutation; returns the fd (>= 0) or -1 (err filled). */
static int lock_registry(const api_reg *r, ecs_err *err) {
  char p[ECS_PATH_MAX];
  if (ecs_path_join(p, sizeof p, r->dir, LOCK_FILE, err) != ECS_OK) return -1;
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    ecs_err_set(err, ECS_ERR_IO, "cannot open %s: %s", p, strerror(errno));
    return -1;
  }
  while (flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    ecs_err_set(err, ECS_ERR_IO, "cannot lock %s: %s", p, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static void unlock_registry(int fd) {
  if (fd >= 0) close(fd); /* closing releases the flock */
}

static ecs_status write_all(int fd, const void *buf, size_t n, const char *path, ecs_err *err) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ecs_err_set(err, ECS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return ECS_OK;
}

/* Creates a temporary file in dir; returns its fd and fills tmp, or -1 (err filled). */
static int temp_in(const char *dir, char *tmp, size_t n, ecs_err *err) {
  if (ecs_path_join(tmp, n, dir, ".tmp-XXXXXX", err) != ECS_OK) return -1;
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) ecs_err_set(err, ECS_ERR_IO, "cannot create a file in %s: %s", dir, strerror(errno));
  return fd;
}

static ecs_status finish_temp(int fd, const char *tmp, ecs_err *err) {
  if (fsync(fd) != 0) {
    ecs_err_set(err, ECS_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    close(fd);
    return ECS_ERR_IO;
  }
  if (close(fd) != 0) return ecs_err_set(err, ECS_ERR_IO, "close %s: %s", tmp, strerror(errno));
  return ECS_OK;
}

/* ---- reading the folder --------------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* "12.safetensors" -> 12; 0 for anything else (temporary files, strays). */
static int version_of(const char *fname) {
  size_t n = strlen(fname), el = strlen(EXT);
  if (n <= el || strcmp(fname + n - el, EXT) != 0 || fname[0] < '1' || fname[0] > '9') return 0;
  long v = 0;
  for (size_t i = 0; i < n - el; i++) {
    if (fname[i] < '0' || fname[i] > '9') return 0;
    v = v * 10 + (fname[i] - '0');
    if (v > INT_MAX) return 0;
  }
  return (int)v;
}

ecs_status api_reg_versions(const api_reg *r, const char *name, int **versions, int *n,
                            ecs_err *err) {
  *versions = NULL;
  *n = 0;
  ecs_status st = check_name(name, err);
  if (st != ECS_OK) return st;
  char dir[ECS_PATH_MAX];
  if ((st = ecs_path_join(dir, sizeof dir, r->dir, name, err)) != ECS_OK) return st;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT || errno == ENOTDIR) return ECS_OK;
    return ecs_err_set(err, ECS_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
  }
  int cap = 0, *v = NULL;
  struct dirent *e;
  while ((e = readdir(d))) {
    int ver = version_of(e->d_name);
    if (!ver) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 8;
      int *p = realloc(v, (size_t)cap * sizeof *v);
      if (!p) {
        free(v);
        closedir(d);
        return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
      }
      v = p;
    }
    v[(*n)++] = ver;
  }
  closedir(d);
  if (*n) qsort(v, (size_t)*n, sizeof *v, cmp_int);
  *versions = v;
  return ECS_OK;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(a, b);
}

ecs_status api_reg_names(const api_reg *r, char (**names)[API_REG_NAME_MAX], int *n, ecs_err *err) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(r->dir);
  if (!d) {
    if (errno == ENOENT) return ECS_OK;
    return ecs_err_set(err, ECS_ERR_IO, "cannot read %s: %s", r->dir, strerror(errno));
  }
  int cap = 0;
  char(*v)[API_REG_NAME_MAX] = NULL;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!api_reg_name_valid(e->d_name)) continue;
    int *vers = NULL, nv = 0;
    ecs_err ig;
    api_reg_versions(r, e->d_name, &vers, &nv, &ig);
    free(vers);
    if (nv == 0) continue; /* a stray folder or file without versions */
    if (*n == cap) {
      cap = cap ? cap * 2 : 8;
      char(*p)[API_REG_NAME_MAX] = realloc(v, (size_t)cap * sizeof *v);
      if (!p) {
        free(v);
        closedir(d);
        return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
      }
      v = p;
    }
    memcpy(v[*n], e->d_name, strlen(e->d_name) + 1); /* valid names are < API_REG_NAME_MAX */
    (*n)++;
  }
  closedir(d);
  if (*n) qsort(v, (size_t)*n, sizeof *v, cmp_name);
  *names = v;
  return ECS_OK;
}

/* ---- metadata ------------------------------------------------------------------------------- */

void api_model_summary_free(api_model_summary *s) {
  if (!s) return;
  free(s->classes);
  free(s->synonyms);
  free(s->groups);
  s->classes = NULL;
  s->synonyms = s->groups = NULL;
  s->n_classes = 0;
}

ecs_status api_model_summarise(const char *path, api_model_summary *out, ecs_err *err) {
  memset(out, 0, sizeof *out);
  struct stat sb;
  if (stat(path, &sb) != 0) return ecs_err_set(err, ECS_ERR_IO, "%s: %s", path, strerror(errno));
  out->created = (int64_t)sb.st_mtime;
  out->bytes = (int64_t)sb.st_size;
  ecs_err e;
  ecs_err_clear(&e);
  ecs_st_file *f = ecs_st_open(path, &e);
  if (!f) return ecs_err_set(err, e.status, "%s", e.msg);
  ecs_status st = ECS_OK;
  const char *bb = ecs_st_meta(f, "backbone"), *cl = ecs_st_meta(f, "classes");
  json_t *arr = cl ? json_loads(cl, 0, NULL) : NULL;
  if (!bb || !json_is_array(arr) || json_array_size(arr) < 1 ||
      json_array_size(arr) > ECS_MAX_CLASSES - 1) {
    st = ecs_err_set(err, ECS_ERR_FORMAT,
                     "%s is not an ECS-Net model: its metadata lacks a backbone or classes", path);
    goto done;
  }
  snprintf(out->backbone, sizeof out->backbone, "%s", bb);
  out->n_classes = (int)json_array_size(arr);
  out->classes = calloc((size_t)out->n_classes, sizeof *out->classes);
  if (!out->classes) {
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int k = 0; k < out->n_classes; k++) {
    const char *s = json_string_value(json_array_get(arr, (size_t)k));
    size_t l = s ? strnlen(s, sizeof out->classes[k] - 1) : 0;
    if (l) memcpy(out->classes[k], s, l);
    out->classes[k][l] = '\0';
  }
  const char *v = ecs_st_meta(f, "alpha_bg");
  if (v) { /* stored as a float with 9 digits: show the value it was set to (0.26, not 0.25999999)
            */
    char b[32];
    snprintf(b, sizeof b, "%.6g", (double)strtof(v, NULL));
    out->alpha_bg = strtod(b, NULL);
  }
  out->refine = (v = ecs_st_meta(f, "refine")) && atoi(v) > 0; /* as the engine reads it */
  v = ecs_st_meta(f, "provenance");
  snprintf(out->provenance, sizeof out->provenance, "%s", v ? v : "");
  if ((v = ecs_st_meta(f, "class_synonyms")) && !(out->synonyms = strdup(v)))
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  if ((v = ecs_st_meta(f, "groups")) && !(out->groups = strdup(v)))
    st = ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
done:
  json_decref(arr);
  ecs_st_close(f);
  if (st != ECS_OK) api_model_summary_free(out);
  return st;
}

/* ---- mutations ------------------------------------------------------------------------------ */

static ecs_status copy_to_temp(const char *src, const char *dir, char *tmp, size_t tmp_n,
                               ecs_err *err) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return ecs_err_set(err, ECS_ERR_IO, "cannot open %s: %s", src, strerror(errno));
  int out = temp_in(dir, tmp, tmp_n, err);
  if (out < 0) {
    close(in);
    return ECS_ERR_IO;
  }
  ecs_status st = ECS_OK;
  char buf[1 << 16];
  for (;;) {
    ssize_t k = read(in, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      st = ecs_err_set(err, ECS_ERR_IO, "cannot read %s: %s", src, strerror(errno));
      break;
    }
    if (k == 0) break;
    if ((st = write_all(out, buf, (size_t)k, tmp, err)) != ECS_OK) break;
  }
  close(in);
  if (st == ECS_OK)
    return finish_temp(out, tmp, err) == ECS_OK ? ECS_OK : (unlink(tmp), ECS_ERR_IO);
  close(out);
  unlink(tmp);
  return st;
}

/* The new version's bytes, written to a fresh temporary file *tmp in dir (fsync'd). */
typedef ecs_status (*fill_fn)(const void *src, const char *dir, char *tmp, size_t tmp_n,
                              ecs_err *err);

static ecs_status fill_copy(const void *src, const char *dir, char *tmp, size_t tmp_n,
                            ecs_err *err) {
  return copy_to_temp(src, dir, tmp, tmp_n, err);
}

/* ecs_model_save writes its own temporary file and renames it over the placeholder. */
static ecs_status fill_save(const void *src, const char *dir, char *tmp, size_t tmp_n,
                            ecs_err *err) {
  int fd = temp_in(dir, tmp, tmp_n, err);
  if (fd < 0) return ECS_ERR_IO;
  close(fd);
  api_model_summary sum;
  ecs_status st = ecs_model_save(src, tmp, err);
  if (st == ECS_OK && (st = api_model_summarise(tmp, &sum, err)) == ECS_OK)
    api_model_summary_free(&sum);
  if (st != ECS_OK) unlink(tmp);
  return st;
}

/* Adds the next version of name, its bytes from fill: under the lock, into a temporary file in
 * the name's folder, then hard-linked to its number. */
static ecs_status add_version(api_reg *r, const char *name, fill_fn fill, const void *src,
                              int *version, ecs_err *err) {
  ecs_status st = mkdir_one(r->dir, err);
  if (st != ECS_OK) return st;
  int lk = lock_registry(r, err);
  if (lk < 0) return err ? err->status : ECS_ERR_IO;
  char dir[ECS_PATH_MAX], tmp[ECS_PATH_MAX], dst[ECS_PATH_MAX];
  if ((st = ecs_path_join(dir, sizeof dir, r->dir, name, err)) != ECS_OK) goto out;
  struct stat sb;
  bool new_dir = stat(dir, &sb) != 0;
  if ((st = mkdir_one(dir, err)) != ECS_OK) goto out;
  if (new_dir && (st = fsync_dir(r->dir, err)) != ECS_OK) goto out;
  if ((st = fill(src, dir, tmp, sizeof tmp, err)) != ECS_OK) goto out;
  int *vers = NULL, nv = 0;
  st = api_reg_versions(r, name, &vers, &nv, err);
  int next = nv ? vers[nv - 1] + 1 : 1;
  free(vers);
  if (st == ECS_OK && next < 1)
    st = ecs_err_set(err, ECS_ERR_LIMIT, "%s has too many versions", name);
  if (st == ECS_OK) {
    st = ecs_path_fmt(dst, sizeof dst, err, "%s/%d" EXT, dir, next);
    /* link, not rename: an existing version is never replaced, whatever happens */
    if (st == ECS_OK && link(tmp, dst) != 0)
      st = ecs_err_set(err, ECS_ERR_IO, "cannot create %s: %s", dst, strerror(errno));
  }
  unlink(tmp);
  if (st == ECS_OK) st = fsync_dir(dir, err);
  if (st == ECS_OK) *version = next;
out:
  unlock_registry(lk);
  return st;
}

ecs_status api_reg_add(api_reg *r, const char *name, const char *src, int *version, ecs_err *err) {
  *version = 0;
  ecs_status st = check_name(name, err);
  if (st != ECS_OK) return st;
  api_model_summary sum;
  if ((st = api_model_summarise(src, &sum, err)) != ECS_OK) return st;
  api_model_summary_free(&sum);
  return add_version(r, name, fill_copy, src, version, err);
}

ecs_status api_reg_add_model(api_reg *r, const char *name, const ecs_model *m, int *version,
                             ecs_err *err) {
  *version = 0;
  ecs_status st = check_name(name, err);
  if (st != ECS_OK) return st;
  return add_version(r, name, fill_save, m, version, err);
}

/* Reads models/ACTIVE without checking that the version exists. */
static ecs_status read_pointer(const api_reg *r, char name[API_REG_NAME_MAX], int *version,
                               ecs_err *err) {
  *version = 0;
  name[0] = '\0';
  char p[ECS_PATH_MAX];
  ecs_status st = ecs_path_join(p, sizeof p, r->dir, POINTER_FILE, err);
  if (st != ECS_OK) return st;
  FILE *f = fopen(p, "re");
  if (!f) {
    if (errno == ENOENT) return ECS_OK;
    return ecs_err_set(err, ECS_ERR_IO, "cannot read %s: %s", p, strerror(errno));
  }
  char buf[256];
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  bool more = fgetc(f) != EOF;
  fclose(f);
  buf[k] = '\0';
  if (k > 0 && buf[k - 1] == '\n') buf[--k] = '\0';
  char *sp = strchr(buf, ' ');
  bool ok = !more && sp && strlen(buf) == k; /* no NUL bytes inside */
  if (ok) {
    *sp = '\0';
    const char *v = sp + 1;
    long ver = 0;
    ok = api_reg_name_valid(buf) && *v >= '1' && *v <= '9';
    for (; ok && *v; v++) {
      ok = *v >= '0' && *v <= '9' && (ver = ver * 10 + (*v - '0')) <= INT_MAX;
    }
    size_t len = strlen(buf);
    ok = ok && len < API_REG_NAME_MAX;
    if (ok) {
      memcpy(name, buf, len + 1);
      *version = (int)ver;
    }
  }
  if (!ok)
    return ecs_err_set(err, ECS_ERR_FORMAT,
                       "%s is corrupt: expected one line 'NAME VERSION'; fix or remove it", p);
  return ECS_OK;
}

ecs_status api_reg_active(const api_reg *r, char name[API_REG_NAME_MAX], int *version,
                          ecs_err *err) {
  ecs_status st = read_pointer(r, name, version, err);
  if (st != ECS_OK || *version == 0) return st;
  char p[ECS_PATH_MAX];
  if (api_reg_path(r, name, *version, p, sizeof p, NULL) != ECS_OK || access(p, R_OK) != 0) {
    int v = *version;
    *version = 0;
    return ecs_err_set(err, ECS_ERR_IO, "%s/" POINTER_FILE " names %s version %d, but %s: %s",
                       r->dir, name, v, p, strerror(errno));
  }
  return ECS_OK;
}

ecs_status api_reg_activate(api_reg *r, const char *name, int version, ecs_err *err) {
  char p[ECS_PATH_MAX], tmp[ECS_PATH_MAX], dst[ECS_PATH_MAX], line[128];
  ecs_status st = api_reg_path(r, name, version, p, sizeof p, err);
  if (st != ECS_OK) return st;
  int lk = lock_registry(r, err);
  if (lk < 0) return err ? err->status : ECS_ERR_IO;
  if (access(p, R_OK) != 0) {
    st = ecs_err_set(err, ECS_ERR_INVALID, "%s has no version %d", name, version);
    goto out;
  }
  int fd = temp_in(r->dir, tmp, sizeof tmp, err);
  if (fd < 0) {
    st = ECS_ERR_IO;
    goto out;
  }
  int len = snprintf(line, sizeof line, "%s %d\n", name, version);
  st = write_all(fd, line, (size_t)len, tmp, err);
  if (st == ECS_OK)
    st = finish_temp(fd, tmp, err);
  else
    close(fd);
  if (st == ECS_OK) st = ecs_path_join(dst, sizeof dst, r->dir, POINTER_FILE, err);
  if (st == ECS_OK && rename(tmp, dst) != 0)
    st = ecs_err_set(err, ECS_ERR_IO, "cannot replace %s: %s", dst, strerror(errno));
  if (st != ECS_OK) unlink(tmp);
  if (st == ECS_OK) st = fsync_dir(r->dir, err);
out:
  unlock_registry(lk);
  return st;
}

ecs_status api_reg_delete(api_reg *r, const char *name, int version, ecs_err *err) {
  char p[ECS_PATH_MAX], an[API_REG_NAME_MAX];
  ecs_status st = api_reg_path(r, name, version, p, sizeof p, err);
  if (st != ECS_OK) return st;
  int lk = lock_registry(r, err);
  if (lk < 0) return err ? err->status : ECS_ERR_IO;
  int av = 0;
  /* A pointer that cannot be read might name this version: refuse rather than guess. */
  if ((st = read_pointer(r, an, &av, err)) != ECS_OK) goto out;
  if (av == version && strcmp(an, name) == 0) {
    st = ecs_err_set(err, ECS_ERR_INVALID,
                     "%s version %d is the active version: activate another one first", name,
                     version);
    goto out;
  }
  if (unlink(p) != 0) {
    st = ecs_err_set(err, errno == ENOENT ? ECS_ERR_INVALID : ECS_ERR_IO, "cannot delete %s: %s", p,
                     strerror(errno));
    goto out;
  }
  char dir[ECS_PATH_MAX];
  st = ecs_path_join(dir, sizeof dir, r->dir, name, err);
  if (st == ECS_OK) st = fsync_dir(dir, err);
  if (st == ECS_OK && rmdir(dir) == 0) st = fsync_dir(r->dir, err); /* fails while not empty */
out:
  unlock_registry(lk);
  return st;
}

/* ---- the served model ----------------------------------------------------------------------- */

/* A registry name from a file name: its stem with anything outside the name alphabet as '-'. */
void api_name_of_file(const char *path, char name[API_REG_NAME_MAX]) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  while (*base == '.')
    base++;
  size_t n = strlen(base), el = strlen(EXT);
  if (n > el && strcmp(base + n - el, EXT) == 0) n -= el;
  if (n > API_REG_NAME_MAX - 1) n = API_REG_NAME_MAX - 1;
  for (size_t i = 0; i < n; i++) {
    char c = base[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    name[i] = ok ? c : '-';
  }
  name[n] = '\0';
  if (!api_reg_name_valid(name)) snprintf(name, API_REG_NAME_MAX, "model");
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The shipped defaults of models/, the current one first: the ImageNet model that `make build`
 * converts into models/ when the registries could be reached, else the synthetic model that is
 * committed. A registry whose active version is an earlier one of them moves to the current
 * one on start (shipped_upgrade). */
static const char *const k_shipped[] = {"ecsnet-imagenet-lite0", "ecsnet-synth-small"};
#define N_SHIPPED (sizeof k_shipped / sizeof k_shipped[0])
/* DATA/models/SHIPPED_FILE: "NAME VERSION" of the version the shipped logic activated */
#define SHIPPED_FILE ".shipped"

/* The first shipped default in dir, else the first *.safetensors by name, or false. */
static bool first_model_in(const char *dir, char *out, size_t n) {
  for (size_t i = 0; i < N_SHIPPED; i++)
    if (ecs_path_fmt(out, n, NULL, "%s/%s" EXT, dir, k_shipped[i]) == ECS_OK &&
        access(out, R_OK) == 0)
      return true;
  DIR *d = opendir(dir);
  if (!d) return false;
  char *names[256];
  int k = 0;
  struct dirent *e;
  size_t el = strlen(EXT);
  while ((e = readdir(d)) && k < 256) {
    size_t l = strlen(e->d_name);
    if (e->d_name[0] != '.' && l > el && strcmp(e->d_name + l - el, EXT) == 0 &&
        (names[k] = strdup(e->d_name)))
      k++;
  }
  closedir(d);
  qsort(names, (size_t)k, sizeof names[0], cmp_str);
  bool found = false;
  for (int i = 0; i < k; i++) {
    if (!found && ecs_path_join(out, n, dir, names[i], NULL) == ECS_OK && access(out, R_OK) == 0)
      found = true;
    free(names[i]);
  }
  return found;
}

bool api_shipped_model_path(const char *setting, char *out, size_t n) {
  if (setting) {
    if (!setting[0] || strcmp(setting, "none") == 0) return false;
    return ecs_path_join(out, n, NULL, setting, NULL) == ECS_OK && access(out, R_OK) == 0;
  }
  char exe[ECS_PATH_MAX];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k <= 0) return false;
  exe[k] = '\0';
  char *slash = strrchr(exe, '/');
  if (!slash) return false;
  *slash = '\0';
  static const char *const rel[] = {"/../../models", "/../models"};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
    char dir[ECS_PATH_MAX];
    if (ecs_path_fmt(dir, sizeof dir, NULL, "%s%s", exe, rel[i]) == ECS_OK &&
        first_model_in(dir, out, n))
      return true;
  }
  return false;
}

/* When path is DATA/models/NAME/V.safetensors, its name and version. */
static bool path_in_registry(const api_reg *r, const char *path, char name[API_REG_NAME_MAX],
                             int *version) {
  char rp[PATH_MAX], rd[PATH_MAX]; /* realpath's size */
  if (!realpath(path, rp) || !realpath(r->dir, rd)) return false;
  size_t dl = strlen(rd);
  if (strncmp(rp, rd, dl) != 0 || rp[dl] != '/') return false;
  const char *rest = rp + dl + 1, *slash = strchr(rest, '/');
  if (!slash || (size_t)(slash - rest) >= API_REG_NAME_MAX) return false;
  char nm[API_REG_NAME_MAX];
  memcpy(nm, rest, (size_t)(slash - rest));
  nm[slash - rest] = '\0';
  int v = version_of(slash + 1);
  if (!v || !api_reg_name_valid(nm)) return false;
  snprintf(name, API_REG_NAME_MAX, "%s", nm);
  *version = v;
  return true;
}

/* Whether two files hold the same bytes. */
static bool same_bytes(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  bool same = fa && fb;
  char x[65536], y[65536];
  while (same) {
    size_t na = fread(x, 1, sizeof x, fa), nb = fread(y, 1, sizeof y, fb);
    same = na == nb && memcmp(x, y, na) == 0;
    if (na == 0) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static void shipped_mark(const api_reg *w, const char *name, int v) {
  char p[ECS_PATH_MAX];
  FILE *f = ecs_path_join(p, sizeof p, w->dir, SHIPPED_FILE, NULL) == ECS_OK ? fopen(p, "w") : NULL;
  if (f) {
    fprintf(f, "%s %d\n", name, v);
    fclose(f);
  }
}

/* Whether the active version (name, v at path) is an earlier shipped default that the shipped
 * logic activated, not the user: a shipped default's name other than the current shipped
 * model's, the very bytes of that default in models/, and the marker naming it (or no marker:
 * registries made before there was one). */
static bool earlier_default(const api_reg *r, const char *name, int v, const char *path,
                            const char *shipped) {
  char cur[API_REG_NAME_MAX], p[ECS_PATH_MAX], dir[ECS_PATH_MAX], line[160], want[160];
  api_name_of_file(shipped, cur);
  bool known = false;
  for (size_t i = 1; i < N_SHIPPED; i++)
    known |= strcmp(name, k_shipped[i]) == 0 && strcmp(cur, k_shipped[0]) == 0;
  if (!known || strlen(shipped) >= sizeof dir) return false;
  snprintf(dir, sizeof dir, "%s", shipped);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  if (ecs_path_fmt(p, sizeof p, NULL, "%s/%s" EXT, slash ? dir : ".", name) != ECS_OK ||
      !same_bytes(p, path))
    return false;
  if (ecs_path_join(p, sizeof p, r->dir, SHIPPED_FILE, NULL) != ECS_OK) return false;
  FILE *f = fopen(p, "r");
  if (!f) return true;
  bool ok = fgets(line, sizeof line, f) != NULL;
  fclose(f);
  snprintf(want, sizeof want, "%s %d\n", name, v);
  return ok && strcmp(line, want) == 0;
}

/* Adds the shipped model as the next version of its name and activates it. */
static ecs_status adopt_shipped(const char *data_dir, const char *shipped, char *path, size_t n,
                                char name[API_REG_NAME_MAX], int *version, ecs_err *err) {
  api_name_of_file(shipped, name);
  api_reg *w = api_reg_open(data_dir, true, NULL);
  int v = 0;
  ecs_status st;
  ecs_err ig;
  ecs_err_clear(&ig);
  if (w && api_reg_add(w, name, shipped, &v, &ig) == ECS_OK &&
      api_reg_activate(w, name, v, &ig) == ECS_OK) {
    *version = v;
    shipped_mark(w, name, v);
    st = api_reg_path(w, name, v, path, n, err);
  } else if (ig.status == ECS_ERR_FORMAT) {
    st = ecs_err_set(err, ig.status, "shipped model: %s", ig.msg);
  } else { /* the data directory cannot be written: served from where it lies */
    *version = 1;
    st = ecs_path_join(path, n, NULL, shipped, err);
  }
  api_reg_free(w);
  return st;
}

ecs_status api_served_model(const api_model_opts *opts, char *path, size_t n,
                            char name[API_REG_NAME_MAX], int *version, ecs_err *err) {
  *version = 0;
  const char *data_dir = opts->data_dir && opts->data_dir[0] ? opts->data_dir : ".";
  api_reg *r = api_reg_open(data_dir, false, err);
  if (!r) return err ? err->status : ECS_ERR_NOMEM;
  ecs_status st = ECS_OK;
  if (opts->path && opts->path[0]) {
    st = ecs_path_join(path, n, NULL, opts->path, err);
    if (st == ECS_OK && !path_in_registry(r, path, name, version)) {
      api_name_of_file(path, name);
      *version = 1;
    }
    goto out;
  }
  if ((st = api_reg_active(r, name, version, err)) != ECS_OK) goto out;
  char shipped[ECS_PATH_MAX];
  bool have_shipped = api_shipped_model_path(opts->shipped_model, shipped, sizeof shipped);
  if (*version > 0) {
    st = api_reg_path(r, name, *version, path, n, err);
    if (st != ECS_OK || !have_shipped || !earlier_default(r, name, *version, path, shipped))
      goto out;
    char old[API_REG_NAME_MAX];
    int old_v = *version;
    snprintf(old, sizeof old, "%s", name);
    st = adopt_shipped(data_dir, shipped, path, n, name, version, err);
    if (st == ECS_OK && opts->note)
      snprintf(opts->note, opts->note_n,
               "the active model was %s version %d, an earlier shipped default: now %s version "
               "%d, the shipped default (a version you activate yourself always stays)",
               old, old_v, name, *version);
    goto out;
  }
  if (!have_shipped) {
    st = ecs_err_set(err, ECS_ERR_IO,
                     "no model to serve: no --model, no active version in %s, and no shipped "
                     "model (--shipped-model, or models/*.safetensors next to the program)",
                     r->dir);
    goto out;
  }
  /* First start: the shipped model becomes a registry version. */
  st = adopt_shipped(data_dir, shipped, path, n, name, version, err);
out:
  api_reg_free(r);
  return st;
}
