"""Shared fixtures for the functional tests: real Django, real PostgreSQL.

* ``django_python(version)`` returns the interpreter of a cached virtualenv
  (``build/venvs/django-<version>``) with that Django series, psycopg and
  gunicorn installed from the package index.
* ``postgres`` starts one PostgreSQL server for the session in a container made
  from the project's base image (``make image``), published on 127.0.0.1 only,
  and hands out fresh databases with ``postgres.create_database()``.
"""

from __future__ import annotations

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

DJANGO_SERIES = {
    "4.2": "Django==4.2.30",
    "5.2": "Django==5.2.19",
}
COMMON_PACKAGES = ["psycopg[binary]==3.3.9", "gunicorn==27.0.1"]


def _build_venv(version: str) -> Path:
    target = BUILD / "venvs" / f"django-{version}"
    python = target / "bin" / "python"
    wanted = "\n".join([DJANGO_SERIES[version], *COMMON_PACKAGES])
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


@pytest.fixture(scope="session")
def django_python():
    """Factory: ``django_python("5.2")`` -> Path of that virtualenv's python."""
    cache: dict[str, Path] = {}

    def make(version: str = "5.2") -> Path:
        if version not in cache:
            cache[version] = _build_venv(version)
        return cache[version]

    return make


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
def postgres():
    name = f"greenlight-pytest-pg-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::5432", base_image(), "bash", "-c", _PG_BOOT],
        check=True,
        capture_output=True,
    )
    try:
        ready = False
        for _attempt in range(120):  # bounded: at most about 60 s
            probe = subprocess.run(
                ["docker", "exec", "-u", "postgres", name, "pg_isready", "-q"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                ready = True
                break
            time.sleep(0.5)
        if not ready:
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
            pytest.fail(f"PostgreSQL did not start in its container:\n{logs.stdout}{logs.stderr}")
        port_info = subprocess.run(
            ["docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", name],
            check=True,
            capture_output=True,
            text=True,
        )
        port = int(json.loads(port_info.stdout)["5432/tcp"][0]["HostPort"])
        server = Postgres(name, "127.0.0.1", port, "greenlight", secrets.token_hex(12))
        server.psql(f"CREATE ROLE {server.user} LOGIN CREATEDB PASSWORD '{server.password}'")
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
