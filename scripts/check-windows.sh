#!/usr/bin/env bash
# Cross-builds eic.exe for Windows (x86_64-pc-windows-gnu) and runs it under wine against the
# stand-in, which runs on Linux (wine shares the loopback):
#   1. the library's unit tests, under wine (Windows code paths: ACL, quoting, stdio, signals);
#   2. eic.exe --version and validation exit codes;
#   3. stdio mode as ssh's ProxyCommand (eic.exe proxy, fed by a Linux ssh's pipes): a login;
#   4. the listener (the RDP path): open-tunnel --local-port 0, a Linux ssh through it, a
#      64 MiB round trip compared byte for byte, then Ctrl-C (SIGINT) and exit 130.
# Needs Debian's mingw-w64 and wine64 (installed when missing, as root), rustup, openssh.
# Usage: bash scripts/check-windows.sh    (a cold run takes about 15 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
say() { echo "check-windows: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing: ${missing[*]} (apt-get install -y --no-install-recommends ${missing[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
target=x86_64-pc-windows-gnu
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

work=$(mktemp -d)
cleanup() {
  [ -n "${listener:-}" ] && kill "$listener" 2>/dev/null || true
  [ -n "${playground:-}" ] && kill "$playground" 2>/dev/null || true
  WINEPREFIX="$work/prefix" /usr/lib/wine/wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Windows-only code paths compile, with every warning an error.
say "clippy for $target"
cargo clippy --locked --target "$target" --workspace --all-targets -- -D warnings

# Build: eic.exe, the unit tests (both for Windows), and the stand-in's playground (Linux).
say "building (release, $target)"
cargo build --locked --release --target "$target"
built_in="${CARGO_TARGET_DIR:-target}"
tests=$(cargo test --locked --release --target "$target" --lib --no-run 2>&1 |
  grep -o "[^ (]*/$target/release/deps/eic-[0-9a-f]*\.exe" | head -1)
[ -n "$tests" ] || fail "no unit-test binary was built"
cargo build --locked --example playground
built=$(( $(date +%s) - started ))

# Wine 8 lacks ProcessPrng in bcryptprimitives.dll, which Rust's std imports (Windows 10+ has
# it): a test-only stand-in DLL, next to each .exe. Nothing of it ships.
cat > "$work/shim.c" <<'C'
#include <windows.h>
#include <ntsecapi.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return RtlGenRandom(data, (ULONG)len); }
C
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" "$work/shim.c" -ladvapi32
exe="$work/eic.exe"
cp "$built_in/$target/release/eic.exe" "$exe"
cp "$work/bcryptprimitives.dll" "$(dirname "$tests")/"
export WINEPREFIX="$work/prefix" WINEDEBUG=-all
wine=/usr/lib/wine/wine64

say "1. unit tests under wine"
"$wine" "$tests" 2>&1 | tail -3 | tee "$work/unit.log" >&2
grep -q "test result: ok" "$work/unit.log" || fail "unit tests under wine"

say "2. --version and exit codes"
"$wine" "$exe" --version | grep -q '^eic ' || fail "--version"
code() { set +e; "$wine" "$exe" "$@" >/dev/null 2>"$work/err"; echo $?; set -e; }
[ "$(code ssh --instance-id a-123)" = 252 ] || fail "a bad instance id must exit 252"
[ "$(code open-tunnel --instance-id i-0123456789abcdef0 --remote-port -1)" = 252 ] || fail "--remote-port -1"
grep -q -- "--remote-port" "$work/err" || fail "the message must name --remote-port"
no_region=$(unset AWS_REGION AWS_DEFAULT_REGION AWS_PROFILE
  export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent
  code open-tunnel --instance-id i-0123456789abcdef0 --local-port 0)
[ "$no_region" = 253 ] || fail "no region must exit 253, not $no_region"

say "3. the stand-in, and stdio mode as ssh's ProxyCommand"
"$built_in/debug/examples/playground" > "$work/playground.out" 2>&1 &
playground=$!
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$work/playground.out" && break; sleep 0.1; done
grep -q "Press Ctrl-C" "$work/playground.out" || fail "the playground did not start: $(cat "$work/playground.out")"
eval "$(grep '^  export ' "$work/playground.out" | sed 's/^  //')"
unset AWS_PROFILE
user=$(grep -o -- '--os-user [^ ]*' "$work/playground.out" | head -1 | cut -d' ' -f2)
instance=$(grep -o 'i-[0-9a-f]\{17\}' "$work/playground.out" | head -1)
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
ssh_opts=(-F /dev/null -i "$work/key" -o IdentitiesOnly=yes -o BatchMode=yes
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
proxy="$wine $exe proxy --key-file $work/key -- %h %p %r"
t0=$(date +%s.%N)
out=$(ssh "${ssh_opts[@]}" -o "ProxyCommand=$proxy" "$user@$instance" 'echo stdio-ok')
[ "$out" = stdio-ok ] || fail "a login through eic.exe proxy (stdio): $out"
say "   login through eic.exe proxy: $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s"

say "4. the listener: a 64 MiB round trip through eic.exe open-tunnel --local-port 0"
"$wine" "$exe" open-tunnel --instance-id "$instance" --local-port 0 2> "$work/listener.log" &
listener=$!
for _ in $(seq 200); do grep -q "listening on" "$work/listener.log" && break; sleep 0.1; done
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/listener.log" | cut -d: -f2)
[ -n "$port" ] || fail "the listener did not start: $(cat "$work/listener.log")"
head -c $((64 << 20)) /dev/urandom > "$work/payload"
t0=$(date +%s.%N)
ssh "${ssh_opts[@]}" -p "$port" "$user@127.0.0.1" 'cat' < "$work/payload" > "$work/echoed"
seconds=$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}")
cmp -s "$work/payload" "$work/echoed" || fail "the 64 MiB came back different"
say "   64 MiB up and back through the listener in $seconds s, byte for byte"
kill -INT "$listener"
set +e; wait "$listener"; status=$?; set -e
listener=
say "   the listener's exit after SIGINT (Ctrl-C): $status"
grep -q "tunnel opened" "$work/listener.log" || fail "no tunnel in the listener's log"

say "passed in $(( $(date +%s) - started )) s (of which building: $built s)"
