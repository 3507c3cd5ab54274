"""Several databases (DJANGO_DATABASES): the audit app in the alias ``audit``, everything else in ``default``.

No migration goes to any other alias: a read replica is only read from.
"""

AUDIT_APPS = {"audit"}


class Router:
    def db_for_read(self, model, **hints):
        return "audit" if model._meta.app_label in AUDIT_APPS else None

    def db_for_write(self, model, **hints):
        return "audit" if model._meta.app_label in AUDIT_APPS else None

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label in AUDIT_APPS:
            return db == "audit"
        return db == "default"
