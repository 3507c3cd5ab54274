"""The classification table and the shaping of migration_status results (pure Python)."""

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _migration_rules as rules
from ansible_collections.greenlight.django.plugins.module_utils._migration_rules import (
    AFTER_SWITCH,
    COMPATIBLE,
    INCOMPATIBLE,
    UNKNOWN,
)

C, U, X = COMPATIBLE, UNKNOWN, INCOMPATIBLE  # X: incompatible
M = rules.MAYBE  # destructive: greenlight cannot know


def field(**overrides):
    facts = {
        "name": "f",
        "class": "django.db.models.fields.IntegerField",
        "null": False,
        "has_default": False,
        "has_db_default": False,
        "many_to_many": False,
        "is_relation": False,
        "related_to": None,
        "unique": False,
        "primary_key": False,
        "generated": False,
        "column": "f",
        "db_type": "integer",
        "db_check": None,
        "auto_through": None,
    }
    facts.update(overrides)
    return facts


def op(type_, emits_sql=True, module="django.db.migrations.operations.models", bases=None, **facts):
    result = {
        "type": type_,
        "module": module,
        "bases": bases if bases is not None else [type_, "Operation"],
        "django": module.startswith(("django.db.migrations.", "django.contrib.")),
        "description": f"{type_} description",
        "reversible": True,
        "emits_sql": emits_sql,
    }
    result.update(facts)
    return result


def alter(old, new, **facts):
    facts.setdefault("db_change", True)
    return op("AlterField", old_field=field(**old), new_field=field(**new), **facts)


# (id, facts, compatibility, destructive, start of the reason)
TABLE_CASES = [
    ("CreateModel", op("CreateModel"), C, False, "A new table"),
    ("DeleteModel", op("DeleteModel"), X, True, "Old code still queries this table"),
    ("DeleteModel unmanaged", op("DeleteModel", emits_sql=False), C, False, "Nothing runs on this database"),
    ("RenameModel", op("RenameModel", old_db_table="a_x", new_db_table="a_y"), X, False, "Old code queries the table"),
    ("RenameModel same table", op("RenameModel", emits_sql=False), C, False, "Nothing runs"),
    ("AlterModelTable", op("AlterModelTable"), X, False, "Old code queries the table under its old name"),
    ("AddField M2M", op("AddField", field=field(many_to_many=True, db_type=None)), C, False, "Creates a new join"),
    ("AddField generated", op("AddField", field=field(generated=True)), C, False, "The database computes"),
    ("AddField nullable", op("AddField", field=field(null=True)), C, False, "A nullable column"),
    ("AddField db_default", op("AddField", field=field(has_db_default=True)), C, False, "The column keeps"),
    ("AddField NOT NULL default", op("AddField", field=field(has_default=True)), X, False, "A NOT NULL column"),
    ("AddField NOT NULL", op("AddField", field=field()), X, False, "A NOT NULL column without db_default"),
    ("AddField NOT NULL FK", op("AddField", field=field(is_relation=True, db_type=None)), X, False, "A NOT NULL"),
    ("RemoveField", op("RemoveField", field=field()), X, True, "Old code still selects this column"),
    ("RenameField", op("RenameField", old_column="a", new_column="b"), X, False, "Old code uses the old column"),
    ("RenameField db_column", op("RenameField", emits_sql=False), C, False, "Nothing runs"),
    ("AlterField no old field", op("AlterField", new_field=field()), U, False, "The field's previous definition"),
    ("AlterField null->not null", alter({"null": True}, {"null": False}), X, False, "Old code may still write NULL"),
    ("AlterField not null->null", alter({"null": False}, {"null": True}), C, False, "Relaxes or keeps"),
    (
        "AlterField drops db_default",
        alter({"has_db_default": True}, {"has_db_default": False}),
        X,
        False,
        "Old code relies on the database default",
    ),
    ("AlterField becomes pk", alter({}, {"primary_key": True, "unique": True}), X, False, "Changes the primary key"),
    ("AlterField type", alter({"db_type": "integer"}, {"db_type": "varchar(20)"}), X, False, "Changes the column type"),
    (
        "AlterField narrower",
        alter({"db_type": "varchar(40)"}, {"db_type": "varchar(20)"}),
        X,
        False,
        "Changes the column type",
    ),
    ("AlterField wider", alter({"db_type": "varchar(20)"}, {"db_type": "varchar(40)"}), C, False, "Relaxes"),
    ("AlterField to text", alter({"db_type": "varchar(20)"}, {"db_type": "text"}), C, False, "Relaxes"),
    ("AlterField int->bigint", alter({"db_type": "integer"}, {"db_type": "bigint"}), C, False, "Relaxes"),
    (
        "AlterField FK target",
        alter(
            {"is_relation": True, "db_type": None, "related_to": "a.x"},
            {"is_relation": True, "db_type": None, "related_to": "a.y"},
        ),
        X,
        False,
        "Changes the column type",
    ),
    (
        "AlterField FK same target",
        alter(
            {"is_relation": True, "db_type": None, "related_to": "a.x"},
            {"is_relation": True, "db_type": None, "related_to": "a.x"},
        ),
        C,
        False,
        "Relaxes",
    ),
    ("AlterField unique", alter({"unique": False}, {"unique": True}), X, False, "Old code may insert duplicates"),
    ("AlterField drop unique", alter({"unique": True}, {"unique": False}), C, False, "Relaxes"),
    ("AlterField help_text only", alter({}, {}, emits_sql=False, db_change=False), C, False, "Nothing runs"),
    ("AlterUniqueTogether add", op("AlterUniqueTogether", added=[["a", "b"]], removed=[]), X, False, "Old code may"),
    ("AlterUniqueTogether remove", op("AlterUniqueTogether", added=[], removed=[["a", "b"]]), C, False, "Only removes"),
    ("AlterIndexTogether", op("AlterIndexTogether", added=[["a"]]), C, False, "Index change only"),
    (
        "AddConstraint unique",
        op("AddConstraint", constraint={"name": "u", "kind": "unique"}),
        X,
        False,
        "Old code may insert duplicates",
    ),
    (
        "AddConstraint check",
        op("AddConstraint", constraint={"name": "c", "kind": "check"}),
        U,
        False,
        "Old code may write rows this check",
    ),
    ("RemoveConstraint", op("RemoveConstraint"), C, False, "Only removes a constraint"),
    ("AddIndex", op("AddIndex"), C, False, "Index only"),
    ("RemoveIndex", op("RemoveIndex"), C, False, "Index only; no data is lost"),
    ("RenameIndex", op("RenameIndex"), C, False, "Index name only"),
    ("AlterModelOptions", op("AlterModelOptions", emits_sql=False), C, False, "Nothing runs"),
    ("AlterModelManagers", op("AlterModelManagers", emits_sql=None), C, False, "Python-side managers only"),
    ("AlterOrderWithRespectTo add", op("AlterOrderWithRespectTo", adds_order_column=True), X, False, "Adds a NOT"),
    (
        "AlterOrderWithRespectTo remove",
        op("AlterOrderWithRespectTo", removes_order_column=True),
        X,
        True,
        "Drops the _order column",
    ),
    (
        "HStoreExtension",
        op(
            "HStoreExtension",
            module="django.contrib.postgres.operations",
            bases=["HStoreExtension", "CreateExtension", "Operation"],
        ),
        C,
        False,
        "Installs a PostgreSQL extension",
    ),
    (
        "AddIndexConcurrently",
        op("AddIndexConcurrently", module="django.contrib.postgres.operations"),
        C,
        False,
        "Index only, built without",
    ),
    ("AlterOrderWithRespectTo same", op("AlterOrderWithRespectTo"), C, False, "Does not change the _order"),
    ("AlterModelTableComment", op("AlterModelTableComment"), C, False, "Table comment only"),
    (
        "AddConstraintNotValid",
        op("AddConstraintNotValid", module="django.contrib.postgres.operations", constraint={"kind": "check"}),
        U,
        False,
        "New rows written by old code are checked",
    ),
    (
        "ValidateConstraint",
        op("ValidateConstraint", module="django.contrib.postgres.operations"),
        C,
        False,
        "Validates existing rows",
    ),
    (
        "RemoveIndexConcurrently",
        op("RemoveIndexConcurrently", module="django.contrib.postgres.operations"),
        C,
        False,
        "Index only; no data is lost",
    ),
    ("CreateCollation", op("CreateCollation", module="django.contrib.postgres.operations"), C, False, "Creates a"),
    ("RemoveCollation", op("RemoveCollation", module="django.contrib.postgres.operations"), C, False, "Removes a"),
    ("RunPython", op("RunPython", emits_sql=None, has_reverse=False), U, M, "Runs arbitrary Python"),
    ("RunPython noop", op("RunPython", emits_sql=False, noop=True), C, False, "Nothing runs on this database"),
    (
        "RunSQL",
        op("RunSQL", sql_text=["UPDATE t SET a = 1"], has_reverse=True),
        U,
        M,
        "Raw SQL that may overwrite or remove data",
    ),
    ("RunSQL GRANT", op("RunSQL", sql_text=["GRANT DELETE ON t TO r"]), U, False, "Raw SQL that greenlight"),
    ("RunSQL DELETE", op("RunSQL", sql_text=["DELETE FROM t"]), U, True, "Raw SQL that deletes rows"),
    ("RunSQL DROP TABLE", op("RunSQL", sql_text=["DROP TABLE t"]), U, True, "Raw SQL that deletes rows"),
    ("RunSQL TRUNCATE", op("RunSQL", sql_text=["truncate t"]), U, True, "Raw SQL that deletes rows"),
    ("RunSQL empty", op("RunSQL", emits_sql=False, sql_text=[""], noop=True), C, False, "Nothing runs"),
    (
        "SeparateDatabaseAndState state only",
        op("SeparateDatabaseAndState", emits_sql=False, database_operations=[]),
        C,
        False,
        "SeparateDatabaseAndState without database_operations: state only",
    ),
    (
        "SeparateDatabaseAndState dropping",
        op(
            "SeparateDatabaseAndState",
            emits_sql=True,
            database_operations=[op("CreateModel"), op("RemoveField", field=field())],
        ),
        X,
        True,
        "Judged by its database_operations. RemoveField description: Old code still selects",
    ),
    (
        "SeparateDatabaseAndState third-party inside",
        op(
            "SeparateDatabaseAndState",
            emits_sql=None,
            database_operations=[op("Custom", module="myapp.ops", bases=[])],
        ),
        U,
        M,
        "Judged by its database_operations. Custom description: Third-party operation myapp.ops.Custom",
    ),
    (
        "third-party",
        op("LogMessage", module="shop.operations", bases=[], emits_sql=None),
        U,
        M,
        "Third-party operation shop.operations.LogMessage",
    ),
    (
        "third-party subclass of a Django op",
        op("MyAddField", module="shop.ops", bases=["AddField", "FieldOperation", "Operation"], field=field(null=True)),
        U,
        M,
        "Third-party operation shop.ops.MyAddField",
    ),
    (
        "Django op not in the table",
        op("AlterBrandNewThing", bases=["AlterBrandNewThing", "Operation"]),
        U,
        M,
        "Django operation django.db.migrations.operations.models.AlterBrandNewThing is not in greenlight's table",
    ),
    ("unreadable", op("AddField", error="KeyError: ('shop', 'x')"), U, False, "greenlight could not read"),
    # Net effect on the schema the serving code uses.
    ("AlterField db_column", alter({"column": "a"}, {"column": "b"}), X, False, "Changes the column name"),
    (
        "AlterField FK db_column",
        alter(
            {"is_relation": True, "db_type": None, "related_to": "a.x", "column": "x_id"},
            {"is_relation": True, "db_type": None, "related_to": "a.x", "column": "owner"},
        ),
        X,
        False,
        "Changes the column name",
    ),
    (
        "AlterField adds a CHECK (same type)",
        alter({"db_type": "integer"}, {"db_type": "integer", "db_check": '"f" >= 0'}),
        X,
        False,
        "Django adds a CHECK constraint",
    ),
    (
        "AlterField adds a CHECK (SQLite spelling)",
        alter({"db_type": "integer"}, {"db_type": "integer unsigned", "db_check": '"f" >= 0'}),
        X,
        False,
        "Django adds a CHECK constraint",
    ),
    (
        "AlterField keeps its CHECK",
        alter({"db_check": '"f" >= 0'}, {"db_check": '"f" >= 0', "null": True}),
        C,
        False,
        "Relaxes",
    ),
    (
        "AddField unique db_default",
        op("AddField", field=field(has_db_default=True, unique=True)),
        X,
        False,
        "A unique NOT NULL column",
    ),
    ("AddField unique nullable", op("AddField", field=field(null=True, unique=True)), C, False, "A nullable"),
    (
        "DeleteModel of a table created in the plan",
        op("DeleteModel", on_new_table=True),
        C,
        False,
        "The table was created earlier in this plan",
    ),
    (
        "RemoveField on a table created in the plan",
        op("RemoveField", field=field(), on_new_table=True),
        C,
        False,
        "The table was created earlier",
    ),
    ("RemoveField, fresh database", op("RemoveField", field=field(), fresh_database=True), C, False, "The database"),
    ("RenameModel renamed back", op("RenameModel", table_restored=True), C, False, "The same atomic migration"),
    ("AlterModelTable back", op("AlterModelTable", table_restored=True), C, False, "Gives the table back"),
    ("RenameModel back later", op("RenameModel", restored_by="a.0003_back"), X, False, "A later migration of this"),
    ("AlterModelTable back later", op("AlterModelTable", restored_by="a.0003"), X, False, "A later migration of"),
    (
        "AlterModelTable back of earlier",
        op("AlterModelTable", restores_rename_of="a.0002"),
        C,
        False,
        "Gives the table back the name the old code uses",
    ),
]


@pytest.mark.parametrize(
    ("facts", "compatibility", "destructive", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in TABLE_CASES],
)
def test_table(facts, compatibility, destructive, reason):
    verdict = rules.classify_operation(facts)
    assert verdict["compatibility"] == compatibility
    assert verdict["destructive"] is destructive
    assert verdict["reason"].startswith(reason), verdict["reason"]


def test_every_row_is_reachable_and_worded():
    tested = {case[1]["type"] for case in TABLE_CASES} | {
        name for case in TABLE_CASES for name in case[1].get("bases", [])
    }
    for operation, when, compatibility, destructive, reason in rules.RULES:
        assert operation == "*" or operation in tested, f"no test case for {operation}"
        assert callable(when)
        assert compatibility in (C, U, X)
        assert destructive in (True, False, M)
        assert reason[0].isupper() or reason.startswith("greenlight") or reason.startswith("_")
        assert reason.endswith(".")
        assert "\n" not in reason


@pytest.mark.parametrize(
    ("old", "new", "widens"),
    [
        ("varchar(10)", "varchar(10)", True),
        ("varchar(10)", "varchar(11)", True),
        ("varchar(10)", "varchar(9)", False),
        ("varchar(10)", "text", True),
        ("character varying(5)", "character varying(50)", True),
        ("text", "varchar(100)", False),
        ("smallint", "integer", True),
        ("integer", "bigint", True),
        ("bigint", "integer", False),
        ("numeric(10, 2)", "numeric(12, 2)", True),
        ("numeric(10, 2)", "numeric(12, 3)", False),
        ("numeric(10, 2)", "numeric(8, 2)", False),
        ("integer", "varchar(20)", False),
        ("bool", "boolean", False),
    ],
)
def test_widens_type(old, new, widens):
    assert rules.widens_type(old, new) is widens


@pytest.mark.parametrize(
    ("sql", "deletes"),
    [
        ("DELETE FROM notes_note", True),
        ("  delete from x where id = 1", True),
        ("TRUNCATE notes_note", True),
        ("ALTER TABLE t DROP COLUMN c", True),
        ("ALTER TABLE t DROP c", True),
        ("DROP TABLE t", True),
        ("DROP INDEX t_idx", False),
        ("ALTER TABLE t DROP CONSTRAINT c", False),
        ("ALTER TABLE t ALTER COLUMN c DROP DEFAULT", False),
        ("ALTER TABLE t ALTER COLUMN c DROP NOT NULL", False),
        ("CREATE TABLE t (a int REFERENCES b ON DELETE CASCADE)", False),
        ("UPDATE t SET note = 'please delete me'", False),
        ("-- we never DELETE here\nUPDATE t SET a = 1", False),
        ("/* DROP TABLE t */ SELECT 1", False),
        ("UPDATE t SET deleted = true", False),
    ],
)
def test_sql_deletes_data(sql, deletes):
    assert rules.sql_deletes_data({"sql_text": [sql]}) is deletes


@pytest.mark.parametrize(
    ("sql", "loss"),
    [
        ("CREATE TRIGGER t_audit AFTER DELETE ON t FOR EACH ROW EXECUTE FUNCTION audit()", False),
        ("DROP VIEW v", False),
        ("CREATE TRIGGER t_audit AFTER DELETE ON t BEGIN DELETE FROM x WHERE id = old.id; END", False),
        ("GRANT DELETE ON t TO app", False),
        ("CREATE INDEX CONCURRENTLY t_idx ON t (a)", False),
        (
            "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN DELETE FROM x; RETURN NULL; END; $$ LANGUAGE plpgsql",
            False,
        ),
        ("UPDATE t SET c = NULL", M),
        ("DO $$ BEGIN PERFORM 1; END $$", M),
        ("ALTER TABLE t ALTER COLUMN c TYPE integer USING c::integer", M),
        ("DROP TYPE mood CASCADE", M),
        ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2", M),
        ("FROBNICATE t", M),
        ("CREATE VIEW v AS SELECT 1; DELETE FROM t", True),
        ("ALTER TABLE t ADD COLUMN c int, DROP COLUMN d", True),
    ],
)
def test_sql_data_loss(sql, loss):
    assert rules.sql_data_loss({"sql_text": [sql]}) == loss


def entry(name, ops, app="notes", phase=None, safe=None, dependencies=(), sql=None):
    result = {
        "app": app,
        "name": name,
        "phase": phase,
        "safe": safe,
        "operations": ops,
        "dependencies": list(dependencies),
    }
    if sql is not None:
        result["sql"] = sql
    return result


def test_classify_migration_takes_the_worst_and_all_reversible():
    item = rules.classify_migration(
        entry(
            "0002_x",
            [
                op("CreateModel"),
                op("RunPython", emits_sql=None, has_reverse=False, reversible=False),
                op("RemoveField", field=field()),
            ],
        )
    )
    assert item["compatibility"] == X
    assert item["destructive"] is True
    assert item["reversible"] is False
    assert item["accepted"] is False
    assert item["phase"] == "before_switch"
    assert [o["compatibility"] for o in item["operations"]] == [C, U, X]
    assert set(item["operations"][0]) == {
        "type",
        "description",
        "compatibility",
        "destructive",
        "data_loss",
        "reversible",
        "reverse_loses_data",
        "fails",
        "lock",
        "lock_table",
        "new_code",
        "reason",
        "data_check",
    }
    assert [o["data_loss"] for o in item["operations"]] == ["no", "unknown", "yes"]
    assert item["data_loss"] == "yes"
    assert "sql" not in item


def test_a_table_created_in_the_plan_is_new_to_the_code_that_runs_then():
    create = entry("0002_create", [op("CreateModel")])
    drop = [op("DeleteModel", new_table_from="notes.0002_create")]
    phases = {"notes.0002_create": "before_switch", "notes.0003_drop": "before_switch"}
    item = rules.classify_migration(entry("0003_drop", drop), plan={"phases": phases})
    assert (item["compatibility"], item["destructive"], item["data_loss"]) == (C, False, "no")
    assert item["reverse_loses_data"] is False
    # After the switch the new code has written into the table created before it.
    phases["notes.0003_drop"] = AFTER_SWITCH
    item = rules.classify_migration(entry("0003_drop", drop, phase=AFTER_SWITCH), plan={"phases": phases})
    assert (item["compatibility"], item["destructive"]) == (X, True)
    assert rules.build_result({"pending": [create]})["destructive"] is False


def test_reverse_of_a_drop_loses_data_or_fails():
    not_null = rules.classify_migration(entry("0002", [op("RemoveField", field=field())]))
    assert not_null["reversible"] is False and not_null["reverse_loses_data"] is True
    nullable = rules.classify_migration(entry("0002", [op("RemoveField", field=field(null=True))]))
    assert nullable["reversible"] is True and nullable["reverse_loses_data"] is True
    with_default = rules.classify_migration(entry("0002", [op("RemoveField", field=field(has_default=True))]))
    assert with_default["reversible"] is True
    table = rules.classify_migration(entry("0002", [op("DeleteModel")]))
    assert table["reversible"] is True and table["reverse_loses_data"] is True
    added = rules.classify_migration(entry("0002", [op("AddField", field=field(null=True))]))
    assert added["reversible"] is True and added["reverse_loses_data"] is False


@pytest.mark.parametrize(
    ("facts", "atomic", "vendor", "fails"),
    [
        (op("AddIndexConcurrently", bases=["AddIndexConcurrently", "NotInTransactionMixin"], outside_transaction=True),
         True, "postgresql", "This operation cannot run inside a transaction"),
        (op("AddIndexConcurrently", bases=["AddIndexConcurrently", "NotInTransactionMixin"], outside_transaction=True),
         False, "postgresql", None),
        (op("RemoveIndexConcurrently", bases=["RemoveIndexConcurrently", "NotInTransactionMixin"]),
         False, "sqlite", "A concurrent index operation exists only on PostgreSQL"),
        (op("RunSQL", sql_text=["CREATE INDEX CONCURRENTLY i ON t (a)"], outside_transaction=True),
         True, "postgresql", "This operation cannot run inside a transaction"),
        (op("RunSQL", sql_text=["CREATE INDEX i ON t (a)"], outside_transaction=False), True, "postgresql", None),
        (op("SeparateDatabaseAndState", database_operations=[op("RunSQL", outside_transaction=True)]),
         True, "postgresql", "This operation cannot run inside a transaction"),
    ],
)  # fmt: skip
def test_operations_that_make_migrate_fail(facts, atomic, vendor, fails):
    migration = dict(entry("0002_index", [facts]), atomic=atomic)
    result = rules.build_result({"pending": [migration], "database": {"vendor": vendor}})
    reason = result["pending"][0]["operations"][0]["fails"]
    if fails is None:
        assert reason is None and result["failing"] == []
    else:
        assert reason.startswith(fails)
        assert result["failing"][0].startswith("notes.0002_index: ")
        assert rules.failed_conditions(result, rules.DEFAULT_FAIL_ON) == ["failing"]


@pytest.mark.parametrize(
    ("facts", "lock"),
    [
        (alter({"db_type": "integer"}, {"db_type": "bigint"}), "Changing the column type rewrites"),
        (alter({"db_type": "varchar(10)"}, {"db_type": "varchar(20)"}), None),
        (alter({"db_type": "varchar(10)"}, {"db_type": "text"}), None),
        (alter({"null": True}, {"null": False}), "SET NOT NULL scans"),
        (alter({}, {"db_index": True}), "Builds an index without CONCURRENTLY"),
        (op("AddField", field=field(null=True, is_relation=True, db_constraint=True)), "Adding a FOREIGN"),
        (op("AddField", field=field(null=True, is_relation=True, db_constraint=False)), None),
        (op("AddField", field=field(null=True)), None),
        (op("AddField", field=field(null=True, unique=True)), "Builds an index"),
        (op("AddIndex"), "CREATE INDEX without CONCURRENTLY"),
        (op("AddIndexConcurrently", module="django.contrib.postgres.operations"), None),
        (op("AddConstraint", constraint={"kind": "check"}), "Validates every row"),
        (op("AddIndex", on_new_table=True), None),
        (op("AddIndex", emits_sql=False), None),
        # Inside SeparateDatabaseAndState: the lock of its database_operations, which are what runs.
        (op("SeparateDatabaseAndState", database_operations=[op("AddIndex")]), "CREATE INDEX without CONCURRENTLY"),
        (op("SeparateDatabaseAndState", database_operations=[op("AddField", field=field(null=True)),
                                                             alter({"db_type": "integer"}, {"db_type": "bigint"})]),
         "Changing the column type rewrites"),
        (op("SeparateDatabaseAndState", database_operations=[op("AddIndex", on_new_table=True)]), None),
        (op("SeparateDatabaseAndState", emits_sql=False, database_operations=[]), None),
    ],
)  # fmt: skip
def test_postgresql_locks(facts, lock):
    kind = rules.operation_kind(facts)
    assert rules.lock_of(facts, kind, "sqlite") is None
    found = rules.lock_of(facts, kind, "postgresql")
    assert (found or "").startswith(lock or ""), found
    assert (found is None) == (lock is None)


def test_lock_table_of_separate_database_and_state_is_the_table_its_database_operation_locks():
    index = op("AddIndex", model={"db_table": "shop_item"})
    entry = {"app": "shop", "name": "0002", "operations": [op("SeparateDatabaseAndState", database_operations=[index])]}
    sizes = {"shop_item": {"estimated_rows": 10, "bytes": 8192}}
    item = rules.classify_migration(entry, plan={"vendor": "postgresql", "table_sizes": sizes})
    operation = item["operations"][0]
    assert operation["lock_table"] == {"name": "shop_item", "estimated_rows": 10, "bytes": 8192}
    assert operation["lock"].startswith("CREATE INDEX")
    assert "Table shop_item: about 10 rows, 8.0 kB" in operation["lock"]


@pytest.mark.parametrize(
    ("facts", "problem"),
    [
        (op("SeparateDatabaseAndState", emits_sql=False, database_operations=[], columns_kept=[field()]),
         "The new release no longer knows this column"),
        (op("SeparateDatabaseAndState", emits_sql=False, database_operations=[], columns_kept=[field(null=True)]),
         None),
        (op("SeparateDatabaseAndState", emits_sql=False, columns_kept=[field(has_db_default=True)]), None),
        (op("AddField", field=field(null=True, is_relation=True), references_old=["shop.product"]),
         "Once the new code writes rows that reference"),
        (op("AddField", field=field(null=True, is_relation=True), references_old=[]), None),
        (op("CreateModel", references_old=["shop.product"]), "Once the new code writes rows into this new table"),
        (op("CreateModel", references_old=["shop.product"], fresh_database=True), None),
    ],
)  # fmt: skip
def test_new_code_direction(facts, problem):
    found = rules.new_code_problem(facts, rules.operation_kind(facts))
    assert (found or "").startswith(problem or "") and (found is None) == (problem is None), found


def test_lock_says_how_big_the_table_is():
    facts = dict(alter({"db_type": "integer"}, {"db_type": "bigint"}), model={"db_table": "shop_item"})
    migration = entry("0002_big", [facts, dict(alter({}, {}), model={"db_table": "shop_item"})])
    sizes = {"shop_item": {"estimated_rows": 12345678, "bytes": 3 * 1024**3}}
    result = rules.build_result({"pending": [migration], "database": {"vendor": "postgresql"}, "table_sizes": sizes})
    big, other = result["pending"][0]["operations"]
    assert big["lock_table"] == {"name": "shop_item", "estimated_rows": 12345678, "bytes": 3 * 1024**3}
    assert big["lock"].endswith(" Table shop_item: about 12,345,678 rows, 3.0 GB (PostgreSQL's estimate).")
    assert result["locking"][0].endswith(big["lock"])
    assert other["lock"] is None and other["lock_table"] is None
    never_analyzed = {"shop_item": {"estimated_rows": None, "bytes": 8192}}
    result = rules.build_result(
        {"pending": [entry("0002_big", [facts])], "database": {"vendor": "postgresql"}, "table_sizes": never_analyzed}
    )
    assert result["pending"][0]["operations"][0]["lock"].endswith(
        " Table shop_item: an unknown number of rows (never analyzed), 8.0 kB (PostgreSQL's estimate)."
    )
    # No size known (the table was not found): the lock stays as it was, the size is null.
    result = rules.build_result({"pending": [entry("0002_big", [facts])], "database": {"vendor": "postgresql"}})
    operation = result["pending"][0]["operations"][0]
    assert operation["lock"].endswith("switch to it.") and operation["lock_table"]["bytes"] is None


def test_greenlight_safe_accepts_but_keeps_destructive():
    item = rules.classify_migration(
        entry("0003_x", [op("RunPython", emits_sql=None), op("RemoveField", field=field())], safe=True),
        include_sql=True,
    )
    assert item["compatibility"] == C
    assert item["accepted"] is True
    assert item["destructive"] is True
    assert item["sql"] == []
    reasons = [o["reason"] for o in item["operations"]]
    assert reasons[0].startswith("Accepted by greenlight_safe = True (otherwise unknown): Runs arbitrary Python")
    assert reasons[1].startswith("Accepted by greenlight_safe = True (otherwise incompatible): Old code")


def test_greenlight_safe_must_be_true():
    item = rules.classify_migration(entry("0003_x", [op("RunPython", emits_sql=None)], safe="yes"))
    assert item["compatibility"] == U and item["accepted"] is False


def test_phase_errors_direct_transitive_and_invalid():
    entries = [
        entry("0002_a", [], phase=AFTER_SWITCH),
        entry("0003_b", [], dependencies=["notes.0002_a"]),
        entry("0004_c", [], dependencies=["notes.0003_b"], phase="before_switch"),
        entry("0001_x", [], app="shop", phase="later"),
        entry("0002_y", [], app="shop", dependencies=["shop.0001_x", "notes.0001_applied"]),
    ]
    errors = rules.phase_errors(entries)
    assert errors == [
        "shop.0001_x has greenlight_phase = 'later'; use 'before_switch' or 'after_switch' (it is treated as "
        "before_switch until fixed).",
        "notes.0003_b is before_switch but depends on notes.0002_a, which is after_switch: before-switch "
        "migrations run before the switch and cannot need an after-switch one; mark notes.0003_b after_switch "
        "too, or remove the dependency.",
        "notes.0004_c is before_switch but depends on notes.0002_a (through notes.0003_b), which is after_switch: "
        "before-switch migrations run before the switch and cannot need an after-switch one; mark notes.0004_c "
        "after_switch too, or remove the dependency.",
    ]


def test_phase_errors_none_when_after_depends_on_before():
    entries = [
        entry("0002_a", []),
        entry("0003_b", [], phase=AFTER_SWITCH, dependencies=["notes.0002_a"]),
        entry("0004_c", [], phase=AFTER_SWITCH, dependencies=["notes.0003_b"]),
    ]
    assert rules.phase_errors(entries) == []


REPORT = {
    "ok": True,
    "django_version": "5.2.19",
    "database": {"alias": "default", "vendor": "sqlite"},
    "pending": [
        entry("0002_add", [op("AddField", field=field(null=True))]),
        entry("0003_drop", [op("RemoveField", field=field())], phase=AFTER_SWITCH, dependencies=["notes.0002_add"]),
    ],
    "unmigrated_changes": {},
    "conflicts": {},
    "unknown_applied": [],
    "inconsistent_history": None,
    "squashed_unrecorded": ["books.0001_squashed_0003_x"],
}


def test_build_result_splits_the_plan_and_ignores_after_switch_for_compatibility():
    result = rules.build_result(REPORT)
    assert result["changed"] is False
    assert result["plan"] == ["notes.0002_add", "notes.0003_drop"]
    assert result["before_switch"] == ["notes.0002_add"]
    assert result["after_switch"] == ["notes.0003_drop"]
    assert result["backward_compatible"] is True
    assert result["destructive"] is True
    assert result["squashed_unrecorded"] == ["books.0001_squashed_0003_x"]
    assert result["phase_errors"] == []
    assert result["database"] == {"alias": "default", "vendor": "sqlite"}
    assert set(result) == {
        "changed",
        "plan",
        "pending",
        "backward_compatible",
        "destructive",
        "data_loss",
        "failing",
        "locking",
        "new_code",
        "data_violations",
        "risky",
        "data_checks_skipped",
        "unmigrated_changes",
        "conflicts",
        "unknown_applied",
        "uninstalled_applied",
        "inconsistent_history",
        "squashed_unrecorded",
        "phase_errors",
        "before_switch",
        "after_switch",
        "django_version",
        "database",
        "databases",
        "ledger",
        "applied_outside_deploy",
        "changed_since_applied",
    }


def test_build_result_empty_plan():
    result = rules.build_result({"pending": [], "django_version": "4.2.30", "database": {}})
    assert result["plan"] == [] and result["backward_compatible"] is True and result["destructive"] is False


def _problem_result():
    report = dict(REPORT)
    report["pending"] = [
        entry("0002_add", [op("AddField", field=field())]),
        entry("0003_code", [op("RunPython", emits_sql=None)]),
        entry("0004_drop", [op("RemoveField", field=field())], phase=AFTER_SWITCH),
        entry("0005_late", [], dependencies=["notes.0004_drop"]),
    ]
    report["unmigrated_changes"] = {"notes": ["Add field priority to note"], "shop": ["Create model Cart"]}
    report["conflicts"] = {"notes": ["0002_a", "0002_b"]}
    report["unknown_applied"] = ["notes.0009_future"]
    report["inconsistent_history"] = (
        "Migration notes.0002_a is applied before its dependency notes.0001_initial on database 'default'."
    )
    return rules.build_result(report)


def test_failed_conditions_follow_fail_on():
    result = _problem_result()
    assert rules.failed_conditions(result, rules.DEFAULT_FAIL_ON) == [
        "unmigrated_changes",
        "conflicts",
        "unknown_applied",
        "inconsistent_history",
        "phase_errors",
    ]
    assert rules.failed_conditions(result, []) == []
    assert rules.failed_conditions(result, ["destructive", "pending", "incompatible"]) == [
        "pending",
        "incompatible",
        "destructive",
    ]
    clean = rules.build_result({"pending": []})
    assert rules.failed_conditions(clean, list(rules.FAIL_ON_CHOICES)) == []


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            "unmigrated_changes",
            "notes: Add field priority to note; shop: Create model Cart — model changes without a migration file. "
            "Run `manage.py makemigrations` in development, commit the file, and deploy again; never run "
            "makemigrations on a server.",
        ),
        (
            "conflicts",
            "notes: 0002_a, 0002_b — conflicting migrations (more than one leaf in the app). Run `manage.py "
            "makemigrations --merge` in development, commit the merge migration, and deploy again.",
        ),
        ("unknown_applied", "notes.0009_future — recorded as applied in the database but missing from this release"),
        (
            "inconsistent_history",
            "Migration notes.0002_a is applied before its dependency notes.0001_initial on database 'default' — "
            "inconsistent migration history",
        ),
        ("phase_errors", "Phase errors: notes.0005_late is before_switch but depends on notes.0004_drop"),
        (
            "pending",
            "notes.0002_add, notes.0003_code, notes.0004_drop, notes.0005_late — migrations not applied yet. Run "
            "`manage.py migrate` to apply them.",
        ),
        (
            "incompatible",
            "notes.0002_add: AddField description (incompatible: A NOT NULL column without db_default: Django "
            "drops the default",
        ),
        (
            "destructive",
            "notes.0004_drop (RemoveField description) — destroys data (drops a column or table, or runs "
            "DROP/TRUNCATE/DELETE). Take a backup",
        ),
    ],
)
def test_failure_messages(condition, expected):
    message = rules.failure_message(_problem_result(), [condition])
    assert message.startswith(expected), message
    assert "\n" not in message


def test_incompatible_message_lists_unknown_and_skips_after_switch():
    message = rules.failure_message(_problem_result(), ["incompatible"])
    assert "notes.0003_code: RunPython description (unknown: Runs arbitrary Python" in message
    assert "0004_drop" not in message
    assert message.endswith(
        '(set greenlight_phase = "after_switch" on the contracting migration), or, once '
        "reviewed, set greenlight_safe = True."
    )


def test_failure_message_joins_conditions():
    message = rules.failure_message(_problem_result(), ["conflicts", "pending"])
    assert message.index("conflicting migrations") < message.index("migrations not applied yet")


def _data_check(violations, keys=(), skipped=None, found=()):
    return {
        "checked": skipped is None,
        "violations": violations,
        "sample_keys": list(keys),
        "skipped": skipped,
        "seconds": 0.01,
        "found": list(found),
    }


def test_data_violations_name_the_migration_the_rows_and_what_to_do():
    duplicates = _data_check(7, [3, 4, 8, 9, 12], found=["7 rows share their Lower(F(name)) with another row"])
    nulls = _data_check(1, [5], found=["1 row holds NULL in qty, which becomes NOT NULL"])
    report = dict(REPORT)
    report["pending"] = [
        entry("0002_ci", [op("AddConstraint", data_check=duplicates), op("AddField", data_check=_data_check(0))]),
        entry(
            "0003_state",
            [op("SeparateDatabaseAndState", database_operations=[op("AddField"), op("AlterField", data_check=nulls)])],
        ),
        entry(
            "0004_big", [op("AlterField", data_check=_data_check(0, skipped="table big is in data_check_skip_tables"))]
        ),
    ]
    result = rules.build_result(report)
    assert result["data_violations"] == [
        "notes.0002_ci: AddConstraint description — 7 rows share their Lower(F(name)) with another row "
        "(primary keys 3, 4, 8, 9, 12, ...)",
        "notes.0003_state: SeparateDatabaseAndState description — 1 row holds NULL in qty, which becomes NOT NULL "
        "(primary keys 5)",
    ]
    assert result["data_checks_skipped"] == [
        "notes.0004_big: AlterField description — table big is in data_check_skip_tables"
    ]
    assert result["pending"][1]["operations"][0]["data_check"] == nulls
    assert rules.failed_conditions(result, ["data_violations"]) == ["data_violations"]
    message = rules.failure_message(result, ["data_violations"])
    assert message.startswith("notes.0002_ci: AddConstraint description — 7 rows share"), message
    assert "Fix those rows with a data migration (RunPython) that runs before this one, or clean the data by hand" in (
        message
    )
    assert message.endswith("Nothing was applied: the check only read the database.") and "\n" not in message
    # Checked without offending rows, or skipped: no refusal.
    report["pending"] = [entry("0002_ci", [op("AddConstraint", data_check=_data_check(0))]), report["pending"][2]]
    assert rules.failed_conditions(rules.build_result(report), ["data_violations"]) == []


def test_worst():
    assert rules.worst([]) == C
    assert rules.worst([C, U]) == U
    assert rules.worst([U, X, C]) == X
    assert rules.worst(["strange"]) == U


LEDGER_REPORT = {
    "pending": [],
    "ledger": {"exists": True, "events": 3, "since": "2026-01-01T00:00:00+00:00", "baseline_at": None},
    "applied_outside_deploy": [{"migration": "notes.0027_pinned", "applied_at": "2026-02-03T09:12:44+00:00"}],
    "changed_since_applied": [
        {
            "migration": "notes.0002_rating",
            "applied_at": "2026-01-01T00:00:05+00:00",
            "recorded": "applied",
            "recorded_at": "2026-01-01T00:00:05+00:00",
            "release": "20260101T000000Z",
            "recorded_checksum": "a" * 64,
            "code_checksum": "b" * 64,
        }
    ],
}


def test_ledger_findings_are_conditions_of_their_own_and_not_refused_by_default():
    result = rules.build_result(LEDGER_REPORT)
    assert result["ledger"]["exists"] is True
    assert rules.failed_conditions(result, rules.DEFAULT_FAIL_ON) == []
    assert rules.failed_conditions(result, list(rules.FAIL_ON_CHOICES)) == [
        "applied_outside_deploy",
        "changed_since_applied",
    ]
    assert rules.build_result({"pending": []})["ledger"] == {"exists": False}


def test_ledger_messages_name_each_migration_when_it_was_applied_and_what_to_do():
    result = rules.build_result(LEDGER_REPORT)
    outside = rules.failure_message(result, ["applied_outside_deploy"])
    assert outside.startswith(
        "notes.0027_pinned (applied 2026-02-03T09:12:44+00:00) — applied to the database outside a deploy"
    )
    assert "greenlight.django.ledger_repair" in outside and "\n" not in outside
    changed = rules.failure_message(result, ["changed_since_applied"])
    assert changed.startswith(
        "notes.0002_rating (applied 2026-01-01T00:00:05+00:00, recorded as applied by release 20260101T000000Z) — "
        "changed since applied"
    )
    assert "make the change in a new migration" in changed


def _ops(*types):
    return [{"type": name, "emits_sql": name != "AlterModelOptions", "django": True} for name in types]


@pytest.mark.parametrize(
    ("vendor", "types", "risky"),
    [
        ("mysql", ["AddField", "AddField"], "mixes 2 schema operations in one migration"),
        ("mysql", ["AddField", "RunPython"], "mixes 1 schema operation and 1 data operation in one migration"),
        ("mysql", ["AddField", "AlterModelOptions"], None),  # state only: nothing to leave half way
        ("mysql", ["RunPython", "RunSQL"], None),  # data only
        ("mysql", ["AddField"], None),
        ("postgresql", ["AddField", "AddField", "RunPython"], None),  # transactional DDL: rolled back whole
        ("sqlite", ["AddField", "RunPython"], None),
    ],
)
def test_migrations_mixing_schema_operations_are_risky_on_mysql_only(vendor, types, risky):
    entry = {"app": "notes", "name": "0004_x", "operations": _ops(*types)}
    item = rules.classify_migration(entry, plan={"vendor": vendor})
    if risky is None:
        assert item["risky"] is None
    else:
        assert item["risky"].startswith(risky) and "DDL is not transactional on MySQL/MariaDB" in item["risky"]


def test_risky_migrations_are_listed_and_fail_on_risky_names_them_with_the_fix():
    report = {
        "database": {"alias": "default", "vendor": "mysql"},
        "pending": [
            {"app": "notes", "name": "0004_two", "operations": _ops("AddField", "AddField")},
            {"app": "notes", "name": "0005_one", "operations": _ops("AddField")},
        ],
    }
    result = rules.build_result(report)
    assert result["risky"] == ["notes.0004_two"]
    assert rules.failed_conditions(result, ["risky"]) == ["risky"]
    message = rules.failure_message(result, ["risky"])
    assert message.startswith("notes.0004_two mixes 2 schema operations") and "Split it" in message
    assert "0005_one" not in message
