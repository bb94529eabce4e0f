#!/usr/bin/env bash
# 04 conditional requests: Last-Modified/ETag are sent; If-Modified-Since and If-None-Match
# with them give 304 (no body); non-matching validators give the full 200; failed
# If-Match / If-Unmodified-Since give 412; HEAD honours If-None-Match too.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

rel=notes/readme.txt
f=$FIX/$rel
url=$FRONT/$rel
req full "$url"
check_eq "GET /$rel status" 200 "$R_STATUS"
lm=$(hdr full last-modified)
et=$(hdr full etag)
check_match "Last-Modified is an IMF-fixdate" '^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$' "$lm"
check_eq "Last-Modified is the file's mtime" "$(LC_ALL=C date -u -r "$f" '+%a, %d %b %Y %H:%M:%S GMT')" "$lm"
check_match "ETag is a quoted entity tag" '^(W/)?"[^"]+"$' "$et"

req ims "$url" -H "If-Modified-Since: $lm"
check_eq "If-Modified-Since: <its Last-Modified> status" 304 "$R_STATUS"
check_eq "If-Modified-Since 304 has no body (bytes)" 0 "$R_SIZE"

req inm "$url" -H "If-None-Match: $et"
check_eq "If-None-Match: <its ETag> status" 304 "$R_STATUS"
check_eq "If-None-Match 304 has no body (bytes)" 0 "$R_SIZE"
check_eq "If-None-Match 304 repeats the ETag" "$et" "$(hdr inm etag)"

req inmlist "$url" -H "If-None-Match: \"something-else\", $et"
check_eq "If-None-Match: <list containing its ETag> status" 304 "$R_STATUS"

req old "$url" -H "If-Modified-Since: Mon, 01 Jan 1990 00:00:00 GMT"
check_eq "If-Modified-Since: 1990 status" 200 "$R_STATUS"
check_eq "If-Modified-Since: 1990 gives the full body" "$(sha "$f")" "$(sha "$R_BODY")"

req other "$url" -H 'If-None-Match: "no-such-etag"'
check_eq "If-None-Match: <other ETag> status" 200 "$R_STATUS"
check_eq "If-None-Match: <other ETag> gives the full body" "$(sha "$f")" "$(sha "$R_BODY")"

# RFC 9110 13.2.2: If-Modified-Since is ignored when If-None-Match is present.
req both "$url" -H 'If-None-Match: "no-such-etag"' -H "If-Modified-Since: $lm"
check_eq "If-None-Match (no match) + If-Modified-Since (not modified) status" 200 "$R_STATUS"

req inmhead "$url" -I -H "If-None-Match: $et"
check_eq "HEAD with If-None-Match: <its ETag> status" 304 "$R_STATUS"

req ifmatch "$url" -H "If-Match: $et"
check_eq "If-Match: <its ETag> status" 200 "$R_STATUS"
req ifmatchbad "$url" -H 'If-Match: "no-such-etag"'
check_eq "If-Match: <other ETag> status" 412 "$R_STATUS"
req ius "$url" -H 'If-Unmodified-Since: Mon, 01 Jan 1990 00:00:00 GMT'
check_eq "If-Unmodified-Since: 1990 status" 412 "$R_STATUS"
req iusok "$url" -H "If-Unmodified-Since: $lm"
check_eq "If-Unmodified-Since: <its Last-Modified> status" 200 "$R_STATUS"
