#!/usr/bin/env bash
# abuse 15 an origin that never answers must not hold a front-end client forever:
# p --response-timeout 2s in front of `c --upstream` to an app that accepts the request and
# never answers: 504 from p within ~3 s (checked at 3.5 s), over HTTP/1.1 and h2c. The tunnel
# is the same afterwards and a victim's GET meanwhile and after takes under 1 s.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"

start_evil never || exit 0
printf 'small\n' >"$EVIL_DIR/small.txt"
start_pair never --response-timeout 2s -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
tid=$PAIR_TID
for proto in --http1.1 --http2-prior-knowledge; do
  out=$("${CURL[@]}" "$proto" --interface 127.0.0.2 --max-time 10 -o "$T/never.body" -w '%{http_code} %{time_total}' \
    "$PAIR_FRONT/never" 2>"$T/never.err")
  read -r code secs <<<"$out"
  if [ "$code" = 504 ] && awk -v s="$secs" 'BEGIN { exit !(s <= 3.5) }'; then
    pass "$proto: an origin that never answers: 504 from p after $secs s (limit 3.5 s)"
  else
    fail "$proto: an origin that never answers: 504 from p within 3.5 s" "504 within 3.5 s" \
      "${code:-000} after ${secs:-?} s $(head -c 100 "$T/never.err")"
  fi
done
check_tunnel_survived "origin never answers" "$PAIR_ADMIN" never "$tid"
victim_get "a victim's GET of a 6-byte file" "$PAIR_FRONT/files/small.txt" "$EVIL_DIR/small.txt" 1
stop_pair never
stop_proc svc-never
