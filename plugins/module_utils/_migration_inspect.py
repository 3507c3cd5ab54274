# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

Migration inspector of ``greenlight.django.migration_status``.

The module does not run this code in Ansible's interpreter: it sends the text of
this file to the application's interpreter (``python -``, working directory = the
project) and reads back one JSON document printed between two marker lines that
carry a per-run nonce. Options arrive as JSON in the environment variable named
by ``OPTIONS_ENV`` (never on the command line).

What it does, in one process and without writing anything:

* imports the settings module, then starts Django once (``django.setup()``);
* opens the database read-only (SQLite ``mode=ro``; a read-only, rolled back
  transaction on PostgreSQL);
* builds the migration loader, checks history consistency and conflicts,
  computes the plan ``migrate`` would run, and reports raw facts about each
  operation of each pending migration (no judgement: classification happens
  on the Ansible side, see ``_migration_rules.py``);
* runs Django's autodetector in memory (like ``makemigrations --check
  --dry-run``, but no file is ever written);
* reads the migration ledger (``_ledger``, shipped beside this file): the
  applied migrations it does not know, and those whose code changed since;
* optionally collects the SQL of each pending migration like ``sqlmigrate``
  does (a ``collect_sql`` schema editor: nothing is executed).

Only the standard library is imported at module level: Ansible's interpreter
imports this file (to ship it) and has no Django.
"""

import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import time
import traceback
from contextlib import nullcontext, suppress
from urllib.parse import quote, unquote

OPTIONS_ENV = "GREENLIGHT_MIGRATION_STATUS_OPTIONS"
BEGIN_MARKER = "<<<GREENLIGHT-MIGRATION-STATUS-BEGIN"
END_MARKER = "<<<GREENLIGHT-MIGRATION-STATUS-END"
# "<<<GREENLIGHT-MIGRATION-STATUS-STAGE <nonce> <stage>" on stdout before each
# stage: when the process ends without a result, the last one says where.
STAGE_MARKER = "<<<GREENLIGHT-MIGRATION-STATUS-STAGE"
STAGES = {
    "settings": "importing the settings module",
    "setup": "starting Django (django.setup(): the apps and their models)",
    "database": "connecting to the database",
    "migrations": "loading the migration files",
    "plan": "reading the pending migrations",
    "models": "comparing the models with the migrations",
    "data": "checking the rows already in the tables against the pending operations (data checks)",
}
SCHEMA_VERSION = 1

# Operation classes whose module starts with one of these are Django's own:
# their database_forwards() only goes through the schema editor, so it is safe
# to call with a collect_sql editor. Anything else is a third-party operation.
DJANGO_MODULE_PREFIXES = ("django.db.migrations.", "django.contrib.")

# Phase marker values (class attribute ``greenlight_phase`` on a Migration).
PHASE_ATTRIBUTE = "greenlight_phase"
SAFE_ATTRIBUTE = "greenlight_safe"


class InspectionTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that user code's ``except Exception`` cannot swallow it."""


_RUN = {"nonce": "", "stdout": None, "stage": None}


def stage(name):
    """Say on stdout which stage starts (see STAGE_MARKER)."""
    _RUN["stage"] = name
    out = _RUN["stdout"]
    if out is not None:
        out.write(f"\n{STAGE_MARKER} {_RUN['nonce']} {name}\n")
        out.flush()


def where(exc, project=None):
    """``file:line`` of the innermost frame of the traceback outside Python and Django, or None."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename or ""
        if project and not os.path.abspath(name).startswith(project + os.sep):
            continue
        if not project and ("/django/" in name or "/lib/python" in name or name.startswith("<")):
            continue
        found = f"{name}, line {frame.lineno}"
    return found


def _timed_out(signum, frame):
    raise InspectionTimeout()


class InspectionError(Exception):
    """A problem the user must fix; ``kind`` lets the module word it."""

    def __init__(self, kind, message, **details):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details


def one_line(text):
    """Collapse whitespace so a message reads as one paragraph."""
    return re.sub(r"\s+", " ", str(text)).strip()


def exception_last_line(exc):
    """The last line of the traceback Python would print: ``Type: message``."""
    lines = traceback.format_exception_only(type(exc), exc)
    last = lines[-1].strip() if lines else type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.filename:
        last = f"{last} ({exc.filename}, line {exc.lineno})"
    return one_line(last)


def exception_message(exc):
    """``str(exc)`` on one line, or the class name when it is empty."""
    text = one_line(exc)
    return text or type(exc).__name__


# ---------------------------------------------------------------------------
# Field and model facts (pure state: nothing is rendered, nothing is queried)
# ---------------------------------------------------------------------------


def _has_db_default(field):
    method = getattr(field, "has_db_default", None)  # Django 5.0+
    if method is None:
        return False
    try:
        return bool(method())
    except Exception:  # pylint: disable=broad-except
        return False


def _column(field, name):
    column = getattr(field, "db_column", None)
    if column:
        return column
    if getattr(field, "many_to_many", False):
        return None
    if getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False):
        return f"{name}_id"
    return name


def _db_parameters(field, name, connection):
    """(type, check) of the column Django would create; (None, None) for relations, M2M and errors.

    The check is the CHECK constraint Django adds with the column (for example
    ``"price" >= 0`` of a PositiveIntegerField), from the same ``db_parameters``
    the schema editor uses.
    """
    if getattr(field, "is_relation", False):
        return None, None
    try:
        bound = field.clone()
        bound.set_attributes_from_name(name)
        params = bound.db_parameters(connection=connection)
    except Exception:  # pylint: disable=broad-except
        return None, None
    return params.get("type") or None, params.get("check") or None


def _target(field):
    """``app.model`` a relation points to (lower case), or None."""
    remote = getattr(field, "remote_field", None)
    if remote is None:
        return None
    model = getattr(remote, "model", None)
    if isinstance(model, str):
        label = model
    elif model is not None and hasattr(model, "_meta"):
        label = model._meta.label
    else:
        return None
    return label.lower()


def field_facts(field, name, connection):
    db_type, db_check = _db_parameters(field, name, connection)
    return {
        "name": name,
        "class": f"{type(field).__module__}.{type(field).__name__}",
        "null": bool(getattr(field, "null", False)),
        "has_default": bool(field.has_default()),
        "has_db_default": _has_db_default(field),
        "many_to_many": bool(getattr(field, "many_to_many", False)),
        "is_relation": bool(getattr(field, "is_relation", False)),
        "related_to": _target(field),
        "unique": bool(getattr(field, "unique", False)),
        "primary_key": bool(getattr(field, "primary_key", False)),
        "generated": bool(getattr(field, "generated", False)),
        "blank": bool(getattr(field, "blank", False)),
        "db_index": bool(getattr(field, "db_index", False)),
        "db_constraint": bool(getattr(field, "db_constraint", False)),
        "auto_now": bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)),
        "column": _column(field, name),
        "db_type": db_type,
        "db_check": db_check,
        "auto_through": _auto_through(field),
    }


def _auto_through(field):
    """True when a ManyToManyField owns its join table (no explicit through=)."""
    if not getattr(field, "many_to_many", False):
        return None
    through = getattr(field.remote_field, "through", None)
    if through is None:
        return True
    if isinstance(through, str):
        return False
    return bool(getattr(getattr(through, "_meta", None), "auto_created", False))


_DEFAULT_NON_DB_ATTRS = (
    "blank",
    "choices",
    "db_column",
    "editable",
    "error_messages",
    "help_text",
    "limit_choices_to",
    "on_delete",
    "related_name",
    "related_query_name",
    "validators",
    "verbose_name",
)


def _comparable(field):
    path, args, kwargs = field.deconstruct()[1:]
    for attr in getattr(field, "non_db_attrs", _DEFAULT_NON_DB_ATTRS):
        kwargs.pop(attr, None)
    if isinstance(kwargs.get("to"), str):
        kwargs["to"] = kwargs["to"].lower()
    return path, list(args), kwargs


def db_change(old_field, new_field, name):
    """Would Django's schema editor touch the database for this AlterField?

    Same test as ``BaseDatabaseSchemaEditor._field_should_be_altered``: the
    column name, or any deconstructed attribute that is not in the field's
    ``non_db_attrs`` (help_text, verbose_name, choices, validators...).
    """
    try:
        if _column(old_field, name) != _column(new_field, name):
            return True
        return _comparable(old_field) != _comparable(new_field)
    except Exception:  # pylint: disable=broad-except
        return None


def _default_table(app_label, model_name, connection):
    from django.db.backends.utils import truncate_name

    return truncate_name(f"{app_label}_{model_name.lower()}", connection.ops.max_name_length())


def _model_state(state, app_label, model_name):
    return state.models.get((app_label, model_name.lower()))


def model_facts(model_state, app_label, connection):
    if model_state is None:
        return {"found": False, "managed": True, "proxy": False, "db_table": None}
    options = model_state.options
    return {
        "found": True,
        "managed": bool(options.get("managed", True)),
        "proxy": bool(options.get("proxy", False)),
        "db_table": options.get("db_table") or _default_table(app_label, model_state.name, connection),
    }


def _state_field(model_state, name):
    if model_state is None:
        return None
    fields = model_state.fields
    if isinstance(fields, dict):
        return fields.get(name)
    for field_name, field in fields:  # very old state layout
        if field_name == name:
            return field
    return None


def _normalize_together(value):
    if not value:
        return set()
    value = list(value)
    if value and isinstance(value[0], str):
        value = [value]
    return {tuple(item) for item in value}


def _allowed(router, alias, app_label, **hints):
    try:
        return bool(router.allow_migrate(alias, app_label, **hints))
    except Exception:  # pylint: disable=broad-except
        return True


def _sql_texts(sql):
    """RunSQL.sql as a list of statement strings (params are left out)."""
    if sql is None:
        return []
    if isinstance(sql, (list, tuple)):
        texts = []
        for item in sql:
            if isinstance(item, (list, tuple)):
                item = item[0] if item else ""
            texts.append(str(item))
        return texts
    return [str(sql)]


class Context:
    """What every fact extractor needs."""

    def __init__(self, connection, alias, router):
        self.connection = connection
        self.alias = alias
        self.router = router
        self.state_broken = False
        # Tables created by the pending plan so far: db_table -> "app.name" of
        # the migration that creates it. The code that serves has never used them.
        self.created_in = {}
        self.migration = None  # "app.name" of the migration being inspected
        # Tables the plan renamed so far: current name -> (name before the plan,
        # "app.name" of the renaming migration, facts of the renaming operation).
        self.renamed = {}
        # Data checks: the options, whether the database has no applied migration
        # (no table has rows), the RunPython/RunSQL seen so far in the plan, and
        # the checks queued for run_data_checks.
        self.data = {"enabled": True, "values": False, "timeout": 10.0, "skip_tables": set()}
        self.fresh = False
        self.data_migrations = []
        self.data_requests = []


def state_tables(state, connection):
    """db_table of every managed, concrete model of ``state``."""
    tables = set()
    for (app_label, _model), model_state in state.models.items():
        options = model_state.options
        if options.get("proxy") or not options.get("managed", True):
            continue
        tables.add(options.get("db_table") or _default_table(app_label, model_state.name, connection))
    return tables


def operation_bases(op):
    """Names of the Django-defined classes in the operation's MRO, nearest first."""
    names = []
    for klass in type(op).__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(DJANGO_MODULE_PREFIXES):
            names.append(klass.__name__)
    return names


def is_django_operation(op):
    return (type(op).__module__ or "").startswith(DJANGO_MODULE_PREFIXES)


def _safe_describe(op):
    try:
        return one_line(op.describe())
    except Exception:  # pylint: disable=broad-except
        return type(op).__name__


def _safe_reversible(op):
    try:
        return bool(op.reversible)
    except Exception:  # pylint: disable=broad-except
        return False


def operation_facts(op, app_label, state, ctx):
    """Raw facts about one operation, computed against ``state`` (before it)."""
    facts = {
        "type": type(op).__name__,
        "module": type(op).__module__,
        "bases": operation_bases(op),
        "django": is_django_operation(op),
        "description": _safe_describe(op),
        "reversible": _safe_reversible(op),
        "emits_sql": None,
    }
    if not facts["django"]:
        return facts
    try:
        _django_operation_facts(op, app_label, state, ctx, facts)
    except Exception as exc:  # pylint: disable=broad-except
        facts["error"] = exception_last_line(exc)
        facts["emits_sql"] = None
    table = facts.get("old_db_table") or (facts.get("model") or {}).get("db_table")
    if table and table in ctx.created_in:
        facts["new_table_from"] = ctx.created_in[table]
    try:
        plan_data_check(op, app_label, state, ctx, facts)
    except Exception as exc:  # pylint: disable=broad-except  # an odd field: the check is skipped, not the inspection
        facts["data_check"] = data_check_skipped(f"the check could not be built: {exception_last_line(exc)}")
    return facts


def _track_rename(ctx, facts, old_table, new_table):
    """Pair a table rename with a later migration of the plan that renames the table back.

    Each migration commits on its own: between the two the table exists only
    under the other name, so the pair does not cancel out the way it does in
    one atomic migration (see _mark_restored_tables). Both operations learn of
    each other: ``restored_by`` on the first, ``restores_rename_of`` on the
    second.
    """
    if not facts.get("emits_sql") or old_table == new_table:
        return
    earlier = ctx.renamed.pop(old_table, None)
    if earlier is not None and earlier[0] == new_table and earlier[1] != ctx.migration:
        earlier[2]["restored_by"] = ctx.migration
        facts["restores_rename_of"] = earlier[1]
        return
    ctx.renamed[new_table] = (earlier[0] if earlier else old_table, ctx.migration, facts)


def _table_created(ctx, table, renamed_from=None):
    """Remember that the plan creates ``table`` (or renames a table it created)."""
    if renamed_from is None:
        ctx.created_in[table] = ctx.migration
    elif renamed_from in ctx.created_in:
        ctx.created_in[table] = ctx.created_in[renamed_from]


# Statements PostgreSQL refuses inside a transaction block.
_SQL_OUTSIDE_TRANSACTION = re.compile(
    r"\b(?:CONCURRENTLY|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CREATE\s+TABLESPACE)\b", re.I
)


def _django_operation_facts(op, app_label, state, ctx, facts):  # one branch per operation family
    from django.db import migrations

    connection = ctx.connection
    bases = facts["bases"]

    def model_allowed(model_name):
        return _allowed(ctx.router, ctx.alias, app_label, model_name=model_name.lower())

    def model_writes(model, model_name):
        return model_allowed(model_name) and model["managed"] and not model["proxy"]

    if isinstance(op, migrations.SeparateDatabaseAndState):
        nested = []
        if op.database_operations:
            inner = state.clone()
            for inner_op in op.database_operations:
                nested.append(operation_facts(inner_op, app_label, inner, ctx))
                inner_op.state_forwards(app_label, inner)
        facts["database_operations"] = nested
        facts["state_operations"] = [_safe_describe(inner_op) for inner_op in op.state_operations]
        facts["columns_kept"] = _columns_kept(op, app_label, state, connection)
        facts["reversible"] = facts["reversible"] and all(item["reversible"] for item in nested)
        facts["emits_sql"] = any(item["emits_sql"] is not False for item in nested) if nested else False
        return

    if isinstance(op, migrations.RunPython):
        noop = migrations.RunPython.noop
        facts["has_reverse"] = op.reverse_code is not None
        facts["noop"] = op.code is noop
        facts["allowed"] = _allowed(ctx.router, ctx.alias, app_label, **(op.hints or {}))
        facts["emits_sql"] = None if facts["allowed"] and not facts["noop"] else False
        return

    if isinstance(op, migrations.RunSQL):
        facts["has_reverse"] = op.reverse_sql is not None
        facts["sql_text"] = _sql_texts(op.sql)
        facts["noop"] = not any(text.strip() for text in facts["sql_text"])
        facts["allowed"] = _allowed(ctx.router, ctx.alias, app_label, **(op.hints or {}))
        facts["emits_sql"] = facts["allowed"] and not facts["noop"]
        facts["outside_transaction"] = any(_SQL_OUTSIDE_TRANSACTION.search(text) for text in facts["sql_text"])
        return

    if "NotInTransactionMixin" in bases:  # AddIndexConcurrently, RemoveIndexConcurrently
        facts["outside_transaction"] = True

    if isinstance(op, migrations.CreateModel):
        options = op.options or {}
        managed = bool(options.get("managed", True)) and not options.get("proxy", False)
        facts["model"] = {"managed": bool(options.get("managed", True)), "proxy": bool(options.get("proxy", False))}
        facts["emits_sql"] = managed and model_allowed(op.name)
        facts["references_old"] = _old_tables_referenced([field for _name, field in op.fields], state, ctx)
        if facts["emits_sql"]:
            _table_created(ctx, options.get("db_table") or _default_table(app_label, op.name, connection))
        return

    if isinstance(op, migrations.DeleteModel):
        model = model_facts(_model_state(state, app_label, op.name), app_label, connection)
        facts["model"] = model
        facts["emits_sql"] = model_writes(model, op.name)
        return

    if isinstance(op, migrations.RenameModel):
        old_state = _model_state(state, app_label, op.old_name)
        model = model_facts(old_state, app_label, connection)
        old_table = model["db_table"]
        explicit = old_state is not None and old_state.options.get("db_table")
        new_table = explicit or _default_table(app_label, op.new_name, connection)
        referencing_m2m = _m2m_pointing_to(state, f"{app_label}.{op.old_name_lower}")
        facts["model"] = model
        facts["old_db_table"] = old_table
        facts["new_db_table"] = new_table
        facts["m2m_references"] = referencing_m2m
        facts["emits_sql"] = model_writes(model, op.old_name) and (old_table != new_table or bool(referencing_m2m))
        _table_created(ctx, new_table, renamed_from=old_table)
        _track_rename(ctx, facts, old_table, new_table)
        return

    if isinstance(op, migrations.AlterModelTable):
        model = model_facts(_model_state(state, app_label, op.name), app_label, connection)
        new_table = op.table or _default_table(app_label, op.name, connection)
        facts["model"] = model
        facts["old_db_table"] = model["db_table"]
        facts["new_db_table"] = new_table
        facts["emits_sql"] = model_writes(model, op.name) and model["db_table"] != new_table
        _table_created(ctx, new_table, renamed_from=model["db_table"])
        _track_rename(ctx, facts, model["db_table"], new_table)
        return

    if isinstance(op, (migrations.AddField, migrations.RemoveField, migrations.AlterField, migrations.RenameField)):
        model_state = _model_state(state, app_label, op.model_name)
        model = model_facts(model_state, app_label, connection)
        facts["model"] = model
        writes = model_writes(model, op.model_name)
        if isinstance(op, migrations.AddField):
            field = field_facts(op.field, op.name, connection)
            facts["field"] = field
            facts["references_old"] = _old_tables_referenced([op.field], state, ctx)
            if field["many_to_many"] and _m2m_constrained(op.field) and model["found"]:
                # The join table references this model's table too: the old code's deletes there fail as well.
                if model["db_table"] not in ctx.created_in:
                    facts["references_old"] = sorted({*facts["references_old"], f"{app_label}.{op.model_name_lower}"})
            concrete = field["many_to_many"] is False or field["auto_through"] is True
            facts["emits_sql"] = writes and concrete
        elif isinstance(op, migrations.RemoveField):
            old = _state_field(model_state, op.name)
            if old is None:
                facts["emits_sql"] = writes
                return
            field = field_facts(old, op.name, connection)
            facts["field"] = field
            concrete = field["many_to_many"] is False or field["auto_through"] is True
            facts["emits_sql"] = writes and concrete
        elif isinstance(op, migrations.AlterField):
            old = _state_field(model_state, op.name)
            facts["new_field"] = field_facts(op.field, op.name, connection)
            if old is None:
                facts["emits_sql"] = writes
                return
            facts["old_field"] = field_facts(old, op.name, connection)
            change = db_change(old, op.field, op.name)
            facts["db_change"] = change
            facts["emits_sql"] = None if change is None else (writes and change)
        else:  # RenameField
            old = _state_field(model_state, op.old_name)
            if old is None:
                facts["emits_sql"] = writes
                return
            old_column = _column(old, op.old_name)
            new_column = _column(old, op.new_name)
            facts["old_column"] = old_column
            facts["new_column"] = new_column
            facts["emits_sql"] = writes and old_column != new_column
        return

    together = tuple(
        getattr(migrations, name) for name in ("AlterUniqueTogether", "AlterIndexTogether") if hasattr(migrations, name)
    )
    if isinstance(op, together):
        model = model_facts(_model_state(state, app_label, op.name), app_label, connection)
        model_state = _model_state(state, app_label, op.name)
        option = op.option_name
        old = _normalize_together(model_state.options.get(option) if model_state is not None else None)
        new = _normalize_together(op.option_value)
        facts["model"] = model
        facts["added"] = sorted([list(item) for item in new - old])
        facts["removed"] = sorted([list(item) for item in old - new])
        facts["emits_sql"] = model_writes(model, op.name) and bool(new ^ old)
        return

    if isinstance(op, migrations.AddConstraint) or "AddConstraintNotValid" in bases:
        from django.db.models import CheckConstraint, UniqueConstraint

        constraint = op.constraint
        if isinstance(constraint, UniqueConstraint):
            kind = "unique"
        elif isinstance(constraint, CheckConstraint):
            kind = "check"
        elif type(constraint).__name__ == "ExclusionConstraint":
            kind = "exclusion"
        else:
            kind = "other"
        model = model_facts(_model_state(state, app_label, op.model_name), app_label, connection)
        facts["model"] = model
        facts["constraint"] = {"name": getattr(constraint, "name", None), "kind": kind}
        facts["emits_sql"] = model_writes(model, op.model_name)
        return

    if isinstance(op, migrations.AlterOrderWithRespectTo):
        model_state = _model_state(state, app_label, op.name)
        model = model_facts(model_state, app_label, connection)
        before = model_state.options.get("order_with_respect_to") if model_state is not None else None
        facts["model"] = model
        facts["adds_order_column"] = bool(op.order_with_respect_to) and not before
        facts["removes_order_column"] = bool(before) and not op.order_with_respect_to
        changes_column = facts["adds_order_column"] or facts["removes_order_column"]
        facts["emits_sql"] = model_writes(model, op.name) and changes_column
        return

    model_name = getattr(op, "model_name", None) or getattr(op, "name", None)
    if isinstance(op, (migrations.AlterModelOptions, migrations.AlterModelManagers)):
        facts["emits_sql"] = False
        return
    if isinstance(model_name, str) and _model_state(state, app_label, model_name) is not None:
        model = model_facts(_model_state(state, app_label, model_name), app_label, connection)
        facts["model"] = model
        if not model_writes(model, model_name):
            facts["emits_sql"] = False
            return
    # Index operations, comments, extensions, collations...: SQL unless the
    # router keeps this app off the database.
    facts["emits_sql"] = _allowed(ctx.router, ctx.alias, app_label)


def _columns_kept(op, app_label, state, connection):
    """Fields that SeparateDatabaseAndState removes from the state while the database keeps their column."""
    from django.db import migrations

    touched = {
        (getattr(inner, "model_name_lower", None), getattr(inner, "name_lower", None))
        for inner in op.database_operations
    }
    kept = []
    for inner in op.state_operations:
        if not isinstance(inner, migrations.RemoveField) or (inner.model_name_lower, inner.name_lower) in touched:
            continue
        field = _state_field(_model_state(state, app_label, inner.model_name), inner.name)
        if field is not None:
            kept.append(dict(field_facts(field, inner.name, connection), model=inner.model_name_lower))
    return kept


def _old_tables_referenced(fields, state, ctx):
    """``app.model`` labels of tables that existed before the plan which these fields reference with a
    database constraint (a ForeignKey, or the join table of an auto-created ManyToManyField)."""
    found = []
    for field in fields:
        if not getattr(field, "is_relation", False):
            continue
        if not getattr(field, "many_to_many", False) and not getattr(field, "db_constraint", False):
            continue
        if getattr(field, "many_to_many", False) and not _m2m_constrained(field):
            continue
        label = _target(field)
        if not label or "." not in label:
            continue
        app_label, model_name = label.split(".", 1)
        model = model_facts(_model_state(state, app_label, model_name), app_label, ctx.connection)
        if model["found"] and model["db_table"] not in ctx.created_in:
            found.append(label)
    return sorted(set(found))


def _m2m_constrained(field):
    """A ManyToManyField whose own join table has foreign key constraints (no through=, db_constraint kept)."""
    return bool(_auto_through(field)) and bool(getattr(field.remote_field, "db_constraint", True))


def _m2m_pointing_to(state, label):
    """Auto-created M2M join tables whose column is named after ``label``'s model."""
    found = []
    for (app_label, model_name), model_state in state.models.items():
        fields = model_state.fields.items() if isinstance(model_state.fields, dict) else model_state.fields
        for name, field in fields:
            if getattr(field, "many_to_many", False) and _target(field) == label and _auto_through(field):
                found.append(f"{app_label}.{model_name}.{name}")
    return found


# ---------------------------------------------------------------------------
# SQL (include_sql): the sqlmigrate machinery, per migration, nothing executed
# ---------------------------------------------------------------------------


def _state_forwards(op, app_label, state, facts, ctx):
    """Apply the operation to the state; a failing third-party op must not stop the inspection."""
    try:
        op.state_forwards(app_label, state)
    except Exception as exc:  # pylint: disable=broad-except
        facts["error"] = f"state_forwards failed: {exception_last_line(exc)}"
        ctx.state_broken = True
        return False
    return True


def forward(migration, state, ctx, include_sql):
    """Advance ``state`` through ``migration``; return (operation facts, sql or None).

    Facts of each operation are read from the state just before it. With
    ``include_sql`` the operations also go through a collect_sql schema editor,
    the sqlmigrate machinery: nothing is executed. Only Django's own operations
    get ``database_forwards`` (they only talk to the schema editor); RunPython
    and third-party operations are listed as comments.
    """
    app_label = migration.app_label
    facts = []
    if not include_sql:
        for op in migration.operations:
            facts.append(operation_facts(op, app_label, state, ctx))
            _state_forwards(op, app_label, state, facts[-1], ctx)
        return facts, None

    from django.db import transaction

    connection = ctx.connection
    editor = connection.schema_editor(collect_sql=True, atomic=False)
    try:
        editor.__enter__()
    except Exception as exc:  # pylint: disable=broad-except
        for op in migration.operations:
            facts.append(operation_facts(op, app_label, state, ctx))
            _state_forwards(op, app_label, state, facts[-1], ctx)
        return facts, [f"-- greenlight: the schema editor did not start: {exception_last_line(exc)}"]
    collected = editor.collected_sql
    failed = None
    try:
        for op in migration.operations:
            facts.append(operation_facts(op, app_label, state, ctx))
            collected.append(f"-- {_safe_describe(op)}")
            before = len(collected) + len(editor.deferred_sql)
            old_state = state.clone()
            if not _state_forwards(op, app_label, state, facts[-1], ctx):
                collected.append("-- greenlight: SQL not generated (the operation's state change failed)")
                continue
            if not is_django_operation(op):
                label = f"{type(op).__module__}.{type(op).__name__}"
                collected.append(f"-- (third-party operation {label}: SQL not generated)")
                continue
            if not op.reduces_to_sql:
                collected.append("-- THIS OPERATION CANNOT BE WRITTEN AS SQL")
                continue
            try:
                if connection.in_atomic_block:
                    with transaction.atomic(using=ctx.alias):  # a savepoint: an error must not end the transaction
                        _database_forwards(op, app_label, editor, old_state, state)
                else:
                    _database_forwards(op, app_label, editor, old_state, state)
            except Exception as exc:  # pylint: disable=broad-except
                facts[-1]["sql_error"] = exception_last_line(exc)
                collected.append(f"-- greenlight: SQL not generated: {facts[-1]['sql_error']}")
                continue
            if before == len(collected) + len(editor.deferred_sql):
                collected.append("-- (no-op)")
    except Exception as exc:  # pylint: disable=broad-except
        failed = exc
    finally:
        try:
            editor.__exit__(None, None, None)
        except Exception as exc:  # pylint: disable=broad-except
            collected.append(f"-- greenlight: deferred SQL not generated: {exception_last_line(exc)}")
    if failed is not None:
        raise failed
    statements = []
    transactional = migration.atomic and connection.features.can_rollback_ddl
    if transactional:
        statements.append("BEGIN;")
    statements.extend(str(line) for line in collected)
    if transactional:
        statements.append("COMMIT;")
    return facts, statements


def _database_forwards(op, app_label, editor, from_state, to_state):
    from django.db import migrations

    if isinstance(op, migrations.SeparateDatabaseAndState):
        # Same as SeparateDatabaseAndState.database_forwards, but third-party
        # and RunPython operations inside it are not run.
        current = from_state
        for inner in op.database_operations:
            after = current.clone()
            inner.state_forwards(app_label, after)
            if is_django_operation(inner) and inner.reduces_to_sql:
                _database_forwards(inner, app_label, editor, current, after)
            else:
                name = type(inner).__name__
                editor.collected_sql.append(f"-- ({name} inside SeparateDatabaseAndState: SQL not generated)")
            current = after
        return
    if "NotInTransactionMixin" in operation_bases(op):
        _concurrent_index_forwards(op, app_label, editor, from_state, to_state)
        return
    op.database_forwards(app_label, editor, from_state, to_state)


def _concurrent_index_forwards(op, app_label, editor, from_state, to_state):
    """AddIndexConcurrently/RemoveIndexConcurrently without their own transaction guard.

    The guard would see the inspection's read-only transaction, not the
    migration's; whether the migration itself runs in one is judged from its
    ``atomic`` flag (see _migration_rules). Other backends have no concurrent
    index at all, and their schema editor would fail with a TypeError.
    """
    from django.db import NotSupportedError

    if editor.connection.vendor != "postgresql":
        raise NotSupportedError(f"{type(op).__name__} works only on PostgreSQL, not on {editor.connection.vendor}")
    if "AddIndex" in operation_bases(op):
        model = to_state.apps.get_model(app_label, op.model_name)
        editor.add_index(model, op.index, concurrently=True)
        return
    model = from_state.apps.get_model(app_label, op.model_name)
    index = from_state.models[app_label, op.model_name_lower].get_index_by_name(op.name)
    editor.remove_index(model, index, concurrently=True)


# ---------------------------------------------------------------------------
# Data checks: whether the rows already in a table satisfy what a pending
# operation adds (unique, NOT NULL, a shorter varchar, a CHECK, a foreign key).
# Planned while the plan is walked (from the state just before the operation),
# run afterwards with the ORM on the historical model rendered from that state:
# SELECTs only, each operation bounded by data_check_timeout.
# ---------------------------------------------------------------------------

DATA_CHECK_SAMPLE = 5
DATA_CHECK_VENDORS = ("postgresql", "mysql", "sqlite")
_VARCHAR_TYPE = re.compile(r"^(?:varchar|character varying)\((\d+)\)$", re.I)
_TEXT_TYPE = re.compile(r"^(?:text|varchar|character varying)$", re.I)


class DataCheckTimeout(Exception):
    """A data check did not finish within data_check_timeout."""


def _rows(count, verb=""):
    """``1 row points`` / ``2 rows point``: ``verb`` is the plural form, an s is added for one row."""
    if count == 1:
        return f"1 row {verb}s" if verb else "1 row"
    return f"{count} rows {verb}" if verb else f"{count} rows"


def _q_text(node):
    """A Q as a reader writes it: ``qty__gt=0 AND NOT (name='')``."""
    from django.db.models import Q

    if not isinstance(node, Q):
        if isinstance(node, tuple) and len(node) == 2:
            return f"{node[0]}={node[1]!r}"
        return one_line(node)
    parts = [_q_text(child) for child in node.children]
    text = f" {node.connector} ".join(f"({part})" if " AND " in part or " OR " in part else part for part in parts)
    return f"NOT ({text})" if node.negated else text


def data_check_skipped(reason):
    return {"checked": False, "violations": 0, "sample_keys": [], "skipped": reason, "seconds": 0.0, "found": []}


def _fills_nulls(field, vendor, connection):
    """Whether Django's AlterField to NOT NULL writes a value into the rows that hold NULL.

    PostgreSQL: only with a default (``UPDATE ... WHERE col IS NULL``, the "four-way" alteration) or
    a database default; a blank CharField's "" only becomes the column default, which fills no row.
    SQLite rebuilds the table with ``coalesce(col, <effective default>)``.
    """
    if _has_db_default(field):
        return True
    if vendor in ("postgresql", "mysql"):  # both take the base schema editor's UPDATE ... WHERE col IS NULL
        return field.has_default() and field.get_default() is not None
    return connection.SchemaEditorClass._effective_default(field) is not None


def _constraint_condition(constraint):
    """The Q of a CheckConstraint: ``condition`` since Django 5.1, ``check`` before."""
    attributes = vars(constraint)
    condition = attributes.get("condition")
    return condition if condition is not None else attributes.get("check")


def _unique_rule(keys, condition=None, nulls_distinct=True):
    labels = [key if isinstance(key, str) else one_line(key) for key in keys]
    what = ", ".join(labels)
    if condition is not None:
        what += f" (where {_q_text(condition)})"
    return {"kind": "unique", "keys": list(keys), "labels": labels, "condition": condition,
            "nulls_distinct": nulls_distinct, "what": what}  # fmt: skip


def _add_field_rules(op, state, ctx):
    field = op.field
    if getattr(field, "many_to_many", False) or getattr(field, "generated", False) or field.primary_key:
        return []
    db_default = _has_db_default(field)
    default = ctx.connection.SchemaEditorClass._effective_default(field)
    filled = db_default or default is not None
    rules = []
    column = _column(field, op.name)
    if not filled and not field.null:
        sentence = f"{{n}} NULL in the new NOT NULL column {column} (no default)"
        rules.append({"kind": "every_row", "min_rows": 1, "verb": "get", "sentence": sentence})
    if field.unique and filled:
        if db_default and type(field.db_default).__name__ != "Value":
            reason = "the new unique column gets a database default expression, which may differ per row: not checked"
            rules.append({"kind": "unsupported", "reason": reason})
        else:
            sentence = (
                f"{{n}} the same value in the new unique column {column} (Django adds the column with one default "
                "for every row)"
            )
            rules.append({"kind": "every_row", "min_rows": 2, "verb": "get", "sentence": sentence})
    if _constrained_fk(field) and filled and not db_default:
        rules.append(_fk_rule(field, op.name, state, ctx, value=default))
    return rules


def _constrained_fk(field):
    return (
        bool(getattr(field, "is_relation", False))
        and not getattr(field, "many_to_many", False)
        and bool(getattr(field, "db_constraint", False))
    )


def _fk_rule(field, name, state, ctx, value=None):
    label = _target(field)
    to_fields = getattr(field, "to_fields", None) or [None]
    target_table = None
    if label and "." in label:
        target_app, target_model = label.split(".", 1)
        target_table = model_facts(_model_state(state, target_app, target_model), target_app, ctx.connection)
        target_table = target_table["db_table"]
    return {"kind": "add_fk" if value is not None else "fk", "field": name, "target": label,
            "to_field": to_fields[0], "value": value, "target_new": target_table in ctx.created_in}  # fmt: skip


def _alter_field_rules(op, old, facts, state, ctx):
    new = op.field
    if facts.get("db_change") is not True or getattr(new, "many_to_many", False) or getattr(old, "many_to_many", False):
        return []
    if new.primary_key or old.primary_key or getattr(new, "generated", False) or getattr(old, "generated", False):
        return []
    vendor = ctx.connection.vendor
    name = op.name
    rules = []
    if new.unique and not old.unique:
        rules.append(_unique_rule([name]))
    if old.null and not new.null and not _fills_nulls(new, vendor, ctx.connection):
        rules.append({"kind": "null", "field": name, "column": _column(old, name)})
    new_type, new_check = _db_parameters(new, name, ctx.connection)
    old_type, old_check = _db_parameters(old, name, ctx.connection)
    if vendor in ("postgresql", "mysql") and new_type and old_type:  # SQLite does not enforce a varchar's length
        shorter = _VARCHAR_TYPE.match(new_type.strip())
        longer = _VARCHAR_TYPE.match(old_type.strip())
        if shorter and (
            _TEXT_TYPE.match(old_type.strip()) or (longer and int(longer.group(1)) > int(shorter.group(1)))
        ):
            rules.append({"kind": "length", "field": name, "max_length": int(shorter.group(1))})
    if new_check and new_check != old_check:
        rules.append({"kind": "db_check", "field": name, "sql": new_check})
    if _constrained_fk(new):
        same = (
            _constrained_fk(old)
            and _target(old) == _target(new)
            and (getattr(old, "to_fields", None) or [None])[0] == (getattr(new, "to_fields", None) or [None])[0]
        )
        if not same:
            rules.append(_fk_rule(new, name, state, ctx))
    return rules


def _constraint_rules(constraint):
    from django.db.models import CheckConstraint, UniqueConstraint

    if isinstance(constraint, UniqueConstraint):
        keys = list(constraint.fields) or list(constraint.expressions)
        nulls_distinct = getattr(constraint, "nulls_distinct", None) is not False
        return [_unique_rule(keys, constraint.condition, nulls_distinct)]
    if isinstance(constraint, CheckConstraint):
        return [{"kind": "check", "condition": _constraint_condition(constraint), "name": constraint.name}]
    return [{"kind": "unsupported", "reason": f"greenlight does not check a {type(constraint).__name__}"}]


def data_rules(op, app_label, state, ctx, facts):
    """What the rows of the operation's table must satisfy, as rules for run_data_checks; [] when nothing."""
    from django.db import migrations

    bases = facts.get("bases") or []
    if isinstance(op, migrations.AddField):
        return _add_field_rules(op, state, ctx)
    if isinstance(op, migrations.AlterField):
        old = _state_field(_model_state(state, app_label, op.model_name), op.name)
        return [] if old is None else _alter_field_rules(op, old, facts, state, ctx)
    if isinstance(op, migrations.AddConstraint):
        if "AddConstraintNotValid" in bases:  # NOT VALID: the rows already there are not checked
            return []
        return _constraint_rules(op.constraint)
    if "ValidateConstraint" in bases:
        model_state = _model_state(state, app_label, op.model_name)
        for constraint in (model_state.options.get("constraints") or []) if model_state is not None else []:
            if constraint.name == op.name:
                return _constraint_rules(constraint)
        return []
    if isinstance(op, migrations.AlterUniqueTogether):
        return [_unique_rule(list(keys)) for keys in facts.get("added") or []]
    return []


def _checked_model_name(op):
    return getattr(op, "model_name", None) or getattr(op, "name", None)


def _record_data_migration(op, app_label, facts, ctx):
    """Remember a RunPython/RunSQL of the plan: later checks of the tables it may change are skipped."""
    if facts.get("type") not in ("RunPython", "RunSQL") and not {"RunPython", "RunSQL"} & set(facts.get("bases") or []):
        return
    if facts.get("emits_sql") is False:
        return
    ctx.data_migrations.append(
        {"migration": ctx.migration, "type": facts["type"], "app": app_label, "sql": facts.get("sql_text") or []}
    )


def _data_migration_before(ctx, app_label, table):
    """The first RunPython of the same app, or RunSQL naming ``table``, earlier in the plan, or None."""
    word = re.compile(rf"(?<![\w$]){re.escape(table)}(?![\w$])", re.I)
    for item in ctx.data_migrations:
        if item["type"] == "RunPython" and item["app"] == app_label:
            return item
        if item["type"] == "RunSQL" and any(word.search(text) for text in item["sql"]):
            return item
    return None


def plan_data_check(op, app_label, state, ctx, facts):
    """Set ``facts["data_check"]``: skipped with a reason, or queued for run_data_checks (None until then)."""
    _record_data_migration(op, app_label, facts, ctx)
    if facts.get("error") or facts.get("emits_sql") is False or not facts.get("model"):
        return
    rules = data_rules(op, app_label, state, ctx, facts)
    if not rules:
        return
    table = facts["model"].get("db_table")
    if ctx.fresh or not table or table in ctx.created_in:
        return  # a table that the plan creates has no rows yet
    unsupported = [rule["reason"] for rule in rules if rule["kind"] == "unsupported"]
    rules = [rule for rule in rules if rule["kind"] != "unsupported"]
    reason = None
    earlier = _data_migration_before(ctx, app_label, table)
    if not ctx.data["enabled"]:
        reason = "data checks are off (data_checks=false)"
    elif table in ctx.data["skip_tables"]:
        reason = f"table {table} is in data_check_skip_tables"
    elif ctx.connection.vendor not in DATA_CHECK_VENDORS:
        reason = f"data checks run on PostgreSQL, MySQL/MariaDB and SQLite, not on {ctx.connection.vendor}"
    elif earlier is not None:
        reason = (
            f"not checked after a data migration: {earlier['migration']} runs {earlier['type']} earlier in the plan "
            f"and can change the rows of {table}"
        )
    elif not rules:
        reason = unsupported[0]
    if reason:
        facts["data_check"] = data_check_skipped(reason)
        return
    facts["data_check"] = None
    ctx.data_requests.append(
        {
            "facts": facts,
            "app": app_label,
            "model": _checked_model_name(op),
            "rules": rules,
            "state": state.clone(),
            "table": table,
        }  # fmt: skip
    )


class _Deadline:
    """Bounds the statements of one data check: statement_timeout on PostgreSQL, max_statement_time on MariaDB
    (max_execution_time on MySQL), a progress handler on SQLite."""

    def __init__(self, connection, seconds):
        self.connection = connection
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.fired = False

    def __enter__(self):
        if self.connection.vendor == "sqlite":
            self.connection.ensure_connection()
            self.connection.connection.set_progress_handler(self._progress, 1000)
        return self

    def __exit__(self, *exc):
        if self.connection.vendor == "sqlite" and self.connection.connection is not None:
            self.connection.connection.set_progress_handler(None, 1000)
        if self.connection.vendor == "mysql":
            with suppress(Exception), self.connection.cursor() as cursor:
                cursor.execute(self._mysql_limit(0))
        return False

    def _mysql_limit(self, seconds):
        if self.connection.mysql_is_mariadb:
            return f"SET SESSION max_statement_time = {float(seconds):f}"
        return f"SET SESSION max_execution_time = {int(seconds * 1000)}"

    def _progress(self):
        if time.monotonic() > self.end:
            self.fired = True
            return 1
        return 0

    def arm(self):
        """Call before each statement: the time left becomes its statement_timeout (PostgreSQL)."""
        left = self.end - time.monotonic()
        if left <= 0:
            self.fired = True
            raise DataCheckTimeout()
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = %s", [max(1, int(left * 1000))])
        elif self.connection.vendor == "mysql":
            with self.connection.cursor() as cursor:
                cursor.execute(self._mysql_limit(max(0.001, left)))

    def timed_out(self, exc):
        if self.fired:
            return True
        for error in (exc, getattr(exc, "__cause__", None)):
            code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
            if code == "57014":  # query_canceled: the statement_timeout
                return True
            args = getattr(error, "args", None) or ()
            if args and args[0] in (1969, 3024):  # MariaDB max_statement_time, MySQL max_execution_time
                return True
        return False


def _value(value):
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
    return value


def _sample(queryset, deadline, columns):
    """(primary keys, {label: value} per row) of the first offending rows in key order."""
    names = list(columns)
    deadline.arm()
    rows = list(queryset.values_list("pk", *names)[:DATA_CHECK_SAMPLE])
    keys = [row[0] for row in rows]
    values = [{columns[name]: _value(item) for name, item in zip(names, row[1:])} for row in rows]
    return keys, values


def _check_unique(model, base, rule, deadline):
    from django.db.models import Count, F, Sum, Window

    queryset = base.filter(rule["condition"]) if rule["condition"] is not None else base
    names, annotations, columns = [], {}, {}
    for position, key in enumerate(rule["keys"]):
        if isinstance(key, str):
            names.append(key)
            columns[model._meta.get_field(key).attname] = key
        else:
            expression = getattr(key, "expression", key) if type(key).__name__ == "OrderBy" else key
            name = f"_greenlight_key{position}"
            annotations[name] = expression
            names.append(name)
            columns.update((field, field) for field in _referenced_fields(expression, model))
    if annotations:
        queryset = queryset.annotate(**annotations)
    if rule["nulls_distinct"]:
        queryset = queryset.filter(**{f"{name}__isnull": False for name in names})
    groups = queryset.order_by().values(*names).annotate(_greenlight_n=Count("pk")).filter(_greenlight_n__gt=1)
    deadline.arm()
    stats = groups.aggregate(rows=Sum("_greenlight_n"), values=Count("_greenlight_n"))
    count = int(stats["rows"] or 0)
    if not count:
        return 0, [], [], None
    window = Window(Count("pk"), partition_by=[F(name) for name in names])
    offending = queryset.annotate(_greenlight_w=window).filter(_greenlight_w__gt=1).order_by(*names, "pk")
    keys, values = _sample(offending, deadline, columns)
    duplicated = stats["values"]
    sentence = f"{_rows(count, 'share')} their {rule['what']} with another row ({duplicated} duplicated " + (
        "value)" if duplicated == 1 else "values)"
    )
    return count, keys, values, sentence


def _count_and_sample(queryset, deadline, columns):
    deadline.arm()
    count = queryset.order_by().count()
    if not count:
        return 0, [], []
    keys, values = _sample(queryset.order_by("pk"), deadline, columns)
    return count, keys, values


def _check_rule(model, rule, ctx, deadline, state):
    """(offending rows, sample keys, sample values, sentence) of one rule."""
    from django.db.models import BooleanField, Exists, OuterRef, Q, Value
    from django.db.models.expressions import RawSQL
    from django.db.models.functions import Coalesce, Length

    base = model._base_manager.using(ctx.alias).all()
    kind = rule["kind"]
    if kind == "unique":
        return _check_unique(model, base, rule, deadline)
    if kind == "null":
        name = rule["field"]
        count, keys, values = _count_and_sample(base.filter(**{f"{name}__isnull": True}), deadline, {name: name})
        return count, keys, values, f"{_rows(count, 'hold')} NULL in {rule['column']}, which becomes NOT NULL"
    if kind == "length":
        name, limit = rule["field"], rule["max_length"]
        queryset = base.annotate(_greenlight_len=Length(name)).filter(_greenlight_len__gt=limit)
        count, keys, values = _count_and_sample(queryset, deadline, {name: name})
        return count, keys, values, f"{_rows(count, 'hold')} more than {limit} characters in {name}"
    if kind == "check":
        condition = Coalesce(rule["condition"], Value(True), output_field=BooleanField())
        queryset = base.filter(~Q(condition))
        columns = {name: name for name in _referenced_fields(rule["condition"], model)}
        count, keys, values = _count_and_sample(queryset, deadline, columns)
        return count, keys, values, f"{_rows(count, 'fail')} the check {rule['name']}"
    if kind == "db_check":
        # The CHECK that Django's own db_parameters() writes for the column (no user input).
        queryset = base.filter(RawSQL(f"NOT ({rule['sql']})", [], output_field=BooleanField()))  # noqa: S611
        name = rule["field"]
        count, keys, values = _count_and_sample(queryset, deadline, {name: name})
        return count, keys, values, f"{_rows(count, 'fail')} the column's check {rule['sql']}"
    if kind == "every_row":
        deadline.arm()
        count = base.order_by().count()
        if count < rule["min_rows"]:
            return 0, [], [], None
        keys, _values = _sample(base.order_by("pk"), deadline, {})
        return count, keys, [], rule["sentence"].format(n=_rows(count, rule["verb"]))
    if kind in ("fk", "add_fk"):
        target = state.apps.get_model(rule["target"])
        to_field = rule["to_field"] or target._meta.pk.name
        if kind == "add_fk":
            deadline.arm()
            if (
                not rule["target_new"]
                and target._base_manager.using(ctx.alias).filter(**{to_field: rule["value"]}).exists()
            ):
                return 0, [], [], None
            deadline.arm()
            count = base.order_by().count()
            keys, _values = _sample(base.order_by("pk"), deadline, {})
            sentence = f"{_rows(count, 'get')} {rule['value']!r}, which no row of {target._meta.db_table} has"
            return count, keys, [], sentence if count else None
        attname = model._meta.get_field(rule["field"]).attname
        queryset = base.filter(**{f"{attname}__isnull": False})
        if not rule["target_new"]:
            queryset = queryset.exclude(Exists(target._base_manager.filter(**{to_field: OuterRef(attname)})))
        count, keys, values = _count_and_sample(queryset, deadline, {attname: attname})
        return count, keys, values, f"{_rows(count, 'point')} to no row of {target._meta.db_table}"
    raise ValueError(f"unknown data check {kind}")  # pragma: no cover


def _referenced_fields(condition, model):
    """Concrete field names a Q refers to (the offending values of a CHECK), in model order."""
    from django.db.models import F, Q

    found = set()

    def walk(node):
        if isinstance(node, Q):
            for child in node.children:
                walk(child)
        elif isinstance(node, tuple) and len(node) == 2:
            found.add(str(node[0]).split("__", 1)[0])
            walk(node[1])
        elif isinstance(node, F):
            found.add(str(node.name).split("__", 1)[0])
        elif hasattr(node, "get_source_expressions"):
            for child in node.get_source_expressions():
                walk(child)

    walk(condition)
    names = []
    for field in model._meta.concrete_fields:
        if field.name in found or field.attname in found:
            names.append(field.attname)
    return names


def run_data_check(request, ctx):
    """The ``data_check`` of one operation: run every rule of it on the live database, read only."""
    from django.db import DatabaseError, transaction

    started = time.monotonic()
    seconds = ctx.data["timeout"]
    result = {"checked": True, "violations": 0, "sample_keys": [], "skipped": None, "seconds": 0.0, "found": []}
    values = []
    deadline = None
    try:
        model = request["state"].apps.get_model(request["app"], request["model"])
        deadline = _Deadline(ctx.connection, seconds)
        # PostgreSQL: a savepoint of the read-only transaction, rolled back, so that SET LOCAL and an error end
        # with it. SQLite (read-only file, autocommit) needs none, and its progress handler would interrupt the
        # ROLLBACK of one after the deadline.
        savepoint = transaction.atomic(using=ctx.alias) if ctx.connection.vendor == "postgresql" else nullcontext()
        with deadline, savepoint:
            for rule in request["rules"]:
                count, keys, rows, sentence = _check_rule(model, rule, ctx, deadline, request["state"])
                if not count:
                    continue
                result["violations"] += count
                result["found"].append(sentence)
                for key, row in zip(keys, rows or [None] * len(keys)):
                    if key not in result["sample_keys"] and len(result["sample_keys"]) < DATA_CHECK_SAMPLE:
                        result["sample_keys"].append(key)
                        values.append(row)
            if ctx.connection.vendor == "postgresql":
                transaction.set_rollback(True, using=ctx.alias)
    except (DataCheckTimeout, DatabaseError) as exc:
        if deadline is not None and deadline.timed_out(exc):
            result = data_check_skipped(f"statement timeout after {seconds:g} s")
        else:
            result = data_check_skipped(f"the check failed: {exception_last_line(exc)}")
    except Exception as exc:  # pylint: disable=broad-except  # an odd field or expression: say so, go on
        result = data_check_skipped(f"the check could not be built: {exception_last_line(exc)}")
    result["seconds"] = round(time.monotonic() - started, 3)
    if ctx.data["values"] and result["checked"]:
        result["sample_values"] = [row or {} for row in values]
    return result


def run_data_checks(ctx):
    """Run the queued data checks in plan order; each request's facts get their ``data_check``."""
    for request in ctx.data_requests:
        request["facts"]["data_check"] = run_data_check(request, ctx)
    ctx.data_requests = []


# ---------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------


def _marker(migration, attribute):
    return getattr(migration, attribute, None)


def _make_sqlite_read_only(connection, warnings):
    """Point SQLite at its file in read-only mode (or at an empty in-memory DB)."""
    if connection.vendor != "sqlite":
        return
    name = connection.settings_dict.get("NAME")
    if not name:
        return
    name = str(name)
    if name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return
    path = os.path.abspath(name)
    if not os.path.isdir(os.path.dirname(path)):
        raise InspectionError(
            "database_missing",
            f"The SQLite database {path} is in a directory that does not exist ({os.path.dirname(path)}): a wrong "
            "NAME in DATABASES or a volume that is not mounted, not an empty database.",
        )
    if not os.path.exists(path):
        warnings.append(f"The SQLite database {path} does not exist yet; it was inspected as an empty database.")
        connection.settings_dict["NAME"] = ":memory:"
        return
    connection.settings_dict["NAME"] = f"file:{quote(path)}?mode=ro"


def _prepare_sys_path(options):
    project = os.path.abspath(options.get("project_path") or os.getcwd())
    extra = [os.path.abspath(os.path.join(project, item)) for item in options.get("pythonpath") or []]
    rest = [item for item in sys.path if item not in ("", ".", project)]
    sys.path[:] = [project] + extra + rest
    sys.argv = [os.path.join(project, "manage.py")]
    return project


def start_django(options):
    """Import settings, then ``django.setup()`` once. Returns the django module."""
    try:
        import django
    except ImportError as exc:
        raise InspectionError(
            "django_missing",
            f"The interpreter {sys.executable} (Python {sys.version.split()[0]}) cannot import Django: "
            f"{exception_last_line(exc)}.",
        ) from exc
    settings_module = options.get("settings")
    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings_module:
        raise InspectionError("settings_missing", "No settings module is known (DJANGO_SETTINGS_MODULE is unset).")
    stage("settings")
    try:
        importlib.import_module(settings_module)
    except InspectionTimeout:
        raise
    except BaseException as exc:  # pylint: disable=broad-except  # settings may even call sys.exit()
        raise InspectionError(
            "settings_import",
            f"The settings module {settings_module!r} does not import: {exception_last_line(exc)}{_at(exc)}",
            settings=settings_module,
        ) from exc
    stage("setup")
    try:
        django.setup()
    except InspectionTimeout:
        raise
    except BaseException as exc:  # pylint: disable=broad-except
        raise InspectionError(
            "setup_failed",
            f"Django did not start with the settings module {settings_module!r}: {exception_last_line(exc)}{_at(exc)}",
            settings=settings_module,
        ) from exc
    return django


def _at(exc):
    place = where(exc)
    return f" (at {place})" if place else ""


def ledger_module():
    """_ledger: shipped beside this file in the application's interpreter, else the collection's own."""
    shipped = sys.modules.get("greenlight_django_ledger")
    if shipped is not None:
        return shipped
    from ansible_collections.greenlight.django.plugins.module_utils import _ledger

    return _ledger


def open_database(alias, warnings):
    from django.conf import settings
    from django.db import connections

    if alias not in settings.DATABASES:
        raise InspectionError(
            "unknown_database",
            "The database alias {!r} is not in DATABASES (known aliases: {}).".format(
                alias, ", ".join(sorted(settings.DATABASES)) or "none"
            ),
        )
    connection = connections[alias]
    stage("database")
    _make_sqlite_read_only(connection, warnings)
    try:
        connection.ensure_connection()
    except Exception as exc:  # pylint: disable=broad-except
        raise InspectionError(
            "database_unreachable",
            f"The database {alias!r} ({connection.vendor}) is not reachable: {exception_message(exc)}",
            vendor=connection.vendor,
        ) from exc
    return connection


def _pending_dependencies(graph, key, pending_keys):
    node = graph.node_map.get(key)
    if node is None:
        return []
    return sorted("{}.{}".format(*parent.key) for parent in node.parents if parent.key in pending_keys)


def _applied_state(loader, full_plan):
    """The state after the applied migrations, replayed in plan order (like ``migrate`` builds it)."""
    from django.db.migrations.state import ProjectState

    state = ProjectState(real_apps=loader.unmigrated_apps)
    applied = {key for key in loader.applied_migrations if key in loader.graph.nodes}
    for migration, _backwards in full_plan:
        if (migration.app_label, migration.name) in applied:
            migration.mutate_state(state, preserve=False)
    return state


def describe_pending(loader, full_plan, plan, ctx, include_sql):
    """Facts per pending migration, in plan order, plus the state after them all.

    The state starts from the applied migrations and moves forward through
    the plan, the way ``migrate`` does; at the end it is the state of every
    migration on disk, which the autodetector then compares with the models.
    Returns (entries, final_state or None when the state could not be built).
    """
    pending_keys = {(step[0].app_label, step[0].name) for step in plan}
    entries = []
    try:
        state = _applied_state(loader, full_plan)
    except Exception:  # pylint: disable=broad-except  # inconsistent history can break the replay
        state = None
    for migration, _backwards in plan:
        key = (migration.app_label, migration.name)
        if state is None:
            work_state = loader.project_state(key, at_end=False)
        else:
            work_state = state
        ctx.migration = "{}.{}".format(*key)
        entry = {
            "app": migration.app_label,
            "name": migration.name,
            "phase": _marker(migration, PHASE_ATTRIBUTE),
            "safe": _marker(migration, SAFE_ATTRIBUTE),
            "atomic": bool(getattr(migration, "atomic", True)),
            "replaces": ["{}.{}".format(*item) for item in (migration.replaces or [])],
            "dependencies": _pending_dependencies(loader.graph, key, pending_keys),
            "initial": bool(getattr(migration, "initial", False)),
        }
        operations, sql = forward(migration, work_state, ctx, include_sql)
        _mark_restored_tables(migration, operations, work_state, ctx)
        if sql is not None:
            entry["sql"] = sql
        entry["operations"] = operations
        entries.append(entry)
    if ctx.state_broken:
        state = None
    return entries, state


def _mark_restored_tables(migration, operations, end_state, ctx):
    """Flag table renames that the same atomic migration undoes (RenameModel + AlterModelTable back).

    Inside one transaction the code that serves never sees the renamed table:
    when the old table name exists again at the end of the migration (or the
    renamed table is one an earlier rename of the migration made) and no join
    table column was renamed, the renames cancel out.
    """
    renames = [facts for facts in operations if facts.get("old_db_table") and facts.get("emits_sql")]
    if not renames or not migration.atomic or not ctx.connection.features.can_rollback_ddl:
        return
    try:
        tables = state_tables(end_state, ctx.connection)
    except Exception:  # pylint: disable=broad-except
        return
    intermediate = set()  # tables an earlier rename of this migration created
    for facts in renames:
        before = facts["old_db_table"]
        if (before in tables or before in intermediate) and not facts.get("m2m_references"):
            facts["table_restored"] = True
        intermediate.add(facts.get("new_db_table"))


def _tables_of(operations):
    for facts in operations:
        table = (facts.get("model") or {}).get("db_table")
        if table:
            yield table
        yield from _tables_of(facts.get("database_operations") or [])


# One query for every table the pending operations touch: PostgreSQL's own
# estimate (pg_class.reltuples as of the last VACUUM/ANALYZE, scaled to the
# table's current number of pages, the way the planner does it) and the size
# of the table's main file. No table is scanned.
_TABLE_SIZES_SQL = """
SELECT t.name, c.reltuples, c.relpages, pg_relation_size(c.oid), current_setting('block_size')::int
FROM unnest(%s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))
"""


def table_sizes(connection, entries):
    """{table: {"estimated_rows": int or None, "bytes": int}} of the existing tables the plan touches.

    PostgreSQL only (the lock facts are PostgreSQL's); ``estimated_rows`` is
    None when the table was never analyzed (reltuples = -1).
    """
    if connection.vendor != "postgresql":
        return {}
    tables = sorted({table for entry in entries for table in _tables_of(entry.get("operations") or [])})
    if not tables:
        return {}
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:  # a savepoint
            cursor.execute(_TABLE_SIZES_SQL, [tables])
            rows = cursor.fetchall()
    except DatabaseError:
        return {}
    sizes = {}
    for name, reltuples, relpages, size, block_size in rows:
        estimate = None
        if reltuples is not None and reltuples >= 0:
            pages = size // block_size if block_size else 0
            if relpages > 0:
                estimate = int(round(reltuples / relpages * pages))
            elif pages == 0:
                estimate = 0  # analyzed and still empty
        sizes[name] = {"estimated_rows": estimate, "bytes": int(size)}
    return sizes


def _states_match(from_state, to_state):
    """True when every model of a migrated app is identical in both states.

    The autodetector is a function of the two states: when they hold equal
    ModelStates (same fields by deconstruction, options, bases, managers) it
    finds nothing, so it is skipped. Any difference, even one the autodetector
    would ignore, sends the comparison to the autodetector.
    """
    real_apps = from_state.real_apps
    migrated = {key: model for key, model in to_state.models.items() if key[0] not in real_apps}
    try:
        return migrated == from_state.models
    except Exception:  # pylint: disable=broad-except  # an odd field cannot be compared: use the autodetector
        return False


def unmigrated_changes(loader, from_state):
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.questioner import MigrationQuestioner
    from django.db.migrations.state import ProjectState

    # The base questioner never prompts and never exits: renames are not
    # guessed and NOT NULL additions get no default, like a non-interactive
    # makemigrations --dry-run. Nothing is written.
    questioner = MigrationQuestioner(specified_apps=set(), dry_run=True)
    try:
        if from_state is None:
            from_state = loader.project_state()
        to_state = ProjectState.from_apps(apps)
        if _states_match(from_state, to_state):
            return {}
        autodetector = MigrationAutodetector(from_state, to_state, questioner)
        changes = autodetector.changes(graph=loader.graph)
    except Exception as exc:  # pylint: disable=broad-except
        raise InspectionError(
            "autodetector_failed",
            f"Django could not compare the models with the migrations: {exception_last_line(exc)}",
        ) from exc
    result = {}
    for app_label in sorted(changes):
        descriptions = []
        for migration in changes[app_label]:
            descriptions.extend(_safe_describe(op) for op in migration.operations)
        if descriptions:
            result[app_label] = descriptions
    return result


def inspect_project(options):
    warnings = []
    _prepare_sys_path(options)
    django = start_django(options)
    alias = options.get("database") or "default"
    connection = open_database(alias, warnings)

    from django.db import router, transaction

    result = {
        "ok": True,
        "schema": SCHEMA_VERSION,
        "django_version": django.get_version(),
        "python_version": sys.version.split()[0],
        "database": {"alias": alias, "vendor": connection.vendor},
        "warnings": warnings,
    }
    result["databases"] = routed_databases(alias)
    ctx = Context(connection, alias, router)
    ctx.data.update(
        enabled=options.get("data_checks", True) is not False,
        values=bool(options.get("data_check_values")),
        timeout=float(options.get("data_check_timeout") or 10),
        skip_tables=set(options.get("data_check_skip_tables") or []),
    )
    if connection.vendor == "postgresql":
        # Everything below runs in one read-only transaction that is rolled
        # back: even code imported from migration files cannot write.
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
            _collect(result, connection, ctx, options)
            transaction.set_rollback(True, using=alias)
    else:
        if connection.vendor == "mysql":
            # Every statement of this session after this one is refused if it writes to a table.
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
        _collect(result, connection, ctx, options)
    return result


def routed_databases(inspected):
    """Every alias of DATABASES, in its order, and whether the project migrates it.

    Without DATABASE_ROUTERS Django migrates ``default`` only (``migrate`` without ``--database``): the other
    aliases (a replica, a legacy database read with raw SQL) are left alone. With routers, an alias is migrated
    when they allow the migrations of at least one model of an app that has migrations on it; an alias they
    allow nothing on (a read replica) is left alone. No connection is opened here.
    """
    from django.apps import apps
    from django.conf import settings
    from django.db import connections, router

    routers = list(getattr(settings, "DATABASE_ROUTERS", None) or [])
    migrated_apps = [
        config for config in apps.get_app_configs() if _has_migrations(config) and list(config.get_models())
    ]
    found = []
    for alias in settings.DATABASES:
        try:
            vendor = connections[alias].vendor
        except Exception:  # pylint: disable=broad-except  # a backend that does not import: said below
            vendor = ""
        if not routers:
            labels = sorted(config.label for config in migrated_apps) if alias == "default" else []
            why = (
                "Django migrates default when the project has no DATABASE_ROUTERS"
                if alias == "default"
                else "no DATABASE_ROUTERS entry sends migrations to it"
            )
        else:
            labels = sorted(
                config.label
                for config in migrated_apps
                if any(_model_allowed(router, alias, model) for model in config.get_models(include_auto_created=True))
            )
            why = (
                "the routers allow the migrations of " + ", ".join(labels)
                if labels
                else "the routers allow no migration on it (a replica, or a database the project only reads)"
            )
        found.append(
            {
                "alias": alias,
                "vendor": vendor,
                "migrated": bool(labels) or alias == inspected,
                "apps": labels,
                "why": why,
            }
        )
    return found


def _has_migrations(config):
    from django.db.migrations.loader import MigrationLoader

    module_name, _explicit = MigrationLoader.migrations_module(config.label)
    if module_name is None:  # MIGRATION_MODULES maps the app to None
        return False
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def _model_allowed(router, alias, model):
    try:
        return bool(router.allow_migrate_model(alias, model))
    except Exception:  # pylint: disable=broad-except  # a router that fails is Django's to report at migrate
        return True


def _collect(result, connection, ctx, options):
    from django.db import DatabaseError
    from django.db.migrations.exceptions import InconsistentMigrationHistory
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.recorder import MigrationRecorder

    stage("migrations")
    try:
        executor = MigrationExecutor(connection)
    except DatabaseError as exc:
        message = exception_message(exc)
        if connection.vendor == "sqlite" and "not a database" in message:
            raise InspectionError(
                "not_a_database",
                f"The file {connection.settings_dict.get('NAME')} of the database {ctx.alias!r} is not an SQLite "
                f"database ({message}).",
            ) from exc
        raise InspectionError(
            "database_error",
            f"The database {ctx.alias!r} ({connection.vendor}) could not be read: {message}",
            vendor=connection.vendor,
        ) from exc
    except InspectionTimeout:
        raise
    except BaseException as exc:  # pylint: disable=broad-except  # broken migration files, even sys.exit()
        raise InspectionError(
            "migrations_load", f"Django could not load the migrations: {exception_last_line(exc)}{_at(exc)}"
        ) from exc
    loader = executor.loader
    recorder = MigrationRecorder(connection)
    recorded = set(recorder.migration_qs.values_list("app", "name")) if recorder.has_table() else set()

    try:
        loader.check_consistent_history(connection)
        result["inconsistent_history"] = None
    except InconsistentMigrationHistory as exc:
        result["inconsistent_history"] = exception_message(exc)

    result["conflicts"] = {app: sorted(names) for app, names in sorted(loader.detect_conflicts().items())}

    replaced = set()
    for migration in loader.replacements.values():
        replaced.update(tuple(item) for item in migration.replaces)
    from django.apps import apps

    installed = {config.label for config in apps.get_app_configs()}
    unknown = sorted(key for key in recorded if key not in loader.disk_migrations and key not in replaced)
    # A whole app label the code no longer has (removed from INSTALLED_APPS)
    # is not a migration the code is missing: report it apart.
    result["unknown_applied"] = ["{}.{}".format(*key) for key in unknown if key[0] in installed]
    result["uninstalled_applied"] = ["{}.{}".format(*key) for key in unknown if key[0] not in installed]
    result["fresh_database"] = not recorded
    ctx.fresh = not recorded
    result["squashed_unrecorded"] = sorted(
        "{}.{}".format(*key) for key in loader.replacements if key in loader.applied_migrations and key not in recorded
    )

    # Before the plan is described: nothing has run an operation of a migration yet.
    result.update(ledger_module().findings(connection, loader))

    # The plan on an empty database orders every migration; the applied ones
    # build the starting state. With a consistent history the pending plan is
    # that order without the applied migrations (what migration_plan() returns,
    # without walking the graph a second time).
    stage("plan")
    leaves = loader.graph.leaf_nodes()
    full_plan = executor.migration_plan(leaves, clean_start=True)
    if result["inconsistent_history"] is None:
        applied = loader.applied_migrations
        plan = [step for step in full_plan if (step[0].app_label, step[0].name) not in applied]
    else:
        plan = executor.migration_plan(leaves)
    entries, final_state = describe_pending(loader, full_plan, plan, ctx, bool(options.get("include_sql")))
    result["pending"] = entries
    result["table_sizes"] = table_sizes(connection, entries)
    stage("data")
    run_data_checks(ctx)
    if result["inconsistent_history"] is not None:
        # The state replayed from the database's history misses the migrations
        # recorded out of order; compare the models with the migrations' own
        # state instead, or a missing record reads as a model change.
        final_state = None
    stage("models")
    result["unmigrated_changes"] = unmigrated_changes(loader, final_state)


def _secret_values(options):
    """Values that must never be printed: DB passwords and the given env values."""
    values = set()
    for key in options.get("secret_env") or []:
        value = os.environ.get(key)
        if value:
            values.add(value)
    settings = sys.modules.get("django.conf")
    settings = getattr(settings, "settings", None)
    if settings is not None and settings.configured:
        for database in getattr(settings, "DATABASES", {}).values():
            password = database.get("PASSWORD")
            if password:
                values.add(str(password))
    for value in list(values):
        match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:([^@/]+)@", value)
        if match:
            values.add(match.group(1))
            values.add(unquote(match.group(1)))
    return sorted((value for value in values if value), key=len, reverse=True)


def scrub(value, secrets):
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "********")
        return value
    if isinstance(value, dict):
        return {key: scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, secrets) for item in value]
    return value


def _close_connections():
    db = sys.modules.get("django.db")
    if db is None:
        return
    try:
        db.connections.close_all()
    except Exception:  # pylint: disable=broad-except
        return


def main():
    sys.dont_write_bytecode = True
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # user code may print; only the result goes to stdout
    nonce = ""
    options = {}
    timeout = 0
    try:
        options = json.loads(os.environ.get(OPTIONS_ENV) or "{}")
        nonce = str(options.get("nonce") or "")
        _RUN.update(nonce=nonce, stdout=real_stdout)
        timeout = int(options.get("timeout") or 0)
        if timeout > 0:
            signal.signal(signal.SIGALRM, _timed_out)
            signal.alarm(timeout)
        result = inspect_project(options)
    except InspectionError as exc:
        result = {"ok": False, "error": dict(exc.details, kind=exc.kind, message=exc.message)}
    except InspectionTimeout as exc:
        place = where(exc)
        result = {
            "ok": False,
            "error": {
                "kind": "timeout",
                "message": f"The inspection did not finish within {timeout} seconds (timeout); it was "
                f"{STAGES.get(_RUN['stage'], 'starting')}" + (f", at {place}" if place else "") + ".",
            },
        }
    except BaseException as exc:  # pylint: disable=broad-except  # report, never crash without a result
        result = {
            "ok": False,
            "error": {
                "kind": "unexpected",
                "message": f"The inspection failed: {exception_last_line(exc)}",
                "traceback": traceback.format_exc(),
            },
        }
    finally:
        signal.alarm(0)
        _close_connections()
    if not result.get("ok"):
        result = scrub(result, _secret_values(options))
    payload = json.dumps(result, sort_keys=True, default=str)
    real_stdout.write(f"\n{BEGIN_MARKER} {nonce}\n{payload}\n{END_MARKER} {nonce}\n")
    real_stdout.flush()
    sys.stdout = real_stdout


if __name__ == "__main__":
    main()
    # The result is written and flushed and the database connections are
    # closed: skip the interpreter's teardown of thousands of migration
    # objects (and any exit hook of the application), which only costs time.
    sys.stderr.flush()
    os._exit(0)
