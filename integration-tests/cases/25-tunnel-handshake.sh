#!/usr/bin/env bash
# 25 the tunnel port's handshake, spoken directly with curl over TLS (trusting the run's
# CA): only `PUT /revmux/tunnel` with `Upgrade: revmux/1` is considered; no token or a wrong
# one → 401 with WWW-Authenticate: Bearer and the reason; a wrong protocol → 426; a bad
# origin name → 400; other paths/methods → 404/405; plain HTTP gets no HTTP answer. None of
# it disturbs the serving origin. Also: c refuses invalid settings at once (exit status,
# message) instead of retrying forever.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "talks to the tunnel port of its own p"

tun=https://localhost:$TUNNEL_PORT
token=$(cat "$CERTS/token")
up=(-X PUT -H 'Connection: upgrade' -H 'Upgrade: revmux/1' -H 'revmux-origin: probe' -H 'Content-Length: 0')

# handshake LABEL EXPECTED-STATUS BODY-SUBSTRING CURL-ARGS...
handshake() {
  local label=$1 want=$2 text=$3
  shift 3
  req hs "$tun/revmux/tunnel" --cacert "$CERTS/ca.pem" --max-time 10 "$@"
  check_eq "$label: status" "$want" "$R_STATUS"
  [ -n "$text" ] && check_file_contains "$label: the reason is given" "$R_BODY" "$text"
  return 0
}

handshake "PUT without a token" 401 "missing token" "${up[@]}"
check_match "PUT without a token: WWW-Authenticate" '^Bearer' "$(hdr hs www-authenticate)"
handshake "PUT with a wrong token" 401 "wrong token" "${up[@]}" -H 'Authorization: Bearer wrong'
check_match "PUT with a wrong token: WWW-Authenticate" '^Bearer' "$(hdr hs www-authenticate)"
handshake "PUT with the right token but Upgrade: websocket" 426 "unsupported protocol" \
  -X PUT -H 'Connection: upgrade' -H 'Upgrade: websocket' -H "Authorization: Bearer $token" -H 'revmux-origin: probe'
handshake "PUT with the right token and an invalid origin name" 400 "invalid origin name" \
  -X PUT -H 'Connection: upgrade' -H 'Upgrade: revmux/1' -H "Authorization: Bearer $token" -H 'revmux-origin: Bad Name'
handshake "GET /revmux/tunnel" 405 "" -H "Authorization: Bearer $token"
req hs404 "$tun/" --cacert "$CERTS/ca.pem" --max-time 10
check_eq "GET / on the tunnel port: status" 404 "$R_STATUS"

req plain "http://127.0.0.1:$TUNNEL_PORT/revmux/tunnel" --max-time 10 "${up[@]}"
check_eq "plain HTTP to the TLS tunnel port: no HTTP answer" 000 "$R_STATUS"

if admin_lists "$ADMIN" probe; then
  fail "no probe was ever listed as an origin" "not listed" "listed"
else
  pass "no probe was ever listed as an origin"
fi
fetch_check "the origin keeps serving" "$FRONT/poster.png" "$FIX/poster.png"

# c validates its settings before dialling: a clear message and exit status, promptly.
# bad_setting LABEL MESSAGE-SUBSTRING C-ARGS...
bad_setting() {
  local label=$1 text=$2 rc
  shift 2
  timeout 10 "$C_BIN" --proxy "$PROXY_HOST:$TUNNEL_PORT" "$@" >"$T/bad.out" 2>&1 </dev/null
  rc=$?
  if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
    pass "c $label: exits at once with status $rc"
  else
    fail "c $label: exits at once with an error status" "non-zero within 10 s" "$rc"
  fi
  check_file_contains "c $label: says why" "$T/bad.out" "$text"
}
bad_setting "--name 'Bad Name'" "--name" --certs-dir "$CERTS" --root "$FIX" --name 'Bad Name'
bad_setting "--root of a missing directory" "--root" --certs-dir "$CERTS" --root "$WORK/no-such-dir" --name ok
bad_setting "--certs-dir without a token" "token" --root "$FIX" --name ok --certs-dir "$WORK/no-such-certs"
