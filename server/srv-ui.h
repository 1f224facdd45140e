/* srv-ui.h - the web page, embedded in the binary at build time (server/gen-ui.py).
 *
 * GET / answers index.html and GET /ui/{asset} any file of server/ui/ by its name; nothing is
 * read from disk at run time, so the page is always the one the binary was built with. Every
 * answer carries a Content-Security-Policy that allows scripts, styles and requests from this
 * origin only (no inline script, no external asset), and the page's own script talks only to
 * this origin's API. */
#ifndef SRV_UI_H
#define SRV_UI_H

#include <stddef.h>

typedef struct srv_ui_file {
  const char *name; /* "index.html", "app.js", ... */
  const char *type; /* its media type */
  const unsigned char *data;
  size_t len;
} srv_ui_file;

extern const srv_ui_file srv_ui_files[];
extern const size_t srv_ui_n_files;

/* The file called name, or NULL. */
const srv_ui_file *srv_ui_find(const char *name);

/* The policy of the page's answers. */
#define SRV_UI_CSP                                                                                 \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "          \
  "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

#endif
