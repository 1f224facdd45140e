/* test_jobs.c - the admin job store (server/srv-jobs.h): records across a reopen, a job left
 * running becoming interrupted, cancel and resume rules, notes and metrics; and the runner on a
 * tiny synthetic dataset: it pauses between ops while the busy hook says inference is busy,
 * registers and activates the result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ecs/synth.h"
#include "registry.h"
#include "srv-jobs.h"

static char g_root[256];

static int setup(void **state) {
  snprintf(g_root, sizeof g_root, "/tmp/ecs-jobs-XXXXXX");
  if (!mkdtemp(g_root)) return -1;
  (void)state;
  return 0;
}

static int teardown(void **state) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  (void)state;
  return system(cmd) == 0 ? 0 : -1;
}

static srv_jobs *open_store(const char *dir, bool runner) {
  srv_jobs_env env = {.data_dir = dir, .device = "cpu", .threads = 1, .start_runner = runner};
  ecs_err e = {0};
  srv_jobs *j = srv_jobs_open(&env, &e);
  if (!j) fprintf(stderr, "%s\n", e.msg);
  return j;
}

static const char *status_of(srv_jobs *j, int64_t id, char buf[32]) {
  json_t *job = srv_jobs_get(j, id);
  if (!job) return NULL;
  snprintf(buf, 32, "%s", json_string_value(json_object_get(job, "status")));
  json_decref(job);
  return buf;
}

static void test_records_survive_a_reopen(void **state) {
  (void)state;
  char dir[300], st[32];
  snprintf(dir, sizeof dir, "%s/a", g_root);
  srv_jobs *j = open_store(dir, false);
  assert_non_null(j);
  json_t *req = json_pack("{s:s, s:i}", "dataset", "syn", "steps", 7);
  int64_t id1 = 0, id2 = 0, id3 = 0;
  ecs_err e = {0};
  assert_int_equal(srv_jobs_submit(j, "train", req, &id1, &e), ECS_OK);
  assert_int_equal(srv_jobs_submit(j, "train", req, &id2, &e), ECS_OK);
  assert_int_equal(srv_jobs_submit(j, "eval", req, &id3, &e), ECS_OK);
  assert_true(id1 > 0 && id2 == id1 + 1 && id3 == id2 + 1);
  assert_null(srv_jobs_get(j, 999));
  json_t *list = srv_jobs_list(j, 10);
  assert_int_equal(json_array_size(list), 3);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), id3);
  json_decref(list);

  /* the oldest queued job is claimed first, with its request intact */
  char kind[16];
  json_t *got = NULL;
  bool resume = true;
  assert_int_equal(srv_jobs_claim(j, kind, &got, &resume), id1);
  assert_string_equal(kind, "train");
  assert_false(resume);
  assert_true(json_equal(got, req));
  json_decref(got);
  json_t *p = json_pack("{s:i, s:i, s:f}", "step", 5, "total_steps", 7, "loss", 0.5);
  srv_jobs_progress(j, id1, p, 4);
  srv_jobs_note(j, id1, "first note");
  srv_jobs_note(j, id1, "second \"quoted\" note");
  assert_string_equal(status_of(j, id1, st), "running");
  char *m = srv_jobs_metrics(j);
  assert_non_null(strstr(m, "ecsnet_admin_jobs{status=\"running\"} 1\n"));
  assert_non_null(strstr(m, "ecsnet_admin_job_step 0\n")); /* no runner: nothing running here */
  free(m);
  srv_jobs_free(j); /* as if the process died: the row still says running */

  j = open_store(dir, false);
  assert_non_null(j);
  json_t *job = srv_jobs_get(j, id1);
  assert_string_equal(json_string_value(json_object_get(job, "status")), "interrupted");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "checkpoint"), "step")),
                   4);
  assert_true(json_equal(json_object_get(job, "progress"), p));
  json_t *notes = json_object_get(job, "notes");
  assert_int_equal(json_array_size(notes), 2);
  assert_string_equal(json_string_value(json_array_get(notes, 1)), "second \"quoted\" note");
  json_decref(job);
  assert_string_equal(status_of(j, id2, st), "queued");

  /* cancel: queued at once; interrupted (finished) is a conflict; unknown is not found */
  assert_int_equal(srv_jobs_cancel(j, id2, &e), ECS_OK);
  assert_string_equal(status_of(j, id2, st), "cancelled");
  assert_int_equal(srv_jobs_cancel(j, id1, &e), ECS_ERR_CONFLICT);
  assert_int_equal(srv_jobs_cancel(j, 999, &e), ECS_ERR_NOT_FOUND);
  /* resume: interrupted and cancelled training jobs queue again; eval jobs and queued don't */
  assert_int_equal(srv_jobs_resume(j, id3, &e), ECS_ERR_CONFLICT);
  assert_int_equal(srv_jobs_resume(j, id1, &e), ECS_OK);
  assert_int_equal(srv_jobs_resume(j, id1, &e), ECS_ERR_CONFLICT);
  assert_int_equal(srv_jobs_resume(j, 999, &e), ECS_ERR_NOT_FOUND);
  assert_int_equal(srv_jobs_claim(j, kind, &got, &resume), id1);
  assert_true(resume);
  json_decref(got);
  json_t *res = json_pack("{s:b}", "activated", 0);
  srv_jobs_finish(j, id1, "succeeded", res, NULL);
  job = srv_jobs_get(j, id1);
  assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
  assert_true(json_equal(json_object_get(job, "result"), res));
  assert_int_equal(json_integer_value(json_object_get(job, "runs")), 2);
  assert_true(json_is_real(json_object_get(job, "finished")));
  json_decref(job);
  /* the eval job is next and then nothing */
  assert_int_equal(srv_jobs_claim(j, kind, &got, &resume), id3);
  assert_string_equal(kind, "eval");
  json_decref(got);
  assert_int_equal(srv_jobs_claim(j, kind, &got, &resume), 0);
  m = srv_jobs_metrics(j);
  assert_non_null(strstr(m, "ecsnet_admin_jobs_finished_total{status=\"succeeded\"} 1\n"));
  assert_non_null(strstr(m, "ecsnet_admin_jobs{status=\"cancelled\"} 1\n"));
  free(m);
  srv_jobs_free(j);
  json_decref(res);
  json_decref(p);
  json_decref(req);
}

static void test_unwritable_data_dir_is_an_error(void **state) {
  (void)state;
  srv_jobs_env env = {.data_dir = "/proc/ecs-no-such/dir", .device = "cpu", .threads = 1};
  ecs_err e = {0};
  assert_null(srv_jobs_open(&env, &e));
  assert_int_equal(e.status, ECS_ERR_IO);
  assert_non_null(strstr(e.msg, "/proc/ecs-no-such/dir"));
  srv_jobs_free(NULL);
}

/* ---- the runner ------------------------------------------------------------------------- */

typedef struct hooks {
  atomic_int busy_calls;
  atomic_int busy_left; /* answer busy this many more times */
  atomic_int max_ms;    /* the longest wait the job asked for */
  char name[64];
  int version;
} hooks;

static int wait_idle(void *user, int max_ms) {
  hooks *h = user;
  atomic_fetch_add(&h->busy_calls, 1);
  if (max_ms > atomic_load(&h->max_ms)) atomic_store(&h->max_ms, max_ms);
  return atomic_fetch_sub(&h->busy_left, 1) > 0;
}

static ecs_status activate(void *user, const char *name, int version, ecs_err *err) {
  hooks *h = user;
  snprintf(h->name, sizeof h->name, "%s", name);
  h->version = version;
  (void)err;
  return ECS_OK;
}

static void test_runner_trains_yields_and_registers(void **state) {
  (void)state;
  char dir[300], ds[400];
  snprintf(dir, sizeof dir, "%s/b", g_root);
  snprintf(ds, sizeof ds, "%s/b/datasets/syn", g_root);
  ecs_synth_params sp;
  ecs_synth_defaults(&sp);
  sp.count = 8;
  sp.size = 64;
  sp.n_classes = 2;
  sp.n_threads = 1;
  ecs_err e = {0};
  assert_int_equal(ecs_synth_write(&sp, ds, &e), ECS_OK);
  hooks h = {0};
  atomic_init(&h.busy_left, 40);
  srv_jobs_env env = {.data_dir = dir,
                      .device = "cpu",
                      .threads = 1,
                      .wait_idle = wait_idle,
                      .activate = activate,
                      .user = &h,
                      .start_runner = true};
  srv_jobs *j = srv_jobs_open(&env, &e);
  assert_non_null(j);
  json_t *req = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:b}", "dataset", "syn",
                          "dataset_dir", ds, "steps", 3, "batch_size", 2, "crop", 64,
                          "checkpoint_every", 2, "model_name", "tiny", "activate", 1);
  int64_t id = 0;
  assert_int_equal(srv_jobs_submit(j, "train", req, &id, &e), ECS_OK);
  json_t *job = NULL;
  const char *st = "";
  for (int i = 0; i < 600; i++) { /* at most a minute */
    json_decref(job);
    job = srv_jobs_get(j, id);
    st = json_string_value(json_object_get(job, "status"));
    if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) break;
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
  if (strcmp(st, "succeeded") != 0) {
    char *txt = json_dumps(job, 0);
    fprintf(stderr, "%s\n", txt);
    free(txt);
  }
  assert_string_equal(st, "succeeded");
  /* asked between ops, not only between the 3 steps; the first 40 answers were "busy" */
  assert_true(atomic_load(&h.busy_calls) > 40 + 3 * 10);
  /* each wait is bounded, so a cancel is seen while inference stays busy */
  assert_true(atomic_load(&h.max_ms) > 0 && atomic_load(&h.max_ms) <= 100);
  json_t *model = json_object_get(json_object_get(job, "result"), "model");
  assert_string_equal(json_string_value(json_object_get(model, "name")), "tiny");
  assert_int_equal(json_integer_value(json_object_get(model, "version")), 1);
  assert_string_equal(h.name, "tiny");
  assert_int_equal(h.version, 1);
  json_t *prog = json_object_get(job, "progress");
  assert_int_equal(json_integer_value(json_object_get(prog, "step")), 3);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "checkpoint"), "step")),
                   3);
  char path[600];
  snprintf(path, sizeof path, "%s/models/tiny/1.safetensors", dir);
  assert_int_equal(access(path, R_OK), 0);
  snprintf(path, sizeof path, "%s/models/ACTIVE", dir);
  assert_int_equal(access(path, R_OK), 0);
  json_decref(job);
  json_decref(req);
  srv_jobs_free(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_records_survive_a_reopen),
      cmocka_unit_test(test_unwritable_data_dir_is_an_error),
      cmocka_unit_test(test_runner_trains_yields_and_registers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
