/* params.c - named parameter stores.
 *
 * A store is declared first (names, shapes, trainable or not) and allocated once: every tensor
 * gets an aligned slice of one buffer, so a model is one allocation that workers share
 * read-only, and saving or copying it walks one list in a stable (insertion) order that
 * matches the PyTorch state_dict it mirrors. Gradients are a second buffer made on demand,
 * because inference never needs them. Tensor structs are allocated one by one so that the
 * pointers handed out by ecs_params_add stay valid while the list grows. */
#include "backend-impl.h"
#include "ecs/nn.h"

#include <stdlib.h>
#include <string.h>

struct ecs_params {
  ecs_tensor **t;
  size_t n, cap;
  ecs_buffer_type *buft;
  ecs_buffer *buf;   /* values */
  ecs_buffer *gbuf;  /* gradients of the trainable tensors */
  ecs_tensor *grads; /* n descriptors, used for the trainable ones */
};

ecs_params *ecs_params_new(ecs_err *err) {
  ecs_params *ps = calloc(1, sizeof *ps);
  if (!ps) ecs_err_set(err, ECS_ERR_NOMEM, "params: out of memory");
  return ps;
}

void ecs_params_free(ecs_params *ps) {
  if (!ps) return;
  for (size_t i = 0; i < ps->n; i++)
    free(ps->t[i]);
  free(ps->t);
  free(ps->grads);
  ecs_buffer_free(ps->buf);
  ecs_buffer_free(ps->gbuf);
  free(ps);
}

ecs_tensor *ecs_params_add(ecs_params *ps, const char *name, ecs_dtype type, int nd,
                           const int64_t *ne, int trainable, ecs_err *err) {
  if (!ps || !name || !*name) {
    ecs_err_set(err, ECS_ERR_INVALID, "params: a tensor needs a name");
    return NULL;
  }
  if (ps->buf) {
    ecs_err_set(err, ECS_ERR_INVALID, "params: '%s' added after the store was allocated", name);
    return NULL;
  }
  if (strlen(name) >= sizeof ps->t[0]->name) {
    ecs_err_set(err, ECS_ERR_INVALID, "params: name '%.40s...' is longer than %zu characters", name,
                sizeof ps->t[0]->name - 1);
    return NULL;
  }
  if ((unsigned)type >= ECS_DTYPE_COUNT || nd < 1 || nd > ECS_MAX_DIMS || !ne) {
    ecs_err_set(err, ECS_ERR_INVALID, "params: '%s' has a bad dtype or %d dimensions", name, nd);
    return NULL;
  }
  for (int k = 0; k < nd; k++)
    if (ne[k] < 0) {
      ecs_err_set(err, ECS_ERR_INVALID, "params: '%s' has a negative size", name);
      return NULL;
    }
  if (ecs_params_find(ps, name)) {
    ecs_err_set(err, ECS_ERR_INVALID, "params: '%s' declared twice", name);
    return NULL;
  }
  if (ps->n == ps->cap) {
    size_t cap = ps->cap ? 2 * ps->cap : 32;
    ecs_tensor **nt = realloc(ps->t, cap * sizeof *nt);
    if (!nt) {
      ecs_err_set(err, ECS_ERR_NOMEM, "params: out of memory");
      return NULL;
    }
    ps->t = nt;
    ps->cap = cap;
  }
  ecs_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    ecs_err_set(err, ECS_ERR_NOMEM, "params: out of memory");
    return NULL;
  }
  t->type = type;
  t->nd = nd;
  for (int k = 0; k < ECS_MAX_DIMS; k++)
    t->ne[k] = k < nd ? ne[k] : 1;
  t->layout = ECS_LAYOUT_PLAIN;
  t->requires_grad = trainable && type == ECS_F32;
  t->frozen = !t->requires_grad;
  strcpy(t->name, name);
  ps->t[ps->n++] = t;
  return t;
}

static size_t align_up(size_t v, size_t a) {
  return (v + a - 1) / a * a;
}

/* Lays tensors out in one buffer; `grads` selects the gradient descriptors. */
static ecs_status alloc_into(ecs_params *ps, ecs_buffer_type *buft, int grads, ecs_err *err) {
  size_t align = ecs_buffer_type_alignment(buft);
  if (align == 0) align = 1;
  size_t total = 0;
  for (size_t i = 0; i < ps->n; i++) {
    if (grads && !ps->t[i]->requires_grad) continue;
    total = align_up(total, align) + ecs_plain_nbytes(ps->t[i]);
  }
  ecs_buffer *buf = ecs_buffer_alloc(buft, total ? total : align, err);
  if (!buf) return err ? err->status : ECS_ERR_NOMEM;
  ecs_status st = buf->iface.memset(buf, ecs_buffer_base(buf), 0, total ? total : align, err);
  if (st != ECS_OK) {
    ecs_buffer_free(buf);
    return st;
  }
  char *base = ecs_buffer_base(buf);
  size_t off = 0;
  for (size_t i = 0; i < ps->n; i++) {
    ecs_tensor *t = ps->t[i];
    if (grads && !t->requires_grad) continue;
    ecs_tensor *dst = t;
    if (grads) {
      dst = &ps->grads[i];
      memset(dst, 0, sizeof *dst);
      dst->type = t->type;
      dst->nd = t->nd;
      memcpy(dst->ne, t->ne, sizeof dst->ne);
      dst->layout = ECS_LAYOUT_PLAIN;
      memcpy(dst->name, t->name, sizeof dst->name);
      t->grad = dst;
    }
    off = align_up(off, align);
    dst->data = base + off;
    dst->nbytes = ecs_plain_nbytes(t);
    dst->buffer = buf;
    off += dst->nbytes;
  }
  if (grads)
    ps->gbuf = buf;
  else
    ps->buf = buf;
  return ECS_OK;
}

ecs_status ecs_params_alloc(ecs_params *ps, ecs_buffer_type *buft, ecs_err *err) {
  if (!ps || !buft)
    return ecs_err_set(err, ECS_ERR_INVALID, "params alloc: no store or buffer type");
  if (ps->buf) return ecs_err_set(err, ECS_ERR_INVALID, "params alloc: already allocated");
  ecs_status st = alloc_into(ps, buft, 0, err);
  if (st == ECS_OK) ps->buft = buft;
  return st;
}

ecs_status ecs_params_alloc_grads(ecs_params *ps, ecs_err *err) {
  if (!ps || !ps->buf)
    return ecs_err_set(err, ECS_ERR_INVALID, "params: allocate the store before its gradients");
  if (ps->gbuf) return ecs_params_zero_grads(ps, err);
  ps->grads = calloc(ps->n ? ps->n : 1, sizeof *ps->grads);
  if (!ps->grads) return ecs_err_set(err, ECS_ERR_NOMEM, "params: out of memory");
  ecs_status st = alloc_into(ps, ps->buft, 1, err);
  if (st != ECS_OK) {
    free(ps->grads);
    ps->grads = NULL;
  }
  return st;
}

ecs_status ecs_params_zero_grads(ecs_params *ps, ecs_err *err) {
  if (!ps) return ecs_err_set(err, ECS_ERR_INVALID, "params: no store");
  if (!ps->gbuf) return ECS_OK;
  return ps->gbuf->iface.memset(ps->gbuf, ecs_buffer_base(ps->gbuf), 0, ecs_buffer_size(ps->gbuf),
                                err);
}

size_t ecs_params_count(const ecs_params *ps) {
  return ps ? ps->n : 0;
}

ecs_tensor *ecs_params_at(const ecs_params *ps, size_t i) {
  return ps && i < ps->n ? ps->t[i] : NULL;
}

ecs_tensor *ecs_params_find(const ecs_params *ps, const char *name) {
  if (!ps || !name) return NULL;
  for (size_t i = 0; i < ps->n; i++)
    if (strcmp(ps->t[i]->name, name) == 0) return ps->t[i];
  return NULL;
}

ecs_buffer_type *ecs_params_buffer_type(const ecs_params *ps) {
  return ps ? ps->buft : NULL;
}

ecs_status ecs_params_copy(ecs_params *dst, const ecs_params *src, ecs_err *err) {
  if (!dst || !src) return ecs_err_set(err, ECS_ERR_INVALID, "params copy: no store");
  size_t maxn = 0;
  for (size_t i = 0; i < dst->n; i++) {
    const ecs_tensor *d = dst->t[i], *s = ecs_params_find(src, d->name);
    if (!s)
      return ecs_err_set(err, ECS_ERR_INVALID, "params copy: '%s' is missing from the source",
                         d->name);
    if (!ecs_same_shape(d, s) || d->type != s->type) {
      char a[64], b[64];
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "params copy: '%s' is %s %s in the source but %s %s here", d->name,
                         ecs_dtype_name(s->type), ecs_shape_str(s, a, sizeof a),
                         ecs_dtype_name(d->type), ecs_shape_str(d, b, sizeof b));
    }
    if (!d->data || !s->data)
      return ecs_err_set(err, ECS_ERR_INVALID, "params copy: '%s' has no memory", d->name);
    if (ecs_plain_nbytes(d) > maxn) maxn = ecs_plain_nbytes(d);
  }
  /* a host staging buffer works between any two buffer types */
  void *tmp = malloc(maxn ? maxn : 1);
  if (!tmp) return ecs_err_set(err, ECS_ERR_NOMEM, "params copy: out of memory");
  ecs_status st = ECS_OK;
  for (size_t i = 0; st == ECS_OK && i < dst->n; i++) {
    ecs_tensor *d = dst->t[i];
    const ecs_tensor *s = ecs_params_find(src, d->name);
    size_t n = ecs_plain_nbytes(d);
    st = ecs_tensor_get_bytes(s, tmp, 0, n, err);
    if (st == ECS_OK) st = ecs_tensor_set_bytes(d, tmp, 0, n, err);
  }
  free(tmp);
  return st;
}
