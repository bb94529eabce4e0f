#!/usr/bin/env bash
# abuse 14 odd or broken answers from the local app behind `c --upstream` (and from a `url`
# target p reaches itself) reach clients whole or as a precise error, and never harm the tunnel:
# - 300 response header lines arrive all 300 (200);
# - Content-Length with Transfer-Encoding: chunked is read as chunked (RFC 9112 6.3): the
#   100,000-byte body arrives byte-exact;
# - a 204 with Content-Length (forbidden, but frameworks send it) arrives as a 204 without it:
#   HTTP/2 clients reset a 204 that has one (curl: PROTOCOL_ERROR);
# - a 304 keeps its Content-Length (the length of what it stands for; allowed);
# - Transfer-Encoding: gzip (not chunked) is a 502 naming the coding, as nginx answers it, not
#   the coded bytes passed off as the body; to HEAD (no body follows) it is a plain 200;
#   200 such requests in a burst add at most five lines per ten seconds to c's log;
# - 300,000 one-byte chunks to three slow readers and one fast one at once: each gets all
#   300,000 bytes (h2 ends a connection that receives too many tiny DATA frames unread; c
#   gathers them, or this ended the tunnel and every transfer on it).
# Over an HTTP/1.1 and an h2c front end. The tunnel is the same afterwards.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"

start_evil odd || exit 0
cat >"$T/odd.toml" <<TOML
[[origin]]
name = "odd"

[[route]]
path = "/direct"
strip_prefix = true
url = "http://127.0.0.1:$EVIL_PORT"

[[route]]
origin = "odd"
TOML
start_pair odd --config "$T/odd.toml" -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
tid=$PAIR_TID
for proto in --http1.1 --http2-prior-knowledge; do
  req many "$PAIR_FRONT/many-headers" "$proto" --max-time 10
  n=$(grep -ci '^x-line-[0-9]*:' "$R_HDR")
  check_eq "$proto: 300 response header lines from the app: 200 with all of them" "200, 300 lines, last value-300" \
    "$R_STATUS, $n lines, last $(hdr many x-line-300)"
  fetch_check "$proto: Content-Length and Transfer-Encoding: chunked together: the chunked body, byte-exact" \
    "$PAIR_FRONT/cl-and-te" "$EVIL_DIR/cl-te.bin" "$proto" --max-time 10
  for via in "" /direct; do
    where=${via:+"a url target: "}
    req nc "$PAIR_FRONT$via/no-content" "$proto" --max-time 10
    check_eq "$proto: ${where}204 with Content-Length: a clean 204 without it" "204, curl exit 0, length ''" \
      "$R_STATUS, curl exit $R_RC, length '$(hdr nc content-length)'"
    req gz "$PAIR_FRONT$via/gzip-te" "$proto" --max-time 10
    check_match "$proto: ${where}Transfer-Encoding: gzip: 502 naming it" \
      '^502 .*Transfer-Encoding "gzip" cannot be forwarded' "$R_STATUS $(head -c 300 "$R_BODY")"
    req gzh "$PAIR_FRONT$via/gzip-te" "$proto" --head --max-time 10
    check_eq "$proto: ${where}Transfer-Encoding: gzip, to HEAD: 200, no coding passed on" \
      "200, curl exit 0, transfer-encoding ''" "$R_STATUS, curl exit $R_RC, transfer-encoding '$(hdr gzh transfer-encoding)'"
  done
done
req nm "$PAIR_FRONT/not-modified" --http2-prior-knowledge --max-time 10
check_eq "HTTP/2: a 304 with Content-Length keeps it" "304, curl exit 0, length 5000" \
  "$R_STATUS, curl exit $R_RC, length $(hdr nm content-length)"

before=$(grep -c 'upstream response refused' "$LOGS/c-odd.log")
started=$(now_ms)
codes=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}\n' --max-time 60 "$PAIR_FRONT/gzip-te?[1-200]" | sort | uniq -c | xargs)
windows=$((($(now_ms) - started) / 10000 + 2)) # the burst's 10 s windows, the one it began in partly used
after=$(grep -c 'upstream response refused' "$LOGS/c-odd.log")
burst_logged_within() { [ "$codes" = "200 502" ] && [ $((after - before)) -ge 1 ] && [ $((after - before)) -le "$1" ]; }
check_true "200 refused answers in a burst: 200 × 502, and c logs some but at most 5 lines per 10 s" \
  "200 502; 1..$((5 * windows)) lines" "$codes; $((after - before)) lines" \
  burst_logged_within $((5 * windows))

for k in 1 2 3; do
  "${CURL[@]}" -o "$T/tiny-slow-$k.body" --max-time 60 --limit-rate 200k "$PAIR_FRONT/tiny-chunks?n=300000" 2>/dev/null &
done
req tiny "$PAIR_FRONT/tiny-chunks?n=300000" --http2-prior-knowledge --max-time 60
wait
sizes="$R_STATUS $R_SIZE"
for k in 1 2 3; do sizes+=" $(fsize "$T/tiny-slow-$k.body")"; done
check_eq "300,000 one-byte chunks to a fast and three slow readers at once: all of every body" \
  "200 300000 300000 300000 300000" "$sizes"
check_tunnel_survived "odd upstream answers" "$PAIR_ADMIN" odd "$tid"
stop_pair odd
stop_proc svc-odd
