#!/usr/bin/env bash
# abuse 04 clients that ask for a lot and read nothing must not stall the tunnel for others:
# (a) one h2c connection announcing SETTINGS_INITIAL_WINDOW_SIZE = 0 with 70 streams GETting
# a 10 MiB file; (b) 100 HTTP/1.1 connections GETting it and never reading. While each attack
# stays, a victim's GET of a 6-byte file completes in under 1 s and its 10 MiB download
# completes byte-exact within 10 s. p's peak RSS stays under 200 MiB; the tunnel is the same.
# case-timeout: 120
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"
require_h2

make_root "$T/root"
start_pair stall || exit 0
tid=$PAIR_TID
trap stop_attacks EXIT
p_pid=$(proc_pid p-stall)

# (a) zero stream window, 70 streams on one connection
attack zero-window "$PY_H2" "$TOOLS/h2abuse.py" zero-window 127.0.0.1 "$PAIR_FRONT_PORT" \
  --path /big.bin --streams 70 --hold 60 --ready "$T/zero-window.ready"
if attack_ready zero-window 15; then
  pass "h2c attacker in place: $(jfield "$T/zero-window.ready" opened) streams opened, $(jfield "$T/zero-window.ready" responses) answered, window 0"
fi
settle "$PAIR_ADMIN"
victim_get "(a) with 70 zero-window streams open, a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
victim_get "(a) with 70 zero-window streams open, a victim's 10 MiB download" "$PAIR_FRONT/big.bin" "$T/root/big.bin" 10
stop_attacks

# (b) 100 HTTP/1.1 downloads that are never read
attack stalled-h1 python3 "$TOOLS/flood.py" hold 127.0.0.1 "$PAIR_FRONT_PORT" --kind stalled-get \
  --path /big.bin --count 100 --sources 127.0.0.3 --hold 60 --ready "$T/stalled-h1.ready" \
  --watch-pid "$p_pid" --watch-max-mib 1024
if attack_ready stalled-h1 15; then
  pass "HTTP/1.1 attacker in place: $(jfield "$T/stalled-h1.ready" connected) connections sent their GET"
fi
settle "$PAIR_ADMIN"
victim_get "(b) with 100 unread HTTP/1.1 downloads, a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
victim_get "(b) with 100 unread HTTP/1.1 downloads, a victim's 10 MiB download" "$PAIR_FRONT/big.bin" "$T/root/big.bin" 10
check_peak_rss "stalled readers" p-stall 200
stop_attacks

check_tunnel_survived "stalled readers" "$PAIR_ADMIN" stall "$tid"
stop_pair stall
rm -f "$T/root/big.bin"
