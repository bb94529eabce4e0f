#!/usr/bin/env bash
# abuse 10 a TLS client that negotiates ALPN h2 and then sends an HTTP/1.1 request in plain
# text must not be served as HTTP/1.1 (p --tls): the connection is closed or gets an HTTP/2
# GOAWAY, every time (5 runs). The tunnel is the same afterwards.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"
require_h2

make_root "$T/root"
start_pair alpn --tls || exit 0
tid=$PAIR_TID
"$PY_H2" "$TOOLS/h2abuse.py" conformance 127.0.0.1 "$PAIR_FRONT_PORT" --tls --test h1-after-alpn-h2 --repeat 5 \
  --timeout 3 >"$T/alpn.out" 2>"$T/alpn.err"
check_runs "ALPN h2, then 'GET / HTTP/1.1': closed or GOAWAY, never an HTTP/1.1 answer" "$T/alpn.out"
check_tunnel_survived "ALPN h2 with HTTP/1.1 inside" "$PAIR_ADMIN" alpn "$tid"
stop_pair alpn
rm -f "$T/root/big.bin"
