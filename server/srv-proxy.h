/* srv-proxy.h - which address a request comes from, behind proxies (--trusted-proxy).
 *
 * A request's client is the connection's peer, unless the peer is a trusted proxy (an address
 * or CIDR block of --trusted-proxy): then X-Forwarded-For is read from its right end, each
 * entry a proxy added, and the client is the first address that is not a trusted proxy (or the
 * leftmost, when all are). Entries a client wrote itself sit left of the first untrusted hop,
 * so they are never believed. Nothing is trusted by default. */
#ifndef SRV_PROXY_H
#define SRV_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include "ecs/base.h"

#define SRV_MAX_PROXIES 16

typedef struct srv_cidr {
  int family; /* AF_INET or AF_INET6 */
  unsigned char addr[16];
  int bits; /* prefix length */
} srv_cidr;

/* Parses a comma-separated list of addresses and CIDR blocks ("" for none) into out (at most
 * SRV_MAX_PROXIES); ECS_ERR_INVALID with one line naming the bad entry. */
ecs_status srv_proxies_parse(const char *list, srv_cidr *out, int *n, ecs_err *err);

/* Whether addr (text, IPv4 or IPv6) is inside one of the n blocks. */
bool srv_proxy_trusted(const srv_cidr *list, int n, const char *addr);

/* The client's address as text into out: peer, or taken from xff (NULL: no header) as above. */
void srv_client_address(const srv_cidr *list, int n, const char *peer, const char *xff, char *out,
                        size_t out_n);

#endif
