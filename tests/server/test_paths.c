/* test_paths.c - ecs_path_join and ecs_path_fmt: one slash between the parts, and a path that
 * does not fit is an error naming it, never a shorter path; the registry and the job store
 * refuse a data directory too long for their paths instead of using a cut one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "ecs/path.h"
#include "registry.h"
#include "srv-jobs.h"

static void test_join(void **state) {
  (void)state;
  char out[ECS_PATH_MAX];
  ecs_err e;
  assert_int_equal(ecs_path_join(out, sizeof out, "data", "models", &e), ECS_OK);
  assert_string_equal(out, "data/models");
  assert_int_equal(ecs_path_join(out, sizeof out, "/", "x", &e), ECS_OK);
  assert_string_equal(out, "/x");
  assert_int_equal(ecs_path_join(out, sizeof out, "a/", "b", &e), ECS_OK);
  assert_string_equal(out, "a/b");
  assert_int_equal(ecs_path_join(out, sizeof out, NULL, "plain", &e), ECS_OK);
  assert_string_equal(out, "plain");
  assert_int_equal(ecs_path_join(out, sizeof out, "", "plain", &e), ECS_OK);
  assert_string_equal(out, "plain");
  assert_int_equal(ecs_path_fmt(out, sizeof out, &e, "%s/%d.safetensors", "m", 3), ECS_OK);
  assert_string_equal(out, "m/3.safetensors");
}

static void test_exact_fit_and_one_over(void **state) {
  (void)state;
  char out[8];
  ecs_err e;
  assert_int_equal(ecs_path_join(out, sizeof out, "abc", "def", &e), ECS_OK); /* 7 + NUL */
  assert_string_equal(out, "abc/def");
  ecs_err_clear(&e);
  assert_int_equal(ecs_path_join(out, sizeof out, "abc", "defg", &e), ECS_ERR_LIMIT);
  assert_string_equal(out, ""); /* never a shorter path */
  assert_non_null(strstr(e.msg, "path too long"));
  assert_non_null(strstr(e.msg, "8 bytes"));
  assert_int_equal(ecs_path_fmt(out, sizeof out, NULL, "%s", "12345678"), ECS_ERR_LIMIT);
  assert_int_equal(ecs_path_join(out, 0, "a", "b", NULL), ECS_ERR_LIMIT);
}

static void test_too_long_data_dir(void **state) {
  (void)state;
  static char dir[ECS_PATH_MAX + 64];
  memset(dir, 'd', sizeof dir - 1);
  dir[0] = '/';
  dir[sizeof dir - 1] = '\0';
  ecs_err e;
  ecs_err_clear(&e);
  assert_null(api_reg_open(dir, false, &e));
  assert_int_equal(e.status, ECS_ERR_LIMIT);
  assert_non_null(strstr(e.msg, "path too long"));
  /* a data directory that fits, with no room left for a version's path */
  dir[ECS_PATH_MAX - 16] = '\0';
  api_reg *r = api_reg_open(dir, false, &e);
  assert_non_null(r);
  char p[ECS_PATH_MAX];
  ecs_err_clear(&e);
  assert_int_equal(api_reg_path(r, "a-long-model-name", 12, p, sizeof p, &e), ECS_ERR_LIMIT);
  assert_string_equal(p, "");
  api_reg_free(r);
  dir[sizeof dir - 1] = '\0';
  memset(dir + ECS_PATH_MAX - 16, 'd', 16);
  srv_jobs_env env = {.data_dir = dir};
  ecs_err_clear(&e);
  assert_null(srv_jobs_open(&env, &e));
  assert_int_equal(e.status, ECS_ERR_LIMIT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_join),
      cmocka_unit_test(test_exact_fit_and_one_over),
      cmocka_unit_test(test_too_long_data_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
