/* ecs/synth.h - the synthetic weakly supervised segmentation benchmark.
 *
 * PASCAL VOC is not always at hand, and a benchmark for ECS-Net must show the failure ECS-Net
 * fixes: CAMs that light up only the most discriminative part of an object. Each image holds
 * one to three objects; an object is an elliptical body whose colour is only weakly tied to its
 * class (hue near the class hue, the class's stripe texture half the time) with a small
 * class-unique emblem near its head end: the one strong cue. Distractor shapes in the classes'
 * body colours, small blobs and a noisy colour-field background make the body alone
 * unreliable, and objects occlude each other, are cut by the frame and vary in scale. A label
 * is kept only if enough of its object's emblem and body stay visible; the pixels of an object
 * whose label was dropped are 255 (ignore) in its mask.
 *
 * The output is the VOC layout that `ecsnet train`/`eval` read: JPEGImages/ID.jpg,
 * SegmentationClass/ID.png (VOC palette, 0 background, 1..K classes, 255 ignore),
 * ImageSets/Segmentation/{train,val}.txt, classes.txt, labels.txt ("ID id id ...") and
 * synth.txt (the generator's parameters). The same seed and parameters give byte-identical
 * files, whatever the thread count. */
#ifndef ECS_SYNTH_H
#define ECS_SYNTH_H

#include "ecs/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ECS_SYNTH_MAX_CLASSES 6

typedef struct ecs_synth_params {
  int count; /* images in all */
  uint64_t seed;
  int size;           /* side of the square images in pixels (default 128; 64..1024) */
  int n_classes;      /* 1..ECS_SYNTH_MAX_CLASSES (default 6) */
  float val_fraction; /* share of the images listed in val.txt (default 0.2) */
  int jpeg_quality;   /* default 90 */
  int n_threads;      /* <= 0: all cores */
} ecs_synth_params;

void ecs_synth_defaults(ecs_synth_params *p);
/* The class names, in id order (id = index + 1). */
const char *ecs_synth_class_name(int index);

/* One image and its mask in memory: rgb is size*size*3 bytes, mask size*size class ids (255
 * ignore), labels[k] = 1 when class k+1 is an image-level label. */
ecs_status ecs_synth_render(const ecs_synth_params *p, int index, uint8_t *rgb, uint8_t *mask,
                            uint8_t labels[ECS_SYNTH_MAX_CLASSES], ecs_err *err);

/* Writes the whole dataset under out_dir (created; files already there are replaced). */
ecs_status ecs_synth_write(const ecs_synth_params *p, const char *out_dir, ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
