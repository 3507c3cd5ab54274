"""greenlight.django.release: runs in-process on an application tree made in a temporary directory."""

import os

import pytest
from ansible_collections.greenlight.django.plugins.modules import release
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)

R1, R2, R3, R4 = (f"2026010{n}T100000Z-{n * 12}" for n in range(1, 5))


def run(args, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with set_module_args(args), patched_exits():
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            release.main()
    return raised.value.result


def make(root, release_id, complete=True, wheelhouse=None):
    home = root / "releases" / release_id
    (home / ".venv").mkdir(parents=True)
    if complete:
        (home / "REVISION").write_text("a" * 40 + "\n")
    if wheelhouse:
        (home / ".venv" / "wheelhouse").write_text(wheelhouse + "\n")
        (root / "wheels" / wheelhouse).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "mysite"
    make(root, R1, wheelhouse="w-old")
    make(root, R2, wheelhouse="w-old")
    make(root, R3, wheelhouse="w-new")
    make(root, R4, complete=False)
    (root / "wheels" / "w-orphan").mkdir()
    os.symlink(f"releases/{R1}", root / "blue")
    os.symlink(f"releases/{R3}", root / "current")
    return root


def test_points_atomically_and_says_what_it_pointed_at(app):
    args = {"app_root": str(app), "state": "pointed", "pointer": "current", "release": R2}
    checked = run(args, check=True, diff=True)
    assert checked["changed"] is True and checked["before"] == R3
    assert checked["diff"]["before"] == f"releases/{R3}\n" and checked["diff"]["after"] == f"releases/{R2}\n"
    assert os.readlink(app / "current") == f"releases/{R3}"  # check mode changes nothing
    done = run(args)
    assert done["changed"] is True and done["before"] == R3
    assert os.readlink(app / "current") == f"releases/{R2}"
    assert not [name for name in os.listdir(app) if name.startswith(".")]  # no temporary link left
    assert run(args)["changed"] is False


def test_a_new_pointer_is_created(app):
    result = run({"app_root": str(app), "state": "pointed", "pointer": "green", "release": R3})
    assert result["changed"] is True and result["before"] == ""
    assert os.readlink(app / "green") == f"releases/{R3}"


def test_refuses_an_incomplete_release_a_pointer_that_is_not_a_link_and_bad_names(app):
    result = run({"app_root": str(app), "state": "pointed", "release": R4})
    assert result["failed"] and result["msg"] == (
        f"release: cannot point {app / 'current'} at {R4}: the release is missing or incomplete (no REVISION file). "
        "Build it first (greenlight.django.code_sync)."
    )
    assert os.readlink(app / "current") == f"releases/{R3}"
    (app / "green").write_text("a file\n")
    result = run({"app_root": str(app), "state": "pointed", "pointer": "green", "release": R2})
    assert result["msg"].endswith(f"{app / 'green'} exists and is not a symlink; move it away.")
    result = run({"app_root": str(app), "state": "pointed", "release": "../elsewhere"})
    assert "must name a link" in result["msg"]
    result = run({"app_root": str(app), "state": "pointed"})
    assert "release" in result["msg"] and result["failed"]


def test_prunes_all_but_the_newest_and_the_referenced_and_their_wheelhouses(app):
    args = {"app_root": str(app), "state": "pruned", "keep": 1}
    checked = run(args, check=True)
    # R3 is referenced by current, R1 by blue, R4 is the newest: only R2 goes.
    assert checked["removed_releases"] == [R2]
    assert checked["removed_wheelhouses"] == ["w-orphan"]
    assert sorted(os.listdir(app / "releases")) == [R1, R2, R3, R4]  # check mode removes nothing
    done = run(args)
    assert done["changed"] is True and done["removed_releases"] == [R2]
    assert sorted(os.listdir(app / "releases")) == [R1, R3, R4]
    assert sorted(os.listdir(app / "wheels")) == ["w-new", "w-old"]  # w-old: R1 still uses it
    assert run(args)["changed"] is False


def test_protect_keeps_a_release_and_its_wheelhouse(app):
    os.unlink(app / "blue")
    result = run({"app_root": str(app), "state": "pruned", "keep": 1, "protect": [R2]})
    assert result["removed_releases"] == [R1]
    assert sorted(os.listdir(app / "wheels")) == ["w-new", "w-old"]


def test_keep_must_be_positive_and_a_missing_root_prunes_nothing(app, tmp_path):
    assert "keep must be 1 or more" in run({"app_root": str(app), "state": "pruned", "keep": 0})["msg"]
    result = run({"app_root": str(tmp_path / "nope"), "state": "pruned"})
    assert result["changed"] is False and result["removed_releases"] == []


def test_prune_removes_the_copies_of_replaced_environment_files_only(app):
    shared = app / "shared"
    shared.mkdir()
    (shared / ".env").write_text("A=new\n")
    (shared / ".env.4242.2025-12-31@09:00:00~").write_text("A=old\n")
    (shared / ".envrc").write_text("kept\n")
    (shared / "media").mkdir()
    args = {"app_root": str(app), "state": "pruned", "keep": 5}
    assert run(args, check=True)["removed_environment_copies"] == [".env.4242.2025-12-31@09:00:00~"]
    assert (shared / ".env.4242.2025-12-31@09:00:00~").exists()
    done = run(args)
    assert done["changed"] is True and done["removed_environment_copies"] == [".env.4242.2025-12-31@09:00:00~"]
    assert sorted(os.listdir(shared)) == [".env", ".envrc", "media"]


def static(root, release_id, files):
    for relative, content in files.items():
        path = root / "releases" / release_id / "static" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def bridged(root):
    bridge = root / "shared" / "static-bridge"
    return {str(p.relative_to(bridge)): p.read_text() for p in sorted(bridge.rglob("*")) if p.is_file()}


def test_the_static_bridge_holds_the_newest_copy_of_every_kept_releases_files(app):
    static(app, R1, {"css/site.111.css": "v1", "css/site.css": "v1", "js/old.js": "old"})
    static(app, R3, {"css/site.333.css": "v3", "css/site.css": "v3"})
    args = {"app_root": str(app), "state": "bridged"}
    checked = run(args, check=True)
    assert checked["changed"] is True and checked["static_bridge"] == {"placed": 4, "removed": 0}
    assert not (app / "shared" / "static-bridge").exists()  # check mode changes nothing
    done = run(args)
    assert done["changed"] is True and done["static_bridge"] == {"placed": 4, "removed": 0}
    # The newest release's copy of a name both have; each release's hashed files; hard links, not copies.
    assert bridged(app) == {
        "css/site.111.css": "v1",
        "css/site.333.css": "v3",
        "css/site.css": "v3",
        "js/old.js": "old",
    }
    assert (app / "shared/static-bridge/css/site.333.css").samefile(app / "releases" / R3 / "static/css/site.333.css")
    assert run(args) == dict(run(args), changed=False)
    assert run(args)["static_bridge"] == {"placed": 0, "removed": 0}


def test_pruning_a_release_removes_the_files_only_it_had_from_the_bridge(app):
    static(app, R1, {"css/site.111.css": "v1", "js/old.js": "old"})
    static(app, R2, {"css/site.222.css": "v2"})
    static(app, R3, {"css/site.333.css": "v3"})
    run({"app_root": str(app), "state": "bridged"})
    os.unlink(app / "blue")  # R1 is no longer referenced by a pointer
    result = run({"app_root": str(app), "state": "pruned", "keep": 3})
    assert result["removed_releases"] == [R1]
    assert result["static_bridge"] == {"placed": 0, "removed": 2}
    assert bridged(app) == {"css/site.222.css": "v2", "css/site.333.css": "v3"}
    assert not (app / "shared/static-bridge/js").exists()  # the folder it left empty went too
    off = run({"app_root": str(app), "state": "pruned", "keep": 2, "static_bridge": False})
    assert off["removed_releases"] == [R2] and off["static_bridge"] == {"placed": 0, "removed": 0}
    assert "css/site.222.css" in bridged(app)
