/* test_backend.c - the device registry and the CPU backends' basic contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "ecs/backend.h"
#include "ecs/options.h"

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
    ecs_tensor a = {
        .type = ECS_F32, .nd = 1, .ne = {4, 1, 1, 1}, .data = base, .buffer = buf, .nbytes = 16};
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
    for (int i = 0; i < 4; i++)
      assert_float_equal(out[i], 2 * av[i] + 0.5f * bv[i], 1e-6);
    /* out-of-range copies are refused, not performed */
    assert_int_equal(ecs_tensor_get_bytes(&y, out, 8, sizeof out, &err), ECS_ERR_INVALID);
    ecs_buffer_free(buf);
    ecs_backend_free(be);
  }
}

/* The options by name (ecs/options.h): every spelling the edges accept, the values the
 * variables took before they were options, and bad values refused with p unchanged. */
static void test_options_from_text(void **state) {
  (void)state;
  static const struct {
    const char *name, *value;
    size_t field;
    int want;
  } ok[] = {
      {"winograd", "auto", offsetof(ecs_backend_params, winograd), 0},
      {"winograd", "off", offsetof(ecs_backend_params, winograd), ECS_OPT_OFF},
      {"ECSNET_WINOGRAD", "0", offsetof(ecs_backend_params, winograd), ECS_OPT_OFF},
      {"winograd", "2", offsetof(ecs_backend_params, winograd), 2},
      {"winograd", "4", offsetof(ecs_backend_params, winograd), 4},
      {"dnnl-phases", "off", offsetof(ecs_backend_params, phases), ECS_OPT_OFF},
      {"ECSNET_DNNL_PHASES", "0", offsetof(ecs_backend_params, phases), ECS_OPT_OFF},
      {"dnnl-phases", "4", offsetof(ecs_backend_params, phases), 4},
      {"dnnl-pack", "auto", offsetof(ecs_backend_params, pack_width), 0},
      {"ECSNET_DNNL_PACK", "0", offsetof(ecs_backend_params, pack_width), ECS_OPT_OFF},
      {"dnnl-pack", "20", offsetof(ecs_backend_params, pack_width), 20},
      {"fuse", "off", offsetof(ecs_backend_params, fuse), ECS_OPT_OFF},
      {"ECSNET_FUSE", "0", offsetof(ecs_backend_params, fuse), ECS_OPT_OFF},
      {"ECSNET_FUSE", "1", offsetof(ecs_backend_params, fuse), 0},
      {"fuse", "auto", offsetof(ecs_backend_params, fuse), 0},
      {"tf32", "on", offsetof(ecs_backend_params, tf32), 1},
      {"ECSNET_TF32", "1", offsetof(ecs_backend_params, tf32), 1},
      {"tf32", "off", offsetof(ecs_backend_params, tf32), 0},
      {"cuda-workspace-mb", "512", offsetof(ecs_backend_params, workspace_mb), 512},
      {"ECSNET_CUDA_WORKSPACE_MB", "0", offsetof(ecs_backend_params, workspace_mb), 0},
      {"ECSNET_WINOGRAD", "", offsetof(ecs_backend_params, winograd), 0},
      {"tf32", "", offsetof(ecs_backend_params, tf32), 0},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    ecs_backend_params p = {
        .winograd = 7, .phases = 7, .pack_width = 7, .fuse = 7, .tf32 = 7, .workspace_mb = 7};
    ecs_err err = {0};
    if (ecs_backend_option_set(&p, ok[i].name, ok[i].value, &err) != ECS_OK)
      fail_msg("%s=%s: %s", ok[i].name, ok[i].value, err.msg);
    assert_int_equal(*(const int *)((const char *)&p + ok[i].field), ok[i].want);
  }
  static const char *const bad[][2] = {
      {"winograd", "3"},
      {"winograd", "yes"},
      {"dnnl-phases", "1"},
      {"dnnl-phases", "-2"},
      {"dnnl-pack", "lots"},
      {"fuse", "2"},
      {"fuse", "OFF"},
      {"tf32", "auto"},
      {"cuda-workspace-mb", "-1"},
      {"cuda-workspace-mb", "1e3"},
      {"cuda-workspace-mb", "99999999999"},
      {"ECSNET_BOGUS", "1"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ecs_backend_params p = {0}, zero = {0};
    ecs_err err = {0};
    if (ecs_backend_option_set(&p, bad[i][0], bad[i][1], &err) != ECS_ERR_INVALID)
      fail_msg("%s=%s was accepted", bad[i][0], bad[i][1]);
    assert_memory_equal(&p, &zero, sizeof p);
    assert_non_null(strstr(err.msg, bad[i][0][0] == 'E' ? bad[i][0] : bad[i][1]));
  }
  ecs_err err = {0};
  ecs_backend_params p = {0};
  assert_int_equal(ecs_backend_option_set(&p, "winograd", "5", &err), ECS_ERR_INVALID);
  assert_string_equal(err.msg, "'5' is not one of auto|off|2|4");
}

/* A fake environment for ecs_backend_options_lookup: name=value pairs. */
static const char *fake_env(const char *name, void *user) {
  for (const char *const *kv = user; kv[0]; kv += 2)
    if (strcmp(kv[0], name) == 0) return kv[1];
  return NULL;
}

/* The variables that are set set their options, the others keep p's values, and a bad value
 * names its variable and leaves the options already read set. */
static void test_options_from_lookup(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_backend_params p = {.pack_width = 12};
  const char *env[] = {"ECSNET_WINOGRAD", "off", "ECSNET_TF32", "1", NULL};
  assert_int_equal(ecs_backend_options_lookup(&p, fake_env, (void *)env, &err), ECS_OK);
  assert_int_equal(p.winograd, ECS_OPT_OFF);
  assert_int_equal(p.tf32, 1);
  assert_int_equal(p.pack_width, 12);
  const char *bad[] = {"ECSNET_FUSE", "sometimes", NULL};
  assert_int_equal(ecs_backend_options_lookup(&p, fake_env, (void *)bad, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "ECSNET_FUSE: 'sometimes'"));
}

/* Every option's default text sets the zero the backends take as their default, and each
 * value reads back as the text that sets it. */
static void test_options_defaults_and_back(void **state) {
  (void)state;
  size_t n;
  const ecs_backend_option *o = ecs_backend_options(&n);
  assert_int_equal(n, 6);
  ecs_backend_params p = {.winograd = 4, .phases = ECS_OPT_OFF, .tf32 = 1, .workspace_mb = 9};
  for (size_t i = 0; i < n; i++) {
    assert_ptr_equal(ecs_backend_option_find(o[i].name), &o[i]);
    assert_ptr_equal(ecs_backend_option_find(o[i].env), &o[i]);
    assert_int_equal(ecs_backend_option_set(&p, o[i].name, o[i].def, NULL), ECS_OK);
  }
  ecs_backend_params zero = {0};
  assert_memory_equal(&p, &zero, sizeof p);
  ecs_backend_params q = {.winograd = 2, .phases = ECS_OPT_OFF, .pack_width = 20, .tf32 = 1};
  const char *want[] = {"2", "off", "20", "auto", "on", "0"};
  for (size_t i = 0; i < n; i++) {
    char buf[32];
    assert_string_equal(ecs_backend_option_get(&q, &o[i], buf, sizeof buf), want[i]);
    ecs_backend_params r = {0};
    assert_int_equal(ecs_backend_option_set(&r, o[i].name, buf, NULL), ECS_OK);
  }
  assert_null(ecs_backend_option_find("n_threads"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_has_cpu_devices),
      cmocka_unit_test(test_unknown_device_is_an_error),
      cmocka_unit_test(test_add_on_each_cpu_backend),
      cmocka_unit_test(test_options_from_text),
      cmocka_unit_test(test_options_defaults_and_back),
      cmocka_unit_test(test_options_from_lookup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
