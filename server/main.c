/* main.c - ecsnet-server: settings, signals, and the server's lifetime.
 *
 * Exit status: 0 after a graceful stop (SIGTERM, SIGINT), 2 on bad usage (one line on stderr),
 * 1 when the server cannot start. Signals only set a flag; the main thread does the shutdown,
 * since nothing in it is async-signal-safe. OMP_WAIT_POLICY is passive unless set: the program
 * re-executes itself once to get it (omp-wait.h), before it does anything else. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecs/backend.h"
#include "omp-wait.h"
#include "srv.h"

extern char **environ;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

int main(int argc, char **argv) {
  /* before anything else: the re-exec keeps neither handlers nor memory (omp-wait.h) */
  api_omp_passive(argv);
  srv_config cfg;
  bool done = false;
  ecs_err err;
  ecs_err_clear(&err);
  if (srv_config_load(&cfg, argc, argv, environ, stdout, &done, &err) != ECS_OK) {
    fprintf(stderr, "ecsnet-server: %s\n", err.msg);
    return 2;
  }
  if (done) return 0;
  /* A client that disconnects mid-response must not kill the daemon. */
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* Blocked until sigsuspend below, so a signal can never slip in between the flag test and
   * the wait; the server's threads inherit the mask and leave the signals to this thread. */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  /* Large blocks (weights, arenas, a job's buffers) always mmap'd, so freeing them returns
   * them: glibc's threshold otherwise rises to the largest block freed, and the next ones come
   * from heaps that keep their pages, which left the idle RSS tens of MB above its floor after
   * training jobs and model swaps (tests/reliability/soak.py). Fewer arenas for the same. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_ARENA_MAX, 4);
  /* Where the CUDA backend module is, when not beside the program (the engine reads no
   * environment). */
  const char *module_path = getenv("ECSNET_BACKEND_PATH");
  if (module_path && *module_path) ecs_backend_set_module_path(module_path, NULL);

  srv *s = NULL;
  if (srv_new(&cfg, stdout, &s, &err) != ECS_OK) {
    fprintf(stderr, "ecsnet-server: %s\n", err.msg);
    return 1;
  }
  while (!g_stop)
    sigsuspend(&old);
  srv_shutdown(s, cfg.request_timeout_ms + 5000);
  srv_free(s);
  return 0;
}
