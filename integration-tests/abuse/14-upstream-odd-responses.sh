#!/usr/bin/env bash
# abuse 14 odd but legal answers from the local app behind `c --upstream` pass through whole:
# 300 response header lines arrive all 300 (200), and a response with both Content-Length
# and Transfer-Encoding: chunked is read as chunked (RFC 9112 6.3): the 100,000-byte body
# arrives byte-exact, over an HTTP/1.1 and an h2c front end. The tunnel is the same afterwards.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"

start_evil odd || exit 0
start_pair odd -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
tid=$PAIR_TID
for proto in --http1.1 --http2-prior-knowledge; do
  req many "$PAIR_FRONT/many-headers" "$proto" --max-time 10
  n=$(grep -ci '^x-line-[0-9]*:' "$R_HDR")
  check_eq "$proto: 300 response header lines from the app: 200 with all of them" "200, 300 lines, last value-300" \
    "$R_STATUS, $n lines, last $(hdr many x-line-300)"
  fetch_check "$proto: Content-Length and Transfer-Encoding: chunked together: the chunked body, byte-exact" \
    "$PAIR_FRONT/cl-and-te" "$EVIL_DIR/cl-te.bin" "$proto" --max-time 10
done
check_tunnel_survived "odd upstream answers" "$PAIR_ADMIN" odd "$tid"
stop_pair odd
stop_proc svc-odd
