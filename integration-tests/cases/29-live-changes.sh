#!/usr/bin/env bash
# 29 the origin follows the directory as it changes: a new file is listed and served at
# once; after it is rewritten (same size, new content, newer mtime) its old ETag /
# Last-Modified stop giving 304 and the new bytes come back; after it is deleted it is 404
# and gone from the listing. c may keep small files in memory for a moment (up to 1 s by
# design), so each change must show within a bounded 5 s, polled — never a stale forever.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "writes into the served directory"

dir=$FIX/scratch-$$
rel=scratch-$$/changing.txt
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

printf 'version one %s\n' "$(head -c 32 /dev/zero | tr '\0' a)" >"$dir/changing.txt"
touch -d '2020-01-01 00:00:00 UTC' "$dir/changing.txt"
req list1 "$FRONT/scratch-$$/"
check_file_contains "a new file is listed at once" "$R_BODY" "changing.txt"
fetch_check "a new file is served at once" "$FRONT/$rel" "$dir/changing.txt"
req v1 "$FRONT/$rel"
et1=$(hdr v1 etag)
lm1=$(hdr v1 last-modified)

printf 'version two %s\n' "$(head -c 32 /dev/zero | tr '\0' b)" >"$dir/changing.txt"
touch -d '2021-06-01 12:00:00 UTC' "$dir/changing.txt"
_changed() { [ "$(http_code "$FRONT/$rel" -H "If-None-Match: $et1")" = 200 ]; }
if wait_until 5 _changed; then
  pass "rewritten file: within 5 s the old ETag no longer matches (200)"
else
  fail "rewritten file: within 5 s the old ETag no longer matches" 200 "$(http_code "$FRONT/$rel" -H "If-None-Match: $et1")"
fi
req v2 "$FRONT/$rel"
check_eq "rewritten file: the new bytes come back" "$(sha "$dir/changing.txt")" "$(sha "$R_BODY")"
check_true "rewritten file: a new ETag" "not $et1" "$(hdr v2 etag)" [ "$(hdr v2 etag)" != "$et1" ]
check_eq "rewritten file: Last-Modified follows the file" "Tue, 01 Jun 2021 12:00:00 GMT" "$(hdr v2 last-modified)"
req ims "$FRONT/$rel" -H "If-Modified-Since: $lm1"
check_eq "rewritten file: modified since the old Last-Modified (status)" 200 "$R_STATUS"

rm -f "$dir/changing.txt"
_gone() { [ "$(http_code "$FRONT/$rel")" = 404 ]; }
if wait_until 5 _gone; then
  pass "deleted file: 404 within 5 s"
else
  fail "deleted file: 404 within 5 s" 404 "$(http_code "$FRONT/$rel")"
fi
_unlisted() { ! cx "$FRONT/scratch-$$/" 2>/dev/null | grep -q changing.txt; }
check_true "deleted file: gone from the listing within 5 s" "unlisted" "still listed" wait_until 5 _unlisted
