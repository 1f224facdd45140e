/* cli.h - what the commands of `ecsnet` share: usage and failure lines, option parsing, the
 * environment read once at start-up, the device and the shipped model.
 *
 * The command line sits beside the server above the api layer (docs/design.md, Layers): it
 * links the engine and the api's request, response and registry code, never the HTTP server
 * or the job store. One file per command family: cmd-cam.c, cmd-train.c, cmd-eval.c,
 * cmd-info.c (info and synth); main.c dispatches. */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

#include "ecs/backend.h"
#include "ecs/nn.h"

#define USAGE_EXIT 2

/* "ecsnet: MESSAGE (see ecsnet --help)" on stderr; returns USAGE_EXIT. */
int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "ecsnet: MESSAGE" on stderr; returns 1. */
int failure(const ecs_err *e);

/* 1 and *out when s is a whole number (a number) in lo..hi, else 0. */
int parse_int(const char *s, long lo, long hi, long *out);
int parse_float(const char *s, float lo, float hi, float *out);
/* Up to ECS_MAX_SCALES comma-separated scales in 0.25..2 (eval). */
int parse_scales(const char *s, float *out, int *n);

typedef struct args {
  int argc;
  char **argv;
  int i;
} args;

/* The value of option argv[i] (moving past it), or NULL when it has none. */
const char *val(args *a);

/* What the commands take from the environment, read once at start-up (main.c). */
extern ecs_backend_params g_engine; /* the engine options of every backend */
extern const char *g_shipped;       /* ECSNET_SHIPPED_MODEL; NULL: models/ beside the program */
/* --device of cam, train and eval; cli_device_name() falls back to $ECSNET_DEVICE, then cpu. */
extern const char *g_device;

int device_name_ok(const char *s);
const char *cli_device_name(void);
/* The device, found before the model loads so that one that cannot be used fails at once. */
ecs_device *cli_device(ecs_err *e);
ecs_ctx *make_ctx(ecs_device *d, int threads, ecs_backend **be, ecs_err *e);
/* The model the program ships with, as the server finds it (api/registry.h), for commands
 * given no --model; NULL when there is none. */
const char *shipped_model(void);

int cmd_info(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_cam(int argc, char **argv);
int cmd_train(int argc, char **argv);
/* `ecsnet train --help`: every option, the hyper-parameters from the table of ecs/hparams.h */
void cmd_train_help(void);
int cmd_eval(int argc, char **argv);

#endif
