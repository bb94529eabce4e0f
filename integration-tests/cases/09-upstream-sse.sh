#!/usr/bin/env bash
# 09 an event stream through --upstream is not buffered: `data: first` reaches curl while
# the upstream is still waiting for its trigger; after the trigger `data: second` arrives
# and curl exits 0.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "a second p/c pair with c --upstream"

wait_http 20 200 "$UP_FRONT/" || fail "upstream pair ready" "GET $UP_FRONT/ 200" "$(http_code "$UP_FRONT/")"

id=sse-$$-$RANDOM
trigger=$TRIGGERS/$id
out=$T/sse.out
: >"$out"
"${CURL[@]}" -N --max-time 45 -D "$T/sse.hdr" -H 'Accept: text/event-stream' "$UP_FRONT/events?id=$id" >"$out" 2>"$T/sse.err" &
curl_pid=$!

if wait_file_has 15 "$out" "data: first"; then
  pass "'data: first' arrived through the tunnel"
else
  fail "'data: first' arrived through the tunnel within 15 s" "data: first" "$(cat "$out") $(head -c 150 "$T/sse.err")"
fi
if [ -e "$trigger.done" ] || [ -e "$trigger.timeout" ]; then
  fail "the upstream is still waiting for the trigger" "not finished" "finished"
else
  pass "the upstream is still waiting for the trigger"
fi
check_true "curl is still streaming before the trigger" "running" "exited" pid_alive "$curl_pid"
check_file_lacks "no 'second' event before the trigger" "$out" "data: second"

touch "$trigger"
if wait_file_has 15 "$out" "data: second"; then
  pass "'data: second' arrived after the trigger"
else
  fail "'data: second' arrived after the trigger within 15 s" "data: second" "$(cat "$out")"
fi
wait "$curl_pid"
check_eq "curl -N exit status (stream ended cleanly)" 0 "$?"
check_eq "event stream Content-Type" text/event-stream "$(mediatype "$(hdr sse content-type)")"
check_true "the upstream finished the stream" "$trigger.done" "missing" test -e "$trigger.done"
