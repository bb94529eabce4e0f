#!/usr/bin/env bash
# abuse 02 a local app (behind `c --upstream`) answering with a 300 KB response header must
# cost only that one request: 502 on that stream (HTTP/1.1 and h2c front end), while a victim
# downloading 48 MiB through the same tunnel gets every byte and the tunnel (tunnel_id)
# survives. p's and c's peak RSS stay under 200 MiB.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"

start_evil rhdr || exit 0
make_file "$EVIL_DIR/large.bin" 48
printf 'small\n' >"$EVIL_DIR/small.txt"
start_pair rhdr -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
tid=$PAIR_TID

"${CURL[@]}" --interface 127.0.0.1 --max-time 40 --limit-rate 8M -o "$T/victim.bin" -w '%{http_code}' \
  "$PAIR_FRONT/files/large.bin" >"$T/victim.code" 2>"$T/victim.err" &
victim=$!
wait_until 5 test -s "$T/victim.bin" || fail "the victim's download started" "bytes arriving" "none after 5 s"

for proto in --http1.1 --http2-prior-knowledge; do
  req "huge$proto" "$PAIR_FRONT/huge-response-header" --interface 127.0.0.2 "$proto" --max-time 15
  check_eq "$proto: a 300 KB response header from the app gives 502" 502 "$R_STATUS"
done
in_flight=no
pid_alive "$victim" && in_flight=yes
wait_until 35 pid_dead "$victim"
wait "$victim"
rc=$?
if [ "$in_flight" = no ] && [ "$rc" = 0 ]; then
  fail "the victim's download was still in flight during the attacks" "running" "it had already finished"
fi
if [ "$rc" = 0 ] && [ "$(cat "$T/victim.code")" = 200 ] && [ "$(sha "$T/victim.bin")" = "$(sha "$EVIL_DIR/large.bin")" ]; then
  pass "the victim's 48 MiB download through the same tunnel got every byte"
else
  fail "the victim's 48 MiB download through the same tunnel got every byte" "200, 50331648 bytes byte-exact" \
    "status $(cat "$T/victim.code"), $(fsize "$T/victim.bin") bytes, curl exit $rc $(head -c 100 "$T/victim.err")"
fi
rm -f "$T/victim.bin"
check_tunnel_survived "huge response header" "$PAIR_ADMIN" rhdr "$tid"
wait_until 20 admin_lists "$PAIR_ADMIN" rhdr # (c back if the tunnel went down)
victim_get "afterwards a victim's GET of a 6-byte file" "$PAIR_FRONT/files/small.txt" "$EVIL_DIR/small.txt" 1
check_peak_rss "huge response header" p-rhdr 200
check_peak_rss "huge response header" c-rhdr 200
stop_pair rhdr
stop_proc svc-rhdr
rm -f "$EVIL_DIR/large.bin"
