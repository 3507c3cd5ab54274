from django import forms

from notes.models import Note


class NoteForm(forms.ModelForm):
    """What ``POST /notes/new`` accepts."""

    class Meta:
        model = Note
        fields = ["title", "body"]
