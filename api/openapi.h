/* openapi.h - api/openapi.yaml as JSON, embedded at build time (see gen-openapi.py). */
#ifndef API_OPENAPI_H
#define API_OPENAPI_H

#include <stddef.h>

extern const unsigned char api_openapi_json[]; /* NUL-terminated */
extern const size_t api_openapi_json_len;      /* without the NUL */

#endif
