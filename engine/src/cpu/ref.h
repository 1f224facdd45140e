/* ref.h - the plain-C reference kernels: the meaning of every op and the test oracle.
 *
 * ecs_ref_compute runs any op of ecs/op.h on plain host tensors; ecs_ref_supports says which.
 * Kernels favour clarity over speed but parallelise their outer loops over n_threads. */
#ifndef ECS_CPU_REF_H
#define ECS_CPU_REF_H

#include "ecs/op.h"

int ecs_ref_supports(const ecs_op *op);
ecs_status ecs_ref_compute(const ecs_op *op, int n_threads, ecs_err *err);

#endif
