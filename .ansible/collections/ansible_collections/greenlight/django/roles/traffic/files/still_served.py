"""List the servers of an nginx upstream file that differ from the wanted address and still accept connections.

    still_served.py FILE ADDRESS

When the address of a pointer's gunicorn changes (ports to a unix socket, say) while that pointer serves, the
gunicorn running now still listens on the old address until it restarts: nginx must keep sending requests there
until then. Prints a JSON list of such addresses (unix:/path or HOST:PORT); nothing when FILE does not exist.
Standard library only.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

SERVER = re.compile(r"^\s*server\s+([^\s;]+)", re.MULTILINE)
TIMEOUT = 1.0


def accepts(address: str) -> bool:
    try:
        if address.startswith("unix:"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(address[5:])
        else:
            host, _sep, port = address.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT):
                pass
    except (OSError, ValueError):
        return False
    return True


def main(argv: list[str]) -> int:
    path, wanted = Path(argv[0]), argv[1]
    try:
        text = path.read_text()
    except OSError:
        text = ""
    servers = list(dict.fromkeys(SERVER.findall(text)))
    print(json.dumps([address for address in servers if address != wanted and accepts(address)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
