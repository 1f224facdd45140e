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

#define SRV_MAX_TRUSTED 32 /* --trusted-proxy CIDRs */

/* An address block; IPv4 is held as ::ffff:a.b.c.d so that one comparison serves both. */
typedef struct srv_cidr {
  uint8_t addr[16];
  int bits; /* prefix length over the 16 bytes (IPv4 /n: 96 + n) */
} srv_cidr;

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
  int max_connections_per_ip; /* per client address (behind a trusted proxy: requests) */
  int header_timeout_ms;      /* from accept (or the previous answer) to the end of headers */
  int body_timeout_ms;        /* from the end of headers to the end of the body */
  int max_header_bytes;       /* request line and header fields together */
  char trusted_proxy[1024];   /* as given: CIDRs, comma-separated */
  srv_cidr trusted[SRV_MAX_TRUSTED];
  int n_trusted;
  char trusted_src; /* which source set trusted_proxy: 'd'efault, 'f'ile, 'e'nv, 'a'rgv */
  int http_threads;
  double label_threshold;
  int label_topk;
  char admin_token_file[ECS_PATH_MAX];
  char admin_token[256]; /* ECSNET_ADMIN_TOKEN, or read from admin_token_file at start */
  char log_format[8];    /* text | json */
  char access_log[8];    /* on | off */
  char cors_origin[256]; /* empty: CORS off */
  int registry_watch_ms; /* how often models/ACTIVE is read (srv-watch.c); 0: never */
  /* The Label Studio ML backend (/labelstudio, srv-ls.c) */
  char ls_url[512]; /* Label Studio's base URL; "": task images only as data: */
  char ls_token_file[ECS_PATH_MAX];
  char ls_token[1024]; /* ECSNET_LS_TOKEN, or read from ls_token_file at start */
  char ls_auth_file[ECS_PATH_MAX];
  char ls_auth[256]; /* user:password: HTTP basic auth on the /labelstudio routes */
  int ls_fetch_timeout_ms;
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

/* Parses "ADDR[/BITS]" (IPv4 or IPv6) into out; false when it is not one. */
bool srv_cidr_parse(const char *text, size_t len, srv_cidr *out);
/* Whether addr (16 bytes, IPv4 mapped) is in one of the --trusted-proxy blocks. */
bool srv_config_trusted(const srv_config *c, const uint8_t addr[16]);
/* The client named by an X-Forwarded-For value: the last entry that is not itself a trusted
 * proxy, as text (out: 64 bytes) and 16 bytes (key); false when the last entry is no address.
 * (srv-addr.c, as srv_cidr_parse and srv_config_trusted.) */
bool srv_xff_client(const srv_config *cfg, const char *xff, char *out, uint8_t key[16]);

/* Writes the --help text. */
void srv_config_usage(FILE *out);

#endif
