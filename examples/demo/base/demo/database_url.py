"""Turn a ``DATABASE_URL`` into a Django ``DATABASES`` entry (no extra dependency).

Supported forms::

    postgres://user:password@host:5432/name       (postgresql:// too)
    postgres://user@/name?host=/run/postgresql     (Unix socket; query items become OPTIONS)
    mysql://user:password@host:3306/name           (MySQL or MariaDB; needs the mysqlclient driver)
    mysql://user@localhost/name?unix_socket=/run/mysqld/mysqld.sock
    sqlite:////absolute/path/db.sqlite3            (three slashes, then the absolute path)
    sqlite:///relative/path.sqlite3

User names and passwords are URL-decoded, so ``p%40ss`` stands for ``p@ss``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

POSTGRES_SCHEMES = {"postgres", "postgresql"}
MYSQL_SCHEMES = {"mysql", "mariadb"}
ENGINES = {"postgres": "django.db.backends.postgresql", "mysql": "django.db.backends.mysql"}


def parse_database_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme in POSTGRES_SCHEMES:
        return _server(parts, "postgres")
    if parts.scheme in MYSQL_SCHEMES:
        return _server(parts, "mysql")
    if parts.scheme == "sqlite":
        return _sqlite(parts)
    raise ImproperlyConfigured(
        f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use postgres://, postgresql://, mysql:// or sqlite:///)"
    )


def _server(parts, kind: str) -> dict:
    name = unquote(parts.path[1:])
    if not name or "/" in name:
        raise ImproperlyConfigured(f"DATABASE_URL: a {kind} URL must name one database, e.g. {kind}://u:p@h/name")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL: the port is not a number") from None
    return {
        "ENGINE": ENGINES[kind],
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def _sqlite(parts) -> dict:
    if parts.netloc:
        raise ImproperlyConfigured("DATABASE_URL: write sqlite URLs with three slashes, e.g. sqlite:////abs/db.sqlite3")
    path = unquote(parts.path)[1:]  # drop the slash that ends "sqlite://"
    if not path:
        raise ImproperlyConfigured("DATABASE_URL: a sqlite URL needs a file path, e.g. sqlite:////abs/db.sqlite3")
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
