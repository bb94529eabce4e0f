#!/usr/bin/env bash
# abuse 08 through `c --upstream`, the local app must see the request as a front-end client
# sent it: a POST (and a chunked PUT, and a GET) arrives in origin-form, e.g.
# "POST /record/post?x=1&y=%20z HTTP/1.1", never "POST http://127.0.0.1:PORT/... HTTP/1.1",
# with the public Host the client used (media.example.test:8443), over an HTTP/1.1 and an
# h2c front end, and the body arrives whole.
# abuse: fast
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
require_selfhosted "starts its own p/c pair and service"

start_evil target || exit 0
start_pair target -- --upstream "http://127.0.0.1:$EVIL_PORT" || exit 0
host=media.example.test:8443
records=$EVIL_DIR/records.jsonl

# seen LABEL EXPECTED-LINE BODY-LEN CURL-ARGS...: one request; the app must have recorded it so
seen() {
  local label=$1 line=$2 len=$3
  shift 3
  : >"$records"
  req seen "$@" --interface 127.0.0.1 -H "Host: $host" --max-time 10
  check_eq "$label: the app sees the request line in origin-form and the public Host" \
    "$line | Host [\"$host\"]" "$(jfield "$records" request_line) | Host $(jfield "$records" host)"
  check_eq "$label: answered, the body arrived whole" "200, $len bytes" "$R_STATUS, $(jfield "$records" body_len) bytes"
}
for proto in --http1.1 --http2-prior-knowledge; do
  seen "$proto POST" "POST /record/post?x=1&y=%20z HTTP/1.1" 10 \
    "$PAIR_FRONT/record/post?x=1&y=%20z" "$proto" -H 'Expect:' --data-binary 'hello body'
  seen "$proto chunked PUT" "PUT /record/put HTTP/1.1" 5 \
    "$PAIR_FRONT/record/put" "$proto" -X PUT -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary 'chunk'
  seen "$proto GET" "GET /record/get?q=a%2Fb HTTP/1.1" 0 "$PAIR_FRONT/record/get?q=a%2Fb" "$proto"
done
stop_pair target
stop_proc svc-target
