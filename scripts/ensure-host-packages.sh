#!/usr/bin/env bash
# Debian packages the tests need on the controller: rsync (the controller side
# of ansible.posix.synchronize, for code_sync's rsync source). As root they are
# installed when missing; otherwise the user is told what to install.
set -euo pipefail
missing=()
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "warning: ${missing[*]} missing on this machine; install it (e.g. 'sudo apt-get install ${missing[*]}') or the tests that need it are skipped." >&2
  exit 0
fi
echo "==> installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
