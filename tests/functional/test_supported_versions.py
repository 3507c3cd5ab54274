"""Which Django and gunicorn a release may hold, decided from what its virtualenv really has.

greenlight.django.code_sync reads the installed distributions of a new
release's virtualenv once (``tasks/packages.yml``) and refuses a Django older
than 4.2 or a gunicorn older than 20.1 before anything serves the release,
naming the package, its version and the fix. Here the role's own tasks run
through ``ansible-playbook`` on this machine against real virtualenvs: one with
the oldest versions a 2023 project pinned (accepted), one older (refused).
The wsgi role's per-release step writes the gunicorn options each release's
own gunicorn has (the control socket from 25.1 on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / "build" / "venvs"


def release_with(name: str, *requirements: str) -> Path:
    """A directory shaped like a release: <dir>/.venv with exactly these packages (cached)."""
    release = VENVS / name
    python = release / ".venv" / "bin" / "python"
    marker = release / ".greenlight-requirements"
    wanted = "\n".join(requirements)
    if not (marker.exists() and marker.read_text() == wanted and python.exists()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(release / ".venv")], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", *requirements],
            check=True,
        )
        marker.write_text(wanted)
    return release


def read_packages(release: Path, tmp_path: Path) -> dict:
    """Run code_sync's packages step on this machine: what it read, or its failure message."""
    return run_step(
        tmp_path,
        "code_sync",
        "packages",
        {"code_sync_app_name": "demo", "__code_sync_release": str(release)},
        "{{ {'packages': __code_sync_packages_read.stdout | from_json} | to_json }}",
    )


def run_step(tmp_path: Path, role: str, tasks_from: str, variables: dict, keep: str) -> dict:
    """Run one task file of a role on this machine; ``keep`` (JSON) on success, else {"msg": the failure}."""
    play = [
        {
            "name": "Run a step of a role",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Read them",
                    "block": [
                        {
                            "name": "The role's step",
                            "ansible.builtin.include_role": {
                                "name": f"greenlight.django.{role}",
                                "tasks_from": tasks_from,
                            },
                            "vars": variables,
                        },
                        {
                            "name": "Keep what it did",
                            "ansible.builtin.copy": {
                                "content": keep,
                                "dest": str(tmp_path / "out.json"),
                            },
                        },
                    ],
                    "rescue": [
                        {
                            "name": "Keep the message",
                            "ansible.builtin.copy": {
                                "content": "{{ {'msg': ansible_failed_result.msg} | to_json }}",
                                "dest": str(tmp_path / "out.json"),
                            },
                        }
                    ],
                }
            ],
        }
    ]
    (tmp_path / "play.json").write_text(json.dumps(play))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            "ansible_become=false",
            str(tmp_path / "play.json"),
        ],
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "build" / "collections")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize(
    ("name", "requirements"),
    [
        ("release-oldest", ("Django==4.2.7", "gunicorn==20.1.0")),
        ("release-2023", ("Django==4.2.7", "gunicorn==21.2.0", "whitenoise==6.5.0")),
    ],
)
def test_the_oldest_supported_versions_are_read_and_accepted(tmp_path, name, requirements):
    out = read_packages(release_with(name, *requirements), tmp_path)
    assert "msg" not in out, out
    expected = {line.split("==")[0].lower(): line.split("==")[1] for line in requirements}
    assert {key: out["packages"].get(key) for key in expected} == expected


def test_a_django_and_a_gunicorn_too_old_are_refused_with_the_fix(tmp_path):
    out = read_packages(release_with("release-too-old", "Django==3.2.25", "gunicorn==20.0.4"), tmp_path)
    message = out.get("msg", "")
    assert "Django 3.2.25, older than 4.2" in message, out
    assert "gunicorn 20.0.4, older than 20.1" in message, out
    assert "Django>=4.2" in message and "gunicorn>=20.1" in message, out
    assert "requirements.txt" in message, out


def gunicorn_options(tmp_path: Path, release: Path, mode: str) -> tuple[dict, list]:
    """Run the wsgi role's per-release step: the options file it wrote (instance -> value), and its notes."""
    out = run_step(
        tmp_path,
        "wsgi",
        "release",
        {"wsgi_app_name": "demo", "wsgi_release_path": str(release), "wsgi_control_socket": mode},
        "{{ {'notes': wsgi_release_notes} | to_json }}",
    )
    assert "msg" not in out, out
    lines = (release / ".venv" / "greenlight-gunicorn.env").read_text().splitlines()
    options = dict(line.removeprefix("GREENLIGHT_GUNICORN_OPTIONS_").split("=", 1) for line in lines[1:])
    return options, out["notes"]


def test_each_release_gets_the_gunicorn_options_its_gunicorn_has(tmp_path):
    """Blue may hold gunicorn 20.1 and green gunicorn 27 under one unit: the options follow each release."""
    old = release_with("release-oldest", "Django==4.2.7", "gunicorn==20.1.0")
    new = release_with("release-newest", "Django==5.2.19", "gunicorn==27.0.1")

    options, notes = gunicorn_options(tmp_path, old, "runtime_dir")
    assert options == {"blue": "", "current": "", "green": ""}
    assert len(notes) == 1 and "gunicorn 20.1.0" in notes[0] and "control socket" in notes[0], notes

    options, notes = gunicorn_options(tmp_path, new, "runtime_dir")
    assert options == {
        instance: f"--control-socket=/run/greenlight-demo-{instance}/gunicorn.ctl"
        for instance in ("blue", "current", "green")
    }
    assert notes == []

    assert gunicorn_options(tmp_path, new, "disabled")[0]["green"] == "--no-control-socket"
    assert gunicorn_options(tmp_path, old, "disabled") == ({"blue": "", "current": "", "green": ""}, [])
    assert gunicorn_options(tmp_path, new, "omit") == ({"blue": "", "current": "", "green": ""}, [])
