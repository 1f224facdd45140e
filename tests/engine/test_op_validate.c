/* test_op_validate.c - the generic op contract (ecs_op_validate) and the reference kernels'
 * refusals: every malformed op is ECS_ERR_INVALID with a message naming the op and the
 * offending tensor, never a crash; well-formed ops pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "backend-impl.h"
#include "cpu/ref.h"
#include "ref_tensors.h"

/* Both the validator and the reference kernel refuse op with a message containing needle. */
static void expect_invalid(ecs_op *op, const char *needle) {
  ecs_err err = {0};
  ecs_status st = ecs_op_validate(op, &err);
  if (st != ECS_ERR_INVALID)
    fail_msg("%s: expected INVALID, got %s", ecs_op_name(op->type), ecs_status_str(st));
  if (!strstr(err.msg, needle)) fail_msg("message '%s' does not mention '%s'", err.msg, needle);
  ecs_err e2 = {0};
  assert_int_equal(ecs_ref_compute(op, 1, &e2), ECS_ERR_INVALID);
  assert_string_equal(e2.msg, err.msg);
}

static void expect_ok(ecs_op *op) {
  ecs_err err = {0};
  if (ecs_op_validate(op, &err) != ECS_OK)
    fail_msg("%s: unexpected error: %s", ecs_op_name(op->type), err.msg);
  if (ecs_ref_compute(op, 1, &err) != ECS_OK)
    fail_msg("%s: kernel error: %s", ecs_op_name(op->type), err.msg);
}

#define T4(a, b, c, d) th_new(ECS_F32, 4, a, b, c, d)
#define T1(a)          th_new(ECS_F32, 1, a, 1, 1, 1)

static void test_generic(void **state) {
  (void)state;
  ecs_err err = {0};
  assert_int_equal(ecs_op_validate(NULL, &err), ECS_ERR_INVALID);
  ecs_op none = {.type = ECS_OP_NONE};
  assert_int_equal(ecs_op_validate(&none, &err), ECS_ERR_INVALID);
  ecs_op bogus = {.type = (ecs_op_type)999};
  assert_int_equal(ecs_op_validate(&bogus, &err), ECS_ERR_INVALID);
  assert_false(ecs_ref_supports(&bogus));

  ecs_tensor *x = T4(1, 2, 3, 3), *y = T4(1, 2, 3, 3), *i = th_new(ECS_I32, 4, 1, 2, 3, 3);
  ecs_op relu = {.type = ECS_OP_RELU, .src = {x}, .dst = {y}};
  expect_ok(&relu);
  relu.dst[0] = NULL;
  expect_invalid(&relu, "y is missing");
  relu.dst[0] = i;
  expect_invalid(&relu, "must be F32, not I32");
  relu.dst[0] = y;
  y->ne[3] = 4;
  expect_invalid(&relu, "must have shape [1, 2, 3, 3]");
  y->ne[3] = 3;
  x->ne[1] = 0;
  expect_invalid(&relu, "empty dimension");
  x->ne[1] = 2;
  relu.p.act.clip = -1;
  expect_invalid(&relu, "clip");
  relu.p.act.clip = 0;
  /* COPY keeps any dtype, but both sides must agree */
  ecs_tensor *i2 = th_like(i, ECS_I32);
  ecs_op cp = {.type = ECS_OP_COPY, .src = {i}, .dst = {i2}};
  expect_ok(&cp);
  cp.dst[0] = y;
  expect_invalid(&cp, "must be I32");
  /* private layouts are not the reference's; missing memory is an error, not a crash */
  y->layout = 7;
  assert_false(ecs_ref_supports(&relu));
  assert_int_equal(ecs_ref_compute(&relu, 1, &err), ECS_ERR_UNSUPPORTED);
  y->layout = ECS_LAYOUT_PLAIN;
  assert_true(ecs_ref_supports(&relu));
  void *keep = y->data;
  y->data = NULL;
  assert_int_equal(ecs_ref_compute(&relu, 1, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "no memory"));
  y->data = keep;
  th_free(x), th_free(y), th_free(i), th_free(i2);
}

static void test_conv(void **state) {
  (void)state;
  ecs_tensor *x = T4(2, 4, 7, 6), *w = T4(6, 2, 3, 3), *b = T1(6), *y = T4(2, 6, 4, 3);
  ecs_op op = {.type = ECS_OP_CONV2D, .src = {x, w, b}, .dst = {y}};
  op.p.conv = (typeof(op.p.conv)){{2, 2}, {1, 1}, {1, 1}, 2, ECS_ACT_NONE};
  expect_ok(&op);
  op.p.conv.groups = 1;
  expect_invalid(&op, "weight's shape");
  op.p.conv.groups = 2;
  op.p.conv.stride[1] = 0;
  expect_invalid(&op, "stride");
  op.p.conv.stride[1] = 2;
  op.p.conv.pad[0] = 0;
  expect_invalid(&op, "must have shape [2, 6, 3, 3]");
  op.p.conv.pad[0] = 1;
  op.p.conv.dil[0] = 5;
  expect_invalid(&op, "larger than the padded");
  op.p.conv.dil[0] = 1;
  b->ne[0] = 5;
  expect_invalid(&op, "bias must have 6 elements");
  b->ne[0] = 6;
  /* backward data: dx's shape is the caller's and must be consistent with dy */
  ecs_tensor *dx = T4(2, 4, 7, 6), *dw = T4(6, 2, 3, 3), *db = T1(6);
  ecs_op bd = {.type = ECS_OP_CONV2D_BWD_DATA, .src = {y, w}, .dst = {dx}, .p = op.p};
  expect_ok(&bd);
  dx->ne[2] = 9; /* (9 + 2 - 3) / 2 + 1 = 5 rows, dy has 4 */
  expect_invalid(&bd, "dy must have shape");
  dx->ne[2] = 7;
  ecs_op bw = {.type = ECS_OP_CONV2D_BWD_WEIGHT, .src = {x, y}, .dst = {dw, db}, .p = op.p};
  expect_ok(&bw);
  db->ne[0] = 3;
  expect_invalid(&bw, "bias gradient");
  ecs_tensor *all[] = {x, w, b, y, dx, dw, db};
  for (int i = 0; i < 7; i++)
    th_free(all[i]);
}

static void test_batchnorm_and_pool(void **state) {
  (void)state;
  ecs_tensor *x = T4(2, 3, 4, 4), *y = T4(2, 3, 4, 4), *g = T1(3), *be = T1(3), *rm = T1(3),
             *rv = T1(3);
  for (int i = 0; i < 3; i++)
    th_f(rv)[i] = 1, th_f(g)[i] = 1;
  ecs_op bn = {
      .type = ECS_OP_BATCHNORM, .src = {x, g, be, rm, rv}, .dst = {y}, .p.bn = {1e-5f, 0.1f, 0}};
  expect_ok(&bn);
  bn.src[4] = NULL;
  expect_invalid(&bn, "running var is missing");
  bn.p.bn.training = 1;
  expect_ok(&bn); /* training without running statistics: nothing to update */
  bn.src[4] = rv;
  g->ne[0] = 4;
  expect_invalid(&bn, "gamma must have 3 elements");
  g->ne[0] = 3;
  bn.p.bn.momentum = 2;
  expect_invalid(&bn, "momentum");
  bn.p.bn.momentum = 0.1f;
  /* one value per channel cannot give batch statistics: the kernel says so */
  ecs_tensor *x1 = T4(1, 3, 1, 1), *y1 = T4(1, 3, 1, 1);
  ecs_op bn1 = {
      .type = ECS_OP_BATCHNORM, .src = {x1, g, be, rm, rv}, .dst = {y1}, .p.bn = {1e-5f, 0.1f, 1}};
  ecs_err err = {0};
  assert_int_equal(ecs_ref_compute(&bn1, 1, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "more than one value"));

  ecs_tensor *p = T4(2, 3, 2, 2), *ws = th_new(ECS_I32, 4, 2, 3, 2, 2), *wf = T4(2, 3, 2, 2);
  ecs_op pool = {.type = ECS_OP_POOL2D, .src = {x}, .dst = {p}};
  pool.p.pool = (typeof(pool.p.pool)){ECS_POOL_MAX, {3, 3}, {2, 2}, {1, 1}, 0, 1};
  expect_ok(&pool);
  pool.dst[1] = ws;
  expect_ok(&pool); /* the reference fills an I32 argmax workspace when given one */
  pool.dst[1] = wf;
  assert_int_equal(ecs_ref_compute(&pool, 1, &err), ECS_ERR_INVALID);
  pool.dst[1] = ws;
  pool.p.pool.kind = ECS_POOL_AVG;
  expect_invalid(&pool, "only for max pooling");
  pool.dst[1] = NULL;
  pool.p.pool.pad[1] = 2;
  expect_invalid(&pool, "at most half");
  pool.p.pool.pad[1] = 1;
  pool.p.pool.ceil_mode = 1; /* (4 + 2 - 3 + 1) / 2 + 1 = 3 */
  expect_invalid(&pool, "must have shape [2, 3, 3, 3]");
  ecs_tensor *all[] = {x, y, g, be, rm, rv, x1, y1, p, ws, wf};
  for (int i = 0; i < 11; i++)
    th_free(all[i]);
}

static void test_channels_and_losses(void **state) {
  (void)state;
  ecs_tensor *a = T4(2, 2, 3, 3), *b = T4(2, 3, 3, 3), *y = T4(2, 5, 3, 3), *s = T4(2, 2, 3, 3);
  ecs_op cat = {.type = ECS_OP_CONCAT, .src = {a, b}, .dst = {y}, .p.concat.n = 2};
  expect_ok(&cat);
  cat.p.concat.n = 1;
  expect_invalid(&cat, "sum of the inputs");
  cat.p.concat.n = 7;
  expect_invalid(&cat, "number of inputs");
  ecs_op sl = {.type = ECS_OP_SLICE_C, .src = {y}, .dst = {s}, .p.slice.offset = 3};
  expect_ok(&sl);
  sl.p.slice.offset = 4;
  expect_invalid(&sl, "outside");

  ecs_tensor *m8 = th_new(ECS_U8, 4, 2, 2, 3, 3);
  ecs_op dr = {.type = ECS_OP_DROPOUT, .src = {a}, .dst = {s, m8}, .p.dropout = {1.5f, 1}};
  expect_invalid(&dr, "probability");
  dr.p.dropout.p = 0.5f;
  expect_ok(&dr);
  dr.dst[1] = a;
  expect_invalid(&dr, "mask must be U8");

  ecs_tensor *cm = th_new(ECS_F32, 2, 2, 5, 1, 1), *bad = th_new(ECS_F32, 2, 5, 2, 1, 1),
             *z = T4(2, 5, 3, 3);
  ecs_op sm = {.type = ECS_OP_LOG_SOFTMAX, .src = {y, cm}, .dst = {z}};
  expect_ok(&sm);
  sm.src[1] = bad;
  expect_invalid(&sm, "class mask");

  ecs_tensor *lab = th_new(ECS_I32, 3, 2, 3, 3, 1), *labf = th_new(ECS_F32, 3, 2, 3, 3, 1),
             *l = T1(1);
  ecs_op ce = {.type = ECS_OP_MASKED_CE, .src = {y, lab}, .dst = {l}, .p.ce.ignore_index = 255};
  expect_ok(&ce);
  ((int32_t *)lab->data)[4] = 9;
  ecs_err err = {0};
  assert_int_equal(ecs_ref_compute(&ce, 1, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "label 9"));
  for (int i = 0; i < 5; i++)
    th_f(cm)[i] = i != 0;
  ((int32_t *)lab->data)[4] = 0;
  ce.src[2] = cm;
  assert_int_equal(ecs_ref_compute(&ce, 1, &err), ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "masked-out class"));
  ce.src[1] = labf;
  expect_invalid(&ce, "labels must be I32");
  ce.src[1] = lab;
  l->ne[0] = 2;
  expect_invalid(&ce, "loss must have one element");
  l->ne[0] = 1;

  ecs_op bl = {.type = ECS_OP_GAUSS_BLUR, .src = {a}, .dst = {s}, .p.blur = {1.0f, 4}};
  expect_invalid(&bl, "odd ksize");
  bl.p.blur = (typeof(bl.p.blur)){0.0f, 5};
  expect_invalid(&bl, "sigma");
  bl.p.blur.sigma = 1;
  expect_ok(&bl);
  ecs_tensor *all[] = {a, b, y, s, m8, cm, bad, z, lab, labf, l};
  for (int i = 0; i < 11; i++)
    th_free(all[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generic),
      cmocka_unit_test(test_conv),
      cmocka_unit_test(test_batchnorm_and_pool),
      cmocka_unit_test(test_channels_and_losses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
