#!/usr/bin/env bash
# The whole sale, end to end, on one machine: an agent host and a client host in two
# network namespaces joined by a veth pair.
#
#   sudo scripts/demo.sh
#
# It installs what is missing (openvpn, iperf3, iproute2, openssl, jq, curl), builds the
# release binaries, then: throw-away PKI; the agent's core (market API on the veth); VPN
# module, product, server config pushed, offering published with speed limits; the
# client's core fetches the offering over the network, verifies and accepts it with a
# deposit (the agent creates the channel and answers the signed access message); OpenVPN
# server with the adapter-server hook and monitor (speed limits with tc); the client
# adapter connects; iperf3 measures both directions through the tunnel; traffic then uses
# up maxUnits and the client is cut off. It ends with a table: offered vs measured speed,
# bytes counted by each core and by OpenVPN, status history, time from exhaustion to
# cut-off. Everything it creates is removed at the end, also on Ctrl-C or failure.
#
# Env: DEMO_BIN_DIR   use the binaries in this directory (no build)
#      CARGO_TARGET_DIR  where the release build goes (default ./target)
#      DEMO_QUICK=1   short iperf3 runs (4 s instead of 10 s)
#      DEMO_TOLERANCE_PCT  allowed throughput deviation (default 10)
#      DEMO_KEEP=1    keep the temporary directory (configs, logs, databases)
#      DEMO_PREFIX    name prefix of namespaces/devices (default demo<pid>, max 12 chars)
#      DEMO_RECORD_UP=DIR  instead of the client steps and the table: record the end user's
#                     `adapter-client up` in a real terminal (tmux + script) into DIR
#                     (scripts/lib/demo-record.sh; the README's first section shows it)
#
# Exit: 0 = the table was printed and every check passed; 3 = the table was printed and
# a check failed; 1 = the demo could not get to the table.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DEMO_T0=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh: must run as root: it creates network namespaces, veth/tun/IFB" >&2
  echo "devices and tc rules. Run: sudo $0" >&2
  exit 1
fi

P=${DEMO_PREFIX:-demo$$}
if [ ${#P} -gt 12 ] || ! [[ $P =~ ^[a-z][a-z0-9]*$ ]]; then
  echo "scripts/demo.sh: DEMO_PREFIX must be lowercase letters/digits, at most 12 chars" >&2
  exit 2
fi

# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"
# shellcheck source=scripts/lib/pki.sh
source "$ROOT/scripts/lib/pki.sh"
# shellcheck source=scripts/lib/demo-util.sh
source "$ROOT/scripts/lib/demo-util.sh"
# shellcheck source=scripts/lib/demo-report.sh
source "$ROOT/scripts/lib/demo-report.sh"

# ---- parameters ----------------------------------------------------------------------
DOWN_MBIT=8 UP_MBIT=4
if [ "${DEMO_QUICK:-0}" = 1 ]; then IPERF_SECS=4 IPERF_OMIT=1; else IPERF_SECS=10 IPERF_OMIT=2; fi
TOL_PCT=${DEMO_TOLERANCE_PCT:-10}
UNIT_PRICE_BASE=100000 # 0.001 PRIX per MB, in base units (1 PRIX = 10^8)
# maxUnits: what the two measurements move (offered speed x time, +15 % for OpenVPN and
# TCP overhead), plus about 6 s of traffic both ways to use up the rest afterwards.
MEASURE_MB=$(((DOWN_MBIT + UP_MBIT) * (IPERF_SECS + IPERF_OMIT) * 115 / 800 + 1))
MAX_UNITS=$((MEASURE_MB + (DOWN_MBIT + UP_MBIT) * 6 / 8))
DEPOSIT=$((MAX_UNITS * UNIT_PRICE_BASE))

NS_A=${P}a NS_C=${P}c
IP_A=10.77.0.1 IP_C=10.77.0.2
AGENT_API=127.0.0.1:7700 CLIENT_API=127.0.0.1:7701 MARKET=$IP_A:7710
VPN_PORT=1194 VPN_SERVER_IP=10.8.0.1 IPERF_PORT=5201 DNS_ANSWER=198.51.100.53
TUN_S=tun${P} IFB_S=${P}is TUN_C=${P}tc IFB_C=${P}ic

# ---- tools ---------------------------------------------------------------------------
missing=()
RECORD_TOOLS=
[ -n "${DEMO_RECORD_UP:-}" ] && RECORD_TOOLS="tmux:tmux script:bsdutils"
for pair in openvpn:openvpn iperf3:iperf3 ip:iproute2 tc:iproute2 openssl:openssl jq:jq \
  curl:curl setsid:util-linux dnsmasq:dnsmasq-base getent:libc-bin $RECORD_TOOLS; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "==> installing $pkgs"
  command -v apt-get >/dev/null || die "missing $pkgs and no apt-get: install them yourself"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
if [ ! -c /dev/net/tun ]; then
  mkdir -p /dev/net
  mknod -m 600 /dev/net/tun c 10 200 || die "/dev/net/tun is missing and cannot be created"
fi
OPENVPN=$(command -v openvpn)

if [ -n "${DEMO_BIN_DIR:-}" ]; then
  BIN=$(cd "$DEMO_BIN_DIR" && pwd)
else
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found in PATH (install Rust, e.g. with rustup; with sudo: sudo env PATH=\$PATH $0)"
  echo "==> cargo build --release --locked --bins (the first build takes a few minutes)"
  cargo build --release --locked --bins
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
for b in core-lite adapter-server adapter-client; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing (build it or set DEMO_BIN_DIR)"
done
DEMO_T0=$(date +%s) # the clock of the demo proper starts after the build

# ---- scratch space and cleanup ---------------------------------------------------------
WORK=$(mktemp -d "/tmp/$P-XXXXXX")
mkdir -p "$WORK/logs"
: >"$WORK/pids"
trap 'demo_cleanup $?' EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM

AGENT=$WORK/agent CLIENT=$WORK/client
agent() { "$BIN/core-lite" --data-dir "$AGENT" "$@"; }
client() { "$BIN/core-lite" --data-dir "$CLIENT" "$@"; }
in_a() { ip netns exec "$NS_A" "$@"; }
in_c() { ip netns exec "$NS_C" "$@"; }

printf 'VPN service module pair demo: agent namespace %s (%s), client namespace %s (%s)\n' \
  "$NS_A" "$IP_A" "$NS_C" "$IP_C"
printf 'work dir %s; binaries %s\n' "$WORK" "$BIN"

# ---- hosts ---------------------------------------------------------------------------
step "Two hosts: namespaces $NS_A and $NS_C joined by a veth pair"
netns_add "$NS_A"
netns_add "$NS_C"
veth_add "$NS_A" "${P}va" "$IP_A/24" "$NS_C" "${P}vc" "$IP_C/24"
# The client host's default route leads to the agent (its LAN router), and it has a
# resolv.conf of its own: `ip netns exec` shows /etc/netns/NS/resolv.conf as
# /etc/resolv.conf, so the adapter's DNS changes never reach the host's file.
ip -n "$NS_C" route add default via "$IP_A"
mkdir -p "/etc/netns/$NS_C"
printf 'nameserver %s\noptions timeout:1 attempts:1\n' "$IP_A" >"/etc/netns/$NS_C/resolv.conf"
cp "/etc/netns/$NS_C/resolv.conf" "$WORK/client-resolv.conf.orig"
info "agent $IP_A  <->  client $IP_C (client: default route via $IP_A, own resolv.conf)"

step "Throw-away PKI (CA, server certificate, tls-crypt key)"
pki_generate "$WORK/pki"
info "$(openssl x509 -in "$WORK/pki/server.crt" -noout -subject -enddate | tr '\n' ' ')"

# ---- agent ---------------------------------------------------------------------------
step "Agent: core-lite (SQLite in $AGENT), VPN module, product, offering"
agent module register templates/vpn >/dev/null 2>"$WORK/logs/cli.log"
agent product create --name vpn-demo --module vpn --endpoint "$IP_A:$VPN_PORT" \
  --token-out "$WORK/product.token" >/dev/null 2>>"$WORK/logs/cli.log"
# The market listens on the veth: TLS with a self-signed certificate the core makes once;
# offerings published from now on pin its key (agentTlsSpkiSha256), so the client needs no CA.
spawn agent-core "$NS_A" "$BIN/core-lite" --data-dir "$AGENT" serve --role agent \
  --listen "$AGENT_API" --market-listen "$MARKET" --tick-ms 250
wait_until 20 "the agent's core" in_a curl -sf -o /dev/null "http://$AGENT_API/health"
info "Service API on $AGENT_API (inside $NS_A), market API on https://$MARKET (TLS key $(cut -c1-16 "$AGENT/market-tls.pin")…)"
cat >"$WORK/offer.json" <<EOF
{ "serviceName": "Privatix VPN", "supply": 10, "unitName": "MB", "unitPrice": 0.001,
  "minUnits": 1, "maxUnits": $MAX_UNITS, "billingType": "prepaid", "billingInterval": 2,
  "maxBillingUnitLag": 20, "maxSuspendTime": 600, "maxInactiveTime": 3600,
  "setupPrice": 0, "freeUnits": 0, "country": "DE",
  "additionalParams": { "minDownloadSpeed": "1", "maxDownloadSpeed": "$DOWN_MBIT",
                        "minUploadSpeed": "1", "maxUploadSpeed": "$UP_MBIT" } }
EOF
OFFERING=$(agent offering publish --product vpn-demo --input "$WORK/offer.json" \
  --out "$WORK/offering.signed.json" 2>>"$WORK/logs/cli.log" | jq -r .offeringHash) ||
  die "offering publish failed: $(tail -2 "$WORK/logs/cli.log")"
info "offering $OFFERING: 0.001 PRIX/MB, maxUnits $MAX_UNITS MB, down $DOWN_MBIT / up $UP_MBIT Mbit/s"

step "Agent: OpenVPN server config; adapter-server push-config"
mkdir -m 700 "$WORK/ovpn-tmp" "$WORK/hook-state"
HOOK="$BIN/adapter-server --core-url=http://$AGENT_API --token-file=$WORK/product.token hook --state-dir=$WORK/hook-state"
# client-disconnect: writes OpenVPN's own final counters of the client (for the table),
# then runs the hook (StopSession with those counts). OpenVPN 2.6 sends the monitor
# >CLIENT:DISCONNECT only with management-client-auth, so with the auth hook the final
# counts reach the core this way; client-connect runs the hook too (StartSession: the same
# session as the monitor's, same connection id).
cat >"$WORK/client-disconnect.sh" <<EOF
#!/bin/sh
echo "\$common_name \$bytes_received \$bytes_sent \$(/bin/date +%s%3N)" >>$WORK/openvpn-final.txt
exec $HOOK
EOF
chmod 700 "$WORK/client-disconnect.sh"
cat >"$WORK/server.conf" <<EOF
# OpenVPN server of the demo (agent side)
dev $TUN_S
dev-type tun
disable-dco
topology subnet
server 10.8.0.0 255.255.255.0
proto udp
port $VPN_PORT
local $IP_A
ca $WORK/pki/ca.crt
cert $WORK/pki/server.crt
key $WORK/pki/server.key
dh none
tls-crypt $WORK/pki/tls-crypt.key
data-ciphers AES-256-GCM:AES-128-GCM
verify-client-cert none
username-as-common-name
keepalive 2 10
script-security 2
tmp-dir $WORK/ovpn-tmp
auth-user-pass-verify "$HOOK" via-file
client-connect "$HOOK"
client-disconnect $WORK/client-disconnect.sh
management $WORK/mgmt.sock unix
max-clients 8
# Full tunnel and DNS through it (dnsmasq answers on the server's tunnel address).
push "redirect-gateway def1"
push "dhcp-option DNS $VPN_SERVER_IP"
verb 3
EOF
in_a "$BIN/adapter-server" --core-url="http://$AGENT_API" --token-file="$WORK/product.token" \
  push-config --server-config "$WORK/server.conf" --endpoint "$IP_A:$VPN_PORT" \
  >"$WORK/logs/push-config.log" 2>&1 || die "push-config failed: $(tail -3 "$WORK/logs/push-config.log")"
info "product config pushed (udp $VPN_PORT, CA, tls-crypt; endpoint $IP_A:$VPN_PORT)"

step "Agent: OpenVPN server (deferred-auth hook) and adapter-server monitor (tc shaping)"
spawn openvpn-server "$NS_A" "$OPENVPN" --config "$WORK/server.conf"
wait_until 20 "the OpenVPN server" grep -q "Initialization Sequence Completed" \
  "$WORK/logs/openvpn-server.log"
spawn monitor "$NS_A" "$BIN/adapter-server" --core-url="http://$AGENT_API" \
  --token-file="$WORK/product.token" monitor --management "$WORK/mgmt.sock" \
  --server-config "$WORK/server.conf" --endpoint "$IP_A:$VPN_PORT" --tun "$TUN_S" \
  --ifb "$IFB_S" --link-capacity 1gbit --max-clients 8
wait_until 20 "the monitor's tc setup" in_a tc qdisc show dev "$IFB_S"
info "OpenVPN on udp $IP_A:$VPN_PORT, tun $TUN_S; monitor shaping $TUN_S (download) and $IFB_S (upload)"
spawn dnsmasq "$NS_A" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
  --bind-interfaces --listen-address="$VPN_SERVER_IP" --address="/vpn.demo/$DNS_ANSWER" \
  --log-queries --log-facility=- --pid-file
info "dnsmasq on $VPN_SERVER_IP:53 (pushed to clients): *.vpn.demo -> $DNS_ANSWER"

# ---- recording mode ------------------------------------------------------------------
if [ -n "${DEMO_RECORD_UP:-}" ]; then
  # shellcheck source=scripts/lib/demo-record.sh
  source "$ROOT/scripts/lib/demo-record.sh"
  record_up "$DEMO_RECORD_UP"
  exit 0
fi

# ---- client --------------------------------------------------------------------------
step "Client: core-lite (SQLite in $CLIENT) with the payer; fetch the agent's offerings"
client module register templates/vpn >/dev/null 2>>"$WORK/logs/cli.log"
spawn client-core "$NS_C" "$BIN/core-lite" --data-dir "$CLIENT" serve --role client \
  --listen "$CLIENT_API" --pay-interval-ms 500
wait_until 20 "the client's core" in_c curl -sf -o /dev/null "http://$CLIENT_API/health"
in_c "$BIN/core-lite" --data-dir "$CLIENT" offering fetch "https://$MARKET" \
  >"$WORK/fetched.json" 2>"$WORK/logs/fetch.log" ||
  die "offering fetch failed: $(tail -3 "$WORK/logs/fetch.log")"
info "fetched from https://$MARKET, its TLS key pinned by the signed offerings (hash  country  price  setup  max units  billing  speeds):"
sed 's/^/       /' "$WORK/logs/fetch.log"
jq -e --arg h "$OFFERING" '[.accepted[] | select(.offeringHash == $h)] | length == 1' \
  "$WORK/fetched.json" >/dev/null || die "the client did not accept the agent's offering as valid"

step "Client: accept the offering with a deposit of $DEPOSIT base units ($MAX_UNITS MB)"
ACCEPT=$(in_c "$BIN/core-lite" --data-dir "$CLIENT" offering accept "$OFFERING" \
  --deposit "$DEPOSIT" 2>"$WORK/logs/accept.log") ||
  die "offering accept failed: $(tail -3 "$WORK/logs/accept.log")"
CLIENT_KEY=$(jq -r .clientKey <<<"$ACCEPT")
info "channel $(jq -r .channelId <<<"$ACCEPT"), client key $CLIENT_KEY"
info "agent's view: $(agent channel show "$CLIENT_KEY" | jq -c '{status, deposit}')"
client token create --role client --out "$WORK/client.token" >/dev/null 2>>"$WORK/logs/cli.log"

step "Client: adapter-client connect (OpenVPN client, usage reports, tc shaping)"
spawn adapter-client "$NS_C" "$BIN/adapter-client" --log info,openvpn=debug connect \
  --client-key "$CLIENT_KEY" --core-url "http://$CLIENT_API" --token-file "$WORK/client.token" \
  --runtime-dir "$WORK/client-rt" --state-file "$WORK/client-state.json" \
  --tun-dev "$TUN_C" --ifb-dev "$IFB_C" --report-interval 1 --backoff-initial-ms 200 \
  --backoff-max 2 --stop-timeout 5 --openvpn "$OPENVPN"
ADAPTER_PID=$SPAWNED_PID
connected() { # shellcheck disable=SC2317 # called through wait_until
  [ "$(jq -r .phase "$WORK/client-state.json" 2>/dev/null)" = connected ]; }
wait_until 45 "the client to connect (state.json phase connected)" connected
info "connected: $(jq -c '{vpnAddress, tunDev, sessionId}' "$WORK/client-state.json")"
pushed_dns() { in_c grep -qx "nameserver $VPN_SERVER_IP" /etc/resolv.conf; }
wait_until 10 "the pushed DNS server in the client's resolv.conf" pushed_dns
info "client resolv.conf: $(in_c grep -v '^#' /etc/resolv.conf | tr '\n' ' ')"
info "lookup probe.vpn.demo in the client namespace: $(in_c getent hosts probe.vpn.demo | tr -s ' ')"
info "route to 192.0.2.1 (outside the VPN subnet): $(in_c ip route get 192.0.2.1 | head -1)"
info "agent status: $(agent channel show "$CLIENT_KEY" | jq -r .status)"

# ---- measurements --------------------------------------------------------------------
step "Measure: iperf3 through the tunnel, ${IPERF_SECS}s each way (+${IPERF_OMIT}s slow start omitted)"
spawn iperf3-server "$NS_A" iperf3 -s -B "$VPN_SERVER_IP" -p "$IPERF_PORT"
wait_until 10 "the iperf3 server" in_a bash -c "ss -ltn | grep -q ':$IPERF_PORT '"
# iperf3 runs in the background and the script waits for it, in the script's own shell (not
# in a command substitution): a Ctrl-C then ends the wait at once and runs the INT trap
# ("demo: interrupted", cleanup). In the foreground, iperf3 would catch the SIGINT itself,
# exit 1, and the script would report an iperf3 failure instead.
measure() { # OUT_JSON [-R]
  local out=$1 pid
  shift
  in_c iperf3 -c "$VPN_SERVER_IP" -p "$IPERF_PORT" -t "$IPERF_SECS" -O "$IPERF_OMIT" -J "$@" \
    >"$out" 2>>"$WORK/logs/iperf3-client.log" &
  pid=$!
  wait "$pid" || die "iperf3 failed: $(jq -r '.error // empty' "$out" 2>/dev/null)"
}
info "download (server -> client, iperf3 -R) ..."
measure "$WORK/iperf-down.json" -R
DOWN_BPS=$(jq -r '.end.sum_received.bits_per_second' "$WORK/iperf-down.json")
info "download: $(mbit "$DOWN_BPS") Mbit/s (offered $DOWN_MBIT)"
info "upload (client -> server) ..."
measure "$WORK/iperf-up.json"
UP_BPS=$(jq -r '.end.sum_received.bits_per_second' "$WORK/iperf-up.json")
info "upload:   $(mbit "$UP_BPS") Mbit/s (offered $UP_MBIT)"
info "agent: $(agent channel show "$CLIENT_KEY" | jq -c '{status, unitsUsed, bytesTotal}') of maxUnits $MAX_UNITS"

# ---- exhaustion ----------------------------------------------------------------------
step "Use up maxUnits: traffic both ways until the agent's core says terminating"
DEMO_WATCH=0 # from here on the client's processes are meant to end
spawn iperf3-exhaust "$NS_C" iperf3 -c "$VPN_SERVER_IP" -p "$IPERF_PORT" -t 120 --bidir
agent_status() { agent channel show "$CLIENT_KEY" | jq -r .status; }
terminating() { case $(agent_status) in terminating | terminated) return 0 ;; esac; return 1; }
last_units=-1
for ((i = 0; i < 1200; i++)); do
  terminating && break
  alive "$ADAPTER_PID" || break
  if [ $((i % 10)) -eq 0 ]; then
    units=$(agent channel show "$CLIENT_KEY" | jq -r .unitsUsed)
    [ "$units" != "$last_units" ] && printf '     units used %s / %s\r' "$units" "$MAX_UNITS"
    last_units=$units
  fi
  sleep 0.1
done
printf '\n'
terminating || die "the channel did not reach terminating (status $(agent_status))"
# The cut-off: the client's tunnel is gone or its adapter has stopped (polled every 50 ms).
cut_off() { ! alive "$ADAPTER_PID" || ! in_c ip link show "$TUN_C" >/dev/null 2>&1; }
for ((i = 0; i < 600; i++)); do
  cut_off && break
  sleep 0.05
done
CUTOFF_MS=$(now_ms)
cut_off || die "the client was not cut off within 30 s of terminating"
info "client cut off at $(fmt_ms "$CUTOFF_MS")"
for ((i = 0; i < 200; i++)); do alive "$ADAPTER_PID" || break; sleep 0.1; done
ADAPTER_RC=unknown
if ! alive "$ADAPTER_PID"; then
  wait "$ADAPTER_PID" && ADAPTER_RC=0 || ADAPTER_RC=$?
fi
info "adapter-client exited with code $ADAPTER_RC, phase $(jq -r .phase "$WORK/client-state.json")"
if in_c cmp -s /etc/resolv.conf "$WORK/client-resolv.conf.orig"; then
  info "client resolv.conf restored exactly"
else
  die "the client's resolv.conf was not restored: $(in_c cat /etc/resolv.conf | tr '\n' ' ')"
fi
# A new connection through the old tunnel must fail now.
if in_c timeout 5 iperf3 -c "$VPN_SERVER_IP" -p "$IPERF_PORT" -t 1 --connect-timeout 2000 \
  >/dev/null 2>&1; then
  TUNNEL_DEAD=no
else
  TUNNEL_DEAD=yes
fi
info "traffic through the tunnel after the cut-off: $([ $TUNNEL_DEAD = yes ] && echo none || echo STILL FLOWING)"
wait_until 20 "the agent's channel to be terminated (StopSession)" \
  bash -c "[ \"\$('$BIN/core-lite' --data-dir '$AGENT' channel show '$CLIENT_KEY' | jq -r .status)\" = terminated ]"
wait_until 10 "OpenVPN's final counters (client-disconnect)" \
  grep -q "^$CLIENT_KEY " "$WORK/openvpn-final.txt"
# Let the payer mirror the final status into the client's core.
for ((i = 0; i < 50; i++)); do
  [ "$(client channel show "$CLIENT_KEY" | jq -r .status)" = terminated ] && break
  sleep 0.1
done

# ---- report --------------------------------------------------------------------------
agent channel show "$CLIENT_KEY" >"$WORK/agent-channel.json"
client channel show "$CLIENT_KEY" >"$WORK/client-channel.json"
DEMO_SECS=$(($(date +%s) - DEMO_T0))
report_and_checks
