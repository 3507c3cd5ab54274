"""Settings for the demo project, read entirely from the environment.

DJANGO_SECRET_KEY            required unless DJANGO_DEBUG=1
DJANGO_DEBUG                 1/true/yes/on to enable debug mode (default: off)
DATABASE_URL                 postgres://user:pass@host:port/name, mysql://user:pass@host:port/name
                             (MySQL/MariaDB, with mysqlclient installed) or sqlite:////abs/path.sqlite3
                             (default: SQLite file db.sqlite3 next to manage.py)
DJANGO_DATABASES             further aliases of DATABASES, comma separated (several databases), each read
                             from DATABASE_URL_<ALIAS>; demo.routers.Router then sends the audit app (the
                             multidb versions) to the alias audit and no migration to any other (a replica)
DJANGO_ALLOWED_HOSTS         comma separated (default: localhost,127.0.0.1)
DJANGO_CSRF_TRUSTED_ORIGINS  comma separated, e.g. https://demo.example.com (default: none)
DJANGO_STATIC_ROOT           where collectstatic writes (default: <project>/static)
DJANGO_STATIC_MANIFEST       1 for hashed static file names, ManifestStaticFilesStorage (default: off)
DJANGO_MEDIA_ROOT            uploaded files (default: <project>/media)
DJANGO_SECURE_SSL_REDIRECT   1 when the site is served over HTTPS (default: off, plain HTTP)
DJANGO_SECURE_HSTS_SECONDS   HSTS max-age once HTTPS is on (default: 0, no HSTS)
DJANGO_LOG_LEVEL             log level of the console log (default: INFO)
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from demo.database_url import parse_database_url

# The project's root, where VERSION is: the parent of this package, or one more level up in a src layout.
BASE_DIR = next(
    (folder for folder in Path(__file__).resolve().parents[1:3] if (folder / "VERSION").is_file()),
    Path(__file__).resolve().parent.parent,
)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def read_version() -> str:
    try:
        return (BASE_DIR / "VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ImproperlyConfigured(f"{BASE_DIR / 'VERSION'} is missing; every release carries its VERSION") from None


DEMO_VERSION = read_version()

DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it in the environment (for local development or tests only, "
            "DJANGO_DEBUG=1 allows running without one)."
        )
    SECRET_KEY = "insecure-development-key-used-only-with-DJANGO_DEBUG=1"  # noqa: S105 - debug mode only

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "notes",
]
if (BASE_DIR / "audit").is_dir():  # the multidb versions: what happens to notes, in a database of its own
    INSTALLED_APPS.append("audit")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notes.context_processors.demo_version",
            ],
        },
    },
]

DATABASES = {"default": parse_database_url(os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
for _alias in env_list("DJANGO_DATABASES"):
    _url = os.environ.get(f"DATABASE_URL_{_alias.upper()}", "")
    if not _url:
        raise ImproperlyConfigured(f"DJANGO_DATABASES names {_alias}: set DATABASE_URL_{_alias.upper()} too")
    DATABASES[_alias] = parse_database_url(_url)
if len(DATABASES) > 1:
    DATABASE_ROUTERS = ["demo.routers.Router"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "static")
if env_bool("DJANGO_STATIC_MANIFEST"):
    # Pages name each static file by a hash of its content (site.3f2a1c.css), as most production sites do.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT") or BASE_DIR / "media")

# Security. SecurityMiddleware's defaults already send nosniff, a same-origin
# referrer policy and COOP; X-Frame-Options defaults to DENY; the session cookie
# is HttpOnly. What remains depends on whether the site is served over HTTPS.
if env_bool("DJANGO_SECURE_SSL_REDIRECT"):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # TLS ends at the reverse proxy, which must set (not pass through) this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
else:
    # Served as plain HTTP (e.g. nginx on loopback): redirecting to HTTPS, secure-only
    # cookies and HSTS would make the site unusable, so the checks asking for them are
    # silenced. Setting DJANGO_SECURE_SSL_REDIRECT=1 turns them all on and unsilences these.
    SILENCED_SYSTEM_CHECKS = [
        "security.W004",  # SECURE_HSTS_SECONDS
        "security.W008",  # SECURE_SSL_REDIRECT
        "security.W012",  # SESSION_COOKIE_SECURE
        "security.W016",  # CSRF_COOKIE_SECURE
    ]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO").upper()},
}
