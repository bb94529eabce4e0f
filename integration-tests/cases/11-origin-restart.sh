#!/usr/bin/env bash
# 11 the origin is SIGKILLed: while it is down every request gets 502 promptly (bounded
# --max-time) saying no origin is connected; after c is started again requests succeed,
# and p was never touched (same PID, alive).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "kills and restarts the origin"

p_before=$(proc_pid p-main)
c_old=$(proc_pid c-main)
stop_proc c-main KILL
check_true "origin c (pid $c_old) is gone after SIGKILL" "dead" "still running" pid_dead "$c_old"

if wait_http 5 502 "$FRONT/"; then
  pass "p answers 502 within 5 s of the origin dying"
else
  fail "p answers 502 within 5 s of the origin dying" 502 "$(http_code "$FRONT/")"
fi
for rel in poster.png "films/Le Voyage dans la Lune (1902).mp4" ""; do
  req down "$FRONT/$(urlpath "$rel")" --max-time 5
  check_eq "while the origin is down: GET /$rel status (curl exit $R_RC)" 502 "$R_STATUS"
  check_file_contains "while the origin is down: GET /$rel body" "$R_BODY" "no origin is connected"
done
req downh2 "$FRONT/poster.png" --max-time 5 --http2-prior-knowledge
check_eq "while the origin is down: HTTP/2 GET status" 502 "$R_STATUS"
req downhead "$FRONT/poster.png" --max-time 5 -I
check_eq "while the origin is down: HEAD status" 502 "$R_STATUS"
if admin_lists "$ADMIN" "$MAIN_ORIGIN"; then
  fail "while the origin is down: admin /status does not list it" "not listed" "listed"
else
  pass "while the origin is down: admin /status does not list it"
fi

start_main_c
if wait_http 20 200 "$FRONT/"; then
  pass "after restarting c, GET / is 200 again (within 20 s)"
else
  fail "after restarting c, GET / is 200 again within 20 s" 200 "$(http_code "$FRONT/")"
fi
fetch_check "after the restart: /poster.png byte-exact" "$FRONT/poster.png" "$FIX/poster.png"
fetch_check "after the restart: /trailer.webm byte-exact" "$FRONT/trailer.webm" "$FIX/trailer.webm"
check_eq "p was not restarted (same PID)" "$p_before" "$(proc_pid p-main)"
check_true "p (pid $p_before) is still running" "alive" "dead" pid_alive "$p_before"
