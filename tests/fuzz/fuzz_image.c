/* fuzz_image.c - libFuzzer target for the image decoders: the bytes an upload could carry go
 * through probe and every decode entry point under a pixel limit. Besides crashes and
 * sanitizer reports, it checks the promises the server relies on: a decode succeeds only
 * within the limit, with the size the probe announced, and a failure leaves no image behind. */
#include <stdint.h>
#include <stdlib.h>

#include "ecs/image.h"

enum { MAX_PIXELS = 1 << 20 };

static void check(int ok) {
  if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ecs_err err;
  int w = 0, h = 0;
  ecs_image_format f;
  ecs_status probed = ecs_image_probe(data, size, &w, &h, &f, &err);

  ecs_image *img = NULL;
  ecs_status st = ecs_image_decode(data, size, MAX_PIXELS, &img, &err);
  check((st == ECS_OK) == (img != NULL));
  if (st == ECS_OK) {
    /* Anything that decodes must have probed, to the same size, within the limit. */
    check(probed == ECS_OK);
    check(img->width == w && img->height == h);
    check((size_t)w * (size_t)h <= MAX_PIXELS);
    check(img->channels == 3);
    volatile uint8_t sink = img->data[(size_t)w * h * 3 - 1];
    (void)sink;
  } else {
    check(st == ECS_ERR_FORMAT || st == ECS_ERR_LIMIT || st == ECS_ERR_NOMEM);
  }
  ecs_image_free(img);

  img = NULL;
  st = ecs_image_decode_ex(data, size, MAX_PIXELS, ECS_DECODE_KEEP_GREY, &img, &err);
  check((st == ECS_OK) == (img != NULL));
  ecs_image_free(img);

  img = NULL;
  st = ecs_image_decode_indexed(data, size, MAX_PIXELS, &img, &err);
  if (st == ECS_OK) check(img->channels == 1);
  ecs_image_free(img);
  return 0;
}
