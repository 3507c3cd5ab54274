"""Queue a task every INTERVAL seconds through the application's broker, numbered (runs in the container).

usage: produce.py OUTPUT SECONDS  -- run in a release's directory with its virtualenv's python and the
application's environment; stops by itself after SECONDS or when OUTPUT.stop exists. OUTPUT holds the number of
tasks sent so far: notes.tasks.record("across-0"), ("across-1"), ... each writes one note titled by its key.
"""

import os
import sys
import time

INTERVAL = 0.2


def main() -> None:
    output, seconds = sys.argv[1], float(sys.argv[2])
    sys.path.insert(0, os.getcwd())
    from demo.celery import app  # noqa: PLC0415 - the release's code, importable only from its directory

    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not os.path.exists(output + ".stop"):
        app.send_task("notes.tasks.record", args=[f"across-{sent}"])
        sent += 1
        with open(output + ".tmp", "w") as handle:
            handle.write(str(sent))
        os.replace(output + ".tmp", output)
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
