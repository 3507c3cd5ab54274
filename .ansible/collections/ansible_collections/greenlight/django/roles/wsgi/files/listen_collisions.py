"""Find the other greenlight.django applications on this host that use an address this one wants.

    listen_collisions.py --app NAME [--unit-dir DIR] [--nginx-dir DIR] INSTANCE=ADDRESS ...

ADDRESS is unix:/path or HOST:PORT. What the others use is what they declare: the bind addresses in their
gunicorn units (greenlight-<app>@.service, and the per-instance drop-ins of greenlight.django 1.0.0) and the
servers of their nginx upstreams (/etc/nginx/greenlight/<app>/upstream-*.conf). Prints a JSON list of
{instance, address, app, declared_in}; the caller decides. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BIND = re.compile(r"^\s*Environment=\"?GREENLIGHT_WSGI_BIND(?:_[a-z]+)?=([^\s\"]+)", re.MULTILINE)
SERVER = re.compile(r"^\s*server\s+([^\s;]+)", re.MULTILINE)
UNIT = re.compile(r"^greenlight-(?P<app>.+)@(?:[a-z]+)?\.service(?:\.d)?$")
WILDCARD = {"0.0.0.0", "[::]", "*", ""}  # noqa: S104 - addresses compared, nothing binds
LOOPBACK = {"localhost": "127.0.0.1"}


def key(address: str) -> tuple[str, str, str]:
    """('unix', path, '') or ('tcp', host, port); hosts that name the same address compare equal."""
    if address.startswith("unix:"):
        return ("unix", address[5:].rstrip("/"), "")
    host, _sep, port = address.rpartition(":")
    return ("tcp", LOOPBACK.get(host.lower(), host.lower()), port)


def collide(mine: str, theirs: str) -> bool:
    a, b = key(mine), key(theirs)
    if a[0] != b[0]:
        return False
    if a[0] == "unix":
        return a[1] == b[1]
    return a[2] == b[2] and (a[1] == b[1] or a[1] in WILDCARD or b[1] in WILDCARD)


def declared(unit_dir: Path, nginx_dir: Path) -> list[tuple[str, str, str]]:
    """(app, address, file) for every address another application's files declare."""
    found = []
    for path in sorted(unit_dir.glob("greenlight-*@.service")) + sorted(
        unit_dir.glob("greenlight-*@*.service.d/greenlight-bind.conf")
    ):
        match = UNIT.match(path.name if path.suffix == ".service" else path.parent.name)
        if match:
            found += [(match["app"], address, str(path)) for address in BIND.findall(read(path))]
    for path in sorted(nginx_dir.glob("*/upstream-*.conf")):
        found += [(path.parent.name, address, str(path)) for address in SERVER.findall(read(path))]
    return found


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True)
    parser.add_argument("--unit-dir", default="/etc/systemd/system")
    parser.add_argument("--nginx-dir", default="/etc/nginx/greenlight")
    parser.add_argument("wanted", nargs="*", metavar="INSTANCE=ADDRESS")
    args = parser.parse_args(argv)
    wanted = [item.partition("=")[::2] for item in args.wanted]
    others = [item for item in declared(Path(args.unit_dir), Path(args.nginx_dir)) if item[0] != args.app]
    collisions, seen = [], set()
    for instance, address in wanted:
        for app, theirs, where in others:
            if collide(address, theirs) and (instance, app) not in seen:
                seen.add((instance, app))
                collisions.append({"instance": instance, "address": address, "app": app, "declared_in": where})
    print(json.dumps(collisions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
