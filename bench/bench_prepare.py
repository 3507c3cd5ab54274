"""Benchmark the deploy's prepare phase: the demo's requirements against a production-sized set.

The prepare phase builds the new release beside the serving one: ship the
code, bring the wheelhouse to the server, create the release's virtualenv and
install the requirements from the wheelhouse, collect static files, run the
deploy checks. Its cost grows with the requirements, so it is measured with
two requirement sets on the same demo project (demo v1):

* ``demo``: the demo's own requirements.txt (Django, gunicorn, psycopg);
* ``large``: ``bench/requirements-prepare.txt``, 79 pinned distributions
  with large ones (botocore, Pillow, cryptography, lxml, numpy,
  psycopg2-binary), the size of a real project's.

Each measurement is a first deploy (``playbooks/deploy.yml``) to a fresh
container (PostgreSQL with the demo database, no release, no wheelhouse) with
a warm controller cache (the wheelhouse already built, in
``build/bench/prepare-cache``; a deploy that warms it first is not counted).
The prepare phase's seconds come from the playbook's summary; the wheelhouse
tasks' seconds from the playbook's output. Rounds alternate the two sets.

The full run also times the virtualenv step on its own inside a container
that holds the large wheelhouse: ``python3 -m venv`` + its pip against
``--without-pip`` + the wheelhouse's pip run from its wheel, and uv.

    python bench/bench_prepare.py                                   # 3 rounds, ~12 min
    python bench/bench_prepare.py --smoke                           # the demo set once, ~1 min
    python bench/bench_prepare.py --update-results bench/RESULTS.md # also write the section

Needs Docker and the base image (``make setup``), and PyPI for a cold cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import APP, BenchError, Container, say

SECTION = "## prepare phase"
LARGE_REQUIREMENTS = harness.BENCH / "requirements-prepare.txt"
CACHE = harness.REPO / "build" / "bench" / "prepare-cache"
RATIO_TARGET = 2.0
SERVER_WHEELS = f"/srv/{APP}/wheels"
# The tasks of the prepare phase that depend on the wheelhouse, by the start of their name.
# Where the virtualenv step builds (the container's /tmp is a noexec tmpfs).
VENV = "/var/tmp/bench-venv"
WHEELHOUSE_TASKS = ("python |", "wheelhouses |", "wheelhouse |", "virtualenv |")


@dataclass
class Measure:
    name: str  # "demo" or "large"
    prepare: float
    wall: float
    wheels: int
    megabytes: float
    tasks: dict[str, float] = field(default_factory=dict)


class Bench:
    def __init__(self, workdir: Path, image: str):
        self.workdir = workdir
        self.image = image
        self.log = harness.log_file("bench_prepare")
        demo = harness.build_demo("v1", workdir / "demo" / "v1")
        large = workdir / "demo" / "large"
        shutil.copytree(demo, large)
        (large / "requirements.txt").write_text(LARGE_REQUIREMENTS.read_text())
        self.sources = {"demo": demo, "large": large}
        self.requirement_lines = {
            name: sum(
                1 for line in (source / "requirements.txt").read_text().splitlines() if line.split("#")[0].strip()
            )
            for name, source in self.sources.items()
        }

    def deploy(self, name: str, label: str) -> tuple[Measure, Container]:
        """A first deploy of the `name` set to a fresh container; the container is left running."""
        container = Container(f"greenlight-bench-prepare-{os.getpid()}-{label}", self.image)
        harness.start_containers([container])
        harness.create_database(container)
        variables = harness.app_vars(self.workdir)
        variables["code_sync_controller_cache_dir"] = str(CACHE)
        inventory = harness.write_inventory(self.workdir / f"inventory-{label}.json", {container.name: variables})
        result = harness.run_playbook(
            "deploy.yml", inventory, self.log, extra_vars={"greenlight_source_dir": str(self.sources[name])}
        )
        harness.require_success(result, f"deploy.yml with the {name} requirements to {container.name}")
        if container.sh("curl -s --max-time 5 http://127.0.0.1/version") != "v1":
            raise BenchError(f"{container.name} does not serve v1 after the deploy with the {name} requirements")
        summary = json.loads((self.workdir / "summary.json").read_text())
        phases = {phase["name"]: float(phase["seconds"]) for phase in summary.get("phases", [])}
        if "prepare" not in phases:
            raise BenchError(f"the summary has no prepare phase: {phases}")
        listing = container.sh(f"find {SERVER_WHEELS} -name '*.whl' -printf '%s\\n'").split()
        tasks = self.wheelhouse_tasks(result)
        measure = Measure(name, phases["prepare"], result.seconds, len(listing), sum(map(int, listing)) / 1e6, tasks)
        return measure, container

    @staticmethod
    def wheelhouse_tasks(result: harness.PlaybookRun) -> dict[str, float]:
        """Seconds of each wheelhouse task (each until the next banner), by task name without the role."""
        tasks = result.tasks()
        ends = [stamp for stamp, _name in tasks[1:]] + [result.ended]
        seconds: dict[str, float] = {}
        for (stamp, name), end in zip(tasks, ends):
            short = name.split(" : ", 1)[-1]
            if short.startswith(WHEELHOUSE_TASKS):
                seconds[short] = seconds.get(short, 0.0) + end - stamp
        return seconds

    def warm(self, name: str) -> bool:
        """Whether the controller cache holds the `name` set's wheelhouse complete, with its archive."""
        wanted = (self.sources[name] / "requirements.txt").read_text()
        for requirements in CACHE.glob("wheels/*/requirements.txt"):
            built = requirements.parent
            if requirements.read_text() == wanted and (built / ".complete").exists() and list(built.glob("*.tar")):
                return True
        return False

    def measure(self, name: str, label: str) -> Measure:
        measure, container = self.deploy(name, label)
        container.remove()
        say(
            f"  {name:5} prepare {measure.prepare:6.1f} s, wall {measure.wall:6.1f} s, {measure.wheels} wheels "
            f"({measure.megabytes:.0f} MB) on the server"
        )
        return measure

    def venv_step(self, repeats: int) -> dict[str, list[float]]:
        """The virtualenv step alone, in a container that holds the large wheelhouse (from a deploy)."""
        _measure, container = self.deploy("large", "venv")
        try:
            wheelhouse = container.sh(f"ls -d {SERVER_WHEELS}/*/ | head -n 1").rstrip("/")
            requirements = f"{wheelhouse}/requirements.txt"
            container.sh(f"test -f {requirements} || cp /srv/{APP}/current/requirements.txt {requirements}")
            tools = self.workdir / "tools"
            harness.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
                + ["--platform", "manylinux_2_17_x86_64", "pip", "uv", "-d", str(tools)]
            )
            harness.run(["docker", "cp", f"{tools}/.", f"{container.name}:/opt/tools"])
            container.sh(
                "cd /opt/tools && python3 -m zipfile -e uv-*.whl uv && "
                "install -m 0755 uv/uv-*.data/scripts/uv /opt/tools/uvbin"
            )
            pip_wheel = container.sh("ls /opt/tools/pip-*.whl")
            install = f"--no-index --find-links {wheelhouse} -r {requirements}"
            new = f"python3 -m venv --without-pip {VENV} && "
            ways = {
                "venv + its pip": f"python3 -m venv {VENV} && {VENV}/bin/python -m pip install -q "
                f"--disable-pip-version-check --no-cache-dir {install}",
                "venv --without-pip + wheelhouse's pip": f"{new}{VENV}/bin/python {pip_wheel}/pip install -q "
                f"--disable-pip-version-check --no-cache-dir {install}",
                "venv --without-pip + uv, bytecode": f"{new}/opt/tools/uvbin pip install -q --no-cache "
                f"--compile-bytecode --python {VENV}/bin/python {install}",
                "venv --without-pip + uv, no bytecode": f"{new}/opt/tools/uvbin pip install -q --no-cache "
                f"--python {VENV}/bin/python {install}",
            }
            times: dict[str, list[float]] = {way: [] for way in ways}
            for _round in range(repeats):
                for way, script in ways.items():
                    container.sh(f"rm -rf {VENV} && sync")
                    started = time.monotonic()
                    container.sh(script)
                    times[way].append(time.monotonic() - started)
                    container.sh(f"{VENV}/bin/python -c 'import django, PIL, lxml, botocore, cryptography, numpy'")
            return times
        finally:
            container.remove()


def report(measures: list[Measure], venv: dict[str, list[float]], bench: Bench, rounds: int) -> str:
    def of(name: str) -> list[Measure]:
        return [measure for measure in measures if measure.name == name]

    lines = [
        SECTION,
        "",
        f"Machine: {harness.machine()}. {harness.versions()}. Collection at {harness.commit()}.",
        f"Command: `{harness.command_line()}`. {rounds} round(s); each a first deploy (`deploy.yml`) of demo v1 to a "
        "fresh container (PostgreSQL, no release, no wheelhouse), warm controller cache (wheelhouse built). `demo` = "
        f"the demo's requirements.txt ({bench.requirement_lines['demo']} lines); `large` = "
        f"`bench/requirements-prepare.txt` ({bench.requirement_lines['large']} pinned lines). Prepare = the "
        "playbook's summary; wheelhouse tasks = from each task banner to the next. Medians over the rounds.",
        "",
        "| requirements | wheels on the server | MB | prepare (s) | wall (s) | all rounds: prepare (s) |",
        "|---|---|---|---|---|---|",
    ]
    medians = {}
    for name in ("demo", "large"):
        rows = of(name)
        if not rows:
            continue
        medians[name] = statistics.median(row.prepare for row in rows)
        lines.append(
            f"| {name} | {rows[0].wheels} | {rows[0].megabytes:.0f} | {medians[name]:.1f} | "
            f"{statistics.median(row.wall for row in rows):.1f} | {', '.join(f'{row.prepare:.1f}' for row in rows)} |"
        )
    lines.append("")
    if len(medians) == 2:
        ratio = medians["large"] / medians["demo"]
        lines.append(
            f"- prepare, large / demo = {medians['large']:.1f} s / {medians['demo']:.1f} s = {ratio:.2f} "
            f"(target <= {RATIO_TARGET:g}: {harness.verdict(ratio <= RATIO_TARGET)})"
        )
    for name in ("demo", "large"):
        rows = of(name)
        if rows:
            # Tasks that were skipped (a banner and nothing else) are left out.
            names = [
                task for task in rows[-1].tasks if statistics.median(row.tasks.get(task, 0) for row in rows) >= 0.1
            ]
            lines.append(
                f"- {name}, wheelhouse tasks (median s): "
                + ", ".join(
                    f"`{task}` {statistics.median(row.tasks.get(task, 0) for row in rows):.2f}" for task in names
                )
            )
    if venv:
        base = statistics.median(venv["venv + its pip"])
        lines += [
            "",
            f"Virtualenv step alone, large set, inside one container (median of {len(next(iter(venv.values())))}, "
            "interleaved; each ends with the same imports):",
            "",
            "| way | median (s) | vs venv + its pip | all (s) |",
            "|---|---|---|---|",
        ]
        for way, values in venv.items():
            median = statistics.median(values)
            lines.append(
                f"| {way} | {median:.2f} | {median / base:.2f}x | {', '.join(f'{value:.2f}' for value in values)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the demo set once (warms its cache when cold)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds, each set on a fresh container (default 3; 0: the virtualenv step only)",
    )
    parser.add_argument("--venv-repeats", type=int, default=3, help="repeats of the virtualenv step (0: skip it)")
    parser.add_argument("--update-results", type=Path, help="write the section into this RESULTS.md")
    args = parser.parse_args(argv)
    rounds = 1 if args.smoke else args.rounds
    write = bool(args.update_results) and not args.smoke

    harness.stop_on_sigterm()
    harness.ensure_collection_link()
    started = time.monotonic()
    measures: list[Measure] = []
    venv: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-prepare-") as tmp:
        try:
            bench = Bench(Path(tmp), harness.base_image())
            names = ["demo"] if args.smoke else ["demo", "large"]
            if not args.smoke and rounds > 0:
                for name in (name for name in names if not bench.warm(name)):
                    say(f"warming the controller cache for {name} (not counted)")
                    bench.measure(name, f"warm-{name}")
            for number in range(1, rounds + 1):
                order = names if number % 2 else names[::-1]
                say(f"round {number}")
                for name in order:
                    measures.append(bench.measure(name, f"{name}-{number}"))
            if not args.smoke and args.venv_repeats:
                say("the virtualenv step alone")
                venv = bench.venv_step(args.venv_repeats)
        except BenchError as exc:
            print(f"bench_prepare: {exc}", file=sys.stderr)
            return 1
        section = report(measures, venv, bench, rounds)
    say("\n" + section)
    say(f"(total {time.monotonic() - started:.0f} s)")
    if write:
        harness.update_results(args.update_results, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
