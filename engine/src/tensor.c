/* tensor.c - descriptor helpers. */
#include "ecs/op.h"

#include <stdio.h>
#include <string.h>

size_t ecs_dtype_size(ecs_dtype t) {
  switch (t) {
  case ECS_F32: return 4;
  case ECS_I32: return 4;
  case ECS_U8: return 1;
  default: return 0;
  }
}

const char *ecs_dtype_name(ecs_dtype t) {
  switch (t) {
  case ECS_F32: return "F32";
  case ECS_I32: return "I32";
  case ECS_U8: return "U8";
  default: return "?";
  }
}

int64_t ecs_nelements(const ecs_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->nd; i++)
    n *= t->ne[i];
  return n;
}

size_t ecs_plain_nbytes(const ecs_tensor *t) {
  return (size_t)ecs_nelements(t) * ecs_dtype_size(t->type);
}

int ecs_same_shape(const ecs_tensor *a, const ecs_tensor *b) {
  if (a->nd != b->nd) return 0;
  for (int i = 0; i < a->nd; i++)
    if (a->ne[i] != b->ne[i]) return 0;
  return 1;
}

const char *ecs_shape_str(const ecs_tensor *t, char *buf, size_t n) {
  size_t used = 0;
  if (n == 0) return buf;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->nd && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)t->ne[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
  return buf;
}

int64_t ecs_conv_out_size(int64_t in, int k, int stride, int pad, int dil) {
  return (in + 2 * pad - (int64_t)dil * (k - 1) - 1) / stride + 1;
}

int64_t ecs_pool_out_size(int64_t in, int k, int stride, int pad, int ceil_mode) {
  int64_t num = in + 2 * pad - k;
  int64_t out = (ceil_mode ? (num + stride - 1) / stride : num / stride) + 1;
  /* PyTorch: the last window must start inside the input or left padding */
  if (ceil_mode && (out - 1) * stride >= in + pad) out--;
  return out;
}
