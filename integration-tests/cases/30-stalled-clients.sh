#!/usr/bin/env bash
# 30 stalled front-end clients must not freeze the tunnel for everybody: 12 clients start a
# 48 MiB download each and stop reading (a paused video player does exactly this); a small
# file requested meanwhile must still arrive, byte-exact, within 10 s. Once the stalled
# clients go away everything flows again. Own p/c pair and root (so that a frozen tunnel
# cannot spoil the other cases).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

N=12
root=$T/root
mkdir -p "$root"
python3 -c 'import hashlib, sys; sys.stdout.buffer.write(hashlib.shake_256(b"revmux-huge").digest(48 * 1024 * 1024))' >"$root/huge.bin"
echo "small file" >"$root/small.txt"
mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
front=http://127.0.0.1:${ports[0]}
admin=http://127.0.0.1:${ports[2]}
start_p p-stall "$WORK/certs-stall" "${ports[0]}" "${ports[1]}" "${ports[2]}" ||
  fail "p starts" "ca.pem and token" "$(tail -n 2 "$LOGS/p-stall.log")"
start_c c-stall "$WORK/certs-stall" "${ports[1]}" stall --root "$root"
wait_http 20 200 "$front/" || fail "pair ready" 200 "$(http_code "$front/")"

stall_downloads "$N" "$front/huge.bin" 100
_all_open() {
  [ "$(cx --max-time 3 "$admin/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print(sum(o["open_streams"] for o in json.load(sys.stdin)["origins"]))
except Exception:
    print(-1)')" = "$N" ]
}
if wait_until 20 _all_open; then
  pass "$N stalled downloads are open streams"
else
  fail "$N stalled downloads are open streams within 20 s" "$N" "fewer"
fi
# Give the stalled streams time to fill every buffer and window they can.
_from_origin() {
  cx --max-time 3 "$admin/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print(sum(o["bytes_from_origin"] for o in json.load(sys.stdin)["origins"]))
except Exception:
    print(0)'
}
prev=-1
for _ in 1 2 3 4 5 6 7 8 9 10; do
  cur=$(_from_origin)
  [ "$cur" = "$prev" ] && break
  prev=$cur
  sleep 0.5
done

req small "$front/small.txt" --max-time 10
if [ "$R_RC" = 0 ] && [ "$R_STATUS" = 200 ] && [ "$(sha "$R_BODY")" = "$(sha "$root/small.txt")" ]; then
  pass "with $N stalled clients, another request still completes byte-exact"
else
  fail "with $N stalled clients, another request still completes byte-exact within 10 s" \
    "200 and 11 bytes" "status $R_STATUS, $R_SIZE bytes, curl exit $R_RC ($(head -c 120 "$T/small.err"))"
fi

stop_stalled
fetch_check "after the stalled clients are gone, requests flow again" "$front/small.txt" "$root/small.txt"
stop_proc c-stall
stop_proc p-stall
rm -f "$root/huge.bin"
