#!/usr/bin/env bash
# 12 p is SIGKILLed and started again on the same ports and certs dir: the running c
# reconnects by itself (same c PID) and requests succeed again (bounded wait, 60 s).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "kills and restarts the proxy"

c_pid=$(proc_pid c-main)
p_old=$(proc_pid p-main)
stop_proc p-main KILL
check_true "p (pid $p_old) is gone after SIGKILL" "dead" "still running" pid_dead "$p_old"
check_eq "while p is down the front end refuses connections" 000 "$(http_code "$FRONT/" --max-time 3)"

if start_main_p; then
  pass "p started again on the same ports and certs dir"
else
  fail "p started again on the same ports and certs dir" "it runs" "$(tail -n 3 "$LOGS/p-main.log")"
fi
if wait_http 60 200 "$FRONT/"; then
  pass "c reconnected by itself: GET / is 200 within 60 s"
else
  fail "c reconnected by itself within 60 s" 200 "$(http_code "$FRONT/")"
fi
check_eq "c was not restarted (same PID)" "$c_pid" "$(proc_pid c-main)"
check_true "c (pid $c_pid) is still running" "alive" "dead" pid_alive "$c_pid"
fetch_check "after the reconnect: /poster.png byte-exact" "$FRONT/poster.png" "$FIX/poster.png"
fetch_check "after the reconnect: /música/canción.mp3 byte-exact" "$FRONT/$(urlpath música/canción.mp3)" "$FIX/música/canción.mp3"
check_true "admin /status lists origin '$MAIN_ORIGIN' again" "listed" "not listed" admin_lists "$ADMIN" "$MAIN_ORIGIN"

# Leave a working pair to the next cases even if the reconnect failed.
if [ "$(http_code "$FRONT/")" != 200 ]; then
  echo "    (restarting c so that the following cases have an origin)"
  stop_proc c-main KILL
  start_main_c
  wait_http 20 200 "$FRONT/"
fi
