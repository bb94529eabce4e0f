#!/usr/bin/env bash
# 02 an image: 200, image/png, Content-Length = size, byte-exact by sha256.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

f=$FIX/poster.png
req img "$FRONT/poster.png"
check_eq "GET /poster.png status" 200 "$R_STATUS"
check_eq "GET /poster.png Content-Type" image/png "$(mediatype "$(hdr img content-type)")"
check_eq "GET /poster.png Content-Length" "$(fsize "$f")" "$(hdr img content-length)"
check_eq "GET /poster.png sha256" "$(sha "$f")" "$(sha "$R_BODY")"
check_eq "GET /poster.png starts with the PNG signature" 89504e470d0a1a0a "$(head -c 8 "$R_BODY" | od -An -tx1 | tr -d ' \n')"

req q "$FRONT/poster.png?v=2&size=large"
check_eq "GET /poster.png?query: status (the query is not part of the file name)" 200 "$R_STATUS"
check_eq "GET /poster.png?query: sha256" "$(sha "$f")" "$(sha "$R_BODY")"
