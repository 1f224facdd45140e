/* io-impl.h - what the codec files of src/io/ share; not part of the public API. */
#ifndef ECS_IO_IMPL_H
#define ECS_IO_IMPL_H

#include "ecs/image.h"

/* The limit applied when the caller passes max_pixels = 0: 2^28 pixels (768 MiB as RGB). */
#define ECS_IO_HARD_MAX_PIXELS ((size_t)1 << 28)

/* ECS_ERR_LIMIT unless w*h fits both max_pixels (0: none) and the hard limit. */
ecs_status ecs_io_check_pixels(int w, int h, size_t max_pixels, ecs_err *err);

/* The header walk of a JPEG up to its first scan: size from SOF, EXIF orientation (1..8, 1 when
 * absent or unreadable) and whether an Adobe APP14 marker is present (inverted CMYK). Returns
 * ECS_OK once SOF has been seen, even when the data ends before the scan. */
typedef struct ecs_jpeg_info {
  int width, height, components;
  int orientation;
  int adobe;
} ecs_jpeg_info;
ecs_status ecs_io_jpeg_scan(const uint8_t *b, size_t n, ecs_jpeg_info *info, ecs_err *err);
/* Reads the orientation from an APP1 payload (after the marker length); 0 when it holds none. */
int ecs_io_exif_orientation(const uint8_t *p, size_t n);

ecs_status ecs_io_png_probe(const uint8_t *b, size_t n, int *w, int *h, ecs_err *err);
ecs_status ecs_io_jpeg_decode(const uint8_t *b, size_t n, size_t max_pixels, unsigned flags,
                              ecs_image **out, ecs_err *err);
ecs_status ecs_io_png_decode(const uint8_t *b, size_t n, size_t max_pixels, unsigned flags,
                             int indexed, ecs_image **out, ecs_err *err);

/* Applies EXIF orientation o (2..8) to *img, replacing it; 1 and unknown values do nothing. */
ecs_status ecs_io_orient(ecs_image **img, int o, ecs_err *err);

#endif
