/* pool.c - worker threads over a bounded job queue (see ecs/pool.h for the contract).
 *
 * One mutex guards everything; the work per job (a forward pass) dwarfs the locking, and one
 * lock keeps the invariants easy to state:
 *  - queued jobs sit in one intrusive FIFO list; capacity bounds its length;
 *  - `busy` counts workers holding a job taken off the queue (checking still_wanted, running,
 *    calling done); the pool is idle, and a drain over, when queued == 0 and busy == 0, and
 *    idle_cv is broadcast each time that becomes true;
 *  - callbacks are never called with the lock held, so they may submit.
 * The condition variables use CLOCK_MONOTONIC, the clock of the deadlines. */
#include "ecs/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_WORKERS = 256 };

typedef struct worker {
  struct ecs_pool *pool;
  int index;
  void *state;
  int init_done;
  ecs_status init_status;
  ecs_err init_err;
  pthread_t thread;
  int started;
} worker;

struct ecs_pool {
  ecs_pool_opts opts;
  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* a job was queued, or the pool is stopping */
  pthread_cond_t idle_cv; /* the pool went idle (drain, wait_idle), or a worker initialised */
  ecs_job *head, *tail;
  int queued;
  ecs_job *expired; /* swept out of a full queue, waiting for a worker to call their done */
  int busy;
  int running;
  int accepting;
  int stopping; /* free begun: workers exit once the queue is empty */
  ecs_pool_stats st;
  worker *workers;
};

uint64_t ecs_monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *ecs_job_end_str(ecs_job_end e) {
  switch (e) {
  case ECS_JOB_DONE: return "done";
  case ECS_JOB_EXPIRED: return "expired";
  case ECS_JOB_GONE: return "gone";
  case ECS_JOB_CANCELLED: return "cancelled";
  }
  return "unknown";
}

/* Nothing left for the workers: no queued job and no swept one awaiting its done call. */
static int no_work(const ecs_pool *p) {
  return p->queued == 0 && p->expired == NULL;
}

static void push_job(ecs_pool *p, ecs_job *j) {
  j->pool_next_ = NULL;
  if (p->tail)
    p->tail->pool_next_ = j;
  else
    p->head = j;
  p->tail = j;
  p->queued++;
}

/* Unlinks j, whose predecessor in the queue is prev (NULL for the head). */
static void unlink_job(ecs_pool *p, ecs_job *prev, ecs_job *j) {
  if (prev)
    prev->pool_next_ = j->pool_next_;
  else
    p->head = j->pool_next_;
  if (p->tail == j) p->tail = prev;
  j->pool_next_ = NULL;
  p->queued--;
}

/* Called with the lock held and a job queued: takes the oldest. */
static ecs_job *take_job(ecs_pool *p) {
  ecs_job *j = p->head;
  unlink_job(p, NULL, j);
  return j;
}

static void finish(ecs_job *j, ecs_job_end end, void *state) {
  if (j->done) j->done(j, end, state);
}

/* Outside the lock: drops the job when it expired or is no longer wanted, else runs it; then
 * calls done. */
static void process(ecs_pool *p, worker *w, ecs_job *j) {
  ecs_job_end end = ECS_JOB_DONE;
  if (j->deadline_ns != 0 && ecs_monotonic_ns() > j->deadline_ns)
    end = ECS_JOB_EXPIRED;
  else if (j->still_wanted && !j->still_wanted(j))
    end = ECS_JOB_GONE;
  pthread_mutex_lock(&p->mu);
  if (end == ECS_JOB_EXPIRED)
    p->st.expired++;
  else if (end == ECS_JOB_GONE)
    p->st.gone++;
  else
    p->running++;
  pthread_mutex_unlock(&p->mu);
  if (end == ECS_JOB_DONE) {
    j->run(j, w->state);
    pthread_mutex_lock(&p->mu);
    p->running--;
    p->st.completed++;
    pthread_mutex_unlock(&p->mu);
  }
  finish(j, end, w->state);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  ecs_pool *p = w->pool;
  ecs_status st = ECS_OK;
  ecs_err err;
  ecs_err_clear(&err);
  if (p->opts.worker_init) st = p->opts.worker_init(w->index, p->opts.user, &w->state, &err);

  pthread_mutex_lock(&p->mu);
  w->init_status = st;
  if (st != ECS_OK) w->init_err = err;
  w->init_done = 1;
  pthread_cond_broadcast(&p->idle_cv);
  if (st != ECS_OK) {
    pthread_mutex_unlock(&p->mu);
    return NULL;
  }

  for (;;) {
    while (!p->stopping && no_work(p))
      pthread_cond_wait(&p->work_cv, &p->mu);
    if (no_work(p)) break; /* stopping */
    /* Busy from the moment the job leaves the queue until its done has returned. */
    p->busy++;
    if (p->expired) {
      ecs_job *j = p->expired;
      p->expired = NULL;
      pthread_mutex_unlock(&p->mu);
      uint64_t k = 0;
      for (; j; k++) {
        ecs_job *next = j->pool_next_;
        j->pool_next_ = NULL;
        finish(j, ECS_JOB_EXPIRED, w->state);
        j = next;
      }
      pthread_mutex_lock(&p->mu);
      p->st.expired += k;
    } else {
      ecs_job *j = take_job(p);
      pthread_mutex_unlock(&p->mu);
      process(p, w, j);
      pthread_mutex_lock(&p->mu);
    }
    p->busy--;
    if (p->busy == 0 && no_work(p)) pthread_cond_broadcast(&p->idle_cv);
  }
  pthread_mutex_unlock(&p->mu);
  if (p->opts.worker_free) p->opts.worker_free(w->state, p->opts.user);
  w->state = NULL;
  return NULL;
}

ecs_pool *ecs_pool_new(int n_workers, int queue_capacity, ecs_worker_init_fn worker_init,
                       ecs_worker_free_fn worker_free, void *user, ecs_err *err) {
  ecs_pool_opts o = {.n_workers = n_workers,
                     .queue_capacity = queue_capacity,
                     .worker_init = worker_init,
                     .worker_free = worker_free,
                     .user = user};
  return ecs_pool_new_opts(&o, err);
}

/* Stops and joins the workers started so far (used when ecs_pool_new fails half-way and by
 * ecs_pool_free). */
static void stop_workers(ecs_pool *p) {
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  p->accepting = 0;
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->opts.n_workers; i++)
    if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
}

static void destroy(ecs_pool *p) {
  pthread_cond_destroy(&p->work_cv);
  pthread_cond_destroy(&p->idle_cv);
  pthread_mutex_destroy(&p->mu);
  free(p->workers);
  free(p);
}

static int init_sync(ecs_pool *p) {
  pthread_condattr_t ca;
  if (pthread_condattr_init(&ca) != 0) return -1;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_mutex_init(&p->mu, NULL);
  rc |= pthread_cond_init(&p->work_cv, &ca);
  rc |= pthread_cond_init(&p->idle_cv, &ca);
  pthread_condattr_destroy(&ca);
  return rc == 0 ? 0 : -1;
}

ecs_pool *ecs_pool_new_opts(const ecs_pool_opts *opts, ecs_err *err) {
  if (!opts) {
    ecs_err_set(err, ECS_ERR_INVALID, "pool: no options");
    return NULL;
  }
  ecs_pool_opts o = *opts;
  if (o.n_workers < 1 || o.n_workers > MAX_WORKERS) {
    ecs_err_set(err, ECS_ERR_INVALID, "pool: %d workers (must be 1..%d)", o.n_workers, MAX_WORKERS);
    return NULL;
  }
  if (o.queue_capacity < 1) {
    ecs_err_set(err, ECS_ERR_INVALID, "pool: queue capacity %d (must be >= 1)", o.queue_capacity);
    return NULL;
  }
  ecs_pool *p = calloc(1, sizeof *p);
  worker *ws = p ? calloc((size_t)o.n_workers, sizeof *ws) : NULL;
  if (!ws) {
    free(p);
    ecs_err_set(err, ECS_ERR_NOMEM, "pool: out of memory");
    return NULL;
  }
  p->opts = o;
  p->workers = ws;
  p->accepting = 1;
  p->st.n_workers = o.n_workers;
  p->st.queue_capacity = o.queue_capacity;
  if (init_sync(p) != 0) {
    free(ws);
    free(p);
    ecs_err_set(err, ECS_ERR_NOMEM, "pool: cannot create the locks");
    return NULL;
  }

  ecs_status st = ECS_OK;
  ecs_err first_err;
  ecs_err_clear(&first_err);
  for (int i = 0; i < o.n_workers; i++) {
    ws[i].pool = p;
    ws[i].index = i;
    if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
      st = ecs_err_set(&first_err, ECS_ERR_NOMEM, "pool: cannot start worker thread %d", i);
      break;
    }
    ws[i].started = 1;
  }
  /* Wait for every started worker's init, so a failure is reported here and not later. */
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < o.n_workers; i++) {
    if (!ws[i].started) continue;
    while (!ws[i].init_done)
      pthread_cond_wait(&p->idle_cv, &p->mu);
    if (st == ECS_OK && ws[i].init_status != ECS_OK) {
      st = ws[i].init_status;
      first_err = ws[i].init_err;
      if (first_err.msg[0] == '\0')
        ecs_err_set(&first_err, st, "pool: worker %d failed to initialise", i);
    }
  }
  pthread_mutex_unlock(&p->mu);
  if (st != ECS_OK) {
    stop_workers(p);
    destroy(p);
    if (err) *err = first_err;
    return NULL;
  }
  return p;
}

/* With the lock held and the queue full: moves jobs whose deadline has passed out of the queue
 * (a worker calls their done), so that requests nobody waits for any more do not turn live ones
 * away. */
static void sweep_expired(ecs_pool *p) {
  uint64_t now = ecs_monotonic_ns();
  int moved = 0;
  ecs_job *prev = NULL, *j = p->head;
  while (j) {
    ecs_job *next = j->pool_next_;
    if (j->deadline_ns != 0 && now > j->deadline_ns) {
      unlink_job(p, prev, j);
      j->pool_next_ = p->expired;
      p->expired = j;
      moved = 1;
    } else {
      prev = j;
    }
    j = next;
  }
  if (moved) pthread_cond_signal(&p->work_cv);
}

ecs_status ecs_pool_submit(ecs_pool *pool, ecs_job *job, ecs_err *err) {
  if (!pool || !job) return ecs_err_set(err, ECS_ERR_INVALID, "pool: no pool or no job");
  if (!job->run) return ecs_err_set(err, ECS_ERR_INVALID, "pool: job has no run callback");
  pthread_mutex_lock(&pool->mu);
  if (!pool->accepting) {
    pthread_mutex_unlock(&pool->mu);
    return ecs_err_set(err, ECS_ERR_CANCELLED, "pool: shutting down, not accepting jobs");
  }
  if (pool->queued >= pool->opts.queue_capacity) sweep_expired(pool);
  if (pool->queued >= pool->opts.queue_capacity) {
    pool->st.rejected++;
    int cap = pool->opts.queue_capacity;
    pthread_mutex_unlock(&pool->mu);
    return ecs_err_set(err, ECS_ERR_LIMIT, "pool: queue full (%d jobs waiting)", cap);
  }
  push_job(pool, job);
  pool->st.submitted++;
  pthread_cond_signal(&pool->work_cv);
  pthread_mutex_unlock(&pool->mu);
  return ECS_OK;
}

int ecs_pool_wait_idle(ecs_pool *pool, int timeout_ms) {
  if (!pool) return 1;
  pthread_mutex_lock(&pool->mu);
  if ((!no_work(pool) || pool->busy > 0) && timeout_ms > 0) {
    uint64_t until = ecs_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
    struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                          .tv_nsec = (long)(until % 1000000000u)};
    while ((!no_work(pool) || pool->busy > 0) &&
           pthread_cond_timedwait(&pool->idle_cv, &pool->mu, &ts) == 0) {
    }
  }
  int idle = no_work(pool) && pool->busy == 0;
  pthread_mutex_unlock(&pool->mu);
  return idle;
}

void ecs_pool_drain(ecs_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mu);
  pool->accepting = 0;
  while (!no_work(pool) || pool->busy > 0)
    pthread_cond_wait(&pool->idle_cv, &pool->mu);
  pthread_mutex_unlock(&pool->mu);
}

void ecs_pool_free(ecs_pool *pool) {
  if (!pool) return;
  /* Take what is still queued before the workers see `stopping`, so they exit instead of
   * starting it. */
  pthread_mutex_lock(&pool->mu);
  pool->accepting = 0;
  ecs_job *left = pool->head;
  pool->head = pool->tail = NULL;
  pool->st.cancelled += (uint64_t)pool->queued;
  pool->queued = 0;
  pthread_mutex_unlock(&pool->mu);
  for (ecs_job *j = left; j;) {
    ecs_job *next = j->pool_next_;
    j->pool_next_ = NULL;
    finish(j, ECS_JOB_CANCELLED, NULL);
    j = next;
  }
  stop_workers(pool);
  destroy(pool);
}

void ecs_pool_get_stats(ecs_pool *pool, ecs_pool_stats *stats) {
  if (!stats) return;
  memset(stats, 0, sizeof *stats);
  if (!pool) return;
  pthread_mutex_lock(&pool->mu);
  *stats = pool->st;
  stats->queued = pool->queued;
  stats->running = pool->running;
  pthread_mutex_unlock(&pool->mu);
}
