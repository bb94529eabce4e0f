#!/usr/bin/env bash
# 08 an 8 MiB POST (Content-Length, then chunked) and PUT through an origin started with
# --upstream to a local python echo service: the echoed bytes are identical (sha256), and
# the service saw exactly the bytes sent; the admin counts the bytes sent to the origin.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "a second p/c pair with c --upstream"

if wait_http 20 200 "$UP_FRONT/"; then
  pass "upstream pair ready (GET / through it is 200)"
else
  fail "upstream pair ready" "GET $UP_FRONT/ 200" "$(http_code "$UP_FRONT/")"
fi
req root "$UP_FRONT/"
check_eq "GET / through the upstream origin: body" "upstream ok" "$(cat "$R_BODY")"

payload=$T/payload.bin
python3 -c 'import hashlib, sys; sys.stdout.buffer.write(hashlib.shake_256(b"revmux-post").digest(8 * 1024 * 1024))' >"$payload"
want=$(sha "$payload")
size=$(fsize "$payload")

# post_check LABEL CURL-ARGS...
post_check() {
  local label=$1
  shift
  req post "$UP_FRONT/echo" --max-time 90 --data-binary @"$payload" \
    -H 'Content-Type: application/octet-stream' -H 'X-Revmux-Test: 42' -H 'Expect:' "$@"
  check_eq "$label: status" 200 "$R_STATUS"
  check_eq "$label: upstream received length" "$size" "$(hdr post x-received-length)"
  check_eq "$label: upstream received sha256" "$want" "$(hdr post x-received-sha256)"
  check_eq "$label: echoed body sha256" "$want" "$(sha "$R_BODY")"
  check_eq "$label: request header reached the upstream" 42 "$(hdr post x-echo-test)"
}
# bytes_to_origin BEFORE: the upstream origin's counter from the admin
to_origin() {
  cx --max-time 3 "$UP_ADMIN/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print([o["bytes_to_origin"] for o in json.load(sys.stdin)["origins"] if o["name"] == sys.argv[1]][0])
except Exception:
    print("?")' "$UP_ORIGIN"
}
b0=$(to_origin)
post_check "POST 8 MiB (Content-Length)"
b1=$(to_origin)
if [[ $b0 =~ ^[0-9]+$ && $b1 =~ ^[0-9]+$ ]] && [ $((b1 - b0)) -ge "$size" ]; then
  pass "admin bytes_to_origin grew by >= the 8 MiB sent ($b0 -> $b1)"
else
  fail "admin bytes_to_origin grew by >= the 8 MiB sent" ">= $size more" "$b0 -> $b1"
fi
post_check "POST 8 MiB (chunked)" -H 'Transfer-Encoding: chunked'
post_check "PUT 8 MiB" -X PUT
