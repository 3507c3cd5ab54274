"""The first deploy of the blue-green application, twice at once; then the secrets.

Two deploys of demo_bg start together, both with -vvv, while every command
line in the container is sampled: exactly one proceeds (a first deploy that
backs up and migrates, so the inspection, pg_dump and the migrate all
run), the other fails at once naming the holder of the lock. No
secret shows in either output nor on any command line. Then the files on the
server and on the controller, the backups, and what the application user may
write.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

import pytest
from faults_lib import (
    BLUE_GREEN,
    SECRETS,
    SIMPLE,
    Background,
    ProcessSampler,
    Run,
    active_colour,
    command,
    leaks,
    serves,
    sh,
)

# Where a secret could be left lying on the server (not /proc, /sys, /usr).
SEARCHED = "/srv /etc /tmp /var /root /home /opt /run"


@pytest.fixture(scope="module")
def first_deploys() -> tuple[list[Run], str]:
    """Both runs, and the command lines sampled meanwhile."""
    sampler = ProcessSampler()
    try:
        started = [Background(command(BLUE_GREEN, "v1", verbosity=3)) for _run in range(2)]
        runs = [background.wait() for background in started]
    finally:
        samples = sampler.stop()
    return runs, samples


def test_two_deploys_started_together_one_proceeds_the_other_fails_at_once_naming_the_holder(first_deploys):
    runs, _samples = first_deploys
    winners = [result for result in runs if result.rc == 0]
    losers = [result for result in runs if result.rc != 0]
    assert len(winners) == 1 and len(losers) == 1, runs
    (winner,), (loser,) = winners, losers
    print(f"the deploy that proceeded: {winner.seconds:.1f} s; the one refused: {loser.seconds:.1f} s")
    assert "holds the lock" in loser.output and "unknown holder" not in loser.output, loser
    # The holder is named: user@controller, its playbook and since when.
    assert re.search(r"since 20\S+ \(held by \S+@\S+, playbook \"Deploy a Django release", loser.output), loser
    assert "-e greenlight_lock_break=true" in loser.output
    # It failed at once, at the lock, and did nothing else.
    assert loser.seconds < winner.seconds / 2
    assert "Prepare the new release" not in loser.output
    assert serves(BLUE_GREEN) == "v1"
    assert active_colour(BLUE_GREEN) == "blue"
    assert sh("test -e /srv/demo_bg/deploy.lock && echo held || echo free") == "free"


def test_the_first_deploy_shows_no_secret_in_vvv_output_or_any_command_line(first_deploys):
    runs, samples = first_deploys
    # The sampler saw the work that handles the secrets: pg_dump (started by db_backup) and the migrate.
    assert "pg_dump --format=custom" in samples
    assert "- greenlight-migrate demo" in samples
    for result in runs:
        print(f"rc={result.rc}: {len(result.output)} characters of -vvv output in {result.log}")
        assert leaks(result.output) == []
    assert leaks(samples) == []


def test_the_deploy_summary_holds_no_secret_and_only_its_owner_may_read_it():
    for app in (SIMPLE, BLUE_GREEN):
        text = app.summary_file.read_text()
        assert leaks(text) == [], app.summary_file
        assert stat.S_IMODE(app.summary_file.stat().st_mode) == 0o600


def test_no_file_others_may_read_holds_a_secret_on_the_server():
    patterns = " ".join(f"-e {secret}" for secret in SECRETS)
    holders = sh(f"grep -rlsF {patterns} {SEARCHED} || true").splitlines()
    # The environment file holds them by design: root's, 0600.
    assert "/srv/demo/shared/.env" in holders and "/srv/demo_bg/shared/.env" in holders
    readable = sh("for f in " + " ".join(holders) + "; do stat -c '%a %U %n' \"$f\"; done").splitlines()
    for line in readable:
        mode, owner, path = line.split(" ", 2)
        assert owner == "root" and int(mode, 8) & 0o077 == 0, f"{path} is {mode} {owner} and holds a secret"


def test_the_controller_keeps_no_secret_in_its_cache():
    cache = Path.home() / ".cache" / "greenlight.django"
    contents = {}
    # Another run may be building a wheelhouse beside this one: what vanishes while it is read was temporary.
    for directory, _subdirectories, names in os.walk(cache):
        for name in names:
            file = Path(directory) / name
            with contextlib.suppress(FileNotFoundError):
                if file.stat().st_size < 50_000_000:
                    contents[file] = file.read_bytes().decode("utf-8", "replace")
    assert contents, "the wheelhouse should be cached on the controller"
    for file, text in contents.items():
        assert leaks(text) == [], file


def test_backups_are_root_only():
    listing = sh("stat -c '%a %U %n' /srv/demo/backups /srv/demo_bg/backups /srv/demo/backups/* /srv/demo_bg/backups/*")
    lines = listing.splitlines()
    assert len(lines) >= 4, listing
    for line in lines:
        mode, owner, path = line.split(" ", 2)
        expected = "700" if path.endswith("/backups") else "600"
        assert (mode, owner) == (expected, "root"), line


def test_the_app_user_cannot_write_its_code_its_units_or_its_environment():
    release = sh("readlink -f /srv/demo/current")
    for target in [
        f"{release}/manage.py",
        f"{release}/demo/settings.py",
        f"{release}/.venv/bin/python",
        "/srv/demo/bin/manage",
        "/srv/demo/shared/.env",
        "/etc/systemd/system/greenlight-demo@.service",
        "/etc/nginx/conf.d/greenlight-demo.conf",
    ]:
        assert sh(f"sudo -u demo sh -c 'echo x >> {target}' 2>/dev/null && echo wrote || echo refused") == "refused", (
            f"the app user could write {target}"
        )
    for directory in [release, "/srv/demo", "/srv/demo/releases", "/etc/systemd/system"]:
        assert sh(f"sudo -u demo touch {directory}/intruder 2>/dev/null && echo wrote || echo refused") == "refused"
    assert sh("sudo -u demo cat /srv/demo/shared/.env >/dev/null 2>&1 && echo read || echo refused") == "refused"
    # ... while the application still writes what it owns (uploads).
    upload = "/srv/demo/shared/media/upload-check"
    assert sh(f"sudo -u demo touch {upload} && echo wrote; rm -f {upload}") == "wrote"
