"""Constant-rate HTTP load with keep-alive, counted per request (runs in the container).

usage: load.py RATE SECONDS OUTPUT  -- stops by itself after SECONDS or when OUTPUT.stop exists.

Each of CONNECTIONS workers keeps one HTTP/1.1 connection open and sends
requests at RATE/CONNECTIONS per second. When a reused keep-alive connection
is closed by the server before any byte of the answer (nginx closes idle
keep-alive connections when it reloads), the request is sent again once on a
new connection, as HTTP clients do for idempotent requests; those retries are
counted. Every request that does not end in a 200 counts as failed.
"""

import http.client
import json
import os
import sys
import threading
import time

CONNECTIONS = 2
PATH = "/healthz"


def main() -> None:
    rate, seconds, output = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    stop = output + ".stop"
    lock = threading.Lock()
    totals = {"requests": 0, "ok": 0, "failed": 0, "retried_stale_keepalive": 0, "errors": [], "bodies": {}}

    def record(key, value=1):
        with lock:
            totals[key] += value

    def send(conn):
        conn.request("GET", PATH, headers={"Host": "localhost"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace").strip()

    def worker() -> None:
        interval = CONNECTIONS / rate
        conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
        deadline = time.monotonic() + seconds
        due = time.monotonic()
        used = False
        while time.monotonic() < deadline and not os.path.exists(stop):
            record("requests")
            try:
                try:
                    status, body = send(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not used:
                        raise
                    record("retried_stale_keepalive")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
                    status, body = send(conn)
                used = True
                if status == 200:
                    record("ok")
                    with lock:
                        totals["bodies"][body] = totals["bodies"].get(body, 0) + 1
                else:
                    record("failed")
                    with lock:
                        totals["errors"].append(f"{time.time():.3f} HTTP {status}")
            except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                record("failed")
                with lock:
                    totals["errors"].append(f"{time.time():.3f} {error!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
                used = False
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _connection in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals["seconds"] = round(time.monotonic() - started, 2)
    totals["rate"] = round(totals["requests"] / totals["seconds"], 1) if totals["seconds"] else 0
    totals["errors"] = totals["errors"][:50]
    with open(output, "w") as handle:
        json.dump(totals, handle)


if __name__ == "__main__":
    main()
