#!/usr/bin/env bash
# 50 routing through the real binaries: its own p with --config. `p check-config` accepts a good
# file and refuses a broken one with exit 64 and file:line: key. The URL space is split over
# two origins (host wildcard and path prefix), an outside service (the python upstream) and a
# password-protected prefix (curl with and without -u); no route → 404, a route whose origin
# is not connected → 502 naming it, an upgrade → 501, a route's timeout → 504, a client past
# its requests in flight → 503. A token that does not admit the name →
# 403 at the tunnel. SIGHUP adds a route and revokes a token (its origin's tunnel closes);
# a bad file then changes nothing.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own proxy and origins"

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
fp=${ports[0]} tp=${ports[1]} ap=${ports[2]}
certs=$T/certs conf=$T/proxy.toml front=http://127.0.0.1:$fp
mkdir -p "$certs" "$T/tokens" "$T/alpha" "$T/beta"
echo alpha >"$T/alpha/who.txt"
echo beta >"$T/beta/who.txt"
echo alpha-token >"$T/tokens/alpha"
echo beta-token >"$T/tokens/beta"
chmod 600 "$T/tokens/"*
hash=$(printf 'tompw\n' | "$P_BIN" hash-password)
check_match "p hash-password prints an argon2id PHC string" "^[\$]argon2id[\$]" "$hash"

write_conf() { # extra route text as $1, beta's token file as $2
  cat >"$conf" <<TOML
[[origin]]
name = "alpha"
token_file = "tokens/alpha"

[[origin]]
name = "beta"
token_file = "$2"

[[route]]
host = "*.beta.test"
origin = "beta"

[[route]]
path = "/api"
strip_prefix = true
url = "http://127.0.0.1:$UPSTREAM_PORT"

[[route]]
path = "/private"
strip_prefix = true
origin = "alpha"
basic_auth = ["tom:$hash"]

[[route]]
path = "/slow"
strip_prefix = true
url = "http://127.0.0.1:$UPSTREAM_PORT"
timeout = "1s"

[[route]]
path = "/gone"
origin = "nobody"
$1
[[route]]
path = "/healthz"
handler = "health"

[[route]]
host = "alpha.test"
origin = "alpha"
TOML
}
write_conf "" "tokens/beta"

"$P_BIN" check-config "$conf" >"$T/check.out" 2>&1
check_eq "p check-config on a good file: exit 0" 0 "$?"
printf '[[route]]\norigin = "alpha"\nallow = ["10.0.0.0/33"]\n' >"$T/broken.toml"
"$P_BIN" check-config "$T/broken.toml" >"$T/broken.out" 2>&1
check_eq "p check-config on a broken file: exit 64" 64 "$?"
check_file_contains "the error names file, line and key" "$T/broken.out" "broken.toml:3: route[1].allow:"

# One request in flight per client address, and a short wait for it: the 503 check below.
start_p p-routes "$certs" "$fp" "$tp" "$ap" --config "$conf" --max-streams-per-client 1 --client-queue-timeout 1s ||
  fail "p with --config starts"
start_c c-alpha "$certs" "$tp" alpha --root "$T/alpha" --token-file "$T/tokens/alpha"
start_c c-beta "$certs" "$tp" beta --root "$T/beta" --token-file "$T/tokens/beta"
start_c c-thief "$certs" "$tp" beta --root "$T/alpha" --token-file "$T/tokens/alpha"
wait_until 20 admin_lists "http://127.0.0.1:$ap" alpha || fail "alpha connects within 20 s"
wait_until 20 admin_lists "http://127.0.0.1:$ap" beta || fail "beta connects within 20 s"

check_eq "Host alpha.test → origin alpha" alpha "$(cx -H 'Host: alpha.test' "$front/who.txt")"
check_eq "Host www.beta.test (wildcard) → origin beta" beta "$(cx -H 'Host: www.beta.test' "$front/who.txt")"
req api "$front/api/echo" -H 'Host: alpha.test' --data-binary 'hello'
check_eq "/api → the outside service, prefix stripped" "200 hello" "$R_STATUS $(cat "$R_BODY")"
check_eq "/private without -u → 401" 401 "$(http_code "$front/private/who.txt")"
check_eq "/private with a wrong password → 401" 401 "$(http_code "$front/private/who.txt" -u tom:nope)"
check_eq "/private with -u → 200" 200 "$(http_code "$front/private/who.txt" -u tom:tompw)"
check_eq "/healthz → 200 from p" ok "$(cx "$front/healthz")"
req noroute "$front/who.txt" -H 'Host: nowhere.test'
check_eq "no route → 404" 404 "$R_STATUS"
check_file_contains "the 404 says no route matched" "$R_BODY" "no route for nowhere.test/who.txt"
req down "$front/gone" -H 'Host: alpha.test'
check_eq "a route whose origin is not connected → 502" 502 "$R_STATUS"
check_file_contains "the 502 names the origin" "$R_BODY" "origin nobody is not connected"
check_eq "an upgrade request → 501" 501 "$(http_code "$front/who.txt" -H 'Host: alpha.test' -H 'Connection: upgrade' -H 'Upgrade: websocket')"

if wait_file_has 20 "$LOGS/c-thief.log" "does not admit"; then
  pass "a token used for another origin's name is refused (c logs the 403 reason)"
else
  fail "a token used for another origin's name is refused" "403 reason in c's log" "$(tail -n 2 "$LOGS/c-thief.log")"
fi
check_file_contains "c logs the refusal at ERROR with 403" "$LOGS/c-thief.log" "403 Forbidden"
check_file_contains "p logs the refusal" "$LOGS/p-routes.log" "does not admit the origin name"

# SIGHUP: a new route, and beta's token replaced (the connected beta is revoked).
echo other-token >"$T/tokens/beta2"
chmod 600 "$T/tokens/beta2"
write_conf $'\n[[route]]\npath = "/new"\nhandler = "health"\n' "tokens/beta2"
stop_sig() { kill -HUP "$(proc_pid p-routes)"; }
stop_sig
_new_route() { [ "$(http_code "$front/new")" = 200 ]; }
if wait_until 10 _new_route; then
  pass "after SIGHUP the new route answers"
else
  fail "after SIGHUP the new route answers within 10 s" 200 "$(http_code "$front/new")"
fi
_beta_gone() { ! admin_lists "http://127.0.0.1:$ap" beta; }
if wait_until 10 _beta_gone; then
  pass "the revoked origin's tunnel is closed"
else
  fail "the revoked origin's tunnel is closed within 10 s"
fi
check_eq "alpha keeps serving through the reload" alpha "$(cx -H 'Host: alpha.test' "$front/who.txt")"

# A route's timeout: the service takes 5 s, the route allows 1 s.
started=$(now_ms)
req slow "$front/slow/delay?s=5" --max-time 10
check_eq "a route's timeout → 504 from p" 504 "$R_STATUS"
check_true "the 504 comes after the route's 1 s, not the service's 5 s" "under 3 s" "$(($(now_ms) - started)) ms" \
  [ $(($(now_ms) - started)) -lt 3000 ]
# A client with its one request in flight: another waits 1 s, then 503 with Retry-After.
cx --max-time 10 -o /dev/null "$front/api/delay?s=6" &
holder=$!
_busy() { [ "$(http_code "$front/who.txt" -H 'Host: alpha.test' --max-time 3)" = 503 ]; }
if wait_until 5 _busy; then
  pass "a client past its requests in flight gets 503"
else
  fail "a client past its requests in flight gets 503 within 5 s" 503 "$(http_code "$front/who.txt" -H 'Host: alpha.test')"
fi
check_match "the 503 says when to retry" "[Rr]etry-[Aa]fter: 1" "$(cx -s -D - -o /dev/null -H 'Host: alpha.test' "$front/who.txt")"
wait "$holder" 2>/dev/null

printf '[[route]]\nhost = "bad host"\norigin = "alpha"\n' >"$conf"
stop_sig
if wait_file_has 10 "$LOGS/p-routes.log" "proxy.toml:2: route[1].host"; then
  pass "a bad file on reload is logged with file:line: key"
else
  fail "a bad file on reload is logged with file:line: key"
fi
check_eq "and changes nothing (the new route still answers)" 200 "$(http_code "$front/new")"

stop_proc c-thief
stop_proc c-beta
stop_proc c-alpha
stop_proc p-routes
