#!/usr/bin/env bash
# 33 memory goes back after a burst: 16 downloads of 24 MiB at once through an own p/c pair,
# every one byte-exact; then, once the pair has been quiet for a moment, both ends return to
# within a few MiB of what they held before the burst (the origin frees its kept file-chunk
# buffers, both trim the heap: common::memory). Before, the origin kept 8 MiB of chunk
# buffers and both kept their heap's high-water mark for as long as they ran.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

N=16
SLACK_MIB=3
mkdir -p "$T/root"
make_file "$T/root/big.bin" 24
want=$(sha "$T/root/big.bin")
start_pair mem || exit 0

fetch_check "a first download (warms both ends)" "$PAIR_FRONT/big.bin" "$T/root/big.bin"
# Quiet first, so that "before" is the ends' resting size.
sleep 2
settle_rss p-mem
settle_rss c-mem
p_before=$(mem_kib p-mem VmRSS) c_before=$(mem_kib c-mem VmRSS)

for ((i = 0; i < N; i++)); do
  "${CURL[@]}" --max-time 60 -o "$T/dl.$i" "$PAIR_FRONT/big.bin" 2>"$T/dl.$i.err" &
done
wait
ok=0
for ((i = 0; i < N; i++)); do
  [ "$(sha "$T/dl.$i" 2>/dev/null)" = "$want" ] && ok=$((ok + 1))
  rm -f "$T/dl.$i"
done
check_eq "$N downloads of 24 MiB at once, byte-exact" "$N" "$ok"
p_peak=$(mem_kib p-mem VmRSS) c_peak=$(mem_kib c-mem VmRSS)

_back_to() { [ "$(mem_kib "$1" VmRSS)" -le $(($2 + SLACK_MIB * 1024)) ]; }
for end in p c; do
  name=$end-mem before_var=${end}_before peak_var=${end}_peak
  before=${!before_var} peak=${!peak_var}
  if wait_until 10 _back_to "$name" "$before"; then
    pass "$name gives memory back after the burst: $((before / 1024)) MiB before, $((peak / 1024)) MiB just after, $(($(mem_kib "$name" VmRSS) / 1024)) MiB once quiet"
  else
    fail "$name gives memory back after the burst (within 10 s)" "≤ $((before / 1024 + SLACK_MIB)) MiB" \
      "$(($(mem_kib "$name" VmRSS) / 1024)) MiB ($((before / 1024)) before, $((peak / 1024)) just after)"
  fi
done
fetch_check "the pair still serves after giving memory back" "$PAIR_FRONT/big.bin" "$T/root/big.bin"
stop_pair mem
