/* fuzz_proxy.c - libFuzzer target for the --trusted-proxy blocks and X-Forwarded-For.
 *
 * The first line is a comma-separated list of blocks (those that parse become the trusted
 * proxies), the rest an X-Forwarded-For value. A client found must be an entry of the header
 * that parses back to the same 16 bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "srv-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *nl = memchr(data, '\n', size);
  if (!nl) return 0;
  size_t ll = (size_t)(nl - (const char *)data);
  srv_config *c = calloc(1, sizeof *c);
  for (size_t i = 0; i < ll && c->n_trusted < SRV_MAX_TRUSTED;) {
    const char *p = (const char *)data + i;
    const char *comma = memchr(p, ',', ll - i);
    size_t l = comma ? (size_t)(comma - p) : ll - i;
    srv_cidr b;
    if (srv_cidr_parse(p, l, &b)) {
      if (b.bits < 0 || b.bits > 128) abort();
      c->trusted[c->n_trusted++] = b;
      if (!srv_config_trusted(c, b.addr)) abort(); /* a block holds its own address */
    }
    i += l + 1;
  }
  char *xff = strndup(nl + 1, size - ll - 1);
  char out[64];
  uint8_t key[16];
  if (srv_xff_client(c, xff, out, key)) {
    if (strlen(out) >= sizeof out || !strstr(xff, out)) abort();
    srv_cidr back;
    if (!srv_cidr_parse(out, strlen(out), &back) || memcmp(back.addr, key, 16) != 0) abort();
  }
  free(xff);
  free(c);
  return 0;
}
