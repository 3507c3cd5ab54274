"""What the deploy benchmarks share: containers, the playbooks, the load and the report.

bench_deploy.py, bench_blue_green.py and bench_scale.py import this module
(it sits beside them). Containers come from the local base image with the
flags of TESTBED.md; Ansible reaches them with the docker connection; HTTP
load runs inside the containers, against their own nginx on loopback
(load.py of the blue_green scenario, wrapped by load_trace.py to keep every
request).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
COLLECTIONS = REPO / "build" / "collections"
DEMO_BUILDER = REPO / "examples" / "demo" / "build.py"
LOAD_SCRIPT = REPO / "molecule" / "blue_green" / "tests" / "load.py"
TRACE_SCRIPT = BENCH / "load_trace.py"
LOAD_DIR = "/var/lib/greenlight-bench"
APP = "demo"
DB_PASSWORD = "bench-only-password-7c1d"
SECRET_KEY = "bench-only-secret-key-with-enough-entropy-0123456789-abcdefghij"
SYSTEMD_FLAGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--tmpfs",
    "/tmp",
]


def children_cpu_seconds() -> float:
    """CPU time (user + system) of this process's finished children: ansible-playbook and its workers."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class BenchError(Exception):
    pass


def stop_on_sigterm() -> None:
    """Turn SIGTERM (timeout, CI) into SystemExit so that `finally:` removes the benchmark's containers."""

    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout)[-3000:]
        raise BenchError(f"{' '.join(command[:6])} ... failed (rc={completed.returncode}):\n{detail}")
    return completed


def say(message: str) -> None:
    print(message, flush=True)


def base_image() -> str:
    tag_file = REPO / "build" / "base-image.tag"
    image = os.environ.get("GREENLIGHT_BASE_IMAGE") or (tag_file.read_text().strip() if tag_file.exists() else "")
    if not image:
        raise BenchError("no base image: run `make setup` first (it builds build/base-image.tag)")
    return image


def ensure_collection_link() -> None:
    link = COLLECTIONS / "ansible_collections" / "greenlight" / "django"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(REPO, target_is_directory=True)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs (`nproc`), {cpu}; {platform.platform()}; load average {load} at the end"


def versions() -> str:
    ansible = run([str(Path(sys.executable).parent / "ansible-playbook"), "--version"]).stdout.splitlines()[0]
    docker = run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    return f"{ansible.replace('ansible-playbook ', 'ansible-core ')}, Docker {docker}"


def commit() -> str:
    """The checkout's commit, and whether playbooks/ or roles/ differ from it."""
    head = run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--", "playbooks", "roles", "plugins"]).stdout
    return head + (" (with uncommitted changes to playbooks/roles/plugins)" if dirty.strip() else "")


def command_line() -> str:
    """How this benchmark was started, relative to the checkout."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return " ".join(["python", str(shown), *sys.argv[1:]])


def update_results(path: Path, title: str, section: str) -> None:
    """Replace (or append) the section that starts with `title`; other sections stay as they are."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _match: section.rstrip() + "\n\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# --- the demo project -------------------------------------------------------------------------------


def build_demo(version: str, dest: Path) -> Path:
    run([sys.executable, str(DEMO_BUILDER), version, str(dest), "--force"])
    return dest


def build_code_only_change(source: Path, dest: Path, label: str) -> Path:
    """A copy of `source` with a new revision and nothing to migrate: only VERSION (what /healthz shows) changes."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    (dest / "VERSION").write_text(label + "\n")
    return dest


# --- containers ---------------------------------------------------------------------------------------


class Container:
    """A systemd container from the base image, removed at the end."""

    def __init__(self, name: str, image: str, network: str = ""):
        self.name = name
        self.image = image
        self.network = network

    def create(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)
        network = ["--network", self.network] if self.network else []
        run(
            ["docker", "run", "-d", "--name", self.name, "--hostname", self.name, *network, *SYSTEMD_FLAGS]
            + [self.image, "/lib/systemd/systemd"]
        )

    def wait_running(self) -> None:
        for _attempt in range(120):
            state = subprocess.run(
                ["docker", "exec", self.name, "systemctl", "is-system-running"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise BenchError(f"systemd in {self.name} did not start")

    def exec(self, *args: str) -> list[str]:
        return ["docker", "exec", self.name, *args]

    def sh(self, script: str) -> str:
        return run(self.exec("bash", "-c", script)).stdout.strip()

    def sql(self, statement: str, database: str = APP) -> str:
        command = self.exec("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database)
        return run([*command, "-c", statement]).stdout.strip()

    def put(self, path: str, data: bytes, mode: str = "0644") -> None:
        run(
            ["docker", "exec", "-i", self.name, "bash", "-c", f'mkdir -p "$(dirname {path})" && cat > {path}'],
            input=data.decode(),
        )
        run(self.exec("chmod", mode, path))

    def address(self) -> str:
        inspect = run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", self.name]).stdout
        return json.loads(inspect)[self.network]["IPAddress"]

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)

    def cpu_seconds(self) -> float | None:
        """CPU time used by everything in the container so far (its cgroup), or None when not found."""
        ident = run(["docker", "inspect", "-f", "{{.Id}}", self.name]).stdout.strip()
        for path, scale in (
            (f"/sys/fs/cgroup/cpuacct/docker/{ident}/cpuacct.usage", 1e-9),  # cgroup v1, cgroupfs driver
            (f"/sys/fs/cgroup/docker/{ident}/cpu.stat", 1e-6),  # cgroup v2, cgroupfs driver
            (f"/sys/fs/cgroup/system.slice/docker-{ident}.scope/cpu.stat", 1e-6),  # cgroup v2, systemd driver
        ):
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            match = re.search(r"usage_usec (\d+)", text) if path.endswith("cpu.stat") else re.match(r"(\d+)", text)
            if match:
                return int(match.group(1)) * scale
        return None


def start_containers(containers: list[Container]) -> None:
    for container in containers:
        container.create()
    for container in containers:
        container.wait_running()


def create_database(container: Container, listen_on_network: bool = False) -> None:
    """PostgreSQL with the demo role and database (as molecule/resources/prepare_demo.yml makes them)."""
    if listen_on_network:
        container.sh(
            "echo \"listen_addresses = '*'\" >> /etc/postgresql/15/main/postgresql.conf && "
            "echo 'host all all samenet scram-sha-256' >> /etc/postgresql/15/main/pg_hba.conf"
        )
    container.sh("systemctl restart postgresql")
    container.sql(f"CREATE ROLE demo LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'", database="postgres")
    container.sql("CREATE DATABASE demo OWNER demo", database="postgres")


def reset_database(container: Container) -> None:
    container.sql("DROP DATABASE demo WITH (FORCE)", database="postgres")
    container.sql("CREATE DATABASE demo OWNER demo", database="postgres")


# --- Ansible ------------------------------------------------------------------------------------------


def app_vars(workdir: Path, database_host: str = "127.0.0.1") -> dict:
    """The deploy playbooks' variables for the demo (as the molecule scenarios set them)."""
    return {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "greenlight_app_name": APP,
        "greenlight_environment": {
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": f"postgres://demo:{DB_PASSWORD}@{database_host}:5432/demo",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        },
        "greenlight_summary_file": str(workdir / "summary.json"),
        "traffic_default_server": True,
        "wsgi_health_timeout": 30,
    }


def write_inventory(path: Path, hosts: dict[str, dict]) -> Path:
    path.write_text(json.dumps({"all": {"hosts": hosts}}, indent=1))
    return path


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        }
    )
    return env


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit code, every output line with the time it arrived, wall time."""

    rc: int
    started: float
    ended: float
    lines: list[tuple[float, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def text(self) -> str:
        return "\n".join(line for _stamp, line in self.lines)

    def tasks(self) -> list[tuple[float, str]]:
        """(time the banner was printed, task name) of every task, in order."""
        return [(stamp, name) for stamp, name, _outcome in self.outcomes()]

    def outcomes(self) -> list[tuple[float, str, str]]:
        """(time the banner was printed, task name, outcome) of every task, in order. The outcome: "executed" (a
        host reported ok, changed, failed or fatal), "skipped" (only `skipping:`), "included" (an include: only
        `included:`), or "" (nothing reported, e.g. a task no host ran)."""
        found: list[tuple[float, str, str]] = []
        for stamp, line in self.lines:
            match = re.match(r"TASK \[(.*)\] \*+$", line)
            if match:
                found.append((stamp, match.group(1), ""))
                continue
            if not found or line.startswith(" "):
                continue
            result = re.match(r"(ok|changed|failed|fatal|skipping|included):", line)
            if not result:
                continue
            stamp, name, outcome = found[-1]
            seen = {"skipping": "skipped", "included": "included"}.get(result.group(1), "executed")
            # A loop can report several outcomes: executed wins over skipped, which wins over included.
            rank = ("", "included", "skipped", "executed")
            if rank.index(seen) > rank.index(outcome):
                found[-1] = (stamp, name, seen)
        return found

    def phases(self) -> list[tuple[float, str]]:
        """(start, name) of the playbook's phases (its `Phase | <name>` tasks)."""
        return [(stamp, name.split("|", 1)[1].strip()) for stamp, name in self.tasks() if name.startswith("Phase |")]

    def task_hosts(self, task_prefix: str) -> list[str]:
        """Hosts that reported a result (ok/changed) for the tasks whose name starts with task_prefix."""
        hosts, inside = [], False
        for _stamp, line in self.lines:
            match = re.match(r"TASK \[(.*)\] \*+$", line)
            if match:
                inside = match.group(1).startswith(task_prefix)
                continue
            result = re.match(r"(ok|changed): \[([^\]]+)\]", line)
            if inside and result:
                hosts.append(result.group(2).split(" ")[0])
        return hosts

    def recap(self) -> dict[str, dict[str, int]]:
        counts = {}
        inside = False
        for _stamp, line in self.lines:
            if line.startswith("PLAY RECAP"):
                inside = True
                continue
            match = re.match(r"(\S+)\s+:\s+(.*)$", line)
            if inside and match:
                counts[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
        return counts

    def changed(self) -> int:
        return sum(host.get("changed", 0) for host in self.recap().values())


def run_playbook(
    playbook: str, inventory: Path, log: Path, extra_vars: dict | None = None, limit: str = ""
) -> PlaybookRun:
    """Run playbooks/<playbook> from the checkout; every output line is stamped as it arrives."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory)]
    if limit:
        command += ["--limit", limit]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    command.append(str(REPO / "playbooks" / playbook))
    started = time.time()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env(), bufsize=1
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.time(), line.rstrip("\n")))
    rc = process.wait()
    result = PlaybookRun(rc=rc, started=started, ended=time.time(), lines=lines)
    with log.open("a") as handle:
        handle.write(f"### {' '.join(command)}\n### rc={rc}, {result.seconds:.1f} s\n")
        handle.writelines(f"{stamp - started:7.2f} {line}\n" for stamp, line in lines)
        handle.write("\n")
    return result


def log_file(name: str) -> Path:
    """build/bench/<name>.log, emptied: every playbook run of the benchmark, each line with its time."""
    path = REPO / "build" / "bench" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def require_success(result: PlaybookRun, what: str) -> PlaybookRun:
    if result.rc != 0:
        raise BenchError(f"{what} failed (rc={result.rc}):\n{result.text[-4000:]}")
    return result


def run_parallel(jobs: dict[str, callable]) -> dict:
    """Run the callables in threads (set-up deploys to independent containers); their results by name."""
    results: dict = {}

    def target(name, job):
        try:
            results[name] = job()
        except Exception as error:  # noqa: BLE001 - handed back to the caller below
            results[name] = error

    threads = [threading.Thread(target=target, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for value in results.values():
        if isinstance(value, Exception):
            raise value
    return results


# --- load and probe inside a container -----------------------------------------------------------


class Load:
    """load.py at a constant rate inside a container, against its nginx on loopback; every request kept."""

    def __init__(self, container: Container, rate: float, limit_seconds: float, name: str = "load"):
        self.container = container
        self.rate = rate
        self.limit_seconds = limit_seconds
        self.output = f"{LOAD_DIR}/{name}.json"

    def start(self) -> None:
        self.container.put(f"{LOAD_DIR}/load.py", LOAD_SCRIPT.read_bytes())
        self.container.put(f"{LOAD_DIR}/load_trace.py", TRACE_SCRIPT.read_bytes())
        self.container.sh(f"rm -f {self.output} {self.output}.*")
        run(
            ["docker", "exec", "-d", self.container.name, "python3", f"{LOAD_DIR}/load_trace.py"]
            + [str(self.rate), str(self.limit_seconds), self.output]
        )

    def stop(self) -> tuple[dict, list]:
        """Stop the load; (load.py's totals, the trace)."""
        self.container.sh(f"touch {self.output}.stop")
        for _attempt in range(150):
            done = subprocess.run(self.container.exec("test", "-s", f"{self.output}.trace"), check=False)
            if done.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise BenchError(f"the load in {self.container.name} did not write {self.output}.trace")
        totals = json.loads(self.container.sh(f"cat {self.output}"))
        trace = json.loads(self.container.sh(f"cat {self.output}.trace"))
        return totals, trace


@dataclass
class Outage:
    """What a probe saw: the span from the first failed request to the next answered one."""

    seconds: float
    failed: int
    requests: int
    first_failed: float = 0.0
    recovered: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)


def outage(trace: list) -> Outage:
    failed = [entry for entry in trace if entry[2] != 200]
    statuses: dict[str, int] = {}
    for entry in failed:
        key = str(entry[2]) if entry[2] else entry[3].split("(", 1)[0]
        statuses[key] = statuses.get(key, 0) + 1
    if not failed:
        return Outage(0.0, 0, len(trace))
    first = failed[0][0]
    last = failed[-1][0]
    answered = [entry[0] for entry in trace if entry[2] == 200 and entry[0] > last]
    recovered = answered[0] if answered else trace[-1][0] + trace[-1][1]
    return Outage(recovered - first, len(failed), len(trace), first, recovered, statuses)
