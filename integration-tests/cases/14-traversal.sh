#!/usr/bin/env bash
# 14 path traversal never leaks a byte: encoded/unencoded dot-dot, backslash, NUL, double
# slash and a symlink pointing outside the root all get 4xx, and no body (HTTP/1.1 or
# HTTP/2) ever contains the secret marker or /etc/passwd content.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

marker=$(cat "$SECRET_FILE")
paths=(
  '/../secret.txt'
  '/%2e%2e/secret.txt'
  '/%2E%2E/secret.txt'
  '/..%2fsecret.txt'
  '/%2e%2e%2fsecret.txt'
  '/..%5csecret.txt'
  '/..\secret.txt'
  '/films/../../secret.txt'
  '/films/%2e%2e/%2e%2e/secret.txt'
  '/./../secret.txt'
  '/secret.txt%00'
  '/../secret.txt%00.png'
  '//etc/passwd'
  '/%2fetc%2fpasswd'
  '/../../../../../../etc/passwd'
  '/symlink-to-secret'
  '/symlink-to-secret/'
)

# probe LABEL PATH [CURL-ARGS...]
probe() {
  local label=$1 path=$2
  shift 2
  req trav "$FRONT$path" --path-as-is "$@"
  if [[ $R_STATUS =~ ^4[0-9][0-9]$ ]]; then
    pass "$label $path: status is 4xx ($R_STATUS)"
  else
    fail "$label $path: status is 4xx" "4xx (400/403/404)" "$R_STATUS (curl exit $R_RC)"
  fi
  if grep -qF -- "$marker" "$R_BODY" || grep -q 'root:.*:0:0:' "$R_BODY"; then
    fail "$label $path: body leaks nothing" "no secret" "LEAKED: $(head -c 120 "$R_BODY")"
  else
    pass "$label $path: body leaks nothing"
  fi
}

for path in "${paths[@]}"; do
  probe "HTTP/1.1" "$path"
done
if [[ $FRONT == http://* ]]; then
  for path in '/../secret.txt' '/%2e%2e%2fsecret.txt' '/symlink-to-secret'; do
    probe "HTTP/2" "$path" --http2-prior-knowledge
  done
fi
