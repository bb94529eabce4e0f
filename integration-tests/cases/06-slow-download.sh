#!/usr/bin/env bash
# 06 a slow download (curl --limit-rate 200k, 4 MiB, its output drained by a reader paced
# at 200 KiB/s through a FIFO so the slowness reaches the server as real back-pressure)
# runs in the background while 24 other requests are made one after another: each
# completes byte-exact while the slow one is still running; then the slow one finishes
# byte-exact too. No duration is asserted: only the order of completions.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

big=$FIX/big/archive.bin
fifo=$T/slow.fifo
rm -f "$fifo" "$T/slow.out"
mkfifo "$fifo"
python3 "$TOOLS/slow_sink.py" "$T/slow.out" 204800 <"$fifo" &
sink_pid=$!
"${CURL[@]}" --limit-rate 200k --max-time 90 -o "$fifo" -w '%{http_code}' "$FRONT/big/archive.bin" >"$T/slow.code" 2>"$T/slow.err" &
slow_pid=$!

if wait_until 15 _nonempty "$T/slow.out"; then
  pass "slow download started (first bytes arrived)"
else
  fail "slow download started within 15 s" "some bytes" "none (curl: $(head -c 150 "$T/slow.err"))"
fi

files=(poster.png "música/canción.mp3" notes/readme.txt 'odd <name> & "quotes".txt' trailer.webm empty.txt)
for i in $(seq 1 24); do
  rel=${files[$((i % ${#files[@]}))]}
  if [ $((i % 4)) = 0 ]; then
    # every fourth request is a range request
    req r "$FRONT/$(urlpath "$rel")" -H 'Range: bytes=0-99'
    n=$(fsize "$FIX/$rel")
    if [ "$n" -gt 0 ]; then
      exp_status=206 exp_sha=$(slice_sha "$FIX/$rel" 0 100)
    else
      exp_status=416 exp_sha=''
    fi
    if [ "$R_STATUS" = "$exp_status" ] && { [ -z "$exp_sha" ] || [ "$(sha "$R_BODY")" = "$exp_sha" ]; }; then
      pass "request $i/24 during the slow download: range of /$rel ($R_STATUS)"
    else
      fail "request $i/24 during the slow download: range of /$rel" "$exp_status with the right bytes" "$R_STATUS, $(fsize "$R_BODY") bytes"
    fi
  else
    fetch_check "request $i/24 during the slow download: /$rel byte-exact" "$FRONT/$(urlpath "$rel")" "$FIX/$rel"
  fi
done

got=$(fsize "$T/slow.out")
if pid_alive "$slow_pid"; then
  pass "the slow download was still running after the 24 requests ($got of $(fsize "$big") bytes so far)"
else
  fail "the slow download was still running after the 24 requests" "curl still running" "it had ended ($got bytes, $(head -c 150 "$T/slow.err"))"
fi

wait "$slow_pid"
rc=$?
# The reader drains at most a pipe's worth after curl is done; bounded all the same.
wait_until 15 pid_dead "$sink_pid" || kill "$sink_pid" 2>/dev/null
wait "$sink_pid" 2>/dev/null
check_eq "slow download: curl exit status" 0 "$rc"
check_eq "slow download: status" 200 "$(cat "$T/slow.code")"
check_eq "slow download: sha256 ($(fsize "$big") bytes)" "$(sha "$big")" "$(sha "$T/slow.out")"
