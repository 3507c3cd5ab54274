# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

The migration ledger: a table of greenlight.django's own in the application's database
(``greenlight_migration_ledger``), written by ``greenlight.django.migrate`` and read by
``greenlight.django.migration_status``. It lives beside ``django_migrations``, so that a backup and its
restore keep the two consistent. Django never creates it: no migration of the project knows it.

Every row is an event about one migration, appended and never updated:

* ``baseline`` - applied before the ledger existed (the first migrate on a database records what is applied
  then, with the checksum of the code of that release);
* ``applied`` / ``unapplied`` - a deploy (or a rollback) applied or unapplied it;
* ``accepted`` - someone (``recorded_by``) accepted, after review, a migration applied outside a deploy or
  changed since it was applied (``reason``).

The newest event of a migration is what the ledger knows of it. The checksum is the SHA-256 of a canonical
JSON of the migration's deconstructed operations and its dependencies: reformatting the file or changing a
comment leaves it as it was; changing what an operation does (a field's options, a RunSQL statement, the
function a RunPython calls) changes it.

This file travels to the release's interpreter beside the payload that uses it (see
``_app_runtime.payload_program``). Only the standard library is imported at module level.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import hashlib
import json
import re
import types
import uuid

TABLE = "greenlight_migration_ledger"
EVENTS = ("baseline", "applied", "unapplied", "accepted")
COLUMNS = ("app", "name", "event", "checksum", "release", "revision", "recorded_at", "recorded_by", "reason")
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

CREATE_SQL = {
    "postgresql": "CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, {columns})",
    "sqlite": "CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY AUTOINCREMENT, {columns})",
    "mysql": "CREATE TABLE IF NOT EXISTS {table} (id bigint AUTO_INCREMENT PRIMARY KEY, {columns})",
}
# Each column's type; the names are quoted by the database's rules (``release`` is a reserved word of MySQL).
COLUMN_TYPES = {
    "app": "varchar(255) NOT NULL",
    "name": "varchar(255) NOT NULL",
    "event": "varchar(16) NOT NULL",
    "checksum": "varchar(64)",
    "release": "varchar(255) NOT NULL DEFAULT ''",
    "revision": "varchar(255) NOT NULL DEFAULT ''",
    "recorded_at": "varchar(40) NOT NULL",
    "recorded_by": "varchar(255) NOT NULL DEFAULT ''",
    "reason": "text NOT NULL DEFAULT ''",
}


def _names(connection) -> str:
    return ", ".join(connection.ops.quote_name(column) for column in COLUMNS)


# --- checksum ---------------------------------------------------------------


def _path(value) -> str:
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', getattr(value, '__name__', ''))}"


def canonical(value):  # noqa: PLR0911 - one branch per kind of value, in the order they are told apart
    """A JSON-able form of a value of a migration that depends on what it means, not on how it is written."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((canonical(item) for item in value), key=_sort_key)}
    if isinstance(value, dict):
        return {"dict": sorted(([canonical(key), canonical(item)] for key, item in value.items()), key=_sort_key)}
    if isinstance(value, enum.Enum):
        return {"enum": _path(type(value)), "value": canonical(value.value)}
    if isinstance(value, functools.partial):
        return {"partial": canonical(value.func), "args": canonical(value.args), "kwargs": canonical(value.keywords)}
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return {"ref": _path(value)}
    deconstruct = getattr(value, "deconstruct", None)
    if callable(deconstruct):
        return {"deconstructed": canonical(list(deconstruct()))}
    if isinstance(value, (decimal.Decimal, datetime.date, datetime.time, datetime.timedelta, uuid.UUID)):
        return {"repr": repr(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return {"serialized": _serialized(value)}


def _serialized(value) -> str:
    """What makemigrations would write for a value of another kind (a lazy string, a regex, ...)."""
    try:
        from django.db.migrations.serializer import serializer_factory

        return serializer_factory(value).serialize()[0]
    except Exception:  # noqa: BLE001 - a value Django cannot serialize either: its repr, without addresses
        return ADDRESS.sub("", repr(value))


def _sort_key(item) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def checksum(migration) -> str:
    """SHA-256 of the migration's deconstructed operations and its dependencies."""
    document = {
        "operations": [canonical(operation) for operation in migration.operations],
        "dependencies": sorted((canonical(list(item)) for item in migration.dependencies), key=_sort_key),
    }
    return hashlib.sha256(_sort_key(document).encode("utf-8")).hexdigest()


def code_checksum(loader, key) -> str | None:
    """The checksum of migration ``key`` (app, name) in this release's code, None when the code lacks it."""
    migration = loader.disk_migrations.get(tuple(key))
    return checksum(migration) if migration is not None else None


# --- the table --------------------------------------------------------------


def exists(connection) -> bool:
    with connection.cursor() as cursor:
        return TABLE in connection.introspection.table_names(cursor)


def create(connection) -> None:
    if connection.vendor not in CREATE_SQL:
        raise ValueError(f"the migration ledger supports PostgreSQL, MySQL/MariaDB and SQLite, not {connection.vendor}")
    # MySQL takes a literal default for a text column only since 8.0.13 (MariaDB since 10.2); every row gives one.
    types = dict(COLUMN_TYPES, reason="text NOT NULL") if connection.vendor == "mysql" else COLUMN_TYPES
    columns = ", ".join(f"{connection.ops.quote_name(column)} {types[column]}" for column in COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(CREATE_SQL[connection.vendor].format(table=TABLE, columns=columns))


def read(connection) -> list[dict]:
    """Every event, oldest first ([] when there is no ledger)."""
    if not exists(connection):
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_names(connection)} FROM {TABLE} ORDER BY id")  # noqa: S608 - constant names
        return [dict(zip(COLUMNS, row)) for row in cursor.fetchall()]


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def append(connection, events: list[dict]) -> None:
    """Append events (dicts with the keys of COLUMNS; missing ones are empty), in one transaction."""
    if not events:
        return
    from django.db import transaction

    stamp = now()
    rows = [
        [event.get(column, "") if column != "checksum" else event.get("checksum") for column in COLUMNS]
        for event in events
    ]
    for row in rows:
        row[COLUMNS.index("recorded_at")] = row[COLUMNS.index("recorded_at")] or stamp
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {TABLE} ({_names(connection)}) VALUES ({placeholders})",  # noqa: S608 - constant names
            rows,
        )


def applied_migrations(connection) -> dict:
    """(app, name) -> when django_migrations says it was applied (ISO text), for every applied migration."""
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return {}
    return {
        (app, name): applied.isoformat(timespec="seconds") if hasattr(applied, "isoformat") else str(applied)
        for app, name, applied in recorder.migration_qs.values_list("app", "name", "applied")
    }


def baseline_events(connection, loader, release: dict) -> list[dict]:
    """The events of a first use: every migration applied now, with the checksum of this release's code."""
    return [
        dict(release, app=app, name=name, event="baseline", checksum=code_checksum(loader, (app, name)))
        for app, name in sorted(applied_migrations(connection))
    ]


# --- findings ---------------------------------------------------------------


def latest(events: list[dict]) -> dict:
    """(app, name) -> the newest event of each migration."""
    found = {}
    for event in events:
        found[(event["app"], event["name"])] = event
    return found


def findings(connection, loader) -> dict:
    """What the ledger says about the applied migrations of this database, read-only.

    ``ledger``: whether it exists, since when (the first event) and how many events it holds;
    ``applied_outside_deploy``: applied per django_migrations, unknown to the ledger or unapplied in it (so
    applied after the baseline, by something other than a deploy); ``changed_since_applied``: applied, and
    the code's checksum differs from the one recorded.
    """
    if not exists(connection):
        return {"ledger": {"exists": False}, "applied_outside_deploy": [], "changed_since_applied": []}
    events = read(connection)
    known = latest(events)
    outside, changed = [], []
    for key, applied_at in sorted(applied_migrations(connection).items()):
        label = "{}.{}".format(*key)
        event = known.get(key)
        if event is None or event["event"] == "unapplied":
            outside.append({"migration": label, "applied_at": applied_at})
            continue
        code = code_checksum(loader, key)
        if event["checksum"] and code and code != event["checksum"]:
            changed.append(
                {
                    "migration": label,
                    "applied_at": applied_at,
                    "recorded": event["event"],
                    "recorded_at": event["recorded_at"],
                    "release": event["release"],
                    "recorded_checksum": event["checksum"],
                    "code_checksum": code,
                }
            )
    baseline = [event["recorded_at"] for event in events if event["event"] == "baseline"]
    return {
        "ledger": {
            "exists": True,
            "events": len(events),
            "since": events[0]["recorded_at"] if events else None,
            "baseline_at": baseline[0] if baseline else None,
        },
        "applied_outside_deploy": outside,
        "changed_since_applied": changed,
    }
