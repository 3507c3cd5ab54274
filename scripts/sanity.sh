#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of the collection placed where
# ansible-test expects it (ansible_collections/greenlight/django). The copy
# holds the files git tracks or would track, nothing ignored.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
dest="$top/build/sanity/ansible_collections/greenlight/django"
rm -rf "$dest"
mkdir -p "$dest"
cd "$top"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$dest"
cd "$dest"
git init -q
git add -A
# ansible-test bootstraps pip in its sanity virtualenvs with a script from its
# own file host; provide an equivalent that uses only the package index.
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
for version in 24.2 25.0 25.1 25.2; do
  [ -e "$cache/get_pip_${version//./_}.py" ] || cp "$top/scripts/get_pip_offline.py" "$cache/get_pip_${version//./_}.py"
done
exec ansible-test sanity --venv --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "$@"
