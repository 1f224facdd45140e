/* ecs/optim.h - optimisers over an ecs_params store: SGD with momentum and Adam, PyTorch's
 * semantics, with per-parameter learning-rate multipliers and weight-decay switches (the
 * parameter groups of SEAM/PSA training: 10x for a new classifier, no decay on biases), and
 * the poly learning-rate schedule.
 *
 * SGD (torch.optim.SGD, dampening 0, no Nesterov): d = g + wd * p; buf = momentum * buf + d
 * (buf = d at the first step); p -= lr * buf.
 * Adam (torch.optim.Adam, no amsgrad; weight decay is L2 added to the gradient): d = g + wd*p;
 * m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d*d; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
 *
 * Steps run on the host. Parameters in host memory are updated in place; for a store on a
 * device each step copies parameters and gradients to the host and the parameters back (one
 * round trip per step: the update is a few element-wise passes, cheap next to the training
 * step itself). Optimiser state always lives on the host.
 *
 * A training checkpoint is one safetensors file: the parameters under their own names, the
 * state as "optim.<param>.momentum" (SGD) or "optim.<param>.exp_avg" and
 * "optim.<param>.exp_avg_sq" (Adam), and the step count as "optim.step" (I32, one element), so
 * a resumed run continues exactly. Parameters that are frozen, or have no gradient tensor, are
 * neither updated nor given state. */
#ifndef ECS_OPTIM_H
#define ECS_OPTIM_H

#include "ecs/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ecs_optim_kind { ECS_OPTIM_SGD = 0, ECS_OPTIM_ADAM } ecs_optim_kind;

typedef struct ecs_optim_params {
  ecs_optim_kind kind;
  float lr;                /* base learning rate; see ecs_optim_set_lr */
  float weight_decay;      /* L2, added to the gradient, for parameters with decay on */
  float momentum;          /* SGD; 0 for plain SGD */
  float beta1, beta2, eps; /* Adam; 0 means PyTorch's defaults 0.9, 0.999, 1e-8 */
} ecs_optim_params;

typedef struct ecs_optim ecs_optim;

/* The optimiser borrows ps, which must outlive it and be allocated with gradients. */
ecs_optim *ecs_optim_new(ecs_params *ps, const ecs_optim_params *p, ecs_err *err);
void ecs_optim_free(ecs_optim *o); /* accepts NULL */

/* Every parameter whose name starts with prefix ("" for all) gets learning rate
 * base * lr_mult, and weight decay when decay is non-zero. Later calls override earlier ones
 * for the parameters they match; none matching is an error. Default: 1x with decay. */
ecs_status ecs_optim_set_group(ecs_optim *o, const char *prefix, float lr_mult, int decay,
                               ecs_err *err);
void ecs_optim_set_lr(ecs_optim *o, float lr); /* the base rate, e.g. from ecs_poly_lr */
float ecs_optim_lr(const ecs_optim *o);
int64_t ecs_optim_steps(const ecs_optim *o); /* steps taken (including loaded ones) */

/* lr = base * (1 - step / max_steps)^power; 0 once step >= max_steps. */
float ecs_poly_lr(float base, int64_t step, int64_t max_steps, float power);

/* One update from the gradients in the store (they are left as they are: zero them with
 * ecs_params_zero_grads before the next accumulation). On a device backend with its own
 * stream, call ecs_backend_synchronize first so that the backward pass has finished writing
 * the gradients. */
ecs_status ecs_optim_step(ecs_optim *o, ecs_err *err);

/* State <-> safetensors, under the names above. Loading checks every state tensor's presence
 * and shape (the error names it) and takes the step count. */
ecs_status ecs_optim_add_state(const ecs_optim *o, ecs_st_writer *w, ecs_err *err);
ecs_status ecs_optim_load_state(ecs_optim *o, const ecs_st_file *f, ecs_err *err);
/* A whole training checkpoint: the parameters of the optimiser's store, its state and the
 * metadata pairs meta_kv[2i] = key, meta_kv[2i+1] = value, written atomically. */
ecs_status ecs_optim_save_checkpoint(const ecs_optim *o, const char *path,
                                     const char *const *meta_kv, size_t n_meta, ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
