/* srv-conn.c - the connection list, the per-client limits and the reaper (see srv-conn.h). */
#include "srv-conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct srv_conn {
  srv_conn *prev, *next;
  int fd;
  uint8_t peer[16]; /* IPv4 mapped */
  char peer_text[64];
  bool trusted; /* the peer is a --trusted-proxy */
  bool killed;  /* the reaper ended it */
  srv_conn_phase phase;
  int answered;      /* requests answered on it */
  uint64_t since_ns; /* start of the phase */
};

typedef struct client_count {
  uint8_t key[16];
  int n;
} client_count;

struct srv_conns {
  const srv_config *cfg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
  pthread_t reaper;
  bool reaper_started;
  srv_conn *head;
  int open;
  client_count *clients; /* proxied clients with requests in progress */
  int n_clients, cap_clients;
  atomic_ullong refused_conn, refused_req, timeout_headers, timeout_body, idle_closed;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A complete answer written straight on the socket, for a connection libmicrohttpd has no
 * request on (refused at accept, or too slow to finish one). Best effort: non-blocking. */
static void say(int fd, unsigned status, const char *reason, const char *code, const char *msg) {
  char body[256], head[512];
  int bl =
      snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
  int hl = snprintf(head, sizeof head,
                    "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                    status, reason, bl, status == 429 ? "Retry-After: 1\r\n" : "");
  if (hl < 0 || hl >= (int)sizeof head || bl < 0 || bl >= (int)sizeof body) return;
  if (send(fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT) == hl)
    (void)send(fd, body, (size_t)bl, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void end_conn(int fd) {
  (void)shutdown(fd, SHUT_RDWR);
}

static void addr_key(const struct sockaddr *sa, uint8_t key[16], char *text, size_t n) {
  memset(key, 0, 16);
  snprintf(text, n, "-");
  if (!sa) return;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &a->sin_addr, 4);
    inet_ntop(AF_INET, &a->sin_addr, text, (socklen_t)n);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    memcpy(key, &a->sin6_addr, 16);
    inet_ntop(AF_INET6, &a->sin6_addr, text, (socklen_t)n);
  }
}

/* ---- the reaper --------------------------------------------------------------------------------
 */

static void reap(srv_conns *cs, uint64_t now) {
  const srv_config *cfg = cs->cfg;
  for (srv_conn *c = cs->head; c; c = c->next) {
    if (c->killed || c->phase == SRV_CONN_BUSY) continue;
    bool body = c->phase == SRV_CONN_BODY;
    uint64_t limit = (uint64_t)(body ? cfg->body_timeout_ms : cfg->header_timeout_ms) * 1000000ull;
    if (now - c->since_ns < limit) continue;
    c->killed = true;
    if (body) {
      atomic_fetch_add(&cs->timeout_body, 1);
      say(c->fd, 408, "Request Timeout", "request_timeout",
          "the request body did not arrive within --body-timeout-ms");
    } else if (c->answered == 0) {
      atomic_fetch_add(&cs->timeout_headers, 1);
      say(c->fd, 408, "Request Timeout", "request_timeout",
          "the request headers did not arrive within --header-timeout-ms");
    } else {
      atomic_fetch_add(&cs->idle_closed, 1); /* a kept-alive connection idle too long */
    }
    end_conn(c->fd);
  }
}

static void *reaper_main(void *arg) {
  srv_conns *cs = arg;
  int ms = cs->cfg->header_timeout_ms < cs->cfg->body_timeout_ms ? cs->cfg->header_timeout_ms
                                                                 : cs->cfg->body_timeout_ms;
  ms /= 8;
  if (ms < 10) ms = 10;
  if (ms > 250) ms = 250;
  pthread_mutex_lock(&cs->mu);
  while (!cs->stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&cs->cv, &cs->mu, &until);
    if (!cs->stop) reap(cs, now_ns());
  }
  pthread_mutex_unlock(&cs->mu);
  return NULL;
}

ecs_status srv_conns_new(const srv_config *cfg, srv_conns **out, ecs_err *err) {
  srv_conns *cs = calloc(1, sizeof *cs);
  if (!cs) return ecs_err_set(err, ECS_ERR_NOMEM, "out of memory");
  cs->cfg = cfg;
  pthread_mutex_init(&cs->mu, NULL);
  pthread_cond_init(&cs->cv, NULL);
  if (pthread_create(&cs->reaper, NULL, reaper_main, cs) != 0) {
    srv_conns_free(cs);
    return ecs_err_set(err, ECS_ERR_IO, "cannot start the connection reaper thread");
  }
  cs->reaper_started = true;
  *out = cs;
  return ECS_OK;
}

void srv_conns_free(srv_conns *cs) {
  if (!cs) return;
  if (cs->reaper_started) {
    pthread_mutex_lock(&cs->mu);
    cs->stop = true;
    pthread_cond_signal(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    pthread_join(cs->reaper, NULL);
  }
  while (cs->head) { /* none once the daemon has stopped; kept safe anyway */
    srv_conn *c = cs->head;
    cs->head = c->next;
    free(c);
  }
  free(cs->clients);
  pthread_cond_destroy(&cs->cv);
  pthread_mutex_destroy(&cs->mu);
  free(cs);
}

/* ---- the list ----------------------------------------------------------------------------------
 */

static void conn_started(srv_conns *cs, struct MHD_Connection *conn, void **ctx) {
  const union MHD_ConnectionInfo *fi =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  const union MHD_ConnectionInfo *ai =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  *ctx = NULL;
  if (!fi) return;
  srv_conn *c = calloc(1, sizeof *c);
  if (!c) {
    end_conn(fi->connect_fd);
    return;
  }
  c->fd = fi->connect_fd;
  addr_key(ai ? ai->client_addr : NULL, c->peer, c->peer_text, sizeof c->peer_text);
  c->trusted = srv_config_trusted(cs->cfg, c->peer);
  c->phase = SRV_CONN_HEADERS;
  c->since_ns = now_ns();
  pthread_mutex_lock(&cs->mu);
  int same = 0;
  if (!c->trusted)
    for (srv_conn *o = cs->head; o; o = o->next)
      same += memcmp(o->peer, c->peer, 16) == 0;
  bool refuse = same >= cs->cfg->max_connections_per_ip;
  if (!refuse) {
    c->next = cs->head;
    if (cs->head) cs->head->prev = c;
    cs->head = c;
    cs->open++;
    *ctx = c;
  }
  pthread_mutex_unlock(&cs->mu);
  if (refuse) {
    atomic_fetch_add(&cs->refused_conn, 1);
    say(c->fd, 429, "Too Many Requests", "too_many_connections",
        "too many connections from this address (--max-connections-per-ip)");
    end_conn(c->fd);
    free(c);
  }
}

void srv_conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
  srv_conns *cs = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    conn_started(cs, conn, socket_context);
    return;
  }
  srv_conn *c = *socket_context;
  if (!c) return;
  pthread_mutex_lock(&cs->mu); /* before libmicrohttpd closes the fd the reaper may shut down */
  if (c->prev)
    c->prev->next = c->next;
  else
    cs->head = c->next;
  if (c->next) c->next->prev = c->prev;
  cs->open--;
  pthread_mutex_unlock(&cs->mu);
  free(c);
  *socket_context = NULL;
}

srv_conn *srv_conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *i =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return i ? (srv_conn *)i->socket_context : NULL;
}

void srv_conn_set_phase(srv_conns *cs, srv_conn *c, srv_conn_phase p) {
  if (!c) return;
  pthread_mutex_lock(&cs->mu);
  if (p == SRV_CONN_HEADERS && c->phase != SRV_CONN_HEADERS) c->answered++;
  if (p != c->phase) c->since_ns = now_ns();
  c->phase = p;
  pthread_mutex_unlock(&cs->mu);
}

bool srv_conn_timed_out(srv_conns *cs, srv_conn *c) {
  if (!c) return false;
  pthread_mutex_lock(&cs->mu);
  bool k = c->killed;
  pthread_mutex_unlock(&cs->mu);
  return k;
}

bool srv_conn_proxied(const srv_conn *c) {
  return c && c->trusted;
}

/* ---- the client address ------------------------------------------------------------------------
 */

void srv_conn_client(const srv_config *cfg, const srv_conn *c, const char *xff, char *out,
                     uint8_t key[16]) {
  if (!c) {
    snprintf(out, 64, "-");
    memset(key, 0, 16);
    return;
  }
  if (c->trusted && xff && srv_xff_client(cfg, xff, out, key)) return;
  snprintf(out, 64, "%s", c->peer_text);
  memcpy(key, c->peer, 16);
}

bool srv_conns_client_begin(srv_conns *cs, const srv_conn *c, const uint8_t key[16]) {
  (void)c;
  bool ok = false;
  pthread_mutex_lock(&cs->mu);
  int i = 0;
  while (i < cs->n_clients && memcmp(cs->clients[i].key, key, 16) != 0)
    i++;
  if (i == cs->n_clients && cs->n_clients == cs->cap_clients) {
    int cap = cs->cap_clients ? cs->cap_clients * 2 : 16;
    client_count *p = realloc(cs->clients, (size_t)cap * sizeof *p);
    if (!p) goto out;
    cs->clients = p;
    cs->cap_clients = cap;
  }
  if (i == cs->n_clients) {
    memcpy(cs->clients[i].key, key, 16);
    cs->clients[i].n = 0;
    cs->n_clients++;
  }
  if (cs->clients[i].n < cs->cfg->max_connections_per_ip) {
    cs->clients[i].n++;
    ok = true;
  }
out:
  pthread_mutex_unlock(&cs->mu);
  if (!ok) atomic_fetch_add(&cs->refused_req, 1);
  return ok;
}

void srv_conns_client_end(srv_conns *cs, const uint8_t key[16]) {
  pthread_mutex_lock(&cs->mu);
  for (int i = 0; i < cs->n_clients; i++) {
    if (memcmp(cs->clients[i].key, key, 16) != 0) continue;
    if (--cs->clients[i].n <= 0) cs->clients[i] = cs->clients[--cs->n_clients];
    break;
  }
  pthread_mutex_unlock(&cs->mu);
}

char *srv_conns_metrics(srv_conns *cs) {
  pthread_mutex_lock(&cs->mu);
  int open = cs->open;
  pthread_mutex_unlock(&cs->mu);
  char *out = NULL;
  int n =
      asprintf(&out,
               "# HELP ecsnet_connections_open Client connections open.\n"
               "# TYPE ecsnet_connections_open gauge\n"
               "ecsnet_connections_open %d\n"
               "# HELP ecsnet_connections_refused_total Connections and requests refused with 429 "
               "(--max-connections-per-ip).\n"
               "# TYPE ecsnet_connections_refused_total counter\n"
               "ecsnet_connections_refused_total{what=\"connection\"} %llu\n"
               "ecsnet_connections_refused_total{what=\"proxied_request\"} %llu\n"
               "# HELP ecsnet_connections_timed_out_total Connections ended for slowness.\n"
               "# TYPE ecsnet_connections_timed_out_total counter\n"
               "ecsnet_connections_timed_out_total{phase=\"headers\"} %llu\n"
               "ecsnet_connections_timed_out_total{phase=\"body\"} %llu\n"
               "ecsnet_connections_timed_out_total{phase=\"keepalive\"} %llu\n",
               open, atomic_load(&cs->refused_conn), atomic_load(&cs->refused_req),
               atomic_load(&cs->timeout_headers), atomic_load(&cs->timeout_body),
               atomic_load(&cs->idle_closed));
  return n < 0 ? NULL : out;
}
