#!/usr/bin/env bash
# 15 HTTP/2 front end: h2c with prior knowledge (GET, Range, HEAD) is HTTP/2 and byte-exact, and
# a HEAD that p answers itself gets the head alone;
# a p started with --tls --hostname media.example.test (own p/c pair, fresh certs in
# .work/certs-tls) negotiates h2 by ALPN for `curl --http2 --cacert ca.pem https://localhost:PORT/`
# (byte-exact; 64 downloads multiplexed on one connection), http/1.1 when asked, and its
# certificate also holds the extra --hostname.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

if [[ $FRONT == http://* ]]; then
  req h2 "$FRONT/poster.png" --http2-prior-knowledge
  check_eq "h2c GET /poster.png: protocol" 2 "$R_VERSION"
  check_eq "h2c GET /poster.png: status" 200 "$R_STATUS"
  check_eq "h2c GET /poster.png: sha256" "$(sha "$FIX/poster.png")" "$(sha "$R_BODY")"
  rel="films/Le Voyage dans la Lune (1902).mp4"
  fetch_check "h2c GET /$rel byte-exact" "$FRONT/$(urlpath "$rel")" "$FIX/$rel" --http2-prior-knowledge --max-time 60
  req h2r "$FRONT/films/clip.mkv" --http2-prior-knowledge -H 'Range: bytes=100-199'
  check_eq "h2c Range: status" 206 "$R_STATUS"
  check_eq "h2c Range: bytes" "$(slice_sha "$FIX/films/clip.mkv" 100 100)" "$(sha "$R_BODY")"
  req h2h "$FRONT/poster.png" --http2-prior-knowledge -I
  check_eq "h2c HEAD: status" 200 "$R_STATUS"
  check_eq "h2c HEAD: Content-Length" "$(fsize "$FIX/poster.png")" "$(hdr h2h content-length)"
  check_eq "h2c HEAD: no body" 0 "$R_SIZE"
  # p's own answers carry a body (the reason); to HEAD it must not be sent (curl: PROTOCOL_ERROR).
  req h2he "$FRONT/poster.png" --http2-prior-knowledge -I -H 'Host: 127.0.0.1:99999'
  check_eq "h2c HEAD answered by p itself (a bad port: 400): head only, its length, a clean end" \
    "400, curl exit 0, 0 bytes, length set" "$R_STATUS, curl exit $R_RC, $R_SIZE bytes, length $([ -n "$(hdr h2he content-length)" ] && echo set)"
else
  skip "h2c prior-knowledge checks need an http:// front end (FRONT=$FRONT)"
fi

require_selfhosted "starts a p --tls / c pair"

mapfile -t ports < <(python3 "$TOOLS/freeports.py" 3)
certs=$WORK/certs-tls
rm -rf "$certs" # fresh: the generated certificate must carry this run's --hostname
front=https://localhost:${ports[0]}
start_p p-tls "$certs" "${ports[0]}" "${ports[1]}" "${ports[2]}" --tls --hostname media.example.test ||
  fail "p --tls starts and writes $certs/ca.pem" "ca.pem" "$(tail -n 3 "$LOGS/p-tls.log")"
start_c c-tls "$certs" "${ports[1]}" tls-files --root "$FIX"

if wait_http 20 200 "$front/" --cacert "$certs/ca.pem"; then
  pass "TLS pair ready: GET $front/ is 200 (certificate verified with ca.pem)"
else
  fail "TLS pair ready within 20 s" 200 "$(http_code "$front/" --cacert "$certs/ca.pem") ($(cx --cacert "$certs/ca.pem" "$front/" 2>&1 >/dev/null | head -c 150))"
fi

req tls2 "$front/poster.png" --http2 --cacert "$certs/ca.pem"
check_eq "TLS --http2 GET /poster.png: protocol (ALPN h2)" 2 "$R_VERSION"
check_eq "TLS --http2 GET /poster.png: status" 200 "$R_STATUS"
check_eq "TLS --http2 GET /poster.png: sha256" "$(sha "$FIX/poster.png")" "$(sha "$R_BODY")"
fetch_check "TLS --http2 GET /trailer.webm byte-exact" "$front/trailer.webm" "$FIX/trailer.webm" --http2 --cacert "$certs/ca.pem" --max-time 60

# 64 downloads as streams of ONE TLS HTTP/2 connection (curl --parallel multiplexes).
files=(poster.png "música/canción.mp3" notes/readme.txt trailer.webm films/clip.mkv empty.txt)
args=()
for ((i = 0; i < 64; i++)); do
  rel=${files[$((i % ${#files[@]}))]}
  args+=(-o "$T/mx.$i" "$front/$(urlpath "$rel")")
done
cx --max-time 90 --http2 --cacert "$certs/ca.pem" --parallel --parallel-max 64 \
  -w '%{http_code} %{http_version} %{num_connects}\n' "${args[@]}" >"$T/mx.codes" 2>"$T/mx.err"
check_eq "64 multiplexed TLS h2 downloads: curl exit status" 0 "$?"
ok=0
for ((i = 0; i < 64; i++)); do
  rel=${files[$((i % ${#files[@]}))]}
  [ -f "$T/mx.$i" ] && [ "$(sha "$T/mx.$i")" = "$(sha "$FIX/$rel")" ] && ok=$((ok + 1))
done
check_eq "64 multiplexed TLS h2 downloads byte-exact" 64 "$ok"
check_eq "64 multiplexed TLS h2 downloads: all 200 over HTTP/2" 64 "$(grep -c '^200 2 ' "$T/mx.codes")"
check_eq "64 multiplexed TLS h2 downloads: connections opened (all streams on one)" 1 \
  "$(awk '{ n += $3 } END { print n }' "$T/mx.codes")"
rm -f "$T"/mx.[0-9]*

req tls1 "$front/$(urlpath música/canción.mp3)" --http1.1 --cacert "$certs/ca.pem"
check_eq "TLS --http1.1 GET: protocol (ALPN http/1.1)" 1.1 "$R_VERSION"
check_eq "TLS --http1.1 GET: status" 200 "$R_STATUS"
check_eq "TLS --http1.1 GET: sha256" "$(sha "$FIX/música/canción.mp3")" "$(sha "$R_BODY")"

req tlsname "https://media.example.test:${ports[0]}/poster.png" --http2 --cacert "$certs/ca.pem" \
  --resolve "media.example.test:${ports[0]}:127.0.0.1"
check_eq "TLS with the --hostname name (certificate SAN media.example.test): status" 200 "$R_STATUS"

req tlsbad "$front/poster.png" --http2
check_true "TLS without the CA is refused by curl (not a public certificate)" "curl exit 60" "exit $R_RC" [ "$R_RC" = 60 ]

stop_proc c-tls
stop_proc p-tls
