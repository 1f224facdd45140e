/* png.c - PNG through libpng, reading from and writing to memory.
 *
 * libpng reports errors by longjmp. The rule that keeps this safe: the function that calls
 * setjmp changes no local variable afterwards. Everything that changes while libpng runs (the
 * read position, the error text, the image, the row pointers, the output buffer) lives in one
 * heap-allocated state block reached through a pointer that is itself never changed, and the
 * work itself happens in a helper function whose frame the longjmp simply abandons.
 *
 * Before libpng sees the data, IHDR is parsed by hand and the size checked against the pixel
 * limit, so a decompression bomb costs nothing but the probe. Warnings are ignored (the
 * library never prints); libpng's benign errors stay warnings, its real errors (bad CRC on a
 * critical chunk, a broken zlib stream, running out of data) become ECS_ERR_FORMAT. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io-impl.h"

typedef struct png_state {
  const uint8_t *src; /* decode: the input */
  size_t n, pos;
  uint8_t *out; /* encode: the growing output */
  size_t out_n, out_cap;
  ecs_image *img;
  png_bytep *rows;
  char msg[200];
} png_state;

static void on_error(png_structp png, png_const_charp msg) {
  png_state *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "error");
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static void read_fn(png_structp png, png_bytep data, size_t len) {
  png_state *s = png_get_io_ptr(png);
  if (len > s->n - s->pos) png_error(png, "truncated data");
  memcpy(data, s->src + s->pos, len);
  s->pos += len;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

ecs_status ecs_io_png_probe(const uint8_t *b, size_t n, int *w, int *h, ecs_err *err) {
  /* signature (8), IHDR length (4) and type (4), then width and height. */
  if (n < 8 + 8 + 13) return ecs_err_set(err, ECS_ERR_FORMAT, "PNG: truncated header");
  if (be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4) != 0)
    return ecs_err_set(err, ECS_ERR_FORMAT, "PNG: first chunk is not IHDR");
  uint32_t pw = be32(b + 16), ph = be32(b + 20);
  if (pw == 0 || ph == 0 || pw > 0x7fffffffu || ph > 0x7fffffffu)
    return ecs_err_set(err, ECS_ERR_FORMAT, "PNG: header declares %ux%u", pw, ph);
  *w = (int)pw;
  *h = (int)ph;
  return ECS_OK;
}

/* The decode proper; may longjmp out through libpng. */
static ecs_status read_body(png_structp png, png_infop info, png_state *s, size_t max_pixels,
                            unsigned flags, int indexed, ecs_err *err) {
  png_set_read_fn(png, s, read_fn);
  /* Our pixel limit already governs the size; libpng's own width/height caps (a build-time
   * 1000000) would only turn a legal narrow image into a format error. Ancillary chunks
   * (text, ICC) are capped at 8 MiB whatever the build's default, against zTXt bombs. */
  png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
  png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
  png_read_info(png, info);
  png_uint_32 w, h;
  int depth, ct, interlace;
  png_get_IHDR(png, info, &w, &h, &depth, &ct, &interlace, NULL, NULL);
  ecs_status st = ecs_io_check_pixels((int)w, (int)h, max_pixels, err);
  if (st != ECS_OK) return st;
  if (indexed) {
    if (ct == PNG_COLOR_TYPE_PALETTE) {
      if (depth < 8) png_set_packing(png); /* one index per byte */
    } else if (!(ct == PNG_COLOR_TYPE_GRAY && depth == 8)) {
      return ecs_err_set(err, ECS_ERR_FORMAT,
                         "PNG: a mask must be a palette or 8-bit grey PNG (colour type %d, "
                         "%d bits)",
                         ct, depth);
    }
  } else {
    png_set_expand(png);      /* palette to RGB, grey 1/2/4 to 8 bits, tRNS to alpha */
    png_set_strip_16(png);    /* 16 bits: keep the high byte, as most viewers and Pillow do */
    png_set_strip_alpha(png); /* alpha (stored or from tRNS) is dropped, not composited */
    if (!(ct & PNG_COLOR_MASK_COLOR) && !(flags & ECS_DECODE_KEEP_GREY)) png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info);
  if ((ch != 1 && ch != 3) || png_get_rowbytes(png, info) != (size_t)w * ch)
    return ecs_err_set(err, ECS_ERR_FORMAT, "PNG: unexpected layout after conversion (%d channels)",
                       ch);
  s->img = ecs_image_new((int)w, (int)h, ch, err);
  if (!s->img) return err ? err->status : ECS_ERR_NOMEM;
  s->rows = malloc(sizeof(png_bytep) * h);
  if (!s->rows) return ecs_err_set(err, ECS_ERR_NOMEM, "PNG: out of memory");
  for (png_uint_32 y = 0; y < h; y++)
    s->rows[y] = s->img->data + (size_t)y * w * ch;
  png_read_image(png, s->rows);
  png_read_end(png, NULL); /* reads to IEND, so a file cut after the pixel data is caught too */
  return ECS_OK;
}

ecs_status ecs_io_png_decode(const uint8_t *b, size_t n, size_t max_pixels, unsigned flags,
                             int indexed, ecs_image **out, ecs_err *err) {
  int pw, ph;
  ecs_status st = ecs_io_png_probe(b, n, &pw, &ph, err);
  if (st != ECS_OK) return st;
  st = ecs_io_check_pixels(pw, ph, max_pixels, err);
  if (st != ECS_OK) return st;

  png_state *const s = calloc(1, sizeof *s);
  if (!s) return ecs_err_set(err, ECS_ERR_NOMEM, "PNG: out of memory");
  s->src = b;
  s->n = n;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, s, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    free(s);
    return ecs_err_set(err, ECS_ERR_NOMEM, "PNG: cannot create a decoder");
  }
  if (setjmp(png_jmpbuf(png))) {
    st = ecs_err_set(err, ECS_ERR_FORMAT, "PNG: %s", s->msg);
  } else {
    st = read_body(png, info, s, max_pixels, flags, indexed, err);
  }
  png_destroy_read_struct(&png, &info, NULL);
  free(s->rows);
  if (st == ECS_OK)
    *out = s->img;
  else
    ecs_image_free(s->img);
  free(s);
  return st;
}

/* ---- encoding ----------------------------------------------------------------------------- */

static void write_fn(png_structp png, png_bytep data, size_t len) {
  png_state *s = png_get_io_ptr(png);
  if (len > s->out_cap - s->out_n) {
    size_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap - s->out_n < len)
      cap *= 2;
    uint8_t *p = realloc(s->out, cap);
    if (!p) png_error(png, "out of memory");
    s->out = p;
    s->out_cap = cap;
  }
  memcpy(s->out + s->out_n, data, len);
  s->out_n += len;
}

static void flush_fn(png_structp png) {
  (void)png;
}

typedef struct png_src_desc {
  const uint8_t *px;
  int w, h, channels, color_type;
  const uint8_t (*palette)[3];
  int n_colors;
  int level; /* zlib level 0..9, or -1 for libpng's default */
  int depth; /* bits a sample: 8 (0 means 8), or 16 (host-order uint16_t samples) */
} png_src_desc;

static void write_body(png_structp png, png_infop info, png_state *s, const png_src_desc *d) {
  png_set_write_fn(png, s, write_fn, flush_fn);
  png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu); /* as when reading */
  int depth = d->depth == 16 ? 16 : 8;
  png_set_IHDR(png, info, (png_uint_32)d->w, (png_uint_32)d->h, depth, d->color_type,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (d->palette) {
    png_color pal[256];
    for (int i = 0; i < d->n_colors; i++) {
      pal[i].red = d->palette[i][0];
      pal[i].green = d->palette[i][1];
      pal[i].blue = d->palette[i][2];
    }
    png_set_PLTE(png, info, pal, d->n_colors);
  }
  if (d->level >= 0) {
    png_set_compression_level(png, d->level);
    /* the per-row filter search costs as much as a fast deflate */
    if (d->level <= 3 && !d->palette) png_set_filter(png, 0, PNG_FILTER_SUB);
  }
  png_write_info(png, info);
  const uint16_t one = 1;
  if (depth == 16 && *(const uint8_t *)&one == 1) png_set_swap(png); /* PNG is big-endian */
  size_t stride = (size_t)d->w * d->channels * (size_t)(depth / 8);
  for (int y = 0; y < d->h; y++)
    png_write_row(png, d->px + (size_t)y * stride);
  png_write_end(png, NULL);
}

static ecs_status encode(const png_src_desc *d, uint8_t **out, size_t *out_n, ecs_err *err) {
  *out = NULL;
  *out_n = 0;
  png_state *const s = calloc(1, sizeof *s);
  if (!s) return ecs_err_set(err, ECS_ERR_NOMEM, "PNG: out of memory");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, s, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_write_struct(png ? &png : NULL, NULL);
    free(s);
    return ecs_err_set(err, ECS_ERR_NOMEM, "PNG: cannot create an encoder");
  }
  ecs_status st = ECS_OK;
  if (setjmp(png_jmpbuf(png)))
    st = ecs_err_set(err, ECS_ERR_BACKEND, "PNG: encode: %s", s->msg);
  else
    write_body(png, info, s, d);
  png_destroy_write_struct(&png, &info);
  if (st == ECS_OK) {
    *out = s->out;
    *out_n = s->out_n;
  } else {
    free(s->out);
  }
  free(s);
  return st;
}

ecs_status ecs_image_encode_png(const ecs_image *img, uint8_t **out, size_t *out_n, ecs_err *err) {
  return ecs_image_encode_png_level(img, -1, out, out_n, err);
}

ecs_status ecs_image_encode_png_level(const ecs_image *img, int level, uint8_t **out, size_t *out_n,
                                      ecs_err *err) {
  if (level < -1 || level > 9) return ecs_err_set(err, ECS_ERR_INVALID, "PNG: level %d", level);
  if (!img || !img->data || !out || !out_n || img->width < 1 || img->height < 1 ||
      (img->channels != 1 && img->channels != 3))
    return ecs_err_set(err, ECS_ERR_INVALID, "PNG: encode needs a grey or RGB image");
  png_src_desc d = {.px = img->data,
                    .w = img->width,
                    .h = img->height,
                    .channels = img->channels,
                    .color_type = img->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                    .level = level};
  return encode(&d, out, out_n, err);
}

ecs_status ecs_png_encode_palette(const uint8_t *indices, int width, int height,
                                  const uint8_t (*palette)[3], int n_colors, uint8_t **out,
                                  size_t *out_n, ecs_err *err) {
  return ecs_png_encode_palette_level(indices, width, height, palette, n_colors, -1, out, out_n,
                                      err);
}

ecs_status ecs_png_encode_palette_level(const uint8_t *indices, int width, int height,
                                        const uint8_t (*palette)[3], int n_colors, int level,
                                        uint8_t **out, size_t *out_n, ecs_err *err) {
  if (level < -1 || level > 9) return ecs_err_set(err, ECS_ERR_INVALID, "PNG: level %d", level);
  if (!indices || !palette || !out || !out_n || width < 1 || height < 1)
    return ecs_err_set(err, ECS_ERR_INVALID, "PNG: palette encode: bad arguments");
  if (n_colors < 1 || n_colors > 256)
    return ecs_err_set(err, ECS_ERR_INVALID, "PNG: %d palette colours (must be 1..256)", n_colors);
  size_t px = (size_t)width * (size_t)height;
  for (size_t i = 0; i < px; i++)
    if (indices[i] >= n_colors)
      return ecs_err_set(err, ECS_ERR_INVALID,
                         "PNG: index %d at pixel %zu is outside the %d-colour palette", indices[i],
                         i, n_colors);
  png_src_desc d = {.px = indices,
                    .w = width,
                    .h = height,
                    .channels = 1,
                    .color_type = PNG_COLOR_TYPE_PALETTE,
                    .palette = palette,
                    .n_colors = n_colors,
                    .level = level};
  return encode(&d, out, out_n, err);
}

ecs_status ecs_png_encode_grey16_level(const uint16_t *px, int width, int height, int level,
                                       uint8_t **out, size_t *out_n, ecs_err *err) {
  if (level < -1 || level > 9) return ecs_err_set(err, ECS_ERR_INVALID, "PNG: level %d", level);
  if (!px || !out || !out_n || width < 1 || height < 1)
    return ecs_err_set(err, ECS_ERR_INVALID, "PNG: 16-bit encode: bad arguments");
  png_src_desc d = {.px = (const uint8_t *)px,
                    .w = width,
                    .h = height,
                    .channels = 1,
                    .color_type = PNG_COLOR_TYPE_GRAY,
                    .level = level,
                    .depth = 16};
  return encode(&d, out, out_n, err);
}
