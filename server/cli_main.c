/* cli_main.c - `ecsnet`, the command line for local work.
 *
 *   ecsnet cam IMAGE --model MODEL [--labels a,b] --out DIR [--float] [--scales 1,0.5] [--flip]
 *   ecsnet train --data DIR --out MODEL [options]      (ecsnet train --help)
 *   ecsnet eval --data DIR --model MODEL [--split S] [--max-images N] [--json] [--write-alpha]
 *   ecsnet synth --out DIR --count N --seed S [--size PX] [--classes K]
 *   ecsnet info MODEL
 *
 * Exit status: 0 success, 2 bad usage, 1 failure; errors are one line on stderr. MODEL
 * defaults to $ECSNET_MODEL. The environment is read here, at the edge, and passed in: the
 * engine options (ECSNET_WINOGRAD, ECSNET_FUSE, ... as ecsnet-server takes them, ecs/options.h)
 * into every backend, ECSNET_SHIPPED_MODEL into the shipped-model lookup. */
#include "ecs/ecsnet.h"
#include "ecs/eval.h"
#include "ecs/image.h"
#include "ecs/optim.h"
#include "ecs/options.h"
#include "ecs/safetensors.h"
#include "ecs/synth.h"
#include "ecs/train.h"
#include "registry.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USAGE_EXIT 2

static int usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ecsnet: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (see ecsnet --help)\n", stderr);
  va_end(ap);
  return USAGE_EXIT;
}

static int failure(const ecs_err *e) {
  fprintf(stderr, "ecsnet: %s\n", e->msg[0] ? e->msg : ecs_status_str(e->status));
  return 1;
}

static const char *g_help =
    "usage: ecsnet COMMAND ...\n"
    "  cam IMAGE --out DIR [--model MODEL] [--labels a,b] [--float] [--scales 1,0.5] [--flip]\n"
    "      [--threads N] [--device DEV]   CAMs, erased CAMs and masks of one image as PNGs\n"
    "  train --data DIR --out MODEL [--backbone small|resnet38d|vgg16d] [--init MODEL]\n"
    "      [--epochs N | --steps N] [--batch N] [--lr F] [--optim sgd|adam] [--crop PX]\n"
    "      [--resize MIN,MAX]\n"
    "      [--no-flip] [--no-jitter] [--seed N] [--split S] [--checkpoint FILE]\n"
    "      [--checkpoint-every N] [--resume CHECKPOINT] [--stop-after N] [--threads N]\n"
    "      [--device DEV]\n"
    "      [--log-every N] [--warmup F] [--no-erase]\n"
    "      [--delta F] [--theta F] [--beta F] [--lambda F] [--overlay K] [--no-overlay]\n"
    "      [--no-bg-in-phi] [--no-phi-filter] [--no-cls-on-erased] [--quiet]\n"
    "  eval --data DIR [--model MODEL] [--split S] [--max-images N] [--scales ..] [--flip]\n"
    "      [--json] [--write-alpha] [--device DEV]\n"
    "      (--write-alpha stores the best CAM alpha_bg in MODEL)\n"
    "  synth --out DIR --count N [--seed S] [--size PX] [--classes K]\n"
    "  info MODEL\n"
    "MODEL defaults to $ECSNET_MODEL, else the shipped model ($ECSNET_SHIPPED_MODEL, else\n"
    "models/ beside the program). DEV is cpu (the default; also $ECSNET_DEVICE), auto, cuda or\n"
    "cuda:N; the CUDA backend module is looked for beside the program, or in\n"
    "$ECSNET_BACKEND_PATH. The engine options are ecsnet-server's, from the environment:\n"
    "ECSNET_WINOGRAD auto|off|2|4, ECSNET_DNNL_PHASES auto|off|N, ECSNET_DNNL_PACK auto|off|N,\n"
    "ECSNET_FUSE auto|off, ECSNET_TF32 on|off, ECSNET_CUDA_WORKSPACE_MB N.\n"
    "Exit status: 0 ok, 1 failure, 2 bad usage.\n";

/* ---- small parsing helpers ---------------------------------------------------------------- */
static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

static int parse_float(const char *s, float lo, float hi, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return 0;
  *out = v;
  return 1;
}

static int parse_scales(const char *s, float *out, int *n) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  *n = 0;
  for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (*n >= ECS_MAX_SCALES || !parse_float(t, 0.25f, 2.0f, &out[*n])) return 0;
    (*n)++;
  }
  return *n > 0;
}

typedef struct args {
  int argc;
  char **argv;
  int i;
} args;

/* The value of option argv[i] (moving past it), or NULL when it has none. */
static const char *val(args *a) {
  if (a->i + 1 >= a->argc) return NULL;
  return a->argv[++a->i];
}

/* What the commands take from the environment, read once by read_environment. */
static ecs_backend_params g_engine; /* the engine options of every backend */
static const char *g_shipped;       /* ECSNET_SHIPPED_MODEL; NULL: models/ beside the program */
static const char *g_env_device;    /* ECSNET_DEVICE */

static int read_environment(void) {
  size_t n;
  const ecs_backend_option *o = ecs_backend_options(&n);
  for (size_t i = 0; i < n; i++) {
    const char *v = getenv(o[i].env);
    ecs_err e;
    ecs_err_clear(&e);
    if (v && ecs_backend_option_set(&g_engine, o[i].name, v, &e) != ECS_OK)
      return usage("%s: %s", o[i].env, e.msg);
  }
  g_shipped = getenv("ECSNET_SHIPPED_MODEL");
  g_env_device = getenv("ECSNET_DEVICE");
  return 0;
}

/* --device of cam, train and eval, else $ECSNET_DEVICE, else cpu: the device is found before
 * the model loads, into its memory, so a device that cannot be used fails at once, one line. */
static const char *g_device;

static int device_name_ok(const char *s) {
  long n;
  return !strcmp(s, "auto") || !strcmp(s, "cpu") || !strcmp(s, "cpu-ref") || !strcmp(s, "cuda") ||
         (!strncmp(s, "cuda:", 5) && parse_int(s + 5, 0, 63, &n));
}

static ecs_device *cli_device(ecs_err *e) {
  const char *d = g_device ? g_device : g_env_device;
  return ecs_device_find(d && *d ? d : "cpu", e);
}

static ecs_ctx *make_ctx(ecs_device *d, int threads, ecs_backend **be, ecs_err *e) {
  ecs_backend_params p = g_engine;
  p.n_threads = threads;
  *be = ecs_backend_init(d, &p, e);
  return *be ? ecs_ctx_new(*be, e) : NULL;
}

/* ---- ecsnet info ---------------------------------------------------------------------------- */
static int cmd_info(int argc, char **argv) {
  if (argc != 3) return usage("info takes one MODEL file");
  ecs_err e = {0};
  ecs_model *m = ecs_model_load(argv[2], NULL, &e);
  if (!m) return failure(&e);
  const ecs_model_config *c = ecs_model_get_config(m);
  ecs_params *ps = ecs_model_params(m);
  int64_t n = 0, tr = 0;
  for (size_t i = 0; i < ecs_params_count(ps); i++) {
    ecs_tensor *t = ecs_params_at(ps, i);
    n += ecs_nelements(t);
    if (!t->frozen) tr += ecs_nelements(t);
  }
  const ecs_hparams *h = &c->hp;
  printf("model:          %s\n", argv[2]);
  printf("backbone:       %s (output stride 8)\n", ecs_backbone_name(c->backbone));
  printf("normalisation:  %s\n", ecs_norm_name(c->norm));
  printf("classes:        %d:", c->n_classes);
  for (int k = 0; k < c->n_classes; k++)
    printf(" %s", c->class_names[k]);
  printf("\nparameters:     %lld (%lld trainable)\n", (long long)n, (long long)tr);
  printf("alpha_bg:       %g\n", c->alpha_bg);
  printf("label threshold %g\n", c->label_threshold);
  printf("ecs:            beta %g%s delta %g theta %g sigma %g lambda %g (ramp %g) warmup %g\n",
         h->beta, h->beta <= 0 ? " (auto)" : "", h->delta, h->theta, h->sigma_factor, h->lambda,
         h->lambda_ramp, h->warmup);
  printf("overlay:        K %d%s rates %d,%d,%d,%d\n", h->overlay_k,
         h->overlay_k < 0 ? " (auto)" : "", h->overlay_rates[0], h->overlay_rates[1],
         h->overlay_rates[2], h->overlay_rates[3]);
  printf(
      "switches:       bg_in_phi %d cls_on_erased %d no_erase %d no_overlay %d no_phi_filter %d\n",
      h->bg_in_phi, h->cls_on_erased, h->no_erase, h->no_overlay, h->no_phi_filter);
  printf("bg channel:     %s\n",
         c->bg_channel_added ? "added by the converter (zero-initialised)" : "trained");
  printf("provenance:     %s\n", c->provenance);
  /* the training record, where the file has one: the command, where alpha_bg came from and the
   * last line of the log (the whole log: any safetensors reader, key train_log) */
  ecs_st_file *f = ecs_st_open(argv[2], NULL);
  const char *v;
  if (f && (v = ecs_st_meta(f, "train_command"))) printf("trained with:   %s\n", v);
  if (f && (v = ecs_st_meta(f, "alpha_bg_source"))) printf("alpha_bg from:  %s\n", v);
  if (f && (v = ecs_st_meta(f, "train_log")) && *v) {
    size_t len = strlen(v);
    while (len > 0 && v[len - 1] == '\n')
      len--;
    size_t b = len;
    while (b > 0 && v[b - 1] != '\n')
      b--;
    printf("last log line:  %.*s\n", (int)(len - b), v + b);
  }
  ecs_st_close(f);
  ecs_model_free(m);
  return 0;
}

/* ---- ecsnet cam ----------------------------------------------------------------------------- */
static int write_grey(const char *dir, const char *name, const float *v, const uint8_t *u, int h,
                      int w, ecs_err *e) {
  ecs_image *img = ecs_image_new(w, h, 1, e);
  if (!img) return 0;
  for (size_t p = 0; p < (size_t)h * w; p++)
    img->data[p] = v ? (uint8_t)(v[p] * 255.0f + 0.5f) : (uint8_t)(u[p] ? 255 : 0);
  char path[4200];
  snprintf(path, sizeof path, "%s/%s.png", dir, name);
  int ok = ecs_image_write(path, img, 0, e) == ECS_OK;
  ecs_image_free(img);
  return ok;
}

static int write_mask(const char *dir, const char *name, const uint8_t *m, int h, int w,
                      ecs_err *e) {
  uint8_t pal[256][3], *png;
  size_t n;
  ecs_voc_palette(pal);
  if (ecs_png_encode_palette(m, w, h, (const uint8_t(*)[3])pal, 256, &png, &n, e) != ECS_OK)
    return 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/%s.png", dir, name);
  int ok = ecs_file_write(path, png, n, e) == ECS_OK;
  free(png);
  return ok;
}

/* The model the program ships with, as the server finds it (api/registry.h), for commands
 * given no --model: the same default for the CLI and the server. */
static const char *shipped_model(void) {
  static char path[4096];
  return api_shipped_model_path(g_shipped, path, sizeof path) ? path : NULL;
}

static int cmd_cam(int argc, char **argv) {
  const char *image = NULL, *model = getenv("ECSNET_MODEL"), *labels = NULL, *out = NULL;
  int want_float = 0;
  long threads = 0;
  ecs_infer_opts o = {.want_erased = 1};
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *o_ = argv[a.i], *v;
    if (strcmp(o_, "--model") == 0) {
      if (!(model = val(&a))) return usage("--model needs a file");
    } else if (strcmp(o_, "--labels") == 0) {
      if (!(labels = val(&a))) return usage("--labels needs class names");
    } else if (strcmp(o_, "--out") == 0) {
      if (!(out = val(&a))) return usage("--out needs a folder");
    } else if (strcmp(o_, "--float") == 0) {
      want_float = 1;
    } else if (strcmp(o_, "--flip") == 0) {
      o.flip = 1;
    } else if (strcmp(o_, "--scales") == 0) {
      if (!(v = val(&a)) || !parse_scales(v, o.scales, &o.n_scales))
        return usage("--scales needs up to %d numbers in 0.25..2, comma separated", ECS_MAX_SCALES);
    } else if (strcmp(o_, "--threads") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 1024, &threads))
        return usage("--threads needs 1..1024");
    } else if (strcmp(o_, "--device") == 0) {
      if (!(g_device = val(&a)) || !device_name_ok(g_device))
        return usage("--device needs auto, cpu, cuda or cuda:N");
    } else if (o_[0] == '-') {
      return usage("cam: unknown option %s", o_);
    } else if (!image) {
      image = o_;
    } else {
      return usage("cam takes one IMAGE");
    }
  }
  if (!image) return usage("cam needs an IMAGE");
  if (!out) return usage("cam needs --out DIR");
  if ((!model || !*model) && !(model = shipped_model()))
    return usage("cam needs --model MODEL (or $ECSNET_MODEL; no shipped model was found)");
  ecs_err e = {0};
  ecs_device *dev = cli_device(&e);
  if (!dev) return failure(&e);
  ecs_model *m = ecs_model_load(model, ecs_device_buffer_type(dev), &e);
  if (m && ecs_model_fold_bn(m, &e) != ECS_OK) ecs_model_free(m), m = NULL;
  if (!m) return failure(&e);
  int ids[ECS_MAX_CLASSES], n_ids = 0, rc = 1;
  const ecs_model_config *c = ecs_model_get_config(m);
  if (labels) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", labels);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      long id;
      int k = ecs_model_class_id(m, t);
      if (!k && parse_int(t, 1, c->n_classes, &id)) k = (int)id;
      if (!k) {
        fprintf(stderr, "ecsnet: unknown label '%s' (the model's classes:", t);
        for (int j = 0; j < c->n_classes; j++)
          fprintf(stderr, " %s", c->class_names[j]);
        fprintf(stderr, ")\n");
        ecs_model_free(m);
        return USAGE_EXIT;
      }
      if (n_ids < ECS_MAX_CLASSES) ids[n_ids++] = k;
    }
    o.labels = ids;
    o.n_labels = n_ids;
  }
  ecs_image *img = NULL;
  ecs_backend *be = NULL;
  ecs_ctx *ctx = NULL;
  ecs_cam_result *r = NULL;
  if (ecs_image_read(image, 0, 0, &img, &e) != ECS_OK) goto done;
  if (mkdir(out, 0777) != 0 && errno != EEXIST) {
    ecs_err_set(&e, ECS_ERR_IO, "%s: cannot create the folder: %s", out, strerror(errno));
    goto done;
  }
  if (!(ctx = make_ctx(dev, (int)threads, &be, &e))) goto done;
  if (ecs_model_infer(m, ctx, img->data, img->height, img->width, &o, &r, &e) != ECS_OK) goto done;
  int h = r->h, w = r->w;
  size_t hw = (size_t)h * w;
  char name[128], path[4200];
  for (int i = 0; i < r->n_labels; i++) {
    const char *cn = c->class_names[r->labels[i] - 1];
    snprintf(name, sizeof name, "cam_%s", cn);
    if (!write_grey(out, name, r->cams + i * hw, NULL, h, w, &e)) goto done;
    snprintf(name, sizeof name, "erased_cam_%s", cn);
    if (!write_grey(out, name, r->erased_cams + i * hw, NULL, h, w, &e)) goto done;
  }
  if (!write_mask(out, "mask", r->mask, h, w, &e) ||
      !write_mask(out, "cam_mask", r->cam_mask, h, w, &e) ||
      !write_mask(out, "ecs_mask", r->ecs_mask, h, w, &e) ||
      !write_mask(out, "head_mask", r->head_mask, h, w, &e) ||
      !write_grey(out, "erase_region", NULL, r->erase_region, h, w, &e))
    goto done;
  ecs_image er = {.width = w, .height = h, .channels = 3, .data = r->erased_image};
  snprintf(path, sizeof path, "%s/erased_image.png", out);
  if (ecs_image_write(path, &er, 0, &e) != ECS_OK) goto done;
  snprintf(path, sizeof path, "%s/scores.txt", out);
  FILE *f = fopen(path, "w");
  if (!f) {
    ecs_err_set(&e, ECS_ERR_IO, "%s: %s", path, strerror(errno));
    goto done;
  }
  for (int k = 0; k < c->n_classes; k++) {
    int used = 0;
    for (int i = 0; i < r->n_labels; i++)
      used |= r->labels[i] == k + 1;
    fprintf(f, "%s %.6f%s\n", c->class_names[k], r->scores[k], used ? " *" : "");
  }
  if (fclose(f) != 0) {
    ecs_err_set(&e, ECS_ERR_IO, "%s: write failed", path);
    goto done;
  }
  if (want_float) {
    ecs_st_writer *sw = ecs_st_writer_new(&e);
    int64_t ne[3] = {r->n_labels, h, w}, ns[1] = {c->n_classes}, nl[1] = {r->n_labels};
    snprintf(path, sizeof path, "%s/cams.safetensors", out);
    int ok = sw && ecs_st_writer_add(sw, "cams", ECS_F32, 3, ne, r->cams, &e) == ECS_OK &&
             ecs_st_writer_add(sw, "erased_cams", ECS_F32, 3, ne, r->erased_cams, &e) == ECS_OK &&
             ecs_st_writer_add(sw, "scores", ECS_F32, 1, ns, r->scores, &e) == ECS_OK &&
             ecs_st_writer_add(sw, "labels", ECS_I32, 1, nl, r->labels, &e) == ECS_OK &&
             ecs_st_writer_save(sw, path, &e) == ECS_OK;
    ecs_st_writer_free(sw);
    if (!ok) goto done;
  }
  printf("labels:");
  for (int i = 0; i < r->n_labels; i++)
    printf(" %s", c->class_names[r->labels[i] - 1]);
  printf("\nwrote %s/ (%dx%d, %lld px in Phi)\n", out, w, h, (long long)r->phi);
  rc = 0;
done:
  if (rc) failure(&e);
  ecs_cam_result_free(r);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_image_free(img);
  ecs_model_free(m);
  return rc;
}

/* ---- ecsnet train --------------------------------------------------------------------------- */
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

static int cmd_train(int argc, char **argv) {
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
    ecs_model_config *cfg = malloc(sizeof *cfg);
    if (cfg) {
      ecs_model_config_default(cfg, b, ecs_dataset_n_classes(ds));
      for (int k = 1; k <= cfg->n_classes && k <= ECS_MAX_CLASSES - 1; k++)
        snprintf(cfg->class_names[k - 1], ECS_CLASS_NAME_MAX, "%s", ecs_dataset_class_name(ds, k));
      m = ecs_model_new(cfg, ecs_device_buffer_type(dev), o.seed, &e);
      free(cfg);
    }
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

/* ---- ecsnet eval ---------------------------------------------------------------------------- */
static void json_num(const char *key, double v, const char *sep) {
  if (isfinite(v))
    printf("\"%s\": %.6g%s", key, v, sep);
  else
    printf("\"%s\": null%s", key, sep);
}

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

/* The result as one JSON object; rates are fractions in 0..1, as ecs/eval.h defines them. */
static void eval_json(const ecs_eval_result *r, const ecs_model_config *c, const char *model,
                      const char *data, const char *split) {
  printf("{\"model\": ");
  json_string(model);
  printf(", \"data\": ");
  json_string(data);
  printf(", \"split\": ");
  json_string(split);
  printf(", \"n_images\": %d, \"alphas\": [", r->n_images);
  for (int a = 0; a < r->n_alphas; a++)
    printf("%s%.4g", a ? ", " : "", r->alphas[a]);
  printf("], \"miou_cam_per_alpha\": [");
  for (int a = 0; a < r->n_alphas; a++)
    printf("%s%.6g", a ? ", " : "", r->miou_cam[a]);
  printf("], \"miou_combined_per_alpha\": [");
  for (int a = 0; a < r->n_alphas; a++)
    printf("%s%.6g", a ? ", " : "", r->miou_combined[a]);
  printf("], ");
  json_num("best_alpha_cam", r->alphas[r->best_cam], ", ");
  json_num("miou_cam", r->miou_cam[r->best_cam], ", ");
  json_num("best_alpha_combined", r->alphas[r->best_combined], ", ");
  json_num("miou_combined", r->miou_combined[r->best_combined], ", ");
  json_num("miou_head", r->miou_head, ", ");
  json_num("fg_recall_cam", r->fg_recall_cam, ", ");
  json_num("fg_precision_cam", r->fg_precision_cam, ", ");
  json_num("phi_precision", r->phi_precision, ", ");
  json_num("phi_precision_fg", r->phi_precision_fg, ", ");
  json_num("phi_precision_bg", r->phi_precision_bg, ", ");
  json_num("phi_coverage", r->phi_coverage, ", ");
  json_num("map", r->map, ", ");
  json_num("seconds", r->seconds, ", ");
  printf("\"classes\": [");
  for (int k = 0; k <= r->n_classes; k++) {
    printf("%s{\"name\": ", k ? ", " : "");
    json_string(k ? c->class_names[k - 1] : "background");
    printf(", ");
    json_num("iou_cam", r->classes[k].iou_cam, ", ");
    json_num("iou_combined", r->classes[k].iou_combined, ", ");
    json_num("iou_head", r->classes[k].iou_head, ", ");
    printf("\"gt_pixels\": %lld}", (long long)r->classes[k].gt_pixels);
  }
  printf("]}\n");
}

/* Rewrites the model file with alpha_bg set to the evaluation's best CAM value. Every tensor
 * and every other metadata entry (the training record among them) is copied unchanged; the
 * writer replaces the file atomically. */
static ecs_status write_alpha(const char *model, float alpha, const char *source, ecs_err *e) {
  ecs_st_file *f = ecs_st_open(model, e);
  if (!f) return e->status;
  ecs_st_writer *w = ecs_st_writer_new(e);
  ecs_status st = w ? ECS_OK : e->status;
  for (size_t i = 0; st == ECS_OK && i < ecs_st_count(f); i++) {
    const ecs_st_tensor *t = ecs_st_at(f, i);
    st = ecs_st_writer_add(w, t->name, t->type, t->nd, t->ne, t->data, e);
  }
  for (size_t i = 0; st == ECS_OK && i < ecs_st_meta_count(f); i++) {
    const char *k = ecs_st_meta_key(f, i);
    if (strcmp(k, "alpha_bg") != 0 && strcmp(k, "alpha_bg_source") != 0)
      st = ecs_st_writer_meta(w, k, ecs_st_meta(f, k), e);
  }
  char num[64];
  snprintf(num, sizeof num, "%.9g", alpha);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "alpha_bg", num, e);
  if (st == ECS_OK) st = ecs_st_writer_meta(w, "alpha_bg_source", source, e);
  if (st == ECS_OK) st = ecs_st_writer_save(w, model, e);
  ecs_st_writer_free(w);
  ecs_st_close(f);
  return st;
}

static int cmd_eval(int argc, char **argv) {
  const char *data = NULL, *model = getenv("ECSNET_MODEL");
  ecs_eval_opts o;
  ecs_eval_opts_default(&o);
  long lv, threads = 0;
  int json = 0, store_alpha = 0;
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *op = argv[a.i], *v;
    if (strcmp(op, "--data") == 0) {
      if (!(data = val(&a))) return usage("--data needs a folder");
    } else if (strcmp(op, "--json") == 0)
      json = 1;
    else if (strcmp(op, "--write-alpha") == 0)
      store_alpha = 1;
    else if (strcmp(op, "--model") == 0) {
      if (!(model = val(&a))) return usage("--model needs a file");
    } else if (strcmp(op, "--split") == 0) {
      if (!(o.split = val(&a))) return usage("--split needs a name");
    } else if (strcmp(op, "--flip") == 0)
      o.infer.flip = 1;
    else if (strcmp(op, "--max-images") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 100000000, &lv))
        return usage("--max-images needs a count");
      o.max_images = (int)lv;
    } else if (strcmp(op, "--threads") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 1024, &threads))
        return usage("--threads needs 1..1024");
    } else if (strcmp(op, "--device") == 0) {
      if (!(g_device = val(&a)) || !device_name_ok(g_device))
        return usage("--device needs auto, cpu, cuda or cuda:N");
    } else if (strcmp(op, "--scales") == 0) {
      if (!(v = val(&a)) || !parse_scales(v, o.infer.scales, &o.infer.n_scales))
        return usage("--scales needs numbers in 0.25..2");
    } else
      return usage("eval: unknown option %s", op);
  }
  if (!data) return usage("eval needs --data DIR");
  if ((!model || !*model) && !(model = shipped_model()))
    return usage("eval needs --model MODEL (or $ECSNET_MODEL; no shipped model was found)");
  ecs_err e = {0};
  ecs_device *dev = cli_device(&e);
  if (!dev) return failure(&e);
  ecs_model *m = ecs_model_load(model, ecs_device_buffer_type(dev), &e);
  if (m && ecs_model_fold_bn(m, &e) != ECS_OK) ecs_model_free(m), m = NULL;
  ecs_dataset *ds = m ? ecs_dataset_open(data, &e) : NULL;
  ecs_backend *be = NULL;
  ecs_ctx *ctx = ds ? make_ctx(dev, (int)threads, &be, &e) : NULL;
  ecs_eval_result *r = ctx ? calloc(1, sizeof *r) : NULL;
  int rc = 1;
  if (r && ecs_eval_run(m, ctx, ds, &o, r, &e) == ECS_OK) {
    const ecs_model_config *c = ecs_model_get_config(m);
    const char *split = o.split ? o.split : "train";
    if (json) {
      eval_json(r, c, model, data, split);
    } else {
      printf("%-16s %8s %8s %8s\n", "class", "CAM", "combined", "head");
      for (int k = 0; k <= r->n_classes; k++)
        printf("%-16s %8.1f %8.1f %8.1f\n", k ? c->class_names[k - 1] : "background",
               100 * r->classes[k].iou_cam, 100 * r->classes[k].iou_combined,
               100 * r->classes[k].iou_head);
      printf("%-16s %8.1f %8.1f %8.1f\n", "mIoU", 100 * r->miou_cam[r->best_cam],
             100 * r->miou_combined[r->best_combined], 100 * r->miou_head);
      printf("best alpha_bg %.2f (CAM), %.2f (combined); Phi precision %.1f%% coverage %.1f%%; mAP "
             "%.1f; "
             "%d images in %.1f s\n",
             r->alphas[r->best_cam], r->alphas[r->best_combined], 100 * r->phi_precision,
             100 * r->phi_coverage, 100 * r->map, r->n_images, r->seconds);
      printf(
          "CAM at best alpha_bg: %.1f%% of object pixels found, %.1f%% of predicted object pixels "
          "right; Phi precision fg %.1f%% bg %.1f%%\n",
          100 * r->fg_recall_cam, 100 * r->fg_precision_cam, 100 * r->phi_precision_fg,
          100 * r->phi_precision_bg);
    }
    rc = 0;
    if (store_alpha) {
      char src[1024];
      snprintf(src, sizeof src,
               "ecsnet eval --data %s --split %s: CAM mIoU %.1f at alpha_bg %.2f (%d images)", data,
               split, 100 * r->miou_cam[r->best_cam], r->alphas[r->best_cam], r->n_images);
      if (write_alpha(model, r->alphas[r->best_cam], src, &e) != ECS_OK)
        rc = failure(&e);
      else if (!json)
        printf("stored alpha_bg %.2f in %s\n", r->alphas[r->best_cam], model);
    }
  } else {
    if (ctx && !r) ecs_err_set(&e, ECS_ERR_NOMEM, "out of memory");
    failure(&e);
  }
  free(r);
  ecs_ctx_free(ctx);
  ecs_backend_free(be);
  ecs_dataset_free(ds);
  ecs_model_free(m);
  return rc;
}

/* ---- ecsnet synth --------------------------------------------------------------------------- */
static int cmd_synth(int argc, char **argv) {
  const char *out = NULL;
  ecs_synth_params p;
  ecs_synth_defaults(&p);
  int have_count = 0;
  long lv;
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *op = argv[a.i], *v;
    if (strcmp(op, "--out") == 0) {
      if (!(out = val(&a))) return usage("--out needs a folder");
    } else if (strcmp(op, "--count") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 10000000, &lv))
        return usage("--count needs a positive count");
      p.count = (int)lv;
      have_count = 1;
    } else if (strcmp(op, "--seed") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 0, 0x7fffffffL, &lv))
        return usage("--seed needs a number");
      p.seed = (uint64_t)lv;
    } else if (strcmp(op, "--size") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 64, 1024, &lv)) return usage("--size needs 64..1024");
      p.size = (int)lv;
    } else if (strcmp(op, "--classes") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, ECS_SYNTH_MAX_CLASSES, &lv))
        return usage("--classes needs 1..%d", ECS_SYNTH_MAX_CLASSES);
      p.n_classes = (int)lv;
    } else
      return usage("synth: unknown option %s", op);
  }
  if (!out) return usage("synth needs --out DIR");
  if (!have_count) return usage("synth needs --count N");
  ecs_err e = {0};
  if (ecs_synth_write(&p, out, &e) != ECS_OK) return failure(&e);
  printf("wrote %d images to %s\n", p.count, out);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage("no command");
  /* where the CUDA backend module is, when not beside the program (the engine reads no
   * environment) */
  const char *mp = getenv("ECSNET_BACKEND_PATH");
  if (mp && *mp) ecs_backend_set_module_path(mp, NULL);
  const char *c = argv[1];
  if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
    fputs(g_help, stdout);
    return 0;
  }
  if (strcmp(c, "--version") == 0) {
    printf("ecsnet %s\n", ecs_version());
    return 0;
  }
  if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
    fputs(g_help, stdout);
    return 0;
  }
  int rc = read_environment();
  if (rc) return rc;
  if (strcmp(c, "info") == 0) return cmd_info(argc, argv);
  if (strcmp(c, "cam") == 0) return cmd_cam(argc, argv);
  if (strcmp(c, "train") == 0) return cmd_train(argc, argv);
  if (strcmp(c, "eval") == 0) return cmd_eval(argc, argv);
  if (strcmp(c, "synth") == 0) return cmd_synth(argc, argv);
  return usage("unknown command '%s'", c);
}
