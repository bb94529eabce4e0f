#!/usr/bin/env bash
# 65 make demo (scripts/demo.sh) on free ports, with its own state directory:
# - --check (and DEMO_CHECK=1) starts p and c, verifies them (the video byte-exact through the
#   front end) and stops them: exit 0, "demo stopped" once, no process left;
# - run for real, it prints what to open; the page has the video with its subtitle track, the
#   video plays (range requests: 206), the listing lists it; SIGINT to its process group (what
#   Ctrl-C does) or SIGTERM to the script stops it with exit 0, "demo stopped" once, nothing left;
# - with its front-end port held by another server that serves the very same files, it fails
#   (p could not bind: p exited) instead of claiming to run, and leaves nothing behind.
# case-timeout: 150
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts the demo's own p/c pair"

REPO=$(cd "$IT_DIR/.." && pwd)
VIDEO=$REPO/demo/clip.mp4
STATE=$T/demo-state
rm -rf "$STATE"
free_ports 3
FP=${PORTS[0]} TP=${PORTS[1]} AP=${PORTS[2]}
DEMO_URL=http://127.0.0.1:$FP

# demo_env CMD...: CMD with the demo's variables set for this case.
demo_env() {
  env REVMUX_LISTEN="127.0.0.1:$FP" REVMUX_TUNNEL_LISTEN="127.0.0.1:$TP" REVMUX_ADMIN_LISTEN="127.0.0.1:$AP" \
    REVMUX_DEMO_STATE="$STATE" P_BIN="$P_BIN" C_BIN="$C_BIN" "$@"
}

# The demo's own processes are the ones using its state directory.
_none_left() { ! pgrep -f -- "$STATE/certs" >/dev/null; }
check_none_left() {
  if wait_until 10 _none_left; then
    pass "$1: no p or c left"
  else
    fail "$1: no p or c left" "none" "$(pgrep -af -- "$STATE/certs" | tr '\n' ';')"
    # Only the processes started with this case's own state directory.
    pgrep -f -- "$STATE/certs" | xargs -r kill -KILL 2>/dev/null
  fi
}
check_stopped_once() {
  check_eq "$1: says 'demo stopped' once" 1 "$(grep -c '^demo stopped$' "$2")"
}

# ---- --check and DEMO_CHECK=1
for how in --check DEMO_CHECK=1; do
  out=$T/check-${how//[^A-Za-z]/}.out
  if [ "$how" = --check ]; then
    (cd "$REPO" && demo_env timeout 60 scripts/demo.sh --check) >"$out" 2>&1
  else
    (cd "$REPO" && demo_env DEMO_CHECK=1 timeout 60 scripts/demo.sh) >"$out" 2>&1
  fi
  rc=$?
  check_eq "demo $how: exit status" 0 "$rc"
  if grep -q "^demo check passed: $DEMO_URL/index.html" "$out"; then
    pass "demo $how: verified the video through its own p and c"
  else
    fail "demo $how: verified the video through its own p and c" "demo check passed: $DEMO_URL/..." "$(cat "$out")"
  fi
  check_stopped_once "demo $how" "$out"
  check_none_left "demo $how"
done

# ---- interactive: runs until a signal
# start_demo NAME: the demo in its own session (process group = its pid), output in $T/NAME.out
start_demo() {
  : >"$T/$1.out"
  # shellcheck disable=SC2016 # $$ and $0 are for the inner bash
  (cd "$REPO" && demo_env setsid bash -c 'echo $$ >"$0.pid"; scripts/demo.sh; echo "exit=$?"' "$T/$1" \
    </dev/null >>"$T/$1.out" 2>&1 &)
  wait_files 5 "$T/$1.pid" && cat "$T/$1.pid" >>"$RUN/all-pids"
  if wait_file_has 40 "$T/$1.out" "Press Ctrl-C to stop"; then
    pass "demo ($1): prints what to open"
  else
    fail "demo ($1): prints what to open within 40 s" "Press Ctrl-C to stop" "$(cat "$T/$1.out")"
    kill -TERM -- -"$(cat "$T/$1.pid" 2>/dev/null)" 2>/dev/null
    return 1
  fi
}

# check_stops NAME LABEL: the demo started as NAME, just signalled, ends with status 0,
# says "demo stopped" once and leaves no p or c.
check_stops() {
  if wait_until 20 pid_dead "$(cat "$T/$1.pid")"; then pass "demo after $2: stops"; else fail "demo after $2: stops"; fi
  wait_file_has 5 "$T/$1.out" "exit="
  check_eq "demo after $2: exit status" exit=0 "$(grep '^exit=' "$T/$1.out")"
  check_stopped_once "demo after $2" "$T/$1.out"
  check_none_left "demo after $2"
}

if start_demo int; then
  check_file_contains "demo: the page to open" "$T/int.out" "open:    $DEMO_URL/index.html"
  check_file_contains "demo: the listing to open" "$T/int.out" "$DEMO_URL/ "
  req page "$DEMO_URL/index.html"
  check_eq "the demo page: 200" 200 "$R_STATUS"
  check_file_contains "the demo page plays clip.mp4" "$R_BODY" '<source src="clip.mp4" type="video/mp4">'
  check_file_contains "the demo page has the subtitle track" "$R_BODY" '<track kind="subtitles" src="clip.en.vtt"'
  fetch_check "the demo's subtitles come through" "$DEMO_URL/clip.en.vtt" "$REPO/demo/clip.en.vtt"
  fetch_check "the demo's audio comes through" "$DEMO_URL/M%C3%BAsica/canci%C3%B3n.mp3" "$REPO/demo/Música/canción.mp3"
  req seek "$DEMO_URL/clip.mp4" -r 100000-199999
  check_eq "the demo video seeks (206)" 206 "$R_STATUS"
  check_eq "the demo video seeks: the exact bytes" "$(slice_sha "$VIDEO" 100000 100000)" "$(sha "$R_BODY")"
  # The committed media is real: an MP4 (ftyp box), MP3 frames, a PNG.
  check_eq "demo/clip.mp4 is an MP4" ftyp "$(head -c 8 "$VIDEO" | tail -c 4)"
  check_eq "demo/poster.png is a PNG" PNG "$(head -c 4 "$REPO/demo/poster.png" | tail -c 3)"
  req listing "$DEMO_URL/"
  check_file_contains "the demo listing lists clip.mp4" "$R_BODY" 'href="clip.mp4"'
  # What Ctrl-C does: SIGINT to the whole foreground process group.
  kill -INT -- -"$(cat "$T/int.pid")"
  check_stops int "Ctrl-C (SIGINT to its process group)"
fi

if start_demo term; then
  # SIGTERM to the script alone, as a service manager or `kill` would send it.
  script_pid=$(pgrep -P "$(cat "$T/term.pid")" -f scripts/demo.sh | head -n 1)
  kill -TERM "$script_pid"
  check_stops term "SIGTERM to the script"
fi

# ---- its front-end port taken by a server serving the same files: must not be fooled
start_bg squatter "$LOGS/65-squatter.log" python3 -m http.server --bind 127.0.0.1 --directory "$REPO/demo" "$FP"
if wait_http 10 200 "$DEMO_URL/clip.mp4"; then
  out=$T/squatted.out
  (cd "$REPO" && demo_env timeout 60 scripts/demo.sh --check) >"$out" 2>&1
  rc=$?
  check_true "demo with its front-end port taken: fails" "a non-zero exit" "exit $rc" [ "$rc" != 0 ]
  check_file_lacks "demo with its port taken: never says it passed" "$out" "demo check passed"
  check_file_contains "demo with its port taken: says p exited" "$out" "p exited"
  check_file_contains "demo with its port taken: names the variables to change" "$out" "REVMUX_LISTEN"
  check_stopped_once "demo with its port taken" "$out"
  check_none_left "demo with its port taken"
else
  fail "a stand-in server on the demo's port" "200 for /clip.mp4" "$(http_code "$DEMO_URL/clip.mp4")"
fi
stop_proc squatter
