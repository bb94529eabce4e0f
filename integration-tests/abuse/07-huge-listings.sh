#!/usr/bin/env bash
# abuse 07 a directory of 100,000 files must not let listings exhaust the origin: its listing
# comes in pages of at most ~1,000 entries (?page=N). 64 requests for it that never read (from
# two addresses) plus 32 parallel ones that read: c's peak RSS stays under 200 MiB (p's too) and
# a victim's GET of a 6-byte file meanwhile takes under 1 s; the tunnel is the same. The
# 100,000 (empty) files are created in the case's scratch directory and removed afterwards.
# case-timeout: 180
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

mkdir -p "$T/root"
printf 'small\n' >"$T/root/small.txt"
cleanup() {
  stop_attacks
  [ -n "${readers:-}" ] && kill "$readers" 2>/dev/null
  rm -rf "$T/root/many"
}
trap cleanup EXIT
python3 -c '
import os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for i in range(100000):
    os.close(os.open(os.path.join(d, "file-%06d.txt" % i), os.O_CREAT | os.O_WRONLY, 0o644))' "$T/root/many"
start_pair list || exit 0
tid=$PAIR_TID
c_pid=$(proc_pid c-list)

# Paging: a listing page holds at most ~1,000 entries, and page 2 holds others.
req page1 "$PAIR_FRONT/many/" --max-time 30
links1=$(grep -o '<a href="[^"]*file-[0-9]*\.txt"' "$R_BODY" | wc -l)
if [ "$R_STATUS" = 200 ] && [ "$links1" -ge 1 ] && [ "$links1" -le 1100 ]; then
  pass "/many/ (100,000 files): 200 with $links1 entries on the page, $(fsize "$R_BODY") bytes (limit ~1,000 entries)"
else
  fail "/many/ (100,000 files): 200 with at most ~1,000 entries on the page" "<= 1100 entries" \
    "status $R_STATUS, $links1 entries, $(fsize "$R_BODY") bytes"
fi
req page2 "$PAIR_FRONT/many/?page=2" --max-time 30
first1=$(grep -o 'file-[0-9]*\.txt' "$T/page1.body" | head -n 1)
first2=$(grep -o 'file-[0-9]*\.txt' "$R_BODY" | head -n 1)
if [ "$R_STATUS" = 200 ] && [ -n "$first2" ] && [ "$first2" != "$first1" ]; then
  pass "/many/?page=2: 200, another page (starts at $first2)"
else
  fail "/many/?page=2: 200, another page" "entries other than page 1's" "status $R_STATUS, first entry '${first2:-none}' (page 1: '$first1')"
fi
rm -f "$T/page1.body" "$T/page2.body"

# 64 listing requests that never read...
attack stalled python3 "$TOOLS/flood.py" hold 127.0.0.1 "$PAIR_FRONT_PORT" --kind stalled-get --path /many/ \
  --count 64 --sources 127.0.0.2,127.0.0.3 --hold 60 --ready "$T/stalled.ready" --watch-pid "$c_pid" --watch-max-mib 1024
attack_ready stalled 15
# ...and 32 at once that read.
seq 32 | xargs -P 32 -I{} "${CURL[@]}" --interface 127.0.0.4 --max-time 30 -o /dev/null "$PAIR_FRONT/many/?reader={}" 2>/dev/null &
readers=$!
_streams_over() { [ "$(status_sum "$PAIR_ADMIN" open_streams)" -ge "$1" ]; }
wait_until 5 _streams_over 64
victim_get "with 64 unread and 32 parallel listings of 100,000 files, a victim's GET of a 6-byte file" \
  "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
wait_until 35 pid_dead "$readers"
wait "$readers" 2>/dev/null
readers=
stop_attacks
[ "$(jfield "$T/stalled.out" reason)" = signal ] ||
  echo "note: the unread listings ended early: $(jfield "$T/stalled.out" reason)"
check_peak_rss "huge listings" c-list 200
check_peak_rss "huge listings" p-list 200
check_tunnel_survived "huge listings" "$PAIR_ADMIN" list "$tid"
stop_pair list
