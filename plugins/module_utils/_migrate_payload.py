# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

Applies the inspected migrations of one Django release, under a database lock, once: the payload of
``greenlight.django.migrate``.

The module does not run this code in Ansible's interpreter: it sends the text of this file to the
release's interpreter (``python -``, working directory = the release, as the application's user, with the
application's environment) and reads back its result line. Options arrive as JSON in the environment
variable named by ``OPTIONS_ENV`` (never on the command line)::

    {"app_name": "demo", "phase": "all|before_switch|after_switch", "expect": ["app.name", ...],
     "unapply": ["app.name", ...], "dry_run": false, "database": "default",
     "lock_timeout": 5, "statement_timeout": 0, "advisory_lock_timeout": 60,
     "release": "20240601T120000Z", "revision": "3f2a...", "accept": ["app.name", ...],
     "accept_by": "jane", "accept_reason": "reviewed: same as the committed file"}

What it does, in one process and on one database connection:

1. ``django.setup()``;
2. takes the migrate lock: on PostgreSQL the session advisory lock
   ``pg_advisory_lock(<key of the app name>)``, on MySQL/MariaDB the named
   lock ``GET_LOCK('greenlight-migrate-<hash of the app name>')`` (both
   waiting at most ``advisory_lock_timeout`` seconds), on SQLite an exclusive
   ``flock`` on the database file;
3. on PostgreSQL sets ``lock_timeout``, ``statement_timeout`` and
   ``application_name`` (``greenlight-migrate <app>``) on that connection, on
   MySQL/MariaDB ``lock_wait_timeout`` and ``innodb_lock_wait_timeout`` (and
   MariaDB's ``max_statement_time``), so that a migration blocked behind a
   long transaction fails fast instead of queueing every query of the site
   behind it;
4. works out the plan again under the lock and refuses to go backwards or to
   apply a migration that is not in ``expect`` (what the preflight
   inspected);
5. ``call_command("migrate", ...)`` - to the leaf nodes (phases ``all`` and
   ``after_switch``) or, for ``before_switch``, each app to its last expected
   migration (with ``dry_run``: nothing, the checked plan is the result);
6. records each migration it applied in the migration ledger (``_ledger``:
   the table ``greenlight_migration_ledger`` in the same database, created -
   with a baseline of what is applied then - on first use), with its checksum,
   ``release`` and ``revision``;
7. releases the lock and reports which migrations were applied.

With ``unapply`` (a list of ``app.name``) it migrates backwards instead: each
app to its newest applied migration that is not to be unapplied, refused with
nothing changed unless the backward plan is exactly those migrations and
every operation in it is reversible (``dry_run``: check only), and records
them as unapplied in the ledger. A rollback uses it with the code of the
release that applied them.

With ``accept`` it applies nothing: it records, under the lock, that the named
migrations - each one applied outside a deploy or changed since it was applied,
as the ledger finds them - were accepted by ``accept_by`` for ``accept_reason``
(the checksum recorded is that of this release's code).

The last line of standard output is ``GREENLIGHT-MIGRATE-RESULT <json>``;
Django's own output goes to standard error. Exit status 0 when the plan was
applied (or was empty), 1 otherwise (the JSON then has ``ok: false``,
``error``, ``applied`` - what was applied before the failure - and
``failed_migration``). After a failed migration, ``partial`` says which of its
operations had run (``applied_operations``), which one failed
(``failed_operation``) and whether the database rolled them back
(``rolled_back``): DDL is not transactional on MySQL/MariaDB, so there they
stay applied.

It never creates migrations: migrations are made in development. Only the
standard library is imported at module level, and nothing of Ansible: the
module's interpreter imports this file (to ship it) and has no Django; the
release's interpreter (Python 3.8 or later) has no Ansible. ``_ledger`` travels
beside this file (``_app_runtime.payload_program``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import time

OPTIONS_ENV = "GREENLIGHT_MIGRATE_OPTIONS"
RESULT_MARKER = "GREENLIGHT-MIGRATE-RESULT"
PHASES = ("all", "before_switch", "after_switch")
LOCK_NAMESPACE = b"greenlight.django.migrate:"
POLL_SECONDS = 0.5
SETTINGS_LINE = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]\s*\)"""
)
SQLSTATE_LOCK_TIMEOUT = "55P03"
SQLSTATE_STATEMENT_TIMEOUT = "57014"
# MySQL/MariaDB error numbers: lock wait timeout (table rows and metadata locks), statement time limits.
MYSQL_LOCK_WAIT_TIMEOUT = 1205
MYSQL_STATEMENT_TIMEOUT = (1969, 3024)
SUPPORTED = "PostgreSQL, MySQL/MariaDB and SQLite"


class MigrateError(Exception):
    """The migrations cannot be applied; the message says why and what to do."""


def advisory_lock_key(app_name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock, the same on every host."""
    digest = hashlib.sha256(LOCK_NAMESPACE + app_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def mysql_lock_name(app_name: str) -> str:
    """The GET_LOCK name (at most 64 characters), the same on every host."""
    return "greenlight-migrate-" + hashlib.sha256(LOCK_NAMESPACE + app_name.encode("utf-8")).hexdigest()[:32]


def settings_module(release: str) -> str | None:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return os.environ["DJANGO_SETTINGS_MODULE"]
    try:
        with open(os.path.join(release, "manage.py"), encoding="utf-8") as handle:
            match = SETTINGS_LINE.search(handle.read())
    except OSError:
        return None
    return match.group(1) if match else None


def setup_django() -> None:
    release = os.getcwd()
    sys.path.insert(0, release)
    module = settings_module(release)
    if not module:
        raise MigrateError(
            "the settings module is not known: set DJANGO_SETTINGS_MODULE in the environment file "
            "(or in migrate_environment)"
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    import django

    django.setup()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (psycopg 3, psycopg2), looking through Django's wrapping."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is None:
            continue
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if state:
            return state
    return None


def ledger_module():
    """_ledger: shipped beside this payload in the release's interpreter, else the collection's own."""
    shipped = sys.modules.get("greenlight_django_ledger")
    if shipped is not None:
        return shipped
    from ansible_collections.greenlight.django.plugins.module_utils import _ledger

    return _ledger


def mysql_errno(exc: BaseException) -> int | None:
    """The error number of a MySQLdb/PyMySQL error, looking through Django's wrapping."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        args = getattr(candidate, "args", None)
        if args and isinstance(args[0], int):
            return args[0]
    return None


# --- locks ------------------------------------------------------------------


@contextlib.contextmanager
def postgresql_lock(connection, app_name: str, timeout: float):
    key = advisory_lock_key(app_name)
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            if cursor.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                raise MigrateError(
                    f"another migrate of {app_name} holds the migrate lock (PostgreSQL advisory lock {key}"
                    f"{holder_of(cursor, key)}) and did not release it within {timeout:g} s. Wait for it to "
                    "finish and run again; raise migrate_advisory_lock_timeout to wait longer."
                )
            time.sleep(POLL_SECONDS)
    try:
        yield f"PostgreSQL advisory lock {key}"
    finally:
        with contextlib.suppress(Exception), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def holder_of(cursor, key: int) -> str:
    """', held by pid N (application, client, since ...)' for the advisory lock, or ''."""
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    try:
        cursor.execute(
            "SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'), a.backend_start"
            "  FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
            [classid, objid],
        )
        row = cursor.fetchone()
    except Exception:  # noqa: BLE001 - the holder is a detail of the message only
        return ""
    if not row:
        return ""
    pid, application, client, since = row
    return f", held by PostgreSQL backend pid {pid} ({application or 'no application name'}, {client}, since {since})"


@contextlib.contextmanager
def mysql_lock(connection, app_name: str, timeout: float):
    """GET_LOCK on the migrate's own connection: the server waits (at most timeout) and frees it with the session."""
    name = mysql_lock_name(app_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, %s)", [name, max(0, int(timeout + 0.999))])
        got = cursor.fetchone()[0]
        if got != 1:
            holder = ""
            with contextlib.suppress(Exception):
                cursor.execute(
                    "SELECT p.id, p.user, p.host, p.time FROM information_schema.processlist p"
                    " WHERE p.id = IS_USED_LOCK(%s)",
                    [name],
                )
                row = cursor.fetchone()
                if row:
                    holder = f", held by connection {row[0]} ({row[1]}@{row[2]}, for {row[3]} s)"
            raise MigrateError(
                f"another migrate of {app_name} holds the migrate lock (MySQL named lock {name}{holder}) and did not "
                f"release it within {timeout:g} s. Wait for it to finish and run again; raise "
                "migrate_advisory_lock_timeout to wait longer."
            )
    try:
        yield f"MySQL named lock {name}"
    finally:
        with contextlib.suppress(Exception), connection.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [name])


@contextlib.contextmanager
def sqlite_lock(path: str, timeout: float):
    if not os.path.exists(path):
        yield "none (the SQLite database does not exist yet)"
        return
    with open(path, "rb") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise MigrateError(
                        f"another migrate holds the migrate lock (flock on {path}) and did not release it within "
                        f"{timeout:g} s. Wait for it to finish and run again; raise migrate_advisory_lock_timeout "
                        "to wait longer."
                    ) from None
                time.sleep(POLL_SECONDS)
        try:
            yield f"flock on {path}"
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def session_settings(app_name: str, lock_timeout: float, statement_timeout: float):
    """A connection_created receiver that names every PostgreSQL connection and sets its timeouts (and those of
    MySQL/MariaDB connections)."""

    def apply(sender, connection, **kwargs):
        if connection.vendor == "mysql":
            mysql_session_settings(connection, lock_timeout, statement_timeout)
            return
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('application_name', %s, false)", [f"greenlight-migrate {app_name}"[:63]])
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{int(lock_timeout * 1000)}ms"])
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{int(statement_timeout * 1000)}ms"])

    return apply


def mysql_session_settings(connection, lock_timeout: float, statement_timeout: float) -> None:
    """lock_wait_timeout (metadata locks of DDL) and innodb_lock_wait_timeout in whole seconds (at least 1); the
    statement time limit where the server has one for every statement (MariaDB's max_statement_time)."""
    seconds = max(1, int(lock_timeout + 0.999))
    with connection.cursor() as cursor:
        cursor.execute(f"SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}")
        if connection.mysql_is_mariadb:
            cursor.execute(f"SET SESSION max_statement_time = {float(statement_timeout):f}")


# --- plan -------------------------------------------------------------------


def label(migration) -> str:
    return f"{migration.app_label}.{migration.name}"


def targets_for(phase: str, expected: list[str], loader) -> list[tuple[str, str]]:
    """Migration targets: leaf nodes, or for before_switch each app's last expected migration."""
    if phase != "before_switch":
        return loader.graph.leaf_nodes()
    last: dict[str, str] = {}
    for item in expected:
        app, _dot, name = item.partition(".")
        last[app] = name
    return list(last.items())


def checked_plan(executor, targets, expected: list[str]) -> list[str]:
    """The forward plan to the targets, refused when it goes back or leaves what was inspected."""
    loader = executor.loader
    loader.check_consistent_history(executor.connection)
    conflicts = loader.detect_conflicts()
    if conflicts:
        names = "; ".join(f"{app}: {', '.join(leaves)}" for app, leaves in sorted(conflicts.items()))
        raise MigrateError(f"conflicting migrations ({names}); merge them in development and deploy again")
    plan = executor.migration_plan(targets)
    backwards = [label(migration) for migration, backward in plan if backward]
    if backwards:
        raise MigrateError(
            f"the plan would unapply {', '.join(backwards)}: the database is ahead of what this phase expects "
            "(another deploy migrated it). Inspect again and deploy the release that matches the database."
        )
    forwards = [label(migration) for migration, _backwards in plan]
    unexpected = [item for item in forwards if item not in expected]
    if unexpected:
        raise MigrateError(
            f"{', '.join(unexpected)} would be applied but were not inspected by the preflight of this run "
            f"(inspected: {', '.join(expected) or 'nothing'}). Run the role again so that it inspects them."
        )
    return forwards


def reverse_targets(loader, unapply: list[str]) -> list[tuple[str, str | None]]:
    """Per app, the newest applied migration that stays (None: unapply the whole app)."""
    graph = loader.graph
    targets = []
    for app in sorted({item.partition(".")[0] for item in unapply}):
        staying = [key for key in loader.applied_migrations if key[0] == app and f"{key[0]}.{key[1]}" not in unapply]
        staying = [key for key in staying if key in graph.nodes]
        newest = max(staying, key=lambda key: len(graph.forwards_plan(key)), default=None)
        targets.append((app, newest[1] if newest else None))
    return targets


def checked_reverse_plan(executor, targets, unapply: list[str]) -> list[str]:
    """The backward plan to the targets, refused unless it unapplies exactly `unapply`, all reversibly."""
    executor.loader.check_consistent_history(executor.connection)
    missing = [item for item in unapply if tuple(item.split(".", 1)) not in executor.loader.graph.nodes]
    if missing:
        raise MigrateError(
            f"{', '.join(missing)} cannot be unapplied with this release's code, which does not have them"
        )
    plan = executor.migration_plan(targets)
    forwards = [label(migration) for migration, backward in plan if not backward]
    backwards = [label(migration) for migration, backward in plan if backward]
    if forwards or sorted(backwards) != sorted(unapply):
        raise MigrateError(
            f"reversing {', '.join(unapply)} would unapply {', '.join(backwards) or 'nothing'}"
            f"{' and apply ' + ', '.join(forwards) if forwards else ''}; nothing was changed. "
            "Keep the schema (greenlight_rollback_database=keep) or restore the backup instead."
        )
    irreversible = [
        f"{label(migration)} ({operation.describe()})"
        for migration, _backward in plan
        for operation in migration.operations
        if not operation.reversible
    ]
    if irreversible:
        raise MigrateError(
            f"these operations cannot be reversed: {'; '.join(irreversible)}; nothing was changed. "
            "Keep the schema (greenlight_rollback_database=keep) or restore the backup instead."
        )
    return backwards


def applied_set(connection) -> set[str]:
    from django.db.migrations.recorder import MigrationRecorder

    return {f"{app}.{name}" for app, name in MigrationRecorder(connection).applied_migrations()}


def migrate(args: Options, result: dict) -> None:
    from django.core.management import call_command
    from django.db import connections
    from django.db.backends.signals import connection_created
    from django.db.migrations.executor import MigrationExecutor

    if args.database not in connections.settings:
        raise MigrateError(f"DATABASES has no alias {args.database!r}; set migrate_database_alias")
    connection = connections[args.database]
    if connection.vendor in ("postgresql", "mysql"):
        connection_created.connect(
            session_settings(args.app_name, args.lock_timeout, args.statement_timeout), weak=False
        )
        connection.close()  # reconnect below, with the timeouts set by the receiver
        try:
            connection.ensure_connection()
        except Exception as exc:  # noqa: BLE001 - a database that does not answer gets one message
            raise MigrateError(connection_problem(connection, exc)) from None
        if connection.vendor == "postgresql":
            lock = postgresql_lock(connection, args.app_name, args.advisory_lock_timeout)
        else:
            lock = mysql_lock(connection, args.app_name, args.advisory_lock_timeout)
    elif connection.vendor == "sqlite":
        name = str(connection.settings_dict.get("NAME") or "")
        lock = sqlite_lock(os.path.abspath(name), args.advisory_lock_timeout)
    else:
        raise MigrateError(
            f"the database engine {connection.settings_dict.get('ENGINE')} ({connection.vendor}) is not supported: "
            f"greenlight.django migrates {SUPPORTED} under a lock. Nothing was applied."
        )
    with lock as lock_name:
        result["lock"] = lock_name
        executor = MigrationExecutor(connection)
        if args.accept:
            accept(args, executor, connection, result)
            return
        if args.unapply:
            unapply(args, executor, connection, result)
            return
        targets = targets_for(args.phase, args.expect, executor.loader)
        plan = checked_plan(executor, targets, args.expect)
        result["plan"] = plan
        if args.dry_run:
            return
        ensure_ledger(args, executor.loader, connection, result)
        if not plan:
            return
        before = applied_set(connection)
        watch_operations(executor.loader, plan, connection, result)
        try:
            with ledger_recording(args, executor.loader, result):
                if args.phase == "before_switch":
                    for app, name in targets:
                        call_command(
                            "migrate",
                            app,
                            name,
                            database=args.database,
                            interactive=False,
                            verbosity=1,
                            stdout=sys.stderr,
                        )
                else:
                    call_command("migrate", database=args.database, interactive=False, verbosity=1, stdout=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                now = applied_set(connection)
                result["applied"] = [item for item in plan if item in now and item not in before]
                remaining = [item for item in plan if item not in now]
                result["failed_migration"] = remaining[0] if remaining else None


def release_of(args: Options) -> dict:
    return {"release": args.release, "revision": args.revision}


def ensure_ledger(args: Options, loader, connection, result: dict) -> None:
    """Create the ledger on first use, with a baseline: every migration applied now, as applied."""
    ledger = ledger_module()
    if ledger.exists(connection):
        return
    ledger.create(connection)
    events = ledger.baseline_events(connection, loader, release_of(args))
    ledger.append(connection, events)
    result["ledger_baseline"] = [f"{event['app']}.{event['name']}" for event in events]


@contextlib.contextmanager
def ledger_recording(args: Options, loader, result: dict):
    """While Django migrates: append the ledger's event of each migration in the same transaction as Django's
    own row in django_migrations (MigrationRecorder.record_applied / record_unapplied run inside the migration's
    transaction), so that a migration is never applied without its event, even when the process is killed."""
    from django.db.migrations.recorder import MigrationRecorder

    ledger = ledger_module()
    record_applied, record_unapplied = MigrationRecorder.record_applied, MigrationRecorder.record_unapplied
    recorded = result.setdefault("ledger_recorded", [])

    def event(recorder, app, name, kind):
        ledger.append(
            recorder.connection,
            [
                dict(
                    release_of(args),
                    app=app,
                    name=name,
                    event=kind,
                    checksum=ledger.code_checksum(loader, (app, name)),
                )
            ],
        )
        recorded.append(f"{app}.{name}")

    def applied(recorder, app, name):
        record_applied(recorder, app, name)
        event(recorder, app, name, "applied")

    def unapplied(recorder, app, name):
        record_unapplied(recorder, app, name)
        event(recorder, app, name, "unapplied")

    MigrationRecorder.record_applied, MigrationRecorder.record_unapplied = applied, unapplied
    try:
        yield
    finally:
        MigrationRecorder.record_applied, MigrationRecorder.record_unapplied = record_applied, record_unapplied


def accept(args: Options, executor, connection, result: dict) -> None:
    """Record, after review, the acceptance of migrations the ledger reports (nothing is migrated)."""
    ledger = ledger_module()
    if not args.dry_run:
        ensure_ledger(args, executor.loader, connection, result)
    found = ledger.findings(connection, executor.loader)
    reported = {item["migration"] for item in found["applied_outside_deploy"] + found["changed_since_applied"]}
    unknown = [item for item in args.accept if item not in reported]
    if unknown:
        raise MigrateError(
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not reported by the migration ledger "
            "(neither applied outside a deploy nor changed since applied); the ledger reports "
            f"{', '.join(sorted(reported)) or 'nothing'}. Nothing was recorded: accept only what "
            "greenlight.django.migration_status reports, after review."
        )
    result["plan"] = list(args.accept)
    if args.dry_run:
        return
    loader = executor.loader
    ledger.append(
        connection,
        [
            dict(
                release_of(args),
                app=item.split(".", 1)[0],
                name=item.split(".", 1)[1],
                event="accepted",
                checksum=ledger.code_checksum(loader, tuple(item.split(".", 1))),
                recorded_by=args.accept_by,
                reason=args.accept_reason,
            )
            for item in args.accept
        ],
    )
    result["accepted"] = list(args.accept)


def watch_operations(loader, plan: list[str], connection, result: dict) -> None:
    """Record, per migration of the plan, each operation whose database change ran, and the one that failed.

    The migrate command loads the same operation objects (migration modules are imported once), so wrapping
    their database_forwards here sees what the command applies. On a failure, result["partial"] tells which
    operations of the failed migration ran and whether the database rolled them back (atomic migration on a
    database with transactional DDL) or kept them (MySQL/MariaDB).
    """
    done: dict[str, list[str]] = {}

    def watch(name: str, migration, operation) -> None:
        original = operation.database_forwards

        def database_forwards(*args, **kwargs):
            try:
                original(*args, **kwargs)
            except BaseException:
                rolled_back = bool(migration.atomic and connection.features.can_rollback_ddl)
                result["partial"] = {
                    "migration": name,
                    "applied_operations": list(done.get(name, [])),
                    "failed_operation": operation.describe(),
                    "not_applied_operations": [
                        item.describe() for item in migration.operations[migration.operations.index(operation) + 1 :]
                    ],
                    "rolled_back": rolled_back,
                }
                raise
            done.setdefault(name, []).append(operation.describe())

        operation.database_forwards = database_forwards

    for name in plan:
        migration = loader.graph.nodes.get(tuple(name.split(".", 1)))
        for operation in getattr(migration, "operations", []):
            watch(name, migration, operation)


def connection_problem(connection, exc: BaseException) -> str:
    """What to do when the database refuses or does not answer."""
    settings = connection.settings_dict
    where = f"{settings.get('HOST') or 'localhost'}:{settings.get('PORT') or 'default port'}"
    text = f"{type(exc).__name__}: {exc}"
    number = mysql_errno(exc)
    if number == 1045 or "password authentication failed" in text or "Access denied" in text:
        return (
            f"the database at {where} refused the user {settings.get('USER')!r}: {text}. Check USER and PASSWORD "
            "in DATABASES (the environment file). Nothing was applied."
        )
    if number == 1049 or "does not exist" in text:
        return f"the database {settings.get('NAME')!r} does not exist at {where}: {text}. Nothing was applied."
    return (
        f"the database at {where} does not answer: {text}. Is it running, and are HOST and PORT right? "
        "Nothing was applied."
    )


def unapply(args: Options, executor, connection, result: dict) -> None:
    """Migrate backwards so that exactly args.unapply are no longer applied."""
    from django.core.management import call_command

    targets = reverse_targets(executor.loader, args.unapply)
    plan = checked_reverse_plan(executor, targets, args.unapply)
    result["plan"] = plan
    if args.dry_run:
        return
    before = applied_set(connection)
    try:
        # A database whose ledger was never created (no migrate of this module ran there) records nothing.
        recording = ledger_module().exists(connection)
        with ledger_recording(args, executor.loader, result) if recording else contextlib.nullcontext():
            for app, name in targets:
                call_command(
                    "migrate",
                    app,
                    name or "zero",
                    database=args.database,
                    interactive=False,
                    verbosity=1,
                    stdout=sys.stderr,
                )
    finally:
        with contextlib.suppress(Exception):
            now = applied_set(connection)
            result["unapplied"] = [item for item in plan if item in before and item not in now]
            remaining = [item for item in plan if item in now]
            result["failed_migration"] = remaining[0] if remaining else None


def explain(exc: BaseException, result: dict, args: Options) -> str:
    failed = result.get("failed_migration") or "a migration"
    state = sqlstate(exc)
    number = mysql_errno(exc)
    if number == MYSQL_LOCK_WAIT_TIMEOUT:
        state = SQLSTATE_LOCK_TIMEOUT
    elif number in MYSQL_STATEMENT_TIMEOUT:
        state = SQLSTATE_STATEMENT_TIMEOUT
    message = explain_state(state, failed, exc, args)
    partial = result.get("partial")
    if partial and not partial["rolled_back"] and partial["applied_operations"]:
        message += (
            " The database does not roll back schema changes (DDL is not transactional on this engine): of "
            f"{partial['migration']}, these operations were applied and stay: "
            f"{'; '.join(partial['applied_operations'])}"
            f"; it failed at: {partial['failed_operation']}. Restore the backup, or fix the migration so that it can "
            "run again over what was applied."
        )
    return message


def explain_state(state: str | None, failed: str, exc: BaseException, args: Options) -> str:
    if state == SQLSTATE_LOCK_TIMEOUT:
        return (
            f"{failed} waited more than {args.lock_timeout:g} s for a table lock that another session holds (a long "
            "transaction or query) and was rolled back (lock_timeout). Nothing else waited behind it. Run again when "
            "the table is quiet, or raise migrate_lock_timeout."
        )
    if state == SQLSTATE_STATEMENT_TIMEOUT:
        return (
            f"{failed} ran longer than migrate_statement_timeout ({args.statement_timeout:g} s) and was rolled back. "
            "Raise migrate_statement_timeout, or split the migration (e.g. a batched data migration)."
        )
    return f"{failed} failed: {type(exc).__name__}: {exc}"


class Options:
    """What to do, from the JSON of OPTIONS_ENV (see the module docstring)."""

    def __init__(self, values: dict):
        self.app_name = str(values.get("app_name") or "")
        self.phase = str(values.get("phase") or "all")
        self.expect = [str(item) for item in values.get("expect") or []]
        self.unapply = [str(item) for item in values.get("unapply") or []]
        self.dry_run = bool(values.get("dry_run"))
        self.database = str(values.get("database") or "default")
        self.lock_timeout = float(values.get("lock_timeout", 5.0))
        self.statement_timeout = float(values.get("statement_timeout", 0.0))
        self.advisory_lock_timeout = float(values.get("advisory_lock_timeout", 60.0))
        self.release = str(values.get("release") or "")
        self.revision = str(values.get("revision") or "")
        self.accept = [str(item) for item in values.get("accept") or []]
        self.accept_by = str(values.get("accept_by") or "")
        self.accept_reason = str(values.get("accept_reason") or "")


def read_options(text: str | None) -> Options:
    """The options of this run; a missing app name or an unknown phase is refused."""
    try:
        values = json.loads(text or "{}")
    except ValueError as exc:
        raise MigrateError(f"the options in {OPTIONS_ENV} are not JSON: {exc}") from None
    if not isinstance(values, dict):
        raise MigrateError(f"the options in {OPTIONS_ENV} are not a JSON object")
    try:
        options = Options(values)
    except (TypeError, ValueError) as exc:
        raise MigrateError(f"the options in {OPTIONS_ENV} are not valid: {exc}") from None
    if not options.app_name:
        raise MigrateError(f"the options in {OPTIONS_ENV} name no app_name")
    if options.phase not in PHASES:
        raise MigrateError(f"the phase {options.phase!r} is not one of {', '.join(PHASES)}")
    if options.accept and not (options.accept_by.strip() and options.accept_reason.strip()):
        raise MigrateError(f"the options in {OPTIONS_ENV} accept migrations without saying who and why")
    return options


def main() -> int:
    result: dict = {
        "ok": True,
        "phase": None,
        "plan": [],
        "applied": [],
        "unapplied": [],
        "failed_migration": None,
    }
    try:
        args = read_options(os.environ.pop(OPTIONS_ENV, None))
    except MigrateError as exc:
        result.update(ok=False, error=str(exc))
    else:
        result["phase"] = "accept" if args.accept else "reverse" if args.unapply else args.phase
        try:
            setup_django()
            migrate(args, result)
        except MigrateError as exc:
            result.update(ok=False, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a failing migration is reported, with what was applied before it
            result.update(ok=False, error=explain(exc, result, args))
    sys.stderr.flush()
    sys.stdout.write(f"{RESULT_MARKER} {json.dumps(result, sort_keys=True, default=str)}\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
