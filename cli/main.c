/* main.c - `ecsnet`, the command line for local work: the help, the environment and the
 * dispatch to one cmd_* per command (cli.h).
 *
 *   ecsnet cam IMAGE --model MODEL [--labels a,b] --out DIR [--float] [--scales 1,0.5] [--flip]
 *              [--outputs LIST] [--alpha-bg F]
 *   ecsnet train --data DIR --out MODEL [options]      (ecsnet train --help)
 *   ecsnet eval --data DIR --model MODEL [--split S] [--max-images N] [--json] [--write-alpha]
 *   ecsnet synth --out DIR --count N --seed S [--size PX] [--classes K]
 *   ecsnet info MODEL | ecsnet info --hparams [--json]
 *
 * Exit status: 0 success, 2 bad usage, 1 failure; errors are one line on stderr. MODEL
 * defaults to $ECSNET_MODEL. The environment is read here, at the edge, and passed in: the
 * engine options (ECSNET_WINOGRAD, ECSNET_FUSE, ... as ecsnet-server takes them, ecs/options.h)
 * into every backend, ECSNET_SHIPPED_MODEL into the shipped-model lookup. OMP_WAIT_POLICY is
 * passive unless set (omp-wait.h: the program re-executes itself once to get it). */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/ecsnet.h"
#include "ecs/options.h"
#include "ecs/path.h"
#include "omp-wait.h"
#include "registry.h"

int usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ecsnet: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (see ecsnet --help)\n", stderr);
  va_end(ap);
  return USAGE_EXIT;
}

int failure(const ecs_err *e) {
  fprintf(stderr, "ecsnet: %s\n", e->msg[0] ? e->msg : ecs_status_str(e->status));
  return 1;
}

static const char *g_help =
    "usage: ecsnet COMMAND ...\n"
    "  cam IMAGE --out DIR [--model MODEL] [--labels a,b] [--float] [--scales 1,0.5] [--flip]\n"
    "      [--refine | --no-refine] [--alpha-bg F]\n"
    "      [--outputs cam,mask,...] [--label-threshold P] [--label-topk N] [--threads N]\n"
    "      [--device DEV]\n"
    "      CAMs, erased CAMs and masks of one image as PNGs, as POST /cam renders them;\n"
    "      --labels, --scales, --flip, --refine, --alpha-bg and --outputs take POST /cam's\n"
    "      values (the default outputs: all but overlay, coco and polygons; coco.json and\n"
    "      polygons.json come with coco and polygons); without --labels, labels scoring above\n"
    "      --label-threshold (0: the model's own) among the --label-topk (3) best classes are\n"
    "      used, each as its group where one covers it; --labels takes class names, synonyms,\n"
    "      group names or ids\n"
    "  train --data DIR --out MODEL [--backbone small|resnet38d|vgg16d|efficientnet_lite0]\n"
    "      [--init MODEL]\n"
    "      [--epochs N | --steps N] [--batch N] [--lr F] [--optim sgd|adam] [--crop PX]\n"
    "      [--resume CHECKPOINT] [--checkpoint FILE] [--device DEV] [HYPER-PARAMETERS] ...\n"
    "      `ecsnet train --help` lists every option, with its default and range\n"
    "  eval --data DIR [--model MODEL] [--split S] [--max-images N] [--scales ..] [--flip]\n"
    "      [--json] [--write-alpha] [--device DEV]\n"
    "      (--write-alpha stores the best CAM alpha_bg in MODEL)\n"
    "  synth --out DIR --count N [--seed S] [--size PX] [--classes K]\n"
    "  info MODEL | info --hparams [--json]\n"
    "      (--hparams: every hyper-parameter and run setting, as train and POST /admin/train\n"
    "      take them)\n"
    "MODEL defaults to $ECSNET_MODEL, else the shipped model ($ECSNET_SHIPPED_MODEL, else\n"
    "models/ beside the program). DEV is cpu (the default; also $ECSNET_DEVICE), auto, cuda or\n"
    "cuda:N; the CUDA backend module is looked for beside the program, or in\n"
    "$ECSNET_BACKEND_PATH. The engine options are ecsnet-server's, from the environment:\n"
    "ECSNET_WINOGRAD auto|off|2|4, ECSNET_DNNL_PHASES auto|off|N, ECSNET_DNNL_PACK auto|off|N,\n"
    "ECSNET_FUSE auto|off, ECSNET_TF32 on|off, ECSNET_CUDA_WORKSPACE_MB N.\n"
    "Exit status: 0 ok, 1 failure, 2 bad usage.\n";

/* ---- small parsing helpers ---------------------------------------------------------------- */
int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

int parse_float(const char *s, float lo, float hi, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return 0;
  *out = v;
  return 1;
}

int parse_scales(const char *s, float *out, int *n) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  *n = 0;
  for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (*n >= ECS_MAX_SCALES || !parse_float(t, 0.25f, 2.0f, &out[*n])) return 0;
    (*n)++;
  }
  return *n > 0;
}

const char *val(args *a) {
  if (a->i + 1 >= a->argc) return NULL;
  return a->argv[++a->i];
}

ecs_backend_params g_engine;
const char *g_shipped;
static const char *g_env_device; /* ECSNET_DEVICE */

static const char *env_lookup(const char *name, void *user) {
  (void)user;
  return getenv(name);
}

static int read_environment(void) {
  ecs_err e;
  ecs_err_clear(&e);
  if (ecs_backend_options_lookup(&g_engine, env_lookup, NULL, &e) != ECS_OK)
    return usage("%s", e.msg);
  g_shipped = getenv("ECSNET_SHIPPED_MODEL");
  g_env_device = getenv("ECSNET_DEVICE");
  return 0;
}

/* --device of cam, train and eval, else $ECSNET_DEVICE, else cpu: the device is found before
 * the model loads, into its memory, so a device that cannot be used fails at once, one line. */
const char *g_device;

int device_name_ok(const char *s) {
  long n;
  return !strcmp(s, "auto") || !strcmp(s, "cpu") || !strcmp(s, "cpu-ref") || !strcmp(s, "cuda") ||
         (!strncmp(s, "cuda:", 5) && parse_int(s + 5, 0, 63, &n));
}

const char *cli_device_name(void) {
  const char *d = g_device ? g_device : g_env_device;
  return d && *d ? d : "cpu";
}

ecs_device *cli_device(ecs_err *e) {
  return ecs_device_find(cli_device_name(), e);
}

ecs_ctx *make_ctx(ecs_device *d, int threads, ecs_backend **be, ecs_err *e) {
  ecs_backend_params p = g_engine;
  p.n_threads = threads;
  *be = ecs_backend_init(d, &p, e);
  return *be ? ecs_ctx_new(*be, e) : NULL;
}

const char *shipped_model(void) {
  static char path[ECS_PATH_MAX];
  return api_shipped_model_path(g_shipped, path, sizeof path) ? path : NULL;
}

int main(int argc, char **argv) {
  api_omp_passive(argv); /* idle OpenMP threads sleep: a re-exec unless the user chose */
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
    if (strcmp(c, "train") == 0)
      cmd_train_help();
    else
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
