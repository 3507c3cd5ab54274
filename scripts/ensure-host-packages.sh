#!/usr/bin/env bash
# Debian packages the tests need on the controller: rsync (the controller side
# of ansible.posix.synchronize, for code_sync's rsync source); the MariaDB
# client (mysqldump and mysql, for the functional tests of the MySQL backup)
# and what builds the mysqlclient driver (its headers, pkg-config, a compiler
# and Python's headers: the wheelhouse builds it here when the servers run the
# controller's Python). As root they are installed when missing; otherwise the
# user is told what to install.
set -euo pipefail
missing=()
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v mysqldump >/dev/null 2>&1 || missing+=(mariadb-client)
for package in libmariadb-dev pkg-config gcc python3-dev; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q '^install ok installed' || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "warning: ${missing[*]} missing on this machine; install it (e.g. 'sudo apt-get install ${missing[*]}') or the tests that need it are skipped." >&2
  exit 0
fi
echo "==> installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
