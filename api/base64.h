/* base64.h - RFC 4648 base64 (standard alphabet) for images inside JSON. */
#ifndef API_BASE64_H
#define API_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api-error.h"

/* Encodes n bytes; returns a NUL-terminated malloc'd string (free()), or NULL when out of
 * memory. */
char *api_base64_encode(const uint8_t *src, size_t n);

/* Decodes src (len chars). Padding is optional; whitespace (CR, LF, space, tab) is skipped, as
 * line-wrapped base64 is common. A `data:...;base64,` prefix is accepted. On success *out is
 * malloc'd (free()) and *out_len is its size. Fails (err filled) with 400 invalid_base64 for
 * any other character or bad padding, 413 payload_too_large when the decoded size would exceed
 * max_out, 503 out_of_memory. */
bool api_base64_decode(const char *src, size_t len, size_t max_out, uint8_t **out, size_t *out_len,
                       api_error *err);

#endif
