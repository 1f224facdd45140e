/* srv-fetch.h - fetching Label Studio task images with libcurl, from one host only.
 *
 * A task's image is a reference Label Studio chose: a path on Label Studio itself
 * (/data/upload/..., /data/local-files/?d=...), an absolute URL, or a data: URI. Only these
 * are fetched:
 *  - data: URIs with base64 content (decoded here, no network);
 *  - paths under /data/ on --ls-url, and absolute URLs whose scheme, host and port are
 *    --ls-url's and whose path is under /data/.
 * Everything else (another host, scheme, port or path, user info in the URL) is refused
 * before any connection is made, and redirects are never followed, so no task, and no
 * /setup `hostname`, can point ecsnet at another address. Downloads are bounded in bytes
 * (--max-body) and time (--ls-fetch-timeout-ms).
 *
 * Authentication: the --ls-token-file / ECSNET_LS_TOKEN token goes only to --ls-url. A legacy
 * token is sent as `Token KEY`; a personal access token (a JWT, three dot-separated parts) is
 * exchanged at POST /api/token/refresh/ for an access token, sent as `Bearer ACCESS` and
 * refreshed every 4 minutes or after a 401. */
#ifndef SRV_FETCH_H
#define SRV_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api-error.h"
#include "ecs/base.h"

typedef struct srv_fetch srv_fetch;

/* base_url: --ls-url ("" for none: only data: URIs then); token may be "". ECS_ERR_INVALID
 * for a base URL that is not http(s)://HOST[:PORT][/]. */
ecs_status srv_fetch_new(const char *base_url, const char *token, size_t max_bytes, int timeout_ms,
                         srv_fetch **out, ecs_err *err);
void srv_fetch_free(srv_fetch *f);

/* Fetches ref (a task's image reference) into *out (malloc'd, *n bytes). Errors: 422
 * image_refused (a reference outside the rules above), 422 ls_url_not_set, 413 image too
 * large, 502 image_fetch_failed (connection, timeout, a status other than 200; a redirect),
 * 502 ls_unauthorized (401/403 from Label Studio), 404 image_not_found. Thread-safe. */
bool srv_fetch_image(srv_fetch *f, const char *ref, uint8_t **out, size_t *n, api_error *err);

/* GET --ls-url + path (path: one ecsnet built, "/api/..."), with the token, as JSON: *out is
 * a new reference. The same errors as srv_fetch_image; 502 invalid_json for a body that is
 * not JSON. */
bool srv_fetch_ls_json(srv_fetch *f, const char *path, json_t **out, api_error *err);

/* Whether ref would be fetched (the rules above, without fetching). */
bool srv_fetch_allowed(const srv_fetch *f, const char *ref, api_error *err);

#endif
