"""greenlight.django.files: runs in-process on a temporary directory, as the user running the tests."""

import os
import stat

import pytest
from ansible_collections.greenlight.django.plugins.modules import files
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)


def run(args, check=False, diff=False):
    args = dict(args)
    args["_ansible_check_mode"] = check
    args["_ansible_diff"] = diff
    with set_module_args(args), patched_exits():
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            files.main()
    return raised.value.result


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_creates_directories_and_files_then_changes_nothing(tmp_path):
    args = {
        "directories": [{"path": str(tmp_path / "a" / "b"), "mode": "0750"}],
        "files": [
            {"path": str(tmp_path / "a" / "b" / "one.conf"), "content": "one\n", "mode": "0644"},
            {"path": str(tmp_path / "a" / "two"), "content": "two\n"},
        ],
    }
    first = run(args)
    assert first["changed"] is True
    assert first["changed_paths"] == [
        str(tmp_path / "a" / "b"),
        str(tmp_path / "a" / "b" / "one.conf"),
        str(tmp_path / "a" / "two"),
    ]
    assert (tmp_path / "a" / "b" / "one.conf").read_text() == "one\n"
    assert mode(tmp_path / "a" / "b") == 0o750
    assert mode(tmp_path / "a" / "b" / "one.conf") == 0o644
    assert mode(tmp_path / "a" / "two") == 0o600  # a new file without a mode is private
    second = run(args)
    assert second["changed"] is False
    assert second["changed_paths"] == []
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["one.conf"]  # no temporary file left behind


def test_rewrites_only_what_differs_and_corrects_the_mode(tmp_path):
    same = tmp_path / "same"
    same.write_text("same\n")
    same.chmod(0o600)
    other = tmp_path / "other"
    other.write_text("old\n")
    inode = same.stat().st_ino
    result = run(
        {
            "files": [
                {"path": str(same), "content": "same\n", "mode": "0644"},
                {"path": str(other), "content": "new\n", "mode": "0640"},
            ]
        }
    )
    assert result["changed_paths"] == [str(same), str(other)]
    assert same.stat().st_ino == inode  # same content: not rewritten, only chmod
    assert mode(same) == 0o644
    assert other.read_text() == "new\n"
    assert mode(other) == 0o640


def test_an_existing_file_without_a_mode_keeps_its_mode(tmp_path):
    target = tmp_path / "script"
    target.write_text("old\n")
    target.chmod(0o755)
    run({"files": [{"path": str(target), "content": "new\n"}]})
    assert mode(target) == 0o755


def test_check_mode_reports_and_changes_nothing(tmp_path):
    target = tmp_path / "f"
    target.write_text("old\n")
    result = run(
        {"directories": [{"path": str(tmp_path / "d")}], "files": [{"path": str(target), "content": "new\n"}]},
        check=True,
        diff=True,
    )
    assert result["changed"] is True
    assert result["changed_paths"] == [str(tmp_path / "d"), str(target)]
    assert target.read_text() == "old\n"
    assert not (tmp_path / "d").exists()
    assert {"before_header": str(target), "after_header": str(target), "before": "old\n", "after": "new\n"} in result[
        "diff"
    ]


def test_backup_keeps_the_replaced_file(tmp_path):
    target = tmp_path / ".env"
    target.write_text("SECRET=old\n")
    target.chmod(0o600)
    result = run({"files": [{"path": str(target), "content": "SECRET=new\n", "mode": "0600", "backup": True}]})
    backup = result["backup_files"][str(target)]
    assert backup.startswith(str(target) + ".") and backup.endswith("~")
    assert open(backup).read() == "SECRET=old\n"
    assert mode(backup) == 0o600
    assert target.read_text() == "SECRET=new\n"
    assert run({"files": [{"path": str(target), "content": "SECRET=new\n", "backup": True}]})["backup_files"] == {}


def test_failed_validation_leaves_the_old_file(tmp_path):
    target = tmp_path / "site.conf"
    target.write_text("good\n")
    result = run(
        {
            "files": [
                {
                    "path": str(target),
                    "content": "bad\n",
                    "validate": "/bin/sh -c 'grep -q good $0 || { echo broken >&2; exit 1; }' %s",
                }
            ]
        }
    )
    assert result["failed"] is True
    assert str(target) in result["msg"] and "broken" in result["msg"] and "left as it was" in result["msg"]
    assert target.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["site.conf"]


def test_passing_validation_sees_the_new_content(tmp_path):
    target = tmp_path / "site.conf"
    result = run({"files": [{"path": str(target), "content": "good\n", "validate": "grep -q good %s"}]})
    assert result["changed"] is True
    assert target.read_text() == "good\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"files": [{"path": "relative", "content": ""}]}, "must be absolute"),
        ({"files": [{"path": "/tmp/x", "content": ""}, {"path": "/tmp/x", "content": "y"}]}, "listed twice"),
        ({"files": [{"path": "/tmp/x", "content": "", "validate": "true"}]}, "must contain %s"),
    ],
)
def test_bad_input_fails_before_any_change(args, message):
    result = run(args)
    assert result["failed"] is True
    assert message in result["msg"]


def test_refuses_to_replace_a_directory_or_a_link(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    assert "not a regular file" in run({"files": [{"path": str(tmp_path / "dir"), "content": ""}]})["msg"]
    assert "not a regular file" in run({"files": [{"path": str(tmp_path / "link"), "content": ""}]})["msg"]
    (tmp_path / "file").write_text("")
    assert "not a directory" in run({"directories": [{"path": str(tmp_path / "file")}]})["msg"]


def test_missing_parent_is_named(tmp_path):
    result = run({"files": [{"path": str(tmp_path / "nowhere" / "f"), "content": "x"}]})
    assert "does not exist" in result["msg"] and "nowhere" in result["msg"]


def test_links_are_created_before_the_files_and_kept_without_replace(tmp_path):
    active = tmp_path / "active.conf"
    args = {
        "links": [{"path": str(active), "src": "upstream-blue.conf", "replace": False}],
        "files": [
            {"path": str(tmp_path / "upstream-blue.conf"), "content": "blue\n"},
            # the check of the last file reads the link created by the same call
            {
                "path": str(tmp_path / "site.conf"),
                "content": "site\n",
                "validate": "grep -q blue " + str(active) + " %s",
            },
        ],
    }
    assert run(args)["changed_paths"] == [
        str(active),
        str(tmp_path / "upstream-blue.conf"),
        str(tmp_path / "site.conf"),
    ]
    assert active.read_text() == "blue\n"
    active.unlink()
    active.symlink_to("upstream-green.conf")  # switched by somebody else: left alone
    assert run(args)["changed"] is False
    assert os.readlink(active) == "upstream-green.conf"


def test_a_link_with_replace_is_repointed(tmp_path):
    link = tmp_path / "current"
    link.symlink_to("releases/1")
    result = run({"links": [{"path": str(link), "src": "releases/2"}]}, diff=True)
    assert result["changed_paths"] == [str(link)]
    assert os.readlink(link) == "releases/2"
    assert result["diff"] == [
        {"before_header": str(link), "after_header": str(link), "before": "releases/1\n", "after": "releases/2\n"}
    ]
    assert run({"links": [{"path": str(link), "src": "releases/2"}]})["changed"] is False
    assert sorted(os.listdir(tmp_path)) == ["current"]


def test_absent_removes_files_and_links_and_refuses_directories(tmp_path):
    (tmp_path / "default").write_text("")
    (tmp_path / "link").symlink_to("nowhere")
    result = run({"absent": [str(tmp_path / "default"), str(tmp_path / "link"), str(tmp_path / "never")]})
    assert result["changed_paths"] == [str(tmp_path / "default"), str(tmp_path / "link")]
    assert os.listdir(tmp_path) == []
    assert run({"absent": [str(tmp_path / "default")]})["changed"] is False
    (tmp_path / "dir").mkdir()
    assert "is a directory" in run({"absent": [str(tmp_path / "dir")]})["msg"]
    assert (tmp_path / "dir").is_dir()


def test_a_link_does_not_replace_a_file(tmp_path):
    (tmp_path / "plain").write_text("x")
    assert "not a symbolic link" in run({"links": [{"path": str(tmp_path / "plain"), "src": "y"}]})["msg"]
