/* test_pool.c - the worker pool: order, back-pressure, deadlines, still_wanted, waiting for
 * idle, drain under load, shutdown and worker state.
 *
 * Most tests park the single worker on a "gate" job so that everything submitted afterwards is
 * queued at a known moment; opening the gate lets the pool schedule what it holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ecs/pool.h"

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- a gate: a job that blocks its worker until opened ----------------------------------- */

typedef struct gate {
  ecs_job job;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int entered, open;
} gate;

static void gate_run(ecs_job *job, void *ws) {
  (void)ws;
  gate *g = (gate *)job;
  pthread_mutex_lock(&g->mu);
  g->entered = 1;
  pthread_cond_broadcast(&g->cv);
  while (!g->open)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void gate_init(gate *g) {
  memset(g, 0, sizeof *g);
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->job.run = gate_run;
}

/* Submits the gate and waits until a worker is inside it. */
static void gate_close(ecs_pool *p, gate *g) {
  assert_int_equal(ecs_pool_submit(p, &g->job, NULL), ECS_OK);
  pthread_mutex_lock(&g->mu);
  while (!g->entered)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->open = 1;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate *g) {
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
}

/* ---- recording jobs ---------------------------------------------------------------------- */

typedef struct log {
  pthread_mutex_t mu;
  int order[256]; /* ids in the order they ran */
  int n;
  int ends[256]; /* per id: ecs_job_end + 1, 0 = done not called yet */
  int done_calls;
  int anomalies; /* seen on worker threads, checked by the test thread (cmocka's asserts
                  * longjmp and so must stay on the test's own thread) */
} log_t;

typedef struct rjob {
  ecs_job job;
  log_t *log;
  int id;
  int wanted; /* for still_wanted */
  int asked;
} rjob;

static void rjob_run(ecs_job *job, void *ws) {
  (void)ws;
  rjob *r = (rjob *)job;
  pthread_mutex_lock(&r->log->mu);
  r->log->order[r->log->n++] = r->id;
  pthread_mutex_unlock(&r->log->mu);
}

static void rjob_done(ecs_job *job, ecs_job_end end, void *ws) {
  (void)ws;
  rjob *r = (rjob *)job;
  pthread_mutex_lock(&r->log->mu);
  if (r->log->ends[r->id] != 0) r->log->anomalies++; /* done must come exactly once */
  r->log->ends[r->id] = (int)end + 1;
  r->log->done_calls++;
  pthread_mutex_unlock(&r->log->mu);
}

static int rjob_wanted(ecs_job *job) {
  rjob *r = (rjob *)job;
  r->asked++;
  return r->wanted;
}

static void log_init(log_t *lg) {
  memset(lg, 0, sizeof *lg);
  pthread_mutex_init(&lg->mu, NULL);
}

static void rjob_init(rjob *r, log_t *lg, int id) {
  memset(r, 0, sizeof *r);
  r->job.run = rjob_run;
  r->job.done = rjob_done;
  r->log = lg;
  r->id = id;
  r->wanted = 1;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_fifo_order(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 16, NULL, NULL, NULL, &err);
  assert_non_null(p);
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob js[10];
  for (int i = 0; i < 10; i++) {
    rjob_init(&js[i], &lg, i);
    assert_int_equal(ecs_pool_submit(p, &js[i].job, &err), ECS_OK);
  }
  ecs_pool_stats st;
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.queued, 10);
  assert_int_equal(st.running, 1);
  gate_open(&g);
  ecs_pool_drain(p);
  assert_int_equal(lg.n, 10);
  assert_int_equal(lg.anomalies, 0);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(lg.order[i], i);
    assert_int_equal(lg.ends[i], ECS_JOB_DONE + 1);
  }
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.completed, 11);
  assert_int_equal(st.submitted, 11);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.running, 0);
  ecs_pool_free(p);
  gate_destroy(&g);
}

static void test_full_queue_is_rejected_at_once(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 3, NULL, NULL, NULL, &err);
  assert_non_null(p);
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob js[5];
  for (int i = 0; i < 5; i++)
    rjob_init(&js[i], &lg, i);
  for (int i = 0; i < 3; i++)
    assert_int_equal(ecs_pool_submit(p, &js[i].job, &err), ECS_OK);
  uint64_t t0 = ecs_monotonic_ns();
  assert_int_equal(ecs_pool_submit(p, &js[3].job, &err), ECS_ERR_LIMIT);
  assert_true(ecs_monotonic_ns() - t0 < 100000000u); /* did not wait for room */
  assert_int_equal(err.status, ECS_ERR_LIMIT);
  assert_non_null(strstr(err.msg, "queue full"));
  ecs_pool_stats st;
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.rejected, 1);
  assert_int_equal(st.queued, 3);
  gate_open(&g);
  ecs_pool_drain(p);
  assert_int_equal(lg.ends[3], 0); /* a rejected job is never called back */
  assert_int_equal(lg.done_calls, 3);
  /* After the drain the pool takes nothing. */
  assert_int_equal(ecs_pool_submit(p, &js[4].job, &err), ECS_ERR_CANCELLED);
  ecs_pool_free(p);
  assert_int_equal(lg.ends[4], 0);
  gate_destroy(&g);
}

static void test_expired_jobs_are_dropped_before_they_start(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 8, NULL, NULL, NULL, &err);
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob a, b, c;
  rjob_init(&a, &lg, 0);
  rjob_init(&b, &lg, 1);
  rjob_init(&c, &lg, 2);
  a.job.deadline_ns = ecs_monotonic_ns() + 1000000u;       /* 1 ms: will pass in the queue */
  b.job.deadline_ns = ecs_monotonic_ns() + 60000000000ull; /* a minute */
  c.job.deadline_ns = 0;                                   /* none */
  assert_int_equal(ecs_pool_submit(p, &a.job, &err), ECS_OK);
  assert_int_equal(ecs_pool_submit(p, &b.job, &err), ECS_OK);
  assert_int_equal(ecs_pool_submit(p, &c.job, &err), ECS_OK);
  sleep_ms(10);
  gate_open(&g);
  ecs_pool_drain(p);
  assert_int_equal(lg.ends[0], ECS_JOB_EXPIRED + 1);
  assert_int_equal(lg.ends[1], ECS_JOB_DONE + 1);
  assert_int_equal(lg.ends[2], ECS_JOB_DONE + 1);
  assert_int_equal(lg.n, 2); /* a never ran */
  assert_int_equal(lg.order[0], 1);
  ecs_pool_stats st;
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.completed, 3); /* gate, b, c */
  ecs_pool_free(p);
  gate_destroy(&g);
}

/* A queue full of requests whose deadline has passed makes room for a live one. */
static void test_full_queue_of_expired_jobs_takes_a_live_one(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 2, NULL, NULL, NULL, &err);
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob js[4];
  for (int i = 0; i < 4; i++)
    rjob_init(&js[i], &lg, i);
  js[0].job.deadline_ns = ecs_monotonic_ns() + 1000000u;
  js[1].job.deadline_ns = ecs_monotonic_ns() + 60000000000ull;
  assert_int_equal(ecs_pool_submit(p, &js[0].job, &err), ECS_OK);
  assert_int_equal(ecs_pool_submit(p, &js[1].job, &err), ECS_OK);
  assert_int_equal(ecs_pool_submit(p, &js[2].job, &err), ECS_ERR_LIMIT); /* nothing expired yet */
  sleep_ms(10);
  assert_int_equal(ecs_pool_submit(p, &js[3].job, &err), ECS_OK); /* js[0] made room */
  ecs_pool_stats st;
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.queued, 2);
  gate_open(&g);
  ecs_pool_drain(p);
  assert_int_equal(lg.ends[0], ECS_JOB_EXPIRED + 1);
  assert_int_equal(lg.ends[1], ECS_JOB_DONE + 1);
  assert_int_equal(lg.ends[2], 0);
  assert_int_equal(lg.ends[3], ECS_JOB_DONE + 1);
  assert_int_equal(lg.n, 2);
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.rejected, 1);
  ecs_pool_free(p);
  gate_destroy(&g);
}

static void test_still_wanted_is_asked_just_before_start(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 8, NULL, NULL, NULL, &err);
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob a, b;
  rjob_init(&a, &lg, 0);
  rjob_init(&b, &lg, 1);
  a.job.still_wanted = rjob_wanted;
  b.job.still_wanted = rjob_wanted;
  assert_int_equal(ecs_pool_submit(p, &a.job, &err), ECS_OK);
  assert_int_equal(ecs_pool_submit(p, &b.job, &err), ECS_OK);
  a.wanted = 0; /* the client hung up while the job was queued */
  assert_int_equal(a.asked, 0);
  gate_open(&g);
  ecs_pool_drain(p);
  assert_int_equal(a.asked, 1);
  assert_int_equal(b.asked, 1);
  assert_int_equal(lg.ends[0], ECS_JOB_GONE + 1);
  assert_int_equal(lg.ends[1], ECS_JOB_DONE + 1);
  assert_int_equal(lg.n, 1);
  assert_int_equal(lg.order[0], 1);
  ecs_pool_stats st;
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.gone, 1);
  ecs_pool_free(p);
  gate_destroy(&g);
}

/* ecs_pool_wait_idle: at once on an idle pool; a timeout while a job runs; woken (well before
 * the timeout) when the last job ends. */
typedef struct waiter {
  ecs_pool *pool;
  int result;
  uint64_t waited_ns;
} waiter;

static void *wait_main(void *arg) {
  waiter *w = arg;
  uint64_t t0 = ecs_monotonic_ns();
  w->result = ecs_pool_wait_idle(w->pool, 10000);
  w->waited_ns = ecs_monotonic_ns() - t0;
  return NULL;
}

static void test_wait_idle(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 8, NULL, NULL, NULL, &err);
  assert_int_equal(ecs_pool_wait_idle(p, 0), 1);
  assert_int_equal(ecs_pool_wait_idle(p, 5000), 1); /* idle: no wait at all */
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob queued;
  rjob_init(&queued, &lg, 0);
  assert_int_equal(ecs_pool_submit(p, &queued.job, &err), ECS_OK);
  assert_int_equal(ecs_pool_wait_idle(p, 0), 0);
  uint64_t t0 = ecs_monotonic_ns();
  assert_int_equal(ecs_pool_wait_idle(p, 30), 0); /* busy throughout: times out */
  assert_true(ecs_monotonic_ns() - t0 >= 29000000u);
  waiter w = {.pool = p};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
  sleep_ms(20);
  gate_open(&g); /* the gate ends, then the queued job runs: then the pool is idle */
  pthread_join(th, NULL);
  assert_int_equal(w.result, 1);
  assert_true(w.waited_ns < 5000000000ull);
  assert_int_equal(lg.ends[0], ECS_JOB_DONE + 1); /* idle means its done had returned too */
  assert_int_equal(ecs_pool_wait_idle(NULL, 10), 1);
  ecs_pool_free(p);
  gate_destroy(&g);
}

/* ---- load: several submitters, several workers, then a drain ------------------------------ */

typedef struct cjob {
  ecs_job job;
  atomic_int *ran;
  atomic_int *done;
} cjob;

static atomic_int load_anomalies;

static void cjob_run(ecs_job *job, void *ws) {
  cjob *c = (cjob *)job;
  if (!ws) {
    atomic_fetch_add(&load_anomalies, 1);
    return;
  }
  (*(int *)ws)++; /* per-worker state: touched by its own thread only */
  atomic_fetch_add(c->ran, 1);
}

static void cjob_done(ecs_job *job, ecs_job_end end, void *ws) {
  (void)ws;
  cjob *c = (cjob *)job;
  if (end != ECS_JOB_DONE) atomic_fetch_add(&load_anomalies, 1);
  atomic_fetch_add(c->done, 1);
}

static atomic_int inits, frees;

static ecs_status counter_init(int index, void *user, void **state, ecs_err *err) {
  (void)user;
  if (index < 0 || index >= 4) return ecs_err_set(err, ECS_ERR_INVALID, "index %d", index);
  int *c = calloc(1, sizeof *c);
  if (!c) return ecs_err_set(err, ECS_ERR_NOMEM, "no memory");
  *state = c;
  atomic_fetch_add(&inits, 1);
  return ECS_OK;
}

static int total_by_workers;

static void counter_free(void *state, void *user) {
  pthread_mutex_t *mu = user;
  pthread_mutex_lock(mu);
  total_by_workers += *(int *)state;
  pthread_mutex_unlock(mu);
  free(state);
  atomic_fetch_add(&frees, 1);
}

enum { N_SUBMITTERS = 4, PER_SUBMITTER = 300 };

typedef struct submitter {
  ecs_pool *pool;
  cjob jobs[PER_SUBMITTER];
  atomic_int *ran, *done;
  int rejections;
} submitter;

static void *submit_main(void *arg) {
  submitter *s = arg;
  for (int i = 0; i < PER_SUBMITTER; i++) {
    s->jobs[i] =
        (cjob){.job = {.run = cjob_run, .done = cjob_done}, .ran = s->ran, .done = s->done};
    ecs_err err;
    while (ecs_pool_submit(s->pool, &s->jobs[i].job, &err) == ECS_ERR_LIMIT) {
      s->rejections++;
      sched_yield();
    }
  }
  return NULL;
}

static void test_drain_under_load(void **state) {
  (void)state;
  ecs_err err = {0};
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  atomic_store(&inits, 0);
  atomic_store(&frees, 0);
  total_by_workers = 0;
  ecs_pool *p = ecs_pool_new(4, 8, counter_init, counter_free, &mu, &err);
  assert_non_null(p);
  assert_int_equal(atomic_load(&inits), 4);
  atomic_int ran = 0, done = 0;
  submitter *subs = calloc(N_SUBMITTERS, sizeof *subs);
  pthread_t th[N_SUBMITTERS];
  for (int i = 0; i < N_SUBMITTERS; i++) {
    subs[i].pool = p;
    subs[i].ran = &ran;
    subs[i].done = &done;
    assert_int_equal(pthread_create(&th[i], NULL, submit_main, &subs[i]), 0);
  }
  for (int i = 0; i < N_SUBMITTERS; i++)
    pthread_join(th[i], NULL);
  ecs_pool_drain(p);
  assert_int_equal(atomic_load(&load_anomalies), 0);
  /* Everything accepted has run and been reported once the drain returns. */
  assert_int_equal(atomic_load(&ran), N_SUBMITTERS * PER_SUBMITTER);
  assert_int_equal(atomic_load(&done), N_SUBMITTERS * PER_SUBMITTER);
  ecs_pool_stats st;
  ecs_pool_get_stats(p, &st);
  assert_int_equal(st.completed, N_SUBMITTERS * PER_SUBMITTER);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.running, 0);
  int rej = 0;
  for (int i = 0; i < N_SUBMITTERS; i++)
    rej += subs[i].rejections;
  assert_int_equal(st.rejected, (uint64_t)rej);
  ecs_pool_drain(p); /* idempotent */
  ecs_pool_free(p);
  assert_int_equal(atomic_load(&frees), 4);
  assert_int_equal(total_by_workers, N_SUBMITTERS * PER_SUBMITTER);
  free(subs);
}

static void *open_later(void *arg) {
  sleep_ms(50);
  gate_open(arg);
  return NULL;
}

static void test_free_cancels_queued_jobs(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_pool *p = ecs_pool_new(1, 8, NULL, NULL, NULL, &err);
  gate g;
  gate_init(&g);
  gate_close(p, &g);
  log_t lg;
  log_init(&lg);
  rjob js[3];
  for (int i = 0; i < 3; i++) {
    rjob_init(&js[i], &lg, i);
    assert_int_equal(ecs_pool_submit(p, &js[i].job, &err), ECS_OK);
  }
  pthread_t th;
  pthread_create(&th, NULL, open_later, &g);
  ecs_pool_free(p); /* waits for the running gate, cancels the rest */
  pthread_join(th, NULL);
  assert_int_equal(lg.n, 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(lg.ends[i], ECS_JOB_CANCELLED + 1);
  assert_int_equal(g.open, 1);
  gate_destroy(&g);
  ecs_pool_free(NULL);
}

static ecs_status failing_init(int index, void *user, void **state, ecs_err *err) {
  (void)user;
  if (index == 2) return ecs_err_set(err, ECS_ERR_BACKEND, "no device for worker %d", index);
  *state = malloc(16);
  atomic_fetch_add(&inits, 1);
  return ECS_OK;
}

static void plain_free(void *state, void *user) {
  (void)user;
  free(state);
  atomic_fetch_add(&frees, 1);
}

static void test_worker_init_failure(void **state) {
  (void)state;
  ecs_err err = {0};
  atomic_store(&inits, 0);
  atomic_store(&frees, 0);
  assert_null(ecs_pool_new(4, 8, failing_init, plain_free, NULL, &err));
  assert_int_equal(err.status, ECS_ERR_BACKEND);
  assert_string_equal(err.msg, "no device for worker 2");
  /* The workers that did initialise were freed again. */
  assert_int_equal(atomic_load(&frees), atomic_load(&inits));
  assert_int_equal(atomic_load(&inits), 3);
}

static void test_bad_arguments(void **state) {
  (void)state;
  ecs_err err = {0};
  assert_null(ecs_pool_new(0, 8, NULL, NULL, NULL, &err));
  assert_int_equal(err.status, ECS_ERR_INVALID);
  assert_null(ecs_pool_new(2, 0, NULL, NULL, NULL, &err));
  assert_int_equal(err.status, ECS_ERR_INVALID);
  ecs_pool_opts o = {.n_workers = 1, .queue_capacity = 0};
  assert_null(ecs_pool_new_opts(&o, &err));
  assert_int_equal(err.status, ECS_ERR_INVALID);
  assert_null(ecs_pool_new_opts(NULL, &err));
  ecs_pool *p = ecs_pool_new(1, 1, NULL, NULL, NULL, &err);
  ecs_job j = {0}; /* no run */
  assert_int_equal(ecs_pool_submit(p, &j, &err), ECS_ERR_INVALID);
  assert_int_equal(ecs_pool_submit(p, NULL, &err), ECS_ERR_INVALID);
  assert_string_equal(ecs_job_end_str(ECS_JOB_EXPIRED), "expired");
  ecs_pool_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_order),
      cmocka_unit_test(test_full_queue_is_rejected_at_once),
      cmocka_unit_test(test_expired_jobs_are_dropped_before_they_start),
      cmocka_unit_test(test_full_queue_of_expired_jobs_takes_a_live_one),
      cmocka_unit_test(test_still_wanted_is_asked_just_before_start),
      cmocka_unit_test(test_wait_idle),
      cmocka_unit_test(test_drain_under_load),
      cmocka_unit_test(test_free_cancels_queued_jobs),
      cmocka_unit_test(test_worker_init_failure),
      cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
