#!/usr/bin/env bash
# Build a local Debian base image for the molecule scenarios and functional
# tests. Usage: base-image.sh [SUITE] (or GREENLIGHT_DEBIAN_SUITE), SUITE one of
#   bookworm  Debian 12, Python 3.11, PostgreSQL 15, MariaDB 10.11 (the default)
#   trixie    Debian 13, Python 3.13, PostgreSQL 17, MariaDB 11.8
# Redis (a broker for background workers) is there too. MariaDB and Redis are
# installed but not started at boot: the scenarios that use them start them,
# the others do not pay for them.
# No registry is needed: the root file system comes from debootstrap and is
# imported with `docker import`. The tag names the suite and a hash of this
# recipe, so an image is rebuilt only when its recipe changes. Prints the tag
# on stdout.
set -euo pipefail

MIRROR="${GREENLIGHT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${1:-${GREENLIGHT_DEBIAN_SUITE:-bookworm}}"
case "$SUITE" in
  bookworm) PG_VERSION=15 ;;
  trixie) PG_VERSION=17 ;;
  *)
    echo "error: unknown suite '$SUITE': use bookworm (Debian 12) or trixie (Debian 13)." >&2
    exit 2
    ;;
esac
PACKAGES=(
  python3 python3-venv python3-apt python3-psycopg2
  systemd systemd-sysv dbus sudo procps iproute2 curl ca-certificates locales-all
  postgresql postgresql-client nginx rsync sqlite3 git
  mariadb-server mariadb-client redis-server
)
RECIPE_VERSION=1  # bump to force a rebuild after changing the steps below

here="$(cd "$(dirname "$0")" && pwd)"
hash="$(printf '%s\n' "$SUITE" "${PACKAGES[@]}" "$RECIPE_VERSION" | cat - "$here/base-image.sh" | sha256sum | cut -c1-12)"
tag="greenlight-base:${SUITE}-${hash}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "error: building the base image needs root (debootstrap). Run 'sudo make image' once." >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1 || [ ! -e "/usr/share/debootstrap/scripts/$SUITE" ]; then
  echo "==> installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi
if [ ! -e "/usr/share/debootstrap/scripts/$SUITE" ]; then
  echo "error: this machine's debootstrap does not know '$SUITE'; install a newer debootstrap." >&2
  exit 1
fi

root="$(mktemp -d /var/tmp/greenlight-rootfs.XXXXXX)"
trap 'rm -rf --one-file-system "$root"' EXIT
echo "==> debootstrap $SUITE into $root (a minute or two)" >&2
include="$(IFS=,; echo "${PACKAGES[*]}")"
cache="/var/cache/greenlight-debootstrap"  # downloaded packages of both suites, reused by later builds
mkdir -p "$cache"
debootstrap --variant=minbase --cache-dir="$cache" --include="$include" "$SUITE" "$root" "$MIRROR" >&2

# Container niceties: no getty on a console that does not exist, no
# first-boot wizard, an empty machine-id generated at boot, slim apt lists.
chroot "$root" systemctl mask getty@tty1.service serial-getty@ttyS0.service systemd-firstboot.service >/dev/null 2>&1 || true
chroot "$root" systemctl disable mariadb.service redis-server.service >/dev/null 2>&1
: > "$root/etc/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
rm -f "$root/etc/apt/sources.list.d/debian.sources"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$root/etc/apt/sources.list"

echo "==> docker import as $tag" >&2
stage="greenlight-base-stage-$$"
tar -C "$root" -c . | docker import - "$stage:import" >&2
# The PostgreSQL cluster and MariaDB's system tables are created in a
# container rather than the chroot: initdb wants a real /proc and /dev/shm, and
# the package's postinst could not start the server in the chroot to do it.
docker rm -f "$stage" >/dev/null 2>&1 || true
docker run --name "$stage" "$stage:import" sh -ec "pg_createcluster --locale C.UTF-8 $PG_VERSION main
mariadb-install-db --user=mysql --auth-root-authentication-method=socket --skip-test-db >/dev/null" >&2
docker commit -c 'CMD ["/lib/systemd/systemd"]' "$stage" "$tag" >&2
docker rm -f "$stage" >/dev/null
docker rmi "$stage:import" >/dev/null
docker tag "$tag" "greenlight-base:$SUITE" >&2
if [ "$SUITE" = bookworm ]; then docker tag "$tag" greenlight-base:latest >&2; fi
echo "$tag"
