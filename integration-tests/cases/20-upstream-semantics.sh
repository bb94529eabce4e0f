#!/usr/bin/env bash
# 20 proxy semantics through `c --upstream`, over an HTTP/1.1 and an HTTP/2 front end: the
# request target (path and query, percent-encoding kept) reaches the service unchanged,
# end-to-end headers pass and hop-by-hop ones named in Connection do not; the responses'
# repeated Set-Cookie headers, an unfollowed 302 with its Location, a 204, and a body
# delimited by closing the connection all come back intact.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "a second p/c pair with c --upstream"

wait_http 20 200 "$UP_FRONT/" || fail "upstream pair ready" "GET $UP_FRONT/ 200" "$(http_code "$UP_FRONT/")"
target='/info/a%20b/c%C3%A9?x=1&y=%2F+z&empty='

# info_field FILE EXPR: evaluate EXPR over the /info JSON (d: the object, h: lower-cased header dict)
info_field() {
  python3 - "$1" "$2" <<'PY' 2>&1
import json, sys
d = json.load(open(sys.argv[1]))
h = {}
for k, v in d["headers"]:
    h.setdefault(k.lower(), v)
print(eval(sys.argv[2]))
PY
}

for proto in --http1.1 --http2-prior-knowledge; do
  p=${proto#--}
  extra=()
  [ "$proto" = --http1.1 ] && extra=(-H 'Connection: keep-alive, X-Hop' -H 'X-Hop: must-not-pass')
  req info "$UP_FRONT$target" "$proto" -H 'X-Custom: v1' "${extra[@]}"
  check_eq "$p: GET /info status" 200 "$R_STATUS"
  check_eq "$p: the service sees the request target unchanged" "$target" "$(info_field "$R_BODY" 'd["target"]')"
  check_eq "$p: the method arrives" GET "$(info_field "$R_BODY" 'd["method"]')"
  check_eq "$p: an end-to-end request header arrives" v1 "$(info_field "$R_BODY" 'h.get("x-custom")')"
  if [ "$proto" = --http1.1 ]; then
    check_eq "$p: a hop-by-hop header named in Connection is not forwarded (RFC 9110 7.6.1)" None \
      "$(info_field "$R_BODY" 'h.get("x-hop")')"
  fi

  req cookies "$UP_FRONT/cookies" "$proto"
  check_eq "$p: both Set-Cookie headers come back" "a=1; Path=/|b=2; Path=/" \
    "$(grep -i '^set-cookie:' "$R_HDR" | cut -d: -f2- | sed 's/^ *//; s/\r$//' | sort | paste -sd'|')"

  req redir "$UP_FRONT/redirect" "$proto"
  check_eq "$p: a 302 from the service is passed through, not followed" 302 "$R_STATUS"
  check_match "$p: its Location is kept" '/target$' "$(hdr redir location)"

  req nc "$UP_FRONT/no-content" "$proto"
  check_eq "$p: 204 from the service" "204 0" "$R_STATUS $R_SIZE"

  req uc "$UP_FRONT/until-close" "$proto"
  check_eq "$p: a body delimited by connection close: status (curl exit $R_RC)" 200 "$R_STATUS"
  check_eq "$p: a body delimited by connection close arrives whole" \
    "$(python3 -c 'import hashlib; print(hashlib.sha256(hashlib.shake_256(b"revmux-until-close").digest(1048576)).hexdigest())')" \
    "$(sha "$R_BODY")"
done
