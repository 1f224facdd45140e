# tests/deploy/scenarios.sh - what the deployment test does to the running compose topology
# (sourced by run.sh; compose, url, TOKEN, WORK, CLIENTS and stamp come from there).

cid() { compose ps -q "$1"; }
in_ctr() { docker exec "$(cid "$1")" "${@:2}"; }
admin() { curl -sS -H "Authorization: Bearer $TOKEN" "$@"; }
served_by() { # NAME/VERSION that replica $1 serves, from its own /health/ready
  in_ctr "$1" curl -fsS --max-time 2 http://127.0.0.1:8080/health/ready 2>/dev/null |
    python3 -c 'import json,sys; m=json.load(sys.stdin)["model"]; print("%s/%s" % (m["name"], m["version"]))' \
      2>/dev/null || echo none
}
cam_200s() { # /cam answers with 200 the replica's server has counted since it started
  in_ctr "$1" curl -fsS --max-time 2 http://127.0.0.1:8080/metrics 2>/dev/null |
    sed -n 's/^ecsnet_requests_total{route="\/cam",status="200"} \([0-9]*\)$/\1/p' | sed -n 1p
}

load_start() { # closed loop of $CLIENTS clients through nginx; load_stop writes $1
  rm -f "$WORK/stop"
  python3 "$root/tests/deploy/load.py" --url "$url" --image "$img" --clients "$CLIENTS" \
    --stop-file "$WORK/stop" --out "$1" &
  load_pid=$!
}
load_stop() {
  touch "$WORK/stop"
  wait "$load_pid" || fail "the load client crashed"
}
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }
no_failures() {
  local n
  n=$(jget "$1" 'd["failed"]')
  [ "$n" -eq 0 ] || { jget "$1" 'd["reasons"]' >&2; fail "$2: $n of $(jget "$1" 'd["requests"]') requests failed"; }
}

check_routes() {
  mkdir -p "$WORK/img" && chmod 777 "$WORK/img"
  docker run --rm --read-only -v "$WORK/img:/out" --entrypoint /opt/ecsnet/bin/ecsnet ecsnet:test \
    synth --out /out/syn --count 2 --seed 3 --size 128 >/dev/null
  img=$WORK/img/syn/JPEGImages/000000.jpg
  curl -fsS "$url/health/ready" | grep -q '"status":"UP"' || fail "/health/ready through nginx"
  curl -fsS -F "image=@$img" "$url/cam" >"$WORK/cam.json" || fail "POST /cam through nginx"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["cams"] or d["scores"], d' \
    "$WORK/cam.json" || fail "POST /cam answer"
  echo "through nginx: /health/ready UP, POST /cam 200 ($(jget "$WORK/cam.json" 'd["model"]'))"
  # /admin reaches the admin replica, every time (the other one answers 403 admin_disabled)
  local i code
  for i in $(seq 10); do
    code=$(admin -o /dev/null -w '%{http_code}' "$url/admin/jobs")
    [ "$code" = 200 ] || fail "GET /admin/jobs through nginx: $code (not the admin replica?)"
  done
  code=$(curl -sS -o /dev/null -w '%{http_code}' "$url/admin/jobs")
  [ "$code" = 401 ] || fail "GET /admin/jobs without the token: $code"
  # the job store lives on the admin replica's own volume, not on the shared models volume
  in_ctr ecsnet-1 test -f /var/lib/ecsnet/jobs.db || fail "no jobs.db on the admin replica"
  in_ctr ecsnet-2 test ! -e /var/lib/ecsnet/jobs.db || fail "jobs.db on the inference replica"
  in_ctr ecsnet-2 sh -c '! ls -a /var/lib/ecsnet/models | grep -q jobs' ||
    fail "job files on the shared models volume"
  echo "/admin goes to the admin replica only; jobs.db on its own volume, not on the shared one"
}

# The client's address reaches the replica through nginx (X-Forwarded-For from the trusted
# nginx address only): the replica logs the host's side of the network, not nginx and not
# what the client wrote into the header itself.
check_client_address() {
  local probe="xff-probe-$RANDOM$RANDOM" gw nginx_ip remote
  curl -sS -o /dev/null -H 'X-Forwarded-For: 198.51.100.77' "$url/$probe"
  # the host's address on the compose network (its bridge), where curl's request comes from
  gw=$(ip -4 -o addr show "br-$(docker network inspect -f '{{.Id}}' "${PROJECT}_default" | cut -c1-12)" |
    awk '{print $4}' | cut -d/ -f1)
  nginx_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(cid nginx)")
  sleep 0.5
  remote=$(compose logs --no-log-prefix ecsnet-1 ecsnet-2 2>/dev/null | grep "\"/$probe\"" |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["remote"])') ||
    fail "no access line for /$probe"
  [ "$remote" = "$gw" ] ||
    fail "the replica saw /$probe from $remote, not the client $gw (nginx is $nginx_ip)"
  echo "client address through nginx: $remote (nginx $nginx_ip; a forged X-Forwarded-For ignored)"
}

# A version trained through /admin (no load: training waits for idle inference), then
# activated under load: every replica serves it within 10 s, no request fails.
swap_s_1="" swap_s_2="" swap_requests=0
check_swap() {
  in_ctr ecsnet-1 ecsnet synth --out /var/lib/ecsnet/datasets/syn --count 12 --seed 3 --size 64 \
    --classes 3 >/dev/null
  admin -H 'Content-Type: application/json' "$url/admin/train" -d '{"dataset":"syn","steps":2,
    "batch_size":4,"crop":64,"checkpoint_every":4,"model_name":"syn","activate":false}' \
    >"$WORK/job.json"
  local id st="" i
  id=$(jget "$WORK/job.json" 'd["id"]') || { cat "$WORK/job.json"; fail "POST /admin/train"; }
  for i in $(seq 300); do
    admin "$url/admin/jobs/$id" >"$WORK/job.json"
    st=$(jget "$WORK/job.json" 'd["status"]')
    case "$st" in succeeded | failed | cancelled | interrupted) break ;; esac
    sleep 1
  done
  [ "$st" = succeeded ] || { cat "$WORK/job.json"; fail "training job: $st"; }
  local want
  want=$(jget "$WORK/job.json" '"%s/%s" % (d["result"]["model"]["name"], d["result"]["model"]["version"])')
  echo "trained $want through /admin (job $id)"
  load_start "$WORK/swap.json"
  sleep 3
  local t_act
  t_act=$(now)
  code=$(admin -o /dev/null -w '%{http_code}' -X POST \
    "$url/admin/models/${want%/*}/versions/${want#*/}/activate")
  [ "$code" = 200 ] || fail "activate $want: $code"
  local r done1="" done2=""
  while [ -z "$done1" ] || [ -z "$done2" ]; do
    for r in 1 2; do
      eval "[ -n \"\$done$r\" ]" && continue
      if [ "$(served_by ecsnet-$r)" = "$want" ]; then
        eval "done$r=1; swap_s_$r=$(python3 -c "print(round($(now) - $t_act, 1))")"
      fi
    done
    python3 -c "import sys; sys.exit($(now) - $t_act > 10)" || break
  done
  sleep 2
  load_stop
  [ -n "$done1" ] && [ -n "$done2" ] ||
    fail "not every replica serves $want 10 s after its activation ($(served_by ecsnet-1), $(served_by ecsnet-2))"
  no_failures "$WORK/swap.json" "during the swap"
  swap_requests=$(jget "$WORK/swap.json" 'd["requests"]')
  echo "activation of $want: served by ecsnet-1 after ${swap_s_1} s, ecsnet-2 after ${swap_s_2} s;" \
    "$swap_requests requests meanwhile, 0 failed; models answered: $(jget "$WORK/swap.json" \
    '{k: v["count"] for k, v in d["models"].items()}')"
}

# One replica's server process killed with SIGKILL from the host (a crash; `docker kill`
# would count as a manual stop and switch the restart policy off) while it has requests in
# flight; nginx sends them again to the other replica; the replica restarts and serves again.
kill_requests=0 kill_inflight=0 kill_retried=0 kill_ready_s="" kill_serve_s=""
check_kill() {
  local attempt c pid restarts in_flight retried0 retried
  for attempt in 1 2 3; do
    load_start "$WORK/kill.json"
    sleep 4
    c=$(cid ecsnet-2)
    restarts=$(docker inspect -f '{{.RestartCount}}' "$c")
    pid=$(docker inspect -f '{{.State.Pid}}' "$c")
    retried0=$(nginx_retries)
    in_flight=$(in_ctr ecsnet-2 curl -fsS --max-time 2 http://127.0.0.1:8080/metrics |
      sed -n 's/^ecsnet_requests_in_flight \([0-9]*\)$/\1/p')
    local t_kill
    t_kill=$(now)
    kill -9 "$pid"
    local i state="" t_ready="" t_serve=""
    for i in $(seq 600); do
      state=$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$c")
      if [ -z "$t_ready" ] && [ "${state%% *}" -gt "$restarts" ] && [ "${state#* }" = true ] &&
        in_ctr ecsnet-2 curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:8080/health/ready 2>/dev/null; then
        t_ready=$(now)
      fi
      if [ -n "$t_ready" ] && [ "$(cam_200s ecsnet-2)" -gt 0 ] 2>/dev/null; then
        t_serve=$(now)
        break
      fi
      sleep 0.1
    done
    sleep 1
    load_stop
    [ -n "$t_serve" ] || fail "ecsnet-2 did not come back and serve /cam within a minute ($state)"
    no_failures "$WORK/kill.json" "with a replica killed"
    retried=$(($(nginx_retries) - retried0))
    kill_requests=$(jget "$WORK/kill.json" 'd["requests"]')
    kill_inflight=$((${in_flight:-1} - 1)) # less the /metrics request itself
    kill_retried=$retried
    kill_ready_s=$(python3 -c "print(round($t_ready - $t_kill, 1))")
    kill_serve_s=$(python3 -c "print(round($t_serve - $t_kill, 1))")
    echo "SIGKILL of ecsnet-2 (attempt $attempt): $kill_requests requests from $CLIENTS clients," \
      "0 failed; $kill_inflight in flight on it just before, $retried sent again by nginx;" \
      "restarted and ready after ${kill_ready_s} s, serving /cam after ${kill_serve_s} s"
    [ "$retried" -gt 0 ] && return 0
    echo "(no request was in flight at the kill: once more)"
  done
  fail "three kills never caught a request in flight"
}
nginx_retries() { # requests nginx took off a dying upstream and sent to the next one
  docker logs "$(cid nginx)" 2>&1 | grep -cE 'upstream prematurely closed|reset by peer' || true
}

write_report() {
  mkdir -p "$(dirname "$REPORT")"
  cat >"$REPORT" <<JSON
{"image_mb": $image_mb, "image_build_s": $build_s, "compose_up_s": $up_s,
 "cuda_image": "$cuda_image",
 "swap": {"requests": $swap_requests, "failed": 0, "replica1_s": $swap_s_1, "replica2_s": $swap_s_2},
 "kill": {"clients": $CLIENTS, "requests": $kill_requests, "failed": 0, "in_flight": $kill_inflight,
          "retried_by_nginx": $kill_retried, "ready_s": $kill_ready_s, "serving_s": $kill_serve_s}}
JSON
  echo "report: $REPORT"
  cat "$REPORT"
}
