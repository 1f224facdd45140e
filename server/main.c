/* main.c - ecsnet-server: the daemon. */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/base.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **state) {
  (void)cls, (void)version, (void)data, (void)size, (void)state;
  const char *body = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\"}}";
  unsigned status = MHD_HTTP_NOT_FOUND;
  if (strcmp(method, "GET") == 0 && strcmp(url, "/health/live") == 0) {
    body = "{\"status\":\"UP\"}";
    status = MHD_HTTP_OK;
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

int main(int argc, char **argv) {
  unsigned short port = 8080;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--version") == 0) {
      printf("ecsnet-server %s\n", ecs_version());
      return 0;
    }
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, port, NULL, NULL,
                                          handle, NULL, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "ecsnet-server: cannot listen on port %u\n", port);
    return 1;
  }
  while (!g_stop) pause();
  MHD_stop_daemon(d);
  return 0;
}
