# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

Back up or restore the database of one Django release, with the connection Django itself uses: the payload of
``greenlight.django.db_backup``.

The module does not run this code in Ansible's interpreter: it sends the text of this file to the release's
interpreter (``python -``, as root, working directory = the release, the application's environment) and reads
back the last line of standard output, ``GREENLIGHT-BACKUP-RESULT <json>``; all other output goes to standard
error. Exit status 0 on success, 1 on failure (the JSON then has ``ok: false`` and ``error``). Options arrive as
JSON in the environment variable named by ``OPTIONS_ENV``, never on the command line (they hold the overrides of
the ``DATABASES`` entry, a password among them):

``command`` (``dump`` or ``restore``), ``database`` (the alias, default ``default``), ``database_overrides``
(overrides of the ``DATABASES`` entry), ``run_as`` (the account the clients run as), ``lock_wait_timeout``,
``pg_bin_dir`` (where pg_dump, pg_restore and psql live; default: PATH), ``mysql_bin_dir`` (where mysqldump and
mysql live; default: PATH); for ``dump``: ``dir``, ``app_name``,
``verify_restore``, ``pg_dump_options``; for ``restore``: ``file``.

The connection parameters come from ``settings.DATABASES[alias]`` (the settings module is imported; the apps
are not loaded). For PostgreSQL they reach pg_dump, pg_restore and psql as libpq variables (PGHOST, PGPASSWORD,
...) in the child's environment, never as arguments; the clients run as the application user (``run_as``) so
that peer authentication on the local socket works as it does for the application, while the backup file itself
is opened by root. For MySQL and MariaDB, mysqldump (``--single-transaction``: a consistent snapshot without
locking the application's tables) and mysql read the connection from an option file (mode 0600, in a private
directory, passed with ``--defaults-extra-file``), so the password is never an argument nor in the environment;
the dump is complete only when it ends with mysqldump's ``Dump completed`` line. SQLite databases are copied
with SQLite's online backup API and checked with ``PRAGMA integrity_check``. Other engines are refused.

Only the standard library is imported: the release's interpreter (Python 3.8 or later) has no Ansible, and
Ansible's interpreter imports this file (to ship it) without Django.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from urllib.parse import quote

OPTIONS_ENV = "GREENLIGHT_BACKUP_OPTIONS"
RESULT_MARKER = "GREENLIGHT-BACKUP-RESULT"
SETTINGS_LINE = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]\s*\)"""
)
EXTENSIONS = {"postgresql": ".dump", "mysql": ".sql", "sqlite": ".sqlite3"}
SUPPORTED = "PostgreSQL, MySQL/MariaDB and SQLite"
# Vendors of the backends Django ships, so that reading the settings imports no driver.
KNOWN_VENDORS = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.postgresql_psycopg2": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
    "django.db.backends.oracle": "oracle",
    "django.contrib.gis.db.backends.oracle": "oracle",
}
# Django's OPTIONS keys that libpq also reads from the environment.
LIBPQ_OPTIONS = {
    "service": "PGSERVICE",
    "passfile": "PGPASSFILE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslpassword": "PGSSLPASSWORD",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "options": "PGOPTIONS",
}
# Relations pg_restore --list names, as "<desc> <schema> <name>" after the ids.
TOC_RELATION = re.compile(
    r"^\d+; \d+ \d+ (?:MATERIALIZED VIEW|FOREIGN TABLE|TABLE(?! DATA)|SEQUENCE(?! SET| OWNED)|VIEW) (\S+) "
)
# Drops every table, view, materialized view, sequence and foreign table of the
# schemas the backup holds relations in, so that the restore leaves exactly the
# backed-up relations (also those created after the backup go).
CLEAN_SCHEMAS_SQL = """
DO $greenlight$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT c.relkind, n.nspname, c.relname
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY (%s)
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
     ORDER BY c.relkind DESC
  LOOP
    EXECUTE format('DROP %%s IF EXISTS %%I.%%I CASCADE',
                   CASE item.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                     ELSE 'TABLE' END,
                   item.nspname, item.relname);
  END LOOP;
END
$greenlight$;
"""


class BackupError(Exception):
    """The backup or the restore cannot be done; the message says why and what to do."""


# --- Django -----------------------------------------------------------------


def settings_module(release: str) -> str | None:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return os.environ["DJANGO_SETTINGS_MODULE"]
    try:
        with open(os.path.join(release, "manage.py"), encoding="utf-8") as handle:
            match = SETTINGS_LINE.search(handle.read())
    except OSError:
        return None
    return match.group(1) if match else None


def database_settings(alias: str, overrides: dict) -> tuple[str, dict]:
    """(vendor, settings dict) of DATABASES[alias], with the overrides applied.

    Only the settings module is imported (with Django's defaults filled in), not
    the apps nor, for the engines Django ships, the database driver: the backup
    then costs no more than pg_dump itself.
    """
    release = os.getcwd()
    sys.path.insert(0, release)
    module = settings_module(release)
    if not module:
        raise BackupError(
            "the settings module is not known: set DJANGO_SETTINGS_MODULE in the environment file "
            "(or in backup_environment)"
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    try:
        from django.db import connections

        if alias not in connections.settings:
            raise BackupError(
                f"DATABASES has no alias {alias!r} (it has {', '.join(sorted(connections.settings))}); "
                "set backup_database_alias"
            )
        settings_dict = dict(connections.settings[alias])
        vendor = vendor_of(settings_dict["ENGINE"])
    except BackupError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import or configuration error is reported the same way
        raise BackupError(f"Django could not load the settings {module}: {type(exc).__name__}: {exc}") from None
    for key, value in overrides.items():
        key = str(key).upper()
        if key == "OPTIONS":
            settings_dict["OPTIONS"] = {**(settings_dict.get("OPTIONS") or {}), **(value or {})}
        else:
            settings_dict[key] = value
    return vendor, settings_dict


def vendor_of(engine: str) -> str:
    """Django's vendor name of a database backend (``connection.vendor``)."""
    if engine in KNOWN_VENDORS:
        return KNOWN_VENDORS[engine]
    from django.db.utils import load_backend

    return load_backend(engine).DatabaseWrapper.vendor


def secret_values(settings_dict: dict) -> list[str]:
    values = [settings_dict.get("PASSWORD"), (settings_dict.get("OPTIONS") or {}).get("sslpassword")]
    return [str(value) for value in values if value]


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "********")
    return text


# --- processes --------------------------------------------------------------


def account(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise BackupError(f"the user {user} does not exist") from None


def run_as(entry: pwd.struct_passwd):
    """A preexec function that makes the child the given user."""

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop


def libpq_environment(settings_dict: dict, entry: pwd.struct_passwd) -> dict:
    """A clean environment for a PostgreSQL client: PATH, locale, HOME and the PG* variables."""
    options = settings_dict.get("OPTIONS") or {}
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": entry.pw_dir,
        "USER": entry.pw_name,
        "PGAPPNAME": "greenlight-backup",
    }
    for key, variable in (
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
        ("NAME", "PGDATABASE"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
    ):
        if settings_dict.get(key):
            env[variable] = str(settings_dict[key])
    for key, variable in LIBPQ_OPTIONS.items():
        if options.get(key) not in (None, ""):
            env[variable] = str(options[key])
    if "PGDATABASE" not in env and "PGSERVICE" not in env:
        env["PGDATABASE"] = "postgres"
    return env


def client(bin_dir: str | None, name: str) -> str:
    path = os.path.join(bin_dir, name) if bin_dir else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        where = bin_dir or "PATH"
        raise BackupError(f"{name} is not installed ({where}); install the PostgreSQL client (postgresql-client)")
    return path


def failure(what: str, completed, secrets: list[str]) -> BackupError:
    stderr = completed.stderr.decode("utf-8", "replace") if isinstance(completed.stderr, bytes) else completed.stderr
    lines = [line for line in (stderr or "").strip().splitlines() if line.strip()]
    detail = scrub(" / ".join(lines[-5:]) or "no output", secrets)
    return BackupError(f"{what} failed (rc={completed.returncode}): {detail}")


# --- file names -------------------------------------------------------------


def backup_prefix(args) -> str:
    """<app>-<release id>: the module runs the payload in the release directory, pointers resolved."""
    return f"{args.app_name}-{os.path.basename(os.getcwd())}"


def alias_suffix(alias: str) -> str:
    """What a backup of an alias other than default carries before its extension: several databases of one
    release and one second get a file each, and each alias is rotated on its own."""
    return "" if alias in ("", "default") else f"@{alias}"


def new_backup_path(directory: str, prefix: str, extension: str, alias: str = "default") -> str:
    extension = alias_suffix(alias) + extension
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(directory, f"{prefix}-{stamp}{extension}")
    if os.path.exists(path) or os.path.exists(path + ".partial"):
        path = os.path.join(directory, f"{prefix}-{stamp}-{os.getpid()}{extension}")
    return path


def create_private_file(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def publish(partial: str, final: str) -> None:
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.rename(partial, final)
    directory = os.open(os.path.dirname(final), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- PostgreSQL -------------------------------------------------------------


def pg_toc(bin_dir: str | None, path: str, secrets: list[str]) -> list[str]:
    """The table of contents of a custom-format archive (pg_restore --list; reads the file only)."""
    completed = subprocess.run([client(bin_dir, "pg_restore"), "--list", path], capture_output=True, check=False)
    if completed.returncode != 0:
        raise failure(f"pg_restore --list {path}", completed, secrets)
    # pg_restore read the whole table of contents. It is empty for a database
    # that holds no objects yet (a first deploy), which is a valid backup too.
    return [line for line in completed.stdout.decode("utf-8", "replace").splitlines() if line and line[0] != ";"]


def pg_dump(args, settings_dict: dict) -> dict:
    entry = account(args.run_as)
    env = libpq_environment(settings_dict, entry)
    secrets = secret_values(settings_dict)
    final = new_backup_path(
        args.dir, backup_prefix(args), EXTENSIONS["postgresql"], getattr(args, "database", "default")
    )
    partial = final + ".partial"
    command = [
        client(args.pg_bin_dir, "pg_dump"),
        "--format=custom",
        "--no-owner",
        f"--lock-wait-timeout={int(args.lock_wait_timeout * 1000)}",
        *args.pg_dump_options,
    ]
    started = time.monotonic()
    descriptor = create_private_file(partial)
    try:
        try:
            completed = subprocess.run(
                command, stdout=descriptor, stderr=subprocess.PIPE, env=env, preexec_fn=run_as(entry), check=False
            )
        finally:
            os.close(descriptor)
        if completed.returncode != 0:
            raise failure(f"pg_dump of database {env.get('PGDATABASE', '?')}", completed, secrets)
        entries = pg_toc(args.pg_bin_dir, partial, secrets)
        if args.verify_restore:
            pg_verify_restore(args, settings_dict, entry, partial, secrets)
        publish(partial, final)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return {
        "file": final,
        "engine": "postgresql",
        "database": env.get("PGDATABASE", ""),
        "size": os.path.getsize(final),
        "toc_entries": len(entries),
        "verified_restore": bool(args.verify_restore),
        "seconds": round(time.monotonic() - started, 3),
    }


def psql_command(bin_dir: str | None, *extra: str) -> list[str]:
    return [client(bin_dir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *extra]


def pg_verify_restore(args, settings_dict: dict, entry, path: str, secrets: list[str]) -> None:
    """Restore the archive into a scratch database, then drop it."""
    env = libpq_environment(settings_dict, entry)
    scratch = f"{env.get('PGDATABASE', 'db')[:40]}_glverify_{os.getpid()}"
    quoted = '"' + scratch.replace('"', '""') + '"'
    create = subprocess.run(
        psql_command(args.pg_bin_dir, "-c", f"CREATE DATABASE {quoted}"),
        capture_output=True,
        env=env,
        preexec_fn=run_as(entry),
        check=False,
    )
    if create.returncode != 0:
        raise failure(
            f"creating the scratch database {scratch} for backup_verify_restore (the database user needs CREATEDB)",
            create,
            secrets,
        )
    try:
        with open(path, "rb") as archive:
            restore = subprocess.run(
                [
                    client(args.pg_bin_dir, "pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={scratch}",
                ],
                stdin=archive,
                capture_output=True,
                env=env,
                preexec_fn=run_as(entry),
                check=False,
            )
        if restore.returncode != 0:
            raise failure(f"restoring the backup into the scratch database {scratch}", restore, secrets)
    finally:
        subprocess.run(
            psql_command(args.pg_bin_dir, "-c", f"DROP DATABASE IF EXISTS {quoted}"),
            capture_output=True,
            env=env,
            preexec_fn=run_as(entry),
            check=False,
        )


def sql_text_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + "]::text[]"


def pg_restore(args, settings_dict: dict) -> dict:
    """Bring the database back to the archive in one transaction.

    psql reads, in one transaction: the drop of every relation in the schemas
    the archive holds relations in, then pg_restore's script of the archive.
    Any error rolls everything back; the database is then as it was before.
    """
    entry = account(args.run_as)
    env = libpq_environment(settings_dict, entry)
    secrets = secret_values(settings_dict)
    entries = pg_toc(args.pg_bin_dir, args.file, secrets)
    # A backup of an empty database names no schema; bring back an empty public one.
    schemas = sorted({match.group(1) for match in map(TOC_RELATION.match, entries) if match}) or ["public"]
    prologue = "\n".join(
        [
            "SET client_min_messages = warning;",
            "BEGIN;",
            f"SET LOCAL lock_timeout = '{int(args.lock_wait_timeout * 1000)}ms';",
            CLEAN_SCHEMAS_SQL % sql_text_array(schemas) if schemas else "",
            "",
        ]
    )
    started = time.monotonic()
    script = subprocess.Popen(
        [client(args.pg_bin_dir, "pg_restore"), "--clean", "--if-exists", "--no-owner", "--file=-", args.file],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    psql = subprocess.Popen(
        psql_command(args.pg_bin_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=run_as(entry),
    )
    try:
        psql.stdin.write(prologue.encode())
        shutil.copyfileobj(script.stdout, psql.stdin, 1024 * 1024)
        script_stderr = script.stderr.read()
        if script.wait() != 0:
            raise failure(
                f"pg_restore of {args.file} (rolled back, nothing changed)",
                subprocess.CompletedProcess(script.args, script.returncode, b"", script_stderr),
                secrets,
            )
        psql.stdin.write(b"\nCOMMIT;\n")
    except BrokenPipeError:
        pass  # psql stopped on an error; its exit status and stderr say which
    finally:
        script.stdout.close()
        if script.poll() is None:
            script.kill()
            script.wait()
        # Closes psql's input: without the COMMIT above, the transaction is rolled back.
        psql_stdout, psql_stderr = psql.communicate()
    if psql.returncode != 0:
        raise failure(
            f"restoring {args.file} into database {env.get('PGDATABASE', '?')} (rolled back, nothing changed)",
            subprocess.CompletedProcess(psql.args, psql.returncode, psql_stdout, psql_stderr),
            secrets,
        )
    return {
        "file": args.file,
        "engine": "postgresql",
        "database": env.get("PGDATABASE", ""),
        "schemas": schemas,
        "seconds": round(time.monotonic() - started, 3),
    }


# --- MySQL / MariaDB --------------------------------------------------------

MYSQL_COMPLETE = b"-- Dump completed"
MYSQL_CLIENT_PACKAGE = "install the MariaDB or MySQL client (Debian: mariadb-client or default-mysql-client)"
MYSQL_DUMP_OPTIONS = [
    "--single-transaction",  # one consistent snapshot (InnoDB), no table locks: the site keeps writing
    "--routines",
    "--triggers",
    "--hex-blob",
    "--no-tablespaces",  # needs no PROCESS privilege
    "--default-character-set=utf8mb4",
]


def mysql_client(bin_dir: str | None, *names: str) -> str:
    """The first of names that is installed (mariadb-dump, then mysqldump, ...)."""
    for name in names:
        path = os.path.join(bin_dir, name) if bin_dir else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    raise BackupError(f"{names[-1]} is not installed ({bin_dir or 'PATH'}); {MYSQL_CLIENT_PACKAGE}")


def option_value(value) -> str:
    """A value of a MySQL option file, quoted (the clients read backslash escapes in quoted values)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class MysqlOptions:
    """The connection of a DATABASES entry as an option file that only the client's account can read.

    Django's mysql backend reads HOST (a path: the Unix socket), PORT, USER, PASSWORD, NAME and, in OPTIONS,
    read_default_file, unix_socket, ssl; the file carries the same to mysqldump and mysql.
    """

    def __init__(self, settings_dict: dict, entry: pwd.struct_passwd):
        options = settings_dict.get("OPTIONS") or {}
        self.database = str(settings_dict.get("NAME") or options.get("db") or options.get("database") or "")
        if not self.database:
            raise BackupError("the MySQL database has no NAME in DATABASES; set it (or database_overrides)")
        self.defaults_file = options.get("read_default_file")
        host = str(settings_dict.get("HOST") or "")
        lines = ["[client]"]
        if host.startswith("/"):
            lines.append(f"socket={option_value(host)}")
        elif host:
            lines.append(f"host={option_value(host)}")
        if options.get("unix_socket"):
            lines.append(f"socket={option_value(options['unix_socket'])}")
        if settings_dict.get("PORT"):
            lines.append(f"port={int(settings_dict['PORT'])}")
        user = settings_dict.get("USER") or options.get("user")
        if user:
            lines.append(f"user={option_value(user)}")
        password = settings_dict.get("PASSWORD") or options.get("password") or options.get("passwd")
        if password:
            lines.append(f"password={option_value(password)}")
        ssl = options.get("ssl") or {}
        for key, option in (("ca", "ssl-ca"), ("cert", "ssl-cert"), ("key", "ssl-key")):
            if ssl.get(key):
                lines.append(f"{option}={option_value(ssl[key])}")
        self.where = host or options.get("unix_socket") or "localhost"
        self.directory = tempfile.mkdtemp(prefix="greenlight-mysql-")
        self.path = os.path.join(self.directory, "client.cnf")
        descriptor = create_private_file(self.path)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        for path in (self.directory, self.path):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def arguments(self) -> list[str]:
        """The option-file arguments, which must come first on the client's command line."""
        first = [f"--defaults-file={self.defaults_file}"] if self.defaults_file else []
        return [*first, f"--defaults-extra-file={self.path}"]

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def mysql_failure(what: str, completed, secrets: list[str], options: MysqlOptions) -> BackupError:
    """The client's error, with what to do for the usual causes."""
    error = failure(what, completed, secrets)
    text = str(error)
    codes = set(re.findall(r"\b(1044|1045|1049|1227|2002|2003|2005|2013)\b", text))
    if "1045" in codes or "Access denied for user" in text:
        hint = "the server refused the user or password: check USER and PASSWORD of the DATABASES entry"
    elif codes & {"2002", "2003", "2005", "2013"}:
        hint = f"the MySQL server at {options.where} does not answer: is it running, and are HOST and PORT right?"
    elif "1049" in codes:
        hint = f"the database {options.database} does not exist on the server: create it, or fix NAME"
    elif codes & {"1044", "1227"}:
        hint = "the database user lacks a privilege the dump needs (SELECT, SHOW VIEW, TRIGGER, LOCK TABLES)"
    else:
        return error
    return BackupError(f"{text}. {hint[0].upper()}{hint[1:]}; nothing was changed.")


def mysql_environment(entry: pwd.struct_passwd) -> dict:
    """A clean environment for a MySQL client: none of the application's variables (DATABASE_URL holds the
    password) reach it."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": entry.pw_dir, "USER": entry.pw_name}


def mysql_run(command: list[str], entry, secrets: list[str], options: MysqlOptions, what: str, **kwargs):
    completed = subprocess.run(
        command,
        env=mysql_environment(entry),
        preexec_fn=run_as(entry),
        check=False,
        **kwargs,
    )
    if completed.returncode != 0:
        raise mysql_failure(what, completed, secrets, options)
    return completed


def mysql_command(args, options: MysqlOptions, *extra: str) -> list[str]:
    return [
        mysql_client(args.mysql_bin_dir, "mariadb", "mysql"),
        *options.arguments(),
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
        *extra,
    ]


def mysql_dump_complete(path: str) -> int:
    """The number of tables in a dump that ends with mysqldump's completion line; refused otherwise."""
    with open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - 4096))
        tail = handle.read()
        if MYSQL_COMPLETE not in tail:
            raise BackupError(f"the dump {path} is incomplete: it does not end with mysqldump's '-- Dump completed'")
        handle.seek(0)
        marker, count, tail = b"\nCREATE TABLE ", 0, b""
        while True:
            chunk = handle.read(1024 * 1024)
            if not chunk:
                return count
            window = tail + chunk
            count += window.count(marker)
            tail = window[-(len(marker) - 1) :]  # a marker cut by the chunk boundary is counted once, next round


def mysql_dump(args, settings_dict: dict) -> dict:
    entry = account(args.run_as)
    secrets = secret_values(settings_dict)
    options = MysqlOptions(settings_dict, entry)
    final = new_backup_path(args.dir, backup_prefix(args), EXTENSIONS["mysql"], getattr(args, "database", "default"))
    partial = final + ".partial"
    started = time.monotonic()
    try:
        command = [
            mysql_client(args.mysql_bin_dir, "mariadb-dump", "mysqldump"),
            *options.arguments(),
            *MYSQL_DUMP_OPTIONS,
            *args.mysql_dump_options,
            "--",
            options.database,
        ]
        descriptor = create_private_file(partial)
        try:
            mysql_run(
                command,
                entry,
                secrets,
                options,
                f"mysqldump of database {options.database}",
                stdout=descriptor,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(descriptor)
        tables = mysql_dump_complete(partial)
        if args.verify_restore:
            mysql_verify_restore(args, options, entry, partial, secrets)
        publish(partial, final)
    finally:
        options.remove()
        if os.path.exists(partial):
            os.unlink(partial)
    return {
        "file": final,
        "engine": "mysql",
        "database": options.database,
        "size": os.path.getsize(final),
        "toc_entries": tables,
        "verified_restore": bool(args.verify_restore),
        "seconds": round(time.monotonic() - started, 3),
    }


def mysql_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def mysql_verify_restore(args, options: MysqlOptions, entry, path: str, secrets: list[str]) -> None:
    """Load the dump into a scratch database, then drop it."""
    scratch = mysql_identifier(f"{options.database[:40]}_glverify_{os.getpid()}")
    mysql_run(
        mysql_command(args, options, "-e", f"CREATE DATABASE {scratch}"),
        entry,
        secrets,
        options,
        f"creating the scratch database {scratch} for backup_verify_restore (the database user needs CREATE on it)",
        capture_output=True,
    )
    try:
        with open(path, "rb") as dump:
            mysql_run(
                mysql_command(args, options, scratch.strip("`")),
                entry,
                secrets,
                options,
                f"loading the backup into the scratch database {scratch}",
                stdin=dump,
                capture_output=True,
            )
    finally:
        subprocess.run(
            mysql_command(args, options, "-e", f"DROP DATABASE IF EXISTS {scratch}"),
            capture_output=True,
            env=mysql_environment(entry),
            preexec_fn=run_as(entry),
            check=False,
        )


def mysql_restore(args, settings_dict: dict) -> dict:
    """Bring the database back to the dump: drop every table and view it has now, then load the dump.

    DDL is not transactional on MySQL: a restore that fails half way leaves the database half restored, and
    running it again (it starts by dropping everything) is the way out.
    """
    entry = account(args.run_as)
    secrets = secret_values(settings_dict)
    mysql_dump_complete(args.file)
    options = MysqlOptions(settings_dict, entry)
    started = time.monotonic()
    try:
        listed = mysql_run(
            mysql_command(
                args,
                options,
                "-e",
                "SELECT table_type, table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
                options.database,
            ),
            entry,
            secrets,
            options,
            f"listing the tables of {options.database}",
            capture_output=True,
        )
        rows = [line.split("\t", 1) for line in listed.stdout.decode("utf-8", "replace").splitlines() if "\t" in line]
        drops = [
            f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {mysql_identifier(name)};"
            for kind, name in sorted(rows, key=lambda row: row[0] != "VIEW")
        ]
        prologue = "\n".join(
            [
                f"SET SESSION lock_wait_timeout = {max(1, int(args.lock_wait_timeout))};",
                "SET FOREIGN_KEY_CHECKS = 0;",
                *drops,
                "",
            ]
        )
        loader = subprocess.Popen(
            mysql_command(args, options, options.database),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=mysql_environment(entry),
            preexec_fn=run_as(entry),
        )
        try:
            loader.stdin.write(prologue.encode())
            with open(args.file, "rb") as dump:
                shutil.copyfileobj(dump, loader.stdin, 1024 * 1024)
            loader.stdin.write(b"\nSET FOREIGN_KEY_CHECKS = 1;\n")
        except BrokenPipeError:
            pass  # mysql stopped on an error; its exit status and stderr say which
        finally:
            stdout, stderr = loader.communicate()
        if loader.returncode != 0:
            error = mysql_failure(
                f"restoring {args.file} into database {options.database} (DDL is not transactional on MySQL: the "
                "database may be half restored; run the restore again once the cause is fixed)",
                subprocess.CompletedProcess(loader.args, loader.returncode, stdout, stderr),
                secrets,
                options,
            )
            raise error
    finally:
        options.remove()
    return {
        "file": args.file,
        "engine": "mysql",
        "database": options.database,
        "dropped_before_load": len(drops),
        "seconds": round(time.monotonic() - started, 3),
    }


# --- SQLite -----------------------------------------------------------------


def sqlite_path(settings_dict: dict) -> str:
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError(f"the SQLite database {name!r} is not a file this role can back up")
    return os.path.abspath(name)


def sqlite_integrity(path: str) -> None:
    connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    if rows != [("ok",)]:
        raise BackupError(f"PRAGMA integrity_check of {path} failed: {'; '.join(str(row[0]) for row in rows[:5])}")


def sqlite_dump(args, settings_dict: dict) -> dict:
    source_path = sqlite_path(settings_dict)
    # A first deploy: Django creates the file at the first migrate. What is there before it is an empty database,
    # and that is what the backup holds (a restore then puts back a database without tables).
    empty = not os.path.exists(source_path)
    if empty and not os.path.isdir(os.path.dirname(source_path)):
        raise BackupError(
            f"the SQLite database {source_path} does not exist, nor its directory: fix NAME in DATABASES, or create "
            "the directory (for a database kept across releases, a shared path: code_sync_shared_paths)"
        )
    if not empty and not os.path.isfile(source_path):
        raise BackupError(f"the SQLite database {source_path} is not a file")
    final = new_backup_path(args.dir, backup_prefix(args), EXTENSIONS["sqlite"], getattr(args, "database", "default"))
    partial = final + ".partial"
    started = time.monotonic()
    os.close(create_private_file(partial))
    try:
        if not empty:
            source = sqlite3.connect(f"file:{quote(source_path)}?mode=ro", uri=True, timeout=args.lock_wait_timeout)
            target = sqlite3.connect(partial)
            try:
                source.backup(target)  # one step: a consistent snapshot, even while the application writes
            finally:
                target.close()
                source.close()
        sqlite_integrity(partial)
        publish(partial, final)
    except sqlite3.Error as exc:
        raise BackupError(f"copying {source_path} failed: {exc}") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return {
        "file": final,
        "engine": "sqlite",
        "database": source_path,
        "size": os.path.getsize(final),
        "empty_database": empty,
        "verified_restore": False,
        "seconds": round(time.monotonic() - started, 3),
    }


def sqlite_restore(args, settings_dict: dict) -> dict:
    target_path = sqlite_path(settings_dict)
    sqlite_integrity(args.file)
    existed = os.path.exists(target_path)
    owner = os.stat(target_path if existed else os.path.dirname(target_path))
    started = time.monotonic()
    try:
        source = sqlite3.connect(f"file:{quote(args.file)}?mode=ro", uri=True)
        target = sqlite3.connect(target_path, timeout=args.lock_wait_timeout)
        try:
            source.backup(target)  # replaces every page: exactly the backed-up schema and rows
        finally:
            target.close()
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"restoring {args.file} into {target_path} failed: {exc}") from None
    # Files SQLite created as root while restoring must stay usable by the application.
    for path in (target_path, target_path + "-wal", target_path + "-shm", target_path + "-journal"):
        if os.path.exists(path) and (path != target_path or not existed):
            os.chown(path, owner.st_uid, owner.st_gid)
    sqlite_integrity(target_path)
    return {
        "file": args.file,
        "engine": "sqlite",
        "database": target_path,
        "seconds": round(time.monotonic() - started, 3),
    }


# --- main -------------------------------------------------------------------


DEFAULTS = {
    "database": "default",
    "database_overrides": {},
    "pg_bin_dir": None,
    "mysql_bin_dir": None,
    "lock_wait_timeout": 60.0,
    "dir": None,
    "app_name": None,
    "verify_restore": False,
    "pg_dump_options": [],
    "mysql_dump_options": [],
    "file": None,
}


def read_options(environ) -> SimpleNamespace:
    """The options from the environment variable OPTIONS_ENV, which is removed (no child inherits it)."""
    try:
        given = json.loads(environ.pop(OPTIONS_ENV))
    except (KeyError, ValueError) as exc:
        raise BackupError(f"no valid options in {OPTIONS_ENV}: {exc}") from None
    if not isinstance(given, dict) or given.get("command") not in ("dump", "restore") or not given.get("run_as"):
        raise BackupError(f"{OPTIONS_ENV} needs a command (dump or restore) and run_as")
    options = dict(DEFAULTS)
    options.update((key, value) for key, value in given.items() if value is not None)
    options["lock_wait_timeout"] = float(options["lock_wait_timeout"])
    options["pg_dump_options"] = [str(option) for option in options["pg_dump_options"]]
    options["mysql_dump_options"] = [str(option) for option in options["mysql_dump_options"]]
    return SimpleNamespace(**options)


def run(args: SimpleNamespace) -> dict:
    vendor, settings_dict = database_settings(args.database, args.database_overrides or {})
    if vendor not in EXTENSIONS:
        raise BackupError(
            f"the database engine {settings_dict.get('ENGINE')} ({vendor}) is not supported: greenlight.django "
            f"backs up {SUPPORTED}. Nothing was changed. Back it up with its own tools and set backup_when: never"
        )
    if args.command == "dump":
        if not os.path.isdir(args.dir):
            raise BackupError(f"the backup directory {args.dir} does not exist")
        return {"postgresql": pg_dump, "mysql": mysql_dump, "sqlite": sqlite_dump}[vendor](args, settings_dict)
    if not os.path.isfile(args.file):
        raise BackupError(f"the backup file {args.file} does not exist")
    if not args.file.endswith(EXTENSIONS[vendor]):
        raise BackupError(
            f"{args.file} is not a {vendor} backup of this role (expected a {EXTENSIONS[vendor]} file) and the "
            f"database of this release is {vendor}"
        )
    return {"postgresql": pg_restore, "mysql": mysql_restore, "sqlite": sqlite_restore}[vendor](args, settings_dict)


def main() -> int:
    os.umask(0o077)
    try:
        result = {"ok": True, **run(read_options(os.environ))}
    except BackupError as exc:
        result = {"ok": False, "error": str(exc)}
    sys.stderr.flush()
    sys.stdout.write(f"{RESULT_MARKER} {json.dumps(result, sort_keys=True)}\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
