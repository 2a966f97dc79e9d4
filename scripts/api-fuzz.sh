#!/usr/bin/env bash
# Property-based test of the Service API against its OpenAPI document (issue 11 item 10):
# schemathesis (pinned, installed from the Python package index into a venv under the cargo
# target dir) runs every check against a real `core-lite serve` holding real data: the vpn
# module, a product, an offering, a channel, its access message imported on the same core,
# and an open session. Real client key, password, session id and channel id are fed to the
# generator (fuzz dictionaries), and each operation gets the token its callers use, so the
# success paths are reached as well as the refusals. Any failure fails this script.
#
# The client-role operations FetchOfferings and AcceptOffering make the core call an
# agent's market: a second core (role agent, market API on loopback) publishes an offering
# whose minimum deposit is 0, the fuzzed core has fetched it, and its market URL and hash
# are fuzz dictionaries, so both reach their success paths. Their 502 `bad_gateway` (the
# generated URL reaches no market) is an answer the document lists, not a server error.
# Because the core connects to whatever URL is generated, the run happens in a network
# namespace of its own with only loopback up (`unshare --net`; as root, else with a user
# namespace), so no generated address outside it can be reached.
#
#   scripts/api-fuzz.sh            (scripts/test.sh runs it)
#
# Env: CARGO_TARGET_DIR as usual; API_FUZZ_MAX_EXAMPLES (default 200) cases per operation
# and phase; API_FUZZ_SEED for a reproducible run; API_FUZZ_PORT (default: a free one).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
VENV=$TARGET/api-fuzz/venv

step() { printf '\n==> api-fuzz: %s\n' "$*"; }

CORE=$TARGET/debug/core-lite
if [ -z "${API_FUZZ_IN_NETNS:-}" ]; then
  step "cargo build -p core-lite"
  cargo build --locked -q -p core-lite

  if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    step "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    command -v python3 >/dev/null || { echo "api-fuzz: python3 is required" >&2; exit 1; }
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi

  step "into a network namespace with only loopback"
  command -v unshare >/dev/null || { echo "api-fuzz: unshare (util-linux) is required" >&2; exit 1; }
  userns=()
  [ "$(id -u)" -eq 0 ] || userns=(--map-root-user)
  exec unshare --net "${userns[@]}" env API_FUZZ_IN_NETNS=1 CARGO_TARGET_DIR="$TARGET" \
    bash "$0" "$@"
fi
# Loopback up (with `ip`, else with an ioctl from python).
ip link set lo up 2>/dev/null || python3 -c '
import fcntl, socket, struct
fcntl.ioctl(socket.socket(), 0x8914, struct.pack("16sH14s", b"lo", 0x41, b""))'

WORK=$(mktemp -d)
PID= MPID=
cleanup() {
  for p in $PID $MPID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
D=$WORK/core
cl() { "$CORE" --data-dir "$D" "$@"; }

step "a core with real data"
cl module register templates/vpn >/dev/null
cl product create --name vpn-1 --module vpn --endpoint 192.0.2.10:1194 \
  --token-out "$WORK/product.token" >/dev/null 2>&1
cat >"$WORK/offer.json" <<'EOF'
{ "serviceName": "Privatix VPN", "supply": 10, "unitName": "MB", "unitPrice": 0.0001,
  "minUnits": 10, "maxUnits": 1000000, "billingType": "prepaid", "billingInterval": 10,
  "maxBillingUnitLag": 50, "maxSuspendTime": 3600, "maxInactiveTime": 86400,
  "setupPrice": 0, "freeUnits": 5, "country": "DE",
  "additionalParams": { "minDownloadSpeed": "1", "maxDownloadSpeed": "8",
                        "minUploadSpeed": "1", "maxUploadSpeed": "4" } }
EOF
OFFERING=$(cl offering publish --product vpn-1 --input "$WORK/offer.json" \
  --out "$WORK/offering.signed.json" | jq -r .offeringHash)
CHANNEL_JSON=$(cl channel create --offering "$OFFERING")
CLIENT_KEY=$(jq -r .clientKey <<<"$CHANNEL_JSON")
CHANNEL_ID=$(jq -r .channelId <<<"$CHANNEL_JSON")
cl access export "$CLIENT_KEY" --out "$WORK/access.json" >/dev/null 2>&1
cl access import "$WORK/access.json" >/dev/null 2>&1
cl token create --role client --out "$WORK/client.token" >/dev/null 2>&1
PASSWORD=$(jq -r .access.password "$WORK/access.json")
PRODUCT_TOKEN=$(tr -d '\n' <"$WORK/product.token")
CLIENT_TOKEN=$(tr -d '\n' <"$WORK/client.token")
ADMIN_TOKEN=$(tr -d '\n' <"$D/admin.token")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=${API_FUZZ_PORT:-$(free_port)}
URL=http://127.0.0.1:$PORT
"$CORE" --data-dir "$D" serve --listen "127.0.0.1:$PORT" --watch-max-wait-ms 200 2>"$WORK/core.log" &
PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "$URL/health" && break; sleep 0.1; done
curl -sf -o /dev/null "$URL/health" || { cat "$WORK/core.log" >&2; exit 1; }

step "an agent's market for the client-role operations"
M=$WORK/market
ml() { "$CORE" --data-dir "$M" "$@"; }
ml module register templates/vpn >/dev/null
ml product create --name vpn-m --module vpn --endpoint 192.0.2.20:1194 >/dev/null 2>&1
# Supply for every accept the fuzzer makes; minimum deposit 0 (free units cover minUnits,
# no setup price), so every deposit the document allows is accepted.
cat >"$WORK/market-offer.json" <<'EOF'
{ "serviceName": "Privatix VPN", "supply": 1000000, "unitName": "MB", "unitPrice": 0.0001,
  "minUnits": 1, "maxUnits": 1000, "billingType": "prepaid", "billingInterval": 10,
  "maxBillingUnitLag": 50, "maxSuspendTime": 3600, "maxInactiveTime": 86400,
  "setupPrice": 0, "freeUnits": 5, "country": "DE",
  "additionalParams": { "minDownloadSpeed": "1", "maxDownloadSpeed": "8",
                        "minUploadSpeed": "1", "maxUploadSpeed": "4" } }
EOF
MARKET_OFFERING=$(ml offering publish --product vpn-m --input "$WORK/market-offer.json" |
  jq -r .offeringHash)
MPORT=$(free_port)
MARKET_URL=http://127.0.0.1:$(free_port)
"$CORE" --data-dir "$M" serve --role agent --listen "127.0.0.1:$MPORT" --market-listen "${MARKET_URL#http://}" \
  2>"$WORK/market.log" &
MPID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "$MARKET_URL/health" && break; sleep 0.1; done
curl -sf -o /dev/null "$MARKET_URL/health" || { cat "$WORK/market.log" >&2; exit 1; }

api() {  # api TOKEN OPERATION JSON
  curl -sS --fail-with-body -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    -d "$3" "$URL/v1/$2"
}
api "$PRODUCT_TOKEN" SetProductConfig '{"config":{"proto":"udp","port":"1194","dev":"tun"}}' >/dev/null
api "$PRODUCT_TOKEN" AuthClient "{\"clientKey\":\"$CLIENT_KEY\",\"password\":\"$PASSWORD\"}" >/dev/null
SESSION=$(api "$PRODUCT_TOKEN" StartSession "{\"clientKey\":\"$CLIENT_KEY\",\"connectionId\":\"fuzz-1\"}" |
  jq -r .sessionId)
CSESSION=$(api "$CLIENT_TOKEN" StartSession "{\"clientKey\":\"$CLIENT_KEY\",\"connectionId\":\"fuzz-c\"}" |
  jq -r .sessionId)
api "$CLIENT_TOKEN" FetchOfferings "{\"url\":\"$MARKET_URL\"}" |
  jq -e --arg h "$MARKET_OFFERING" '[.accepted[] | select(.offeringHash == $h)] | length == 1' \
  >/dev/null || { echo "api-fuzz: the market's offering was not fetched" >&2; exit 1; }
echo "client key $CLIENT_KEY, channel $CHANNEL_ID, sessions $SESSION (agent) $CSESSION (client)"
echo "market $MARKET_URL, offering $MARKET_OFFERING"

# Each operation with the token of its callers; real values for the identifiers (half of the
# generated cases use one of them, the rest are generated from the schema).
toml_list() { printf '"%s", ' "$@" | sed 's/, $//'; }
config() {  # config SESSION_OPS_TOKEN
  cat <<EOF
workers = 1
[cache]
directory = "$TARGET/api-fuzz/cache"
[generation]
max-examples = ${API_FUZZ_MAX_EXAMPLES:-200}

[dictionaries.client-key]
values = [$(toml_list "$CLIENT_KEY")]
[dictionaries.password]
values = [$(toml_list "$PASSWORD")]
[dictionaries.session]
values = [$(toml_list "$SESSION" "$CSESSION")]
[dictionaries.channel]
values = [$(toml_list "$CHANNEL_ID" "$CLIENT_KEY")]
[dictionaries.connection]
values = [$(toml_list fuzz-1 fuzz-c)]
[dictionaries.market-url]
values = [$(toml_list "$MARKET_URL")]
[dictionaries.offering]
values = [$(toml_list "$MARKET_OFFERING")]

[parameters]
"body.clientKey" = { dictionary = "client-key", probability = 0.5 }
"body.password" = { dictionary = "password", probability = 0.5 }
"body.sessionId" = { dictionary = "session", probability = 0.5 }
"path.id" = { dictionary = "channel", probability = 0.5 }
"body.connectionId" = { dictionary = "connection", probability = 0.5 }
"body.url" = { dictionary = "market-url", probability = 0.5 }
"body.offeringHash" = { dictionary = "offering", probability = 0.5 }

[[operations]]
include-operation-id = ["AuthClient", "SetProductConfig"]
headers = { Authorization = "Bearer $PRODUCT_TOKEN" }

[[operations]]
include-operation-id = ["StartSession", "FindSession", "UpdateSession", "StopSession"]
headers = { Authorization = "Bearer $1" }

[[operations]]
include-operation-id = "GetAccess"
headers = { Authorization = "Bearer $CLIENT_TOKEN" }

[[operations]]
include-operation-id = ["ListOfferings", "ListChannels"]
headers = { Authorization = "Bearer $CLIENT_TOKEN" }

# These two call the agent's market: a generated URL that reaches no market (or an agent
# answering something else) is 502 bad_gateway, which the document lists.
[[operations]]
include-operation-id = ["FetchOfferings", "AcceptOffering"]
headers = { Authorization = "Bearer $CLIENT_TOKEN" }
checks = { not_a_server_error = { expected-statuses = ["2xx", "3xx", "4xx", "502"] } }

[[operations]]
include-operation-id = "GetChannel"
headers = { Authorization = "Bearer $ADMIN_TOKEN" }
EOF
}

seed=()
[ -n "${API_FUZZ_SEED:-}" ] && seed=(--seed "$API_FUZZ_SEED")
REPORT=$TARGET/api-fuzz/report
rm -rf "$REPORT"
run() {  # run NAME SESSION_OPS_TOKEN [schemathesis options...]
  local name=$1 token=$2
  shift 2
  step "schemathesis $SCHEMATHESIS_VERSION, every check: $name"
  config "$token" >"$WORK/$name.toml"
  local status=0
  "$VENV/bin/schemathesis" --config-file "$WORK/$name.toml" --no-color run \
    "$URL/openapi.json" --checks all "${seed[@]}" "$@" \
    --report junit,har --report-dir "$REPORT/$name" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "api-fuzz: schemathesis reported failures in the $name pass (exit $status); the core's log:" >&2
    tail -n 50 "$WORK/core.log" >&2
    echo "api-fuzz: the market's log:" >&2
    tail -n 20 "$WORK/market.log" >&2
    exit "$status"
  fi
}
# Agent side: every operation (the session operations with the product token).
run agent "$PRODUCT_TOKEN"
# Client side: the session operations with the client token (the client core's sessions).
run client "$CLIENT_TOKEN" --include-operation-id StartSession \
  --include-operation-id FindSession --include-operation-id UpdateSession \
  --include-operation-id StopSession

# The success paths were reached: every operation answered 200 at least once.
answered=$(jq -r '.log.entries[] | select(.response.status == 200)
    | "\(.request.method) \(.request.url)"' "$REPORT"/*/har-*.json |
  sed -E 's#^([A-Z]+) https?://[^/]+#\1 #; s#\?.*##; s#(/v1/admin/channels/).*#\1{id}#' | sort -u)
missing=0
for op in "POST /v1/AuthClient" "POST /v1/SetProductConfig" "POST /v1/StartSession" \
  "POST /v1/FindSession" \
  "POST /v1/UpdateSession" "POST /v1/StopSession" "POST /v1/GetAccess" \
  "GET /v1/admin/channels/{id}" "POST /v1/FetchOfferings" "POST /v1/ListOfferings" \
  "POST /v1/AcceptOffering" "POST /v1/ListChannels" "GET /health"; do
  if ! grep -qxF "$op" <<<"$answered"; then
    echo "api-fuzz: $op never answered 200: its success path was not reached" >&2
    missing=1
  fi
done
[ "$missing" -eq 0 ] || exit 1
step "no failures; every operation reached its success path"
