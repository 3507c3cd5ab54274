"""Shared fixtures for the functional tests: real Django, real PostgreSQL.

* ``django_python(version)`` returns the interpreter of a cached virtualenv
  (``build/venvs/django-<version>``) with that Django series, psycopg and
  gunicorn installed from the package index. A series that needs a newer
  Python than this controller's (Django 6.0: Python 3.12+) runs on the Python
  of a Debian base image instead (Debian 13: Python 3.13): one container of it
  for the session, with the repository and pytest's temporary directory
  mounted at the same paths, a virtualenv in it installed from a wheelhouse
  that code_sync's ``files/wheelhouse.py`` builds here for that Python, and
  ``bin/python`` a wrapper that runs that virtualenv's python in the container,
  in the current directory, with the variables Django, PostgreSQL and the
  inspection read. Code that runs ``bin/python`` works unchanged.
* ``postgres`` starts one PostgreSQL server for the session in a container made
  from the project's base image (``make image``), published on 127.0.0.1 only
  and on the session's docker network (``postgres.on_network()``: the same
  server as the containers on that network reach it), and hands out fresh
  databases with ``postgres.create_database()``.
* ``mariadb`` starts one MariaDB server for the session the same way (Debian's
  package in the base image), and ``mysql_python`` is the interpreter of a
  cached virtualenv with Django 5.2 and the mysqlclient driver (built here:
  it needs libmariadb-dev, pkg-config and a compiler; scripts/ensure-host-packages.sh).
* ``debian_container(suite)`` and ``wheelhouse(directory, target,
  requirements)``: a container of a Debian base image, and a wheelhouse built
  here for the interpreter of a server (its ``target()``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
WHEELHOUSE_SCRIPT = REPO / "roles" / "code_sync" / "files" / "wheelhouse.py"

DJANGO_SERIES = {
    "4.2": "Django==4.2.30",
    "5.2": "Django==5.2.19",
    "6.0": "Django==6.0.10",
}
COMMON_PACKAGES = ["psycopg[binary]==3.3.9", "gunicorn==27.0.1"]
# Series this controller's Python cannot run -> the Debian suite whose Python runs them (in a container).
SERVER_PYTHON_SERIES = {"6.0": "trixie"}
# Variables the wrapper of such an interpreter hands to the container (by name: values never on a command line).
FORWARDED_ENV = "|".join(
    ["DATABASE_URL", "DJANGO_*", "PG*", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "LC_ALL"]
    + ["LANGUAGE", "GREENLIGHT_*"]
)


MYSQL_DRIVER = "mysqlclient==2.2.7"


def _build_venv(version: str, extra: tuple[str, ...] = (), suffix: str = "") -> Path:
    target = BUILD / "venvs" / f"django-{version}{suffix}"
    python = target / "bin" / "python"
    wanted = "\n".join([DJANGO_SERIES[version], *COMMON_PACKAGES, *extra])
    marker = target / ".greenlight-requirements"
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    if target.exists():
        shutil.rmtree(target)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted.split("\n")],
        check=True,
    )
    marker.write_text(wanted)
    return python


def base_image(suite: str = "bookworm") -> str:
    """Tag of the base image of a Debian suite (bookworm: Debian 12, trixie: Debian 13)."""
    tag = os.environ.get("GREENLIGHT_BASE_IMAGE" if suite == "bookworm" else f"GREENLIGHT_BASE_IMAGE_{suite.upper()}")
    if tag:
        return tag
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "base-image.sh"), suite], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def debian_image():
    """Factory: ``debian_image("trixie")`` -> tag of that suite's base image (built when missing)."""
    return base_image


_PG_BOOT = r"""
set -e
version=$(ls /etc/postgresql)
conf=/etc/postgresql/$version/main
echo "listen_addresses = '*'" >> $conf/postgresql.conf
echo "host all all 0.0.0.0/0 scram-sha-256" >> $conf/pg_hba.conf
data=/var/lib/postgresql/$version/main
exec su postgres -s /bin/sh -c "/usr/lib/postgresql/$version/bin/postgres -D $data -c config_file=$conf/postgresql.conf"
"""


@dataclass
class Postgres:
    container: str
    host: str
    port: int
    user: str
    password: str

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            ["docker", "exec", "-u", "postgres", self.container, "psql", "-XAtq", "-d", database, "-c", sql],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def create_database(self, prefix: str = "t") -> str:
        """Create an empty database owned by the test user; return its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.psql(f'CREATE DATABASE "{name}" OWNER {self.user}')
        return name

    def url(self, database: str) -> str:
        return f"postgres://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def on_network(self) -> Postgres:
        """The same server as the containers on the session's docker network reach it (by its name)."""
        return dataclasses.replace(self, host=self.container, port=5432)

    def env(self, database: str) -> dict[str, str]:
        """Connection parts as environment variables (PG* and DATABASE_URL)."""
        return {
            "DATABASE_URL": self.url(database),
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database,
        }


@pytest.fixture(scope="session")
def postgres(docker_network):
    name = f"greenlight-pytest-pg-{uuid.uuid4().hex[:8]}"
    try:
        port = _start_database_server(
            name, docker_network, _PG_BOOT, 5432, ["docker", "exec", "-u", "postgres", name, "pg_isready", "-q"]
        )
        server = Postgres(name, "127.0.0.1", port, "greenlight", secrets.token_hex(12))
        server.psql(f"CREATE ROLE {server.user} LOGIN CREATEDB PASSWORD '{server.password}'")
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _start_database_server(name: str, network: str, boot: str, port: int, probe: list[str]) -> int:
    """Start container `name` of the base image running `boot` (a database server in the foreground), published
    on 127.0.0.1 only and on `network`; wait (bounded) until `probe` succeeds; return the published port."""
    subprocess.run(
        [
            *["docker", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1::{port}", "--network", network],
            *[base_image(), "bash", "-c", boot],
        ],
        check=True,
        capture_output=True,
    )
    for _attempt in range(120):  # bounded: at most about 60 s
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            break
        time.sleep(0.5)
    else:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
        pytest.fail(f"The database server did not start in its container {name}:\n{logs.stdout}{logs.stderr}")
    port_info = subprocess.run(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", name], check=True, capture_output=True, text=True
    )
    return int(json.loads(port_info.stdout)[f"{port}/tcp"][0]["HostPort"])


_MARIADB_BOOT = r"""
set -e
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
# Images built before the system tables were created at build time get them here.
[ -d /var/lib/mysql/mysql ] ||
  mariadb-install-db --user=mysql --auth-root-authentication-method=socket --skip-test-db >/dev/null
exec mariadbd --user=mysql --bind-address=0.0.0.0 --skip-name-resolve
"""


@dataclass
class MariaDB:
    container: str
    host: str
    port: int
    user: str
    password: str

    def sql(self, sql: str, database: str = "") -> str:
        """Run SQL as the server's root (socket authentication in the container); tab-separated rows."""
        argv = ["docker", "exec", self.container, "mariadb", "-N", "-B", "-e", sql]
        out = subprocess.run([*argv, *([database] if database else [])], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def url(self, database: str) -> str:
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


@pytest.fixture(scope="session")
def mariadb(docker_network):
    name = f"greenlight-pytest-mariadb-{uuid.uuid4().hex[:8]}"
    try:
        port = _start_database_server(
            name, docker_network, _MARIADB_BOOT, 3306, ["docker", "exec", name, "mariadb-admin", "ping"]
        )
        server = MariaDB(name, "127.0.0.1", port, "greenlight", secrets.token_hex(12))
        server.sql(
            f"CREATE USER '{server.user}'@'%' IDENTIFIED BY '{server.password}'; "
            f"GRANT ALL PRIVILEGES ON *.* TO '{server.user}'@'%'"
        )
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture(scope="session")
def mysql_python() -> Path:
    """The python of a virtualenv with Django 5.2 and mysqlclient (built from source here)."""
    if not shutil.which("mysqldump") or not (shutil.which("mariadb_config") or shutil.which("mysql_config")):
        pytest.skip("the MariaDB client or libmariadb-dev is missing here: run scripts/ensure-host-packages.sh as root")
    return _build_venv("5.2", (MYSQL_DRIVER,), "-mysql")


class DebianContainer:
    """A running container of a Debian base image; ``docker_args`` go to ``docker run`` (mounts, network)."""

    def __init__(self, image: str, suite: str, *docker_args: str, seconds: int = 900):
        self.name = f"greenlight-pytest-{suite}-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", self.name, *docker_args, image, "sleep", str(seconds)],
            check=True,
            capture_output=True,
        )

    def run(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", "-i", self.name, *argv], input=stdin, capture_output=True, text=True, check=False
        )

    def target(self) -> dict:
        """What code_sync's wheelhouse.py reads of the container's python3 (its wheelhouse key, tags, markers)."""
        out = self.run("python3", "-", "target", stdin=WHEELHOUSE_SCRIPT.read_text())
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def install(self, wheelhouse: Path, venv: str = "/venv") -> subprocess.CompletedProcess:
        """A virtualenv at ``venv`` with the wheelhouse's requirements.txt, installed with pip --no-index."""
        self.run("rm", "-rf", "/wheels")
        subprocess.run(["docker", "cp", f"{wheelhouse}/.", f"{self.name}:/wheels"], check=True)
        self.run("python3", "-m", "venv", "--clear", venv)
        return self.run(
            *[f"{venv}/bin/pip", "install", "--disable-pip-version-check", "--no-index", "--find-links", "/wheels"],
            *["--requirement", "/wheels/requirements.txt"],
        )

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)


def build_wheelhouse(directory: Path, target: dict, requirements: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``wheelhouse.py build`` here for ``target`` into directory/wheelhouse: (its result, the wheelhouse)."""
    (directory / "target.json").write_text(json.dumps(target))
    dest = directory / "wheelhouse"
    dest.mkdir()
    (dest / "requirements.txt").write_text(requirements)
    args = ["build", "--target", directory / "target.json", "--requirements", dest / "requirements.txt"]
    result = subprocess.run(
        [sys.executable, WHEELHOUSE_SCRIPT, *args, "--dest", dest], capture_output=True, text=True, check=False
    )
    return result, dest


@pytest.fixture
def debian_container(debian_image):
    """Factory: ``debian_container("trixie")`` -> a DebianContainer of that suite, removed after the test."""
    made: list[DebianContainer] = []

    def make(suite: str, *docker_args: str) -> DebianContainer:
        made.append(DebianContainer(debian_image(suite), suite, *docker_args))
        return made[-1]

    yield make
    for container in made:
        container.remove()


@pytest.fixture(scope="session")
def wheelhouse():
    """Factory: ``wheelhouse(directory, target, requirements)`` -> (wheelhouse.py's result, the wheelhouse)."""
    return build_wheelhouse


@pytest.fixture(scope="session")
def docker_network():
    """A docker network of the session: PostgreSQL and the containers that run a server's Python are on it."""
    name = f"greenlight-pytest-net-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", name], check=True, capture_output=True)
    yield name
    subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


_WRAPPER = """\
#!/bin/bash
# Django {version} needs a newer Python than this machine's: run the interpreter of {venv}
# in container {container} (Debian {suite}), in the current directory (mounted at the same path).
forward=()
for name in $(compgen -e); do
    case $name in {names}) forward+=(-e "$name") ;; esac
done
exec docker exec -i -w "$PWD" "${{forward[@]}}" {container} {venv}/bin/python "$@"
"""


def _server_python(version: str, suite: str, image: str, network: str, tmp_base: Path, scratch: Path):
    """(container, wrapper): a container of ``image`` whose virtualenv (cached under build/venvs, built from a
    wheelhouse made here for its Python) has the ``version`` series; the wrapper runs its python."""
    mounts = ["-v", f"{REPO}:{REPO}", "-v", f"{tmp_base}:{tmp_base}"]
    container = DebianContainer(image, suite, *mounts, "--network", network, seconds=3600)
    try:
        target = container.target()
        home = BUILD / "venvs" / f"django-{version}"
        venv = home / "server-venv"
        requirements = "\n".join([DJANGO_SERIES[version], *COMMON_PACKAGES]) + "\n"
        marker = home / ".greenlight-requirements"
        wanted = f"{target['key']}\n{requirements}"
        if not (marker.exists() and marker.read_text() == wanted and (venv / "bin" / "python").exists()):
            if home.exists():
                shutil.rmtree(home)
            home.mkdir(parents=True)
            built, wheels = build_wheelhouse(scratch, target, requirements)
            assert built.returncode == 0, built.stderr
            installed = container.install(wheels, str(venv))
            assert installed.returncode == 0, installed.stdout + installed.stderr
            marker.write_text(wanted)
        wrapper = home / "bin" / "python"
        wrapper.parent.mkdir(exist_ok=True)
        text = _WRAPPER.format(version=version, venv=venv, container=container.name, suite=suite, names=FORWARDED_ENV)
        wrapper.write_text(text)
        wrapper.chmod(0o755)
    except BaseException:
        container.remove()
        raise
    return container, wrapper


class DjangoInterpreters:
    """``django_python("5.2")`` -> Path of that virtualenv's python (a wrapper for SERVER_PYTHON_SERIES)."""

    def __init__(self, network, tmp_path_factory, debian_image):
        self.network, self.tmp_path_factory, self.debian_image = network, tmp_path_factory, debian_image
        self.cache: dict[str, Path] = {}
        self.containers: list[DebianContainer] = []

    @staticmethod
    def in_container(version: str) -> bool:
        """Whether that series runs in a container (on the session's docker network)."""
        return version in SERVER_PYTHON_SERIES

    def __call__(self, version: str = "5.2") -> Path:
        if version in self.cache:
            return self.cache[version]
        if not self.in_container(version):
            self.cache[version] = _build_venv(version)
            return self.cache[version]
        suite = SERVER_PYTHON_SERIES[version]
        container, self.cache[version] = _server_python(
            version,
            suite,
            self.debian_image(suite),
            self.network,
            self.tmp_path_factory.getbasetemp(),
            self.tmp_path_factory.mktemp(f"wheelhouse-django-{version}"),
        )
        self.containers.append(container)
        return self.cache[version]


@pytest.fixture(scope="session")
def django_python(docker_network, tmp_path_factory, debian_image):
    """Factory: ``django_python("5.2")`` -> Path of that virtualenv's python; see DjangoInterpreters."""
    interpreters = DjangoInterpreters(docker_network, tmp_path_factory, debian_image)
    yield interpreters
    for container in interpreters.containers:
        container.remove()
