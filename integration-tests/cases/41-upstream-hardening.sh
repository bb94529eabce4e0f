#!/usr/bin/env bash
# 41 `c --upstream` hardening: requests with a body (POST, PUT, PATCH, DELETE) reach the app
# with an origin-form target and the public Host, as GETs do; a response with 300 header lines
# passes; one with a 300 KB header gets a 502 naming the cause on its own stream, and the
# tunnel stays up (same tunnel id in the admin /status); a response with both Content-Length
# and chunked encoding arrives byte-exact.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "uses the upstream pair and its admin"

wait_http 20 200 "$UP_FRONT/" || fail "upstream pair ready" "GET $UP_FRONT/ 200" "$(http_code "$UP_FRONT/")"
public_host=${UP_FRONT#http://}

# json_field FILE KEY: a top-level field of a JSON body
json_field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))' "$1" "$2" 2>&1
}
# tunnel_id: the upstream origin's tunnel id in the admin /status
tunnel_id() {
  cx --max-time 3 "$UP_ADMIN/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print([o["tunnel_id"] for o in json.load(sys.stdin)["origins"] if o["name"] == sys.argv[1]][0])
except Exception:
    print("?")' "$UP_ORIGIN"
}

target='/request-line/a%20b?x=1&y=%2F'
for method in GET POST PUT PATCH DELETE; do
  body=()
  [ "$method" = GET ] || body=(--data-binary "a body for $method" -H 'Expect:')
  req rl "$UP_FRONT$target" -X "$method" "${body[@]}"
  check_eq "$method: status" 200 "$R_STATUS"
  check_eq "$method: the app sees an origin-form request line" "$method $target HTTP/1.1" \
    "$(json_field "$R_BODY" request_line)"
  check_eq "$method: the app sees the public Host" "$public_host" "$(json_field "$R_BODY" host)"
  if [ "$method" != GET ]; then
    check_eq "$method: the app received the body" "${#body[1]}" "$(json_field "$R_BODY" body_length)"
  fi
done

req many "$UP_FRONT/many-headers"
check_eq "a response with 300 header lines: status" 200 "$R_STATUS"
check_eq "all 300 header lines arrive" 300 "$(grep -ci '^x-h-[0-9]*:' "$R_HDR")"
check_eq "the last of them is intact" value-299 "$(hdr many x-h-299)"

before=$(tunnel_id)
check_match "the upstream origin has a tunnel id" '^[0-9]+$' "$before"
for proto in --http1.1 --http2-prior-knowledge; do
  req huge "$UP_FRONT/huge-head" "$proto" --max-time 10
  check_eq "${proto#--}: a 300 KB response head gets 502 (curl exit $R_RC)" 502 "$R_STATUS"
  check_file_contains "${proto#--}: the 502 names the cause" "$R_BODY" "upstream response head is larger than 32 KiB"
done
req hugepost "$UP_FRONT/huge-head" --data-binary 'x' -H 'Expect:' --max-time 10
check_eq "a 300 KB response head to a POST with a body gets 502" 502 "$R_STATUS"
req after "$UP_FRONT/"
check_eq "afterwards a normal request through the same origin works" "200 upstream ok" "$R_STATUS $(cat "$R_BODY")"
check_eq "the tunnel stayed up (same tunnel id in the admin /status)" "$before" "$(tunnel_id)"

want=$(python3 -c 'import hashlib; print(hashlib.sha256(hashlib.shake_256(b"revmux-cl-and-chunked").digest(200 * 1024)).hexdigest())')
for proto in --http1.1 --http2-prior-knowledge; do
  req clc "$UP_FRONT/cl-and-chunked" "$proto"
  check_eq "${proto#--}: Content-Length plus chunked: status (curl exit $R_RC)" "200 0" "$R_STATUS $R_RC"
  check_eq "${proto#--}: Content-Length plus chunked: the body arrives byte-exact" "$want" "$(sha "$R_BODY")"
  check_true "${proto#--}: the stale Content-Length is not forwarded" "no Content-Length: 5" "$(hdr clc content-length)" \
    test "$(hdr clc content-length)" != 5
done
