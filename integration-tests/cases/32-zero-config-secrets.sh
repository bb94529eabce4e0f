#!/usr/bin/env bash
# 32 zero-config secrets: the README's first run starts p and c in one directory, so c's root
# ('.') contains certs/ with the token and the CA key. None of it may leave through the
# tunnel: not listed, 404 by name, by symlink, by dot-dot spelling; other files still served.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p and c in one directory"

home=$T/home
mkdir -p "$home"
printf 'a file next to the certificates\n' >"$home/notes.txt"
ln -s certs "$home/alias"
mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
front=http://127.0.0.1:${ports[0]}
start_p p-zc "$home/certs" "${ports[0]}" "${ports[1]}" "${ports[2]}" ||
  fail "p starts" "ca.pem and token written" "$(tail -n 3 "$LOGS/p-zc.log")"
start_c c-zc "$home/certs" "${ports[1]}" zeroconf --root "$home"
wait_http 20 200 "$front/" || fail "the pair serves $home within 20 s" 200 "$(http_code "$front/")"

token=$(cat "$home/certs/token")
req zclist "$front/" --max-time 10
check_eq "listing of the root: status" 200 "$R_STATUS"
check_file_contains "listing shows the other files" "$R_BODY" "notes.txt"
check_file_lacks "listing leaves out the certificates directory" "$R_BODY" "certs"
check_file_lacks "listing leaves out a symlink to it" "$R_BODY" "alias"
for path in /certs/token /certs/ca-key.pem /certs/server-key.pem /certs/ /alias/token /./certs/token \
  /notes.txt/../certs/token /%63erts/token; do
  req zc "$front$path" --max-time 10 --path-as-is
  check_match "GET $path is refused" '^4[0-9][0-9]$' "$R_STATUS"
  check_file_lacks "GET $path leaks nothing" "$R_BODY" "$token"
  check_file_lacks "GET $path leaks no key" "$R_BODY" "PRIVATE KEY"
done
req zcnotes "$front/notes.txt" --max-time 10
check_eq "other files are served" 200 "$R_STATUS"
stop_proc c-zc
stop_proc p-zc
