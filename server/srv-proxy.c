/* srv-proxy.c - the client's address behind trusted proxies (srv-proxy.h). */
#include "srv-proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

/* One address of text (length len) into family and bytes; false when it is none. */
static bool parse_addr(const char *s, size_t len, int *family, unsigned char addr[16]) {
  char buf[64];
  while (len && (*s == ' ' || *s == '\t'))
    s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, s, len);
  buf[len] = '\0';
  if (inet_pton(AF_INET, buf, addr) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, buf, addr) == 1) {
    *family = AF_INET6;
    return true;
  }
  return false;
}

ecs_status srv_proxies_parse(const char *list, srv_cidr *out, int *n, ecs_err *err) {
  *n = 0;
  for (const char *p = list; p && *p;) {
    size_t len = strcspn(p, ",");
    const char *slash = memchr(p, '/', len);
    size_t alen = slash ? (size_t)(slash - p) : len;
    srv_cidr c = {0};
    bool ok = parse_addr(p, alen, &c.family, c.addr);
    int max = c.family == AF_INET ? 32 : 128;
    c.bits = max;
    if (ok && slash) {
      char *end;
      long b = strtol(slash + 1, &end, 10);
      ok = end != slash + 1 && end == p + len && b >= 0 && b <= max;
      c.bits = (int)b;
    }
    if (!ok || *n == SRV_MAX_PROXIES)
      return ecs_err_set(err, ECS_ERR_INVALID,
                         !ok ? "--trusted-proxy: '%.*s' is not an address or CIDR block"
                             : "--trusted-proxy: more than 16 entries at '%.*s'",
                         (int)len, p);
    out[(*n)++] = c;
    p += len;
    if (*p == ',' && *++p == '\0')
      return ecs_err_set(err, ECS_ERR_INVALID, "--trusted-proxy: an empty entry at the end");
  }
  return ECS_OK;
}

static bool in_block(const srv_cidr *c, int family, const unsigned char *a) {
  if (c->family != family) return false;
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(c->addr, a, (size_t)full) != 0) return false;
  if (!rest) return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (c->addr[full] & mask) == (a[full] & mask);
}

static bool trusted_bytes(const srv_cidr *list, int n, int family, const unsigned char *a) {
  for (int i = 0; i < n; i++)
    if (in_block(&list[i], family, a)) return true;
  return false;
}

bool srv_proxy_trusted(const srv_cidr *list, int n, const char *addr) {
  int family;
  unsigned char a[16];
  return addr && parse_addr(addr, strlen(addr), &family, a) && trusted_bytes(list, n, family, a);
}

void srv_client_address(const srv_cidr *list, int n, const char *peer, const char *xff, char *out,
                        size_t out_n) {
  snprintf(out, out_n, "%s", peer);
  if (!xff || !srv_proxy_trusted(list, n, peer)) return;
  size_t end = strlen(xff);
  while (end > 0) {
    size_t start = end;
    while (start > 0 && xff[start - 1] != ',')
      start--;
    int family;
    unsigned char a[16];
    if (!parse_addr(xff + start, end - start, &family, a)) return; /* garbage: stop at the hop */
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, a, text, sizeof text)) return;
    snprintf(out, out_n, "%s", text);
    if (!trusted_bytes(list, n, family, a)) return;
    end = start > 0 ? start - 1 : 0;
  }
}
