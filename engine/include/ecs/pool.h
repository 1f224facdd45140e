/* ecs/pool.h - a fixed set of worker threads fed by a bounded job queue.
 *
 * Why it looks like this: the server must never queue without bound (a full queue is an
 * immediate 503, not a slow death), a request whose client has gone or whose deadline has passed
 * must not cost a forward pass, and each worker keeps its own expensive state (a backend stream
 * plus a context) for its whole life instead of building one per request. The pool knows nothing
 * about models: a job is a run callback, a done callback and a few scheduling fields.
 *
 * Work that must yield to the pool's (the server's training job) does not run on it: it runs on
 * its own thread and calls ecs_pool_wait_idle between its ops, which returns at once while the
 * pool is idle and otherwise sleeps until the last queued or running job has ended. That keeps
 * the wait for a request arriving mid-training to one op; a job on the pool would hold a worker
 * for a whole training step (about 110 ms for the small network at the admin defaults, seconds
 * for resnet38d), and with one worker nothing else would run meanwhile.
 *
 * Ownership: jobs are allocated by the caller (usually embedded in its request state) and are
 * borrowed by the pool from a successful ecs_pool_submit until their done callback has been
 * called. done is the last time the pool touches the job, so done may free it. A job is
 * submitted at most once at a time.
 *
 * Threads: run, done and still_wanted run on worker threads, except that the jobs
 * still queued when ecs_pool_free is called without a drain get done(ECS_JOB_CANCELLED) on the
 * freeing thread with worker_state NULL. Callbacks must not call ecs_pool_drain or
 * ecs_pool_free; they may submit new jobs. */
#ifndef ECS_POOL_H
#define ECS_POOL_H

#include <stdint.h>

#include "ecs/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ecs_pool ecs_pool;
typedef struct ecs_job ecs_job;

/* CLOCK_MONOTONIC in nanoseconds, the clock of ecs_job.deadline_ns. */
uint64_t ecs_monotonic_ns(void);

/* How a job ended, as told to its done callback. */
typedef enum ecs_job_end {
  ECS_JOB_DONE = 0,  /* run returned */
  ECS_JOB_EXPIRED,   /* its deadline passed before it started; it never ran */
  ECS_JOB_GONE,      /* still_wanted said no just before the start; it never ran */
  ECS_JOB_CANCELLED, /* the pool was freed without a drain while it was queued */
} ecs_job_end;

const char *ecs_job_end_str(ecs_job_end e);

struct ecs_job {
  /* Runs the job on a worker; worker_state is what worker_init made for that worker.
   * Required. */
  void (*run)(ecs_job *job, void *worker_state);
  /* Called exactly once per accepted job, after run or instead of it. Optional. */
  void (*done)(ecs_job *job, ecs_job_end end, void *worker_state);
  /* Called on the worker just before the job starts; returning 0 drops it (ECS_JOB_GONE). The
   * server asks whether the client is still connected. Optional. */
  int (*still_wanted)(ecs_job *job);
  uint64_t deadline_ns; /* ecs_monotonic_ns() value after which the job is dropped; 0: none */
  void *user;           /* for the caller */

  /* Owned by the pool while the job is queued; leave zeroed. */
  ecs_job *pool_next_;
};

/* Makes one worker's private state; index is 0..n_workers-1. Returning an error fails
 * ecs_pool_new (the workers already made are freed). */
typedef ecs_status (*ecs_worker_init_fn)(int index, void *user, void **state, ecs_err *err);
/* Frees one worker's state, on that worker's thread as it exits. */
typedef void (*ecs_worker_free_fn)(void *state, void *user);
typedef struct ecs_pool_opts {
  int n_workers;                  /* 1..256 */
  int queue_capacity;             /* queued (not running) jobs; >= 1 */
  ecs_worker_init_fn worker_init; /* optional: state is then NULL */
  ecs_worker_free_fn worker_free; /* optional */
  void *user;                     /* passed to worker_init and worker_free */
} ecs_pool_opts;

/* Starts opts->n_workers threads, each with its own worker_init state, and waits until all of
 * them are initialised. NULL and err filled on failure (ECS_ERR_INVALID for bad options, or
 * worker_init's own error). */
ecs_pool *ecs_pool_new_opts(const ecs_pool_opts *opts, ecs_err *err);
/* The same with the options as arguments. */
ecs_pool *ecs_pool_new(int n_workers, int queue_capacity, ecs_worker_init_fn worker_init,
                       ecs_worker_free_fn worker_free, void *user, ecs_err *err);

/* Queues a job; never blocks. When the queue is full, jobs in it whose deadline has passed are
 * taken out first (a worker then calls their done with ECS_JOB_EXPIRED); if it is still full,
 * ECS_ERR_LIMIT (answer 503),
 * ECS_ERR_CANCELLED once a drain has started, ECS_ERR_INVALID for a job without run. On failure the
 * pool does not keep the job and done is not called. */
ecs_status ecs_pool_submit(ecs_pool *pool, ecs_job *job, ecs_err *err);

/* Returns 1 at once when no job is queued or running; otherwise waits until that is so (woken
 * when the last job's done has returned, not by polling) or timeout_ms has passed, and returns
 * 1 when the pool is idle, 0 when it is still busy. timeout_ms <= 0 only looks. */
int ecs_pool_wait_idle(ecs_pool *pool, int timeout_ms);

/* Stops accepting jobs, then blocks until every queued and running job has finished (each gets
 * its done callback as usual: expired or gone jobs are still dropped). Idempotent; the workers
 * stay alive until ecs_pool_free. */
void ecs_pool_drain(ecs_pool *pool);

/* Stops accepting jobs, cancels what is still queued (done(ECS_JOB_CANCELLED) on this thread),
 * waits for running jobs, frees every worker's state and the pool. Call ecs_pool_drain first
 * for a graceful shutdown. Accepts NULL. */
void ecs_pool_free(ecs_pool *pool);

typedef struct ecs_pool_stats {
  int n_workers;
  int queue_capacity;
  int queued;         /* waiting for a worker */
  int running;        /* jobs inside run now */
  uint64_t submitted; /* accepted by ecs_pool_submit */
  uint64_t completed; /* ended with ECS_JOB_DONE */
  uint64_t expired;   /* dropped: deadline passed */
  uint64_t gone;      /* dropped: still_wanted said no */
  uint64_t rejected;  /* refused by ecs_pool_submit because the queue was full */
  uint64_t cancelled; /* dropped by ecs_pool_free */
} ecs_pool_stats;

/* A consistent snapshot of the counters. */
void ecs_pool_get_stats(ecs_pool *pool, ecs_pool_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
