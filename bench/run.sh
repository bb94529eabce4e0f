#!/usr/bin/env bash
# revmux benchmark: the tunnel (front end -> p -> TLS/HTTP/2 tunnel -> c -> files) against
# nginx serving the same files directly on loopback (the physical limit of this machine).
#
#   ./bench/run.sh                 (or `make bench`, which builds first)
#   BENCH_SECS=30 ./bench/run.sh   longer measurements (default 10 s each)
#   BENCH_THREADS=0 ./bench/run.sh  p and c with their default worker count (one per core);
#                                   the default here is 1 each: p, c and the load generator
#                                   share this machine's cores
#   P_BIN=... C_BIN=...            other binaries than ./bin/p and ./bin/c
#
# Tests, each against direct nginx and through p+c, in the same run:
#   1 KiB and 64 KiB GETs with wrk (HTTP/1.1), 1 KiB GETs with h2load (h2c prior knowledge),
#   256 MiB downloads with curl (median of 3); peak RSS of p and c; server CPU-seconds per GiB.
# Prints a table of direct / tunnel / ratio and the targets, and writes it as Markdown to
# bench/.work/results.md (raw tool outputs and daemon logs stay in bench/.work/).
#
# Exit status: 0 when everything ran, whether or not the targets were met; 1 when something
# broke (a daemon failed to start or died, a tool failed, errors or non-2xx responses, bad bytes).
# shellcheck disable=SC2317 # functions run from traps and through wait_until look unreachable
set -euo pipefail
# Character-wise string lengths for the table (≥, ×), when the locale exists.
if locale -a 2>/dev/null | grep -qixE 'c\.utf-?8'; then export LC_ALL=C.UTF-8; fi

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
WORK=$BENCH_DIR/.work
FILES=$WORK/files
RAW=$WORK/raw
LOGS=$WORK/logs
RUNDIR=$WORK/run
NGX=$WORK/nginx
CERTS=$WORK/certs
BIN=$WORK/bin
RESULTS_MD=$WORK/results.md

SECS=${BENCH_SECS:-10}
THREADS=${BENCH_THREADS:-1}
WARM=${BENCH_WARMUP_SECS:-2}
DL_RUNS=3
WRK_ARGS=(-t2 -c64)
H2_ARGS=(-t2 -c16 -m8)
H2_INFLIGHT=$((16 * 8))
CMDLINE="BENCH_SECS=$SECS BENCH_THREADS=$THREADS${P_BIN:+ P_BIN=$P_BIN}${C_BIN:+ C_BIN=$C_BIN} $0${*:+ $*}"
[ -n "${MAKELEVEL:-}" ] && CMDLINE="make bench, which ran: $CMDLINE"

# Targets: ratio tunnel/direct must be >= these; p+c peak RSS below RSS_TARGET_MIB.
TARGET_1K=0.45
TARGET_64K=0.30
TARGET_DL=0.30
RSS_TARGET_MIB=48

F1K=1k.bin
F64K=64k.bin
FBIG=256m.bin
SIZE_1K=1024
SIZE_64K=65536
SIZE_BIG=$((256 * 1024 * 1024))

log() { printf '== %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

case $SECS in '' | *[!0-9]* | 0) die "BENCH_SECS must be a positive integer (got '$SECS')" ;; esac
case $THREADS in '' | *[!0-9]*) die "BENCH_THREADS must be a whole number (got '$THREADS')" ;; esac
case $WARM in '' | *[!0-9]* | 0) die "BENCH_WARMUP_SECS must be a positive integer (got '$WARM')" ;; esac

# ---------------------------------------------------------------- processes and cleanup

declare -A PID=()   # name -> pid (= process group id: every daemon runs in its own session)
STARTED=()          # pids, in start order
TMP_POLICY_RC=''    # a policy-rc.d we created for the duration of apt-get install
ERRORS=()           # what broke (errors, non-2xx): fails the run after the report
ERRORS_PRINTED=0

stop_all() {
  local pid deadline
  for pid in "${STARTED[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + 10))
  for pid in "${STARTED[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "pid $pid still running 10 s after SIGTERM: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  STARTED=()
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "$TOOL_PID" ] && kill -TERM "$TOOL_PID" 2>/dev/null && wait "$TOOL_PID" 2>/dev/null
  [ -n "$TMP_POLICY_RC" ] && rm -f "$TMP_POLICY_RC"
  stop_all
  if [ "$rc" != 0 ] && [ "$ERRORS_PRINTED" = 0 ] && [ "${#ERRORS[@]}" -gt 0 ]; then
    printf 'ERROR: %s\n' "${ERRORS[@]}" >&2
  fi
  if [ "$rc" != 0 ]; then
    echo "benchmark FAILED (exit $rc); logs in $LOGS, raw tool outputs in $RAW" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "interrupted: stopping everything" >&2; exit 130' INT
trap 'echo "terminated: stopping everything" >&2; exit 143' TERM

now_ms() {
  local t=${EPOCHREALTIME/./}
  echo $((t / 1000))
}

# wait_until TIMEOUT-SECONDS CMD...: poll CMD every 0.1 s; 1 on timeout.
wait_until() {
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  until "$@"; do
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st:0:1}" != Z ]
}

# start_bg NAME CMD...: run CMD in a session of its own, output to $LOGS/NAME.log.
start_bg() {
  local name=$1 pidf=$RUNDIR/$1.pid
  shift
  rm -f "$pidf" "$pidf.tmp"
  # shellcheck disable=SC2016 # $$ $0 $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
    </dev/null >"$LOGS/$name.log" 2>&1 &
  wait_until 5 test -s "$pidf" || die "$name did not start (log: $LOGS/$name.log)"
  PID[$name]=$(<"$pidf")
  STARTED+=("${PID[$name]}")
}

# run_tool OUT LIMIT-SECONDS CMD...: CMD (a load generator) with its output in OUT, bounded by
# LIMIT. It runs in the background and we `wait` for it: a trapped Ctrl-C or TERM then stops
# the script at once (in the foreground, wrk catches SIGINT and exits 0, and bash would carry on).
TOOL_PID=''
run_tool() {
  local out=$1 limit=$2 rc=0
  shift 2
  timeout -k 5 "$limit" "$@" >"$out" 2>&1 &
  TOOL_PID=$!
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=''
  return "$rc"
}

log_tail() {
  [ -f "$1" ] || return 0
  echo "---- last lines of $1" >&2
  tail -n 20 "$1" | sed 's/^/    /' >&2
}

# check_alive NAME...: every named daemon must still be running.
check_alive() {
  local n
  for n in "$@"; do
    if ! alive "${PID[$n]}"; then
      log_tail "$LOGS/$n.log"
      die "$n (pid ${PID[$n]}) is no longer running"
    fi
  done
}

# pgroup_pids PGID: pids of the live processes in that process group (nginx master + workers).
pgroup_pids() {
  local f s a
  for f in /proc/[0-9]*/stat; do
    s=$(cat "$f" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a a <<<"$s"
    [ "${a[2]}" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}

# cpu_ticks PID...: utime+stime (clock ticks) summed over the processes (all their threads).
cpu_ticks() {
  local t=0 pid s a
  for pid in "$@"; do
    s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a a <<<"$s"
    t=$((t + a[11] + a[12]))
  done
  echo "$t"
}

# vm_hwm_kib PID...: peak RSS (VmHWM, KiB) summed over the processes.
vm_hwm_kib() {
  local t=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || true
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

CLK_TCK=$(getconf CLK_TCK)

# snap VAR: CPU ticks of nginx, p, c and of the whole machine, and the wall clock.
snap() {
  local -n _s=$1
  local cpu user nice sys idle iow irq sirq steal _rest
  read -r cpu user nice sys idle iow irq sirq steal _rest </proc/stat
  # shellcheck disable=SC2034 # _s is a nameref
  _s=(
    [ngx]=$(cpu_ticks "${NGX_PIDS[@]}")
    [p]=$(cpu_ticks "${PID[p]}")
    [c]=$(cpu_ticks "${PID[c]}")
    [busy]=$((user + nice + sys + irq + sirq + steal))
    [all]=$((user + nice + sys + idle + iow + irq + sirq + steal))
    [ms]=$(now_ms)
  )
}

# pct A B KEY: CPU of KEY between snapshots A and B, in % of one core.
pct() {
  local -n _a=$1 _b=$2
  awk -v d=$((_b[$3] - _a[$3])) -v ms=$((_b[ms] - _a[ms])) -v hz="$CLK_TCK" \
    'BEGIN { printf "%.0f", (ms > 0 ? 100 * d / hz / (ms / 1000) : 0) }'
}
machine_busy() {
  local -n _a=$1 _b=$2
  awk -v b=$((_b[busy] - _a[busy])) -v t=$((_b[all] - _a[all])) \
    'BEGIN { printf "%.0f", (t > 0 ? 100 * b / t : 0) }'
}

# ---------------------------------------------------------------- tools

install_missing() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  command -v curl >/dev/null || need+=(curl)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v setsid >/dev/null || need+=(util-linux)
  [ "${#need[@]}" = 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing tools (${need[*]}): install them (apt-get install ${need[*]}) or run as root"
  log "installing ${need[*]}"
  # Installing nginx must not start a system nginx on port 80: no service starts during install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    TMP_POLICY_RC=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# temporary, from revmux bench/run.sh: no service starts during its apt-get install\nexit 101\n' \
      >"$TMP_POLICY_RC"
    chmod 755 "$TMP_POLICY_RC"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$LOGS/apt.log" 2>&1 || { log_tail "$LOGS/apt.log"; die "apt-get update failed"; }
  apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$LOGS/apt.log" 2>&1 ||
    { log_tail "$LOGS/apt.log"; die "apt-get install ${need[*]} failed"; }
  if [ -n "$TMP_POLICY_RC" ]; then
    rm -f "$TMP_POLICY_RC"
    TMP_POLICY_RC=''
  fi
}

mkdir -p "$WORK" "$FILES" "$RAW" "$LOGS" "$RUNDIR" "$NGX/tmp" "$CERTS" "$BIN"
rm -f "$RAW"/* "$LOGS"/*.log "$RUNDIR"/* "$RESULTS_MD"
install_missing
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

# The binaries under test, copied: a concurrent `make build` must neither change them during
# the run nor fail on "text file busy" because we are running ./bin/p.
P_BIN=${P_BIN:-$REPO/bin/p}
C_BIN=${C_BIN:-$REPO/bin/c}
for b in "$P_BIN" "$C_BIN"; do
  [ -x "$b" ] || die "$b is missing: run 'make build' (or 'make bench') at the repo root"
done
rm -f "$BIN/p" "$BIN/c"
cp "$P_BIN" "$BIN/p"
cp "$C_BIN" "$BIN/c"

# ---------------------------------------------------------------- files

# make_file NAME SIZE: random content, kept across runs when the size is right.
make_file() {
  local f=$FILES/$1
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" = "$2" ]; then return 0; fi
  log "generating $f ($2 bytes)"
  head -c "$2" /dev/urandom >"$f.tmp"
  mv "$f.tmp" "$f"
}
make_file "$F1K" "$SIZE_1K"
make_file "$F64K" "$SIZE_64K"
make_file "$FBIG" "$SIZE_BIG"
chmod 755 "$WORK" "$FILES"
chmod 644 "$FILES"/*

# ---------------------------------------------------------------- ports

port_in_use() {
  if command -v ss >/dev/null; then
    [ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
# Free ports below Linux's ephemeral range, so no client connection of the run can hold one.
PORTS=()
pick_ports() {
  local p tries=0 taken=' '
  while [ "${#PORTS[@]}" -lt "$1" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 2000 ] || die "no free loopback ports found"
    p=$((20000 + RANDOM % 12000))
    [[ $taken == *" $p "* ]] && continue
    port_in_use "$p" && continue
    PORTS+=("$p")
    taken+="$p "
  done
}
pick_ports 5
NGX_PORT=${PORTS[0]} NGX_H2_PORT=${PORTS[1]} FRONT_PORT=${PORTS[2]} TUN_PORT=${PORTS[3]} ADMIN_PORT=${PORTS[4]}
DIRECT=http://127.0.0.1:$NGX_PORT
DIRECT_H2=http://127.0.0.1:$NGX_H2_PORT
TUNNEL=http://127.0.0.1:$FRONT_PORT

# http_code URL [CURL-ARGS...]: the status code, 000 on a transport error
http_code() { curl -s --noproxy '*' --max-time 3 -o /dev/null -w '%{http_code}' "${@:2}" "$1" 2>/dev/null || true; }
code_is() { [ "$(http_code "$2")" = "$1" ]; }

# ---------------------------------------------------------------- nginx (direct)

NGX_VER=$("$NGINX_BIN" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
H2_DIRECT=1
if ! "$NGINX_BIN" -V 2>&1 | grep -q -- '--with-http_v2_module'; then
  H2_DIRECT=0
  warn "this nginx has no HTTP/2 module: no direct h2load baseline"
fi
render_nginx_conf() {
  local t h2='' user=''
  # (the template's comment lines name the placeholders: leave them out)
  t="# generated by bench/run.sh from bench/nginx.conf.template"$'\n'$(grep -v '^#' "$BENCH_DIR/nginx.conf.template")
  [ "$(id -u)" = 0 ] && user='user root root;'
  if [ "$H2_DIRECT" = 1 ]; then
    # `listen ... http2` before 1.25.1, the `http2` directive since.
    if printf '%s\n' 1.25.1 "$NGX_VER" | sort -V -C; then
      h2=$'    server {\n        listen 127.0.0.1:@H2PORT@;\n        http2 on;\n        root @ROOT@;\n    }'
    else
      h2=$'    server {\n        listen 127.0.0.1:@H2PORT@ http2;\n        root @ROOT@;\n    }'
    fi
  fi
  t=${t//@H2_SERVER@/$h2}
  t=${t//@USER_LINE@/$user}
  t=${t//@PREFIX@/$NGX}
  t=${t//@ROOT@/$FILES}
  t=${t//@PORT@/$NGX_PORT}
  t=${t//@H2PORT@/$NGX_H2_PORT}
  printf '%s\n' "$t" >"$NGX/nginx.conf"
}
render_nginx_conf
mkdir -p "$NGX/tmp"
NGX_ARGS=(-p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log")
"$NGINX_BIN" -t -q "${NGX_ARGS[@]}" >"$LOGS/nginx-t.log" 2>&1 ||
  { log_tail "$LOGS/nginx-t.log"; die "nginx rejects $NGX/nginx.conf"; }
log "nginx $NGX_VER (direct): $DIRECT$([ "$H2_DIRECT" = 1 ] && echo ", h2c $DIRECT_H2")"
start_bg nginx "$NGINX_BIN" "${NGX_ARGS[@]}"
wait_until 20 code_is 200 "$DIRECT/$F1K" ||
  { log_tail "$NGX/error.log"; log_tail "$LOGS/nginx.log"; die "nginx not ready: GET $DIRECT/$F1K -> $(http_code "$DIRECT/$F1K")"; }
mapfile -t NGX_PIDS < <(pgroup_pids "${PID[nginx]}")
[ "${#NGX_PIDS[@]}" -ge 2 ] || die "nginx: expected a master and workers, found pids: ${NGX_PIDS[*]}"

# ---------------------------------------------------------------- p + c (tunnel)

log "p (front end $TUNNEL, tunnel :$TUN_PORT, admin :$ADMIN_PORT) + c (serving $FILES)"
start_bg p "$BIN/p" --listen "127.0.0.1:$FRONT_PORT" --tunnel-listen "127.0.0.1:$TUN_PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --certs-dir "$CERTS" --threads "$THREADS"
wait_until 20 test -s "$CERTS/ca.pem" -a -s "$CERTS/token" ||
  { log_tail "$LOGS/p.log"; die "p did not write $CERTS/ca.pem and $CERTS/token"; }
start_bg c "$BIN/c" --proxy "localhost:$TUN_PORT" --root "$FILES" --certs-dir "$CERTS" --name bench --threads "$THREADS"
wait_until 30 code_is 200 "$TUNNEL/" ||
  { log_tail "$LOGS/p.log"; log_tail "$LOGS/c.log"; die "tunnel not ready: GET $TUNNEL/ -> $(http_code "$TUNNEL/")"; }
check_alive nginx p c

# Both paths must serve the exact bytes before anything is timed.
for f in "$F1K" "$F64K"; do
  for base in "$DIRECT" "$TUNNEL"; do
    curl -sS --noproxy '*' --max-time 10 -o "$RUNDIR/check.body" "$base/$f" ||
      die "GET $base/$f failed"
    cmp -s "$RUNDIR/check.body" "$FILES/$f" || die "GET $base/$f: the body differs from $FILES/$f"
  done
done
h2c_ok() { [ "$(http_code "$1" --http2-prior-knowledge)" = 200 ]; }
if [ "$H2_DIRECT" = 1 ]; then
  wait_until 5 h2c_ok "$DIRECT_H2/$F1K" || die "nginx h2c listener: GET $DIRECT_H2/$F1K (h2c) failed"
fi
h2c_ok "$TUNNEL/$F1K" || die "p front end: GET $TUNNEL/$F1K over h2c prior knowledge failed"

# ---------------------------------------------------------------- measurements

declare -A R=()     # results: KEY -> number
declare -A CPU=()   # per-measurement CPU notes: LABEL -> text

# to_ms VALUE-WITH-UNIT (wrk: 250.00us, 1.23ms, 2.00s, 1.00m)
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
    if (f < 0) { print "nan"; exit } printf "%.3f", n * f }'
}

# wrk_check FILE LABEL: errors and non-2xx in a wrk output go to ERRORS.
wrk_check() {
  local f=$1 label=$2 non2xx sock
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
  sock=$(sed -n 's/^ *Socket errors: *//p' "$f")
  [ -n "$non2xx" ] && ERRORS+=("$label: wrk saw $non2xx non-2xx/3xx responses ($f)")
  [ -n "$sock" ] && ERRORS+=("$label: wrk socket errors: $sock ($f)")
  grep -q '^Requests/sec:' "$f" || ERRORS+=("$label: wrk printed no result ($f)")
  return 0
}

# The tunnel must stay up for the whole run: p's admin port tells the current tunnel's id (a new
# id = the tunnel dropped and c reconnected) and counts the requests p answered itself with an
# error (no origin, origin failed). Both are checked before and after every tunnel test, against
# the values of the previous check, so a drop between two tests is caught too.
admin_get() { curl -s --noproxy '*' --max-time 3 "http://127.0.0.1:$ADMIN_PORT$1" 2>/dev/null || true; }
tunnel_state() {
  local id failed
  id=$(admin_get /status | sed -n 's/.*"tunnel_id": *\([0-9]*\).*/\1/p' | head -n 1)
  failed=$(admin_get /metrics | awk '/^revmux_failed_requests_total/ { s += $NF } END { print s + 0 }')
  echo "${id:-none} $failed"
}
tunnel_up() { admin_get /status | grep -q '"tunnel_id"'; }
TUNNEL_STATE=''
# check_tunnel WHEN: wait (bounded, asking the admin port: a request through a tunnel that is
# reconnecting would count as a failed one) until p has a tunnel, then compare with the
# previous check; a change goes to ERRORS.
check_tunnel() {
  local when=$1 id0 f0 id1 f1 why now
  if ! wait_until 30 tunnel_up; then
    log_tail "$LOGS/p.log"
    log_tail "$LOGS/c.log"
    die "$when: p has had no tunnel for 30 s"
  fi
  now=$(tunnel_state)
  if [ -n "$TUNNEL_STATE" ]; then
    read -r id0 f0 <<<"$TUNNEL_STATE"
    read -r id1 f1 <<<"$now"
    if [ "$id0" != "$id1" ]; then
      why=$(grep -E ' (WARN|ERROR) ' "$LOGS/c.log" | grep -v 'tunnel lost' | tail -n 1 | sed 's/^[^ ]* *//')
      ERRORS+=("$when: the tunnel dropped and c reconnected (tunnel id $id0 -> $id1); c said: ${why:-see $LOGS/c.log}")
    fi
    if [ "$f0" != "$f1" ]; then
      ERRORS+=("$when: p answered $((f1 - f0)) front-end requests itself with an error (revmux_failed_requests_total; see $LOGS/p.log)")
    fi
  fi
  TUNNEL_STATE=$now
  return 0
}
# tunnel_ready WHEN: both alive, check_tunnel, a request goes through (bounded wait: p may not
# have noticed yet that a tunnel dropped), and check_tunnel again for anything that happened meanwhile.
tunnel_ready() {
  check_alive p c
  check_tunnel "$1"
  if ! wait_until 30 code_is 200 "$TUNNEL/"; then
    log_tail "$LOGS/p.log"
    log_tail "$LOGS/c.log"
    die "$1: p has a tunnel but GET $TUNNEL/ -> $(http_code "$TUNNEL/") for 30 s"
  fi
  check_tunnel "$1"
}

# measure_wrk KEY SIDE URL: warm-up, then the timed run; R[KEY.SIDE.{rps,p50,p99}].
measure_wrk() {
  local key=$1 side=$2 url=$3 out=$RAW/$1.$2.wrk.txt label="$1 $2"
  local -A s0 s1
  log "$label: wrk ${WRK_ARGS[*]} -d${SECS}s --latency $url"
  [ "$side" = tunnel ] && tunnel_ready "before $label (after the previous test)"
  run_tool "$RAW/$1.$2.warmup.txt" $((WARM + 30)) wrk "${WRK_ARGS[@]}" -d"${WARM}s" "$url" ||
    ERRORS+=("$label: wrk warm-up failed (exit $?)")
  wrk_check "$RAW/$1.$2.warmup.txt" "$label (warm-up)"
  [ "$side" = tunnel ] && tunnel_ready "$label (warm-up)"
  snap s0
  run_tool "$out" $((SECS + 60)) wrk "${WRK_ARGS[@]}" -d"${SECS}s" --latency "$url" ||
    ERRORS+=("$label: wrk failed (exit $?)")
  snap s1
  wrk_check "$out" "$label"
  [ "$side" = tunnel ] && check_tunnel "$label"
  R[$key.$side.rps]=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  R[$key.$side.p50]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  R[$key.$side.p99]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  record_cpu "$label" "$side" s0 s1
  printf '   %s req/s, p50 %s ms, p99 %s ms  (%s)\n' "${R[$key.$side.rps]:-?}" "${R[$key.$side.p50]:-?}" \
    "${R[$key.$side.p99]:-?}" "${CPU[$label]}"
}

record_cpu() {
  local label=$1 side=$2
  if [ "$side" = direct ]; then
    CPU[$label]="nginx $(pct "$3" "$4" ngx)%, machine busy $(machine_busy "$3" "$4")%"
  else
    CPU[$label]="p $(pct "$3" "$4" p)%, c $(pct "$3" "$4" c)%, machine busy $(machine_busy "$3" "$4")%"
  fi
}

# h2_check FILE LABEL STRICT: h2load's failures and non-2xx responses go to ERRORS.
# A timed run (-D) counts the streams still in flight when the clock stops as "failed" and
# "errored": the warm-up (STRICT=0) tolerates up to one per in-flight slot (-c x -m); the
# measured run is a fixed number of requests (-n), where every one must succeed.
h2_check() {
  local f=$1 label=$2 strict=$3 bad failed
  if ! grep -q '^requests:' "$f" || ! grep -q '^finished in' "$f"; then
    ERRORS+=("$label: h2load printed no result ($f)")
    return 0
  fi
  # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
  # status codes: N 2xx, N 3xx, N 4xx, N 5xx
  bad=$(awk '/^requests:/ { for (i = 2; i <= NF; i++) if ($i ~ /^(failed|errored|timeout)/ && $(i-1) > 0) printf "%s %s ", $(i-1), $i }
             /^status codes:/ { for (i = 2; i <= NF; i++) if ($i ~ /^[345]xx/ && $(i-1) > 0) printf "%s %s ", $(i-1), $i }' "$f")
  bad=${bad//,/}
  if [ "$strict" = 0 ] && [[ $bad != *xx* ]]; then
    failed=$(awk '/^requests:/ { for (i = 2; i <= NF; i++) if ($i ~ /^failed/) print $(i-1) }' "$f")
    [ "${failed:-0}" -le "$H2_INFLIGHT" ] && bad=''
  fi
  [ -n "$bad" ] && ERRORS+=("$label: h2load: ${bad% } ($f)")
  return 0
}

# measure_h2 SIDE URL: a timed warm-up gives the rate; the measured run makes rate x BENCH_SECS
# requests (so it lasts about BENCH_SECS) and must complete every one of them.
measure_h2() {
  local side=$1 url=$2 out=$RAW/h2.$1.h2load.txt label="h2 $1" warm_rps n
  local -A s0 s1
  [ "$side" = tunnel ] && tunnel_ready "before $label (after the previous test)"
  run_tool "$RAW/h2.$1.warmup.txt" $((WARM + 30)) h2load "${H2_ARGS[@]}" -D "$WARM" "$url" ||
    ERRORS+=("$label: h2load warm-up failed (exit $?)")
  h2_check "$RAW/h2.$1.warmup.txt" "$label (warm-up)" 0
  warm_rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$RAW/h2.$1.warmup.txt")
  n=$(awk -v r="${warm_rps:-0}" -v s="$SECS" -v m="$H2_INFLIGHT" 'BEGIN { n = int(r * s); print (n < m ? m : n) }')
  log "$label: h2load ${H2_ARGS[*]} -n $n $url (the warm-up's ${warm_rps:-?} req/s x ${SECS} s)"
  [ "$side" = tunnel ] && tunnel_ready "$label (warm-up)"
  snap s0
  run_tool "$out" $((3 * SECS + 60)) h2load "${H2_ARGS[@]}" -n "$n" "$url" ||
    ERRORS+=("$label: h2load failed (exit $?)")
  snap s1
  h2_check "$out" "$label" 1
  [ "$side" = tunnel ] && check_tunnel "$label"
  R[h2.$side.rps]=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
  record_cpu "$label" "$side" s0 s1
  printf '   %s req/s in %s  (%s)\n' "${R[h2.$side.rps]:-?}" "$(sed -n 's/^finished in \([^,]*\),.*/\1/p' "$out")" "${CPU[$label]}"
}

# download SIDE URL: prints the speed (bytes/s) of one 256 MiB GET; a bad one goes to ERRORS.
download() {
  local out code size speed
  out=$(curl -sS --noproxy '*' --max-time 300 -o /dev/null \
    -w '%{http_code} %{size_download} %{speed_download}' "$2" 2>>"$LOGS/curl.log") || true
  read -r code size speed <<<"$out"
  if [ "${code:-}" != 200 ] || [ "${size:-}" != "$SIZE_BIG" ]; then
    ERRORS+=("256 MiB $1: GET $2 -> HTTP ${code:-none}, ${size:-0} bytes (want 200, $SIZE_BIG; see $LOGS/curl.log)")
    echo 0
  else
    echo "$speed"
  fi
}

measure_download() {
  local side=$1 url=$2 i speeds=() ticks0 ticks1 label="256 MiB $1"
  local -A s0 s1
  log "$label: curl $url, warm-up + median of $DL_RUNS"
  [ "$side" = tunnel ] && tunnel_ready "before $label (after the previous test)"
  download "$side (warm-up)" "$url" >/dev/null
  snap s0
  for ((i = 0; i < DL_RUNS; i++)); do
    # (not in $(...): download appends to ERRORS)
    download "$side" "$url" >"$RUNDIR/speed"
    speeds+=("$(<"$RUNDIR/speed")")
  done
  snap s1
  [ "$side" = tunnel ] && check_tunnel "$label"
  R[dl.$side.runs]=$(printf '%s\n' "${speeds[@]}" | awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 / 1048576 }')
  R[dl.$side.mibs]=$(printf '%s\n' "${speeds[@]}" | sort -g | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1048576 }')
  if [ "$side" = direct ]; then
    ticks0=${s0[ngx]} ticks1=${s1[ngx]}
  else
    ticks0=$((s0[p] + s0[c])) ticks1=$((s1[p] + s1[c]))
  fi
  R[dl.$side.cpu]=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v gib="$(awk -v n="$DL_RUNS" -v s="$SIZE_BIG" 'BEGIN { print n * s / 1073741824 }')" \
    'BEGIN { printf "%.2f", t / hz / gib }')
  record_cpu "$label" "$side" s0 s1
  printf '   median %s MiB/s (runs: %s MiB/s), %s CPU-s/GiB  (%s)\n' "${R[dl.$side.mibs]}" "${R[dl.$side.runs]}" \
    "${R[dl.$side.cpu]}" "${CPU[$label]}"
}

# Other load on the machine (a concurrent build) skews every number: measure it first.
# shellcheck disable=SC2034 # filled by snap through a nameref
declare -A idle0 idle1
snap idle0
sleep 1
snap idle1
PRE_BUSY=$(machine_busy idle0 idle1)
if [ "$PRE_BUSY" -gt 15 ]; then
  warn "the machine was ${PRE_BUSY}% busy before the benchmark (another build or test?): expect noisy numbers"
fi

T_START=$SECONDS
measure_wrk k1 direct "$DIRECT/$F1K"
measure_wrk k1 tunnel "$TUNNEL/$F1K"
check_alive nginx p c
measure_wrk k64 direct "$DIRECT/$F64K"
measure_wrk k64 tunnel "$TUNNEL/$F64K"
check_alive nginx p c
if [ "$H2_DIRECT" = 1 ]; then measure_h2 direct "$DIRECT_H2/$F1K"; fi
measure_h2 tunnel "$TUNNEL/$F1K"
check_alive nginx p c
measure_download direct "$DIRECT/$FBIG"
measure_download tunnel "$TUNNEL/$FBIG"
check_alive nginx p c
tunnel_ready "after the last test"
T_MEASURE=$((SECONDS - T_START))

R[rss.tunnel.p]=$(vm_hwm_kib "${PID[p]}")
R[rss.tunnel.c]=$(vm_hwm_kib "${PID[c]}")
R[rss.tunnel]=$((${R[rss.tunnel.p]} + ${R[rss.tunnel.c]}))
R[rss.direct]=$(vm_hwm_kib "${NGX_PIDS[@]}")
log_warnings() { grep -cE ' (WARN|ERROR) ' "$LOGS/$1.log" 2>/dev/null || true; }
LOG_WARNINGS="p $(log_warnings p), c $(log_warnings c) (in bench/.work/logs/)"
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo '?'; }
THREADS="p $(threads_of "${PID[p]}"), c $(threads_of "${PID[c]}"), nginx ${#NGX_PIDS[@]} processes"
for k in k1 k64; do
  for s in direct tunnel; do
    R[$k.$s.mibs]=$(awk -v r="${R[$k.$s.rps]:-0}" -v sz="$([ "$k" = k1 ] && echo "$SIZE_1K" || echo "$SIZE_64K")" \
      'BEGIN { printf "%.1f", r * sz / 1048576 }')
  done
done

# ---------------------------------------------------------------- report

ratio() { awk -v d="${1:-0}" -v t="${2:-0}" 'BEGIN { if (d + 0 > 0 && t != "") printf "%.2f×", t / d; else printf "n/a" }'; }
# verdict RATIO-TEXT TARGET: met/missed for ratio >= TARGET
verdict() { awk -v r="${1%×}" -v g="$2" 'BEGIN { if (r == "n/a" || r == "") print "n/a"; else print ((r + 0 >= g + 0) ? "met" : "MISSED") }'; }
fmt() { awk -v v="${1:-}" -v p="$2" 'BEGIN { if (v == "" || v == "nan") print "n/a"; else printf "%.*f\n", p, v }'; }

ROWS=() # "test|direct|tunnel|ratio|target|verdict"
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }
for k in k1 k64; do
  name=$([ "$k" = k1 ] && echo '1 KiB GET' || echo '64 KiB GET')
  target=$([ "$k" = k1 ] && echo "$TARGET_1K" || echo "$TARGET_64K")
  r=$(ratio "${R[$k.direct.rps]}" "${R[$k.tunnel.rps]}")
  row "$name, req/s" "$(fmt "${R[$k.direct.rps]}" 0)" "$(fmt "${R[$k.tunnel.rps]}" 0)" "$r" "≥ ${target}×" "$(verdict "$r" "$target")"
  [ "$k" = k64 ] && row "$name, MiB/s" "$(fmt "${R[$k.direct.mibs]}" 1)" "$(fmt "${R[$k.tunnel.mibs]}" 1)" \
    "$(ratio "${R[$k.direct.mibs]}" "${R[$k.tunnel.mibs]}")" "" ""
  row "$name, p50 latency ms" "$(fmt "${R[$k.direct.p50]}" 2)" "$(fmt "${R[$k.tunnel.p50]}" 2)" \
    "$(ratio "${R[$k.direct.p50]}" "${R[$k.tunnel.p50]}")" "" ""
  row "$name, p99 latency ms" "$(fmt "${R[$k.direct.p99]}" 2)" "$(fmt "${R[$k.tunnel.p99]}" 2)" \
    "$(ratio "${R[$k.direct.p99]}" "${R[$k.tunnel.p99]}")" "" ""
done
row "1 KiB GET over h2c (h2load), req/s" "$(fmt "${R[h2.direct.rps]:-}" 0)" "$(fmt "${R[h2.tunnel.rps]:-}" 0)" \
  "$(ratio "${R[h2.direct.rps]:-}" "${R[h2.tunnel.rps]:-}")" "" ""
r=$(ratio "${R[dl.direct.mibs]}" "${R[dl.tunnel.mibs]}")
row "256 MiB download, MiB/s (median of $DL_RUNS)" "${R[dl.direct.mibs]}" "${R[dl.tunnel.mibs]}" "$r" "≥ ${TARGET_DL}×" "$(verdict "$r" "$TARGET_DL")"
row "256 MiB download, server CPU-s/GiB" "${R[dl.direct.cpu]}" "${R[dl.tunnel.cpu]}" \
  "$(ratio "${R[dl.direct.cpu]}" "${R[dl.tunnel.cpu]}")" "" ""
rss_t=$(awk -v k="${R[rss.tunnel]}" 'BEGIN { printf "%.1f", k / 1024 }')
rss_d=$(awk -v k="${R[rss.direct]}" 'BEGIN { printf "%.1f", k / 1024 }')
rss_v=$(awk -v k="${R[rss.tunnel]}" -v g="$RSS_TARGET_MIB" 'BEGIN { print (k / 1024 < g ? "met" : "MISSED") }')
row "peak RSS MiB (nginx all / p+c)" "$rss_d" "$rss_t (p $(awk -v k="${R[rss.tunnel.p]}" 'BEGIN { printf "%.1f", k / 1024 }') + c $(awk -v k="${R[rss.tunnel.c]}" 'BEGIN { printf "%.1f", k / 1024 }'))" \
  "" "< $RSS_TARGET_MIB MiB" "$rss_v"

# lpad/rpad WIDTH STR: pad by characters (printf's widths count bytes: wrong for ≥ and ×)
lpad() {
  local s=$2
  while [ "${#s}" -lt "$1" ]; do s=" $s"; done
  printf '%s' "$s"
}
rpad() {
  local s=$2
  while [ "${#s}" -lt "$1" ]; do s="$s "; done
  printf '%s' "$s"
}
table_line() { printf '%s %s %s %s %s  %s\n' "$(rpad 44 "$1")" "$(lpad 10 "$2")" "$(lpad 24 "$3")" "$(lpad 8 "$4")" "$(lpad 11 "$5")" "$6"; }
print_table() {
  local IFS='|' a
  echo
  table_line TEST DIRECT TUNNEL RATIO TARGET RESULT
  for line in "${ROWS[@]}"; do
    read -r -a a <<<"$line"
    table_line "${a[0]}" "${a[1]}" "${a[2]}" "${a[3]:-}" "${a[4]:-}" "${a[5]:-}"
  done
  printf '\nCPU during each measurement (%% of one core; %s cores; machine %s%% busy before the run):\n' "$(nproc)" "$PRE_BUSY"
  for label in "k1 direct" "k1 tunnel" "k64 direct" "k64 tunnel" "h2 direct" "h2 tunnel" "256 MiB direct" "256 MiB tunnel"; do
    [ -n "${CPU[$label]:-}" ] && printf '  %-16s %s\n' "$label" "${CPU[$label]}"
  done
  printf '  threads at the end: %s\n' "$THREADS"
  printf '  WARN/ERROR log lines: %s\n' "$LOG_WARNINGS"
  return 0
}

md_table() {
  local IFS='|' a
  echo '| test | direct (nginx) | tunnel (p+c) | tunnel/direct | target | result |'
  echo '| --- | ---: | ---: | ---: | --- | --- |'
  for line in "${ROWS[@]}"; do
    read -r -a a <<<"$line"
    printf '| %s | %s | %s | %s | %s | %s |\n' "${a[0]}" "${a[1]}" "${a[2]}" "${a[3]:-}" "${a[4]:-}" "${a[5]:-}"
  done
}

tool_version() { "$@" 2>&1 | head -n 1 || true; }
{
  echo "# revmux benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' (work tree has uncommitted changes)')"
  echo
  echo "Command: \`$CMDLINE\` (each measurement ${SECS} s after a ${WARM} s warm-up; measurements took ${T_MEASURE} s)"
  echo
  md_table
  echo
  echo "Ratios are tunnel/direct: higher is better for req/s and MiB/s, lower is better for latency, CPU and RSS."
  echo "Direct = nginx serving the same files on loopback; tunnel = client → p front end → TLS + HTTP/2 tunnel → c → files."
  echo
  echo "## CPU during each measurement (% of one core)"
  echo
  echo "The machine was ${PRE_BUSY}% busy (all cores) in the second before the benchmark."
  echo
  for label in "k1 direct" "k1 tunnel" "k64 direct" "k64 tunnel" "h2 direct" "h2 tunnel" "256 MiB direct" "256 MiB tunnel"; do
    [ -n "${CPU[$label]:-}" ] && echo "- $label: ${CPU[$label]}"
  done
  echo "- threads at the end: $THREADS"
  echo "- WARN/ERROR log lines: $LOG_WARNINGS"
  echo
  echo "## Machine"
  echo
  echo "- $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
  echo "- kernel $(uname -r), $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
  echo "- $(tool_version wrk -v)"
  echo "- $(tool_version h2load --version)"
  echo "- nginx $NGX_VER (worker_processes auto, sendfile on, tcp_nopush on, access_log off)"
  echo "- $(tool_version curl --version)"
  echo "- p: $(tool_version "$BIN/p" --version); c: $(tool_version "$BIN/c" --version)"
  echo
  echo "Tools: \`wrk ${WRK_ARGS[*]} -d${SECS}s --latency\`, \`h2load ${H2_ARGS[*]} -n N\` (h2c prior knowledge; N = the rate of a ${WARM} s warm-up × ${SECS} s), \`curl -o /dev/null -w %{speed_download}\` ×$DL_RUNS."
  echo "Client and servers share the $(nproc) cores. Raw outputs: bench/.work/raw/, logs: bench/.work/logs/."
  if [ "${#ERRORS[@]}" -gt 0 ]; then
    echo
    echo "## ERRORS"
    echo
    printf -- '- %s\n' "${ERRORS[@]}"
  fi
} >"$RESULTS_MD"

print_table
echo
echo "Markdown: $RESULTS_MD"
if [ "${#ERRORS[@]}" -gt 0 ]; then
  echo >&2
  printf 'ERROR: %s\n' "${ERRORS[@]}" >&2
  ERRORS_PRINTED=1
  die "${#ERRORS[@]} error(s) during the benchmark: the numbers above are not trustworthy"
fi
exit 0
