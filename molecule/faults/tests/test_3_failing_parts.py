"""Failing parts: whatever breaks, the old release serves again and no data is lost.

The simple deploy of demo v2 (two pending migrations) is tried against a
release that never gets healthy, a full backup directory, a database that
stops answering before migrate and an nginx configuration that fails
`nginx -t`; and a release whose new unique constraint the rows already in
the table violate, refused before the window. (A blue-green switch that nginx refuses is in
test_4_interrupts.py, between the kills; a migration that fails half way, v5, is proven by
molecule/deploy: test_v5_fails_half_way_and_everything_is_put_back.)
"""

from __future__ import annotations

import shutil

from faults_lib import (
    EPHEMERAL,
    HOOKS,
    SIMPLE,
    ProcessSampler,
    SiteWatcher,
    differences,
    healthy,
    leaks,
    migrations,
    pointer,
    psql,
    run,
    serves,
    sh,
    snapshot,
    user_data,
    wait_for,
    write_note,
)

V1_MIGRATIONS = ["notes.0001_initial"]
BROKEN_NGINX = "/etc/nginx/conf.d/zz-faults-broken.conf"


def unhealthy_variant() -> str:
    """demo v2 whose /healthz always answers 503, as a release with a bug would."""
    source = EPHEMERAL / "demo" / "v2-unhealthy"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(EPHEMERAL / "demo" / "v2", source)
    (source / "VERSION").write_text("v2-unhealthy\n")
    with (source / "notes" / "views.py").open("a") as views:
        views.write(
            "\n\n@never_cache\n"
            "def healthz(request):  # noqa: F811 - this release's health check is broken on purpose\n"
            '    return plain_text("unavailable: broken on purpose", status=503)\n'
        )
    return "v2-unhealthy"


def assert_old_release_serves(release: str, data: str) -> None:
    assert pointer(SIMPLE, "current") == release
    assert serves(SIMPLE) == "v1"
    assert healthy(SIMPLE)
    assert user_data(SIMPLE) == data
    assert [name for name in migrations(SIMPLE) if name.startswith("notes.")] == V1_MIGRATIONS
    assert sh("test -e /srv/demo/deploy.lock && echo held || echo free") == "free"
    assert SIMPLE.summary().get("outcome") == "failed"


def test_a_release_that_never_gets_healthy_is_undone_and_the_backup_restored():
    for n in range(3):
        write_note(SIMPLE, f"before-unhealthy-{n}")
    release, data = pointer(SIMPLE, "current"), user_data(SIMPLE)
    sampler = ProcessSampler()
    try:
        result = run(SIMPLE, unhealthy_variant(), extra_vars={"wsgi_health_timeout": 5}, verbosity=3)
    finally:
        samples = sampler.stop()
    print(f"unhealthy release: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    assert "did not answer" in result.output and "/healthz" in result.output
    assert "database restored from" in result.output
    assert_old_release_serves(release, data)
    # The site was down from the stop until the old release served again: the health wait alone took 5 s.
    window = float(SIMPLE.summary()["downtime_window_seconds"])
    assert 5 <= window <= result.seconds, SIMPLE.summary()
    # The secrets stayed out of -vvv and of every command line here too (backup, migrate, restore).
    assert "pg_dump --format=custom" in samples and "- greenlight-migrate demo" in samples
    assert leaks(result.output) == [] and leaks(samples) == []


def test_a_full_backup_directory_stops_the_deploy_before_migrate():
    release, data = pointer(SIMPLE, "current"), user_data(SIMPLE)
    backups = sh("ls /srv/demo/backups")
    sh("mount -t tmpfs -o size=1m,mode=0700 greenlight-faults-full /srv/demo/backups")
    try:
        sh("head -c 2M /dev/zero > /srv/demo/backups/filler 2>/dev/null || true")
        result = run(SIMPLE, "v2")
        leftovers = sh("ls -A /srv/demo/backups")
    finally:
        sh("umount /srv/demo/backups")
    print(f"full backup directory: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    assert "No space left on device" in result.output
    assert leftovers == "filler", "a partial backup was left behind"
    assert sh("ls /srv/demo/backups") == backups
    assert_old_release_serves(release, data)


def test_a_database_that_stops_answering_before_migrate():
    release, data = pointer(SIMPLE, "current"), user_data(SIMPLE)
    try:
        result = run(
            SIMPLE, "v2", extra_vars={"greenlight_hooks": {"before_migrate": str(HOOKS / "stop_database.yml")}}
        )
    finally:
        sh("systemctl start postgresql")
    print(f"database stopped before migrate: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    assert "Nothing was applied" in result.output or "nothing was applied" in result.output, result
    wait_for("the old release to answer again", lambda: healthy(SIMPLE), seconds=60, context=result)
    assert_old_release_serves(release, data)


def test_an_nginx_configuration_that_fails_nginx_t_stops_the_deploy_before_any_change():
    before = snapshot(SIMPLE)
    sh(f"echo 'this_is_no_directive faults;' > {BROKEN_NGINX}")
    try:
        result = run(SIMPLE, "v2")
        after = snapshot(SIMPLE)
    finally:
        sh(f"rm -f {BROKEN_NGINX}")
    print(f"nginx -t fails: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    assert "this_is_no_directive" in result.output
    # nginx's own words reach the summary, not only "non-zero return code".
    assert "this_is_no_directive" in SIMPLE.summary()["error"], SIMPLE.summary()
    assert float(SIMPLE.summary()["downtime_window_seconds"]) == 0
    assert after == before
    assert sh("nginx -t 2>&1 && echo fine").endswith("fine")


TITLE_CI_MIGRATION = """\
from django.db import migrations, models
from django.db.models.functions import Lower


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [
        migrations.AddConstraint(
            model_name="note",
            constraint=models.UniqueConstraint(Lower("title"), name="notes_note_title_ci"),
        ),
    ]
"""


def title_ci_variant() -> str:
    """demo v1 plus a migration that makes note titles unique regardless of case (models and migration agree)."""
    source = EPHEMERAL / "demo" / "v1-title-ci"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(EPHEMERAL / "demo" / "v1", source)
    (source / "VERSION").write_text("v1-title-ci\n")
    models = source / "notes" / "models.py"
    text = models.read_text()
    text = text.replace(
        "from django.db import models\n",
        "from django.db import models\nfrom django.db.models.functions import Lower\n",
        1,
    )
    meta = (
        "    objects = NoteQuerySet.as_manager()\n\n"
        "    class Meta:\n"
        '        constraints = [models.UniqueConstraint(Lower("title"), name="notes_note_title_ci")]\n'
    )
    assert "    objects = NoteQuerySet.as_manager()\n" in text
    models.write_text(text.replace("    objects = NoteQuerySet.as_manager()\n", meta, 1))
    (source / "notes" / "migrations" / "0002_note_title_ci.py").write_text(TITLE_CI_MIGRATION)
    return "v1-title-ci"


def test_rows_a_new_unique_constraint_would_fail_on_refuse_the_deploy_before_the_window():
    """'Fantasy' and 'fantasy' under a new case-insensitive unique constraint: today's migrate fails on them inside
    the window; the data check refuses before it, naming the migration, the rows and their keys."""
    write_note(SIMPLE, "Fantasy")
    write_note(SIMPLE, "fantasy")
    duplicated = (
        "SELECT id FROM notes_note WHERE lower(title) IN "
        "(SELECT lower(title) FROM notes_note GROUP BY 1 HAVING count(*) > 1) ORDER BY lower(title), id"
    )
    keys = psql(duplicated, SIMPLE.database).split()
    assert len(keys) >= 2, keys
    before = snapshot(SIMPLE)
    watcher = SiteWatcher(SIMPLE)
    try:
        result = run(SIMPLE, title_ci_variant())
    finally:
        answers = watcher.stop()
    after = snapshot(SIMPLE)
    print(f"rows a new unique constraint would fail on: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    output = result.output
    assert "notes.0002_note_title_ci: Create constraint notes_note_title_ci on model note" in output, result
    assert f"{len(keys)} rows share their Lower(F(title)) with another row" in output, result
    assert f"(primary keys {', '.join(keys[:5])}" in output, result
    assert "data migration" in output and "clean the data by hand" in output and "nothing was applied" in output
    # Refused before the window: nothing changed (no backup, no release left, the schema and rows as they were),
    # the old release answered every request, never the maintenance page.
    assert differences(before, after) == []
    assert answers and set(answers) == {"v1 200"}, sorted(set(answers))
    summary = SIMPLE.summary()
    assert summary["outcome"] == "refused" and summary["backup_file"] == "", summary
    assert float(summary["downtime_window_seconds"]) == 0, summary
    assert "notes.0002_note_title_ci" in summary["error"], summary
    assert [name for name in migrations(SIMPLE) if name.startswith("notes.")] == V1_MIGRATIONS


def test_a_skipped_data_check_is_in_the_summary_and_its_failure_is_recovered_in_the_window():
    """The same release with notes_note in migrate_data_check_skip_tables (a table too large to scan): the
    skip is said in the summary, migrate then fails on the rows inside the window, and the backup is restored."""
    release, data = pointer(SIMPLE, "current"), user_data(SIMPLE)
    result = run(SIMPLE, title_ci_variant(), extra_vars={"migrate_data_check_skip_tables": ["notes_note"]})
    print(f"skipped data check: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    summary = SIMPLE.summary()
    assert summary["outcome"] == "failed", summary
    assert summary["data_checks_skipped"] == [
        "notes.0002_note_title_ci: Create constraint notes_note_title_ci on model note"
        " — table notes_note is in data_check_skip_tables"
    ], summary
    assert "database restored from" in result.output
    assert_old_release_serves(release, data)
    assert float(summary["downtime_window_seconds"]) > 0, summary
