from django.apps import AppConfig
from django.db.models.signals import post_save


def record_note(sender, instance, created, **kwargs):
    from audit.models import Event

    if created:
        Event.objects.create(kind="note_created", note_id=instance.pk)


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        post_save.connect(record_note, sender="notes.Note", dispatch_uid="audit.record_note")
