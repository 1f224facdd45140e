/* cmd-info.c - `ecsnet info MODEL` (what a model file holds) and `ecsnet synth` (the synthetic
 * dataset in VOC layout): the two commands that need no device. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "ecs/ecsnet.h"
#include "ecs/safetensors.h"
#include "ecs/synth.h"

int cmd_info(int argc, char **argv) {
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
  printf("backbone:       %s (output stride %d)\n", ecs_backbone_name(c->backbone),
         ecs_model_output_stride(m));
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

int cmd_synth(int argc, char **argv) {
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
