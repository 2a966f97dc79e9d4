#!/usr/bin/env bash
# Builds adapter-server-hook linked statically (glibc, `-C target-feature=+crt-static`):
# OpenVPN waits for this process at every login, and without the dynamic loader it starts
# as fast as /bin/true (dynamically linked it took 1.29x /bin/true's wall time, static
# 0.99x; farm-bench, 60 pairs). The hook uses no NSS function (no user, host or service
# lookups), so static glibc has none of its usual caveats here. Only the hook: everything
# else stays dynamically linked.
#
#   scripts/static-hook.sh PROFILE        # prints the path of the binary
#
# The build goes to $CARGO_TARGET_DIR/static-hook (a target dir of its own: RUSTFLAGS
# differ) with an explicit --target, so the flags reach the hook and not build scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:?usage: scripts/static-hook.sh PROFILE (release, dist)}
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
host=$(rustc -vV | sed -n 's/^host: //p')
dir="$target/static-hook"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_INCREMENTAL=0 CARGO_TARGET_DIR="$dir" \
  cargo build --profile "$profile" --locked -p adapter-server-hook --target "$host" >&2
bin="$dir/$host/$profile/adapter-server-hook"
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "scripts/static-hook.sh: $bin is not statically linked" >&2
  exit 1
fi
echo "$bin"
