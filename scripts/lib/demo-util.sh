#!/usr/bin/env bash
# Helpers of scripts/demo.sh: progress output, background processes in their own process
# groups, polling with a deadline, cleanup. Sourced by demo.sh (needs $WORK, $P set).

now_ms() { date +%s%3N; }

fmt_ms() { # UNIX_MS -> HH:MM:SS.mmm (UTC)
  local ms=$1
  printf '%s.%03d' "$(date -u -d "@$((ms / 1000))" +%H:%M:%S)" $((ms % 1000))
}

step() { # TEXT: a numbered step line
  DEMO_STEP=$((${DEMO_STEP:-0} + 1))
  printf '\n[%2d] %s  (+%ss)\n' "$DEMO_STEP" "$*" $(($(date +%s) - DEMO_T0))
}

info() { printf '     %s\n' "$*"; }

die() {
  printf '\ndemo: FAILED: %s\n' "$*" >&2
  exit 1
}

# spawn LABEL NS CMD...: runs CMD inside namespace NS (or the host when NS is "-") in its
# own process group (setsid), output to $WORK/logs/LABEL.log; records "pid label" so the
# cleanup can signal the whole group. Sets SPAWNED_PID.
spawn() {
  local label=$1 ns=$2
  shift 2
  local log="$WORK/logs/$label.log"
  if [ "$ns" = - ]; then
    setsid "$@" </dev/null >"$log" 2>&1 &
  else
    ip netns exec "$ns" setsid "$@" </dev/null >"$log" 2>&1 &
  fi
  SPAWNED_PID=$!
  echo "$SPAWNED_PID $label" >>"$WORK/pids"
}

alive() { kill -0 "$1" 2>/dev/null; }

# check_spawned: dies when a process spawned so far has exited (while DEMO_WATCH=1), with
# the end of its log.
check_spawned() {
  local pid label
  [ "${DEMO_WATCH:-1}" = 1 ] || return 0
  while read -r pid label; do
    if ! alive "$pid"; then
      printf '\n--- end of %s\n' "$WORK/logs/$label.log" >&2
      tail -n 15 "$WORK/logs/$label.log" >&2
      die "$label exited unexpectedly"
    fi
  done <"$WORK/pids"
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s until it succeeds; a dot per
# second shows progress; fails (die) after SECONDS or when a spawned process has exited.
wait_until() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then
      [ "$i" -ge 10 ] && printf '\n'
      return 0
    fi
    check_spawned
    if [ "$i" -gt 0 ] && [ $((i % 10)) -eq 0 ]; then printf '.'; fi
    sleep 0.1
  done
  printf '\n'
  die "timed out after ${secs}s waiting for $what"
}

# stop_group PID GRACE_TENTHS: SIGTERM to the process group, SIGKILL after the grace time.
stop_group() {
  local pid=$1 tenths=$2 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < tenths; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

# demo_cleanup: every process group started (newest first), the namespaces (which takes
# their veth, tun, IFB devices and tc qdiscs with them), host devices with the prefix, and
# the work dir (kept with DEMO_KEEP=1).
demo_cleanup() {
  local rc=$1 pid label dev
  set +e
  trap '' INT TERM # a second Ctrl-C must not stop the cleanup half-way
  if [ -n "${WORK:-}" ] && [ -f "$WORK/pids" ]; then
    tac "$WORK/pids" | while read -r pid label; do
      stop_group "$pid" 50
    done
  fi
  netns_cleanup "$P"
  for dev in /etc/netns/"$P"*; do
    [ -e "$dev" ] && rm -rf -- "$dev"
  done
  rmdir /etc/netns 2>/dev/null
  for dev in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    case $dev in "$P"*) ip link del "$dev" 2>/dev/null ;; esac
  done
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
      printf 'demo: logs and configs kept in %s (logs/*.log)\n' "$WORK" >&2
    else
      if [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then
        printf 'demo: (DEMO_KEEP=1 keeps the logs of an interrupted run)\n' >&2
      elif [ "$rc" -ne 0 ]; then
        printf 'demo: last lines of the logs (run with DEMO_KEEP=1 to keep %s):\n' "$WORK" >&2
        for f in "$WORK"/logs/*.log; do
          [ -s "$f" ] || continue
          printf -- '--- %s\n' "${f##*/}" >&2
          tail -n 8 "$f" >&2
        done
      fi
      rm -rf "$WORK"
    fi
  fi
  printf 'demo: cleaned up (namespaces %s*, processes, temporary files)\n' "$P" >&2
}
