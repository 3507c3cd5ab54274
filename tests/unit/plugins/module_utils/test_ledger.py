"""The parts of the migration ledger that need no Django: the canonical form the checksum is made of."""

from __future__ import annotations

import enum
import functools

from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger


class Colour(enum.Enum):
    RED = "r"


def forwards(apps, schema_editor):
    return None


class Deconstructible:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def deconstruct(self):
        return ("app.Deconstructible", self.args, self.kwargs)


class Migration:
    def __init__(self, operations, dependencies):
        self.operations, self.dependencies = operations, dependencies


def test_what_a_value_means_not_how_it_was_written():
    assert ledger.canonical({"b": 1, "a": [2, (3,)]}) == ledger.canonical({"a": [2, [3]], "b": 1})
    assert ledger.canonical({3, 1, 2}) == ledger.canonical({2, 3, 1})
    assert ledger.canonical(forwards) == {"ref": f"{__name__}.forwards"}
    assert ledger.canonical(Colour.RED) == {"enum": f"{__name__}.Colour", "value": "r"}
    assert ledger.canonical(functools.partial(forwards, 1)) == {
        "partial": {"ref": f"{__name__}.forwards"},
        "args": [1],
        "kwargs": {"dict": []},
    }
    assert ledger.canonical(1.5) != ledger.canonical("1.5")


def test_the_checksum_follows_the_operations_and_dependencies_only():
    one = Migration([Deconstructible("note", max_length=10)], [("notes", "0001_initial"), ("auth", "0001")])
    same = Migration([Deconstructible("note", max_length=10)], [("auth", "0001"), ("notes", "0001_initial")])
    other = Migration([Deconstructible("note", max_length=11)], [("notes", "0001_initial"), ("auth", "0001")])
    assert ledger.checksum(one) == ledger.checksum(same)
    assert ledger.checksum(one) != ledger.checksum(other)
    assert len(ledger.checksum(one)) == 64


def test_the_newest_event_of_each_migration_is_what_the_ledger_knows():
    events = [
        {"app": "notes", "name": "0001", "event": "baseline"},
        {"app": "notes", "name": "0002", "event": "applied"},
        {"app": "notes", "name": "0002", "event": "unapplied"},
    ]
    assert {key: event["event"] for key, event in ledger.latest(events).items()} == {
        ("notes", "0001"): "baseline",
        ("notes", "0002"): "unapplied",
    }
