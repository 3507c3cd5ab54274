"""A failure after the new release serves undoes nothing: what users wrote to it stays.

Once the simple deploy's window closed, users write to the new release. A
later step that fails (here the after_deploy hook: a note written through the
site, then a failure, as a notification that does not get through) must not
restore the backup taken before migrate nor switch back: both would throw
away those writes. The deploy reports the failure, says that nothing was
undone, and leaves the new release serving. Runs after test_4, which left
demo v2 deployed.
"""

from __future__ import annotations

from faults_lib import HOOKS, SIMPLE, healthy, migrations, pointer, psql, run, serves, sh


def test_a_failure_after_the_window_closed_keeps_the_new_release_and_what_users_wrote():
    assert serves(SIMPLE) == "v2"
    release_before = pointer(SIMPLE, "current")
    result = run(SIMPLE, "v6", extra_vars={"greenlight_hooks": {"after_deploy": str(HOOKS / "write_then_fail.yml")}})
    print(f"after_deploy hook fails: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    assert "the after_deploy hook failed on purpose" in result.output
    assert "database restored from" not in result.output
    # The new release serves, with all its migrations, and the note written after the window is there.
    assert serves(SIMPLE) == "v6" and healthy(SIMPLE)
    assert pointer(SIMPLE, "current") != release_before
    assert "notes.0006_remove_note_title" in migrations(SIMPLE)
    assert psql("SELECT count(*) FROM notes_note WHERE headline = 'written-after-the-window'") == "1"
    assert sh("test -e /etc/nginx/greenlight/demo/maintenance.on && echo on || echo off") == "off"
    assert sh("test -e /srv/demo/deploy.lock && echo held || echo free") == "free"
    summary = SIMPLE.summary()
    assert summary["outcome"] == "failed"
    assert "nothing was undone" in summary["error"] and "the after_deploy hook failed on purpose" in summary["error"]
    assert summary["release"] == pointer(SIMPLE, "current")
