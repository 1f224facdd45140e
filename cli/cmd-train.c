/* cmd-train.c - `ecsnet train`: options, the progress bar (a terminal) or plain log lines, the
 * training record saved in the model, and stopping with a checkpoint on a signal. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "ecs/optim.h"
#include "ecs/safetensors.h"
#include "ecs/train.h"

static volatile int g_cancel;
static void on_signal(int sig) {
  (void)sig;
  g_cancel = 1;
}

typedef struct train_ui {
  int tty, quiet;
  int64_t last_line;
  int64_t stop_after; /* stop (with a checkpoint) after this step; 0: never */
  long log_every;     /* plain output: one line per this many steps */
  /* The plain log lines, kept whatever the output mode so the saved model carries its own
   * training record (metadata "train_log"); bounded, the tail is dropped past the cap. */
  char *log;
  size_t log_len, log_cap;
  int log_full;
} train_ui;

#define TRAIN_LOG_MAX (256 * 1024)

static void log_append(train_ui *ui, const char *line) {
  size_t n = strlen(line);
  if (ui->log_full) return;
  if (ui->log_len + n + 1 > TRAIN_LOG_MAX) {
    ui->log_full = 1;
    line = "(log truncated)\n";
    n = strlen(line);
  }
  if (ui->log_len + n + 1 > ui->log_cap) {
    size_t cap = ui->log_cap ? ui->log_cap * 2 : 8192;
    while (cap < ui->log_len + n + 1)
      cap *= 2;
    char *p = realloc(ui->log, cap);
    if (!p) {
      ui->log_full = 1;
      return;
    }
    ui->log = p;
    ui->log_cap = cap;
  }
  memcpy(ui->log + ui->log_len, line, n + 1);
  ui->log_len += n;
}

static void fmt_time(double s, char *buf, size_t n) {
  long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
  if (t >= 3600)
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static int on_progress(void *user, const ecs_train_progress *p) {
  train_ui *ui = user;
  int stop = ui->stop_after > 0 && p->step >= ui->stop_after;
  char eta[32];
  fmt_time(p->eta_s, eta, sizeof eta);
  int plain = p->step == 1 || p->step == p->max_steps || p->step - ui->last_line >= ui->log_every;
  char line[512];
  if (plain) {
    ui->last_line = p->step;
    snprintf(
        line, sizeof line,
        "step %lld/%lld epoch %d phase %s loss %.5f cls %.5f cls_erased %.5f seg %.5f lambda %.3f "
        "phi %lld (fg %lld bg %lld of %lld) lr %.5g img/s %.2f eta %s\n",
        (long long)p->step, (long long)p->max_steps, p->epoch + 1, p->ecs_phase ? "ecs" : "cam",
        p->stats.loss, p->stats.loss_cls, p->stats.loss_cls_erased, p->stats.loss_seg, p->lambda,
        (long long)p->stats.phi, (long long)p->stats.phi_fg, (long long)p->stats.phi_bg,
        (long long)p->stats.cells, p->lr, p->images_per_s, eta);
    log_append(ui, line);
  }
  if (ui->quiet) return stop;
  double phi = p->stats.cells ? 100.0 * (double)p->stats.phi / (double)p->stats.cells : 0;
  if (ui->tty) {
    int width = 24, done = (int)(width * p->step / (p->max_steps ? p->max_steps : 1));
    char bar[32];
    for (int i = 0; i < width; i++)
      bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
    bar[width] = 0;
    printf("\r[%s] %lld/%lld ep %d %s loss %.4f cls %.4f seg %.4f |Phi| %.0f%% lr %.2g %.1f img/s "
           "ETA %s ",
           bar, (long long)p->step, (long long)p->max_steps, p->epoch + 1,
           p->ecs_phase ? "ECS" : "CAM", p->stats.loss, p->stats.loss_cls, p->stats.loss_seg, phi,
           p->lr, p->images_per_s, eta);
    if (p->step == p->max_steps) printf("\n");
    fflush(stdout);
  } else if (plain) {
    fputs(line, stdout);
    fflush(stdout);
  }
  return stop;
}

/* The command line as one shell-quoted string ("ecsnet train ..."), for the model's record. */
static char *command_line(int argc, char **argv) {
  size_t cap = 16;
  for (int i = 1; i < argc; i++)
    cap += 4 * strlen(argv[i]) + 3;
  char *s = malloc(cap), *q = s;
  if (!s) return NULL;
  q += sprintf(q, "ecsnet");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int plain = *a != 0;
    for (const char *c = a; *c; c++)
      if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./,=:+@%", *c))
        plain = 0;
    *q++ = ' ';
    if (plain) {
      q += sprintf(q, "%s", a);
      continue;
    }
    *q++ = '\'';
    for (const char *c = a; *c; c++) {
      if (*c == '\'')
        q += sprintf(q, "'\\''");
      else
        *q++ = *c;
    }
    *q++ = '\'';
  }
  *q = 0;
  return s;
}

/* Saves the model with its training record: the command line and the log. */
static ecs_status save_trained(const ecs_model *m, const char *path, const char *command,
                               const char *log, ecs_err *e) {
  ecs_st_writer *w = ecs_st_writer_new(e);
  if (!w) return e->status;
  ecs_status st = ecs_model_add_to_writer(m, w, e);
  if (st == ECS_OK && command) st = ecs_st_writer_meta(w, "train_command", command, e);
  if (st == ECS_OK && log) st = ecs_st_writer_meta(w, "train_log", log, e);
  if (st == ECS_OK) st = ecs_st_writer_save(w, path, e);
  ecs_st_writer_free(w);
  return st;
}

/* The options of `ecsnet train`, in one table: name, kind, where the value goes, bounds. */
typedef enum { OPT_STR, OPT_FLAG, OPT_INT, OPT_FLOAT } opt_kind;
typedef struct opt {
  const char *name;
  opt_kind kind;
  void *dst; /* const char **, int *, long *, float * */
  double lo, hi;
} opt;

/* Parses argv[2..] against the table; returns 0 or the usage exit status. */
static int parse_opts(int argc, char **argv, const opt *tab, size_t n) {
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *name = argv[a.i], *v;
    const opt *o = NULL;
    for (size_t k = 0; k < n && !o; k++)
      if (strcmp(name, tab[k].name) == 0) o = &tab[k];
    if (!o) return usage("%s: unknown option %s", argv[1], name);
    if (o->kind == OPT_FLAG) {
      *(int *)o->dst = 1;
      continue;
    }
    if (!(v = val(&a))) return usage("%s needs a value", name);
    if (o->kind == OPT_STR)
      *(const char **)o->dst = v;
    else if (o->kind == OPT_INT && !parse_int(v, (long)o->lo, (long)o->hi, (long *)o->dst))
      return usage("%s needs a whole number in %g..%g", name, o->lo, o->hi);
    else if (o->kind == OPT_FLOAT && !parse_float(v, (float)o->lo, (float)o->hi, (float *)o->dst))
      return usage("%s needs a number in %g..%g", name, o->lo, o->hi);
  }
  return 0;
}

int cmd_train(int argc, char **argv) {
  const char *data = NULL, *out = NULL, *init = NULL, *bb = "small", *resize = NULL, *optim = "sgd";
  ecs_train_opts o;
  ecs_train_opts_default(&o);
  o.aug.resize_min = o.aug.resize_max = 0;
  long threads = 0, stop_after = 0, log_every = 10, overlay = -2, epochs = 0, steps = 0, batch = 16,
       crop = 128, seed = 1, every = 0;
  int quiet = 0, no_erase = -1, no_bg = 0, no_overlay = 0, no_phi = 0, cls_erased = 0,
      no_cls_erased = 0, no_flip = 0, no_jitter = 0;
  float lambda = -1, warmup = -1, delta = -1, theta = -1, beta = -1;
  const opt tab[] = {
      {"--data", OPT_STR, &data, 0, 0},
      {"--out", OPT_STR, &out, 0, 0},
      {"--init", OPT_STR, &init, 0, 0},
      {"--backbone", OPT_STR, &bb, 0, 0},
      {"--split", OPT_STR, &o.split, 0, 0},
      {"--checkpoint", OPT_STR, &o.checkpoint, 0, 0},
      {"--resume", OPT_STR, &o.resume, 0, 0},
      {"--resize", OPT_STR, &resize, 0, 0},
      {"--optim", OPT_STR, &optim, 0, 0},
      {"--device", OPT_STR, &g_device, 0, 0},
      {"--no-flip", OPT_FLAG, &no_flip, 0, 0},
      {"--no-jitter", OPT_FLAG, &no_jitter, 0, 0},
      {"--no-erase", OPT_FLAG, &no_erase, 0, 0},
      {"--no-bg-in-phi", OPT_FLAG, &no_bg, 0, 0},
      {"--no-overlay", OPT_FLAG, &no_overlay, 0, 0},
      {"--no-phi-filter", OPT_FLAG, &no_phi, 0, 0},
      {"--cls-on-erased", OPT_FLAG, &cls_erased, 0, 0},
      {"--no-cls-on-erased", OPT_FLAG, &no_cls_erased, 0, 0},
      {"--quiet", OPT_FLAG, &quiet, 0, 0},
      {"--epochs", OPT_INT, &epochs, 1, 100000},
      {"--steps", OPT_INT, &steps, 1, 1e8},
      {"--batch", OPT_INT, &batch, 1, 1024},
      {"--crop", OPT_INT, &crop, 8, 4096},
      {"--seed", OPT_INT, &seed, 0, 0x7fffffff},
      {"--checkpoint-every", OPT_INT, &every, 1, 1e8},
      {"--threads", OPT_INT, &threads, 1, 1024},
      {"--log-every", OPT_INT, &log_every, 1, 1e8},
      {"--stop-after", OPT_INT, &stop_after, 1, 1e8},
      {"--overlay", OPT_INT, &overlay, 0, ECS_MAX_RATES},
      {"--lr", OPT_FLOAT, &o.lr, 1e-9, 10},
      {"--lambda", OPT_FLOAT, &lambda, 0, 100},
      {"--warmup", OPT_FLOAT, &warmup, 0, 1},
      {"--delta", OPT_FLOAT, &delta, 0.01, 0.99},
      {"--theta", OPT_FLOAT, &theta, 0.01, 0.99},
      {"--beta", OPT_FLOAT, &beta, 0.1, 1},
  };
  int rc_usage = parse_opts(argc, argv, tab, sizeof tab / sizeof tab[0]);
  if (rc_usage) return rc_usage;
  o.epochs = (int)epochs;
  o.max_steps = steps;
  o.batch = (int)batch;
  o.aug.crop = (int)crop;
  o.seed = (uint64_t)seed;
  o.checkpoint_every = (int)every;
  if (no_flip) o.aug.flip = 0;
  if (no_jitter) o.aug.brightness = o.aug.contrast = o.aug.saturation = o.aug.hue = 0;
  if (resize) {
    const char *comma = strchr(resize, ',');
    long mn, mx;
    char lo[32];
    snprintf(lo, sizeof lo, "%.*s", comma ? (int)(comma - resize) : 0, resize);
    if (!comma || !parse_int(lo, 8, 8192, &mn) || !parse_int(comma + 1, mn, 8192, &mx))
      return usage("--resize needs MIN,MAX long sides in pixels");
    o.aug.resize_min = (int)mn;
    o.aug.resize_max = (int)mx;
  }
  if (strcmp(optim, "adam") == 0)
    o.optimizer = ECS_OPTIM_ADAM;
  else if (strcmp(optim, "sgd") != 0)
    return usage("--optim takes sgd or adam, not '%s'", optim);
  if (!data) return usage("train needs --data DIR");
  if (!out) return usage("train needs --out MODEL");
  if (o.resume && init) return usage("--resume and --init exclude each other");
  if (cls_erased && no_cls_erased)
    return usage("--cls-on-erased and --no-cls-on-erased exclude each other");
  ecs_backbone b;
  ecs_err e = {0};
  if (ecs_backbone_parse(bb, &b, &e) != ECS_OK) return usage("%s", e.msg);
  if (g_device && !device_name_ok(g_device))
    return usage("--device needs auto, cpu, cuda or cuda:N");
  if (!o.max_steps && !o.epochs) o.epochs = 8;

  ecs_device *dev = cli_device(&e);
  if (!dev) return failure(&e);
  ecs_dataset *ds = ecs_dataset_open(data, &e);
  if (!ds) return failure(&e);
  ecs_model *m = NULL;
  if (o.resume || init) {
    m = ecs_model_load(o.resume ? o.resume : init, ecs_device_buffer_type(dev), &e);
  } else {
    m = ecs_model_for_dataset(ds, b, NULL, ecs_device_buffer_type(dev), o.seed, &e);
  }
  if (!m) {
    ecs_dataset_free(ds);
    return failure(&e);
  }
  if (!o.resume) { /* a resumed run keeps the checkpoint's settings */
    ecs_model_config *c = ecs_model_config_mut(m);
    if (warmup >= 0) c->hp.warmup = warmup;
    if (delta > 0) c->hp.delta = delta;
    if (theta > 0) c->hp.theta = theta;
    if (beta > 0) c->hp.beta = beta;
    if (overlay >= 0) c->hp.overlay_k = (int)overlay;
    if (no_erase > 0) c->hp.no_erase = 1;
    if (no_bg) c->hp.bg_in_phi = 0;
    if (no_overlay) c->hp.no_overlay = 1;
    if (no_phi) c->hp.no_phi_filter = 1;
    if (cls_erased) c->hp.cls_on_erased = 1;
    if (no_cls_erased) c->hp.cls_on_erased = 0;
    if (lambda >= 0) c->hp.lambda = lambda;
    snprintf(c->provenance, sizeof c->provenance,
             "trained by ecsnet %s on %s (split %s, seed %llu%s%s)", ecs_version(), data, o.split,
             (unsigned long long)o.seed, init ? ", from " : "", init ? init : "");
  }
  ecs_backend *be = NULL;
  ecs_ctx *ctx = make_ctx(dev, (int)threads, &be, &e);
  int rc = 1;
  if (ctx) {
    train_ui ui = {.tty = isatty(STDOUT_FILENO),
                   .quiet = quiet,
                   .stop_after = stop_after,
                   .log_every = log_every};
    o.progress = on_progress;
    o.user = &ui;
    o.cancel = &g_cancel;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ecs_status st = ecs_train(m, ctx, ds, &o, &e);
    if (ui.tty && !quiet) printf("\n");
    char *cmd = command_line(argc, argv);
    if (st == ECS_OK) st = save_trained(m, out, cmd, ui.log, &e);
    free(cmd);
    free(ui.log);
    if (st == ECS_OK) {
      printf("saved %s\n", out);
      rc = 0;
    } else if (st == ECS_ERR_CANCELLED && stop_after > 0 && !g_cancel && o.checkpoint) {
      printf("stopped after step %ld; resume with --resume %s\n", stop_after, o.checkpoint);
      rc = 0;
    } else if (st == ECS_ERR_CANCELLED && o.checkpoint) {
      fprintf(stderr, "ecsnet: %s; resume with --resume %s\n", e.msg, o.checkpoint);
    } else {
      failure(&e);
    }
  } else {
    failure(&e);
  }
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_model_free(m);
  ecs_dataset_free(ds);
  return rc;
}
