# shellcheck shell=bash disable=SC2034 # (globals here are used by the scripts sourcing this file)
# Shared helpers of the revmux end-to-end suite: sourced by run.sh and by every cases/NN-*.sh.
#
# Results: every check prints one line `PASS <case>: <what>` / `FAIL <case>: <what> (expected X, got Y)`
# / `SKIP <case>: <why>` and appends PASS/FAIL/SKIP to $RESULTS, which run.sh counts.
# Nothing here uses `set -e`: a failed check is counted, the case goes on.

set -u

IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=$IT_DIR/tools
WORK=${WORK:-$IT_DIR/.work}
FIX=$WORK/fixtures          # the directory the origin serves
SECRET_FILE=$WORK/secret.txt # outside $FIX: the traversal case's marker
RUN=${RUN:-$WORK/run}       # per-run state: pid files, results, scratch
LOGS=${LOGS:-$WORK/logs}    # daemon logs of this run
PIDS=$RUN/pids
RESULTS=${RESULTS:-$RUN/results}
CASE=${CASE:-$(basename "$0" .sh)}
P_BIN=${P_BIN:-$IT_DIR/../bin/p}
C_BIN=${C_BIN:-$IT_DIR/../bin/c}
PROXY_HOST=${PROXY_HOST:-localhost} # host name c dials (must be in the tunnel certificate)
MAXT=${MAXT:-20}                    # default curl --max-time, seconds
# Set by run.sh (exported) for the cases; empty defaults keep `set -u` quiet elsewhere.
MODE=${MODE:-self}
FRONT=${FRONT:-}
ADMIN=${ADMIN:-}
CERTS=${CERTS:-$WORK/certs}

# Scratch directory of the current case.
T=$RUN/tmp/$CASE
mkdir -p "$T" "$PIDS" "$LOGS"

# ---------------------------------------------------------------- results

# Squash a value onto one short line for a FAIL message.
oneline() {
  local s=${1//$'\r'/}
  s=${s//$'\n'/\\n}
  if [ "${#s}" -gt 200 ]; then s="${s:0:200}..."; fi
  printf '%s' "$s"
}

pass() {
  printf 'PASS %s: %s\n' "$CASE" "$1"
  echo PASS >>"$RESULTS"
}

# fail WHAT [EXPECTED GOT]
fail() {
  if [ $# -ge 3 ]; then
    printf 'FAIL %s: %s (expected %s, got %s)\n' "$CASE" "$1" "$(oneline "$2")" "$(oneline "$3")"
  else
    printf 'FAIL %s: %s\n' "$CASE" "$1"
  fi
  echo FAIL >>"$RESULTS"
}

skip() {
  printf 'SKIP %s: %s\n' "$CASE" "$1"
  echo SKIP >>"$RESULTS"
}

# Self-hosted mode starts and kills its own p/c; against BASE_URL those cases are skipped.
is_selfhosted() { [ "${MODE:-self}" = self ]; }

# require_selfhosted REASON: skip the whole case (and exit it) unless self-hosted.
require_selfhosted() {
  if ! is_selfhosted; then
    skip "needs to start/stop its own processes ($1); not possible against BASE_URL=$FRONT"
    exit 0
  fi
}

# check_eq WHAT EXPECTED GOT
check_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "$2" "$3"; fi
}

# check_match WHAT ERE GOT   (bash regex match)
check_match() {
  if [[ $3 =~ $2 ]]; then pass "$1"; else fail "$1" "match /$2/" "$3"; fi
}

# check_true WHAT EXPECTED-DESCRIPTION GOT-DESCRIPTION CMD...
check_true() {
  local what=$1 exp=$2 got=$3
  shift 3
  if "$@"; then pass "$what"; else fail "$what" "$exp" "$got"; fi
}

# check_file_contains WHAT FILE STRING   (fixed string)
check_file_contains() {
  if grep -qF -- "$3" "$2" 2>/dev/null; then
    pass "$1"
  else
    fail "$1" "body containing '$3'" "$(head -c 200 "$2" 2>/dev/null)"
  fi
}

# check_file_lacks WHAT FILE STRING   (fixed string)
check_file_lacks() {
  if grep -qF -- "$3" "$2" 2>/dev/null; then
    fail "$1" "no '$3'" "it is there: $(grep -F -m1 -- "$3" "$2" | head -c 160)"
  else
    pass "$1"
  fi
}

# ---------------------------------------------------------------- files, bytes

sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }

# sha of LEN bytes of FILE from byte offset OFF
slice_sha() { tail -c +"$(($2 + 1))" "$1" | head -c "$3" | sha256sum | cut -d' ' -f1; }

# Percent-encode a path (UTF-8 bytes), keeping '/' and unreserved characters.
urlpath() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [a-zA-Z0-9/._~-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c" && out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

# Expected Content-Type (without parameters) of a fixture, by extension.
ctype_of() {
  case $1 in
    *.png) echo image/png ;;
    *.mp4) echo video/mp4 ;;
    *.mkv) echo video/x-matroska ;;
    *.webm) echo video/webm ;;
    *.mp3) echo audio/mpeg ;;
    *.txt) echo text/plain ;;
    *) echo application/octet-stream ;;
  esac
}

# ---------------------------------------------------------------- HTTP

# cx CURL-ARGS...: curl with the suite's defaults (bounded, no proxy env, no globbing).
cx() { curl -sS --globoff --noproxy '*' --max-time "$MAXT" "$@"; }
# For curls run in the background, whose PID ($!) must be curl itself (a backgrounded
# function is a subshell): "${CURL[@]}" --max-time N ... &
CURL=(curl -sS --globoff --noproxy '*')

# req NAME URL [CURL-ARGS...]
# Makes one request; body in $T/NAME.body, headers in $T/NAME.hdr, curl's stderr in $T/NAME.err.
# Sets R_RC (curl exit), R_STATUS, R_VERSION (1.1, 2, ...), R_SIZE (bytes downloaded), R_BODY, R_HDR.
req() {
  local name=$1 url=$2 out
  shift 2
  R_BODY=$T/$name.body
  R_HDR=$T/$name.hdr
  : >"$R_BODY"
  : >"$R_HDR"
  out=$(cx -o "$R_BODY" -D "$R_HDR" -w '%{http_code} %{http_version} %{size_download}' "$@" "$url" 2>"$T/$name.err")
  R_RC=$?
  R_STATUS=000 R_VERSION='?' R_SIZE=0
  read -r R_STATUS R_VERSION R_SIZE <<<"$out"
  return 0
}

# hdr NAME HEADER: value of HEADER in the last response of $T/NAME.hdr ('' if absent)
hdr() {
  awk -v want="$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')" '
    /^HTTP\// { delete seen; val = "" }
    {
      sub(/\r$/, "")
      i = index($0, ":")
      if (i > 0 && tolower(substr($0, 1, i - 1)) == want) {
        v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); val = v
      }
    }
    END { print val }' "$T/$1.hdr"
}

# media type of a Content-Type value, lower-cased, without parameters
mediatype() { printf '%s' "${1%%;*}" | tr '[:upper:]' '[:lower:]' | tr -d ' '; }

# fetch_check WHAT URL FILE [CURL-ARGS...]: GET must be 200 and byte-exact with FILE.
fetch_check() {
  local what=$1 url=$2 file=$3 name
  shift 3
  name=fc.$RANDOM
  req "$name" "$url" "$@"
  if [ "$R_RC" != 0 ] || [ "$R_STATUS" != 200 ]; then
    fail "$what" "200 (curl exit 0)" "$R_STATUS (curl exit $R_RC: $(head -c 150 "$T/$name.err"))"
  elif [ "$(sha "$R_BODY")" != "$(sha "$file")" ]; then
    fail "$what" "sha256 $(sha "$file") ($(fsize "$file") bytes)" "sha256 $(sha "$R_BODY") ($(fsize "$R_BODY") bytes)"
  else
    pass "$what"
  fi
}

# http_code URL [CURL-ARGS...]: prints the status code (000 on a transport error)
http_code() {
  local url=$1
  shift
  cx -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null || true
}

# ---------------------------------------------------------------- waiting (bounded polling)

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# wait_until TIMEOUT-SECONDS CMD...: polls CMD every 0.1 s until it succeeds; 1 on timeout.
wait_until() {
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  while :; do
    "$@" && return 0
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

_code_is() { [ "$(http_code "$2" --max-time 3 "${@:3}")" = "$1" ]; }
# wait_http TIMEOUT CODE URL [CURL-ARGS...]
wait_http() {
  local t=$1
  shift
  wait_until "$t" _code_is "$@"
}

_file_has() { grep -qF -- "$2" "$1" 2>/dev/null; }
# wait_file_has TIMEOUT FILE STRING
wait_file_has() { wait_until "$1" _file_has "$2" "$3"; }

_nonempty() { [ -s "$1" ]; }
_files_exist() {
  local f
  for f in "$@"; do [ -s "$f" ] || return 1; done
}
# wait_files TIMEOUT FILE...: until every FILE exists and is non-empty
wait_files() {
  local t=$1
  shift
  wait_until "$t" _files_exist "$@"
}

# admin_lists ADMIN-URL NAME: does GET ADMIN/status list an origin named NAME?
admin_lists() {
  cx --max-time 3 "$1/status" 2>/dev/null | python3 -c '
import json, sys
try:
    names = [o.get("name") for o in json.load(sys.stdin).get("origins", [])]
except Exception:
    sys.exit(1)
sys.exit(0 if sys.argv[1] in names else 1)' "$2"
}

# ---------------------------------------------------------------- processes
# Daemons are started in their own session (setsid) and orphaned, so they survive
# the case that started them; their PIDs are recorded in $PIDS/NAME and in
# $RUN/all-pids, which run.sh uses to stop everything and to check for strays.

# pid_alive PID: running and not a zombie
pid_alive() {
  local st
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pid_dead() { ! pid_alive "$1"; }

proc_pid() { cat "$PIDS/$1" 2>/dev/null || true; }
proc_alive() { pid_alive "$(proc_pid "$1")"; }

# start_bg NAME LOGFILE CMD...: start CMD detached; its PID goes to $PIDS/NAME.
start_bg() {
  local name=$1 log=$2 pidf
  shift 2
  pidf=$PIDS/$name
  rm -f "$pidf" "$pidf.new"
  # shellcheck disable=SC2016 # $$ / $0 / $@ are for the inner bash
  (setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidf.new" "$@" </dev/null >>"$log" 2>&1 &)
  if ! wait_files 5 "$pidf.new"; then
    echo "start_bg: $name did not start" >&2
    return 1
  fi
  mv "$pidf.new" "$pidf"
  cat "$pidf" >>"$RUN/all-pids"
}

# stop_proc NAME [SIGNAL]: signal NAME's process group, wait (bounded) until it is gone,
# SIGKILL it if it lingers, forget its pid file.
stop_proc() {
  local name=$1 sig=${2:-TERM} pid
  pid=$(proc_pid "$name")
  [ -n "$pid" ] || return 0
  kill -"$sig" -- -"$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null
  kill -CONT -- -"$pid" 2>/dev/null || kill -CONT "$pid" 2>/dev/null # in case it was frozen (case 28)
  if ! wait_until 10 pid_dead "$pid"; then
    kill -KILL -- -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    wait_until 5 pid_dead "$pid"
  fi
  rm -f "$PIDS/$name"
}

# start_p NAME CERTS-DIR FRONT-PORT TUNNEL-PORT ADMIN-PORT [EXTRA-P-ARGS...]
# Starts a proxy and waits (bounded) until it has written its CA and token.
start_p() {
  local name=$1 certs=$2 fp=$3 tp=$4 ap=$5
  shift 5
  mkdir -p "$certs"
  start_bg "$name" "$LOGS/$name.log" "$P_BIN" \
    --listen "127.0.0.1:$fp" --tunnel-listen "127.0.0.1:$tp" --admin-listen "127.0.0.1:$ap" \
    --certs-dir "$certs" "$@" || return 1
  wait_files 20 "$certs/ca.pem" "$certs/token"
}

# start_c NAME CERTS-DIR TUNNEL-PORT ORIGIN-NAME [EXTRA-C-ARGS...]   (--root or --upstream in EXTRA)
start_c() {
  local name=$1 certs=$2 tp=$3 oname=$4
  shift 4
  start_bg "$name" "$LOGS/$name.log" "$C_BIN" \
    --proxy "$PROXY_HOST:$tp" --name "$oname" --certs-dir "$certs" "$@"
}

# The main pair (serves the fixtures): used by run.sh and by the restart cases.
start_main_p() { start_p p-main "$CERTS" "$FRONT_PORT" "$TUNNEL_PORT" "$ADMIN_PORT"; }
start_main_c() { start_c c-main "$CERTS" "$TUNNEL_PORT" "$MAIN_ORIGIN" --root "$FIX"; }

# log_tail FILE: last lines of a log, for diagnostics on stderr-like output
log_tail() {
  local f=$1
  [ -f "$f" ] || return 0
  echo "---- last lines of $f"
  tail -n "${2:-15}" "$f" | sed 's/^/    /'
}

# ---------------------------------------------------------------- abuse suite (abuse/*.sh)
# Each abuse case starts its own p/c pair, attacks it from 127.0.0.2 and up (the proxy caps
# connections and streams per client address, so attacker and victim must differ), and
# checks the victim's outcome (victim_get, from 127.0.0.1), that the tunnel survived
# (tunnel_id before and after) and memory (VmRSS/VmHWM of p and c).

ABUSE_CERTS=$WORK/certs-abuse # shared by every abuse pair (a CA per pair is wasted work)

# h2_python: a python3 that can import h2, hpack and hyperframe (Debian's python3-h2). A
# python3 first on PATH (pyenv, a venv) may not see Debian's packages; /usr/bin/python3 does.
h2_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import h2, hpack, hyperframe' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

# require_h2: sets PY_H2 to such a python, or skips the whole case (and exits it).
require_h2() {
  if ! PY_H2=$(h2_python); then
    skip "python3-h2 is not installed (apt-get install python3-h2): this case speaks raw HTTP/2"
    exit 0
  fi
}

# free_ports N: N free loopback ports into the array PORTS
free_ports() { mapfile -t PORTS < <(python3 "$TOOLS/freeports.py" "$1"); }

# make_file FILE MIB: MIB MiB of deterministic bytes
make_file() {
  python3 -c 'import hashlib, sys; sys.stdout.buffer.write(hashlib.shake_256(b"revmux-abuse").digest(int(sys.argv[1]) << 20))' "$2" >"$1"
}

# make_root DIR: a served root with small.txt (6 bytes) and big.bin (10 MiB)
make_root() {
  mkdir -p "$1"
  printf 'small\n' >"$1/small.txt"
  make_file "$1/big.bin" 10
}

# jfield FILE KEY[.KEY...]: a field of the (last) JSON object in FILE; '' when missing
jfield() {
  python3 - "$1" "$2" <<'PY'
import json, sys
try:
    lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
    v = json.loads(lines[-1])
    for k in sys.argv[2].split("."):
        v = v[k]
    print(json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v))
except Exception:
    print("")
PY
}

# tunnel_id ADMIN-URL NAME: tunnel_id of origin NAME in /status ('' when not listed)
tunnel_id() {
  cx --max-time 3 "$1/status" 2>/dev/null | python3 -c '
import json, sys
try:
    ids = [o["tunnel_id"] for o in json.load(sys.stdin)["origins"] if o["name"] == sys.argv[1]]
    print(ids[0] if ids else "")
except Exception:
    print("")' "$2"
}

# check_tunnel_survived LABEL ADMIN-URL NAME ID-BEFORE: the same tunnel still serves NAME
check_tunnel_survived() {
  local now
  now=$(tunnel_id "$2" "$3")
  if [ -n "$4" ] && [ "$now" = "$4" ]; then
    pass "$1: the tunnel survived (tunnel_id $now before and after)"
  else
    fail "$1: the tunnel survived" "tunnel_id $4" "${now:-no tunnel listed} ($(grep -c 'tunnel lost' "$LOGS/p-$3.log" 2>/dev/null) 'tunnel lost' in p's log)"
  fi
}

# start_pair TAG [P-ARGS...] [-- C-ARGS...]: p-TAG and c-TAG (origin name TAG) on free ports;
# c gets C-ARGS (default: --root $T/root). Sets PAIR_FRONT_PORT, PAIR_TUNNEL_PORT,
# PAIR_ADMIN_PORT, PAIR_FRONT (http://...), PAIR_ADMIN and PAIR_TID (the first tunnel_id).
# Records a FAIL and returns 1 when p does not start or c does not connect within 20 s.
start_pair() {
  local tag=$1 pargs=() cargs=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    pargs+=("$1")
    shift
  done
  [ "${1:-}" = -- ] && shift
  cargs=("$@")
  [ ${#cargs[@]} -gt 0 ] || cargs=(--root "$T/root")
  start_proxy "$tag" "${pargs[@]}" || return 1
  start_origin "$tag" "$PAIR_TUNNEL_PORT" "${cargs[@]}"
}

# start_proxy TAG [P-ARGS...]: only p-TAG (sets the PAIR_* ports and URLs); 1 if it does not
# come up (a FAIL is recorded with its last log line: e.g. a flag it does not know yet).
_admin_up() { [ "$(http_code "$1/status" --max-time 2)" = 200 ]; }
_p_up_or_dead() { _admin_up "$2" || pid_dead "$(proc_pid "$1")"; }
start_proxy() {
  local tag=$1
  shift
  free_ports 3
  PAIR_FRONT_PORT=${PORTS[0]} PAIR_TUNNEL_PORT=${PORTS[1]} PAIR_ADMIN_PORT=${PORTS[2]}
  PAIR_FRONT=http://127.0.0.1:$PAIR_FRONT_PORT PAIR_ADMIN=http://127.0.0.1:$PAIR_ADMIN_PORT
  PAIR_TID=
  mkdir -p "$ABUSE_CERTS"
  start_bg "p-$tag" "$LOGS/p-$tag.log" "$P_BIN" --listen "127.0.0.1:$PAIR_FRONT_PORT" \
    --tunnel-listen "127.0.0.1:$PAIR_TUNNEL_PORT" --admin-listen "127.0.0.1:$PAIR_ADMIN_PORT" \
    --certs-dir "$ABUSE_CERTS" "$@" || true
  wait_until 20 _p_up_or_dead "p-$tag" "$PAIR_ADMIN"
  if ! _admin_up "$PAIR_ADMIN"; then
    fail "p-$tag starts${*:+ with $*}" "its admin port answering" \
      "$(oneline "$(grep -m1 -i 'error' "$LOGS/p-$tag.log" 2>/dev/null || tail -n 2 "$LOGS/p-$tag.log" 2>/dev/null)")"
    return 1
  fi
}

# start_origin TAG TUNNEL-PORT C-ARGS...: c-TAG (origin name TAG) and wait until p lists it.
start_origin() {
  local tag=$1 tp=$2
  shift 2
  start_c "c-$tag" "$ABUSE_CERTS" "$tp" "$tag" "$@" || true
  if ! wait_until 20 admin_lists "$PAIR_ADMIN" "$tag"; then
    fail "c-$tag connects to p-$tag within 20 s" "listed in /status" "$(oneline "$(tail -n 3 "$LOGS/c-$tag.log" 2>/dev/null)")"
    return 1
  fi
  PAIR_TID=$(tunnel_id "$PAIR_ADMIN" "$tag")
}

# start_evil TAG: tools/evil_upstream.py as svc-TAG, its files in $T/evil; sets EVIL_PORT and
# EVIL_DIR. Then: start_pair TAG -- --upstream "http://127.0.0.1:$EVIL_PORT"
start_evil() {
  EVIL_DIR=$T/evil
  mkdir -p "$EVIL_DIR"
  rm -f "$T/evil.port"
  start_bg "svc-$1" "$LOGS/svc-$1.log" python3 "$TOOLS/evil_upstream.py" --port-file "$T/evil.port" --dir "$EVIL_DIR"
  if ! wait_files 10 "$T/evil.port"; then
    fail "the misbehaving service starts" "its port" "$(oneline "$(tail -n 3 "$LOGS/svc-$1.log")")"
    return 1
  fi
  EVIL_PORT=$(cat "$T/evil.port")
}

# status_sum ADMIN-URL FIELD: FIELD of /status summed over the listed origins (-1: no answer)
status_sum() {
  cx --max-time 3 "$1/status" 2>/dev/null | python3 -c '
import json, sys
try:
    print(sum(o[sys.argv[1]] for o in json.load(sys.stdin)["origins"]))
except Exception:
    print(-1)' "$2"
}

# settle ADMIN-URL: wait (at most 5 s) until no more bytes come from the origins, i.e. every
# buffer and window a stalled attacker can fill is full
settle() {
  local prev=-2 cur _
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    cur=$(status_sum "$1" bytes_from_origin)
    [ "$cur" = "$prev" ] && return 0
    prev=$cur
    sleep 0.5
  done
}

# check_runs LABEL FILE: a report of `h2abuse.py conformance`: every run must have ended right
check_runs() {
  local runs passed
  runs=$(jfield "$2" runs) passed=$(jfield "$2" passed)
  if [ -n "$runs" ] && [ "$passed" = "$runs" ]; then
    pass "$1: $passed of $runs runs ($(jfield "$2" outcomes))"
  else
    fail "$1" "${runs:-all} of ${runs:-all} runs as RFC 9113 says" "${passed:-?} of ${runs:-?}: $(jfield "$2" outcomes) $(tail -c 150 "${2%.out}.err" 2>/dev/null)"
  fi
}

# stop_pair TAG: stop c-TAG and p-TAG
stop_pair() {
  stop_proc "c-$1"
  stop_proc "p-$1"
}

# mem_kib NAME FIELD: FIELD (VmRSS, VmHWM: the peak) of process NAME in KiB ('' if gone)
mem_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$(proc_pid "$1")/status" 2>/dev/null; }

# settle_rss NAME: wait (at most 6 s) until NAME's VmRSS stops moving (under 1 MiB in 0.3 s)
settle_rss() {
  local prev=0 cur _
  for _ in $(seq 20); do
    cur=$(mem_kib "$1" VmRSS)
    [ -n "$cur" ] || return 1
    [ $((cur - prev)) -lt 1024 ] && [ $((prev - cur)) -lt 1024 ] && return 0
    prev=$cur
    sleep 0.3
  done
}

# check_peak_rss LABEL NAME MAX-MIB: NAME's peak RSS (VmHWM, over its whole life) stayed under
check_peak_rss() {
  local kib
  kib=$(mem_kib "$2" VmHWM)
  if [ -n "$kib" ] && [ "$kib" -lt $(($3 * 1024)) ]; then
    pass "$1: peak RSS of $2 $((kib / 1024)) MiB (limit $3 MiB)"
  else
    fail "$1: peak RSS of $2 under $3 MiB" "< $3 MiB" "$(if [ -n "$kib" ]; then echo "$((kib / 1024)) MiB"; else echo "process gone"; fi)"
  fi
}

# stall_downloads N URL MAX-SECONDS: N clients that start downloading URL and stop reading
# (curl writing into a FIFO that nobody reads: a paused player); their pids go into STALLED.
# stop_stalled ends them (set as the EXIT trap, so a failing case does not leave them).
STALLED=()
stop_stalled() {
  [ ${#STALLED[@]} -gt 0 ] || return 0
  kill "${STALLED[@]}" 2>/dev/null
  wait "${STALLED[@]}" 2>/dev/null
  STALLED=()
}
stall_downloads() {
  local n=$1 url=$2 max=$3 i fifo
  trap stop_stalled EXIT
  for ((i = 0; i < n; i++)); do
    fifo=$T/stall.$RANDOM.$i
    mkfifo "$fifo"
    # shellcheck disable=SC2217 # the point: hold the FIFO open and never read it, so curl blocks
    sleep "$((max + 20))" <"$fifo" &
    STALLED+=($!)
    "${CURL[@]}" --max-time "$max" -o "$fifo" "$url" 2>/dev/null &
    STALLED+=($!)
  done
}

# victim_get LABEL URL FILE MAX-SECONDS [CURL-ARGS...]: an ordinary client from 127.0.0.1:
# the GET must be 200, byte-exact with FILE, within MAX-SECONDS (whole seconds or a decimal).
# Sets V_SECS (curl's time_total).
victim_get() {
  local label=$1 url=$2 file=$3 max=$4 name out rc status size
  shift 4
  name=victim.$RANDOM
  out=$("${CURL[@]}" --interface 127.0.0.1 --max-time "$(awk -v m="$max" 'BEGIN { print int(m + 3) }')" \
    -o "$T/$name.body" -w '%{http_code} %{time_total} %{size_download}' "$@" "$url" 2>"$T/$name.err")
  rc=$?
  status=000 V_SECS='?' size=0
  read -r status V_SECS size <<<"$out"
  if [ "$rc" = 0 ] && [ "$status" = 200 ] && [ "$(sha "$T/$name.body")" = "$(sha "$file")" ] &&
    awk -v s="$V_SECS" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
    pass "$label: 200, $size bytes byte-exact in ${V_SECS} s (limit $max s)"
  else
    fail "$label" "200, $(fsize "$file") bytes byte-exact within $max s" \
      "status $status, $size bytes in $V_SECS s, curl exit $rc $(head -c 120 "$T/$name.err")"
  fi
  rm -f "$T/$name.body"
}

# Attack tools run in the background: attack NAME CMD... (stdout to $T/NAME.out, stderr to
# $T/NAME.err); attack_ready NAME SECONDS waits for $T/NAME.ready; wait_attack NAME SECONDS
# for the tool to finish by itself; stop_attacks ends them all (SIGTERM: they print their
# report and exit).
declare -A ATTACK_PID
attack() {
  local name=$1
  shift
  rm -f "$T/$name.ready" "$T/$name.out"
  "$@" >"$T/$name.out" 2>"$T/$name.err" &
  ATTACK_PID[$name]=$!
}
attack_ready() {
  if ! wait_files "$2" "$T/$1.ready"; then
    fail "attack $1 in place within $2 s" "its ready file" "$(oneline "$(tail -c 300 "$T/$1.err")")"
    return 1
  fi
}
wait_attack() {
  local pid=${ATTACK_PID[$1]:-}
  [ -n "$pid" ] || return 0
  wait_until "$2" pid_dead "$pid" || kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  unset "ATTACK_PID[$1]"
}
_all_dead() {
  local p
  for p in "$@"; do pid_alive "$p" && return 1; done
  return 0
}
stop_attacks() {
  local pids=("${ATTACK_PID[@]}")
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null
  wait_until 5 _all_dead "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  ATTACK_PID=()
}
