#!/usr/bin/env bash
# abuse 14 odd or broken answers from the local app behind `c --upstream` (and from a `url`
# target p reaches itself) reach clients whole or as a precise error, and never harm the tunnel:
# - 300 response header lines arrive all 300 (200);
# - Content-Length with Transfer-Encoding: chunked is read as chunked (RFC 9112 6.3): the
#   100,000-byte body arrives byte-exact;
# - a 204 with Content-Length (forbidden, but frameworks send it) arrives as a 204 without it:
#   HTTP/2 clients reset a 204 that has one (curl: PROTOCOL_ERROR);
# - Transfer-Encoding: gzip (not chunked) is a 502 naming the coding, as nginx answers it, not
#   the coded bytes passed off as the body; 200 such requests add at most a few lines to c's log;
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
      "^502 .*Transfer-Encoding: gzip, and only chunked can be forwarded" "$R_STATUS $(head -c 300 "$R_BODY")"
  done
done

before=$(grep -c 'upstream response refused' "$LOGS/c-odd.log")
curl -s --noproxy '*' -o /dev/null --max-time 60 "$PAIR_FRONT/gzip-te?[1-200]"
after=$(grep -c 'upstream response refused' "$LOGS/c-odd.log")
check_true "200 refused answers in a burst: at most 6 more lines in c's log (rate-limited)" "at most 6" \
  "$((after - before)) lines" test $((after - before)) -le 6

for k in 1 2 3; do
  "${CURL[@]}" -o "$T/tiny-slow-$k.body" --max-time 60 --limit-rate 20k "$PAIR_FRONT/tiny-chunks?n=300000" 2>/dev/null &
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
