/* ecs/train.h - training ECS-Net on a VOC-layout dataset: the batch loader and the trainer.
 *
 * The loader decodes and augments on its own thread, a few batches ahead of the compute. Every
 * batch is a pure function of (seed, batch index): the epoch's shuffle comes from (seed, epoch)
 * and each sample's augmentation from (seed, epoch, position), so that a run resumed from a
 * checkpoint at step s sees exactly the batches an uninterrupted run sees, whatever the thread
 * timing. The trainer keeps the same rule for dropout seeds; "RNG state" in a checkpoint is
 * therefore the seed and the step.
 *
 * Compiled only in the full build (it reads images through ecs/image.h). */
#ifndef ECS_TRAIN_H
#define ECS_TRAIN_H

#include "ecs/dataset.h"
#include "ecs/ecsnet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ecs_aug_opts {
  int crop; /* square crop side (padding with the mean where the image is smaller) */
  int resize_min, resize_max;                  /* random long side; 0: keep the size */
  int flip;                                    /* random horizontal flip */
  float brightness, contrast, saturation, hue; /* colour jitter (0: off) */
} ecs_aug_opts;

typedef struct ecs_batch {
  int n, h, w, n_classes;
  float *images; /* (n, 3, h, w) normalised for the model */
  float *labels; /* (n, K) in {0, 1} */
  int64_t index; /* batch index since the start of training */
  int epoch;
} ecs_batch;

typedef struct ecs_loader ecs_loader;

/* Batches of `batch` images of the split, starting at batch index `start`. The dataset's
 * classes must be the model's (names, in order). The loader borrows ds and m. */
ecs_loader *ecs_loader_new(ecs_dataset *ds, const ecs_model *m, const char *split, int batch,
                           const ecs_aug_opts *aug, uint64_t seed, int64_t start, size_t max_pixels,
                           ecs_err *err);
void ecs_loader_free(ecs_loader *l);         /* accepts NULL; stops the thread */
size_t ecs_loader_size(const ecs_loader *l); /* images in the split */
int64_t ecs_loader_batches_per_epoch(const ecs_loader *l);
/* The next batch (blocks until decoded). The batch's arrays stay valid until the next call.
 * A missing or corrupt image is an error naming its file. */
ecs_status ecs_loader_next(ecs_loader *l, const ecs_batch **out, ecs_err *err);

typedef struct ecs_train_progress {
  int64_t step, max_steps; /* step just finished (1-based) */
  int epoch;
  int ecs_phase;
  float lr, lambda;
  ecs_step_stats stats;
  double images_per_s, eta_s, elapsed_s;
} ecs_train_progress;

typedef struct ecs_train_opts {
  const char *split; /* "train" */
  /* batch, epochs, max_steps, lr, optimizer, aug.crop, seed and checkpoint_every are rows of
   * the table in ecs/hparams.h, with their defaults and bounds there */
  int batch;
  int epochs; /* used when max_steps = 0 */
  int64_t max_steps;
  float lr, weight_decay, momentum, fc8_lr_mult, poly_power; /* weight decay 5e-4, 0.9, 10, 0.9 */
  ecs_aug_opts aug;
  uint64_t seed;
  size_t max_pixels;
  const char *checkpoint; /* path written every checkpoint_every steps (and at the end) */
  int checkpoint_every;
  const char *resume; /* a checkpoint to continue from (the model given must come from it) */
  /* Called after every step; a non-zero return stops training with ECS_ERR_CANCELLED after
   * writing a checkpoint. */
  int (*progress)(void *user, const ecs_train_progress *p);
  void *user;
  const volatile int *cancel; /* checked every step and between ops */
  /* Called between ops with user, after the cancel check: it may block while work of higher
   * priority runs (the server's inference), and a non-zero return stops training like cancel.
   * NULL: only cancel is checked. */
  int (*yield)(void *user);
  /* ECS_OPTIM_SGD (0, SEAM's recipe) or ECS_OPTIM_ADAM (ecs/optim.h); the poly schedule and
   * the classifier's rate multiplier apply to both. */
  int optimizer;
} ecs_train_opts;

void ecs_train_opts_default(ecs_train_opts *o);
/* The schedule of method.md: warm-up steps train L_cls only; lambda ramps over the start of
 * the ECS phase. */
int64_t ecs_train_warmup_steps(const ecs_model *m, int64_t max_steps);
float ecs_train_lambda(const ecs_model *m, int64_t step, int64_t max_steps);

/* Trains m in place. With opts->resume, m must have been loaded from that checkpoint
 * (ecs_model_load reads checkpoints too); the step, the optimiser state and the seed come from
 * it. */
ecs_status ecs_train(ecs_model *m, ecs_ctx *ctx, ecs_dataset *ds, const ecs_train_opts *opts,
                     ecs_err *err);

/* The model a training run on ds starts from, with the dataset's classes (ids 1..K, in order).
 * base NULL: a new model with the default configuration of backbone b. Otherwise base's
 * configuration (backbone, hyper-parameters, normalisation) with the classes replaced, and
 * base's weights copied in wherever the shapes agree except the classifier fc8, which starts
 * afresh: fine-tuning onto a new class list (b is then unused). The one implementation behind
 * `ecsnet train` and the server's training jobs. */
ecs_model *ecs_model_for_dataset(const ecs_dataset *ds, ecs_backbone b, const ecs_model *base,
                                 ecs_buffer_type *buft, uint64_t seed, ecs_err *err);
/* 1 when m's classes are ds's (the same names, ids 1..K in order): a base model that trains on
 * as it is, without a new classifier; else 0. */
int ecs_model_has_classes_of(const ecs_model *m, const ecs_dataset *ds);

#ifdef __cplusplus
}
#endif
#endif
