#!/usr/bin/env bash
# 17 admin API: GET /status is JSON listing the connected origin with all its fields and
# counters that move with traffic; GET /metrics is Prometheus text; `p status` prints a table
# naming the origin. Against BASE_URL this needs ADMIN_URL (and ORIGIN_NAME to name the origin).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

if [ -z "${ADMIN:-}" ]; then
  skip "no admin address (set ADMIN_URL=http://HOST:PORT with BASE_URL)"
  exit 0
fi
name=${MAIN_ORIGIN:-${ORIGIN_NAME:-}}

# status_field FILE FIELD: FIELD of the origin called $name (or the only/first one)
status_field() {
  python3 - "$1" "$2" "$name" <<'PY'
import json, sys
path, field, name = sys.argv[1:4]
origins = json.load(open(path))["origins"]
match = [o for o in origins if o.get("name") == name] if name else origins[:1]
print(match[0].get(field, "<missing>") if match else "<no such origin>")
PY
}

req st1 "$ADMIN/status"
check_eq "GET /status: status" 200 "$R_STATUS"
check_eq "GET /status: Content-Type" application/json "$(mediatype "$(hdr st1 content-type)")"
cp "$R_BODY" "$T/status1.json"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d["origins"], list)' "$T/status1.json" 2>/dev/null; then
  pass "GET /status is JSON with an 'origins' list"
else
  fail "GET /status is JSON with an 'origins' list" '{"origins":[...]}' "$(head -c 200 "$T/status1.json")"
fi
if [ -n "$name" ]; then
  check_eq "GET /status lists origin '$name'" "$name" "$(status_field "$T/status1.json" name)"
fi
for field in peer connected_since open_streams requests bytes_to_origin bytes_from_origin; do
  v=$(status_field "$T/status1.json" "$field")
  if [ "$v" = "<missing>" ] || [ "$v" = "<no such origin>" ]; then
    fail "GET /status: origin has '$field'" "a value" "$v"
  else
    pass "GET /status: origin has '$field' ($v)"
  fi
done
for field in open_streams requests bytes_to_origin bytes_from_origin; do
  check_match "GET /status: '$field' is a non-negative integer" '^[0-9]+$' "$(status_field "$T/status1.json" "$field")"
done
check_match "GET /status: peer is an address" '^(\[[0-9a-fA-F:.]+\]|[0-9.]+):[0-9]+$' "$(status_field "$T/status1.json" peer)"

# Counters move: one download of poster.png (~490 KB) adds >= 1 request and >= its size.
r1=$(status_field "$T/status1.json" requests)
b1=$(status_field "$T/status1.json" bytes_from_origin)
fetch_check "a download between two /status reads" "$FRONT/poster.png" "$FIX/poster.png"
cx "$ADMIN/status" >"$T/status2.json" 2>/dev/null
r2=$(status_field "$T/status2.json" requests)
b2=$(status_field "$T/status2.json" bytes_from_origin)
if [[ $r1 =~ ^[0-9]+$ && $r2 =~ ^[0-9]+$ && $b1 =~ ^[0-9]+$ && $b2 =~ ^[0-9]+$ ]]; then
  check_true "'requests' grew by >= 1 after one request" ">= $((r1 + 1))" "$r2" [ "$r2" -ge $((r1 + 1)) ]
  check_true "'bytes_from_origin' grew by >= the file size" ">= $((b1 + $(fsize "$FIX/poster.png")))" "$b2" \
    [ "$b2" -ge $((b1 + $(fsize "$FIX/poster.png"))) ]
else
  fail "'requests' and 'bytes_from_origin' are readable counters" "integers" "requests $r1 -> $r2, bytes $b1 -> $b2"
fi
check_eq "no stream left open when idle ('open_streams')" 0 "$(status_field "$T/status2.json" open_streams)"

req metrics "$ADMIN/metrics"
check_eq "GET /metrics: status" 200 "$R_STATUS"
check_match "GET /metrics: Content-Type is text" '^(text/plain|application/openmetrics-text)' "$(mediatype "$(hdr metrics content-type)")"
check_file_contains "GET /metrics: Prometheus exposition (# TYPE lines)" "$R_BODY" "# TYPE"
if [ -n "$name" ]; then
  check_file_contains "GET /metrics: per-origin series name the origin" "$R_BODY" "\"$name\""
fi

if [[ $ADMIN =~ ^http://([^/]+)$ ]] && [ -x "$P_BIN" ]; then
  "$P_BIN" status --admin-listen "${BASH_REMATCH[1]}" >"$T/pstatus.out" 2>"$T/pstatus.err" </dev/null &
  ps_pid=$!
  if wait_until 10 pid_dead "$ps_pid"; then
    wait "$ps_pid"
    check_eq "p status: exit status" 0 "$?"
  else
    kill -KILL "$ps_pid" 2>/dev/null
    fail "p status finishes within 10 s" "exit" "still running"
  fi
  if [ -n "$name" ]; then
    check_file_contains "p status: table names origin '$name'" "$T/pstatus.out" "$name"
  fi
  check_true "p status: prints a header line and a row" ">= 2 lines" "$(wc -l <"$T/pstatus.out") lines" \
    [ "$(wc -l <"$T/pstatus.out")" -ge 2 ]
else
  skip "'p status' needs the p binary and a plain http://HOST:PORT admin address"
fi
