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

typedef enum srv_config_result {
  SRV_CONFIG_OK = 0,
  SRV_CONFIG_EXIT_OK,  /* --help or --version was printed: exit 0 */
  SRV_CONFIG_USAGE,    /* bad usage: msg holds one line; exit 2 */
} srv_config_result;

void srv_config_defaults(srv_config *c);

/* Applies defaults, the config file (--config or ECSNET_CONFIG), the environment (envp, NULL-
 * terminated NAME=VALUE strings; NULL for none) and argv, then checks the whole. --help and
 * --version print to out. msg receives one line without a newline on SRV_CONFIG_USAGE. */
srv_config_result srv_config_load(srv_config *c, int argc, char **argv, char **envp, FILE *out,
                                  char *msg, size_t msg_len);

/* Sets one setting by name from text (as a config line would); false and msg on a bad name or
 * value. where names the source for the message ("--workers", "ECSNET_WORKERS", "file:3"). */
bool srv_config_set(srv_config *c, const char *name, const char *value, const char *where,
                    char *msg, size_t msg_len);

/* Writes the --help text. */
void srv_config_usage(FILE *out);

#endif
