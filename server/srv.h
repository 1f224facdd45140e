/* srv.h - the ecsnet-server daemon as a library object, so tests and main share one path.
 *
 * srv_new loads the model (when one is available), starts the worker pool and the HTTP daemon
 * (libmicrohttpd, thread-pool mode, suspend/resume). srv_shutdown is the graceful stop of
 * SIGTERM: no new connections, queued and running requests finish and are answered, then the
 * daemon stops. */
#ifndef SRV_H
#define SRV_H

#include <stdio.h>

#include "ecs/base.h"
#include "srv-config.h"

typedef struct srv srv;

/* log receives access and event lines (NULL: none); it must outlive the server. */
ecs_status srv_new(const srv_config *cfg, FILE *log, srv **out, ecs_err *err);
int srv_port(const srv *s); /* the bound port (useful with --listen HOST:0) */
/* Graceful stop: waits at most timeout_ms for in-flight requests. */
void srv_shutdown(srv *s, int timeout_ms);
void srv_free(srv *s); /* accepts NULL; stops abruptly if srv_shutdown was not called */

#endif
