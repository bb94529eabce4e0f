#!/usr/bin/env bash
# 28 a peer that freezes without closing its connection (SIGSTOP: like a home server losing
# its network) is detected by the tunnel's keepalive: with c frozen, p drops the origin
# within 30 s, the request in flight gets 502 instead of hanging, new ones get 502; after
# SIGCONT c reconnects by itself. With p frozen, c notices the dead tunnel within 30 s;
# after SIGCONT it reconnects by itself and requests succeed again (same PIDs throughout).
# A proxy that answers the upgrade and then says nothing makes c give the tunnel up after
# 10 s, naming the cause, and dial again.
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

# 3. A proxy that answers the upgrade and then never speaks HTTP/2 (stuck, or a middlebox
# swallowing the stream): c gives the tunnel up after its 10 s handshake timeout, says why,
# and dials again, instead of waiting on it forever.
rm -f "$T/silent.port" "$T/silent.count"
start_bg silent-proxy "$LOGS/silent-proxy.log" python3 "$TOOLS/silent_proxy.py" \
  --certs-dir "$CERTS" --port-file "$T/silent.port" --count-file "$T/silent.count"
if wait_files 10 "$T/silent.port"; then
  start_c c-silent "$CERTS" "$(cat "$T/silent.port")" silent --root "$FIX"
  _upgraded_twice() { [ "$(wc -l <"$T/silent.count" 2>/dev/null || echo 0)" -ge 2 ]; }
  if wait_until 30 _upgraded_twice; then
    pass "silent proxy: c gives up the tunnel and dials again within 30 s"
  else
    fail "silent proxy: c gives up the tunnel and dials again within 30 s" "2 upgrades" \
      "$(cat "$T/silent.count" 2>/dev/null | wc -l) ($(oneline "$(tail -n 2 "$LOGS/c-silent.log")"))"
  fi
  check_file_contains "silent proxy: c's log names the cause" "$LOGS/c-silent.log" "sent no HTTP/2 preface within 10s"
  stop_proc c-silent
else
  fail "the silent proxy starts" "its port" "$(oneline "$(tail -n 3 "$LOGS/silent-proxy.log")")"
fi
stop_proc silent-proxy
