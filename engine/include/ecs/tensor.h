/* ecs/tensor.h - the tensor descriptor.
 *
 * A tensor is a small descriptor over memory owned by a backend buffer. Shapes are logical and
 * outermost first: activations are (N, C, H, W), convolution weights (O, I/groups, KH, KW),
 * vectors (C). The bytes may be in a backend-private layout (oneDNN's blocked nChw8c, say):
 * `layout` is then non-zero and `layout_desc` points at the backend's description of it, and
 * only that backend (or ECS_OP_COPY to a plain tensor) may read them. Plain tensors are dense
 * row-major in the order of ne[].
 *
 * Tensors made inside an ecs_ctx live in its arena until ecs_ctx_reset(); parameters live in an
 * ecs_params store for as long as the store. Neither is freed one by one. */
#ifndef ECS_TENSOR_H
#define ECS_TENSOR_H

#include "ecs/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ECS_MAX_DIMS 4

typedef enum ecs_dtype { ECS_F32 = 0, ECS_I32, ECS_U8, ECS_DTYPE_COUNT } ecs_dtype;

enum { ECS_LAYOUT_PLAIN = 0 };

struct ecs_buffer;
struct ecs_node;

typedef struct ecs_tensor {
  ecs_dtype type;
  int nd;                   /* 1..ECS_MAX_DIMS */
  int64_t ne[ECS_MAX_DIMS]; /* logical sizes; entries past nd are 1 */
  void *data;               /* in the buffer's address space (host or device) */
  size_t nbytes;            /* bytes of storage, >= the logical size in a padded layout */
  struct ecs_buffer *buffer;
  int layout;              /* ECS_LAYOUT_PLAIN or a backend-private id */
  const void *layout_desc; /* backend-private; lives as long as the tensor */

  /* autograd (see ecs/nn.h) */
  struct ecs_tensor *grad; /* accumulated gradient, same shape, plain or backend layout */
  struct ecs_node *node;   /* the tape node that produced this tensor, NULL for leaves */
  uint8_t requires_grad;   /* leaves: parameters that train; others: depends on a leaf */
  uint8_t frozen;          /* parameters excluded from training */
  uint8_t fixed; /* parameters whose values stay as they are until this is cleared, trainable or
                  * not: backends may keep reordered or transformed copies of them across calls.
                  * ecs_model_fold_bn sets it on a model's parameters, ecs_optim_step clears it */
  char name[96]; /* PyTorch state_dict key for parameters, else optional */
} ecs_tensor;

size_t ecs_dtype_size(ecs_dtype t);
const char *ecs_dtype_name(ecs_dtype t);
int64_t ecs_nelements(const ecs_tensor *t);
/* Bytes of the logical, plain representation: nelements * dtype size. */
size_t ecs_plain_nbytes(const ecs_tensor *t);
int ecs_same_shape(const ecs_tensor *a, const ecs_tensor *b);
/* Writes "[2, 3, 8, 8]" into buf. */
const char *ecs_shape_str(const ecs_tensor *t, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
