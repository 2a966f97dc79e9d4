#!/usr/bin/env bash
# The recording mode of scripts/demo.sh (DEMO_RECORD_UP=DIR): once the agent host runs, a
# real terminal (tmux, 100x30) in the client namespace, recorded with `script` (typescript
# + timing: `scriptreplay -t up.timing up.typescript` plays it back), runs the end user's
# one command `adapter-client up https://AGENT:7710`, answers its prompts like a person
# would, moves traffic through the tunnel (iperf3 download), runs `adapter-client ls` in a
# second window, and ends the connection with Ctrl-C. What the terminal showed is captured
# with `tmux capture-pane` (the screen as rendered, not the escape codes):
#   DIR/up-live.txt    the screen while the traffic runs (the live status line)
#   DIR/ls.txt         the second window's `adapter-client ls`
#   DIR/up-final.txt   the whole session after Ctrl-C
#   DIR/up.typescript, DIR/up.timing   the raw recording
# Sourced by demo.sh (needs $WORK, $BIN, $NS_C, $NS_A, $IP_A, $P, $VPN_SERVER_IP and the
# helpers of demo-util.sh).

# The client's files stay in the demo's work dir (not /var/lib, /run of this machine).
record_env() {
  printf '%q ' "PATH=$BIN:$PATH" "ADAPTER_CLIENT_STATE_DIR=$WORK/user-state" \
    "ADAPTER_CLIENT_RUN_DIR=$WORK/user-run" "TERM=xterm-256color" 'PS1=$ ' "HOME=$WORK"
}

record_up() { # DIR
  local out=$1 sock="$P-rec" pane screen i
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  command -v tmux >/dev/null || die "DEMO_RECORD_UP needs tmux"
  tm() { tmux -L "$sock" "$@"; }
  screen() { tm capture-pane -p -t "$1"; }
  wait_screen() { # TARGET TEXT SECONDS
    for ((i = 0; i < $3 * 10; i++)); do
      screen "$1" | grep -qF -- "$2" && return 0
      sleep 0.1
    done
    screen "$1" >&2
    die "the recorded terminal did not show '$2' within $3 s"
  }

  step "Recording: a second offering (faster, dearer), then adapter-client up in a terminal"
  sed -e 's/"unitPrice": 0.001/"unitPrice": 0.002/' \
    -e "s/\"maxDownloadSpeed\": \"$DOWN_MBIT\"/\"maxDownloadSpeed\": \"$((DOWN_MBIT * 2))\"/" \
    -e "s/\"maxUploadSpeed\": \"$UP_MBIT\"/\"maxUploadSpeed\": \"$((UP_MBIT * 2))\"/" \
    "$WORK/offer.json" >"$WORK/offer-fast.json"
  agent offering publish --product vpn-demo --input "$WORK/offer-fast.json" >/dev/null \
    2>>"$WORK/logs/cli.log" || die "publishing the second offering failed"
  spawn iperf3-server "$NS_A" iperf3 -s -B "$VPN_SERVER_IP" -p "$IPERF_PORT"
  # shellcheck disable=SC2046 # record_env is a list of words
  tm new-session -d -s up -x 100 -y 30 \
    "ip netns exec $NS_C env -i $(record_env) script -q -T $out/up.timing $out/up.typescript -c 'bash --norc --noprofile -i'"
  echo "$(tm display -p -t up '#{pid}') tmux-recording" >>"$WORK/pids"
  pane=up:0
  wait_screen "$pane" '$' 10
  tm send-keys -t "$pane" "adapter-client up https://$IP_A:7710" Enter
  wait_screen "$pane" 'Offering [1-' 60
  sleep 1
  tm send-keys -t "$pane" 1 Enter
  wait_screen "$pane" 'Deposit in base units' 20
  sleep 1
  tm send-keys -t "$pane" Enter
  wait_screen "$pane" '[y/N]' 20
  sleep 1
  tm send-keys -t "$pane" y Enter
  wait_screen "$pane" 'connected:' 60
  info "connected; traffic: iperf3 download through the tunnel"
  spawn iperf3-recording "$NS_C" iperf3 -c "$VPN_SERVER_IP" -p "$IPERF_PORT" -t 12 -R
  sleep 8
  screen "$pane" >"$out/up-live.txt"
  # A second terminal of the same user: the channels.
  # shellcheck disable=SC2046
  tm new-window -t up -n ls "ip netns exec $NS_C env -i $(record_env) bash --norc --noprofile -i"
  wait_screen up:ls '$' 10
  tm send-keys -t up:ls "adapter-client ls" Enter
  wait_screen up:ls 'amounts in PRIX' 30
  sleep 1
  screen up:ls >"$out/ls.txt"
  tm kill-window -t up:ls
  sleep 5
  tm send-keys -t "$pane" C-c
  wait_screen "$pane" 'stopped: ' 60
  sleep 2
  tm capture-pane -p -S - -t "$pane" >"$out/up-final.txt"
  tm send-keys -t "$pane" exit Enter
  sleep 1
  tm kill-server 2>/dev/null || true
  info "recorded into $out: up-live.txt, ls.txt, up-final.txt, up.typescript + up.timing"
}
