#!/usr/bin/env bash
# 24 an origin that dies in the middle of a response must not make it look complete: with an
# event stream in flight (no Content-Length, so only the framing tells), SIGKILL of
# `c --upstream` makes curl fail (HTTP/1.1: no terminating chunk, exit 18; HTTP/2: stream
# reset, exit 92), never a clean exit 0. c is restarted and the pair serves again.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "kills and restarts the upstream origin"

for proto in --http1.1 --http2-prior-knowledge; do
  wait_http 20 200 "$UP_FRONT/" || fail "$proto: upstream pair ready" 200 "$(http_code "$UP_FRONT/")"
  id=midstream-$$-$RANDOM
  out=$T/mid$proto.out
  "${CURL[@]}" -N --max-time 30 "$proto" "$UP_FRONT/events?id=$id" >"$out" 2>"$out.err" &
  curl_pid=$!
  wait_file_has 10 "$out" "data: first" || fail "$proto: event stream started" "data: first" "$(cat "$out")"
  stop_proc c-up KILL
  if wait_until 10 pid_dead "$curl_pid"; then
    wait "$curl_pid"
    rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 28 ]; then
      pass "$proto: the client sees the cut response as an error (curl exit $rc: $(oneline "$(head -c 80 "$out.err")"))"
    else
      fail "$proto: the client sees the cut response as an error" "curl exit 18/56/92" "exit $rc"
    fi
  else
    kill -KILL "$curl_pid" 2>/dev/null
    fail "$proto: the client learns within 10 s that the origin died" "curl ends" "still waiting"
  fi
  check_file_lacks "$proto: no 'second' event ever arrived" "$out" "data: second"
  touch "$TRIGGERS/$id"
  start_c c-up "$UP_CERTS" "$UP_TUNNEL_PORT" "$UP_ORIGIN" --upstream "http://127.0.0.1:$UPSTREAM_PORT"
  if wait_http 20 200 "$UP_FRONT/"; then
    pass "$proto: after restarting c --upstream the pair serves again"
  else
    fail "$proto: after restarting c --upstream the pair serves again within 20 s" 200 "$(http_code "$UP_FRONT/")"
  fi
done
