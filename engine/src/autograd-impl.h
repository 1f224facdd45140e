/* autograd-impl.h - the ecs_ctx internals shared by ctx.c (arena, forward ops) and autograd.c
 * (the backward walk). */
#ifndef ECS_AUTOGRAD_IMPL_H
#define ECS_AUTOGRAD_IMPL_H

#include "ecs/nn.h"

/* One allocation of the backend's buffer type, bump-allocated. */
typedef struct arena_chunk {
  ecs_buffer *buf;
  size_t size, used;
} arena_chunk;

/* One malloc'd block for tensor structs and tape nodes. */
typedef struct host_block {
  char *mem;
  size_t size, used;
} host_block;

/* A recorded forward op. `op` is the op as it ran (inputs, outputs, parameters); `saved` is
 * anything extra the backward needs that the op itself did not produce. */
struct ecs_node {
  ecs_op op;
  ecs_tensor *saved;
};

struct ecs_ctx {
  ecs_backend *be;
  ecs_device *dev;
  ecs_buffer_type *buft;
  size_t align;

  arena_chunk *chunks;
  size_t n_chunks, cap_chunks, cur_chunk;
  host_block *blocks;
  size_t n_blocks, cap_blocks, cur_block;

  struct ecs_node **tape;
  size_t tape_len, tape_cap;

  int grad_enabled, training;
  uint64_t rng;
  int (*yield)(void *user);
  void *yield_user;

  ecs_err err; /* sticky: err.status != ECS_OK once anything failed */
};

/* exec flags */
enum {
  EXEC_NO_PREPARE = 1, /* dst layouts were set by the caller (plain copies, in-place updates) */
};

/* Sets the sticky error (the first one wins) and returns its status. */
ecs_status ctx_fail(ecs_ctx *ctx, ecs_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A tensor struct in the host arena with a shape and no memory; NULL on failure (sticky). */
ecs_tensor *ctx_tensor(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne);
/* A plain tensor with memory from the arena. */
ecs_tensor *ctx_plain(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne);
/* Runs op on the backend: yield hook, layout fallback, prepare, allocation of dst tensors that
 * have no memory yet, compute. Failures are sticky. */
ecs_status ctx_exec(ecs_ctx *ctx, ecs_op *op, int flags);
/* A plain view or copy of t, never recorded on the tape. */
ecs_tensor *ctx_plain_copy(ecs_ctx *ctx, ecs_tensor *t);
/* 1 when t is a struct this ctx made (so its .grad may be an arena tensor). */
int ctx_owns(const ecs_ctx *ctx, const ecs_tensor *t);

/* Whether a gradient must flow into t. */
static inline int ctx_needs_grad(const ecs_tensor *t) {
  return t && t->requires_grad && !t->frozen;
}

#endif
