#!/usr/bin/env bash
# 18 configuration through REVMUX_<FLAG> environment variables only: a p and a c started
# with no flags at all (listen addresses, certs dir, token, proxy, root, name from the
# environment; the token given to c through a token file) connect and serve byte-exact.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
certs=$WORK/certs-env
front=http://127.0.0.1:${ports[0]}
admin=http://127.0.0.1:${ports[2]}
token=env-token-$RANDOM$RANDOM
echo "$token" >"$T/token-file"
mkdir -p "$certs"

start_bg p-env "$LOGS/p-env.log" env \
  REVMUX_LISTEN="127.0.0.1:${ports[0]}" REVMUX_TUNNEL_LISTEN="127.0.0.1:${ports[1]}" \
  REVMUX_ADMIN_LISTEN="127.0.0.1:${ports[2]}" REVMUX_CERTS_DIR="$certs" REVMUX_TOKEN="$token" "$P_BIN"
if wait_files 20 "$certs/ca.pem"; then
  pass "p configured by environment wrote its CA into REVMUX_CERTS_DIR"
else
  fail "p configured by environment wrote $certs/ca.pem" "ca.pem" "$(tail -n 3 "$LOGS/p-env.log")"
fi
start_bg c-env "$LOGS/c-env.log" env \
  REVMUX_PROXY="$PROXY_HOST:${ports[1]}" REVMUX_ROOT="$FIX" REVMUX_NAME=env-origin \
  REVMUX_CA="$certs/ca.pem" REVMUX_TOKEN_FILE="$T/token-file" "$C_BIN"

if wait_http 20 200 "$front/"; then
  pass "env-configured pair serves: GET / is 200"
else
  fail "env-configured pair serves GET / within 20 s" 200 "$(http_code "$front/") ($(grep -m1 -i error "$LOGS/c-env.log" | head -c 150))"
fi
fetch_check "env-configured pair: /films/clip.mkv byte-exact" "$front/films/clip.mkv" "$FIX/films/clip.mkv"
check_true "admin /status lists REVMUX_NAME 'env-origin'" "listed" "not listed" admin_lists "$admin" env-origin

stop_proc c-env
stop_proc p-env
