#!/usr/bin/env bash
# abuse 19 tiny DATA frames left unread in bulk never end a tunnel. h2 keeps ~250 bytes for every
# frame it holds unread and ends the whole connection (GOAWAY ENHANCE_YOUR_CALM) once frames
# under 256 bytes pile up past its budget; flow control bounds the bytes a stream holds, not its
# frames. So the receiving end drains a stream whose reader is away (common::h2body):
# - uploads: two front-end clients send 1,000,000 one-byte chunks each to an app that never
#   reads its request body (`c --upstream`); all of them reach c (2,000,000 bytes to the
#   origin). Before, one such client ended the tunnel in about 7 s;
# - downloads: an app writes up to 150,000 one-byte chunks, each on its own and apart in time, to
#   each of 24 streams of an h2c client that grants no window; meanwhile a plain GET is
#   answered once more such frames than h2's budget allows (~263,000) have reached p, and p's
#   peak RSS stays under 40 MiB. Before, the tunnel ended and p reached 76 MiB.
# The tunnel is the same afterwards.
# abuse: fast
# case-timeout: 150
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"
require_h2

start_evil tiny || exit 0
start_pair tiny -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
tid=$PAIR_TID
trap stop_attacks EXIT

drips=()
for k in 1 2; do
  python3 "$TOOLS/drip_upload.py" "$PAIR_FRONT_PORT" "/unread?s=30" 1000000 >"$T/drip-$k.out" 2>"$T/drip-$k.err" &
  drips+=($!)
done
wait "${drips[@]}"
check_eq "two uploads of 1,000,000 one-byte chunks each to an app that never reads: every chunk taken" \
  "1000000 1000000" "$(jfield "$T/drip-1.out" sent) $(jfield "$T/drip-2.out" sent)"
_all_to_origin() { [ "$(status_sum "$PAIR_ADMIN" bytes_to_origin)" -ge 2000000 ]; }
check_true "…and all 2,000,000 bytes crossed the tunnel to c, one-byte frames held unread there" \
  ">= 2000000 bytes to the origin" "$(status_sum "$PAIR_ADMIN" bytes_to_origin)" wait_until 10 _all_to_origin
check_tunnel_survived "one-byte upload chunks held unread" "$PAIR_ADMIN" tiny "$tid"

attack zero-window "$PY_H2" "$TOOLS/h2abuse.py" zero-window 127.0.0.1 "$PAIR_FRONT_PORT" \
  --path "/paced-chunks?n=150000&us=5" --streams 24 --hold 25 --ready "$T/zero-window.ready"
if attack_ready zero-window 15; then
  pass "h2c reader in place: $(jfield "$T/zero-window.ready" opened) streams of one-byte chunks, window 0"
fi
drained() { cx --max-time 3 "$PAIR_ADMIN/metrics" | awk '$1 == "revmux_frames_drained_total" { print $2 }'; }
_past_budget() { [ "$(drained)" -ge 300000 ] 2>/dev/null; }
check_true "more one-byte frames than h2's budget for a tunnel (~263,000) reached p unread, and p drained them" \
  ">= 300000 frames drained" "$(wait_until 20 _past_budget; drained) frames drained" wait_until 1 _past_budget
req ok "$PAIR_FRONT/" --max-time 5
check_eq "with 24 streams of unread one-byte frames, a plain GET is answered" "200 evil ok" "$R_STATUS $(cat "$R_BODY")"
wait_attack zero-window 30
check_eq "the h2c reader kept its connection to the end" "False 24" \
  "$(jfield "$T/zero-window.out" closed) $(jfield "$T/zero-window.out" responses)"
check_peak_rss "one-byte frames to a reader granting no window" p-tiny 40
check_tunnel_survived "one-byte frames to a reader granting no window" "$PAIR_ADMIN" tiny "$tid"
stop_pair tiny
stop_proc svc-tiny
