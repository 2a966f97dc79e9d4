#!/usr/bin/env bash
# The final table of scripts/demo.sh and its checks. Sourced by demo.sh; report_and_checks
# reads the variables and files demo.sh leaves (see there) and exits 0 or 3.

mbit() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }

dev_pct() { # MEASURED_BPS OFFERED_MBIT -> signed deviation in percent, 1 decimal
  awk -v b="$1" -v o="$2" 'BEGIN { printf "%+.1f", (b / 1e6 - o) / o * 100 }'
}

within_pct() { # MEASURED_BPS OFFERED_MBIT TOL_PCT: success when |deviation| <= TOL
  awk -v b="$1" -v o="$2" -v t="$3" \
    'BEGIN { d = (b / 1e6 - o) / o * 100; if (d < 0) d = -d; exit !(d <= t) }'
}

history_rows() { # CHANNEL_JSON: one row per status change
  jq -r '.history[] | "\(.atMs) \(.status) \(.reason)"' "$1" | while read -r at st reason; do
    printf '  %-14s %-12s %s\n' "$(fmt_ms "$at")" "$st" "${reason:--}"
  done
}

report_and_checks() {
  local a="$WORK/agent-channel.json" c="$WORK/client-channel.json"
  local agent_bytes client_bytes ovpn_rx ovpn_tx ovpn_bytes term_ms cut_delay drop_ms
  agent_bytes=$(jq -r .bytesTotal "$a")
  client_bytes=$(jq -r .bytesTotal "$c")
  read -r ovpn_rx ovpn_tx < <(awk -v k="$CLIENT_KEY" \
    '$1 == k { rx += $2; tx += $3 } END { printf "%.0f %.0f\n", rx, tx }' "$WORK/openvpn-final.txt")
  drop_ms=$(awk -v k="$CLIENT_KEY" '$1 == k { t = $4 } END { printf "%.0f\n", t }' "$WORK/openvpn-final.txt")
  ovpn_bytes=$((ovpn_rx + ovpn_tx))
  term_ms=$(jq -r '[.history[] | select(.status == "terminating")] | last | .atMs // empty' "$a")
  [ -n "$term_ms" ] || term_ms=$(jq -r '[.history[] | select(.status == "terminated")] | last | .atMs' "$a")
  cut_delay=$((CUTOFF_MS - term_ms))

  local ok_speed=FAIL ok_bytes=FAIL ok_cut=FAIL
  if within_pct "$DOWN_BPS" "$DOWN_MBIT" "$TOL_PCT" && within_pct "$UP_BPS" "$UP_MBIT" "$TOL_PCT"; then
    ok_speed=PASS
  fi
  [ "$agent_bytes" -eq "$ovpn_bytes" ] && ok_bytes=PASS
  if [ "$TUNNEL_DEAD" = yes ] && [ "$(jq -r .status "$a")" = terminated ] &&
    [ "$ADAPTER_RC" != unknown ] && [ "$ADAPTER_RC" != 0 ]; then
    ok_cut=PASS
  fi

  printf '\n'
  printf '==================================== RESULT ====================================\n'
  printf 'Channel %s  (offering %s…)\n' "$CLIENT_KEY" "${OFFERING:0:16}"
  printf 'Demo time after the build: %ss; iperf3 %ss per direction; measured on %s (%s cores)\n\n' \
    "$DEMO_SECS" "$IPERF_SECS" "$(hostname)" "$(nproc)"
  printf '%-28s %10s %10s %10s\n' "Speed through the tunnel" "offered" "measured" "deviation"
  printf '  %-26s %10s %10s %8s %%\n' "download (Mbit/s)" "$DOWN_MBIT.00" "$(mbit "$DOWN_BPS")" \
    "$(dev_pct "$DOWN_BPS" "$DOWN_MBIT")"
  printf '  %-26s %10s %10s %8s %%\n' "upload (Mbit/s)" "$UP_MBIT.00" "$(mbit "$UP_BPS")" \
    "$(dev_pct "$UP_BPS" "$UP_MBIT")"
  printf '\n%-40s %14s %8s\n' "Bytes of the channel (all sessions)" "bytes" "units"
  printf '  %-38s %14s %8s\n' "agent core (adapter-server monitor)" "$agent_bytes" "$(jq -r .unitsUsed "$a")"
  printf '  %-38s %14s %8s\n' "OpenVPN server final counters" "$ovpn_bytes" "$((ovpn_bytes / 1000000))"
  printf '  %-38s %14s %8s\n' "  of which received / sent" "$ovpn_rx / $ovpn_tx" ""
  printf '  %-38s %14s %8s\n' "client core (adapter-client)" "$client_bytes" "$(jq -r .unitsUsed "$c")"
  printf '  agent == OpenVPN: %s (difference %d bytes); client vs agent: %+d bytes\n' \
    "$([ "$ok_bytes" = PASS ] && echo "yes, exactly" || echo NO)" \
    $((agent_bytes - ovpn_bytes)) $((client_bytes - agent_bytes))
  printf '  maxUnits %s; deposit %s base units\n' "$MAX_UNITS" "$(jq -r .deposit "$a")"
  printf '\nStatus history, agent core (UTC)\n'
  history_rows "$a"
  printf 'Status history, client core (UTC)\n'
  history_rows "$c"
  printf '\nExhaustion and cut-off\n'
  printf '  %-34s %s\n' "maxUnits used (agent: terminating)" "$(fmt_ms "$term_ms")"
  printf '  %-34s %s  (+%d ms)\n' "client cut off (tunnel gone)" "$(fmt_ms "$CUTOFF_MS")" "$cut_delay"
  printf '  %-34s %s  (+%d ms; after OpenVPN'"'"'s client-kill delay)\n' \
    "OpenVPN server dropped the client" "$(fmt_ms "$drop_ms")" $((drop_ms - term_ms))
  printf '  %-34s code %s, phase %s\n' "adapter-client exit" "$ADAPTER_RC" \
    "$(jq -r .phase "$WORK/client-state.json")"
  printf '  %-34s %s\n' "new traffic through the tunnel" \
    "$([ "$TUNNEL_DEAD" = yes ] && echo "refused (no tunnel)" || echo "STILL POSSIBLE")"
  printf '\nChecks: [%s] throughput within ±%s %% of the offer   [%s] agent bytes == OpenVPN   [%s] client cut off\n' \
    "$ok_speed" "$TOL_PCT" "$ok_bytes" "$ok_cut"
  printf '================================================================================\n'
  if [ "$ok_speed" = PASS ] && [ "$ok_bytes" = PASS ] && [ "$ok_cut" = PASS ]; then
    echo "demo: all checks passed"
    exit 0
  fi
  echo "demo: some checks FAILED (see the table above)"
  exit 3
}
