"""The simple deploy playbook, checked the way a user sees it.

Tests run in file order and build on each other like a real sequence of
deploys: v1 (converge) serves; a plan of v2 is written and changes nothing that serves; a deploy of an
unknown plan id, and one of a release that changed after the plan was approved, are refused; v2 goes out with
the approved plan id while a probe measures the downtime window; v2 again changes nothing, and with another
unit restarts gunicorn on it; v3 is refused; v5 fails half way and is undone; a held lock stops a second
deploy; rollbacks. Then the old-pins variant (Django 4.2, gunicorn 21.2,
psycopg2-binary, whitenoise, DEBUG on, a short ALLOWED_HOSTS) deploys unchanged
and migrates, and the newest demo (Django 5.2, gunicorn 27) deploys over it. Last, the demo in a src layout
without manage.py, its requirements in pyproject.toml and uv.lock, is refused without a settings module and
deploys with one, with one variable of each role set in the inventory: each wins over the playbooks' mapping of
the greenlight_* variables; a role variable that contradicts the application is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
from playbook_run import demo_playbook, out, summary  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

PROJECT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
APP = "/srv/demo"
PSQL = "sudo -u postgres psql -XAtq -d demo -c"
PROBE = "/var/lib/greenlight-tests/probe.log"


def deploy(version: str, *extra: str, playbook: str = "deploy.yml"):
    """Run the playbook from the checkout against the scenario's container."""
    return demo_playbook(playbook, version, *extra)


def served_version(host) -> str:
    return host.check_output("curl -s --max-time 5 http://127.0.0.1/version").strip()


def data_checksum(host) -> str:
    """Rows and schema of the demo database: what a deploy must never lose."""
    rows = host.check_output(
        f"{PSQL} \"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM notes_note t\""
    )
    schema = host.check_output(
        f"{PSQL} \"SELECT md5(string_agg(table_name || '.' || column_name || ':' || data_type || ':' || is_nullable,"
        " ',' ORDER BY table_name, column_name)) FROM information_schema.columns WHERE table_schema = 'public'\""
    )
    applied = host.check_output(
        f"{PSQL} \"SELECT string_agg(app || '.' || name, ',' ORDER BY app, name) FROM django_migrations\""
    )
    return f"{rows}/{schema}/{applied}"


def write_note(host, title: str) -> None:
    host.check_output(f"curl -sf --max-time 5 -X POST -d title={title} http://127.0.0.1/notes/new")


def test_v1_serves_through_nginx(host):
    assert served_version(host) == "v1"
    assert host.socket("tcp://127.0.0.1:8000").is_listening  # converge used the ports of earlier versions
    assert host.check_output("curl -s http://127.0.0.1/healthz").strip() == "ok v1"
    assert host.service("greenlight-demo@current").is_running
    report = summary()
    assert report["outcome"] == "deployed"
    assert report["release"].endswith(report["revision"][:12])
    applied = host.check_output(f"{PSQL} \"SELECT count(*) FROM django_migrations WHERE app = 'notes'\"")
    assert applied == "1"


PLANS = EPHEMERAL / "plans"


def plan(version: str, *extra: str):
    """Run greenlight.django.plan from the checkout, writing the plans into the scenario's directory."""
    return deploy(version, "-e", json.dumps({"greenlight_plan_dir": str(PLANS)}), *extra, playbook="plan.yml")


def approved_plan() -> dict:
    """The plan of v2 that the plan test wrote (the one a reviewer approves)."""
    written = sorted(PLANS.glob("demo-*.json"))
    assert len(written) == 1, written
    return json.loads(written[0].read_text())


def serving(host) -> dict:
    """What serves and what it serves from: a plan, or a refused deploy, changes none of it."""
    return {
        "current": host.check_output(f"readlink {APP}/current"),
        "gunicorn": host.check_output("systemctl show -p MainPID --value greenlight-demo@current"),
        "unit": host.check_output("systemctl cat greenlight-demo@current | sha256sum"),
        "nginx": host.check_output("cat /etc/nginx/greenlight/demo/*.conf | sha256sum"),
        "environment": host.check_output(f"sha256sum {APP}/shared/.env"),
        "database": data_checksum(host),
        "version": served_version(host),
    }


def test_plan_of_v2_writes_the_report_and_changes_nothing_that_serves(host):
    before = serving(host)
    releases = set(host.check_output(f"ls {APP}/releases").split())
    result = plan("v2")
    assert result.returncode == 0, out(result)
    assert serving(host) == before
    assert before["version"] == "v1"

    written = approved_plan()
    plan_id = written["plan_id"]
    assert [m["migration"] for m in written["migrations"]] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert any('ADD COLUMN "tag"' in line for line in written["migrations"][0]["sql"]), written["migrations"][0]
    assert written["window"]["downtime"] is True and written["strategy"] == "simple"
    assert written["serving"] == before["current"].rsplit("/", 1)[-1]
    report = (PLANS / f"demo-{plan_id}.md").read_text()
    assert f"# Plan {plan_id}: demo" in report and "### 2. notes.0003_backfill_tag" in report
    assert f"greenlight_plan_id={plan_id}" in result.stdout
    # The release is prepared beside the serving one, and the plan kept on the server is the one written here.
    assert set(host.check_output(f"ls {APP}/releases").split()) - releases == {written["release"]}
    assert json.loads(host.check_output(f"cat {APP}/plans/{plan_id}.json")) == written


def test_an_unknown_plan_id_is_refused_before_anything_changes(host):
    before = serving(host)
    releases = host.check_output(f"ls {APP}/releases")
    result = deploy("v2", "-e", json.dumps({"greenlight_plan_id": "0123456789abcdef"}))
    assert result.returncode != 0
    assert "there is no plan of that id" in out(result), out(result)
    assert serving(host) == before
    assert host.check_output(f"ls {APP}/releases") == releases
    assert summary()["outcome"] == "refused"


def test_a_plan_approved_before_a_new_commit_and_migration_is_refused_naming_them(host):
    """A commit with a new migration lands between the review and the deploy."""
    approved = approved_plan()
    changed = EPHEMERAL / "demo" / "v2-later"
    shutil.rmtree(changed, ignore_errors=True)
    shutil.copytree(EPHEMERAL / "demo" / "v2", changed)
    (changed / "notes" / "migrations" / "0004_after_approval.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("notes", "0003_backfill_tag")]\n'
        '    operations = [migrations.RunSQL("SELECT 1", reverse_sql=migrations.RunSQL.noop)]\n'
    )
    before = serving(host)
    releases = host.check_output(f"ls {APP}/releases")
    result = deploy("v2-later", "-e", json.dumps({"greenlight_plan_id": approved["plan_id"]}))
    assert result.returncode != 0
    text = out(result)
    assert f"The plan approved as {approved['plan_id']}" in text, text
    assert "migration added: notes.0004_after_approval" in text, text
    assert f"revision changed: approved {approved['revision']}, now " in text, text
    # A deploy installs the gunicorn unit and the nginx files of the new release before it inspects it, as it did
    # before plans existed (the serving gunicorn keeps running); everything else must be as it was.
    after = serving(host)
    assert {k: v for k, v in after.items() if k not in ("unit", "nginx")} == {
        k: v for k, v in before.items() if k not in ("unit", "nginx")
    }
    assert host.check_output(f"ls {APP}/releases") == releases
    assert summary()["outcome"] == "refused"


def test_v2_deploys_in_a_short_window_and_keeps_the_rows(host):
    for n in range(5):
        write_note(host, f"before-v2-{n}")
    rows_before = host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE title LIKE 'before-v2-%'\"")
    # A probe inside the container: one request every 0.1 s, at most 120 s.
    host.run("mkdir -p /var/lib/greenlight-tests")
    host.run(
        f"nohup bash -c 'for i in $(seq 1 1200); do [ -e {PROBE}.stop ] && break; "
        f'printf "%s %s\\n" $(date +%s.%N) $(curl -s -o /dev/null -w %{{http_code}} --max-time 2 http://127.0.0.1/healthz);'
        f" sleep 0.1; done' > {PROBE} 2>&1 &"
    )
    # The plan a reviewer approved (test_plan_of_v2_...): the deploy computes the same one and goes ahead.
    approved = approved_plan()
    result = deploy("v2", "-e", json.dumps({"greenlight_plan_id": approved["plan_id"]}))
    host.run(f"touch {PROBE}.stop; sleep 0.5; rm -f {PROBE}.stop")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    assert summary()["plan_id"] == approved["plan_id"] and summary()["release"] == approved["release"]
    # converge used the ports of earlier versions; v2 (default settings) moved gunicorn to its unix socket, and
    # nginx, which sent requests to both until gunicorn restarted, to the socket alone.
    assert host.socket("unix:///run/greenlight-demo/current.sock").is_listening
    assert not host.socket("tcp://127.0.0.1:8000").is_listening
    upstream = host.file("/etc/nginx/greenlight/demo/upstream-current.conf").content_string
    assert [line.split()[1] for line in upstream.splitlines() if line.strip().startswith("server ")] == [
        "unix:/run/greenlight-demo/current.sock"
    ]
    rows_after = host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE title LIKE 'before-v2-%'\"")
    assert rows_after == rows_before == "5"
    assert host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE tag = 'legacy'\"") == rows_after

    report = summary()
    assert report["migrations_applied"] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    backup = host.file(report["backup_file"])
    assert backup.exists and backup.mode == 0o600 and backup.user == "root"

    samples = [line.split() for line in host.file(PROBE).content_string.splitlines() if len(line.split()) == 2]
    down = [float(t) for t, code in samples if code != "200"]
    window = (max(down) - min(down)) if down else 0.0
    print(
        f"downtime window seen by the probe: {window:.2f} s ({len(down)} of {len(samples)} probes not 200);"
        f" reported by the playbook: {report['downtime_window_seconds']} s"
    )
    assert samples and samples[-1][1] == "200"
    assert window < 60


def test_same_revision_again_changes_nothing(host):
    result = deploy("v2")
    assert result.returncode == 0, out(result)
    recap = [line for line in result.stdout.splitlines() if "changed=" in line]
    assert recap and all("changed=0" in line for line in recap), out(result)
    report = summary()
    # One check on the host, and the deploy ends: no release prepared, no lock taken, no migration inspected.
    assert report["outcome"] == "unchanged", report
    assert "Prepare the new release" not in result.stdout and "Take the lock" not in result.stdout, out(result)
    assert report["downtime_window_seconds"] in (0, "0")
    assert report["release"] == host.check_output(f"readlink {APP}/current").split("/")[-1]
    assert served_version(host) == "v2"


def record_check(host) -> dict:
    """What greenlight.django.deploy_record finds on the host against the record the last deploy left."""
    digest = json.loads(host.check_output(f"cat {APP}/deployed.json"))["digest"]
    return host.ansible(
        "greenlight.django.deploy_record",
        f"app_root={APP} state=checked digest={digest} lock={APP}/deploy.lock",
        check=False,
        become=True,
    )


def test_what_changed_on_the_host_since_the_last_deploy_makes_the_next_one_do_every_step(host):
    assert host.file(f"{APP}/deployed.json").mode == 0o600
    assert record_check(host)["unchanged"] is True
    # A migration applied on the server (a restore, a hand-made fix) is seen, though the code did not change.
    mark = "INSERT INTO django_migrations (app, name, applied) VALUES ('notes', '9999_elsewhere', now())"
    host.check_output(f'{PSQL} "{mark}"')
    try:
        seen = record_check(host)
    finally:
        host.check_output(f"{PSQL} \"DELETE FROM django_migrations WHERE name = '9999_elsewhere'\"")
    assert seen["unchanged"] is False and seen["differences"] == ["the database has other migrations applied"]

    # A stopped instance and an nginx site edited by hand: the next deploy of the same revision does every step
    # and puts both back.
    site = "/etc/nginx/conf.d/greenlight-demo.conf"
    wanted = host.file(site).content_string
    host.check_output(f"printf '# edited by hand\\n' >> {site} && systemctl stop greenlight-demo@current")
    seen = record_check(host)["differences"]
    assert f"{site} changed" in seen and "greenlight-demo@current.service is not active" in seen, seen
    result = deploy("v2")
    assert result.returncode == 0, out(result)
    assert summary()["outcome"] == "deployed"
    assert host.file(site).content_string == wanted
    assert served_version(host) == "v2"
    assert record_check(host)["unchanged"] is True


def gunicorn(host) -> tuple[str, str]:
    """The master's PID and how many workers it runs."""
    pid = host.check_output("systemctl show -p MainPID --value greenlight-demo@current").strip()
    return pid, host.check_output(f"pgrep -c -P {pid}").strip()


def test_same_revision_with_another_unit_restarts_gunicorn_on_it(host):
    # The per-instance drop-in of greenlight.django 1.0.0 goes: the ports are in the template unit now.
    legacy = "/etc/systemd/system/greenlight-demo@current.service.d/greenlight-bind.conf"
    host.run(f"mkdir -p $(dirname {legacy}) && printf '[Service]\\n' > {legacy}")
    before = gunicorn(host)
    assert before[1] == "2"

    result = deploy("v2", "-e", json.dumps({"wsgi_workers": 3}))
    assert result.returncode == 0, out(result)
    more = gunicorn(host)
    assert more[0] != before[0] and more[1] == "3", f"gunicorn before {before}, after {more}: not restarted on the unit"
    assert not host.file(legacy).exists
    assert served_version(host) == "v2"

    # Back to the scenario's unit: restarted once more, then nothing changes.
    result = deploy("v2")
    assert result.returncode == 0, out(result)
    back = gunicorn(host)
    assert back[0] != more[0] and back[1] == "2"
    result = deploy("v2")
    assert result.returncode == 0, out(result)
    assert gunicorn(host) == back
    assert served_version(host) == "v2"


def test_v3_is_refused_before_any_change(host):
    before = data_checksum(host)
    current = host.check_output(f"readlink {APP}/current")
    releases = host.check_output(f"ls {APP}/releases")
    result = deploy("v3")
    assert result.returncode != 0
    text = out(result)
    assert "priority" in text and "makemigrations" in text, text
    assert data_checksum(host) == before
    assert host.check_output(f"readlink {APP}/current") == current
    assert host.check_output(f"ls {APP}/releases") == releases
    assert served_version(host) == "v2"
    assert summary()["outcome"] == "refused"


def test_v5_fails_half_way_and_everything_is_put_back(host):
    write_note(host, "before-v5")
    before = data_checksum(host)
    result = deploy("v5")
    assert result.returncode != 0
    text = out(result)
    assert "database restored from" in text, text
    assert data_checksum(host) == before
    assert served_version(host) == "v2"
    assert host.check_output("curl -s -o /dev/null -w %{http_code} http://127.0.0.1/healthz") == "200"
    assert summary()["outcome"] == "failed"


def test_a_held_lock_stops_a_second_deploy_and_can_be_broken(host):
    host.check_output(f"mkdir {APP}/deploy.lock")
    note = {"holder": "alice@ci", "playbook": "deploy", "job": "", "since": "2026-01-01T00:00:00Z"}
    host.check_output(f"echo '{json.dumps(note)}' > {APP}/deploy.lock/holder.json")
    try:
        refused = deploy("v2")
        assert refused.returncode != 0
        assert "alice@ci" in out(refused) and "2026-01-01T00:00:00Z" in out(refused)
        assert "greenlight_lock_break" in out(refused)
        broken = deploy("v2", "-e", "greenlight_lock_break=true")
        assert broken.returncode == 0, out(broken)
        assert not host.file(f"{APP}/deploy.lock").exists
    finally:
        host.run(f"rm -rf {APP}/deploy.lock")


def test_rollback_reverse_needs_confirmation(host):
    before = data_checksum(host)
    refused = deploy("v2", "-e", "greenlight_rollback_database=reverse", playbook="rollback.yml")
    assert refused.returncode != 0
    assert "greenlight_rollback_confirm=true" in out(refused), out(refused)
    assert data_checksum(host) == before
    assert served_version(host) == "v2"


def test_rollback_reverse_unapplies_what_v1_does_not_have(host):
    rows = host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note"')
    result = deploy(
        "v2",
        "-e",
        "greenlight_rollback_database=reverse",
        "-e",
        "greenlight_rollback_confirm=true",
        playbook="rollback.yml",
    )
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v1"
    assert (
        host.check_output(
            f"{PSQL} \"SELECT string_agg(name, ',' ORDER BY name) FROM django_migrations WHERE app = 'notes'\""
        )
        == "0001_initial"
    )
    columns = host.check_output(
        f"{PSQL} \"SELECT string_agg(column_name, ',') FROM information_schema.columns"
        " WHERE table_name = 'notes_note'\""
    )
    assert "tag" not in columns.split(",")
    assert host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note"') == rows
    report = summary()
    assert report["database"] == "unapplied: notes.0003_backfill_tag, notes.0002_note_tag", report


# --------------------------------------------------------------------------- old pins, then the upgrade path

LEGACY_HOST = "demo.example.com"  # the variant's settings: ALLOWED_HOSTS = ["demo.example.com", "localhost"]


def through_nginx(host, path: str, *, name: str = LEGACY_HOST) -> tuple[str, str]:
    """(status, body) of a request through nginx with that Host."""
    answer = host.check_output(f"curl -s --max-time 5 -H 'Host: {name}' -w '\\n%{{http_code}}' http://127.0.0.1{path}")
    body, _newline, status = answer.rpartition("\n")
    return status, body.strip()


def gunicorn_command_line(host) -> str:
    pid = host.check_output("systemctl show -p MainPID --value greenlight-demo@current").strip()
    return host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")


# The hashed name of a static file the old-pins release's pages name (whitenoise's manifest), for the next test.
LEGACY_HASHED: list[str] = []


def test_old_pins_deploy_unchanged_and_migrate(host):
    """A 2023 project (Django 4.2, gunicorn 21.2, psycopg2-binary, whitenoise, DEBUG on, two ALLOWED_HOSTS)."""
    # The rollback above left v1 serving, with only 0001 applied: the variant (v2's code) has two to apply.
    rows = host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note"')
    result = deploy("legacy", "-e", json.dumps({"greenlight_server_name": LEGACY_HOST}))
    assert result.returncode == 0, out(result)

    assert through_nginx(host, "/version") == ("200", "legacy")
    assert through_nginx(host, "/healthz") == ("200", "ok legacy")
    # Django answers only the names its settings list.
    assert through_nginx(host, "/version", name="127.0.0.1")[0] == "400"
    # whitenoise's manifest storage collected the static files; nginx serves them from the release.
    assert through_nginx(host, "/static/admin/css/base.css")[0] == "200"
    assert host.file(f"{APP}/current/static/staticfiles.json").exists
    manifest = json.loads(host.file(f"{APP}/current/static/staticfiles.json").content_string)
    LEGACY_HASHED.append(manifest["paths"]["admin/css/base.css"])
    assert through_nginx(host, f"/static/{LEGACY_HASHED[0]}")[0] == "200"

    installed = host.check_output(f"{APP}/current/.venv/bin/python -m pip list --format=freeze")
    assert {"Django==4.2.7", "gunicorn==21.2.0", "psycopg2-binary==2.9.9"} <= set(installed.split()), installed
    command_line = gunicorn_command_line(host)
    assert "gunicorn" in command_line and "control-socket" not in command_line, command_line

    report = summary()
    assert report["outcome"] == "deployed"
    assert report["migrations_applied"] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert any("gunicorn 21.2.0" in note and "control socket" in note for note in report["notes"]), report
    assert any("security.W018" in warning for warning in report["check_deploy_warnings"]), report
    assert host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note"') == rows
    assert host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE tag = 'legacy'\"") == rows

    host.check_output(
        f"curl -sf --max-time 5 -H 'Host: {LEGACY_HOST}' -X POST -d title=on-old-pins http://127.0.0.1/notes/new"
    )


def test_newest_demo_deploys_over_the_old_pins(host):
    legacy_release = host.check_output(f"readlink {APP}/current").rsplit("/", 1)[-1]
    before = data_checksum(host)
    result = deploy("v2")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    assert data_checksum(host) == before
    assert host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE title = 'on-old-pins'\"") == "1"
    # A page the old-pins release rendered still gets its hashed stylesheet, which the new release does not have:
    # nginx serves it from the static bridge, with the old release's content.
    assert not host.file(f"{APP}/current/static/{LEGACY_HASHED[0]}").exists
    status = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1/static/{LEGACY_HASHED[0]}")
    assert status == "200"
    served = host.check_output(f"curl -s http://127.0.0.1/static/{LEGACY_HASHED[0]} | sha256sum").split()[0]
    assert served == host.file(f"{APP}/releases/{legacy_release}/static/{LEGACY_HASHED[0]}").sha256sum

    installed = host.check_output(f"{APP}/current/.venv/bin/python -m pip list --format=freeze")
    assert "gunicorn==27.0.1" in installed.split(), installed
    # gunicorn 27 has the control socket: this release gets it, in the instance's runtime directory.
    assert "--control-socket=/run/greenlight-demo-current/gunicorn.ctl" in gunicorn_command_line(host)
    assert host.file("/run/greenlight-demo-current/gunicorn.ctl").is_socket
    report = summary()
    assert report["outcome"] == "deployed" and report["notes"] == [], report


def test_a_second_site_that_claims_default_server_is_refused_with_nginx_own_message(host):
    other = "/etc/nginx/sites-enabled/zz-other-default"
    site = "server { listen 80 default_server; server_name other.test; return 204; }"
    host.check_output(f"echo '{site}' > {other}")
    try:
        result = deploy("v2")
        assert result.returncode != 0
        error = summary()["error"]
        assert "duplicate default server" in error and "non-zero return code" not in error, error
        assert summary()["outcome"] == "refused"
    finally:
        host.run(f"rm -f {other}")
    assert served_version(host) == "v2"


def test_extra_requirements_go_into_the_release(host):
    """A project whose Dockerfile added a package: code_sync_extra_requirements puts it in the release."""
    extra = {"code_sync_extra_requirements": ["python-dotenv==1.0.0"]}
    result = deploy("v2", "-e", json.dumps(extra))
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    installed = host.check_output(f"{APP}/current/.venv/bin/python -m pip list --format=freeze")
    assert "python-dotenv==1.0.0" in installed.split(), installed
    # Built another way than the release of the same revision before it: a new release, not that one.
    assert summary()["release"] != summary()["previous_release"]


def test_a_build_command_that_fails_refuses_the_deploy_before_any_change(host):
    current = host.check_output(f"readlink {APP}/current")
    releases = host.check_output(f"ls {APP}/releases")
    before = data_checksum(host)
    # The demo has no translations and the server no gettext: compilemessages fails, as in a project that
    # forgot to install gettext on its servers.
    extra = {"code_sync_extra_requirements": ["python-dotenv==1.0.0"], "code_sync_build_commands": ["compilemessages"]}
    result = deploy("v2", "-e", json.dumps(extra))
    assert result.returncode != 0
    report = summary()
    assert report["outcome"] == "refused", report
    assert "compilemessages" in report["error"] and "CommandError" in report["error"], report["error"]
    assert host.check_output(f"readlink {APP}/current") == current
    assert host.check_output(f"ls {APP}/releases") == releases
    assert data_checksum(host) == before
    assert served_version(host) == "v2"


# ------------------------------------------------------------------- a src layout without manage.py, from a uv.lock

SRC_LAYOUT = {"greenlight_settings_module": "demo.settings", "greenlight_pythonpath": ["src"]}
SITE = "site.example.test"
BACKUPS = "/var/backups/greenlight-demo"


def set_in_inventory(values: dict) -> list[Path]:
    """Set variables in the scenario's inventory (host_vars), where a user's inventory sets them."""
    directory = Path(INVENTORY).parent / "host_vars"
    directory.mkdir(exist_ok=True)
    files = [directory / f"{name}.yml" for name in testinfra_hosts]
    for path in files:
        path.write_text(json.dumps(values))  # JSON is YAML
    return files


def unset_in_inventory(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)


def test_a_project_without_manage_py_and_without_settings_module_is_refused_before_any_change(host):
    current = host.check_output(f"readlink {APP}/current")
    releases = host.check_output(f"ls {APP}/releases")
    result = deploy("srclayout")
    assert result.returncode != 0
    report = summary()
    assert report["outcome"] == "refused", report
    assert "has no manage.py, and no settings module is given" in report["error"], report["error"]
    assert "greenlight_settings_module" in report["error"] and "greenlight_pythonpath" in report["error"]
    assert host.check_output(f"readlink {APP}/current") == current
    assert host.check_output(f"ls {APP}/releases") == releases
    assert served_version(host) == "v2"


def test_a_src_layout_deploys_from_its_uv_lock_and_migrates(host):
    """With one variable of each role set in the inventory, unlike what the greenlight_* variables give: each wins."""
    write_note(host, "before-srclayout")
    untagged = host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note WHERE tag IS NULL"')
    assert int(untagged) >= 1
    inventory = set_in_inventory(
        {
            # code_sync: the application's environment (greenlight_environment allows 127.0.0.1 and localhost).
            "code_sync_environment": "{{ greenlight_environment | combine({'DJANGO_ALLOWED_HOSTS': '" + SITE + "'}) }}",
            # wsgi: the health probe's Host (the playbooks give 127.0.0.1, which Django now refuses).
            "wsgi_health_host": SITE,
            # traffic: nginx's server_name (the playbooks give the inventory host name).
            "traffic_server_name": SITE,
            # backup: where the backup goes (the playbooks give <app_root>/backups).
            "backup_dir": BACKUPS,
        }
    )
    try:
        result = deploy("srclayout", "-e", json.dumps(SRC_LAYOUT))
    finally:
        unset_in_inventory(inventory)
    assert result.returncode == 0, out(result)

    # Django answers the name from code_sync_environment only: the probe asked for it (wsgi_health_host).
    assert through_nginx(host, "/version", name=SITE) == ("200", "srclayout")
    assert through_nginx(host, "/healthz", name=SITE) == ("200", "ok srclayout")
    assert through_nginx(host, "/version", name="127.0.0.1")[0] == "400"
    assert f"server_name {SITE};" in host.check_output("nginx -T 2>/dev/null")
    # collectstatic ran as python -m django with the release's settings: nginx serves what it collected.
    assert (
        host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/static/admin/css/base.css") == "200"
    )
    assert not host.file(f"{APP}/current/manage.py").exists
    report = summary()
    assert report["outcome"] == "deployed", report
    # The environment file changed (code_sync_environment): the copy of the old one, kept while the deploy could
    # still fail, is gone now that the new release serves.
    assert SITE in host.check_output(f"grep ^DJANGO_ALLOWED_HOSTS= {APP}/shared/.env")
    assert [name for name in host.check_output(f"ls -A {APP}/shared").split() if name.endswith("~")] == []
    assert report["migrations_applied"] == ["notes.0004_tag_untagged_srclayout"], report
    assert report["backup_file"].startswith(f"{BACKUPS}/demo-"), report
    assert host.file(report["backup_file"]).is_file
    assert report["check_deploy_warnings"] == [], report
    assert host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE tag = 'srclayout'\"") == untagged
    # The virtualenv holds what the lock pins (not a fresh resolution), and none of its development group.
    installed = set(host.check_output(f"{APP}/current/.venv/bin/python -m pip list --format=freeze").split())
    assert {"Django==5.2.19", "gunicorn==27.0.1", "psycopg==3.3.9", "sqlparse==0.6.1", "asgiref==3.13.0"} <= installed
    assert not [name for name in installed if name.lower().startswith("ruff")], installed
    # The manage wrapper runs django-admin in the release, as gunicorn does, with the recorded settings.
    shown = host.check_output(f"{APP}/bin/manage {APP}/current showmigrations notes")
    assert "[X] 0004_tag_untagged_srclayout" in shown, shown


def test_migrate_environment_in_the_inventory_reaches_the_migrations(host):
    """migrate: its environment (the playbooks give none) reaches the inspection, which cannot log in."""
    current = host.check_output(f"readlink {APP}/current")
    wrong = {"DATABASE_URL": "postgres://inventory_only:not-the-password@127.0.0.1:5432/demo"}
    inventory = set_in_inventory({"migrate_environment": wrong})
    try:
        result = deploy("srclayout", "-e", json.dumps(SRC_LAYOUT))
    finally:
        unset_in_inventory(inventory)
    assert result.returncode != 0
    text = out(result) + summary()["error"]
    assert "inventory_only" in text, text
    assert host.check_output(f"readlink {APP}/current") == current
    assert through_nginx(host, "/version", name=SITE) == ("200", "srclayout")


def test_a_role_variable_that_contradicts_the_application_is_refused_before_any_change(host):
    releases = host.check_output(f"ls {APP}/releases")
    inventory = set_in_inventory({"wsgi_app_root": "/opt/demo"})
    try:
        result = deploy("srclayout", "-e", json.dumps(SRC_LAYOUT))
    finally:
        unset_in_inventory(inventory)
    assert result.returncode != 0
    text = out(result)
    assert "wsgi_app_root is" in text and "/opt/demo" in text and "set greenlight_app_name" in text, text
    assert "Nothing was changed" in text
    assert host.check_output(f"ls {APP}/releases") == releases
    assert not host.file("/opt/demo").exists
