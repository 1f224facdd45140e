/* test_optim.c - optimiser rules on hand-checkable numbers, groups, the poly schedule, and the
 * state's round trip through a checkpoint (tests/python/test_optim_torch.py compares whole runs
 * with torch.optim). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/optim.h"

static ecs_params *store(void) {
  ecs_err err = {0};
  ecs_params *ps = ecs_params_new(&err);
  ecs_params_add(ps, "w", ECS_F32, 1, (int64_t[]){2}, 1, &err);
  ecs_params_add(ps, "fc.bias", ECS_F32, 1, (int64_t[]){1}, 1, &err);
  ecs_params_add(ps, "rm", ECS_F32, 1, (int64_t[]){1}, 0, &err);
  assert_int_equal(ecs_params_alloc(ps, ecs_device_buffer_type(ecs_device_find("cpu", NULL)), &err),
                   ECS_OK);
  return ps;
}

static float *val(ecs_params *ps, const char *n) {
  return ecs_params_find(ps, n)->data;
}
static float *grd(ecs_params *ps, const char *n) {
  return ecs_params_find(ps, n)->grad->data;
}

static void test_poly_schedule(void **state) {
  (void)state;
  assert_float_equal(ecs_poly_lr(0.01f, 0, 100, 0.9f), 0.01f, 1e-9);
  assert_float_equal(ecs_poly_lr(0.01f, 50, 100, 0.9f), 0.01f * powf(0.5f, 0.9f), 1e-9);
  assert_float_equal(ecs_poly_lr(1.0f, 99, 100, 1.0f), 0.01f, 1e-7);
  assert_true(ecs_poly_lr(0.01f, 100, 100, 0.9f) == 0);
  assert_true(ecs_poly_lr(0.01f, 150, 100, 0.9f) == 0);
}

static void test_sgd_momentum_groups_and_frozen(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_params *ps = store();
  ecs_optim_params hp = {.kind = ECS_OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.5f};
  assert_null(ecs_optim_new(ps, &hp, &err)); /* no gradients yet */
  assert_non_null(strstr(err.msg, "'w'"));
  assert_int_equal(ecs_params_alloc_grads(ps, &err), ECS_OK);
  ecs_optim *o = ecs_optim_new(ps, &hp, &err);
  assert_non_null(o);
  assert_int_equal(ecs_optim_set_group(o, "fc.", 10, 0, &err), ECS_OK);
  assert_int_equal(ecs_optim_set_group(o, "nope", 10, 0, &err), ECS_ERR_INVALID);
  assert_int_equal(ecs_optim_set_group(o, "rm", 10, 0, &err), ECS_ERR_INVALID); /* frozen */
  val(ps, "w")[0] = 1, val(ps, "w")[1] = -2, val(ps, "fc.bias")[0] = 3, val(ps, "rm")[0] = 7;
  grd(ps, "w")[0] = 0.5f, grd(ps, "w")[1] = 0, grd(ps, "fc.bias")[0] = 1;
  ecs_params_find(ps, "w")->fixed = 1; /* as ecs_model_fold_bn marks them */
  ecs_params_find(ps, "rm")->fixed = 1;
  assert_int_equal(ecs_optim_step(o, &err), ECS_OK);
  /* a step changes w: backends may no longer keep copies of it; rm did not train */
  assert_false(ecs_params_find(ps, "w")->fixed);
  assert_true(ecs_params_find(ps, "rm")->fixed);
  /* w0: d = 0.5 + 0.5*1 = 1, buf = 1, w = 1 - 0.1 = 0.9; w1: d = -1, w = -1.9;
   * bias: no decay, lr 1: buf = 1, b = 2 */
  assert_float_equal(val(ps, "w")[0], 0.9f, 1e-6);
  assert_float_equal(val(ps, "w")[1], -1.9f, 1e-6);
  assert_float_equal(val(ps, "fc.bias")[0], 2.0f, 1e-6);
  assert_true(val(ps, "rm")[0] == 7);
  assert_int_equal(ecs_optim_step(o, &err), ECS_OK);
  /* w0: d = 0.5 + 0.45 = 0.95, buf = 0.9 + 0.95 = 1.85, w = 0.9 - 0.185 = 0.715;
   * bias: buf = 0.9 + 1 = 1.9, b = 2 - 1.9 = 0.1 */
  assert_float_equal(val(ps, "w")[0], 0.715f, 1e-6);
  assert_float_equal(val(ps, "fc.bias")[0], 0.1f, 1e-6);
  assert_int_equal(ecs_optim_steps(o), 2);
  ecs_optim_free(o);
  ecs_optim_free(NULL);
  ecs_params_free(ps);
}

static void test_adam_first_step_is_lr_sized(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_params *ps = store();
  ecs_params_alloc_grads(ps, &err);
  ecs_optim *o = ecs_optim_new(ps, &(ecs_optim_params){.kind = ECS_OPTIM_ADAM, .lr = 0.01f}, &err);
  grd(ps, "w")[0] = 3, grd(ps, "w")[1] = -0.001f, grd(ps, "fc.bias")[0] = 0;
  assert_int_equal(ecs_optim_step(o, &err), ECS_OK);
  /* with bias correction, the first step moves each parameter by lr * sign(g) */
  assert_float_equal(val(ps, "w")[0], -0.01f, 1e-6);
  assert_float_equal(val(ps, "w")[1], 0.01f, 1e-5);
  assert_true(val(ps, "fc.bias")[0] == 0);
  ecs_optim_free(o);
  ecs_params_free(ps);
}

static void test_state_round_trip(void **state) {
  (void)state;
  ecs_err err = {0};
  char path[] = "/tmp/ecs-optim-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  for (int kind = 0; kind < 2; kind++) {
    ecs_optim_params hp = {.kind = kind, .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f};
    ecs_params *a = store(), *b = store();
    ecs_params_alloc_grads(a, &err);
    ecs_params_alloc_grads(b, &err);
    ecs_optim *oa = ecs_optim_new(a, &hp, &err), *ob = ecs_optim_new(b, &hp, &err);
    for (int k = 0; k < 3; k++) {
      grd(a, "w")[0] = 0.3f * k - 0.2f, grd(a, "w")[1] = 0.1f, grd(a, "fc.bias")[0] = -0.5f;
      assert_int_equal(ecs_optim_step(oa, &err), ECS_OK);
    }
    assert_int_equal(ecs_optim_save_checkpoint(oa, path, NULL, 0, &err), ECS_OK);
    ecs_st_file *f = ecs_st_open(path, &err);
    assert_non_null(f);
    assert_non_null(ecs_st_find(f, kind ? "optim.w.exp_avg_sq" : "optim.w.momentum"));
    assert_null(ecs_st_find(f, "optim.rm.momentum"));
    char unused[256];
    assert_int_equal(ecs_params_load(b, f, unused, sizeof unused, &err), ECS_OK);
    assert_non_null(strstr(unused, "optim.step"));
    assert_int_equal(ecs_optim_load_state(ob, f, &err), ECS_OK);
    assert_int_equal(ecs_optim_steps(ob), 3);
    /* the next step is identical on both */
    for (ecs_params *p = a;; p = b) {
      grd(p, "w")[0] = 0.7f, grd(p, "w")[1] = -0.2f, grd(p, "fc.bias")[0] = 0.25f;
      if (p == b) break;
    }
    ecs_optim_step(oa, &err);
    ecs_optim_step(ob, &err);
    assert_memory_equal(val(a, "w"), val(b, "w"), 8);
    assert_memory_equal(val(a, "fc.bias"), val(b, "fc.bias"), 4);
    /* state of the other kind is missing: an error naming the tensor */
    ecs_optim_params other = hp;
    other.kind = !kind;
    ecs_optim *oc = ecs_optim_new(b, &other, &err);
    assert_int_equal(ecs_optim_load_state(oc, f, &err), ECS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, kind ? "optim.w.momentum" : "optim.w.exp_avg"));
    ecs_optim_free(oc);
    ecs_st_close(f);
    ecs_optim_free(oa);
    ecs_optim_free(ob);
    ecs_params_free(a);
    ecs_params_free(b);
  }
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_poly_schedule),
      cmocka_unit_test(test_sgd_momentum_groups_and_frozen),
      cmocka_unit_test(test_adam_first_step_is_lr_sized),
      cmocka_unit_test(test_state_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
