#!/usr/bin/env bash
# abuse 05 clients that give up at once, by the thousand, must not end the tunnel (the
# proxy's own HTTP/2 client used to end it with too_many_internal_resets): 1,500 HTTP/1.1
# downloads of a 10 MiB file closed ~50 ms after their request (100 at a time, from four
# addresses), then twice 10,000 h2c streams each reset (RST_STREAM CANCEL) right after its
# HEADERS. After each storm the tunnel_id is the same; afterwards a victim's GETs (6 bytes
# under 1 s, 10 MiB byte-exact within 10 s) work and p's peak RSS stayed under 200 MiB.
# abuse: fast
# case-timeout: 180
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"
require_h2

make_root "$T/root"
start_pair storm || exit 0
tid=$PAIR_TID
trap stop_attacks EXIT
attackers=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5

python3 "$TOOLS/flood.py" abandon 127.0.0.1 "$PAIR_FRONT_PORT" --total 1500 --concurrency 100 --after 0.05 \
  --path /big.bin --sources "$attackers" >"$T/abandon.out"
check_eq "1,500 HTTP/1.1 downloads abandoned after ~50 ms: all sent" 1500 "$(jfield "$T/abandon.out" "done")"
check_tunnel_survived "1,500 abandoned HTTP/1.1 downloads" "$PAIR_ADMIN" storm "$tid"

# If that storm ended the tunnel, let c come back so the next one is judged on its own.
wait_until 20 admin_lists "$PAIR_ADMIN" storm
tid=$(tunnel_id "$PAIR_ADMIN" storm)
# Two rounds: the tunnel used to go down in about half of them.
for round in 1 2; do
  "$PY_H2" "$TOOLS/h2abuse.py" reset-storm 127.0.0.1 "$PAIR_FRONT_PORT" --streams 10000 --per-conn 100 --delay 0.002 \
    --path /big.bin --sources "$attackers" --max-seconds 60 >"$T/resets.out"
  check_eq "round $round: 10,000 h2c streams reset right after HEADERS: all sent" 10000 "$(jfield "$T/resets.out" streams_sent)"
  check_tunnel_survived "round $round: 10,000 HTTP/2 resets" "$PAIR_ADMIN" storm "$tid"
  wait_until 20 admin_lists "$PAIR_ADMIN" storm
  tid=$(tunnel_id "$PAIR_ADMIN" storm)
done

victim_get "after the storms, a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
victim_get "after the storms, a victim's 10 MiB download" "$PAIR_FRONT/big.bin" "$T/root/big.bin" 10
check_peak_rss "reset storms" p-storm 200
stop_pair storm
rm -f "$T/root/big.bin"
