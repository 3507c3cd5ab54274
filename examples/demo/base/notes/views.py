from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notes.forms import NoteForm
from notes.models import Note

logger = logging.getLogger(__name__)


def plain_text(text: str, status: int = 200) -> HttpResponse:
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain; charset=utf-8")


def home(request):
    return render(request, "notes/home.html", {"note_count": Note.objects.count()})


@never_cache
def note_list(request):
    notes = Note.objects.for_listing()
    if request.GET.get("format") == "json":
        return JsonResponse([note.as_dict() for note in notes], safe=False)
    return render(request, "notes/note_list.html", {"notes": notes})


def read_payload(request) -> dict:
    """The submitted fields, from a JSON object body or an ordinary form post."""
    if request.content_type == "application/json":
        payload = json.loads(request.body or b"{}")
        if not isinstance(payload, dict):
            raise ValueError("the JSON body must be an object")
        return payload
    return request.POST


@csrf_exempt  # a JSON/form API for scripts, not a browser form: no session, no CSRF token
@require_POST
def note_create(request):
    try:
        payload = read_payload(request)
    except ValueError as exc:
        return JsonResponse({"error": f"invalid JSON body: {exc}"}, status=400)
    form = NoteForm(payload)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    note = form.save()
    return JsonResponse({"id": note.pk, "version": settings.DEMO_VERSION}, status=201)


def database_problem() -> str | None:
    """None when the database answers and the notes table has every column this code reads."""
    try:
        # A savepoint inside an outer transaction, so a failed probe leaves the connection usable.
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            list(Note.objects.all()[:1])
    except DatabaseError as exc:
        logger.warning("health check failed: %s: %s", type(exc).__name__, exc)
        return type(exc).__name__
    return None


@never_cache
def healthz(request):
    problem = database_problem()
    if problem:
        return plain_text(f"unavailable {settings.DEMO_VERSION}: database {problem}", status=503)
    return plain_text(f"ok {settings.DEMO_VERSION}")


@never_cache
def version(request):
    return plain_text(settings.DEMO_VERSION)


async def served_by(request):
    """An async view: how the request reached Django (asgi under an ASGI server, wsgi under gunicorn's own
    workers, where Django runs it in an event loop of its own) and the release that answered. (Django 4.2's
    never_cache does not take async views: the header is set here.)"""
    response = plain_text(f"{'asgi' if isinstance(request, ASGIRequest) else 'wsgi'} {settings.DEMO_VERSION}")
    response["Cache-Control"] = "max-age=0, no-cache, no-store, must-revalidate, private"
    return response
