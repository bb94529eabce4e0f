#!/usr/bin/env bash
# make demo: a proxy (p) and an origin (c) on this machine serving the demo/ folder (a short
# video with subtitles, an audio file, an image and a page that plays them), until Ctrl-C.
#
#   scripts/demo.sh            start, check, print what to open, run until Ctrl-C or SIGTERM
#   scripts/demo.sh --check    start, check, stop; exit 0 only if the demo worked (tests)
#                              (DEMO_CHECK=1 does the same)
#
# Variables (defaults in brackets):
#   REVMUX_LISTEN          the front end, opened in the browser  [127.0.0.1:1443]
#   REVMUX_TUNNEL_LISTEN   where c dials p                        [127.0.0.1:1444]
#   REVMUX_ADMIN_LISTEN    p's status and metrics                 [127.0.0.1:1445]
#   REVMUX_DEMO_STATE      certificates, token, p.log and c.log   [.demo]
#   P_BIN, C_BIN           the binaries                           [./bin/p, ./bin/c]
#
# Before saying it runs, the demo checks that its own p and c are up: both processes alive,
# its p listening on the front-end and tunnel ports (not some other server), and the video
# fetched through the front end byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,18s/^# \{0,1\}//p' "$0"; }

CHECK=${DEMO_CHECK:-0}
case ${1:-} in
    "") ;;
    --check) CHECK=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "demo.sh: unknown argument '$1'" >&2
        usage >&2
        exit 2
        ;;
esac
[ "$CHECK" = 0 ] || CHECK=1

ROOT=demo
VIDEO=$ROOT/clip.mp4
FRONT=${REVMUX_LISTEN:-127.0.0.1:1443}
TUNNEL=${REVMUX_TUNNEL_LISTEN:-127.0.0.1:1444}
ADMIN=${REVMUX_ADMIN_LISTEN:-127.0.0.1:1445}
STATE=${REVMUX_DEMO_STATE:-.demo}
P_BIN=${P_BIN:-./bin/p}
C_BIN=${C_BIN:-./bin/c}
CERTS=$STATE/certs

for bin in "$P_BIN" "$C_BIN"; do
    if [ ! -x "$bin" ]; then
        echo "demo: $bin is missing; build it first with 'make build' (or run 'make demo')" >&2
        exit 1
    fi
done
command -v curl >/dev/null || {
    echo "demo: curl is needed to check that the demo is up; install it (apt-get install curl)" >&2
    exit 1
}

# port_of ADDR: the port of HOST:PORT, [V6]:PORT, :PORT or PORT.
port_of() { printf '%s' "${1##*:}"; }
# url_of ADDR: what to type in a browser for a listen address (wildcards become localhost).
url_of() {
    local host=${1%:*} port
    port=$(port_of "$1")
    [[ $1 == *:* ]] || host=
    case $host in "" | 0.0.0.0 | "[::]") host=localhost ;; esac
    printf 'http://%s:%s' "$host" "$port"
}
BASE=$(url_of "$FRONT")

mkdir -p "$STATE"
P_LOG=$STATE/p.log
C_LOG=$STATE/c.log
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/revmux-demo.XXXXXX")
p_pid=
c_pid=
stopped=0

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Stop both children (TERM, then KILL after 10 s) and say so, once, however we got here.
# shellcheck disable=SC2317 # called from the traps
stop() {
    [ "$stopped" = 1 ] && return 0
    stopped=1
    local pid _
    for pid in $c_pid $p_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $c_pid $p_pid; do
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            echo "demo: process $pid did not stop within 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
    echo "demo stopped"
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

# give_up WHAT: the demo did not come up; say why, with the end of both logs, and exit 1.
give_up() {
    echo "demo: $1" >&2
    local log
    for log in "$P_LOG" "$C_LOG"; do
        if [ -s "$log" ]; then
            echo "--- last lines of $log:" >&2
            tail -n 15 "$log" >&2
        fi
    done
    exit 1
}

# exited NAME PID HINT: give up if the process has exited, with its status and HINT.
exited() {
    alive "$2" && return 0
    local status=0
    wait "$2" 2>/dev/null || status=$?
    give_up "$1 exited (status $status) before the demo was up; $3"
}

# owns_port PID PORT: PID has a TCP socket listening on PORT (read from /proc, no tools needed).
owns_port() {
    local hex inodes
    hex=$(printf ':%04X' "$2")
    inodes=$(find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' | sort -u)
    [ -n "$inodes" ] || return 1
    awk -v port="$hex" '$4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' \
        "/proc/$1/net/tcp" "/proc/$1/net/tcp6" 2>/dev/null | sort -u | grep -qxF -f <(printf '%s\n' "$inodes")
}

P_HINT="is another program using $FRONT, $TUNNEL or $ADMIN? Pick other ports with REVMUX_LISTEN, REVMUX_TUNNEL_LISTEN, REVMUX_ADMIN_LISTEN"
"$P_BIN" --listen "$FRONT" --tunnel-listen "$TUNNEL" --admin-listen "$ADMIN" --certs-dir "$CERTS" >"$P_LOG" 2>&1 &
p_pid=$!
# The origin needs the token and CA that p writes on its first start.
for _ in $(seq 150); do
    [ -s "$CERTS/token" ] && [ -s "$CERTS/ca.pem" ] && break
    exited p "$p_pid" "$P_HINT"
    sleep 0.1
done
[ -s "$CERTS/token" ] || give_up "p wrote no token into $CERTS within 15 s"

"$C_BIN" --proxy "localhost:$(port_of "$TUNNEL")" --root "$ROOT" --certs-dir "$CERTS" --name demo >"$C_LOG" 2>&1 &
c_pid=$!

# Up means: our p listens on the front-end and tunnel ports, and the video comes through the
# front end byte for byte, with both processes still alive afterwards.
want=$(sha256sum <"$VIDEO" | cut -d' ' -f1)
up=0
for _ in $(seq 200); do
    exited p "$p_pid" "$P_HINT"
    exited c "$c_pid" "see $C_LOG"
    if owns_port "$p_pid" "$(port_of "$FRONT")" && owns_port "$p_pid" "$(port_of "$TUNNEL")" &&
        curl -sf --noproxy '*' --max-time 5 -o "$SCRATCH/clip.mp4" "$BASE/clip.mp4" 2>/dev/null &&
        [ "$(sha256sum <"$SCRATCH/clip.mp4" | cut -d' ' -f1)" = "$want" ]; then
        up=1
        break
    fi
    sleep 0.1
done
exited p "$p_pid" "$P_HINT"
exited c "$c_pid" "see $C_LOG"
if [ "$up" != 1 ]; then
    if ! owns_port "$p_pid" "$(port_of "$FRONT")"; then
        give_up "p (pid $p_pid) is not listening on $FRONT after 20 s"
    fi
    give_up "$BASE/clip.mp4 did not come through the tunnel intact within 20 s"
fi
# The page and the listing too.
for path in index.html ""; do
    code=$(curl -s --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' "$BASE/$path" || true)
    [ "$code" = 200 ] || give_up "$BASE/$path answered $code, not 200"
done

if [ "$CHECK" = 1 ]; then
    echo "demo check passed: $BASE/index.html plays $VIDEO ($(stat -c %s "$VIDEO") bytes, byte-exact through the tunnel)"
    exit 0
fi

cat <<MSG

  revmux demo is running (p pid $p_pid, c pid $c_pid).
    open:    $BASE/index.html   a page playing a short video with subtitles, audio and an image
             $BASE/             the folder $ROOT/ as a listing
    status:  $P_BIN status --admin-listen $ADMIN
    metrics: curl http://$ADMIN/metrics
    logs:    $P_LOG, $C_LOG
  Press Ctrl-C to stop.

MSG
# Until a signal (the trap stops both and exits 0) or a child ends on its own.
status=0
wait -n "$p_pid" "$c_pid" || status=$?
if alive "$p_pid"; then who=c; else who=p; fi
give_up "$who exited on its own (status $status); stopping the demo"
