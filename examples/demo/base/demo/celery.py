"""The demo's Celery application: Redis as the broker, the tasks of notes/tasks.py.

CELERY_BROKER_URL   the broker (default: redis://127.0.0.1:6379/0, Debian's redis-server)
DEMO_BEAT_SECONDS   how often beat sends notes.tasks.tick (default: 5)

    celery -A demo worker --concurrency 1
    celery -A demo beat --schedule "$STATE_DIRECTORY/celerybeat-schedule"
    celery -A demo call notes.tasks.record --args '["a key"]'
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

app = Celery("demo", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"), include=["notes.tasks"])
app.conf.update(
    # One task at a time, and no more reserved than that: what the worker holds is what it is doing.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    beat_schedule={
        "tick": {"task": "notes.tasks.tick", "schedule": float(os.environ.get("DEMO_BEAT_SECONDS", "5"))},
    },
)
