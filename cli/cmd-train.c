/* cmd-train.c - `ecsnet train`: options, the progress bar (a terminal) or plain log lines, the
 * training record saved in the model, and stopping with a checkpoint on a signal. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "ecs/hparams.h"
#include "ecs/optim.h"
#include "ecs/path.h"
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
    /* paths as ecs_path_public has them (never the machine's directories); --opt=PATH too */
    char pub[ECS_PATH_MAX + 64];
    const char *a = argv[i], *eq = strchr(a, '=');
    if (a[0] == '/')
      a = ecs_path_public(a, pub, sizeof pub);
    else if (a[0] == '-' && eq && eq[1] == '/') {
      int k = snprintf(pub, sizeof pub, "%.*s", (int)(eq + 1 - a), a);
      if (k > 0 && (size_t)k < sizeof pub) ecs_path_public(eq + 1, pub + k, sizeof pub - (size_t)k);
      a = pub;
    }
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

/* The options of `ecsnet train` that are not hyper-parameters; those come from the table of
 * ecs/hparams.h (train_help lists both). */
typedef enum { OPT_STR, OPT_FLAG, OPT_INT } opt_kind;
typedef struct opt {
  const char *name;
  opt_kind kind;
  void *dst; /* const char **, int *, long * */
  long lo, hi;
  const char *arg, *doc;
} opt;

typedef struct train_args {
  const char *data, *out, *init, *bb, *resize;
  long threads, stop_after, log_every;
  int quiet, no_flip, no_jitter;
  ecs_hparams hp;            /* the model values given, where given[] says so */
  int given[ECS_HPARAM_MAX]; /* per row: 0 not given, 1 given (a boolean: true), 2 false */
} train_args;

#define N_OPTS 15
static void local_opts(opt tab[N_OPTS], train_args *t, ecs_train_opts *o) {
  const opt k[N_OPTS] = {
      {"--data", OPT_STR, &t->data, 0, 0, "DIR", "the dataset, VOC layout (required)"},
      {"--out", OPT_STR, &t->out, 0, 0, "MODEL", "the trained model file (required)"},
      {"--init", OPT_STR, &t->init, 0, 0, "MODEL", "start from this model's weights and values"},
      {"--backbone", OPT_STR, &t->bb, 0, 0, "NAME", "small (default), resnet38d or vgg16d"},
      {"--split", OPT_STR, &o->split, 0, 0, "S", "the split trained on (default train)"},
      {"--checkpoint", OPT_STR, &o->checkpoint, 0, 0, "FILE", "checkpoints go here"},
      {"--resume", OPT_STR, &o->resume, 0, 0, "FILE", "continue from this checkpoint"},
      {"--resize", OPT_STR, &t->resize, 0, 0, "MIN,MAX", "random long side (default off)"},
      {"--device", OPT_STR, &g_device, 0, 0, "DEV", "cpu (default), auto, cuda or cuda:N"},
      {"--no-flip", OPT_FLAG, &t->no_flip, 0, 0, "", "no random horizontal flips"},
      {"--no-jitter", OPT_FLAG, &t->no_jitter, 0, 0, "", "no colour jitter"},
      {"--quiet", OPT_FLAG, &t->quiet, 0, 0, "", "no progress output"},
      {"--threads", OPT_INT, &t->threads, 1, 1024, "N", "compute threads"},
      {"--log-every", OPT_INT, &t->log_every, 1, 100000000, "N", "steps between log lines"},
      {"--stop-after", OPT_INT, &t->stop_after, 1, 100000000, "N", "stop with a checkpoint"},
  };
  memcpy(tab, k, sizeof k);
}

/* One hyper-parameter flag: --FLAG VALUE, or a boolean's --FLAG, --no-FLAG or
 * --FLAG=true|false. Returns 0, the usage exit status, or -1 when name is not one. */
static int hparam_opt(args *a, const char *name, train_args *t, ecs_train_opts *o) {
  size_t n;
  char flag[64];
  const char *eq = strchr(name, '=');
  snprintf(flag, sizeof flag, "%.*s", eq ? (int)(eq - name - 2) : 60, name + 2);
  const ecs_hparam *tab = ecs_hparam_table(&n), *p = ecs_hparam_by_flag(flag);
  const char *v = eq ? eq + 1 : "true";
  if (p && eq && p->kind != ECS_HP_BOOL) p = NULL;
  if (!p && !eq && strncmp(flag, "no-", 3) == 0) { /* --no-FLAG of a boolean FLAG */
    p = ecs_hparam_by_flag(flag + 3);
    if (p && (p->kind != ECS_HP_BOOL || strncmp(p->flag, "no-", 3) == 0)) p = NULL;
    v = "false";
  }
  if (!p) return -1;
  if (p->kind != ECS_HP_BOOL && !(v = val(a))) return usage("%s needs a value", name);
  size_t i = (size_t)(p - tab);
  void *dst = ecs_hparam_ptr(p, &t->hp, o);
  char want[160];
  ecs_hparam_expect(p, want, sizeof want);
  if (ecs_hparam_set(p, dst, v, 0, NULL) != ECS_OK) return usage("--%s needs %s", p->flag, want);
  int g = p->kind == ECS_HP_BOOL ? 1 + !*(const int *)dst : 1;
  if (p->kind == ECS_HP_BOOL && t->given[i] && t->given[i] != g)
    return usage("--%s is given both true and false", p->flag);
  t->given[i] = g;
  return 0;
}

/* Parses argv[2..]; returns 0 or the usage exit status. */
static int parse_train_args(int argc, char **argv, train_args *t, ecs_train_opts *o) {
  opt tab[N_OPTS];
  local_opts(tab, t, o);
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *name = argv[a.i], *v;
    const opt *op = NULL;
    for (size_t k = 0; k < N_OPTS && !op; k++)
      if (strcmp(name, tab[k].name) == 0) op = &tab[k];
    if (!op) {
      int rc = strncmp(name, "--", 2) == 0 ? hparam_opt(&a, name, t, o) : -1;
      if (rc < 0) return usage("%s: unknown option %s", argv[1], name);
      if (rc) return rc;
      continue;
    }
    if (op->kind == OPT_FLAG) {
      *(int *)op->dst = 1;
      continue;
    }
    if (!(v = val(&a))) return usage("%s needs a value", name);
    if (op->kind == OPT_STR)
      *(const char **)op->dst = v;
    else if (!parse_int(v, op->lo, op->hi, (long *)op->dst))
      return usage("%s needs a whole number in %ld..%ld", name, op->lo, op->hi);
  }
  return 0;
}

void cmd_train_help(void) {
  opt tab[N_OPTS];
  train_args t;
  ecs_train_opts o;
  local_opts(tab, &t, &o);
  printf("usage: ecsnet train --data DIR --out MODEL [options]\n"
         "(a switch also takes --FLAG=true or --FLAG=false)\n");
  for (size_t k = 0; k < N_OPTS; k++) {
    char left[64];
    snprintf(left, sizeof left, "%s %s", tab[k].name, tab[k].arg);
    printf("  %-28s %s\n", left, tab[k].doc);
  }
  size_t n;
  const ecs_hparam *h = ecs_hparam_table(&n);
  for (int scope = ECS_HP_MODEL; scope <= ECS_HP_RUN; scope++) {
    printf(scope == ECS_HP_MODEL ? "ECS-Net's hyper-parameters (stored in the model file):\n"
                                 : "the training run:\n");
    for (size_t i = 0; i < n; i++) {
      const ecs_hparam *p = &h[i];
      if ((int)p->scope != scope) continue;
      char left[64], want[160];
      const char *arg = p->kind == ECS_HP_FLOAT ? "F" : p->kind == ECS_HP_RATES ? "R,R,.." : "N";
      if (p->kind == ECS_HP_BOOL && strncmp(p->flag, "no-", 3) != 0)
        snprintf(left, sizeof left, "--%s, --no-%s", p->flag, p->flag);
      else if (p->kind == ECS_HP_BOOL)
        snprintf(left, sizeof left, "--%s", p->flag);
      else
        snprintf(left, sizeof left, "--%s %s", p->flag, p->kind == ECS_HP_ENUM ? "sgd|adam" : arg);
      ecs_hparam_expect(p, want, sizeof want);
      printf("  %-28s %s\n  %-28s   default %s; %s\n", left, p->doc, "",
             p->auto_doc ? p->auto_doc : p->dflt, want);
    }
  }
}

/* The model values given on the command line, over those of the new or --init model. */
static void apply_given(const train_args *t, ecs_hparams *hp) {
  size_t n;
  const ecs_hparam *tab = ecs_hparam_table(&n);
  for (size_t i = 0; i < n; i++) {
    if (!t->given[i] || tab[i].scope != ECS_HP_MODEL) continue;
    char text[64];
    ecs_hparam_format(&tab[i], ecs_hparam_cptr(&tab[i], &t->hp, NULL), text, sizeof text);
    ecs_hparam_set(&tab[i], ecs_hparam_ptr(&tab[i], hp, NULL), text, 0, NULL);
  }
}

/* What parse_train_args leaves to check: the augmentation switches, --resize, the required
 * options and the combinations; 0 or the usage exit status. */
static int finish_args(const train_args *t, ecs_train_opts *o) {
  if (t->no_flip) o->aug.flip = 0;
  if (t->no_jitter) o->aug.brightness = o->aug.contrast = o->aug.saturation = o->aug.hue = 0;
  if (t->resize) {
    const char *resize = t->resize, *comma = strchr(resize, ',');
    long mn, mx;
    char lo[32];
    snprintf(lo, sizeof lo, "%.*s", comma ? (int)(comma - resize) : 0, resize);
    if (!comma || !parse_int(lo, 8, 8192, &mn) || !parse_int(comma + 1, mn, 8192, &mx))
      return usage("--resize needs MIN,MAX long sides in pixels");
    o->aug.resize_min = (int)mn;
    o->aug.resize_max = (int)mx;
  }
  if (!t->data) return usage("train needs --data DIR");
  if (!t->out) return usage("train needs --out MODEL");
  if (o->resume && t->init) return usage("--resume and --init exclude each other");
  if (g_device && !device_name_ok(g_device))
    return usage("--device needs auto, cpu, cuda or cuda:N");
  return 0;
}

/* Trains m and saves it with its record; the exit status. */
static int run_training(ecs_model *m, ecs_ctx *ctx, ecs_dataset *ds, ecs_train_opts *o,
                        const train_args *t, int argc, char **argv, ecs_err *e) {
  train_ui ui = {.tty = isatty(STDOUT_FILENO),
                 .quiet = t->quiet,
                 .stop_after = t->stop_after,
                 .log_every = t->log_every};
  o->progress = on_progress;
  o->user = &ui;
  o->cancel = &g_cancel;
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  ecs_status st = ecs_train(m, ctx, ds, o, e);
  if (ui.tty && !t->quiet) printf("\n");
  char *cmd = command_line(argc, argv);
  if (st == ECS_OK) st = save_trained(m, t->out, cmd, ui.log, e);
  free(cmd);
  free(ui.log);
  if (st == ECS_OK) {
    printf("saved %s\n", t->out);
    return 0;
  }
  if (st == ECS_ERR_CANCELLED && t->stop_after > 0 && !g_cancel && o->checkpoint) {
    printf("stopped after step %ld; resume with --resume %s\n", t->stop_after, o->checkpoint);
    return 0;
  }
  if (st == ECS_ERR_CANCELLED && o->checkpoint)
    fprintf(stderr, "ecsnet: %s; resume with --resume %s\n", e->msg, o->checkpoint);
  else
    failure(e);
  return 1;
}

int cmd_train(int argc, char **argv) {
  ecs_train_opts o;
  ecs_train_opts_default(&o);
  train_args t = {.bb = "small", .log_every = 10};
  ecs_hparams_default(&t.hp);
  int rc = parse_train_args(argc, argv, &t, &o);
  if (!rc) rc = finish_args(&t, &o);
  if (rc) return rc;
  ecs_backbone b;
  ecs_err e = {0};
  if (ecs_backbone_parse(t.bb, &b, &e) != ECS_OK) return usage("%s", e.msg);

  ecs_device *dev = cli_device(&e);
  if (!dev) return failure(&e);
  ecs_dataset *ds = ecs_dataset_open(t.data, &e);
  if (!ds) return failure(&e);
  ecs_model *m = NULL;
  if (o.resume || t.init)
    m = ecs_model_load(o.resume ? o.resume : t.init, ecs_device_buffer_type(dev), &e);
  else
    m = ecs_model_for_dataset(ds, b, NULL, ecs_device_buffer_type(dev), o.seed, &e);
  if (m && t.init && !ecs_model_has_classes_of(m, ds)) {
    /* fine-tuning onto the dataset's classes: the base's weights, a new classifier */
    ecs_model *base = m;
    m = ecs_model_for_dataset(ds, ecs_model_get_config(base)->backbone, base,
                              ecs_device_buffer_type(dev), o.seed, &e);
    if (m && !t.quiet)
      printf("the dataset's %d classes differ from %s's %d: the classifier (fc8) starts afresh, "
             "the other weights come from %s\n",
             ecs_dataset_n_classes(ds), t.init, ecs_model_get_config(base)->n_classes, t.init);
    ecs_model_free(base);
  }
  if (!m) {
    ecs_dataset_free(ds);
    return failure(&e);
  }
  if (!o.resume) { /* a resumed run keeps the checkpoint's settings */
    ecs_model_config *c = ecs_model_config_mut(m);
    apply_given(&t, &c->hp);
    char data[ECS_PATH_MAX], init[ECS_PATH_MAX];
    snprintf(c->provenance, sizeof c->provenance,
             "trained by ecsnet %s on %s (split %s, seed %llu%s%s)", ecs_version(),
             ecs_path_public(t.data, data, sizeof data), o.split, (unsigned long long)o.seed,
             t.init ? ", from " : "", t.init ? ecs_path_public(t.init, init, sizeof init) : "");
  }
  ecs_backend *be = NULL;
  ecs_ctx *ctx = make_ctx(dev, (int)t.threads, &be, &e);
  rc = ctx ? run_training(m, ctx, ds, &o, &t, argc, argv, &e) : failure(&e);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_model_free(m);
  ecs_dataset_free(ds);
  return rc;
}
