/* srv-config.c - the settings table and its three sources.
 *
 * After Redis's config.c: each setting is one row (name, type, where it lives in srv_config,
 * bounds, default, help), and every source goes through srv_config_set, so flags, environment
 * and file can never disagree on what a value means. Every row is read by the server: a
 * setting is added here only together with the code that uses it. */
#include "srv-config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "ecs/base.h"
#include "ecs/options.h"

/* T_ENGINE: one field of srv_config.engine, named and parsed by ecs/options.h */
/* T_CIDRS: a list of address blocks; repeated within one source it grows, from another
 * source it is replaced (so the command line still wins over the environment). */
typedef enum { T_INT, T_I64, T_DOUBLE, T_STRING, T_ENUM, T_LISTEN, T_ENGINE, T_CIDRS } ctype_t;

enum { F_NO_FLAG = 1 }; /* secrets: environment and file only, never argv (ps shows argv) */

typedef struct setting {
  const char *name;
  ctype_t type;
  size_t offset;
  size_t size;         /* strings: buffer size */
  double min, max;     /* numbers */
  const char *def;     /* default, as text ("" for none) */
  const char *choices; /* T_ENUM: '|'-separated */
  const char *arg;     /* metavariable in --help */
  const char *help;
  unsigned flags;
} setting;

#define OFF(f) offsetof(srv_config, f), sizeof(((srv_config *)0)->f)

static const setting k_settings[] = {
    {"listen", T_LISTEN, OFF(listen), 0, 0, "127.0.0.1:8080", NULL, "HOST:PORT",
     "address to listen on (port 0: any free port)", 0},
    {"model", T_STRING, OFF(model), 0, 0, "", NULL, "PATH",
     "model file to serve (overrides the registry)", 0},
    {"shipped-model", T_STRING, OFF(shipped_model), 0, 0, "auto", NULL, "PATH|auto|none",
     "served when no version is active (auto: models/ beside the program)", 0},
    {"data-dir", T_STRING, OFF(data_dir), 0, 0, "./data", NULL, "DIR", "jobs, models and datasets",
     0},
    {"device", T_ENUM, OFF(device), 0, 0, "auto", "auto|cpu|cuda", "DEV",
     "auto, cpu, cuda or cuda:N", 0},
    {"workers", T_INT, OFF(workers), 1, 256, "1", NULL, "N", "inference workers", 0},
    {"threads", T_INT, OFF(threads), 0, 1024, "0", NULL, "N",
     "compute threads in total, shared out among workers (0: one per core)", 0},
    {"train-threads", T_INT, OFF(train_threads), 0, 1024, "0", NULL, "N",
     "threads of an admin training or evaluation job (0: half of --threads)", 0},
    {"queue", T_INT, OFF(queue), 1, 100000, "64", NULL, "N",
     "requests waiting for a worker; beyond it: 503 + Retry-After", 0},
    {"max-body", T_I64, OFF(max_body), 1024, 4294967296.0, "33554432", NULL, "BYTES",
     "largest request body (413 beyond)", 0},
    {"max-pixels", T_I64, OFF(max_pixels), 1, 268435456.0, "25000000", NULL, "N",
     "largest image, width*height, checked from the header before decoding (413 beyond)", 0},
    {"max-labels", T_INT, OFF(max_labels), 1, 255, "20", NULL, "N", "most labels in one request",
     0},
    {"request-timeout-ms", T_INT, OFF(request_timeout_ms), 100, 3600000, "30000", NULL, "MS",
     "deadline of a request; queued work past it is dropped", 0},
    {"max-connections", T_INT, OFF(max_connections), 1, 100000, "256", NULL, "N",
     "simultaneous client connections", 0},
    {"max-connections-per-ip", T_INT, OFF(max_connections_per_ip), 1, 100000, "64", NULL, "N",
     "connections from one client address (behind --trusted-proxy: requests in progress); "
     "beyond it: 429",
     0},
    {"header-timeout-ms", T_INT, OFF(header_timeout_ms), 100, 3600000, "10000", NULL, "MS",
     "time to receive a request's headers, and the most a kept-alive connection idles (408)", 0},
    {"body-timeout-ms", T_INT, OFF(body_timeout_ms), 100, 3600000, "60000", NULL, "MS",
     "time to receive a request's body once its headers are in (408); not the compute deadline", 0},
    {"max-header-bytes", T_INT, OFF(max_header_bytes), 1024, 1048576, "8192", NULL, "BYTES",
     "request line and header fields together (431 beyond)", 0},
    {"trusted-proxy", T_CIDRS, OFF(trusted_proxy), 0, 0, "", NULL, "CIDR",
     "a proxy whose X-Forwarded-For names the client (repeatable or comma-separated)", 0},
    {"http-threads", T_INT, OFF(http_threads), 1, 256, "4", NULL, "N",
     "HTTP threads (they parse and answer; inference runs on the workers)", 0},
    {"label-threshold", T_DOUBLE, OFF(label_threshold), 0, 1, "0", NULL, "P",
     "class score above which a label is predicted when none are given; 0: the model's own", 0},
    {"label-topk", T_INT, OFF(label_topk), 1, 20, "3", NULL, "N",
     "predicted labels come from the N best classes (each as its group where one covers it)", 0},
    {"admin-token-file", T_STRING, OFF(admin_token_file), 0, 0, "", NULL, "FILE",
     "file holding the bearer token of /admin (also ECSNET_ADMIN_TOKEN); none: admin is off", 0},
    {"admin-token", T_STRING, OFF(admin_token), 0, 0, "", NULL, "TOKEN",
     "the admin token itself (environment or config file only)", F_NO_FLAG},
    {"log-format", T_ENUM, OFF(log_format), 0, 0, "text", "text|json", "FMT",
     "access and event log format", 0},
    {"access-log", T_ENUM, OFF(access_log), 0, 0, "on", "on|off", "on|off",
     "one line per request on stdout", 0},
    {"cors-origin", T_STRING, OFF(cors_origin), 0, 0, "", NULL, "ORIGIN",
     "allowed CORS origin ('*' for any); empty: CORS off", 0},
    {"ls-url", T_STRING, OFF(ls_url), 0, 0, "", NULL, "URL",
     "Label Studio's base URL: task images are fetched from it alone", 0},
    {"ls-token-file", T_STRING, OFF(ls_token_file), 0, 0, "", NULL, "FILE",
     "file holding Label Studio's access token (legacy or personal; also ECSNET_LS_TOKEN)", 0},
    {"ls-token", T_STRING, OFF(ls_token), 0, 0, "", NULL, "TOKEN",
     "Label Studio's access token itself (environment or config file only)", F_NO_FLAG},
    {"ls-auth-file", T_STRING, OFF(ls_auth_file), 0, 0, "", NULL, "FILE",
     "file holding user:password: basic auth required on /labelstudio (also ECSNET_LS_AUTH)", 0},
    {"ls-auth", T_STRING, OFF(ls_auth), 0, 0, "", NULL, "USER:PASSWORD",
     "the basic auth credentials themselves (environment or config file only)", F_NO_FLAG},
    {"ls-fetch-timeout-ms", T_INT, OFF(ls_fetch_timeout_ms), 100, 600000, "20000", NULL, "MS",
     "time limit of fetching one Label Studio task image", 0},
    {"winograd", T_ENGINE, OFF(engine), 0, 0, "auto", NULL, "auto|off|2|4",
     "CPU: 3x3 convolutions at inference by Winograd F(2x2,3x3) or F(4x4,3x3)", 0},
    {"dnnl-phases", T_ENGINE, OFF(engine), 0, 0, "auto", NULL, "auto|off|N",
     "CPU: dilated convolutions split into N x N phase images (space-to-batch)", 0},
    {"dnnl-pack", T_ENGINE, OFF(engine), 0, 0, "auto", NULL, "auto|off|N",
     "CPU: narrow maps convolved side by side in maps up to N columns wide (auto: 64)", 0},
    {"fuse", T_ENGINE, OFF(engine), 0, 0, "auto", NULL, "auto|off",
     "ReLU fused into the convolution before it at inference", 0},
    {"tf32", T_ENGINE, OFF(engine), 0, 0, "off", NULL, "on|off",
     "CUDA: TF32 tensor cores for float32 convolutions and GEMMs", 0},
    {"cuda-workspace-mb", T_ENGINE, OFF(engine), 0, 0, "0", NULL, "MIB",
     "CUDA: cuDNN workspace per worker in MiB (0: 256)", 0},
    {"registry-watch-ms", T_INT, OFF(registry_watch_ms), 0, 3600000, "2000", NULL, "MS",
     "read the registry's active version every MS and serve it when it changes (0: never)", 0},
    {"config", T_STRING, OFF(config), 0, 0, "", NULL, "FILE",
     "read settings from FILE (lines 'name value'; '#' comments)", 0},
};
#define N_SETTINGS (sizeof k_settings / sizeof k_settings[0])

/* A bad setting: ECS_ERR_INVALID, with one line (no newline) in err. */
static ecs_status bad(ecs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ecs_status bad(ecs_err *err, const char *fmt, ...) {
  if (err) {
    err->status = ECS_ERR_INVALID;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return ECS_ERR_INVALID;
}

static void env_name(const char *name, char *out, size_t n);

static const setting *find_setting(const char *name, size_t len) {
  for (size_t i = 0; i < N_SETTINGS; i++)
    if (strlen(k_settings[i].name) == len && strncmp(k_settings[i].name, name, len) == 0)
      return &k_settings[i];
  return NULL;
}

static ecs_status parse_listen(srv_config *c, const char *v, const char *where, ecs_err *err) {
  const char *colon = strrchr(v, ':');
  if (!colon || colon == v) return bad(err, "%s: '%s' is not HOST:PORT", where, v);
  size_t hl = (size_t)(colon - v);
  const char *h = v;
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') h++, hl -= 2; /* [::1]:8080 */
  if (hl == 0 || hl >= sizeof c->host) return bad(err, "%s: bad host in '%s'", where, v);
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
    return bad(err, "%s: port in '%s' must be 0..65535", where, v);
  memcpy(c->host, h, hl);
  c->host[hl] = '\0';
  /* Addresses only (and localhost): resolving names at start would make the bind depend on
   * DNS, and a typo is better caught here with exit status 2 than as a failed bind. */
  unsigned char addr[16];
  if (strcmp(c->host, "localhost") != 0 && inet_pton(AF_INET, c->host, addr) != 1 &&
      inet_pton(AF_INET6, c->host, addr) != 1)
    return bad(err, "%s: '%s' is not an IPv4 or IPv6 address (or localhost)", where, c->host);
  c->port = (int)port;
  return ECS_OK;
}

/* One source's --trusted-proxy value: comma-separated blocks, added to (or, from a new source,
 * replacing) the list. */
static ecs_status set_cidrs(srv_config *c, const setting *s, const char *v, const char *where,
                            ecs_err *err) {
  char src = strcmp(where, "default") == 0       ? 'd'
             : strncmp(where, "--", 2) == 0      ? 'a'
             : strncmp(where, "ECSNET_", 7) == 0 ? 'e'
                                                 : 'f';
  if (src != c->trusted_src) {
    c->trusted_proxy[0] = '\0';
    c->n_trusted = 0;
    c->trusted_src = src;
  }
  /* "" is no proxy; an empty entry elsewhere ("a,", "a,,b") is a mistake, not "none" */
  for (const char *p = v; *v;) {
    size_t l = strcspn(p, ",");
    if (c->n_trusted >= SRV_MAX_TRUSTED)
      return bad(err, "%s: more than %d proxies", where, SRV_MAX_TRUSTED);
    if (!l) return bad(err, "%s: an empty entry in '%s'", where, v);
    if (!srv_cidr_parse(p, l, &c->trusted[c->n_trusted]))
      return bad(err, "%s: '%.*s' is not an address or CIDR block", where, (int)l, p);
    c->n_trusted++;
    if (!p[l]) break;
    p += l + 1;
  }
  size_t have = strlen(c->trusted_proxy), add = strlen(v);
  if (have + add + 2 > s->size) return bad(err, "%s: value is too long", where);
  snprintf(c->trusted_proxy + have, s->size - have, "%s%s", have && add ? "," : "", v);
  return ECS_OK;
}

static ecs_status set_value(srv_config *c, const setting *s, const char *v, const char *where,
                            ecs_err *err) {
  char *field = (char *)c + s->offset;
  char *end;
  errno = 0;
  switch (s->type) {
  case T_INT:
  case T_I64: {
    while (isspace((unsigned char)*v))
      v++;
    long long x = strtoll(v, &end, 10);
    while (isspace((unsigned char)*end))
      end++;
    if (errno || *end || end == v || *v == '+')
      return bad(err, "%s: '%s' is not an integer", where, v);
    if (x < s->min || x > s->max)
      return bad(err, "%s: %lld is outside %.0f..%.0f", where, x, s->min, s->max);
    if (s->type == T_INT)
      *(int *)field = (int)x;
    else
      *(int64_t *)field = x;
    return ECS_OK;
  }
  case T_DOUBLE: {
    double x = strtod(v, &end);
    if (errno || *end || end == v) return bad(err, "%s: '%s' is not a number", where, v);
    if (!(x >= s->min && x <= s->max))
      return bad(err, "%s: %s is outside %g..%g", where, v, s->min, s->max);
    *(double *)field = x;
    return ECS_OK;
  }
  case T_ENUM: {
    const char *p = s->choices;
    size_t vl = strlen(v);
    while (*p) {
      const char *bar = strchr(p, '|');
      size_t l = bar ? (size_t)(bar - p) : strlen(p);
      if (l == vl && strncmp(p, v, l) == 0) goto ok;
      if (!bar) break;
      p = bar + 1;
    }
    /* cuda:N is the one parameterised choice. */
    if (strcmp(s->name, "device") == 0 && strncmp(v, "cuda:", 5) == 0 && v[5]) {
      long x = strtol(v + 5, &end, 10);
      if (!*end && x >= 0 && x < 64) goto ok;
    }
    return bad(err, "%s: '%s' is not one of %s", where, v, s->choices);
  ok:
    if (vl >= s->size) return bad(err, "%s: '%s' is too long", where, v);
    memcpy(field, v, vl + 1);
    return ECS_OK;
  }
  case T_STRING:
    if (strlen(v) >= s->size)
      return bad(err, "%s: value is longer than %zu bytes", where, s->size - 1);
    memcpy(field, v, strlen(v) + 1);
    return ECS_OK;
  case T_LISTEN:
    if (strlen(v) >= s->size) return bad(err, "%s: value is too long", where);
    if (parse_listen(c, v, where, err) != ECS_OK) return ECS_ERR_INVALID;
    memcpy(field, v, strlen(v) + 1);
    return ECS_OK;
  case T_CIDRS: return set_cidrs(c, s, v, where, err);
  case T_ENGINE: {
    ecs_err e;
    ecs_err_clear(&e);
    if (ecs_backend_option_set((ecs_backend_params *)field, s->name, v, &e) != ECS_OK)
      return bad(err, "%s: %s", where, e.msg);
    return ECS_OK;
  }
  }
  return bad(err, "%s: bad setting type", where);
}

ecs_status srv_config_set(srv_config *c, const char *name, const char *value, const char *where,
                          ecs_err *err) {
  const setting *s = find_setting(name, strlen(name));
  if (!s) return bad(err, "%s: unknown setting '%s'", where, name);
  return set_value(c, s, value, where, err);
}

void srv_config_defaults(srv_config *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < N_SETTINGS; i++) {
    ecs_status st = set_value(c, &k_settings[i], k_settings[i].def, "default", NULL);
    ECS_ASSERT(st == ECS_OK);
  }
}

void srv_config_usage(FILE *out) {
  fprintf(out, "Usage: ecsnet-server [OPTION]...\n"
               "Serves ECS-Net class activation maps and pseudo masks over HTTP.\n\n"
               "Every option is also an environment variable ECSNET_NAME (upper case, '-' to '_')\n"
               "and a 'name value' line of --config FILE; the command line wins over the\n"
               "environment, which wins over the file.\n\n");
  for (size_t i = 0; i < N_SETTINGS; i++) {
    const setting *s = &k_settings[i];
    char left[64];
    char env[48];
    env_name(s->name, env, sizeof env);
    if (s->flags & F_NO_FLAG)
      snprintf(left, sizeof left, "  (%s)", env);
    else
      snprintf(left, sizeof left, "  --%s %s", s->name, s->arg);
    fprintf(out, "%-32s %s", left, s->help);
    if (s->def[0]) fprintf(out, " [%s]", s->def);
    fputc('\n', out);
  }
  fprintf(out,
          "  %-30s %s\n  %-30s %s\n\nExit status: 0 on success, 2 on bad usage, 1 on "
          "failure.\n",
          "--help", "show this help", "--version", "show the version");
}

static void env_name(const char *name, char *out, size_t n) {
  size_t k = snprintf(out, n, "ECSNET_");
  for (const char *p = name; *p && k + 1 < n; p++)
    out[k++] = *p == '-' ? '_' : (char)toupper(*p);
  out[k] = '\0';
}

static const char *env_get(char **envp, const char *key) {
  size_t kl = strlen(key);
  for (char **e = envp; e && *e; e++)
    if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=') return *e + kl + 1;
  return NULL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

static ecs_status load_file(srv_config *c, const char *path, ecs_err *err) {
  FILE *f = fopen(path, "r");
  if (!f) return bad(err, "--config: cannot read '%s': %s", path, strerror(errno));
  char line[2048];
  int lineno = 0;
  ecs_status st = ECS_OK;
  while (st == ECS_OK && fgets(line, sizeof line, f)) {
    lineno++;
    char *s = trim(line);
    if (!*s || *s == '#') continue;
    size_t kl = strcspn(s, " \t=");
    char *v = s + kl;
    if (*v) *v++ = '\0';
    v = trim(v);
    if (*v == '=') v = trim(v + 1);
    size_t vl = strlen(v);
    if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
      v[vl - 1] = '\0';
      v++;
    }
    char where[ECS_PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    if (strcmp(s, "config") == 0)
      st = bad(err, "%s: 'config' cannot be nested", where);
    else
      st = srv_config_set(c, s, v, where, err);
  }
  fclose(f);
  return st;
}

static ecs_status read_token_file(srv_config *c, ecs_err *err) {
  FILE *f = fopen(c->admin_token_file, "r");
  if (!f)
    return bad(err, "--admin-token-file: cannot read '%s': %s", c->admin_token_file,
               strerror(errno));
  char buf[512] = {0};
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  char *t = trim(buf);
  if (got == sizeof buf - 1 || strlen(t) >= sizeof c->admin_token)
    return bad(err, "--admin-token-file: the token is longer than %zu bytes",
               sizeof c->admin_token - 1);
  if (strlen(t) < 16)
    return bad(err, "--admin-token-file: the token is shorter than 16 characters");
  strcpy(c->admin_token, t);
  return ECS_OK;
}

/* A secret of another file setting (Label Studio's token, basic auth credentials), trimmed. */
static ecs_status read_secret(const char *path, const char *flag, char *out, size_t n,
                              ecs_err *err) {
  FILE *f = fopen(path, "r");
  if (!f) return bad(err, "--%s: cannot read '%s': %s", flag, path, strerror(errno));
  char buf[2048] = {0};
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  char *t = trim(buf);
  if (got == sizeof buf - 1 || strlen(t) >= n)
    return bad(err, "--%s: the file holds more than %zu bytes", flag, n - 1);
  if (!*t) return bad(err, "--%s: '%s' is empty", flag, path);
  strcpy(out, t);
  return ECS_OK;
}

static ecs_status check_ls(srv_config *c, ecs_err *err) {
  if (c->ls_token_file[0] &&
      read_secret(c->ls_token_file, "ls-token-file", c->ls_token, sizeof c->ls_token, err))
    return ECS_ERR_INVALID;
  if (c->ls_auth_file[0] &&
      read_secret(c->ls_auth_file, "ls-auth-file", c->ls_auth, sizeof c->ls_auth, err))
    return ECS_ERR_INVALID;
  const char *colon = strchr(c->ls_auth, ':');
  if (c->ls_auth[0] && (!colon || colon == c->ls_auth || strlen(colon + 1) < 8))
    return bad(err, "--ls-auth-file: expected user:password with a password of 8 or more "
                    "characters");
  if (c->ls_url[0] && strncmp(c->ls_url, "http://", 7) != 0 &&
      strncmp(c->ls_url, "https://", 8) != 0)
    return bad(err, "--ls-url: '%s' is not an http:// or https:// URL", c->ls_url);
  return ECS_OK;
}

ecs_status srv_config_load(srv_config *c, int argc, char **argv, char **envp, FILE *out, bool *done,
                           ecs_err *err) {
  *done = false;
  srv_config_defaults(c);
  /* First pass over argv: --help/--version win, and --config must be known before the rest. */
  const char *config_path = env_get(envp, "ECSNET_CONFIG");
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      srv_config_usage(out);
      *done = true;
      return ECS_OK;
    }
    if (strcmp(argv[i], "--version") == 0) {
      fprintf(out, "ecsnet-server %s\n", ecs_version());
      *done = true;
      return ECS_OK;
    }
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      config_path = argv[i + 1];
    else if (strncmp(argv[i], "--config=", 9) == 0)
      config_path = argv[i] + 9;
  }
  if (config_path && *config_path) {
    if (srv_config_set(c, "config", config_path, "--config", err) != ECS_OK ||
        load_file(c, config_path, err) != ECS_OK)
      return ECS_ERR_INVALID;
  }
  for (size_t i = 0; i < N_SETTINGS; i++) {
    char key[64];
    env_name(k_settings[i].name, key, sizeof key);
    const char *v = env_get(envp, key);
    if (v && set_value(c, &k_settings[i], v, key, err) != ECS_OK) return ECS_ERR_INVALID;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) return bad(err, "unexpected argument '%s' (see --help)", a);
    const char *eq = strchr(a + 2, '=');
    size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    const setting *s = find_setting(a + 2, nl);
    if (!s || (s->flags & F_NO_FLAG))
      return bad(err, "unknown option '%.*s' (see --help)", (int)(nl + 2), a);
    const char *v = eq ? eq + 1 : NULL;
    if (!v) {
      if (i + 1 >= argc) return bad(err, "--%s needs a value", s->name);
      v = argv[++i];
    }
    char where[80];
    snprintf(where, sizeof where, "--%s", s->name);
    if (set_value(c, s, v, where, err) != ECS_OK) return ECS_ERR_INVALID;
  }
  /* Cross-field checks and derived values. */
  if (c->threads == 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = cores > 0 ? (int)cores : 1;
  }
  if (c->train_threads > c->threads)
    return bad(err, "--train-threads %d exceeds --threads %d", c->train_threads, c->threads);
  if (c->admin_token_file[0] && read_token_file(c, err) != ECS_OK) return ECS_ERR_INVALID;
  if (c->admin_token[0] && strlen(c->admin_token) < 16)
    return bad(err, "ECSNET_ADMIN_TOKEN: the token is shorter than 16 characters");
  return check_ls(c, err);
}
