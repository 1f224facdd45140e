/* labels.c - resolving label names against a model's classes, synonyms and groups (labels.h). */
#include "labels.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define NAME_CAP 128

/* Lower case, '_' as ' ', runs of spaces as one, no leading or trailing space. */
static void norm(const char *s, char out[NAME_CAP]) {
  size_t n = 0;
  int space = 0;
  for (; *s && n + 1 < NAME_CAP; s++) {
    unsigned char c = (unsigned char)(*s == '_' ? ' ' : *s);
    if (isspace(c)) {
      space = n > 0;
      continue;
    }
    if (space && n + 2 < NAME_CAP) out[n++] = ' ';
    space = 0;
    out[n++] = (char)tolower(c);
  }
  out[n] = 0;
}

static bool same(const char *a, const char *b_norm) {
  char x[NAME_CAP];
  norm(a, x);
  return strcmp(x, b_norm) == 0;
}

const char *api_label_name(const api_model_info *info, int id) {
  if (id == 0) return "background";
  if (id >= 1 && id <= info->n_classes) return info->class_names[id - 1];
  if (id > info->n_classes && id <= info->n_classes + info->n_groups)
    return info->group_names[id - info->n_classes - 1];
  return NULL;
}

const uint16_t *api_label_members(const api_model_info *info, int id, int *n) {
  int g = id - info->n_classes - 1;
  *n = 0;
  if (g < 0 || g >= info->n_groups) return NULL;
  *n = info->group_start[g + 1] - info->group_start[g];
  return info->group_member + info->group_start[g];
}

/* Edit distance of two normalised names, capped at NAME_CAP. */
static int distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b), row[NAME_CAP + 1];
  for (int j = 0; j <= lb; j++)
    row[j] = j;
  for (int i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int up = row[j], v = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < v) v = up + 1;
      if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
      row[j] = v;
      diag = up;
    }
  }
  return row[lb];
}

typedef struct near3 {
  int d[3];
  const char *s[3];
} near3;

static void consider(near3 *nb, const char *cand, const char *want) {
  char x[NAME_CAP];
  norm(cand, x);
  int d = distance(x, want);
  for (int i = 0; i < 3; i++)
    if (nb->s[i] && strcmp(nb->s[i], cand) == 0) return;
  for (int i = 0; i < 3; i++)
    if (!nb->s[i] || d < nb->d[i]) {
      for (int j = 2; j > i; j--) {
        nb->d[j] = nb->d[j - 1];
        nb->s[j] = nb->s[j - 1];
      }
      nb->d[i] = d;
      nb->s[i] = cand;
      return;
    }
}

static bool unknown(const api_model_info *info, const char *name, const char *want,
                    api_error *err) {
  near3 nb = {{0}, {NULL}};
  for (int k = 1; k <= info->n_classes + info->n_groups; k++)
    consider(&nb, api_label_name(info, k), want);
  for (int i = 0; i < info->n_synonyms; i++)
    consider(&nb, info->synonyms[i], want);
  return api_fail(err, 422, "unknown_label", "unknown label '%.64s'; the closest: '%s', '%s', '%s'",
                  name, nb.s[0] ? nb.s[0] : "", nb.s[1] ? nb.s[1] : "", nb.s[2] ? nb.s[2] : "");
}

/* The classes a normalised name is a synonym of: the first in *a, a second one in *b (0: none). */
static void synonym_of(const api_model_info *info, const char *want, int *a, int *b) {
  *a = *b = 0;
  for (int i = 0; i < info->n_synonyms && !*b; i++) {
    if (!same(info->synonyms[i], want)) continue;
    int k = info->synonym_class[i];
    if (!*a)
      *a = k;
    else if (k != *a)
      *b = k;
  }
}

bool api_label_resolve(const api_model_info *info, const char *name, int *id, api_error *err) {
  char want[NAME_CAP];
  norm(name, want);
  if (strcmp(want, "background") == 0) {
    *id = 0;
    return true;
  }
  int found, other;
  synonym_of(info, want, &found, &other);
  if (other) /* ImageNet's "crane" (135 and 518): neither is meant more than the other */
    return api_fail(err, 422, "ambiguous_label",
                    "label '%.64s' names classes %d ('%s') and %d ('%s'): give the id, or a name "
                    "only one class has",
                    name, found, api_label_name(info, found), other, api_label_name(info, other));
  for (int k = 1; k <= info->n_classes + info->n_groups; k++)
    if (same(api_label_name(info, k), want)) {
      *id = k;
      return true;
    }
  if (found) {
    *id = found;
    return true;
  }
  return unknown(info, name, want, err);
}
