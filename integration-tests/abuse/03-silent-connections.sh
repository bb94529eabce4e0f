#!/usr/bin/env bash
# abuse 03 connections that say nothing (or half of something) must not stay open: p closes
# them within 10 s of connecting (checked at 12 s). On the plain front end: silent sockets
# (300 of them, more than one client address may hold) and half the HTTP/2 preface
# ("PRI * HTTP/2.0\r\n"). On the TLS front end (p --tls): silent at the TCP level, silent after
# the TLS handshake, half the preface after ALPN h2. On the tunnel port: silent at the TCP
# level and after the TLS handshake. A request head sent one byte a second is closed within
# --header-timeout (p --header-timeout 3s: checked at 5 s). Meanwhile a victim's GET of a
# 6-byte file takes under 1 s; afterwards the tunnel is the same and p's peak RSS < 200 MiB.
# case-timeout: 120
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pairs"

make_root "$T/root"
trap stop_attacks EXIT
HOLD=16 # how long each attacker waits for p to close its connections

start_proxy quiet-tls --tls || exit 0
tls_port=$PAIR_FRONT_PORT
ht_ok=yes
start_proxy quiet-ht --header-timeout 3s || ht_ok=no
ht_port=${PAIR_FRONT_PORT:-}
start_pair quiet || exit 0
tid=$PAIR_TID

flood() { attack "$1" python3 "$TOOLS/flood.py" hold 127.0.0.1 "${@:2}" --hold "$HOLD" --until-closed --ready "$T/$1.ready"; }
flood front-silent "$PAIR_FRONT_PORT" --kind nothing --count 300
flood front-half-preface "$PAIR_FRONT_PORT" --kind half-preface --count 20 --sources 127.0.0.3
flood tls-tcp-silent "$tls_port" --kind nothing --count 20
flood tls-silent "$tls_port" --kind nothing --tls --count 20 --sources 127.0.0.3
flood tls-half-preface "$tls_port" --kind half-preface --tls --alpn h2 --count 20 --sources 127.0.0.4
flood tunnel-tcp-silent "$PAIR_TUNNEL_PORT" --kind nothing --count 20 --sources 127.0.0.5
flood tunnel-tls-silent "$PAIR_TUNNEL_PORT" --kind nothing --tls --count 20 --sources 127.0.0.6
[ "$ht_ok" = yes ] && flood slow-head "$ht_port" --kind slow-head --interval 1 --count 5 --sources 127.0.0.7

for a in front-silent front-half-preface tls-tcp-silent tls-silent tls-half-preface tunnel-tcp-silent tunnel-tls-silent; do
  attack_ready "$a" 10
done
victim_get "with every kind of silent connection open, a victim's GET of a 6-byte file" \
  "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1

# check_closed LABEL ATTACK LIMIT-SECONDS: every connection the attack held was closed by p
# within LIMIT seconds of its connect
check_closed() {
  local label=$1 out=$T/$2.out limit=$3 connected closed max
  wait_attack "$2" $((HOLD + 5))
  connected=$(jfield "$out" connected) closed=$(jfield "$out" closed) max=$(jfield "$out" close_s_max)
  if [ -n "$connected" ] && [ "$connected" = "$closed" ] && awk -v m="${max:-0}" -v l="$limit" 'BEGIN { exit !(m <= l) }'; then
    pass "$label: all $connected closed by p, the last ${max:-0} s after connecting (limit $limit s)"
  else
    fail "$label: all closed by p within $limit s of connecting" "$connected of $connected closed, none later than $limit s" \
      "${closed:-?} of ${connected:-?} closed (the last after ${max:-never} s), $(jfield "$out" open) still open after $HOLD s; first bytes $(jfield "$out" answers)"
  fi
}
check_closed "front end, 300 silent connections" front-silent 12
check_closed "front end, half an HTTP/2 preface" front-half-preface 12
check_closed "TLS front end, silent at the TCP level" tls-tcp-silent 12
check_closed "TLS front end, silent after the TLS handshake" tls-silent 12
check_closed "TLS front end, half an HTTP/2 preface after ALPN h2" tls-half-preface 12
check_closed "tunnel port, silent at the TCP level" tunnel-tcp-silent 12
check_closed "tunnel port, silent after the TLS handshake" tunnel-tls-silent 12
[ "$ht_ok" = yes ] && check_closed "p --header-timeout 3s, a request head at one byte a second" slow-head 5

check_tunnel_survived "silent connections" "$PAIR_ADMIN" quiet "$tid"
victim_get "afterwards a victim's GET of a 6-byte file" "$PAIR_FRONT/small.txt" "$T/root/small.txt" 1
check_peak_rss "silent connections" p-quiet 200
stop_pair quiet
stop_proc p-quiet-tls
stop_proc p-quiet-ht
