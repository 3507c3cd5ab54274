"""greenlight.django.release_info: runs in-process on an application tree made in a temporary directory."""

import os

import pytest
from ansible_collections.greenlight.django.plugins.modules import release_info
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)

REV_A = "a" * 40
REV_B = "b" * 40


def run(args, check=False):
    args = dict(args, _ansible_check_mode=check)
    with set_module_args(args), patched_exits():
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            release_info.main()
    return raised.value.result


def release(root, release_id, revision=None, build="", wheelhouse=None):
    home = root / "releases" / release_id
    (home / ".venv").mkdir(parents=True)
    if revision is not None:
        (home / "REVISION").write_text(revision + "\n" + (build + "\n" if build else ""))
    if wheelhouse:
        (home / ".venv" / "wheelhouse").write_text(wheelhouse + "\n")
    return home


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "srv" / "mysite"
    release(root, "20260101T100000Z-aaaaaaaaaaaa", REV_A, wheelhouse="w1-cp311")
    release(root, "20260102T100000Z-aaaaaaaaaaaa", REV_A, build="build 0123456789abcdef")
    release(root, "20260103T100000Z-bbbbbbbbbbbb", REV_B)
    release(root, "20260104T100000Z-bbbbbbbbbbbb")  # being built, or failed: no REVISION
    os.symlink("releases/20260103T100000Z-bbbbbbbbbbbb", root / "current")
    os.symlink("releases/20260101T100000Z-aaaaaaaaaaaa/", root / "blue")
    (root / "green").write_text("not a link\n")
    (root / "releases" / "stray-file").write_text("")
    return root


def test_lists_releases_pointers_and_what_references_what(app):
    result = run({"app_root": str(app)})
    assert result["changed"] is False and result["exists"] is True
    assert result["pointers"] == {"current": "20260103T100000Z-bbbbbbbbbbbb", "blue": "20260101T100000Z-aaaaaaaaaaaa"}
    assert [r["id"] for r in result["releases"]] == [
        "20260101T100000Z-aaaaaaaaaaaa",
        "20260102T100000Z-aaaaaaaaaaaa",
        "20260103T100000Z-bbbbbbbbbbbb",
        "20260104T100000Z-bbbbbbbbbbbb",
    ]
    first, second, third, fourth = result["releases"]
    assert first == {
        "id": "20260101T100000Z-aaaaaaaaaaaa",
        "complete": True,
        "revision": REV_A,
        "build": "",
        "wheelhouse": "w1-cp311",
        "referenced_by": ["blue"],
    }
    assert second["build"] == "build 0123456789abcdef" and second["referenced_by"] == []
    assert third["referenced_by"] == ["current"]
    assert fourth["complete"] is False and fourth["revision"] == ""
    assert result["matching"] == [] and result["active"] == ""


@pytest.mark.parametrize(
    ("revision", "build", "matching"),
    [
        (REV_A, "", ["20260101T100000Z-aaaaaaaaaaaa"]),
        (REV_A, "build 0123456789abcdef", ["20260102T100000Z-aaaaaaaaaaaa"]),
        (REV_B, "", ["20260103T100000Z-bbbbbbbbbbbb"]),  # the incomplete one of REV_B does not count
        ("c" * 40, "", []),
        (REV_A[:12], "", []),  # a whole line, not a prefix
    ],
)
def test_matching_releases_of_a_revision_built_the_same_way(app, revision, build, matching):
    result = run({"app_root": str(app), "revision": revision, "build": build})
    assert result["matching"] == matching


def test_active_colour_from_nginx(app, tmp_path):
    conf = tmp_path / "nginx"
    conf.mkdir()
    assert run({"app_root": str(app), "nginx_conf_dir": str(conf)})["active"] == ""
    os.symlink(str(conf / "upstream-blue.conf"), conf / "active.conf")
    assert run({"app_root": str(app), "nginx_conf_dir": str(conf)})["active"] == "blue"


def test_the_maintenance_page_and_its_flag(app, tmp_path):
    conf = tmp_path / "nginx"
    conf.mkdir()
    result = run({"app_root": str(app), "nginx_conf_dir": str(conf)})
    assert result["maintenance_flag"] == str(conf / "maintenance.on") and result["maintenance"] is False
    (conf / "maintenance.on").write_text("on\n")
    assert run({"app_root": str(app), "nginx_conf_dir": str(conf)})["maintenance"] is True
    assert run({"app_root": str(app)})["maintenance_flag"] == ""


def test_a_missing_application_root_is_not_an_error(tmp_path):
    result = run({"app_root": str(tmp_path / "nope"), "revision": REV_A}, check=True)
    assert result == {
        "changed": False,
        "exists": False,
        "pointers": {},
        "releases": [],
        "wheelhouses": [],
        "matching": [],
        "active": "",
        "maintenance_flag": "",
        "maintenance": False,
    }


def test_an_unreadable_root_names_it_and_the_fix(app, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(release_info.os, "scandir", denied)
    result = run({"app_root": str(app)})
    assert result["failed"] is True
    assert result["msg"] == (
        f"release_info: cannot read {app / 'releases'}: Permission denied. Run it as a user who can read the "
        "application's root (become: true)."
    )


def test_only_wheelhouses_unpacked_whole_are_listed(app):
    # One unpacked whole (its .installed mark), one whose unpacking was cut short, and a stray file.
    (app / "wheels" / "w1-cp311").mkdir(parents=True)
    (app / "wheels" / "w1-cp311" / ".installed").write_text("")
    (app / "wheels" / "w2-cp313").mkdir()
    (app / "wheels" / "notes.txt").write_text("")
    assert run({"app_root": str(app)})["wheelhouses"] == ["w1-cp311"]
