"""Two runs building the same wheelhouse at once share the controller's cache without harm.

Two jobs (or two applications with the same requirements) may deploy at the same moment with an empty
cache. Here greenlight.django.code_sync's wheelhouse step (``tasks/wheelhouses.yml``) runs twice at once
through ``ansible-playbook`` on this machine, for this machine's own interpreter as the target, with real
pip and real wheels from the package index. While they run, the cache is watched: the wheelhouse under its
final name must never change once it is there (no run may use a half-built one), and both runs must end
with the same complete wheelhouse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "code_sync" / "files" / "wheelhouse.py"
REQUIREMENTS = (REPO / "examples" / "demo" / "base" / "requirements.txt").read_text()


def playbook(tmp_path: Path, app: str, cache: Path, target: dict) -> Path:
    """A play that runs code_sync's wheelhouse step for `app` with this interpreter as the server target."""
    tasks = [
        {
            "name": "The target and requirements preflight would have read",
            "ansible.builtin.set_fact": {"__code_sync_target": target, "__code_sync_requirements": REQUIREMENTS},
        },
        {
            "name": "The wheelhouse step",
            "ansible.builtin.include_role": {"name": "greenlight.django.code_sync", "tasks_from": "wheelhouses"},
            "vars": {
                "code_sync_app_name": app,
                "code_sync_controller_cache_dir": str(cache),
                "code_sync_controller_python": sys.executable,
            },
        },
    ]
    path = tmp_path / f"{app}.json"
    path.write_text(json.dumps([{"name": app, "hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    return path


def start(path: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local"]
    command += ["-v", "-e", f"ansible_python_interpreter={sys.executable}", str(path)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "build" / "collections")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


class Watcher(threading.Thread):
    """Every 10 ms, the files under the wheelhouses directory's final names, each distinct listing kept."""

    def __init__(self, wheels: Path):
        super().__init__(daemon=True)
        self.wheels = wheels
        self.seen: list[dict[str, dict[str, int]]] = []
        self.running = True

    def listing(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        try:
            for home in self.wheels.iterdir():
                if home.name.startswith("."):
                    continue  # a build in progress
                found[home.name] = {entry.name: entry.stat().st_size for entry in home.iterdir()}
        except FileNotFoundError:  # a directory renamed away while listed: list again next time
            return self.seen[-1] if self.seen else {}
        return found

    def run(self) -> None:
        for _tick in range(60000):  # bounded: at most 10 minutes
            if not self.running:
                return
            current = self.listing()
            if not self.seen or current != self.seen[-1]:
                self.seen.append(current)
            time.sleep(0.01)


def test_two_runs_at_once_publish_one_complete_wheelhouse(tmp_path):
    target = json.loads(
        subprocess.run([sys.executable, str(SCRIPT), "target"], capture_output=True, text=True, check=True).stdout
    )
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    watcher = Watcher(cache / "wheels")
    watcher.start()
    runs = [start(playbook(tmp_path, app, cache, target)) for app in ("first", "second")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    watcher.running = False
    watcher.join()
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-4000:]
        # Both found the cache empty and built: the race this test is about really happened.
        assert "wheelhouse | Resolve and download the wheels for the target]" in output, output[-4000:]
    assert sum("stdout: kept the wheelhouse another run published" in output for output in outputs) == 1

    # Under its final name the wheelhouse appeared once, complete, and never changed.
    final = f"{__import__('hashlib').sha256(REQUIREMENTS.encode()).hexdigest()[:16]}-{target['key']}"
    listings = [seen for seen in watcher.seen if seen]
    assert listings, "the wheelhouse never appeared under its final name"
    assert all(seen == listings[0] for seen in listings), listings
    assert sorted(listings[0]) == [final]
    files = listings[0][final]
    assert {"wheelhouse.tar", "requirements.txt", ".complete"} <= set(files)
    with tarfile.open(cache / "wheels" / final / "wheelhouse.tar") as archive:
        names = archive.getnames()
    assert "requirements.txt" in names
    for package in ("django-5.2.19-", "gunicorn-27.0.1-", "psycopg-3.3.9-", "psycopg_binary-3.3.9-"):
        assert any(name.lower().startswith(package) for name in names), names
    # Nothing of either build is left beside it.
    assert sorted(path.name for path in (cache / "wheels").iterdir()) == [final]
