/* safetensors.c - reading and writing safetensors files.
 *
 * The engine must build where only CUDA is installed, so the header is read by the small strict
 * parser below rather than a JSON library. It does not parse JSON in general: it parses exactly
 * the schema a safetensors header can have (an object of tensor entries with "dtype", "shape"
 * and "data_offsets", plus an optional "__metadata__" object of strings) and rejects anything
 * else. That keeps a hostile file from reaching any code path that was not written for it.
 *
 * Every check happens at open time, before a tensor is exposed: header length within the file,
 * well-formed header, supported dtypes, shape x dtype size equal to the data_offsets span, spans
 * inside the data area and not overlapping, unique names. Tensor data pointers point into the
 * mapping and carry no alignment promise (a header length that is not a multiple of 8 is
 * legal), so readers copy the bytes out (ecs_tensor_set_bytes does). Writing is in
 * safetensors-write.c. */
#include "ecs/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB; a real header is kilobytes. */
#define ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

struct ecs_st_file {
  void *map; /* owned mapping, or NULL for ecs_st_open_memory */
  size_t map_len;
  ecs_st_tensor *t;
  size_t n, cap;
  size_t *by_name; /* indices of t sorted by name, for lookup and the duplicate check */
  char **meta_k, **meta_v;
  size_t n_meta, cap_meta;
};

/* ---- the header parser ------------------------------------------------------------------- */

typedef struct jp {
  const unsigned char *s;
  size_t n, i;
  ecs_err *err;
} jp;

static ecs_status jp_fail(jp *p, const char *what) {
  return ecs_err_set(p->err, ECS_ERR_FORMAT, "safetensors header: %s at byte %zu", what, p->i);
}

static void jp_ws(jp *p) {
  while (p->i < p->n &&
         (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
    p->i++;
}

static ecs_status jp_expect(jp *p, char c) {
  jp_ws(p);
  if (p->i >= p->n || p->s[p->i] != (unsigned char)c) {
    char what[32];
    snprintf(what, sizeof what, "expected '%c'", c);
    return jp_fail(p, what);
  }
  p->i++;
  return ECS_OK;
}

/* Returns 1 and consumes c when it is the next token. */
static int jp_accept(jp *p, char c) {
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] == (unsigned char)c) {
    p->i++;
    return 1;
  }
  return 0;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int jp_hex4(jp *p, unsigned *out) {
  if (p->n - p->i < 4) return 0;
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    int h = hexval(p->s[p->i + k]);
    if (h < 0) return 0;
    v = v << 4 | (unsigned)h;
  }
  p->i += 4;
  *out = v;
  return 1;
}

static size_t utf8_put(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* A JSON string, unescaped into a new NUL-terminated buffer. NUL characters are refused since
 * names and metadata are C strings everywhere else. */
static ecs_status jp_string(jp *p, char **out) {
  *out = NULL;
  ecs_status st = jp_expect(p, '"');
  if (st != ECS_OK) return st;
  size_t start = p->i, end = start;
  while (end < p->n && p->s[end] != '"')
    end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->n) return jp_fail(p, "unterminated string");
  /* unescaping never grows a string: \uXXXX (6 bytes) is at most 4 bytes of UTF-8 */
  char *o = malloc(end - start + 1);
  if (!o) return ecs_err_set(p->err, ECS_ERR_NOMEM, "safetensors header: out of memory");
  size_t k = 0;
  while (p->s[p->i] != '"') {
    unsigned char c = p->s[p->i];
    if (c < 0x20) {
      free(o);
      return jp_fail(p, "control character in string");
    }
    if (c != '\\') {
      o[k++] = (char)c;
      p->i++;
      continue;
    }
    p->i++;
    unsigned char e = p->s[p->i++];
    switch (e) {
    case '"': o[k++] = '"'; break;
    case '\\': o[k++] = '\\'; break;
    case '/': o[k++] = '/'; break;
    case 'b': o[k++] = '\b'; break;
    case 'f': o[k++] = '\f'; break;
    case 'n': o[k++] = '\n'; break;
    case 'r': o[k++] = '\r'; break;
    case 't': o[k++] = '\t'; break;
    case 'u': {
      unsigned cp, lo;
      if (!jp_hex4(p, &cp)) {
        free(o);
        return jp_fail(p, "bad \\u escape");
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
          free(o);
          return jp_fail(p, "unpaired surrogate in \\u escape");
        }
        p->i += 2;
        if (!jp_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
          free(o);
          return jp_fail(p, "unpaired surrogate in \\u escape");
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        free(o);
        return jp_fail(p, "unpaired surrogate in \\u escape");
      }
      if (cp == 0) {
        free(o);
        return jp_fail(p, "NUL character in string");
      }
      k += utf8_put(o + k, cp);
      break;
    }
    default:
      free(o);
      p->i--;
      return jp_fail(p, "bad escape in string");
    }
  }
  p->i++; /* closing quote */
  o[k] = '\0';
  *out = o;
  return ECS_OK;
}

/* A non-negative integer without sign, fraction or exponent (all a header can hold). */
static ecs_status jp_uint(jp *p, const char *name, const char *field, uint64_t *out) {
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] == '-')
    return ecs_err_set(p->err, ECS_ERR_FORMAT, "safetensors header: tensor '%s': negative %s", name,
                       field);
  if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
    return ecs_err_set(p->err, ECS_ERR_FORMAT,
                       "safetensors header: tensor '%s': %s must hold integers (byte %zu)", name,
                       field, p->i);
  if (p->s[p->i] == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
    return ecs_err_set(p->err, ECS_ERR_FORMAT,
                       "safetensors header: tensor '%s': leading zero in %s", name, field);
  uint64_t v = 0;
  while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
    unsigned d = p->s[p->i] - '0';
    if (v > (UINT64_MAX - d) / 10)
      return ecs_err_set(p->err, ECS_ERR_FORMAT,
                         "safetensors header: tensor '%s': %s value out of range", name, field);
    v = v * 10 + d;
    p->i++;
  }
  if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
    return ecs_err_set(p->err, ECS_ERR_FORMAT,
                       "safetensors header: tensor '%s': %s must hold integers", name, field);
  *out = v;
  return ECS_OK;
}

static ecs_status jp_uint_array(jp *p, const char *name, const char *field, uint64_t *v, int max,
                                int *count) {
  ecs_status st = jp_expect(p, '[');
  if (st != ECS_OK) return st;
  *count = 0;
  if (jp_accept(p, ']')) return ECS_OK;
  for (;;) {
    if (*count >= max)
      return ecs_err_set(p->err, ECS_ERR_FORMAT,
                         "safetensors header: tensor '%s': %s has more than %d entries", name,
                         field, max);
    if ((st = jp_uint(p, name, field, &v[*count])) != ECS_OK) return st;
    (*count)++;
    if (jp_accept(p, ']')) return ECS_OK;
    if ((st = jp_expect(p, ',')) != ECS_OK) return st;
  }
}

static const struct {
  const char *name;
  int ecs; /* ecs_dtype, or -1 for a valid safetensors dtype the engine does not support */
} g_dtypes[] = {
    {"F32", ECS_F32}, {"I32", ECS_I32}, {"U8", ECS_U8}, {"F64", -1},     {"F16", -1},
    {"BF16", -1},     {"I64", -1},      {"I16", -1},    {"I8", -1},      {"U16", -1},
    {"U32", -1},      {"U64", -1},      {"BOOL", -1},   {"F8_E4M3", -1}, {"F8_E5M2", -1},
};

static ecs_status parse_dtype(jp *p, const char *name, const char *s, ecs_dtype *out) {
  for (size_t k = 0; k < sizeof g_dtypes / sizeof g_dtypes[0]; k++) {
    if (strcmp(s, g_dtypes[k].name) != 0) continue;
    if (g_dtypes[k].ecs < 0)
      return ecs_err_set(p->err, ECS_ERR_FORMAT,
                         "safetensors: tensor '%s' has dtype %s, which the engine does not "
                         "support (F32, I32, U8)",
                         name, s);
    *out = (ecs_dtype)g_dtypes[k].ecs;
    return ECS_OK;
  }
  return ecs_err_set(p->err, ECS_ERR_FORMAT, "safetensors: tensor '%s' has unknown dtype '%.32s'",
                     name, s);
}

typedef struct st_entry {
  uint64_t begin, end;
} st_entry;

/* One tensor entry: {"dtype": .., "shape": [..], "data_offsets": [b, e]} in any order. */
static ecs_status parse_tensor(jp *p, const char *name, ecs_st_tensor *t, st_entry *off) {
  ecs_status st = jp_expect(p, '{');
  if (st != ECS_OK) return st;
  int have_dtype = 0, have_shape = 0, have_off = 0;
  if (!jp_accept(p, '}')) {
    for (;;) {
      char *key;
      if ((st = jp_string(p, &key)) != ECS_OK) return st;
      if ((st = jp_expect(p, ':')) != ECS_OK) {
        free(key);
        return st;
      }
      int *seen = strcmp(key, "dtype") == 0          ? &have_dtype
                  : strcmp(key, "shape") == 0        ? &have_shape
                  : strcmp(key, "data_offsets") == 0 ? &have_off
                                                     : NULL;
      if (!seen || *seen) {
        st = ecs_err_set(p->err, ECS_ERR_FORMAT, "safetensors header: tensor '%s': %s key '%.64s'",
                         name, seen ? "repeated" : "unexpected", key);
        free(key);
        return st;
      }
      *seen = 1;
      if (seen == &have_dtype) {
        char *d;
        if ((st = jp_string(p, &d)) == ECS_OK) {
          st = parse_dtype(p, name, d, &t->type);
          free(d);
        }
      } else if (seen == &have_shape) {
        uint64_t dims[ECS_MAX_DIMS];
        if ((st = jp_uint_array(p, name, "shape", dims, ECS_MAX_DIMS, &t->nd)) == ECS_OK) {
          for (int k = 0; k < ECS_MAX_DIMS; k++)
            t->ne[k] = 1;
          for (int k = 0; k < t->nd; k++) {
            if (dims[k] > (uint64_t)INT64_MAX) {
              st = ecs_err_set(p->err, ECS_ERR_FORMAT,
                               "safetensors header: tensor '%s': shape out of range", name);
              break;
            }
            t->ne[k] = (int64_t)dims[k];
          }
        }
      } else {
        uint64_t v[2] = {0, 0};
        int cnt = 0;
        if ((st = jp_uint_array(p, name, "data_offsets", v, 2, &cnt)) == ECS_OK && cnt != 2)
          st = ecs_err_set(p->err, ECS_ERR_FORMAT,
                           "safetensors header: tensor '%s': data_offsets needs 2 entries", name);
        off->begin = v[0];
        off->end = v[1];
      }
      free(key);
      if (st != ECS_OK) return st;
      if (jp_accept(p, '}')) break;
      if ((st = jp_expect(p, ',')) != ECS_OK) return st;
    }
  }
  if (!have_dtype || !have_shape || !have_off)
    return ecs_err_set(p->err, ECS_ERR_FORMAT, "safetensors header: tensor '%s': missing '%s'",
                       name,
                       !have_dtype   ? "dtype"
                       : !have_shape ? "shape"
                                     : "data_offsets");
  return ECS_OK;
}

static ecs_status parse_metadata(jp *p, ecs_st_file *f) {
  ecs_status st = jp_expect(p, '{');
  if (st != ECS_OK) return st;
  if (jp_accept(p, '}')) return ECS_OK;
  for (;;) {
    char *k = NULL, *v = NULL;
    if ((st = jp_string(p, &k)) != ECS_OK) return st;
    if ((st = jp_expect(p, ':')) != ECS_OK) {
      free(k);
      return st;
    }
    jp_ws(p);
    if (p->i >= p->n || p->s[p->i] != '"') {
      st = ecs_err_set(p->err, ECS_ERR_FORMAT,
                       "safetensors header: __metadata__ value of '%.64s' is not a string", k);
      free(k);
      return st;
    }
    if ((st = jp_string(p, &v)) != ECS_OK) {
      free(k);
      return st;
    }
    for (size_t i = 0; i < f->n_meta; i++)
      if (strcmp(f->meta_k[i], k) == 0) {
        st = ecs_err_set(p->err, ECS_ERR_FORMAT,
                         "safetensors header: __metadata__ key '%.64s' repeated", k);
        free(k);
        free(v);
        return st;
      }
    if (f->n_meta == f->cap_meta) {
      size_t cap = f->cap_meta ? 2 * f->cap_meta : 8;
      char **nk = realloc(f->meta_k, cap * sizeof *nk);
      if (nk) f->meta_k = nk;
      char **nv = nk ? realloc(f->meta_v, cap * sizeof *nv) : NULL;
      if (nv) f->meta_v = nv;
      if (!nk || !nv) {
        free(k);
        free(v);
        return ecs_err_set(p->err, ECS_ERR_NOMEM, "safetensors: out of memory");
      }
      f->cap_meta = cap;
    }
    f->meta_k[f->n_meta] = k;
    f->meta_v[f->n_meta++] = v;
    if (jp_accept(p, '}')) return ECS_OK;
    if ((st = jp_expect(p, ',')) != ECS_OK) return st;
  }
}

/* ---- validation of the parsed entries ------------------------------------------------------ */

/* Sort keys that carry what they compare, since C11's qsort has no context argument and a
 * global would make concurrent opens race. */
typedef struct by_name_key {
  const char *name;
  size_t idx;
} by_name_key;

typedef struct by_begin_key {
  uint64_t begin, end;
  size_t idx;
} by_begin_key;

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const by_name_key *)a)->name, ((const by_name_key *)b)->name);
}
static int cmp_begin(const void *a, const void *b) {
  uint64_t x = ((const by_begin_key *)a)->begin, y = ((const by_begin_key *)b)->begin;
  return x < y ? -1 : x > y;
}

static ecs_status validate(ecs_st_file *f, const st_entry *off, uint64_t data_len, ecs_err *err) {
  for (size_t i = 0; i < f->n; i++) {
    ecs_st_tensor *t = &f->t[i];
    uint64_t bytes = ecs_dtype_size(t->type);
    for (int k = 0; k < t->nd; k++)
      if (__builtin_mul_overflow(bytes, (uint64_t)t->ne[k], &bytes))
        return ecs_err_set(err, ECS_ERR_FORMAT, "safetensors: tensor '%s': shape too large",
                           t->name);
    if (off[i].begin > off[i].end)
      return ecs_err_set(err, ECS_ERR_FORMAT,
                         "safetensors: tensor '%s': data_offsets [%llu, %llu] are reversed",
                         t->name, (unsigned long long)off[i].begin, (unsigned long long)off[i].end);
    if (off[i].end > data_len)
      return ecs_err_set(err, ECS_ERR_FORMAT,
                         "safetensors: tensor '%s': data_offsets end %llu is past the data "
                         "(%llu bytes)",
                         t->name, (unsigned long long)off[i].end, (unsigned long long)data_len);
    if (off[i].end - off[i].begin != bytes)
      return ecs_err_set(err, ECS_ERR_FORMAT,
                         "safetensors: tensor '%s': shape and dtype %s need %llu bytes but "
                         "data_offsets span %llu",
                         t->name, ecs_dtype_name(t->type), (unsigned long long)bytes,
                         (unsigned long long)(off[i].end - off[i].begin));
    t->nbytes = (size_t)bytes;
  }
  if (f->n == 0) return ECS_OK;
  by_name_key *names = malloc(f->n * sizeof *names);
  by_begin_key *spans = malloc(f->n * sizeof *spans);
  f->by_name = malloc(f->n * sizeof *f->by_name);
  if (!names || !spans || !f->by_name) {
    free(names);
    free(spans);
    return ecs_err_set(err, ECS_ERR_NOMEM, "safetensors: out of memory");
  }
  for (size_t i = 0; i < f->n; i++) {
    names[i] = (by_name_key){f->t[i].name, i};
    spans[i] = (by_begin_key){off[i].begin, off[i].end, i};
  }
  qsort(names, f->n, sizeof *names, cmp_name);
  ecs_status st = ECS_OK;
  for (size_t i = 0; i < f->n; i++) {
    f->by_name[i] = names[i].idx;
    if (i && st == ECS_OK && strcmp(names[i].name, names[i - 1].name) == 0)
      st =
          ecs_err_set(err, ECS_ERR_FORMAT, "safetensors: tensor '%s' appears twice", names[i].name);
  }
  qsort(spans, f->n, sizeof *spans, cmp_begin);
  /* empty tensors occupy nothing and may sit anywhere */
  const by_begin_key *prev = NULL;
  for (size_t k = 0; k < f->n && st == ECS_OK; k++) {
    if (spans[k].begin == spans[k].end) continue;
    if (prev && spans[k].begin < prev->end)
      st = ecs_err_set(err, ECS_ERR_FORMAT, "safetensors: tensors '%s' and '%s' overlap",
                       f->t[prev->idx].name, f->t[spans[k].idx].name);
    prev = &spans[k];
  }
  free(names);
  free(spans);
  return st;
}

/* ---- opening ------------------------------------------------------------------------------ */

static ecs_status parse_file(ecs_st_file *f, const unsigned char *bytes, size_t n, ecs_err *err) {
  if (n < 8)
    return ecs_err_set(err, ECS_ERR_FORMAT,
                       "safetensors: file of %zu bytes is shorter than the "
                       "8-byte header length",
                       n);
  uint64_t hlen = 0;
  for (int k = 7; k >= 0; k--)
    hlen = hlen << 8 | bytes[k];
  if (hlen > ST_MAX_HEADER)
    return ecs_err_set(err, ECS_ERR_FORMAT, "safetensors: header length %llu is too large",
                       (unsigned long long)hlen);
  if (hlen > n - 8)
    return ecs_err_set(err, ECS_ERR_FORMAT,
                       "safetensors: header length %llu runs past the end of the file (%zu bytes)",
                       (unsigned long long)hlen, n);
  jp p = {.s = bytes + 8, .n = (size_t)hlen, .i = 0, .err = err};
  st_entry *off = NULL;
  int have_meta = 0;
  ecs_status st = jp_expect(&p, '{');
  if (st == ECS_OK && !jp_accept(&p, '}')) {
    for (;;) {
      char *key;
      if ((st = jp_string(&p, &key)) != ECS_OK) break;
      if ((st = jp_expect(&p, ':')) != ECS_OK) {
        free(key);
        break;
      }
      if (strcmp(key, "__metadata__") == 0) {
        free(key);
        if (have_meta) {
          st = ecs_err_set(err, ECS_ERR_FORMAT, "safetensors header: __metadata__ repeated");
          break;
        }
        have_meta = 1;
        if ((st = parse_metadata(&p, f)) != ECS_OK) break;
      } else {
        if (f->n == f->cap) {
          size_t cap = f->cap ? 2 * f->cap : 16;
          ecs_st_tensor *nt = realloc(f->t, cap * sizeof *nt);
          if (nt) f->t = nt;
          st_entry *no = nt ? realloc(off, cap * sizeof *no) : NULL;
          if (no) off = no;
          if (!nt || !no) {
            free(key);
            st = ecs_err_set(err, ECS_ERR_NOMEM, "safetensors: out of memory");
            break;
          }
          f->cap = cap;
        }
        ecs_st_tensor *t = &f->t[f->n];
        memset(t, 0, sizeof *t);
        t->name = key;
        f->n++;
        if ((st = parse_tensor(&p, key, t, &off[f->n - 1])) != ECS_OK) break;
      }
      if (jp_accept(&p, '}')) break;
      if ((st = jp_expect(&p, ',')) != ECS_OK) break;
    }
  }
  if (st == ECS_OK) {
    jp_ws(&p);
    if (p.i != p.n) st = jp_fail(&p, "trailing bytes after the header object");
  }
  if (st == ECS_OK) {
    uint64_t data_len = (uint64_t)n - 8 - hlen;
    st = validate(f, off, data_len, err);
    for (size_t i = 0; st == ECS_OK && i < f->n; i++)
      f->t[i].data = bytes + 8 + hlen + off[i].begin;
  }
  free(off);
  return st;
}

ecs_st_file *ecs_st_open_memory(const void *bytes, size_t n, ecs_err *err) {
  ecs_st_file *f = calloc(1, sizeof *f);
  if (!f) {
    ecs_err_set(err, ECS_ERR_NOMEM, "safetensors: out of memory");
    return NULL;
  }
  if (!bytes && n) {
    free(f);
    ecs_err_set(err, ECS_ERR_INVALID, "safetensors: NULL buffer");
    return NULL;
  }
  if (parse_file(f, bytes, n, err) != ECS_OK) {
    ecs_st_close(f);
    return NULL;
  }
  return f;
}

ecs_st_file *ecs_st_open(const char *path, ecs_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ecs_err_set(err, ECS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ecs_err_set(err, ECS_ERR_IO, "'%s' is not a readable regular file", path);
    close(fd);
    return NULL;
  }
  size_t n = (size_t)sb.st_size;
  if (n < 8) {
    close(fd);
    ecs_err_set(err, ECS_ERR_FORMAT, "safetensors: '%s' has %zu bytes, too short for a header",
                path, n);
    return NULL;
  }
  void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    ecs_err_set(err, ECS_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    return NULL;
  }
  ecs_err local = {0};
  ecs_st_file *f = ecs_st_open_memory(map, n, &local);
  if (!f) {
    munmap(map, n);
    ecs_err_set(err, local.status, "%s: %s", path, local.msg);
    return NULL;
  }
  f->map = map;
  f->map_len = n;
  return f;
}

void ecs_st_close(ecs_st_file *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n; i++)
    free((char *)f->t[i].name);
  for (size_t i = 0; i < f->n_meta; i++) {
    free(f->meta_k[i]);
    free(f->meta_v[i]);
  }
  free(f->t);
  free(f->by_name);
  free(f->meta_k);
  free(f->meta_v);
  if (f->map) munmap(f->map, f->map_len);
  free(f);
}

size_t ecs_st_count(const ecs_st_file *f) {
  return f ? f->n : 0;
}

const ecs_st_tensor *ecs_st_at(const ecs_st_file *f, size_t i) {
  return f && i < f->n ? &f->t[i] : NULL;
}

const ecs_st_tensor *ecs_st_find(const ecs_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  size_t lo = 0, hi = f->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->t[f->by_name[mid]].name, name);
    if (c == 0) return &f->t[f->by_name[mid]];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

const char *ecs_st_meta(const ecs_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (size_t i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta_k[i], key) == 0) return f->meta_v[i];
  return NULL;
}

size_t ecs_st_meta_count(const ecs_st_file *f) {
  return f ? f->n_meta : 0;
}

const char *ecs_st_meta_key(const ecs_st_file *f, size_t i) {
  return f && i < f->n_meta ? f->meta_k[i] : NULL;
}
