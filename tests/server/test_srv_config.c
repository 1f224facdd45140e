/* test_srv_config.c - the settings table: defaults, sources, precedence and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv-config.h"

static srv_config_result load(srv_config *c, char **argv, char **envp, char *msg) {
  int argc = 0;
  while (argv[argc]) argc++;
  FILE *out = fopen("/dev/null", "w");
  srv_config_result r = srv_config_load(c, argc, argv, envp, out, msg, 256);
  fclose(out);
  return r;
}

static void test_defaults(void **state) {
  (void)state;
  srv_config c;
  char msg[256];
  char *argv[] = {"ecsnet-server", NULL};
  assert_int_equal(load(&c, argv, NULL, msg), SRV_CONFIG_OK);
  assert_string_equal(c.host, "127.0.0.1");
  assert_int_equal(c.port, 8080);
  assert_string_equal(c.data_dir, "./data");
  assert_string_equal(c.device, "auto");
  assert_true(c.threads >= 1); /* 0 means one per core */
  assert_int_equal(c.max_body, 33554432);
  assert_string_equal(c.log_format, "text");
  assert_string_equal(c.cors_origin, "");
  assert_string_equal(c.admin_token, "");
  assert_string_equal(c.shipped_model, "auto");
}

static void test_precedence(void **state) {
  (void)state;
  char path[] = "/tmp/ecs-config-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fprintf(f, "# comment\nworkers 3\nqueue = 7\nlog-format \"json\"\n\nmax-labels 5\n");
  fclose(f);
  srv_config c;
  char msg[256];
  char *argv[] = {"ecsnet-server", "--config", path, "--queue=9", "--listen", "[::1]:0", NULL};
  char *envp[] = {"ECSNET_WORKERS=4", "ECSNET_QUEUE=8", "ECSNET_DEVICE=cuda:1", NULL};
  assert_int_equal(load(&c, argv, envp, msg), SRV_CONFIG_OK);
  assert_int_equal(c.workers, 4);   /* env over file */
  assert_int_equal(c.queue, 9);     /* flag over env */
  assert_int_equal(c.max_labels, 5); /* file over default */
  assert_string_equal(c.log_format, "json");
  assert_string_equal(c.device, "cuda:1");
  assert_string_equal(c.host, "::1");
  assert_int_equal(c.port, 0);
  unlink(path);
}

static void test_bad_usage(void **state) {
  (void)state;
  srv_config c;
  char msg[256];
  struct {
    char *argv[4];
    const char *needle;
  } cases[] = {
      {{"s", "--workers", "0", NULL}, "--workers"},
      {{"s", "--workers", "two", NULL}, "not an integer"},
      {{"s", "--bogus", NULL}, "unknown option"},
      {{"s", "--queue", NULL}, "needs a value"},
      {{"s", "--log-format", "xml", NULL}, "text|json"},
      {{"s", "--device", "tpu", NULL}, "--device"},
      {{"s", "--listen", "8080", NULL}, "HOST:PORT"},
      {{"s", "--listen", "h:70000", NULL}, "0..65535"},
      {{"s", "--listen", "example.org:80", NULL}, "not an IPv4 or IPv6 address"},
      {{"s", "--label-threshold", "1.5", NULL}, "--label-threshold"},
      {{"s", "--admin-token", "x", NULL}, "unknown option"}, /* secrets never on argv */
      {{"s", "--admin-token-file", "/nonexistent/t", NULL}, "cannot read"},
      {{"s", "--config", "/nonexistent/c", NULL}, "cannot read"},
      {{"s", "stray", NULL}, "unexpected argument"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(load(&c, cases[i].argv, NULL, msg), SRV_CONFIG_USAGE);
    if (!strstr(msg, cases[i].needle)) {
      fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, msg, cases[i].needle);
      fail();
    }
    assert_null(strchr(msg, '\n'));
  }
  char *envp[] = {"ECSNET_MAX_BODY=12", NULL};
  char *argv[] = {"s", NULL};
  assert_int_equal(load(&c, argv, envp, msg), SRV_CONFIG_USAGE);
  assert_non_null(strstr(msg, "ECSNET_MAX_BODY"));
  char *envp2[] = {"ECSNET_ADMIN_TOKEN=short", NULL};
  assert_int_equal(load(&c, argv, envp2, msg), SRV_CONFIG_USAGE);
}

static void test_help_and_version(void **state) {
  (void)state;
  srv_config c;
  char msg[256];
  char *argv[] = {"s", "--workers", "0", "--help", NULL}; /* --help wins over a bad value */
  assert_int_equal(load(&c, argv, NULL, msg), SRV_CONFIG_EXIT_OK);
  char *argv2[] = {"s", "--version", NULL};
  assert_int_equal(load(&c, argv2, NULL, msg), SRV_CONFIG_EXIT_OK);
}

static void test_token_file(void **state) {
  (void)state;
  char path[] = "/tmp/ecs-token-XXXXXX";
  int fd = mkstemp(path);
  assert_true(write(fd, "0123456789abcdef0123\n", 21) == 21);
  close(fd);
  srv_config c;
  char msg[256];
  char *argv[] = {"s", "--admin-token-file", path, NULL};
  assert_int_equal(load(&c, argv, NULL, msg), SRV_CONFIG_OK);
  assert_string_equal(c.admin_token, "0123456789abcdef0123");
  unlink(path);
}

/* --shipped-model and ECSNET_SHIPPED_MODEL: "auto" looks beside the program; an empty value
 * means none, as the variable always did. */
static void test_shipped_model(void **state) {
  (void)state;
  srv_config c;
  char msg[256];
  char *argv[] = {"s", "--shipped-model", "/models/x.safetensors", NULL};
  assert_int_equal(load(&c, argv, NULL, msg), SRV_CONFIG_OK);
  assert_string_equal(c.shipped_model, "/models/x.safetensors");
  char *argv0[] = {"s", NULL};
  char *none[] = {"ECSNET_SHIPPED_MODEL=none", NULL}, *empty[] = {"ECSNET_SHIPPED_MODEL=", NULL};
  assert_int_equal(load(&c, argv0, none, msg), SRV_CONFIG_OK);
  assert_string_equal(c.shipped_model, "none");
  assert_int_equal(load(&c, argv0, empty, msg), SRV_CONFIG_OK);
  assert_string_equal(c.shipped_model, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),   cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_bad_usage),  cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_token_file), cmocka_unit_test(test_shipped_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
