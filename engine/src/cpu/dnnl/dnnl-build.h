/* dnnl-build.h - what the builders (dnnl-ops.c, dnnl-conv.c) share: type checks, bindings of
 * a plan's arguments, and the cache lookup that builds a primitive on a miss. */
#ifndef ECS_DNNL_BUILD_H
#define ECS_DNNL_BUILD_H

#include "dnnl-impl.h"

static inline int f32(const ecs_tensor *t) {
  return t && t->type == ECS_F32;
}

static inline int plain_vec(const ecs_tensor *t, int64_t c) {
  return f32(t) && t->layout == ECS_LAYOUT_PLAIN && ecs_nelements(t) == c;
}

static inline void in(dn_plan *pl, dw_arg a, int kind, ecs_tensor *t, const dw_md *view) {
  if (!t && kind != BK_TEMP) return;
  pl->in[pl->n_in++] = (dn_bind){.arg = a, .kind = kind, .t = t, .view = view};
}

static inline void out(dn_plan *pl, dw_arg a, int kind, ecs_tensor *t, int keep_plain,
                       const dw_md *view) {
  if (!t && kind != BK_TEMP) return;
  pl->out[pl->n_out++] =
      (dn_bind){.arg = a, .kind = kind, .t = t, .view = view, .keep_plain = keep_plain};
}

/* Looks the key up; on a miss builds the primitive with `make` (a failure is remembered). */
#define LOOKUP(d, k, pl, make)                                                                     \
  do {                                                                                             \
    int found_;                                                                                    \
    (pl)->prim = dn_cache_get((d), (k), &found_);                                                  \
    if (!found_) {                                                                                 \
      ecs_err e2_ = {0};                                                                           \
      ecs_err *err_ = &e2_;                                                                        \
      (void)err_;                                                                                  \
      dw_prim *p_ = (make);                                                                        \
      ecs_status st_ = dn_cache_put((d), (k), p_, err);                                            \
      if (st_ != ECS_OK) return st_;                                                               \
      (pl)->prim = p_;                                                                             \
    }                                                                                              \
    if (!(pl)->prim) return ECS_ERR_UNSUPPORTED;                                                   \
  } while (0)

#define NEED(cond)                                                                                 \
  do {                                                                                             \
    if (!(cond)) return ECS_ERR_UNSUPPORTED;                                                       \
  } while (0)

#define NOMEM() ecs_err_set(err, ECS_ERR_NOMEM, "cannot describe a tensor layout")

/* The forward's fused activation (p.conv.act), as a post-op of its primitive: 0 none,
 * DW_POST_RELU, DW_POST_RELU6. */
static inline int conv_relu(const ecs_op *op) {
  if (op->type != ECS_OP_CONV2D) return 0;
  return op->p.conv.act == ECS_ACT_RELU    ? DW_POST_RELU
         : op->p.conv.act == ECS_ACT_RELU6 ? DW_POST_RELU6
                                           : 0;
}

/* dnnl-conv.c: convolutions forward and backward (Winograd, space-to-batch, side by side, or
 * oneDNN's own primitive) */
ecs_status dn_build_conv(ecs_dnnl *d, const ecs_op *op, dn_plan *pl, ecs_err *err);

#endif
