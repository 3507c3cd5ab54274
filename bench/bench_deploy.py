"""Benchmark the simple deploy's downtime window against the naive deploy, and a re-deploy of the same revision.

Five containers from the local base image, set up alike: PostgreSQL with the
demo database and demo v1 deployed with ``playbooks/deploy.yml``. Then, side
by side, the same changes on each, under a probe inside the container (load.py
at ``--rate`` requests per second, keep-alive, through nginx on loopback):

* ``greenlight``: ``ansible-playbook playbooks/deploy.yml`` from the checkout
  over the docker connection, on container G;
* ``naive``: the usual sequence, on container N, each step a command from the
  controller: ``systemctl stop`` the gunicorn unit, copy the code (a tar stream
  from the controller unpacked over the serving directory), ``pip install -r
  requirements.txt`` into the serving virtualenv from a wheelhouse already on
  the server (nothing to download), ``manage.py migrate``, ``manage.py
  collectstatic``, ``systemctl start`` (which returns once gunicorn is ready).
  No Ansible, so no per-task overhead: the naive method at its fastest.
* ``naive playbook``: the same steps as the usual Ansible play
  (``bench/naive_deploy.yml``: ``systemd_service``, ``unarchive``, ``command``
  for pip, migrate and collectstatic), on container P, over the same docker
  connection as greenlight: the naive method as a team that deploys with
  Ansible writes it.
* ``floor``: greenlight's own window as bare commands, on container F, over
  the same docker connection, one ``docker exec`` per step, after the new
  release was built beside the serving one exactly as greenlight builds it
  (``bench/floor_prepare.yml``, before the probe starts): with migrations,
  maintenance page on (flag + nginx reload), ``systemctl stop``, ``pg_dump``,
  ``migrate``, switch ``current``, ``systemctl start``, one health probe,
  maintenance page off; without, switch, ``systemctl restart``, one health
  probe. The floor no version of greenlight's window can go below on this
  connection: greenlight / floor is the cost of everything else.
* ``floor playbook``: the same steps and the same commands as ``floor``, on
  container B, the release built beforehand the same way, but run as Ansible
  tasks (``ansible.builtin.shell``) over the same docker connection, grouped
  as greenlight's window groups its module calls: with migrations, (1)
  maintenance page on + ``systemctl stop``, (2) ``pg_dump`` + ``migrate``, (3)
  switch + ``systemctl start`` + health probe + maintenance page off; without,
  one task (switch + ``systemctl restart`` + health probe). The floor of any
  Ansible window with these steps: greenlight / floor playbook is what
  greenlight's window costs beyond its module calls.

Changes: v1 -> v2 (two migrations: add a column, backfill it); v2 -> v2.1 (a
new revision with nothing to migrate: only the code differs); v2.1 -> v2.2
(nothing to migrate, but requirements.txt pins another Django patch release:
the naive deploy reinstalls Django inside its window, the wheels copied to
the server beforehand). The window is what the probe saw: from the first
request that did not get a 200 to the next one that did. Then ``deploy.yml``
once more with v2.2 on G: wall time and the PLAY RECAP's changed count.

    python bench/bench_deploy.py                                  # 3 rounds, fresh containers each, ~25 min
    python bench/bench_deploy.py --smoke                          # one container, one pass of each code path, ~2 min
    python bench/bench_deploy.py --update-results bench/RESULTS.md  # also write the section and the plot
    python bench/bench_deploy.py --workers                        # v1 -> v2 without, with an idle, with a busy worker

``--workers``: the same change (v1 -> v2, two migrations) with greenlight on three containers alike but for
``wsgi_processes``: none; a Celery worker (Redis from Debian's redis-server in the container) that is idle; the
same worker given a task of ``--busy`` seconds at the deploy's ``after_prepare`` hook (the last point before the
inspection and the window), so that it is in the middle of it when the window opens. The window a worker adds is
its graceful stop, which waits for the task in hand.

Needs Docker and the base image (``make setup``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import APP, BenchError, Container, say

SECTION = "## simple deploy"
PLOT = harness.BENCH / "plots" / "deploy_window.png"
UNIT = f"greenlight-{APP}@current"
SERVING = f"/srv/{APP}/current"
WINDOW_RATIO_TARGET = 0.3
CODE_ONLY_TARGET = 3.0
REDEPLOY_TARGET = 6.0
METHODS = ("greenlight", "naive", "naive playbook", "floor", "floor playbook")
# A task in the window that takes this long acts on the server; the shorter ones are Ansible's bookkeeping.
WORK_TASK = 0.2
NAIVE_PLAYBOOK = harness.BENCH / "naive_deploy.yml"
FLOOR_PREPARE = harness.BENCH / "floor_prepare.yml"
MAINTENANCE_FLAG = f"/etc/nginx/greenlight/{APP}/maintenance.on"
FLOOR_TARGET = 1.5
# The floor's steps as greenlight's window groups them into module calls: with migrations, and without.
FLOOR_TASKS = {
    True: (("maintenance on", "stop"), ("dump", "migrate"), ("switch", "start", "health", "maintenance off")),
    False: (("switch", "restart", "health"),),
}
# greenlight's window, in tasks that run something on the server (the others are skipped or includes).
WINDOW_TASKS_TARGET = 10
ROUND_TRIPS = 10
# What round_trips measured, one entry per round (module-level: the report reads it).
ROUND_TRIP_RESULTS: list[dict[str, float]] = []
# The task banners of each set-up deploy of v1 (a first simple deploy of the demo), skipped ones included.
FIRST_DEPLOY_BANNERS: list[int] = []
FIRST_DEPLOY_BANNERS_TARGET = 110
# v2.2 pins another Django patch release than the demo (the naive deploy reinstalls Django in its window).
DJANGO_NOW = "Django==5.2.19"
DJANGO_OTHER = "Django==5.2.18"
SETTLE = 2.0  # seconds of probing before and after each deploy
CHANGES = {
    "first deploy": "first deploy of v1",
    "migrations": "v1 -> v2 (2 migrations)",
    "code only": "v2 -> v2.1 (nothing to migrate)",
    "requirements": "v2.1 -> v2.2 (nothing to migrate, Django reinstalled)",
    "same revision": "v2.2 again (same revision)",
}


@dataclass
class Step:
    change: str  # "migrations", "code only", "same revision"
    method: str  # one of METHODS
    source: str  # demo version directory name
    wall: float = 0.0
    outage: harness.Outage | None = None
    reported_window: float | None = None
    changed: int | None = None
    parts: dict[str, float] = field(default_factory=dict)
    probe_start: float = 0.0
    deploy_start: float = 0.0
    trace: list = field(default_factory=list)
    playbook: harness.PlaybookRun | None = None

    def task_times(self, start: float = 0.0, end: float = float("inf")) -> list[tuple[float, str]]:
        """(seconds, name) of the playbook's tasks that started between start and end."""
        if not self.playbook:
            return []
        tasks = self.playbook.tasks()
        ends = [stamp for stamp, _name in tasks[1:]] + [self.playbook.ended]
        return [(stop - stamp, name) for (stamp, name), stop in zip(tasks, ends) if start <= stamp < end]

    def window_tasks(self) -> list[tuple[float, str]]:
        """The tasks that started while the probe saw the site down."""
        if not self.outage or not self.outage.failed:
            return []
        return self.task_times(self.outage.first_failed, self.outage.recovered)

    def window_outcomes(self) -> list[tuple[str, str]]:
        """(name, outcome) of the tasks that ran while the probe saw the site down: the one in progress at the first
        failed probe (it took the site down), and every one whose banner came before the next 200."""
        if not self.playbook or not self.outage or not self.outage.failed:
            return []
        found = self.playbook.outcomes()
        ends = [stamp for stamp, _name, _outcome in found[1:]] + [self.playbook.ended]
        return [
            (name, outcome)
            for (stamp, name, outcome), stop in zip(found, ends)
            if stamp < self.outage.recovered and stop > self.outage.first_failed
        ]


def where_time_goes(tasks: list[tuple[float, str]], shown: int = 6) -> str:
    ranked = sorted(tasks, reverse=True)
    slowest, rest = ranked[:shown], ranked[shown:]
    text = f"{len(ranked)} tasks, {sum(seconds for seconds, _name in ranked):.1f} s in all; the slowest: " + "; ".join(
        f"`{name}` {seconds:.2f} s" for seconds, name in slowest
    )
    if rest:
        text += f"; the other {len(rest)}: {statistics.mean(seconds for seconds, _name in rest):.2f} s each"
    return text


class Bench:
    def __init__(self, workdir: Path, image: str, rate: float, with_requirements_change: bool):
        self.workdir = workdir
        self.image = image
        self.rate = rate
        self.log = harness.log_file("bench_deploy")
        self.sources = {
            "v1": harness.build_demo("v1", workdir / "demo" / "v1"),
            "v2": harness.build_demo("v2", workdir / "demo" / "v2"),
        }
        self.sources["v2.1"] = harness.build_code_only_change(self.sources["v2"], workdir / "demo" / "v2.1", "v2.1")
        self.wheels: dict[str, Path] = {}
        if with_requirements_change:
            self.sources["v2.2"] = harness.build_code_only_change(
                self.sources["v2.1"], workdir / "demo" / "v2.2", "v2.2"
            )
            requirements = self.sources["v2.2"] / "requirements.txt"
            pinned = requirements.read_text()
            if DJANGO_NOW not in pinned:
                raise BenchError(f"the demo no longer pins {DJANGO_NOW}: update DJANGO_NOW and DJANGO_OTHER")
            requirements.write_text(pinned.replace(DJANGO_NOW, DJANGO_OTHER))
            self.wheels["v2.2"] = workdir / "wheels-v2.2"
            harness.run(
                [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--quiet"]
                + ["-r", str(requirements), "-w", str(self.wheels["v2.2"])]
            )

    def inventory(self, containers: list[Container]) -> Path:
        hosts = {}
        for container in containers:
            variables = harness.app_vars(self.workdir)
            variables["greenlight_summary_file"] = str(self.workdir / f"summary-{container.name}.json")
            hosts[container.name] = variables
        return harness.write_inventory(self.workdir / "inventory.json", hosts)

    def summary(self, container: Container) -> dict:
        return json.loads((self.workdir / f"summary-{container.name}.json").read_text())

    def set_up(self, containers: list[Container], deploy_v1: bool = True) -> Path:
        harness.start_containers(containers)
        inventory = self.inventory(containers)
        for container in containers:
            harness.create_database(container)
            if not deploy_v1:
                continue
            first = self.greenlight(container, inventory, "v1", what=f"set-up deploy of v1 to {container.name}")
            FIRST_DEPLOY_BANNERS.append(len(first.tasks()))
            if container.sh("curl -s --max-time 5 http://127.0.0.1/version") != "v1":
                raise BenchError(f"{container.name} does not serve v1 after the set-up")
        return inventory

    def greenlight(self, container: Container, inventory: Path, version: str, what: str = "") -> harness.PlaybookRun:
        result = harness.run_playbook(
            "deploy.yml",
            inventory,
            self.log,
            extra_vars={"greenlight_source_dir": str(self.sources[version])},
            limit=container.name,
        )
        return harness.require_success(result, what or f"deploy.yml of {version} on {container.name}")

    def archive(self, version: str) -> Path:
        """The project as a .tar.gz on the controller (what the naive playbook unpacks on the server)."""
        path = self.workdir / f"code-{version}.tar.gz"
        if not path.exists():
            with tarfile.open(path, mode="w:gz") as archive:
                add_project(archive, self.sources[version])
        return path

    def wheelhouse(self, container: Container, version: str) -> str:
        if version in self.wheels:
            # Downloading is not counted: the wheels are on the server before the window opens.
            wheelhouse = f"{harness.LOAD_DIR}/wheels-{version}"
            copy_tree(container, self.wheels[version], wheelhouse)
            return wheelhouse
        return container.sh(f"ls -d /srv/{APP}/wheels/*/ | head -n 1")

    def naive_playbook(self, container: Container, inventory: Path, version: str) -> harness.PlaybookRun:
        extra = {"naive_archive": str(self.archive(version)), "naive_wheelhouse": self.wheelhouse(container, version)}
        result = harness.run_playbook(str(NAIVE_PLAYBOOK), inventory, self.log, extra_vars=extra, limit=container.name)
        return harness.require_success(result, f"naive_deploy.yml of {version} on {container.name}")

    def naive(self, container: Container, version: str) -> dict[str, float]:
        """stop, copy, install, migrate, collectstatic, start: seconds of each step."""
        wheelhouse = self.wheelhouse(container, version)
        venv = f"{SERVING}/.venv/bin/python"
        steps = {
            "stop": lambda: harness.run(container.exec("systemctl", "stop", UNIT)),
            "copy code": lambda: copy_code(container, self.sources[version]),
            "pip install": lambda: harness.run(
                container.exec(venv, "-m", "pip", "install", "--disable-pip-version-check", "--no-input")
                + ["--no-index", "--find-links", wheelhouse, "-r", f"{SERVING}/requirements.txt"]
            ),
            "migrate": lambda: harness.run(container.exec(f"/srv/{APP}/bin/manage", SERVING, "migrate", "--noinput")),
            "collectstatic": lambda: harness.run(
                container.exec(f"/srv/{APP}/bin/manage", "--as-root", SERVING, "collectstatic", "--noinput")
            ),
            "start": lambda: harness.run(container.exec("systemctl", "start", UNIT)),
        }
        parts = {}
        for name, step in steps.items():
            started = time.monotonic()
            step()
            parts[name] = time.monotonic() - started
        return parts

    def floor_prepare(self, container: Container, inventory: Path, version: str) -> tuple[str, bool]:
        """Build the release of version beside the serving one (not measured): its path, and whether it has
        migrations to apply."""
        extra = {"greenlight_source_dir": str(self.sources[version])}
        result = harness.run_playbook(str(FLOOR_PREPARE), inventory, self.log, extra_vars=extra, limit=container.name)
        harness.require_success(result, f"floor_prepare.yml of {version} on {container.name}")
        for _stamp, line in result.lines:
            if "FLOOR-RELEASE " in line:
                release = line.split("FLOOR-RELEASE ", 1)[1].strip().strip('"')
                return release, "[ ]" in container.sh(f"/srv/{APP}/bin/manage {release} showmigrations --plan")
        raise BenchError(f"floor_prepare.yml of {version} did not say where the release is")

    @staticmethod
    def floor_steps(release: str, pending: bool) -> dict[str, list[str]]:
        """greenlight's window as bare commands: the argv of each step."""
        manage = f"/srv/{APP}/bin/manage"
        socket = f"/run/greenlight-{APP}/current.sock"
        switch = f"ln -sfn {release} /srv/{APP}/current.new && mv -T /srv/{APP}/current.new {SERVING}"
        steps: dict[str, list[str]] = {}
        if pending:
            steps["maintenance on"] = ["sh", "-c", f"printf 'on\\n' > {MAINTENANCE_FLAG} && systemctl reload nginx"]
            steps["stop"] = ["systemctl", "stop", UNIT]
            steps["dump"] = ["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "-d", APP, "-f", "/tmp/floor.dump"]
            steps["migrate"] = [manage, release, "migrate", "--noinput"]
        steps["switch"] = ["sh", "-c", switch]
        steps["start" if pending else "restart"] = ["systemctl", "start" if pending else "restart", UNIT]
        steps["health"] = ["curl", "-sf", "--max-time", "10", "--unix-socket", socket, "http://127.0.0.1/healthz"]
        if pending:
            steps["maintenance off"] = ["sh", "-c", f"rm -f {MAINTENANCE_FLAG} && systemctl reload nginx"]
        return steps

    def floor(self, container: Container, release: str, pending: bool) -> dict[str, float]:
        """greenlight's window as bare commands, one ``docker exec`` each: seconds of each step."""
        parts = {}
        for name, argv in self.floor_steps(release, pending).items():
            started = time.monotonic()
            harness.run(container.exec(*argv))
            parts[name] = time.monotonic() - started
        return parts

    def floor_playbook(self, container: Container, inventory: Path, release: str, pending: bool) -> harness.PlaybookRun:
        """The floor's commands as Ansible tasks over the same connection, grouped as greenlight's window groups its
        module calls (FLOOR_TASKS); a first task, before the window, finds the server's Python as greenlight's
        earlier tasks have."""
        steps = self.floor_steps(release, pending)

        def script(name: str) -> str:
            argv = steps[name]
            # One command a line, so that set -e stops at the first that fails.
            return argv[2].replace(" && ", "\n") if argv[:2] == ["sh", "-c"] else shlex.join(argv)

        tasks = [
            "    - name: Reach the server (before the window)\n      ansible.builtin.command:\n"
            "        argv: ['true']\n      changed_when: false\n"
        ]
        for group in FLOOR_TASKS[pending]:
            # JSON is YAML: the script quoted as one flow scalar.
            command = json.dumps("set -e\n" + "\n".join(script(name) for name in group) + "\n")
            tasks.append(
                f"    - name: {' + '.join(group)}\n      ansible.builtin.shell:\n        cmd: {command}\n"
                "      changed_when: true\n"
            )
        playbook = self.workdir / "floor_window.yml"
        playbook.write_text(
            "- name: greenlight's window as Ansible tasks of bare commands\n  hosts: all\n  become: true\n"
            "  gather_facts: false\n  tasks:\n" + "".join(tasks)
        )
        result = harness.run_playbook(str(playbook), inventory, self.log, limit=container.name)
        return harness.require_success(result, f"floor_window.yml on {container.name}")

    def round_trips(self, container: Container, inventory: Path) -> dict[str, float]:
        """Median seconds of one task running a module on the container (``ansible.builtin.command: true``, one
        task each, banner to banner) and of one bare ``docker exec true``: what each module call of a window costs
        on top of the command it runs."""
        tasks = "".join(
            f"    - name: Round trip {number}\n      ansible.builtin.command:\n        argv: ['true']\n"
            "      changed_when: false\n"
            for number in range(ROUND_TRIPS + 1)
        )
        playbook = self.workdir / "round_trips.yml"
        playbook.write_text(f"- name: Module round trips\n  hosts: all\n  gather_facts: false\n  tasks:\n{tasks}")
        result = harness.require_success(
            harness.run_playbook(str(playbook), inventory, self.log, limit=container.name), "round_trips.yml"
        )
        stamps = [stamp for stamp, name in result.tasks() if "Round trip" in name] + [result.ended]
        # The first task also pays for the connection: left out.
        module = statistics.median(b - a for a, b in zip(stamps[1:-1], stamps[2:]))
        bare = []
        for _round in range(ROUND_TRIPS):
            started = time.monotonic()
            harness.run(container.exec("true"))
            bare.append(time.monotonic() - started)
        return {"module task": module, "docker exec": statistics.median(bare)}

    def measure(self, step: Step, container: Container, inventory: Path) -> Step:
        release, pending = "", False
        # Built before the probe starts, as greenlight builds it before its window.
        if step.method in ("floor", "floor playbook"):
            release, pending = self.floor_prepare(container, inventory, step.source)
        probe = harness.Load(container, self.rate, 600, name="probe")
        step.probe_start = time.time()
        probe.start()
        time.sleep(SETTLE)
        try:
            step.deploy_start = time.time()
            if step.method == "naive":
                step.parts = self.naive(container, step.source)
                step.wall = time.time() - step.deploy_start
            elif step.method == "floor":
                step.parts = self.floor(container, release, pending)
                step.wall = time.time() - step.deploy_start
            elif step.method == "floor playbook":
                result = self.floor_playbook(container, inventory, release, pending)
                step.playbook = result
                step.wall = result.seconds
                step.parts = {name.strip(): seconds for seconds, name in step.task_times()}
            elif step.method == "naive playbook":
                result = self.naive_playbook(container, inventory, step.source)
                step.playbook = result
                step.wall = result.seconds
                step.parts = {name.strip(): seconds for seconds, name in step.task_times()}
            else:
                result = self.greenlight(container, inventory, step.source)
                step.playbook = result
                step.wall = result.seconds
                step.changed = result.changed()
                summary = self.summary(container)
                step.reported_window = float(summary.get("downtime_window_seconds") or 0)
                step.parts = {phase["name"]: float(phase["seconds"]) for phase in summary.get("phases", [])}
            time.sleep(SETTLE)
        finally:
            totals, trace = probe.stop()
        step.trace = trace
        step.outage = harness.outage(trace)
        served = container.sh("curl -s --max-time 5 http://127.0.0.1/version")
        if served != step.source:
            raise BenchError(f"{step.method} {step.change}: {container.name} serves {served!r}, not {step.source}")
        if not trace or trace[-1][2] != 200:
            raise BenchError(f"{step.method} {step.change}: the site did not come back ({trace[-1]})")
        window = step.outage.seconds
        say(
            f"  {step.change:13} {step.method:14} window {window:6.2f} s, {step.outage.failed:3} of "
            f"{step.outage.requests} probes failed, wall {step.wall:6.1f} s"
            + (f", changed={step.changed}" if step.changed is not None else "")
            + f" (probe rate {totals.get('rate')}/s)"
        )
        say("      " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in step.parts.items()))
        return step


def copy_code(container: Container, source: Path) -> None:
    """A tar stream of the project from the controller, unpacked over the serving directory."""
    copy_tree(container, source, SERVING)


def add_project(archive: tarfile.TarFile, source: Path) -> None:
    """The tree under source, as `.`, without __pycache__."""
    archive.add(source, arcname=".", filter=lambda info: None if "__pycache__" in info.name else info)


def copy_tree(container: Container, source: Path, dest: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        add_project(archive, source)
    completed = subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            container.name,
            "bash",
            "-c",
            f"mkdir -p {dest} && tar -C {dest} --no-same-owner -xf -",
        ],
        input=buffer.getvalue(),
        capture_output=True,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"copying the code failed: {completed.stderr.decode(errors='replace')}")


def one_round(bench: Bench, number: int, smoke: bool) -> list[Step]:
    tag = f"{os.getpid()}-{number}"
    if smoke:
        # Every code path once: the first deploy (greenlight, under the probe), each naive deploy, both floors.
        only = Container(f"greenlight-bench-deploy-{tag}", bench.image)
        plan = [
            (Step("first deploy", "greenlight", "v1"), only),
            (Step("migrations", "naive playbook", "v2"), only),
            (Step("code only", "naive", "v2.1"), only),
            (Step("code only", "floor", "v2"), only),
            (Step("code only", "floor playbook", "v2.1"), only),
        ]
        containers = [only]
    else:
        by_method = {
            method: Container(f"greenlight-bench-deploy-{method[0]}{len(method)}-{tag}", bench.image)
            for method in METHODS
        }
        # The order of the methods rotates from round to round.
        order = METHODS[(number - 1) % len(METHODS) :] + METHODS[: (number - 1) % len(METHODS)]
        plan = [
            (Step(change, method, version), by_method[method])
            for change, version in (("migrations", "v2"), ("code only", "v2.1"), ("requirements", "v2.2"))
            for method in order
        ]
        plan.append((Step("same revision", "greenlight", "v2.2"), by_method["greenlight"]))
        containers = list(by_method.values())
    try:
        say(f"round {number}: setting up {', '.join(c.name for c in containers)} (PostgreSQL, demo v1)")
        started = time.monotonic()
        inventory = bench.set_up(containers, deploy_v1=not smoke)
        say(f"round {number}: set up in {time.monotonic() - started:.0f} s")
        if not smoke:
            ROUND_TRIP_RESULTS.append(bench.round_trips(by_method["greenlight"], inventory))
            say(f"round {number}: " + ", ".join(f"{k} {v:.3f} s" for k, v in ROUND_TRIP_RESULTS[-1].items()))
        return [bench.measure(step, container, inventory) for step, container in plan]
    finally:
        for container in containers:
            container.remove()


WORKER_PROCESSES = {"worker": {"command": "celery -A demo worker --concurrency 1", "stop_timeout": 120}}
BUSY_MARKER = "/var/tmp/greenlight-bench-busy"
# The notes the busy worker's task writes: once each, when it begins and when it ends.
BUSY_BEGUN = "SELECT count(*) FROM notes_note WHERE title = 'busy begin'"
BUSY_ENDED = "SELECT extract(epoch FROM created_at) FROM notes_note WHERE title = 'busy end'"
BUSY_NOTES = "SELECT string_agg(title, ',' ORDER BY id) FROM notes_note WHERE title LIKE 'busy %'"


def busy_hook(workdir: Path, seconds: float) -> Path:
    """A task file for the after_prepare hook: when the marker exists, queue notes.tasks.slow with the serving
    release's Celery and wait (bounded) until the worker has begun it."""
    hook = workdir / "busy_hook.yml"
    hook.write_text(
        f"""---
- name: Give the worker a task of {seconds:g} s, and wait until it has begun
  ansible.builtin.shell: |
    set -e
    [ -e {BUSY_MARKER} ] || exit 0
    rm -f {BUSY_MARKER}
    cd /srv/demo/current && set -a && . /srv/demo/shared/.env && set +a
    .venv/bin/celery -A demo call notes.tasks.slow --args '["busy", {seconds}]' > /dev/null
    for i in $(seq 1 120); do
      begun=$(runuser -u postgres -- psql -XAtq -d demo -c "{BUSY_BEGUN}")
      [ "$begun" = 1 ] && exit 0
      sleep 0.25
    done
    echo "the worker did not begin the task" >&2
    exit 1
  changed_when: false
"""
    )
    return hook


def workers_round(bench: Bench, busy: float) -> list[tuple[str, Step]]:
    """v1 -> v2 with greenlight on three containers: no worker, an idle worker, a worker busy for `busy` s."""
    tag = os.getpid()
    kinds = ("no worker", "idle worker", f"worker given a {busy:g} s task just before the window")
    containers = [Container(f"greenlight-bench-deploy-w{n}-{tag}", bench.image) for n in range(len(kinds))]
    try:
        harness.start_containers(containers)
        hosts = {}
        for n, container in enumerate(containers):
            variables = harness.app_vars(bench.workdir)
            variables["greenlight_summary_file"] = str(bench.workdir / f"summary-{container.name}.json")
            if n > 0:
                variables["wsgi_processes"] = WORKER_PROCESSES
            if n == 2:
                variables["greenlight_hooks"] = {"after_prepare": str(busy_hook(bench.workdir, busy))}
                # Debian's unit runs Redis in a user namespace of its own, which a container cannot make.
                container.sh(
                    "mkdir -p /etc/systemd/system/redis-server.service.d && "
                    "printf '[Service]\\nPrivateUsers=false\\n' > /etc/systemd/system/redis-server.service.d/c.conf && "
                    "systemctl daemon-reload && systemctl start redis-server"
                )
            hosts[container.name] = variables
        inventory = harness.write_inventory(bench.workdir / "inventory.json", hosts)
        for container in containers:
            harness.create_database(container)
            bench.greenlight(container, inventory, "v1", what=f"set-up deploy of v1 to {container.name}")
        steps = []
        busy_kind = kinds[2]  # the container whose deploy gives its worker a task (n == 2 above)
        for kind, container in zip(kinds, containers):
            if kind == busy_kind:
                container.sh(f"touch {BUSY_MARKER}")  # the hook queues the task in this deploy only
            say(f"workers: {kind}")
            steps.append((kind, bench.measure(Step("migrations", "greenlight", "v2"), container, inventory)))
            if kind == busy_kind:
                if container.sql(BUSY_NOTES) != "busy begin,busy end":
                    raise BenchError(f"{container.name}: the task in hand was not started and finished exactly once")
                # How much of the task was left when the site went down: what the window had to wait for.
                ended = float(container.sql(BUSY_ENDED))
                opened = steps[-1][1].outage.first_failed if steps[-1][1].outage else ended
                steps[-1][1].parts["task left at the window"] = round(ended - opened, 2)
        return steps
    finally:
        for container in containers:
            container.remove()


WORKERS_SECTION = "## simple deploy with a background worker"


def workers_report(steps: list[tuple[str, Step]], args) -> str:
    lines = [
        WORKERS_SECTION,
        "",
        f"Machine: {harness.machine()}. {harness.versions()}. Collection at {harness.commit()}.",
        f"Command: `{harness.command_line()}`. One round: the same change (demo v1 -> v2, two migrations) with "
        "greenlight on three containers set up alike - no `wsgi_processes`, a Celery worker that is idle, and a "
        f"Celery worker given a task of {args.busy:g} s (`notes.tasks.slow`) at the deploy's `after_prepare` hook, "
        "the last point before the inspection and the window, which waits until the worker has begun it "
        f"(`stop_timeout` 120 s). Probe: load.py inside the container at {args.rate:g} requests/s through nginx; "
        "the window is the "
        "span from the first request that did not get a 200 to the next one that did. The busy worker's task is "
        "checked to have finished exactly once.",
        "",
        "| simple deploy v1 -> v2 | window seen by the probe | window in the summary | end of the task in hand, "
        "from when the site went down (negative: before) | wall |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, step in steps:
        left = step.parts.get("task left at the window")
        lines.append(
            f"| {kind} | {window_of(step):.2f} s | {step.reported_window or 0:.2f} s | "
            f"{'-' if left is None else f'{left:.2f} s'} | {step.wall:.1f} s |"
        )
    return "\n".join(lines) + "\n"


# --- report -----------------------------------------------------------------------------------------


def window_of(step: Step) -> float:
    return step.outage.seconds if step.outage else 0.0


def report(steps: list[Step], rounds: int, args, plot: str) -> str:
    def chosen(change, method):
        return [step for step in steps if step.change == change and step.method == method]

    def med(change, method, value):
        values = [value(step) for step in chosen(change, method)]
        return statistics.median(values) if values else None

    lines = [
        SECTION,
        "",
        f"Machine: {harness.machine()}. {harness.versions()}. Collection at {harness.commit()}.",
        f"Command: `{harness.command_line()}`. {rounds} round(s), each on five "
        f"fresh containers set up alike (PostgreSQL, demo v1 deployed with `deploy.yml`), one per method; in each "
        f"round the same changes on each, the order of the methods rotating. Probe: load.py inside the container at "
        f"{args.rate:g} requests/s with keep-alive through nginx on loopback; the window is the span from the "
        "first request that did not get a 200 to the next one that did. `naive` = `systemctl stop`, tar stream "
        "of the code from the controller over the serving directory, `pip install -r requirements.txt` from a "
        "wheelhouse already on the server (nothing to download), `migrate`, `collectstatic`, `systemctl start`: "
        "one `docker exec` each, no Ansible: the naive method at its fastest. `naive playbook` = the same steps as "
        "the usual Ansible play (`bench/naive_deploy.yml`: `systemd_service` stop, `unarchive` of the code, `command` "
        "for pip (the same wheelhouse), migrate and collectstatic, `systemd_service` start) over the same "
        "docker connection as greenlight. `floor` = greenlight's own window as bare commands over the same "
        "connection, the new release built beforehand as greenlight builds it: maintenance page on, `systemctl "
        "stop`, `pg_dump`, `migrate`, switch `current`, `systemctl start`, one health probe, maintenance page off "
        "(without migrations: switch, `systemctl restart`, one health probe). `floor playbook` = the same commands "
        "(the release built beforehand the same way) as Ansible tasks (`ansible.builtin.shell`) over the same "
        "connection, grouped as greenlight's window groups its module calls: maintenance page on + stop; dump + "
        "migrate; switch + start + health probe + maintenance page off (without migrations: one task, switch + "
        "restart + health probe). Medians over the rounds.",
        "",
        "| change | method | window seen by the probe (s) | failed probes | window reported by the playbook (s) "
        "| wall time (s) | all rounds: window (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for change, label in CHANGES.items():
        for method in METHODS:
            these = chosen(change, method)
            if not these:
                continue
            reported = [step.reported_window for step in these if step.reported_window is not None]
            lines.append(
                f"| {label} | {method} | {med(change, method, window_of):.2f} "
                f"| {med(change, method, lambda step: step.outage.failed):.0f} "
                f"| {f'{statistics.median(reported):.2f}' if reported else '-'} "
                f"| {med(change, method, lambda step: step.wall):.1f} | "
                + ", ".join(f"{window_of(step):.2f}" for step in these)
                + " |"
            )
    lines.append("")
    ours = med("migrations", "greenlight", window_of)
    for method, what in (
        ("naive playbook", "the naive method as an Ansible play, over the same connection"),
        ("naive", "the naive method as bare commands, no Ansible: a floor no playbook reaches"),
    ):
        theirs = med("migrations", method, window_of)
        if ours is not None and theirs:
            ratio = ours / theirs
            lines.append(
                f"- window, greenlight / {method} ({what}), v1 -> v2 with migrations: {ours:.2f} s / "
                f"{theirs:.2f} s = {ratio:.2f} (target <= {WINDOW_RATIO_TARGET}: "
                f"{harness.verdict(ratio <= WINDOW_RATIO_TARGET)})"
            )
    for method, what in (
        (
            "floor playbook",
            f"greenlight's window as {len(FLOOR_TASKS[True])} Ansible tasks of bare commands: the floor of any "
            "Ansible window with these steps",
        ),
        ("floor", "greenlight's window as bare commands"),
    ):
        floor = med("migrations", method, window_of)
        if ours is not None and floor:
            lines.append(
                f"- window, greenlight / {method} ({what}), v1 -> v2 with migrations: {ours:.2f} s / {floor:.2f} s = "
                f"{ours / floor:.2f} (target <= {FLOOR_TARGET:g}: {harness.verdict(ours / floor <= FLOOR_TARGET)})"
            )
    ours = med("code only", "greenlight", window_of)
    if ours is not None:
        ratios = [
            f"greenlight / {method} = {ours / theirs:.2f}"
            for method in ("naive playbook", "naive", "floor playbook", "floor")
            if (theirs := med("code only", method, window_of))
        ]
        lines.append(
            f"- window, greenlight, nothing to migrate: {ours:.2f} s (target <= {CODE_ONLY_TARGET:g} s: "
            f"{harness.verdict(ours <= CODE_ONLY_TARGET)})" + "".join(f"; {ratio}" for ratio in ratios)
        )
    ours = med("requirements", "greenlight", window_of)
    for method in ("naive playbook", "naive"):
        theirs = med("requirements", method, window_of)
        if ours is not None and theirs:
            lines.append(
                f"- window, requirements changed (nothing to migrate): greenlight / {method} = {ours:.2f} s / "
                f"{theirs:.2f} s = {ours / theirs:.2f}: greenlight builds the new virtualenv before its window, the "
                "naive deploy reinstalls inside it"
            )
    again = chosen("same revision", "greenlight")
    if FIRST_DEPLOY_BANNERS:
        banners = int(statistics.median(FIRST_DEPLOY_BANNERS))
        lines.append(
            f"- first simple deploy of the demo (the set-up deploys of v1, median): {banners} task banners, skipped "
            f"ones included (target <= {FIRST_DEPLOY_BANNERS_TARGET}: "
            f"{harness.verdict(banners <= FIRST_DEPLOY_BANNERS_TARGET)})"
        )
    if again:
        wall = statistics.median(step.wall for step in again)
        changed = max(step.changed or 0 for step in again)
        lines.append(
            f"- re-deploy of the same revision: {wall:.1f} s wall (target <= {REDEPLOY_TARGET:g} s: "
            f"{harness.verdict(wall <= REDEPLOY_TARGET)}), changed={changed} in the PLAY RECAP (target 0: "
            f"{harness.verdict(changed == 0)}), {max(step.outage.failed for step in again)} failed probes"
        )
    for method, what in (
        ("floor", "step (all inside the window)"),
        ("floor playbook", "task (the first before the window, the others inside it)"),
        ("naive", "step (all inside the window)"),
        ("naive playbook", "task (Gathering Facts before the window, the others inside it)"),
        ("greenlight", "phase (the playbook's summary)"),
    ):
        parts = [step.parts for step in chosen("migrations", method)]
        if parts:
            lines.append(
                f"- {method} v1 -> v2, median seconds of each {what}: "
                + ", ".join(f"{name} {statistics.median(p.get(name, 0) for p in parts):.2f}" for name in parts[0])
            )
    if ROUND_TRIP_RESULTS:
        module = statistics.median(r["module task"] for r in ROUND_TRIP_RESULTS)
        bare = statistics.median(r["docker exec"] for r in ROUND_TRIP_RESULTS)
        text = (
            f"- one task running a module over this connection (`ansible.builtin.command: true`, banner to banner, "
            f"median of {ROUND_TRIPS}): {module:.2f} s; one bare `docker exec true`: {bare:.2f} s"
        )
        floor, played = med("migrations", "floor", window_of), med("migrations", "floor playbook", window_of)
        if floor and played:
            text += (
                f". The floor of any Ansible window with greenlight's steps, measured (`floor playbook`, "
                f"{len(FLOOR_TASKS[True])} tasks), is {played:.2f} s: {played / floor:.2f}x the bare floor's "
                f"{floor:.2f} s, {played - floor:.2f} s more"
            )
        lines.append(text)
    explain = (
        " (the one in progress at the first failed probe and those whose banner came before the next 200; executed: "
        "`ok`, `changed` or `failed` reported for the host; skipped: banner and `skipping:` only)"
    )
    for change in ("migrations", "code only"):
        counts = []
        for step in chosen(change, "greenlight"):
            outcomes = [outcome for _name, outcome in step.window_outcomes()]
            if outcomes:
                counts.append({kind: outcomes.count(kind) for kind in ("executed", "skipped", "included")})
        if counts:
            lines.append(
                f"- tasks inside greenlight's window{explain}, {CHANGES[change]}: "
                + "; ".join(
                    f"{c['executed']} executed, {c['skipped']} skipped"
                    + (f", {c['included']} includes" if c["included"] else "")
                    for c in counts
                )
                + f" (target <= {WINDOW_TASKS_TARGET} executed: "
                f"{harness.verdict(all(c['executed'] <= WINDOW_TASKS_TARGET for c in counts))})"
            )
            explain = ""
    inside = [step.window_tasks() for step in chosen("migrations", "greenlight")]
    if inside and inside[-1]:
        lines.append(
            "- where the greenlight window goes (v1 -> v2, last round; tasks that started between the first failed "
            "probe and the next 200, each until the next task started): " + where_time_goes(inside[-1])
        )
        work = [seconds for seconds, _name in inside[-1] if seconds >= WORK_TASK]
        rest = [seconds for seconds, _name in inside[-1] if seconds < WORK_TASK]
        naive_window = med("migrations", "naive playbook", window_of)
        if work and naive_window:
            lines.append(
                f"- of that window, the {len(work)} tasks of {WORK_TASK:g} s or more, the ones that act on the server "
                f"(maintenance page, stop, dump, migrate, switch, start, health check), took {sum(work):.1f} s: "
                f"{sum(work) / naive_window:.2f}x the naive playbook's whole window, which has no backup, no health "
                f"check, and a pip install with nothing to do; the other {len(rest)} tasks (role includes, input "
                f"checks, facts) took {sum(rest):.1f} s"
            )
    if again and again[-1].playbook:
        lines.append(
            "- where the re-deploy's time goes (last round; every task banner, skipped ones included, each until the "
            f"next one): {where_time_goes(again[-1].task_times())}; ansible-playbook started its first task "
            f"{again[-1].playbook.tasks()[0][0] - again[-1].playbook.started:.1f} s after it was launched"
        )
    if plot:
        lines += ["", f"![probe results during the deploys]({plot})"]
    return "\n".join(lines) + "\n"


def draw(steps: list[Step], path: Path) -> None:
    """Top: the window of each change and method (bars: median, dots: rounds). Bottom: the probe through the
    window of v1 -> v2 (last round), the methods aligned at their first failed request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "greenlight": "tab:green",
        "naive": "tab:grey",
        "naive playbook": "tab:orange",
        "floor": "tab:blue",
        "floor playbook": "tab:purple",
    }
    changes = [change for change in CHANGES if any(step.change == change for step in steps)]
    figure, (bars, probes) = plt.subplots(2, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [3, 2]})
    for offset, method in zip((-0.32, -0.16, 0.0, 0.16, 0.32), METHODS):
        for position, change in enumerate(changes):
            windows = [window_of(step) for step in steps if step.change == change and step.method == method]
            if not windows:
                continue
            height = statistics.median(windows)
            bars.bar(
                position + offset, height, width=0.15, color=colours[method], label=method if position == 0 else None
            )
            bars.scatter([position + offset] * len(windows), windows, color="black", s=8, zorder=3)
            bars.annotate(f"{height:.1f} s", (position + offset, height), ha="center", va="bottom", fontsize=8)
    handles, labels = bars.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    bars.legend(unique.values(), unique.keys(), fontsize=8)
    bars.set_xticks(range(len(changes)), [CHANGES[change].replace(" (", "\n(") for change in changes], fontsize=8)
    bars.set_ylabel("downtime window seen by the probe (s)")
    bars.set_title("Simple deploy: downtime window per change, greenlight against the naive deploys", fontsize=10)

    rows = [step for step in steps if step.change == "migrations"]
    last = {step.method: step for step in rows}
    for row, (method, step) in enumerate(sorted(last.items())):
        zero = step.outage.first_failed if step.outage and step.outage.failed else step.deploy_start
        for ok, colour in ((True, colours[method]), (False, "tab:red")):
            times = [entry[0] - zero for entry in step.trace if (entry[2] == 200) == ok]
            probes.scatter(times, [row] * len(times), marker="|", s=120, color=colour)
        probes.annotate(f"{window_of(step):.2f} s", (window_of(step), row + 0.25), fontsize=8)
    probes.set_yticks(range(len(last)), [f"{method}\n(v1 -> v2)" for method in sorted(last)], fontsize=8)
    probes.set_ylim(-0.6, len(last) - 0.4)
    probes.set_xlim(-3, max([window_of(step) for step in last.values()] + [1]) + 4)
    probes.set_xlabel("seconds since the first failed probe request (red: not 200)")
    probes.set_title(
        f"Probe requests through the v1 -> v2 window (the last of {len(rows) // max(1, len(last))} rounds)", fontsize=10
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one container, one pass of every code path")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, fresh containers each (default 3)")
    parser.add_argument("--rate", type=float, default=20, help="probe requests per second (default 20)")
    parser.add_argument("--update-results", type=Path, help="write the section into this RESULTS.md, and the plot")
    parser.add_argument("--workers", action="store_true", help="the window without, with an idle, a busy worker")
    parser.add_argument("--busy", type=float, default=20, help="seconds of the busy worker's task (default 20)")
    args = parser.parse_args(argv)
    if args.workers:
        harness.stop_on_sigterm()
        harness.ensure_collection_link()
        with tempfile.TemporaryDirectory(prefix="greenlight-bench-deploy-") as tmp:
            try:
                section = workers_report(
                    workers_round(Bench(Path(tmp), harness.base_image(), args.rate, False), args.busy), args
                )
            except BenchError as exc:
                print(f"bench_deploy: {exc}", file=sys.stderr)
                return 1
        say("\n" + section)
        if args.update_results:
            harness.update_results(args.update_results, WORKERS_SECTION, section)
        return 0
    rounds = 1 if args.smoke else args.rounds
    write = bool(args.update_results) and not args.smoke

    harness.stop_on_sigterm()
    harness.ensure_collection_link()
    started = time.monotonic()
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-deploy-") as tmp:
        try:
            bench = Bench(Path(tmp), harness.base_image(), args.rate, not args.smoke)
            for number in range(1, rounds + 1):
                steps += one_round(bench, number, args.smoke)
            draw(steps, PLOT if write else Path(tmp) / PLOT.name)
        except BenchError as exc:
            print(f"bench_deploy: {exc}", file=sys.stderr)
            return 1
        section = report(steps, rounds, args, str(PLOT.relative_to(harness.BENCH)) if write else "")
    say("\n" + section)
    say(f"(total {time.monotonic() - started:.0f} s)")
    if write:
        harness.update_results(args.update_results, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
