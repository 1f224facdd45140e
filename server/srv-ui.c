/* srv-ui.c - GET / and GET /ui/{asset}: the embedded web page (srv-ui.h). */
#include "srv-ui.h"

#include <string.h>

#include "srv-impl.h"

const srv_ui_file *srv_ui_find(const char *name) {
  for (size_t i = 0; i < srv_ui_n_files; i++)
    if (strcmp(srv_ui_files[i].name, name) == 0) return &srv_ui_files[i];
  return NULL;
}

static enum MHD_Result answer(srv_req *r, const srv_ui_file *f) {
  r->csp = SRV_UI_CSP;
  return srv_respond(r, 200, f->type, (char *)f->data, f->len, true);
}

enum MHD_Result srv_get_ui_index(srv_req *r) {
  const srv_ui_file *f = srv_ui_find("index.html");
  if (!f) return srv_fail(r, 404, "not_found", "this build has no web page");
  return answer(r, f);
}

enum MHD_Result srv_get_ui_asset(srv_req *r) {
  char name[64];
  const srv_ui_file *f = srv_req_param(r, 0, name, sizeof name) ? srv_ui_find(name) : NULL;
  if (!f) return srv_fail(r, 404, "not_found", "no such file of the web page");
  return answer(r, f);
}
