from django.db import models


class Event(models.Model):
    """What happened to a note; kept in the database audit (demo.routers.Router)."""

    kind = models.CharField(max_length=40)
    note_id = models.BigIntegerField()
    at = models.DateTimeField(auto_now_add=True)
