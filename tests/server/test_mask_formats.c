/* test_mask_formats.c - COCO RLE, Label Studio brush RLE and polygons of a mask's classes,
 * pinned on worked examples (docs/integrations: the COCO and brush headers) and checked by
 * properties on random masks: the brush RLE decodes back to the mask, and the polygon rings'
 * signed areas add up to the class's pixel count. The Python integration tests decode the same
 * formats with pycocotools and label-studio-sdk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mask-formats.h"

static void coco_worked_example(void **state) {
  (void)state;
  /* 4 rows x 5 columns, a 2 x 3 block at rows 1..2, columns 1..3: runs 5 2 2 2 2 2 5. */
  enum { H = 4, W = 5 };
  uint16_t m[H * W] = {0};
  for (int y = 1; y <= 2; y++)
    for (int x = 1; x <= 3; x++)
      m[y * W + x] = 2;
  char *s = api_coco_rle(m, W, H, 2);
  assert_string_equal(s, "5220003");
  free(s);
  uint16_t full[9];
  for (int i = 0; i < 9; i++)
    full[i] = 1;
  s = api_coco_rle(full, 3, 3, 1); /* runs 0 9 */
  assert_string_equal(s, "09");
  free(s);
  api_mask_stats st;
  api_mask_class_stats(m, W, H, 2, &st);
  assert_int_equal(st.area, 6);
  assert_int_equal(st.x0, 1);
  assert_int_equal(st.y0, 1);
  assert_int_equal(st.x1, 3);
  assert_int_equal(st.y1, 2);
}

/* A reader of the brush format's repeat and literal chunks, after its bit layout. */
static uint32_t get_bits(const uint8_t *b, size_t *pos, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++, (*pos)++)
    v = v << 1 | ((b[*pos >> 3] >> (7 - (*pos & 7))) & 1u);
  return v;
}

static uint8_t *brush_decode(const uint8_t *b, size_t nbytes, size_t *n) {
  size_t pos = 0;
  *n = get_bits(b, &pos, 32);
  int word = (int)get_bits(b, &pos, 5) + 1, sizes[4];
  for (int i = 0; i < 4; i++)
    sizes[i] = (int)get_bits(b, &pos, 4) + 1;
  uint8_t *out = malloc(*n);
  size_t o = 0;
  while (o < *n && pos + 3 <= nbytes * 8) {
    uint32_t rep = get_bits(b, &pos, 1), k = get_bits(b, &pos, 2);
    size_t count = get_bits(b, &pos, sizes[k]) + 1;
    if (rep) {
      uint8_t v = (uint8_t)get_bits(b, &pos, word);
      for (size_t i = 0; i < count && o < *n; i++)
        out[o++] = v;
    } else {
      for (size_t i = 0; i < count && o < *n; i++)
        out[o++] = (uint8_t)get_bits(b, &pos, word);
    }
  }
  assert_int_equal(o, *n);
  return out;
}

static void brush_header_and_round_trip(void **state) {
  (void)state;
  enum { W = 64, H = 48 };
  uint16_t m[W * H];
  srand(7);
  for (int i = 0; i < W * H; i++)
    m[i] = (uint16_t)(rand() % 4 == 0 ? 5 : rand() % 3);
  size_t n = 0;
  uint8_t *b = api_ls_brush_rle(m, W, H, 5, &n);
  static const uint8_t head[] = {0, 0, 48, 0, 57, 27};
  assert_true(n > sizeof head);
  assert_memory_equal(b, head, sizeof head);
  size_t dn = 0;
  uint8_t *d = brush_decode(b, n, &dn);
  assert_int_equal(dn, W * H * 4);
  for (int i = 0; i < W * H; i++)
    for (int c = 0; c < 4; c++)
      assert_int_equal(d[i * 4 + c], m[i] == 5 ? 255 : 0);
  free(d);
  free(b);
  /* A full 300 x 300 mask: runs beyond 65536 bytes are split. */
  uint16_t *big = malloc(sizeof *big * 300 * 300);
  for (int i = 0; i < 300 * 300; i++)
    big[i] = 1;
  b = api_ls_brush_rle(big, 300, 300, 1, &n);
  d = brush_decode(b, n, &dn);
  assert_int_equal(dn, 300 * 300 * 4);
  for (size_t i = 0; i < dn; i++)
    assert_int_equal(d[i], 255);
  free(d);
  free(b);
  free(big);
}

static double ring_area(const api_ring *r) {
  double a = 0;
  for (int i = 0; i < r->n; i++) {
    int j = (i + 1) % r->n;
    a += r->xy[2 * i] * r->xy[2 * j + 1] - r->xy[2 * j] * r->xy[2 * i + 1];
  }
  return a / 2;
}

static void polygon_square_with_hole(void **state) {
  (void)state;
  enum { W = 7, H = 7 };
  uint16_t m[W * H] = {0};
  for (int y = 1; y <= 5; y++)
    for (int x = 1; x <= 5; x++)
      m[y * W + x] = 1;
  m[3 * W + 3] = 0;
  api_rings r;
  assert_true(api_mask_polygons(m, W, H, 1, 0, &r));
  assert_int_equal(r.n, 2);
  int holes = 0;
  for (int i = 0; i < r.n; i++) {
    holes += r.ring[i].hole;
    assert_int_equal(r.ring[i].n, 4); /* only the corners */
    assert_true(r.ring[i].hole ? ring_area(&r.ring[i]) == -1 : ring_area(&r.ring[i]) == 25);
  }
  assert_int_equal(holes, 1);
  api_rings_free(&r);
  /* The outer ring, clockwise on screen from the top-left corner. */
  m[3 * W + 3] = 1;
  assert_true(api_mask_polygons(m, W, H, 1, 1.0, &r));
  assert_int_equal(r.n, 1);
  const double want[8] = {1, 1, 6, 1, 6, 6, 1, 6};
  assert_int_equal(r.ring[0].n, 4);
  for (int i = 0; i < 8; i++)
    assert_true(r.ring[0].xy[i] == want[i]);
  api_rings_free(&r);
}

static void polygon_diagonal_pixels_are_apart(void **state) {
  (void)state;
  uint16_t m[4] = {1, 0, 0, 1};
  api_rings r;
  assert_true(api_mask_polygons(m, 2, 2, 1, 0, &r));
  assert_int_equal(r.n, 2);
  for (int i = 0; i < r.n; i++) {
    assert_false(r.ring[i].hole);
    assert_true(ring_area(&r.ring[i]) == 1);
  }
  api_rings_free(&r);
  /* A lone pixel survives any tolerance. */
  uint16_t one = 1;
  assert_true(api_mask_polygons(&one, 1, 1, 1, 5.0, &r));
  assert_int_equal(r.n, 1);
  assert_true(ring_area(&r.ring[0]) == 1);
  api_rings_free(&r);
}

static void polygon_areas_add_up_on_random_masks(void **state) {
  (void)state;
  enum { W = 37, H = 29 };
  uint16_t m[W * H];
  srand(11);
  for (int t = 0; t < 50; t++) {
    for (int i = 0; i < W * H; i++)
      m[i] = (uint16_t)(rand() % 5 == 0 ? 255 : rand() % 3);
    for (uint16_t cls = 1; cls <= 2; cls++) {
      api_mask_stats st;
      api_mask_class_stats(m, W, H, cls, &st);
      api_rings r;
      assert_true(api_mask_polygons(m, W, H, cls, 0, &r));
      double a = 0;
      for (int i = 0; i < r.n; i++) {
        a += ring_area(&r.ring[i]);
        assert_true(r.ring[i].hole == (ring_area(&r.ring[i]) < 0));
        for (int k = 0; k < r.ring[i].n; k++) {
          assert_true(r.ring[i].xy[2 * k] >= 0 && r.ring[i].xy[2 * k] <= W);
          assert_true(r.ring[i].xy[2 * k + 1] >= 0 && r.ring[i].xy[2 * k + 1] <= H);
        }
      }
      assert_true(a == (double)st.area);
      api_rings_free(&r);
    }
  }
}

static void json_lists_present_classes(void **state) {
  (void)state;
  static const char *names[3] = {"cat", "dog", "bird"};
  api_model_info info = {.name = "t", .version = 1, .n_classes = 3, .class_names = names};
  uint16_t m[6] = {0, 3, 3, 255, 0, 0}; /* 2 x 3; class 3 only; 255 is no class */
  json_t *c = api_coco_json(&info, m, 3, 2);
  assert_int_equal(json_array_size(c), 1);
  json_t *it = json_array_get(c, 0);
  assert_int_equal(json_integer_value(json_object_get(it, "id")), 3);
  assert_string_equal(json_string_value(json_object_get(it, "name")), "bird");
  assert_int_equal(json_integer_value(json_object_get(it, "area")), 2);
  json_t *bbox = json_object_get(it, "bbox");
  assert_int_equal(json_integer_value(json_array_get(bbox, 0)), 1);
  assert_int_equal(json_integer_value(json_array_get(bbox, 2)), 2);
  assert_int_equal(json_integer_value(json_array_get(bbox, 3)), 1);
  json_decref(c);
  json_t *p = api_polygons_json(&info, m, 3, 2, 1.0);
  assert_int_equal(json_array_size(p), 1);
  assert_int_equal(json_array_size(json_object_get(json_array_get(p, 0), "rings")), 1);
  json_decref(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(coco_worked_example),
      cmocka_unit_test(brush_header_and_round_trip),
      cmocka_unit_test(polygon_square_with_hole),
      cmocka_unit_test(polygon_diagonal_pixels_are_apart),
      cmocka_unit_test(polygon_areas_add_up_on_random_masks),
      cmocka_unit_test(json_lists_present_classes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
