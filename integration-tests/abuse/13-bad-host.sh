#!/usr/bin/env bash
# abuse 13 requests with a malformed Host are refused by p itself with 400 (RFC 9112 3.2):
# two Host fields (different, and the same twice), userinfo in Host (user:pw@host), a port out
# of range (host:99999). The tunnel is the same afterwards.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

make_root "$T/root"
start_pair host || exit 0
tid=$PAIR_TID
# bad_host LABEL HEADER...: one raw HTTP/1.1 request with these Host lines must get 400
bad_host() {
  local label=$1 args=() h
  shift
  for h in "$@"; do args+=(--header "$h"); done
  python3 "$TOOLS/flood.py" request 127.0.0.1 "$PAIR_FRONT_PORT" --sources 127.0.0.2 --path /small.txt "${args[@]}" >"$T/host.out"
  check_eq "$label: 400 from p" '{"400": 1}' "$(jfield "$T/host.out" statuses)"
}
bad_host "two different Host fields" "Host: localhost" "Host: evil.example"
bad_host "the same Host field twice" "Host: localhost" "Host: localhost"
bad_host "Host with userinfo (user:pw@host)" "Host: user:pw@localhost"
bad_host "Host with port 99999" "Host: localhost:99999"
check_tunnel_survived "malformed Host" "$PAIR_ADMIN" host "$tid"
victim_get "a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
stop_pair host
rm -f "$T/root/big.bin"
