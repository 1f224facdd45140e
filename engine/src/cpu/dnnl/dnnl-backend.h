/* dnnl-backend.h - the oneDNN half of the "cpu" device, as cpu-backend.c sees it.
 *
 * Built only when oneDNN is found (ECS_USE_DNNL). Tensors it lays out in a blocked format carry
 * layout ECS_LAYOUT_DNNL and a layout_desc that points at a description interned in the backend
 * that prepared them: it lives as long as that backend. Any "cpu" backend can read such a
 * tensor; nothing else can, except through ECS_OP_COPY to a plain tensor. */
#ifndef ECS_DNNL_BACKEND_H
#define ECS_DNNL_BACKEND_H

#include "ecs/backend.h"

#define ECS_LAYOUT_DNNL 0x646e6e6c /* "dnnl" */

typedef struct ecs_dnnl ecs_dnnl;

/* The fast paths come from p (winograd, phases, pack_width; NULL: the defaults). */
ecs_dnnl *ecs_dnnl_create(int n_threads, const ecs_backend_params *p, ecs_err *err);
void ecs_dnnl_free(ecs_dnnl *d); /* accepts NULL */
/* Whether the "cpu" device can run op: on oneDNN, or on a reference kernel after reordering
 * blocked operands to plain. Needs no backend: it looks at the op only. */
int ecs_dnnl_supports(const ecs_op *op);
ecs_status ecs_dnnl_prepare(ecs_dnnl *d, ecs_op *op, ecs_err *err);
ecs_status ecs_dnnl_compute(ecs_dnnl *d, ecs_op *op, ecs_err *err);
void ecs_dnnl_get_stats(const ecs_dnnl *d, ecs_backend_stats *out);
void ecs_dnnl_reset_stats(ecs_dnnl *d);
/* Which paths ran (stats.wino_ops, .phased_ops) follows from ecs_backend_params: .winograd (0
 * F(4x4, 3x3) where it is faster than oneDNN's own kernel, ECS_OPT_OFF never, 2 or 4 that tile on
 * every convolution it can run), .phases (ECS_OPT_OFF: never split; N: split every conv op by
 * N) and .pack_width (widest output row put side by side; ECS_OPT_OFF: never). */
/* Winograd-transformed weights are shared by all backends of the process (one copy per weight
 * tensor and values, freed with the last backend that used it): how many there are and how many
 * backend references they have, for tests. */
void ecs_dnnl_shared_weights(int *entries, int *refs);

#endif
