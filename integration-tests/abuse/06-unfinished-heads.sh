#!/usr/bin/env bash
# abuse 06 request heads that never end must cost bounded memory: 500 connections (from four
# addresses, under the per-client cap) each send "GET / HTTP/1.1\r\nX: " and 30 KB of 'a', and
# nothing more: p's RSS grows by less than 48 MiB. Then 500 that go on to 256 KiB (past the
# 32 KiB cap on a head): p's peak RSS stays under 48 MiB above where it started. Meanwhile a
# victim's GET of a 6-byte file takes under 1 s; afterwards the tunnel is the same.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

make_root "$T/root"
start_pair heads || exit 0
tid=$PAIR_TID
trap stop_attacks EXIT
p_pid=$(proc_pid p-heads)
attackers=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5
for _ in 1 2 3; do http_code "$PAIR_FRONT/small.txt" >/dev/null; done # warm up before the baseline
settle_rss p-heads
base=$(mem_kib p-heads VmRSS)

# heads BYTES: 500 connections, each a head of BYTES that never ends; measures p's RSS
heads() {
  local bytes=$1 name=heads-$1 now
  attack "$name" python3 "$TOOLS/flood.py" hold 127.0.0.1 "$PAIR_FRONT_PORT" --kind partial-head --head-bytes "$bytes" \
    --count 500 --sources "$attackers" --hold 30 --ready "$T/$name.ready" --watch-pid "$p_pid" --watch-max-mib 1024
  attack_ready "$name" 20 || return 0
  settle_rss p-heads
  now=$(mem_kib p-heads VmRSS)
  HEADS_GROWTH_KIB=$((${now:-0} - base))
  HEADS_OPEN="$(jfield "$T/$name.ready" connected) connected"
  victim_get "with 500 unfinished heads of $bytes bytes, a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
  stop_attacks
  HEADS_OPEN+=", $(jfield "$T/$name.out" closed) closed by p while held"
}

heads 30000
if [ "$HEADS_GROWTH_KIB" -lt $((48 * 1024)) ]; then
  pass "500 heads of 30 KB ($HEADS_OPEN): p's RSS grew by $((HEADS_GROWTH_KIB / 1024)) MiB (limit 48 MiB)"
else
  fail "500 heads of 30 KB: p's RSS grows by less than 48 MiB" "< 48 MiB" "$((HEADS_GROWTH_KIB / 1024)) MiB ($HEADS_OPEN)"
fi

heads 262144
peak=$(mem_kib p-heads VmHWM)
if [ $((peak - base)) -lt $((48 * 1024)) ]; then
  pass "500 heads growing to 256 KiB ($HEADS_OPEN): p's peak RSS $(((peak - base) / 1024)) MiB above the start (limit 48 MiB)"
else
  fail "500 heads growing to 256 KiB: p's peak RSS under 48 MiB above the start" "< 48 MiB" "$(((peak - base) / 1024)) MiB ($HEADS_OPEN)"
fi

check_tunnel_survived "unfinished heads" "$PAIR_ADMIN" heads "$tid"
victim_get "afterwards a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
stop_pair heads
rm -f "$T/root/big.bin"
