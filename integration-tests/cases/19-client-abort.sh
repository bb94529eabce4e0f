#!/usr/bin/env bash
# 19 clients that go away mid-response release their streams: endless event streams, and
# requests still waiting for their response headers, over HTTP/1.1 and HTTP/2 (upstream
# pair) each show as 1 open stream in the admin /status;
# after the client is killed open_streams returns to 0 and c closes its request to the
# local service; p and c stay up and the next request through each pair works.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "uses the upstream pair and both admin addresses"

# open_streams ADMIN-URL: sum of open_streams over the listed origins
open_streams() {
  cx --max-time 3 "$1/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print(sum(int(o.get("open_streams", 0)) for o in json.load(sys.stdin)["origins"]))
except Exception:
    print("?")'
}
_streams_are() { [ "$(open_streams "$1")" = "$2" ]; }

# expect_release LABEL ADMIN-URL CLIENT-PID [OTHER-PID...]: 1 open stream, kill, back to 0
expect_release() {
  local label=$1 admin=$2
  shift 2
  if wait_until 10 _streams_are "$admin" 1; then
    pass "$label: shows as 1 open stream"
  else
    fail "$label: shows as 1 open stream" 1 "$(open_streams "$admin")"
  fi
  kill -KILL "$@" 2>/dev/null
  wait "$@" 2>/dev/null
  if wait_until 10 _streams_are "$admin" 0; then
    pass "$label: after the client is killed, open_streams returns to 0"
  else
    fail "$label: after the client is killed, open_streams returns to 0 within 10 s" 0 "$(open_streams "$admin")"
  fi
}

# Event streams that never end by themselves (their trigger is never created), so the
# stream is surely still open when the client goes (a file download would not do: kernel
# buffers and curl's 32 MiB HTTP/2 window can swallow a whole fixture).
for proto in --http1.1 --http2-prior-knowledge; do
  id=abort-$$-$RANDOM
  out=$T/events$proto.out
  "${CURL[@]}" -N --max-time 60 "$proto" "$UP_FRONT/events?id=$id" >"$out" 2>/dev/null &
  curl_pid=$!
  wait_file_has 10 "$out" "data: first" || fail "$proto event stream started" "data: first" "$(cat "$out")"
  expect_release "$proto endless event stream" "$UP_ADMIN" "$curl_pid"
  if wait_until 10 test -e "$TRIGGERS/$id.aborted"; then
    pass "$proto: c cancelled its request to the upstream service (connection closed)"
  else
    fail "$proto: c cancelled its request to the upstream service within 10 s" "upstream connection closed" "still open"
  fi
  touch "$TRIGGERS/$id" # let the upstream's handler finish
done

# A client that gives up before the response headers (the service takes 30 s to answer).
for proto in --http1.1 --http2-prior-knowledge; do
  id=early-$$-$RANDOM
  "${CURL[@]}" --max-time 60 "$proto" -o /dev/null "$UP_FRONT/delay?s=30&id=$id" 2>/dev/null &
  curl_pid=$!
  expect_release "$proto request waiting for its headers" "$UP_ADMIN" "$curl_pid"
  if wait_until 10 test -e "$TRIGGERS/$id.aborted"; then
    pass "$proto: c cancelled the waiting request to the upstream service"
  else
    fail "$proto: c cancelled the waiting request to the upstream service within 10 s" "connection closed" "still open"
  fi
done

check_true "p (upstream pair) is still running" alive dead proc_alive p-up
check_true "c (upstream pair) is still running" alive dead proc_alive c-up
check_eq "the next request through the upstream pair" 200 "$(http_code "$UP_FRONT/")"
fetch_check "the main pair is unaffected: /big/archive.bin byte-exact" "$FRONT/big/archive.bin" "$FIX/big/archive.bin"
