#!/usr/bin/env bash
# Builds the shipped binaries: core-lite, adapter-server, adapter-server-hook, adapter-client.
#
#   scripts/dist.sh [OUT_DIR]      # default: $CARGO_TARGET_DIR/dist-out (target/dist-out)
#
# Cargo profile `dist` (release code, line tables). The debug info of each binary is split
# off into OUT_DIR/debug/NAME.debug (objcopy --only-keep-debug, compressed) and the binary
# in OUT_DIR/bin/NAME is stripped, with a .gnu_debuglink to NAME.debug: gdb, addr2line -e
# NAME.debug, or the -dbgsym packages (/usr/lib/debug/usr/bin/NAME.debug) give the symbols
# back. adapter-server-hook is linked statically (scripts/static-hook.sh: OpenVPN waits for
# it at every login). Fails when a shipped binary is larger than DIST_MAX_BYTES (default
# 15 MB).
# Env: DIST_SKIP_BUILD=1 uses binaries already in $CARGO_TARGET_DIR/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
out=$(realpath -m "${1:-$target/dist-out}")
max=${DIST_MAX_BYTES:-15000000}
bins=(core-lite adapter-server adapter-server-hook adapter-client)

for tool in objcopy cargo; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "scripts/dist.sh: $tool not found (objcopy: Debian package binutils)" >&2
    exit 1
  }
done

if [ "${DIST_SKIP_BUILD:-0}" != 1 ]; then
  start=$(date +%s)
  CARGO_INCREMENTAL=0 cargo build --profile dist --locked \
    -p core-lite -p adapter-server -p adapter-server-hook -p adapter-client --bins
  # The hook statically linked (see scripts/static-hook.sh).
  scripts/static-hook.sh dist >/dev/null
  echo "dist build: $(( $(date +%s) - start )) s"
fi
host=$(rustc -vV | sed -n 's/^host: //p')

rm -rf "$out/bin" "$out/debug"
mkdir -p "$out/bin" "$out/debug"
status=0
printf '%-22s %12s %12s %12s\n' binary unstripped shipped debug-file
for b in "${bins[@]}"; do
  src=$target/dist/$b
  [ "$b" = adapter-server-hook ] && src=$target/static-hook/$host/dist/$b
  [ -f "$src" ] || { echo "scripts/dist.sh: $src missing (build failed?)" >&2; exit 1; }
  objcopy --only-keep-debug --compress-debug-sections=zlib "$src" "$out/debug/$b.debug"
  # The link is made from the debug file's name and CRC; run it where the file is.
  (cd "$out/debug" && objcopy --strip-all --add-gnu-debuglink="$b.debug" "$src" "$out/bin/$b")
  chmod 0755 "$out/bin/$b"
  chmod 0644 "$out/debug/$b.debug"
  size=$(stat -c %s "$out/bin/$b")
  printf '%-22s %12s %12s %12s\n' "$b" "$(stat -c %s "$src")" "$size" \
    "$(stat -c %s "$out/debug/$b.debug")"
  if [ "$size" -gt "$max" ]; then
    echo "scripts/dist.sh: $b is $size bytes, more than $max" >&2
    status=1
  fi
done
exit "$status"
