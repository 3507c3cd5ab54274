"""Run load.py (molecule/blue_green/tests/load.py) and keep every request it sends (runs in the container).

usage: load_trace.py RATE SECONDS OUTPUT  -- the arguments of load.py, which must sit beside this file.

load.py writes its totals to OUTPUT as usual. This wrapper gives load.py an
HTTP connection class that notes, for every request, when it was sent (wall
clock, comparable with the controller's: containers share the host's clock),
how long the answer took to arrive in full, and how it ended, and writes the
list to OUTPUT.trace as JSON: ``[[sent, seconds, status, detail, retried], ...]``.
``status`` is the HTTP status, or 0 when the request raised (``detail`` then
names the exception; otherwise it is the body, e.g. ``ok v2``). A request
that load.py sent again on a new connection because the server had closed the
reused keep-alive connection first (see load.py) is one entry: sent at the
first attempt, ended by the second, ``retried`` true.
"""

import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402 - load.py sits beside this file

RETRIED_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
TRACE = []
TRACE_LOCK = threading.Lock()
PENDING_RETRY = threading.local()


class AnswerRead:
    """What load.py reads from a response: its status and its body (already read)."""

    def __init__(self, status, body):
        self.status = status
        self.body = body

    def read(self):
        return self.body


class TracedConnection(http.client.HTTPConnection):
    """An HTTPConnection that records every request load.py sends through it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answers = 0
        self.retried = False
        self.sent_wall = 0.0
        self.sent_monotonic = 0.0

    def request(self, method, url, body=None, headers=None, **kwargs):  # pylint: disable=arguments-differ
        retry_of = getattr(PENDING_RETRY, "first", None)
        PENDING_RETRY.first = None
        self.sent_wall, self.sent_monotonic = retry_of or (time.time(), time.monotonic())
        self.retried = retry_of is not None
        try:
            super().request(method, url, body=body, headers=headers or {}, **kwargs)
        except Exception as error:
            self.note_error(error)
            raise

    def getresponse(self):
        try:
            response = super().getresponse()
            data = response.read()
        except Exception as error:
            self.note_error(error)
            raise
        self.answers += 1
        self.note(response.status, data.decode(errors="replace").strip()[:80])
        return AnswerRead(response.status, data)

    def note_error(self, error):
        if isinstance(error, RETRIED_ERRORS) and self.answers > 0 and not self.retried:
            # load.py sends it again at once on a new connection: one request, two attempts.
            PENDING_RETRY.first = (self.sent_wall, self.sent_monotonic)
            return
        self.note(0, repr(error)[:120])

    def note(self, status, detail):
        entry = [
            round(self.sent_wall, 4),
            round(time.monotonic() - self.sent_monotonic, 5),
            status,
            detail,
            self.retried,
        ]
        with TRACE_LOCK:
            TRACE.append(entry)


def main():
    http.client.HTTPConnection = TracedConnection
    try:
        load.main()
    finally:
        with TRACE_LOCK:
            entries = sorted(TRACE)
        with open(sys.argv[3] + ".trace.tmp", "w") as handle:
            json.dump(entries, handle)
        os.replace(sys.argv[3] + ".trace.tmp", sys.argv[3] + ".trace")


if __name__ == "__main__":
    main()
