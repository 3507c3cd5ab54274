#!/usr/bin/env bash
# Make sure a Docker daemon answers. As root on Debian, install docker.io and
# start dockerd when needed; otherwise explain what to do.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "error: no Docker daemon answers ('docker info' failed)." >&2
  echo "Start Docker (e.g. 'sudo systemctl start docker') and make sure your user may use it, then run make again." >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing docker.io from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl start docker || true
fi

if ! docker info >/dev/null 2>&1; then
  echo "==> starting dockerd in the background (log: /var/log/greenlight-dockerd.log)"
  # Only stdin, stdout and stderr go to the daemon: a descriptor inherited from the caller (a lock file held
  # around `make`, say) would stay open, and held, as long as dockerd runs.
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    # A session of its own: stopping the job that started it (its process group) must not stop the daemon.
    if command -v setsid >/dev/null 2>&1; then
      exec setsid nohup dockerd >/var/log/greenlight-dockerd.log 2>&1 </dev/null
    fi
    exec nohup dockerd >/var/log/greenlight-dockerd.log 2>&1 </dev/null
  ) &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60 s; see /var/log/greenlight-dockerd.log" >&2
exit 1
