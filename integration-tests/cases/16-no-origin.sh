#!/usr/bin/env bash
# 16 no origin: a p with no c answers 502 promptly (bounded --max-time), the body says no
# origin is connected — for GET, HEAD, POST and HTTP/2 — and its admin lists no origin.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts a p without an origin"

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
front=http://127.0.0.1:${ports[0]}
admin=http://127.0.0.1:${ports[2]}
start_p p-none "$WORK/certs-noorigin" "${ports[0]}" "${ports[1]}" "${ports[2]}" ||
  fail "p starts" "ca.pem and token written" "$(tail -n 3 "$LOGS/p-none.log")"

_listening() { [ "$(http_code "$1" --max-time 3)" != 000 ]; }
wait_until 10 _listening "$front/" || fail "p's front end listens within 10 s" "a response" "none"

req none "$front/poster.png" --max-time 5
check_eq "GET with no origin: status (curl exit $R_RC)" 502 "$R_STATUS"
check_file_contains "GET with no origin: body" "$R_BODY" "no origin is connected"
req noneroot "$front/" --max-time 5
check_eq "GET / with no origin: status" 502 "$R_STATUS"
req nonehead "$front/poster.png" --max-time 5 -I
check_eq "HEAD with no origin: status" 502 "$R_STATUS"
req nonepost "$front/upload" --max-time 5 --data-binary 'hello' -H 'Expect:'
check_eq "POST with no origin: status" 502 "$R_STATUS"
req noneh2 "$front/poster.png" --max-time 5 --http2-prior-knowledge
check_eq "HTTP/2 GET with no origin: protocol" 2 "$R_VERSION"
check_eq "HTTP/2 GET with no origin: status" 502 "$R_STATUS"
check_file_contains "HTTP/2 GET with no origin: body" "$R_BODY" "no origin is connected"

cx --max-time 5 "$admin/status" >"$T/status.json" 2>"$T/status.err"
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["origins"]))' "$T/status.json" 2>&1)
check_eq "admin /status lists no origin" 0 "$n"

"$P_BIN" status --admin-listen "127.0.0.1:${ports[2]}" >"$T/pstatus.out" 2>&1 </dev/null
check_eq "p status with no origin: exit status" 0 "$?"

stop_proc p-none

# `p status` against an admin address where nothing listens: a clear error, non-zero exit.
timeout 10 "$P_BIN" status --admin-listen "127.0.0.1:${ports[2]}" >"$T/pstatus-dead.out" 2>&1 </dev/null
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ]; then
  pass "p status with no proxy running: non-zero exit ($rc)"
else
  fail "p status with no proxy running: non-zero exit, within 10 s" "1..123" "$rc"
fi
check_true "p status with no proxy running: says why" "an error message" "$(head -c 100 "$T/pstatus-dead.out")" \
  grep -qi 'error' "$T/pstatus-dead.out"
