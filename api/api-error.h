/* api-error.h - the API's error value: an HTTP status, a snake_case code and a message.
 *
 * Every failure the API reports reaches the client as
 *   {"error": {"code": "<snake_case>", "message": "<human text>"}}
 * with the status carried here. Parsing code fills an api_error and returns false; only the
 * HTTP layer turns it into a response, so the parsers stay testable without a server. */
#ifndef API_ERROR_H
#define API_ERROR_H

#include <stdbool.h>
#include <stddef.h>

#define API_ERR_MSG_MAX 256

typedef struct api_error {
  unsigned status;  /* HTTP status: 400, 404, 405, 413, 415, 422, 500, 503 */
  const char *code; /* static snake_case string */
  char message[API_ERR_MSG_MAX];
} api_error;

/* Fills err (which may be NULL) and returns false, so parsers can `return api_fail(...)`. */
bool api_fail(api_error *err, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The JSON error body for err, newly allocated (free()); NULL only when out of memory. */
char *api_error_json(const api_error *err);

#endif
