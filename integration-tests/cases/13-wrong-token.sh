#!/usr/bin/env bash
# 13 wrong token: a c started with --token wrong (and one with REVMUX_TOKEN=wrong and
# REVMUX_LOG_FORMAT=json) is rejected: it logs at ERROR a line with `rejected` and
# `wrong token`, keeps retrying, is never listed; p's log names the cause; the good origin
# keeps serving.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts a rejected origin"

plog=$LOGS/p-main.log
p_off=$(fsize "$plog")

start_c c-bad "$CERTS" "$TUNNEL_PORT" badorigin --root "$FIX" --token wrong
start_bg c-bad-env "$LOGS/c-bad-env.log" env REVMUX_TOKEN=wrong REVMUX_LOG_FORMAT=json \
  "$C_BIN" --proxy "$PROXY_HOST:$TUNNEL_PORT" --name badorigin-env --certs-dir "$CERTS" --root "$FIX"

for name in c-bad c-bad-env; do
  log=$LOGS/$name.log
  if wait_file_has 20 "$log" "wrong token"; then
    pass "$name logs the reason 'wrong token'"
  else
    fail "$name logs the reason 'wrong token' within 20 s" "wrong token" "$(tail -n 3 "$log")"
  fi
  line=$(grep -i 'error' "$log" | grep -i 'rejected' | grep -m1 'wrong token')
  if [ -n "$line" ]; then
    pass "$name logs at ERROR a line with 'rejected' and 'wrong token'"
  else
    fail "$name logs at ERROR a line with 'rejected' and 'wrong token'" "such a line" "$(grep -m1 'wrong token' "$log")"
  fi
done

# The json-format log: every line one JSON object; the rejection at level ERROR.
json_check=$(python3 - "$LOGS/c-bad-env.log" <<'PY'
import json, sys
bad, hit = 0, None
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    if not line.strip():
        continue
    try:
        obj = json.loads(line)
    except ValueError:
        bad += 1
        continue
    text = json.dumps(obj)
    if hit is None and "wrong token" in text and "rejected" in text:
        hit = obj
if bad:
    print("%d non-JSON lines" % bad)
elif hit is None:
    print("no JSON line with 'rejected' and 'wrong token'")
else:
    level = str(hit.get("level", "")).upper()
    print("ok" if level == "ERROR" else "level %r" % level)
PY
)
check_eq "REVMUX_LOG_FORMAT=json: JSON lines, the rejection at level ERROR" ok "$json_check"

_retried() { [ "$(grep -c 'wrong token' "$LOGS/c-bad.log")" -ge 2 ]; }
if wait_until 15 _retried; then
  pass "the rejected c retries (a second rejection is logged)"
else
  fail "the rejected c retries within 15 s" ">= 2 rejections" "$(grep -c 'wrong token' "$LOGS/c-bad.log")"
fi
check_true "the rejected c keeps running (backoff, no exit)" "alive" "exited" proc_alive c-bad

newlog=$(tail -c +"$((p_off + 1))" "$plog")
cause=$(printf '%s\n' "$newlog" | grep -i 'token' | grep -iE -m1 'wrong|invalid|bad|mismatch|reject|unauthori[sz]ed|401|denied')
if [ -n "$cause" ]; then
  pass "p's log names the cause ($(oneline "${cause:0:120}"))"
else
  fail "p's log names the cause (a line about the token)" "a line with 'token' and wrong/invalid/rejected..." "$(oneline "$(printf '%s\n' "$newlog" | tail -n 3)")"
fi

fetch_check "the good origin keeps serving /poster.png" "$FRONT/poster.png" "$FIX/poster.png"
check_true "admin /status still lists '$MAIN_ORIGIN'" "listed" "not listed" admin_lists "$ADMIN" "$MAIN_ORIGIN"
if admin_lists "$ADMIN" badorigin || admin_lists "$ADMIN" badorigin-env; then
  fail "admin /status never lists a rejected origin" "not listed" "listed"
else
  pass "admin /status never lists a rejected origin"
fi

stop_proc c-bad
stop_proc c-bad-env
