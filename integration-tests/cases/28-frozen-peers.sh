#!/usr/bin/env bash
# 28 a peer that freezes without closing its connection (SIGSTOP: like a home server losing
# its network) is detected by the tunnel's keepalive: with c frozen, p drops the origin
# within 30 s, the request in flight gets 502 instead of hanging, new ones get 502; after
# SIGCONT c reconnects by itself. With p frozen, c notices the dead tunnel within 30 s;
# after SIGCONT it reconnects by itself and requests succeed again (same PIDs throughout).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "freezes its own p and c"

c_pid=$(proc_pid c-main)
p_pid=$(proc_pid p-main)
trap 'kill -CONT "$c_pid" "$p_pid" 2>/dev/null' EXIT

# 1. The origin freezes.
kill -STOP "$c_pid"
"${CURL[@]}" --max-time 40 -o /dev/null -w '%{http_code}' "$FRONT/poster.png" >"$T/inflight.code" 2>/dev/null &
inflight=$!
_dropped() { ! admin_lists "$ADMIN" "$MAIN_ORIGIN"; }
if wait_until 30 _dropped; then
  pass "origin frozen: p drops it from /status within 30 s (keepalive)"
else
  fail "origin frozen: p drops it from /status within 30 s" "not listed" "still listed"
fi
if wait_until 30 pid_dead "$inflight"; then
  wait "$inflight"
  check_eq "origin frozen: the request in flight gets an answer, not a hang" 502 "$(cat "$T/inflight.code")"
else
  fail "origin frozen: the request in flight is answered within 30 s" 502 "still waiting"
fi
req frozen "$FRONT/poster.png" --max-time 5
check_eq "origin frozen: a new request gets 502 promptly" 502 "$R_STATUS"
kill -CONT "$c_pid"
if wait_http 20 200 "$FRONT/"; then
  pass "origin thawed: it reconnects by itself, GET / is 200 within 20 s"
else
  fail "origin thawed: it reconnects by itself within 20 s" 200 "$(http_code "$FRONT/")"
fi
check_eq "origin thawed: same c process" "$c_pid" "$(proc_pid c-main)"

# 2. The proxy freezes.
log_lines=$(wc -l <"$LOGS/c-main.log")
kill -STOP "$p_pid"
_c_noticed() { tail -n +"$((log_lines + 1))" "$LOGS/c-main.log" | grep -qiE 'lost|closed|cannot|reconnect'; }
if wait_until 30 _c_noticed; then
  pass "proxy frozen: c notices the dead tunnel within 30 s ($(oneline "$(tail -n +"$((log_lines + 1))" "$LOGS/c-main.log" | grep -m1 -iE 'lost|closed|cannot|reconnect' | cut -c1-120)"))"
else
  fail "proxy frozen: c notices the dead tunnel within 30 s" "a log line about it" "$(tail -n 1 "$LOGS/c-main.log")"
fi
kill -CONT "$p_pid"
if wait_http 60 200 "$FRONT/"; then
  pass "proxy thawed: c reconnects by itself, GET / is 200 within 60 s"
else
  fail "proxy thawed: c reconnects by itself within 60 s" 200 "$(http_code "$FRONT/")"
fi
fetch_check "afterwards: /poster.png byte-exact" "$FRONT/poster.png" "$FIX/poster.png"
check_eq "same p process" "$p_pid" "$(proc_pid p-main)"
check_eq "same c process" "$c_pid" "$(proc_pid c-main)"
