/* bench_gpu.c - images per second of the engine's resnet38d on a GPU: the inference forward at
 * several batch sizes and a classification training step, through the same calls the server
 * and the trainer make (ecs_model_forward on an ecs_ctx, ecs_backward).
 *
 * The input batch lives in its own device buffer, outside the timed loop, as the PyTorch side
 * of tests/gpu/check.sh keeps its input on the GPU. Each measurement runs warm-up iterations
 * first (they also fill the convolution algorithm cache), then times `iters` iterations ending
 * with a stream synchronisation. TF32 follows ECSNET_TF32 (and the other engine options their
 * ECSNET_* variables, tool_env.h), read here and passed into the backend.
 *
 * Output: one line per measurement, "RESULT engine <fwd|train> <batch> <images/s> <ms/iter>",
 * for check.sh to collect. Exit 77 when the device does not exist (no GPU), 1 on an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "ecs/ecsnet.h"
#include "tool_env.h"

typedef struct opts {
  const char *device;
  int size, iters, warmup, train_batch;
  int batches[8], n_batches;
} opts;

static int usage(void) {
  fprintf(stderr, "usage: bench_gpu [--device NAME] [--size PX] [--batches 1,8,32] "
                  "[--train-batch N (0: none)] [--iters N] [--warmup N]\n");
  return 2;
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.device = "cuda:0",
              .size = 448,
              .iters = 5,
              .warmup = 2,
              .train_batch = 8,
              .batches = {1, 8, 32},
              .n_batches = 3};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    if (!strcmp(a, "--device"))
      o->device = v;
    else if (!strcmp(a, "--size"))
      o->size = atoi(v);
    else if (!strcmp(a, "--iters"))
      o->iters = atoi(v);
    else if (!strcmp(a, "--warmup"))
      o->warmup = atoi(v);
    else if (!strcmp(a, "--train-batch"))
      o->train_batch = atoi(v);
    else if (!strcmp(a, "--batches")) {
      o->n_batches = 0;
      for (char *s = (char *)v, *end; *s && o->n_batches < 8; s = *end ? end + 1 : end) {
        o->batches[o->n_batches++] = (int)strtol(s, &end, 10);
        if (end == s) return -1;
      }
    } else
      return -1;
    i++;
  }
  if (o->size < 32 || o->iters < 1 || o->warmup < 0 || o->train_batch < 0) return -1;
  for (int i = 0; i < o->n_batches; i++)
    if (o->batches[i] < 1) return -1;
  return 0;
}

/* A device tensor of its own (not in the ctx arena, so ecs_ctx_reset leaves it alone). */
static ecs_tensor *device_tensor(ecs_device *dev, int nd, const int64_t *ne, uint64_t seed,
                                 int binary, ecs_buffer **buf, ecs_err *err) {
  ecs_tensor *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->type = ECS_F32, t->nd = nd;
  for (int i = 0; i < ECS_MAX_DIMS; i++)
    t->ne[i] = i < nd ? ne[i] : 1;
  t->nbytes = ecs_plain_nbytes(t);
  *buf = ecs_buffer_alloc(ecs_device_buffer_type(dev), t->nbytes, err);
  float *host = malloc(t->nbytes);
  if (!*buf || !host) {
    free(host);
    free(t);
    return NULL;
  }
  t->buffer = *buf, t->data = ecs_buffer_base(*buf);
  for (size_t i = 0; i < t->nbytes / 4; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    float u = (float)(seed >> 40) / 16777216.0f;
    host[i] = binary ? (u < 0.2f ? 1.0f : 0.0f) : 2.0f * u - 1.0f;
  }
  ecs_status st = ecs_tensor_set_bytes(t, host, 0, t->nbytes, err);
  free(host);
  if (st != ECS_OK) {
    free(t);
    return NULL;
  }
  return t;
}

/* One iteration: the inference forward, or forward + GAP + multilabel loss + backward. */
static ecs_status iteration(ecs_model *m, ecs_ctx *ctx, ecs_tensor *x, ecs_tensor *targets,
                            ecs_err *err) {
  ecs_ctx_reset(ctx);
  if (!targets) {
    ecs_model_forward(m, ctx, x, 0, 0, NULL);
    return ecs_ctx_status(ctx, err);
  }
  ecs_status st = ecs_params_zero_grads(ecs_model_params(m), err);
  if (st != ECS_OK) return st;
  ecs_ctx_set_grad(ctx, 1);
  ecs_tensor *h = ecs_model_forward(m, ctx, x, 1, 0, NULL);
  ecs_tensor *loss = h ? ecs_ml_soft_margin(ctx, ecs_gap(ctx, h), targets) : NULL;
  if ((st = ecs_ctx_status(ctx, err)) != ECS_OK) return st;
  st = ecs_backward(ctx, loss, 1.0f);
  ecs_ctx_set_grad(ctx, 0);
  return st != ECS_OK ? ecs_ctx_status(ctx, err) : ECS_OK;
}

static int measure(ecs_model *m, ecs_backend *be, ecs_device *dev, const opts *o, int batch,
                   int train) {
  ecs_err err = {0};
  ecs_buffer *xb = NULL, *tb = NULL;
  ecs_ctx *ctx = ecs_ctx_new(be, &err);
  int64_t xne[4] = {batch, 3, o->size, o->size}, tne[2] = {batch, ecs_model_channels(m)};
  ecs_tensor *x = ctx ? device_tensor(dev, 4, xne, 7, 0, &xb, &err) : NULL;
  ecs_tensor *t = x && train ? device_tensor(dev, 2, tne, 11, 1, &tb, &err) : NULL;
  int ok = x && (!train || t);
  double t0 = 0, t1 = 0;
  for (int i = 0; ok && i < o->warmup + o->iters; i++) {
    if (i == o->warmup) {
      ok = ecs_backend_synchronize(be, &err) == ECS_OK;
      t0 = ecs_now_s();
    }
    ok = ok && iteration(m, ctx, x, train ? t : NULL, &err) == ECS_OK;
  }
  ok = ok && ecs_backend_synchronize(be, &err) == ECS_OK;
  t1 = ecs_now_s();
  const char *what = train ? "train" : "fwd";
  if (ok) {
    double per = (t1 - t0) / o->iters;
    printf("RESULT engine %s %d %.2f %.2f\n", what, batch, batch / per, 1e3 * per);
    fprintf(stderr,
            "bench_gpu: %s batch %d at %dx%d: %.2f images/s, %.1f ms per iteration, "
            "arena %.1f MiB\n",
            what, batch, o->size, o->size, batch / per, 1e3 * per,
            (double)ecs_ctx_arena_bytes(ctx) / (1 << 20));
  } else {
    printf("RESULT engine %s %d error\n", what, batch);
    fprintf(stderr, "bench_gpu: %s batch %d: %s\n", what, batch, err.msg);
  }
  fflush(stdout);
  ecs_ctx_free(ctx);
  ecs_buffer_free(xb);
  ecs_buffer_free(tb);
  free(x);
  free(t);
  return ok;
}

int main(int argc, char **argv) {
  opts o;
  if (parse(argc, argv, &o)) return usage();
  ecs_backend_params bp = {0};
  if (!tool_engine_from_env(&bp, "bench_gpu")) return 2;
  ecs_err err = {0};
  ecs_device *dev = ecs_device_find(o.device, &err);
  if (!dev) {
    printf("bench_gpu: skipped: %s\n", err.msg);
    return 77;
  }
  ecs_backend *be = ecs_backend_init(dev, &bp, &err);
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_RESNET38D, 20);
  ecs_model *m = be ? ecs_model_new(&cfg, ecs_device_buffer_type(dev), 1, &err) : NULL;
  if (!m || ecs_params_alloc_grads(ecs_model_params(m), &err) != ECS_OK) {
    fprintf(stderr, "bench_gpu: %s\n", err.msg);
    ecs_model_free(m);
    ecs_backend_free(be);
    return 1;
  }
  fprintf(stderr, "bench_gpu: resnet38d on %s (%s), TF32 %s\n", ecs_device_name(dev),
          ecs_device_description(dev), bp.tf32 > 0 ? "on" : "off");
  int ok = 1;
  for (int i = 0; i < o.n_batches; i++)
    ok &= measure(m, be, dev, &o, o.batches[i], 0);
  if (o.train_batch > 0) ok &= measure(m, be, dev, &o, o.train_batch, 1);
  ecs_model_free(m);
  ecs_backend_free(be);
  return ok ? 0 : 1;
}
