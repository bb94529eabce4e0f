#!/usr/bin/env bash
# 27 SIGTERM stops both binaries promptly and cleanly: c exits within 10 s (status 0, or
# 143 = killed by TERM, never a crash) and p then answers 502 (the origin said goodbye);
# p exits within 10 s the same way and its ports are released.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts and stops its own p/c pair"

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
certs=$WORK/certs-stop
front=http://127.0.0.1:${ports[0]}

# Direct children of this script (not start_bg) so that `wait` yields their exit status;
# recorded for run.sh's teardown and stray check all the same.
"$P_BIN" --listen "127.0.0.1:${ports[0]}" --tunnel-listen "127.0.0.1:${ports[1]}" \
  --admin-listen "127.0.0.1:${ports[2]}" --certs-dir "$certs" >"$LOGS/p-stop.log" 2>&1 </dev/null &
p_pid=$!
echo "$p_pid" >"$PIDS/p-stop"
echo "$p_pid" >>"$RUN/all-pids"
wait_files 20 "$certs/ca.pem" "$certs/token" || fail "p starts" "ca.pem and token" "$(tail -n 2 "$LOGS/p-stop.log")"
"$C_BIN" --proxy "$PROXY_HOST:${ports[1]}" --name stopper --certs-dir "$certs" --root "$FIX" \
  >"$LOGS/c-stop.log" 2>&1 </dev/null &
c_pid=$!
echo "$c_pid" >"$PIDS/c-stop"
echo "$c_pid" >>"$RUN/all-pids"
wait_http 20 200 "$front/" || fail "pair ready" 200 "$(http_code "$front/")"

# stop_check LABEL PID: SIGTERM, bounded wait, exit status
stop_check() {
  local label=$1 pid=$2 rc
  kill -TERM "$pid"
  if wait_until 10 pid_dead "$pid"; then
    wait "$pid"
    rc=$?
    pass "$label exits within 10 s of SIGTERM"
    if [ "$rc" = 0 ] || [ "$rc" = 143 ]; then
      pass "$label exit status after SIGTERM is clean ($rc)"
    else
      fail "$label exit status after SIGTERM is clean" "0 or 143" "$rc"
    fi
  else
    fail "$label exits within 10 s of SIGTERM" "exited" "still running"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
}

stop_check c "$c_pid"
rm -f "$PIDS/c-stop"
req after "$front/poster.png" --max-time 5
check_eq "after c stopped, p answers 502" 502 "$R_STATUS"
check_file_contains "after c stopped: body" "$R_BODY" "no origin is connected"

stop_check p "$p_pid"
rm -f "$PIDS/p-stop"
check_eq "after p stopped, its front-end port is closed" 000 "$(http_code "$front/" --max-time 3)"
