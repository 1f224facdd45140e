/* api-error.h - the API's error value (an HTTP status, a snake_case code and a message) and a
 * rendered answer.
 *
 * The api has two error conventions, one per kind of caller, and no third:
 *  - what answers an HTTP request (parsing, rendering, the /cam door, /v1/models) fills an
 *    api_error and returns false (or NULL). Every such failure reaches the client as
 *      {"error": {"code": "<snake_case>", "message": "<human text>"}}
 *    with the status carried here, the one error shape of the HTTP API;
 *  - what works on files and the engine for both the server and the command line (the model
 *    registry, opening a model, writing `ecsnet cam`'s files) returns an ecs_status and fills
 *    an ecs_err, the engine's status + message.
 * Only the HTTP layer turns an api_error into bytes on a socket, so the parsers stay testable
 * without a server. */
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

/* A rendered answer: what the server writes to the socket, headers included. */
typedef struct api_response {
  unsigned status;
  const char *type; /* static media type */
  char *body;       /* malloc'd (api_response_free); NULL only when out of memory */
  size_t len;
  int retry_after; /* seconds for a Retry-After header; 0: none */
} api_response;

/* Seconds a client should wait before retrying a 503 with this error code: longer while no
 * model is loaded (a load takes seconds), short for a full queue or an expired request. */
#define API_RETRY_BUSY_S      1
#define API_RETRY_NOT_READY_S 5
int api_retry_after(const char *code);

/* err as an answer: the JSON error body, and on a 503 the Retry-After of its code. */
void api_response_error(api_response *out, const api_error *err);
void api_response_free(api_response *r); /* frees the body, not r; accepts NULL */

#endif
