/* ctx.c - the eager execution context: arenas, tensors, and the forward half of every op.
 *
 * Memory. Tensors made during a pass live in an arena of device memory: chunks of the backend's
 * buffer type, bump-allocated at the buffer type's alignment. ecs_ctx_reset() rewinds every
 * chunk and keeps them, and allocation walks the chunks in order, so a pass that asks for the
 * same sizes in the same order lands in the same places and a steady loop allocates nothing.
 * A new chunk is at least as large as everything held so far, so a growing workload settles
 * after a few passes. Tensor structs and tape nodes come from a host arena that works the same
 * way, which keeps their pointers stable for the whole pass.
 *
 * Ops. Each function fills an ecs_op, lets the backend lay out the outputs (prepare), allocates
 * them and computes at once. When a backend does not support an op with the layouts it is given
 * (an input in another backend's private layout, say), the inputs are copied to plain ones and
 * the op is tried again, so backends only need to say what they can do.
 *
 * Recording. With gradients enabled, an op whose inputs need a gradient appends a node to the
 * tape and marks its output; autograd.c walks the tape backwards. Extra outputs that only the
 * backward needs (batch statistics, dropout masks, pooling workspaces) are asked for only then,
 * so inference pays nothing for them. */
#include "autograd-impl.h"
#include "backend-impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_BLOCK_MIN  ((size_t)64 * 1024)
#define ARENA_CHUNK_MIN ((size_t)1 << 20)

/* ---- errors ------------------------------------------------------------------------------- */

ecs_status ctx_fail(ecs_ctx *ctx, ecs_status st, const char *fmt, ...) {
  if (ctx->err.status != ECS_OK) return ctx->err.status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
  va_end(ap);
  ctx->err.status = st;
  return st;
}

/* Keeps the first error when a backend call filled a local ecs_err. */
static ecs_status ctx_fail_err(ecs_ctx *ctx, const ecs_err *e) {
  return ctx_fail(ctx, e->status != ECS_OK ? e->status : ECS_ERR_BACKEND, "%s", e->msg);
}

ecs_status ecs_ctx_status(const ecs_ctx *ctx, ecs_err *err) {
  if (!ctx) return ecs_err_set(err, ECS_ERR_INVALID, "no context");
  if (ctx->err.status != ECS_OK) return ecs_err_set(err, ctx->err.status, "%s", ctx->err.msg);
  return ECS_OK;
}

/* ---- life cycle --------------------------------------------------------------------------- */

ecs_ctx *ecs_ctx_new(ecs_backend *be, ecs_err *err) {
  if (!be) {
    ecs_err_set(err, ECS_ERR_INVALID, "ecs_ctx_new: no backend");
    return NULL;
  }
  ecs_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a context");
    return NULL;
  }
  ctx->be = be;
  ctx->dev = ecs_backend_device(be);
  ctx->buft = ecs_device_buffer_type(ctx->dev);
  ctx->align = ecs_buffer_type_alignment(ctx->buft);
  if (ctx->align < 64) ctx->align = 64; /* cache lines, and what vector kernels like */
  ctx->rng = 0x853c49e6748fea9bull;
  return ctx;
}

void ecs_ctx_free(ecs_ctx *ctx) {
  if (!ctx) return;
  for (size_t i = 0; i < ctx->n_chunks; i++)
    ecs_buffer_free(ctx->chunks[i].buf);
  for (size_t i = 0; i < ctx->n_blocks; i++)
    free(ctx->blocks[i].mem);
  free(ctx->chunks);
  free(ctx->blocks);
  free(ctx->tape);
  free(ctx);
}

void ecs_ctx_reset(ecs_ctx *ctx) {
  if (!ctx) return;
  for (size_t i = 0; i < ctx->n_chunks; i++)
    ctx->chunks[i].used = 0;
  for (size_t i = 0; i < ctx->n_blocks; i++)
    ctx->blocks[i].used = 0;
  ctx->cur_chunk = ctx->cur_block = 0;
  ctx->tape_len = 0;
  ecs_err_clear(&ctx->err);
}

ecs_backend *ecs_ctx_backend(ecs_ctx *ctx) {
  return ctx ? ctx->be : NULL;
}
void ecs_ctx_set_grad(ecs_ctx *ctx, int enabled) {
  if (ctx) ctx->grad_enabled = enabled != 0;
}
int ecs_ctx_grad_enabled(const ecs_ctx *ctx) {
  return ctx && ctx->grad_enabled;
}
void ecs_ctx_set_training(ecs_ctx *ctx, int training) {
  if (ctx) ctx->training = training != 0;
}
void ecs_ctx_set_seed(ecs_ctx *ctx, uint64_t seed) {
  if (ctx) ctx->rng = seed;
}
void ecs_ctx_set_yield(ecs_ctx *ctx, int (*fn)(void *user), void *user) {
  if (!ctx) return;
  ctx->yield = fn;
  ctx->yield_user = user;
}

size_t ecs_ctx_arena_bytes(const ecs_ctx *ctx) {
  size_t n = 0;
  for (size_t i = 0; ctx && i < ctx->n_chunks; i++)
    n += ctx->chunks[i].size;
  return n;
}

size_t ecs_ctx_tape_len(const ecs_ctx *ctx) {
  return ctx ? ctx->tape_len : 0;
}

/* ---- arenas ------------------------------------------------------------------------------- */

static size_t align_up(size_t v, size_t a) {
  return (v + a - 1) / a * a;
}

static void *host_alloc(ecs_ctx *ctx, size_t n) {
  n = align_up(n, sizeof(max_align_t));
  for (; ctx->cur_block < ctx->n_blocks; ctx->cur_block++) {
    host_block *b = &ctx->blocks[ctx->cur_block];
    if (b->size - b->used >= n) {
      void *p = b->mem + b->used;
      b->used += n;
      return p;
    }
  }
  size_t held = 0;
  for (size_t i = 0; i < ctx->n_blocks; i++)
    held += ctx->blocks[i].size;
  size_t size = n > HOST_BLOCK_MIN ? n : HOST_BLOCK_MIN;
  if (size < held) size = held;
  if (ctx->n_blocks == ctx->cap_blocks) {
    size_t cap = ctx->cap_blocks ? 2 * ctx->cap_blocks : 8;
    host_block *nb = realloc(ctx->blocks, cap * sizeof *nb);
    if (!nb) return NULL;
    ctx->blocks = nb;
    ctx->cap_blocks = cap;
  }
  char *mem = malloc(size);
  if (!mem) return NULL;
  ctx->blocks[ctx->n_blocks] = (host_block){.mem = mem, .size = size, .used = n};
  ctx->cur_block = ctx->n_blocks++;
  return mem;
}

int ctx_owns(const ecs_ctx *ctx, const ecs_tensor *t) {
  const char *p = (const char *)t;
  for (size_t i = 0; i < ctx->n_blocks; i++)
    if (p >= ctx->blocks[i].mem && p < ctx->blocks[i].mem + ctx->blocks[i].size) return 1;
  return 0;
}

/* Gives t memory for t->nbytes bytes from the arena. */
static ecs_status arena_alloc(ecs_ctx *ctx, ecs_tensor *t) {
  size_t n = align_up(t->nbytes ? t->nbytes : 1, ctx->align);
  for (; ctx->cur_chunk < ctx->n_chunks; ctx->cur_chunk++) {
    arena_chunk *c = &ctx->chunks[ctx->cur_chunk];
    size_t off = align_up(c->used, ctx->align);
    if (off <= c->size && c->size - off >= n) {
      t->data = (char *)ecs_buffer_base(c->buf) + off;
      t->buffer = c->buf;
      c->used = off + n;
      return ECS_OK;
    }
  }
  size_t size = n > ARENA_CHUNK_MIN ? n : ARENA_CHUNK_MIN;
  size_t held = ecs_ctx_arena_bytes(ctx);
  if (size < held) size = held;
  if (ctx->n_chunks == ctx->cap_chunks) {
    size_t cap = ctx->cap_chunks ? 2 * ctx->cap_chunks : 8;
    arena_chunk *nc = realloc(ctx->chunks, cap * sizeof *nc);
    if (!nc) return ctx_fail(ctx, ECS_ERR_NOMEM, "out of host memory");
    ctx->chunks = nc;
    ctx->cap_chunks = cap;
  }
  ecs_err e = {0};
  ecs_buffer *buf = ecs_buffer_alloc(ctx->buft, size, &e);
  if (!buf) return ctx_fail_err(ctx, &e);
  ctx->chunks[ctx->n_chunks] = (arena_chunk){.buf = buf, .size = size, .used = n};
  ctx->cur_chunk = ctx->n_chunks++;
  t->data = ecs_buffer_base(buf);
  t->buffer = buf;
  return ECS_OK;
}

ecs_tensor *ctx_tensor(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne) {
  if (ctx->err.status != ECS_OK) return NULL;
  if ((unsigned)type >= ECS_DTYPE_COUNT || nd < 1 || nd > ECS_MAX_DIMS || !ne) {
    ctx_fail(ctx, ECS_ERR_INVALID, "a tensor needs a dtype and 1 to %d dimensions, got %d",
             ECS_MAX_DIMS, nd);
    return NULL;
  }
  for (int k = 0; k < nd; k++)
    if (ne[k] < 0) {
      ctx_fail(ctx, ECS_ERR_INVALID, "tensor dimension %d is negative (%lld)", k, (long long)ne[k]);
      return NULL;
    }
  ecs_tensor *t = host_alloc(ctx, sizeof *t);
  if (!t) {
    ctx_fail(ctx, ECS_ERR_NOMEM, "out of host memory for tensor descriptors");
    return NULL;
  }
  memset(t, 0, sizeof *t);
  t->type = type;
  t->nd = nd;
  for (int k = 0; k < ECS_MAX_DIMS; k++)
    t->ne[k] = k < nd ? ne[k] : 1;
  t->layout = ECS_LAYOUT_PLAIN;
  t->nbytes = ecs_plain_nbytes(t);
  return t;
}

ecs_tensor *ctx_plain(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne) {
  ecs_tensor *t = ctx_tensor(ctx, type, nd, ne);
  if (t && arena_alloc(ctx, t) != ECS_OK) return NULL;
  return t;
}

ecs_tensor *ecs_new(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne) {
  return ctx ? ctx_plain(ctx, type, nd, ne) : NULL;
}

ecs_tensor *ecs_new_4d(ecs_ctx *ctx, ecs_dtype type, int64_t n, int64_t c, int64_t h, int64_t w) {
  return ecs_new(ctx, type, 4, (int64_t[]){n, c, h, w});
}

ecs_tensor *ecs_from_host(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne,
                          const void *data) {
  ecs_tensor *t = ecs_new(ctx, type, nd, ne);
  if (!t) return NULL;
  if (!data && t->nbytes) {
    ctx_fail(ctx, ECS_ERR_INVALID, "ecs_from_host: no data");
    return NULL;
  }
  ecs_err e = {0};
  if (t->nbytes && ecs_tensor_set_bytes(t, data, 0, t->nbytes, &e) != ECS_OK) {
    ctx_fail_err(ctx, &e);
    return NULL;
  }
  return t;
}

/* ---- running ops -------------------------------------------------------------------------- */

static int any_src_private(const ecs_op *op) {
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && op->src[i]->layout != ECS_LAYOUT_PLAIN) return 1;
  return 0;
}

ecs_status ctx_exec(ecs_ctx *ctx, ecs_op *op, int flags) {
  if (ctx->err.status != ECS_OK) return ctx->err.status;
  if (ctx->yield && ctx->yield(ctx->yield_user))
    return ctx_fail(ctx, ECS_ERR_CANCELLED, "stopped before %s", ecs_op_name(op->type));
  for (int i = 0; i < ECS_OP_MAX_SRC; i++)
    if (op->src[i] && !op->src[i]->data && ecs_plain_nbytes(op->src[i]))
      return ctx_fail(ctx, ECS_ERR_INVALID, "%s: input %d ('%s') has no memory",
                      ecs_op_name(op->type), i, op->src[i]->name);
  if (!ecs_device_supports_op(ctx->dev, op)) {
    if (any_src_private(op)) {
      for (int i = 0; i < ECS_OP_MAX_SRC; i++)
        if (op->src[i] && op->src[i]->layout != ECS_LAYOUT_PLAIN) {
          ecs_tensor *p = ctx_plain_copy(ctx, op->src[i]);
          if (!p) return ctx->err.status;
          op->src[i] = p;
        }
    }
    if (!ecs_device_supports_op(ctx->dev, op))
      return ctx_fail(ctx, ECS_ERR_UNSUPPORTED, "%s is not supported by backend %s",
                      ecs_op_name(op->type), ecs_backend_name(ctx->be));
  }
  ecs_err e = {0};
  if (!(flags & EXEC_NO_PREPARE) && ecs_backend_prepare(ctx->be, op, &e) != ECS_OK)
    return ctx_fail_err(ctx, &e);
  for (int i = 0; i < ECS_OP_MAX_DST; i++)
    if (op->dst[i] && !op->dst[i]->data && arena_alloc(ctx, op->dst[i]) != ECS_OK)
      return ctx->err.status;
  if (ecs_backend_compute(ctx->be, op, &e) != ECS_OK) return ctx_fail_err(ctx, &e);
  return ECS_OK;
}

ecs_tensor *ctx_plain_copy(ecs_ctx *ctx, ecs_tensor *t) {
  if (!t || t->layout == ECS_LAYOUT_PLAIN) return t;
  /* COPY converts between the layouts of its tensors: declaring the output plain ourselves
   * (no prepare) is how a plain result is asked for */
  ecs_tensor *p = ctx_tensor(ctx, t->type, t->nd, t->ne);
  if (!p) return NULL;
  ecs_op op = {.type = ECS_OP_COPY, .src = {t}, .dst = {p}};
  return ctx_exec(ctx, &op, EXEC_NO_PREPARE) == ECS_OK ? p : NULL;
}

ecs_status ecs_to_host(ecs_ctx *ctx, const ecs_tensor *t, void *dst, size_t n) {
  if (!ctx) return ECS_ERR_INVALID;
  if (ctx->err.status != ECS_OK) return ctx->err.status;
  if (!t || !dst) return ctx_fail(ctx, ECS_ERR_INVALID, "ecs_to_host: no tensor or destination");
  size_t need = ecs_plain_nbytes(t);
  if (n < need)
    return ctx_fail(ctx, ECS_ERR_INVALID, "ecs_to_host: '%s' needs %zu bytes, given %zu", t->name,
                    need, n);
  ecs_tensor *p = ctx_plain_copy(ctx, (ecs_tensor *)t);
  if (!p) return ctx->err.status;
  ecs_err e = {0};
  ecs_status st = ecs_backend_synchronize(ctx->be, &e);
  if (st == ECS_OK && need) st = ecs_tensor_get_bytes(p, dst, 0, need, &e);
  return st == ECS_OK ? ECS_OK : ctx_fail_err(ctx, &e);
}

/* ---- recording ---------------------------------------------------------------------------- */

static int should_record(const ecs_ctx *ctx, const ecs_tensor *a, const ecs_tensor *b,
                         const ecs_tensor *c) {
  return ctx->grad_enabled && (ctx_needs_grad(a) || ctx_needs_grad(b) || ctx_needs_grad(c));
}

static ecs_tensor *record(ecs_ctx *ctx, const ecs_op *op, ecs_tensor *saved) {
  ecs_tensor *out = op->dst[0];
  if (ctx->tape_len == ctx->tape_cap) {
    size_t cap = ctx->tape_cap ? 2 * ctx->tape_cap : 64;
    struct ecs_node **nt = realloc(ctx->tape, cap * sizeof *nt);
    if (!nt) {
      ctx_fail(ctx, ECS_ERR_NOMEM, "out of host memory for the tape");
      return NULL;
    }
    ctx->tape = nt;
    ctx->tape_cap = cap;
  }
  struct ecs_node *node = host_alloc(ctx, sizeof *node);
  if (!node) {
    ctx_fail(ctx, ECS_ERR_NOMEM, "out of host memory for the tape");
    return NULL;
  }
  node->op = *op;
  node->saved = saved;
  ctx->tape[ctx->tape_len++] = node;
  out->node = node;
  out->requires_grad = 1;
  return out;
}

/* Runs op (dst[0] is the result) and records it when rec is set. The tape keeps the inputs
 * as given: ctx_exec may swap in plain copies, which are not what gradients flow into. */
static ecs_tensor *run(ecs_ctx *ctx, ecs_op *op, int rec) {
  ecs_op as_given = *op;
  if (ctx_exec(ctx, op, 0) != ECS_OK) return NULL;
  return rec ? record(ctx, &as_given, NULL) : op->dst[0];
}

/* Common argument checks; the backend checks the full op contract. */
static int check_in(ecs_ctx *ctx, const char *fn, const char *what, const ecs_tensor *t, int nd) {
  if (!ctx || ctx->err.status != ECS_OK) return 0;
  if (!t) {
    ctx_fail(ctx, ECS_ERR_INVALID, "%s: %s is missing", fn, what);
    return 0;
  }
  if (nd > 0 && t->nd != nd) {
    char s[64];
    ctx_fail(ctx, ECS_ERR_INVALID, "%s: %s must have %d dimensions, got %s", fn, what, nd,
             ecs_shape_str(t, s, sizeof s));
    return 0;
  }
  return 1;
}

/* ---- differentiable ops ------------------------------------------------------------------- */

ecs_tensor *ecs_to_plain(ecs_ctx *ctx, ecs_tensor *t) {
  if (!check_in(ctx, "to_plain", "x", t, 0)) return NULL;
  if (t->layout == ECS_LAYOUT_PLAIN) return t;
  ecs_tensor *p = ctx_plain_copy(ctx, t);
  if (!p || !should_record(ctx, t, NULL, NULL)) return p;
  ecs_op op = {.type = ECS_OP_COPY, .src = {t}, .dst = {p}};
  return record(ctx, &op, NULL);
}

static ecs_tensor *relu_clip(ecs_ctx *ctx, ecs_tensor *x, float clip);

static ecs_tensor *conv2d(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *w, ecs_tensor *b, int stride,
                          int pad, int dil, int groups, ecs_act act) {
  if (!check_in(ctx, "conv2d", "x", x, 4) || !check_in(ctx, "conv2d", "the weight", w, 4))
    return NULL;
  if (stride < 1 || dil < 1 || pad < 0 || groups < 1) {
    ctx_fail(ctx, ECS_ERR_INVALID, "conv2d: stride %d, pad %d, dilation %d, groups %d", stride, pad,
             dil, groups);
    return NULL;
  }
  if ((unsigned)act >= ECS_ACT_COUNT) {
    ctx_fail(ctx, ECS_ERR_INVALID, "conv2d: unknown fused activation %d", (int)act);
    return NULL;
  }
  int64_t oh = ecs_conv_out_size(x->ne[2], (int)w->ne[2], stride, pad, dil);
  int64_t ow = ecs_conv_out_size(x->ne[3], (int)w->ne[3], stride, pad, dil);
  if (oh < 1 || ow < 1) {
    char s[64];
    ctx_fail(ctx, ECS_ERR_INVALID, "conv2d: kernel '%s' is larger than the padded input %s",
             w->name, ecs_shape_str(x, s, sizeof s));
    return NULL;
  }
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 4, (int64_t[]){x->ne[0], w->ne[0], oh, ow});
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_CONV2D, .src = {x, w, b}, .dst = {y}};
  op.p.conv = (typeof(op.p.conv)){{stride, stride}, {pad, pad}, {dil, dil}, groups, act};
  int rec = should_record(ctx, x, w, b);
  /* The fused op has no backward, and a backend may not take it: then the two ops it stands
   * for, recorded as usual. */
  if (act != ECS_ACT_NONE && (rec || !ecs_device_supports_op(ctx->dev, &op))) {
    op.p.conv.act = ECS_ACT_NONE;
    ecs_tensor *c = run(ctx, &op, rec);
    return c ? relu_clip(ctx, c, act == ECS_ACT_RELU6 ? 6.0f : 0.0f) : NULL;
  }
  return run(ctx, &op, rec);
}

ecs_tensor *ecs_conv2d(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *w, ecs_tensor *b, int stride,
                       int pad, int dil, int groups) {
  return conv2d(ctx, x, w, b, stride, pad, dil, groups, ECS_ACT_NONE);
}

ecs_tensor *ecs_conv2d_act(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *w, ecs_tensor *b, int stride,
                           int pad, int dil, int groups, ecs_act act) {
  return conv2d(ctx, x, w, b, stride, pad, dil, groups, act);
}

ecs_tensor *ecs_batchnorm(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *gamma, ecs_tensor *beta,
                          ecs_tensor *running_mean, ecs_tensor *running_var, int training,
                          float momentum, float eps) {
  if (!check_in(ctx, "batchnorm", "x", x, 0) || !check_in(ctx, "batchnorm", "gamma", gamma, 1) ||
      !check_in(ctx, "batchnorm", "beta", beta, 1))
    return NULL;
  if (!training && (!running_mean || !running_var)) {
    ctx_fail(ctx, ECS_ERR_INVALID, "batchnorm: frozen batch norm needs running statistics");
    return NULL;
  }
  int rec = should_record(ctx, x, gamma, beta);
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, x->nd, x->ne);
  if (!y) return NULL;
  ecs_op op = {
      .type = ECS_OP_BATCHNORM, .src = {x, gamma, beta, running_mean, running_var}, .dst = {y}};
  op.p.bn.eps = eps;
  op.p.bn.momentum = momentum;
  op.p.bn.training = training != 0;
  if (training && rec) {
    int64_t c = x->nd > 1 ? x->ne[1] : 1;
    op.dst[1] = ctx_tensor(ctx, ECS_F32, 1, &c);
    op.dst[2] = ctx_tensor(ctx, ECS_F32, 1, &c);
    if (!op.dst[1] || !op.dst[2]) return NULL;
  }
  return run(ctx, &op, rec);
}

static ecs_tensor *relu_clip(ecs_ctx *ctx, ecs_tensor *x, float clip) {
  if (!check_in(ctx, "relu", "x", x, 0)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, x->nd, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_RELU, .src = {x}, .dst = {y}, .p.act.clip = clip};
  return run(ctx, &op, should_record(ctx, x, NULL, NULL));
}

ecs_tensor *ecs_relu(ecs_ctx *ctx, ecs_tensor *x) {
  return relu_clip(ctx, x, 0);
}
ecs_tensor *ecs_relu6(ecs_ctx *ctx, ecs_tensor *x) {
  return relu_clip(ctx, x, 6);
}

static ecs_tensor *pool(ecs_ctx *ctx, ecs_tensor *x, ecs_pool_kind kind, int k, int stride, int pad,
                        int ceil_mode, int count_include_pad) {
  if (!check_in(ctx, "pool2d", "x", x, 4)) return NULL;
  if (k < 1 || stride < 1 || pad < 0) {
    ctx_fail(ctx, ECS_ERR_INVALID, "pool2d: kernel %d, stride %d, pad %d", k, stride, pad);
    return NULL;
  }
  int64_t oh = ecs_pool_out_size(x->ne[2], k, stride, pad, ceil_mode);
  int64_t ow = ecs_pool_out_size(x->ne[3], k, stride, pad, ceil_mode);
  if (oh < 1 || ow < 1) {
    char s[64];
    ctx_fail(ctx, ECS_ERR_INVALID, "pool2d: window %d is larger than the padded input %s", k,
             ecs_shape_str(x, s, sizeof s));
    return NULL;
  }
  int64_t ne[4] = {x->ne[0], x->ne[1], oh, ow};
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 4, ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_POOL2D, .src = {x}, .dst = {y}};
  op.p.pool.kind = kind;
  op.p.pool.k[0] = op.p.pool.k[1] = k;
  op.p.pool.stride[0] = op.p.pool.stride[1] = stride;
  op.p.pool.pad[0] = op.p.pool.pad[1] = pad;
  op.p.pool.ceil_mode = ceil_mode;
  op.p.pool.count_include_pad = count_include_pad;
  int rec = should_record(ctx, x, NULL, NULL);
  if (rec && kind == ECS_POOL_MAX && !(op.dst[1] = ctx_tensor(ctx, ECS_I32, 4, ne))) return NULL;
  return run(ctx, &op, rec);
}

ecs_tensor *ecs_max_pool2d(ecs_ctx *ctx, ecs_tensor *x, int k, int stride, int pad, int ceil_mode) {
  return pool(ctx, x, ECS_POOL_MAX, k, stride, pad, ceil_mode, 0);
}

ecs_tensor *ecs_avg_pool2d(ecs_ctx *ctx, ecs_tensor *x, int k, int stride, int pad, int ceil_mode,
                           int count_include_pad) {
  return pool(ctx, x, ECS_POOL_AVG, k, stride, pad, ceil_mode, count_include_pad);
}

ecs_tensor *ecs_gap(ecs_ctx *ctx, ecs_tensor *x) {
  if (!check_in(ctx, "gap", "x", x, 4)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 2, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_GAP, .src = {x}, .dst = {y}};
  return run(ctx, &op, should_record(ctx, x, NULL, NULL));
}

ecs_tensor *ecs_axpby(ecs_ctx *ctx, float alpha, ecs_tensor *a, float beta, ecs_tensor *b) {
  if (!check_in(ctx, "add", "a", a, 0) || !check_in(ctx, "add", "b", b, 0)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, a->nd, a->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_ADD, .src = {a, b}, .dst = {y}, .p.scalar = {alpha, beta}};
  return run(ctx, &op, should_record(ctx, a, b, NULL));
}

ecs_tensor *ecs_add(ecs_ctx *ctx, ecs_tensor *a, ecs_tensor *b) {
  return ecs_axpby(ctx, 1, a, 1, b);
}

ecs_tensor *ecs_scale(ecs_ctx *ctx, ecs_tensor *x, float a, float b) {
  if (!check_in(ctx, "scale", "x", x, 0)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, x->nd, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_SCALE, .src = {x}, .dst = {y}, .p.scalar = {a, b}};
  return run(ctx, &op, should_record(ctx, x, NULL, NULL));
}

ecs_tensor *ecs_mul(ecs_ctx *ctx, ecs_tensor *a, ecs_tensor *b) {
  if (!check_in(ctx, "mul", "a", a, 0) || !check_in(ctx, "mul", "b", b, 0)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, a->nd, a->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_MUL, .src = {a, b}, .dst = {y}};
  return run(ctx, &op, should_record(ctx, a, b, NULL));
}

ecs_tensor *ecs_concat(ecs_ctx *ctx, int n, ecs_tensor *const *xs) {
  if (!ctx || ctx->err.status != ECS_OK) return NULL;
  if (n < 1 || n > ECS_OP_MAX_SRC || !xs) {
    ctx_fail(ctx, ECS_ERR_INVALID, "concat: between 1 and %d inputs, got %d", ECS_OP_MAX_SRC, n);
    return NULL;
  }
  int rec = 0;
  int64_t c = 0;
  for (int i = 0; i < n; i++) {
    if (!check_in(ctx, "concat", "an input", xs[i], 0)) return NULL;
    if (xs[i]->nd < 2) {
      ctx_fail(ctx, ECS_ERR_INVALID, "concat: inputs need a channel dimension");
      return NULL;
    }
    c += xs[i]->ne[1];
    rec |= should_record(ctx, xs[i], NULL, NULL);
  }
  int64_t ne[ECS_MAX_DIMS];
  memcpy(ne, xs[0]->ne, sizeof ne);
  ne[1] = c;
  ecs_tensor *y = ctx_tensor(ctx, xs[0]->type, xs[0]->nd, ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_CONCAT, .dst = {y}, .p.concat.n = n};
  for (int i = 0; i < n; i++)
    op.src[i] = xs[i];
  return run(ctx, &op, rec);
}

/* splitmix64: one well-mixed seed per dropout call from the ctx's stream */
static uint64_t next_seed(ecs_ctx *ctx) {
  uint64_t z = (ctx->rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

ecs_tensor *ecs_dropout(ecs_ctx *ctx, ecs_tensor *x, float p) {
  if (!check_in(ctx, "dropout", "x", x, 0)) return NULL;
  if (!(p >= 0 && p < 1)) {
    ctx_fail(ctx, ECS_ERR_INVALID, "dropout: p = %g is outside [0, 1)", (double)p);
    return NULL;
  }
  if (!ctx->training || p == 0) return x;
  int rec = should_record(ctx, x, NULL, NULL);
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, x->nd, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_DROPOUT, .src = {x}, .dst = {y}};
  op.p.dropout.p = p;
  op.p.dropout.seed = next_seed(ctx);
  if (rec && !(op.dst[1] = ctx_tensor(ctx, ECS_U8, x->nd, x->ne))) return NULL;
  return run(ctx, &op, rec);
}

ecs_tensor *ecs_resize_bilinear(ecs_ctx *ctx, ecs_tensor *x, int64_t h, int64_t w) {
  if (!check_in(ctx, "resize_bilinear", "x", x, 4)) return NULL;
  if (h < 1 || w < 1) {
    ctx_fail(ctx, ECS_ERR_INVALID, "resize_bilinear: target size %lldx%lld", (long long)h,
             (long long)w);
    return NULL;
  }
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 4, (int64_t[]){x->ne[0], x->ne[1], h, w});
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_RESIZE_BILINEAR, .src = {x}, .dst = {y}};
  return run(ctx, &op, should_record(ctx, x, NULL, NULL));
}

static ecs_tensor *softmax_kind(ecs_ctx *ctx, ecs_op_type type, ecs_tensor *x, ecs_tensor *mask) {
  if (!check_in(ctx, ecs_op_name(type), "x", x, 0)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, x->nd, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = type, .src = {x, mask}, .dst = {y}};
  return run(ctx, &op, should_record(ctx, x, NULL, NULL));
}

ecs_tensor *ecs_softmax(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *class_mask) {
  return softmax_kind(ctx, ECS_OP_SOFTMAX, x, class_mask);
}

ecs_tensor *ecs_log_softmax(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *class_mask) {
  return softmax_kind(ctx, ECS_OP_LOG_SOFTMAX, x, class_mask);
}

ecs_tensor *ecs_ml_soft_margin(ecs_ctx *ctx, ecs_tensor *logits, ecs_tensor *targets) {
  if (!check_in(ctx, "ml_soft_margin", "the logits", logits, 2) ||
      !check_in(ctx, "ml_soft_margin", "the targets", targets, 2))
    return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 1, (int64_t[]){1});
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_ML_SOFT_MARGIN, .src = {logits, targets}, .dst = {y}};
  return run(ctx, &op, should_record(ctx, logits, NULL, NULL));
}

ecs_tensor *ecs_masked_ce(ecs_ctx *ctx, ecs_tensor *logits, ecs_tensor *labels,
                          ecs_tensor *class_mask, int ignore_index) {
  if (!check_in(ctx, "masked_ce", "the logits", logits, 0) ||
      !check_in(ctx, "masked_ce", "the labels", labels, 0))
    return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 1, (int64_t[]){1});
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_MASKED_CE,
               .src = {logits, labels, class_mask},
               .dst = {y},
               .p.ce.ignore_index = ignore_index};
  return run(ctx, &op, should_record(ctx, logits, NULL, NULL));
}

/* ---- not differentiable ------------------------------------------------------------------- */

ecs_tensor *ecs_maxmin_norm(ecs_ctx *ctx, ecs_tensor *x, float eps) {
  if (!check_in(ctx, "maxmin_norm", "x", x, 0)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, x->nd, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_MAXMIN_NORM, .src = {x}, .dst = {y}, .p.norm.eps = eps};
  return run(ctx, &op, 0);
}

ecs_tensor *ecs_gauss_blur(ecs_ctx *ctx, ecs_tensor *x, float sigma, int ksize) {
  if (!check_in(ctx, "gauss_blur", "x", x, 4)) return NULL;
  ecs_tensor *y = ctx_tensor(ctx, ECS_F32, 4, x->ne);
  if (!y) return NULL;
  ecs_op op = {.type = ECS_OP_GAUSS_BLUR, .src = {x}, .dst = {y}};
  op.p.blur.sigma = sigma;
  op.p.blur.ksize = ksize;
  return run(ctx, &op, 0);
}

ecs_tensor *ecs_detach(ecs_ctx *ctx, ecs_tensor *x) {
  if (!check_in(ctx, "detach", "x", x, 0)) return NULL;
  ecs_tensor *t = host_alloc(ctx, sizeof *t);
  if (!t) {
    ctx_fail(ctx, ECS_ERR_NOMEM, "out of host memory for tensor descriptors");
    return NULL;
  }
  *t = *x;
  t->grad = NULL;
  t->node = NULL;
  t->requires_grad = 0;
  return t;
}
