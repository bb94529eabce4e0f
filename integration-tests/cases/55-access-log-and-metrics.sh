#!/usr/bin/env bash
# 55 the operator's view through the real binaries: `--access-log FILE --log-format json` writes
# one JSON line per request with the real byte count of a download (and says when the client
# cut one short), nothing of it in p's own log, and after SIGHUP to a new file at its path (the
# old one renamed by logrotate); the default writes access lines with the normal log;
# `--access-log off` writes none; an access-log path that cannot be opened is exit 64 naming
# the flag. /metrics has build info, process metrics and the latency histogram; `p
# status --watch` prints refresh after refresh and stops on SIGINT and on SIGTERM; `p status`
# with no proxy names the address it tried and how to point it elsewhere.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own proxies and origins"

make_root "$T/root"
big=$T/root/big.bin
log=$T/access.log

# --- access log to a file, as JSON ---
if start_pair al --access-log "$log" --log-format json -- --root "$T/root"; then
  fetch_check "a download through p --access-log FILE" "$PAIR_FRONT/big.bin" "$big"
  wait_file_has 10 "$log" '"/big.bin"'
  out=$(python3 - "$log" "$(fsize "$big")" 2>&1 <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mine = [r["fields"] for r in rows if r["fields"].get("path") == "/big.bin"]
assert all(r["target"] == "revmux::access" for r in rows), "a line of another target"
assert len(mine) == 1, f"{len(mine)} lines for /big.bin"
f = mine[0]
want = {"method": "GET", "status": 200, "bytes_out": int(sys.argv[2]), "bytes_in": 0, "origin": "al", "outcome": "complete"}
bad = {k: f.get(k) for k, v in want.items() if f.get(k) != v}
assert not bad, f"wrong fields {bad}"
assert f["client"].startswith("127.0.0.1:") and f["duration_ms"] > 0 and f["host"].startswith("127.0.0.1:"), f
print("ok")
PY
  )
  check_eq "the access-log file: one JSON line for the download, with its exact bytes_out" ok "$(oneline "$out" 2>&1)"

  # A download cut short after about a second: logged, and says so. The file is larger than
  # what loopback socket buffers absorb (several MiB), so the proxy is still sending.
  make_file "$T/root/huge.bin" 64
  cx --limit-rate 1M --max-time 1 -o /dev/null "$PAIR_FRONT/huge.bin" 2>/dev/null
  wait_until 10 _file_has "$log" '"outcome":"client_gone"'
  out=$(python3 - "$log" "$(fsize "$T/root/huge.bin")" 2>&1 <<'PY'
import json, sys
rows = [json.loads(l)["fields"] for l in open(sys.argv[1]) if l.strip()]
cut = [r for r in rows if r.get("path") == "/huge.bin"]
assert len(cut) == 1, f"{len(cut)} lines for /huge.bin"
assert cut[0]["outcome"] == "client_gone", cut[0]
assert 0 < cut[0]["bytes_out"] < int(sys.argv[2]), cut[0]
print("ok")
PY
  )
  check_eq "a download the client cut short: one line, outcome client_gone, the bytes really sent" ok \
    "$(oneline "$out" 2>&1)"
  check_file_lacks "p's own log holds no access lines when they go to a file" "$LOGS/p-al.log" "revmux::access"

  req metrics "$PAIR_ADMIN/metrics"
  for needle in 'revmux_build_info{version="' 'process_cpu_seconds_total ' 'process_resident_memory_bytes ' \
    'process_open_fds ' '# TYPE revmux_request_duration_seconds histogram' \
    'revmux_request_duration_seconds_bucket{le="+Inf",origin="al",class="2xx"} 2'; do
    check_file_contains "GET /metrics: $needle" "$R_BODY" "$needle"
  done
  cx --max-time 5 "$PAIR_ADMIN/status" >"$T/status.json"
  check_eq "GET /status: the proxy section lists the 2xx responses of origin al" 2 \
    "$(python3 -c 'import json,sys; print([r["count"] for r in json.load(open(sys.argv[1]))["proxy"]["responses"] if r["origin"] == "al" and r["class"] == "2xx"][0])' "$T/status.json" 2>&1)"

  # p status --watch: refresh after refresh (stdout is a file: no screen clearing), then stops.
  for sig in INT TERM; do
    start_bg "watch-$sig" "$T/watch-$sig.out" "$P_BIN" status --watch --interval 0.2 --admin-listen "127.0.0.1:$PAIR_ADMIN_PORT"
    wpid=$(proc_pid "watch-$sig")
    _refreshes() { [ "$(grep -c '^revmux status from' "$1")" -ge 3 ]; }
    if wait_until 10 _refreshes "$T/watch-$sig.out"; then
      pass "p status --watch: $(grep -c '^revmux status from' "$T/watch-$sig.out") refreshes printed"
    else
      fail "p status --watch prints 3 refreshes within 10 s" ">= 3" "$(grep -c '^revmux status from' "$T/watch-$sig.out")"
    fi
    check_file_lacks "p status --watch to a file: no terminal escapes" "$T/watch-$sig.out" $'\e['
    check_file_contains "p status --watch: the table names origin al" "$T/watch-$sig.out" "al "
    kill -"$sig" "$wpid" 2>/dev/null
    if wait_until 5 pid_dead "$wpid"; then
      pass "p status --watch stops on SIG$sig"
    else
      fail "p status --watch stops on SIG$sig within 5 s" "exited" "still running"
      kill -KILL "$wpid" 2>/dev/null
    fi
    rm -f "$PIDS/watch-$sig"
  done
  # On a terminal (script(1) gives it one) each refresh clears the screen first.
  if command -v script >/dev/null; then
    timeout 10 script -qfec "timeout -s INT 1 '$P_BIN' status --watch --interval 0.2 --admin-listen 127.0.0.1:$PAIR_ADMIN_PORT" \
      /dev/null >"$T/watch-tty.out" 2>&1 </dev/null
    check_true "p status --watch on a terminal: clears the screen before each refresh" ">= 2" \
      "$(grep -c $'\e\[H\e\[2J' "$T/watch-tty.out")" [ "$(grep -c $'\e\[H\e\[2J' "$T/watch-tty.out")" -ge 2 ]
  else
    skip "p status --watch on a terminal: needs script(1)"
  fi
  # logrotate's default: the file is renamed, then p gets SIGHUP (systemctl reload); the next
  # line goes to a new file at the path, none to the renamed one.
  mv "$log" "$log.1"
  kill -HUP "$(proc_pid p-al)"
  wait_file_has 10 "$LOGS/p-al.log" SIGHUP
  fetch_check "a request after the access log was renamed and p got SIGHUP" "$PAIR_FRONT/small.txt" \
    "$T/root/small.txt"
  if wait_file_has 10 "$log" '"/small.txt"'; then
    pass "after SIGHUP access lines go to a new file at the --access-log path"
  else
    fail "after SIGHUP access lines go to a new file at the --access-log path" "a /small.txt line in $log" \
      "$(oneline "$(ls "$T" | grep access; tail -c 300 "$log.1")")"
  fi
  check_file_lacks "and none to the renamed file" "$log.1" '"/small.txt"'
  stop_pair al
  rm -f "$T/root/huge.bin"
fi

# --- the default: access lines with the normal log on stderr; off: none ---
if start_pair ad -- --root "$T/root"; then
  fetch_check "a request through p with the default access log" "$PAIR_FRONT/small.txt" "$T/root/small.txt"
  if wait_file_has 10 "$LOGS/p-ad.log" 'path=/small.txt'; then
    pass "default: p's log has the access line of /small.txt"
  else
    fail "default: p's log has the access line of /small.txt" "revmux::access ... path=/small.txt" \
      "$(oneline "$(tail -n 2 "$LOGS/p-ad.log")")"
  fi
  check_file_contains "default: the access line names status and bytes" "$LOGS/p-ad.log" "status=200 bytes_in=0 bytes_out=6"
  stop_pair ad
fi
if start_pair ao --access-log off -- --root "$T/root"; then
  fetch_check "a request through p --access-log off" "$PAIR_FRONT/small.txt" "$T/root/small.txt"
  stop_proc c-ao
  stop_proc p-ao # its log is complete once it has stopped
  check_file_lacks "--access-log off: no access line in p's log" "$LOGS/p-ao.log" "revmux::access"
fi

# --- bad values and a p status with nobody to ask ---
free_ports 3
timeout 10 "$P_BIN" --listen "127.0.0.1:${PORTS[0]}" --tunnel-listen "127.0.0.1:${PORTS[1]}" \
  --admin-listen "127.0.0.1:${PORTS[2]}" --certs-dir "$T/certs-bad" --access-log "$T/no/such/dir/a.log" \
  >"$T/bad.out" 2>&1 </dev/null
check_eq "--access-log in a missing directory: exit 64" 64 "$?"
check_file_contains "--access-log in a missing directory: names the flag" "$T/bad.out" "--access-log"
timeout 10 "$P_BIN" status --admin-listen "127.0.0.1:${PORTS[2]}" >"$T/nobody.out" 2>&1 </dev/null
rc=$?
check_true "p status with nobody listening: exit 1" 1 "$rc" [ "$rc" -eq 1 ]
check_file_contains "p status with nobody listening: names the address it tried" "$T/nobody.out" "127.0.0.1:${PORTS[2]}"
check_file_contains "p status with nobody listening: says how to point it elsewhere" "$T/nobody.out" "REVMUX_ADMIN_LISTEN"
