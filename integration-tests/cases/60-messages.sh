#!/usr/bin/env bash
# 60 messages that say what to do, through the real binaries: c started before p says to start
# p first (which files, which address); p says which names its certificate covers and the c
# command to run; c logs the URL it is reachable at; listen flags take PORT, :PORT,
# HOST:PORT and [v6]:PORT and a bad one gets examples; a second p in the same directory fails
# to bind naming the address, without touching the running proxy's certificate files; c
# pointed at the front end (plain or TLS) or holding another proxy's CA logs at ERROR what to
# change; plain HTTP to the TLS front end gets a 400 naming https://; p status against a
# wrong admin port names the address it tried and how to point it elsewhere; a RUST_LOG it
# cannot read is reported, with how to write one.
# case-timeout: 150
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p and c, some of them misconfigured"

# error_logged LOG PATTERN WHAT: within 15 s, LOG has an ERROR line matching PATTERN (ERE).
_error_in() { grep 'ERROR' "$1" | grep -qE -- "$2"; }
error_logged() {
  if wait_until 15 _error_in "$1" "$2"; then
    pass "$3"
  else
    fail "$3" "an ERROR line with /$2/" "$(oneline "$(tail -n 1 "$1")")"
  fi
}

home=$T/home
rm -rf "$home"
mkdir -p "$home/root"
printf 'hello from the messages case\n' >"$home/root/hello.txt"
free_ports 7
fp=${PORTS[0]} tp=${PORTS[1]} ap=${PORTS[2]}
cd "$home" || exit 1

# --- c before p: no token yet --------------------------------------------------------------
"$C_BIN" --proxy "localhost:$tp" --root root >"$T/c-early.out" 2>&1
rc=$?
check_eq "c started before p exits 64" 64 "$rc"
early=$(cat "$T/c-early.out")
check_match "it says to start p first" 'Start p first' "$early"
check_match "it names the token file it looked for" 'certs/token' "$early"
check_match "it names the CA file p will create" 'certs/ca\.pem' "$early"
check_match "it names the tunnel address it will dial and the flag" "localhost:$tp.*--proxy" "$early"

# --- a RUST_LOG it cannot read: said at start-up, with how to write one ----------------------
RUST_LOG='info,h2=lots' "$C_BIN" --proxy "localhost:$tp" --root root >"$T/c-badlog.out" 2>&1
check_match "an unreadable RUST_LOG is named, with how to write one" \
  'WARN.*RUST_LOG="info,h2=lots" is not understood.*info,h2=debug' "$(cat "$T/c-badlog.out")"
if [[ $early == *"invalid value for --token"* ]]; then
  fail "it does not blame --token (none was given)" "no 'invalid value for --token'" "$(oneline "$early")"
else
  pass "it does not blame --token (none was given)"
fi

# --- c with a token but no p listening ----------------------------------------------------
mkdir -p "$T/lonely"
printf 'some-token\n' >"$T/lonely/token"
start_bg c-lonely "$LOGS/c-lonely.log" "$C_BIN" --proxy "localhost:$tp" --certs-dir "$T/lonely" --root root --name lonely
if wait_file_has 15 "$LOGS/c-lonely.log" "Start p first"; then
  pass "c with no p listening says to start p first ($(oneline "$(grep -m1 -o 'nothing listens.*' "$LOGS/c-lonely.log" | cut -c1-110)"))"
else
  fail "c with no p listening says to start p first" "'Start p first'" "$(oneline "$(tail -n 2 "$LOGS/c-lonely.log")")"
fi
check_true "and keeps trying (p may come up later)" alive exited proc_alive c-lonely
stop_proc c-lonely

# --- p: bad listen values, then PORT / :PORT / HOST:PORT -----------------------------------
"$P_BIN" --listen nonsense --certs-dir "$T/unused" >"$T/p-bad.out" 2>&1
check_eq "p --listen nonsense exits 64" 64 "$?"
check_match "the error gives examples" 'write it like 8080 or :8080' "$(cat "$T/p-bad.out")"
check_true "a bad listen value writes no certificates" "no $T/unused" "it exists" test ! -e "$T/unused"

start_bg p-msg "$LOGS/p-msg.log" "$P_BIN" --listen "$fp" --tunnel-listen ":$tp" --admin-listen "localhost:$ap" \
  --hostname media.example.test
if wait_http 20 200 "http://127.0.0.1:$ap/status"; then
  pass "p takes --listen PORT, --tunnel-listen :PORT, --admin-listen localhost:PORT"
else
  fail "p takes --listen PORT, --tunnel-listen :PORT, --admin-listen localhost:PORT" "admin answering" \
    "$(oneline "$(tail -n 3 "$LOGS/p-msg.log")")"
fi
plog=$(cat "$LOGS/p-msg.log")
check_match "p logs the names its certificate covers" 'covers localhost, 127\.0\.0\.1, ::1, media\.example\.test' "$plog"
check_match "p logs the c command to run next (address, CA, token)" \
  "next: .*c --proxy localhost:$tp --ca certs/ca\.pem --token-file certs/token --root DIR" "$plog"

# --- c connects and logs where it is reachable ---------------------------------------------
start_bg c-msg "$LOGS/c-msg.log" "$C_BIN" --proxy "localhost:$tp" --root root --name msgs
if wait_file_has 20 "$LOGS/c-msg.log" "urls=http://127.0.0.1:$fp/"; then
  pass "c logs the URL it is reachable at (http://127.0.0.1:$fp/)"
else
  fail "c logs the URL it is reachable at" "urls=http://127.0.0.1:$fp/" "$(oneline "$(tail -n 2 "$LOGS/c-msg.log")")"
fi
fetch_check "that URL serves c's files" "http://127.0.0.1:$fp/hello.txt" "$home/root/hello.txt"

# --- a second p in the same directory ------------------------------------------------------
before=$(sha256sum certs/server.pem certs/server-key.pem certs/ca.pem certs/ca-key.pem certs/token)
"$P_BIN" --listen "$fp" --tunnel-listen ":$tp" --admin-listen "localhost:$ap" >"$T/p-second.out" 2>&1
rc=$?
second=$(cat "$T/p-second.out")
check_eq "a second p in the same directory exits 1" 1 "$rc"
check_match "its error names the address and the flag" "127\.0\.0\.1:$fp \(--listen\)" "$second"
check_match "and says another process holds the port" 'another process holds this port' "$second"
check_eq "the running proxy's certificate, key, CA and token are untouched" "$before" \
  "$(sha256sum certs/server.pem certs/server-key.pem certs/ca.pem certs/ca-key.pem certs/token)"
fetch_check "the running pair still serves" "http://127.0.0.1:$fp/hello.txt" "$home/root/hello.txt"
# One on free ports but with a bad config file fails before issuing a certificate.
printf '[[route]]\nbogus = 1\n' >"$T/bad.toml"
"$P_BIN" --listen "${PORTS[3]}" --tunnel-listen "${PORTS[4]}" --admin-listen "${PORTS[5]}" --config "$T/bad.toml" \
  >"$T/p-badconf.out" 2>&1
check_eq "a p with a bad config file in the same directory exits 64" 64 "$?"
check_eq "and it too leaves the certificate files untouched" "$before" \
  "$(sha256sum certs/server.pem certs/server-key.pem certs/ca.pem certs/ca-key.pem certs/token)"

# --- [v6]:PORT, when this machine has IPv6 loopback ----------------------------------------
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
  mkdir -p "$T/v6"
  start_bg p-v6 "$LOGS/p-v6.log" "$P_BIN" --listen "[::1]:${PORTS[3]}" --tunnel-listen "[::1]:${PORTS[4]}" \
    --admin-listen "[::1]:${PORTS[5]}" --certs-dir "$T/v6/certs"
  if wait_http 20 200 "http://[::1]:${PORTS[5]}/status" -g; then
    pass "p takes [::1]:PORT listen addresses"
  else
    fail "p takes [::1]:PORT listen addresses" "admin answering on [::1]" "$(oneline "$(tail -n 2 "$LOGS/p-v6.log")")"
  fi
  stop_proc p-v6
else
  skip "no IPv6 loopback here: [::1]:PORT not tried"
fi

# --- c pointed at the plain front end -----------------------------------------------------
start_bg c-front "$LOGS/c-front.log" "$C_BIN" --proxy "localhost:$fp" --root root --name front
error_logged "$LOGS/c-front.log" 'answered plain HTTP' \
  "c pointed at the front end logs at ERROR that the port answered plain HTTP"
check_match "and names the tunnel flag and its default port" '--tunnel-listen \(default 1444\)' \
  "$(grep -m1 'answered plain HTTP' "$LOGS/c-front.log")"
stop_proc c-front

# --- another proxy (TLS front end): its CA subject, plain HTTP, c at its front end, foreign CA
mkdir -p "$T/other"
(cd "$T/other" && start_bg p-other "$LOGS/p-other.log" "$P_BIN" --tls --listen "${PORTS[3]}" \
  --tunnel-listen "${PORTS[4]}" --admin-listen "${PORTS[6]}")
wait_files 20 "$T/other/certs/ca.pem" "$T/other/certs/token"
wait_http 20 200 "http://127.0.0.1:${PORTS[6]}/status"
subject() { python3 -c 'import ssl, sys; print(dict(x[0] for x in ssl._ssl._test_decode_cert(sys.argv[1])["subject"])["commonName"])' "$1" 2>/dev/null; }
s1=$(subject certs/ca.pem) s2=$(subject "$T/other/certs/ca.pem")
if [ -z "$s1" ] || [ -z "$s2" ]; then
  skip "cannot read CA subjects with python's ssl module"
elif [ "$s1" != "$s2" ]; then
  pass "each generated CA has its own subject ($s1 / $s2)"
else
  fail "each generated CA has its own subject" "two different names" "$s1 twice"
fi

req plain "http://127.0.0.1:${PORTS[3]}/film.mp4"
check_eq "plain HTTP to the TLS front end: 400" 400 "$R_STATUS"
check_file_contains "the 400 names the https:// URL" "$R_BODY" "use https://127.0.0.1:${PORTS[3]}/film.mp4"
check_eq "https on the same port still works (502: no origin yet)" 502 \
  "$(http_code "https://127.0.0.1:${PORTS[3]}/" --cacert "$T/other/certs/ca.pem")"

start_bg c-tlsfront "$LOGS/c-tlsfront.log" "$C_BIN" --proxy "localhost:${PORTS[3]}" --root root --name tlsfront \
  --ca "$T/other/certs/ca.pem" --token-file "$T/other/certs/token"
error_logged "$LOGS/c-tlsfront.log" 'front-end port, not its tunnel port' \
  "c pointed at a TLS front end logs at ERROR that it is the front-end port"
stop_proc c-tlsfront

start_bg c-wrongca "$LOGS/c-wrongca.log" "$C_BIN" --proxy "localhost:${PORTS[4]}" --root root --name wrongca \
  --token-file "$T/other/certs/token"
error_logged "$LOGS/c-wrongca.log" 'UnknownIssuer' "c holding another proxy's ca.pem logs UnknownIssuer at ERROR"
check_match "and says to copy this proxy's ca.pem and pass --ca" "Copy this proxy's current ca\.pem.*--ca" \
  "$(grep -m1 'UnknownIssuer' "$LOGS/c-wrongca.log")"
stop_proc c-wrongca
stop_proc p-other

# --- p status against the wrong admin port -------------------------------------------------
"$P_BIN" status --admin-listen "${PORTS[6]}" >"$T/status.out" 2>&1
check_eq "p status against a port with no p exits 1" 1 "$?"
status_err=$(cat "$T/status.out")
check_match "it names the address it tried" "127\.0\.0\.1:${PORTS[6]}" "$status_err"
check_match "and how to point it elsewhere" '--admin-listen ADDR or REVMUX_ADMIN_LISTEN' "$status_err"
check_eq "p status on the right port works" 0 "$("$P_BIN" status --admin-listen "$ap" >/dev/null 2>&1; echo $?)"

stop_proc c-msg
stop_proc p-msg
