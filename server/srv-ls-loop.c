/* srv-ls-loop.c - POST /labelstudio/webhook and the weakly supervised loop it feeds.
 *
 * Label Studio posts every event of a project to the ML backend's /webhook, without
 * credentials, and waits 1 s. ecsnet answers at once; an annotation event only says which
 * tasks changed. When the loop is on (basic auth on /labelstudio, admin on, --ls-url and a
 * token) a thread of its own then reads everything from Label Studio itself with ecsnet's token,
 * never from the event: the project (its description names the dataset), each task and its newest
 * image-level Choices annotation, and the task's image. Each annotated image goes into the
 * dataset under --data-dir/datasets/NAME in the VOC layout the trainer reads (JPEGImages/,
 * labels.txt with the model's class ids, classes.txt, ImageSets/Segmentation/train.txt), and
 * every N new annotations an admin fine-tuning job of the served model starts; its result
 * becomes the next version of the served model and is activated, so Label Studio's next
 * predictions (a new model_version) come from the better model.
 *
 * The project's description holds the settings, one per line:
 *   ecsnet-dataset: NAME        the dataset (a plain folder name); required
 *   ecsnet-train-every: N       new annotations per fine-tuning job (default 10)
 *   ecsnet-train-steps: N       steps of each job (default 200) */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "labels.h"
#include "labelstudio.h"
#include "srv-fetch.h"
#include "srv-impl.h"

#define MAX_EVENT_TASKS 100
#define LOOP_PATH       (ECS_PATH_MAX + 256)

/* snprintf into a path buffer; false when it does not fit. */
#define PATHF(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf)

typedef struct loop_job {
  srv *s;
  json_int_t project;
  int n;
  json_int_t tasks[MAX_EVENT_TASKS];
} loop_job;

typedef struct loop_settings {
  char dataset[64];
  int every, steps;
} loop_settings;

/* One writer of the datasets at a time. */
static pthread_mutex_t g_dataset_mu = PTHREAD_MUTEX_INITIALIZER;
/* The loop's threads in flight (srv_ls_loop_drain waits for them). */
#define MAX_LOOP_THREADS 4
static pthread_mutex_t g_threads_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_threads_cv = PTHREAD_COND_INITIALIZER;
static int g_threads;

static const char *loop_off(const srv *s) {
  if (!s->cfg.ls_auth[0]) return "the loop needs basic auth on /labelstudio (--ls-auth-file)";
  if (!s->jobs) return "the loop needs admin (--admin-token-file)";
  if (!s->cfg.ls_url[0] || !s->cfg.ls_token[0])
    return "the loop needs --ls-url and --ls-token-file";
  return NULL;
}

static bool plain(const char *s) {
  if (!*s || *s == '.') return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '.' || *s == '_' || *s == '-'))
      return false;
  return true;
}

static void read_settings(const char *desc, loop_settings *ls) {
  *ls = (loop_settings){.every = 10, .steps = 200};
  for (const char *p = desc ? desc : ""; *p;) {
    size_t n = strcspn(p, "\r\n");
    char line[128] = "", val[64] = "";
    snprintf(line, sizeof line, "%.*s", (int)(n < 127 ? n : 127), p);
    if (sscanf(line, " ecsnet-dataset: %63s", val) == 1 && plain(val))
      memcpy(ls->dataset, val, sizeof ls->dataset);
    int v;
    if (sscanf(line, " ecsnet-train-every: %d", &v) == 1 && v >= 1 && v <= 100000) ls->every = v;
    if (sscanf(line, " ecsnet-train-steps: %d", &v) == 1 && v >= 1 && v <= 1000000) ls->steps = v;
    p += n;
    while (*p == '\r' || *p == '\n')
      p++;
  }
}

/* ---- the dataset ------------------------------------------------------------------------ */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t n = 0, cap = 0, got;
  char chunk[4096];
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (n + got + 1 > cap) {
      cap = (n + got + 1) * 2;
      char *nb = realloc(buf, cap);
      if (!nb) break;
      buf = nb;
    }
    memcpy(buf + n, chunk, got);
    n += got;
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  return buf ? buf : calloc(1, 1);
}

/* Writes text to path through a temporary file and a rename. */
static bool put_file(const char *path, const void *bytes, size_t n) {
  char tmp[LOOP_PATH];
  if (!PATHF(tmp, "%s.tmp", path)) return false;
  FILE *f = fopen(tmp, "wb");
  if (!f) return false;
  bool ok = fwrite(bytes, 1, n, f) == n;
  ok = fclose(f) == 0 && ok;
  return ok && rename(tmp, path) == 0;
}

/* Sets the line of id in a list file (the line itself, or "id ..." in labels.txt). */
static bool set_line(const char *path, const char *id, const char *line) {
  char *old = slurp(path);
  size_t idl = strlen(id), cap = (old ? strlen(old) : 0) + strlen(line) + 2, o = 0;
  char *out = malloc(cap);
  if (!out) {
    free(old);
    return false;
  }
  for (char *p = old; p && *p;) {
    size_t n = strcspn(p, "\n");
    bool same = n >= idl && strncmp(p, id, idl) == 0 && (n == idl || p[idl] == ' ');
    if (!same && n > 0) {
      memcpy(out + o, p, n);
      o += n;
      out[o++] = '\n';
    }
    p += n + (p[n] == '\n');
  }
  o += (size_t)snprintf(out + o, cap - o, "%s\n", line);
  bool ok = put_file(path, out, o);
  free(out);
  free(old);
  return ok;
}

static int count_lines(const char *path) {
  char *t = slurp(path);
  int n = 0;
  for (char *p = t; p && *p; p++)
    n += *p == '\n';
  free(t);
  return n;
}

/* The dataset's folders and classes.txt (the model's classes; a dataset with other classes is
 * refused). */
static bool prepare_dataset(srv *s, const char *dir, const api_model_info *info) {
  char p[LOOP_PATH];
  if (!PATHF(p, "%s/datasets", s->cfg.data_dir)) return false;
  mkdir(p, 0755);
  mkdir(dir, 0755);
  if (!PATHF(p, "%s/JPEGImages", dir)) return false;
  mkdir(p, 0755);
  if (!PATHF(p, "%s/ImageSets", dir)) return false;
  mkdir(p, 0755);
  if (!PATHF(p, "%s/ImageSets/Segmentation", dir)) return false;
  mkdir(p, 0755);
  char want[ECS_MAX_CLASSES * ECS_CLASS_NAME_MAX] = "";
  for (int k = 0, o = 0; k < info->n_classes; k++)
    o += snprintf(want + o, sizeof want - (size_t)o, "%s\n", info->class_names[k]);
  if (!PATHF(p, "%s/classes.txt", dir)) return false;
  char *have = slurp(p);
  bool ok = have ? strcmp(have, want) == 0 : put_file(p, want, strlen(want));
  if (have && !ok)
    srv_log_event(s, "warn", "labelstudio loop: %s has other classes than the served model", p);
  free(have);
  return ok;
}

/* The image as JPEG bytes: JPEG as it is, anything else decoded and encoded. */
static uint8_t *as_jpeg(srv *s, uint8_t *bytes, size_t n, size_t *out_n, ecs_err *e) {
  if (n >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    *out_n = n;
    return bytes;
  }
  ecs_image *img = NULL;
  uint8_t *jpg = NULL;
  if (ecs_image_decode(bytes, n, (size_t)s->cfg.max_pixels, &img, e) == ECS_OK)
    ecs_image_encode_jpeg(img, 95, &jpg, out_n, e);
  ecs_image_free(img);
  free(bytes);
  return jpg;
}

/* The image's line of labels.txt: its id, then the class ids its tags name, ascending, each
 * once. A tag naming a group (ecsnet-imagenet-lite0's "cat") stands for every member class of
 * the group: the image shows one of them and the tag does not say which, so each is trained as
 * present, as the group's score and CAM are made from all of them. NULL when no tag names a
 * class or a group (the image is left out: it would train as showing none of them) or when
 * out of memory. */
static char *label_line(const char *id, const api_ls_task *t, const api_model_info *info) {
  bool *on = calloc((size_t)info->n_classes + 1, sizeof *on);
  if (!on) return NULL;
  int n = 0;
  for (int i = 0; i < t->n_labels; i++) {
    int c = t->labels[i].id, k = 0;
    const uint16_t *members = api_label_members(info, c, &k); /* NULL: not a group */
    for (int j = 0; j < (members ? k : 1); j++) {
      int m = members ? members[j] : c;
      if (m >= 1 && m <= info->n_classes && !on[m]) {
        on[m] = true;
        n++;
      }
    }
  }
  size_t cap = strlen(id) + 8 * (size_t)n + 1, o = 0;
  char *line = n > 0 ? malloc(cap) : NULL;
  if (line) {
    o += (size_t)snprintf(line, cap, "%s", id);
    for (int c = 1; c <= info->n_classes; c++)
      if (on[c]) o += (size_t)snprintf(line + o, cap - o, " %d", c);
  }
  free(on);
  return line;
}

/* Adds one task to the dataset; true when it was added (or updated). */
static bool add_task(srv *s, const char *dir, const api_ls_config *cfg, const api_model_info *info,
                     json_int_t project, json_int_t tid) {
  char path[LOOP_PATH], id[64];
  snprintf(path, sizeof path, "/api/tasks/%lld", (long long)tid);
  json_t *task = NULL;
  api_error ae;
  if (!srv_fetch_ls_json(s->fetch, path, &task, &ae)) {
    srv_log_event(s, "warn", "labelstudio loop: task %lld: %s", (long long)tid, ae.message);
    return false;
  }
  json_object_del(json_object_get(task, "data"), "labels"); /* the annotators' Choices only */
  api_ls_task t;
  bool ok = api_ls_read_task(task, cfg, info, &t, &ae) && t.n_labels > 0;
  uint8_t *img = NULL, *jpg = NULL;
  size_t n = 0, jn = 0;
  ecs_err e = {0};
  if (ok && !srv_fetch_image(s->fetch, t.image, &img, &n, &ae)) {
    srv_log_event(s, "warn", "labelstudio loop: task %lld: %s", (long long)tid, ae.message);
    ok = false;
  }
  if (ok && !(jpg = as_jpeg(s, img, n, &jn, &e))) ok = false;
  snprintf(id, sizeof id, "ls-%lld-%lld", (long long)project, (long long)tid);
  char *line = ok ? label_line(id, &t, info) : NULL;
  ok = ok && line;
  if (ok) {
    ok = PATHF(path, "%s/JPEGImages/%s.jpg", dir, id) && put_file(path, jpg, jn);
    ok = ok && PATHF(path, "%s/labels.txt", dir) && set_line(path, id, line);
    ok = ok && PATHF(path, "%s/ImageSets/Segmentation/train.txt", dir) && set_line(path, id, id);
  }
  free(line);
  free(jpg);
  json_decref(task);
  return ok;
}

/* ---- fine-tuning ------------------------------------------------------------------------ */

static int bump_pending(const char *dir, int added, bool reset) {
  char path[LOOP_PATH], text[32];
  if (!PATHF(path, "%s/.ecsnet-ls-pending", dir)) return 0;
  char *old = slurp(path);
  int n = (old ? atoi(old) : 0) + added;
  free(old);
  if (reset) n = 0;
  int len = snprintf(text, sizeof text, "%d\n", n);
  put_file(path, text, (size_t)len);
  return n;
}

static void start_training(srv *s, const char *dir, const loop_settings *ls,
                           const api_model_info *info) {
  char base[160], train[LOOP_PATH];
  snprintf(base, sizeof base, "%s/%d", info->name, info->version);
  if (!PATHF(train, "%s/ImageSets/Segmentation/train.txt", dir)) return;
  int images = count_lines(train), batch = images < 16 ? (images > 0 ? images : 1) : 16;
  json_t *b =
      json_pack("{s:s, s:s, s:s, s:i, s:i, s:b}", "dataset", ls->dataset, "base_model", base,
                "model_name", info->name, "steps", ls->steps, "batch_size", batch, "activate", 1);
  int64_t id = 0;
  ecs_err e = {0};
  if (b && srv_admin_submit_train(s, b, &id, &e) == ECS_OK)
    srv_log_event(s, "info", "labelstudio loop: dataset %s (%d images): fine-tuning job %lld",
                  ls->dataset, images, (long long)id);
  else
    srv_log_event(s, "warn", "labelstudio loop: no fine-tuning job: %s", e.msg);
  json_decref(b);
}

static void loop_run(loop_job *lj) {
  srv *s = lj->s;
  char path[64];
  snprintf(path, sizeof path, "/api/projects/%lld", (long long)lj->project);
  json_t *proj = NULL;
  api_error ae;
  api_ls_config cfg;
  loop_settings ls;
  if (!srv_fetch_ls_json(s->fetch, path, &proj, &ae)) {
    srv_log_event(s, "warn", "labelstudio loop: project %lld: %s", (long long)lj->project,
                  ae.message);
    return;
  }
  read_settings(json_string_value(json_object_get(proj, "description")), &ls);
  bool ok =
      ls.dataset[0] &&
      api_ls_parse_config(json_string_value(json_object_get(proj, "label_config")), &cfg, &ae) &&
      cfg.choices.present;
  json_decref(proj);
  srv_model_ref *m = ok ? srv_model_acquire(s) : NULL;
  if (!m) return; /* no dataset named, no Choices in the config, or no model */
  char dir[LOOP_PATH];
  if (!PATHF(dir, "%s/datasets/%s", s->cfg.data_dir, ls.dataset)) {
    srv_model_release(m);
    return;
  }
  pthread_mutex_lock(&g_dataset_mu);
  int added = 0;
  if (prepare_dataset(s, dir, &m->info))
    for (int i = 0; i < lj->n && !atomic_load(&s->stopping); i++)
      added += add_task(s, dir, &cfg, &m->info, lj->project, lj->tasks[i]);
  if (added > 0 && bump_pending(dir, added, false) >= ls.every) {
    bump_pending(dir, 0, true);
    start_training(s, dir, &ls, &m->info);
  }
  pthread_mutex_unlock(&g_dataset_mu);
  srv_model_release(m);
}

/* The loop runs on threads of its own, not the inference workers: Label Studio may call
 * /predict while it serves our requests, and that answer needs a worker. */
static void *loop_thread(void *arg) {
  loop_run(arg);
  free(arg);
  pthread_mutex_lock(&g_threads_mu);
  g_threads--;
  pthread_cond_broadcast(&g_threads_cv);
  pthread_mutex_unlock(&g_threads_mu);
  return NULL;
}

static bool loop_start(loop_job *lj) {
  pthread_mutex_lock(&g_threads_mu);
  bool ok = g_threads < MAX_LOOP_THREADS;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  ok = ok && pthread_create(&t, &attr, loop_thread, lj) == 0;
  pthread_attr_destroy(&attr);
  if (ok) g_threads++;
  pthread_mutex_unlock(&g_threads_mu);
  return ok;
}

void srv_ls_loop_drain(void) {
  pthread_mutex_lock(&g_threads_mu);
  while (g_threads > 0)
    pthread_cond_wait(&g_threads_cv, &g_threads_mu);
  pthread_mutex_unlock(&g_threads_mu);
}

/* ---- the route -------------------------------------------------------------------------- */

static json_int_t task_id(const json_t *ann) {
  const json_t *t = json_object_get(ann, "task");
  return json_is_integer(t) ? json_integer_value(t) : json_integer_value(json_object_get(t, "id"));
}

static bool loop_event(const char *action) {
  return action &&
         (strcmp(action, "ANNOTATION_CREATED") == 0 || strcmp(action, "ANNOTATIONS_CREATED") == 0 ||
          strcmp(action, "ANNOTATION_UPDATED") == 0);
}

static enum MHD_Result ignored(srv_req *r, const char *action, const char *why) {
  return srv_answer_json(r, 200,
                         json_pack("{s:s, s:s, s:s}", "status", "ignored", "action",
                                   action ? action : "", "reason", why));
}

/* No basic auth here: Label Studio's webhooks carry none. Nothing of the event is trusted
 * beyond the ids, which only say what to read from Label Studio. */
enum MHD_Result srv_ls_webhook(srv_req *r) {
  api_error ae;
  json_t *body = srv_ls_parse_body(r, &ae);
  if (!body) return srv_respond_error(r, &ae);
  const char *action = json_string_value(json_object_get(body, "action"));
  const char *off = loop_off(r->s);
  json_t *ann = json_object_get(body, "annotation");
  json_int_t project = json_integer_value(json_object_get(json_object_get(body, "project"), "id"));
  loop_job *lj = NULL;
  enum MHD_Result ret;
  if (!loop_event(action))
    ret = ignored(r, action, "not an annotation event");
  else if (off)
    ret = ignored(r, action, off);
  else if (project <= 0)
    ret = ignored(r, action, "no project id");
  else if (!(lj = calloc(1, sizeof *lj)))
    ret = ignored(r, action, "out of memory");
  else {
    lj->s = r->s;
    lj->project = project;
    size_t i;
    const json_t *a;
    if (json_is_object(ann) && task_id(ann) > 0) lj->tasks[lj->n++] = task_id(ann);
    json_array_foreach(ann, i, a) {
      if (lj->n < MAX_EVENT_TASKS && task_id(a) > 0) lj->tasks[lj->n++] = task_id(a);
    }
    int n = lj->n; /* lj is the thread's once started */
    if (n == 0) {
      free(lj);
      ret = ignored(r, action, "no task ids");
    } else if (!loop_start(lj)) {
      free(lj);
      ret = ignored(r, action, "the server is busy");
    } else {
      ret = srv_answer_json(
          r, 200, json_pack("{s:s, s:s, s:i}", "status", "accepted", "action", action, "tasks", n));
    }
  }
  json_decref(body);
  return ret;
}
