"""ASGI entry point, e.g. ``gunicorn -k uvicorn_worker.UvicornWorker demo.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

application = get_asgi_application()
