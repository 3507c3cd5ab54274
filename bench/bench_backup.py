"""Benchmark greenlight.django.backup against a plain dump of the same database: PostgreSQL and MariaDB.

One container from the local base image (systemd, PostgreSQL) gets the demo
project (v2, deployed with greenlight.django.code_sync and migrated
through its manage wrapper) and a ``notes_note`` table filled with
``generate_series`` until the database has at least ``--size-mb`` MB. Then, in
every round, side by side (so drift hits them alike), wall clock seen from the
controller:

* ``pg_dump -Fc``: ``pg_dump --format=custom --no-owner`` of the database as
  the application's database user, over TCP with the password in PGPASSWORD,
  to a file in the container - the baseline;
* ``role: dump step``: what the role's one backup task runs on the server -
  the payload of greenlight.django.db_backup with the release's interpreter
  and environment (Django settings, then ``pg_dump`` with the same options
  plus ``--lock-wait-timeout``, then ``pg_restore --list``);
* ``role: playbook, always``: ``ansible-playbook`` of the role with
  ``backup_when: always`` (every task: checks, dump, keep-N);
* ``role: playbook, nothing pending``: the same with ``backup_when: pending``
  while nothing is pending (the role inspects with migration_status and skips
  the dump).

The medians are compared: the dump step against ``pg_dump -Fc`` (target:
within 5 %), the whole playbook against it, and what ``pending`` saves when
nothing is pending.

On the same database, the cost of the data checks before the window: a copy
of the release gains a pending migration that adds a case-insensitive unique
constraint on ``notes_note.title`` (``UniqueConstraint(Lower("title"))``), and
``greenlight.django.migration_status`` inspects it with ``data_checks`` on and
off, interleaved; the report gives both and the check's own time (its
``seconds``), and checks that the check ran and found no offending row.

MariaDB (``--engine mariadb``, section ``## backup on MariaDB``): the same
container, MariaDB from the image's Debian packages started with systemctl, the
demo deployed with ``DATABASE_URL=mysql://...`` and the mysqlclient driver
(built on the server), ``notes_note`` filled from MariaDB's sequence engine
until the tables' data and indexes reach ``--size-mb`` MB. In every round:

* ``mysqldump --single-transaction``: a plain dump of the database as the
  application's database user, over TCP, the password in an option file (mode
  0600) - the baseline;
* ``mysqldump, then fsync of the file``: the same, then ``sync`` of the dump
  (pg_dump syncs its file by itself, and so does the role's step, mysqldump
  not): what a durable plain dump costs;
* ``role: dump step``: the payload as above (Django settings, an option file
  of its own, ``mysqldump --single-transaction`` with the role's options, the
  check of the dump's completion line);
* ``role: playbook, always`` and ``role: playbook, nothing pending``: as above.

There is no data check on MariaDB (it has no expression indexes, so the
constraint above is not created there).

    python bench/bench_backup.py                                  # both engines, >= 200 MB, 5 rounds, many minutes
    python bench/bench_backup.py --engine mariadb                 # MariaDB only
    python bench/bench_backup.py --smoke                          # tiny database, one round, PostgreSQL only
    python bench/bench_backup.py --update-results bench/RESULTS.md

Needs Docker and the base image (``make setup``), and the controller's
wheelhouse for the demo (code_sync builds it once, from the package index).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / "build" / "collections"
DEMO_BUILDER = REPO / "examples" / "demo" / "build.py"
PAYLOAD = REPO / "plugins" / "module_utils" / "_backup_payload.py"
PAYLOAD_IN_CONTAINER = "/var/tmp/greenlight-backup-payload.py"
SECTION = "## backup"
MARIADB_SECTION = "## backup on MariaDB"
APP = "demo"
DB_USER = "demo"
DB_PASSWORD = "bench-only-password-5e2f"
TARGET_RATIO = 1.05
# About 420 bytes per row on disk: ten distinct md5s as the body, so that the
# dump's compression has real work to do (hex compresses about 2:1).
FILL_SQL = (
    "INSERT INTO notes_note (title, body, created_at, tag) "
    "SELECT 'note ' || i, "
    "(SELECT string_agg(md5(i::text || '-' || j::text), ' ') FROM generate_series(1, 10) j), "
    "now() - (i || ' seconds')::interval, 'bench' FROM generate_series({first}, {last}) i"
)

# The same rows on MariaDB, from its sequence engine (seq_1_to_N is a table of the numbers 1..N).
MARIADB_FILL_SQL = (
    "INSERT INTO notes_note (title, body, created_at, tag) "
    "SELECT CONCAT('note ', seq), CONCAT_WS(' ', MD5(CONCAT(seq, '-1')), MD5(CONCAT(seq, '-2')), "
    "MD5(CONCAT(seq, '-3')), MD5(CONCAT(seq, '-4')), MD5(CONCAT(seq, '-5')), MD5(CONCAT(seq, '-6')), "
    "MD5(CONCAT(seq, '-7')), MD5(CONCAT(seq, '-8')), MD5(CONCAT(seq, '-9')), MD5(CONCAT(seq, '-10'))), "
    "NOW() - INTERVAL seq SECOND, 'bench' FROM seq_{first}_to_{last}"
)
MARIADB_SIZE_SQL = "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = 'demo'"
# The plain mysqldump's connection: an option file that only root reads (the password on no command line).
MARIADB_CLIENT_FILE = "/var/tmp/bench-client.cnf"
# What building mysqlclient needs on the server (as in the mariadb scenario).
MARIADB_DRIVER = {
    "code_sync_extra_requirements": ["mysqlclient==2.2.7"],
    "code_sync_build_packages": ["gcc", "libc6-dev", "python3-dev", "pkg-config", "libmariadb-dev"],
}

SETUP_PLAYBOOK = """
- name: Set up the benchmark server
  hosts: all
  gather_facts: false
  tasks:
    - name: Start PostgreSQL
      ansible.builtin.systemd_service:
        name: postgresql
        state: started

    - name: Create the database role and database
      ansible.builtin.shell:
        cmd: >-
          set -eo pipefail;
          psql -XAtq -c "SELECT 1 FROM pg_roles WHERE rolname = 'demo'" | grep -q 1 ||
          psql -Xq -c "CREATE ROLE demo LOGIN PASSWORD '{{ bench_db_password }}'";
          psql -XAtq -c "SELECT 1 FROM pg_database WHERE datname = 'demo'" | grep -q 1 ||
          createdb -O demo demo
        executable: /bin/bash
      become: true
      become_user: postgres
      changed_when: true

    - name: Deploy the demo release
      ansible.builtin.include_role:
        name: greenlight.django.code_sync
      vars:
        code_sync_activate: true

    - name: Migrate it
      ansible.builtin.command:
        argv: [/srv/demo/bin/manage, /srv/demo/current, migrate, --noinput]
      changed_when: true
"""

MARIADB_SETUP_PLAYBOOK = """
- name: Set up the benchmark server
  hosts: all
  gather_facts: false
  tasks:
    # The base image ships without apt lists: read them once, so that code_sync can install what building
    # mysqlclient on the server needs.
    - name: Read the package lists
      ansible.builtin.apt:
        update_cache: true

    - name: Create MariaDB's system tables (images built before they were made at build time)
      ansible.builtin.command:
        argv: [mariadb-install-db, --user=mysql, --auth-root-authentication-method=socket, --skip-test-db]
        creates: /var/lib/mysql/mysql

    - name: Start MariaDB
      ansible.builtin.systemd_service:
        name: mariadb
        state: started

    - name: Create the database user and database
      ansible.builtin.command:
        argv: [mariadb]
        stdin: >-
          CREATE DATABASE IF NOT EXISTS demo CHARACTER SET utf8mb4;
          CREATE USER IF NOT EXISTS 'demo'@'127.0.0.1' IDENTIFIED BY '{{ bench_db_password }}';
          CREATE USER IF NOT EXISTS 'demo'@'localhost' IDENTIFIED BY '{{ bench_db_password }}';
          GRANT ALL PRIVILEGES ON `demo`.* TO 'demo'@'127.0.0.1', 'demo'@'localhost';
      changed_when: true
      no_log: true

    - name: Deploy the demo release
      ansible.builtin.include_role:
        name: greenlight.django.code_sync
      vars:
        code_sync_activate: true

    - name: Migrate it
      ansible.builtin.command:
        argv: [/srv/demo/bin/manage, /srv/demo/current, migrate, --noinput]
      changed_when: true
"""

BACKUP_PLAYBOOK = """
- name: Back up
  hosts: all
  gather_facts: false
  tasks:
    - name: Back up the database
      ansible.builtin.include_role:
        name: greenlight.django.backup
"""


# greenlight.django.migration_status on a copy of the release with one more pending migration, data checks on or
# off (bench_data_checks); prints the check of that migration's operation on a line of its own.
DATA_CHECK_PLAYBOOK = """
- name: Inspect
  hosts: all
  gather_facts: false
  tasks:
    - name: Inspect the release with a new unique constraint
      greenlight.django.migration_status:
        project_path: /var/tmp/variant
        venv: /var/tmp/variant/.venv
        env_files: [/srv/demo/shared/.env]
        data_checks: "{{ bench_data_checks | bool }}"
      register: status

    - name: Show the check
      ansible.builtin.debug:
        msg: "BENCH-DATA-CHECK {{ status.pending[-1].operations[-1].data_check | to_json }}"
"""
TITLE_CI_MIGRATION = """from django.db import migrations, models
from django.db.models.functions import Lower


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_backfill_tag")]
    operations = [
        migrations.AddConstraint(
            model_name="note",
            constraint=models.UniqueConstraint(Lower("title"), name="notes_note_title_ci"),
        ),
    ]
"""
TITLE_CI_META = (
    "    class Meta:\n"
    "        constraints = [models.UniqueConstraint(models.functions.Lower('title'), name='notes_note_title_ci')]\n\n"
)


class BenchError(Exception):
    pass


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout)[-3000:]
        raise BenchError(f"{' '.join(command[:6])} ... failed (rc={completed.returncode}):\n{detail}")
    return completed


def timed(command: list[str], **kwargs) -> float:
    started = time.monotonic()
    run(command, **kwargs)
    return time.monotonic() - started


class Container:
    """A systemd container from the base image, removed at the end."""

    def __init__(self, image: str, engine: str):
        self.name = f"greenlight-bench-backup-{engine}-{os.getpid()}"
        self.image = image

    def start(self) -> None:
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                self.name,
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
                self.image,
                "/lib/systemd/systemd",
            ]
        )
        for _attempt in range(60):
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

    def exec(self, *args: str, env: dict | None = None) -> list[str]:
        prefix = ["docker", "exec"]
        for key, value in (env or {}).items():
            prefix += ["-e", f"{key}={value}"]
        return [*prefix, self.name, *args]

    def sql(self, statement: str) -> str:
        command = self.exec("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", "demo")
        return run([*command, "-c", statement]).stdout.strip()

    def mariadb(self, statement: str) -> str:
        """A statement of MariaDB's root (socket authentication) in the database demo; the last line of output."""
        lines = run(self.exec("mariadb", "-N", "-B", "-D", "demo", "-e", statement)).stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)


class Ansible:
    def __init__(self, workdir: Path, container: Container, demo_dir: Path, engine: str):
        self.workdir = workdir
        self.inventory = workdir / "inventory.yml"
        variables = {
            "ansible_connection": "community.docker.docker",
            "ansible_python_interpreter": "/usr/bin/python3",
            "bench_db_password": DB_PASSWORD,
            "code_sync_app_name": APP,
            "code_sync_source_dir": str(demo_dir),
            "code_sync_collectstatic": False,
            "code_sync_check_deploy": False,
            "code_sync_environment": {
                "DJANGO_SETTINGS_MODULE": "demo.settings",
                "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
                "DATABASE_URL": (
                    f"mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:3306/demo"
                    if engine == "mariadb"
                    else f"postgres://{DB_USER}:{DB_PASSWORD}@127.0.0.1:5432/demo"
                ),
            },
            "backup_app_name": APP,
            "backup_keep": 1,
        }
        if engine == "mariadb":
            variables.update(MARIADB_DRIVER)
        self.inventory.write_text(json.dumps({"all": {"hosts": {container.name: variables}}}))
        (workdir / "setup.yml").write_text(MARIADB_SETUP_PLAYBOOK if engine == "mariadb" else SETUP_PLAYBOOK)
        (workdir / "backup.yml").write_text(BACKUP_PLAYBOOK)
        (workdir / "data_check.yml").write_text(DATA_CHECK_PLAYBOOK)
        self.env = dict(os.environ)
        self.env.update(
            {
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_NOCOLOR": "1",
            }
        )

    def playbook(self, name: str, **extra_vars) -> list[str]:
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory)]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        return [*command, str(self.workdir / name)]


def ensure_collection_link() -> None:
    link = COLLECTIONS / "ansible_collections" / "greenlight" / "django"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(REPO, target_is_directory=True)


def base_image() -> str:
    tag_file = REPO / "build" / "base-image.tag"
    image = os.environ.get("GREENLIGHT_BASE_IMAGE") or (tag_file.read_text().strip() if tag_file.exists() else "")
    if not image:
        raise BenchError("no base image: run `make setup` first (it builds build/base-image.tag)")
    return image


def fill_database(container: Container, size_mb: int) -> tuple[int, int]:
    """Add notes until the database has at least size_mb MB; (bytes, rows of notes_note)."""
    target = size_mb * 1024 * 1024
    batch = 0
    while True:
        size = int(container.sql("SELECT pg_database_size('demo')"))
        if size >= target:
            break
        rows = max(1000, (target - size) // 420)
        container.sql(FILL_SQL.format(first=batch + 1, last=batch + rows))
        batch += rows
    container.sql("VACUUM ANALYZE notes_note")
    return int(container.sql("SELECT pg_database_size('demo')")), int(container.sql("SELECT count(*) FROM notes_note"))


def fill_mariadb(container: Container, size_mb: int) -> tuple[int, int]:
    """Add notes until the tables' data and indexes have at least size_mb MB; (bytes, rows of notes_note)."""
    target = size_mb * 1024 * 1024
    batch = 0
    while True:
        container.mariadb("ANALYZE TABLE notes_note")
        size = int(container.mariadb(MARIADB_SIZE_SQL) or 0)
        if size >= target:
            break
        rows = min(200_000, max(1000, (target - size) // 420))
        container.mariadb(MARIADB_FILL_SQL.format(first=batch + 1, last=batch + rows))
        batch += rows
    return size, int(container.mariadb("SELECT COUNT(*) FROM notes_note"))


SYNCED = "mysqldump, then fsync of the file"


def plain_mysqldump(container: Container) -> tuple[list[str], list[str]]:
    """The baseline on MariaDB: mysqldump --single-transaction as the application's user, the connection in an
    option file of mode 0600; and the same followed by an fsync of the dump (which pg_dump does by itself, and the
    role's step too, mysqldump not)."""
    client = f'[client]\nhost=127.0.0.1\nport=3306\nuser={DB_USER}\npassword="{DB_PASSWORD}"\n'
    write = ["docker", "exec", "-i", container.name, "sh", "-c", f"umask 077 && cat > {MARIADB_CLIENT_FILE}"]
    completed = subprocess.run(write, input=client, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BenchError(f"could not write the client's option file: {completed.stderr[-2000:]}")
    dump = (
        "mysqldump",
        f"--defaults-extra-file={MARIADB_CLIENT_FILE}",
        "--single-transaction",
        "--result-file=/var/tmp/plain.dump",
        "demo",
    )
    synced = container.exec("sh", "-c", f"{' '.join(dump)} && sync /var/tmp/plain.dump")
    return container.exec(*dump), synced


def measure(container: Container, ansible: Ansible, rounds: int, engine: str) -> tuple[dict[str, list[float]], int]:
    """Times of each command in every round, and the size of the plain dump."""
    baseline = baseline_name(engine)
    synced = None
    if engine == "mariadb":
        plain, synced = plain_mysqldump(container)
    else:
        plain = container.exec(
            "pg_dump",
            "--format=custom",
            "--no-owner",
            "-h",
            "127.0.0.1",
            "-U",
            DB_USER,
            "-f",
            "/var/tmp/plain.dump",
            "demo",
            env={"PGPASSWORD": DB_PASSWORD},
        )
    # The module's payload as db_backup starts it: the release's interpreter in the release, the application's
    # environment (shared/.env), the options as JSON in the environment, the source on standard input.
    run(["docker", "cp", str(PAYLOAD), f"{container.name}:{PAYLOAD_IN_CONTAINER}"])
    options = {"command": "dump", "run_as": APP, "lock_wait_timeout": 60, "dir": "/var/tmp/step", "app_name": APP}
    step = container.exec(
        "sh",
        "-c",
        f"set -a; . /srv/{APP}/shared/.env; set +a; export PATH=/srv/{APP}/current/.venv/bin:$PATH; "
        f"cd -P /srv/{APP}/current && exec .venv/bin/python - < {PAYLOAD_IN_CONTAINER}",
        env={"GREENLIGHT_BACKUP_OPTIONS": json.dumps(options)},
    )
    cleanup = container.exec("sh", "-c", "rm -rf /var/tmp/plain.dump /var/tmp/step && install -d -m 0700 /var/tmp/step")
    commands = {
        "role: playbook, always": ansible.playbook("backup.yml", backup_when="always"),
        "role: playbook, nothing pending": ansible.playbook("backup.yml", backup_when="pending"),
        baseline: plain,
        "role: dump step": step,
    }
    if synced:
        commands[SYNCED] = synced
    times: dict[str, list[float]] = {name: [] for name in commands}
    dump_size = 0
    for number in range(rounds):
        for name, command in commands.items():
            run(cleanup)
            times[name].append(timed(command, env=ansible.env))
            if name == baseline:
                dump_size = int(run(container.exec("stat", "-c", "%s", "/var/tmp/plain.dump")).stdout.strip())
        print(f"round {number + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
    run(cleanup)
    return times, dump_size


def baseline_name(engine: str) -> str:
    return "mysqldump --single-transaction" if engine == "mariadb" else "pg_dump -Fc"


def measure_data_checks(container: Container, ansible: Ansible, rounds: int) -> tuple[dict[str, list[float]], dict]:
    """Times of the inspection with data checks on and off in every round, and the last check's result."""
    script = (
        'set -e; rm -rf /var/tmp/variant; cp -a "$(readlink -f /srv/demo/current)" /var/tmp/variant; '
        "cd /var/tmp/variant/notes; cat > migrations/0004_note_title_ci.py; "
        "python3 -c \"import sys; p='models.py'; s=open(p).read(); "
        "anchor='    objects = NoteQuerySet.as_manager()\\n'; "
        'open(p, \'w\').write(s.replace(anchor, sys.argv[1] + anchor, 1))" "$1"'
    )
    command = ["docker", "exec", "-i", container.name, "sh", "-c", script, "variant", TITLE_CI_META]
    completed = subprocess.run(command, input=TITLE_CI_MIGRATION, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BenchError(f"could not make the release with a new unique constraint: {completed.stderr[-2000:]}")
    times: dict[str, list[float]] = {"data checks on": [], "data checks off": []}
    json_results = dict(ansible.env, ANSIBLE_CALLBACK_RESULT_FORMAT="json")  # the check's line, unfolded
    check: dict = {}
    for number in range(rounds):
        for name, enabled in (("data checks on", True), ("data checks off", False)):
            started = time.monotonic()
            completed = run(ansible.playbook("data_check.yml", bench_data_checks=enabled), env=json_results)
            times[name].append(time.monotonic() - started)
            found = re.search(r"BENCH-DATA-CHECK (.*?)\"?$", completed.stdout, re.M)
            result = json.loads(found.group(1).replace('\\"', '"')) if found else None
            if enabled:
                if not (result and result.get("checked") and result.get("violations") == 0):
                    raise BenchError(f"the data check did not run to the end without violations: {result!r}")
                check = result
        print(f"data checks, round {number + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    run(container.exec("rm", "-rf", "/var/tmp/variant"))
    return times, check


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (`nproc`), {cpu}; {platform.platform()}"


def timing_table(times: dict[str, list[float]], baseline: str) -> list[str]:
    """The markdown table of every measured command: median, ratio to `baseline`, every round."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    lines = [f"| what | median (s) | vs `{baseline}` | all rounds (s) |", "|---|---|---|---|"]
    for name, values in times.items():
        rounds = ", ".join(f"{value:.2f}" for value in values)
        lines.append(f"| `{name}` | {medians[name]:.2f} | {medians[name] / medians[baseline]:.2f}x | {rounds} |")
    return lines


def pending_saving(medians: dict[str, float]) -> str:
    """What `backup_when: pending` saves when nothing is pending."""
    always, pending = medians["role: playbook, always"], medians["role: playbook, nothing pending"]
    saved = always - pending
    return (
        f"- `backup_when: pending` with nothing pending: {pending:.2f} s instead of {always:.2f} s, {saved:.2f} s "
        f"saved ({saved / always * 100:.0f} % of the backup run)."
    )


def report(
    times: dict[str, list[float]], size: int, rows: int, dump_size: int, versions: str, args, checks: tuple
) -> str:
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["pg_dump -Fc"]
    step_ratio = medians["role: dump step"] / base
    playbook_ratio = medians["role: playbook, always"] / base
    lines = [
        SECTION,
        "",
        f"Machine: {machine()}. {versions}.",
        f"Database: {size / 1024 / 1024:.0f} MB (`pg_database_size`), {rows} rows in `notes_note`; "
        f"custom-format dump {dump_size / 1024 / 1024:.0f} MB. Median of {len(times['pg_dump -Fc'])} interleaved "
        f"rounds, wall clock from the controller (each command through `docker exec` or `ansible-playbook` over "
        f"the docker connection). Command: `python bench/bench_backup.py{' --smoke' if args.smoke else ''}`.",
        "",
        *timing_table(times, "pg_dump -Fc"),
    ]
    verdict = "met" if step_ratio <= TARGET_RATIO else "missed"
    lines += [
        "",
        f"- dump step / `pg_dump -Fc` = {step_ratio:.3f} (target <= {TARGET_RATIO}: {verdict}); the difference is "
        "Django reading its settings, `--lock-wait-timeout` and the `pg_restore --list` check.",
        f"- whole playbook (`backup_when: always`) / `pg_dump -Fc` = {playbook_ratio:.3f}: Ansible's tasks around the "
        f"dump (checks, keep-N; a remote task costs about 0.4 s over the docker connection) add "
        f"{medians['role: playbook, always'] - medians['role: dump step']:.1f} s, a constant that does not grow with "
        "the database.",
        pending_saving(medians),
    ]
    check_times, check = checks
    on, off = (statistics.median(check_times[name]) for name in ("data checks on", "data checks off"))
    lines += [
        f"- data checks before the window, on this database: `migration_status` of a release whose pending migration "
        f'adds `UniqueConstraint(Lower("title"))` on `notes_note` ({rows} rows) takes {on:.2f} s with '
        f"`data_checks` and {off:.2f} s without (`ansible-playbook` of the one task, median of "
        f"{len(check_times['data checks on'])}); the check itself took {check.get('seconds', 0):.2f} s and found "
        f"{check.get('violations')} offending rows (rounds on: "
        + ", ".join(f"{value:.2f}" for value in check_times["data checks on"])
        + "; off: "
        + ", ".join(f"{value:.2f}" for value in check_times["data checks off"])
        + ").",
        "",
    ]
    return "\n".join(lines)


def report_mariadb(
    times: dict[str, list[float]], size: int, rows: int, dump_size: int, versions: str, args, rounds: int
) -> str:
    """The section of the MariaDB run: the same table and ratios as for PostgreSQL, without the data checks."""
    baseline = baseline_name("mariadb")
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians[baseline]
    step_ratio = medians["role: dump step"] / base
    playbook_ratio = medians["role: playbook, always"] / base
    synced_ratio = medians["role: dump step"] / medians[SYNCED]
    command = "python bench/bench_backup.py --engine mariadb" + (" --smoke" if args.smoke else "")
    if not args.smoke and args.size_mb != 200:
        command += f" --size-mb {args.size_mb}"
    if not args.smoke and rounds != 5:
        command += f" --rounds {rounds}"
    lines = [
        MARIADB_SECTION,
        "",
        f"Machine: {machine()}. {versions}.",
        f"Database: {size / 1024 / 1024:.0f} MB (data and indexes in `information_schema.tables` after "
        f"`ANALYZE TABLE`), {rows} rows in `notes_note`; SQL dump {dump_size / 1024 / 1024:.0f} MB. The demo on "
        f"MariaDB with the mysqlclient driver (`DATABASE_URL=mysql://...`). Median of {len(times[baseline])} "
        "interleaved rounds, wall clock from the controller (each command through `docker exec` or "
        f"`ansible-playbook` over the docker connection). Command: `{command}`.",
        "",
        *timing_table(times, baseline),
    ]
    verdict = "met" if step_ratio <= TARGET_RATIO else "missed"
    lines += [
        "",
        f"- dump step / `{baseline}` = {step_ratio:.3f} (target <= {TARGET_RATIO}: {verdict}); the baseline is "
        "`mysqldump --single-transaction` of the database as the application's user (the password in an option "
        "file); the step adds Django reading its settings, an option file of its own, the role's options "
        "(`--routines --triggers --hex-blob --no-tablespaces --default-character-set=utf8mb4`) and the read of the "
        "dump for its completion line and its tables, and an fsync of the dump before it is published (pg_dump "
        "syncs its file by itself, mysqldump does not): "
        f"`{SYNCED}` takes {medians[SYNCED]:.2f} s, and dump step / that = {synced_ratio:.3f}.",
        f"- whole playbook (`backup_when: always`) / `{baseline}` = {playbook_ratio:.3f}: Ansible's tasks around the "
        f"dump (checks, keep-N) add {medians['role: playbook, always'] - medians['role: dump step']:.1f} s, a "
        "constant that does not grow with the database.",
        pending_saving(medians),
        "",
    ]
    return "\n".join(lines)


def update_results(path: Path, section: str) -> None:
    """Replace (or add) the section named by its first line ('## backup', '## backup on MariaDB'); other sections
    stay as they are. A new MariaDB section goes right after the PostgreSQL one."""
    heading = section.split("\n", 1)[0]
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.M | re.S)
    after = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _match: section.rstrip() + "\n\n", text).rstrip() + "\n"
    elif heading != SECTION and after.search(text):
        text = after.sub(lambda match: match.group(0).rstrip() + "\n\n" + section.rstrip() + "\n\n", text)
        text = text.rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text)


def bench_engine(engine: str, args, size_mb: int, rounds: int) -> tuple[str, float]:
    """Set up one container for the engine, measure, remove it: (the results' section, dump step / baseline)."""
    container = Container(base_image(), engine)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="greenlight-bench-backup-") as tmp:
            workdir = Path(tmp)
            run([sys.executable, str(DEMO_BUILDER), "v2", str(workdir / "demo")])
            container.start()
            ansible = Ansible(workdir, container, workdir / "demo", engine)
            print(f"setting up {container.name} (release, migrations, {size_mb} MB of data)", flush=True)
            run(ansible.playbook("setup.yml"), env=ansible.env)
            print(f"set up in {time.monotonic() - started:.0f} s", flush=True)
            if engine == "mariadb":
                size, rows = fill_mariadb(container, size_mb)
                versions = run(container.exec("mysqldump", "--version")).stdout.strip()
            else:
                size, rows = fill_database(container, size_mb)
                versions = run(container.exec("pg_dump", "--version")).stdout.strip()
            print(f"filled in {time.monotonic() - started:.0f} s: {size / 1024 / 1024:.0f} MB, {rows} rows", flush=True)
            times, dump_size = measure(container, ansible, rounds, engine)
            if engine == "postgresql":
                checks = measure_data_checks(container, ansible, rounds)
    finally:
        container.remove()
    if engine == "mariadb":
        section = report_mariadb(times, size, rows, dump_size, versions, args, rounds)
    else:
        section = report(times, size, rows, dump_size, versions, args, checks)
    print()
    print(section)
    print(f"({engine}: {time.monotonic() - started:.0f} s)", flush=True)
    ratio = statistics.median(times["role: dump step"]) / statistics.median(times[baseline_name(engine)])
    return section, ratio


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny database, one round (for make test)")
    parser.add_argument("--size-mb", type=int, default=200, help="minimum database size (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--engine",
        choices=("postgresql", "mariadb", "both"),
        help="the database(s) to measure (default: both; with --smoke, postgresql: MariaDB's setup builds "
        "the mysqlclient driver on the server, which takes longer than the whole PostgreSQL smoke run)",
    )
    parser.add_argument("--update-results", type=Path, help="write the section(s) into this RESULTS.md")
    args = parser.parse_args(argv)
    size_mb, rounds = (1, 1) if args.smoke else (args.size_mb, args.rounds)
    engine = args.engine or ("postgresql" if args.smoke else "both")
    engines = ("postgresql", "mariadb") if engine == "both" else (engine,)

    ensure_collection_link()
    started = time.monotonic()
    for name in engines:
        try:
            section, ratio = bench_engine(name, args, size_mb, rounds)
        except BenchError as exc:
            print(f"bench_backup: {name}: {exc}", file=sys.stderr)
            return 1
        if args.update_results:
            update_results(args.update_results, section)
        if not args.smoke and ratio > TARGET_RATIO:
            print(
                f"bench_backup: {name}: the dump step is more than {TARGET_RATIO - 1:.0%} slower than "
                f"{baseline_name(name)}",
                file=sys.stderr,
            )
    print(f"(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
