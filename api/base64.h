/* base64.h - RFC 4648 base64 (standard alphabet) for images inside JSON. */
#ifndef API_BASE64_H
#define API_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Encodes n bytes; returns a NUL-terminated malloc'd string (free()), or NULL when out of
 * memory. */
char *api_base64_encode(const uint8_t *src, size_t n);

/* Decodes src (len chars). Padding is optional; whitespace (CR, LF, space, tab) is skipped, as
 * line-wrapped base64 is common. A `data:...;base64,` prefix is accepted. Returns false on
 * any other character, bad padding or when the decoded size would exceed max_out; on success
 * *out is malloc'd (free()) and *out_len is its size. *too_big tells the two failures apart. */
bool api_base64_decode(const char *src, size_t len, size_t max_out, uint8_t **out,
                       size_t *out_len, bool *too_big);

#endif
