#!/usr/bin/env bash
# revmux end-to-end suite runner.
#
#   ./run.sh [PATTERN...]      run every cases/NN-*.sh (or only those whose name contains a PATTERN)
#
# Abuse cases (abuse/NN-*.sh, named abuse/NN-... in the output; each starts its own p/c pair):
#   ABUSE=fast (default)  also run those whose header has a line `# abuse: fast`
#   ABUSE=all             also run every abuse case
#   ABUSE=only            run every abuse case and nothing else (`make abuse`)
#   ABUSE=none            no abuse case
# A case may set its own time limit with a header line `# case-timeout: SECONDS`.
#
# Self-hosted (BASE_URL unset): generates the fixtures, picks free loopback ports, starts
# ../bin/p + ../bin/c (main pair serving the fixtures) and a second p/c pair in front of a
# local python upstream, runs the cases, then stops everything it started — also on
# failure, Ctrl-C or SIGTERM — and checks that no process it started is left.
#
# Against a running pair: BASE_URL=http://127.0.0.1:1443 ./run.sh   (ADMIN_URL optional)
# Cases that must start or kill processes print SKIP.
#
# Ends with exactly one line `N passed, M failed[, K skipped]`; exits 1 on any failure.
set -u

CASE=run
IT_DIR=$(cd "$(dirname "$0")" && pwd)
export WORK=${WORK:-$IT_DIR/.work}
export RUN=$WORK/run
export LOGS=$WORK/logs
export RESULTS=$RUN/results
rm -rf "$RUN" "$LOGS"
mkdir -p "$RUN" "$LOGS"
: >"$RESULTS"
: >"$RUN/all-pids"
# shellcheck source=lib.sh
. "$IT_DIR/lib.sh"

CASE_TIMEOUT=${CASE_TIMEOUT:-120}
ABUSE=${ABUSE:-fast}
case $ABUSE in
  fast | all | only | none) ;;
  *)
    echo "run.sh: ABUSE must be fast, all, only or none (got '$ABUSE')" >&2
    exit 64
    ;;
esac
CURRENT_CASE_PID=

# ---------------------------------------------------------------- teardown and summary

cleaned=0
cleanup() {
  [ "$cleaned" = 1 ] && return 0
  cleaned=1
  # A case still running (interrupted): its whole process group (timeout + bash + curls).
  if [ -n "$CURRENT_CASE_PID" ]; then
    kill -TERM -- -"$CURRENT_CASE_PID" 2>/dev/null
    wait_until 5 pid_dead "$CURRENT_CASE_PID" || kill -KILL -- -"$CURRENT_CASE_PID" 2>/dev/null
  fi
  local f
  for f in "$PIDS"/*; do
    [ -f "$f" ] || continue
    case $f in *.new) continue ;; esac
    stop_proc "$(basename "$f")" TERM
  done
}

# Every process this run started must be gone: each daemon ran in its own session.
stray_check() {
  local pid strays=''
  while read -r pid; do
    [ -n "$pid" ] || continue
    pid_alive "$pid" && strays+=" $pid"
    for p in $(pgrep -s "$pid" 2>/dev/null); do
      pid_alive "$p" && strays+=" $p"
    done
  done <"$RUN/all-pids"
  while read -r pid; do
    [ -n "$pid" ] || continue
    for p in $(pgrep -g "$pid" 2>/dev/null); do
      pid_alive "$p" && strays+=" $p"
    done
  done <"$RUN/case-pgids"
  if [ -z "$strays" ]; then
    is_selfhosted && [ -s "$RUN/all-pids" ] && pass "every process the run started is stopped"
  else
    fail "every process the run started is stopped" "no strays" "still running:$strays ($(ps -o pid=,args= -p "${strays// /,}" 2>/dev/null | head -c 300))"
    # shellcheck disable=SC2086 # word splitting of the pid list is intended
    kill -KILL $strays 2>/dev/null
  fi
}

summary() {
  local np nf ns line
  np=$(grep -c '^PASS$' "$RESULTS")
  nf=$(grep -c '^FAIL$' "$RESULTS")
  ns=$(grep -c '^SKIP$' "$RESULTS")
  if [ "$nf" != 0 ] && is_selfhosted; then
    echo "(daemon logs of this run: $LOGS)"
  fi
  line="$np passed, $nf failed"
  [ "$ns" != 0 ] && line+=", $ns skipped"
  echo "$line"
  [ "$nf" = 0 ]
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  cleanup
  stray_check
  if summary && [ "$rc" = 0 ]; then exit 0; fi
  [ "$rc" = 0 ] && rc=1
  exit "$rc"
}
trap on_exit EXIT
trap 'CASE=run fail "run interrupted (SIGINT): stopping everything"; exit 130' INT
trap 'CASE=run fail "run terminated (SIGTERM): stopping everything"; exit 143' TERM
: >"$RUN/case-pgids"

# ---------------------------------------------------------------- setup

# setup_fail WHAT [LOG...]: record a FAIL, show the logs, stop the run.
setup_fail() {
  local what=$1 f
  shift
  fail "$what"
  for f in "$@"; do log_tail "$f"; done
  exit 1
}

if ! python3 "$TOOLS/gen_fixtures.py" "$WORK"; then
  setup_fail "generate fixtures"
fi

if [ -n "${BASE_URL:-}" ]; then
  export MODE=remote
  export FRONT=${BASE_URL%/}
  export ADMIN=${ADMIN_URL:-}
  ADMIN=${ADMIN%/}
  echo "== against a running pair: FRONT=$FRONT ADMIN=${ADMIN:-<not given>}"
  if ! wait_http 10 200 "$FRONT/"; then
    setup_fail "GET $FRONT/ answers 200 (start the pair as README.md says: its origin must serve $FIX)"
  fi
  if [ "$(http_code "$FRONT/poster.png")" != 200 ]; then
    setup_fail "GET $FRONT/poster.png answers 200 (is the origin serving $FIX?)"
  fi
elif [ "$ABUSE" = only ]; then
  # Every abuse case starts its own pairs: the shared ones would only cost time.
  export MODE=self
  for b in "$P_BIN" "$C_BIN"; do
    [ -x "$b" ] || setup_fail "binary $b exists (run 'make build' at the repo root)"
  done
  mkdir -p "$RUN/bin"
  if ! cp "$P_BIN" "$RUN/bin/p" || ! cp "$C_BIN" "$RUN/bin/c"; then
    setup_fail "copy $P_BIN and $C_BIN to $RUN/bin"
  fi
  export P_BIN=$RUN/bin/p C_BIN=$RUN/bin/c PROXY_HOST
  echo "== abuse cases only (each starts its own p/c pair)"
else
  export MODE=self
  for b in "$P_BIN" "$C_BIN"; do
    [ -x "$b" ] || setup_fail "binary $b exists (run 'make build' at the repo root)"
  done
  # Run a snapshot of the binaries: a rebuild during the run (another terminal's `make`)
  # then cannot swap or lock them between the restarts of cases 11 and 12.
  mkdir -p "$RUN/bin"
  if ! cp "$P_BIN" "$RUN/bin/p" || ! cp "$C_BIN" "$RUN/bin/c"; then
    setup_fail "copy $P_BIN and $C_BIN to $RUN/bin"
  fi
  P_BIN=$RUN/bin/p C_BIN=$RUN/bin/c
  mapfile -t ports < <(python3 "$TOOLS/freeports.py" 6)
  [ "${#ports[@]}" = 6 ] || setup_fail "pick free ports"
  export P_BIN C_BIN PROXY_HOST
  export MAIN_ORIGIN=files UP_ORIGIN=upstream
  export CERTS=$WORK/certs
  export FRONT_PORT=${ports[0]} TUNNEL_PORT=${ports[1]} ADMIN_PORT=${ports[2]}
  export UP_FRONT_PORT=${ports[3]} UP_TUNNEL_PORT=${ports[4]} UP_ADMIN_PORT=${ports[5]}
  export FRONT=http://127.0.0.1:$FRONT_PORT ADMIN=http://127.0.0.1:$ADMIN_PORT
  export UP_FRONT=http://127.0.0.1:$UP_FRONT_PORT UP_ADMIN=http://127.0.0.1:$UP_ADMIN_PORT
  export UP_CERTS=$WORK/certs-upstream
  export TRIGGERS=$RUN/triggers
  echo "== self-hosted: main front $FRONT (tunnel :$TUNNEL_PORT, admin :$ADMIN_PORT); upstream front $UP_FRONT"

  # The local upstream service behind the second origin.
  start_bg upstream-svc "$LOGS/upstream-svc.log" python3 "$TOOLS/upstream.py" \
    --port-file "$RUN/upstream.port" --trigger-dir "$TRIGGERS" ||
    setup_fail "start the python upstream service" "$LOGS/upstream-svc.log"

  start_main_p || setup_fail "p (main) starts and writes $CERTS/ca.pem and token" "$LOGS/p-main.log"
  start_p p-up "$UP_CERTS" "$UP_FRONT_PORT" "$UP_TUNNEL_PORT" "$UP_ADMIN_PORT" ||
    setup_fail "p (upstream pair) starts and writes $UP_CERTS/ca.pem and token" "$LOGS/p-up.log"
  wait_files 10 "$RUN/upstream.port" || setup_fail "python upstream writes its port" "$LOGS/upstream-svc.log"
  export UPSTREAM_PORT
  UPSTREAM_PORT=$(cat "$RUN/upstream.port")

  start_main_c || setup_fail "c (main) starts" "$LOGS/c-main.log"
  start_c c-up "$UP_CERTS" "$UP_TUNNEL_PORT" "$UP_ORIGIN" --upstream "http://127.0.0.1:$UPSTREAM_PORT" ||
    setup_fail "c (upstream) starts" "$LOGS/c-up.log"

  wait_http 20 200 "$FRONT/" ||
    setup_fail "main pair ready: GET $FRONT/ answers 200 within 20 s (got $(http_code "$FRONT/"))" \
      "$LOGS/p-main.log" "$LOGS/c-main.log"
  # The upstream pair is checked by its own cases (08, 09): a failure there must not stop the rest.
  wait_http 20 200 "$UP_FRONT/" || echo "warning: upstream pair not ready (GET $UP_FRONT/ -> $(http_code "$UP_FRONT/"))"
fi

# ---------------------------------------------------------------- cases

selected() {
  local name=$1 pat
  [ "${#PATTERNS[@]}" -eq 0 ] && return 0
  for pat in "${PATTERNS[@]}"; do
    [[ $name == *"$pat"* ]] && return 0
  done
  return 1
}
PATTERNS=("$@")

# The scripts to run, in order: cases/ (unless ABUSE=only), then abuse/ as ABUSE says.
scripts=()
[ "$ABUSE" = only ] || scripts+=("$IT_DIR"/cases/[0-9]*.sh)
for script in "$IT_DIR"/abuse/[0-9]*.sh; do
  [ -f "$script" ] || continue
  case $ABUSE in
    none) ;;
    fast) grep -q '^# abuse: fast' "$script" && scripts+=("$script") ;;
    *) scripts+=("$script") ;;
  esac
done

# stop_new_daemons BEFORE: stop what a case started and left running (pid files that were not
# there before it), so that a case killed at its time limit cannot burden the next ones.
stop_new_daemons() {
  local f
  for f in "$PIDS"/*; do
    [ -f "$f" ] || continue
    case $f in *.new) continue ;; esac
    grep -qxF "$(basename "$f")" <<<"$1" || stop_proc "$(basename "$f")" TERM
  done
}

for script in "${scripts[@]}"; do
  name=$(basename "$script" .sh)
  [[ $script == */abuse/* ]] && name=abuse/$name
  selected "$name" || continue
  echo "== $name"
  before=$(wc -l <"$RESULTS")
  daemons_before=$(ls "$PIDS" 2>/dev/null)
  limit=$(sed -n 's/^# case-timeout: *\([0-9][0-9]*\).*/\1/p' "$script" | head -n 1)
  limit=${limit:-$CASE_TIMEOUT}
  # `timeout` runs the case in a process group of its own: on a hang it kills the whole
  # group, and afterwards any leftover background curl of the case is killed the same way.
  CASE=$name timeout -k 5 "$limit" bash "$script" &
  CURRENT_CASE_PID=$!
  echo "$CURRENT_CASE_PID" >>"$RUN/case-pgids"
  wait "$CURRENT_CASE_PID"
  rc=$?
  kill -KILL -- -"$CURRENT_CASE_PID" 2>/dev/null
  CURRENT_CASE_PID=
  CASE=$name
  stop_new_daemons "$daemons_before"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "case did not finish within ${limit} s (killed)"
  elif [ "$rc" != 0 ]; then
    fail "case script exited with status $rc"
  elif [ "$(wc -l <"$RESULTS")" = "$before" ]; then
    fail "case recorded no result"
  fi
  CASE=run
done
exit 0
