#!/usr/bin/env bash
# 66 listings and compression through the tunnel: natural order (file-2 before file-10, dirs
# first), the time column labelled UTC with ISO 8601 datetimes, a breadcrumb whose links lead
# to each level, a type column; listings and text (.vtt, .txt) gzip- and brotli-coded as
# Accept-Encoding asks (curl --compressed gives the identity bytes; q=0 is honoured), with
# Vary, a weak ETag that revalidates (304), HEAD headers equal to GET's; never a Range
# request (206 byte-exact) nor a video (.mp4 keeps its Content-Length, no coding).
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

# ---- natural order, UTC label, type column
req nat "$FRONT/natural/"
check_eq "GET /natural/: status" 200 "$R_STATUS"
python3 "$TOOLS/links.py" <"$R_BODY" | cut -f2 | grep -v '^\.\.*/$' >"$T/nat-order"
check_eq "/natural/ lists dirs then files in natural order" \
  "Part 9/ Part 10/ file-1.txt file-2.txt file-10.txt" "$(tr '\n' ' ' <"$T/nat-order" | sed 's/ $//')"
check_file_contains "/natural/: the time column says UTC" "$R_BODY" '<th>Last modified (UTC)</th>'
if grep -Eq '<time datetime="[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}Z">' "$R_BODY"; then
  pass "/natural/: times carry an ISO 8601 UTC datetime"
else
  fail "/natural/: times carry an ISO 8601 UTC datetime" '<time datetime="YYYY-MM-DDTHH:MMZ">' "$(grep -o '<time[^>]*>' "$R_BODY" | head -n 1)"
fi
check_file_contains "/natural/: Part 10 is typed folder" "$R_BODY" 'Part 10/</a></td><td class="type">'
req root "$FRONT/"
for pair in "poster.png:image" "trailer.webm:video" "films/:folder" "empty.txt:text"; do
  name=${pair%:*} kind=${pair##*:}
  if grep -Eq ">$(printf '%s' "$name" | sed 's/[.]/[.]/g')</a></td><td class=\"type\"><span[^>]*>[^<]*</span>$kind</td>" "$R_BODY"; then
    pass "/ listing: $name is typed $kind"
  else
    fail "/ listing: $name is typed $kind" "$kind" "$(grep -o ">$name</a></td><td[^/]*" "$R_BODY" | head -n 1)"
  fi
done
req subs "$FRONT/text/"
check_file_contains "/text/ listing: long.vtt is typed subtitles" "$R_BODY" '</span>subtitles</td>'
req mus "$FRONT/$(urlpath música/)"
check_file_contains "/música/ listing: canción.mp3 is typed audio" "$R_BODY" '</span>audio</td>'

# ---- breadcrumb: /natural/Part 10/ links "/" to ../../, "natural" to ../, "Part 10" to ./
req crumb "$FRONT/natural/Part%2010/"
check_eq "GET /natural/Part 10/: status" 200 "$R_STATUS"
crumbs=$(grep -o '<span class="crumbs">.*</span></h1>' "$R_BODY" | python3 "$TOOLS/links.py" | cut -f1,3 | tr '\t\n' '= ')
check_eq "/natural/Part 10/: breadcrumb links each level" "../../=/ ../=natural ./=Part 10 " "$crumbs"
for href in ../../ ../ ./; do
  url=$(python3 -c 'import sys, urllib.parse as u; print(u.urljoin(sys.argv[1], sys.argv[2]))' "$FRONT/natural/Part%2010/" "$href")
  code=$(http_code "$url")
  check_eq "breadcrumb link $href ($url) answers a listing" 200 "$code"
done

# ---- compression of text through the tunnel
for file in text/long.vtt text/short.vtt notes/readme.txt; do
  req id "$FRONT/$file"
  check_eq "GET /$file (no Accept-Encoding): byte-exact" "$(sha "$FIX/$file")" "$(sha "$R_BODY")"
  check_eq "GET /$file (no Accept-Encoding): not coded" "" "$(hdr id content-encoding)"
  check_eq "GET /$file (no Accept-Encoding): Vary" accept-encoding "$(hdr id vary | tr '[:upper:]' '[:lower:]')"
  id_etag=$(hdr id etag)
  for coding in gzip br; do
    req "c-$coding" "$FRONT/$file" -H "Accept-Encoding: $coding"
    check_eq "GET /$file (Accept-Encoding: $coding): Content-Encoding" "$coding" "$(hdr "c-$coding" content-encoding)"
    check_eq "GET /$file ($coding): no Content-Length" "" "$(hdr "c-$coding" content-length)"
    check_eq "GET /$file ($coding): weak ETag of the identity's" "W/$id_etag" "$(hdr "c-$coding" etag)"
    if [ "$(fsize "$R_BODY")" -lt "$(fsize "$FIX/$file")" ]; then
      pass "GET /$file ($coding): $(fsize "$R_BODY") bytes on the wire for $(fsize "$FIX/$file")"
    else
      fail "GET /$file ($coding): smaller on the wire" "< $(fsize "$FIX/$file")" "$(fsize "$R_BODY")"
    fi
    fetch_check "GET /$file (curl --compressed, $coding) decodes to the file's bytes" "$FRONT/$file" "$FIX/$file" \
      --compressed -H "Accept-Encoding: $coding"
    req "h-$coding" "$FRONT/$file" -I -H "Accept-Encoding: $coding"
    check_eq "HEAD /$file ($coding): same headers as GET" \
      "$(grep -Eiv '^(date|transfer-encoding):' "$T/c-$coding.hdr")" "$(grep -Eiv '^(date|transfer-encoding):' "$T/h-$coding.hdr")"
  done
  req reval "$FRONT/$file" -H "Accept-Encoding: gzip" -H "If-None-Match: W/$id_etag"
  check_eq "GET /$file (gzip) with If-None-Match of the weak ETag: 304" 304 "$R_STATUS"
  req q0 "$FRONT/$file" -H "Accept-Encoding: br;q=0, gzip;q=0"
  check_eq "GET /$file (br;q=0, gzip;q=0): not coded" "" "$(hdr q0 content-encoding)"
  req pref "$FRONT/$file" -H "Accept-Encoding: br;q=0.2, gzip;q=0.9"
  check_eq "GET /$file (br;q=0.2, gzip;q=0.9): gzip" gzip "$(hdr pref content-encoding)"
done

# Listings too: the same page decoded as sent plain.
req plain "$FRONT/natural/"
for coding in gzip br; do
  req "lc-$coding" "$FRONT/natural/" --compressed -H "Accept-Encoding: $coding"
  check_eq "GET /natural/ ($coding): Content-Encoding" "$coding" "$(hdr "lc-$coding" content-encoding)"
  if cmp -s "$T/plain.body" "$R_BODY"; then
    pass "GET /natural/ ($coding) decodes to the identity page"
  else
    fail "GET /natural/ ($coding) decodes to the identity page" "$(fsize "$T/plain.body") bytes" "$(fsize "$R_BODY") bytes"
  fi
done

# ---- never compressed: ranges and media
req range "$FRONT/text/long.vtt" -H "Accept-Encoding: gzip, br" -r 1000-1999
check_eq "GET /text/long.vtt with Range and Accept-Encoding: 206" 206 "$R_STATUS"
check_eq "GET /text/long.vtt with Range: not coded" "" "$(hdr range content-encoding)"
check_eq "GET /text/long.vtt with Range: the exact 1000 bytes" "$(slice_sha "$FIX/text/long.vtt" 1000 1000)" "$(sha "$R_BODY")"
mp4="films/Le Voyage dans la Lune (1902).mp4"
req mp4 "$FRONT/$(urlpath "$mp4")" -H "Accept-Encoding: gzip, br"
check_eq "GET .mp4 with Accept-Encoding: gzip, br: not coded" "" "$(hdr mp4 content-encoding)"
check_eq "GET .mp4: Content-Length is the file's size" "$(fsize "$FIX/$mp4")" "$(hdr mp4 content-length)"
check_eq "GET .mp4: byte-exact" "$(sha "$FIX/$mp4")" "$(sha "$R_BODY")"
