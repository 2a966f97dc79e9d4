#!/usr/bin/env bash
# The packages' test (run by scripts/test.sh; needs root): builds the shipped binaries and
# the Debian packages (scripts/package.sh), checks the binaries' sizes and split debug info,
# runs `systemd-analyze verify` and `systemd-analyze security` on the units, installs the
# packages with `apt-get install ./….deb`, checks the binaries, users, units and conffiles,
# then purges them and checks that nothing is left behind.
#
#   sudo scripts/package-test.sh
#
# Env: PACKAGE_TEST_DIST_DIR=DIR packages binaries already built by scripts/dist.sh DIR.
# Security exposure thresholds (systemd-analyze security, 0 = best, 10 = worst):
# SECURITY_MAX_CORE (default 2.0), SECURITY_MAX_MONITOR (3.5), SECURITY_MAX_CLIENT (3.5).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/package-test.sh: must run as root (it installs and purges packages)" >&2
  exit 1
fi
for tool in dpkg-deb apt-get systemd-analyze readelf objcopy; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "scripts/package-test.sh: $tool not found (systemd-analyze: package systemd; readelf, objcopy: binutils)" >&2
    exit 1
  }
done

names=(core-lite adapter-server adapter-client)
bins=(core-lite adapter-server adapter-server-hook adapter-client)
units=(core-lite@.service adapter-server-monitor.service adapter-client@.service)
users=(core-lite adapter-server)
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
out=$target/package-test
work=$(mktemp -d)
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
ok() { echo "package-test: ok: $*"; }

purge_all() {
  local installed=()
  for n in "${names[@]}"; do
    for p in "$n" "$n-dbgsym"; do
      dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep 'installed\|config-files' >/dev/null \
        && installed+=("$p")
    done
  done
  if [ ${#installed[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${installed[@]}" >/dev/null
  fi
}
cleanup() {
  local s=$?
  purge_all || true
  rm -rf "$work"
  exit "$s"
}
trap cleanup EXIT
# A left-over install of an earlier run would hide what this one does.
purge_all

# --- build ---
start=$(date +%s)
if [ -n "${PACKAGE_TEST_DIST_DIR:-}" ]; then
  DIST_DIR=$PACKAGE_TEST_DIST_DIR scripts/package.sh "$out"
  dist=$(realpath -m "$PACKAGE_TEST_DIST_DIR")
else
  scripts/package.sh "$out"
  dist=$target/dist-out
fi
ok "binaries and packages built in $(( $(date +%s) - start )) s"

# --- binaries: small, no debug sections, a debuglink to a debug file that has them ---
# (grep reads whole outputs: with pipefail, `readelf | grep -q` fails when grep stops early.)
for b in "${bins[@]}"; do
  size=$(stat -c %s "$dist/bin/$b")
  [ "$size" -le 15000000 ] || fail "$b is $size bytes (more than 15 MB)"
  sections=$(readelf -S -W "$dist/bin/$b" 2>/dev/null)
  # (.debug_gdb_scripts is loaded code's pretty-printer list, not debug info.)
  if grep -E ' \.debug_(info|line|str|abbrev|ranges|rnglists|loc)' <<<"$sections" >/dev/null; then
    fail "$b still has debug sections"
  fi
  link=$(readelf --string-dump=.gnu_debuglink "$dist/bin/$b" 2>/dev/null | sed -n 's/.*\] *//p' | head -1)
  [ "$link" = "$b.debug" ] || fail "$b: .gnu_debuglink is '$link', not $b.debug"
  sections=$(readelf -S -W "$dist/debug/$b.debug" 2>/dev/null)
  grep ' \.debug_line' <<<"$sections" >/dev/null || fail "$dist/debug/$b.debug has no line tables"
  ok "$b: $size bytes, stripped, debuglink $link"
done

# --- unit files, before installing: verify against the package tree ---
tree=$work/tree
mkdir -p "$tree"
for n in "${names[@]}"; do
  dpkg-deb -x "$out/${n}_"*"_$(dpkg --print-architecture).deb" "$tree"
done
for f in "${names[@]}"; do
  listing=$(dpkg-deb -c "$out/${f}-dbgsym_"*.deb)
  grep "/usr/lib/debug/usr/bin/" <<<"$listing" >/dev/null || fail "$f-dbgsym has no debug files"
done
listing=$(dpkg-deb -c "$out"/adapter-server_*.deb)
grep ' ./usr/bin/adapter-server-hook$' <<<"$listing" >/dev/null \
  || fail "adapter-server does not ship /usr/bin/adapter-server-hook"

# --- install ---
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "$out"/*.deb >/dev/null || fail "apt-get install ./….deb"
for n in "${names[@]}"; do
  dpkg-query -W -f='${Status}\n' "$n" | grep '^install ok installed$' >/dev/null \
    || fail "$n is not installed"
  dpkg-query -L "$n" > "$work/$n.files"
  dpkg-query -L "$n-dbgsym" >> "$work/$n.files"
done
ok "installed: $(ls "$out" | tr '\n' ' ')"

for b in "${bins[@]}"; do
  [ -x "/usr/bin/$b" ] || fail "/usr/bin/$b missing"
  [ -f "/usr/lib/debug/usr/bin/$b.debug" ] || fail "/usr/lib/debug/usr/bin/$b.debug missing"
done
/usr/bin/core-lite --version | grep '^core-lite ' >/dev/null || fail "core-lite --version"
/usr/bin/adapter-server --version | grep '^adapter-server ' >/dev/null || fail "adapter-server --version"
/usr/bin/adapter-client --version | grep '^adapter-client ' >/dev/null || fail "adapter-client --version"
/usr/bin/adapter-server-hook --help 2>&1 | grep -i 'hand' >/dev/null || fail "adapter-server-hook --help"
ok "binaries run"

# The debug files give the symbols back: gdb on the stripped /usr/bin/core-lite finds, through
# its debuglink, the file and line of core-lite's main (address from the debug file's
# symbol table).
if command -v gdb >/dev/null 2>&1; then
  symbols=$(readelf -s -W /usr/lib/debug/usr/bin/core-lite.debug 2>/dev/null)
  addr=$(awk '$4 == "FUNC" && $8 ~ /^_ZN9core_lite4main17h/ {print $2; exit}' <<<"$symbols")
  [ -n "$addr" ] || fail "core_lite::main not in the debug file's symbol table"
  where=$(gdb -batch -ex "info line *0x$addr" /usr/bin/core-lite 2>&1)
  grep 'of "core-lite/src/main.rs"' <<<"$where" >/dev/null \
    || { echo "$where" >&2; fail "gdb does not find core-lite's line table through the debuglink"; }
  ok "gdb finds the symbols through the debuglink"
fi

for u in "${users[@]}"; do
  getent passwd "$u" >/dev/null || fail "user $u missing"
  shell=$(getent passwd "$u" | cut -d: -f7)
  [ "$shell" = /usr/sbin/nologin ] || fail "user $u has shell $shell"
done
ok "users: ${users[*]}"

for u in "${units[@]}"; do
  [ -f "/lib/systemd/system/$u" ] || fail "/lib/systemd/system/$u missing"
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' "${names[@]}" | awk 'NF {print $1}' | sort)
want=$(printf '%s\n' /etc/core-lite/agent.toml /etc/core-lite/client.toml \
  /etc/adapter-server/config.toml /etc/adapter-client/example.toml | sort)
[ "$conffiles" = "$want" ] || fail "conffiles are: $conffiles"
ok "units and conffiles in place"

# The control plane yields the CPU to OpenVPN's data plane (what bench-net --control-nice
# assumes; docs/BENCHMARKS.md, "Login storm").
for u in core-lite@.service adapter-server-monitor.service; do
  for want in Nice=10 CPUWeight=10; do
    grep -qx "$want" "/lib/systemd/system/$u" || fail "$u lacks $want"
  done
done
ok "core-lite and the monitor run at Nice=10, CPUWeight=10"

# systemd-analyze verify: templates through an instance; the checks cover ExecStart's binary
# and every directive.
for u in core-lite@agent.service core-lite@client.service adapter-server-monitor.service \
  adapter-client@c-test.service; do
  if ! systemd-analyze verify "$u" > "$work/verify.log" 2>&1; then
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify $u"
  fi
  # verify also warns about other units of the machine; none may be about ours.
  if grep -E "core-lite|adapter-" "$work/verify.log"; then
    fail "systemd-analyze verify $u warns"
  fi
done
ok "systemd-analyze verify"

# systemd-analyze security (offline: works without a running systemd): exposure score.
security() {
  local file=$1 max=$2 score
  systemd-analyze security --offline=true --no-pager "$file" > "$work/sec.log" 2>&1 || true
  score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' "$work/sec.log")
  [ -n "$score" ] || { cat "$work/sec.log" >&2; fail "no exposure score for $file"; }
  awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' || {
    cat "$work/sec.log" >&2
    fail "$file: exposure $score > $max"
  }
  ok "systemd-analyze security $(basename "$file"): $score (≤ $max)"
}
cp /lib/systemd/system/core-lite@.service "$work/core-lite@agent.service"
cp /lib/systemd/system/adapter-client@.service "$work/adapter-client@c-test.service"
security "$work/core-lite@agent.service" "${SECURITY_MAX_CORE:-2.0}"
security /lib/systemd/system/adapter-server-monitor.service "${SECURITY_MAX_MONITOR:-3.5}"
security "$work/adapter-client@c-test.service" "${SECURITY_MAX_CLIENT:-3.5}"

# The shipped configs: check-config passes on core-lite's (they start the units as they
# are), and the installed core-lite reads its config.
for role in agent client; do
  core-lite check-config "/etc/core-lite/$role.toml" | grep ': OK$' >/dev/null \
    || fail "core-lite check-config /etc/core-lite/$role.toml"
done
core-lite --config /etc/core-lite/agent.toml --data-dir "$work/data" module list >/dev/null \
  || fail "core-lite with the shipped config"
# adapter-server's needs the operator's files: check-config names each missing one.
set +e
adapter-server check-config /etc/adapter-server/config.toml > "$work/check.log"
code=$?
set -e
[ "$code" = 1 ] || fail "adapter-server check-config exit $code on the unedited config"
grep -q '^/etc/adapter-server/config.toml:[0-9]*: key `token_file`: ' "$work/check.log" \
  || { cat "$work/check.log" >&2; fail "check-config does not name token_file"; }
ok "check-config on the shipped configs"

# --- purge: nothing left behind ---
runuser -u core-lite -- true || fail "the core-lite user cannot run"
mkdir -p /var/lib/core-lite/agent /run/adapter-server /run/adapter-client
chown core-lite: /var/lib/core-lite/agent
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${names[@]}" \
  "${names[@]/%/-dbgsym}" >/dev/null || fail "apt-get purge"
for n in "${names[@]}"; do
  if dpkg-query -W -f='${Status}\n' "$n" 2>/dev/null | grep 'installed\|config-files' >/dev/null; then
    fail "$n still known to dpkg"
  fi
  while read -r f; do
    case "$f" in
      /. | /etc | /usr | /usr/bin | /usr/lib | /usr/share | /usr/share/doc | /lib | /lib/systemd \
        | /lib/systemd/system | /usr/lib/debug | /usr/lib/debug/usr | /usr/lib/debug/usr/bin \
        | /usr/lib/sysusers.d | /usr/lib/debug/.build-id*) continue ;;
    esac
    [ ! -e "$f" ] || fail "$f left behind by $n"
  done < "$work/$n.files"
done
for d in /etc/core-lite /etc/adapter-server /etc/adapter-client /var/lib/core-lite \
  /run/adapter-server /run/adapter-client /usr/share/doc/core-lite; do
  [ ! -e "$d" ] || fail "$d left behind"
done
for u in "${users[@]}"; do
  if getent passwd "$u" >/dev/null || getent group "$u" >/dev/null; then
    fail "user or group $u left behind"
  fi
done
ok "purged, nothing left behind"
echo "package-test: all checks passed"
