/* srv-jobrun.c - what a claimed job does on the engine: train (fresh, fine-tuned or resumed),
 * evaluate, register and activate the result.
 *
 * The job owns everything it touches: its dataset index, its model copy, its backend of
 * env->threads threads and its ctx. Nothing is shared with the inference workers until the
 * finished model is saved into the registry (api_reg_add_model; the job's folder only ever
 * holds its checkpoint, named by the job store) and (when asked) handed to env->activate,
 * which loads it afresh for serving; so a job can never disturb a request mid-flight.
 *
 * Sharing the CPU: the trainer calls yield_between_ops between every two ops of the forward
 * and backward passes (ecs_ctx_set_yield through ecs_train_opts.yield); while inference
 * requests are queued or running the job waits there in env->wait_idle until the pool has none
 * (woken by the pool, not polling), so a request never waits for more than the one op in
 * progress. Cancelling is checked at the same place, which is why a DELETE stops a job within
 * one step. */
#include "srv-jobs.h"
#include "ecs/path.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ecs/eval.h"
#include "ecs/hparams.h"
#include "ecs/safetensors.h"
#include "ecs/train.h"
#include "registry.h"

typedef struct run_state {
  srv_jobs *j;
  int64_t id;
  const srv_jobs_env *env;
  const volatile int *cancel;
  int64_t every;      /* checkpoint interval in steps */
  int64_t first_step; /* the first step this run finished (resume: checkpoint step + 1) */
  int64_t resumed_from;
  json_t *last; /* the latest progress record */
} run_state;

static int yield_between_ops(void *user) {
  run_state *r = user;
  if (*r->cancel) return 1;
  if (!r->env->wait_idle) return 0;
  /* at once while inference is idle; else woken when it is, or to look at the cancel flag */
  while (r->env->wait_idle(r->env->user, 50))
    if (*r->cancel) return 1;
  return 0;
}

static json_t *num_or_null(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

static int on_progress(void *user, const ecs_train_progress *p) {
  run_state *r = user;
  if (!r->first_step) r->first_step = p->step;
  json_t *o = json_pack(
      "{s:I, s:I, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, "
      "s:I}",
      "step", (json_int_t)p->step, "total_steps", (json_int_t)p->max_steps, "epoch", p->epoch,
      "ecs_phase", p->ecs_phase, "loss", num_or_null(p->stats.loss), "loss_cls",
      num_or_null(p->stats.loss_cls), "loss_cls_erased", num_or_null(p->stats.loss_cls_erased),
      "loss_seg", num_or_null(p->stats.loss_seg), "lr", num_or_null(p->lr), "lambda",
      num_or_null(p->lambda), "images_per_s", num_or_null(p->images_per_s), "eta_s",
      num_or_null(p->eta_s), "elapsed_s", num_or_null(p->elapsed_s), "phi",
      (json_int_t)p->stats.phi, "phi_fg", (json_int_t)p->stats.phi_fg, "phi_bg",
      (json_int_t)p->stats.phi_bg, "first_step", (json_int_t)r->first_step, "resumed_from_step",
      (json_int_t)r->resumed_from);
  bool ck = r->every > 0 && p->step % r->every == 0;
  if (o) srv_jobs_progress(r->j, r->id, o, ck ? p->step : -1);
  json_decref(r->last);
  r->last = o;
  return *r->cancel;
}

static int on_eval_progress(void *user, int done, int total) {
  run_state *r = user;
  (void)done;
  (void)total;
  return *r->cancel;
}

/* ---- request fields (validated by srv-admin.c; defaults here only for absent ones) -------- */

static double f_num(const json_t *req, const char *k, double dflt) {
  const json_t *v = json_object_get(req, k);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

static const char *f_str(const json_t *req, const char *k) {
  return json_string_value(json_object_get(req, k));
}

static bool f_bool(const json_t *req, const char *k) {
  return json_is_true(json_object_get(req, k));
}

/* The text of ecs_hparam_set for a JSON value of p's type; false when the type differs. */
static bool json_text(const ecs_hparam *p, const json_t *v, char *out, size_t n) {
  const char *type = ecs_hparam_json_type(p);
  if (!strcmp(type, "boolean") && json_is_boolean(v))
    snprintf(out, n, "%s", json_is_true(v) ? "true" : "false");
  else if ((!strcmp(type, "integer") || !strcmp(type, "number")) && json_is_integer(v))
    snprintf(out, n, "%lld", (long long)json_integer_value(v));
  else if (!strcmp(type, "number") && json_is_real(v))
    snprintf(out, n, "%.17g", json_real_value(v));
  else if (!strcmp(type, "string") && json_is_string(v) && json_string_length(v) < 64)
    snprintf(out, n, "%s", json_string_value(v));
  else if (!strcmp(type, "array") && json_is_array(v) && json_array_size(v) > 0) {
    size_t len = 0, i;
    const json_t *x;
    out[0] = '\0';
    json_array_foreach(v, i, x) {
      if (!json_is_integer(x) || len + 24 >= n) return false;
      len += (size_t)snprintf(out + len, n - len, "%s%lld", i ? "," : "",
                              (long long)json_integer_value(x));
    }
  } else
    return false;
  return true;
}

ecs_status srv_train_hparams(const json_t *req, ecs_hparams *hp, ecs_train_opts *o,
                             const char **bad, ecs_err *err) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)req, key, v) {
    const ecs_hparam *p = ecs_hparam_by_key(key);
    void *dst = p ? ecs_hparam_ptr(p, hp, o) : NULL;
    if (!dst) continue;
    char text[256];
    if (!json_text(p, v, text, sizeof text) || ecs_hparam_set(p, dst, text, 0, NULL) != ECS_OK) {
      char want[160];
      ecs_hparam_expect(p, want, sizeof want);
      *bad = key;
      return ecs_err_set(err, ECS_ERR_INVALID, "%s must be %s", key, want);
    }
  }
  return ECS_OK;
}

static void class_list(char *out, size_t n, int k, const char *(*name)(const void *, int),
                       const void *src) {
  size_t len = 0;
  out[0] = '\0';
  for (int i = 1; i <= k && len + 1 < n; i++)
    len += (size_t)snprintf(out + len, n - len, "%s%s", i > 1 ? ", " : "", name(src, i));
}

static const char *cfg_class(const void *c, int k) {
  return ((const ecs_model_config *)c)->class_names[k - 1];
}

static const char *ds_class(const void *ds, int k) {
  return ecs_dataset_class_name((const ecs_dataset *)ds, k);
}

/* The model a (non-resumed) training job starts from. */
static ecs_model *start_model(run_state *r, const json_t *req, ecs_dataset *ds,
                              ecs_buffer_type *buft, uint64_t seed, ecs_err *e) {
  const char *base_path = f_str(req, "base_path");
  ecs_model *m = NULL;
  if (base_path) {
    ecs_model *base = ecs_model_load(base_path, buft, e);
    if (!base) return NULL;
    const ecs_model_config *bc = ecs_model_get_config(base);
    if (ecs_model_has_classes_of(base, ds)) {
      m = base;
    } else {
      char was[1024], now[1024], note[2400];
      class_list(was, sizeof was, bc->n_classes, cfg_class, bc);
      class_list(now, sizeof now, ecs_dataset_n_classes(ds), ds_class, ds);
      snprintf(note, sizeof note,
               "the dataset's classes (%s) differ from the base model's (%s): the classifier "
               "(fc8) was re-initialised, the other weights come from %s",
               now, was, f_str(req, "base_model"));
      m = ecs_model_for_dataset(ds, bc->backbone, base, buft, seed, e);
      ecs_model_free(base);
      if (m) srv_jobs_note(r->j, r->id, note);
    }
  } else {
    ecs_backbone b = ECS_BACKBONE_SMALL;
    const char *bb = f_str(req, "backbone");
    if (bb && ecs_backbone_parse(bb, &b, e) != ECS_OK) return NULL;
    m = ecs_model_for_dataset(ds, b, NULL, buft, seed, e);
  }
  if (!m) return NULL;
  ecs_model_config *c = ecs_model_config_mut(m);
  const char *bad = NULL;
  if (srv_train_hparams(req, &c->hp, NULL, &bad, e) != ECS_OK) { /* srv-admin.c checked */
    ecs_model_free(m);
    return NULL;
  }
  snprintf(c->provenance, sizeof c->provenance,
           "trained by ecsnet-server job %lld on dataset %s (seed %llu%s%s)", (long long)r->id,
           f_str(req, "dataset"), (unsigned long long)seed, base_path ? ", from " : "",
           base_path ? f_str(req, "base_model") : "");
  return m;
}

static json_t *eval_json(const ecs_eval_result *res, const char *split) {
  return json_pack("{s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "split", split,
                   "n_images", res->n_images, "miou", num_or_null(res->miou_cam[res->best_cam]),
                   "best_alpha", num_or_null(res->alphas[res->best_cam]), "miou_combined",
                   num_or_null(res->miou_combined[res->best_combined]), "miou_head",
                   num_or_null(res->miou_head), "phi_precision", num_or_null(res->phi_precision),
                   "phi_coverage", num_or_null(res->phi_coverage), "map", num_or_null(res->map),
                   "fg_recall", num_or_null(res->fg_recall_cam), "seconds",
                   num_or_null(res->seconds));
}

/* Evaluates m on split; *out stays NULL when the split is missing or has no masks. */
static ecs_status evaluate(run_state *r, ecs_model *m, ecs_ctx *ctx, ecs_dataset *ds,
                           const char *split, int max_images, json_t **out, ecs_err *e) {
  *out = NULL;
  const char *const *ids;
  size_t n = 0;
  ecs_err ignore = {0};
  if (!ecs_dataset_has_masks(ds) || ecs_dataset_split(ds, split, &ids, &n, &ignore) != ECS_OK ||
      n == 0)
    return ECS_OK;
  ecs_eval_opts eo;
  ecs_eval_opts_default(&eo);
  eo.split = split;
  eo.max_images = max_images;
  eo.infer.want_erased = 1;
  eo.progress = on_eval_progress;
  eo.user = r;
  ecs_eval_result *res = calloc(1, sizeof *res);
  if (!res) return ecs_err_set(e, ECS_ERR_NOMEM, "out of memory");
  ecs_ctx_set_yield(ctx, yield_between_ops, r);
  ecs_status st = ecs_eval_run(m, ctx, ds, &eo, res, e);
  ecs_ctx_set_yield(ctx, NULL, NULL);
  if (st == ECS_OK) {
    *out = eval_json(res, split);
    /* the CAM mask's best background score is what serving should use */
    if (res->n_images > 0) ecs_model_config_mut(m)->alpha_bg = res->alphas[res->best_cam];
  }
  free(res);
  return st;
}

static int64_t checkpoint_step(const char *path) {
  ecs_err e = {0};
  ecs_st_file *f = ecs_st_open(path, &e);
  if (!f) return -1;
  const char *s = ecs_st_meta(f, "train.step");
  int64_t step = s ? strtoll(s, NULL, 10) : -1;
  ecs_st_close(f);
  return step;
}

/* Adds the trained model to the registry (which saves it there, and nowhere else) and
 * activates it when asked. */
static ecs_status publish(run_state *r, ecs_model *m, const json_t *req, json_t *result,
                          ecs_err *e) {
  api_reg *reg = api_reg_open(r->env->data_dir, true, e);
  if (!reg) return e->status;
  const char *name = f_str(req, "model_name");
  int version = 0;
  ecs_status st = api_reg_add_model(reg, name, m, &version, e);
  bool activated = false;
  if (st == ECS_OK && f_bool(req, "activate")) {
    st = api_reg_activate(reg, name, version, e);
    if (st == ECS_OK && r->env->activate) st = r->env->activate(r->env->user, name, version, e);
    activated = st == ECS_OK;
  }
  api_reg_free(reg);
  if (version > 0)
    json_object_set_new(result, "model", json_pack("{s:s, s:i}", "name", name, "version", version));
  json_object_set_new(result, "activated", json_boolean(activated));
  return st;
}

static void run_train(run_state *r, const json_t *req, bool resume, ecs_dataset *ds,
                      ecs_device *dev, ecs_ctx *ctx, const char *ckpt, bool *cancelled,
                      json_t *result, ecs_err *e) {
  ecs_buffer_type *buft = ecs_device_buffer_type(dev);
  bool from_ckpt = resume && access(ckpt, R_OK) == 0;
  ecs_train_opts o;
  ecs_train_opts_default(&o); /* the table's run settings, then the request's */
  const char *bad = NULL;
  if (srv_train_hparams(req, NULL, &o, &bad, e) != ECS_OK) return;
  ecs_model *m = NULL;
  if (from_ckpt) {
    r->resumed_from = checkpoint_step(ckpt);
    m = ecs_model_load(ckpt, buft, e);
    char note[128];
    snprintf(note, sizeof note, "resumed from the checkpoint of step %lld",
             (long long)r->resumed_from);
    if (m) srv_jobs_note(r->j, r->id, note);
  } else {
    if (resume)
      srv_jobs_note(r->j, r->id,
                    "no checkpoint had been written before the stop: training starts again "
                    "from step 0");
    m = start_model(r, req, ds, buft, o.seed, e);
  }
  if (!m) return;
  o.checkpoint = ckpt;
  o.resume = from_ckpt ? ckpt : NULL;
  o.progress = on_progress;
  o.user = r;
  o.cancel = r->cancel;
  o.yield = yield_between_ops;
  r->every = o.checkpoint_every;
  ecs_status st = ecs_train(m, ctx, ds, &o, e);
  if (st == ECS_ERR_CANCELLED) *cancelled = true;
  /* a stopped run writes a last checkpoint where the next one resumes: record its step */
  int64_t cs = checkpoint_step(ckpt);
  if (cs > 0 && r->last) srv_jobs_progress(r->j, r->id, r->last, cs);
  json_t *ev = NULL;
  if (st == ECS_OK) st = evaluate(r, m, ctx, ds, "val", 0, &ev, e);
  if (st == ECS_ERR_CANCELLED) *cancelled = true;
  if (ev) json_object_set_new(result, "evaluation", ev);
  if (st == ECS_OK) st = publish(r, m, req, result, e);
  if (st == ECS_OK) e->status = ECS_OK;
  ecs_model_free(m);
}

static void run_eval(run_state *r, const json_t *req, ecs_dataset *ds, ecs_device *dev,
                     ecs_ctx *ctx, bool *cancelled, json_t *result, ecs_err *e) {
  ecs_model *m = ecs_model_load(f_str(req, "model_path"), ecs_device_buffer_type(dev), e);
  if (m && ecs_model_fold_bn(m, e) != ECS_OK) ecs_model_free(m), m = NULL;
  if (!m) return;
  if (!ecs_model_has_classes_of(m, ds)) {
    ecs_err_set(e, ECS_ERR_INVALID, "the model's classes differ from the dataset's");
  } else {
    const char *split = f_str(req, "split") ? f_str(req, "split") : "val";
    json_t *ev = NULL;
    ecs_status st = evaluate(r, m, ctx, ds, split, (int)f_num(req, "max_images", 0), &ev, e);
    if (st == ECS_ERR_CANCELLED) *cancelled = true;
    if (st == ECS_OK && !ev)
      ecs_err_set(e, ECS_ERR_INVALID, "the dataset has no masks for split %s", split);
    else if (st == ECS_OK) {
      json_object_set_new(result, "evaluation", ev);
      e->status = ECS_OK;
    }
  }
  ecs_model_free(m);
}

void srv_jobrun(srv_jobs *j, int64_t id, const char *kind, const json_t *req, bool resume,
                const volatile int *cancel, const volatile int *shutdown) {
  const srv_jobs_env *env = srv_jobs_get_env(j);
  run_state r = {.j = j, .id = id, .env = env, .cancel = cancel};
  ecs_err e = {0};
  e.status = ECS_ERR_INVALID;
  bool cancelled = false;
  json_t *result = json_object();
  char ckpt[ECS_PATH_MAX];
  ecs_dataset *ds = NULL;
  ecs_backend *be = NULL;
  ecs_ctx *ctx = NULL;
  ecs_device *dev = NULL;
  ecs_backend_params bp = env->engine; /* the server's engine options, the job's threads */
  bp.n_threads = env->threads;
  if (srv_jobs_checkpoint(j, id, ckpt, sizeof ckpt, &e) != ECS_OK) goto end;
  if (!(ds = ecs_dataset_open(f_str(req, "dataset_dir"), &e))) goto end;
  if (!(dev = ecs_device_find(env->device, &e))) goto end;
  if (!(be = ecs_backend_init(dev, &bp, &e))) goto end;
  if (!(ctx = ecs_ctx_new(be, &e))) goto end;
  e.status = ECS_ERR_INVALID;
  if (strcmp(kind, "train") == 0)
    run_train(&r, req, resume, ds, dev, ctx, ckpt, &cancelled, result, &e);
  else
    run_eval(&r, req, ds, dev, ctx, &cancelled, result, &e);
end:
  if (e.status == ECS_OK && !cancelled)
    srv_jobs_finish(j, id, "succeeded", result, NULL);
  else if (cancelled || *cancel)
    srv_jobs_finish(j, id, *shutdown ? "interrupted" : "cancelled", result,
                    *shutdown ? "the server stopped while the job ran" : "cancelled on request");
  else
    srv_jobs_finish(j, id, "failed", result, e.msg[0] ? e.msg : "the job failed");
  json_decref(result);
  json_decref(r.last);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_dataset_free(ds);
}
