"""code_sync's look at the project on the controller (roles/code_sync/files/source_tree.py): its requirements.

A project's requirements come from its requirements file, or from its uv.lock, exported on the controller with
the uv beside the controller's Python (or on PATH). What cannot be read is refused with the cause and the fix:
these messages are what a deploy shows before anything changes.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE_TREE = REPO / "roles" / "code_sync" / "files" / "source_tree.py"
SRC_LAYOUT = REPO / "examples" / "demo" / "overlays" / "srclayout"
NO_UV = "uv is not installed on the controller"


def inspect(directory: Path, *args: str, python: str = sys.executable, env: dict | None = None):
    return subprocess.run(
        [python, str(SOURCE_TREE), "inspect", "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def pins(requirements: str) -> set[str]:
    return {line.split(";")[0].strip() for line in requirements.splitlines() if line.strip() and line[0] != "#"}


@pytest.fixture
def uv_project(tmp_path) -> Path:
    """A project without requirements.txt: the demo's pyproject.toml and uv.lock, and a manage.py."""
    for name in ("pyproject.toml", "uv.lock"):
        (tmp_path / name).write_bytes((SRC_LAYOUT / name).read_bytes())
    (tmp_path / "manage.py").write_text("")
    return tmp_path


def test_a_requirements_file_is_read_as_it_is(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django==5.2.19\n")
    result = inspect(tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requirements"] == "Django==5.2.19\n" and report["requirements_from"] == "requirements.txt"
    assert report["manage_py"] is False


def test_without_requirements_file_the_uv_lock_is_exported(uv_project):
    report = json.loads(inspect(uv_project).stdout)
    assert report["requirements_from"] == "uv.lock" and report["manage_py"] is True
    assert {"django==5.2.19", "gunicorn==27.0.1", "psycopg==3.3.9"} <= pins(report["requirements"])
    # The same lock gives the same text (the wheelhouse is keyed by its hash): no header with paths or dates.
    again = json.loads(inspect(uv_project).stdout)
    assert again["requirements"] == report["requirements"]
    assert "uv export" not in report["requirements"]


def test_a_requirements_file_wins_over_the_lock_unless_the_lock_is_named(uv_project):
    (uv_project / "requirements.txt").write_text("Django==4.2.30\n")
    assert json.loads(inspect(uv_project).stdout)["requirements"] == "Django==4.2.30\n"
    named = json.loads(inspect(uv_project, "--requirements", "uv.lock").stdout)
    assert named["requirements_from"] == "uv.lock" and "django==5.2.19" in pins(named["requirements"])


def test_no_requirements_at_all_is_reported_as_missing(tmp_path):
    report = json.loads(inspect(tmp_path).stdout)
    assert report["requirements"] is None and report["requirements_from"] == "requirements.txt"
    report = json.loads(inspect(tmp_path, "--requirements", "requirements/prod.txt").stdout)
    assert report["requirements"] is None and report["requirements_from"] == "requirements/prod.txt"


def test_a_malformed_lock_is_refused_with_uv_own_reason(uv_project):
    (uv_project / "uv.lock").write_text("version = 1\n[[package]\nname = 'x'\n")
    result = inspect(uv_project)
    assert result.returncode == 3 and result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith(f"source_tree: uv cannot export uv.lock of {uv_project}: error: Failed to parse"), message
    assert "uv lock writes it anew from pyproject.toml" in message
    assert "--output-file requirements.txt" in message and "code_sync_requirements_file" in message


def test_an_unreadable_lock_is_refused(uv_project):
    (uv_project / "uv.lock").write_bytes(b"\xff\xfe not text")
    result = inspect(uv_project)
    assert result.returncode == 3
    assert f"cannot read {uv_project / 'uv.lock'}" in result.stderr and "codec can't decode" in result.stderr


def test_a_lock_without_its_pyproject_is_refused(uv_project):
    (uv_project / "pyproject.toml").unlink()
    result = inspect(uv_project)
    assert result.returncode == 3
    assert "uv.lock of" in result.stderr and "has no pyproject.toml beside it" in result.stderr


def test_without_uv_on_the_controller_the_lock_is_refused(uv_project, tmp_path_factory):
    """A controller Python without uv beside it, and no uv on PATH."""
    bare = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = dict(os.environ, PATH=str(bare / "bin") + ":/usr/bin:/bin")
    result = inspect(uv_project, python=str(bare / "bin" / "python"), env=env)
    assert result.returncode == 3
    assert NO_UV in result.stderr and "python -m pip install uv" in result.stderr
    assert "uv export --frozen --no-hashes --no-dev --no-emit-project --format requirements-txt" in result.stderr
    # A project with a requirements file needs no uv.
    (uv_project / "requirements.txt").write_text("Django==5.2.19\n")
    assert inspect(uv_project, python=str(bare / "bin" / "python"), env=env).returncode == 0


def test_the_lock_of_a_commit_is_exported(uv_project):
    git = ["git", "-C", str(uv_project), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "lock"], check=True)
    (uv_project / "uv.lock").write_text("not a lock any more")  # the working tree is not what is deployed
    report = json.loads(inspect(uv_project, "--ref", "HEAD").stdout)
    assert report["requirements_from"] == "uv.lock" and "django==5.2.19" in pins(report["requirements"])


def test_export_lock_reads_the_files_on_stdin():
    """A git source: the server reads uv.lock and pyproject.toml of the commit, the controller exports them."""
    files = {name: (SRC_LAYOUT / name).read_text() for name in ("uv.lock", "pyproject.toml")}
    result = subprocess.run(
        [sys.executable, str(SOURCE_TREE), "export-lock"],
        input=json.dumps(files),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "gunicorn==27.0.1" in pins(json.loads(result.stdout)["requirements"])
    files["pyproject.toml"] = None
    result = subprocess.run(
        [sys.executable, str(SOURCE_TREE), "export-lock"],
        input=json.dumps(dict(files, where="uv.lock of repo at abc")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3 and "uv.lock of repo at abc has no pyproject.toml" in result.stderr


def read_git_source(tmp_path: Path, repository: Path) -> subprocess.CompletedProcess:
    """code_sync's source step for a git source, on this machine: the clone, the files of the commit, the export."""
    out = tmp_path / "out.json"
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {
                "code_sync_app_name": "demo",
                "code_sync_app_root": str(tmp_path / "app"),
                "code_sync_source_type": "git",
                "code_sync_git_repo": str(repository),
            },
            "tasks": [
                {"ansible.builtin.include_role": {"name": "greenlight.django.code_sync", "tasks_from": "source"}},
                {
                    "ansible.builtin.copy": {
                        "content": "{{ {'requirements': __code_sync_requirements} | to_json }}",
                        "dest": str(out),
                        "mode": "0644",
                    }
                },
            ],
        }
    ]
    (tmp_path / "play.json").write_text(json.dumps(play))
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            *("-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"),
            *("-e", "ansible_become=false", str(tmp_path / "play.json")),
        ],
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "build" / "collections")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_a_git_source_has_its_uv_lock_exported_on_the_controller(uv_project, tmp_path_factory):
    git = ["git", "-C", str(uv_project), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "lock"], check=True)
    work = tmp_path_factory.mktemp("git-play")
    result = read_git_source(work, uv_project)
    assert result.returncode == 0, result.stdout[-3000:]
    requirements = json.loads((work / "out.json").read_text())["requirements"]
    assert {"django==5.2.19", "gunicorn==27.0.1", "psycopg==3.3.9"} <= pins(requirements)

    (uv_project / "uv.lock").write_text("version = 1\n[[package]\n")
    subprocess.run([*git, "commit", "-qam", "broken lock"], check=True)
    result = read_git_source(tmp_path_factory.mktemp("git-play"), uv_project)
    assert result.returncode != 0
    assert "code_sync: uv cannot export uv.lock of" in result.stdout and "Failed to parse" in result.stdout


def test_a_temporary_archive_is_a_new_private_file_and_none_is_left_when_packing_fails(tmp_path):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "manage.py").write_text("print('hi')\n")
    (project / "pkg" / "cache.pyc").write_bytes(b"")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}

    def pack(*args):
        return subprocess.run(
            [sys.executable, str(SOURCE_TREE), "pack", "--dir", str(project), "--temporary", "greenlight-demo-", *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    first, second = pack("--exclude", "*.pyc"), pack("--exclude", "*.pyc")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    paths = [Path(json.loads(result.stdout)["archive"]) for result in (first, second)]
    assert paths[0] != paths[1], "two runs must never share an archive"
    for path in paths:
        assert path.parent == temp and path.name.startswith("greenlight-demo-") and path.name.endswith(".tar.gz")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with tarfile.open(path) as archive:
            assert sorted(archive.getnames()) == ["manage.py", "pkg"]
    # A commit that does not exist: the run fails and leaves no file behind.
    failed = pack("--ref", "no-such-ref")
    assert failed.returncode != 0
    assert sorted(temp.iterdir()) == sorted(paths)
