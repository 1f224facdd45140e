/* test_backend.c - the device registry and the CPU backends' basic contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "ecs/backend.h"

static void test_registry_has_cpu_devices(void **state) {
  (void)state;
  ecs_err err = {0};
  assert_true(ecs_device_count() >= 2);
  ecs_device *cpu = ecs_device_find("cpu", &err);
  ecs_device *ref = ecs_device_find("cpu-ref", &err);
  assert_non_null(cpu);
  assert_non_null(ref);
  assert_true(ecs_device_is_host(cpu));
  assert_string_equal(ecs_device_name(ref), "cpu-ref");
}

static void test_unknown_device_is_an_error(void **state) {
  (void)state;
  ecs_err err = {0};
  assert_null(ecs_device_find("tpu", &err));
  assert_int_equal(err.status, ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "tpu"));
}

static void test_add_on_each_cpu_backend(void **state) {
  (void)state;
  const char *names[] = {"cpu", "cpu-ref"};
  for (int k = 0; k < 2; k++) {
    ecs_err err = {0};
    ecs_device *dev = ecs_device_find(names[k], &err);
    ecs_backend *be = ecs_backend_init(dev, &(ecs_backend_params){.n_threads = 1}, &err);
    assert_non_null(be);
    ecs_buffer *buf = ecs_buffer_alloc(ecs_device_buffer_type(dev), 3 * 4 * sizeof(float), &err);
    assert_non_null(buf);
    float *base = ecs_buffer_base(buf);
    ecs_tensor a = {.type = ECS_F32, .nd = 1, .ne = {4, 1, 1, 1}, .data = base, .buffer = buf, .nbytes = 16};
    ecs_tensor b = a, y = a;
    b.data = base + 4;
    y.data = base + 8;
    float av[4] = {1, 2, 3, 4}, bv[4] = {10, 20, 30, 40}, out[4];
    assert_int_equal(ecs_tensor_set_bytes(&a, av, 0, sizeof av, &err), ECS_OK);
    assert_int_equal(ecs_tensor_set_bytes(&b, bv, 0, sizeof bv, &err), ECS_OK);
    ecs_op op = {.type = ECS_OP_ADD, .src = {&a, &b}, .dst = {&y}, .p.scalar = {2.0f, 0.5f}};
    assert_true(ecs_device_supports_op(dev, &op));
    assert_int_equal(ecs_backend_prepare(be, &op, &err), ECS_OK);
    assert_int_equal(ecs_backend_compute(be, &op, &err), ECS_OK);
    assert_int_equal(ecs_backend_synchronize(be, &err), ECS_OK);
    assert_int_equal(ecs_tensor_get_bytes(&y, out, 0, sizeof out, &err), ECS_OK);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], 2 * av[i] + 0.5f * bv[i], 1e-6);
    /* out-of-range copies are refused, not performed */
    assert_int_equal(ecs_tensor_get_bytes(&y, out, 8, sizeof out, &err), ECS_ERR_INVALID);
    ecs_buffer_free(buf);
    ecs_backend_free(be);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_has_cpu_devices),
      cmocka_unit_test(test_unknown_device_is_an_error),
      cmocka_unit_test(test_add_on_each_cpu_backend),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
