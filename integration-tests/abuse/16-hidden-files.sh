#!/usr/bin/env bash
# abuse 16 c with default settings never hands out the usual secrets that live in a served
# directory: .git/config, .env and certs-x/ca-key.pem are 404 (so is /.git/), percent-encoded
# spellings of them are refused too, and none of them is in a listing; an ordinary file beside
# them is served. (c --show-hidden opts out.)
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair"

root=$T/root
marker=REVMUX-HIDDEN-$RANDOM$RANDOM
mkdir -p "$root/.git" "$root/certs-x"
printf 'small\n' >"$root/small.txt"
printf '[core]\n\turl = https://%s@example.com/x.git\n' "$marker" >"$root/.git/config"
printf 'SECRET=%s\n' "$marker" >"$root/.env"
printf -- '-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n' "$marker" >"$root/certs-x/ca-key.pem"
start_pair hidden || exit 0
for path in /.git/config /.env /certs-x/ca-key.pem /.git/; do
  req hidden "$PAIR_FRONT$path" --max-time 10
  if [ "$R_STATUS" = 404 ] && ! grep -qF "$marker" "$R_BODY"; then
    pass "GET $path: 404"
  else
    fail "GET $path: 404" 404 "$R_STATUS$(grep -qF "$marker" "$R_BODY" && echo ', the secret is in the body')"
  fi
done
# Spelled differently, they are still not served (no 2xx) and never leak.
for path in /%2egit/config /.%65nv /certs-x/ca-key%2epem /.git//config; do
  req hidden "$PAIR_FRONT$path" --max-time 10
  if [[ $R_STATUS != 2?? ]] && ! grep -qF "$marker" "$R_BODY"; then
    pass "GET $path: $R_STATUS"
  else
    fail "GET $path: not served" "no 2xx" "$R_STATUS$(grep -qF "$marker" "$R_BODY" && echo ', the secret is in the body')"
  fi
done
req listing "$PAIR_FRONT/" --max-time 10
check_eq "the root's listing: 200" 200 "$R_STATUS"
for name in .git .env; do check_file_lacks "the root's listing does not show $name" "$R_BODY" "$name"; done
req listing-certs "$PAIR_FRONT/certs-x/" --max-time 10
check_file_lacks "certs-x/'s listing ($R_STATUS) does not show ca-key.pem" "$R_BODY" "ca-key.pem"
fetch_check "the ordinary file beside them is served" "$PAIR_FRONT/small.txt" "$root/small.txt"
stop_pair hidden
