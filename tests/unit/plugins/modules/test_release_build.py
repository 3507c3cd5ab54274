"""greenlight.django.release_build: runs in-process on an application tree made in a temporary directory.

Django is stood in for by a manage wrapper of the test's own (a shell script): it records how it was called,
fills STATIC_ROOT on collectstatic, prints check messages, and fails when told to.
"""

import os
import stat

import pytest
from ansible_collections.greenlight.django.plugins.modules import release_build
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)

RELEASE = "20260101T120000Z-3f2a1c9d8e7b"
REVISION = "3f2a1c9d8e7b" + "0" * 28

MANAGE = """#!/bin/sh
root=$(dirname "$(dirname "$0")")
echo "$*" >> "$root/calls"
[ "$1" = --as-root ] && shift
release=$1; shift
case "$1" in
  collectstatic)
    [ -e "$root/fail-collectstatic" ] && { echo "ImproperlyConfigured: settings broken on purpose" >&2; exit 1; }
    mkdir -p "$release/static/css" && echo "body{}" > "$release/static/css/site.css" ;;
  check)
    echo "System check identified some issues:" >&2
    echo "?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting." >&2
    echo "System check identified 1 issue (0 silenced)." ;;
  compilemessages) [ -e "$root/fail-compilemessages" ] && { echo "no msgfmt" >&2; exit 3; } ;;
esac
exit 0
"""


def run(args):
    with set_module_args(args), patched_exits():
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            release_build.main()
    return raised.value.result


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "mysite"
    home = root / "releases" / RELEASE
    (home / ".venv").mkdir(parents=True)
    (home / "media").mkdir()
    (home / "media" / "shipped.txt").write_text("shipped with the code\n")
    (root / "shared" / "media").mkdir(parents=True)
    (root / "shared" / "var" / "uploads").mkdir(parents=True)
    (root / "bin").mkdir()
    manage = root / "bin" / "manage"
    manage.write_text(MANAGE)
    manage.chmod(0o755)
    return root


def args(app, **more):
    return dict({"app_root": str(app), "release": RELEASE, "revision": [REVISION, ""]}, **more)


def calls(app):
    return (app / "calls").read_text().splitlines()


def test_a_release_is_finished_in_order_and_marked_complete_last(app):
    home = app / "releases" / RELEASE
    result = run(
        args(
            app,
            revision=[REVISION, "build 0123456789abcdef"],
            settings_module="mysite.settings",
            pythonpath=["src/"],
            shared_paths=["media", "var/uploads"],
            commands=["compilemessages --ignore venv"],
        )
    )
    assert result["changed"] is True
    assert result["steps"] == [
        release_build.DJANGO_ENV,
        release_build.LINK,
        release_build.COLLECT,
        release_build.BRIDGE,
        release_build.COMMANDS,
        release_build.CHECK,
        release_build.MARK,
    ]
    assert (home / ".venv" / "greenlight-django.env").read_text() == (
        f"DJANGO_SETTINGS_MODULE=mysite.settings\nPYTHONPATH={home}/src\n"
    )
    # What the code shipped at a shared path is gone; the links are relative and land in shared/.
    for path in ("media", "var/uploads"):
        link = home / path
        assert not os.path.isabs(os.readlink(link)), f"{path}: the link must be relative"
        assert os.path.realpath(link) == str(app / "shared" / path)
    assert stat.S_IMODE((home / "var").stat().st_mode) == 0o755
    assert not (app / "shared" / "media" / "shipped.txt").exists()
    # Static files as root, the checks as the application user (no --as-root), the build command split.
    assert calls(app) == [
        f"--as-root {home} collectstatic --noinput",
        f"--as-root {home} compilemessages --ignore venv",
        f"{home} check --deploy --fail-level ERROR",
    ]
    assert (app / "shared" / "static-bridge" / "css" / "site.css").exists()
    assert result["static_bridge"] == {"placed": 1, "removed": 0}
    assert result["check_warnings"] == [
        "?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting."
    ]
    assert (home / "REVISION").read_text() == f"{REVISION}\nbuild 0123456789abcdef\n"
    assert not (home / "REVISION.new").exists()


def test_without_settings_and_steps_turned_off_only_the_mark_is_written(app):
    home = app / "releases" / RELEASE
    result = run(args(app, collectstatic=False, check_deploy=False))
    assert result["steps"] == [release_build.MARK]
    assert not (home / ".venv" / "greenlight-django.env").exists()
    assert not (app / "calls").exists()
    assert (home / "REVISION").read_text() == f"{REVISION}\n"


def test_a_failing_step_is_named_with_its_command_and_output_and_the_release_is_not_marked(app):
    (app / "fail-collectstatic").write_text("")
    home = app / "releases" / RELEASE
    result = run(args(app, shared_paths=["media"]))
    assert result["failed"] is True
    assert result["step"] == release_build.COLLECT
    assert result["command"] == f"{app}/bin/manage --as-root {home} collectstatic --noinput"
    assert result["rc"] == 1
    assert "settings broken on purpose" in result["stderr"]
    assert result["steps"] == [release_build.LINK, release_build.COLLECT]
    assert not (home / "REVISION").exists()
    assert len(calls(app)) == 1, "nothing after the failed step runs"


def test_a_failing_build_command_names_that_command(app):
    (app / "fail-compilemessages").write_text("")
    result = run(args(app, commands=["compilemessages", "compress"]))
    assert result["step"] == release_build.COMMANDS
    assert result["command"].endswith(" compilemessages")
    assert result["rc"] == 3
    assert not (app / "releases" / RELEASE / "REVISION").exists()


def test_a_release_that_is_not_there_is_refused(app):
    result = run(dict(args(app), release="20260101T120000Z-nothere"))
    assert result["failed"] is True
    assert "does not exist" in result["msg"] and "ship the code" in result["msg"]


@pytest.mark.parametrize("path", ["media", "var/uploads", "a/b/c"])
def test_link_targets_are_relative_to_the_link_and_land_in_shared(path):
    # A link at <app_root>/releases/<id>/<path> resolves to <app_root>/shared/<path>.
    target = release_build.link_target(path)
    assert not os.path.isabs(target)
    link_dir = os.path.dirname(os.path.join("/srv/mysite/releases", RELEASE, path))
    assert os.path.normpath(os.path.join(link_dir, target)) == os.path.join("/srv/mysite/shared", path)
