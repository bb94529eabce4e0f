#!/usr/bin/env bash
# revmux benchmark: revmux and the tunnels people use instead, side by side in one run and
# with the same load, against nginx serving the same files directly on loopback (the limit).
#
#   ./bench/run.sh                  (or `make bench`, which builds first)
#   BENCH_SECS=30 ./bench/run.sh    longer wrk measurements (default 10 s each)
#   BENCH_ROUNDS=5 ./bench/run.sh   rounds (default 3): every cell is the median of the rounds,
#                                   shown with the spread (min-max); ratios are to direct in
#                                   the same round
#   BENCH_THREADS=1 ./bench/run.sh  p and c with one worker each (default 0: their default,
#                                   one worker per two cores, as a user runs them)
#   BENCH_PEERS=0 ./bench/run.sh    leave out bore and rathole (no cargo install)
#   BENCH_SCALE=0 ./bench/run.sh    leave out the scale phase (below)
#   BENCH_IDLE=10000 BENCH_DOWNLOADS=1000   its sizes
#   P_BIN=... C_BIN=...             other binaries than ./bin/p and ./bin/c
# p runs with --access-log off, as nginx runs with access_log off: both measured without logging.
#
# Paths, each measured with the same load in every round:
#   direct            nginx serving bench/.work/files (the limit)
#   nginx hop         a second nginx: proxy_pass to direct with a keepalive upstream
#   bore              bore server + bore local, in front of direct (plain TCP tunnel)
#   rathole           rathole server + client, TCP transport, in front of direct
#   rathole (TLS)     the same over rathole's TLS transport
#   revmux --root     p + c, c serving the files itself
#   revmux --upstream p + c, c forwarding to direct
# bore and rathole are installed from crates.io with `cargo install --locked --root
# bench/.work/tools` when missing there; a peer that does not build or start is reported as
# such in the table and the run goes on.
#
# Rows: 1 KiB GETs at 64 connections (wrk -t2 -c64) and on one connection (wrk -t1 -c1),
# 64 KiB GETs (wrk -t2 -c64), req/s with p50/p99; one 256 MiB download and 8 at once (curl,
# MiB/s); server CPU-seconds per GiB over the downloads; peak RSS of both ends (VmHWM, reset
# between the small-request and the download phase). One more row for HTTP/2 front ends, as a
# browser loads a page: 1 KiB GETs as 64 streams on one connection (h2load -c1 -m64, h2c with
# prior knowledge), for the paths whose public port speaks it (nginx direct and the hop on an
# extra `http2` listener, revmux on its usual port; bore and rathole would only relay it to
# nginx's). h2load comes from Debian's nghttp2-client, installed with the other tools when the
# benchmark runs as root; without it the row is left out. Writes bench/.work/results.md; raw
# tool outputs and daemon logs stay in bench/.work/.
#
# Scale phase, after the rounds (revmux only; python3, and Debian's python3-h2 for HTTP/2):
# BENCH_IDLE idle long-polls on one tunnel (a third p/c pair in front of bench/scale.py's
# holding service), once as HTTP/2 streams (32 per connection, one connection per source
# address 127.1.x.y) and once as HTTP/1.1 connections; p's RSS while all are held (baseline
# before), and every one answered once released. Then BENCH_DOWNLOADS downloads of a 4 MiB
# file at once through revmux --root, each checked byte for byte (sha256); time, MiB/s, peak
# RSS of p and c.
#
# Exit status: 0 when everything ran, whatever the numbers; 1 when something broke in nginx or
# revmux (a daemon failed to start or died, errors or non-2xx responses, bad bytes, a dropped
# tunnel). A peer's failures are reported in the table and results.md but do not fail the run.
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
TOOLS=$WORK/tools
RESULTS_MD=$WORK/results.md

SECS=${BENCH_SECS:-10}
THREADS=${BENCH_THREADS:-0}
WARM=${BENCH_WARMUP_SECS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
PEERS=${BENCH_PEERS:-1}
SCALE=${BENCH_SCALE:-1}
N_IDLE=${BENCH_IDLE:-10000}
N_DOWNLOADS=${BENCH_DOWNLOADS:-1000}
BORE_VERSION=${BORE_VERSION:-0.6.0}
RATHOLE_VERSION=${RATHOLE_VERSION:-0.5.0}
PARALLEL_DL=8
CMDLINE="BENCH_SECS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_THREADS=$THREADS BENCH_PEERS=$PEERS BENCH_SCALE=$SCALE BENCH_IDLE=$N_IDLE BENCH_DOWNLOADS=$N_DOWNLOADS${P_BIN:+ P_BIN=$P_BIN}${C_BIN:+ C_BIN=$C_BIN} $0${*:+ $*}"
[ -n "${MAKELEVEL:-}" ] && CMDLINE="make bench, which ran: $CMDLINE"

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
case $ROUNDS in '' | *[!0-9]* | 0) die "BENCH_ROUNDS must be a positive integer (got '$ROUNDS')" ;; esac
case $PEERS in 0 | 1) ;; *) die "BENCH_PEERS must be 0 or 1 (got '$PEERS')" ;; esac

# ---------------------------------------------------------------- processes and cleanup

declare -A PID=()   # name -> pid (= process group id: every daemon runs in its own session)
STARTED=()          # pids, in start order
TMP_POLICY_RC=''    # a policy-rc.d we created for the duration of apt-get install
ERRORS=()           # what broke in nginx or revmux: fails the run after the report
PEER_ERRORS=()      # what went wrong with bore or rathole: reported, never fails the run
ERRORS_PRINTED=0
DL_PIDS=()          # the parallel downloads' curls while they run

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
  local rc=$? pid
  trap - EXIT INT TERM
  set +e
  [ -n "$TOOL_PID" ] && kill -TERM "$TOOL_PID" 2>/dev/null && wait "$TOOL_PID" 2>/dev/null
  for pid in "${DL_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
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
  [ -n "${1:-}" ] || return 1
  kill -0 "$1" 2>/dev/null || return 1
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st:0:1}" != Z ]
}

# start_bg NAME CMD...: run CMD in a session of its own, output to $LOGS/NAME.log; 1 when it
# did not even start.
start_bg() {
  local name=$1 pidf=$RUNDIR/$1.pid
  shift
  rm -f "$pidf" "$pidf.tmp"
  # shellcheck disable=SC2016 # $$ $0 $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
    </dev/null >"$LOGS/$name.log" 2>&1 &
  wait_until 5 test -s "$pidf" || return 1
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
# reset_hwm PID...: VmHWM back to the current RSS (clear_refs 5, Linux ≥ 4.0); 1 if refused.
reset_hwm() {
  local pid ok=0
  for pid in "$@"; do
    { echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null || ok=1
  done
  return "$ok"
}

CLK_TCK=$(getconf CLK_TCK)

# busy_ticks: CPU ticks of the whole machine, busy and all.
machine_ticks() {
  local cpu user nice sys idle iow irq sirq steal _rest
  read -r cpu user nice sys idle iow irq sirq steal _rest </proc/stat
  echo "$((user + nice + sys + irq + sirq + steal)) $((user + nice + sys + idle + iow + irq + sirq + steal))"
}

# ---------------------------------------------------------------- tools

install_missing() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v curl >/dev/null || need+=(curl)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v setsid >/dev/null || need+=(util-linux)
  command -v openssl >/dev/null || need+=(openssl)
  # Optional (the HTTP/2 row): installed when we may, else that row is left out.
  command -v h2load >/dev/null || [ "$(id -u)" != 0 ] || need+=(nghttp2-client)
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

# install_peer CRATE VERSION BINARY: `cargo install` into bench/.work/tools when the binary is
# not there yet (a cache across runs). PEER_WHY: empty on success, else why not (for the table).
PEER_WHY=''
install_peer() {
  local crate=$1 version=$2 bin=$3 rc=0
  PEER_WHY=''
  [ -x "$TOOLS/bin/$bin" ] && return 0
  command -v cargo >/dev/null || { PEER_WHY="not built: no cargo on PATH"; return 0; }
  log "cargo install --locked --root bench/.work/tools $crate@$version (once; kept in bench/.work/tools; log: bench/.work/logs/install-$crate.log)"
  run_tool "$LOGS/install-$crate.log" 1800 cargo install --locked --root "$TOOLS" --version "$version" "$crate" || rc=$?
  # rathole 0.5.0's lockfile pins time 0.3.29, which no longer compiles with current rustc
  # (E0282): then once more with the newest semver-compatible dependencies, and say so.
  if [ "$rc" != 0 ] && grep -q '^error\[E' "$LOGS/install-$crate.log"; then
    log "$crate@$version does not compile with its lockfile: again without --locked (log: bench/.work/logs/install-$crate-unlocked.log)"
    rc=0
    run_tool "$LOGS/install-$crate-unlocked.log" 1800 cargo install --root "$TOOLS" --version "$version" "$crate" || rc=$?
    [ "$rc" = 0 ] && echo "$crate $version: built without --locked (its lockfile's dependencies do not compile with $(rustc --version 2>/dev/null || echo 'this rustc'))" \
      >"$TOOLS/$crate.unlocked"
  fi
  if [ "$rc" != 0 ] || [ ! -x "$TOOLS/bin/$bin" ]; then
    PEER_WHY="not built: cargo install $crate@$version failed (exit $rc): $(grep -m1 -E '^error' "$LOGS/install-$crate.log" | cut -c1-100)"
    warn "${PEER_WHY}"
  fi
  return 0
}

mkdir -p "$WORK" "$FILES" "$RAW" "$LOGS" "$RUNDIR" "$NGX" "$CERTS" "$BIN" "$TOOLS"
rm -rf "${RAW:?}"/* "${LOGS:?}"/*.log "${RUNDIR:?}"/* "$RESULTS_MD"
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

# ---------------------------------------------------------------- paths

# Every path: a label, a base URL, the daemons that are its ends (CPU, RSS), whether its CPU
# includes the direct nginx as its origin, whether it is a third-party peer, and its status
# ('' = measured; otherwise why not, shown in the table).
PATHS=(direct hop bore rathole rathole-tls root upstream)
declare -A LABEL=(
  [direct]='nginx direct (the limit)' [hop]='nginx proxy hop' [bore]='bore'
  [rathole]='rathole (TCP)' [rathole-tls]='rathole (TLS)'
  [root]="revmux \`--root\`" [upstream]="revmux \`--upstream\` to the same nginx"
)
declare -A URL=() STATUS=() ENDS=() PEER=([bore]=1 [rathole]=1 [rathole-tls]=1) VIA_NGX=()
ENDS[direct]=nginx ENDS[hop]=nginx-hop ENDS[bore]='bore-server bore-local'
ENDS[rathole]='rathole-server rathole-client' ENDS[rathole-tls]='rathole-tls-server rathole-tls-client'
ENDS[root]='p c' ENDS[upstream]='p2 c2'
VIA_NGX[hop]=1 VIA_NGX[bore]=1 VIA_NGX[rathole]=1 VIA_NGX[rathole-tls]=1 VIA_NGX[upstream]=1
declare -A ADMIN=() # revmux paths: p's admin port

# path_fail PATH MESSAGE: a peer's problem is reported; nginx's or revmux's fails the run.
path_fail() {
  if [ -n "${PEER[$1]:-}" ]; then PEER_ERRORS+=("${LABEL[$1]}: $2"); else ERRORS+=("${LABEL[$1]}: $2"); fi
}
# path_off PATH WHY: a peer that cannot be measured (any more); anything else dies.
path_off() {
  if [ -n "${PEER[$1]:-}" ]; then
    warn "${LABEL[$1]}: $2"
    STATUS[$1]=$2
  else
    die "${LABEL[$1]}: $2"
  fi
}
path_on() { [ -z "${STATUS[$1]:-}" ]; }

if [ "$PEERS" = 1 ]; then
  install_peer bore-cli "$BORE_VERSION" bore
  [ -n "$PEER_WHY" ] && STATUS[bore]=$PEER_WHY
  install_peer rathole "$RATHOLE_VERSION" rathole
  [ -n "$PEER_WHY" ] && STATUS[rathole]=$PEER_WHY STATUS[rathole-tls]=$PEER_WHY
else
  STATUS[bore]='not run: BENCH_PEERS=0' STATUS[rathole]='not run: BENCH_PEERS=0' STATUS[rathole-tls]='not run: BENCH_PEERS=0'
fi

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
F4M=4m.bin
SIZE_4M=$((4 * 1024 * 1024))
make_file "$F4M" "$SIZE_4M"
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
# port_listening PORT: something listens there (TIME_WAIT leftovers of an earlier run do not count)
port_listening() {
  if command -v ss >/dev/null; then
    [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
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
pick_ports 20
NGX_H2_PORT=${PORTS[18]} HOP_H2_PORT=${PORTS[19]}
FRONT3_PORT=${PORTS[14]} TUN3_PORT=${PORTS[15]} ADMIN3_PORT=${PORTS[16]} HOLD_PORT=${PORTS[17]}
NGX_PORT=${PORTS[0]} HOP_PORT=${PORTS[1]}
FRONT_PORT=${PORTS[2]} TUN_PORT=${PORTS[3]} ADMIN_PORT=${PORTS[4]}
FRONT2_PORT=${PORTS[5]} TUN2_PORT=${PORTS[6]} ADMIN2_PORT=${PORTS[7]}
BORE_PORT=${PORTS[8]} RH_CTRL=${PORTS[9]} RH_PORT=${PORTS[10]} RHT_CTRL=${PORTS[11]} RHT_PORT=${PORTS[12]}
BORE_CONTROL_PORT=7835 # fixed in bore (shared.rs: CONTROL_PORT)
URL[direct]=http://127.0.0.1:$NGX_PORT URL[hop]=http://127.0.0.1:$HOP_PORT
URL[root]=http://127.0.0.1:$FRONT_PORT URL[upstream]=http://127.0.0.1:$FRONT2_PORT
URL[bore]=http://127.0.0.1:$BORE_PORT URL[rathole]=http://127.0.0.1:$RH_PORT URL[rathole-tls]=http://127.0.0.1:$RHT_PORT
ADMIN[root]=$ADMIN_PORT ADMIN[upstream]=$ADMIN2_PORT
# The HTTP/2 row's URL per path (h2c with prior knowledge); paths without one are left out of it.
declare -A URL_H2=([direct]=http://127.0.0.1:$NGX_H2_PORT [hop]=http://127.0.0.1:$HOP_H2_PORT
  [root]=${URL[root]} [upstream]=${URL[upstream]})
H2LOAD=$(command -v h2load || true)

# http_code URL [CURL-ARGS...]: the status code, 000 on a transport error
http_code() { curl -s --noproxy '*' --max-time 3 -o /dev/null -w '%{http_code}' "${@:2}" "$1" 2>/dev/null || true; }
code_is() { [ "$(http_code "$2")" = "$1" ]; }

# ---------------------------------------------------------------- nginx: direct and hop

NGX_VER=$("$NGINX_BIN" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
# render_nginx_conf INSTANCE SERVER-BLOCK
render_nginx_conf() {
  local t user='' prefix=$NGX/$1
  mkdir -p "$prefix/tmp"
  # (the template's comment lines name the placeholders: leave them out)
  t="# generated by bench/run.sh from bench/nginx.conf.template"$'\n'$(grep -v '^#' "$BENCH_DIR/nginx.conf.template")
  [ "$(id -u)" = 0 ] && user='user root root;'
  t=${t//@SERVER@/$2}
  t=${t//@USER_LINE@/$user}
  t=${t//@PREFIX@/$prefix}
  printf '%s\n' "$t" >"$prefix/nginx.conf"
}
# start_nginx INSTANCE NAME: check the config, start, wait for a 200, find master + workers.
declare -A PIDS_OF=() # daemon name -> its pids (the whole process group, for nginx)
start_nginx() {
  local prefix=$NGX/$1 name=$2 args
  args=(-p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log")
  "$NGINX_BIN" -t -q "${args[@]}" >"$LOGS/$name-t.log" 2>&1 ||
    { log_tail "$LOGS/$name-t.log"; die "nginx rejects $prefix/nginx.conf"; }
  start_bg "$name" "$NGINX_BIN" "${args[@]}" || die "$name did not start (log: $LOGS/$name.log)"
}
render_nginx_conf direct "    server {
        listen 127.0.0.1:$NGX_PORT;
        listen 127.0.0.1:$NGX_H2_PORT http2;
        root $FILES;
    }"
# The hop, as a user would write it: proxy_pass to a keepalive upstream (HTTP/1.1, no
# Connection header), everything else at nginx's defaults (proxy_buffering on).
render_nginx_conf hop "    upstream direct {
        server 127.0.0.1:$NGX_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$HOP_PORT;
        listen 127.0.0.1:$HOP_H2_PORT http2;
        location / {
            proxy_pass http://direct;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
log "nginx $NGX_VER: direct ${URL[direct]}, hop ${URL[hop]}"
start_nginx direct nginx
start_nginx hop nginx-hop

# ---------------------------------------------------------------- p + c, twice

# start_revmux PATH P-NAME C-NAME FRONT TUN ADMIN ORIGIN-ARGS...: a p/c pair with its own
# certificates and token (bench/.work/certs/PATH).
start_revmux() {
  local path=$1 pn=$2 cn=$3 front=$4 tun=$5 admin=$6 certs=$CERTS/$1
  shift 6
  mkdir -p "$certs"
  log "${LABEL[$path]}: p (front end :$front, tunnel :$tun, admin :$admin) + c ($*)"
  start_bg "$pn" "$BIN/p" --listen "127.0.0.1:$front" --tunnel-listen "127.0.0.1:$tun" \
    --admin-listen "127.0.0.1:$admin" --certs-dir "$certs" --threads "$THREADS" --access-log off || die "$pn did not start"
  wait_until 20 test -s "$certs/ca.pem" -a -s "$certs/token" ||
    { log_tail "$LOGS/$pn.log"; die "$pn did not write $certs/ca.pem and $certs/token"; }
  start_bg "$cn" "$BIN/c" --proxy "localhost:$tun" "$@" --certs-dir "$certs" --name bench --threads "$THREADS" ||
    die "$cn did not start"
}
start_revmux root p c "$FRONT_PORT" "$TUN_PORT" "$ADMIN_PORT" --root "$FILES"
start_revmux upstream p2 c2 "$FRONT2_PORT" "$TUN2_PORT" "$ADMIN2_PORT" --upstream "${URL[direct]}"

# ---------------------------------------------------------------- bore, rathole

if path_on bore; then
  if port_listening "$BORE_CONTROL_PORT"; then
    STATUS[bore]="not run: bore's fixed control port $BORE_CONTROL_PORT is in use"
  else
    log "bore: server (control :$BORE_CONTROL_PORT, public :$BORE_PORT) + local -> :$NGX_PORT"
    # The public port: bore local asks for --port; the server accepts exactly that one.
    if ! { start_bg bore-server "$TOOLS/bin/bore" server --bind-addr 127.0.0.1 --min-port "$BORE_PORT" --max-port "$BORE_PORT" &&
      wait_until 10 port_listening "$BORE_CONTROL_PORT" &&
      start_bg bore-local "$TOOLS/bin/bore" local "$NGX_PORT" --local-host 127.0.0.1 --to 127.0.0.1 --port "$BORE_PORT"; }; then
      path_off bore "not run: bore did not start (see bench/.work/logs/bore-*.log)"
    fi
  fi
fi

# rathole_conf PATH CTRL PUBLIC TRANSPORT-SERVER TRANSPORT-CLIENT: server.toml + client.toml
rathole_conf() {
  local dir=$RUNDIR/$1 token
  mkdir -p "$dir"
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '[server]\nbind_addr = "127.0.0.1:%s"\n%s\n[server.services.bench]\ntoken = "%s"\nbind_addr = "127.0.0.1:%s"\n' \
    "$2" "$4" "$token" "$3" >"$dir/server.toml"
  printf '[client]\nremote_addr = "127.0.0.1:%s"\n%s\n[client.services.bench]\ntoken = "%s"\nlocal_addr = "127.0.0.1:%s"\n' \
    "$2" "$5" "$token" "$NGX_PORT" >"$dir/client.toml"
}
# rathole's TLS transport wants a PKCS#12 identity on the server and the CA on the client.
rathole_tls_certs() {
  local d=$RUNDIR/rathole-tls
  mkdir -p "$d"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout "$d/ca.key" -out "$d/ca.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$d/server.key" -out "$d/server.csr" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/ext.cnf" &&
      openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
        -extfile "$d/ext.cnf" -out "$d/server.pem" &&
      openssl pkcs12 -export -out "$d/identity.pfx" -inkey "$d/server.key" -in "$d/server.pem" \
        -certfile "$d/ca.pem" -passout pass:bench
  } >"$LOGS/rathole-tls-certs.log" 2>&1
}
# start_rathole PATH NAME-PREFIX
start_rathole() {
  local dir=$RUNDIR/$1
  if ! { start_bg "$2-server" "$TOOLS/bin/rathole" --server "$dir/server.toml" &&
    start_bg "$2-client" "$TOOLS/bin/rathole" --client "$dir/client.toml"; }; then
    path_off "$1" "not run: rathole did not start (see bench/.work/logs/$2-*.log)"
  fi
}
if path_on rathole; then
  log "rathole (TCP): control :$RH_CTRL, public :$RH_PORT -> :$NGX_PORT"
  rathole_conf rathole "$RH_CTRL" "$RH_PORT" '' ''
  start_rathole rathole rathole
fi
if path_on rathole-tls; then
  log "rathole (TLS): control :$RHT_CTRL, public :$RHT_PORT -> :$NGX_PORT"
  if rathole_tls_certs; then
    rathole_conf rathole-tls "$RHT_CTRL" "$RHT_PORT" \
      "$(printf '[server.transport]\ntype = "tls"\n[server.transport.tls]\npkcs12 = "%s"\npkcs12_password = "bench"\n' "$RUNDIR/rathole-tls/identity.pfx")" \
      "$(printf '[client.transport]\ntype = "tls"\n[client.transport.tls]\ntrusted_root = "%s"\nhostname = "localhost"\n' "$RUNDIR/rathole-tls/ca.pem")"
    start_rathole rathole-tls rathole-tls
  else
    STATUS[rathole-tls]='not run: openssl could not make its certificate (see bench/.work/logs/rathole-tls-certs.log)'
  fi
fi

# ---------------------------------------------------------------- ready, and the same bytes

# path_pids PATH [ORIGIN]: pids of the path's ends (ORIGIN=1: and of the nginx it fronts)
path_pids() {
  local n
  # shellcheck disable=SC2086 # lists of pids
  for n in ${ENDS[$1]}; do printf '%s\n' ${PIDS_OF[$n]:-}; done
  # shellcheck disable=SC2086
  if [ "${2:-0}" = 1 ] && [ -n "${VIA_NGX[$1]:-}" ]; then printf '%s\n' ${PIDS_OF[nginx]}; fi
  return 0
}
# path_alive PATH: every end still running
path_alive() {
  local n
  for n in ${ENDS[$1]}; do alive "${PID[$n]:-}" || return 1; done
}
path_down() {
  local n
  for n in ${ENDS[$1]}; do
    alive "${PID[$n]:-}" || { log_tail "$LOGS/$n.log"; echo "$n (pid ${PID[$n]:-?}) is not running"; return 0; }
  done
}

for path in "${PATHS[@]}"; do
  path_on "$path" || continue
  if ! wait_until 30 code_is 200 "${URL[$path]}/$F1K"; then
    for n in ${ENDS[$path]}; do log_tail "$LOGS/$n.log"; done
    path_off "$path" "not run: not ready after 30 s (GET /$F1K -> $(http_code "${URL[$path]}/$F1K"); $(path_down "$path"))"
    continue
  fi
  for f in "$F1K" "$F64K" "$FBIG"; do
    if ! { curl -sS --noproxy '*' --max-time 120 -o "$RUNDIR/check.body" "${URL[$path]}/$f" 2>>"$LOGS/curl.log" &&
      cmp -s "$RUNDIR/check.body" "$FILES/$f"; }; then
      path_off "$path" "not run: GET /$f did not give the bytes of $FILES/$f"
      break
    fi
  done
  rm -f "$RUNDIR/check.body"
  path_on "$path" || continue
  for n in ${ENDS[$path]}; do
    if [[ $n == nginx* ]]; then mapfile -t a < <(pgroup_pids "${PID[$n]}"); PIDS_OF[$n]="${a[*]}"; else PIDS_OF[$n]=${PID[$n]}; fi
  done
done
read -r -a a <<<"${PIDS_OF[nginx]}"
[ "${#a[@]}" -ge 2 ] || die "nginx: expected a master and workers, found pids: ${PIDS_OF[nginx]}"

# ---------------------------------------------------------------- revmux tunnel checks

# The tunnel must stay up for the whole run: p's admin port tells the current tunnel's id (a new
# id = the tunnel dropped and c reconnected) and counts the requests p answered itself with an
# error (no origin, origin failed). Both are checked before and after every revmux test, against
# the values of the previous check, so a drop between two tests is caught too.
admin_get() { curl -s --noproxy '*' --max-time 3 "http://127.0.0.1:$1$2" 2>/dev/null || true; }
tunnel_state() {
  local id failed
  id=$(admin_get "$1" /status | sed -n 's/.*"tunnel_id": *\([0-9]*\).*/\1/p' | head -n 1)
  failed=$(admin_get "$1" /metrics | awk '/^revmux_failed_requests_total/ { s += $NF } END { print s + 0 }')
  echo "${id:-none} $failed"
}
tunnel_up() { admin_get "$1" /status | grep -q '"tunnel_id"'; }
declare -A TUNNEL_STATE=()
# check_tunnel PATH WHEN
check_tunnel() {
  local path=$1 when=$2 admin=${ADMIN[$1]} id0 f0 id1 f1 why now cn
  cn=${ENDS[$path]#* }
  if ! wait_until 30 tunnel_up "$admin"; then
    for n in ${ENDS[$path]}; do log_tail "$LOGS/$n.log"; done
    die "${LABEL[$path]}, $when: p has had no tunnel for 30 s"
  fi
  now=$(tunnel_state "$admin")
  if [ -n "${TUNNEL_STATE[$path]:-}" ]; then
    read -r id0 f0 <<<"${TUNNEL_STATE[$path]}"
    read -r id1 f1 <<<"$now"
    if [ "$id0" != "$id1" ]; then
      why=$(grep -E ' (WARN|ERROR) ' "$LOGS/$cn.log" | grep -v 'tunnel lost' | tail -n 1 | sed 's/^[^ ]* *//')
      ERRORS+=("${LABEL[$path]}, $when: the tunnel dropped and c reconnected (tunnel id $id0 -> $id1); c said: ${why:-see $LOGS/$cn.log}")
    fi
    if [ "$f0" != "$f1" ]; then
      ERRORS+=("${LABEL[$path]}, $when: p answered $((f1 - f0)) front-end requests itself with an error (revmux_failed_requests_total)")
    fi
  fi
  TUNNEL_STATE[$path]=$now
  return 0
}
# path_ready PATH WHEN: the path's ends are running (a peer that died is switched off; nginx or
# revmux dying ends the run); for revmux, the tunnel is the same one and passes a request.
path_ready() {
  local path=$1 when=$2
  path_on "$path" || return 1
  if ! path_alive "$path" || ! alive "${PID[nginx]}"; then
    path_off "$path" "stopped: $(path_down "$path"; alive "${PID[nginx]}" || echo 'nginx direct died') ($when)"
    return 1
  fi
  if [ -n "${ADMIN[$path]:-}" ]; then
    check_tunnel "$path" "$when"
    if ! wait_until 30 code_is 200 "${URL[$path]}/$F1K"; then
      for n in ${ENDS[$path]}; do log_tail "$LOGS/$n.log"; done
      die "${LABEL[$path]}, $when: p has a tunnel but GET /$F1K -> $(http_code "${URL[$path]}/$F1K") for 30 s"
    fi
    check_tunnel "$path" "$when"
  fi
  return 0
}

# ---------------------------------------------------------------- measurements

declare -A R=() # results: "ROW:PATH:ROUND" -> number

# to_ms VALUE-WITH-UNIT (wrk: 250.00us, 1.23ms, 2.00s, 1.00m)
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
    if (f < 0) { print ""; exit } printf "%.3f", n * f }'
}

# wrk_check PATH FILE LABEL: errors and non-2xx in a wrk output; 1 when there were any.
wrk_check() {
  local path=$1 f=$2 label=$3 non2xx sock bad=0
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
  sock=$(sed -n 's/^ *Socket errors: *//p' "$f")
  [ -n "$non2xx" ] && { path_fail "$path" "$label: wrk saw $non2xx non-2xx/3xx responses ($f)"; bad=1; }
  [ -n "$sock" ] && { path_fail "$path" "$label: wrk socket errors: $sock ($f)"; bad=1; }
  grep -q '^Requests/sec:' "$f" || { path_fail "$path" "$label: wrk printed no result ($f)"; bad=1; }
  return "$bad"
}

# Rows measured with wrk: name -> wrk arguments, file
declare -A WRK_ARGS=([k1]='-t2 -c64' [k1c1]='-t1 -c1' [k64]='-t2 -c64')
declare -A WRK_FILE=([k1]=$F1K [k1c1]=$F1K [k64]=$F64K)

# measure_wrk ROW PATH ROUND: warm-up, then the timed run; R[ROW:PATH:ROUND] (req/s) and
# R[ROW.p50:...], R[ROW.p99:...] (ms). A peer with errors gets no number for the row.
measure_wrk() {
  local row=$1 path=$2 round=$3 out warm label rc=0 args
  read -r -a args <<<"${WRK_ARGS[$row]}"
  out=$RAW/$row.$path.r$round.wrk.txt warm=$RAW/$row.$path.r$round.warmup.txt label="$row, round $round"
  path_ready "$path" "before $label" || return 0
  log "round $round/$ROUNDS, ${LABEL[$path]}: wrk ${args[*]} -d${SECS}s --latency /${WRK_FILE[$row]}"
  run_tool "$warm" $((WARM + 30)) wrk "${args[@]}" -d"${WARM}s" "${URL[$path]}/${WRK_FILE[$row]}" ||
    path_fail "$path" "$label: wrk warm-up failed (exit $?)"
  wrk_check "$path" "$warm" "$label (warm-up)" || true
  path_ready "$path" "$label (warm-up)" || return 0
  run_tool "$out" $((SECS + 60)) wrk "${args[@]}" -d"${SECS}s" --latency "${URL[$path]}/${WRK_FILE[$row]}" || rc=$?
  [ "$rc" = 0 ] || path_fail "$path" "$label: wrk failed (exit $rc)"
  wrk_check "$path" "$out" "$label" || rc=1
  path_ready "$path" "after $label" || return 0
  [ "$rc" = 0 ] || return 0
  R[$row:$path:$round]=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  R[$row.p50:$path:$round]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  R[$row.p99:$path:$round]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  printf '   %s req/s, p50 %s ms, p99 %s ms\n' "${R[$row:$path:$round]}" "${R[$row.p50:$path:$round]}" "${R[$row.p99:$path:$round]}"
}

# measure_h2 PATH ROUND: the HTTP/2 row (h2load -c1 -m64 over h2c, 1 KiB): warm-up, then the
# timed run; R[h2:PATH:ROUND] (req/s), R[h2.mean:PATH:ROUND] (mean ms a request).
H2_ARGS=(-c1 -m64)
measure_h2() {
  local path=$1 round=$2 out warm label rc=0 f bad
  [ -n "$H2LOAD" ] && [ -n "${URL_H2[$path]:-}" ] || return 0
  out=$RAW/h2.$path.r$round.h2load.txt warm=$RAW/h2.$path.r$round.warmup.txt label="h2, round $round"
  path_ready "$path" "before $label" || return 0
  log "round $round/$ROUNDS, ${LABEL[$path]}: h2load ${H2_ARGS[*]} -D $SECS /$F1K (h2c)"
  run_tool "$warm" $((WARM + 30)) "$H2LOAD" "${H2_ARGS[@]}" -D "$WARM" "${URL_H2[$path]}/$F1K" ||
    path_fail "$path" "$label: h2load warm-up failed (exit $?)"
  run_tool "$out" $((SECS + 60)) "$H2LOAD" "${H2_ARGS[@]}" -D "$SECS" "${URL_H2[$path]}/$F1K" || rc=$?
  [ "$rc" = 0 ] || path_fail "$path" "$label: h2load failed (exit $rc)"
  for f in "$warm" "$out"; do
    # "requests: N total, N started, N done, N succeeded, F failed, E errored, T timeout"
    bad=$(awk '/^requests:/ { print $10 + $12 + $14 } /^status codes:/ { print $5 + $7 + $9 }' "$f" | awk '{ s += $1 } END { print s + 0 }')
    grep -q '^finished in' "$f" || { path_fail "$path" "$label: h2load printed no result ($f)"; rc=1; }
    [ "$bad" = 0 ] || { path_fail "$path" "$label: h2load saw $bad failed, errored or non-2xx requests ($f)"; rc=1; }
  done
  path_ready "$path" "after $label" || return 0
  [ "$rc" = 0 ] || return 0
  R[h2:$path:$round]=$(awk '/^finished in/ { print $4 }' "$out")
  R[h2.mean:$path:$round]=$(awk '/^time for request:/ { v = $6; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; print v }' "$out")
  printf '   %s req/s, mean %s ms a request\n' "${R[h2:$path:$round]}" "${R[h2.mean:$path:$round]}"
}

# download_check PATH LABEL OUT: curl's "code size speed" line; 1 unless 200 and every byte.
download_check() {
  local code size speed
  read -r code size speed <"$3" 2>/dev/null || true
  if [ "${code:-}" != 200 ] || [ "${size:-}" != "$SIZE_BIG" ]; then
    path_fail "$1" "$2: GET /$FBIG -> HTTP ${code:-none}, ${size:-0} bytes (want 200, $SIZE_BIG; see $LOGS/curl.log)"
    return 1
  fi
}
curl_big() {
  curl -sS --noproxy '*' --max-time 300 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' \
    "$1" >"$2" 2>>"$LOGS/curl.log"
}

# measure_downloads PATH ROUND: a warm-up download, one 256 MiB download (dl1, MiB/s), then 8
# at once (dl8, aggregate MiB/s = all bytes / wall time); CPU-seconds per GiB of the path's
# processes (cpu: with the nginx it fronts, cpuend: its ends only) and machine over both.
measure_downloads() {
  local path=$1 round=$2
  local label="downloads, round $round" i ok=1 t0 t1 c0 c1 e0 e1 m0 m1 speed out pids ends
  path_ready "$path" "before $label" || return 0
  log "round $round/$ROUNDS, ${LABEL[$path]}: one 256 MiB download, then $PARALLEL_DL at once"
  curl_big "${URL[$path]}/$FBIG" "$RAW/dl.$path.r$round.warmup.txt" || true
  download_check "$path" "$label (warm-up)" "$RAW/dl.$path.r$round.warmup.txt" || return 0
  mapfile -t pids < <(path_pids "$path" 1)
  mapfile -t ends < <(path_pids "$path" 0)
  local gib b0 a0 b1 a1
  c0=$(cpu_ticks "${pids[@]}") e0=$(cpu_ticks "${ends[@]}") m0=$(machine_ticks)
  out=$RAW/dl1.$path.r$round.txt
  curl_big "${URL[$path]}/$FBIG" "$out" &
  DL_PIDS=($!)
  wait "${DL_PIDS[0]}" || true
  DL_PIDS=()
  if download_check "$path" "$label (one)" "$out"; then
    read -r _ _ speed <"$out"
    R[dl1:$path:$round]=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1048576 }')
  else
    ok=0
  fi
  t0=$(now_ms)
  for ((i = 0; i < PARALLEL_DL; i++)); do
    curl_big "${URL[$path]}/$FBIG" "$RAW/dl8.$path.r$round.$i.txt" &
    DL_PIDS+=($!)
  done
  for i in "${DL_PIDS[@]}"; do wait "$i" || true; done
  DL_PIDS=()
  t1=$(now_ms)
  c1=$(cpu_ticks "${pids[@]}") e1=$(cpu_ticks "${ends[@]}") m1=$(machine_ticks)
  for ((i = 0; i < PARALLEL_DL; i++)); do
    download_check "$path" "$label ($((i + 1)) of $PARALLEL_DL at once)" "$RAW/dl8.$path.r$round.$i.txt" || ok=0
  done
  path_ready "$path" "after $label" || return 0
  [ "$ok" = 1 ] || return 0
  R[dl8:$path:$round]=$(awk -v n="$PARALLEL_DL" -v s="$SIZE_BIG" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", n * s / 1048576 / (ms / 1000) }')
  gib=$(awk -v n=$((PARALLEL_DL + 1)) -v s="$SIZE_BIG" 'BEGIN { print n * s / 1073741824 }')
  R[cpu:$path:$round]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v g="$gib" 'BEGIN { printf "%.2f", t / hz / g }')
  R[cpuend:$path:$round]=$(awk -v t=$((e1 - e0)) -v hz="$CLK_TCK" -v g="$gib" 'BEGIN { printf "%.2f", t / hz / g }')
  read -r b0 a0 <<<"$m0"
  read -r b1 a1 <<<"$m1"
  R[busy:$path:$round]=$(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN { printf "%.0f", (a > 0 ? 100 * b / a : 0) }')
  printf '   one: %s MiB/s; %s at once: %s MiB/s; %s CPU-s/GiB (ends %s); machine busy %s%%\n' \
    "${R[dl1:$path:$round]:-?}" "$PARALLEL_DL" "${R[dl8:$path:$round]}" "${R[cpu:$path:$round]}" \
    "${R[cpuend:$path:$round]}" "${R[busy:$path:$round]}"
}

# Peak RSS of each path's ends, by phase: a path's VmHWM is reset (clear_refs) just before
# its own first small-request row and just before its own downloads, and read after each
# phase; the maximum over the rounds counts. What a path still holds from its previous phase
# counts (the reset only lowers the mark to the current RSS), but it is read after the same
# quiet time for every path (the other paths' rows), not at once for the last path only.
HWM_RESET=1
reset_ends_hwm() {
  local path=$1 pids
  path_on "$path" || return 0
  mapfile -t pids < <(path_pids "$path" 0)
  reset_hwm "${pids[@]}" || HWM_RESET=0
}
# read_ends_hwm PHASE: R[rss.PHASE:PATH] = max(previous, current VmHWM of the ends), KiB,
# and R[rss.PHASE.parts:PATH] = "a + b" in MiB for the two ends.
read_ends_hwm() {
  local path n kib parts total
  for path in "${PATHS[@]}"; do
    path_on "$path" || continue
    parts='' total=0
    for n in ${ENDS[$path]}; do
      # shellcheck disable=SC2086 # a list of pids
      kib=$(vm_hwm_kib ${PIDS_OF[$n]})
      total=$((total + kib))
      parts+="${parts:+ + }$(awk -v k="$kib" 'BEGIN { printf "%.0f", k / 1024 }')"
    done
    if [ "$total" -gt "${R[rss.$1:$path]:-0}" ]; then
      R[rss.$1:$path]=$total
      R[rss.$1.parts:$path]=$parts
    fi
  done
}

# Other load on the machine (a concurrent build) skews every number: measure it first.
read -r b0 a0 <<<"$(machine_ticks)"
sleep 1
read -r b1 a1 <<<"$(machine_ticks)"
PRE_BUSY=$(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN { printf "%.0f", (a > 0 ? 100 * b / a : 0) }')
if [ "$PRE_BUSY" -gt 15 ]; then
  warn "the machine was ${PRE_BUSY}% busy before the benchmark (another build or test?): expect noisy numbers"
fi

# Round-major, then row, then path: every path gets the same load at about the same time,
# and each ratio is to direct in the same round.
T_START=$SECONDS
for ((round = 1; round <= ROUNDS; round++)); do
  for row in k1 k1c1 k64; do
    for path in "${PATHS[@]}"; do
      [ "$row" = k1 ] && reset_ends_hwm "$path"
      measure_wrk "$row" "$path" "$round"
    done
  done
  read_ends_hwm small
  # The HTTP/2 row has its own peak (it also brings in code the HTTP/1.1 rows never touch),
  # so the small-request peak keeps the meaning it had before the row existed.
  for path in "${PATHS[@]}"; do
    [ -n "${URL_H2[$path]:-}" ] || continue
    reset_ends_hwm "$path"
    measure_h2 "$path" "$round"
  done
  read_ends_hwm h2
  for path in "${PATHS[@]}"; do
    reset_ends_hwm "$path"
    measure_downloads "$path" "$round"
  done
  read_ends_hwm dl
done
for path in "${PATHS[@]}"; do path_ready "$path" "after the last test" || true; done
T_MEASURE=$((SECONDS - T_START))

# ---------------------------------------------------------------- scale

SCALE_LINES=()
rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo '?'; }
hwm_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo '?'; }
held() { curl -s --noproxy '*' --max-time 3 "http://127.0.0.1:$HOLD_PORT/held" 2>/dev/null || echo 0; }
held_at_least() { [ "$(held)" -ge "$1" ] 2>/dev/null; }
json_field() { sed -n "s/.*\"$2\": *\([^,}]*\).*/\1/p" "$1" | tr -d '"' | head -n 1; }
PY_H2=''
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import h2' 2>/dev/null; then PY_H2=$py; break; fi
done

# settle_rss PID: wait (at most 15 s) until PID's RSS has not fallen for six seconds: a
# release may be deferred by up to five quiet readings after the one before it.
settle_rss() {
  local low last now i
  low=$(rss_mib "$1") last=0
  for i in $(seq 30); do
    sleep 0.5
    now=$(rss_mib "$1")
    [ "$now" = '?' ] && return 0
    if [ "$now" -lt "$low" ]; then low=$now last=$i; fi
    [ $((i - last)) -ge 12 ] && return 0
  done
}

# scale_idle MODE LABEL: BENCH_IDLE long-polls held through p3/c3, then released.
scale_idle() {
  local mode=$1 label=$2 py=python3 out=$RAW/scale.$1.txt base rss ok
  if [ "$mode" = idle-h2 ]; then
    [ -n "$PY_H2" ] || { SCALE_LINES+=("| $label | not run: no python3 with the h2 module (Debian: python3-h2) | | |"); return 0; }
    py=$PY_H2
  fi
  # The previous phase's memory is given back once p3 is quiet (common::memory: a second or
  # two, at most one release per five readings): read "before" once its RSS stays put.
  settle_rss "${PID[p3]}"
  base=$(rss_mib "${PID[p3]}")
  log "scale: $N_IDLE idle long-polls, $label"
  "$py" "$BENCH_DIR/scale.py" "$mode" "${URL[scale]}/poll" "$N_IDLE" --deadline 240 >"$out" 2>&1 &
  TOOL_PID=$!
  if wait_until 240 held_at_least "$N_IDLE"; then
    sleep 1 # the last answers' bookkeeping, then read the memory
    rss=$(rss_mib "${PID[p3]}")
  else
    rss="– (only $(held) of $N_IDLE held after 240 s)"
  fi
  curl -s --noproxy '*' --max-time 10 "http://127.0.0.1:$HOLD_PORT/release" >/dev/null || true
  wait "$TOOL_PID" || true
  TOOL_PID=''
  ok=$(json_field "$out" ok)
  printf '   p RSS %s MiB before, %s MiB with all held; answered: %s of %s\n' "$base" "$rss" "${ok:-?}" "$N_IDLE"
  SCALE_LINES+=("| $N_IDLE idle long-polls, $label | p RSS $rss MiB ($base MiB before); c RSS $(rss_mib "${PID[c3]}") MiB | ${ok:-0} of $N_IDLE answered after the release$([ "${ok:-0}" = "$N_IDLE" ] || echo "; $(json_field "$out" errors)") |")
  [ "${ok:-0}" = "$N_IDLE" ] || ERRORS+=("scale, $label: ${ok:-0} of $N_IDLE long-polls answered (see $out)")
}

if [ "$SCALE" = 1 ]; then
  start_bg hold python3 "$BENCH_DIR/scale.py" hold "$HOLD_PORT" || die "scale.py hold did not start"
  wait_until 10 port_listening "$HOLD_PORT" || die "scale.py hold is not listening on :$HOLD_PORT"
  URL[scale]=http://127.0.0.1:$FRONT3_PORT ADMIN[scale]=$ADMIN3_PORT LABEL[scale]="revmux (scale pair)"
  start_revmux scale p3 c3 "$FRONT3_PORT" "$TUN3_PORT" "$ADMIN3_PORT" --upstream "http://127.0.0.1:$HOLD_PORT"
  wait_until 30 tunnel_up "$ADMIN3_PORT" || die "scale: p3 has no tunnel after 30 s"
  scale_idle idle-h2 'HTTP/2 (32 streams a connection)'
  scale_idle idle 'HTTP/1.1 (a connection each)'
  if path_on root; then
    out=$RAW/scale.downloads.txt
    reset_hwm "${PID[p]}" "${PID[c]}" || true
    log "scale: $N_DOWNLOADS downloads of $F4M at once through revmux --root"
    sha=$(sha256sum "$FILES/$F4M" | cut -d' ' -f1)
    run_tool "$out" 600 python3 "$BENCH_DIR/scale.py" download "${URL[root]}/$F4M" "$N_DOWNLOADS" "$SIZE_4M" "$sha" --deadline 500 || true
    ok=$(json_field "$out" ok)
    printf '   %s of %s byte-exact in %s s (%s MiB/s); peak RSS p %s MiB, c %s MiB\n' "${ok:-?}" "$N_DOWNLOADS" \
      "$(json_field "$out" seconds)" "$(json_field "$out" mib_s)" "$(hwm_mib "${PID[p]}")" "$(hwm_mib "${PID[c]}")"
    SCALE_LINES+=("| $N_DOWNLOADS downloads of 4 MiB at once, revmux --root | peak RSS p $(hwm_mib "${PID[p]}") MiB, c $(hwm_mib "${PID[c]}") MiB | ${ok:-0} of $N_DOWNLOADS byte-exact in $(json_field "$out" seconds) s ($(json_field "$out" mib_s) MiB/s)$([ "${ok:-0}" = "$N_DOWNLOADS" ] || echo "; $(json_field "$out" errors)") |")
    [ "${ok:-0}" = "$N_DOWNLOADS" ] || ERRORS+=("scale: ${ok:-0} of $N_DOWNLOADS downloads byte-exact (see $out)")
    path_ready root "after the scale downloads" || true
  fi
fi

threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo '?'; }
THREADS_SEEN="p $(threads_of "${PID[p]}"), c $(threads_of "${PID[c]}"), nginx direct $(wc -w <<<"${PIDS_OF[nginx]}") processes"
log_warnings() { grep -cE ' (WARN|ERROR) ' "$LOGS/$1.log" 2>/dev/null || true; }
LOG_WARNINGS="p $(log_warnings p), c $(log_warnings c), p2 $(log_warnings p2), c2 $(log_warnings c2) (in bench/.work/logs/)"

# ---------------------------------------------------------------- report

# stats ROW PATH [RATIO]: "median min max" over the rounds (of the ratio to direct in the
# same round with RATIO=1); empty when no round has a number.
stats() {
  local row=$1 path=$2 ratio=${3:-0} round v d
  for ((round = 1; round <= ROUNDS; round++)); do
    v=${R[$row:$path:$round]:-}
    [ -n "$v" ] || continue
    if [ "$ratio" = 1 ]; then
      d=${R[$row:direct:$round]:-}
      [ -n "$d" ] || continue
      awk -v v="$v" -v d="$d" 'BEGIN { if (d > 0) printf "%.4f\n", v / d }'
    else
      echo "$v"
    fi
  done | sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'
}
# cell ROW PATH DECIMALS [RATIO]: "median (min–max)" (just the median with one round)
cell() {
  local s
  s=$(stats "$1" "$2" "${4:-0}")
  [ -n "$s" ] || { echo '–'; return 0; }
  awk -v s="$s" -v p="$3" -v x="${4:-0}" 'BEGIN { split(s, a, " "); u = (x == 1 ? "×" : "")
    if (a[2] == a[3]) printf "%.*f%s", p, a[1], u; else printf "%.*f%s (%.*f–%.*f)", p, a[1], u, p, a[2], p, a[3] }'
}
# latency ROW PATH: "p50 / p99" medians in ms
latency() {
  local a b
  a=$(stats "$1.p50" "$2" | cut -d' ' -f1) b=$(stats "$1.p99" "$2" | cut -d' ' -f1)
  [ -n "$a" ] || { echo '–'; return 0; }
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f / %.2f", a, b }'
}
rss_cell() {
  local k=${R[rss.$1:$2]:-}
  [ -n "$k" ] || { echo '–'; return 0; }
  awk -v k="$k" -v parts="${R[rss.$1.parts:$2]}" 'BEGIN { printf "%.0f (%s)", k / 1024, parts }'
}

md_tables() {
  local path s
  echo '### Throughput: median of the rounds (min–max); ×direct = ratio to nginx direct in the same round'
  echo
  echo '| path | 1 KiB, 64 conns, req/s | ×direct | 1 KiB, 1 conn, req/s | ×direct | 64 KiB, 64 conns, req/s | ×direct | one 256 MiB, MiB/s | ×direct | 8 × 256 MiB at once, MiB/s | ×direct |'
  echo '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  for path in "${PATHS[@]}"; do
    s=${STATUS[$path]:-}
    if [ -n "$s" ] && [ -z "$(stats k1 "$path")" ]; then
      printf '| %s | %s | | | | | | | | | |\n' "${LABEL[$path]}" "$s"
      continue
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$path]}${s:+ ($s)}" \
      "$(cell k1 "$path" 0)" "$(cell k1 "$path" 2 1)" "$(cell k1c1 "$path" 0)" "$(cell k1c1 "$path" 2 1)" \
      "$(cell k64 "$path" 0)" "$(cell k64 "$path" 2 1)" "$(cell dl1 "$path" 0)" "$(cell dl1 "$path" 2 1)" \
      "$(cell dl8 "$path" 0)" "$(cell dl8 "$path" 2 1)"
  done
  echo
  echo '### Latency (wrk, ms, p50 / p99, medians) and cost'
  echo
  echo '| path | 1 KiB, 64 conns | 1 KiB, 1 conn | 64 KiB, 64 conns | CPU-s/GiB, all server processes | CPU-s/GiB, the ends only | peak RSS MiB, small requests (ends) | peak RSS MiB, downloading (ends) |'
  echo '|---|---:|---:|---:|---:|---:|---:|---:|'
  for path in "${PATHS[@]}"; do
    s=${STATUS[$path]:-}
    if [ -n "$s" ] && [ -z "$(stats k1 "$path")" ]; then
      printf '| %s | %s | | | | | | |\n' "${LABEL[$path]}" "$s"
      continue
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$path]}" \
      "$(latency k1 "$path")" "$(latency k1c1 "$path")" "$(latency k64 "$path")" \
      "$(cell cpu "$path" 2)" "$(if [ "$path" = direct ]; then echo '–'; else cell cpuend "$path" 2; fi)" \
      "$(rss_cell small "$path")" "$(rss_cell dl "$path")"
  done
  echo
  echo "### HTTP/2 front end: 1 KiB, 64 streams on one connection (h2load ${H2_ARGS[*]}, h2c)"
  echo
  if [ -z "$H2LOAD" ]; then
    echo 'Not measured: no h2load (Debian: nghttp2-client; installed by this script when it runs as root).'
    return 0
  fi
  echo '| path | req/s | ×direct | mean ms a request | peak RSS MiB (ends) |'
  echo '|---|---:|---:|---:|---:|'
  for path in "${PATHS[@]}"; do
    [ -n "${URL_H2[$path]:-}" ] || continue
    s=$(stats h2.mean "$path" | cut -d' ' -f1)
    printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$path]}" "$(cell h2 "$path" 0)" "$(cell h2 "$path" 2 1)" "${s:-–}" "$(rss_cell h2 "$path")"
  done
}

tool_version() { "$@" 2>&1 | head -n 1 || true; }
REPORT=$(
  echo "# revmux benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' (work tree has uncommitted changes)')"
  echo
  echo "Command: \`$CMDLINE\` ($ROUNDS round(s); each wrk measurement ${SECS} s after a ${WARM} s warm-up; measurements took ${T_MEASURE} s)"
  echo
  md_tables
  echo
  echo "- Load: \`wrk -t2 -c64\` (1 KiB and 64 KiB), \`wrk -t1 -c1\` (one connection), \`-d${SECS}s --latency\`; \`curl -o /dev/null\` for one 256 MiB download, then $PARALLEL_DL curls at once (MiB/s = all bytes / wall time), after one warm-up download."
  echo "- CPU-s/GiB: utime+stime of the path's processes over the $((PARALLEL_DL + 1)) downloads of a round, per GiB delivered. \"All server processes\" includes the nginx a path fronts (bore, rathole, the hop, revmux \`--upstream\`), so every path is charged for serving the bytes; \"the ends only\" is the tunnel's (or hop's) own processes."
  echo "- Peak RSS: VmHWM of the ends (MiB, the two ends in brackets: p + c, server + client; nginx: all processes), reset with clear_refs before each phase$([ "$HWM_RESET" = 0 ] && echo ' (the reset was refused here: the numbers are peaks since start)'); the maximum over the rounds."
  echo "- p and c run with \`--threads $THREADS\` (0 = their default: one worker per two cores); threads at the end: $THREADS_SEEN. WARN/ERROR log lines: $LOG_WARNINGS."
  echo "- The load generators share the machine's $(nproc) cores with every server; the machine was ${PRE_BUSY}% busy in the second before the run."
  echo
  echo "## Machine"
  echo
  echo "- $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
  echo "- kernel $(uname -r), $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
  echo "- $(tool_version wrk -v), $(tool_version curl --version | cut -d' ' -f1-2), nginx $NGX_VER (worker_processes auto, sendfile on, tcp_nopush on, access_log off)"
  echo "- p: $(tool_version "$BIN/p" --version); c: $(tool_version "$BIN/c" --version)"
  if [ -x "$TOOLS/bin/bore" ]; then echo "- $(tool_version "$TOOLS/bin/bore" --version) (cargo install bore-cli)"; fi
  if [ -x "$TOOLS/bin/rathole" ]; then echo "- rathole $("$TOOLS/bin/rathole" --version 2>&1 | sed -n 's/^Build Version: *//p') (cargo install rathole)"; fi
  for f in "$TOOLS"/*.unlocked; do [ -f "$f" ] && echo "- $(<"$f")"; done
  if [ "${#SCALE_LINES[@]}" -gt 0 ]; then
    echo
    echo "## Scale (one tunnel)"
    echo
    echo "| load | memory | result |"
    echo "|---|---|---|"
    printf '%s\n' "${SCALE_LINES[@]}"
  fi
  if [ "${#PEER_ERRORS[@]}" -gt 0 ]; then
    echo
    echo "## Problems with the peers (not counted as failures)"
    echo
    printf -- '- %s\n' "${PEER_ERRORS[@]}"
  fi
  if [ "${#ERRORS[@]}" -gt 0 ]; then
    echo
    echo "## ERRORS"
    echo
    printf -- '- %s\n' "${ERRORS[@]}"
  fi
)
printf '%s\n' "$REPORT" >"$RESULTS_MD"

echo
md_tables
if [ "${#SCALE_LINES[@]}" -gt 0 ]; then
  echo
  printf '%s\n' "${SCALE_LINES[@]}"
fi
echo
echo "Markdown, with the machine and the command: $RESULTS_MD"
if [ "${#PEER_ERRORS[@]}" -gt 0 ]; then
  printf 'peer problem (not a failure): %s\n' "${PEER_ERRORS[@]}" >&2
fi
if [ "${#ERRORS[@]}" -gt 0 ]; then
  echo >&2
  printf 'ERROR: %s\n' "${ERRORS[@]}" >&2
  ERRORS_PRINTED=1
  die "${#ERRORS[@]} error(s) during the benchmark: the numbers above are not trustworthy"
fi
exit 0
