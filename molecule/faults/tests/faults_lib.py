"""Helpers of the faults scenario's tests.

Run a playbook from the checkout against the scenario's container, either to
its end or until a chosen point where it is killed (SIGKILL to its whole
process group, as when the controller or the AWX node running it is lost);
read what a user of the site sees; take snapshots of what a refused deploy
must leave exactly as it was, and a checksum of the data no deploy may lose.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PROJECT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"])
CONTAINER = f"greenlight-{os.environ.get('MOLECULE_SCENARIO_NAME', 'faults')}"
HOOKS = SCENARIO / "hooks"

# The database password and the Django secret key of the scenario (molecule.yml, bg.yml).
SECRETS = ("Faults-Leak-Check-db-8b31c7", "Faults-Leak-Check-secret-key-5d0e2f")


@dataclass(frozen=True)
class App:
    """One of the two applications on the container."""

    name: str
    playbook: str  # the deploy playbook this application is deployed with
    site: str  # Host header nginx serves it under
    database: str
    extra: tuple[str, ...] = ()  # ansible-playbook arguments that select it

    @property
    def root(self) -> str:
        return f"/srv/{self.name}"

    @property
    def summary_file(self) -> Path:
        return EPHEMERAL / f"summary-{self.name}.json"

    def summary(self) -> dict:
        return json.loads(self.summary_file.read_text())


SIMPLE = App("demo", "deploy.yml", "127.0.0.1", "demo")
BLUE_GREEN = App("demo_bg", "deploy_blue_green.yml", "bg.test", "demo_bg", ("-e", f"@{SCENARIO / 'vars' / 'bg.yml'}"))


# --- the container ---------------------------------------------------------------


def sh(command: str, check: bool = True, timeout: float = 120) -> str:
    """Run a shell command in the container as root; its standard output, stripped."""
    result = subprocess.run(
        ["docker", "exec", CONTAINER, "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command!r} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


def psql(sql: str, database: str = "demo", check: bool = True) -> str:
    return sh(f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(sql)}", check)


def background_psql(sql: str, database: str, name: str, seconds: int = 120) -> None:
    """A psql session (application_name `name`, bounded to `seconds`) that runs `sql` in the background."""
    command = (
        f"PGAPPNAME={name} timeout {seconds} runuser -u postgres -- psql -XAtq -d {database} -c {shlex.quote(sql)}"
    )
    sh(f"setsid bash -c {shlex.quote(command)} > /dev/null 2>&1 < /dev/null &")


def end_sessions(name: str, database: str) -> None:
    psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE application_name = '{name}' AND datname = '{database}'",
        database,
    )


def wait_for(what: str, probe: Callable[[], bool], seconds: float = 60, interval: float = 0.3, context="") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds} s waiting for {what} {context!r}")


def sessions(database: str, application_like: str, extra: str = "true") -> int:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND application_name LIKE '{application_like}' AND {extra}"
    )
    return int(psql(sql, database))


# --- what a user sees --------------------------------------------------------------


def fetch(app: App, path: str) -> tuple[int, str]:
    """(status, body) of GET path through nginx, as a browser on the server would see it."""
    raw = sh(f"curl -s --max-time 10 -H 'Host: {app.site}' -w '\\n%{{http_code}}' http://127.0.0.1{path}")
    body, _sep, status = raw.rpartition("\n")
    return int(status), body.strip()


def serves(app: App) -> str:
    """The version that answers /version with 200, or 'maintenance' (503 with the page), or 'status <n>'."""
    status, body = fetch(app, "/version")
    if status == 200:
        return body
    if status == 503 and "maintenance" in body.lower():
        return "maintenance"
    return f"status {status}"


def healthy(app: App) -> bool:
    return fetch(app, "/healthz")[0] == 200


def pointer(app: App, name: str) -> str:
    return sh(f"readlink {app.root}/{name} || true").rsplit("/", 1)[-1]


def active_colour(app: App) -> str:
    link = sh(f"readlink /etc/nginx/greenlight/{app.name}/active.conf || true")
    return link.removeprefix("upstream-").removesuffix(".conf")


def write_note(app: App, title: str) -> None:
    sh(f"curl -sf --max-time 10 -H 'Host: {app.site}' -X POST -d title={title} -d body=kept http://127.0.0.1/notes/new")


# --- what must not change ----------------------------------------------------------


def user_data(app: App) -> str:
    """Checksum of the notes users wrote (id, title or its new name headline, body, time): never lost."""
    columns = psql(
        "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'notes_note'",
        app.database,
    ).split(",")
    title = (
        "coalesce(headline, title)"
        if {"headline", "title"} <= set(columns)
        else ("headline" if "headline" in columns else "title")
    )
    sql = (
        f"SELECT count(*) || ':' || md5(coalesce(string_agg(concat_ws('|', id, {title}, body, created_at), '/' "
        "ORDER BY id), '')) FROM notes_note"
    )
    return psql(sql, app.database)


def migrations(app: App) -> list[str]:
    return psql("SELECT app || '.' || name FROM django_migrations ORDER BY id", app.database).splitlines()


def database_snapshot(app: App) -> dict:
    """Every public table's rows (md5 of COPY in key order), the schema and the applied migrations: one exec."""
    psql_ = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {app.database}"
    script = (
        f"for t in $({psql_} -c \"SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1\"); do "
        f'echo "table $t $({psql_} -c "COPY (SELECT * FROM public.\\"$t\\" ORDER BY 1) TO STDOUT" | md5sum)"; done; '
        f'echo "schema $(runuser -u postgres -- pg_dump --schema-only --no-owner -d {app.database}'
        " | grep -v -e '^\\\\restrict' -e '^\\\\unrestrict' | md5sum)\"; "
        f"{psql_} -c \"SELECT 'migration ' || app || '.' || name FROM django_migrations ORDER BY id\""
    )
    snapshot: dict = {"data": {}, "schema": "", "migrations": []}
    for line in sh(script).splitlines():
        kind, _sep, rest = line.partition(" ")
        if kind == "table":
            table, digest = rest.split()[:2]
            snapshot["data"][table] = digest
        elif kind == "schema":
            snapshot["schema"] = rest.split()[0]
        elif kind == "migration":
            snapshot["migrations"].append(rest)
    return snapshot


def server_snapshot(app: App) -> dict:
    """Pointers, releases, nginx, units, environment file, wrapper, backups, lock and maintenance flag."""
    conf = f"/etc/nginx/greenlight/{app.name}"
    files = " ".join(
        [
            f"{app.root}/shared/.env",
            f"{app.root}/bin/manage",
            f"/etc/systemd/system/greenlight-{app.name}@.service",
            f"/etc/nginx/conf.d/greenlight-{app.name}.conf",
            f"{conf}/*.conf",
        ]
    )
    script = (
        f'for p in current blue green; do echo "state $p=$(readlink {app.root}/$p)"; done; '
        f"echo state releases=$(ls {app.root}/releases); "
        f"echo state backups=$(ls {app.root}/backups 2>/dev/null); "
        f"echo state active=$(readlink {conf}/active.conf); "
        f"echo state maintenance=$(test -e {conf}/maintenance.on && echo on || echo off); "
        f"echo state lock=$(test -e {app.root}/deploy.lock && echo held || echo free); "
        f"echo state units=$(systemctl is-active greenlight-{app.name}@current greenlight-{app.name}@blue"
        f" greenlight-{app.name}@green | tr '\\n' ' '); "
        "echo state apps=$(ls /srv); "
        f"sha256sum {files} 2>/dev/null | sort -k2"
    )
    state = {}
    for line in sh(script, check=False).splitlines():
        if line.startswith("state "):
            key, _sep, value = line[len("state ") :].partition("=")
            state[key] = value
        elif line.strip():
            digest, path = line.split(maxsplit=1)
            state[f"sha256 {path}"] = digest
    return state


def snapshot(app: App) -> dict:
    return {"server": server_snapshot(app), "database": database_snapshot(app), "serves": serves(app)}


def differences(before: dict, after: dict) -> list[str]:
    found = []
    for part in ("server", "database"):
        for key in sorted(set(before[part]) | set(after[part])):
            if before[part].get(key) != after[part].get(key):
                found.append(f"{part} {key}: {before[part].get(key)!r} -> {after[part].get(key)!r}")
    if before["serves"] != after["serves"]:
        found.append(f"serves: {before['serves']!r} -> {after['serves']!r}")
    return found


# --- ansible-playbook ----------------------------------------------------------------


def ansible_environment() -> dict:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PYTHONUNBUFFERED="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(PROJECT / "build" / "collections")
    config = EPHEMERAL / "ansible.cfg"
    if config.is_file():
        env["ANSIBLE_CONFIG"] = str(config)
    return env


RUNS = EPHEMERAL / "runs"  # the output of every run, kept until the scenario is destroyed
_counter = iter(range(1, 100000))
_counter_lock = threading.Lock()


class Run:
    """One ansible-playbook run: return code, output, duration, and whether the test killed it."""

    def __init__(self, rc: int, output: str, seconds: float, killed: bool = False, argv: list[str] | None = None):
        self.rc = rc
        self.output = output
        self.seconds = seconds
        self.killed = killed
        with _counter_lock:
            number = next(_counter)
        RUNS.mkdir(exist_ok=True)
        self.log = RUNS / f"{number:03d}.log"
        self.log.write_text(f"{' '.join(argv or [])}\nrc={rc} seconds={seconds:.1f} killed={killed}\n\n{output}")

    @property
    def tail(self) -> str:
        return self.output[-6000:]

    def __repr__(self) -> str:
        return (
            f"Run(rc={self.rc}, seconds={self.seconds:.1f}, killed={self.killed}, log={self.log},"
            f" output=...{self.output[-4000:]})"
        )


def command(
    app: App,
    version: str | None = None,
    *extra: str,
    playbook: str | None = None,
    inventory: Path | None = None,
    extra_vars: dict | None = None,
    verbosity: int = 0,
) -> list[str]:
    argv = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(inventory or INVENTORY.parent),
        str(PROJECT / "playbooks" / (playbook or app.playbook)),
        *app.extra,
    ]
    variables = dict(extra_vars or {})
    if version:
        variables["demo_version"] = version
    if variables:
        argv += ["-e", json.dumps(variables)]
    if verbosity:
        argv.append("-" + "v" * verbosity)
    return argv + list(extra)


def run(app: App, version: str | None = None, *extra: str, timeout: float = 600, **options) -> Run:
    started = time.monotonic()
    argv = command(app, version, *extra, **options)
    completed = subprocess.run(
        argv, capture_output=True, text=True, env=ansible_environment(), timeout=timeout, check=False
    )
    return Run(completed.returncode, completed.stdout + completed.stderr, time.monotonic() - started, argv=argv)


class Background:
    """ansible-playbook started in its own process group, its output collected as it comes."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ansible_environment(),
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.killed = False

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
        self.process.wait()
        self.ended = time.monotonic()

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def kill(self) -> None:
        """SIGKILL to ansible-playbook and every process it started on the controller."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.killed = True

    def wait(self, timeout: float = 600) -> Run:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait(timeout=30)
        self.reader.join(timeout=30)
        output = "".join(self.lines)
        seconds = getattr(self, "ended", time.monotonic()) - self.started
        return Run(self.process.returncode, output, seconds, self.killed, self.argv)


def run_until_killed(
    app: App, version: str, kill_when: Callable[[Background], bool], *extra: str, timeout: float = 300, **options
) -> Run:
    """Run the deploy and SIGKILL it as soon as kill_when(run) is true; fail if it ends by itself first."""
    background = Background(command(app, version, *extra, **options))
    deadline = time.monotonic() + timeout
    while background.process.poll() is None and time.monotonic() < deadline:
        if kill_when(background):
            background.kill()
            break
        time.sleep(0.2)
    result = background.wait(timeout=60)
    assert result.killed, f"the deploy was never interrupted: {result!r}"
    return result


def at_hook(point: str) -> tuple[dict, Callable[[Background], bool]]:
    """Extra vars that stall the deploy at hook `point`, and the kill condition that fires there."""
    hooks = {"greenlight_hooks": {point: str(HOOKS / "stall.yml")}}
    return hooks, lambda background: background.saw("TASK [Fault point reached")


def lock_refusal(app: App, version: str) -> Run:
    """A run without greenlight_lock_break after an interrupted one."""
    return run(app, version)


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


class _ContainerLoop:
    """A shell command run in the container every `interval` seconds, at most `rounds` times, each run appending
    to a file there (a pipe would fill up and stall the loop), until stopped."""

    OUT = ""
    STOP = ""

    def __init__(self, command: str, interval: float, rounds: int):
        script = (
            f"rm -f {self.STOP} {self.OUT}; i=0; "
            f"while [ ! -e {self.STOP} ] && [ $i -lt {rounds} ]; do {command} >> {self.OUT}; "
            f"i=$((i+1)); sleep {interval}; done"
        )
        self.process = subprocess.Popen(
            ["docker", "exec", CONTAINER, "sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _stop(self, read: str) -> str:
        """Stop the loop; what `read` (a shell command on the file) prints."""
        subprocess.run(["docker", "exec", CONTAINER, "touch", self.STOP], check=False, timeout=30)
        self.process.wait(timeout=60)
        return sh(f"{read} {self.OUT}; rm -f {self.OUT} {self.STOP}")


class ProcessSampler(_ContainerLoop):
    """Every command line in the container, sampled every 20 ms until stopped (at most about 5 minutes)."""

    OUT = "/run/greenlight-faults-sampler.out"
    STOP = "/run/greenlight-faults-sampler.stop"

    def __init__(self):
        super().__init__("ps -eo args", 0.02, 15000)

    def stop(self) -> str:
        """The distinct command lines seen."""
        return self._stop("sort -u")


class SiteWatcher(_ContainerLoop):
    """What the site answers on /version (body and status, one line each), every 100 ms in the container, until
    stopped (at most about 10 minutes)."""

    OUT = "/run/greenlight-faults-site.out"
    STOP = "/run/greenlight-faults-site.stop"

    def __init__(self, app: App):
        probe = f"curl -s --max-time 5 -H 'Host: {app.site}' -w ' %{{http_code}}' http://127.0.0.1/version"
        super().__init__(f"echo \"$({probe} | tr '\\n' ' ')\"", 0.1, 6000)

    def stop(self) -> list[str]:
        """Every answer seen, in order."""
        return [" ".join(line.split()) for line in self._stop("cat").splitlines()]
