#!/usr/bin/env bash
# 31 uploads to a local service that does not read them (a stuck application), through
# `c --upstream`: (a) a client that gives up mid-upload must release its stream — over
# HTTP/1.1 and HTTP/2 the admin's open_streams returns to 0 and c drops its request to
# the service; (b) 12 such stalled uploads must not freeze the tunnel: a small POST still
# completes. The stuck requests are released through their trigger files at the end.
# Own p/c pair and service, so that a frozen tunnel cannot spoil the other cases.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"

trig=$T/triggers
mkdir -p "$trig"
mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
front=http://127.0.0.1:${ports[0]}
admin=http://127.0.0.1:${ports[2]}
start_bg svc-hold "$LOGS/svc-hold.log" python3 "$TOOLS/upstream.py" --port-file "$T/svc.port" --trigger-dir "$trig"
start_p p-hold "$WORK/certs-hold" "${ports[0]}" "${ports[1]}" "${ports[2]}" ||
  fail "p starts" "ca.pem and token" "$(tail -n 2 "$LOGS/p-hold.log")"
wait_files 10 "$T/svc.port" || fail "service starts" "its port" "none"
start_c c-hold "$WORK/certs-hold" "${ports[1]}" hold --upstream "http://127.0.0.1:$(cat "$T/svc.port")"
wait_http 20 200 "$front/" || fail "pair ready" 200 "$(http_code "$front/")"

python3 -c 'import hashlib, sys; sys.stdout.buffer.write(hashlib.shake_256(b"revmux-upload").digest(32 * 1024 * 1024))' >"$T/upload.bin"

status_sum() { # status_sum FIELD: the field summed over the listed origins
  cx --max-time 3 "$admin/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print(sum(o[sys.argv[1]] for o in json.load(sys.stdin)["origins"]))
except Exception:
    print(-1)' "$1"
}
_streams_are() { [ "$(status_sum open_streams)" = "$1" ]; }
_to_origin_over() { [ "$(status_sum bytes_to_origin)" -gt "$1" ]; }
ids=()
pids=()
release_all() {
  local id
  for id in "${ids[@]}"; do touch "$trig/$id"; done
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  pids=()
}
trap release_all EXIT

# (a) one stalled upload, abandoned by its client
for proto in --http1.1 --http2-prior-knowledge; do
  id=abandon-$RANDOM
  ids+=("$id")
  sent=$(status_sum bytes_to_origin)
  "${CURL[@]}" "$proto" --max-time 60 -H 'Expect:' --data-binary @"$T/upload.bin" -o /dev/null "$front/hold?id=$id" 2>/dev/null &
  curl_pid=$!
  if ! wait_until 10 _streams_are 1 || ! wait_until 10 _to_origin_over "$((sent + 1048576))"; then
    fail "$proto: the upload is in flight" "1 open stream, > 1 MiB sent" "$(status_sum open_streams) streams"
  fi
  kill -KILL "$curl_pid"
  wait "$curl_pid" 2>/dev/null
  if [ "$proto" = --http1.1 ]; then
    # Known limitation: an HTTP/1.1 upload is backpressured by TCP itself (p stops reading,
    # its receive window closes), so a client killed mid-upload leaves its FIN queued in its
    # own kernel behind the unsent bytes: nothing reaches p until the service answers or p's
    # response timeout ends the exchange. HTTP/2 clients send RST_STREAM (h2 keeps the TCP window open) and are
    # covered below.
    skip "$proto: a client that gives up mid-upload is noticed only when the service answers (known limitation)"
    touch "$trig/$id"
    wait_until 10 _streams_are 0
    continue
  fi
  if wait_until 5 _streams_are 0; then
    pass "$proto: a client that gives up mid-upload releases its stream (open_streams 0)"
  else
    fail "$proto: a client that gives up mid-upload releases its stream within 5 s" "open_streams 0" "$(status_sum open_streams)"
  fi
  if wait_until 5 test -e "$trig/$id.aborted"; then
    pass "$proto: c drops its request to the service when the client gives up mid-upload"
  else
    fail "$proto: c drops its request to the service within 5 s when the client gives up mid-upload" "connection closed" "still open"
  fi
  touch "$trig/$id" # whatever happened, let this one go
  wait_until 10 _streams_are 0
done

# (b) 12 stalled uploads at once, then a small POST
for ((i = 0; i < 12; i++)); do
  id=stuck-$i-$RANDOM
  ids+=("$id")
  "${CURL[@]}" --max-time 90 -H 'Expect:' --data-binary @"$T/upload.bin" -o /dev/null "$front/hold?id=$id" 2>/dev/null &
  pids+=($!)
done
if wait_until 20 _streams_are 12; then
  pass "12 stalled uploads are open streams"
else
  fail "12 stalled uploads are open streams within 20 s" 12 "$(status_sum open_streams)"
fi
prev=-1
for _ in 1 2 3 4 5 6 7 8 9 10; do # until nothing more moves
  cur=$(status_sum bytes_to_origin)
  [ "$cur" = "$prev" ] && break
  prev=$cur
  sleep 0.5
done
req small "$front/echo" --max-time 10 -H 'Expect:' --data-binary 'small request'
if [ "$R_RC" = 0 ] && [ "$R_STATUS" = 200 ] && [ "$(cat "$R_BODY")" = "small request" ]; then
  pass "with 12 stalled uploads, a small POST still completes"
else
  fail "with 12 stalled uploads, a small POST still completes within 10 s" "200 echoing 'small request'" \
    "status $R_STATUS, curl exit $R_RC ($(head -c 120 "$T/small.err"))"
fi

release_all
if wait_until 20 _streams_are 0; then
  pass "once the stuck requests are answered, no stream is left open"
else
  fail "once the stuck requests are answered, no stream is left open (20 s)" 0 "$(status_sum open_streams)"
fi
req after "$front/echo" --max-time 10 -H 'Expect:' --data-binary 'after'
check_eq "afterwards a small POST works" "200 after" "$R_STATUS $(cat "$R_BODY")"
stop_proc c-hold
stop_proc p-hold
stop_proc svc-hold
rm -f "$T/upload.bin"
