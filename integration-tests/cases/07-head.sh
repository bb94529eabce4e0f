#!/usr/bin/env bash
# 07 HEAD: 200, Content-Length = file size, same Content-Type as GET, and no body
# (checked with curl and with a raw socket that reads until the server closes).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

for rel in "films/Le Voyage dans la Lune (1902).mp4" poster.png empty.txt; do
  f=$FIX/$rel
  req head "$FRONT/$(urlpath "$rel")" -I
  check_eq "HEAD /$rel status" 200 "$R_STATUS"
  check_eq "HEAD /$rel Content-Length" "$(fsize "$f")" "$(hdr head content-length)"
  check_eq "HEAD /$rel Content-Type" "$(ctype_of "$rel")" "$(mediatype "$(hdr head content-type)")"
  check_eq "HEAD /$rel body bytes (curl)" 0 "$R_SIZE"
done

req headdir "$FRONT/" -I
check_eq "HEAD / status" 200 "$R_STATUS"

# A raw HTTP/1.1 HEAD with Connection: close: nothing may follow the header block.
if [[ $FRONT =~ ^http://([^/:]+):([0-9]+)$ ]]; then
  host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  rel="films/Le Voyage dans la Lune (1902).mp4"
  python3 "$TOOLS/rawhttp.py" "$host" "$port" HEAD "/$(urlpath "$rel")" 10 >"$T/raw.txt" 2>&1
  check_match "raw HEAD /$rel status line" '^HTTP/1\.1 200' "$(head -n1 "$T/raw.txt")"
  check_eq "raw HEAD /$rel: bytes after the headers" "BODY-BYTES 0" "$(tail -n1 "$T/raw.txt")"
  check_eq "raw HEAD /$rel: Content-Length" "content-length: $(fsize "$FIX/$rel")" \
    "$(grep -i '^content-length:' "$T/raw.txt" | tr -d '\r' | tr '[:upper:]' '[:lower:]')"
else
  skip "raw-socket HEAD check needs a plain http://HOST:PORT front end (FRONT=$FRONT)"
fi
