/* srv-conn.h - connection hygiene: per-client limits and the header and body timeouts.
 *
 * libmicrohttpd 0.9.75 has one connection limit for all clients and an idle timeout that a
 * client sending a byte a second never reaches. This module keeps its own list of the open
 * connections (MHD_OPTION_NOTIFY_CONNECTION) with the peer address and the phase of the request
 * on each, and a reaper thread that ends the ones over their time:
 *
 *   accepted / answered -> HEADERS (--header-timeout-ms; after an answer it is the keep-alive
 *                          idle time, and the connection is closed without a word)
 *   headers complete    -> BODY    (--body-timeout-ms, routes with a body)
 *   handler running     -> BUSY    (no timeout here: the compute deadline is the pool's)
 *
 * Ending a connection is a 408 written on the socket and shutdown(2): the fd stays open, so
 * libmicrohttpd's next read sees the end and closes it on its own thread. The list's mutex is
 * taken by the close notification too, so the reaper never touches an fd already closed.
 *
 * The client address is the peer, or, when the peer is a --trusted-proxy, the last address in
 * X-Forwarded-For that is not itself a trusted proxy. A peer that is not a proxy may hold
 * --max-connections-per-ip connections (one more is answered 429 and closed); a proxy's
 * connections are not counted, its clients' requests in progress are, with the same bound. */
#ifndef SRV_CONN_H
#define SRV_CONN_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ecs/base.h"
#include "srv-config.h"

typedef struct srv_conns srv_conns;
typedef struct srv_conn srv_conn;

typedef enum srv_conn_phase { SRV_CONN_HEADERS, SRV_CONN_BODY, SRV_CONN_BUSY } srv_conn_phase;

/* Starts the reaper thread. */
ecs_status srv_conns_new(const srv_config *cfg, srv_conns **out, ecs_err *err);
void srv_conns_free(srv_conns *cs); /* after the daemon has stopped; accepts NULL */

/* The MHD_OPTION_NOTIFY_CONNECTION callback (cls: the srv_conns). */
void srv_conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);

/* The connection's record (NULL when it has none, e.g. refused). */
srv_conn *srv_conn_of(struct MHD_Connection *conn);
void srv_conn_set_phase(srv_conns *cs, srv_conn *c, srv_conn_phase p);
/* Whether the reaper ended the current request for being slow (its status is then 408). */
bool srv_conn_timed_out(srv_conns *cs, srv_conn *c);

/* The request's client address as text (out: 64 bytes) and 16 bytes (key), from the peer and,
 * behind a trusted proxy, X-Forwarded-For (xff: the header or NULL). */
void srv_conn_client(const srv_config *cfg, const srv_conn *c, const char *xff, char *out,
                     uint8_t key[16]);
/* Behind a trusted proxy: counts a request of client key; false (not counted) beyond
 * --max-connections-per-ip. srv_conns_client_end undoes a counted one. */
bool srv_conns_client_begin(srv_conns *cs, const srv_conn *c, const uint8_t key[16]);
void srv_conns_client_end(srv_conns *cs, const uint8_t key[16]);
bool srv_conn_proxied(const srv_conn *c);

/* Prometheus lines: connections open, refused and timed out. malloc'd; NULL on no memory. */
char *srv_conns_metrics(srv_conns *cs);

#endif
