/* cmd-info.c - `ecsnet info MODEL` (what a model file holds) and `ecsnet synth` (the synthetic
 * dataset in VOC layout): the two commands that need no device. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "ecs/ecsnet.h"
#include "ecs/hparams.h"
#include "ecs/safetensors.h"
#include "ecs/synth.h"

/* A JSON string of s (the table's texts are plain, but say so in code, not by hope). */
static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      printf("\\u%04x", *s);
    else
      putchar(*s);
  }
  putchar('"');
}

/* A value of p in its JSON type: text as the table writes it. */
static void json_value(const ecs_hparam *p, const char *text) {
  if (p->kind == ECS_HP_ENUM)
    json_str(text);
  else if (p->kind == ECS_HP_RATES)
    printf("[%s]", text);
  else
    fputs(text, stdout);
}

/* `ecsnet info --hparams [--json]`: the table of ecs/hparams.h, the one the command line, the
 * admin API and the model file use (the tests hold openapi.yaml and the docs against it). */
static int dump_hparams(int json) {
  size_t n;
  const ecs_hparam *tab = ecs_hparam_table(&n);
  if (json) printf("{\"hparams\": [");
  for (size_t i = 0; i < n; i++) {
    const ecs_hparam *p = &tab[i];
    char want[160];
    ecs_hparam_expect(p, want, sizeof want);
    if (!json) {
      printf("%-16s %-6s %-8s default %-8s %s%s%s\n", p->name,
             p->scope == ECS_HP_MODEL ? "model" : "run", ecs_hparam_json_type(p), p->dflt, want,
             p->auto_doc ? "; " : "", p->auto_doc ? p->auto_doc : "");
      continue;
    }
    printf("%s\n  {\"name\": \"%s\", \"key\": \"%s\", \"flag\": \"--%s\", \"scope\": \"%s\", "
           "\"type\": \"%s\", \"default\": ",
           i ? "," : "", p->name, p->key, p->flag, p->scope == ECS_HP_MODEL ? "model" : "run",
           ecs_hparam_json_type(p));
    json_value(p, p->dflt);
    if (p->kind != ECS_HP_BOOL && p->kind != ECS_HP_ENUM)
      printf(", \"minimum\": %.15g, \"maximum\": %.15g", p->lo, p->hi);
    if (p->kind == ECS_HP_RATES) printf(", \"max_items\": %d", ECS_MAX_RATES);
    if (p->kind == ECS_HP_BOOL && strncmp(p->flag, "no-", 3) != 0)
      printf(", \"negation\": \"--no-%s\"", p->flag);
    if (p->choices) {
      printf(", \"choices\": [");
      for (int k = 0; p->choices[k]; k++) {
        printf(k ? ", " : "");
        json_str(p->choices[k]);
      }
      printf("]");
    }
    if (p->auto_doc) {
      printf(", \"auto\": ");
      json_str(p->auto_doc);
    }
    printf(", \"doc\": ");
    json_str(p->doc);
    printf("}");
  }
  if (json) printf("\n]}\n");
  return 0;
}

int cmd_info(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[2], "--hparams") == 0) {
    if (argc > 4 || (argc == 4 && strcmp(argv[3], "--json") != 0))
      return usage("info --hparams takes only --json");
    return dump_hparams(argc == 4);
  }
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
  printf("model:          %s\n", argv[2]);
  printf("backbone:       %s (output stride %d)\n", ecs_backbone_name(c->backbone),
         ecs_model_output_stride(m));
  printf("normalisation:  %s\n", ecs_norm_name(c->norm));
  if (c->backbone == ECS_BACKBONE_EFFICIENTNET_LITE0)
    printf("batch norm:     %s\n",
           c->bn_train ? "trains (no pretrained statistics)" : "frozen at the file's statistics");
  printf("classes:        %d:", c->n_classes);
  for (int k = 0; k < c->n_classes; k++)
    printf(" %s", c->class_names[k]);
  printf("\nparameters:     %lld (%lld trainable)\n", (long long)n, (long long)tr);
  printf("alpha_bg:       %g\n", c->alpha_bg);
  printf("label threshold %g\n", c->label_threshold);
  size_t nh;
  const ecs_hparam *tab = ecs_hparam_table(&nh);
  printf("hyper-parameters:");
  for (size_t i = 0, col = 0; i < nh; i++) {
    if (tab[i].scope != ECS_HP_MODEL) continue;
    char v[64];
    ecs_hparam_format(&tab[i], ecs_hparam_cptr(&tab[i], &c->hp, NULL), v, sizeof v);
    int is_auto = tab[i].auto_doc && strcmp(v, tab[i].dflt) == 0;
    printf("%s%s %s%s", col++ % 5 ? " " : "\n  ", tab[i].name, v, is_auto ? " (auto)" : "");
  }
  printf("\n");
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
