/* mask-formats.h - one class of a combined mask in the formats annotation tools read.
 *
 *  - COCO compressed RLE (pycocotools' `counts` string): column-major runs starting with the
 *    background run, each run after the second written as the difference to the run two
 *    before, in 5-bit groups (0x20: more follows; sign from bit 0x10), each group + 48;
 *  - Label Studio brush RLE (BrushLabels `value.rle`): the mask as W*H*4 RGBA bytes (255 in
 *    every channel inside, 0 outside), bit-packed most significant bit first: 32 bits byte
 *    count, 5 bits word size - 1 (7), 4 x 4 bits run-length field sizes - 1 (3, 4, 8, 16),
 *    then repeat chunks (1 bit 1, 2 bits 3, 16 bits count - 1, 8 bits value), zero-padded to
 *    a byte; runs beyond 65536 bytes are split;
 *  - polygons: the boundaries of the class's pixels as rings in pixel-edge coordinates ((0, 0)
 *    is the top-left corner of the top-left pixel, (W, H) the bottom-right corner of the
 *    last), outer boundaries clockwise on screen and holes counter-clockwise, 4-connected
 *    (pixels touching only at a corner are separate rings), simplified by Douglas-Peucker with
 *    a tolerance in pixels (a ring it would reduce below 3 points stays unsimplified).
 * All take the combined mask (class ids, 255 = ignore) and a class id; ignore pixels are
 * never in a class. */
#ifndef API_MASK_FORMATS_H
#define API_MASK_FORMATS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The tolerance of the polygons /cam answers with, in pixels. */
#define API_POLYGON_TOLERANCE 1.0

typedef struct api_mask_stats {
  size_t area;        /* pixels of the class */
  int x0, y0, x1, y1; /* the inclusive bounding box; valid when area > 0 */
} api_mask_stats;

/* Area and bounding box of class cls in mask (w x h). */
void api_mask_class_stats(const uint16_t *mask, int w, int h, uint16_t cls, api_mask_stats *st);

/* The COCO compressed RLE counts of class cls, a malloc'd NUL-terminated string; NULL when
 * out of memory. */
char *api_coco_rle(const uint16_t *mask, int w, int h, uint16_t cls);

/* The Label Studio brush RLE bytes of class cls (malloc'd, *n bytes); NULL when out of
 * memory. */
uint8_t *api_ls_brush_rle(const uint16_t *mask, int w, int h, uint16_t cls, size_t *n);

typedef struct api_ring {
  bool hole;
  int n;      /* points */
  double *xy; /* n (x, y) pairs */
} api_ring;

typedef struct api_rings {
  api_ring *ring;
  int n, cap;
} api_rings;

/* The rings of class cls, simplified with tolerance tol (pixels; 0: every corner). false when
 * out of memory (out is then empty). Release with api_rings_free. */
bool api_mask_polygons(const uint16_t *mask, int w, int h, uint16_t cls, double tol,
                       api_rings *out);
void api_rings_free(api_rings *r);

/* The answers' JSON, one item per class present in mask (ids 1..K, ascending):
 *   coco:     {"id", "name", "segmentation": {"size": [h, w], "counts"}, "area",
 *              "bbox": [x, y, w, h]}
 *   polygons: {"id", "name", "area", "rings": [{"hole": bool, "points": [[x, y], ...]}]}
 * NULL when out of memory. */
json_t *api_coco_json(const api_model_info *info, const uint16_t *mask, int w, int h);
json_t *api_polygons_json(const api_model_info *info, const uint16_t *mask, int w, int h,
                          double tol);

#endif
