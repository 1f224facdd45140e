/* test_cuda.c - the CUDA backend as CI sees it: built (ECS_USE_CUDA) as the module
 * libecsnet-cuda.so, loaded only when a CUDA device is asked for, no "cuda" device and a clear
 * message when no GPU answers, and the GPU tests reported as skipped there.
 *
 * On a machine with a GPU the same program runs the GPU tests: buffers, a few ops against
 * values computed here on the host (not against the reference kernels: tests/gpu/ compares
 * every op with cpu-ref), validation errors, the convolution algorithm cache and two workers
 * on two threads. Exit status 77 (ctest: skipped) when no GPU answered and nothing failed, so a
 * run without a GPU never reads as a pass of the GPU tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/backend.h"

/* 1 when a file whose name contains needle is mapped into this process */
static int mapped(const char *needle) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[4096];
  int found = 0;
  while (f && !found && fgets(line, sizeof line, f))
    found = strstr(line, needle) != NULL;
  if (f) fclose(f);
  return found;
}

static ecs_device *gpu(void) {
  for (size_t i = 0; i < ecs_device_count(); i++) {
    ecs_device *d = ecs_device_get(i);
    if (strncmp(ecs_device_name(d), "cuda:", 5) == 0) return d;
  }
  return NULL;
}

/* ---- the module ------------------------------------------------------------------------------
 * Runs first, before anything asks for a GPU: the CPU devices alone load no CUDA library. */

static void test_cpu_lookups_map_no_cuda_library(void **state) {
  (void)state;
  ecs_err err = {0};
  assert_non_null(ecs_device_find("cpu", &err));
  assert_non_null(ecs_device_find("cpu-ref", &err));
  assert_null(ecs_device_find("tpu", &err));
  const char *libs[] = {"libecsnet-cuda", "libcudart", "libcublas", "libcudnn"};
  for (int i = 0; i < 4; i++)
    if (mapped(libs[i])) fail_msg("%s is mapped after CPU lookups only", libs[i]);
}

/* ---- without a GPU (every CI run) ----------------------------------------------------------
 * In a build with the backend the message says no GPU answered (the backend registered and
 * found none); in a build without it, that the build lacks it. */

static void test_cuda_lookup_without_gpu_is_a_clear_error(void **state) {
  (void)state;
  if (gpu()) skip(); /* a GPU answered: the lookup succeeds, tested below */
  const char *names[] = {"cuda", "cuda:0", "cuda:3"};
  for (int i = 0; i < 3; i++) {
    ecs_err err = {0};
    assert_null(ecs_device_find(names[i], &err));
    assert_int_equal(err.status, ECS_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, names[i]));
    assert_null(strchr(err.msg, '\n'));
#ifdef ECS_USE_CUDA
    assert_non_null(strstr(err.msg, "no CUDA GPU answered"));
    assert_true(mapped("libecsnet-cuda.so")); /* found in the build tree and loaded */
#else
    assert_non_null(strstr(err.msg, "no CUDA backend"));
#endif
  }
  /* "auto" falls back to the CPU */
  ecs_err err = {0};
  ecs_device *d = ecs_device_find("auto", &err);
  assert_non_null(d);
  assert_true(ecs_device_is_host(d));
}

/* ---- with a GPU ---------------------------------------------------------------------------- */

static ecs_tensor tensor_in(ecs_buffer *buf, size_t off_floats, ecs_dtype type, int nd,
                            const int64_t *ne) {
  ecs_tensor t = {.type = type, .nd = nd, .buffer = buf};
  for (int i = 0; i < ECS_MAX_DIMS; i++)
    t.ne[i] = i < nd ? ne[i] : 1;
  t.data = (char *)ecs_buffer_base(buf) + off_floats * 4;
  t.nbytes = ecs_plain_nbytes(&t);
  return t;
}

static ecs_backend *gpu_backend(ecs_device *dev) {
  ecs_err err = {0};
  ecs_backend *be = ecs_backend_init(dev, NULL, &err);
  if (!be) fail_msg("backend init: %s", err.msg);
  return be;
}

static void run(ecs_backend *be, ecs_op *op) {
  ecs_err err = {0};
  if (ecs_backend_prepare(be, op, &err) != ECS_OK || ecs_backend_compute(be, op, &err) != ECS_OK ||
      ecs_backend_synchronize(be, &err) != ECS_OK)
    fail_msg("%s: %s", ecs_op_name(op->type), err.msg);
}

static void test_gpu_device_and_buffers(void **state) {
  (void)state;
  ecs_device *dev = gpu();
  if (!dev) skip();
  ecs_err err = {0};
  assert_ptr_equal(ecs_device_find("cuda", &err), dev);
  assert_false(ecs_device_is_host(dev));
  size_t fr = 0, tot = 0;
  ecs_device_memory(dev, &fr, &tot);
  assert_true(tot > 0 && fr <= tot);
  ecs_buffer *buf = ecs_buffer_alloc(ecs_device_buffer_type(dev), 1024, &err);
  assert_non_null(buf);
  ecs_tensor t = tensor_in(buf, 0, ECS_F32, 1, (int64_t[]){256});
  float in[256], out[256];
  for (int i = 0; i < 256; i++)
    in[i] = (float)i * 0.5f - 7;
  assert_int_equal(ecs_tensor_set_bytes(&t, in, 0, sizeof in, &err), ECS_OK);
  assert_int_equal(ecs_tensor_get_bytes(&t, out, 0, sizeof out, &err), ECS_OK);
  assert_memory_equal(in, out, sizeof in);
  assert_int_equal(ecs_tensor_memset(&t, 0, &err), ECS_OK);
  assert_int_equal(ecs_tensor_get_bytes(&t, out, 0, sizeof out, &err), ECS_OK);
  for (int i = 0; i < 256; i++)
    assert_true(out[i] == 0.0f);
  ecs_buffer_free(buf);
  /* an impossible allocation is a clear out-of-memory error naming the call */
  assert_null(ecs_buffer_alloc(ecs_device_buffer_type(dev), (size_t)1 << 60, &err));
  assert_int_equal(err.status, ECS_ERR_NOMEM);
  assert_non_null(strstr(err.msg, "cudaMalloc"));
}

static void test_gpu_elementwise_and_dropout(void **state) {
  (void)state;
  ecs_device *dev = gpu();
  if (!dev) skip();
  ecs_err err = {0};
  ecs_backend *be = gpu_backend(dev);
  enum { N = 1000 };
  ecs_buffer *buf = ecs_buffer_alloc(ecs_device_buffer_type(dev), 5 * N * 4, &err);
  assert_non_null(buf);
  int64_t ne[1] = {N};
  ecs_tensor a = tensor_in(buf, 0, ECS_F32, 1, ne), b = tensor_in(buf, N, ECS_F32, 1, ne);
  ecs_tensor y = tensor_in(buf, 2 * N, ECS_F32, 1, ne), m = tensor_in(buf, 3 * N, ECS_U8, 1, ne);
  float av[N], bv[N], out[N];
  for (int i = 0; i < N; i++)
    av[i] = (float)(i % 37) - 10.5f, bv[i] = (float)(i % 11) * 0.25f;
  assert_int_equal(ecs_tensor_set_bytes(&a, av, 0, sizeof av, &err), ECS_OK);
  assert_int_equal(ecs_tensor_set_bytes(&b, bv, 0, sizeof bv, &err), ECS_OK);

  ecs_op add = {.type = ECS_OP_ADD, .src = {&a, &b}, .dst = {&y}, .p.scalar = {2.0f, -3.0f}};
  assert_true(ecs_device_supports_op(dev, &add));
  run(be, &add);
  assert_int_equal(ecs_tensor_get_bytes(&y, out, 0, sizeof out, &err), ECS_OK);
  for (int i = 0; i < N; i++)
    assert_float_equal(out[i], 2 * av[i] - 3 * bv[i], 1e-5);

  ecs_op relu6 = {.type = ECS_OP_RELU, .src = {&a}, .dst = {&y}, .p.act.clip = 6.0f};
  run(be, &relu6);
  assert_int_equal(ecs_tensor_get_bytes(&y, out, 0, sizeof out, &err), ECS_OK);
  for (int i = 0; i < N; i++)
    assert_float_equal(out[i], fminf(fmaxf(av[i], 0), 6), 0);

  /* the dropout mask is the host's ecs_dropout_keep, element by element */
  ecs_op drop = {.type = ECS_OP_DROPOUT, .src = {&a}, .dst = {&y, &m}, .p.dropout = {0.3f, 12345}};
  run(be, &drop);
  uint8_t mask[N];
  assert_int_equal(ecs_tensor_get_bytes(&m, mask, 0, sizeof mask, &err), ECS_OK);
  assert_int_equal(ecs_tensor_get_bytes(&y, out, 0, sizeof out, &err), ECS_OK);
  int kept = 0;
  for (int i = 0; i < N; i++) {
    int k = ecs_dropout_keep(12345, (uint64_t)i, 0.3f);
    assert_int_equal(mask[i], k);
    assert_float_equal(out[i], k ? av[i] / 0.7f : 0.0f, 1e-5);
    kept += k;
  }
  assert_true(kept > 600 && kept < 800);
  ecs_buffer_free(buf);
  ecs_backend_free(be);
}

static void test_gpu_validation_errors(void **state) {
  (void)state;
  ecs_device *dev = gpu();
  if (!dev) skip();
  ecs_err err = {0};
  ecs_backend *be = gpu_backend(dev);
  ecs_buffer *gbuf = ecs_buffer_alloc(ecs_device_buffer_type(dev), 64 * 4, &err);
  ecs_buffer *hbuf =
      ecs_buffer_alloc(ecs_device_buffer_type(ecs_device_find("cpu", &err)), 64 * 4, &err);
  assert_non_null(gbuf);
  assert_non_null(hbuf);
  ecs_tensor g = tensor_in(gbuf, 0, ECS_F32, 1, (int64_t[]){16});
  ecs_tensor g2 = tensor_in(gbuf, 16, ECS_F32, 1, (int64_t[]){8});
  ecs_tensor h = tensor_in(hbuf, 0, ECS_F32, 1, (int64_t[]){16});
  /* host memory handed to the GPU */
  ecs_op op = {.type = ECS_OP_SCALE, .src = {&h}, .dst = {&g}, .p.scalar = {1, 0}};
  assert_int_equal(ecs_backend_compute(be, &op, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "host"));
  /* shapes that differ */
  op = (ecs_op){.type = ECS_OP_ADD, .src = {&g, &g2}, .dst = {&g}, .p.scalar = {1, 1}};
  assert_int_equal(ecs_backend_compute(be, &op, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "shape"));
  /* a tensor that reaches past its buffer */
  ecs_tensor big = tensor_in(gbuf, 32, ECS_F32, 1, (int64_t[]){64});
  op = (ecs_op){.type = ECS_OP_FILL, .dst = {&big}, .p.scalar = {1, 0}};
  assert_int_equal(ecs_backend_compute(be, &op, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "outside"));
  /* unsupported parameters are answered by supports_op and refused by compute */
  ecs_tensor img = tensor_in(gbuf, 0, ECS_F32, 4, (int64_t[]){1, 1, 4, 4});
  ecs_tensor img2 = tensor_in(gbuf, 16, ECS_F32, 4, (int64_t[]){1, 1, 4, 4});
  op = (ecs_op){.type = ECS_OP_GAUSS_BLUR, .src = {&img}, .dst = {&img2}, .p.blur = {1.0f, 4}};
  assert_false(ecs_device_supports_op(dev, &op));
  assert_int_equal(ecs_backend_compute(be, &op, &err), ECS_ERR_UNSUPPORTED);
  /* the backend still works after the refusals */
  op = (ecs_op){.type = ECS_OP_FILL, .dst = {&g}, .p.scalar = {2.5f, 0}};
  run(be, &op);
  float out[16];
  assert_int_equal(ecs_tensor_get_bytes(&g, out, 0, sizeof out, &err), ECS_OK);
  assert_true(out[15] == 2.5f);
  ecs_buffer_free(gbuf);
  ecs_buffer_free(hbuf);
  ecs_backend_free(be);
}

/* 3x3 convolution, stride 1, pad 1, computed here on the host */
static void host_conv(const float *x, const float *w, const float *b, float *y, int n, int c, int o,
                      int h, int wd) {
  for (int i = 0; i < n; i++)
    for (int oc = 0; oc < o; oc++)
      for (int r = 0; r < h; r++)
        for (int q = 0; q < wd; q++) {
          double s = b[oc];
          for (int ic = 0; ic < c; ic++)
            for (int kr = 0; kr < 3; kr++)
              for (int kq = 0; kq < 3; kq++) {
                int rr = r + kr - 1, qq = q + kq - 1;
                if (rr < 0 || rr >= h || qq < 0 || qq >= wd) continue;
                s += (double)x[((i * c + ic) * h + rr) * wd + qq] *
                     w[((oc * c + ic) * 3 + kr) * 3 + kq];
              }
          y[((i * o + oc) * h + r) * wd + q] = (float)s;
        }
}

static void test_gpu_conv_matches_host_and_caches_algorithm(void **state) {
  (void)state;
  ecs_device *dev = gpu();
  if (!dev) skip();
  ecs_err err = {0};
  ecs_backend *be = gpu_backend(dev);
  enum { NB = 2, C = 3, O = 4, H = 7, W = 6 };
  size_t nx = NB * C * H * W, nw = O * C * 9, ny = NB * O * H * W;
  ecs_buffer *buf = ecs_buffer_alloc(ecs_device_buffer_type(dev), (nx + nw + O + ny) * 4, &err);
  assert_non_null(buf);
  ecs_tensor x = tensor_in(buf, 0, ECS_F32, 4, (int64_t[]){NB, C, H, W});
  ecs_tensor w = tensor_in(buf, nx, ECS_F32, 4, (int64_t[]){O, C, 3, 3});
  ecs_tensor b = tensor_in(buf, nx + nw, ECS_F32, 1, (int64_t[]){O});
  ecs_tensor y = tensor_in(buf, nx + nw + O, ECS_F32, 4, (int64_t[]){NB, O, H, W});
  float xv[NB * C * H * W], wv[O * C * 9], bv[O], yv[NB * O * H * W], want[NB * O * H * W];
  for (size_t i = 0; i < nx; i++)
    xv[i] = sinf((float)i * 0.37f);
  for (size_t i = 0; i < nw; i++)
    wv[i] = cosf((float)i * 0.11f) * 0.3f;
  for (int i = 0; i < O; i++)
    bv[i] = 0.1f * (float)i - 0.2f;
  assert_int_equal(ecs_tensor_set_bytes(&x, xv, 0, sizeof xv, &err), ECS_OK);
  assert_int_equal(ecs_tensor_set_bytes(&w, wv, 0, sizeof wv, &err), ECS_OK);
  assert_int_equal(ecs_tensor_set_bytes(&b, bv, 0, sizeof bv, &err), ECS_OK);
  host_conv(xv, wv, bv, want, NB, C, O, H, W);
  ecs_op conv = {.type = ECS_OP_CONV2D,
                 .src = {&x, &w, &b},
                 .dst = {&y},
                 .p.conv = {.stride = {1, 1}, .pad = {1, 1}, .dil = {1, 1}, .groups = 1}};
  ecs_backend_reset_stats(be);
  for (int rep = 0; rep < 3; rep++) {
    run(be, &conv);
    assert_int_equal(ecs_tensor_get_bytes(&y, yv, 0, sizeof yv, &err), ECS_OK);
    double num = 0, den = 0;
    for (size_t i = 0; i < ny; i++) {
      num += (double)(yv[i] - want[i]) * (yv[i] - want[i]);
      den += (double)want[i] * want[i];
    }
    assert_true(sqrt(num / den) < 1e-5);
  }
  ecs_backend_stats st;
  ecs_backend_get_stats(be, &st);
  assert_int_equal(st.ops, 3);
  assert_int_equal(st.primitives, 1); /* chosen once, reused twice */
  ecs_buffer_free(buf);
  ecs_backend_free(be);
}

/* Two workers, two threads, one device: each its own backend and data. */
typedef struct worker {
  ecs_device *dev;
  float scale;
  int ok;
} worker;

static void *worker_main(void *arg) {
  worker *wk = arg;
  ecs_err err = {0};
  ecs_backend *be = ecs_backend_init(wk->dev, NULL, &err);
  ecs_buffer *buf =
      be ? ecs_buffer_alloc(ecs_device_buffer_type(wk->dev), 2 * 4096 * 4, &err) : NULL;
  if (!buf) {
    ecs_backend_free(be);
    return NULL;
  }
  ecs_tensor x = tensor_in(buf, 0, ECS_F32, 1, (int64_t[]){4096});
  ecs_tensor y = tensor_in(buf, 4096, ECS_F32, 1, (int64_t[]){4096});
  float ones[4096];
  for (int i = 0; i < 4096; i++)
    ones[i] = 1.0f;
  int ok = ecs_tensor_set_bytes(&x, ones, 0, sizeof ones, &err) == ECS_OK;
  for (int it = 0; ok && it < 200; it++) {
    ecs_op op = {.type = ECS_OP_SCALE,
                 .src = {it % 2 ? &y : &x},
                 .dst = {it % 2 ? &x : &y},
                 .p.scalar = {wk->scale, 0}};
    ok = ecs_backend_compute(be, &op, &err) == ECS_OK;
  }
  float out[4096];
  ok = ok && ecs_backend_synchronize(be, &err) == ECS_OK &&
       ecs_tensor_get_bytes(&x, out, 0, sizeof out, &err) == ECS_OK;
  for (int i = 0; ok && i < 4096; i++)
    ok = fabsf(out[i] - powf(wk->scale, 200)) < 1e-3f;
  wk->ok = ok;
  ecs_buffer_free(buf);
  ecs_backend_free(be);
  return NULL;
}

static void test_gpu_two_workers_on_two_threads(void **state) {
  (void)state;
  ecs_device *dev = gpu();
  if (!dev) skip();
  worker w[2] = {{dev, 1.0f, 0}, {dev, -1.0f, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  assert_true(w[0].ok);
  assert_true(w[1].ok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpu_lookups_map_no_cuda_library),
      cmocka_unit_test(test_cuda_lookup_without_gpu_is_a_clear_error),
      cmocka_unit_test(test_gpu_device_and_buffers),
      cmocka_unit_test(test_gpu_elementwise_and_dropout),
      cmocka_unit_test(test_gpu_validation_errors),
      cmocka_unit_test(test_gpu_conv_matches_host_and_caches_algorithm),
      cmocka_unit_test(test_gpu_two_workers_on_two_threads),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  if (failed) return failed;
  return gpu() ? 0 : 77;
}
