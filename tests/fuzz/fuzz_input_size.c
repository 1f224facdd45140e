/* fuzz_input_size.c - libFuzzer target for the input-size policy: any width, height, model side
 * and aspect cap give a canvas at least the model's minimum, at most side x cap*side, holding
 * the scaled image, and a result on that canvas brought back has the image's size with every
 * map inside its buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "input-size.h"

static void free_result(ecs_cam_result *r) {
  free(r->cams);
  free(r->erased_cams);
  free(r->erase_region);
  free(r->erased_image);
  free(r->cam_mask);
  free(r->head_mask);
  free(r->ecs_mask);
  free(r->mask);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  int w = 1 + data[0] % 64 * (1 + data[2] % 4), h = 1 + data[1] % 64 * (1 + data[3] % 4);
  api_input_policy pol = {.side = data[4] & 1 ? 0 : 8 + data[4] % 120,
                          .max_aspect = 1 + (data[3] >> 4) % 8};
  api_input_plan plan;
  bool resize = api_input_size(w, h, &pol, &plan);
  int rw = plan.canvas_w, rh = plan.canvas_h;
  if (rw < ECS_MODEL_MIN_SIDE || rh < ECS_MODEL_MIN_SIDE) abort();
  if (!resize && (rw != w || rh != h || plan.scaled_w != w || plan.scaled_h != h)) abort();
  if (plan.scaled_w < 1 || plan.scaled_h < 1 || plan.x < 0 || plan.y < 0 ||
      plan.x + plan.scaled_w > rw || plan.y + plan.scaled_h > rh)
    abort();
  int side = pol.side ? pol.side : (w < h ? w : h) < 8 ? 8 : (w < h ? w : h);
  int sh = rw < rh ? rw : rh, lo = rw < rh ? rh : rw;
  if (sh != side || lo > pol.max_aspect * side + 1) abort();
  if ((size_t)rw * rh > 1u << 20) return 0;
  ecs_cam_result r = {.w = rw, .h = rh, .n_labels = 1 + data[2] % 3};
  size_t hw = (size_t)rw * rh;
  r.cams = malloc(sizeof(float) * hw * r.n_labels);
  r.mask = malloc(sizeof *r.mask * hw);
  r.ecs_mask = malloc(sizeof *r.ecs_mask * hw);
  r.erased_image = malloc(hw * 3);
  if (data[3] & 1) r.erased_cams = calloc(hw * r.n_labels, sizeof(float));
  for (size_t p = 0; p < hw; p++) {
    uint8_t v = data[4 + p % (size - 4)];
    r.mask[p] = v;
    r.ecs_mask[p] = v & 1 ? ECS_MASK_IGNORE : v;
    memset(r.erased_image + p * 3, v, 3);
  }
  for (size_t p = 0; p < hw * r.n_labels; p++)
    r.cams[p] = (float)data[p % size] / 255.0f;
  ecs_err e;
  if (api_cam_result_resize(&r, &plan, w, h, &e) != ECS_OK) abort();
  if (r.w != w || r.h != h) abort();
  int64_t phi = 0;
  for (size_t p = 0; p < (size_t)w * h; p++) {
    phi += r.ecs_mask[p] != ECS_MASK_IGNORE;
    if (r.cams[p] < 0 || r.cams[p] > 1) abort(); /* bilinear stays within the samples' range */
  }
  if (resize && phi != r.phi) abort(); /* recounted when resized; else the engine's own */
  free_result(&r);
  return 0;
}
