#!/usr/bin/env bash
# Debian packages of the three programs, built with dpkg-deb from scripts/dist.sh's
# stripped binaries and packaging/ (systemd units, configs, sysusers):
#
#   scripts/package.sh [OUT_DIR]     # default: $CARGO_TARGET_DIR/debian (target/debian)
#
#   core-lite        /usr/bin/core-lite, core-lite@.service (instances agent, client),
#                    /etc/core-lite/{agent,client}.toml, user core-lite
#   adapter-server   /usr/bin/adapter-server, /usr/bin/adapter-server-hook,
#                    adapter-server-monitor.service, /etc/adapter-server/config.toml,
#                    user adapter-server
#   adapter-client   /usr/bin/adapter-client, adapter-client@.service (instance = client
#                    key), /etc/adapter-client/example.toml
#   NAME-dbgsym      the split debug info: /usr/lib/debug/usr/bin/BIN.debug
#
# Env: DIST_DIR=DIR takes the binaries from DIR/bin and DIR/debug instead of running
# scripts/dist.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
out=$(realpath -m "${1:-$target/debian}")

if [ -n "${DIST_DIR:-}" ]; then
  dist=$(realpath -m "$DIST_DIR")
else
  dist=$target/dist-out
  scripts/dist.sh "$dist"
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "scripts/package.sh: no version in Cargo.toml" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
rm -rf "$out"
mkdir -p "$out"

# control NAME DEPENDS RECOMMENDS DESCRIPTION
control() {
  local dir=$1 name=$2 depends=$3 recommends=$4 desc=$5
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: VPN service module pair maintainers <root@localhost>"
    echo "Section: net"
    echo "Priority: optional"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
    [ -z "$depends" ] || echo "Depends: $depends"
    [ -z "$recommends" ] || echo "Recommends: $recommends"
    echo "Description: $desc"
  } > "$dir/DEBIAN/control"
}

# Maintainer scripts. USER: the package's system user ("" for none); DIRS: what purge
# removes; UNITS: glob of the units' names (instances enabled by hand are disabled on purge).
maintscripts() {
  local dir=$1 name=$2 user=$3 dirs=$4 units=$5
  cat > "$dir/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
  if [ -n "$user" ] && ! getent passwd "$user" >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
      systemd-sysusers /usr/lib/sysusers.d/$name.conf
    else
      useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$user"
    fi
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
EOF
  cat > "$dir/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop '$units' || true
fi
exit 0
EOF
  cat > "$dir/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = purge ]; then
  rm -f /etc/systemd/system/*.wants/$units
  rm -rf $dirs
  if [ -n "$user" ] && getent passwd "$user" >/dev/null; then
    userdel "$user" || true
  fi
  if [ -n "$user" ] && getent group "$user" >/dev/null; then
    groupdel "$user" || true
  fi
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
  chmod 0755 "$dir/DEBIAN/postinst" "$dir/DEBIAN/prerm" "$dir/DEBIAN/postrm"
  (cd "$dir" && find etc -type f 2>/dev/null | sed 's|^|/|' | sort) > "$dir/DEBIAN/conffiles"
  [ -s "$dir/DEBIAN/conffiles" ] || rm -f "$dir/DEBIAN/conffiles"
}

build() {
  local dir=$1
  # xz at level 1: a fraction of the default's time for a few percent more bytes.
  dpkg-deb --root-owner-group -Zxz -z1 --build "$dir" "$out" >/dev/null
}

# package NAME "BINS" "UNITS" DEPENDS RECOMMENDS USER "PURGE_DIRS" UNIT_GLOB DESCRIPTION
package() {
  local name=$1 bins=$2 units=$3 depends=$4 recommends=$5 user=$6 dirs=$7 glob=$8 desc=$9
  local dir=$stage/$name dbg=$stage/$name-dbgsym
  mkdir -p "$dir/DEBIAN" "$dir/usr/bin" "$dir/lib/systemd/system" \
    "$dir/usr/share/doc/$name" "$dbg/DEBIAN" "$dbg/usr/lib/debug/usr/bin"
  for b in $bins; do
    install -m 0755 "$dist/bin/$b" "$dir/usr/bin/$b"
    install -m 0644 "$dist/debug/$b.debug" "$dbg/usr/lib/debug/usr/bin/$b.debug"
  done
  for u in $units; do
    install -m 0644 "packaging/systemd/$u" "$dir/lib/systemd/system/$u"
  done
  if [ -d "packaging/etc/$name" ]; then
    mkdir -p "$dir/etc/$name"
    cp -a "packaging/etc/$name/." "$dir/etc/$name/"
    chmod 0755 "$dir/etc/$name"
    find "$dir/etc/$name" -type f -exec chmod 0644 {} +
  fi
  if [ -f "packaging/sysusers/$name.conf" ]; then
    install -D -m 0644 "packaging/sysusers/$name.conf" "$dir/usr/lib/sysusers.d/$name.conf"
  fi
  printf 'VPN service module pair: %s\nLicense: MIT OR Apache-2.0\n' "$name" \
    > "$dir/usr/share/doc/$name/copyright"
  maintscripts "$dir" "$name" "$user" "$dirs" "$glob"
  control "$dir" "$name" "$depends" "$recommends" "$desc"
  build "$dir"
  control "$dbg" "$name-dbgsym" "$name (= $version)" "" \
    "debug symbols of $name
 The debug info split off the binaries of $name (found by gdb through their
 .gnu_debuglink in /usr/lib/debug/usr/bin)."
  sed -i 's/^Section: net/Section: debug/' "$dbg/DEBIAN/control"
  build "$dbg"
}

package core-lite core-lite core-lite@.service "libc6" "" core-lite /var/lib/core-lite \
  'core-lite@*.service' \
  "light core of the VPN service module pair
 Templates, products, signed offerings, channels, sessions, exact byte accounting
 and billing, the Service API and the market API over HTTP/JSON, SQLite storage.
 Runs as core-lite@agent.service or core-lite@client.service."
package adapter-server "adapter-server adapter-server-hook" adapter-server-monitor.service \
  "libc6" "openvpn, iproute2, nftables" adapter-server "/run/adapter-server" \
  'adapter-server-monitor.service' \
  "OpenVPN server adapter of the VPN service module pair
 The script hook OpenVPN runs (adapter-server-hook, handing events to the monitor),
 the management-interface monitor (usage reports, kills, per-client tc speed limits)
 as adapter-server-monitor.service, and push-config."
# /run/adapter-client and /var/lib/adapter-client: connections' state and the client core
# `adapter-client up` keeps as root.
package adapter-client adapter-client "adapter-client@.service" "libc6, openvpn, iproute2" \
  "nftables" "" "/run/adapter-client /var/lib/adapter-client" 'adapter-client@*.service' \
  "OpenVPN client adapter of the VPN service module pair
 Buys VPN service from an agent (adapter-client up), connects with OpenVPN, reports
 usage and applies the offering's speed limits; adapter-client@KEY.service keeps one
 channel connected."

ls -l "$out"
cd "$root"
