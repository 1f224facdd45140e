/* srv-jobs.c - the job store (SQLite, WAL) and the runner thread; see srv-jobs.h.
 *
 * One connection, guarded by the store's mutex, serves the HTTP threads and the runner: every
 * statement is a single short row read or write, so a lock is simpler than a connection per
 * thread and never held across engine work. JSON columns (request, progress, result, notes)
 * are stored as text and parsed back when a job is shown. synchronous=NORMAL in WAL mode keeps
 * every committed row across a process crash (only an OS crash can lose the last commits),
 * which is what "jobs survive a restart" needs without an fsync per training step. */
#include "srv-jobs.h"
#include "ecs/path.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <malloc.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct srv_jobs {
  srv_jobs_env env;
  char data_dir[ECS_PATH_MAX];
  sqlite3 *db;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t runner;
  bool runner_started;
  bool stop;
  int64_t running_id;    /* 0: none */
  volatile int cancel;   /* the running job is asked to stop */
  volatile int shutdown; /* ...because the server stops: it ends interrupted */
  /* the running job's latest figures, for /metrics */
  double m_step, m_total, m_loss, m_ips;
  uint64_t finished[4]; /* succeeded, failed, cancelled, interrupted since start */
};

static const char *k_end_status[4] = {"succeeded", "failed", "cancelled", "interrupted"};

static double now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char k_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS jobs("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " request TEXT NOT NULL,"
    " progress TEXT,"
    " checkpoint_step INTEGER NOT NULL DEFAULT 0,"
    " result TEXT,"
    " notes TEXT NOT NULL DEFAULT '[]',"
    " error TEXT,"
    " resume INTEGER NOT NULL DEFAULT 0,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " runs INTEGER NOT NULL DEFAULT 0,"
    " created REAL NOT NULL,"
    " started REAL,"
    " finished REAL);"
    /* the process died while these ran */
    "UPDATE jobs SET status='interrupted', finished=NULL WHERE status='running';";

static int exec_locked(srv_jobs *j, const char *sql, ecs_err *err) {
  char *msg = NULL;
  int rc = sqlite3_exec(j->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    ecs_err_set(err, ECS_ERR_IO, "jobs.db: %s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
  }
  return rc;
}

static void *runner_main(void *arg);

/* Checkpoint writes a crash cut short leave checkpoint.safetensors.tmp.* beside the checkpoint
 * (the rename never happened); nothing reads them, and each is a model's size. The job store
 * is the only writer under jobs/, so at open none is being written. */
static void sweep_checkpoint_temps(const char *data_dir) {
  char base[ECS_PATH_MAX], dir[ECS_PATH_MAX], f[ECS_PATH_MAX];
  if (ecs_path_join(base, sizeof base, data_dir, "jobs", NULL) != ECS_OK) return;
  DIR *d = opendir(base);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' || ecs_path_join(dir, sizeof dir, base, e->d_name, NULL) != ECS_OK)
      continue;
    DIR *jd = opendir(dir);
    if (!jd) continue;
    for (struct dirent *t; (t = readdir(jd));)
      if (strncmp(t->d_name, "checkpoint.safetensors.tmp.", 27) == 0 &&
          ecs_path_join(f, sizeof f, dir, t->d_name, NULL) == ECS_OK)
        (void)unlink(f);
    closedir(jd);
  }
  closedir(d);
}

srv_jobs *srv_jobs_open(const srv_jobs_env *env, ecs_err *err) {
  srv_jobs *j = calloc(1, sizeof *j);
  if (!j) {
    ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  j->env = *env;
  if (ecs_path_join(j->data_dir, sizeof j->data_dir, NULL, env->data_dir, err) != ECS_OK) {
    free(j);
    return NULL;
  }
  j->env.data_dir = j->data_dir;
  if (j->env.threads < 1) j->env.threads = 1;
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  if (mkdir(j->data_dir, 0755) != 0 && errno != EEXIST) {
    ecs_err_set(err, ECS_ERR_IO, "cannot create %s: %s", j->data_dir, strerror(errno));
    srv_jobs_free(j);
    return NULL;
  }
  char path[ECS_PATH_MAX];
  if (ecs_path_join(path, sizeof path, j->data_dir, "jobs.db", err) != ECS_OK) {
    srv_jobs_free(j);
    return NULL;
  }
  int rc = sqlite3_open_v2(
      path, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    ecs_err_set(err, ECS_ERR_IO, "cannot open %s: %s", path, sqlite3_errstr(rc));
    srv_jobs_free(j);
    return NULL;
  }
  /* another server on the same volume may hold the write lock for a moment */
  sqlite3_busy_timeout(j->db, 5000);
  if (exec_locked(j, k_schema, err) != SQLITE_OK) {
    srv_jobs_free(j);
    return NULL;
  }
  sweep_checkpoint_temps(j->data_dir);
  if (env->start_runner) {
    if (pthread_create(&j->runner, NULL, runner_main, j) != 0) {
      ecs_err_set(err, ECS_ERR_NOMEM, "cannot start the job runner");
      srv_jobs_free(j);
      return NULL;
    }
    j->runner_started = true;
  }
  return j;
}

void srv_jobs_free(srv_jobs *j) {
  if (!j) return;
  if (j->runner_started) {
    pthread_mutex_lock(&j->mu);
    j->stop = true;
    j->shutdown = 1;
    j->cancel = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->runner, NULL);
  }
  if (j->db) sqlite3_close(j->db);
  pthread_cond_destroy(&j->cv);
  pthread_mutex_destroy(&j->mu);
  free(j);
}

const srv_jobs_env *srv_jobs_get_env(const srv_jobs *j) {
  return &j->env;
}

ecs_status srv_jobs_checkpoint(const srv_jobs *j, int64_t id, char *out, size_t n, ecs_err *err) {
  char base[ECS_PATH_MAX], dir[ECS_PATH_MAX];
  ecs_status st = ecs_path_join(base, sizeof base, j->data_dir, "jobs", err);
  if (st != ECS_OK) return st;
  if (mkdir(base, 0755) != 0 && errno != EEXIST)
    return ecs_err_set(err, ECS_ERR_IO, "cannot create %s: %s", base, strerror(errno));
  if ((st = ecs_path_fmt(dir, sizeof dir, err, "%s/%lld", base, (long long)id)) != ECS_OK)
    return st;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return ecs_err_set(err, ECS_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
  return ecs_path_join(out, n, dir, "checkpoint.safetensors", err);
}

/* ---- statements ------------------------------------------------------------------------- */

/* Prepares sql and binds the arguments described by types: 'i' int64, 't' text (NULL: null),
 * 'd' double. The caller holds j->mu. */
static sqlite3_stmt *prep(srv_jobs *j, const char *sql, const char *types, ...) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
  if (sqlite3_bind_parameter_count(st) != (int)strlen(types)) { /* a bug: refuse, never guess */
    sqlite3_finalize(st);
    return NULL;
  }
  va_list ap;
  va_start(ap, types);
  for (int i = 0; types[i]; i++) {
    if (types[i] == 'i')
      sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    else if (types[i] == 'd')
      sqlite3_bind_double(st, i + 1, va_arg(ap, double));
    else {
      const char *s = va_arg(ap, const char *);
      if (s)
        sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
      else
        sqlite3_bind_null(st, i + 1);
    }
  }
  va_end(ap);
  return st;
}

/* Runs a statement that returns no rows; true on success. */
static bool run_stmt(sqlite3_stmt *st) {
  if (!st) return false;
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE;
}

ecs_status srv_jobs_submit(srv_jobs *j, const char *kind, const json_t *request, int64_t *id,
                           ecs_err *err) {
  char *req = json_dumps(request, JSON_COMPACT | JSON_SORT_KEYS);
  if (!req) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  pthread_mutex_lock(&j->mu);
  sqlite3_stmt *st = prep(j, "INSERT INTO jobs(kind, status, request, created) VALUES(?,?,?,?)",
                          "tttd", kind, "queued", req, now_unix());
  bool ok = run_stmt(st);
  if (ok) *id = sqlite3_last_insert_rowid(j->db);
  const char *msg = sqlite3_errmsg(j->db);
  if (ok)
    pthread_cond_broadcast(&j->cv);
  else
    ecs_err_set(err, ECS_ERR_IO, "jobs.db: %s", msg);
  pthread_mutex_unlock(&j->mu);
  free(req);
  return ok ? ECS_OK : ECS_ERR_IO;
}

static json_t *col_json(sqlite3_stmt *st, int col) {
  const unsigned char *t = sqlite3_column_text(st, col);
  if (!t) return json_null();
  json_t *v = json_loads((const char *)t, 0, NULL);
  return v ? v : json_null();
}

static json_t *col_num(sqlite3_stmt *st, int col) {
  return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null()
                                                     : json_real(sqlite3_column_double(st, col));
}

#define JOB_COLUMNS                                                                                \
  "id, kind, status, request, progress, checkpoint_step, result, notes, error, cancel_requested, " \
  "runs, created, started, finished"

static json_t *row_json(sqlite3_stmt *st) {
  long long id = sqlite3_column_int64(st, 0);
  const char *status = (const char *)sqlite3_column_text(st, 2);
  const char *error = (const char *)sqlite3_column_text(st, 8);
  char self[64], cancel[64], resume[80];
  snprintf(self, sizeof self, "/admin/jobs/%lld", id);
  snprintf(cancel, sizeof cancel, "/admin/jobs/%lld", id);
  snprintf(resume, sizeof resume, "/admin/jobs/%lld/resume", id);
  json_t *links = json_pack("{s:s, s:s, s:s}", "self", self, "cancel", cancel, "resume", resume);
  int64_t ck = sqlite3_column_int64(st, 5);
  json_t *ckpt = ck > 0 ? json_pack("{s:I}", "step", (json_int_t)ck) : json_null();
  return json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:i, s:o, s:o, s:o, s:o}",
                   "id", (json_int_t)id, "kind", (const char *)sqlite3_column_text(st, 1), "status",
                   status ? status : "failed", "request", col_json(st, 3), "progress",
                   col_json(st, 4), "checkpoint", ckpt, "result", col_json(st, 6), "notes",
                   col_json(st, 7), "error", error ? json_string(error) : json_null(),
                   "cancel_requested", sqlite3_column_int(st, 9), "runs",
                   sqlite3_column_int(st, 10), "created", col_num(st, 11), "started",
                   col_num(st, 12), "finished", col_num(st, 13), "links", links);
}

json_t *srv_jobs_get(srv_jobs *j, int64_t id) {
  pthread_mutex_lock(&j->mu);
  sqlite3_stmt *st = prep(j, "SELECT " JOB_COLUMNS " FROM jobs WHERE id=?", "i", id);
  json_t *out = NULL;
  if (st && sqlite3_step(st) == SQLITE_ROW) out = row_json(st);
  sqlite3_finalize(st);
  pthread_mutex_unlock(&j->mu);
  return out;
}

json_t *srv_jobs_list(srv_jobs *j, int limit) {
  pthread_mutex_lock(&j->mu);
  sqlite3_stmt *st =
      prep(j, "SELECT " JOB_COLUMNS " FROM jobs ORDER BY id DESC LIMIT ?", "i", (int64_t)limit);
  json_t *arr = st ? json_array() : NULL;
  int rc;
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW)
    json_array_append_new(arr, row_json(st));
  sqlite3_finalize(st);
  pthread_mutex_unlock(&j->mu);
  return arr;
}

/* The status of a job, or false when there is none. Caller holds j->mu. */
static bool status_of(srv_jobs *j, int64_t id, char out[16], char kind[16]) {
  sqlite3_stmt *st = prep(j, "SELECT status, kind FROM jobs WHERE id=?", "i", id);
  bool found = st && sqlite3_step(st) == SQLITE_ROW;
  if (found) {
    snprintf(out, 16, "%s", (const char *)sqlite3_column_text(st, 0));
    if (kind) snprintf(kind, 16, "%s", (const char *)sqlite3_column_text(st, 1));
  }
  sqlite3_finalize(st);
  return found;
}

ecs_status srv_jobs_cancel(srv_jobs *j, int64_t id, ecs_err *err) {
  ecs_status st = ECS_OK;
  char status[16];
  pthread_mutex_lock(&j->mu);
  if (!status_of(j, id, status, NULL)) {
    st = ecs_err_set(err, ECS_ERR_NOT_FOUND, "no job %lld", (long long)id);
  } else if (strcmp(status, "queued") == 0) {
    if (!run_stmt(prep(j,
                       "UPDATE jobs SET status='cancelled', cancel_requested=1, finished=? "
                       "WHERE id=?",
                       "di", now_unix(), id)))
      st = ecs_err_set(err, ECS_ERR_IO, "jobs.db: %s", sqlite3_errmsg(j->db));
    else
      j->finished[2]++;
  } else if (strcmp(status, "running") == 0) {
    if (j->running_id == id) j->cancel = 1;
    run_stmt(prep(j, "UPDATE jobs SET cancel_requested=1 WHERE id=?", "i", id));
  } else {
    st = ecs_err_set(err, ECS_ERR_CONFLICT,
                     "job %lld is %s: only queued or running jobs can be cancelled", (long long)id,
                     status);
  }
  pthread_mutex_unlock(&j->mu);
  return st;
}

ecs_status srv_jobs_resume(srv_jobs *j, int64_t id, ecs_err *err) {
  ecs_status st = ECS_OK;
  char status[16], kind[16];
  pthread_mutex_lock(&j->mu);
  if (!status_of(j, id, status, kind)) {
    st = ecs_err_set(err, ECS_ERR_NOT_FOUND, "no job %lld", (long long)id);
  } else if (strcmp(kind, "train") != 0 ||
             (strcmp(status, "interrupted") != 0 && strcmp(status, "cancelled") != 0 &&
              strcmp(status, "failed") != 0)) {
    st = ecs_err_set(err, ECS_ERR_CONFLICT,
                     "job %lld (%s) is %s: only interrupted, cancelled or failed training jobs "
                     "resume",
                     (long long)id, kind, status);
  } else if (!run_stmt(prep(j,
                            "UPDATE jobs SET status='queued', resume=1, cancel_requested=0, "
                            "error=NULL, finished=NULL WHERE id=?",
                            "i", id))) {
    st = ecs_err_set(err, ECS_ERR_IO, "jobs.db: %s", sqlite3_errmsg(j->db));
  } else {
    pthread_cond_broadcast(&j->cv);
  }
  pthread_mutex_unlock(&j->mu);
  return st;
}

/* ---- the runner side ---------------------------------------------------------------------- */

static int64_t claim_locked(srv_jobs *j, char kind[16], json_t **request, bool *resume) {
  sqlite3_stmt *st = prep(j,
                          "SELECT id, kind, request, resume FROM jobs WHERE status='queued' "
                          "ORDER BY id LIMIT 1",
                          "");
  int64_t id = 0;
  if (st && sqlite3_step(st) == SQLITE_ROW) {
    id = sqlite3_column_int64(st, 0);
    snprintf(kind, 16, "%s", (const char *)sqlite3_column_text(st, 1));
    *request = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
    *resume = sqlite3_column_int(st, 3) != 0;
  }
  sqlite3_finalize(st);
  if (id && !run_stmt(prep(j, "UPDATE jobs SET status='running', runs=runs+1, started=? WHERE id=?",
                           "di", now_unix(), id))) {
    json_decref(*request);
    *request = NULL;
    return 0;
  }
  if (id && !*request) { /* a row this program did not write */
    run_stmt(
        prep(j, "UPDATE jobs SET status='failed', error='unreadable request' WHERE id=?", "i", id));
    return 0;
  }
  return id;
}

int64_t srv_jobs_claim(srv_jobs *j, char kind[16], json_t **request, bool *resume) {
  pthread_mutex_lock(&j->mu);
  int64_t id = claim_locked(j, kind, request, resume);
  pthread_mutex_unlock(&j->mu);
  return id;
}

static double num_field(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : 0.0;
}

void srv_jobs_progress(srv_jobs *j, int64_t id, const json_t *progress, int64_t checkpoint_step) {
  char *text = json_dumps(progress, JSON_COMPACT);
  if (!text) return;
  pthread_mutex_lock(&j->mu);
  if (checkpoint_step >= 0)
    run_stmt(prep(j, "UPDATE jobs SET progress=?, checkpoint_step=? WHERE id=?", "tii", text,
                  checkpoint_step, id));
  else
    run_stmt(prep(j, "UPDATE jobs SET progress=? WHERE id=?", "ti", text, id));
  j->m_step = num_field(progress, "step");
  j->m_total = num_field(progress, "total_steps");
  j->m_loss = num_field(progress, "loss");
  j->m_ips = num_field(progress, "images_per_s");
  pthread_mutex_unlock(&j->mu);
  free(text);
}

void srv_jobs_note(srv_jobs *j, int64_t id, const char *text) {
  pthread_mutex_lock(&j->mu);
  run_stmt(
      prep(j, "UPDATE jobs SET notes=json_insert(notes, '$[#]', ?) WHERE id=?", "ti", text, id));
  pthread_mutex_unlock(&j->mu);
}

void srv_jobs_finish(srv_jobs *j, int64_t id, const char *status, const json_t *result,
                     const char *error) {
  char *res = result ? json_dumps(result, JSON_COMPACT) : NULL;
  pthread_mutex_lock(&j->mu);
  run_stmt(prep(j,
                "UPDATE jobs SET status=?, result=coalesce(?, result), error=?, finished=? "
                "WHERE id=?",
                "tttdi", status, res, error, now_unix(), id));
  for (int k = 0; k < 4; k++)
    if (strcmp(status, k_end_status[k]) == 0) j->finished[k]++;
  pthread_mutex_unlock(&j->mu);
  free(res);
}

static void *runner_main(void *arg) {
  srv_jobs *j = arg;
  pthread_mutex_lock(&j->mu);
  while (!j->stop) {
    char kind[16];
    json_t *req = NULL;
    bool resume = false;
    int64_t id = claim_locked(j, kind, &req, &resume);
    if (!id) {
      pthread_cond_wait(&j->cv, &j->mu);
      continue;
    }
    j->running_id = id;
    j->cancel = 0;
    j->m_step = j->m_total = j->m_loss = j->m_ips = 0;
    pthread_mutex_unlock(&j->mu);
    srv_jobrun(j, id, kind, req, resume, &j->cancel, &j->shutdown);
    malloc_trim(0); /* a job's arenas and dataset cache back to the system, not kept idle */
    json_decref(req);
    pthread_mutex_lock(&j->mu);
    j->running_id = 0;
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

/* ---- /metrics ----------------------------------------------------------------------------- */

char *srv_jobs_metrics(srv_jobs *j) {
  static const char *statuses[] = {"queued", "running",   "succeeded",
                                   "failed", "cancelled", "interrupted"};
  int64_t counts[6] = {0};
  pthread_mutex_lock(&j->mu);
  sqlite3_stmt *st = prep(j, "SELECT status, count(*) FROM jobs GROUP BY status", "");
  while (st && sqlite3_step(st) == SQLITE_ROW)
    for (int k = 0; k < 6; k++)
      if (strcmp((const char *)sqlite3_column_text(st, 0), statuses[k]) == 0)
        counts[k] = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  double step = j->m_step, total = j->m_total, loss = j->m_loss, ips = j->m_ips;
  bool running = j->running_id != 0;
  uint64_t fin[4];
  memcpy(fin, j->finished, sizeof fin);
  pthread_mutex_unlock(&j->mu);

  size_t cap = 4096;
  char *out = malloc(cap);
  if (!out) return NULL;
  size_t len = 0;
#define EMIT(...) len += (size_t)snprintf(out + len, cap - len, __VA_ARGS__)
  EMIT("# HELP ecsnet_admin_jobs Admin jobs in the store, by status.\n"
       "# TYPE ecsnet_admin_jobs gauge\n");
  for (int k = 0; k < 6; k++)
    EMIT("ecsnet_admin_jobs{status=\"%s\"} %lld\n", statuses[k], (long long)counts[k]);
  EMIT("# HELP ecsnet_admin_jobs_finished_total Jobs that ended since the server started.\n"
       "# TYPE ecsnet_admin_jobs_finished_total counter\n");
  for (int k = 0; k < 4; k++)
    EMIT("ecsnet_admin_jobs_finished_total{status=\"%s\"} %llu\n", k_end_status[k],
         (unsigned long long)fin[k]);
  EMIT("# HELP ecsnet_admin_job_step The running job's last finished step (0: none running).\n"
       "# TYPE ecsnet_admin_job_step gauge\necsnet_admin_job_step %.0f\n"
       "# HELP ecsnet_admin_job_steps_total The running job's total steps.\n"
       "# TYPE ecsnet_admin_job_steps_total gauge\necsnet_admin_job_steps_total %.0f\n"
       "# HELP ecsnet_admin_job_loss The running job's last training loss.\n"
       "# TYPE ecsnet_admin_job_loss gauge\necsnet_admin_job_loss %.6g\n"
       "# HELP ecsnet_admin_job_images_per_second The running job's training throughput.\n"
       "# TYPE ecsnet_admin_job_images_per_second gauge\n"
       "ecsnet_admin_job_images_per_second %.6g\n",
       running ? step : 0, running ? total : 0, running ? loss : 0, running ? ips : 0);
#undef EMIT
  if (len >= cap) len = cap - 1;
  out[len] = '\0';
  return out;
}
