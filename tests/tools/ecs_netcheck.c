/* ecs_netcheck - whole small networks built from ecs/nn.h, for the comparison with PyTorch in
 * tests/python/test_network_torch.py.
 *
 * usage: ecs_netcheck NET DEVICE IN.safetensors OUT.safetensors
 *   NET: "resblocks" (resnet38d-style pre-activation blocks) or "vgg" (a small VGG16d-like net)
 *   IN: the weights under the PyTorch state_dict names, "input" (N,3,H,W), "gain" (the output's
 *       shape) and "targets" (N, C_out); metadata "bn" = "frozen" (running statistics, gamma
 *       and beta fixed) or "train" (batch statistics, gamma and beta trained).
 *   OUT: "out" (the network's output), "loss" = multilabel_soft_margin(gap(out * gain),
 *       targets), "grad.<name>" for every trained parameter, "input.grad", and the running
 *       statistics after the pass under their own names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/safetensors.h"
#include "tool_env.h"

typedef struct net {
  ecs_ctx *ctx;
  ecs_params *ps;
  int bn_train;
  int missing;
  char missing_name[128];
} net;

static ecs_tensor *P(net *n, const char *prefix, const char *leaf) {
  char name[128];
  snprintf(name, sizeof name, "%s%s%s", prefix, *leaf ? "." : "", leaf);
  ecs_tensor *t = ecs_params_find(n->ps, name);
  if (!t && !n->missing) {
    n->missing = 1;
    snprintf(n->missing_name, sizeof n->missing_name, "%s", name);
  }
  return t;
}

static ecs_tensor *bn(net *n, ecs_tensor *x, const char *name) {
  return ecs_batchnorm(n->ctx, x, P(n, name, "weight"), P(n, name, "bias"),
                       P(n, name, "running_mean"), P(n, name, "running_var"), n->bn_train, 0.1f,
                       1e-5f);
}

static ecs_tensor *conv(net *n, ecs_tensor *x, const char *name, int bias, int stride, int pad,
                        int dil) {
  return ecs_conv2d(n->ctx, x, P(n, name, "weight"), bias ? P(n, name, "bias") : NULL, stride, pad,
                    dil, 1);
}

/* resnet38d's ResBlock: BN-ReLU, then a 1x1 shortcut from the activated input when the shape
 * changes (else the input itself), and conv3x3-BN-ReLU-conv3x3 on the branch. */
static ecs_tensor *resblock(net *n, ecs_tensor *x, const char *name, int same_shape, int stride,
                            int first_dil, int dil) {
  char a[96], b[96], c2a[96], c2b[96], c1[96];
  snprintf(a, sizeof a, "%s.bn_branch2a", name);
  snprintf(b, sizeof b, "%s.bn_branch2b1", name);
  snprintf(c2a, sizeof c2a, "%s.conv_branch2a", name);
  snprintf(c2b, sizeof c2b, "%s.conv_branch2b1", name);
  snprintf(c1, sizeof c1, "%s.conv_branch1", name);
  ecs_tensor *br2 = ecs_relu(n->ctx, bn(n, x, a));
  ecs_tensor *br1 = same_shape ? x : conv(n, br2, c1, 0, stride, 0, 1);
  br2 = conv(n, br2, c2a, 0, stride, first_dil, first_dil);
  br2 = ecs_relu(n->ctx, bn(n, br2, b));
  br2 = conv(n, br2, c2b, 0, 1, dil, dil);
  return ecs_add(n->ctx, br1, br2);
}

static ecs_tensor *resblocks(net *n, ecs_tensor *x) {
  x = conv(n, x, "conv1a", 0, 1, 1, 1);
  x = resblock(n, x, "b2", 0, 2, 1, 1);
  x = resblock(n, x, "b2_1", 1, 1, 1, 1);
  x = resblock(n, x, "b3", 0, 1, 2, 2);
  return ecs_relu(n->ctx, bn(n, x, "bn7"));
}

static ecs_tensor *vgg(net *n, ecs_tensor *x) {
  ecs_ctx *c = n->ctx;
  x = ecs_relu(c, conv(n, x, "conv1_1", 1, 1, 1, 1));
  x = ecs_relu(c, conv(n, x, "conv1_2", 1, 1, 1, 1));
  x = ecs_max_pool2d(c, x, 3, 2, 1, 0);
  x = ecs_relu(c, conv(n, x, "conv2_1", 1, 1, 1, 1));
  x = ecs_max_pool2d(c, x, 2, 2, 0, 1);
  x = ecs_relu(c, conv(n, x, "conv3_1", 1, 1, 2, 2));
  x = ecs_relu(c, conv(n, x, "fc6", 1, 1, 1, 1));
  x = ecs_dropout(c, x, 0.5f); /* the ctx is not training: identity, as model.eval() */
  x = ecs_relu(c, conv(n, x, "fc7", 1, 1, 0, 1));
  return conv(n, x, "fc8", 1, 1, 0, 1);
}

static int fail(const char *what, const char *msg) {
  fprintf(stderr, "ecs_netcheck: %s: %s\n", what, msg);
  return 1;
}

static int is_bn_param(const char *name) {
  return strstr(name, "bn") && (strstr(name, ".weight") || strstr(name, ".bias"));
}

static ecs_status add_host(ecs_st_writer *w, ecs_ctx *ctx, const char *name, const ecs_tensor *t,
                           ecs_err *err) {
  size_t n = ecs_plain_nbytes(t);
  void *h = malloc(n ? n : 1);
  if (!h) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  ecs_status st = ecs_to_host(ctx, t, h, n);
  if (st != ECS_OK)
    ecs_ctx_status(ctx, err);
  else
    st = ecs_st_writer_add(w, name, t->type, t->nd, t->ne, h, err);
  free(h);
  return st;
}

int main(int argc, char **argv) {
  if (argc != 5 || (strcmp(argv[1], "resblocks") && strcmp(argv[1], "vgg"))) {
    fprintf(stderr, "usage: ecs_netcheck resblocks|vgg DEVICE IN.safetensors OUT.safetensors\n");
    return 2;
  }
  ecs_backend_params bp = {.n_threads = 2};
  if (!tool_engine_from_env(&bp, "ecs_netcheck")) return 2;
  ecs_err err = {0};
  ecs_st_file *in = ecs_st_open(argv[3], &err);
  if (!in) return fail("input", err.msg);
  const char *bnmode = ecs_st_meta(in, "bn");
  net n = {.bn_train = bnmode && strcmp(bnmode, "train") == 0};
  ecs_device *dev = ecs_device_find(argv[2], &err);
  ecs_backend *be = dev ? ecs_backend_init(dev, &bp, &err) : NULL;
  if (!be || !(n.ctx = ecs_ctx_new(be, &err))) return fail("backend", err.msg);

  /* the store: every float tensor of the file but the three inputs */
  n.ps = ecs_params_new(&err);
  for (size_t i = 0; i < ecs_st_count(in); i++) {
    const ecs_st_tensor *t = ecs_st_at(in, i);
    if (!strcmp(t->name, "input") || !strcmp(t->name, "gain") || !strcmp(t->name, "targets"))
      continue;
    int train = !strstr(t->name, "running_") && (n.bn_train || !is_bn_param(t->name));
    if (!ecs_params_add(n.ps, t->name, t->type, t->nd, t->ne, train, &err))
      return fail("parameters", err.msg);
  }
  if (ecs_params_alloc(n.ps, ecs_device_buffer_type(dev), &err) != ECS_OK ||
      ecs_params_alloc_grads(n.ps, &err) != ECS_OK ||
      ecs_params_load(n.ps, in, NULL, 0, &err) != ECS_OK)
    return fail("parameters", err.msg);

  const ecs_st_tensor *xi = ecs_st_find(in, "input"), *gi = ecs_st_find(in, "gain"),
                      *ti = ecs_st_find(in, "targets");
  if (!xi || !gi || !ti) return fail("input", "needs input, gain and targets");
  ecs_ctx_set_grad(n.ctx, 1);
  ecs_tensor *x = ecs_from_host(n.ctx, ECS_F32, xi->nd, xi->ne, xi->data);
  if (x) x->requires_grad = 1;
  ecs_tensor *out = strcmp(argv[1], "vgg") ? resblocks(&n, x) : vgg(&n, x);
  if (n.missing) return fail("weights", n.missing_name);
  ecs_tensor *gain = ecs_from_host(n.ctx, ECS_F32, gi->nd, gi->ne, gi->data);
  ecs_tensor *tg = ecs_from_host(n.ctx, ECS_F32, ti->nd, ti->ne, ti->data);
  ecs_tensor *loss = ecs_ml_soft_margin(n.ctx, ecs_gap(n.ctx, ecs_mul(n.ctx, out, gain)), tg);
  if (!loss || ecs_backward(n.ctx, loss, 1.0f) != ECS_OK) {
    ecs_ctx_status(n.ctx, &err);
    return fail("pass", err.msg);
  }

  ecs_st_writer *w = ecs_st_writer_new(&err);
  ecs_status st = add_host(w, n.ctx, "out", out, &err);
  if (st == ECS_OK) st = add_host(w, n.ctx, "loss", loss, &err);
  if (st == ECS_OK) st = add_host(w, n.ctx, "input.grad", x->grad, &err);
  for (size_t i = 0; st == ECS_OK && i < ecs_params_count(n.ps); i++) {
    ecs_tensor *t = ecs_params_at(n.ps, i);
    char name[128];
    if (t->grad) {
      snprintf(name, sizeof name, "grad.%s", t->name);
      st = add_host(w, n.ctx, name, t->grad, &err);
    } else if (strstr(t->name, "running_")) {
      st = add_host(w, n.ctx, t->name, t, &err);
    }
  }
  if (st == ECS_OK) {
    ecs_backend_stats s;
    ecs_backend_get_stats(be, &s);
    char buf[64];
    snprintf(buf, sizeof buf, "%llu/%llu", (unsigned long long)s.ref_ops,
             (unsigned long long)s.ops);
    st = ecs_st_writer_meta(w, "ref_ops", buf, &err);
  }
  if (st == ECS_OK) st = ecs_st_writer_save(w, argv[4], &err);
  if (st != ECS_OK) return fail("output", err.msg);
  ecs_st_writer_free(w);
  ecs_ctx_free(n.ctx);
  ecs_params_free(n.ps);
  ecs_backend_free(be);
  ecs_st_close(in);
  return 0;
}
