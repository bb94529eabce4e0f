#!/usr/bin/env bash
# 70 packaging: `p --version` and `c --version` name the commit they were built from; the
# systemd units pass `systemd-analyze verify`; the generated completions and man pages exist
# and know the flags; `make pack` puts binaries, units, completions, man pages, README and
# licenses in the tarball. Needs no running pair.
# shellcheck source=lib.sh
. "$(dirname "$0")/../lib.sh"

REPO=$(cd "$IT_DIR/.." && pwd)
GEN_DOCS=$REPO/target/debug/examples/gen-docs

# ---- --version: "p 0.1.0 (abc1234 2026-11-22)", the commit being this checkout's HEAD
head=''
if command -v git >/dev/null 2>&1; then head=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); fi
for b in p c; do
  bin=$P_BIN
  [ "$b" = c ] && bin=$C_BIN
  out=$("$bin" --version 2>&1)
  check_match "$b --version names a commit and its date" \
    "^$b [0-9]+\.[0-9]+\.[0-9]+ \([0-9a-f]{7,} [0-9]{4}-[0-9]{2}-[0-9]{2}\)$" "$out"
  if [ -n "$head" ]; then
    check_match "$b --version names this checkout's HEAD ($head; rebuild if it moved)" " \($head " "$out"
  else
    skip "$b --version against HEAD: not a git checkout or no git"
  fi
done

# ---- systemd units
units=$REPO/packaging/systemd
for u in proxy origin; do
  check_file_contains "revmux-$u.service runs as a transient user" "$units/revmux-$u.service" "DynamicUser=yes"
  check_file_contains "revmux-$u.service reads an optional env file" "$units/revmux-$u.service" \
    "EnvironmentFile=-/etc/revmux/$u.env"
done
# shellcheck disable=SC2016 # (the unit's own $MAINPID, not the shell's)
check_file_contains "revmux-proxy.service reloads with SIGHUP" "$units/revmux-proxy.service" \
  'ExecReload=/bin/kill -HUP $MAINPID'
check_true "revmux-origin.service has no capabilities" "CapabilityBoundingSet= (empty)" "not set" \
  grep -qx 'CapabilityBoundingSet=' "$units/revmux-origin.service"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify needs ExecStart's binary to exist: point the copies at the binaries under test.
  mkdir -p "$T/units"
  sed "s#^ExecStart=/usr/local/bin/p#ExecStart=$P_BIN#" "$units/revmux-proxy.service" >"$T/units/revmux-proxy.service"
  sed "s#^ExecStart=/usr/local/bin/c#ExecStart=$C_BIN#" "$units/revmux-origin.service" >"$T/units/revmux-origin.service"
  # --man=no: the Documentation= man pages are installed with the package, not here.
  if out=$(cd "$T/units" && systemd-analyze verify --man=no ./revmux-proxy.service ./revmux-origin.service 2>&1); then
    pass "systemd-analyze verify: both units are clean"
  else
    fail "systemd-analyze verify: both units are clean" "no complaints" "$out"
  fi
else
  skip "systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)"
fi

# ---- completions, man pages and the tarball: from the generator cargo test builds
if [ ! -x "$GEN_DOCS" ]; then
  skip "completions, man pages, tarball: no $GEN_DOCS (built by cargo test or make gen-docs)"
  exit 0
fi
dist=$T/dist
rm -rf "$dist"
if "$GEN_DOCS" completions "$dist/completions" >"$T/gen.log" 2>&1 && "$GEN_DOCS" man "$dist/man" >>"$T/gen.log" 2>&1; then
  pass "gen-docs writes completions and man pages"
else
  fail "gen-docs writes completions and man pages" "exit 0" "$(tail -n 3 "$T/gen.log")"
fi
generated=(completions/p.bash completions/_p completions/p.fish completions/c.bash completions/_c completions/c.fish
  man/p.1 man/c.1 man/p-status.1 man/p-check-config.1 man/p-hash-password.1)
for f in "${generated[@]}"; do
  check_true "generated $f is not empty" "non-empty" "missing or empty" test -s "$dist/$f"
done
check_file_contains "p.1 documents --tunnel-listen" "$dist/man/p.1" 'tunnel\-listen'
check_file_contains "c.1 documents --upstream" "$dist/man/c.1" '\-\-upstream'
check_file_contains "p's bash completion offers --certs-dir" "$dist/completions/p.bash" '--certs-dir'

if ! make -s -C "$REPO" pack DIST="$dist" >"$T/pack.log" 2>&1; then
  fail "make pack" "exit 0" "$(tail -n 3 "$T/pack.log")"
  exit 0
fi
tarball=''
for f in "$dist"/revmux-*-linux.tar.gz; do [ -f "$f" ] && tarball=$f; done
if [ -z "$tarball" ]; then
  fail "make pack writes revmux-<version>-<arch>-linux.tar.gz" "a tarball" "$(ls "$dist")"
  exit 0
fi
pass "make pack wrote $(basename "$tarball")"
top=$(basename "$tarball" .tar.gz)
tar -tzf "$tarball" >"$T/listing"
for f in bin/p bin/c systemd/revmux-proxy.service systemd/revmux-origin.service systemd/README.md README.md LICENSE-MIT LICENSE-APACHE \
  "${generated[@]}"; do
  check_true "tarball holds $f" "listed" "not listed" grep -qxF "$top/$f" "$T/listing"
done
tar -xzf "$tarball" -C "$T" "$top/bin/p"
if command -v readelf >/dev/null 2>&1; then
  # (.debug_gdb_scripts is loaded data, not debug information: strip keeps it)
  sections=$(readelf -S "$T/$top/bin/p" | grep -oE '\.symtab|\.debug_(info|line|str|abbrev)' | tr '\n' ' ')
  check_eq "tarball's p is stripped (no .symtab, no DWARF)" "" "$sections"

else
  skip "tarball's p is stripped: readelf is not installed"
fi
check_match "tarball's p runs and names its commit" '^p .*\(' "$("$T/$top/bin/p" --version 2>&1)"
