#!/usr/bin/env bash
# make demo: start a proxy and an origin on this machine, serving a sample folder, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=.demo
MEDIA="$DEMO/media"
FRONT=${REVMUX_LISTEN:-127.0.0.1:1443}
TUNNEL=${REVMUX_TUNNEL_LISTEN:-127.0.0.1:1444}
ADMIN=${REVMUX_ADMIN_LISTEN:-127.0.0.1:1445}

# A small sample library: a page, an image, nested folders, names with spaces and accents.
mkdir -p "$MEDIA/Films/Classics" "$MEDIA/Música"
cat > "$MEDIA/README.txt" <<'TXT'
This folder is served by the revmux origin (c) through its tunnel to the proxy (p).
Put any files here (videos, music, pictures) and refresh the page.
TXT
cat > "$MEDIA/revmux.svg" <<'SVG'
<svg xmlns="http://www.w3.org/2000/svg" width="240" height="80" viewBox="0 0 240 80">
  <rect width="240" height="80" rx="12" fill="#1d3557"/>
  <text x="120" y="50" font-family="sans-serif" font-size="28" fill="#f1faee" text-anchor="middle">revmux</text>
</svg>
SVG
printf 'WEBVTT\n\n00:00.000 --> 00:02.000\nHello from the origin\n' > "$MEDIA/Films/Classics/Le Voyage dans la Lune (1902).vtt"
head -c 3145728 /dev/urandom > "$MEDIA/Films/Classics/random 3MiB.bin"
printf 'ID3 sample placeholder\n' > "$MEDIA/Música/canción.mp3"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo stopped"
}
trap cleanup EXIT INT TERM

./bin/p --listen "$FRONT" --tunnel-listen "$TUNNEL" --admin-listen "$ADMIN" --certs-dir "$DEMO/certs" &
pids+=($!)
# The origin needs the token and CA the proxy writes on its first start.
for _ in $(seq 100); do [ -s "$DEMO/certs/token" ] && break; sleep 0.1; done
./bin/c --proxy "localhost:${TUNNEL##*:}" --root "$MEDIA" --certs-dir "$DEMO/certs" --name demo &
pids+=($!)
for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$FRONT/" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
done
if [ "${code:-}" != 200 ]; then
    echo "the demo did not come up (last status: ${code:-none}); see the log lines above" >&2
    exit 1
fi
cat <<MSG

  revmux demo is running.
    open:    http://$FRONT/          (the folder $MEDIA, served by the origin through the tunnel)
    status:  ./bin/p status --admin-listen $ADMIN
    metrics: curl http://$ADMIN/metrics
  Press Ctrl-C to stop.

MSG
wait
