#!/usr/bin/env bash
# Run the parts of `make test` side by side: JOBS lanes (default 2) take the
# next part from one queue, the heaviest first, so that the lanes end close
# together and no core idles while another part waits. A part is
#   static              make static (lint, sanity, unit)
#   functional          pytest tests/functional
#   molecule:SCENARIO   molecule test -s SCENARIO
#   bench:NAME          bench/bench_NAME.py --smoke
# Every part has its own containers (greenlight-<scenario>..., greenlight-pytest-...,
# greenlight-bench-...), so two never share a server. Each part's output goes to
# build/lanes/<part>.log; the whole log of a part that failed is printed, and
# the end of it for one that passed.
#
#   scripts/lanes.sh static functional molecule:deploy bench:deploy ...
set -uo pipefail

jobs="${JOBS:-2}"
bin="${BIN:-.venv/bin}"
logs="${LANES_LOG_DIR:-build/lanes}"
# Heaviest first (seconds of one part in a lane, measured on two cores with the other lane busy); a part not
# listed runs after these. Static runs first: a lint error shows within minutes.
order=(static molecule:faults molecule:deploy molecule:blue_green functional molecule:release molecule:multi_host
  molecule:migrate molecule:mariadb molecule:databases molecule:workers molecule:backup bench:deploy molecule:awx
  bench:blue_green bench:prepare bench:scale bench:backup molecule:harness bench:migration_status bench:ledger)

if [ "$#" -eq 0 ]; then
  echo "usage: $0 PART..." >&2
  exit 2
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: JOBS must be a positive number, not '$jobs'" >&2
  exit 2
fi
for part in "$@"; do
  case "$part" in
    static | functional | molecule:?* | bench:?*) ;;
    *)
      echo "error: '$part' is not a part: static, functional, molecule:SCENARIO or bench:NAME" >&2
      exit 2
      ;;
  esac
done

mkdir -p "$logs"
queue="$logs/queue"
: > "$queue"
: > "$logs/results"
for part in "${order[@]}"; do
  for want in "$@"; do [ "$want" = "$part" ] && echo "$part" >> "$queue"; done
done
for want in "$@"; do
  grep -qxF "$want" "$queue" || echo "$want" >> "$queue"
done

# Take the first part off the queue (empty output when none is left).
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

run_part() {
  case "$1" in
    static) make --no-print-directory static ;;
    functional) "$bin/pytest" -q tests/functional ;;
    molecule:*) "$bin/molecule" test -s "${1#molecule:}" ;;
    bench:*) "$bin/python" "bench/bench_${1#bench:}.py" --smoke ;;
  esac
}

lane() {
  local lane_id="$1" part log start rc seconds
  while part="$(next)" && [ -n "$part" ]; do
    start=$SECONDS
    log="$logs/${part/:/-}.log"
    echo "==> [lane $lane_id] $part (log: $log)"
    run_part "$part" 2>&1 | stamp > "$log"
    rc=${PIPESTATUS[0]}
    seconds=$((SECONDS - start))
    (
      flock 9
      if [ "$rc" -eq 0 ]; then
        echo "==> $part passed in ${seconds} s; the end of its log:"
        tail -n 25 "$log"
      else
        echo "==> $part FAILED (exit $rc) after ${seconds} s; its whole log:"
        cat "$log"
      fi
      echo "$part $rc $seconds" >> "$logs/results"
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

echo "==> parts (exit code, seconds):"
sort -k3 -n -r "$logs/results" | sed 's/^/    /'
left="$(cat "$queue")"
if [ -n "$left" ]; then
  echo "==> not run after a failure: $(echo "$left" | tr '\n' ' ')"
  status=1
fi
exit "$status"
