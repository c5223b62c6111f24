#!/usr/bin/env bash
# A release rehearsal on this Linux machine, through the same tool and settings as the release
# workflow (dist, dist-workspace.toml, the dist profile):
#   1. dist builds this machine's static musl archive, its .sha256 and the shell installer into
#      target/distrib;
#   2. the shell installer runs from a local HTTP server (INSTALLER_DOWNLOAD_URL) into a fresh
#      HOME, without PATH edits; the installed eic has Cargo.toml's version, is statically
#      linked, and logs in through the stand-in (the playground's world) and a real sshd;
#   3. the same installer against a copy with one byte of the archive changed exits non-zero
#      and installs nothing;
#   4. eic.exe, cross-built with cargo for x86_64-pc-windows-gnu, prints its version under wine;
#   5. macOS as far as this machine goes: clippy for aarch64-apple-darwin, zig as C compiler.
# Not in .ci/run: it builds release binaries (about 25 minutes cold on 2 cores).
# Needs: rustup, Debian's musl-tools, mingw-w64 and wine64, python3 with venv, OpenSSH;
# dist 0.34.0 on PATH, else in $EIC_TOOLS/dist (installed there with cargo when missing).
# Usage: bash scripts/check-release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
say() { echo "check-release: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
step() { say "$1 ($(( $(date +%s) - started )) s)"; }

target=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tools="${EIC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/eic-tools}"
targets="${CARGO_TARGET_DIR:-target}"

missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v readelf >/dev/null || missing+=(binutils)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing: ${missing[*]} (apt-get install -y ${missing[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for t in "$target" x86_64-pc-windows-gnu aarch64-apple-darwin; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
if ! command -v dist >/dev/null; then
  [ -x "$tools/dist/bin/dist" ] ||
    cargo install --locked cargo-dist --version 0.34.0 --root "$tools/dist"
  PATH="$tools/dist/bin:$PATH"
fi
dist --version | grep -q '^cargo-dist 0\.34\.' || fail "dist 0.34 is needed, not $(dist --version)"

work=$(mktemp -d)
cleanup() {
  for pid in ${server:-} ${playground:-}; do kill "$pid" 2>/dev/null || true; done
  WINEPREFIX="$work/prefix" /usr/lib/wine/wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step "1. dist build --artifacts=all --target $target"
# dist writes to the workspace's target/distrib, whatever CARGO_TARGET_DIR says.
distrib=target/distrib
rm -rf "$distrib"
dist build --artifacts=all --target "$target" > "$work/dist.out"
archive="eic-$target.tar.xz"
for f in "$archive" "$archive.sha256" eic-installer.sh sha256.sum; do
  [ -f "$distrib/$f" ] || fail "dist wrote no $f: $(ls "$distrib")"
done
(cd "$distrib" && sha256sum -c "$archive.sha256") >&2
# The release build ran in the checkout, so .cargo/config.toml's AWS_LC_SYS_NO_JITTER_ENTROPY
# reached aws-lc-sys's build script: it says so, and it compiled no jitterentropy object.
build="$targets/$target/dist/build"
grep -qs "AWS_LC_SYS_NO_JITTER_ENTROPY': '1'" "$build"/aws-lc-sys-*/output ||
  fail "aws-lc-sys was built without AWS_LC_SYS_NO_JITTER_ENTROPY=1"
if find "$build"/aws-lc-sys-*/out -iname '*jitter*' | grep -q .; then
  fail "aws-lc-sys compiled its jitter entropy source"
fi
say "   aws-lc built without CPU-jitter entropy (AWS_LC_SYS_NO_JITTER_ENTROPY=1, no jitter object)"
tar -tJf "$distrib/$archive" | sed 's|^[^/]*/||' | sort | tr '\n' ' ' > "$work/contents"
[ "$(cat "$work/contents")" = "LICENSE README.md eic " ] ||
  [ "$(cat "$work/contents")" = " LICENSE README.md eic " ] ||
  fail "the archive holds: $(cat "$work/contents")"
say "   $(ls "$distrib" | tr '\n' ' ')"

# Serves a directory on 127.0.0.1 (port 0); sets `port` once it listens (read from a fifo,
# no sleep).
serve() {
  rm -f "$work/server.fifo" && mkfifo "$work/server.fifo"
  python3 -u -c '
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()' "$1" > "$work/server.fifo" &
  server=$!
  read -r port < "$work/server.fifo"
}

# Runs the installer from the server into a fresh HOME; its status.
install_into() {
  local home=$1
  mkdir -p "$home"
  set +e
  env -i HOME="$home" PATH=/usr/bin:/bin INSTALLER_DOWNLOAD_URL="http://127.0.0.1:$port" \
    EIC_NO_MODIFY_PATH=1 sh "$distrib/eic-installer.sh" > "$home.log" 2>&1
  local status=$?
  set -e
  return $status
}

step "2. the shell installer, from 127.0.0.1, into a fresh HOME"
serve "$distrib"
install_into "$work/home" || fail "the installer: $(cat "$work/home.log")"
eic="$work/home/.cargo/bin/eic"
[ -x "$eic" ] || fail "nothing installed at $eic: $(cat "$work/home.log")"
got=$("$eic" --version)
[ "$got" = "eic $version" ] || fail "installed eic says '$got', Cargo.toml says $version"
readelf -lW "$eic" | grep -q 'Requesting program interpreter' && fail "$eic is dynamically linked"
readelf -dW "$eic" | grep -q NEEDED && fail "$eic needs shared libraries"
say "   $got, static ($(du -k "$eic" | cut -f1) KiB), installed in $eic"

cargo build --locked --example playground 2>/dev/null
mkfifo "$work/playground.fifo"
"$targets/debug/examples/playground" > "$work/playground.fifo" 2>&1 &
playground=$!
exec 3< "$work/playground.fifo"
exports=()
while read -r line <&3; do
  case "$line" in
    export\ *) exports+=("${line#export }") ;;
    *"--os-user "*) user=${line##*--os-user }; user=${user%% *} ;;
    "Press Ctrl-C"*) break ;;
  esac
done
[ -n "${user:-}" ] || fail "the playground did not start"
instance=i-0123456789abcdef0
login=$(env -u AWS_PROFILE "${exports[@]//\'/}" HOME="$work/home" \
  "$eic" ssh --no-reuse --instance-id "$instance" --os-user "$user" -- \
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR 'echo login-ok') ||
  fail "a login with the installed eic"
[ "$login" = login-ok ] || fail "the login said: $login"
say "   a login through the stand-in with the installed eic: $login"

step "3. one byte of the archive changed: the installer refuses"
mkdir "$work/tampered"
find "$distrib" -maxdepth 1 -type f -exec cp {} "$work/tampered/" \;
python3 - "$work/tampered/$archive" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 0x01]))
PY
kill "$server"
serve "$work/tampered"
if install_into "$work/home2"; then fail "the installer took a changed archive"; fi
[ -z "$(find "$work/home2" -name 'eic*' -type f)" ] || fail "something was installed: $(find "$work/home2")"
say "   refused: $(grep -i -m1 'checksum\|sha256\|mismatch' "$work/home2.log" || tail -1 "$work/home2.log")"

step "4. eic.exe (x86_64-pc-windows-gnu, cross-built with cargo) under wine"
cargo build --locked --target x86_64-pc-windows-gnu
cat > "$work/shim.c" <<'C'
#include <windows.h>
#include <ntsecapi.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return RtlGenRandom(data, (ULONG)len); }
C
# Wine 8 lacks ProcessPrng (Windows 10+ has it): a test-only DLL beside the .exe, never shipped.
mkdir "$work/win"
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/win/bcryptprimitives.dll" "$work/shim.c" -ladvapi32
cp "$targets/x86_64-pc-windows-gnu/debug/eic.exe" "$work/win/"
got=$(WINEPREFIX="$work/prefix" WINEDEBUG=-all /usr/lib/wine/wine64 "$work/win/eic.exe" --version | tr -d '\r')
[ "$got" = "eic $version" ] || fail "eic.exe --version says '$got'"
say "   wine eic.exe --version: $got"

step "5. clippy for aarch64-apple-darwin (zig as the C compiler)"
zig_venv="$tools/zig"
[ -x "$zig_venv/bin/python3" ] || python3 -m venv "$zig_venv"
"$zig_venv/bin/pip" install --quiet --disable-pip-version-check ziglang==0.17.1
zig=$(echo "$zig_venv"/lib/python3*/site-packages/ziglang/zig)
# zig cc takes no Apple flags (-arch, --target): they are dropped.
cat > "$work/zigcc" <<SH
#!/bin/sh
skip=
for a in "\$@"; do
  shift
  if [ -n "\$skip" ]; then skip=; continue; fi
  case "\$a" in
    -arch) skip=1 ;;
    --target=*|-mmacosx-version-min=*) ;;
    *) set -- "\$@" "\$a" ;;
  esac
done
exec "$zig" cc -target aarch64-macos "\$@"
SH
chmod +x "$work/zigcc"
CC_aarch64_apple_darwin="$work/zigcc" AR_aarch64_apple_darwin="$zig ar" \
  cargo clippy --locked --target aarch64-apple-darwin --workspace --all-targets -- -D warnings

step "passed"
