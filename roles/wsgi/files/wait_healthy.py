"""Wait until a URL answers 2xx a number of times in a row, within a deadline.

    wait_healthy.py --url URL [--successes N] [--timeout SECONDS] [--interval SECONDS] [--host HOST]

Exit 0 and print a JSON summary once N consecutive probes answered 2xx; exit 1
with the last status or error when the deadline passes first. Standard library
only; proxies from the environment are ignored (the URL is on this host).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

PROBE_TIMEOUT = 5.0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def probe(opener: urllib.request.OpenerDirector, url: str, host: str, timeout: float) -> tuple[bool, str]:
    """(healthy, what was seen) for one request."""
    # main() accepts http:// and https:// URLs only
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(200).decode("utf-8", "replace").strip()
            return 200 <= response.status < 300, f"HTTP {response.status} {body}".strip()
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} {exc.read(200).decode('utf-8', 'replace').strip()}".strip()
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer: {getattr(exc, 'reason', exc)}"


def wait(url: str, successes: int, timeout: float, interval: float, host: str) -> tuple[bool, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    deadline = time.monotonic() + timeout
    streak, probes, last = 0, 0, "not probed"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, {"url": url, "probes": probes, "streak": streak, "last": last}
        healthy, last = probe(opener, url, host, min(PROBE_TIMEOUT, remaining))
        probes += 1
        streak = streak + 1 if healthy else 0
        if streak >= successes:
            return True, {"url": url, "probes": probes, "streak": streak, "last": last}
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--successes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--host", default="")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        parser.error("--url must be an http:// or https:// URL")
    healthy, summary = wait(args.url, max(args.successes, 1), args.timeout, args.interval, args.host)
    print(json.dumps(summary))
    if not healthy:
        print(f"last probe of {args.url}: {summary['last']}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
