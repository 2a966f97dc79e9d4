#!/usr/bin/env bash
# The whole test suite: formatting, lints, build, unit and integration tests, and the
# end-to-end tests (real OpenVPN in network namespaces, which is why this needs root).
#
#   sudo scripts/test.sh
#
# Env: E2E_TEST_THREADS (default 2) parallel end-to-end tests; CARGO_TARGET_DIR as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: must run as root: the end-to-end tests create network namespaces," >&2
  echo "tun devices and veth pairs. Run: sudo $0" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo not found in PATH (install Rust, e.g. with rustup)" >&2
  exit 1
fi

# Tools the end-to-end tests run; installed only when a command is missing.
missing=()
# tcpdump captures the link between the hosts (secure_transport). promtool checks every metrics scrape, prometheus scrapes them (issue 15); chromium and
# chromedriver run the web console's browser test.
for pair in openvpn:openvpn iperf3:iperf3 ip:iproute2 tc:iproute2 openssl:openssl jq:jq curl:curl \
  python3:python3 nft:nftables dnsmasq:dnsmasq-base getent:libc-bin tcpdump:tcpdump \
  promtool:prometheus prometheus:prometheus chromium:chromium chromedriver:chromium-driver \
  systemd-analyze:systemd readelf:binutils objcopy:binutils dpkg-deb:dpkg; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# scripts/api-fuzz.sh installs schemathesis into a venv: python3 needs venv and ensurepip.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "==> installing $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages that ship a service (prometheus) must not start it here: policy-rc.d says no
  # for the time of the install (unless the machine has its own).
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  status=0
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null || status=$?
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
  [ "$status" = 0 ] || exit "$status"
fi
if [ ! -c /dev/net/tun ]; then
  mkdir -p /dev/net
  mknod -m 600 /dev/net/tun c 10 200 || {
    echo "scripts/test.sh: /dev/net/tun is missing and cannot be created" >&2
    exit 1
  }
fi

step() { printf '\n==> %s\n' "$*"; }

step cargo fmt --all -- --check
cargo fmt --all -- --check

step cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked -- -D warnings

step cargo build --workspace --bins --locked
cargo build --workspace --bins --locked

# A missing requirement is a failure here, never a silent skip.
export E2E_REQUIRED=1

step cargo test --workspace --locked --exclude e2e
cargo test --workspace --locked --exclude e2e

# The core-lite suite again, on PostgreSQL (a private cluster on a unix socket, removed
# after), with the tests of several cores on one database and of a PostgreSQL restart.
step scripts/pg-test.sh cargo test -p core-lite --locked
scripts/pg-test.sh cargo test -p core-lite --locked

# The OpenAPI document against a running core: schemathesis, every check, 0 failures.
step scripts/api-fuzz.sh
scripts/api-fuzz.sh

# Shipped binaries (≤ 15 MB, debug info split off) and the Debian packages: built,
# systemd-analyze verify/security on the units, installed, checked, purged. Costs the dist
# build from scratch (measured: 502 s user + 26 s sys of CPU, about 4.5-6 min on an idle
# 2-core machine) and about 30 s for packaging and the checks.
step scripts/package-test.sh
scripts/package-test.sh

# Namespace tests are heavy (OpenVPN processes, TLS handshakes): limit parallelism. Under
# scripts/pg-test.sh: multi_core_pg_e2e runs two cores on that PostgreSQL (the other tests
# use SQLite in their data dirs, as before). --no-fail-fast: every e2e binary runs even
# after one failed, so a red run shows all its failures at once.
step scripts/pg-test.sh cargo test -p e2e --locked --no-fail-fast -- --test-threads="${E2E_TEST_THREADS:-2}"
scripts/pg-test.sh cargo test -p e2e --locked --no-fail-fast -- --test-threads="${E2E_TEST_THREADS:-2}"

step all tests passed
