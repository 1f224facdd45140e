/* bench_lite0.c - `make bench`: the forward pass of ecsnet-imagenet-lite0 at batch 1, as the
 * server runs it (batch norm folded, ReLU6 fused), from the model file that make build converts.
 *
 *   bench_lite0 MODEL [--threads N] [--runs R] [--size S]...
 *
 * Prints one line per size, as bench_engine does: case=lite0_S ms=<median> min_ms=<min>
 * gflop=0 runs=<R>. The input is the same fixed pseudo-random image bench_torch.py feeds
 * PyTorch and ONNX Runtime (the timing does not depend on the values). */
#include "ecs/backend.h"
#include "ecs/ecsnet.h"
#include "tool_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + 1e-6 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int die(const char *what, const ecs_err *e) {
  fprintf(stderr, "bench_lite0: %s: %s\n", what, e->msg);
  return 1;
}

/* One forward pass of a (1, 3, s, s) image; 0 on failure. */
static int forward(const ecs_model *m, ecs_ctx *ctx, const float *x, int s, ecs_err *e) {
  ecs_ctx_reset(ctx);
  int64_t ne[4] = {1, 3, s, s};
  ecs_tensor *t = ecs_from_host(ctx, ECS_F32, 4, ne, x);
  ecs_tensor *out = t ? ecs_model_forward(m, ctx, t, 0, 0, NULL) : NULL;
  if (!out || ecs_ctx_status(ctx, e) != ECS_OK) return 0;
  size_t n = (size_t)ecs_nelements(out); /* read back, as inference does */
  float *h = malloc(n * sizeof *h);
  int ok = h && ecs_to_host(ctx, out, h, n * sizeof *h) == ECS_OK;
  if (!ok) snprintf(e->msg, sizeof e->msg, "reading the heat maps back failed");
  free(h);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_lite0 MODEL [--threads N] [--runs R] [--size S]...\n");
    return 2;
  }
  int threads = 2, runs = 5, sizes[8], ns = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--threads"))
      threads = v;
    else if (!strcmp(argv[i], "--runs"))
      runs = v;
    else if (!strcmp(argv[i], "--size") && ns < 8)
      sizes[ns++] = v;
    else
      return fprintf(stderr, "bench_lite0: unknown option %s\n", argv[i]), 2;
  }
  if (runs < 1 || runs > 64) runs = 5;
  if (!ns) sizes[ns++] = 225;
  ecs_backend_params params = {.n_threads = threads};
  if (!tool_engine_from_env(&params, "bench_lite0")) return 2;
  ecs_err e = {0};
  ecs_device *dev = ecs_device_find("cpu", &e);
  ecs_backend *be = dev ? ecs_backend_init(dev, &params, &e) : NULL;
  if (!be) return die("backend", &e);
  ecs_model *m = ecs_model_load(argv[1], ecs_device_buffer_type(dev), &e);
  if (!m || ecs_model_fold_bn(m, &e) != ECS_OK) return die("model", &e);
  ecs_ctx *ctx = ecs_ctx_new(be, &e);
  if (!ctx) return die("ctx", &e);
  ecs_ctx_set_grad(ctx, 0);
  for (int k = 0; k < ns; k++) {
    int s = sizes[k];
    float *x = malloc(sizeof(float) * 3 * (size_t)s * s);
    uint64_t g = 0x853c49e6748fea9bull;
    for (size_t i = 0; x && i < 3 * (size_t)s * s; i++) {
      g = g * 6364136223846793005ull + 1442695040888963407ull;
      x[i] = (float)((g >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
    double ms[64];
    for (int r = -1; x && r < runs; r++) { /* -1: warm-up (primitives, weight reorders) */
      double t0 = now_ms();
      if (!forward(m, ctx, x, s, &e)) return die("forward", &e);
      if (r >= 0) ms[r] = now_ms() - t0;
    }
    free(x);
    qsort(ms, (size_t)runs, sizeof *ms, cmp_d);
    double med = runs % 2 ? ms[runs / 2] : 0.5 * (ms[runs / 2 - 1] + ms[runs / 2]);
    printf("case=lite0_%d ms=%.3f min_ms=%.3f gflop=0 runs=%d\n", s, med, ms[0], runs);
    fflush(stdout);
  }
  ecs_ctx_free(ctx);
  ecs_model_free(m);
  ecs_backend_free(be);
  return 0;
}
