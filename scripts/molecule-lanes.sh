#!/usr/bin/env bash
# Run molecule scenarios side by side: MOLECULE_JOBS lanes (default 2) take
# the next scenario from one queue, heaviest first, so the lanes end close
# together. Every scenario has its own containers (greenlight-<scenario>...),
# so two never share a server. Each scenario's output goes to
# build/molecule/<scenario>.log; the whole log of a scenario that failed is
# printed, and the end of it for one that passed.
#
#   scripts/molecule-lanes.sh deploy faults release ...
set -uo pipefail

jobs="${MOLECULE_JOBS:-2}"
molecule="${MOLECULE:-molecule}"
logs="${MOLECULE_LOG_DIR:-build/molecule}"
# Heaviest first (minutes, measured on two cores); a scenario not listed runs after these.
# mariadb: 214 s and 273 s in two runs on two cores shared with other runs (molecule test -s mariadb, the first deploy building mysqlclient).
order=(faults deploy blue_green release multi_host workers mariadb migrate backup databases awx harness)

if [ "$#" -eq 0 ]; then
  echo "usage: $0 SCENARIO..." >&2
  exit 2
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: MOLECULE_JOBS must be a positive number, not '$jobs'" >&2
  exit 2
fi

mkdir -p "$logs"
queue="$logs/queue"
: > "$queue"
: > "$logs/results"
for s in "${order[@]}"; do
  for want in "$@"; do [ "$want" = "$s" ] && echo "$s" >> "$queue"; done
done
for want in "$@"; do
  grep -qx "$want" "$queue" || echo "$want" >> "$queue"
done

# Take the first scenario off the queue (empty output when none is left).
next() {
  (
    flock 9
    head -n 1 "$queue"
    sed -i 1d "$queue"
  ) 9> "$logs/queue.lock"
}

# Molecule's step lines ("scenario ➜ converge: Executing", or "[scenario > converge] Executing" without
# colours) get the time of day in front, so that a log shows how long each step took.
stamp() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      *"➜"* | *"["*" > "*"] Execut"*) printf '[%(%H:%M:%S)T] %s\n' -1 "$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

lane() {
  local lane_id="$1" scenario start rc seconds
  while scenario="$(next)" && [ -n "$scenario" ]; do
    start=$SECONDS
    echo "==> [lane $lane_id] molecule test -s $scenario (log: $logs/$scenario.log)"
    "$molecule" test -s "$scenario" 2>&1 | stamp > "$logs/$scenario.log"
    rc=${PIPESTATUS[0]}
    seconds=$((SECONDS - start))
    (
      flock 9
      if [ "$rc" -eq 0 ]; then
        echo "==> $scenario passed in ${seconds} s; the end of its log:"
        tail -n 25 "$logs/$scenario.log"
      else
        echo "==> $scenario FAILED (exit $rc) after ${seconds} s; its whole log:"
        cat "$logs/$scenario.log"
      fi
      echo "$scenario $rc $seconds" >> "$logs/results"
    ) 9> "$logs/print.lock"
    # A lane that saw a failure stops taking work; the other lanes finish what they started.
    [ "$rc" -eq 0 ] || return 1
  done
}

pids=()
for ((i = 1; i <= jobs; i++)); do
  lane "$i" &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done

echo "==> molecule scenarios (exit code, seconds):"
sort -k3 -n -r "$logs/results" | sed 's/^/    /'
left="$(cat "$queue")"
if [ -n "$left" ]; then
  echo "==> not run after a failure: $(echo "$left" | tr '\n' ' ')"
  status=1
fi
exit "$status"
