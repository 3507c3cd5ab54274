#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: migrate
short_description: Apply the inspected Django migrations of a release once, under a database lock
version_added: "1.1.0"
description:
  - Applies the pending migrations of a Django release (C(manage.py migrate)) in one process of the release's
    interpreter, started as the application's user, on one database connection - or, with O(unapply), migrates
    backwards.
  - Holds the migrate lock for the whole run - on PostgreSQL the session advisory lock keyed on O(app_name) (the
    first 8 bytes of C(sha256("greenlight.django.migrate:<app_name>")), the same on every host), on MySQL and
    MariaDB the named lock C(GET_LOCK('greenlight-migrate-<hash of app_name>')), on SQLite an exclusive C(flock)
    of the database file - so that two deploys never migrate at the same time; the second
    waits at most O(advisory_lock_timeout) seconds, then finds nothing left to do.
  - On PostgreSQL sets C(lock_timeout), C(statement_timeout) and C(application_name)
    (C(greenlight-migrate <app_name>)) on every connection it opens, so that an C(ALTER TABLE) stuck behind a long
    transaction fails after O(lock_timeout) seconds instead of making every query of the site queue behind it. On
    MySQL and MariaDB it sets C(lock_wait_timeout) and C(innodb_lock_wait_timeout) (whole seconds, at least 1) and,
    on MariaDB, C(max_statement_time) from O(statement_timeout).
  - A database that does not answer or refuses the user fails with its own message; an engine other than
    PostgreSQL, MySQL/MariaDB and SQLite is refused before anything is applied.
  - Plans again under the lock and refuses, with nothing applied, a plan that goes backwards or that holds a
    migration not in O(expect) (what was inspected, for example the RV(greenlight.django.migration_status#module:plan)
    of M(greenlight.django.migration_status)).
  - The application's secrets are read on the host from O(env_files) and given to the process in its environment
    only - never on a command line, never to the controller - and are masked in everything the module returns.
  - Records each migration it applies or unapplies in the migration ledger, the table
    C(greenlight_migration_ledger) of greenlight.django in the same database (never created by a migration of the
    project), with a checksum of its operations and dependencies, the release (the name of O(project_path)'s
    directory) and its revision (the first line of its C(REVISION) file), and when - in the transaction in which
    Django records the migration in C(django_migrations), so the two never disagree. The first run on a database
    without the ledger creates it and records what is applied then as the baseline (RV(ledger_baseline)).
    M(greenlight.django.migration_status) reads it to report migrations applied outside a deploy and migrations
    changed since they were applied.
  - With O(accept), applies nothing and records instead that those findings of the ledger were accepted after
    review, by O(accept_by), for O(accept_reason).
  - RV(ignore:changed) only when migrations were applied, unapplied or accepted, or the ledger's baseline was
    taken. It never creates migrations.
options:
  user:
    description:
      - Account the migrate runs as, usually the application's unprivileged user. Running as another account than
        the module's needs root (C(become=true)).
      - Defaults to the account the module runs as.
    type: str
  app_name:
    description:
      - Name of the application; keys the migrate lock and names the PostgreSQL connection.
    type: str
    required: true
  phase:
    description:
      - V(all) and V(after_switch) - migrate every app to its leaf migrations.
      - V(before_switch) - migrate each app only to its last migration in O(expect) (the expand part of a
        blue-green deploy, while the old release still serves).
      - Ignored with O(unapply).
    type: str
    choices: [all, before_switch, after_switch]
    default: all
  expect:
    description:
      - The migrations (C(app.name)) that may be applied. A plan that holds any other migration is refused with
        nothing applied; an empty list applies nothing.
    type: list
    elements: str
    default: []
  unapply:
    description:
      - Migrate backwards instead, so that exactly these migrations (C(app.name)) are no longer applied - each app
        to its newest applied migration that stays.
      - Refused with nothing changed unless the release has these migrations, the backward plan is exactly them
        and every operation in it is reversible (a C(RunPython) or C(RunSQL) without reverse code is not).
    type: list
    elements: str
    default: []
  accept:
    description:
      - Apply nothing; record in the migration ledger that these migrations (C(app.name)), each reported by
        M(greenlight.django.migration_status) as RV(greenlight.django.migration_status#module:applied_outside_deploy)
        or RV(greenlight.django.migration_status#module:changed_since_applied), were accepted after review. The
        checksum recorded is that of this release's code, so a later change is found again.
      - Refused, with nothing recorded, when one of them is not reported by the ledger. Needs O(accept_by) and
        O(accept_reason). Mutually exclusive with O(expect) and O(unapply).
    type: list
    elements: str
    default: []
  accept_by:
    description:
      - Who accepts (a name or an account), recorded with each accepted migration. Required with O(accept).
    type: str
    default: ""
  accept_reason:
    description:
      - Why, after which review, recorded with each accepted migration. Required with O(accept).
    type: str
    default: ""
  dry_run:
    description:
      - Check the plan under the lock, apply and unapply nothing, as in check mode.
    type: bool
    default: false
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) of the migrate's connections, in seconds; V(0) for no limit.
    type: float
    default: 5
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) of the migrate's connections, in seconds; V(0) for no limit (data
        migrations can be long).
    type: float
    default: 0
  advisory_lock_timeout:
    description:
      - Seconds to wait for the migrate lock while another migrate of O(app_name) holds it.
    type: float
    default: 60
  timeout:
    description:
      - Seconds the whole migrate may take before its process is stopped; the migration it was running is then
        rolled back, earlier ones stay applied. V(0) waits forever.
    type: int
    default: 0
  backup:
    description:
      - Back up the database first, in the same call, as M(greenlight.django.db_backup) with
        O(greenlight.django.db_backup#module:state=dumped) does (same payload, same checks, same file names), then
        migrate only when the backup was written. A downtime window saves a module call this way.
      - A failed backup fails the module with nothing migrated and no RV(backup). Once the backup is written,
        RV(backup) names it also when the migrate then fails, so that it can be restored.
      - Not taken in check mode or with O(dry_run).
    type: dict
    suboptions:
      dir:
        description:
          - Directory the backup is written to (created with mode C(0700)). See
            O(greenlight.django.db_backup#module:dir).
        type: path
        required: true
      run_as:
        description:
          - The account the dump tools run as. See O(greenlight.django.db_backup#module:run_as).
        type: str
        required: true
      env_files:
        description:
          - The environment files of the backup, when they are not O(env_files).
        type: list
        elements: path
      environment:
        description:
          - The environment of the backup, when it is not O(environment).
        type: dict
      database_overrides:
        description:
          - See O(greenlight.django.db_backup#module:database_overrides).
        type: dict
        default: {}
      keep:
        description:
          - See O(greenlight.django.db_backup#module:keep).
        type: int
        default: 0
      verify_restore:
        description:
          - See O(greenlight.django.db_backup#module:verify_restore).
        type: bool
        default: false
      pg_dump_options:
        description:
          - See O(greenlight.django.db_backup#module:pg_dump_options).
        type: list
        elements: str
        default: []
      pg_bin_dir:
        description:
          - See O(greenlight.django.db_backup#module:pg_bin_dir).
        type: path
      mysql_dump_options:
        description:
          - See O(greenlight.django.db_backup#module:mysql_dump_options).
        type: list
        elements: str
        default: []
      mysql_bin_dir:
        description:
          - See O(greenlight.django.db_backup#module:mysql_bin_dir).
        type: path
      lock_wait_timeout:
        description:
          - See O(greenlight.django.db_backup#module:lock_wait_timeout).
        type: float
        default: 60
      timeout:
        description:
          - Seconds the backup may take before it is stopped. V(0) waits forever.
        type: int
        default: 0
notes:
  - Django runs each migration in its own transaction on PostgreSQL and SQLite (unless it sets C(atomic = False)),
    so a failure rolls back that migration only; the earlier ones stay applied and RV(applied) lists them, also
    when the module fails.
  - Behind PgBouncer in transaction pooling mode, session advisory locks and C(SET) do not hold; connect the
    migrate directly, or through a session pool.
  - On MySQL and MariaDB DDL is not transactional - a migration that fails half way leaves the operations before
    the failed one applied; RV(partial) names them and the message says so. Restore the backup taken before.
  - The release's interpreter must be Python 3.8 or later with Django 4.2 or later; supported databases are
    PostgreSQL, MySQL/MariaDB and SQLite.
requirements:
  - Django 4.2 or later in the release's interpreter.
seealso:
  - module: greenlight.django.migration_status
    description: Inspects the plan (read-only) and judges it before it is applied.
  - name: Django migrations
    description: How Django migrations work.
    link: https://docs.djangoproject.com/en/stable/topics/migrations/
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - greenlight.django.app_runtime
  - greenlight.django.app_runtime.release
  - greenlight.django.app_runtime.environment
attributes:
  check_mode:
    support: full
    details: Takes the lock and plans under it like a normal run, applies and unapplies nothing, and returns the
      plan in RV(plan); RV(ignore:changed) is V(true) when the plan is not empty.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Inspect the migrations of the new release
  greenlight.django.migration_status:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
  become: true
  register: status

- name: Apply what was inspected, as the application's user
  greenlight.django.migrate:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
    user: mysite
    app_name: mysite
    expect: "{{ status.plan }}"
  become: true
  register: migrated

- name: Expand only, before the traffic switch of a blue-green deploy
  greenlight.django.migrate:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
    user: mysite
    app_name: mysite
    phase: before_switch
    expect: "{{ status.before_switch }}"
    lock_timeout: 2
  become: true

- name: In a downtime window, back up the database and then migrate it, in one call
  greenlight.django.migrate:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
    user: mysite
    app_name: mysite
    expect: "{{ status.plan }}"
    backup:
      dir: /srv/mysite/backups
      run_as: mysite
      keep: 5
  become: true
  register: migrated  # migrated.backup.path: the backup to restore should the new release not come up

- name: Accept, after review, a migration applied by hand on the server (recorded in the migration ledger)
  greenlight.django.migrate:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
    user: mysite
    app_name: mysite
    accept: [notes.0004_note_rating]
    accept_by: jane
    accept_reason: "Reviewed: the committed 0004_note_rating matches what was applied on 2024-05-30"
  become: true

- name: Unapply, with the code of the release that applied it, what the previous release does not have
  greenlight.django.migrate:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
    user: mysite
    app_name: mysite
    unapply: [notes.0004_note_rating]
  become: true
"""

RETURN = r"""
plan:
  description: The migrations (C(app.name)) the run planned under the lock, in plan order - to apply, or with
    O(unapply) to unapply. In check mode and with O(dry_run), what would be done.
  returned: always
  type: list
  elements: str
  sample: [notes.0002_note_tag, notes.0003_backfill_tag]
applied:
  description: The migrations this run applied, in plan order; after a failure, those applied before it.
  returned: always
  type: list
  elements: str
  sample: [notes.0002_note_tag]
unapplied:
  description: The migrations this run unapplied (O(unapply)); after a failure, those unapplied before it.
  returned: always
  type: list
  elements: str
  sample: []
failed_migration:
  description: The first migration of RV(plan) that was not done when the run failed, else V(null).
  returned: always
  type: str
  sample: notes.0003_backfill_tag
accepted:
  description: The migrations recorded as accepted in the migration ledger (O(accept)).
  returned: when O(accept) is set and not in check mode
  type: list
  elements: str
  sample: [notes.0004_note_rating]
ledger_baseline:
  description: The migrations recorded as the ledger's baseline - those applied when this run created the
    migration ledger (first use on this database).
  returned: when this run created the ledger
  type: list
  elements: str
  sample: [auth.0001_initial, notes.0001_initial]
ledger_recorded:
  description: The migrations this run recorded as applied (or, with O(unapply), unapplied) in the migration
    ledger - with a squashed migration also the migrations it replaces. Each event is written in the transaction
    in which Django records the migration in C(django_migrations), so after a failure it lists what stays applied.
  returned: when the run migrated
  type: list
  elements: str
  sample: [notes.0002_note_tag]
partial:
  description:
    - The failed migration's operations - those whose database change ran (RV(partial.applied_operations)), the one
      that failed and those not reached - and whether the database rolled the applied ones back.
    - On MySQL and MariaDB DDL is not transactional - the applied operations stay (V(rolled_back=false)) and the
      schema is half way; on PostgreSQL and SQLite an atomic migration is rolled back whole.
  returned: when a migration failed in one of its operations
  type: dict
  contains:
    migration:
      description: The failed migration.
      type: str
      returned: always
      sample: notes.0004_rating_and_score
    applied_operations:
      description: Its operations whose database change ran, in order.
      type: list
      elements: str
      returned: always
      sample: [Add field rating to note]
    failed_operation:
      description: The operation that failed.
      type: str
      returned: always
      sample: Raw SQL operation
    not_applied_operations:
      description: Its operations after the failed one.
      type: list
      elements: str
      returned: always
      sample: []
    rolled_back:
      description: Whether the database rolled the applied operations back.
      type: bool
      returned: always
      sample: false
phase:
  description: O(phase), V(reverse) with O(unapply), V(accept) with O(accept).
  returned: always
  type: str
  sample: all
lock:
  description: The migrate lock the run held.
  returned: when the lock was taken
  type: str
  sample: PostgreSQL advisory lock 6153318232212880473
duration_seconds:
  description: How long the migrate's process ran, in seconds.
  returned: always
  type: float
  sample: 2.41
backup:
  description:
    - The backup O(backup) wrote before the migrate, as M(greenlight.django.db_backup) returns it - also when the
      migrate then failed. In check mode and with O(dry_run) only RV(backup.msg).
  returned: when O(backup) is set and the backup was written (in check mode, always)
  type: dict
  contains:
    path:
      description: The backup written.
      type: str
      returned: not in check mode
      sample: /srv/mysite/backups/mysite-2024-06-01-20240601T101500Z.dump
    size:
      description: Its size in bytes.
      type: int
      returned: not in check mode
      sample: 1048576
    duration_seconds:
      description: Seconds the dump with its checks took.
      type: float
      returned: not in check mode
      sample: 0.41
    removed:
      description: With O(backup.keep), the older backups removed.
      type: list
      elements: str
      returned: with O(backup.keep), not in check mode
      sample: []
    msg:
      description: What was backed up, or in check mode what would be.
      type: str
      returned: always
      sample: Backed up the database default of /srv/mysite/releases/2024-06-01 into
        /srv/mysite/backups/mysite-2024-06-01-20240601T101500Z.dump
error:
  description: What went wrong, without the module's word on what was applied (RV(ignore:msg) has both).
  returned: failure
  type: str
  sample: "notes.0003_backfill_tag failed: RuntimeError: the backfill failed"
"""

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils import _backup as backup  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils import _migrate_payload as payload  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._app_runtime import (  # noqa: E402
    account_of,
    marked_result,
    payload_program,
    process_environment,
    release_runtime,
    run_payload,
    scrub,
)

MIGRATION_NAME = "app_label.migration_name"
MIGRATION_PATTERN = re.compile(r"[^.\s]+\.\S+")
TAIL_LINES = 10


def argument_spec():
    return dict(
        project_path=dict(type="path", required=True),
        venv=dict(type="path"),
        python=dict(type="str"),
        settings=dict(type="str"),
        pythonpath=dict(type="list", elements="path"),
        env_files=dict(type="list", elements="path", default=[]),
        environment=dict(type="dict", default={}, no_log=True),
        user=dict(type="str"),
        app_name=dict(type="str", required=True),
        database=dict(type="str", default="default"),
        phase=dict(type="str", choices=list(payload.PHASES), default="all"),
        expect=dict(type="list", elements="str", default=[]),
        unapply=dict(type="list", elements="str", default=[]),
        accept=dict(type="list", elements="str", default=[]),
        accept_by=dict(type="str", default=""),
        accept_reason=dict(type="str", default=""),
        dry_run=dict(type="bool", default=False),
        lock_timeout=dict(type="float", default=5),
        statement_timeout=dict(type="float", default=0),
        advisory_lock_timeout=dict(type="float", default=60),
        timeout=dict(type="int", default=0),
        backup=dict(
            type="dict",
            options=dict(
                dir=dict(type="path", required=True),
                run_as=dict(type="str", required=True),
                env_files=dict(type="list", elements="path"),
                environment=dict(type="dict", no_log=True),
                **backup.dump_options(),
            ),
        ),
    )


def input_errors(params):
    """What is wrong with the options beyond their types, each with the fix."""
    errors = []
    for option in ("expect", "unapply", "accept"):
        malformed = [item for item in params[option] if not well_formed(item)]
        if malformed:
            errors.append(f"{option} must list migrations as {MIGRATION_NAME} (got {', '.join(malformed)})")
    for option in ("lock_timeout", "statement_timeout", "advisory_lock_timeout", "timeout"):
        if params[option] < 0:
            errors.append(f"{option} must be 0 or more seconds (got {params[option]:g})")
    if not params["app_name"].strip():
        errors.append("app_name must name the application")
    if params["backup"]:
        if params["unapply"] or params["accept"]:
            errors.append("backup goes with a migrate forwards: leave it out with unapply and accept")
        for option in ("keep", "timeout", "lock_wait_timeout"):
            if params["backup"][option] < 0:
                errors.append(f"backup.{option} must be 0 or more (got {params['backup'][option]:g})")
    if params["accept"]:
        if params["expect"] or params["unapply"]:
            errors.append("accept records a review and migrates nothing: leave expect and unapply empty with it")
        if not params["accept_by"].strip() or not params["accept_reason"].strip():
            errors.append("accept needs accept_by (who reviewed) and accept_reason (why the migrations are accepted)")
    return errors


def well_formed(name):
    return MIGRATION_PATTERN.fullmatch(name) is not None


def release_of(project_path):
    """The release (its directory's name) and its revision (first line of its REVISION file, if any)."""
    real = os.path.realpath(project_path)
    try:
        with open(os.path.join(real, "REVISION"), encoding="utf-8") as handle:
            revision = (handle.readline() or "").strip()
    except OSError:
        revision = ""
    return os.path.basename(real), revision


def payload_options(params, dry_run, release="", revision=""):
    """The payload's options (they travel as JSON in its environment, never on its command line)."""
    return {
        "release": release,
        "revision": revision,
        "accept": params["accept"],
        "accept_by": params["accept_by"],
        "accept_reason": params["accept_reason"],
        "app_name": params["app_name"],
        "phase": params["phase"],
        "expect": params["expect"],
        "unapply": params["unapply"],
        "dry_run": dry_run,
        "database": params["database"],
        "lock_timeout": params["lock_timeout"],
        "statement_timeout": params["statement_timeout"],
        "advisory_lock_timeout": params["advisory_lock_timeout"],
    }


def interpreter_environment(venv, python, account, environment, settings, pythonpath, options):
    """The process environment of the payload: the virtualenv's, or that of a plain interpreter."""
    env = process_environment(
        venv or os.path.dirname(os.path.dirname(python)),
        account,
        environment,
        settings=settings,
        pythonpath=pythonpath,
        extra={payload.OPTIONS_ENV: json.dumps(options)},
    )
    if not venv:
        del env["VIRTUAL_ENV"]
        env["PATH"] = os.path.dirname(python) + ":" + env["PATH"].split(":", 1)[1]
    return env


def no_result_error(python, rc, err, timeout, secrets):
    """Why the payload gave no result line: it ran too long, or its process ended without one."""
    tail = " / ".join(line for line in scrub(err, secrets).splitlines()[-TAIL_LINES:] if line.strip())
    if rc is None:
        return (
            f"the migrate did not finish within {timeout} s (timeout) and was stopped: the migration it was running "
            "was rolled back, earlier ones stay applied (greenlight.django.migration_status shows which). "
            "Raise timeout (0: no limit)"
        )
    return (
        f"the migrate did not report (rc={rc}): {tail or 'no output on stderr'}. Check that {python} is the "
        "release's interpreter (Python 3.8+ with Django 4.2+); what it applied is not known here "
        "(greenlight.django.migration_status shows it)"
    )


def failure_message(error, outcome):
    """The error, then what the failed run changed, so that the reader knows what to recover."""
    message = error if error.endswith((".", "!", "?")) else error + "."
    if outcome["phase"] == "reverse":
        done = outcome["unapplied"]
        return message + (
            f" Unapplied before the failure: {', '.join(done)}."
            if done
            else " Nothing was unapplied; the schema is unchanged."
        )
    done = outcome["applied"]
    if done:
        return (
            f"{message} Applied before the failure: {', '.join(done)} - the schema changed; restore the backup "
            "taken before, or migrate back with the previous release."
        )
    if half_applied(outcome):
        return f"{message} The schema changed; restore the backup taken before."

    return message + " Nothing was applied; the schema is unchanged."


def half_applied(outcome):
    """Whether operations of the failed migration stayed applied (DDL outside a transaction: MySQL/MariaDB)."""
    partial = outcome.get("partial") or {}
    return bool(partial.get("applied_operations")) and not partial.get("rolled_back")


def backup_options(params):
    """The options of the backup (db_backup's, state=dumped) from O(backup) and the migrate's own."""
    options = dict(params["backup"], state="dumped", file=None)
    options.update(database=params["database"], app_name=params["app_name"])
    for name in ("project_path", "venv", "python", "settings", "pythonpath", "env_files", "environment"):
        if options.get(name) is None:
            options[name] = params[name]
    return options


def take_backup(module, params, release):
    """Back up the database before the migrate (O(backup)): (the backup's result, the secrets to scrub from
    every result; the module's no_log values are these from here on). Fails the module, with nothing migrated,
    when the backup fails."""
    options = backup_options(params)
    same = options["env_files"] == params["env_files"] and options["environment"] == params["environment"]
    runtime = release if same else release_runtime(module, options, consequence=" Nothing was backed up or applied.")
    overrides = options["database_overrides"] or {}
    secrets = backup.secret_values(module, set(release.secrets) | set(runtime.secrets), overrides)
    backup.mask_options(module.params)
    backup.mask_options(module.params["backup"])
    account_of(module, options["run_as"])
    if module.check_mode or params["dry_run"]:
        would = f"Would back up the database {params['database']} of {release.project_path} into {options['dir']}"
        return {"msg": would}, secrets
    create, private = backup.check_paths(module, options)
    backup.prepare_directory(module, create, private)
    result, failure = backup.run(module, options, overrides, runtime, secrets)
    if failure:
        failure["msg"] += " Nothing was migrated."
        finish(module, failure, secrets, failed=True)
    result.pop("changed", None)
    return result, secrets


def finish(module, result, secrets, failed=False):
    """Exit (or fail) with the result. With O(backup) the result is scrubbed of the secrets here, except the
    backup's paths: Ansible's masking by value would hide the path of the backup when a secret is, say, the
    application's name (db_backup does the same)."""
    if secrets is None:
        (module.fail_json if failed else module.exit_json)(**result)
        return
    kept = result.pop("backup", None)
    result = scrubbed(result, secrets)
    if kept is not None:
        result["backup"] = kept
    module.no_log_values.clear()
    (module.fail_json if failed else module.exit_json)(**result)


def scrubbed(value, secrets):
    """value with every secret of every string in it masked."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {key: scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(item, secrets) for item in value]
    return value


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("venv", "python")],
        supports_check_mode=True,
    )
    params = module.params
    errors = input_errors(params)
    if errors:
        module.fail_json(msg="; ".join(errors) + ". Nothing was applied.")

    release = release_runtime(module, params, consequence=" Nothing was applied.")
    project_path, venv, python, secrets = release.project_path, release.venv, release.python, release.secrets
    account = account_of(module, params["user"])

    dry_run = module.check_mode or params["dry_run"]
    taken, backup_secrets = take_backup(module, params, release) if params["backup"] else (None, None)
    backed_up = taken is not None and not dry_run  # in check mode and with dry_run, taken only says what it would do
    options = payload_options(params, dry_run, *release_of(project_path))
    env = interpreter_environment(
        venv, python, account, release.environment, release.settings, release.pythonpath, options
    )
    started = time.monotonic()
    rc, out, err = run_payload(
        module,
        python,
        payload_program(payload, ledger),
        project_path,
        env,
        account=account,
        timeout=params["timeout"] or None,
        label=f"greenlight-migrate {params['app_name']}",
    )
    duration = round(time.monotonic() - started, 2)

    reported = marked_result(out, payload.RESULT_MARKER)
    outcome = {} if taken is None else {"backup": taken}
    outcome.update(
        {
            "phase": "accept" if params["accept"] else "reverse" if params["unapply"] else params["phase"],
            "plan": [],
            "applied": [],
            "unapplied": [],
            "failed_migration": None,
            "duration_seconds": duration,
        }
    )
    if reported is None:
        error = no_result_error(python, rc, err, params["timeout"], secrets)
        # What it applied before it ended is not known here: the message says so instead of guessing.
        finish(module, dict(outcome, msg=error + ".", error=error, rc=rc), backup_secrets, failed=True)
    for key in ("plan", "applied", "unapplied", "failed_migration", "lock", "partial"):
        if reported.get(key) is not None:
            outcome[key] = reported[key]
    for key in ("accepted", "ledger_baseline", "ledger_recorded"):
        if reported.get(key) is not None:
            outcome[key] = reported[key]
    if not reported.get("ok"):
        error = scrub(reported.get("error") or "the migrate failed without saying why", secrets)
        failure = dict(
            outcome,
            msg=failure_message(error, outcome),
            error=error,
            rc=rc,
            stderr=scrub(err, secrets),
            changed=bool(backed_up or outcome["applied"] or outcome["unapplied"] or half_applied(outcome)),
        )
        finish(module, failure, backup_secrets, failed=True)
    changed = bool(
        outcome["applied"]
        or outcome["unapplied"]
        or outcome.get("accepted")
        or outcome.get("ledger_baseline")
        or (module.check_mode and outcome["plan"])
        or backed_up
    )
    finish(module, dict(outcome, changed=changed), backup_secrets)


if __name__ == "__main__":
    main()
