"""Benchmark the blue-green deploy under constant load: failed requests and latency before, during and after the switch.

A container from the local base image with PostgreSQL and demo v1 deployed
blue-green. load.py (the blue_green scenario's load generator, wrapped by
load_trace.py to keep every request) runs inside the container at ``--rate``
requests per second over two keep-alive connections against nginx on
loopback, ``--settle`` seconds before the deploy, during
``ansible-playbook playbooks/deploy_blue_green.yml`` of v2 (two migrations,
expand before the switch), and ``--settle`` seconds after it. The playbook's
phases are timed by the moment each ``Phase | <name>`` task starts (its
output is stamped line by line as it arrives), so every request falls in one
segment: before the deploy; deploy while the old colour serves (prepare,
inspect, migrate, start the idle colour); switch and drain; rest of the run
(contract, cleanup); after the deploy. Per segment: requests, failures,
achieved rate, latency percentiles.

Side by side, the alternative on a second container set up alike: the simple
deploy (``playbooks/deploy.yml``) of the same change under the same load, whose
downtime window shows up as failed requests.

    python bench/bench_blue_green.py                                  # ~6 min
    python bench/bench_blue_green.py --smoke                          # first deploy under load, one container, ~2 min
    python bench/bench_blue_green.py --update-results bench/RESULTS.md  # also write the section and the plot

Needs Docker and the base image (``make setup``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import BenchError, Container, say

SECTION = "## blue-green under load"
PLOT = harness.BENCH / "plots" / "blue_green_latency.png"
MIN_RATE = 50
SEGMENTS = ("before", "deploy, old colour serves", "switch and drain", "contract and clean-up", "after")


@dataclass
class Run:
    playbook: str
    result: harness.PlaybookRun | None = None
    totals: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)
    load_start: float = 0.0
    load_end: float = 0.0
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(share * len(ordered))))
    return ordered[rank - 1]


def segment_bounds(run: Run) -> dict[str, tuple[float, float]]:
    """Start and end of each segment, from the load's span and the playbook's phase markers."""
    result = run.result
    phases = {name: stamp for stamp, name in reversed(result.phases())}  # the first start of each phase
    switch = phases.get("switch", result.ended)
    after_switch = min(
        [phases[name] for name in ("contract", "cleanup") if name in phases and phases[name] > switch] or [result.ended]
    )
    return {
        "before": (run.load_start, result.started),
        "deploy, old colour serves": (result.started, switch),
        "switch and drain": (switch, after_switch),
        "contract and clean-up": (after_switch, result.ended),
        "after": (result.ended, run.load_end),
    }


def segment_stats(run: Run) -> dict[str, dict]:
    stats = {}
    for name, (start, end) in run.bounds.items():
        inside = [entry for entry in run.trace if start <= entry[0] < end]
        answered = [entry[1] * 1000 for entry in inside if entry[2] == 200]
        seconds = max(end - start, 1e-9)
        stats[name] = {
            "seconds": end - start,
            "requests": len(inside),
            "failed": sum(1 for entry in inside if entry[2] != 200),
            "rate": len(inside) / seconds,
            "p50": percentile(answered, 0.50) if answered else float("nan"),
            "p95": percentile(answered, 0.95) if answered else float("nan"),
            "p99": percentile(answered, 0.99) if answered else float("nan"),
            "max": max(answered) if answered else float("nan"),
            "bodies": sorted({entry[3] for entry in inside if entry[2] == 200}),
        }
    return stats


class Bench:
    def __init__(self, workdir: Path, image: str, rate: float, settle: float):
        self.workdir = workdir
        self.image = image
        self.rate = rate
        self.settle = settle
        self.log = harness.log_file("bench_blue_green")
        self.sources = {version: harness.build_demo(version, workdir / "demo" / version) for version in ("v1", "v2")}

    def inventory(self, containers: list[Container]) -> Path:
        hosts = {}
        for container in containers:
            variables = harness.app_vars(self.workdir)
            variables["greenlight_summary_file"] = str(self.workdir / f"summary-{container.name}.json")
            hosts[container.name] = variables
        return harness.write_inventory(self.workdir / "inventory.json", hosts)

    def deploy(self, playbook: str, container: Container, inventory: Path, version: str) -> harness.PlaybookRun:
        return harness.require_success(
            harness.run_playbook(
                playbook,
                inventory,
                self.log,
                extra_vars={"greenlight_source_dir": str(self.sources[version])},
                limit=container.name,
            ),
            f"{playbook} of {version} on {container.name}",
        )

    def under_load(self, playbook: str, container: Container, inventory: Path, version: str) -> Run:
        run = Run(playbook)
        load = harness.Load(container, self.rate, 900, name="load")
        run.load_start = time.time()
        load.start()
        time.sleep(self.settle)
        try:
            run.result = self.deploy(playbook, container, inventory, version)
            time.sleep(self.settle)
        finally:
            run.totals, run.trace = load.stop()
            run.load_end = time.time()
        if run.trace:
            run.load_start = run.trace[0][0]
        run.bounds = segment_bounds(run)
        served = container.sh("curl -s --max-time 5 http://127.0.0.1/version")
        if served != version:
            raise BenchError(f"{playbook}: {container.name} serves {served!r}, not {version}")
        failed = sum(1 for entry in run.trace if entry[2] != 200)
        say(
            f"  {playbook}: {failed} of {len(run.trace)} requests failed, {run.totals.get('rate')} req/s, "
            f"deploy {run.result.seconds:.1f} s, phases {[name for _stamp, name in run.result.phases()]}"
        )
        return run


def measure(bench: Bench, smoke: bool) -> list[Run]:
    tag = os.getpid()
    ours = Container(f"greenlight-bench-bg-{tag}", bench.image)
    theirs = Container(f"greenlight-bench-bg-simple-{tag}", bench.image)
    containers = [ours] if smoke else [ours, theirs]
    try:
        started = time.monotonic()
        harness.start_containers(containers)
        inventory = bench.inventory(containers)
        for container in containers:
            harness.create_database(container)
        if smoke:
            # Every code path once: the first deploy (v1) under load; requests fail until it serves.
            say(f"smoke: {ours.name}: first blue-green deploy of v1 under load")
            return [bench.under_load("deploy_blue_green.yml", ours, inventory, "v1")]
        bench.deploy("deploy_blue_green.yml", ours, inventory, "v1")
        bench.deploy("deploy.yml", theirs, inventory, "v1")
        say(f"set up {ours.name} (blue-green) and {theirs.name} (simple) with v1 in {time.monotonic() - started:.0f} s")
        return [
            bench.under_load("deploy_blue_green.yml", ours, inventory, "v2"),
            bench.under_load("deploy.yml", theirs, inventory, "v2"),
        ]
    finally:
        for container in containers:
            container.remove()


# --- report -----------------------------------------------------------------------------------------


def report(runs: list[Run], args, plot: str) -> str:
    ours = runs[0]
    stats = segment_stats(ours)
    failed = sum(value["failed"] for value in stats.values())
    requests = sum(value["requests"] for value in stats.values())
    before = stats["before"]
    what = "first deploy of v1 (smoke: nothing serves before it)" if args.smoke else "v1 -> v2 (2 migrations)"
    lines = [
        SECTION,
        "",
        f"Machine: {harness.machine()}. {harness.versions()}. Collection at {harness.commit()}.",
        f"Command: `{harness.command_line()}`. Change: {what}. "
        f"Load: load.py inside the container, {args.rate:g} requests/s of `GET /healthz` (a database query) over "
        f"two keep-alive connections to nginx on loopback, from {args.settle:g} s before the deploy to "
        f"{args.settle:g} s after it; segments cut at the moments the playbook's `Phase | switch` and "
        f"`Phase | contract` tasks started. Latency: request sent to answer read in full, answered requests only.",
        "",
        "| segment | seconds | requests | failed | rate (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | served |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SEGMENTS:
        value = stats[name]
        lines.append(
            f"| {name} | {value['seconds']:.1f} | {value['requests']} | {value['failed']} | {value['rate']:.1f} "
            f"| {value['p50']:.1f} | {value['p95']:.1f} | {value['p99']:.1f} | {value['max']:.1f} "
            f"| {', '.join(value['bodies'])} |"
        )
    rate = requests / max(ours.load_end - ours.load_start, 1e-9)
    switch = stats["switch and drain"]
    lines += [
        "",
        f"- failed requests, blue-green: {failed} of {requests} (target 0: {harness.verdict(failed == 0)}); "
        f"{ours.totals.get('retried_stale_keepalive', 0)} requests were sent again on a new connection because "
        f"nginx closed an idle keep-alive connection on reload (as HTTP clients do; counted once, not failed)",
        f"- rate over the whole run: {rate:.1f} requests/s (target >= {MIN_RATE}: {harness.verdict(rate >= MIN_RATE)})",
        f"- p99 latency, switch and drain / before: {switch['p99']:.1f} ms / {before['p99']:.1f} ms = "
        f"{switch['p99'] / before['p99']:.2f}; deploy while the old colour serves / before: "
        f"{stats['deploy, old colour serves']['p99'] / before['p99']:.2f}; after / before: "
        f"{stats['after']['p99'] / before['p99']:.2f}. Ansible (the controller) and the server share this "
        "machine's cores, so part of the rise while the playbook runs is Ansible's own CPU, not the switch",
    ]
    if len(runs) > 1:
        simple = runs[1]
        simple_trace_failed = sum(1 for entry in simple.trace if entry[2] != 200)
        outage = harness.outage(simple.trace)
        lines.append(
            f"- the alternative, the simple deploy (`deploy.yml`) of the same change under the same load on a "
            f"second container set up alike: {simple_trace_failed} of {len(simple.trace)} requests failed "
            f"({', '.join(f'{key}: {count}' for key, count in outage.statuses.items())}), a window of "
            f"{outage.seconds:.2f} s; blue-green: {failed}"
        )
    if plot:
        lines += ["", f"![latency and errors over time, blue-green and simple deploy]({plot})"]
    return "\n".join(lines) + "\n"


def draw(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"ok v1": "tab:blue", "ok v2": "tab:green"}
    figure, axes = plt.subplots(len(runs), 1, figsize=(11, 3.4 * len(runs)), sharex=True, squeeze=False)
    for axis, run in zip(axes[:, 0], runs):
        zero = run.result.started
        for body in sorted({entry[3] for entry in run.trace if entry[2] == 200}):
            points = [(e[0] - zero, e[1] * 1000) for e in run.trace if e[2] == 200 and e[3] == body]
            axis.scatter(*zip(*points), s=3, color=colours.get(body, "tab:grey"), label=f"200 {body}")
        failed = [(e[0] - zero, max(e[1] * 1000, 0.1)) for e in run.trace if e[2] != 200]
        if failed:
            axis.scatter(*zip(*failed), s=12, marker="x", color="tab:red", label=f"failed ({len(failed)})")
        for stamp, name in run.result.phases():
            axis.axvline(stamp - zero, color="grey", linewidth=0.7, linestyle=":")
            axis.annotate(
                name, (stamp - zero, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", fontsize=7
            )
        if any(name == "switch" for _stamp, name in run.result.phases()):
            start, end = run.bounds["switch and drain"]
            axis.axvspan(start - zero, end - zero, color="tab:orange", alpha=0.15, label="switch and drain")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.axvline(run.result.seconds, color="black", linewidth=0.8)
        axis.set_yscale("log")
        axis.set_ylabel("latency (ms)")
        failures = sum(1 for entry in run.trace if entry[2] != 200)
        what = "blue-green" if run.playbook == "deploy_blue_green.yml" else "the simple deploy, same change, same load"
        axis.set_title(
            f"{run.playbook} ({what}): {len(run.trace)} requests at {run.totals.get('rate')} req/s, {failures} failed",
            fontsize=10,
        )
        axis.legend(loc="upper left", fontsize=7, markerscale=2)
    axes[-1, 0].set_xlabel("seconds since the playbook started (black lines: start and end; dotted: phases)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one container, the first deploy under load")
    parser.add_argument("--rate", type=float, default=60, help=f"requests per second (default 60, at least {MIN_RATE})")
    parser.add_argument("--settle", type=float, default=15, help="seconds of load before and after (default 15)")
    parser.add_argument("--update-results", type=Path, help="write the section into this RESULTS.md, and the plot")
    args = parser.parse_args(argv)
    if args.smoke:
        args.settle = min(args.settle, 3)
    write = bool(args.update_results) and not args.smoke

    harness.stop_on_sigterm()
    harness.ensure_collection_link()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-bg-") as tmp:
        try:
            bench = Bench(Path(tmp), harness.base_image(), args.rate, args.settle)
            runs = measure(bench, args.smoke)
            draw(runs, PLOT if write else Path(tmp) / PLOT.name)
        except BenchError as exc:
            print(f"bench_blue_green: {exc}", file=sys.stderr)
            return 1
        section = report(runs, args, str(PLOT.relative_to(harness.BENCH)) if write else "")
        if write:
            trace_file = harness.REPO / "build" / "bench" / "blue_green_trace.json"
            trace_file.write_text(json.dumps([{"playbook": r.playbook, "trace": r.trace} for r in runs]))
    say("\n" + section)
    say(f"(total {time.monotonic() - started:.0f} s)")
    if write:
        harness.update_results(args.update_results, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
