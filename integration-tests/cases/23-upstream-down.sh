#!/usr/bin/env bash
# 23 the local service behind `c --upstream` goes away: requests get a prompt 502 (bounded
# --max-time) instead of hanging, the origin stays connected (still listed by the admin),
# and a new service on the same port is used again. Runs last of the upstream cases (08, 09, 19, 20).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "stops the python upstream service"

wait_http 20 200 "$UP_FRONT/" || fail "upstream pair ready" "GET $UP_FRONT/ 200" "$(http_code "$UP_FRONT/")"
stop_proc upstream-svc KILL

req down "$UP_FRONT/" --max-time 10
check_eq "upstream service down: GET / status (curl exit $R_RC)" 502 "$R_STATUS"
req downpost "$UP_FRONT/echo" --max-time 10 --data-binary 'hello' -H 'Expect:'
check_eq "upstream service down: POST status" 502 "$R_STATUS"
check_true "the upstream origin stays connected (admin lists '$UP_ORIGIN')" listed "not listed" \
  admin_lists "$UP_ADMIN" "$UP_ORIGIN"

# A new service on the same port: c must use it again without a restart.
cat >"$T/same-port.py" <<PY
import sys
sys.argv = ["upstream.py", "--port-file", "$T/port2", "--trigger-dir", "$TRIGGERS"]
import socketserver
orig = socketserver.TCPServer.__init__
def init(self, addr, handler, bind_and_activate=True):
    orig(self, ("127.0.0.1", $UPSTREAM_PORT), handler, bind_and_activate)
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer.__init__ = init
sys.path.insert(0, "$TOOLS")
import upstream
upstream.main()
PY
start_bg upstream-svc "$LOGS/upstream-svc.log" python3 "$T/same-port.py"
if wait_files 10 "$T/port2"; then
  pass "a new upstream service listens on the same port ($(cat "$T/port2"))"
else
  fail "a new upstream service listens on the same port" "it listens" "$(tail -n 2 "$LOGS/upstream-svc.log")"
fi
if wait_http 10 200 "$UP_FRONT/"; then
  pass "with the service back, GET / through c --upstream is 200 again"
else
  fail "with the service back, GET / through c --upstream is 200 again within 10 s" 200 "$(http_code "$UP_FRONT/")"
fi
