#!/usr/bin/env bash
# 21 pool failover: a second c with the SAME name ('files') joins the first as a pool (two
# instances under one origin in /status); when it is SIGKILLed, requests keep being served
# by the first, byte-exact, and the pool is back to one instance. Requests never go to
# another origin: fallback stays within the pool.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts and kills a second origin process"

instances_of() {
  cx --max-time 3 "$ADMIN/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print([len(o["instances"]) for o in json.load(sys.stdin)["origins"] if o["name"] == sys.argv[1]][0])
except Exception:
    print("?")' "$1"
}
_instances_are() { [ "$(instances_of "$MAIN_ORIGIN")" = "$1" ]; }

start_c c-second "$CERTS" "$TUNNEL_PORT" "$MAIN_ORIGIN" --root "$FIX"
if wait_until 20 _instances_are 2; then
  pass "a second process named '$MAIN_ORIGIN' joins its pool (2 instances in /status)"
else
  fail "a second process named '$MAIN_ORIGIN' joins its pool within 20 s" 2 "$(instances_of "$MAIN_ORIGIN")"
fi
for i in 1 2 3; do
  fetch_check "with a pool of two: request $i byte-exact" "$FRONT/poster.png" "$FIX/poster.png"
done

stop_proc c-second KILL
if wait_http 10 200 "$FRONT/poster.png"; then
  pass "after one pool member dies, requests are served within 10 s"
else
  fail "after one pool member dies, requests are served within 10 s" 200 "$(http_code "$FRONT/poster.png")"
fi
for i in 1 2 3 4 5; do
  fetch_check "the remaining member serves: request $i byte-exact" "$FRONT/trailer.webm" "$FIX/trailer.webm"
done
if wait_until 15 _instances_are 1; then
  pass "the dead member leaves the pool (1 instance)"
else
  fail "the dead member leaves the pool within 15 s" 1 "$(instances_of "$MAIN_ORIGIN")"
fi
