#!/usr/bin/env bash
# make demo: a local container plays the server; demo v1 goes out with the
# simple deploy, then v2 with blue-green. The site is published on 127.0.0.1.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
name=greenlight-demo
port="${GREENLIGHT_DEMO_PORT:-8080}"
image="$(cat build/base-image.tag)"
work="$top/build/demo"

echo "==> starting the server container $name (from $image)"
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --name "$name" --hostname "$name" \
  --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
  -p "127.0.0.1:${port}:80" "$image" /lib/systemd/systemd >/dev/null
for _ in $(seq 1 60); do
  state="$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)"
  case "$state" in running|degraded) break ;; esac
  sleep 1
done

echo "==> PostgreSQL with the demo database"
docker exec "$name" systemctl start postgresql
docker exec -u postgres "$name" psql -Xq -c "CREATE ROLE demo LOGIN PASSWORD 'demo-db-password'"
docker exec -u postgres "$name" createdb -O demo demo

echo "==> building demo v1 and v2 on the controller"
rm -rf "$work" && mkdir -p "$work"
python3 examples/demo/build.py v1 "$work/v1" >/dev/null
python3 examples/demo/build.py v2 "$work/v2" >/dev/null
cat > "$work/inventory.yml" <<INV
all:
  hosts:
    $name:
      ansible_connection: community.docker.docker
      ansible_python_interpreter: /usr/bin/python3
INV

run() {
  ansible-playbook -i "$work/inventory.yml" -e @examples/demo/deploy/app.yml \
    -e "greenlight_summary_file=$work/summary.json" "$@"
}

echo "==> simple deploy of v1"
run playbooks/deploy.yml -e "greenlight_source_dir=$work/v1"
echo "==> blue-green deploy of v2"
run playbooks/deploy_blue_green.yml -e "greenlight_source_dir=$work/v2"

echo
echo "The demo answers on http://127.0.0.1:${port}/ ($(curl -s "http://127.0.0.1:${port}/version"))."
echo "Summary of the last deploy ($work/summary.json):"
cat "$work/summary.json"
echo "Remove it with: docker rm -f $name"
