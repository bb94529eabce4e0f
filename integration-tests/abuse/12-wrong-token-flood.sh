#!/usr/bin/env bash
# abuse 12 failed tunnel attempts must not flood p's log: 200 tunnel requests with a wrong token
# (TLS, PUT /revmux/tunnel, Authorization: Bearer wrong; each 401) and 200 TCP connections to
# the tunnel port that close at once. p logs fewer than 20 ERROR/WARN lines about them and a
# line saying how many were suppressed, and /metrics counts them in
# revmux_tunnel_rejections_total{reason="wrong_token"} (>= 200). The real tunnel is untouched.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

make_root "$T/root"
start_pair token || exit 0
tid=$PAIR_TID
plog=$LOGS/p-token.log
from=$(($(grep -c '' "$plog") + 1))

python3 "$TOOLS/flood.py" tunnel-put 127.0.0.1 "$PAIR_TUNNEL_PORT" --count 200 --token wrong --sources 127.0.0.2 >"$T/put.out"
check_eq "200 tunnel requests with a wrong token: each refused with 401" '{"401": 200}' "$(jfield "$T/put.out" statuses)"
python3 "$TOOLS/flood.py" tcp-close 127.0.0.1 "$PAIR_TUNNEL_PORT" --count 200 --sources 127.0.0.3 >"$T/tcp.out"
check_eq "200 TCP connections to the tunnel port closed at once" 200 "$(jfield "$T/tcp.out" closed)"

# The summary of suppressed lines may wait for the next event: nudge with one more wrong
# token every 2 s, at most 7 times.
_suppressed_said() { tail -n +"$from" "$plog" | grep -qi 'suppress'; }
for _ in 1 2 3 4 5 6 7; do
  wait_until 2 _suppressed_said && break
  python3 "$TOOLS/flood.py" tunnel-put 127.0.0.1 "$PAIR_TUNNEL_PORT" --count 1 --sources 127.0.0.2 >/dev/null
done
if _suppressed_said; then
  pass "p says how many were suppressed: $(oneline "$(tail -n +"$from" "$plog" | grep -i -m1 'suppress' | cut -c1-160)")"
else
  fail "p says how many log lines it suppressed" "a line about suppressed messages" "none in $(tail -n +"$from" "$plog" | grep -c '') new lines"
fi
loud=$(tail -n +"$from" "$plog" | grep -cE '(^|[^A-Z])(ERROR|WARN)([^A-Z]|$)')
if [ "$loud" -lt 20 ]; then
  pass "fewer than 20 ERROR/WARN lines about them: $loud"
else
  fail "fewer than 20 ERROR/WARN lines about them" "< 20" "$loud, e.g. $(tail -n +"$from" "$plog" | grep -m1 -E 'ERROR|WARN' | cut -c1-150)"
fi
n=$(cx --max-time 5 "$PAIR_ADMIN/metrics" | awk '$1 == "revmux_tunnel_rejections_total{reason=\"wrong_token\"}" { print $2 }')
if [ -n "$n" ] && [ "${n%.*}" -ge 200 ]; then
  pass "/metrics: revmux_tunnel_rejections_total{reason=\"wrong_token\"} $n"
else
  fail "/metrics counts them: revmux_tunnel_rejections_total{reason=\"wrong_token\"} >= 200" ">= 200" "${n:-no such series}"
fi
check_tunnel_survived "wrong-token flood" "$PAIR_ADMIN" token "$tid"
stop_pair token
rm -f "$T/root/big.bin"
