#!/usr/bin/env bash
# 03 three video files (one with spaces and parentheses in its name): 200, the right
# Content-Type each, byte-exact by sha256.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

for rel in "films/Le Voyage dans la Lune (1902).mp4" films/clip.mkv trailer.webm; do
  f=$FIX/$rel
  req vid "$FRONT/$(urlpath "$rel")" --max-time 60
  check_eq "GET /$rel status" 200 "$R_STATUS"
  check_eq "GET /$rel Content-Type" "$(ctype_of "$rel")" "$(mediatype "$(hdr vid content-type)")"
  check_eq "GET /$rel Content-Length" "$(fsize "$f")" "$(hdr vid content-length)"
  check_eq "GET /$rel sha256 ($(fsize "$f") bytes)" "$(sha "$f")" "$(sha "$R_BODY")"
done
