/* dnnl-wrap.c - the only file that calls oneDNN (2.x C API); see dnnl-wrap.h for why.
 *
 * A dw_prim bundles the primitive, its descriptor, the descriptions of its execute arguments
 * (queried once) and one memory object per argument, re-pointed at each execution: creating
 * memory objects per call would cost an allocation per argument per op. Every primitive uses a
 * user-managed scratchpad so that the backend can reuse one buffer for all of them. */
#include "dnnl-wrap.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dw_engine {
  dnnl_engine_t eng;
  dnnl_stream_t stream;
  dnnl_primitive_attr_t attr; /* user scratchpad */
};

struct dw_md {
  dnnl_memory_desc_t d;
};

struct dw_prim {
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
  dw_md *mds[DW_ARG_COUNT];
  dnnl_memory_t mem[DW_ARG_COUNT];
  dnnl_memory_t scratch_mem;
  size_t scratch_size;
};

static int dnnl_arg_of(dw_arg a) {
  switch (a) {
  case DW_SRC: return DNNL_ARG_SRC;
  case DW_SRC1: return DNNL_ARG_SRC_1;
  case DW_WEIGHTS: return DNNL_ARG_WEIGHTS;
  case DW_BIAS: return DNNL_ARG_BIAS;
  case DW_DST: return DNNL_ARG_DST;
  case DW_DIFF_SRC: return DNNL_ARG_DIFF_SRC;
  case DW_DIFF_DST: return DNNL_ARG_DIFF_DST;
  case DW_DIFF_WEIGHTS: return DNNL_ARG_DIFF_WEIGHTS;
  case DW_DIFF_BIAS: return DNNL_ARG_DIFF_BIAS;
  case DW_MEAN: return DNNL_ARG_MEAN;
  case DW_VARIANCE: return DNNL_ARG_VARIANCE;
  case DW_SCALE: return DNNL_ARG_SCALE;
  case DW_SHIFT: return DNNL_ARG_SHIFT;
  case DW_DIFF_SCALE: return DNNL_ARG_DIFF_SCALE;
  case DW_DIFF_SHIFT: return DNNL_ARG_DIFF_SHIFT;
  case DW_WORKSPACE: return DNNL_ARG_WORKSPACE;
  default: return DNNL_ARG_MULTIPLE_SRC + (int)(a - DW_MSRC);
  }
}

static ecs_status fail(ecs_err *err, dnnl_status_t s, const char *what) {
  return ecs_err_set(err, s == dnnl_out_of_memory ? ECS_ERR_NOMEM : ECS_ERR_BACKEND,
                     "oneDNN %s: %s", what, dnnl_status2str(s));
}

/* ---- engine ----------------------------------------------------------------------------- */

dw_engine *dw_engine_create(ecs_err *err) {
  dw_engine *e = calloc(1, sizeof *e);
  if (!e) {
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a oneDNN engine");
    return NULL;
  }
  dnnl_status_t s = dnnl_engine_create(&e->eng, dnnl_cpu, 0);
  if (s == dnnl_success) s = dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags);
  if (s == dnnl_success) s = dnnl_primitive_attr_create(&e->attr);
  if (s == dnnl_success)
    s = dnnl_primitive_attr_set_scratchpad_mode(e->attr, dnnl_scratchpad_mode_user);
  if (s != dnnl_success) {
    fail(err, s, "engine creation");
    dw_engine_free(e);
    return NULL;
  }
  return e;
}

void dw_engine_free(dw_engine *e) {
  if (!e) return;
  if (e->attr) dnnl_primitive_attr_destroy(e->attr);
  if (e->stream) dnnl_stream_destroy(e->stream);
  if (e->eng) dnnl_engine_destroy(e->eng);
  free(e);
}

/* ---- descriptions ----------------------------------------------------------------------- */

static dw_md *md_by_tag(int nd, const int64_t *dims, dnnl_format_tag_t tag) {
  if (nd < 1 || nd > 5) return NULL;
  dw_md *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  dnnl_dims_t d;
  for (int i = 0; i < nd; i++)
    d[i] = dims[i];
  if (dnnl_memory_desc_init_by_tag(&m->d, nd, d, dnnl_f32, tag) != dnnl_success) {
    free(m);
    return NULL;
  }
  return m;
}

static dnnl_format_tag_t plain_tag(int nd) {
  static const dnnl_format_tag_t tags[] = {dnnl_a,   dnnl_a,    dnnl_ab,
                                           dnnl_abc, dnnl_abcd, dnnl_abcde};
  return nd >= 1 && nd <= 5 ? tags[nd] : dnnl_format_tag_undef;
}

dw_md *dw_md_plain(int nd, const int64_t *dims) {
  return md_by_tag(nd, dims, plain_tag(nd));
}
dw_md *dw_md_any(int nd, const int64_t *dims) {
  return md_by_tag(nd, dims, dnnl_format_tag_any);
}

/* The formats the backend may meet on activations, to name and to re-create them. */
static const dnnl_format_tag_t g_tags4[] = {dnnl_abcd, dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b,
                                            dnnl_aBcd4b};
static const char *const g_tag4_names[] = {"nchw", "nhwc", "nChw8c", "nChw16c", "nChw4c"};

static int tag4_index(const dw_md *m) {
  if (m->d.ndims != 4 || m->d.data_type != dnnl_f32) return -1;
  for (size_t i = 0; i < sizeof g_tags4 / sizeof g_tags4[0]; i++) {
    dnnl_memory_desc_t t;
    if (dnnl_memory_desc_init_by_tag(&t, 4, m->d.dims, dnnl_f32, g_tags4[i]) != dnnl_success)
      continue;
    if (dnnl_memory_desc_equal(&t, &m->d)) return (int)i;
  }
  return -1;
}

int64_t dw_md_cblock(const dw_md *md) {
  static const int blocks[] = {1, -1, 8, 16, 4}; /* per g_tags4; nhwc: all channels */
  int k = tag4_index(md);
  if (k < 0) return 0;
  return blocks[k] < 0 ? md->d.dims[1] : blocks[k];
}

dw_md *dw_md_like(const dw_md *proto, int nd, const int64_t *dims) {
  if (proto->d.ndims != nd) return NULL;
  if (nd != 4) return dw_md_plain(nd, dims);
  int k = tag4_index(proto);
  return k < 0 ? NULL : md_by_tag(nd, dims, g_tags4[k]);
}

dw_md *dw_md_dup(const dw_md *md) {
  dw_md *m = malloc(sizeof *m);
  if (m) *m = *md;
  return m;
}

void dw_md_free(dw_md *md) {
  free(md);
}

int dw_md_equal(const dw_md *a, const dw_md *b) {
  return dnnl_memory_desc_equal(&a->d, &b->d);
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  return h;
}

uint64_t dw_md_hash(const dw_md *md) {
  const dnnl_memory_desc_t *d = &md->d;
  uint64_t h = mix(0, (uint64_t)d->ndims);
  h = mix(h, (uint64_t)d->data_type);
  h = mix(h, (uint64_t)d->format_kind);
  h = mix(h, (uint64_t)d->offset0);
  for (int i = 0; i < d->ndims; i++) {
    h = mix(h, (uint64_t)d->dims[i]);
    h = mix(h, (uint64_t)d->padded_dims[i]);
  }
  if (d->format_kind == dnnl_blocked) {
    const dnnl_blocking_desc_t *b = &d->format_desc.blocking;
    for (int i = 0; i < d->ndims; i++)
      h = mix(h, (uint64_t)b->strides[i]);
    h = mix(h, (uint64_t)b->inner_nblks);
    for (int i = 0; i < b->inner_nblks; i++) {
      h = mix(h, (uint64_t)b->inner_blks[i]);
      h = mix(h, (uint64_t)b->inner_idxs[i]);
    }
  }
  return h;
}

size_t dw_md_size(const dw_md *md) {
  return dnnl_memory_desc_get_size(&md->d);
}
int dw_md_ndims(const dw_md *md) {
  return md->d.ndims;
}
int64_t dw_md_dim(const dw_md *md, int i) {
  return i < md->d.ndims ? md->d.dims[i] : 1;
}
int dw_md_is_f32(const dw_md *md) {
  return md->d.data_type == dnnl_f32;
}

const char *dw_md_str(const dw_md *md, char *buf, size_t n) {
  int k = tag4_index(md);
  const char *fmt = k >= 0                                      ? g_tag4_names[k]
                    : md->d.format_kind == dnnl_format_kind_any ? "any"
                                                                : "blocked";
  int off = snprintf(buf, n, "%s ", fmt);
  for (int i = 0; i < md->d.ndims && off > 0 && (size_t)off < n; i++)
    off += snprintf(buf + off, n - (size_t)off, i ? "x%lld" : "%lld", (long long)md->d.dims[i]);
  return buf;
}

/* ---- primitives ------------------------------------------------------------------------- */

static const dnnl_memory_desc_t *raw(const dw_md *m) {
  return m ? &m->d : NULL;
}

static dw_prim *finish(dnnl_primitive_desc_t pd, ecs_err *err, const char *what) {
  dw_prim *p = calloc(1, sizeof *p);
  if (!p) {
    dnnl_primitive_desc_destroy(pd);
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a primitive");
    return NULL;
  }
  p->pd = pd;
  dnnl_status_t s = dnnl_primitive_create(&p->prim, pd);
  if (s != dnnl_success) {
    fail(err, s, what);
    dw_prim_free(p);
    return NULL;
  }
  for (int a = 0; a < DW_ARG_COUNT; a++) {
    const dnnl_memory_desc_t *md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, dnnl_arg_of((dw_arg)a));
    if (!md || md->ndims == 0) continue;
    p->mds[a] = malloc(sizeof(dw_md));
    if (!p->mds[a]) {
      ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate a primitive");
      dw_prim_free(p);
      return NULL;
    }
    p->mds[a]->d = *md;
  }
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  p->scratch_size = smd ? dnnl_memory_desc_get_size(smd) : 0;
  return p;
}

static dw_prim *make_attr(dw_engine *e, const void *desc, const_dnnl_primitive_attr_t attr,
                          const_dnnl_primitive_desc_t hint, ecs_err *err, const char *what) {
  dnnl_primitive_desc_t pd;
  dnnl_status_t s = dnnl_primitive_desc_create(&pd, desc, attr, e->eng, hint);
  if (s != dnnl_success) {
    fail(err, s, what);
    return NULL;
  }
  return finish(pd, err, what);
}

static dw_prim *make(dw_engine *e, const void *desc, const_dnnl_primitive_desc_t hint, ecs_err *err,
                     const char *what) {
  return make_attr(e, desc, e->attr, hint, err, what);
}

/* A forward descriptor used only as the hint of a backward one. */
static dnnl_primitive_desc_t hint_pd(dw_engine *e, const void *desc, ecs_err *err,
                                     const char *what) {
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t s = dnnl_primitive_desc_create(&pd, desc, e->attr, e->eng, NULL);
  if (s != dnnl_success) {
    fail(err, s, what);
    return NULL;
  }
  return pd;
}

static dw_prim *make_bwd(dw_engine *e, const void *desc, const void *fwd_desc, ecs_err *err,
                         const char *what) {
  dnnl_primitive_desc_t hint = hint_pd(e, fwd_desc, err, what);
  if (!hint) return NULL;
  dw_prim *p = make(e, desc, hint, err, what);
  dnnl_primitive_desc_destroy(hint);
  return p;
}

static void window(const dw_window *w, dnnl_dims_t st, dnnl_dims_t dil, dnnl_dims_t pl,
                   dnnl_dims_t pr) {
  for (int i = 0; i < 2; i++) {
    st[i] = w->stride[i];
    dil[i] = w->dil[i];
    pl[i] = w->pad_l[i];
    pr[i] = w->pad_r[i];
  }
}

static dnnl_status_t conv_fwd_desc(dnnl_convolution_desc_t *d, int training, const dw_md *src,
                                   const dw_md *w, const dw_md *bias, const dw_md *dst,
                                   const dw_window *win) {
  dnnl_dims_t st, dil, pl, pr;
  window(win, st, dil, pl, pr);
  return dnnl_dilated_convolution_forward_desc_init(
      d, training ? dnnl_forward_training : dnnl_forward_inference, dnnl_convolution_direct,
      raw(src), raw(w), raw(bias), raw(dst), st, dil, pl, pr);
}

dw_prim *dw_conv_fwd(dw_engine *e, int training, const dw_md *src, const dw_md *w,
                     const dw_md *bias, const dw_md *dst, const dw_window *win, int relu,
                     ecs_err *err) {
  dnnl_convolution_desc_t d;
  dnnl_status_t s = conv_fwd_desc(&d, training, src, w, bias, dst, win);
  if (s != dnnl_success) return fail(err, s, "convolution descriptor"), NULL;
  if (!relu) return make(e, &d, NULL, err, "convolution");
  /* the engine's attributes (user scratchpad) plus the post-op, for this primitive only */
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  s = dnnl_primitive_attr_clone(&attr, e->attr);
  if (s == dnnl_success) s = dnnl_post_ops_create(&po);
  if (s == dnnl_success)
    s = relu == DW_POST_RELU6
            ? dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, 6.0f)
            : dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
  if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
  dw_prim *p = s == dnnl_success ? make_attr(e, &d, attr, NULL, err, "convolution with ReLU")
                                 : (fail(err, s, "convolution post-op"), NULL);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return p;
}

dw_prim *dw_conv_bwd_data(dw_engine *e, const dw_md *diff_src, const dw_md *w,
                          const dw_md *diff_dst, const dw_window *win, ecs_err *err) {
  dnnl_convolution_desc_t f, d;
  dnnl_dims_t st, dil, pl, pr;
  window(win, st, dil, pl, pr);
  dnnl_status_t s = conv_fwd_desc(&f, 1, diff_src, w, NULL, diff_dst, win);
  if (s == dnnl_success)
    s = dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, raw(diff_src),
                                                         raw(w), raw(diff_dst), st, dil, pl, pr);
  if (s != dnnl_success) return fail(err, s, "convolution backward-data descriptor"), NULL;
  return make_bwd(e, &d, &f, err, "convolution backward data");
}

dw_prim *dw_conv_bwd_weights(dw_engine *e, const dw_md *src, const dw_md *diff_w,
                             const dw_md *diff_bias, const dw_md *diff_dst, const dw_window *win,
                             ecs_err *err) {
  dnnl_convolution_desc_t f, d;
  dnnl_dims_t st, dil, pl, pr;
  window(win, st, dil, pl, pr);
  dnnl_status_t s = conv_fwd_desc(&f, 1, src, diff_w, diff_bias, diff_dst, win);
  if (s == dnnl_success)
    s = dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, raw(src),
                                                            raw(diff_w), raw(diff_bias),
                                                            raw(diff_dst), st, dil, pl, pr);
  if (s != dnnl_success) return fail(err, s, "convolution backward-weights descriptor"), NULL;
  return make_bwd(e, &d, &f, err, "convolution backward weights");
}

static unsigned bn_flags(unsigned f) {
  unsigned r = 0;
  if (f & DW_BN_SCALE) r |= dnnl_use_scale;
  if (f & DW_BN_SHIFT) r |= dnnl_use_shift;
  if (f & DW_BN_GLOBAL) r |= dnnl_use_global_stats;
  return r;
}

dw_prim *dw_bnorm_fwd(dw_engine *e, int training, const dw_md *data, float eps, unsigned flags,
                      ecs_err *err) {
  dnnl_batch_normalization_desc_t d;
  dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(
      &d, training ? dnnl_forward_training : dnnl_forward_inference, raw(data), eps,
      bn_flags(flags));
  if (s != dnnl_success) return fail(err, s, "batch norm descriptor"), NULL;
  return make(e, &d, NULL, err, "batch norm");
}

dw_prim *dw_bnorm_bwd(dw_engine *e, const dw_md *diff, const dw_md *data, float eps, unsigned flags,
                      ecs_err *err) {
  dnnl_batch_normalization_desc_t f, d;
  dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(&f, dnnl_forward_training, raw(data),
                                                               eps, bn_flags(flags));
  if (s == dnnl_success)
    s = dnnl_batch_normalization_backward_desc_init(
        &d, (flags & (DW_BN_SCALE | DW_BN_SHIFT)) ? dnnl_backward : dnnl_backward_data, raw(diff),
        raw(data), eps, bn_flags(flags));
  if (s != dnnl_success) return fail(err, s, "batch norm backward descriptor"), NULL;
  return make_bwd(e, &d, &f, err, "batch norm backward");
}

static dnnl_alg_kind_t alg_of(dw_alg a) {
  switch (a) {
  case DW_ELT_RELU: return dnnl_eltwise_relu;
  case DW_ELT_CLIP: return dnnl_eltwise_clip_v2;
  case DW_ELT_LINEAR: return dnnl_eltwise_linear;
  case DW_POOL_MAX: return dnnl_pooling_max;
  case DW_POOL_AVG_INCLUDE: return dnnl_pooling_avg_include_padding;
  case DW_POOL_AVG_EXCLUDE: return dnnl_pooling_avg_exclude_padding;
  case DW_BIN_ADD: return dnnl_binary_add;
  case DW_BIN_MUL: return dnnl_binary_mul;
  }
  return dnnl_alg_kind_undef;
}

dw_prim *dw_eltwise_fwd(dw_engine *e, dw_alg alg, const dw_md *data, float alpha, float beta,
                        ecs_err *err) {
  dnnl_eltwise_desc_t d;
  dnnl_status_t s = dnnl_eltwise_forward_desc_init(&d, dnnl_forward_training, alg_of(alg),
                                                   raw(data), alpha, beta);
  if (s != dnnl_success) return fail(err, s, "eltwise descriptor"), NULL;
  return make(e, &d, NULL, err, "eltwise");
}

dw_prim *dw_eltwise_bwd(dw_engine *e, dw_alg alg, const dw_md *diff, const dw_md *data, float alpha,
                        float beta, ecs_err *err) {
  dnnl_eltwise_desc_t f, d;
  dnnl_status_t s = dnnl_eltwise_forward_desc_init(&f, dnnl_forward_training, alg_of(alg),
                                                   raw(data), alpha, beta);
  if (s == dnnl_success)
    s = dnnl_eltwise_backward_desc_init(&d, alg_of(alg), raw(diff), raw(data), alpha, beta);
  if (s != dnnl_success) return fail(err, s, "eltwise backward descriptor"), NULL;
  return make_bwd(e, &d, &f, err, "eltwise backward");
}

static dnnl_status_t pool_fwd_desc(dnnl_pooling_v2_desc_t *d, int training, dw_alg alg,
                                   const dw_md *src, const dw_md *dst, const dw_window *win) {
  dnnl_dims_t st, dil, pl, pr, k = {win->k[0], win->k[1]};
  window(win, st, dil, pl, pr);
  return dnnl_pooling_v2_forward_desc_init(
      d, training ? dnnl_forward_training : dnnl_forward_inference, alg_of(alg), raw(src), raw(dst),
      st, k, dil, pl, pr);
}

dw_prim *dw_pool_fwd(dw_engine *e, int training, dw_alg alg, const dw_md *src, const dw_md *dst,
                     const dw_window *win, ecs_err *err) {
  dnnl_pooling_v2_desc_t d;
  dnnl_status_t s = pool_fwd_desc(&d, training, alg, src, dst, win);
  if (s != dnnl_success) return fail(err, s, "pooling descriptor"), NULL;
  return make(e, &d, NULL, err, "pooling");
}

dw_prim *dw_pool_bwd(dw_engine *e, dw_alg alg, const dw_md *src, const dw_md *diff_src,
                     const dw_md *diff_dst, const dw_window *win, ecs_err *err) {
  /* The forward hint is built exactly as dw_pool_fwd builds the training forward (dst "any")
   * so that both pick the same implementation and agree on the workspace. */
  dnnl_pooling_v2_desc_t f, d;
  dnnl_dims_t st, dil, pl, pr, k = {win->k[0], win->k[1]};
  window(win, st, dil, pl, pr);
  dnnl_status_t s = pool_fwd_desc(&f, 1, alg, src, diff_dst, win);
  if (s != dnnl_success) return fail(err, s, "pooling descriptor"), NULL;
  dnnl_primitive_desc_t hint = hint_pd(e, &f, err, "pooling");
  if (!hint) return NULL;
  const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(hint, dnnl_query_dst_md, 0);
  s = dnnl_pooling_v2_backward_desc_init(&d, alg_of(alg), raw(diff_src), dmd, st, k, dil, pl, pr);
  dw_prim *p = NULL;
  if (s != dnnl_success)
    fail(err, s, "pooling backward descriptor");
  else
    p = make(e, &d, hint, err, "pooling backward");
  dnnl_primitive_desc_destroy(hint);
  return p;
}

dw_prim *dw_resample_fwd(dw_engine *e, const dw_md *src, const dw_md *dst, ecs_err *err) {
  dnnl_resampling_desc_t d;
  dnnl_status_t s = dnnl_resampling_forward_desc_init(
      &d, dnnl_forward_training, dnnl_resampling_linear, NULL, raw(src), raw(dst));
  if (s != dnnl_success) return fail(err, s, "resampling descriptor"), NULL;
  return make(e, &d, NULL, err, "resampling");
}

dw_prim *dw_resample_bwd(dw_engine *e, const dw_md *diff_src, const dw_md *diff_dst, ecs_err *err) {
  dnnl_resampling_desc_t f, d;
  dnnl_status_t s = dnnl_resampling_forward_desc_init(
      &f, dnnl_forward_training, dnnl_resampling_linear, NULL, raw(diff_src), raw(diff_dst));
  if (s == dnnl_success)
    s = dnnl_resampling_backward_desc_init(&d, dnnl_resampling_linear, NULL, raw(diff_src),
                                           raw(diff_dst));
  if (s != dnnl_success) return fail(err, s, "resampling backward descriptor"), NULL;
  return make_bwd(e, &d, &f, err, "resampling backward");
}

dw_prim *dw_softmax_fwd(dw_engine *e, int log, const dw_md *data, int axis, ecs_err *err) {
  dnnl_softmax_v2_desc_t d;
  dnnl_status_t s = dnnl_softmax_v2_forward_desc_init(
      &d, dnnl_forward_training, log ? dnnl_softmax_log : dnnl_softmax_accurate, raw(data),
      raw(data), axis);
  if (s != dnnl_success) return fail(err, s, "softmax descriptor"), NULL;
  return make(e, &d, NULL, err, "softmax");
}

dw_prim *dw_softmax_bwd(dw_engine *e, int log, const dw_md *diff, const dw_md *dst, int axis,
                        ecs_err *err) {
  dnnl_softmax_v2_desc_t f, d;
  dnnl_alg_kind_t alg = log ? dnnl_softmax_log : dnnl_softmax_accurate;
  dnnl_status_t s =
      dnnl_softmax_v2_forward_desc_init(&f, dnnl_forward_training, alg, raw(dst), raw(dst), axis);
  if (s == dnnl_success)
    s = dnnl_softmax_v2_backward_desc_init(&d, alg, raw(diff), raw(diff), raw(dst), axis);
  if (s != dnnl_success) return fail(err, s, "softmax backward descriptor"), NULL;
  return make_bwd(e, &d, &f, err, "softmax backward");
}

dw_prim *dw_binary(dw_engine *e, dw_alg alg, const dw_md *src0, const dw_md *src1, const dw_md *dst,
                   ecs_err *err) {
  dnnl_binary_desc_t d;
  dnnl_status_t s = dnnl_binary_desc_init(&d, alg_of(alg), raw(src0), raw(src1), raw(dst));
  if (s != dnnl_success) return fail(err, s, "binary descriptor"), NULL;
  return make(e, &d, NULL, err, "binary");
}

static dnnl_memory_desc_t *gather(int n, const dw_md *const *srcs, ecs_err *err) {
  dnnl_memory_desc_t *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
  if (!v) {
    ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate descriptors");
    return NULL;
  }
  for (int i = 0; i < n; i++)
    v[i] = srcs[i]->d;
  return v;
}

dw_prim *dw_sum(dw_engine *e, int n, const float *scales, const dw_md *const *srcs,
                const dw_md *dst, ecs_err *err) {
  if (n < 1 || n > DW_MAX_MSRC)
    return ecs_err_set(err, ECS_ERR_INVALID, "sum of %d sources", n), NULL;
  dnnl_memory_desc_t *v = gather(n, srcs, err);
  if (!v) return NULL;
  dnnl_primitive_desc_t pd;
  dnnl_status_t s = dnnl_sum_primitive_desc_create(&pd, raw(dst), n, scales, v, e->attr, e->eng);
  free(v);
  if (s != dnnl_success) return fail(err, s, "sum"), NULL;
  return finish(pd, err, "sum");
}

dw_prim *dw_concat(dw_engine *e, int n, int axis, const dw_md *const *srcs, const dw_md *dst,
                   ecs_err *err) {
  if (n < 1 || n > DW_MAX_MSRC)
    return ecs_err_set(err, ECS_ERR_INVALID, "concat of %d sources (at most %d)", n, DW_MAX_MSRC),
           NULL;
  dnnl_memory_desc_t *v = gather(n, srcs, err);
  if (!v) return NULL;
  dnnl_primitive_desc_t pd;
  dnnl_status_t s = dnnl_concat_primitive_desc_create(&pd, raw(dst), n, axis, v, e->attr, e->eng);
  free(v);
  if (s != dnnl_success) return fail(err, s, "concat"), NULL;
  return finish(pd, err, "concat");
}

dw_prim *dw_reorder(dw_engine *e, const dw_md *src, const dw_md *dst, ecs_err *err) {
  dnnl_primitive_desc_t pd;
  dnnl_status_t s =
      dnnl_reorder_primitive_desc_create(&pd, raw(src), e->eng, raw(dst), e->eng, e->attr);
  if (s != dnnl_success) return fail(err, s, "reorder"), NULL;
  return finish(pd, err, "reorder");
}

void dw_prim_free(dw_prim *p) {
  if (!p) return;
  for (int a = 0; a < DW_ARG_COUNT; a++) {
    if (p->mem[a]) dnnl_memory_destroy(p->mem[a]);
    free(p->mds[a]);
  }
  if (p->scratch_mem) dnnl_memory_destroy(p->scratch_mem);
  if (p->prim) dnnl_primitive_destroy(p->prim);
  if (p->pd) dnnl_primitive_desc_destroy(p->pd);
  free(p);
}

const dw_md *dw_prim_md(const dw_prim *p, dw_arg arg) {
  return arg >= 0 && arg < DW_ARG_COUNT ? p->mds[arg] : NULL;
}

size_t dw_prim_scratchpad_size(const dw_prim *p) {
  return p->scratch_size;
}

const char *dw_prim_impl(const dw_prim *p) {
  const char *s = NULL;
  if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
    return "";
  return s;
}

static dnnl_status_t point(dw_engine *e, dnnl_memory_t *mem, const dnnl_memory_desc_t *md,
                           void *ptr) {
  if (!*mem) return dnnl_memory_create(mem, md, e->eng, ptr);
  return dnnl_memory_set_data_handle_v2(*mem, ptr, e->stream);
}

ecs_status dw_exec(dw_engine *e, dw_prim *p, void *const ptrs[DW_ARG_COUNT], void *scratchpad,
                   ecs_err *err) {
  dnnl_exec_arg_t args[DW_ARG_COUNT + 1];
  int n = 0;
  dnnl_status_t s;
  for (int a = 0; a < DW_ARG_COUNT; a++) {
    if (!ptrs[a] || !p->mds[a]) continue;
    if ((s = point(e, &p->mem[a], &p->mds[a]->d, ptrs[a])) != dnnl_success)
      return fail(err, s, "memory");
    args[n++] = (dnnl_exec_arg_t){.arg = dnnl_arg_of((dw_arg)a), .memory = p->mem[a]};
  }
  if (p->scratch_size) {
    if (!scratchpad)
      return ecs_err_set(err, ECS_ERR_INVALID, "oneDNN primitive needs a scratchpad");
    const dnnl_memory_desc_t *smd =
        dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    if ((s = point(e, &p->scratch_mem, smd, scratchpad)) != dnnl_success)
      return fail(err, s, "scratchpad");
    args[n++] = (dnnl_exec_arg_t){.arg = DNNL_ARG_SCRATCHPAD, .memory = p->scratch_mem};
  }
  s = dnnl_primitive_execute(p->prim, e->stream, n, args);
  if (s == dnnl_success) s = dnnl_stream_wait(e->stream);
  return s == dnnl_success ? ECS_OK : fail(err, s, "execution");
}
