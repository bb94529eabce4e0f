#!/usr/bin/env bash
# 05 Range requests: middle, open-ended, suffix, first byte, past-the-end clamp, If-Range
# (ETag and date), HEAD with Range, Range + matching If-None-Match, invalid ranges ignored,
# and unsatisfiable (416 with Content-Range: bytes */SIZE).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

rel=films/clip.mkv
f=$FIX/$rel
url=$FRONT/$rel
S=$(fsize "$f")

req plain "$url" --max-time 60
check_eq "GET /$rel advertises Accept-Ranges" bytes "$(hdr plain accept-ranges)"
et=$(hdr plain etag)

# check_range LABEL RANGE FIRST LAST [CURL-ARGS...]
check_range() {
  local label=$1 range=$2 first=$3 last=$4
  shift 4
  req rng "$url" -H "Range: $range" "$@"
  check_eq "$label ($range) status" 206 "$R_STATUS"
  check_eq "$label ($range) Content-Range" "bytes $first-$last/$S" "$(hdr rng content-range)"
  check_eq "$label ($range) Content-Length" "$((last - first + 1))" "$(hdr rng content-length)"
  check_eq "$label ($range) bytes" "$(slice_sha "$f" "$first" $((last - first + 1)))" "$(sha "$R_BODY")"
}

check_range "middle range" "bytes=100-199" 100 199
check_range "open-ended range" "bytes=$((S - 1000))-" $((S - 1000)) $((S - 1))
check_range "suffix range" "bytes=-500" $((S - 500)) $((S - 1))
check_range "first byte" "bytes=0-0" 0 0
check_range "range past the end is clamped" "bytes=$((S - 10))-$((S + 1000))" $((S - 10)) $((S - 1))
if [ -n "$et" ]; then
  check_range "If-Range with the current ETag" "bytes=100-199" 100 199 -H "If-Range: $et"
  req ifr "$url" -H "Range: bytes=100-199" -H 'If-Range: "stale-etag"' --max-time 60
  check_eq "If-Range with a stale ETag: status" 200 "$R_STATUS"
  check_eq "If-Range with a stale ETag: whole file" "$(sha "$f")" "$(sha "$R_BODY")"
else
  fail "GET /$rel has an ETag (for If-Range)" "an ETag" "none"
fi

check_range "If-Range with the current Last-Modified" "bytes=0-9" 0 9 -H "If-Range: $(hdr plain last-modified)"

req hr "$url" -I -H 'Range: bytes=100-199'
check_eq "HEAD with Range: status" 206 "$R_STATUS"
check_eq "HEAD with Range: Content-Range" "bytes 100-199/$S" "$(hdr hr content-range)"
check_eq "HEAD with Range: no body" 0 "$R_SIZE"

req rinm "$url" -H 'Range: bytes=100-199' -H "If-None-Match: $et"
check_eq "Range with a matching If-None-Match: 304 wins" 304 "$R_STATUS"

for odd in "bytes=5-2" "bytes=abc" "items=0-9"; do
  req rodd "$url" -H "Range: $odd" --max-time 60
  check_eq "invalid Range ($odd) is ignored: status" 200 "$R_STATUS"
  check_eq "invalid Range ($odd) is ignored: whole file" "$(sha "$f")" "$(sha "$R_BODY")"
done

for bad in "bytes=$S-" "bytes=$((S + 100))-$((S + 200))"; do
  req unsat "$url" -H "Range: $bad"
  check_eq "unsatisfiable ($bad) status" 416 "$R_STATUS"
  check_eq "unsatisfiable ($bad) Content-Range" "bytes */$S" "$(hdr unsat content-range)"
done
