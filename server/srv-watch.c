/* srv-watch.c - replicas follow the registry's active pointer (--registry-watch-ms).
 *
 * Several servers can share one models/ folder (docker-compose.yml, the Kubernetes manifests):
 * one of them runs /admin and moves DATA/models/ACTIVE when a version is activated; the others
 * learn of it here. A thread reads the pointer every --registry-watch-ms milliseconds (0: never)
 * and, when it names another version than the one served, loads that version and swaps it in
 * with srv_model_swap, which opens the new model before it takes the slot: requests in flight
 * finish on the old one and none fails during the swap. A server started with --model serves
 * that file and does not watch. A pointer that cannot be read or loaded is logged once per
 * value and tried again only once it changes. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "registry.h"
#include "srv-impl.h"

/* The (name, version) served now, or version 0 when there is no model. */
static int served_version(srv *s, char name[API_REG_NAME_MAX]) {
  srv_model_ref *m = srv_model_acquire(s);
  int v = 0;
  name[0] = '\0';
  if (m) {
    snprintf(name, API_REG_NAME_MAX, "%s", m->info.name ? m->info.name : "");
    v = m->info.version;
  }
  srv_model_release(m);
  return v;
}

/* One look at the pointer; swaps when it names another version. */
static void watch_once(srv *s, api_reg *reg, char failed[API_REG_NAME_MAX], int *failed_v) {
  char name[API_REG_NAME_MAX], cur[API_REG_NAME_MAX];
  int version = 0;
  ecs_err e;
  ecs_err_clear(&e);
  ecs_status st = api_reg_active(reg, name, &version, &e);
  if (st != ECS_OK || version == 0) {
    if (st != ECS_OK && *failed_v != -1) {
      srv_log_event(s, "warn", "registry watch: %s", e.msg);
      *failed_v = -1;
    }
    return;
  }
  if (*failed_v == -1) *failed_v = 0; /* readable again */
  int cur_v = served_version(s, cur);
  if (version == cur_v && strcmp(name, cur) == 0) return;
  if (version == *failed_v && strcmp(name, failed) == 0) return;
  srv_log_event(s, "info", "registry watch: active version is now %s version %d", name, version);
  if (srv_model_swap(s, name, version, &e) != ECS_OK) {
    srv_log_event(s, "warn", "registry watch: cannot serve %s version %d: %s", name, version,
                  e.msg);
    snprintf(failed, API_REG_NAME_MAX, "%s", name);
    *failed_v = version;
  }
}

static void *watch_main(void *arg) {
  srv *s = arg;
  ecs_err e;
  ecs_err_clear(&e);
  api_reg *reg = api_reg_open(s->cfg.data_dir, false, &e);
  if (!reg) {
    srv_log_event(s, "warn", "registry watch off: %s", e.msg);
    return NULL;
  }
  char failed[API_REG_NAME_MAX] = "";
  int failed_v = 0;
  pthread_mutex_lock(&s->watch_mu);
  while (!s->watch_stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + (long long)s->cfg.registry_watch_ms * 1000000ll;
    until.tv_sec += (time_t)(ns / 1000000000ll);
    until.tv_nsec = (long)(ns % 1000000000ll);
    while (!s->watch_stop && pthread_cond_timedwait(&s->watch_cv, &s->watch_mu, &until) == 0) {
    }
    if (s->watch_stop) break;
    pthread_mutex_unlock(&s->watch_mu);
    watch_once(s, reg, failed, &failed_v);
    pthread_mutex_lock(&s->watch_mu);
  }
  pthread_mutex_unlock(&s->watch_mu);
  api_reg_free(reg);
  return NULL;
}

ecs_status srv_watch_start(srv *s, ecs_err *err) {
  pthread_mutex_init(&s->watch_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->watch_cv, &ca);
  pthread_condattr_destroy(&ca);
  s->watch_init = true;
  if (s->cfg.registry_watch_ms <= 0 || s->cfg.model[0]) return ECS_OK;
  int rc = pthread_create(&s->watch_thread, NULL, watch_main, s);
  if (rc != 0) return ecs_err_set(err, ECS_ERR_IO, "registry watch thread: %s", strerror(rc));
  s->watch_running = true;
  srv_log_event(s, "info", "watching %s/models/ACTIVE every %d ms", s->cfg.data_dir,
                s->cfg.registry_watch_ms);
  return ECS_OK;
}

void srv_watch_stop(srv *s) {
  if (!s->watch_init) return;
  if (s->watch_running) {
    pthread_mutex_lock(&s->watch_mu);
    s->watch_stop = true;
    pthread_cond_signal(&s->watch_cv);
    pthread_mutex_unlock(&s->watch_mu);
    pthread_join(s->watch_thread, NULL);
    s->watch_running = false;
  }
  pthread_cond_destroy(&s->watch_cv);
  pthread_mutex_destroy(&s->watch_mu);
  s->watch_init = false;
}
