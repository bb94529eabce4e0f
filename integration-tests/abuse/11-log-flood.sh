#!/usr/bin/env bash
# abuse 11 an attacker must not be able to fill the disk through p's log: 200 requests with a
# 60 KB path (each a 404 or 431) grow p's log by less than 200 KB in total (request fields are
# truncated in log lines, repeated warnings rate-limited). The same for 200 such requests that
# p refuses itself (an invalid Host: 400), and for 200 while no origin is connected (502),
# both of which p logs. The tunnel is the same after the first two.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

make_root "$T/root"
start_pair logs || exit 0
tid=$PAIR_TID
plog=$LOGS/p-logs.log clog=$LOGS/c-logs.log
_log_still() { # the log has stopped growing (writes may trail the answers)
  local s
  s=$(fsize "$plog")
  [ "$s" = "${LAST_SIZE:-}" ] && return 0
  LAST_SIZE=$s
  return 1
}
# flood_paths LABEL STATUS-ERE [FLOOD-ARGS...]: 200 requests for a 60 KB path; p's log must
# grow by less than 200 KB
flood_paths() {
  local label=$1 want=$2 p_before c_before grown
  shift 2
  p_before=$(fsize "$plog") c_before=$(fsize "$clog")
  python3 "$TOOLS/flood.py" request 127.0.0.1 "$PAIR_FRONT_PORT" --sources 127.0.0.2 --path /missing- \
    --path-fill a:60000 --repeat 200 "$@" >"$T/paths.out"
  check_match "$label: 200 requests for a 60 KB path, answered $want" "^\\{\"($want)\": 200\\}\$" "$(jfield "$T/paths.out" statuses)"
  LAST_SIZE=
  wait_until 3 _log_still
  grown=$(($(fsize "$plog") - p_before))
  if [ "$grown" -lt 204800 ]; then
    pass "$label: p's log grew by $grown bytes for them (limit 200 KB; c's log: $(($(fsize "$clog") - c_before)) bytes)"
  else
    fail "$label: p's log grows by less than 200 KB for them" "< 204800 bytes" \
      "$grown bytes (longest line $(tail -c "$grown" "$plog" | awk '{ if (length > m) m = length } END { print m + 0 }') characters)"
  fi
}
flood_paths "to the origin" "404|414|431"
flood_paths "invalid Host" "400|414|431" --header 'Host: bad host'
check_tunnel_survived "60 KB paths" "$PAIR_ADMIN" logs "$tid"
stop_proc c-logs
_gone() { ! admin_lists "$PAIR_ADMIN" logs; }
wait_until 10 _gone
flood_paths "no origin connected" "502|414|431"
stop_proc p-logs
rm -f "$T/root/big.bin"
