/* jpeg.c - JPEG through TurboJPEG, plus our own walk of the marker segments.
 *
 * Why walk the markers ourselves: TurboJPEG 2.1 neither reports the EXIF orientation nor lets us
 * check the size before it allocates, and the probe must work on a header alone (the first few
 * KiB of an upload). The walk reads only lengths and a handful of fields, every one
 * bounds-checked; TurboJPEG then decodes, and its warnings are errors unless they are known to
 * leave every pixel intact (see benign_warning), so corrupt entropy data is an error rather than
 * a silently grey lower half. One TurboJPEG handle per call keeps this
 * thread-safe without locks (a handle costs a few KiB). */
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "io-impl.h"

static unsigned rd16(const uint8_t *p, int le) {
  return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t rd32(const uint8_t *p, int le) {
  return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
            : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int ecs_io_exif_orientation(const uint8_t *p, size_t n) {
  /* "Exif\0\0", then a TIFF header: byte order, 42, the offset of IFD0 (from the TIFF start). */
  if (n < 6 + 8 || memcmp(p, "Exif\0\0", 6) != 0) return 0;
  p += 6;
  n -= 6;
  int le;
  if (p[0] == 'I' && p[1] == 'I')
    le = 1;
  else if (p[0] == 'M' && p[1] == 'M')
    le = 0;
  else
    return 0;
  if (rd16(p + 2, le) != 42) return 0;
  uint32_t ifd = rd32(p + 4, le);
  if (ifd < 8 || (size_t)ifd + 2 > n) return 0;
  unsigned count = rd16(p + ifd, le);
  for (unsigned k = 0; k < count; k++) {
    size_t e = (size_t)ifd + 2 + (size_t)k * 12;
    if (e + 12 > n) break;
    if (rd16(p + e, le) != 0x0112) continue;
    unsigned type = rd16(p + e + 2, le);
    uint32_t cnt = rd32(p + e + 4, le);
    unsigned v;
    if (type == 3 && cnt >= 1)
      v = rd16(p + e + 8, le); /* SHORT, the standard type */
    else if (type == 4 && cnt >= 1)
      v = rd32(p + e + 8, le); /* LONG, seen from some writers */
    else
      return 0;
    return v >= 1 && v <= 8 ? (int)v : 0;
  }
  return 0;
}

static int is_sof(int m) {
  /* C0-CF are frame headers except C4 (DHT), C8 (reserved, JPG) and CC (DAC). */
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

ecs_status ecs_io_jpeg_scan(const uint8_t *b, size_t n, ecs_jpeg_info *info, ecs_err *err) {
  memset(info, 0, sizeof *info);
  info->orientation = 1;
  if (n < 4 || b[0] != 0xFF || b[1] != 0xD8)
    return ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: missing start of image");
  int seen_sof = 0, seen_exif = 0;
  size_t i = 2;
  while (i < n) {
    /* Stray bytes between segments: libjpeg skips them with a warning, and so do we. */
    while (i < n && b[i] != 0xFF)
      i++;
    while (i < n && b[i] == 0xFF)
      i++; /* fill bytes */
    if (i >= n) break;
    int m = b[i++];
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* markers without a length */
    if (m == 0xD9 || m == 0x00) break;                   /* end of image, or garbage */
    if (i + 2 > n) break;
    size_t len = rd16(b + i, 0);
    if (len < 2) return ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: bad segment length at byte %zu", i);
    if (i + len > n) break; /* cut inside this segment */
    const uint8_t *seg = b + i + 2;
    size_t seglen = len - 2;
    if (is_sof(m)) {
      if (seglen < 6) return ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: frame header too short");
      info->height = (int)rd16(seg + 1, 0);
      info->width = (int)rd16(seg + 3, 0);
      info->components = seg[5];
      seen_sof = 1;
    } else if (m == 0xE1 && !seen_exif && seglen >= 6 && memcmp(seg, "Exif\0\0", 6) == 0) {
      seen_exif = 1; /* the first EXIF block is the one viewers honour */
      int o = ecs_io_exif_orientation(seg, seglen);
      if (o) info->orientation = o;
    } else if (m == 0xEE && seglen >= 5 && memcmp(seg, "Adobe", 5) == 0) {
      info->adobe = 1;
    } else if (m == 0xDA) {
      break; /* start of scan: the header is over */
    }
    i += len;
  }
  if (!seen_sof)
    return ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: no frame header (truncated or corrupt)");
  if (info->width == 0 || info->height == 0)
    return ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: frame header declares %dx%d", info->width,
                       info->height);
  return ECS_OK;
}

/* CMYK to RGB by the multiplicative model. Adobe's writers store the samples inverted (the
 * APP14 marker says so), which is what nearly every CMYK JPEG in the wild is. */
static void cmyk_to_rgb(const uint8_t *src, ecs_image *img, int adobe) {
  size_t px = (size_t)img->width * img->height;
  for (size_t i = 0; i < px; i++) {
    const uint8_t *s = src + i * 4;
    int k = adobe ? s[3] : 255 - s[3];
    for (int c = 0; c < 3; c++) {
      int v = adobe ? s[c] : 255 - s[c];
      img->data[i * 3 + c] = (uint8_t)((v * k + 127) / 255);
    }
  }
}

/* libjpeg's warnings mostly mean lost pixels (a premature end, a bad Huffman code), which must
 * not reach the model as a half-grey picture. A few leave every pixel intact and are common in
 * camera files (stray bytes before a marker, an unknown JFIF revision, a broken ICC chunk we do
 * not use anyway); those are accepted. libjpeg's message texts have been stable for decades. */
static int benign_warning(tjhandle tj) {
  if (tjGetErrorCode(tj) != TJERR_WARNING) return 0;
  const char *msg = tjGetErrorStr2(tj);
  static const char *const benign[] = {"extraneous bytes before marker", "unknown JFIF revision",
                                       "bad ICC marker"};
  for (size_t i = 0; i < sizeof benign / sizeof benign[0]; i++)
    if (msg && strstr(msg, benign[i])) return 1;
  return 0;
}

/* Every scan of a progressive JPEG passes over all coefficients, so a small file with thousands
 * of tiny scans costs minutes of CPU (libjpeg-turbo 2.1's TurboJPEG API has no scan limit of its
 * own). Real encoders write at most a few dozen. Marker bytes inside entropy-coded data are
 * stuffed (FF 00), so counting FF DA pairs counts start-of-scan markers. */
enum { MAX_SCANS = 500 };

static size_t count_scans(const uint8_t *b, size_t n) {
  size_t scans = 0;
  const uint8_t *p = b, *end = b + n;
  while (p + 1 < end) {
    const uint8_t *ff = memchr(p, 0xFF, (size_t)(end - p - 1));
    if (!ff) break;
    if (ff[1] == 0xDA) scans++;
    p = ff + 1;
  }
  return scans;
}

ecs_status ecs_io_jpeg_decode(const uint8_t *b, size_t n, size_t max_pixels, unsigned flags,
                              ecs_image **out, ecs_err *err) {
  ecs_jpeg_info info;
  ecs_status st = ecs_io_jpeg_scan(b, n, &info, err);
  if (st != ECS_OK) return st;
  st = ecs_io_check_pixels(info.width, info.height, max_pixels, err);
  if (st != ECS_OK) return st;
  size_t scans = count_scans(b, n);
  if (scans > MAX_SCANS)
    return ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: %zu scans, more than the %d any encoder writes",
                       scans, MAX_SCANS);

  tjhandle tj = tjInitDecompress();
  if (!tj) return ecs_err_set(err, ECS_ERR_BACKEND, "JPEG: cannot create a TurboJPEG decoder");
  int w, h, subsamp, cs;
  uint8_t *cmyk = NULL;
  ecs_image *img = NULL;
  w = h = 0;
  if (tjDecompressHeader3(tj, b, (unsigned long)n, &w, &h, &subsamp, &cs) != 0 &&
      !benign_warning(tj)) {
    st = ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: %s", tjGetErrorStr2(tj));
    goto done;
  }
  /* The limit was checked on our reading of the header; allocate only if TurboJPEG agrees. */
  if (w != info.width || h != info.height) {
    st = ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: frame header %dx%d, decoder reads %dx%d",
                     info.width, info.height, w, h);
    goto done;
  }
  int pf = TJPF_RGB, ch = 3;
  if (cs == TJCS_GRAY && (flags & ECS_DECODE_KEEP_GREY)) pf = TJPF_GRAY, ch = 1;
  if (cs == TJCS_CMYK || cs == TJCS_YCCK) pf = TJPF_CMYK;
  img = ecs_image_new(w, h, ch, err);
  if (!img) {
    st = err ? err->status : ECS_ERR_NOMEM;
    goto done;
  }
  uint8_t *dst = img->data;
  if (pf == TJPF_CMYK) {
    cmyk = malloc((size_t)w * h * 4);
    if (!cmyk) {
      st = ecs_err_set(err, ECS_ERR_NOMEM, "JPEG: out of memory for a %dx%d CMYK image", w, h);
      goto done;
    }
    dst = cmyk;
  }
  if (tjDecompress2(tj, b, (unsigned long)n, dst, w, 0, h, pf, 0) != 0 && !benign_warning(tj)) {
    st =
        ecs_err_set(err, ECS_ERR_FORMAT, "JPEG: corrupt or truncated data: %s", tjGetErrorStr2(tj));
    goto done;
  }
  if (cmyk) cmyk_to_rgb(cmyk, img, info.adobe);
  st = ecs_io_orient(&img, info.orientation, err);
done:
  free(cmyk);
  tjDestroy(tj);
  if (st != ECS_OK) {
    ecs_image_free(img);
    return st;
  }
  *out = img;
  return ECS_OK;
}

ecs_status ecs_image_encode_jpeg(const ecs_image *img, int quality, uint8_t **out, size_t *out_n,
                                 ecs_err *err) {
  if (!img || !out || !out_n || !img->data || (img->channels != 1 && img->channels != 3))
    return ecs_err_set(err, ECS_ERR_INVALID, "JPEG: encode needs a grey or RGB image");
  if (quality < 1 || quality > 100)
    return ecs_err_set(err, ECS_ERR_INVALID, "JPEG: quality %d is not in 1..100", quality);
  *out = NULL;
  *out_n = 0;
  int grey = img->channels == 1;
  int subsamp = grey ? TJSAMP_GRAY : TJSAMP_420;
  unsigned long cap = tjBufSize(img->width, img->height, subsamp);
  if (cap == (unsigned long)-1)
    return ecs_err_set(err, ECS_ERR_INVALID, "JPEG: cannot encode %dx%d", img->width, img->height);
  /* A worst-case buffer from malloc and TJFLAG_NOREALLOC: TurboJPEG never reallocates it, so
   * the caller can release it with free() like every other buffer of this API. */
  uint8_t *buf = malloc(cap);
  if (!buf) return ecs_err_set(err, ECS_ERR_NOMEM, "JPEG: out of memory (%lu bytes)", cap);
  tjhandle tj = tjInitCompress();
  if (!tj) {
    free(buf);
    return ecs_err_set(err, ECS_ERR_BACKEND, "JPEG: cannot create a TurboJPEG encoder");
  }
  unsigned long size = cap;
  unsigned char *jb = buf;
  /* TurboJPEG compresses with the fast, less accurate DCT unless told otherwise; the accurate
   * one is what libjpeg, Pillow and OpenCV use, so datasets written here match theirs. */
  int rc = tjCompress2(tj, img->data, img->width, 0, img->height, grey ? TJPF_GRAY : TJPF_RGB, &jb,
                       &size, subsamp, quality, TJFLAG_NOREALLOC | TJFLAG_ACCURATEDCT);
  ecs_status st = ECS_OK;
  if (rc != 0)
    st = ecs_err_set(err, ECS_ERR_BACKEND, "JPEG: encode failed: %s", tjGetErrorStr2(tj));
  tjDestroy(tj);
  if (st != ECS_OK) {
    free(buf);
    return st;
  }
  *out = buf;
  *out_n = size;
  return ECS_OK;
}
