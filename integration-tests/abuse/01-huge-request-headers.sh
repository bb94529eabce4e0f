#!/usr/bin/env bash
# abuse 01 huge request headers must not end the tunnel. Over HTTP/1.1 a ~200 KB header of
# '~' (three requests, a second apart) and one of ~262 KB of 'a' (the origin's HTTP/2 server
# used to end the whole tunnel with GOAWAY ENHANCE_YOUR_CALM, aborting every transfer): p
# answers 431 itself, a victim downloading 48 MiB meanwhile gets every byte, and the tunnel
# (tunnel_id) survives. Over h2c a header list over 32 KiB gets 431 or RST_STREAM on that
# stream. A header of bytes 0x80-0xFF just under the limit (31,000 bytes) still reaches the
# origin (200) over both. p's peak RSS stays under 200 MiB.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"
require_h2

make_root "$T/root"
make_file "$T/root/large.bin" 48
start_pair hdr || exit 0
tid=$PAIR_TID
port=$PAIR_FRONT_PORT
trap stop_attacks EXIT

# The victim's download, slowed to about 6 s: far more than kernel and proxy buffers hold, so
# it is still crossing the tunnel during the attacks.
"${CURL[@]}" --interface 127.0.0.1 --max-time 40 --limit-rate 8M -o "$T/victim.bin" -w '%{http_code}' \
  "$PAIR_FRONT/large.bin" >"$T/victim.code" 2>"$T/victim.err" &
victim=$!
wait_until 5 test -s "$T/victim.bin" || fail "the victim's download started" "bytes arriving" "none after 5 s"

python3 "$TOOLS/flood.py" request 127.0.0.1 "$port" --path /small.txt \
  --fill-header 'X-Big:~:200000' --repeat 3 --interval 1 >"$T/tilde.out"
check_eq "HTTP/1.1, 200 KB header of '~', 3 requests: p answers 431 itself" '{"431": 3}' "$(jfield "$T/tilde.out" statuses)"
python3 "$TOOLS/flood.py" request 127.0.0.1 "$port" --path /small.txt \
  --fill-header 'X-Big:a:262000' >"$T/aaa.out"
check_eq "HTTP/1.1, 262 KB header of 'a': p answers 431 itself" '{"431": 1}' "$(jfield "$T/aaa.out" statuses)"

in_flight=no
pid_alive "$victim" && in_flight=yes
wait_until 35 pid_dead "$victim"
wait "$victim"
rc=$?
# Unless it lasted through the attacks, the victim's check below would prove nothing.
if [ "$in_flight" = no ] && [ "$rc" = 0 ]; then
  fail "the victim's download was still in flight during the attacks" "running" "it had already finished"
fi
if [ "$rc" = 0 ] && [ "$(cat "$T/victim.code")" = 200 ] && [ "$(sha "$T/victim.bin")" = "$(sha "$T/root/large.bin")" ]; then
  pass "the victim's 48 MiB download, in flight meanwhile, got every byte"
else
  fail "the victim's 48 MiB download, in flight meanwhile, got every byte" "200, 50331648 bytes byte-exact" \
    "status $(cat "$T/victim.code"), $(fsize "$T/victim.bin") bytes, curl exit $rc $(head -c 100 "$T/victim.err")"
fi
rm -f "$T/victim.bin"
check_tunnel_survived "HTTP/1.1 huge headers" "$PAIR_ADMIN" hdr "$tid"
# If the tunnel went down, let c come back so that what follows is judged on its own.
wait_until 20 admin_lists "$PAIR_ADMIN" hdr
tid=$(tunnel_id "$PAIR_ADMIN" hdr)

# HTTP/2: the same over h2c prior knowledge (HEADERS + CONTINUATION frames).
# h2_outcome FILE: "response 431", "rst PROTOCOL_ERROR", "goaway ENHANCE_YOUR_CALM", ...
h2_outcome() { echo "$(jfield "$1" outcome) $(jfield "$1" status)$(jfield "$1" code)"; }
"$PY_H2" "$TOOLS/h2abuse.py" request 127.0.0.1 "$port" --path /small.txt --fill-header 'x-big:~:40000' >"$T/h2big.out"
check_match "h2c, a 40 KB header (list over 32 KiB): 431 or RST_STREAM on that stream" '^(response 431|rst .*)$' "$(h2_outcome "$T/h2big.out")"
# Far over the limit, the attacker may also lose its connection (only its own).
"$PY_H2" "$TOOLS/h2abuse.py" request 127.0.0.1 "$port" --path /small.txt --fill-header 'x-big:~:100000' >"$T/h2huge.out"
check_match "h2c, a 100 KB header: 431, RST_STREAM or GOAWAY to that client" '^(response 431|rst .*|goaway .*)$' "$(h2_outcome "$T/h2huge.out")"
check_tunnel_survived "HTTP/2 huge headers" "$PAIR_ADMIN" hdr "$tid"
wait_until 20 admin_lists "$PAIR_ADMIN" hdr
tid=$(tunnel_id "$PAIR_ADMIN" hdr)

# Header values of bytes 0x80-0xFF (obs-text) just under the limit must still reach the origin.
python3 "$TOOLS/flood.py" request 127.0.0.1 "$port" --path /small.txt --fill-header 'X-High:high:31000' >"$T/high.out"
check_eq "HTTP/1.1, 31,000 bytes of 0x80-0xFF in a header: reaches the origin" '{"200": 1}' "$(jfield "$T/high.out" statuses)"
"$PY_H2" "$TOOLS/h2abuse.py" request 127.0.0.1 "$port" --path /small.txt --fill-header 'x-high:high:31000' >"$T/h2high.out"
check_eq "h2c, 31,000 bytes of 0x80-0xFF in a header: reaches the origin" "response 200" "$(h2_outcome "$T/h2high.out")"
check_tunnel_survived "headers of 0x80-0xFF" "$PAIR_ADMIN" hdr "$tid"
wait_until 20 admin_lists "$PAIR_ADMIN" hdr

victim_get "afterwards a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
check_peak_rss "huge headers" p-hdr 200
stop_pair hdr
rm -f "$T/root/big.bin" "$T/root/large.bin"
