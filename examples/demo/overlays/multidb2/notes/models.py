from django.db import models


class NoteQuerySet(models.QuerySet):
    def for_listing(self):
        """The rows the pages and the JSON list show, newest first."""
        return self.order_by("-id")


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    tag = models.CharField(max_length=50, null=True, blank=True)
    audited = models.BooleanField(null=True)

    objects = NoteQuerySet.as_manager()

    def __str__(self):
        return self.title

    def as_dict(self) -> dict:
        """Every column of the row, as the JSON API shows it."""
        return {field.attname: field.value_from_object(self) for field in self._meta.concrete_fields}
