# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

Wait until a URL answers 2xx a number of times in a row, within a deadline. With a unix socket the request
goes to the server listening on it (the URL gives the path and, unless a host is given, the Host header), as
``curl --unix-socket`` does. Standard library only; no proxy, no redirect is followed (the server is on the
same host).
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse

PROBE_TIMEOUT = 5.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket; the host given is only the Host header's default."""

    def __init__(self, path: str, host: str, timeout: float):
        super().__init__(host or "localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def connection(url: urllib.parse.SplitResult, unix_socket: str, timeout: float) -> http.client.HTTPConnection:
    if unix_socket:
        return UnixHTTPConnection(unix_socket, url.netloc, timeout)
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    return kind(url.netloc, timeout=timeout)


def probe(url: str, host: str, unix_socket: str, timeout: float) -> tuple[bool, str]:
    """(healthy, what was seen) for one request."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = connection(parts, unix_socket, timeout)
    try:
        conn.request("GET", target, headers={"Host": host} if host else {})
        response = conn.getresponse()
        body = response.read(200).decode("utf-8", "replace").strip()
        return 200 <= response.status < 300, f"HTTP {response.status} {body}".strip()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"no answer: {exc}"
    finally:
        conn.close()


def wait(
    url: str, successes: int, timeout: float, interval: float, host: str, unix_socket: str = ""
) -> tuple[bool, dict]:
    deadline = time.monotonic() + timeout
    streak, probes, last = 0, 0, "not probed"
    where = {"url": url, **({"unix_socket": unix_socket} if unix_socket else {})}
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, {**where, "probes": probes, "streak": streak, "last": last}
        healthy, last = probe(url, host, unix_socket, min(PROBE_TIMEOUT, remaining))
        probes += 1
        streak = streak + 1 if healthy else 0
        if streak >= successes:
            return True, {**where, "probes": probes, "streak": streak, "last": last}
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
