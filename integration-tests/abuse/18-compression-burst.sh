#!/usr/bin/env bash
# abuse 18 a burst of compressed downloads must not exhaust the origin: 80 clients at once (from
# three addresses, so the proxy's 32 streams per client do not queue them) ask for a 4 MiB text
# file with Accept-Encoding: br and read it slowly (1 MiB/s). At most 32 answers are coded at
# once, the rest go out uncompressed; every client still gets the file byte-exact (curl
# --compressed); a victim's GET of a 6-byte file meanwhile takes under 2 s (the encoders keep
# both cores busy); c's peak RSS stays under 250 MiB: 80 slow streams take ~110-130 MiB of
# send buffers even uncompressed (measured), the 32 encoders ~40 MiB more, while one brotli
# encoder per stream with the library's defaults would add over 1 GiB.
# abuse: fast
# case-timeout: 120
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

mkdir -p "$T/root"
printf 'small\n' >"$T/root/small.txt"
# 4 MiB of text that compresses to about half: lines of hex noise.
python3 -c '
import hashlib, sys
out = sys.stdout
for i in range(65536):
    out.write("line %06d %s\n" % (i, hashlib.sha256(b"%d" % i).hexdigest()[:50]))' >"$T/root/big.txt"
_streams_over() { [ "$(status_sum "$PAIR_ADMIN" open_streams)" -ge "$1" ]; }

# burst TAG ACCEPT-ENCODING: 80 slow downloads of big.txt through pair TAG, bodies in $T/TAG/
burst() {
  local i
  mkdir -p "$T/$1"
  for i in $(seq 80); do
    "${CURL[@]}" --interface "127.0.0.$((2 + i % 3))" --max-time 40 --limit-rate 1M --compressed \
      -H "Accept-Encoding: $2" -D "$T/$1/$i.hdr" -o "$T/$1/$i.body" "$PAIR_FRONT/big.txt" 2>/dev/null &
  done
  wait_until 10 _streams_over 60
  victim_get "$1: with 80 slow downloads ($2), a victim's GET of a 6-byte file" \
    "$PAIR_FRONT/small.txt" "$T/root/small.txt" 2
  wait
  local exact=0
  for i in $(seq 80); do
    [ "$(sha "$T/$1/$i.body")" = "$(sha "$T/root/big.txt")" ] && exact=$((exact + 1))
  done
  check_eq "$1: 80 downloads at once ($2), every one byte-exact" 80 "$exact"
  rm -f "$T/$1/"*.body
}

start_pair coding || exit 0
tid=$PAIR_TID
burst coding br
coded=$(grep -lis '^content-encoding: br' "$T/coding/"*.hdr | wc -l)
if [ "$coded" -ge 1 ] && [ "$coded" -lt 80 ]; then
  pass "coding: $coded of 80 coded with br, the rest sent uncompressed (at most 32 coded at a time)"
else
  fail "coding: some of 80 coded, not all" "between 1 and 79 coded" "$coded"
fi
check_peak_rss "coding: 80 slow br downloads at once" c-coding 250
check_tunnel_survived "coding: after the burst" "$PAIR_ADMIN" coding "$tid"
stop_pair coding
