#!/usr/bin/env bash
# abuse 15 an origin that never answers must not hold a front-end client forever:
# p --response-timeout 2s in front of `c --upstream` to an app that accepts the request and
# never answers: 504 from p within ~3 s (checked at 3.5 s), over HTTP/1.1 and h2c. The timeout
# counts from the end of the request: a 6 MB upload at 2 MB/s (3 s) still gets through whole,
# and a client that stops mid-upload gets 408 one timeout after its last byte. The tunnel is
# the same afterwards and a victim's GET meanwhile and after takes under 1 s. The client's
# own revmux-response-timeout header (p's word to c on how long to wait) is ignored: 1 ms would
# end the wait at once.
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
    -H 'revmux-response-timeout: 1' "$PAIR_FRONT/never" 2>"$T/never.err")
  read -r code secs <<<"$out"
  if [ "$code" = 504 ] && awk -v s="$secs" 'BEGIN { exit !(s >= 1.9 && s <= 3.5) }'; then
    pass "$proto: an origin that never answers: 504 after $secs s (2 s timeout; the client's 1 ms ignored)"
  else
    fail "$proto: an origin that never answers: 504 after 2-3.5 s" "504 within 1.9-3.5 s" \
      "${code:-000} after ${secs:-?} s $(head -c 100 "$T/never.err")"
  fi
done
head -c 6000000 /dev/urandom >"$T/upload.bin"
for proto in --http1.1 --http2-prior-knowledge; do
  out=$("${CURL[@]}" "$proto" --interface 127.0.0.2 --max-time 20 --limit-rate 2M -H 'Expect:' -T "$T/upload.bin" \
    -o "$T/upload.body" -w '%{http_code} %{time_total}' "$PAIR_FRONT/record-slow-upload${proto#--}" 2>"$T/upload.err")
  read -r code secs <<<"$out"
  got=$(grep -F "/record-slow-upload${proto#--}" "$EVIL_DIR/records.jsonl" 2>/dev/null | tail -n 1)
  if [ "$code" = 200 ] && [[ $got == *'"body_len": 6000000'* ]]; then
    pass "$proto: an upload slower than the response timeout (${secs} s against 2 s) gets through whole"
  else
    fail "$proto: an upload slower than the response timeout gets through whole" "200, 6000000 bytes recorded" \
      "${code:-000} after ${secs:-?} s: $(head -c 120 "$T/upload.body") $(oneline "$got")"
  fi
done
stalled=$(python3 - "${PAIR_FRONT#http://}" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(b"PUT /record-stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
start, data = time.monotonic(), b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print("%.1f %s" % (time.monotonic() - start, data.split(b"\r\n", 1)[0].decode("latin-1")))
PY
)
read -r secs status_line <<<"$stalled"
if [[ $status_line == 'HTTP/1.1 408'* ]] && awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s <= 3.5) }'; then
  pass "a client that stops mid-upload: 408 from p after $secs s (2 s timeout)"
else
  fail "a client that stops mid-upload: 408 from p about 2 s after its last byte" "HTTP/1.1 408 within 1.5-3.5 s" "$stalled"
fi
check_tunnel_survived "origin never answers" "$PAIR_ADMIN" never "$tid"
victim_get "a victim's GET of a 6-byte file" "$PAIR_FRONT/files/small.txt" "$EVIL_DIR/small.txt" 1
stop_pair never
stop_proc svc-never
