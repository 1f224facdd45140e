/* ecs/safetensors.h - reading and writing safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string value", ...}}, then the data. Files are memory-mapped for
 * reading; every offset, shape and dtype is validated before any tensor is exposed, so a
 * truncated or malformed file is an ECS_ERR_FORMAT naming what is wrong, never a crash.
 * Writing goes to a temporary file in the same folder, fsync, then rename: never in place. */
#ifndef ECS_SAFETENSORS_H
#define ECS_SAFETENSORS_H

#include "ecs/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ecs_st_file ecs_st_file;

typedef struct ecs_st_tensor {
  const char *name;
  ecs_dtype type; /* F32, I32, U8 are supported; other dtypes fail to open */
  int nd;
  int64_t ne[ECS_MAX_DIMS];
  const void *data; /* inside the mapping, little-endian */
  size_t nbytes;
} ecs_st_tensor;

ecs_st_file *ecs_st_open(const char *path, ecs_err *err);
/* Parses an in-memory image of a file (the bytes are borrowed, not copied). */
ecs_st_file *ecs_st_open_memory(const void *bytes, size_t n, ecs_err *err);
void ecs_st_close(ecs_st_file *f); /* accepts NULL */
size_t ecs_st_count(const ecs_st_file *f);
const ecs_st_tensor *ecs_st_at(const ecs_st_file *f, size_t i);
const ecs_st_tensor *ecs_st_find(const ecs_st_file *f, const char *name);
/* __metadata__ values (strings); NULL when absent. */
const char *ecs_st_meta(const ecs_st_file *f, const char *key);
size_t ecs_st_meta_count(const ecs_st_file *f);
const char *ecs_st_meta_key(const ecs_st_file *f, size_t i);

/* Writing: collect tensors (data copied at add time) and metadata, then save atomically. */
typedef struct ecs_st_writer ecs_st_writer;
ecs_st_writer *ecs_st_writer_new(ecs_err *err);
void ecs_st_writer_free(ecs_st_writer *w); /* accepts NULL */
ecs_status ecs_st_writer_add(ecs_st_writer *w, const char *name, ecs_dtype type, int nd,
                             const int64_t *ne, const void *data, ecs_err *err);
ecs_status ecs_st_writer_meta(ecs_st_writer *w, const char *key, const char *value, ecs_err *err);
ecs_status ecs_st_writer_save(ecs_st_writer *w, const char *path, ecs_err *err);
/* Adds every tensor of ps (copied through the host) under its name, for files that hold more
 * than one store (a training checkpoint: parameters and optimiser state). */
ecs_status ecs_st_writer_add_params(ecs_st_writer *w, const ecs_params *ps, ecs_err *err);

/* Parameter stores <-> files. meta_kv holds n_meta pairs: meta_kv[2i] a key, meta_kv[2i+1] its
 * value. Loading checks that every tensor of ps is present with the same
 * shape and dtype (the error names the tensor); unused keys in the file are reported through
 * `unused` (may be NULL) as a comma-separated list, not an error. */
ecs_status ecs_params_save(const ecs_params *ps, const char *path, const char *const *meta_kv,
                           size_t n_meta, ecs_err *err);
ecs_status ecs_params_load(ecs_params *ps, const ecs_st_file *f, char *unused, size_t unused_n,
                           ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
