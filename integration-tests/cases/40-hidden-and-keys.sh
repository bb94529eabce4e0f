#!/usr/bin/env bash
# 40 nothing secret is served by default: over a root holding .git/config, .env, keys/ (with a
# *-key.pem), creds/ (with a token) and pub/ok.txt, the dot-files and everything in the key
# directories get 404 exactly like a missing file (also through symlinks), the root listing
# leaves them all out, pub/ok.txt is served. With --show-hidden, .env is served and listed,
# the key directories still are not.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p and c over a temporary root"

root=$T/root
rm -rf "$root"
mkdir -p "$root/.git" "$root/keys" "$root/creds" "$root/pub"
printf '[remote "origin"]\n\turl = git-marker\n' >"$root/.git/config"
printf 'PASSWORD=env-marker\n' >"$root/.env"
printf -- '-----BEGIN PRIVATE KEY-----\nkey-marker\n' >"$root/keys/server-key.pem"
printf 'other-marker\n' >"$root/keys/other.txt"
printf 'token-marker\n' >"$root/creds/token"
printf 'ok\n' >"$root/pub/ok.txt"
ln -s ../keys/other.txt "$root/pub/other-link"
ln -s keys "$root/keys-alias"
ln -s ../.env "$root/pub/env-link"
markers=(git-marker env-marker key-marker other-marker token-marker)

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
front=http://127.0.0.1:${ports[0]}
certs=$T/certs # outside the root
start_p p-hk "$certs" "${ports[0]}" "${ports[1]}" "${ports[2]}" ||
  fail "p starts" "ca.pem and token written" "$(tail -n 3 "$LOGS/p-hk.log")"
start_c c-hk "$certs" "${ports[1]}" hidden-keys --root "$root"
wait_http 20 200 "$front/pub/ok.txt" || fail "the pair serves $root within 20 s" 200 "$(http_code "$front/pub/ok.txt")"

req missing "$front/no-such-file" --max-time 10
check_eq "a missing file: status" 404 "$R_STATUS"
not_found=$(cat "$R_BODY")

# refused LABEL PATH...: each PATH gets the 404 of a missing file and leaks no marker
refused() {
  local label=$1 path m
  shift
  for path in "$@"; do
    req hk "$front$path" --max-time 10 --path-as-is
    check_eq "$label: GET $path is 404 like a missing file" "404 $not_found" "$R_STATUS $(cat "$R_BODY")"
    for m in "${markers[@]}"; do
      if grep -qF -- "$m" "$R_BODY"; then fail "$label: GET $path leaks nothing" "no $m" "$(head -c 100 "$R_BODY")"; fi
    done
  done
}
secrets=(/keys/server-key.pem /keys/other.txt /keys/ /creds/token /creds/ /keys-alias/other.txt /pub/other-link
  /./keys/other.txt /%6Beys/other.txt)
refused "default" /.git/config /.git/ /.env /pub/env-link /%2Eenv "${secrets[@]}"

req ok "$front/pub/ok.txt" --max-time 10
check_eq "pub/ok.txt is served" "200 ok" "$R_STATUS $(cat "$R_BODY")"
req listing "$front/" --max-time 10
check_eq "listing of the root: status" 200 "$R_STATUS"
check_file_contains "the root listing shows pub/" "$R_BODY" 'href="pub/"'
for name in .git .env keys creds keys-alias; do
  check_file_lacks "the root listing leaves out $name" "$R_BODY" ">$name"
done
req publist "$front/pub/" --max-time 10
check_file_contains "the pub/ listing shows ok.txt" "$R_BODY" 'href="ok.txt"'
check_file_lacks "the pub/ listing leaves out a link into a key directory" "$R_BODY" "other-link"
check_file_lacks "the pub/ listing leaves out a link to a dot-file" "$R_BODY" "env-link"
stop_proc c-hk

# --show-hidden: dot-files come back, key directories stay hidden.
start_c c-hk-shown "$certs" "${ports[1]}" hidden-keys --root "$root" --show-hidden
if wait_http 20 200 "$front/.env"; then
  pass "with --show-hidden, GET /.env is 200"
else
  fail "with --show-hidden, GET /.env is 200 within 20 s" 200 "$(http_code "$front/.env")"
fi
req env "$front/.env" --max-time 10
check_eq "with --show-hidden, .env is served whole" "PASSWORD=env-marker" "$(cat "$R_BODY")"
req listing2 "$front/" --max-time 10
check_file_contains "with --show-hidden, the root listing shows .env" "$R_BODY" 'href=".env"'
check_file_lacks "with --show-hidden, the root listing still leaves out keys" "$R_BODY" ">keys"
check_file_lacks "with --show-hidden, the root listing still leaves out creds" "$R_BODY" ">creds"
markers=(key-marker other-marker token-marker)
refused "--show-hidden" "${secrets[@]}"
stop_proc c-hk-shown
stop_proc p-hk
