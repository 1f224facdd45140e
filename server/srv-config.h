/* srv-config.h - ecsnet-server's settings: one table of names, types, bounds, defaults and help.
 *
 * Every setting is a flag (--name VALUE or --name=VALUE), an ECSNET_NAME environment variable
 * (upper case, dashes to underscores) and a `name value` line of the --config file. Precedence,
 * lowest first: built-in default, config file, environment, command line. Values are checked
 * against the table's bounds as they are read, so a bad value is reported with where it came
 * from and the server never starts half-configured. */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ecs/backend.h"
#include "ecs/path.h"

typedef struct srv_config {
  char listen[300]; /* HOST:PORT as given */
  char host[256];   /* parsed from listen */
  int port;
  char model[ECS_PATH_MAX];
  char shipped_model[ECS_PATH_MAX]; /* "auto": models/ beside the program; "" or "none": none */
  char data_dir[ECS_PATH_MAX];
  char device[32];
  int workers;
  int threads;
  int train_threads;
  int queue;
  int64_t max_body;
  int64_t max_pixels;
  int max_labels;
  int request_timeout_ms;
  int max_connections;
  int http_threads;
  double label_threshold;
  int label_topk;
  char admin_token_file[ECS_PATH_MAX];
  char admin_token[256]; /* ECSNET_ADMIN_TOKEN, or read from admin_token_file at start */
  char log_format[8];    /* text | json */
  char access_log[8];    /* on | off */
  char cors_origin[256]; /* empty: CORS off */
  /* The engine options (ecs/options.h), passed to every backend the server makes; n_threads
   * is left 0 here and set per backend from threads and train_threads. */
  ecs_backend_params engine;
  char config[ECS_PATH_MAX];
} srv_config;

void srv_config_defaults(srv_config *c);

/* Applies defaults, the config file (--config or ECSNET_CONFIG), the environment (envp, NULL-
 * terminated NAME=VALUE strings; NULL for none) and argv, then checks the whole. --help and
 * --version print to out and set *done (exit 0). Bad usage is ECS_ERR_INVALID with one line
 * without a newline in err (exit 2). */
ecs_status srv_config_load(srv_config *c, int argc, char **argv, char **envp, FILE *out, bool *done,
                           ecs_err *err);

/* Sets one setting by name from text (as a config line would); ECS_ERR_INVALID and err on a
 * bad name or value. where names the source for the message ("--workers", "ECSNET_WORKERS",
 * "file:3"). */
ecs_status srv_config_set(srv_config *c, const char *name, const char *value, const char *where,
                          ecs_err *err);

/* Writes the --help text. */
void srv_config_usage(FILE *out);

#endif
