#!/bin/bash
# Stops what .ci/slurm_up.sh started, by the PIDs it recorded (never by name), in reverse order; cancels our jobs.
set -uo pipefail
STATE=${STATE:-${TMPDIR:-/tmp}/nre-slurm}
[ -f "$STATE/pids" ] || { echo "slurm_down: nothing recorded in $STATE/pids"; exit 0; }
if command -v scancel >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
  timeout 30 scancel --user="$(id -un)" 2>/dev/null || true
fi
tac "$STATE/pids" | while read -r name pid; do
  [ -n "$pid" ] || continue
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "killed -9 $name $pid"; else echo "stopped $name $pid"; fi
  else
    echo "$name $pid already gone"
  fi
done
rm -f "$STATE/pids" /run/slurmctld.pid /run/slurmd.pid
exit 0
