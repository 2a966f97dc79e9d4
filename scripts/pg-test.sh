#!/usr/bin/env bash
# Runs a command (default: the core-lite test suite) against a private, throw-away PostgreSQL
# cluster: installs `postgresql` with apt when initdb is missing, creates a cluster in a
# temporary directory owned by the `postgres` user, listening only on a unix socket there (no
# TCP), exports CORE_LITE_TEST_DATABASE (a postgres:// URL to that socket; every test core
# creates its own database in it) and removes the cluster whatever happens.
#
#   sudo scripts/pg-test.sh                          # cargo test -p core-lite against PostgreSQL
#   sudo scripts/pg-test.sh cargo test -p core-lite --test billing
#   sudo scripts/pg-test.sh bash                     # a shell with the cluster up
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/pg-test.sh: must run as root (it runs the cluster as the postgres user)" >&2
  exit 1
fi

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}
if ! bin=$(pg_bin); then
  echo "==> installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null || status=$?
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
  [ "$status" = 0 ] || exit "$status"
  bin=$(pg_bin) || { echo "scripts/pg-test.sh: initdb not found after installing postgresql" >&2; exit 1; }
fi
id postgres >/dev/null 2>&1 || { echo "scripts/pg-test.sh: no postgres user" >&2; exit 1; }

dir=$(mktemp -d /tmp/core-lite-pg.XXXXXX)
chmod 755 "$dir"
chown postgres: "$dir"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
# One socket in $dir, no TCP; throw-away data: no fsync for the tests' speed (PG_TEST_FSYNC=on
# for benchmarks). In the configuration file, so that a plain `pg_ctl start` (the restart
# test) starts it the same.
cat >> "$dir/data/postgresql.conf" <<CONF
unix_socket_directories = '$dir'
listen_addresses = ''
fsync = ${PG_TEST_FSYNC:-off}
max_connections = 400
CONF
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
export CORE_LITE_TEST_DATABASE="postgres:///postgres?host=$dir&user=postgres"
export CORE_LITE_TEST_PG_BIN="$bin"
export CORE_LITE_TEST_PG_DATA="$dir/data"
export CORE_LITE_TEST_PG_LOG="$dir/log"
echo "==> PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $dir (CORE_LITE_TEST_DATABASE=$CORE_LITE_TEST_DATABASE)"

if [ $# -eq 0 ]; then
  set -- cargo test -p core-lite --locked
fi
"$@"
