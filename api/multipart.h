/* multipart.h - Content-Type parsing and multipart/form-data (RFC 7578) over a whole body.
 *
 * The server buffers a request body (bounded by --max-body) before parsing it, so this parser
 * works on one contiguous buffer and returns parts that point into it: no copies, nothing to
 * free but the part array. Working on the whole body also makes it a plain function of its
 * input, which is what the fuzz target drives. */
#ifndef API_MULTIPART_H
#define API_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "api-error.h"

#define API_MEDIA_MAX    96
#define API_BOUNDARY_MAX 70 /* RFC 2046's limit */

typedef struct api_content_type {
  char media[API_MEDIA_MAX]; /* "type/subtype", lower case, no parameters */
  char boundary[API_BOUNDARY_MAX + 1];
  char charset[32];
} api_content_type;

/* Parses a Content-Type header value. False (400 invalid_content_type) when it is not of the
 * form type/subtype *( ; name=value ). */
bool api_content_type_parse(const char *value, api_content_type *ct, api_error *err);

typedef struct api_part {
  const char *name;         /* the form field name (NUL-terminated copy inside the part array) */
  const char *filename;     /* NULL when the part is not a file */
  const char *content_type; /* the part's Content-Type value, or NULL */
  const char *data;         /* points into the body */
  size_t len;
} api_part;

typedef struct api_parts {
  api_part *parts;
  size_t n;
  char *strings; /* storage for the names above */
} api_parts;

/* Splits body by boundary. At most max_parts parts (more is 400 too_many_parts). Failures are
 * 400 invalid_multipart with what was wrong. On success free with api_parts_free. */
bool api_multipart_parse(const char *body, size_t len, const char *boundary, size_t max_parts,
                         api_parts *out, api_error *err);
void api_parts_free(api_parts *p);

#endif
