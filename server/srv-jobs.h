/* srv-jobs.h - background training and evaluation jobs: the SQLite job store and the runner.
 *
 * Why a database and one runner thread: an operator's training run may take hours, so its
 * record must outlive the process (a crash, a redeploy) and say where to resume from. SQLite
 * in WAL mode under DATA_DIR/jobs.db gives crash-safe single-row updates with readers that
 * never block the runner. Exactly one runner thread takes queued jobs in id order, so one job
 * runs at a time and the others wait; it owns its own backend (--train-threads threads) and
 * context, separate from the inference workers, and between ops it waits in the env's wait_idle
 * hook while inference requests are queued or running (the pool wakes it when they are done):
 * inference keeps priority without the pool having to preempt anything, and a request waits
 * for at most the one training op in progress.
 *
 * The store is one of the two owners of DATA_DIR (docs/data-dir.md): it alone writes jobs.db
 * and jobs/. A job's one file is DATA_DIR/jobs/ID/checkpoint.safetensors (written by the trainer
 * every checkpoint_every steps and when it stops, through a temporary file and a rename); the
 * finished model goes straight into the registry (api_reg_add_model), never through jobs/.
 * Statuses: queued, running, succeeded, failed, cancelled, interrupted. A job found "running" when
 * the store opens was running when the process died: it becomes interrupted, and a resume queues it
 * again to continue from its checkpoint's step.
 *
 * Requests reach the store already validated (srv-admin.c): the store never sees a path a
 * client wrote, only a dataset folder resolved inside DATA_DIR/datasets and registry names. */
#ifndef SRV_JOBS_H
#define SRV_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ecs/backend.h"
#include "ecs/base.h"

typedef struct srv_jobs srv_jobs;

typedef struct srv_jobs_env {
  const char *data_dir;
  const char *device;        /* "cpu", "auto", "cuda:N" */
  int threads;               /* compute threads of the job's backend (>= 1) */
  ecs_backend_params engine; /* the engine options of the job's backend (n_threads ignored) */
  /* Waits while inference requests wait or run, at most max_ms; non-zero when they still do.
   * The job calls it between ops and so pauses while inference has work. */
  int (*wait_idle)(void *user, int max_ms);
  /* Serve this registry version now (activation of a finished job's model). */
  ecs_status (*activate)(void *user, const char *name, int version, ecs_err *err);
  void *user;
  bool start_runner; /* false: the store alone (tests of the records) */
} srv_jobs_env;

/* Opens (creating) DATA_DIR/jobs.db, marks jobs left running as interrupted and starts the
 * runner. env is copied; its strings must outlive the store. */
srv_jobs *srv_jobs_open(const srv_jobs_env *env, ecs_err *err);
/* Stops the runner: a running job is stopped at its next op, checkpointed and left
 * interrupted (resumable). Accepts NULL. */
void srv_jobs_free(srv_jobs *j);

/* Queues a job of kind "train" or "eval"; request is the validated request (borrowed). */
ecs_status srv_jobs_submit(srv_jobs *j, const char *kind, const json_t *request, int64_t *id,
                           ecs_err *err);

/* The job as JSON (new reference), or NULL when there is no such id. */
json_t *srv_jobs_get(srv_jobs *j, int64_t id);
/* Every job, newest first, at most limit (new reference; NULL when the store fails). */
json_t *srv_jobs_list(srv_jobs *j, int limit);

/* Cancels a queued job at once, or asks the running one to stop (it ends cancelled within
 * one step, keeping its checkpoint). ECS_ERR_NOT_FOUND for no such job, ECS_ERR_CONFLICT for
 * a finished one, ECS_ERR_IO when the store fails. */
ecs_status srv_jobs_cancel(srv_jobs *j, int64_t id, ecs_err *err);
/* Queues an interrupted, cancelled or failed training job again; it continues from its
 * checkpoint when there is one (from step 0 otherwise, which its notes then say). The same
 * statuses as srv_jobs_cancel; ECS_ERR_CONFLICT for a job in any other state. */
ecs_status srv_jobs_resume(srv_jobs *j, int64_t id, ecs_err *err);

/* Prometheus lines for /metrics (malloc'd text; NULL when out of memory). */
char *srv_jobs_metrics(srv_jobs *j);

/* ---- for the job runner (srv-jobrun.c) and tests -------------------------------------- */

/* Takes the oldest queued job and marks it running; 0 when none. *kind gets "train"/"eval",
 * *request a new reference, *resume whether it continues a checkpoint. */
int64_t srv_jobs_claim(srv_jobs *j, char kind[16], json_t **request, bool *resume);
/* Records a running job's progress (a JSON object, borrowed) and its checkpoint's step
 * (< 0: unchanged). */
void srv_jobs_progress(srv_jobs *j, int64_t id, const json_t *progress, int64_t checkpoint_step);
/* Adds a line to the job's notes (what the operator should know: a re-initialised
 * classifier, a resume without checkpoint). */
void srv_jobs_note(srv_jobs *j, int64_t id, const char *text);
/* Ends a job: status is succeeded, failed, cancelled or interrupted; result (borrowed, may be
 * NULL) and error (may be NULL) are stored. */
void srv_jobs_finish(srv_jobs *j, int64_t id, const char *status, const json_t *result,
                     const char *error);
/* DATA_DIR/jobs/ID/checkpoint.safetensors into out, its folder created: where the job's
 * trainer writes its checkpoints and a resume reads them. */
ecs_status srv_jobs_checkpoint(const srv_jobs *j, int64_t id, char *out, size_t n, ecs_err *err);
const srv_jobs_env *srv_jobs_get_env(const srv_jobs *j);

/* Runs one claimed job to its end (srv-jobrun.c); cancel is polled between ops. Records its
 * progress and end through the functions above. */
void srv_jobrun(srv_jobs *j, int64_t id, const char *kind, const json_t *request, bool resume,
                const volatile int *cancel, const volatile int *shutdown);

/* The fields of a POST /admin/train body that are rows of the table in ecs/hparams.h, checked
 * (JSON type, then the row's bounds) and set into hp (model values) or o (run settings); a
 * NULL struct leaves its scope's fields alone. Other keys are skipped. On failure:
 * ECS_ERR_INVALID, *bad the key and err "KEY must be ...". srv-admin.c validates with it, the
 * runner applies with it, so the two cannot disagree. */
struct ecs_hparams;
struct ecs_train_opts;
ecs_status srv_train_hparams(const json_t *req, struct ecs_hparams *hp, struct ecs_train_opts *o,
                             const char **bad, ecs_err *err);

#endif
