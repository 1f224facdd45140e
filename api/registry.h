/* registry.h - the model registry under DATA_DIR/models, and the choice of the served model.
 *
 * The registry is one of the two owners of DATA_DIR (docs/data-dir.md; the job store,
 * server/srv-jobs.h, is the other): it alone writes models/, for the server and the command
 * line alike.
 *
 * Layout: models/NAME/VERSION.safetensors (VERSION = 1, 2, ...) plus one pointer file,
 * models/ACTIVE, holding "NAME VERSION". Files are never written in place: every write goes
 * to a temporary file in the same folder, is fsync'd, renamed (or hard-linked, so an existing
 * version is never replaced) into place, and the folder is fsync'd, so a crash leaves either
 * the old state or the new one. Mutations (add, activate, delete) take an exclusive flock on
 * models/.lock, so several servers sharing one data volume do not race on version numbers;
 * readers take no lock, since a rename is atomic.
 *
 * Names are 1..63 characters of [A-Za-z0-9._-], not starting with '.', and not "ACTIVE":
 * nothing a client sends can name a path outside models/. */
#ifndef API_REGISTRY_H
#define API_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ecs/base.h"
#include "model.h"

#define API_REG_NAME_MAX 64

typedef struct api_reg api_reg;

/* Opens the registry of data_dir. create: make data_dir/models (and data_dir) when missing;
 * otherwise a missing folder is an empty registry. */
api_reg *api_reg_open(const char *data_dir, bool create, ecs_err *err);
void api_reg_free(api_reg *r);             /* accepts NULL */
const char *api_reg_dir(const api_reg *r); /* DATA_DIR/models */

/* true when name is a valid registry name (see above). */
bool api_reg_name_valid(const char *name);

/* Copies the model file src in as the next version of name (1 for a new name); the file must
 * be an ECS-Net model (a safetensors file with a backbone and classes). *version receives the
 * new version. */
ecs_status api_reg_add(api_reg *r, const char *name, const char *src, int *version, ecs_err *err);
/* Saves a model (a finished training job's) straight in as the next version of name, with no
 * copy of it anywhere else. */
ecs_status api_reg_add_model(api_reg *r, const char *name, const ecs_model *m, int *version,
                             ecs_err *err);
/* Points models/ACTIVE at an existing version. */
ecs_status api_reg_activate(api_reg *r, const char *name, int version, ecs_err *err);
/* Removes a version; the active one is refused (ECS_ERR_INVALID). A name left without versions
 * disappears. */
ecs_status api_reg_delete(api_reg *r, const char *name, int version, ecs_err *err);
/* The active version: *version = 0 and ECS_OK when there is no pointer; ECS_ERR_FORMAT for a
 * corrupt pointer, ECS_ERR_IO for one naming a version that does not exist. */
ecs_status api_reg_active(const api_reg *r, char name[API_REG_NAME_MAX], int *version,
                          ecs_err *err);
/* DATA_DIR/models/NAME/VERSION.safetensors (no check that it exists). */
ecs_status api_reg_path(const api_reg *r, const char *name, int version, char *out, size_t n,
                        ecs_err *err);

/* Names, sorted; *names is malloc'd (free()). */
ecs_status api_reg_names(const api_reg *r, char (**names)[API_REG_NAME_MAX], int *n, ecs_err *err);
/* Versions of a name, ascending; *versions is malloc'd (free()); none: *n = 0. */
ecs_status api_reg_versions(const api_reg *r, const char *name, int **versions, int *n,
                            ecs_err *err);

/* What a model file says about itself, read from its header only. */
typedef struct api_model_summary {
  char backbone[32];
  double alpha_bg;
  bool refine; /* metadata "refine": /cam refines the CAMs unless a request says otherwise */
  int n_classes;
  char (*classes)[64]; /* n_classes names, malloc'd */
  char provenance[256];
  int64_t created; /* unix seconds: the file's modification time (when it was added) */
  int64_t bytes;
  char *synonyms; /* the file's class_synonyms (JSON), malloc'd, or NULL */
  char *groups;   /* the file's groups ("name:id,id;..."), malloc'd, or NULL */
} api_model_summary;

ecs_status api_model_summarise(const char *path, api_model_summary *out, ecs_err *err);
void api_model_summary_free(api_model_summary *s); /* frees its strings, not s; accepts NULL */

/* The served model (design.md, Binaries): opts->path when given; else the registry's active
 * version, unless it is an earlier shipped default the server activated itself (then the
 * current shipped model replaces it, and opts->note says so; docs/server.md); else the shipped
 * model (api_shipped_model_path), added to the registry as the next version of its name
 * (version 1 on a first start) and activated. Fills path (n bytes), name and version.
 * ECS_ERR_IO with a message naming every place looked at when there is none. */
ecs_status api_served_model(const api_model_opts *opts, char *path, size_t n,
                            char name[API_REG_NAME_MAX], int *version, ecs_err *err);

/* A registry name for a model file outside the registry: its stem, with anything outside the
 * name alphabet as '-' ("model" when nothing valid is left). */
void api_name_of_file(const char *path, char name[API_REG_NAME_MAX]);

/* The model shipped with the program: the file setting names when it is not NULL ("" or
 * "none": no shipped model; the server's --shipped-model, $ECSNET_SHIPPED_MODEL), else in
 * EXE/../../models or EXE/../models (EXE being the folder of the running executable)
 * ecsnet-imagenet-lite0.safetensors, else ecsnet-synth-small.safetensors, else the first
 * *.safetensors by name. false when there is none. */
bool api_shipped_model_path(const char *setting, char *out, size_t n);

#endif
