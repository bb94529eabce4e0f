#!/usr/bin/env bash
# 33 memory goes back after a burst: 16 downloads of 24 MiB at once through an own p/c pair,
# every one byte-exact; then, once the pair has been quiet for a moment, both ends return to
# within a few MiB of what they held before the burst (the origin frees its kept file-chunk
# buffers, both trim the heap: common::memory). Then the same after stalled downloads that
# are left: their memory is freed only when they go, after the ends have already been quiet.
# Before, the origin kept 8 MiB of chunk buffers and both kept their heap's high-water mark
# for as long as they ran. Last, the same burst through `c --upstream`, whose pooled connections
# to the service must still serve once the heap has been trimmed.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

N=16
SLACK_MIB=4 # how far above its rest an end may stay once quiet (fragmentation pins some)
RISE_MIB=2  # how far the load must have raised an end's peak for the check to mean anything
mkdir -p "$T/root"
make_file "$T/root/big.bin" 24
want=$(sha "$T/root/big.bin")
start_pair mem || exit 0

fetch_check "a first download (warms both ends)" "$PAIR_FRONT/big.bin" "$T/root/big.bin"
# The scenario needs the ends at rest first: a quiet moment, as between two visitors.
sleep 2.5
settle_rss p-mem
settle_rss c-mem

# back_to_rest LABEL [TAG]: both ends' peak since the reset must have risen by RISE_MIB (else
# the load proved nothing: SKIP), and within 10 s each must be back within SLACK_MIB of its rest.
_back_to() { [ "$(mem_kib "$1" VmRSS)" -le $(($2 + SLACK_MIB * 1024)) ]; }
back_to_rest() {
  local label=$1 tag=${2:-mem} end name before peak
  for end in p c; do
    name=$end-$tag
    before=${REST[$end]} peak=$(mem_kib "$name" VmHWM)
    if [ "$peak" -le $((before + RISE_MIB * 1024)) ]; then
      skip "$name gives memory back after $label: not judged, the load raised its RSS only from $((before / 1024)) to $((peak / 1024)) MiB"
    elif wait_until 10 _back_to "$name" "$before"; then
      pass "$name gives memory back after $label: $((before / 1024)) MiB at rest, peak $((peak / 1024)) MiB, $(($(mem_kib "$name" VmRSS) / 1024)) MiB once quiet"
    else
      fail "$name gives memory back after $label (within 10 s)" "≤ $((before / 1024 + SLACK_MIB)) MiB" \
        "$(($(mem_kib "$name" VmRSS) / 1024)) MiB ($((before / 1024)) at rest, peak $((peak / 1024)))"
    fi
  done
}
declare -A REST
mark_rest() {
  local tag=${1:-mem}
  REST[p]=$(mem_kib "p-$tag" VmRSS) REST[c]=$(mem_kib "c-$tag" VmRSS)
  echo 5 >"/proc/$(proc_pid "p-$tag")/clear_refs" 2>/dev/null
  echo 5 >"/proc/$(proc_pid "c-$tag")/clear_refs" 2>/dev/null
}

# burst LABEL URL WANT-SHA: N downloads of URL at once, each byte-exact
burst() {
  local pids=() ok=0 i
  for ((i = 0; i < N; i++)); do
    "${CURL[@]}" --max-time 60 -o "$T/dl.$i" "$2" 2>"$T/dl.$i.err" &
    pids+=($!)
  done
  wait "${pids[@]}"
  for ((i = 0; i < N; i++)); do
    [ "$(sha "$T/dl.$i" 2>/dev/null)" = "$3" ] && ok=$((ok + 1))
    rm -f "$T/dl.$i"
  done
  check_eq "$1" "$N" "$ok"
}

mark_rest
burst "$N downloads of 24 MiB at once, byte-exact" "$PAIR_FRONT/big.bin" "$want"
back_to_rest "the burst"

# Stalled downloads: 16 clients that stop reading (each holds up to a stream window in p and
# chunk buffers in c), left stalled past the quiet time, then gone.
sleep 2.5
mark_rest
stall_downloads "$N" "$PAIR_FRONT/big.bin" 50
# Stalled for longer than the quiet time, so the ends have already released what they could.
sleep 3
stop_stalled
back_to_rest "stalled downloads that were left"

fetch_check "the pair still serves after giving memory back" "$PAIR_FRONT/big.bin" "$T/root/big.bin"
stop_pair mem

# The same burst through --upstream (8 MiB each: the service is a small Python server).
start_evil memu || exit 0
make_file "$EVIL_DIR/up.bin" 8
start_pair memu -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
fetch_check "--upstream: a first download (warms both ends)" "$PAIR_FRONT/files/up.bin" "$EVIL_DIR/up.bin"
sleep 2.5
settle_rss p-memu
settle_rss c-memu
mark_rest memu
burst "--upstream: $N downloads of 8 MiB at once, byte-exact" "$PAIR_FRONT/files/up.bin" "$(sha "$EVIL_DIR/up.bin")"
back_to_rest "a burst through --upstream" memu
# The pooled connections outlive the trim: they must carry whole responses still.
for i in 1 2 3; do
  fetch_check "--upstream: serves after giving memory back ($i)" "$PAIR_FRONT/files/up.bin" "$EVIL_DIR/up.bin"
done
stop_pair memu
