"""Run the checkout's playbooks against a scenario's containers, from its tests, the way a user runs them.

The scenarios' tests import this module (``sys.path`` gets molecule/resources first): ansible-playbook of the
test's virtualenv, the collection of this checkout, the scenario's ansible.cfg (molecule writes it in the
ephemeral directory: the docker connection), no colours, and the output kept for the assertion message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent/inventory.yml"))


def ansible_env() -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(PROJECT / "build" / "collections")
    config = EPHEMERAL / "ansible.cfg"
    if config.is_file():
        env["ANSIBLE_CONFIG"] = str(config)
    return env


def ansible_playbook(
    playbook: Path | str, *argv: str, inventory: Path | str | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """ansible-playbook PLAYBOOK ARGV against the scenario's inventory (or `inventory`); never raises on failure."""
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(inventory or INVENTORY.parent),
        str(playbook),
        *argv,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=ansible_env(), timeout=timeout, check=False)


def demo_playbook(name: str, version: str, *extra: str, inventory: Path | str | None = None):
    """One of the collection's playbooks (playbooks/NAME) with the demo project's version `version`."""
    return ansible_playbook(
        PROJECT / "playbooks" / name, "-e", json.dumps({"demo_version": version}), *extra, inventory=inventory
    )


def out(result: subprocess.CompletedProcess) -> str:
    """The end of a run's output, for an assertion message."""
    return (result.stdout + result.stderr)[-8000:]


def summary(path: Path | None = None) -> dict:
    """The deploy summary the scenario's playbooks write (greenlight_summary_file)."""
    return json.loads((path or EPHEMERAL / "summary.json").read_text())
