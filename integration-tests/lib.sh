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
