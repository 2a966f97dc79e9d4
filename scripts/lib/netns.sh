#!/usr/bin/env bash
# Network namespace helpers for scripts (demo.sh): `source scripts/lib/netns.sh`.
# Give every name a per-run prefix (e.g. "demo$$") and `trap 'netns_cleanup PREFIX' EXIT`,
# so a run removes exactly its own namespaces, also when it fails half-way.
# Names end up in device names: keep them at most 15 characters.

netns_add() { # NAME: new namespace with loopback up
  ip netns add "$1" && ip -n "$1" link set lo up
}

netns_exists() { # NAME
  ip netns list | awk '{print $1}' | grep -qxF -- "$1"
}

_netns_signal() { # NAME SIGNAL: signal every process inside
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null) || return 0
  # shellcheck disable=SC2086 # one pid per word
  [ -z "$pids" ] || kill "-$2" $pids 2>/dev/null || true
}

_netns_wait_empty() { # NAME TENTHS: poll until no process is left inside
  local i
  for ((i = 0; i < $2; i++)); do
    [ -z "$(ip netns pids "$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}

netns_del() { # NAME: SIGTERM what runs inside, SIGKILL after 5 s, delete the namespace
  netns_exists "$1" || return 0
  _netns_signal "$1" TERM
  if ! _netns_wait_empty "$1" 50; then
    _netns_signal "$1" KILL
    _netns_wait_empty "$1" 50 || true
  fi
  ip netns del "$1"
}

netns_cleanup() { # PREFIX: delete every namespace whose name starts with PREFIX
  local prefix=${1:?usage: netns_cleanup PREFIX} ns
  for ns in $(ip netns list | awk '{print $1}'); do
    case $ns in "$prefix"*) netns_del "$ns" ;; esac
  done
}

veth_add() { # NS_A DEV_A CIDR_A NS_B DEV_B CIDR_B: veth pair between two namespaces, up
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4" &&
    ip -n "$1" addr add "$3" dev "$2" && ip -n "$1" link set "$2" up &&
    ip -n "$4" addr add "$6" dev "$5" && ip -n "$4" link set "$5" up
}

wait_for_line() { # FILE TEXT SECONDS: poll until FILE has a line containing TEXT
  local file=$1 text=$2 i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -qF -- "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out after $3 s waiting for '$text' in $file" >&2
  return 1
}
