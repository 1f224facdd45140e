/* dnnl-wino.c - 3x3 stride-1 forward convolutions by Winograd's minimal filtering F(m x m, 3 x 3)
 * (Lavin and Gray, 2016), on activations in the layout oneDNN picks for the convolution (nChw8c
 * on AVX2, nhwc or nChw16c on AVX-512), with AVX2 and FMA.
 *
 * oneDNN 2.6 has Winograd convolutions for AVX-512 only; on AVX2 its direct jit kernel spends
 * 9 multiply-adds per input channel, output channel and output pixel. F(m, 3) computes an m x m
 * output tile from an (m + 2) x (m + 2) input tile with (m + 2)^2 instead of 9 m^2 of them
 * (F(4, 3): 36 for 144, F(2, 3): 16 for 36): each tile is transformed (B^T d B), multiplied
 * element-wise with the transformed filter (G g G^T, once per weight tensor and process:
 * dnnl-weights.c shares it between backends) and summed over input channels, which for every one of
 * the (m + 2)^2 elements is a matrix product [tiles x IC] x [IC x OC]; the products are transformed
 * back (A^T M A).
 *
 * Dilation d: output pixels of one phase (y mod d, x mod d) only read input pixels of the same
 * phase, so tiles are laid over each phase's sub-grid (spacing d) and read their input at
 * spacing d; no data is moved to do so. Padding is the zero outside the input.
 *
 * Work is split into chunks of tiles, each run by one thread from start to end in its own
 * scratch: transform the chunk's input tiles into V [E][tiles][ICp] (E = (m + 2)^2), one matrix
 * product per element into M [tiles][OCp / 8][E][8] with a 6 x 16 register-blocked kernel over
 * V's rows (6 tiles, broadcast) and U's panels (16 output channels), then the output transform
 * with bias and ReLU into the chunk's output pixels. Small maps (few tiles) make one chunk that
 * the threads share phase by phase instead. Channels past the real count are zero in
 * U and in the padded blocks of the layout, so the padded output channels come out zero.
 *
 * Accuracy: the transforms' constants are exact in binary for F(2, 3); F(4, 3)'s (1/6, 1/24 in
 * G) are not, and its transforms add and subtract values up to 8x larger than the outputs, so
 * its error is larger: relative L2 errors against the reference kernel of at most 5e-7 for
 * F(2, 3) and 3e-6 for F(4, 3) over tests/engine/test_dnnl.c's shapes (direct: about 1e-7).
 *
 * The register kernel reaches the FMA peak with its operands in L1; over whole layers the
 * products run at 55-85% of it, the transforms take 15-30% of the time, and a layer takes
 * 1.5-2.5x less time than oneDNN's direct kernel (tests/bench, ECSNET_WINOGRAD=0 for the
 * latter). */
#include "dnnl-impl.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define WINO_X86 1
#include <immintrin.h>
#define TGT __attribute__((target("avx2,fma")))
#else
#define WINO_X86 0
#endif

typedef struct wgeo {
  int64_t a, e;          /* tile side m + 2, elements (m + 2)^2 */
  int64_t icb, icp;      /* input channel blocks of 8, channels padded to them */
  int64_t ocb, ocp, ocq; /* output groups of 8 written; channels padded to 16; panels of 16 */
  int64_t xis, yis;      /* floats per image of x and y */
  int xtail, ytail;      /* nhwc with channels not a multiple of 8: the last group's lanes */
  int64_t per_image;     /* tiles per image, over all phases */
  int64_t tiles, tc, chunks;
  int shared;   /* one chunk of all tiles that the threads share, phase by phase */
  int64_t nbuf; /* chunk buffers in the scratch */
} wgeo;

#define ROWS 6   /* tiles per register block */
#define KC   256 /* input channels per pass of the register kernel */

static int64_t up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

/* Output rows (or columns) of phase p, and its tiles. */
static int64_t phase_len(int64_t len, int64_t p, int64_t d) {
  return p < len ? (len - p + d - 1) / d : 0;
}

static void geometry(const dn_wino *g, int n_threads, wgeo *o) {
  o->a = g->m + 2;
  o->e = o->a * o->a;
  o->icb = (g->ic + 7) / 8;
  o->icp = o->icb * 8;
  /* every group of 8 of the layout's blocks, the padded ones too (they come out zero) */
  const int64_t xb = g->xb > 0 ? g->xb : 8, yb = g->yb > 0 ? g->yb : 8; /* 0: not laid out yet */
  o->ocb = (up(g->oc, yb) + 7) / 8;
  o->xis = up(g->ic, xb) * g->h * g->w;
  o->yis = up(g->oc, yb) * g->ho * g->wo;
  o->xtail = (int)(g->xb == g->ic ? g->ic % 8 : 0);
  o->ytail = (int)(g->yb == g->oc ? g->oc % 8 : 0);
  o->ocp = up(g->oc, 16);
  o->ocq = o->ocp / 16;
  int64_t per = 0;
  for (int64_t py = 0; py < g->dil; py++)
    for (int64_t px = 0; px < g->dil; px++)
      per += ((phase_len(g->ho, py, g->dil) + g->m - 1) / g->m) *
             ((phase_len(g->wo, px, g->dil) + g->m - 1) / g->m);
  o->per_image = per;
  o->tiles = per * g->n;
  /* Chunks (measured on AVX2, 1 MiB L2 per core, 32 MiB L3): where the transformed weights
   * are small, chunks whose V and M stay in L2 (4096 / ICp tiles); where they are large, long
   * chunks, since every chunk streams all of them. */
  double ub = 4.0 * (double)(o->e * o->icp * o->ocp);
  int64_t cap = ub > 8e6 ? 192 : up(4096 / (o->icp < KC ? o->icp : KC), ROWS);
  if (cap < 4 * ROWS) cap = 4 * ROWS;
  int64_t nt = n_threads > 0 ? n_threads : 1;
  int64_t chunks = (o->tiles + cap - 1) / cap;
  /* Few tiles (small maps): one chunk whose input tiles, products (by element) and output
   * tiles the threads share out in turn, rather than a chunk per thread that would be partly
   * padding rows and would stream all the weights each (measured: 1.1-1.45x up to 64 tiles on
   * 2 threads, even at 100, slower from 128). */
  o->shared = nt > 1 && o->tiles <= 48 * nt;
  if (o->shared) {
    o->tc = up(o->tiles, ROWS);
    o->chunks = 1;
    o->nbuf = 1;
    return;
  }
  chunks = up(chunks, nt);
  o->tc = up((o->tiles + chunks - 1) / chunks, ROWS);
  o->chunks = (o->tiles + o->tc - 1) / o->tc;
  o->nbuf = nt;
}

/* Where tile t starts: its image and the first output pixel; its pixels are d apart. */
static void tile_at(const dn_wino *g, const wgeo *o, int64_t t, int64_t *n, int64_t *oy,
                    int64_t *ox) {
  *n = t / o->per_image;
  int64_t r = t % o->per_image, d = g->dil;
  for (int64_t py = 0; py < d; py++)
    for (int64_t px = 0; px < d; px++) {
      int64_t tw = (phase_len(g->wo, px, d) + g->m - 1) / g->m;
      int64_t cnt = ((phase_len(g->ho, py, d) + g->m - 1) / g->m) * tw;
      if (r < cnt) {
        *oy = py + d * g->m * (r / tw);
        *ox = px + d * g->m * (r % tw);
        return;
      }
      r -= cnt;
    }
  *oy = *ox = 0; /* not reached: t < tiles */
}

int dn_wino_layout(int64_t block, int64_t channels) {
  return block > 0 && (block % 8 == 0 || block == channels);
}

int dn_wino_cpu(void) {
#if WINO_X86
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return 0;
#endif
}

int64_t dn_wino_tiles(const dn_wino *g) {
  wgeo o;
  geometry(g, 1, &o);
  return o.tiles;
}

size_t dn_wino_weight_bytes(const dn_wino *g) {
  wgeo o;
  geometry(g, 1, &o);
  return sizeof(float) * (size_t)(o.e * o.ocp * o.icp);
}

size_t dn_wino_scratch_bytes(const dn_wino *g, int n_threads) {
  wgeo o;
  geometry(g, n_threads, &o);
  /* the chunk buffers, then the bias padded to whole blocks */
  return sizeof(float) * (size_t)(o.nbuf * o.e * o.tc * (o.icp + o.ocp) + o.ocp) +
         64 * (size_t)(o.nbuf + 1);
}

/* G g G^T for one 3x3 filter, in double: F(2, 3) G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 * F(4, 3) G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]. */
static void filter_transform(int m, const float *k, double *u) {
  static const double g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static const double g4[6][3] = {{0.25, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};
  int a = m + 2;
  const double(*G)[3] = m == 2 ? g2 : g4;
  double t[6][3];
  for (int i = 0; i < a; i++)
    for (int j = 0; j < 3; j++)
      t[i][j] = G[i][0] * k[0 * 3 + j] + G[i][1] * k[1 * 3 + j] + G[i][2] * k[2 * 3 + j];
  for (int i = 0; i < a; i++)
    for (int j = 0; j < a; j++)
      u[i * a + j] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
}

void dn_wino_weights(const dn_wino *g, const float *w, float *u) {
  wgeo o;
  geometry(g, 1, &o);
  /* by panel of 16 output channels and input channel, so that each element's 16 values (one
   * cache line) are written together */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
  for (int64_t q = 0; q < o.ocq; q++) {
    double tu[36];
    for (int64_t ic = 0; ic < o.icp; ic++)
      for (int64_t j = 0; j < 16; j++) {
        int64_t oc = q * 16 + j;
        if (oc < g->oc && ic < g->ic)
          filter_transform(g->m, w + (oc * g->ic + ic) * 9, tu);
        else
          memset(tu, 0, sizeof tu);
        for (int64_t e = 0; e < o.e; e++)
          u[((e * o.ocq + q) * o.icp + ic) * 16 + j] = (float)tu[e];
      }
  }
}

#if WINO_X86

typedef __m256 v8;

/* B^T along one line of a tile: x[i * s] -> y[i * s]. */
TGT static inline void bt4(const v8 *x, int s, v8 *y) {
  v8 d0 = x[0], d1 = x[s], d2 = x[2 * s], d3 = x[3 * s];
  y[0] = _mm256_sub_ps(d0, d2);
  y[s] = _mm256_add_ps(d1, d2);
  y[2 * s] = _mm256_sub_ps(d2, d1);
  y[3 * s] = _mm256_sub_ps(d1, d3);
}

TGT static inline void bt6(const v8 *x, int s, v8 *y) {
  const v8 c4 = _mm256_set1_ps(4.f), c5 = _mm256_set1_ps(5.f), c2 = _mm256_set1_ps(2.f);
  v8 d0 = x[0], d1 = x[s], d2 = x[2 * s], d3 = x[3 * s], d4 = x[4 * s], d5 = x[5 * s];
  v8 p = _mm256_fnmadd_ps(c4, d2, d4);              /* d4 - 4 d2 */
  v8 q = _mm256_fnmadd_ps(c4, d1, d3);              /* d3 - 4 d1 */
  v8 r = _mm256_sub_ps(d4, d2);                     /* d4 - d2 */
  v8 s2 = _mm256_mul_ps(c2, _mm256_sub_ps(d3, d1)); /* 2 (d3 - d1) */
  y[0] = _mm256_add_ps(_mm256_fnmadd_ps(c5, d2, _mm256_mul_ps(c4, d0)), d4);
  y[s] = _mm256_add_ps(p, q);
  y[2 * s] = _mm256_sub_ps(p, q);
  y[3 * s] = _mm256_add_ps(r, s2);
  y[4 * s] = _mm256_sub_ps(r, s2);
  y[5 * s] = _mm256_add_ps(_mm256_fnmadd_ps(c5, d3, _mm256_mul_ps(c4, d1)), d5);
}

/* A^T along one line: x[i * s] (i < m + 2) -> y[i * s] (i < m). */
TGT static inline void at4(const v8 *x, int s, v8 *y) {
  v8 m1 = x[s], m2 = x[2 * s];
  y[0] = _mm256_add_ps(_mm256_add_ps(x[0], m1), m2);
  y[s] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), x[3 * s]);
}

TGT static inline void at6(const v8 *x, int s, v8 *y) {
  const v8 c2 = _mm256_set1_ps(2.f), c4 = _mm256_set1_ps(4.f), c8 = _mm256_set1_ps(8.f);
  v8 m1 = x[s], m2 = x[2 * s], m3 = x[3 * s], m4 = x[4 * s];
  v8 sa = _mm256_add_ps(m1, m2), da = _mm256_sub_ps(m1, m2);
  v8 sb = _mm256_add_ps(m3, m4), db = _mm256_sub_ps(m3, m4);
  y[0] = _mm256_add_ps(_mm256_add_ps(x[0], sa), sb);
  y[s] = _mm256_fmadd_ps(c2, db, da);
  y[2 * s] = _mm256_fmadd_ps(c4, sb, sa);
  y[3 * s] = _mm256_add_ps(_mm256_fmadd_ps(c8, db, da), x[5 * s]);
}

/* The mask of a group's first n lanes (n = 0: none). */
TGT static inline __m256i lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Rows k0 .. k1 - 1 of the chunk's input tiles (tiles t0 .. t0 + n - 1; rows from n on zero)
 * into v. */
TGT static void input_chunk(const dn_wino *g, const wgeo *o, const float *x, int64_t t0, int64_t n,
                            float *v, int64_t k0, int64_t k1) {
  const int64_t a = o->a, d = g->dil;
  const __m256i xmask = lanes(o->xtail);
  v8 dt[36], tt[36];
  for (int64_t k = k0; k < k1; k++) {
    if (k >= n) {
      for (int64_t e = 0; e < o->e; e++)
        memset(v + (e * o->tc + k) * o->icp, 0, sizeof(float) * (size_t)o->icp);
      continue;
    }
    int64_t img, oy, ox;
    tile_at(g, o, t0 + k, &img, &oy, &ox);
    int64_t iy = oy - g->pad_t, ix = ox - g->pad_l;
    int inside = iy >= 0 && ix >= 0 && iy + (a - 1) * d < g->h && ix + (a - 1) * d < g->w;
    for (int64_t cb = 0; cb < o->icb; cb++) {
      const int64_t c0 = cb * 8, bs = g->xb;
      const float *plane = x + img * o->xis + c0 / bs * g->h * g->w * bs + c0 % bs;
      const int part = o->xtail && cb == o->icb - 1;
      if (inside && !part) {
        for (int64_t i = 0; i < a; i++)
          for (int64_t j = 0; j < a; j++)
            dt[i * a + j] = _mm256_loadu_ps(plane + ((iy + i * d) * g->w + ix + j * d) * bs);
      } else {
        for (int64_t i = 0; i < a; i++) {
          int64_t yy = iy + i * d;
          for (int64_t j = 0; j < a; j++) {
            int64_t xx = ix + j * d;
            const float *p = plane + (yy * g->w + xx) * bs;
            dt[i * a + j] = !(yy >= 0 && yy < g->h && xx >= 0 && xx < g->w) ? _mm256_setzero_ps()
                            : part ? _mm256_maskload_ps(p, xmask)
                                   : _mm256_loadu_ps(p);
          }
        }
      }
      if (a == 6) {
        for (int j = 0; j < 6; j++)
          bt6(dt + j, 6, tt + j);
        for (int i = 0; i < 6; i++)
          bt6(tt + i * 6, 1, dt + i * 6);
      } else {
        for (int j = 0; j < 4; j++)
          bt4(dt + j, 4, tt + j);
        for (int i = 0; i < 4; i++)
          bt4(tt + i * 4, 1, dt + i * 4);
      }
      float *dst = v + k * o->icp + cb * 8;
      for (int64_t e = 0; e < o->e; e++)
        _mm256_storeu_ps(dst + e * o->tc * o->icp, dt[e]);
    }
  }
}

/* c[r] (+)= sum_i a[r * lda + i] * b[i * 16 .. + 16] for 6 rows r; row r of c is at c + r * rs,
 * its two halves of 8 hs apart. */
TGT static void kernel6x16(const float *a, int64_t lda, const float *b, int64_t k, float *c,
                           int64_t rs, int64_t hs, int acc) {
  v8 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  v8 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda, *a4 = a + 4 * lda,
              *a5 = a + 5 * lda;
  for (int64_t i = 0; i < k; i++) {
    v8 b0 = _mm256_load_ps(b + 16 * i), b1 = _mm256_load_ps(b + 16 * i + 8), x;
/* row r's broadcast value times both halves of b's row, kept in named registers */
#define ROW(r)                                                                                     \
  x = _mm256_broadcast_ss(a##r + i);                                                               \
  c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                                                       \
  c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);
    ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
  }
  v8 r[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
  for (int i = 0; i < 6; i++)
    for (int h = 0; h < 2; h++) {
      float *p = c + i * rs + h * hs;
      v8 val = r[2 * i + h];
      if (acc) val = _mm256_add_ps(val, _mm256_loadu_ps(p));
      _mm256_storeu_ps(p, val);
    }
}

/* M[t][ob][e][8] = sum over input channels of V[e][t][ic] U[e][ic][ob * 8 ..], for elements e0
 * .. e1 - 1. */
TGT static void multiply_chunk(const wgeo *o, const float *v, const float *u, float *mm, int64_t e0,
                               int64_t e1) {
  const int64_t rs = o->ocp / 8 * o->e * 8, hs = o->e * 8;
  for (int64_t e = e0; e < e1; e++)
    for (int64_t k0 = 0; k0 < o->icp; k0 += KC) {
      int64_t kn = o->icp - k0 < KC ? o->icp - k0 : KC;
      for (int64_t q = 0; q < o->ocq; q++) {
        const float *b = u + ((e * o->ocq + q) * o->icp + k0) * 16;
        for (int64_t t = 0; t < o->tc; t += ROWS)
          kernel6x16(v + (e * o->tc + t) * o->icp + k0, o->icp, b, kn,
                     mm + (t * (o->ocp / 8) + 2 * q) * hs + e * 8, rs, hs, k0 > 0);
      }
    }
}

/* Output tiles k0 .. k1 - 1 of the chunk (all real): A^T M A, bias (padded to whole groups of
 * 8), ReLU, into the pixels that exist: every group of the layout's blocks, or (nhwc) the
 * channels that exist. */
TGT static void output_chunk(const dn_wino *g, const wgeo *o, const float *mm, const float *bias,
                             int64_t t0, float *y, int64_t k0, int64_t k1) {
  const int64_t a = o->a, m = g->m, d = g->dil;
  v8 mt[36], tt[24], ot[16];
  const v8 zero = _mm256_setzero_ps();
  const __m256i ymask = lanes(o->ytail);
  for (int64_t k = k0; k < k1; k++) {
    int64_t img, oy, ox;
    tile_at(g, o, t0 + k, &img, &oy, &ox);
    int64_t rows = (g->ho - oy + d - 1) / d, cols = (g->wo - ox + d - 1) / d;
    if (rows > m) rows = m;
    if (cols > m) cols = m;
    for (int64_t ob = 0; ob < o->ocb; ob++) {
      const float *src = mm + ((k * (o->ocp / 8) + ob) * o->e) * 8;
      for (int64_t e = 0; e < o->e; e++)
        mt[e] = _mm256_loadu_ps(src + e * 8);
      if (a == 6) {
        for (int j = 0; j < 6; j++)
          at6(mt + j, 6, tt + j);
        for (int i = 0; i < 4; i++)
          at6(tt + i * 6, 1, ot + i * 4);
      } else {
        for (int j = 0; j < 4; j++)
          at4(mt + j, 4, tt + j);
        for (int i = 0; i < 2; i++)
          at4(tt + i * 4, 1, ot + i * 2);
      }
      v8 bv = bias ? _mm256_loadu_ps(bias + ob * 8) : zero;
      const int64_t c0 = ob * 8, bs = g->yb;
      float *plane = y + img * o->yis + c0 / bs * g->ho * g->wo * bs + c0 % bs;
      const int part = o->ytail && ob == o->ocb - 1;
      for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
          v8 val = _mm256_add_ps(ot[i * m + j], bv);
          if (g->relu) val = _mm256_max_ps(val, zero);
          float *p = plane + ((oy + i * d) * g->wo + ox + j * d) * bs;
          if (part)
            _mm256_maskstore_ps(p, ymask, val);
          else
            _mm256_storeu_ps(p, val);
        }
    }
  }
}

void dn_wino_run(const dn_wino *g, const float *x, const float *u, const float *bias, float *y,
                 void *scratch, int n_threads) {
  wgeo o;
  geometry(g, n_threads, &o);
  int nt = n_threads > 0 ? n_threads : 1;
  size_t per = (size_t)(o.e * o.tc * (o.icp + o.ocp));
  float *base = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
  float *bpad = NULL;
  if (bias) {
    bpad = base + (size_t)o.nbuf * per;
    memcpy(bpad, bias, sizeof(float) * (size_t)g->oc);
    memset(bpad + g->oc, 0, sizeof(float) * (size_t)(o.ocp - g->oc));
    bias = bpad;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    int tid = 0, team = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    team = omp_get_num_threads();
#endif
    if (o.shared) { /* one chunk, every phase split over the team */
      float *v = base, *mm = v + o.e * o.tc * o.icp;
      int64_t rows = o.tc / ROWS;
      input_chunk(g, &o, x, 0, o.tiles, v, rows * tid / team * ROWS,
                  rows * (tid + 1) / team * ROWS);
#ifdef _OPENMP
#pragma omp barrier
#endif
      multiply_chunk(&o, v, u, mm, o.e * tid / team, o.e * (tid + 1) / team);
#ifdef _OPENMP
#pragma omp barrier
#endif
      output_chunk(g, &o, mm, bias, 0, y, o.tiles * tid / team, o.tiles * (tid + 1) / team);
    } else {
      float *v = base + (size_t)tid * per, *mm = v + o.e * o.tc * o.icp;
      for (int64_t c = tid; c < o.chunks; c += team) {
        int64_t t0 = c * o.tc, n = o.tiles - t0 < o.tc ? o.tiles - t0 : o.tc;
        input_chunk(g, &o, x, t0, n, v, 0, o.tc);
        multiply_chunk(&o, v, u, mm, 0, o.e);
        output_chunk(g, &o, mm, bias, t0, y, 0, n);
      }
    }
  }
}

#else

void dn_wino_run(const dn_wino *g, const float *x, const float *u, const float *bias, float *y,
                 void *scratch, int n_threads) {
  (void)g, (void)x, (void)u, (void)bias, (void)y, (void)scratch, (void)n_threads;
}

#endif
