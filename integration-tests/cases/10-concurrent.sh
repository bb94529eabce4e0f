#!/usr/bin/env bash
# 10 64 concurrent downloads (xargs -P 64, one connection each) of fixture files over one
# tunnel: every one 200 and byte-exact; the pair still serves afterwards.
# (64 streams multiplexed on ONE front-end HTTP/2 connection: case 15, over TLS — curl 7.88
# cannot reuse an h2c prior-knowledge connection, whatever the server.)
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

N=64
files=(poster.png "música/canción.mp3" notes/readme.txt 'odd <name> & "quotes".txt' trailer.webm
  films/clip.mkv "films/Le Voyage dans la Lune (1902).mp4" empty.txt)
declare -A shas
for rel in "${files[@]}"; do shas[$rel]=$(sha "$FIX/$rel"); done

# shellcheck disable=SC2016 # expanded by the worker's own bash
# One job = 5 NUL-separated arguments: index, name, URL, expected sha256, output path.
worker='out=$5
code=$(curl -sS --globoff --noproxy "*" --max-time 90 -o "$out" -w "%{http_code}" "$3" 2>"$out.err"); rc=$?
got=$(sha256sum "$out" 2>/dev/null | cut -d" " -f1)
if [ "$rc" = 0 ] && [ "$code" = 200 ] && [ "$got" = "$4" ]; then echo "OK $1"
else echo "BAD $1 /$2: status=$code curl-exit=$rc sha256=$got ($(head -c 120 "$out.err"))"; fi
rm -f "$out" "$out.err"'
for ((i = 0; i < N; i++)); do
  rel=${files[$((i % ${#files[@]}))]}
  printf '%s\0' "$i" "$rel" "$FRONT/$(urlpath "$rel")" "${shas[$rel]}" "$T/dl.$i"
done | xargs -0 -n 5 -P "$N" bash -c "$worker" _ >"$T/results.txt"

ok=$(grep -c '^OK ' "$T/results.txt")
check_eq "$N concurrent downloads, 200 and byte-exact" "$N" "$ok"
grep '^BAD ' "$T/results.txt" | head -n 10 | sed 's/^/    /'

fetch_check "a request after the burst still works" "$FRONT/poster.png" "$FIX/poster.png"
