/* ecs_opcheck.c - runs single ops from case files, for the PyTorch parity tests.
 *
 *   ecs_opcheck [--device NAME] [--threads N] CASE.safetensors OUT.safetensors [CASE OUT ...]
 *   ecs_opcheck --list
 *
 * A case file holds the op's inputs as tensors "src0".."src5" (absent = NULL) and, in its
 * __metadata__, "op" (the name ecs_op_name gives), the outputs to make as "dst0".."dst2" =
 * "F32:2,3,8,8" (dtype:shape), and the op's parameters as strings: "stride", "pad", "dil" (one
 * value or "h,w"), "groups", "eps", "momentum", "training", "clip", "kind" (max|avg), "k",
 * "ceil_mode", "count_include_pad", "n", "offset", "p", "seed", "ignore_index", "sigma",
 * "ksize", "a", "b". The op runs on the chosen device through the public backend API (inputs
 * uploaded to the device's buffers, outputs read back through a plain COPY when the backend
 * keeps them in a private layout) and OUT receives "dst0".."dst2", plus "src3"/"src4" for batch
 * norm, whose running statistics change in place. Forward and backward ops are cases alike, so
 * a test runs an op and its backward as two cases of one invocation.
 *
 * Exit status: 0 when every case ran, 1 when one failed (the error names the case), 2 on bad
 * usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/backend.h"
#include "ecs/safetensors.h"
#include "tool_env.h"

#define MAX_T 16

typedef struct run {
  ecs_device *dev;
  ecs_backend *be;
  ecs_tensor ts[MAX_T];
  ecs_buffer *bufs[MAX_T];
  int nt;
} run;

static ecs_tensor *new_tensor(run *r, ecs_dtype type, int nd, const int64_t *ne) {
  if (r->nt >= MAX_T) return NULL;
  ecs_tensor *t = &r->ts[r->nt];
  r->bufs[r->nt++] = NULL;
  memset(t, 0, sizeof *t);
  t->type = type, t->nd = nd;
  for (int i = 0; i < ECS_MAX_DIMS; i++)
    t->ne[i] = i < nd ? ne[i] : 1;
  return t;
}

static ecs_status alloc_tensor(run *r, ecs_tensor *t, ecs_err *err) {
  ecs_buffer *b = ecs_buffer_alloc(ecs_device_buffer_type(r->dev), t->nbytes ? t->nbytes : 1, err);
  if (!b) return err->status;
  r->bufs[t - r->ts] = b;
  t->buffer = b, t->data = ecs_buffer_base(b);
  return ECS_OK;
}

static void run_release(run *r) {
  for (int i = 0; i < r->nt; i++)
    ecs_buffer_free(r->bufs[i]);
  r->nt = 0;
}

/* "F32:2,3,8,8" */
static ecs_status parse_spec(const char *s, ecs_dtype *type, int *nd, int64_t *ne, ecs_err *err) {
  const char *colon = strchr(s, ':');
  if (!colon) return ecs_err_set(err, ECS_ERR_FORMAT, "output spec '%s' is not DTYPE:SHAPE", s);
  size_t n = (size_t)(colon - s);
  for (int t = 0; t < ECS_DTYPE_COUNT; t++)
    if (strlen(ecs_dtype_name((ecs_dtype)t)) == n &&
        strncmp(s, ecs_dtype_name((ecs_dtype)t), n) == 0) {
      *type = (ecs_dtype)t;
      *nd = 0;
      for (const char *p = colon + 1; *p;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 1 || *nd >= ECS_MAX_DIMS)
          return ecs_err_set(err, ECS_ERR_FORMAT, "bad shape in output spec '%s'", s);
        ne[(*nd)++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
          return ecs_err_set(err, ECS_ERR_FORMAT, "bad shape in output spec '%s'", s);
      }
      if (*nd == 0) return ecs_err_set(err, ECS_ERR_FORMAT, "empty shape in output spec '%s'", s);
      return ECS_OK;
    }
  return ecs_err_set(err, ECS_ERR_FORMAT, "unknown dtype in output spec '%s'", s);
}

/* "v" or "h,w" into out[2]; absent keeps the default. */
static void meta_pair(const ecs_st_file *f, const char *key, int *out, int def) {
  const char *v = ecs_st_meta(f, key);
  out[0] = out[1] = def;
  if (!v) return;
  char *end;
  out[0] = out[1] = (int)strtol(v, &end, 10);
  if (*end == ',') out[1] = (int)strtol(end + 1, NULL, 10);
}

static int meta_int(const ecs_st_file *f, const char *key, int def) {
  const char *v = ecs_st_meta(f, key);
  return v ? (int)strtol(v, NULL, 10) : def;
}

static float meta_float(const ecs_st_file *f, const char *key, float def) {
  const char *v = ecs_st_meta(f, key);
  return v ? strtof(v, NULL) : def;
}

static ecs_status parse_op(const ecs_st_file *f, ecs_op *op, ecs_err *err) {
  const char *name = ecs_st_meta(f, "op");
  if (!name) return ecs_err_set(err, ECS_ERR_FORMAT, "the case has no 'op' in its metadata");
  op->type = ECS_OP_NONE;
  for (int t = 1; t < ECS_OP_COUNT; t++)
    if (strcmp(ecs_op_name((ecs_op_type)t), name) == 0) op->type = (ecs_op_type)t;
  if (op->type == ECS_OP_NONE) return ecs_err_set(err, ECS_ERR_FORMAT, "unknown op '%s'", name);
  switch (op->type) {
  case ECS_OP_CONV2D:
  case ECS_OP_CONV2D_BWD_DATA:
  case ECS_OP_CONV2D_BWD_WEIGHT:
    meta_pair(f, "stride", op->p.conv.stride, 1);
    meta_pair(f, "pad", op->p.conv.pad, 0);
    meta_pair(f, "dil", op->p.conv.dil, 1);
    op->p.conv.groups = meta_int(f, "groups", 1);
    break;
  case ECS_OP_BATCHNORM:
  case ECS_OP_BATCHNORM_BWD:
    op->p.bn.eps = meta_float(f, "eps", 1e-5f);
    op->p.bn.momentum = meta_float(f, "momentum", 0.1f);
    op->p.bn.training = meta_int(f, "training", 1);
    break;
  case ECS_OP_RELU:
  case ECS_OP_RELU_BWD: op->p.act.clip = meta_float(f, "clip", 0); break;
  case ECS_OP_POOL2D:
  case ECS_OP_POOL2D_BWD: {
    const char *kind = ecs_st_meta(f, "kind");
    if (!kind || (strcmp(kind, "max") && strcmp(kind, "avg")))
      return ecs_err_set(err, ECS_ERR_FORMAT, "pooling needs kind = max or avg");
    op->p.pool.kind = strcmp(kind, "max") == 0 ? ECS_POOL_MAX : ECS_POOL_AVG;
    meta_pair(f, "k", op->p.pool.k, 1);
    meta_pair(f, "stride", op->p.pool.stride, op->p.pool.k[0]);
    meta_pair(f, "pad", op->p.pool.pad, 0);
    op->p.pool.ceil_mode = meta_int(f, "ceil_mode", 0);
    op->p.pool.count_include_pad = meta_int(f, "count_include_pad", 1);
    break;
  }
  case ECS_OP_CONCAT: op->p.concat.n = meta_int(f, "n", 1); break;
  case ECS_OP_SLICE_C: op->p.slice.offset = meta_int(f, "offset", 0); break;
  case ECS_OP_DROPOUT:
  case ECS_OP_DROPOUT_BWD: {
    op->p.dropout.p = meta_float(f, "p", 0.5f);
    const char *s = ecs_st_meta(f, "seed");
    op->p.dropout.seed = s ? strtoull(s, NULL, 10) : 0;
    break;
  }
  case ECS_OP_MASKED_CE:
  case ECS_OP_MASKED_CE_BWD: op->p.ce.ignore_index = meta_int(f, "ignore_index", 255); break;
  case ECS_OP_MAXMIN_NORM: op->p.norm.eps = meta_float(f, "eps", 1e-5f); break;
  case ECS_OP_GAUSS_BLUR:
    op->p.blur.sigma = meta_float(f, "sigma", 1.0f);
    op->p.blur.ksize = meta_int(f, "ksize", 5);
    break;
  default:
    op->p.scalar.a = meta_float(f, "a", 1.0f);
    op->p.scalar.b = meta_float(f, "b", 0.0f);
    break;
  }
  return ECS_OK;
}

/* Reads t into a malloc'd plain host copy (*out), converting a private layout first. */
static ecs_status read_back(run *r, ecs_tensor *t, void **out, ecs_err *err) {
  ecs_status st;
  if (t->layout != ECS_LAYOUT_PLAIN) {
    ecs_tensor *p = new_tensor(r, t->type, t->nd, t->ne);
    if (!p) return ecs_err_set(err, ECS_ERR_LIMIT, "too many tensors");
    p->nbytes = ecs_plain_nbytes(p); /* declared plain, no prepare: COPY converts */
    ecs_op cp = {.type = ECS_OP_COPY, .src = {t}, .dst = {p}};
    if ((st = alloc_tensor(r, p, err)) != ECS_OK ||
        (st = ecs_backend_compute(r->be, &cp, err)) != ECS_OK ||
        (st = ecs_backend_synchronize(r->be, err)) != ECS_OK)
      return st;
    t = p;
  }
  size_t n = ecs_plain_nbytes(t);
  *out = malloc(n ? n : 1);
  if (!*out) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  return ecs_tensor_get_bytes(t, *out, 0, n, err);
}

static int is_max_pool(const ecs_op *op) {
  return (op->type == ECS_OP_POOL2D || op->type == ECS_OP_POOL2D_BWD) &&
         op->p.pool.kind == ECS_POOL_MAX;
}

/* A device's max pooling backward may want its own forward's argmax workspace. */
static ecs_status pool_workspace(run *r, ecs_op *op, ecs_err *err) {
  ecs_op f = {.type = ECS_OP_POOL2D, .src = {op->src[0]}, .p = op->p};
  f.dst[0] = new_tensor(r, ECS_F32, 4, op->src[1]->ne);
  f.dst[1] = new_tensor(r, ECS_I32, 4, op->src[1]->ne);
  if (!f.dst[1]) return ecs_err_set(err, ECS_ERR_LIMIT, "too many tensors");
  ecs_status st;
  if ((st = ecs_backend_prepare(r->be, &f, err)) != ECS_OK ||
      (st = alloc_tensor(r, f.dst[0], err)) != ECS_OK ||
      (st = alloc_tensor(r, f.dst[1], err)) != ECS_OK ||
      (st = ecs_backend_compute(r->be, &f, err)) != ECS_OK)
    return st;
  op->src[2] = f.dst[1];
  return ECS_OK;
}

static ecs_status run_case(run *r, const char *in, const char *outp, ecs_err *err) {
  ecs_st_file *f = ecs_st_open(in, err);
  if (!f) return err->status;
  ecs_st_writer *w = NULL;
  ecs_op op = {0};
  ecs_status st = parse_op(f, &op, err);
  for (int i = 0; i < ECS_OP_MAX_SRC && st == ECS_OK; i++) {
    char key[8];
    snprintf(key, sizeof key, "src%d", i);
    const ecs_st_tensor *s = ecs_st_find(f, key);
    if (!s) continue;
    ecs_tensor *t = new_tensor(r, s->type, s->nd, s->ne);
    if (!t) {
      st = ecs_err_set(err, ECS_ERR_LIMIT, "too many tensors");
      break;
    }
    t->nbytes = s->nbytes;
    if ((st = alloc_tensor(r, t, err)) == ECS_OK)
      st = ecs_tensor_set_bytes(t, s->data, 0, s->nbytes, err);
    op.src[i] = t;
  }
  for (int i = 0; i < ECS_OP_MAX_DST && st == ECS_OK; i++) {
    char key[8];
    snprintf(key, sizeof key, "dst%d", i);
    const char *spec = ecs_st_meta(f, key);
    if (!spec) continue;
    ecs_dtype type = ECS_F32;
    int nd = 0;
    int64_t ne[ECS_MAX_DIMS] = {0};
    if ((st = parse_spec(spec, &type, &nd, ne, err)) == ECS_OK)
      op.dst[i] = new_tensor(r, type, nd, ne);
  }
  if (st == ECS_OK && !ecs_device_supports_op(r->dev, &op))
    st = ecs_err_set(err, ECS_ERR_UNSUPPORTED, "device %s does not support %s with these tensors",
                     ecs_device_name(r->dev), ecs_op_name(op.type));
  if (st == ECS_OK && op.type == ECS_OP_POOL2D_BWD && is_max_pool(&op) && !op.src[2] && op.src[0] &&
      op.src[1])
    st = pool_workspace(r, &op, err);
  if (st == ECS_OK) st = ecs_backend_prepare(r->be, &op, err);
  for (int i = 0; i < ECS_OP_MAX_DST && st == ECS_OK; i++)
    if (op.dst[i]) st = alloc_tensor(r, op.dst[i], err);
  if (st == ECS_OK) st = ecs_backend_compute(r->be, &op, err);
  if (st == ECS_OK) st = ecs_backend_synchronize(r->be, err);
  if (st == ECS_OK && !(w = ecs_st_writer_new(err))) st = err->status;
  for (int i = 0; i < ECS_OP_MAX_DST + 2 && st == ECS_OK; i++) {
    int is_src = i >= ECS_OP_MAX_DST;
    ecs_tensor *t =
        is_src ? (op.type == ECS_OP_BATCHNORM ? op.src[3 + i - ECS_OP_MAX_DST] : NULL) : op.dst[i];
    if (!t || (op.type == ECS_OP_POOL2D && i == 1)) continue; /* a workspace is the device's own */
    char key[8];
    snprintf(key, sizeof key, is_src ? "src%d" : "dst%d", is_src ? 3 + i - ECS_OP_MAX_DST : i);
    void *host = NULL;
    if ((st = read_back(r, t, &host, err)) == ECS_OK)
      st = ecs_st_writer_add(w, key, t->type, t->nd, t->ne, host, err);
    free(host);
  }
  if (st == ECS_OK) st = ecs_st_writer_save(w, outp, err);
  ecs_st_writer_free(w);
  ecs_st_close(f);
  run_release(r);
  return st;
}

static int usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--device NAME] [--threads N] CASE OUT [CASE OUT ...] | --list\n",
          argv0);
  return 2;
}

int main(int argc, char **argv) {
  const char *device = "cpu";
  int threads = 2, i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--list") == 0) {
      for (size_t k = 0; k < ecs_device_count(); k++)
        printf("%s\t%s\n", ecs_device_name(ecs_device_get(k)),
               ecs_device_description(ecs_device_get(k)));
      return 0;
    } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      device = argv[++i];
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else {
      return usage(argv[0]);
    }
  }
  if (i >= argc || (argc - i) % 2) return usage(argv[0]);
  ecs_backend_params bp = {.n_threads = threads};
  if (!tool_engine_from_env(&bp, "ecs_opcheck")) return 2;
  ecs_err err = {0};
  run r = {0};
  r.dev = ecs_device_find(device, &err);
  if (!r.dev || !(r.be = ecs_backend_init(r.dev, &bp, &err))) {
    fprintf(stderr, "ecs_opcheck: %s\n", err.msg);
    return 1;
  }
  int rc = 0;
  for (; i < argc; i += 2) {
    ecs_err_clear(&err);
    if (run_case(&r, argv[i], argv[i + 1], &err) != ECS_OK) {
      fprintf(stderr, "ecs_opcheck: %s: %s\n", argv[i], err.msg);
      rc = 1;
    }
  }
  ecs_backend_free(r.be);
  return rc;
}
