/* image.c - the image object, format sniffing, geometry, the network-input conversion, the VOC
 * palette and whole-file helpers. The codecs themselves are in jpeg.c and png.c.
 *
 * Sizes are int in the API (what the codecs use) but every product is computed in size_t after
 * a range check, so a header claiming 65535 x 65535 cannot overflow an allocation size. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io-impl.h"

const char *ecs_image_format_name(ecs_image_format f) {
  switch (f) {
  case ECS_IMAGE_JPEG: return "jpeg";
  case ECS_IMAGE_PNG: return "png";
  default: return "unknown";
  }
}

const char *ecs_image_format_mime(ecs_image_format f) {
  switch (f) {
  case ECS_IMAGE_JPEG: return "image/jpeg";
  case ECS_IMAGE_PNG: return "image/png";
  default: return NULL;
  }
}

ecs_image *ecs_image_new(int width, int height, int channels, ecs_err *err) {
  if (width < 1 || height < 1 || (channels != 1 && channels != 3)) {
    ecs_err_set(err, ECS_ERR_INVALID, "image: bad size %dx%d with %d channels", width, height,
                channels);
    return NULL;
  }
  size_t bytes = (size_t)width * (size_t)height * (size_t)channels;
  if (bytes > ((size_t)1 << 31)) {
    ecs_err_set(err, ECS_ERR_LIMIT, "image: %dx%dx%d is over 2 GiB", width, height, channels);
    return NULL;
  }
  ecs_image *img = calloc(1, sizeof *img);
  uint8_t *data = img ? calloc(bytes, 1) : NULL;
  if (!data) {
    free(img);
    ecs_err_set(err, ECS_ERR_NOMEM, "image: cannot allocate %zu bytes", bytes);
    return NULL;
  }
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->data = data;
  return img;
}

void ecs_image_free(ecs_image *img) {
  if (!img) return;
  free(img->data);
  free(img);
}

static size_t image_bytes(const ecs_image *img) {
  return (size_t)img->width * (size_t)img->height * (size_t)img->channels;
}

ecs_image *ecs_image_clone(const ecs_image *img, ecs_err *err) {
  if (!img) {
    ecs_err_set(err, ECS_ERR_INVALID, "image: clone of NULL");
    return NULL;
  }
  ecs_image *c = ecs_image_new(img->width, img->height, img->channels, err);
  if (c) memcpy(c->data, img->data, image_bytes(img));
  return c;
}

ecs_status ecs_io_check_pixels(int w, int h, size_t max_pixels, ecs_err *err) {
  if (w < 1 || h < 1) return ecs_err_set(err, ECS_ERR_FORMAT, "image: header declares %dx%d", w, h);
  size_t px = (size_t)w * (size_t)h;
  size_t lim = max_pixels ? max_pixels : ECS_IO_HARD_MAX_PIXELS;
  if (lim > ECS_IO_HARD_MAX_PIXELS) lim = ECS_IO_HARD_MAX_PIXELS;
  if (px > lim)
    return ecs_err_set(err, ECS_ERR_LIMIT, "image: %dx%d is %zu pixels, over the limit of %zu", w,
                       h, px, lim);
  return ECS_OK;
}

static ecs_image_format sniff(const uint8_t *b, size_t n) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ECS_IMAGE_JPEG;
  if (n >= 8 && memcmp(b, png_sig, 8) == 0) return ECS_IMAGE_PNG;
  return ECS_IMAGE_UNKNOWN;
}

ecs_status ecs_image_probe(const void *bytes, size_t n, int *width, int *height,
                           ecs_image_format *format, ecs_err *err) {
  const uint8_t *b = bytes;
  if (format) *format = ECS_IMAGE_UNKNOWN;
  if (!b || !width || !height)
    return ecs_err_set(err, ECS_ERR_INVALID, "image: probe without data");
  ecs_image_format f = sniff(b, n);
  ecs_status st;
  if (f == ECS_IMAGE_JPEG) {
    ecs_jpeg_info info;
    st = ecs_io_jpeg_scan(b, n, &info, err);
    if (st != ECS_OK) return st;
    int swap = info.orientation >= 5 && info.orientation <= 8;
    *width = swap ? info.height : info.width;
    *height = swap ? info.width : info.height;
  } else if (f == ECS_IMAGE_PNG) {
    st = ecs_io_png_probe(b, n, width, height, err);
    if (st != ECS_OK) return st;
  } else {
    return ecs_err_set(err, ECS_ERR_FORMAT, "image: not a JPEG or PNG (%zu bytes)", n);
  }
  if (format) *format = f;
  return ECS_OK;
}

ecs_status ecs_image_decode_ex(const void *bytes, size_t n, size_t max_pixels, unsigned flags,
                               ecs_image **out, ecs_err *err) {
  if (!out) return ecs_err_set(err, ECS_ERR_INVALID, "image: decode without an output");
  *out = NULL;
  if (!bytes) return ecs_err_set(err, ECS_ERR_INVALID, "image: decode without data");
  switch (sniff(bytes, n)) {
  case ECS_IMAGE_JPEG: return ecs_io_jpeg_decode(bytes, n, max_pixels, flags, out, err);
  case ECS_IMAGE_PNG: return ecs_io_png_decode(bytes, n, max_pixels, flags, 0, out, err);
  default: return ecs_err_set(err, ECS_ERR_FORMAT, "image: not a JPEG or PNG (%zu bytes)", n);
  }
}

ecs_status ecs_image_decode(const void *bytes, size_t n, size_t max_pixels, ecs_image **out,
                            ecs_err *err) {
  return ecs_image_decode_ex(bytes, n, max_pixels, 0, out, err);
}

ecs_status ecs_image_decode_indexed(const void *bytes, size_t n, size_t max_pixels, ecs_image **out,
                                    ecs_err *err) {
  if (!out) return ecs_err_set(err, ECS_ERR_INVALID, "image: decode without an output");
  *out = NULL;
  if (!bytes || sniff(bytes, n) != ECS_IMAGE_PNG)
    return ecs_err_set(err, ECS_ERR_FORMAT, "image: an indexed mask must be a PNG");
  return ecs_io_png_decode(bytes, n, max_pixels, ECS_DECODE_KEEP_GREY, 1, out, err);
}

/* ---- orientation and geometry ------------------------------------------------------------- */

ecs_status ecs_io_orient(ecs_image **img, int o, ecs_err *err) {
  if (o < 2 || o > 8) return ECS_OK;
  const ecs_image *s = *img;
  int w = s->width, h = s->height, c = s->channels;
  int swap = o >= 5;
  ecs_image *d = ecs_image_new(swap ? h : w, swap ? w : h, c, err);
  if (!d) return err ? err->status : ECS_ERR_NOMEM;
  /* For each output pixel (x, y), the stored pixel it shows (the inverse of the EXIF
   * transform); the eight cases are the dihedral group of the square. */
  for (int y = 0; y < d->height; y++) {
    for (int x = 0; x < d->width; x++) {
      int sx, sy;
      switch (o) {
      case 2: sx = w - 1 - x, sy = y; break;
      case 3: sx = w - 1 - x, sy = h - 1 - y; break;
      case 4: sx = x, sy = h - 1 - y; break;
      case 5: sx = y, sy = x; break;
      case 6: sx = y, sy = h - 1 - x; break;
      case 7: sx = w - 1 - y, sy = h - 1 - x; break;
      default: sx = w - 1 - y, sy = x; break; /* 8 */
      }
      memcpy(d->data + ((size_t)y * d->width + x) * c, s->data + ((size_t)sy * w + sx) * c,
             (size_t)c);
    }
  }
  ecs_image_free(*img);
  *img = d;
  return ECS_OK;
}

ecs_image *ecs_image_resize(const ecs_image *src, int width, int height, ecs_err *err) {
  if (!src) {
    ecs_err_set(err, ECS_ERR_INVALID, "image: resize of NULL");
    return NULL;
  }
  ecs_image *d = ecs_image_new(width, height, src->channels, err);
  if (!d) return NULL;
  int c = src->channels, sw = src->width, sh = src->height;
  double fx = (double)sw / width, fy = (double)sh / height;
  /* Column taps once per row of output, not once per pixel. */
  int *x0 = malloc(sizeof(int) * (size_t)width * 2);
  float *lx = malloc(sizeof(float) * (size_t)width);
  if (!x0 || !lx) {
    free(x0);
    free(lx);
    ecs_image_free(d);
    ecs_err_set(err, ECS_ERR_NOMEM, "image: resize: out of memory");
    return NULL;
  }
  int *x1 = x0 + width;
  for (int x = 0; x < width; x++) {
    double sx = (x + 0.5) * fx - 0.5;
    if (sx < 0) sx = 0;
    int i = (int)sx;
    if (i > sw - 1) i = sw - 1;
    x0[x] = i;
    x1[x] = i + 1 < sw ? i + 1 : sw - 1;
    lx[x] = (float)(sx - i);
  }
  for (int y = 0; y < height; y++) {
    double sy = (y + 0.5) * fy - 0.5;
    if (sy < 0) sy = 0;
    int y0 = (int)sy;
    if (y0 > sh - 1) y0 = sh - 1;
    int y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
    float ly = (float)(sy - y0);
    const uint8_t *r0 = src->data + (size_t)y0 * sw * c, *r1 = src->data + (size_t)y1 * sw * c;
    uint8_t *o = d->data + (size_t)y * width * c;
    for (int x = 0; x < width; x++) {
      for (int k = 0; k < c; k++) {
        float a = r0[x0[x] * c + k] + lx[x] * (r0[x1[x] * c + k] - r0[x0[x] * c + k]);
        float b = r1[x0[x] * c + k] + lx[x] * (r1[x1[x] * c + k] - r1[x0[x] * c + k]);
        float v = a + ly * (b - a);
        o[x * c + k] = (uint8_t)fminf(255.0f, fmaxf(0.0f, v + 0.5f));
      }
    }
  }
  free(x0);
  free(lx);
  return d;
}

void ecs_image_flip_h(ecs_image *img) {
  if (!img) return;
  int c = img->channels, w = img->width;
  for (int y = 0; y < img->height; y++) {
    uint8_t *row = img->data + (size_t)y * w * c;
    for (int a = 0, b = w - 1; a < b; a++, b--) {
      for (int k = 0; k < c; k++) {
        uint8_t t = row[a * c + k];
        row[a * c + k] = row[b * c + k];
        row[b * c + k] = t;
      }
    }
  }
}

ecs_image *ecs_image_crop(const ecs_image *src, int x, int y, int w, int h, uint8_t fill,
                          ecs_err *err) {
  if (!src) {
    ecs_err_set(err, ECS_ERR_INVALID, "image: crop of NULL");
    return NULL;
  }
  ecs_image *d = ecs_image_new(w, h, src->channels, err);
  if (!d) return NULL;
  int c = src->channels;
  memset(d->data, fill, image_bytes(d));
  /* The overlap of [x, x+w) x [y, y+h) with the source, in 64 bits so offsets cannot wrap. */
  int64_t ox0 = x > 0 ? x : 0, oy0 = y > 0 ? y : 0;
  int64_t ox1 = (int64_t)x + w < src->width ? (int64_t)x + w : src->width;
  int64_t oy1 = (int64_t)y + h < src->height ? (int64_t)y + h : src->height;
  for (int64_t sy = oy0; sy < oy1; sy++)
    memcpy(d->data + ((size_t)(sy - y) * w + (size_t)(ox0 - x)) * c,
           src->data + ((size_t)sy * src->width + (size_t)ox0) * c, (size_t)(ox1 - ox0) * c);
  return d;
}

/* ---- to the network's input ------------------------------------------------------------- */

void ecs_image_to_chw(const ecs_image *img, const float mean[3], const float std[3], float *chw) {
  size_t hw = (size_t)img->width * img->height;
  int c = img->channels;
  for (int k = 0; k < 3; k++) {
    int sk = c == 3 ? k : 0;
    float m = mean[k], inv = 1.0f / std[k];
    float *o = chw + (size_t)k * hw;
    for (size_t i = 0; i < hw; i++)
      o[i] = (img->data[i * c + sk] / 255.0f - m) * inv;
  }
}

void ecs_image_to_chw_bgr(const ecs_image *img, const float mean_bgr[3], float *chw) {
  size_t hw = (size_t)img->width * img->height;
  int c = img->channels;
  for (int k = 0; k < 3; k++) {
    int sk = c == 3 ? 2 - k : 0; /* plane 0 is blue */
    float m = mean_bgr[k];
    float *o = chw + (size_t)k * hw;
    for (size_t i = 0; i < hw; i++)
      o[i] = (float)img->data[i * c + sk] - m;
  }
}

void ecs_voc_palette(uint8_t palette[256][3]) {
  /* The devkit's bitget construction: bit j of each colour channel comes from bits 3j+0/1/2 of
   * the index, written from the most significant end. */
  for (int i = 0; i < 256; i++) {
    int r = 0, g = 0, b = 0, v = i;
    for (int j = 0; j < 8; j++) {
      r |= ((v >> 0) & 1) << (7 - j);
      g |= ((v >> 1) & 1) << (7 - j);
      b |= ((v >> 2) & 1) << (7 - j);
      v >>= 3;
    }
    palette[i][0] = (uint8_t)r;
    palette[i][1] = (uint8_t)g;
    palette[i][2] = (uint8_t)b;
  }
}

/* ---- files -------------------------------------------------------------------------------- */

ecs_status ecs_file_read(const char *path, size_t max_bytes, uint8_t **bytes, size_t *n,
                         ecs_err *err) {
  if (!path || !bytes || !n) return ecs_err_set(err, ECS_ERR_INVALID, "file: bad arguments");
  *bytes = NULL;
  *n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ecs_err_set(err, ECS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return ecs_err_set(err, ECS_ERR_IO, "%s is not a regular file", path);
  }
  size_t size = (size_t)sb.st_size;
  if (max_bytes && size > max_bytes) {
    close(fd);
    return ecs_err_set(err, ECS_ERR_LIMIT, "%s is %zu bytes, over the limit of %zu", path, size,
                       max_bytes);
  }
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) {
    close(fd);
    return ecs_err_set(err, ECS_ERR_NOMEM, "cannot allocate %zu bytes for %s", size, path);
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = errno;
      free(buf);
      close(fd);
      return ecs_err_set(err, ECS_ERR_IO, "cannot read %s: %s", path,
                         r == 0 ? "file shrank while reading" : strerror(e));
    }
    got += (size_t)r;
  }
  close(fd);
  *bytes = buf;
  *n = size;
  return ECS_OK;
}

ecs_status ecs_file_write(const char *path, const void *bytes, size_t n, ecs_err *err) {
  if (!path || (!bytes && n)) return ecs_err_set(err, ECS_ERR_INVALID, "file: bad arguments");
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) return ecs_err_set(err, ECS_ERR_NOMEM, "file: out of memory");
  memcpy(tmp, path, len);
  memcpy(tmp + len, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    ecs_status st = ecs_err_set(err, ECS_ERR_IO, "cannot create a temporary file beside %s: %s",
                                path, strerror(errno));
    free(tmp);
    return st;
  }
  const uint8_t *p = bytes;
  size_t done = 0;
  int ok = fchmod(fd, 0644) == 0;
  while (ok && done < n) {
    ssize_t w = write(fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      ok = 0;
    else
      done += (size_t)w;
  }
  int e = errno;
  if (ok && fsync(fd) != 0) ok = 0, e = errno;
  if (close(fd) != 0 && ok) ok = 0, e = errno;
  if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
  if (!ok) {
    unlink(tmp);
    free(tmp);
    return ecs_err_set(err, ECS_ERR_IO, "cannot write %s: %s", path, strerror(e));
  }
  free(tmp);
  return ECS_OK;
}

ecs_status ecs_image_read(const char *path, size_t max_pixels, unsigned flags, ecs_image **out,
                          ecs_err *err) {
  if (out) *out = NULL;
  uint8_t *bytes;
  size_t n;
  /* Even a 16-bit RGBA PNG of noise stays near 8 bytes per pixel plus headers, so the pixel
   * limit also bounds how much of a file is worth reading. */
  size_t max_bytes = max_pixels ? max_pixels * 9 + (1u << 20) : 0;
  ecs_status st = ecs_file_read(path, max_bytes, &bytes, &n, err);
  if (st != ECS_OK) return st;
  st = ecs_image_decode_ex(bytes, n, max_pixels, flags, out, err);
  free(bytes);
  if (st != ECS_OK && err) {
    char msg[ECS_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    ecs_err_set(err, st, "%s: %s", path, msg);
  }
  return st;
}

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcasecmp(s + a - b, suf) == 0;
}

ecs_status ecs_image_write(const char *path, const ecs_image *img, int jpeg_quality, ecs_err *err) {
  if (!path || !img) return ecs_err_set(err, ECS_ERR_INVALID, "image: write without path or image");
  uint8_t *buf = NULL;
  size_t n = 0;
  ecs_status st;
  if (has_suffix(path, ".png"))
    st = ecs_image_encode_png(img, &buf, &n, err);
  else if (has_suffix(path, ".jpg") || has_suffix(path, ".jpeg"))
    st = ecs_image_encode_jpeg(img, jpeg_quality, &buf, &n, err);
  else
    return ecs_err_set(err, ECS_ERR_INVALID, "image: %s: extension is not .png, .jpg or .jpeg",
                       path);
  if (st != ECS_OK) return st;
  st = ecs_file_write(path, buf, n, err);
  free(buf);
  return st;
}
