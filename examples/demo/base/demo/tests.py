"""Settings helpers: DATABASE_URL parsing and environment values (no database needed)."""

import os
from unittest import mock

from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase

from demo.database_url import parse_database_url
from demo.settings import env_bool, env_int, env_list


class DatabaseUrlTests(SimpleTestCase):
    def test_postgres_with_an_encoded_password(self):
        self.assertEqual(
            parse_database_url("postgres://demo:p%40ss%2Fw%3Ard@db.example.com:6432/notes"),
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "notes",
                "USER": "demo",
                "PASSWORD": "p@ss/w:rd",
                "HOST": "db.example.com",
                "PORT": "6432",
                "OPTIONS": {},
            },
        )

    def test_postgresql_scheme_socket_and_options(self):
        config = parse_database_url("postgresql://demo@/notes?host=/run/postgresql&sslmode=disable")
        self.assertEqual((config["HOST"], config["PORT"], config["PASSWORD"]), ("", "", ""))
        self.assertEqual(config["OPTIONS"], {"host": "/run/postgresql", "sslmode": "disable"})

    def test_sqlite_absolute_and_relative_paths(self):
        absolute = parse_database_url("sqlite:////srv/demo/db.sqlite3")
        self.assertEqual(absolute, {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/demo/db.sqlite3"})
        self.assertEqual(parse_database_url("sqlite:///db.sqlite3")["NAME"], "db.sqlite3")

    def test_mysql_and_mariadb(self):
        config = parse_database_url("mysql://demo:p%40ss@db.example.com:3307/notes")
        self.assertEqual(
            (config["ENGINE"], config["NAME"], config["USER"], config["PASSWORD"], config["HOST"], config["PORT"]),
            ("django.db.backends.mysql", "notes", "demo", "p@ss", "db.example.com", "3307"),
        )
        self.assertEqual(parse_database_url("mariadb://demo@h/notes")["ENGINE"], "django.db.backends.mysql")

    def test_rejected_urls(self):
        for url in (
            "oracle://u:p@h/db",
            "postgres://u:p@h/",
            "postgres://u:p@h:port/db",
            "sqlite://host/db.sqlite3",
            "sqlite:///",
            "",
        ):
            with self.subTest(url=url), self.assertRaises(ImproperlyConfigured):
                parse_database_url(url)


class EnvironmentTests(SimpleTestCase):
    def test_booleans(self):
        for value, expected in (("1", True), ("On", True), ("no", False), ("", False)):
            with self.subTest(value=value), mock.patch.dict(os.environ, {"X_FLAG": value}):
                self.assertIs(env_bool("X_FLAG"), expected)
        with mock.patch.dict(os.environ, {"X_FLAG": "maybe"}), self.assertRaises(ImproperlyConfigured):
            env_bool("X_FLAG")

    def test_lists_and_integers(self):
        with mock.patch.dict(os.environ, {"X_LIST": " a.example, ,b.example ", "X_INT": "42"}):
            self.assertEqual(env_list("X_LIST"), ["a.example", "b.example"])
            self.assertEqual(env_int("X_INT", 0), 42)
        with mock.patch.dict(os.environ, {"X_INT": "forty"}), self.assertRaises(ImproperlyConfigured):
            env_int("X_INT", 0)
