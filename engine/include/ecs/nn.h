/* ecs/nn.h - eager, differentiable operations on a backend, with a tape for autograd.
 *
 * An ecs_ctx is one worker's workspace: a backend (stream), an arena of device memory for the
 * tensors it makes, and a tape. Every function below runs its op at once on the ctx's backend
 * and returns the result, allocated from the arena; ecs_ctx_reset() releases all of them at once
 * and keeps the memory for the next pass, so a steady loop of same-size passes allocates
 * nothing. When gradients are enabled and an input requires one, the op is recorded on the tape;
 * ecs_backward() walks the tape in reverse and accumulates into the .grad of every leaf that
 * requires one (parameters), so two passes sharing weights simply add up.
 *
 * Errors are sticky: the first failure is stored in the ctx, that call and every later one
 * return NULL, and ecs_ctx_status() reports it. Check once at the end of a pass.
 *
 * Ownership: a ctx borrows its backend and any parameter tensors passed in (read-only unless a
 * backward pass writes their .grad). One ctx is used by one thread at a time. */
#ifndef ECS_NN_H
#define ECS_NN_H

#include "ecs/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ecs_ctx ecs_ctx;

ecs_ctx *ecs_ctx_new(ecs_backend *be, ecs_err *err);
void ecs_ctx_free(ecs_ctx *ctx);  /* accepts NULL */
void ecs_ctx_reset(ecs_ctx *ctx); /* drops tensors, tape and a sticky error; keeps memory */
ecs_backend *ecs_ctx_backend(ecs_ctx *ctx);
void ecs_ctx_set_grad(ecs_ctx *ctx, int enabled); /* default off: inference records nothing */
int ecs_ctx_grad_enabled(const ecs_ctx *ctx);
void ecs_ctx_set_training(ecs_ctx *ctx, int training); /* dropout active; default off */
void ecs_ctx_set_seed(ecs_ctx *ctx, uint64_t seed);    /* dropout masks */
ecs_status ecs_ctx_status(const ecs_ctx *ctx, ecs_err *err);
/* Called between ops (forward and backward) when set; a non-zero return stops the pass with
 * ECS_ERR_CANCELLED. Lets training yield to inference and honour a cancel flag mid-step. */
void ecs_ctx_set_yield(ecs_ctx *ctx, int (*fn)(void *user), void *user);
size_t ecs_ctx_arena_bytes(const ecs_ctx *ctx); /* device memory held */
size_t ecs_ctx_tape_len(const ecs_ctx *ctx);

/* tensors in the arena */
ecs_tensor *ecs_new(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne);
ecs_tensor *ecs_new_4d(ecs_ctx *ctx, ecs_dtype type, int64_t n, int64_t c, int64_t h, int64_t w);
ecs_tensor *ecs_from_host(ecs_ctx *ctx, ecs_dtype type, int nd, const int64_t *ne,
                          const void *data);
/* Copies t's logical contents (converted to the plain layout) into dst of n bytes. */
ecs_status ecs_to_host(ecs_ctx *ctx, const ecs_tensor *t, void *dst, size_t n);
ecs_tensor *ecs_to_plain(ecs_ctx *ctx, ecs_tensor *t); /* t itself when already plain */

/* differentiable ops */
ecs_tensor *ecs_conv2d(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *w, ecs_tensor *b, int stride,
                       int pad, int dil, int groups);
/* act(conv2d(x)), e.g. ecs_relu(ctx, ecs_conv2d(...)) for ECS_ACT_RELU (ecs_relu6 for
 * ECS_ACT_RELU6), as one op that the
 * backend runs fused (oneDNN: a post-op of the convolution). When a gradient is recorded
 * through it, or the backend does not take the fused op, it runs and records the two ops
 * instead, so the result and its gradient are always those of the pair. */
ecs_tensor *ecs_conv2d_act(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *w, ecs_tensor *b, int stride,
                           int pad, int dil, int groups, ecs_act act);
/* training = 1 uses batch statistics and updates the running ones; 0 uses running statistics
 * (frozen BN). gamma/beta may be frozen parameters. */
ecs_tensor *ecs_batchnorm(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *gamma, ecs_tensor *beta,
                          ecs_tensor *running_mean, ecs_tensor *running_var, int training,
                          float momentum, float eps);
ecs_tensor *ecs_relu(ecs_ctx *ctx, ecs_tensor *x);
ecs_tensor *ecs_relu6(ecs_ctx *ctx, ecs_tensor *x);
ecs_tensor *ecs_max_pool2d(ecs_ctx *ctx, ecs_tensor *x, int k, int stride, int pad, int ceil_mode);
ecs_tensor *ecs_avg_pool2d(ecs_ctx *ctx, ecs_tensor *x, int k, int stride, int pad, int ceil_mode,
                           int count_include_pad);
ecs_tensor *ecs_gap(ecs_ctx *ctx, ecs_tensor *x); /* (N,C,H,W) -> (N,C) */
ecs_tensor *ecs_add(ecs_ctx *ctx, ecs_tensor *a, ecs_tensor *b);
ecs_tensor *ecs_axpby(ecs_ctx *ctx, float alpha, ecs_tensor *a, float beta, ecs_tensor *b);
ecs_tensor *ecs_scale(ecs_ctx *ctx, ecs_tensor *x, float a, float b); /* a*x + b */
ecs_tensor *ecs_mul(ecs_ctx *ctx, ecs_tensor *a, ecs_tensor *b);
ecs_tensor *ecs_concat(ecs_ctx *ctx, int n, ecs_tensor *const *xs); /* along C */
ecs_tensor *ecs_dropout(ecs_ctx *ctx, ecs_tensor *x, float p);      /* identity unless training */
ecs_tensor *ecs_resize_bilinear(ecs_ctx *ctx, ecs_tensor *x, int64_t h, int64_t w);
ecs_tensor *ecs_softmax(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *class_mask);
ecs_tensor *ecs_log_softmax(ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *class_mask);
ecs_tensor *ecs_ml_soft_margin(ecs_ctx *ctx, ecs_tensor *logits, ecs_tensor *targets);
ecs_tensor *ecs_masked_ce(ecs_ctx *ctx, ecs_tensor *logits, ecs_tensor *labels,
                          ecs_tensor *class_mask, int ignore_index);
/* not differentiable: results never require a gradient */
ecs_tensor *ecs_maxmin_norm(ecs_ctx *ctx, ecs_tensor *x, float eps);
ecs_tensor *ecs_gauss_blur(ecs_ctx *ctx, ecs_tensor *x, float sigma, int ksize);
ecs_tensor *ecs_detach(ecs_ctx *ctx, ecs_tensor *x); /* same data, no gradient */

/* Seeds d(loss) = scale (loss has one element) and accumulates gradients into leaves. */
ecs_status ecs_backward(ecs_ctx *ctx, ecs_tensor *loss, float scale);

/* ---- parameters ---------------------------------------------------------------------------
 * An ecs_params store holds named, plain, F32 (or I32/U8) tensors in one buffer of a buffer
 * type, in insertion order, with names following PyTorch state_dict keys. Parameters that
 * train get a gradient tensor (plain, same buffer type) on ecs_params_alloc_grads. A store is
 * shared read-only between ctxs while they only run forward passes. */
typedef struct ecs_params ecs_params;

ecs_params *ecs_params_new(ecs_err *err);
void ecs_params_free(ecs_params *ps); /* accepts NULL */
/* Declares a tensor; memory comes with ecs_params_alloc. Duplicate names are an error.
 * trainable = 0 marks it frozen (also for buffers such as running statistics). */
ecs_tensor *ecs_params_add(ecs_params *ps, const char *name, ecs_dtype type, int nd,
                           const int64_t *ne, int trainable, ecs_err *err);
ecs_status ecs_params_alloc(ecs_params *ps, ecs_buffer_type *buft, ecs_err *err);
ecs_status ecs_params_alloc_grads(ecs_params *ps, ecs_err *err);
ecs_status ecs_params_zero_grads(ecs_params *ps, ecs_err *err);
size_t ecs_params_count(const ecs_params *ps);
ecs_tensor *ecs_params_at(const ecs_params *ps, size_t i);
ecs_tensor *ecs_params_find(const ecs_params *ps, const char *name);
ecs_buffer_type *ecs_params_buffer_type(const ecs_params *ps);
/* Copies every tensor's values from src (same names and shapes; any buffer types). */
ecs_status ecs_params_copy(ecs_params *dst, const ecs_params *src, ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
