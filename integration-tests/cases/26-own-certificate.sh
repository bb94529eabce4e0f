#!/usr/bin/env bash
# 26 a p given its own certificate (--cert/--key, here the main pair's server.pem), a token
# file and --tls: it creates nothing in its --certs-dir; a c with --ca and --token-file
# connects and https works byte-exact with that CA; then a c with --insecure (no CA at all)
# connects too, warning loudly about it.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
own=$WORK/certs-own-unused
rm -rf "$own"
front=https://localhost:${ports[0]}
admin=http://127.0.0.1:${ports[2]}
start_bg p-own "$LOGS/p-own.log" "$P_BIN" --tls \
  --listen "127.0.0.1:${ports[0]}" --tunnel-listen "127.0.0.1:${ports[1]}" --admin-listen "127.0.0.1:${ports[2]}" \
  --cert "$CERTS/server.pem" --key "$CERTS/server-key.pem" --token-file "$CERTS/token" --certs-dir "$own"
_up() { [ "$(http_code "$admin/status")" = 200 ]; }
wait_until 20 _up || fail "p with --cert/--key starts (admin answers)" 200 "$(tail -n 2 "$LOGS/p-own.log")"

start_bg c-own "$LOGS/c-own.log" "$C_BIN" --proxy "$PROXY_HOST:${ports[1]}" --name own-cert \
  --ca "$CERTS/ca.pem" --token-file "$CERTS/token" --certs-dir "$own" --root "$FIX"
if wait_http 20 200 "$front/" --cacert "$CERTS/ca.pem"; then
  pass "c (--ca, --token-file) connects to p (--cert, --key, --token-file): https GET / is 200"
else
  fail "c connects to p with its own certificate within 20 s" 200 "$(http_code "$front/" --cacert "$CERTS/ca.pem") ($(grep -m1 -iE 'warn|error' "$LOGS/c-own.log" | cut -c1-150))"
fi
fetch_check "https with the given certificate: /trailer.webm byte-exact" "$front/trailer.webm" "$FIX/trailer.webm" --cacert "$CERTS/ca.pem"
if [ -n "$(find "$own" -mindepth 1 2>/dev/null)" ]; then
  fail "with --cert/--key/--token-file p generates nothing in --certs-dir" "empty or absent" "$(find "$own" -mindepth 1 -printf '%P ')"
else
  pass "with --cert/--key/--token-file p generates nothing in --certs-dir"
fi
stop_proc c-own

start_bg c-insecure "$LOGS/c-insecure.log" "$C_BIN" --proxy "$PROXY_HOST:${ports[1]}" --name insecure \
  --insecure --token-file "$CERTS/token" --certs-dir "$own" --root "$FIX"
if wait_until 20 admin_lists "$admin" insecure; then
  pass "c --insecure (no CA) connects"
else
  fail "c --insecure (no CA) connects within 20 s" listed "$(tail -n 2 "$LOGS/c-insecure.log")"
fi
check_true "c --insecure warns about it in its log" "a WARN line naming --insecure" "none" \
  grep -q 'WARN.*--insecure' "$LOGS/c-insecure.log"
fetch_check "through the --insecure origin: /poster.png byte-exact" "$front/poster.png" "$FIX/poster.png" --cacert "$CERTS/ca.pem"

stop_proc c-insecure
stop_proc p-own
