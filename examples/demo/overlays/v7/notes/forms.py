from django import forms

from notes.models import Note


class NoteForm(forms.ModelForm):
    """What ``POST /notes/new`` accepts; clients of the v2 API may still send ``title``."""

    class Meta:
        model = Note
        fields = ["headline", "tag"]

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and "headline" not in data and "title" in data:
            data = data.copy()
            data["headline"] = data["title"]
        super().__init__(data, *args, **kwargs)
