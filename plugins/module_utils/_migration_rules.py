# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

Classification of pending Django migrations for blue-green deploys, and the
shaping of ``greenlight.django.migration_status`` results. Pure Python: the
facts come from ``_migration_inspect.py`` (run in the application's Python);
nothing here imports Django.

The deploy model is migrate-then-switch: ``before_switch`` migrations run while
the old release still serves traffic, so each of them must be *compatible*
with the old code; ``after_switch`` migrations run once the old release is gone.
"""

import re

COMPATIBLE = "compatible"
UNKNOWN = "unknown"
INCOMPATIBLE = "incompatible"
_RANK = {COMPATIBLE: 0, UNKNOWN: 1, INCOMPATIBLE: 2}

BEFORE_SWITCH = "before_switch"
AFTER_SWITCH = "after_switch"
PHASES = (BEFORE_SWITCH, AFTER_SWITCH)
PHASE_ATTRIBUTE = "greenlight_phase"
SAFE_ATTRIBUTE = "greenlight_safe"

FAIL_ON_CHOICES = (
    "unmigrated_changes",
    "conflicts",
    "unknown_applied",
    "inconsistent_history",
    "phase_errors",
    "pending",
    "incompatible",
    "destructive",
)
DEFAULT_FAIL_ON = ["unmigrated_changes", "conflicts", "unknown_applied", "inconsistent_history", "phase_errors"]


# ---------------------------------------------------------------------------
# Conditions used by the table. Each takes the facts of one operation.
# ---------------------------------------------------------------------------


def always(facts):
    return True


def unreadable(facts):
    """The inspector could not read the operation (its facts carry an error)."""
    return bool(facts.get("error"))


def emits_no_sql(facts):
    """No SQL runs on this database: state only, no-op, unmanaged/proxy model, or routed away."""
    return facts.get("emits_sql") is False


def _field(facts, key="field"):
    return facts.get(key) or {}


def adds_many_to_many(facts):
    return bool(_field(facts).get("many_to_many"))


def adds_generated_column(facts):
    return bool(_field(facts).get("generated"))


def adds_nullable_column(facts):
    return bool(_field(facts).get("null"))


def adds_column_with_db_default(facts):
    return bool(_field(facts).get("has_db_default"))


def old_field_unknown(facts):
    return not facts.get("old_field")


def becomes_not_null(facts):
    return bool(_field(facts, "old_field").get("null")) and not _field(facts, "new_field").get("null")


def drops_db_default_of_not_null(facts):
    old, new = _field(facts, "old_field"), _field(facts, "new_field")
    return bool(old.get("has_db_default")) and not new.get("has_db_default") and not new.get("null")


_VARCHAR = re.compile(r"^(?:n?varchar2?|character varying)\((\d+)\)$")
_NUMERIC = re.compile(r"^(?:numeric|decimal)\((\d+),\s*(\d+)\)$")
_TEXT_TYPES = ("text", "longtext", "nclob", "clob")
_INTEGER_RANK = {"smallint": 1, "integer": 2, "int": 2, "bigint": 3}


def widens_type(old_type, new_type):
    """True when every value of ``old_type`` fits ``new_type`` unchanged.

    Longer varchar, varchar to text, a bigger integer, more numeric precision
    at the same scale.
    """
    old = re.sub(r"\s+", " ", old_type.strip().lower())
    new = re.sub(r"\s+", " ", new_type.strip().lower())
    if old == new:
        return True
    old_varchar = _VARCHAR.match(old)
    if old_varchar:
        new_varchar = _VARCHAR.match(new)
        if new_varchar:
            return int(new_varchar.group(1)) >= int(old_varchar.group(1))
        return new in _TEXT_TYPES
    if old in _INTEGER_RANK and new in _INTEGER_RANK:
        return _INTEGER_RANK[new] >= _INTEGER_RANK[old]
    old_numeric, new_numeric = _NUMERIC.match(old), _NUMERIC.match(new)
    if old_numeric and new_numeric:
        same_scale = old_numeric.group(2) == new_numeric.group(2)
        return same_scale and int(new_numeric.group(1)) >= int(old_numeric.group(1))
    return False


def changes_column_type(facts):
    """The column type changes in a way old values or old writes may not survive."""
    old, new = _field(facts, "old_field"), _field(facts, "new_field")
    if old.get("is_relation") or new.get("is_relation"):
        if old.get("is_relation") != new.get("is_relation"):
            return True
        return old.get("related_to") != new.get("related_to")
    old_type, new_type = old.get("db_type"), new.get("db_type")
    if old_type is None or new_type is None:
        return old.get("class") != new.get("class")
    return not widens_type(old_type, new_type)


def becomes_unique(facts):
    return not _field(facts, "old_field").get("unique") and bool(_field(facts, "new_field").get("unique"))


def becomes_primary_key(facts):
    return not _field(facts, "old_field").get("primary_key") and bool(_field(facts, "new_field").get("primary_key"))


def adds_unique_together(facts):
    return bool(facts.get("added"))


def adds_unique_constraint(facts):
    return (facts.get("constraint") or {}).get("kind") == "unique"


def adds_order_column(facts):
    return bool(facts.get("adds_order_column"))


def removes_order_column(facts):
    return bool(facts.get("removes_order_column"))


_SQL_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_SQL_STRINGS = re.compile(r"'(?:[^']|'')*'")
_SQL_METADATA_DROPS = re.compile(
    r"\bDROP\s+(?:INDEX|CONSTRAINT|DEFAULT|NOT\s+NULL|TRIGGER|IDENTITY|EXPRESSION)\b", re.I
)
_SQL_ON_DELETE = re.compile(r"\bON\s+DELETE\b", re.I)
_SQL_DATA_LOSS = re.compile(r"\b(?:DROP|TRUNCATE|DELETE)\b", re.I)


def sql_deletes_data(facts):
    """RunSQL text contains DROP, TRUNCATE or DELETE (comments, strings, ON DELETE,
    and drops of indexes/constraints/defaults do not count)."""
    for text in facts.get("sql_text") or []:
        text = _SQL_COMMENTS.sub(" ", text)
        text = _SQL_STRINGS.sub("''", text)
        text = _SQL_ON_DELETE.sub(" ", text)
        text = _SQL_METADATA_DROPS.sub(" ", text)
        if _SQL_DATA_LOSS.search(text):
            return True
    return False


# ---------------------------------------------------------------------------
# THE TABLE. First matching row wins. "*" rows apply to every Django operation
# listed below; an operation that is not listed (third-party, or a Django
# operation this table does not know yet) is "unknown". SeparateDatabaseAndState
# is judged by its database_operations (see classify_operation).
#
# Columns: operation, when, compatibility, destructive, reason (why + what to do).
# ---------------------------------------------------------------------------

# fmt: off
RULES = (
    # (operation, when, compatibility, destructive,
    #  reason: why, and the safe alternative)
    ("*", unreadable, UNKNOWN, False,
     "greenlight could not read this operation; review it and mark the migration greenlight_safe if old code "
     "keeps working."),
    ("*", emits_no_sql, COMPATIBLE, False,
     "Nothing runs on this database: a state-only change, a no-op (RunPython.noop, empty RunSQL), an unmanaged "
     "or proxy model, or a router that keeps the app off this database."),

    ("CreateModel", always, COMPATIBLE, False,
     "A new table; old code never touches it."),

    ("DeleteModel", always, INCOMPATIBLE, True,
     "Old code still queries this table; remove the model from the code first, deploy, then delete it (mark "
     "the deleting migration after_switch)."),

    ("RenameModel", always, INCOMPATIBLE, False,
     "Old code queries the table under its old name; keep the old table name (Meta.db_table) so the rename is "
     "state-only, or copy to a new table over several releases."),

    ("AlterModelTable", always, INCOMPATIBLE, False,
     "Old code queries the table under its old name; rename the table only after the switch (mark the "
     "migration after_switch), or keep db_table unchanged."),

    ("AddField", adds_many_to_many, COMPATIBLE, False,
     "Creates a new join table; old code never touches it."),
    ("AddField", adds_generated_column, COMPATIBLE, False,
     "The database computes this column; old INSERTs leave it out."),
    ("AddField", adds_nullable_column, COMPATIBLE, False,
     "A nullable column; rows inserted by old code get NULL."),
    ("AddField", adds_column_with_db_default, COMPATIBLE, False,
     "The column keeps a database default (db_default); rows inserted by old code get it."),
    ("AddField", always, INCOMPATIBLE, False,
     "A NOT NULL column without db_default: Django drops the default after filling existing rows, so INSERTs "
     "from old code fail; add it with null=True (or db_default on Django 5.0+), backfill, then make it NOT "
     "NULL after the switch."),

    ("RemoveField", always, INCOMPATIBLE, True,
     "Old code still selects this column; remove it from the code first, deploy, then drop it (mark the drop "
     "after_switch)."),

    ("RenameField", always, INCOMPATIBLE, False,
     "Old code uses the old column name; keep the column (db_column=old name) so the rename is state-only, or "
     "add a new column, write both, backfill, and drop the old one after the switch."),

    ("AlterField", old_field_unknown, UNKNOWN, False,
     "The field's previous definition is not in the migration state; review this change."),
    ("AlterField", becomes_not_null, INCOMPATIBLE, False,
     "Old code may still write NULL into this column; deploy code that never writes NULL and backfill first, "
     "then set NOT NULL in a migration marked after_switch."),
    ("AlterField", drops_db_default_of_not_null, INCOMPATIBLE, False,
     "Old code relies on the database default of this NOT NULL column; drop db_default after the switch."),
    ("AlterField", becomes_primary_key, INCOMPATIBLE, False,
     "Changes the primary key under the old code; do it in a separate release after the switch."),
    ("AlterField", changes_column_type, INCOMPATIBLE, False,
     "Changes the column type: old code may write values the new type rejects, and the table may be rewritten "
     "under a lock; only widen (longer varchar, varchar to text, bigger integer), or add a new column and "
     "copy."),
    ("AlterField", becomes_unique, INCOMPATIBLE, False,
     "Old code may insert duplicates, which the new unique constraint rejects; deploy code that prevents "
     "duplicates first, then add the constraint after the switch."),
    ("AlterField", always, COMPATIBLE, False,
     "Relaxes or keeps the column (nullable, wider type, index, default or other detail); old code keeps "
     "working."),

    ("AlterUniqueTogether", adds_unique_together, INCOMPATIBLE, False,
     "Old code may insert duplicates, which the new unique constraint rejects; deploy code that prevents "
     "duplicates first, then add the constraint after the switch."),
    ("AlterUniqueTogether", always, COMPATIBLE, False,
     "Only removes unique constraints; old code keeps working."),

    ("AlterIndexTogether", always, COMPATIBLE, False,
     "Index change only; old code keeps working."),

    ("AddConstraint", adds_unique_constraint, INCOMPATIBLE, False,
     "Old code may insert duplicates, which the new unique constraint rejects; deploy code that prevents "
     "duplicates first, then add the constraint after the switch."),
    ("AddConstraint", always, UNKNOWN, False,
     "Old code may write rows this check or exclusion constraint rejects; review it and mark the migration "
     "greenlight_safe, or add the constraint after the switch."),

    ("AddConstraintNotValid", always, UNKNOWN, False,
     "New rows written by old code are checked against this constraint; review it and mark the migration "
     "greenlight_safe, or add the constraint after the switch."),

    ("ValidateConstraint", always, COMPATIBLE, False,
     "Validates existing rows of a constraint that already applies to new rows; old code is unaffected."),

    ("RemoveConstraint", always, COMPATIBLE, False,
     "Only removes a constraint; old code keeps working."),

    ("AddIndex", always, COMPATIBLE, False,
     "Index only; old code keeps working (on a big PostgreSQL table prefer AddIndexConcurrently)."),

    ("AddIndexConcurrently", always, COMPATIBLE, False,
     "Index only, built without blocking writes."),

    ("RemoveIndex", always, COMPATIBLE, False,
     "Index only; no data is lost."),

    ("RemoveIndexConcurrently", always, COMPATIBLE, False,
     "Index only; no data is lost."),

    ("RenameIndex", always, COMPATIBLE, False,
     "Index name only; old code keeps working."),

    ("AlterOrderWithRespectTo", adds_order_column, INCOMPATIBLE, False,
     "Adds a NOT NULL _order column without a database default; INSERTs from old code fail."),
    ("AlterOrderWithRespectTo", removes_order_column, INCOMPATIBLE, True,
     "Drops the _order column that old code still reads and writes."),
    ("AlterOrderWithRespectTo", always, COMPATIBLE, False,
     "Does not change the _order column."),

    ("AlterModelOptions", always, COMPATIBLE, False,
     "Python-side model options only; no SQL."),

    ("AlterModelManagers", always, COMPATIBLE, False,
     "Python-side managers only; no SQL."),

    ("AlterModelTableComment", always, COMPATIBLE, False,
     "Table comment only."),

    ("CreateExtension", always, COMPATIBLE, False,
     "Installs a PostgreSQL extension; old code keeps working."),

    ("CreateCollation", always, COMPATIBLE, False,
     "Creates a collation; old code keeps working."),

    ("RemoveCollation", always, COMPATIBLE, False,
     "Removes a collation no column uses any more; old code keeps working."),

    ("RunPython", always, UNKNOWN, False,
     "Runs arbitrary Python that greenlight cannot judge; review it and set greenlight_safe = True on the "
     "migration if old code keeps working."),

    ("RunSQL", sql_deletes_data, UNKNOWN, True,
     "Raw SQL with DROP, TRUNCATE or DELETE: it removes data, and greenlight cannot judge it; review it and "
     "set greenlight_safe = True on the migration if old code keeps working."),
    ("RunSQL", always, UNKNOWN, False,
     "Raw SQL that greenlight cannot judge; review it and set greenlight_safe = True on the migration if old "
     "code keeps working."),
)
# fmt: on

KNOWN_OPERATIONS = frozenset(row[0] for row in RULES if row[0] != "*") | {"SeparateDatabaseAndState"}

THIRD_PARTY_REASON = (
    "Third-party operation %s: greenlight cannot tell what it does to the database; review it and set "
    "greenlight_safe = True on the migration if old code keeps working."
)
UNLISTED_REASON = (
    "Django operation %s is not in greenlight's table; review it and set greenlight_safe = True on the "
    "migration if old code keeps working."
)


def operation_kind(facts):
    """The table row name for an operation, or None when it is not Django's or not listed."""
    if not facts.get("django"):
        return None
    for name in facts.get("bases") or [facts.get("type")]:
        if name in KNOWN_OPERATIONS:
            return name
    return None


def worst(compatibilities):
    result = COMPATIBLE
    for item in compatibilities:
        if _RANK.get(item, _RANK[UNKNOWN]) > _RANK[result]:
            result = item if item in _RANK else UNKNOWN
    return result


def classify_operation(facts):
    """Return {"compatibility", "destructive", "reason"} for one operation's facts."""
    kind = operation_kind(facts)
    if kind is None:
        label = "{}.{}".format(facts.get("module") or "?", facts.get("type") or "?")
        template = UNLISTED_REASON if facts.get("django") else THIRD_PARTY_REASON
        return {"compatibility": UNKNOWN, "destructive": False, "reason": template % label}
    if kind == "SeparateDatabaseAndState" and not unreadable(facts):
        return _classify_separate(facts)
    for operation, when, compatibility, destructive, reason in RULES:
        if operation in ("*", kind) and when(facts):
            return {"compatibility": compatibility, "destructive": destructive, "reason": reason}
    return {"compatibility": UNKNOWN, "destructive": False, "reason": UNLISTED_REASON % kind}  # pragma: no cover


def _classify_separate(facts):
    nested = [classify_operation(item) for item in facts.get("database_operations") or []]
    if not nested:
        return {
            "compatibility": COMPATIBLE,
            "destructive": False,
            "reason": "SeparateDatabaseAndState without database_operations: state only, no SQL.",
        }
    compatibility = worst(item["compatibility"] for item in nested)
    destructive = any(item["destructive"] for item in nested)
    reasons = []
    for inner, verdict in zip(facts["database_operations"], nested):
        if verdict["compatibility"] == compatibility and verdict["reason"] not in reasons:
            reasons.append("{}: {}".format(inner.get("description") or inner.get("type"), verdict["reason"]))
    return {
        "compatibility": compatibility,
        "destructive": destructive,
        "reason": "Judged by its database_operations. " + " ".join(reasons),
    }


# ---------------------------------------------------------------------------
# Migrations, phases, the result
# ---------------------------------------------------------------------------


def migration_label(entry):
    return "{}.{}".format(entry["app"], entry["name"])


def phase_of(entry):
    value = entry.get("phase")
    return value if value in PHASES else BEFORE_SWITCH


def classify_migration(entry, include_sql=False):
    """One ``pending`` item of the result from the inspector's facts."""
    accepted = entry.get("safe") is True
    operations = []
    for facts in entry.get("operations") or []:
        verdict = classify_operation(facts)
        compatibility, reason = verdict["compatibility"], verdict["reason"]
        if accepted and compatibility != COMPATIBLE:
            reason = f"Accepted by {SAFE_ATTRIBUTE} = True (otherwise {compatibility}): {reason}"
            compatibility = COMPATIBLE
        operations.append(
            {
                "type": facts.get("type"),
                "description": facts.get("description"),
                "compatibility": compatibility,
                "destructive": bool(verdict["destructive"]),
                "reversible": bool(facts.get("reversible")),
                "reason": reason,
            }
        )
    item = {
        "app": entry["app"],
        "name": entry["name"],
        "phase": phase_of(entry),
        "reversible": all(op["reversible"] for op in operations),
        "compatibility": worst(op["compatibility"] for op in operations),
        "destructive": any(op["destructive"] for op in operations),
        "accepted": accepted,
        "operations": operations,
    }
    if include_sql:
        item["sql"] = list(entry.get("sql") or [])
    return item


def phase_errors(entries):
    """Messages for invalid phase markers and before_switch migrations that need an after_switch one.

    ``entries`` are inspector facts in plan order; each lists its pending
    dependencies ("app.name"). Dependencies are followed transitively through
    pending migrations only (applied ones are already in the database).
    """
    errors = []
    by_label = {migration_label(entry): entry for entry in entries}
    for entry in entries:
        value = entry.get("phase")
        if value is not None and value not in PHASES:
            errors.append(
                f"{migration_label(entry)} has {PHASE_ATTRIBUTE} = {value!r}; use {BEFORE_SWITCH!r} or "
                f"{AFTER_SWITCH!r} (it is treated as {BEFORE_SWITCH} until fixed)."
            )
    for entry in entries:
        if phase_of(entry) != BEFORE_SWITCH:
            continue
        label = migration_label(entry)
        via = {}
        queue = list(entry.get("dependencies") or [])
        for dependency in queue:
            via.setdefault(dependency, None)
        found = []
        position = 0
        while position < len(queue):
            current = queue[position]
            position += 1
            parent = by_label.get(current)
            if parent is None:
                continue
            if phase_of(parent) == AFTER_SWITCH:
                found.append(current)
                continue  # one after_switch per path is enough
            for dependency in parent.get("dependencies") or []:
                if dependency not in via:
                    via[dependency] = current
                    queue.append(dependency)
        for after in found:
            path = []
            step = via.get(after)
            while step is not None:
                path.append(step)
                step = via.get(step)
            through = f" (through {', '.join(reversed(path))})" if path else ""
            errors.append(
                f"{label} is before_switch but depends on {after}{through}, which is after_switch: before-switch "
                f"migrations run before the switch and cannot need an after-switch one; mark {label} after_switch "
                "too, or remove the dependency."
            )
    return errors


def build_result(report, include_sql=False):
    """The module's return values (without ``failed_conditions``) from the inspector's report."""
    entries = report.get("pending") or []
    pending = [classify_migration(entry, include_sql) for entry in entries]
    plan = [migration_label(item) for item in pending]
    before = [migration_label(item) for item in pending if item["phase"] == BEFORE_SWITCH]
    after = [migration_label(item) for item in pending if item["phase"] == AFTER_SWITCH]
    return {
        "changed": False,
        "plan": plan,
        "pending": pending,
        "backward_compatible": all(
            item["compatibility"] == COMPATIBLE for item in pending if item["phase"] == BEFORE_SWITCH
        ),
        "destructive": any(item["destructive"] for item in pending),
        "unmigrated_changes": dict(report.get("unmigrated_changes") or {}),
        "conflicts": dict(report.get("conflicts") or {}),
        "unknown_applied": list(report.get("unknown_applied") or []),
        "inconsistent_history": report.get("inconsistent_history"),
        "squashed_unrecorded": list(report.get("squashed_unrecorded") or []),
        "phase_errors": phase_errors(entries),
        "before_switch": before,
        "after_switch": after,
        "django_version": report.get("django_version"),
        "database": dict(report.get("database") or {}),
    }


def failed_conditions(result, fail_on):
    """The ``fail_on`` conditions that hold for ``result``, in FAIL_ON_CHOICES order."""
    hits = {
        "unmigrated_changes": bool(result["unmigrated_changes"]),
        "conflicts": bool(result["conflicts"]),
        "unknown_applied": bool(result["unknown_applied"]),
        "inconsistent_history": bool(result["inconsistent_history"]),
        "phase_errors": bool(result["phase_errors"]),
        "pending": bool(result["plan"]),
        "incompatible": not result["backward_compatible"],
        "destructive": bool(result["destructive"]),
    }
    wanted = set(fail_on or [])
    return [name for name in FAIL_ON_CHOICES if name in wanted and hits[name]]


def _join(items):
    return "; ".join(items)


def _message_unmigrated(result):
    changes = [
        f"{app}: {description}"
        for app, descriptions in sorted(result["unmigrated_changes"].items())
        for description in descriptions
    ]
    return (
        f"{_join(changes)} — model changes without a migration file. Run `manage.py makemigrations` in "
        "development, commit the file, and deploy again; never run makemigrations on a server."
    )


def _message_conflicts(result):
    apps = [f"{app}: {', '.join(names)}" for app, names in sorted(result["conflicts"].items())]
    return (
        f"{_join(apps)} — conflicting migrations (more than one leaf in the app). Run `manage.py makemigrations "
        "--merge` in development, commit the merge migration, and deploy again."
    )


def _message_unknown_applied(result):
    return (
        f"{', '.join(result['unknown_applied'])} — recorded as applied in the database but missing from this "
        "release's code. The database is ahead of the code (a newer release migrated it, or migration files were "
        "deleted): deploy the release that has these files, or migrate back with that release before deploying "
        "this one."
    )


def _message_inconsistent(result):
    return (
        f"{result['inconsistent_history'].rstrip('.')} — inconsistent migration history: a migration is recorded "
        "as applied before one it depends on. Repair the django_migrations table (check the schema, then record "
        "the missing dependency) before migrating."
    )


def _message_phase_errors(result):
    return "Phase errors: " + " ".join(result["phase_errors"])


def _message_pending(result):
    return f"{', '.join(result['plan'])} — migrations not applied yet. Run `manage.py migrate` to apply them."


def _offending_operations(result, predicate):
    items = []
    for item in result["pending"]:
        if not predicate(item):
            continue
        details = [
            f"{op['description']} ({op['compatibility']}: {op['reason']})"
            for op in item["operations"]
            if op["compatibility"] != COMPATIBLE
        ]
        items.append(f"{migration_label(item)}: {' '.join(details)}")
    return items


def _message_incompatible(result):
    items = _offending_operations(
        result, lambda item: item["phase"] == BEFORE_SWITCH and item["compatibility"] != COMPATIBLE
    )
    return (
        f"{_join(items)} — not backward compatible with the release that is still running (before_switch "
        "migrations run while the old code serves traffic). Split the change: expand before the switch, contract "
        f'after it (set {PHASE_ATTRIBUTE} = "after_switch" on the contracting migration), or, once reviewed, set '
        f"{SAFE_ATTRIBUTE} = True."
    )


def _message_destructive(result):
    items = []
    for item in result["pending"]:
        if item["destructive"]:
            ops = ", ".join(op["description"] for op in item["operations"] if op["destructive"])
            items.append(f"{migration_label(item)} ({ops})")
    return (
        f"{_join(items)} — destroys data (drops a column or table, or runs DROP/TRUNCATE/DELETE). Take a backup "
        "and make sure the data is no longer needed before migrating."
    )


_MESSAGES = {
    "unmigrated_changes": _message_unmigrated,
    "conflicts": _message_conflicts,
    "unknown_applied": _message_unknown_applied,
    "inconsistent_history": _message_inconsistent,
    "phase_errors": _message_phase_errors,
    "pending": _message_pending,
    "incompatible": _message_incompatible,
    "destructive": _message_destructive,
}


def failure_message(result, conditions):
    """One paragraph per failed condition, naming each offending item and what to do."""
    return " ".join(_MESSAGES[name](result) for name in conditions)
