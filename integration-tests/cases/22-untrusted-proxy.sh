#!/usr/bin/env bash
# 22 c verifies the proxy: a c given --ca of ANOTHER proxy (with the right token) refuses
# the TLS handshake, logs why (certificate), keeps retrying, and is never listed; the
# good origin keeps serving.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts an origin with the wrong CA"

start_c c-wrongca "$CERTS" "$TUNNEL_PORT" wrong-ca --root "$FIX" --ca "$UP_CERTS/ca.pem" --token-file "$CERTS/token"
_cert_error() { grep -iE 'certificate|handshake' "$LOGS/c-wrongca.log" | grep -qiE 'warn|error'; }
if wait_until 20 _cert_error; then
  pass "c with a foreign CA logs a certificate/handshake error ($(oneline "$(grep -m1 -iE 'certificate|handshake' "$LOGS/c-wrongca.log" | cut -c1-140)"))"
else
  fail "c with a foreign CA logs a certificate/handshake error within 20 s" "such a line" "$(tail -n 2 "$LOGS/c-wrongca.log")"
fi
_retried() { [ "$(grep -ciE 'certificate|handshake' "$LOGS/c-wrongca.log")" -ge 2 ]; }
check_true "it retries" ">= 2 attempts" "fewer" wait_until 15 _retried
check_true "it keeps running" alive exited proc_alive c-wrongca
if admin_lists "$ADMIN" wrong-ca; then
  fail "an origin that does not trust the proxy is never listed" "not listed" "listed"
else
  pass "an origin that does not trust the proxy is never listed"
fi
fetch_check "the good origin keeps serving" "$FRONT/poster.png" "$FIX/poster.png"
stop_proc c-wrongca
