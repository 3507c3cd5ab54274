"""Install the collection like a user, run the deploy like AWX, check what both see.

The collection is built into a tarball and installed into an empty collections
path. The job is what AWX hands to ansible-runner for a job template: a private
data directory with the project's job template playbook (from the installed
collection's ``awx/project``), an inventory, the survey answers as extra vars,
and the credential's extra vars (``greenlight_environment``, rendered from the
collection's credential type) in a file of their own. The job's environment
holds neither molecule's settings nor the checkout's collections path, so only
the installed copy can run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2.sandbox
import pytest
import testinfra.utils.ansible_runner
import yaml

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

PROJECT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
BIN = Path(sys.executable).parent
JOB_ID = "4242"
SECRET_KEY = f"awx-credential-secret-key-{secrets.token_hex(24)}"
DATABASE_URL = "postgres://demo:demo-db-password@127.0.0.1:5432/demo"
DEVELOPMENT_ONLY = {"tests", "molecule", "bench", "scripts", ".ci", ".config", "build", ".venv", "requirements"}


@dataclass
class Job:
    tarball: Path
    installed: Path
    data_dir: Path
    rc: int
    status: str
    events: list[dict]
    output: str
    command: str


def job_environment() -> dict[str, str]:
    """The caller's environment without Ansible's, molecule's and pytest's settings.

    PYTHONWARNINGS goes too: the Makefile filters one warning that ansible-core prints on every start with
    cryptography 51, and an AWX execution environment filters nothing. The job sees what a user's job sees.
    """
    dropped = ("ANSIBLE_", "MOLECULE_", "PYTEST_", "PYTHONPATH", "PYTHONWARNINGS")
    return {key: value for key, value in os.environ.items() if not key.startswith(dropped)}


def _data(event: dict) -> dict:
    """An event's data. ansible-runner also records lines that no callback wrote (a Python warning on stderr,
    output of a plugin that prints) as "verbose" events, and those have no event_data."""
    return event.get("event_data") or {}


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=job_environment(), **kwargs)
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def credential_extra_vars(installed: Path, inputs: dict) -> dict:
    """The extra vars AWX injects for a credential of the collection's credential type."""
    credential_type = json.loads((installed / "awx/credential_types/greenlight_django_application.json").read_text())
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)

    def build(node):
        if isinstance(node, dict):
            return {build(k): build(v) for k, v in node.items()}
        return env.from_string(node).render(**inputs)

    return build(credential_type["injectors"]["extra_vars"])


def survey_answers(installed: Path, **answers) -> dict:
    """The survey's defaults, as AWX fills them in, then the operator's answers."""
    spec = json.loads((installed / "awx/surveys/deploy.json").read_text())["spec"]
    launch = {q["variable"]: q["default"] for q in spec if q.get("default") not in (None, "")}
    launch.update(answers)
    return launch


def prepare_data_dir(data_dir: Path, installed: Path, collections: Path, host: str) -> None:
    (data_dir / "project").mkdir(parents=True)
    (data_dir / "inventory").mkdir()
    (data_dir / "env").mkdir(mode=0o700)
    shutil.copy(installed / "awx/project/deploy.yml", data_dir / "project" / "deploy.yml")
    inventory = {
        "all": {
            "hosts": {host: {"ansible_connection": "community.docker.docker"}},
            "vars": {
                "ansible_python_interpreter": "/usr/bin/python3",
                "traffic_default_server": True,
                "wsgi_health_timeout": 30,
            },
        }
    }
    (data_dir / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    extravars = survey_answers(
        installed,
        greenlight_app_name="demo",
        greenlight_source_dir=str(EPHEMERAL / "demo" / "v1"),
    )
    # What AWX adds to every job, and the job template's own extra vars.
    extravars |= {
        "awx_job_id": int(JOB_ID),
        "awx_job_template_name": "demo deploy",
        "awx_user_name": "operator",
        "greenlight_summary_file": str(data_dir / "summary.json"),
    }
    (data_dir / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    credential = data_dir / "env" / "credential_extra_vars.yml"
    credential.touch(mode=0o600)
    inputs = {
        "settings_module": "demo.settings",
        "database_url": DATABASE_URL,
        "secret_key": SECRET_KEY,
        "allowed_hosts": "127.0.0.1,localhost",
    }
    credential.write_text(yaml.safe_dump(credential_extra_vars(installed, inputs)))
    (data_dir / "env" / "cmdline").write_text(f"-e @{credential}")
    envvars = {"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    (data_dir / "env" / "envvars").write_text(yaml.safe_dump(envvars))


@pytest.fixture(scope="module")
def job() -> Job:
    work = Path(tempfile.mkdtemp(prefix="greenlight-awx-", dir=EPHEMERAL))
    dist, collections = work / "dist", work / "collections"
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(PROJECT)], timeout=300)
    tarball = next(dist.glob("greenlight-django-*.tar.gz"))
    # --offline: dependencies (ansible.posix) come from what is installed already. --force: a greenlight.django
    # installed elsewhere (~/.ansible/collections) would otherwise count as installed and leave this path empty.
    run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(collections)]
        + [str(tarball)],
        timeout=300,
    )
    installed = collections / "ansible_collections" / "greenlight" / "django"
    data_dir = work / "job"
    prepare_data_dir(data_dir, installed, collections, testinfra_hosts[0])
    result = subprocess.run(
        [str(BIN / "ansible-runner"), "run", str(data_dir), "--playbook", "deploy.yml", "--ident", JOB_ID],
        capture_output=True,
        text=True,
        check=False,
        env=job_environment(),
        timeout=1500,
    )
    artifacts = data_dir / "artifacts" / JOB_ID
    events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    events.sort(key=lambda event: event["counter"])
    print(f"ansible-runner rc={result.returncode}; {len(events)} job events in {artifacts}")
    return Job(
        tarball=tarball,
        installed=installed,
        data_dir=data_dir,
        rc=int((artifacts / "rc").read_text()),
        status=(artifacts / "status").read_text().strip(),
        events=events,
        output=(artifacts / "stdout").read_text(),
        command=(artifacts / "command").read_text(),
    )


def test_the_tarball_has_no_development_files(job):
    with tarfile.open(job.tarball) as tar:
        names = [name.removeprefix("./") for name in tar.getnames()]
    tops = {name.split("/", 1)[0] for name in names}
    assert not tops & DEVELOPMENT_ONLY, sorted(tops & DEVELOPMENT_ONLY)
    wanted = ["playbooks/deploy.yml", "awx/surveys/deploy.json", "meta/execution-environment.yml", "CHANGELOG.rst"]
    assert [name for name in wanted if name not in names] == []


def test_the_job_succeeded(job):
    assert job.events, "ansible-runner recorded no event: " + job.output[-6000:]
    failed = [_data(e).get("task") for e in job.events if e["event"] == "runner_on_failed"]
    assert (job.status, job.rc, failed) == ("successful", 0, []), job.output[-6000:]


def test_the_job_ran_the_installed_collection_not_the_checkout(job):
    paths = {_data(e)["task_path"].rsplit(":", 1)[0] for e in job.events if _data(e).get("task_path")}
    # deploy.yml imports the pipeline: its tasks come from the installed collection's playbooks/tasks.
    assert str(job.installed / "playbooks" / "tasks" / "pipeline.yml") in paths, sorted(paths)
    assert any(p.startswith(str(job.installed / "roles" / "code_sync")) for p in paths), sorted(paths)
    outside = sorted(p for p in paths if not p.startswith((str(job.installed), str(job.data_dir / "project"))))
    assert outside == []
    assert not any(p.startswith(str(PROJECT) + "/") for p in paths)


def test_the_job_events_show_the_summary(job):
    shown = [
        _data(e)["res"]["msg"]
        for e in job.events
        if e["event"] == "runner_on_ok" and _data(e).get("task") == "Summary | Show the summary"
    ]
    assert len(shown) == 1, [_data(e).get("task") for e in job.events if e["event"] == "runner_on_ok"][-10:]
    lines = shown[0]
    assert lines[0].startswith("DEPLOYED: ") and "of demo on " in lines[0], lines
    assert any(line.startswith("phases: ") for line in lines), lines
    assert "DEPLOYED: " in job.output


def test_the_summary_is_a_job_artifact(job):
    """AWX keeps set_stats data as the job's artifacts (and hands them to the next workflow node)."""
    stats = [e for e in job.events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1
    summary = _data(stats[0])["artifact_data"]["greenlight_summary"]
    assert summary["outcome"] == "deployed"
    assert summary["app"] == "demo"
    assert summary["release"].endswith(summary["revision"][:12])
    assert summary["hosts"] == testinfra_hosts


def test_the_site_answers_v1_through_nginx(host, job):
    assert host.check_output("curl -s --max-time 5 http://127.0.0.1/version").strip() == "v1"
    assert host.check_output("curl -s --max-time 5 http://127.0.0.1/healthz").strip() == "ok v1"
    assert host.service("greenlight-demo@current").is_running


def test_no_secret_reaches_the_command_line_or_the_job_output(job):
    """AWX shows the command, the output and every event to anyone who can read the job."""
    assert SECRET_KEY not in job.command and "demo-db-password" not in job.command
    everything = job.output + "".join(json.dumps(e) for e in job.events)
    assert SECRET_KEY not in everything
    assert DATABASE_URL not in everything
