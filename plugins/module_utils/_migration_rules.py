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

# The "destructive" column of the table: True (drops data), False (keeps it),
# or MAYBE (greenlight cannot know: raw SQL or Python that may change rows).
# Results carry it as ``data_loss``: "yes", "no" or "unknown".
MAYBE = "maybe"
DATA_LOSS = {True: "yes", False: "no", MAYBE: "unknown"}
_LOSS_RANK = {"no": 0, "unknown": 1, "yes": 2}

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
    "failing",
    "uninstalled_applied",
    "data_violations",
    "applied_outside_deploy",
    "changed_since_applied",
    "risky",
)
DEFAULT_FAIL_ON = [
    "unmigrated_changes",
    "conflicts",
    "unknown_applied",
    "inconsistent_history",
    "phase_errors",
    "failing",
]


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


def on_new_table(facts):
    """The table was created earlier in the plan, after the code that runs now last used the schema.

    Set by ``classify_migration``: a before_switch operation on a table any
    earlier pending migration creates, or an after_switch one on a table an
    after_switch migration creates.
    """
    return bool(facts.get("on_new_table"))


def in_fresh_database(facts):
    """The database has no applied migration at all: no release serves from it."""
    return bool(facts.get("fresh_database"))


def table_restored(facts):
    """A table rename that the same atomic migration undoes (RenameModel + AlterModelTable back)."""
    return bool(facts.get("table_restored"))


def renamed_back_later(facts):
    """A later migration of the plan renames the table back: each commits on its own, so the old code sees
    the table missing in between."""
    return bool(facts.get("restored_by"))


def renames_back(facts):
    """Gives the table back the name it had before the plan, after an earlier migration of the plan renamed it."""
    return bool(facts.get("restores_rename_of"))


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


def adds_unique_not_null_column(facts):
    """unique=True and NOT NULL: every existing row and every old INSERT gets the same default."""
    field = _field(facts)
    return bool(field.get("unique")) and not field.get("null") and not field.get("generated")


def old_field_unknown(facts):
    return not facts.get("old_field")


def becomes_not_null(facts):
    return bool(_field(facts, "old_field").get("null")) and not _field(facts, "new_field").get("null")


def renames_column(facts):
    """The column name changes (db_column, also on a ForeignKey): a column rename."""
    old, new = _field(facts, "old_field"), _field(facts, "new_field")
    return bool(old.get("column")) and bool(new.get("column")) and old["column"] != new["column"]


def adds_or_changes_check(facts):
    """Django adds (or changes) the CHECK it creates with the column, e.g. PositiveIntegerField's >= 0."""
    old, new = _field(facts, "old_field"), _field(facts, "new_field")
    return bool(new.get("db_check")) and new.get("db_check") != old.get("db_check")


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
_SQL_DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.S)  # PostgreSQL function bodies
_SQL_TRIGGER_BODY = re.compile(
    r"(\bCREATE\s+(?:TEMP\w*\s+)?TRIGGER\b.*?)\bBEGIN\b.*?\bEND\b(?=\s*(?:;|$))", re.S | re.I
)
# Statements that remove rows, tables or columns when the migration runs.
_SQL_LOSES_DATA = re.compile(r"^(?:DELETE\b|TRUNCATE\b|DROP\s+(?:TABLE|SCHEMA|DATABASE|OWNED)\b)")
_SQL_ALTER_TABLE_DROP = re.compile(r"\bDROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?(\w+)")
_SQL_DROPS_NO_DATA = frozenset(
    ("CONSTRAINT", "INDEX", "DEFAULT", "NOT", "TRIGGER", "IDENTITY", "EXPRESSION", "PRIMARY", "FOREIGN")
)
# Statements that may overwrite values (or run code) when the migration runs.
_SQL_MAY_CHANGE_DATA = re.compile(r"^(?:UPDATE|MERGE|REPLACE|DO|CALL|EXECUTE|COPY)\b|\bON\s+CONFLICT\b.*\bUPDATE\b")
_SQL_ALTERS_TYPE = re.compile(r"^ALTER\s+TABLE\b.*\b(?:TYPE|USING)\b")
# Statements that define or remove objects without rows, or change permissions.
_SQL_KEEPS_DATA = re.compile(
    r"^(?:CREATE|ALTER|GRANT|REVOKE|COMMENT|SET|RESET|ANALYZE|VACUUM|REINDEX|CLUSTER|SELECT|INSERT|LOCK|BEGIN|"
    r"COMMIT|START|PRAGMA|REFRESH|NOTIFY|LISTEN|DROP\s+(?:VIEW|MATERIALIZED\s+VIEW|INDEX|TRIGGER|FUNCTION|"
    r"PROCEDURE|RULE|POLICY|SEQUENCE|COLLATION|STATISTICS)\b)"
)


def _sql_statements(text):
    """Upper-cased statements of ``text`` without comments, string literals or function bodies."""
    text = _SQL_COMMENTS.sub(" ", text)
    text = _SQL_STRINGS.sub("''", text)
    text = _SQL_DOLLAR_QUOTED.sub("$$ $$", text)
    text = _SQL_TRIGGER_BODY.sub(r"\1", text)  # SQLite trigger bodies hold statements of their own
    for statement in text.split(";"):
        statement = re.sub(r"\s+", " ", statement).strip().upper()
        if statement:
            yield statement


def sql_statement_data_loss(statement):
    """True, MAYBE or False for one upper-cased SQL statement."""
    if _SQL_LOSES_DATA.match(statement):
        return True
    if statement.startswith("ALTER TABLE"):
        if any(word not in _SQL_DROPS_NO_DATA for word in _SQL_ALTER_TABLE_DROP.findall(statement)):
            return True
        if _SQL_ALTERS_TYPE.match(statement):
            return MAYBE
    if _SQL_MAY_CHANGE_DATA.search(statement):
        return MAYBE
    if statement.startswith("DROP") and statement.endswith("CASCADE"):
        return MAYBE  # a cascade can drop columns or tables that depend on the object
    if _SQL_KEEPS_DATA.match(statement):
        return False
    return MAYBE


def sql_data_loss(facts):
    """The worst of the statements of RunSQL: True, MAYBE or False."""
    worst_seen = False
    for text in facts.get("sql_text") or []:
        for statement in _sql_statements(text):
            verdict = sql_statement_data_loss(statement)
            if verdict is True:
                return True
            if verdict == MAYBE:
                worst_seen = MAYBE
    return worst_seen


def sql_deletes_data(facts):
    """RunSQL deletes rows or drops a table or column when it runs."""
    return sql_data_loss(facts) is True


def sql_may_change_data(facts):
    """RunSQL may overwrite or remove data (UPDATE, DO blocks, type changes, CASCADE, unknown statements)."""
    return sql_data_loss(facts) == MAYBE


# ---------------------------------------------------------------------------
# THE TABLE. First matching row wins. "*" rows apply to every Django operation
# listed below; an operation that is not listed (third-party, or a Django
# operation this table does not know yet) is "unknown". SeparateDatabaseAndState
# is judged by its database_operations (see classify_operation).
#
# Columns: operation, when, compatibility, destructive (True, False or MAYBE),
# reason (why + what to do).
# ---------------------------------------------------------------------------

_RENAMED_BACK_LATER = (
    "A later migration of this plan renames the table back, but each migration commits on its own: in between, "
    "the table exists only under the new name, and old code's queries at that moment (and those waiting for the "
    "rename's lock) fail. Put the rename and the rename back in one atomic migration (makemigrations writes them "
    "together), where they cancel out."
)
_RENAMES_BACK = (
    "Gives the table back the name the old code uses, after an earlier migration of this plan renamed it (that "
    "migration is where the old code breaks)."
)

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
    ("*", on_new_table, COMPATIBLE, False,
     "The table was created earlier in this plan: the code that serves meanwhile has never used it, and it "
     "holds none of its data."),
    ("*", in_fresh_database, COMPATIBLE, False,
     "The database has no applied migration yet: no release serves from it."),

    ("CreateModel", always, COMPATIBLE, False,
     "A new table; old code never touches it."),

    ("DeleteModel", always, INCOMPATIBLE, True,
     "Old code still queries this table; remove the model from the code first, deploy, then delete it (mark "
     "the deleting migration after_switch)."),

    ("RenameModel", table_restored, COMPATIBLE, False,
     "The same atomic migration renames the table back (AlterModelTable to the old name): in one transaction "
     "the running code never sees the change."),
    ("RenameModel", renamed_back_later, INCOMPATIBLE, False,
     _RENAMED_BACK_LATER),
    ("RenameModel", renames_back, COMPATIBLE, False,
     _RENAMES_BACK),
    ("RenameModel", always, INCOMPATIBLE, False,
     "Old code queries the table under its old name; keep the old table name (Meta.db_table) so the rename is "
     "state-only, or copy to a new table over several releases."),

    ("AlterModelTable", table_restored, COMPATIBLE, False,
     "Gives the table back its old name within the same atomic migration: the renames cancel out."),
    ("AlterModelTable", renamed_back_later, INCOMPATIBLE, False,
     _RENAMED_BACK_LATER),
    ("AlterModelTable", renames_back, COMPATIBLE, False,
     _RENAMES_BACK),
    ("AlterModelTable", always, INCOMPATIBLE, False,
     "Old code queries the table under its old name; rename the table only after the switch (mark the "
     "migration after_switch), or keep db_table unchanged."),

    ("AddField", adds_many_to_many, COMPATIBLE, False,
     "Creates a new join table; old code never touches it."),
    ("AddField", adds_unique_not_null_column, INCOMPATIBLE, False,
     "A unique NOT NULL column: every existing row gets the same default, so the migration fails on a table "
     "with two or more rows, and every INSERT from old code gets that value too, so the second one fails; add "
     "it nullable (NULLs do not collide), fill distinct values, then make it unique and NOT NULL after the "
     "switch."),
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
    ("AlterField", renames_column, INCOMPATIBLE, False,
     "Changes the column name (db_column): a column rename, old code queries the old name; keep db_column, or "
     "add the new column, write both, backfill, and drop the old one after the switch."),
    ("AlterField", becomes_not_null, INCOMPATIBLE, False,
     "Old code may still write NULL into this column; deploy code that never writes NULL and backfill first, "
     "then set NOT NULL in a migration marked after_switch."),
    ("AlterField", drops_db_default_of_not_null, INCOMPATIBLE, False,
     "Old code relies on the database default of this NOT NULL column; drop db_default after the switch."),
    ("AlterField", becomes_primary_key, INCOMPATIBLE, False,
     "Changes the primary key under the old code; do it in a separate release after the switch."),
    ("AlterField", adds_or_changes_check, INCOMPATIBLE, False,
     "Django adds a CHECK constraint with the new field (for example >= 0 of a positive integer field): old "
     "code may write values it rejects, and rows that break it make the migration fail; deploy code that "
     "writes valid values first, then change the field after the switch."),
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

    ("RunPython", always, UNKNOWN, MAYBE,
     "Runs arbitrary Python that greenlight cannot judge; review it and set greenlight_safe = True on the "
     "migration if old code keeps working."),

    ("RunSQL", sql_deletes_data, UNKNOWN, True,
     "Raw SQL that deletes rows or drops a table or column (DELETE, TRUNCATE, DROP TABLE, ALTER TABLE ... DROP "
     "COLUMN): it removes data, and greenlight cannot judge it; review it and set greenlight_safe = True on "
     "the migration if old code keeps working."),
    ("RunSQL", sql_may_change_data, UNKNOWN, MAYBE,
     "Raw SQL that may overwrite or remove data (UPDATE, a DO block, a type change, CASCADE, or a statement "
     "greenlight does not know); review it and set greenlight_safe = True on the migration if old code keeps "
     "working."),
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
        return {"compatibility": UNKNOWN, "destructive": MAYBE, "reason": template % label}
    if kind == "SeparateDatabaseAndState" and not unreadable(facts):
        return _classify_separate(facts)
    for operation, when, compatibility, destructive, reason in RULES:
        if operation in ("*", kind) and when(facts):
            return {"compatibility": compatibility, "destructive": destructive, "reason": reason}
    return {"compatibility": UNKNOWN, "destructive": MAYBE, "reason": UNLISTED_REASON % kind}  # pragma: no cover


def worst_data_loss(values):
    """The worst of data_loss values ("yes" > "unknown" > "no")."""
    result = "no"
    for value in values:
        if _LOSS_RANK.get(value, 1) > _LOSS_RANK[result]:
            result = value if value in _LOSS_RANK else "unknown"
    return result


def _classify_separate(facts):
    nested = [classify_operation(item) for item in facts.get("database_operations") or []]
    if not nested:
        return {
            "compatibility": COMPATIBLE,
            "destructive": False,
            "reason": "SeparateDatabaseAndState without database_operations: state only, no SQL.",
        }
    compatibility = worst(item["compatibility"] for item in nested)
    loss = worst_data_loss(DATA_LOSS[item["destructive"]] for item in nested)
    destructive = {value: key for key, value in DATA_LOSS.items()}[loss]
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
# Operations that make ``migrate`` itself fail, whatever the code that serves.
# Each condition takes (facts, migration is atomic, database vendor).
# ---------------------------------------------------------------------------


def outside_transaction_in_atomic_migration(facts, atomic, vendor):
    return bool(facts.get("outside_transaction")) and atomic and vendor == "postgresql"


def concurrent_index_off_postgresql(facts, atomic, vendor):
    return "NotInTransactionMixin" in (facts.get("bases") or []) and vendor != "postgresql"


FAILURES = (
    (
        outside_transaction_in_atomic_migration,
        "This operation cannot run inside a transaction (CREATE/DROP INDEX CONCURRENTLY, VACUUM, ...), but the "
        "migration is atomic: migrate fails on PostgreSQL. Set atomic = False on the migration and keep the "
        "operation alone in it.",
    ),
    (
        concurrent_index_off_postgresql,
        "A concurrent index operation exists only on PostgreSQL: migrate fails on this database.",
    ),
)


def failure_of(facts, atomic, vendor):
    """Why ``migrate`` will fail on this operation, or None."""
    if facts.get("emits_sql") is False and not facts.get("database_operations"):
        return None
    for nested in facts.get("database_operations") or []:
        reason = failure_of(nested, atomic, vendor)
        if reason:
            return reason
    for when, reason in FAILURES:
        if when(facts, atomic, vendor):
            return reason
    return None


# ---------------------------------------------------------------------------
# Blue-green's other direction: the NEW release on this schema after the switch,
# and the old release again once the new one has written rows (the drain, or a
# switch back). Reported as ``new_code``. Columns: operation, when, reason.
# ---------------------------------------------------------------------------


def keeps_not_null_column_the_new_code_omits(facts):
    """A state-only RemoveField of a NOT NULL column without a database default."""
    for field in facts.get("columns_kept") or []:
        if field.get("null") or field.get("has_db_default") or field.get("many_to_many") or field.get("generated"):
            continue
        return True
    return False


def references_old_table(facts):
    """A new foreign key (or join table) that points at a table the old code deletes from."""
    return bool(facts.get("references_old"))


# fmt: off
NEW_CODE = (
    ("SeparateDatabaseAndState", keeps_not_null_column_the_new_code_omits,
     "The new release no longer knows this column, but the database keeps it NOT NULL without a database "
     "default: the new code's INSERTs fail after the switch. In database_operations make the column nullable "
     "(or give it a db_default), and drop it after the switch."),
    ("AddField", references_old_table,
     "Once the new code writes rows that reference an existing table (a foreign key, or a many-to-many join "
     "table, which references the model of the field as well as the target), the old code's deletes of the "
     "referenced rows fail (it does not know the new relation, so it neither cascades nor clears it): the old "
     "release must not serve again after the switch, or add the relation without a database constraint "
     "(db_constraint=False, or a through model whose foreign keys have it) until the old release is gone."),
    ("CreateModel", references_old_table,
     "Once the new code writes rows into this new table, the old code's deletes of the rows they reference "
     "fail (it does not know the new table, so it neither cascades nor clears it): the old release must not "
     "serve again after the switch."),
)
# fmt: on


def _first_reason(table, kind, facts):
    """The reason of the first row of ``table`` (operation, when, reason) that matches, or None."""
    for operation, when, reason in table:
        if operation == kind and when(facts):
            return reason
    return None


def new_code_problem(facts, kind):
    """What breaks for the new release (or for the old one after the new one wrote rows), or None."""
    if facts.get("fresh_database") or facts.get("emits_sql") is False and not facts.get("columns_kept"):
        return None
    return _first_reason(NEW_CODE, kind, facts)


# ---------------------------------------------------------------------------
# PostgreSQL locks: operations that rewrite a table, scan it, or build an index
# while holding a lock that blocks writes (or reads). The code keeps working,
# but on a big table requests queue behind the lock. Reported as ``lock``, with
# the recipe of strong_migrations / django-pg-zero-downtime-migrations.
# Columns: operation, when, reason and recipe.
# ---------------------------------------------------------------------------


def _binary_coercible(old_type, new_type):
    """PostgreSQL changes the type without rewriting the table: longer varchar, varchar to text, more precision."""
    if old_type == new_type:
        return True
    if _INTEGER_RANK.get(old_type) is not None or _INTEGER_RANK.get(new_type) is not None:
        return False  # int -> bigint rewrites every row
    return widens_type(old_type, new_type)


def rewrites_table(facts):
    old, new = _field(facts, "old_field"), _field(facts, "new_field")
    old_type, new_type = old.get("db_type"), new.get("db_type")
    if not old_type or not new_type:
        return False
    return not _binary_coercible(old_type.strip().lower(), new_type.strip().lower())


def builds_index(facts):
    """A new index (db_index, unique) on an existing column, or a new indexed column."""
    if facts.get("field"):
        field = _field(facts)
        return not field.get("many_to_many") and bool(field.get("db_index") or field.get("unique"))
    old, new = _field(facts, "old_field"), _field(facts, "new_field")
    return (bool(new.get("db_index")) and not old.get("db_index")) or becomes_unique(facts)


def adds_foreign_key(facts):
    field = _field(facts)
    return bool(field.get("is_relation")) and not field.get("many_to_many") and bool(field.get("db_constraint"))


def adds_together(facts):
    return bool(facts.get("added"))


# fmt: off
LOCKS = (
    ("AlterField", rewrites_table,
     "Changing the column type rewrites the whole table under an ACCESS EXCLUSIVE lock (int to bigint as well): "
     "reads and writes wait. On a big table add a new column, backfill it in batches, and switch to it."),
    ("AlterField", becomes_not_null,
     "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock. On a big table add CHECK (column IS NOT "
     "NULL) NOT VALID, VALIDATE CONSTRAINT in a later migration, then SET NOT NULL (PostgreSQL 12+ skips the "
     "scan) and drop the check."),
    ("AlterField", builds_index,
     "Builds an index without CONCURRENTLY: writes to the table wait until it is built. On a big table use "
     "AddIndexConcurrently (or CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX) in a "
     "migration with atomic = False."),
    ("AddField", adds_foreign_key,
     "Adding a FOREIGN KEY locks this table and the referenced one (SHARE ROW EXCLUSIVE) while every row is "
     "checked. On a big table add the constraint NOT VALID and VALIDATE CONSTRAINT in a later migration."),
    ("AddField", builds_index,
     "Builds an index without CONCURRENTLY: writes to the table wait until it is built. On a big table add the "
     "field without db_index/unique, then AddIndexConcurrently in a migration with atomic = False."),
    ("AddIndex", always,
     "CREATE INDEX without CONCURRENTLY: writes to the table wait until it is built. On a big table use "
     "AddIndexConcurrently in a migration with atomic = False."),
    ("AddConstraint", adds_unique_constraint,
     "Builds a unique index without CONCURRENTLY: writes to the table wait. On a big table create the unique "
     "index CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX."),
    ("AddConstraint", always,
     "Validates every row while writes wait. On a big table use AddConstraintNotValid, then ValidateConstraint in "
     "a later migration."),
    ("AlterUniqueTogether", adds_together,
     "Builds a unique index without CONCURRENTLY: writes to the table wait. On a big table create the unique "
     "index CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX."),
)
# fmt: on


def locking_operation(facts, kind, vendor):
    """(reason, facts of the operation that takes it) when this operation holds a lock that blocks the serving
    code on PostgreSQL, else (None, None). SeparateDatabaseAndState: the first of its database_operations that
    does (their SQL is what runs)."""
    if vendor != "postgresql" or facts.get("error"):
        return None, None
    for nested in facts.get("database_operations") or []:
        reason, locking = locking_operation(nested, operation_kind(nested), vendor)
        if reason:
            return reason, locking
    if facts.get("emits_sql") is False or facts.get("on_new_table") or facts.get("fresh_database"):
        return None, None
    reason = _first_reason(LOCKS, kind, facts)
    return (reason, facts) if reason else (None, None)


def lock_of(facts, kind, vendor):
    """Why this operation holds a lock that blocks the serving code on PostgreSQL, or None."""
    return locking_operation(facts, kind, vendor)[0]


def _human_bytes(size):
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def locked_table(facts, sizes):
    """{"name", "estimated_rows", "bytes"} of the table an operation locks, from the inspector's
    ``table_sizes`` (PostgreSQL's estimate; ``None`` values when it has none)."""
    name = (facts.get("model") or {}).get("db_table")
    if not name:
        return None
    size = (sizes or {}).get(name) or {}
    return {"name": name, "estimated_rows": size.get("estimated_rows"), "bytes": size.get("bytes")}


def size_sentence(table):
    """How big the locked table is, as a sentence for the lock's reason ("" when nothing is known)."""
    if not table or table["bytes"] is None:
        return ""
    rows = table["estimated_rows"]
    count = "an unknown number of rows (never analyzed)" if rows is None else f"about {rows:,} rows"
    return f" Table {table['name']}: {count}, {_human_bytes(table['bytes'])} (PostgreSQL's estimate)."


# ---------------------------------------------------------------------------
# Reversing: Django can reverse a RemoveField/DeleteModel, but only as an empty
# column or table; a NOT NULL column without any default cannot even be added
# back to a table with rows.
# ---------------------------------------------------------------------------


def _holds_data(facts, kind):
    return (
        kind in ("RemoveField", "DeleteModel")
        and facts.get("emits_sql") is not False
        and not facts.get("on_new_table")
        and not facts.get("fresh_database")
    )


def reverse_loses_data(facts, kind):
    """The reverse recreates the column or table empty: what was in it is gone."""
    return _holds_data(facts, kind)


def reverse_fails(facts, kind):
    """The reverse adds back a NOT NULL column without any default: it fails on a table with rows."""
    if kind != "RemoveField" or not _holds_data(facts, kind):
        return False
    field = _field(facts)
    if not field or field.get("null") or field.get("many_to_many") or field.get("generated"):
        return False
    has_value = field.get("has_default") or field.get("has_db_default") or field.get("blank") or field.get("auto_now")
    return not has_value


# ---------------------------------------------------------------------------
# Migrations, phases, the result
# ---------------------------------------------------------------------------


def migration_label(entry):
    return "{}.{}".format(entry["app"], entry["name"])


def phase_of(entry):
    value = entry.get("phase")
    return value if value in PHASES else BEFORE_SWITCH


def with_plan_facts(facts, phase, phases, fresh):
    """The operation's facts plus what only the whole plan tells: ``on_new_table``, ``fresh_database``."""
    facts = dict(facts)
    creator = facts.get("new_table_from")
    if creator:
        facts["on_new_table"] = phase == BEFORE_SWITCH or phases.get(creator) == AFTER_SWITCH
    facts["fresh_database"] = bool(fresh)
    if facts.get("database_operations"):
        facts["database_operations"] = [
            with_plan_facts(item, phase, phases, fresh) for item in facts["database_operations"]
        ]
    return facts


# Operations that change rows rather than the schema.
DATA_OPERATIONS = ("RunPython", "RunSQL")
# Databases whose DDL is not transactional: a migration stopped half way keeps its earlier schema operations.
NON_TRANSACTIONAL_DDL = {"mysql": "MySQL/MariaDB"}


def risk_on(vendor, operations):
    """Why the migration is risky on a database without transactional DDL, or None.

    Risky: more than one schema operation, or schema and data operations together. If a later one fails, the
    earlier ones stay applied - the schema is half way, a retry fails differently, and the release that serves
    meanwhile (blue-green) runs on it. State-only operations (no SQL) do not count.
    """
    engine = NON_TRANSACTIONAL_DDL.get(vendor)
    if not engine:
        return None
    schema = [
        facts
        for facts in operations
        if facts.get("type") not in DATA_OPERATIONS and facts.get("emits_sql") is not False
    ]
    data = [facts for facts in operations if facts.get("type") in DATA_OPERATIONS]
    if len(schema) < 2 and not (schema and data):
        return None
    counts = [(len(schema), "schema operation"), (len(data), "data operation")]
    what = " and ".join(f"{count} {name}{'s' if count > 1 else ''}" for count, name in counts if count)
    return (
        f"mixes {what} in one migration; DDL is not transactional on {engine}, so if a later operation fails the "
        "earlier ones stay applied and the schema is left half way (a retry then fails differently). Split it: "
        "one schema operation per migration, data migrations on their own"
    )


def classify_migration(entry, include_sql=False, plan=None):
    """One ``pending`` item of the result from the inspector's facts.

    ``plan``: {"phases": {"app.name": phase}, "vendor": ..., "fresh": bool, "table_sizes": {table: size}}
    about the whole pending plan and the database.
    """
    plan = plan or {}
    phase = phase_of(entry)
    accepted = entry.get("safe") is True
    atomic = entry.get("atomic", True) is not False
    operations = []
    for facts in entry.get("operations") or []:
        facts = with_plan_facts(facts, phase, plan.get("phases") or {}, plan.get("fresh"))
        kind = operation_kind(facts)
        verdict = classify_operation(facts)
        compatibility, reason = verdict["compatibility"], verdict["reason"]
        if accepted and compatibility != COMPATIBLE:
            reason = f"Accepted by {SAFE_ATTRIBUTE} = True (otherwise {compatibility}): {reason}"
            compatibility = COMPATIBLE
        operation = {
            "type": facts.get("type"),
            "description": facts.get("description"),
            "compatibility": compatibility,
            "destructive": verdict["destructive"] is True,
            "data_loss": DATA_LOSS[verdict["destructive"]],
            "reversible": bool(facts.get("reversible")) and not reverse_fails(facts, kind),
            "reverse_loses_data": reverse_loses_data(facts, kind),
            "fails": failure_of(facts, atomic, plan.get("vendor")),
            "lock": None,
            "lock_table": None,
            "new_code": new_code_problem(facts, kind),
            "reason": reason,
        }
        lock, locking = locking_operation(facts, kind, plan.get("vendor"))
        if lock:
            operation["lock_table"] = locked_table(locking, plan.get("table_sizes"))
            operation["lock"] = lock + size_sentence(operation["lock_table"])
        operation["data_check"] = data_check_of(facts)
        if facts.get("sql_error"):
            operation["sql_error"] = facts["sql_error"]
        operations.append(operation)
    item = {
        "app": entry["app"],
        "name": entry["name"],
        "phase": phase,
        "reversible": all(op["reversible"] for op in operations),
        "reverse_loses_data": any(op["reverse_loses_data"] for op in operations),
        "compatibility": worst(op["compatibility"] for op in operations),
        "destructive": any(op["destructive"] for op in operations),
        "data_loss": worst_data_loss(op["data_loss"] for op in operations),
        "fails": any(op["fails"] for op in operations),
        "accepted": accepted,
        "risky": risk_on(plan.get("vendor"), entry.get("operations") or []),
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


def _operations_with(pending, key):
    """``app.name: description — reason`` of every pending operation whose ``key`` is set."""
    return [
        f"{migration_label(item)}: {op['description']} — {op[key]}"
        for item in pending
        for op in item["operations"]
        if op[key]
    ]


def data_check_of(facts):
    """The operation's data check; for SeparateDatabaseAndState, the one of its database operations that found
    offending rows, else the first one there is. None when nothing needed checking."""
    if facts.get("data_check") is not None:
        return facts["data_check"]
    nested = [data_check_of(item) for item in facts.get("database_operations") or []]
    nested = [item for item in nested if item is not None]
    violated = [item for item in nested if item.get("violations")]
    return (violated or nested or [None])[0]


def _keys(keys):
    return ", ".join(str(key) for key in keys)


def data_violations(pending):
    """``app.name: description — what the rows hold (primary keys ...)`` of every check that found rows."""
    found = []
    for item in pending:
        for op in item["operations"]:
            check = op.get("data_check") or {}
            if check.get("violations"):
                what = "; ".join(check.get("found") or []) or f"{check['violations']} offending rows"
                found.append(
                    f"{migration_label(item)}: {op['description']} — {what} (primary keys {_keys(check['sample_keys'])}"
                    + (", ..." if check["violations"] > len(check["sample_keys"]) else "")
                    + ")"
                )
    return found


def data_checks_skipped(pending):
    """``app.name: description — why`` of every data check that did not run."""
    return [
        f"{migration_label(item)}: {op['description']} — {op['data_check']['skipped']}"
        for item in pending
        for op in item["operations"]
        if op.get("data_check") and op["data_check"].get("skipped")
    ]


def build_result(report, include_sql=False):
    """The module's return values (without ``failed_conditions``) from the inspector's report."""
    entries = report.get("pending") or []
    plan_facts = {
        "phases": {migration_label(entry): phase_of(entry) for entry in entries},
        "vendor": (report.get("database") or {}).get("vendor"),
        "fresh": bool(report.get("fresh_database")),
        "table_sizes": report.get("table_sizes") or {},
    }
    pending = [classify_migration(entry, include_sql, plan_facts) for entry in entries]
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
        "data_loss": worst_data_loss(item["data_loss"] for item in pending),
        "failing": _operations_with(pending, "fails"),
        "new_code": _operations_with(pending, "new_code"),
        "locking": _operations_with(pending, "lock"),
        "data_violations": data_violations(pending),
        "risky": [migration_label(item) for item in pending if item["risky"]],
        "data_checks_skipped": data_checks_skipped(pending),
        "unmigrated_changes": dict(report.get("unmigrated_changes") or {}),
        "conflicts": dict(report.get("conflicts") or {}),
        "unknown_applied": list(report.get("unknown_applied") or []),
        "uninstalled_applied": list(report.get("uninstalled_applied") or []),
        "inconsistent_history": report.get("inconsistent_history"),
        "squashed_unrecorded": list(report.get("squashed_unrecorded") or []),
        "phase_errors": phase_errors(entries),
        "before_switch": before,
        "after_switch": after,
        "django_version": report.get("django_version"),
        "database": dict(report.get("database") or {}),
        "databases": list(report.get("databases") or []),
        "ledger": dict(report.get("ledger") or {"exists": False}),
        "applied_outside_deploy": list(report.get("applied_outside_deploy") or []),
        "changed_since_applied": list(report.get("changed_since_applied") or []),
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
        "failing": bool(result["failing"]),
        "uninstalled_applied": bool(result["uninstalled_applied"]),
        "data_violations": bool(result.get("data_violations")),
        "applied_outside_deploy": bool(result.get("applied_outside_deploy")),
        "changed_since_applied": bool(result.get("changed_since_applied")),
        "risky": bool(result.get("risky")),
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


def _message_uninstalled_applied(result):
    apps = sorted({label.split(".", 1)[0] for label in result["uninstalled_applied"]})
    return (
        f"{', '.join(result['uninstalled_applied'])} — recorded as applied for app(s) {', '.join(apps)} that "
        "are not in INSTALLED_APPS. An app was removed (or is not installed in this release): the rows are "
        "harmless to migrate, and the app's tables stay until you drop them. If the app should be there, add it "
        "back to INSTALLED_APPS; if it is gone for good, `manage.py migrate <app> zero` with a release that still "
        "has it removes its tables and rows."
    )


def _message_failing(result):
    return f"{_join(result['failing'])} — `manage.py migrate` will fail on this database; fix the migration first."


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


def _message_data_violations(result):
    return (
        f"{_join(result['data_violations'])} — `manage.py migrate` would fail on the rows already in the database. "
        "Fix those rows with a data migration (RunPython) that runs before this one, or clean the data by hand, "
        "then deploy again. Nothing was applied: the check only read the database."
    )


LEDGER_ADVICE = (
    "Review each against the committed migration file (the ledger's table greenlight_migration_ledger and "
    "django_migrations say when and by what it was applied). If the database's schema is what the code's "
    "migration makes, accept it - playbook greenlight.django.ledger_repair (ledger_repair_accept: the names, "
    "ledger_repair_reason: why; role greenlight.django.migrate, tasks_from: accept) records who and why in the "
    "ledger; if it is not, restore a backup or migrate it back by hand, then deploy again."
)


def _message_applied_outside_deploy(result):
    items = [f"{item['migration']} (applied {item['applied_at']})" for item in result["applied_outside_deploy"]]
    return (
        f"{_join(items)} — applied to the database outside a deploy (recorded in django_migrations, not in the "
        "migration ledger): someone ran migrate (perhaps after makemigrations) on a server, so the database's "
        "history may come from a file nobody reviewed, even where its name matches the code's. " + LEDGER_ADVICE
    )


def _message_changed_since_applied(result):
    items = [
        f"{item['migration']} (applied {item['applied_at']}, recorded as {item['recorded']} by release "
        f"{item['release'] or 'unknown'})"
        for item in result["changed_since_applied"]
    ]
    return (
        f"{_join(items)} — changed since applied: the operations or dependencies of the migration file differ "
        "from those recorded when it was applied, so the database did not run what the code now says. Restore "
        "the file as it was and make the change in a new migration; or, if the change only renames or documents "
        "(same schema), accept it. " + LEDGER_ADVICE
    )


def _message_risky(result):
    items = [f"{migration_label(item)} {item['risky']}" for item in result["pending"] if item["risky"]]
    return f"{_join(items)}."


_MESSAGES = {
    "unmigrated_changes": _message_unmigrated,
    "conflicts": _message_conflicts,
    "unknown_applied": _message_unknown_applied,
    "inconsistent_history": _message_inconsistent,
    "phase_errors": _message_phase_errors,
    "pending": _message_pending,
    "incompatible": _message_incompatible,
    "destructive": _message_destructive,
    "failing": _message_failing,
    "uninstalled_applied": _message_uninstalled_applied,
    "data_violations": _message_data_violations,
    "applied_outside_deploy": _message_applied_outside_deploy,
    "changed_since_applied": _message_changed_since_applied,
    "risky": _message_risky,
}


def failure_message(result, conditions):
    """One paragraph per failed condition, naming each offending item and what to do."""
    return " ".join(_MESSAGES[name](result) for name in conditions)
