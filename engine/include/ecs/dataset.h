/* ecs/dataset.h - a VOC-layout dataset: its classes, splits, image-level labels and files.
 *
 * Layout (under one folder): JPEGImages/ID.jpg; optional SegmentationClass/ID.png (palette
 * indices = class ids, 255 ignore; at most ECS_DATASET_MAX_MASK_CLASSES classes);
 * ImageSets/Segmentation/{train,val,...}.txt (one ID a line); classes.txt (object class names, one
 * a line, ids 1..K in order; background is implicit; when absent, the 20 PASCAL VOC classes);
 * labels.txt ("ID id id ...": the image-level labels). Where labels.txt is absent, an image's
 * labels come from its SegmentationClass mask (the ids present other than 0 and 255) or else from
 * VOC's Annotations/ID.xml (<object><name>).
 *
 * Opening reads only the small text files; images and masks are read on demand, so a loader
 * can decode them on its own threads. Every error names the file and line. */
#ifndef ECS_DATASET_H
#define ECS_DATASET_H

#include "ecs/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* As many classes as a model may have (ECS_MAX_CLASSES - 1: ImageNet's 1000 fit). Masks are
 * 8-bit palette PNGs, so a dataset with SegmentationClass/ has at most 254 classes; one with
 * more takes its image-level labels from labels.txt or Annotations/ and trains, without the
 * masks that evaluation needs. */
#define ECS_DATASET_MAX_CLASSES      1024
#define ECS_DATASET_MAX_MASK_CLASSES 254

typedef struct ecs_dataset ecs_dataset;

ecs_dataset *ecs_dataset_open(const char *dir, ecs_err *err);
void ecs_dataset_free(ecs_dataset *ds); /* accepts NULL */
const char *ecs_dataset_dir(const ecs_dataset *ds);
int ecs_dataset_n_classes(const ecs_dataset *ds);
const char *ecs_dataset_class_name(const ecs_dataset *ds, int id); /* 1..K, else NULL */
int ecs_dataset_class_id(const ecs_dataset *ds, const char *name); /* 0 when unknown */

/* The ids of a split (ImageSets/Segmentation/<split>.txt), in file order. The array belongs to
 * the dataset. */
ecs_status ecs_dataset_split(ecs_dataset *ds, const char *split, const char *const **ids, size_t *n,
                             ecs_err *err);
/* Image-level labels of one id as K bytes (label k+1 at index k); derived from the mask or the
 * annotation when labels.txt is absent (then read and cached on first use). */
ecs_status ecs_dataset_labels(ecs_dataset *ds, const char *id, const uint8_t **labels,
                              ecs_err *err);
int ecs_dataset_has_masks(const ecs_dataset *ds);
ecs_status ecs_dataset_image(const ecs_dataset *ds, const char *id, size_t max_pixels,
                             ecs_image **out, ecs_err *err);
/* The ground-truth mask (1 channel of class ids); ECS_ERR_IO when the file is absent, and
 * ECS_ERR_FORMAT naming the file when it holds an id above K other than 255. */
ecs_status ecs_dataset_mask(const ecs_dataset *ds, const char *id, ecs_image **out, ecs_err *err);

/* What `GET /admin/datasets` and `ecsnet train` show before they start: the splits and their
 * sizes, and the first problems found (missing images or masks, labels outside the classes,
 * images without labels). check_files = 0 skips stat()ing every image. */
typedef struct ecs_dataset_summary {
  int n_classes;
  size_t n_train, n_val;
  size_t n_labelled;     /* images of train + val with at least one label */
  size_t n_masks;        /* of those, with a mask file */
  size_t n_missing;      /* listed images whose JPEG is missing */
  size_t n_problems;     /* all problems found */
  char problems[4][256]; /* the first few, one line each */
} ecs_dataset_summary;

ecs_status ecs_dataset_check(ecs_dataset *ds, int check_files, ecs_dataset_summary *out,
                             ecs_err *err);

#ifdef __cplusplus
}
#endif
#endif
