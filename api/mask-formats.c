/* mask-formats.c - COCO RLE, Label Studio brush RLE and polygons of a mask's classes
 * (mask-formats.h has the formats). */
#include "mask-formats.h"

#include "labels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void api_mask_class_stats(const uint16_t *mask, int w, int h, uint16_t cls, api_mask_stats *st) {
  *st = (api_mask_stats){.x0 = w, .y0 = h, .x1 = -1, .y1 = -1};
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      if (mask[(size_t)y * (size_t)w + (size_t)x] != cls) continue;
      st->area++;
      if (x < st->x0) st->x0 = x;
      if (x > st->x1) st->x1 = x;
      if (y < st->y0) st->y0 = y;
      if (y > st->y1) st->y1 = y;
    }
}

/* ---- COCO ------------------------------------------------------------------------------- */

/* Appends the compressed form of one run (x: the run or its difference) to s. */
static size_t coco_put(char *s, size_t at, long x) {
  bool more = true;
  while (more) {
    long c = x & 0x1f;
    x >>= 5; /* arithmetic: a negative difference keeps its sign */
    more = (c & 0x10) ? x != -1 : x != 0;
    if (more) c |= 0x20;
    s[at++] = (char)(c + 48);
  }
  return at;
}

char *api_coco_rle(const uint16_t *mask, int w, int h, uint16_t cls) {
  size_t px = (size_t)w * (size_t)h;
  /* At most px + 1 runs; a run of up to 2^36 takes 8 groups. */
  long *runs = malloc((px + 2) * sizeof *runs);
  char *s = malloc((px + 2) * 8 + 1);
  if (!runs || !s) {
    free(runs);
    free(s);
    return NULL;
  }
  size_t m = 0;
  long run = 0;
  bool cur = false; /* runs start with the background */
  for (int x = 0; x < w; x++)
    for (int y = 0; y < h; y++) {
      bool in = mask[(size_t)y * (size_t)w + (size_t)x] == cls;
      if (in != cur) {
        runs[m++] = run;
        run = 0;
        cur = in;
      }
      run++;
    }
  runs[m++] = run;
  size_t at = 0;
  for (size_t i = 0; i < m; i++)
    at = coco_put(s, at, i > 2 ? runs[i] - runs[i - 2] : runs[i]);
  s[at] = '\0';
  free(runs);
  return s;
}

/* ---- Label Studio brush RLE ------------------------------------------------------------- */

typedef struct bits {
  uint8_t *b;
  size_t nbits;
} bits;

static void put_bits(bits *w, uint32_t v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    if ((v >> i) & 1u) w->b[w->nbits >> 3] |= (uint8_t)(0x80u >> (w->nbits & 7));
    w->nbits++;
  }
}

/* One repeat chunk per at most 65536 bytes of one value. */
static void put_run(bits *w, uint8_t v, size_t count) {
  while (count > 0) {
    size_t c = count > 65536 ? 65536 : count;
    put_bits(w, 1, 1);
    put_bits(w, 3, 2);
    put_bits(w, (uint32_t)(c - 1), 16);
    put_bits(w, v, 8);
    count -= c;
  }
}

uint8_t *api_ls_brush_rle(const uint16_t *mask, int w, int h, uint16_t cls, size_t *n) {
  size_t px = (size_t)w * (size_t)h, total = px * 4;
  /* Every pixel may start a run: 27 bits each, plus the 53-bit header. */
  size_t cap = (px * 27 + 53) / 8 + 2 + (total / 65536 + 1) * 4;
  bits wr = {.b = calloc(cap, 1)};
  if (!wr.b) return NULL;
  put_bits(&wr, (uint32_t)total, 32);
  put_bits(&wr, 7, 5);
  static const uint32_t sizes_m1[4] = {2, 3, 7, 15};
  for (int i = 0; i < 4; i++)
    put_bits(&wr, sizes_m1[i], 4);
  size_t run = 0;
  uint8_t cur = 0;
  for (size_t p = 0; p < px; p++) {
    uint8_t v = mask[p] == cls ? 255 : 0;
    if (run > 0 && v != cur) {
      put_run(&wr, cur, run * 4);
      run = 0;
    }
    cur = v;
    run++;
  }
  if (run > 0) put_run(&wr, cur, run * 4);
  *n = (wr.nbits + 7) / 8;
  return wr.b;
}

/* ---- polygons --------------------------------------------------------------------------- */

/* Directions of a boundary edge: E, S, W, N; the class's pixels lie on its right on screen. */
static const int k_dx[4] = {1, 0, -1, 0}, k_dy[4] = {0, 1, 0, -1};

static bool in_cls(const uint16_t *mask, int w, int h, int x, int y, uint16_t cls) {
  return x >= 0 && y >= 0 && x < w && y < h && mask[(size_t)y * (size_t)w + (size_t)x] == cls;
}

/* The boundary edges leaving each corner (w+1 x h+1), one bit per direction. */
static uint8_t *edge_bits(const uint16_t *mask, int w, int h, uint16_t cls) {
  size_t W = (size_t)w + 1;
  uint8_t *out = calloc(W * ((size_t)h + 1), 1);
  if (!out) return NULL;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      if (!in_cls(mask, w, h, x, y, cls)) continue;
      if (!in_cls(mask, w, h, x, y - 1, cls)) out[(size_t)y * W + (size_t)x] |= 1;           /* E */
      if (!in_cls(mask, w, h, x + 1, y, cls)) out[(size_t)y * W + (size_t)x + 1] |= 2;       /* S */
      if (!in_cls(mask, w, h, x, y + 1, cls)) out[((size_t)y + 1) * W + (size_t)x + 1] |= 4; /* W */
      if (!in_cls(mask, w, h, x - 1, y, cls)) out[((size_t)y + 1) * W + (size_t)x] |= 8;     /* N */
    }
  return out;
}

/* The direction taken at a corner arriving in direction d: a right turn first (at a corner
 * where two pixels touch diagonally this keeps them apart), then straight on, then left. */
static int next_dir(uint8_t out, int d) {
  const int pref[3] = {(d + 1) & 3, d, (d + 3) & 3};
  for (int i = 0; i < 3; i++)
    if (out & (1u << pref[i])) return pref[i];
  return -1;
}

typedef struct pts {
  double *xy;
  int n, cap;
} pts;

static bool pts_add(pts *p, double x, double y) {
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 64;
    double *xy = realloc(p->xy, (size_t)cap * 2 * sizeof *xy);
    if (!xy) return false;
    p->xy = xy;
    p->cap = cap;
  }
  p->xy[2 * p->n] = x;
  p->xy[2 * p->n + 1] = y;
  p->n++;
  return true;
}

/* Follows the ring through the edge leaving (x, y) in direction d, marking its edges in used;
 * records only the corners where the direction changes. */
static bool trace(const uint8_t *eb, uint8_t *used, int w, int x, int y, int d, pts *p) {
  size_t W = (size_t)w + 1;
  int sx = x, sy = y, sd = d, prev = -1;
  do {
    if (d != prev && !pts_add(p, x, y)) return false;
    used[(size_t)y * W + (size_t)x] |= (uint8_t)(1u << d);
    prev = d;
    x += k_dx[d];
    y += k_dy[d];
    d = next_dir(eb[(size_t)y * W + (size_t)x], d);
  } while (d >= 0 && !(x == sx && y == sy && d == sd));
  if (p->n > 1 && prev == sd) { /* the start lay on a straight stretch: not a corner */
    memmove(p->xy, p->xy + 2, (size_t)(p->n - 1) * 2 * sizeof *p->xy);
    p->n--;
  }
  return true;
}

static double seg_dist(const double *p, const double *a, const double *b) {
  double vx = b[0] - a[0], vy = b[1] - a[1], wx = p[0] - a[0], wy = p[1] - a[1];
  double l2 = vx * vx + vy * vy, t = l2 > 0 ? (wx * vx + wy * vy) / l2 : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  double dx = wx - t * vx, dy = wy - t * vy;
  return sqrt(dx * dx + dy * dy);
}

/* Douglas-Peucker over the open chain idx a..b of the ring (indices mod n), keeping points in
 * keep[]. An explicit stack: rings can have many thousands of corners. */
static bool dp_chain(const double *xy, int n, int a, int b, double tol, bool *keep) {
  int cap = 64, top = 0;
  int *st = malloc((size_t)cap * 2 * sizeof *st);
  if (!st) return false;
  st[top++] = a, st[top++] = b;
  while (top > 0) {
    int j = st[--top], i = st[--top];
    int span = (j - i + n) % n;
    double best = -1;
    int bi = -1;
    for (int k = 1; k < span; k++) {
      int q = (i + k) % n;
      double dd = seg_dist(xy + 2 * q, xy + 2 * i, xy + 2 * (j % n));
      if (dd > best) best = dd, bi = q;
    }
    if (bi < 0 || best <= tol) continue;
    keep[bi] = true;
    if (top + 4 > cap * 2) {
      int *ns = realloc(st, (size_t)cap * 4 * sizeof *st);
      if (!ns) {
        free(st);
        return false;
      }
      st = ns;
      cap *= 2;
    }
    st[top++] = i, st[top++] = bi, st[top++] = bi, st[top++] = j;
  }
  free(st);
  return true;
}

/* Simplifies a closed ring in place: anchored at point 0 and the point farthest from it. */
static bool simplify(pts *p, double tol) {
  int n = p->n;
  if (tol <= 0 || n <= 4) return true;
  bool *keep = calloc((size_t)n, sizeof *keep);
  if (!keep) return false;
  int far = 0;
  double best = -1;
  for (int k = 1; k < n; k++) {
    double dx = p->xy[2 * k] - p->xy[0], dy = p->xy[2 * k + 1] - p->xy[1];
    if (dx * dx + dy * dy > best) best = dx * dx + dy * dy, far = k;
  }
  keep[0] = keep[far] = true;
  bool ok = dp_chain(p->xy, n, 0, far, tol, keep) && dp_chain(p->xy, n, far, n, tol, keep);
  int m = 0;
  for (int k = 0; ok && k < n; k++)
    m += keep[k];
  if (ok && m >= 3) {
    int o = 0;
    for (int k = 0; k < n; k++)
      if (keep[k]) {
        p->xy[2 * o] = p->xy[2 * k];
        p->xy[2 * o + 1] = p->xy[2 * k + 1];
        o++;
      }
    p->n = o;
  }
  free(keep);
  return ok;
}

static double signed_area2(const pts *p) {
  double a = 0;
  for (int i = 0; i < p->n; i++) {
    int j = (i + 1) % p->n;
    a += p->xy[2 * i] * p->xy[2 * j + 1] - p->xy[2 * j] * p->xy[2 * i + 1];
  }
  return a;
}

static bool rings_add(api_rings *r, pts *p, bool hole) {
  if (r->n == r->cap) {
    int cap = r->cap ? r->cap * 2 : 8;
    api_ring *nr = realloc(r->ring, (size_t)cap * sizeof *nr);
    if (!nr) return false;
    r->ring = nr;
    r->cap = cap;
  }
  r->ring[r->n++] = (api_ring){.hole = hole, .n = p->n, .xy = p->xy};
  *p = (pts){0};
  return true;
}

void api_rings_free(api_rings *r) {
  for (int i = 0; i < r->n; i++)
    free(r->ring[i].xy);
  free(r->ring);
  *r = (api_rings){0};
}

bool api_mask_polygons(const uint16_t *mask, int w, int h, uint16_t cls, double tol,
                       api_rings *out) {
  *out = (api_rings){0};
  size_t W = (size_t)w + 1, nv = W * ((size_t)h + 1);
  uint8_t *eb = edge_bits(mask, w, h, cls), *used = calloc(nv, 1);
  bool ok = eb && used;
  for (size_t v = 0; ok && v < nv; v++) {
    for (int d = 0; ok && d < 4; d++) {
      if (!(eb[v] & ~used[v] & (1u << d))) continue;
      pts p = {0};
      ok = trace(eb, used, w, (int)(v % W), (int)(v / W), d, &p) && simplify(&p, tol) &&
           rings_add(out, &p, signed_area2(&p) < 0);
      free(p.xy);
    }
  }
  free(eb);
  free(used);
  if (!ok) api_rings_free(out);
  return ok;
}

/* ---- JSON ------------------------------------------------------------------------------- */

static const char *name_of(const api_model_info *info, int id) {
  const char *s = api_label_name(info, id);
  return s ? s : "";
}

/* Which label ids 1..K+G occur in mask (n_ids + 1 flags, malloc'd; NULL when out of memory). */
static bool *present(const api_model_info *info, const uint16_t *mask, size_t px, int *n_ids) {
  *n_ids = info->n_classes + info->n_groups;
  bool *seen = calloc((size_t)*n_ids + 1, sizeof *seen);
  if (!seen) return NULL;
  for (size_t p = 0; p < px; p++)
    if (mask[p] >= 1 && mask[p] <= *n_ids) seen[mask[p]] = true;
  return seen;
}

json_t *api_coco_json(const api_model_info *info, const uint16_t *mask, int w, int h) {
  int n_ids;
  bool *seen = present(info, mask, (size_t)w * (size_t)h, &n_ids);
  json_t *list = seen ? json_array() : NULL;
  for (int k = 1; list && k <= n_ids; k++) {
    if (!seen[k]) continue;
    api_mask_stats st;
    api_mask_class_stats(mask, w, h, (uint16_t)k, &st);
    char *counts = api_coco_rle(mask, w, h, (uint16_t)k);
    json_t *item = counts ? json_pack("{s:i, s:s, s:{s:[i, i], s:s}, s:I, s:[i, i, i, i]}", "id", k,
                                      "name", name_of(info, k), "segmentation", "size", h, w,
                                      "counts", counts, "area", (json_int_t)st.area, "bbox", st.x0,
                                      st.y0, st.x1 - st.x0 + 1, st.y1 - st.y0 + 1)
                          : NULL;
    free(counts);
    if (!item || json_array_append_new(list, item) != 0) {
      json_decref(list);
      list = NULL;
    }
  }
  free(seen);
  return list;
}

static json_t *rings_json(const api_rings *r) {
  json_t *rings = json_array();
  for (int i = 0; rings && i < r->n; i++) {
    json_t *points = json_array();
    for (int k = 0; points && k < r->ring[i].n; k++)
      json_array_append_new(
          points, json_pack("[i, i]", (int)r->ring[i].xy[2 * k], (int)r->ring[i].xy[2 * k + 1]));
    json_t *ring =
        points ? json_pack("{s:b, s:o}", "hole", r->ring[i].hole, "points", points) : NULL;
    if (!ring || json_array_append_new(rings, ring) != 0) {
      json_decref(rings);
      return NULL;
    }
  }
  return rings;
}

json_t *api_polygons_json(const api_model_info *info, const uint16_t *mask, int w, int h,
                          double tol) {
  int n_ids;
  bool *seen = present(info, mask, (size_t)w * (size_t)h, &n_ids);
  json_t *list = seen ? json_array() : NULL;
  for (int k = 1; list && k <= n_ids; k++) {
    if (!seen[k]) continue;
    api_mask_stats st;
    api_mask_class_stats(mask, w, h, (uint16_t)k, &st);
    api_rings r;
    json_t *rings = api_mask_polygons(mask, w, h, (uint16_t)k, tol, &r) ? rings_json(&r) : NULL;
    api_rings_free(&r);
    json_t *item = rings ? json_pack("{s:i, s:s, s:I, s:o}", "id", k, "name", name_of(info, k),
                                     "area", (json_int_t)st.area, "rings", rings)
                         : NULL;
    if (!item || json_array_append_new(list, item) != 0) {
      json_decref(list);
      list = NULL;
    }
  }
  free(seen);
  return list;
}
