"""The blue-green playbook and the rollback, checked the way a user sees them.

Tests run in file order and build on each other: v1 (converge) serves from
blue; v2 goes out with the deploy's strategy auto under constant load with
keep-alive, without a window, and not one request fails; rollback brings v1
back; v2 again; v4 is refused by name with nothing changed; v6 renames a
column with expand before the switch and contract after it, under load; v7
drops a column v6 reads, so strategy auto takes a downtime window for it:
first a failure inside the window is recovered, then it goes out.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
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
LOAD = "/var/lib/greenlight-tests/load"
RATE = 60  # requests per second, two keep-alive connections


def served_version(host) -> str:
    return host.check_output("curl -s --max-time 5 http://127.0.0.1/version").strip()


def active_colour(host) -> str:
    return host.check_output("readlink /etc/nginx/greenlight/demo/active.conf").rsplit("-", 1)[-1].removesuffix(".conf")


def data_checksum(host) -> str:
    rows = host.check_output(
        f"{PSQL} \"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM notes_note t\""
    )
    applied = host.check_output(
        f"{PSQL} \"SELECT string_agg(app || '.' || name, ',' ORDER BY id) FROM django_migrations\""
    )
    return f"{rows}/{applied}"


def under_load(host, run):
    """Run `run()` while the container loads nginx at RATE req/s; return (result, load report)."""
    script = (Path(__file__).parent / "load.py").read_bytes()
    encoded = base64.b64encode(script).decode()
    host.check_output(f"mkdir -p {LOAD} && echo {encoded} | base64 -d > {LOAD}/load.py && rm -f {LOAD}/*.json*")
    host.check_output(f"nohup python3 {LOAD}/load.py {RATE} 600 {LOAD}/report.json > {LOAD}/load.log 2>&1 &")
    host.run("sleep 2")
    try:
        result = run()
    finally:
        host.run(f"sleep 2; touch {LOAD}/report.json.stop")
        host.run(f"for i in $(seq 1 30); do [ -s {LOAD}/report.json ] && break; sleep 1; done")
    report = json.loads(host.file(f"{LOAD}/report.json").content_string)
    print(f"load: {json.dumps({k: v for k, v in report.items() if k != 'errors'})} errors={report['errors'][:5]}")
    return result, report


def queuing_tasks(host, run):
    """Run `run()` while the container queues a task every 0.2 s through Redis (produce.py, with the serving
    release's Celery); return (result, number of tasks sent). The producer goes on 3 s after `run()`."""
    script = base64.b64encode((Path(__file__).parent / "produce.py").read_bytes()).decode()
    colour = active_colour(host)
    host.check_output(f"mkdir -p {LOAD} && echo {script} | base64 -d > {LOAD}/produce.py && rm -f {LOAD}/sent*")
    host.check_output(
        f"cd {APP}/{colour} && set -a && . {APP}/shared/.env && set +a && PYTHONDONTWRITEBYTECODE=1 "
        f"nohup .venv/bin/python {LOAD}/produce.py {LOAD}/sent 600 > {LOAD}/produce.log 2>&1 &"
    )
    host.run(f"for i in $(seq 1 20); do [ -s {LOAD}/sent ] && break; sleep 0.5; done")
    try:
        result = run()
    finally:
        host.run(f"sleep 3; touch {LOAD}/sent.stop; sleep 1")
    sent = int(host.file(f"{LOAD}/sent").content_string or 0)
    return result, sent


def task_runs(host) -> dict[str, list[str]]:
    """For each key the producer sent: the versions of the code that ran its task, once per run."""
    rows = host.check_output(f"{PSQL} \"SELECT title, body FROM notes_note WHERE title LIKE 'across-%' ORDER BY id\"")
    runs: dict[str, list[str]] = {}
    for row in rows.splitlines():
        key, _bar, version = row.partition("|")
        runs.setdefault(key, []).append(version)
    return runs


def assert_each_task_ran_once(host, sent: int) -> dict[str, list[str]]:
    """Every task sent ran (bounded wait for the queue to drain), and none ran twice."""
    deadline = time.monotonic() + 60
    runs = task_runs(host)
    while len(runs) < sent and time.monotonic() < deadline:
        time.sleep(1)
        runs = task_runs(host)
    time.sleep(2)  # a task run twice would show up now
    runs = task_runs(host)
    assert sorted(runs, key=lambda key: int(key.split("-")[1])) == [f"across-{n}" for n in range(sent)], (
        f"{sent} sent; missing: {sorted(set(f'across-{n}' for n in range(sent)) - set(runs))[:10]}"
    )
    twice = {key: versions for key, versions in runs.items() if len(versions) > 1}
    assert not twice, twice
    return runs


def assert_no_failed_request(report: dict) -> None:
    """Every request answered 200, and the load spanned the switch: both the old and the new release answered
    a good number of requests. (The rate the container reaches depends on what else uses the cores, so it is
    printed, not asserted; bench/bench_blue_green.py measures the switch at a fixed rate.)"""
    assert report["requests"] > 0
    assert report["failed"] == 0, report["errors"]
    assert report["ok"] == report["requests"]
    answered = sorted(report["bodies"].values())
    assert len(answered) == 2 and answered[0] >= 20, report


def stylesheet(host) -> str:
    """The URL of the stylesheet the home page names: with DJANGO_STATIC_MANIFEST, a hashed name of its content."""
    page = host.check_output("curl -s --max-time 5 http://127.0.0.1/")
    match = re.search(r'<link rel="stylesheet" href="(/static/notes/site\.[0-9a-f]{12}\.css)">', page)
    assert match, page
    return match.group(1)


def fetch(host, url: str) -> tuple[str, str]:
    """(status, body) of a GET from inside the container."""
    result = host.run(f"curl -s --max-time 5 -w '\\n%{{http_code}}' http://127.0.0.1{url}")
    body, _newline, status = result.stdout.rpartition("\n")
    return status, body


# The stylesheet v1's pages name, remembered by the first test for the ones after the switch.
V1_STYLESHEET: list[str] = []
V1_CSS = "/* demo v1 */\nbody { font-family: sans-serif; margin: 2rem; }\n"


def upstream_servers(host, colour: str) -> list[str]:
    conf = host.file(f"/etc/nginx/greenlight/demo/upstream-{colour}.conf").content_string
    return [line.split()[1] for line in conf.splitlines() if line.strip().startswith("server ")]


def test_v1_serves_from_blue(host):
    assert served_version(host) == "v1"
    assert active_colour(host) == "blue"
    assert host.service("greenlight-demo@blue").is_running
    # The idempotence step converged v1 again: that deploy ended after its check, with nothing to do.
    report = summary()
    assert report["outcome"] == "unchanged" and report["serving"] == "blue", report
    # converge used the ports of earlier versions
    assert host.socket("tcp://127.0.0.1:8001").is_listening
    assert upstream_servers(host, "blue") == ["127.0.0.1:8001"]
    # ASGI: the async view sees an ASGI request, from gunicorn with uvicorn's worker class.
    assert fetch(host, "/served-by") == ("200", "asgi v1\n")
    assert (
        "--worker-class uvicorn_worker.UvicornWorker"
        in host.file("/etc/systemd/system/greenlight-demo@.service").content_string
    )
    V1_STYLESHEET.append(stylesheet(host))
    assert fetch(host, V1_STYLESHEET[0]) == ("200", V1_CSS)


def test_v2_with_strategy_auto_switches_to_green_without_a_window_or_a_failed_request(host, capsys):
    # Also the upgrade of a server deployed on ports: v2 goes out with the default settings, unix sockets.
    (result, report), sent = queuing_tasks(
        host, lambda: under_load(host, lambda: demo_playbook("deploy.yml", "v2", "-e", "greenlight_strategy=auto"))
    )
    assert result.returncode == 0, out(result)
    # Tasks queued all through the switch ran exactly once each: the old colour's worker ran those it took
    # before it drained, the new colour's worker the rest.
    runs = assert_each_task_ran_once(host, sent)
    with capsys.disabled():  # the numbers go to the scenario's log, also when the test passes
        print(
            f"\nv1 -> v2 under load: {report['requests']} requests, {report['failed']} failed; {sent} tasks queued "
            f"across the switch, {len(runs)} run, {sum(len(v) > 1 for v in runs.values())} run twice, by "
            f"{sorted(set(sum(runs.values(), [])))}"
        )
    assert {versions[0] for versions in runs.values()} == {"v1", "v2"}
    assert summary()["strategy"] == ("no downtime window: the serving release survives every pending migration"), (
        summary()
    )
    assert float(summary()["downtime_window_seconds"]) == 0
    assert_no_failed_request(report)
    assert set(report["bodies"]) <= {"ok v1", "ok v2"} and "ok v2" in report["bodies"]
    assert served_version(host) == "v2"
    assert active_colour(host) == "green"
    assert not host.service("greenlight-demo@blue").is_running
    assert host.socket("unix:///run/greenlight-demo/green.sock").is_listening
    assert not host.socket("tcp://127.0.0.1:8001").is_listening
    assert upstream_servers(host, "green") == ["unix:/run/greenlight-demo/green.sock"]
    assert upstream_servers(host, "blue") == ["unix:/run/greenlight-demo/blue.sock"]
    assert summary()["migrations_applied"] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert fetch(host, "/served-by") == ("200", "asgi v2\n")


def test_a_page_v1_rendered_still_gets_its_stylesheet_after_the_switch_to_v2(host):
    """Asset bridging: v2's stylesheet has another hash; v1's hashed file is not in v2's release, and nginx
    serves it from the static bridge (shared/static-bridge) with v1's content."""
    assert served_version(host) == "v2"
    v2 = stylesheet(host)
    assert v2 != V1_STYLESHEET[0]
    status, body = fetch(host, v2)
    assert status == "200" and body.startswith("/* demo v2 */"), (status, body)
    assert not host.file(f"{APP}/green/static{V1_STYLESHEET[0].removeprefix('/static')}").exists
    assert fetch(host, V1_STYLESHEET[0]) == ("200", V1_CSS)
    assert fetch(host, "/static/notes/site.000000000000.css")[0] == "404"


def test_rollback_brings_v1_back(host):
    result = demo_playbook("rollback.yml", "v1")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v1"
    assert active_colour(host) == "blue"
    report = summary()
    assert report["outcome"] == "rolled back" and report["database"] == "schema kept"


def test_rollback_to_a_release_that_does_not_exist_is_refused(host):
    result = demo_playbook("rollback.yml", "v1", "-e", "greenlight_rollback_to=20000101T000000Z-000000000000")
    assert result.returncode != 0
    assert "does not exist" in out(result) and "Releases there" in out(result)
    assert served_version(host) == "v1"


def test_rollback_to_a_release_whose_build_never_finished_is_refused(host):
    """A release directory without its REVISION (a build that stopped half way) is not one to serve."""
    incomplete = "20000101T000000Z-0123456789ab"
    host.run(f"mkdir -p {APP}/releases/{incomplete}/.venv/bin")
    try:
        result = demo_playbook("rollback.yml", "v1", "-e", f"greenlight_rollback_to={incomplete}")
        assert result.returncode != 0
        assert f"Release {incomplete} on" in out(result) and "is incomplete" in out(result)
        assert served_version(host) == "v1"
        assert active_colour(host) == "blue"
    finally:
        host.run(f"rm -rf {APP}/releases/{incomplete}")


def test_v2_again_reuses_its_release(host):
    releases = host.check_output(f"ls {APP}/releases")
    result = demo_playbook("deploy_blue_green.yml", "v2")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    assert host.check_output(f"ls {APP}/releases") == releases


def test_v4_is_refused_by_name_with_nothing_changed(host):
    before = data_checksum(host)
    colour = active_colour(host)
    result = demo_playbook("deploy_blue_green.yml", "v4")
    assert result.returncode != 0
    text = out(result)
    assert "RemoveField" in text or "Remove field body" in text, text
    assert "RenameField" in text or "Rename field" in text, text
    assert "after_switch" in text, text
    assert data_checksum(host) == before
    assert active_colour(host) == colour
    assert served_version(host) == "v2"
    assert summary()["outcome"] == "refused"


def test_v6_renames_a_column_with_expand_and_contract_under_load(host):
    host.check_output("curl -sf -X POST -d title=written-by-v2 http://127.0.0.1/notes/new")
    # Planned and reviewed first: the plan of a blue-green deploy has no window, and the deploy applies it.
    plans = EPHEMERAL / "plans"
    result = demo_playbook(
        "plan.yml", "v6", "-e", json.dumps({"greenlight_strategy": "blue_green", "greenlight_plan_dir": str(plans)})
    )
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    [plan] = [json.loads(path.read_text()) for path in plans.glob("demo-*.json")]
    assert plan["strategy"] == "blue_green" and plan["window"]["downtime"] is False, plan
    assert "notes.0004_note_headline" in [m["migration"] for m in plan["migrations"]], plan["migrations"]
    approved = json.dumps({"greenlight_plan_id": plan["plan_id"]})
    result, report = under_load(host, lambda: demo_playbook("deploy_blue_green.yml", "v6", "-e", approved))
    assert result.returncode == 0, out(result)
    assert summary()["plan_id"] == plan["plan_id"] and summary()["release"] == plan["release"]
    assert_no_failed_request(report)
    assert served_version(host) == "v6"
    applied = summary()["migrations_applied"]
    assert applied[-1] == "notes.0006_remove_note_title", applied
    columns = host.check_output(
        f"{PSQL} \"SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns"
        " WHERE table_name = 'notes_note'\""
    ).split(",")
    assert "title" not in columns and "headline" in columns
    assert host.check_output(f"{PSQL} \"SELECT count(*) FROM notes_note WHERE headline = 'written-by-v2'\"") == "1"


def column_names(host) -> list[str]:
    return host.check_output(
        f"{PSQL} \"SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns"
        " WHERE table_name = 'notes_note'\""
    ).split(",")


def test_v7_failing_inside_its_window_is_recovered(host):
    """v7 drops body, which v6 reads: auto opens a window. A failure after migrate restores the database and
    v6 serves again from its colour."""
    before, colour = data_checksum(host), active_colour(host)
    hook = EPHEMERAL / "fail_after_migrate.yml"
    hook.write_text(
        "- name: Fail after migrate\n  ansible.builtin.fail:\n    msg: the after_migrate hook fails on purpose\n"
    )
    result = demo_playbook(
        "deploy.yml",
        "v7",
        "-e",
        "greenlight_strategy=auto",
        "-e",
        json.dumps({"greenlight_hooks": {"after_migrate": str(hook)}}),
    )
    assert result.returncode != 0, out(result)
    report = summary()
    assert report["outcome"] == "failed", report
    assert report["strategy"].startswith("downtime window: "), report
    assert "notes.0007_remove_note_body" in report["strategy"], report
    assert any(step.startswith("database restored from ") for step in report["recovery"]), report
    assert data_checksum(host) == before
    assert "body" in column_names(host)
    assert active_colour(host) == colour
    assert served_version(host) == "v6"
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/healthz") == "200"


def test_v7_with_strategy_auto_takes_a_downtime_window_for_the_drop(host):
    colour = active_colour(host)
    notes = host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note"')
    result = demo_playbook("deploy.yml", "v7", "-e", "greenlight_strategy=auto")
    assert result.returncode == 0, out(result)
    report = summary()
    assert report["strategy"].startswith("downtime window: the serving release "), report
    assert "does not survive notes.0007_remove_note_body" in report["strategy"], report
    assert float(report["downtime_window_seconds"]) > 0, report
    assert report["migrations_applied"] == ["notes.0007_remove_note_body"], report
    assert served_version(host) == "v7"
    assert active_colour(host) != colour
    assert not host.service(f"greenlight-demo@{colour}").is_running
    assert "body" not in column_names(host)
    assert host.check_output(f'{PSQL} "SELECT count(*) FROM notes_note"') == notes


def test_the_static_files_of_a_removed_release_are_gone_from_the_bridge(host):
    """Once v1's release is removed (a re-deploy of v7 that keeps one release beside the two colours), the files
    only v1 had go from the bridge: its stylesheet answers 404; the serving release's still 200."""
    result = demo_playbook("deploy.yml", "v7", "-e", "greenlight_strategy=auto", "-e", "code_sync_keep_releases=1")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v7"
    assert fetch(host, V1_STYLESHEET[0])[0] == "404"
    assert fetch(host, stylesheet(host))[0] == "200"
    bridge = host.check_output(f"find {APP}/shared/static-bridge/notes -type f -printf '%f\\n' | sort").split()
    kept = host.check_output(f"find {APP}/releases/*/static/notes -type f -printf '%f\\n' | sort -u").split()
    assert bridge == kept, (bridge, kept)


# systemd's own journal messages of a unit's start job done and of its stop (or failure), with which a unit's
# running time is bounded: its process is forked after its start job began and is gone when "Stopped" is logged.
STARTED, STOPPED, FAILED = (
    "39f53479d3a045ac8e11786248231fbf",
    "9d1aaa27d60140bd96365438aad20286",
    "be02cf6855d2428ba40df7e9d022f03d",
)


def test_beat_a_singleton_never_ran_in_both_colours_at_once(host):
    """Through every switch above (auto, rollback, forward, expand/contract, a window failed and recovered, a
    window), the beat of one colour started only after the other colour's had stopped."""
    units = [f"greenlight-demo-beat-1@{colour}.service" for colour in ("blue", "green")]
    raw = host.check_output(f"journalctl -o json --no-pager UNIT={units[0]} UNIT={units[1]}")
    events = sorted(
        (int(entry["__MONOTONIC_TIMESTAMP"]), entry["MESSAGE_ID"], entry["UNIT"])
        for entry in map(json.loads, raw.splitlines())
        if entry.get("MESSAGE_ID") in (STARTED, STOPPED, FAILED)
    )
    running: set[str] = set()
    starts = {unit: 0 for unit in units}
    for _when, message, unit in events:
        if message == STARTED:
            assert not running - {unit}, f"{unit} started while {running} ran: {events}"
            running.add(unit)
            starts[unit] += 1
        else:
            running.discard(unit)
    assert all(count >= 2 for count in starts.values()), starts  # the check saw switches both ways
    serving = active_colour(host)
    assert running == {f"greenlight-demo-beat-1@{serving}.service"}
    assert host.service(f"greenlight-demo-worker-1@{serving}").is_running
    idle = "blue" if serving == "green" else "green"
    assert not host.service(f"greenlight-demo-worker-1@{idle}").is_running
