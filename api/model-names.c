/* model-names.c - the output names and result freeing of model.h.
 *
 * Apart from the loader (model.c) so that the request parsers and the renderer link without
 * the model implementation: the fuzz targets build exactly these files. */
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const char *const k_output_names[API_OUT_COUNT] = {
    "cam", "erased_cam", "mask", "cam_mask", "ecs_mask", "head_mask", "scores", "erased_image",
    "overlay",
};

const char *api_output_name(unsigned bit) {
  for (int i = 0; i < API_OUT_COUNT; i++)
    if (bit == 1u << i) return k_output_names[i];
  return NULL;
}

unsigned api_output_parse(const char *name, size_t len) {
  for (int i = 0; i < API_OUT_COUNT; i++)
    if (strlen(k_output_names[i]) == len && memcmp(k_output_names[i], name, len) == 0)
      return 1u << i;
  return 0;
}

void api_cam_result_free(api_cam_result *r) {
  if (!r) return;
  free(r->labels);
  free(r->scores);
  free(r->cams);
  free(r->erased_cams);
  free(r->mask);
  free(r->cam_mask);
  free(r->ecs_mask);
  free(r->head_mask);
  free(r->erased_image);
  free(r->overlay);
  free(r->erase_region);
  memset(r, 0, sizeof *r);
}
