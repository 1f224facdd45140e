/* base64.c - RFC 4648 base64, tolerant of wrapping whitespace and data: URLs on input. */
#include "base64.h"

#include <stdlib.h>
#include <string.h>

static const char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *api_base64_encode(const uint8_t *src, size_t n) {
  size_t out_len = 4 * ((n + 2) / 3);
  char *out = malloc(out_len + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)src[i] << 16;
    if (i + 1 < n) v |= (uint32_t)src[i + 1] << 8;
    if (i + 2 < n) v |= src[i + 2];
    out[o++] = k_alphabet[(v >> 18) & 63];
    out[o++] = k_alphabet[(v >> 12) & 63];
    out[o++] = i + 1 < n ? k_alphabet[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? k_alphabet[v & 63] : '=';
  }
  out[o] = '\0';
  return out;
}

static int sextet(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62; /* '-' and '_': the URL-safe alphabet, also common */
  if (c == '/' || c == '_') return 63;
  return -1;
}

bool api_base64_decode(const char *src, size_t len, size_t max_out, uint8_t **out, size_t *out_len,
                       api_error *err) {
  *out = NULL;
  *out_len = 0;
  if (len >= 5 && strncmp(src, "data:", 5) == 0) {
    const char *comma = memchr(src, ',', len);
    if (!comma) return api_fail(err, 400, "invalid_base64", "a data URL without a comma");
    size_t skip = (size_t)(comma - src) + 1;
    src += skip;
    len -= skip;
  }
  /* An upper bound from the character count; the exact check comes after decoding. */
  size_t cap = len / 4 * 3 + 3;
  if (cap > max_out + 3) cap = max_out + 3;
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) return api_fail(err, 503, "out_of_memory", "the server is short of memory");
  uint32_t acc = 0;
  int nbits = 0, pad = 0;
  size_t n = 0, nchars = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      pad++;
      nchars++;
      continue;
    }
    int v = sextet(c);
    if (v < 0 || pad) goto bad; /* nothing but padding may follow padding */
    nchars++;
    acc = (acc << 6) | (uint32_t)v;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      if (n >= max_out) {
        free(buf);
        return api_fail(err, 413, "payload_too_large", "the image is too large");
      }
      buf[n++] = (uint8_t)(acc >> nbits);
    }
  }
  /* Valid ends: a whole quantum, or 2/3 trailing chars (with or without padding to 4). */
  if (pad > 2 || (pad && nchars % 4 != 0) || nchars % 4 == 1) goto bad;
  *out = buf;
  *out_len = n;
  return true;
bad:
  free(buf);
  return api_fail(err, 400, "invalid_base64", "'image' is not valid base64");
}
