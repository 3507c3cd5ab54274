# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deploy plan of greenlight.django.plan: its migrations, its id, and what differs from an approved one.

Documentation: plan_migrations.yml, plan_id.yml and plan_differences.yml beside this file.
"""

from __future__ import annotations

import hashlib
import json

# Keys of a plan file that say when and by whom, not what: left out of the id.
NOT_HASHED = ("plan_id", "created_at", "created_by")

# What a plan names at its top level, in the order the differences are told, with a label each.
LABELS = {
    "app": "application",
    "strategy": "strategy",
    "hosts": "hosts",
    "release": "release",
    "revision": "revision",
    "serving": "release serving now",
    "window": "expected window",
}

# The facts of a migration and of an operation that a plan keeps: the review is about these, not about how long a
# check took or how big PostgreSQL estimates a table today.
MIGRATION_FACTS = ("phase", "compatibility", "destructive", "data_loss", "reversible", "accepted")
OPERATION_FACTS = ("type", "compatibility", "destructive", "data_loss", "data_check")


def _data_check(check) -> str:
    """One stable sentence for the data check of an operation (no timing, no sample keys)."""
    if not check:
        return "none needed"
    if check.get("skipped"):
        return "skipped: " + str(check["skipped"])
    violations = int(check.get("violations") or 0)
    if check.get("checked") and violations == 0:
        return "passed"
    return f"{violations} offending rows"


def plan_migrations(pending) -> list[dict]:
    """The pending migrations of greenlight.django.migration_status, as a plan keeps them."""
    migrations = []
    for item in pending or []:
        operations = [
            {
                "description": str(operation.get("description", "")),
                **{fact: operation.get(fact) for fact in OPERATION_FACTS if fact != "data_check"},
                "data_check": _data_check(operation.get("data_check")),
            }
            for operation in item.get("operations") or []
        ]
        migrations.append(
            {
                "migration": f"{item['app']}.{item['name']}",
                **{fact: item.get(fact) for fact in MIGRATION_FACTS},
                "operations": operations,
                "sql": [str(line) for line in item.get("sql") or []],
            }
        )
    return migrations


def _canonical(plan: dict) -> str:
    content = {key: value for key, value in plan.items() if key not in NOT_HASHED}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def plan_id(plan: dict) -> str:
    """16 hex digits of the SHA-256 of the plan's contents (its id and timestamps left out)."""
    return hashlib.sha256(_canonical(plan).encode("utf-8")).hexdigest()[:16]


def _said(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_said(value[key])}" for key in sorted(value))
    if isinstance(value, list):
        return ", ".join(_said(item) for item in value) or "none"
    return json.dumps(value) if value in ("", None) else str(value)


def _migration_differences(name: str, approved: dict, now: dict) -> list[str]:
    found = []
    for fact in MIGRATION_FACTS:
        if approved.get(fact) != now.get(fact):
            found.append(f"{name}: {fact} was {_said(approved.get(fact))}, now {_said(now.get(fact))}")
    before = approved.get("operations") or []
    after = now.get("operations") or []
    if [op.get("description") for op in before] != [op.get("description") for op in after]:
        found.append(
            f"{name}: its operations changed (approved: {_said([op.get('description') for op in before])};"
            f" now: {_said([op.get('description') for op in after])})"
        )
    else:
        for old, new in zip(before, after):
            for fact in OPERATION_FACTS:
                if old.get(fact) != new.get(fact):
                    found.append(
                        f'{name}: {fact} of "{old.get("description")}" was {_said(old.get(fact))},'
                        f" now {_said(new.get(fact))}"
                    )
    if approved.get("sql") != now.get("sql"):
        found.append(f"{name}: its SQL changed")
    return found


def plan_differences(approved: dict, now: dict) -> list[str]:
    """What differs between the approved plan and the plan computed now, one sentence each."""
    found = []
    if approved.get("plan_id") and approved["plan_id"] != plan_id(approved):
        found.append(
            f"the approved plan file was edited after it was written (its contents hash to {plan_id(approved)})"
        )
    for key, label in LABELS.items():
        if approved.get(key) != now.get(key):
            found.append(f"{label} changed: approved {_said(approved.get(key))}, now {_said(now.get(key))}")
    before = {item["migration"]: item for item in approved.get("migrations") or []}
    after = {item["migration"]: item for item in now.get("migrations") or []}
    found += [f"migration added: {name}" for name in after if name not in before]
    found += [f"migration no longer pending: {name}" for name in before if name not in after]
    common = [name for name in after if name in before]
    if common != [name for name in before if name in after]:
        found.append(f"the migrations run in another order: now {', '.join(common)}")
    for name in common:
        found += _migration_differences(name, before[name], after[name])
    others = sorted(
        key
        for key in set(approved) | set(now)
        if key not in LABELS and key not in NOT_HASHED and key != "migrations" and approved.get(key) != now.get(key)
    )
    found += [f"{key} changed: approved {_said(approved.get(key))}, now {_said(now.get(key))}" for key in others]
    return found


class FilterModule:
    """The plan filters of greenlight.django."""

    def filters(self):
        return {
            "plan_migrations": plan_migrations,
            "plan_id": plan_id,
            "plan_differences": plan_differences,
        }
