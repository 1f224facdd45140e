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

/* What srv_config_load tells main: start, exit 0 (--help, --version), or exit 2 with msg. */
enum { LOAD_OK, LOAD_EXIT, LOAD_USAGE };

static int load(srv_config *c, char **argv, char **envp, char *msg) {
  int argc = 0;
  while (argv[argc])
    argc++;
  FILE *out = fopen("/dev/null", "w");
  bool done = false;
  ecs_err e;
  ecs_err_clear(&e);
  ecs_status st = srv_config_load(c, argc, argv, envp, out, &done, &e);
  fclose(out);
  memcpy(msg, e.msg, sizeof e.msg);
  if (st != ECS_OK) return st == ECS_ERR_INVALID ? LOAD_USAGE : -1;
  return done ? LOAD_EXIT : LOAD_OK;
}

static void test_defaults(void **state) {
  (void)state;
  srv_config c;
  char msg[ECS_ERR_MSG_MAX];
  char *argv[] = {"ecsnet-server", NULL};
  assert_int_equal(load(&c, argv, NULL, msg), LOAD_OK);
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
  ecs_backend_params zero = {0}; /* every engine option at the engine's default */
  assert_memory_equal(&c.engine, &zero, sizeof zero);
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
  char msg[ECS_ERR_MSG_MAX];
  char *argv[] = {"ecsnet-server", "--config", path, "--queue=9", "--listen", "[::1]:0", NULL};
  char *envp[] = {"ECSNET_WORKERS=4", "ECSNET_QUEUE=8", "ECSNET_DEVICE=cuda:1", NULL};
  assert_int_equal(load(&c, argv, envp, msg), LOAD_OK);
  assert_int_equal(c.workers, 4);    /* env over file */
  assert_int_equal(c.queue, 9);      /* flag over env */
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
  char msg[ECS_ERR_MSG_MAX];
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
      {{"s", "--winograd", "3", NULL}, "--winograd: '3' is not one of auto|off|2|4"},
      {{"s", "--winograd", NULL}, "needs a value"},
      {{"s", "--dnnl-phases", "1", NULL}, "--dnnl-phases: '1' is not one of auto|off|N"},
      {{"s", "--dnnl-pack", "wide", NULL}, "--dnnl-pack"},
      {{"s", "--fuse", "on-ish", NULL}, "--fuse: 'on-ish' is not one of auto|off"},
      {{"s", "--tf32", "auto", NULL}, "--tf32: 'auto' is not one of on|off"},
      {{"s", "--cuda-workspace-mb", "-5", NULL}, "--cuda-workspace-mb"},
      {{"s", "--trusted-proxy", "10.0.0.0/33", NULL}, "--trusted-proxy"},
      {{"s", "--trusted-proxy", "proxy.local", NULL}, "not an address or CIDR block"},
      {{"s", "--trusted-proxy", "::1/129", NULL}, "--trusted-proxy"},
      {{"s", "--header-timeout-ms", "50", NULL}, "--header-timeout-ms"},
      {{"s", "--max-header-bytes", "100", NULL}, "--max-header-bytes"},
      {{"s", "--max-connections-per-ip", "0", NULL}, "--max-connections-per-ip"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(load(&c, cases[i].argv, NULL, msg), LOAD_USAGE);
    if (!strstr(msg, cases[i].needle)) {
      fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, msg, cases[i].needle);
      fail();
    }
    assert_null(strchr(msg, '\n'));
  }
  char *envp[] = {"ECSNET_MAX_BODY=12", NULL};
  char *argv[] = {"s", NULL};
  assert_int_equal(load(&c, argv, envp, msg), LOAD_USAGE);
  assert_non_null(strstr(msg, "ECSNET_MAX_BODY"));
  char *envp2[] = {"ECSNET_ADMIN_TOKEN=short", NULL};
  assert_int_equal(load(&c, argv, envp2, msg), LOAD_USAGE);
  char *envp3[] = {"ECSNET_WINOGRAD=1", NULL};
  assert_int_equal(load(&c, argv, envp3, msg), LOAD_USAGE);
  assert_string_equal(msg, "ECSNET_WINOGRAD: '1' is not one of auto|off|2|4");
  char *envp4[] = {"ECSNET_TF32=yes", NULL};
  assert_int_equal(load(&c, argv, envp4, msg), LOAD_USAGE);
  assert_non_null(strstr(msg, "ECSNET_TF32"));
}

/* The connection settings' defaults, and --trusted-proxy: repeatable and comma-separated, one
 * source's list replacing another's, IPv4 blocks matching mapped addresses. */
static void test_connection_settings(void **state) {
  (void)state;
  srv_config c;
  char msg[ECS_ERR_MSG_MAX];
  char *argv0[] = {"s", NULL};
  assert_int_equal(load(&c, argv0, NULL, msg), LOAD_OK);
  assert_int_equal(c.max_connections_per_ip, 64);
  assert_int_equal(c.header_timeout_ms, 10000);
  assert_int_equal(c.body_timeout_ms, 60000);
  assert_int_equal(c.max_header_bytes, 8192);
  assert_int_equal(c.n_trusted, 0);
  char *envp[] = {"ECSNET_TRUSTED_PROXY=10.0.0.0/8,fd00::/8", NULL};
  assert_int_equal(load(&c, argv0, envp, msg), LOAD_OK);
  assert_int_equal(c.n_trusted, 2);
  char *argv[] = {"s", "--trusted-proxy", "192.0.2.1", "--trusted-proxy=198.51.100.0/24", NULL};
  assert_int_equal(load(&c, argv, envp, msg), LOAD_OK);
  assert_int_equal(c.n_trusted, 2); /* the command line's two, not the environment's */
  assert_string_equal(c.trusted_proxy, "192.0.2.1,198.51.100.0/24");
  uint8_t a[16] = {0};
  a[10] = a[11] = 0xff;
  a[12] = 198, a[13] = 51, a[14] = 100, a[15] = 77;
  assert_true(srv_config_trusted(&c, a));
  a[14] = 101;
  assert_false(srv_config_trusted(&c, a));
  a[12] = 192, a[13] = 0, a[14] = 2, a[15] = 1;
  assert_true(srv_config_trusted(&c, a));
  a[15] = 2;
  assert_false(srv_config_trusted(&c, a));
  srv_cidr b;
  assert_true(srv_cidr_parse("10.1.2.3/8", 10, &b)); /* host bits cleared */
  assert_int_equal(b.bits, 104);
  assert_int_equal(b.addr[12], 10);
  assert_int_equal(b.addr[13], 0);
  assert_true(srv_cidr_parse(" ::1 ", 5, &b));
  assert_int_equal(b.bits, 128);
  assert_false(srv_cidr_parse("10.0.0.1/", 9, &b));
  assert_false(srv_cidr_parse("10.0.0.1/+8", 11, &b));
  assert_false(srv_cidr_parse("", 0, &b));
}

static void test_help_and_version(void **state) {
  (void)state;
  srv_config c;
  char msg[ECS_ERR_MSG_MAX];
  char *argv[] = {"s", "--workers", "0", "--help", NULL}; /* --help wins over a bad value */
  assert_int_equal(load(&c, argv, NULL, msg), LOAD_EXIT);
  char *argv2[] = {"s", "--version", NULL};
  assert_int_equal(load(&c, argv2, NULL, msg), LOAD_EXIT);
}

static void test_token_file(void **state) {
  (void)state;
  char path[] = "/tmp/ecs-token-XXXXXX";
  int fd = mkstemp(path);
  assert_true(write(fd, "0123456789abcdef0123\n", 21) == 21);
  close(fd);
  srv_config c;
  char msg[ECS_ERR_MSG_MAX];
  char *argv[] = {"s", "--admin-token-file", path, NULL};
  assert_int_equal(load(&c, argv, NULL, msg), LOAD_OK);
  assert_string_equal(c.admin_token, "0123456789abcdef0123");
  unlink(path);
}

/* --shipped-model and ECSNET_SHIPPED_MODEL: "auto" looks beside the program; an empty value
 * means none, as the variable always did. */
static void test_shipped_model(void **state) {
  (void)state;
  srv_config c;
  char msg[ECS_ERR_MSG_MAX];
  char *argv[] = {"s", "--shipped-model", "/models/x.safetensors", NULL};
  assert_int_equal(load(&c, argv, NULL, msg), LOAD_OK);
  assert_string_equal(c.shipped_model, "/models/x.safetensors");
  char *argv0[] = {"s", NULL};
  char *none[] = {"ECSNET_SHIPPED_MODEL=none", NULL}, *empty[] = {"ECSNET_SHIPPED_MODEL=", NULL};
  assert_int_equal(load(&c, argv0, none, msg), LOAD_OK);
  assert_string_equal(c.shipped_model, "none");
  assert_int_equal(load(&c, argv0, empty, msg), LOAD_OK);
  assert_string_equal(c.shipped_model, "");
}

/* The engine options: flags, config lines and the ECSNET_* variables, whose names and old
 * numeric values (WINOGRAD=0, DNNL_PACK=0, FUSE=0 off, TF32=1 on) existing users rely on. */
static void test_engine_options(void **state) {
  (void)state;
  srv_config c;
  char msg[ECS_ERR_MSG_MAX];
  char *argv[] = {"s",
                  "--winograd=off",
                  "--dnnl-phases",
                  "4",
                  "--dnnl-pack=32",
                  "--fuse=off",
                  "--tf32",
                  "on",
                  "--cuda-workspace-mb=512",
                  NULL};
  assert_int_equal(load(&c, argv, NULL, msg), LOAD_OK);
  assert_int_equal(c.engine.winograd, ECS_OPT_OFF);
  assert_int_equal(c.engine.phases, 4);
  assert_int_equal(c.engine.pack_width, 32);
  assert_int_equal(c.engine.fuse, ECS_OPT_OFF);
  assert_int_equal(c.engine.tf32, 1);
  assert_int_equal(c.engine.workspace_mb, 512);
  assert_int_equal(c.engine.n_threads, 0); /* set per backend, not here */

  char *argv0[] = {"s", NULL};
  char *old[] = {"ECSNET_WINOGRAD=0",
                 "ECSNET_DNNL_PACK=0",
                 "ECSNET_FUSE=0",
                 "ECSNET_TF32=1",
                 "ECSNET_DNNL_PHASES=0",
                 "ECSNET_CUDA_WORKSPACE_MB=64",
                 NULL};
  assert_int_equal(load(&c, argv0, old, msg), LOAD_OK);
  assert_int_equal(c.engine.winograd, ECS_OPT_OFF);
  assert_int_equal(c.engine.pack_width, ECS_OPT_OFF);
  assert_int_equal(c.engine.fuse, ECS_OPT_OFF);
  assert_int_equal(c.engine.tf32, 1);
  assert_int_equal(c.engine.phases, ECS_OPT_OFF);
  assert_int_equal(c.engine.workspace_mb, 64);

  /* file < environment < flag, as for every setting */
  char path[] = "/tmp/ecs-config-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fprintf(f, "winograd 2\nfuse off\ntf32 on\n");
  fclose(f);
  char *argv2[] = {"s", "--config", path, "--winograd", "auto", NULL};
  char *env2[] = {"ECSNET_WINOGRAD=4", "ECSNET_FUSE=auto", NULL};
  assert_int_equal(load(&c, argv2, env2, msg), LOAD_OK);
  assert_int_equal(c.engine.winograd, 0);
  assert_int_equal(c.engine.fuse, 0);
  assert_int_equal(c.engine.tf32, 1);
  char *argv3[] = {"s", "--config", path, NULL};
  assert_int_equal(load(&c, argv3, env2, msg), LOAD_OK);
  assert_int_equal(c.engine.winograd, 4);
  assert_int_equal(load(&c, argv3, NULL, msg), LOAD_OK);
  assert_int_equal(c.engine.winograd, 2);
  assert_int_equal(c.engine.fuse, ECS_OPT_OFF);
  f = fopen(path, "w");
  fprintf(f, "dnnl-pack narrow\n");
  fclose(f);
  assert_int_equal(load(&c, argv3, NULL, msg), LOAD_USAGE);
  assert_non_null(strstr(msg, ":1: 'narrow' is not one of auto|off|N"));
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),       cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_bad_usage),      cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_token_file),     cmocka_unit_test(test_shipped_model),
      cmocka_unit_test(test_engine_options), cmocka_unit_test(test_connection_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
