"""code_sync, wsgi and traffic together, checked the way a user sees them.

The tests run in file order and build on each other like a real sequence of
deploys: v1 (converge) is served; v2 goes out behind the maintenance page;
v2b goes out on green while requests keep coming; then failures that must
leave the site serving, keep-N, the other sources and refused inputs. The
playbooks in ../steps/ are run with ansible-playbook against the same
container.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
from playbook_run import ansible_playbook  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
APP = "/srv/demo"
CONF = "/etc/nginx/greenlight/demo"
PROBE = "a \"quoted\" $value with `ticks`, a \\backslash and 'single quotes'"
STATE: dict[str, str] = {}
SCRATCH = "/var/lib/greenlight-tests"  # in the container: load output, probe script, backups


def run_step(playbook: str, extra_vars: dict | None = None, inventory: str | None = None):
    """Run ../steps/<playbook> against the scenario's container."""
    variables = ["-e", json.dumps(extra_vars)] if extra_vars else []
    return ansible_playbook(SCENARIO / "steps" / playbook, *variables, inventory=inventory)


def output_of(result) -> str:
    return result.stdout + result.stderr


def succeeded(result) -> bool:
    return result.returncode == 0


def tail(result) -> str:
    return output_of(result)[-6000:]


def socket_of(instance: str, app: str = "demo") -> str:
    """The unix socket gunicorn listens on by default for an instance."""
    return f"/run/greenlight-{app}/{instance}.sock"


def http(host, path: str, instance: str = "", site: str = "") -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of a GET from inside the container: through nginx, or straight from an instance's
    gunicorn over its unix socket. site: the Host header nginx sees."""
    via = f"--unix-socket {socket_of(instance)} " if instance else ""
    name = f"-H 'Host: {site}' " if site else ""
    raw = host.check_output(f"curl -s -D - --max-time 10 {via}{name}http://127.0.0.1{path}")
    head, _sep, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _sep, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def release_of(host, pointer: str) -> str:
    return host.check_output(f"readlink {APP}/{pointer}").rsplit("/", 1)[-1]


def releases(host, app: str = APP) -> list[str]:
    return sorted(host.check_output(f"ls -1 {app}/releases").split())


# --- v1, as converge left it ---------------------------------------------------


def test_v1_is_served_through_nginx(host):
    status, _headers, body = http(host, "/")
    assert status == 200
    assert "v1" in body
    assert http(host, "/version")[2].strip() == "v1"
    assert http(host, "/healthz")[2].strip() == "ok v1"


def test_v1_runs_django_6_on_debian_13_with_psycopg2_built_there(host):
    # Django 6.0 needs Python 3.12+: the controller (Python 3.11) resolved the wheels for the server's Python.
    python = f"{APP}/current/.venv/bin/python"
    versions = host.check_output(
        f"{python} -c 'import sys, django, psycopg, psycopg2; "
        "print(sys.version_info[:2], django.get_version(), psycopg.__version__, psycopg2.__version__.split()[0])'"
    )
    assert versions == "(3, 13) 6.0.10 3.3.9 2.9.10"
    assert host.file("/etc/debian_version").content_string.startswith("13.")
    # psycopg2 has no wheel for Linux: the wheel installed was built from its sdist on this server.
    wheel = host.check_output(
        f'{python} -c \'import importlib.metadata as m; print(m.distribution("psycopg2").read_text("WHEEL"))\''
    )
    assert "Tag: cp313-cp313-linux_x86_64" in wheel
    # The requirements are pinned with hashes (pip-compile --generate-hashes): the wheelhouse checked every
    # download against them, and the server installed from its copy without them.
    assert "--hash=sha256:12ec0b40" in host.file(f"{APP}/current/requirements.txt").content_string
    wheelhouse = host.check_output(f"cat {APP}/current/.venv/wheelhouse")
    assert "psycopg2==2.9.10\n" in host.file(f"{APP}/wheels/{wheelhouse}/requirements.txt").content_string + "\n"
    assert "--hash" not in host.file(f"{APP}/wheels/{wheelhouse}/requirements.txt").content_string


def test_static_files_come_from_the_active_release(host):
    status, headers, _body = http(host, "/static/admin/css/base.css")
    assert status == 200
    assert "expires" in headers
    assert host.file(f"{APP}/current/static/admin/css/base.css").exists


def test_gunicorn_runs_unprivileged_on_a_unix_socket_only_nginx_reaches(host):
    unit = host.service("greenlight-demo@current")
    assert unit.is_running
    assert unit.is_enabled
    assert host.socket(f"unix://{socket_of('current')}").is_listening
    assert not host.socket("tcp://127.0.0.1:8000").is_listening
    owners = host.check_output("ps -eo user:20=,args= | grep '[g]unicorn' | awk '{print $1}' | sort -u")
    assert owners.split() == ["demo"]
    # The application's socket directory: the app user owns it, nginx's group may pass through, nobody else.
    directory = host.file("/run/greenlight-demo")
    assert (directory.user, directory.group, directory.mode) == ("demo", "www-data", 0o710)
    curl = f"curl -s --max-time 5 --unix-socket {socket_of('current')} http://127.0.0.1/version"
    assert host.check_output(f"runuser -u www-data -- {curl}") == "v1"
    assert host.run(f"runuser -u nobody -- {curl}").rc != 0
    # A reload (systemd runs a command of the unit) leaves the directory to nginx's group.
    host.check_output("systemctl reload greenlight-demo@current")
    assert host.file("/run/greenlight-demo").group == "www-data"
    # gunicorn's control socket stays the app user's alone, in the instance's runtime directory.
    assert host.file("/run/greenlight-demo-current").mode == 0o700
    control = "/run/greenlight-demo-current/gunicorn.ctl"
    probe = f"python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{control}')\""
    assert host.run(f"runuser -u www-data -- {probe}").rc != 0


def test_the_app_user_cannot_write_its_code_but_can_write_media(host):
    release = f"{APP}/releases/{release_of(host, 'current')}"
    assert host.run(f"sudo -u demo touch {release}/manage.py").rc != 0
    assert host.run(f"sudo -u demo touch {release}/.venv/bin/intruder").rc != 0
    assert host.run(f"sudo -u demo touch {release}/static/intruder").rc != 0
    assert host.run(f"sudo -u demo touch {APP}/shared/media/upload-check").rc == 0
    host.run(f"rm -f {APP}/shared/media/upload-check")


def test_the_environment_file_is_root_only(host):
    env_file = host.file(f"{APP}/shared/.env")
    assert env_file.user == "root"
    assert env_file.group == "root"
    assert env_file.mode == 0o600
    assert host.run(f"sudo -u demo cat {APP}/shared/.env").rc != 0


def test_wrapper_and_systemd_give_the_same_environment_and_no_secret_on_a_command_line(host):
    host.run(
        f"mkdir -p {SCRATCH} && printf '%s\\n' 'import os' 'print(os.environ[\"GREENLIGHT_PROBE\"])'"
        f" 'print(os.getuid())' > {SCRATCH}/probe_env.py && chmod 0644 {SCRATCH}/probe_env.py"
    )
    seen = host.check_output(f"{APP}/bin/manage --python {SCRATCH}/probe_env.py {APP}/current").splitlines()
    assert seen[0] == PROBE
    assert int(seen[1]) == int(host.check_output("id -u demo"))
    pid = host.check_output("systemctl show -p MainPID --value greenlight-demo@current")
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert f"GREENLIGHT_PROBE={PROBE}" in environ.splitlines()
    assert "demo-db-password" not in host.check_output("ps -eo args=")


def test_the_wrapper_refuses_an_environment_file_others_may_write(host):
    try:
        host.run(f"chmod 0620 {APP}/shared/.env")
        result = host.run(f"{APP}/bin/manage {APP}/current check")
        assert result.rc != 0
        assert "refusing" in result.stderr
    finally:
        host.run(f"chmod 0600 {APP}/shared/.env")


# --- simple deploy: v2 behind the maintenance page -----------------------------


def test_the_downtime_window_shows_the_maintenance_page(host):
    STATE["v1"] = release_of(host, "current")
    result = run_step("window_open.yml")
    assert succeeded(result), tail(result)
    status, headers, body = http(host, "/")
    assert status == 503
    assert headers.get("retry-after") == "120"
    assert "maintenance" in body.lower()
    assert http(host, "/healthz")[0] == 503
    assert not host.service("greenlight-demo@current").is_running
    # tasks_from stop disables by default (wsgi_stop_disables): a stopped instance does not come back at boot
    assert not host.service("greenlight-demo@current").is_enabled
    assert not host.file(socket_of("current")).exists


def test_closing_the_window_switches_current_and_serves_v2(host):
    result = run_step("window_close.yml")
    assert succeeded(result), tail(result)
    assert http(host, "/version")[2].strip() == "v2"
    assert http(host, "/healthz")[0] == 200
    STATE["v2"] = release_of(host, "current")
    assert STATE["v2"] != STATE["v1"]
    assert host.file(f"{APP}/current").is_symlink
    assert host.file(f"{APP}/releases/{STATE['v1']}/REVISION").exists
    assert host.check_output(f"ls -A {APP} | grep -c '^\\.' || true") == "0", "a temporary link was left behind"


# --- blue-green: v2b on green while requests keep coming -----------------------

# Bounded by count (2000 rounds) and time (120 s); stops earlier when told to.
# Each curl sends three requests over one kept-alive connection.
LOAD = (
    f"mkdir -p {SCRATCH} && rm -f {SCRATCH}/load.out {SCRATCH}/load.stop {SCRATCH}/load.done; "
    "nohup bash -c '"
    "end=$((SECONDS + 120)); "
    "for i in $(seq 1 2000); do "
    f"[ -e {SCRATCH}/load.stop ] || [ $SECONDS -ge $end ] && break; "
    'curl -s --max-time 10 -w " %{http_code}\\n" '
    f"http://127.0.0.1/version http://127.0.0.1/version http://127.0.0.1/version >> {SCRATCH}/load.out; "
    f"done; touch {SCRATCH}/load.done' >/dev/null 2>&1 &"
)


def parse_load(text: str) -> list[tuple[str, str]]:
    """(version, status) per request from lines 'v2' / ' 200' (a failed request has no body line)."""
    answers, version = [], ""
    for line in text.splitlines():
        if line.startswith(" "):
            answers.append((version, line.strip()))
            version = ""
        else:
            version = line.strip()
    return answers


def test_the_idle_colour_is_prepared_and_healthy(host):
    result = run_step("bg_prepare.yml")
    assert succeeded(result), tail(result)
    STATE["v2b"] = release_of(host, "green")
    assert host.service("greenlight-demo@green").is_running
    assert http(host, "/version", instance="green")[2].strip() == "v2b"
    assert http(host, "/version")[2].strip() == "v2", "nginx must still send traffic to current"


def test_the_colour_switch_fails_no_request(host):
    host.run(LOAD)
    time.sleep(2)
    result = run_step("switch.yml", {"new_colour": "green", "old_colour": "current"})
    time.sleep(2)
    host.run(f"touch {SCRATCH}/load.stop")
    for _attempt in range(30):
        if host.file(f"{SCRATCH}/load.done").exists:
            break
        time.sleep(1)
    assert succeeded(result), tail(result)
    answers = parse_load(host.check_output(f"cat {SCRATCH}/load.out"))
    failed = [answer for answer in answers if answer[1] != "200"]
    assert len(answers) > 30
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:10]}"
    versions = [version for version, _code in answers]
    assert "v2" in versions
    assert versions[-1] == "v2b"
    assert http(host, "/version")[2].strip() == "v2b"
    assert http(host, "/static/admin/css/base.css")[0] == 200
    assert host.check_output(f"readlink {CONF}/active.conf") == "upstream-green.conf"
    assert not host.service("greenlight-demo@current").is_running


def test_switching_to_the_active_colour_changes_nothing(host):
    result = run_step("switch.yml", {"new_colour": "green"})
    assert succeeded(result), tail(result)
    assert "changed=0" in result.stdout


def test_a_configuration_nginx_rejects_keeps_the_active_colour(host):
    host.run(f"mkdir -p {SCRATCH} && cp -p {CONF}/upstream-blue.conf {SCRATCH}/upstream-blue.conf.orig")
    try:
        host.run(f"echo 'this_is_no_directive;' >> {CONF}/upstream-blue.conf")
        result = run_step("switch.yml", {"new_colour": "blue"})
        assert not succeeded(result)
        assert "nginx -t failed" in output_of(result)
        assert "this_is_no_directive" in output_of(result)
        assert host.check_output(f"readlink {CONF}/active.conf") == "upstream-green.conf"
        assert http(host, "/version")[2].strip() == "v2b"
    finally:
        host.run(f"cp -p {SCRATCH}/upstream-blue.conf.orig {CONF}/upstream-blue.conf")


# --- keep N --------------------------------------------------------------------


def test_keep_n_never_removes_a_referenced_release(host):
    # keep 2 (group_vars): v1 is the oldest of three, but blue still points at it.
    assert releases(host) == sorted([STATE["v1"], STATE["v2"], STATE["v2b"]])
    assert release_of(host, "blue") == STATE["v1"]
    result = run_step("cleanup.yml", {"pointer": "blue", "release_id": STATE["v2b"], "keep_releases": 1})
    assert succeeded(result), tail(result)
    # keep 1: v1 is referenced no more and goes; v2 stays because current points at it.
    assert releases(host) == sorted([STATE["v2"], STATE["v2b"]])
    assert http(host, "/version")[2].strip() == "v2b"


# --- failures that must leave the site serving ---------------------------------


def test_a_start_that_never_gets_healthy_fails_with_the_journal(host):
    try:
        unhealthy = {"instance": "blue", "wsgi_health_path": "/no-such-page", "wsgi_health_timeout": 5}
        result = run_step("start.yml", unhealthy)
        assert not succeeded(result)
        text = output_of(result)
        assert "did not answer" in text
        assert "journal lines" in text
        assert "GET /no-such-page" in text, "the journal of the unit should be in the message"
    finally:
        host.run("systemctl stop greenlight-demo@blue")
    assert http(host, "/version")[2].strip() == "v2b"


def test_a_release_that_fails_is_removed_and_named(host):
    before = releases(host)
    result = run_step("release.yml", {"demo_version": "broken"})
    assert not succeeded(result)
    text = output_of(result)
    assert "was not created" in text
    assert "Collect the static files" in text
    assert "settings broken on purpose" in text
    assert releases(host) == before
    assert http(host, "/version")[2].strip() == "v2b"


def test_a_requirement_that_cannot_be_built_is_refused_before_a_release_is_made(host):
    # python-ldap has no wheel for Linux; without its headers (and with no build packages to install) the build on
    # the server fails. The refusal comes before any release directory exists, with the package and the fix.
    before = releases(host)
    extra = {"code_sync_extra_requirements": ["python-ldap==3.4.4"], "code_sync_build_packages": []}
    result = run_step("release.yml", {"demo_version": "v2b", **extra})
    assert not succeeded(result)
    text = " ".join(output_of(result).split())  # the message as one line, however the output wraps it
    assert "there is no wheel for cp3.13" in text, tail(result)
    # The failed builds are named (psycopg2 too, when no compiler was left there by an earlier build), with
    # the build's own error lines.
    assert "python-ldap, and building it from source" in text, tail(result)
    assert "ERROR: Failed building wheel for python-ldap" in text, tail(result)
    assert "Fix: add the system packages the build needs" in text and "No release was made." in text
    assert "Create the release directory" not in text
    assert releases(host) == before
    assert host.run("ls -d /tmp/greenlight-wheels-*").stdout == ""  # the build directory on the server is gone
    assert http(host, "/version")[2].strip() == "v2b"


# --- other sources -------------------------------------------------------------


def test_git_clone_and_git_archive_give_the_same_release(host):
    result = run_step("git_sources.yml")
    assert succeeded(result), tail(result)
    (release,) = releases(host, "/srv/demo_alt")
    revision = host.check_output(f"cat /srv/demo_alt/releases/{release}/REVISION")
    assert len(revision) == 40
    assert release.endswith("-" + revision[:12])
    assert host.run(f"/srv/demo_alt/bin/manage /srv/demo_alt/releases/{release} check").rc == 0


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed on the controller")
def test_rsync_source_makes_a_release_once(host):
    result = run_step("rsync_source.yml")
    assert succeeded(result), tail(result)
    assert len(releases(host, "/srv/demo_alt")) == 2


# --- refused inputs -------------------------------------------------------------


def test_invalid_inputs_are_refused_before_any_change(host, tmp_path):
    # The inventory file alone, without the scenario's group_vars: no role has an application name.
    inventory = tmp_path / "inventory.yml"
    shutil.copy(INVENTORY, inventory)
    result = run_step("invalid_inputs.yml", inventory=str(inventory))
    assert succeeded(result), tail(result)
    assert "changed=0" in result.stdout
    assert "rescued=9" in result.stdout


# --- a second application on the same server ------------------------------------------------------------------


def deploy_app(
    tmp_path, app: str, version: str = "v1", playbook: str = "deploy.yml", **extra
) -> subprocess.CompletedProcess:
    """Deploy the demo project's `version` as application `app` with the simple deploy playbook (or `playbook`) and
    its default settings (only what every application must say: name, sources, environment, site name), on SQLite
    (a database file in a shared path). The inventory file alone, without the scenario's group_vars, which are the
    roles' settings for demo."""
    inventory = tmp_path / "inventory.yml"
    shutil.copy(INVENTORY, inventory)
    (tmp_path / "app.json").write_text(json.dumps(app_vars(tmp_path, app, version, **extra)))
    return ansible_playbook(PROJECT / "playbooks" / playbook, "-e", f"@{tmp_path / 'app.json'}", inventory=inventory)


def app_vars(tmp_path, app: str, version: str = "v1", **extra) -> dict:
    """The variables deploy_app gives application `app`."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    return {
        "greenlight_app_name": app,
        "greenlight_wsgi_application": "demo.wsgi:application",
        "greenlight_source_dir": str(ephemeral / "demo" / version),
        "greenlight_server_name": f"{app}.test",
        "greenlight_summary_file": str(tmp_path / "summary.json"),
        "greenlight_environment": {
            "DJANGO_SECRET_KEY": "molecule-only-secret-key-of-the-second-application-0123456789-abcdef",
            "DATABASE_URL": f"sqlite:////srv/{app}/shared/db/{app}.sqlite3",
            "DJANGO_ALLOWED_HOSTS": f"{app}.test,127.0.0.1,localhost",
        },
        "code_sync_shared_paths": ["media", "db", "var/uploads"],
        **extra,
    }


def notes_of(host, site: str) -> str:
    return http(host, "/notes/", site=site)[2]


def test_a_second_application_with_default_settings_serves_beside_the_first(host, tmp_path):
    result = deploy_app(tmp_path, "shop")
    assert succeeded(result), tail(result)
    # nginx answers each site from its own application: shop.test from shop's v1, the default site from demo.
    assert http(host, "/version", site="shop.test")[2].strip() == "v1"
    assert http(host, "/version")[2].strip() == "v2b"
    assert host.socket(f"unix://{socket_of('current', 'shop')}").is_listening
    assert host.service("greenlight-shop@current").is_running
    assert host.service("greenlight-demo@green").is_running
    # Each application writes its own database.
    host.check_output(
        f"curl -sf --max-time 10 -H 'Host: shop.test' -X POST -d title=sold-in-the-shop {'http://127.0.0.1/notes/new'}"
    )
    host.check_output("curl -sf --max-time 10 -X POST -d title=noted-in-the-demo http://127.0.0.1/notes/new")
    assert "sold-in-the-shop" in notes_of(host, "shop.test")
    assert "noted-in-the-demo" not in notes_of(host, "shop.test")
    assert "noted-in-the-demo" in notes_of(host, "127.0.0.1")
    assert "sold-in-the-shop" not in notes_of(host, "127.0.0.1")
    # shop's database is a SQLite file of its own, which the application user writes.
    assert host.file("/srv/shop/shared/db/shop.sqlite3").user == "shop"
    # A nested shared path is a relative link in the release, under a parent directory of root's, and the
    # application writes through it into shared/.
    release = host.check_output("readlink -f /srv/shop/current")
    assert not host.check_output(f"readlink {release}/var/uploads").startswith("/")
    assert host.check_output(f"readlink -f {release}/var/uploads") == "/srv/shop/shared/var/uploads"
    parent = host.file(f"{release}/var")
    assert (parent.user, parent.mode) == ("root", 0o755)
    assert host.run("sudo -u shop touch /srv/shop/current/var/uploads/written").rc == 0
    assert host.file("/srv/shop/shared/var/uploads/written").user == "shop"


def test_an_address_another_application_uses_is_refused_before_any_change(host, tmp_path):
    taken = f"unix:{socket_of('current', 'shop')}"
    result = deploy_app(tmp_path, "clash", greenlight_listen={"current": taken})
    assert not succeeded(result)
    text = output_of(result)
    assert f"clash would listen on {taken} (current), which application shop" in text, tail(result)
    assert "Nothing was changed" in text and "greenlight_listen" in text
    assert not host.file("/srv/clash").exists
    assert not host.file("/etc/systemd/system/greenlight-clash@.service").exists
    assert not host.file("/etc/nginx/conf.d/greenlight-clash.conf").exists
    assert not host.file("/etc/nginx/greenlight/clash").exists
    # A port another application's nginx upstream names is refused the same way.
    host.run(
        "mkdir -p /etc/nginx/greenlight/legacy && printf 'upstream x {\\n    server 127.0.0.1:8000 max_fails=0;\\n}\\n'"
        " > /etc/nginx/greenlight/legacy/upstream-current.conf"
    )
    try:
        result = deploy_app(tmp_path, "clash", greenlight_listen={"current": 8000, "blue": 8001, "green": 8002})
        assert not succeeded(result)
        assert "clash would listen on 127.0.0.1:8000 (current), which application legacy" in output_of(result), tail(
            result
        )
        assert not host.file("/srv/clash").exists
    finally:
        host.run("rm -rf /etc/nginx/greenlight/legacy")
    assert http(host, "/version", site="shop.test")[2].strip() == "v1"


def sqlite(host, app: str, query: str) -> list[str]:
    return host.check_output(f"sqlite3 /srv/{app}/shared/db/{app}.sqlite3 {shlex.quote(query)}").splitlines()


def test_the_sqlite_application_deploys_v2_as_planned_and_its_ledger_records_it(host, tmp_path):
    """Plan, review, apply on SQLite: the plan of v2 changes nothing that serves; the deploy with its id applies
    exactly the planned migrations after a backup, keeps the rows, and the ledger records each one."""
    plans = tmp_path / "plans"
    before = sqlite(host, "shop", "SELECT title FROM notes_note ORDER BY id")
    backups = host.run("ls /srv/shop/backups").stdout
    result = deploy_app(tmp_path, "shop", "v2", "plan.yml", greenlight_plan_dir=str(plans))
    assert succeeded(result), tail(result)
    written = [json.loads(path.read_text()) for path in plans.glob("shop-*.json")]
    assert len(written) == 1, written
    plan = written[0]
    assert [m["migration"] for m in plan["migrations"]] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert any('ADD COLUMN "tag"' in line for line in plan["migrations"][0]["sql"]), plan["migrations"][0]
    assert http(host, "/version", site="shop.test")[2].strip() == "v1"
    assert host.run("ls /srv/shop/backups").stdout == backups

    result = deploy_app(tmp_path, "shop", "v2", greenlight_plan_id=plan["plan_id"])
    assert succeeded(result), tail(result)
    assert http(host, "/version", site="shop.test")[2].strip() == "v2"
    report = json.loads((tmp_path / "summary.json").read_text())
    assert report["plan_id"] == plan["plan_id"] and report["release"] == plan["release"]
    assert report["migrations_applied"] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert sqlite(host, "shop", "SELECT title FROM notes_note ORDER BY id") == before
    ledger = sqlite(
        host,
        "shop",
        'SELECT app, name, event FROM greenlight_migration_ledger WHERE "release" = '
        + f"'{plan['release']}' ORDER BY id",
    )
    assert ledger == ["notes|0002_note_tag|applied", "notes|0003_backfill_tag|applied"]
    # and a backup was taken before them
    assert len(host.run("ls /srv/shop/backups").stdout.split()) == len(backups.split()) + 1

    # Another application whose name starts with shop's runs a unit of its own: it is not shop's, and shop's
    # deploy of what already serves still ends after its check, with nothing changed.
    unit = "/etc/systemd/system/greenlight-shop-api@.service"
    host.run(f"printf '[Service]\\nExecStart=/bin/sleep 600\\n' > {unit} && systemctl daemon-reload")
    try:
        assert host.run("systemctl start greenlight-shop-api@current").rc == 0
        result = deploy_app(tmp_path, "shop", "v2")
        assert succeeded(result), tail(result)
        report = json.loads((tmp_path / "summary.json").read_text())
        assert report["outcome"] == "unchanged", report
        assert host.service("greenlight-shop-api@current").is_running
    finally:
        host.run(f"systemctl stop greenlight-shop-api@current; rm -f {unit}; systemctl daemon-reload")


def test_a_deploy_refused_after_another_applications_deploy_in_the_same_run_leaves_that_release_alone(host, tmp_path):
    """One run, two plays: shop deploys a new revision, then another application's deploy is refused at its lock.
    Facts outlive a play: the refused deploy's recovery must not take shop's new release for its own."""
    source = tmp_path / "shop-v2b"
    shutil.copytree(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "demo" / "v2", source)
    (source / "REVISION-NOTE").write_text("a revision of its own\n")
    shop = {**app_vars(tmp_path, "shop"), "greenlight_source_dir": str(source)}
    held = {**app_vars(tmp_path, "held"), "greenlight_summary_file": str(tmp_path / "held-summary.json")}
    playbook = tmp_path / "two_applications.yml"
    deploy = str(PROJECT / "playbooks" / "deploy.yml")
    playbook.write_text(
        json.dumps(
            [
                {"ansible.builtin.import_playbook": deploy, "vars": shop},
                {"ansible.builtin.import_playbook": deploy, "vars": held},
            ]
        )
    )
    inventory = tmp_path / "inventory.yml"
    shutil.copy(INVENTORY, inventory)
    holder = json.dumps({"holder": "someone@elsewhere", "playbook": "deploy"})
    host.run(f"mkdir -p /srv/held/deploy.lock && echo {shlex.quote(holder)} > /srv/held/deploy.lock/holder.json")
    try:
        result = ansible_playbook(playbook, inventory=inventory)
        assert not succeeded(result)
        assert "Another deploy of held holds the lock" in output_of(result), tail(result)
        report = json.loads((tmp_path / "summary.json").read_text())
        assert report["outcome"] == "deployed", report
        # shop's new release was left alone: it exists and serves.
        assert host.check_output("readlink -f /srv/shop/current") == f"/srv/shop/releases/{report['release']}"
        assert host.file(f"/srv/shop/releases/{report['release']}/manage.py").exists
        assert http(host, "/version", site="shop.test")[2].strip() == "v2"
        assert json.loads((tmp_path / "held-summary.json").read_text())["outcome"] == "refused"
    finally:
        host.run("rm -rf /srv/held")
