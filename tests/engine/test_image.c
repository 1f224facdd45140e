/* test_image.c - the image codecs and helpers: every PNG colour type and depth (written here
 * with libpng), JPEG round trips, all eight EXIF orientations (APP1 segments injected by hand),
 * every cut point of small files, decompression bombs, probe, geometry and tensor conversion. */
#ifndef ECS_HAVE_IO
/* The engine-only build (ECSNET_ENGINE_ONLY) has no image codecs: report a skip. */
#include <stdio.h>
int main(void) {
  puts("image codecs are not part of this build");
  return 77;
}
#else
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/image.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A deterministic test picture: smooth enough for JPEG, varied enough to catch swaps. */
static ecs_image *make_rgb(int w, int h) {
  ecs_image *img = ecs_image_new(w, h, 3, NULL);
  assert_non_null(img);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *p = img->data + ((size_t)y * w + x) * 3;
      p[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
      p[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
      p[2] = (uint8_t)((x + y) * 7 % 256);
    }
  return img;
}

/* Writes a PNG with libpng directly (not through the code under test). rows: packed samples
 * in the file's own format. */
typedef struct membuf {
  uint8_t *p;
  size_t n, cap;
} membuf;

static void mb_write(png_structp png, png_bytep data, size_t len) {
  membuf *m = png_get_io_ptr(png);
  if (m->n + len > m->cap) {
    m->cap = (m->n + len) * 2;
    m->p = realloc(m->p, m->cap);
  }
  memcpy(m->p + m->n, data, len);
  m->n += len;
}

static void mb_flush(png_structp png) {
  (void)png;
}

static membuf write_png(int w, int h, int depth, int ct, int interlace, uint8_t **rows,
                        const png_color *pal, int npal, const uint8_t *trns, int ntrns) {
  membuf m = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  assert_non_null(info);
  if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing the test image");
  png_set_write_fn(png, &m, mb_write, mb_flush);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ct,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (pal) png_set_PLTE(png, info, pal, npal);
  if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return m;
}

static void put_bits(uint8_t *row, int x, int depth, unsigned v) {
  if (depth == 8) {
    row[x] = (uint8_t)v;
  } else if (depth == 16) {
    row[2 * x] = (uint8_t)(v >> 8);
    row[2 * x + 1] = (uint8_t)v;
  } else {
    int per = 8 / depth, shift = 8 - depth * (x % per + 1);
    row[x / per] |= (uint8_t)(v << shift);
  }
}

/* ---- PNG: every colour type and depth ----------------------------------------------------- */

typedef struct png_case {
  int ct, depth;
} png_case;

static void check_png_case(int ct, int depth, int interlace) {
  const int w = 13, h = 7; /* odd sizes exercise every Adam7 pass edge */
  int spp = ct == PNG_COLOR_TYPE_GRAY         ? 1
            : ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
            : ct == PNG_COLOR_TYPE_PALETTE    ? 1
            : ct == PNG_COLOR_TYPE_RGB        ? 3
                                              : 4;
  unsigned maxv = (1u << depth) - 1;
  size_t rowbytes = ((size_t)w * spp * depth + 7) / 8;
  uint8_t *rows[7];
  uint8_t want[7 * 13 * 3];
  png_color pal[16];
  int npal = depth >= 4 ? 16 : 1 << depth;
  for (int i = 0; i < npal; i++)
    pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i * 9), (png_byte)(i * 5 + 3)};
  for (int y = 0; y < h; y++) {
    rows[y] = calloc(rowbytes, 1);
    for (int x = 0; x < w; x++) {
      unsigned s = (unsigned)(x * 3 + y * 5);
      uint8_t *wp = want + ((size_t)y * w + x) * 3;
      if (ct == PNG_COLOR_TYPE_PALETTE) {
        unsigned idx = s % (unsigned)npal;
        put_bits(rows[y], x, depth, idx);
        wp[0] = pal[idx].red, wp[1] = pal[idx].green, wp[2] = pal[idx].blue;
        continue;
      }
      for (int c = 0; c < spp; c++) {
        unsigned v = (s * 37u + (unsigned)c * 91u) & maxv;
        if (depth == 16) v = (v * 2654435761u) & 0xffffu;
        put_bits(rows[y], x * spp + c, depth, v);
        uint8_t v8 = depth == 16 ? (uint8_t)(v >> 8) : (uint8_t)(v * 255 / maxv);
        if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) {
          if (c == 0) wp[0] = wp[1] = wp[2] = v8;
        } else if (c < 3) {
          wp[c] = v8;
        }
      }
    }
  }
  uint8_t trns[2] = {0, 128};
  membuf m = write_png(w, h, depth, ct, interlace, rows, ct == PNG_COLOR_TYPE_PALETTE ? pal : NULL,
                       npal, ct == PNG_COLOR_TYPE_PALETTE ? trns : NULL, 2);
  for (int y = 0; y < h; y++)
    free(rows[y]);

  ecs_err err = {0};
  int pw, ph;
  ecs_image_format f;
  assert_int_equal(ecs_image_probe(m.p, m.n, &pw, &ph, &f, &err), ECS_OK);
  assert_int_equal(pw, w);
  assert_int_equal(ph, h);
  assert_int_equal(f, ECS_IMAGE_PNG);
  ecs_image *img = NULL;
  if (ecs_image_decode(m.p, m.n, 0, &img, &err) != ECS_OK)
    fail_msg("ct %d depth %d interlace %d: %s", ct, depth, interlace, err.msg);
  assert_int_equal(img->width, w);
  assert_int_equal(img->height, h);
  assert_int_equal(img->channels, 3);
  if (memcmp(img->data, want, sizeof want) != 0)
    fail_msg("ct %d depth %d interlace %d: pixels differ", ct, depth, interlace);
  ecs_image_free(img);

  /* Grey kept as grey when asked; colour stays RGB. */
  assert_int_equal(ecs_image_decode_ex(m.p, m.n, 0, ECS_DECODE_KEEP_GREY, &img, &err), ECS_OK);
  int grey = !(ct & PNG_COLOR_MASK_COLOR);
  assert_int_equal(img->channels, grey ? 1 : 3);
  if (grey)
    for (int i = 0; i < w * h; i++)
      assert_int_equal(img->data[i], want[i * 3]);
  ecs_image_free(img);
  free(m.p);
}

static void test_png_every_type_and_depth(void **state) {
  (void)state;
  const png_case cases[] = {
      {PNG_COLOR_TYPE_GRAY, 1},        {PNG_COLOR_TYPE_GRAY, 2},    {PNG_COLOR_TYPE_GRAY, 4},
      {PNG_COLOR_TYPE_GRAY, 8},        {PNG_COLOR_TYPE_GRAY, 16},   {PNG_COLOR_TYPE_GRAY_ALPHA, 8},
      {PNG_COLOR_TYPE_GRAY_ALPHA, 16}, {PNG_COLOR_TYPE_PALETTE, 1}, {PNG_COLOR_TYPE_PALETTE, 2},
      {PNG_COLOR_TYPE_PALETTE, 4},     {PNG_COLOR_TYPE_PALETTE, 8}, {PNG_COLOR_TYPE_RGB, 8},
      {PNG_COLOR_TYPE_RGB, 16},        {PNG_COLOR_TYPE_RGBA, 8},    {PNG_COLOR_TYPE_RGBA, 16},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int il = 0; il < 2; il++)
      check_png_case(cases[i].ct, cases[i].depth, il);
}

static void test_png_round_trip_and_palette(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *src = make_rgb(31, 17), *img = NULL;
  uint8_t *buf;
  size_t n;
  assert_int_equal(ecs_image_encode_png(src, &buf, &n, &err), ECS_OK);
  assert_int_equal(ecs_image_decode(buf, n, 31 * 17, &img, &err), ECS_OK);
  assert_memory_equal(img->data, src->data, 31 * 17 * 3);
  ecs_image_free(img);
  /* One pixel under the size is a limit error, not a decode. */
  assert_int_equal(ecs_image_decode(buf, n, 31 * 17 - 1, &img, &err), ECS_ERR_LIMIT);
  assert_null(img);
  free(buf);

  ecs_image *g = ecs_image_new(5, 4, 1, &err);
  for (int i = 0; i < 20; i++)
    g->data[i] = (uint8_t)(i * 13);
  assert_int_equal(ecs_image_encode_png(g, &buf, &n, &err), ECS_OK);
  assert_int_equal(ecs_image_decode_ex(buf, n, 0, ECS_DECODE_KEEP_GREY, &img, &err), ECS_OK);
  assert_int_equal(img->channels, 1);
  assert_memory_equal(img->data, g->data, 20);
  ecs_image_free(img);
  free(buf);

  /* A VOC mask: indices back through decode_indexed, colours through decode. */
  uint8_t pal[256][3];
  ecs_voc_palette(pal);
  uint8_t idx[20];
  for (int i = 0; i < 20; i++)
    idx[i] = i == 7 ? 255 : (uint8_t)(i % 21);
  assert_int_equal(ecs_png_encode_palette(idx, 5, 4, (const uint8_t(*)[3])pal, 256, &buf, &n, &err),
                   ECS_OK);
  assert_int_equal(ecs_image_decode_indexed(buf, n, 0, &img, &err), ECS_OK);
  assert_int_equal(img->channels, 1);
  assert_memory_equal(img->data, idx, 20);
  ecs_image_free(img);
  assert_int_equal(ecs_image_decode(buf, n, 0, &img, &err), ECS_OK);
  const uint8_t ignore_colour[3] = {224, 224, 192}, class1[3] = {128, 0, 0};
  assert_memory_equal(img->data + 7 * 3, ignore_colour, 3);
  assert_memory_equal(img->data + 1 * 3, class1, 3);
  ecs_image_free(img);
  free(buf);
  /* An index outside the palette, and an RGB PNG where a mask is wanted. */
  assert_int_equal(ecs_png_encode_palette(idx, 5, 4, (const uint8_t(*)[3])pal, 21, &buf, &n, &err),
                   ECS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "palette"));
  assert_int_equal(ecs_image_encode_png(src, &buf, &n, &err), ECS_OK);
  assert_int_equal(ecs_image_decode_indexed(buf, n, 0, &img, &err), ECS_ERR_FORMAT);
  free(buf);
  ecs_image_free(g);
  ecs_image_free(src);
}

static void test_voc_palette(void **state) {
  (void)state;
  uint8_t p[256][3];
  ecs_voc_palette(p);
  const uint8_t want[][4] = {{0, 0, 0, 0},        {1, 128, 0, 0},      {2, 0, 128, 0},
                             {3, 128, 128, 0},    {15, 192, 128, 128}, {20, 0, 64, 128},
                             {255, 224, 224, 192}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_memory_equal(p[want[i][0]], want[i] + 1, 3);
}

/* ---- JPEG --------------------------------------------------------------------------------- */

static double mean_abs_diff(const ecs_image *a, const ecs_image *b) {
  size_t n = (size_t)a->width * a->height * a->channels;
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += abs((int)a->data[i] - (int)b->data[i]);
  return s / (double)n;
}

static void test_jpeg_round_trip(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *src = make_rgb(40, 24), *img = NULL;
  uint8_t *buf;
  size_t n;
  assert_int_equal(ecs_image_encode_jpeg(src, 95, &buf, &n, &err), ECS_OK);
  int w, h;
  ecs_image_format f;
  assert_int_equal(ecs_image_probe(buf, n, &w, &h, &f, &err), ECS_OK);
  assert_int_equal(f, ECS_IMAGE_JPEG);
  assert_int_equal(w, 40);
  assert_int_equal(h, 24);
  assert_int_equal(ecs_image_decode(buf, n, 0, &img, &err), ECS_OK);
  assert_int_equal(img->width, 40);
  assert_int_equal(img->channels, 3);
  assert_true(mean_abs_diff(img, src) < 4.0);
  ecs_image_free(img);
  free(buf);
  assert_int_equal(ecs_image_encode_jpeg(src, 0, &buf, &n, &err), ECS_ERR_INVALID);

  /* Grey JPEG: RGB by default, one channel on request. */
  ecs_image *g = ecs_image_new(16, 16, 1, &err);
  for (int i = 0; i < 256; i++)
    g->data[i] = (uint8_t)i;
  assert_int_equal(ecs_image_encode_jpeg(g, 100, &buf, &n, &err), ECS_OK);
  assert_int_equal(ecs_image_decode(buf, n, 0, &img, &err), ECS_OK);
  assert_int_equal(img->channels, 3);
  for (int i = 0; i < 256; i++) {
    assert_int_equal(img->data[i * 3], img->data[i * 3 + 1]);
    assert_true(abs((int)img->data[i * 3] - i) <= 3);
  }
  ecs_image_free(img);
  assert_int_equal(ecs_image_decode_ex(buf, n, 0, ECS_DECODE_KEEP_GREY, &img, &err), ECS_OK);
  assert_int_equal(img->channels, 1);
  ecs_image_free(img);
  free(buf);
  ecs_image_free(g);
  ecs_image_free(src);
}

/* An APP1 Exif segment holding one IFD0 entry, orientation o, in either byte order. */
static size_t make_app1(uint8_t *seg, int o, int little) {
  uint8_t tiff[26];
  size_t k = 0;
#define PUT16(v)                                                                                   \
  (little ? (tiff[k++] = (uint8_t)(v), tiff[k++] = (uint8_t)((v) >> 8))                            \
          : (tiff[k++] = (uint8_t)((v) >> 8), tiff[k++] = (uint8_t)(v)))
#define PUT32(v)                                                                                   \
  (little ? (PUT16((v)&0xffff), PUT16((v) >> 16)) : (PUT16((v) >> 16), PUT16((v)&0xffff)))
  tiff[k++] = little ? 'I' : 'M';
  tiff[k++] = little ? 'I' : 'M';
  PUT16(42);
  PUT32(8u);
  PUT16(1);      /* one entry */
  PUT16(0x0112); /* Orientation */
  PUT16(3);      /* SHORT */
  PUT32(1u);     /* count */
  PUT16((unsigned)o);
  PUT16(0);
  PUT32(0u); /* no next IFD */
#undef PUT16
#undef PUT32
  size_t len = 2 + 6 + k;
  seg[0] = 0xFF, seg[1] = 0xE1, seg[2] = (uint8_t)(len >> 8), seg[3] = (uint8_t)len;
  memcpy(seg + 4, "Exif\0\0", 6);
  memcpy(seg + 10, tiff, k);
  return 2 + len;
}

static void test_exif_orientations(void **state) {
  (void)state;
  /* Four flat quadrants: red, green / blue, white; 64 x 32, so the aspect shows a swap and
   * each quadrant holds whole 4:2:0 blocks. */
  const uint8_t R[3] = {255, 0, 0}, G[3] = {0, 255, 0}, B[3] = {0, 0, 255}, W[3] = {255, 255, 255};
  ecs_err err = {0};
  ecs_image *src = ecs_image_new(64, 32, 3, &err);
  for (int y = 0; y < 32; y++)
    for (int x = 0; x < 64; x++)
      memcpy(src->data + (y * 64 + x) * 3, y < 16 ? (x < 32 ? R : G) : (x < 32 ? B : W), 3);
  uint8_t *jpg;
  size_t n;
  assert_int_equal(ecs_image_encode_jpeg(src, 100, &jpg, &n, &err), ECS_OK);
  /* Corners (TL, TR, BL, BR) as a viewer shows them, straight from the EXIF definitions. */
  const uint8_t *want[9][4] = {
      {0},          {R, G, B, W}, {G, R, W, B}, {W, B, G, R}, {B, W, R, G},
      {R, B, G, W}, {B, R, W, G}, {W, G, B, R}, {G, W, R, B},
  };
  for (int o = 1; o <= 8; o++) {
    for (int little = 0; little < 2; little++) {
      uint8_t *buf = malloc(n + 64);
      memcpy(buf, jpg, 2);
      size_t a = make_app1(buf + 2, o, little);
      memcpy(buf + 2 + a, jpg + 2, n - 2);
      size_t m = n + a;
      int w, h;
      assert_int_equal(ecs_image_probe(buf, m, &w, &h, NULL, &err), ECS_OK);
      ecs_image *img = NULL;
      assert_int_equal(ecs_image_decode(buf, m, 0, &img, &err), ECS_OK);
      int swap = o >= 5;
      assert_int_equal(img->width, swap ? 32 : 64);
      assert_int_equal(img->height, swap ? 64 : 32);
      assert_int_equal(w, img->width);
      assert_int_equal(h, img->height);
      int cx[4] = {1, img->width - 2, 1, img->width - 2},
          cy[4] = {1, 1, img->height - 2, img->height - 2};
      for (int c = 0; c < 4; c++) {
        const uint8_t *px = img->data + ((size_t)cy[c] * img->width + cx[c]) * 3;
        for (int k = 0; k < 3; k++)
          if (abs((int)px[k] - (int)want[o][c][k]) > 24)
            fail_msg("orientation %d (%s): corner %d channel %d is %d, want %d", o,
                     little ? "II" : "MM", c, k, px[k], want[o][c][k]);
      }
      ecs_image_free(img);
      free(buf);
    }
  }
  free(jpg);
  ecs_image_free(src);
}

/* ---- hostile input ------------------------------------------------------------------------ */

static void check_every_cut(const uint8_t *buf, size_t n, const char *what) {
  for (size_t k = 0; k < n; k++) {
    uint8_t *cut = malloc(k ? k : 1); /* exactly k bytes, so ASan sees any over-read */
    memcpy(cut, buf, k);
    ecs_err err = {0};
    ecs_image *img = NULL;
    ecs_status st = ecs_image_decode(cut, k, 0, &img, &err);
    if (st != ECS_ERR_FORMAT)
      fail_msg("%s cut at %zu of %zu: status %s (%s)", what, k, n, ecs_status_str(st), err.msg);
    assert_null(img);
    assert_true(strlen(err.msg) > 0);
    int w, h;
    st = ecs_image_probe(cut, k, &w, &h, NULL, &err); /* must not crash; may succeed */
    assert_true(st == ECS_OK || st == ECS_ERR_FORMAT);
    free(cut);
  }
}

static void test_truncated_files_at_every_cut(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *src = make_rgb(9, 7);
  uint8_t *buf;
  size_t n;
  assert_int_equal(ecs_image_encode_png(src, &buf, &n, &err), ECS_OK);
  check_every_cut(buf, n, "PNG");
  free(buf);
  assert_int_equal(ecs_image_encode_jpeg(src, 90, &buf, &n, &err), ECS_OK);
  check_every_cut(buf, n, "JPEG");
  free(buf);
  /* An interlaced PNG from libpng too. */
  uint8_t *rows[7];
  for (int y = 0; y < 7; y++)
    rows[y] = src->data + y * 27;
  membuf m = write_png(9, 7, 8, PNG_COLOR_TYPE_RGB, 1, rows, NULL, 0, NULL, 0);
  check_every_cut(m.p, m.n, "interlaced PNG");
  free(m.p);
  ecs_image_free(src);
}

static uint32_t crc32_bytes(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void test_decompression_bombs(void **state) {
  (void)state;
  ecs_err err = {0};
  /* A valid 1x1 PNG whose IHDR is rewritten to 100000 x 100000 (CRC fixed up). */
  ecs_image *one = ecs_image_new(1, 1, 3, &err);
  uint8_t *buf;
  size_t n;
  assert_int_equal(ecs_image_encode_png(one, &buf, &n, &err), ECS_OK);
  be32(buf + 16, 100000);
  be32(buf + 20, 100000);
  be32(buf + 29, crc32_bytes(buf + 12, 17));
  int w, h;
  assert_int_equal(ecs_image_probe(buf, n, &w, &h, NULL, &err), ECS_OK);
  assert_int_equal(w, 100000);
  assert_int_equal(h, 100000);
  ecs_image *img = NULL;
  assert_int_equal(ecs_image_decode(buf, n, 4096 * 4096, &img, &err), ECS_ERR_LIMIT);
  assert_non_null(strstr(err.msg, "100000x100000"));
  assert_int_equal(ecs_image_decode(buf, n, 0, &img, &err), ECS_ERR_LIMIT); /* hard limit */
  assert_null(img);
  free(buf);

  /* A JPEG whose frame header claims 65000 x 65000. */
  assert_int_equal(ecs_image_encode_jpeg(one, 90, &buf, &n, &err), ECS_OK);
  size_t sof = 0;
  for (size_t i = 2; i + 9 < n; i++)
    if (buf[i] == 0xFF && buf[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  assert_true(sof > 0);
  buf[sof + 5] = 65000 >> 8, buf[sof + 6] = 65000 & 255;
  buf[sof + 7] = 65000 >> 8, buf[sof + 8] = 65000 & 255;
  assert_int_equal(ecs_image_probe(buf, n, &w, &h, NULL, &err), ECS_OK);
  assert_int_equal(w, 65000);
  assert_int_equal(ecs_image_decode(buf, n, 4096 * 4096, &img, &err), ECS_ERR_LIMIT);
  assert_null(img);
  free(buf);
  ecs_image_free(one);
}

/* The pixel limit is the rule, not libpng's build-time width cap of 1000000. */
/* The level variants: every level decodes to the same pixels; a bad level is refused. */
static void test_png_levels(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *src = make_rgb(41, 23), *img = NULL;
  ecs_image *g = ecs_image_new(41, 23, 1, &err);
  for (int i = 0; i < 41 * 23; i++)
    g->data[i] = (uint8_t)(i * 7 + i / 41);
  uint8_t pal[256][3], idx[41 * 23];
  ecs_voc_palette(pal);
  for (int i = 0; i < 41 * 23; i++)
    idx[i] = (uint8_t)(i % 5 == 0 ? 255 : i % 21);
  uint8_t *buf;
  size_t n;
  static const int levels[] = {-1, 0, 1, 3, 6, 9};
  for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
    assert_int_equal(ecs_image_encode_png_level(src, levels[l], &buf, &n, &err), ECS_OK);
    assert_int_equal(ecs_image_decode(buf, n, 0, &img, &err), ECS_OK);
    assert_memory_equal(img->data, src->data, 41 * 23 * 3);
    ecs_image_free(img);
    free(buf);
    assert_int_equal(ecs_image_encode_png_level(g, levels[l], &buf, &n, &err), ECS_OK);
    assert_int_equal(ecs_image_decode_ex(buf, n, 0, ECS_DECODE_KEEP_GREY, &img, &err), ECS_OK);
    assert_memory_equal(img->data, g->data, 41 * 23);
    ecs_image_free(img);
    free(buf);
    assert_int_equal(ecs_png_encode_palette_level(idx, 41, 23, (const uint8_t(*)[3])pal, 256,
                                                  levels[l], &buf, &n, &err),
                     ECS_OK);
    assert_int_equal(ecs_image_decode_indexed(buf, n, 0, &img, &err), ECS_OK);
    assert_memory_equal(img->data, idx, 41 * 23);
    ecs_image_free(img);
    free(buf);
  }
  assert_int_equal(ecs_image_encode_png_level(src, 10, &buf, &n, &err), ECS_ERR_INVALID);
  assert_int_equal(
      ecs_png_encode_palette_level(idx, 41, 23, (const uint8_t(*)[3])pal, 256, -2, &buf, &n, &err),
      ECS_ERR_INVALID);
  ecs_image_free(src);
  ecs_image_free(g);
}

static void test_png_very_wide(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *wide = ecs_image_new(1000003, 1, 1, &err), *img = NULL;
  assert_non_null(wide);
  wide->data[1000002] = 200;
  uint8_t *buf;
  size_t n;
  assert_int_equal(ecs_image_encode_png(wide, &buf, &n, &err), ECS_OK);
  if (ecs_image_decode_ex(buf, n, 2000000, ECS_DECODE_KEEP_GREY, &img, &err) != ECS_OK)
    fail_msg("%s", err.msg);
  assert_int_equal(img->width, 1000003);
  assert_int_equal(img->data[1000002], 200);
  ecs_image_free(img);
  free(buf);
  ecs_image_free(wide);
}

static void test_corrupt_data(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *src = make_rgb(20, 20), *img = NULL;
  uint8_t *buf;
  size_t n;
  assert_int_equal(ecs_image_encode_png(src, &buf, &n, &err), ECS_OK);
  buf[n / 2] ^= 0x55; /* inside IDAT: the CRC no longer matches */
  assert_int_equal(ecs_image_decode(buf, n, 0, &img, &err), ECS_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "PNG"));
  free(buf);
  assert_int_equal(ecs_image_encode_jpeg(src, 90, &buf, &n, &err), ECS_OK);
  for (size_t i = n - 40; i < n - 2; i++)
    buf[i] = 0xFF; /* markers inside the entropy data */
  ecs_status st = ecs_image_decode(buf, n, 0, &img, &err);
  assert_int_equal(st, ECS_ERR_FORMAT);
  free(buf);
  /* Stray bytes between two segments (as some cameras write) make libjpeg warn but leave the
   * picture intact: accepted. */
  ecs_image *ref = NULL;
  assert_int_equal(ecs_image_encode_jpeg(src, 90, &buf, &n, &err), ECS_OK);
  assert_int_equal(ecs_image_decode(buf, n, 0, &ref, &err), ECS_OK);
  size_t at = 4 + ((size_t)buf[4] << 8 | buf[5]); /* after the first segment */
  uint8_t *stray = malloc(n + 3);
  memcpy(stray, buf, at);
  memcpy(stray + at, "\x01\x02\x03", 3);
  memcpy(stray + at + 3, buf + at, n - at);
  if (ecs_image_decode(stray, n + 3, 0, &img, &err) != ECS_OK) fail_msg("%s", err.msg);
  assert_memory_equal(img->data, ref->data, 20 * 20 * 3);
  ecs_image_free(img);
  ecs_image_free(ref);
  free(stray);
  free(buf);
  /* Thousands of scans (a CPU bomb for progressive decoding) are refused before decoding. */
  assert_int_equal(ecs_image_encode_jpeg(src, 90, &buf, &n, &err), ECS_OK);
  size_t sos = 0;
  for (size_t i = 2; i + 1 < n; i++)
    if (buf[i] == 0xFF && buf[i + 1] == 0xDA) {
      sos = i;
      break;
    }
  assert_true(sos > 0);
  size_t scan_len = n - 2 - sos, reps = 600;
  uint8_t *many = malloc(sos + scan_len * reps + 2);
  memcpy(many, buf, sos);
  for (size_t r = 0; r < reps; r++)
    memcpy(many + sos + r * scan_len, buf + sos, scan_len);
  memcpy(many + sos + scan_len * reps, "\xff\xd9", 2);
  assert_int_equal(ecs_image_decode(many, sos + scan_len * reps + 2, 0, &img, &err),
                   ECS_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "600 scans"));
  free(many);
  free(buf);
  const char junk[] = "GIF89a not an image we read";
  assert_int_equal(ecs_image_decode(junk, sizeof junk, 0, &img, &err), ECS_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "not a JPEG or PNG"));
  int w, h;
  assert_int_equal(ecs_image_probe(junk, sizeof junk, &w, &h, NULL, &err), ECS_ERR_FORMAT);
  assert_int_equal(ecs_image_decode(NULL, 0, 0, &img, &err), ECS_ERR_INVALID);
  ecs_image_free(src);
}

/* ---- geometry and conversion ------------------------------------------------------------- */

static void test_resize_flip_crop(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *a = ecs_image_new(2, 1, 1, &err);
  a->data[0] = 0, a->data[1] = 100;
  ecs_image *b = ecs_image_resize(a, 4, 1, &err);
  const uint8_t up[4] = {0, 25, 75, 100};
  assert_memory_equal(b->data, up, 4);
  ecs_image_free(b);
  b = ecs_image_resize(a, 1, 1, &err); /* the centre of the two */
  assert_int_equal(b->data[0], 50);
  ecs_image_free(b);
  ecs_image_free(a);

  ecs_image *src = make_rgb(11, 6);
  b = ecs_image_resize(src, 11, 6, &err);
  assert_memory_equal(b->data, src->data, 11 * 6 * 3);
  ecs_image_free(b);
  assert_null(ecs_image_resize(src, 0, 5, &err));
  assert_int_equal(err.status, ECS_ERR_INVALID);

  ecs_image *f = ecs_image_clone(src, &err);
  ecs_image_flip_h(f);
  assert_memory_equal(f->data, src->data + 10 * 3, 3); /* first pixel = old last */
  assert_memory_equal(f->data + 10 * 3, src->data, 3);
  ecs_image_flip_h(f);
  assert_memory_equal(f->data, src->data, 11 * 6 * 3);
  ecs_image_free(f);

  ecs_image *c = ecs_image_crop(src, 9, -1, 4, 3, 7, &err);
  assert_int_equal(c->width, 4);
  assert_int_equal(c->data[0], 7);                            /* above the image */
  assert_memory_equal(c->data + 4 * 3, src->data + 9 * 3, 6); /* row 0, x 9..10 */
  assert_int_equal(c->data[4 * 3 + 6], 7);                    /* right of the image */
  ecs_image_free(c);
  ecs_image_free(src);
}

static void test_to_chw(void **state) {
  (void)state;
  ecs_err err = {0};
  ecs_image *img = ecs_image_new(2, 1, 3, &err);
  const uint8_t px[6] = {255, 0, 51, 0, 102, 255};
  memcpy(img->data, px, 6);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  float chw[6];
  ecs_image_to_chw(img, mean, std, chw);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 2; i++)
      assert_float_equal(chw[c * 2 + i], (px[i * 3 + c] / 255.0f - mean[c]) / std[c], 1e-5);
  const float bgr[3] = {104.008f, 116.669f, 122.675f};
  ecs_image_to_chw_bgr(img, bgr, chw);
  assert_float_equal(chw[0], 51 - 104.008f, 1e-4);  /* B of pixel 0 */
  assert_float_equal(chw[1], 255 - 104.008f, 1e-4); /* B of pixel 1 */
  assert_float_equal(chw[4], 255 - 122.675f, 1e-4); /* R of pixel 0 */
  ecs_image_free(img);
  ecs_image *g = ecs_image_new(1, 1, 1, &err);
  g->data[0] = 255;
  ecs_image_to_chw(g, mean, std, chw);
  for (int c = 0; c < 3; c++)
    assert_float_equal(chw[c], (1.0f - mean[c]) / std[c], 1e-5);
  ecs_image_free(g);
}

static void test_files(void **state) {
  (void)state;
  ecs_err err = {0};
  char dir[] = "/tmp/ecs_test_image_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char png[128], jpg[128], bad[128];
  snprintf(png, sizeof png, "%s/a.png", dir);
  snprintf(jpg, sizeof jpg, "%s/b.JPG", dir);
  snprintf(bad, sizeof bad, "%s/c.gif", dir);
  ecs_image *src = make_rgb(8, 5), *img = NULL;
  assert_int_equal(ecs_image_write(png, src, 90, &err), ECS_OK);
  assert_int_equal(ecs_image_write(jpg, src, 90, &err), ECS_OK);
  assert_int_equal(ecs_image_write(bad, src, 90, &err), ECS_ERR_INVALID);
  assert_int_equal(ecs_image_read(png, 0, 0, &img, &err), ECS_OK);
  assert_memory_equal(img->data, src->data, 8 * 5 * 3);
  ecs_image_free(img);
  assert_int_equal(ecs_image_read(jpg, 100, 0, &img, &err), ECS_OK);
  assert_int_equal(img->width, 8);
  ecs_image_free(img);
  assert_int_equal(ecs_image_read(png, 39, 0, &img, &err), ECS_ERR_LIMIT);
  assert_non_null(strstr(err.msg, "a.png"));
  uint8_t *bytes;
  size_t n;
  assert_int_equal(ecs_file_read(bad, 0, &bytes, &n, &err), ECS_ERR_IO);
  assert_int_equal(ecs_file_read(dir, 0, &bytes, &n, &err), ECS_ERR_IO); /* a directory */
  assert_int_equal(ecs_file_write(png, "xyz", 3, &err), ECS_OK);         /* replaces */
  assert_int_equal(ecs_file_read(png, 0, &bytes, &n, &err), ECS_OK);
  assert_int_equal(n, 3);
  assert_memory_equal(bytes, "xyz", 3);
  free(bytes);
  assert_int_equal(ecs_file_read(png, 2, &bytes, &n, &err), ECS_ERR_LIMIT);
  unlink(png);
  unlink(jpg);
  assert_int_equal(rmdir(dir), 0); /* no temporary files were left behind */
  ecs_image_free(src);
  ecs_image_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_png_every_type_and_depth),
      cmocka_unit_test(test_png_round_trip_and_palette),
      cmocka_unit_test(test_voc_palette),
      cmocka_unit_test(test_jpeg_round_trip),
      cmocka_unit_test(test_exif_orientations),
      cmocka_unit_test(test_truncated_files_at_every_cut),
      cmocka_unit_test(test_decompression_bombs),
      cmocka_unit_test(test_png_very_wide),
      cmocka_unit_test(test_png_levels),
      cmocka_unit_test(test_corrupt_data),
      cmocka_unit_test(test_resize_flip_crop),
      cmocka_unit_test(test_to_chw),
      cmocka_unit_test(test_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
