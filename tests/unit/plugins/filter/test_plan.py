"""The deploy plan: its migrations, its id, and the words for what differs from an approved one."""

import copy

from ansible_collections.greenlight.django.plugins.filter import plan as plans


def pending():
    """Two pending migrations as greenlight.django.migration_status returns them with include_sql."""
    return [
        {
            "app": "notes",
            "name": "0002_note_tag",
            "phase": "before_switch",
            "compatibility": "compatible",
            "destructive": False,
            "data_loss": "no",
            "reversible": True,
            "accepted": False,
            "reverse_loses_data": True,
            "operations": [
                {
                    "type": "AddField",
                    "description": "Add field tag to note",
                    "compatibility": "compatible",
                    "destructive": False,
                    "data_loss": "no",
                    "lock": "takes 0.3 s on 12000 rows",
                    "lock_table": {"name": "notes_note", "estimated_rows": 12000, "bytes": 4096},
                    "data_check": None,
                }
            ],
            "sql": ["BEGIN;", 'ALTER TABLE "notes_note" ADD COLUMN "tag" varchar(20) NULL;', "COMMIT;"],
        },
        {
            "app": "notes",
            "name": "0003_title_unique",
            "phase": "before_switch",
            "compatibility": "incompatible",
            "destructive": False,
            "data_loss": "no",
            "reversible": True,
            "accepted": False,
            "operations": [
                {
                    "type": "AlterField",
                    "description": "Alter field title on note",
                    "compatibility": "incompatible",
                    "destructive": False,
                    "data_loss": "no",
                    "data_check": {"checked": True, "violations": 0, "sample_keys": [], "seconds": 0.004},
                }
            ],
            "sql": ["BEGIN;", 'ALTER TABLE "notes_note" ADD CONSTRAINT "title_uniq" UNIQUE ("title");', "COMMIT;"],
        },
    ]


def plan(items=None, **changes):
    content = {
        "app": "demo",
        "strategy": "simple",
        "hosts": ["web1"],
        "release": "20261206T120000Z-4f2a9c1e0b7d",
        "revision": "4f2a9c1e0b7d5a6c",
        "serving": "20261201T080000Z-0a1b2c3d4e5f",
        "window": {"downtime": True, "why": "2 migrations are pending"},
        "migrations": plans.plan_migrations(pending() if items is None else items),
    }
    content.update(changes)
    return content


def test_the_plan_keeps_what_a_review_is_about_and_nothing_that_changes_by_itself():
    kept = plans.plan_migrations(pending())
    assert [m["migration"] for m in kept] == ["notes.0002_note_tag", "notes.0003_title_unique"]
    assert kept[0]["sql"][1].startswith('ALTER TABLE "notes_note" ADD COLUMN')
    assert kept[0]["operations"][0] == {
        "description": "Add field tag to note",
        "type": "AddField",
        "compatibility": "compatible",
        "destructive": False,
        "data_loss": "no",
        "data_check": "none needed",
    }
    assert kept[1]["operations"][0]["data_check"] == "passed"
    assert "lock" not in str(kept) and "seconds" not in str(kept) and "reverse_loses_data" not in str(kept)


def test_data_checks_in_words():
    assert plans._data_check(None) == "none needed"
    assert plans._data_check({"checked": True, "violations": 0}) == "passed"
    assert plans._data_check({"checked": True, "violations": 2, "sample_keys": [1, 2]}) == "2 offending rows"
    assert plans._data_check({"checked": False, "violations": 0, "skipped": "statement timeout after 10 s"}) == (
        "skipped: statement timeout after 10 s"
    )


def test_the_id_is_stable_and_leaves_out_when_and_who():
    first = plan()
    again = plan()
    assert plans.plan_id(first) == plans.plan_id(again)
    assert len(plans.plan_id(first)) == 16 and int(plans.plan_id(first), 16) >= 0
    written = dict(first, plan_id=plans.plan_id(first), created_at="2026-12-06T12:00:00Z", created_by="ops@ctl")
    assert plans.plan_id(written) == plans.plan_id(first)
    # Key order and a timing of the data check change nothing.
    items = pending()
    items[1]["operations"][0]["data_check"]["seconds"] = 3.5
    assert plans.plan_id(dict(reversed(list(plan(items).items())))) == plans.plan_id(first)


def test_the_id_changes_with_what_the_deploy_would_do():
    base = plans.plan_id(plan())
    items = pending()
    items[0]["sql"][1] = 'ALTER TABLE "notes_note" ADD COLUMN "tag" varchar(30) NULL;'
    changed = [
        plan(revision="9c1e"),
        plan(release="20261206T130000Z-9c1e"),
        plan(strategy="blue_green"),
        plan(window={"downtime": False, "why": "no migration is pending"}),
        plan(items),
        plan(pending()[:1]),
    ]
    items = pending()
    items[1]["operations"][0]["data_check"] = {"checked": True, "violations": 3, "sample_keys": [4, 5, 6]}
    changed.append(plan(items))
    ids = {plans.plan_id(p) for p in changed}
    assert base not in ids and len(ids) == len(changed)


def test_the_same_plan_differs_in_nothing():
    assert plans.plan_differences(dict(plan(), plan_id=plans.plan_id(plan())), plan()) == []


def test_a_new_commit_and_migration_are_named():
    approved = dict(plan(pending()[:1]), plan_id=plans.plan_id(plan(pending()[:1])))
    now = plan(revision="9c1e77", release="20261206T130000Z-9c1e77")
    assert plans.plan_differences(approved, now) == [
        "release changed: approved 20261206T120000Z-4f2a9c1e0b7d, now 20261206T130000Z-9c1e77",
        "revision changed: approved 4f2a9c1e0b7d5a6c, now 9c1e77",
        "migration added: notes.0003_title_unique",
    ]


def test_a_migration_gone_a_reorder_and_a_changed_migration_are_named():
    approved = plan()
    assert plans.plan_differences(approved, plan(pending()[1:])) == ["migration no longer pending: notes.0002_note_tag"]
    assert plans.plan_differences(approved, plan(list(reversed(pending())))) == [
        "the migrations run in another order: now notes.0003_title_unique, notes.0002_note_tag"
    ]
    items = pending()
    items[1]["sql"] = ["BEGIN;", "COMMIT;"]
    items[1]["phase"] = "after_switch"
    items[1]["operations"][0]["data_check"] = {"checked": True, "violations": 2}
    assert plans.plan_differences(approved, plan(items)) == [
        "notes.0003_title_unique: phase was before_switch, now after_switch",
        'notes.0003_title_unique: data_check of "Alter field title on note" was passed, now 2 offending rows',
        "notes.0003_title_unique: its SQL changed",
    ]
    items = pending()
    items[0]["operations"][0]["description"] = "Add field label to note"
    assert plans.plan_differences(approved, plan(items)) == [
        "notes.0002_note_tag: its operations changed (approved: Add field tag to note; now: Add field label to note)"
    ]


def test_the_window_strategy_and_an_edited_file_are_named():
    approved = dict(plan(), plan_id=plans.plan_id(plan()))
    now = plan(strategy="auto", window={"downtime": False, "why": "no downtime window: nothing serves yet"})
    assert plans.plan_differences(approved, now) == [
        "strategy changed: approved simple, now auto",
        "expected window changed: approved downtime True, why 2 migrations are pending,"
        " now downtime False, why no downtime window: nothing serves yet",
    ]
    edited = copy.deepcopy(approved)
    edited["migrations"][0]["sql"] = []
    found = plans.plan_differences(edited, plan())
    assert found[0].startswith("the approved plan file was edited after it was written")
    assert found[1:] == ["notes.0002_note_tag: its SQL changed"]


def test_the_filters_are_offered_under_their_names():
    assert sorted(plans.FilterModule().filters()) == ["plan_differences", "plan_id", "plan_migrations"]
