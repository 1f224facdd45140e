/* fuzz_labelstudio.c - libFuzzer target for the Label Studio ML backend's parsing and
 * rendering (api/labelstudio.c, api/mask-formats.c).
 *
 * The input is a labeling config (up to the first NUL), a task as JSON (up to the next NUL)
 * and the rest a combined mask: two bytes width and height (1..64), then the pixels. It drives
 * api_ls_parse_config, api_ls_read_task and, on a mask, api_ls_prediction (brush RLE and
 * polygons), the COCO and polygon JSON of /cam; every label a task keeps must be a class. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "labelstudio.h"
#include "mask-formats.h"

static const char *k_names[4] = {"cat", "dog", "bird", "fish"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *end = data + size, *z1 = memchr(data, 0, size);
  if (!z1) return 0;
  const uint8_t *z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1));
  if (!z2) return 0;
  /* The server reads the config out of a JSON string, so it is valid UTF-8. */
  json_t *valid = json_stringn((const char *)data, (size_t)(z1 - data));
  if (!valid) return 0;
  json_decref(valid);
  char *xml = strndup((const char *)data, (size_t)(z1 - data));
  api_model_info info = {.name = "fuzz", .version = 1, .n_classes = 4, .class_names = k_names};
  api_ls_config cfg;
  api_error err;
  if (api_ls_parse_config(xml, &cfg, &err)) {
    json_t *task = json_loadb((const char *)z1 + 1, (size_t)(z2 - z1 - 1), 0, NULL);
    api_ls_task t;
    if (task && api_ls_read_task(task, &cfg, &info, &t, &err)) {
      for (int i = 0; i < t.n_labels; i++) {
        int found = 0;
        for (int k = 0; k < 4; k++)
          found |= strcmp(t.labels[i].name, k_names[k]) == 0;
        if (!found) abort();
      }
    }
    json_decref(task);
    const uint8_t *m = z2 + 1;
    if (end - m >= 2) {
      int w = m[0] % 64 + 1, h = m[1] % 64 + 1;
      size_t px = (size_t)w * (size_t)h;
      if ((size_t)(end - m - 2) >= px) {
        uint16_t *mask = malloc(sizeof *mask * px);
        for (size_t i = 0; i < px; i++)
          mask[i] = m[2 + i] % 6 == 5 ? ECS_MASK_IGNORE : m[2 + i] % 6;
        float scores[4] = {0.1f, 0.2f, 0.3f, 0.4f};
        ecs_cam_result res = {.w = w, .h = h, .n_classes = 4, .mask = mask, .scores = scores};
        json_t *p = api_ls_prediction(&cfg, &info, &res, "fuzz@1");
        json_t *c = api_coco_json(&info, mask, w, h);
        json_t *g = api_polygons_json(&info, mask, w, h, 1.0);
        if (!p || !c || !g) abort();
        json_decref(p);
        json_decref(c);
        json_decref(g);
        free(mask);
      }
    }
  }
  free(xml);
  return 0;
}
