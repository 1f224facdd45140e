/* srv-addr.c - address blocks and X-Forwarded-For (srv-config.h). Apart from the rest of the
 * server, with nothing but libc, so that the fuzz build compiles it alone. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "srv-config.h"

bool srv_cidr_parse(const char *text, size_t len, srv_cidr *out) {
  char buf[64];
  while (len && isspace((unsigned char)*text))
    text++, len--;
  while (len && isspace((unsigned char)text[len - 1]))
    len--;
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, text, len);
  buf[len] = '\0';
  char *slash = strchr(buf, '/');
  long bits = -1;
  if (slash) {
    char *end;
    *slash = '\0';
    errno = 0;
    bits = strtol(slash + 1, &end, 10);
    if (errno || *end || end == slash + 1 || slash[1] == '-' || slash[1] == '+') return false;
  }
  memset(out, 0, sizeof *out);
  if (inet_pton(AF_INET, buf, out->addr + 12) == 1) {
    if (bits > 32) return false;
    out->addr[10] = out->addr[11] = 0xff;
    out->bits = 96 + (int)(bits < 0 ? 32 : bits);
  } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
    if (bits > 128) return false;
    out->bits = (int)(bits < 0 ? 128 : bits);
  } else {
    return false;
  }
  /* host bits cleared, so 10.1.2.3/8 means 10.0.0.0/8 */
  for (int i = 0; i < 16; i++) {
    int keep = out->bits - i * 8;
    if (keep <= 0)
      out->addr[i] = 0;
    else if (keep < 8)
      out->addr[i] &= (uint8_t)(0xff << (8 - keep));
  }
  return true;
}

bool srv_config_trusted(const srv_config *c, const uint8_t addr[16]) {
  for (int k = 0; k < c->n_trusted; k++) {
    const srv_cidr *b = &c->trusted[k];
    bool in = true;
    for (int i = 0; i < 16 && in; i++) {
      int keep = b->bits - i * 8;
      uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
      in = (addr[i] & mask) == b->addr[i];
    }
    if (in) return true;
  }
  return false;
}

/* The last entry of X-Forwarded-For that is not a trusted proxy (every proxy appends the
 * address it got the request from, so the entries left of an untrusted one may be forged). */
bool srv_xff_client(const srv_config *cfg, const char *xff, char *out, uint8_t key[16]) {
  size_t end = strlen(xff);
  bool found = false;
  while (end > 0) {
    size_t start = end;
    while (start > 0 && xff[start - 1] != ',')
      start--;
    const char *p = xff + start;
    size_t l = end - start;
    /* the trimming of srv_cidr_parse, so out is exactly the address that parsed */
    while (l && isspace((unsigned char)*p))
      p++, l--;
    while (l && isspace((unsigned char)p[l - 1]))
      l--;
    srv_cidr a;
    if (l == 0 || memchr(p, '/', l) || !srv_cidr_parse(p, l, &a)) break; /* not an address */
    memcpy(key, a.addr, 16);
    snprintf(out, 64, "%.*s", (int)l, p);
    found = true;
    if (!srv_config_trusted(cfg, a.addr)) break;
    end = start ? start - 1 : 0;
  }
  return found;
}
