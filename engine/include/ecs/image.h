/* ecs/image.h - 8-bit images: decode (JPEG, PNG), encode, resize, flip, and conversion to the
 * float CHW input of the networks.
 *
 * Untrusted bytes come in over HTTP, so decoding is built around two rules: the size is read
 * from the header alone (ecs_image_probe) and checked against a pixel limit before any pixel
 * buffer exists, and malformed input of any kind is an ECS_ERR_FORMAT with a message, never a
 * crash. Every function here is thread-safe (no global state; libpng's longjmp is confined to
 * one frame per call).
 *
 * Compiled only in the full build (ECS_HAVE_IO is defined then); the engine-only build has no
 * image codecs. */
#ifndef ECS_IMAGE_H
#define ECS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "ecs/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Row-major, interleaved, no padding between rows: pixel (x, y) channel c is at
 * data[(y * width + x) * channels + c]. channels is 1 (grey) or 3 (RGB, in that order). */
typedef struct ecs_image {
  int width;
  int height;
  int channels;
  uint8_t *data; /* width * height * channels bytes, owned by the image */
} ecs_image;

typedef enum ecs_image_format {
  ECS_IMAGE_UNKNOWN = 0,
  ECS_IMAGE_JPEG,
  ECS_IMAGE_PNG,
} ecs_image_format;

const char *ecs_image_format_name(ecs_image_format f); /* "jpeg", "png", "unknown" */
const char *ecs_image_format_mime(ecs_image_format f); /* "image/jpeg", "image/png", NULL */

/* A zero-filled image; channels 1 or 3, sides >= 1. NULL and err filled on failure
 * (ECS_ERR_INVALID for bad sizes, ECS_ERR_LIMIT past 2^31 bytes, ECS_ERR_NOMEM). */
ecs_image *ecs_image_new(int width, int height, int channels, ecs_err *err);
void ecs_image_free(ecs_image *img); /* accepts NULL */
ecs_image *ecs_image_clone(const ecs_image *img, ecs_err *err);

/* ---- decoding ---------------------------------------------------------------------------- */

/* The size an image will have once decoded, read from the header only (JPEG: the SOF segment
 * plus the EXIF orientation in APP1, so orientations 5-8 report width and height swapped, just
 * as ecs_image_decode returns them; PNG: IHDR). Allocates nothing. format may be NULL.
 * ECS_ERR_FORMAT when the bytes are neither a JPEG nor a PNG or the header is cut short. */
ecs_status ecs_image_probe(const void *bytes, size_t n, int *width, int *height,
                           ecs_image_format *format, ecs_err *err);

enum {
  /* Keep grey images (grey JPEGs, grey and grey+alpha PNGs) as 1 channel; the default
   * expands every image to RGB. Colour images are RGB either way. */
  ECS_DECODE_KEEP_GREY = 1u << 0,
};

/* Decodes a JPEG or PNG (sniffed from the bytes) to an 8-bit image, RGB by default.
 *  - max_pixels: width*height above it is ECS_ERR_LIMIT, checked from the header before any
 *    pixel buffer is allocated; 0 means no limit beyond the hard one (2^28 pixels).
 *  - JPEG: baseline and progressive through TurboJPEG; grey and CMYK converted; the EXIF
 *    orientation tag (1-8) is applied, so the result is upright as a viewer shows it.
 *    TurboJPEG warnings that mean lost pixels (a premature end of data, a bad Huffman code)
 *    are errors here too: a half-grey picture must not reach the model silently. Warnings
 *    that leave every pixel intact (stray bytes before a marker, as some cameras write) are
 *    accepted. More than 500 scans (a CPU bomb; encoders write a few dozen) is
 *    ECS_ERR_FORMAT.
 *  - PNG: every colour type and bit depth, interlaced or not; 16-bit samples are reduced to
 *    8 bits, palette and low bit depths expanded, tRNS turned into alpha, and alpha is then
 *    discarded (the colour samples are kept as stored, not composited), as VOC-style tools
 *    do. A PNG whose CRCs or zlib stream are bad is ECS_ERR_FORMAT.
 * On success *out owns a new image; on failure *out is NULL. */
ecs_status ecs_image_decode(const void *bytes, size_t n, size_t max_pixels, ecs_image **out,
                            ecs_err *err);
ecs_status ecs_image_decode_ex(const void *bytes, size_t n, size_t max_pixels, unsigned flags,
                               ecs_image **out, ecs_err *err);

/* Decodes a PNG's palette indices as they are stored (a VOC SegmentationClass mask): a 1-channel
 * image of indices. Grey 8-bit PNGs are accepted too (their values are the indices); anything
 * else is ECS_ERR_FORMAT. */
ecs_status ecs_image_decode_indexed(const void *bytes, size_t n, size_t max_pixels, ecs_image **out,
                                    ecs_err *err);

/* ---- encoding: the output is malloc'd, the caller frees it with free() ------------------- */

/* PNG of a grey (1 channel) or RGB (3 channel) image. */
ecs_status ecs_image_encode_png(const ecs_image *img, uint8_t **out, size_t *out_n, ecs_err *err);
/* 8-bit palette PNG of indices (width*height bytes) with n_colors palette entries (1..256);
 * every index must be < n_colors (ECS_ERR_INVALID otherwise). */
ecs_status ecs_png_encode_palette(const uint8_t *indices, int width, int height,
                                  const uint8_t (*palette)[3], int n_colors, uint8_t **out,
                                  size_t *out_n, ecs_err *err);
/* The two PNG encoders above with a zlib level (0..9; they use libpng's default, 6). At levels
 * 1..3 grey and RGB rows get the fixed "sub" filter instead of libpng's per-row search: for
 * callers whose encode time is latency (the server's /cam answers), at some cost in size. */
ecs_status ecs_image_encode_png_level(const ecs_image *img, int level, uint8_t **out, size_t *out_n,
                                      ecs_err *err);
ecs_status ecs_png_encode_palette_level(const uint8_t *indices, int width, int height,
                                        const uint8_t (*palette)[3], int n_colors, int level,
                                        uint8_t **out, size_t *out_n, ecs_err *err);
/* 16-bit grey PNG of width*height samples (host order; a mask of label ids above 255). */
ecs_status ecs_png_encode_grey16_level(const uint16_t *px, int width, int height, int level,
                                       uint8_t **out, size_t *out_n, ecs_err *err);
/* Baseline JPEG, quality 1..100, 4:2:0 for RGB; grey images stay grey. */
ecs_status ecs_image_encode_jpeg(const ecs_image *img, int quality, uint8_t **out, size_t *out_n,
                                 ecs_err *err);

/* The PASCAL VOC colour map: index i gets the bit-interleaved colour of the VOC devkit
 * (0 black, 1 (128,0,0), 2 (0,128,0), ...), and 255 (ignore / object border) is (224,224,192). */
void ecs_voc_palette(uint8_t palette[256][3]);

/* ---- files -------------------------------------------------------------------------------- */

/* Reads a whole file; more than max_bytes (0: no limit) is ECS_ERR_LIMIT. *bytes is malloc'd. */
ecs_status ecs_file_read(const char *path, size_t max_bytes, uint8_t **bytes, size_t *n,
                         ecs_err *err);
/* Writes a whole file through a temporary file in the same directory and a rename, so readers
 * never see half a file. */
ecs_status ecs_file_write(const char *path, const void *bytes, size_t n, ecs_err *err);
/* ecs_file_read + ecs_image_decode_ex. */
ecs_status ecs_image_read(const char *path, size_t max_pixels, unsigned flags, ecs_image **out,
                          ecs_err *err);
/* Encodes by the extension (.png; .jpg/.jpeg at the given quality) and writes the file. */
ecs_status ecs_image_write(const char *path, const ecs_image *img, int jpeg_quality, ecs_err *err);

/* ---- geometry (augmentation, network input size) ------------------------------------------- */

/* Bilinear resize to width x height with half-pixel centres (the sampling of PyTorch's
 * interpolate(mode="bilinear", align_corners=False) without antialiasing), rounded to the
 * nearest integer. Works for 1 and 3 channels. */
ecs_image *ecs_image_resize(const ecs_image *src, int width, int height, ecs_err *err);
/* Antialiased resize to width x height (>= 1) for the network's input: a triangle filter over
 * one source pixel when enlarging and over scale source pixels when shrinking, so a large
 * photo made small keeps every pixel's share (Pillow's BILINEAR resize does the same, within
 * one grey level). Works for 1 and 3 channels. */
ecs_image *ecs_image_resample(const ecs_image *src, int width, int height, ecs_err *err);
/* Mirrors left-right in place. */
void ecs_image_flip_h(ecs_image *img);
/* Copies the rectangle [x, x+w) x [y, y+h); parts outside src are filled with fill (per
 * channel value), so a random crop larger than the image pads as the PSA/SEAM loaders do. */
ecs_image *ecs_image_crop(const ecs_image *src, int x, int y, int w, int h, uint8_t fill,
                          ecs_err *err);

/* ---- to the network's input ------------------------------------------------------------- */

/* Writes 3 x height x width floats into chw (planes R, G, B): (v/255 - mean[c]) / std[c].
 * Grey images are replicated to three planes. The ImageNet values are
 * mean = {0.485, 0.456, 0.406}, std = {0.229, 0.224, 0.225}. */
void ecs_image_to_chw(const ecs_image *img, const float mean[3], const float std[3], float *chw);
/* The Caffe/VGG convention: planes B, G, R of v - mean_bgr[c] on the 0..255 scale
 * (mean_bgr = {104.008, 116.669, 122.675} for the VOC VGG-16 weights). */
void ecs_image_to_chw_bgr(const ecs_image *img, const float mean_bgr[3], float *chw);

#ifdef __cplusplus
}
#endif
#endif
