#!/usr/bin/env bash
# 21 two origins on one p: a second c (same files, --name second) connects and p routes new
# requests to it (the most recently connected); when it is SIGKILLed, requests go back to
# the first origin — 200 again within a bounded wait, no restart of anything.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts and kills a second origin"

requests_of() {
  cx --max-time 3 "$ADMIN/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print([o["requests"] for o in json.load(sys.stdin)["origins"] if o["name"] == sys.argv[1]][0])
except Exception:
    print("?")' "$1"
}

start_c c-second "$CERTS" "$TUNNEL_PORT" second --root "$FIX"
if wait_until 20 admin_lists "$ADMIN" second; then
  pass "the second origin is listed next to '$MAIN_ORIGIN'"
else
  fail "the second origin is listed within 20 s" "listed" "$(tail -n 2 "$LOGS/c-second.log")"
fi
check_true "'$MAIN_ORIGIN' is still listed" listed "not listed" admin_lists "$ADMIN" "$MAIN_ORIGIN"

before=$(requests_of second)
for i in 1 2 3; do
  fetch_check "with two origins: request $i byte-exact" "$FRONT/poster.png" "$FIX/poster.png"
done
after=$(requests_of second)
if [[ $before =~ ^[0-9]+$ && $after =~ ^[0-9]+$ ]] && [ "$after" -ge $((before + 3)) ]; then
  pass "the requests went to the most recently connected origin ('second': $before -> $after)"
else
  fail "the requests went to the most recently connected origin" "'second' requests >= $((before + 3))" "$before -> $after"
fi

stop_proc c-second KILL
if wait_http 10 200 "$FRONT/poster.png"; then
  pass "after the second origin dies, requests are served again within 10 s"
else
  fail "after the second origin dies, requests are served again within 10 s" 200 "$(http_code "$FRONT/poster.png")"
fi
for i in 1 2 3 4 5; do
  fetch_check "back on '$MAIN_ORIGIN': request $i byte-exact" "$FRONT/trailer.webm" "$FIX/trailer.webm"
done
if admin_lists "$ADMIN" second; then
  fail "the dead origin is no longer listed" "not listed" "listed"
else
  pass "the dead origin is no longer listed"
fi
