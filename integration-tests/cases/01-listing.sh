#!/usr/bin/env bash
# 01 root listing: 200 text/html listing every fixture name (HTML-escaped), links
# percent-encoded; following links with space/unicode/special names gets 200 and the right bytes;
# a directory asked without its trailing slash redirects to it (or links still resolve).
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

# find_href LINKS-FILE NAME: the raw href of the link whose target's last segment is NAME
find_href() {
  local href un text enc b
  while IFS=$'\t' read -r href un text enc; do
    b=${un%/}
    b=${b##*/}
    if [ "$b" = "$2" ]; then
      printf '%s\t%s\t%s' "$href" "$text" "$enc"
      return 0
    fi
  done <"$1"
  return 1
}
resolve() { python3 -c 'import sys, urllib.parse as u; print(u.urljoin(sys.argv[1], sys.argv[2]))' "$1" "$2"; }

# check_listing URL LABEL NAME...: the listing at URL links every NAME (dirs end with /)
check_listing() {
  local url=$1 label=$2 n want found href text enc
  shift 2
  req listing "$url"
  check_eq "GET $label status" 200 "$R_STATUS"
  check_eq "GET $label Content-Type" text/html "$(mediatype "$(hdr listing content-type)")"
  python3 "$TOOLS/links.py" <"$R_BODY" >"$T/links"
  cp "$R_BODY" "$T/listing.html"
  for n in "$@"; do
    want=${n%/}
    if ! found=$(find_href "$T/links" "$want"); then
      fail "$label links '$n'" "a link to '$n'" "links: $(cut -f2 "$T/links" | tr '\n' ' ')"
      continue
    fi
    IFS=$'\t' read -r href text enc <<<"$found"
    if [ "$enc" = ENC ]; then
      pass "$label: link to '$n' is percent-encoded ($href)"
    else
      fail "$label: link to '$n' is percent-encoded" "only URI characters" "$href"
    fi
    if [[ $text == *"$want"* ]]; then
      pass "$label: link text shows '$n'"
    else
      fail "$label: link text shows '$n'" "$n" "$text"
    fi
  done
}

check_listing "$FRONT/" "/" poster.png trailer.webm empty.txt 'odd <name> & "quotes".txt' films/ música/ notes/ big/

# HTML escaping of the name with markup characters: never raw in the page.
check_file_lacks "/ listing escapes '<name>'" "$T/listing.html" '<name>'
check_file_contains "/ listing shows the name HTML-escaped (&lt;name&gt;)" "$T/listing.html" '&lt;name&gt;'
check_file_lacks "/ listing never shows the traversal marker" "$T/listing.html" "$(cat "$SECRET_FILE")"
root_links=$T/root-links
cp "$T/links" "$root_links"

# follow_link LISTING-URL LINKS-FILE NAME FIXTURE-FILE|dir
follow_link() {
  local base=$1 links=$2 name=$3 file=$4 found href url
  found=$(find_href "$links" "$name") || {
    fail "follow the link to '$name'" "a link" "none"
    return
  }
  href=${found%%$'\t'*}
  url=$(resolve "$base" "$href")
  if [ "$file" = dir ]; then
    req follow "$url"
    check_eq "follow link '$name' ($href): status" 200 "$R_STATUS"
  else
    fetch_check "follow link '$name' ($href): 200, byte-exact" "$url" "$file"
  fi
}

follow_link "$FRONT/" "$root_links" 'odd <name> & "quotes".txt' "$FIX/odd <name> & \"quotes\".txt"
follow_link "$FRONT/" "$root_links" poster.png "$FIX/poster.png"
follow_link "$FRONT/" "$root_links" música dir

# Sub-directory listings, reached through the (percent-encoded) links.
check_listing "$FRONT/$(urlpath música/)" "/música/" canción.mp3
follow_link "$FRONT/$(urlpath música/)" "$T/links" canción.mp3 "$FIX/música/canción.mp3"
check_listing "$FRONT/films/" "/films/" 'Le Voyage dans la Lune (1902).mp4' clip.mkv
follow_link "$FRONT/films/" "$T/links" 'Le Voyage dans la Lune (1902).mp4' "$FIX/films/Le Voyage dans la Lune (1902).mp4"
check_listing "$FRONT/notes/" "/notes/" readme.txt "100% sure? #1 + more; ok.txt"
follow_link "$FRONT/notes/" "$T/links" "100% sure? #1 + more; ok.txt" "$FIX/notes/100% sure? #1 + more; ok.txt"

# /films without the trailing slash: relative links resolved against it must still work,
# so it either redirects to /films/ or its links are absolute.
req noslash "$FRONT/films"
case $R_STATUS in
  301 | 302 | 307 | 308)
    loc=$(hdr noslash location)
    check_match "GET /films redirects to /films/" '(^|/)films/$' "$loc"
    ;;
  200)
    python3 "$TOOLS/links.py" <"$R_BODY" >"$T/links-noslash"
    follow_link "$FRONT/films" "$T/links-noslash" clip.mkv "$FIX/films/clip.mkv"
    ;;
  *) fail "GET /films (no trailing slash)" "a 3xx to /films/ or 200" "$R_STATUS" ;;
esac
