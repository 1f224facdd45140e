/* trainer.c - the training loop: batches, ECS steps, SGD with the poly schedule, checkpoints.
 *
 * Resuming reproduces an uninterrupted run: batches and dropout seeds are functions of
 * (seed, step) (ecs/train.h), and a checkpoint holds the weights, the batch-norm statistics,
 * the optimiser's momentum and the step, so nothing else needs restoring. */
#include "ecs/hparams.h"
#include "ecs/optim.h"
#include "ecs/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The run settings of the table (ecs/hparams.h: steps, epochs, batch, lr, optimiser, crop,
 * seed, checkpoints), then what the table does not hold: SGD's momentum and weight decay, the
 * classifier's rate multiplier, the poly power and the augmentation (no random resize, flip,
 * SEAM's colour jitter). */
void ecs_train_opts_default(ecs_train_opts *o) {
  *o = (ecs_train_opts){
      .split = "train",
      .weight_decay = 5e-4f,
      .momentum = 0.9f,
      .fc8_lr_mult = 10.0f,
      .poly_power = 0.9f,
      .aug = {.flip = 1, .brightness = 0.3f, .contrast = 0.3f, .saturation = 0.3f, .hue = 0.1f},
  };
  ecs_hparams_run_default(o);
}

int64_t ecs_train_warmup_steps(const ecs_model *m, int64_t max_steps) {
  const ecs_hparams *hp = &ecs_model_get_config(m)->hp;
  if (hp->no_erase) return max_steps;
  return (int64_t)floor((double)hp->warmup * (double)max_steps);
}

float ecs_train_lambda(const ecs_model *m, int64_t step, int64_t max_steps) {
  const ecs_hparams *hp = &ecs_model_get_config(m)->hp;
  int64_t w = ecs_train_warmup_steps(m, max_steps);
  if (step < w) return 0.0f;
  double ramp = hp->lambda_ramp * (double)(max_steps - w);
  if (ramp <= 0) return hp->lambda;
  double f = (double)(step - w + 1) / ramp;
  return (float)(hp->lambda * (f < 1 ? f : 1));
}

static uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ecs_status save_checkpoint(const ecs_model *m, const ecs_optim *o, const char *path,
                                  int64_t step, int64_t max_steps, uint64_t seed, int batch,
                                  ecs_err *err) {
  ecs_st_writer *w = ecs_st_writer_new(err);
  if (!w) return err ? err->status : ECS_ERR_NOMEM;
  char v[4][32];
  snprintf(v[0], sizeof v[0], "%lld", (long long)step);
  snprintf(v[1], sizeof v[1], "%lld", (long long)max_steps);
  snprintf(v[2], sizeof v[2], "%llu", (unsigned long long)seed);
  snprintf(v[3], sizeof v[3], "%d", batch);
  ecs_status st = ecs_model_add_to_writer(m, w, err);
  if (st == ECS_OK) st = ecs_optim_add_state(o, w, err);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "train.step", v[0], err);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "train.max_steps", v[1], err);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "train.seed", v[2], err);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "train.batch", v[3], err);
  if (st == ECS_OK) st = ecs_st_writer_save(w, path, err);
  ecs_st_writer_free(w);
  return st;
}

/* Reads step, schedule and seed from a checkpoint and loads the optimiser state. */
static ecs_status resume_from(const char *path, ecs_optim *o, int64_t *step, int64_t *max_steps,
                              uint64_t *seed, int *batch, ecs_err *err) {
  ecs_err e = {0};
  ecs_st_file *f = ecs_st_open(path, &e);
  if (!f) return ecs_err_set(err, e.status, "%s: %s", path, e.msg);
  const char *s = ecs_st_meta(f, "train.step"), *mx = ecs_st_meta(f, "train.max_steps");
  const char *sd = ecs_st_meta(f, "train.seed"), *b = ecs_st_meta(f, "train.batch");
  ecs_status st = ECS_OK;
  if (!s || !mx || !sd || !b)
    st = ecs_err_set(err, ECS_ERR_FORMAT, "%s: not a training checkpoint (no train.* metadata)",
                     path);
  else if (ecs_optim_load_state(o, f, &e) != ECS_OK)
    st = ecs_err_set(err, e.status, "%s: %s", path, e.msg);
  else {
    *step = strtoll(s, NULL, 10);
    *max_steps = strtoll(mx, NULL, 10);
    *seed = strtoull(sd, NULL, 10);
    *batch = atoi(b);
    if (*step < 0 || *max_steps < 1 || *batch < 1)
      st = ecs_err_set(err, ECS_ERR_FORMAT, "%s: bad train.* metadata", path);
  }
  ecs_st_close(f);
  return st;
}

/* Batch-norm running statistics change in the forward pass; a step cancelled half way must
 * not leave them changed, or the checkpoint would hold a state no uninterrupted run has. */
typedef struct stats_snap {
  ecs_tensor *t[1024];
  float *data;
  size_t n, bytes;
} stats_snap;

static ecs_status snap_init(stats_snap *s, ecs_params *ps, ecs_err *err) {
  memset(s, 0, sizeof *s);
  for (size_t i = 0; i < ecs_params_count(ps) && s->n < 1024; i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    if (strstr(t->name, ".running_")) {
      s->t[s->n++] = t;
      s->bytes += ecs_plain_nbytes(t);
    }
  }
  s->data = malloc(s->bytes ? s->bytes : 1);
  return s->data ? ECS_OK : ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
}

static ecs_status snap_io(stats_snap *s, int restore, ecs_err *err) {
  size_t off = 0;
  for (size_t i = 0; i < s->n; i++) {
    size_t nb = ecs_plain_nbytes(s->t[i]);
    ecs_status st = restore ? ecs_tensor_set_bytes(s->t[i], (char *)s->data + off, 0, nb, err)
                            : ecs_tensor_get_bytes(s->t[i], (char *)s->data + off, 0, nb, err);
    if (st != ECS_OK) return st;
    off += nb;
  }
  return ECS_OK;
}

typedef struct yield_state {
  const volatile int *cancel;
  int (*fn)(void *user);
  void *user;
} yield_state;

static int yield_hook(void *user) {
  const yield_state *y = user;
  if (y->cancel && *y->cancel) return 1;
  return y->fn ? y->fn(y->user) : 0;
}

ecs_status ecs_train(ecs_model *m, ecs_ctx *ctx, ecs_dataset *ds, const ecs_train_opts *opts,
                     ecs_err *err) {
  ecs_train_opts o = *opts;
  ecs_params *ps = ecs_model_params(m);
  if (o.batch < 1 || !(o.lr > 0))
    return ecs_err_set(err, ECS_ERR_INVALID, "training needs batch >= 1 and lr > 0");
  /* the hyper-parameters may have been set after the model was made (--overlay, a job's) */
  ecs_status st = ecs_hparams_check(&ecs_model_get_config(m)->hp, err);
  if (st != ECS_OK) return st;
  st = ecs_params_alloc_grads(ps, err);
  if (st != ECS_OK) return st;
  ecs_optim_params op = {.kind = o.optimizer == ECS_OPTIM_ADAM ? ECS_OPTIM_ADAM : ECS_OPTIM_SGD,
                         .lr = o.lr,
                         .weight_decay = o.weight_decay,
                         .momentum = o.momentum};
  ecs_optim *opt = ecs_optim_new(ps, &op, err);
  if (!opt) return err ? err->status : ECS_ERR_NOMEM;
  /* the classifier is new: 10x its rate, as SEAM and PSA train it */
  if (o.fc8_lr_mult > 0 &&
      (st = ecs_optim_set_group(opt, "fc8", o.fc8_lr_mult, 1, err)) != ECS_OK) {
    ecs_optim_free(opt);
    return st;
  }
  int64_t step = 0, max_steps = o.max_steps;
  uint64_t seed = o.seed;
  if (o.resume &&
      (st = resume_from(o.resume, opt, &step, &max_steps, &seed, &o.batch, err)) != ECS_OK) {
    ecs_optim_free(opt);
    return st;
  }
  ecs_loader *ld = ecs_loader_new(ds, m, o.split, o.batch, &o.aug, seed, step, o.max_pixels, err);
  if (!ld) {
    ecs_optim_free(opt);
    return err ? err->status : ECS_ERR_INVALID;
  }
  if (max_steps <= 0)
    max_steps = (int64_t)(o.epochs > 0 ? o.epochs : 1) * ecs_loader_batches_per_epoch(ld);
  int64_t warm = ecs_train_warmup_steps(m, max_steps);
  stats_snap snap;
  if ((st = snap_init(&snap, ps, err)) != ECS_OK) {
    ecs_loader_free(ld);
    ecs_optim_free(opt);
    return st;
  }
  int stoppable = o.cancel || o.yield;
  yield_state ys = {.cancel = o.cancel, .fn = o.yield, .user = o.user};
  ecs_ctx_set_yield(ctx, o.cancel || o.yield ? yield_hook : NULL, &ys);
  double t0 = now_s();
  int64_t first = step;
  const char *ck = o.checkpoint;
  for (; step < max_steps; step++) {
    if (o.cancel && *o.cancel) {
      st = ecs_err_set(err, ECS_ERR_CANCELLED, "training cancelled at step %lld", (long long)step);
      break;
    }
    const ecs_batch *b;
    if ((st = ecs_loader_next(ld, &b, err)) != ECS_OK) break;
    if ((st = ecs_params_zero_grads(ps, err)) != ECS_OK) break;
    ecs_step_input in = {.n = b->n,
                         .h = b->h,
                         .w = b->w,
                         .images = b->images,
                         .labels = b->labels,
                         .ecs_phase = step >= warm,
                         .lambda = ecs_train_lambda(m, step, max_steps),
                         .seed = mix(seed ^ mix((uint64_t)step))};
    ecs_step_stats ss;
    if (stoppable && (st = snap_io(&snap, 0, err)) != ECS_OK) break;
    if ((st = ecs_model_step(m, ctx, &in, &ss, err)) != ECS_OK) {
      if (st == ECS_ERR_CANCELLED) { /* stopped between two ops: undo the half step */
        ecs_err e2 = {0};
        if (snap_io(&snap, 1, &e2) != ECS_OK)
          st = ecs_err_set(err, e2.status, "%s", e2.msg);
        else
          ecs_err_set(err, st, "training cancelled at step %lld", (long long)step);
      }
      break;
    }
    float lr = ecs_poly_lr(o.lr, step, max_steps, o.poly_power);
    ecs_optim_set_lr(opt, lr);
    if ((st = ecs_optim_step(opt, err)) != ECS_OK) break;
    if (ck && o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 &&
        (st = save_checkpoint(m, opt, ck, step + 1, max_steps, seed, o.batch, err)) != ECS_OK)
      break;
    double el = now_s() - t0, per = el / (double)(step + 1 - first);
    ecs_train_progress p = {.step = step + 1,
                            .max_steps = max_steps,
                            .epoch = b->epoch,
                            .ecs_phase = in.ecs_phase,
                            .lr = lr,
                            .lambda = in.lambda,
                            .stats = ss,
                            .images_per_s = per > 0 ? b->n / per : 0,
                            .eta_s = per * (double)(max_steps - step - 1),
                            .elapsed_s = el};
    if (o.progress && o.progress(o.user, &p)) {
      step++;
      st = ecs_err_set(err, ECS_ERR_CANCELLED, "training cancelled at step %lld", (long long)step);
      break;
    }
  }
  /* a cancelled run keeps its progress: the checkpoint is where a resume starts */
  if ((st == ECS_OK || st == ECS_ERR_CANCELLED) && ck) {
    ecs_err e2 = {0};
    ecs_status s2 = save_checkpoint(m, opt, ck, step, max_steps, seed, o.batch, &e2);
    if (s2 != ECS_OK && st == ECS_OK) st = ecs_err_set(err, s2, "%s", e2.msg);
  }
  ecs_ctx_set_yield(ctx, NULL, NULL);
  free(snap.data);
  ecs_loader_free(ld);
  ecs_optim_free(opt);
  return st;
}
