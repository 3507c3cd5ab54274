"""Notes, v7: v6 without ``body`` (migration 0007 drops the column).

From v6: ``title`` became ``headline`` by expand/contract, in a single deploy.

Migrations 0004-0005 (before the switch) add ``headline``, relax ``title`` and
copy it over; 0006 (after the switch) drops ``title``. This code serves in
between, while ``title`` may still exist and v2 code may still be writing it:

* writes keep both columns in sync (``Note.save``), so v2 code reading
  ``title`` sees the rows this release writes;
* reads prefer ``headline`` and fall back to ``title`` for rows v2 code wrote
  after the backfill (0006 copies those once more before dropping ``title``).

The model itself knows only ``headline``: it matches the state after 0006.
Bulk writes (``bulk_create``, ``update``) bypass ``save()`` and are not synced.
"""

from __future__ import annotations

from django.db import connections, models, router, transaction
from django.db.models.expressions import RawSQL

LEGACY_TITLE = "title"


def legacy_title_present(using: str) -> bool:
    """True until migration 0006 has dropped the old ``title`` column."""
    connection = connections[using]
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, Note._meta.db_table)
    return any(column.name == LEGACY_TITLE for column in description)


def legacy_title_sql(using: str) -> str:
    quote = connections[using].ops.quote_name
    return f"{quote(Note._meta.db_table)}.{quote(LEGACY_TITLE)}"


class NoteQuerySet(models.QuerySet):
    def for_listing(self):
        """The rows the pages and the JSON list show, newest first, with the old title where needed."""
        queryset = self.order_by("-id")
        if legacy_title_present(self.db):
            # Quoted identifiers only, no user input.
            queryset = queryset.annotate(legacy_title=RawSQL(legacy_title_sql(self.db), ()))  # noqa: S611
        return queryset


class Note(models.Model):
    headline = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    tag = models.CharField(max_length=50, null=True, blank=True)

    objects = NoteQuerySet.as_manager()

    def __str__(self):
        return self.display_headline

    @property
    def display_headline(self) -> str:
        """The headline, or the old title of a row written by v2 code that no backfill has reached yet."""
        if self.headline is not None:
            return self.headline
        return getattr(self, "legacy_title", None) or ""

    def save(self, *args, **kwargs):
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            super().save(*args, **kwargs)
            if legacy_title_present(using):
                self._write_legacy_title(using)

    def _write_legacy_title(self, using: str) -> None:
        connection = connections[using]
        quote = connection.ops.quote_name
        table, pk = quote(self._meta.db_table), quote(self._meta.pk.column)
        sql = f"UPDATE {table} SET {quote(LEGACY_TITLE)} = %s WHERE {pk} = %s"  # noqa: S608 - identifiers, no input
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.headline, self.pk])

    def as_dict(self) -> dict:
        """Every column of the row, as the JSON API shows it."""
        row = {field.attname: field.value_from_object(self) for field in self._meta.concrete_fields}
        return {**row, "headline": self.display_headline}
