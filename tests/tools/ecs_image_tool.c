/* ecs_image_tool.c - exposes the image codecs to tests/python/test_image_pillow.py, which
 * compares them with Pillow and PyTorch.
 *
 *   ecs_image_tool probe IN                    prints "W H FORMAT"
 *   ecs_image_tool decode IN OUT [grey]        decodes (keeping grey when asked) to a raw file
 *   ecs_image_tool indexed IN OUT              palette indices of a PNG mask, raw
 *   ecs_image_tool resize IN OUT W H           decode, bilinear resize, raw
 *   ecs_image_tool resample IN OUT W H         decode, antialiased resample, raw
 *   ecs_image_tool encode IN OUT [QUALITY]     decode, then write OUT (.png or .jpg)
 *   ecs_image_tool vocmask W H OUT             a palette PNG with index (x + W*y) % 22, and 255
 *                                              on the last row, in the VOC palette
 *   ecs_image_tool chw IN OUT                  ImageNet-normalised float32 CHW, raw floats
 *
 * Raw images are three little-endian int32 (width, height, channels) then the bytes. Errors go
 * to stderr with exit status 2 (3 for ECS_ERR_LIMIT). */
#ifndef ECS_HAVE_IO
/* The engine-only build (ECSNET_ENGINE_ONLY) has no image codecs. */
#include <stdio.h>
int main(void) {
  fputs("ecs_image_tool: image codecs are not part of this build\n", stderr);
  return 1;
}
#else
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecs/image.h"

static int fail(const ecs_err *err) {
  fprintf(stderr, "error: %s: %s\n", ecs_status_str(err->status), err->msg);
  return err->status == ECS_ERR_LIMIT ? 3 : 2;
}

static int write_raw(const char *path, const ecs_image *img) {
  FILE *f = fopen(path, "wb");
  if (!f) return 2;
  int32_t hdr[3] = {img->width, img->height, img->channels};
  size_t n = (size_t)img->width * img->height * img->channels;
  int ok = fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(img->data, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : 2;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s probe|decode|indexed|resize|resample|encode|vocmask|chw ...\n",
            argv[0]);
    return 1;
  }
  const char *cmd = argv[1];
  ecs_err err = {0};
  ecs_image *img = NULL;
  int rc = 0;
  if (strcmp(cmd, "vocmask") == 0 && argc == 5) {
    int w = atoi(argv[2]), h = atoi(argv[3]);
    uint8_t *idx = malloc((size_t)w * h), *buf;
    size_t n;
    for (int i = 0; i < w * h; i++)
      idx[i] = i >= w * (h - 1) ? 255 : (uint8_t)(i % 22);
    uint8_t pal[256][3];
    ecs_voc_palette(pal);
    if (ecs_png_encode_palette(idx, w, h, (const uint8_t(*)[3])pal, 256, &buf, &n, &err) !=
            ECS_OK ||
        ecs_file_write(argv[4], buf, n, &err) != ECS_OK)
      rc = fail(&err);
    else
      free(buf);
    free(idx);
    return rc;
  }
  if (strcmp(cmd, "probe") == 0) {
    uint8_t *bytes;
    size_t n;
    int w, h;
    ecs_image_format f;
    if (ecs_file_read(argv[2], 0, &bytes, &n, &err) != ECS_OK) return fail(&err);
    ecs_status st = ecs_image_probe(bytes, n, &w, &h, &f, &err);
    free(bytes);
    if (st != ECS_OK) return fail(&err);
    printf("%d %d %s\n", w, h, ecs_image_format_name(f));
    return 0;
  }
  if (strcmp(cmd, "indexed") == 0 && argc == 4) {
    uint8_t *bytes;
    size_t n;
    if (ecs_file_read(argv[2], 0, &bytes, &n, &err) != ECS_OK) return fail(&err);
    ecs_status st = ecs_image_decode_indexed(bytes, n, 0, &img, &err);
    free(bytes);
    if (st != ECS_OK) return fail(&err);
    rc = write_raw(argv[3], img);
    ecs_image_free(img);
    return rc;
  }
  if (argc < 4) return 1;
  unsigned flags = argc > 4 && strcmp(cmd, "decode") == 0 && strcmp(argv[4], "grey") == 0
                       ? ECS_DECODE_KEEP_GREY
                       : 0;
  if (ecs_image_read(argv[2], 0, flags, &img, &err) != ECS_OK) return fail(&err);
  if (strcmp(cmd, "decode") == 0) {
    rc = write_raw(argv[3], img);
  } else if ((strcmp(cmd, "resize") == 0 || strcmp(cmd, "resample") == 0) && argc == 6) {
    ecs_image *r = strcmp(cmd, "resize") == 0
                       ? ecs_image_resize(img, atoi(argv[4]), atoi(argv[5]), &err)
                       : ecs_image_resample(img, atoi(argv[4]), atoi(argv[5]), &err);
    rc = r ? write_raw(argv[3], r) : fail(&err);
    ecs_image_free(r);
  } else if (strcmp(cmd, "encode") == 0) {
    if (ecs_image_write(argv[3], img, argc > 4 ? atoi(argv[4]) : 90, &err) != ECS_OK)
      rc = fail(&err);
  } else if (strcmp(cmd, "chw") == 0) {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    size_t n = (size_t)3 * img->width * img->height;
    float *chw = malloc(n * sizeof *chw);
    ecs_image_to_chw(img, mean, std, chw);
    FILE *f = fopen(argv[3], "wb");
    rc = f && fwrite(chw, sizeof *chw, n, f) == n ? 0 : 2;
    if (f) fclose(f);
    free(chw);
  } else {
    rc = 1;
  }
  ecs_image_free(img);
  return rc;
}
#endif
