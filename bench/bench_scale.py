"""Benchmark the simple deploy on one host against four hosts sharing one database; migrations still run once.

A docker network of the benchmark's own; on it, one database container
(PostgreSQL listening on the network, password logins, DDL statements logged)
and app containers from the local base image whose ``DATABASE_URL`` points at
the database container's address. Then ``ansible-playbook
playbooks/deploy.yml`` from the checkout over the docker connection:

* one host: a fresh database and one fresh app container; demo v1 (first
  deploy: every release built, 1 migration), then v2 (2 migrations);
* four hosts: the database dropped and created again, four fresh app
  containers; the same two deploys, to all four in one run.

Wall time of each run (four against one), and proof that migrations ran
once: the hosts that report the migrate task, the ``ALTER TABLE`` statements
in PostgreSQL's log, and the rows of ``django_migrations``.

    python bench/bench_scale.py                                  # ~8 min
    python bench/bench_scale.py --smoke                          # one host, v1 only, ~2 min
    python bench/bench_scale.py --update-results bench/RESULTS.md

Needs Docker and the base image (``make setup``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import BenchError, Container, say

SECTION = "## scale across hosts"
TARGET_RATIO = 1.5
PG_LOG = "/var/log/postgresql/postgresql-15-main.log"
# The DDL of each demo migration that changes the schema: counted in the database server's log.
DDL = {
    "v1": r'CREATE TABLE "notes_note"',
    "v2": r'ALTER TABLE "notes_note" ADD COLUMN "tag"',
}


@dataclass
class Deploy:
    hosts: int
    version: str
    seconds: float
    changed: int
    migrate_hosts: list[str]
    ddl_statements: int
    applied: list[str]
    recorded: dict[str, int]
    cpu_servers: float | None
    cpu_controller: float


class Bench:
    def __init__(self, workdir: Path, image: str):
        self.workdir = workdir
        self.image = image
        self.tag = str(os.getpid())
        self.network = f"greenlight-bench-scale-{self.tag}"
        self.log = harness.log_file("bench_scale")
        self.sources = {version: harness.build_demo(version, workdir / "demo" / version) for version in ("v1", "v2")}
        self.database = Container(f"greenlight-bench-scale-db-{self.tag}", image, self.network)
        self.apps: list[Container] = []

    def start_database(self) -> None:
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True, check=False)
        harness.run(["docker", "network", "create", self.network])
        harness.start_containers([self.database])
        self.database.sh("echo \"log_statement = 'ddl'\" >> /etc/postgresql/15/main/postgresql.conf")
        harness.create_database(self.database, listen_on_network=True)

    def fresh_apps(self, count: int) -> Path:
        """Remove the app containers, start `count` new ones; the inventory of them."""
        self.remove_apps()
        self.apps = [
            Container(f"greenlight-bench-scale-app{number}-{self.tag}", self.image, self.network)
            for number in range(1, count + 1)
        ]
        harness.start_containers(self.apps)
        address = self.database.address()
        hosts = {}
        for app in self.apps:
            app.sh("systemctl disable --now postgresql >/dev/null 2>&1; true")
            variables = harness.app_vars(self.workdir, database_host=address)
            variables["greenlight_summary_file"] = str(self.workdir / "summary.json")
            hosts[app.name] = variables
        return harness.write_inventory(self.workdir / "inventory.json", hosts)

    def deploy(self, inventory: Path, version: str) -> Deploy:
        before = self.ddl_count(version)
        cpu_before = self.servers_cpu(), harness.children_cpu_seconds()
        result = harness.require_success(
            harness.run_playbook(
                "deploy.yml", inventory, self.log, extra_vars={"greenlight_source_dir": str(self.sources[version])}
            ),
            f"deploy.yml of {version} to {len(self.apps)} host(s)",
        )
        cpu_after = self.servers_cpu(), harness.children_cpu_seconds()
        for app in self.apps:
            served = app.sh("curl -s --max-time 5 http://127.0.0.1/version")
            if served != version:
                raise BenchError(f"{app.name} serves {served!r} after the deploy of {version}")
        summary = json.loads((self.workdir / "summary.json").read_text())
        rows = self.database.sql("SELECT name, count(*) FROM django_migrations WHERE app = 'notes' GROUP BY name")
        deploy = Deploy(
            hosts=len(self.apps),
            version=version,
            seconds=result.seconds,
            changed=result.changed(),
            migrate_hosts=migrate_hosts(result),
            ddl_statements=self.ddl_count(version) - before,
            applied=list(summary.get("migrations_applied", [])),
            recorded={f"notes.{line.split('|')[0]}": int(line.split("|")[1]) for line in rows.splitlines() if line},
            cpu_servers=None if None in (cpu_before[0], cpu_after[0]) else cpu_after[0] - cpu_before[0],
            cpu_controller=cpu_after[1] - cpu_before[1],
        )
        say(
            f"  {deploy.hosts} host(s), {version}: {deploy.seconds:.1f} s, migrate task on {deploy.migrate_hosts}, "
            f"{deploy.ddl_statements} DDL statement(s), applied {deploy.applied}"
        )
        return deploy

    def servers_cpu(self) -> float | None:
        """CPU seconds used so far by the app containers and the database container together."""
        used = [container.cpu_seconds() for container in [*self.apps, self.database]]
        return None if None in used else sum(used)

    def ddl_count(self, version: str) -> int:
        text = self.database.sh(f"cat {PG_LOG} 2>/dev/null || true")
        return len(re.findall(re.escape(DDL[version]), text))

    def remove_apps(self) -> None:
        for app in self.apps:
            app.remove()
        self.apps = []

    def remove(self) -> None:
        self.remove_apps()
        self.database.remove()
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True, check=False)


def migrate_hosts(result: harness.PlaybookRun) -> list[str]:
    """Hosts that reported a result for a task that applies the migrations: the migrate role's (blue-green), or
    the downtime window's own call of the migrate module (simple deploy)."""
    hosts: list[str] = []
    for name in {name for _stamp, name in result.tasks()}:
        role_task = name.startswith("greenlight.django.migrate :") and re.search(r"\| Apply\b", name)
        if role_task or name.startswith("Window | Back up and migrate once"):
            hosts += result.task_hosts(name)
    return sorted(set(hosts))


def cpu(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def applied_summary(applied: list[str]) -> str:
    """'19: notes.0001_initial and 18 of Django's own apps' rather than every name."""
    ours = [name for name in applied if name.startswith("notes.")]
    others = len(applied) - len(ours)
    return (
        f"{len(applied)}: " + ", ".join(ours + ([f"{others} of Django's own apps"] if others else []))
        if applied
        else "0"
    )


def ran_once(deploy: Deploy) -> bool:
    expected = 1 if deploy.applied else 0
    return len(deploy.migrate_hosts) == expected and deploy.ddl_statements == expected


def measure(bench: Bench, smoke: bool) -> list[Deploy]:
    deploys = []
    bench.start_database()
    plans = [(1, ["v1"])] if smoke else [(1, ["v1", "v2"]), (4, ["v1", "v2"])]
    for count, versions in plans:
        if deploys:
            bench.remove_apps()
            harness.reset_database(bench.database)
        say(f"{count} host(s): fresh app container(s), fresh database")
        inventory = bench.fresh_apps(count)
        for version in versions:
            deploys.append(bench.deploy(inventory, version))
    return deploys


def report(deploys: list[Deploy], args) -> str:
    lines = [
        SECTION,
        "",
        f"Machine: {harness.machine()}. {harness.versions()}. Collection at {harness.commit()}.",
        f"Command: `{harness.command_line()}`. One PostgreSQL container and "
        f"1 or 4 app containers on a docker network of the benchmark's own, all on this machine (2 cores shared by "
        f"every container and by Ansible); fresh app containers and a fresh database for each host count; Ansible's "
        f"default 5 forks. `deploy.yml` of demo v1 (first deploy) and then v2 (2 migrations) to every host in one "
        f"run.",
        "",
        "| hosts | deploy | wall (s) | CPU s, containers | CPU s, Ansible | changed (all hosts) | hosts that ran the "
        "migrate task | DDL statements in PostgreSQL's log | migrations applied (the run's summary) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for deploy in deploys:
        lines.append(
            f"| {deploy.hosts} | {deploy.version} | {deploy.seconds:.1f} | {cpu(deploy.cpu_servers)} "
            f"| {deploy.cpu_controller:.1f} | {deploy.changed} "
            f"| {len(deploy.migrate_hosts)} | {deploy.ddl_statements} | {applied_summary(deploy.applied)} |"
        )
    lines.append("")
    by_key = {(deploy.hosts, deploy.version): deploy for deploy in deploys}
    for version in ("v1", "v2"):
        one, four = by_key.get((1, version)), by_key.get((4, version))
        if one and four:
            ratio = four.seconds / one.seconds
            lines.append(
                f"- {version}: four hosts / one host = {four.seconds:.1f} s / {one.seconds:.1f} s = {ratio:.2f} "
                f"(target <= {TARGET_RATIO}: {harness.verdict(ratio <= TARGET_RATIO)})"
            )
            if one.cpu_servers is not None and four.cpu_servers is not None:
                total_one = one.cpu_servers + one.cpu_controller
                total_four = four.cpu_servers + four.cpu_controller
                floor = total_four / (os.cpu_count() or 1)
                lines.append(
                    f"  - CPU, containers + Ansible: {total_four:.0f} s for four hosts against {total_one:.0f} s for "
                    f"one ({total_four / total_one:.1f}x); on this machine's {os.cpu_count()} cores the four-host "
                    f"run cannot take less than {floor:.0f} s, {floor / one.seconds:.2f}x the one-host run, because "
                    "the four servers share the cores that separate machines would each have"
                )
    once = all(ran_once(deploy) for deploy in deploys)
    recorded = by_key.get((4, "v2")) or deploys[-1]
    lines.append(
        f"- migrations once: in every run that applied migrations, exactly one host ran the migrate task and the "
        f"DDL reached the database once: {'yes' if once else '**no**'}; `django_migrations` after the last run: "
        + ", ".join(f"{name} x{count}" for name, count in sorted(recorded.recorded.items()))
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one host, v1 only")
    parser.add_argument("--update-results", type=Path, help="write the section into this RESULTS.md")
    args = parser.parse_args(argv)
    write = bool(args.update_results) and not args.smoke

    harness.stop_on_sigterm()
    harness.ensure_collection_link()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-scale-") as tmp:
        bench = Bench(Path(tmp), harness.base_image())
        try:
            deploys = measure(bench, args.smoke)
        except BenchError as exc:
            print(f"bench_scale: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.remove()
    section = report(deploys, args)
    say("\n" + section)
    say(f"(total {time.monotonic() - started:.0f} s)")
    bad = [deploy for deploy in deploys if not ran_once(deploy)]
    if bad:
        print(f"bench_scale: migrations ran more than once: {bad}", file=sys.stderr)
        return 1
    if write:
        harness.update_results(args.update_results, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
