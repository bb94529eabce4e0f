#!/usr/bin/env bash
# abuse 09 the tunnel port must stay open to the real origin while someone floods it: 1,024
# connections from 127.0.0.2 complete TLS and never send the tunnel request (p allows one
# address 16 handshakes at a time, each with a 10 s deadline). Then the real c is killed and
# restarted: it must be back (a new tunnel, a request through it served) within 3 s. p's
# peak RSS stays under 200 MiB.
# case-timeout: 150
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts, kills and restarts its own p/c pair"

make_root "$T/root"
start_pair tflood || exit 0
old_tid=$PAIR_TID
trap stop_attacks EXIT

attack handshakes python3 "$TOOLS/flood.py" hold 127.0.0.1 "$PAIR_TUNNEL_PORT" --kind nothing --tls \
  --count 1024 --concurrency 64 --sources 127.0.0.2 --hold 90 --ready "$T/handshakes.ready"
if attack_ready handshakes 60; then
  pass "1,024 connections to the tunnel port: $(jfield "$T/handshakes.ready" connected) connected, $(jfield "$T/handshakes.ready" closed) closed by p already"
fi

stop_proc c-tflood KILL
start_c c-tflood "$ABUSE_CERTS" "$PAIR_TUNNEL_PORT" tflood --root "$T/root"
start=$(now_ms)
_back() {
  local now
  now=$(tunnel_id "$PAIR_ADMIN" tflood)
  [ -n "$now" ] && [ "$now" != "$old_tid" ] && [ "$(http_code "$PAIR_FRONT/small.txt" --max-time 1)" = 200 ]
}
if wait_until 3 _back; then
  pass "the restarted c is back (new tunnel $(tunnel_id "$PAIR_ADMIN" tflood), request served) in $(($(now_ms) - start)) ms (limit 3 s)"
else
  wait_until 30 _back
  fail "the restarted c is back (new tunnel, request served) within 3 s" "within 3 s" \
    "$(if _back; then echo "after $(($(now_ms) - start)) ms"; else echo "not back after 30 s"; fi)"
fi
victim_get "then a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
check_peak_rss "tunnel-port flood" p-tflood 200
stop_attacks
stop_pair tflood
rm -f "$T/root/big.bin"
