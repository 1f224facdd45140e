/* test_hparams.c - the table of hyper-parameters (ecs/hparams.h): every row's default parses
 * and fills the structs, bounds hold at their edges and one step past them, text round-trips,
 * and the model file keeps every model value under its own key; a file in the old format
 * (one JSON string "hparams") still loads with its values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/ecsnet.h"
#include "ecs/hparams.h"
#include "ecs/safetensors.h"
#include "ecs/train.h"

static char g_dir[256];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/ecs-test-hparams-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* A value inside p's bounds that differs from its default (what the round trips set). */
static const char *other_value(const ecs_hparam *p, char *buf, size_t n) {
  switch (p->kind) {
  case ECS_HP_BOOL: return strcmp(p->dflt, "true") == 0 ? "false" : "true";
  case ECS_HP_ENUM: return p->choices[1];
  case ECS_HP_RATES: return "3,5";
  case ECS_HP_FLOAT: snprintf(buf, n, "%g", p->lo + 0.25 * (p->hi - p->lo)); return buf;
  default: snprintf(buf, n, "%lld", (long long)(p->lo + 1)); return buf;
  }
}

static void test_table_is_consistent(void **state) {
  (void)state;
  size_t n;
  const ecs_hparam *tab = ecs_hparam_table(&n);
  assert_true(n >= 20 && n <= ECS_HPARAM_MAX);
  ecs_hparams hp;
  ecs_train_opts o = {0}; /* ecs_train_opts_default is the trainer's: full build only */
  ecs_hparams_default(&hp);
  ecs_hparams_run_default(&o);
  for (size_t i = 0; i < n; i++) {
    const ecs_hparam *p = &tab[i];
    assert_ptr_equal(ecs_hparam_find(p->name), p);
    assert_ptr_equal(ecs_hparam_by_key(p->key), p);
    assert_ptr_equal(ecs_hparam_by_flag(p->flag), p);
    assert_non_null(p->doc);
    /* the structs hold the default, and it reads back as the same text */
    char text[64], buf[64];
    ecs_hparam_format(p, ecs_hparam_cptr(p, &hp, &o), text, sizeof text);
    assert_string_equal(text, p->dflt);
    /* a caller may not give an auto default; the model file may hold it */
    union {
      float f;
      int i;
      int64_t l;
      int r[ECS_MAX_RATES];
    } v;
    assert_int_equal(ecs_hparam_set(p, &v, p->dflt, 0, NULL) == ECS_OK, p->auto_doc == NULL);
    assert_int_equal(ecs_hparam_set(p, &v, p->dflt, 1, NULL), ECS_OK);
    const char *ov = other_value(p, buf, sizeof buf);
    assert_int_equal(ecs_hparam_set(p, &v, ov, 0, NULL), ECS_OK);
    ecs_hparam_format(p, &v, text, sizeof text);
    assert_int_equal(ecs_hparam_set(p, &v, text, 0, NULL), ECS_OK);
    assert_int_equal(ecs_hparam_set(p, &v, "nonsense", 1, NULL), ECS_ERR_INVALID);
    if (p->kind == ECS_HP_BOOL || p->kind == ECS_HP_ENUM) continue;
    /* the edges are in, one step past them is out */
    double step = p->kind == ECS_HP_FLOAT ? fmax(fabs(p->hi) * 1e-3, 1e-6) : 1;
    snprintf(buf, sizeof buf, "%.17g", p->lo);
    assert_int_equal(ecs_hparam_set(p, &v, buf, 0, NULL), ECS_OK);
    snprintf(buf, sizeof buf, "%.17g", p->hi);
    assert_int_equal(ecs_hparam_set(p, &v, buf, 0, NULL), ECS_OK);
    snprintf(buf, sizeof buf, "%.17g", p->hi + step);
    assert_int_equal(ecs_hparam_set(p, &v, buf, 0, NULL), ECS_ERR_INVALID);
    snprintf(buf, sizeof buf, "%.17g", p->lo - (p->kind == ECS_HP_FLOAT ? p->lo * 0.5 + 1e-3 : 1));
    assert_int_equal(ecs_hparam_set(p, &v, buf, 0, NULL), ECS_ERR_INVALID);
  }
  ecs_err e = {0};
  assert_int_equal(ecs_hparams_check(&hp, &e), ECS_OK);
  hp.delta = 1.5f;
  assert_int_equal(ecs_hparams_check(&hp, &e), ECS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "delta"));
}

static void test_rates_text(void **state) {
  (void)state;
  const ecs_hparam *p = ecs_hparam_find("overlay_rates");
  int r[ECS_MAX_RATES] = {9, 9, 9, 9};
  assert_int_equal(ecs_hparam_set(p, r, "2,3", 0, NULL), ECS_OK);
  assert_int_equal(r[0], 2), assert_int_equal(r[1], 3), assert_int_equal(r[2], 0);
  char t[64];
  ecs_hparam_format(p, r, t, sizeof t);
  assert_string_equal(t, "2,3");
  const char *bad[] = {"", "2,", ",2", "1,2,3,4,5", "0", "2,0,3", "2;3", "65"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(ecs_hparam_set(p, r, bad[i], 0, NULL), ECS_ERR_INVALID);
  assert_int_equal(r[0], 2); /* unchanged by a failure */
}

static ecs_model *small_model(void) {
  ecs_model_config cfg;
  ecs_model_config_default(&cfg, ECS_BACKBONE_SMALL, 2);
  ecs_err e = {0};
  ecs_model *m = ecs_model_new(&cfg, NULL, 1, &e);
  assert_non_null(m);
  return m;
}

/* Every model value set away from its default survives save and load, each under its key. */
static void test_model_file_one_key_per_value(void **state) {
  (void)state;
  ecs_model *m = small_model();
  ecs_hparams *hp = &ecs_model_config_mut(m)->hp;
  size_t n;
  const ecs_hparam *tab = ecs_hparam_table(&n);
  char want[32][64], buf[64];
  for (size_t i = 0; i < n; i++) {
    if (tab[i].scope != ECS_HP_MODEL) continue;
    const char *v = tab[i].kind == ECS_HP_INT && tab[i].lo <= 2
                        ? "2" /* K = 2 of the 2 rates */
                        : other_value(&tab[i], buf, sizeof buf);
    assert_int_equal(ecs_hparam_set(&tab[i], ecs_hparam_ptr(&tab[i], hp, NULL), v, 0, NULL),
                     ECS_OK);
    ecs_hparam_format(&tab[i], ecs_hparam_cptr(&tab[i], hp, NULL), want[i], sizeof want[i]);
  }
  char path[300];
  snprintf(path, sizeof path, "%s/m.safetensors", g_dir);
  ecs_err e = {0};
  assert_int_equal(ecs_model_save(m, path, &e), ECS_OK);
  ecs_st_file *f = ecs_st_open(path, &e);
  assert_non_null(f);
  assert_null(ecs_st_meta(f, "hparams"));
  for (size_t i = 0; i < n; i++) {
    if (tab[i].scope != ECS_HP_MODEL) continue;
    char key[96];
    snprintf(key, sizeof key, ECS_HPARAM_META_PREFIX "%s", tab[i].name);
    assert_non_null(ecs_st_meta(f, key));
    assert_string_equal(ecs_st_meta(f, key), want[i]);
  }
  ecs_st_close(f);
  ecs_model *b = ecs_model_load(path, NULL, &e);
  assert_non_null(b);
  assert_memory_equal(&ecs_model_get_config(b)->hp, hp, sizeof *hp);
  ecs_model_free(b);
  ecs_model_free(m);
}

/* Writes m's tensors with the metadata of the old format; hparams is its JSON string. */
static void save_old_format(ecs_model *m, const char *path, const char *hparams) {
  ecs_err e = {0};
  ecs_st_writer *w = ecs_st_writer_new(&e);
  assert_non_null(w);
  assert_int_equal(ecs_st_writer_add_params(w, ecs_model_params(m), &e), ECS_OK);
  const char *kv[][2] = {{"format", "ecsnet-model/1"},  {"backbone", "small"},
                         {"normalisation", "imagenet"}, {"classes", "[\"a\",\"b\"]"},
                         {"hparams", hparams},          {"alpha_bg", "0.3"}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    assert_int_equal(ecs_st_writer_meta(w, kv[i][0], kv[i][1], &e), ECS_OK);
  assert_int_equal(ecs_st_writer_save(w, path, &e), ECS_OK);
  ecs_st_writer_free(w);
}

static void test_old_format_still_loads(void **state) {
  (void)state;
  ecs_model *m = small_model();
  char path[300];
  snprintf(path, sizeof path, "%s/old.safetensors", g_dir);
  /* as hparams_json wrote it: every value, floats in %.9g, switches as 0/1 */
  save_old_format(m, path,
                  "{\"beta\":0,\"delta\":0.5,\"theta\":0.800000012,\"sigma_factor\":0.1,"
                  "\"lambda\":2,\"lambda_ramp\":0.25,\"warmup\":0.4,\"eps\":9.99999975e-06,"
                  "\"overlay_k\":-1,\"overlay_rates\":[2,5,0,0],\"bg_in_phi\":0,"
                  "\"cls_on_erased\":0,\"no_erase\":1,\"no_overlay\":1,\"no_phi_filter\":1}");
  ecs_err e = {0};
  ecs_model *b = ecs_model_load(path, NULL, &e);
  assert_non_null(b);
  const ecs_hparams *h = &ecs_model_get_config(b)->hp;
  assert_true(h->beta == 0 && h->delta == 0.5f && h->theta == 0.8f && h->sigma_factor == 0.1f);
  assert_true(h->lambda == 2 && h->lambda_ramp == 0.25f && h->warmup == 0.4f && h->eps == 1e-5f);
  assert_int_equal(h->overlay_k, -1);
  assert_int_equal(h->overlay_rates[0], 2), assert_int_equal(h->overlay_rates[1], 5);
  assert_int_equal(h->overlay_rates[2], 0);
  assert_true(!h->bg_in_phi && !h->cls_on_erased && h->no_erase && h->no_overlay);
  assert_true(h->no_phi_filter);
  assert_true(ecs_model_get_config(b)->alpha_bg == 0.3f);
  ecs_model_free(b);
  /* an old file with only some keys keeps the defaults for the rest; a negative beta meant
   * auto there */
  save_old_format(m, path, "{\"beta\":-1,\"delta\":0.55}");
  b = ecs_model_load(path, NULL, &e);
  assert_non_null(b);
  h = &ecs_model_get_config(b)->hp;
  assert_true(h->beta == 0 && h->delta == 0.55f && h->theta == 0.7f);
  assert_int_equal(h->overlay_rates[0], 2); /* the small backbone's */
  ecs_model_free(b);
  /* a value out of its bounds is refused with the file and the value named */
  save_old_format(m, path, "{\"delta\":1.5}");
  assert_null(ecs_model_load(path, NULL, &e));
  assert_int_equal(e.status, ECS_ERR_FORMAT);
  assert_non_null(strstr(e.msg, "old.safetensors"));
  assert_non_null(strstr(e.msg, "delta"));
  ecs_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_is_consistent),
      cmocka_unit_test(test_rates_text),
      cmocka_unit_test(test_model_file_one_key_per_value),
      cmocka_unit_test(test_old_format_still_loads),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
